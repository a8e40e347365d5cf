// `attn` and `swa`: the base model's own attention (Qwen2/Qwen3/Llama), full or over a sliding window.
// Same parameters (so a supernet path starts from the pretrained layer), different decode state: the full
// KV cache grows with the context, the window's stays at `window` tokens.
#include <string.h>

#include "../pn_block.h"
#include "../pn_common.h"
#include "../pn_json.h"

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
    if (c->o_bias) pn_block_add_param(out, &n, layer, "o_proj.bias", PN_PARAM_BIAS, 1, H, 0, 0);
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

// ---------------------------------------------------------------------------------------------------
// Training forward and backward. Every sequence starts at position 0 (RoPE) and attends causally within
// itself; a packed batch (ctx->cu_seqlens) runs RoPE and attention over all its documents in one call each,
// the ops restarting positions and bounding keys at every document boundary, so nothing leaks across one.
//
// Kept for the backward: q and k after RoPE (and the q/k norm), v, the attention output with its softmax
// statistics (so the backward need not recompute them), and with a q/k norm (Qwen3) the projections before it. The backward walks o_proj, attention (recomputing softmax),
// RoPE (rotated back), the q/k norm and the three projections, whose input gradients sum into dx.

enum { A_Q, A_K, A_V, A_ATT, A_LSE, A_QRAW, A_KRAW };
enum { S_DATT, S_DQ, S_DK, S_DV, S_DQR, S_DKR };

// Parameter indices in params_attn's order (-1 when absent).
typedef struct {
    int wq, bq, wk, bk, wv, bv, qn, kn, wo, bo;
} attn_index;

static attn_index index_of(const pn_block_cfg *c) {
    attn_index ix;
    int i = 0;
    ix.wq = i++, ix.bq = c->qkv_bias ? i++ : -1;
    ix.wk = i++, ix.bk = c->qkv_bias ? i++ : -1;
    ix.wv = i++, ix.bv = c->qkv_bias ? i++ : -1;
    ix.qn = c->qk_norm ? i++ : -1, ix.kn = c->qk_norm ? i++ : -1;
    ix.wo = i++, ix.bo = c->o_bias ? i++ : -1;
    return ix;
}

static int acts_attn(const pn_block_cfg *c, int which, pn_dtype act, pn_dtype *dt, int64_t *cols) {
    const int64_t Q = (int64_t)c->n_heads * c->head_dim, KV = (int64_t)c->n_kv_heads * c->head_dim;
    // which 0: q, k, v, att, lse (F32 [N, heads]) (+ qraw, kraw); which 1: datt, dq, dk, dv (+ dqr, dkr)
    if (which == 0) {
        const int64_t w[7] = {Q, KV, KV, Q, c->n_heads, Q, KV};
        const int n = c->qk_norm ? 7 : 5;
        for (int i = 0; i < n; i++) dt[i] = i == A_LSE ? PN_F32 : act, cols[i] = w[i];
        return n;
    }
    const int64_t scr[6] = {Q, Q, KV, KV, Q, KV};
    const int n = c->qk_norm ? 6 : 4;
    for (int i = 0; i < n; i++) dt[i] = act, cols[i] = scr[i];
    return n;
}

static const pn_tensor *opt(const pn_tensor *p, int i) { return i >= 0 ? &p[i] : NULL; }
static pn_tensor *gopt(pn_tensor *gp, int i) { return i >= 0 ? pn_block_grad(gp, i) : NULL; }

// A [N, heads * D] tensor as [B, T, heads, D] (a packed batch is B = 1, T = N).
static pn_tensor heads_view(const pn_tensor *t, const pn_block_ctx *ctx, int64_t heads, int64_t D) {
    return pn_reshape(t, 4, (int64_t[]){ctx->B, ctx->T, heads, D});
}

static int window_of(const pn_block_cfg *c) { return strcmp(c->type, "swa") ? 0 : c->window; }

