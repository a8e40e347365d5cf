// The CUDA attention backward against the CPU one (kernels/cpu/attention.c, itself checked against torch
// autograd by tests/test_attention.c) on the same bf16-rounded inputs, with fla's RMS-ratio tolerance for
// dq, dk, dv (0.008), then the time of forward + backward at the anchor shape (SDPA: 3.20 ms), causal and with
// a sliding window of 1152. Set PN_TEST_NO_BENCH=1 to skip the timing (compute-sanitizer runs).
#include <stdio.h>
#include <stdlib.h>

#include "gpu_test.h"
#include "kernels/ops.h"
#include "src/pn_common.h"

void pn_cuda_timer_start(void);
float pn_cuda_timer_stop_ms(void);

static int n_pass, n_fail;

static void check(int64_t B, int64_t T, int64_t Hq, int64_t Hkv, int64_t D, int window) {
    const int64_t sq[4] = {B, T, Hq, D}, sk[4] = {B, T, Hkv, D}, nq = B * T * Hq * D, nk = B * T * Hkv * D;
    float *q = randn(nq, 0, 1), *k = randn(nk, 0, 1), *v = randn(nk, 0, 1), *dout = randn(nq, 0, 1);
    float *o = pn_malloc(sizeof(float) * (size_t)nq), *dq = pn_malloc(sizeof(float) * (size_t)nq);
    float *dk = pn_malloc(sizeof(float) * (size_t)nk), *dv = pn_malloc(sizeof(float) * (size_t)nk);
    pn_tensor hq = pn_view(q, PN_F32, PN_CPU, 4, sq), hk = pn_view(k, PN_F32, PN_CPU, 4, sk), hv = pn_view(v, PN_F32, PN_CPU, 4, sk);
    pn_tensor hdo = pn_view(dout, PN_F32, PN_CPU, 4, sq), ho = pn_view(o, PN_F32, PN_CPU, 4, sq);
    pn_tensor hdq = pn_view(dq, PN_F32, PN_CPU, 4, sq), hdk = pn_view(dk, PN_F32, PN_CPU, 4, sk), hdv = pn_view(dv, PN_F32, PN_CPU, 4, sk);
    pn_op_attention(&ho, &hq, &hk, &hv, 0, window);
    pn_op_attention_bwd(&hdq, &hdk, &hdv, &hdo, &hq, &hk, &hv, &ho, NULL, window, NULL);

    pn_tensor gq = dev_upload(q, PN_BF16, 4, sq), gk = dev_upload(k, PN_BF16, 4, sk), gv = dev_upload(v, PN_BF16, 4, sk);
    pn_tensor gdo = dev_upload(dout, PN_BF16, 4, sq), go = dev_alloc(PN_BF16, 4, sq), gdq = dev_alloc(PN_BF16, 4, sq);
    pn_tensor gdk = dev_alloc(PN_BF16, 4, sk), gdv = dev_alloc(PN_BF16, 4, sk);
    pn_op_attention(&go, &gq, &gk, &gv, 0, window);
    pn_op_attention_bwd(&gdq, &gdk, &gdv, &gdo, &gq, &gk, &gv, &go, NULL, window, NULL);
    float *rdq = dev_download(&gdq), *rdk = dev_download(&gdk), *rdv = dev_download(&gdv);
    const double eq = relerr(rdq, dq, nq), ek = relerr(rdk, dk, nk), ev = relerr(rdv, dv, nk);
    int ok = eq <= 0.008 && ek <= 0.008 && ev <= 0.008;
    printf("attention_bwd B%lld T%lld Hq%lld Hkv%lld D%lld win%d  dq %.2e dk %.2e dv %.2e %s\n", (long long)B,
           (long long)T, (long long)Hq, (long long)Hkv, (long long)D, window, eq, ek, ev, ok ? "ok" : "FAIL");
    ok ? n_pass++ : n_fail++;
    { // the training forward's statistics, and the backward that uses them
        const int64_t sl[3] = {B, T, Hq}, nl = B * T * Hq;
        float *hl = pn_malloc(sizeof(float) * (size_t)nl), *o2 = pn_malloc(sizeof(float) * (size_t)nq);
        pn_tensor hlse = pn_view(hl, PN_F32, PN_CPU, 3, sl), ho2 = pn_view(o2, PN_F32, PN_CPU, 4, sq);
        pn_op_attention_train(&ho2, &hlse, &hq, &hk, &hv, window, NULL);
        pn_tensor glse = dev_alloc(PN_F32, 3, sl);
        pn_op_attention_train(&go, &glse, &gq, &gk, &gv, window, NULL);
        pn_op_attention_bwd(&gdq, &gdk, &gdv, &gdo, &gq, &gk, &gv, &go, &glse, window, NULL);
        float *rl = dev_download(&glse), *ro = dev_download(&go);
        float *sdq = dev_download(&gdq), *sdk = dev_download(&gdk), *sdv = dev_download(&gdv);
        double el = 0; // absolute: lse is a log
        for (int64_t i = 0; i < nl; i++) el = fmax(el, fabs((double)rl[i] - hl[i]));
        const double eo = relerr(ro, o, nq), e2q = relerr(sdq, dq, nq), e2k = relerr(sdk, dk, nk), e2v = relerr(sdv, dv, nk);
        ok = el <= 0.02 && eo <= 0.005 && e2q <= 0.008 && e2k <= 0.008 && e2v <= 0.008;
        printf("  attention_train lse max abs err %.2e, o %.2e; backward from lse dq %.2e dk %.2e dv %.2e %s\n", el,
               eo, e2q, e2k, e2v, ok ? "ok" : "FAIL");
        ok ? n_pass++ : n_fail++;
        free(hl), free(o2), free(rl), free(ro), free(sdq), free(sdk), free(sdv);
        dev_free(&glse);
    }
    pn_tensor *g[] = {&gq, &gk, &gv, &gdo, &go, &gdq, &gdk, &gdv};
    for (int i = 0; i < 8; i++) dev_free(g[i]);
    float *h[] = {q, k, v, dout, o, dq, dk, dv, rdq, rdk, rdv};
    for (int i = 0; i < 11; i++) free(h[i]);
}

