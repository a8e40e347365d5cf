// common.cuh: what every CUDA file of the backend shares: error checks that abort through pn_panic_at
// with the failing file and line, bf16 <-> fp32 helpers, launch geometry, and the one cuBLASLt handle.
//
// The decision a reader would otherwise miss: a CUDA or cuBLAS error is never a user error here (shapes
// were checked by kernels/ops.c), so every failure panics instead of returning. Launches are checked with
// cudaGetLastError right after the <<<>>> so the file and line name the kernel that failed to launch;
// faults inside a kernel surface at the next synchronizing call (pn_cuda_backend.sync, a copy to host).
// Everything runs on the backend context's compute stream (pn_cuda_stream(), below), so ops are ordered
// without events and a sequence of them can be captured as a CUDA graph. It is a blocking stream: the few
// synchronous cudaMemcpy calls left (on the legacy stream) still wait for the work queued before them.
#ifndef PN_CUDA_COMMON_CUH
#define PN_CUDA_COMMON_CUH

#ifdef PN_CUDA_EMU // the host emulation the CPU suite runs the GDN kernels on (tests/emu/cuda_emu.h)
#include "../../tests/emu/cuda_emu.h"
#else
#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#endif
#include <stdint.h>

// pn_common.h is C11; nvcc's C++ front end does not know the _Noreturn keyword.
#define _Noreturn __attribute__((noreturn))
extern "C" {
#include "../../src/pn_common.h"
#include "../ops.h"
}
#undef _Noreturn
#include "../packed.h"

// ----------------------------------------------------------------------------------------------------
// error checks

