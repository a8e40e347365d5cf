// matmul.cu: out[N, O] = x[N, I] w[O, I]^T (+ bias[O]) through cuBLASLt, bf16 in and out, fp32 accumulate.
//
// cuBLAS is column-major. A row-major [R, C] matrix is a column-major C x R matrix with the same memory, so
// the row-major product out = x w^T is the column-major product out^T (O x N) = w^T (from w stored as
// I x O, lda = I, transposed) times x^T (stored I x N, ldb = I, not transposed), ldc = O. The bias then is a
// vector over the O rows of the column-major result, which is what CUBLASLT_EPILOGUE_BIAS adds (in fp32,
// before the single rounding to bf16).
//
// Non-obvious: cuBLASLt's heuristic assumes 256-byte aligned pointers unless told otherwise, and a view
// into the middle of a tensor (pn_rows) can be less aligned; we pass each pointer's real alignment. The
// heuristic query costs tens of microseconds, which decode would pay per matmul, so its answer is cached
// per (shape, bias, alignments). If no algorithm takes the bias epilogue, a separate kernel adds the bias.
#include <stdlib.h>
#include <string.h>

#include "common.cuh"

// ----------------------------------------------------------------------------------------------------
// kernels

// out[n, o] += bias[o] (fallback when the epilogue is unavailable, and for I == 0).
__global__ void bias_add_kernel(bf16 *out, const bf16 *bias, int64_t N, int64_t O) {
    const int64_t total = N * O;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x)
        out[i] = f2bf(bf2f(out[i]) + bf2f(bias[i % O]));
}

// A few rows (decoding: N <= GEMV_MAX_N) are a matrix-vector product bound by reading w once, where
// cuBLASLt's tiled kernels reach a fraction of the memory bandwidth. Each output column o is a dot product
// of w[o, :] with the N rows of x, computed by `wpr` warps of a block (one for short rows, up to all eight
// for long ones, so that a [1536, 8960] down projection keeps enough loads in flight): the lanes stream w in
// 16-byte loads (8 bf16), each multiplied into all N rows of x (small, read through L1); the fp32 sums are
// reduced across the warp, then across the row's warps in a fixed order; the bias is added in fp32 and the
// result rounded once to bf16, as cuBLASLt's epilogue does. Needs I % 8 == 0 and 16-byte aligned x and w
// rows.
//
// One launch may cover several products of the same x (matmul_multi: attention's q, k and v; a linear
// block's projections): their columns are laid end to end and each warp finds its product's segment. A
// column's arithmetic depends only on I, N and wpr (which depends on I alone), so a product gives the same
// bits alone or in a group.
#define GEMV_MAX_N 4
#define GEMV_WARPS 8
#define GEMV_MAX_SEG PN_MATMUL_MULTI

struct gemv_segs {
    const bf16 *w[GEMV_MAX_SEG], *bias[GEMV_MAX_SEG];
    bf16 *out[GEMV_MAX_SEG];
    int64_t O[GEMV_MAX_SEG], end[GEMV_MAX_SEG]; // segment s: its columns, and one past its last in the launch
    int n;
    unsigned silu; // bit s: segment s's output is silu(product), each rounded as matmul and silu round
};

// acc[n] += w-word wv . x[n] at word c (8 products in order), for each of the N rows of x. XS: x is in shared
// memory (a normalized input, below), else in global memory, read through the read-only path.
template <int N, bool XS>
__device__ __forceinline__ void gemv_word(float *acc, const bf16x8 &wv, const bf16 *x, int64_t I, int64_t c) {
    float wf[8];
#pragma unroll
    for (int i = 0; i < 8; i++) wf[i] = bf2f(wv.h[i]);
#pragma unroll
    for (int n = 0; n < N; n++) {
        bf16x8 xv;
        xv.u = XS ? *((const uint4 *)(x + n * I) + c) : __ldg((const uint4 *)(x + n * I) + c);
#pragma unroll
        for (int i = 0; i < 8; i++) acc[n] += wf[i] * bf2f(xv.h[i]);
    }
}

