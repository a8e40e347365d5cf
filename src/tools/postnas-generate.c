// postnas-generate: generate from a Hugging Face checkpoint with a KV cache, on the CPU or a CUDA GPU.
// Prints the generated text on stdout (token ids with --print-ids, or when the folder has no tokenizer) and
// prefill/decode speeds on stderr. --dump-logits writes the
// prompt's logits ([T, vocab] F32) and ids ([T] I32) as safetensors, the format the parity tests read.
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../data/pn_tokenizer.h"
#include "../../kernels/cpu/threads.h"
#include "../pn_common.h"
#include "../pn_model.h"
#include "../pn_safetensors.h"

static void usage(FILE *f) {
    fprintf(f, "usage: postnas-generate --model DIR (--prompt TEXT | --ids 1,2,3) [--max-new-tokens N]\n"
               "         [--temperature T [--top-k K] [--top-p P] --seed S] [--dump-logits FILE]\n"
               "         [--device auto|cpu|cuda] [--print-ids] [--no-special-tokens] [--threads N] [--prefill-chunk N]\n"
               "The prompt is tokenized with the model folder's tokenizer (tokenizer.json, or vocab.json +\n"
               "merges.txt) as Hugging Face's encode does by default: the post-processor's special tokens (a BOS\n"
               "for Llama 3) are added unless --no-special-tokens. The output is decoded text, or ids with\n"
               "--print-ids or when there is no usable tokenizer (--ids runs without one). --threads: CPU threads\n"
               "(default: OMP_NUM_THREADS, else the cores this process may use). --prefill-chunk: the prompt\n"
               "runs through the model N tokens at a time, each chunk continuing the decode state of the ones\n"
               "before (default 1024; 0: the whole prompt at once): activations for N tokens, not the prompt.\n"
               "Greedy unless --temperature T > 0: then each token is drawn from softmax(logits / T) of the K\n"
               "largest logits (--top-k; 0: all), of those the fewest whose probability reaches P (--top-p, 1:\n"
               "all); the draws of a --seed are the same on the CPU and the GPU.\n");
}

// "1,2,3": decimal token ids, each in [0, INT32_MAX], separated by single commas (no blanks, signs or
// empty items).
static int parse_ids(const char *s, int32_t **out, int *n) {
    int cap = 16;
    *out = pn_malloc(sizeof(int32_t) * (size_t)cap);
    *n = 0;
    for (const char *p = s; *p;) {
        const char *e = p;
        while (*e >= '0' && *e <= '9') e++;
        if (e == p || (*e && *e != ',') || (*e == ',' && !e[1]) || e - p > 10)
            return pn_errorf("--ids: '%s' is not a comma-separated list of token ids", s);
        long long v = 0;
        for (const char *q = p; q < e; q++) v = 10 * v + (*q - '0');
        if (v > INT32_MAX) return pn_errorf("--ids: '%s' is not a comma-separated list of token ids", s);
        if (*n == INT32_MAX / 2) return pn_errorf("--ids: too many token ids");
        if (*n == cap) *out = pn_realloc(*out, sizeof(int32_t) * (size_t)(cap *= 2));
        (*out)[(*n)++] = (int32_t)v;
        p = *e ? e + 1 : e;
    }
    if (*n == 0) return pn_errorf("--ids: no token ids given");
    return 0;
}

static int dump_logits(const char *path, const float *logits, const int32_t *ids, int T, int V) {
    pn_st_decl decl[2] = {{.name = "ids", .dtype = PN_ST_I32, .ndim = 1, .shape = {T}},
                          {.name = "logits", .dtype = PN_ST_F32, .ndim = 2, .shape = {T, V}}};
    pn_st_writer *w = pn_st_writer_begin(path, decl, 2, NULL);
    if (!w) return -1;
    if (pn_st_writer_write(w, ids, sizeof(int32_t) * (size_t)T) ||
        pn_st_writer_write(w, logits, sizeof(float) * (size_t)T * (size_t)V)) {
        pn_st_writer_abort(w);
        return -1;
    }
    return pn_st_writer_finish(w);
}

