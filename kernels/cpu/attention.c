// Causal (optionally sliding-window) GQA attention on the CPU: the textbook form, one query row at a
// time, scores -> fp32 softmax -> weighted sum of values. Keys come from a cache that already holds the
// new tokens, so prefill and single-token decode are the same code; the cache is a ring (key s in slot
// s mod cap: a sliding window's holds only what a call reads).
//
// A packed batch (cu_seqlens, kernels/packed.h) bounds each row's keys below by its document's first row, so
// every document is attended in the same call without seeing another.
//
// The backward recomputes each row's softmax P rather than storing the T x T matrix, then uses
// dS = P * (dP - <dO, O>) (the softmax Jacobian, with <dO, O> = sum_s P_s dP_s taken from the saved output),
// dQ = scale dS K, dK += scale dS^T Q, dV += P^T dO. Work is split by (batch, kv head) so the query heads of
// one GQA group, which all add into the same dK and dV rows, never race.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/pn_common.h"
#include "../packed.h"
#include "cpu.h"
#include "threads.h"

// The forward. Each (batch, kv head) first gets its keys transposed, kt[d][s], so that the scores of a row
// against 16 keys at a time are 16 independent sums that vectorize, each still formed d = 0, 1, ... in
// order (the same bits as one dot product at a time). Rows (b, t, h) are independent and run in parallel.
// With lse != NULL it also stores each row's log-sum-exp (max + log of the sum it forms anyway).
typedef struct {
    float *out, *lse;
    const pn_tensor *q, *kcache, *vcache;
    int pos0, window;
    int64_t s_lo, S; // keys s_lo .. S - 1 are the only ones any row sees; kt holds them
    float *kt;       // [B, Hkv, D, S - s_lo]
    const int32_t *cu; // a packed batch's document offsets (pos0 = 0), else NULL
    int n_docs;
} attn_job;

#define KEY_BLOCK 16 // keys per block of scores
#define DIM_BLOCK 32 // output dims per block of the weighted sum of values

static void transpose_keys(void *p, int64_t i0, int64_t i1) {
    const attn_job *a = p;
    const int64_t cap = a->kcache->shape[1], Hkv = a->kcache->shape[2], D = a->kcache->shape[3];
    const int64_t ns = a->S - a->s_lo;
    for (int64_t i = i0; i < i1; i++) { // i = b * Hkv + kvh
        const int64_t b = i / Hkv, kvh = i % Hkv;
        float *kt = a->kt + i * D * ns;
        const float *k = (const float *)a->kcache->data + (b * cap * Hkv + kvh) * D; // slot 0
        const int64_t ks = Hkv * D; // from one slot to the next
        int64_t j0 = 0;
        for (; j0 + KEY_BLOCK <= ns; j0 += KEY_BLOCK) { // KEY_BLOCK keys at a time: whole rows of kt are written
            int64_t slot[KEY_BLOCK]; // key s in slot s mod cap (a ring)
            for (int j = 0; j < KEY_BLOCK; j++) slot[j] = (a->s_lo + j0 + j) % cap * ks;
            for (int64_t d = 0; d < D; d++)
                for (int j = 0; j < KEY_BLOCK; j++) kt[d * ns + j0 + j] = k[slot[j] + d];
        }
        for (; j0 < ns; j0++)
            for (int64_t d = 0; d < D; d++) kt[d * ns + j0] = k[(a->s_lo + j0) % cap * ks + d];
    }
}

