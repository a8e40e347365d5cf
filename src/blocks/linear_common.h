// Dimensions and checks shared by the linear-attention blocks (jet, gdn, deltanet), computed the way fla
// and Jet-Nemotron compute them: key_dim = heads * d_k, value_dim = int(key_dim * expand_v),
// d_v = int(d_k * expand_v).
#ifndef PN_BLOCKS_LINEAR_COMMON_H
#define PN_BLOCKS_LINEAR_COMMON_H

#include "../pn_block.h"
#include "../pn_common.h"
#include "../pn_json.h"

typedef struct {
    int64_t key_dim, value_dim, head_v;
} pn_lin_dims;

static inline pn_lin_dims pn_lin_dims_of(const pn_block_cfg *c) {
    pn_lin_dims d;
    d.key_dim = (int64_t)c->lin_heads * c->lin_head_k;
    d.value_dim = (int64_t)((double)d.key_dim * c->expand_v);
    d.head_v = (int64_t)((double)c->lin_head_k * c->expand_v);
    return d;
}

// config.json: the keys every linear block's section shares (num_heads, head_dim — required or not —,
// expand_v, conv_size, norm_eps as a number or a string), into c whose defaults are set; `in` names the
// section. 0, or -1 with the error set.
static inline int pn_lin_parse(pn_block_cfg *c, json_t *s, const char *path, const char *in, int required) {
    double eps = c->norm_eps;
    if (pn_json_int(path, s, "num_heads", &c->lin_heads, required, 1) ||
        pn_json_int(path, s, "head_dim", &c->lin_head_k, required, 1) || pn_json_num(path, s, "expand_v", &c->expand_v) ||
        pn_json_int(path, s, "conv_size", &c->conv_size, 0, 1) || pn_json_num_or_string(path, s, "norm_eps", &eps))
        return pn_error_prefix("%s", in);
    char dot[64];
    snprintf(dot, sizeof dot, "%s.", in);
    if (pn_json_pos_float(path, dot, "norm_eps", eps, 1) || pn_json_pos_float(path, dot, "expand_v", c->expand_v, 64))
        return -1;
    c->norm_eps = (float)eps;
    return 0;
}

// The limits are the kernels': chunked CUDA kernels hold d_k <= 256 and d_v <= 1024.
static inline int pn_lin_check(const pn_block_cfg *c, const char *what) {
    const pn_lin_dims d = pn_lin_dims_of(c);
    if (c->lin_heads < 1) return pn_errorf("%s: %s.num_heads = %d must be positive", what, c->type, c->lin_heads);
    if (c->lin_head_k < 1 || c->lin_head_k > 256)
        return pn_errorf("%s: %s.head_dim = %d: the kernels support 1..256", what, c->type, c->lin_head_k);
    if (!(c->expand_v > 0) || d.head_v < 1 || d.head_v > 1024)
        return pn_errorf("%s: %s.expand_v = %g gives a value head dim of %lld: the kernels support 1..1024", what,
                         c->type, c->expand_v, (long long)d.head_v);
    if (d.value_dim != d.head_v * c->lin_heads)
        return pn_errorf("%s: %s: num_heads %d does not divide the value dim %lld (expand_v %g)", what, c->type,
                         c->lin_heads, (long long)d.value_dim, c->expand_v);
    if (c->conv_size < 1 || c->conv_size > 64)
        return pn_errorf("%s: %s.conv_size = %d must be 1..64", what, c->type, c->conv_size);
    if (!(c->norm_eps > 0)) return pn_errorf("%s: %s.norm_eps must be positive", what, c->type);
    return 0;
}

// Recurrent state (fp32, heads x d_k x d_v) plus the last conv_size - 1 inputs of each convolution.
static inline size_t pn_lin_state(const pn_block_cfg *c, int64_t conv_channels, int elem) {
    const pn_lin_dims d = pn_lin_dims_of(c);
    return (size_t)c->lin_heads * (size_t)c->lin_head_k * (size_t)d.head_v * 4 +
           (size_t)(c->conv_size - 1) * (size_t)conv_channels * (size_t)elem;
}

// The delta rule per token and head: S^T k, the rank-1 update k u^T, and S^T q — three d_k x d_v products.
static inline double pn_lin_recurrence_flops(const pn_block_cfg *c) {
    return 6.0 * c->lin_heads * (double)c->lin_head_k * (double)pn_lin_dims_of(c).head_v;
}