static int forward_attn(const pn_block_cfg *c, const pn_tensor *p, pn_tensor *acts, const pn_tensor *x, pn_tensor *y,
                        const pn_block_ctx *ctx) {
    const attn_index ix = index_of(c);
    const int64_t N = ctx->B * ctx->T, D = c->head_dim;
    pn_tensor q = pn_block_rows(&acts[A_Q], N), k = pn_block_rows(&acts[A_K], N), v = pn_block_rows(&acts[A_V], N);
    pn_tensor att = pn_block_rows(&acts[A_ATT], N), lse = pn_block_rows(&acts[A_LSE], N);
    if (c->qk_norm) { // Qwen3: per-head RMSNorm of the projections, kept for the backward
        pn_tensor qr = pn_block_rows(&acts[A_QRAW], N), kr = pn_block_rows(&acts[A_KRAW], N);
        pn_op_matmul(&qr, x, &p[ix.wq], opt(p, ix.bq));
        pn_op_matmul(&kr, x, &p[ix.wk], opt(p, ix.bk));
        pn_op_rmsnorm(&q, &qr, &p[ix.qn], ctx->rms_eps);
        pn_op_rmsnorm(&k, &kr, &p[ix.kn], ctx->rms_eps);
    } else {
        pn_op_matmul(&q, x, &p[ix.wq], opt(p, ix.bq));
        pn_op_matmul(&k, x, &p[ix.wk], opt(p, ix.bk));
    }
    pn_op_matmul(&v, x, &p[ix.wv], opt(p, ix.bv));
    const pn_tensor *cu = ctx->cu_seqlens; // a packed batch: every document in one call
    pn_tensor q4 = heads_view(&q, ctx, c->n_heads, D), k4 = heads_view(&k, ctx, c->n_kv_heads, D);
    pn_tensor v4 = heads_view(&v, ctx, c->n_kv_heads, D), o4 = heads_view(&att, ctx, c->n_heads, D);
    pn_tensor l3 = heads_view(&lse, ctx, c->n_heads, 1);
    pn_op_rope(&q4, ctx->inv_freq, 0, cu);
    pn_op_rope(&k4, ctx->inv_freq, 0, cu);
    pn_op_attention_train(&o4, &l3, &q4, &k4, &v4, window_of(c), cu);
    pn_op_matmul(y, &att, &p[ix.wo], opt(p, ix.bo));
    return 0;
}

static int backward_attn(const pn_block_cfg *c, const pn_tensor *p, pn_tensor *gp, pn_tensor *acts, pn_tensor *scratch,
                         const pn_tensor *x, const pn_tensor *dy, pn_tensor *dx, const pn_block_ctx *ctx) {
    const attn_index ix = index_of(c);
    const int64_t N = ctx->B * ctx->T, D = c->head_dim;
    pn_tensor q = pn_block_rows(&acts[A_Q], N), k = pn_block_rows(&acts[A_K], N), v = pn_block_rows(&acts[A_V], N);
    pn_tensor att = pn_block_rows(&acts[A_ATT], N), lse = pn_block_rows(&acts[A_LSE], N);
    pn_tensor datt = pn_block_rows(&scratch[S_DATT], N), dq = pn_block_rows(&scratch[S_DQ], N);
    pn_tensor dk = pn_block_rows(&scratch[S_DK], N), dv = pn_block_rows(&scratch[S_DV], N);

    pn_op_matmul_bwd(&datt, gopt(gp, ix.wo), gopt(gp, ix.bo), dy, &att, &p[ix.wo], 0);
    const pn_tensor *cu = ctx->cu_seqlens;
    pn_tensor q4 = heads_view(&q, ctx, c->n_heads, D), k4 = heads_view(&k, ctx, c->n_kv_heads, D);
    pn_tensor v4 = heads_view(&v, ctx, c->n_kv_heads, D), o4 = heads_view(&att, ctx, c->n_heads, D);
    pn_tensor do4 = heads_view(&datt, ctx, c->n_heads, D), dq4 = heads_view(&dq, ctx, c->n_heads, D);
    pn_tensor dk4 = heads_view(&dk, ctx, c->n_kv_heads, D), dv4 = heads_view(&dv, ctx, c->n_kv_heads, D);
    pn_tensor l3 = heads_view(&lse, ctx, c->n_heads, 1);
    pn_op_attention_bwd(&dq4, &dk4, &dv4, &do4, &q4, &k4, &v4, &o4, &l3, window_of(c), cu);
    pn_op_rope_bwd(&dq4, ctx->inv_freq, 0, cu);
    pn_op_rope_bwd(&dk4, ctx->inv_freq, 0, cu);
    pn_tensor *dQ = &dq, *dK = &dk, dqr, dkr;
    if (c->qk_norm) {
        pn_tensor qr = pn_block_rows(&acts[A_QRAW], N), kr = pn_block_rows(&acts[A_KRAW], N);
        dqr = pn_block_rows(&scratch[S_DQR], N), dkr = pn_block_rows(&scratch[S_DKR], N);
        pn_op_rmsnorm_bwd(&dqr, gopt(gp, ix.qn), &dq, &qr, &p[ix.qn], ctx->rms_eps, 0);
        pn_op_rmsnorm_bwd(&dkr, gopt(gp, ix.kn), &dk, &kr, &p[ix.kn], ctx->rms_eps, 0);
        dQ = &dqr, dK = &dkr;
    }
    pn_op_matmul_bwd(dx, gopt(gp, ix.wq), gopt(gp, ix.bq), dQ, x, &p[ix.wq], 0);
    pn_op_matmul_bwd(dx, gopt(gp, ix.wk), gopt(gp, ix.bk), dK, x, &p[ix.wk], 1);
    pn_op_matmul_bwd(dx, gopt(gp, ix.wv), gopt(gp, ix.bv), &dv, x, &p[ix.wv], 1);
    return 0;
}

