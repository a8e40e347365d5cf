// norm.cu: RMSNorm, out = w * bf16(x * rsqrt(mean(x^2) + eps)), statistics in fp32 (HF Qwen2RMSNorm:
// the normalized value is rounded to bf16 before the multiply by the bf16 weight, then rounded again).
//
// Non-obvious: out may alias x (in-place normalization). That is safe here because every element is read
// and written by the same thread, and the row's sum of squares is reduced (a full warp shuffle or a block
// barrier) before any thread writes. Rows of up to 1024 elements (per-head norms, D = 64/128) get one warp
// each, wider rows (hidden size) one block each. Both read the row twice instead of holding it in
// registers, so any D works; the second read comes from L1/L2.
#include "common.cuh"

// ----------------------------------------------------------------------------------------------------
// kernels

// VEC = 8: 16-byte loads (D % 8 == 0 and aligned pointers); VEC = 1: scalar.
template <int VEC>
__device__ __forceinline__ void load_chunk(const bf16 *p, float *v) {
    if constexpr (VEC == 8) {
        bf16x8 c;
        c.u = *(const uint4 *)p;
#pragma unroll
        for (int i = 0; i < 8; i++) v[i] = bf2f(c.h[i]);
    } else {
        v[0] = bf2f(*p);
    }
}

template <int VEC>
__device__ __forceinline__ void store_chunk(bf16 *p, const float *v) {
    if constexpr (VEC == 8) {
        bf16x8 c;
#pragma unroll
        for (int i = 0; i < 8; i++) c.h[i] = f2bf(v[i]);
        *(uint4 *)p = c.u;
    } else {
        *p = f2bf(v[0]);
    }
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Sum of squares over chunks c = first, first + stride, ... of one row. With yr (add_rmsnorm) each chunk is
// first x + y rounded to bf16 (the add op's rounding) and stored back to x: the sum is then over the values
// a separate rmsnorm would read, in the same order, so the result is the same bit for bit.
template <int VEC>
__device__ __forceinline__ float row_sumsq(bf16 *xr, const bf16 *yr, int64_t chunks, int64_t first, int64_t stride) {
    float ss = 0.0f;
    for (int64_t c = first; c < chunks; c += stride) {
        float v[VEC];
        load_chunk<VEC>(xr + c * VEC, v);
        if (yr) {
            float u[VEC];
            load_chunk<VEC>(yr + c * VEC, u);
#pragma unroll
            for (int i = 0; i < VEC; i++) v[i] = round_bf(v[i] + u[i]);
            store_chunk<VEC>(xr + c * VEC, v);
        }
#pragma unroll
        for (int i = 0; i < VEC; i++) ss += v[i] * v[i];
    }
    return ss;
}

template <int VEC>
__device__ __forceinline__ void row_write(bf16 *yr, const bf16 *xr, const bf16 *w, float r, int64_t chunks,
                                          int64_t first, int64_t stride) {
    for (int64_t c = first; c < chunks; c += stride) {
        float v[VEC], wv[VEC];
        load_chunk<VEC>(xr + c * VEC, v);
        load_chunk<VEC>(w + c * VEC, wv);
#pragma unroll
        for (int i = 0; i < VEC; i++) v[i] = wv[i] * round_bf(v[i] * r);
        store_chunk<VEC>(yr + c * VEC, v);
    }
}

// One warp per row; blockDim.x = 256 (8 rows per block).
template <int VEC>
__global__ void rmsnorm_warp_kernel(bf16 *out, bf16 *x, const bf16 *y, const bf16 *w, int64_t rows, int64_t D, float eps) {
    pdl_trigger();
    pdl_wait();
    const int lane = threadIdx.x & 31;
    const int64_t warps = (int64_t)gridDim.x * (blockDim.x >> 5);
    const int64_t chunks = D / VEC;
    for (int64_t row = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); row < rows; row += warps) {
        bf16 *xr = x + row * D;
        bf16 *yr = out + row * D;
        const float ss = warp_sum(row_sumsq<VEC>(xr, y ? y + row * D : nullptr, chunks, lane, 32));
        const float r = rsqrtf(ss / (float)D + eps);
        row_write<VEC>(yr, xr, w, r, chunks, lane, 32);
    }
}

// One block per row; blockDim.x = 256.
template <int VEC>
__global__ void rmsnorm_block_kernel(bf16 *out, bf16 *x, const bf16 *y, const bf16 *w, int64_t rows, int64_t D, float eps) {
    __shared__ float partial[32];
    pdl_trigger();
    pdl_wait();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    const int64_t chunks = D / VEC;
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
        bf16 *xr = x + row * D;
        bf16 *yr = out + row * D;
        float ss = warp_sum(row_sumsq<VEC>(xr, y ? y + row * D : nullptr, chunks, threadIdx.x, blockDim.x));
        if (lane == 0) partial[warp] = ss;
        __syncthreads();
        ss = 0.0f;
        for (int i = 0; i < nwarps; i++) ss += partial[i];
        __syncthreads(); // partial[] is rewritten by the next row
        const float r = rsqrtf(ss / (float)D + eps);
        row_write<VEC>(yr, xr, w, r, chunks, threadIdx.x, blockDim.x);
    }
}

// ----------------------------------------------------------------------------------------------------
// launchers

// y: add_rmsnorm's addend (x += y first, written back), or NULL.
static void rmsnorm_launch(bf16 *o, bf16 *xp, const bf16 *y, const bf16 *w, int64_t rows, int64_t D, float eps) {
    if (rows == 0) return;
    const bool vec = D % 8 == 0 && is_aligned16(o) && is_aligned16(xp) && is_aligned16(w) && (!y || is_aligned16(y));
    if (D <= 1024) {
        const unsigned grid = grid_1d(rows, 8);
        if (vec)
            pn_launch(rmsnorm_warp_kernel<8>, grid, 256, 0, o, xp, y, w, rows, D, eps);
        else
            pn_launch(rmsnorm_warp_kernel<1>, grid, 256, 0, o, xp, y, w, rows, D, eps);
    } else {
        const unsigned grid = grid_1d(rows, 1);
        if (vec)
            pn_launch(rmsnorm_block_kernel<8>, grid, 256, 0, o, xp, y, w, rows, D, eps);
        else
            pn_launch(rmsnorm_block_kernel<1>, grid, 256, 0, o, xp, y, w, rows, D, eps);
    }
    CUDA_LAUNCH_CHECK();
}

void pn_cuda_rmsnorm(pn_tensor *out, const pn_tensor *x, const pn_tensor *weight, float eps) {
    const int64_t D = weight->shape[0];
    // x is only read (y NULL): the kernels take it writable for add_rmsnorm
    rmsnorm_launch((bf16 *)out->data, (bf16 *)x->data, NULL, (const bf16 *)weight->data, D ? pn_numel(x) / D : 0, D, eps);
}

void pn_cuda_add_rmsnorm(pn_tensor *x, const pn_tensor *y, pn_tensor *out, const pn_tensor *weight, float eps) {
    const int64_t D = weight->shape[0];
    rmsnorm_launch((bf16 *)out->data, (bf16 *)x->data, (const bf16 *)y->data, (const bf16 *)weight->data,
                   D ? pn_numel(x) / D : 0, D, eps);
}
