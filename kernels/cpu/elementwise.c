// Element-wise and data-movement ops on the CPU: embedding gather, residual add, SwiGLU, RoPE, KV store.
#include <math.h>
#include <string.h>

#include "cpu.h"

void pn_cpu_embedding(pn_tensor *out, const pn_tensor *ids, const pn_tensor *table) {
    const int64_t N = pn_numel(ids), H = table->shape[1];
    const int32_t *id = ids->data;
    for (int64_t n = 0; n < N; n++)
        memcpy((float *)out->data + n * H, (const float *)table->data + (int64_t)id[n] * H, sizeof(float) * (size_t)H);
}

void pn_cpu_add(pn_tensor *x, const pn_tensor *y) {
    const int64_t n = pn_numel(x);
    float *a = x->data;
    const float *b = y->data;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) a[i] += b[i];
}

void pn_cpu_swiglu(pn_tensor *out, const pn_tensor *gate, const pn_tensor *up) {
    const int64_t n = pn_numel(out);
    const float *g = gate->data, *u = up->data;
    float *o = out->data;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) o[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

// Rotate-half RoPE: element i pairs with i + D/2. Angles are computed in fp32 as HF does
// (position * inv_freq), so positions in the tens of thousands round the same way.
// dir = 1 rotates by the angle (the forward), dir = -1 back (the backward: the rotation's transpose).
static void rope_dir(pn_tensor *x, const pn_tensor *inv_freq, int pos0, float dir) {
    const int64_t B = x->shape[0], T = x->shape[1], H = x->shape[2], D = x->shape[3], half = D / 2;
    const float *f = inv_freq->data;
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < T; t++) {
            const float p = (float)(pos0 + t);
            for (int64_t h = 0; h < H; h++) {
                float *v = (float *)x->data + ((b * T + t) * H + h) * D;
                for (int64_t i = 0; i < half; i++) {
                    const float a = p * f[i], c = cosf(a), s = dir * sinf(a);
                    const float x1 = v[i], x2 = v[i + half];
                    v[i] = x1 * c - x2 * s;
                    v[i + half] = x2 * c + x1 * s;
                }
            }
        }
}

void pn_cpu_rope(pn_tensor *x, const pn_tensor *inv_freq, int pos0) { rope_dir(x, inv_freq, pos0, 1.0f); }

void pn_cpu_rope_bwd(pn_tensor *dx, const pn_tensor *inv_freq, int pos0) { rope_dir(dx, inv_freq, pos0, -1.0f); }

void pn_cpu_kv_store(pn_tensor *cache, const pn_tensor *src, int pos0) {
    const int64_t B = src->shape[0], T = src->shape[1], row = src->shape[2] * src->shape[3], cap = cache->shape[1];
    for (int64_t b = 0; b < B; b++)
        memcpy((float *)cache->data + (b * cap + pos0) * row, (const float *)src->data + b * T * row,
               sizeof(float) * (size_t)(T * row));
}

// Backward of out = silu(gate) * up: dgate = dout * up * silu'(gate), dup = dout * silu(gate).
void pn_cpu_swiglu_bwd(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float s = 1.0f / (1.0f + expf(-gate[i]));
        dgate[i] = dout[i] * up[i] * s * (1.0f + gate[i] * (1.0f - s));
        dup[i] = dout[i] * gate[i] * s;
    }
}
