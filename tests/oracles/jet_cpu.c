// The JetBlock forward on the CPU, step by step as Jet-Nemotron's JetBlock.forward
// (jetai/modeling/hf/jet_block.py, with DynamicShortConvolution of jetai/modeling/hf/dynamic_conv.py):
//
//   q = silu(x Wq^T), k = silu(x Wk^T)                                   no convolution on q and k
//   K_t = w2(silu(w1 x_t)) + b2 as [value_dim, conv_size]               'b t (d w) -> b t d w': tap contiguous
//   v_t[d] = silu(sum_w K_t[d, w] * (x Wv^T)[t - (W-1) + w, d])          zero left padding, per sequence
//   beta = sigmoid(x Wb^T)
//   g = -exp(A_log) * softplus(x Wa^T + dt_bias)   (softplus(z) = z above 20)
//   o = gated delta rule(l2norm(q), l2norm(k), v, g, beta), scale d_k^-1/2   use_qk_l2norm_in_kernel=True
//   o = rmsnorm(o per head over d_v) * o_norm.weight * silu(x Wg^T per head)  FusedRMSNormGated
//   y = o Wo^T
//
// The generated kernels [B, T, value_dim, W] are exactly the layout pn_cpu_conv1d_fwd takes as kdyn.
// Scratch is allocated per call, as in gdn_cpu.c (reference forward for tests and the CPU path).
//
// The backward (pn_jet_layer_backward_cpu) saves nothing from the forward: it recomputes every
// intermediate with the very same code (jet_acts_compute below) and then walks the steps in reverse:
//
//   o_proj          matmul_bwd              -> d(on), dWo
//   gated rmsnorm   gated_rmsnorm_bwd       -> d(o), d(gate), d(o_norm.weight)
//   g_proj          matmul_bwd              -> dx = d(gate) Wg, dWg
//   delta rule      gdn_bwd (qk_l2norm)     -> d(q), d(k), d(v), d(g), d(beta)
//   q, k = silu(z)  dz = dq silu'(z)        -> dx += dz Wq, dWq (and k alike)
//   dynamic conv    conv1d_bwd (kdyn)       -> d(v_proj x), d(kernels) [N, value_dim * W]
//   v_proj          matmul_bwd              -> dx += ..., dWv
//   generator w2    matmul_bwd (with bias)  -> d(hgen), dW2, db2
//   generator w1    dz = dh silu'(z)        -> dx += dz W1, dW1
//   beta, g         as in gdn_cpu.c         -> dx += ..., dWb, dWa, dA_log, d(dt_bias)
#include "jet_cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernels/cpu/cpu.h"
#include "../../kernels/cpu/gdn.h"
#include "../../src/pn_common.h"
#include "../../src/blocks/linear_common.h"

// out [N, n_out] = x [N, n_in] w[n_out, n_in]^T (+ bias[n_out]) through the matmul kernel.
static void linear(float *out, const float *x, const float *w, const float *bias, int64_t N, int64_t n_in,
                   int64_t n_out) {
    pn_tensor to = pn_view(out, PN_F32, PN_CPU, 2, (int64_t[]){N, n_out});
    pn_tensor tx = pn_view((void *)x, PN_F32, PN_CPU, 2, (int64_t[]){N, n_in});
    pn_tensor tw = pn_view((void *)w, PN_F32, PN_CPU, 2, (int64_t[]){n_out, n_in});
    pn_tensor tb = bias ? pn_view((void *)bias, PN_F32, PN_CPU, 1, (int64_t[]){n_out}) : (pn_tensor){0};
    pn_cpu_matmul(&to, &tx, &tw, bias ? &tb : NULL);
}

static float silu(float z) { return z / (1.0f + expf(-z)); }

// d silu(z) / dz = s (1 + z (1 - s)), s = sigmoid(z).
static float dsilu(float z) {
    const float s = 1.0f / (1.0f + expf(-z));
    return s * (1.0f + z * (1.0f - s));
}


// Parameter indices in src/blocks/jet.c's order.
enum { P_Q, P_K, P_V, P_G, P_A, P_B, P_ALOG, P_DT, P_W1, P_W2, P_B2, P_ONORM, P_O, P_COUNT };

