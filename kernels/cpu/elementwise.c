// Element-wise and data-movement ops on the CPU: embedding gather, residual add, SwiGLU, RoPE, KV store.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/pn_common.h"
#include "../packed.h"
#include "cpu.h"
#include "threads.h"

void pn_cpu_embedding(pn_tensor *out, const pn_tensor *ids, const pn_tensor *table) {
    const int64_t N = pn_numel(ids), H = table->shape[1];
    const int32_t *id = ids->data;
    for (int64_t n = 0; n < N; n++)
        memcpy((float *)out->data + n * H, (const float *)table->data + (int64_t)id[n] * H, sizeof(float) * (size_t)H);
}

// Element-wise ops run over [begin, end) of their elements; the costs given to the pool are rough units of
// threads.h (an expf is about 32 of them, streaming a float through memory about 4).
typedef struct {
    float *o, *o2;
    const float *a, *b, *c;
} ew_job;

static void add_range(void *p, int64_t i0, int64_t i1) {
    const ew_job *e = p;
    for (int64_t i = i0; i < i1; i++) e->o[i] = e->a[i] + e->b[i];
}

void pn_cpu_add(pn_tensor *sum, const pn_tensor *x, const pn_tensor *y) {
    ew_job e = {.o = sum->data, .a = x->data, .b = y->data};
    pn_cpu_parallel_for(pn_numel(x), 0, 12.0, add_range, &e);
}

static void swiglu_range(void *p, int64_t i0, int64_t i1) {
    const ew_job *e = p;
    const float *g = e->a, *u = e->b;
    for (int64_t i = i0; i < i1; i++) e->o[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void pn_cpu_swiglu(pn_tensor *out, const pn_tensor *gate, const pn_tensor *up) {
    ew_job e = {.o = out->data, .a = gate->data, .b = up->data};
    pn_cpu_parallel_for(pn_numel(out), 0, 48.0, swiglu_range, &e);
}

// Rotate-half RoPE: element i pairs with i + D/2. Angles are computed in fp32 as HF does
// (position * inv_freq), so positions in the tens of thousands round the same way.
// dir = 1 rotates by the angle (the forward), dir = -1 back (the backward: the rotation's transpose).
// A token's angles are the same for all its heads, so each cos/sin is computed once per token.
// A packed batch (cu) restarts the positions at each document's first row.
typedef struct {
    pn_tensor *x;
    const float *f;
    int pos0;
    float dir;
    const int32_t *cu;
    int n_docs;
} rope_job;

static void rope_range(void *p, int64_t r0, int64_t r1) { // rows r = b * T + t
    const rope_job *j = p;
    const int64_t T = j->x->shape[1], H = j->x->shape[2], D = j->x->shape[3], half = D / 2;
    float *cs = pn_malloc(sizeof(float) * (size_t)(2 * half + 1)), *sn = cs + half;
    for (int64_t r = r0; r < r1; r++) {
        const float p = (float)(j->pos0 + r % T - pn_doc_lo(j->cu, j->n_docs, r % T));
        for (int64_t i = 0; i < half; i++) {
            const float a = p * j->f[i];
            cs[i] = cosf(a), sn[i] = j->dir * sinf(a);
        }
        for (int64_t h = 0; h < H; h++) {
            float *v = (float *)j->x->data + (r * H + h) * D;
            for (int64_t i = 0; i < half; i++) {
                const float c = cs[i], s = sn[i], x1 = v[i], x2 = v[i + half];
                v[i] = x1 * c - x2 * s;
                v[i + half] = x2 * c + x1 * s;
            }
        }
    }
    free(cs);
}

static void rope_dir(pn_tensor *x, const pn_tensor *inv_freq, int pos0, const pn_tensor *cu, float dir) {
    const int64_t B = x->shape[0], T = x->shape[1], H = x->shape[2], D = x->shape[3];
    rope_job j = {x, inv_freq->data, pos0, dir, cu ? cu->data : NULL, cu ? (int)cu->shape[0] - 1 : 0};
    pn_cpu_parallel_for(B * T, 0, (double)D * (32.0 + 4.0 * H), rope_range, &j);
}

void pn_cpu_rope(pn_tensor *x, const pn_tensor *inv_freq, int pos0, const pn_tensor *cu_seqlens) {
    rope_dir(x, inv_freq, pos0, cu_seqlens, 1.0f);
}

void pn_cpu_rope_bwd(pn_tensor *dx, const pn_tensor *inv_freq, int pos0, const pn_tensor *cu_seqlens) {
    rope_dir(dx, inv_freq, pos0, cu_seqlens, -1.0f);
}

// The decode form (positions per sequence, kernels/ops.h): each sequence is its own rope + kv_store at its
// position, k rotated in a copy (the caller's k is not written).
void pn_cpu_kv_store_at(pn_tensor *kcache, pn_tensor *vcache, const pn_tensor *k, const pn_tensor *v,
                        const pn_tensor *inv_freq, const pn_tensor *pos) {
    const int32_t *p = pos->data;
    pn_tensor k1 = pn_rows(k, 0, 1);
    float *tmp = pn_malloc(pn_nbytes(&k1) ? pn_nbytes(&k1) : 1);
    for (int64_t b = 0; b < k->shape[0]; b++) {
        PN_ASSERT(p[b] >= 0);
        pn_tensor kb = pn_rows(k, b, 1), vb = pn_rows(v, b, 1), kr = kb;
        pn_tensor kcb = pn_rows(kcache, b, 1), vcb = pn_rows(vcache, b, 1);
        kr.data = tmp;
        memcpy(tmp, kb.data, pn_nbytes(&kb));
        if (inv_freq) rope_dir(&kr, inv_freq, p[b], NULL, 1.0f);
        pn_cpu_kv_store(&kcb, &kr, p[b]);
        pn_cpu_kv_store(&vcb, &vb, p[b]);
    }
    free(tmp);
}

void pn_cpu_kv_store(pn_tensor *cache, const pn_tensor *src, int pos0) {
    const int64_t B = src->shape[0], T = src->shape[1], row = src->shape[2] * src->shape[3], cap = cache->shape[1];
    for (int64_t b = 0; b < B; b++) // token by token: a ring wraps at cap
        for (int64_t t = 0; t < T; t++)
            memcpy((float *)cache->data + (b * cap + (pos0 + t) % cap) * row,
                   (const float *)src->data + (b * T + t) * row, sizeof(float) * (size_t)row);
}

// Backward of out = silu(gate) * up: dgate = dout * up * silu'(gate), dup = dout * silu(gate).
static void swiglu_bwd_range(void *p, int64_t i0, int64_t i1) {
    const ew_job *e = p;
    const float *dout = e->a, *gate = e->b, *up = e->c;
    for (int64_t i = i0; i < i1; i++) {
        const float s = 1.0f / (1.0f + expf(-gate[i]));
        e->o[i] = dout[i] * up[i] * s * (1.0f + gate[i] * (1.0f - s));
        e->o2[i] = dout[i] * gate[i] * s;
    }
}

void pn_cpu_swiglu_bwd_f32(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int64_t n) {
    ew_job e = {.o = dgate, .o2 = dup, .a = dout, .b = gate, .c = up};
    pn_cpu_parallel_for(n, 0, 64.0, swiglu_bwd_range, &e);
}
