// conv1d.cu: the causal depthwise convolutions of the linear blocks, forward and backward — Gated DeltaNet's
// short convolutions (a static kernel w [C, W] per channel, optional bias) and JetBlock's dynamic one (a
// kernel per token and channel, kdyn [B, T, C * W], tap fastest), optionally through SiLU. bf16 in memory,
// fp32 in registers. The contract is pn_op_conv1d's (kernels/ops.h), the reference kernels/cpu/conv1d.c.
//
// Non-obvious:
// - Tokens are flat rows n = b T + t. A row's sequence is [s0, s1): b's T rows, or with cu_seqlens (B = 1)
//   the packed sequence containing it, found by binary search over the offsets in the kernel. Taps before s0
//   read zero, so nothing crosses a sequence start.
// - Kernels up to 4 taps walk the rows (conv_fwd_walk, conv_bwd_walk): a thread owns one or two channels
//   and a strip of 32 rows, keeps the last W inputs in registers and reads every element once (the strip's
//   first W − 1 inputs twice), loads batched four rows ahead. The backward walks its strip upwards from
//   W − 2 rows past its end, recomputes z and dz = dy act'(z) per row and scatters dz K into the pending
//   dx of the W rows that row read; a row's dx is complete when the walk leaves it (dx keeps the gather's
//   order of terms: the bits of the older kernels below). dw, dbias: per thread over its strip, summed over
//   the block's strips in shared memory, one atomic per (channel, tap) and block. At the distillation
//   step's shape (B 2, T 4096, C 3072) the three-kernel backward below took ~0.6 ms (dz through an fp32
//   scratch, the dw kernel re-reading it per tap with a binary search per element): 46 ms of a 306 ms step.
//   Where C % 8 == 0 and the rows are 16-byte aligned (every GDN and JetBlock width), the block first copies
//   its rows of x (and dy) into shared memory by cp.async (TILE) and the walks read them there. The walks are
//   issue-bound more than memory-bound (H100: forward 1.3 TB/s, backward 0.9): wider loads (4 or 8 channels
//   a thread) were slower, L2 prefetches and the tiles gained 0-11%.
// - Wider kernels: the backward first writes dz = dy * act'(z) (z recomputed, W multiply-adds) to an fp32
//   scratch; dx then gathers dz of the W tokens that read each row, dkdyn = dz x, and the static dw, dbias
//   are sums over all rows, reduced per block in shared memory and added with one atomic per (channel, tap)
//   and block.
#include "common.cuh"
#include "mma.cuh"


// [s0, s1) of flat row n.
__device__ __forceinline__ void seq_of(int64_t n, int64_t T, const int32_t *cu, int nseq, int64_t *s0, int64_t *s1) {
    if (!cu) {
        *s0 = n / T * T;
        *s1 = *s0 + T;
        return;
    }
    int lo = 0, hi = nseq - 1;
    while (lo < hi) { // the last sequence whose start is <= n
        const int mid = (lo + hi + 1) >> 1;
        if (cu[mid] <= n) lo = mid;
        else hi = mid - 1;
    }
    *s0 = cu[lo];
    *s1 = cu[lo + 1];
}

// The pre-activation at row n, channel c: sum_w K[w] x[n - (W-1) + w] (+ bias), taps before s0 zero.
__device__ __forceinline__ float conv_z(const bf16 *x, const bf16 *w, const bf16 *bias, const bf16 *kdyn, int64_t n,
                                        int64_t s0, int64_t c, int64_t C, int W) {
    float z = bias ? bf2f(bias[c]) : 0.0f;
    const bf16 *k = kdyn ? kdyn + (n * C + c) * W : w + c * W;
    for (int j = 0; j < W; j++) {
        const int64_t src = n - (W - 1) + j;
        if (src >= s0) z = fmaf(bf2f(k[j]), bf2f(x[src * C + c]), z);
    }
    return z;
}

__global__ void conv_fwd_kernel(bf16 *y, const bf16 *x, const bf16 *w, const bf16 *bias, const bf16 *kdyn,
                                const int32_t *cu, int nseq, int64_t NT, int64_t T, int64_t C, int W, int act) {
    pdl_trigger();
    pdl_wait();
    const int64_t total = NT * C, stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += stride) {
        const int64_t n = idx / C, c = idx % C;
        int64_t s0, s1;
        seq_of(n, T, cu, nseq, &s0, &s1);
        const float z = conv_z(x, w, bias, kdyn, n, s0, c, C, W);
        y[idx] = f2bf(act ? z * sigmoidf_(z) : z);
    }
}

