// cuda_emu.h: a host emulation of the CUDA subset the GDN kernels (kernels/cuda/gdn.cu, gdn_bwd.cu and
// their headers) use, so that the kernels' own code — the fragment layouts of ldmatrix and mma, the
// cp.async groups, the barriers, every index — runs on a CPU and is checked against the CPU reference in the
// ordinary test suite (tests/test_gdn_emu.cpp), on machines without a GPU.
//
// The decisions a reader would otherwise miss:
// - A kernel launch runs the grid's blocks one after another; a block's threads are fibers (their own
//   stacks, switched cooperatively by cuda_emu.cpp). Between two __syncthreads the warps run one after
//   another in a shuffled order (fixed seed), the lanes of a warp in a shuffled order up to each warp
//   collective (__shfl_xor_sync, ldmatrix, mma, __syncwarp): a thread that reads what another writes in
//   the same interval (a missing barrier) sees the old contents about half the time, and a test fails.
//   A warp whose lanes wait in a collective while others wait at __syncthreads (a divergent barrier) is
//   reported and aborts: what the hardware leaves undefined fails here.
// - The collectives follow the PTX ISA's fragment layouts (ldmatrix .x4 [.trans], mma.m16n8k16 bf16 with
//   fp32 accumulators): the kernels' addressing is checked, not assumed.
// - cp.async copies are deferred: a thread's copies land when it waits for their group (cp.async.wait_group
//   N lands all but the newest N groups), so a read before the wait sees the old contents and fails a test.
// - Device memory is host memory: cudaMemcpy is memcpy, the workspaces are malloc'd; events time wall clock.
// - Only what the GDN, convolution and optimizer files use is here; another kernel that needs more fails to compile, not
//   silently.
#ifndef PN_CUDA_EMU_H
#define PN_CUDA_EMU_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

// ----------------------------------------------------------------------------------------------------
// qualifiers and launch geometry

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __grid_constant__
#define __shared__ static // a block's fibers share it; blocks run one after another

struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct emu_thread;
extern emu_thread *emu_cur;   // the running fiber
extern dim3 emu_block_idx, emu_block_dim, emu_grid_dim;
const dim3 &emu_thread_idx(void);
#define threadIdx (emu_thread_idx())
#define blockIdx (emu_block_idx)
#define blockDim (emu_block_dim)
#define gridDim (emu_grid_dim)
void *emu_dyn_smem(void); // the running block's dynamic shared memory (16-byte aligned, zero-filled first)

// ----------------------------------------------------------------------------------------------------
// bf16 (round to nearest even, as __float2bfloat16_rn)

struct __nv_bfloat16 {
    uint16_t bits;
};
struct __nv_bfloat162 {
    __nv_bfloat16 x, y;
};
struct alignas(8) float2 {
    float x, y;
};
static inline float2 make_float2(float x, float y) { return float2{x, y}; }
struct alignas(16) uint4 {
    unsigned x, y, z, w;
};
struct alignas(8) uint2 {
    unsigned x, y;
};
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }
struct alignas(16) float4 {
    float x, y, z, w;
};
static inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
static inline float __bfloat162float(__nv_bfloat16 b) {
    uint32_t u = (uint32_t)b.bits << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    __nv_bfloat16 b;
    if ((u & 0x7fffffffu) > 0x7f800000u) b.bits = (uint16_t)((u >> 16) | 0x40); // NaN stays NaN
    else b.bits = (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    return b;
}
static inline __nv_bfloat162 __floats2bfloat162_rn(float lo, float hi) {
    return __nv_bfloat162{__float2bfloat16_rn(lo), __float2bfloat16_rn(hi)};
}
static inline float __low2float(__nv_bfloat162 v) { return __bfloat162float(v.x); }
static inline float __high2float(__nv_bfloat162 v) { return __bfloat162float(v.y); }
template <class T> static inline T __ldcg(const T *p) { return *p; }

// ----------------------------------------------------------------------------------------------------
// math and integer helpers with CUDA's names

static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
template <class A, class B> static inline auto min(A a, B b) { return a < b ? a : b; }
template <class A, class B> static inline auto max(A a, B b) { return a < b ? b : a; }

// ----------------------------------------------------------------------------------------------------
// barriers and warp collectives (cuda_emu.cpp)

void __syncthreads(void);
// A block's fibers run one at a time and blocks one after another: a plain add is atomic.
static inline float atomicAdd(float *p, float v) {
    const float o = *p;
    *p = o + v;
    return o;
}
void __syncwarp(unsigned mask = 0xffffffffu);
float __shfl_xor_sync(unsigned mask, float v, int lane_mask);
int __shfl_xor_sync(unsigned mask, int v, int lane_mask);
float __shfl_sync(unsigned mask, float v, int src_lane);

// mma.cuh's device functions
uint32_t smem_addr(const void *p);
void cp_async16(void *smem, const void *gmem);
void cp_async4(void *smem, const void *gmem);
void cp_async_commit(void);
void emu_cp_async_wait(int n);
template <int N> static inline void cp_async_wait() { emu_cp_async_wait(N); }
void ldmatrix_x4(uint32_t *r, const __nv_bfloat16 *p);
void ldmatrix_x4_trans(uint32_t *r, const __nv_bfloat16 *p);
void ldsm_x4(uint32_t *r, uint32_t addr); // from smem_addr's offsets
void ldsm_x4_trans(uint32_t *r, uint32_t addr);
void mma_bf16(float *c, const uint32_t *a, uint32_t b0, uint32_t b1);
static inline uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    uint32_t r;
    memcpy(&r, &v, 4);
    return r;
}

