// `jet`: JetBlock (Jet-Nemotron). q = silu(q_proj x), k = silu(k_proj x) (no conv on q/k); v goes through a
// dynamic causal convolution whose per-token kernels a small generator makes from x
// (K_t = w2(silu(w1 x_t)) + b2, [value_dim, conv_size]); then Gated DeltaNet time mixing, a gated RMSNorm
// (o_norm with silu(g_proj x)) and o_proj. Released init: generator weights zero and w2's bias N(0, 0.02),
// so a fresh JetBlock starts as a static convolution.
#include "linear_common.h"

static int check_jet(const pn_block_cfg *c, const char *what) {
    if (pn_lin_check(c, what)) return -1;
    const pn_lin_dims d = pn_lin_dims_of(c);
    if (c->gen_reduction < 1 || d.value_dim % c->gen_reduction)
        return pn_errorf("%s: jet.dconv_generator_reduction = %d must divide the value dim %lld", what,
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
    const double H = c->hidden, red = (double)d.value_dim / c->gen_reduction, V = (double)d.value_dim;
    const double proj = 2.0 * H * (2.0 * d.key_dim + 2.0 * V + 2.0 * c->lin_heads) + 2.0 * V * H;
    const double generator = 2.0 * H * red + 2.0 * red * V * c->conv_size, conv = 2.0 * V * c->conv_size;
    return proj + generator + conv + pn_lin_recurrence_flops(c);
}

const pn_block_type pn_block_jet = {"jet", check_jet, params_jet, state_jet, flops_jet};
