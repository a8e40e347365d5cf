// norm_bwd.cu: the backward of RMSNorm, and the linear blocks' gated RMSNorm (fla's FusedRMSNormGated with
// a swish gate: y = x / sqrt(mean(x^2) + eps) * w * silu(gate)) forward and backward. bf16 in memory, fp32
// statistics; one warp per row.
//
// Non-obvious: the weight gradient is a sum over all rows. Each block accumulates its rows into fp32 partials
// in shared memory and adds them to dw with one global atomic per column at the end. The backwards of rows
// of D % 8 == 0 up to 2048 (the hidden size's norms, the gated norm's heads) hold a row in registers and give
// each warp its own [D] partial (norm_bwd_vec_kernel); the general kernel (norm_kernel: the gated forward,
// other widths) shares one [D] partial a block through shared-memory atomics, or adds to dw directly for
// rows wider than the shared-memory budget.
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
                int64_t rows, int64_t D, float eps, int acc) {
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
                const float g = inv * (wv * d - xv * c);
                out[o] = f2bf(acc ? bf2f(out[o]) + g : g);
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

// The backwards (MODE 0: RMSNorm, 2: gated) with a row held in registers: D % 8 == 0 and at most 256 J
// columns, 16-byte aligned tensors. A warp a row, 8 values a load, lane l owning the chunks at columns
// 8 l + 256 j, so a row is read from memory once; the warp's dw partial is its own [D] slice of shared memory
// (no atomics: a lane owns its columns), summed over the block's warps once at the end. norm_kernel instead
// reads every row twice and adds each element's dw term with a shared-memory atomic: 0.073 ms a
// [8192, 1536] call on an H100, 3.3x its bytes' time. ACC (MODE 0): dx += the gradient, the residual's add
// in the same pass (one rounding to bf16 where a separate add made two).
#define NBV_WARPS 4 // 4 x D floats of partials: 32 KB at D 2048

template <int MODE, int J, bool ACC>
__global__ void __launch_bounds__(NBV_WARPS * 32)
    norm_bwd_vec_kernel(bf16 *dx, bf16 *dgate, float *dw, const bf16 *dy, const bf16 *x, const bf16 *gate,
                        const bf16 *w, int64_t rows, int D, float eps) {
    extern __shared__ float4 nbv_smem[];
    pdl_trigger();
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    float4 *part = nbv_smem + (int64_t)wid * (D / 4); // this warp's [D] partial (when dw)
    if (dw) {
        for (int i = lane; i < D / 4; i += 32) part[i] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        __syncwarp();
    }
    pdl_wait();
    const int64_t warp = (int64_t)blockIdx.x * NBV_WARPS + wid, nw = (int64_t)gridDim.x * NBV_WARPS;
    for (int64_t r = warp; r < rows; r += nw) {
        float xv[J][8], dv[J][8], gv[J][8];
        float ss = 0.0f, dot = 0.0f;
#pragma unroll
        for (int j = 0; j < J; j++) {
            const int col = 8 * lane + 256 * j;
            if (col >= D) continue;
            float wv[8];
            load_chunk<8>(x + r * D + col, xv[j]);
            load_chunk<8>(dy + r * D + col, dv[j]);
            if (MODE == 2) load_chunk<8>(gate + r * D + col, gv[j]);
            load_chunk<8>(w + col, wv);
#pragma unroll
            for (int e = 0; e < 8; e++) {
                ss = fmaf(xv[j][e], xv[j][e], ss);
                if (MODE == 0) dot = fmaf(xv[j][e], wv[e] * dv[j][e], dot);
                else dot = fmaf(xv[j][e], dv[j][e] * gv[j][e] * sigmoidf_(gv[j][e]) * wv[e], dot);
            }
        }
        ss = warp_sum(ss);
        dot = warp_sum(dot);
        const float inv = 1.0f / sqrtf(ss / (float)D + eps), c = dot / (float)D * inv * inv;
#pragma unroll
        for (int j = 0; j < J; j++) {
            const int col = 8 * lane + 256 * j;
            if (col >= D) continue;
            float wv[8], o[8], og[8], pw[8];
            load_chunk<8>(w + col, wv);
            if (ACC) load_chunk<8>(dx + r * D + col, o);
#pragma unroll
            for (int e = 0; e < 8; e++) {
                const float d = dv[j][e], xe = xv[j][e];
                if (MODE == 0) {
                    const float g = inv * (wv[e] * d - xe * c);
                    o[e] = ACC ? o[e] + g : g;
                    pw[e] = d * xe * inv;
                } else {
                    const float ge = gv[j][e], sg = sigmoidf_(ge), silu = ge * sg, n = xe * inv;
                    og[e] = d * n * wv[e] * sg * (1.0f + ge * (1.0f - sg));
                    o[e] = inv * (d * silu * wv[e] - xe * c);
                    pw[e] = d * n * silu;
                }
            }
            store_chunk<8>(dx + r * D + col, o);
            if (MODE == 2) store_chunk<8>(dgate + r * D + col, og);
            if (dw) {
                float4 *p = part + col / 4;
                float4 p0 = p[0], p1 = p[1];
                p0.x += pw[0], p0.y += pw[1], p0.z += pw[2], p0.w += pw[3];
                p1.x += pw[4], p1.y += pw[5], p1.z += pw[6], p1.w += pw[7];
                p[0] = p0, p[1] = p1;
            }
        }
    }
    if (!dw) return;
    __syncthreads(); // every warp's partial complete
    const float *pf = (const float *)nbv_smem;
    for (int i = threadIdx.x; i < D; i += blockDim.x) {
        float t = pf[i];
        for (int k = 1; k < NBV_WARPS; k++) t += pf[k * D + i];
        atomicAdd(dw + i, t);
    }
}

// The register-row kernels for D up to 2048 (J 1, 2, 4, 6, 8 chunks a lane); false where they do not apply.
template <int MODE, bool ACC>
static bool launch_vec(bf16 *dx, bf16 *dgate, float *dw, const pn_tensor *dy, const pn_tensor *x, const pn_tensor *gate,
                       const pn_tensor *w, float eps) {
    const int64_t D = w->shape[0], rows = pn_numel(x) / D;
    const void *ptrs[] = {dx, dgate, dy->data, x->data, gate ? gate->data : NULL, w->data};
    if (D % 8 != 0 || D > 2048) return false;
    for (int i = 0; i < 6; i++)
        if (!is_aligned16(ptrs[i])) return false;
    // up to four blocks an SM (16 warps): at D 1536, ~100 KB of rows in flight an SM; no more blocks than
    // that, so fewer partials meet in dw's atomics
    static int n_sm = 0;
    if (!n_sm) CUDA_CHECK(cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, 0));
    int64_t blocks = ceil_div64(rows, NBV_WARPS);
    if (blocks > 4 * n_sm) blocks = 4 * n_sm;
    const size_t smem = dw ? sizeof(float) * NBV_WARPS * (size_t)D : 0;
    const int J = (int)ceil_div64(D, 256);
#define NB_VEC(JJ)                                                                                                 \
    pn_launch(norm_bwd_vec_kernel<MODE, JJ, ACC>, (unsigned)blocks, NBV_WARPS * 32, smem, dx, dgate, dw,             \
              (const bf16 *)dy->data, (const bf16 *)x->data, gate ? (const bf16 *)gate->data : NULL,                  \
              (const bf16 *)w->data, rows, (int)D, eps)
    if (J == 1) NB_VEC(1);
    else if (J == 2) NB_VEC(2);
    else if (J <= 4) NB_VEC(4);
    else if (J <= 6) NB_VEC(6);
    else NB_VEC(8);
#undef NB_VEC
    CUDA_LAUNCH_CHECK();
    return true;
}

