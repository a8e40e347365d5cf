// postnas-mkckpt: write a Hugging Face checkpoint folder (config.json + safetensors) of any Qwen2, Qwen3
// or Llama shape with random weights from a seed. Real sizes (--preset qwen2.5-1.5b) let the GPU path be
// measured at scale without downloading anything; tiny ones feed the demo and the tests. Weights follow
// HF's init (linear weights and embeddings N(0, init_std), norms 1, biases N(0, init_std)).
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <math.h>
#include <unistd.h>

#include <jansson.h>

#include "../../data/pn_tokenizer.h"
#include "../../kernels/cpu/threads.h"
#include "../pn_common.h"
#include "../pn_model.h"
#include "../pn_rng.h"
#include "../pn_safetensors.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: postnas-mkckpt --out DIR [--preset NAME] [--arch qwen2|qwen3|llama]\n"
            "         [--hidden N] [--intermediate N] [--layers N] [--heads N] [--kv-heads N] [--head-dim N]\n"
            "         [--vocab N] [--tie 0|1] [--rope-theta F] [--rms-eps F] [--sliding-window N]\n"
            "         [--max-window-layers N] [--max-pos N] [--seed S] [--init-std F] [--dtype bf16|f32]\n"
            "         [--shard-mb MB] [--tokenizer bytes|none|DIR] [--layer-types T,T,...]\n"
            "         [--lin-heads N] [--lin-head-dim N] [--lin-expand-v F]\n"
            "--tokenizer: 'bytes' (default when the vocabulary has room for 257 ids) writes the project's byte-level\n"
            "tokenizer.json; DIR copies a Hugging Face tokenizer (tokenizer.json or vocab.json + merges.txt).\n"
            "--layer-types: one of attn, swa, jet, gdn, deltanet per layer makes a Jet-Nemotron hybrid (Qwen2 base;\n"
            "JetBlock / GDN heads = --heads, d_k = 3/4 head dim, d_v = 2 d_k unless --lin-* say otherwise; swa uses\n"
            "--sliding-window, default 64)\n"
            "with each block's published init.\n"
            "presets: tiny (default; the byte-level vocabulary of 257), qwen2.5-0.5b, qwen2.5-1.5b, qwen2.5-3b, qwen3-1.7b, llama-3.2-1b\n");
}

static int preset(pn_model_config *c, const char *name) {
    memset(c, 0, sizeof *c);
    c->arch = PN_ARCH_QWEN2;
    c->rms_eps = 1e-6f;
    c->rope_theta = 1e6;
    c->tie_embeddings = 1;
    c->max_pos = 32768;
    c->bos_id = 151643;
    c->eos_id = 151643;
    if (!strcmp(name, "tiny")) {
        *c = (pn_model_config){.arch = PN_ARCH_QWEN2, .hidden = 64, .intermediate = 192, .n_layers = 4, .n_heads = 4,
                               .n_kv_heads = 2, .head_dim = 16, .vocab = 257, .max_pos = 4096, .rms_eps = 1e-6f,
                               .tie_embeddings = 1, .rope_theta = 10000, .bos_id = 1, .eos_id = 2};
    } else if (!strcmp(name, "qwen2.5-0.5b")) {
        c->hidden = 896, c->intermediate = 4864, c->n_layers = 24, c->n_heads = 14, c->n_kv_heads = 2;
        c->head_dim = 64, c->vocab = 151936;
    } else if (!strcmp(name, "qwen2.5-1.5b")) {
        c->hidden = 1536, c->intermediate = 8960, c->n_layers = 28, c->n_heads = 12, c->n_kv_heads = 2;
        c->head_dim = 128, c->vocab = 151936;
    } else if (!strcmp(name, "qwen2.5-3b")) {
        c->hidden = 2048, c->intermediate = 11008, c->n_layers = 36, c->n_heads = 16, c->n_kv_heads = 2;
        c->head_dim = 128, c->vocab = 151936;
    } else if (!strcmp(name, "qwen3-1.7b")) {
        c->arch = PN_ARCH_QWEN3;
        c->hidden = 2048, c->intermediate = 6144, c->n_layers = 28, c->n_heads = 16, c->n_kv_heads = 8;
        c->head_dim = 128, c->vocab = 151936;
    } else if (!strcmp(name, "llama-3.2-1b")) {
        *c = (pn_model_config){.arch = PN_ARCH_LLAMA, .hidden = 2048, .intermediate = 8192, .n_layers = 16,
                               .n_heads = 32, .n_kv_heads = 8, .head_dim = 64, .vocab = 128256, .max_pos = 131072,
                               .rms_eps = 1e-5f, .tie_embeddings = 1, .rope_theta = 500000,
                               .rope_type = PN_ROPE_LLAMA3, .rope_factor = 32, .rope_low_freq = 1,
                               .rope_high_freq = 4, .rope_orig_max_pos = 8192, .bos_id = 128000, .eos_id = 128001};
    } else {
        return pn_errorf("unknown preset '%s'", name);
    }
    return 0;
}

