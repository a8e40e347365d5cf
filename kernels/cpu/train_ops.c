// The CPU backend's training and linear-block ops in the table's tensor form. The math of the larger ones
// lives in raw-array functions next to their kin (norm.c, elementwise.c, matmul.c, conv1d.c, gdn.c), which
// the torch/fla goldens test directly; here they are adapted to tensors, and the small ones (SiLU, the
// linear blocks' gates, RoPE's backward, the embedding's) are written out.
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

void pn_cpu_rmsnorm_bwd_t(pn_tensor *dx, pn_tensor *dw, const pn_tensor *dy, const pn_tensor *x, const pn_tensor *w,
                          float eps) {
    const int64_t D = w->shape[0];
    pn_cpu_rmsnorm_bwd(dx->data, dw ? dw->data : NULL, dy->data, x->data, w->data, pn_numel(x) / D, D, eps);
}

void pn_cpu_gated_rmsnorm_t(pn_tensor *y, const pn_tensor *x, const pn_tensor *gate, const pn_tensor *w, float eps) {
    const int64_t D = w->shape[0];
    pn_cpu_gated_rmsnorm_fwd(y->data, x->data, gate->data, w->data, pn_numel(x) / D, D, eps);
}

void pn_cpu_gated_rmsnorm_bwd_t(pn_tensor *dx, pn_tensor *dgate, pn_tensor *dw, const pn_tensor *dy, const pn_tensor *x,
                                const pn_tensor *gate, const pn_tensor *w, float eps) {
    const int64_t D = w->shape[0];
    pn_cpu_gated_rmsnorm_bwd(dx->data, dgate->data, dw ? dw->data : NULL, dy->data, x->data, gate->data, w->data,
                             pn_numel(x) / D, D, eps);
}

void pn_cpu_swiglu_bwd_t(pn_tensor *dgate, pn_tensor *dup, const pn_tensor *dout, const pn_tensor *gate,
                         const pn_tensor *up) {
    pn_cpu_swiglu_bwd(dgate->data, dup->data, dout->data, gate->data, up->data, pn_numel(gate));
}

void pn_cpu_matmul_bwd_t(pn_tensor *dx, pn_tensor *dw, pn_tensor *db, const pn_tensor *dout, const pn_tensor *x,
                         const pn_tensor *w, int accumulate_dx) {
    const int64_t N = x->shape[0], I = x->shape[1], O = w->shape[0];
    float *dxp = dx ? dx->data : NULL;
    float *tmp = NULL;
    if (dx && accumulate_dx) tmp = pn_malloc(sizeof(float) * (size_t)(N * I)), dxp = tmp;
    pn_cpu_matmul_bwd(dxp, dw ? dw->data : NULL, db ? db->data : NULL, dout->data, x->data, w->data, N, I, O);
    if (tmp) {
        float *d = dx->data;
        for (int64_t i = 0; i < N * I; i++) d[i] += tmp[i];
        free(tmp);
    }
}

