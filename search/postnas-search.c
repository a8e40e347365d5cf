// postnas-search: PostNAS's placement search on a trained supernet (postnas-train's train.stage supernet).
//
//   postnas-search --config X.yaml [--task retrieval] [--task mmlu ...] [--set key=value ...] [--no-progress]
//
// Each --task is a group of tasks.* in the config (retrieval, mmlu, math, commonsense) or a task name; the
// objective is the mean of their scores (each task's accuracy: acc, else contains, else exact_match; MMLU's
// by default minus the mean loss of the correct answer, search.mmlu_score). It
// scores the subnet with exactly layer l full (the others search.linear) for every l: the heat map, per task;
// then beam search (search.beam) picks search.n_attn full-attention layers for the objective, and
// search.n_swa sliding-window layers among the rest for search.swa_tasks (default the same tasks). The
// uniform placement with the same budget and the all-linear subnet are scored the same way. Every subnet is
// evaluated once (the beam's first step is the heat map). Writes into out_dir: placement.json (layer_types,
// scores, trace), placement.yaml (the student's layer_types for postnas-train), heatmap.csv, heatmap.svg and
// report.md; --export DIR also the searched subnet with the supernet's weights (Jet-Nemotron's format).
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../kernels/cpu/threads.h"
#include "../src/pn_cfg.h"
#include "../src/pn_common.h"
#include "../train/pn_supernet.h"
#include "pn_search.h"
#include "pn_tasks.h"

typedef struct search_cfg {
    char out_dir[1024], supernet[1024], device[8], data[1024], linear[64], mmlu_score[8];
    int64_t threads, n_attn, n_swa, beam, limit, num_fewshot, max_gen_toks, batch;
    char swa_tasks[4096], retrieval[4096], mmlu[4096], math[4096], commonsense[4096], weights[4096];
} search_cfg;

#define S search_cfg
static const pn_cfg_key schema[] = {
    PN_CFG_STR(S, "out_dir", out_dir, NULL, 1, "where placement.json, heatmap.csv/.svg and report.md go"),
    PN_CFG_STR(S, "supernet", supernet, NULL, 0, "a supernet checkpoint (postnas-train train.stage supernet)"),
    {"device", PN_CFG_CHOICE, "auto", 0, 0, "auto|cpu|cuda", PN_CFG_FIELD(S, device), 1, "where to evaluate"},
    PN_CFG_I(S, "threads", threads, "0", 0, 256, 1, "CPU threads (0: the machine's free cores)"),
    PN_CFG_STR(S, "data", data, "../shared/data/tasks", 0, "the task files (postnas-eval --data)"),
    PN_CFG_STR(S, "search.linear", linear, "", 0,
               "the linear block of the layers neither full nor sliding-window (default: the first linear candidate)"),
    PN_CFG_I(S, "search.n_attn", n_attn, "1", 0, 1e6, 0, "full-attention layers to place"),
    PN_CFG_I(S, "search.n_swa", n_swa, "0", 0, 1e6, 0, "sliding-window layers to place (after the full ones)"),
    PN_CFG_I(S, "search.beam", beam, "4", 1, 1e6, 0, "beam width"),
    PN_CFG_I(S, "search.limit", limit, "100", 0, 1e9, 0, "documents per task (0: all)"),
    PN_CFG_I(S, "search.num_fewshot", num_fewshot, "0", 0, 1000, 0, "few-shot examples (tasks that take them)"),
    PN_CFG_I(S, "search.max_gen_toks", max_gen_toks, "32", 1, 1 << 20, 0, "generation tasks: new tokens at most"),
    PN_CFG_I(S, "search.batch", batch, "4096", 2, 1 << 30, 1, "tokens per packed forward"),
    PN_CFG_C(S, "search.mmlu_score", mmlu_score, "loss", "loss|acc",
             "MMLU tasks' score: loss = minus the mean loss of the correct answer (the paper's objective), or acc"),
    PN_CFG_L(S, "search.weights", weights, "",
             "task=weight items: the objective is the weighted mean of the tasks' scores (others weigh 1)"),
    PN_CFG_L(S, "search.swa_tasks", swa_tasks, "", "the tasks that place the sliding-window layers (default: --task's)"),
    PN_CFG_L(S, "tasks.retrieval", retrieval, "[synth_mqar, synth_passkey]", "--task retrieval"),
    PN_CFG_L(S, "tasks.mmlu", mmlu, "[mmlu]", "--task mmlu"),
    PN_CFG_L(S, "tasks.math", math, "[gsm8k]", "--task math"),
    PN_CFG_L(S, "tasks.commonsense", commonsense, "[arc_easy, arc_challenge, piqa, winogrande]", "--task commonsense"),
};
#undef S
static const int n_schema = (int)(sizeof schema / sizeof schema[0]);

