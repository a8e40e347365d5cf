// The training and linear-block ops of the CUDA backend (kernels/ops.h: silu, rmsnorm / gated RMSNorm
// backward, SwiGLU, RoPE and embedding backward, matmul backward, the linear blocks' gates, copy, the losses,
// argmax and sampling; the causal convolutions are test_conv_cuda.c's, the optimizer's test_optim_cuda.c's) against
// the CPU backend on the same bf16-rounded random inputs, with fla-style RMS-ratio tolerances. Parameter
// gradients are pre-filled with random values on both sides (they must accumulate), and frozen (NULL)
// gradients are exercised. Exits 0 without a GPU.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "gpu_test.h"
#include "pair_test.h"

static void test_silu(void) {
    const int64_t n[1] = {1 << 20};
    pair x = mk(1, n, ACT, 0, 2), y = mk(1, n, ACT, 0, 1), dy = mk(1, n, ACT, 0, 1), dx = mk(1, n, ACT, 0, 1);
    pn_op_silu(&y.c, &x.c);
    pn_op_silu(&y.g, &x.g);
    rel("silu [1M]", &y, 0.005);
    pn_op_silu_bwd(&dx.c, &dy.c, &x.c);
    pn_op_silu_bwd(&dx.g, &dy.g, &x.g);
    rel("silu_bwd [1M]", &dx, 0.008);
    pn_op_silu_bwd(&dy.c, &dy.c, &x.c); // in place (dx aliases dy)
    pn_op_silu_bwd(&dy.g, &dy.g, &x.g);
    rel("silu_bwd in place", &dy, 0.008);
    drop(&x), drop(&y), drop(&dy), drop(&dx);
}

// acc: dx += the gradient (dx starts random on both sides; dy scaled so the gradient is not lost in it)
static void test_rmsnorm_bwd(int64_t rows, int64_t D, int frozen, int acc) {
    const int64_t s2[2] = {rows, D}, s1[1] = {D};
    pair x = mk(2, s2, ACT, 0, 1), dy = mk(2, s2, ACT, 0, 1), dx = mk(2, s2, ACT, 0, 1), w = mk(1, s1, ACT, 1, 0.2f);
    pair dw = mk(1, s1, GRAD, 0, 1);
    pn_op_rmsnorm_bwd(&dx.c, frozen ? NULL : &dw.c, &dy.c, &x.c, &w.c, 1e-6f, acc);
    pn_op_rmsnorm_bwd(&dx.g, frozen ? NULL : &dw.g, &dy.g, &x.g, &w.g, 1e-6f, acc);
    char name[96];
    snprintf(name, sizeof name, "rmsnorm_bwd dx [%lld, %lld]%s%s", (long long)rows, (long long)D, frozen ? " frozen" : "",
             acc ? " accumulated" : "");
    rel(name, &dx, 0.01);
    snprintf(name, sizeof name, "rmsnorm_bwd dw (accumulated)%s", frozen ? ": untouched" : "");
    rel(name, &dw, frozen ? 0.0 : 0.01);
    drop(&x), drop(&dy), drop(&dx), drop(&w), drop(&dw);
}

static void test_gated(int64_t rows, int64_t D) {
    const int64_t s2[2] = {rows, D}, s1[1] = {D};
    pair x = mk(2, s2, ACT, 0, 1), g = mk(2, s2, ACT, 0, 2), y = mk(2, s2, ACT, 0, 1), w = mk(1, s1, ACT, 1, 0.2f);
    pair dy = mk(2, s2, ACT, 0, 1), dx = mk(2, s2, ACT, 0, 1), dg = mk(2, s2, ACT, 0, 1), dw = mk(1, s1, GRAD, 0, 1);
    char name[96];
    pn_op_gated_rmsnorm(&y.c, &x.c, &g.c, &w.c, 1e-5f);
    pn_op_gated_rmsnorm(&y.g, &x.g, &g.g, &w.g, 1e-5f);
    snprintf(name, sizeof name, "gated_rmsnorm [%lld, %lld]", (long long)rows, (long long)D);
    rel(name, &y, 0.005);
    pn_op_gated_rmsnorm_bwd(&dx.c, &dg.c, &dw.c, &dy.c, &x.c, &g.c, &w.c, 1e-5f);
    pn_op_gated_rmsnorm_bwd(&dx.g, &dg.g, &dw.g, &dy.g, &x.g, &g.g, &w.g, 1e-5f);
    rel("  backward dx", &dx, 0.01);
    rel("  backward dgate", &dg, 0.01);
    rel("  backward dw (accumulated)", &dw, 0.01);
    drop(&x), drop(&g), drop(&y), drop(&w), drop(&dy), drop(&dx), drop(&dg), drop(&dw);
}

