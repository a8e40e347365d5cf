// train_elementwise.cu: the backward of the elementwise ops (SwiGLU, the embedding gather) and a
// device-to-device copy; bf16 in memory, fp32 in registers. (RoPE's backward, the rotation by the negative
// angle with the forward's bf16-rounded cos and sin, shares the forward's kernel in elementwise.cu.)
//
// Non-obvious: the embedding's gradient adds rows of dout into an fp32 table with atomics (ids repeat).
#include "common.cuh"


// dgate = dout * up * silu'(gate), dup = dout * silu(gate). VEC: 8 values a load (n % 8 == 0, 16-byte
// aligned; one value a load ran at 70% of the bytes' rate on an H100: 0.315 ms at [8192, 8960]).
__device__ __forceinline__ void swiglu_bwd1(float d, float g, float u, bf16 *dg, bf16 *du) {
    const float s = sigmoidf_(g);
    *dg = f2bf(d * u * s * (1.0f + g * (1.0f - s)));
    *du = f2bf(d * g * s);
}

template <bool VEC>
__global__ void swiglu_bwd_kernel(bf16 *dgate, bf16 *dup, const bf16 *dout, const bf16 *gate, const bf16 *up,
                                  int64_t n) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    if constexpr (VEC) {
        for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n / 8; i += stride) {
            bf16x8 g, u, d, og, ou;
            g.u = ((const uint4 *)gate)[i];
            u.u = ((const uint4 *)up)[i];
            d.u = ((const uint4 *)dout)[i];
#pragma unroll
            for (int k = 0; k < 8; k++) swiglu_bwd1(bf2f(d.h[k]), bf2f(g.h[k]), bf2f(u.h[k]), &og.h[k], &ou.h[k]);
            ((uint4 *)dgate)[i] = og.u;
            ((uint4 *)dup)[i] = ou.u;
        }
    } else {
        for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
            swiglu_bwd1(bf2f(dout[i]), bf2f(gate[i]), bf2f(up[i]), &dgate[i], &dup[i]);
    }
}

// dtable[ids[n], :] += dout[n, :]; one block per row (grid-stride).
__global__ void embedding_bwd_kernel(float *dtable, const int32_t *ids, const bf16 *dout, int64_t N, int64_t C) {
    for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
        float *dst = dtable + (int64_t)ids[n] * C;
        const bf16 *src = dout + n * C;
        for (int64_t c = threadIdx.x; c < C; c += blockDim.x) atomicAdd(dst + c, bf2f(src[c]));
    }
}

void pn_cuda_copy(pn_tensor *dst, const pn_tensor *src) {
    const size_t bytes = pn_nbytes(src);
    if (bytes && dst->data != src->data) CUDA_CHECK(cudaMemcpyAsync(dst->data, src->data, bytes, cudaMemcpyDeviceToDevice, pn_cuda_stream()));
}

void pn_cuda_swiglu_bwd(pn_tensor *dgate, pn_tensor *dup, const pn_tensor *dout, const pn_tensor *gate,
                        const pn_tensor *up) {
    const int64_t n = pn_numel(gate);
    if (n == 0) return;
    bf16 *dg = (bf16 *)dgate->data, *du = (bf16 *)dup->data;
    const bf16 *d = (const bf16 *)dout->data, *g = (const bf16 *)gate->data, *u = (const bf16 *)up->data;
    if (n % 8 == 0 && is_aligned16(dg) && is_aligned16(du) && is_aligned16(d) && is_aligned16(g) && is_aligned16(u))
        swiglu_bwd_kernel<true><<<grid_1d(n / 8, 256), 256, 0, pn_cuda_stream()>>>(dg, du, d, g, u, n);
    else
        swiglu_bwd_kernel<false><<<grid_1d(n, 256), 256, 0, pn_cuda_stream()>>>(dg, du, d, g, u, n);
    CUDA_LAUNCH_CHECK();
}

void pn_cuda_embedding_bwd(pn_tensor *dtable, const pn_tensor *ids, const pn_tensor *dout) {
    const int64_t N = pn_numel(ids), C = dout->shape[1];
    if (N == 0 || C == 0) return;
    embedding_bwd_kernel<<<(unsigned)(N < 65535 ? N : 65535), 256, 0, pn_cuda_stream()>>>((float *)dtable->data, (const int32_t *)ids->data,
                                                                     (const bf16 *)dout->data, N, C);
    CUDA_LAUNCH_CHECK();
}