static void attention_range(void *p, int64_t r0, int64_t r1) {
    const attn_job *a = p;
    const pn_tensor *q = a->q;
    const int64_t T = q->shape[1], Hq = q->shape[2], D = q->shape[3];
    const int64_t cap = a->kcache->shape[1], Hkv = a->kcache->shape[2], group = Hq / Hkv;
    const int64_t ns = a->S - a->s_lo;
    const float scale = 1.0f / sqrtf((float)D);
    float *score = pn_malloc(sizeof(float) * (size_t)ns);
    for (int64_t r = r0; r < r1; r++) { // r = (b * T + t) * Hq + h
        const int64_t h = r % Hq, t = r / Hq % T, b = r / (Hq * T);
        const int64_t p = a->pos0 + t, kvh = h / group;
        int64_t s0 = a->window > 0 && p - a->window + 1 > 0 ? p - a->window + 1 : 0;
        const int64_t doc0 = pn_doc_lo(a->cu, a->n_docs, t); // a packed row sees its own document only
        if (s0 < doc0) s0 = doc0;
        const float *qr = (const float *)q->data + r * D;
        const float *kt = a->kt + (b * Hkv + kvh) * D * ns; // kt[d * ns + s - s_lo] for key s
        float *o = a->out + r * D;
        // Scores of keys s0 .. p (in sc[0 ..], s0 >= s_lo), KEY_BLOCK keys at a time.
        const int64_t nk = p + 1 - s0;
        const float *kt0 = kt + (s0 - a->s_lo);
        float *sc = score;
        for (int64_t j0 = 0; j0 < nk; j0 += KEY_BLOCK) {
            float acc[KEY_BLOCK] = {0};
            if (nk - j0 >= KEY_BLOCK) {
                for (int64_t d = 0; d < D; d++) {
                    const float qd = qr[d], *kd = kt0 + d * ns + j0;
                    for (int j = 0; j < KEY_BLOCK; j++) acc[j] += qd * kd[j];
                }
                for (int j = 0; j < KEY_BLOCK; j++) sc[j0 + j] = acc[j] * scale;
            } else {
                const int nj = (int)(nk - j0);
                for (int64_t d = 0; d < D; d++) {
                    const float qd = qr[d], *kd = kt0 + d * ns + j0;
                    for (int j = 0; j < nj; j++) acc[j] += qd * kd[j];
                }
                for (int j = 0; j < nj; j++) sc[j0 + j] = acc[j] * scale;
            }
        }
        float mx = -INFINITY;
        for (int64_t j = 0; j < nk; j++)
            if (sc[j] > mx) mx = sc[j];
        double sum = 0.0;
        for (int64_t j = 0; j < nk; j++) {
            sc[j] = expf(sc[j] - mx);
            sum += sc[j];
        }
        const float inv = (float)(1.0 / sum);
        if (a->lse) a->lse[r] = mx + (float)log(sum);
        // o = sum_s w_s v_s, DIM_BLOCK dims at a time kept in registers (each o[d] still summed s0, s0 + 1, ...).
        // Key s0 + j's value in slot (s0 + j) mod cap: the first nw keys before the ring wraps, then slot 0 on.
        const float *vb = (const float *)a->vcache->data + (b * cap * Hkv + kvh) * D;
        const int64_t vs = Hkv * D, first = s0 % cap, nw = cap - first;
#define VROW(j) (vb + ((j) < nw ? first + (j) : (j) - nw) * vs)
        for (int64_t d0 = 0; d0 < D; d0 += DIM_BLOCK) {
            float acc[DIM_BLOCK] = {0};
            if (D - d0 >= DIM_BLOCK) {
                for (int64_t j = 0; j < nk; j++) {
                    const float w = sc[j] * inv, *v = VROW(j) + d0;
                    for (int i = 0; i < DIM_BLOCK; i++) acc[i] += w * v[i];
                }
                for (int i = 0; i < DIM_BLOCK; i++) o[d0 + i] = acc[i];
            } else {
                const int nd = (int)(D - d0);
                for (int64_t j = 0; j < nk; j++) {
                    const float w = sc[j] * inv, *v = VROW(j) + d0;
                    for (int i = 0; i < nd; i++) acc[i] += w * v[i];
                }
                for (int i = 0; i < nd; i++) o[d0 + i] = acc[i];
            }
        }
#undef VROW
    }
    free(score);
}

static void attention_rows(pn_tensor *out, float *lse, const pn_tensor *q, const pn_tensor *kcache,
                           const pn_tensor *vcache, int pos0, int window, const pn_tensor *cu) {
    const int64_t B = q->shape[0], T = q->shape[1], Hq = q->shape[2], D = q->shape[3];
    const int64_t Hkv = kcache->shape[2];
    if (B * T * Hq == 0) return;
    attn_job a = {out->data, lse, q, kcache, vcache, pos0, window, 0, pos0 + T, NULL,
                  cu ? cu->data : NULL, cu ? (int)cu->shape[0] - 1 : 0};
    if (window > 0 && pos0 - window + 1 > 0) a.s_lo = pos0 - window + 1; // the first row's first key
    const int64_t ns = a.S - a.s_lo;
    a.kt = pn_malloc(sizeof(float) * (size_t)(B * Hkv * D * ns));
    pn_cpu_parallel_for(B * Hkv, 1, (double)D * ns, transpose_keys, &a);
    // A row sees up to pos0 + T keys (fewer with a window): two multiply-adds per key and dim, and an exp.
    const double keys = window > 0 && window < pos0 + T ? window : pos0 + (T + 1) / 2.0;
    pn_cpu_parallel_for(B * T * Hq, 0, keys * (2.0 * D + 32.0), attention_range, &a);
    free(a.kt);
}

void pn_cpu_attention(pn_tensor *out, const pn_tensor *q, const pn_tensor *kcache, const pn_tensor *vcache,
                      int pos0, int window) {
    attention_rows(out, NULL, q, kcache, vcache, pos0, window, NULL);
}

