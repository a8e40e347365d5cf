// conv1d.cu: the causal depthwise convolutions of the linear blocks, forward and backward — Gated DeltaNet's
// short convolutions (a static kernel w [C, W] per channel, optional bias) and JetBlock's dynamic one (a
// kernel per token and channel, kdyn [B, T, C * W], tap fastest), optionally through SiLU. bf16 in memory,
// fp32 in registers. The contract is pn_op_conv1d's (kernels/ops.h), the reference kernels/cpu/conv1d.c.
//
// Non-obvious:
// - Tokens are flat rows n = b T + t. A row's sequence is [s0, s1): b's T rows, or with cu_seqlens (B = 1)
//   the packed sequence containing it, found by binary search over the offsets in the kernel. Taps before s0
//   read zero, so nothing crosses a sequence start.
// - The backward first writes dz = dy * act'(z) (z recomputed, W multiply-adds) to an fp32 scratch; dx then
//   gathers dz of the W tokens that read each row, dkdyn = dz x, and the static dw, dbias are sums over all
//   rows, reduced per block in shared memory and added with one atomic per (channel, tap) and block.
#include "common.cuh"


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


static int conv_width(const pn_tensor *x, const pn_tensor *w, const pn_tensor *kdyn) {
    return (int)(w ? pn_numel(w) / x->shape[2] : pn_numel(kdyn) / pn_numel(x));
}

void pn_cuda_conv1d(pn_tensor *y, const pn_tensor *x, const pn_tensor *w, const pn_tensor *bias, const pn_tensor *kdyn,
                    int act_silu, const pn_tensor *cu_seqlens) {
    const int64_t T = x->shape[1], C = x->shape[2], NT = x->shape[0] * T;
    if (NT * C == 0) return;
    const int W = conv_width(x, w, kdyn);
    PN_ASSERT(W >= 1 && W <= 64);
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
    float *dz = (float *)pn_cuda_ws(PN_WS_CONV, sizeof(float) * (size_t)(NT * C));
    conv_dz_kernel<<<grid_1d(NT * C, 256), 256, 0, pn_cuda_stream()>>>(dz, (const bf16 *)dy->data, xb, wb, bb, kb, cu, nseq, NT, T, C, W,
                                                  act_silu);
    CUDA_LAUNCH_CHECK();
    conv_dx_kernel<<<grid_1d(NT * C, 256), 256, 0, pn_cuda_stream()>>>((bf16 *)dx->data, dkdyn ? (bf16 *)dkdyn->data : NULL, dz, xb, wb, kb,
                                                  cu, nseq, NT, T, C, W);
    CUDA_LAUNCH_CHECK();
    if (!kdyn && (dw || dbias)) {
        const int64_t rows_per_block = 512;
        const dim3 grid((unsigned)ceil_div64(C, 32), (unsigned)ceil_div64(NT, rows_per_block));
        conv_dw_kernel<<<grid, 256, 0, pn_cuda_stream()>>>(dw ? (float *)dw->data : NULL, dbias ? (float *)dbias->data : NULL, dz, xb, cu,
                                      nseq, NT, T, C, W, rows_per_block);
        CUDA_LAUNCH_CHECK();
    }
}
