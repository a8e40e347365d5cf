// The optimizer's ops of the CUDA backend (kernels/cuda/optim.cu: AdamW with an fp32 master copy, the sum of
// squares into fixed partials, and their lists) against the CPU backend on the same bf16-rounded random
// inputs, and the lists bit for bit against the one-tensor ops. Built twice: for the GPU, and with
// PN_CUDA_EMU against the host emulation of the kernels (tests/emu), so the CPU suite runs the kernels' own
// code. Exits 0 without a GPU.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_test.h"
#include "pair_test.h"

#ifdef PN_CUDA_EMU // the emulated kernels directly (emu_names.h renames them); the "device" tensors are host memory
void pn_cuda_adamw(pn_tensor *p, pn_tensor *master, pn_tensor *m, pn_tensor *v, const pn_tensor *g,
                   const pn_adamw_args *a);
void pn_cuda_sumsq(pn_tensor *partial, const pn_tensor *x);
void pn_cuda_adamw_list(const pn_adamw_item *items, int n);
void pn_cuda_sumsq_list(pn_tensor *partial, const pn_tensor *const *xs, int n);
#define DEV(op) pn_cuda_##op
#else
#define DEV(op) pn_op_##op
#endif

// AdamW on a bf16 parameter with its fp32 master copy, against the CPU's fp32 update of the same values.
// vec: the 4-wide kernel (aligned tensors) and its scalar tail; else views one element in (scalar)
static void test_adamw(int vec) {
    const int64_t n[1] = {(1 << 20) + 3};
    pair p = mk(1, n, ACT, 0, 1), g = mk(1, n, GRAD, 0, 0.1f), m = mk(1, n, GRAD, 0, 0.01f), v = mk(1, n, GRAD, 0, 0.001f);
    for (int64_t i = 0; i < n[0]; i++) v.h[i] = fabsf(v.h[i]);
    pn_op_from_host_f32(&v.g, v.h);
    pn_tensor master = dev_upload(p.h, PN_F32, 1, n);
    const pn_adamw_args a = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f,
                             .bc1 = 0.271f, .bc2 = 0.142625f, .grad_scale = 0.5f};
    if (vec) {
        pn_op_adamw(&p.c, NULL, &m.c, &v.c, &g.c, &a);
        DEV(adamw)(&p.g, &master, &m.g, &v.g, &g.g, &a);
    } else { // the same elements but the first on both sides: [1, n) of each tensor
        const int64_t k = n[0] - 1;
        pn_tensor pc = pn_rows(&p.c, 1, k), mc = pn_rows(&m.c, 1, k), vc = pn_rows(&v.c, 1, k), gc = pn_rows(&g.c, 1, k);
        pn_tensor pg = pn_rows(&p.g, 1, k), mg = pn_rows(&m.g, 1, k), vg = pn_rows(&v.g, 1, k), gg = pn_rows(&g.g, 1, k);
        pn_tensor wg = pn_rows(&master, 1, k);
        pn_op_adamw(&pc, NULL, &mc, &vc, &gc, &a);
        DEV(adamw)(&pg, &wg, &mg, &vg, &gg, &a);
    }
    pair w = {.h = p.h, .c = p.c, .g = master};
    rel(vec ? "adamw [1M] fp32 master" : "adamw [1M] fp32 master, misaligned", &w, 1e-6);
    rel("  bf16 parameter", &p, 0.004);
    rel("  m", &m, 1e-6);
    rel("  v", &v, 1e-6);
    dev_free(&master);
    drop(&p), drop(&g), drop(&m), drop(&v);
}

// off: the tensor starts `off` elements into its buffer (parts that start off the 16-byte boundary)
static void test_sumsq(pn_dtype dt, int64_t count, int64_t P, int64_t off) {
    const int64_t n[1] = {count + off}, sp[1] = {P};
    pair x = mk(1, n, dt, 0, 1), part = mk(1, sp, GRAD, 0, 1);
    const pn_tensor xc = pn_rows(&x.c, off, count), xg = pn_rows(&x.g, off, count);
    pn_op_sumsq(&part.c, &xc);
    DEV(sumsq)(&part.g, &xg);
    char name[80];
    snprintf(name, sizeof name, "sumsq [%lld] %s +%lld, %lld partials", (long long)count, dt == PN_BF16 ? "bf16" : "f32",
             (long long)off, (long long)P);
    rel(name, &part, 1e-5);
    drop(&x), drop(&part);
}

