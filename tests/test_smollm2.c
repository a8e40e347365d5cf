// A real pretrained model end to end: SmolLM2-135M-Instruct converted from its GGUF by postnas-convert
// (tests/test_smollm2.sh gets it) against goldens made by transformers from the same GGUF
// (tests/make_smollm2_goldens.py, tests/goldens/smollm2):
//   - the dequantized, un-permuted weights bit for bit (first values, whole q/k rows, row sums);
//   - logits of four real prompts (wikitext, a sentence, code, a chat turn): strided columns, logsumexp,
//     argmax where the top two differ by more than float noise;
//   - greedy generation of 32 tokens after three prompts;
//   - the tokenizer: the hard strings (with SmolLM2's own digit split where transformers' GGUF tokenizer
//     lacks it), and the whole wikitext-2 test file (count and checksum);
//   - wikitext-2 perplexity by the goldens' protocol (4096 tokens, windows of 512).
// PN_TEST_QUICK=1 (the sanitizer run) keeps the weights, logits, one greedy prompt and the hard strings.
//
// usage: test_smollm2 MODEL_DIR GOLDENS_DIR SHARED_DATA_DIR
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../data/pn_tokenizer.h"
#include "../src/pn_common.h"
#include "../src/pn_model.h"
#include "../src/pn_safetensors.h"
#include "pn_test.h"

static pn_model m;
static pn_tokenizer *tok;

static int32_t *ids_of(const pn_safetensors *st, const char *name, size_t *n) {
    const pn_st_entry *e = pn_st_find(st, name);
    if (!e || e->dtype != PN_ST_I32) return NULL;
    *n = (size_t)pn_st_numel(e);
    int32_t *x = pn_malloc(sizeof(int32_t) * (*n ? *n : 1));
    memcpy(x, e->data, sizeof(int32_t) * *n);
    return x;
}

static float *f32_of(const pn_safetensors *st, const char *name, size_t *n) {
    const pn_st_entry *e = pn_st_find(st, name);
    if (!e) return NULL;
    *n = (size_t)pn_st_numel(e);
    float *x = pn_malloc(sizeof(float) * *n);
    if (pn_st_to_f32(st, e, x)) {
        free(x);
        return NULL;
    }
    return x;
}

// Logits [T, V] of one sequence from position 0.
static float *forward(const int32_t *ids, int T) {
    pn_kvcache kc;
    if (pn_model_plan(&m, 1, T, 1) || pn_kvcache_init(&kc, &m, 1, T)) return NULL;
    float *out = NULL;
    if (pn_model_forward(&m, &kc, ids, 1, T) == 0) {
        out = pn_malloc(sizeof(float) * (size_t)T * (size_t)m.cfg.vocab);
        pn_tensor lg = pn_rows(&m.logits, 0, T);
        pn_op_to_host_f32(out, &lg);
    }
    pn_kvcache_free(&kc);
    return out;
}

static double lse_row(const float *x, int V) {
    double mx = x[0], s = 0;
    for (int v = 1; v < V; v++) mx = x[v] > mx ? x[v] : mx;
    for (int v = 0; v < V; v++) s += exp(x[v] - mx);
    return mx + log(s);
}

static void test_weights(const char *model_dir, const char *goldens) {
    char *wp = pn_path_join(goldens, "weights.safetensors"), *mp = pn_path_join(model_dir, "model.safetensors");
    pn_safetensors g, w;
    if (pn_st_open(&g, wp) || pn_st_open(&w, mp)) {
        CHECK(0, "%s", pn_last_error());
        free(wp), free(mp);
        return;
    }
    int checked = 0;
    for (int i = 0; i < g.n; i++) {
        const pn_st_entry *ge = &g.entries[i];
        const char *kind = ge->name, *dot = strchr(kind, '.');
        const pn_st_entry *we = pn_st_find(&w, dot + 1);
        CHECK(we != NULL, "model.safetensors lacks %s", dot + 1);
        if (!we) continue;
        float *x = pn_malloc(sizeof(float) * (size_t)pn_st_numel(we));
        pn_st_to_f32(&w, we, x);
        const int64_t cols = we->ndim > 1 ? we->shape[1] : 1;
        if (!strncmp(kind, "head.", 5)) {
            size_t n = 0;
            float *want = f32_of(&g, ge->name, &n);
            CHECK(want && !memcmp(x, want, sizeof(float) * n), "%s: first %zu values differ", dot + 1, n);
            free(want);
            checked++;
        } else if (!strncmp(kind, "rowsum.", 7)) { // every row's sum: the q/k rows are in HF's order
            const double *want = ge->data; // F64 [rows]; the mapping is 8-aligned for this file
            double worst = 0;
            for (int64_t r = 0; r < we->shape[0]; r++) {
                double s = 0;
                for (int64_t c = 0; c < cols; c++) s += x[r * cols + c];
                double wv;
                memcpy(&wv, (const char *)want + 8 * r, 8);
                worst = fmax(worst, fabs(s - wv));
            }
            CHECK(worst < 1e-3, "%s: row sums differ by %g (q/k row order?)", dot + 1, worst);
            checked++;
        }
        free(x);
    }
    printf("weights: %d checks against transformers' dequantized tensors\n", checked);
    pn_st_close(&g);
    pn_st_close(&w);
    free(wp);
    free(mp);
}