static int parse_int(const char *opt, const char *s, int lo, int *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > (1 << 30)) return pn_errorf("--%s: '%s' is not an integer >= %d", opt, s, lo);
    *out = (int)v;
    return 0;
}

static int parse_num(const char *opt, const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || end == s || !(v > 0)) return pn_errorf("--%s: '%s' is not a positive number", opt, s);
    *out = v;
    return 0;
}

static int mkdir_p(const char *dir) {
    char *p = pn_strdup(dir);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            mkdir(p, 0777);
            *s = '/';
        }
    int rc = mkdir(p, 0777);
    free(p);
    if (rc != 0 && errno != EEXIST) return pn_errorf("%s: cannot create folder: %s", dir, strerror(errno));
    return 0;
}

typedef struct {
    uint64_t seed;
    double std;
    pn_st_dtype dtype;
} gen_opts;

static size_t param_bytes(const pn_param *p, pn_st_dtype dt) {
    return (size_t)pn_param_numel(p) * pn_st_dtype_size(dt);
}

typedef struct {
    const pn_param *p;
    const gen_opts *g;
    uint64_t stream;
    float *out;
} init_job;

static void init_range(void *ctx, int64_t b, int64_t e) {
    const init_job *j = ctx;
    for (int64_t k = b; k < e; k++) j->out[k] = pn_param_init_value(j->p, j->g->std, j->g->seed, j->stream, (uint64_t)k);
}

// Writes params [lo, hi) into one safetensors file.
static int write_file(const char *path, const pn_param *ps, int lo, int hi, const gen_opts *g) {
    pn_st_decl *decl = pn_calloc((size_t)(hi - lo), sizeof(pn_st_decl));
    size_t largest = 0;
    for (int i = lo; i < hi; i++) {
        pn_st_decl *d = &decl[i - lo];
        d->name = ps[i].name;
        d->dtype = g->dtype;
        d->ndim = ps[i].ndim;
        for (int k = 0; k < ps[i].ndim; k++) d->shape[k] = ps[i].shape[k];
        if (param_bytes(&ps[i], PN_ST_F32) > largest) largest = param_bytes(&ps[i], PN_ST_F32);
    }
    static const char *meta[] = {"format", "pt", NULL};
    pn_st_writer *w = pn_st_writer_begin(path, decl, hi - lo, meta);
    free(decl);
    if (!w) return -1;
    float *buf = pn_malloc(largest);
    uint16_t *half = pn_malloc(largest / 2 + 2);
    int rc = 0;
    for (int i = lo; i < hi && !rc; i++) {
        const pn_param *p = &ps[i];
        const int64_t n = pn_param_numel(p);
        init_job job = {.p = p, .g = g, .stream = (uint64_t)i + 1, .out = buf};
        pn_cpu_parallel_for(n, 0, 50, init_range, &job); // counter-based: any split gives the same values
        if (g->dtype == PN_ST_BF16) {
            for (int64_t j = 0; j < n; j++) half[j] = pn_f32_to_bf16(buf[j]);
            rc = pn_st_writer_write(w, half, (size_t)n * 2);
        } else {
            rc = pn_st_writer_write(w, buf, (size_t)n * 4);
        }
    }
    free(buf);
    free(half);
    if (rc) {
        pn_st_writer_abort(w);
        return -1;
    }
    return pn_st_writer_finish(w);
}

