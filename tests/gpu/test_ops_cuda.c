// test_ops_cuda: every op of the CUDA backend against the CPU backend (the fp32 oracle) on the same random
// inputs, then timings of the attention and matmul anchors.
//
// Inputs are drawn on the host (fixed seed) and rounded to bf16 before either backend sees them, so both
// compute from identical values and the error measured is the CUDA path's own (bf16 roundings of
// intermediates and outputs, fp32 accumulation order). Error is ||cuda - cpu|| / ||cpu|| over the output.
// Cache rows past the valid positions are NaN on the GPU (zeros on the CPU): attention must never read them.
// Prints one line per case and a final "N passed, M failed"; exits 1 if any case failed, 0 with
// "skipped: no CUDA device" when there is no GPU. PN_TEST_NO_BENCH=1 in the environment skips the timings.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_test.h"
#include "kernels/ops.h"
#include "src/pn_common.h"

// CUDA-event timing from kernels/cuda/backend.cu (C linkage, so this file needs no CUDA headers).
void pn_cuda_timer_start(void);
float pn_cuda_timer_stop_ms(void);

static int n_pass = 0, n_fail = 0;

// ----------------------------------------------------------------------------------------------------
// random inputs

static float *copy_f32(const float *src, int64_t n) {
    float *p = pn_malloc(sizeof(float) * (size_t)(n ? n : 1));
    memcpy(p, src, sizeof(float) * (size_t)n);
    return p;
}

// ----------------------------------------------------------------------------------------------------
// tensors on both devices

static pn_tensor host_view(float *data, int ndim, const int64_t *shape) {
    return pn_view(data, PN_F32, PN_CPU, ndim, shape);
}

static void report(const char *op, const char *shape, double err, double tol) {
    const int ok = err <= tol; // false for NaN
    printf("%-10s %-44s relerr=%.3e %s\n", op, shape, err, ok ? "ok" : "FAIL");
    fflush(stdout);
    if (ok)
        n_pass++;
    else
        n_fail++;
}

// ----------------------------------------------------------------------------------------------------
// cases

static void test_matmul(int64_t N, int64_t I, int64_t O, int with_bias) {
    float *x = randn(N * I, 0.0f, 1.0f), *w = randn(O * I, 0.0f, 1.0f / sqrtf((float)I));
    float *bias = with_bias ? randn(O, 0.0f, 1.0f) : NULL;
    float *ref = pn_malloc(sizeof(float) * (size_t)(N * O));
    const int64_t sx[2] = {N, I}, sw[2] = {O, I}, so[2] = {N, O}, sb[1] = {O};

    pn_tensor hx = host_view(x, 2, sx), hw = host_view(w, 2, sw), ho = host_view(ref, 2, so);
    pn_tensor hb = bias ? host_view(bias, 1, sb) : (pn_tensor){0};
    pn_op_matmul(&ho, &hx, &hw, bias ? &hb : NULL);

    pn_tensor dx = dev_upload(x, PN_BF16, 2, sx), dw = dev_upload(w, PN_BF16, 2, sw), dout = dev_alloc(PN_BF16, 2, so);
    pn_tensor db = bias ? dev_upload(bias, PN_BF16, 1, sb) : (pn_tensor){0};
    pn_op_matmul(&dout, &dx, &dw, bias ? &db : NULL);
    float *got = dev_download(&dout);

    char shape[96];
    snprintf(shape, sizeof shape, "[%lld,%lld]x[%lld,%lld]^T%s", (long long)N, (long long)I, (long long)O,
             (long long)I, bias ? "+b" : "");
    report("matmul", shape, relerr(got, ref, N * O), 1e-2);

    dev_free(&dx), dev_free(&dw), dev_free(&dout);
    if (bias) dev_free(&db);
    free(x), free(w), free(bias), free(ref), free(got);
}

// x of shape (ndim, shape) normalized over its last dim D; in_place writes the result over x.
static void test_rmsnorm(int ndim, const int64_t *shape, int in_place) {
    const int64_t D = shape[ndim - 1];
    pn_tensor probe = pn_view(NULL, PN_F32, PN_CPU, ndim, shape);
    const int64_t n = pn_numel(&probe);
    float *x = randn(n, 0.0f, 1.0f), *w = randn(D, 1.0f, 0.1f);
    float *ref = pn_malloc(sizeof(float) * (size_t)n);
    const int64_t sw[1] = {D};
    pn_tensor hx = host_view(x, ndim, shape), hw = host_view(w, 1, sw), ho = host_view(ref, ndim, shape);
    pn_op_rmsnorm(&ho, &hx, &hw, 1e-6f);

    pn_tensor dx = dev_upload(x, PN_BF16, ndim, shape), dw = dev_upload(w, PN_BF16, 1, sw);
    pn_tensor dout = in_place ? dx : dev_alloc(PN_BF16, ndim, shape);
    pn_op_rmsnorm(&dout, &dx, &dw, 1e-6f);
    float *got = dev_download(&dout);

    char s[96], name[128];
    snprintf(name, sizeof name, "%s D=%lld%s", pn_shape_str(&hx, s, sizeof s), (long long)D,
             in_place ? " in-place" : "");
    report("rmsnorm", name, relerr(got, ref, n), 1e-2);
    if (!in_place) dev_free(&dout);
    dev_free(&dx), dev_free(&dw);
    free(x), free(w), free(ref), free(got);
}

static void test_rope(int64_t B, int64_t T, int64_t H, int64_t D, int pos0) {
    const int64_t shape[4] = {B, T, H, D}, sf[1] = {D / 2}, n = B * T * H * D;
    float *x = randn(n, 0.0f, 1.0f), *ref = copy_f32(x, n);
    float *freq = pn_malloc(sizeof(float) * (size_t)(D / 2));
    for (int64_t i = 0; i < D / 2; i++) freq[i] = (float)pow(1000000.0, -2.0 * (double)i / (double)D);

    pn_tensor hx = host_view(ref, 4, shape), hf = host_view(freq, 1, sf);
    pn_op_rope(&hx, &hf, pos0, NULL);
    pn_tensor dx = dev_upload(x, PN_BF16, 4, shape), df = dev_upload(freq, PN_F32, 1, sf);
    pn_op_rope(&dx, &df, pos0, NULL);
    float *got = dev_download(&dx);

    char s[96], name[128];
    snprintf(name, sizeof name, "%s pos0=%d", pn_shape_str(&hx, s, sizeof s), pos0);
    report("rope", name, relerr(got, ref, n), 1e-2);
    dev_free(&dx), dev_free(&df);
    free(x), free(ref), free(freq), free(got);
}

static void test_swiglu(int64_t N, int64_t C) {
    const int64_t shape[2] = {N, C}, n = N * C;
    float *g = randn(n, 0.0f, 2.0f), *u = randn(n, 0.0f, 1.0f), *ref = pn_malloc(sizeof(float) * (size_t)n);
    pn_tensor hg = host_view(g, 2, shape), hu = host_view(u, 2, shape), ho = host_view(ref, 2, shape);
    pn_op_swiglu(&ho, &hg, &hu);
    pn_tensor dg = dev_upload(g, PN_BF16, 2, shape), du = dev_upload(u, PN_BF16, 2, shape);
    pn_tensor dout = dev_alloc(PN_BF16, 2, shape);
    pn_op_swiglu(&dout, &dg, &du);
    float *got = dev_download(&dout);
    char s[96];
    report("swiglu", pn_shape_str(&hg, s, sizeof s), relerr(got, ref, n), 1e-2);
    dev_free(&dg), dev_free(&du), dev_free(&dout);
    free(g), free(u), free(ref), free(got);
}

