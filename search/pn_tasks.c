// pn_tasks: the built-in tasks (pn_tasks.h). The data are llm-foundry's local copies of the lm-eval tasks
// (../shared/data/tasks/commonsense: `query`, `choices`, `gold`; LAMBADA `context`, `continuation`); the
// prompts map those fields onto lm-eval's task definitions (tests/goldens/eval/tasks holds the lm-eval
// YAMLs that read the same files, and tests/make_eval_goldens.py says how each field maps).
#include "pn_tasks.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../src/pn_common.h"
#include "../src/pn_json.h"

typedef enum { K_MC, K_LAMBADA } task_kind;
// How a multiple-choice context comes from `query`: query + suffix; COPA: "premise, therefore" becomes
// lm-eval's "premise therefore" (its premise without the full stop, then the connector); BoolQ: lm-eval's
// "{passage}\nQuestion: {question}?\nAnswer:" is the local query without its "Passage: " label, + suffix.
typedef enum { CTX_SUFFIX, CTX_COPA, CTX_BOOLQ } ctx_kind;

typedef struct task_def {
    const char *name, *file;
    task_kind kind;
    ctx_kind ctx;
    const char *suffix;        // appended to the context (lm-eval's "...\nAnswer:")
    const char *choice_prefix; // before each choice (COPA's choices start with a space in lm-eval)
} task_def;

static const task_def kTasks[] = {
    {"arc_easy", "commonsense/arc_easy.jsonl", K_MC, CTX_SUFFIX, "\nAnswer:", ""},
    {"arc_challenge", "commonsense/arc_challenge.jsonl", K_MC, CTX_SUFFIX, "\nAnswer:", ""},
    {"piqa", "commonsense/piqa.jsonl", K_MC, CTX_SUFFIX, "Answer:", ""},
    {"boolq", "commonsense/boolq.jsonl", K_MC, CTX_BOOLQ, "\nAnswer:", ""},
    {"copa", "commonsense/copa.jsonl", K_MC, CTX_COPA, "", " "},
    {"lambada_openai", "commonsense/lambada_openai.jsonl", K_LAMBADA, CTX_SUFFIX, "", ""},
};
#define N_TASKS (int)(sizeof kTasks / sizeof kTasks[0])

const char *pn_task_names(void) {
    static char buf[512];
    if (!buf[0])
        for (int i = 0; i < N_TASKS; i++)
            snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%s", i ? ", " : "", kTasks[i].name);
    return buf;
}

static const task_def *find_task(const char *name) {
    for (int i = 0; i < N_TASKS; i++)
        if (!strcmp(kTasks[i].name, name)) return &kTasks[i];
    return NULL;
}

int pn_task_known(const char *name) { return find_task(name) != NULL; }

// ---------------------------------------------------------------------------------------------------
// requests

// One (context, continuation) pair as lm-eval's Hugging Face backend encodes it: the context's trailing
// whitespace moves onto the continuation; the continuation's ids are those of tok(context + continuation)
// after the first len(tok(context)); an empty context leaves ctx empty (pn_eval puts end-of-text there).
typedef struct pair_ids {
    int32_t *ctx, *cont;
    size_t n_ctx, n_cont;
} pair_ids;

static int is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

static int encode_pair(const pn_tokenizer *tok, const char *ctx, const char *cont, pair_ids *out) {
    memset(out, 0, sizeof *out);
    size_t cl = strlen(ctx), k = cl;
    while (k > 0 && is_space((unsigned char)ctx[k - 1])) k--;
    const size_t wl = cl + strlen(cont);
    char *whole = pn_malloc(wl + 1);
    memcpy(whole, ctx, cl);
    memcpy(whole + cl, cont, strlen(cont) + 1);
    int32_t *w = NULL;
    size_t nw = 0, cap = 0, capc = 0;
    int rc = 0;
    if (k == 0) { // an empty context: the continuation alone (with the moved whitespace)
        rc = pn_tokenizer_encode(tok, whole, wl, 1, &out->cont, &out->n_cont, &capc);
    } else {
        rc = pn_tokenizer_encode(tok, whole, wl, 1, &w, &nw, &cap) ||
             pn_tokenizer_encode(tok, ctx, k, 1, &out->ctx, &out->n_ctx, &capc);
        if (!rc && out->n_ctx > nw) rc = pn_errorf("the context's tokens are more than the whole's");
        if (!rc) {
            out->n_cont = nw - out->n_ctx;
            out->cont = pn_malloc(sizeof(int32_t) * (out->n_cont ? out->n_cont : 1));
            memcpy(out->cont, w + out->n_ctx, sizeof(int32_t) * out->n_cont);
        }
    }
    free(w), free(whole);
    if (!rc && out->n_cont == 0) rc = pn_errorf("the continuation encodes to no token");
    return rc;
}

