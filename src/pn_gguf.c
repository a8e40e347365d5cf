// pn_gguf: GGUF reader (see pn_gguf.h). Every read goes through a cursor that knows how many bytes
// remain, so a length or count from the file is compared with the file before it is used.
#include "pn_gguf.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pn_common.h"

typedef struct {
    const uint8_t *p, *end, *base;
    const char *path;
} cursor;

static int need(cursor *c, uint64_t n, const char *what) {
    if ((uint64_t)(c->end - c->p) < n)
        return pn_errorf("%s: truncated: %s needs %llu bytes at offset %llu, the file has %llu left", c->path, what,
                         (unsigned long long)n, (unsigned long long)(c->p - c->base),
                         (unsigned long long)(c->end - c->p));
    return 0;
}

static uint32_t rd_u32(cursor *c) {
    uint32_t v;
    memcpy(&v, c->p, 4);
    c->p += 4;
    return v;
}

static uint64_t rd_u64(cursor *c) {
    uint64_t v;
    memcpy(&v, c->p, 8);
    c->p += 8;
    return v;
}

// A gguf_string: u64 length + bytes (no NUL). *s points into the mapping.
static int rd_str(cursor *c, const char **s, uint64_t *len, const char *what) {
    if (need(c, 8, what)) return -1;
    uint64_t n = rd_u64(c);
    if (need(c, n, what)) return -1;
    *s = (const char *)c->p, *len = n;
    c->p += n;
    return 0;
}

static const size_t VSIZE[PN_GGUF_NTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
static const char *VNAME[PN_GGUF_NTYPES] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array",
                                            "u64", "i64", "f64"};

// ggml types: name, elements per block, bytes per block (0 = a type this reader does not dequantize).
typedef struct {
    const char *name;
    int blck, bytes;
} ggml_info;
static const ggml_info GGML[] = {
    [0] = {"F32", 1, 4},     [1] = {"F16", 1, 2},     [2] = {"Q4_0", 32, 18},  [3] = {"Q4_1", 32, 20},
    [4] = {"Q4_2", 0, 0},    [5] = {"Q4_3", 0, 0},    [6] = {"Q5_0", 0, 0},    [7] = {"Q5_1", 0, 0},
    [8] = {"Q8_0", 32, 34},  [9] = {"Q8_1", 0, 0},    [10] = {"Q2_K", 0, 0},   [11] = {"Q3_K", 0, 0},
    [12] = {"Q4_K", 0, 0},   [13] = {"Q5_K", 0, 0},   [14] = {"Q6_K", 0, 0},   [15] = {"Q8_K", 0, 0},
    [16] = {"IQ2_XXS", 0, 0}, [17] = {"IQ2_XS", 0, 0}, [18] = {"IQ3_XXS", 0, 0}, [19] = {"IQ1_S", 0, 0},
    [20] = {"IQ4_NL", 0, 0}, [21] = {"IQ3_S", 0, 0},  [22] = {"IQ2_S", 0, 0},  [23] = {"IQ4_XS", 0, 0},
    [24] = {"I8", 0, 0},     [25] = {"I16", 0, 0},    [26] = {"I32", 0, 0},    [27] = {"I64", 0, 0},
    [28] = {"F64", 0, 0},    [29] = {"IQ1_M", 0, 0},  [30] = {"BF16", 1, 2},   [34] = {"TQ1_0", 0, 0},
    [35] = {"TQ2_0", 0, 0},  [39] = {"MXFP4", 0, 0},
};
#define N_GGML ((uint32_t)(sizeof GGML / sizeof GGML[0]))

const char *pn_ggml_type_name(uint32_t t) { return t < N_GGML && GGML[t].name ? GGML[t].name : "unknown"; }

