// pn_model: parameter list, loading, memory plan and the forward pass of the Qwen2-family decoder.
//
// The one non-obvious choice: the parameter list (names, shapes, kinds) is built from the config alone and
// drives everything — arena sizing, checkpoint loading with shape checks, and the random-checkpoint tool —
// so the three can never disagree about what a model holds.
#include "pn_model.h"

#include <stdlib.h>
#include <string.h>

#include "pn_common.h"

static void add_param(pn_param *out, int *n, pn_tensor *dst, pn_tensor *grad, pn_param_kind kind, int64_t d0,
                      int64_t d1, const char *fmt, int layer) {
    pn_param *p = &out[(*n)++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, fmt, layer);
    p->kind = kind;
    p->ndim = d1 ? 2 : 1;
    p->shape[0] = d0;
    p->shape[1] = d1;
    p->dst = dst;
    p->grad = grad;
}

int64_t pn_param_numel(const pn_param *p) {
    int64_t n = 1;
    for (int i = 0; i < p->ndim; i++) n *= p->shape[i];
    return n;
}

// Layer l's token mixer: its type and config (the config's defaults for the type, the window of layer l).
// A config built in code rather than read may leave mixer[l] empty: attention, windowed where window[l] is set.
static const pn_block_type *layer_block(const pn_model_config *c, int l, pn_block_cfg *bc) {
    const char *name = c->mixer[l][0] ? c->mixer[l] : c->window[l] ? "swa" : "attn";
    const pn_block_type *bt = pn_block_find(name);
    PN_ASSERT(bt); // pn_hf_config only produces registered names
    *bc = pn_block_default(c, name);
    if (c->window[l]) bc->window = c->window[l];
    return bt;
}

int pn_model_nparams(const pn_model_config *c) {
    int n = 2 + (c->tie_embeddings ? 0 : 1);
    for (int l = 0; l < c->n_layers; l++) {
        pn_block_cfg bc;
        n += 5 + layer_block(c, l, &bc)->params(&bc, l, NULL);
    }
    return n;
}

int pn_model_param_list(const pn_model_config *c, pn_model *m, pn_param *out) {
    int n = 0;
    const int64_t H = c->hidden;
#define DST(field) (m ? &m->field : NULL)
#define LDST(field) (m ? &m->layers[l].field : NULL)
    add_param(out, &n, DST(embed), DST(g_embed), PN_PARAM_EMBED, c->vocab, H, "model.embed_tokens.weight", 0);
    for (int l = 0; l < c->n_layers; l++) {
        add_param(out, &n, LDST(in_norm), LDST(g_in_norm), PN_PARAM_NORM, H, 0, "model.layers.%d.input_layernorm.weight", l);
        pn_block_cfg bc;
        const int nb = layer_block(c, l, &bc)->params(&bc, l, out + n);
        PN_ASSERT(nb <= PN_BLOCK_MAX_PARAMS);
        for (int i = 0; i < nb; i++) out[n + i].dst = LDST(bp[i]), out[n + i].grad = LDST(gbp[i]);
        n += nb;
        add_param(out, &n, LDST(post_norm), LDST(g_post_norm), PN_PARAM_NORM, H, 0,
                  "model.layers.%d.post_attention_layernorm.weight", l);
        add_param(out, &n, LDST(gate_w), LDST(g_gate_w), PN_PARAM_WEIGHT, c->intermediate, H,
                  "model.layers.%d.mlp.gate_proj.weight", l);
        add_param(out, &n, LDST(up_w), LDST(g_up_w), PN_PARAM_WEIGHT, c->intermediate, H,
                  "model.layers.%d.mlp.up_proj.weight", l);
        add_param(out, &n, LDST(down_w), LDST(g_down_w), PN_PARAM_WEIGHT, H, c->intermediate,
                  "model.layers.%d.mlp.down_proj.weight", l);
    }
    add_param(out, &n, DST(final_norm), DST(g_final_norm), PN_PARAM_NORM, H, 0, "model.norm.weight", 0);
    if (!c->tie_embeddings)
        add_param(out, &n, DST(lm_head), DST(g_lm_head), PN_PARAM_WEIGHT, c->vocab, H, "lm_head.weight", 0);
#undef DST
#undef LDST
    PN_ASSERT(n == pn_model_nparams(c));
    return n;
}

