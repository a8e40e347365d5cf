// Gated DeltaNet op (kernels/cpu/gdn.c): chunked fp32 forward vs the double recurrence, decode steps vs the
// chunked forward, every input gradient of the double instance of the chunked code vs central finite
// differences, the fp32 backward vs the double one, variable length vs separate runs (and no state leaking
// across a boundary), fla's goldens (tests/make_gdn_goldens.py), and the refusal of bad configurations.
// Errors are RMS ratios ||x − ref|| / ||ref|| (fla's get_err_ratio).
//
// usage: test_gdn GOLDENS_DIR   (the folder holding tests/goldens/gdn/*.safetensors)
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/cpu/gdn.h"
#include "../src/pn_common.h"
#include "../src/pn_rng.h"
#include "../src/pn_safetensors.h"
#include "pn_test.h"

static double rms_ratio(const double *x, const double *ref, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) num += (x[i] - ref[i]) * (x[i] - ref[i]), den += ref[i] * ref[i];
    return sqrt(num / (den > 0 ? den : 1));
}

static double *to_f64(const float *x, int64_t n) {
    double *y = pn_malloc(sizeof(double) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) y[i] = x[i];
    return y;
}

// rms_ratio of an fp32 result against an fp32 or fp64 reference.
static double err_ff(const float *x, const float *ref, int64_t n) {
    double *a = to_f64(x, n), *b = to_f64(ref, n);
    double e = rms_ratio(a, b, n);
    free(a), free(b);
    return e;
}
static double err_fd(const float *x, const double *ref, int64_t n) {
    double *a = to_f64(x, n);
    double e = rms_ratio(a, ref, n);
    free(a);
    return e;
}

// ---------------------------------------------------------------------------------------------------
// Random inputs, held in fp32 and (identical values) in double.

enum { IQ, IK, IV, IG, IB, IH0, IDO, IDHT, NIN };
static const char *in_names[NIN] = {"q", "k", "v", "g", "beta", "h0", "dO", "dht"};

typedef struct {
    pn_gdn_cfg c;
    int64_t n[NIN];  // element counts (0: absent, e.g. no h0)
    float *f[NIN];   // fp32 values (NULL when absent)
    double *d[NIN];  // the same values in double
} inputs;

static double softplus(double x) { return x > 20 ? x : log1p(exp(x)); }

// q, k ~ N(0,1), L2-normalized unless the op does it (raw then); v ~ N(0,1); β = sigmoid(N(0,1));
// g = −decay · softplus(N(0,1)) (decay 0: DeltaNet); h0 ~ N(0,1); dO, dht ~ N(0,1).
static void make_inputs(inputs *in, pn_gdn_cfg c, uint64_t seed, int has_h0, int has_dht, double decay) {
    memset(in, 0, sizeof *in);
    in->c = c;
    const int64_t BT = c.B * c.T, N = pn_gdn_num_seqs(&c), S = N * c.H * c.K * c.V;
    const int64_t cnt[NIN] = {BT * c.H * c.K, BT * c.H * c.K, BT * c.H * c.V, BT * c.H, BT * c.H,
                              has_h0 ? S : 0, BT * c.H * c.V, has_dht ? S : 0};
    for (int i = 0; i < NIN; i++) {
        in->n[i] = cnt[i];
        if (!cnt[i]) continue;
        in->f[i] = pn_malloc(sizeof(float) * (size_t)cnt[i]);
        for (int64_t j = 0; j < cnt[i]; j++) {
            const double z = pn_rng_normal(seed, (uint64_t)i, (uint64_t)j);
            in->f[i][j] = (float)(i == IB ? 1 / (1 + exp(-z)) : i == IG ? -decay * softplus(z) : z);
        }
    }
    if (!c.qk_l2norm)
        for (int i = IQ; i <= IK; i++)
            for (int64_t r = 0; r < cnt[i] / c.K; r++) {
                float *x = in->f[i] + r * c.K, ss = 0;
                for (int64_t j = 0; j < c.K; j++) ss += x[j] * x[j];
                for (int64_t j = 0; j < c.K; j++) x[j] /= sqrtf(ss);
            }
    for (int i = 0; i < NIN; i++) in->d[i] = in->f[i] ? to_f64(in->f[i], cnt[i]) : NULL;
}

static void free_inputs(inputs *in) {
    for (int i = 0; i < NIN; i++) free(in->f[i]), free(in->d[i]);
}

static pn_gdn_cfg cfg(int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int l2) {
    return (pn_gdn_cfg){.B = B, .T = T, .H = H, .K = K, .V = V, .qk_l2norm = l2};
}

// ---------------------------------------------------------------------------------------------------
// 1. chunked fp32 forward vs the double recurrence; the double chunked instance vs the recurrence.

static double worst_fwd = 0, worst_step = 0, worst_fd = 0, worst_bwd32 = 0, worst_golden = 0;

