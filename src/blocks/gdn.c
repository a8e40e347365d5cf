// `gdn`: fla's GatedDeltaNet layer — q, k, v projections each through a causal depthwise convolution
// (conv_size) and SiLU, L2-normalized q and k, beta = sigmoid(b_proj x), the decay
// g = -exp(A_log) * softplus(a_proj x + dt_bias), the delta rule, a gated RMSNorm with silu(g_proj x), and
// o_proj. `deltanet` is the same layer without decay (no a_proj, A_log, dt_bias: g = 0).
#include <string.h>

#include "linear_common.h"

extern const pn_block_type pn_block_gdn;

static int params_common(const pn_block_cfg *c, int layer, pn_param *out, int decay) {
    const pn_lin_dims d = pn_lin_dims_of(c);
    const int64_t H = c->hidden, nh = c->lin_heads;
    int n = 0;
    pn_block_add_param(out, &n, layer, "q_proj.weight", PN_PARAM_WEIGHT, 2, d.key_dim, H, 0);
    pn_block_add_param(out, &n, layer, "k_proj.weight", PN_PARAM_WEIGHT, 2, d.key_dim, H, 0);
    pn_block_add_param(out, &n, layer, "v_proj.weight", PN_PARAM_WEIGHT, 2, d.value_dim, H, 0);
    if (decay) pn_block_add_param(out, &n, layer, "a_proj.weight", PN_PARAM_WEIGHT, 2, nh, H, 0);
    pn_block_add_param(out, &n, layer, "b_proj.weight", PN_PARAM_WEIGHT, 2, nh, H, 0);
    if (decay) {
        pn_block_add_param(out, &n, layer, "A_log", PN_PARAM_A_LOG, 1, nh, 0, 0);
        pn_block_add_param(out, &n, layer, "dt_bias", PN_PARAM_DT_BIAS, 1, nh, 0, 0);
    }
    pn_block_add_param(out, &n, layer, "q_conv1d.weight", PN_PARAM_CONV, 3, d.key_dim, 1, c->conv_size);
    pn_block_add_param(out, &n, layer, "k_conv1d.weight", PN_PARAM_CONV, 3, d.key_dim, 1, c->conv_size);
    pn_block_add_param(out, &n, layer, "v_conv1d.weight", PN_PARAM_CONV, 3, d.value_dim, 1, c->conv_size);
    pn_block_add_param(out, &n, layer, "g_proj.weight", PN_PARAM_WEIGHT, 2, d.value_dim, H, 0);
    pn_block_add_param(out, &n, layer, "o_norm.weight", PN_PARAM_NORM, 1, d.head_v, 0, 0);
    pn_block_add_param(out, &n, layer, "o_proj.weight", PN_PARAM_WEIGHT, 2, H, d.value_dim, 0);
    return n;
}

static int params_gdn(const pn_block_cfg *c, int layer, pn_param *out) { return params_common(c, layer, out, 1); }
static int params_deltanet(const pn_block_cfg *c, int layer, pn_param *out) { return params_common(c, layer, out, 0); }

// Three short convolutions (q, k, v) keep conv_size - 1 inputs each.
static size_t state_gdn(const pn_block_cfg *c, int64_t ctx, int elem) {
    (void)ctx;
    const pn_lin_dims d = pn_lin_dims_of(c);
    return pn_lin_state(c, 2 * d.key_dim + d.value_dim, elem);
}

static double flops_gdn(const pn_block_cfg *c, int64_t pos) {
    (void)pos;
    const pn_lin_dims d = pn_lin_dims_of(c);
    const double H = c->hidden, V = (double)d.value_dim, K = (double)d.key_dim;
    const double proj = 2.0 * H * (2.0 * K + 2.0 * V + 2.0 * c->lin_heads) + 2.0 * V * H;
    return proj + 2.0 * c->conv_size * (2.0 * K + V) + pn_lin_recurrence_flops(c);
}

// ---------------------------------------------------------------------------------------------------
// Training forward and backward through the backend table (src/blocks/gdn_cpu.c is the fp32 reference
// they are tested against). Kept for the backward: the three projections before their convolutions, q, k,
// v after them, the gate pre-activations and gates, silu's gate input, the recurrence's output and the
// gated norm's. The backward:
//
//   o_proj          matmul_bwd              -> d(on), dWo
//   time mixing     pn_lin_mix_backward     -> dq, dk, dv, dza, dzb; dx = d(gate) Wg; dWg, do_norm, dA_log, ddt
//   conv + SiLU     conv1d_bwd              -> d(proj), d(conv weights)     (q, k, v in turn)
//   q/k/v_proj      matmul_bwd              -> dx += ..., dWq, dWk, dWv
//   a_proj, b_proj  matmul_bwd              -> dx += ..., dWa, dWb

