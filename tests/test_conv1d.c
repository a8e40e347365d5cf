// Causal depthwise convolutions (kernels/cpu/conv1d.c) against torch autograd goldens
// (tests/make_conv_goldens.py: nn.Conv1d as fla's ShortConvolution uses it, and JetBlock's dynamic
// convolution), plus variable-length packing: a packed batch equals the sequences run one by one, so no
// token reads across a boundary, forward and backward; and generation's conv1d_continue against conv1d.
//
// usage: test_conv1d GOLDENS_DIR
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/cpu/cpu.h"
#include "../src/pn_common.h"
#include "../src/pn_rng.h"
#include "../src/pn_safetensors.h"
#include "pn_test.h"

static double rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), den += (double)b[i] * b[i];
    return sqrt(num / (den > 0 ? den : 1));
}

static float *get(pn_safetensors *st, const char *name, size_t *n, int64_t *shape) {
    const pn_st_entry *e = pn_st_find(st, name);
    if (!e) return NULL;
    *n = (size_t)pn_st_numel(e);
    if (shape) memcpy(shape, e->shape, sizeof(int64_t) * (size_t)e->ndim);
    float *x = pn_malloc(sizeof(float) * *n);
    pn_st_to_f32(st, e, x);
    return x;
}

static void check_golden(const char *dir, const char *name) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, name);
    pn_safetensors st;
    if (pn_st_open(&st, path)) {
        CHECK(0, "%s", pn_last_error());
        return;
    }
    const int W = atoi(pn_st_meta(&st, "W")), dyn = atoi(pn_st_meta(&st, "dynamic")), act = atoi(pn_st_meta(&st, "silu"));
    size_t nx = 0, n = 0;
    int64_t sh[4] = {0, 0, 0, 0};
    float *x = get(&st, "x", &nx, sh), *dy = get(&st, "dy", &n, NULL), *yref = get(&st, "y", &n, NULL);
    float *dxref = get(&st, "dx", &n, NULL), *w = get(&st, "w", &n, NULL), *bias = get(&st, "bias", &n, NULL);
    float *k = get(&st, "k", &n, NULL), *dwref = get(&st, "dw", &n, NULL), *dbref = get(&st, "dbias", &n, NULL);
    float *dkref = get(&st, "dk", &n, NULL);
    const int64_t B = sh[0], T = sh[1], C = sh[2];
    float *y = pn_malloc(sizeof(float) * nx), *dx = pn_malloc(sizeof(float) * nx);
    float *dw = pn_calloc((size_t)(C * W), sizeof(float)), *db = pn_calloc((size_t)C, sizeof(float));
    float *dk = dyn ? pn_malloc(sizeof(float) * nx * (size_t)W) : NULL;
    pn_cpu_conv1d_fwd(y, x, w, bias, k, B, T, C, W, act, NULL, 0);
    pn_cpu_conv1d_bwd_f32(dx, dyn ? NULL : dw, bias ? db : NULL, dk, dy, x, w, bias, k, B, T, C, W, act, NULL, 0);
    double ey = rel_err(y, yref, nx), ex = rel_err(dx, dxref, nx);
    double ew = dyn ? rel_err(dk, dkref, nx * (size_t)W) : rel_err(dw, dwref, (size_t)(C * W));
    double eb = bias ? rel_err(db, dbref, (size_t)C) : 0;
    printf("%-13s W %d %s  y %.1e  dx %.1e  %s %.1e  dbias %.1e\n", name, W, dyn ? "dynamic" : "static ", ey, ex,
           dyn ? "dk" : "dw", ew, eb);
    CHECK(ey < 1e-6 && ex < 1e-6 && ew < 1e-6 && eb < 1e-6, "%s", name);
    float *all[] = {x, dy, yref, dxref, w, bias, k, dwref, dbref, dkref, y, dx, dw, db, dk};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free(all[i]);
    pn_st_close(&st);
}

