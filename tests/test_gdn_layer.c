// The Gated DeltaNet layer forward on the CPU (src/blocks/gdn_cpu.c) against a torch float64 peer of fla's
// GatedDeltaNet (tests/make_gdn_layer_goldens.py), plus: variable-length packing (two sequences packed
// with cu_seqlens equal separate runs), `deltanet` equal to `gdn` with zero decay (A_log = -inf), and
// refusal of bad configs.
//
// usage: test_gdn_layer [GOLDENS_DIR]
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../src/blocks/gdn_cpu.h"
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

    for (int i = 0; i < NP; i++) free(p[i]);
    free(x), free(yref), free(y), free(xp), free(yp), free(ys);
    pn_st_close(&st);
    return pn_test_done("test_gdn_layer");
}