// A packed batch (cu_seqlens) in one call: RoPE from each document's start, the training forward with its
// statistics and the backward, CUDA against the CPU (whose packed ops tests/test_attention.c checks against
// per-document calls). Documents of 1 token, shorter than a tile, and spanning tile and block edges.
static void check_packed(int ndoc, const int32_t *len, int64_t Hq, int64_t Hkv, int64_t D, int window) {
    int32_t *cu = pn_malloc(sizeof(int32_t) * (size_t)(ndoc + 1));
    cu[0] = 0;
    for (int i = 0; i < ndoc; i++) cu[i + 1] = cu[i] + len[i];
    const int64_t N = cu[ndoc], sq[4] = {1, N, Hq, D}, sk[4] = {1, N, Hkv, D}, sl[3] = {1, N, Hq};
    const int64_t nq = N * Hq * D, nk = N * Hkv * D, scu[1] = {ndoc + 1}, sf[1] = {D / 2};
    float *q = randn(nq, 0, 1), *k = randn(nk, 0, 1), *v = randn(nk, 0, 1), *dout = randn(nq, 0, 1);
    float *f = pn_malloc(sizeof(float) * (size_t)(D / 2));
    for (int64_t i = 0; i < D / 2; i++) f[i] = powf(10000.0f, -2.0f * (float)i / (float)D);
    pn_tensor hcu = pn_view(cu, PN_I32, PN_CPU, 1, scu), hf = pn_view(f, PN_F32, PN_CPU, 1, sf);
    pn_tensor gcu = dev_alloc(PN_I32, 1, scu), gf = dev_upload(f, PN_F32, 1, sf);
    pn_cuda_backend.memcpy_h2d(gcu.data, cu, sizeof(int32_t) * (size_t)(ndoc + 1));

    // RoPE: the GPU's rotated q against the CPU's; then both attentions start from the CPU's, bf16-rounded.
    pn_tensor hq = pn_view(q, PN_F32, PN_CPU, 4, sq), hk = pn_view(k, PN_F32, PN_CPU, 4, sk);
    pn_tensor gq = dev_upload(q, PN_BF16, 4, sq);
    pn_op_rope(&hq, &hf, 0, &hcu);
    pn_op_rope(&gq, &gf, 0, &gcu);
    pn_op_rope(&hk, &hf, 0, &hcu);
    float *rq = dev_download(&gq);
    const double erope = relerr(rq, q, nq);
    for (int64_t i = 0; i < nq; i++) q[i] = bf16_round(q[i]);
    for (int64_t i = 0; i < nk; i++) k[i] = bf16_round(k[i]);

    float *o = pn_malloc(sizeof(float) * (size_t)nq), *lse = pn_malloc(sizeof(float) * (size_t)(N * Hq));
    float *dq = pn_malloc(sizeof(float) * (size_t)nq), *dk = pn_malloc(sizeof(float) * (size_t)nk);
    float *dv = pn_malloc(sizeof(float) * (size_t)nk);
    pn_tensor hv = pn_view(v, PN_F32, PN_CPU, 4, sk), hdo = pn_view(dout, PN_F32, PN_CPU, 4, sq);
    pn_tensor ho = pn_view(o, PN_F32, PN_CPU, 4, sq), hl = pn_view(lse, PN_F32, PN_CPU, 3, sl);
    pn_tensor hdq = pn_view(dq, PN_F32, PN_CPU, 4, sq), hdk = pn_view(dk, PN_F32, PN_CPU, 4, sk);
    pn_tensor hdv = pn_view(dv, PN_F32, PN_CPU, 4, sk);
    pn_op_attention_train(&ho, &hl, &hq, &hk, &hv, window, &hcu);
    pn_op_attention_bwd(&hdq, &hdk, &hdv, &hdo, &hq, &hk, &hv, &ho, &hl, window, &hcu);

    dev_free(&gq);
    gq = dev_upload(q, PN_BF16, 4, sq);
    pn_tensor gk = dev_upload(k, PN_BF16, 4, sk), gv = dev_upload(v, PN_BF16, 4, sk), gdo = dev_upload(dout, PN_BF16, 4, sq);
    pn_tensor go = dev_alloc(PN_BF16, 4, sq), gl = dev_alloc(PN_F32, 3, sl), gdq = dev_alloc(PN_BF16, 4, sq);
    pn_tensor gdk = dev_alloc(PN_BF16, 4, sk), gdv = dev_alloc(PN_BF16, 4, sk);
    pn_op_attention_train(&go, &gl, &gq, &gk, &gv, window, &gcu);
    double e[2][3];
    for (int with_lse = 1; with_lse >= 0; with_lse--) { // from the statistics, then recomputing them
        pn_op_attention_bwd(&gdq, &gdk, &gdv, &gdo, &gq, &gk, &gv, &go, with_lse ? &gl : NULL, window, &gcu);
        float *rdq = dev_download(&gdq), *rdk = dev_download(&gdk), *rdv = dev_download(&gdv);
        e[with_lse][0] = relerr(rdq, dq, nq), e[with_lse][1] = relerr(rdk, dk, nk), e[with_lse][2] = relerr(rdv, dv, nk);
        free(rdq), free(rdk), free(rdv);
    }
    float *ro = dev_download(&go), *rl = dev_download(&gl);
    double el = 0;
    for (int64_t i = 0; i < N * Hq; i++) el = fmax(el, fabs((double)rl[i] - lse[i]));
    const double eo = relerr(ro, o, nq);
    int ok = erope <= 0.01 && eo <= 0.005 && el <= 0.02;
    for (int i = 0; i < 2; i++) ok = ok && e[i][0] <= 0.008 && e[i][1] <= 0.008 && e[i][2] <= 0.008;
    printf("packed %d docs N%lld Hq%lld Hkv%lld D%lld win%d  rope %.1e o %.2e lse %.1e  dq %.2e dk %.2e dv %.2e "
           "(recomputed: %.2e %.2e %.2e) %s\n", ndoc, (long long)N, (long long)Hq, (long long)Hkv, (long long)D, window,
           erope, eo, el, e[1][0], e[1][1], e[1][2], e[0][0], e[0][1], e[0][2], ok ? "ok" : "FAIL");
    ok ? n_pass++ : n_fail++;
    pn_tensor *g[] = {&gq, &gk, &gv, &gdo, &go, &gl, &gdq, &gdk, &gdv, &gcu, &gf};
    for (int i = 0; i < 11; i++) dev_free(g[i]);
    float *h[] = {q, k, v, dout, o, lse, dq, dk, dv, f, rq, ro, rl};
    for (int i = 0; i < 13; i++) free(h[i]);
    free(cu);
}

