// The Gated DeltaNet layer forward on the CPU, step by step as fla's GatedDeltaNet.forward (mode chunk):
//
//   q = silu(conv_q(x Wq^T)), k = silu(conv_k(x Wk^T)), v = silu(conv_v(x Wv^T))   ShortConvolution, no bias
//   beta = sigmoid(x Wb^T)                                                         use_beta_sigmoid_in_kernel
//   g = -exp(A_log) * softplus(x Wa^T + dt_bias)   (fp32; softplus(z) = z above 20) use_gate_in_kernel
//   o = delta rule(l2norm(q), l2norm(k), v, g, beta), scale d_k^-1/2               use_qk_l2norm_in_kernel
//   o = rmsnorm(o per head over d_v) * o_norm.weight * silu(x Wg^T per head)       FusedRMSNormGated (swish)
//   y = o Wo^T
//
// Heads are laid out "b t (h d) -> b t h d", so the projections' outputs are already [B, T, H, d] and
// feed the kernels without any copy. `deltanet` is the same with g = 0.
//
// Scratch is allocated here per call (and freed before returning). That is acceptable for now: this is
// the reference forward used by tests and the CPU path; the arena-planned version, which keeps the
// activations the backward needs, comes with the model backward.
//
// The backward (pn_gdn_layer_backward_cpu) saves nothing from the forward: it recomputes every
// intermediate with the very same code (gdn_acts below) and then walks the steps in reverse:
//
//   o_proj          matmul_bwd              -> d(on), dWo
//   gated rmsnorm   gated_rmsnorm_bwd       -> d(o), d(gate), d(o_norm.weight)
//   g_proj          matmul_bwd              -> dx += d(gate) Wg, dWg
//   delta rule      gdn_bwd (qk_l2norm)     -> d(q), d(k), d(v), d(g), d(beta)
//   conv + SiLU     conv1d_bwd              -> d(proj), d(conv weights)
//   q/k/v_proj      matmul_bwd              -> dx += ..., dWq, dWk, dWv
//   beta            dzb = dβ β (1 − β)      -> dx += dzb Wb, dWb
//   g               z = x Wa^T + dt_bias, g = −e^{A_log} softplus(z):
//                   dz = dg (−e^{A_log}) sigmoid(z) (1 above the softplus threshold 20),
//                   dA_log = Σ dg g, d(dt_bias) = Σ dz, dx += dz Wa, dWa
//
// Recomputing costs one extra forward; the arena-planned activation store comes with the model backward.
#include "gdn_cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernels/cpu/cpu.h"
#include "../../kernels/cpu/gdn.h"
#include "../../src/pn_common.h"
#include "../../src/blocks/linear_common.h"

// out [N, n_out] = x [N, n_in] w[n_out, n_in]^T through the matmul kernel.
static void linear(float *out, const float *x, const float *w, int64_t N, int64_t n_in, int64_t n_out) {
    pn_tensor to = pn_view(out, PN_F32, PN_CPU, 2, (int64_t[]){N, n_out});
    pn_tensor tx = pn_view((void *)x, PN_F32, PN_CPU, 2, (int64_t[]){N, n_in});
    pn_tensor tw = pn_view((void *)w, PN_F32, PN_CPU, 2, (int64_t[]){n_out, n_in});
    pn_cpu_matmul(&to, &tx, &tw, NULL);
}


// The forward's intermediates, all [N, ...] with N = B T. proj holds the three projections before the conv.
typedef struct {
    float *proj, *q, *k, *v, *gate, *o, *on, *g, *beta;
} gdn_acts;

static void acts_free(gdn_acts *a) {
    float *all[] = {a->proj, a->q, a->k, a->v, a->gate, a->o, a->on, a->g, a->beta};
    for (size_t j = 0; j < sizeof all / sizeof all[0]; j++) free(all[j]);
    memset(a, 0, sizeof *a);
}

// The layer's parameters by name (NULL where the type has none).
typedef struct {
    const float *wq, *wk, *wv, *wa, *wb, *A_log, *dt_bias, *cq, *ck, *cv, *wg, *wn, *wo;
} gdn_params;