// Three sequences packed into one row with cu_seqlens equal three separate runs, forward and backward.
static void check_varlen(int dynamic) {
    const int32_t cu[4] = {0, 2, 7, 13};
    const int64_t T = 13, C = 3;
    const int W = 4;
    float x[13 * 3], dy[13 * 3], w[3 * 4], bias[3], kd[13 * 3 * 4];
    for (int i = 0; i < 39; i++) x[i] = pn_rng_normal(1, 1, (uint64_t)i), dy[i] = pn_rng_normal(1, 2, (uint64_t)i);
    for (int i = 0; i < 12; i++) w[i] = pn_rng_normal(1, 3, (uint64_t)i);
    for (int i = 0; i < 156; i++) kd[i] = pn_rng_normal(1, 5, (uint64_t)i);
    for (int i = 0; i < 3; i++) bias[i] = pn_rng_normal(1, 4, (uint64_t)i);
    const float *kk = dynamic ? kd : NULL;
    float y[39], dx[39], dw[12] = {0}, db[3] = {0}, dk[156];
    pn_cpu_conv1d_fwd(y, x, w, bias, kk, 1, T, C, W, 1, cu, 3);
    pn_cpu_conv1d_bwd_f32(dx, dynamic ? NULL : dw, db, dynamic ? dk : NULL, dy, x, w, bias, kk, 1, T, C, W, 1, cu, 3);
    float y2[39], dx2[39], dw2[12] = {0}, db2[3] = {0}, dk2[156];
    for (int s = 0; s < 3; s++) {
        const int64_t o = cu[s], L = cu[s + 1] - cu[s];
        pn_cpu_conv1d_fwd(y2 + o * C, x + o * C, w, bias, dynamic ? kd + o * C * W : NULL, 1, L, C, W, 1, NULL, 0);
        pn_cpu_conv1d_bwd_f32(dx2 + o * C, dynamic ? NULL : dw2, db2, dynamic ? dk2 + o * C * W : NULL, dy + o * C,
                          x + o * C, w, bias, dynamic ? kd + o * C * W : NULL, 1, L, C, W, 1, NULL, 0);
    }
    CHECK(!memcmp(y, y2, sizeof y) && !memcmp(dx, dx2, sizeof dx), "varlen (%s) differs from separate runs",
          dynamic ? "dynamic" : "static");
    CHECK(rel_err(dw, dw2, 12) < 1e-6 && rel_err(db, db2, 3) < 1e-6 && (!dynamic || !memcmp(dk, dk2, sizeof dk)),
          "varlen (%s) parameter gradients differ", dynamic ? "dynamic" : "static");
}