// ---------------------------------------------------------------------------------------------------
// documents

typedef struct doc {
    char *ctx;
    char **choices; // multiple choice; LAMBADA: one, the continuation
    int n_choices, gold;
} doc;

static void doc_free(doc *d) {
    free(d->ctx);
    for (int i = 0; i < d->n_choices; i++) free(d->choices[i]);
    free(d->choices);
}

static int get_string(json_t *o, const char *key, const char *where, const char **out) {
    json_t *v = json_object_get(o, key);
    if (!v) return pn_errorf("%s: no \"%s\"", where, key);
    if (!json_is_string(v)) return pn_errorf("%s: \"%s\" is not a string", where, key);
    *out = json_string_value(v);
    return 0;
}

static int parse_doc(const task_def *t, json_t *o, const char *where, doc *d) {
    memset(d, 0, sizeof *d);
    if (!json_is_object(o)) return pn_errorf("%s: not a JSON object", where);
    const char *s = NULL;
    if (t->kind == K_LAMBADA) {
        const char *c = NULL;
        if (get_string(o, "context", where, &s) || get_string(o, "continuation", where, &c)) return -1;
        if (!c[0]) return pn_errorf("%s: \"continuation\" is empty", where);
        d->ctx = pn_strdup(s);
        d->choices = pn_malloc(sizeof(char *));
        const size_t n = strlen(c) + 2;
        d->choices[0] = pn_malloc(n);
        snprintf(d->choices[0], n, " %s", c); // lm-eval's target: the last word after a space
        d->n_choices = 1;
        return 0;
    }
    if (get_string(o, "query", where, &s)) return -1;
    json_t *ch = json_object_get(o, "choices"), *g = json_object_get(o, "gold");
    if (!json_is_array(ch) || json_array_size(ch) < 2)
        return pn_errorf("%s: \"choices\" must be a list of at least 2 strings", where);
    if (!json_is_integer(g)) return pn_errorf("%s: \"gold\" must be an integer", where);
    const json_int_t gold = json_integer_value(g);
    if (gold < 0 || gold >= (json_int_t)json_array_size(ch))
        return pn_errorf("%s: \"gold\" %lld is outside the %zu choices", where, (long long)gold, json_array_size(ch));
    const size_t n = strlen(s) + strlen(t->suffix) + 1;
    d->ctx = pn_malloc(n);
    if (t->ctx == CTX_BOOLQ) {
        if (strncmp(s, "Passage: ", 9)) {
            free(d->ctx);
            d->ctx = NULL;
            return pn_errorf("%s: \"query\" does not start with \"Passage: \"", where);
        }
        s += 9;
    }
    snprintf(d->ctx, n, "%s%s", s, t->suffix);
    if (t->ctx == CTX_COPA) { // the last ", " becomes " " (Python's rsplit(', ', 1) joined by a space)
        char *comma = NULL;
        for (char *p = strstr(d->ctx, ", "); p; p = strstr(p + 1, ", ")) comma = p;
        if (comma) memmove(comma, comma + 1, strlen(comma + 1) + 1);
    }
    d->n_choices = (int)json_array_size(ch);
    d->choices = pn_calloc((size_t)d->n_choices, sizeof(char *));
    d->gold = (int)gold;
    for (int i = 0; i < d->n_choices; i++) {
        json_t *c = json_array_get(ch, (size_t)i);
        if (!json_is_string(c) || !json_string_value(c)[0]) {
            doc_free(d);
            return pn_errorf("%s: choice %d is not a non-empty string", where, i);
        }
        const size_t cn = strlen(t->choice_prefix) + strlen(json_string_value(c)) + 1;
        d->choices[i] = pn_malloc(cn);
        snprintf(d->choices[i], cn, "%s%s", t->choice_prefix, json_string_value(c));
    }
    return 0;
}