static void check_fwd_vs_naive(pn_gdn_cfg c, int has_h0, double decay, const char *what) {
    inputs in;
    make_inputs(&in, c, 42 + (uint64_t)c.T, has_h0, 0, decay);
    const int64_t no = in.n[IDO], ns = pn_gdn_num_seqs(&c) * c.H * c.K * c.V;
    double *o64 = pn_malloc(sizeof(double) * (size_t)no), *ht64 = pn_malloc(sizeof(double) * (size_t)ns);
    double *oc64 = pn_malloc(sizeof(double) * (size_t)no), *htc64 = pn_malloc(sizeof(double) * (size_t)ns);
    float *o = pn_malloc(sizeof(float) * (size_t)no), *ht = pn_malloc(sizeof(float) * (size_t)ns);
    CHECK(pn_cpu_gdn_naive_f64(&c, in.d[IQ], in.d[IK], in.d[IV], in.d[IG], in.d[IB], in.d[IH0], o64, ht64) == 0, "%s", pn_last_error());
    CHECK(pn_cpu_gdn_fwd_f32(&c, in.f[IQ], in.f[IK], in.f[IV], in.f[IG], in.f[IB], in.f[IH0], o, ht) == 0, "%s", pn_last_error());
    CHECK(pn_cpu_gdn_fwd_f64(&c, in.d[IQ], in.d[IK], in.d[IV], in.d[IG], in.d[IB], in.d[IH0], oc64, htc64) == 0, "%s", pn_last_error());
    const double eo = err_fd(o, o64, no), eh = err_fd(ht, ht64, ns);
    const double eo64 = rms_ratio(oc64, o64, no), eh64 = rms_ratio(htc64, ht64, ns);
    printf("  fwd %-28s o %.2e  ht %.2e   (double chunked: %.1e %.1e)\n", what, eo, eh, eo64, eh64);
    CHECK(eo <= 1e-6 && eh <= 1e-6, "%s: chunked fp32 vs naive f64: o %.3e ht %.3e", what, eo, eh);
    CHECK(eo64 <= 1e-12 && eh64 <= 1e-12, "%s: chunked f64 vs naive f64: o %.3e ht %.3e", what, eo64, eh64);
    worst_fwd = fmax(worst_fwd, fmax(eo, eh));
    // ht = NULL must not change o.
    float *o2 = pn_malloc(sizeof(float) * (size_t)no);
    CHECK(pn_cpu_gdn_fwd_f32(&c, in.f[IQ], in.f[IK], in.f[IV], in.f[IG], in.f[IB], in.f[IH0], o2, NULL) == 0, "fwd");
    CHECK(memcmp(o, o2, sizeof(float) * (size_t)no) == 0, "%s: o changed without ht", what);
    free(o64), free(ht64), free(oc64), free(htc64), free(o), free(ht), free(o2);
    free_inputs(&in);
}

// ---------------------------------------------------------------------------------------------------
// 2. decode: B sequences fed one token at a time through pn_cpu_gdn_step_f32 reproduce the chunked forward.

static void check_step(pn_gdn_cfg c, double decay) {
    inputs in;
    make_inputs(&in, c, 7, 1, 0, decay);
    const int64_t B = c.B, T = c.T, H = c.H, K = c.K, V = c.V, ns = B * H * K * V;
    float *o = pn_malloc(sizeof(float) * (size_t)in.n[IDO]), *ht = pn_malloc(sizeof(float) * (size_t)ns);
    CHECK(pn_cpu_gdn_fwd_f32(&c, in.f[IQ], in.f[IK], in.f[IV], in.f[IG], in.f[IB], in.f[IH0], o, ht) == 0, "%s", pn_last_error());
    pn_gdn_cfg c1 = c;
    c1.T = 1;
    float *S = pn_malloc(sizeof(float) * (size_t)ns), *os = pn_malloc(sizeof(float) * (size_t)in.n[IDO]);
    memcpy(S, in.f[IH0], sizeof(float) * (size_t)ns);
    // Token t of every sequence, gathered into [B, H, ·] rows.
    float *qt = pn_malloc(sizeof(float) * (size_t)(B * H * K)), *kt = pn_malloc(sizeof(float) * (size_t)(B * H * K));
    float *vt = pn_malloc(sizeof(float) * (size_t)(B * H * V)), *ot = pn_malloc(sizeof(float) * (size_t)(B * H * V));
    float *gt = pn_malloc(sizeof(float) * (size_t)(B * H)), *bt = pn_malloc(sizeof(float) * (size_t)(B * H));
    for (int64_t t = 0; t < T; t++) {
        for (int64_t b = 0; b < B; b++) {
            const int64_t src = (b * T + t) * H;
            memcpy(qt + b * H * K, in.f[IQ] + src * K, sizeof(float) * (size_t)(H * K));
            memcpy(kt + b * H * K, in.f[IK] + src * K, sizeof(float) * (size_t)(H * K));
            memcpy(vt + b * H * V, in.f[IV] + src * V, sizeof(float) * (size_t)(H * V));
            memcpy(gt + b * H, in.f[IG] + src, sizeof(float) * (size_t)H);
            memcpy(bt + b * H, in.f[IB] + src, sizeof(float) * (size_t)H);
        }
        CHECK(pn_cpu_gdn_step_f32(&c1, qt, kt, vt, gt, bt, S, ot) == 0, "%s", pn_last_error());
        for (int64_t b = 0; b < B; b++) memcpy(os + (b * T + t) * H * V, ot + b * H * V, sizeof(float) * (size_t)(H * V));
    }
    const double eo = err_ff(os, o, in.n[IDO]), eh = err_ff(S, ht, ns);
    printf("  step B=%lld T=%lld H=%lld K=%lld V=%lld l2=%d: o %.2e  state %.2e\n", (long long)B, (long long)T,
           (long long)H, (long long)K, (long long)V, c.qk_l2norm, eo, eh);
    CHECK(eo <= 1e-6 && eh <= 1e-6, "decode vs chunked: o %.3e state %.3e", eo, eh);
    worst_step = fmax(worst_step, fmax(eo, eh));
    CHECK_ERR(pn_cpu_gdn_step_f32(&c, qt, kt, vt, gt, bt, S, ot), "one token");
    free(o), free(ht), free(S), free(os), free(qt), free(kt), free(vt), free(ot), free(gt), free(bt);
    free_inputs(&in);
}