template <int MODE>
static void launch(bf16 *out, bf16 *dgate, float *dw, const pn_tensor *dy, const pn_tensor *x, const pn_tensor *gate,
                   const pn_tensor *w, float eps, int acc = 0) {
    const int64_t D = w->shape[0], rows = pn_numel(x) / D;
    if (rows == 0 || D == 0) return;
    int64_t blocks = ceil_div64(rows, NB_WARPS);
    if (blocks > 1056) blocks = 1056; // ~8 per SM: enough warps, few dw flushes
    const size_t smem = (MODE != 1 && dw && D <= NB_SMEM_COLS) ? sizeof(float) * (size_t)D : 0;
    pn_launch(norm_kernel<MODE>, (unsigned)blocks, NB_WARPS * 32, smem, out, dgate, dw, dy ? (const bf16 *)dy->data : NULL,
              (const bf16 *)x->data, gate ? (const bf16 *)gate->data : NULL, (const bf16 *)w->data, rows, D, eps, acc);
    CUDA_LAUNCH_CHECK();
}

void pn_cuda_rmsnorm_bwd(pn_tensor *dx, pn_tensor *dw, const pn_tensor *dy, const pn_tensor *x, const pn_tensor *w,
                         float eps, int accumulate_dx) {
    const int64_t D = w->shape[0];
    if (D == 0 || pn_numel(x) == 0) return;
    bf16 *d = (bf16 *)dx->data;
    float *g = dw ? (float *)dw->data : NULL;
    if (accumulate_dx ? launch_vec<0, true>(d, NULL, g, dy, x, NULL, w, eps) : launch_vec<0, false>(d, NULL, g, dy, x, NULL, w, eps))
        return;
    launch<0>(d, NULL, g, dy, x, NULL, w, eps, accumulate_dx);
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
    const int64_t D = w->shape[0];
    if (D == 0 || pn_numel(x) == 0) return;
    if (launch_vec<2, false>((bf16 *)dx->data, (bf16 *)dgate->data, dw ? (float *)dw->data : NULL, dy, x, gate, w, eps))
        return;
    launch<2>((bf16 *)dx->data, (bf16 *)dgate->data, dw ? (float *)dw->data : NULL, dy, x, gate, w, eps);
}