// ----------------------------------------------------------------------------------------------------
// the runtime API subset

typedef int cudaError_t;
#define cudaSuccess 0
typedef void *cudaStream_t;
typedef struct emu_event *cudaEvent_t;
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize };
enum cudaDeviceAttr {
    cudaDevAttrMaxSharedMemoryPerBlockOptin,
    cudaDevAttrMaxSharedMemoryPerMultiprocessor,
    cudaDevAttrMultiProcessorCount
};
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice };
static inline const char *cudaGetErrorString(cudaError_t) { return "no error"; }
static inline const char *cudaGetErrorName(cudaError_t) { return "cudaSuccess"; }
static inline cudaError_t cudaGetLastError(void) { return cudaSuccess; }
template <class F> static inline cudaError_t cudaFuncSetAttribute(F, cudaFuncAttribute, int) { return cudaSuccess; }
static inline cudaError_t cudaGetDevice(int *d) { return *d = 0, cudaSuccess; }
// Hopper's 227 KB: the kernels size their stages by it, so the emulation takes the H100's paths.
// An H100's figures: 227 KB a block, 228 KB an SM, 132 SMs
static inline cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int) {
    *v = a == cudaDevAttrMultiProcessorCount ? 132 : a == cudaDevAttrMaxSharedMemoryPerMultiprocessor ? 233472 : 232448;
    return cudaSuccess;
}
static inline cudaError_t cudaMemcpy(void *d, const void *s, size_t n, cudaMemcpyKind) {
    memmove(d, s, n);
    return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t *e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b);
cudaError_t cudaEventDestroy(cudaEvent_t e);

// cuBLASLt's types, named by common.cuh's declarations only.
typedef int cublasStatus_t;
#define CUBLAS_STATUS_SUCCESS 0
typedef void *cublasLtHandle_t, *cublasLtMatmulDesc_t, *cublasLtMatrixLayout_t;
typedef struct {
    uint64_t data[8];
} cublasLtMatmulAlgo_t;
static inline const char *cublasLtGetStatusString(cublasStatus_t) { return "emulated"; }

// ----------------------------------------------------------------------------------------------------
// launch: every block of the grid, one after another, each a set of fibers (cuda_emu.cpp)

void emu_run_grid(dim3 grid, dim3 block, size_t smem, void (*body)(void *), void *arg);
template <class... KArgs, class... Args>
static inline void emu_launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, Args... args) {
    // The arguments converted to the kernel's parameter types (as <<<>>> does), and a thunk every fiber calls.
    auto bound = [kernel, args...]() { kernel(((KArgs)args)...); };
    using B = decltype(bound);
    emu_run_grid(grid, block, smem, [](void *p) { (*(B *)p)(); }, &bound);
}

#endif
