// postnas-convert: a GGUF model (llama.cpp's format; Llama, Qwen2, Qwen3 architectures) -> a Hugging Face
// checkpoint folder that postnas and transformers both load: config.json from the GGUF metadata,
// model.safetensors with every tensor dequantized (F32, F16, BF16, Q8_0, Q4_0, Q4_1) under its HF name, and
// tokenizer.json + tokenizer_config.json built from the GGUF vocabulary, merges, token types and
// `tokenizer.ggml.pre`.
//
// Decisions a reader would otherwise miss:
// - llama.cpp stores a Llama model's q_proj/k_proj rows permuted for its interleaved RoPE (within each head,
//   row 2i + j holds HF row j * head_dim/2 + i); they are put back in HF's order here, as transformers does.
//   Qwen2/Qwen3 GGUFs are not permuted.
// - The pre-tokenizer follows llama.cpp's `tokenizer.ggml.pre` types, which are the original models'
//   tokenizers (SmolLM2's "smollm" splits every digit first). transformers' own GGUF loader has no rule for
//   some of them (it drops SmolLM2's digit split); where they differ, this follows the model's tokenizer.
// - Nothing appears at --out unless everything succeeded: the folder is built under a temporary name and
//   renamed at the end.
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../pn_common.h"
#include "../pn_gguf.h"
#include "../pn_hf_config.h"
#include "../pn_model.h"
#include "../pn_safetensors.h"

static void usage(FILE *f) {
    fprintf(f, "usage: postnas-convert --from-gguf FILE.gguf --out DIR [--dtype bf16|f32]\n"
               "Converts a GGUF model (Llama, Qwen2, Qwen3; tensors F32, F16, BF16, Q8_0, Q4_0, Q4_1) into a Hugging\n"
               "Face folder: config.json, model.safetensors (dequantized; bf16 by default) and tokenizer.json +\n"
               "tokenizer_config.json. DIR must not exist yet.\n");
}

// The pre-tokenizer regexes of the families (the same strings their tokenizer.json files carry).
static const char *RE_LLAMA3 = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                               "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char *RE_QWEN2 = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                              "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

typedef struct {
    pn_gguf g;
    const char *arch; // general.architecture, NUL-terminated copy below
    char arch_buf[32];
    pn_model_config cfg;
} conv;

static int meta_key(char *buf, size_t n, const conv *cv, const char *suffix) {
    return snprintf(buf, n, "%s.%s", cv->arch, suffix) >= (int)n ? -1 : 0;
}

// An integer the config needs: present, integral, in [lo, hi].
static int need_int(conv *cv, const char *suffix, int64_t lo, int64_t hi, int *out, int required) {
    char key[96];
    meta_key(key, sizeof key, cv, suffix);
    int64_t v;
    int r = pn_gguf_get_int(&cv->g, key, &v);
    if (r < 0) return -1;
    if (r > 0) return required ? pn_errorf("%s: missing metadata key \"%s\"", cv->g.path, key) : 0;
    if (v < lo || v > hi) return pn_errorf("%s: metadata \"%s\" = %lld is out of range [%lld, %lld]", cv->g.path, key,
                                           (long long)v, (long long)lo, (long long)hi);
    *out = (int)v;
    return 0;
}