static const char *shape_s(int ndim, const int64_t *shape, char *buf, size_t n) {
    return pn_shape_fmt(ndim, shape, buf, n); // any rank: a file may hold more dimensions than a tensor
}

static int st_is_float(pn_st_dtype dt) {
    return dt == PN_ST_F32 || dt == PN_ST_BF16 || dt == PN_ST_F16 || dt == PN_ST_F64;
}

// The checkpoint tensor a parameter loads from, checked (present, same shape, a floating-point dtype)
// before anything is allocated, so a config that contradicts the weights is named as such.
static int check_param(const pn_checkpoint *ck, const char *name, int ndim, const int64_t *shape, const char *why) {
    const pn_safetensors *f = NULL;
    const pn_st_entry *e = pn_ckpt_find(ck, name, &f);
    char s1[96], s2[96];
    if (!e) return pn_errorf("%s: missing tensor '%s' (config.json asks for it)", ck->dir, name);
    if (e->ndim != ndim || memcmp(e->shape, shape, sizeof(int64_t) * (size_t)ndim) != 0)
        return pn_errorf("%s: tensor '%s' has shape %s but %s %s", f->path, name,
                         shape_s(e->ndim, e->shape, s1, sizeof s1), why, shape_s(ndim, shape, s2, sizeof s2));
    if (!st_is_float(e->dtype))
        return pn_errorf("%s: tensor '%s' has dtype %s, expected a floating-point dtype (F32, BF16, F16 or F64)",
                         f->path, name, pn_st_dtype_name(e->dtype));
    return 0;
}

// Copy one checkpoint tensor into its parameter, converting to the device dtype through fp32.
static int load_param(const pn_checkpoint *ck, const pn_param *p, float *scratch) {
    const pn_safetensors *f = NULL;
    const pn_st_entry *e = pn_ckpt_find(ck, p->name, &f);
    if (check_param(ck, p->name, p->ndim, p->shape, "config.json implies")) return -1;
    if (pn_st_to_f32(f, e, scratch)) return -1;
    pn_op_from_host_f32(p->dst, scratch);
    return 0;
}

// A tied model's lm_head.weight, when the checkpoint has one: transformers ties it to the embedding and
// loads nothing from it, which is only harmless when it is the embedding. A wrong shape or dtype is an
// error; a right-shaped one that differs from the embedding is ignored with a warning.
static int check_tied_head(const pn_checkpoint *ck, const pn_model_config *c) {
    const pn_safetensors *hf = NULL, *ef = NULL;
    const pn_st_entry *h = pn_ckpt_find(ck, "lm_head.weight", &hf);
    if (!h) return 0;
    if (check_param(ck, "lm_head.weight", 2, (int64_t[]){c->vocab, c->hidden},
                    "the embedding it is tied to (tie_word_embeddings) is"))
        return -1;
    const pn_st_entry *e = pn_ckpt_find(ck, "model.embed_tokens.weight", &ef);
    if (e && (e->dtype != h->dtype || memcmp(e->data, h->data, (size_t)(h->end - h->begin)) != 0))
        pn_warn("%s: ignoring 'lm_head.weight': it differs from 'model.embed_tokens.weight' and the model ties the "
                "two (tie_word_embeddings), so the embedding serves as the output layer",
                hf->path);
    return 0;
}