// The documents of a JSONL file (the first `limit`; 0: all), and the file's count.
static int read_docs(const task_def *t, const char *path, int limit, doc **out, int *n_out, int *n_total) {
    size_t len;
    char *text = pn_read_file(path, &len);
    if (!text) return pn_error_prefix("task %s", t->name);
    doc *docs = NULL;
    int n = 0, total = 0, rc = 0, line = 0;
    for (char *p = text; p < text + len && !rc;) {
        char *nl = memchr(p, '\n', (size_t)(text + len - p));
        const size_t ll = nl ? (size_t)(nl - p) : (size_t)(text + len - p);
        line++;
        int blank = 1;
        for (size_t i = 0; i < ll; i++) blank &= is_space((unsigned char)p[i]);
        if (!blank) {
            total++;
            if (!limit || n < limit) {
                char where[1100];
                snprintf(where, sizeof where, "%s:%d", path, line);
                json_t *o = pn_json_loadb(p, ll, where);
                docs = pn_realloc(docs, sizeof *docs * (size_t)(n + 1));
                if (!o) rc = -1;
                else rc = parse_doc(t, o, where, &docs[n]);
                if (o) json_decref(o);
                if (!rc) n++;
            }
        }
        p += ll + 1;
    }
    free(text);
    if (!rc && n == 0) rc = pn_errorf("%s: no documents", path);
    if (rc) {
        for (int i = 0; i < n; i++) doc_free(&docs[i]);
        free(docs);
        return -1;
    }
    *out = docs, *n_out = n, *n_total = total;
    return 0;
}

// ---------------------------------------------------------------------------------------------------
// metrics

