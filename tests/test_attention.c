// Attention forward and backward on the CPU against torch autograd in float64 (goldens from
// tests/make_attention_goldens.py: causal, sliding window, GQA and MQA, T = 1 .. 64), plus a
// finite-difference check of the backward on a tiny case. The CUDA backward is checked against this one.
//
// usage: test_attention GOLDENS_DIR
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/ops.h"
#include "../src/pn_common.h"
#include "../src/pn_rng.h"
#include "../src/pn_safetensors.h"
#include "pn_test.h"

static double rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        den += (double)b[i] * b[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

static pn_tensor load(pn_safetensors *st, const char *name) {
    const pn_st_entry *e = pn_st_find(st, name);
    PN_ASSERT(e && e->ndim == 4);
    float *x = pn_malloc(sizeof(float) * (size_t)pn_st_numel(e));
    pn_st_to_f32(st, e, x);
    return pn_view(x, PN_F32, PN_CPU, 4, e->shape);
}

static pn_tensor like(const pn_tensor *t) {
    return pn_view(pn_calloc((size_t)pn_numel(t), sizeof(float)), PN_F32, PN_CPU, t->ndim, t->shape);
}

static void check_golden(const char *dir, const char *name) {
    char file[256];
    snprintf(file, sizeof file, "%s/%s.safetensors", dir, name);
    pn_safetensors st;
    if (pn_st_open(&st, file)) {
        CHECK(0, "%s", pn_last_error());
        return;
    }
    const int window = atoi(pn_st_meta(&st, "window") ? pn_st_meta(&st, "window") : "0");
    pn_tensor q = load(&st, "q"), k = load(&st, "k"), v = load(&st, "v"), dout = load(&st, "do");
    pn_tensor o_ref = load(&st, "o"), dq_ref = load(&st, "dq"), dk_ref = load(&st, "dk"), dv_ref = load(&st, "dv");
    pn_tensor o = like(&q), dq = like(&q), dk = like(&k), dv = like(&v);
    pn_op_attention(&o, &q, &k, &v, 0, window);
    pn_op_attention_bwd(&dq, &dk, &dv, &dout, &q, &k, &v, &o, NULL, window, NULL);
    double eo = rel_err(o.data, o_ref.data, (size_t)pn_numel(&o)), eq = rel_err(dq.data, dq_ref.data, (size_t)pn_numel(&q));
    double ek = rel_err(dk.data, dk_ref.data, (size_t)pn_numel(&k)), ev = rel_err(dv.data, dv_ref.data, (size_t)pn_numel(&v));
    printf("%-14s window %-3d  o %.2e  dq %.2e  dk %.2e  dv %.2e\n", name, window, eo, eq, ek, ev);
    CHECK(eo < 1e-5 && eq < 1e-5 && ek < 1e-5 && ev < 1e-5, "%s: o %.3g dq %.3g dk %.3g dv %.3g", name, eo, eq, ek, ev);
    pn_tensor *all[] = {&q, &k, &v, &dout, &o_ref, &dq_ref, &dk_ref, &dv_ref, &o, &dq, &dk, &dv};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]->data);
    pn_st_close(&st);
}

// loss = <dout, attention(q, k, v)>; central differences against the analytic gradient.
static double loss(const pn_tensor *q, const pn_tensor *k, const pn_tensor *v, const pn_tensor *dout, int window) {
    pn_tensor o = like(q);
    pn_op_attention(&o, q, k, v, 0, window);
    double l = 0;
    for (int64_t i = 0; i < pn_numel(&o); i++) l += (double)((float *)o.data)[i] * ((float *)dout->data)[i];
    free(o.data);
    return l;
}

static void check_fd(void) {
    const int64_t sq[4] = {1, 6, 4, 4}, sk[4] = {1, 6, 2, 4};
    pn_tensor q = pn_view(pn_malloc(96 * 4), PN_F32, PN_CPU, 4, sq), k = pn_view(pn_malloc(48 * 4), PN_F32, PN_CPU, 4, sk);
    pn_tensor v = like(&k), dout = like(&q);
    for (int i = 0; i < 96; i++) ((float *)q.data)[i] = pn_rng_normal(5, 1, (uint64_t)i), ((float *)dout.data)[i] = pn_rng_normal(5, 2, (uint64_t)i);
    for (int i = 0; i < 48; i++) ((float *)k.data)[i] = pn_rng_normal(5, 3, (uint64_t)i), ((float *)v.data)[i] = pn_rng_normal(5, 4, (uint64_t)i);
    for (int window = 0; window <= 3; window += 3) {
        pn_tensor o = like(&q), dq = like(&q), dk = like(&k), dv = like(&v);
        pn_op_attention(&o, &q, &k, &v, 0, window);
        pn_op_attention_bwd(&dq, &dk, &dv, &dout, &q, &k, &v, &o, NULL, window, NULL);
        pn_tensor *x[3] = {&q, &k, &v}, *g[3] = {&dq, &dk, &dv};
        double worst = 0;
        for (int w = 0; w < 3; w++)
            for (int64_t i = 0; i < pn_numel(x[w]); i++) {
                float *p = (float *)x[w]->data + i, save = *p;
                const float h = 1e-2f;
                *p = save + h;
                double lp = loss(&q, &k, &v, &dout, window);
                *p = save - h;
                double lm = loss(&q, &k, &v, &dout, window);
                *p = save;
                double fd = (lp - lm) / (2.0 * h), an = ((float *)g[w]->data)[i];
                double e = fabs(fd - an) / (fabs(fd) + 1e-2);
                if (e > worst) worst = e;
            }
        printf("finite differences, window %d: worst relative difference %.2e\n", window, worst);
        CHECK(worst < 5e-3, "finite differences (window %d): %.3g", window, worst);
        free(o.data), free(dq.data), free(dk.data), free(dv.data);
    }
    free(q.data), free(k.data), free(v.data), free(dout.data);
}