static void test_logits(const char *goldens) {
    char *lp = pn_path_join(goldens, "logits.safetensors");
    pn_safetensors st;
    if (pn_st_open(&st, lp)) {
        CHECK(0, "%s", pn_last_error());
        free(lp);
        return;
    }
    size_t nc = 0;
    int32_t *cols = ids_of(&st, "cols", &nc);
    const int V = m.cfg.vocab;
    for (int p = 0; p < 8; p++) {
        char nm[32];
        size_t T, n;
        snprintf(nm, sizeof nm, "ids_%d", p);
        int32_t *ids = ids_of(&st, nm, &T);
        if (!ids) break;
        snprintf(nm, sizeof nm, "logits_%d", p);
        float *want = f32_of(&st, nm, &n);
        snprintf(nm, sizeof nm, "lse_%d", p);
        float *lse = f32_of(&st, nm, &n);
        snprintf(nm, sizeof nm, "margin_%d", p);
        float *margin = f32_of(&st, nm, &n);
        snprintf(nm, sizeof nm, "argmax_%d", p);
        int32_t *am = ids_of(&st, nm, &n);
        float *got = forward(ids, (int)T);
        CHECK(got && want && lse && am && margin && cols, "prompt %d: %s", p, pn_last_error());
        if (got && want && lse && am && margin && cols) {
            double num = 0, den = 0, worst_lse = 0;
            int argmax_ok = 1;
            for (size_t t = 0; t < T; t++) {
                const float *row = got + t * (size_t)V;
                for (size_t k = 0; k < nc; k++) {
                    double d = (double)row[cols[k]] - want[t * nc + k];
                    num += d * d, den += (double)want[t * nc + k] * want[t * nc + k];
                }
                worst_lse = fmax(worst_lse, fabs(lse_row(row, V) - lse[t]));
                int best = 0;
                for (int v = 1; v < V; v++)
                    if (row[v] > row[best]) best = v;
                if (margin[t] > 1e-3f && best != am[t]) argmax_ok = 0;
            }
            const double rel = sqrt(num / den);
            printf("logits prompt %d (T %zu): rel err %.3g, logsumexp max diff %.3g, argmax %s\n", p, T, rel, worst_lse,
                   argmax_ok ? "identical" : "DIFFERENT");
            CHECK(rel < 2e-5 && worst_lse < 1e-3 && argmax_ok, "prompt %d: rel %g lse %g argmax %d", p, rel, worst_lse,
                  argmax_ok);
        }
        free(got), free(ids), free(want), free(lse), free(margin), free(am);
    }
    free(cols);
    pn_st_close(&st);
    free(lp);
}

static void test_greedy(const char *goldens, int quick) {
    char *gp = pn_path_join(goldens, "greedy.safetensors");
    pn_safetensors st;
    if (pn_st_open(&st, gp)) {
        CHECK(0, "%s", pn_last_error());
        free(gp);
        return;
    }
    static const char *names[] = {"text", "chat", "code"};
    for (int k = 0; k < (quick ? 1 : 3); k++) {
        char nm[32];
        size_t T, G;
        snprintf(nm, sizeof nm, "prompt_%s", names[k]);
        int32_t *prompt = ids_of(&st, nm, &T);
        snprintf(nm, sizeof nm, "new_%s", names[k]);
        int32_t *want = ids_of(&st, nm, &G);
        CHECK(prompt && want, "greedy %s in the golden", names[k]);
        if (!prompt || !want) continue;
        pn_kvcache kc;
        int ok = pn_model_plan(&m, 1, (int)(T + G), 1) == 0 && pn_kvcache_init(&kc, &m, 1, (int)(T + G)) == 0;
        int same = ok, rc = ok ? pn_model_forward(&m, &kc, prompt, 1, (int)T) : -1;
        float *row = pn_malloc(sizeof(float) * (size_t)m.cfg.vocab);
        for (size_t g = 0; g < G && !rc; g++) {
            pn_tensor last = pn_rows(&m.logits, g ? 0 : (int64_t)T - 1, 1);
            pn_op_to_host_f32(row, &last);
            int32_t best = 0;
            for (int v = 1; v < m.cfg.vocab; v++)
                if (row[v] > row[best]) best = v;
            same &= best == want[g];
            if (g + 1 < G) rc = pn_model_forward(&m, &kc, &best, 1, 1);
        }
        if (ok) pn_kvcache_free(&kc);
        char *text = NULL;
        pn_tokenizer_decode(tok, want, G, 0, &text, NULL);
        printf("greedy %-4s: 32 tokens %s (\"%.60s...\")\n", names[k], !rc && same ? "identical to transformers" : "DIFFERENT",
               text ? text : "");
        CHECK(!rc && same, "greedy %s: %s", names[k], rc ? pn_last_error() : "tokens differ");
        free(text), free(row), free(prompt), free(want);
    }
    pn_st_close(&st);
    free(gp);
}

