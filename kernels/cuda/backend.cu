// backend.cu: the CUDA backend table (pn_cuda_backend), device memory, host <-> device conversions and
// pn_cuda_available.
//
// Non-obvious: conversions between the host's fp32 arrays and bf16 device tensors happen on the host
// (pn_f32_to_bf16 rounds to nearest even, exactly as the CPU backend does), so a tensor uploaded here
// holds bit-for-bit what the CPU backend would store in a bf16 tensor. The copies are synchronous.
// An allocation failure is not a panic: alloc returns NULL (after clearing CUDA's last-error state) so
// the arena can report "out of cuda memory" as a user error.
#include <stdlib.h>
#include <string.h>

#include "common.cuh"
#include "gdn_bwd_cuda.h"
#include "gdn_cuda.h"

// ----------------------------------------------------------------------------------------------------
// memory

static void *cuda_alloc(size_t bytes) {
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 256);
    if (e != cudaSuccess) {
        (void)cudaGetLastError(); // clear it so the next check does not report this failure
        return NULL;
    }
    return p;
}

void *pn_cuda_scratch_get(pn_cuda_scratch *s, size_t need) {
    if (need > s->bytes) {
        if (s->ptr) CUDA_CHECK(cudaFree(s->ptr));
        s->ptr = NULL;
        s->bytes = 0;
        CUDA_CHECK(cudaMalloc(&s->ptr, need));
        s->bytes = need;
    }
    return s->ptr;
}

static void cuda_free(void *p) {
    if (p) CUDA_CHECK(cudaFree(p));
}

static void cuda_memcpy_h2d(void *dst, const void *src, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}

static void cuda_memcpy_d2h(void *dst, const void *src, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}

static void cuda_memset0(void *dst, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, 0));
}

static void cuda_sync(void) { CUDA_CHECK(cudaDeviceSynchronize()); }

// ----------------------------------------------------------------------------------------------------
// conversions

extern "C" void pn_cuda_to_host_f32(float *dst, const pn_tensor *src) {
    const int64_t n = pn_numel(src);
    if (n == 0) return;
    if (src->dtype == PN_F32) {
        CUDA_CHECK(cudaMemcpy(dst, src->data, (size_t)n * sizeof(float), cudaMemcpyDeviceToHost));
    } else if (src->dtype == PN_BF16) {
        uint16_t *tmp = (uint16_t *)pn_malloc((size_t)n * sizeof(uint16_t));
        CUDA_CHECK(cudaMemcpy(tmp, src->data, (size_t)n * sizeof(uint16_t), cudaMemcpyDeviceToHost));
        for (int64_t i = 0; i < n; i++) dst[i] = pn_bf16_to_f32(tmp[i]);
        free(tmp);
    } else {
        pn_panic("to_host_f32: unsupported dtype %s on cuda", pn_dtype_name(src->dtype));
    }
}

extern "C" void pn_cuda_from_host_f32(pn_tensor *dst, const float *src) {
    const int64_t n = pn_numel(dst);
    if (n == 0) return;
    if (dst->dtype == PN_F32) {
        CUDA_CHECK(cudaMemcpy(dst->data, src, (size_t)n * sizeof(float), cudaMemcpyHostToDevice));
    } else if (dst->dtype == PN_BF16) {
        uint16_t *tmp = (uint16_t *)pn_malloc((size_t)n * sizeof(uint16_t));
        for (int64_t i = 0; i < n; i++) tmp[i] = pn_f32_to_bf16(src[i]);
        CUDA_CHECK(cudaMemcpy(dst->data, tmp, (size_t)n * sizeof(uint16_t), cudaMemcpyHostToDevice));
        free(tmp);
    } else {
        pn_panic("from_host_f32: unsupported dtype %s on cuda", pn_dtype_name(dst->dtype));
    }
}

// ----------------------------------------------------------------------------------------------------
// timing (benchmarks only)

static cudaEvent_t timer_ev[2];
static int timer_ready = 0;

extern "C" void pn_cuda_timer_start(void) {
    if (!timer_ready) {
        CUDA_CHECK(cudaEventCreate(&timer_ev[0]));
        CUDA_CHECK(cudaEventCreate(&timer_ev[1]));
        timer_ready = 1;
    }
    CUDA_CHECK(cudaEventRecord(timer_ev[0], 0));
}

extern "C" float pn_cuda_timer_stop_ms(void) {
    PN_ASSERT(timer_ready);
    float ms = 0.0f;
    CUDA_CHECK(cudaEventRecord(timer_ev[1], 0));
    CUDA_CHECK(cudaEventSynchronize(timer_ev[1]));
    CUDA_CHECK(cudaEventElapsedTime(&ms, timer_ev[0], timer_ev[1]));
    return ms;
}

// ----------------------------------------------------------------------------------------------------
// availability and the table

extern "C" int pn_cuda_available(void) {
    static int cached = -1;
    if (cached < 0) {
        int n = 0;
        cudaError_t e = cudaGetDeviceCount(&n);
        if (e != cudaSuccess) (void)cudaGetLastError();
        cached = (e == cudaSuccess && n >= 1) ? 1 : 0;
    }
    return cached;
}

extern "C" const pn_backend pn_cuda_backend = {
    "cuda",
    cuda_alloc,
    cuda_free,
    cuda_memcpy_h2d,
    cuda_memcpy_d2h,
    cuda_memset0,
    cuda_sync,
    PN_OPS(PN_OP_ENTRY_CUDA) // in the list's order, like the struct's fields: a missing pn_cuda_<op> does not link
};
