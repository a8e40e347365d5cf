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

// One warp per row; blockDim.x = 256 (8 rows per block).
template <int VEC>
__global__ void rmsnorm_warp_kernel(bf16 *out, bf16 *s, const bf16 *x, const bf16 *y, const bf16 *w, int64_t rows, int64_t D,
                                    float eps) {
    pdl_trigger();
    pdl_wait();
    const int64_t warps = (int64_t)gridDim.x * (blockDim.x >> 5);
    for (int64_t row = (int64_t)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); row < rows; row += warps)
        warp_rmsnorm_row<VEC>(out + row * D, y ? s + row * D : NULL, x + row * D, y ? y + row * D : NULL, w, D, eps);
}

// One block per row; blockDim.x = 256.
template <int VEC>
__global__ void rmsnorm_block_kernel(bf16 *out, bf16 *s, const bf16 *x, const bf16 *y, const bf16 *w, int64_t rows, int64_t D,
                                     float eps) {
    __shared__ float partial[32];
    pdl_trigger();
    pdl_wait();
    for (int64_t row = blockIdx.x; row < rows; row += gridDim.x)
        block_rmsnorm_row<VEC>(out + row * D, y ? s + row * D : NULL, x + row * D, y ? y + row * D : NULL, w, D, eps,
                               partial);
}

// A decode step's rows (at most 4) of 1024 < D <= 2048 (Qwen2.5-1.5B's 1536): one block per row, one 8-value
// chunk per thread held in registers, and the thread's weight chunk loaded before griddepcontrol.wait (norm
// weights are not written while decoding: with PDL that load overlaps the kernel before). The arithmetic
// and its order are rmsnorm_block_kernel<8>'s (block_rmsnorm_row with one chunk per thread): the same bits.
__global__ void __launch_bounds__(256)
    rmsnorm_row_kernel(bf16 *out, bf16 *s, const bf16 *x, const bf16 *y, const bf16 *w, int64_t D, float eps) {
    __shared__ float red[8];
    pdl_trigger();
    const int64_t row = blockIdx.x, c = threadIdx.x;
    const bool live = c < D / 8;
    float v[8], wv[8];
    if (live) load_chunk<8>(w + c * 8, wv);
    pdl_wait();
    float ss = 0.0f;
    if (live) {
        load_chunk<8>(x + row * D + c * 8, v);
        if (y) {
            float u[8];
            load_chunk<8>(y + row * D + c * 8, u);
#pragma unroll
            for (int i = 0; i < 8; i++) v[i] = round_bf(v[i] + u[i]);
            store_chunk<8>(s + row * D + c * 8, v);
        }
#pragma unroll
        for (int i = 0; i < 8; i++) ss += v[i] * v[i];
    }
    ss = warp_sum(ss);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = ss;
    __syncthreads();
    ss = 0.0f;
    for (int i = 0; i < 8; i++) ss += red[i];
    if (live) {
        const float r = norm_scale(ss, D, eps);
#pragma unroll
        for (int i = 0; i < 8; i++) v[i] = wv[i] * round_bf(v[i] * r);
        store_chunk<8>(out + row * D + c * 8, v);
    }
}

// ----------------------------------------------------------------------------------------------------
// launchers

// y: add_rmsnorm's addend (s = x + y first, s may be x), or NULL (s unused).
static void rmsnorm_launch(bf16 *o, bf16 *s, const bf16 *xp, const bf16 *y, const bf16 *w, int64_t rows, int64_t D,
                           float eps) {
    if (rows == 0) return;
    const bool vec = D % 8 == 0 && is_aligned16(o) && is_aligned16(xp) && is_aligned16(w) &&
                     (!y || (is_aligned16(y) && is_aligned16(s)));
    if (D <= PN_NORM_WARP_MAX) {
        const unsigned grid = grid_1d(rows, 8);
        if (vec)
            pn_launch(rmsnorm_warp_kernel<8>, grid, 256, 0, o, s, xp, y, w, rows, D, eps);
        else
            pn_launch(rmsnorm_warp_kernel<1>, grid, 256, 0, o, s, xp, y, w, rows, D, eps);
    } else if (vec && rows <= 4 && D <= 8 * 256) { // decoding
        pn_launch(rmsnorm_row_kernel, (unsigned)rows, 256, 0, o, s, xp, y, w, D, eps);
    } else {
        const unsigned grid = grid_1d(rows, 1);
        if (vec)
            pn_launch(rmsnorm_block_kernel<8>, grid, 256, 0, o, s, xp, y, w, rows, D, eps);
        else
            pn_launch(rmsnorm_block_kernel<1>, grid, 256, 0, o, s, xp, y, w, rows, D, eps);
    }
    CUDA_LAUNCH_CHECK();
}

void pn_cuda_rmsnorm(pn_tensor *out, const pn_tensor *x, const pn_tensor *weight, float eps) {
    const int64_t D = weight->shape[0];
    rmsnorm_launch((bf16 *)out->data, NULL, (const bf16 *)x->data, NULL, (const bf16 *)weight->data,
                   D ? pn_numel(x) / D : 0, D, eps);
}

void pn_cuda_add_rmsnorm(pn_tensor *sum, const pn_tensor *x, const pn_tensor *y, pn_tensor *out, const pn_tensor *weight,
                         float eps) {
    const int64_t D = weight->shape[0];
    rmsnorm_launch((bf16 *)out->data, (bf16 *)sum->data, (const bf16 *)x->data, (const bf16 *)y->data,
                   (const bf16 *)weight->data, D ? pn_numel(x) / D : 0, D, eps);
}
