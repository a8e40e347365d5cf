// pn_tasks: the built-in tasks (pn_tasks.h). The data are llm-foundry's local copies of the lm-eval tasks
// (../shared/data/tasks/commonsense: `query`, `choices`, `gold`; LAMBADA `context`, `continuation`); the
// prompts map those fields onto lm-eval's task definitions (tests/goldens/eval/tasks holds the lm-eval
// YAMLs that read the same files, and tests/make_eval_goldens.py says how each field maps).
#include "pn_tasks.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <csv.h>
#include <dirent.h>
#include <jansson.h>
#include <pcre2.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../src/pn_common.h"
#include "../src/pn_json.h"
#include "../src/pn_cfg.h"
#include "../data/pn_synth.h"

// Room for one more result in *res, zeroed (gold_nll NAN until a multiple-choice scorer sets it).
static void next_result(pn_task_result **res, int n) {
    *res = pn_realloc(*res, sizeof **res * (size_t)(n + 1));
    memset(&(*res)[n], 0, sizeof **res);
    (*res)[n].gold_nll = NAN;
}

typedef enum { K_MC, K_LAMBADA, K_WINO, K_MMLU, K_GSM8K, K_KV, K_SYNTH } task_kind;
// How a multiple-choice context comes from `query`: query + suffix; COPA: "premise, therefore" becomes
// lm-eval's "premise therefore" (its premise without the full stop, then the connector); BoolQ: lm-eval's
// "{passage}\nQuestion: {question}?\nAnswer:" is the local query without its "Passage: " label, + suffix.
typedef enum { CTX_SUFFIX, CTX_COPA, CTX_BOOLQ } ctx_kind;

struct user_task;
typedef struct task_def {
    const char *name, *file;
    task_kind kind;
    ctx_kind ctx;
    const char *suffix;        // appended to the context (lm-eval's "...\nAnswer:")
    const char *choice_prefix; // before each choice (COPA's choices start with a space in lm-eval)
    const struct user_task *user; // a task from a YAML file (NULL: built in)
} task_def;

static const task_def kTasks[] = {
    {"arc_easy", "commonsense/arc_easy.jsonl", K_MC, CTX_SUFFIX, "\nAnswer:", "", NULL},
    {"arc_challenge", "commonsense/arc_challenge.jsonl", K_MC, CTX_SUFFIX, "\nAnswer:", "", NULL},
    {"piqa", "commonsense/piqa.jsonl", K_MC, CTX_SUFFIX, "Answer:", "", NULL},
    {"boolq", "commonsense/boolq.jsonl", K_MC, CTX_BOOLQ, "\nAnswer:", "", NULL},
    {"copa", "commonsense/copa.jsonl", K_MC, CTX_COPA, "", " ", NULL},
    {"lambada_openai", "commonsense/lambada_openai.jsonl", K_LAMBADA, CTX_SUFFIX, "", "", NULL},
    {"winogrande", "commonsense/winogrande.jsonl", K_WINO, CTX_SUFFIX, "", "", NULL},
    // MMLU: "mmlu" is every subject of mmlu/test (a group: each subject and their average), "mmlu_<subject>"
    // one of them; few-shot examples come from mmlu/dev.
    // generate-until: GSM8K (few-shot examples: the file's last lines, never scored), and key-value retrieval
    // in long contexts (correct if the answer occurs in the output)
    {"gsm8k", "gsm8k/test.jsonl", K_GSM8K, CTX_SUFFIX, "", "", NULL},
    {"kv_pairs_beginning_len_2048", "long_context/kv_pairs_beginning_len_2048.jsonl", K_KV, CTX_SUFFIX, "", "", NULL},
    {"kv_pairs_middle_len_2048", "long_context/kv_pairs_middle_len_2048.jsonl", K_KV, CTX_SUFFIX, "", "", NULL},
    {"kv_pairs_end_len_2048", "long_context/kv_pairs_end_len_2048.jsonl", K_KV, CTX_SUFFIX, "", "", NULL},
    {"kv_pairs_middle_len_4096", "long_context/kv_pairs_middle_len_4096.jsonl", K_KV, CTX_SUFFIX, "", "", NULL},
    {"kv_pairs_middle_len_8192", "long_context/kv_pairs_middle_len_8192.jsonl", K_KV, CTX_SUFFIX, "", "", NULL},
    // the project's synthetic tasks, made on the spot by data/pn_synth (postnas-data synth's defaults: seed 0,
    // a world of 64 entities, the demo's sizes; the first --limit items, 100 by default): generation ones
    // scored by exact match (stripped) and containment, facts_mc by log-likelihood
    {"synth_mqar", "mqar", K_SYNTH, CTX_SUFFIX, "", "", NULL},
    {"synth_recall", "recall", K_SYNTH, CTX_SUFFIX, "", "", NULL},
    {"synth_passkey", "passkey", K_SYNTH, CTX_SUFFIX, "", "", NULL},
    {"synth_copy", "copy", K_SYNTH, CTX_SUFFIX, "", "", NULL},
    {"synth_facts_mc", "facts_mc", K_SYNTH, CTX_SUFFIX, "", "", NULL},
    {"mmlu", "mmlu", K_MMLU, CTX_SUFFIX, "", "", NULL},
};
#define N_TASKS (int)(sizeof kTasks / sizeof kTasks[0])

const char *pn_task_names(void) {
    static char buf[512];
    if (!buf[0]) {
        for (int i = 0; i < N_TASKS; i++)
            snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%s", i ? ", " : "", kTasks[i].name);
        snprintf(buf + strlen(buf), sizeof buf - strlen(buf), ", mmlu_<subject>");
    }
    return buf;
}

