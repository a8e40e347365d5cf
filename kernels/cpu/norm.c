// RMSNorm on the CPU: y = w * x / sqrt(mean(x^2) + eps), statistics in fp32 (HF Qwen2RMSNorm). The sum of
// squares is accumulated in double so the reference does not depend on the row length's rounding.
#include <math.h>
#include <stdlib.h>

#include "../../src/pn_common.h"
#include "cpu.h"

void pn_cpu_rmsnorm(pn_tensor *out, const pn_tensor *x, const pn_tensor *weight, float eps) {
    const int64_t D = weight->shape[0], rows = pn_numel(x) / D;
    const float *w = weight->data;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = (const float *)x->data + r * D;
        float *yr = (float *)out->data + r * D;
        double ss = 0.0;
        for (int64_t i = 0; i < D; i++) ss += (double)xr[i] * xr[i];
        float inv = 1.0f / sqrtf((float)(ss / (double)D) + eps);
        for (int64_t i = 0; i < D; i++) yr[i] = w[i] * (xr[i] * inv);
    }
}

// Backward of RMSNorm y = w * x * r, r = (mean(x^2) + eps)^-1/2 over rows of D:
// dx = r * (w*dy - x * r^2 * mean(x * w*dy)),  dw += sum_rows dy * x * r (when dw != NULL; frozen norms pass NULL).
void pn_cpu_rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w, int64_t rows, int64_t D,
                        float eps) {
#pragma omp parallel
    {
        float *dwp = dw ? pn_calloc((size_t)D, sizeof(float)) : NULL; // per-thread partial dw
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            const float *xr = x + r * D, *gr = dy + r * D;
            double ss = 0.0, dot = 0.0;
            for (int64_t i = 0; i < D; i++) ss += (double)xr[i] * xr[i], dot += (double)xr[i] * w[i] * gr[i];
            const float inv = 1.0f / sqrtf((float)(ss / (double)D) + eps);
            const float c = (float)(dot / (double)D) * inv * inv;
            for (int64_t i = 0; i < D; i++) dx[r * D + i] = inv * (w[i] * gr[i] - xr[i] * c);
            if (dwp)
                for (int64_t i = 0; i < D; i++) dwp[i] += gr[i] * xr[i] * inv;
        }
        if (dwp) {
#pragma omp critical
            for (int64_t i = 0; i < D; i++) dw[i] += dwp[i];
            free(dwp);
        }
    }
}

// Gated RMSNorm of linear-attention outputs (fla's FusedRMSNormGated, swish gate): y = rmsnorm(x) * w * silu(g),
// rows of D (the head's value dim). Forward, and backward writing dx, dg and accumulating dw.
void pn_cpu_gated_rmsnorm_fwd(float *y, const float *x, const float *g, const float *w, int64_t rows, int64_t D,
                              float eps) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * D, *gr = g + r * D;
        double ss = 0.0;
        for (int64_t i = 0; i < D; i++) ss += (double)xr[i] * xr[i];
        const float inv = 1.0f / sqrtf((float)(ss / (double)D) + eps);
        for (int64_t i = 0; i < D; i++) y[r * D + i] = xr[i] * inv * w[i] * (gr[i] / (1.0f + expf(-gr[i])));
    }
}

void pn_cpu_gated_rmsnorm_bwd(float *dx, float *dg, float *dw, const float *dy, const float *x, const float *g,
                              const float *w, int64_t rows, int64_t D, float eps) {
#pragma omp parallel
    {
        float *dwp = dw ? pn_calloc((size_t)D, sizeof(float)) : NULL;
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            const float *xr = x + r * D, *gr = g + r * D, *dyr = dy + r * D;
            double ss = 0.0, dot = 0.0;
            for (int64_t i = 0; i < D; i++) ss += (double)xr[i] * xr[i];
            const float inv = 1.0f / sqrtf((float)(ss / (double)D) + eps);
            for (int64_t i = 0; i < D; i++) { // through the gate: dn = dy * silu(g) * w, n = x * inv
                const float sg = 1.0f / (1.0f + expf(-gr[i])), silu = gr[i] * sg;
                const float n = xr[i] * inv;
                dg[r * D + i] = dyr[i] * n * w[i] * sg * (1.0f + gr[i] * (1.0f - sg));
                if (dwp) dwp[i] += dyr[i] * n * silu;
                dot += (double)xr[i] * (dyr[i] * silu * w[i]);
            }
            const float c = (float)(dot / (double)D) * inv * inv;
            for (int64_t i = 0; i < D; i++) {
                const float silu = gr[i] / (1.0f + expf(-gr[i]));
                dx[r * D + i] = inv * (dyr[i] * silu * w[i] - xr[i] * c);
            }
        }
        if (dwp) {
#pragma omp critical
            for (int64_t i = 0; i < D; i++) dw[i] += dwp[i];
            free(dwp);
        }
    }
}
