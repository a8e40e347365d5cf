// GGUF reading and postnas-convert: a tiny Llama GGUF written here byte by byte (every tensor type the
// converter reads, q/k rows permuted as llama.cpp stores them) converts into a folder whose tensors are the
// expected HF values, and which loads and tokenizes; then a catalogue of damaged and hostile files, each
// refused with one line naming the file, exit status 1 and no output folder left behind.
// (Bit-exactness against gguf-py and transformers is tests/test_smollm2.c's and the gguf goldens' job.)
//
// usage: test_gguf POSTNAS_CONVERT GGUF_GOLDENS_DIR
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../data/pn_tokenizer.h"
#include "../src/pn_common.h"
#include "../src/pn_gguf.h"
#include "../src/pn_model.h"
#include "pn_test.h"

// ---------------------------------------------------------------------------------------------------
// a GGUF writer, as small as it can be

typedef struct {
    uint8_t *b;
    size_t n, cap;
} buf;

static void put(buf *o, const void *p, size_t n) {
    if (o->n + n > o->cap) o->b = pn_realloc(o->b, o->cap = (o->n + n) * 2 + 64);
    memcpy(o->b + o->n, p, n);
    o->n += n;
}
static void u32(buf *o, uint32_t v) { put(o, &v, 4); }
static void u64(buf *o, uint64_t v) { put(o, &v, 8); }
static void str(buf *o, const char *s) {
    u64(o, strlen(s));
    put(o, s, strlen(s));
}
static void kv_u32(buf *o, const char *k, uint32_t v) { str(o, k), u32(o, PN_GGUF_U32), u32(o, v); }
static void kv_f32(buf *o, const char *k, float v) { str(o, k), u32(o, PN_GGUF_F32), put(o, &v, 4); }
static void kv_str(buf *o, const char *k, const char *v) { str(o, k), u32(o, PN_GGUF_STRING), str(o, v); }
static void kv_bool(buf *o, const char *k, int v) {
    uint8_t x = (uint8_t)v;
    str(o, k), u32(o, PN_GGUF_BOOL), put(o, &x, 1);
}

typedef struct {
    const char *name;
    uint32_t type;
    int64_t ne0, ne1; // ggml order
    buf data;
} tdesc;

static uint16_t f2h(float f) { // float -> binary16, round to nearest (values here are normal and small)
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000, e = (x >> 23) & 255, man = x & 0x7FFFFF;
    if (e == 0) return (uint16_t)sign;
    int ne = (int)e - 127 + 15;
    uint32_t m = man >> 13, rest = man & 0x1FFF;
    if (rest > 0x1000 || (rest == 0x1000 && (m & 1))) m++;
    if (m == 1024) m = 0, ne++;
    return (uint16_t)(sign | (uint32_t)ne << 10 | m);
}