// dz = dy * act'(z), fp32.
__global__ void conv_dz_kernel(float *dz, const bf16 *dy, const bf16 *x, const bf16 *w, const bf16 *bias,
                               const bf16 *kdyn, const int32_t *cu, int nseq, int64_t NT, int64_t T, int64_t C, int W,
                               int act) {
    const int64_t total = NT * C, stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += stride) {
        const int64_t n = idx / C, c = idx % C;
        float d = bf2f(dy[idx]);
        if (act) {
            int64_t s0, s1;
            seq_of(n, T, cu, nseq, &s0, &s1);
            const float z = conv_z(x, w, bias, kdyn, n, s0, c, C, W), s = sigmoidf_(z);
            d *= s * (1.0f + z * (1.0f - s));
        }
        dz[idx] = d;
    }
}

// dx[m, c] = sum over the rows n = m + (W-1) - j < s1 that read m through tap j: dz[n, c] K_n[c, j];
// dkdyn[n, c, j] = dz[n, c] x[n - (W-1) + j, c] (zero before s0).
__global__ void conv_dx_kernel(bf16 *dx, bf16 *dkdyn, const float *dz, const bf16 *x, const bf16 *w, const bf16 *kdyn,
                               const int32_t *cu, int nseq, int64_t NT, int64_t T, int64_t C, int W) {
    const int64_t total = NT * C, stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += stride) {
        const int64_t m = idx / C, c = idx % C;
        int64_t s0, s1;
        seq_of(m, T, cu, nseq, &s0, &s1);
        float acc = 0.0f;
        for (int j = 0; j < W; j++) {
            const int64_t n = m + (W - 1) - j;
            if (n >= s1) continue;
            const float k = kdyn ? bf2f(kdyn[(n * C + c) * W + j]) : bf2f(w[c * W + j]);
            acc = fmaf(dz[n * C + c], k, acc);
        }
        dx[idx] = f2bf(acc);
        if (dkdyn) {
            const float d = dz[idx];
            for (int j = 0; j < W; j++) {
                const int64_t src = m - (W - 1) + j;
                dkdyn[idx * W + j] = f2bf(src >= s0 ? d * bf2f(x[src * C + c]) : 0.0f);
            }
        }
    }
}

// dw[c, j] += sum_n dz[n, c] x[n - (W-1) + j, c]; dbias[c] += sum_n dz[n, c]. Block (32 channels, 8 row
// lanes); grid (channel tiles, row slices). Per tap: registers, then a reduction over the 8 lanes in shared
// memory and one atomic per channel.
__global__ void conv_dw_kernel(float *dw, float *dbias, const float *dz, const bf16 *x, const int32_t *cu, int nseq,
                               int64_t NT, int64_t T, int64_t C, int W, int64_t rows_per_block) {
    __shared__ float red[8][33];
    const int tc = threadIdx.x & 31, tr = threadIdx.x >> 5;
    const int64_t c = (int64_t)blockIdx.x * 32 + tc;
    const int64_t r0 = (int64_t)blockIdx.y * rows_per_block, r1 = min(NT, r0 + rows_per_block);
    for (int j = -1; j < W; j++) { // j = -1: the bias
        if (j < 0 && !dbias) continue;
        if (j >= 0 && !dw) break;
        float acc = 0.0f;
        if (c < C)
            for (int64_t n = r0 + tr; n < r1; n += 8) {
                const float d = dz[n * C + c];
                if (j < 0) {
                    acc += d;
                } else {
                    const int64_t src = n - (W - 1) + j;
                    int64_t s0, s1;
                    seq_of(n, T, cu, nseq, &s0, &s1);
                    if (src >= s0) acc = fmaf(d, bf2f(x[src * C + c]), acc);
                }
            }
        red[tr][tc] = acc;
        __syncthreads();
        if (tr == 0 && c < C) {
            float s = 0.0f;
            for (int k = 0; k < 8; k++) s += red[k][tc];
            atomicAdd(j < 0 ? dbias + c : dw + c * W + j, s);
        }
        __syncthreads();
    }
}



// ----------------------------------------------------------------------------------------------------
// The walks (W ≤ 4): block (CONV_CT channel slots of VC channels, CONV_SB strips of CONV_S rows).
#define CONV_CT 64
#define CONV_SB 4
#define CONV_S 32
#define CONV_U 4 // rows whose loads are issued together
#define CONV_THREADS (CONV_CT * CONV_SB)

