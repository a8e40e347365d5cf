// Causal depthwise 1-D convolutions on the CPU, forward and backward: the short convolution of fla's
// ShortConvolution (Gated DeltaNet's q/k/v, a static kernel per channel) and JetBlock's dynamic
// convolution (a kernel per token and channel, made by its kernel generator), both over a window of W
// tokens ending at the current one, with zero padding before each sequence start, optionally through SiLU.
//
// y[t, c] = act(sum_{j<W} w[c, j] * x[t - (W-1) + j, c] (+ bias[c]))       static
// y[t, c] = act(sum_{j<W} k[t, c, j] * x[t - (W-1) + j, c])                dynamic
//
// Sequences are [B, T, C] rows; `cu_seqlens` (NULL, or B = 1 and n_seqs + 1 offsets) cuts the T tokens
// into independent sequences so no token reads across a boundary (packed variable-length batches). The
// backward recomputes the pre-activation (cheap: W multiply-adds) instead of storing it.
#include <math.h>
#include <string.h>

#include "cpu.h"

// The first token of t's sequence: 0 without cu_seqlens, else the start of the segment holding t.
static int64_t seq_start(const int32_t *cu, int nseq, int64_t t) {
    if (!cu) return 0;
    int lo = 0, hi = nseq - 1;
    while (lo < hi) { // the last segment whose start is <= t
        int mid = (lo + hi + 1) / 2;
        if (cu[mid] <= t) lo = mid;
        else hi = mid - 1;
    }
    return cu[lo];
}

static float silu(float z) { return z / (1.0f + expf(-z)); }
static float dsilu(float z) { // d/dz z sigmoid(z)
    const float s = 1.0f / (1.0f + expf(-z));
    return s * (1.0f + z * (1.0f - s));
}

void pn_cpu_conv1d_fwd(float *y, const float *x, const float *w, const float *bias, const float *kdyn, int64_t B,
                       int64_t T, int64_t C, int W, int act_silu, const int32_t *cu_seqlens, int n_seqs) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) {
            const int64_t t0 = seq_start(cu_seqlens, n_seqs, t);
            for (int64_t c = 0; c < C; c++) {
                float z = bias ? bias[c] : 0.0f;
                for (int j = 0; j < W; j++) {
                    const int64_t src = t - (W - 1) + j;
                    if (src < t0) continue;
                    const float kw = kdyn ? kdyn[((b * T + t) * C + c) * W + j] : w[c * W + j];
                    z += kw * x[(b * T + src) * C + c];
                }
                y[(b * T + t) * C + c] = act_silu ? silu(z) : z;
            }
        }
}

void pn_cpu_conv1d_bwd(float *dx, float *dw, float *dbias, float *dkdyn, const float *dy, const float *x,
                       const float *w, const float *bias, const float *kdyn, int64_t B, int64_t T, int64_t C, int W,
                       int act_silu, const int32_t *cu_seqlens, int n_seqs) {
    // dz = dy * act'(z); then dx[src] += k * dz (a scatter: done per channel so threads never collide),
    // dw[c, j] += x[src] * dz and dk[t, c, j] = x[src] * dz.
    memset(dx, 0, sizeof(float) * (size_t)(B * T * C));
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < C; c++) {
        float dwc[64] = {0}, dbc = 0.0f; // W <= 64 (checked by the caller)
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < T; t++) {
                const int64_t t0 = seq_start(cu_seqlens, n_seqs, t);
                float z = bias ? bias[c] : 0.0f;
                if (act_silu)
                    for (int j = 0; j < W; j++) {
                        const int64_t src = t - (W - 1) + j;
                        if (src < t0) continue;
                        const float kw = kdyn ? kdyn[((b * T + t) * C + c) * W + j] : w[c * W + j];
                        z += kw * x[(b * T + src) * C + c];
                    }
                const float dz = dy[(b * T + t) * C + c] * (act_silu ? dsilu(z) : 1.0f);
                dbc += dz;
                for (int j = 0; j < W; j++) {
                    const int64_t src = t - (W - 1) + j;
                    float *dkj = dkdyn ? &dkdyn[((b * T + t) * C + c) * W + j] : NULL;
                    if (src < t0) {
                        if (dkj) *dkj = 0.0f;
                        continue;
                    }
                    const float kw = kdyn ? kdyn[((b * T + t) * C + c) * W + j] : w[c * W + j];
                    dx[(b * T + src) * C + c] += kw * dz;
                    if (dkj) *dkj = x[(b * T + src) * C + c] * dz;
                    else dwc[j] += x[(b * T + src) * C + c] * dz;
                }
            }
        if (dw && !kdyn)
            for (int j = 0; j < W; j++) dw[c * W + j] += dwc[j];
        if (dbias) dbias[c] += dbc;
    }
}