// The MLP's first half in one call: against the CPU's (fp32) and, bit for bit, against the three CUDA ops it
// replaces (matmul, matmul, swiglu): a decoding step's logits must not change when it is fused.
static void test_matmul_swiglu(int64_t N, int64_t I, int64_t O) {
    float *x = randn(N * I, 0.0f, 1.0f), *wg = randn(O * I, 0.0f, 1.0f / sqrtf((float)I));
    float *wu = randn(O * I, 0.0f, 1.0f / sqrtf((float)I)), *ref = pn_malloc(sizeof(float) * (size_t)(N * O));
    const int64_t sx[2] = {N, I}, sw[2] = {O, I}, so[2] = {N, O};
    pn_tensor hx = host_view(x, 2, sx), hg = host_view(wg, 2, sw), hu = host_view(wu, 2, sw), ho = host_view(ref, 2, so);
    pn_op_matmul_swiglu(&ho, &hx, &hg, &hu);
    pn_tensor dx = dev_upload(x, PN_BF16, 2, sx), dg = dev_upload(wg, PN_BF16, 2, sw), du = dev_upload(wu, PN_BF16, 2, sw);
    pn_tensor dout = dev_alloc(PN_BF16, 2, so), t1 = dev_alloc(PN_BF16, 2, so), t2 = dev_alloc(PN_BF16, 2, so);
    pn_tensor d3 = dev_alloc(PN_BF16, 2, so);
    pn_op_matmul_swiglu(&dout, &dx, &dg, &du);
    pn_op_matmul(&t1, &dx, &dg, NULL);
    pn_op_matmul(&t2, &dx, &du, NULL);
    pn_op_swiglu(&d3, &t1, &t2);
    float *got = dev_download(&dout), *three = dev_download(&d3);
    char shape[96];
    snprintf(shape, sizeof shape, "[%lld,%lld]x2[%lld,%lld]^T", (long long)N, (long long)I, (long long)O, (long long)I);
    report("mm_swiglu", shape, relerr(got, ref, N * O), 1e-2);
    int64_t diff = 0;
    for (int64_t i = 0; i < N * O; i++) diff += memcmp(&got[i], &three[i], sizeof(float)) != 0;
    snprintf(shape + strlen(shape), sizeof shape - strlen(shape), " = 3 ops: %lld differ", (long long)diff);
    report("mm_swiglu", shape, (double)diff, 0);
    dev_free(&dx), dev_free(&dg), dev_free(&du), dev_free(&dout), dev_free(&t1), dev_free(&t2), dev_free(&d3);
    free(x), free(wg), free(wu), free(ref), free(got), free(three);
}

// The projections of one input in one call: against the CPU's n products and, bit for bit, against n CUDA
// matmuls (the decode step's q/k/v and a linear block's projections as one GEMV launch; with biases on some).
static void test_matmul_multi(int64_t N, int64_t I, int n, const int64_t *O, int with_bias, unsigned silu) {
    float *x = randn(N * I, 0.0f, 1.0f);
    const int64_t sx[2] = {N, I};
    pn_tensor hx = host_view(x, 2, sx), dx = dev_upload(x, PN_BF16, 2, sx);
    float *w[PN_MATMUL_MULTI], *b[PN_MATMUL_MULTI], *ref[PN_MATMUL_MULTI];
    pn_tensor hw[PN_MATMUL_MULTI], hb[PN_MATMUL_MULTI], ho[PN_MATMUL_MULTI], dw[PN_MATMUL_MULTI], db[PN_MATMUL_MULTI];
    pn_tensor dout[PN_MATMUL_MULTI], dsep[PN_MATMUL_MULTI];
    pn_tensor *hop[PN_MATMUL_MULTI], *dop[PN_MATMUL_MULTI];
    const pn_tensor *hwp[PN_MATMUL_MULTI], *hbp[PN_MATMUL_MULTI], *dwp[PN_MATMUL_MULTI], *dbp[PN_MATMUL_MULTI];
    for (int i = 0; i < n; i++) {
        const int64_t sw[2] = {O[i], I}, so[2] = {N, O[i]}, sb[1] = {O[i]};
        w[i] = randn(O[i] * I, 0.0f, 1.0f / sqrtf((float)I)), b[i] = randn(O[i], 0.0f, 0.5f);
        ref[i] = pn_malloc(sizeof(float) * (size_t)(N * O[i]));
        hw[i] = host_view(w[i], 2, sw), hb[i] = host_view(b[i], 1, sb), ho[i] = host_view(ref[i], 2, so);
        dw[i] = dev_upload(w[i], PN_BF16, 2, sw), db[i] = dev_upload(b[i], PN_BF16, 1, sb);
        dout[i] = dev_alloc(PN_BF16, 2, so), dsep[i] = dev_alloc(PN_BF16, 2, so);
        const int biased = with_bias && i % 2 == 0; // biases on some products only
        hop[i] = &ho[i], dop[i] = &dout[i], hwp[i] = &hw[i], dwp[i] = &dw[i];
        hbp[i] = biased ? &hb[i] : NULL, dbp[i] = biased ? &db[i] : NULL;
    }
    pn_op_matmul_multi(n, hop, &hx, hwp, hbp, silu);
    pn_op_matmul_multi(n, dop, &dx, dwp, dbp, silu);
    for (int i = 0; i < n; i++) {
        pn_op_matmul(&dsep[i], &dx, &dw[i], dbp[i]);
        if (silu >> i & 1) pn_op_silu(&dsep[i], &dsep[i]);
    }
    double worst = 0;
    int64_t diff = 0;
    for (int i = 0; i < n; i++) {
        float *got = dev_download(&dout[i]), *sep = dev_download(&dsep[i]);
        const double e = relerr(got, ref[i], N * O[i]);
        if (e > worst) worst = e;
        for (int64_t k = 0; k < N * O[i]; k++) diff += memcmp(&got[k], &sep[k], sizeof(float)) != 0;
        free(got), free(sep);
    }
    char shape[160];
    int len = snprintf(shape, sizeof shape, "[%lld,%lld] x {", (long long)N, (long long)I);
    for (int i = 0; i < n; i++) len += snprintf(shape + len, sizeof shape - (size_t)len, "%s%lld", i ? "," : "", (long long)O[i]);
    snprintf(shape + len, sizeof shape - (size_t)len, "}%s%s", with_bias ? " +bias" : "", silu ? " silu" : "");
    report("mm_multi", shape, worst, 1e-2);
    snprintf(shape + strlen(shape), sizeof shape - strlen(shape), " = %d matmuls: %lld differ", n, (long long)diff);
    report("mm_multi", shape, (double)diff, 0);
    dev_free(&dx);
    for (int i = 0; i < n; i++) {
        dev_free(&dw[i]), dev_free(&db[i]), dev_free(&dout[i]), dev_free(&dsep[i]);
        free(w[i]), free(b[i]), free(ref[i]);
    }
    free(x);
}

static int64_t bits_differ(const float *a, const float *b, int64_t n) {
    int64_t d = 0;
    for (int64_t i = 0; i < n; i++) d += memcmp(&a[i], &b[i], sizeof(float)) != 0;
    return d;
}

