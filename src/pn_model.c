// pn_model: parameter list, loading, memory plan and the forward pass of the Qwen2-family decoder.
//
// The one non-obvious choice: the parameter list (names, shapes, kinds) is built from the config alone and
// drives everything — arena sizing, checkpoint loading with shape checks, and the random-checkpoint tool —
// so the three can never disagree about what a model holds.
#include "pn_model.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
const pn_block_type *pn_model_layer_block(const pn_model_config *c, int l, pn_block_cfg *bc) {
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
        n += 5 + pn_model_layer_block(c, l, &bc)->params(&bc, l, NULL);
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
        const int nb = pn_model_layer_block(c, l, &bc)->params(&bc, l, out + n);
        PN_ASSERT(nb <= PN_BLOCK_MAX_PARAMS);
        for (int i = 0; i < nb; i++) out[n + i].dst = LDST(slot[0].bp[i]), out[n + i].grad = LDST(slot[0].gbp[i]);
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
        const pn_block_type *bt = pn_model_layer_block(&ck.cfg, l, &bc);
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
    snprintf(m->dir, sizeof m->dir, "%s", dir);
    m->dtype = pn_device_dtype(dev);
    const pn_model_config *c = &m->cfg;
    m->layers = pn_calloc((size_t)c->n_layers, sizeof(pn_layer));
    for (int l = 0; l < c->n_layers; l++) {
        pn_layer *L = &m->layers[l];
        pn_slot *S = &L->slot[0];
        S->bt = pn_model_layer_block(c, l, &S->bc);
        S->nbp = S->bt->params(&S->bc, l, NULL);
        S->shares = -1;
        L->nslots = 1;
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
    m->use_graphs = !(getenv("PN_NO_GRAPH") && strcmp(getenv("PN_NO_GRAPH"), "0") != 0);
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
    pn_arena_free(&m->cand);
    pn_arena_free(&m->acts);
    free(m->layers);
    free(m->param_list);
    memset(m, 0, sizeof *m);
}

int pn_model_plan(pn_model *m, int max_B, int max_T, int all_logits) {
    const pn_model_config *c = &m->cfg;
    const int64_t N = (int64_t)max_B * max_T, H = c->hidden, L = all_logits ? N : max_B;
    pn_arena_free(&m->acts);
    m->epoch++; // a captured decode step used the old buffers
    m->max_B = max_B;
    m->max_T = max_T;
    m->all_logits = all_logits;
    const pn_dtype dt = m->dtype;
    size_t bytes = pn_arena_need(PN_I32, 1, (int64_t[]){N}) + 3 * pn_arena_need(dt, 2, (int64_t[]){N, H}) +
                   2 * pn_arena_need(dt, 2, (int64_t[]){N, c->intermediate}) +
                   pn_arena_need(dt, 2, (int64_t[]){L, c->vocab}) + pn_arena_need(PN_I32, 1, (int64_t[]){max_B});
    // Every block's generation scratch: one set per block type over all layers and candidate slots (a type's
    // config is the same in every layer; the layers run one after the other, so they share it).
    m->n_gtypes = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int s = 0; s < m->layers[l].nslots; s++) {
            const pn_slot *S = &m->layers[l].slot[s];
            int k = 0;
            while (k < m->n_gtypes && m->gtype[k] != S->bt) k++;
            if (k < m->n_gtypes) continue;
            PN_ASSERT(k < PN_MAX_GTYPES);
            m->gtype[k] = S->bt, m->gtype_cfg[k] = S->bc, m->n_gtypes++;
        }
    pn_dtype sdt[PN_BLOCK_MAX_ACTS];
    int64_t srows[PN_BLOCK_MAX_ACTS], scols[PN_BLOCK_MAX_ACTS];
    for (int k = 0; k < m->n_gtypes; k++) {
        const int n = m->gtype[k]->infer_acts(&m->gtype_cfg[k], max_B, max_T, dt, sdt, srows, scols);
        for (int i = 0; i < n; i++) bytes += pn_arena_need(sdt[i], 2, (int64_t[]){srows[i], scols[i]});
    }
    if (pn_arena_init(&m->acts, m->device, bytes)) return pn_error_prefix("activations for %d x %d tokens", max_B, max_T);
    m->ids = pn_arena_tensor(&m->acts, PN_I32, 1, (int64_t[]){N});
    m->x = pn_arena_tensor(&m->acts, dt, 2, (int64_t[]){N, H});
    m->xn = pn_arena_tensor(&m->acts, dt, 2, (int64_t[]){N, H});
    m->tmp = pn_arena_tensor(&m->acts, dt, 2, (int64_t[]){N, H});
    m->gate = pn_arena_tensor(&m->acts, dt, 2, (int64_t[]){N, c->intermediate});
    m->up = pn_arena_tensor(&m->acts, dt, 2, (int64_t[]){N, c->intermediate});
    m->logits = pn_arena_tensor(&m->acts, dt, 2, (int64_t[]){L, c->vocab});
    m->greedy = pn_arena_tensor(&m->acts, PN_I32, 1, (int64_t[]){max_B});
    for (int k = 0; k < m->n_gtypes; k++) {
        const int n = m->gtype[k]->infer_acts(&m->gtype_cfg[k], max_B, max_T, dt, sdt, srows, scols);
        for (int i = 0; i < n; i++) m->gscr[k][i] = pn_arena_tensor(&m->acts, sdt[i], 2, (int64_t[]){srows[i], scols[i]});
    }
    return 0;
}