static void usage(FILE *f) {
    fprintf(f, "usage: postnas-search --config X.yaml [--task GROUP_OR_TASK ...] [--set key=value ...] [--export DIR]\n"
               "                      [--check] [--no-progress]\n"
               "       postnas-search --print-schema\n"
               "Placement search on a supernet checkpoint: the per-layer heat map, then beam search for\n"
               "search.n_attn full-attention (and search.n_swa sliding-window) layers. --task: retrieval, mmlu,\n"
               "math, commonsense (the tasks.* lists) or a task name (default: retrieval). --export: the searched\n"
               "subnet with the supernet's weights as a model folder (Jet-Nemotron's format). Tasks: %s.\n",
            pn_task_names());
}

// ---------------------------------------------------------------------------------------------------
// evaluating subnets

#define MAX_TASKS 32

typedef struct evaluator {
    const search_cfg *c;
    pn_model *m;
    pn_eval *e;
    pn_tokenizer *tok;
    const pn_supernet_info *info;
    int L, lin, swa; // choice indices (c + 1) of the linear and the swa candidate (swa -1: none)
    int n_tasks;
    char tasks[MAX_TASKS][64];
    double weight[MAX_TASKS]; // in the objective (search.weights; 1 by default)
    // the subnets evaluated: choice vectors and per-task scores (NAN: not evaluated for that task)
    int n_done;
    int **done;
    double **scores;
    int progress;
    double t0;
} evaluator;

static const char *choice_spec(const evaluator *ev, int ch) { return ch ? ev->info->cands[ch - 1] : "attn"; }
static const char *choice_name(const evaluator *ev, int ch) { return ch ? ev->info->names[ch - 1] : "attn"; }

// The accuracy-like score of a task's result: acc, else contains, else exact_match, else the first metric
// where higher is better.
static double primary(const pn_task_result *r) {
    static const char *pref[] = {"acc", "contains", "exact_match"};
    for (int p = 0; p < 3; p++)
        for (int k = 0; k < r->n_metrics; k++)
            if (!strcmp(r->metric[k], pref[p])) return r->value[k];
    for (int k = 0; k < r->n_metrics; k++)
        if (r->higher_is_better[k]) return r->value[k];
    return NAN;
}