// ---------------------------------------------------------------------------------------------------
// 3. gradients: the double chunked backward vs central differences of the double chunked forward (and of
// the naive recurrence, an independent oracle), then the fp32 backward vs the double one.

typedef int (*fwd64_fn)(const pn_gdn_cfg *, const double *, const double *, const double *, const double *,
                        const double *, const double *, double *, double *);

// L = Σ o·dO + Σ ht·dht, in double.
static double loss64(fwd64_fn f, const inputs *in, double *const x[6], double *o, double *ht) {
    const pn_gdn_cfg *c = &in->c;
    PN_ASSERT(f(c, x[IQ], x[IK], x[IV], x[IG], x[IB], x[IH0], o, ht) == 0);
    double L = 0;
    for (int64_t i = 0; i < in->n[IDO]; i++) L += o[i] * in->d[IDO][i];
    if (in->d[IDHT])
        for (int64_t i = 0; i < in->n[IDHT]; i++) L += ht[i] * in->d[IDHT][i];
    return L;
}

static void check_grads(pn_gdn_cfg c, int has_h0, int has_dht, double decay, const char *what) {
    inputs in;
    make_inputs(&in, c, 99 + (uint64_t)c.T, has_h0, has_dht, decay);
    const int64_t ns = pn_gdn_num_seqs(&c) * c.H * c.K * c.V;
    // Differentiate w.r.t. h0 even when the op gets none: then FD perturbs an explicit zero state.
    double *h0z = pn_calloc((size_t)ns, sizeof(double));
    double *x[6] = {in.d[IQ], in.d[IK], in.d[IV], in.d[IG], in.d[IB], has_h0 ? in.d[IH0] : h0z};
    const int64_t nx[6] = {in.n[IQ], in.n[IK], in.n[IV], in.n[IG], in.n[IB], ns};
    double *gr[6];
    for (int i = 0; i < 6; i++) gr[i] = pn_malloc(sizeof(double) * (size_t)nx[i]);
    CHECK(pn_cpu_gdn_bwd_f64(&c, in.d[IQ], in.d[IK], in.d[IV], in.d[IG], in.d[IB], in.d[IH0], in.d[IDO], in.d[IDHT],
                             gr[IQ], gr[IK], gr[IV], gr[IG], gr[IB], gr[IH0]) == 0, "%s", pn_last_error());
    double *o = pn_malloc(sizeof(double) * (size_t)in.n[IDO]), *ht = pn_malloc(sizeof(double) * (size_t)ns);
    double *fd = pn_malloc(sizeof(double) * (size_t)in.n[IQ]), *fdn = pn_malloc(sizeof(double) * (size_t)in.n[IQ]);
    const double h = 1e-5;
    printf("  fd  %-28s", what);
    for (int i = 0; i < 6; i++) {
        double *f2 = nx[i] > in.n[IQ] ? pn_malloc(sizeof(double) * (size_t)nx[i]) : NULL;
        double *fc = f2 ? f2 : fd, *fn2 = f2 ? pn_malloc(sizeof(double) * (size_t)nx[i]) : fdn;
        for (int64_t j = 0; j < nx[i]; j++) {
            const double x0 = x[i][j];
            x[i][j] = x0 + h;
            const double lp = loss64(pn_cpu_gdn_fwd_f64, &in, x, o, ht), lpn = loss64(pn_cpu_gdn_naive_f64, &in, x, o, ht);
            x[i][j] = x0 - h;
            const double lm = loss64(pn_cpu_gdn_fwd_f64, &in, x, o, ht), lmn = loss64(pn_cpu_gdn_naive_f64, &in, x, o, ht);
            x[i][j] = x0;
            fc[j] = (lp - lm) / (2 * h);
            fn2[j] = (lpn - lmn) / (2 * h);
        }
        const double e = rms_ratio(gr[i], fc, nx[i]), en = rms_ratio(gr[i], fn2, nx[i]);
        printf(" d%s %.0e/%.0e", in_names[i], e, en);
        CHECK(e <= 1e-7 && en <= 1e-7, "%s: d%s vs finite differences: %.3e (chunked) %.3e (naive)", what, in_names[i], e, en);
        worst_fd = fmax(worst_fd, fmax(e, en));
        if (f2) free(f2), free(fn2);
    }
    printf("\n");
    // The fp32 instance: same code, fp32 rounding.
    float *g32[6];
    for (int i = 0; i < 6; i++) g32[i] = pn_malloc(sizeof(float) * (size_t)nx[i]);
    CHECK(pn_cpu_gdn_bwd_f32(&c, in.f[IQ], in.f[IK], in.f[IV], in.f[IG], in.f[IB], in.f[IH0], in.f[IDO], in.f[IDHT],
                         g32[IQ], g32[IK], g32[IV], g32[IG], g32[IB], g32[IH0]) == 0, "%s", pn_last_error());
    for (int i = 0; i < 6; i++) {
        const double e = err_fd(g32[i], gr[i], nx[i]);
        CHECK(e <= (i == IG ? 3e-5 : 1e-5), "%s: fp32 d%s vs double: %.3e", what, in_names[i], e);
        worst_bwd32 = fmax(worst_bwd32, e);
        free(g32[i]), free(gr[i]);
    }
    free(h0z), free(o), free(ht), free(fd), free(fdn);
    free_inputs(&in);
}

