// The losses and optimizer ops on the CPU backend (train/pn_loss.c, kernels/cpu/loss.c, optim.c):
// - the LM head fused with KL/CE in row chunks equals a plain full-logits computation in double (values, the
//   gradient of the hidden states and of the head), for chunk sizes that do and do not divide the rows, with
//   and without the teacher or the targets, at temperatures 1 and 2; the double reference's own gradient is
//   checked by finite differences, so the formulas are tested, not only their two codings;
// - the result does not depend on the thread count (bit for bit);
// - MSE values and gradients (overwrite and accumulate); AdamW against its formula in double, with and
//   without a master copy; sumsq's partials against the plain sum;
// - sampling's draws against the softmax they sample, top-k / top-p filtered (frequencies, independence of
//   rows, determinism).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/cpu/threads.h"
#include "../src/pn_common.h"
#include "../train/pn_loss.h"
#include "pn_test.h"

static uint64_t rng = 12345;
static double urand(void) { return (double)((rng = rng * 6364136223846793005ULL + 1442695040888963407ULL) >> 11) / 9007199254740992.0; }
static float *randv(int64_t n, double scale) {
    float *v = pn_malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) v[i] = (float)((urand() * 2 - 1) * scale);
    return v;
}
static pn_tensor T2(float *d, int64_t a, int64_t b) { return pn_view(d, PN_F32, PN_CPU, 2, (int64_t[]){a, b}); }

static double relerr(const float *a, const double *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) num += (a[i] - b[i]) * (a[i] - b[i]), den += b[i] * b[i];
    return sqrt(num / (den > 0 ? den : 1));
}

enum { N = 37, C = 16, V = 50 };

// The reference: total loss in double, and (when dh/dW are given) its gradient by the closed form.
static double ref_loss(const float *h, const float *ht, const float *W, const float *Wt, const int32_t *tg,
                       double tau, double kgrad, double cgrad, double *kl_out, double *ce_out, double *dh, double *dW,
                       const double *hpert) {
    double total = 0, klsum = 0, cesum = 0;
    if (dh) memset(dh, 0, sizeof(double) * N * C);
    if (dW) memset(dW, 0, sizeof(double) * V * C);
    for (int r = 0; r < N; r++) {
        double z[V], zt[V], ps[V], pt[V], q[V];
        for (int v = 0; v < V; v++) {
            z[v] = zt[v] = 0;
            for (int c = 0; c < C; c++) {
                z[v] += (hpert ? hpert[r * C + c] : h[r * C + c]) * W[v * C + c];
                if (ht) zt[v] += ht[r * C + c] * Wt[v * C + c];
            }
        }
        double mx = -1e300, mt = -1e300, m1 = -1e300;
        for (int v = 0; v < V; v++) mx = fmax(mx, z[v] / tau), mt = fmax(mt, zt[v] / tau), m1 = fmax(m1, z[v]);
        double ss = 0, st = 0, s1 = 0;
        for (int v = 0; v < V; v++) ss += exp(z[v] / tau - mx), st += exp(zt[v] / tau - mt), s1 += exp(z[v] - m1);
        double kl = 0;
        for (int v = 0; v < V; v++) {
            ps[v] = exp(z[v] / tau - mx) / ss, pt[v] = exp(zt[v] / tau - mt) / st, q[v] = exp(z[v] - m1) / s1;
            if (ht) kl += pt[v] * (log(pt[v]) - log(ps[v]));
        }
        kl *= tau * tau;
        const int t = tg ? tg[r] : -1;
        const double ce = t >= 0 ? -log(q[t]) : 0;
        klsum += kl, cesum += ce;
        total += kgrad * kl + cgrad * ce;
        for (int v = 0; v < V && dh; v++) {
            const double g = (ht ? kgrad * tau * (ps[v] - pt[v]) : 0) + (t >= 0 ? cgrad * (q[v] - (v == t)) : 0);
            for (int c = 0; c < C; c++) dh[r * C + c] += g * W[v * C + c], dW[v * C + c] += g * h[r * C + c];
        }
    }
    if (kl_out) *kl_out = klsum;
    if (ce_out) *ce_out = cesum;
    return total;
}

