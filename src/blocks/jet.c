// `jet`: JetBlock (Jet-Nemotron). q = silu(q_proj x), k = silu(k_proj x) (no conv on q/k); v goes through a
// dynamic causal convolution whose per-token kernels a small generator makes from x
// (K_t = w2(silu(w1 x_t)) + b2, [value_dim, conv_size]); then Gated DeltaNet time mixing, a gated RMSNorm
// (o_norm with silu(g_proj x)) and o_proj. Released init: generator weights zero and w2's bias N(0, 0.02),
// so a fresh JetBlock starts as a static convolution.
#include "linear_common.h"

extern const pn_block_type pn_block_jet;

static int check_jet(const pn_block_cfg *c, const char *what) {
    if (pn_lin_check(c, what)) return -1;
    const pn_lin_dims d = pn_lin_dims_of(c);
    // The generator's hidden width is value_dim // reduction, floored as NVIDIA's code does (60 // 8 = 7).
    if (c->gen_reduction < 1 || d.value_dim / c->gen_reduction < 1)
        return pn_errorf("%s: jet.dconv_generator_reduction = %d must be in 1..value dim (%lld)", what,
                         c->gen_reduction, (long long)d.value_dim);
    return 0;
}

static int params_jet(const pn_block_cfg *c, int layer, pn_param *out) {
    const pn_lin_dims d = pn_lin_dims_of(c);
    const int64_t H = c->hidden, nh = c->lin_heads, red = d.value_dim / c->gen_reduction;
    int n = 0;
    pn_block_add_param(out, &n, layer, "q_proj.weight", PN_PARAM_WEIGHT, 2, d.key_dim, H, 0);
    pn_block_add_param(out, &n, layer, "k_proj.weight", PN_PARAM_WEIGHT, 2, d.key_dim, H, 0);
    pn_block_add_param(out, &n, layer, "v_proj.weight", PN_PARAM_WEIGHT, 2, d.value_dim, H, 0);
    pn_block_add_param(out, &n, layer, "g_proj.weight", PN_PARAM_WEIGHT, 2, d.value_dim, H, 0);
    pn_block_add_param(out, &n, layer, "a_proj.weight", PN_PARAM_WEIGHT, 2, nh, H, 0);
    pn_block_add_param(out, &n, layer, "b_proj.weight", PN_PARAM_WEIGHT, 2, nh, H, 0);
    pn_block_add_param(out, &n, layer, "A_log", PN_PARAM_A_LOG, 1, nh, 0, 0);
    pn_block_add_param(out, &n, layer, "dt_bias", PN_PARAM_DT_BIAS, 1, nh, 0, 0);
    pn_block_add_param(out, &n, layer, "dynamic_conv1d.kernel_generator.w1.weight", PN_PARAM_ZERO, 2, red, H, 0);
    pn_block_add_param(out, &n, layer, "dynamic_conv1d.kernel_generator.w2.weight", PN_PARAM_ZERO, 2,
                       d.value_dim * c->conv_size, red, 0);
    pn_block_add_param(out, &n, layer, "dynamic_conv1d.kernel_generator.w2.bias", PN_PARAM_GEN_BIAS, 1,
                       d.value_dim * c->conv_size, 0, 0);
    pn_block_add_param(out, &n, layer, "o_norm.weight", PN_PARAM_NORM, 1, d.head_v, 0, 0);
    pn_block_add_param(out, &n, layer, "o_proj.weight", PN_PARAM_WEIGHT, 2, H, d.value_dim, 0);
    return n;
}

// The dynamic convolution caches raw v rows only (q and k have no convolution).
static size_t state_jet(const pn_block_cfg *c, int64_t ctx, int elem) {
    (void)ctx;
    return pn_lin_state(c, pn_lin_dims_of(c).value_dim, elem);
}

