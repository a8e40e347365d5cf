// matmul_bwd.cu: the backward of out[N, O] = x[N, I] w[O, I]^T + b through cuBLASLt:
//   dx[N, I] = dout w        (bf16 out, fp32 accumulate; beta = 1 when it accumulates into dx)
//   dw[O, I] += dout^T x     (bf16 inputs, fp32 output accumulated in place, beta = 1)
//   db[O]   += column sums of dout (own kernel).
//
// Column-major view (as matmul.cu): a row-major [R, C] matrix is a column-major C x R matrix with the same
// memory. dx^T (I x N) = w^T (I x O: w's memory, no transpose) * dout^T (O x N: dout's memory, no transpose).
// dw^T (I x O) = x^T (I x N: x's memory) * dout (N x O: dout's memory O x N, transposed). Heuristic answers
// are cached per shape, layout and alignment like the forward's.
#include <string.h>

#include "common.cuh"

// db[o] += sum_n dout[n, o]: block (32 columns, 8 row lanes), grid (column tiles, row slices).
__global__ void bias_grad_kernel(float *db, const bf16 *dout, int64_t N, int64_t O, int64_t rows_per_block) {
    __shared__ float red[8][33];
    const int tc = threadIdx.x & 31, tr = threadIdx.x >> 5;
    const int64_t o = (int64_t)blockIdx.x * 32 + tc;
    const int64_t r0 = (int64_t)blockIdx.y * rows_per_block, r1 = min(N, r0 + rows_per_block);
    float acc = 0.0f;
    if (o < O)
        for (int64_t n = r0 + tr; n < r1; n += 8) acc += bf2f(dout[n * O + o]);
    red[tr][tc] = acc;
    __syncthreads();
    if (tr == 0 && o < O) {
        float s = 0.0f;
        for (int k = 0; k < 8; k++) s += red[k][tc];
        atomicAdd(db + o, s);
    }
}

// One column-major product C (m x n) = op(A) (m x k) op(B) (k x n) + beta C, A and B bf16, C of ctype.
typedef struct {
    int64_t m, n, k, lda, ldb, ldc;
    int ta, tb, ctype_f32, accumulate;
    uint32_t al_a, al_b, al_c;
    cublasLtMatmulAlgo_t algo;
} bwd_plan;

#define BWD_PLANS 128
static bwd_plan bwd_plans[BWD_PLANS];
static int n_bwd_plans = 0, bwd_evict = 0;

typedef struct {
    cublasLtMatmulDesc_t op;
    cublasLtMatrixLayout_t a, b, c;
} bwd_descs;

static void bwd_descs_create(bwd_descs *d, const bwd_plan *p) {
    CUBLAS_CHECK(cublasLtMatmulDescCreate(&d->op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    const cublasOperation_t ta = p->ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb = p->tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
    CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(d->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d->a, CUDA_R_16BF, (uint64_t)(p->ta ? p->k : p->m),
                                            (uint64_t)(p->ta ? p->m : p->k), p->lda));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d->b, CUDA_R_16BF, (uint64_t)(p->tb ? p->n : p->k),
                                            (uint64_t)(p->tb ? p->k : p->n), p->ldb));
    CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&d->c, p->ctype_f32 ? CUDA_R_32F : CUDA_R_16BF, (uint64_t)p->m,
                                            (uint64_t)p->n, p->ldc));
}

static void bwd_descs_destroy(bwd_descs *d) {
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(d->c));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(d->b));
    CUBLAS_CHECK(cublasLtMatrixLayoutDestroy(d->a));
    CUBLAS_CHECK(cublasLtMatmulDescDestroy(d->op));
}

static const bwd_plan *bwd_plan_get(bwd_plan key) {
    for (int i = 0; i < n_bwd_plans; i++) {
        const bwd_plan *p = &bwd_plans[i];
        if (p->m == key.m && p->n == key.n && p->k == key.k && p->lda == key.lda && p->ldb == key.ldb &&
            p->ldc == key.ldc && p->ta == key.ta && p->tb == key.tb && p->ctype_f32 == key.ctype_f32 &&
            p->accumulate == key.accumulate && p->al_a == key.al_a && p->al_b == key.al_b && p->al_c == key.al_c)
            return p;
    }
    bwd_descs d;
    bwd_descs_create(&d, &key);
    const int ok = pn_cuda_lt_heuristic(d.op, d.a, d.b, d.c, key.al_a, key.al_b, key.al_c, &key.algo);
    bwd_descs_destroy(&d);
    if (!ok)
        pn_panic("matmul_bwd: cuBLASLt has no algorithm for %lld x %lld x %lld (%s output)", (long long)key.m,
                 (long long)key.n, (long long)key.k, key.ctype_f32 ? "fp32" : "bf16");
    int slot;
    if (n_bwd_plans < BWD_PLANS) {
        slot = n_bwd_plans++;
    } else {
        slot = bwd_evict;
        bwd_evict = (bwd_evict + 1) % BWD_PLANS;
    }
    bwd_plans[slot] = key;
    return &bwd_plans[slot];
}

static void lt_gemm(int64_t m, int64_t n, int64_t k, const void *A, int64_t lda, int ta, const void *B, int64_t ldb,
                    int tb, void *C, int64_t ldc, int c_f32, int accumulate) {
    bwd_plan key;
    memset(&key, 0, sizeof key);
    key.m = m, key.n = n, key.k = k, key.lda = lda, key.ldb = ldb, key.ldc = ldc;
    key.ta = ta, key.tb = tb, key.ctype_f32 = c_f32, key.accumulate = accumulate;
    key.al_a = pn_cuda_ptr_align(A), key.al_b = pn_cuda_ptr_align(B), key.al_c = pn_cuda_ptr_align(C);
    const bwd_plan *p = bwd_plan_get(key);
    bwd_descs d;
    bwd_descs_create(&d, p);
    size_t ws_bytes = 0;
    void *ws = pn_cuda_workspace(&ws_bytes);
    const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    CUBLAS_CHECK(cublasLtMatmul(pn_cuda_cublaslt(), d.op, &alpha, A, d.a, B, d.b, &beta, C, d.c, C, d.c, &p->algo, ws,
                                ws_bytes, pn_cuda_stream()));
    bwd_descs_destroy(&d);
}

void pn_cuda_matmul_bwd(pn_tensor *dx, pn_tensor *dw, pn_tensor *db, const pn_tensor *dout, const pn_tensor *x,
                        const pn_tensor *w, int accumulate_dx) {
    const int64_t N = x->shape[0], I = x->shape[1], O = w->shape[0];
    if (N == 0) return;
    if (dx && I > 0) {
        if (O == 0) {
            if (!accumulate_dx) CUDA_CHECK(cudaMemsetAsync(dx->data, 0, (size_t)(N * I) * sizeof(bf16), pn_cuda_stream()));
        } else {
            lt_gemm(I, N, O, w->data, I, 0, dout->data, O, 0, dx->data, I, 0, accumulate_dx);
        }
    }
    if (dw && I > 0 && O > 0) lt_gemm(I, O, N, x->data, I, 0, dout->data, O, 1, dw->data, I, 1, 1);
    if (db && O > 0) {
        const int64_t rows_per_block = 1024;
        const dim3 grid((unsigned)ceil_div64(O, 32), (unsigned)ceil_div64(N, rows_per_block));
        bias_grad_kernel<<<grid, 256, 0, pn_cuda_stream()>>>((float *)db->data, (const bf16 *)dout->data, N, O, rows_per_block);
        CUDA_LAUNCH_CHECK();
    }
}