static void test_swiglu_bwd(int64_t count) { // count % 8 == 0: 8 values a load
    const int64_t n[1] = {count};
    pair g = mk(1, n, ACT, 0, 2), u = mk(1, n, ACT, 0, 1), d = mk(1, n, ACT, 0, 1);
    pair dg = mk(1, n, ACT, 0, 1), du = mk(1, n, ACT, 0, 1);
    pn_op_swiglu_bwd(&dg.c, &du.c, &d.c, &g.c, &u.c);
    pn_op_swiglu_bwd(&dg.g, &du.g, &d.g, &g.g, &u.g);
    char name[64];
    snprintf(name, sizeof name, "swiglu_bwd dgate [%lld]", (long long)count);
    rel(name, &dg, 0.008);
    rel("swiglu_bwd dup", &du, 0.008);
    drop(&g), drop(&u), drop(&d), drop(&dg), drop(&du);
}

static void test_matmul_bwd(int64_t N, int64_t I, int64_t O, int with_db, int acc, int frozen) {
    const int64_t sx[2] = {N, I}, sw[2] = {O, I}, so[2] = {N, O}, sb[1] = {O};
    pair x = mk(2, sx, ACT, 0, 1), w = mk(2, sw, ACT, 0, 0.05f), d = mk(2, so, ACT, 0, 1), dx = mk(2, sx, ACT, 0, 1);
    pair dw = mk(2, sw, GRAD, 0, 1), db = mk(1, sb, GRAD, 0, 1);
    pn_op_matmul_bwd(&dx.c, frozen ? NULL : &dw.c, with_db ? &db.c : NULL, &d.c, &x.c, &w.c, acc);
    pn_op_matmul_bwd(&dx.g, frozen ? NULL : &dw.g, with_db ? &db.g : NULL, &d.g, &x.g, &w.g, acc);
    char name[128];
    snprintf(name, sizeof name, "matmul_bwd [%lld, %lld] -> %lld dx%s", (long long)N, (long long)I, (long long)O,
             acc ? " (+=)" : "");
    rel(name, &dx, 0.01);
    rel(frozen ? "  dw frozen: untouched" : "  dw (accumulated)", &dw, frozen ? 0.0 : 0.01);
    if (with_db) rel("  db (accumulated)", &db, 0.01);
    drop(&x), drop(&w), drop(&d), drop(&dx), drop(&dw), drop(&db);
}

static void test_rope_bwd(int pos0) {
    const int64_t s[4] = {2, 300, 12, 128}, sf[1] = {64};
    pair x = mk(4, s, ACT, 0, 1);
    float *inv = pn_malloc(sizeof(float) * 64);
    for (int i = 0; i < 64; i++) inv[i] = powf(10000.0f, -(float)(2 * i) / 128.0f);
    pn_tensor ic = pn_view(inv, PN_F32, PN_CPU, 1, sf), ig = dev_upload(inv, PN_F32, 1, sf);
    float *orig = dev_download(&x.g);
    pn_op_rope_bwd(&x.c, &ic, pos0, NULL);
    pn_op_rope_bwd(&x.g, &ig, pos0, NULL);
    char name[64];
    snprintf(name, sizeof name, "rope_bwd [2, 300, 12, 128] pos0 %d", pos0);
    rel(name, &x, 0.01);
    pn_op_rope(&x.g, &ig, pos0, NULL); // rope(rope_bwd(x)) = x on the GPU
    float *back = dev_download(&x.g);
    const double e = relerr(back, orig, pn_numel(&x.c));
    printf("%-44s rel err %.2e (tol 1e-02) %s\n", "  rope after rope_bwd returns the input", e, e <= 0.01 ? "ok" : "FAIL");
    fails += e > 0.01;
    cases++;
    free(orig), free(back), free(inv);
    dev_free(&ig);
    drop(&x);
}