// VC consecutive channels of row `row` (VC = 2: one 4-byte load; zero for a row before 0).
template <int VC> __device__ __forceinline__ void load_ch(float *v, const bf16 *__restrict__ p, int64_t row, int64_t C,
                                                         int64_t c) {
    if (row < 0) {
#pragma unroll
        for (int i = 0; i < VC; i++) v[i] = 0.0f;
        return;
    }
    if (VC == 2) {
        const __nv_bfloat162 t = *(const __nv_bfloat162 *)(p + row * C + c);
        v[0] = __low2float(t), v[1] = __high2float(t);
    } else {
        v[0] = bf2f(p[row * C + c]);
    }
}
template <int VC> __device__ __forceinline__ void store_ch(bf16 *__restrict__ p, int64_t row, int64_t C, int64_t c,
                                                          const float *v) {
    if (VC == 2) *(__nv_bfloat162 *)(p + row * C + c) = __floats2bfloat162_rn(v[0], v[1]);
    else p[row * C + c] = f2bf(v[0]);
}

// TILE walks (C % 8 == 0, 16-byte aligned x, dy): the block's rows [ra, rb) of a [NT, C] array, its channels
// [cb, cb + TW), copied into s (row pitch TW) by 16-byte cp.async before the walk: the tile's loads all in
// flight at once instead of four rows a thread, and no global addressing in the walk (H100, B 2 x 4096, the
// GDN widths: backward 0.080 -> 0.071 ms at 1152 channels, 0.175 -> 0.155 at 3072; forward within 3%).
// Rows outside [0, NT) and channels past C read zero.
template <int TW>
__device__ __forceinline__ void conv_tile_load(bf16 *s, const bf16 *__restrict__ g, int64_t ra, int64_t rb, int64_t NT,
                                               int64_t C, int64_t cb) {
    constexpr int G = TW / 8; // 16-byte groups a row
    const int n = (int)(rb - ra) * G;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        const int r = i / G, q = (i % G) * 8;
        const int64_t row = ra + r, ch = cb + q;
        bf16 *d = s + r * TW + q;
        if (row >= 0 && row < NT && ch < C) cp_async16(d, g + row * C + ch);
        else *(uint4 *)d = make_uint4(0, 0, 0, 0);
    }
    cp_async_commit();
}

// VC channels of row `row` (zero before row 0): from global memory, or with TILE from the block's tile s
// (rows from ra, channels from cb, pitch TW).
template <int VC, bool TILE, int TW>
__device__ __forceinline__ void walk_load(float *v, const bf16 *__restrict__ g, const bf16 *s, int64_t row, int64_t ra,
                                          int64_t C, int64_t c, int64_t cb) {
    if constexpr (!TILE) {
        load_ch<VC>(v, g, row, C, c);
    } else {
        if (row < 0) {
#pragma unroll
            for (int i = 0; i < VC; i++) v[i] = 0.0f;
            return;
        }
        load_ch<VC>(v, s + (row - ra) * TW + (c - cb), 0, 0, 0);
    }
}

// Channels c .. c + VC − 1's static kernel taps and bias (zero where absent).
template <int W, int VC> __device__ __forceinline__ void static_taps(float (*ks)[W], float *b, const bf16 *__restrict__ w,
                                                                     const bf16 *__restrict__ bias, int64_t c) {
#pragma unroll
    for (int v = 0; v < VC; v++) {
        b[v] = bias ? bf2f(bias[c + v]) : 0.0f;
#pragma unroll
        for (int j = 0; j < W; j++) ks[v][j] = w ? bf2f(w[(c + v) * W + j]) : 0.0f;
    }
}

// The row's kernel taps: the static kernel (ks), or kdyn's for the row (tap fastest).
template <int W, int VC> __device__ __forceinline__ void row_taps(float (*k)[W], const float (*ks)[W],
                                                                  const bf16 *__restrict__ kdyn, int64_t n, int64_t C,
                                                                  int64_t c) {
#pragma unroll
    for (int v = 0; v < VC; v++)
#pragma unroll
        for (int j = 0; j < W; j++) k[v][j] = kdyn ? bf2f(kdyn[(n * C + c + v) * W + j]) : ks[v][j];
}

