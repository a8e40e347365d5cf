// optim.cu: AdamW over one tensor and the sum of squares for the global gradient norm (kernels/ops.h: adamw,
// sumsq). AdamW updates the fp32 master copy (or an fp32 parameter in place) in torch.optim.AdamW's order
// and writes the bf16 parameter rounded to nearest. sumsq gives one partial per block over a fixed
// partition, so the norm is the same on every run.
#include <stdint.h>

#include "common.cuh"

// One element's update: w, m, v in place; returns the new w.
__device__ __forceinline__ float adamw1(float g, float &w, float &m, float &v, const pn_adamw_args &a, float decay,
                                        float step, float bc2s) {
    const float gi = g * a.grad_scale;
    float wi = w * decay;
    const float mi = m + (1.0f - a.beta1) * (gi - m);
    const float vi = v * a.beta2 + (1.0f - a.beta2) * gi * gi;
    wi += -step * (mi / (sqrtf(vi) / bc2s + a.eps));
    m = mi, v = vi, w = wi;
    return wi;
}

// VEC: four elements a thread a step (w, m, v, g 16-byte aligned, a bf16 p 8-byte aligned; elements past the
// last multiple of 4 by the scalar loop): the fp32 state is 28 of the 30 bytes an element moves.
template <bool VEC>
__global__ void adamw_kernel(void *p, int p_bf16, float *w, float *m, float *v, const float *g, int64_t n,
                             pn_adamw_args a, float decay, float step, float bc2s) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x, t0 = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    int64_t done = 0;
    if constexpr (VEC) {
        for (int64_t i = t0; i < n / 4; i += stride) {
            float4 W = ((float4 *)w)[i], M = ((float4 *)m)[i], V = ((float4 *)v)[i];
            const float4 G = ((const float4 *)g)[i];
            adamw1(G.x, W.x, M.x, V.x, a, decay, step, bc2s);
            adamw1(G.y, W.y, M.y, V.y, a, decay, step, bc2s);
            adamw1(G.z, W.z, M.z, V.z, a, decay, step, bc2s);
            adamw1(G.w, W.w, M.w, V.w, a, decay, step, bc2s);
            ((float4 *)w)[i] = W, ((float4 *)m)[i] = M, ((float4 *)v)[i] = V;
            if (p_bf16) {
                __nv_bfloat162 lo = __floats2bfloat162_rn(W.x, W.y), hi = __floats2bfloat162_rn(W.z, W.w);
                uint2 u;
                u.x = *(uint32_t *)&lo, u.y = *(uint32_t *)&hi;
                ((uint2 *)p)[i] = u;
            } else if (p != (void *)w) {
                ((float4 *)p)[i] = W;
            }
        }
        done = n / 4 * 4;
    }
    for (int64_t i = done + t0; i < n; i += stride) {
        const float wi = adamw1(g[i], w[i], m[i], v[i], a, decay, step, bc2s);
        if (p_bf16) ((bf16 *)p)[i] = f2bf(wi);
        else if (p != (void *)w) ((float *)p)[i] = wi;
    }
}

void pn_cuda_adamw(pn_tensor *p, pn_tensor *master, pn_tensor *m, pn_tensor *v, const pn_tensor *g,
                   const pn_adamw_args *a) {
    const int64_t n = pn_numel(p);
    if (n == 0) return;
    const float decay = 1.0f - a->lr * a->weight_decay;
    const float step = (float)((double)a->lr / a->bc1), bc2s = (float)sqrt((double)a->bc2);
    float *w = master ? (float *)master->data : (float *)p->data;
    const int p_bf16 = p->dtype == PN_BF16;
    const bool vec = is_aligned16(w) && is_aligned16(m->data) && is_aligned16(v->data) && is_aligned16(g->data) &&
                     ((uintptr_t)p->data % (p_bf16 ? 8 : 16)) == 0;
    if (vec)
        adamw_kernel<true><<<grid_1d(ceil_div64(n, 4), 256), 256, 0, pn_cuda_stream()>>>(
            p->data, p_bf16, w, (float *)m->data, (float *)v->data, (const float *)g->data, n, *a, decay, step, bc2s);
    else
        adamw_kernel<false><<<grid_1d(n, 256), 256, 0, pn_cuda_stream()>>>(
            p->data, p_bf16, w, (float *)m->data, (float *)v->data, (const float *)g->data, n, *a, decay, step, bc2s);
    CUDA_LAUNCH_CHECK();
}

template <typename T> __device__ __forceinline__ float to_f(T x);
template <> __device__ __forceinline__ float to_f<float>(float x) { return x; }
template <> __device__ __forceinline__ float to_f<bf16>(bf16 x) { return bf2f(x); }

// One block a part: the scalar elements up to the part's first 16-byte boundary, then 16-byte loads four
// deep a thread (one load at a time kept ~2 KB in flight a block: 13 us for a 4.7M-element fp32 gradient on
// an H100, 1.4 TB/s), then the scalar tail. The order of the sums is fixed by n and P alone.
template <typename T> __global__ void sumsq_kernel(float *partial, const T *x, int64_t n, int64_t P) {
    __shared__ float red[32];
    constexpr int VEC = 16 / sizeof(T), DEEP = 4;
    const int64_t tid = threadIdx.x, nt = blockDim.x;
    for (int64_t b = blockIdx.x; b < P; b += gridDim.x) {
        const int64_t i0 = n * b / P, i1 = n * (b + 1) / P;
        const int64_t mis = (int64_t)(((uintptr_t)(x + i0) & 15) / sizeof(T));
        const int64_t head = mis ? min(i1 - i0, (int64_t)VEC - mis) : 0, nv = (i1 - i0 - head) / VEC;
        const int64_t tail0 = i0 + head + nv * VEC;
        float s = 0.0f;
        for (int64_t i = i0 + tid; i < i0 + head; i += nt) s = fmaf(to_f<T>(x[i]), to_f<T>(x[i]), s);
        const uint4 *xv = (const uint4 *)(x + i0 + head);
        float acc[DEEP] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (int64_t j = tid; j < nv; j += DEEP * nt) {
            uint4 u[DEEP];
#pragma unroll
            for (int d = 0; d < DEEP; d++)
                if (j + d * nt < nv) u[d] = xv[j + d * nt];
#pragma unroll
            for (int d = 0; d < DEEP; d++) {
                if (j + d * nt >= nv) break;
                const T *e = (const T *)&u[d];
#pragma unroll
                for (int k = 0; k < VEC; k++) acc[d] = fmaf(to_f<T>(e[k]), to_f<T>(e[k]), acc[d]);
            }
        }
        s += (acc[0] + acc[1]) + (acc[2] + acc[3]);
        for (int64_t i = tail0 + tid; i < i1; i += nt) s = fmaf(to_f<T>(x[i]), to_f<T>(x[i]), s);
        s = pn_block_sum(s, red);
        if (threadIdx.x == 0) partial[b] = s;
    }
}

void pn_cuda_sumsq(pn_tensor *partial, const pn_tensor *x) {
    const int64_t n = pn_numel(x), P = pn_numel(partial);
    const unsigned grid = (unsigned)(P < 65535 ? P : 65535);
    if (x->dtype == PN_BF16)
        sumsq_kernel<bf16><<<grid, 256, 0, pn_cuda_stream()>>>((float *)partial->data, (const bf16 *)x->data, n, P);
    else
        sumsq_kernel<float><<<grid, 256, 0, pn_cuda_stream()>>>((float *)partial->data, (const float *)x->data, n, P);
    CUDA_LAUNCH_CHECK();
}