static void test_embedding_bwd(void) {
    const int64_t V = 1000, C = 256, N = 4096, st[2] = {V, C}, so[2] = {N, C}, si[1] = {N};
    pair dt = mk(2, st, GRAD, 0, 1), d = mk(2, so, ACT, 0, 1);
    int32_t *ids = pn_malloc(sizeof(int32_t) * N);
    for (int64_t i = 0; i < N; i++) ids[i] = (int32_t)(pn_splitmix64((uint64_t)i) % 50); // many repeats
    pn_tensor ic = pn_view(ids, PN_I32, PN_CPU, 1, si), ig = dev_alloc(PN_I32, 1, si);
    pn_cuda_backend.memcpy_h2d(ig.data, ids, sizeof(int32_t) * N);
    pn_op_embedding_bwd(&dt.c, &ic, &d.c);
    pn_op_embedding_bwd(&dt.g, &ig, &d.g);
    rel("embedding_bwd [1000, 256] += (repeated ids)", &dt, 0.01);
    free(ids);
    dev_free(&ig);
    drop(&dt), drop(&d);
}

void pn_cuda_timer_start(void);
float pn_cuda_timer_stop_ms(void);

// The norms' backwards at the distillation step's shapes: RMSNorm [8192, 1536] adding into the residual's
// gradient, gated RMSNorm [8192 x 12 heads, 256] (median of 5 after one warm-up).
static void bench_norms(void) {
    const int64_t rows[2] = {8192, 8192 * 12}, D[2] = {1536, 256};
    for (int i = 0; i < 2; i++) {
        const int64_t s2[2] = {rows[i], D[i]}, s1[1] = {D[i]};
        pn_tensor x = dev_alloc(PN_BF16, 2, s2), dy = dev_alloc(PN_BF16, 2, s2), dx = dev_alloc(PN_BF16, 2, s2);
        pn_tensor g = dev_alloc(PN_BF16, 2, s2), dg = dev_alloc(PN_BF16, 2, s2);
        pn_tensor w = dev_alloc(PN_BF16, 1, s1), dw = dev_alloc(PN_F32, 1, s1);
        pn_tensor *all[] = {&x, &dy, &dx, &g, &dg, &w, &dw};
        for (int k = 0; k < 7; k++) pn_cuda_backend.memset0(all[k]->data, pn_nbytes(all[k]));
        float t[6];
        for (int it = 0; it < 6; it++) {
            pn_cuda_timer_start();
            if (i == 0) pn_op_rmsnorm_bwd(&dx, &dw, &dy, &x, &w, 1e-6f, 1);
            else pn_op_gated_rmsnorm_bwd(&dx, &dg, &dw, &dy, &x, &g, &w, 1e-6f);
            t[it] = pn_cuda_timer_stop_ms();
        }
        qsort(t + 1, 5, sizeof(float), cmp_float);
        const double bytes = (double)pn_nbytes(&x) * (i == 0 ? 4 : 5); // read x, dy (and g), dx; write dx (and dg)
        printf("bench %s backward [%lld, %lld]: %.4f ms (bytes at 3 TB/s: %.4f)\n", i == 0 ? "rmsnorm (adding)" : "gated rmsnorm",
               (long long)rows[i], (long long)D[i], t[3], bytes / 3e9);
        for (int k = 0; k < 7; k++) dev_free(all[k]);
    }
}

// The fused LM loss on a chunk of the KL step (1024 rows of Qwen's 151,936 logits, teacher and student, the
// gradient written over the student's): median of 5 after one warm-up.
static void bench_lm_loss(void) {
    const int64_t sz[2] = {1024, 151936}, sl[2] = {1024, 2};
    pn_tensor zs = dev_alloc(PN_BF16, 2, sz), zt = dev_alloc(PN_BF16, 2, sz), rows = dev_alloc(PN_F32, 2, sl);
    pn_cuda_backend.memset0(zs.data, pn_nbytes(&zs));
    pn_cuda_backend.memset0(zt.data, pn_nbytes(&zt));
    const pn_lm_loss_args a = {.temperature = 1.0f, .kl_grad = 1.0f / 1024, .ce_grad = 0.0f};
    float t[6];
    for (int it = 0; it < 6; it++) {
        pn_cuda_timer_start();
        pn_op_lm_loss(&zs, &rows, &zs, &zt, NULL, &a);
        t[it] = pn_cuda_timer_stop_ms();
    }
    qsort(t + 1, 5, sizeof(float), cmp_float);
    printf("bench lm_loss KL [1024, 151936]: %.3f ms (bytes at 3 TB/s: %.3f)\n", t[3], 5.0 * pn_nbytes(&zs) / 3e9);
    dev_free(&zs), dev_free(&zt), dev_free(&rows);
}