static void bench(void) {
    // PN_BENCH_B: another batch (2 is the distillation step's 2 x 4096)
    const int64_t B = getenv("PN_BENCH_B") && atoi(getenv("PN_BENCH_B")) > 0 && atoi(getenv("PN_BENCH_B")) <= 64
                          ? atoi(getenv("PN_BENCH_B")) : 8, T = 4096, Hq = 12, Hkv = 2, D = 128, sq[4] = {B, T, Hq, D}, sk[4] = {B, T, Hkv, D};
    float *x = randn(B * T * Hq * D, 0, 1);
    pn_tensor q = dev_upload(x, PN_BF16, 4, sq), dout = dev_upload(x, PN_BF16, 4, sq), o = dev_alloc(PN_BF16, 4, sq);
    pn_tensor k = dev_upload(x, PN_BF16, 4, sk), v = dev_upload(x + 7, PN_BF16, 4, sk), dq = dev_alloc(PN_BF16, 4, sq);
    pn_tensor dk = dev_alloc(PN_BF16, 4, sk), dv = dev_alloc(PN_BF16, 4, sk);
    const int64_t sl[3] = {B, T, Hq};
    pn_tensor lse = dev_alloc(PN_F32, 3, sl);
    // the inference forward; the training one keeping the statistics; the same with Jet-Nemotron-2B's sliding
    // window of 1152 (FlexAttention's time for it: anchor_torch.py's swa_fwdbwd_ms)
    for (int mode = 0; mode < 3; mode++) {
        const int with_lse = mode > 0, window = mode == 2 ? 1152 : 0;
        float ms[5], fwd[5];
        for (int it = -1; it < 5; it++) {
            pn_cuda_timer_start();
            if (with_lse) pn_op_attention_train(&o, &lse, &q, &k, &v, window, NULL);
            else pn_op_attention(&o, &q, &k, &v, 0, 0);
            float f = pn_cuda_timer_stop_ms();
            pn_cuda_timer_start();
            pn_op_attention_bwd(&dq, &dk, &dv, &dout, &q, &k, &v, &o, with_lse ? &lse : NULL, window, NULL);
            float b = pn_cuda_timer_stop_ms();
            if (it >= 0) ms[it] = f + b, fwd[it] = f;
        }
        qsort(ms, 5, sizeof(float), cmp_float);
        qsort(fwd, 5, sizeof(float), cmp_float);
        if (window)
            printf("bench attention fwd+bwd B%d T4096 Hq12 Hkv2 D128 sliding window %d, training forward: %.2f ms (fwd "
                   "%.2f ms)\n", (int)B, window, ms[2], fwd[2]);
        else
            printf("bench attention fwd+bwd B%d T4096 Hq12 Hkv2 D128 causal%s: %.2f ms (fwd %.2f ms; SDPA anchor "
                   "fwd+bwd 3.20 ms at B8)\n", (int)B, with_lse ? ", training forward keeping the statistics" : "", ms[2], fwd[2]);
    }
    { // the same work as one packed batch of 8 documents of 4096 (training with document masking)
        const int64_t pq[4] = {1, B * T, Hq, D}, pk[4] = {1, B * T, Hkv, D}, pl[3] = {1, B * T, Hq}, scu[1] = {B + 1};
        pn_tensor q1 = pn_reshape(&q, 4, pq), o1 = pn_reshape(&o, 4, pq), do1 = pn_reshape(&dout, 4, pq);
        pn_tensor dq1 = pn_reshape(&dq, 4, pq), k1 = pn_reshape(&k, 4, pk), v1 = pn_reshape(&v, 4, pk);
        pn_tensor dk1 = pn_reshape(&dk, 4, pk), dv1 = pn_reshape(&dv, 4, pk), l1 = pn_reshape(&lse, 3, pl);
        int32_t cu[65];
        for (int i = 0; i <= B; i++) cu[i] = (int32_t)(i * T);
        pn_tensor gcu = dev_alloc(PN_I32, 1, scu);
        pn_cuda_backend.memcpy_h2d(gcu.data, cu, sizeof(int32_t) * (size_t)(B + 1));
        float ms[5], fwd[5];
        for (int it = -1; it < 5; it++) {
            pn_cuda_timer_start();
            pn_op_attention_train(&o1, &l1, &q1, &k1, &v1, 0, &gcu);
            float f = pn_cuda_timer_stop_ms();
            pn_cuda_timer_start();
            pn_op_attention_bwd(&dq1, &dk1, &dv1, &do1, &q1, &k1, &v1, &o1, &l1, 0, &gcu);
            float b = pn_cuda_timer_stop_ms();
            if (it >= 0) ms[it] = f + b, fwd[it] = f;
        }
        qsort(ms, 5, sizeof(float), cmp_float);
        qsort(fwd, 5, sizeof(float), cmp_float);
        printf("bench attention fwd+bwd packed %d x 4096 in one call (own kernels): %.2f ms (fwd %.2f ms)\n", (int)B, ms[2],
               fwd[2]);
        dev_free(&gcu);
    }
    dev_free(&lse);
    pn_tensor *g[] = {&q, &dout, &o, &k, &v, &dq, &dk, &dv};
    for (int i = 0; i < 8; i++) dev_free(g[i]);
    free(x);
}