// Skips one value of type `type` (arrays: elem type + count + values), recording string offsets.
static int skip_value(cursor *c, pn_gguf_kv *kv, uint32_t type, const char *key) {
    if (type >= PN_GGUF_NTYPES) return pn_errorf("%s: metadata \"%s\" has an unknown value type %u", c->path, key, type);
    if (type == PN_GGUF_STRING) {
        const char *s;
        uint64_t n;
        return rd_str(c, &s, &n, key);
    }
    if (type != PN_GGUF_ARRAY) {
        if (need(c, VSIZE[type], key)) return -1;
        c->p += VSIZE[type];
        return 0;
    }
    if (need(c, 12, key)) return -1;
    kv->arr_type = rd_u32(c);
    kv->arr_n = rd_u64(c);
    kv->val = c->p;
    if (kv->arr_type >= PN_GGUF_NTYPES) return pn_errorf("%s: metadata \"%s\": unknown array element type %u", c->path, key, kv->arr_type);
    if (kv->arr_type == PN_GGUF_ARRAY) return pn_errorf("%s: metadata \"%s\": nested arrays are not supported", c->path, key);
    if (kv->arr_type != PN_GGUF_STRING) {
        if (kv->arr_n > (uint64_t)(c->end - c->p) / VSIZE[kv->arr_type])
            return pn_errorf("%s: metadata \"%s\": %llu array elements do not fit in the file", c->path, key,
                             (unsigned long long)kv->arr_n);
        c->p += kv->arr_n * VSIZE[kv->arr_type];
        return 0;
    }
    // Strings: each at least 8 bytes, so the count is bounded by the bytes left before anything is allocated.
    if (kv->arr_n > (uint64_t)(c->end - c->p) / 8)
        return pn_errorf("%s: metadata \"%s\": %llu strings do not fit in the file", c->path, key, (unsigned long long)kv->arr_n);
    kv->str_off = pn_malloc(sizeof(uint64_t) * (kv->arr_n ? kv->arr_n : 1));
    for (uint64_t i = 0; i < kv->arr_n; i++) {
        const char *s;
        uint64_t n;
        kv->str_off[i] = (uint64_t)(c->p - kv->val);
        if (rd_str(c, &s, &n, key)) return -1;
    }
    return 0;
}

