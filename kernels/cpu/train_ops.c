// The CPU backend's training and linear-block ops in the table's tensor form. The math of the larger ones
// lives in raw-array functions next to their kin (norm.c, elementwise.c, matmul.c, conv1d.c, gdn.c), which
// the torch/fla goldens test directly; here they are adapted to tensors, and the small ones (SiLU, the
// linear blocks' gates, the embedding's backward) are written out. RoPE's backward is in elementwise.c.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "../../src/pn_common.h"
#include "gdn.h"

static float sigmoidf_(float z) { return 1.0f / (1.0f + expf(-z)); }
// torch's F.softplus (beta 1, threshold 20), which fla's gate kernel matches.
static float softplusf_(float z) { return z > 20.0f ? z : log1pf(expf(z)); }

void pn_cpu_copy(pn_tensor *dst, const pn_tensor *src) { memmove(dst->data, src->data, pn_nbytes(src)); }

void pn_cpu_silu(pn_tensor *y, const pn_tensor *x) {
    const int64_t n = pn_numel(x);
    const float *a = x->data;
    float *o = y->data;
    for (int64_t i = 0; i < n; i++) o[i] = a[i] * sigmoidf_(a[i]);
}

void pn_cpu_silu_bwd(pn_tensor *dx, const pn_tensor *dy, const pn_tensor *x) {
    const int64_t n = pn_numel(x);
    const float *z = x->data, *d = dy->data;
    float *o = dx->data;
    for (int64_t i = 0; i < n; i++) {
        const float s = sigmoidf_(z[i]);
        o[i] = d[i] * s * (1.0f + z[i] * (1.0f - s));
    }
}

void pn_cpu_rmsnorm_bwd(pn_tensor *dx, pn_tensor *dw, const pn_tensor *dy, const pn_tensor *x, const pn_tensor *w,
                        float eps, int accumulate_dx) {
    const int64_t D = w->shape[0];
    pn_cpu_rmsnorm_bwd_f32(dx->data, dw ? dw->data : NULL, dy->data, x->data, w->data, pn_numel(x) / D, D, eps,
                           accumulate_dx);
}

void pn_cpu_gated_rmsnorm(pn_tensor *y, const pn_tensor *x, const pn_tensor *gate, const pn_tensor *w, float eps) {
    const int64_t D = w->shape[0];
    pn_cpu_gated_rmsnorm_fwd(y->data, x->data, gate->data, w->data, pn_numel(x) / D, D, eps);
}

void pn_cpu_gated_rmsnorm_bwd(pn_tensor *dx, pn_tensor *dgate, pn_tensor *dw, const pn_tensor *dy, const pn_tensor *x,
                                const pn_tensor *gate, const pn_tensor *w, float eps) {
    const int64_t D = w->shape[0];
    pn_cpu_gated_rmsnorm_bwd_f32(dx->data, dgate->data, dw ? dw->data : NULL, dy->data, x->data, gate->data, w->data,
                             pn_numel(x) / D, D, eps);
}

void pn_cpu_swiglu_bwd(pn_tensor *dgate, pn_tensor *dup, const pn_tensor *dout, const pn_tensor *gate,
                         const pn_tensor *up) {
    pn_cpu_swiglu_bwd_f32(dgate->data, dup->data, dout->data, gate->data, up->data, pn_numel(gate));
}

void pn_cpu_matmul_bwd(pn_tensor *dx, pn_tensor *dw, pn_tensor *db, const pn_tensor *dout, const pn_tensor *x,
                         const pn_tensor *w, int accumulate_dx) {
    const int64_t N = x->shape[0], I = x->shape[1], O = w->shape[0];
    float *dxp = dx ? dx->data : NULL;
    float *tmp = NULL;
    if (dx && accumulate_dx) tmp = pn_malloc(sizeof(float) * (size_t)(N * I)), dxp = tmp;
    pn_cpu_matmul_bwd_f32(dxp, dw ? dw->data : NULL, db ? db->data : NULL, dout->data, x->data, w->data, N, I, O);
    if (tmp) {
        float *d = dx->data;
        for (int64_t i = 0; i < N * I; i++) d[i] += tmp[i];
        free(tmp);
    }
}

void pn_cpu_embedding_bwd(pn_tensor *dtable, const pn_tensor *ids, const pn_tensor *dout) {
    const int64_t N = pn_numel(ids), C = dout->shape[1];
    const int32_t *id = ids->data;
    const float *d = dout->data;
    float *t = dtable->data;
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) t[(int64_t)id[n] * C + c] += d[n * C + c];
}

static const int32_t *cu_of(const pn_tensor *cu, int *n_seqs) {
    *n_seqs = cu ? (int)(pn_numel(cu) - 1) : 0;
    return cu ? cu->data : NULL;
}

void pn_cpu_conv1d(pn_tensor *y, const pn_tensor *x, const pn_tensor *w, const pn_tensor *bias, const pn_tensor *kdyn,
                     int act_silu, const pn_tensor *cu_seqlens) {
    const int64_t B = x->shape[0], T = x->shape[1], C = x->shape[2];
    const int W = (int)(w ? pn_numel(w) / C : pn_numel(kdyn) / pn_numel(x));
    int n;
    const int32_t *cu = cu_of(cu_seqlens, &n);
    pn_cpu_conv1d_fwd(y->data, x->data, w ? w->data : NULL, bias ? bias->data : NULL, kdyn ? kdyn->data : NULL, B, T,
                      C, W, act_silu, cu, n);
}