enum { A_PQ, A_PK, A_PV, A_Q, A_K, A_V, A_ZA, A_ZB, A_G, A_BETA, A_GATE, A_O, A_ON, A_SAVED, A_COUNT };
enum { S_DON, S_DO, S_DGATE, S_DQ, S_DK, S_DV, S_DG, S_DBETA, S_DZA, S_DZB, S_DPROJ, S_COUNT };

// Parameter indices in params_common's order (-1 when absent).
typedef struct {
    int wq, wk, wv, wa, wb, A_log, dt_bias, cq, ck, cv, wg, wn, wo;
} gdn_index;

static gdn_index index_of(const pn_block_cfg *c) {
    const int decay = !strcmp(c->type, "gdn");
    gdn_index ix;
    int i = 0;
    ix.wq = i++, ix.wk = i++, ix.wv = i++;
    ix.wa = decay ? i++ : -1;
    ix.wb = i++;
    ix.A_log = decay ? i++ : -1, ix.dt_bias = decay ? i++ : -1;
    ix.cq = i++, ix.ck = i++, ix.cv = i++, ix.wg = i++, ix.wn = i++, ix.wo = i++;
    return ix;
}

static int acts_gdn(const pn_block_cfg *c, int which, pn_dtype act, pn_dtype *dt, int64_t *cols) {
    const pn_lin_dims d = pn_lin_dims_of(c);
    const int64_t K = d.key_dim, V = d.value_dim, H = c->lin_heads;
    if (which == 0) {
        const int64_t w[A_COUNT] = {K, K, V, K, K, V, H, H, H, H, V, V, V, pn_lin_saved_cols(c, act)};
        for (int i = 0; i < A_COUNT; i++) dt[i] = (i == A_G || i == A_BETA) ? PN_F32 : act, cols[i] = w[i];
        return A_COUNT;
    }
    const int64_t w[S_COUNT] = {V, V, V, K, K, V, H, H, H, H, K > V ? K : V};
    for (int i = 0; i < S_COUNT; i++) dt[i] = (i == S_DG || i == S_DBETA) ? PN_F32 : act, cols[i] = w[i];
    return S_COUNT;
}

static const pn_tensor *opt(const pn_tensor *p, int i) { return i >= 0 ? &p[i] : NULL; }
static pn_tensor *gopt(pn_tensor *gp, int i) { return i >= 0 ? pn_block_grad(gp, i) : NULL; }

static pn_lin_mix mix_of(pn_tensor *acts, int decay) {
    return (pn_lin_mix){.q = &acts[A_Q], .k = &acts[A_K], .v = &acts[A_V], .za = decay ? &acts[A_ZA] : NULL,
                        .zb = &acts[A_ZB], .g = &acts[A_G], .beta = &acts[A_BETA], .gate = &acts[A_GATE],
                        .o = &acts[A_O], .on = &acts[A_ON], .saved = &acts[A_SAVED]};
}

static int forward_gdn(const pn_block_cfg *c, const pn_tensor *p, pn_tensor *acts, const pn_tensor *x, pn_tensor *y,
                       const pn_block_ctx *ctx) {
    const gdn_index ix = index_of(c);
    const int64_t N = ctx->B * ctx->T;
    const int pj[3] = {A_PQ, A_PK, A_PV}, out[3] = {A_Q, A_K, A_V};
    const int wi[3] = {ix.wq, ix.wk, ix.wv}, ci[3] = {ix.cq, ix.ck, ix.cv};
    for (int j = 0; j < 3; j++) { // q, k, v = silu(conv(x W^T))
        pn_tensor proj = pn_rows(&acts[pj[j]], 0, N);
        pn_op_matmul(&proj, x, &p[wi[j]], NULL);
        pn_tensor x3 = pn_lin_btc(&acts[pj[j]], ctx), y3 = pn_lin_btc(&acts[out[j]], ctx);
        pn_op_conv1d(&y3, &x3, &p[ci[j]], NULL, NULL, 1, ctx->cu_seqlens);
    }
    pn_tensor zb = pn_rows(&acts[A_ZB], 0, N);
    pn_op_matmul(&zb, x, &p[ix.wb], NULL);
    if (ix.wa >= 0) {
        pn_tensor za = pn_rows(&acts[A_ZA], 0, N);
        pn_op_matmul(&za, x, &p[ix.wa], NULL);
    }
    const pn_lin_mix mix = mix_of(acts, ix.wa >= 0);
    if (pn_lin_mix_forward(c, &mix, opt(p, ix.A_log), opt(p, ix.dt_bias), &p[ix.wg], &p[ix.wn], x, ctx, NULL))
        return -1;
    pn_tensor on = pn_rows(&acts[A_ON], 0, N);
    pn_op_matmul(y, &on, &p[ix.wo], NULL);
    return 0;
}