// Scores of subnet `choice` on the tasks flagged in want (n_tasks), into out (from the cache when done).
static int eval_subnet(evaluator *ev, const int *choice, const uint8_t *want, double *out) {
    int slot = -1;
    for (int i = 0; i < ev->n_done && slot < 0; i++)
        if (!memcmp(ev->done[i], choice, sizeof(int) * (size_t)ev->L)) slot = i;
    if (slot < 0) {
        ev->done = pn_realloc(ev->done, sizeof *ev->done * (size_t)(ev->n_done + 1));
        ev->scores = pn_realloc(ev->scores, sizeof *ev->scores * (size_t)(ev->n_done + 1));
        ev->done[ev->n_done] = pn_malloc(sizeof(int) * (size_t)ev->L);
        memcpy(ev->done[ev->n_done], choice, sizeof(int) * (size_t)ev->L);
        ev->scores[ev->n_done] = pn_malloc(sizeof(double) * MAX_TASKS);
        for (int t = 0; t < MAX_TASKS; t++) ev->scores[ev->n_done][t] = NAN;
        slot = ev->n_done++;
    }
    double *sc = ev->scores[slot];
    int switched = 0;
    for (int t = 0; t < ev->n_tasks; t++) {
        if (!want[t] || !isnan(sc[t])) continue;
        if (!switched) {
            for (int l = 0; l < ev->L; l++)
                if (pn_model_set_mixer(ev->m, l, choice_name(ev, choice[l]))) return -1;
            switched = 1;
        }
        pn_task_result *res = NULL;
        int nres = 0;
        const int rc = pn_task_run(ev->tasks[t], ev->c->data, (int)ev->c->limit, (int)ev->c->num_fewshot,
                                   (int)ev->c->max_gen_toks, ev->e, ev->tok, &res, &nres, NULL, 0);
        if (!rc) {
            const pn_task_result *r = nres ? &res[nres - 1] : NULL;
            const int mmlu_loss = !strncmp(ev->tasks[t], "mmlu", 4) && !strcmp(ev->c->mmlu_score, "loss");
            sc[t] = !r ? NAN : mmlu_loss ? -r->gold_nll : primary(r);
        }
        free(res);
        if (rc) return pn_error_prefix("task %s", ev->tasks[t]);
    }
    if (switched && ev->progress >= 0) {
        fprintf(stderr, "[%6.1f s] subnet %d:", pn_now() - ev->t0, ev->n_done);
        for (int l = 0; l < ev->L; l++) fprintf(stderr, "%s%s", l ? "," : " ", choice_name(ev, choice[l]));
        for (int t = 0; t < ev->n_tasks; t++)
            if (want[t]) fprintf(stderr, "  %s %.3f", ev->tasks[t], sc[t]);
        fprintf(stderr, "\n");
    }
    for (int t = 0; t < ev->n_tasks; t++) out[t] = sc[t];
    return 0;
}

// The objective: the weighted mean of the wanted tasks' scores.
static double mean_of(const evaluator *ev, const double *s, const uint8_t *want) {
    double sum = 0, w = 0;
    for (int t = 0; t < ev->n_tasks; t++)
        if (want[t]) sum += ev->weight[t] * s[t], w += ev->weight[t];
    return w > 0 ? sum / w : NAN;
}

// search.weights: task=weight items, each naming a task of the search.
static int parse_weights(evaluator *ev, const char *list) {
    for (int t = 0; t < MAX_TASKS; t++) ev->weight[t] = 1.0;
    for (int i = 0; i < pn_cfg_list_count(list); i++) {
        char buf[256];
        pn_cfg_list_item(list, i, buf, sizeof buf);
        char *eq = strrchr(buf, '=');
        double w = 0;
        if (!eq || pn_parse_f64("search.weights", eq + 1, 0, 1e6, &w))
            return pn_errorf("config: search.weights: '%s' is not task=weight (a weight in 0 .. 1e6)", buf);
        *eq = 0;
        int found = -1;
        for (int t = 0; t < ev->n_tasks; t++)
            if (!strcmp(ev->tasks[t], buf)) found = t;
        if (found < 0) return pn_errorf("config: search.weights: %s is not one of the search's tasks", buf);
        ev->weight[found] = w;
    }
    return 0;
}

// The beam's scoring of a placement: attn placement (fixed NULL): set -> attn, the rest linear; swa
// placement: fixed -> attn, set -> swa, the rest linear.
typedef struct {
    evaluator *ev;
    const uint8_t *fixed, *want;
} place_ctx;

static int score_placement(void *p, const uint8_t *set, double *score) {
    place_ctx *pc = p;
    evaluator *ev = pc->ev;
    int *choice = pn_malloc(sizeof(int) * (size_t)ev->L);
    for (int l = 0; l < ev->L; l++)
        choice[l] = pc->fixed ? (pc->fixed[l] ? 0 : set[l] ? ev->swa : ev->lin) : (set[l] ? 0 : ev->lin);
    double s[MAX_TASKS];
    const int rc = eval_subnet(ev, choice, pc->want, s);
    free(choice);
    *score = mean_of(ev, s, pc->want);
    return rc;
}

// ---------------------------------------------------------------------------------------------------
// the run

typedef struct args {
    const char *config;
    const char *tasks[MAX_TASKS];
    int n_task_args;
    const char **sets;
    int n_sets, progress;
    const char *export_dir; // --export: the searched subnet as a model folder
    int check;              // --check: only check the config
} args;