static void test_gates(int decay) {
    const int64_t N = 4096, H = 12, s2[2] = {N, H}, s1[1] = {H};
    pair za = mk(2, s2, ACT, 0, 8), zb = mk(2, s2, ACT, 0, 2), al = mk(1, s1, ACT, 1, 0.5f), dt = mk(1, s1, ACT, -3, 1);
    for (int64_t i = 0; i < N * H; i += 97) za.h[i] = bf16_round(25.0f); // past softplus' threshold
    pn_op_from_host_f32(&za.g, za.h);
    pair g = mk(2, s2, GRAD, 0, 1), b = mk(2, s2, GRAD, 0, 1), dg = mk(2, s2, GRAD, 0, 1), dbeta = mk(2, s2, GRAD, 0, 1);
    pair dza = mk(2, s2, ACT, 0, 1), dzb = mk(2, s2, ACT, 0, 1), dal = mk(1, s1, GRAD, 0, 1), ddt = mk(1, s1, GRAD, 0, 1);
    pn_op_lin_gates(&g.c, &b.c, decay ? &za.c : NULL, &zb.c, decay ? &al.c : NULL, decay ? &dt.c : NULL);
    pn_op_lin_gates(&g.g, &b.g, decay ? &za.g : NULL, &zb.g, decay ? &al.g : NULL, decay ? &dt.g : NULL);
    rel(decay ? "lin_gates [4096, 12] g" : "lin_gates without decay: g = 0", &g, decay ? 0.005 : 0.0);
    rel("  beta", &b, 0.005);
    pn_op_lin_gates_bwd(decay ? &dza.c : NULL, &dzb.c, decay ? &dal.c : NULL, decay ? &ddt.c : NULL, &dg.c, &dbeta.c,
                        decay ? &za.c : NULL, &g.c, &b.c, decay ? &al.c : NULL, decay ? &dt.c : NULL);
    pn_op_lin_gates_bwd(decay ? &dza.g : NULL, &dzb.g, decay ? &dal.g : NULL, decay ? &ddt.g : NULL, &dg.g, &dbeta.g,
                        decay ? &za.g : NULL, &g.g, &b.g, decay ? &al.g : NULL, decay ? &dt.g : NULL);
    rel("  backward dzb", &dzb, 0.01);
    if (decay) {
        rel("  backward dza", &dza, 0.01);
        rel("  backward dA_log (accumulated)", &dal, 0.02);
        rel("  backward ddt_bias (accumulated)", &ddt, 0.02);
    }
    drop(&za), drop(&zb), drop(&al), drop(&dt), drop(&g), drop(&b), drop(&dg), drop(&dbeta), drop(&dza), drop(&dzb);
    drop(&dal), drop(&ddt);
}

static void test_copy(void) {
    const int64_t s[2] = {333, 77};
    pair a = mk(2, s, ACT, 0, 1), b = mk(2, s, ACT, 0, 1);
    pn_op_copy(&b.c, &a.c);
    pn_op_copy(&b.g, &a.g);
    rel("copy [333, 77]", &b, 0.0);
    drop(&a), drop(&b);
}