// Shared setup of forward and backward: validates c, B, T, cu_seqlens (returns -1 with the error set).
typedef struct {
    int64_t Hd, H, K, V, N, KD, VD, R;
    int W;
    pn_gdn_cfg gc;
} jet_setup;

static int setup(jet_setup *s, const pn_block_cfg *c, int64_t B, int64_t T, const int32_t *cu_seqlens, int n_seqs) {
    if (strcmp(c->type, "jet")) return pn_errorf("jet layer: block type '%s' is not jet", c->type);
    const pn_block_type *bt = pn_block_find(c->type);
    if (!bt || bt->check(c, "jet layer")) return -1;
    if (c->hidden < 1) return pn_errorf("jet layer: hidden = %d must be positive", c->hidden);
    if (B < 1 || T < 1) return pn_errorf("jet layer: B = %lld, T = %lld must be positive", (long long)B, (long long)T);
    const pn_lin_dims d = pn_lin_dims_of(c);
    s->Hd = c->hidden, s->H = c->lin_heads, s->K = c->lin_head_k, s->V = d.head_v, s->N = B * T;
    s->KD = d.key_dim, s->VD = d.value_dim, s->R = d.value_dim / c->gen_reduction;
    s->W = c->conv_size;
    // The recurrence's config first: it validates cu_seqlens before anything is computed.
    s->gc = (pn_gdn_cfg){.B = B, .T = T, .H = s->H, .K = s->K, .V = s->V, .cu_seqlens = cu_seqlens,
                         .n_seqs = cu_seqlens ? n_seqs : 0, .scale = 0.0f, .qk_l2norm = 1};
    return pn_gdn_check(&s->gc);
}

// The forward's intermediates, all [N, ...] with N = B T. zq, zk, zh: pre-activations of q, k and the
// generator's hidden; vraw = v_proj x; kdyn the generated kernels [N, value_dim, W].
typedef struct {
    float *zq, *zk, *q, *k, *vraw, *v, *zh, *hgen, *kdyn, *gate, *o, *on, *g, *beta;
} jet_acts;

static void acts_free(jet_acts *a) {
    float *all[] = {a->zq, a->zk, a->q, a->k, a->vraw, a->v, a->zh, a->hgen, a->kdyn, a->gate, a->o, a->on, a->g, a->beta};
    for (size_t j = 0; j < sizeof all / sizeof all[0]; j++) free(all[j]);
    memset(a, 0, sizeof *a);
}