static pn_tensor *gen_scratch(pn_model *m, const pn_block_type *bt) {
    for (int k = 0; k < m->n_gtypes; k++)
        if (m->gtype[k] == bt) return m->gscr[k];
    pn_panic("generation plan: no scratch for block type %s (pn_model_plan after adding candidates)", bt->name);
}

// Layer l's decode-state tensors for B sequences of capacity cap, calls of up to max_T tokens (the block's
// state(): KV cache, recurrent state), from the config (slot 0) or, given the model, for the mixer in use.
static int layer_state(const pn_model_config *c, const pn_model *m, int l, int B, int cap, int max_T, pn_dtype act,
                       pn_dtype *dt, int *ndim, int64_t (*shape)[4]) {
    if (m) {
        const pn_slot *S = pn_layer_mixer_c(&m->layers[l]);
        return S->bt->state(&S->bc, B, cap, max_T, act, dt, ndim, shape);
    }
    pn_block_cfg bc;
    return pn_model_layer_block(c, l, &bc)->state(&bc, B, cap, max_T, act, dt, ndim, shape);
}

size_t pn_kvcache_bytes(const pn_model_config *c, int B, int cap, int max_T, pn_device dev) {
    size_t bytes = 0;
    for (int l = 0; l < c->n_layers; l++) {
        pn_dtype dt[PN_BLOCK_MAX_STATE];
        int ndim[PN_BLOCK_MAX_STATE];
        int64_t shape[PN_BLOCK_MAX_STATE][4];
        const int n = layer_state(c, NULL, l, B, cap, max_T, pn_device_dtype(dev), dt, ndim, shape);
        for (int i = 0; i < n; i++) bytes += pn_arena_need(dt[i], ndim[i], shape[i]);
    }
    return bytes;
}

int pn_kvcache_init(pn_kvcache *kc, const pn_model *m, int B, int cap) {
    const int64_t most = (int64_t)m->max_B * m->max_T; // one row may take a whole plan's tokens
    return pn_kvcache_init_calls(kc, m, B, cap, most < cap ? (int)most : cap);
}

int pn_kvcache_init_calls(pn_kvcache *kc, const pn_model *m, int B, int cap, int max_T) {
    const pn_model_config *c = &m->cfg;
    memset(kc, 0, sizeof *kc);
    size_t bytes = 0;
    for (int l = 0; l < c->n_layers; l++) {
        pn_dtype dt[PN_BLOCK_MAX_STATE];
        int ndim[PN_BLOCK_MAX_STATE];
        int64_t shape[PN_BLOCK_MAX_STATE][4];
        const int n = layer_state(c, m, l, B, cap, max_T, m->dtype, dt, ndim, shape);
        for (int i = 0; i < n; i++) bytes += pn_arena_need(dt[i], ndim[i], shape[i]);
    }
    bytes += pn_arena_need(PN_I32, 1, (int64_t[]){B});
    if (pn_arena_init(&kc->arena, m->device, bytes)) return pn_error_prefix("KV cache for %d x %d tokens", B, cap);
    pn_backend_get(m->device)->memset0(kc->arena.base, bytes); // recurrent states start at zero
    kc->B = B;
    kc->cap = cap;
    kc->max_T = max_T;
    kc->n_layers = c->n_layers;
    kc->st = pn_calloc((size_t)c->n_layers, sizeof *kc->st);
    for (int l = 0; l < c->n_layers; l++) {
        pn_dtype dt[PN_BLOCK_MAX_STATE];
        int ndim[PN_BLOCK_MAX_STATE];
        int64_t shape[PN_BLOCK_MAX_STATE][4];
        const int n = layer_state(c, m, l, B, cap, max_T, m->dtype, dt, ndim, shape);
        for (int i = 0; i < n; i++) kc->st[l][i] = pn_arena_tensor(&kc->arena, dt[i], ndim[i], shape[i]);
    }
    kc->pos = pn_arena_tensor(&kc->arena, PN_I32, 1, (int64_t[]){B}); // zero, like len
    kc->lens = pn_calloc((size_t)B, sizeof(int));
    return 0;
}

static void graph_drop(pn_kvcache *kc) {
    if (kc->graph) pn_backend_get(kc->arena.device)->graph_free(kc->graph);
    kc->graph = NULL;
    kc->graph_model = NULL;
    kc->graph_warm = 0;
}

void pn_kvcache_reset(pn_kvcache *kc) {
    pn_backend_get(kc->arena.device)->memset0(kc->arena.base, kc->arena.size); // recurrent states, positions
    kc->len = 0;
    kc->ragged = 0;
    memset(kc->lens, 0, sizeof(int) * (size_t)kc->B);
}

