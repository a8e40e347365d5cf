// test_attention_cudnn: cuDNN's fused SDPA (kernels/cuda/attention_cudnn.cu) against the CPU backend's
// attention on the same bf16-rounded inputs, its refusals (-1, nothing written) for the cases it leaves to
// the own kernels, then the attention anchor timed for cuDNN and for the project's own flash kernel.
//
// The environment variable PN_NO_CUDNN=1 is set before anything else, so pn_cuda_backend.attention (which
// reads it once) runs the own kernel here, while pn_cuda_attention_cudnn is called directly for cuDNN.
// Cache rows past the valid keys are NaN on the GPU (zeros on the CPU): cuDNN must never read them.
// Error is ||got - ref|| / ||ref|| over the whole output, tolerance 1e-2. Prints one line per case and a
// final "N passed, M failed"; exits 1 if any case failed, 0 with "skipped: no CUDA device" when there is no
// GPU. PN_TEST_NO_BENCH=1 skips the timings.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_test.h"
#include "kernels/ops.h"
#include "src/pn_common.h"

// kernels/cuda/attention_cudnn.cu and kernels/cuda/backend.cu (C linkage; no CUDA headers needed here).
int pn_cuda_attention_cudnn(pn_tensor *out, const pn_tensor *q, const pn_tensor *kcache, const pn_tensor *vcache,
                            int pos0, int window);
void pn_cuda_timer_start(void);
float pn_cuda_timer_stop_ms(void);

static int n_pass = 0, n_fail = 0;

static void record(int ok) {
    if (ok)
        n_pass++;
    else
        n_fail++;
}

// ----------------------------------------------------------------------------------------------------
// inputs and tensors

// ----------------------------------------------------------------------------------------------------
// correctness

// Causal prefill (pos0 0; window 0, or a sliding window) of q[B, T, Hq, D] over caches [B, cap, Hkv, D] holding
// T valid rows. required: cuDNN must take the case (rc 0); otherwise -1 (cuDNN declined) is accepted as a
// fallback.
static void test_case(int64_t B, int64_t T, int64_t Hq, int64_t Hkv, int64_t D, int64_t cap, int window,
                      int required) {
    const int64_t sq[4] = {B, T, Hq, D}, sk[4] = {B, cap, Hkv, D};
    const int64_t nq = B * T * Hq * D, nk = B * cap * Hkv * D, row = Hkv * D;
    float *q = randn(nq, 0, 1), *k = randn(nk, 0, 1), *v = randn(nk, 0, 1);
    float *kd = pn_malloc(sizeof(float) * (size_t)nk), *vd = pn_malloc(sizeof(float) * (size_t)nk);
    memcpy(kd, k, sizeof(float) * (size_t)nk);
    memcpy(vd, v, sizeof(float) * (size_t)nk);
    for (int64_t b = 0; b < B; b++) // rows past the valid keys: 0 for the CPU, NaN for the GPU
        for (int64_t s = T; s < cap; s++)
            for (int64_t i = 0; i < row; i++) {
                const int64_t at = (b * cap + s) * row + i;
                k[at] = v[at] = 0.0f;
                kd[at] = vd[at] = NAN;
            }

    float *ref = pn_malloc(sizeof(float) * (size_t)nq);
    pn_tensor hq = pn_view(q, PN_F32, PN_CPU, 4, sq), hk = pn_view(k, PN_F32, PN_CPU, 4, sk);
    pn_tensor hv = pn_view(v, PN_F32, PN_CPU, 4, sk), ho = pn_view(ref, PN_F32, PN_CPU, 4, sq);
    pn_cpu_backend.attention(&ho, &hq, &hk, &hv, 0, window);

    pn_tensor dq = dev_upload(q, PN_BF16, 4, sq), dk = dev_upload(kd, PN_BF16, 4, sk), dv = dev_upload(vd, PN_BF16, 4, sk);
    pn_tensor dout = dev_alloc(PN_BF16, 4, sq);
    pn_cuda_backend.memset0(dout.data, pn_nbytes(&dout));
    const double t0 = pn_now();
    const int rc = pn_cuda_attention_cudnn(&dout, &dq, &dk, &dv, 0, window);
    pn_cuda_backend.sync();
    const double first_ms = (pn_now() - t0) * 1e3;
    float *got = dev_download(&dout);

    // The own kernel on the same inputs, for context (PN_NO_CUDNN is set: this is not cuDNN).
    pn_cuda_backend.attention(&dout, &dq, &dk, &dv, 0, window);
    float *own = dev_download(&dout);
    const double err_own = relerr(own, ref, nq);

    char name[128];
    snprintf(name, sizeof name, "B%lld T%lld Hq%lld Hkv%lld D%lld cap%lld W%d", (long long)B, (long long)T,
             (long long)Hq, (long long)Hkv, (long long)D, (long long)cap, window);
    if (rc == 0) {
        const double err = relerr(got, ref, nq);
        const int ok = err <= 1e-2; // false for NaN
        printf("cudnn attention %-36s relerr=%.3e %s (own kernel %.3e; first call %.1f ms)\n", name, err,
               ok ? "ok" : "FAIL", err_own, first_ms);
        record(ok);
    } else {
        const int ok = !required && rc == -1;
        printf("cudnn attention %-36s returned %d: %s\n", name, rc,
               ok ? "declined, falls back (ok for this optional case)" : "FAIL (cuDNN must take this case)");
        record(ok);
    }
    fflush(stdout);

    dev_free(&dq), dev_free(&dk), dev_free(&dv), dev_free(&dout);
    free(q), free(k), free(v), free(kd), free(vd), free(ref), free(got), free(own);
}