// 40 tensors (more than the 32 of a launch) of 0 .. 300,007 elements: bf16 parameters with fp32 masters and
// fp32 parameters updated in place, 16-byte aligned (the 4-wide path) and one element in (scalar), each with
// its own bias corrections and weight decay. sumsq_list (of the gradients and some bf16 parameters, every
// third tensor left out: its row untouched), then adamw_list, against the one-tensor ops on the device (bits)
// and against the CPU's lists.
#define NL 40
static void test_lists(void) {
    static const int64_t sizes[8] = {1, 3, 12, 4099, 300007, 0, 65537, 256};
    pair p[NL], g[NL], m[NL], v[NL];
    pn_tensor w[NL], p2[NL], w2[NL], m2[NL], v2[NL];           // the one-by-one copies on the device
    pn_tensor vp[NL], vg[NL], vm[NL], vv[NL], vw[NL], vp2[NL], vw2[NL], vm2[NL], vv2[NL], cp[NL], cg[NL], cm[NL], cv[NL];
    pn_adamw_item it[NL], itc[NL];
    const pn_tensor *xs[NL], *xc[NL];
    for (int k = 0; k < NL; k++) {
        const int64_t n = sizes[k % 8] + (k / 8), off = k % 3 == 1, len[1] = {n + off};
        const pn_dtype pd = k % 2 ? PN_F32 : ACT;
        p[k] = mk(1, len, pd, 0, 1), g[k] = mk(1, len, GRAD, 0, 0.1f), m[k] = mk(1, len, GRAD, 0, 0.01f);
        v[k] = mk(1, len, GRAD, 0, 0.001f);
        for (int64_t i = 0; i < len[0]; i++) v[k].h[i] = fabsf(v[k].h[i]);
        pn_op_from_host_f32(&v[k].g, v[k].h);
        w[k] = dev_upload(p[k].h, PN_F32, 1, len), w2[k] = dev_upload(p[k].h, PN_F32, 1, len);
        p2[k] = dev_upload(p[k].h, pd, 1, len), m2[k] = dev_upload(m[k].h, PN_F32, 1, len);
        v2[k] = dev_upload(v[k].h, PN_F32, 1, len);
        vp[k] = pn_rows(&p[k].g, off, n), vg[k] = pn_rows(&g[k].g, off, n), vm[k] = pn_rows(&m[k].g, off, n);
        vv[k] = pn_rows(&v[k].g, off, n), vw[k] = pn_rows(&w[k], off, n), vp2[k] = pn_rows(&p2[k], off, n);
        vw2[k] = pn_rows(&w2[k], off, n), vm2[k] = pn_rows(&m2[k], off, n), vv2[k] = pn_rows(&v2[k], off, n);
        cp[k] = pn_rows(&p[k].c, off, n), cg[k] = pn_rows(&g[k].c, off, n), cm[k] = pn_rows(&m[k].c, off, n);
        cv[k] = pn_rows(&v[k].c, off, n);
        const pn_adamw_args a = {.lr = 1e-3f * (1 + k % 5), .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                                 .weight_decay = k % 4 ? 0.1f : 0.0f, .bc1 = 1.0f - powf(0.9f, (float)(k + 1)),
                                 .bc2 = 1.0f - powf(0.95f, (float)(k + 1)), .grad_scale = 0.5f};
        const int master = pd != PN_F32;
        it[k] = (pn_adamw_item){&vp[k], master ? &vw[k] : NULL, &vm[k], &vv[k], &vg[k], a};
        itc[k] = (pn_adamw_item){&cp[k], NULL, &cm[k], &cv[k], &cg[k], a};
        DEV(adamw)(&vp2[k], master ? &vw2[k] : NULL, &vm2[k], &vv2[k], &vg[k], &a);
        xs[k] = k % 3 == 2 ? NULL : k % 4 ? &vg[k] : &vp[k]; // bf16 parameters and fp32 gradients
        xc[k] = k % 3 == 2 ? NULL : k % 4 ? &cg[k] : &cp[k];
    }
    const int64_t P = 256, sp[2] = {NL, P};
    pair part = mk(2, sp, GRAD, 0, 1);
    pn_tensor part2 = dev_upload(part.h, PN_F32, 2, sp);
    float *before = dev_download(&part.g);
    DEV(sumsq_list)(&part.g, xs, NL);
    pn_op_sumsq_list(&part.c, xc, NL);
    for (int k = 0; k < NL; k++) {
        if (!xs[k]) continue;
        pn_tensor row = pn_rows(&part2, k, 1);
        row = pn_reshape(&row, 1, &P);
        DEV(sumsq)(&row, xs[k]);
    }
    float *got = dev_download(&part.g), *ref = dev_download(&part2);
    int64_t sdiff = 0, kept = 0;
    for (int k = 0; k < NL; k++) {
        sdiff += memcmp(got + k * P, ref + k * P, sizeof(float) * (size_t)P) != 0;
        if (!xs[k]) kept += memcmp(got + k * P, before + k * P, sizeof(float) * (size_t)P) == 0;
    }
    printf("%-44s %lld rows differ, %lld of %d left-out rows kept %s\n", "sumsq_list [40] = sumsq one by one, bits",
           (long long)sdiff, (long long)kept, NL / 3, sdiff == 0 && kept == NL / 3 ? "ok" : "FAIL");
    fails += !(sdiff == 0 && kept == NL / 3);
    cases++;
    rel("  against the CPU's sumsq_list", &part, 1e-5);
    free(got), free(ref), free(before);
    dev_free(&part2);
    drop(&part);
    DEV(adamw_list)(it, NL);
    pn_op_adamw_list(itc, NL);
    int64_t diff = 0;
    double worst = 0;
    for (int k = 0; k < NL; k++) {
        const int master = p[k].g.dtype != PN_F32;
        const pn_tensor *got[3] = {master ? &w[k] : &p[k].g, &m[k].g, &v[k].g}, *ref[3] = {master ? &w2[k] : &p2[k], &m2[k], &v2[k]};
        const float *cpu[3] = {p[k].h, m[k].h, v[k].h};
        for (int j = 0; j < 3; j++) {
            float *a = dev_download(got[j]), *b = dev_download(ref[j]);
            const int64_t n = pn_numel(got[j]);
            diff += memcmp(a, b, sizeof(float) * (size_t)n) != 0;
            const double e = relerr(a, cpu[j], n);
            if (e > worst) worst = e;
            free(a), free(b);
        }
        if (master) {
            float *a = dev_download(&p[k].g), *b = dev_download(&p2[k]);
            diff += memcmp(a, b, sizeof(float) * (size_t)pn_numel(&p[k].g)) != 0;
            free(a), free(b);
        }
    }
    printf("%-44s %lld arrays differ, rel err vs CPU %.2e (tol 1e-06) %s\n", "adamw_list [40] = adamw one by one, bits",
           (long long)diff, worst, diff == 0 && worst <= 1e-6 ? "ok" : "FAIL");
    fails += !(diff == 0 && worst <= 1e-6);
    cases++;

    for (int k = 0; k < NL; k++) {
        dev_free(&w[k]), dev_free(&w2[k]), dev_free(&p2[k]), dev_free(&m2[k]), dev_free(&v2[k]);
        drop(&p[k]), drop(&g[k]), drop(&m[k]), drop(&v[k]);
    }
}