// The layers' state tensors: st[l][0 ..] up to the first unset one (kvcache_init fills them in order).
#define FOR_STATE(kc, l, i) \
    for (int i = 0; i < PN_BLOCK_MAX_STATE && (kc)->st[l][i].data; i++)

void pn_kvcache_reset_row(pn_kvcache *kc, int b) {
    PN_ASSERT(b >= 0 && b < kc->B && kc->lens);
    const pn_backend *be = pn_backend_get(kc->arena.device);
    for (int l = 0; kc->st && l < kc->n_layers; l++)
        FOR_STATE(kc, l, i) {
            pn_tensor r = pn_rows(&kc->st[l][i], b, 1);
            be->memset0(r.data, pn_nbytes(&r));
        }
    kc->lens[b] = 0;
    kc->ragged = 1;
}

void pn_kvcache_rows(pn_kvcache *kc, int b, int n, pn_kvcache *row) {
    PN_ASSERT(b >= 0 && n >= 1 && b + n <= kc->B && kc->lens);
    memset(row, 0, sizeof *row);
    row->B = n, row->cap = kc->cap, row->max_T = kc->max_T, row->n_layers = kc->n_layers;
    row->arena.device = kc->arena.device; // no memory of its own
    row->st = pn_calloc((size_t)kc->n_layers, sizeof *row->st);
    for (int l = 0; l < kc->n_layers; l++) FOR_STATE(kc, l, i) row->st[l][i] = pn_rows(&kc->st[l][i], b, n);
    row->pos = pn_rows(&kc->pos, b, n);
    row->lens = pn_calloc((size_t)n, sizeof(int));
    for (int r = 0; r < n; r++) {
        row->lens[r] = kc->lens[b + r];
        if (row->lens[r] > row->len) row->len = row->lens[r];
        row->ragged |= row->lens[r] != row->lens[0];
    }
    row->graph_off = 1; // a view for prefills: the parent's graph serves the decode steps
}

void pn_kvcache_row(pn_kvcache *kc, int b, pn_kvcache *row) { pn_kvcache_rows(kc, b, 1, row); }

void pn_kvcache_rows_free(pn_kvcache *row) {
    free(row->st);
    free(row->lens);
    memset(row, 0, sizeof *row);
}

void pn_kvcache_row_done(pn_kvcache *kc, int b, pn_kvcache *row) {
    kc->lens[b] = row->len;
    kc->ragged = 1;
    pn_kvcache_rows_free(row);
}

int pn_kvcache_copy_row(const pn_model *m, pn_kvcache *dst, int db, const pn_kvcache *src, int sb) {
    PN_ASSERT(db >= 0 && db < dst->B && sb >= 0 && sb < src->B && dst->lens && dst->n_layers == src->n_layers);
    const int len = src->lens ? src->lens[sb] : src->len;
    if (len > dst->cap) return pn_errorf("a decode state of %d tokens does not fit a cache of %d", len, dst->cap);
    for (int l = 0; l < dst->n_layers; l++) {
        // A KV cache [B, slots, inner...] (its second dimension grows with the capacity when no ring is asked
        // for: max_T 0) holds position p in slot p mod slots. While the source has not wrapped and the
        // destination holds len slots, the first len slots are copied; otherwise both must be the same ring
        // (copied whole). A recurrent state or convolution history is copied whole.
        pn_dtype dt[PN_BLOCK_MAX_STATE];
        int nd[PN_BLOCK_MAX_STATE];
        int64_t s1[PN_BLOCK_MAX_STATE][4], s2[PN_BLOCK_MAX_STATE][4];
        layer_state(&m->cfg, m, l, 1, dst->cap, 0, m->dtype, dt, nd, s1);
        layer_state(&m->cfg, m, l, 1, dst->cap + 1, 0, m->dtype, dt, nd, s2);
        FOR_STATE(dst, l, i) {
            pn_tensor d = pn_rows(&dst->st[l][i], db, 1), s = pn_rows(&src->st[l][i], sb, 1);
            const int kv = nd[i] >= 2 && s2[i][1] == s1[i][1] + 1;
            if (kv && len <= s.shape[1] && len <= d.shape[1]) { // positions 0 .. len - 1 = slots 0 .. len - 1
                const int64_t inner = pn_numel(&d) / d.shape[1], ds = d.shape[1], ss = s.shape[1];
                pn_tensor dv = pn_reshape(&dst->st[l][i], 2, (int64_t[]){dst->st[l][i].shape[0] * ds, inner});
                pn_tensor sv = pn_reshape(&src->st[l][i], 2, (int64_t[]){src->st[l][i].shape[0] * ss, inner});
                d = pn_rows(&dv, (int64_t)db * ds, len), s = pn_rows(&sv, (int64_t)sb * ss, len);
            } else if (pn_numel(&d) != pn_numel(&s)) {
                return pn_errorf("layer %d: a decode state of %d tokens in %lld slots does not fit %lld (caches made "
                                 "for other plans)", l, len, (long long)s.shape[1], (long long)d.shape[1]);
            }
            if (pn_numel(&d)) pn_op_copy(&d, &s);
        }
    }
    dst->lens[db] = len;
    // the rows move together again when they all hold as many tokens
    int same = 1, longest = 0;
    for (int b = 0; b < dst->B; b++) {
        same &= dst->lens[b] == dst->lens[0];
        if (dst->lens[b] > longest) longest = dst->lens[b];
    }
    dst->ragged = !same, dst->len = longest;
    return 0;
}