template <int W, int VC, bool TILE>
__global__ void __launch_bounds__(CONV_THREADS)
    conv_fwd_walk(bf16 *__restrict__ y, const bf16 *__restrict__ x, const bf16 *__restrict__ w,
                  const bf16 *__restrict__ bias, const bf16 *__restrict__ kdyn, const int32_t *cu, int nseq, int64_t NT,
                  int64_t T, int64_t C, int act) {
    pdl_trigger();
    pdl_wait();
    const int tc = threadIdx.x % CONV_CT, sb = threadIdx.x / CONV_CT;
    const int64_t c = ((int64_t)blockIdx.x * CONV_CT + tc) * VC;
    const int64_t r0 = ((int64_t)blockIdx.y * CONV_SB + sb) * CONV_S, r1 = min(NT, r0 + CONV_S);
    constexpr int TW = CONV_CT * VC;
    bf16 *tile = (bf16 *)dyn_smem();
    const int64_t ra = (int64_t)blockIdx.y * CONV_SB * CONV_S - (W - 1), cb = (int64_t)blockIdx.x * TW;
    if constexpr (TILE) {
        conv_tile_load<TW>(tile, x, ra, min(NT, ra + (W - 1) + CONV_SB * CONV_S), NT, C, cb);
        cp_async_wait<0>();
        __syncthreads();
    }
    if (c >= C || r0 >= NT) return;
    float ks[VC][W], b[VC];
    static_taps<W, VC>(ks, b, w, bias, c);
    float xw[VC][W]; // xw[v][j] = x[n − (W − 1) + j]
#pragma unroll
    for (int j = 0; j < W - 1; j++) {
        float t[VC];
        walk_load<VC, TILE, TW>(t, x, tile, r0 - (W - 1) + j, ra, C, c, cb);
#pragma unroll
        for (int v = 0; v < VC; v++) xw[v][j + 1] = t[v]; // shifted down once before the first row
    }
    int64_t s0, s1;
    seq_of(r0, T, cu, nseq, &s0, &s1);
    for (int64_t nb = r0; nb < r1; nb += CONV_U) {
        float xn[CONV_U][VC];
#pragma unroll
        for (int u = 0; u < CONV_U; u++) walk_load<VC, TILE, TW>(xn[u], x, tile, nb + u < r1 ? nb + u : -1, ra, C, c, cb);
#pragma unroll
        for (int u = 0; u < CONV_U; u++) {
            const int64_t n = nb + u;
            if (n >= r1) break;
            if (n >= s1) seq_of(n, T, cu, nseq, &s0, &s1);
            float k[VC][W], z[VC];
            row_taps<W, VC>(k, ks, kdyn, n, C, c);
#pragma unroll
            for (int v = 0; v < VC; v++) {
#pragma unroll
                for (int j = 0; j < W - 1; j++) xw[v][j] = xw[v][j + 1];
                xw[v][W - 1] = xn[u][v];
                z[v] = b[v]; // conv_z's terms in conv_z's order
#pragma unroll
                for (int j = 0; j < W; j++)
                    if (n - (W - 1) + j >= s0) z[v] = fmaf(k[v][j], xw[v][j], z[v]);
                if (act) z[v] = z[v] * sigmoidf_(z[v]);
            }
            store_ch<VC>(y, n, C, c, z);
        }
    }
}