static const task_def *find_task(const char *name) {
    for (int i = 0; i < N_TASKS; i++)
        if (!strcmp(kTasks[i].name, name)) return &kTasks[i];
    if (!strncmp(name, "mmlu_", 5) && name[5]) return &kTasks[N_TASKS - 1]; // the subject is checked on reading
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
// documents: each is n (context, continuation) requests, a gold index and what acc_norm divides by

typedef struct doc {
    int n, gold;
    char **ctx, **cont;
    size_t *norm_len; // characters of each choice as the task defines it (acc_norm)
} doc;

static void doc_free(doc *d) {
    for (int i = 0; i < d->n; i++) free(d->ctx[i]), free(d->cont[i]);
    free(d->ctx), free(d->cont), free(d->norm_len);
    memset(d, 0, sizeof *d);
}

static size_t utf8_chars(const char *s) { // Python's len(): code points
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

static char *cat(const char *a, const char *b) {
    const size_t n = strlen(a) + strlen(b) + 1;
    char *s = pn_malloc(n);
    snprintf(s, n, "%s%s", a, b);
    return s;
}

static void doc_alloc(doc *d, int n) {
    d->n = n;
    d->ctx = pn_calloc((size_t)n, sizeof(char *));
    d->cont = pn_calloc((size_t)n, sizeof(char *));
    d->norm_len = pn_calloc((size_t)n, sizeof(size_t));
}

static int get_string(json_t *o, const char *key, const char *where, const char **out) {
    json_t *v = json_object_get(o, key);
    if (!v) return pn_errorf("%s: no \"%s\"", where, key);
    if (!json_is_string(v)) return pn_errorf("%s: \"%s\" is not a string", where, key);
    *out = json_string_value(v);
    return 0;
}

static int get_gold(json_t *o, const char *where, size_t n, int *gold) {
    json_t *g = json_object_get(o, "gold");
    if (!json_is_integer(g)) return pn_errorf("%s: \"gold\" must be an integer", where);
    const json_int_t v = json_integer_value(g);
    if (v < 0 || v >= (json_int_t)n) return pn_errorf("%s: \"gold\" %lld is outside the %zu choices", where, (long long)v, n);
    *gold = (int)v;
    return 0;
}

// The string list `key` of at least 2 non-empty strings.
static int get_strings(json_t *o, const char *key, const char *where, json_t **out) {
    json_t *ch = json_object_get(o, key);
    if (!json_is_array(ch) || json_array_size(ch) < 2)
        return pn_errorf("%s: \"%s\" must be a list of at least 2 strings", where, key);
    for (size_t i = 0; i < json_array_size(ch); i++) {
        json_t *c = json_array_get(ch, i);
        if (!json_is_string(c) || !json_string_value(c)[0])
            return pn_errorf("%s: choice %zu is not a non-empty string", where, i);
    }
    *out = ch;
    return 0;
}

// The multiple-choice context from `query` (the task's ctx_kind).
static int mc_context(const task_def *t, const char *q, const char *where, char **out) {
    if (t->ctx == CTX_BOOLQ) {
        if (strncmp(q, "Passage: ", 9)) return pn_errorf("%s: \"query\" does not start with \"Passage: \"", where);
        q += 9;
    }
    char *c = cat(q, t->suffix);
    if (t->ctx == CTX_COPA) { // the last ", " becomes " " (Python's rsplit(', ', 1) joined by a space)
        char *comma = NULL;
        for (char *p = strstr(c, ", "); p; p = strstr(p + 1, ", ")) comma = p;
        if (comma) memmove(comma, comma + 1, strlen(comma + 1) + 1);
    }
    *out = c;
    return 0;
}

static int parse_doc(const task_def *t, json_t *o, const char *where, doc *d) {
    memset(d, 0, sizeof *d);
    if (!json_is_object(o)) return pn_errorf("%s: not a JSON object", where);
    if (t->kind == K_LAMBADA) { // (context, " " + the last word)
        const char *s = NULL, *c = NULL;
        if (get_string(o, "context", where, &s) || get_string(o, "continuation", where, &c)) return -1;
        if (!c[0]) return pn_errorf("%s: \"continuation\" is empty", where);
        doc_alloc(d, 1);
        d->ctx[0] = pn_strdup(s), d->cont[0] = cat(" ", c);
        return 0;
    }
    if (t->kind == K_WINO) { // partial scoring: the same ending after each filled-in context
        const char *c = NULL;
        json_t *opts = NULL;
        if (get_strings(o, "context_options", where, &opts) || get_string(o, "continuation", where, &c)) return -1;
        if (!c[0]) return pn_errorf("%s: \"continuation\" is empty", where);
        int gold = 0;
        if (get_gold(o, where, json_array_size(opts), &gold)) return -1;
        doc_alloc(d, (int)json_array_size(opts));
        d->gold = gold;
        for (int i = 0; i < d->n; i++)
            d->ctx[i] = pn_strdup(json_string_value(json_array_get(opts, (size_t)i))), d->cont[i] = cat(" ", c),
            d->norm_len[i] = utf8_chars(c);
        return 0;
    }
    const char *q = NULL;
    json_t *ch = NULL;
    int gold = 0;
    char *ctx = NULL;
    if (get_string(o, "query", where, &q) || get_strings(o, "choices", where, &ch) ||
        get_gold(o, where, json_array_size(ch), &gold) || mc_context(t, q, where, &ctx))
        return -1;
    doc_alloc(d, (int)json_array_size(ch));
    d->gold = gold;
    for (int i = 0; i < d->n; i++) {
        char *choice = cat(t->choice_prefix, json_string_value(json_array_get(ch, (size_t)i)));
        d->ctx[i] = pn_strdup(ctx);
        d->cont[i] = cat(" ", choice); // lm-eval's target delimiter
        d->norm_len[i] = utf8_chars(choice);
        free(choice);
    }
    free(ctx);
    return 0;
}

static int is_blank(const char *p, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!is_space((unsigned char)p[i])) return 0;
    return 1;
}

// Every line of a JSONL file as a JSON object (a limit of 0: all).
static int read_objects(const char *path, int limit, json_t ***out, int *n_out, int **lines) {
    size_t len;
    char *text = pn_read_file(path, &len);
    if (!text) return -1;
    json_t **v = NULL;
    int n = 0, rc = 0, line = 0;
    *lines = NULL;
    for (char *p = text; p < text + len && !rc && (!limit || n < limit);) {
        char *nl = memchr(p, '\n', (size_t)(text + len - p));
        const size_t ll = nl ? (size_t)(nl - p) : (size_t)(text + len - p);
        line++;
        if (!is_blank(p, ll)) {
            char where[1100];
            snprintf(where, sizeof where, "%s:%d", path, line);
            json_t *o = pn_json_loadb(p, ll, where);
            if (!o) rc = -1;
            else if (!json_is_object(o)) rc = pn_errorf("%s: not a JSON object", where), json_decref(o);
            else {
                v = pn_realloc(v, sizeof *v * (size_t)(n + 1));
                *lines = pn_realloc(*lines, sizeof **lines * (size_t)(n + 1));
                v[n] = o, (*lines)[n++] = line;
            }
        }
        p += ll + 1;
    }
    free(text);
    if (!rc && !n) rc = pn_errorf("%s: no documents", path);
    if (rc) {
        for (int i = 0; i < n; i++) json_decref(v[i]);
        free(v), free(*lines);
        *lines = NULL;
        return -1;
    }
    *out = v, *n_out = n;
    return 0;
}

static void free_objects(json_t **v, int n) {
    for (int i = 0; i < n; i++) json_decref(v[i]);
    free(v);
}

// The documents of a JSONL file (the first `limit`; 0: all), and the file's count.
static int read_jsonl(const task_def *t, const char *path, int limit, doc **out, int *n_out, int *n_total) {
    json_t **v = NULL;
    int nv = 0, *lines = NULL;
    if (read_objects(path, 0, &v, &nv, &lines)) return pn_error_prefix("task %s", t->name);
    const int n = limit && limit < nv ? limit : nv;
    doc *docs = pn_calloc((size_t)n, sizeof *docs);
    int rc = 0, i = 0;
    for (; i < n && !rc; i++) {
        char where[1100];
        snprintf(where, sizeof where, "%s:%d", path, lines[i]);
        rc = parse_doc(t, v[i], where, &docs[i]);
    }
    free_objects(v, nv);
    free(lines);
    if (rc) {
        for (int k = 0; k < i; k++) doc_free(&docs[k]);
        free(docs);
        return -1;
    }
    *out = docs, *n_out = n, *n_total = nv;
    return 0;
}

// ---------------------------------------------------------------------------------------------------
// MMLU: mmlu/{dev,test}/<subject>_{dev,test}.csv, header question,choice0,choice1,choice2,choice3,answer
// (answer 0..3 or A..D), read with libcsv (fields exactly as written: no space trimming, as Python's csv).

typedef struct mmlu_row {
    char *f[6];
} mmlu_row;

typedef struct csv_state {
    mmlu_row *rows;
    int n, field, bad_row, bad_fields;
    char *cur[6];
} csv_state;

static void csv_field(void *s, size_t len, void *data) {
    csv_state *c = data;
    if (c->field < 6) {
        c->cur[c->field] = pn_malloc(len + 1);
        if (len) memcpy(c->cur[c->field], s, len);
        c->cur[c->field][len] = 0;
    }
    c->field++;
}

static void csv_row(int ch, void *data) {
    (void)ch;
    csv_state *c = data;
    if (c->field != 6 && !c->bad_row) c->bad_row = c->n + 1, c->bad_fields = c->field;
    c->rows = pn_realloc(c->rows, sizeof *c->rows * (size_t)(c->n + 1));
    for (int i = 0; i < 6; i++) c->rows[c->n].f[i] = i < c->field ? c->cur[i] : NULL, c->cur[i] = NULL;
    c->n++;
    c->field = 0;
}

static int no_space(unsigned char c) { (void)c; return 0; }

static void rows_free(mmlu_row *r, int n) {
    for (int i = 0; i < n; i++)
        for (int k = 0; k < 6; k++) free(r[i].f[k]);
    free(r);
}

// The rows of an MMLU CSV after its header, each checked (6 fields, answer 0..3 or A..D).
static int read_mmlu_csv(const char *path, mmlu_row **out, int *n_out) {
    size_t len;
    char *text = pn_read_file(path, &len);
    if (!text) return -1;
    struct csv_parser p;
    csv_state c = {0};
    int rc = csv_init(&p, CSV_STRICT | CSV_STRICT_FINI) ? pn_errorf("%s: libcsv init failed", path) : 0;
    if (!rc) {
        csv_set_space_func(&p, no_space);
        if (csv_parse(&p, text, len, csv_field, csv_row, &c) != len || csv_fini(&p, csv_field, csv_row, &c))
            rc = pn_errorf("%s: row %d: malformed CSV (%s)", path, c.n + 1, csv_strerror(csv_error(&p)));
        csv_free(&p);
    }
    free(text);
    for (int i = 0; i < 6; i++) free(c.cur[i]);
    static const char *const header[6] = {"question", "choice0", "choice1", "choice2", "choice3", "answer"};
    if (!rc && c.bad_row) rc = pn_errorf("%s: row %d has %d fields, expected 6", path, c.bad_row, c.bad_fields);
    if (!rc && c.n < 1) rc = pn_errorf("%s: empty", path);
    for (int k = 0; k < 6 && !rc; k++)
        if (strcmp(c.rows[0].f[k], header[k]))
            rc = pn_errorf("%s: the header's field %d is \"%s\", expected \"%s\"", path, k + 1, c.rows[0].f[k], header[k]);
    for (int i = 1; i < c.n && !rc; i++) {
        char *a = c.rows[i].f[5];
        if (a[0] >= 'A' && a[0] <= 'D' && !a[1]) a[0] = (char)('0' + a[0] - 'A');
        if (!(a[0] >= '0' && a[0] <= '3' && !a[1])) rc = pn_errorf("%s: row %d: answer \"%s\" is not 0..3 or A..D", path, i + 1, a);
    }
    if (rc) {
        rows_free(c.rows, c.n);
        return -1;
    }
    for (int k = 0; k < 6; k++) free(c.rows[0].f[k]); // the header
    memmove(c.rows, c.rows + 1, sizeof *c.rows * (size_t)(c.n - 1));
    *out = c.rows, *n_out = c.n - 1;
    return 0;
}

// lm-eval's mmlu doc_to_text: "{question.strip()}\nA. ...\nB. ...\nC. ...\nD. ...\nAnswer:".
static char *mmlu_text(const mmlu_row *r) {
    const char *q = r->f[0];
    while (is_space((unsigned char)*q)) q++;
    size_t ql = strlen(q);
    while (ql && is_space((unsigned char)q[ql - 1])) ql--;
    size_t n = ql + 64;
    for (int k = 1; k <= 4; k++) n += strlen(r->f[k]);
    char *s = pn_malloc(n);
    snprintf(s, n, "%.*s\nA. %s\nB. %s\nC. %s\nD. %s\nAnswer:", (int)ql, q, r->f[1], r->f[2], r->f[3], r->f[4]);
    return s;
}

// The documents of one subject: description, k dev examples ("... Answer: B") joined by blank lines, then the
// test question; continuations " A" .. " D".
static int read_mmlu(const char *data_dir, const char *subject, int limit, int fewshot, doc **out, int *n_out,
                     int *n_total) {
    char rel[512];
    snprintf(rel, sizeof rel, "mmlu/test/%s_test.csv", subject);
    char *test = pn_path_join(data_dir, rel);
    snprintf(rel, sizeof rel, "mmlu/dev/%s_dev.csv", subject);
    char *dev = pn_path_join(data_dir, rel);
    mmlu_row *tr = NULL, *dr = NULL;
    int nt = 0, nd = 0, rc = read_mmlu_csv(test, &tr, &nt);
    if (!rc && fewshot) rc = read_mmlu_csv(dev, &dr, &nd);
    if (!rc && fewshot > nd)
        rc = pn_errorf("%s: --num-fewshot %d is more than its %d examples", dev, fewshot, nd);
    if (!rc && nt == 0) rc = pn_errorf("%s: no questions", test);
    free(test), free(dev);
    if (rc) {
        rows_free(tr, nt), rows_free(dr, nd);
        return -1;
    }
    // "The following are multiple choice questions (with answers) about {subject, _ as space}.\n\n"
    char spaced[256];
    snprintf(spaced, sizeof spaced, "%s", subject);
    for (char *p = spaced; *p; p++)
        if (*p == '_') *p = ' ';
    size_t plen = strlen(spaced) + 96;
    char *prefix = pn_malloc(plen);
    snprintf(prefix, plen, "The following are multiple choice questions (with answers) about %s.\n\n", spaced);
    for (int k = 0; k < fewshot; k++) {
        char *x = mmlu_text(&dr[k]), ans[8];
        snprintf(ans, sizeof ans, " %c\n\n", 'A' + (dr[k].f[5][0] - '0'));
        char *a = cat(prefix, x), *b = cat(a, ans);
        free(prefix), free(x), free(a);
        prefix = b;
    }
    const int n = limit && limit < nt ? limit : nt;
    doc *docs = pn_calloc((size_t)n, sizeof *docs);
    for (int i = 0; i < n; i++) {
        char *x = mmlu_text(&tr[i]), *ctx = cat(prefix, x);
        doc_alloc(&docs[i], 4);
        docs[i].gold = tr[i].f[5][0] - '0';
        for (int c = 0; c < 4; c++) {
            const char letter[3] = {' ', (char)('A' + c), 0};
            docs[i].ctx[c] = pn_strdup(ctx), docs[i].cont[c] = pn_strdup(letter), docs[i].norm_len[c] = 1;
        }
        free(x), free(ctx);
    }
    free(prefix);
    rows_free(tr, nt), rows_free(dr, nd);
    *out = docs, *n_out = n, *n_total = nt;
    return 0;
}

// The subjects in data_dir/mmlu/test, sorted (lm-eval's group order is alphabetical too).
static int mmlu_subjects(const char *data_dir, char ***out, int *n_out) {
    char *dir = pn_path_join(data_dir, "mmlu/test");
    DIR *d = opendir(dir);
    if (!d) {
        const int rc = pn_errorf("%s: cannot read the MMLU subjects (--data names the task folder)", dir);
        free(dir);
        return rc;
    }
    char **names = NULL;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        const size_t l = strlen(e->d_name);
        if (l > 9 && !strcmp(e->d_name + l - 9, "_test.csv")) {
            names = pn_realloc(names, sizeof *names * (size_t)(n + 1));
            names[n] = pn_strdup(e->d_name);
            names[n++][l - 9] = 0;
        }
    }
    closedir(d);
    free(dir);
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (strcmp(names[j], names[i]) < 0) {
                char *t = names[i];
                names[i] = names[j], names[j] = t;
            }
    if (!n) return pn_errorf("%s/mmlu/test: no <subject>_test.csv", data_dir);
    *out = names, *n_out = n;
    return 0;
}