// The residual add and the next norm in one pass: against the CPU and, bit for bit, against add then rmsnorm
// on CUDA (both outputs: the updated x and the normalized rows), and with the sum into its own buffer (x
// left as it was) against the same in place.
static void test_add_rmsnorm(int64_t N, int64_t D) {
    const int64_t shape[2] = {N, D}, n = N * D, sw[1] = {D};
    float *x = randn(n, 0.0f, 1.0f), *y = randn(n, 0.0f, 1.0f), *w = randn(D, 1.0f, 0.1f);
    float *hxr = copy_f32(x, n), *ref = pn_malloc(sizeof(float) * (size_t)n);
    pn_tensor hx = host_view(hxr, 2, shape), hy = host_view(y, 2, shape), hw = host_view(w, 1, sw), ho = host_view(ref, 2, shape);
    pn_op_add_rmsnorm(&hx, &hx, &hy, &ho, &hw, 1e-6f);
    pn_tensor dx = dev_upload(x, PN_BF16, 2, shape), dy = dev_upload(y, PN_BF16, 2, shape), dw = dev_upload(w, PN_BF16, 1, sw);
    pn_tensor dx2 = dev_upload(x, PN_BF16, 2, shape), dout = dev_alloc(PN_BF16, 2, shape), dout2 = dev_alloc(PN_BF16, 2, shape);
    pn_tensor dx3 = dev_upload(x, PN_BF16, 2, shape), ds = dev_alloc(PN_BF16, 2, shape), dout3 = dev_alloc(PN_BF16, 2, shape);
    pn_op_add_rmsnorm(&ds, &dx3, &dy, &dout3, &dw, 1e-6f); // the sum apart: dx3 only read
    pn_op_add_rmsnorm(&dx, &dx, &dy, &dout, &dw, 1e-6f);
    pn_op_add(&dx2, &dx2, &dy);
    pn_op_rmsnorm(&dout2, &dx2, &dw, 1e-6f);
    float *got = dev_download(&dout), *gx = dev_download(&dx), *two = dev_download(&dout2), *tx = dev_download(&dx2);
    pn_tensor dx0 = dev_upload(x, PN_BF16, 2, shape); // x as bf16: what dx3 must still hold
    float *x3 = dev_download(&dx3), *s3 = dev_download(&ds), *o3 = dev_download(&dout3), *x0 = dev_download(&dx0);
    char sh[96];
    snprintf(sh, sizeof sh, "[%lld, %lld]", (long long)N, (long long)D);
    report("add_norm", sh, relerr(got, ref, n), 1e-2);
    int64_t diff = 0;
    for (int64_t i = 0; i < n; i++) diff += memcmp(&got[i], &two[i], sizeof(float)) != 0 || memcmp(&gx[i], &tx[i], sizeof(float)) != 0;
    snprintf(sh + strlen(sh), sizeof sh - strlen(sh), " = add, rmsnorm: %lld differ", (long long)diff);
    report("add_norm", sh, (double)diff, 0);
    const int64_t apart = bits_differ(s3, gx, n) + bits_differ(o3, got, n), moved = bits_differ(x3, x0, n);
    snprintf(sh, sizeof sh, "[%lld, %lld] sum apart = in place: %lld differ, x %lld", (long long)N, (long long)D,
             (long long)apart, (long long)moved);
    report("add_norm", sh, (double)(apart + moved), 0);
    dev_free(&dx), dev_free(&dy), dev_free(&dw), dev_free(&dx2), dev_free(&dout), dev_free(&dout2);
    dev_free(&dx3), dev_free(&ds), dev_free(&dout3), dev_free(&dx0);
    free(x), free(y), free(w), free(hxr), free(ref), free(got), free(gx), free(two), free(tx);
    free(x3), free(s3), free(o3), free(x0);
}

// A decoding step's post-attention norm and MLP first half in one launch: against the CPU's and, bit for
// bit, against the CUDA ops it fuses (copy, add_rmsnorm, matmul_swiglu); x and y must be left as they were.
static void test_add_rmsnorm_swiglu(int64_t N, int64_t I, int64_t O, int with_y) {
    float *x = randn(N * I, 0.0f, 1.0f), *y = randn(N * I, 0.0f, 1.0f), *nw = randn(I, 1.0f, 0.1f);
    float *wg = randn(O * I, 0.0f, 1.0f / sqrtf((float)I)), *wu = randn(O * I, 0.0f, 1.0f / sqrtf((float)I));
    float *ref = pn_malloc(sizeof(float) * (size_t)(N * O));
    const int64_t sx[2] = {N, I}, sw[2] = {O, I}, so[2] = {N, O}, sn[1] = {I};
    pn_tensor hx = host_view(x, 2, sx), hy = host_view(y, 2, sx), hn = host_view(nw, 1, sn), hg = host_view(wg, 2, sw);
    pn_tensor hu = host_view(wu, 2, sw), ho = host_view(ref, 2, so);
    pn_op_add_rmsnorm_swiglu(&ho, &hx, with_y ? &hy : NULL, &hn, 1e-6f, &hg, &hu);
    pn_tensor dx = dev_upload(x, PN_BF16, 2, sx), dy = dev_upload(y, PN_BF16, 2, sx), dn = dev_upload(nw, PN_BF16, 1, sn);
    pn_tensor dg = dev_upload(wg, PN_BF16, 2, sw), du = dev_upload(wu, PN_BF16, 2, sw), dout = dev_alloc(PN_BF16, 2, so);
    pn_tensor ds = dev_alloc(PN_BF16, 2, sx), dxn = dev_alloc(PN_BF16, 2, sx), dout2 = dev_alloc(PN_BF16, 2, so);
    float *x0 = dev_download(&dx);
    pn_op_add_rmsnorm_swiglu(&dout, &dx, with_y ? &dy : NULL, &dn, 1e-6f, &dg, &du);
    pn_op_copy(&ds, &dx);
    if (with_y) pn_op_add_rmsnorm(&ds, &ds, &dy, &dxn, &dn, 1e-6f);
    else pn_op_rmsnorm(&dxn, &ds, &dn, 1e-6f);
    pn_op_matmul_swiglu(&dout2, &dxn, &dg, &du);
    float *got = dev_download(&dout), *sep = dev_download(&dout2), *x1 = dev_download(&dx);
    char shape[128];
    snprintf(shape, sizeof shape, "[%lld,%lld]%s x2[%lld,%lld]^T", (long long)N, (long long)I, with_y ? "+y" : "",
             (long long)O, (long long)I);
    report("norm_mlp", shape, relerr(got, ref, N * O), 1e-2);
    const int64_t diff = bits_differ(got, sep, N * O), moved = bits_differ(x0, x1, N * I);
    snprintf(shape + strlen(shape), sizeof shape - strlen(shape), " = 3 ops: %lld differ, x %lld", (long long)diff,
             (long long)moved);
    report("norm_mlp", shape, (double)(diff + moved), 0);
    dev_free(&dx), dev_free(&dy), dev_free(&dn), dev_free(&dg), dev_free(&du), dev_free(&dout), dev_free(&ds);
    dev_free(&dxn), dev_free(&dout2);
    free(x), free(y), free(nw), free(wg), free(wu), free(ref), free(got), free(sep), free(x0), free(x1);
}