// A call cuDNN must refuse: -1, and out left as it was (zeros).
static void test_refused(const char *what, int64_t T, int64_t D, int pos0, int window) {
    const int64_t B = 1, Hq = 4, Hkv = 2, cap = pos0 + T + 8;
    const int64_t sq[4] = {B, T, Hq, D}, sk[4] = {B, cap, Hkv, D}, nq = B * T * Hq * D, nk = B * cap * Hkv * D;
    float *q = randn(nq, 0, 1), *k = randn(nk, 0, 1), *v = randn(nk, 0, 1);
    pn_tensor dq = dev_upload(q, PN_BF16, 4, sq), dk = dev_upload(k, PN_BF16, 4, sk), dv = dev_upload(v, PN_BF16, 4, sk);
    pn_tensor dout = dev_alloc(PN_BF16, 4, sq);
    pn_cuda_backend.memset0(dout.data, pn_nbytes(&dout));
    const int rc = pn_cuda_attention_cudnn(&dout, &dq, &dk, &dv, pos0, window);
    pn_cuda_backend.sync();
    float *got = dev_download(&dout);
    int untouched = 1;
    for (int64_t i = 0; i < nq; i++)
        if (got[i] != 0.0f) untouched = 0;
    const int ok = rc == -1 && untouched;
    printf("cudnn attention refuses %-28s rc=%d%s %s\n", what, rc, untouched ? "" : " (output written!)",
           ok ? "ok" : "FAIL");
    fflush(stdout);
    record(ok);
    dev_free(&dq), dev_free(&dk), dev_free(&dv), dev_free(&dout);
    free(q), free(k), free(v), free(got);
}

// ----------------------------------------------------------------------------------------------------
// timing

#define TIMED_RUNS 20
#define WARMUP_RUNS 3

// Median milliseconds of one attention call (cuDNN, or the own kernel via pn_cuda_backend) over TIMED_RUNS
// after WARMUP_RUNS; -1 if cuDNN declined.
static double time_attention(int use_cudnn, pn_tensor *out, const pn_tensor *q, const pn_tensor *k,
                             const pn_tensor *v) {
    float ms[TIMED_RUNS];
    for (int i = 0; i < WARMUP_RUNS; i++) {
        if (use_cudnn) {
            if (pn_cuda_attention_cudnn(out, q, k, v, 0, 0) != 0) return -1.0;
        } else {
            pn_cuda_backend.attention(out, q, k, v, 0, 0);
        }
    }
    pn_cuda_backend.sync();
    for (int i = 0; i < TIMED_RUNS; i++) {
        pn_cuda_timer_start();
        if (use_cudnn)
            (void)pn_cuda_attention_cudnn(out, q, k, v, 0, 0);
        else
            pn_cuda_backend.attention(out, q, k, v, 0, 0);
        ms[i] = pn_cuda_timer_stop_ms();
    }
    qsort(ms, TIMED_RUNS, sizeof(float), cmp_float);
    return ms[TIMED_RUNS / 2];
}

