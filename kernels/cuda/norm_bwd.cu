// norm_bwd.cu: the backward of RMSNorm, and the linear blocks' gated RMSNorm (fla's FusedRMSNormGated with
// a swish gate: y = x / sqrt(mean(x^2) + eps) * w * silu(gate)) forward and backward. bf16 in memory, fp32
// statistics; one warp per row.
//
// Non-obvious: the weight gradient is a sum over all rows. Each block accumulates its rows into a [D] fp32
// partial in shared memory (shared-memory atomics: warps of a block share columns) and adds it to dw with
// one global atomic per column at the end; rows wider than the shared-memory budget add to dw directly.
#include "common.cuh"

#define NB_WARPS 8
#define NB_SMEM_COLS 12288 // 48 KB of fp32 partials


// Zero the block's dw partial (when used); returns where this block accumulates dw.
__device__ __forceinline__ float *dw_partial(float *dw, int64_t D, float *smem) {
    if (!dw || D > NB_SMEM_COLS) return dw;
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) smem[i] = 0.0f;
    __syncthreads();
    return smem;
}

__device__ __forceinline__ void dw_flush(float *dw, float *part, int64_t D) {
    if (!dw || part == dw) return;
    __syncthreads();
    for (int64_t i = threadIdx.x; i < D; i += blockDim.x) atomicAdd(dw + i, part[i]);
}

// mode 0: RMSNorm backward (gate NULL, y unused); 1: gated forward (y out); 2: gated backward.
template <int MODE>
__global__ void __launch_bounds__(NB_WARPS * 32)
    norm_kernel(bf16 *out, bf16 *dgate, float *dw, const bf16 *dy, const bf16 *x, const bf16 *gate, const bf16 *w,
                int64_t rows, int64_t D, float eps) {
    extern __shared__ float nb_smem[];
    pdl_trigger();
    pdl_wait();
    float *part = MODE == 1 ? NULL : dw_partial(dw, D, nb_smem);
    const int lane = threadIdx.x & 31;
    const int64_t warp = (int64_t)blockIdx.x * NB_WARPS + (threadIdx.x >> 5), nw = (int64_t)gridDim.x * NB_WARPS;
    for (int64_t r = warp; r < rows; r += nw) {
        const bf16 *xr = x + r * D;
        float ss = 0.0f, dot = 0.0f;
        for (int64_t i = lane; i < D; i += 32) {
            const float xv = bf2f(xr[i]);
            ss = fmaf(xv, xv, ss);
            if (MODE == 0) dot = fmaf(xv, bf2f(w[i]) * bf2f(dy[r * D + i]), dot);
            if (MODE == 2) {
                const float gv = bf2f(gate[r * D + i]);
                dot = fmaf(xv, bf2f(dy[r * D + i]) * gv * sigmoidf_(gv) * bf2f(w[i]), dot);
            }
        }
        ss = warp_sum(ss);
        if (MODE != 1) dot = warp_sum(dot);
        const float inv = 1.0f / sqrtf(ss / (float)D + eps), c = dot / (float)D * inv * inv;
        for (int64_t i = lane; i < D; i += 32) {
            const int64_t o = r * D + i;
            const float xv = bf2f(xr[i]), wv = bf2f(w[i]);
            if (MODE == 0) {
                const float d = bf2f(dy[o]);
                out[o] = f2bf(inv * (wv * d - xv * c));
                if (part) atomicAdd(part + i, d * xv * inv);
            } else {
                const float gv = bf2f(gate[o]), sg = sigmoidf_(gv), silu = gv * sg, n = xv * inv;
                if (MODE == 1) {
                    out[o] = f2bf(n * wv * silu);
                } else {
                    const float d = bf2f(dy[o]);
                    dgate[o] = f2bf(d * n * wv * sg * (1.0f + gv * (1.0f - sg)));
                    out[o] = f2bf(inv * (d * silu * wv - xv * c));
                    if (part) atomicAdd(part + i, d * n * silu);
                }
            }
        }
    }
    if (MODE != 1) dw_flush(dw, part, D);
}

