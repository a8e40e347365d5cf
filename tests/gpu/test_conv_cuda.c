// The causal depthwise convolutions of the CUDA backend (kernels/cuda/conv1d.cu: static and dynamic kernels,
// packed sequences, their backward, and the generation form conv1d_continue) against the CPU backend on the
// same bf16-rounded random inputs, with fla-style RMS-ratio tolerances; parameter gradients pre-filled with
// random values on both sides (they must accumulate). Built twice: for the GPU, and with PN_CUDA_EMU against
// the host emulation of the kernels (tests/emu), so the CPU suite runs the kernels' own code (the walks'
// vector widths, the tiles, sequence starts) on every machine. Exits 0 without a GPU.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_test.h"
#include "pair_test.h"

#ifdef PN_CUDA_EMU // the emulated kernels directly (emu_names.h renames them); the "device" tensors are host memory
void pn_cuda_conv1d(pn_tensor *y, const pn_tensor *x, const pn_tensor *w, const pn_tensor *bias, const pn_tensor *kdyn,
                    int act_silu, const pn_tensor *cu_seqlens);
void pn_cuda_conv1d_bwd(pn_tensor *dx, pn_tensor *dw, pn_tensor *dbias, pn_tensor *dkdyn, const pn_tensor *dy,
                        const pn_tensor *x, const pn_tensor *w, const pn_tensor *bias, const pn_tensor *kdyn,
                        int act_silu, const pn_tensor *cu_seqlens);
void pn_cuda_conv1d_continue(pn_tensor *y, pn_tensor *cache, const pn_tensor *x, const pn_tensor *w,
                             const pn_tensor *kdyn, int act_silu);
#define DEV(op) pn_cuda_##op
static void copy_in(void *d, const void *h, size_t n) { memcpy(d, h, n); }
#else
#define DEV(op) pn_op_##op
static void copy_in(void *d, const void *h, size_t n) { pn_cuda_backend.memcpy_h2d(d, h, n); }
#endif

static void test_conv(int64_t B, int64_t T, int64_t C, int W, int dynamic, int bias, int act, const int32_t *cu,
                      int nseq) {
    const int64_t sx[3] = {B, T, C}, sw[2] = {C, W}, sk[3] = {B, T, C * W}, sb[1] = {C}, sc[1] = {nseq + 1};
    pair x = mk(3, sx, ACT, 0, 1), y = mk(3, sx, ACT, 0, 1), dy = mk(3, sx, ACT, 0, 1), dx = mk(3, sx, ACT, 0, 1);
    pair w = mk(2, sw, ACT, 0, 0.4f), bb = mk(1, sb, ACT, 0, 0.2f), kd = mk(3, sk, ACT, 0, 0.4f);
    pair dw = mk(2, sw, GRAD, 0, 1), db = mk(1, sb, GRAD, 0, 1), dk = mk(3, sk, ACT, 0, 1);
    pn_tensor cc = {0}, cg = {0};
    if (cu) {
        cc = pn_view((void *)cu, PN_I32, PN_CPU, 1, sc);
        cg = dev_alloc(PN_I32, 1, sc);
        copy_in(cg.data, cu, sizeof(int32_t) * (size_t)(nseq + 1));
    }
    const pn_tensor *wc = dynamic ? NULL : &w.c, *wg = dynamic ? NULL : &w.g;
    const pn_tensor *bc = bias ? &bb.c : NULL, *bg = bias ? &bb.g : NULL;
    pn_op_conv1d(&y.c, &x.c, wc, bc, dynamic ? &kd.c : NULL, act, cu ? &cc : NULL);
    DEV(conv1d)(&y.g, &x.g, wg, bg, dynamic ? &kd.g : NULL, act, cu ? &cg : NULL);
    char name[128];
    snprintf(name, sizeof name, "conv1d %s W %d C %lld [%lld, %lld]%s%s%s", dynamic ? "dynamic" : "static", W,
             (long long)C, (long long)B, (long long)T, bias ? " bias" : "", act ? " silu" : "", cu ? " packed" : "");
    rel(name, &y, 0.005);
    pn_op_conv1d_bwd(&dx.c, dynamic ? NULL : &dw.c, bias ? &db.c : NULL, dynamic ? &dk.c : NULL, &dy.c, &x.c, wc, bc,
                     dynamic ? &kd.c : NULL, act, cu ? &cc : NULL);
    DEV(conv1d_bwd)(&dx.g, dynamic ? NULL : &dw.g, bias ? &db.g : NULL, dynamic ? &dk.g : NULL, &dy.g, &x.g, wg, bg,
                     dynamic ? &kd.g : NULL, act, cu ? &cg : NULL);
    rel("  backward dx", &dx, 0.01);
    if (dynamic) rel("  backward dkdyn", &dk, 0.01);
    else rel("  backward dw (accumulated)", &dw, 0.01);
    if (bias) rel("  backward dbias (accumulated)", &db, 0.01);
    if (cu) dev_free(&cg);
    drop(&x), drop(&y), drop(&dy), drop(&dx), drop(&w), drop(&bb), drop(&kd), drop(&dw), drop(&db), drop(&dk);
}