static double flops_jet(const pn_block_cfg *c, int64_t pos) {
    (void)pos;
    const pn_lin_dims d = pn_lin_dims_of(c);
    const double H = c->hidden, red = (double)(d.value_dim / c->gen_reduction), V = (double)d.value_dim;
    const double proj = 2.0 * H * (2.0 * d.key_dim + 2.0 * V + 2.0 * c->lin_heads) + 2.0 * V * H;
    const double generator = 2.0 * H * red + 2.0 * red * V * c->conv_size, conv = 2.0 * V * c->conv_size;
    return proj + generator + conv + pn_lin_recurrence_flops(c);
}

// ---------------------------------------------------------------------------------------------------
// Training forward and backward through the backend table (src/blocks/jet_cpu.c is the fp32 reference
// they are tested against). The backward:
//
//   o_proj          matmul_bwd              -> d(on), dWo
//   time mixing     pn_lin_mix_backward     -> dq, dk, dv, dza, dzb; dx = d(gate) Wg; dWg, do_norm, dA_log, ddt
//   q, k = silu(z)  silu_bwd + matmul_bwd   -> dx += ..., dWq, dWk
//   dynamic conv    conv1d_bwd (kdyn)       -> d(v_proj x), d(kernels) [N, value_dim * W]
//   v_proj          matmul_bwd              -> dx += ..., dWv
//   generator w2    matmul_bwd (with bias)  -> d(hgen), dW2, db2
//   generator w1    silu_bwd + matmul_bwd   -> dx += ..., dW1
//   a_proj, b_proj  matmul_bwd              -> dx += ..., dWa, dWb

// Parameter indices in params_jet's order.
enum { P_Q, P_K, P_V, P_G, P_A, P_B, P_ALOG, P_DT, P_W1, P_W2, P_B2, P_ONORM, P_O };
enum { A_ZQ, A_ZK, A_Q, A_K, A_VRAW, A_ZH, A_HGEN, A_KDYN, A_V, A_ZA, A_ZB, A_G, A_BETA, A_GATE, A_O, A_ON, A_SAVED,
       A_COUNT };
enum { S_DON, S_DO, S_DGATE, S_DQ, S_DK, S_DV, S_DVRAW, S_DKDYN, S_DH, S_DG, S_DBETA, S_DZA, S_DZB, S_COUNT };

static int acts_jet(const pn_block_cfg *c, int which, pn_dtype act, pn_dtype *dt, int64_t *cols) {
    const pn_lin_dims d = pn_lin_dims_of(c);
    const int64_t K = d.key_dim, V = d.value_dim, H = c->lin_heads, R = V / c->gen_reduction, VW = V * c->conv_size;
    if (which == 0) {
        const int64_t w[A_COUNT] = {K, K, K, K, V, R, R, VW, V, H, H, H, H, V, V, V, pn_lin_saved_cols(c, act)};
        for (int i = 0; i < A_COUNT; i++) dt[i] = (i == A_G || i == A_BETA) ? PN_F32 : act, cols[i] = w[i];
        return A_COUNT;
    }
    const int64_t w[S_COUNT] = {V, V, V, K, K, V, V, VW, R, H, H, H, H};
    for (int i = 0; i < S_COUNT; i++) dt[i] = (i == S_DG || i == S_DBETA) ? PN_F32 : act, cols[i] = w[i];
    return S_COUNT;
}

static pn_lin_mix mix_of(pn_tensor *acts) {
    return (pn_lin_mix){.q = &acts[A_Q], .k = &acts[A_K], .v = &acts[A_V], .za = &acts[A_ZA], .zb = &acts[A_ZB],
                        .g = &acts[A_G], .beta = &acts[A_BETA], .gate = &acts[A_GATE], .o = &acts[A_O],
                        .on = &acts[A_ON], .saved = &acts[A_SAVED]};
}

#define ROWS(t) pn_rows(&(t), 0, N)