// attention_train's statistics normalize the softmax: sum over visible keys of exp(scale q.k - lse) = 1, and
// its output equals attention's.
static void check_lse(void) {
    const int64_t B = 2, T = 19, Hq = 4, Hkv = 2, D = 8, sq[4] = {B, T, Hq, D}, sk[4] = {B, T, Hkv, D}, sl[3] = {B, T, Hq};
    pn_tensor q = pn_view(pn_malloc(sizeof(float) * B * T * Hq * D), PN_F32, PN_CPU, 4, sq);
    pn_tensor k = pn_view(pn_malloc(sizeof(float) * B * T * Hkv * D), PN_F32, PN_CPU, 4, sk), v = like(&k);
    for (int64_t i = 0; i < pn_numel(&q); i++) ((float *)q.data)[i] = pn_rng_normal(9, 1, (uint64_t)i);
    for (int64_t i = 0; i < pn_numel(&k); i++)
        ((float *)k.data)[i] = pn_rng_normal(9, 2, (uint64_t)i), ((float *)v.data)[i] = pn_rng_normal(9, 3, (uint64_t)i);
    for (int window = 0; window <= 5; window += 5) {
        pn_tensor o = like(&q), o2 = like(&q), lse = pn_view(pn_malloc(sizeof(float) * B * T * Hq), PN_F32, PN_CPU, 3, sl);
        pn_op_attention(&o, &q, &k, &v, 0, window);
        pn_op_attention_train(&o2, &lse, &q, &k, &v, window, NULL);
        double worst = 0, odiff = 0;
        for (int64_t i = 0; i < pn_numel(&o); i++) odiff = fmax(odiff, fabs(((float *)o.data)[i] - ((float *)o2.data)[i]));
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < T; t++)
                for (int64_t h = 0; h < Hq; h++) {
                    double sum = 0;
                    for (int64_t s_ = window && t - window + 1 > 0 ? t - window + 1 : 0; s_ <= t; s_++) {
                        double dot = 0;
                        for (int64_t i = 0; i < D; i++)
                            dot += (double)((float *)q.data)[((b * T + t) * Hq + h) * D + i] *
                                   ((float *)k.data)[((b * T + s_) * Hkv + h / 2) * D + i];
                        sum += exp(dot / sqrt((double)D) - ((float *)lse.data)[(b * T + t) * Hq + h]);
                    }
                    worst = fmax(worst, fabs(sum - 1.0));
                }
        printf("attention_train window %d: |sum exp(s - lse) - 1| <= %.2e, output vs attention %.1e\n", window, worst, odiff);
        CHECK(worst < 1e-5 && odiff == 0.0, "lse window %d: %.3g, output %.3g", window, worst, odiff);
        free(o.data), free(o2.data), free(lse.data);
    }
    free(q.data), free(k.data), free(v.data);
}