#if !PN_EMULATED
// The GDN convolutions of the distillation step (B 2, T 4096; q, k 1152 channels, v 3072; 4 taps, SiLU),
// forward and backward, timed (median of 5 after one warm-up).
void pn_cuda_timer_start(void);
float pn_cuda_timer_stop_ms(void);
static void bench_conv(void) {
    const int64_t C[2] = {1152, 3072};
    for (int i = 0; i < 2; i++) {
        const int64_t sx[3] = {2, 4096, C[i]}, sw[2] = {C[i], 4};
        pn_tensor x = dev_alloc(PN_BF16, 3, sx), y = dev_alloc(PN_BF16, 3, sx), dx = dev_alloc(PN_BF16, 3, sx);
        pn_tensor w = dev_alloc(PN_BF16, 2, sw), dw = dev_alloc(PN_F32, 2, sw);
        pn_cuda_backend.memset0(x.data, pn_nbytes(&x));
        pn_cuda_backend.memset0(w.data, pn_nbytes(&w));
        pn_cuda_backend.memset0(dw.data, pn_nbytes(&dw));
        float f[6], b[6];
        for (int it = 0; it < 6; it++) {
            pn_cuda_timer_start();
            pn_op_conv1d(&y, &x, &w, NULL, NULL, 1, NULL);
            f[it] = pn_cuda_timer_stop_ms();
            pn_cuda_timer_start();
            pn_op_conv1d_bwd(&dx, &dw, NULL, NULL, &y, &x, &w, NULL, NULL, 1, NULL);
            b[it] = pn_cuda_timer_stop_ms();
        }
        qsort(f + 1, 5, sizeof(float), cmp_float);
        qsort(b + 1, 5, sizeof(float), cmp_float);
        printf("bench conv1d static W 4 silu [2, 4096, %lld]: forward %.3f ms, backward %.3f ms (bytes at 3 TB/s: "
               "%.3f, %.3f)\n",
               (long long)C[i], f[3], b[3], 2 * pn_nbytes(&x) / 3e9, 3 * pn_nbytes(&x) / 3e9);
        dev_free(&x), dev_free(&y), dev_free(&dx), dev_free(&w), dev_free(&dw);
    }
}
#endif