static size_t utf8_chars(const char *s) { // Python's len(): code points
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

// lm-eval's mean_stderr: the sample standard deviation (n - 1) over sqrt(n); NaN below 2 values.
static double mean_stderr(const double *x, int n) {
    if (n < 2) return NAN;
    double m = 0, s = 0;
    for (int i = 0; i < n; i++) m += x[i];
    m /= n;
    for (int i = 0; i < n; i++) s += (x[i] - m) * (x[i] - m);
    return sqrt(s / (n - 1)) / sqrt((double)n);
}

static void add_metric(pn_task_result *r, const char *name, const double *x, int n, int higher) {
    double m = 0;
    for (int i = 0; i < n; i++) m += x[i];
    const int k = r->n_metrics++;
    r->metric[k] = name, r->value[k] = m / n, r->stderr_[k] = mean_stderr(x, n), r->higher_is_better[k] = higher;
}

typedef struct progress_ctx {
    const char *task;
    int on;
} progress_ctx;

static void show_progress(void *ctx, int done, int total) {
    const progress_ctx *p = ctx;
    if (p->on) fprintf(stderr, "\r\033[K%s: %d/%d requests", p->task, done, total);
}

int pn_task_run(const char *name, const char *data_dir, int limit, pn_eval *e, const pn_tokenizer *tok,
                pn_task_result *out, FILE *samples, int progress) {
    memset(out, 0, sizeof *out);
    const task_def *t = find_task(name);
    if (!t) return pn_errorf("unknown task \"%s\" (known: %s)", name, pn_task_names());
    char *path = pn_path_join(data_dir, t->file);
    doc *docs = NULL;
    int nd = 0, total = 0;
    int rc = read_docs(t, path, limit, &docs, &nd, &total);
    free(path);
    if (rc) return -1;
    snprintf(out->task, sizeof out->task, "%s", name);
    out->n_docs = nd, out->n_docs_total = total;
    int nr = 0;
    for (int i = 0; i < nd; i++) nr += docs[i].n_choices;
    pn_ll_req *req = pn_calloc((size_t)nr, sizeof *req);
    pair_ids *ids = pn_calloc((size_t)nr, sizeof *ids);
    for (int i = 0, k = 0; i < nd && !rc; i++)
        for (int c = 0; c < docs[i].n_choices && !rc; c++, k++) {
            // multiple choice: lm-eval's target delimiter " " before each choice
            char *cont = docs[i].choices[c];
            char *buf = NULL;
            if (t->kind == K_MC) {
                const size_t n = strlen(cont) + 2;
                buf = pn_malloc(n);
                snprintf(buf, n, " %s", cont);
            }
            rc = encode_pair(tok, docs[i].ctx, buf ? buf : cont, &ids[k]);
            free(buf);
            if (rc) rc = pn_error_prefix("task %s, document %d, choice %d", name, i, c);
            req[k] = (pn_ll_req){.ctx = ids[k].ctx, .cont = ids[k].cont, .n_ctx = (int)ids[k].n_ctx,
                                 .n_cont = (int)ids[k].n_cont};
        }
    progress_ctx pc = {name, progress};
    if (!rc) rc = pn_eval_loglikelihood(e, req, nr, show_progress, &pc);
    if (progress) fputc('\n', stderr);
    if (!rc) {
        double *acc = pn_malloc(sizeof(double) * (size_t)nd), *accn = pn_malloc(sizeof(double) * (size_t)nd);
        double *ll = pn_malloc(sizeof(double) * (size_t)nd);
        for (int i = 0, k = 0; i < nd; i++) {
            const pn_ll_req *r = &req[k];
            int best = 0, bestn = 0;
            for (int c = 1; c < docs[i].n_choices; c++) {
                if (r[c].ll > r[best].ll) best = c;
                if (r[c].ll / (double)utf8_chars(docs[i].choices[c]) > r[bestn].ll / (double)utf8_chars(docs[i].choices[bestn]))
                    bestn = c;
            }
            for (int c = 0; c < docs[i].n_choices; c++) out->truncated += r[c].truncated;
            if (t->kind == K_MC) acc[i] = best == docs[i].gold, accn[i] = bestn == docs[i].gold;
            else acc[i] = r[0].greedy, ll[i] = r[0].ll;
            if (samples) {
                json_t *s = json_object(), *args = json_array(), *resps = json_array();
                for (int c = 0; c < docs[i].n_choices; c++) {
                    json_array_append_new(args, json_pack("[s, s]", docs[i].ctx, docs[i].choices[c]));
                    json_array_append_new(resps, json_pack("[f, b]", r[c].ll, r[c].greedy));
                }
                json_object_set_new(s, "task", json_string(name));
                json_object_set_new(s, "doc_id", json_integer(i));
                json_object_set_new(s, "arguments", args);
                json_object_set_new(s, "resps", resps);
                if (t->kind == K_MC) {
                    json_object_set_new(s, "target", json_integer(docs[i].gold));
                    json_object_set_new(s, "acc", json_real(acc[i]));
                    json_object_set_new(s, "acc_norm", json_real(accn[i]));
                } else {
                    json_object_set_new(s, "target", json_string(docs[i].choices[0]));
                    json_object_set_new(s, "acc", json_real(acc[i]));
                    json_object_set_new(s, "perplexity", json_real(ll[i]));
                }
                char *line = json_dumps(s, JSON_COMPACT | JSON_REAL_PRECISION(17));
                fprintf(samples, "%s\n", line);
                free(line);
                json_decref(s);
            }
            k += docs[i].n_choices;
        }
        add_metric(out, "acc", acc, nd, 1);
        if (t->kind == K_MC) {
            add_metric(out, "acc_norm", accn, nd, 1);
        } else { // lm-eval's perplexity: exp(-mean ll) over documents; its stderr by the delta method
            double m = 0;
            for (int i = 0; i < nd; i++) m += ll[i];
            m /= nd;
            const int k = out->n_metrics++;
            out->metric[k] = "perplexity", out->value[k] = exp(-m), out->higher_is_better[k] = 0;
            out->stderr_[k] = exp(-m) * mean_stderr(ll, nd);
        }
        free(acc), free(accn), free(ll);
    }
    for (int k = 0; k < nr; k++) free(ids[k].ctx), free(ids[k].cont);
    free(ids), free(req);
    for (int i = 0; i < nd; i++) doc_free(&docs[i]);
    free(docs);
    return rc;
}