// A lane's first GEMV_PRE words of its weight row are loaded before pdl_wait(): they do not depend on the
// kernel before (the one that writes x), so with programmatic dependent launch their DRAM latency overlaps
// that kernel's tail. For the hidden size 1536 and two warps per column that is every word a lane reads.
#define GEMV_PRE 4
__device__ __forceinline__ void gemv_prefetch(bf16x8 *pre, const uint4 *wr, int64_t c, int64_t step, int64_t I8) {
#pragma unroll
    for (int k = 0; k < GEMV_PRE; k++) pre[k].u = wr && c + k * step < I8 ? __ldg(wr + c + k * step) : make_uint4(0, 0, 0, 0);
}

// The input of a GEMV that normalizes it first (add_rmsnorm_swiglu): every block computes
// rmsnorm(x + y) of the N rows into shared memory, in add_rmsnorm's order (common.cuh), so the values are
// the ones add_rmsnorm would write; x and y are only read. Needs 16-byte aligned x, y, nw.
struct gemv_norm_in {
    const bf16 *y, *nw; // y may be NULL (rmsnorm(x))
    float eps;
};
template <int N>
__device__ __forceinline__ const bf16 *gemv_norm_prologue(bf16 *xs, const bf16 *x, const gemv_norm_in &ni, int64_t I) {
    __shared__ float nred[32];
    block_rmsnorm_rows<8>(xs, xs, x, ni.y, ni.nw, N, I, ni.eps, nred);
    __syncthreads(); // every row written before any warp reads it
    return xs;
}

// The output of a GEMV that is added to a residual stream which is then normalized (matmul_add_rmsnorm):
// out (the residual x) = bf16(x + y) + bf16(product) column by column, then the launch's last block to
// finish (counted in *cnt, which it resets to 0 for the next launch) normalizes the rows into xn. Needs
// O % 8 == 0 and 16-byte aligned x, xn, nw.
struct gemv_res_out {
    const bf16 *y, *nw; // y may be NULL
    bf16 *xn;
    float eps;
    int *cnt;
};

template <int N, bool RES>
__global__ void __launch_bounds__(GEMV_WARPS * 32)
    gemv_kernel(const gemv_segs sg, const bf16 *x, int64_t I, int wpr, const gemv_res_out rs) {
    __shared__ float red[GEMV_WARPS][N];
    pdl_trigger();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, part = warp % wpr;
    const int64_t og = (int64_t)blockIdx.x * (GEMV_WARPS / wpr) + warp / wpr; // column of the launch
    int s = 0;
    while (s < sg.n - 1 && og >= sg.end[s]) s++;
    const int64_t o = og - (s ? sg.end[s - 1] : 0); // column of product s
    const bool live = og < sg.end[sg.n - 1];
    const int64_t I8 = I / 8, step = 32 * wpr;
    const uint4 *wr = live ? (const uint4 *)(sg.w[s] + o * I) : NULL;
    int64_t c = (int64_t)part * 32 + lane;
    bf16x8 pre[GEMV_PRE];
    gemv_prefetch(pre, wr, c, step, I8);
    pdl_wait();
    float acc[N];
#pragma unroll
    for (int n = 0; n < N; n++) acc[n] = 0.0f;
    if (live) {
#pragma unroll
        for (int k = 0; k < GEMV_PRE; k++, c += step)
            if (c < I8) gemv_word<N, false>(acc, pre[k], x, I, c);
#pragma unroll 4
        for (; c < I8; c += step) {
            bf16x8 wv;
            wv.u = __ldg(wr + c);
            gemv_word<N, false>(acc, wv, x, I, c);
        }
    }
#pragma unroll
    for (int n = 0; n < N; n++) {
        float v = warp_sum(acc[n]);
        if (lane == 0) red[warp][n] = v;
    }
    __syncthreads();
    if (part == 0 && lane == 0 && live) {
        const bf16 *bias = sg.bias[s];
#pragma unroll
        for (int n = 0; n < N; n++) {
            float v = 0.0f;
            for (int p = 0; p < wpr; p++) v += red[warp + p][n];
            bf16 *dst = sg.out[s] + n * sg.O[s] + o;
            v += bias ? bf2f(bias[o]) : 0.0f;
            if constexpr (RES) { // the adds of add and add_rmsnorm, each rounded, around the rounded product
                float t = bf2f(*dst);
                if (rs.y) t = round_bf(t + bf2f(rs.y[n * sg.O[s] + o]));
                v = t + round_bf(v);
            } else if (sg.silu >> s & 1) { // silu_kernel's arithmetic on the rounded product
                const float z = round_bf(v);
                v = z * sigmoidf_(z);
            }
            *dst = f2bf(v);
        }
    }
    if constexpr (RES) {
        __shared__ int last;
        __shared__ float nred[32];
        __threadfence(); // this block's columns are visible to the last block before it counts itself
        __syncthreads();
        if (threadIdx.x == 0) last = atomicAdd(rs.cnt, 1) == (int)gridDim.x - 1;
        __syncthreads();
        if (last) { // every column is written: the rows' norm, read through L2 (other blocks wrote them)
            __threadfence();
            block_rmsnorm_rows<8, true>(rs.xn, NULL, sg.out[0], NULL, rs.nw, N, sg.O[0], rs.eps, nred);
            if (threadIdx.x == 0) *rs.cnt = 0;
        }
    }
}