static int write_index(const char *dir, const pn_param *ps, int n, const int *file_of, int nfiles, size_t total) {
    char *path = pn_path_join(dir, "model.safetensors.index.json");
    pn_atomic_file af;
    int rc = pn_atomic_open(&af, path);
    free(path);
    if (rc) return -1;
    fprintf(af.f, "{\n  \"metadata\": {\"total_size\": %zu},\n  \"weight_map\": {\n", total);
    for (int i = 0; i < n; i++)
        fprintf(af.f, "    \"%s\": \"model-%05d-of-%05d.safetensors\"%s\n", ps[i].name, file_of[i] + 1, nfiles,
                i + 1 < n ? "," : "");
    fprintf(af.f, "  }\n}\n");
    return pn_atomic_commit(&af);
}

// Copies one file (if present) from src to dst, atomically.
static int copy_file(const char *src_dir, const char *dst_dir, const char *name) {
    char *sp = pn_path_join(src_dir, name), *dp = pn_path_join(dst_dir, name);
    size_t len;
    int rc = 0;
    if (access(sp, F_OK) == 0) {
        char *buf = pn_read_file(sp, &len);
        pn_atomic_file af;
        if (!buf || pn_atomic_open(&af, dp)) {
            rc = -1;
        } else {
            fwrite(buf, 1, len, af.f);
            rc = pn_atomic_commit(&af);
        }
        free(buf);
    }
    free(sp);
    free(dp);
    return rc;
}

// The byte tokenizer as a Hugging Face tokenizer.json (BPE without merges over GPT-2's byte alphabet, so
// `tokenizers` and transformers load it too), or a copy of a tokenizer folder's files.
static int write_tokenizer(const pn_tokenizer *tok, const char *arg, const char *out) {
    if (strcmp(arg, "bytes") != 0) {
        static const char *files[] = {"tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json"};
        for (int i = 0; i < 4; i++)
            if (copy_file(arg, out, files[i])) return -1;
        return 0;
    }
    json_t *vocab = json_object();
    for (int id = 0; id < 256; id++) json_object_set_new(vocab, pn_tokenizer_token(tok, id), json_integer(id));
    json_t *root = json_pack("{s:s, s:[{s:i, s:s, s:b, s:b, s:b, s:b, s:b}], s:n, s:{s:s, s:b, s:b, s:b}, "
                             "s:n, s:{s:s, s:b, s:b, s:b}, s:{s:s, s:o, s:[]}}",
                             "version", "1.0", "added_tokens", "id", 256, "content", "<|endoftext|>", "single_word", 0,
                             "lstrip", 0, "rstrip", 0, "normalized", 0, "special", 1, "normalizer", "pre_tokenizer",
                             "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1, "use_regex", 0,
                             "post_processor", "decoder", "type", "ByteLevel", "add_prefix_space", 0, "trim_offsets", 1,
                             "use_regex", 0, "model", "type", "BPE", "vocab", vocab, "merges");
    char *tj = pn_path_join(out, "tokenizer.json"), *tc = pn_path_join(out, "tokenizer_config.json");
    char *s = json_dumps(root, JSON_INDENT(1));
    json_decref(root);
    pn_atomic_file af;
    int rc = pn_atomic_open(&af, tj);
    if (!rc) {
        fputs(s, af.f);
        rc = pn_atomic_commit(&af);
    }
    if (!rc && !(rc = pn_atomic_open(&af, tc))) {
        fputs("{\"tokenizer_class\": \"PreTrainedTokenizerFast\", \"eos_token\": \"<|endoftext|>\", "
              "\"model_max_length\": 4096}\n", af.f);
        rc = pn_atomic_commit(&af);
    }
    free(s);
    free(tj);
    free(tc);
    return rc;
}

// A Jet-Nemotron hybrid from a comma-separated list of layer types (one per layer). The JetBlock and GDN
// shapes follow the base attention (heads, d_k = 3/4 of the head dim, d_v = 2 d_k), as pn_block_default
// scales the paper's 2B shape; every block config is checked before anything is written.
typedef struct {
    int heads, head_dim; // 0: from the base attention
    double expand_v;
} lin_shape;