void pn_cpu_conv1d_continue(pn_tensor *y, pn_tensor *cache, const pn_tensor *x, const pn_tensor *w,
                            const pn_tensor *kdyn, int act_silu) {
    const int64_t B = x->shape[0], T = x->shape[1], C = x->shape[2];
    const int W = (int)(w ? pn_numel(w) / C : pn_numel(kdyn) / pn_numel(x));
    pn_cpu_conv1d_continue_f32(y->data, cache->data, x->data, w ? w->data : NULL, kdyn ? kdyn->data : NULL, B, T, C,
                               W, act_silu);
}

void pn_cpu_conv1d_bwd(pn_tensor *dx, pn_tensor *dw, pn_tensor *dbias, pn_tensor *dkdyn, const pn_tensor *dy,
                         const pn_tensor *x, const pn_tensor *w, const pn_tensor *bias, const pn_tensor *kdyn,
                         int act_silu, const pn_tensor *cu_seqlens) {
    const int64_t B = x->shape[0], T = x->shape[1], C = x->shape[2];
    const int W = (int)(w ? pn_numel(w) / C : pn_numel(kdyn) / pn_numel(x));
    int n;
    const int32_t *cu = cu_of(cu_seqlens, &n);
    pn_cpu_conv1d_bwd_f32(dx->data, dw ? dw->data : NULL, dbias ? dbias->data : NULL, dkdyn ? dkdyn->data : NULL,
                      dy->data, x->data, w ? w->data : NULL, bias ? bias->data : NULL, kdyn ? kdyn->data : NULL, B,
                      T, C, W, act_silu, cu, n);
}

// beta = sigmoid(zb); g = -e^{A_log} softplus(za + dt_bias), or 0 without za. Rows of H gates.
void pn_cpu_gates_fwd(float *g, float *beta, const float *za, const float *zb, const float *A_log,
                      const float *dt_bias, int64_t N, int64_t H) {
    for (int64_t i = 0; i < N * H; i++) beta[i] = sigmoidf_(zb[i]);
    if (!za) {
        memset(g, 0, sizeof(float) * (size_t)(N * H));
        return;
    }
    for (int64_t r = 0; r < N; r++)
        for (int64_t h = 0; h < H; h++) g[r * H + h] = -expf(A_log[h]) * softplusf_(za[r * H + h] + dt_bias[h]);
}

// dzb = dβ β (1 − β); with z = za + dt_bias, dza = dg (−e^{A_log}) softplus'(z) (softplus' = sigmoid, 1 above
// the threshold 20); dA_log += Σ dg g (as d g / d A_log = g); d dt_bias += Σ dza (sums in double). dzb may
// alias dbeta and dza may alias dg (elementwise, each read before it is written).
void pn_cpu_gates_bwd(float *dza, float *dzb, float *dA_log, float *ddt_bias, const float *dg, const float *dbeta,
                      const float *za, const float *g, const float *beta, const float *A_log, const float *dt_bias,
                      int64_t N, int64_t H) {
    for (int64_t i = 0; i < N * H; i++) dzb[i] = dbeta[i] * beta[i] * (1.0f - beta[i]);
    if (!za) return;
    for (int64_t h = 0; h < H; h++) {
        const float e = expf(A_log[h]);
        double sA = 0.0, sdt = 0.0;
        for (int64_t r = 0; r < N; r++) {
            const int64_t i = r * H + h;
            const float z = za[i] + dt_bias[h], d = dg[i];
            sA += (double)d * g[i];
            dza[i] = d * -e * (z > 20.0f ? 1.0f : sigmoidf_(z));
            sdt += dza[i];
        }
        if (dA_log) dA_log[h] += (float)sA;
        if (ddt_bias) ddt_bias[h] += (float)sdt;
    }
}

#define DATA(t) ((t) ? (t)->data : NULL)

void pn_cpu_lin_gates(pn_tensor *g, pn_tensor *beta, const pn_tensor *za, const pn_tensor *zb, const pn_tensor *A_log,
                      const pn_tensor *dt_bias) {
    pn_cpu_gates_fwd(g->data, beta->data, DATA(za), zb->data, DATA(A_log), DATA(dt_bias), zb->shape[0], zb->shape[1]);
}

void pn_cpu_lin_gates_bwd(pn_tensor *dza, pn_tensor *dzb, pn_tensor *dA_log, pn_tensor *ddt_bias, const pn_tensor *dg,
                          const pn_tensor *dbeta, const pn_tensor *za, const pn_tensor *g, const pn_tensor *beta,
                          const pn_tensor *A_log, const pn_tensor *dt_bias) {
    pn_cpu_gates_bwd(DATA(dza), dzb->data, DATA(dA_log), DATA(ddt_bias), dg->data, dbeta->data, DATA(za), g->data,
                     beta->data, DATA(A_log), DATA(dt_bias), dzb->shape[0], dzb->shape[1]);
}

int pn_cpu_gdn_fwd(const pn_gdn_cfg *c, void *o, float *ht, const void *q, const void *k, const void *v,
                     const float *g, const float *beta, const float *h0) {
    return pn_cpu_gdn_fwd_f32(c, q, k, v, g, beta, h0, o, ht);
}

int pn_cpu_gdn_bwd(const pn_gdn_cfg *c, void *dq, void *dk, void *dv, float *dg, float *dbeta, float *dh0,
                     const void *dout, const float *dht, const void *q, const void *k, const void *v, const float *g,
                     const float *beta, const float *h0) {
    return pn_cpu_gdn_bwd_f32(c, q, k, v, g, beta, h0, dout, dht, dq, dk, dv, dg, dbeta, dh0);
}

int pn_cpu_gdn_step(const pn_gdn_cfg *c, void *o, float *S, const void *q, const void *k, const void *v,
                      const float *g, const float *beta) {
    return pn_cpu_gdn_step_f32(c, q, k, v, g, beta, S, o);
}