// Views shared by the linear blocks' training forward/backward (src/blocks/gdn.c, jet.c): rows [0, N) of a
// planned [max_N, cols] tensor seen as [B, T, cols] (the convolution's layout) or [B, T, H, cols / H] (the
// recurrence's).
static inline pn_tensor pn_lin_btc(const pn_tensor *t, const pn_block_ctx *ctx) {
    pn_tensor r = pn_rows(t, 0, ctx->B * ctx->T);
    return pn_reshape(&r, 3, (int64_t[]){ctx->B, ctx->T, t->shape[1]});
}
static inline pn_tensor pn_lin_bthd(const pn_tensor *t, const pn_block_ctx *ctx, int64_t H) {
    pn_tensor r = pn_rows(t, 0, ctx->B * ctx->T);
    return pn_reshape(&r, 4, (int64_t[]){ctx->B, ctx->T, H, t->shape[1] / H});
}
static inline pn_tensor pn_lin_bth(const pn_tensor *t, const pn_block_ctx *ctx) {
    pn_tensor r = pn_rows(t, 0, ctx->B * ctx->T);
    return pn_reshape(&r, 3, (int64_t[]){ctx->B, ctx->T, t->shape[1]});
}

// The time mixing both linear blocks share, from q, k, v (after their convolutions / activations) and the
// gate pre-activations za (NULL without decay), zb, to the gated norm's output `on` [N, value_dim]:
// gates, the delta rule with in-kernel q/k L2 norm, gate = x Wg^T, on = rmsnorm(o) o_norm silu(gate).
typedef struct {
    pn_tensor *q, *k, *v, *za, *zb, *g, *beta, *gate, *o, *on;
    pn_tensor *saved; // the delta rule's intermediates from the forward for the backward (pn_lin_saved_cols)
} pn_lin_mix;

// Columns of the activation (act dtype) that keeps the delta rule's intermediates from the training forward
// for its backward (pn_gdn_cfg.saved: the backward then skips recomputing W, V' and the chunk states, ~30%
// of its time at d_k 96, d_v 256), per token row: pn_gdn_saved_bytes for N rows in N / 64 chunks with room
// for a quarter more chunks (packed documents end chunks early; with more the backward recomputes) and the
// parts' alignment for N ≥ 64. 0 with fp32 activations (the CPU backend recomputes) and with
// PN_GDN_RECOMPUTE=1 (the memory back: ~22 KB a row at 12 heads, d_k 96, d_v 256). The parts are
// pn_gdn_saved_bytes' (kernels/cpu/gdn.h): W, V' (bf16) and four fp32 values a row and head, the chunk states,
// T and P (bf16) a chunk, nine 256-byte alignments; test_block_train checks the bound against it.
static inline int64_t pn_lin_saved_cols(const pn_block_cfg *c, pn_dtype act) {
    const char *e = getenv("PN_GDN_RECOMPUTE");
    if (act != PN_BF16 || (e && e[0] == '1')) return 0;
    const int64_t H = c->lin_heads, K = c->lin_head_k, V = pn_lin_dims_of(c).head_v, C = PN_GDN_CHUNK;
    const int64_t per_row = 2 * H * K + 2 * H * V + 16 * H, per_chunk = 2 * H * K * V + 4 * H * C * C;
    const int64_t bytes = per_row + (per_chunk * 5 + 4 * C - 1) / (4 * C) + 9 * 256 / C;
    return (bytes + 1) / 2;
}

// state: NULL (training: every sequence starts from zero), or the recurrent state [B, H, d_k, d_v] (F32) the
// sequences continue from and which receives their final state (generation).
static inline int pn_lin_mix_forward(const pn_block_cfg *c, const pn_lin_mix *a, const pn_tensor *A_log,
                                     const pn_tensor *dt_bias, const pn_tensor *wg, const pn_tensor *o_norm,
                                     const pn_tensor *x, const pn_block_ctx *ctx, pn_tensor *state) {
    const int64_t N = ctx->B * ctx->T, H = c->lin_heads;
    pn_tensor za = a->za ? pn_rows(a->za, 0, N) : (pn_tensor){0}, zb = pn_rows(a->zb, 0, N);
    pn_tensor g = pn_rows(a->g, 0, N), beta = pn_rows(a->beta, 0, N);
    pn_op_lin_gates(&g, &beta, a->za ? &za : NULL, &zb, A_log, dt_bias);
    pn_tensor q4 = pn_lin_bthd(a->q, ctx, H), k4 = pn_lin_bthd(a->k, ctx, H), v4 = pn_lin_bthd(a->v, ctx, H);
    pn_tensor o4 = pn_lin_bthd(a->o, ctx, H), g3 = pn_lin_bth(a->g, ctx), b3 = pn_lin_bth(a->beta, ctx);
    // One token per sequence continuing a state (decoding): the recurrent step, one kernel instead of the
    // chunked forward's two over a 64-row chunk that holds one row.
    const int rc = state && ctx->T == 1 && !ctx->cu_seqlens
                       ? pn_op_gdn_step(&o4, state, &q4, &k4, &v4, &g3, &b3, 1)
                       : pn_op_gdn(&o4, state, &q4, &k4, &v4, &g3, &b3, state, ctx->cu_seqlens, ctx->cu_host, 1,
                                   state ? NULL : a->saved);
    if (rc) return -1;
    pn_tensor gate = pn_rows(a->gate, 0, N), o = pn_rows(a->o, 0, N), on = pn_rows(a->on, 0, N);
    pn_op_matmul(&gate, x, wg, NULL);
    pn_op_gated_rmsnorm(&on, &o, &gate, o_norm, c->norm_eps);
    return 0;
}

