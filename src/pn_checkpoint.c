// pn_checkpoint: folder → config + safetensors files. A sharded index is cross-checked against the
// shards it names, so a tensor the index promises but no shard holds is reported by name.
#include "pn_checkpoint.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pn_common.h"

static int is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

// A weight_map value must name a file in the checkpoint folder itself.
static int shard_name_ok(const char *f) {
    return f && *f && !strchr(f, '/') && strcmp(f, ".") != 0 && strcmp(f, "..") != 0;
}

// Every weight_map value is checked before anything is opened; ck->nfiles only ever counts files that
// pn_st_open succeeded on, so an error path closes exactly what was opened.
static int open_index(pn_checkpoint *ck, const char *index_path) {
    size_t len;
    char *text = pn_read_file(index_path, &len); // regular files only: a FIFO is an error, not a hang
    if (!text) return -1;
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    free(text);
    if (!root) return pn_errorf("%s:%d:%d: invalid JSON: %s", index_path, jerr.line, jerr.column, jerr.text);
    int rc = -1;
    const char **names = NULL;
    json_t *wm = json_is_object(root) ? json_object_get(root, "weight_map") : NULL;
    if (!json_is_object(wm) || json_object_size(wm) == 0) {
        pn_errorf("%s: missing or empty \"weight_map\"", index_path);
        goto done;
    }
    // Distinct shard names, in first-seen order.
    names = pn_calloc(json_object_size(wm), sizeof(char *));
    int nnames = 0;
    const char *k;
    json_t *v;
    json_object_foreach(wm, k, v) {
        const char *f = json_string_value(v);
        if (!shard_name_ok(f)) {
            pn_errorf("%s: weight_map[\"%s\"] must be a file name in the same folder", index_path, k);
            goto done;
        }
        int seen = 0;
        for (int i = 0; i < nnames && !seen; i++) seen = !strcmp(names[i], f);
        if (!seen) names[nnames++] = f;
    }
    ck->files = pn_calloc((size_t)nnames, sizeof(pn_safetensors));
    for (int i = 0; i < nnames; i++) {
        char *p = pn_path_join(ck->dir, names[i]);
        int r = pn_st_open(&ck->files[i], p);
        free(p);
        if (r) goto done; // pn_st_open cleaned up after itself
        ck->nfiles++;
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
    free(names);
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
        ck->files = pn_calloc(1, sizeof(pn_safetensors));
        r = pn_st_open(&ck->files[0], single);
        if (!r) ck->nfiles = 1;
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
