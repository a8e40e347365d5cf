// ops.c: the checked, device-agnostic entry points. Every check here guards the kernels below it from
// shapes the model code should never produce, so a failure is a bug (panic), not a user error.
#include "ops.h"

#include <stdlib.h>
#include <string.h>

#include "../src/pn_common.h"

pn_dtype pn_device_dtype(pn_device dev) { return dev == PN_CUDA ? PN_BF16 : PN_F32; }

const pn_backend *pn_backend_get(pn_device dev) {
    if (dev == PN_CPU) return &pn_cpu_backend;
#ifdef PN_HAVE_CUDA
    if (dev == PN_CUDA) return pn_cuda_backend_active(); // pn_cuda_backend, or its PN_OP_PROFILE=1 twin
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

// The backend of t, which must have the op (a table entry may be NULL while a backend lacks it).
static const pn_backend *be_need(const char *op, const pn_tensor *t, int present) {
    const pn_backend *be = be_of(op, t);
    if (!present) pn_panic("%s is not implemented on the %s backend", op, be->name);
    return be;
}
#define BE(op, t) be_need(#op, (t), be_of(#op, (t))->op != NULL)

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

// out [N, O] = x [N, I] w [O, I]^T (+ bias [O]): matmul's and matmul_multi's checks.
static void matmul_check(const char *op, const pn_tensor *out, const pn_tensor *x, const pn_tensor *w,
                         const pn_tensor *bias) {
    same_device(op, out, x);
    same_device(op, out, w);
    same_device(op, out, bias);
    want_act(op, out);
    want_act(op, x);
    want_act(op, w);
    if (out->ndim != 2 || x->ndim != 2 || w->ndim != 2 || out->shape[0] != x->shape[0] ||
        x->shape[1] != w->shape[1] || out->shape[1] != w->shape[0] ||
        (bias && (bias->ndim != 1 || bias->shape[0] != w->shape[0]))) {
        char a[96], b[96], c[96];
        pn_panic("%s: out %s = x %s * w %s^T", op, pn_shape_str(out, a, 96), pn_shape_str(x, b, 96),
                 pn_shape_str(w, c, 96));
    }
}

// PN_NO_FUSED=1 (read once): the decode fusions run as the ops they fuse, for comparisons.
int pn_ops_unfused(void) {
    static int v = -1;
    if (v < 0) v = getenv("PN_NO_FUSED") != NULL;
    return v;
}

void pn_op_matmul(pn_tensor *out, const pn_tensor *x, const pn_tensor *w, const pn_tensor *bias) {
    matmul_check("matmul", out, x, w, bias);
    be_of("matmul", out)->matmul(out, x, w, bias);
}

// out [N, O] = swiglu(x [N, I] w_gate [O, I]^T, x w_up^T): matmul_swiglu's and add_rmsnorm_swiglu's checks.
static void matmul_swiglu_check(const char *op, const pn_tensor *out, const pn_tensor *x, const pn_tensor *w_gate,
                                const pn_tensor *w_up) {
    same_device(op, out, x);
    same_device(op, out, w_gate);
    same_device(op, out, w_up);
    want_act(op, out);
    want_act(op, x);
    want_act(op, w_gate);
    want_act(op, w_up);
    same_shape(op, w_gate, w_up);
    if (out->ndim != 2 || x->ndim != 2 || w_gate->ndim != 2 || out->shape[0] != x->shape[0] ||
        x->shape[1] != w_gate->shape[1] || out->shape[1] != w_gate->shape[0]) {
        char a[96], b[96], c[96];
        pn_panic("%s: out %s = swiglu(x %s * w %s^T, ...)", op, pn_shape_str(out, a, 96), pn_shape_str(x, b, 96),
                 pn_shape_str(w_gate, c, 96));
    }
}

void pn_op_matmul_swiglu(pn_tensor *out, const pn_tensor *x, const pn_tensor *w_gate, const pn_tensor *w_up) {
    matmul_swiglu_check("matmul_swiglu", out, x, w_gate, w_up);
    be_of("matmul_swiglu", out)->matmul_swiglu(out, x, w_gate, w_up);
}

void pn_op_matmul_multi(int n, pn_tensor *const *out, const pn_tensor *x, const pn_tensor *const *w,
                        const pn_tensor *const *bias, unsigned silu) {
    PN_ASSERT(n >= 1 && n <= PN_MATMUL_MULTI && (silu >> n) == 0);
    if (pn_ops_unfused()) { // n matmuls and the silus (as many launches)
        for (int i = 0; i < n; i++) {
            pn_op_matmul(out[i], x, w[i], bias ? bias[i] : NULL);
            if (silu >> i & 1) pn_op_silu(out[i], out[i]);
        }
        return;
    }
    for (int i = 0; i < n; i++) matmul_check("matmul_multi", out[i], x, w[i], bias ? bias[i] : NULL);
    be_of("matmul_multi", x)->matmul_multi(n, out, x, w, bias, silu);
}

// x [N, D] (+ y) normalized by norm_w [D] (rmsnorm's, add_rmsnorm's argument checks)
static void norm_in_check(const char *op, const pn_tensor *x, const pn_tensor *y, const pn_tensor *norm_w) {
    same_device(op, x, y);
    same_device(op, x, norm_w);
    want_act(op, x);
    want_act(op, norm_w);
    if (y) {
        want_act(op, y);
        same_shape(op, x, y);
    }
    if (x->ndim != 2 || norm_w->ndim != 1 || norm_w->shape[0] != x->shape[1]) {
        char a[96], b[96];
        pn_panic("%s: rows %s normalized by a weight %s", op, pn_shape_str(x, a, 96), pn_shape_str(norm_w, b, 96));
    }
}

void pn_op_add_rmsnorm_swiglu(pn_tensor *out, const pn_tensor *x, const pn_tensor *y, const pn_tensor *norm_w,
                              float eps, const pn_tensor *w_gate, const pn_tensor *w_up) {
    norm_in_check("add_rmsnorm_swiglu", x, y, norm_w);
    PN_ASSERT(out->data != x->data && (!y || out->data != y->data));
    matmul_swiglu_check("add_rmsnorm_swiglu", out, x, w_gate, w_up);
    be_of("add_rmsnorm_swiglu", x)->add_rmsnorm_swiglu(out, x, y, norm_w, eps, w_gate, w_up);
}

void pn_op_matmul_add_rmsnorm(pn_tensor *x, const pn_tensor *y, const pn_tensor *a, const pn_tensor *w, pn_tensor *xn,
                              const pn_tensor *norm_w, float eps) {
    norm_in_check("matmul_add_rmsnorm", x, y, norm_w);
    same_shape("matmul_add_rmsnorm", x, xn);
    PN_ASSERT(xn->data != x->data && a->data != x->data && (!y || y->data != x->data));
    matmul_check("matmul_add_rmsnorm", x, a, w, NULL);
    be_of("matmul_add_rmsnorm", x)->matmul_add_rmsnorm(x, y, a, w, xn, norm_w, eps);
}

void pn_op_add_rmsnorm(pn_tensor *sum, const pn_tensor *x, const pn_tensor *y, pn_tensor *out, const pn_tensor *weight,
                       float eps) {
    same_device("add_rmsnorm", x, y);
    same_device("add_rmsnorm", x, sum);
    same_device("add_rmsnorm", x, out);
    same_device("add_rmsnorm", x, weight);
    want_act("add_rmsnorm", x);
    want_act("add_rmsnorm", sum);
    want_act("add_rmsnorm", out);
    want_act("add_rmsnorm", weight);
    same_shape("add_rmsnorm", x, y);
    same_shape("add_rmsnorm", x, sum);
    PN_ASSERT(weight->ndim == 1 && pn_numel(x) % weight->shape[0] == 0 && pn_numel(out) == pn_numel(x) &&
              out->data != x->data && out->data != sum->data && sum->data != y->data);
    be_of("add_rmsnorm", x)->add_rmsnorm(sum, x, y, out, weight, eps);
}

void pn_op_add(pn_tensor *sum, const pn_tensor *x, const pn_tensor *y) {
    same_device("add", x, y);
    same_device("add", x, sum);
    want_act("add", x);
    want_act("add", sum);
    same_shape("add", x, y);
    same_shape("add", x, sum);
    be_of("add", x)->add(sum, x, y);
}

void pn_op_swiglu(pn_tensor *out, const pn_tensor *gate, const pn_tensor *up) {
    same_device("swiglu", out, gate);
    same_device("swiglu", out, up);
    want_act("swiglu", out);
    same_shape("swiglu", out, gate);
    same_shape("swiglu", out, up);
    be_of("swiglu", out)->swiglu(out, gate, up);
}

// cu_seqlens of a packed batch (kernels/packed.h): I32 [n + 1] on the op's device, with batch 1 and T rows.
// On the CPU the offsets themselves are checked too (on a GPU that would cost a copy; the trainer builds them).
static void packed_check(const char *op, const pn_tensor *cu, const pn_tensor *x) {
    if (!cu) return;
    same_device(op, x, cu);
    if (cu->dtype != PN_I32 || cu->ndim != 1 || cu->shape[0] < 2 || x->shape[0] != 1)
        pn_panic("%s: cu_seqlens must be I32 [n + 1] (n >= 1) with batch 1", op);
    if (cu->device != PN_CPU) return;
    const int32_t *c = cu->data;
    const int64_t n = cu->shape[0] - 1;
    for (int64_t i = 0; i < n; i++)
        if (c[i + 1] < c[i]) pn_panic("%s: cu_seqlens decreases at %lld", op, (long long)i);
    if (c[0] != 0 || c[n] != x->shape[1])
        pn_panic("%s: cu_seqlens must run from 0 to T = %lld", op, (long long)x->shape[1]);
}

void pn_op_rope(pn_tensor *x, const pn_tensor *inv_freq, int pos0, const pn_tensor *cu_seqlens) {
    same_device("rope", x, inv_freq);
    want_act("rope", x);
    PN_ASSERT(x->ndim == 4 && inv_freq->dtype == PN_F32 && x->shape[3] % 2 == 0);
    PN_ASSERT(pn_numel(inv_freq) == x->shape[3] / 2 && pos0 >= 0);
    packed_check("rope", cu_seqlens, x);
    be_of("rope", x)->rope(x, inv_freq, pos0, cu_seqlens);
}

void pn_op_kv_store(pn_tensor *cache, const pn_tensor *src, int pos0) {
    same_device("kv_store", cache, src);
    want_act("kv_store", cache);
    want_act("kv_store", src);
    PN_ASSERT(cache->ndim == 4 && src->ndim == 4 && cache->shape[0] == src->shape[0]);
    PN_ASSERT(cache->shape[2] == src->shape[2] && cache->shape[3] == src->shape[3]);
    PN_ASSERT(pos0 >= 0 && src->shape[1] <= cache->shape[1]); // a ring: slot (pos0 + t) mod cap
    be_of("kv_store", cache)->kv_store(cache, src, pos0);
}

static void attention_check(const char *op, const pn_tensor *out, const pn_tensor *q, const pn_tensor *kcache,
                            const pn_tensor *vcache, int pos0, int window) {
    same_device(op, out, q);
    same_device(op, out, kcache);
    same_device(op, out, vcache);
    want_act(op, out);
    want_act(op, q);
    want_act(op, kcache);
    want_act(op, vcache);
    same_shape(op, out, q);
    same_shape(op, kcache, vcache);
    PN_ASSERT(q->ndim == 4 && kcache->ndim == 4 && q->shape[0] == kcache->shape[0]);
    PN_ASSERT(q->shape[3] == kcache->shape[3] && q->shape[2] % kcache->shape[2] == 0);
    // every key a query reads is in the ring: the T new ones and the window - 1 (or all pos0) before them
    const int64_t before = window > 0 && window - 1 < pos0 ? window - 1 : pos0;
    PN_ASSERT(pos0 >= 0 && window >= 0 && q->shape[1] + before <= kcache->shape[1]);
}

void pn_op_attention(pn_tensor *out, const pn_tensor *q, const pn_tensor *kcache, const pn_tensor *vcache,
                     int pos0, int window) {
    attention_check("attention", out, q, kcache, vcache, pos0, window);
    be_of("attention", out)->attention(out, q, kcache, vcache, pos0, window);
}

// pos I32 [B] for x [B, ...] on x's device.
static void pos_check(const char *op, const pn_tensor *pos, const pn_tensor *x) {
    same_device(op, x, pos);
    if (pos->dtype != PN_I32 || pos->ndim != 1 || pos->shape[0] != x->shape[0])
        pn_panic("%s: pos must be I32 [B] (one position per sequence)", op);
}

// inv_freq (NULL: no RoPE) F32 [D / 2] for x [..., D] on x's device.
static void freq_check(const char *op, const pn_tensor *inv_freq, const pn_tensor *x) {
    if (!inv_freq) return;
    same_device(op, x, inv_freq);
    PN_ASSERT(inv_freq->dtype == PN_F32 && x->shape[x->ndim - 1] % 2 == 0);
    PN_ASSERT(pn_numel(inv_freq) == x->shape[x->ndim - 1] / 2);
}

static void kv_store_at_check(const char *op, const pn_tensor *kcache, const pn_tensor *vcache, const pn_tensor *k,
                              const pn_tensor *v, const pn_tensor *inv_freq, const pn_tensor *pos) {
    same_device(op, kcache, k);
    same_device(op, kcache, vcache);
    same_device(op, kcache, v);
    want_act(op, kcache);
    want_act(op, vcache);
    want_act(op, k);
    want_act(op, v);
    same_shape(op, kcache, vcache);
    same_shape(op, k, v);
    PN_ASSERT(kcache->ndim == 4 && k->ndim == 4 && kcache->shape[0] == k->shape[0]);
    PN_ASSERT(kcache->shape[2] == k->shape[2] && kcache->shape[3] == k->shape[3] && k->shape[1] <= kcache->shape[1]);
    freq_check(op, inv_freq, k);
    pos_check(op, pos, k);
}

void pn_op_kv_store_at(pn_tensor *kcache, pn_tensor *vcache, const pn_tensor *k, const pn_tensor *v,
                       const pn_tensor *inv_freq, const pn_tensor *pos) {
    kv_store_at_check("kv_store_at", kcache, vcache, k, v, inv_freq, pos);
    be_of("kv_store_at", kcache)->kv_store_at(kcache, vcache, k, v, inv_freq, pos);
}

void pn_op_attention_at(pn_tensor *out, const pn_tensor *q, const pn_tensor *kcache, const pn_tensor *vcache,
                        const pn_tensor *inv_freq, const pn_tensor *pos, int window) {
    attention_check("attention_at", out, q, kcache, vcache, 0, window);
    freq_check("attention_at", inv_freq, q);
    pos_check("attention_at", pos, q);
    be_of("attention_at", out)->attention_at(out, q, kcache, vcache, inv_freq, pos, window);
}

void pn_op_kv_attend_at(pn_tensor *out, const pn_tensor *q, pn_tensor *kcache, pn_tensor *vcache, const pn_tensor *k,
                        const pn_tensor *v, const pn_tensor *inv_freq, const pn_tensor *pos, int window) {
    if (pn_ops_unfused()) { // the two ops (two launches)
        pn_op_kv_store_at(kcache, vcache, k, v, inv_freq, pos);
        pn_op_attention_at(out, q, kcache, vcache, inv_freq, pos, window);
        return;
    }
    kv_store_at_check("kv_attend_at", kcache, vcache, k, v, inv_freq, pos);
    PN_ASSERT(k->shape[1] == q->shape[1]);
    attention_check("kv_attend_at", out, q, kcache, vcache, 0, window);
    freq_check("kv_attend_at", inv_freq, q);
    pos_check("kv_attend_at", pos, q);
    be_of("kv_attend_at", out)->kv_attend_at(out, q, kcache, vcache, k, v, inv_freq, pos, window);
}

// lse F32 [B, T, Hq] for q [B, T, Hq, D].
static void lse_check(const char *op, const pn_tensor *lse, const pn_tensor *q) {
    if (!lse) return;
    same_device(op, q, lse);
    if (lse->dtype != PN_F32 || pn_numel(lse) != q->shape[0] * q->shape[1] * q->shape[2])
        pn_panic("%s: lse must be F32 with B T Hq elements", op);
}

void pn_op_attention_train(pn_tensor *out, pn_tensor *lse, const pn_tensor *q, const pn_tensor *k, const pn_tensor *v,
                           int window, const pn_tensor *cu_seqlens) {
    lse_check("attention_train", lse, q);
    if (!lse && !cu_seqlens) {
        pn_op_attention(out, q, k, v, 0, window);
        return;
    }
    PN_ASSERT(lse);
    attention_check("attention_train", out, q, k, v, 0, window);
    PN_ASSERT(k->shape[1] == q->shape[1]);
    packed_check("attention_train", cu_seqlens, q);
    BE(attention_train, out)->attention_train(out, lse, q, k, v, window, cu_seqlens);
}

void pn_op_attention_bwd(pn_tensor *dq, pn_tensor *dk, pn_tensor *dv, const pn_tensor *dout, const pn_tensor *q,
                         const pn_tensor *k, const pn_tensor *v, const pn_tensor *out, const pn_tensor *lse,
                         int window, const pn_tensor *cu_seqlens) {
    lse_check("attention_bwd", lse, q);
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
    packed_check("attention_bwd", cu_seqlens, q);
    BE(attention_bwd, dq)->attention_bwd(dq, dk, dv, dout, q, k, v, out, lse, window, cu_seqlens);
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

// ---------------------------------------------------------------------------------------------------
// training and linear-block ops

// A parameter gradient: F32 on every backend, shaped like its parameter.
static void want_grad(const char *op, const pn_tensor *g, const pn_tensor *param) {
    if (!g) return;
    same_device(op, g, param);
    if (g->dtype != PN_F32) pn_panic("%s: parameter gradient has dtype %s, expected f32", op, pn_dtype_name(g->dtype));
    if (pn_numel(g) != pn_numel(param)) {
        char a[96], b[96];
        pn_panic("%s: gradient %s for parameter %s", op, pn_shape_str(g, a, 96), pn_shape_str(param, b, 96));
    }
}

static void want_f32(const char *op, const pn_tensor *t) {
    if (t && t->dtype != PN_F32) pn_panic("%s: tensor has dtype %s, expected f32", op, pn_dtype_name(t->dtype));
}


void pn_op_copy(pn_tensor *dst, const pn_tensor *src) {
    same_device("copy", dst, src);
    same_shape("copy", dst, src);
    PN_ASSERT(dst->dtype == src->dtype);
    BE(copy, dst)->copy(dst, src);
}

void pn_op_silu(pn_tensor *y, const pn_tensor *x) {
    same_device("silu", y, x);
    want_act("silu", y);
    want_act("silu", x);
    PN_ASSERT(pn_numel(y) == pn_numel(x));
    BE(silu, y)->silu(y, x);
}

void pn_op_silu_bwd(pn_tensor *dx, const pn_tensor *dy, const pn_tensor *x) {
    same_device("silu_bwd", dx, dy);
    same_device("silu_bwd", dx, x);
    want_act("silu_bwd", dx);
    want_act("silu_bwd", dy);
    want_act("silu_bwd", x);
    PN_ASSERT(pn_numel(dx) == pn_numel(x) && pn_numel(dy) == pn_numel(x));
    BE(silu_bwd, dx)->silu_bwd(dx, dy, x);
}

void pn_op_rmsnorm_bwd(pn_tensor *dx, pn_tensor *dw, const pn_tensor *dy, const pn_tensor *x, const pn_tensor *w,
                       float eps, int accumulate_dx) {
    same_device("rmsnorm_bwd", dx, dy);
    same_device("rmsnorm_bwd", dx, x);
    same_device("rmsnorm_bwd", dx, w);
    want_act("rmsnorm_bwd", dx);
    want_act("rmsnorm_bwd", dy);
    want_act("rmsnorm_bwd", x);
    want_act("rmsnorm_bwd", w);
    want_grad("rmsnorm_bwd", dw, w);
    PN_ASSERT(w->ndim == 1 && pn_numel(x) % w->shape[0] == 0 && pn_numel(dx) == pn_numel(x) &&
              pn_numel(dy) == pn_numel(x) && !(accumulate_dx && dx->data == dy->data));
    BE(rmsnorm_bwd, dx)->rmsnorm_bwd(dx, dw, dy, x, w, eps, accumulate_dx);
}

void pn_op_gated_rmsnorm(pn_tensor *y, const pn_tensor *x, const pn_tensor *gate, const pn_tensor *w, float eps) {
    same_device("gated_rmsnorm", y, x);
    same_device("gated_rmsnorm", y, gate);
    same_device("gated_rmsnorm", y, w);
    want_act("gated_rmsnorm", y);
    want_act("gated_rmsnorm", x);
    want_act("gated_rmsnorm", gate);
    want_act("gated_rmsnorm", w);
    PN_ASSERT(w->ndim == 1 && pn_numel(x) % w->shape[0] == 0 && pn_numel(y) == pn_numel(x) &&
              pn_numel(gate) == pn_numel(x));
    BE(gated_rmsnorm, y)->gated_rmsnorm(y, x, gate, w, eps);
}

void pn_op_gated_rmsnorm_bwd(pn_tensor *dx, pn_tensor *dgate, pn_tensor *dw, const pn_tensor *dy, const pn_tensor *x,
                             const pn_tensor *gate, const pn_tensor *w, float eps) {
    const pn_tensor *acts[] = {dgate, dy, x, gate, w};
    for (int i = 0; i < 5; i++) {
        same_device("gated_rmsnorm_bwd", dx, acts[i]);
        want_act("gated_rmsnorm_bwd", acts[i]);
    }
    want_act("gated_rmsnorm_bwd", dx);
    want_grad("gated_rmsnorm_bwd", dw, w);
    const int64_t n = pn_numel(x);
    PN_ASSERT(w->ndim == 1 && n % w->shape[0] == 0 && pn_numel(dx) == n && pn_numel(dgate) == n &&
              pn_numel(dy) == n && pn_numel(gate) == n);
    BE(gated_rmsnorm_bwd, dx)->gated_rmsnorm_bwd(dx, dgate, dw, dy, x, gate, w, eps);
}

void pn_op_swiglu_bwd(pn_tensor *dgate, pn_tensor *dup, const pn_tensor *dout, const pn_tensor *gate,
                      const pn_tensor *up) {
    const pn_tensor *all[] = {dup, dout, gate, up};
    for (int i = 0; i < 4; i++) {
        same_device("swiglu_bwd", dgate, all[i]);
        want_act("swiglu_bwd", all[i]);
        same_shape("swiglu_bwd", dgate, all[i]);
    }
    want_act("swiglu_bwd", dgate);
    BE(swiglu_bwd, dgate)->swiglu_bwd(dgate, dup, dout, gate, up);
}

void pn_op_matmul_bwd(pn_tensor *dx, pn_tensor *dw, pn_tensor *db, const pn_tensor *dout, const pn_tensor *x,
                      const pn_tensor *w, int accumulate_dx) {
    same_device("matmul_bwd", dout, x);
    same_device("matmul_bwd", dout, w);
    same_device("matmul_bwd", dout, dx);
    want_act("matmul_bwd", dout);
    want_act("matmul_bwd", x);
    want_act("matmul_bwd", w);
    if (dx) want_act("matmul_bwd", dx);
    want_grad("matmul_bwd", dw, w);
    if (db) {
        same_device("matmul_bwd", dout, db);
        want_f32("matmul_bwd", db);
        PN_ASSERT(pn_numel(db) == w->shape[0]);
    }
    if (dout->ndim != 2 || x->ndim != 2 || w->ndim != 2 || dout->shape[0] != x->shape[0] ||
        x->shape[1] != w->shape[1] || dout->shape[1] != w->shape[0] || (dx && pn_numel(dx) != pn_numel(x))) {
        char a[96], b[96], c[96];
        pn_panic("matmul_bwd: dout %s for x %s * w %s^T", pn_shape_str(dout, a, 96), pn_shape_str(x, b, 96),
                 pn_shape_str(w, c, 96));
    }
    BE(matmul_bwd, dout)->matmul_bwd(dx, dw, db, dout, x, w, accumulate_dx);
}

void pn_op_rope_bwd(pn_tensor *dx, const pn_tensor *inv_freq, int pos0, const pn_tensor *cu_seqlens) {
    same_device("rope_bwd", dx, inv_freq);
    want_act("rope_bwd", dx);
    PN_ASSERT(dx->ndim == 4 && inv_freq->dtype == PN_F32 && dx->shape[3] % 2 == 0);
    PN_ASSERT(pn_numel(inv_freq) == dx->shape[3] / 2 && pos0 >= 0);
    packed_check("rope_bwd", cu_seqlens, dx);
    BE(rope_bwd, dx)->rope_bwd(dx, inv_freq, pos0, cu_seqlens);
}

void pn_op_embedding_bwd(pn_tensor *dtable, const pn_tensor *ids, const pn_tensor *dout) {
    same_device("embedding_bwd", dtable, ids);
    same_device("embedding_bwd", dtable, dout);
    want_f32("embedding_bwd", dtable);
    want_act("embedding_bwd", dout);
    PN_ASSERT(ids->dtype == PN_I32 && dout->ndim == 2 && dtable->ndim == 2);
    PN_ASSERT(dout->shape[0] == pn_numel(ids) && dout->shape[1] == dtable->shape[1]);
    BE(embedding_bwd, dtable)->embedding_bwd(dtable, ids, dout);
}

// Shared checks of conv1d and its backward: x [B, T, C]; w [C, W] (any shape of C * W elements, e.g. [C, 1, W])
// or kdyn [B, T, C * W]; cu_seqlens I32 with B = 1.
static void conv_check(const char *op, const pn_tensor *y, const pn_tensor *x, const pn_tensor *w,
                       const pn_tensor *bias, const pn_tensor *kdyn, const pn_tensor *cu) {
    same_device(op, y, x);
    same_device(op, y, w);
    same_device(op, y, bias);
    same_device(op, y, kdyn);
    same_device(op, y, cu);
    want_act(op, y);
    want_act(op, x);
    same_shape(op, y, x);
    PN_ASSERT(x->ndim == 3 && (w != NULL) != (kdyn != NULL));
    const int64_t C = x->shape[2];
    if (w) {
        want_act(op, w);
        PN_ASSERT(pn_numel(w) % C == 0 && pn_numel(w) / C >= 1 && pn_numel(w) / C <= 64);
        if (bias) {
            want_act(op, bias);
            PN_ASSERT(pn_numel(bias) == C);
        }
    } else {
        want_act(op, kdyn);
        PN_ASSERT(!bias && pn_numel(kdyn) % pn_numel(x) == 0 && pn_numel(kdyn) / pn_numel(x) >= 1 &&
                  pn_numel(kdyn) / pn_numel(x) <= 64);
    }
    if (cu) PN_ASSERT(cu->dtype == PN_I32 && pn_numel(cu) >= 2 && x->shape[0] == 1);
}

void pn_op_conv1d(pn_tensor *y, const pn_tensor *x, const pn_tensor *w, const pn_tensor *bias, const pn_tensor *kdyn,
                  int act_silu, const pn_tensor *cu_seqlens) {
    conv_check("conv1d", y, x, w, bias, kdyn, cu_seqlens);
    BE(conv1d, y)->conv1d(y, x, w, bias, kdyn, act_silu, cu_seqlens);
}

void pn_op_conv1d_continue(pn_tensor *y, pn_tensor *cache, const pn_tensor *x, const pn_tensor *w,
                           const pn_tensor *kdyn, int act_silu) {
    conv_check("conv1d_continue", y, x, w, NULL, kdyn, NULL);
    same_device("conv1d_continue", y, cache);
    want_act("conv1d_continue", cache);
    const int64_t C = x->shape[2], W = w ? pn_numel(w) / C : pn_numel(kdyn) / pn_numel(x);
    PN_ASSERT(cache->ndim == 3 && cache->shape[0] == x->shape[0] && cache->shape[1] == W - 1 && cache->shape[2] == C);
    BE(conv1d_continue, y)->conv1d_continue(y, cache, x, w, kdyn, act_silu);
}

void pn_op_conv1d_bwd(pn_tensor *dx, pn_tensor *dw, pn_tensor *dbias, pn_tensor *dkdyn, const pn_tensor *dy,
                      const pn_tensor *x, const pn_tensor *w, const pn_tensor *bias, const pn_tensor *kdyn,
                      int act_silu, const pn_tensor *cu_seqlens) {
    conv_check("conv1d_bwd", dx, x, w, bias, kdyn, cu_seqlens);
    same_device("conv1d_bwd", dx, dy);
    want_act("conv1d_bwd", dy);
    same_shape("conv1d_bwd", dy, x);
    if (w) want_grad("conv1d_bwd", dw, w);
    if (dbias) {
        PN_ASSERT(bias);
        want_grad("conv1d_bwd", dbias, bias);
    }
    if (kdyn) {
        PN_ASSERT(dkdyn && !dw && !dbias);
        same_device("conv1d_bwd", dx, dkdyn);
        want_act("conv1d_bwd", dkdyn);
        PN_ASSERT(pn_numel(dkdyn) == pn_numel(kdyn));
    } else {
        PN_ASSERT(!dkdyn);
    }
    BE(conv1d_bwd, dx)->conv1d_bwd(dx, dw, dbias, dkdyn, dy, x, w, bias, kdyn, act_silu, cu_seqlens);
}

// za, zb [N, H] (activation dtype); g, beta F32 of the same element count; A_log, dt_bias [H].
static void gates_check(const char *op, const pn_tensor *g, const pn_tensor *beta, const pn_tensor *za,
                        const pn_tensor *zb, const pn_tensor *A_log, const pn_tensor *dt_bias) {
    same_device(op, zb, g);
    same_device(op, zb, beta);
    same_device(op, zb, za);
    same_device(op, zb, A_log);
    same_device(op, zb, dt_bias);
    want_act(op, zb);
    want_f32(op, g);
    want_f32(op, beta);
    PN_ASSERT(zb->ndim == 2 && pn_numel(g) == pn_numel(zb) && pn_numel(beta) == pn_numel(zb));
    PN_ASSERT((za != NULL) == (A_log != NULL) && (za != NULL) == (dt_bias != NULL));
    if (za) {
        want_act(op, za);
        want_act(op, A_log);
        want_act(op, dt_bias);
        same_shape(op, za, zb);
        PN_ASSERT(pn_numel(A_log) == zb->shape[1] && pn_numel(dt_bias) == zb->shape[1]);
    }
}

void pn_op_lin_gates(pn_tensor *g, pn_tensor *beta, const pn_tensor *za, const pn_tensor *zb, const pn_tensor *A_log,
                     const pn_tensor *dt_bias) {
    gates_check("lin_gates", g, beta, za, zb, A_log, dt_bias);
    BE(lin_gates, zb)->lin_gates(g, beta, za, zb, A_log, dt_bias);
}

void pn_op_lin_gates_bwd(pn_tensor *dza, pn_tensor *dzb, pn_tensor *dA_log, pn_tensor *ddt_bias, const pn_tensor *dg,
                         const pn_tensor *dbeta, const pn_tensor *za, const pn_tensor *g, const pn_tensor *beta,
                         const pn_tensor *A_log, const pn_tensor *dt_bias) {
    gates_check("lin_gates_bwd", g, beta, za, dzb, A_log, dt_bias);
    want_f32("lin_gates_bwd", dg);
    want_f32("lin_gates_bwd", dbeta);
    same_device("lin_gates_bwd", dzb, dg);
    same_device("lin_gates_bwd", dzb, dbeta);
    PN_ASSERT(pn_numel(dg) == pn_numel(g) && pn_numel(dbeta) == pn_numel(g));
    PN_ASSERT((dza != NULL) == (za != NULL));
    if (dza) {
        want_act("lin_gates_bwd", dza);
        same_shape("lin_gates_bwd", dza, za);
        want_grad("lin_gates_bwd", dA_log, A_log);
        want_grad("lin_gates_bwd", ddt_bias, dt_bias);
    } else {
        PN_ASSERT(!dA_log && !ddt_bias);
    }
    BE(lin_gates_bwd, dzb)->lin_gates_bwd(dza, dzb, dA_log, ddt_bias, dg, dbeta, za, g, beta, A_log, dt_bias);
}

// The GDN config from tensors. cu_seqlens lives on the op's device: its values are checked by the backend
// (the CPU reads them here; the CUDA op copies them to the host and checks them before launching).
static int gdn_cfg(pn_gdn_cfg *c, const char *op, const pn_tensor *q, const pn_tensor *k, const pn_tensor *v,
                   const pn_tensor *g, const pn_tensor *beta, const pn_tensor *state, const pn_tensor *cu,
                   const int32_t *cu_host, int l2) {
    const pn_tensor *all[] = {k, v, g, beta, state, cu};
    for (int i = 0; i < 6; i++) same_device(op, q, all[i]);
    want_act(op, q);
    want_act(op, k);
    want_act(op, v);
    if (cu) PN_ASSERT(cu->dtype == PN_I32 && pn_numel(cu) >= 2);
    const int64_t n_seqs = cu ? pn_numel(cu) - 1 : 0;
    // Shapes (and, on the CPU, the offsets) are checked here; on CUDA the backend checks the offsets.
    const int32_t *host_cu = cu && q->device == PN_CPU ? cu->data : NULL;
    if (pn_gdn_cfg_from_tensors(c, q, k, v, g, beta, host_cu || !cu ? state : NULL, host_cu, n_seqs, 0.0f, l2))
        return -1;
    if (cu && !host_cu) {
        if (q->shape[0] != 1) return pn_errorf("gdn: cu_seqlens needs batch 1, got %lld", (long long)q->shape[0]);
        if (state && (state->ndim != 4 || state->shape[0] != n_seqs || state->dtype != PN_F32))
            return pn_errorf("gdn: state must be F32 [%lld, H, K, V]", (long long)n_seqs);
        c->cu_seqlens = cu->data;
        c->n_seqs = n_seqs;
        c->cu_host = cu_host;
    }
    return 0;
}

// The buffer the forward may keep its intermediates in (NULL or empty: none), on q's device.
static void gdn_saved(pn_gdn_cfg *c, const char *op, const pn_tensor *q, const pn_tensor *saved) {
    if (!saved || !saved->data) return;
    same_device(op, q, saved);
    c->saved = saved->data;
    c->saved_bytes = pn_nbytes(saved);
}

int pn_op_gdn(pn_tensor *o, pn_tensor *ht, const pn_tensor *q, const pn_tensor *k, const pn_tensor *v,
              const pn_tensor *g, const pn_tensor *beta, const pn_tensor *h0, const pn_tensor *cu_seqlens,
              const int32_t *cu_host, int qk_l2norm, pn_tensor *saved) {
    pn_gdn_cfg c;
    if (gdn_cfg(&c, "gdn", q, k, v, g, beta, h0 ? h0 : ht, cu_seqlens, cu_host, qk_l2norm)) return -1;
    gdn_saved(&c, "gdn", q, saved);
    same_device("gdn", q, o);
    want_act("gdn", o);
    same_shape("gdn", o, v);
    if (h0 && ht) same_shape("gdn", h0, ht);
    return BE(gdn_fwd, q)->gdn_fwd(&c, o->data, ht ? ht->data : NULL, q->data, k->data, v->data, g->data, beta->data,
                                   h0 ? h0->data : NULL);
}

int pn_op_gdn_bwd(pn_tensor *dq, pn_tensor *dk, pn_tensor *dv, pn_tensor *dg, pn_tensor *dbeta, pn_tensor *dh0,
                  const pn_tensor *dout, const pn_tensor *dht, const pn_tensor *q, const pn_tensor *k,
                  const pn_tensor *v, const pn_tensor *g, const pn_tensor *beta, const pn_tensor *h0,
                  const pn_tensor *cu_seqlens, const int32_t *cu_host, int qk_l2norm, const pn_tensor *saved) {
    pn_gdn_cfg c;
    const pn_tensor *state = h0 ? h0 : dh0 ? dh0 : dht;
    if (gdn_cfg(&c, "gdn_bwd", q, k, v, g, beta, state, cu_seqlens, cu_host, qk_l2norm)) return -1;
    gdn_saved(&c, "gdn_bwd", q, saved);
    same_shape("gdn_bwd", dq, q);
    same_shape("gdn_bwd", dk, k);
    same_shape("gdn_bwd", dv, v);
    same_shape("gdn_bwd", dout, v);
    same_shape("gdn_bwd", dg, g);
    same_shape("gdn_bwd", dbeta, beta);
    want_act("gdn_bwd", dq);
    want_act("gdn_bwd", dk);
    want_act("gdn_bwd", dv);
    want_act("gdn_bwd", dout);
    want_f32("gdn_bwd", dg);
    want_f32("gdn_bwd", dbeta);
    if (dh0 && state != dh0) same_shape("gdn_bwd", dh0, state);
    if (dht && state != dht) same_shape("gdn_bwd", dht, state);
    return BE(gdn_bwd, q)->gdn_bwd(&c, dq->data, dk->data, dv->data, dg->data, dbeta->data, dh0 ? dh0->data : NULL,
                                   dout->data, dht ? dht->data : NULL, q->data, k->data, v->data, g->data, beta->data,
                                   h0 ? h0->data : NULL);
}

int pn_op_gdn_step(pn_tensor *o, pn_tensor *S, const pn_tensor *q, const pn_tensor *k, const pn_tensor *v,
                   const pn_tensor *g, const pn_tensor *beta, int qk_l2norm) {
    pn_gdn_cfg c;
    if (gdn_cfg(&c, "gdn_step", q, k, v, g, beta, S, NULL, NULL, qk_l2norm)) return -1;
    if (c.T != 1) return pn_errorf("gdn_step: one token per step, got T = %lld", (long long)c.T);
    same_shape("gdn_step", o, v);
    want_act("gdn_step", o);
    return BE(gdn_step, q)->gdn_step(&c, o->data, S->data, q->data, k->data, v->data, g->data, beta->data);
}

// ---- losses and the optimizer ----

void pn_op_lm_loss(pn_tensor *dz, pn_tensor *rowloss, const pn_tensor *zs, const pn_tensor *zt,
                   const pn_tensor *targets, const pn_lm_loss_args *a) {
    want_act("lm_loss", zs);
    PN_ASSERT(zs->ndim == 2 && a && a->temperature > 0);
    const int64_t R = zs->shape[0];
    if (zt) {
        same_device("lm_loss", zs, zt);
        same_shape("lm_loss", zs, zt);
        want_act("lm_loss", zt);
    }
    if (dz) {
        same_device("lm_loss", zs, dz);
        same_shape("lm_loss", zs, dz);
        want_act("lm_loss", dz);
    }
    if (targets) {
        same_device("lm_loss", zs, targets);
        PN_ASSERT(targets->dtype == PN_I32 && pn_numel(targets) == R);
    }
    same_device("lm_loss", zs, rowloss);
    want_f32("lm_loss", rowloss);
    PN_ASSERT(pn_numel(rowloss) == 2 * R);
    BE(lm_loss, zs)->lm_loss(dz, rowloss, zs, zt, targets, a);
}

void pn_op_lm_score(pn_tensor *out, const pn_tensor *z, const pn_tensor *targets) {
    want_act("lm_score", z);
    PN_ASSERT(z->ndim == 2 && z->shape[1] < (INT64_C(1) << 24));
    same_device("lm_score", z, targets);
    same_device("lm_score", z, out);
    PN_ASSERT(targets->dtype == PN_I32 && pn_numel(targets) == z->shape[0]);
    want_f32("lm_score", out);
    PN_ASSERT(pn_numel(out) == 2 * z->shape[0]);
    BE(lm_score, z)->lm_score(out, z, targets);
}

void pn_op_argmax(pn_tensor *out, const pn_tensor *z) {
    want_act("argmax", z);
    PN_ASSERT(z->ndim == 2 && z->shape[1] >= 1 && z->shape[1] < (INT64_C(1) << 31));
    same_device("argmax", z, out);
    PN_ASSERT(out->dtype == PN_I32 && pn_numel(out) == z->shape[0]);
    BE(argmax, z)->argmax(out, z);
}

void pn_op_sample(pn_tensor *out, const pn_tensor *z, const pn_sample_args *a) {
    if (!(a->temperature > 0)) { // greedy (also NaN)
        pn_op_argmax(out, z);
        return;
    }
    want_act("sample", z);
    PN_ASSERT(z->ndim == 2 && z->shape[0] <= 65536 && z->shape[1] >= 1 && z->shape[1] < (INT64_C(1) << 31));
    same_device("sample", z, out);
    PN_ASSERT(out->dtype == PN_I32 && pn_numel(out) == z->shape[0]);
    BE(sample, z)->sample(out, z, a);
}

void pn_op_mse(pn_tensor *dx, pn_tensor *rowloss, const pn_tensor *x, const pn_tensor *y, float grad_scale,
               int accumulate) {
    same_device("mse", x, y);
    same_device("mse", x, rowloss);
    same_shape("mse", x, y);
    want_act("mse", x);
    want_act("mse", y);
    want_f32("mse", rowloss);
    PN_ASSERT(x->ndim == 2 && pn_numel(rowloss) == x->shape[0]);
    if (dx) {
        same_device("mse", x, dx);
        same_shape("mse", x, dx);
        want_act("mse", dx);
    }
    BE(mse, x)->mse(dx, rowloss, x, y, grad_scale, accumulate);
}

static void check_adamw(pn_tensor *p, pn_tensor *master, pn_tensor *m, pn_tensor *v, const pn_tensor *g,
                        const pn_adamw_args *a) {
    const int64_t n = pn_numel(p);
    same_device("adamw", p, m);
    same_device("adamw", p, v);
    same_device("adamw", p, g);
    want_f32("adamw", m);
    want_f32("adamw", v);
    want_f32("adamw", g);
    PN_ASSERT(pn_numel(m) == n && pn_numel(v) == n && pn_numel(g) == n && a);
    if (master) {
        same_device("adamw", p, master);
        want_f32("adamw", master);
        PN_ASSERT(pn_numel(master) == n && (p->dtype == PN_F32 || p->dtype == PN_BF16));
    } else {
        want_f32("adamw", p);
    }
}

void pn_op_adamw(pn_tensor *p, pn_tensor *master, pn_tensor *m, pn_tensor *v, const pn_tensor *g,
                 const pn_adamw_args *a) {
    check_adamw(p, master, m, v, g, a);
    BE(adamw, p)->adamw(p, master, m, v, g, a);
}

void pn_op_adamw_list(const pn_adamw_item *items, int n) {
    PN_ASSERT(n >= 0 && (items || n == 0));
    for (int k = 0; k < n; k++) {
        const pn_adamw_item *t = &items[k];
        check_adamw(t->p, t->master, t->m, t->v, t->g, &t->a);
        same_device("adamw_list", items[0].p, t->p);
    }
    if (n) BE(adamw_list, items[0].p)->adamw_list(items, n);
}

static void check_sumsq(const pn_tensor *partial, const pn_tensor *x) {
    same_device("sumsq", partial, x);
    want_f32("sumsq", partial);
    PN_ASSERT(x->dtype == PN_F32 || x->dtype == pn_device_dtype(x->device));
    PN_ASSERT(pn_numel(partial) >= 1);
}

void pn_op_sumsq(pn_tensor *partial, const pn_tensor *x) {
    check_sumsq(partial, x);
    BE(sumsq, partial)->sumsq(partial, x);
}

void pn_op_sumsq_list(pn_tensor *partial, const pn_tensor *const *xs, int n) {
    want_f32("sumsq_list", partial);
    PN_ASSERT(n >= 0 && partial->ndim == 2 && partial->shape[0] == n && partial->shape[1] >= 1);
    for (int k = 0; k < n; k++) {
        if (!xs[k]) continue;
        pn_tensor row = pn_rows(partial, k, 1);
        check_sumsq(&row, xs[k]);
    }
    if (n) BE(sumsq_list, partial)->sumsq_list(partial, xs, n);
}