// fp32 backward vs the double backward on a larger shape (FD would be slow there). dg gets a looser bound:
// dγ is a difference of row and column sums that largely cancel, so its fp32 error is relatively larger.
static void check_bwd32(pn_gdn_cfg c, double decay, const char *what) {
    inputs in;
    make_inputs(&in, c, 5, 1, 1, decay);
    const int64_t ns = in.n[IH0], nx[6] = {in.n[IQ], in.n[IK], in.n[IV], in.n[IG], in.n[IB], ns};
    double *gd[6];
    float *gf[6];
    for (int i = 0; i < 6; i++) gd[i] = pn_malloc(sizeof(double) * (size_t)nx[i]), gf[i] = pn_malloc(sizeof(float) * (size_t)nx[i]);
    CHECK(pn_cpu_gdn_bwd_f64(&c, in.d[IQ], in.d[IK], in.d[IV], in.d[IG], in.d[IB], in.d[IH0], in.d[IDO], in.d[IDHT],
                             gd[0], gd[1], gd[2], gd[3], gd[4], gd[5]) == 0, "%s", pn_last_error());
    CHECK(pn_cpu_gdn_bwd_f32(&c, in.f[IQ], in.f[IK], in.f[IV], in.f[IG], in.f[IB], in.f[IH0], in.f[IDO], in.f[IDHT],
                         gf[0], gf[1], gf[2], gf[3], gf[4], gf[5]) == 0, "%s", pn_last_error());
    printf("  bwd fp32 vs double %-17s", what);
    for (int i = 0; i < 6; i++) {
        const double e = err_fd(gf[i], gd[i], nx[i]);
        printf(" d%s %.1e", in_names[i], e);
        CHECK(e <= (i == IG ? 3e-5 : 1e-5), "%s: fp32 d%s vs double: %.3e", what, in_names[i], e);
        worst_bwd32 = fmax(worst_bwd32, e);
        free(gd[i]), free(gf[i]);
    }
    printf("\n");
    free_inputs(&in);
}

// ---------------------------------------------------------------------------------------------------
// 4. variable length: one call with cu_seqlens = the sequences run one by one; changing one sequence's
// tokens changes nothing in the others.

