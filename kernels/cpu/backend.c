// The CPU backend table: host memory and the fp32 reference ops.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/pn_common.h"
#include "cpu.h"
#include "threads.h"

static void *cpu_alloc(size_t n) {
    // The first allocation (loading a model) starts the thread pool's bookkeeping, so that its first look at
    // the machine's load (threads.c) spans the loading rather than the first ops.
    (void)pn_cpu_threads();
    void *p = NULL;
    if (posix_memalign(&p, 256, n ? n : 256) != 0) return NULL;
    return p;
}
static void cpu_free(void *p) { free(p); }
static void cpu_copy(void *dst, const void *src, size_t n) { memcpy(dst, src, n); }
static void cpu_memset0(void *dst, size_t n) { memset(dst, 0, n); }
static void cpu_sync(void) {}

// The kernel's estimate of what can be allocated without swapping (MemAvailable), else free pages.
static size_t cpu_mem_avail(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    unsigned long long kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
    if (f) fclose(f);
    if (kb) return (size_t)kb * 1024;
    const long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? (size_t)pages * (size_t)page : 0;
}

void pn_cpu_to_host_f32(float *dst, const pn_tensor *src) {
    int64_t n = pn_numel(src);
    if (src->dtype == PN_F32) {
        memcpy(dst, src->data, (size_t)n * 4);
    } else if (src->dtype == PN_BF16) {
        const uint16_t *s = src->data;
        for (int64_t i = 0; i < n; i++) dst[i] = pn_bf16_to_f32(s[i]);
    } else {
        pn_panic("to_host_f32: unsupported dtype %s", pn_dtype_name(src->dtype));
    }
}

void pn_cpu_from_host_f32(pn_tensor *dst, const float *src) {
    int64_t n = pn_numel(dst);
    if (dst->dtype == PN_F32) {
        memcpy(dst->data, src, (size_t)n * 4);
    } else {
        uint16_t *d = dst->data;
        for (int64_t i = 0; i < n; i++) d[i] = pn_f32_to_bf16(src[i]);
    }
}

int64_t pn_cpu_count_nonfinite(const pn_tensor *x) {
    const int64_t n = pn_numel(x);
    int64_t bad = 0;
    if (x->dtype == PN_F32) {
        const float *p = x->data;
        for (int64_t i = 0; i < n; i++) bad += !isfinite(p[i]);
    } else {
        const uint16_t *p = x->data;
        for (int64_t i = 0; i < n; i++) bad += (p[i] & 0x7f80) == 0x7f80; // bf16: exponent all ones
    }
    return bad;
}

const pn_backend pn_cpu_backend = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .memcpy_h2d = cpu_copy,
    .memcpy_d2h = cpu_copy,
    .memset0 = cpu_memset0,
    .sync = cpu_sync,
    .mem_avail = cpu_mem_avail,
    // no graphs, devices or device collectives (capture_begin ... comm_free NULL); the ops follow in order
    .comm_free = NULL,
    PN_OPS(PN_OP_ENTRY_CPU) // by name: a missing pn_cpu_<op> does not link
};