// matmul_swiglu's GEMV: the same per-column work for w_gate and w_up at once (both rows of column o by the
// same warps, x loaded once for both), each sum reduced in gemv_kernel's order and rounded to bf16 as the
// separate products are, then silu(gate) * up: bit for bit matmul, matmul, swiglu, in one launch. NORM:
// x normalized first (gemv_norm_prologue; N * I bf16 of dynamic shared memory).

// acc (gate) and au (up) += the words gv and uv . x[n] at word c, for each of the N rows of x.
template <int N, bool XS>
__device__ __forceinline__ void gemv2_word(float *ag, float *au, const bf16x8 &gv, const bf16x8 &uv, const bf16 *x,
                                           int64_t I, int64_t c) {
    float gf[8], uf[8];
#pragma unroll
    for (int i = 0; i < 8; i++) gf[i] = bf2f(gv.h[i]), uf[i] = bf2f(uv.h[i]);
#pragma unroll
    for (int n = 0; n < N; n++) {
        bf16x8 xv;
        xv.u = XS ? *((const uint4 *)(x + n * I) + c) : __ldg((const uint4 *)(x + n * I) + c);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const float xf = bf2f(xv.h[i]);
            ag[n] += gf[i] * xf;
            au[n] += uf[i] * xf;
        }
    }
}

template <int N, bool NORM>
__global__ void __launch_bounds__(GEMV_WARPS * 32)
    gemv_swiglu_kernel(bf16 *out, const bf16 *x, const bf16 *wg, const bf16 *wu, int64_t I, int64_t O, int wpr,
                       const gemv_norm_in ni) {
    extern __shared__ __align__(16) unsigned char gemv_smem[];
    __shared__ float red[GEMV_WARPS][2 * N];
    pdl_trigger();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, part = warp % wpr;
    const int64_t o = (int64_t)blockIdx.x * (GEMV_WARPS / wpr) + warp / wpr;
    const int64_t I8 = I / 8, step = 32 * wpr;
    const uint4 *gr = o < O ? (const uint4 *)(wg + o * I) : NULL, *ur = o < O ? (const uint4 *)(wu + o * I) : NULL;
    int64_t c = (int64_t)part * 32 + lane;
    bf16x8 pg[GEMV_PRE], pu[GEMV_PRE];
    gemv_prefetch(pg, gr, c, step, I8);
    gemv_prefetch(pu, ur, c, step, I8);
    pdl_wait();
    if constexpr (NORM) x = gemv_norm_prologue<N>((bf16 *)gemv_smem, x, ni, I);
    float ag[N], au[N];
#pragma unroll
    for (int n = 0; n < N; n++) ag[n] = au[n] = 0.0f;
    if (o < O) {
#pragma unroll
        for (int k = 0; k < GEMV_PRE; k++, c += step)
            if (c < I8) gemv2_word<N, NORM>(ag, au, pg[k], pu[k], x, I, c);
#pragma unroll 2
        for (; c < I8; c += step) {
            bf16x8 gv, uv;
            gv.u = __ldg(gr + c);
            uv.u = __ldg(ur + c);
            gemv2_word<N, NORM>(ag, au, gv, uv, x, I, c);
        }
    }
#pragma unroll
    for (int n = 0; n < N; n++) {
        const float g = warp_sum(ag[n]), u = warp_sum(au[n]);
        if (lane == 0) red[warp][n] = g, red[warp][N + n] = u;
    }
    __syncthreads();
    if (part == 0 && lane == 0 && o < O) {
#pragma unroll
        for (int n = 0; n < N; n++) {
            float g = 0.0f, u = 0.0f;
            for (int p = 0; p < wpr; p++) g += red[warp + p][n], u += red[warp + p][N + n];
            out[n * O + o] = f2bf(swiglu1(round_bf(g + 0.0f), round_bf(u + 0.0f)));
        }
    }
}

