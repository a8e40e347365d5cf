// Inputs shared by the Gated DeltaNet GPU tests: unit-length (or raw) bf16-rounded rows for q and k,
// realistic gates (log decays <= 0, or 0 for DeltaNet) and betas, and int32 offsets on the device.
#ifndef PN_GDN_TEST_H
#define PN_GDN_TEST_H

#include <math.h>
#include <string.h>

#include "gpu_test.h"

// rows × K values ~ N(0, 1); with unit set, each row is scaled to length 1 before the bf16 rounding.
static float *rand_rows(int64_t rows, int64_t K, int unit) {
    float *x = randn(rows * K, 0, 1);
    if (unit)
        for (int64_t r = 0; r < rows; r++) {
            double ss = 0;
            for (int64_t i = 0; i < K; i++) ss += (double)x[r * K + i] * x[r * K + i];
            const double s = ss > 0 ? 1.0 / sqrt(ss) : 0.0;
            for (int64_t i = 0; i < K; i++) x[r * K + i] = bf16_round((float)(x[r * K + i] * s));
        }
    return x;
}

// g = −softplus(N(0, 1)) / 2 (a log decay ≤ 0), or 0 (DeltaNet); beta = sigmoid(N(0, 1)); both fp32.
static float *rand_gates(int64_t n, int zero) {
    float *x = randn(n, 0, 1);
    for (int64_t i = 0; i < n; i++) x[i] = zero ? 0.0f : -0.5f * log1pf(expf(x[i]));
    return x;
}

static float *rand_betas(int64_t n) {
    float *x = randn(n, 0, 1);
    for (int64_t i = 0; i < n; i++) x[i] = 1.0f / (1.0f + expf(-x[i]));
    return x;
}

// The int32 offsets as a device array: a F32 upload copies the bytes unchanged.
static pn_tensor dev_upload_i32(const int32_t *h, int64_t n) {
    float *tmp = pn_malloc(sizeof(float) * (size_t)n);
    memcpy(tmp, h, sizeof(int32_t) * (size_t)n);
    pn_tensor t = dev_upload(tmp, PN_F32, 1, (int64_t[]){n});
    free(tmp);
    return t;
}

#endif