void pn_kvcache_free(pn_kvcache *kc) {
    if (kc->arena.base) graph_drop(kc);
    pn_arena_free(&kc->arena);
    free(kc->st);
    free(kc->lens);
    memset(kc, 0, sizeof *kc);
}

static pn_tensor rows_of(const pn_tensor *t, int64_t n) { return pn_rows(t, 0, n); }

static int norm_mlp(void) {
    static int on = -1;
    if (on < 0) on = getenv("PN_NORM_MLP") != NULL;
    return on;
}

int pn_layer_forward(const pn_model *m, int l, const pn_tensor *x, pn_tensor *out, pn_layer_bufs *b, pn_tensor *blk,
                     pn_tensor *state, pn_tensor *scratch, const pn_block_ctx *ctx) {
    const pn_model_config *c = &m->cfg;
    const pn_layer *L = &m->layers[l];
    const pn_slot *S = pn_layer_mixer_c(L);
    if (b->xn1_ready) b->xn1_ready = 0; // the previous layer's last add wrote it
    else pn_op_rmsnorm(&b->xn1, x, &L->in_norm, c->rms_eps);
    const int rc = state ? S->bt->infer(&S->bc, S->bp, state, scratch, &b->xn1, &b->y, ctx)
                         : S->bt->forward(&S->bc, S->bp, blk, &b->xn1, &b->y, ctx);
    if (rc) return pn_error_prefix("layer %d (%s)", l, S->bt->name);
    // Decoding (a few rows, in place, no taps) with PN_NORM_MLP=1: the MLP in two launches. The first
    // normalizes x + y itself (x is only read), the second adds both the block's y and the down projection
    // into x and writes the next layer's norm: equal to the ops below, two add_rmsnorm launches fewer per
    // layer. Off by default: on an H100 (Qwen2.5-1.5B shape, batch 1, same machine) 518-520 tok/s against
    // 540 with the separate norms. Nor does the residual add + norm pay in the tail of the GEMV before it:
    // with the output and down projections both as matmul_add_rmsnorm (the gate/up GEMV plain) 530 tok/s
    // against 560 (same machine): the last block's count, reread and norm lengthen every GEMV by more than a
    // separate add_rmsnorm launch costs once PDL overlaps that launch with the GEMV's end.
    const int decoding = !pn_ops_unfused() && state && b->xn2.shape[0] <= 4;
    if (decoding && norm_mlp() && out && out->data == x->data && b->xmid.data == x->data && b->next_norm && !m->check_finite &&
        !m->tap) {
        pn_op_add_rmsnorm_swiglu(&b->h, x, &b->y, &L->post_norm, c->rms_eps, &L->gate_w, &L->up_w);
        pn_op_matmul_add_rmsnorm(out, &b->y, &b->h, &L->down_w, &b->xn1, b->next_norm, c->rms_eps);
        b->xn1_ready = 1;
        return 0;
    }
    // MLP: out = x_mid + down(silu(gate(n2)) * up(n2)); the residual add (x_mid = x + y, in place or into a
    // kept buffer) and the MLP's norm in one pass
    pn_op_add_rmsnorm(&b->xmid, x, &b->y, &b->xn2, &L->post_norm, c->rms_eps);
    if (decoding) { // gate, up, product in one launch
        pn_op_matmul_swiglu(&b->h, &b->xn2, &L->gate_w, &L->up_w);
    } else { // training keeps gate and up for the backward
        pn_op_matmul(&b->gate, &b->xn2, &L->gate_w, NULL);
        pn_op_matmul(&b->up, &b->xn2, &L->up_w, NULL);
        pn_op_swiglu(&b->h, &b->gate, &b->up);
    }
    if (!out) return 0;
    pn_op_matmul(&b->y, &b->h, &L->down_w, NULL);
    if (b->next_norm && !m->check_finite && !m->tap) { // the next norm in the same pass (xn1 is free by now)
        pn_op_add_rmsnorm(out, &b->xmid, &b->y, b->next_xn1 ? b->next_xn1 : &b->xn1, b->next_norm, c->rms_eps);
        b->xn1_ready = 1;
    } else {
        pn_op_add(out, &b->xmid, &b->y);
    }
    if (m->check_finite) {
        const int64_t bad = pn_op_count_nonfinite(out);
        if (bad) return pn_errorf("layer %d (%s): %lld non-finite values (NaN/Inf) in its output", l, S->bt->name, (long long)bad);
    }
    if (m->tap && m->tap(m->tap_ctx, "layer_out", l, out)) return pn_error_prefix("tap after layer %d", l);
    return 0;
}

