// The CUDA Gated DeltaNet backward (kernels/cuda/gdn_bwd.cu) against the CPU chunked backward
// (pn_cpu_gdn_bwd_f32 in kernels/cpu/gdn.c, itself checked by finite differences and against fla in
// tests/test_gdn.c) on identical inputs: q, k, v, dout rounded to bf16; g, beta, h0, dht in fp32. RMS-ratio
// tolerances: dq, dk, dv, dh0 0.008; dg, dbeta 0.02 (sums of many cancelling terms). Without qk_l2norm the
// q, k rows are normalized here (before rounding), as the delta rule needs ‖k‖ ≈ 1 to stay stable. Then
// the forward + backward time at the anchor shape (B 8, T 4096, H 12, K 96, V 256, q/k L2-normalized in the
// kernel; fla 6.00 ms), with the forward's intermediates kept for the backward and recomputed. Set
// PN_TEST_NO_BENCH=1 to skip the timing, PN_TEST_BENCH_ONLY=1 to run it alone (for profilers).
#include <stdio.h>
#include <stdlib.h>

#include "gdn_test.h"
#include "gpu_test.h"
#include "kernels/cpu/gdn.h"
#include "kernels/cuda/gdn_bwd_cuda.h"
#include "kernels/cuda/gdn_cuda.h"
#include "kernels/ops.h"
#include "src/pn_common.h"

void pn_cuda_timer_start(void);
float pn_cuda_timer_stop_ms(void);

static int n_pass, n_fail;

static void record(int ok) { ok ? n_pass++ : n_fail++; }