// Values x[i] stored as `type`; `want` receives what a correct dequantizer gives back.
static void encode(tdesc *t, const float *x, float *want) {
    const int64_t n = t->ne0 * t->ne1;
    for (int64_t i = 0; i < n; i++) {
        if (t->type == PN_GGML_F32) {
            put(&t->data, &x[i], 4), want[i] = x[i];
        } else if (t->type == PN_GGML_F16) {
            uint16_t h = f2h(x[i]);
            put(&t->data, &h, 2);
            want[i] = x[i]; // the test values are exact in binary16
        } else if (t->type == PN_GGML_BF16) {
            uint32_t bits;
            memcpy(&bits, &x[i], 4);
            uint16_t h = (uint16_t)(bits >> 16);
            put(&t->data, &h, 2);
            bits &= 0xFFFF0000u;
            memcpy(&want[i], &bits, 4);
        }
    }
    if (t->type == PN_GGML_Q8_0 || t->type == PN_GGML_Q4_0 || t->type == PN_GGML_Q4_1) {
        for (int64_t b = 0; b < n / 32; b++) { // scale d = 1/8 (exact), q from the values' position
            const float d = 0.125f, mn = -0.5f;
            uint16_t hd = f2h(d), hm = f2h(mn);
            put(&t->data, &hd, 2);
            if (t->type == PN_GGML_Q4_1) put(&t->data, &hm, 2);
            if (t->type == PN_GGML_Q8_0) {
                for (int j = 0; j < 32; j++) {
                    int8_t q = (int8_t)((b * 7 + j * 3) % 61 - 30);
                    put(&t->data, &q, 1);
                    want[b * 32 + j] = (float)q * d;
                }
            } else {
                for (int j = 0; j < 16; j++) {
                    uint8_t lo = (uint8_t)((b + j) % 16), hi = (uint8_t)((b * 3 + j * 5) % 16), byte = (uint8_t)(lo | hi << 4);
                    put(&t->data, &byte, 1);
                    want[b * 32 + j] = t->type == PN_GGML_Q4_0 ? (float)(lo - 8) * d : (float)lo * d + mn;
                    want[b * 32 + j + 16] = t->type == PN_GGML_Q4_0 ? (float)(hi - 8) * d : (float)hi * d + mn;
                }
            }
        }
    }
}

enum { H = 64, FF = 64, NH = 4, NKV = 2, HD = 16, NTOK = 259 };

typedef struct {
    tdesc t[16];
    float *want[16];
    int n;
} model_spec;

// The tiny Llama: every tensor type the converter reads, q/k rows permuted as llama.cpp stores them.
static void make_tensors(model_spec *ms) {
    static const struct {
        const char *name;
        uint32_t type;
        int64_t ne0, ne1;
    } L[] = {
        {"token_embd.weight", PN_GGML_F16, H, NTOK},          {"blk.0.attn_norm.weight", PN_GGML_F32, H, 1},
        {"blk.0.attn_q.weight", PN_GGML_Q8_0, H, NH * HD},   {"blk.0.attn_k.weight", PN_GGML_Q4_0, H, NKV * HD},
        {"blk.0.attn_v.weight", PN_GGML_Q4_1, H, NKV * HD},  {"blk.0.attn_output.weight", PN_GGML_BF16, NH * HD, H},
        {"blk.0.ffn_norm.weight", PN_GGML_F32, H, 1},         {"blk.0.ffn_gate.weight", PN_GGML_F16, H, FF},
        {"blk.0.ffn_up.weight", PN_GGML_Q8_0, H, FF},         {"blk.0.ffn_down.weight", PN_GGML_Q4_1, FF, H},
        {"output_norm.weight", PN_GGML_F32, H, 1},
    };
    ms->n = (int)(sizeof L / sizeof L[0]);
    for (int i = 0; i < ms->n; i++) {
        tdesc *t = &ms->t[i];
        *t = (tdesc){.name = L[i].name, .type = L[i].type, .ne0 = L[i].ne0, .ne1 = L[i].ne1};
        const int64_t n = t->ne0 * t->ne1;
        float *x = pn_malloc(sizeof(float) * (size_t)n);
        for (int64_t j = 0; j < n; j++) // small dyadic values: exact in every float format used
            x[j] = L[i].ne1 == 1 ? 1.0f + (float)(j % 5) / 8 : (float)((j * 37 + i * 11) % 33 - 16) / 256.0f;
        ms->want[i] = pn_malloc(sizeof(float) * (size_t)n);
        encode(t, x, ms->want[i]);
        free(x);
    }
}

