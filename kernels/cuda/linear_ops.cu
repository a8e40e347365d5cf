// linear_ops.cu: SiLU and its backward, and the linear blocks' gates (beta = sigmoid(zb), the GDN decay
// g = -exp(A_log) softplus(za + dt_bias)) with their backward. bf16 in memory (activations, parameters),
// fp32 gates and parameter gradients.
//
// Non-obvious: softplus follows torch (z itself above the threshold 20), as fla's gate kernel does. The
// parameter gradients dA_log, d dt_bias are sums over all tokens: each block reduces its rows of one head in
// shared memory and adds its partial sum with one atomic.
#include "common.cuh"

__device__ __forceinline__ float softplusf_(float z) { return z > 20.0f ? z : log1pf(expf(z)); }

__global__ void silu_kernel(bf16 *y, const bf16 *x, int64_t n) {
    pdl_trigger();
    pdl_wait();
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float z = bf2f(x[i]);
        y[i] = f2bf(z * sigmoidf_(z));
    }
}

__global__ void silu_bwd_kernel(bf16 *dx, const bf16 *dy, const bf16 *x, int64_t n) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const float z = bf2f(x[i]), s = sigmoidf_(z);
        dx[i] = f2bf(bf2f(dy[i]) * s * (1.0f + z * (1.0f - s)));
    }
}

// grid (row blocks, H): rows n = blockIdx.x * 256 + tid, strided, of head h.
__global__ void lin_gates_kernel(float *g, float *beta, const bf16 *za, const bf16 *zb, const bf16 *A_log,
                                 const bf16 *dt_bias, int64_t N, int H) {
    pdl_trigger();
    pdl_wait();
    const int h = blockIdx.y;
    const float e = za ? expf(bf2f(A_log[h])) : 0.0f, dt = za ? bf2f(dt_bias[h]) : 0.0f;
    for (int64_t n = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; n < N; n += (int64_t)gridDim.x * blockDim.x) {
        const int64_t i = n * H + h;
        beta[i] = sigmoidf_(bf2f(zb[i]));
        g[i] = za ? -e * softplusf_(bf2f(za[i]) + dt) : 0.0f;
    }
}

__global__ void lin_gates_bwd_kernel(bf16 *dza, bf16 *dzb, float *dA_log, float *ddt_bias, const float *dg,
                                     const float *dbeta, const bf16 *za, const float *g, const float *beta,
                                     const bf16 *A_log, const bf16 *dt_bias, int64_t N, int H) {
    __shared__ float red[2][256];
    const int h = blockIdx.y, tid = threadIdx.x;
    const float e = za ? expf(bf2f(A_log[h])) : 0.0f, dt = za ? bf2f(dt_bias[h]) : 0.0f;
    float sA = 0.0f, sdt = 0.0f;
    for (int64_t n = (int64_t)blockIdx.x * blockDim.x + tid; n < N; n += (int64_t)gridDim.x * blockDim.x) {
        const int64_t i = n * H + h;
        const float b = beta[i];
        dzb[i] = f2bf(dbeta[i] * b * (1.0f - b));
        if (za) {
            const float z = bf2f(za[i]) + dt, d = dg[i];
            const float dz = d * -e * (z > 20.0f ? 1.0f : sigmoidf_(z));
            dza[i] = f2bf(dz);
            sA += d * g[i];
            sdt += dz;
        }
    }
    if (!za) return;
    red[0][tid] = sA;
    red[1][tid] = sdt;
    __syncthreads();
    for (int s = 128; s > 0; s >>= 1) {
        if (tid < s) red[0][tid] += red[0][tid + s], red[1][tid] += red[1][tid + s];
        __syncthreads();
    }
    if (tid == 0) {
        if (dA_log) atomicAdd(dA_log + h, red[0][0]);
        if (ddt_bias) atomicAdd(ddt_bias + h, red[1][0]);
    }
}

void pn_cuda_silu(pn_tensor *y, const pn_tensor *x) {
    const int64_t n = pn_numel(x);
    if (n == 0) return;
    pn_launch(silu_kernel, grid_1d(n, 256), 256, 0, (bf16 *)y->data, (const bf16 *)x->data, n);
}

void pn_cuda_silu_bwd(pn_tensor *dx, const pn_tensor *dy, const pn_tensor *x) {
    const int64_t n = pn_numel(x);
    if (n == 0) return;
    silu_bwd_kernel<<<grid_1d(n, 256), 256, 0, pn_cuda_stream()>>>((bf16 *)dx->data, (const bf16 *)dy->data, (const bf16 *)x->data, n);
    CUDA_LAUNCH_CHECK();
}

static dim3 gates_grid(int64_t N, int H) {
    int64_t bx = ceil_div64(N, 256);
    if (bx > 1024) bx = 1024;
    return dim3((unsigned)(bx > 0 ? bx : 1), (unsigned)H);
}

void pn_cuda_lin_gates(pn_tensor *g, pn_tensor *beta, const pn_tensor *za, const pn_tensor *zb, const pn_tensor *A_log,
                       const pn_tensor *dt_bias) {
    const int64_t N = zb->shape[0];
    const int H = (int)zb->shape[1];
    if (N == 0 || H == 0) return;
    pn_launch(lin_gates_kernel, gates_grid(N, H), 256, 0, (float *)g->data, (float *)beta->data,
              za ? (const bf16 *)za->data : NULL, (const bf16 *)zb->data, za ? (const bf16 *)A_log->data : NULL,
              za ? (const bf16 *)dt_bias->data : NULL, N, H);
    CUDA_LAUNCH_CHECK();
}

void pn_cuda_lin_gates_bwd(pn_tensor *dza, pn_tensor *dzb, pn_tensor *dA_log, pn_tensor *ddt_bias, const pn_tensor *dg,
                           const pn_tensor *dbeta, const pn_tensor *za, const pn_tensor *g, const pn_tensor *beta,
                           const pn_tensor *A_log, const pn_tensor *dt_bias) {
    const int64_t N = dzb->shape[0];
    const int H = (int)dzb->shape[1];
    if (N == 0 || H == 0) return;
    lin_gates_bwd_kernel<<<gates_grid(N, H), 256, 0, pn_cuda_stream()>>>(
        za ? (bf16 *)dza->data : NULL, (bf16 *)dzb->data, dA_log ? (float *)dA_log->data : NULL,
        ddt_bias ? (float *)ddt_bias->data : NULL, (const float *)dg->data, (const float *)dbeta->data,
        za ? (const bf16 *)za->data : NULL, (const float *)g->data, (const float *)beta->data,
        za ? (const bf16 *)A_log->data : NULL, za ? (const bf16 *)dt_bias->data : NULL, N, H);
    CUDA_LAUNCH_CHECK();
}