static void check_bwd(const char *name, int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, int l2norm, int with_h0,
                      int with_dht, const int32_t *cu, int64_t n_seqs, int gzero) {
    const int64_t N = cu ? n_seqs : B, rows = B * T * H, nk = rows * K, nv = rows * V, ns = N * H * K * V;
    const int64_t sq[4] = {B, T, H, K}, sv[4] = {B, T, H, V}, sg[3] = {B, T, H}, ss[4] = {N, H, K, V};
    float *q = rand_rows(rows, K, !l2norm), *k = rand_rows(rows, K, !l2norm), *v = randn(nv, 0, 1);
    float *g = rand_gates(rows, gzero), *beta = rand_betas(rows), *h0 = randn(ns, 0, 0.5f);
    float *dout = randn(nv, 0, 1), *dht = randn(ns, 0, 0.5f);
    float *dq = pn_malloc(sizeof(float) * (size_t)nk), *dk = pn_malloc(sizeof(float) * (size_t)nk);
    float *dv = pn_malloc(sizeof(float) * (size_t)nv), *dg = pn_malloc(sizeof(float) * (size_t)rows);
    float *db = pn_malloc(sizeof(float) * (size_t)rows), *dh0 = pn_malloc(sizeof(float) * (size_t)ns);
    pn_gdn_cfg c = {.B = B, .T = T, .H = H, .K = K, .V = V, .cu_seqlens = cu, .n_seqs = n_seqs, .scale = 0.0f,
                    .qk_l2norm = l2norm};
    if (pn_cpu_gdn_bwd_f32(&c, q, k, v, g, beta, with_h0 ? h0 : NULL, dout, with_dht ? dht : NULL, dq, dk, dv, dg, db, dh0))
        pn_panic("cpu gdn bwd: %s", pn_last_error());

    pn_tensor gq = dev_upload(q, PN_BF16, 4, sq), gk = dev_upload(k, PN_BF16, 4, sq), gv = dev_upload(v, PN_BF16, 4, sv);
    pn_tensor gg = dev_upload(g, PN_F32, 3, sg), gb = dev_upload(beta, PN_F32, 3, sg), gh0 = dev_upload(h0, PN_F32, 4, ss);
    pn_tensor gdo = dev_upload(dout, PN_BF16, 4, sv), gdht = dev_upload(dht, PN_F32, 4, ss);
    pn_tensor gdq = dev_alloc(PN_BF16, 4, sq), gdk = dev_alloc(PN_BF16, 4, sq), gdv = dev_alloc(PN_BF16, 4, sv);
    pn_tensor gdg = dev_alloc(PN_F32, 3, sg), gdb = dev_alloc(PN_F32, 3, sg), gdh0 = dev_alloc(PN_F32, 4, ss);
    pn_tensor gcu = cu ? dev_upload_i32(cu, n_seqs + 1) : (pn_tensor){0};
    pn_gdn_cfg cd = c;
    cd.cu_seqlens = cu ? (const int32_t *)gcu.data : NULL;
    const int rc = pn_cuda_gdn_bwd(&cd, gdq.data, gdk.data, gdv.data, (float *)gdg.data, (float *)gdb.data,
                                   (float *)gdh0.data, gdo.data, with_dht ? (const float *)gdht.data : NULL, gq.data,
                                   gk.data, gv.data, (const float *)gg.data, (const float *)gb.data,
                                   with_h0 ? (const float *)gh0.data : NULL);
    if (rc) {
        printf("gdn bwd %-10s B%lld T%lld H%lld K%lld V%lld: returned %d (%s) FAIL\n", name, (long long)B, (long long)T,
               (long long)H, (long long)K, (long long)V, rc, pn_last_error());
        record(0);
    } else {
        float *rq = dev_download(&gdq), *rk = dev_download(&gdk), *rv = dev_download(&gdv);
        float *rg = dev_download(&gdg), *rb = dev_download(&gdb), *rh = dev_download(&gdh0);
        const double eq = relerr(rq, dq, nk), ek = relerr(rk, dk, nk), ev = relerr(rv, dv, nv);
        const double eg = relerr(rg, dg, rows), eb = relerr(rb, db, rows), eh = relerr(rh, dh0, ns);
        const int ok = eq <= 0.008 && ek <= 0.008 && ev <= 0.008 && eg <= 0.02 && eb <= 0.02 && eh <= 0.008;
        printf("gdn bwd %-10s B%lld T%lld H%lld K%lld V%lld l2norm %d h0 %d dht %d  dq %.2e dk %.2e dv %.2e dg %.2e "
               "dbeta %.2e dh0 %.2e %s\n",
               name, (long long)B, (long long)T, (long long)H, (long long)K, (long long)V, l2norm, with_h0, with_dht, eq,
               ek, ev, eg, eb, eh, ok ? "ok" : "FAIL");
        record(ok);
        free(rq), free(rk), free(rv), free(rg), free(rb), free(rh);
    }
    pn_tensor *d[] = {&gq, &gk, &gv, &gg, &gb, &gh0, &gdo, &gdht, &gdq, &gdk, &gdv, &gdg, &gdb, &gdh0};
    for (int i = 0; i < 14; i++) dev_free(d[i]);
    if (cu) dev_free(&gcu);
    float *h[] = {q, k, v, g, beta, h0, dout, dht, dq, dk, dv, dg, db, dh0};
    for (int i = 0; i < 14; i++) free(h[i]);
}

// One forward + backward on the device inputs with cfg c (saved: c.saved), results downloaded into r[0..6]
// (o, ht, dq, dk, dv, dg, dbeta).
typedef struct {
    pn_tensor q, k, v, g, b, dout, o, ht, dq, dk, dv, dg, db;
} saved_io;

static void fwd_bwd(const pn_gdn_cfg *c, saved_io *t, float **r, int corrupt_between) {
    if (pn_cuda_gdn_fwd(c, t->o.data, (float *)t->ht.data, t->q.data, t->k.data, t->v.data, (const float *)t->g.data,
                        (const float *)t->b.data, NULL))
        pn_panic("gdn fwd: %s", pn_last_error());
    if (corrupt_between) pn_backend_get(t->q.device)->memset0(c->saved, c->saved_bytes);
    if (pn_cuda_gdn_bwd(c, t->dq.data, t->dk.data, t->dv.data, (float *)t->dg.data, (float *)t->db.data, NULL,
                        t->dout.data, NULL, t->q.data, t->k.data, t->v.data, (const float *)t->g.data,
                        (const float *)t->b.data, NULL))
        pn_panic("gdn bwd: %s", pn_last_error());
    const pn_tensor *out[7] = {&t->o, &t->ht, &t->dq, &t->dk, &t->dv, &t->dg, &t->db};
    for (int i = 0; i < 7; i++) r[i] = dev_download(out[i]);
}

