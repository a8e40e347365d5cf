// Causal (optionally sliding-window) GQA attention on the CPU: the textbook form, one query row at a
// time, scores -> fp32 softmax -> weighted sum of values. Keys come from a cache that already holds the
// new tokens, so prefill and single-token decode are the same code.
//
// The backward recomputes each row's softmax P rather than storing the T x T matrix, then uses
// dS = P * (dP - <dO, O>) (the softmax Jacobian, with <dO, O> = sum_s P_s dP_s taken from the saved output),
// dQ = scale dS K, dK += scale dS^T Q, dV += P^T dO. Work is split by (batch, kv head) so the query heads of
// one GQA group, which all add into the same dK and dV rows, never race.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/pn_common.h"
#include "cpu.h"

// The forward; with lse != NULL it also stores each row's log-sum-exp (max + log of the sum it forms anyway).
static void attention_rows(pn_tensor *out, float *lse, const pn_tensor *q, const pn_tensor *kcache,
                           const pn_tensor *vcache, int pos0, int window) {
    const int64_t B = q->shape[0], T = q->shape[1], Hq = q->shape[2], D = q->shape[3];
    const int64_t cap = kcache->shape[1], Hkv = kcache->shape[2], group = Hq / Hkv;
    const float scale = 1.0f / sqrtf((float)D);
#pragma omp parallel
    {
        float *score = pn_malloc(sizeof(float) * (size_t)(pos0 + T));
#pragma omp for collapse(3) schedule(dynamic, 4)
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = 0; t < T; t++)
                for (int64_t h = 0; h < Hq; h++) {
                    const int64_t p = pos0 + t, kvh = h / group;
                    const int64_t s0 = window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
                    const float *qr = (const float *)q->data + ((b * T + t) * Hq + h) * D;
                    float *o = (float *)out->data + ((b * T + t) * Hq + h) * D;
                    float mx = -INFINITY;
                    for (int64_t s = s0; s <= p; s++) {
                        const float *k = (const float *)kcache->data + ((b * cap + s) * Hkv + kvh) * D;
                        float dot = 0.0f;
                        for (int64_t d = 0; d < D; d++) dot += qr[d] * k[d];
                        score[s] = dot * scale;
                        if (score[s] > mx) mx = score[s];
                    }
                    double sum = 0.0;
                    for (int64_t s = s0; s <= p; s++) {
                        score[s] = expf(score[s] - mx);
                        sum += score[s];
                    }
                    const float inv = (float)(1.0 / sum);
                    if (lse) lse[(b * T + t) * Hq + h] = mx + (float)log(sum);
                    for (int64_t d = 0; d < D; d++) o[d] = 0.0f;
                    for (int64_t s = s0; s <= p; s++) {
                        const float *v = (const float *)vcache->data + ((b * cap + s) * Hkv + kvh) * D;
                        const float w = score[s] * inv;
                        for (int64_t d = 0; d < D; d++) o[d] += w * v[d];
                    }
                }
        free(score);
    }
}

void pn_cpu_attention(pn_tensor *out, const pn_tensor *q, const pn_tensor *kcache, const pn_tensor *vcache,
                      int pos0, int window) {
    attention_rows(out, NULL, q, kcache, vcache, pos0, window);
}

// The training forward with statistics (lse [B, T, Hq]; the CPU backward recomputes its softmax anyway, the
// statistics are for the contract and the tests).
void pn_cpu_attention_train(pn_tensor *out, pn_tensor *lse, const pn_tensor *q, const pn_tensor *k, const pn_tensor *v,
                            int window) {
    attention_rows(out, lse->data, q, k, v, 0, window);
}

void pn_cpu_attention_bwd(pn_tensor *dq, pn_tensor *dk, pn_tensor *dv, const pn_tensor *dout, const pn_tensor *q,
                          const pn_tensor *k, const pn_tensor *v, const pn_tensor *out, const pn_tensor *lse,
                          int window) {
    (void)lse; // the reference recomputes each row's softmax
    const int64_t B = q->shape[0], T = q->shape[1], Hq = q->shape[2], D = q->shape[3];
    const int64_t Hkv = k->shape[2], group = Hq / Hkv;
    const float scale = 1.0f / sqrtf((float)D);
    const float *Q = q->data, *K = k->data, *V = v->data, *O = out->data, *dO = dout->data;
    float *dQ = dq->data, *dK = dk->data, *dV = dv->data;
#pragma omp parallel
    {
        float *p = pn_malloc(sizeof(float) * (size_t)T);
#pragma omp for collapse(2) schedule(dynamic, 1)
        for (int64_t b = 0; b < B; b++)
            for (int64_t kvh = 0; kvh < Hkv; kvh++) {
                for (int64_t s = 0; s < T; s++) {
                    memset(dK + ((b * T + s) * Hkv + kvh) * D, 0, sizeof(float) * (size_t)D);
                    memset(dV + ((b * T + s) * Hkv + kvh) * D, 0, sizeof(float) * (size_t)D);
                }
                for (int64_t h = kvh * group; h < (kvh + 1) * group; h++)
                    for (int64_t t = 0; t < T; t++) {
                        const int64_t s0 = window > 0 && t - window + 1 > 0 ? t - window + 1 : 0;
                        const float *qr = Q + ((b * T + t) * Hq + h) * D, *dor = dO + ((b * T + t) * Hq + h) * D;
                        const float *orow = O + ((b * T + t) * Hq + h) * D;
                        float *dqr = dQ + ((b * T + t) * Hq + h) * D;
                        // Recompute this row's probabilities exactly as the forward did.
                        float mx = -INFINITY;
                        for (int64_t s = s0; s <= t; s++) {
                            const float *kr = K + ((b * T + s) * Hkv + kvh) * D;
                            float dot = 0.0f;
                            for (int64_t d = 0; d < D; d++) dot += qr[d] * kr[d];
                            p[s] = dot * scale;
                            if (p[s] > mx) mx = p[s];
                        }
                        double sum = 0.0;
                        for (int64_t s = s0; s <= t; s++) sum += (p[s] = expf(p[s] - mx));
                        const float inv = (float)(1.0 / sum);
                        float delta = 0.0f; // <dO, O> = sum_s P_s dP_s
                        for (int64_t d = 0; d < D; d++) delta += dor[d] * orow[d];
                        for (int64_t d = 0; d < D; d++) dqr[d] = 0.0f;
                        for (int64_t s = s0; s <= t; s++) {
                            const float *kr = K + ((b * T + s) * Hkv + kvh) * D, *vr = V + ((b * T + s) * Hkv + kvh) * D;
                            float *dkr = dK + ((b * T + s) * Hkv + kvh) * D, *dvr = dV + ((b * T + s) * Hkv + kvh) * D;
                            const float ps = p[s] * inv;
                            float dp = 0.0f;
                            for (int64_t d = 0; d < D; d++) dp += dor[d] * vr[d];
                            const float ds = ps * (dp - delta) * scale;
                            for (int64_t d = 0; d < D; d++) {
                                dqr[d] += ds * kr[d];
                                dkr[d] += ds * qr[d];
                                dvr[d] += ps * dor[d];
                            }
                        }
                    }
            }
        free(p);
    }
}