// conv1d_continue (generation): B sequences with a history of W - 1 inputs each take T new ones; equal bit for
// bit to conv1d over history + new rows (its last T outputs), the cache ends as the last W - 1 of those rows,
// and continuing T1 then T2 tokens equals continuing T1 + T2 at once.
static void check_continue(int dynamic, int64_t T, int W) {
    const int64_t B = 3, C = 5, H = W - 1, E = H + T;
    float *cache = pn_malloc(sizeof(float) * (size_t)(B * H * C + 1)), *x = pn_malloc(sizeof(float) * (size_t)(B * T * C));
    float *w = pn_malloc(sizeof(float) * (size_t)(C * W)), *kd = pn_malloc(sizeof(float) * (size_t)(B * T * C * W));
    for (int64_t i = 0; i < B * H * C; i++) cache[i] = pn_rng_normal(2, 1, (uint64_t)i);
    for (int64_t i = 0; i < B * T * C; i++) x[i] = pn_rng_normal(2, 2, (uint64_t)i);
    for (int64_t i = 0; i < C * W; i++) w[i] = pn_rng_normal(2, 3, (uint64_t)i);
    for (int64_t i = 0; i < B * T * C * W; i++) kd[i] = pn_rng_normal(2, 4, (uint64_t)i);
    const float *kk = dynamic ? kd : NULL;
    // the reference: each sequence's history and new rows as one sequence through conv1d
    float *ext = pn_malloc(sizeof(float) * (size_t)(E * C)), *kext = pn_calloc((size_t)(E * C * W), sizeof(float));
    float *yext = pn_malloc(sizeof(float) * (size_t)(E * C)), *yref = pn_malloc(sizeof(float) * (size_t)(B * T * C));
    float *cref = pn_malloc(sizeof(float) * (size_t)(B * H * C + 1));
    for (int64_t b = 0; b < B; b++) {
        memcpy(ext, cache + b * H * C, sizeof(float) * (size_t)(H * C));
        memcpy(ext + H * C, x + b * T * C, sizeof(float) * (size_t)(T * C));
        memcpy(kext + H * C * W, kd + b * T * C * W, sizeof(float) * (size_t)(T * C * W));
        pn_cpu_conv1d_fwd(yext, ext, w, NULL, dynamic ? kext : NULL, 1, E, C, W, 1, NULL, 0);
        memcpy(yref + b * T * C, yext + H * C, sizeof(float) * (size_t)(T * C));
        memcpy(cref + b * H * C, ext + T * C, sizeof(float) * (size_t)(H * C));
    }
    float *y = pn_malloc(sizeof(float) * (size_t)(B * T * C)), *c1 = pn_malloc(sizeof(float) * (size_t)(B * H * C + 1));
    memcpy(c1, cache, sizeof(float) * (size_t)(B * H * C));
    pn_cpu_conv1d_continue_f32(y, c1, x, w, kk, B, T, C, W, 1);
    CHECK(!memcmp(y, yref, sizeof(float) * (size_t)(B * T * C)) && !memcmp(c1, cref, sizeof(float) * (size_t)(B * H * C)),
          "conv1d_continue (%s, T %lld, W %d) differs from conv1d over history + new rows", dynamic ? "dynamic" : "static",
          (long long)T, W);
    if (T >= 2) { // T1 = 1 then T2 = T - 1 (per-sequence slices of x and kd, gathered)
        const int64_t T1 = 1, T2 = T - 1;
        float *x1 = pn_malloc(sizeof(float) * (size_t)(B * T1 * C)), *x2 = pn_malloc(sizeof(float) * (size_t)(B * T2 * C));
        float *k1 = pn_malloc(sizeof(float) * (size_t)(B * T1 * C * W)), *k2 = pn_malloc(sizeof(float) * (size_t)(B * T2 * C * W));
        float *y1 = pn_malloc(sizeof(float) * (size_t)(B * T1 * C)), *y2 = pn_malloc(sizeof(float) * (size_t)(B * T2 * C));
        for (int64_t b = 0; b < B; b++) {
            memcpy(x1 + b * T1 * C, x + b * T * C, sizeof(float) * (size_t)(T1 * C));
            memcpy(x2 + b * T2 * C, x + (b * T + T1) * C, sizeof(float) * (size_t)(T2 * C));
            memcpy(k1 + b * T1 * C * W, kd + b * T * C * W, sizeof(float) * (size_t)(T1 * C * W));
            memcpy(k2 + b * T2 * C * W, kd + (b * T + T1) * C * W, sizeof(float) * (size_t)(T2 * C * W));
        }
        memcpy(c1, cache, sizeof(float) * (size_t)(B * H * C));
        pn_cpu_conv1d_continue_f32(y1, c1, x1, w, dynamic ? k1 : NULL, B, T1, C, W, 1);
        pn_cpu_conv1d_continue_f32(y2, c1, x2, w, dynamic ? k2 : NULL, B, T2, C, W, 1);
        int same = !memcmp(c1, cref, sizeof(float) * (size_t)(B * H * C));
        for (int64_t b = 0; b < B; b++)
            same = same && !memcmp(y1 + b * T1 * C, yref + b * T * C, sizeof(float) * (size_t)(T1 * C)) &&
                   !memcmp(y2 + b * T2 * C, yref + (b * T + T1) * C, sizeof(float) * (size_t)(T2 * C));
        CHECK(same, "conv1d_continue (%s, W %d): 1 then %lld tokens differ from %lld at once", dynamic ? "dynamic" : "static",
              W, (long long)T2, (long long)T);
        free(x1), free(x2), free(k1), free(k2), free(y1), free(y2);
    }
    free(cache), free(x), free(w), free(kd), free(ext), free(kext), free(yext), free(yref), free(cref), free(y), free(c1);
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "tests/goldens/conv";
    static const char *cases[] = {"static_silu", "static_bias", "static_t1", "dynamic_silu", "dynamic_w3"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_golden(dir, cases[i]);
    check_varlen(0);
    check_varlen(1);
    for (int dyn = 0; dyn < 2; dyn++) {
        check_continue(dyn, 1, 4); // decoding
        check_continue(dyn, 2, 4); // fewer new rows than the history
        check_continue(dyn, 7, 4); // more
        check_continue(dyn, 3, 1); // no history
    }
    return pn_test_done("test_conv1d");
}