// The forward's intermediates kept for the backward (pn_gdn_cfg.saved) give the very bits recomputing them
// does, and the backward reads them (zeroed between the two, dq changes); a buffer one byte short of
// pn_gdn_saved_bytes, or off the 256-byte boundary, is left alone and the backward recomputes.
static void check_saved(const char *name, int64_t B, int64_t T, int64_t H, int64_t K, int64_t V, const int32_t *cu,
                        int64_t n_seqs) {
    const int64_t N = cu ? n_seqs : B, rows = B * T * H;
    const int64_t sq[4] = {B, T, H, K}, sv[4] = {B, T, H, V}, sg[3] = {B, T, H}, ss[4] = {N, H, K, V};
    float *q = rand_rows(rows, K, 0), *k = rand_rows(rows, K, 0), *v = randn(rows * V, 0, 1), *dout = randn(rows * V, 0, 1);
    float *g = rand_gates(rows, 0), *beta = rand_betas(rows);
    saved_io t = {dev_upload(q, PN_BF16, 4, sq), dev_upload(k, PN_BF16, 4, sq), dev_upload(v, PN_BF16, 4, sv),
                  dev_upload(g, PN_F32, 3, sg), dev_upload(beta, PN_F32, 3, sg), dev_upload(dout, PN_BF16, 4, sv),
                  dev_alloc(PN_BF16, 4, sv), dev_alloc(PN_F32, 4, ss), dev_alloc(PN_BF16, 4, sq),
                  dev_alloc(PN_BF16, 4, sq), dev_alloc(PN_BF16, 4, sv), dev_alloc(PN_F32, 3, sg),
                  dev_alloc(PN_F32, 3, sg)};
    pn_tensor gcu = cu ? dev_upload_i32(cu, n_seqs + 1) : (pn_tensor){0};
    int64_t chunks = 0;
    for (int64_t n = 0; n < N; n++) chunks += ((cu ? cu[n + 1] - cu[n] : T) + 63) / 64;
    const size_t need = pn_gdn_saved_bytes(B * T, chunks, H, K, V);
    pn_tensor buf = dev_alloc(PN_BF16, 1, (int64_t[]){(int64_t)(need / 2 + 256)});
    char *base = (char *)(((uintptr_t)buf.data + 255) & ~(uintptr_t)255);
    pn_gdn_cfg c = {.B = B, .T = T, .H = H, .K = K, .V = V, .qk_l2norm = 1};
    if (cu) c.cu_seqlens = (const int32_t *)gcu.data, c.n_seqs = n_seqs;
    float *r0[7], *r1[7], *r2[7], *r3[7], *r4[7];
    fwd_bwd(&c, &t, r0, 0); // recomputed
    pn_gdn_cfg cs = c;
    cs.saved = base, cs.saved_bytes = need;
    fwd_bwd(&cs, &t, r1, 0); // kept
    fwd_bwd(&cs, &t, r2, 1); // kept, then zeroed before the backward
    pn_gdn_cfg cshort = cs, cmis = cs;
    cshort.saved_bytes = need - 1;
    fwd_bwd(&cshort, &t, r3, 1); // too small: left alone (zeroing it changes nothing)
    cmis.saved = base + 16;
    cmis.saved_bytes = need;
    fwd_bwd(&cmis, &t, r4, 1); // misaligned: the same
    const int64_t n[7] = {rows * V, N * H * K * V, rows * K, rows * K, rows * V, rows, rows};
    int same = 1, same_short = 1, same_mis = 1;
    for (int i = 0; i < 7; i++) {
        same &= !memcmp(r0[i], r1[i], sizeof(float) * (size_t)n[i]);
        same_short &= !memcmp(r0[i], r3[i], sizeof(float) * (size_t)n[i]);
        same_mis &= !memcmp(r0[i], r4[i], sizeof(float) * (size_t)n[i]);
    }
    const int read = memcmp(r0[2], r2[2], sizeof(float) * (size_t)n[2]) != 0;
    const int ok = same && read && same_short && same_mis;
    printf("gdn saved %-8s B%lld T%lld H%lld K%lld V%lld: %zu bytes; kept = recomputed bit for bit %d, read by the "
           "backward %d, one byte short ignored %d, misaligned ignored %d %s\n",
           name, (long long)B, (long long)T, (long long)H, (long long)K, (long long)V, need, same, read, same_short,
           same_mis, ok ? "ok" : "FAIL");
    record(ok);
    for (int i = 0; i < 7; i++) free(r0[i]), free(r1[i]), free(r2[i]), free(r3[i]), free(r4[i]);
    pn_tensor *d[] = {&t.q, &t.k, &t.v, &t.g, &t.b, &t.dout, &t.o, &t.ht, &t.dq, &t.dk, &t.dv, &t.dg, &t.db, &buf};
    for (int i = 0; i < 14; i++) dev_free(d[i]);
    if (cu) dev_free(&gcu);
    free(q), free(k), free(v), free(dout), free(g), free(beta);
}

