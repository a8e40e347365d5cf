// postnas-eval: lm-evaluation-harness's tasks on a Hugging Face folder, on the CPU or a GPU; a summary table
// on stdout and results.json in lm-eval's layout (search/pn_tasks.h).
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <errno.h>
#include <unistd.h>

#include "../kernels/cpu/threads.h"
#include "../src/pn_common.h"
#include "pn_tasks.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: postnas-eval --model DIR --tasks T1,T2,... [--num-fewshot N] [--limit N] [--batch TOKENS]\n"
            "                    [--max-length N] [--max-gen-toks N] [--head-rows N] [--gen-batch N]\n"
            "                    [--device auto|cpu|cuda] [--out results.json] [--log-samples samples.jsonl]\n"
            "                    [--data DIR] [--threads N] [--no-share-prefix] [--no-prefix-cache] [--no-progress]\n"
            "Scores the model on the tasks as lm-evaluation-harness does and prints a table; --out writes\n"
            "lm-eval's results.json (written only when every task ran). --limit: the first N documents of each\n"
            "task. --batch: tokens per packed forward (default 4096). --max-length: the window (default the\n"
            "model's max_position_embeddings, at most 4096; longer contexts are cut from the left and counted).\n"
            "--head-rows: continuation rows through the LM head at a time (default 512; memory: rows x vocab).\n"
            "--gen-batch: generation requests decoded together (default 4; each gets the answer it gets alone,\n"
            "up to rounding).\n"
            "--no-share-prefix: forward every request's input, also where it starts the one before (MMLU's\n"
            "choices share their context's forward by default; the scores are the same).\n"
            "--no-prefix-cache: forward every request whole, also where consecutive requests begin with the\n"
            "same long prefix (by default the few-shot examples of a task run once and each request continues\n"
            "their decode state; the scores are the same up to rounding).\n"
            "--data: the task files (default ../shared/data/tasks). Tasks: %s.\n",
            pn_task_names());
}

typedef struct args {
    const char *model, *tasks, *out, *samples, *data, *device;
    int limit, max_length, threads, progress, fewshot, max_gen, head_rows, no_share, no_prefix_cache, gen_batch;
    int64_t batch;
} args;

static int parse(int argc, char **argv, args *a) {
    *a = (args){.data = "../shared/data/tasks", .device = "auto", .batch = 4096, .progress = -1};
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int64_t x;
        if (!strcmp(k, "-h") || !strcmp(k, "--help")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(k, "--no-progress")) {
            a->progress = 0;
            continue;
        } else if (!strcmp(k, "--no-share-prefix")) {
            a->no_share = 1;
            continue;
        } else if (!strcmp(k, "--no-prefix-cache")) {
            a->no_prefix_cache = 1;
            continue;
        }
        if (!v) return pn_errorf("%s needs a value (postnas-eval --help)", k);
        i++;
        if (!strcmp(k, "--model")) a->model = v;
        else if (!strcmp(k, "--tasks")) a->tasks = v;
        else if (!strcmp(k, "--out")) a->out = v;
        else if (!strcmp(k, "--log-samples")) a->samples = v;
        else if (!strcmp(k, "--data")) a->data = v;
        else if (!strcmp(k, "--device")) a->device = v;
        else if (!strcmp(k, "--limit")) {
            if (pn_parse_int("--limit", v, 1, 1 << 30, &a->limit)) return -1;
        } else if (!strcmp(k, "--head-rows")) {
            if (pn_parse_int("--head-rows", v, 1, 1 << 20, &a->head_rows)) return -1;
        } else if (!strcmp(k, "--gen-batch")) {
            if (pn_parse_int("--gen-batch", v, 1, 256, &a->gen_batch)) return -1;
        } else if (!strcmp(k, "--max-gen-toks")) {
            if (pn_parse_int("--max-gen-toks", v, 1, 1 << 20, &a->max_gen)) return -1;
        } else if (!strcmp(k, "--num-fewshot")) {
            if (pn_parse_int("--num-fewshot", v, 0, 1 << 20, &a->fewshot)) return -1;
        } else if (!strcmp(k, "--max-length")) {
            if (pn_parse_int("--max-length", v, 2, 1 << 24, &a->max_length)) return -1;
        } else if (!strcmp(k, "--threads")) {
            if (pn_parse_int("--threads", v, 1, PN_CPU_MAX_THREADS, &a->threads)) return -1;
        } else if (!strcmp(k, "--batch")) {
            if (pn_parse_i64("--batch", v, 2, (int64_t)1 << 30, &x)) return -1;
            a->batch = x;
        } else {
            char esc[128];
            return pn_errorf("unknown argument '%s' (postnas-eval --help)", pn_escape(k, strlen(k), esc, sizeof esc));
        }
    }
    if (!a->model) return pn_errorf("--model DIR is required");
    if (!a->tasks || !a->tasks[0]) return pn_errorf("--tasks is required (known: %s)", pn_task_names());
    if (strcmp(a->device, "auto") && strcmp(a->device, "cpu") && strcmp(a->device, "cuda"))
        return pn_errorf("--device must be auto, cpu or cuda, not '%s'", a->device);
    return 0;
}