static void test_head(int with_t, int with_tg, float tau, int chunk, int accumulate) {
    float *h = randv(N * C, 1), *ht = randv(N * C, 1), *W = randv(V * C, 0.8), *Wt = randv(V * C, 0.8);
    for (int i = 0; i < V * C; i++) Wt[i] = 0.7f * Wt[i] + 0.5f * W[i]; // a teacher near the student
    int32_t tg[N];
    for (int r = 0; r < N; r++) tg[r] = r % 5 == 4 ? -1 : (int32_t)(urand() * V);
    const float kgrad = 0.7f / N, cgrad = 0.3f / 29;
    pn_loss L;
    CHECK(pn_loss_init(&L, PN_CPU, V, C, chunk, N + 5, 0) == 0, "init: %s", pn_last_error());
    float *dh = randv(N * C, 1), *dW = randv(V * C, 1), *dh0 = pn_malloc(sizeof(float) * N * C),
          *dW0 = pn_malloc(sizeof(float) * V * C);
    memcpy(dh0, dh, sizeof(float) * N * C), memcpy(dW0, dW, sizeof(float) * V * C);
    pn_tensor th = T2(h, N, C), tht = T2(ht, N, C), tW = T2(W, V, C), tWt = T2(Wt, V, C), tdh = T2(dh, N, C),
              tdW = T2(dW, V, C);
    const pn_lm_loss_args a = {.temperature = tau, .kl_grad = kgrad, .ce_grad = cgrad};
    // rows 5 .. 5 + N of the step: the offset must carry through
    CHECK(pn_loss_head(&L, 5, &th, with_t ? &tht : NULL, &tW, &tWt, with_tg ? tg : NULL, &a, &tdh, accumulate, &tdW) == 0,
          "head: %s", pn_last_error());
    double *rdh = pn_malloc(sizeof(double) * N * C), *rdW = pn_malloc(sizeof(double) * V * C), rkl, rce;
    ref_loss(h, with_t ? ht : NULL, W, Wt, with_tg ? tg : NULL, tau, kgrad, cgrad, &rkl, &rce, rdh, rdW, NULL);
    for (int i = 0; i < N * C; i++) rdh[i] += accumulate ? dh0[i] : 0;
    for (int i = 0; i < V * C; i++) rdW[i] += dW0[i];
    double kl, ce;
    float *keep = L.host; // rows 0..4 were never written: zero (init)
    pn_loss_totals(&L, N + 5, &kl, &ce, NULL);
    (void)keep;
    char what[128];
    snprintf(what, sizeof what, "teacher %d targets %d tau %.1f chunk %d acc %d", with_t, with_tg, tau, chunk, accumulate);
    CHECK(fabs(kl - rkl) <= 1e-5 * fmax(1, fabs(rkl)), "%s: KL %.9g vs %.9g", what, kl, rkl);
    CHECK(fabs(ce - rce) <= 1e-5 * fmax(1, fabs(rce)), "%s: CE %.9g vs %.9g", what, ce, rce);
    if (with_t) CHECK(rkl > 0.1, "%s: KL %g is not exercised", what, rkl);
    if (!with_t) CHECK(kl == 0, "%s: KL %g without a teacher", what, kl);
    if (!with_tg) CHECK(ce == 0, "%s: CE %g without targets", what, ce);
    const double eh = relerr(dh, rdh, N * C), ew = relerr(dW, rdW, V * C);
    CHECK(eh < 2e-6, "%s: dh rel err %.2e", what, eh);
    CHECK(ew < 2e-6, "%s: dW rel err %.2e", what, ew);
    printf("head %-40s KL %.6f CE %.6f  dh %.1e dW %.1e\n", what, kl, ce, eh, ew);
    // The closed form is the derivative: central differences of the double reference.
    if (chunk == 8) {
        double *hp = pn_malloc(sizeof(double) * N * C), worst = 0;
        for (int i = 0; i < N * C; i++) hp[i] = h[i];
        for (int k = 0; k < 12; k++) {
            const int i = (int)(urand() * N * C);
            const double e = 1e-5, x0 = hp[i];
            hp[i] = x0 + e;
            const double up = ref_loss(h, with_t ? ht : NULL, W, Wt, with_tg ? tg : NULL, tau, kgrad, cgrad, NULL, NULL,
                                       NULL, NULL, hp);
            hp[i] = x0 - e;
            const double dn = ref_loss(h, with_t ? ht : NULL, W, Wt, with_tg ? tg : NULL, tau, kgrad, cgrad, NULL, NULL,
                                       NULL, NULL, hp);
            hp[i] = x0;
            const double fd = (up - dn) / (2 * e), an = rdh[i] - (accumulate ? dh0[i] : 0);
            worst = fmax(worst, fabs(fd - an) / fmax(1e-4, fabs(an)));
        }
        CHECK(worst < 1e-5, "%s: finite differences vs the closed form: worst rel %.2e", what, worst);
        free(hp);
    }
    pn_loss_free(&L);
    free(h), free(ht), free(W), free(Wt), free(dh), free(dW), free(dh0), free(dW0), free(rdh), free(rdW);
}

