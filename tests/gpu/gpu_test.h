// Helpers shared by the GPU tests: seeded bf16-rounded random inputs, device tensors built from host fp32
// arrays, and the relative error every CUDA-vs-CPU comparison uses.
#ifndef PN_GPU_TEST_H
#define PN_GPU_TEST_H

#include <math.h>
#include <string.h>

#include "kernels/ops.h"
#include "src/pn_common.h"
#include "src/pn_rng.h"

static uint64_t gpu_test_draws;

static float bf16_round(float x) { return pn_bf16_to_f32(pn_f32_to_bf16(x)); }

// n values ~ N(mean, std²), rounded to bf16 so the CPU and the GPU compute from identical values.
static float *randn(int64_t n, float mean, float std) {
    float *p = pn_malloc(sizeof(float) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) p[i] = bf16_round(mean + std * pn_rng_normal(42, 1, gpu_test_draws++));
    return p;
}

#ifdef PN_CUDA_EMU
// The GDN tests built against the host emulation of the kernels (tests/emu): "device" tensors are host
// memory in the tensor's dtype, which is what the emulated kernels read and write.
static pn_tensor dev_alloc(pn_dtype dt, int ndim, const int64_t *shape) {
    pn_tensor t = pn_view(NULL, dt, PN_CPU, ndim, shape);
    t.data = pn_malloc(pn_nbytes(&t) ? pn_nbytes(&t) : 1);
    memset(t.data, 0xff, pn_nbytes(&t)); // as uninitialized as cudaMalloc's: NaN in fp32 and bf16
    return t;
}
static void dev_free(pn_tensor *t) {
    free(t->data);
    t->data = NULL;
}
#define pn_cuda_available() 1
#define PN_EMULATED 1 // no timing: the emulation's speed says nothing
#else
#define PN_EMULATED 0
static pn_tensor dev_alloc(pn_dtype dt, int ndim, const int64_t *shape) {
    pn_tensor t = pn_view(NULL, dt, PN_CUDA, ndim, shape);
    t.data = pn_cuda_backend.alloc(pn_nbytes(&t));
    if (!t.data) pn_panic("out of device memory (%zu bytes)", pn_nbytes(&t));
    return t;
}
static void dev_free(pn_tensor *t) {
    pn_cuda_backend.free(t->data);
    t->data = NULL;
}
#endif

static pn_tensor dev_upload(const float *h, pn_dtype dt, int ndim, const int64_t *shape) {
    pn_tensor t = dev_alloc(dt, ndim, shape);
    pn_op_from_host_f32(&t, h);
    return t;
}

static float *dev_download(const pn_tensor *t) {
    float *h = pn_malloc(sizeof(float) * (size_t)(pn_numel(t) ? pn_numel(t) : 1));
    pn_op_to_host_f32(h, t);
    return h;
}

// ||a - b|| / ||b||; NaN anywhere gives NaN, which fails every tolerance.
static double relerr(const float *a, const float *b, int64_t n) {
    double num = 0.0, den = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    if (den == 0.0) return num == 0.0 ? 0.0 : INFINITY;
    return sqrt(num / den);
}

static inline int cmp_float(const void *a, const void *b) {
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

#endif