// The down projection into the residual and the next norm in one launch: against the CPU's and, bit for
// bit, against add, matmul, add_rmsnorm on CUDA (both x and xn); run twice (the launch's block counter must
// be left at zero for the next).
static void test_matmul_add_rmsnorm(int64_t N, int64_t I, int64_t O, int with_y) {
    float *x = randn(N * O, 0.0f, 1.0f), *y = randn(N * O, 0.0f, 1.0f), *a = randn(N * I, 0.0f, 1.0f);
    float *w = randn(O * I, 0.0f, 1.0f / sqrtf((float)I)), *nw = randn(O, 1.0f, 0.1f);
    float *rx = copy_f32(x, N * O), *rn = pn_malloc(sizeof(float) * (size_t)(N * O));
    const int64_t sx[2] = {N, O}, sa[2] = {N, I}, sw[2] = {O, I}, sn[1] = {O};
    pn_tensor hx = host_view(rx, 2, sx), hy = host_view(y, 2, sx), ha = host_view(a, 2, sa), hw = host_view(w, 2, sw);
    pn_tensor hn = host_view(nw, 1, sn), hxn = host_view(rn, 2, sx);
    pn_op_matmul_add_rmsnorm(&hx, with_y ? &hy : NULL, &ha, &hw, &hxn, &hn, 1e-6f);
    pn_tensor dy = dev_upload(y, PN_BF16, 2, sx), da = dev_upload(a, PN_BF16, 2, sa), dw = dev_upload(w, PN_BF16, 2, sw);
    pn_tensor dn = dev_upload(nw, PN_BF16, 1, sn), dp = dev_alloc(PN_BF16, 2, sx);
    int64_t diff = 0;
    double err = 0;
    for (int rep = 0; rep < 2; rep++) {
        pn_tensor dx = dev_upload(x, PN_BF16, 2, sx), dx2 = dev_upload(x, PN_BF16, 2, sx);
        pn_tensor dxn = dev_alloc(PN_BF16, 2, sx), dxn2 = dev_alloc(PN_BF16, 2, sx);
        pn_op_matmul_add_rmsnorm(&dx, with_y ? &dy : NULL, &da, &dw, &dxn, &dn, 1e-6f);
        if (with_y) pn_op_add(&dx2, &dx2, &dy);
        pn_op_matmul(&dp, &da, &dw, NULL);
        pn_op_add_rmsnorm(&dx2, &dx2, &dp, &dxn2, &dn, 1e-6f);
        float *gx = dev_download(&dx), *gn = dev_download(&dxn), *sx2 = dev_download(&dx2), *sn2 = dev_download(&dxn2);
        const double e1 = relerr(gx, rx, N * O), e2 = relerr(gn, rn, N * O);
        err = fmax(err, fmax(e1, e2));
        diff += bits_differ(gx, sx2, N * O) + bits_differ(gn, sn2, N * O);
        dev_free(&dx), dev_free(&dx2), dev_free(&dxn), dev_free(&dxn2);
        free(gx), free(gn), free(sx2), free(sn2);
    }
    char shape[128];
    snprintf(shape, sizeof shape, "[%lld,%lld]x[%lld,%lld]^T%s", (long long)N, (long long)I, (long long)O, (long long)I,
             with_y ? "+y" : "");
    report("mm_res", shape, err, 1e-2);
    snprintf(shape + strlen(shape), sizeof shape - strlen(shape), " = 3 ops, twice: %lld differ", (long long)diff);
    report("mm_res", shape, (double)diff, 0);
    dev_free(&dy), dev_free(&da), dev_free(&dw), dev_free(&dn), dev_free(&dp);
    free(x), free(y), free(a), free(w), free(nw), free(rx), free(rn);
}

static void test_add(int64_t N, int64_t C) {
    const int64_t shape[2] = {N, C}, n = N * C;
    float *x = randn(n, 0.0f, 1.0f), *y = randn(n, 0.0f, 1.0f), *ref = copy_f32(x, n);
    pn_tensor hx = host_view(ref, 2, shape), hy = host_view(y, 2, shape);
    pn_op_add(&hx, &hx, &hy);
    pn_tensor dx = dev_upload(x, PN_BF16, 2, shape), dy = dev_upload(y, PN_BF16, 2, shape), ds = dev_alloc(PN_BF16, 2, shape);
    pn_op_add(&ds, &dx, &dy); // into its own buffer, then in place
    pn_op_add(&dx, &dx, &dy);
    float *got = dev_download(&dx), *apart = dev_download(&ds);
    char s[96];
    report("add", pn_shape_str(&hx, s, sizeof s), relerr(got, ref, n), 1e-2);
    report("add", "sum apart = in place (values differing)", (double)bits_differ(apart, got, n), 0);
    dev_free(&dx), dev_free(&dy), dev_free(&ds);
    free(x), free(y), free(ref), free(got), free(apart);
}

static void test_embedding(int64_t V, int64_t C, int64_t N) {
    const int64_t st[2] = {V, C}, so[2] = {N, C}, si[1] = {N};
    float *table = randn(V * C, 0.0f, 1.0f), *ref = pn_malloc(sizeof(float) * (size_t)(N * C));
    int32_t *ids = pn_malloc(sizeof(int32_t) * (size_t)N);
    for (int64_t i = 0; i < N; i++) ids[i] = (int32_t)(pn_splitmix64(gpu_test_draws++) % (uint64_t)V);
    ids[0] = 0, ids[N - 1] = (int32_t)(V - 1); // both ends of the table

    pn_tensor ht = host_view(table, 2, st), ho = host_view(ref, 2, so);
    pn_tensor hi = pn_view(ids, PN_I32, PN_CPU, 1, si);
    pn_op_embedding(&ho, &hi, &ht);

    pn_tensor dt = dev_upload(table, PN_BF16, 2, st), dout = dev_alloc(PN_BF16, 2, so), di = dev_alloc(PN_I32, 1, si);
    pn_cuda_backend.memcpy_h2d(di.data, ids, sizeof(int32_t) * (size_t)N);
    pn_op_embedding(&dout, &di, &dt);
    float *got = dev_download(&dout);
    char name[96];
    snprintf(name, sizeof name, "table [%lld, %lld] ids [%lld]", (long long)V, (long long)C, (long long)N);
    report("embedding", name, relerr(got, ref, N * C), 1e-2);
    dev_free(&dt), dev_free(&dout), dev_free(&di);
    free(table), free(ref), free(ids), free(got);
}

static void test_kv_store(int64_t B, int64_t cap, int64_t H, int64_t D, int64_t T, int pos0) {
    const int64_t sc[4] = {B, cap, H, D}, ss[4] = {B, T, H, D}, nc = B * cap * H * D, ns = B * T * H * D;
    float *cache = randn(nc, 0.0f, 1.0f), *src = randn(ns, 0.0f, 1.0f), *ref = copy_f32(cache, nc);
    pn_tensor hc = host_view(ref, 4, sc), hs = host_view(src, 4, ss);
    pn_op_kv_store(&hc, &hs, pos0);
    pn_tensor dc = dev_upload(cache, PN_BF16, 4, sc), ds = dev_upload(src, PN_BF16, 4, ss);
    pn_op_kv_store(&dc, &ds, pos0);
    float *got = dev_download(&dc);
    char s[96], name[128];
    snprintf(name, sizeof name, "cache %s T=%lld pos0=%d", pn_shape_str(&hc, s, sizeof s), (long long)T, pos0);
    report("kv_store", name, relerr(got, ref, nc), 1e-2);
    dev_free(&dc), dev_free(&ds);
    free(cache), free(src), free(ref), free(got);
}