// Index of each parameter in the block's list (-1: absent), so dparams can be addressed the same way.
typedef struct {
    int wq, wk, wv, wa, wb, A_log, dt_bias, cq, ck, cv, wg, wn, wo;
} gdn_index;

static gdn_index index_of(int decay) {
    gdn_index ix;
    int i = 0;
    ix.wq = i++, ix.wk = i++, ix.wv = i++;
    ix.wa = decay ? i++ : -1;
    ix.wb = i++;
    ix.A_log = decay ? i++ : -1;
    ix.dt_bias = decay ? i++ : -1;
    ix.cq = i++, ix.ck = i++, ix.cv = i++, ix.wg = i++, ix.wn = i++, ix.wo = i++;
    return ix;
}

#define PICK(arr, j) ((j) >= 0 ? (arr)[j] : NULL)

// Shared setup of forward and backward: validates c, B, T, cu_seqlens (returns -1 with the error set),
// fills the recurrence config, dims and decay flag.
typedef struct {
    int decay;
    int64_t Hd, H, K, V, N, KD, VD;
    int W;
    pn_gdn_cfg gc;
} gdn_setup;

static int setup(gdn_setup *s, const pn_block_cfg *c, int64_t B, int64_t T, const int32_t *cu_seqlens, int n_seqs) {
    if (!strcmp(c->type, "gdn")) s->decay = 1;
    else if (!strcmp(c->type, "deltanet")) s->decay = 0;
    else return pn_errorf("gdn layer: block type '%s' is not gdn or deltanet", c->type);
    const pn_block_type *bt = pn_block_find(c->type);
    if (!bt || bt->check(c, "gdn layer")) return -1;
    if (c->hidden < 1) return pn_errorf("gdn layer: hidden = %d must be positive", c->hidden);
    if (B < 1 || T < 1) return pn_errorf("gdn layer: B = %lld, T = %lld must be positive", (long long)B, (long long)T);
    const pn_lin_dims d = pn_lin_dims_of(c);
    s->Hd = c->hidden, s->H = c->lin_heads, s->K = c->lin_head_k, s->V = d.head_v, s->N = B * T;
    s->KD = d.key_dim, s->VD = d.value_dim, s->W = c->conv_size;
    // The recurrence's config: it validates cu_seqlens before anything is computed.
    s->gc = (pn_gdn_cfg){.B = B, .T = T, .H = s->H, .K = s->K, .V = s->V, .cu_seqlens = cu_seqlens,
                         .n_seqs = cu_seqlens ? n_seqs : 0, .scale = 0.0f, .qk_l2norm = 1};
    return pn_gdn_check(&s->gc);
}

static gdn_params params_of(const float *const *params, int decay) {
    const gdn_index ix = index_of(decay);
    return (gdn_params){.wq = params[ix.wq], .wk = params[ix.wk], .wv = params[ix.wv], .wa = PICK(params, ix.wa),
                        .wb = params[ix.wb], .A_log = PICK(params, ix.A_log), .dt_bias = PICK(params, ix.dt_bias),
                        .cq = params[ix.cq], .ck = params[ix.ck], .cv = params[ix.cv], .wg = params[ix.wg],
                        .wn = params[ix.wn], .wo = params[ix.wo]};
}

