// ops.c: the checked, device-agnostic entry points. Every check here guards the kernels below it from
// shapes the model code should never produce, so a failure is a bug (panic), not a user error.
#include "ops.h"

#include <string.h>

#include "../src/pn_common.h"

pn_dtype pn_device_dtype(pn_device dev) { return dev == PN_CUDA ? PN_BF16 : PN_F32; }

const pn_backend *pn_backend_get(pn_device dev) {
    if (dev == PN_CPU) return &pn_cpu_backend;
#ifdef PN_HAVE_CUDA
    if (dev == PN_CUDA) return &pn_cuda_backend;
#endif
    return NULL;
}

#ifndef PN_HAVE_CUDA
int pn_cuda_available(void) { return 0; }
#endif

static const pn_backend *be_of(const char *op, const pn_tensor *t) {
    const pn_backend *be = pn_backend_get(t->device);
    if (!be) pn_panic("%s: no backend for device %s", op, pn_device_name(t->device));
    return be;
}

static void same_device(const char *op, const pn_tensor *a, const pn_tensor *b) {
    if (b && a->device != b->device)
        pn_panic("%s: tensors on different devices (%s vs %s)", op, pn_device_name(a->device),
                 pn_device_name(b->device));
}

static void want_act(const char *op, const pn_tensor *t) {
    if (t->dtype != pn_device_dtype(t->device))
        pn_panic("%s: tensor has dtype %s, the %s backend computes in %s", op, pn_dtype_name(t->dtype),
                 pn_device_name(t->device), pn_dtype_name(pn_device_dtype(t->device)));
}

static void same_shape(const char *op, const pn_tensor *a, const pn_tensor *b) {
    char s1[96], s2[96];
    if (a->ndim != b->ndim || memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim))
        pn_panic("%s: shape %s vs %s", op, pn_shape_str(a, s1, sizeof s1), pn_shape_str(b, s2, sizeof s2));
}

void pn_op_embedding(pn_tensor *out, const pn_tensor *ids, const pn_tensor *table) {
    same_device("embedding", out, ids);
    same_device("embedding", out, table);
    want_act("embedding", out);
    want_act("embedding", table);
    PN_ASSERT(ids->dtype == PN_I32 && out->ndim == 2 && table->ndim == 2);
    PN_ASSERT(out->shape[0] == pn_numel(ids) && out->shape[1] == table->shape[1]);
    be_of("embedding", out)->embedding(out, ids, table);
}

void pn_op_rmsnorm(pn_tensor *out, const pn_tensor *x, const pn_tensor *weight, float eps) {
    same_device("rmsnorm", out, x);
    same_device("rmsnorm", out, weight);
    want_act("rmsnorm", out);
    want_act("rmsnorm", x);
    want_act("rmsnorm", weight);
    PN_ASSERT(weight->ndim == 1 && pn_numel(x) % weight->shape[0] == 0 && pn_numel(out) == pn_numel(x));
    be_of("rmsnorm", out)->rmsnorm(out, x, weight, eps);
}

void pn_op_matmul(pn_tensor *out, const pn_tensor *x, const pn_tensor *w, const pn_tensor *bias) {
    same_device("matmul", out, x);
    same_device("matmul", out, w);
    same_device("matmul", out, bias);
    want_act("matmul", out);
    want_act("matmul", x);
    want_act("matmul", w);
    if (out->ndim != 2 || x->ndim != 2 || w->ndim != 2 || out->shape[0] != x->shape[0] ||
        x->shape[1] != w->shape[1] || out->shape[1] != w->shape[0] ||
        (bias && (bias->ndim != 1 || bias->shape[0] != w->shape[0]))) {
        char a[96], b[96], c[96];
        pn_panic("matmul: out %s = x %s * w %s^T", pn_shape_str(out, a, 96), pn_shape_str(x, b, 96),
                 pn_shape_str(w, c, 96));
    }
    be_of("matmul", out)->matmul(out, x, w, bias);
}

void pn_op_add(pn_tensor *x, const pn_tensor *y) {
    same_device("add", x, y);
    want_act("add", x);
    same_shape("add", x, y);
    be_of("add", x)->add(x, y);
}

