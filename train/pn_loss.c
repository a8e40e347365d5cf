// pn_loss: the LM head fused with KL/CE in row chunks, and the hidden-state MSE (pn_loss.h).
//
// Why chunks of rows and not of the vocabulary: each chunk computes its logits once with one matmul over the
// whole vocabulary (the fastest shape for cuBLAS: N = V), the fused op needs a whole row for its softmax, and
// d(hidden) of a row is finished when its chunk is, so nothing is re-read. A chunk of 1024 rows of Qwen's
// 151,936-word vocabulary is 311 MB per buffer in bf16, against 2.5 GB for the logits of 8K tokens.
#include "pn_loss.h"

#include <stdlib.h>
#include <string.h>

#include "../src/pn_common.h"

int pn_loss_init(pn_loss *L, pn_device dev, int64_t V, int64_t C, int64_t chunk_rows, int64_t max_rows, int n_mse) {
    memset(L, 0, sizeof *L);
    PN_ASSERT(V > 0 && C > 0 && chunk_rows > 0 && max_rows > 0 && n_mse >= 0);
    L->dev = dev, L->V = V, L->C = C, L->max_rows = max_rows, L->n_mse = n_mse;
    L->R = chunk_rows < max_rows ? chunk_rows : max_rows;
    const pn_dtype dt = pn_device_dtype(dev);
    const int64_t sz[2] = {L->R, V}, st[1] = {max_rows}, sl[2] = {max_rows, 2},
                  sm[2] = {n_mse > 0 ? n_mse : 1, max_rows};
    const size_t bytes = 2 * pn_arena_need(dt, 2, sz) + pn_arena_need(PN_I32, 1, st) + pn_arena_need(PN_F32, 2, sl) +
                         pn_arena_need(PN_F32, 2, sm);
    if (pn_arena_init(&L->arena, dev, bytes))
        return pn_error_prefix("loss buffers (two chunks of %lld x %lld logits: a smaller loss.chunk_rows needs less)",
                               (long long)L->R, (long long)V);
    L->zs = pn_arena_tensor(&L->arena, dt, 2, sz);
    L->zt = pn_arena_tensor(&L->arena, dt, 2, sz);
    L->targets = pn_arena_tensor(&L->arena, PN_I32, 1, st);
    L->lm_rows = pn_arena_tensor(&L->arena, PN_F32, 2, sl);
    L->mse_rows = pn_arena_tensor(&L->arena, PN_F32, 2, sm);
    pn_backend_get(dev)->memset0(L->arena.base, L->arena.used);
    L->host = pn_malloc(sizeof(float) * (size_t)max_rows * (size_t)(2 + n_mse));
    return 0;
}

void pn_loss_free(pn_loss *L) {
    pn_arena_free(&L->arena);
    free(L->host);
    memset(L, 0, sizeof *L);
}

int pn_loss_head(pn_loss *L, int64_t row0, const pn_tensor *hs, const pn_tensor *ht, const pn_tensor *Ws,
                 const pn_tensor *Wt, const int32_t *targets_host, const pn_lm_loss_args *a, pn_tensor *dh,
                 int accumulate, pn_tensor *dWs) {
    const int64_t N = hs->shape[0];
    PN_ASSERT(hs->ndim == 2 && hs->shape[1] == L->C && Ws->shape[0] == L->V && row0 >= 0 && row0 + N <= L->max_rows);
    PN_ASSERT(!ht || (Wt && ht->shape[0] == N));
    pn_tensor tg = {0};
    if (targets_host) {
        for (int64_t i = 0; i < N; i++)
            if (targets_host[i] < -1 || targets_host[i] >= L->V)
                return pn_errorf("loss: target %d of row %lld is outside the vocabulary (size %lld)", targets_host[i],
                                 (long long)i, (long long)L->V);
        tg = pn_rows(&L->targets, row0, N);
        pn_backend_get(L->dev)->memcpy_h2d(tg.data, targets_host, sizeof(int32_t) * (size_t)N);
    }
    for (int64_t r0 = 0; r0 < N; r0 += L->R) {
        const int64_t n = N - r0 < L->R ? N - r0 : L->R;
        pn_tensor h = pn_rows(hs, r0, n), zs = pn_rows(&L->zs, 0, n), zt = pn_rows(&L->zt, 0, n);
        pn_tensor rows = pn_rows(&L->lm_rows, row0 + r0, n), t = targets_host ? pn_rows(&tg, r0, n) : (pn_tensor){0};
        pn_op_matmul(&zs, &h, Ws, NULL);
        if (ht) {
            pn_tensor h2 = pn_rows(ht, r0, n);
            pn_op_matmul(&zt, &h2, Wt, NULL);
        }
        // The gradient over the logits replaces the student's logits in place.
        pn_op_lm_loss(dh ? &zs : NULL, &rows, &zs, ht ? &zt : NULL, targets_host ? &t : NULL, a);
        if (dh) {
            pn_tensor d = pn_rows(dh, r0, n);
            pn_op_matmul_bwd(&d, dWs, NULL, &zs, &h, Ws, accumulate);
        }
    }
    return 0;
}

void pn_loss_mse(pn_loss *L, int slot, int64_t row0, const pn_tensor *x, const pn_tensor *y, pn_tensor *dx,
                 float grad_scale, int accumulate) {
    const int64_t N = x->shape[0];
    PN_ASSERT(slot >= 0 && slot < L->n_mse && row0 >= 0 && row0 + N <= L->max_rows);
    pn_tensor all = pn_reshape(&L->mse_rows, 1, (int64_t[]){pn_numel(&L->mse_rows)});
    pn_tensor rows = pn_rows(&all, (int64_t)slot * L->max_rows + row0, N);
    pn_op_mse(dx, &rows, x, y, grad_scale, accumulate);
}

void pn_loss_totals(pn_loss *L, int64_t nrows, double *kl, double *ce, double *mse) {
    PN_ASSERT(nrows >= 0 && nrows <= L->max_rows);
    const pn_backend *be = pn_backend_get(L->dev);
    if (kl || ce) be->memcpy_d2h(L->host, L->lm_rows.data, sizeof(float) * 2 * (size_t)nrows);
    double k = 0, c = 0;
    for (int64_t r = 0; r < nrows && (kl || ce); r++) k += L->host[2 * r], c += L->host[2 * r + 1];
    if (kl) *kl = k;
    if (ce) *ce = c;
    for (int s = 0; s < L->n_mse && mse; s++) {
        float *h = L->host + 2 * L->max_rows;
        be->memcpy_d2h(h, (float *)L->mse_rows.data + (size_t)s * (size_t)L->max_rows, sizeof(float) * (size_t)nrows);
        double m = 0;
        for (int64_t r = 0; r < nrows; r++) m += h[r];
        mse[s] = m;
    }
}