// The fused KL/CE over rows of logits (train/pn_loss.c's op): per-row losses and the gradient, in place
// (dz = zs) as the loss module runs it.
static void test_lm_loss(int64_t R, int64_t V, int teacher, int targets, float tau) {
    const int64_t sz[2] = {R, V}, sl[2] = {R, 2}, st[1] = {R};
    pair zs = mk(2, sz, ACT, 0, 3), zt = mk(2, sz, ACT, 0, 3), rows = mk(2, sl, GRAD, 0, 1);
    float *dzc = pn_malloc(sizeof(float) * (size_t)(R * V));
    pn_tensor dc = pn_view(dzc, PN_F32, PN_CPU, 2, sz);
    int32_t *tg = pn_malloc(sizeof(int32_t) * (size_t)R);
    for (int64_t r = 0; r < R; r++) tg[r] = r % 7 == 6 ? -1 : (int32_t)(pn_splitmix64((uint64_t)r) % (uint64_t)V);
    pn_tensor tc = pn_view(tg, PN_I32, PN_CPU, 1, st), tgd = dev_alloc(PN_I32, 1, st);
    pn_cuda_backend.memcpy_h2d(tgd.data, tg, sizeof(int32_t) * (size_t)R);
    const pn_lm_loss_args a = {.temperature = tau, .kl_grad = 1.0f / (float)R, .ce_grad = 0.5f / (float)R};
    pn_op_lm_loss(&dc, &rows.c, &zs.c, teacher ? &zt.c : NULL, targets ? &tc : NULL, &a);
    pn_op_lm_loss(&zs.g, &rows.g, &zs.g, teacher ? &zt.g : NULL, targets ? &tgd : NULL, &a);
    char name[128];
    snprintf(name, sizeof name, "lm_loss [%lld, %lld]%s%s tau %.1f: rows", (long long)R, (long long)V,
             teacher ? " KL" : "", targets ? " CE" : "", tau);
    rel(name, &rows, 2e-4);
    free(zs.h);
    zs.h = dzc; // the CPU's gradient, against the GPU's written over its logits
    rel("  gradient over the logits (in place)", &zs, 0.01);
    free(tg);
    dev_free(&tgd);
    drop(&zs), drop(&zt), drop(&rows);
}

// Scoring rows of logits (pn_eval's log-likelihood requests): the target's log-probability and the first
// maximum, on logits both backends see exactly (bf16 values), with planted ties for the argmax.
static void test_lm_score(int64_t R, int64_t V) {
    const int64_t sz[2] = {R, V}, st[1] = {R}, so[2] = {R, 2};
    float *h = randn(R * V, 0, 3);
    pn_tensor up = dev_upload(h, ACT, 2, sz);
    free(h);
    h = dev_download(&up); // the bf16 values
    dev_free(&up);
    int32_t *tg = pn_malloc(sizeof(int32_t) * (size_t)R);
    for (int64_t r = 0; r < R; r++) {
        tg[r] = r % 5 == 4 ? -1 : (int32_t)(pn_splitmix64((uint64_t)r + 7) % (uint64_t)V);
        if (r % 3 == 0) { // a tie at the maximum: the first index must win on both backends
            const int64_t a = (int64_t)(pn_splitmix64((uint64_t)r) % (uint64_t)V), b = (a * 7 + 3) % V;
            h[r * V + a] = h[r * V + b] = 64.0f; // far above any N(0, 3) draw
            if (r % 2 == 0) tg[r] = (int32_t)(a > b ? a : b); // the later of the two: not the greedy token
        }
    }
    pn_tensor zc = pn_view(h, PN_F32, PN_CPU, 2, sz), zg = dev_upload(h, ACT, 2, sz);
    pn_tensor tc = pn_view(tg, PN_I32, PN_CPU, 1, st), tgd = dev_alloc(PN_I32, 1, st);
    pn_cuda_backend.memcpy_h2d(tgd.data, tg, sizeof(int32_t) * (size_t)R);
    pair out = mk(2, so, GRAD, 0, 1);
    pn_op_lm_score(&out.c, &zc, &tc);
    pn_op_lm_score(&out.g, &zg, &tgd);
    float *g = dev_download(&out.g);
    int diff = 0, ties_ok = 1;
    for (int64_t r = 0; r < R; r++) {
        diff += g[2 * r + 1] != out.h[2 * r + 1];
        if (r % 3 == 0) { // the planted maximum's first index
            const int64_t a = (int64_t)(pn_splitmix64((uint64_t)r) % (uint64_t)V), b = (a * 7 + 3) % V;
            ties_ok &= out.h[2 * r + 1] == (float)(a < b ? a : b);
        }
    }
    printf("lm_score [%lld, %lld]: argmax differs in %d rows, ties to the first index %s\n", (long long)R,
           (long long)V, diff, ties_ok ? "ok" : "FAIL");
    fails += diff != 0 || !ties_ok;
    cases++;
    char name[96];
    snprintf(name, sizeof name, "lm_score [%lld, %lld] (log-probability, argmax)", (long long)R, (long long)V);
    rel(name, &out, 2e-5);
    free(g), free(h), free(tg);
    dev_free(&zg), dev_free(&tgd);
    drop(&out);
}

