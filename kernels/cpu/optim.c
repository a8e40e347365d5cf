// The CPU backend's optimizer ops (kernels/ops.h: adamw, sumsq, and their lists: the same, one by one). AdamW follows torch.optim.AdamW's
// single-tensor path operation by operation in fp32 (the step size and sqrt(bc2) are formed in double, as
// Python floats are, then used as fp32 scalars), so a run matches torch to rounding.
#include <math.h>

#include "cpu.h"
#include "threads.h"

typedef struct {
    float *w, *m, *v;
    const float *g;
    float *p_out; // NULL when w is the parameter itself
    pn_adamw_args a;
} adamw_job;

static void adamw_range(void *ctx, int64_t i0, int64_t i1) {
    const adamw_job *J = ctx;
    const pn_adamw_args *a = &J->a;
    const float decay = 1.0f - a->lr * a->weight_decay;
    const float step = (float)((double)a->lr / a->bc1), bc2s = (float)sqrt((double)a->bc2);
    for (int64_t i = i0; i < i1; i++) {
        const float g = J->g[i] * a->grad_scale;
        float w = J->w[i] * decay;
        const float m = J->m[i] + (1.0f - a->beta1) * (g - J->m[i]); // torch's lerp for weights < 0.5
        const float v = J->v[i] * a->beta2 + (1.0f - a->beta2) * g * g;
        w += -step * (m / (sqrtf(v) / bc2s + a->eps));
        J->m[i] = m, J->v[i] = v, J->w[i] = w;
        if (J->p_out) J->p_out[i] = w;
    }
}

void pn_cpu_adamw(pn_tensor *p, pn_tensor *master, pn_tensor *m, pn_tensor *v, const pn_tensor *g,
                  const pn_adamw_args *a) {
    // On the CPU parameters are F32: with a master copy (kept for symmetry with CUDA), p mirrors it.
    adamw_job J = {.w = master ? master->data : p->data, .m = m->data, .v = v->data, .g = g->data,
                   .p_out = master ? p->data : NULL, .a = *a};
    pn_cpu_parallel_for(pn_numel(p), 0, 12.0, adamw_range, &J);
}

void pn_cpu_sumsq(pn_tensor *partial, const pn_tensor *x) {
    const int64_t n = pn_numel(x), P = pn_numel(partial);
    const float *a = x->data;
    float *out = partial->data;
    for (int64_t i = 0; i < P; i++) {
        double s = 0;
        for (int64_t j = n * i / P; j < n * (i + 1) / P; j++) s += (double)a[j] * a[j];
        out[i] = (float)s;
    }
}

void pn_cpu_adamw_list(const pn_adamw_item *items, int n) {
    for (int k = 0; k < n; k++) {
        const pn_adamw_item *t = &items[k];
        pn_cpu_adamw(t->p, t->master, t->m, t->v, t->g, &t->a);
    }
}

void pn_cpu_sumsq_list(pn_tensor *partial, const pn_tensor *const *xs, int n) {
    for (int k = 0; k < n; k++) {
        if (!xs[k]) continue;
        pn_tensor row = pn_rows(partial, k, 1);
        row = pn_reshape(&row, 1, (int64_t[]){partial->shape[1]});
        pn_cpu_sumsq(&row, xs[k]);
    }
}