// The same rows on 1 and 2 threads give the same bits (chunks follow the shape, sums per row).
static void test_threads(void) {
    enum { R = 64, VV = 3000 };
    float *zs = randv(R * VV, 4), *zt = randv(R * VV, 4), *out[2], *rows[2];
    int32_t tg[R];
    for (int r = 0; r < R; r++) tg[r] = r * 37 % VV;
    const pn_lm_loss_args a = {.temperature = 1.5f, .kl_grad = 0.01f, .ce_grad = 0.02f};
    for (int k = 0; k < 2; k++) {
        pn_cpu_set_threads(k + 1);
        out[k] = pn_malloc(sizeof(float) * R * VV), rows[k] = pn_malloc(sizeof(float) * R * 2);
        pn_tensor d = T2(out[k], R, VV), l = T2(rows[k], R, 2), s = T2(zs, R, VV), t = T2(zt, R, VV);
        pn_tensor g = pn_view(tg, PN_I32, PN_CPU, 1, (int64_t[]){R});
        pn_op_lm_loss(&d, &l, &s, &t, &g, &a);
    }
    pn_cpu_set_threads(0);
    CHECK(!memcmp(out[0], out[1], sizeof(float) * R * VV) && !memcmp(rows[0], rows[1], sizeof(float) * R * 2),
          "lm_loss differs between 1 and 2 threads");
    // in place (dz = zs) equals out of place
    pn_tensor s = T2(zs, R, VV), t = T2(zt, R, VV), l = T2(rows[1], R, 2);
    pn_tensor g = pn_view(tg, PN_I32, PN_CPU, 1, (int64_t[]){R});
    pn_op_lm_loss(&s, &l, &s, &t, &g, &a);
    CHECK(!memcmp(zs, out[0], sizeof(float) * R * VV), "lm_loss in place differs from out of place");
    free(zs), free(zt);
    for (int k = 0; k < 2; k++) free(out[k]), free(rows[k]);
}

static void test_mse(void) {
    enum { R = 23, CC = 40 };
    float *x = randv(R * CC, 1), *y = randv(R * CC, 1), *dx = randv(R * CC, 1), *dx0 = pn_malloc(sizeof(float) * R * CC);
    memcpy(dx0, dx, sizeof(float) * R * CC);
    pn_loss L;
    CHECK(pn_loss_init(&L, PN_CPU, 8, CC, 4, R, 2) == 0, "init: %s", pn_last_error());
    pn_tensor tx = T2(x, R, CC), ty = T2(y, R, CC), tdx = T2(dx, R, CC);
    pn_loss_mse(&L, 1, 0, &tx, &ty, &tdx, 0.25f, 1);
    double want = 0, m[2], e = 0, n = 0;
    for (int i = 0; i < R * CC; i++) {
        const double d = (double)x[i] - y[i], g = dx0[i] + 0.25 * 2 * d;
        want += d * d, e += (dx[i] - g) * (dx[i] - g), n += g * g;
    }
    pn_loss_totals(&L, R, NULL, NULL, m);
    CHECK(fabs(m[1] - want) < 1e-5 * want && m[0] == 0, "mse %.9g vs %.9g (slot 0: %g)", m[1], want, m[0]);
    CHECK(sqrt(e / n) < 1e-7, "mse dx (accumulated) rel err %.2e", sqrt(e / n));
    pn_loss_mse(&L, 0, 0, &tx, &ty, &tdx, 0.5f, 0);
    e = 0;
    for (int i = 0; i < R * CC; i++) e = fmax(e, fabs(dx[i] - (x[i] - y[i])));
    CHECK(e < 1e-6, "mse dx (overwritten) max err %.2e", e);
    pn_loss_free(&L);
    free(x), free(y), free(dx), free(dx0);
}