// Warps per column: as many (up to 8) as keep at least two 16-byte loads per lane; depends on I alone, so
// that a product's bits do not depend on what it is launched with. 0: no GEMV for this call.
static int gemv_wpr(const bf16 *x, const bf16 *w, int64_t N, int64_t I) {
    if (N > GEMV_MAX_N || I % 8 != 0 || !is_aligned16(x) || !is_aligned16(w)) return 0;
    static const bool off = getenv("PN_NO_GEMV") != NULL; // for comparisons with cuBLASLt
    if (off) return 0;
    int wpr = 1;
    while (wpr < GEMV_WARPS && I / 8 >= 64LL * 2 * wpr) wpr *= 2;
    return wpr;
}

#define GEMV_NORM_SMEM (48 << 10) // the normalized input's bytes at most (the default dynamic shared memory)

// ni.nw: normalize x first (add_rmsnorm_swiglu); false when the call does not take the GEMV.
static bool gemv_swiglu(bf16 *out, const bf16 *x, const bf16 *wg, const bf16 *wu, int64_t N, int64_t I, int64_t O,
                        const gemv_norm_in &ni) {
    const int wpr = gemv_wpr(x, wg, N, I);
    if (!wpr || !is_aligned16(wu)) return false;
    const bool norm = ni.nw != NULL;
    const size_t smem = norm ? sizeof(bf16) * (size_t)(N * I) : 0;
    if (norm && (smem > GEMV_NORM_SMEM || !is_aligned16(ni.nw) || (ni.y && !is_aligned16(ni.y)))) return false;
    const unsigned grid = (unsigned)ceil_div64(O, GEMV_WARPS / wpr);
#define GEMV_SWIGLU(n)                                                                                       \
    pn_launch(norm ? gemv_swiglu_kernel<n, true> : gemv_swiglu_kernel<n, false>, grid, GEMV_WARPS * 32, smem, out, x, \
              wg, wu, I, O, wpr, ni)
    switch (N) {
    case 1: GEMV_SWIGLU(1); break;
    case 2: GEMV_SWIGLU(2); break;
    case 3: GEMV_SWIGLU(3); break;
    default: GEMV_SWIGLU(4); break;
    }
#undef GEMV_SWIGLU
    return true;
}

// rs.cnt: add the products into the residual sg.out[0] and normalize it (matmul_add_rmsnorm).
static void gemv_launch(const gemv_segs &sg, const bf16 *x, int64_t N, int64_t I, int wpr, const gemv_res_out &rs) {
    const unsigned grid = (unsigned)ceil_div64(sg.end[sg.n - 1], GEMV_WARPS / wpr);
    const bool res = rs.cnt != NULL;
#define GEMV(n) pn_launch(res ? gemv_kernel<n, true> : gemv_kernel<n, false>, grid, GEMV_WARPS * 32, 0, sg, x, I, wpr, rs)
    switch (N) {
    case 1: GEMV(1); break;
    case 2: GEMV(2); break;
    case 3: GEMV(3); break;
    default: GEMV(4); break;
    }
#undef GEMV
}

static bool gemv(bf16 *out, const bf16 *x, const bf16 *w, const bf16 *bias, int64_t N, int64_t I, int64_t O) {
    const int wpr = gemv_wpr(x, w, N, I);
    if (!wpr) return false;
    gemv_segs sg = {};
    sg.w[0] = w, sg.bias[0] = bias, sg.out[0] = out, sg.O[0] = O, sg.end[0] = O, sg.n = 1;
    gemv_launch(sg, x, N, I, wpr, gemv_res_out{});
    return true;
}

// ----------------------------------------------------------------------------------------------------
// the handle, the workspace (the context's) and the plan cache

#define PN_CUBLAS_WORKSPACE (32u << 20)

cublasLtHandle_t pn_cuda_cublaslt(void) { return pn_cuda_ctx_get()->lt; }