static int forward_jet(const pn_block_cfg *c, const pn_tensor *p, pn_tensor *acts, const pn_tensor *x, pn_tensor *y,
                       const pn_block_ctx *ctx) {
    const int64_t N = ctx->B * ctx->T;
    pn_tensor zq = ROWS(acts[A_ZQ]), zk = ROWS(acts[A_ZK]), q = ROWS(acts[A_Q]), k = ROWS(acts[A_K]);
    pn_op_matmul(&zq, x, &p[P_Q], NULL);
    pn_op_matmul(&zk, x, &p[P_K], NULL);
    pn_op_silu(&q, &zq);
    pn_op_silu(&k, &zk);
    // the dynamic convolution of v: kernels from the generator, then causal conv + SiLU
    pn_tensor vraw = ROWS(acts[A_VRAW]), zh = ROWS(acts[A_ZH]), hgen = ROWS(acts[A_HGEN]), kdyn = ROWS(acts[A_KDYN]);
    pn_op_matmul(&vraw, x, &p[P_V], NULL);
    pn_op_matmul(&zh, x, &p[P_W1], NULL);
    pn_op_silu(&hgen, &zh);
    pn_op_matmul(&kdyn, &hgen, &p[P_W2], &p[P_B2]);
    pn_tensor v3 = pn_lin_btc(&acts[A_V], ctx), x3 = pn_lin_btc(&acts[A_VRAW], ctx);
    pn_tensor k3 = pn_lin_btc(&acts[A_KDYN], ctx);
    pn_op_conv1d(&v3, &x3, NULL, NULL, &k3, 1, ctx->cu_seqlens);
    pn_tensor za = ROWS(acts[A_ZA]), zb = ROWS(acts[A_ZB]);
    pn_op_matmul(&za, x, &p[P_A], NULL);
    pn_op_matmul(&zb, x, &p[P_B], NULL);
    const pn_lin_mix mix = mix_of(acts);
    if (pn_lin_mix_forward(c, &mix, &p[P_ALOG], &p[P_DT], &p[P_G], &p[P_ONORM], x, ctx, NULL)) return -1;
    pn_tensor on = ROWS(acts[A_ON]);
    pn_op_matmul(y, &on, &p[P_O], NULL);
    return 0;
}

static int backward_jet(const pn_block_cfg *c, const pn_tensor *p, pn_tensor *gp, pn_tensor *acts, pn_tensor *scratch,
                        const pn_tensor *x, const pn_tensor *dy, pn_tensor *dx, const pn_block_ctx *ctx) {
    const int64_t N = ctx->B * ctx->T;
#define G(i) pn_block_grad(gp, i)
    pn_tensor on = ROWS(acts[A_ON]), d_on = ROWS(scratch[S_DON]);
    pn_op_matmul_bwd(&d_on, G(P_O), NULL, dy, &on, &p[P_O], 0);
    const pn_lin_mix mix = mix_of(acts);
    const pn_lin_mix_grads d = {.d_on = &scratch[S_DON], .d_o = &scratch[S_DO], .d_gate = &scratch[S_DGATE],
                                .dq = &scratch[S_DQ], .dk = &scratch[S_DK], .dv = &scratch[S_DV],
                                .dg = &scratch[S_DG], .dbeta = &scratch[S_DBETA], .dza = &scratch[S_DZA],
                                .dzb = &scratch[S_DZB]};
    if (pn_lin_mix_backward(c, &mix, &d, &p[P_ALOG], &p[P_DT], &p[P_G], &p[P_ONORM], G(P_ALOG), G(P_DT), G(P_G),
                            G(P_ONORM), x, dx, ctx))
        return -1;
    // q, k = silu(z): dz in place of dq, dk
    pn_tensor dq = ROWS(scratch[S_DQ]), dk = ROWS(scratch[S_DK]), zq = ROWS(acts[A_ZQ]), zk = ROWS(acts[A_ZK]);
    pn_op_silu_bwd(&dq, &dq, &zq);
    pn_op_silu_bwd(&dk, &dk, &zk);
    pn_op_matmul_bwd(dx, G(P_Q), NULL, &dq, x, &p[P_Q], 1);
    pn_op_matmul_bwd(dx, G(P_K), NULL, &dk, x, &p[P_K], 1);
    // v = silu(dynamic conv(vraw, kdyn))
    pn_tensor dvr3 = pn_lin_btc(&scratch[S_DVRAW], ctx), dk3 = pn_lin_btc(&scratch[S_DKDYN], ctx);
    pn_tensor dv3 = pn_lin_btc(&scratch[S_DV], ctx), x3 = pn_lin_btc(&acts[A_VRAW], ctx);
    pn_tensor k3 = pn_lin_btc(&acts[A_KDYN], ctx);
    pn_op_conv1d_bwd(&dvr3, NULL, NULL, &dk3, &dv3, &x3, NULL, NULL, &k3, 1, ctx->cu_seqlens);
    pn_tensor dvraw = ROWS(scratch[S_DVRAW]), dkdyn = ROWS(scratch[S_DKDYN]);
    pn_op_matmul_bwd(dx, G(P_V), NULL, &dvraw, x, &p[P_V], 1);
    // kdyn = hgen W2^T + b2, hgen = silu(zh), zh = x W1^T
    pn_tensor dh = ROWS(scratch[S_DH]), hgen = ROWS(acts[A_HGEN]), zh = ROWS(acts[A_ZH]);
    pn_op_matmul_bwd(&dh, G(P_W2), G(P_B2), &dkdyn, &hgen, &p[P_W2], 0);
    pn_op_silu_bwd(&dh, &dh, &zh);
    pn_op_matmul_bwd(dx, G(P_W1), NULL, &dh, x, &p[P_W1], 1);
    // the gates' projections
    pn_tensor dza = ROWS(scratch[S_DZA]), dzb = ROWS(scratch[S_DZB]);
    pn_op_matmul_bwd(dx, G(P_B), NULL, &dzb, x, &p[P_B], 1);
    pn_op_matmul_bwd(dx, G(P_A), NULL, &dza, x, &p[P_A], 1);
#undef G
    return 0;
}