int main(void) {
    if (!pn_cuda_available()) {
        printf("skipped: no CUDA device\n");
        return 0;
    }
    check(1, 3, 2, 2, 64, 0);
    check(2, 37, 4, 2, 64, 0);
    check(1, 200, 6, 2, 128, 0);
    check(1, 300, 4, 1, 128, 64);
    check(2, 257, 12, 2, 128, 2);   // sliding windows: two keys; wider than a tile; at least T
    check(1, 520, 6, 2, 64, 200);
    check(1, 130, 4, 2, 128, 500);
    check(2, 129, 12, 2, 128, 0);
    check(1, 70, 4, 2, 96, 0);
    static const int32_t docs_a[] = {100, 1, 250, 60, 101}, docs_b[] = {5, 1, 17, 9}, docs_c[] = {130, 70, 1, 199};
    check_packed(5, docs_a, 6, 2, 128, 0);  // flash kernels: documents across 64/128-row tiles and blocks
    check_packed(5, docs_a, 4, 1, 128, 64); // sliding window inside documents
    check_packed(4, docs_c, 4, 2, 64, 0);
    check_packed(4, docs_b, 4, 2, 64, 0);   // T < 64: the simple kernel
    check_packed(4, docs_c, 4, 2, 96, 5);   // the baseline backward and the naive statistics
    if (!getenv("PN_TEST_NO_BENCH")) bench();
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail != 0;
}