// argmax (greedy decoding): CUDA cuts a row into slices; planted ties, one pair straddling a slice boundary
// (4096 elements per slice at least), must still give the first index, as the CPU's scan does.
static void test_argmax(int64_t R, int64_t V) {
    const int64_t sz[2] = {R, V}, st[1] = {R};
    float *h = randn(R * V, 0, 3);
    pn_tensor up = dev_upload(h, ACT, 2, sz);
    free(h);
    h = dev_download(&up); // the bf16 values
    dev_free(&up);
    for (int64_t r = 0; r < R; r++) {
        const int64_t a = (int64_t)(pn_splitmix64((uint64_t)r + 11) % (uint64_t)V);
        const int64_t b = r % 2 ? (a + V / 2) % V : (a + 1) % V; // far apart (other slice) or adjacent
        if (r % 3 != 2) h[r * V + a] = h[r * V + b] = 64.0f;
    }
    int32_t *hc = pn_malloc(sizeof(int32_t) * (size_t)R), *hg = pn_malloc(sizeof(int32_t) * (size_t)R);
    pn_tensor zc = pn_view(h, PN_F32, PN_CPU, 2, sz), zg = dev_upload(h, ACT, 2, sz);
    pn_tensor oc = pn_view(hc, PN_I32, PN_CPU, 1, st), og = dev_alloc(PN_I32, 1, st);
    pn_op_argmax(&oc, &zc);
    pn_op_argmax(&og, &zg);
    pn_cuda_backend.memcpy_d2h(hg, og.data, sizeof(int32_t) * (size_t)R);
    int diff = 0, ties_ok = 1;
    for (int64_t r = 0; r < R; r++) {
        diff += hc[r] != hg[r];
        if (r % 3 != 2) {
            const int64_t a = (int64_t)(pn_splitmix64((uint64_t)r + 11) % (uint64_t)V);
            const int64_t b = r % 2 ? (a + V / 2) % V : (a + 1) % V;
            ties_ok &= hg[r] == (a < b ? a : b);
        }
    }
    printf("argmax [%lld, %lld]: cuda differs from cpu in %d rows, planted ties to the first index %s\n",
           (long long)R, (long long)V, diff, ties_ok ? "ok" : "FAIL");
    fails += diff != 0 || !ties_ok;
    cases++;
    free(h), free(hc), free(hg);
    dev_free(&zg), dev_free(&og);
}

// sample: CUDA draws the CPU's ids (the same uniforms, the perturbation in double) on the same bf16 logits;
// a row could differ only where two perturbed values round to within the devices' log() error, or (top-p) a
// cumulative probability sits at top_p within fp32's error (the CPU sums in double).
static void test_sample(int64_t R, int64_t V, float temperature, int top_k, float top_p) {
    const int64_t sz[2] = {R, V}, st[1] = {R};
    float *h = randn(R * V, 0, 3);
    pn_tensor zg = dev_upload(h, ACT, 2, sz);
    free(h);
    h = dev_download(&zg); // the bf16 values
    int32_t *hc = pn_malloc(sizeof(int32_t) * (size_t)R), *hg = pn_malloc(sizeof(int32_t) * (size_t)R);
    pn_tensor zc = pn_view(h, PN_F32, PN_CPU, 2, sz);
    pn_tensor oc = pn_view(hc, PN_I32, PN_CPU, 1, st), og = dev_alloc(PN_I32, 1, st);
    int diff = 0;
    pn_sample_args a = {.temperature = temperature, .top_k = top_k, .top_p = top_p, .seed = 7};
    for (uint64_t step = 0; step < 3; step++) {
        a.step = step;
        pn_op_sample(&oc, &zc, &a);
        pn_op_sample(&og, &zg, &a);
        pn_cuda_backend.memcpy_d2h(hg, og.data, sizeof(int32_t) * (size_t)R);
        for (int64_t r = 0; r < R; r++) diff += hc[r] != hg[r];
    }
    printf("sample [%lld, %lld] temperature %.1f top_k %d top_p %.2f, 3 steps: cuda differs from cpu in %d of %lld "
           "draws %s\n", (long long)R, (long long)V, temperature, top_k, top_p, diff, (long long)(3 * R),
           diff * 1000 <= 3 * R ? "ok" : "FAIL");
    fails += diff * 1000 > 3 * R;
    cases++;
    free(h), free(hc), free(hg);
    dev_free(&zg), dev_free(&og);
}