// The file: metadata (what `omit` names is left out; `pre` the pre-tokenizer), tensor infos, data.
static buf make_gguf(const model_spec *ms, const char *omit, const char *pre) {
    buf o = {0};
    pn_tokenizer *bytes = pn_tokenizer_bytes(); // GPT-2's byte alphabet, the token strings
    put(&o, "GGUF", 4);
    u32(&o, 3);
    u64(&o, (uint64_t)ms->n);
    const char *keys[] = {"general.architecture", "llama.block_count", "llama.embedding_length", "llama.feed_forward_length",
                          "llama.attention.head_count", "llama.attention.head_count_kv", "llama.rope.freq_base",
                          "llama.attention.layer_norm_rms_epsilon", "llama.context_length", "tokenizer.ggml.model",
                          "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges",
                          "tokenizer.ggml.eos_token_id", "tokenizer.ggml.add_bos_token", "tokenizer.ggml.bos_token_id"};
    int nk = 0;
    for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) nk += !omit || strcmp(omit, keys[i]);
    u64(&o, (uint64_t)nk);
#define KEEP(k) (!omit || strcmp(omit, k))
    if (KEEP("general.architecture")) kv_str(&o, "general.architecture", "llama");
    if (KEEP("llama.block_count")) kv_u32(&o, "llama.block_count", 1);
    if (KEEP("llama.embedding_length")) kv_u32(&o, "llama.embedding_length", H);
    if (KEEP("llama.feed_forward_length")) kv_u32(&o, "llama.feed_forward_length", FF);
    if (KEEP("llama.attention.head_count")) kv_u32(&o, "llama.attention.head_count", NH);
    if (KEEP("llama.attention.head_count_kv")) kv_u32(&o, "llama.attention.head_count_kv", NKV);
    if (KEEP("llama.rope.freq_base")) kv_f32(&o, "llama.rope.freq_base", 10000.0f);
    if (KEEP("llama.attention.layer_norm_rms_epsilon")) kv_f32(&o, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    if (KEEP("llama.context_length")) kv_u32(&o, "llama.context_length", 256);
    if (KEEP("tokenizer.ggml.model")) kv_str(&o, "tokenizer.ggml.model", "gpt2");
    if (KEEP("tokenizer.ggml.pre")) kv_str(&o, "tokenizer.ggml.pre", pre);
    if (KEEP("tokenizer.ggml.tokens")) { // the 256 byte tokens, "Ġt", "he", "<|endoftext|>"
        str(&o, "tokenizer.ggml.tokens"), u32(&o, PN_GGUF_ARRAY), u32(&o, PN_GGUF_STRING), u64(&o, NTOK);
        for (int b = 0; b < 256; b++) str(&o, pn_tokenizer_token(bytes, b));
        str(&o, "\xC4\xA0t"), str(&o, "he"), str(&o, "<|endoftext|>");
    }
    if (KEEP("tokenizer.ggml.token_type")) {
        str(&o, "tokenizer.ggml.token_type"), u32(&o, PN_GGUF_ARRAY), u32(&o, PN_GGUF_I32), u64(&o, NTOK);
        for (int i = 0; i < NTOK; i++) u32(&o, i == NTOK - 1 ? 3 : 1);
    }
    if (KEEP("tokenizer.ggml.merges")) {
        str(&o, "tokenizer.ggml.merges"), u32(&o, PN_GGUF_ARRAY), u32(&o, PN_GGUF_STRING), u64(&o, 2);
        str(&o, "\xC4\xA0 t"), str(&o, "h e");
    }
    if (KEEP("tokenizer.ggml.eos_token_id")) kv_u32(&o, "tokenizer.ggml.eos_token_id", NTOK - 1);
    if (KEEP("tokenizer.ggml.add_bos_token")) kv_bool(&o, "tokenizer.ggml.add_bos_token", 1);
    if (KEEP("tokenizer.ggml.bos_token_id")) kv_u32(&o, "tokenizer.ggml.bos_token_id", NTOK - 1);
#undef KEEP
    uint64_t off = 0;
    for (int i = 0; i < ms->n; i++) {
        str(&o, ms->t[i].name);
        u32(&o, 2);
        u64(&o, (uint64_t)ms->t[i].ne0), u64(&o, (uint64_t)ms->t[i].ne1);
        u32(&o, ms->t[i].type);
        u64(&o, off);
        off += (ms->t[i].data.n + 31) / 32 * 32;
    }
    while (o.n % 32) put(&o, "", 1);
    for (int i = 0; i < ms->n; i++) {
        put(&o, ms->t[i].data.b, ms->t[i].data.n);
        while (o.n % 32) put(&o, "", 1);
    }
    pn_tokenizer_free(bytes);
    return o;
}