template <int W, int VC, bool TILE>
__global__ void __launch_bounds__(CONV_THREADS)
    conv_bwd_walk(bf16 *__restrict__ dx, float *dw, float *dbias, bf16 *__restrict__ dkdyn, const bf16 *__restrict__ dy,
                  const bf16 *__restrict__ x, const bf16 *__restrict__ w, const bf16 *__restrict__ bias,
                  const bf16 *__restrict__ kdyn, const int32_t *cu, int nseq, int64_t NT, int64_t T, int64_t C,
                  int act) {
    __shared__ float red[CONV_SB][CONV_CT * VC][W + 1];
    const int tc = threadIdx.x % CONV_CT, sb = threadIdx.x / CONV_CT;
    const int64_t c = ((int64_t)blockIdx.x * CONV_CT + tc) * VC;
    const int64_t r0 = ((int64_t)blockIdx.y * CONV_SB + sb) * CONV_S, r1 = min(NT, r0 + CONV_S);
    constexpr int TW = CONV_CT * VC;
    bf16 *tile = (bf16 *)dyn_smem();
    // the block's x rows [R0 − W, Rtop] and dy rows [R0, Rtop]
    const int64_t R0 = (int64_t)blockIdx.y * CONV_SB * CONV_S, Rtop = min(min(NT, R0 + CONV_SB * CONV_S) + W - 2, NT - 1);
    const int64_t cb = (int64_t)blockIdx.x * TW;
    bf16 *xt = tile, *dyt = tile + (CONV_SB * CONV_S + 2 * W - 1) * TW;
    if constexpr (TILE) {
        conv_tile_load<TW>(xt, x, R0 - W, Rtop + 1, NT, C, cb);
        conv_tile_load<TW>(dyt, dy, R0, Rtop + 1, NT, C, cb);
        cp_async_wait<0>();
        __syncthreads();
    }
    float gw[VC][W + 1]; // this thread's dw taps and (last) dbias
#pragma unroll
    for (int v = 0; v < VC; v++)
#pragma unroll
        for (int j = 0; j <= W; j++) gw[v][j] = 0.0f;
    if (c < C && r0 < NT) {
        float ks[VC][W], b[VC];
        static_taps<W, VC>(ks, b, w, bias, c);
        // from the top: rows r1 .. r1 + W − 2 read rows of the strip (their dz reaches its dx)
        const int64_t top = min(r1 + W - 2, NT - 1);
        float xw[VC][W], pend[VC][W]; // xw[v][j] = x[n − (W − 1) + j]; pend[v][i]: dx of row n − i so far
#pragma unroll
        for (int j = 0; j < W; j++) {
            float t[VC];
            walk_load<VC, TILE, TW>(t, x, xt, top - (W - 1) + j, R0 - W, C, c, cb);
#pragma unroll
            for (int v = 0; v < VC; v++) xw[v][j] = t[v], pend[v][j] = 0.0f;
        }
        int64_t s0, s1;
        seq_of(top, T, cu, nseq, &s0, &s1);
        for (int64_t nb = top; nb >= r0; nb -= CONV_U) {
            float dyn[CONV_U][VC], xn[CONV_U][VC]; // dy of rows nb − u, x of rows nb − u − W (the next window's)
#pragma unroll
            for (int u = 0; u < CONV_U; u++) {
                const bool in = nb - u >= r0;
                walk_load<VC, TILE, TW>(dyn[u], dy, dyt, in ? nb - u : -1, R0, C, c, cb);
                walk_load<VC, TILE, TW>(xn[u], x, xt, in ? nb - u - W : -1, R0 - W, C, c, cb);
            }
#pragma unroll
            for (int u = 0; u < CONV_U; u++) {
                const int64_t n = nb - u;
                if (n < r0) break;
                if (n < s0) seq_of(n, T, cu, nseq, &s0, &s1);
                float k[VC][W], d[VC];
                row_taps<W, VC>(k, ks, kdyn, n, C, c);
#pragma unroll
                for (int v = 0; v < VC; v++) {
                    d[v] = dyn[u][v];
                    if (act) { // z as the forward computed it
                        float z = b[v];
#pragma unroll
                        for (int j = 0; j < W; j++)
                            if (n - (W - 1) + j >= s0) z = fmaf(k[v][j], xw[v][j], z);
                        const float sg = sigmoidf_(z);
                        d[v] *= sg * (1.0f + z * (1.0f - sg));
                    }
                    // row n − (W − 1) + j read x through tap j: its dx gains d K[j] (same sequence only)
#pragma unroll
                    for (int j = 0; j < W; j++)
                        if (n - (W - 1) + j >= s0) pend[v][W - 1 - j] = fmaf(d[v], k[v][j], pend[v][W - 1 - j]);
                }
                if (n < r1) { // a row of the strip: its dx is complete; its dw, dbias, dkdyn terms
                    float o[VC];
#pragma unroll
                    for (int v = 0; v < VC; v++) {
                        o[v] = pend[v][0];
                        gw[v][W] += d[v];
#pragma unroll
                        for (int j = 0; j < W; j++) {
                            const bool on = n - (W - 1) + j >= s0;
                            if (on) gw[v][j] = fmaf(d[v], xw[v][j], gw[v][j]);
                            if (dkdyn) dkdyn[(n * C + c + v) * W + j] = f2bf(on ? d[v] * xw[v][j] : 0.0f);
                        }
                    }
                    store_ch<VC>(dx, n, C, c, o);
                }
#pragma unroll
                for (int v = 0; v < VC; v++) { // one row down
#pragma unroll
                    for (int i = 0; i < W - 1; i++) pend[v][i] = pend[v][i + 1];
                    pend[v][W - 1] = 0.0f;
#pragma unroll
                    for (int j = W - 1; j > 0; j--) xw[v][j] = xw[v][j - 1];
                    xw[v][0] = xn[u][v];
                }
            }
        }
    }
    if (!dw && !dbias) return; // (uniform over the block)
#pragma unroll
    for (int v = 0; v < VC; v++)
#pragma unroll
        for (int j = 0; j <= W; j++) red[sb][tc * VC + v][j] = gw[v][j];
    __syncthreads();
    for (int i = threadIdx.x; i < CONV_CT * VC * (W + 1); i += blockDim.x) {
        const int ch = i / (W + 1), j = i % (W + 1);
        const int64_t cc = (int64_t)blockIdx.x * CONV_CT * VC + ch;
        if (cc >= C) continue;
        float s = 0.0f;
        for (int k = 0; k < CONV_SB; k++) s += red[k][ch][j];
        if (j < W && dw) atomicAdd(dw + cc * W + j, s);
        if (j == W && dbias) atomicAdd(dbias + cc, s);
    }
}