#if !PN_EMULATED
void pn_cuda_timer_start(void);
float pn_cuda_timer_stop_ms(void);

// The optimizer's ops on a [3072, 1536] projection (fp32 gradient, bf16 parameter with an fp32 master copy):
// sumsq into the optimizer's 256 partials, and AdamW (median of 5 after one warm-up).
static void bench_optim(void) {
    const int64_t s2[2] = {3072, 1536}, sp[1] = {256};
    pn_tensor g = dev_alloc(PN_F32, 2, s2), w = dev_alloc(PN_F32, 2, s2), m = dev_alloc(PN_F32, 2, s2);
    pn_tensor v = dev_alloc(PN_F32, 2, s2), p = dev_alloc(PN_BF16, 2, s2), part = dev_alloc(PN_F32, 1, sp);
    pn_tensor *all[] = {&g, &w, &m, &v, &p, &part};
    for (int k = 0; k < 6; k++) pn_cuda_backend.memset0(all[k]->data, pn_nbytes(all[k]));
    const pn_adamw_args a = {.lr = 1e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f, .weight_decay = 0.1f,
                             .bc1 = 0.5f, .bc2 = 0.5f, .grad_scale = 1.0f};
    float ts[6], ta[6];
    for (int it = 0; it < 6; it++) {
        pn_cuda_timer_start();
        pn_op_sumsq(&part, &g);
        ts[it] = pn_cuda_timer_stop_ms();
        pn_cuda_timer_start();
        pn_op_adamw(&p, &w, &m, &v, &g, &a);
        ta[it] = pn_cuda_timer_stop_ms();
    }
    qsort(ts + 1, 5, sizeof(float), cmp_float);
    qsort(ta + 1, 5, sizeof(float), cmp_float);
    const double n = (double)pn_numel(&g);
    printf("bench optimizer [3072, 1536]: sumsq %.4f ms, adamw %.4f ms (bytes at 3 TB/s: %.4f, %.4f)\n", ts[3], ta[3],
           4 * n / 3e9, 30 * n / 3e9);
    for (int k = 0; k < 6; k++) dev_free(all[k]);
}
#endif

int main(void) {
    if (!pn_cuda_available()) {
        printf("skipped: no CUDA device\n");
        return 0;
    }
    test_adamw(1);
    test_adamw(0);
    test_sumsq(PN_F32, (1 << 22) + 7, 64, 0);
    test_sumsq(PN_BF16, (1 << 22) + 7, 64, 0);
    test_sumsq(PN_F32, 1536 * 1152, 256, 1); // a projection's gradient, the optimizer's 256 parts, misaligned
    test_sumsq(PN_BF16, 100003, 256, 3);
    test_sumsq(PN_F32, 12, 256, 0);          // fewer elements than parts (A_log)
    test_lists();
#if !PN_EMULATED
    if (!getenv("PN_TEST_NO_BENCH")) bench_optim();
#endif
    printf("%d passed, %d failed\n", cases - fails, fails);
    return fails ? 1 : 0;
}