static int read_config(conv *cv) {
    pn_model_config *c = &cv->cfg;
    pn_gguf *g = &cv->g;
    const char *a;
    size_t al;
    int r = pn_gguf_get_str(g, "general.architecture", &a, &al);
    if (r) return r < 0 ? -1 : pn_errorf("%s: missing metadata key \"general.architecture\"", g->path);
    if (al >= sizeof cv->arch_buf) al = sizeof cv->arch_buf - 1;
    memcpy(cv->arch_buf, a, al);
    cv->arch_buf[al] = 0;
    cv->arch = cv->arch_buf;
    memset(c, 0, sizeof *c);
    if (!strcmp(cv->arch, "llama")) c->arch = PN_ARCH_LLAMA;
    else if (!strcmp(cv->arch, "qwen2")) c->arch = PN_ARCH_QWEN2, c->qkv_bias = 1;
    else if (!strcmp(cv->arch, "qwen3")) c->arch = PN_ARCH_QWEN3, c->qk_norm = 1;
    else return pn_errorf("%s: general.architecture \"%s\" is not supported (llama, qwen2, qwen3)", g->path, cv->arch);
    c->max_pos = 4096;
    if (need_int(cv, "block_count", 1, PN_MAX_LAYERS, &c->n_layers, 1) ||
        need_int(cv, "embedding_length", 1, 1 << 20, &c->hidden, 1) ||
        need_int(cv, "feed_forward_length", 1, 1 << 22, &c->intermediate, 1) ||
        need_int(cv, "attention.head_count", 1, 4096, &c->n_heads, 1) ||
        need_int(cv, "context_length", 1, 1 << 30, &c->max_pos, 0))
        return -1;
    c->n_kv_heads = c->n_heads;
    c->head_dim = c->hidden / c->n_heads;
    if (need_int(cv, "attention.head_count_kv", 1, c->n_heads, &c->n_kv_heads, 0) ||
        need_int(cv, c->arch == PN_ARCH_LLAMA ? "rope.dimension_count" : "attention.key_length", 2, 512, &c->head_dim, 0))
        return -1;
    if (c->n_heads % c->n_kv_heads)
        return pn_errorf("%s: %d attention heads are not a multiple of %d kv heads", g->path, c->n_heads, c->n_kv_heads);
    char key[96];
    double theta = 10000, eps = 1e-5;
    meta_key(key, sizeof key, cv, "rope.freq_base");
    if (pn_gguf_get_float(g, key, &theta) < 0) return -1;
    meta_key(key, sizeof key, cv, "attention.layer_norm_rms_epsilon");
    if (pn_gguf_get_float(g, key, &eps) < 0) return -1;
    if (!(theta > 0) || !(eps >= 0 && eps < 1)) return pn_errorf("%s: rope.freq_base %g / rms epsilon %g out of range", g->path, theta, eps);
    c->rope_theta = theta, c->rms_eps = (float)eps;
    // Rope scaling is a property of the model that this converter does not map: refuse rather than guess.
    const char *st;
    size_t sl;
    meta_key(key, sizeof key, cv, "rope.scaling.type");
    if (pn_gguf_get_str(g, key, &st, &sl) == 0 && !(sl == 4 && !memcmp(st, "none", 4)))
        return pn_errorf("%s: %s = \"%.*s\": rope scaling in GGUF files is not supported", g->path, key, (int)sl, st);
    if (pn_gguf_tensor_find(g, "rope_freqs.weight"))
        return pn_errorf("%s: tensor rope_freqs.weight (Llama 3.1 rope scaling factors) is not supported", g->path);
    const pn_gguf_tensor *emb = pn_gguf_tensor_find(g, "token_embd.weight");
    if (!emb) return pn_errorf("%s: no tensor token_embd.weight", g->path);
    c->vocab = (int)emb->ne[1];
    int v = c->vocab;
    if (need_int(cv, "vocab_size", 1, 1 << 24, &v, 0)) return -1;
    if (v != c->vocab)
        return pn_errorf("%s: %s.vocab_size = %d but token_embd.weight has %d rows", g->path, cv->arch, v, c->vocab);
    c->tie_embeddings = pn_gguf_tensor_find(g, "output.weight") == NULL;
    c->bos_id = c->eos_id = -1;
    int64_t id;
    if ((r = pn_gguf_get_int(g, "tokenizer.ggml.bos_token_id", &id)) < 0) return -1;
    if (!r && id >= 0 && id < c->vocab) c->bos_id = (int)id;
    if ((r = pn_gguf_get_int(g, "tokenizer.ggml.eos_token_id", &id)) < 0) return -1;
    if (!r && id >= 0 && id < c->vocab) c->eos_id = (int)id;
    for (int l = 0; l < c->n_layers; l++) snprintf(c->mixer[l], sizeof c->mixer[l], "attn");
    return 0;
}