// Two channels a thread where C is even and the rows 4-byte aligned.
static bool conv_walk_vc2(int64_t C, const void *a, const void *b, const void *c) {
    const uintptr_t m = (uintptr_t)a | (uintptr_t)b | (uintptr_t)c;
    return (C & 1) == 0 && (m & 3) == 0;
}
// The TILE walks: two channels a thread, 16-byte groups of whole rows, 16-byte aligned tiles.
static bool conv_walk_tile(int64_t C, const void *a, const void *b) {
    return C % 8 == 0 && is_aligned16(a) && is_aligned16(b);
}

// LAUNCH(W, VC) for the walk instance of w (1 .. 4) taps and vc (1, 2) channels a thread.
#define CONV_WALK_DISPATCH(w, vc, LAUNCH)                                                                           \
    switch ((w) * 2 + (vc) - 1) {                                                                                  \
    case 2: LAUNCH(1, 1); break;                                                                                   \
    case 3: LAUNCH(1, 2); break;                                                                                   \
    case 4: LAUNCH(2, 1); break;                                                                                   \
    case 5: LAUNCH(2, 2); break;                                                                                   \
    case 6: LAUNCH(3, 1); break;                                                                                   \
    case 7: LAUNCH(3, 2); break;                                                                                   \
    case 8: LAUNCH(4, 1); break;                                                                                   \
    default: LAUNCH(4, 2); break;                                                                                  \
    }

static dim3 conv_walk_grid(int64_t NT, int64_t C, int vc) {
    return dim3((unsigned)ceil_div64(C, (int64_t)CONV_CT * vc), (unsigned)ceil_div64(NT, (int64_t)CONV_SB * CONV_S));
}

static int conv_width(const pn_tensor *x, const pn_tensor *w, const pn_tensor *kdyn) {
    return (int)(w ? pn_numel(w) / x->shape[2] : pn_numel(kdyn) / pn_numel(x));
}

// The TILE walks' launches: dynamic shared memory for the x tile (forward), x and dy tiles (backward: 68 KB
// at W 4, over the 48 KB default).
#define CONV_TW (CONV_CT * 2) // a tile's channels
template <int W>
static void conv_fwd_tile(pn_tensor *y, const pn_tensor *x, const pn_tensor *w, const pn_tensor *bias,
                          const pn_tensor *kdyn, const int32_t *cu, int nseq, int64_t NT, int64_t T, int64_t C, int act) {
    const size_t sm = (size_t)(CONV_SB * CONV_S + W - 1) * CONV_TW * sizeof(bf16);
    pn_launch(conv_fwd_walk<W, 2, true>, conv_walk_grid(NT, C, 2), CONV_THREADS, sm, (bf16 *)y->data,
              (const bf16 *)x->data, w ? (const bf16 *)w->data : NULL, bias ? (const bf16 *)bias->data : NULL,
              kdyn ? (const bf16 *)kdyn->data : NULL, cu, nseq, NT, T, C, act);
}
template <int W>
static void conv_bwd_tile(bf16 *dx, float *dw, float *dbias, bf16 *dkdyn, const bf16 *dy, const bf16 *x, const bf16 *w,
                          const bf16 *bias, const bf16 *kdyn, const int32_t *cu, int nseq, int64_t NT, int64_t T,
                          int64_t C, int act) {
    const size_t sm = (size_t)(2 * CONV_SB * CONV_S + 3 * W - 2) * CONV_TW * sizeof(bf16);
    static bool opted_in; // the attribute, once a process and instance
    if (!opted_in) {
        CUDA_CHECK(cudaFuncSetAttribute(conv_bwd_walk<W, 2, true>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)sm));
        opted_in = true;
    }
    pn_launch_plain(conv_bwd_walk<W, 2, true>, conv_walk_grid(NT, C, 2), CONV_THREADS, sm, dx, dw, dbias, dkdyn, dy, x,
                    w, bias, kdyn, cu, nseq, NT, T, C, act);
}