static inline void pn_cuda_check_at(cudaError_t e, const char *file, int line) {
    if (e != cudaSuccess) pn_panic_at(file, line, "CUDA error: %s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
}
static inline void pn_cublas_check_at(cublasStatus_t s, const char *file, int line) {
    if (s != CUBLAS_STATUS_SUCCESS) pn_panic_at(file, line, "cuBLAS error: %s (%d)", cublasLtGetStatusString(s), (int)s);
}
#define CUDA_CHECK(call) pn_cuda_check_at((call), __FILE__, __LINE__)
#define CUBLAS_CHECK(call) pn_cublas_check_at((call), __FILE__, __LINE__)
// After every kernel launch.
#define CUDA_LAUNCH_CHECK() pn_cuda_check_at(cudaGetLastError(), __FILE__, __LINE__)

// ----------------------------------------------------------------------------------------------------
// helpers

typedef __nv_bfloat16 bf16;

__device__ __forceinline__ float bf2f(bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ bf16 f2bf(float x) { return __float2bfloat16_rn(x); }
// fp32 rounded to bf16 and back: the value a bf16 tensor would hold.
__device__ __forceinline__ float round_bf(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }
// The one sigmoid of the CUDA kernels (SiLU z * sigmoidf_(z) has the same bits wherever it is computed).
__device__ __forceinline__ float sigmoidf_(float z) { return 1.0f / (1.0f + expf(-z)); }

// RoPE of one pair (x1, x2) by angle a (position * inv_freq in fp32), cos and sin rounded to bf16 as HF's
// caches hold them, the result in fp32 (the caller rounds). The decode kernels (kv_store_at, attention_at
// and kv_attend_at) all rotate through this one expression, so a key rotated in one of them is bit for bit
// the key rotated in another.
__device__ __forceinline__ void rope_pair(float a, float &x1, float &x2) {
    float sn, cs;
    sincosf(a, &sn, &cs);
    const float c = round_bf(cs), s = round_bf(sn), r1 = x1 * c - x2 * s, r2 = x2 * c + x1 * s;
    x1 = r1, x2 = r2;
}
// silu(g) * u of bf16 inputs, silu rounded to bf16 like HF's act_fn output (swiglu, matmul_swiglu)
__device__ __forceinline__ float swiglu1(float g, float u) { return round_bf(g / (1.0f + expf(-g))) * u; }

// 8 bf16 in one 16-byte word (the unit of vector loads and cp.async).
union bf16x8 {
    uint4 u;
    __nv_bfloat162 h2[4];
    bf16 h[8];
};

// Sum of v over a block (blockDim.x a multiple of 32, at most 1024) with `red` 32 floats of shared memory;
// every thread gets the total. The order is fixed, so the result is the same on every run.
__device__ __forceinline__ float pn_block_sum(float v, float *red) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    __syncthreads(); // red may still be read by an earlier call
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : 0.0f;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Maximum of v over a block, as pn_block_sum (every thread gets it).
__device__ __forceinline__ float pn_block_max(float v, float *red) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    __syncthreads(); // red may still be read by an earlier call
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = lane < nw ? red[lane] : -INFINITY;
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

// Sum of v over a warp (xor butterfly: every lane gets the total, in a fixed order).
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// RMSNorm's pieces, shared by norm.cu's kernels and the GEMVs that normalize their own input (matmul.cu),
// so that both compute the same bits. VEC = 8: 16-byte chunks (D % 8 == 0, aligned rows), VEC = 1: scalar.
// CG: load through L2 only (ld.global.cg), for data other blocks of the same launch wrote (L1 is not
// coherent across blocks).
template <int VEC, bool CG = false>
__device__ __forceinline__ void load_chunk(const bf16 *p, float *v) {
    if constexpr (VEC == 8) {
        bf16x8 c;
        c.u = CG ? __ldcg((const uint4 *)p) : *(const uint4 *)p;
#pragma unroll
        for (int i = 0; i < 8; i++) v[i] = bf2f(c.h[i]);
    } else {
        v[0] = bf2f(CG ? __ldcg(p) : *p);
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

// Sum of squares over chunks c = first, first + stride, ... of one row. With yr (add_rmsnorm) each chunk is
// first x + y rounded to bf16 (the add op's rounding) and, with dst, stored there (add_rmsnorm: back into
// x): the sum is then over the values a separate rmsnorm would read, in the same order, so the result is
// the same bit for bit.
template <int VEC, bool CG = false>
__device__ __forceinline__ float row_sumsq(bf16 *dst, const bf16 *xr, const bf16 *yr, int64_t chunks, int64_t first,
                                           int64_t stride) {
    float ss = 0.0f;
    for (int64_t c = first; c < chunks; c += stride) {
        float v[VEC];
        load_chunk<VEC, CG>(xr + c * VEC, v);
        if (yr) {
            float u[VEC];
            load_chunk<VEC>(yr + c * VEC, u);
#pragma unroll
            for (int i = 0; i < VEC; i++) v[i] = round_bf(v[i] + u[i]);
        }
        if (dst) store_chunk<VEC>(dst + c * VEC, v);
#pragma unroll
        for (int i = 0; i < VEC; i++) ss += v[i] * v[i];
    }
    return ss;
}

// The scale of a row from its sum of squares.
__device__ __forceinline__ float norm_scale(float ss, int64_t D, float eps) { return rsqrtf(ss / (float)D + eps); }

// yr = w * bf16(xr * r) over the row's chunks c = first, first + stride, ...
template <int VEC, bool CG = false>
__device__ __forceinline__ void row_write(bf16 *yr, const bf16 *xr, const bf16 *w, float r, int64_t chunks,
                                          int64_t first, int64_t stride) {
    for (int64_t c = first; c < chunks; c += stride) {
        float v[VEC], wv[VEC];
        load_chunk<VEC, CG>(xr + c * VEC, v);
        load_chunk<VEC>(w + c * VEC, wv);
#pragma unroll
        for (int i = 0; i < VEC; i++) v[i] = wv[i] * round_bf(v[i] * r);
        store_chunk<VEC>(yr + c * VEC, v);
    }
}

// One row of RMSNorm, out = w * bf16(v * r) for v = x (+ y, rounded, also stored to sum when not NULL), in
// norm.cu's two orders: a warp per row (rows up to 1024, rmsnorm_warp_kernel) or the whole block (wider,
// rmsnorm_block_kernel; red: 32 floats of shared memory). out may be sum (each element is read and written
// by the same thread, after the row's sum is reduced).
template <int VEC, bool CG = false>
__device__ __forceinline__ void warp_rmsnorm_row(bf16 *out, bf16 *sum, const bf16 *x, const bf16 *y, const bf16 *w,
                                                 int64_t D, float eps) {
    const int lane = threadIdx.x & 31;
    const float ss = warp_sum(row_sumsq<VEC, CG>(sum, x, y, D / VEC, lane, 32));
    row_write<VEC, CG>(out, sum ? sum : x, w, norm_scale(ss, D, eps), D / VEC, lane, 32);
}
template <int VEC, bool CG = false>
__device__ __forceinline__ void block_rmsnorm_row(bf16 *out, bf16 *sum, const bf16 *x, const bf16 *y, const bf16 *w,
                                                  int64_t D, float eps, float *red) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    float ss = warp_sum(row_sumsq<VEC, CG>(sum, x, y, D / VEC, threadIdx.x, blockDim.x));
    if (lane == 0) red[warp] = ss;
    __syncthreads();
    ss = 0.0f;
    for (int i = 0; i < nwarps; i++) ss += red[i];
    __syncthreads(); // red is rewritten by the next row
    row_write<VEC, CG>(out, sum ? sum : x, w, norm_scale(ss, D, eps), D / VEC, threadIdx.x, blockDim.x);
}
// Rows 0 .. rows - 1 of [rows, D] tensors (sum, y may be NULL) by one block, in the order norm.cu's kernels
// use for this D (so the same bits as rmsnorm / add_rmsnorm).
#define PN_NORM_WARP_MAX 1024 // rows up to this width get a warp each (norm.cu)
template <int VEC, bool CG = false>
__device__ __forceinline__ void block_rmsnorm_rows(bf16 *out, bf16 *sum, const bf16 *x, const bf16 *y, const bf16 *w,
                                                   int rows, int64_t D, float eps, float *red) {
    if (D <= PN_NORM_WARP_MAX) {
        for (int r = threadIdx.x >> 5; r < rows; r += blockDim.x >> 5)
            warp_rmsnorm_row<VEC, CG>(out + r * D, sum ? sum + r * D : NULL, x + r * D, y ? y + r * D : NULL, w, D, eps);
        __syncthreads();
    } else {
        for (int r = 0; r < rows; r++)
            block_rmsnorm_row<VEC, CG>(out + r * D, sum ? sum + r * D : NULL, x + r * D, y ? y + r * D : NULL, w, D, eps, red);
    }
}

static inline int64_t ceil_div64(int64_t a, int64_t b) { return (a + b - 1) / b; }
static inline int is_aligned16(const void *p) { return ((uintptr_t)p & 15u) == 0; }
// A 1-D grid for n work items of `per_block` each, capped so grid-stride loops cover the rest.
static inline unsigned grid_1d(int64_t n, int per_block) {
    int64_t g = ceil_div64(n, per_block);
    if (g < 1) g = 1;
    if (g > 65535LL * 16) g = 65535LL * 16;
    return (unsigned)g;
}

// ----------------------------------------------------------------------------------------------------
// shared state (backend.cu / matmul.cu)

// The backend context (backend.cu): one per process and GPU, created on first use. It owns what would
// otherwise be hidden global state: the streams, the library handles and every device workspace, so a
// workspace's size is visible (pn_cuda_ws_bytes) and nothing allocates behind a CUDA graph's back.
typedef enum {
    PN_WS_CUBLASLT,   // cuBLASLt's workspace (fixed size, PN_CUBLAS_WORKSPACE)
    PN_WS_ATTN_SPLIT, // split-K decode attention's partial sums (attention.cu)
    PN_WS_ATTN_BWD,   // attention backward's statistics and dQ accumulator (attention_bwd.cu)
    PN_WS_CUDNN,      // cuDNN SDPA plans' workspace (attention_cudnn.cu)
    PN_WS_GDN,        // chunked GDN forward (gdn.cu)
    PN_WS_GDN_BWD,    // chunked GDN backward (gdn_bwd.cu)
    PN_WS_CONV,       // causal convolution backward's fp32 dz (conv1d.cu)
    PN_WS_COUNT_NF,   // count_nonfinite's counter (elementwise.cu)
    PN_WS_ARGMAX,     // argmax's per-slice partial results (loss.cu)
    PN_WS_MLP,        // matmul_swiglu's gate and up when it runs as three ops (matmul.cu)
    PN_WS_NORM_IN,    // add_rmsnorm_swiglu's and matmul_add_rmsnorm's temporaries when not a GEMV (matmul.cu)
    PN_WS_GEMV_COUNT, // matmul_add_rmsnorm's finished-block counter (matmul.cu)
    PN_WS_N
} pn_cuda_ws_id;

typedef struct pn_cuda_ctx {
    int device;
    cudaStream_t stream; // compute: every kernel, copy and library call of the backend
    cudaStream_t comm;   // communication (NCCL collectives), so they can overlap the compute stream
    cublasLtHandle_t lt;
    void *cudnn;         // cudnnHandle_t (attention_cudnn.cu makes it on first use and sets its stream)
    int cudnn_state;     // 0 not tried, 1 ready, -1 unavailable
    int n_sms;
    int pdl;             // programmatic dependent launch (pn_launch): sm_90 and later, unless PN_NO_PDL is set
    void *ws[PN_WS_N];
    size_t ws_bytes[PN_WS_N];
} pn_cuda_ctx;

extern pn_cuda_ctx *pn_cuda_ctx_ptr;
pn_cuda_ctx *pn_cuda_ctx_init(void);
static inline pn_cuda_ctx *pn_cuda_ctx_get(void) { return pn_cuda_ctx_ptr ? pn_cuda_ctx_ptr : pn_cuda_ctx_init(); }
static inline cudaStream_t pn_cuda_stream(void) { return pn_cuda_ctx_get()->stream; }

// Workspace `id` grown to at least `need` bytes (never shrunk; growing frees the old buffer, which waits for
// the work using it). Out of memory is an internal error; growing while the stream is being captured into a
// graph is one too (the graph would keep the freed buffer): capture after a warm-up step of the same shape.
void *pn_cuda_ws(pn_cuda_ws_id id, size_t need);
// The same, but NULL (nothing allocated, CUDA's error state cleared) when the device has no room.
void *pn_cuda_ws_try(pn_cuda_ws_id id, size_t need);
size_t pn_cuda_ws_total(void); // bytes held by all workspaces

// The context's cuBLASLt handle and its workspace.
cublasLtHandle_t pn_cuda_cublaslt(void);
void *pn_cuda_workspace(size_t *bytes);
// cuBLASLt's best algorithm for a product (1), or 0 when it has none; pointers' real alignments passed in.
int pn_cuda_lt_heuristic(cublasLtMatmulDesc_t op, cublasLtMatrixLayout_t a, cublasLtMatrixLayout_t b,
                         cublasLtMatrixLayout_t c, uint32_t al_a, uint32_t al_b, uint32_t al_c,
                         cublasLtMatmulAlgo_t *algo);
uint32_t pn_cuda_ptr_align(const void *p); // largest power of two <= 256 dividing the address

// ----------------------------------------------------------------------------------------------------
// Programmatic dependent launch (Hopper and later). A decode step is a chain of ~200 small kernels, each
// mostly latency: launching the next one only when the last block of the previous has retired leaves the
// GPU idle at every boundary. A kernel launched with pn_launch may instead be scheduled while the kernel
// before it on the stream is still running; until it calls pdl_wait() it must neither read anything an
// earlier kernel of the stream writes nor write anything one reads — it may only read what is constant
// while the stream runs (weights: the GEMVs load theirs before the wait, which is the point). pdl_wait()
// returns once the previous kernel has finished and its writes are visible; as that kernel waited for its
// own predecessor, every earlier kernel is finished too. pdl_trigger() lets the next kernel be scheduled;
// called at the start, it is scheduled as soon as every block of this one is running. Both are no-ops in a
// kernel launched without the attribute (and before sm_90), so a kernel that calls them may be launched
// either way; a kernel that does not call pdl_wait() must be launched with <<<>>>.
__device__ __forceinline__ void pdl_wait() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
__device__ __forceinline__ void pdl_trigger() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// kernel<<<grid, block, smem, compute stream>>>(args...), with the programmatic-serialization attribute
// when the context allows it (see above: the kernel must call pdl_wait()).
template <typename... KArgs, typename... Args>
static inline void pn_launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, Args... args) {
#ifdef PN_CUDA_EMU
    emu_launch(kernel, grid, block, smem, args...);
#else
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid, cfg.blockDim = block, cfg.dynamicSmemBytes = smem, cfg.stream = pn_cuda_stream();
    cfg.attrs = at, cfg.numAttrs = pn_cuda_ctx_get()->pdl ? 1 : 0;
    CUDA_CHECK(cudaLaunchKernelEx(&cfg, kernel, ((KArgs)args)...));
#endif
}

// kernel<<<grid, block, smem, compute stream>>>(args...), without the attribute (for kernels that do not call
// pdl_wait()); with PN_CUDA_EMU (tests/emu: the kernels of gdn.cu, gdn_bwd.cu and conv1d.cu on the host) the
// emulation's launch.
template <typename... KArgs, typename... Args>
static inline void pn_launch_plain(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, Args... args) {
#ifdef PN_CUDA_EMU
    emu_launch(kernel, grid, block, smem, args...);
#else
    kernel<<<grid, block, smem, pn_cuda_stream()>>>(((KArgs)args)...);
#endif
}

// The block's dynamic shared memory (one declaration for every kernel that uses it, 16-byte aligned).
#ifdef PN_CUDA_EMU
__device__ __forceinline__ float *dyn_smem(void) { return (float *)emu_dyn_smem(); }
#else
__device__ __forceinline__ float *dyn_smem(void) {
    extern __shared__ __align__(16) float pn_dyn_smem[];
    return pn_dyn_smem;
}
#endif

// ----------------------------------------------------------------------------------------------------
// The backend's ops (pn_cuda_<name>, in kernels/ops_list.h): the entries of pn_cuda_backend, implemented in
// the .cu files.
extern "C" {
PN_OPS(PN_OP_DECLARE_CUDA)
}

// A packed batch's offsets for the kernels: NULL (and n_docs 0) when there is none or one document, which is
// the plain causal case (and may take cuDNN).
static inline const int32_t *packed_offsets(const pn_tensor *cu_seqlens, int *n_docs) {
    *n_docs = cu_seqlens && cu_seqlens->shape[0] > 2 ? (int)cu_seqlens->shape[0] - 1 : 0;
    return *n_docs ? (const int32_t *)cu_seqlens->data : NULL;
}

// pn_cuda_attention with a packed batch (attention.cu): cu (device, n_docs + 1 offsets, kernels/packed.h) or
// NULL; pos0 = 0 when packed. attention_train's forward: with lse (F32 [B, T, Hq], else NULL) the flash
// kernels also store each row's log-sum-exp and it returns 1; 0 when lse was not written (the caller
// computes it) or not asked for.
int pn_cuda_attention_packed(pn_tensor *out, float *lse, const pn_tensor *q, const pn_tensor *kcache,
                             const pn_tensor *vcache, int pos0, int window, const int32_t *cu, int n_docs);

// training and linear-block ops (conv1d.cu, linear_ops.cu, norm_bwd.cu, train_elementwise.cu, matmul_bwd.cu;
// the contracts are the pn_op_* comments in kernels/ops.h)
#ifdef PN_HAVE_CUDNN
// cuDNN's fused flash attention for plain causal prefill (attention_cudnn.cu): 0 when it computed out, -1
// (nothing written) when it does not handle the call and the caller runs its own kernel. C linkage for tests.
extern "C" int pn_cuda_attention_cudnn(pn_tensor *out, const pn_tensor *q, const pn_tensor *kcache,
                                       const pn_tensor *vcache, int pos0, int window);
// The same for training (keys = k, v [B, T, Hkv, D]) also writing the softmax statistics lse [B, T, Hq]
// (natural log-sum-exp of the scaled scores): 0, or -1 (nothing written) when cuDNN does not take the call.
extern "C" int pn_cuda_attention_cudnn_stats(pn_tensor *out, float *lse, const pn_tensor *q, const pn_tensor *k,
                                             const pn_tensor *v, int window);
// Its backward for plain causal attention from such statistics, element (b, h, t) at
// stats[b sb + h sh + t st]: 0 when it wrote dq, dk, dv, -1 when it does not take the call (the caller runs
// its own kernels).
extern "C" int pn_cuda_attention_bwd_cudnn(pn_tensor *dq, pn_tensor *dk, pn_tensor *dv, const pn_tensor *dout,
                                           const pn_tensor *q, const pn_tensor *k, const pn_tensor *v,
                                           const pn_tensor *out, const float *stats, int64_t sb, int64_t sh,
                                           int64_t st, int window);
#endif

#ifdef PN_HAVE_NCCL
// The device collectives (comm.cu): pn_backend's comm_* entries.
extern "C" {
int pn_cuda_comm_id(void *id);
int pn_cuda_comm_init(const void *id, int rank, int world);
void pn_cuda_comm_sum(float *x, int64_t n, int root);
void pn_cuda_comm_bcast(void *x, size_t bytes, int root);
void pn_cuda_comm_join(void);
double pn_cuda_comm_wait_ms(void);
void pn_cuda_comm_free(void);
}
#endif

// Timing with CUDA events on the default stream, for benchmarks (tests/gpu): C linkage so a C program
// can declare and call them without the CUDA headers.
extern "C" {
void pn_cuda_timer_start(void);
float pn_cuda_timer_stop_ms(void); // synchronizes; milliseconds since pn_cuda_timer_start
}

#endif