static void check_varlen(void) {
    static const int32_t cu[] = {0, 5, 69, 139, 140};
    const int64_t N = 4, T = 140, H = 2, K = 16, V = 24, KV = K * V;
    pn_gdn_cfg c = cfg(1, T, H, K, V, 1);
    c.cu_seqlens = cu, c.n_seqs = N;
    inputs in;
    make_inputs(&in, c, 11, 1, 1, 0.3);
    const int64_t no = in.n[IDO], nq = in.n[IQ], ng = in.n[IG], ns = N * H * KV;
    float *o = pn_malloc(sizeof(float) * (size_t)no), *ht = pn_malloc(sizeof(float) * (size_t)ns);
    float *dq = pn_malloc(sizeof(float) * (size_t)nq), *dk = pn_malloc(sizeof(float) * (size_t)nq);
    float *dv = pn_malloc(sizeof(float) * (size_t)no), *dg = pn_malloc(sizeof(float) * (size_t)ng);
    float *db = pn_malloc(sizeof(float) * (size_t)ng), *dh0 = pn_malloc(sizeof(float) * (size_t)ns);
    CHECK(pn_cpu_gdn_fwd_f32(&c, in.f[IQ], in.f[IK], in.f[IV], in.f[IG], in.f[IB], in.f[IH0], o, ht) == 0, "%s", pn_last_error());
    CHECK(pn_cpu_gdn_bwd_f32(&c, in.f[IQ], in.f[IK], in.f[IV], in.f[IG], in.f[IB], in.f[IH0], in.f[IDO], in.f[IDHT],
                         dq, dk, dv, dg, db, dh0) == 0, "%s", pn_last_error());
    int same = 1;
    for (int64_t n = 0; n < N; n++) {
        const int64_t t0 = cu[n], L = cu[n + 1] - cu[n];
        pn_gdn_cfg c1 = cfg(1, L, H, K, V, 1);
        float *o1 = pn_malloc(sizeof(float) * (size_t)(L * H * V)), *ht1 = pn_malloc(sizeof(float) * (size_t)(H * KV));
        float *dq1 = pn_malloc(sizeof(float) * (size_t)(L * H * K)), *dk1 = pn_malloc(sizeof(float) * (size_t)(L * H * K));
        float *dv1 = pn_malloc(sizeof(float) * (size_t)(L * H * V)), *dg1 = pn_malloc(sizeof(float) * (size_t)(L * H));
        float *db1 = pn_malloc(sizeof(float) * (size_t)(L * H)), *dh01 = pn_malloc(sizeof(float) * (size_t)(H * KV));
        const float *q = in.f[IQ] + t0 * H * K, *k = in.f[IK] + t0 * H * K, *v = in.f[IV] + t0 * H * V;
        const float *g = in.f[IG] + t0 * H, *b = in.f[IB] + t0 * H, *h0 = in.f[IH0] + n * H * KV;
        CHECK(pn_cpu_gdn_fwd_f32(&c1, q, k, v, g, b, h0, o1, ht1) == 0, "%s", pn_last_error());
        CHECK(pn_cpu_gdn_bwd_f32(&c1, q, k, v, g, b, h0, in.f[IDO] + t0 * H * V, in.f[IDHT] + n * H * KV, dq1, dk1, dv1,
                             dg1, db1, dh01) == 0, "%s", pn_last_error());
        // Each (sequence, head) runs the same code on the same numbers either way: bit-identical.
        same &= !memcmp(o1, o + t0 * H * V, sizeof(float) * (size_t)(L * H * V));
        same &= !memcmp(ht1, ht + n * H * KV, sizeof(float) * (size_t)(H * KV));
        same &= !memcmp(dq1, dq + t0 * H * K, sizeof(float) * (size_t)(L * H * K));
        same &= !memcmp(dk1, dk + t0 * H * K, sizeof(float) * (size_t)(L * H * K));
        same &= !memcmp(dv1, dv + t0 * H * V, sizeof(float) * (size_t)(L * H * V));
        same &= !memcmp(dg1, dg + t0 * H, sizeof(float) * (size_t)(L * H));
        same &= !memcmp(db1, db + t0 * H, sizeof(float) * (size_t)(L * H));
        same &= !memcmp(dh01, dh0 + n * H * KV, sizeof(float) * (size_t)(H * KV));
        free(o1), free(ht1), free(dq1), free(dk1), free(dv1), free(dg1), free(db1), free(dh01);
    }
    CHECK(same, "varlen results differ from running the sequences separately");
    // No leak: scramble sequence 1 (tokens 5..68) and its initial state; sequences 0, 2, 3 must not move.
    for (int64_t i = 5 * H * V; i < 69 * H * V; i++) in.f[IV][i] *= -3;
    for (int64_t i = 5 * H; i < 69 * H; i++) in.f[IG][i] = -5;
    for (int64_t i = 0; i < H * KV; i++) in.f[IH0][1 * H * KV + i] += 1;
    float *o2 = pn_malloc(sizeof(float) * (size_t)no), *ht2 = pn_malloc(sizeof(float) * (size_t)ns);
    CHECK(pn_cpu_gdn_fwd_f32(&c, in.f[IQ], in.f[IK], in.f[IV], in.f[IG], in.f[IB], in.f[IH0], o2, ht2) == 0, "fwd");
    CHECK(!memcmp(o2, o, sizeof(float) * (size_t)(5 * H * V)) &&
              !memcmp(o2 + 69 * H * V, o + 69 * H * V, sizeof(float) * (size_t)((T - 69) * H * V)),
          "changing sequence 1 changed another sequence's output");
    CHECK(!memcmp(ht2, ht, sizeof(float) * (size_t)(H * KV)) &&
              !memcmp(ht2 + 2 * H * KV, ht + 2 * H * KV, sizeof(float) * (size_t)(2 * H * KV)),
          "changing sequence 1 changed another sequence's final state");
    CHECK(memcmp(o2 + 5 * H * V, o + 5 * H * V, sizeof(float) * (size_t)(64 * H * V)), "sequence 1 did not change");
    printf("  varlen (lengths 5, 64, 70, 1): equal to separate runs, bit for bit; no leak\n");
    free(o), free(ht), free(dq), free(dk), free(dv), free(dg), free(db), free(dh0), free(o2), free(ht2);
    free_inputs(&in);
}

