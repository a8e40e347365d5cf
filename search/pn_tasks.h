// pn_tasks: evaluation tasks with lm-evaluation-harness's prompts and metrics (../shared/docs/REFERENCE.md §7),
// scored by pn_eval, and lm-eval's results.json.
//
// A task reads its documents from the data folder (e.g. ../shared/data/tasks: the task table names the
// files, nothing is copied), turns each into log-likelihood requests (multiple choice: one per choice, the
// context's trailing whitespace moved onto the continuation as lm-eval does), and aggregates the
// per-document results into its metrics with lm-eval's standard errors.
#ifndef PN_TASKS_H
#define PN_TASKS_H

#include <stdio.h>

#include "../data/pn_tokenizer.h"
#include "pn_eval.h"

#define PN_TASK_MAX_METRICS 4

typedef struct pn_task_result {
    char task[64];
    int n_docs, n_docs_total;   // scored (after --limit), in the file
    int n_metrics;
    const char *metric[PN_TASK_MAX_METRICS]; // "acc", "acc_norm", "perplexity", "exact_match", "contains"
    const char *filter[PN_TASK_MAX_METRICS]; // lm-eval's filter name of each (NULL: "none")
    double value[PN_TASK_MAX_METRICS], stderr_[PN_TASK_MAX_METRICS];
    int higher_is_better[PN_TASK_MAX_METRICS];
    int truncated;              // requests whose context was cut from the left
    int is_group;               // the aggregate of the results before it (mmlu over its subjects)
    double gold_nll;            // multiple choice (MMLU included): the mean over documents of -log p(correct
                                // choice), the search's MMLU objective; NAN for other tasks; not in results.json
} pn_task_result;

// The known task names, comma-separated (for messages and --help).
const char *pn_task_names(void);
// 1 when `name` is a known task.
int pn_task_known(const char *name);
// 1 when `name` is a task file (ends in .yaml or .yml): a user task (pn_tasks.c's schema: dataset, output_type,
// doc_to_text, doc_to_choice, doc_to_target, delimiters, few-shot, until, max_gen_toks).
int pn_task_is_file(const char *name);

// Runs one task (mmlu: every subject, then the group) and appends its results to *res (n_res of them;
// realloc'ed): documents from data_dir, the first `limit` (0: all) of each file, num_fewshot examples (MMLU:
// from dev; other tasks have no separate split and refuse it), per-document samples appended to samples
// (NULL: none) as JSON lines. 0, or -1 with the error set (a missing file, a malformed line: file:line and
// the problem; results appended before the failure stay in *res).
int pn_task_run(const char *name, const char *data_dir, int limit, int num_fewshot, int max_gen, pn_eval *e,
                const pn_tokenizer *tok, pn_task_result **res, int *n_res, FILE *samples, int progress);

// GSM8K's scoring as lm-eval does it: the answer extracted by the "strict-match" filter (`#### (-?[0-9.,]+)`,
// the first) and the "flexible-extract" one (`(-?[$0-9.,]{2,})|(-?[0-9]+)`, the last; "[invalid]" when none:
// malloc'ed), and their exact match with the target after removing ",", "$", everything up to "#### " and a
// final ".", ignoring case.
void pn_gsm8k_score(const char *response, const char *target, char **strict, char **flex, int *em_strict,
                    int *em_flex);

#endif