// The GGUF name of an HF parameter name (gguf-py's tensor map for these architectures).
static int gguf_name(const char *hf, char *out, size_t n) {
    static const char *map[][2] = {
        {"self_attn.q_proj.weight", "attn_q.weight"},   {"self_attn.k_proj.weight", "attn_k.weight"},
        {"self_attn.v_proj.weight", "attn_v.weight"},   {"self_attn.o_proj.weight", "attn_output.weight"},
        {"self_attn.q_proj.bias", "attn_q.bias"},       {"self_attn.k_proj.bias", "attn_k.bias"},
        {"self_attn.v_proj.bias", "attn_v.bias"},       {"self_attn.o_proj.bias", "attn_output.bias"},
        {"self_attn.q_norm.weight", "attn_q_norm.weight"}, {"self_attn.k_norm.weight", "attn_k_norm.weight"},
        {"input_layernorm.weight", "attn_norm.weight"}, {"post_attention_layernorm.weight", "ffn_norm.weight"},
        {"mlp.gate_proj.weight", "ffn_gate.weight"},    {"mlp.up_proj.weight", "ffn_up.weight"},
        {"mlp.down_proj.weight", "ffn_down.weight"},
    };
    if (!strcmp(hf, "model.embed_tokens.weight")) return snprintf(out, n, "token_embd.weight"), 0;
    if (!strcmp(hf, "model.norm.weight")) return snprintf(out, n, "output_norm.weight"), 0;
    if (!strcmp(hf, "lm_head.weight")) return snprintf(out, n, "output.weight"), 0;
    int layer, off = 0; // %n is set only when the whole pattern matched
    if (sscanf(hf, "model.layers.%d.%n", &layer, &off) == 1 && off > 0)
        for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
            if (!strcmp(hf + off, map[i][0])) return snprintf(out, n, "blk.%d.%s", layer, map[i][1]), 0;
    return -1;
}

// llama.cpp's Llama q/k permutation undone: HF row h*hd + j*hd/2 + i = GGUF row h*hd + 2i + j.
static void unpermute_rows(const float *src, float *dst, int64_t rows, int64_t cols, int64_t heads) {
    const int64_t hd = rows / heads;
    for (int64_t h = 0; h < heads; h++)
        for (int64_t j = 0; j < 2; j++)
            for (int64_t i = 0; i < hd / 2; i++)
                memcpy(dst + (h * hd + j * (hd / 2) + i) * cols, src + (h * hd + 2 * i + j) * cols, sizeof(float) * (size_t)cols);
}

static int write_weights(conv *cv, const char *dir, pn_st_dtype dt) {
    const pn_model_config *c = &cv->cfg;
    const int n = pn_model_nparams(c);
    pn_param *ps = pn_calloc((size_t)n, sizeof(pn_param));
    pn_model_param_list(c, NULL, ps);
    pn_st_decl *decl = pn_calloc((size_t)n, sizeof(pn_st_decl));
    const pn_gguf_tensor **src = pn_calloc((size_t)n, sizeof *src);
    int64_t largest = 0, used = 0;
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        char gn[128];
        if (gguf_name(ps[i].name, gn, sizeof gn)) {
            rc = pn_errorf("%s: no GGUF name for parameter %s", cv->g.path, ps[i].name);
            break;
        }
        src[i] = pn_gguf_tensor_find(&cv->g, gn);
        if (!src[i]) {
            rc = pn_errorf("%s: missing tensor %s (for %s)", cv->g.path, gn, ps[i].name);
            break;
        }
        // GGUF's ne is the HF shape reversed; every other dimension must be 1.
        const pn_gguf_tensor *t = src[i];
        int ok = 1;
        for (int k = 0; k < 4; k++) ok &= t->ne[k] == (k < ps[i].ndim ? ps[i].shape[ps[i].ndim - 1 - k] : 1);
        if (!ok) {
            rc = pn_errorf("%s: tensor %s has shape [%lld, %lld, %lld, %lld] (ggml order); the metadata makes %s [%lld, %lld] "
                           "(HF order)", cv->g.path, gn, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                           (long long)t->ne[3], ps[i].name, (long long)ps[i].shape[0],
                           (long long)(ps[i].ndim > 1 ? ps[i].shape[1] : 1));
            break;
        }
        decl[i] = (pn_st_decl){.name = ps[i].name, .dtype = dt, .ndim = ps[i].ndim};
        for (int k = 0; k < ps[i].ndim; k++) decl[i].shape[k] = ps[i].shape[k];
        if (pn_param_numel(&ps[i]) > largest) largest = pn_param_numel(&ps[i]);
        used++;
    }
    // Every tensor of the file must have found its place: an unknown one means a model this converter
    // does not understand, and dropping it silently would give a different model.
    for (int k = 0; k < cv->g.n_tensors && !rc; k++) {
        int found = 0;
        for (int i = 0; i < n && !found; i++) found = src[i] == &cv->g.tensors[k];
        if (!found) rc = pn_errorf("%s: tensor %s has no place in a %s model", cv->g.path, cv->g.tensors[k].name, cv->arch);
    }
    char *path = pn_path_join(dir, "model.safetensors");
    static const char *meta[] = {"format", "pt", NULL};
    pn_st_writer *w = rc ? NULL : pn_st_writer_begin(path, decl, n, meta);
    if (!rc && !w) rc = -1;
    float *buf = rc ? NULL : pn_malloc(sizeof(float) * (size_t)largest), *tmp = rc ? NULL : pn_malloc(sizeof(float) * (size_t)largest);
    uint16_t *half = rc ? NULL : pn_malloc(sizeof(uint16_t) * (size_t)largest);
    const int tty = isatty(2); // a progress line on a terminal only
    for (int i = 0; i < n && !rc; i++) {
        const int64_t numel = pn_param_numel(&ps[i]);
        pn_gguf_dequant(src[i], buf);
        const char *nm = ps[i].name;
        const size_t L = strlen(nm);
        if (c->arch == PN_ARCH_LLAMA && L > 13 && (!strcmp(nm + L - 13, "q_proj.weight") || !strcmp(nm + L - 13, "k_proj.weight"))) {
            const int heads = nm[L - 13] == 'q' ? c->n_heads : c->n_kv_heads;
            unpermute_rows(buf, tmp, ps[i].shape[0], ps[i].shape[1], heads);
            memcpy(buf, tmp, sizeof(float) * (size_t)numel);
        }
        if (dt == PN_ST_BF16) {
            for (int64_t j = 0; j < numel; j++) half[j] = pn_f32_to_bf16(buf[j]);
            rc = pn_st_writer_write(w, half, (size_t)numel * 2);
        } else {
            rc = pn_st_writer_write(w, buf, (size_t)numel * 4);
        }
        if (tty) fprintf(stderr, "\r[convert] tensors %d/%d", i + 1, n);
    }
    if (tty) fprintf(stderr, "\n");
    if (w) rc = rc ? (pn_st_writer_abort(w), -1) : pn_st_writer_finish(w);
    free(buf);
    free(tmp);
    free(half);
    free(path);
    free(decl);
    free(src);
    free(ps);
    return rc;
}

