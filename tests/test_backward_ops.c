// The CPU backward ops of the model's pieces (RMSNorm, gated RMSNorm, SwiGLU, linear) against torch
// autograd goldens (tests/make_backward_goldens.py). Parameter gradients accumulate: each is run twice on a
// zeroed buffer and must come out doubled, so a missing += (or a stray =) fails.
//
// usage: test_backward_ops GOLDENS_DIR
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/cpu/cpu.h"
#include "../src/pn_common.h"
#include "../src/pn_safetensors.h"
#include "pn_test.h"

static pn_safetensors st;

static float *get(const char *name) {
    const pn_st_entry *e = pn_st_find(&st, name);
    PN_ASSERT(e != NULL);
    float *x = pn_malloc(sizeof(float) * (size_t)pn_st_numel(e));
    pn_st_to_f32(&st, e, x);
    return x;
}

static void expect(const char *what, const float *a, const float *ref, size_t n, double scale) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) num += ((double)a[i] - scale * ref[i]) * ((double)a[i] - scale * ref[i]), den += scale * scale * (double)ref[i] * ref[i];
    double e = sqrt(num / (den > 0 ? den : 1));
    printf("  %-16s rel err %.2e\n", what, e);
    CHECK(e < 1e-6, "%s: %.3g", what, e);
}

int main(int argc, char **argv) {
    char *path = pn_path_join(argc > 1 ? argv[1] : "tests/goldens/backward", "ops.safetensors");
    if (pn_st_open(&st, path)) {
        fprintf(stderr, "%s\n", pn_last_error());
        return 1;
    }
    free(path);
    { // RMSNorm [7, 24]
        float *x = get("rms_x"), *w = get("rms_w"), *dy = get("rms_dy"), *dx_ref = get("rms_dx"), *dw_ref = get("rms_dw");
        float dx[7 * 24], dw[24] = {0};
        pn_cpu_rmsnorm_bwd_f32(dx, dw, dy, x, w, 7, 24, 1e-6f, 0);
        pn_cpu_rmsnorm_bwd_f32(dx, dw, dy, x, w, 7, 24, 1e-6f, 0);
        printf("rmsnorm\n");
        expect("dx", dx, dx_ref, 7 * 24, 1);
        expect("dw (twice)", dw, dw_ref, 24, 2);
        pn_cpu_rmsnorm_bwd_f32(dx, NULL, dy, x, w, 7, 24, 1e-6f, 1); // the residual's add: dx += the gradient
        expect("dx (accumulated)", dx, dx_ref, 7 * 24, 2);
        free(x), free(w), free(dy), free(dx_ref), free(dw_ref);
    }
    { // gated RMSNorm [9, 16]
        float *x = get("grms_x"), *g = get("grms_g"), *w = get("grms_w"), *dy = get("grms_dy"), *y_ref = get("grms_y");
        float *dx_ref = get("grms_dx"), *dg_ref = get("grms_dg"), *dw_ref = get("grms_dw");
        float y[9 * 16], dx[9 * 16], dg[9 * 16], dw[16] = {0};
        pn_cpu_gated_rmsnorm_fwd(y, x, g, w, 9, 16, 1e-5f);
        pn_cpu_gated_rmsnorm_bwd_f32(dx, dg, dw, dy, x, g, w, 9, 16, 1e-5f);
        pn_cpu_gated_rmsnorm_bwd_f32(dx, dg, dw, dy, x, g, w, 9, 16, 1e-5f);
        printf("gated rmsnorm\n");
        expect("y", y, y_ref, 9 * 16, 1);
        expect("dx", dx, dx_ref, 9 * 16, 1);
        expect("dg", dg, dg_ref, 9 * 16, 1);
        expect("dw (twice)", dw, dw_ref, 16, 2);
        free(x), free(g), free(w), free(dy), free(y_ref), free(dx_ref), free(dg_ref), free(dw_ref);
    }
    { // SwiGLU [5, 12]
        float *gate = get("swi_gate"), *up = get("swi_up"), *dy = get("swi_dy"), *dg_ref = get("swi_dgate"), *du_ref = get("swi_dup");
        float dg[60], du[60];
        pn_cpu_swiglu_bwd_f32(dg, du, dy, gate, up, 60);
        printf("swiglu\n");
        expect("dgate", dg, dg_ref, 60, 1);
        expect("dup", du, du_ref, 60, 1);
        free(gate), free(up), free(dy), free(dg_ref), free(du_ref);
    }
    { // linear [6, 10] x [7, 10]^T + [7]
        float *x = get("lin_x"), *w = get("lin_w"), *dy = get("lin_dy"), *dx_ref = get("lin_dx"), *dw_ref = get("lin_dw"), *db_ref = get("lin_db");
        float dx[60], dw[70] = {0}, db[7] = {0};
        pn_cpu_matmul_bwd_f32(dx, dw, db, dy, x, w, 6, 10, 7);
        pn_cpu_matmul_bwd_f32(dx, dw, db, dy, x, w, 6, 10, 7);
        printf("linear\n");
        expect("dx", dx, dx_ref, 60, 1);
        expect("dw (twice)", dw, dw_ref, 70, 2);
        expect("db (twice)", db, db_ref, 7, 2);
        free(x), free(w), free(dy), free(dx_ref), free(dw_ref), free(db_ref);
    }
    pn_st_close(&st);
    return pn_test_done("test_backward_ops");
}