// ---------------------------------------------------------------------------------------------------
// metrics

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

static void write_sample(FILE *f, const char *task, int i, const doc *d, const pn_ll_req *r, int kind, double acc,
                         double accn) {
    json_t *s = json_object(), *args = json_array(), *resps = json_array();
    for (int c = 0; c < d->n; c++) {
        json_array_append_new(args, json_pack("[s, s]", d->ctx[c], d->cont[c]));
        json_array_append_new(resps, json_pack("[f, b]", r[c].ll, r[c].greedy));
    }
    json_object_set_new(s, "task", json_string(task));
    json_object_set_new(s, "doc_id", json_integer(i));
    json_object_set_new(s, "arguments", args);
    json_object_set_new(s, "resps", resps);
    json_object_set_new(s, "target", kind == K_LAMBADA ? json_string(d->cont[0]) : json_integer(d->gold));
    json_object_set_new(s, "acc", json_real(acc));
    if (kind == K_MC) json_object_set_new(s, "acc_norm", json_real(accn));
    if (kind == K_LAMBADA) json_object_set_new(s, "perplexity", json_real(r[0].ll));
    char *line = json_dumps(s, JSON_COMPACT | JSON_REAL_PRECISION(17));
    fprintf(f, "%s\n", line);
    free(line);
    json_decref(s);
}

