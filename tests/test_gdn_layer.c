// The Gated DeltaNet layer forward on the CPU (src/blocks/gdn_cpu.c) against a torch float64 peer of fla's
// GatedDeltaNet (tests/make_gdn_layer_goldens.py), plus: variable-length packing (two sequences packed
// with cu_seqlens equal separate runs), `deltanet` equal to `gdn` with zero decay (A_log = -inf), and
// refusal of bad configs. The backward (pn_gdn_layer_backward_cpu) against torch float64 autograd's dx and
// parameter gradients ("dx", "grad.<name>" for the golden's dy), accumulation (+=) into dparams, NULL
// dparams entries skipped, and varlen backward equal to separate runs.
//
// usage: test_gdn_layer [GOLDENS_DIR]
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "oracles/gdn_cpu.h"
#include "../src/pn_block.h"
#include "../src/pn_common.h"
#include "../src/pn_safetensors.h"
#include "pn_test.h"

#define NP 13 // gdn's parameter count

static double rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), den += (double)b[i] * b[i];
    return sqrt(num / (den > 0 ? den : 1));
}

// A tensor as fp32, checking its element count when want > 0.
static float *get(pn_safetensors *st, const char *name, int64_t want) {
    const pn_st_entry *e = pn_st_find(st, name);
    if (!e) {
        CHECK(0, "%s missing from the golden", name);
        return NULL;
    }
    const int64_t n = pn_st_numel(e);
    if (want > 0 && n != want) {
        CHECK(0, "%s has %lld elements, the block says %lld", name, (long long)n, (long long)want);
        return NULL;
    }
    float *x = pn_malloc(sizeof(float) * (size_t)n);
    pn_st_to_f32(st, e, x);
    return x;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "tests/goldens/gdn_layer";
    char path[512];
    snprintf(path, sizeof path, "%s/gdn_layer.safetensors", dir);
    pn_safetensors st;
    if (pn_st_open(&st, path)) {
        CHECK(0, "%s", pn_last_error());
        return pn_test_done("test_gdn_layer");
    }
    pn_block_cfg c;
    memset(&c, 0, sizeof c);
    strcpy(c.type, "gdn");
    c.hidden = atoi(pn_st_meta(&st, "hidden"));
    c.lin_heads = atoi(pn_st_meta(&st, "heads"));
    c.lin_head_k = atoi(pn_st_meta(&st, "head_k"));
    c.expand_v = atof(pn_st_meta(&st, "expand_v"));
    c.conv_size = atoi(pn_st_meta(&st, "conv"));
    c.norm_eps = (float)atof(pn_st_meta(&st, "eps"));

    // Parameters by the block's own list (names and order of src/blocks/gdn.c).
    const pn_block_type *bt = pn_block_find("gdn");
    pn_param pl[NP];
    if (!bt || bt->params(&c, 0, NULL) != NP) {
        CHECK(0, "gdn should have %d parameters", NP);
        return pn_test_done("test_gdn_layer");
    }
    bt->params(&c, 0, pl);
    const char *prefix = "model.layers.0.self_attn.";
    float *p[NP] = {0};
    int ok = 1;
    for (int i = 0; i < NP; i++) {
        CHECK(!strncmp(pl[i].name, prefix, strlen(prefix)), "parameter name %s", pl[i].name);
        p[i] = get(&st, pl[i].name + strlen(prefix), pn_param_numel(&pl[i]));
        ok &= p[i] != NULL;
    }
    const pn_st_entry *ex = pn_st_find(&st, "x");
    float *x = get(&st, "x", 0), *yref = get(&st, "y", 0);
    if (!ok || !x || !yref || !ex || ex->ndim != 3) {
        CHECK(0, "golden incomplete");
        return pn_test_done("test_gdn_layer");
    }
    const int64_t B = ex->shape[0], T = ex->shape[1], Hd = ex->shape[2], n = B * T * Hd;
    float *y = pn_malloc(sizeof(float) * (size_t)n);

    // 1. The golden.
    CHECK(pn_gdn_layer_forward_cpu(&c, (const float *const *)p, x, y, B, T, NULL, 0) == 0, "%s", pn_last_error());
    const double e = rel_err(y, yref, (size_t)n);
    printf("gdn layer B %lld T %lld hidden %lld: rel err vs torch float64 %.2e\n", (long long)B, (long long)T,
           (long long)Hd, e);
    CHECK(e <= 1e-5, "rel err %.3e", e);

    // 2. Varlen: sequence 0 whole (T tokens) and the first L1 tokens of sequence 1, packed into one row.
    const int64_t L1 = 33, Tp = T + L1;
    const int32_t cu[3] = {0, (int32_t)T, (int32_t)Tp};
    float *xp = pn_malloc(sizeof(float) * (size_t)(Tp * Hd)), *yp = pn_malloc(sizeof(float) * (size_t)(Tp * Hd));
    float *ys = pn_malloc(sizeof(float) * (size_t)(Tp * Hd));
    memcpy(xp, x, sizeof(float) * (size_t)(T * Hd));
    memcpy(xp + T * Hd, x + T * Hd, sizeof(float) * (size_t)(L1 * Hd));
    CHECK(pn_gdn_layer_forward_cpu(&c, (const float *const *)p, xp, yp, 1, Tp, cu, 2) == 0, "%s", pn_last_error());
    CHECK(pn_gdn_layer_forward_cpu(&c, (const float *const *)p, xp, ys, 1, T, NULL, 0) == 0, "%s", pn_last_error());
    CHECK(pn_gdn_layer_forward_cpu(&c, (const float *const *)p, xp + T * Hd, ys + T * Hd, 1, L1, NULL, 0) == 0, "%s",
          pn_last_error());
    const double ev = rel_err(yp, ys, (size_t)(Tp * Hd));
    const int same = !memcmp(yp, ys, sizeof(float) * (size_t)(Tp * Hd));
    printf("varlen (%lld + %lld packed) vs separate runs: rel err %.2e%s\n", (long long)T, (long long)L1, ev,
           same ? " (bitwise equal)" : "");
    CHECK(ev <= 1e-6, "varlen rel err %.3e", ev);
    // and the packed sequence 0 matches the golden's batch row 0
    const double e0 = rel_err(yp, yref, (size_t)(T * Hd));
    CHECK(e0 <= 1e-5, "varlen sequence 0 vs golden %.3e", e0);

    // 3. deltanet = gdn with A_log = -inf (g = -0 * softplus(.) = 0).
    {
        float ninf[8];
        for (int i = 0; i < 8; i++) ninf[i] = -INFINITY;
        const float *pg[NP];
        for (int i = 0; i < NP; i++) pg[i] = p[i];
        pg[5] = ninf; // A_log
        const float *pd[NP - 3] = {p[0], p[1], p[2], p[4], p[7], p[8], p[9], p[10], p[11], p[12]};
        pn_block_cfg cd = c;
        strcpy(cd.type, "deltanet");
        float *yg = pn_malloc(sizeof(float) * (size_t)n), *yd = pn_malloc(sizeof(float) * (size_t)n);
        CHECK(c.lin_heads <= 8, "heads");
        CHECK(pn_gdn_layer_forward_cpu(&c, pg, x, yg, B, T, NULL, 0) == 0, "%s", pn_last_error());
        CHECK(pn_gdn_layer_forward_cpu(&cd, pd, x, yd, B, T, NULL, 0) == 0, "%s", pn_last_error());
        const double ed = rel_err(yd, yg, (size_t)n);
        CHECK(ed <= 1e-6, "deltanet vs gdn(A_log=-inf) %.3e", ed);
        CHECK(rel_err(yd, yref, (size_t)n) > 1e-3, "decay had no effect");
        free(yg);
        free(yd);
    }

    // 4. Refusals, before touching y.
    {
        pn_block_cfg bad = c;
        bad.lin_heads = 0;
        CHECK_ERR(pn_gdn_layer_forward_cpu(&bad, (const float *const *)p, x, y, B, T, NULL, 0), "num_heads");
        bad = c;
        bad.conv_size = 0;
        CHECK_ERR(pn_gdn_layer_forward_cpu(&bad, (const float *const *)p, x, y, B, T, NULL, 0), "conv_size");
        bad = c;
        strcpy(bad.type, "attn");
        CHECK_ERR(pn_gdn_layer_forward_cpu(&bad, (const float *const *)p, x, y, B, T, NULL, 0), "not gdn");
        CHECK_ERR(pn_gdn_layer_forward_cpu(&c, (const float *const *)p, x, y, B, T, cu, 2), "gdn");
        const int32_t cubad[3] = {0, 80, 60};
        CHECK_ERR(pn_gdn_layer_forward_cpu(&c, (const float *const *)p, xp, yp, 1, Tp, cubad, 2), "cu_seqlens");
    }

    // 5. Backward vs torch float64 autograd.
    {
        float *dy = get(&st, "dy", n), *dxref = get(&st, "dx", n);
        float *gref[NP] = {0}, *dp[NP] = {0};
        int gok = dy && dxref;
        char nm[256];
        for (int i = 0; i < NP; i++) {
            snprintf(nm, sizeof nm, "grad.%s", pl[i].name + strlen(prefix));
            gref[i] = get(&st, nm, pn_param_numel(&pl[i]));
            dp[i] = pn_calloc((size_t)pn_param_numel(&pl[i]), sizeof(float));
            gok &= gref[i] != NULL;
        }
        float *dx = pn_malloc(sizeof(float) * (size_t)n);
        if (gok) {
            CHECK(pn_gdn_layer_backward_cpu(&c, (const float *const *)p, dp, x, dy, dx, B, T, NULL, 0) == 0, "%s",
                  pn_last_error());
            const double edx = rel_err(dx, dxref, (size_t)n);
            printf("backward: dx rel err vs torch float64 autograd %.2e\n", edx);
            CHECK(edx <= 1e-4, "dx rel err %.3e", edx);
            double worst = 0;
            for (int i = 0; i < NP; i++) {
                const size_t m = (size_t)pn_param_numel(&pl[i]);
                const double eg = rel_err(dp[i], gref[i], m);
                printf("  grad %-18s rel err %.2e\n", pl[i].name + strlen(prefix), eg);
                CHECK(eg <= 1e-4, "grad %s rel err %.3e", pl[i].name, eg);
                if (eg > worst) worst = eg;
            }
            printf("backward: worst parameter gradient rel err %.2e\n", worst);

            // Accumulation: a second call adds the same gradients again (dparams == 2 x once); dx overwritten.
            float *dx2 = pn_malloc(sizeof(float) * (size_t)n);
            for (int i = 0; i < n; i++) dx2[i] = 12345.0f; // garbage: must be overwritten
            float *once[NP];
            for (int i = 0; i < NP; i++) {
                const size_t m = (size_t)pn_param_numel(&pl[i]);
                once[i] = pn_malloc(sizeof(float) * m);
                memcpy(once[i], dp[i], sizeof(float) * m);
            }
            CHECK(pn_gdn_layer_backward_cpu(&c, (const float *const *)p, dp, x, dy, dx2, B, T, NULL, 0) == 0, "%s",
                  pn_last_error());
            CHECK(rel_err(dx2, dx, (size_t)n) <= 1e-6, "dx not overwritten / not deterministic");
            double eacc = 0;
            for (int i = 0; i < NP; i++) {
                const size_t m = (size_t)pn_param_numel(&pl[i]);
                for (size_t j = 0; j < m; j++) once[i][j] *= 2.0f;
                const double ea = rel_err(dp[i], once[i], m);
                if (ea > eacc) eacc = ea;
            }
            printf("accumulation: twice vs 2 x once, worst rel err %.2e\n", eacc);
            CHECK(eacc <= 1e-6, "accumulation rel err %.3e", eacc);

            // NULL entries are skipped: freeze every other parameter; the rest still match torch.
            float *dpn[NP];
            for (int i = 0; i < NP; i++) {
                const size_t m = (size_t)pn_param_numel(&pl[i]);
                memset(once[i], 0, sizeof(float) * m);
                dpn[i] = (i % 2) ? NULL : once[i];
            }
            CHECK(pn_gdn_layer_backward_cpu(&c, (const float *const *)p, dpn, x, dy, dx2, B, T, NULL, 0) == 0, "%s",
                  pn_last_error());
            CHECK(rel_err(dx2, dxref, (size_t)n) <= 1e-4, "dx with frozen parameters");
            for (int i = 0; i < NP; i++) {
                const size_t m = (size_t)pn_param_numel(&pl[i]);
                if (i % 2) {
                    int zero = 1;
                    for (size_t j = 0; j < m; j++) zero &= once[i][j] == 0.0f;
                    CHECK(zero, "frozen %s was written", pl[i].name);
                } else {
                    CHECK(rel_err(once[i], gref[i], m) <= 1e-4, "grad %s with others frozen", pl[i].name);
                }
            }
            // and dparams == NULL freezes everything
            CHECK(pn_gdn_layer_backward_cpu(&c, (const float *const *)p, NULL, x, dy, dx2, B, T, NULL, 0) == 0, "%s",
                  pn_last_error());
            CHECK(rel_err(dx2, dxref, (size_t)n) <= 1e-4, "dx with dparams NULL");

            // Varlen: the packed backward (same xp as section 2, dy rows alike) equals separate runs.
            float *dyp = pn_malloc(sizeof(float) * (size_t)(Tp * Hd)), *dxp = pn_malloc(sizeof(float) * (size_t)(Tp * Hd));
            float *dxs = pn_malloc(sizeof(float) * (size_t)(Tp * Hd));
            memcpy(dyp, dy, sizeof(float) * (size_t)(T * Hd));
            memcpy(dyp + T * Hd, dy + T * Hd, sizeof(float) * (size_t)(L1 * Hd));
            float *gp[NP], *gs[NP];
            for (int i = 0; i < NP; i++) {
                gp[i] = pn_calloc((size_t)pn_param_numel(&pl[i]), sizeof(float));
                gs[i] = pn_calloc((size_t)pn_param_numel(&pl[i]), sizeof(float));
            }
            CHECK(pn_gdn_layer_backward_cpu(&c, (const float *const *)p, gp, xp, dyp, dxp, 1, Tp, cu, 2) == 0, "%s",
                  pn_last_error());
            CHECK(pn_gdn_layer_backward_cpu(&c, (const float *const *)p, gs, xp, dyp, dxs, 1, T, NULL, 0) == 0, "%s",
                  pn_last_error());
            CHECK(pn_gdn_layer_backward_cpu(&c, (const float *const *)p, gs, xp + T * Hd, dyp + T * Hd, dxs + T * Hd,
                                            1, L1, NULL, 0) == 0,
                  "%s", pn_last_error());
            double evl = rel_err(dxp, dxs, (size_t)(Tp * Hd));
            for (int i = 0; i < NP; i++) {
                const double eg = rel_err(gp[i], gs[i], (size_t)pn_param_numel(&pl[i]));
                if (eg > evl) evl = eg;
            }
            printf("varlen backward vs separate runs: worst rel err (dx, grads) %.2e\n", evl);
            CHECK(evl <= 1e-5, "varlen backward rel err %.3e", evl);
            // packed sequence 0's dx is the golden's batch row 0
            CHECK(rel_err(dxp, dxref, (size_t)(T * Hd)) <= 1e-4, "varlen backward sequence 0 vs golden");

            // deltanet backward = gdn backward with A_log = -inf (on the parameters deltanet has).
            {
                float ninf[8];
                for (int i = 0; i < 8; i++) ninf[i] = -INFINITY;
                const float *pg[NP];
                for (int i = 0; i < NP; i++) pg[i] = p[i], memset(gp[i], 0, sizeof(float) * (size_t)pn_param_numel(&pl[i]));
                pg[5] = ninf; // A_log
                const int keep[NP - 3] = {0, 1, 2, 4, 7, 8, 9, 10, 11, 12};
                const float *pd[NP - 3];
                float *gd[NP - 3];
                for (int j = 0; j < NP - 3; j++) pd[j] = p[keep[j]], gd[j] = gs[keep[j]];
                for (int i = 0; i < NP; i++) memset(gs[i], 0, sizeof(float) * (size_t)pn_param_numel(&pl[i]));
                pn_block_cfg cd = c;
                strcpy(cd.type, "deltanet");
                CHECK(pn_gdn_layer_backward_cpu(&c, pg, gp, x, dy, dx2, B, T, NULL, 0) == 0, "%s", pn_last_error());
                CHECK(pn_gdn_layer_backward_cpu(&cd, pd, gd, x, dy, dx, B, T, NULL, 0) == 0, "%s",
                      pn_last_error());
                double edn = rel_err(dx, dx2, (size_t)n);
                for (int j = 0; j < NP - 3; j++) {
                    const double eg = rel_err(gd[j], gp[keep[j]], (size_t)pn_param_numel(&pl[keep[j]]));
                    if (eg > edn) edn = eg;
                }
                printf("deltanet backward vs gdn(A_log=-inf): worst rel err %.2e\n", edn);
                CHECK(edn <= 1e-6, "deltanet backward vs gdn(A_log=-inf) %.3e", edn);
            }

            // Refusals, before touching dx.
            CHECK_ERR(pn_gdn_layer_backward_cpu(&c, (const float *const *)p, gp, x, dy, dx2, B, T, cu, 2), "gdn");
            const int32_t cubad[3] = {0, 80, 60};
            CHECK_ERR(pn_gdn_layer_backward_cpu(&c, (const float *const *)p, gp, xp, dyp, dxp, 1, Tp, cubad, 2),
                      "cu_seqlens");

            for (int i = 0; i < NP; i++) free(once[i]), free(gp[i]), free(gs[i]);
            free(dx2), free(dyp), free(dxp), free(dxs);
        } else {
            CHECK(0, "backward golden incomplete (run tests/make_gdn_layer_goldens.py)");
        }
        for (int i = 0; i < NP; i++) free(gref[i]), free(dp[i]);
        free(dy), free(dxref), free(dx);
    }

    for (int i = 0; i < NP; i++) free(p[i]);
    free(x), free(yref), free(y), free(xp), free(yp), free(ys);
    pn_st_close(&st);
    return pn_test_done("test_gdn_layer");
}