// The device's part of a forward: embeddings, layers, final norm, logits (no host work but the taps' and
// check_finite's): what a decode step's CUDA graph records.
static int forward_device(pn_model *m, pn_kvcache *kc, int B, int T, const pn_block_ctx *ctx) {
    const pn_model_config *c = &m->cfg;
    const int64_t N = (int64_t)B * T;
    pn_tensor ids = rows_of(&m->ids, N), x = rows_of(&m->x, N), xn = rows_of(&m->xn, N), tmp = rows_of(&m->tmp, N);
    pn_tensor gate = rows_of(&m->gate, N), up = rows_of(&m->up, N);
    pn_op_embedding(&x, &ids, &m->embed);
    if (m->tap && m->tap(m->tap_ctx, "embed", -1, &x)) return pn_error_prefix("tap after the embeddings");
    // Generation runs every layer in place on x with shared scratch: x_mid is x, h overwrites gate.
    pn_layer_bufs b = {.xn1 = xn, .y = tmp, .xmid = x, .xn2 = xn, .gate = gate, .up = up, .h = gate};
    for (int l = 0; l < c->n_layers; l++) {
        b.next_norm = l + 1 < c->n_layers ? &m->layers[l + 1].in_norm : &m->final_norm;
        if (pn_layer_forward(m, l, &x, &x, &b, NULL, kc->st[l], gen_scratch(m, pn_layer_mixer(&m->layers[l])->bt), ctx))
            return -1;
    }
    if (!b.xn1_ready) pn_op_rmsnorm(&xn, &x, &m->final_norm, c->rms_eps); // else the last layer wrote it
    if (m->all_logits || T == 1) { // every row is wanted, or every row is its sequence's last
        pn_tensor lg = rows_of(&m->logits, N);
        pn_op_matmul(&lg, &xn, &m->lm_head, NULL);
    } else { // only each sequence's last position (generation)
        for (int s = 0; s < B; s++) {
            pn_tensor xr = pn_rows(&xn, (int64_t)s * T + T - 1, 1), lr = pn_rows(&m->logits, s, 1);
            pn_op_matmul(&lr, &xr, &m->lm_head, NULL);
        }
    }
    return 0;
}

// A one-token step through the cache's graph: the first step of a shape runs as it is (workspaces and
// cuBLASLt's choices settle), the second is captured, and every later one replays it. 1 when the step ran
// here, 0 when the caller should run it without a graph, -1 on an error.
static int forward_graph(pn_model *m, pn_kvcache *kc, int B, const pn_block_ctx *ctx) {
    const pn_backend *be = pn_backend_get(m->device);
    if (!be->capture_begin || !m->use_graphs || kc->graph_off || m->tap || m->check_finite) return 0;
    if (kc->graph_model != m || kc->graph_epoch != m->epoch) {
        graph_drop(kc);
        kc->graph_model = m, kc->graph_epoch = m->epoch;
    }
    if (!kc->graph && !kc->graph_warm++) return 0; // the warm-up step
    if (!kc->graph) {
        if (be->capture_begin()) goto no_graph;
        const int rc = forward_device(m, kc, B, 1, ctx);
        void *g = be->capture_end();
        if (rc) {
            if (g) be->graph_free(g);
            return -1;
        }
        if (!g) goto no_graph;
        kc->graph = g;
    }
    be->graph_launch(kc->graph);
    return 1;
no_graph: // the capture failed: this cache decodes without a graph from now on
    pn_warn("decoding without a CUDA graph: %s", pn_last_error());
    kc->graph_off = 1;
    return 0;
}

int pn_model_greedy(pn_model *m, int B, int32_t *ids) {
    const pn_sample_args greedy = {0};
    return pn_model_sample(m, B, &greedy, ids);
}

int pn_model_sample(pn_model *m, int B, const pn_sample_args *a, int32_t *ids) {
    if (B < 1 || B > m->max_B) return pn_errorf("sampling: batch %d outside the planned 1..%d", B, m->max_B);
    pn_tensor z = pn_rows(&m->logits, 0, B), out = pn_rows(&m->greedy, 0, B);
    pn_op_sample(&out, &z, a); // argmax at temperature 0
    pn_backend_get(m->device)->memcpy_d2h(ids, out.data, sizeof(int32_t) * (size_t)B);
    return 0;
}

