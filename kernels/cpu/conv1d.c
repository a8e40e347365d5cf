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
#include "threads.h"

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

typedef struct {
    float *y, *dx, *dw, *dbias, *dkdyn;
    const float *x, *w, *bias, *kdyn, *dy;
    int64_t B, T, C;
    int W, act_silu, n_seqs;
    const int32_t *cu_seqlens;
} conv_job;

static void conv_fwd_range(void *p, int64_t r0, int64_t r1) { // rows r = b * T + t
    const conv_job *cj = p;
    float *y = cj->y;
    const float *x = cj->x, *w = cj->w, *bias = cj->bias, *kdyn = cj->kdyn;
    const int64_t T = cj->T, C = cj->C;
    const int W = cj->W, act_silu = cj->act_silu;
    for (int64_t r = r0; r < r1; r++) {
        const int64_t b = r / T, t = r % T;
        const int64_t t0 = seq_start(cj->cu_seqlens, cj->n_seqs, t);
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

void pn_cpu_conv1d_fwd(float *y, const float *x, const float *w, const float *bias, const float *kdyn, int64_t B,
                       int64_t T, int64_t C, int W, int act_silu, const int32_t *cu_seqlens, int n_seqs) {
    conv_job j = {.y = y, .x = x, .w = w, .bias = bias, .kdyn = kdyn, .B = B, .T = T, .C = C, .W = W,
                  .act_silu = act_silu, .n_seqs = n_seqs, .cu_seqlens = cu_seqlens};
    pn_cpu_parallel_for(B * T, 0, (double)C * (2.0 * W + (act_silu ? 32.0 : 0.0)), conv_fwd_range, &j);
}

// conv1d_continue: sequence b's rows e_b = cache[b] then x[b]; its outputs are conv_fwd_range's sums over e_b
// (same terms, same order), then the cache shifts (ascending: a read is never behind the writes).
typedef struct {
    float *y, *cache;
    const float *x, *w, *kdyn;
    int64_t T, C;
    int W, act_silu;
} conv_cont_job;

static void conv_continue_range(void *p, int64_t b0, int64_t b1) {
    const conv_cont_job *cj = p;
    const int64_t T = cj->T, C = cj->C;
    const int W = cj->W, H = W - 1;
    for (int64_t b = b0; b < b1; b++) {
        float *cache = cj->cache + b * H * C;
        const float *x = cj->x + b * T * C;
        for (int64_t t = 0; t < T; t++)
            for (int64_t c = 0; c < C; c++) {
                float z = 0.0f;
                for (int j = 0; j < W; j++) {
                    const int64_t i = t + j; // row of e_b
                    const float kw = cj->kdyn ? cj->kdyn[((b * T + t) * C + c) * W + j] : cj->w[c * W + j];
                    z += kw * (i < H ? cache[i * C + c] : x[(i - H) * C + c]);
                }
                cj->y[(b * T + t) * C + c] = cj->act_silu ? silu(z) : z;
            }
        for (int64_t i = 0; i < H; i++) // the last H rows of e_b
            for (int64_t c = 0; c < C; c++) cache[i * C + c] = T + i < H ? cache[(T + i) * C + c] : x[(T + i - H) * C + c];
    }
}

void pn_cpu_conv1d_continue_f32(float *y, float *cache, const float *x, const float *w, const float *kdyn, int64_t B,
                                int64_t T, int64_t C, int W, int act_silu) {
    conv_cont_job j = {.y = y, .cache = cache, .x = x, .w = w, .kdyn = kdyn, .T = T, .C = C, .W = W, .act_silu = act_silu};
    pn_cpu_parallel_for(B, 0, (double)T * C * (2.0 * W + (act_silu ? 32.0 : 0.0)), conv_continue_range, &j);
}

static void conv_bwd_range(void *p, int64_t c0, int64_t c1) {
    const conv_job *jb = p;
    float *dx = jb->dx, *dw = jb->dw, *dbias = jb->dbias, *dkdyn = jb->dkdyn;
    const float *dy = jb->dy, *x = jb->x, *w = jb->w, *bias = jb->bias, *kdyn = jb->kdyn;
    const int64_t B = jb->B, T = jb->T, C = jb->C;
    const int W = jb->W, act_silu = jb->act_silu, n_seqs = jb->n_seqs;
    const int32_t *cu_seqlens = jb->cu_seqlens;
    for (int64_t c = c0; c < c1; c++) {
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

void pn_cpu_conv1d_bwd_f32(float *dx, float *dw, float *dbias, float *dkdyn, const float *dy, const float *x,
                       const float *w, const float *bias, const float *kdyn, int64_t B, int64_t T, int64_t C, int W,
                       int act_silu, const int32_t *cu_seqlens, int n_seqs) {
    // dz = dy * act'(z); then dx[src] += k * dz (a scatter: done per channel so threads never collide),
    // dw[c, j] += x[src] * dz and dk[t, c, j] = x[src] * dz.
    memset(dx, 0, sizeof(float) * (size_t)(B * T * C));
    conv_job j = {.dx = dx, .dw = dw, .dbias = dbias, .dkdyn = dkdyn, .dy = dy, .x = x, .w = w, .bias = bias,
                  .kdyn = kdyn, .B = B, .T = T, .C = C, .W = W, .act_silu = act_silu, .n_seqs = n_seqs,
                  .cu_seqlens = cu_seqlens};
    pn_cpu_parallel_for(C, 0, (double)B * T * (6.0 * W + (act_silu ? 2.0 * W + 32.0 : 0.0)), conv_bwd_range, &j);
}