// Scores documents into one result (and per-document samples); acc holds each document's acc afterwards.
static int score(const char *task, task_kind kind, doc *docs, int nd, int total, pn_eval *e, const pn_tokenizer *tok,
                 pn_task_result *out, FILE *samples, int progress, double **acc_out) {
    memset(out, 0, sizeof *out);
    out->gold_nll = NAN;
    snprintf(out->task, sizeof out->task, "%s", task);
    out->n_docs = nd, out->n_docs_total = total;
    int nr = 0, rc = 0;
    for (int i = 0; i < nd; i++) nr += docs[i].n;
    pn_ll_req *req = pn_calloc((size_t)nr, sizeof *req);
    pair_ids *ids = pn_calloc((size_t)nr, sizeof *ids);
    for (int i = 0, k = 0; i < nd && !rc; i++)
        for (int c = 0; c < docs[i].n && !rc; c++, k++) {
            rc = encode_pair(tok, docs[i].ctx[c], docs[i].cont[c], &ids[k]);
            if (rc) rc = pn_error_prefix("task %s, document %d, request %d", task, i, c);
            req[k] = (pn_ll_req){.ctx = ids[k].ctx, .cont = ids[k].cont, .n_ctx = (int)ids[k].n_ctx,
                                 .n_cont = (int)ids[k].n_cont};
        }
    progress_ctx pc = {task, progress};
    if (!rc) rc = pn_eval_loglikelihood(e, req, nr, show_progress, &pc);
    if (progress) fputc('\n', stderr);
    double *acc = pn_malloc(sizeof(double) * (size_t)nd), *accn = pn_malloc(sizeof(double) * (size_t)nd);
    double *ll = pn_malloc(sizeof(double) * (size_t)nd);
    for (int i = 0, k = 0; i < nd && !rc; k += docs[i].n, i++) {
        const pn_ll_req *r = &req[k];
        int best = 0, bestn = 0;
        for (int c = 1; c < docs[i].n; c++) {
            if (r[c].ll > r[best].ll) best = c;
            if (r[c].ll / (double)docs[i].norm_len[c] > r[bestn].ll / (double)docs[i].norm_len[bestn]) bestn = c;
        }
        for (int c = 0; c < docs[i].n; c++) out->truncated += r[c].truncated;
        if (kind == K_LAMBADA) acc[i] = r[0].greedy, ll[i] = r[0].ll;
        else acc[i] = best == docs[i].gold, accn[i] = bestn == docs[i].gold, ll[i] = r[docs[i].gold].ll;
        if (samples) write_sample(samples, task, i, &docs[i], r, kind, acc[i], accn[i]);
    }
    out->gold_nll = NAN;
    if (!rc && kind != K_LAMBADA && nd) {
        double m = 0;
        for (int i = 0; i < nd; i++) m -= ll[i];
        out->gold_nll = m / nd;
    }
    if (!rc) {
        add_metric(out, "acc", acc, nd, 1);
        if (kind == K_MC) add_metric(out, "acc_norm", accn, nd, 1);
        if (kind == K_LAMBADA) { // lm-eval's perplexity: exp(-mean ll) over documents; its stderr by the delta method
            double m = 0;
            for (int i = 0; i < nd; i++) m += ll[i];
            m /= nd;
            const int k = out->n_metrics++;
            out->metric[k] = "perplexity", out->value[k] = exp(-m), out->higher_is_better[k] = 0;
            out->stderr_[k] = exp(-m) * mean_stderr(ll, nd);
        }
    }
    for (int k = 0; k < nr; k++) free(ids[k].ctx), free(ids[k].cont);
    free(ids), free(req), free(accn), free(ll);
    if (acc_out && !rc) *acc_out = acc;
    else free(acc);
    return rc;
}

// ---------------------------------------------------------------------------------------------------
// generate-until tasks

typedef struct gen_doc {
    char *prompt, *target; // gsm8k: the reference answer (solution ending in "#### N"); kv: the value
} gen_doc;

// The JSONL lines of a generation task as (field_a, field_b) string pairs, all of them (few-shot needs the end).
static int read_pairs(const task_def *t, const char *path, const char *fa, const char *fb, gen_doc **out, int *n_out) {
    json_t **v = NULL;
    int n = 0, *lines = NULL, rc = 0;
    if (read_objects(path, 0, &v, &n, &lines)) return pn_error_prefix("task %s", t->name);
    gen_doc *docs = pn_calloc((size_t)n, sizeof *docs);
    int i = 0;
    for (; i < n && !rc; i++) {
        char where[1100];
        const char *a = NULL, *b = NULL;
        snprintf(where, sizeof where, "%s:%d", path, lines[i]);
        rc = get_string(v[i], fa, where, &a) || get_string(v[i], fb, where, &b);
        if (!rc && !b[0]) rc = pn_errorf("%s: \"%s\" is empty", where, fb);
        if (!rc) docs[i].prompt = pn_strdup(a), docs[i].target = pn_strdup(b);
    }
    free_objects(v, n);
    free(lines);
    if (rc) {
        for (int k = 0; k < i; k++) free(docs[k].prompt), free(docs[k].target);
        free(docs);
        return -1;
    }
    *out = docs, *n_out = n;
    return 0;
}

// Python's re.findall(pattern, s)[select] reduced as lm-eval's RegexFilter does (the first non-empty group of
// the match, stripped), or NULL when nothing matches. select: 0 first, -1 last.
static char *regex_pick(const char *pattern, const char *s, int select) {
    int err;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &err, &off, NULL);
    if (!re) pn_panic("regex %s does not compile", pattern);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    char *found = NULL;
    const size_t n = strlen(s);
    for (PCRE2_SIZE at = 0; at <= n;) {
        const int k = pcre2_match(re, (PCRE2_SPTR)s, n, at, 0, md, NULL);
        if (k < 0) break;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        free(found);
        found = NULL;
        for (int g = 1; g < k || (k == 1 && g == 1); g++) { // the first non-empty group (the match without groups)
            const PCRE2_SIZE b = k == 1 ? ov[0] : ov[2 * g], e = k == 1 ? ov[1] : ov[2 * g + 1];
            if (b == PCRE2_UNSET || e <= b) continue;
            found = pn_malloc(e - b + 1);
            memcpy(found, s + b, e - b);
            found[e - b] = 0;
            break;
        }
        if (select == 0 && found) break;
        at = ov[1] > ov[0] ? ov[1] : ov[1] + 1;
    }
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    if (found) { // .strip()
        char *a = found;
        while (is_space((unsigned char)*a)) a++;
        size_t l = strlen(a);
        while (l && is_space((unsigned char)a[l - 1])) l--;
        memmove(found, a, l);
        found[l] = 0;
    }
    return found;
}

// re.sub(pattern, "", s) for each of lm-eval's gsm8k regexes_to_ignore, then lower case.
static char *normalize_answer(const char *s) {
    static const char *const ignore[] = {",", "\\$", "(?s).*#### ", "\\.$"};
    char *cur = pn_strdup(s);
    for (size_t i = 0; i < sizeof ignore / sizeof ignore[0]; i++) {
        int err;
        PCRE2_SIZE off;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)ignore[i], PCRE2_ZERO_TERMINATED, PCRE2_UTF, &err, &off, NULL);
        if (!re) pn_panic("regex %s does not compile", ignore[i]);
        PCRE2_SIZE outlen = strlen(cur) + 1;
        char *out = pn_malloc(outlen);
        int k = pcre2_substitute(re, (PCRE2_SPTR)cur, PCRE2_ZERO_TERMINATED, 0, PCRE2_SUBSTITUTE_GLOBAL, NULL, NULL,
                                 (PCRE2_SPTR) "", 0, (PCRE2_UCHAR *)out, &outlen);
        pcre2_code_free(re);
        if (k < 0) pn_panic("regex substitution failed (%d)", k);
        free(cur);
        cur = out;
    }
    for (char *p = cur; *p; p++)
        if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
    return cur;
}

