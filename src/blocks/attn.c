// `attn` and `swa`: the base model's own attention (Qwen2/Qwen3/Llama), full or over a sliding window.
// Same parameters (so a supernet path starts from the pretrained layer), different decode state: the full
// KV cache grows with the context, the window's stays at `window` tokens.
#include "../pn_block.h"
#include "../pn_common.h"

static int check_attn(const pn_block_cfg *c, const char *what) {
    if (c->n_heads < 1 || c->n_kv_heads < 1 || c->n_heads % c->n_kv_heads)
        return pn_errorf("%s: %s: num_heads %d is not a positive multiple of num_key_value_heads %d", what, c->type,
                         c->n_heads, c->n_kv_heads);
    if (c->head_dim < 2 || c->head_dim % 2) return pn_errorf("%s: %s: head_dim %d must be even", what, c->type, c->head_dim);
    return 0;
}

static int check_swa(const pn_block_cfg *c, const char *what) {
    if (c->window <= 0) return pn_errorf("%s: swa: window_size %d must be positive", what, c->window);
    return check_attn(c, what);
}

static int params_attn(const pn_block_cfg *c, int layer, pn_param *out) {
    int n = 0;
    const int64_t H = c->hidden, Q = (int64_t)c->n_heads * c->head_dim, KV = (int64_t)c->n_kv_heads * c->head_dim;
    pn_block_add_param(out, &n, layer, "q_proj.weight", PN_PARAM_WEIGHT, 2, Q, H, 0);
    if (c->qkv_bias) pn_block_add_param(out, &n, layer, "q_proj.bias", PN_PARAM_BIAS, 1, Q, 0, 0);
    pn_block_add_param(out, &n, layer, "k_proj.weight", PN_PARAM_WEIGHT, 2, KV, H, 0);
    if (c->qkv_bias) pn_block_add_param(out, &n, layer, "k_proj.bias", PN_PARAM_BIAS, 1, KV, 0, 0);
    pn_block_add_param(out, &n, layer, "v_proj.weight", PN_PARAM_WEIGHT, 2, KV, H, 0);
    if (c->qkv_bias) pn_block_add_param(out, &n, layer, "v_proj.bias", PN_PARAM_BIAS, 1, KV, 0, 0);
    if (c->qk_norm) {
        pn_block_add_param(out, &n, layer, "q_norm.weight", PN_PARAM_NORM, 1, c->head_dim, 0, 0);
        pn_block_add_param(out, &n, layer, "k_norm.weight", PN_PARAM_NORM, 1, c->head_dim, 0, 0);
    }
    pn_block_add_param(out, &n, layer, "o_proj.weight", PN_PARAM_WEIGHT, 2, H, Q, 0);
    return n;
}

static size_t kv_bytes(const pn_block_cfg *c, int64_t tokens, int elem) {
    return 2 * (size_t)tokens * (size_t)c->n_kv_heads * (size_t)c->head_dim * (size_t)elem;
}

static size_t state_attn(const pn_block_cfg *c, int64_t ctx, int elem) { return kv_bytes(c, ctx, elem); }
static size_t state_swa(const pn_block_cfg *c, int64_t ctx, int elem) {
    return kv_bytes(c, ctx < c->window ? ctx : c->window, elem);
}

static double proj_flops(const pn_block_cfg *c) {
    const double H = c->hidden, Q = (double)c->n_heads * c->head_dim, KV = (double)c->n_kv_heads * c->head_dim;
    return 2.0 * H * (2.0 * Q + 2.0 * KV);
}
// QK^T and PV over the keys the token sees.
static double flops_attn(const pn_block_cfg *c, int64_t pos) {
    return proj_flops(c) + 4.0 * (double)c->n_heads * c->head_dim * (double)(pos + 1);
}
static double flops_swa(const pn_block_cfg *c, int64_t pos) {
    const int64_t keys = pos + 1 < c->window ? pos + 1 : c->window;
    return proj_flops(c) + 4.0 * (double)c->n_heads * c->head_dim * (double)keys;
}

const pn_block_type pn_block_attn = {"attn", check_attn, params_attn, state_attn, flops_attn};
const pn_block_type pn_block_swa = {"swa", check_swa, params_attn, state_swa, flops_swa};