// Adds a task name (once) to ev, flagging it in want.
static int add_task(evaluator *ev, const char *name, uint8_t *want) {
    for (int t = 0; t < ev->n_tasks; t++)
        if (!strcmp(ev->tasks[t], name)) {
            want[t] = 1;
            return 0;
        }
    if (!pn_task_known(name) && !pn_task_is_file(name)) {
        char esc[96];
        return pn_errorf("unknown task \"%s\" (known: %s)", pn_escape(name, strlen(name), esc, sizeof esc), pn_task_names());
    }
    if (ev->n_tasks == MAX_TASKS || strlen(name) >= sizeof ev->tasks[0])
        return pn_errorf("task \"%s\": at most %d tasks of at most %zu characters", name, MAX_TASKS, sizeof ev->tasks[0] - 1);
    snprintf(ev->tasks[ev->n_tasks], sizeof ev->tasks[0], "%s", name);
    want[ev->n_tasks++] = 1;
    return 0;
}

// A --task value: a group (tasks.<group>) or a task name.
static int add_objective(evaluator *ev, const search_cfg *c, const char *arg, uint8_t *want) {
    const char *groups[][2] = {{"retrieval", c->retrieval}, {"mmlu", c->mmlu}, {"math", c->math},
                               {"commonsense", c->commonsense}};
    for (size_t g = 0; g < sizeof groups / sizeof groups[0]; g++)
        if (!strcmp(arg, groups[g][0])) {
            const int n = pn_cfg_list_count(groups[g][1]);
            if (!n) return pn_errorf("--task %s: tasks.%s is empty", arg, arg);
            for (int i = 0; i < n; i++) {
                char buf[256];
                pn_cfg_list_item(groups[g][1], i, buf, sizeof buf);
                if (add_task(ev, buf, want)) return pn_error_prefix("tasks.%s", arg);
            }
            return 0;
        }
    return add_task(ev, arg, want);
}

// `k` of the allowed layers evenly spaced: the (j + 1/2) L / k-th allowed layer for j < k.
static void uniform_set(int L, int k, const uint8_t *allowed, uint8_t *set) {
    if (L <= 0) return;
    int *idx = pn_malloc(sizeof(int) * (size_t)L), n = 0;
    for (int l = 0; l < L; l++) {
        set[l] = 0;
        if (!allowed || allowed[l]) idx[n++] = l;
    }
    for (int j = 0; j < k && n; j++) set[idx[(int)(((double)j + 0.5) * n / k)]] = 1;
    free(idx);
}

static json_t *scores_json(const evaluator *ev, const double *s, const uint8_t *want) {
    json_t *o = json_object();
    for (int t = 0; t < ev->n_tasks; t++)
        if (want[t]) json_object_set_new(o, ev->tasks[t], isnan(s[t]) ? json_null() : json_real(s[t]));
    return o;
}

static int write_text(const char *dir, const char *name, const char *text) {
    char *p = pn_path_join(dir, name);
    pn_atomic_file af;
    int rc = pn_atomic_open(&af, p);
    if (!rc) {
        fputs(text, af.f);
        rc = pn_atomic_commit(&af);
    }
    free(p);
    return rc;
}

