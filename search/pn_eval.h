// pn_eval: the request types of an evaluation (lm-evaluation-harness's), on a model as it runs now (any
// subnet choice of a supernet: nothing is written to disk), on either backend.
//
// Log-likelihood: the log-probability of a continuation after a context, and whether greedy decoding would
// produce it, as lm-eval's Hugging Face backend computes it: the input is (context + continuation) cut from
// the left to the model's window plus one, without its last token; the continuation's tokens are scored at
// the last positions. Requests are packed into one long row per forward (cu_seqlens: no attention or state
// crosses two requests, each starts at position 0), so there is no padding; only the continuation rows go
// through the LM head. A request whose input is a prefix of the request packed just before it (MMLU's four
// one-token choices after one context) adds no rows: it reads its continuation's rows from that one.
// Consecutive requests that begin with the same long prefix (a subject's few-shot examples) run it once:
// its decode state (KV caches, recurrent states) is copied to a batch of rows that continue it with each
// request's remaining tokens, through the generation path (prefix_cache; the same scores to rounding).
#ifndef PN_EVAL_H
#define PN_EVAL_H

#include <stdint.h>

#include "../data/pn_tokenizer.h"
#include "../src/pn_model.h"

typedef struct pn_ll_req {
    const int32_t *ctx, *cont; // token ids (ctx may be empty: then it is the end-of-text token, as lm-eval)
    int n_ctx, n_cont;
    // results
    double ll;     // sum of the continuation tokens' log-probabilities
    int greedy;    // 1 when every continuation token is the argmax at its position
    int truncated; // 1 when the context was cut from the left to fit the window
} pn_ll_req;

typedef struct pn_eval {
    pn_model *m;
    int max_len;          // the model's window: at most this many input tokens per request
    int64_t max_tokens;   // tokens per packed forward
    int64_t max_cont;     // continuation rows through the head at a time (its [rows, vocab] buffer)
    int32_t eot;          // the context of an empty-context request
    int32_t *ids, *cu;
    pn_arena bufs;        // gathered hidden rows [max_cont, hidden], logits [max_cont, vocab], their targets
    pn_tensor rows, logits, targets, score; // and scores [max_cont, 2] (pn_op_lm_score)
    int32_t *host_targets; // max_cont
    float *host;          // the scores, max_cont x 2
    int gen_planned;      // generation scratch planned (pn_eval_generate) ...
    int gen_rows;         // ... for this many rows
    int gen_batch;        // requests generated at once (continuous batching; pn_eval_init's default 4)
    int share_prefix;     // 1 (pn_eval_init's default): a request whose input starts the last packed one reuses its rows
    int prefix_cache;     // 1 (default): requests that share a long prefix continue its decode state, computed once
    int pf_planned;       // the generation plan is the cached prefixes' (else pn_eval_generate's)
    int64_t stats_tokens, stats_forwards, stats_shared; // tokens forwarded (generation's too), forwards, requests that reused rows
    int64_t stats_prefixed; // requests that continued a cached prefix
} pn_eval;

// Plans m for evaluation: packed forwards of up to max_tokens tokens (at least max_len), the head over at
// most max_cont continuation rows at a time. 0, or -1 with the error set (no memory: names the size).
int pn_eval_init(pn_eval *e, pn_model *m, int max_len, int64_t max_tokens, int64_t max_cont, int32_t eot);
void pn_eval_free(pn_eval *e);

// Scores n requests (in place), calling progress(ctx, done, n) after each forward (NULL: none). 0, or -1
// with the error set (a continuation longer than the window, a token outside the vocabulary).
int pn_eval_loglikelihood(pn_eval *e, pn_ll_req *r, int n, void (*progress)(void *ctx, int done, int total),
                          void *ctx);

// Generate-until (lm-eval's generate_until with greedy decoding): the context, cut from the left to
// window - max_gen tokens, continues greedily through the model's decode path (KV caches and recurrent
// states of every block type) until max_gen tokens, the model's end-of-text token, or one of the stop
// strings appears in the decoded text; the text (decoded without special tokens) is then cut before the
// first occurrence of each stop string in turn, as lm-eval cuts it.
typedef struct pn_gen_req {
    const int32_t *ctx;
    int n_ctx;
    const char *const *until; // stop strings (n_until)
    int n_until, max_gen;
    // results
    char *text;      // malloc'ed
    int32_t *gen;    // the generated ids (malloc'ed), n_gen of them
    int n_gen, truncated;
} pn_gen_req;

// Answers n generation requests, e->gen_batch at a time (greedy; each answer is what it would be alone, up
// to rounding); frees nothing of earlier results. 0, or -1 with the error set.
int pn_eval_generate(pn_eval *e, const pn_tokenizer *tok, pn_gen_req *r, int n,
                     void (*progress)(void *ctx, int done, int total), void *pctx);

#endif