// Configurations the kernels cannot run come back as -1 with an error, touching nothing.
static void check_errors(void) {
    const pn_gdn_cfg bad = {.B = 1, .T = 4, .H = 1, .K = 300, .V = 8};
    const int rc = pn_cuda_gdn_bwd(&bad, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                                   NULL);
    const int ok = rc == -1 && strstr(pn_last_error(), "K = 300") != NULL;
    printf("gdn bwd K = 300 -> %d (%s) %s\n", rc, pn_last_error(), ok ? "ok" : "FAIL");
    record(ok);
}

// A large host array cycling through 2^22 − 3 draws (generating 10^8 normals would dominate the test).
static float *big_rows(int64_t n, int64_t K, int unit) {
    const int64_t base_n = (1 << 22) - 3;
    float *base = rand_rows(base_n / K, K, unit), *x = pn_malloc(sizeof(float) * (size_t)n);
    const int64_t period = base_n / K * K;
    for (int64_t i = 0; i < n; i++) x[i] = base[i % period];
    free(base);
    return x;
}

// B 8: the anchor shape (ANCHORS.md); B 2: the distillation step's (2 x 4096 tokens).
static void bench(int64_t B) {
    const int64_t T = 4096, H = 12, K = 96, V = 256, rows = B * T * H;
    const int64_t sq[4] = {B, T, H, K}, sv[4] = {B, T, H, V}, sg[3] = {B, T, H}, ss[4] = {B, H, K, V};
    float *q = big_rows(rows * K + 8, K, 0); // k is q shifted by 5 elements
    pn_tensor gq = dev_upload(q, PN_BF16, 4, sq), gk = dev_upload(q + 5, PN_BF16, 4, sq);
    free(q);
    float *v = big_rows(rows * V + 8, V, 0); // dout is v shifted by 3 elements
    pn_tensor gv = dev_upload(v, PN_BF16, 4, sv), gdo = dev_upload(v + 3, PN_BF16, 4, sv);
    free(v);
    float *g = rand_gates(rows, 0), *beta = rand_betas(rows);
    pn_tensor gg = dev_upload(g, PN_F32, 3, sg), gb = dev_upload(beta, PN_F32, 3, sg);
    free(g), free(beta);
    pn_tensor go = dev_alloc(PN_BF16, 4, sv), ght = dev_alloc(PN_F32, 4, ss);
    pn_tensor gdq = dev_alloc(PN_BF16, 4, sq), gdk = dev_alloc(PN_BF16, 4, sq), gdv = dev_alloc(PN_BF16, 4, sv);
    pn_tensor gdg = dev_alloc(PN_F32, 3, sg), gdb = dev_alloc(PN_F32, 3, sg);
    // the training path (the forward's intermediates kept for the backward, as the linear blocks do), then
    // with the backward recomputing them (fla's way: it keeps only A)
    const size_t need = pn_gdn_saved_bytes(B * T, B * T / 64, H, K, V);
    pn_tensor saved = dev_alloc(PN_BF16, 1, (int64_t[]){(int64_t)(need / 2 + 1)});
    for (int keep = 1; keep >= 0; keep--) {
        const pn_gdn_cfg c = {.B = B, .T = T, .H = H, .K = K, .V = V, .qk_l2norm = 1, .saved = keep ? saved.data : NULL,
                              .saved_bytes = keep ? need : 0};
        float ms[5], msb[5];
        for (int it = -1; it < 5; it++) {
            pn_cuda_timer_start();
            if (pn_cuda_gdn_fwd(&c, go.data, (float *)ght.data, gq.data, gk.data, gv.data, (const float *)gg.data,
                                (const float *)gb.data, NULL))
                pn_panic("gdn fwd: %s", pn_last_error());
            const float tf = pn_cuda_timer_stop_ms();
            pn_cuda_timer_start();
            if (pn_cuda_gdn_bwd(&c, gdq.data, gdk.data, gdv.data, (float *)gdg.data, (float *)gdb.data, NULL, gdo.data,
                                NULL, gq.data, gk.data, gv.data, (const float *)gg.data, (const float *)gb.data, NULL))
                pn_panic("gdn bwd: %s", pn_last_error());
            const float tb = pn_cuda_timer_stop_ms();
            if (it >= 0) ms[it] = tf + tb, msb[it] = tb;
        }
        qsort(ms, 5, sizeof(float), cmp_float);
        qsort(msb, 5, sizeof(float), cmp_float);
        printf("bench gdn fwd+bwd%s B%lld T4096 H12 K96 V256 qk_l2norm: %.3f ms (median of 5; min %.3f; bwd alone %.3f "
               "ms%s)\n",
               keep ? "" : " recompute", (long long)B, ms[2], ms[0], msb[2],
               !keep ? "" : B == 8 ? "; forward's intermediates kept: +0.63 GB; fla 6.00 ms" : "; intermediates kept");
    }
    pn_tensor *d[] = {&gq, &gk, &gv, &gdo, &gg, &gb, &go, &ght, &gdq, &gdk, &gdv, &gdg, &gdb, &saved};
    for (int i = 0; i < 14; i++) dev_free(d[i]);
}