// A packed batch (cu_seqlens) in one call equals every document run on its own: RoPE from each document's
// start, attention_train (output and statistics) and attention_bwd, with an empty and a one-token document
// among them, causal and windowed.
static void check_packed(void) {
    enum { NDOC = 5 };
    const int32_t cu_h[NDOC + 1] = {0, 7, 7, 8, 25, 40}; // lengths 7, 0, 1, 17, 15
    const int64_t N = 40, Hq = 4, Hkv = 2, D = 8, sq[4] = {1, N, Hq, D}, sk[4] = {1, N, Hkv, D}, sl[3] = {1, N, Hq};
    const int64_t scu[1] = {NDOC + 1};
    pn_tensor cu = pn_view((void *)cu_h, PN_I32, PN_CPU, 1, scu);
    float inv_freq[4];
    for (int i = 0; i < 4; i++) inv_freq[i] = powf(100.0f, -(float)i / 4.0f);
    const int64_t sf[1] = {4};
    pn_tensor f = pn_view(inv_freq, PN_F32, PN_CPU, 1, sf);
    pn_tensor q = pn_view(pn_malloc(sizeof(float) * N * Hq * D), PN_F32, PN_CPU, 4, sq), dout = like(&q);
    pn_tensor k = pn_view(pn_malloc(sizeof(float) * N * Hkv * D), PN_F32, PN_CPU, 4, sk), v = like(&k);
    for (int64_t i = 0; i < pn_numel(&q); i++)
        ((float *)q.data)[i] = pn_rng_normal(11, 1, (uint64_t)i), ((float *)dout.data)[i] = pn_rng_normal(11, 4, (uint64_t)i);
    for (int64_t i = 0; i < pn_numel(&k); i++)
        ((float *)k.data)[i] = pn_rng_normal(11, 2, (uint64_t)i), ((float *)v.data)[i] = pn_rng_normal(11, 3, (uint64_t)i);
    for (int window = 0; window <= 4; window += 4) {
        pn_tensor t[2][7]; // [packed, per document]: q, k (rotated), o, lse, dq, dk, dv
        for (int w = 0; w < 2; w++) {
            t[w][0] = like(&q), t[w][1] = like(&k), t[w][2] = like(&q), t[w][4] = like(&q), t[w][5] = like(&k);
            t[w][6] = like(&k);
            t[w][3] = pn_view(pn_malloc(sizeof(float) * N * Hq), PN_F32, PN_CPU, 3, sl);
            memcpy(t[w][0].data, q.data, sizeof(float) * (size_t)pn_numel(&q));
            memcpy(t[w][1].data, k.data, sizeof(float) * (size_t)pn_numel(&k));
        }
        pn_op_rope(&t[0][0], &f, 0, &cu);
        pn_op_rope(&t[0][1], &f, 0, &cu);
        pn_op_attention_train(&t[0][2], &t[0][3], &t[0][0], &t[0][1], &v, window, &cu);
        pn_op_attention_bwd(&t[0][4], &t[0][5], &t[0][6], &dout, &t[0][0], &t[0][1], &v, &t[0][2], &t[0][3], window,
                            &cu);
        for (int d = 0; d < NDOC; d++) {
            const int64_t r0 = cu_h[d], len = cu_h[d + 1] - cu_h[d];
            if (len == 0) continue;
            pn_tensor x[7], vv = pn_reshape(&v, 4, sk);
            for (int i = 0; i < 7; i++) x[i] = t[1][i];
            // rows r0 .. r0 + len - 1 of each tensor as its own batch of one sequence
            for (int i = 0; i < 7; i++) {
                const int64_t heads = i == 3 ? Hq : (i == 1 || i >= 5) ? Hkv : Hq, dd = i == 3 ? 1 : D;
                pn_tensor r = pn_reshape(&x[i], 2, (int64_t[]){N, heads * dd});
                r = pn_rows(&r, r0, len);
                x[i] = i == 3 ? pn_reshape(&r, 3, (int64_t[]){1, len, heads}) : pn_reshape(&r, 4, (int64_t[]){1, len, heads, D});
            }
            pn_tensor vr = pn_reshape(&vv, 2, (int64_t[]){N, Hkv * D}), dr = pn_reshape(&dout, 2, (int64_t[]){N, Hq * D});
            vr = pn_rows(&vr, r0, len), dr = pn_rows(&dr, r0, len);
            vr = pn_reshape(&vr, 4, (int64_t[]){1, len, Hkv, D}), dr = pn_reshape(&dr, 4, (int64_t[]){1, len, Hq, D});
            pn_op_rope(&x[0], &f, 0, NULL);
            pn_op_rope(&x[1], &f, 0, NULL);
            pn_op_attention_train(&x[2], &x[3], &x[0], &x[1], &vr, window, NULL);
            pn_op_attention_bwd(&x[4], &x[5], &x[6], &dr, &x[0], &x[1], &vr, &x[2], &x[3], window, NULL);
        }
        double worst = 0;
        for (int i = 0; i < 7; i++) {
            const double e = rel_err(t[0][i].data, t[1][i].data, (size_t)pn_numel(&t[0][i]));
            if (e > worst) worst = e;
        }
        // The same rows see the same keys in the same order: only the threads' split may differ.
        printf("packed batch (5 documents, window %d) in one call vs per document: worst relative difference %.1e\n",
               window, worst);
        CHECK(worst < 1e-6, "packed attention (window %d): %.3g", window, worst);
        for (int w = 0; w < 2; w++)
            for (int i = 0; i < 7; i++) free(t[w][i].data);
    }
    free(q.data), free(k.data), free(v.data), free(dout.data);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "tests/goldens/attention";
    check_lse();
    check_packed();
    static const char *cases[] = {"mha_t1", "gqa_t17", "gqa_t40_win5", "mqa_t33", "gqa_t64_win64"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_golden(dir, cases[i]);
    check_fd();
    return pn_test_done("test_attention");
}