// The command line, parsed and checked (numbers strictly, in range) before anything is opened.
typedef struct gen_args {
    const char *model_dir, *prompt, *ids_s, *dump, *device_s;
    int max_new, print_ids, help, no_special, threads, chunk;
    pn_sample_args sampling; // temperature, top_k, top_p, seed (step: the token's index)
    pn_device dev;
} gen_args;

// The longest generation asked for in one run: the KV cache holds prompt + new tokens as an int count.
#define MAX_NEW_TOKENS (1 << 30)

// 0 (parsed; a->help set for --help), or -1 with the error set. Never exits, so it can be called in a
// loop (tests/fuzz/fuzz_cli_generate.c); getopt's state is reset on entry.
static int parse_args(int argc, char **argv, gen_args *a) {
    static const struct option opts[] = {{"model", 1, 0, 'm'},       {"prompt", 1, 0, 'p'},
                                         {"ids", 1, 0, 'i'},         {"max-new-tokens", 1, 0, 'n'},
                                         {"temperature", 1, 0, 't'}, {"seed", 1, 0, 's'},
                                         {"dump-logits", 1, 0, 'd'}, {"device", 1, 0, 'D'},
                                         {"print-ids", 0, 0, 'I'},   {"no-special-tokens", 0, 0, 'S'},
                                         {"threads", 1, 0, 'T'},     {"prefill-chunk", 1, 0, 'C'},
                                         {"top-k", 1, 0, 'k'},       {"top-p", 1, 0, 'P'},
                                         {"help", 0, 0, 'Z'},        {0, 0, 0, 0}};
    *a = (gen_args){.device_s = "auto", .max_new = 32, .chunk = 1024, .sampling = {.top_p = 1.0f}};
    int opt;
    optind = 0; // full re-initialisation of getopt (glibc)
    opterr = 0; // report bad options through the one error line instead of getopt's own
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        double t;
        switch (opt) {
        case 'm': a->model_dir = optarg; break;
        case 'p': a->prompt = optarg; break;
        case 'i': a->ids_s = optarg; break;
        case 'n':
            if (pn_parse_int("--max-new-tokens", optarg, 0, MAX_NEW_TOKENS, &a->max_new)) return -1;
            break;
        case 't':
            if (pn_parse_f64("--temperature", optarg, 0, 1e6, &t)) return -1;
            a->sampling.temperature = (float)t;
            break;
        case 'k':
            if (pn_parse_int("--top-k", optarg, 0, INT32_MAX, &a->sampling.top_k)) return -1;
            break;
        case 'P':
            if (pn_parse_f64("--top-p", optarg, 0, 1, &t)) return -1;
            a->sampling.top_p = (float)t;
            break;
        case 's':
            if (pn_parse_u64("--seed", optarg, 0, UINT64_MAX, &a->sampling.seed)) return -1;
            break;
        case 'd': a->dump = optarg; break;
        case 'D': a->device_s = optarg; break;
        case 'I': a->print_ids = 1; break;
        case 'S': a->no_special = 1; break;
        case 'T':
            if (pn_parse_int("--threads", optarg, 1, PN_CPU_MAX_THREADS, &a->threads)) return -1;
            break;
        case 'C':
            if (pn_parse_int("--prefill-chunk", optarg, 0, INT32_MAX, &a->chunk)) return -1;
            break;
        case 'Z': a->help = 1; return 0;
        default:
            return pn_errorf("unknown option or missing value: '%s' (see --help)",
                             optind > 0 && optind <= argc ? argv[optind - 1] : "?");
        }
    }
    if (optind < argc) return pn_errorf("unexpected argument '%s'", argv[optind]);
    if (!a->model_dir) return pn_errorf("--model DIR is required (see --help)");
    if (!!a->prompt == !!a->ids_s) return pn_errorf("give exactly one of --prompt and --ids (see --help)");
    if (!strcmp(a->device_s, "cpu")) a->dev = PN_CPU;
    else if (!strcmp(a->device_s, "cuda")) a->dev = PN_CUDA;
    else if (!strcmp(a->device_s, "auto")) a->dev = PN_CPU; // resolved in run(): probing CUDA is not parsing
    else return pn_errorf("--device: '%s' is not auto, cpu or cuda", a->device_s);
    return 0;
}