static int parse(pn_gguf *g) {
    cursor c = {g->map, g->map + g->len, g->map, g->path};
    if (need(&c, 24, "the header")) return -1;
    if (memcmp(c.p, "GGUF", 4)) return pn_errorf("%s: not a GGUF file (bad magic)", g->path);
    c.p += 4;
    g->version = rd_u32(&c);
    if (g->version != 2 && g->version != 3)
        return pn_errorf("%s: GGUF version %u is not supported (2 and 3 are)", g->path, g->version);
    uint64_t nt = rd_u64(&c), nk = rd_u64(&c);
    // Each metadata entry takes at least 12 bytes and each tensor info at least 28: bound the counts.
    if (nk > g->len / 12 || nt > g->len / 28)
        return pn_errorf("%s: %llu metadata entries / %llu tensors cannot fit in a file of %zu bytes", g->path,
                         (unsigned long long)nk, (unsigned long long)nt, g->len);
    g->kv = pn_calloc(nk ? nk : 1, sizeof(pn_gguf_kv));
    g->tensors = pn_calloc(nt ? nt : 1, sizeof(pn_gguf_tensor));
    for (uint64_t i = 0; i < nk; i++) {
        const char *k;
        uint64_t kl;
        if (rd_str(&c, &k, &kl, "a metadata key")) return -1;
        if (kl == 0 || kl > 65535 || memchr(k, 0, kl)) return pn_errorf("%s: metadata entry %llu has a bad key", g->path, (unsigned long long)i);
        pn_gguf_kv *kv = &g->kv[g->n_kv++];
        kv->key = pn_malloc(kl + 1);
        memcpy(kv->key, k, kl);
        kv->key[kl] = 0;
        for (int j = 0; j + 1 < g->n_kv; j++)
            if (!strcmp(g->kv[j].key, kv->key)) return pn_errorf("%s: metadata key \"%s\" appears twice", g->path, kv->key);
        if (need(&c, 4, kv->key)) return -1;
        kv->type = rd_u32(&c);
        kv->val = c.p;
        if (skip_value(&c, kv, kv->type, kv->key)) return -1;
    }
    g->alignment = 32;
    int64_t al;
    int r = pn_gguf_get_int(g, "general.alignment", &al);
    if (r < 0) return -1;
    if (r == 0) {
        if (al < 1 || al > 65536 || (al & (al - 1))) return pn_errorf("%s: general.alignment = %lld is not a power of two up to 65536", g->path, (long long)al);
        g->alignment = (uint64_t)al;
    }
    for (uint64_t i = 0; i < nt; i++) {
        const char *nm;
        uint64_t nl;
        if (rd_str(&c, &nm, &nl, "a tensor name")) return -1;
        if (nl == 0 || nl > 1024 || memchr(nm, 0, nl)) return pn_errorf("%s: tensor %llu has a bad name", g->path, (unsigned long long)i);
        pn_gguf_tensor *t = &g->tensors[g->n_tensors++];
        t->name = pn_malloc(nl + 1);
        memcpy(t->name, nm, nl);
        t->name[nl] = 0;
        if (need(&c, 4, t->name)) return -1;
        uint32_t nd = rd_u32(&c);
        if (nd < 1 || nd > 4) return pn_errorf("%s: tensor \"%s\" has %u dimensions (1..4)", g->path, t->name, nd);
        if (need(&c, 8ull * nd + 12, t->name)) return -1;
        t->ndim = (int)nd;
        uint64_t numel = 1;
        for (uint32_t d = 0; d < nd; d++) {
            uint64_t ne = rd_u64(&c);
            if (ne < 1 || ne > (1ull << 40) || numel > (1ull << 40) / ne)
                return pn_errorf("%s: tensor \"%s\": dimension %u = %llu is out of range", g->path, t->name, d, (unsigned long long)ne);
            t->ne[d] = (int64_t)ne;
            numel *= ne;
        }
        for (int d = (int)nd; d < 4; d++) t->ne[d] = 1;
        t->type = rd_u32(&c);
        t->offset = rd_u64(&c);
        if (t->type >= N_GGML || !GGML[t->type].name)
            return pn_errorf("%s: tensor \"%s\" has an unknown ggml type %u", g->path, t->name, t->type);
        const ggml_info *gi = &GGML[t->type];
        if (!gi->blck)
            return pn_errorf("%s: tensor \"%s\" is %s, a quantization this converter does not read (F32, F16, BF16, "
                             "Q8_0, Q4_0, Q4_1)", g->path, t->name, gi->name);
        if (t->ne[0] % gi->blck)
            return pn_errorf("%s: tensor \"%s\": row length %lld is not a multiple of %s's block of %d", g->path, t->name,
                             (long long)t->ne[0], gi->name, gi->blck);
        t->nbytes = numel / (uint64_t)gi->blck * (uint64_t)gi->bytes;
        if (t->offset % g->alignment) return pn_errorf("%s: tensor \"%s\": offset %llu is not aligned to %llu", g->path, t->name,
                                                      (unsigned long long)t->offset, (unsigned long long)g->alignment);
        for (int j = 0; j + 1 < g->n_tensors; j++)
            if (!strcmp(g->tensors[j].name, t->name)) return pn_errorf("%s: tensor \"%s\" appears twice", g->path, t->name);
    }
    uint64_t pos = (uint64_t)(c.p - g->map);
    g->data_offset = (pos + g->alignment - 1) / g->alignment * g->alignment;
    if (g->data_offset > g->len && g->n_tensors) return pn_errorf("%s: truncated before the data section", g->path);
    for (int i = 0; i < g->n_tensors; i++) {
        pn_gguf_tensor *t = &g->tensors[i];
        const uint64_t room = g->len - g->data_offset;
        if (t->offset > room || t->nbytes > room - t->offset)
            return pn_errorf("%s: tensor \"%s\": bytes %llu..%llu of the data section lie past the end of the file (%llu bytes)",
                             g->path, t->name, (unsigned long long)t->offset, (unsigned long long)(t->offset + t->nbytes),
                             (unsigned long long)room);
        t->data = g->map + g->data_offset + t->offset;
    }
    return 0;
}