// Per sequence: q rotated at its position in a copy (pn_cpu_rope), then attention at that position.
void pn_cpu_attention_at(pn_tensor *out, const pn_tensor *q, const pn_tensor *kcache, const pn_tensor *vcache,
                         const pn_tensor *inv_freq, const pn_tensor *pos, int window) {
    const int32_t *p = pos->data;
    pn_tensor q1 = pn_rows(q, 0, 1);
    float *tmp = pn_malloc(pn_nbytes(&q1) ? pn_nbytes(&q1) : 1);
    for (int64_t b = 0; b < q->shape[0]; b++) {
        const int64_t before = window > 0 && window - 1 < p[b] ? window - 1 : p[b]; // the ring holds them all
        PN_ASSERT(p[b] >= 0 && q->shape[1] + before <= kcache->shape[1]);
        pn_tensor ob = pn_rows(out, b, 1), qb = pn_rows(q, b, 1), kb = pn_rows(kcache, b, 1), vb = pn_rows(vcache, b, 1);
        pn_tensor qr = qb;
        qr.data = tmp;
        memcpy(tmp, qb.data, pn_nbytes(&qb));
        if (inv_freq) pn_cpu_rope(&qr, inv_freq, p[b], NULL);
        attention_rows(&ob, NULL, &qr, &kb, &vb, p[b], window, NULL);
    }
    free(tmp);
}

// The training forward with statistics (lse [B, T, Hq]; the CPU backward recomputes its softmax anyway, the
// statistics are for the contract and the tests).
void pn_cpu_attention_train(pn_tensor *out, pn_tensor *lse, const pn_tensor *q, const pn_tensor *k, const pn_tensor *v,
                            int window, const pn_tensor *cu_seqlens) {
    attention_rows(out, lse->data, q, k, v, 0, window, cu_seqlens);
}

typedef struct {
    const pn_tensor *dq, *dk, *dv, *dout, *q, *k, *v, *out;
    int window;
    const int32_t *cu;
    int n_docs;
} attn_bwd_job;

// Units (b, kv head): the query heads of one GQA group add into the same dK, dV rows, so they stay together.
static void attention_bwd_range(void *job, int64_t u0, int64_t u1) {
    const attn_bwd_job *a = job;
    const int window = a->window;
    const int64_t T = a->q->shape[1], Hq = a->q->shape[2], D = a->q->shape[3];
    const int64_t Hkv = a->k->shape[2], group = Hq / Hkv;
    const float scale = 1.0f / sqrtf((float)D);
    const float *Q = a->q->data, *K = a->k->data, *V = a->v->data, *O = a->out->data, *dO = a->dout->data;
    float *dQ = a->dq->data, *dK = a->dk->data, *dV = a->dv->data;
    float *p = pn_malloc(sizeof(float) * (size_t)T);
    for (int64_t u = u0; u < u1; u++) {
        const int64_t b = u / Hkv, kvh = u % Hkv;
        for (int64_t s = 0; s < T; s++) {
            memset(dK + ((b * T + s) * Hkv + kvh) * D, 0, sizeof(float) * (size_t)D);
            memset(dV + ((b * T + s) * Hkv + kvh) * D, 0, sizeof(float) * (size_t)D);
        }
        for (int64_t h = kvh * group; h < (kvh + 1) * group; h++)
            for (int64_t t = 0; t < T; t++) {
                int64_t s0 = window > 0 && t - window + 1 > 0 ? t - window + 1 : 0;
                const int64_t doc0 = pn_doc_lo(a->cu, a->n_docs, t);
                if (s0 < doc0) s0 = doc0;
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

void pn_cpu_attention_bwd(pn_tensor *dq, pn_tensor *dk, pn_tensor *dv, const pn_tensor *dout, const pn_tensor *q,
                          const pn_tensor *k, const pn_tensor *v, const pn_tensor *out, const pn_tensor *lse,
                          int window, const pn_tensor *cu_seqlens) {
    (void)lse; // the reference recomputes each row's softmax
    const int64_t B = q->shape[0], T = q->shape[1], Hq = q->shape[2], D = q->shape[3], Hkv = k->shape[2];
    attn_bwd_job a = {dq, dk, dv, dout, q, k, v, out, window, cu_seqlens ? cu_seqlens->data : NULL,
                      cu_seqlens ? (int)cu_seqlens->shape[0] - 1 : 0};
    const double keys = window > 0 && window < T ? window : (T + 1) / 2.0;
    pn_cpu_parallel_for(B * Hkv, 1, (double)(Hq / Hkv) * T * keys * (6.0 * D + 32.0), attention_bwd_range, &a);
}

// The CPU's store and attention stay two steps (the fusion matters only for launch-bound GPU decoding).
void pn_cpu_kv_attend_at(pn_tensor *out, const pn_tensor *q, pn_tensor *kcache, pn_tensor *vcache, const pn_tensor *k,
                         const pn_tensor *v, const pn_tensor *inv_freq, const pn_tensor *pos, int window) {
    pn_cpu_kv_store_at(kcache, vcache, k, v, inv_freq, pos);
    pn_cpu_attention_at(out, q, kcache, vcache, inv_freq, pos, window);
}
