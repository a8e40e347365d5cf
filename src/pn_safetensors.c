// pn_safetensors: reader (mmap + full validation) and streaming writer.
#include "pn_safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pn_common.h"

#define PN_ST_MAX_HEADER (100u * 1000u * 1000u)

static const struct {
    const char *name;
    size_t size;
} st_dtypes[PN_ST_NDTYPES] = {
    [PN_ST_BOOL] = {"BOOL", 1}, [PN_ST_U8] = {"U8", 1},   [PN_ST_I8] = {"I8", 1},
    [PN_ST_F8_E5M2] = {"F8_E5M2", 1}, [PN_ST_F8_E4M3] = {"F8_E4M3", 1}, [PN_ST_I16] = {"I16", 2},
    [PN_ST_U16] = {"U16", 2}, [PN_ST_F16] = {"F16", 2}, [PN_ST_BF16] = {"BF16", 2},
    [PN_ST_I32] = {"I32", 4}, [PN_ST_U32] = {"U32", 4}, [PN_ST_F32] = {"F32", 4},
    [PN_ST_F64] = {"F64", 8}, [PN_ST_I64] = {"I64", 8}, [PN_ST_U64] = {"U64", 8},
};

const char *pn_st_dtype_name(pn_st_dtype dt) { return dt < PN_ST_NDTYPES ? st_dtypes[dt].name : "?"; }
size_t pn_st_dtype_size(pn_st_dtype dt) { return dt < PN_ST_NDTYPES ? st_dtypes[dt].size : 0; }

int pn_st_dtype_parse(const char *s, pn_st_dtype *out) {
    for (int i = 0; i < PN_ST_NDTYPES; i++)
        if (!strcmp(s, st_dtypes[i].name)) {
            *out = (pn_st_dtype)i;
            return 0;
        }
    return -1;
}

int64_t pn_st_numel(const pn_st_entry *e) {
    int64_t n = 1;
    for (int i = 0; i < e->ndim; i++) n *= e->shape[i];
    return n;
}

static int cmp_range(const void *a, const void *b) {
    const pn_st_entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

// Parse one header entry; `name` is the JSON key.
static int parse_entry(const char *path, const char *name, json_t *v, pn_st_entry *e) {
    if (!json_is_object(v)) return pn_errorf("%s: tensor '%s': header entry is not an object", path, name);
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"), *jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd)) return pn_errorf("%s: tensor '%s': missing or non-string \"dtype\"", path, name);
    if (pn_st_dtype_parse(json_string_value(jd), &e->dtype))
        return pn_errorf("%s: tensor '%s': unknown dtype \"%s\"", path, name, json_string_value(jd));
    if (!json_is_array(js)) return pn_errorf("%s: tensor '%s': missing or non-array \"shape\"", path, name);
    if (json_array_size(js) > PN_ST_MAX_DIMS)
        return pn_errorf("%s: tensor '%s': %zu dimensions (at most %d supported)", path, name, json_array_size(js),
                         PN_ST_MAX_DIMS);
    e->ndim = (int)json_array_size(js);
    // numel * size must not overflow: cap every product at 2^62 bytes.
    uint64_t bytes = pn_st_dtype_size(e->dtype);
    for (int i = 0; i < e->ndim; i++) {
        json_t *d = json_array_get(js, (size_t)i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return pn_errorf("%s: tensor '%s': shape[%d] is not a non-negative integer", path, name, i);
        e->shape[i] = json_integer_value(d);
        if (e->shape[i] && bytes > (UINT64_C(1) << 62) / (uint64_t)e->shape[i])
            return pn_errorf("%s: tensor '%s': shape is impossibly large", path, name);
        bytes *= (uint64_t)e->shape[i];
    }
    if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_is_integer(json_array_get(jo, 0)) ||
        !json_is_integer(json_array_get(jo, 1)))
        return pn_errorf("%s: tensor '%s': \"data_offsets\" must be [begin, end]", path, name);
    json_int_t b = json_integer_value(json_array_get(jo, 0)), en = json_integer_value(json_array_get(jo, 1));
    if (b < 0 || en < b) return pn_errorf("%s: tensor '%s': bad data_offsets [%lld, %lld]", path, name, (long long)b, (long long)en);
    e->begin = (uint64_t)b;
    e->end = (uint64_t)en;
    if (e->end - e->begin != bytes)
        return pn_errorf("%s: tensor '%s': data_offsets span %llu bytes but %s%s needs %llu", path, name,
                         (unsigned long long)(e->end - e->begin), pn_st_dtype_name(e->dtype),
                         e->ndim ? " of that shape" : " scalar", (unsigned long long)bytes);
    e->name = pn_strdup(name);
    return 0;
}