// ---------------------------------------------------------------------------------------------------
// Generation: the recurrent state and the last conv_size - 1 raw v rows (the dynamic convolution's input).

enum { ST_S, ST_CV, ST_COUNT };

static int decode_state_jet(const pn_block_cfg *c, int64_t B, int64_t cap, int64_t max_T, pn_dtype act,
                            pn_dtype *dt, int *ndim, int64_t (*shape)[4]) {
    (void)cap, (void)max_T; // a recurrent state does not grow with the context
    const pn_lin_dims d = pn_lin_dims_of(c);
    dt[ST_S] = PN_F32, ndim[ST_S] = 4;
    shape[ST_S][0] = B, shape[ST_S][1] = c->lin_heads, shape[ST_S][2] = c->lin_head_k, shape[ST_S][3] = d.head_v;
    dt[ST_CV] = act, ndim[ST_CV] = 3;
    shape[ST_CV][0] = B, shape[ST_CV][1] = c->conv_size - 1, shape[ST_CV][2] = d.value_dim;
    return ST_COUNT;
}

static int infer_acts_jet(const pn_block_cfg *c, int64_t max_B, int64_t max_T, pn_dtype act, pn_dtype *dt,
                          int64_t *rows, int64_t *cols) {
    const int64_t V = pn_lin_dims_of(c).value_dim;
    const int n = pn_lin_infer_acts(&pn_block_jet, c, max_B, max_T, act, dt, rows, cols, V, V * c->conv_size);
    cols[A_SAVED] = 0; // generation continues a state: nothing is kept for a backward
    return n;
}