int pn_model_forward(pn_model *m, pn_kvcache *kc, const int32_t *ids_host, int B, int T) {
    const pn_model_config *c = &m->cfg;
    const int64_t N = (int64_t)B * T;
    // The plan holds max_B x max_T tokens: fewer sequences may be longer (one prefill of B max_T tokens).
    if (B < 1 || T < 1 || B > m->max_B || N > (int64_t)m->max_B * m->max_T)
        return pn_errorf("batch %d x %d does not fit the planned %d x %d", B, T, m->max_B, m->max_T);
    if (B != kc->B) return pn_errorf("batch %d does not match the KV cache's %d", B, kc->B);
    if (kc->ragged && T != 1)
        return pn_errorf("the KV cache's rows have different lengths: prefill them one at a time (pn_kvcache_row)");
    for (int s = 0; s < B; s++) {
        const int len = kc->ragged ? kc->lens[s] : kc->len;
        if (len + T > kc->cap)
            return pn_errorf("KV cache full: %d cached + %d new tokens > capacity %d%s", len, T, kc->cap,
                             kc->ragged ? " (in one of the rows)" : "");
    }
    for (int64_t i = 0; i < N; i++)
        if (ids_host[i] < 0 || ids_host[i] >= c->vocab)
            return pn_errorf("token id %d at position %lld is outside the vocabulary (size %d)", ids_host[i],
                             (long long)i, c->vocab);
    const pn_backend *be = pn_backend_get(m->device);
    be->memcpy_h2d(m->ids.data, ids_host, sizeof(int32_t) * (size_t)N);
    pn_block_ctx ctx = {.B = B, .T = T, .inv_freq = &m->inv_freq, .rms_eps = c->rms_eps, .pos0 = kc->len};
    int rc = 0;
    if (T == 1) { // decoding: the positions on the device, and the step as a graph where there is one
        int32_t *pos = pn_malloc(sizeof(int32_t) * (size_t)B);
        for (int s = 0; s < B; s++) pos[s] = kc->ragged ? kc->lens[s] : kc->len;
        be->memcpy_h2d(kc->pos.data, pos, sizeof(int32_t) * (size_t)B);
        free(pos);
        ctx.pos = &kc->pos;
        rc = forward_graph(m, kc, B, &ctx);
    }
    if (rc == 0) rc = forward_device(m, kc, B, T, &ctx);
    if (rc < 0) return -1;
    if (kc->ragged) { // each row one longer; len the longest
        int longest = 0;
        for (int s = 0; s < B; s++) {
            kc->lens[s] += T;
            if (kc->lens[s] > longest) longest = kc->lens[s];
        }
        kc->len = longest;
    } else {
        kc->len += T;
        for (int s = 0; kc->lens && s < B; s++) kc->lens[s] = kc->len;
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------------
// the supernet: candidate mixers per layer, the choice, and the export of a chosen subnet

void pn_model_sync_slots(pn_model *m) {
    for (int l = 0; l < m->cfg.n_layers; l++) {
        pn_layer *L = &m->layers[l];
        for (int s = 0; s < L->nslots; s++)
            if (L->slot[s].shares >= 0) {
                const pn_slot *o = &L->slot[L->slot[s].shares];
                memcpy(L->slot[s].bp, o->bp, sizeof o->bp);
                memcpy(L->slot[s].gbp, o->gbp, sizeof o->gbp);
            }
    }
}

static int slot_of(const pn_layer *L, const char *type) {
    for (int s = 0; s < L->nslots; s++)
        if (!strcmp(L->slot[s].bt->name, type)) return s;
    return -1;
}

// attn and swa run the same parameters (their params() lists are one list).
static int same_params(const pn_slot *a, const pn_slot *b) {
    const int ab = !strcmp(a->bt->name, "attn") || !strcmp(a->bt->name, "swa");
    const int bb = !strcmp(b->bt->name, "attn") || !strcmp(b->bt->name, "swa");
    return ab && bb && a->bt->params == b->bt->params;
}

int pn_model_add_candidates(pn_model *m, const char *const *types, double init_std, uint64_t seed) {
    const pn_model_config *c = &m->cfg;
    if (m->cand.base) return pn_errorf("candidates were added already");
    m->epoch++;
    // Pass 1: the new slots, checked, and the bytes and parameter entries they need.
    size_t bytes = 0;
    int extra = 0;
    for (int l = 0; l < c->n_layers; l++) {
        pn_layer *L = &m->layers[l];
        const char *list = types ? types[l] : NULL;
        while (list && *list) {
            const char *end = strchr(list, ',');
            const size_t n = end ? (size_t)(end - list) : strlen(list);
            char name[32];
            if (n == 0 || n >= sizeof name) return pn_errorf("candidates of layer %d: \"%.*s\" is not a block type", l, (int)n, list);
            memcpy(name, list, n);
            name[n] = 0;
            list = end ? end + 1 : NULL;
            int window = 0; // "swa=W": the window of a swa candidate
            char *eq = strchr(name, '=');
            if (eq) {
                *eq = 0;
                if (strcmp(name, "swa") || pn_parse_int("swa window", eq + 1, 1, 1 << 30, &window))
                    return pn_error_prefix("candidates of layer %d: \"%s=%s\" (only swa takes =WINDOW)", l, name, eq + 1);
            }
            if (slot_of(L, name) >= 0) continue; // already one of the layer's mixers
            const pn_block_type *bt = pn_block_find(name);
            if (!bt) return pn_error_prefix("candidates of layer %d", l);
            if (L->nslots == PN_MAX_SLOTS) return pn_errorf("layer %d: more than %d candidate mixers", l, PN_MAX_SLOTS);
            pn_slot *S = &L->slot[L->nslots];
            memset(S, 0, sizeof *S);
            S->bt = bt, S->bc = pn_block_default(c, name), S->shares = -1;
            if (c->window[l]) S->bc.window = c->window[l];
            if (window) S->bc.window = window;
            char what[80];
            snprintf(what, sizeof what, "candidate %s of layer %d", name, l);
            if (bt->check(&S->bc, what)) return -1;
            S->nbp = bt->params(&S->bc, l, NULL);
            for (int s = 0; s < L->nslots && S->shares < 0; s++)
                if (L->slot[s].shares < 0 && same_params(&L->slot[s], S)) S->shares = s;
            if (S->shares < 0) {
                pn_param ps[PN_BLOCK_MAX_PARAMS];
                bt->params(&S->bc, l, ps);
                for (int i = 0; i < S->nbp; i++) bytes += pn_arena_need(m->dtype, ps[i].ndim, ps[i].shape);
                extra += S->nbp;
            }
            L->nslots++;
        }
    }
    // Pass 2: memory, names in param_list, the published init.
    if (bytes && pn_arena_init(&m->cand, m->device, bytes)) return pn_error_prefix("candidate mixers");
    m->param_list = pn_realloc(m->param_list, sizeof(pn_param) * (size_t)(m->nparams + extra));
    for (int l = 0; l < c->n_layers; l++) {
        pn_layer *L = &m->layers[l];
        const pn_slot *base = &L->slot[0];
        const int base_attn = !strcmp(base->bt->name, "attn") || !strcmp(base->bt->name, "swa");
        for (int s = 1; s < L->nslots; s++) {
            pn_slot *S = &L->slot[s];
            if (S->shares >= 0) continue;
            pn_param ps[PN_BLOCK_MAX_PARAMS];
            S->bt->params(&S->bc, l, ps);
            for (int i = 0; i < S->nbp; i++) {
                pn_param *p = &m->param_list[m->nparams++];
                *p = ps[i];
                const char *suffix = strstr(ps[i].name, ".self_attn.") + strlen(".self_attn.");
                snprintf(p->name, sizeof p->name, "model.layers.%d.candidates.%s.%s", l, S->bt->name, suffix);
                S->bp[i] = pn_arena_tensor(&m->cand, m->dtype, ps[i].ndim, ps[i].shape);
                p->dst = &S->bp[i], p->grad = &S->gbp[i];
            }
            pn_block_init(S->bt, &S->bc, l, S->bp, base_attn ? &base->bc : NULL, base_attn ? base->bp : NULL, init_std,
                          seed);
        }
    }
    pn_model_sync_slots(m);
    return 0;
}

int pn_model_set_mixer(pn_model *m, int l, const char *type) {
    if (l < 0 || l >= m->cfg.n_layers) return pn_errorf("no layer %d (the model has %d)", l, m->cfg.n_layers);
    pn_layer *L = &m->layers[l];
    const int s = slot_of(L, type);
    if (s < 0) {
        char have[128] = "";
        for (int k = 0; k < L->nslots; k++)
            snprintf(have + strlen(have), sizeof have - strlen(have), "%s%s", k ? ", " : "", L->slot[k].bt->name);
        return pn_errorf("layer %d has no %s mixer (it has %s)", l, type, have);
    }
    if (L->active != s) m->epoch++; // a captured decode step runs the old mixer
    L->active = s;
    return 0;
}

const char *pn_model_mixer(const pn_model *m, int l) { return pn_layer_mixer_c(&m->layers[l])->bt->name; }

// The config of the model as it runs now: each layer's chosen mixer, a Jet-Nemotron hybrid unless all are
// attention (then the base family's config, windows kept).
static pn_model_config export_config(const pn_model *m) {
    pn_model_config e = m->cfg;
    int hybrid = 0;
    for (int l = 0; l < e.n_layers; l++) {
        const pn_slot *S = pn_layer_mixer_c(&m->layers[l]);
        snprintf(e.mixer[l], sizeof e.mixer[l], "%s", S->bt->name);
        e.window[l] = !strcmp(S->bt->name, "swa") ? S->bc.window : 0;
        if (strcmp(S->bt->name, "attn") && strcmp(S->bt->name, "swa")) hybrid = 1;
        if (S->bt->section && strcmp(S->bt->name, "swa")) pn_config_set_mixer(&e, &S->bc); // its section's config
    }
    if (hybrid) e.arch = PN_ARCH_JET_NEMOTRON;
    snprintf(e.torch_dtype, sizeof e.torch_dtype, "%s", m->device == PN_CPU ? "float32" : "bfloat16");
    return e;
}

static int copy_file(const char *from, const char *to) {
    size_t len;
    char *buf = pn_read_file(from, &len);
    if (!buf) return -1;
    pn_atomic_file af;
    int rc = pn_atomic_open(&af, to);
    if (!rc) {
        rc = fwrite(buf, 1, len, af.f) == len ? 0 : pn_errorf("%s: write failed", to);
        rc = rc ? (pn_atomic_abort(&af), -1) : pn_atomic_commit(&af);
    }
    free(buf);
    return rc;
}

int pn_model_export(const pn_model *m, const char *dir) {
    struct stat sb;
    if (stat(dir, &sb) == 0) return pn_errorf("%s: already exists (an export writes a new folder)", dir);
    const pn_model_config e = export_config(m);
    if (e.arch == PN_ARCH_JET_NEMOTRON && m->cfg.arch != PN_ARCH_JET_NEMOTRON && m->cfg.arch != PN_ARCH_QWEN2)
        return pn_errorf("%s: Jet-Nemotron's format is Qwen2's (q/k/v biases); a %s base with linear layers has no "
                         "export in it", dir, pn_arch_name(m->cfg.arch));
    const int n = pn_model_nparams(&e);
    pn_param *ps = pn_calloc((size_t)n, sizeof(pn_param));
    pn_model_param_list(&e, NULL, ps);
    // Each exported name's tensor: a layer's self_attn tensors are its chosen mixer's, in params() order;
    // everything else is the base model's tensor of the same name.
    const pn_tensor **src = pn_calloc((size_t)n, sizeof *src);
    for (int i = 0; i < n; i++) {
        int l, off = 0; // %n is set only when the whole pattern matched
        if (sscanf(ps[i].name, "model.layers.%d.self_attn.%n", &l, &off) == 1 && off > 0) {
            const pn_slot *S = pn_layer_mixer_c(&m->layers[l]);
            pn_param mine[PN_BLOCK_MAX_PARAMS];
            const int nb = S->bt->params(&S->bc, l, mine);
            for (int k = 0; k < nb && !src[i]; k++)
                if (!strcmp(mine[k].name, ps[i].name)) src[i] = &S->bp[k];
        } else {
            for (int k = 0; k < m->nparams && !src[i]; k++)
                if (!strcmp(m->param_list[k].name, ps[i].name)) src[i] = m->param_list[k].dst;
        }
        if (!src[i]) pn_panic("export: no tensor for %s", ps[i].name); // the export config is the model's own
    }
    char *tmp = pn_malloc(strlen(dir) + 32);
    snprintf(tmp, strlen(dir) + 32, "%s.tmp.%d", dir, (int)getpid());
    int rc = mkdir(tmp, 0777) ? pn_errorf("%s: cannot create folder: %s", tmp, strerror(errno)) : 0;
    const int made = !rc;
    const pn_st_dtype dt = m->device == PN_CPU ? PN_ST_F32 : PN_ST_BF16;
    if (!rc) {
        char *cp = pn_path_join(tmp, "config.json");
        rc = pn_hf_config_save(&e, cp);
        free(cp);
    }
    if (!rc) {
        pn_st_decl *decl = pn_calloc((size_t)n, sizeof *decl);
        size_t largest = 0;
        for (int i = 0; i < n; i++) {
            decl[i] = (pn_st_decl){.name = ps[i].name, .dtype = dt, .ndim = ps[i].ndim};
            for (int k = 0; k < ps[i].ndim; k++) decl[i].shape[k] = ps[i].shape[k];
            largest = (size_t)pn_param_numel(&ps[i]) > largest ? (size_t)pn_param_numel(&ps[i]) : largest;
        }
        static const char *meta[] = {"format", "pt", NULL};
        char *mp = pn_path_join(tmp, "model.safetensors");
        pn_st_writer *w = pn_st_writer_begin(mp, decl, n, meta);
        float *buf = pn_malloc(sizeof(float) * (largest ? largest : 1));
        uint16_t *half = pn_malloc(sizeof(uint16_t) * (largest ? largest : 1));
        rc = w ? 0 : -1;
        for (int i = 0; i < n && !rc; i++) {
            const int64_t k = pn_param_numel(&ps[i]);
            pn_op_to_host_f32(buf, src[i]);
            if (dt == PN_ST_BF16) {
                for (int64_t j = 0; j < k; j++) half[j] = pn_f32_to_bf16(buf[j]);
                rc = pn_st_writer_write(w, half, (size_t)k * 2);
            } else {
                rc = pn_st_writer_write(w, buf, (size_t)k * 4);
            }
        }
        if (w) rc = rc ? (pn_st_writer_abort(w), -1) : pn_st_writer_finish(w);
        free(buf), free(half), free(decl), free(mp);
    }
    // The tokenizer of the folder the model came from.
    static const char *tok[] = {"tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt",
                                "generation_config.json", "special_tokens_map.json"};
    for (size_t k = 0; k < sizeof tok / sizeof *tok && !rc && m->dir[0]; k++) {
        char *from = pn_path_join(m->dir, tok[k]), *to = pn_path_join(tmp, tok[k]);
        if (stat(from, &sb) == 0) rc = copy_file(from, to);
        free(from), free(to);
    }
    if (!rc && rename(tmp, dir) != 0) rc = pn_errorf("%s: cannot rename %s to it: %s", dir, tmp, strerror(errno));
    if (rc && made) {
        static const char *all[] = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                                    "vocab.json", "merges.txt", "generation_config.json", "special_tokens_map.json"};
        for (size_t k = 0; k < sizeof all / sizeof *all; k++) {
            char *p = pn_path_join(tmp, all[k]);
            unlink(p);
            free(p);
        }
        rmdir(tmp);
    }
    free(tmp), free(src), free(ps);
    return rc;
}