static json_t *jstr(const char *s, size_t n) { return json_stringn(s, n); }

// tokenizer.json and tokenizer_config.json from the GGUF vocabulary (byte-level BPE models only).
static int write_tokenizer(conv *cv, const char *dir) {
    pn_gguf *g = &cv->g;
    const char *model, *pre = "default";
    size_t ml, pl = 7;
    if (pn_gguf_get_str(g, "tokenizer.ggml.model", &model, &ml))
        return pn_errorf("%s: no tokenizer.ggml.model: the file carries no tokenizer", g->path);
    if (!(ml == 4 && !memcmp(model, "gpt2", 4)))
        return pn_errorf("%s: tokenizer.ggml.model \"%.*s\" is not a byte-level BPE (gpt2); SentencePiece vocabularies "
                         "are not supported", g->path, (int)ml, model);
    if (pn_gguf_get_str(g, "tokenizer.ggml.pre", &pre, &pl) < 0) return -1;
    const pn_gguf_kv *toks = pn_gguf_find(g, "tokenizer.ggml.tokens"), *merges = pn_gguf_find(g, "tokenizer.ggml.merges");
    const pn_gguf_kv *types = pn_gguf_find(g, "tokenizer.ggml.token_type");
    if (!toks || toks->type != PN_GGUF_ARRAY || toks->arr_type != PN_GGUF_STRING || !toks->arr_n)
        return pn_errorf("%s: tokenizer.ggml.tokens must be a non-empty array of strings", g->path);
    if (!merges || merges->type != PN_GGUF_ARRAY || merges->arr_type != PN_GGUF_STRING)
        return pn_errorf("%s: tokenizer.ggml.merges must be an array of strings", g->path);
    if (types && (types->type != PN_GGUF_ARRAY || types->arr_type == PN_GGUF_STRING || types->arr_type == PN_GGUF_F32 ||
                  types->arr_type == PN_GGUF_F64 || types->arr_n != toks->arr_n))
        return pn_errorf("%s: tokenizer.ggml.token_type must be an integer array as long as the tokens", g->path);
    if (toks->arr_n > (uint64_t)cv->cfg.vocab)
        return pn_errorf("%s: %llu tokens but the embedding has %d rows", g->path, (unsigned long long)toks->arr_n, cv->cfg.vocab);
    json_t *vocab = json_object(), *added = json_array(), *jm = json_array();
    int rc = 0;
    for (uint64_t i = 0; i < toks->arr_n && !rc; i++) {
        const char *s;
        size_t n;
        pn_gguf_arr_str(toks, i, &s, &n);
        json_t *js = jstr(s, n);
        if (!js || !n) {
            rc = pn_errorf("%s: token %llu is empty or not valid UTF-8", g->path, (unsigned long long)i);
            break;
        }
        json_decref(js);
        char *key = pn_malloc(n + 1);
        memcpy(key, s, n);
        key[n] = 0;
        if (memchr(s, 0, n)) rc = pn_errorf("%s: token %llu holds a NUL byte", g->path, (unsigned long long)i);
        else json_object_set_new(vocab, key, json_integer((json_int_t)i));
        free(key);
        // llama.cpp token types: 3 CONTROL (special), 4 USER_DEFINED (added, not special).
        const int64_t ty = types ? pn_gguf_arr_int(types, i) : 1;
        if (ty == 3 || ty == 4)
            json_array_append_new(added, json_pack("{s:I, s:s%, s:b, s:b, s:b, s:b, s:b}", "id", (json_int_t)i, "content",
                                                   s, n, "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", 0,
                                                   "special", ty == 3));
    }
    for (uint64_t i = 0; i < merges->arr_n && !rc; i++) {
        const char *s;
        size_t n;
        pn_gguf_arr_str(merges, i, &s, &n);
        json_t *js = jstr(s, n);
        if (!js) rc = pn_errorf("%s: merge %llu is not valid UTF-8", g->path, (unsigned long long)i);
        else json_array_append_new(jm, js);
    }
    // The pre-tokenizer of llama.cpp's type (its names).
    json_t *pretok = NULL, *normalizer = json_null();
    int ignore_merges = 0;
#define PRE(name) (pl == strlen(name) && !memcmp(pre, name, pl))
    json_t *bl_noregex = json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 0);
    json_t *bl_regex = json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 1);
    if (PRE("default") || PRE("gpt2") || PRE("gpt-2")) {
        pretok = json_incref(bl_regex);
    } else if (PRE("llama-bpe") || PRE("llama3") || PRE("llama-v3") || PRE("smaug-bpe")) {
        pretok = json_pack("{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, O]}", "type", "Sequence", "pretokenizers", "type", "Split",
                           "pattern", "Regex", RE_LLAMA3, "behavior", "Isolated", "invert", 0, bl_noregex);
        ignore_merges = 1;
    } else if (PRE("qwen2")) {
        pretok = json_pack("{s:s, s:[{s:s, s:{s:s}, s:s, s:b}, O]}", "type", "Sequence", "pretokenizers", "type", "Split",
                           "pattern", "Regex", RE_QWEN2, "behavior", "Isolated", "invert", 0, bl_noregex);
        json_decref(normalizer);
        normalizer = json_pack("{s:s}", "type", "NFC");
    } else if (PRE("smollm")) {
        pretok = json_pack("{s:s, s:[{s:s, s:b}, O]}", "type", "Sequence", "pretokenizers", "type", "Digits",
                           "individual_digits", 1, bl_regex);
    } else if (!rc) {
        rc = pn_errorf("%s: tokenizer.ggml.pre \"%.*s\" is not a pre-tokenizer this converter knows (default, gpt2, "
                       "llama-bpe, llama3, qwen2, smollm)", g->path, (int)pl, pre);
    }