// Everything up to (and including) the gated norm's output `on`; the caller applies o_proj.
static int gdn_acts_compute(gdn_acts *a, const gdn_setup *s, const gdn_params *p, const pn_block_cfg *c,
                            const float *x, int64_t B, int64_t T, const int32_t *cu_seqlens, int n_seqs) {
    const int64_t N = s->N, Hd = s->Hd, H = s->H, V = s->V, KD = s->KD, VD = s->VD;
    const int W = s->W;
    a->proj = pn_malloc(sizeof(float) * (size_t)(N * (2 * KD + VD)));
    a->q = pn_malloc(sizeof(float) * (size_t)(N * KD)), a->k = pn_malloc(sizeof(float) * (size_t)(N * KD));
    a->v = pn_malloc(sizeof(float) * (size_t)(N * VD)), a->gate = pn_malloc(sizeof(float) * (size_t)(N * VD));
    a->o = pn_malloc(sizeof(float) * (size_t)(N * VD)), a->on = pn_malloc(sizeof(float) * (size_t)(N * VD));
    a->g = pn_malloc(sizeof(float) * (size_t)(N * H)), a->beta = pn_malloc(sizeof(float) * (size_t)(N * H));
    float *pq = a->proj, *pk = a->proj + N * KD, *pv = a->proj + 2 * N * KD;

    linear(pq, x, p->wq, N, Hd, KD);
    linear(pk, x, p->wk, N, Hd, KD);
    linear(pv, x, p->wv, N, Hd, VD);
    // conv weights [C, 1, W] are [C, W] in memory
    pn_cpu_conv1d_fwd(a->q, pq, p->cq, NULL, NULL, B, T, KD, W, 1, cu_seqlens, n_seqs);
    pn_cpu_conv1d_fwd(a->k, pk, p->ck, NULL, NULL, B, T, KD, W, 1, cu_seqlens, n_seqs);
    pn_cpu_conv1d_fwd(a->v, pv, p->cv, NULL, NULL, B, T, VD, W, 1, cu_seqlens, n_seqs);

    // the gates from their pre-activations (za is parked in g, zb in beta: the gate op reads before it writes)
    linear(a->beta, x, p->wb, N, Hd, H);
    if (s->decay) linear(a->g, x, p->wa, N, Hd, H);
    pn_cpu_gates_fwd(a->g, a->beta, s->decay ? a->g : NULL, a->beta, p->A_log, p->dt_bias, N, H);

    int rc = pn_cpu_gdn_fwd_f32(&s->gc, a->q, a->k, a->v, a->g, a->beta, NULL, a->o, NULL);
    if (rc == 0) {
        linear(a->gate, x, p->wg, N, Hd, VD);
        pn_cpu_gated_rmsnorm_fwd(a->on, a->o, a->gate, p->wn, N * H, V, c->norm_eps);
    }
    return rc;
}

int pn_gdn_layer_forward_cpu(const pn_block_cfg *c, const float *const *params, const float *x, float *y, int64_t B,
                             int64_t T, const int32_t *cu_seqlens, int n_seqs) {
    gdn_setup s;
    if (setup(&s, c, B, T, cu_seqlens, n_seqs)) return -1;
    const gdn_params p = params_of(params, s.decay);
    gdn_acts a = {0};
    int rc = gdn_acts_compute(&a, &s, &p, c, x, B, T, cu_seqlens, n_seqs);
    if (rc == 0) linear(y, a.on, p.wo, s.N, s.VD, s.Hd);
    acts_free(&a);
    return rc;
}

// dx += dout [N, n_out] w [n_out, n_in]; dw += dout^T x (skipped when dw is NULL). tmp holds [N, n_in].
static void linear_bwd(float *dx, float *tmp, float *dw, const float *dout, const float *x, const float *w, int64_t N,
                       int64_t n_in, int64_t n_out) {
    pn_cpu_matmul_bwd_f32(tmp, dw, NULL, dout, x, w, N, n_in, n_out);
    for (int64_t i = 0; i < N * n_in; i++) dx[i] += tmp[i];
}