void *pn_cuda_workspace(size_t *bytes) {
    *bytes = PN_CUBLAS_WORKSPACE;
    return pn_cuda_ws(PN_WS_CUBLASLT, PN_CUBLAS_WORKSPACE);
}

// Largest power of two (up to 256) dividing the address.
uint32_t pn_cuda_ptr_align(const void *p) {
    uint32_t a = 256;
    while (a > 1 && ((uintptr_t)p % a) != 0) a >>= 1;
    return a;
}

typedef struct {
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t a, b, c;
} lt_descs;

static void descs_create(lt_descs *d, int64_t N, int64_t I, int64_t O, const void *bias) {
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&d->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    if (bias) {
        const cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_BIAS;
        const int32_t bias_type = CUDA_R_16BF;
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
        CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
        CUBLAS_CHECK(
            cublasLtMatmulDescSetAttribute(d->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof bias_type));
    }
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d->a, CUDA_R_16BF, (uint64_t)I, (uint64_t)O, I)); // w: I x O
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d->b, CUDA_R_16BF, (uint64_t)I, (uint64_t)N, I)); // x: I x N
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d->c, CUDA_R_16BF, (uint64_t)O, (uint64_t)N, O)); // out: O x N
}

static void descs_destroy(lt_descs *d) {
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(d->c));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(d->b));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(d->a));
    CUBLAS_CHECK(cublasLtMatmulDescDestroy(d->op));
}

// Returns 1 and the best algorithm for these descriptors, or 0 when cuBLASLt has none.
int pn_cuda_lt_heuristic(cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                         cublasLtMatrixLayout_t c, uint32_t al_a, uint32_t al_b, uint32_t al_c,
                         cublasLtMatmulAlgo_t *algo) {
    size_t ws_bytes = 0;
    (void)pn_cuda_workspace(&ws_bytes);
    const uint64_t ws = ws_bytes;
    cublasLtMatmulPreference_t pref;
    CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof al_c));
    CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof al_c));
    cublasLtMatmulHeuristicResult_t res;
    memset(&res, 0, sizeof res);
    int count = 0;
    cublasStatus_t st =
        cublasLtMatmulAlgoGetHeuristic(pn_cuda_cublaslt(), op, a, b, c, c, pref, 1, &res, &count);
    CUBLAS_CHECK(cublasLtMatmulPreferenceDestroy(pref));
    if (st == CUBLAS_STATUS_NOT_SUPPORTED || count == 0) return 0;
    CUBLAS_CHECK(st);
    if (res.state != CUBLAS_STATUS_SUCCESS) return 0;
    *algo = res.algo;
    return 1;
}

// A small cache of heuristic answers; a model has a handful of distinct matmul shapes.
typedef struct {
    int64_t N, I, O;
    uint32_t al_a, al_b, al_c, al_bias; // al_bias == 0: no bias
    int bias_kernel;                    // 1: the bias is added by bias_add_kernel, not the epilogue
    cublasLtMatmulAlgo_t algo;
} plan;

#define PN_PLANS 128
static plan plans[PN_PLANS];
static int n_plans = 0, next_evict = 0;

static const plan *plan_get(int64_t N, int64_t I, int64_t O, const void *w, const void *x, const void *out,
                            const void *bias) {
    plan key;
    memset(&key, 0, sizeof key);
    key.N = N, key.I = I, key.O = O;
    key.al_a = pn_cuda_ptr_align(w), key.al_b = pn_cuda_ptr_align(x), key.al_c = pn_cuda_ptr_align(out);
    key.al_bias = bias ? pn_cuda_ptr_align(bias) : 0;
    for (int i = 0; i < n_plans; i++) {
        const plan *p = &plans[i];
        if (p->N == N && p->I == I && p->O == O && p->al_a == key.al_a && p->al_b == key.al_b &&
            p->al_c == key.al_c && p->al_bias == key.al_bias)
            return p;
    }
    lt_descs d;
    descs_create(&d, N, I, O, bias);
    int ok = pn_cuda_lt_heuristic(d.op, d.a, d.b, d.c, key.al_a, key.al_b, key.al_c, &key.algo);
    descs_destroy(&d);
    if (!ok && bias) { // no algorithm with the bias epilogue: plain product + bias kernel
        descs_create(&d, N, I, O, NULL);
        ok = pn_cuda_lt_heuristic(d.op, d.a, d.b, d.c, key.al_a, key.al_b, key.al_c, &key.algo);
        descs_destroy(&d);
        key.bias_kernel = 1;
    }
    if (!ok)
        pn_panic("matmul: cuBLASLt has no algorithm for [%lld, %lld] x [%lld, %lld]^T (alignments %u %u %u)",
                 (long long)N, (long long)I, (long long)O, (long long)I, key.al_b, key.al_a, key.al_c);
    int slot;
    if (n_plans < PN_PLANS) {
        slot = n_plans++;
    } else {
        slot = next_evict;
        next_evict = (next_evict + 1) % PN_PLANS;
    }
    plans[slot] = key;
    return &plans[slot];
}