int pn_model_load(pn_model *m, const char *dir, pn_device dev) {
    memset(m, 0, sizeof *m);
    if (!pn_backend_get(dev) || (dev == PN_CUDA && !pn_cuda_available()))
        return pn_errorf("device %s is not available (%s)", pn_device_name(dev),
                         pn_backend_get(dev) ? "no CUDA GPU found" : "built without CUDA");
    pn_checkpoint ck;
    if (pn_ckpt_open(&ck, dir)) return -1;
    for (int l = 0; l < ck.cfg.n_layers; l++) { // every layer's block config must be one its kernels can run
        pn_block_cfg bc;
        const pn_block_type *bt = layer_block(&ck.cfg, l, &bc);
        char what[64];
        snprintf(what, sizeof what, "layer %d", l);
        if (bt->check(&bc, what)) {
            pn_error_prefix("%s/config.json", dir);
            pn_ckpt_close(&ck);
            return -1;
        }
    }
    m->cfg = ck.cfg;
    m->device = dev;
    m->dtype = pn_device_dtype(dev);
    const pn_model_config *c = &m->cfg;
    m->layers = pn_calloc((size_t)c->n_layers, sizeof(pn_layer));
    for (int l = 0; l < c->n_layers; l++) {
        pn_layer *L = &m->layers[l];
        L->bt = layer_block(c, l, &L->bc);
        L->nbp = L->bt->params(&L->bc, l, NULL);
    }
    m->nparams = pn_model_nparams(c);
    m->param_list = pn_calloc((size_t)m->nparams, sizeof(pn_param));
    pn_model_param_list(c, m, m->param_list);
    // Every tensor's presence, shape and dtype first: nothing is allocated for a checkpoint that cannot load.
    for (int i = 0; i < m->nparams; i++)
        if (check_param(&ck, m->param_list[i].name, m->param_list[i].ndim, m->param_list[i].shape,
                        "config.json implies"))
            goto fail;
    if (c->tie_embeddings && check_tied_head(&ck, c)) goto fail;

    size_t bytes = pn_arena_need(PN_F32, 1, (int64_t[]){c->head_dim / 2}), largest = 0;
    for (int i = 0; i < m->nparams; i++) {
        const pn_param *p = &m->param_list[i];
        bytes += pn_arena_need(m->dtype, p->ndim, p->shape);
        size_t n = (size_t)pn_param_numel(p);
        if (n > largest) largest = n;
    }
    if (pn_arena_init(&m->params, dev, bytes)) {
        pn_error_prefix("%s: loading parameters", dir);
        goto fail;
    }
    for (int i = 0; i < m->nparams; i++) {
        pn_param *p = &m->param_list[i];
        *p->dst = pn_arena_tensor(&m->params, m->dtype, p->ndim, p->shape);
    }
    float *scratch = pn_malloc(sizeof(float) * largest);
    int rc = 0;
    for (int i = 0; i < m->nparams && !rc; i++) rc = load_param(&ck, &m->param_list[i], scratch);
    free(scratch);
    if (rc) goto fail;
    // Tensors the config does not explain are most likely a different architecture: say so, but load.
    for (int f = 0; f < ck.nfiles; f++)
        for (int i = 0; i < ck.files[f].n; i++) {
            const char *name = ck.files[f].entries[i].name;
            int known = c->tie_embeddings && !strcmp(name, "lm_head.weight");
            for (int j = 0; j < m->nparams && !known; j++) known = !strcmp(m->param_list[j].name, name);
            if (!known) pn_warn("%s: ignoring tensor '%s' that a %s model does not use", ck.files[f].path, name,
                                pn_arch_name(c->arch));
        }
    if (c->tie_embeddings) m->lm_head = m->embed;
    m->check_finite = getenv("PN_CHECK_FINITE") && strcmp(getenv("PN_CHECK_FINITE"), "0") != 0;
    m->inv_freq = pn_arena_tensor(&m->params, PN_F32, 1, (int64_t[]){c->head_dim / 2});
    float *inv = pn_malloc(sizeof(float) * (size_t)(c->head_dim / 2));
    pn_rope_inv_freq(c, inv);
    pn_op_from_host_f32(&m->inv_freq, inv);
    free(inv);
    pn_ckpt_close(&ck);
    return 0;
fail:
    pn_ckpt_close(&ck);
    pn_model_free(m);
    return -1;
}