static int run(int argc, char **argv) {
    gen_args a;
    if (parse_args(argc, argv, &a)) return -1;
    if (a.help) {
        usage(stdout);
        return 0;
    }
    const char *model_dir = a.model_dir, *prompt = a.prompt, *ids_s = a.ids_s, *dump = a.dump;
    const int max_new = a.max_new;
    int print_ids = a.print_ids;
    pn_device dev = a.dev;
    if (a.threads) pn_cpu_set_threads(a.threads);
    if (!strcmp(a.device_s, "auto")) dev = pn_cuda_available() ? PN_CUDA : PN_CPU;

    // The tokenizer is needed only to turn text into ids: --prompt fails without a usable one, --ids runs
    // without it (printing ids, and saying why when a tokenizer is there but refused).
    struct stat sb;
    if (stat(model_dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) return pn_errorf("%s: no such checkpoint folder", model_dir);
    pn_tokenizer *tok = NULL;
    char *tj = pn_path_join(model_dir, "tokenizer.json"), *vj = pn_path_join(model_dir, "vocab.json");
    const int has_tok = !access(tj, F_OK) || !access(vj, F_OK);
    free(tj);
    free(vj);
    if (has_tok && !(tok = pn_tokenizer_load(model_dir))) {
        if (prompt) return pn_error_prefix("--prompt needs the folder's tokenizer, which cannot be used");
        pn_warn("the tokenizer cannot be used (%s): printing ids", pn_last_error());
    }
    if (prompt && !tok)
        return pn_errorf("%s: no tokenizer (tokenizer.json, or vocab.json + merges.txt) for --prompt; use --ids", model_dir);
    int32_t *ids = NULL;
    int T;
    if (prompt) {
        size_t n = 0, cap = 0;
        const int rc = a.no_special ? pn_tokenizer_encode(tok, prompt, strlen(prompt), 1, &ids, &n, &cap)
                                    : pn_tokenizer_encode_special(tok, prompt, strlen(prompt), &ids, &n, &cap);
        if (rc) {
            free(ids);
            pn_tokenizer_free(tok);
            return -1;
        }
        if (n == 0) {
            free(ids);
            pn_tokenizer_free(tok);
            return pn_errorf("--prompt: the prompt is empty");
        }
        T = (int)n;
    } else if (parse_ids(ids_s, &ids, &T)) {
        free(ids);
        pn_tokenizer_free(tok);
        return -1;
    }
    if (!tok) print_ids = 1;
    pn_model m;
    double t0 = pn_now();
    if (pn_model_load(&m, model_dir, dev)) {
        free(ids);
        pn_tokenizer_free(tok);
        return -1;
    }
    const pn_model_config *c = &m.cfg;
    if (tok && pn_tokenizer_vocab_size(tok) > c->vocab) {
        pn_errorf("%s: the tokenizer has %d tokens but the model's vocabulary only %d", model_dir,
                  pn_tokenizer_vocab_size(tok), c->vocab);
        goto fail;
    }
    for (int i = 0; i < T; i++)
        if (ids[i] >= c->vocab) {
            pn_errorf("--ids: token id %d at position %d is outside the vocabulary of %s (size %d)", ids[i], i,
                      model_dir, c->vocab);
            goto fail;
        }
    const double t_load = pn_now() - t0;
    if ((int64_t)T + max_new > INT32_MAX) {
        pn_errorf("%d prompt tokens + --max-new-tokens %d exceed the %d positions a KV cache can hold", T, max_new,
                  INT32_MAX);
        goto fail;
    }
    const int cap = T + max_new;
    pn_kvcache kc = {0};
    float *logits = NULL;
    const int chunk = a.chunk > 0 && a.chunk < T ? a.chunk : T; // tokens per prefill forward
    if (pn_model_plan(&m, 1, chunk, dump != NULL) || pn_kvcache_init(&kc, &m, 1, cap)) goto fail;
    if (cap > c->max_pos) // after the cache exists: a run that cannot start says only why
        pn_warn("%d tokens exceed max_position_embeddings %d of %s", cap, c->max_pos, model_dir);
    const int V = c->vocab;
    logits = dump ? pn_malloc(sizeof(float) * (size_t)V * (size_t)T) : NULL;
    const pn_backend *be = pn_backend_get(dev);

    t0 = pn_now();
    int last_row = 0; // the prompt's last position in m.logits (all the last chunk's positions with --dump-logits)
    for (int t = 0; t < T; t += chunk) { // each chunk continues the decode state the ones before left
        const int n = T - t < chunk ? T - t : chunk;
        if (pn_model_forward(&m, &kc, ids + t, 1, n)) goto fail2;
        if (dump) { // every position's logits
            pn_tensor lg = pn_rows(&m.logits, 0, n);
            pn_op_to_host_f32(logits + (size_t)t * (size_t)V, &lg);
            last_row = n - 1;
        }
    }
    be->sync();
    const double t_prefill = pn_now() - t0;
    if (dump && dump_logits(dump, logits, ids, T, V)) goto fail2;

    int n_out = 0;
    t0 = pn_now();
    while (n_out < max_new) {
        // greedy or a draw from softmax(logits / temperature), on the device: one id comes back, not V logits
        // (draw n_out of the seed: the same tokens on every device, up to its rounding of the logits)
        int32_t next;
        pn_tensor z = pn_rows(&m.logits, n_out == 0 ? last_row : 0, 1), out = pn_rows(&m.greedy, 0, 1);
        a.sampling.step = (uint64_t)n_out;
        pn_op_sample(&out, &z, &a.sampling);
        be->memcpy_d2h(&next, out.data, sizeof next);
        n_out++;
        if (print_ids) {
            printf(n_out == 1 ? "%d" : ",%d", next);
        } else { // stream the token's bytes (a UTF-8 character split across tokens joins up on the terminal)
            char *piece = NULL;
            size_t pl = 0;
            if (next < pn_tokenizer_vocab_size(tok) && pn_tokenizer_decode(tok, &next, 1, 1, &piece, &pl) == 0)
                fwrite(piece, 1, pl, stdout);
            free(piece);
        }
        fflush(stdout);
        if (next == c->eos_id || n_out == max_new) break;
        if (pn_model_forward(&m, &kc, &next, 1, 1)) goto fail2;
    }
    printf("\n");
    fflush(stdout); // the ids line first, then the speed line on stderr
    const double t_decode = pn_now() - t0;
    pn_info("%s on %s: load %.2f s, prefill %d tokens %.1f tok/s, decode %d tokens %.1f tok/s", model_dir,
            pn_device_name(dev), t_load, T, T / t_prefill, n_out, n_out > 1 ? (n_out - 1) / t_decode : 0.0);
    free(logits);
    free(ids);
    pn_kvcache_free(&kc);
    pn_model_free(&m);
    pn_tokenizer_free(tok);
    return 0;
fail2:
    free(logits);
    pn_kvcache_free(&kc);
fail:
    free(ids);
    pn_model_free(&m);
    pn_tokenizer_free(tok);
    return -1;
}

#ifndef PN_GENERATE_NO_MAIN
int main(int argc, char **argv) {
    if (run(argc, argv)) {
        fprintf(stderr, "postnas-generate: error: %s\n", pn_last_error());
        return 1;
    }
    return 0;
}
#endif