int pn_gguf_open(pn_gguf *g, const char *path) {
    memset(g, 0, sizeof *g);
    g->path = pn_malloc(strlen(path) + 1);
    strcpy(g->path, path);
    int fd = pn_open_regular(path);
    if (fd < 0) {
        free(g->path);
        g->path = NULL;
        return -1;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || sb.st_size < 24) {
        close(fd);
        pn_errorf("%s: not a GGUF file (%lld bytes)", path, (long long)sb.st_size);
        pn_gguf_close(g);
        return -1;
    }
    g->len = (size_t)sb.st_size;
    void *m = mmap(NULL, g->len, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED) {
        pn_errorf("%s: cannot map the file", path);
        pn_gguf_close(g);
        return -1;
    }
    g->map = m;
    if (parse(g)) {
        pn_gguf_close(g);
        return -1;
    }
    return 0;
}

void pn_gguf_close(pn_gguf *g) {
    for (int i = 0; i < g->n_kv; i++) free(g->kv[i].key), free(g->kv[i].str_off);
    for (int i = 0; i < g->n_tensors; i++) free(g->tensors[i].name);
    free(g->kv);
    free(g->tensors);
    if (g->map) munmap(g->map, g->len);
    free(g->path);
    memset(g, 0, sizeof *g);
}

const pn_gguf_kv *pn_gguf_find(const pn_gguf *g, const char *key) {
    for (int i = 0; i < g->n_kv; i++)
        if (!strcmp(g->kv[i].key, key)) return &g->kv[i];
    return NULL;
}

const pn_gguf_tensor *pn_gguf_tensor_find(const pn_gguf *g, const char *name) {
    for (int i = 0; i < g->n_tensors; i++)
        if (!strcmp(g->tensors[i].name, name)) return &g->tensors[i];
    return NULL;
}

static int64_t int_at(const uint8_t *p, uint32_t type, int *ok) {
    *ok = 1;
    switch (type) {
    case PN_GGUF_U8: return p[0];
    case PN_GGUF_I8: return (int8_t)p[0];
    case PN_GGUF_U16: { uint16_t v; memcpy(&v, p, 2); return v; }
    case PN_GGUF_I16: { int16_t v; memcpy(&v, p, 2); return v; }
    case PN_GGUF_U32: { uint32_t v; memcpy(&v, p, 4); return v; }
    case PN_GGUF_I32: { int32_t v; memcpy(&v, p, 4); return v; }
    case PN_GGUF_I64: { int64_t v; memcpy(&v, p, 8); return v; }
    case PN_GGUF_U64: {
        uint64_t v;
        memcpy(&v, p, 8);
        if (v > INT64_MAX) *ok = 0;
        return (int64_t)v;
    }
    }
    *ok = 0;
    return 0;
}

int pn_gguf_get_int(const pn_gguf *g, const char *key, int64_t *out) {
    const pn_gguf_kv *kv = pn_gguf_find(g, key);
    if (!kv) return 1;
    int ok;
    int64_t v = int_at(kv->val, kv->type, &ok);
    if (!ok) return pn_errorf("%s: metadata \"%s\" is %s, not an integer in range", g->path, key, VNAME[kv->type]);
    *out = v;
    return 0;
}

int pn_gguf_get_float(const pn_gguf *g, const char *key, double *out) {
    const pn_gguf_kv *kv = pn_gguf_find(g, key);
    if (!kv) return 1;
    if (kv->type == PN_GGUF_F32) {
        float f;
        memcpy(&f, kv->val, 4);
        *out = f;
    } else if (kv->type == PN_GGUF_F64) {
        memcpy(out, kv->val, 8);
    } else {
        return pn_errorf("%s: metadata \"%s\" is %s, not a float", g->path, key, VNAME[kv->type]);
    }
    if (!isfinite(*out)) return pn_errorf("%s: metadata \"%s\" is not finite", g->path, key);
    return 0;
}

int pn_gguf_get_bool(const pn_gguf *g, const char *key, int *out) {
    const pn_gguf_kv *kv = pn_gguf_find(g, key);
    if (!kv) return 1;
    if (kv->type != PN_GGUF_BOOL || kv->val[0] > 1) return pn_errorf("%s: metadata \"%s\" is not a bool", g->path, key);
    *out = kv->val[0];
    return 0;
}