static int ids_match(const int32_t *a, size_t n, json_t *arr) {
    if (json_array_size(arr) != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (json_integer_value(json_array_get(arr, i)) != a[i]) return 0;
    return 1;
}

static void test_tokenizer(const char *goldens, const char *shared, int quick) {
    char *tp = pn_path_join(goldens, "tokenizer_ids.json");
    json_error_t jerr;
    json_t *root = json_load_file(tp, JSON_ALLOW_NUL, &jerr), *c;
    CHECK(root != NULL, "%s: %s", tp, jerr.text);
    size_t i;
    int bad = 0, n = 0;
    json_array_foreach(json_object_get(root, "cases"), i, c) {
        // SmolLM2's own pre-tokenizer splits digits (llama.cpp's "smollm"); transformers' GGUF tokenizer
        // does not: the goldens give both where they differ, and the model's own is the one to match.
        json_t *want = json_object_get(c, "ids_with_digits_pretokenizer");
        if (!want) want = json_object_get(c, "ids");
        json_t *jt = json_object_get(c, "text");
        int32_t *ids = NULL;
        size_t k = 0, cap = 0;
        int ok = !pn_tokenizer_encode_special(tok, json_string_value(jt), json_string_length(jt), &ids, &k, &cap) &&
                 ids_match(ids, k, want);
        if (!ok && bad++ < 5) CHECK(0, "tokenizer case %zu (%.40s) differs", i, json_string_value(jt));
        free(ids);
        n++;
    }
    printf("tokenizer: %d hard strings, %d differ\n", n, bad);
    if (!bad) pn_test_pass++;
    json_decref(root);
    free(tp);
    if (quick) return;
    // The whole wikitext-2 test file; checksum sum (i+1)*id mod 2^61-1 of the `tokenizers` package run on
    // the tokenizer.json postnas-convert writes (it differs from transformers' GGUF tokenizer at one spot,
    // "4 ½", by the digit split).
    char *wp = pn_path_join(shared, "corpora/wikitext2-test.raw.txt");
    size_t len;
    char *text = pn_read_file(wp, &len);
    CHECK(text != NULL, "%s", pn_last_error());
    int32_t *ids = NULL;
    size_t k = 0, cap = 0;
    if (text && !pn_tokenizer_encode_special(tok, text, len, &ids, &k, &cap)) {
        const unsigned __int128 M = ((unsigned __int128)1 << 61) - 1;
        unsigned __int128 cs = 0;
        for (size_t j = 0; j < k; j++) cs = (cs + (unsigned __int128)(j + 1) * (uint32_t)ids[j]) % M;
        printf("wikitext-2 test: %zu ids, checksum %llu\n", k, (unsigned long long)cs);
        CHECK(k == 301948 && (unsigned long long)cs == 230494480979716ull, "wikitext ids %zu checksum %llu", k,
              (unsigned long long)cs);
        // Perplexity by the goldens' protocol: the first 4096 ids, windows of 512 from position 0.
        char *pp = pn_path_join(goldens, "ppl.json");
        json_t *ppl = json_load_file(pp, 0, NULL);
        const double want = json_real_value(json_object_get(ppl, "mean_nll"));
        double nll = 0;
        int scored = 0;
        for (int w = 0; w < 8 && k >= 4096; w++) {
            float *lg = forward(ids + w * 512, 512);
            if (!lg) break;
            for (int p = 1; p < 512; p++) {
                const float *row = lg + (size_t)(p - 1) * (size_t)m.cfg.vocab;
                nll += lse_row(row, m.cfg.vocab) - row[ids[w * 512 + p]];
                scored++;
            }
            free(lg);
        }
        nll /= scored ? scored : 1;
        printf("wikitext-2 perplexity (4096 tokens, windows of 512): %.4f (mean nll %.6f; transformers %.6f)\n", exp(nll),
               nll, want);
        CHECK(scored == 4088 && fabs(nll - want) < 1e-4, "mean nll %.6f vs %.6f", nll, want);
        json_decref(ppl);
        free(pp);
    }
    free(ids);
    free(text);
    free(wp);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: test_smollm2 MODEL_DIR GOLDENS_DIR SHARED_DATA_DIR\n");
        return 2;
    }
    const int quick = getenv("PN_TEST_QUICK") && atoi(getenv("PN_TEST_QUICK"));
    if (pn_model_load(&m, argv[1], PN_CPU)) {
        fprintf(stderr, "test_smollm2: %s\n", pn_last_error());
        return 1;
    }
    tok = pn_tokenizer_load(argv[1]);
    CHECK(tok != NULL, "%s", pn_last_error());
    test_weights(argv[1], argv[2]);
    test_logits(argv[2]);
    if (tok) {
        test_greedy(argv[2], quick);
        test_tokenizer(argv[2], argv[3], quick);
    }
    pn_tokenizer_free(tok);
    pn_model_free(&m);
    return pn_test_done("test_smollm2");
}