static int backward_gdn(const pn_block_cfg *c, const pn_tensor *p, pn_tensor *gp, pn_tensor *acts, pn_tensor *scratch,
                        const pn_tensor *x, const pn_tensor *dy, pn_tensor *dx, const pn_block_ctx *ctx) {
    const gdn_index ix = index_of(c);
    const int64_t N = ctx->B * ctx->T;
    pn_tensor on = pn_rows(&acts[A_ON], 0, N), d_on = pn_rows(&scratch[S_DON], 0, N);
    pn_op_matmul_bwd(&d_on, gopt(gp, ix.wo), NULL, dy, &on, &p[ix.wo], 0);
    const pn_lin_mix mix = mix_of(acts, ix.wa >= 0);
    const pn_lin_mix_grads d = {.d_on = &scratch[S_DON], .d_o = &scratch[S_DO], .d_gate = &scratch[S_DGATE],
                                .dq = &scratch[S_DQ], .dk = &scratch[S_DK], .dv = &scratch[S_DV],
                                .dg = &scratch[S_DG], .dbeta = &scratch[S_DBETA], .dza = &scratch[S_DZA],
                                .dzb = &scratch[S_DZB]};
    if (pn_lin_mix_backward(c, &mix, &d, opt(p, ix.A_log), opt(p, ix.dt_bias), &p[ix.wg], &p[ix.wn],
                            gopt(gp, ix.A_log), gopt(gp, ix.dt_bias), gopt(gp, ix.wg), gopt(gp, ix.wn), x, dx, ctx))
        return -1;
    const int pj[3] = {A_PQ, A_PK, A_PV}, dout[3] = {S_DQ, S_DK, S_DV};
    const int wi[3] = {ix.wq, ix.wk, ix.wv}, ci[3] = {ix.cq, ix.ck, ix.cv};
    for (int j = 0; j < 3; j++) {
        const int64_t C = acts[pj[j]].shape[1];
        // the scratch row holds max(key_dim, value_dim): reinterpret its first N * C elements
        const pn_tensor dproj = scratch[S_DPROJ];
        pn_tensor dpc = pn_view(dproj.data, dproj.dtype, dproj.device, 3, (int64_t[]){ctx->B, ctx->T, C});
        pn_tensor x3 = pn_lin_btc(&acts[pj[j]], ctx), dy3 = pn_lin_btc(&scratch[dout[j]], ctx);
        pn_op_conv1d_bwd(&dpc, gopt(gp, ci[j]), NULL, NULL, &dy3, &x3, &p[ci[j]], NULL, NULL, 1, ctx->cu_seqlens);
        pn_tensor dp2 = pn_view(dproj.data, dproj.dtype, dproj.device, 2, (int64_t[]){N, C});
        pn_op_matmul_bwd(dx, gopt(gp, wi[j]), NULL, &dp2, x, &p[wi[j]], 1);
    }
    pn_tensor dzb = pn_rows(&scratch[S_DZB], 0, N);
    pn_op_matmul_bwd(dx, gopt(gp, ix.wb), NULL, &dzb, x, &p[ix.wb], 1);
    if (ix.wa >= 0) {
        pn_tensor dza = pn_rows(&scratch[S_DZA], 0, N);
        pn_op_matmul_bwd(dx, gopt(gp, ix.wa), NULL, &dza, x, &p[ix.wa], 1);
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------------
// Generation: the recurrent state and the last conv_size - 1 inputs of each short convolution.

enum { ST_S, ST_CQ, ST_CK, ST_CV, ST_COUNT };

static int decode_state_gdn(const pn_block_cfg *c, int64_t B, int64_t cap, int64_t max_T, pn_dtype act,
                            pn_dtype *dt, int *ndim, int64_t (*shape)[4]) {
    (void)cap, (void)max_T; // a recurrent state does not grow with the context
    const pn_lin_dims d = pn_lin_dims_of(c);
    const int64_t W1 = c->conv_size - 1, cols[3] = {d.key_dim, d.key_dim, d.value_dim};
    dt[ST_S] = PN_F32, ndim[ST_S] = 4;
    shape[ST_S][0] = B, shape[ST_S][1] = c->lin_heads, shape[ST_S][2] = c->lin_head_k, shape[ST_S][3] = d.head_v;
    for (int j = 0; j < 3; j++) {
        dt[ST_CQ + j] = act, ndim[ST_CQ + j] = 3;
        shape[ST_CQ + j][0] = B, shape[ST_CQ + j][1] = W1, shape[ST_CQ + j][2] = cols[j];
    }
    return ST_COUNT;
}

static int infer_acts_gdn(const pn_block_cfg *c, int64_t max_B, int64_t max_T, pn_dtype act, pn_dtype *dt,
                          int64_t *rows, int64_t *cols) {
    const pn_lin_dims d = pn_lin_dims_of(c);
    const int n = pn_lin_infer_acts(&pn_block_gdn, c, max_B, max_T, act, dt, rows, cols,
                                    d.key_dim > d.value_dim ? d.key_dim : d.value_dim, 0);
    cols[A_SAVED] = 0; // generation continues a state: nothing is kept for a backward
    return n;
}

static int infer_gdn(const pn_block_cfg *c, const pn_tensor *p, pn_tensor *state, pn_tensor *scratch,
                     const pn_tensor *x, pn_tensor *y, const pn_block_ctx *gctx) {
    const gdn_index ix = index_of(c);
    const int64_t B = gctx->B, T = gctx->T, N = B * T;
    const pn_block_ctx ctx = {.B = B, .T = T};
    const int pj[3] = {A_PQ, A_PK, A_PV}, out[3] = {A_Q, A_K, A_V};
    const int wi[3] = {ix.wq, ix.wk, ix.wv}, ci[3] = {ix.cq, ix.ck, ix.cv};
    // the projections of x (q, k, v, b and a), one GEMV launch when decoding
    pn_tensor proj[3], zb = pn_rows(&scratch[A_ZB], 0, N), za = pn_rows(&scratch[A_ZA], 0, N);
    pn_tensor *po[5] = {&proj[0], &proj[1], &proj[2], &zb, &za};
    const pn_tensor *pw[5] = {&p[wi[0]], &p[wi[1]], &p[wi[2]], &p[ix.wb], ix.wa >= 0 ? &p[ix.wa] : NULL};
    for (int j = 0; j < 3; j++) proj[j] = pn_rows(&scratch[pj[j]], 0, N);
    pn_op_matmul_multi(ix.wa >= 0 ? 5 : 4, po, x, pw, NULL, 0);
    for (int j = 0; j < 3; j++) {
        pn_tensor o = pn_rows(&scratch[out[j]], 0, N);
        pn_lin_conv_continue(&o, &proj[j], &state[ST_CQ + j], &p[ci[j]], NULL, &scratch[A_COUNT], &scratch[A_COUNT + 1],
                             NULL, B, T, c->conv_size);
    }
    const pn_lin_mix mix = mix_of(scratch, ix.wa >= 0);
    if (pn_lin_mix_forward(c, &mix, opt(p, ix.A_log), opt(p, ix.dt_bias), &p[ix.wg], &p[ix.wn], x, &ctx,
                           &state[ST_S]))
        return -1;
    pn_tensor on = pn_rows(&scratch[A_ON], 0, N);
    pn_op_matmul(y, &on, &p[ix.wo], NULL);
    return 0;
}

// ---------------------------------------------------------------------------------------------------
// config.json: this project's efficient_attention_config.gdn (for gdn and deltanet layers): num_heads and
// head_dim required, expand_v 2.0, conv_size 4, norm_eps 1e-5 by default (fla's GatedDeltaNet's).

static int parse_gdn(pn_block_cfg *c, json_t *s, const char *path, const char *in) {
    if (!json_is_object(s))
        return pn_errorf("%s: layer_types use %s but %s is missing or not an object", path, c->type, in);
    c->conv_size = 4, c->expand_v = 2.0, c->norm_eps = 1e-5f;
    return pn_lin_parse(c, s, path, in, 1);
}

static json_t *json_gdn(const pn_block_cfg *c) {
    return json_pack("{s:i, s:i, s:f, s:i, s:o}", "num_heads", c->lin_heads, "head_dim", c->lin_head_k, "expand_v",
                     c->expand_v, "conv_size", c->conv_size, "norm_eps", pn_json_float(c->norm_eps));
}

const pn_block_type pn_block_gdn = {"gdn", "gdn", parse_gdn, json_gdn, pn_lin_check, params_gdn, state_gdn, flops_gdn,
                                    acts_gdn, forward_gdn, backward_gdn,
                                    decode_state_gdn, infer_acts_gdn, infer_gdn};
const pn_block_type pn_block_deltanet = {"deltanet", "gdn", parse_gdn, json_gdn, pn_lin_check, params_deltanet, state_gdn, flops_gdn,
                                         acts_gdn, forward_gdn, backward_gdn,
                                         decode_state_gdn, infer_acts_gdn, infer_gdn};
