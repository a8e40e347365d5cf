// The linear blocks' training forward and backward through the backend table (src/blocks/gdn.c, jet.c)
// against the fp32 CPU layer references (src/blocks/gdn_cpu.c, jet_cpu.c, themselves checked against
// fla's GatedDeltaNet and Jet-Nemotron's JetBlock in torch float64): y, dx and every parameter gradient,
// with parameter gradients pre-filled (they must accumulate) and one run with every gradient frozen.
// Shapes cross a 64-token chunk; packed batches (cu_seqlens) too. On --device cuda the same comparison
// runs with bf16 activations and parameters against the CPU reference fed the same bf16-rounded values.
//
// usage: test_block_train [--device cpu|cuda]
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "oracles/gdn_cpu.h"
#include "oracles/jet_cpu.h"
#include "../kernels/cpu/gdn.h"
#include "../src/blocks/linear_common.h"
#include "../src/pn_block.h"
#include "../src/pn_common.h"
#include "../src/pn_rng.h"
#include "pn_test.h"

static pn_device dev = PN_CPU;
static double tol_y = 1e-5, tol_dx = 1e-5, tol_dw = 1e-5;

static double rel_err(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), den += (double)b[i] * b[i];
    return sqrt(num / (den > 0 ? den : 1e-30));
}

static float nrm(pn_rng *r) { return pn_rng_normal(r->seed, 1, r->n++); }

static float round_dev(float x) { return dev == PN_CUDA ? pn_bf16_to_f32(pn_f32_to_bf16(x)) : x; }

static float *randn(pn_rng *r, int64_t n, float mean, float std) {
    float *x = pn_malloc(sizeof(float) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) x[i] = round_dev(mean + std * nrm(r));
    return x;
}

// A device tensor holding host values (activation/parameter dtype, or F32).
static pn_tensor upload(pn_arena *a, pn_dtype dt, int ndim, const int64_t *shape, const float *host) {
    pn_tensor t = pn_arena_tensor(a, dt, ndim, shape);
    pn_op_from_host_f32(&t, host);
    return t;
}

static float *download(const pn_tensor *t) {
    float *x = pn_malloc(sizeof(float) * (size_t)pn_numel(t));
    pn_op_to_host_f32(x, t);
    return x;
}

// Parameters drawn by kind: everything non-zero (the generator too) so every path is exercised.
static float *init_param(pn_rng *r, const pn_param *p) {
    const int64_t n = pn_param_numel(p);
    float *x = randn(r, n, 0.0f, 0.15f);
    for (int64_t i = 0; i < n; i++) {
        const float u = (float)pn_rng_next(r);
        switch (p->kind) {
        case PN_PARAM_NORM: x[i] = round_dev(1.0f + 0.1f * nrm(r)); break;
        case PN_PARAM_A_LOG: x[i] = round_dev(logf(1.0f + 15.0f * u)); break;
        case PN_PARAM_DT_BIAS: x[i] = round_dev(-3.0f + 2.0f * u); break;
        case PN_PARAM_CONV: x[i] = round_dev(0.3f * nrm(r)); break;
        case PN_PARAM_GEN_BIAS: x[i] = round_dev(0.02f * nrm(r)); break;
        default: break;
        }
    }
    return x;
}