static int infer_jet(const pn_block_cfg *c, const pn_tensor *p, pn_tensor *state, pn_tensor *scratch,
                     const pn_tensor *x, pn_tensor *y, const pn_block_ctx *gctx) {
    const int64_t B = gctx->B, T = gctx->T, N = B * T;
    const pn_block_ctx ctx = {.B = B, .T = T};
    pn_tensor q = ROWS(scratch[A_Q]), k = ROWS(scratch[A_K]), vraw = ROWS(scratch[A_VRAW]), hgen = ROWS(scratch[A_HGEN]);
    pn_tensor kdyn = ROWS(scratch[A_KDYN]), v = ROWS(scratch[A_V]), za = ROWS(scratch[A_ZA]), zb = ROWS(scratch[A_ZB]);
    // the projections of x, q, k and the kernel generator's input through SiLU: one GEMV launch when decoding
    pn_tensor *const po[6] = {&q, &k, &vraw, &hgen, &za, &zb};
    const pn_tensor *const pw[6] = {&p[P_Q], &p[P_K], &p[P_V], &p[P_W1], &p[P_A], &p[P_B]};
    pn_op_matmul_multi(6, po, x, pw, NULL, 1u << 0 | 1u << 1 | 1u << 3);
    pn_op_matmul(&kdyn, &hgen, &p[P_W2], &p[P_B2]);
    pn_lin_conv_continue(&v, &vraw, &state[ST_CV], NULL, &kdyn, &scratch[A_COUNT], &scratch[A_COUNT + 1],
                         &scratch[A_COUNT + 2], B, T, c->conv_size);
    const pn_lin_mix mix = mix_of(scratch);
    if (pn_lin_mix_forward(c, &mix, &p[P_ALOG], &p[P_DT], &p[P_G], &p[P_ONORM], x, &ctx, &state[ST_S])) return -1;
    pn_tensor on = ROWS(scratch[A_ON]);
    pn_op_matmul(y, &on, &p[P_O], NULL);
    return 0;
}

// ---------------------------------------------------------------------------------------------------
// config.json: efficient_attention_config.jet read as NVIDIA's JetBlockConfig reads it — built with
// JetBlockConfig(**dict), so an unknown key is refused; a missing key gets its default (num_heads 6, head_dim
// 256, expand_v 2.0, conv 4, reduction 8, norm_eps 1e-5), not a guess; norm_eps may be a string (NVIDIA
// converts it with float(); its released configs write "1e-5").

static const char *JET_KEYS[] = {"mode", "expand_v", "num_heads", "head_dim", "norm_eps", "conv_size",
                                 "dconv_generator_reduction", "dconv_implementation", NULL};

static int parse_jet(pn_block_cfg *c, json_t *s, const char *path, const char *in) {
    if (!json_is_object(s)) return pn_errorf("%s: layer_types use jet but %s is missing or not an object", path, in);
    static const char *modes[] = {"chunk", "fused_recurrent", NULL};
    static const char *impls[] = {"triton", "naive", "triton_training", "triton_cache", "triton_decoding", NULL};
    c->lin_heads = 6, c->lin_head_k = 256, c->expand_v = 2.0, c->conv_size = 4, c->gen_reduction = 8, c->norm_eps = 1e-5f;
    if (pn_json_known_keys(path, in, s, JET_KEYS, " (NVIDIA's JetBlockConfig would refuse it)") ||
        pn_json_choice(path, in, s, "mode", modes) || pn_json_choice(path, in, s, "dconv_implementation", impls))
        return -1;
    if (pn_json_int(path, s, "dconv_generator_reduction", &c->gen_reduction, 0, 1)) return pn_error_prefix("%s", in);
    return pn_lin_parse(c, s, path, in, 0);
}

static json_t *json_jet(const pn_block_cfg *c) {
    return json_pack("{s:i, s:i, s:f, s:i, s:i, s:o, s:s, s:s}", "num_heads", c->lin_heads, "head_dim", c->lin_head_k,
                     "expand_v", c->expand_v, "conv_size", c->conv_size, "dconv_generator_reduction", c->gen_reduction,
                     "norm_eps", pn_json_float(c->norm_eps), "mode", "chunk", "dconv_implementation", "triton");
}

const pn_block_type pn_block_jet = {"jet", "jet", parse_jet, json_jet, check_jet, params_jet, state_jet, flops_jet,
                                    acts_jet, forward_jet, backward_jet,
                                    decode_state_jet, infer_acts_jet, infer_jet};