static json_t *num_or_na(double x) { return isfinite(x) ? json_real(x) : json_string("N/A"); }

static int write_results(const args *a, const pn_task_result *r, int n, const char *model_dir, const char *dev) {
    json_t *root = json_object(), *res = json_object(), *nshot = json_object(), *ns = json_object(),
           *hib = json_object(), *ver = json_object();
    for (int i = 0; i < n; i++) {
        json_t *t = json_object(), *h = json_object();
        json_object_set_new(t, "alias", json_string(r[i].task));
        for (int k = 0; k < r[i].n_metrics; k++) {
            char key[64];
            const char *f = r[i].filter[k] ? r[i].filter[k] : "none";
            snprintf(key, sizeof key, "%s,%s", r[i].metric[k], f);
            json_object_set_new(t, key, json_real(r[i].value[k]));
            snprintf(key, sizeof key, "%s_stderr,%s", r[i].metric[k], f);
            json_object_set_new(t, key, num_or_na(r[i].stderr_[k]));
            json_object_set_new(h, r[i].metric[k], json_boolean(r[i].higher_is_better[k]));
        }
        json_object_set_new(res, r[i].task, t);
        json_object_set_new(nshot, r[i].task, json_integer(a->fewshot));
        json_object_set_new(ns, r[i].task, json_pack("{s:i, s:i}", "original", r[i].n_docs_total, "effective", r[i].n_docs));
        json_object_set_new(hib, r[i].task, h);
        json_object_set_new(ver, r[i].task, json_real(1.0));
    }
    // groups (mmlu): also under "groups", with their subtasks, as lm-eval writes them
    json_t *groups = json_object(), *subtasks = json_object();
    for (int i = 0; i < n; i++) {
        if (!r[i].is_group) continue;
        json_object_set(groups, r[i].task, json_object_get(res, r[i].task));
        json_t *list = json_array();
        const size_t gl = strlen(r[i].task);
        for (int k = 0; k < n; k++)
            if (!r[k].is_group && !strncmp(r[k].task, r[i].task, gl) && r[k].task[gl] == '_')
                json_array_append_new(list, json_string(r[k].task));
        json_object_set_new(subtasks, r[i].task, list);
    }
    json_object_set_new(root, "results", res);
    if (json_object_size(groups)) {
        json_object_set_new(root, "groups", groups);
        json_object_set_new(root, "group_subtasks", subtasks);
    } else {
        json_decref(groups), json_decref(subtasks);
    }
    json_object_set_new(root, "versions", ver);
    json_object_set_new(root, "n-shot", nshot);
    json_object_set_new(root, "higher_is_better", hib);
    json_object_set_new(root, "n-samples", ns);
    char margs[1200];
    snprintf(margs, sizeof margs, "pretrained=%s", model_dir);
    json_object_set_new(root, "config",
                        json_pack("{s:s, s:s, s:I, s:s, s:o, s:s}", "model", "postnas", "model_args", margs,
                                  "batch_size", (json_int_t)a->batch, "device", dev, "limit",
                                  a->limit ? json_integer(a->limit) : json_null(), "harness", "postnas-eval"));
    char date[64];
    const time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    json_object_set_new(root, "date", json_string(date));
    pn_atomic_file af;
    int rc = pn_atomic_open(&af, a->out);
    if (!rc) {
        char *s = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
        fprintf(af.f, "%s\n", s);
        free(s);
        rc = pn_atomic_commit(&af);
    }
    json_decref(root);
    return rc;
}