// ---------------------------------------------------------------------------------------------------
// Generation: the KV cache is the decode state (K and V [B, cap, kv heads, D], keys after RoPE). New tokens
// at positions pos0.. are projected, normed (Qwen3), rotated, appended, and attend to everything cached
// (swa: the last `window` keys).

enum { G_Q, G_K, G_V, G_ATT, G_COUNT };

// The KV cache's slots. Every attention op treats a cache as a ring (position s in slot s mod slots), so a
// sliding window needs only what one call reads: its T <= max_T new keys and the window - 1 before them
// (rounded up to 64); full attention, or a window whose ring would not be smaller, gets the capacity.
static int64_t cache_slots(const pn_block_cfg *c, int64_t cap, int64_t max_T) {
    const int w = window_of(c);
    if (w <= 0 || max_T <= 0) return cap;
    const int64_t ring = (w + max_T - 1 + 63) / 64 * 64;
    return ring < cap ? ring : cap;
}

static int decode_state_attn(const pn_block_cfg *c, int64_t B, int64_t cap, int64_t max_T, pn_dtype act,
                             pn_dtype *dt, int *ndim, int64_t (*shape)[4]) {
    for (int i = 0; i < 2; i++) {
        dt[i] = act, ndim[i] = 4;
        shape[i][0] = B, shape[i][1] = cache_slots(c, cap, max_T), shape[i][2] = c->n_kv_heads;
        shape[i][3] = c->head_dim;
    }
    return 2;
}

static int infer_acts_attn(const pn_block_cfg *c, int64_t max_B, int64_t max_T, pn_dtype act, pn_dtype *dt,
                           int64_t *rows, int64_t *cols) {
    const int64_t Q = (int64_t)c->n_heads * c->head_dim, KV = (int64_t)c->n_kv_heads * c->head_dim;
    const int64_t w[G_COUNT] = {Q, KV, KV, Q};
    for (int i = 0; i < G_COUNT; i++) dt[i] = act, rows[i] = max_B * max_T, cols[i] = w[i];
    return G_COUNT;
}