int main(void) {
    if (!pn_cuda_available()) {
        printf("skipped: no CUDA device\n");
        return 0;
    }
    if (!PN_EMULATED && getenv("PN_TEST_BENCH_ONLY")) { // one shape alone (Nsight Compute): the anchor's, =2 B 2
        bench(getenv("PN_TEST_BENCH_ONLY")[0] == '2' ? 2 : 8);
        return 0;
    }
    static const int32_t cu[] = {0, 5, 69, 139};
    check_bwd("tiny", 1, 1, 2, 16, 24, 0, 0, 0, NULL, 0, 0);
    check_bwd("short", 2, 63, 3, 32, 64, 0, 0, 0, NULL, 0, 0);
    check_bwd("2chunks", 1, 65, 2, 64, 64, 0, 1, 1, NULL, 0, 0);
    check_bwd("l2norm", 1, 200, 4, 96, 256, 1, 1, 1, NULL, 0, 0);
    check_bwd("deltanet", 1, 130, 1, 128, 256, 0, 1, 1, NULL, 0, 1);
    check_bwd("varlen", 1, 139, 2, 64, 96, 0, 1, 1, cu, 3, 0);
    check_bwd("odd-dims", 2, 70, 1, 33, 70, 1, 1, 1, NULL, 0, 0);
    if (!(PN_EMULATED && getenv("PN_TEST_QUICK"))) // the state kernel's one-stage path (270 walks)
    check_bwd("many-walks", 3, 70, 45, 96, 128, 1, 1, 1, NULL, 0, 0);
    if (!(PN_EMULATED && getenv("PN_TEST_QUICK"))) // the sanitized emulation: the release run covers it
    check_bwd("K256-V1024", 1, 300, 1, 256, 1024, 0, 1, 1, NULL, 0, 0);
    check_saved("uniform", 2, 130, 3, 96, 128, NULL, 0);
    check_saved("varlen", 1, 139, 2, 64, 96, cu, 3);
    check_errors();
    if (!PN_EMULATED && !getenv("PN_TEST_NO_BENCH")) bench(8), bench(2);
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail != 0;
}