void pn_gsm8k_score(const char *response, const char *target, char **strict, char **flex, int *em_strict,
                    int *em_flex) {
    char *ref = normalize_answer(target);
    *strict = regex_pick("#### (\\-?[0-9\\.\\,]+)", response, 0);
    *flex = regex_pick("(-?[$0-9.,]{2,})|(-?[0-9]+)", response, -1);
    if (!*strict) *strict = pn_strdup("[invalid]");
    if (!*flex) *flex = pn_strdup("[invalid]");
    char *a = normalize_answer(*strict), *b = normalize_answer(*flex);
    *em_strict = !strcmp(a, ref), *em_flex = !strcmp(b, ref);
    free(a), free(b), free(ref);
}

static int contains_ci(const char *hay, const char *needle) {
    const size_t n = strlen(needle);
    for (const char *p = hay; *p; p++)
        if (!strncasecmp(p, needle, n)) return 1;
    return n == 0;
}

// Generation documents of a task: read from its file (gsm8k, kv) or made by pn_synth.
static int gen_docs(const task_def *t, const char *data_dir, int limit, int fewshot, gen_doc **docs, int *nd) {
    if (t->kind == K_SYNTH) {
        if (fewshot) return pn_errorf("task %s: --num-fewshot %d: the synthetic tasks are zero-shot", t->name, fewshot);
        pn_synth_task st;
        if (pn_synth_task_parse(t->file, &st)) return -1;
        const pn_synth_spec sp = pn_synth_spec_default(st, 0);
        const int n = limit ? limit : 100;
        *docs = pn_calloc((size_t)n, sizeof **docs);
        for (int i = 0; i < n; i++) {
            pn_synth_item it;
            if (pn_synth_generate(&sp, (uint64_t)i, &it)) return -1;
            (*docs)[i].prompt = it.prompt, (*docs)[i].target = it.answer;
            it.prompt = it.answer = NULL;
            pn_synth_item_free(&it);
        }
        *nd = n;
        return 0;
    }
    const int gsm = t->kind == K_GSM8K;
    char *path = pn_path_join(data_dir, t->file);
    int rc = read_pairs(t, path, gsm ? "question" : "context", "answer", docs, nd);
    if (!rc && !gsm && fewshot) rc = pn_errorf("task %s: --num-fewshot %d: retrieval is zero-shot", t->name, fewshot);
    if (!rc && gsm && fewshot >= *nd)
        rc = pn_errorf("%s: --num-fewshot %d needs more than its %d problems", path, fewshot, *nd);
    free(path);
    return rc;
}

// Scores generation documents (takes them: freed here): kind K_GSM8K (exact match of the strict and flexible
// extractions), K_KV (the answer contained), K_SYNTH and user tasks (stripped exact match, and contained).
// until: the stop strings (the end-of-text token's text is added, as lm-eval adds it).
static int run_generation_docs(const char *name, task_kind kind, gen_doc *docs, int ns, int total,
                               const char *const *until_in, int n_until, int max_gen, pn_eval *e,
                               const pn_tokenizer *tok, pn_task_result *out, FILE *samples, int progress) {
    const int gsm = kind == K_GSM8K, synth = kind == K_SYNTH;
    int rc = 0;
    memset(out, 0, sizeof *out);
    out->gold_nll = NAN;
    snprintf(out->task, sizeof out->task, "%s", name);
    out->n_docs = ns, out->n_docs_total = total;
    char *eot_text = NULL;
    size_t el;
    const int32_t eot = e->m->cfg.eos_id >= 0 ? e->m->cfg.eos_id : e->eot;
    if (pn_tokenizer_decode(tok, &eot, 1, 0, &eot_text, &el)) eot_text = pn_strdup("");
    const char **until = pn_calloc((size_t)n_until + 1, sizeof(char *));
    for (int k = 0; k < n_until; k++) until[k] = until_in[k];
    until[n_until] = eot_text;
    pn_gen_req *req = pn_calloc((size_t)(ns ? ns : 1), sizeof *req);
    int32_t **ids = pn_calloc((size_t)(ns ? ns : 1), sizeof *ids);
    for (int i = 0; i < ns && !rc; i++) {
        size_t ni = 0, cap = 0;
        rc = pn_tokenizer_encode(tok, docs[i].prompt, strlen(docs[i].prompt), 1, &ids[i], &ni, &cap);
        req[i] = (pn_gen_req){.ctx = ids[i], .n_ctx = (int)ni, .until = until, .n_until = n_until + 1, .max_gen = max_gen};
    }
    progress_ctx pc = {name, progress};
    if (!rc) rc = pn_eval_generate(e, tok, req, ns, show_progress, &pc);
    if (progress) fputc('\n', stderr);
    double *m1 = pn_calloc((size_t)(ns ? ns : 1), sizeof(double)), *m2 = pn_calloc((size_t)(ns ? ns : 1), sizeof(double));
    for (int i = 0; i < ns && !rc; i++) {
        char *strict = NULL, *flex = NULL;
        out->truncated += req[i].truncated;
        if (gsm) {
            int a, b;
            pn_gsm8k_score(req[i].text, docs[i].target, &strict, &flex, &a, &b);
            m1[i] = a, m2[i] = b;
        } else if (synth) { // the output and the answer stripped, equal; and the answer contained
            char *a = regex_pick("(?s)^(.*)$", req[i].text, 0), *b = regex_pick("(?s)^(.*)$", docs[i].target, 0);
            m1[i] = a && b && !strcmp(a, b), m2[i] = contains_ci(req[i].text, b ? b : docs[i].target);
            free(a), free(b);
        } else {
            m1[i] = contains_ci(req[i].text, docs[i].target);
        }
        if (samples) {
            json_t *s = json_object();
            json_object_set_new(s, "task", json_string(name));
            json_object_set_new(s, "doc_id", json_integer(i));
            json_object_set_new(s, "arguments", json_pack("[[s, {s:i}]]", docs[i].prompt, "max_gen_toks", req[i].max_gen));
            json_object_set_new(s, "resps", json_pack("[[s]]", req[i].text));
            json_t *g = json_array();
            for (int k = 0; k < req[i].n_gen; k++) json_array_append_new(g, json_integer(req[i].gen[k]));
            json_object_set_new(s, "gen_ids", g);
            json_object_set_new(s, "target", json_string(docs[i].target));
            if (gsm) {
                json_object_set_new(s, "filtered_resps", json_pack("{s:s, s:s}", "strict-match", strict, "flexible-extract", flex));
                json_object_set_new(s, "exact_match,strict-match", json_real(m1[i]));
                json_object_set_new(s, "exact_match,flexible-extract", json_real(m2[i]));
            } else {
                json_object_set_new(s, synth ? "exact_match" : "contains", json_real(m1[i]));
                if (synth) json_object_set_new(s, "contains", json_real(m2[i]));
            }
            char *line = json_dumps(s, JSON_COMPACT | JSON_REAL_PRECISION(17));
            if (line) fprintf(samples, "%s\n", line);
            free(line);
            json_decref(s);
        }
        free(strict), free(flex);
    }
    if (!rc && ns) {
        if (gsm) {
            add_metric(out, "exact_match", m1, ns, 1), out->filter[0] = "strict-match";
            add_metric(out, "exact_match", m2, ns, 1), out->filter[1] = "flexible-extract";
        } else if (synth) {
            add_metric(out, "exact_match", m1, ns, 1);
            add_metric(out, "contains", m2, ns, 1);
        } else {
            add_metric(out, "contains", m1, ns, 1);
        }
    }
    for (int i = 0; i < ns; i++) free(ids[i]), free(req[i].text), free(req[i].gen), free(docs[i].prompt), free(docs[i].target);
    free(ids), free(req), free(docs), free(eot_text), free(until), free(m1), free(m2);
    return rc;
}