static void check_block(const char *type, int64_t B, int64_t T, const int32_t *cu, int n_seqs, int frozen) {
    pn_model_config mc;
    memset(&mc, 0, sizeof mc);
    mc.hidden = 48, mc.n_heads = 4, mc.n_kv_heads = 2, mc.head_dim = 12, mc.n_layers = 1;
    pn_block_cfg c = pn_block_default(&mc, type);
    c.lin_heads = 2, c.lin_head_k = 16, c.expand_v = 2.0, c.conv_size = 4, c.gen_reduction = 4;
    const pn_block_type *bt = pn_block_find(type);
    const int np = bt->params(&c, 0, NULL);
    pn_param pl[PN_BLOCK_MAX_PARAMS];
    bt->params(&c, 0, pl);
    pn_rng r = {1234 + (uint64_t)T, 0};
    const int64_t N = B * T, H = c.hidden;
    const pn_dtype act = pn_device_dtype(dev);

    float *hp[PN_BLOCK_MAX_PARAMS], *g0[PN_BLOCK_MAX_PARAMS], *gref[PN_BLOCK_MAX_PARAMS];
    size_t bytes = 0;
    for (int i = 0; i < np; i++) {
        hp[i] = init_param(&r, &pl[i]);
        g0[i] = randn(&r, pn_param_numel(&pl[i]), 0.0f, 1.0f);
        gref[i] = pn_malloc(sizeof(float) * (size_t)pn_param_numel(&pl[i]));
        memcpy(gref[i], g0[i], sizeof(float) * (size_t)pn_param_numel(&pl[i]));
        bytes += 2 * pn_arena_need(PN_F32, pl[i].ndim, pl[i].shape);
    }
    float *x = randn(&r, N * H, 0.0f, 1.0f), *dy = randn(&r, N * H, 0.0f, 1.0f);
    float *yref = pn_malloc(sizeof(float) * (size_t)(N * H)), *dxref = pn_malloc(sizeof(float) * (size_t)(N * H));

    // the reference (fp32 CPU layer code)
    const int jet = !strcmp(type, "jet");
    int rc = jet ? pn_jet_layer_forward_cpu(&c, (const float *const *)hp, x, yref, B, T, cu, n_seqs)
                 : pn_gdn_layer_forward_cpu(&c, (const float *const *)hp, x, yref, B, T, cu, n_seqs);
    CHECK(rc == 0, "reference forward: %s", pn_last_error());
    rc = jet ? pn_jet_layer_backward_cpu(&c, (const float *const *)hp, frozen ? NULL : gref, x, dy, dxref, B, T, cu,
                                         n_seqs)
             : pn_gdn_layer_backward_cpu(&c, (const float *const *)hp, frozen ? NULL : gref, x, dy, dxref, B, T, cu,
                                         n_seqs);
    CHECK(rc == 0, "reference backward: %s", pn_last_error());

    // the table path on the device under test
    pn_dtype dts[2][PN_BLOCK_MAX_ACTS];
    int64_t cols[2][PN_BLOCK_MAX_ACTS];
    int na[2];
    for (int w = 0; w < 2; w++) {
        na[w] = bt->acts(&c, w, act, dts[w], cols[w]);
        for (int i = 0; i < na[w]; i++) bytes += pn_arena_need(dts[w][i], 2, (int64_t[]){N, cols[w][i]});
    }
    bytes += 4 * pn_arena_need(act, 2, (int64_t[]){N, H}) + pn_arena_need(PN_I32, 1, (int64_t[]){n_seqs + 1});
    pn_arena a;
    if (pn_arena_init(&a, dev, bytes)) {
        CHECK(0, "%s", pn_last_error());
        return;
    }
    pn_tensor p[PN_BLOCK_MAX_PARAMS], gp[PN_BLOCK_MAX_PARAMS], acts[PN_BLOCK_MAX_ACTS], scr[PN_BLOCK_MAX_ACTS];
    for (int i = 0; i < np; i++) {
        p[i] = upload(&a, act, pl[i].ndim, pl[i].shape, hp[i]);
        gp[i] = frozen ? (pn_tensor){0} : upload(&a, PN_F32, pl[i].ndim, pl[i].shape, g0[i]);
    }
    for (int i = 0; i < na[0]; i++) acts[i] = pn_arena_tensor(&a, dts[0][i], 2, (int64_t[]){N, cols[0][i]});
    for (int i = 0; i < na[1]; i++) scr[i] = pn_arena_tensor(&a, dts[1][i], 2, (int64_t[]){N, cols[1][i]});
    pn_tensor tx = upload(&a, act, 2, (int64_t[]){N, H}, x), tdy = upload(&a, act, 2, (int64_t[]){N, H}, dy);
    pn_tensor ty = pn_arena_tensor(&a, act, 2, (int64_t[]){N, H}), tdx = pn_arena_tensor(&a, act, 2, (int64_t[]){N, H});
    pn_tensor tcu = {0};
    if (cu) {
        tcu = pn_arena_tensor(&a, PN_I32, 1, (int64_t[]){n_seqs + 1});
        pn_backend_get(dev)->memcpy_h2d(tcu.data, cu, sizeof(int32_t) * (size_t)(n_seqs + 1));
    }
    pn_tensor inv = {0};
    const pn_block_ctx ctx = {.B = B, .T = T, .cu_seqlens = cu ? &tcu : NULL, .cu_host = cu, .n_seqs = cu ? n_seqs : 0,
                              .inv_freq = &inv, .rms_eps = 1e-6f};
    rc = bt->forward(&c, p, acts, &tx, &ty, &ctx);
    CHECK(rc == 0, "%s forward: %s", type, pn_last_error());
    rc = bt->backward(&c, p, gp, acts, scr, &tx, &tdy, &tdx, &ctx);
    CHECK(rc == 0, "%s backward: %s", type, pn_last_error());

    float *y = download(&ty), *dx = download(&tdx);
    const double ey = rel_err(y, yref, N * H), edx = rel_err(dx, dxref, N * H);
    double edw = 0.0;
    const char *worst = "-";
    for (int i = 0; i < np && !frozen; i++) {
        const int64_t n = pn_param_numel(&pl[i]);
        float *g = download(&gp[i]);
        for (int64_t j = 0; j < n; j++) g[j] -= g0[i][j], gref[i][j] -= g0[i][j]; // the increments
        const double e = rel_err(g, gref[i], n);
        if (e > edw) edw = e, worst = pl[i].name + strlen("model.layers.0.self_attn.");
        free(g);
    }
    printf("%-8s %-4s B %lld T %-3lld %s%s: y %.2e  dx %.2e  dparams %.2e (%s)\n", type, pn_device_name(dev),
           (long long)B, (long long)T, cu ? "packed " : "", frozen ? "frozen" : "", ey, edx, edw, worst);
    CHECK(ey <= tol_y, "%s y %.3e", type, ey);
    CHECK(edx <= tol_dx, "%s dx %.3e", type, edx);
    CHECK(edw <= tol_dw, "%s %s gradient %.3e", type, worst, edw);
    free(y), free(dx), free(x), free(dy), free(yref), free(dxref);
    for (int i = 0; i < np; i++) free(hp[i]), free(g0[i]), free(gref[i]);
    pn_arena_free(&a);
}