// ----------------------------------------------------------------------------------------------------
// launchers

static void bias_add(bf16 *out, const bf16 *bias, int64_t N, int64_t O) {
    bias_add_kernel<<<grid_1d(N * O, 256), 256, 0, pn_cuda_stream()>>>(out, bias, N, O);
    CUDA_LAUNCH_CHECK();
}

void pn_cuda_matmul(pn_tensor *out, const pn_tensor *x, const pn_tensor *w, const pn_tensor *bias) {
    const int64_t N = x->shape[0], I = x->shape[1], O = w->shape[0];
    const void *bias_ptr = bias ? bias->data : NULL;
    if (N == 0 || O == 0) return;
    if (I == 0) { // an empty sum: out = bias (or 0)
        CUDA_CHECK(cudaMemsetAsync(out->data, 0, (size_t)(N * O) * sizeof(bf16), pn_cuda_stream()));
        if (bias) bias_add((bf16 *)out->data, (const bf16 *)bias_ptr, N, O);
        return;
    }
    if (gemv((bf16 *)out->data, (const bf16 *)x->data, (const bf16 *)w->data, (const bf16 *)bias_ptr, N, I, O)) return;
    const plan *p = plan_get(N, I, O, w->data, x->data, out->data, bias_ptr);
    lt_descs d;
    descs_create(&d, N, I, O, p->bias_kernel ? NULL : bias_ptr);
    size_t ws_bytes = 0;
    void *ws = pn_cuda_workspace(&ws_bytes);
    const float alpha = 1.0f, beta = 0.0f;
    CUBLAS_CHECK(cublasLtMatmul(pn_cuda_cublaslt(), d.op, &alpha, w->data, d.a, x->data, d.b, &beta, out->data, d.c,
                                out->data, d.c, &p->algo, ws, ws_bytes, pn_cuda_stream()));
    descs_destroy(&d);
    if (bias && p->bias_kernel) bias_add((bf16 *)out->data, (const bf16 *)bias_ptr, N, O);
}

void pn_cuda_matmul_swiglu(pn_tensor *out, const pn_tensor *x, const pn_tensor *w_gate, const pn_tensor *w_up) {
    const int64_t N = x->shape[0], I = x->shape[1], O = w_gate->shape[0];
    if (N == 0 || O == 0) return;
    if (I > 0 && gemv_swiglu((bf16 *)out->data, (const bf16 *)x->data, (const bf16 *)w_gate->data,
                             (const bf16 *)w_up->data, N, I, O, gemv_norm_in{}))
        return;
    // Many rows (or an unaligned call): the three ops, gate and up in the context's workspace.
    bf16 *tmp = (bf16 *)pn_cuda_ws(PN_WS_MLP, sizeof(bf16) * (size_t)(2 * N * O));
    pn_tensor g = pn_view(tmp, PN_BF16, PN_CUDA, 2, out->shape), u = pn_view(tmp + N * O, PN_BF16, PN_CUDA, 2, out->shape);
    pn_cuda_matmul(&g, x, w_gate, NULL);
    pn_cuda_matmul(&u, x, w_up, NULL);
    pn_cuda_swiglu(out, &g, &u);
}

