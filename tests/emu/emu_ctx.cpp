// emu_ctx.cpp: the backend context (kernels/cuda/backend.cu's part of common.cuh) for the host emulation:
// the workspaces in host memory, grown on demand and filled with 0xff (NaN) like fresh device memory, and
// the benchmark timer on the wall clock.
#include <time.h>

#include "tests/emu/emu_pre.h"
namespace pn_emu {
#include "kernels/cuda/common.cuh"

pn_cuda_ctx *pn_cuda_ctx_ptr;

static void release(void) {
    for (int i = 0; i < PN_WS_N; i++) free(pn_cuda_ctx_ptr->ws[i]);
}

pn_cuda_ctx *pn_cuda_ctx_init(void) {
    static pn_cuda_ctx ctx;
    pn_cuda_ctx_ptr = &ctx;
    atexit(release);
    return &ctx;
}

void *pn_cuda_ws(pn_cuda_ws_id id, size_t need) {
    pn_cuda_ctx *c = pn_cuda_ctx_get();
    if (need > c->ws_bytes[id]) {
        free(c->ws[id]);
        c->ws[id] = aligned_alloc(256, (need + 255) & ~(size_t)255);
        if (!c->ws[id]) pn_panic("cuda_emu: no memory for a %zu-byte workspace", need);
        memset(c->ws[id], 0xff, need);
        c->ws_bytes[id] = need;
    }
    return c->ws[id];
}

} // namespace pn_emu

static double t0_ms;
static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}
extern "C" void pn_cuda_timer_start(void) { t0_ms = now_ms(); }
extern "C" float pn_cuda_timer_stop_ms(void) { return (float)(now_ms() - t0_ms); }