static void test_adamw(void) {
    enum { n = 1000 };
    float *p = randv(n, 1), *g = randv(n, 0.1), *m = randv(n, 0.01), *v = randv(n, 0.001);
    for (int i = 0; i < n; i++) v[i] = fabsf(v[i]);
    float *p2 = pn_malloc(sizeof(float) * n), *mst = pn_malloc(sizeof(float) * n), *m2 = pn_malloc(sizeof(float) * n),
          *v2 = pn_malloc(sizeof(float) * n);
    memcpy(p2, p, sizeof(float) * n), memcpy(mst, p, sizeof(float) * n), memcpy(m2, m, sizeof(float) * n),
        memcpy(v2, v, sizeof(float) * n);
    double *rp = pn_malloc(sizeof(double) * n);
    const pn_adamw_args a = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f,
                             .bc1 = 1 - powf(0.9f, 3), .bc2 = 1 - powf(0.95f, 3), .grad_scale = 0.5f};
    for (int i = 0; i < n; i++) {
        const double gi = g[i] * 0.5, mi = 0.9 * m[i] + 0.1 * gi, vi = 0.95 * v[i] + 0.05 * gi * gi;
        rp[i] = p[i] * (1 - 1e-4) - 1e-3 / a.bc1 * mi / (sqrt(vi) / sqrt(a.bc2) + 1e-8);
    }
    pn_tensor tp = pn_view(p, PN_F32, PN_CPU, 1, (int64_t[]){n}), tg = pn_view(g, PN_F32, PN_CPU, 1, (int64_t[]){n}),
              tm = pn_view(m, PN_F32, PN_CPU, 1, (int64_t[]){n}), tv = pn_view(v, PN_F32, PN_CPU, 1, (int64_t[]){n});
    pn_op_adamw(&tp, NULL, &tm, &tv, &tg, &a);
    const double e = relerr(p, rp, n);
    CHECK(e < 1e-6, "adamw vs its formula in double: rel err %.2e", e);
    pn_tensor tp2 = pn_view(p2, PN_F32, PN_CPU, 1, (int64_t[]){n}), tms = pn_view(mst, PN_F32, PN_CPU, 1, (int64_t[]){n}),
              tm2 = pn_view(m2, PN_F32, PN_CPU, 1, (int64_t[]){n}), tv2 = pn_view(v2, PN_F32, PN_CPU, 1, (int64_t[]){n});
    pn_op_adamw(&tp2, &tms, &tm2, &tv2, &tg, &a);
    CHECK(!memcmp(p, p2, sizeof(float) * n) && !memcmp(p, mst, sizeof(float) * n) && !memcmp(m, m2, sizeof(float) * n),
          "adamw with a master copy differs from in place");
    free(p), free(g), free(m), free(v), free(p2), free(mst), free(m2), free(v2), free(rp);
}

static void test_sumsq(void) {
    enum { n = 10007 };
    float *x = randv(n, 3), part[7];
    double want = 0, got = 0;
    for (int i = 0; i < n; i++) want += (double)x[i] * x[i];
    pn_tensor tx = pn_view(x, PN_F32, PN_CPU, 1, (int64_t[]){n}), tp = pn_view(part, PN_F32, PN_CPU, 1, (int64_t[]){7});
    pn_op_sumsq(&tp, &tx);
    for (int i = 0; i < 7; i++) got += part[i];
    CHECK(fabs(got - want) < 1e-6 * want, "sumsq %.9g vs %.9g", got, want);
    x[n - 1] = NAN;
    pn_op_sumsq(&tp, &tx);
    CHECK(isnan(part[6]) && !isnan(part[0]), "a NaN reaches its own partial only");
    free(x);
}