static int infer_attn(const pn_block_cfg *c, const pn_tensor *p, pn_tensor *state, pn_tensor *scratch,
                      const pn_tensor *x, pn_tensor *y, const pn_block_ctx *ctx) {
    const attn_index ix = index_of(c);
    const int64_t B = ctx->B, T = ctx->T, N = B * T, D = c->head_dim;
    // The keys this call reads must all be in the cache: the new ones and, with a window, the window - 1
    // before the first (a ring then), else every one before.
    const int64_t slots = state[0].shape[1], w = window_of(c);
    if (w > 0 && T + (ctx->pos0 < w - 1 ? ctx->pos0 : w - 1) > slots)
        return pn_errorf("sliding-window cache of %lld slots: %lld new tokens after %lld need %lld (window %lld; plan "
                         "fewer tokens per call)", (long long)slots, (long long)T, (long long)ctx->pos0,
                         (long long)(T + (ctx->pos0 < w - 1 ? ctx->pos0 : w - 1)), (long long)w);
    if (w == 0 && ctx->pos0 + T > slots)
        return pn_errorf("KV cache full: %lld cached + %lld new tokens > capacity %lld", (long long)ctx->pos0, (long long)T,
                         (long long)slots);
    pn_tensor q = pn_rows(&scratch[G_Q], 0, N), k = pn_rows(&scratch[G_K], 0, N), v = pn_rows(&scratch[G_V], 0, N);
    pn_tensor att = pn_rows(&scratch[G_ATT], 0, N);
    pn_tensor q4 = pn_reshape(&q, 4, (int64_t[]){B, T, c->n_heads, D}), k4 = pn_reshape(&k, 4, (int64_t[]){B, T, c->n_kv_heads, D});
    pn_tensor v4 = pn_reshape(&v, 4, (int64_t[]){B, T, c->n_kv_heads, D}), att4 = pn_reshape(&att, 4, (int64_t[]){B, T, c->n_heads, D});
    pn_tensor *const po[3] = {&q, &k, &v}; // one GEMV launch when decoding
    const pn_tensor *const pw[3] = {&p[ix.wq], &p[ix.wk], &p[ix.wv]}, *const pb[3] = {opt(p, ix.bq), opt(p, ix.bk), opt(p, ix.bv)};
    pn_op_matmul_multi(3, po, x, pw, pb, 0);
    if (c->qk_norm) { // Qwen3: per-head RMSNorm before RoPE
        pn_op_rmsnorm(&q4, &q4, &p[ix.qn], ctx->rms_eps);
        pn_op_rmsnorm(&k4, &k4, &p[ix.kn], ctx->rms_eps);
    }
    if (ctx->pos) { // decoding: the positions are read on the device (the step may be a replayed graph)
        // stores k (rotated) and v, and attends with q rotated: one launch
        pn_op_kv_attend_at(&att4, &q4, &state[0], &state[1], &k4, &v4, ctx->inv_freq, ctx->pos, window_of(c));
    } else {
        pn_op_rope(&q4, ctx->inv_freq, (int)ctx->pos0, NULL);
        pn_op_rope(&k4, ctx->inv_freq, (int)ctx->pos0, NULL);
        pn_op_kv_store(&state[0], &k4, (int)ctx->pos0);
        pn_op_kv_store(&state[1], &v4, (int)ctx->pos0);
        pn_op_attention(&att4, &q4, &state[0], &state[1], (int)ctx->pos0, window_of(c));
    }
    pn_op_matmul(y, &att, &p[ix.wo], opt(p, ix.bo));
    return 0;
}

// swa's section: {"window_size": W} (no default in NVIDIA's code).
static int parse_swa(pn_block_cfg *c, json_t *s, const char *path, const char *in) {
    if (!json_is_object(s) || !json_object_get(s, "window_size"))
        return pn_errorf("%s: layer_types use swa but %s.window_size is missing", path, in);
    return pn_json_int(path, s, "window_size", &c->window, 1, 1) ? pn_error_prefix("%s", in) : 0;
}

static json_t *json_swa(const pn_block_cfg *c) { return json_pack("{s:i}", "window_size", c->window); }

const pn_block_type pn_block_attn = {"attn", NULL, NULL, NULL, check_attn, params_attn, state_attn, flops_attn,
                                     acts_attn, forward_attn, backward_attn,
                                     decode_state_attn, infer_acts_attn, infer_attn};
const pn_block_type pn_block_swa = {"swa", "swa", parse_swa, json_swa, check_swa, params_attn, state_swa, flops_swa,
                                    acts_attn, forward_attn, backward_attn,
                                    decode_state_attn, infer_acts_attn, infer_attn};