int pn_gguf_get_str(const pn_gguf *g, const char *key, const char **s, size_t *len) {
    const pn_gguf_kv *kv = pn_gguf_find(g, key);
    if (!kv) return 1;
    if (kv->type != PN_GGUF_STRING) return pn_errorf("%s: metadata \"%s\" is %s, not a string", g->path, key, VNAME[kv->type]);
    uint64_t n;
    memcpy(&n, kv->val, 8);
    *s = (const char *)kv->val + 8, *len = (size_t)n;
    return 0;
}

void pn_gguf_arr_str(const pn_gguf_kv *kv, uint64_t i, const char **s, size_t *len) {
    const uint8_t *p = kv->val + kv->str_off[i];
    uint64_t n;
    memcpy(&n, p, 8);
    *s = (const char *)p + 8, *len = (size_t)n;
}

int64_t pn_gguf_arr_int(const pn_gguf_kv *kv, uint64_t i) {
    int ok;
    return int_at(kv->val + i * VSIZE[kv->arr_type], kv->arr_type, &ok);
}

int64_t pn_gguf_numel(const pn_gguf_tensor *t) { return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]; }

// IEEE binary16 -> float, subnormals included (quantization scales are often tiny).
static float half_to_float(uint16_t h) {
    const uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31, man = h & 1023;
    uint32_t bits;
    if (exp == 0) {
        if (!man) {
            bits = sign;
        } else { // subnormal: value = man * 2^-24, exact in float
            float f = (float)man * 5.9604644775390625e-8f;
            memcpy(&bits, &f, 4);
            bits |= sign;
        }
    } else if (exp == 31) {
        bits = sign | 0x7F800000u | (man << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

// ggml's block formulas: Q8_0 x = q * d; Q4_0 x = (q - 8) * d; Q4_1 x = q * d + m; the low nibbles of the
// 16 bytes are elements 0..15, the high nibbles 16..31. q * d is exact in fp32 (q has at most 8 significant
// bits, d 11), so this matches ggml and gguf-py bit for bit with or without FMA.
void pn_gguf_dequant(const pn_gguf_tensor *t, float *out) {
    const int64_t n = pn_gguf_numel(t);
    const uint8_t *p = t->data;
    switch (t->type) {
    case PN_GGML_F32: memcpy(out, p, (size_t)n * 4); break;
    case PN_GGML_F16:
        for (int64_t i = 0; i < n; i++) out[i] = half_to_float(rd16(p + 2 * i));
        break;
    case PN_GGML_BF16:
        for (int64_t i = 0; i < n; i++) {
            uint32_t bits = (uint32_t)rd16(p + 2 * i) << 16;
            memcpy(&out[i], &bits, 4);
        }
        break;
    case PN_GGML_Q8_0:
        for (int64_t b = 0; b < n / 32; b++, p += 34) {
            const float d = half_to_float(rd16(p));
            for (int j = 0; j < 32; j++) out[b * 32 + j] = (float)(int8_t)p[2 + j] * d;
        }
        break;
    case PN_GGML_Q4_0:
        for (int64_t b = 0; b < n / 32; b++, p += 18) {
            const float d = half_to_float(rd16(p));
            for (int j = 0; j < 16; j++) {
                out[b * 32 + j] = (float)((p[2 + j] & 15) - 8) * d;
                out[b * 32 + j + 16] = (float)((p[2 + j] >> 4) - 8) * d;
            }
        }
        break;
    case PN_GGML_Q4_1:
        for (int64_t b = 0; b < n / 32; b++, p += 20) {
            const float d = half_to_float(rd16(p)), m = half_to_float(rd16(p + 2));
            for (int j = 0; j < 16; j++) {
                out[b * 32 + j] = (float)(p[4 + j] & 15) * d + m;
                out[b * 32 + j + 16] = (float)(p[4 + j] >> 4) * d + m;
            }
        }
        break;
    default: pn_panic("pn_gguf_dequant: type %u was refused at open", t->type);
    }
}