#undef PRE
    json_decref(bl_noregex);
    json_decref(bl_regex);
    // Special ids and whether BOS/EOS are added (the post-processor, as HF's Llama tokenizers build it).
    int64_t bos = -1, eos = -1, unk = -1, pad = -1;
    int add_bos = 0, add_eos = 0;
    if (pn_gguf_get_int(g, "tokenizer.ggml.bos_token_id", &bos) < 0 || pn_gguf_get_int(g, "tokenizer.ggml.eos_token_id", &eos) < 0 ||
        pn_gguf_get_int(g, "tokenizer.ggml.unknown_token_id", &unk) < 0 ||
        pn_gguf_get_int(g, "tokenizer.ggml.padding_token_id", &pad) < 0 ||
        pn_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &add_bos) < 0 ||
        pn_gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &add_eos) < 0)
        rc = -1;
    const int64_t nt = (int64_t)toks->arr_n;
    if (!rc && ((bos >= nt) || (eos >= nt) || (unk >= nt) || (pad >= nt)))
        rc = pn_errorf("%s: a special token id (bos %lld, eos %lld, unk %lld, pad %lld) is outside the %lld tokens", g->path,
                       (long long)bos, (long long)eos, (long long)unk, (long long)pad, (long long)nt);
    if (!rc && ((add_bos && bos < 0) || (add_eos && eos < 0)))
        rc = pn_errorf("%s: add_bos_token / add_eos_token is set but the token id is missing", g->path);
    json_t *post = json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 1, "trim_offsets", 0, "use_regex", 1);
    if (!rc && (add_bos || add_eos)) {
        const char *bs = "", *es = "";
        size_t bl = 0, el = 0;
        if (add_bos) pn_gguf_arr_str(toks, (uint64_t)bos, &bs, &bl);
        if (add_eos) pn_gguf_arr_str(toks, (uint64_t)eos, &es, &el);
        json_t *single = json_array(), *specials = json_object();
        char *bname = pn_malloc(bl + 1), *ename = pn_malloc(el + 1);
        memcpy(bname, bs, bl), bname[bl] = 0;
        memcpy(ename, es, el), ename[el] = 0;
        if (add_bos) {
            json_array_append_new(single, json_pack("{s:{s:s, s:i}}", "SpecialToken", "id", bname, "type_id", 0));
            json_object_set_new(specials, bname, json_pack("{s:s, s:[I], s:[s]}", "id", bname, "ids", (json_int_t)bos, "tokens", bname));
        }
        json_array_append_new(single, json_pack("{s:{s:s, s:i}}", "Sequence", "id", "A", "type_id", 0));
        if (add_eos) {
            json_array_append_new(single, json_pack("{s:{s:s, s:i}}", "SpecialToken", "id", ename, "type_id", 0));
            json_object_set_new(specials, ename, json_pack("{s:s, s:[I], s:[s]}", "id", ename, "ids", (json_int_t)eos, "tokens", ename));
        }
        json_decref(post);
        post = json_pack("{s:s, s:o, s:[{s:{s:s, s:i}}], s:o}", "type", "TemplateProcessing", "single", single, "pair",
                         "Sequence", "id", "A", "type_id", 0, "special_tokens", specials);
        free(bname);
        free(ename);
    }
    char *tpath = pn_path_join(dir, "tokenizer.json"), *cpath = pn_path_join(dir, "tokenizer_config.json");
    if (!rc) {
        json_t *tj = json_pack("{s:s, s:n, s:n, s:o, s:o, s:o, s:o, s:o, s:{s:s, s:n, s:n, s:s, s:s, s:b, s:b, s:b, s:o, s:o}}",
                               "version", "1.0", "truncation", "padding", "added_tokens", added, "normalizer", normalizer,
                               "pre_tokenizer", pretok, "post_processor", post, "decoder",
                               json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 1, "trim_offsets", 1,
                                         "use_regex", 1),
                               "model", "type", "BPE", "dropout", "unk_token", "continuing_subword_prefix", "",
                               "end_of_word_suffix", "", "fuse_unk", 0, "byte_fallback", 0, "ignore_merges", ignore_merges,
                               "vocab", vocab, "merges", jm);
        added = normalizer = pretok = post = vocab = jm = NULL; // owned by tj now, even when packing failed
        if (!tj) rc = pn_errorf("%s: could not build tokenizer.json", g->path);
        json_t *tc = json_pack("{s:s, s:b, s:b, s:I, s:b}", "tokenizer_class", "PreTrainedTokenizerFast", "add_bos_token",
                               add_bos, "add_eos_token", add_eos, "model_max_length", (json_int_t)cv->cfg.max_pos,
                               "clean_up_tokenization_spaces", 0);
        static const char *names[] = {"bos_token", "eos_token", "unk_token", "pad_token"};
        const int64_t ids[] = {bos, eos, unk, pad};
        for (int k = 0; k < 4; k++)
            if (ids[k] >= 0) {
                const char *s;
                size_t n;
                pn_gguf_arr_str(toks, (uint64_t)ids[k], &s, &n);
                json_object_set_new(tc, names[k], json_stringn(s, n));
            }
        const char *tmpl;
        size_t tl;
        if (pn_gguf_get_str(g, "tokenizer.chat_template", &tmpl, &tl) == 0) {
            json_t *jt = json_stringn(tmpl, tl);
            if (jt) json_object_set_new(tc, "chat_template", jt);
        }
        pn_atomic_file af;
        for (int k = 0; k < 2 && !rc && tc; k++) {
            rc = pn_atomic_open(&af, k ? cpath : tpath);
            if (!rc) {
                rc = json_dumpf(k ? tc : tj, af.f, JSON_INDENT(1)) ? pn_errorf("%s: write failed", k ? cpath : tpath) : 0;
                fputc('\n', af.f);
                rc = rc ? (pn_atomic_abort(&af), -1) : pn_atomic_commit(&af);
            }
        }
        json_decref(tj);
        json_decref(tc);
    }
    json_decref(vocab);
    json_decref(added);
    json_decref(jm);
    json_decref(pretok);
    json_decref(normalizer);
    json_decref(post);
    free(tpath);
    free(cpath);
    return rc;
}