int pn_gdn_layer_backward_cpu(const pn_block_cfg *c, const float *const *params, float *const *dparams,
                              const float *x, const float *dy, float *dx, int64_t B, int64_t T,
                              const int32_t *cu_seqlens, int n_seqs) {
    gdn_setup s;
    if (setup(&s, c, B, T, cu_seqlens, n_seqs)) return -1;
    const gdn_params p = params_of(params, s.decay);
    const gdn_index ix = index_of(s.decay);
#define DP(name) (dparams ? PICK(dparams, ix.name) : NULL)
    const int64_t N = s.N, Hd = s.Hd, H = s.H, V = s.V, KD = s.KD, VD = s.VD;
    const int W = s.W;

    gdn_acts a = {0};
    int rc = gdn_acts_compute(&a, &s, &p, c, x, B, T, cu_seqlens, n_seqs);
    if (rc) {
        acts_free(&a);
        return rc;
    }
    float *d_on = pn_malloc(sizeof(float) * (size_t)(N * VD)), *d_o = pn_malloc(sizeof(float) * (size_t)(N * VD));
    float *d_gate = pn_malloc(sizeof(float) * (size_t)(N * VD));
    float *dq = pn_malloc(sizeof(float) * (size_t)(N * KD)), *dk = pn_malloc(sizeof(float) * (size_t)(N * KD));
    float *dv = pn_malloc(sizeof(float) * (size_t)(N * VD));
    float *dg = pn_malloc(sizeof(float) * (size_t)(N * H)), *dbeta = pn_malloc(sizeof(float) * (size_t)(N * H));
    float *dproj = pn_malloc(sizeof(float) * (size_t)(N * (KD > VD ? KD : VD)));
    float *tmp = pn_malloc(sizeof(float) * (size_t)(N * Hd));
    const float *pq = a.proj, *pk = a.proj + N * KD, *pv = a.proj + 2 * N * KD;

    // y = on Wo^T
    pn_cpu_matmul_bwd_f32(d_on, DP(wo), NULL, dy, a.on, p.wo, N, VD, Hd);
    // on = rmsnorm(o) * o_norm.weight * silu(gate), per head
    pn_cpu_gated_rmsnorm_bwd_f32(d_o, d_gate, DP(wn), d_on, a.o, a.gate, p.wn, N * H, V, c->norm_eps);
    // gate = x Wg^T: the first contribution to dx
    pn_cpu_matmul_bwd_f32(dx, DP(wg), NULL, d_gate, x, p.wg, N, Hd, VD);
    // the delta rule
    rc = pn_cpu_gdn_bwd_f32(&s.gc, a.q, a.k, a.v, a.g, a.beta, NULL, d_o, NULL, dq, dk, dv, dg, dbeta, NULL);
    if (rc == 0) {
        // q, k, v = silu(conv(x W^T))
        pn_cpu_conv1d_bwd_f32(dproj, DP(cq), NULL, NULL, dq, pq, p.cq, NULL, NULL, B, T, KD, W, 1, cu_seqlens, n_seqs);
        linear_bwd(dx, tmp, DP(wq), dproj, x, p.wq, N, Hd, KD);
        pn_cpu_conv1d_bwd_f32(dproj, DP(ck), NULL, NULL, dk, pk, p.ck, NULL, NULL, B, T, KD, W, 1, cu_seqlens, n_seqs);
        linear_bwd(dx, tmp, DP(wk), dproj, x, p.wk, N, Hd, KD);
        pn_cpu_conv1d_bwd_f32(dproj, DP(cv), NULL, NULL, dv, pv, p.cv, NULL, NULL, B, T, VD, W, 1, cu_seqlens, n_seqs);
        linear_bwd(dx, tmp, DP(wv), dproj, x, p.wv, N, Hd, VD);
        // the gates: dβ → dzb and dg → dza in place (za = x Wa^T recomputed)
        float *za = s.decay ? pn_malloc(sizeof(float) * (size_t)(N * H)) : NULL;
        if (za) linear(za, x, p.wa, N, Hd, H);
        pn_cpu_gates_bwd(za ? dg : NULL, dbeta, DP(A_log), DP(dt_bias), dg, dbeta, za, a.g, a.beta, p.A_log, p.dt_bias,
                         N, H);
        free(za);
        linear_bwd(dx, tmp, DP(wb), dbeta, x, p.wb, N, Hd, H);
        if (s.decay) {
            linear_bwd(dx, tmp, DP(wa), dg, x, p.wa, N, Hd, H);
        }
    }
#undef DP
    float *all[] = {d_on, d_o, d_gate, dq, dk, dv, dg, dbeta, dproj, tmp};
    for (size_t j = 0; j < sizeof all / sizeof all[0]; j++) free(all[j]);
    acts_free(&a);
    return rc;
}