static void test_mse(int64_t R, int64_t C, int acc) {
    const int64_t s2[2] = {R, C}, s1[1] = {R};
    pair x = mk(2, s2, ACT, 0, 1), y = mk(2, s2, ACT, 0, 1), dx = mk(2, s2, ACT, 0, 1), rows = mk(1, s1, GRAD, 0, 1);
    pn_op_mse(&dx.c, &rows.c, &x.c, &y.c, 0.01f, acc);
    pn_op_mse(&dx.g, &rows.g, &x.g, &y.g, 0.01f, acc);
    char name[96];
    snprintf(name, sizeof name, "mse [%lld, %lld] rows", (long long)R, (long long)C);
    rel(name, &rows, 1e-5);
    rel(acc ? "  dx (+=)" : "  dx", &dx, 0.008);
    drop(&x), drop(&y), drop(&dx), drop(&rows);
}

int main(void) {
    if (!pn_cuda_available()) {
        printf("skipped: no CUDA device\n");
        return 0;
    }
    test_copy();
    test_silu();
    test_rmsnorm_bwd(4096, 1536, 0, 0); // the register-row kernel: J 6 (of 8), ...
    test_rmsnorm_bwd(4096, 1536, 0, 1); // ... adding into dx (the residual), ...
    test_rmsnorm_bwd(4096, 128, 0, 0);  // ... J 1 with idle lanes, ...
    test_rmsnorm_bwd(300, 1536, 1, 1);  // ... frozen
    test_rmsnorm_bwd(513, 3584, 0, 1);  // wider than 2048 (Qwen2.5-7B): norm_kernel, adding
    test_rmsnorm_bwd(77, 100, 0, 1);    // D % 8 != 0: norm_kernel
    test_gated(2 * 512 * 12, 256); // the vectorized forward and backward (D % 8 == 0) ...
    test_gated(12, 256);           // ... at a JetBlock decode step's 12 heads
    test_gated(1000, 72);
    test_gated(7, 36);             // D % 8 != 0: norm_kernel's forward and backward
    test_gated(33, 2304);          // wider than 2048: norm_kernel's backward
    test_swiglu_bwd(1 << 20);
    test_swiglu_bwd(1001);
    test_matmul_bwd(4096, 1536, 256, 1, 0, 0);
    test_matmul_bwd(4096, 1536, 256, 0, 1, 0);
    test_matmul_bwd(333, 96, 200, 1, 1, 0);
    test_matmul_bwd(333, 96, 200, 0, 0, 1);
    test_rope_bwd(0);
    test_rope_bwd(17);
    test_embedding_bwd();
    if (!getenv("PN_TEST_NO_BENCH")) bench_norms(), bench_lm_loss();
    test_gates(1);
    test_gates(0);
    test_lm_loss(64, 151936, 1, 1, 1.0f);
    test_lm_loss(33, 257, 1, 1, 2.0f);
    test_lm_loss(40, 49152, 0, 1, 1.0f);
    test_lm_loss(40, 49152, 1, 0, 1.5f);
    test_lm_loss(40, 49152, 1, 0, 1.0f); // KL alone at temperature 1 (the KL step's): one student softmax
    test_lm_score(45, 151936);
    test_lm_score(70000, 257); // more rows than one launch takes
    test_argmax(1, 151936);     // decoding: one row in 38 slices
    test_argmax(7, 151936);
    test_sample(3, 151936, 0.7f, 0, 1.0f); // decoding's rows (Qwen2's vocabulary)
    test_sample(2000, 300, 1.5f, 0, 1.0f);
    test_sample(3, 151936, 0.7f, 50, 0.9f); // top-k and top-p (one block per row)
    test_sample(2000, 300, 1.5f, 0, 0.5f);
    test_sample(2000, 300, 1.0f, 7, 1.0f);
    test_argmax(5, 300);        // one slice
    test_argmax(70000, 64);     // more rows than one launch takes
    test_mse(300, 1536, 0);
    test_mse(300, 1536, 1);
    printf("%d passed, %d failed\n", cases - fails, fails);
    return fails ? 1 : 0;
}