static int run(int argc, char **argv) {
    static const struct option opts[] = {{"from-gguf", 1, 0, 'g'}, {"out", 1, 0, 'o'}, {"dtype", 1, 0, 'd'},
                                         {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
    const char *in = NULL, *out = NULL;
    pn_st_dtype dt = PN_ST_BF16;
    int ch;
    optind = 0; // full re-initialisation of getopt (glibc): run() may be called again
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (ch) {
        case 'g': in = optarg; break;
        case 'o': out = optarg; break;
        case 'd':
            if (!strcmp(optarg, "bf16")) dt = PN_ST_BF16;
            else if (!strcmp(optarg, "f32")) dt = PN_ST_F32;
            else return pn_errorf("--dtype: '%s' is not bf16 or f32", optarg);
            break;
        case 'h': usage(stdout); exit(0);
        default: return pn_errorf("%s: unknown option or missing value (see --help)", argv[optind - 1]);
        }
    }
    if (!in || !out || optind < argc) {
        usage(stderr);
        return pn_errorf("--from-gguf FILE and --out DIR are required");
    }
    struct stat sb;
    if (stat(out, &sb) == 0) return pn_errorf("%s: already exists (postnas-convert writes a new folder)", out);
    conv cv;
    if (pn_gguf_open(&cv.g, in)) return -1;
    int rc = read_config(&cv);
    const size_t tl = strlen(out) + 32;
    char *tmp = pn_malloc(tl);
    snprintf(tmp, tl, "%s.tmp.%d", out, (int)getpid());
    if (!rc && mkdir(tmp, 0777) != 0) rc = pn_errorf("%s: cannot create folder: %s", tmp, strerror(errno));
    const int made = !rc;
    if (!rc) {
        snprintf(cv.cfg.torch_dtype, sizeof cv.cfg.torch_dtype, "%s", dt == PN_ST_F32 ? "float32" : "bfloat16");
        char *cp = pn_path_join(tmp, "config.json");
        rc = write_tokenizer(&cv, tmp) || pn_hf_config_save(&cv.cfg, cp) || write_weights(&cv, tmp, dt) ? -1 : 0;
        free(cp);
    }
    if (!rc && rename(tmp, out) != 0) rc = pn_errorf("%s: cannot rename %s to it: %s", out, tmp, strerror(errno));
    if (rc && made) { // leave nothing that looks like a model
        static const char *files[] = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"};
        for (int k = 0; k < 4; k++) {
            char *p = pn_path_join(tmp, files[k]);
            unlink(p);
            free(p);
        }
        rmdir(tmp);
    }
    if (!rc)
        printf("wrote %s: %s, %d layers, hidden %d, vocab %d, %.1fM parameters (%s), from %s\n", out, cv.arch,
               cv.cfg.n_layers, cv.cfg.hidden, cv.cfg.vocab, (double)pn_hf_config_params(&cv.cfg) / 1e6,
               pn_st_dtype_name(dt), in);
    free(tmp);
    pn_gguf_close(&cv.g);
    return rc;
}

#ifndef PN_CONVERT_NO_MAIN // tests/fuzz/fuzz_gguf.c compiles this file in and calls run()
int main(int argc, char **argv) {
    if (run(argc, argv)) {
        fprintf(stderr, "postnas-convert: error: %s\n", pn_last_error());
        return 1;
    }
    return 0;
}
#endif