static int run(const args *a) {
    search_cfg *c = pn_calloc(1, sizeof *c);
    int rc = pn_cfg_load(schema, n_schema, c, a->config, a->sets, a->n_sets);
    if (rc || a->check) {
        free(c);
        return rc;
    }
    if (c->threads) pn_cpu_set_threads((int)c->threads);
    evaluator ev = {.c = c, .progress = a->progress, .t0 = pn_now()};
    uint8_t want[MAX_TASKS] = {0}, want_swa[MAX_TASKS] = {0}, all[MAX_TASKS];
    for (int i = 0; i < a->n_task_args && !rc; i++) rc = add_objective(&ev, c, a->tasks[i], want);
    if (!rc && !a->n_task_args) rc = add_objective(&ev, c, "retrieval", want);
    for (int i = 0; !rc && i < pn_cfg_list_count(c->swa_tasks); i++) {
        char buf[256];
        pn_cfg_list_item(c->swa_tasks, i, buf, sizeof buf);
        rc = add_objective(&ev, c, buf, want_swa);
    }
    if (!rc && !pn_cfg_list_count(c->swa_tasks)) memcpy(want_swa, want, sizeof want);
    if (!rc) rc = parse_weights(&ev, c->weights);
    struct stat sb;
    if (!rc && stat(c->out_dir, &sb) && mkdir(c->out_dir, 0777))
        rc = pn_errorf("%s: cannot create the folder: %s", c->out_dir, strerror(errno));
    pn_device dev = PN_CPU;
    if (!rc && !strcmp(c->device, "cuda") && !pn_cuda_available())
        rc = pn_errorf("config: device cuda, but no GPU is usable (or no CUDA backend in this build)");
    if (!strcmp(c->device, "cuda") || (!strcmp(c->device, "auto") && pn_cuda_available())) dev = PN_CUDA;
    pn_model m;
    pn_supernet_info info;
    int loaded = 0;
    if (!rc) rc = pn_supernet_open(&m, c->supernet, dev, &info);
    loaded = !rc;
    const int L = loaded ? m.cfg.n_layers : 0;
    ev.m = &m, ev.info = &info, ev.L = L, ev.lin = ev.swa = -1;
    for (int i = 0; loaded && i < info.n_cands; i++) {
        if (info.linear[i] && ev.lin < 0 && (!c->linear[0] || !strcmp(c->linear, info.names[i]))) ev.lin = i + 1;
        if (!strcmp(info.names[i], "swa")) ev.swa = i + 1;
    }
    if (!rc && ev.lin < 0)
        rc = c->linear[0] ? pn_errorf("config: search.linear %s is not a linear candidate of the supernet %s", c->linear,
                                      c->supernet)
                          : pn_errorf("%s: the supernet has no linear candidate", c->supernet);
    if (!rc && c->n_attn + c->n_swa > L)
        rc = pn_errorf("config: search.n_attn %lld + search.n_swa %lld is more than the supernet's %d layers",
                       (long long)c->n_attn, (long long)c->n_swa, L);
    if (!rc && c->n_swa > 0 && ev.swa < 0)
        rc = pn_errorf("config: search.n_swa %lld, but the supernet %s has no swa candidate", (long long)c->n_swa,
                       c->supernet);
    pn_eval e = {0};
    if (!rc && !(ev.tok = pn_tokenizer_load(c->supernet))) rc = pn_error_prefix("the tokenizer of %s", c->supernet);
    if (!rc) {
        const int max_len = m.cfg.max_pos > 0 && m.cfg.max_pos < 4096 ? m.cfg.max_pos : 4096;
        const int32_t bos = pn_tokenizer_bos_id(ev.tok), eot = bos >= 0 ? bos : pn_tokenizer_eos_id(ev.tok);
        rc = pn_eval_init(&e, &m, max_len, c->batch, 512, eot);
    }
    ev.e = &e;
    for (int t = 0; t < MAX_TASKS; t++) all[t] = want[t] || want_swa[t];
    double *heat = pn_malloc(sizeof(double) * (size_t)(L ? L : 1) * MAX_TASKS);
    int *choice = pn_malloc(sizeof(int) * (size_t)(L ? L : 1));
    double s[MAX_TASKS];
    // 1. the heat map: layer l full, the others linear, on every task
    if (!rc && ev.progress >= 0)
        fprintf(stderr, "postnas-search: %d layers, candidates", L);
    for (int i = 0; !rc && ev.progress >= 0 && i < info.n_cands; i++) fprintf(stderr, " %s", info.cands[i]);
    if (!rc && ev.progress >= 0) fprintf(stderr, "; the heat map (%d subnets)\n", L);
    for (int l = 0; l < L && !rc; l++) {
        for (int j = 0; j < L; j++) choice[j] = j == l ? 0 : ev.lin;
        rc = eval_subnet(&ev, choice, all, s);
        for (int t = 0; t < ev.n_tasks; t++) heat[t * L + l] = s[t];
    }
    // 2. beam search: the full-attention layers, then the sliding-window ones among the rest
    json_t *trace_attn = json_array(), *trace_swa = json_array();
    uint8_t *attn = pn_calloc((size_t)(L ? L : 1), 1), *swa = pn_calloc((size_t)(L ? L : 1), 1);
    double best = NAN;
    if (!rc) {
        place_ctx pc = {&ev, NULL, want};
        rc = pn_beam_search(L, (int)c->n_attn, (int)c->beam, NULL, score_placement, &pc, attn, &best, trace_attn);
    }
    if (!rc && c->n_swa > 0) {
        uint8_t *allowed = pn_malloc((size_t)L);
        for (int l = 0; l < L; l++) allowed[l] = !attn[l];
        place_ctx pc = {&ev, attn, want_swa};
        rc = pn_beam_search(L, (int)c->n_swa, (int)c->beam, allowed, score_placement, &pc, swa, &best, trace_swa);
        free(allowed);
    }
    // 3. the searched, uniform and all-linear subnets on every task
    double searched[MAX_TASKS], uniform[MAX_TASKS], linear[MAX_TASKS];
    int *u_choice = pn_malloc(sizeof(int) * (size_t)(L ? L : 1));
    if (!rc) {
        for (int l = 0; l < L; l++) choice[l] = attn[l] ? 0 : swa[l] ? ev.swa : ev.lin;
        rc = eval_subnet(&ev, choice, all, searched);
    }
    if (!rc) {
        uint8_t *ua = pn_malloc((size_t)L), *us = pn_malloc((size_t)L), *rest = pn_malloc((size_t)L);
        uniform_set(L, (int)c->n_attn, NULL, ua);
        for (int l = 0; l < L; l++) rest[l] = !ua[l];
        uniform_set(L, (int)c->n_swa, rest, us);
        for (int l = 0; l < L; l++) u_choice[l] = ua[l] ? 0 : us[l] ? ev.swa : ev.lin;
        free(ua), free(us), free(rest);
        rc = eval_subnet(&ev, u_choice, all, uniform);
    }
    if (!rc) {
        for (int l = 0; l < L; l++) choice[l] = attn[l] ? 0 : swa[l] ? ev.swa : ev.lin;
        int *lin_choice = pn_malloc(sizeof(int) * (size_t)L);
        for (int l = 0; l < L; l++) lin_choice[l] = ev.lin;
        rc = eval_subnet(&ev, lin_choice, all, linear);
        free(lin_choice);
    }
    // 4. the files
    const char *task_names[MAX_TASKS];
    for (int t = 0; t < ev.n_tasks; t++) task_names[t] = ev.tasks[t];
    if (!rc) {
        char *p = pn_path_join(c->out_dir, "heatmap.csv");
        rc = pn_heatmap_csv(p, L, ev.n_tasks, task_names, heat);
        free(p);
    }
    if (!rc) {
        char *p = pn_path_join(c->out_dir, "heatmap.svg"), title[1200];
        snprintf(title, sizeof title, "PostNAS heat map: %s", c->supernet);
        rc = pn_heatmap_svg(p, title, L, ev.n_tasks, task_names, heat);
        free(p);
    }
    if (!rc) {
        json_t *root = json_object(), *types = json_array(), *specs = json_array(), *scores = json_object();
        for (int l = 0; l < L; l++) {
            json_array_append_new(types, json_string(choice_name(&ev, choice[l])));
            json_array_append_new(specs, json_string(choice_spec(&ev, choice[l])));
        }
        json_object_set_new(root, "layer_types", types);
        json_object_set_new(root, "layer_specs", specs);
        json_t *obj = json_array(), *objs = json_array();
        for (int t = 0; t < ev.n_tasks; t++) {
            if (want[t]) json_array_append_new(obj, json_string(ev.tasks[t]));
            if (want_swa[t]) json_array_append_new(objs, json_string(ev.tasks[t]));
        }
        json_t *wts = json_object();
        for (int t = 0; t < ev.n_tasks; t++) json_object_set_new(wts, ev.tasks[t], json_real(ev.weight[t]));
        json_object_set_new(root, "objective", json_pack("{s:o, s:o, s:o}", "attn", obj, "swa", objs, "weights", wts));
        json_object_set_new(scores, "searched", scores_json(&ev, searched, all));
        json_object_set_new(scores, "uniform", scores_json(&ev, uniform, all));
        json_object_set_new(scores, "all_linear", scores_json(&ev, linear, all));
        json_object_set_new(root, "scores", scores);
        json_t *ut = json_array(), *us = json_array(), *ls = json_array();
        for (int l = 0; l < L; l++) {
            json_array_append_new(ut, json_string(choice_name(&ev, u_choice[l])));
            json_array_append_new(us, json_string(choice_spec(&ev, u_choice[l])));
            json_array_append_new(ls, json_string(choice_spec(&ev, ev.lin)));
        }
        json_object_set_new(root, "uniform_layer_types", ut);
        json_object_set_new(root, "uniform_layer_specs", us);
        json_object_set_new(root, "all_linear_layer_specs", ls);
        json_object_set_new(root, "trace", json_pack("{s:O, s:O}", "attn", trace_attn, "swa", trace_swa));
        json_object_set_new(root, "budget", json_pack("{s:I, s:I, s:I}", "n_attn", (json_int_t)c->n_attn, "n_swa",
                                                      (json_int_t)c->n_swa, "beam", (json_int_t)c->beam));
        json_object_set_new(root, "supernet", json_string(c->supernet));
        json_object_set_new(root, "subnets_evaluated", json_integer(ev.n_done));
        json_object_set_new(root, "seconds", json_real(pn_now() - ev.t0));
        char *text = json_dumps(root, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
        size_t len = strlen(text) + 2;
        char *withnl = pn_malloc(len);
        snprintf(withnl, len, "%s\n", text);
        rc = write_text(c->out_dir, "placement.json", withnl);
        free(text), free(withnl);
        json_decref(root);
    }
    if (!rc) { // the student config fragment, and the report
        size_t cap = 4096 + (size_t)L * 80 + (size_t)ev.n_tasks * 400;
        char *y = pn_malloc(cap), *r = pn_malloc(cap);
        int n = snprintf(y, cap, "# postnas-search's placement (%s): the student of the next stage\nmodel:\n  student:\n"
                                 "    layer_types: [", c->supernet);
        for (int l = 0; l < L; l++) n += snprintf(y + n, cap - (size_t)n, "%s%s", l ? ", " : "", choice_spec(&ev, choice[l]));
        snprintf(y + n, cap - (size_t)n, "]\n");
        rc = write_text(c->out_dir, "placement.yaml", y);
        n = snprintf(r, cap, "# PostNAS placement search\n\nSupernet `%s`, %d layers; budget %lld full-attention and "
                             "%lld sliding-window layers, beam %lld, %lld documents per task; %d subnets evaluated "
                             "in %.1f s.\n\n![heat map](heatmap.svg)\n\n| subnet | layer types |",
                     c->supernet, L, (long long)c->n_attn, (long long)c->n_swa, (long long)c->beam,
                     (long long)c->limit, ev.n_done, pn_now() - ev.t0);
        for (int t = 0; t < ev.n_tasks; t++) n += snprintf(r + n, cap - (size_t)n, " %s |", ev.tasks[t]);
        n += snprintf(r + n, cap - (size_t)n, "\n|---|---|");
        for (int t = 0; t < ev.n_tasks; t++) n += snprintf(r + n, cap - (size_t)n, "---:|");
        const char *rows[3] = {"searched", "uniform", "all linear"};
        const double *vals[3] = {searched, uniform, linear};
        for (int k = 0; k < 3; k++) {
            n += snprintf(r + n, cap - (size_t)n, "\n| %s | ", rows[k]);
            for (int l = 0; l < L; l++)
                n += snprintf(r + n, cap - (size_t)n, "%s%s", l ? "," : "",
                              choice_name(&ev, k == 0 ? choice[l] : k == 1 ? u_choice[l] : ev.lin));
            n += snprintf(r + n, cap - (size_t)n, " |");
            for (int t = 0; t < ev.n_tasks; t++) n += snprintf(r + n, cap - (size_t)n, " %.4f |", vals[k][t]);
        }
        snprintf(r + n, cap - (size_t)n, "\n\nThe placement as a student config: `placement.yaml`; scores, the beam's "
                                         "steps and the uniform placement: `placement.json`; the heat map's values: "
                                         "`heatmap.csv`.\n");
        if (!rc) rc = write_text(c->out_dir, "report.md", r);
        free(y), free(r);
    }
    if (!rc && a->export_dir) { // the searched subnet with the supernet's weights: Jet-Nemotron's format
        for (int l = 0; l < L && !rc; l++) rc = pn_model_set_mixer(&m, l, choice_name(&ev, choice[l]));
        if (!rc) rc = pn_model_export(&m, a->export_dir);
        if (rc) rc = pn_error_prefix("--export");
    }
    if (!rc) {
        printf("placement:");
        for (int l = 0; l < L; l++) printf("%s%s", l ? "," : " ", choice_spec(&ev, choice[l]));
        printf("\n%-10s", "subnet");
        for (int t = 0; t < ev.n_tasks; t++) printf(" %14s", ev.tasks[t]);
        const char *rows[3] = {"searched", "uniform", "all-linear"};
        const double *vals[3] = {searched, uniform, linear};
        for (int k = 0; k < 3; k++) {
            printf("\n%-10s", rows[k]);
            for (int t = 0; t < ev.n_tasks; t++) printf(" %14.4f", vals[k][t]);
        }
        printf("\nwrote %s/{placement.json,placement.yaml,heatmap.csv,heatmap.svg,report.md} (%d subnets, %.1f s)\n",
               c->out_dir, ev.n_done, pn_now() - ev.t0);
    }
    json_decref(trace_attn), json_decref(trace_swa);
    free(attn), free(swa), free(heat), free(choice), free(u_choice);
    for (int i = 0; i < ev.n_done; i++) free(ev.done[i]), free(ev.scores[i]);
    free(ev.done), free(ev.scores);
    if (e.m) pn_eval_free(&e);
    if (ev.tok) pn_tokenizer_free(ev.tok);
    if (loaded) pn_model_free(&m);
    free(c);
    return rc;
}

int main(int argc, char **argv) {
    args a = {.progress = 0};
    a.sets = pn_calloc((size_t)argc, sizeof(char *));
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "-h") || !strcmp(k, "--help")) {
            usage(stdout);
            free(a.sets);
            return 0;
        } else if (!strcmp(k, "--print-schema")) {
            pn_cfg_write_markdown(schema, n_schema, stdout);
            free(a.sets);
            return 0;
        } else if (!strcmp(k, "--no-progress")) {
            a.progress = -1;
        } else if (!strcmp(k, "--check")) {
            a.check = 1;
        } else if (!v) {
            fprintf(stderr, "postnas-search: error: %s needs a value (postnas-search --help)\n", k);
            free(a.sets);
            return 1;
        } else if (!strcmp(k, "--config")) {
            a.config = v, i++;
        } else if (!strcmp(k, "--task")) {
            if (a.n_task_args == MAX_TASKS) {
                fprintf(stderr, "postnas-search: error: more than %d --task\n", MAX_TASKS);
                free(a.sets);
                return 1;
            }
            a.tasks[a.n_task_args++] = v, i++;
        } else if (!strcmp(k, "--set")) {
            a.sets[a.n_sets++] = v, i++;
        } else if (!strcmp(k, "--export")) {
            a.export_dir = v, i++;
        } else {
            char esc[96];
            fprintf(stderr, "postnas-search: error: unknown argument '%s' (postnas-search --help)\n",
                    pn_escape(k, strlen(k), esc, sizeof esc));
            free(a.sets);
            return 1;
        }
    }
    if (!a.config) {
        fprintf(stderr, "postnas-search: error: --config X.yaml is required (postnas-search --help)\n");
        free(a.sets);
        return 1;
    }
    const int rc = run(&a);
    free(a.sets);
    if (rc) {
        fprintf(stderr, "postnas-search: error: %s\n", pn_last_error());
        return 1;
    }
    return 0;
}
