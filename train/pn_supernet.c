// pn_supernet: supernet checkpoints (pn_supernet.h).
#include "pn_supernet.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../src/pn_cfg.h"
#include "../src/pn_common.h"
#include "../src/pn_safetensors.h"
#include "pn_trainer.h"

int pn_supernet_parse(const char *list, const char *what, pn_supernet_info *info) {
    memset(info, 0, sizeof *info);
    const int n = pn_cfg_list_count(list);
    if (n > PN_SUPERNET_MAX_CANDS) return pn_errorf("%s: %d candidates, at most %d", what, n, PN_SUPERNET_MAX_CANDS);
    for (int i = 0; i < n; i++) {
        char *spec = info->cands[i], *name = info->names[i];
        if (pn_cfg_list_item(list, i, spec, sizeof info->cands[i]) || !spec[0])
            return pn_errorf("%s: candidate %d is empty or longer than %zu characters", what, i, sizeof info->cands[i] - 1);
        snprintf(name, sizeof info->names[i], "%s", spec);
        char *eq = strchr(name, '=');
        if (eq) *eq = 0;
        if (!strcmp(name, "attn")) return pn_errorf("%s: attn is every layer's own (the teacher's) already", what);
        for (int j = 0; j < i; j++)
            if (!strcmp(info->names[j], name)) return pn_errorf("%s names %s twice", what, name);
        info->linear[i] = strcmp(name, "swa") != 0;
        info->n_cands++;
    }
    return 0;
}

static int is_candidate(const pn_param *p) { return strstr(p->name, ".candidates.") && pn_numel(p->dst); }

int pn_supernet_save(const pn_model *m, const char *dir) {
    char *path = pn_path_join(dir, "supernet.safetensors");
    int n = 0;
    int64_t largest = 1;
    for (int i = 0; i < m->nparams; i++)
        if (is_candidate(&m->param_list[i])) {
            n++;
            if (pn_numel(m->param_list[i].dst) > largest) largest = pn_numel(m->param_list[i].dst);
        }
    pn_st_decl *d = pn_calloc((size_t)(n ? n : 1), sizeof *d);
    for (int i = 0, j = 0; i < m->nparams; i++) {
        const pn_param *p = &m->param_list[i];
        if (!is_candidate(p)) continue;
        d[j] = (pn_st_decl){.name = p->name, .dtype = PN_ST_F32, .ndim = p->ndim};
        for (int k = 0; k < p->ndim; k++) d[j].shape[k] = p->shape[k];
        j++;
    }
    static const char *meta[] = {"format", "postnas-supernet", NULL};
    float *buf = pn_malloc(sizeof(float) * (size_t)largest);
    pn_st_writer *w = pn_st_writer_begin(path, d, n, meta);
    int rc = w ? 0 : -1;
    for (int i = 0; i < m->nparams && !rc; i++) {
        const pn_param *p = &m->param_list[i];
        if (!is_candidate(p)) continue;
        pn_op_to_host_f32(buf, p->dst); // fp32 on disk: the CPU's values exactly, CUDA's bf16 widened
        rc = pn_st_writer_write(w, buf, sizeof(float) * (size_t)pn_numel(p->dst));
    }
    if (w && rc) pn_st_writer_abort(w);
    else if (w) rc = pn_st_writer_finish(w);
    free(d), free(buf), free(path);
    return rc;
}

int pn_supernet_load(pn_model *m, const char *dir) {
    char *path = pn_path_join(dir, "supernet.safetensors");
    pn_safetensors st;
    if (pn_st_open(&st, path)) {
        free(path);
        return -1;
    }
    int rc = 0, n = 0;
    for (int i = 0; i < m->nparams && !rc; i++) {
        const pn_param *p = &m->param_list[i];
        if (!is_candidate(p)) continue;
        n++;
        const pn_st_entry *e = pn_st_find(&st, p->name);
        if (!e) rc = pn_errorf("%s: tensor '%s' is missing (a supernet of other candidates?)", path, p->name);
        else if (pn_st_numel(e) != pn_numel(p->dst))
            rc = pn_errorf("%s: tensor '%s' has %lld elements, the supernet's has %lld", path, p->name,
                           (long long)pn_st_numel(e), (long long)pn_numel(p->dst));
        else {
            float *buf = pn_malloc(sizeof(float) * (size_t)pn_numel(p->dst));
            if (!(rc = pn_st_to_f32(&st, e, buf))) pn_op_from_host_f32(p->dst, buf);
            free(buf);
        }
    }
    if (!rc && st.n != n)
        rc = pn_errorf("%s: %d tensors, the supernet has %d (a supernet of other candidates?)", path, st.n, n);
    pn_st_close(&st);
    free(path);
    if (!rc) pn_model_sync_slots(m);
    return rc;
}

int pn_supernet_open(pn_model *m, const char *dir, pn_device dev, pn_supernet_info *info) {
    char *cp = pn_path_join(dir, "config.yaml"), *sp = pn_path_join(dir, "supernet.safetensors");
    struct stat sb;
    int rc = 0;
    if (stat(sp, &sb) || stat(cp, &sb))
        rc = pn_errorf("%s: not a supernet checkpoint (no supernet.safetensors and config.yaml: postnas-train's "
                       "train.stage supernet writes them)", dir);
    pn_train_cfg *c = pn_calloc(1, sizeof *c);
    if (!rc && pn_cfg_load(pn_train_schema, pn_train_schema_n, c, cp, NULL, 0)) rc = pn_error_prefix("%s", dir);
    if (!rc && strcmp(c->stage, "supernet"))
        rc = pn_errorf("%s: written by train.stage %s, not supernet", cp, c->stage);
    if (!rc) rc = pn_supernet_parse(c->candidates, cp, info);
    free(c), free(cp), free(sp);
    if (rc) return rc;
    if (pn_model_load(m, dir, dev)) return -1;
    for (int l = 0; l < m->cfg.n_layers && !rc; l++)
        if (strcmp(m->layers[l].slot[0].bt->name, "attn"))
            rc = pn_errorf("%s: layer %d is %s; a supernet's teacher has full attention in every layer", dir, l,
                           m->layers[l].slot[0].bt->name);
    size_t len = 1;
    for (int i = 0; i < info->n_cands; i++) len += strlen(info->cands[i]) + 1;
    char *all = pn_malloc(len);
    all[0] = 0;
    for (int i = 0; i < info->n_cands; i++) strcat(strcat(all, i ? "," : ""), info->cands[i]);
    const char **types = pn_calloc((size_t)m->cfg.n_layers, sizeof(char *));
    for (int l = 0; l < m->cfg.n_layers; l++) types[l] = all;
    if (!rc && pn_model_add_candidates(m, types, 0.02, 0)) rc = pn_error_prefix("%s: the candidates", dir);
    free(types), free(all);
    if (!rc) rc = pn_supernet_load(m, dir);
    if (rc) pn_model_free(m);
    return rc;
}