// Generation: a causal convolution that continues from the last W - 1 inputs of each of the B sequences.
// x [B T, C] new inputs; cache [B, W - 1, C] (updated to the last W - 1 inputs); w the static kernel, or
// kdyn [B T, C W] the per-token kernels (JetBlock); y [B T, C]. One conv1d_continue op; unfused
// (PN_NO_FUSED=1) the same sums as ops: ext, ext_out (and kext with kdyn), scratch of at least B (T + W - 1)
// rows, receive the history and the new rows as one sequence per batch row, conv1d convolves them and the
// last T outputs are kept — six launches per sequence (at batch 156, Jet-Nemotron-2B's 24 JetBlocks made
// that ~22,000 launches a step: 44 ms of it on an H100).
// The training acts (which = 0) at N = max_B max_T rows, then two (three with kdyn_cols) history buffers of
// max_B (max_T + W - 1) rows for pn_lin_conv_continue; returns the count.
static inline int pn_lin_infer_acts(const pn_block_type *bt, const pn_block_cfg *c, int64_t max_B, int64_t max_T,
                                    pn_dtype act, pn_dtype *dt, int64_t *rows, int64_t *cols, int64_t ext_cols,
                                    int64_t kdyn_cols) {
    const int n = bt->acts(c, 0, act, dt, cols);
    for (int i = 0; i < n; i++) rows[i] = max_B * max_T;
    const int64_t E = max_B * (max_T + c->conv_size - 1);
    int k = n;
    dt[k] = act, rows[k] = E, cols[k++] = ext_cols;
    dt[k] = act, rows[k] = E, cols[k++] = ext_cols;
    if (kdyn_cols) dt[k] = act, rows[k] = E, cols[k++] = kdyn_cols;
    return k;
}

static inline void pn_lin_conv_continue(pn_tensor *y, const pn_tensor *x, pn_tensor *cache, const pn_tensor *w,
                                        const pn_tensor *kdyn, const pn_tensor *ext, const pn_tensor *ext_out,
                                        const pn_tensor *kext, int64_t B, int64_t T, int W) {
    const int64_t C = x->shape[1], E = T + W - 1, CW = C * W;
    if (!pn_ops_unfused()) {
        pn_tensor x3 = pn_reshape(x, 3, (int64_t[]){B, T, C}), y3 = pn_reshape(y, 3, (int64_t[]){B, T, C});
        pn_tensor k3 = kdyn ? pn_reshape(kdyn, 3, (int64_t[]){B, T, CW}) : (pn_tensor){0};
        pn_tensor c3 = pn_reshape(cache, 3, (int64_t[]){B, W - 1, C});
        pn_op_conv1d_continue(&y3, &c3, &x3, w, kdyn ? &k3 : NULL, 1);
        return;
    }
    pn_tensor xin = pn_view(ext->data, ext->dtype, ext->device, 2, (int64_t[]){B * E, C});
    pn_tensor xout = pn_view(ext_out->data, ext_out->dtype, ext_out->device, 2, (int64_t[]){B * E, C});
    pn_tensor kin = kdyn ? pn_view(kext->data, kext->dtype, kext->device, 2, (int64_t[]){B * E, CW}) : (pn_tensor){0};
    pn_tensor cache2 = pn_reshape(cache, 2, (int64_t[]){B * (W - 1), C});
    for (int64_t b = 0; b < B; b++) {
        pn_tensor hist = pn_rows(&xin, b * E, W - 1), cb = pn_rows(&cache2, b * (W - 1), W - 1);
        pn_tensor now = pn_rows(&xin, b * E + W - 1, T), xb = pn_rows(x, b * T, T);
        if (W > 1) pn_op_copy(&hist, &cb);
        pn_op_copy(&now, &xb);
        if (kdyn) { // the history rows' kernels only shape outputs that are dropped: zero them
            pn_tensor kh = pn_rows(&kin, b * E, W - 1), kn = pn_rows(&kin, b * E + W - 1, T), kb = pn_rows(kdyn, b * T, T);
            if (W > 1) pn_backend_get(kh.device)->memset0(kh.data, pn_nbytes(&kh));
            pn_op_copy(&kn, &kb);
        }
    }
    pn_tensor x3 = pn_reshape(&xin, 3, (int64_t[]){B, E, C}), y3 = pn_reshape(&xout, 3, (int64_t[]){B, E, C});
    pn_tensor k3 = kdyn ? pn_reshape(&kin, 3, (int64_t[]){B, E, CW}) : (pn_tensor){0};
    pn_op_conv1d(&y3, &x3, w, NULL, kdyn ? &k3 : NULL, 1, NULL);
    for (int64_t b = 0; b < B; b++) {
        pn_tensor yb = pn_rows(y, b * T, T), ob = pn_rows(&xout, b * E + W - 1, T);
        pn_tensor cb = pn_rows(&cache2, b * (W - 1), W - 1), last = pn_rows(&xin, b * E + T, W - 1);
        pn_op_copy(&yb, &ob);
        if (W > 1) pn_op_copy(&cb, &last);
    }
}