// ring > 0: a cache of that many slots that the positions wrap (position s in slot s mod ring; needs a
// window), every slot holding a key; else pos0 + T + 5 slots, those past the keys NaN on the GPU.
static void test_attention_ring(int64_t B, int64_t T, int64_t Hq, int64_t Hkv, int64_t D, int pos0, int window,
                                int64_t ring) {
    const int64_t cap = ring > 0 ? ring : pos0 + T + 5, kv_len = ring > 0 ? cap : pos0 + T;
    const int64_t sq[4] = {B, T, Hq, D}, sk[4] = {B, cap, Hkv, D};
    const int64_t nq = B * T * Hq * D, nk = B * cap * Hkv * D, row = Hkv * D;
    float *q = randn(nq, 0.0f, 1.0f), *k = randn(nk, 0.0f, 1.0f), *v = randn(nk, 0.0f, 1.0f);
    float *kd = copy_f32(k, nk), *vd = copy_f32(v, nk);
    for (int64_t b = 0; b < B; b++) // positions past the valid keys: 0 for the CPU, NaN for the GPU
        for (int64_t s = kv_len; s < cap; s++)
            for (int64_t i = 0; i < row; i++) {
                const int64_t at = (b * cap + s) * row + i;
                k[at] = v[at] = 0.0f;
                kd[at] = vd[at] = NAN;
            }
    float *ref = pn_malloc(sizeof(float) * (size_t)nq);
    pn_tensor hq = host_view(q, 4, sq), hk = host_view(k, 4, sk), hv = host_view(v, 4, sk), ho = host_view(ref, 4, sq);
    pn_op_attention(&ho, &hq, &hk, &hv, pos0, window);

    pn_tensor dq = dev_upload(q, PN_BF16, 4, sq), dk = dev_upload(kd, PN_BF16, 4, sk), dv = dev_upload(vd, PN_BF16, 4, sk);
    pn_tensor dout = dev_alloc(PN_BF16, 4, sq);
    pn_op_attention(&dout, &dq, &dk, &dv, pos0, window);
    float *got = dev_download(&dout);

    char name[128];
    snprintf(name, sizeof name, "B%lld T%lld Hq%lld Hkv%lld D%lld pos0=%d win=%d%s", (long long)B, (long long)T,
             (long long)Hq, (long long)Hkv, (long long)D, pos0, window, ring > 0 ? " ring" : "");
    if (ring > 0) snprintf(name + strlen(name), sizeof name - strlen(name), " of %lld", (long long)ring);
    report("attention", name, relerr(got, ref, nq), 1e-2);
    dev_free(&dq), dev_free(&dk), dev_free(&dv), dev_free(&dout);
    free(q), free(k), free(v), free(kd), free(vd), free(ref), free(got);
}

static void test_attention(int64_t B, int64_t T, int64_t Hq, int64_t Hkv, int64_t D, int pos0, int window) {
    test_attention_ring(B, T, Hq, Hkv, D, pos0, window, 0);
}

// The decode forms (kv_store_at, attention_at: RoPE folded in): B sequences at their own positions pos[b] in
// a cache of `cap`, T new tokens each. The reference: rope, kv_store and attention on the CPU, sequence by
// sequence at pos[b]. Against it: the CPU's _at ops, and on the device (a) the _at ops directly and (b) the
// same captured once as a CUDA graph at other positions, then replayed after the positions on the device
// were changed to pos[] (what makes a replayed decode step correct). q and k are inputs: never written.
static void test_decode_at(int64_t B, int64_t T, int64_t Hq, int64_t Hkv, int64_t D, int64_t cap, int window,
                           const int32_t *pos) {
    const int64_t sq[4] = {B, T, Hq, D}, sk[4] = {B, cap, Hkv, D}, skn[4] = {B, T, Hkv, D}, sf[1] = {D / 2};
    const int64_t sp[1] = {B}, nq = B * T * Hq * D, nk = B * cap * Hkv * D, nkn = B * T * Hkv * D;
    float *q = randn(nq, 0.0f, 1.0f), *kn = randn(nkn, 0.0f, 1.0f), *vn = randn(nkn, 0.0f, 1.0f);
    float *k = randn(nk, 0.0f, 1.0f), *v = randn(nk, 0.0f, 1.0f);
    float *freq = pn_malloc(sizeof(float) * (size_t)(D / 2));
    for (int64_t i = 0; i < D / 2; i++) freq[i] = (float)pow(1000000.0, -2.0 * (double)i / (double)D);
    int32_t *hpos = pn_malloc(sizeof(int32_t) * (size_t)B), *other = pn_malloc(sizeof(int32_t) * (size_t)B);
    for (int64_t b = 0; b < B; b++) hpos[b] = pos[b], other[b] = (int32_t)((pos[b] + 1) / 2); // capture here
    pn_tensor hf = host_view(freq, 1, sf), hp = pn_view(hpos, PN_I32, PN_CPU, 1, sp);

    // the reference, per sequence with the plain ops
    float *rq = copy_f32(q, nq), *rkn = copy_f32(kn, nkn), *rk = copy_f32(k, nk), *rv = copy_f32(v, nk);
    float *ro = pn_malloc(sizeof(float) * (size_t)nq);
    pn_tensor hq = host_view(rq, 4, sq), hkn = host_view(rkn, 4, skn), hvn = host_view(vn, 4, skn);
    pn_tensor hk = host_view(rk, 4, sk), hv = host_view(rv, 4, sk), ho = host_view(ro, 4, sq);
    for (int64_t b = 0; b < B; b++) {
        pn_tensor qb = pn_rows(&hq, b, 1), knb = pn_rows(&hkn, b, 1), vnb = pn_rows(&hvn, b, 1);
        pn_tensor kb = pn_rows(&hk, b, 1), vb = pn_rows(&hv, b, 1), ob = pn_rows(&ho, b, 1);
        pn_op_rope(&qb, &hf, pos[b], NULL);
        pn_op_rope(&knb, &hf, pos[b], NULL);
        pn_op_kv_store(&kb, &knb, pos[b]);
        pn_op_kv_store(&vb, &vnb, pos[b]);
        pn_op_attention(&ob, &qb, &kb, &vb, pos[b], window);
    }

    char name[160];
    snprintf(name, sizeof name, "B%lld T%lld Hq%lld Hkv%lld D%lld cap%lld win=%d pos0=%d", (long long)B, (long long)T,
             (long long)Hq, (long long)Hkv, (long long)D, (long long)cap, window, pos[0]);
    { // the CPU's _at ops
        float *cq = copy_f32(q, nq), *ckn = copy_f32(kn, nkn), *ck = copy_f32(k, nk), *cv = copy_f32(v, nk);
        float *co = pn_malloc(sizeof(float) * (size_t)nq);
        pn_tensor tq = host_view(cq, 4, sq), tkn = host_view(ckn, 4, skn), tk = host_view(ck, 4, sk);
        pn_tensor tv = host_view(cv, 4, sk), to = host_view(co, 4, sq);
        pn_op_kv_store_at(&tk, &tv, &tkn, &hvn, &hf, &hp);
        pn_op_attention_at(&to, &tq, &tk, &tv, &hf, &hp, window);
        report("attention_at (cpu)", name, relerr(co, ro, nq), 1e-6);
        report("kv_store_at (cpu)", name, relerr(ck, rk, nk) + relerr(cv, rv, nk), 1e-6);
        report("_at inputs untouched (cpu)", name, relerr(cq, q, nq) + relerr(ckn, kn, nkn), 0.0);
        free(cq), free(ckn), free(ck), free(cv), free(co);
    }
    float *sep[3] = {NULL, NULL, NULL}; // the two ops' out, k and v cache, direct: the fused op must equal them
    for (int variant = 0; variant < 4; variant++) {
        const int graph = variant & 1, fused = variant >> 1;
        pn_tensor dq = dev_upload(q, PN_BF16, 4, sq), dkn = dev_upload(kn, PN_BF16, 4, skn);
        pn_tensor dvn = dev_upload(vn, PN_BF16, 4, skn), dk = dev_upload(k, PN_BF16, 4, sk);
        pn_tensor dv = dev_upload(v, PN_BF16, 4, sk), df = dev_upload(freq, PN_F32, 1, sf);
        pn_tensor dout = dev_alloc(PN_BF16, 4, sq), dp = dev_alloc(PN_I32, 1, sp);
        const pn_backend *be = &pn_cuda_backend;
        be->memcpy_h2d(dp.data, graph ? other : hpos, sizeof(int32_t) * (size_t)B);
        void *g = NULL;
        if (graph) { // warm up (workspaces), then capture at other[] and replay at pos[]
            pn_tensor wq = dev_alloc(PN_BF16, 4, sq);
            pn_op_attention_at(&wq, &dq, &dk, &dv, &df, &dp, window);
            dev_free(&wq);
            if (be->capture_begin()) pn_panic("%s", pn_last_error());
        }
        if (fused) {
            pn_op_kv_attend_at(&dout, &dq, &dk, &dv, &dkn, &dvn, &df, &dp, window);
        } else {
            pn_op_kv_store_at(&dk, &dv, &dkn, &dvn, &df, &dp);
            pn_op_attention_at(&dout, &dq, &dk, &dv, &df, &dp, window);
        }
        if (graph) {
            if (!(g = be->capture_end())) pn_panic("%s", pn_last_error());
            be->memcpy_h2d(dp.data, hpos, sizeof(int32_t) * (size_t)B);
            be->graph_launch(g);
        }
        float *got = dev_download(&dout), *gotk = dev_download(&dk), *gotv = dev_download(&dv);
        float *gq = dev_download(&dq), *gkn = dev_download(&dkn);
        char what[64];
        const char *how = fused ? (graph ? " (fused, graph)" : " (fused)") : (graph ? " (graph)" : "");
        snprintf(what, sizeof what, "attention_at%s", how);
        report(what, name, relerr(got, ro, nq), 1e-2);
        snprintf(what, sizeof what, "kv_store_at%s", how);
        report(what, name, relerr(gotk, rk, nk) + relerr(gotv, rv, nk), 1e-2);
        snprintf(what, sizeof what, "_at inputs untouched%s", how);
        report(what, name, relerr(gq, q, nq) + relerr(gkn, kn, nkn), 0.0);
        if (variant == 0) {
            sep[0] = copy_f32(got, nq), sep[1] = copy_f32(gotk, nk), sep[2] = copy_f32(gotv, nk);
        } else if (fused) { // bit for bit the two ops: the output and both caches
            int64_t diff = 0;
            for (int64_t i = 0; i < nq; i++) diff += memcmp(&got[i], &sep[0][i], sizeof(float)) != 0;
            for (int64_t i = 0; i < nk; i++)
                diff += (memcmp(&gotk[i], &sep[1][i], sizeof(float)) != 0) + (memcmp(&gotv[i], &sep[2][i], sizeof(float)) != 0);
            snprintf(what, sizeof what, "kv_attend_at = 2 ops%s", graph ? " (graph)" : "");
            report(what, name, (double)diff, 0.0);
        }
        if (g) be->graph_free(g);
        dev_free(&dq), dev_free(&dkn), dev_free(&dvn), dev_free(&dk), dev_free(&dv), dev_free(&df);
        dev_free(&dout), dev_free(&dp);
        free(got), free(gotk), free(gotv), free(gq), free(gkn);
    }
    free(q), free(kn), free(vn), free(k), free(v), free(freq), free(hpos), free(other);
    free(rq), free(rkn), free(rk), free(rv), free(ro), free(sep[0]), free(sep[1]), free(sep[2]);
}