// ---------------------------------------------------------------------------------------------------
// 5. fla goldens (tests/make_gdn_goldens.py): forward and every gradient, fp32 vs fp32.

static float *st_f32(pn_safetensors *st, const char *name, int64_t want) {
    const pn_st_entry *e = pn_st_find(st, name);
    if (!e) return NULL;
    PN_ASSERT(pn_st_numel(e) == want);
    float *x = pn_malloc(sizeof(float) * (size_t)want);
    PN_ASSERT(pn_st_to_f32(st, e, x) == 0);
    return x;
}

static void check_golden(const char *dir, const char *name) {
    char file[64];
    snprintf(file, sizeof file, "%s.safetensors", name);
    char *path = pn_path_join(dir, file);
    pn_safetensors st;
    if (pn_st_open(&st, path)) {
        CHECK(0, "%s", pn_last_error());
        free(path);
        return;
    }
    const pn_st_entry *eq = pn_st_find(&st, "q"), *ev = pn_st_find(&st, "v"), *ecu = pn_st_find(&st, "cu_seqlens");
    PN_ASSERT(eq && ev && eq->ndim == 4 && ev->ndim == 4);
    pn_gdn_cfg c = cfg(eq->shape[0], eq->shape[1], eq->shape[2], eq->shape[3], ev->shape[3], atoi(pn_st_meta(&st, "qk_l2norm")));
    c.scale = (float)strtod(pn_st_meta(&st, "scale"), NULL);
    int32_t *cu = NULL;
    if (ecu) {
        c.n_seqs = pn_st_numel(ecu) - 1;
        cu = pn_malloc(sizeof(int32_t) * (size_t)(c.n_seqs + 1));
        memcpy(cu, ecu->data, sizeof(int32_t) * (size_t)(c.n_seqs + 1));
        c.cu_seqlens = cu;
    }
    const int64_t BTH = c.B * c.T * c.H, nq = BTH * c.K, nv = BTH * c.V, ns = pn_gdn_num_seqs(&c) * c.H * c.K * c.V;
    float *q = st_f32(&st, "q", nq), *k = st_f32(&st, "k", nq), *v = st_f32(&st, "v", nv), *g = st_f32(&st, "g", BTH);
    float *b = st_f32(&st, "beta", BTH), *h0 = st_f32(&st, "h0", ns), *dO = st_f32(&st, "do", nv);
    float *dht = st_f32(&st, "dht", ns);
    const char *names[] = {"o", "ht", "dq", "dk", "dv", "dg", "dbeta", "dh0"};
    const int64_t cnt[] = {nv, ns, nq, nq, nv, BTH, BTH, ns};
    float *ref[8], *got[8];
    for (int i = 0; i < 8; i++) ref[i] = st_f32(&st, names[i], cnt[i]), got[i] = pn_malloc(sizeof(float) * (size_t)cnt[i]);
    CHECK(pn_cpu_gdn_fwd_f32(&c, q, k, v, g, b, h0, got[0], got[1]) == 0, "%s: %s", name, pn_last_error());
    CHECK(pn_cpu_gdn_bwd_f32(&c, q, k, v, g, b, h0, dO, dht, got[2], got[3], got[4], got[5], got[6], h0 ? got[7] : NULL) == 0,
          "%s: %s", name, pn_last_error());
    printf("  golden %-11s", name);
    // fla's own tolerances (REFERENCE.md §4) are o 0.005, dq/dk/dv 0.008, dβ/dg 0.02; fp32 vs fp32 we hold 1e-4.
    for (int i = 0; i < 8; i++) {
        if (!ref[i]) continue;
        const double e = err_ff(got[i], ref[i], cnt[i]);
        printf(" %s %.1e", names[i], e);
        CHECK(e <= 1e-4, "%s: %s differs from fla: %.3e", name, names[i], e);
        worst_golden = fmax(worst_golden, e);
    }
    printf("   (%s)\n", pn_st_meta(&st, "reference"));
    CHECK(ref[0] && ref[1] && ref[2] && ref[6] && (!h0 || ref[7]), "%s: golden is missing tensors", name);
    for (int i = 0; i < 8; i++) free(ref[i]), free(got[i]);
    free(q), free(k), free(v), free(g), free(b), free(h0), free(dO), free(dht), free(cu), free(path);
    pn_st_close(&st);
}

// ---------------------------------------------------------------------------------------------------
// 6. configurations the op must refuse with a message naming the parameter.

