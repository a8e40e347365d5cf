// `gdn`: fla's GatedDeltaNet layer — q, k, v projections each through a causal depthwise convolution
// (conv_size) and SiLU, L2-normalized q and k, beta = sigmoid(b_proj x), the decay
// g = -exp(A_log) * softplus(a_proj x + dt_bias), the delta rule, a gated RMSNorm with silu(g_proj x), and
// o_proj. `deltanet` is the same layer without decay (no a_proj, A_log, dt_bias: g = 0).
#include "linear_common.h"

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

const pn_block_type pn_block_gdn = {"gdn", pn_lin_check, params_gdn, state_gdn, flops_gdn};
const pn_block_type pn_block_deltanet = {"deltanet", pn_lin_check, params_deltanet, state_gdn, flops_gdn};