static int run_generation(const task_def *t, const char *data_dir, int limit, int fewshot, int max_gen, pn_eval *e,
                          const pn_tokenizer *tok, pn_task_result *out, FILE *samples, int progress) {
    const int gsm = t->kind == K_GSM8K;
    gen_doc *docs = NULL;
    int nd = 0;
    if (gen_docs(t, data_dir, limit, fewshot, &docs, &nd)) return -1;
    // GSM8K: "Question: {question}\nAnswer:"; the few-shot block is the last `fewshot` problems of the file with
    // their full solutions, joined by blank lines (never scored: the scored ones stop before them)
    char *block = pn_strdup("");
    for (int k = gsm ? nd - fewshot : nd; k < nd; k++) {
        const size_t n = strlen(block) + strlen(docs[k].prompt) + strlen(docs[k].target) + 32;
        char *b = pn_malloc(n);
        snprintf(b, n, "%sQuestion: %s\nAnswer: %s\n\n", block, docs[k].prompt, docs[k].target);
        free(block);
        block = b;
    }
    const int avail = gsm ? nd - fewshot : nd, ns = limit && limit < avail ? limit : avail;
    for (int i = 0; i < ns && gsm; i++) {
        const size_t n = strlen(block) + strlen(docs[i].prompt) + 32;
        char *p = pn_malloc(n);
        snprintf(p, n, "%sQuestion: %s\nAnswer:", block, docs[i].prompt);
        free(docs[i].prompt);
        docs[i].prompt = p;
    }
    for (int i = ns; i < nd; i++) free(docs[i].prompt), free(docs[i].target);
    free(block);
    // recall's queries follow one another without a newline ("|k7|z1"): its answer ends at the next '|'
    static const char *const until_gsm[] = {"Question:", "</s>", "<|im_end|>"}, *const until_nl[] = {"\n", "|"};
    const int n_nl = strcmp(t->file, "recall") ? 1 : 2;
    return run_generation_docs(t->name, t->kind, docs, ns, t->kind == K_SYNTH ? ns : avail, gsm ? until_gsm : until_nl,
                               gsm ? 3 : n_nl, max_gen ? max_gen : gsm ? 256 : 48, e, tok, out, samples, progress);
}

// ---------------------------------------------------------------------------------------------------
// user tasks: a YAML file (like lm-eval's task configs) read through the same schema code as the trainer's

typedef struct user_task {
    char path[1024], dir[1024]; // the YAML file and its folder (relative dataset paths start there)
    char task[64], dataset[1024], output_type[32], doc_to_text[4096], doc_to_choice[256], doc_to_target[1024];
    char target_delimiter[16], fewshot_delimiter[16], fewshot_split[1024], until[1024];
    int64_t num_fewshot, max_gen_toks;
} user_task;

#define U user_task
static const pn_cfg_key kUserSchema[] = {
    PN_CFG_STR(U, "task", task, NULL, 0, "the task's name (results.json, the summary)"),
    PN_CFG_STR(U, "dataset", dataset, NULL, 0, "a JSONL file, one document per line (relative: to this file's folder)"),
    PN_CFG_C(U, "output_type", output_type, "multiple_choice",
             "multiple_choice|loglikelihood|loglikelihood_rolling|generate_until",
             "multiple_choice: acc, acc_norm; loglikelihood: acc (greedy), perplexity; loglikelihood_rolling (the target "
             "text alone, in windows): word_perplexity, byte_perplexity, bits_per_byte; generate_until: exact_match, contains"),
    PN_CFG_STR(U, "doc_to_text", doc_to_text, "", 0,
               "the prompt, a template: {field} is the document's field (not used by loglikelihood_rolling)"),
    PN_CFG_STR(U, "doc_to_choice", doc_to_choice, "", 0, "multiple_choice: the field that holds the list of choices"),
    PN_CFG_STR(U, "doc_to_target", doc_to_target, NULL, 0,
               "multiple_choice: the field that holds the gold index; otherwise the target, a template"),
    PN_CFG_STR(U, "target_delimiter", target_delimiter, "\" \"", 0, "between the prompt and a choice or the target"),
    PN_CFG_STR(U, "fewshot_delimiter", fewshot_delimiter, "\"\\n\\n\"", 0, "between few-shot examples and the prompt"),
    PN_CFG_STR(U, "fewshot_split", fewshot_split, "", 0, "a JSONL file of few-shot examples (used in order)"),
    PN_CFG_I(U, "num_fewshot", num_fewshot, "0", 0, 1000, 0, "few-shot examples before each prompt"),
    PN_CFG_L(U, "until", until, "[\"\\n\"]", "generate_until: stop strings"),
    PN_CFG_I(U, "max_gen_toks", max_gen_toks, "64", 1, 1 << 20, 0, "generate_until: at most this many tokens"),
};
#undef U

int pn_task_is_file(const char *name) {
    const size_t n = strlen(name);
    return (n > 5 && !strcmp(name + n - 5, ".yaml")) || (n > 4 && !strcmp(name + n - 4, ".yml"));
}

// A template with {field} replaced by the document's field (a string, or a number as JSON writes it);
// "{{" and "}}" are literal braces.
static int render(const char *tmpl, json_t *doc, const char *where, const char *yaml, char **out) {
    size_t cap = strlen(tmpl) + 64, n = 0;
    char *s = pn_malloc(cap);
#define PUTS(p, l)                                   \
    do {                                             \
        while (n + (l) + 1 > cap) s = pn_realloc(s, cap *= 2); \
        memcpy(s + n, (p), (l));                     \
        n += (l);                                    \
    } while (0)
    for (const char *p = tmpl; *p;) {
        if ((p[0] == '{' && p[1] == '{') || (p[0] == '}' && p[1] == '}')) {
            PUTS(p, 1);
            p += 2;
        } else if (*p == '{') {
            const char *e = strchr(p, '}');
            if (!e) {
                free(s);
                return pn_errorf("%s: a template has '{' without '}'", yaml);
            }
            char key[256];
            snprintf(key, sizeof key, "%.*s", (int)(e - p - 1), p + 1);
            json_t *v = json_object_get(doc, key);
            if (!v || json_is_array(v) || json_is_object(v) || json_is_null(v)) {
                free(s);
                return pn_errorf("%s: no string or number field \"%s\" (a template of %s)", where, key, yaml);
            }
            char *txt = json_is_string(v) ? pn_strdup(json_string_value(v)) : json_dumps(v, JSON_ENCODE_ANY);
            PUTS(txt, strlen(txt));
            free(txt);
            p = e + 1;
        } else {
            PUTS(p, 1);
            p++;
        }
    }
#undef PUTS
    s[n] = 0;
    *out = s;
    return 0;
}

static char *resolve(const user_task *u, const char *p) { return p[0] == '/' ? pn_strdup(p) : pn_path_join(u->dir, p); }

// One document of a user task: its prompt, choices (multiple_choice) or target, gold index.
static int user_doc(const user_task *u, json_t *o, const char *where, char **text, json_t **choices, char **target,
                    int *gold) {
    *text = *target = NULL, *choices = NULL, *gold = -1;
    if (!strcmp(u->output_type, "loglikelihood_rolling")) {
        *text = pn_strdup("");
        return render(u->doc_to_target, o, where, u->path, target);
    }
    if (render(u->doc_to_text, o, where, u->path, text)) return -1;
    if (strcmp(u->output_type, "multiple_choice")) {
        if (render(u->doc_to_target, o, where, u->path, target)) return -1;
        return 0;
    }
    if (get_strings(o, u->doc_to_choice, where, choices)) return -1;
    json_t *g = json_object_get(o, u->doc_to_target);
    if (json_is_integer(g)) {
        const json_int_t x = json_integer_value(g);
        if (x < 0 || x >= (json_int_t)json_array_size(*choices))
            return pn_errorf("%s: \"%s\" %lld is outside the %zu choices", where, u->doc_to_target, (long long)x,
                             json_array_size(*choices));
        *gold = (int)x;
    } else if (json_is_string(g)) { // the gold choice itself
        for (size_t i = 0; i < json_array_size(*choices); i++)
            if (!strcmp(json_string_value(json_array_get(*choices, i)), json_string_value(g))) *gold = (int)i;
        if (*gold < 0) return pn_errorf("%s: \"%s\" is not one of the choices", where, u->doc_to_target);
    } else {
        return pn_errorf("%s: \"%s\" (doc_to_target of %s) must be the gold index or the gold choice", where,
                         u->doc_to_target, u->path);
    }
    return 0;
}