// The attention anchor (B 8, T 4096, Hq 12, Hkv 2, D 128, causal): cuDNN vs the own flash kernel, and the
// two outputs against each other (both are checked against the CPU on smaller shapes above).
static void bench_anchor(void) {
    const int64_t B = 8, T = 4096, Hq = 12, Hkv = 2, D = 128;
    const int64_t sq[4] = {B, T, Hq, D}, sk[4] = {B, T, Hkv, D}, nq = B * T * Hq * D, nk = B * T * Hkv * D;
    float *q = randn(nq, 0, 1), *k = randn(nk, 0, 1), *v = randn(nk, 0, 1);
    pn_tensor dq = dev_upload(q, PN_BF16, 4, sq), dk = dev_upload(k, PN_BF16, 4, sk), dv = dev_upload(v, PN_BF16, 4, sk);
    pn_tensor dout = dev_alloc(PN_BF16, 4, sq);
    free(q), free(k), free(v);
    const double flops = 4.0 * B * Hq * (double)T * T * D / 2.0;

    const double t0 = pn_now();
    const int rc = pn_cuda_attention_cudnn(&dout, &dq, &dk, &dv, 0, 0);
    pn_cuda_backend.sync();
    const double first_ms = (pn_now() - t0) * 1e3;
    const double ms_cudnn = rc == 0 ? time_attention(1, &dout, &dq, &dk, &dv) : -1.0;
    float *got_cudnn = rc == 0 ? dev_download(&dout) : NULL;

    const double ms_own = time_attention(0, &dout, &dq, &dk, &dv);
    float *got_own = dev_download(&dout);

    if (ms_cudnn > 0) {
        printf("bench attention cudnn B8 T4096 Hq12 Hkv2 D128 causal: %.3f ms, %.1f TFLOP/s (first call, with plan "
               "build: %.1f ms)\n",
               ms_cudnn, flops / (ms_cudnn * 1e-3) / 1e12, first_ms);
    } else {
        printf("bench attention cudnn B8 T4096 Hq12 Hkv2 D128 causal: declined (rc=%d) FAIL\n", rc);
    }
    printf("bench attention own   B8 T4096 Hq12 Hkv2 D128 causal: %.3f ms, %.1f TFLOP/s (anchor: SDPA 0.77 ms)\n",
           ms_own, flops / (ms_own * 1e-3) / 1e12);
    if (ms_cudnn > 0) printf("bench attention cudnn speedup over own kernel: %.2fx\n", ms_own / ms_cudnn);
    record(rc == 0);

    if (got_cudnn) {
        const double err = relerr(got_cudnn, got_own, nq);
        const int ok = err <= 1e-2;
        printf("cudnn attention anchor B8 T4096 vs own kernel             relerr=%.3e %s\n", err, ok ? "ok" : "FAIL");
        record(ok);
    }
    fflush(stdout);
    dev_free(&dq), dev_free(&dk), dev_free(&dv), dev_free(&dout);
    free(got_cudnn), free(got_own);
}

// ----------------------------------------------------------------------------------------------------

int main(void) {
    // Before the first pn_cuda_backend.attention call (the dispatch reads it once): the own kernel there.
    setenv("PN_NO_CUDNN", "1", 1);
    if (!pn_cuda_available()) {
        printf("skipped: no CUDA device\n");
        return 0;
    }

    // (B, T, Hq, Hkv, D, cap, window, required)
    test_case(1, 64, 2, 2, 64, 64, 0, 1);
    test_case(2, 200, 4, 2, 128, 264, 0, 1); // cap > T: NaN rows past T, batch stride cap rows
    test_case(1, 333, 12, 2, 128, 333, 0, 1);
    test_case(2, 1024, 12, 2, 128, 1024, 0, 1);
    test_case(1, 128, 14, 2, 64, 128, 0, 1);
    // Sliding windows (the band after the causal mask): narrow, one key, wider than a tile, at least T.
    test_case(2, 300, 4, 2, 128, 310, 64, 1);
    test_case(1, 129, 4, 1, 128, 129, 1, 1);
    test_case(1, 1024, 12, 2, 128, 1024, 333, 1);
    test_case(1, 200, 6, 2, 64, 200, 200, 1);
    // Head sizes cuDNN supports on Hopper beyond 64 / 128: taken or declined, never wrong.
    test_case(1, 100, 4, 2, 96, 100, 0, 0);
    test_case(1, 128, 4, 1, 256, 160, 0, 0);

    test_refused("pos0 > 0", 64, 128, 16, 0);
    test_refused("pos0 > 0, window > 0", 128, 128, 16, 32);
    test_refused("window < 0", 128, 128, 0, -1);
    test_refused("T < 64", 37, 128, 0, 0);

    const char *nb = getenv("PN_TEST_NO_BENCH");
    if (!(nb && !strcmp(nb, "1"))) bench_anchor();

    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}
