// The CPU backend's losses (kernels/ops.h: lm_loss, lm_score, mse): rows in parallel, each row's sums in double, so a
// row's value does not depend on how rows are split over threads.
//
// lm_loss is llm.c's fused classifier made two-sided: one row of student logits (and the teacher's) is read
// to get its softmax statistics, then read again to write the gradient over the logits, so the probabilities
// are never stored. dz may alias zs: each element is read before it is overwritten.
#include <math.h>
#include <string.h>

#include "../../src/pn_rng.h"
#include "cpu.h"
#include "threads.h"

typedef struct {
    float *dz, *rowloss;
    const float *zs, *zt;
    const int32_t *targets;
    int64_t V;
    pn_lm_loss_args a;
} lm_loss_job;

// max and log-sum-exp of scale * z over a row.
static double row_lse(const float *z, int64_t V, float scale) {
    float mx = -INFINITY;
    for (int64_t v = 0; v < V; v++) mx = fmaxf(mx, z[v] * scale);
    double sum = 0;
    for (int64_t v = 0; v < V; v++) sum += exp((double)(z[v] * scale - mx));
    return mx + log(sum);
}

static void lm_loss_rows(void *ctx, int64_t r0, int64_t r1) {
    const lm_loss_job *J = ctx;
    const int64_t V = J->V;
    const float tau = J->a.temperature, inv = 1.0f / tau;
    for (int64_t r = r0; r < r1; r++) {
        const float *s = J->zs + r * V, *t = J->zt ? J->zt + r * V : NULL;
        const int32_t tgt = J->targets ? J->targets[r] : -1;
        const double lse1 = row_lse(s, V, 1.0f); // CE's softmax (raw logits)
        double lse_s = 0, lse_t = 0, kl = 0;
        if (t) {
            lse_s = row_lse(s, V, inv);
            lse_t = row_lse(t, V, inv);
            // KL = sum pt (log pt - log ps) = sum pt (t - s) / tau + lse_s - lse_t (pt sums to 1)
            for (int64_t v = 0; v < V; v++) kl += exp(t[v] * inv - lse_t) * (double)(t[v] - s[v]) * inv;
            kl = (double)tau * tau * (kl + lse_s - lse_t);
        }
        J->rowloss[2 * r] = (float)kl;
        J->rowloss[2 * r + 1] = tgt >= 0 ? (float)(lse1 - s[tgt]) : 0.0f;
        if (!J->dz) continue;
        float *d = J->dz + r * V;
        const double gk = (double)J->a.kl_grad * tau, gc = tgt >= 0 ? J->a.ce_grad : 0.0;
        for (int64_t v = 0; v < V; v++) {
            const double sv = s[v];
            double g = 0;
            if (t) g += gk * (exp(sv * inv - lse_s) - exp(t[v] * inv - lse_t));
            if (gc != 0) g += gc * (exp(sv - lse1) - (v == tgt));
            d[v] = (float)g;
        }
    }
}

void pn_cpu_lm_loss(pn_tensor *dz, pn_tensor *rowloss, const pn_tensor *zs, const pn_tensor *zt,
                    const pn_tensor *targets, const pn_lm_loss_args *a) {
    lm_loss_job J = {.dz = dz ? dz->data : NULL, .rowloss = rowloss->data, .zs = zs->data, .zt = zt ? zt->data : NULL,
                     .targets = targets ? targets->data : NULL, .V = zs->shape[1], .a = *a};
    pn_cpu_parallel_for(zs->shape[0], 0, 30.0 * (double)J.V, lm_loss_rows, &J);
}

void pn_cpu_argmax(pn_tensor *out, const pn_tensor *z) {
    const int64_t R = z->shape[0], V = z->shape[1];
    for (int64_t r = 0; r < R; r++) {
        const float *row = (const float *)z->data + r * V;
        int64_t best = 0;
        for (int64_t v = 1; v < V; v++)
            if (row[v] > row[best]) best = v;
        ((int32_t *)out->data)[r] = (int32_t)best;
    }
}

// sample: the Gumbel-max draw of kernels/ops.h, row by row (the CUDA kernels compute the same perturbed
// values: z / temperature - log(-log u) in double, rounded to float, compared with `>`). The kept set is
// {z >= threshold}: the largest threshold (a bisection over the bits of an order-preserving key of the
// float) whose set holds top_k values, then the largest whose probability mass is top_p of that set's.
static uint32_t order_key(float x) { // larger float, larger key
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u & 0x80000000u ? ~u : u | 0x80000000u;
}

