// Causal depthwise convolutions (kernels/cpu/conv1d.c) against torch autograd goldens
// (tests/make_conv_goldens.py: nn.Conv1d as fla's ShortConvolution uses it, and JetBlock's dynamic
// convolution), plus variable-length packing: a packed batch equals the sequences run one by one, so no
// token reads across a boundary, forward and backward.
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

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "tests/goldens/conv";
    static const char *cases[] = {"static_silu", "static_bias", "static_t1", "dynamic_silu", "dynamic_w3"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) check_golden(dir, cases[i]);
    check_varlen(0);
    check_varlen(1);
    return pn_test_done("test_conv1d");
}