// The few-shot block: the first k examples ("text" + delimiter + target) each followed by the delimiter.
static int user_fewshot(const user_task *u, int k, char **block) {
    *block = pn_strdup("");
    if (!k) return 0;
    if (!u->fewshot_split[0]) return pn_errorf("%s: num_fewshot %d needs a fewshot_split", u->path, k);
    char *path = resolve(u, u->fewshot_split);
    json_t **v = NULL;
    int n = 0, *lines = NULL, rc = read_objects(path, 0, &v, &n, &lines);
    if (!rc && k > n) rc = pn_errorf("%s: num_fewshot %d is more than its %d examples", path, k, n);
    for (int i = 0; i < k && !rc; i++) {
        char where[1100], *text, *target, *ex;
        json_t *ch;
        int gold;
        snprintf(where, sizeof where, "%s:%d", path, lines[i]);
        rc = user_doc(u, v[i], where, &text, &ch, &target, &gold);
        if (rc) break;
        const char *t = ch ? json_string_value(json_array_get(ch, (size_t)gold)) : target;
        const size_t l = strlen(*block) + strlen(text) + strlen(t) + strlen(u->target_delimiter) + strlen(u->fewshot_delimiter) + 1;
        ex = pn_malloc(l);
        snprintf(ex, l, "%s%s%s%s%s", *block, text, u->target_delimiter, t, u->fewshot_delimiter);
        free(*block), free(text), free(target);
        *block = ex;
    }
    if (v) free_objects(v, n);
    free(lines), free(path);
    return rc;
}