void pn_cuda_conv1d(pn_tensor *y, const pn_tensor *x, const pn_tensor *w, const pn_tensor *bias, const pn_tensor *kdyn,
                    int act_silu, const pn_tensor *cu_seqlens) {
    const int64_t T = x->shape[1], C = x->shape[2], NT = x->shape[0] * T;
    if (NT * C == 0) return;
    const int W = conv_width(x, w, kdyn);
    PN_ASSERT(W >= 1 && W <= 64);
    const int32_t *cu = cu_seqlens ? (const int32_t *)cu_seqlens->data : NULL;
    const int nseq = cu_seqlens ? (int)(pn_numel(cu_seqlens) - 1) : 0;
    if (W <= 4) {
        const int vc = conv_walk_vc2(C, x->data, y->data, x->data) ? 2 : 1;
        const bool tile = conv_walk_tile(C, x->data, x->data) && vc == 2;
#define CONV_FWD(WW, VV)                                                                                             \
    if (tile) conv_fwd_tile<WW>(y, x, w, bias, kdyn, cu, nseq, NT, T, C, act_silu);                                   \
    else pn_launch(conv_fwd_walk<WW, VV, false>, conv_walk_grid(NT, C, VV), CONV_THREADS, 0, (bf16 *)y->data,         \
                   (const bf16 *)x->data, w ? (const bf16 *)w->data : NULL, bias ? (const bf16 *)bias->data : NULL,  \
                   kdyn ? (const bf16 *)kdyn->data : NULL, cu, nseq, NT, T, C, act_silu)
        CONV_WALK_DISPATCH(W, vc, CONV_FWD);
#undef CONV_FWD
        CUDA_LAUNCH_CHECK();
        return;
    }
    pn_launch(conv_fwd_kernel, grid_1d(NT * C, 256), 256, 0,
        (bf16 *)y->data, (const bf16 *)x->data, w ? (const bf16 *)w->data : NULL, bias ? (const bf16 *)bias->data : NULL,
        kdyn ? (const bf16 *)kdyn->data : NULL, cu_seqlens ? (const int32_t *)cu_seqlens->data : NULL,
        cu_seqlens ? (int)(pn_numel(cu_seqlens) - 1) : 0, NT, T, C, W, act_silu);
    CUDA_LAUNCH_CHECK();
}

// conv1d_continue: one thread per (sequence b, channel c) computes its T outputs over e_b = cache[b], x[b] with
// conv_z's terms in conv_z's order (so the bits of conv1d over e_b), then shifts the cache column: the thread
// that writes a cache element is the only one that reads it.
__global__ void conv_continue_kernel(bf16 *y, bf16 *cache, const bf16 *x, const bf16 *w, const bf16 *kdyn, int64_t B,
                                     int64_t T, int64_t C, int W, int act) {
    pdl_trigger();
    pdl_wait();
    const int64_t total = B * C, stride = (int64_t)gridDim.x * blockDim.x;
    const int H = W - 1;
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += stride) {
        const int64_t b = idx / C, c = idx % C;
        bf16 *cb = cache + b * H * C + c;
        const bf16 *xb = x + b * T * C + c;
        for (int64_t t = 0; t < T; t++) {
            const bf16 *k = kdyn ? kdyn + ((b * T + t) * C + c) * W : w + c * W;
            float z = 0.0f;
            for (int j = 0; j < W; j++) {
                const int64_t i = t + j; // row of e_b
                z = fmaf(bf2f(k[j]), bf2f(i < H ? cb[i * C] : xb[(i - H) * C]), z);
            }
            y[(b * T + t) * C + c] = f2bf(act ? z * sigmoidf_(z) : z);
        }
        for (int64_t i = 0; i < H; i++) cb[i * C] = T + i < H ? cb[(T + i) * C] : xb[(T + i - H) * C];
    }
}