// Gradients of the shared time mixing. In: d_on. Out: dq, dk, dv (overwritten), dx = d(gate) Wg (overwritten:
// the first contribution to the block's dx), dza (NULL without decay), dzb; parameter gradients of g_proj,
// o_norm, A_log, dt_bias accumulate (NULL = frozen). d_o, d_gate, dg, dbeta are scratch.
typedef struct {
    pn_tensor *d_on, *d_o, *d_gate, *dq, *dk, *dv, *dg, *dbeta, *dza, *dzb;
} pn_lin_mix_grads;

static inline int pn_lin_mix_backward(const pn_block_cfg *c, const pn_lin_mix *a, const pn_lin_mix_grads *d,
                                      const pn_tensor *A_log, const pn_tensor *dt_bias, const pn_tensor *wg,
                                      const pn_tensor *o_norm, pn_tensor *gA_log, pn_tensor *gdt_bias, pn_tensor *gwg,
                                      pn_tensor *go_norm, const pn_tensor *x, pn_tensor *dx, const pn_block_ctx *ctx) {
    const int64_t N = ctx->B * ctx->T, H = c->lin_heads;
    pn_tensor o = pn_rows(a->o, 0, N), gate = pn_rows(a->gate, 0, N);
    pn_tensor d_on = pn_rows(d->d_on, 0, N), d_o = pn_rows(d->d_o, 0, N), d_gate = pn_rows(d->d_gate, 0, N);
    pn_op_gated_rmsnorm_bwd(&d_o, &d_gate, go_norm, &d_on, &o, &gate, o_norm, c->norm_eps);
    pn_op_matmul_bwd(dx, gwg, NULL, &d_gate, x, wg, 0);
    pn_tensor q4 = pn_lin_bthd(a->q, ctx, H), k4 = pn_lin_bthd(a->k, ctx, H), v4 = pn_lin_bthd(a->v, ctx, H);
    pn_tensor g3 = pn_lin_bth(a->g, ctx), b3 = pn_lin_bth(a->beta, ctx);
    pn_tensor dq4 = pn_lin_bthd(d->dq, ctx, H), dk4 = pn_lin_bthd(d->dk, ctx, H), dv4 = pn_lin_bthd(d->dv, ctx, H);
    pn_tensor do4 = pn_lin_bthd(d->d_o, ctx, H), dg3 = pn_lin_bth(d->dg, ctx), db3 = pn_lin_bth(d->dbeta, ctx);
    if (pn_op_gdn_bwd(&dq4, &dk4, &dv4, &dg3, &db3, NULL, &do4, NULL, &q4, &k4, &v4, &g3, &b3, NULL, ctx->cu_seqlens,
                      ctx->cu_host, 1, a->saved))
        return -1;
    pn_tensor za = a->za ? pn_rows(a->za, 0, N) : (pn_tensor){0}, dza = a->za ? pn_rows(d->dza, 0, N) : (pn_tensor){0};
    pn_tensor dzb = pn_rows(d->dzb, 0, N), g = pn_rows(a->g, 0, N), beta = pn_rows(a->beta, 0, N);
    pn_tensor dg = pn_rows(d->dg, 0, N), dbeta = pn_rows(d->dbeta, 0, N);
    pn_op_lin_gates_bwd(a->za ? &dza : NULL, &dzb, gA_log, gdt_bias, &dg, &dbeta, a->za ? &za : NULL, &g, &beta, A_log,
                        dt_bias);
    return 0;
}

#endif