void pn_op_swiglu(pn_tensor *out, const pn_tensor *gate, const pn_tensor *up) {
    same_device("swiglu", out, gate);
    same_device("swiglu", out, up);
    want_act("swiglu", out);
    same_shape("swiglu", out, gate);
    same_shape("swiglu", out, up);
    be_of("swiglu", out)->swiglu(out, gate, up);
}

void pn_op_rope(pn_tensor *x, const pn_tensor *inv_freq, int pos0) {
    same_device("rope", x, inv_freq);
    want_act("rope", x);
    PN_ASSERT(x->ndim == 4 && inv_freq->dtype == PN_F32 && x->shape[3] % 2 == 0);
    PN_ASSERT(pn_numel(inv_freq) == x->shape[3] / 2 && pos0 >= 0);
    be_of("rope", x)->rope(x, inv_freq, pos0);
}

void pn_op_kv_store(pn_tensor *cache, const pn_tensor *src, int pos0) {
    same_device("kv_store", cache, src);
    want_act("kv_store", cache);
    want_act("kv_store", src);
    PN_ASSERT(cache->ndim == 4 && src->ndim == 4 && cache->shape[0] == src->shape[0]);
    PN_ASSERT(cache->shape[2] == src->shape[2] && cache->shape[3] == src->shape[3]);
    PN_ASSERT(pos0 >= 0 && pos0 + src->shape[1] <= cache->shape[1]);
    be_of("kv_store", cache)->kv_store(cache, src, pos0);
}

void pn_op_attention(pn_tensor *out, const pn_tensor *q, const pn_tensor *kcache, const pn_tensor *vcache,
                     int pos0, int window) {
    same_device("attention", out, q);
    same_device("attention", out, kcache);
    same_device("attention", out, vcache);
    want_act("attention", out);
    want_act("attention", q);
    want_act("attention", kcache);
    want_act("attention", vcache);
    same_shape("attention", out, q);
    same_shape("attention", kcache, vcache);
    PN_ASSERT(q->ndim == 4 && kcache->ndim == 4 && q->shape[0] == kcache->shape[0]);
    PN_ASSERT(q->shape[3] == kcache->shape[3] && q->shape[2] % kcache->shape[2] == 0);
    PN_ASSERT(pos0 >= 0 && pos0 + q->shape[1] <= kcache->shape[1] && window >= 0);
    be_of("attention", out)->attention(out, q, kcache, vcache, pos0, window);
}

void pn_op_attention_bwd(pn_tensor *dq, pn_tensor *dk, pn_tensor *dv, const pn_tensor *dout, const pn_tensor *q,
                         const pn_tensor *k, const pn_tensor *v, const pn_tensor *out, int window) {
    const pn_tensor *all[] = {dk, dv, dout, q, k, v, out};
    for (int i = 0; i < 7; i++) {
        same_device("attention_bwd", dq, all[i]);
        want_act("attention_bwd", all[i]);
    }
    want_act("attention_bwd", dq);
    same_shape("attention_bwd", dq, q);
    same_shape("attention_bwd", dout, q);
    same_shape("attention_bwd", out, q);
    same_shape("attention_bwd", dk, k);
    same_shape("attention_bwd", dv, v);
    same_shape("attention_bwd", k, v);
    PN_ASSERT(q->ndim == 4 && k->shape[0] == q->shape[0] && k->shape[1] == q->shape[1]);
    PN_ASSERT(q->shape[3] == k->shape[3] && q->shape[2] % k->shape[2] == 0 && window >= 0);
    const pn_backend *be = be_of("attention_bwd", dq);
    // The CUDA backward (cuDNN SDPA backward) is the next step of issue 4; until then training runs on the CPU.
    if (!be->attention_bwd) pn_panic("attention_bwd is not implemented on the %s backend yet", be->name);
    be->attention_bwd(dq, dk, dv, dout, q, k, v, out, window);
}

void pn_op_to_host_f32(float *dst, const pn_tensor *src) { be_of("to_host_f32", src)->to_host_f32(dst, src); }

void pn_op_from_host_f32(pn_tensor *dst, const float *src) {
    PN_ASSERT(dst->dtype == PN_F32 || dst->dtype == PN_BF16);
    be_of("from_host_f32", dst)->from_host_f32(dst, src);
}

int64_t pn_op_count_nonfinite(const pn_tensor *x) {
    PN_ASSERT(x->dtype == PN_F32 || x->dtype == PN_BF16);
    return be_of("count_nonfinite", x)->count_nonfinite(x);
}