// Everything up to (and including) the gated norm's output `on`; the caller applies o_proj.
static int jet_acts_compute(jet_acts *a, const jet_setup *s, const float *const *params, const pn_block_cfg *c,
                            const float *x, int64_t B, int64_t T, const int32_t *cu_seqlens, int n_seqs) {
    const int64_t N = s->N, Hd = s->Hd, H = s->H, V = s->V, KD = s->KD, VD = s->VD, R = s->R;
    const int W = s->W;
    const float *wq = params[P_Q], *wk = params[P_K], *wv = params[P_V], *wg = params[P_G];
    const float *wa = params[P_A], *wb = params[P_B], *A_log = params[P_ALOG], *dt_bias = params[P_DT];
    const float *w1 = params[P_W1], *w2 = params[P_W2], *b2 = params[P_B2];
    const float *wn = params[P_ONORM];

    a->zq = pn_malloc(sizeof(float) * (size_t)(N * KD)), a->zk = pn_malloc(sizeof(float) * (size_t)(N * KD));
    a->q = pn_malloc(sizeof(float) * (size_t)(N * KD)), a->k = pn_malloc(sizeof(float) * (size_t)(N * KD));
    a->vraw = pn_malloc(sizeof(float) * (size_t)(N * VD)), a->v = pn_malloc(sizeof(float) * (size_t)(N * VD));
    a->zh = pn_malloc(sizeof(float) * (size_t)(N * R)), a->hgen = pn_malloc(sizeof(float) * (size_t)(N * R));
    a->kdyn = pn_malloc(sizeof(float) * (size_t)(N * VD * W));
    a->gate = pn_malloc(sizeof(float) * (size_t)(N * VD));
    a->o = pn_malloc(sizeof(float) * (size_t)(N * VD)), a->on = pn_malloc(sizeof(float) * (size_t)(N * VD));
    a->g = pn_malloc(sizeof(float) * (size_t)(N * H)), a->beta = pn_malloc(sizeof(float) * (size_t)(N * H));

    linear(a->zq, x, wq, NULL, N, Hd, KD);
    linear(a->zk, x, wk, NULL, N, Hd, KD);
    for (int64_t r = 0; r < N * KD; r++) a->q[r] = silu(a->zq[r]), a->k[r] = silu(a->zk[r]);

    // Dynamic convolution of v: per-token kernels from the generator, then causal conv + SiLU.
    linear(a->vraw, x, wv, NULL, N, Hd, VD);
    linear(a->zh, x, w1, NULL, N, Hd, R);
    for (int64_t r = 0; r < N * R; r++) a->hgen[r] = silu(a->zh[r]);
    linear(a->kdyn, a->hgen, w2, b2, N, R, VD * W);
    pn_cpu_conv1d_fwd(a->v, a->vraw, NULL, NULL, a->kdyn, B, T, VD, W, 1, cu_seqlens, n_seqs);

    // the gates from their pre-activations (za parked in g, zb in beta: the gate op reads before it writes)
    linear(a->beta, x, wb, NULL, N, Hd, H);
    linear(a->g, x, wa, NULL, N, Hd, H);
    pn_cpu_gates_fwd(a->g, a->beta, a->g, a->beta, A_log, dt_bias, N, H);

    int rc = pn_cpu_gdn_fwd_f32(&s->gc, a->q, a->k, a->v, a->g, a->beta, NULL, a->o, NULL);
    if (rc == 0) {
        linear(a->gate, x, wg, NULL, N, Hd, VD);
        pn_cpu_gated_rmsnorm_fwd(a->on, a->o, a->gate, wn, N * H, V, c->norm_eps);
    }
    return rc;
}

int pn_jet_layer_forward_cpu(const pn_block_cfg *c, const float *const *params, const float *x, float *y, int64_t B,
                             int64_t T, const int32_t *cu_seqlens, int n_seqs) {
    jet_setup s;
    if (setup(&s, c, B, T, cu_seqlens, n_seqs)) return -1;
    jet_acts a = {0};
    int rc = jet_acts_compute(&a, &s, params, c, x, B, T, cu_seqlens, n_seqs);
    if (rc == 0) linear(y, a.on, params[P_O], NULL, s.N, s.VD, s.Hd);
    acts_free(&a);
    return rc;
}

// dx += dout [N, n_out] w [n_out, n_in]; dw += dout^T x (skipped when dw is NULL). tmp holds [N, n_in].
static void linear_bwd(float *dx, float *tmp, float *dw, const float *dout, const float *x, const float *w, int64_t N,
                       int64_t n_in, int64_t n_out) {
    pn_cpu_matmul_bwd_f32(tmp, dw, NULL, dout, x, w, N, n_in, n_out);
    for (int64_t i = 0; i < N * n_in; i++) dx[i] += tmp[i];
}

