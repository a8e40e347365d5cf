// RMSNorm on the CPU: y = w * x / sqrt(mean(x^2) + eps), statistics in fp32 (HF Qwen2RMSNorm). The sum of
// squares is accumulated in double so the reference does not depend on the row length's rounding.
#include <math.h>

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
