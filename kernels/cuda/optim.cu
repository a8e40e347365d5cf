// optim.cu: AdamW over one tensor and the sum of squares for the global gradient norm (kernels/ops.h: adamw,
// sumsq). AdamW updates the fp32 master copy (or an fp32 parameter in place) in torch.optim.AdamW's order
// and writes the bf16 parameter rounded to nearest. sumsq gives one partial per block over a fixed
// partition, so the norm is the same on every run.
#include "common.cuh"

__global__ void adamw_kernel(void *p, int p_bf16, float *w, float *m, float *v, const float *g, int64_t n,
                             pn_adamw_args a, float decay, float step, float bc2s) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float gi = g[i] * a.grad_scale;
        float wi = w[i] * decay;
        const float mi = m[i] + (1.0f - a.beta1) * (gi - m[i]);
        const float vi = v[i] * a.beta2 + (1.0f - a.beta2) * gi * gi;
        wi += -step * (mi / (sqrtf(vi) / bc2s + a.eps));
        m[i] = mi, v[i] = vi, w[i] = wi;
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
    adamw_kernel<<<grid_1d(n, 256), 256, 0, pn_cuda_stream()>>>(p->data, p->dtype == PN_BF16, w, (float *)m->data, (float *)v->data,
                                           (const float *)g->data, n, *a, decay, step, bc2s);
    CUDA_LAUNCH_CHECK();
}

template <typename T> __device__ __forceinline__ float to_f(T x);
template <> __device__ __forceinline__ float to_f<float>(float x) { return x; }
template <> __device__ __forceinline__ float to_f<bf16>(bf16 x) { return bf2f(x); }

template <typename T> __global__ void sumsq_kernel(float *partial, const T *x, int64_t n, int64_t P) {
    __shared__ float red[32];
    for (int64_t b = blockIdx.x; b < P; b += gridDim.x) {
        const int64_t i0 = n * b / P, i1 = n * (b + 1) / P;
        float s = 0;
        for (int64_t i = i0 + threadIdx.x; i < i1; i += blockDim.x) {
            const float e = to_f<T>(x[i]);
            s += e * e;
        }
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