void pn_train_free(pn_model *m); // pn_train.c

void pn_model_free(pn_model *m) {
    pn_train_free(m);
    pn_arena_free(&m->grads);
    pn_arena_free(&m->params);
    pn_arena_free(&m->acts);
    free(m->layers);
    free(m->param_list);
    free(m->iscr_pool);
    free(m->iscr);
    memset(m, 0, sizeof *m);
}

int pn_model_plan(pn_model *m, int max_B, int max_T, int all_logits) {
    const pn_model_config *c = &m->cfg;
    const int64_t N = (int64_t)max_B * max_T, H = c->hidden, L = all_logits ? N : max_B;
    pn_arena_free(&m->acts);
    m->max_B = max_B;
    m->max_T = max_T;
    m->all_logits = all_logits;
    const pn_dtype dt = m->dtype;
    size_t bytes = pn_arena_need(PN_I32, 1, (int64_t[]){N}) + 3 * pn_arena_need(dt, 2, (int64_t[]){N, H}) +
                   2 * pn_arena_need(dt, 2, (int64_t[]){N, c->intermediate}) +
                   pn_arena_need(dt, 2, (int64_t[]){L, c->vocab});
    // Every block's generation scratch: one set per block type (the first layer of a type defines it; the
    // layers run one after the other, so they share it).
    free(m->iscr_pool);
    free(m->iscr);
    m->iscr_pool = pn_calloc((size_t)c->n_layers, sizeof *m->iscr_pool);
    m->iscr = pn_calloc((size_t)c->n_layers, sizeof *m->iscr);
    int first[PN_MAX_LAYERS];
    pn_dtype sdt[PN_MAX_LAYERS][PN_BLOCK_MAX_ACTS];
    int64_t srows[PN_BLOCK_MAX_ACTS], scols[PN_BLOCK_MAX_ACTS];
    int nscr[PN_MAX_LAYERS] = {0};
    for (int l = 0; l < c->n_layers; l++) {
        first[l] = l;
        for (int j = 0; j < l; j++)
            if (m->layers[j].bt == m->layers[l].bt) {
                first[l] = j;
                break;
            }
        const pn_layer *Ly = &m->layers[l];
        if (first[l] != l) continue;
        nscr[l] = Ly->bt->infer_acts(&Ly->bc, max_B, max_T, dt, sdt[l], srows, scols);
        for (int i = 0; i < nscr[l]; i++) bytes += pn_arena_need(sdt[l][i], 2, (int64_t[]){srows[i], scols[i]});
    }
    if (pn_arena_init(&m->acts, m->device, bytes)) return pn_error_prefix("activations for %d x %d tokens", max_B, max_T);
    m->ids = pn_arena_tensor(&m->acts, PN_I32, 1, (int64_t[]){N});
    m->x = pn_arena_tensor(&m->acts, dt, 2, (int64_t[]){N, H});
    m->xn = pn_arena_tensor(&m->acts, dt, 2, (int64_t[]){N, H});
    m->tmp = pn_arena_tensor(&m->acts, dt, 2, (int64_t[]){N, H});
    m->gate = pn_arena_tensor(&m->acts, dt, 2, (int64_t[]){N, c->intermediate});
    m->up = pn_arena_tensor(&m->acts, dt, 2, (int64_t[]){N, c->intermediate});
    m->logits = pn_arena_tensor(&m->acts, dt, 2, (int64_t[]){L, c->vocab});
    for (int l = 0; l < c->n_layers; l++) {
        const pn_layer *Ly = &m->layers[l];
        if (first[l] == l) {
            Ly->bt->infer_acts(&Ly->bc, max_B, max_T, dt, sdt[l], srows, scols);
            for (int i = 0; i < nscr[l]; i++)
                m->iscr_pool[l][i] = pn_arena_tensor(&m->acts, sdt[l][i], 2, (int64_t[]){srows[i], scols[i]});
        }
        m->iscr[l] = m->iscr_pool[first[l]];
    }
    return 0;
}

