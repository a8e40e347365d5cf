// RMSNorm on the CPU: y = w * x / sqrt(mean(x^2) + eps), statistics in fp32 (HF Qwen2RMSNorm). The sum of
// squares is accumulated in double so the reference does not depend on the row length's rounding.
#include <math.h>
#include <stdlib.h>

#include "../../src/pn_common.h"
#include "cpu.h"
#include "threads.h"

// Rows run in parallel (threads.h); the weight gradients of the backward ops are summed per chunk of rows,
// then the chunks' partial sums are added in chunk order, so they do not depend on the thread count.
typedef struct {
    float *y, *dx, *dg, *dw_part; // dw_part: [chunks, D] partial weight gradients, or NULL
    const float *x, *g, *w, *dy;
    int64_t D, grain;
    float eps;
    int acc; // rmsnorm_bwd: dx += instead of dx =
} norm_job;

static void rmsnorm_range(void *p, int64_t r0, int64_t r1) {
    const norm_job *j = p;
    const int64_t D = j->D;
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = j->x + r * D;
        float *yr = j->y + r * D;
        double ss = 0.0;
        for (int64_t i = 0; i < D; i++) ss += (double)xr[i] * xr[i];
        float inv = 1.0f / sqrtf((float)(ss / (double)D) + j->eps);
        for (int64_t i = 0; i < D; i++) yr[i] = j->w[i] * (xr[i] * inv);
    }
}

void pn_cpu_rmsnorm(pn_tensor *out, const pn_tensor *x, const pn_tensor *weight, float eps) {
    const int64_t D = weight->shape[0], rows = pn_numel(x) / D;
    norm_job j = {.y = out->data, .x = x->data, .w = weight->data, .D = D, .eps = eps};
    pn_cpu_parallel_for(rows, 0, 8.0 * D, rmsnorm_range, &j);
}

// Runs fn over the rows with a partial weight gradient per chunk (when dw != NULL), then dw += their sum.
static void rows_with_dw(norm_job *j, int64_t rows, double cost, pn_cpu_range_fn fn, float *dw) {
    j->grain = pn_cpu_grain(rows, cost);
    const int64_t chunks = rows > 0 ? (rows - 1) / j->grain + 1 : 0;
    j->dw_part = dw ? pn_calloc((size_t)(chunks * j->D), sizeof(float)) : NULL;
    pn_cpu_parallel_for(rows, j->grain, cost, fn, j);
    if (!dw) return;
    for (int64_t c = 0; c < chunks; c++)
        for (int64_t i = 0; i < j->D; i++) dw[i] += j->dw_part[c * j->D + i];
    free(j->dw_part);
}

// Backward of RMSNorm y = w * x * r, r = (mean(x^2) + eps)^-1/2 over rows of D:
// dx = r * (w*dy - x * r^2 * mean(x * w*dy)),  dw += sum_rows dy * x * r (when dw != NULL; frozen norms pass NULL).
static void rmsnorm_bwd_range(void *p, int64_t r0, int64_t r1) {
    const norm_job *j = p;
    const int64_t D = j->D;
    const float *x = j->x, *w = j->w, *dy = j->dy;
    const float eps = j->eps;
    float *dx = j->dx, *dwp = j->dw_part ? j->dw_part + r0 / j->grain * D : NULL; // this chunk's partial dw
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = x + r * D, *gr = dy + r * D;
        double ss = 0.0, dot = 0.0;
        for (int64_t i = 0; i < D; i++) ss += (double)xr[i] * xr[i], dot += (double)xr[i] * w[i] * gr[i];
        const float inv = 1.0f / sqrtf((float)(ss / (double)D) + eps);
        const float c = (float)(dot / (double)D) * inv * inv;
        for (int64_t i = 0; i < D; i++) {
            const float g = inv * (w[i] * gr[i] - xr[i] * c);
            dx[r * D + i] = j->acc ? dx[r * D + i] + g : g;
        }
        if (dwp)
            for (int64_t i = 0; i < D; i++) dwp[i] += gr[i] * xr[i] * inv;
    }
}

// The two ops in turn: on the CPU the fusion saves nothing worth a second implementation.
void pn_cpu_add_rmsnorm(pn_tensor *sum, const pn_tensor *x, const pn_tensor *y, pn_tensor *out, const pn_tensor *weight,
                        float eps) {
    pn_cpu_add(sum, x, y);
    pn_cpu_rmsnorm(out, sum, weight, eps);
}

void pn_cpu_rmsnorm_bwd_f32(float *dx, float *dw, const float *dy, const float *x, const float *w, int64_t rows, int64_t D,
                            float eps, int accumulate_dx) {
    norm_job j = {.dx = dx, .x = x, .w = w, .dy = dy, .D = D, .eps = eps, .acc = accumulate_dx};
    rows_with_dw(&j, rows, 16.0 * D, rmsnorm_bwd_range, dw);
}

// Gated RMSNorm of linear-attention outputs (fla's FusedRMSNormGated, swish gate): y = rmsnorm(x) * w * silu(g),
// rows of D (the head's value dim). Forward, and backward writing dx, dg and accumulating dw.
static void gated_rmsnorm_range(void *p, int64_t r0, int64_t r1) {
    const norm_job *j = p;
    const int64_t D = j->D;
    const float *x = j->x, *g = j->g, *w = j->w;
    float *y = j->y;
    for (int64_t r = r0; r < r1; r++) {
        const float *xr = x + r * D, *gr = g + r * D;
        double ss = 0.0;
        for (int64_t i = 0; i < D; i++) ss += (double)xr[i] * xr[i];
        const float inv = 1.0f / sqrtf((float)(ss / (double)D) + j->eps);
        for (int64_t i = 0; i < D; i++) y[r * D + i] = xr[i] * inv * w[i] * (gr[i] / (1.0f + expf(-gr[i])));
    }
}

void pn_cpu_gated_rmsnorm_fwd(float *y, const float *x, const float *g, const float *w, int64_t rows, int64_t D,
                              float eps) {
    norm_job j = {.y = y, .x = x, .g = g, .w = w, .D = D, .eps = eps};
    pn_cpu_parallel_for(rows, 0, 48.0 * D, gated_rmsnorm_range, &j);
}

static void gated_rmsnorm_bwd_range(void *p, int64_t r0, int64_t r1) {
    const norm_job *j = p;
    const int64_t D = j->D;
    const float *x = j->x, *g = j->g, *w = j->w, *dy = j->dy;
    const float eps = j->eps;
    float *dx = j->dx, *dg = j->dg, *dwp = j->dw_part ? j->dw_part + r0 / j->grain * D : NULL;
    for (int64_t r = r0; r < r1; r++) {
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
}

void pn_cpu_gated_rmsnorm_bwd_f32(float *dx, float *dg, float *dw, const float *dy, const float *x, const float *g,
                              const float *w, int64_t rows, int64_t D, float eps) {
    norm_job j = {.dx = dx, .dg = dg, .x = x, .g = g, .w = w, .dy = dy, .D = D, .eps = eps};
    rows_with_dw(&j, rows, 96.0 * D, gated_rmsnorm_bwd_range, dw);
}