static int parse_metadata(pn_safetensors *st, json_t *v) {
    if (!json_is_object(v)) return pn_errorf("%s: \"__metadata__\" is not an object", st->path);
    size_t n = json_object_size(v);
    st->meta_keys = pn_calloc(n, sizeof(char *));
    st->meta_vals = pn_calloc(n, sizeof(char *));
    const char *k;
    json_t *x;
    json_object_foreach(v, k, x) {
        if (!json_is_string(x)) return pn_errorf("%s: __metadata__ value for '%s' is not a string", st->path, k);
        st->meta_keys[st->nmeta] = pn_strdup(k);
        st->meta_vals[st->nmeta++] = pn_strdup(json_string_value(x));
    }
    return 0;
}

int pn_st_open(pn_safetensors *st, const char *path) {
    memset(st, 0, sizeof *st);
    st->path = pn_strdup(path);
    int fd = pn_open_regular(path); // a FIFO fails here instead of blocking in open()
    if (fd < 0) goto fail;
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        pn_errorf("%s: cannot stat: %s", path, strerror(errno));
        goto fail;
    }
    size_t len = (size_t)sb.st_size;
    if (len < 8) {
        close(fd);
        pn_errorf("%s: truncated: %zu bytes, shorter than the 8-byte header length", path, len);
        goto fail;
    }
    st->map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (st->map == MAP_FAILED) {
        st->map = NULL;
        pn_errorf("%s: mmap failed: %s", path, strerror(errno));
        goto fail;
    }
    st->map_len = len;
    const unsigned char *p = st->map;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | p[i];
    if (hlen > PN_ST_MAX_HEADER) {
        pn_errorf("%s: header length %llu exceeds the 100 MB limit (not a safetensors file?)", path,
                  (unsigned long long)hlen);
        goto fail;
    }
    if (8 + hlen > len) {
        pn_errorf("%s: header length %llu runs past the end of the file (%zu bytes): truncated?", path,
                  (unsigned long long)hlen, len);
        goto fail;
    }
    if (hlen < 2 || p[8] != '{') {
        pn_errorf("%s: header does not start with '{' (not a safetensors file?)", path);
        goto fail;
    }
    json_error_t jerr;
    json_t *root = json_loadb((const char *)p + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        pn_errorf("%s: header is not valid JSON: %s (header column %d)", path, jerr.text, jerr.column);
        goto fail;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        pn_errorf("%s: header is not a JSON object", path);
        goto fail;
    }
    st->entries = pn_calloc(json_object_size(root), sizeof(pn_st_entry));
    const char *key;
    json_t *val;
    int bad = 0;
    json_object_foreach(root, key, val) {
        if (!strcmp(key, "__metadata__")) {
            if (parse_metadata(st, val)) bad = 1;
        } else if (parse_entry(path, key, val, &st->entries[st->n]) == 0) {
            st->n++;
        } else {
            bad = 1;
        }
        if (bad) break;
    }
    json_decref(root);
    if (bad) goto fail;

    // Byte ranges must tile the data buffer exactly: sorted by offset, each begins where the last ended.
    const uint64_t buf_len = len - 8 - hlen;
    qsort(st->entries, (size_t)st->n, sizeof(pn_st_entry), cmp_range);
    uint64_t at = 0;
    for (int i = 0; i < st->n; i++) {
        pn_st_entry *e = &st->entries[i];
        if (e->begin < at) {
            pn_errorf("%s: tensor '%s' (bytes %llu..%llu) overlaps the previous tensor (ends at %llu)", path,
                      e->name, (unsigned long long)e->begin, (unsigned long long)e->end, (unsigned long long)at);
            goto fail;
        }
        if (e->begin > at) {
            pn_errorf("%s: bytes %llu..%llu of the data buffer belong to no tensor (before '%s')", path,
                      (unsigned long long)at, (unsigned long long)e->begin, e->name);
            goto fail;
        }
        if (e->end > buf_len) {
            pn_errorf("%s: tensor '%s' ends at byte %llu but the data buffer has %llu bytes: truncated?", path,
                      e->name, (unsigned long long)e->end, (unsigned long long)buf_len);
            goto fail;
        }
        e->data = p + 8 + hlen + e->begin;
        at = e->end;
    }
    if (at != buf_len) {
        pn_errorf("%s: data buffer has %llu bytes but the tensors cover %llu", path, (unsigned long long)buf_len,
                  (unsigned long long)at);
        goto fail;
    }
    return 0;
fail:
    pn_st_close(st);
    return -1;
}