// Layer l's decode-state tensors for B sequences of capacity cap (KV cache or the block's state()).
static int layer_state(const pn_model_config *c, int l, int B, int cap, pn_dtype act, pn_dtype *dt, int *ndim,
                       int64_t (*shape)[4]) {
    pn_block_cfg bc;
    return layer_block(c, l, &bc)->state(&bc, B, cap, act, dt, ndim, shape);
}

size_t pn_kvcache_bytes(const pn_model_config *c, int B, int cap, pn_device dev) {
    size_t bytes = 0;
    for (int l = 0; l < c->n_layers; l++) {
        pn_dtype dt[PN_BLOCK_MAX_STATE];
        int ndim[PN_BLOCK_MAX_STATE];
        int64_t shape[PN_BLOCK_MAX_STATE][4];
        const int n = layer_state(c, l, B, cap, pn_device_dtype(dev), dt, ndim, shape);
        for (int i = 0; i < n; i++) bytes += pn_arena_need(dt[i], ndim[i], shape[i]);
    }
    return bytes;
}

int pn_kvcache_init(pn_kvcache *kc, const pn_model *m, int B, int cap) {
    const pn_model_config *c = &m->cfg;
    memset(kc, 0, sizeof *kc);
    const size_t bytes = pn_kvcache_bytes(c, B, cap, m->device);
    if (pn_arena_init(&kc->arena, m->device, bytes)) return pn_error_prefix("KV cache for %d x %d tokens", B, cap);
    pn_backend_get(m->device)->memset0(kc->arena.base, bytes); // recurrent states start at zero
    kc->B = B;
    kc->cap = cap;
    kc->st = pn_calloc((size_t)c->n_layers, sizeof *kc->st);
    for (int l = 0; l < c->n_layers; l++) {
        pn_dtype dt[PN_BLOCK_MAX_STATE];
        int ndim[PN_BLOCK_MAX_STATE];
        int64_t shape[PN_BLOCK_MAX_STATE][4];
        const int n = layer_state(c, l, B, cap, m->dtype, dt, ndim, shape);
        for (int i = 0; i < n; i++) kc->st[l][i] = pn_arena_tensor(&kc->arena, dt[i], ndim[i], shape[i]);
    }
    return 0;
}

void pn_kvcache_free(pn_kvcache *kc) {
    pn_arena_free(&kc->arena);
    free(kc->st);
    memset(kc, 0, sizeof *kc);
}

static pn_tensor rows_of(const pn_tensor *t, int64_t n) { return pn_rows(t, 0, n); }