// The activation the linear blocks plan for the delta rule's kept intermediates (pn_lin_saved_cols, bf16
// columns a row) holds pn_gdn_saved_bytes for N rows in a quarter more chunks than N / 64, as it promises
// (else the CUDA forward would silently not keep them and the backward recompute).
static void check_saved_cols(void) {
    const int64_t shapes[][3] = {{12, 96, 256}, {1, 16, 24}, {4, 256, 1024}, {3, 33, 70}, {16, 128, 128}};
    for (int s = 0; s < 5; s++) {
        pn_block_cfg c = {0};
        c.lin_heads = shapes[s][0], c.lin_head_k = shapes[s][1], c.expand_v = (double)shapes[s][2] / (double)shapes[s][1];
        const int64_t H = c.lin_heads, K = c.lin_head_k, V = pn_lin_dims_of(&c).head_v;
        const int64_t cols = pn_lin_saved_cols(&c, PN_BF16);
        int ok = V == shapes[s][2] && pn_lin_saved_cols(&c, PN_F32) == 0;
        for (int64_t N = 64; N <= 65536 && ok; N *= 4) {
            const int64_t chunks = 5 * N / (4 * 64); // a quarter more than N / 64
            ok = 2 * cols * N >= (int64_t)pn_gdn_saved_bytes(N, chunks, H, K, V);
        }
        printf("saved cols H %lld d_k %lld d_v %lld: %lld a row hold pn_gdn_saved_bytes at 64..65536 rows %s\n",
               (long long)H, (long long)K, (long long)V, (long long)cols, ok ? "ok" : "FAIL");
        CHECK(ok, "pn_lin_saved_cols(H %lld, d_k %lld, d_v %lld) = %lld is short", (long long)H, (long long)K,
              (long long)V, (long long)cols);
    }
}

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc) {
            dev = !strcmp(argv[++i], "cuda") ? PN_CUDA : PN_CPU;
        } else {
            fprintf(stderr, "usage: test_block_train [--device cpu|cuda]\n");
            return 2;
        }
    }
    if (dev == PN_CUDA) {
        if (!pn_cuda_available()) {
            printf("skipped: no CUDA device\n");
            return 0;
        }
        // bf16 activations and parameters through a whole layer and its backward
        tol_y = 0.02, tol_dx = 0.03, tol_dw = 0.04;
    }
    const int32_t cu[4] = {0, 1, 66, 100};
    const char *types[] = {"gdn", "deltanet", "jet"};
    for (int t = 0; t < 3; t++) {
        check_block(types[t], 2, 70, NULL, 0, 0);
        check_block(types[t], 1, 100, cu, 3, 0);
        check_block(types[t], 1, 1, NULL, 0, 0);
    }
    check_block("jet", 2, 33, NULL, 0, 1);
    check_saved_cols();
    return pn_test_done("test_block_train");
}