// Sampling (pn_op_sample): draws from softmax(z / temperature) over the kept logits: over 40,000 steps the
// frequencies of a 6-token row match the probabilities renormalized over what top-k / top-p keep (within 4.5
// standard errors each, and never a dropped token), three identical rows draw independently (they agree as
// often as sum p^3 says), the same (seed, step) draws the same ids, and temperature 0 is the argmax.
static void check_draws(int top_k, float top_p, const int *kept) {
    enum { R = 3, VS = 6, S = 40000 };
    float z[R * VS] = {1.0f, 0.0f, -1.0f, 2.0f, 0.5f, -3.0f}; // descending: tokens 3, 0, 4, 1, 2, 5
    for (int r = 1; r < R; r++) memcpy(z + r * VS, z, sizeof(float) * VS); // identical rows
    const float temp = 0.8f;
    pn_tensor tz = T2(z, R, VS);
    int32_t out[R], first[R];
    int64_t count[VS] = {0}, same_rows = 0;
    pn_sample_args a = {.temperature = temp, .top_k = top_k, .top_p = top_p, .seed = 99};
    for (int st = 0; st < S; st++) {
        pn_tensor to = pn_view(out, PN_I32, PN_CPU, 1, (int64_t[]){R});
        a.step = (uint64_t)st;
        pn_op_sample(&to, &tz, &a);
        count[out[0]]++;
        same_rows += out[1] == out[0] && out[2] == out[0];
        if (st == 0) memcpy(first, out, sizeof out);
    }
    double p[VS], sum = 0, worst = 0, p3 = 0;
    for (int v = 0; v < VS; v++) sum += (p[v] = kept[v] ? exp((double)z[v] / temp) : 0.0);
    int dropped_drawn = 0;
    for (int v = 0; v < VS; v++) {
        p[v] /= sum, p3 += p[v] * p[v] * p[v];
        if (!kept[v]) {
            dropped_drawn += count[v] != 0;
            continue;
        }
        const double se = sqrt(p[v] * (1 - p[v]) / S), dev = se > 0 ? fabs((double)count[v] / S - p[v]) / se : 0;
        if (dev > worst) worst = dev;
    }
    const double se3 = sqrt(p3 * (1 - p3) / S), dev3 = se3 > 0 ? fabs((double)same_rows / S - p3) / se3 : 0;
    printf("sample top_k %d top_p %.2f: %d draws at temperature %.1f: worst deviation %.2f standard errors; rows "
           "drawing alike %.1f%% (independent: %.1f%%)\n", top_k, top_p, S, temp, worst, 100.0 * same_rows / S,
           100.0 * p3);
    CHECK(worst < 4.5 && !dropped_drawn, "sample (top_k %d, top_p %.2f): frequencies off by %.2f standard errors, "
          "%d dropped tokens drawn", top_k, top_p, worst, dropped_drawn);
    CHECK(dev3 < 4.5, "rows draw alike %lld of %d times, %.2f standard errors from independent", (long long)same_rows,
          S, dev3);
    pn_tensor to = pn_view(out, PN_I32, PN_CPU, 1, (int64_t[]){R});
    a.step = 0;
    pn_op_sample(&to, &tz, &a);
    CHECK(!memcmp(out, first, sizeof out), "the same seed and step drew other ids");
    a.temperature = 0;
    pn_op_sample(&to, &tz, &a);
    CHECK(out[0] == 3 && out[1] == 3 && out[2] == 3, "temperature 0: %d %d %d, not the argmax 3", out[0], out[1], out[2]);
}

static void test_sample(void) {
    check_draws(0, 1.0f, (const int[]){1, 1, 1, 1, 1, 1});     // all
    check_draws(3, 1.0f, (const int[]){1, 0, 0, 1, 1, 0});     // the 3 largest
    check_draws(0, 0.7f, (const int[]){1, 0, 0, 1, 0, 0});     // p 0.646 + 0.185 >= 0.7
    check_draws(3, 0.85f, (const int[]){1, 0, 0, 1, 0, 0});    // of the top 3: 0.694 + 0.199 >= 0.85
    check_draws(3, 0.9f, (const int[]){1, 0, 0, 1, 1, 0});     // 0.893 < 0.9: all three
    check_draws(1, 1.0f, (const int[]){0, 0, 0, 1, 0, 0});     // one: the argmax
}

int main(void) {
    for (int chunk = 1; chunk <= 64; chunk *= 8) test_head(1, 1, 1.0f, chunk, 0);
    test_head(1, 1, 2.0f, 8, 0);
    test_head(1, 1, 2.0f, 8, 1);
    test_head(0, 1, 1.0f, 8, 0);
    test_head(1, 0, 1.5f, 8, 1);
    test_head(1, 0, 1.0f, 64, 0);
    {   // a target outside the vocabulary is an error naming it
        pn_loss L;
        pn_loss_init(&L, PN_CPU, V, C, 8, N, 0);
        float *h = randv(N * C, 1), *W = randv(V * C, 1);
        pn_tensor th = T2(h, N, C), tW = T2(W, V, C);
        int32_t tg[N] = {0};
        tg[7] = V;
        const pn_lm_loss_args a = {.temperature = 1, .kl_grad = 0, .ce_grad = 1};
        CHECK_ERR(pn_loss_head(&L, 0, &th, NULL, &tW, NULL, tg, &a, NULL, 0, NULL), "target 50 of row 7");
        pn_loss_free(&L);
        free(h), free(W);
    }
    test_threads();
    test_sample();
    test_mse();
    test_adamw();
    test_sumsq();
    return pn_test_done("loss");
}