static void check_bad_configs(void) {
    float x[4] = {0}, y[4] = {0};
    pn_gdn_cfg c = cfg(1, 4, 1, 300, 8, 0);
    CHECK_ERR(pn_cpu_gdn_fwd_f32(&c, x, x, x, x, x, NULL, y, NULL), "K = 300");
    c = cfg(1, 4, 1, 16, 2000, 0);
    CHECK_ERR(pn_cpu_gdn_fwd_f32(&c, x, x, x, x, x, NULL, y, NULL), "V = 2000");
    c = cfg(1, 0, 1, 16, 8, 0);
    CHECK_ERR(pn_cpu_gdn_fwd_f32(&c, x, x, x, x, x, NULL, y, NULL), "T = 0");
    CHECK_ERR(pn_cpu_gdn_bwd_f32(&c, x, x, x, x, x, NULL, x, NULL, y, y, y, y, y, NULL), "T = 0");
    c = cfg(1, 4, 0, 16, 8, 0);
    CHECK_ERR(pn_cpu_gdn_naive_f64(&c, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL), "H = 0");
    c = cfg(1, 4, 1, 16, 8, 0);
    c.scale = -1;
    CHECK_ERR(pn_gdn_check(&c), "scale");
    static const int32_t cu_dup[] = {0, 2, 2, 4}, cu_end[] = {0, 2, 3}, cu_start[] = {1, 2, 4}, cu_ok[] = {0, 1, 4};
    c = cfg(1, 4, 1, 16, 8, 0);
    c.cu_seqlens = cu_dup, c.n_seqs = 3;
    CHECK_ERR(pn_cpu_gdn_fwd_f32(&c, x, x, x, x, x, NULL, y, NULL), "cu_seqlens[2] = 2 is not above");
    c.cu_seqlens = cu_end, c.n_seqs = 2;
    CHECK_ERR(pn_cpu_gdn_fwd_f32(&c, x, x, x, x, x, NULL, y, NULL), "must equal T = 4");
    c.cu_seqlens = cu_start;
    CHECK_ERR(pn_cpu_gdn_fwd_f32(&c, x, x, x, x, x, NULL, y, NULL), "cu_seqlens[0] = 1");
    c.cu_seqlens = cu_ok, c.B = 2;
    CHECK_ERR(pn_cpu_gdn_fwd_f32(&c, x, x, x, x, x, NULL, y, NULL), "B = 1");
    c.B = 1, c.n_seqs = 0;
    CHECK_ERR(pn_gdn_check(&c), "n_seqs");
    c.n_seqs = 2;
    CHECK(pn_gdn_check(&c) == 0, "%s", pn_last_error());

    // Tensor shapes that disagree: only pn_gdn_cfg_from_tensors can see them.
    float buf[8] = {0};
    pn_tensor q = pn_view(buf, PN_F32, PN_CPU, 4, (int64_t[]){1, 2, 3, 4});
    pn_tensor k = q;
    pn_tensor v = pn_view(buf, PN_F32, PN_CPU, 4, (int64_t[]){1, 2, 3, 5});
    pn_tensor v4 = pn_view(buf, PN_F32, PN_CPU, 4, (int64_t[]){1, 2, 4, 5});
    pn_tensor g = pn_view(buf, PN_F32, PN_CPU, 3, (int64_t[]){1, 2, 3});
    pn_tensor g2 = pn_view(buf, PN_F32, PN_CPU, 3, (int64_t[]){1, 3, 3});
    pn_tensor k3 = pn_view(buf, PN_F32, PN_CPU, 3, (int64_t[]){1, 2, 3});
    pn_tensor s = pn_view(buf, PN_F32, PN_CPU, 4, (int64_t[]){1, 3, 4, 5});
    pn_tensor s2 = pn_view(buf, PN_F32, PN_CPU, 4, (int64_t[]){1, 3, 5, 4});
    pn_tensor gb = pn_view(buf, PN_BF16, PN_CPU, 3, (int64_t[]){1, 2, 3});
    CHECK(pn_gdn_cfg_from_tensors(&c, &q, &k, &v, &g, &g, &s, NULL, 0, 0, 1) == 0, "%s", pn_last_error());
    CHECK(c.B == 1 && c.T == 2 && c.H == 3 && c.K == 4 && c.V == 5 && c.qk_l2norm == 1, "cfg from tensors");
    CHECK_ERR(pn_gdn_cfg_from_tensors(&c, &q, &k, &v4, &g, &g, &s, NULL, 0, 0, 0), "v has heads = 4");
    CHECK_ERR(pn_gdn_cfg_from_tensors(&c, &q, &k3, &v, &g, &g, &s, NULL, 0, 0, 0), "k has shape [1, 2, 3]");
    CHECK_ERR(pn_gdn_cfg_from_tensors(&c, &q, &k, &v, &g2, &g, &s, NULL, 0, 0, 0), "g has length = 3");
    CHECK_ERR(pn_gdn_cfg_from_tensors(&c, &q, &k, &v, &g, &gb, &s, NULL, 0, 0, 0), "must be F32");
    CHECK_ERR(pn_gdn_cfg_from_tensors(&c, &q, &k, &v, &g, &g, &s2, NULL, 0, 0, 0), "state (h0/ht) has K = 5");
    CHECK_ERR(pn_gdn_cfg_from_tensors(&c, &q, &k, &v, &g, &g, NULL, cu_ok, 2, 0, 0), "must equal T = 2");
    pn_tensor qbig = pn_view(buf, PN_F32, PN_CPU, 4, (int64_t[]){1, 2, 3, 512});
    CHECK_ERR(pn_gdn_cfg_from_tensors(&c, &qbig, &qbig, &v, &g, &g, NULL, NULL, 0, 0, 0), "K = 512");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s GOLDENS_DIR\n", argv[0]);
        return 2;
    }
    printf("chunked fp32 forward vs the recurrence in double (RMS ratio):\n");
    check_fwd_vs_naive(cfg(2, 1, 3, 16, 24, 0), 1, 0.5, "T=1 H=3 h0");
    check_fwd_vs_naive(cfg(1, 63, 1, 16, 24, 0), 0, 0.5, "T=63 H=1");
    check_fwd_vs_naive(cfg(1, 64, 2, 16, 24, 1), 1, 0.5, "T=64 H=2 l2 h0");
    check_fwd_vs_naive(cfg(2, 65, 3, 16, 24, 1), 1, 0.5, "T=65 B=2 H=3 l2 h0");
    check_fwd_vs_naive(cfg(1, 200, 3, 32, 64, 0), 1, 0.1, "T=200 K=32 V=64 h0");
    check_fwd_vs_naive(cfg(1, 300, 2, 64, 128, 1), 0, 0.02, "T=300 K=64 V=128 slow decay");
    check_fwd_vs_naive(cfg(1, 130, 1, 16, 24, 1), 1, 0.0, "T=130 DeltaNet (g=0)");
    check_fwd_vs_naive(cfg(1, 70, 1, 256, 1024, 1), 1, 0.5, "T=70 K=256 V=1024 (max)");
    pn_gdn_cfg sc = cfg(1, 100, 2, 16, 24, 1);
    sc.scale = 0.3f;
    check_fwd_vs_naive(sc, 1, 0.5, "T=100 scale=0.3");
    static const int32_t cu[] = {0, 5, 69, 139};
    pn_gdn_cfg vc = cfg(1, 139, 2, 16, 24, 1);
    vc.cu_seqlens = cu, vc.n_seqs = 3;
    check_fwd_vs_naive(vc, 1, 0.5, "varlen 5+64+70 h0");

    printf("decode steps vs the chunked forward:\n");
    check_step(cfg(2, 150, 3, 16, 24, 1), 0.3);
    check_step(cfg(1, 70, 2, 64, 128, 0), 0.05);

    printf("gradients: double chunked backward vs central differences (chunked / naive forward):\n");
    check_grads(cfg(1, 70, 2, 4, 3, 1), 1, 1, 0.5, "T=70 H=2 l2 h0 dht");
    check_grads(cfg(2, 65, 1, 3, 5, 0), 0, 0, 0.5, "T=65 B=2 no h0, no dht");
    check_grads(cfg(1, 64, 1, 3, 2, 1), 1, 1, 0.0, "T=64 DeltaNet");
    check_grads(cfg(1, 1, 2, 4, 3, 1), 1, 1, 0.5, "T=1");
    pn_gdn_cfg gc = cfg(1, 75, 1, 5, 4, 1);
    static const int32_t cu3[] = {0, 3, 70, 75};
    gc.cu_seqlens = cu3, gc.n_seqs = 3, gc.scale = 0.7f;
    check_grads(gc, 1, 1, 0.5, "varlen 3+67+5 scale=0.7");
    check_bwd32(cfg(2, 200, 3, 32, 64, 1), 0.1, "T=200 K=32 V=64");
    check_bwd32(cfg(1, 130, 2, 128, 256, 1), 0.02, "T=130 K=128 V=256");

    printf("variable length:\n");
    check_varlen();

    printf("fla goldens (%s):\n", argv[1]);
    static const char *goldens[] = {"t1_h3", "t63_h1", "t65_h3_l2", "t200_h1_l2", "k32_v64", "deltanet", "varlen"};
    for (size_t i = 0; i < sizeof goldens / sizeof goldens[0]; i++) check_golden(argv[1], goldens[i]);

    check_bad_configs();
    printf("worst: fwd vs naive %.2e, step vs chunked %.2e, FD %.2e, fp32 vs double bwd %.2e, vs fla %.2e\n",
           worst_fwd, worst_step, worst_fd, worst_bwd32, worst_golden);
    return pn_test_done("gdn");
}
