// The block registry: one line per type. A new linear block is one file in src/blocks/ plus a line here.
#include <stdlib.h>
#include <string.h>

#include "../pn_block.h"
#include "../pn_common.h"

extern const pn_block_type pn_block_attn, pn_block_swa, pn_block_jet, pn_block_gdn, pn_block_deltanet, pn_block_shortconv;

static const pn_block_type *const registry[] = {&pn_block_attn, &pn_block_swa, &pn_block_jet, &pn_block_gdn,
                                                &pn_block_deltanet, &pn_block_shortconv};

#define N_TYPES (sizeof registry / sizeof registry[0])

const pn_block_type *pn_block_find(const char *name) {
    char known[128] = "";
    for (size_t i = 0; i < N_TYPES; i++) {
        if (!strcmp(registry[i]->name, name)) return registry[i];
        snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "", registry[i]->name);
    }
    pn_errorf("unknown block type \"%s\" (%s)", name, known);
    return NULL;
}

int pn_block_count(void) { return (int)N_TYPES; }
const pn_block_type *pn_block_at(int i) { return i >= 0 && i < (int)N_TYPES ? registry[i] : NULL; }

pn_block_cfg pn_block_default(const pn_model_config *m, const char *type) {
    pn_block_cfg c = {.hidden = m->hidden, .n_heads = m->n_heads, .n_kv_heads = m->n_kv_heads,
                      .head_dim = m->head_dim, .qkv_bias = m->qkv_bias, .o_bias = m->o_bias, .qk_norm = m->qk_norm, .window = 1152,
                      .lin_heads = m->n_heads, .lin_head_k = m->head_dim * 3 / 4, .expand_v = 2.6667,
                      .conv_size = 4, .gen_reduction = 8, .norm_eps = 1e-5f};
    for (int l = 0; l < m->n_layers; l++)
        if (m->window[l]) c.window = m->window[l];
    snprintf(c.type, sizeof c.type, "%s", type);
    // A config that gave this type's section (efficient_attention_config) decides; a linear type without one
    // takes the JetBlock's shape when the config has one (a supernet's other linear candidates match it).
    const pn_block_cfg *own = pn_config_mixer(m, type), *jet = pn_config_mixer(m, "jet");
    if (own) {
        const int window = c.window; // the layers' window (what a swa path of this model uses)
        c = *own;
        if (strcmp(type, "swa")) c.window = window;
        return c;
    }
    if (jet && strcmp(type, "attn") && strcmp(type, "swa")) {
        c.lin_heads = jet->lin_heads, c.lin_head_k = jet->lin_head_k, c.expand_v = jet->expand_v;
        c.conv_size = jet->conv_size, c.gen_reduction = jet->gen_reduction, c.norm_eps = jet->norm_eps;
    }
    return c;
}

int64_t pn_block_param_count(const pn_block_type *t, const pn_block_cfg *c) {
    const int n = t->params(c, 0, NULL);
    pn_param *ps = pn_calloc((size_t)n, sizeof(pn_param));
    t->params(c, 0, ps);
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += pn_param_numel(&ps[i]);
    free(ps);
    return total;
}

void pn_block_add_param(pn_param *out, int *n, int layer, const char *suffix, pn_param_kind kind, int ndim, int64_t d0,
                        int64_t d1, int64_t d2) {
    if (out) {
        pn_param *p = &out[*n];
        memset(p, 0, sizeof *p);
        snprintf(p->name, sizeof p->name, "model.layers.%d.self_attn.%s", layer, suffix);
        p->kind = kind;
        p->ndim = ndim;
        p->shape[0] = d0, p->shape[1] = d1, p->shape[2] = d2;
    }
    (*n)++;
}

int pn_block_init(const pn_block_type *bt, const pn_block_cfg *c, int layer, pn_tensor *p,
                  const pn_block_cfg *attn_cfg, const pn_tensor *attn, double std, uint64_t seed) {
    pn_param mine[PN_BLOCK_MAX_PARAMS], theirs[PN_BLOCK_MAX_PARAMS];
    const int n = bt->params(c, layer, mine);
    const int na = attn ? pn_block_find("attn")->params(attn_cfg, layer, theirs) : 0;
    int copied = 0;
    for (int i = 0; i < n; i++) {
        const int64_t numel = pn_param_numel(&mine[i]);
        int src = -1;
        for (int j = 0; j < na && src < 0; j++)
            if (!strcmp(mine[i].name, theirs[j].name) && mine[i].ndim == theirs[j].ndim &&
                !memcmp(mine[i].shape, theirs[j].shape, sizeof(int64_t) * (size_t)mine[i].ndim))
                src = j;
        float *h = pn_malloc(sizeof(float) * (size_t)(numel ? numel : 1));
        if (src >= 0) {
            pn_op_to_host_f32(h, &attn[src]);
            copied++;
        } else {
            const uint64_t stream = ((uint64_t)layer << 8) + (uint64_t)i + 1;
            for (int64_t j = 0; j < numel; j++) h[j] = pn_param_init_value(&mine[i], std, seed, stream, (uint64_t)j);
        }
        pn_op_from_host_f32(&p[i], h);
        free(h);
    }
    return copied;
}