// ----------------------------------------------------------------------------------------------------
// timings

#define TIMED_RUNS 20
#define WARMUP_RUNS 3

// The attention anchor (B 8, T 4096, Hq 12, Hkv 2, D 128, causal), plus a spot check of its last 64 queries
// of batch 0, head 0 against the CPU (the longest rows: 4096 keys each).
static void bench_attention(void) {
    const int64_t B = 8, T = 4096, Hq = 12, Hkv = 2, D = 128;
    const int64_t sq[4] = {B, T, Hq, D}, sk[4] = {B, T, Hkv, D}, nq = B * T * Hq * D, nk = B * T * Hkv * D;
    float *q = randn(nq, 0.0f, 1.0f), *k = randn(nk, 0.0f, 1.0f), *v = randn(nk, 0.0f, 1.0f);
    pn_tensor dq = dev_upload(q, PN_BF16, 4, sq), dk = dev_upload(k, PN_BF16, 4, sk), dv = dev_upload(v, PN_BF16, 4, sk);
    pn_tensor dout = dev_alloc(PN_BF16, 4, sq);

    float ms[TIMED_RUNS];
    for (int i = 0; i < WARMUP_RUNS; i++) pn_op_attention(&dout, &dq, &dk, &dv, 0, 0);
    pn_cuda_backend.sync();
    for (int i = 0; i < TIMED_RUNS; i++) {
        pn_cuda_timer_start();
        pn_op_attention(&dout, &dq, &dk, &dv, 0, 0);
        ms[i] = pn_cuda_timer_stop_ms();
    }
    qsort(ms, TIMED_RUNS, sizeof(float), cmp_float);
    const double med = ms[TIMED_RUNS / 2], flops = 4.0 * B * Hq * (double)T * T * D / 2.0;
    printf("bench attention B8 T4096 Hq12 Hkv2 D128 causal: %.3f ms, %.1f TFLOP/s (anchor: SDPA 0.77 ms)\n", med,
           flops / (med * 1e-3) / 1e12);

    // Spot check: queries T-64 .. T-1 of batch 0, head 0 (kv head 0) on the CPU.
    float *got = dev_download(&dout);
    const int64_t Tc = 64;
    float *qc = pn_malloc(sizeof(float) * (size_t)(Tc * D)), *kc = pn_malloc(sizeof(float) * (size_t)(T * D));
    float *vc = pn_malloc(sizeof(float) * (size_t)(T * D)), *ref = pn_malloc(sizeof(float) * (size_t)(Tc * D));
    float *gc = pn_malloc(sizeof(float) * (size_t)(Tc * D));
    for (int64_t t = 0; t < Tc; t++)
        for (int64_t d = 0; d < D; d++) {
            qc[t * D + d] = q[((T - Tc + t) * Hq + 0) * D + d];
            gc[t * D + d] = got[((T - Tc + t) * Hq + 0) * D + d];
        }
    for (int64_t s = 0; s < T; s++)
        for (int64_t d = 0; d < D; d++) kc[s * D + d] = k[(s * Hkv + 0) * D + d], vc[s * D + d] = v[(s * Hkv + 0) * D + d];
    const int64_t scq[4] = {1, Tc, 1, D}, sck[4] = {1, T, 1, D};
    pn_tensor hq = host_view(qc, 4, scq), hk = host_view(kc, 4, sck), hv = host_view(vc, 4, sck);
    pn_tensor ho = host_view(ref, 4, scq);
    pn_op_attention(&ho, &hq, &hk, &hv, (int)(T - Tc), 0);
    report("attention", "anchor B8 T4096: last 64 queries of b0 h0", relerr(gc, ref, Tc * D), 1e-2);

    // Decode over the same cache: one new query per sequence at position T - 1.
    pn_tensor dq1 = pn_view(dq.data, PN_BF16, PN_CUDA, 4, (const int64_t[]){B, 1, Hq, D});
    pn_tensor do1 = pn_view(dout.data, PN_BF16, PN_CUDA, 4, (const int64_t[]){B, 1, Hq, D});
    for (int i = 0; i < WARMUP_RUNS; i++) pn_op_attention(&do1, &dq1, &dk, &dv, (int)(T - 1), 0);
    for (int i = 0; i < TIMED_RUNS; i++) {
        pn_cuda_timer_start();
        pn_op_attention(&do1, &dq1, &dk, &dv, (int)(T - 1), 0);
        ms[i] = pn_cuda_timer_stop_ms();
    }
    qsort(ms, TIMED_RUNS, sizeof(float), cmp_float);
    const double kv_bytes = 2.0 * B * T * Hkv * D * 2.0;
    printf("bench attention decode B8 ctx4096 Hq12 Hkv2 D128: %.3f ms, %.0f GB/s of K/V\n", ms[TIMED_RUNS / 2],
           kv_bytes / (ms[TIMED_RUNS / 2] * 1e-3) / 1e9);

    dev_free(&dq), dev_free(&dk), dev_free(&dv), dev_free(&dout);
    free(q), free(k), free(v), free(got), free(qc), free(kc), free(vc), free(ref), free(gc);
}