static char dir[128];

static void write_file(const char *path, const buf *o) {
    FILE *f = fopen(path, "wb");
    fwrite(o->b, 1, o->n, f);
    fclose(f);
}

// Runs the converter; returns its exit status, its stderr in `err`.
static int convert(const char *tool, const char *in, const char *out, char *err, size_t cap) {
    char cmd[1024], ep[256];
    snprintf(ep, sizeof ep, "%s/stderr.txt", dir);
    snprintf(cmd, sizeof cmd, "'%s' --from-gguf '%s' --out '%s' --dtype f32 > /dev/null 2> '%s'", tool, in, out, ep);
    int rc = system(cmd);
    FILE *f = fopen(ep, "r");
    size_t n = f ? fread(err, 1, cap - 1, f) : 0;
    err[n] = 0;
    if (f) fclose(f);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void test_good(const char *tool, model_spec *ms) {
    buf g = make_gguf(ms, NULL, "llama-bpe");
    char in[256], out[256], err[4096];
    snprintf(in, sizeof in, "%s/good.gguf", dir);
    snprintf(out, sizeof out, "%s/good", dir);
    write_file(in, &g);
    free(g.b);
    int rc = convert(tool, in, out, err, sizeof err);
    CHECK(rc == 0, "convert: %s", err);
    if (rc) return;
    pn_model m;
    CHECK(pn_model_load(&m, out, PN_CPU) == 0, "load: %s", pn_last_error());
    // Each HF tensor against the values written (q, k: rows back in HF order).
    static const char *hf[] = {"model.embed_tokens.weight", "model.layers.0.input_layernorm.weight",
                               "model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.k_proj.weight",
                               "model.layers.0.self_attn.v_proj.weight", "model.layers.0.self_attn.o_proj.weight",
                               "model.layers.0.post_attention_layernorm.weight", "model.layers.0.mlp.gate_proj.weight",
                               "model.layers.0.mlp.up_proj.weight", "model.layers.0.mlp.down_proj.weight", "model.norm.weight"};
    char mp[300];
    snprintf(mp, sizeof mp, "%s/model.safetensors", out);
    pn_safetensors st;
    CHECK(pn_st_open(&st, mp) == 0, "%s", pn_last_error());
    for (int i = 0; i < ms->n; i++) {
        const pn_st_entry *e = pn_st_find(&st, hf[i]);
        CHECK(e && e->dtype == PN_ST_F32, "%s missing", hf[i]);
        if (!e) continue;
        const int64_t rows = ms->t[i].ne1, cols = ms->t[i].ne0;
        CHECK(e->ndim == (rows > 1 ? 2 : 1) && e->shape[0] == (rows > 1 ? rows : cols), "%s shape", hf[i]);
        const float *got = e->data;
        const int perm = i == 2 || i == 3, heads = i == 2 ? NH : NKV;
        int same = 1;
        for (int64_t r = 0; r < rows; r++) {
            int64_t src = r; // HF row h*hd + j*hd/2 + i came from GGUF row h*hd + 2i + j
            if (perm) {
                const int64_t hd = rows / heads, h = r / hd, within = r % hd, j = within / (hd / 2), ii = within % (hd / 2);
                src = h * hd + 2 * ii + j;
            }
            same &= !memcmp(got + r * cols, ms->want[i] + src * cols, sizeof(float) * (size_t)cols);
        }
        CHECK(same, "%s (%s): values differ from the ones written", hf[i], pn_ggml_type_name(ms->t[i].type));
    }
    pn_st_close(&st);
    // The tokenizer built from the vocabulary: llama-bpe (Split + ByteLevel, ignore_merges), BOS added.
    pn_tokenizer *t = pn_tokenizer_load(out);
    CHECK(t != NULL, "tokenizer: %s", pn_last_error());
    if (t) {
        int32_t *ids = NULL;
        size_t n = 0, cap = 0;
        // BOS, then " the" -> merges "Ġ t" and "h e" -> [Ġt, he], then the special token.
        CHECK(pn_tokenizer_encode_special(t, " the<|endoftext|>", 17, &ids, &n, &cap) == 0 && n == 4 &&
                  ids[0] == NTOK - 1 && ids[1] == 256 && ids[2] == 257 && ids[3] == NTOK - 1,
              "tokenizer ids (n %zu)", n);
        free(ids);
        CHECK(pn_tokenizer_eos_id(t) == NTOK - 1, "eos from tokenizer_config.json");
        pn_tokenizer_free(t);
    }
    CHECK(m.cfg.n_heads == NH && m.cfg.n_kv_heads == NKV && m.cfg.head_dim == HD && m.cfg.tie_embeddings &&
              m.cfg.bos_id == NTOK - 1,
          "config");
    pn_model_free(&m);
    // An existing --out is refused, not overwritten.
    rc = convert(tool, in, out, err, sizeof err);
    CHECK(rc == 1 && strstr(err, "already exists"), "existing out: %d %s", rc, err);
}

// Writes `g`, converts, expects exit 1 with one line containing `needle` and no output folder.
static void expect_refused(const char *tool, const buf *g, const char *what, const char *needle) {
    char in[256], out[256], err[4096];
    snprintf(in, sizeof in, "%s/bad.gguf", dir);
    snprintf(out, sizeof out, "%s/bad-out", dir);
    write_file(in, g);
    int rc = convert(tool, in, out, err, sizeof err);
    const char *nl = strchr(err, '\n');
    int one_line = nl && nl[1] == 0, named = !!strstr(err, "bad.gguf") || !!strstr(err, "bad-out");
    struct stat sb;
    CHECK(rc == 1 && one_line && strstr(err, "postnas-convert: error: ") == err && strstr(err, needle) && named &&
              stat(out, &sb) != 0,
          "%s: rc %d, stderr \"%s\" (want \"%s\")", what, rc, err, needle);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'.tmp.*", out, out);
    if (system(cmd)) return;
}

static void patch_u32(buf *g, size_t at, uint32_t v) { memcpy(g->b + at, &v, 4); }
static void patch_u64(buf *g, size_t at, uint64_t v) { memcpy(g->b + at, &v, 8); }

// Offset of the tensor info of `name` (its name string's length field).
static size_t tinfo_at(const buf *g, const char *name) {
    const size_t L = strlen(name);
    for (size_t i = 0; i + 8 + L < g->n; i++)
        if (!memcmp(g->b + i + 8, name, L) && g->b[i] == L && !memcmp(g->b + i + 1, "\0\0\0\0\0\0\0", 7)) return i;
    return 0;
}

static void test_bad(const char *tool, model_spec *ms) {
    buf g = make_gguf(ms, NULL, "llama-bpe"), x = {0};
    // Header and container.
    x = (buf){0}, put(&x, g.b, 10);
    expect_refused(tool, &x, "10 bytes", "not a GGUF file");
    free(x.b);
    x = (buf){0}, put(&x, g.b, g.n);
    memcpy(x.b, "GGML", 4);
    expect_refused(tool, &x, "bad magic", "not a GGUF file (bad magic)");
    patch_u32(&x, 0, 0x46554747), patch_u32(&x, 4, 1);
    expect_refused(tool, &x, "version 1", "GGUF version 1 is not supported");
    patch_u32(&x, 4, 3), patch_u64(&x, 16, 1ull << 40);
    expect_refused(tool, &x, "huge metadata count", "cannot fit in a file");
    free(x.b);
    char gp[256];
    snprintf(gp, sizeof gp, "%s/whole.gguf", dir);
    write_file(gp, &g);
    pn_gguf whole;
    CHECK(pn_gguf_open(&whole, gp) == 0, "%s", pn_last_error());
    const size_t data_at = (size_t)whole.data_offset;
    pn_gguf_close(&whole);
    for (size_t cut = 400; cut < g.n; cut += g.n / 7) { // truncated anywhere (the counts alone fit in 400 bytes)
        x = (buf){0}, put(&x, g.b, cut);
        expect_refused(tool, &x, "truncated", cut < data_at ? "truncated" : "past the end of the file");
        free(x.b);
    }
    // Metadata: a string length beyond the file, an unknown value type, a nested array, a key twice.
    x = (buf){0}, put(&x, g.b, g.n);
    patch_u64(&x, 24, 1ull << 50);
    expect_refused(tool, &x, "key length", "truncated");
    free(x.b);
    x = (buf){0}, put(&x, g.b, g.n);
    patch_u32(&x, 24 + 8 + strlen("general.architecture"), 77);
    expect_refused(tool, &x, "value type", "unknown value type 77");
    free(x.b);
    // Tensor infos: dims, types, alignment, ranges.
    const char *q = "blk.0.attn_q.weight";
    const size_t qi = tinfo_at(&g, q), after_name = qi + 8 + strlen(q);
    CHECK(qi != 0, "tensor info of %s", q);
    x = (buf){0}, put(&x, g.b, g.n);
    patch_u32(&x, after_name, 5);
    expect_refused(tool, &x, "5 dims", "has 5 dimensions");
    free(x.b);
    x = (buf){0}, put(&x, g.b, g.n);
    patch_u64(&x, after_name + 4, 0);
    expect_refused(tool, &x, "dim 0", "dimension 0 = 0 is out of range");
    free(x.b);
    x = (buf){0}, put(&x, g.b, g.n);
    patch_u32(&x, after_name + 4 + 16, 99);
    expect_refused(tool, &x, "type 99", "unknown ggml type 99");
    patch_u32(&x, after_name + 4 + 16, 12);
    expect_refused(tool, &x, "Q4_K", "is Q4_K, a quantization this converter does not read");
    free(x.b);
    x = (buf){0}, put(&x, g.b, g.n);
    uint64_t off;
    memcpy(&off, g.b + after_name + 4 + 16 + 4, 8);
    patch_u64(&x, after_name + 4 + 16 + 4, off + 4);
    expect_refused(tool, &x, "misaligned", "is not aligned to 32");
    patch_u64(&x, after_name + 4 + 16 + 4, 1ull << 40);
    expect_refused(tool, &x, "offset past the end", "lie past the end of the file");
    free(x.b);
    x = (buf){0}, put(&x, g.b, g.n);
    memcpy(x.b + tinfo_at(&g, "blk.0.attn_k.weight") + 8, q, strlen(q)); // same length: a duplicate name
    expect_refused(tool, &x, "duplicate tensor", "tensor \"blk.0.attn_q.weight\" appears twice");
    free(x.b);
    free(g.b);
    // The model: a missing key, a missing tensor, a wrong shape, tokenizers it cannot build.
    g = make_gguf(ms, "llama.block_count", "llama-bpe");
    expect_refused(tool, &g, "no block_count", "missing metadata key \"llama.block_count\"");
    free(g.b);
    g = make_gguf(ms, "tokenizer.ggml.model", "llama-bpe");
    expect_refused(tool, &g, "no tokenizer", "no tokenizer.ggml.model");
    free(g.b);
    g = make_gguf(ms, NULL, "deepseek-coder");
    expect_refused(tool, &g, "unknown pre", "tokenizer.ggml.pre \"deepseek-coder\" is not a pre-tokenizer this converter knows");
    free(g.b);
    const tdesc keep = ms->t[9];
    ms->n--; // no ffn_down
    ms->t[9] = ms->t[10];
    g = make_gguf(ms, NULL, "llama-bpe");
    expect_refused(tool, &g, "missing tensor", "missing tensor blk.0.ffn_down.weight");
    free(g.b);
    ms->t[10] = ms->t[9], ms->t[9] = keep, ms->n++;
    ms->t[7].ne1 = FF / 2, ms->t[7].ne0 = H * 2; // gate [H*2, FF/2]: same bytes, wrong shape
    g = make_gguf(ms, NULL, "llama-bpe");
    expect_refused(tool, &g, "wrong shape", "the metadata makes model.layers.0.mlp.gate_proj.weight [64, 64]");
    free(g.b);
    ms->t[7].ne1 = FF, ms->t[7].ne0 = H;
    // Not a regular file.
    char fifo[256], out[256], err[4096];
    snprintf(fifo, sizeof fifo, "%s/fifo.gguf", dir);
    snprintf(out, sizeof out, "%s/fifo-out", dir);
    CHECK(mkfifo(fifo, 0600) == 0, "mkfifo");
    int rc = convert(tool, fifo, out, err, sizeof err);
    CHECK(rc == 1 && strstr(err, "not a regular file"), "FIFO: %d %s", rc, err);
}

static int json_ids_equal(const int32_t *a, size_t n, json_t *arr) {
    if (json_array_size(arr) != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (json_integer_value(json_array_get(arr, i)) != a[i]) return 0;
    return 1;
}

// GGUF files written by gguf-py as llama.cpp writes them (tests/make_gguf_goldens.py; every tensor type,
// Llama / Qwen2 / Qwen3): every converted tensor bit for bit equal to transformers' own GGUF loading, the
// logits, and the tokenizer's ids (the model family's own pipeline where transformers' GGUF tokenizer
// drops part of it: ignore_merges, NFC, SmolLM2's digit split).
static void test_goldens(const char *tool, const char *goldens) {
    static const char *cases[] = {"llama_q4_0", "llama_bf16_untied", "qwen2_q8_0", "qwen3_q4_1"};
    for (int c = 0; c < 4; c++) {
        char *cd = pn_path_join(goldens, cases[c]), *in = pn_path_join(cd, "model.gguf"), out[256], err[4096];
        snprintf(out, sizeof out, "%s/%s", dir, cases[c]);
        int rc = convert(tool, in, out, err, sizeof err);
        CHECK(rc == 0, "%s: %s", cases[c], err);
        char *ep = pn_path_join(cd, "expected.safetensors"), *mp = pn_path_join(out, "model.safetensors");
        pn_safetensors want, got;
        int tensors = 0, exact = 0;
        if (!rc && pn_st_open(&want, ep) == 0) {
            if (pn_st_open(&got, mp) == 0) {
                for (int i = 0; i < want.n; i++) {
                    const pn_st_entry *w = &want.entries[i], *g = pn_st_find(&got, w->name);
                    tensors++;
                    exact += g && g->end - g->begin == w->end - w->begin && !memcmp(g->data, w->data, w->end - w->begin);
                }
                CHECK(got.n == want.n, "%s: %d tensors, transformers has %d", cases[c], got.n, want.n);
                pn_st_close(&got);
            }
            pn_st_close(&want);
        }
        CHECK(tensors && exact == tensors, "%s: %d of %d tensors bit-exact", cases[c], exact, tensors);
        // Logits.
        double rel = -1;
        pn_model m;
        char *lp = pn_path_join(cd, "logits.safetensors");
        pn_safetensors ls;
        if (!rc && pn_model_load(&m, out, PN_CPU) == 0) {
            if (pn_st_open(&ls, lp) == 0) {
                const pn_st_entry *ie = pn_st_find(&ls, "ids"), *le = pn_st_find(&ls, "logits");
                const int T = (int)pn_st_numel(ie), V = m.cfg.vocab;
                int32_t *ids = pn_malloc(sizeof(int32_t) * (size_t)T);
                memcpy(ids, ie->data, sizeof(int32_t) * (size_t)T);
                float *ref = pn_malloc(sizeof(float) * (size_t)T * (size_t)V), *out_l = pn_malloc(sizeof(float) * (size_t)T * (size_t)V);
                pn_st_to_f32(&ls, le, ref);
                pn_kvcache kc;
                if (pn_model_plan(&m, 1, T, 1) == 0 && pn_kvcache_init(&kc, &m, 1, T) == 0) {
                    if (pn_model_forward(&m, &kc, ids, 1, T) == 0) {
                        pn_tensor lg = pn_rows(&m.logits, 0, T);
                        pn_op_to_host_f32(out_l, &lg);
                        double num = 0, den = 0;
                        for (int64_t i = 0; i < (int64_t)T * V; i++) {
                            const double d = (double)out_l[i] - ref[i];
                            num += d * d, den += (double)ref[i] * ref[i];
                        }
                        rel = sqrt(num / den);
                    }
                    pn_kvcache_free(&kc);
                }
                free(ids), free(ref), free(out_l);
                pn_st_close(&ls);
            }
            pn_model_free(&m);
        }
        CHECK(rel >= 0 && rel < 1e-5, "%s: logits rel err %g", cases[c], rel);
        // Tokenizer ids, with and without the post-processor's special tokens.
        char *tp = pn_path_join(cd, "tokens.json");
        json_error_t jerr;
        json_t *tj = json_load_file(tp, 0, &jerr), *tc;
        pn_tokenizer *t = rc ? NULL : pn_tokenizer_load(out);
        size_t i;
        int n_str = 0, same = 0;
        json_array_foreach(t ? json_object_get(tj, "cases") : NULL, i, tc) {
            json_t *text = json_object_get(tc, "text");
            json_t *w1 = json_object_get(tc, "ids_original"), *w0 = json_object_get(tc, "ids_no_special_original");
            if (!w1) w1 = json_object_get(tc, "ids"), w0 = json_object_get(tc, "ids_no_special");
            int32_t *ids = NULL;
            size_t n = 0, cap = 0;
            int ok = !pn_tokenizer_encode_special(t, json_string_value(text), json_string_length(text), &ids, &n, &cap) &&
                     json_ids_equal(ids, n, w1);
            n = 0;
            ok = ok && !pn_tokenizer_encode(t, json_string_value(text), json_string_length(text), 1, &ids, &n, &cap) &&
                 json_ids_equal(ids, n, w0);
            if (!ok) CHECK(0, "%s: tokenizer case \"%s\" differs", cases[c], json_string_value(text));
            same += ok, n_str++;
            free(ids);
        }
        CHECK(n_str > 0, "%s: %s", cases[c], t ? jerr.text : pn_last_error());
        printf("gguf golden %-18s %d/%d tensors bit-exact, logits rel err %.3g, tokenizer %d/%d strings\n", cases[c], exact,
               tensors, rel, same, n_str);
        pn_tokenizer_free(t);
        json_decref(tj);
        free(tp), free(lp), free(ep), free(mp), free(cd), free(in);
    }
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: test_gguf POSTNAS_CONVERT GGUF_GOLDENS_DIR\n");
        return 2;
    }
    snprintf(dir, sizeof dir, "/tmp/pn_test_gguf_%d", (int)getpid());
    mkdir(dir, 0755);
    model_spec ms;
    make_tensors(&ms);
    test_good(argv[1], &ms);
    test_bad(argv[1], &ms);
    test_goldens(argv[1], argv[2]);
    for (int i = 0; i < ms.n; i++) free(ms.t[i].data.b), free(ms.want[i]);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) return 1;
    return pn_test_done("test_gguf");
}