static void sample_row(int32_t *out, const float *row, int64_t V, const pn_sample_args *a, uint64_t stream) {
    const double T = a->temperature;
    uint32_t lo = 0; // keys >= lo are kept
    if (a->top_k > 0 && a->top_k < V) {
        for (int bit = 31; bit >= 0; bit--) {
            const uint32_t c = lo | (1u << bit);
            int64_t n = 0;
            for (int64_t v = 0; v < V; v++) n += order_key(row[v]) >= c;
            if (n >= a->top_k) lo = c;
        }
    }
    if (a->top_p < 1.0f) {
        float mx = -INFINITY;
        for (int64_t v = 0; v < V; v++) mx = fmaxf(mx, row[v]);
        double total = 0;
        for (int64_t v = 0; v < V; v++)
            if (order_key(row[v]) >= lo) total += exp(((double)row[v] - mx) / T);
        uint32_t t = 0;
        for (int bit = 31; bit >= 0; bit--) {
            const uint32_t c = t | (1u << bit), cl = c > lo ? c : lo; // never more than the top-k set
            double m = 0;
            for (int64_t v = 0; v < V; v++)
                if (order_key(row[v]) >= cl) m += exp(((double)row[v] - mx) / T);
            if (m >= (double)a->top_p * total) t = c;
        }
        if (t > lo) lo = t;
    }
    int64_t best = 0;
    float bv = -INFINITY;
    for (int64_t v = 0; v < V; v++) {
        if (order_key(row[v]) < lo) continue;
        const double u = pn_rng_uniform(a->seed, stream, (uint64_t)v);
        const float x = (float)((double)row[v] / T - log(-log(u)));
        if (x > bv) bv = x, best = v;
    }
    *out = (int32_t)best;
}

void pn_cpu_sample(pn_tensor *out, const pn_tensor *z, const pn_sample_args *a) {
    const int64_t R = z->shape[0], V = z->shape[1];
    for (int64_t r = 0; r < R; r++)
        sample_row((int32_t *)out->data + r, (const float *)z->data + r * V, V, a, a->step * 65536 + (uint64_t)r);
}

// lm_score: the target's log-probability (log-sum-exp in double, as lm_loss) and the first maximum.
typedef struct {
    float *out;
    const float *z;
    const int32_t *targets;
    int64_t V;
} lm_score_job;

static void lm_score_rows(void *ctx, int64_t r0, int64_t r1) {
    const lm_score_job *J = ctx;
    for (int64_t r = r0; r < r1; r++) {
        const float *z = J->z + r * J->V;
        int64_t best = 0;
        for (int64_t v = 1; v < J->V; v++)
            if (z[v] > z[best]) best = v;
        double sum = 0;
        for (int64_t v = 0; v < J->V; v++) sum += exp((double)z[v] - z[best]);
        const int32_t t = J->targets[r];
        J->out[2 * r] = t >= 0 ? (float)((double)z[t] - z[best] - log(sum)) : 0.0f;
        J->out[2 * r + 1] = (float)best;
    }
}

void pn_cpu_lm_score(pn_tensor *out, const pn_tensor *z, const pn_tensor *targets) {
    lm_score_job J = {.out = out->data, .z = z->data, .targets = targets->data, .V = z->shape[1]};
    pn_cpu_parallel_for(z->shape[0], 0, 10.0 * (double)J.V, lm_score_rows, &J);
}

typedef struct {
    float *dx, *rowloss;
    const float *x, *y;
    int64_t C;
    float scale;
    int accumulate;
} mse_job;

static void mse_rows(void *ctx, int64_t r0, int64_t r1) {
    const mse_job *J = ctx;
    for (int64_t r = r0; r < r1; r++) {
        const float *x = J->x + r * J->C, *y = J->y + r * J->C;
        float *d = J->dx ? J->dx + r * J->C : NULL;
        double sum = 0;
        for (int64_t c = 0; c < J->C; c++) {
            const float e = x[c] - y[c];
            sum += (double)e * e;
            if (d) d[c] = (J->accumulate ? d[c] : 0.0f) + J->scale * 2.0f * e;
        }
        J->rowloss[r] = (float)sum;
    }
}

void pn_cpu_mse(pn_tensor *dx, pn_tensor *rowloss, const pn_tensor *x, const pn_tensor *y, float grad_scale,
                int accumulate) {
    mse_job J = {.dx = dx ? dx->data : NULL, .rowloss = rowloss->data, .x = x->data, .y = y->data, .C = x->shape[1],
                 .scale = grad_scale, .accumulate = accumulate};
    pn_cpu_parallel_for(x->shape[0], 0, 4.0 * (double)J.C, mse_rows, &J);
}
