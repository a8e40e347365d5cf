// pn_checkpoint: folder → config + safetensors files. A sharded index is cross-checked against the
// shards it names, so a tensor the index promises but no shard holds is reported by name.
#include "pn_checkpoint.h"

#include <jansson.h>
#include <string.h>
#include <sys/stat.h>

#include "pn_common.h"

static int is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int open_index(pn_checkpoint *ck, const char *index_path) {
    json_error_t jerr;
    json_t *root = json_load_file(index_path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) return pn_errorf("%s:%d:%d: invalid JSON: %s", index_path, jerr.line, jerr.column, jerr.text);
    int rc = -1;
    json_t *wm = json_object_get(root, "weight_map");
    if (!json_is_object(wm) || json_object_size(wm) == 0) {
        pn_errorf("%s: missing or empty \"weight_map\"", index_path);
        goto done;
    }
    // Distinct shard names, in first-seen order.
    const char **names = pn_calloc(json_object_size(wm), sizeof(char *));
    const char *k;
    json_t *v;
    json_object_foreach(wm, k, v) {
        const char *f = json_string_value(v);
        if (!f || !*f || strchr(f, '/')) {
            pn_errorf("%s: weight_map[\"%s\"] must be a file name in the same folder", index_path, k);
            free(names);
            goto done;
        }
        int seen = 0;
        for (int i = 0; i < ck->nfiles && !seen; i++) seen = !strcmp(names[i], f);
        if (!seen) names[ck->nfiles++] = f;
    }
    ck->files = pn_calloc((size_t)ck->nfiles, sizeof(pn_safetensors));
    int opened = 0;
    for (int i = 0; i < ck->nfiles; i++, opened++) {
        char *p = pn_path_join(ck->dir, names[i]);
        int r = pn_st_open(&ck->files[i], p);
        free(p);
        if (r) break;
    }
    free(names);
    if (opened < ck->nfiles) {
        ck->nfiles = opened;
        goto done;
    }
    json_object_foreach(wm, k, v) {
        const pn_safetensors *f = NULL;
        if (!pn_ckpt_find(ck, k, &f) || strcmp(strrchr(f->path, '/') + 1, json_string_value(v)) != 0) {
            pn_errorf("%s: weight_map puts '%s' in %s, but that file does not hold it", index_path, k, json_string_value(v));
            goto done;
        }
    }
    rc = 0;
done:
    json_decref(root);
    return rc;
}

int pn_ckpt_open(pn_checkpoint *ck, const char *dir) {
    memset(ck, 0, sizeof *ck);
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) return pn_errorf("%s: no such checkpoint folder", dir);
    ck->dir = pn_strdup(dir);
    char *cfg = pn_path_join(dir, "config.json");
    int r = pn_hf_config_load(&ck->cfg, cfg);
    free(cfg);
    if (r) goto fail;
    char *single = pn_path_join(dir, "model.safetensors"), *index = pn_path_join(dir, "model.safetensors.index.json");
    if (is_file(single)) {
        ck->nfiles = 1;
        ck->files = pn_calloc(1, sizeof(pn_safetensors));
        r = pn_st_open(&ck->files[0], single);
        if (r) ck->nfiles = 0;
    } else if (is_file(index)) {
        r = open_index(ck, index);
    } else {
        r = pn_errorf("%s: no model.safetensors or model.safetensors.index.json in the folder", dir);
    }
    free(single);
    free(index);
    if (r) goto fail;
    return 0;
fail:
    pn_ckpt_close(ck);
    return -1;
}

void pn_ckpt_close(pn_checkpoint *ck) {
    for (int i = 0; i < ck->nfiles; i++) pn_st_close(&ck->files[i]);
    free(ck->files);
    free(ck->dir);
    memset(ck, 0, sizeof *ck);
}

const pn_st_entry *pn_ckpt_find(const pn_checkpoint *ck, const char *name, const pn_safetensors **file) {
    for (int i = 0; i < ck->nfiles; i++) {
        const pn_st_entry *e = pn_st_find(&ck->files[i], name);
        if (e) {
            if (file) *file = &ck->files[i];
            return e;
        }
    }
    return NULL;
}