int pn_layer_forward(const pn_model *m, int l, const pn_tensor *x, pn_tensor *out, pn_layer_bufs *b, pn_tensor *blk,
                     pn_tensor *state, pn_tensor *scratch, const pn_block_ctx *ctx) {
    const pn_model_config *c = &m->cfg;
    const pn_layer *L = &m->layers[l];
    pn_op_rmsnorm(&b->xn1, x, &L->in_norm, c->rms_eps);
    const int rc = state ? L->bt->infer(&L->bc, L->bp, state, scratch, &b->xn1, &b->y, ctx)
                         : L->bt->forward(&L->bc, L->bp, blk, &b->xn1, &b->y, ctx);
    if (rc) return pn_error_prefix("layer %d (%s)", l, L->bt->name);
    if (b->xmid.data != x->data) pn_op_copy(&b->xmid, x);
    pn_op_add(&b->xmid, &b->y);
    // MLP: out = x_mid + down(silu(gate(n2)) * up(n2))
    pn_op_rmsnorm(&b->xn2, &b->xmid, &L->post_norm, c->rms_eps);
    pn_op_matmul(&b->gate, &b->xn2, &L->gate_w, NULL);
    pn_op_matmul(&b->up, &b->xn2, &L->up_w, NULL);
    pn_op_swiglu(&b->h, &b->gate, &b->up);
    if (!out) return 0;
    pn_op_matmul(&b->y, &b->h, &L->down_w, NULL);
    if (out->data != b->xmid.data) pn_op_copy(out, &b->xmid);
    pn_op_add(out, &b->y);
    if (m->check_finite) {
        const int64_t bad = pn_op_count_nonfinite(out);
        if (bad) return pn_errorf("layer %d (%s): %lld non-finite values (NaN/Inf) in its output", l, L->bt->name, (long long)bad);
    }
    if (m->tap && m->tap(m->tap_ctx, "layer_out", l, out)) return pn_error_prefix("tap after layer %d", l);
    return 0;
}

int pn_model_forward(pn_model *m, pn_kvcache *kc, const int32_t *ids_host, int B, int T) {
    const pn_model_config *c = &m->cfg;
    const int64_t N = (int64_t)B * T;
    if (B < 1 || T < 1 || B > m->max_B || T > m->max_T)
        return pn_errorf("batch %d x %d does not fit the planned %d x %d", B, T, m->max_B, m->max_T);
    if (B != kc->B) return pn_errorf("batch %d does not match the KV cache's %d", B, kc->B);
    if (kc->len + T > kc->cap)
        return pn_errorf("KV cache full: %d cached + %d new tokens > capacity %d", kc->len, T, kc->cap);
    for (int64_t i = 0; i < N; i++)
        if (ids_host[i] < 0 || ids_host[i] >= c->vocab)
            return pn_errorf("token id %d at position %lld is outside the vocabulary (size %d)", ids_host[i],
                             (long long)i, c->vocab);
    const pn_backend *be = pn_backend_get(m->device);
    pn_tensor ids = rows_of(&m->ids, N), x = rows_of(&m->x, N), xn = rows_of(&m->xn, N), tmp = rows_of(&m->tmp, N);
    pn_tensor gate = rows_of(&m->gate, N), up = rows_of(&m->up, N);
    be->memcpy_h2d(ids.data, ids_host, sizeof(int32_t) * (size_t)N);
    pn_op_embedding(&x, &ids, &m->embed);
    if (m->tap && m->tap(m->tap_ctx, "embed", -1, &x)) return pn_error_prefix("tap after the embeddings");
    // Generation runs every layer in place on x with shared scratch: x_mid is x, h overwrites gate.
    pn_layer_bufs b = {.xn1 = xn, .y = tmp, .xmid = x, .xn2 = xn, .gate = gate, .up = up, .h = gate};
    const pn_block_ctx ctx = {.B = B, .T = T, .inv_freq = &m->inv_freq, .rms_eps = c->rms_eps, .pos0 = kc->len};
    for (int l = 0; l < c->n_layers; l++)
        if (pn_layer_forward(m, l, &x, &x, &b, NULL, kc->st[l], m->iscr[l], &ctx)) return -1;
    pn_op_rmsnorm(&xn, &x, &m->final_norm, c->rms_eps);
    if (m->all_logits) {
        pn_tensor lg = rows_of(&m->logits, N);
        pn_op_matmul(&lg, &xn, &m->lm_head, NULL);
    } else { // only each sequence's last position (generation)
        for (int b = 0; b < B; b++) {
            pn_tensor xr = pn_rows(&xn, (int64_t)b * T + T - 1, 1), lr = pn_rows(&m->logits, b, 1);
            pn_op_matmul(&lr, &xr, &m->lm_head, NULL);
        }
    }
    kc->len += T;
    return 0;
}