void pn_cuda_conv1d_continue(pn_tensor *y, pn_tensor *cache, const pn_tensor *x, const pn_tensor *w,
                             const pn_tensor *kdyn, int act_silu) {
    const int64_t B = x->shape[0], T = x->shape[1], C = x->shape[2];
    if (B * C == 0) return;
    const int W = conv_width(x, w, kdyn);
    PN_ASSERT(W >= 1 && W <= 64);
    pn_launch(conv_continue_kernel, grid_1d(B * C, 256), 256, 0, (bf16 *)y->data, (bf16 *)cache->data,
              (const bf16 *)x->data, w ? (const bf16 *)w->data : NULL, kdyn ? (const bf16 *)kdyn->data : NULL, B, T, C,
              W, act_silu);
    CUDA_LAUNCH_CHECK();
}

void pn_cuda_conv1d_bwd(pn_tensor *dx, pn_tensor *dw, pn_tensor *dbias, pn_tensor *dkdyn, const pn_tensor *dy,
                        const pn_tensor *x, const pn_tensor *w, const pn_tensor *bias, const pn_tensor *kdyn,
                        int act_silu, const pn_tensor *cu_seqlens) {
    const int64_t T = x->shape[1], C = x->shape[2], NT = x->shape[0] * T;
    if (NT * C == 0) return;
    const int W = conv_width(x, w, kdyn);
    PN_ASSERT(W >= 1 && W <= 64);
    const int32_t *cu = cu_seqlens ? (const int32_t *)cu_seqlens->data : NULL;
    const int nseq = cu_seqlens ? (int)(pn_numel(cu_seqlens) - 1) : 0;
    const bf16 *xb = (const bf16 *)x->data, *wb = w ? (const bf16 *)w->data : NULL;
    const bf16 *bb = bias ? (const bf16 *)bias->data : NULL, *kb = kdyn ? (const bf16 *)kdyn->data : NULL;
    if (W <= 4) {
        const int vc = conv_walk_vc2(C, x->data, dy->data, dx->data) ? 2 : 1;
        const bool tile = conv_walk_tile(C, x->data, dy->data) && vc == 2;
        float *dwp = !kdyn && dw ? (float *)dw->data : NULL, *dbp = !kdyn && dbias ? (float *)dbias->data : NULL;
        bf16 *dkp = kdyn && dkdyn ? (bf16 *)dkdyn->data : NULL;
        bf16 *dxb = (bf16 *)dx->data;
        const bf16 *dyb = (const bf16 *)dy->data;
#define CONV_BWD(WW, VV)                                                                                             \
    if (tile) conv_bwd_tile<WW>(dxb, dwp, dbp, dkp, dyb, xb, wb, bb, kb, cu, nseq, NT, T, C, act_silu);               \
    else pn_launch_plain(conv_bwd_walk<WW, VV, false>, conv_walk_grid(NT, C, VV), CONV_THREADS, 0, dxb, dwp, dbp, dkp,  \
                         dyb, xb, wb, bb, kb, cu, nseq, NT, T, C, act_silu)
        CONV_WALK_DISPATCH(W, vc, CONV_BWD);
#undef CONV_BWD
        CUDA_LAUNCH_CHECK();
        return;
    }
    float *dz = (float *)pn_cuda_ws(PN_WS_CONV, sizeof(float) * (size_t)(NT * C));
    pn_launch_plain(conv_dz_kernel, grid_1d(NT * C, 256), 256, 0, dz, (const bf16 *)dy->data, xb, wb, bb, kb, cu,
                    nseq, NT, T, C, W, act_silu);
    CUDA_LAUNCH_CHECK();
    pn_launch_plain(conv_dx_kernel, grid_1d(NT * C, 256), 256, 0, (bf16 *)dx->data,
                    dkdyn ? (bf16 *)dkdyn->data : NULL, dz, xb, wb, kb, cu, nseq, NT, T, C, W);
    CUDA_LAUNCH_CHECK();
    if (!kdyn && (dw || dbias)) {
        const int64_t rows_per_block = 512;
        const dim3 grid((unsigned)ceil_div64(C, 32), (unsigned)ceil_div64(NT, rows_per_block));
        pn_launch_plain(conv_dw_kernel, grid, 256, 0, dw ? (float *)dw->data : NULL,
                        dbias ? (float *)dbias->data : NULL, dz, xb, cu, nseq, NT, T, C, W, rows_per_block);
        CUDA_LAUNCH_CHECK();
    }
}