// The gated norm's forward, 8 values per load (D % 8 == 0, 16-byte aligned tensors), a warp per row: a
// JetBlock decode step's 12 rows of 256 take one load per lane where norm_kernel<1> makes eight dependent
// ones (8 us per layer under ncu at Jet-Nemotron-2B's shape). The sum of squares runs in another order than
// norm_kernel's (float rounding apart); the rest is its arithmetic.
__global__ void __launch_bounds__(NB_WARPS * 32)
    gated_norm_fwd_kernel(bf16 *out, const bf16 *x, const bf16 *gate, const bf16 *w, int64_t rows, int64_t D, float eps) {
    pdl_trigger();
    pdl_wait();
    const int lane = threadIdx.x & 31;
    const int64_t warp = (int64_t)blockIdx.x * NB_WARPS + (threadIdx.x >> 5), nw = (int64_t)gridDim.x * NB_WARPS;
    for (int64_t r = warp; r < rows; r += nw) {
        const bf16 *xr = x + r * D, *gr = gate + r * D;
        float ss = 0.0f;
        for (int64_t c = lane * 8; c < D; c += 32 * 8) {
            float v[8];
            load_chunk<8>(xr + c, v);
#pragma unroll
            for (int i = 0; i < 8; i++) ss = fmaf(v[i], v[i], ss);
        }
        const float inv = 1.0f / sqrtf(warp_sum(ss) / (float)D + eps);
        for (int64_t c = lane * 8; c < D; c += 32 * 8) {
            float xv[8], gv[8], wv[8], y[8];
            load_chunk<8>(xr + c, xv), load_chunk<8>(gr + c, gv), load_chunk<8>(w + c, wv);
#pragma unroll
            for (int i = 0; i < 8; i++) y[i] = xv[i] * inv * wv[i] * (gv[i] * sigmoidf_(gv[i]));
            store_chunk<8>(out + r * D + c, y);
        }
    }
}

template <int MODE>
static void launch(bf16 *out, bf16 *dgate, float *dw, const pn_tensor *dy, const pn_tensor *x, const pn_tensor *gate,
                   const pn_tensor *w, float eps) {
    const int64_t D = w->shape[0], rows = pn_numel(x) / D;
    if (rows == 0 || D == 0) return;
    int64_t blocks = ceil_div64(rows, NB_WARPS);
    if (blocks > 1056) blocks = 1056; // ~8 per SM: enough warps, few dw flushes
    const size_t smem = (MODE != 1 && dw && D <= NB_SMEM_COLS) ? sizeof(float) * (size_t)D : 0;
    pn_launch(norm_kernel<MODE>, (unsigned)blocks, NB_WARPS * 32, smem, out, dgate, dw, dy ? (const bf16 *)dy->data : NULL,
              (const bf16 *)x->data, gate ? (const bf16 *)gate->data : NULL, (const bf16 *)w->data, rows, D, eps);
    CUDA_LAUNCH_CHECK();
}

void pn_cuda_rmsnorm_bwd(pn_tensor *dx, pn_tensor *dw, const pn_tensor *dy, const pn_tensor *x, const pn_tensor *w,
                         float eps) {
    launch<0>((bf16 *)dx->data, NULL, dw ? (float *)dw->data : NULL, dy, x, NULL, w, eps);
}

void pn_cuda_gated_rmsnorm(pn_tensor *y, const pn_tensor *x, const pn_tensor *gate, const pn_tensor *w, float eps) {
    const int64_t D = w->shape[0], rows = D ? pn_numel(x) / D : 0;
    if (rows > 0 && D % 8 == 0 && is_aligned16(y->data) && is_aligned16(x->data) && is_aligned16(gate->data) &&
        is_aligned16(w->data)) {
        const int64_t blocks = ceil_div64(rows, NB_WARPS);
        pn_launch(gated_norm_fwd_kernel, (unsigned)(blocks > 1056 ? 1056 : blocks), NB_WARPS * 32, 0, (bf16 *)y->data,
                  (const bf16 *)x->data, (const bf16 *)gate->data, (const bf16 *)w->data, rows, D, eps);
        CUDA_LAUNCH_CHECK();
        return;
    }
    launch<1>((bf16 *)y->data, NULL, NULL, NULL, x, gate, w, eps);
}

void pn_cuda_gated_rmsnorm_bwd(pn_tensor *dx, pn_tensor *dgate, pn_tensor *dw, const pn_tensor *dy, const pn_tensor *x,
                               const pn_tensor *gate, const pn_tensor *w, float eps) {
    launch<2>((bf16 *)dx->data, (bf16 *)dgate->data, dw ? (float *)dw->data : NULL, dy, x, gate, w, eps);
}