int pn_jet_layer_backward_cpu(const pn_block_cfg *c, const float *const *params, float *const *dparams,
                              const float *x, const float *dy, float *dx, int64_t B, int64_t T,
                              const int32_t *cu_seqlens, int n_seqs) {
    jet_setup s;
    if (setup(&s, c, B, T, cu_seqlens, n_seqs)) return -1;
#define DP(j) (dparams ? dparams[j] : NULL)
    const int64_t N = s.N, Hd = s.Hd, H = s.H, V = s.V, KD = s.KD, VD = s.VD, R = s.R;
    const int W = s.W;

    jet_acts a = {0};
    int rc = jet_acts_compute(&a, &s, params, c, x, B, T, cu_seqlens, n_seqs);
    if (rc) {
        acts_free(&a);
        return rc;
    }
    float *d_on = pn_malloc(sizeof(float) * (size_t)(N * VD)), *d_o = pn_malloc(sizeof(float) * (size_t)(N * VD));
    float *d_gate = pn_malloc(sizeof(float) * (size_t)(N * VD));
    float *dq = pn_malloc(sizeof(float) * (size_t)(N * KD)), *dk = pn_malloc(sizeof(float) * (size_t)(N * KD));
    float *dv = pn_malloc(sizeof(float) * (size_t)(N * VD)), *dvraw = pn_malloc(sizeof(float) * (size_t)(N * VD));
    float *dkdyn = pn_malloc(sizeof(float) * (size_t)(N * VD * W));
    float *dh = pn_malloc(sizeof(float) * (size_t)(N * R));
    float *dg = pn_malloc(sizeof(float) * (size_t)(N * H)), *dbeta = pn_malloc(sizeof(float) * (size_t)(N * H));
    float *tmp = pn_malloc(sizeof(float) * (size_t)(N * Hd));

    // y = on Wo^T
    pn_cpu_matmul_bwd_f32(d_on, DP(P_O), NULL, dy, a.on, params[P_O], N, VD, Hd);
    // on = rmsnorm(o) * o_norm.weight * silu(gate), per head
    pn_cpu_gated_rmsnorm_bwd_f32(d_o, d_gate, DP(P_ONORM), d_on, a.o, a.gate, params[P_ONORM], N * H, V, c->norm_eps);
    // gate = x Wg^T: the first contribution to dx (overwrites it)
    pn_cpu_matmul_bwd_f32(dx, DP(P_G), NULL, d_gate, x, params[P_G], N, Hd, VD);
    // the delta rule
    rc = pn_cpu_gdn_bwd_f32(&s.gc, a.q, a.k, a.v, a.g, a.beta, NULL, d_o, NULL, dq, dk, dv, dg, dbeta, NULL);
    if (rc == 0) {
        // q, k = silu(x W^T): dz = d silu'(z), in place
        for (int64_t r = 0; r < N * KD; r++) dq[r] *= dsilu(a.zq[r]), dk[r] *= dsilu(a.zk[r]);
        linear_bwd(dx, tmp, DP(P_Q), dq, x, params[P_Q], N, Hd, KD);
        linear_bwd(dx, tmp, DP(P_K), dk, x, params[P_K], N, Hd, KD);
        // v = silu(dynamic conv(vraw, kdyn)): d(vraw) and d(kdyn)
        pn_cpu_conv1d_bwd_f32(dvraw, NULL, NULL, dkdyn, dv, a.vraw, NULL, NULL, a.kdyn, B, T, VD, W, 1, cu_seqlens,
                          n_seqs);
        linear_bwd(dx, tmp, DP(P_V), dvraw, x, params[P_V], N, Hd, VD);
        // kdyn = hgen W2^T + b2; hgen = silu(zh), zh = x W1^T
        pn_cpu_matmul_bwd_f32(dh, DP(P_W2), DP(P_B2), dkdyn, a.hgen, params[P_W2], N, R, VD * W);
        for (int64_t r = 0; r < N * R; r++) dh[r] *= dsilu(a.zh[r]);
        linear_bwd(dx, tmp, DP(P_W1), dh, x, params[P_W1], N, Hd, R);
        // the gates: dβ → dzb and dg → dza in place (za = x Wa^T recomputed)
        float *za = pn_malloc(sizeof(float) * (size_t)(N * H));
        linear(za, x, params[P_A], NULL, N, Hd, H);
        pn_cpu_gates_bwd(dg, dbeta, DP(P_ALOG), DP(P_DT), dg, dbeta, za, a.g, a.beta, params[P_ALOG], params[P_DT], N, H);
        free(za);
        linear_bwd(dx, tmp, DP(P_B), dbeta, x, params[P_B], N, Hd, H);
        linear_bwd(dx, tmp, DP(P_A), dg, x, params[P_A], N, Hd, H);
    }
#undef DP
    float *all[] = {d_on, d_o, d_gate, dq, dk, dv, dvraw, dkdyn, dh, dg, dbeta, tmp};
    for (size_t j = 0; j < sizeof all / sizeof all[0]; j++) free(all[j]);
    acts_free(&a);
    return rc;
}