void pn_cuda_matmul_multi(int n, pn_tensor *const *out, const pn_tensor *x, const pn_tensor *const *w,
                          const pn_tensor *const *bias, unsigned silu) {
    const int64_t N = x->shape[0], I = x->shape[1];
    // One GEMV launch when every product takes it (aligned weights, a few rows); else the products one by one.
    gemv_segs sg = {};
    int wpr = I > 0 ? gemv_wpr((const bf16 *)x->data, (const bf16 *)w[0]->data, N, I) : 0;
    int64_t cols = 0;
    for (int i = 0; i < n && wpr; i++) {
        if (!is_aligned16(w[i]->data)) wpr = 0;
        sg.w[i] = (const bf16 *)w[i]->data, sg.bias[i] = bias && bias[i] ? (const bf16 *)bias[i]->data : NULL;
        sg.out[i] = (bf16 *)out[i]->data, sg.O[i] = w[i]->shape[0];
        cols += sg.O[i], sg.end[i] = cols;
    }
    sg.n = n, sg.silu = silu;
    if (wpr && N > 0 && cols > 0) {
        gemv_launch(sg, (const bf16 *)x->data, N, I, wpr, gemv_res_out{});
        return;
    }
    for (int i = 0; i < n; i++) {
        pn_cuda_matmul(out[i], x, w[i], bias ? bias[i] : NULL);
        if (silu >> i & 1) pn_cuda_silu(out[i], out[i]);
    }
}

void pn_cuda_add_rmsnorm_swiglu(pn_tensor *out, const pn_tensor *x, const pn_tensor *y, const pn_tensor *norm_w,
                                float eps, const pn_tensor *w_gate, const pn_tensor *w_up) {
    const int64_t N = x->shape[0], I = x->shape[1], O = w_gate->shape[0];
    if (N == 0 || O == 0) return;
    const gemv_norm_in ni = {y ? (const bf16 *)y->data : NULL, (const bf16 *)norm_w->data, eps};
    if (I > 0 && gemv_swiglu((bf16 *)out->data, (const bf16 *)x->data, (const bf16 *)w_gate->data,
                             (const bf16 *)w_up->data, N, I, O, ni))
        return;
    // Not a GEMV: x + y and its norm in the context's workspace, then matmul_swiglu.
    bf16 *tmp = (bf16 *)pn_cuda_ws(PN_WS_NORM_IN, sizeof(bf16) * (size_t)(2 * N * I));
    pn_tensor sum = pn_view(tmp, PN_BF16, PN_CUDA, 2, x->shape), xn = pn_view(tmp + N * I, PN_BF16, PN_CUDA, 2, x->shape);
    if (y) {
        pn_cuda_add_rmsnorm(&sum, x, y, &xn, norm_w, eps);
    } else {
        pn_cuda_rmsnorm(&xn, x, norm_w, eps);
    }
    pn_cuda_matmul_swiglu(out, &xn, w_gate, w_up);
}

void pn_cuda_matmul_add_rmsnorm(pn_tensor *x, const pn_tensor *y, const pn_tensor *a, const pn_tensor *w,
                                pn_tensor *xn, const pn_tensor *norm_w, float eps) {
    const int64_t N = a->shape[0], I = a->shape[1], O = w->shape[0];
    if (N == 0 || O == 0) return;
    const int wpr = I > 0 ? gemv_wpr((const bf16 *)a->data, (const bf16 *)w->data, N, I) : 0;
    if (wpr && O % 8 == 0 && is_aligned16(x->data) && is_aligned16(xn->data) && is_aligned16(norm_w->data) &&
        (!y || is_aligned16(y->data))) {
        gemv_segs sg = {};
        sg.w[0] = (const bf16 *)w->data, sg.out[0] = (bf16 *)x->data, sg.O[0] = O, sg.end[0] = O, sg.n = 1;
        const gemv_res_out rs = {y ? (const bf16 *)y->data : NULL, (const bf16 *)norm_w->data, (bf16 *)xn->data, eps,
                                 (int *)pn_cuda_ws(PN_WS_GEMV_COUNT, sizeof(int))};
        gemv_launch(sg, (const bf16 *)a->data, N, I, wpr, rs);
        return;
    }
    // Not a GEMV: the ops it fuses, the product in the context's workspace.
    if (y) pn_cuda_add(x, x, y);
    bf16 *tmp = (bf16 *)pn_cuda_ws(PN_WS_NORM_IN, sizeof(bf16) * (size_t)(N * O));
    pn_tensor p = pn_view(tmp, PN_BF16, PN_CUDA, 2, x->shape);
    pn_cuda_matmul(&p, a, w, NULL);
    pn_cuda_add_rmsnorm(x, x, &p, xn, norm_w, eps);
}