void pn_st_close(pn_safetensors *st) {
    if (st->map) munmap(st->map, st->map_len);
    for (int i = 0; i < st->n; i++) free(st->entries[i].name);
    for (int i = 0; i < st->nmeta; i++) {
        free(st->meta_keys[i]);
        free(st->meta_vals[i]);
    }
    free(st->entries);
    free(st->meta_keys);
    free(st->meta_vals);
    free(st->path);
    memset(st, 0, sizeof *st);
}

const pn_st_entry *pn_st_find(const pn_safetensors *st, const char *name) {
    for (int i = 0; i < st->n; i++)
        if (!strcmp(st->entries[i].name, name)) return &st->entries[i];
    return NULL;
}

const char *pn_st_meta(const pn_safetensors *st, const char *key) {
    for (int i = 0; i < st->nmeta; i++)
        if (!strcmp(st->meta_keys[i], key)) return st->meta_vals[i];
    return NULL;
}

int pn_st_to_f32(const pn_safetensors *st, const pn_st_entry *e, float *dst) {
    const int64_t n = pn_st_numel(e);
    const unsigned char *s = e->data;
    // memcpy per element: the mapping gives no alignment guarantee for odd header lengths.
    switch (e->dtype) {
    case PN_ST_F32:
        memcpy(dst, s, (size_t)n * 4);
        return 0;
    case PN_ST_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = pn_bf16_to_f32(h);
        }
        return 0;
    case PN_ST_F16:
        for (int64_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, s + 2 * i, 2);
            dst[i] = pn_f16_to_f32(h);
        }
        return 0;
    case PN_ST_F64:
        for (int64_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, s + 8 * i, 8);
            dst[i] = (float)d;
        }
        return 0;
    default:
        return pn_errorf("%s: tensor '%s' has dtype %s, expected a floating-point dtype", st->path, e->name,
                         pn_st_dtype_name(e->dtype));
    }
}

struct pn_st_writer {
    pn_atomic_file af;
    uint64_t expected, written;
};

pn_st_writer *pn_st_writer_begin(const char *path, const pn_st_decl *decl, int n, const char *const *meta) {
    json_t *root = json_object();
    if (meta && meta[0]) {
        json_t *m = json_object();
        for (int i = 0; meta[i] && meta[i + 1]; i += 2) json_object_set_new(m, meta[i], json_string(meta[i + 1]));
        json_object_set_new(root, "__metadata__", m);
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        uint64_t bytes = pn_st_dtype_size(decl[i].dtype);
        json_t *shape = json_array();
        for (int d = 0; d < decl[i].ndim; d++) {
            bytes *= (uint64_t)decl[i].shape[d];
            json_array_append_new(shape, json_integer(decl[i].shape[d]));
        }
        json_t *e = json_object();
        json_object_set_new(e, "dtype", json_string(pn_st_dtype_name(decl[i].dtype)));
        json_object_set_new(e, "shape", shape);
        json_object_set_new(e, "data_offsets", json_pack("[II]", (json_int_t)off, (json_int_t)(off + bytes)));
        if (json_object_get(root, decl[i].name)) {
            json_decref(e);
            json_decref(root);
            pn_errorf("%s: duplicate tensor name '%s'", path, decl[i].name);
            return NULL;
        }
        json_object_set_new(root, decl[i].name, e);
        off += bytes;
    }
    char *hdr = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    size_t hlen = strlen(hdr), padded = (hlen + 7) / 8 * 8;
    pn_st_writer *w = pn_calloc(1, sizeof *w);
    if (pn_atomic_open(&w->af, path)) {
        free(hdr);
        free(w);
        return NULL;
    }
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    fwrite(len8, 1, 8, w->af.f);
    fwrite(hdr, 1, hlen, w->af.f);
    for (size_t i = hlen; i < padded; i++) fputc(' ', w->af.f);
    free(hdr);
    w->expected = off;
    return w;
}

int pn_st_writer_write(pn_st_writer *w, const void *data, size_t bytes) {
    if (w->written + bytes > w->expected)
        return pn_errorf("%s: writing past the declared tensors (%llu + %zu > %llu bytes)", w->af.path,
                         (unsigned long long)w->written, bytes, (unsigned long long)w->expected);
    if (fwrite(data, 1, bytes, w->af.f) != bytes) return pn_errorf("%s: write failed: %s", w->af.path, strerror(errno));
    w->written += bytes;
    return 0;
}

int pn_st_writer_finish(pn_st_writer *w) {
    int rc;
    if (w->written != w->expected) {
        rc = pn_errorf("%s: only %llu of %llu data bytes were written", w->af.path, (unsigned long long)w->written,
                       (unsigned long long)w->expected);
        pn_atomic_abort(&w->af);
    } else {
        rc = pn_atomic_commit(&w->af);
    }
    free(w);
    return rc;
}

void pn_st_writer_abort(pn_st_writer *w) {
    pn_atomic_abort(&w->af);
    free(w);
}
