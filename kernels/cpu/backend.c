// The CPU backend table: host memory and the fp32 reference ops.
#include <math.h>
#include <stdlib.h>
#include <string.h>

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

static void cpu_to_host_f32(float *dst, const pn_tensor *src) {
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

static void cpu_from_host_f32(pn_tensor *dst, const float *src) {
    int64_t n = pn_numel(dst);
    if (dst->dtype == PN_F32) {
        memcpy(dst->data, src, (size_t)n * 4);
    } else {
        uint16_t *d = dst->data;
        for (int64_t i = 0; i < n; i++) d[i] = pn_f32_to_bf16(src[i]);
    }
}

static int64_t cpu_count_nonfinite(const pn_tensor *x) {
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
    .embedding = pn_cpu_embedding,
    .rmsnorm = pn_cpu_rmsnorm,
    .matmul = pn_cpu_matmul,
    .add = pn_cpu_add,
    .swiglu = pn_cpu_swiglu,
    .rope = pn_cpu_rope,
    .kv_store = pn_cpu_kv_store,
    .attention = pn_cpu_attention,
    .attention_train = pn_cpu_attention_train,
    .attention_bwd = pn_cpu_attention_bwd,
    .to_host_f32 = cpu_to_host_f32,
    .from_host_f32 = cpu_from_host_f32,
    .count_nonfinite = cpu_count_nonfinite,
    .copy = pn_cpu_copy,
    .silu = pn_cpu_silu,
    .silu_bwd = pn_cpu_silu_bwd,
    .rmsnorm_bwd = pn_cpu_rmsnorm_bwd_t,
    .gated_rmsnorm = pn_cpu_gated_rmsnorm_t,
    .gated_rmsnorm_bwd = pn_cpu_gated_rmsnorm_bwd_t,
    .swiglu_bwd = pn_cpu_swiglu_bwd_t,
    .matmul_bwd = pn_cpu_matmul_bwd_t,
    .rope_bwd = pn_cpu_rope_bwd,
    .embedding_bwd = pn_cpu_embedding_bwd,
    .conv1d = pn_cpu_conv1d_t,
    .conv1d_bwd = pn_cpu_conv1d_bwd_t,
    .lin_gates = pn_cpu_lin_gates,
    .lin_gates_bwd = pn_cpu_lin_gates_bwd,
    .gdn_fwd = pn_cpu_gdn_fwd_t,
    .gdn_bwd = pn_cpu_gdn_bwd_t,
    .gdn_step = pn_cpu_gdn_step_t,
};