// RoPE rotates each (i, i + D/2) pair by an angle; its transpose rotates back by the same angle.
void pn_cpu_rope_bwd(pn_tensor *dx, const pn_tensor *inv_freq, int pos0) {
    const int64_t B = dx->shape[0], T = dx->shape[1], H = dx->shape[2], D = dx->shape[3], half = D / 2;
    const float *f = inv_freq->data;
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) {
            const float p = (float)(pos0 + t);
            for (int64_t h = 0; h < H; h++) {
                float *v = (float *)dx->data + ((b * T + t) * H + h) * D;
                for (int64_t i = 0; i < half; i++) {
                    const float a = p * f[i], c = cosf(a), s = sinf(a);
                    const float y1 = v[i], y2 = v[i + half];
                    v[i] = y1 * c + y2 * s;
                    v[i + half] = y2 * c - y1 * s;
                }
            }
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

void pn_cpu_conv1d_t(pn_tensor *y, const pn_tensor *x, const pn_tensor *w, const pn_tensor *bias, const pn_tensor *kdyn,
                     int act_silu, const pn_tensor *cu_seqlens) {
    const int64_t B = x->shape[0], T = x->shape[1], C = x->shape[2];
    const int W = (int)(w ? pn_numel(w) / C : pn_numel(kdyn) / pn_numel(x));
    int n;
    const int32_t *cu = cu_of(cu_seqlens, &n);
    pn_cpu_conv1d_fwd(y->data, x->data, w ? w->data : NULL, bias ? bias->data : NULL, kdyn ? kdyn->data : NULL, B, T,
                      C, W, act_silu, cu, n);
}

void pn_cpu_conv1d_bwd_t(pn_tensor *dx, pn_tensor *dw, pn_tensor *dbias, pn_tensor *dkdyn, const pn_tensor *dy,
                         const pn_tensor *x, const pn_tensor *w, const pn_tensor *bias, const pn_tensor *kdyn,
                         int act_silu, const pn_tensor *cu_seqlens) {
    const int64_t B = x->shape[0], T = x->shape[1], C = x->shape[2];
    const int W = (int)(w ? pn_numel(w) / C : pn_numel(kdyn) / pn_numel(x));
    int n;
    const int32_t *cu = cu_of(cu_seqlens, &n);
    pn_cpu_conv1d_bwd(dx->data, dw ? dw->data : NULL, dbias ? dbias->data : NULL, dkdyn ? dkdyn->data : NULL,
                      dy->data, x->data, w ? w->data : NULL, bias ? bias->data : NULL, kdyn ? kdyn->data : NULL, B,
                      T, C, W, act_silu, cu, n);
}

void pn_cpu_lin_gates(pn_tensor *g, pn_tensor *beta, const pn_tensor *za, const pn_tensor *zb, const pn_tensor *A_log,
                      const pn_tensor *dt_bias) {
    const int64_t N = zb->shape[0], H = zb->shape[1];
    const float *b = zb->data;
    float *gp = g->data, *bp = beta->data;
    for (int64_t i = 0; i < N * H; i++) bp[i] = sigmoidf_(b[i]);
    if (!za) {
        memset(gp, 0, sizeof(float) * (size_t)(N * H));
        return;
    }
    const float *a = za->data, *al = A_log->data, *dt = dt_bias->data;
    for (int64_t r = 0; r < N; r++)
        for (int64_t h = 0; h < H; h++) gp[r * H + h] = -expf(al[h]) * softplusf_(a[r * H + h] + dt[h]);
}

// dzb = dβ β (1 − β); with z = za + dt_bias, dz = dg (−e^{A_log}) softplus'(z) (softplus' = sigmoid, 1 above
// the threshold 20); dA_log = Σ dg g (as d g / d A_log = g); d dt_bias = Σ dz. Sums in double.
void pn_cpu_lin_gates_bwd(pn_tensor *dza, pn_tensor *dzb, pn_tensor *dA_log, pn_tensor *ddt_bias, const pn_tensor *dg,
                          const pn_tensor *dbeta, const pn_tensor *za, const pn_tensor *g, const pn_tensor *beta,
                          const pn_tensor *A_log, const pn_tensor *dt_bias) {
    const int64_t N = dzb->shape[0], H = dzb->shape[1];
    const float *db = dbeta->data, *bp = beta->data;
    float *o = dzb->data;
    for (int64_t i = 0; i < N * H; i++) o[i] = db[i] * bp[i] * (1.0f - bp[i]);
    if (!za) return;
    const float *a = za->data, *al = A_log->data, *dt = dt_bias->data, *d = dg->data, *gp = g->data;
    float *oa = dza->data;
    for (int64_t h = 0; h < H; h++) {
        const float e = expf(al[h]);
        double sA = 0.0, sdt = 0.0;
        for (int64_t r = 0; r < N; r++) {
            const int64_t i = r * H + h;
            const float z = a[i] + dt[h];
            oa[i] = d[i] * -e * (z > 20.0f ? 1.0f : sigmoidf_(z));
            sA += (double)d[i] * gp[i];
            sdt += oa[i];
        }
        if (dA_log) ((float *)dA_log->data)[h] += (float)sA;
        if (ddt_bias) ((float *)ddt_bias->data)[h] += (float)sdt;
    }
}

int pn_cpu_gdn_fwd_t(const pn_gdn_cfg *c, void *o, float *ht, const void *q, const void *k, const void *v,
                     const float *g, const float *beta, const float *h0) {
    return pn_cpu_gdn_fwd(c, q, k, v, g, beta, h0, o, ht);
}

int pn_cpu_gdn_bwd_t(const pn_gdn_cfg *c, void *dq, void *dk, void *dv, float *dg, float *dbeta, float *dh0,
                     const void *dout, const float *dht, const void *q, const void *k, const void *v, const float *g,
                     const float *beta, const float *h0) {
    return pn_cpu_gdn_bwd(c, q, k, v, g, beta, h0, dout, dht, dq, dk, dv, dg, dbeta, dh0);
}

int pn_cpu_gdn_step_t(const pn_gdn_cfg *c, void *o, float *S, const void *q, const void *k, const void *v,
                      const float *g, const float *beta) {
    return pn_cpu_gdn_step(c, q, k, v, g, beta, S, o);
}
