// pn_tensor: views and arenas. Device memory comes from the backend table (kernels/ops.h) so this file
// builds with or without CUDA.
#include "pn_tensor.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../kernels/ops.h"
#include "pn_common.h"

#define PN_ALIGN 256

size_t pn_dtype_size(pn_dtype dt) {
    switch (dt) {
    case PN_F32: return 4;
    case PN_BF16: return 2;
    case PN_F16: return 2;
    case PN_I32: return 4;
    }
    return 0;
}

const char *pn_dtype_name(pn_dtype dt) {
    switch (dt) {
    case PN_F32: return "F32";
    case PN_BF16: return "BF16";
    case PN_F16: return "F16";
    case PN_I32: return "I32";
    }
    return "?";
}

const char *pn_device_name(pn_device dev) { return dev == PN_CUDA ? "cuda" : "cpu"; }

int64_t pn_numel(const pn_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t pn_nbytes(const pn_tensor *t) { return (size_t)pn_numel(t) * pn_dtype_size(t->dtype); }

pn_tensor pn_view(void *data, pn_dtype dt, pn_device dev, int ndim, const int64_t *shape) {
    PN_ASSERT(ndim >= 0 && ndim <= PN_MAX_DIMS);
    pn_tensor t = {.data = data, .dtype = dt, .device = dev, .ndim = ndim};
    for (int i = 0; i < ndim; i++) t.shape[i] = shape[i];
    return t;
}

pn_tensor pn_reshape(const pn_tensor *t, int ndim, const int64_t *shape) {
    pn_tensor r = pn_view(t->data, t->dtype, t->device, ndim, shape);
    PN_ASSERT(pn_numel(&r) == pn_numel(t));
    return r;
}

pn_tensor pn_rows(const pn_tensor *t, int64_t r0, int64_t n) {
    PN_ASSERT(t->ndim >= 1 && r0 >= 0 && r0 + n <= t->shape[0]);
    pn_tensor r = *t;
    size_t row = pn_nbytes(t) / (size_t)(t->shape[0] ? t->shape[0] : 1);
    r.data = (char *)t->data + (size_t)r0 * row;
    r.shape[0] = n;
    return r;
}

const char *pn_shape_fmt(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t k = 0;
    k += (size_t)snprintf(buf + k, n - k, "[");
    for (int i = 0; i < ndim && k < n; i++)
        k += (size_t)snprintf(buf + k, n - k, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (k < n) snprintf(buf + k, n - k, "]");
    return buf;
}

const char *pn_shape_str(const pn_tensor *t, char *buf, size_t n) { return pn_shape_fmt(t->ndim, t->shape, buf, n); }

int pn_arena_init(pn_arena *a, pn_device dev, size_t bytes) {
    memset(a, 0, sizeof *a);
    a->device = dev;
    a->size = bytes;
    const pn_backend *be = pn_backend_get(dev);
    if (!be) return pn_errorf("%s backend is not available in this build", pn_device_name(dev));
    if (dev == PN_CPU) { // a size no machine here has (a wrapped count, an absurd config) never reaches malloc
        long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        double have = pages > 0 && page > 0 ? (double)pages * (double)page : 0;
        if (have > 0 && (double)bytes > have)
            return pn_errorf("out of cpu memory: could not allocate %.2f GiB (the machine has %.2f GiB)",
                             (double)bytes / (1 << 30), have / (1 << 30));
    }
    a->base = be->alloc(bytes);
    if (!a->base)
        return pn_errorf("out of %s memory: could not allocate %.2f GiB", pn_device_name(dev),
                         (double)bytes / (1 << 30));
    return 0;
}

void pn_arena_free(pn_arena *a) {
    if (a->base) pn_backend_get(a->device)->free(a->base);
    memset(a, 0, sizeof *a);
}

size_t pn_arena_need(pn_dtype dt, int ndim, const int64_t *shape) {
    size_t n = pn_dtype_size(dt);
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    return (n + PN_ALIGN - 1) / PN_ALIGN * PN_ALIGN;
}

pn_tensor pn_arena_tensor(pn_arena *a, pn_dtype dt, int ndim, const int64_t *shape) {
    size_t need = pn_arena_need(dt, ndim, shape);
    if (a->used + need > a->size)
        pn_panic("arena overflow: %zu + %zu > %zu bytes (the up-front plan is wrong)", a->used, need, a->size);
    pn_tensor t = pn_view(a->base + a->used, dt, a->device, ndim, shape);
    a->used += need;
    return t;
}