// Decode attention at device-held positions (attention_at, the graph path) over a full cache of ctx keys:
// the step's K/V bytes over its median time (PN_DECODE_SIMPLE=1: the simple kernel).
static void bench_decode_at(int64_t B, int64_t ctx, int64_t Hq, int64_t Hkv, int64_t D) {
    const int64_t sq[4] = {B, 1, Hq, D}, sk[4] = {B, ctx, Hkv, D}, sp[1] = {B};
    // random K/V up to 16M values per cache (the timing does not depend on them), zeros beyond
    const int big = B * ctx * Hkv * D > ((int64_t)16 << 20);
    float *q = randn(B * Hq * D, 0.0f, 1.0f), *k = big ? NULL : randn(B * ctx * Hkv * D, 0.0f, 1.0f);
    pn_tensor dq = dev_upload(q, PN_BF16, 4, sq);
    pn_tensor dk = big ? dev_alloc(PN_BF16, 4, sk) : dev_upload(k, PN_BF16, 4, sk);
    pn_tensor dv = big ? dev_alloc(PN_BF16, 4, sk) : dev_upload(k, PN_BF16, 4, sk);
    if (big) pn_cuda_backend.memset0(dk.data, pn_nbytes(&dk)), pn_cuda_backend.memset0(dv.data, pn_nbytes(&dv));
    pn_tensor dout = dev_alloc(PN_BF16, 4, sq), dp = dev_alloc(PN_I32, 1, sp);
    int32_t *pos = pn_malloc(sizeof(int32_t) * (size_t)B);
    for (int64_t b = 0; b < B; b++) pos[b] = (int32_t)(ctx - 1);
    pn_cuda_backend.memcpy_h2d(dp.data, pos, sizeof(int32_t) * (size_t)B);
    float ms[TIMED_RUNS];
    for (int i = 0; i < WARMUP_RUNS; i++) pn_op_attention_at(&dout, &dq, &dk, &dv, NULL, &dp, 0);
    for (int i = 0; i < TIMED_RUNS; i++) {
        pn_cuda_timer_start();
        pn_op_attention_at(&dout, &dq, &dk, &dv, NULL, &dp, 0);
        ms[i] = pn_cuda_timer_stop_ms();
    }
    qsort(ms, TIMED_RUNS, sizeof(float), cmp_float);
    const double kv_bytes = 2.0 * B * ctx * Hkv * D * 2.0;
    printf("bench attention_at decode B%lld ctx%lld Hq%lld Hkv%lld D%lld%s: %.3f ms, %.0f GB/s of K/V\n", (long long)B,
           (long long)ctx, (long long)Hq, (long long)Hkv, (long long)D, getenv("PN_DECODE_SIMPLE") ? " (simple kernel)" : "",
           ms[TIMED_RUNS / 2], kv_bytes / (ms[TIMED_RUNS / 2] * 1e-3) / 1e9);
    dev_free(&dq), dev_free(&dk), dev_free(&dv), dev_free(&dout), dev_free(&dp);
    free(q), free(k), free(pos);
}

static void bench_decode(void) { // Qwen2.5-1.5B's attention layer in decode, up to the paper's 64K context
    bench_decode_at(1, 640, 12, 2, 128);
    bench_decode_at(8, 4096, 12, 2, 128);
    bench_decode_at(1, 65536, 12, 2, 128);
    bench_decode_at(16, 65536, 12, 2, 128);
    bench_decode_at(37, 65536, 12, 2, 128);  // postnas-bench --batch max of Qwen2.5-1.5B on an H100
    bench_decode_at(156, 65536, 12, 2, 128); // ... and of Jet-Nemotron-2B's shape (its 2 attn layers)
}

static void bench_matmul(int64_t N, int64_t I, int64_t O) {
    const int64_t sx[2] = {N, I}, sw[2] = {O, I}, so[2] = {N, O};
    float *x = randn(N * I, 0.0f, 1.0f), *w = randn(O * I, 0.0f, 0.02f);
    pn_tensor dx = dev_upload(x, PN_BF16, 2, sx), dw = dev_upload(w, PN_BF16, 2, sw), dout = dev_alloc(PN_BF16, 2, so);
    float ms[TIMED_RUNS];
    for (int i = 0; i < WARMUP_RUNS; i++) pn_op_matmul(&dout, &dx, &dw, NULL);
    pn_cuda_backend.sync();
    for (int i = 0; i < TIMED_RUNS; i++) {
        pn_cuda_timer_start();
        pn_op_matmul(&dout, &dx, &dw, NULL);
        ms[i] = pn_cuda_timer_stop_ms();
    }
    qsort(ms, TIMED_RUNS, sizeof(float), cmp_float);
    const double med = ms[TIMED_RUNS / 2], flops = 2.0 * (double)N * I * O;
    const double bytes = 2.0 * ((double)O * I + (double)N * I + (double)N * O); // w, x, out
    printf("bench matmul [%lld,%lld]x[%lld,%lld]^T: %.3f ms, %.1f TFLOP/s, %.0f GB/s%s\n", (long long)N, (long long)I,
           (long long)O, (long long)I, med, flops / (med * 1e-3) / 1e12, bytes / (med * 1e-3) / 1e9,
           N <= 4 ? (getenv("PN_NO_GEMV") ? " (cuBLASLt)" : " (gemv)") : "");
    dev_free(&dx), dev_free(&dw), dev_free(&dout);
    free(x), free(w);
}

// ----------------------------------------------------------------------------------------------------

