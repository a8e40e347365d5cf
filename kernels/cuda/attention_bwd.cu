// attention_bwd.cu: backward of causal (optionally sliding-window) GQA attention for training, the exact
// transpose of kernels/cpu/attention.c's backward (keys are the T tokens themselves, pos0 = 0).
//
// Two passes, so no atomics and no T x T buffer:
// (1) one block per query row (t, head, batch): recompute the row's softmax statistics (max and sum, kept
//     as the log-sum-exp L_t), delta_t = <dO_t, O_t>, and dQ_t = scale * sum_s P_ts (dP_ts - delta_t) K_s;
//     L and delta go to a small fp32 workspace [B, Hq, T].
// (2) one block per key row (s, kv head, batch): for every query of the kv head's GQA group that sees s,
//     P_ts = exp(scale q_t.k_s - L_t), dK_s = scale * sum P_ts (dP_ts - delta_t) q_t and dV_s = sum P_ts dO_t.
// This is the correct, simple baseline (fp32 CUDA cores, no tensor cores): O(T^2 D) work per head without
// the flash-attention tiling; the fast backward (cuDNN SDPA backward or an mma kernel) replaces it.
#include <math.h>

#include "common.cuh"

#define BWD_THREADS 128

// ----------------------------------------------------------------------------------------------------
// kernels

__device__ __forceinline__ float bwd_block_sum(float v, float *red) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    float r = 0.0f;
    for (int i = 0; i < (int)(blockDim.x >> 5); i++) r += red[i];
    __syncthreads();
    return r;
}

__device__ __forceinline__ float bwd_block_max(float v, float *red) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    float r = -INFINITY;
    for (int i = 0; i < (int)(blockDim.x >> 5); i++) r = fmaxf(r, red[i]);
    __syncthreads();
    return r;
}

// grid (T, Hq, B). Shared: q, do (D floats each), ds of one key tile (BWD_THREADS floats).
__global__ void __launch_bounds__(BWD_THREADS)
    attn_bwd_dq_kernel(bf16 *dq, float *lse, float *delta, const bf16 *q, const bf16 *k, const bf16 *v, const bf16 *o,
                       const bf16 *dout, int T, int Hq, int Hkv, int D, int window, float scale) {
    extern __shared__ float sm[];
    float *qs = sm, *dos = sm + D, *tile = sm + 2 * D, *red = tile + BWD_THREADS;
    const int t = blockIdx.x, h = blockIdx.y, b = blockIdx.z, kvh = h / (Hq / Hkv);
    const int s0 = window > 0 && t - window + 1 > 0 ? t - window + 1 : 0;
    const int64_t row = ((int64_t)(b * T + t) * Hq + h) * D;
    float part = 0.0f;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        qs[d] = bf2f(q[row + d]);
        dos[d] = bf2f(dout[row + d]);
        part += dos[d] * bf2f(o[row + d]);
    }
    __syncthreads();
    const float dlt = bwd_block_sum(part, red);
    // Pass A: the row's max and sum of exp (scores of one key per thread, keys in tiles).
    float mx = -INFINITY;
    for (int s = s0 + threadIdx.x; s <= t; s += blockDim.x) {
        const bf16 *kr = k + ((int64_t)(b * T + s) * Hkv + kvh) * D;
        float dot = 0.0f;
        for (int d = 0; d < D; d++) dot += qs[d] * bf2f(kr[d]);
        mx = fmaxf(mx, dot * scale);
    }
    mx = bwd_block_max(mx, red);
    float sum = 0.0f;
    for (int s = s0 + threadIdx.x; s <= t; s += blockDim.x) {
        const bf16 *kr = k + ((int64_t)(b * T + s) * Hkv + kvh) * D;
        float dot = 0.0f;
        for (int d = 0; d < D; d++) dot += qs[d] * bf2f(kr[d]);
        sum += __expf(dot * scale - mx);
    }
    sum = bwd_block_sum(sum, red);
    const float L = mx + logf(sum);
    if (threadIdx.x == 0) {
        lse[((int64_t)b * Hq + h) * T + t] = L;
        delta[((int64_t)b * Hq + h) * T + t] = dlt;
    }
    // Pass B: dS for a tile of keys (one per thread), then each thread accumulates its dims of dQ.
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f}; // D <= 4 * BWD_THREADS
    for (int base = s0; base <= t; base += blockDim.x) {
        const int s = base + (int)threadIdx.x;
        float ds = 0.0f;
        if (s <= t) {
            const bf16 *kr = k + ((int64_t)(b * T + s) * Hkv + kvh) * D, *vr = v + ((int64_t)(b * T + s) * Hkv + kvh) * D;
            float dot = 0.0f, dp = 0.0f;
            for (int d = 0; d < D; d++) dot += qs[d] * bf2f(kr[d]), dp += dos[d] * bf2f(vr[d]);
            const float p = __expf(dot * scale - L);
            ds = p * (dp - dlt) * scale;
        }
        tile[threadIdx.x] = ds;
        __syncthreads();
        const int n = min((int)blockDim.x, t - base + 1);
        for (int j = 0; j < n; j++) {
            const bf16 *kr = k + ((int64_t)(b * T + base + j) * Hkv + kvh) * D;
            const float w = tile[j];
#pragma unroll
            for (int c = 0; c < 4; c++) {
                const int d = threadIdx.x + c * blockDim.x;
                if (d < D) acc[c] += w * bf2f(kr[d]);
            }
        }
        __syncthreads();
    }