static int set_layer_types(pn_model_config *c, const char *list, int window, const lin_shape *lin) {
    if (c->arch != PN_ARCH_QWEN2) return pn_errorf("--layer-types: hybrids are built on a qwen2 base (--arch qwen2)");
    char *s = pn_strdup(list), *save = NULL;
    int n = 0, rc = 0;
    for (char *t = strtok_r(s, ",", &save); t && !rc; t = strtok_r(NULL, ",", &save), n++) {
        if (n >= c->n_layers) {
            rc = pn_errorf("--layer-types lists more than --layers %d types", c->n_layers);
        } else if (!pn_block_find(t)) {
            rc = pn_error_prefix("--layer-types: entry %d", n);
        } else {
            snprintf(c->mixer[n], sizeof c->mixer[n], "%s", t);
            c->window[n] = !strcmp(t, "swa") ? window : 0;
        }
    }
    free(s);
    if (rc) return -1;
    if (n != c->n_layers) return pn_errorf("--layer-types lists %d types for %d layers", n, c->n_layers);
    c->arch = PN_ARCH_JET_NEMOTRON;
    // Every linear type the layers use gets the --lin-* shape (its efficient_attention_config section).
    const int dk = lin->head_dim ? lin->head_dim : c->head_dim * 3 / 4 > 0 ? c->head_dim * 3 / 4 : 1;
    for (int l = 0; l < c->n_layers; l++) {
        const pn_block_type *bt = pn_block_find(c->mixer[l]);
        if (!bt->section || !strcmp(bt->name, "swa") || pn_config_mixer(c, bt->name)) continue;
        pn_block_cfg bc = pn_block_default(c, bt->name);
        bc.lin_heads = lin->heads ? lin->heads : c->n_heads, bc.lin_head_k = dk, bc.expand_v = lin->expand_v;
        bc.conv_size = 4, bc.norm_eps = 1e-5f, bc.gen_reduction = 8;
        const int vd = (int)((double)bc.lin_heads * dk * lin->expand_v);
        while (bc.gen_reduction > 1 && vd % bc.gen_reduction) bc.gen_reduction /= 2;
        pn_config_set_mixer(c, &bc);
    }
    for (int l = 0; l < c->n_layers; l++) {
        const pn_block_cfg bc = pn_block_default(c, c->mixer[l]);
        char what[48];
        snprintf(what, sizeof what, "--layer-types: layer %d", l);
        if (pn_block_find(c->mixer[l])->check(&bc, what)) return -1;
    }
    return 0;
}