int main(void) {
    if (!pn_cuda_available()) {
        printf("skipped: no CUDA device\n");
        return 0;
    }
    if (getenv("PN_BENCH_DECODE_ONLY")) { // the decode attention timings alone (A/B with PN_DECODE_SIMPLE=1)
        bench_decode();
        return 0;
    }

    test_matmul(1, 1536, 1536, 0);
    test_matmul(1, 1536, 1536, 1);
    test_matmul(37, 896, 4864, 0);
    test_matmul(37, 896, 4864, 1);
    test_matmul(64, 256, 300, 1); // O * 2 bytes not a multiple of 16: less aligned output rows
    test_matmul(2, 8960, 1536, 1); // decode rows (N <= 4): the gemv kernel
    test_matmul(3, 96, 1000, 1);
    test_matmul(4, 1536, 151936, 0);
    test_matmul(1, 36, 300, 1); // I % 8 != 0: cuBLASLt
    test_matmul(2048, 1536, 8960, 0);
    test_matmul(2048, 1536, 8960, 1);

    test_rmsnorm(2, (const int64_t[]){37, 64}, 0);
    test_rmsnorm(2, (const int64_t[]){37, 128}, 0);
    test_rmsnorm(2, (const int64_t[]){37, 1536}, 0);
    test_rmsnorm(2, (const int64_t[]){37, 1536}, 1);
    test_rmsnorm(2, (const int64_t[]){5, 8192}, 0);
    test_rmsnorm(2, (const int64_t[]){9, 100}, 0); // scalar path
    test_rmsnorm(4, (const int64_t[]){2, 7, 3, 128}, 1); // per-head norm, in place

    test_rope(2, 9, 3, 64, 0);
    test_rope(2, 9, 3, 64, 1000);
    test_rope(2, 9, 3, 128, 0);
    test_rope(2, 9, 3, 128, 1000);

    test_swiglu(64, 8960);
    test_swiglu(7, 143); // scalar path
    test_add_rmsnorm(1, 1536); // decode, one block per row
    test_add_rmsnorm(37, 1536);
    test_add_rmsnorm(5, 896); // one warp per row
    test_add_rmsnorm(9, 100); // scalar path
    test_matmul_swiglu(1, 1536, 8960); // decode: one GEMV launch for gate and up (the Qwen2.5-1.5B MLP)
    test_matmul_swiglu(3, 896, 4864);
    test_matmul_swiglu(4, 2048, 300);
    test_matmul_swiglu(2, 36, 300); // I % 8 != 0: three ops through the workspace
    test_matmul_swiglu(37, 896, 4864); // many rows: three ops
    // the decode MLP with its norms (Qwen2.5-1.5B; a width normalized by one warp; 1032: by the block; an
    // unaligned width, many rows and a 64 KB input: the ops they fuse)
    test_add_rmsnorm_swiglu(1, 1536, 8960, 1);
    test_add_rmsnorm_swiglu(4, 896, 4864, 1);
    test_add_rmsnorm_swiglu(2, 1032, 300, 0);
    test_add_rmsnorm_swiglu(2, 36, 300, 1);
    test_add_rmsnorm_swiglu(37, 896, 4864, 1);
    test_add_rmsnorm_swiglu(4, 8192, 64, 1);
    test_matmul_add_rmsnorm(1, 8960, 1536, 1);
    test_matmul_add_rmsnorm(4, 4864, 896, 1);
    test_matmul_add_rmsnorm(3, 256, 1032, 0);
    test_matmul_add_rmsnorm(2, 36, 40, 1);
    test_matmul_add_rmsnorm(37, 896, 896, 1);
    // attention's q, k, v (Qwen2.5-1.5B, biased), a JetBlock's six projections (Jet-Nemotron-2B), GDN's five
    // at a small width, an unaligned width and many rows (the products one by one)
    test_matmul_multi(1, 1536, 3, (const int64_t[]){1536, 256, 256}, 1, 0);
    test_matmul_multi(4, 896, 3, (const int64_t[]){896, 128, 128}, 1, 0);
    test_matmul_multi(1, 1536, 6, (const int64_t[]){1152, 1152, 3072, 192, 12, 12}, 0, 0);
    // JetBlock (Jet-Nemotron-2B): q, k and the kernel generator input through SiLU in the same launch
    test_matmul_multi(1, 1536, 6, (const int64_t[]){1152, 1152, 3072, 192, 12, 12}, 0, 1u << 0 | 1u << 1 | 1u << 3);
    test_matmul_multi(3, 256, 5, (const int64_t[]){128, 128, 256, 4, 4}, 0, 0);
    test_matmul_multi(2, 36, 3, (const int64_t[]){40, 8, 8}, 1, 0);
    test_matmul_multi(37, 896, 3, (const int64_t[]){896, 128, 128}, 1, 0);
    test_matmul_multi(37, 896, 3, (const int64_t[]){896, 128, 128}, 1, 5); // not a GEMV: matmuls, then silu
    test_add(37, 1536);
    test_add(7, 143);
    test_embedding(1000, 1536, 37);
    test_embedding(50, 100, 9);
    test_kv_store(2, 50, 2, 64, 7, 13);
    test_kv_store(2, 50, 2, 64, 1, 49);

    // (B, T, Hq, Hkv, D, pos0, window)
    test_attention(1, 1, 12, 2, 128, 100, 0);  // decode
    test_attention(2, 37, 4, 2, 64, 0, 0);     // short prefill: simple kernel
    test_attention(1, 200, 4, 1, 128, 0, 0);   // flash, partial last query block
    test_attention(2, 256, 12, 2, 128, 0, 0);  // flash
    test_attention(1, 300, 6, 2, 64, 0, 64);   // flash, sliding window
    test_attention(1, 64, 4, 4, 128, 130, 0);  // flash over a prefix cache
    test_attention(1, 5, 2, 1, 96, 7, 0);      // D = 96: simple kernel
    test_attention(2, 1, 12, 2, 128, 3000, 0); // decode over a long cache (many key chunks)
    test_attention(1, 1, 4, 2, 64, 300, 128);  // decode with a window
    test_attention(1, 1, 4, 2, 64, 3000, 1000); // decode, window, split over keys
    test_attention(1, 8, 4, 2, 128, 2000, 0);  // short chunk over a long cache, split over keys
    test_attention(1, 100, 4, 2, 128, 50, 32); // flash, window and prefix
    test_attention(1, 130, 2, 1, 64, 3, 0);    // flash, D = 64, partial blocks
    test_attention(1, 40, 2, 2, 256, 10, 0);   // D = 256: simple kernel
    // (B, T, Hq, Hkv, D, cap, window, positions): sequences at different positions, short and long caches
    test_decode_at(3, 1, 12, 2, 128, 4096, 0, (const int32_t[]){0, 37, 3000});
    // Qwen2.5-1.5B's decode at batch 1 and 2 in a long cache: the launch is sized for the cache (33 and 17
    // slices) and each row uses what its length needs (11 of 33 at 640 keys, 6 in the graph captured at 320;
    // 11 and all 17 in one launch)
    test_decode_at(1, 1, 12, 2, 128, 8192, 0, (const int32_t[]){640});
    test_decode_at(2, 1, 12, 2, 128, 8192, 0, (const int32_t[]){640, 5000});
    test_decode_at(2, 1, 4, 2, 64, 2000, 300, (const int32_t[]){1999, 250});
    // the decode kernel (a GQA group per block, one m16 tile): the paper's 64K context (132 slices at batch 1
    // on an H100), a window of Jet-Nemotron's swa, groups of 8, 1 and 16 query heads, and 32 (more than a
    // tile's rows: the simple kernel)
    test_decode_at(1, 1, 12, 2, 128, 65536, 0, (const int32_t[]){65000});
    test_decode_at(2, 1, 12, 2, 128, 4096, 1152, (const int32_t[]){4000, 700});
    test_decode_at(3, 1, 16, 2, 128, 3000, 0, (const int32_t[]){2999, 64, 1});
    test_decode_at(2, 1, 4, 4, 64, 5000, 0, (const int32_t[]){4321, 65});
    test_decode_at(1, 1, 32, 2, 64, 3000, 0, (const int32_t[]){2500});
    test_decode_at(1, 1, 32, 1, 64, 2000, 0, (const int32_t[]){1500});
    // sliding-window caches as rings (positions past the slots wrap): decode kernel, simple kernel (D 96),
    // and prefill chunks through the flash kernel (T >= 64) and the simple one
    test_decode_at(2, 1, 12, 2, 128, 1216, 1152, (const int32_t[]){4000, 700});
    test_decode_at(2, 1, 4, 1, 96, 320, 300, (const int32_t[]){1000, 50});
    test_attention_ring(1, 128, 12, 2, 128, 3000, 1152, 1344);
    test_attention_ring(2, 100, 4, 2, 64, 500, 200, 320);
    test_attention_ring(1, 5, 4, 2, 128, 7000, 1152, 1216);
    test_decode_at(1, 1, 16, 8, 64, 64, 0, (const int32_t[]){63});
    test_decode_at(2, 3, 4, 1, 96, 700, 0, (const int32_t[]){5, 600});
    test_decode_at(2, 1, 4, 2, 12, 900, 0, (const int32_t[]){3, 800}); // D = 12: one value per load
    test_attention(1, 70, 4, 2, 12, 0, 0);    // D = 12 prefill (Jet-Nemotron's shrunk test configs)
    test_attention(2, 1, 4, 2, 12, 500, 0);   // D = 12 decode, split over keys

    if (!getenv("PN_TEST_NO_BENCH")) { // set it to skip the timings (e.g. under compute-sanitizer)
        bench_attention();
        bench_decode();
        bench_matmul(8192, 1536, 8960);
        // decode's products (batch 1 and 4): Qwen2.5-1.5B's MLP up / down and the LM head
        bench_matmul(1, 1536, 8960);
        bench_matmul(1, 8960, 1536);
        bench_matmul(1, 1536, 151936);
        bench_matmul(4, 1536, 8960);
    }

    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