static int run(int argc, char **argv) {
    args a;
    if (parse(argc, argv, &a)) return -1;
    if (a.threads) pn_cpu_set_threads(a.threads);
    // every task name first: a typo fails before the model loads
    char *list = pn_strdup(a.tasks), *save = NULL;
    const char *names[64];
    int nt = 0;
    for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (!pn_task_known(t) && !pn_task_is_file(t)) {
            char esc[96];
            const int rc = pn_errorf("unknown task \"%s\" (known: %s)", pn_escape(t, strlen(t), esc, sizeof esc), pn_task_names());
            free(list);
            return rc;
        }
        if (nt == 64) {
            free(list);
            return pn_errorf("--tasks: more than 64 tasks");
        }
        names[nt++] = t;
    }
    pn_device dev = PN_CPU;
    if (!strcmp(a.device, "cuda") && !pn_cuda_available()) {
        free(list);
        return pn_errorf("--device cuda: no usable GPU (or no CUDA backend in this build)");
    }
    if (!strcmp(a.device, "cuda") || (!strcmp(a.device, "auto") && pn_cuda_available())) dev = PN_CUDA;
    pn_tokenizer *tok = pn_tokenizer_load(a.model);
    if (!tok) {
        free(list);
        return pn_error_prefix("the tokenizer of %s (tasks are text)", a.model);
    }
    pn_model m;
    if (pn_model_load(&m, a.model, dev)) {
        pn_tokenizer_free(tok);
        free(list);
        return -1;
    }
    const int max_len = a.max_length ? a.max_length : (m.cfg.max_pos > 0 && m.cfg.max_pos < 4096 ? m.cfg.max_pos : 4096);
    const int32_t bos = pn_tokenizer_bos_id(tok), eot = bos >= 0 ? bos : pn_tokenizer_eos_id(tok);
    pn_eval e;
    int rc = pn_eval_init(&e, &m, max_len, a.batch, a.head_rows ? a.head_rows : 512, eot);
    e.share_prefix = !a.no_share;
    e.prefix_cache = !a.no_prefix_cache;
    if (a.gen_batch) e.gen_batch = a.gen_batch;
    FILE *samples = NULL;
    if (!rc && a.samples && !(samples = fopen(a.samples, "w")))
        rc = pn_errorf("%s: cannot write: %s", a.samples, strerror(errno));
    pn_task_result *res = NULL;
    int nres = 0;
    const int progress = a.progress < 0 ? isatty(2) : a.progress;
    const double t0 = pn_now();
    for (int i = 0; i < nt && !rc; i++)
        rc = pn_task_run(names[i], a.data, a.limit, a.fewshot, a.max_gen, &e, tok, &res, &nres, samples, progress);
    if (samples) fclose(samples);
    if (!rc) {
        printf("| %-16s | %-10s | %-16s | %8s | %8s | %s\n", "task", "metric", "filter", "value", "stderr", "docs");
        for (int i = 0; i < nres; i++)
            for (int k = 0; k < res[i].n_metrics; k++)
                printf("| %-16s | %-10s | %-16s | %8.4g | %8.4g | %d%s\n", k ? "" : res[i].task, res[i].metric[k],
                       res[i].filter[k] ? res[i].filter[k] : "none", res[i].value[k], res[i].stderr_[k], res[i].n_docs,
                       res[i].truncated ? " (contexts cut)" : "");
        fprintf(stderr, "postnas-eval: %d task(s) on %s in %.1f s (%lld tokens in %lld forwards; %lld requests read a "
                "shared prefix; %lld continued a cached prefix)\n", nres, pn_device_name(dev), pn_now() - t0,
                (long long)e.stats_tokens, (long long)e.stats_forwards, (long long)e.stats_shared,
                (long long)e.stats_prefixed);
        if (a.out) rc = write_results(&a, res, nres, a.model, pn_device_name(dev));
    }
    free(res);
    if (e.m) pn_eval_free(&e);
    pn_model_free(&m);
    pn_tokenizer_free(tok);
    free(list);
    return rc;
}

int main(int argc, char **argv) {
    if (run(argc, argv)) {
        fprintf(stderr, "postnas-eval: error: %s\n", pn_last_error());
        return 1;
    }
    return 0;
}