static int run(int argc, char **argv) {
    static const struct option opts[] = {
        {"out", 1, 0, 'o'}, {"preset", 1, 0, 'p'}, {"arch", 1, 0, 'a'}, {"hidden", 1, 0, 'H'},
        {"intermediate", 1, 0, 'I'}, {"layers", 1, 0, 'L'}, {"heads", 1, 0, 'h'}, {"kv-heads", 1, 0, 'k'},
        {"head-dim", 1, 0, 'd'}, {"vocab", 1, 0, 'V'}, {"tie", 1, 0, 't'}, {"rope-theta", 1, 0, 'r'},
        {"rms-eps", 1, 0, 'e'}, {"sliding-window", 1, 0, 'w'}, {"max-window-layers", 1, 0, 'm'},
        {"max-pos", 1, 0, 'P'}, {"seed", 1, 0, 's'}, {"init-std", 1, 0, 'S'}, {"dtype", 1, 0, 'D'},
        {"shard-mb", 1, 0, 'M'}, {"tokenizer", 1, 0, 'T'}, {"layer-types", 1, 0, 'Y'}, {"help", 0, 0, 'Z'},
        {"lin-heads", 1, 0, 'n'}, {"lin-head-dim", 1, 0, 'K'}, {"lin-expand-v", 1, 0, 'E'}, {0, 0, 0, 0}};
    // The preset is applied first so every other flag overrides it, whatever the order.
    const char *preset_name = "tiny", *out = NULL, *tok_arg = NULL, *layer_types = NULL;
    lin_shape lin = {0, 0, 2.0};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--preset") && i + 1 < argc) preset_name = argv[i + 1];
        if (!strncmp(argv[i], "--preset=", 9)) preset_name = argv[i] + 9;
    }
    pn_model_config c;
    if (preset(&c, preset_name)) return -1;
    gen_opts g = {.seed = 0, .std = 0.02, .dtype = PN_ST_BF16};
    int head_dim_set = 0, sw = 0, mwl = -1, shard_mb = 0, tie = c.tie_embeddings, seed = 0;
    double num;
    int opt;
    opterr = 0; // report bad options through the one error line instead of getopt's own
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        int rc = 0;
        switch (opt) {
        case 'o': out = optarg; break;
        case 'p': break;
        case 'a':
            if (!strcmp(optarg, "qwen2")) c.arch = PN_ARCH_QWEN2;
            else if (!strcmp(optarg, "qwen3")) c.arch = PN_ARCH_QWEN3;
            else if (!strcmp(optarg, "llama")) c.arch = PN_ARCH_LLAMA;
            else rc = pn_errorf("--arch: unknown architecture '%s' (qwen2, qwen3, llama)", optarg);
            break;
        case 'H': rc = parse_int("hidden", optarg, 2, &c.hidden); break;
        case 'I': rc = parse_int("intermediate", optarg, 1, &c.intermediate); break;
        case 'L': rc = parse_int("layers", optarg, 1, &c.n_layers); break;
        case 'h': rc = parse_int("heads", optarg, 1, &c.n_heads); break;
        case 'k': rc = parse_int("kv-heads", optarg, 1, &c.n_kv_heads); break;
        case 'd': rc = parse_int("head-dim", optarg, 2, &c.head_dim), head_dim_set = 1; break;
        case 'V': rc = parse_int("vocab", optarg, 1, &c.vocab); break;
        case 't': rc = parse_int("tie", optarg, 0, &tie); break;
        case 'r': rc = parse_num("rope-theta", optarg, &c.rope_theta); break;
        case 'e': rc = parse_num("rms-eps", optarg, &num), c.rms_eps = (float)num; break;
        case 'w': rc = parse_int("sliding-window", optarg, 1, &sw); break;
        case 'm': rc = parse_int("max-window-layers", optarg, 0, &mwl); break;
        case 'P': rc = parse_int("max-pos", optarg, 1, &c.max_pos); break;
        case 's': rc = parse_int("seed", optarg, 0, &seed); break;
        case 'S': rc = parse_num("init-std", optarg, &g.std); break;
        case 'D':
            if (!strcmp(optarg, "bf16")) g.dtype = PN_ST_BF16;
            else if (!strcmp(optarg, "f32")) g.dtype = PN_ST_F32;
            else rc = pn_errorf("--dtype: '%s' is not bf16 or f32", optarg);
            break;
        case 'M': rc = parse_int("shard-mb", optarg, 1, &shard_mb); break;
        case 'T': tok_arg = optarg; break;
        case 'Y': layer_types = optarg; break;
        case 'n': rc = parse_int("lin-heads", optarg, 1, &lin.heads); break;
        case 'K': rc = parse_int("lin-head-dim", optarg, 1, &lin.head_dim); break;
        case 'E': rc = parse_num("lin-expand-v", optarg, &lin.expand_v); break;
        case '?':
        case 'Z': usage(stdout); exit(0);
        default: return pn_errorf("unknown option or missing value: '%s' (see --help)", argv[optind - 1]);
        }
        if (rc) return -1;
    }
    if (!out) {
        return pn_errorf("--out DIR is required (see --help)");
    }
    if (optind < argc) return pn_errorf("unexpected argument '%s'", argv[optind]);
    g.seed = (uint64_t)seed;
    c.tie_embeddings = tie != 0;
    if (!head_dim_set) {
        if (c.hidden % c.n_heads) return pn_errorf("--hidden must be a multiple of --heads (or give --head-dim)");
        c.head_dim = c.hidden / c.n_heads;
    }
    if (c.n_kv_heads > c.n_heads || c.n_heads % c.n_kv_heads) return pn_errorf("--heads must be a multiple of --kv-heads");
    if (c.head_dim % 2) return pn_errorf("--head-dim must be even");
    if (c.n_layers > PN_MAX_LAYERS) return pn_errorf("--layers: at most %d", PN_MAX_LAYERS);
    c.qkv_bias = c.arch == PN_ARCH_QWEN2;
    c.qk_norm = c.arch == PN_ARCH_QWEN3;
    if (c.bos_id >= c.vocab) c.bos_id = -1;
    if (c.eos_id >= c.vocab) c.eos_id = c.vocab - 1;
    if (layer_types) {
        if (set_layer_types(&c, layer_types, sw ? sw : 64, &lin)) return -1;
    } else if (sw) {
        for (int l = mwl < 0 ? 0 : mwl; l < c.n_layers; l++) c.window[l] = sw;
    }

    if (!tok_arg) tok_arg = c.vocab >= 257 ? "bytes" : "none";
    pn_tokenizer *tok = NULL;
    if (!strcmp(tok_arg, "bytes")) {
        tok = pn_tokenizer_bytes();
    } else if (strcmp(tok_arg, "none") != 0 && !(tok = pn_tokenizer_load(tok_arg))) {
        return -1;
    }
    if (tok && pn_tokenizer_vocab_size(tok) > c.vocab) {
        pn_errorf("--tokenizer %s has %d tokens, more than --vocab %d", tok_arg, pn_tokenizer_vocab_size(tok), c.vocab);
        pn_tokenizer_free(tok);
        return -1;
    }
    if (tok) { // the model's special ids follow its tokenizer
        c.eos_id = pn_tokenizer_eos_id(tok);
        c.bos_id = pn_tokenizer_bos_id(tok);
    }
    if (mkdir_p(out) || (tok && write_tokenizer(tok, tok_arg, out))) {
        pn_tokenizer_free(tok);
        return -1;
    }
    pn_tokenizer_free(tok);
    char *cfg_path = pn_path_join(out, "config.json");
    snprintf(c.torch_dtype, sizeof c.torch_dtype, "%s", g.dtype == PN_ST_F32 ? "float32" : "bfloat16");
    int rc = pn_hf_config_save(&c, cfg_path);
    free(cfg_path);
    if (rc) return -1;
    const int n = pn_model_nparams(&c);
    pn_param *ps = pn_calloc((size_t)n, sizeof(pn_param));
    pn_model_param_list(&c, NULL, ps);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += param_bytes(&ps[i], g.dtype);
    if (!shard_mb) {
        char *path = pn_path_join(out, "model.safetensors");
        rc = write_file(path, ps, 0, n, &g);
        free(path);
    } else { // greedy shards of at most shard_mb (a tensor larger than that gets a shard of its own)
        int *file_of = pn_calloc((size_t)n, sizeof(int)), nfiles = 0;
        size_t in_file = 0, limit = (size_t)shard_mb << 20;
        for (int i = 0; i < n; i++) {
            size_t b = param_bytes(&ps[i], g.dtype);
            if (i > 0 && in_file + b > limit) nfiles++, in_file = 0;
            file_of[i] = nfiles;
            in_file += b;
        }
        nfiles++;
        for (int f = 0, lo = 0; f < nfiles && !rc; f++) {
            int hi = lo;
            while (hi < n && file_of[hi] == f) hi++;
            char name[64];
            snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", f + 1, nfiles);
            char *path = pn_path_join(out, name);
            rc = write_file(path, ps, lo, hi, &g);
            free(path);
            lo = hi;
        }
        if (!rc) rc = write_index(out, ps, n, file_of, nfiles, total);
        free(file_of);
    }
    free(ps);
    if (rc) return -1;
    printf("wrote %s: %s, %.1fM parameters, %.1f MB (%s)\n", out, pn_arch_name(c.arch),
           (double)pn_hf_config_params(&c) / 1e6, (double)total / 1e6, pn_st_dtype_name(g.dtype));
    return 0;
}

int main(int argc, char **argv) {
    if (run(argc, argv)) {
        fprintf(stderr, "postnas-mkckpt: error: %s\n", pn_last_error());
        return 1;
    }
    return 0;
}