#pragma unroll
    for (int c = 0; c < 4; c++) {
        const int d = threadIdx.x + c * blockDim.x;
        if (d < D) dq[row + d] = f2bf(acc[c]);
    }
}

// grid (T, Hkv, B). Shared: k, v rows (D floats each), P and dS of one query tile (2 x BWD_THREADS floats).
__global__ void __launch_bounds__(BWD_THREADS)
    attn_bwd_dkv_kernel(bf16 *dk, bf16 *dv, const float *lse, const float *delta, const bf16 *q, const bf16 *k,
                        const bf16 *v, const bf16 *dout, int T, int Hq, int Hkv, int D, int window, float scale) {
    extern __shared__ float sm[];
    float *ks = sm, *vs = sm + D, *ptile = sm + 2 * D, *dstile = ptile + BWD_THREADS;
    const int s = blockIdx.x, kvh = blockIdx.y, b = blockIdx.z, group = Hq / Hkv;
    const int t1 = window > 0 && s + window - 1 < T - 1 ? s + window - 1 : T - 1; // last query that sees s
    const int64_t krow = ((int64_t)(b * T + s) * Hkv + kvh) * D;
    for (int d = threadIdx.x; d < D; d += blockDim.x) ks[d] = bf2f(k[krow + d]), vs[d] = bf2f(v[krow + d]);
    __syncthreads();
    float adk[4] = {0.0f, 0.0f, 0.0f, 0.0f}, adv[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int h = kvh * group; h < (kvh + 1) * group; h++)
        for (int base = s; base <= t1; base += blockDim.x) {
            const int t = base + (int)threadIdx.x;
            float p = 0.0f, ds = 0.0f;
            if (t <= t1) {
                const int64_t qrow = ((int64_t)(b * T + t) * Hq + h) * D;
                float dot = 0.0f, dp = 0.0f;
                for (int d = 0; d < D; d++) dot += bf2f(q[qrow + d]) * ks[d], dp += bf2f(dout[qrow + d]) * vs[d];
                p = __expf(dot * scale - lse[((int64_t)b * Hq + h) * T + t]);
                ds = p * (dp - delta[((int64_t)b * Hq + h) * T + t]) * scale;
            }
            ptile[threadIdx.x] = p;
            dstile[threadIdx.x] = ds;
            __syncthreads();
            const int n = min((int)blockDim.x, t1 - base + 1);
            for (int j = 0; j < n; j++) {
                const int64_t qrow = ((int64_t)(b * T + base + j) * Hq + h) * D;
                const float pj = ptile[j], dsj = dstile[j];
#pragma unroll
                for (int c = 0; c < 4; c++) {
                    const int d = threadIdx.x + c * blockDim.x;
                    if (d < D) adk[c] += dsj * bf2f(q[qrow + d]), adv[c] += pj * bf2f(dout[qrow + d]);
                }
            }
            __syncthreads();
        }
#pragma unroll
    for (int c = 0; c < 4; c++) {
        const int d = threadIdx.x + c * blockDim.x;
        if (d < D) dk[krow + d] = f2bf(adk[c]), dv[krow + d] = f2bf(adv[c]);
    }
}

// ----------------------------------------------------------------------------------------------------
// launchers

static float *stats = NULL; // L and delta, [2][B, Hq, T] fp32, grown as needed (one GPU per process)
static size_t stats_bytes = 0;

void pn_cuda_attention_bwd(pn_tensor *dq, pn_tensor *dk, pn_tensor *dv, const pn_tensor *dout, const pn_tensor *q,
                           const pn_tensor *k, const pn_tensor *v, const pn_tensor *out, int window) {
    const int B = (int)q->shape[0], T = (int)q->shape[1], Hq = (int)q->shape[2], D = (int)q->shape[3];
    const int Hkv = (int)k->shape[2];
    if (D > 4 * BWD_THREADS) pn_panic("attention_bwd: head dim %d > %d", D, 4 * BWD_THREADS);
    const size_t need = 2 * sizeof(float) * (size_t)B * (size_t)Hq * (size_t)T;
    if (need > stats_bytes) {
        if (stats) CUDA_CHECK(cudaFree(stats));
        CUDA_CHECK(cudaMalloc(&stats, need));
        stats_bytes = need;
    }
    float *lse = stats, *delta = stats + (size_t)B * Hq * T;
    const float scale = 1.0f / sqrtf((float)D);
    const size_t smem = sizeof(float) * (size_t)(2 * D + 2 * BWD_THREADS + 32);
    attn_bwd_dq_kernel<<<dim3(T, Hq, B), BWD_THREADS, smem>>>((bf16 *)dq->data, lse, delta, (const bf16 *)q->data,
                                                             (const bf16 *)k->data, (const bf16 *)v->data,
                                                             (const bf16 *)out->data, (const bf16 *)dout->data, T, Hq,
                                                             Hkv, D, window, scale);
    CUDA_LAUNCH_CHECK();
    attn_bwd_dkv_kernel<<<dim3(T, Hkv, B), BWD_THREADS, smem>>>((bf16 *)dk->data, (bf16 *)dv->data, lse, delta,
                                                               (const bf16 *)q->data, (const bf16 *)k->data,
                                                               (const bf16 *)v->data, (const bf16 *)dout->data, T, Hq,
                                                               Hkv, D, window, scale);
    CUDA_LAUNCH_CHECK();
}