// Rolling log-likelihood of each document's text (lm-eval's loglikelihood_rolling with its Hugging Face backend:
// get_rolling_token_windows with the prefix token and context 1, made disjoint): the first window predicts
// the first min(window, n) tokens after the prefix token; each next one predicts up to a window's tokens after
// the ones before them. Metrics as lm-eval's wikitext: word_perplexity exp(-sum ll / sum words) (words:
// len(re.split(r"\s+", text))), byte_perplexity exp(-sum ll / sum bytes), bits_per_byte -sum ll / sum bytes / ln 2.
static int run_rolling(const char *name, gen_doc *docs, int nd, pn_eval *e, const pn_tokenizer *tok,
                       pn_task_result *out, FILE *samples, int progress) {
    memset(out, 0, sizeof *out);
    out->gold_nll = NAN;
    snprintf(out->task, sizeof out->task, "%s", name);
    out->n_docs = out->n_docs_total = nd;
    const int W = e->max_len;
    int32_t **ids = pn_calloc((size_t)nd, sizeof *ids);
    int *nt = pn_calloc((size_t)nd, sizeof(int)), *first_req = pn_calloc((size_t)nd + 1, sizeof(int)), nr = 0, rc = 0;
    for (int i = 0; i < nd && !rc; i++) {
        size_t n = 0, cap = 0;
        rc = pn_tokenizer_encode(tok, docs[i].target, strlen(docs[i].target), 1, &ids[i], &n, &cap);
        nt[i] = (int)n;
        first_req[i] = nr;
        if (!rc && n == 0) rc = pn_errorf("task %s: document %d has no tokens", name, i);
        const int first = (int)n < W ? (int)n : W;
        if (!rc) nr += 1 + ((int)n - first + W - 1) / W;
    }
    first_req[nd] = nr;
    pn_ll_req *req = pn_calloc((size_t)(nr ? nr : 1), sizeof *req);
    for (int i = 0, k = 0; i < nd && !rc; i++) {
        const int32_t *t = ids[i];
        const int n = nt[i], first = n < W ? n : W;
        req[k++] = (pn_ll_req){.ctx = NULL, .n_ctx = 0, .cont = t, .n_cont = first}; // after the prefix token
        for (int done = first; done < n;) {
            const int wpl = n - done < W ? n - done : W, end = done + wpl, start = end - W - 1;
            req[k++] = (pn_ll_req){.ctx = t + start, .n_ctx = W - wpl + 1, .cont = t + end - wpl, .n_cont = wpl};
            done += wpl;
        }
    }
    progress_ctx pc = {name, progress};
    if (!rc) rc = pn_eval_loglikelihood(e, req, nr, show_progress, &pc);
    if (progress) fputc('\n', stderr);
    if (!rc) {
        double ll = 0, words = 0, bytes = 0;
        int err;
        PCRE2_SIZE off;
        pcre2_code *ws = pcre2_compile((PCRE2_SPTR) "\\s+", PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err, &off, NULL);
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(ws, NULL);
        for (int i = 0; i < nd; i++) {
            double dl = 0;
            for (int k = first_req[i]; k < first_req[i + 1]; k++) dl += req[k].ll;
            const size_t len = strlen(docs[i].target);
            int w = 1;
            for (PCRE2_SIZE at = 0; at < len && pcre2_match(ws, (PCRE2_SPTR)docs[i].target, len, at, 0, md, NULL) > 0;) {
                at = pcre2_get_ovector_pointer(md)[1];
                w++;
            }
            ll += dl, words += w, bytes += (double)len;
            if (samples) {
                json_t *sm = json_pack("{s:s, s:i, s:s, s:[[f]], s:i, s:i, s:i}", "task", name, "doc_id", i, "target",
                                       docs[i].target, "resps", dl, "words", w, "bytes", (int)len, "tokens", nt[i]);
                char *line = sm ? json_dumps(sm, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
                if (line) fprintf(samples, "%s\n", line);
                free(line);
                json_decref(sm);
            }
        }
        pcre2_match_data_free(md);
        pcre2_code_free(ws);
        static const char *const names[3] = {"word_perplexity", "byte_perplexity", "bits_per_byte"};
        const double v[3] = {exp(-ll / words), exp(-ll / bytes), -ll / bytes / log(2.0)};
        for (int k = 0; k < 3; k++)
            out->metric[k] = names[k], out->value[k] = v[k], out->stderr_[k] = NAN, out->higher_is_better[k] = 0;
        out->n_metrics = 3;
    }
    for (int i = 0; i < nd; i++) free(ids[i]), free(docs[i].prompt), free(docs[i].target);
    free(ids), free(nt), free(first_req), free(req), free(docs);
    return rc;
}

static int run_user(const char *yaml, int limit, int fewshot_flag, int max_gen, pn_eval *e, const pn_tokenizer *tok,
                    pn_task_result **res, int *n_res, FILE *samples, int progress) {
    user_task *u = pn_calloc(1, sizeof *u);
    int rc = pn_cfg_load(kUserSchema, (int)(sizeof kUserSchema / sizeof kUserSchema[0]), u, yaml, NULL, 0);
    snprintf(u->path, sizeof u->path, "%s", yaml);
    snprintf(u->dir, sizeof u->dir, "%s", yaml);
    char *slash = strrchr(u->dir, '/');
    if (slash) *slash = 0;
    else snprintf(u->dir, sizeof u->dir, ".");
    const int mc = !strcmp(u->output_type, "multiple_choice"), gen = !strcmp(u->output_type, "generate_until");
    const int rolling = !strcmp(u->output_type, "loglikelihood_rolling");
    if (!rc && mc && !u->doc_to_choice[0]) rc = pn_errorf("%s: output_type multiple_choice needs doc_to_choice", yaml);
    if (!rc && !rolling && !u->doc_to_text[0]) rc = pn_errorf("%s: output_type %s needs doc_to_text", yaml, u->output_type);
    if (!rc && rolling && (fewshot_flag || u->num_fewshot))
        rc = pn_errorf("%s: loglikelihood_rolling scores the text alone (no few-shot)", yaml);
    const int k = fewshot_flag ? fewshot_flag : (int)u->num_fewshot;
    char *block = NULL;
    if (!rc) rc = user_fewshot(u, k, &block);
    json_t **v = NULL;
    int n = 0, *lines = NULL;
    char *data = rc ? NULL : resolve(u, u->dataset);
    if (!rc) rc = read_objects(data, limit, &v, &n, &lines);
    doc *docs = rc ? NULL : pn_calloc((size_t)n, sizeof *docs);
    gen_doc *gdocs = rc ? NULL : pn_calloc((size_t)n, sizeof *gdocs);
    for (int i = 0; i < n && !rc; i++) {
        char where[1100], *text, *target, *prompt;
        json_t *ch;
        int gold;
        snprintf(where, sizeof where, "%s:%d", data, lines[i]);
        rc = user_doc(u, v[i], where, &text, &ch, &target, &gold);
        if (rc) break;
        prompt = cat(block, text);
        free(text);
        if (rolling) {
            gdocs[i].prompt = prompt, gdocs[i].target = target;
            continue;
        }
        if (gen) {
            gdocs[i].prompt = prompt, gdocs[i].target = target;
            continue;
        }
        const int nc = mc ? (int)json_array_size(ch) : 1;
        doc_alloc(&docs[i], nc);
        docs[i].gold = mc ? gold : 0;
        for (int c = 0; c < nc; c++) {
            const char *t = mc ? json_string_value(json_array_get(ch, (size_t)c)) : target;
            docs[i].ctx[c] = pn_strdup(prompt), docs[i].cont[c] = cat(u->target_delimiter, t);
            docs[i].norm_len[c] = utf8_chars(t);
        }
        free(prompt), free(target);
    }
    if (!rc) {
        next_result(res, *n_res);
        if (rolling) {
            rc = run_rolling(u->task, gdocs, n, e, tok, &(*res)[*n_res], samples, progress);
            gdocs = NULL; // run_rolling frees them
        } else if (gen) {
            char stops[1024];
            const char *until[32];
            int nu = 0;
            for (int j = 0; j < pn_cfg_list_count(u->until) && nu < 31; j++)
                if (!pn_cfg_list_item(u->until, j, stops, sizeof stops)) until[nu++] = pn_strdup(stops);
            rc = run_generation_docs(u->task, K_SYNTH, gdocs, n, n, until, nu, max_gen ? max_gen : (int)u->max_gen_toks,
                                     e, tok, &(*res)[*n_res], samples, progress);
            for (int j = 0; j < nu; j++) free((char *)until[j]);
            gdocs = NULL; // run_generation_docs frees them
        } else {
            rc = score(u->task, mc ? K_MC : K_LAMBADA, docs, n, n, e, tok, &(*res)[*n_res], samples, progress, NULL);
        }
        if (!rc) (*n_res)++;
    }
    for (int i = 0; docs && i < n; i++) doc_free(&docs[i]);
    for (int i = 0; gdocs && i < n; i++) free(gdocs[i].prompt), free(gdocs[i].target);
    free(docs), free(gdocs), free(block), free(data), free(lines), free(u);
    if (v) free_objects(v, n);
    return rc;
}

// lm-eval's pooled standard error of a group's mean from its subtasks' (sizes n_i, stderrs s_i).
static double pooled_stderr(const double *se, const int *n, int k) {
    double N = 0, v = 0;
    for (int i = 0; i < k; i++) N += n[i], v += (n[i] - 1) * se[i] * se[i] * n[i];
    return N > k ? sqrt(v / (N - k) / N) : NAN;
}

int pn_task_run(const char *name, const char *data_dir, int limit, int fewshot, int max_gen, pn_eval *e,
                const pn_tokenizer *tok, pn_task_result **res, int *n_res, FILE *samples, int progress) {
    if (pn_task_is_file(name)) return run_user(name, limit, fewshot, max_gen, e, tok, res, n_res, samples, progress);
    const task_def *t = find_task(name);
    if (!t) return pn_errorf("unknown task \"%s\" (known: %s)", name, pn_task_names());
    doc *docs = NULL;
    int nd = 0, total = 0, rc = 0;
    if (t->kind == K_SYNTH && !strcmp(t->file, "facts_mc")) { // multiple choice over the facts world
        if (fewshot) return pn_errorf("task %s: --num-fewshot %d: the synthetic tasks are zero-shot", name, fewshot);
        pn_synth_world *w = pn_synth_world_new(0, 64);
        if (!w) return -1;
        nd = limit ? limit : 100;
        docs = pn_calloc((size_t)nd, sizeof *docs);
        for (int i = 0; i < nd && !rc; i++) {
            pn_synth_item it;
            rc = pn_synth_facts_mc(w, (uint64_t)i, &it);
            if (rc) break;
            doc_alloc(&docs[i], it.n_choices);
            docs[i].gold = it.gold;
            for (int c = 0; c < it.n_choices; c++)
                docs[i].ctx[c] = pn_strdup(it.prompt), docs[i].cont[c] = cat(" ", it.choices[c]),
                docs[i].norm_len[c] = utf8_chars(it.choices[c]);
            pn_synth_item_free(&it);
        }
        pn_synth_world_free(w);
        next_result(res, *n_res);
        if (!rc) rc = score(name, K_MC, docs, nd, nd, e, tok, &(*res)[*n_res], samples, progress, NULL);
        if (!rc) (*n_res)++;
        for (int i = 0; i < nd; i++) doc_free(&docs[i]);
        free(docs);
        return rc;
    }
    if (t->kind == K_GSM8K || t->kind == K_KV || t->kind == K_SYNTH) {
        next_result(res, *n_res);
        rc = run_generation(t, data_dir, limit, fewshot, max_gen, e, tok, &(*res)[*n_res], samples, progress);
        if (!rc) (*n_res)++;
        return rc;
    }
    if (t->kind != K_MMLU) {
        if (fewshot)
            return pn_errorf("task %s: --num-fewshot %d, but its local data has one split only (no examples to "
                             "draw that are not scored)", name, fewshot);
        char *path = pn_path_join(data_dir, t->file);
        rc = read_jsonl(t, path, limit, &docs, &nd, &total);
        free(path);
        if (rc) return -1;
        next_result(res, *n_res);
        rc = score(name, t->kind, docs, nd, total, e, tok, &(*res)[*n_res], samples, progress, NULL);
        if (!rc) (*n_res)++;
        for (int i = 0; i < nd; i++) doc_free(&docs[i]);
        free(docs);
        return rc;
    }
    // MMLU: one subject, or every subject and the group
    char **subjects = NULL;
    int ns = 0;
    if (!strcmp(name, "mmlu")) {
        if (mmlu_subjects(data_dir, &subjects, &ns)) return -1;
    } else {
        subjects = pn_malloc(sizeof(char *)), subjects[0] = pn_strdup(name + 5), ns = 1;
    }
    double *se = pn_malloc(sizeof(double) * (size_t)ns), sum = 0, nll = 0;
    int *sizes = pn_malloc(sizeof(int) * (size_t)ns), all = 0, all_total = 0;
    for (int s = 0; s < ns && !rc; s++) {
        rc = read_mmlu(data_dir, subjects[s], limit, fewshot, &docs, &nd, &total);
        if (rc) break;
        char tname[64];
        snprintf(tname, sizeof tname, "mmlu_%.58s", subjects[s]);
        next_result(res, *n_res);
        pn_task_result *r = &(*res)[*n_res];
        rc = score(tname, K_MMLU, docs, nd, total, e, tok, r, samples, progress, NULL);
        if (!rc) {
            (*n_res)++;
            se[s] = r->stderr_[0], sizes[s] = nd, sum += r->value[0] * nd, all += nd, all_total += total;
            nll += r->gold_nll * nd;
        }
        for (int i = 0; i < nd; i++) doc_free(&docs[i]);
        free(docs);
        docs = NULL;
    }
    if (!rc && ns > 1) { // the group: the mean over every question (lm-eval weights subjects by size)
        next_result(res, *n_res);
        pn_task_result *g = &(*res)[(*n_res)++];
        memset(g, 0, sizeof *g);
        snprintf(g->task, sizeof g->task, "mmlu");
        g->n_docs = all, g->n_docs_total = all_total, g->n_metrics = 1, g->metric[0] = "acc";
        g->value[0] = sum / all, g->stderr_[0] = pooled_stderr(se, sizes, ns), g->higher_is_better[0] = 1;
        g->is_group = 1, g->gold_nll = nll / all;
    }
    for (int s = 0; s < ns; s++) free(subjects[s]);
    free(subjects), free(se), free(sizes);
    return rc;
}