// conv1d_continue (generation): CUDA against the CPU, both the outputs and the updated history, and bit for
// bit against CUDA's conv1d over each sequence's history + new rows (the unfused path it replaces).
static void test_conv_continue(int64_t B, int64_t T, int64_t C, int W, int dynamic) {
    const int64_t H = W - 1, E = H + T, sx[3] = {B, T, C}, sh[3] = {B, H, C}, sw[2] = {C, W}, sk[3] = {B, T, C * W};
    pair x = mk(3, sx, ACT, 0, 1), y = mk(3, sx, ACT, 0, 1), cache = mk(3, sh, ACT, 0, 1);
    pair w = mk(2, sw, ACT, 0, 0.4f), kd = mk(3, sk, ACT, 0, 0.4f);
    // the unfused reference on the device, from the same values: [B, E, C] rows, the history rows' kernels 0
    const int64_t se[3] = {B, E, C}, ske[3] = {B, E, C * W};
    float *eh = pn_malloc(sizeof(float) * (size_t)(B * E * C)), *keh = pn_calloc((size_t)(B * E * C * W), sizeof(float));
    for (int64_t b = 0; b < B; b++) {
        memcpy(eh + b * E * C, cache.h + b * H * C, sizeof(float) * (size_t)(H * C));
        memcpy(eh + (b * E + H) * C, x.h + b * T * C, sizeof(float) * (size_t)(T * C));
        memcpy(keh + (b * E + H) * C * W, kd.h + b * T * C * W, sizeof(float) * (size_t)(T * C * W));
    }
    pn_tensor eg = dev_upload(eh, ACT, 3, se), keg = dev_upload(keh, ACT, 3, ske), yeg = dev_alloc(ACT, 3, se);
    DEV(conv1d)(&yeg, &eg, dynamic ? NULL : &w.g, NULL, dynamic ? &keg : NULL, 1, NULL);
    pn_op_conv1d_continue(&y.c, &cache.c, &x.c, dynamic ? NULL : &w.c, dynamic ? &kd.c : NULL, 1);
    DEV(conv1d_continue)(&y.g, &cache.g, &x.g, dynamic ? NULL : &w.g, dynamic ? &kd.g : NULL, 1);
    char name[128];
    snprintf(name, sizeof name, "conv1d_continue %s W %d C %lld [%lld, %lld] silu", dynamic ? "dynamic" : "static", W,
             (long long)C, (long long)B, (long long)T);
    float *got = dev_download(&y.g), *gotc = dev_download(&cache.g), *ye = dev_download(&yeg);
    int64_t diff = 0;
    for (int64_t b = 0; b < B; b++) {
        diff += memcmp(got + b * T * C, ye + (b * E + H) * C, sizeof(float) * (size_t)(T * C)) != 0;
        diff += memcmp(gotc + b * H * C, eh + (b * E + T) * C, sizeof(float) * (size_t)(H * C)) != 0;
    }
    rel(name, &y, 0.005);
    rel("  history (the last W - 1 rows)", &cache, 0.0);
    printf("%-44s %lld sequences differ %s\n", "  = conv1d over history + new rows, bits", (long long)diff, diff ? "FAIL" : "ok");
    fails += diff != 0;
    cases++;
    free(got), free(gotc), free(ye), free(eh), free(keh);
    dev_free(&eg), dev_free(&keg), dev_free(&yeg);
    drop(&x), drop(&y), drop(&cache), drop(&w), drop(&kd);
}

int main(void) {
    if (!pn_cuda_available()) {
        printf("skipped: no CUDA device\n");
        return 0;
    }
    const int32_t cu[6] = {0, 1, 64, 65, 300, 517};
    test_conv(2, 517, 3072, 4, 0, 1, 1, NULL, 0); // the GDN value convolution's width
    test_conv(2, 517, 1152, 4, 0, 0, 1, NULL, 0); // q, k
    test_conv(1, 517, 160, 4, 1, 0, 1, cu, 5);    // a width of 8-channel groups that fill no whole warps
    test_conv(2, 517, 100, 3, 0, 0, 0, NULL, 0);
    test_conv(2, 517, 768, 4, 1, 0, 1, NULL, 0);
    test_conv(1, 517, 256, 4, 0, 1, 1, cu, 5);
    test_conv(1, 517, 256, 4, 1, 0, 1, cu, 5);
    test_conv(2, 517, 101, 4, 0, 1, 1, NULL, 0); // odd C: one channel a thread
    test_conv(1, 517, 99, 2, 1, 0, 1, cu, 5);    // odd C, dynamic, packed, W 2
    test_conv(3, 70, 64, 1, 0, 1, 0, NULL, 0);   // W 1
    test_conv(2, 300, 64, 5, 0, 1, 1, NULL, 0);  // W 5: the three-kernel backward
    test_conv(1, 300, 64, 6, 1, 0, 1, cu, 5);    // the same, dynamic and packed
#if !PN_EMULATED
    if (!getenv("PN_TEST_NO_BENCH")) bench_conv();
#endif
    test_conv_continue(156, 1, 3072, 4, 1); // Jet-Nemotron-2B's value convolution at batch 156, decoding
    test_conv_continue(3, 1, 2048, 4, 0);   // a GDN q/k/v convolution
    test_conv_continue(2, 5, 100, 4, 1);    // several new tokens (more than the history)
    test_conv_continue(2, 2, 64, 3, 0);     // fewer
    printf("%d passed, %d failed\n", cases - fails, fails);
    return fails ? 1 : 0;
}
