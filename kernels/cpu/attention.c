// Causal (optionally sliding-window) GQA attention on the CPU: the textbook form, one query row at a
// time, scores -> fp32 softmax -> weighted sum of values. Keys come from a cache that already holds the
// new tokens, so prefill and single-token decode are the same code.
#include <math.h>
#include <stdlib.h>

#include "../../src/pn_common.h"
#include "cpu.h"

void pn_cpu_attention(pn_tensor *out, const pn_tensor *q, const pn_tensor *kcache, const pn_tensor *vcache,
                      int pos0, int window) {
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
