// `shortconv`: a token mixer made only of a short causal convolution (H3's / Hyena's short filter alone),
//   y = o_proj silu(conv1d(v_proj x))
// with a depthwise kernel of conv_size taps. It mixes a few neighbouring tokens and nothing further: the
// cheapest candidate a layer can have (decode state: conv_size - 1 rows), a floor for what the search
// should find a layer needs. It is also the worked example of a block: one file written against
// kernels/ops.h (matmul, conv1d and their backwards; no kernel of its own) plus one registry line.
// config.json: efficient_attention_config.shortconv = {"conv_size": W} (default 4).
#include <string.h>

#include "linear_common.h"

extern const pn_block_type pn_block_shortconv;

enum { P_V, P_CONV, P_O };                   // parameters
enum { A_Z, A_U, A_COUNT };                  // kept: v_proj x, silu(conv(.))
enum { S_DU, S_DZ, S_COUNT };                // backward scratch

static int check_shortconv(const pn_block_cfg *c, const char *what) {
    if (c->hidden < 1) return pn_errorf("%s: shortconv needs a hidden size", what);
    if (c->conv_size < 2 || c->conv_size > 64)
        return pn_errorf("%s: shortconv conv_size %d is outside 2 .. 64 (the convolution kernels' limit)", what,
                         c->conv_size);
    return 0;
}

static int params_shortconv(const pn_block_cfg *c, int layer, pn_param *out) {
    int n = 0;
    pn_block_add_param(out, &n, layer, "v_proj.weight", PN_PARAM_WEIGHT, 2, c->hidden, c->hidden, 0);
    pn_block_add_param(out, &n, layer, "conv1d.weight", PN_PARAM_CONV, 3, c->hidden, 1, c->conv_size);
    pn_block_add_param(out, &n, layer, "o_proj.weight", PN_PARAM_WEIGHT, 2, c->hidden, c->hidden, 0);
    return n;
}

static size_t state_shortconv(const pn_block_cfg *c, int64_t ctx, int elem) {
    (void)ctx;
    return (size_t)(c->conv_size - 1) * (size_t)c->hidden * (size_t)elem;
}

static double flops_shortconv(const pn_block_cfg *c, int64_t pos) {
    (void)pos;
    return 4.0 * c->hidden * c->hidden + 2.0 * c->conv_size * c->hidden;
}

static int acts_shortconv(const pn_block_cfg *c, int which, pn_dtype act, pn_dtype *dt, int64_t *cols) {
    const int n = which == 0 ? A_COUNT : S_COUNT;
    for (int i = 0; i < n; i++) dt[i] = act, cols[i] = c->hidden;
    return n;
}

static int forward_shortconv(const pn_block_cfg *c, const pn_tensor *p, pn_tensor *acts, const pn_tensor *x,
                             pn_tensor *y, const pn_block_ctx *ctx) {
    (void)c;
    pn_tensor z = pn_rows(&acts[A_Z], 0, ctx->B * ctx->T), u = pn_rows(&acts[A_U], 0, ctx->B * ctx->T);
    pn_op_matmul(&z, x, &p[P_V], NULL);
    pn_tensor z3 = pn_lin_btc(&acts[A_Z], ctx), u3 = pn_lin_btc(&acts[A_U], ctx);
    pn_op_conv1d(&u3, &z3, &p[P_CONV], NULL, NULL, 1, ctx->cu_seqlens);
    pn_op_matmul(y, &u, &p[P_O], NULL);
    return 0;
}

// o_proj -> du, dWo; conv + SiLU -> dz, dK; v_proj -> dx, dWv.
static int backward_shortconv(const pn_block_cfg *c, const pn_tensor *p, pn_tensor *gp, pn_tensor *acts,
                              pn_tensor *scratch, const pn_tensor *x, const pn_tensor *dy, pn_tensor *dx,
                              const pn_block_ctx *ctx) {
    (void)c;
    const int64_t N = ctx->B * ctx->T;
    pn_tensor u = pn_rows(&acts[A_U], 0, N), du = pn_rows(&scratch[S_DU], 0, N), dz = pn_rows(&scratch[S_DZ], 0, N);
    pn_op_matmul_bwd(&du, pn_block_grad(gp, P_O), NULL, dy, &u, &p[P_O], 0);
    pn_tensor z3 = pn_lin_btc(&acts[A_Z], ctx), du3 = pn_lin_btc(&scratch[S_DU], ctx), dz3 = pn_lin_btc(&scratch[S_DZ], ctx);
    pn_op_conv1d_bwd(&dz3, pn_block_grad(gp, P_CONV), NULL, NULL, &du3, &z3, &p[P_CONV], NULL, NULL, 1, ctx->cu_seqlens);
    pn_op_matmul_bwd(dx, pn_block_grad(gp, P_V), NULL, &dz, x, &p[P_V], 0);
    return 0;
}

// Generation: the decode state is the last conv_size - 1 rows of v_proj x.
static int decode_state_shortconv(const pn_block_cfg *c, int64_t B, int64_t cap, int64_t max_T, pn_dtype act,
                                  pn_dtype *dt, int *ndim, int64_t (*shape)[4]) {
    (void)cap, (void)max_T;
    dt[0] = act, ndim[0] = 3, shape[0][0] = B, shape[0][1] = c->conv_size - 1, shape[0][2] = c->hidden;
    return 1;
}

static int infer_acts_shortconv(const pn_block_cfg *c, int64_t max_B, int64_t max_T, pn_dtype act, pn_dtype *dt,
                                int64_t *rows, int64_t *cols) {
    return pn_lin_infer_acts(&pn_block_shortconv, c, max_B, max_T, act, dt, rows, cols, c->hidden, 0);
}

static int infer_shortconv(const pn_block_cfg *c, const pn_tensor *p, pn_tensor *state, pn_tensor *scratch,
                           const pn_tensor *x, pn_tensor *y, const pn_block_ctx *ctx) {
    const int64_t N = ctx->B * ctx->T;
    pn_tensor z = pn_rows(&scratch[A_Z], 0, N), u = pn_rows(&scratch[A_U], 0, N);
    pn_op_matmul(&z, x, &p[P_V], NULL);
    pn_lin_conv_continue(&u, &z, &state[0], &p[P_CONV], NULL, &scratch[A_COUNT], &scratch[A_COUNT + 1], NULL, ctx->B,
                         ctx->T, c->conv_size);
    pn_op_matmul(y, &u, &p[P_O], NULL);
    return 0;
}

static int parse_shortconv(pn_block_cfg *c, json_t *s, const char *path, const char *in) {
    c->conv_size = 4;
    if (!s) return 0;
    if (!json_is_object(s)) return pn_errorf("%s: %s is not an object", path, in);
    return pn_json_int(path, s, "conv_size", &c->conv_size, 0, 1) ? pn_error_prefix("%s", in) : 0;
}

static json_t *json_shortconv(const pn_block_cfg *c) { return json_pack("{s:i}", "conv_size", c->conv_size); }

const pn_block_type pn_block_shortconv = {"shortconv", "shortconv", parse_shortconv, json_shortconv, check_shortconv,
                                          params_shortconv, state_shortconv, flops_shortconv, acts_shortconv,
                                          forward_shortconv, backward_shortconv, decode_state_shortconv,
                                          infer_acts_shortconv, infer_shortconv};
