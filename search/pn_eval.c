// pn_eval: log-likelihood requests through packed forwards (pn_eval.h).
#include "pn_eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../src/pn_common.h"

int pn_eval_init(pn_eval *e, pn_model *m, int max_len, int64_t max_tokens, int64_t max_cont, int32_t eot) {
    memset(e, 0, sizeof *e);
    if (max_len < 2) return pn_errorf("evaluation: a window of %d tokens", max_len);
    if (max_tokens < max_len) max_tokens = max_len;
    if (max_cont > max_len) max_cont = max_len;
    e->m = m, e->max_len = max_len, e->max_tokens = max_tokens, e->max_cont = max_cont, e->eot = eot;
    e->share_prefix = 1;
    e->prefix_cache = 1;
    e->gen_batch = 4; // decode rows: on CUDA the GEMV path takes up to 4 rows, each as it would alone
    // No backward ever runs: every layer "recomputes", i.e. keeps only its input and shares one buffer set.
    uint8_t *rec = pn_malloc((size_t)m->cfg.n_layers);
    memset(rec, 1, (size_t)m->cfg.n_layers);
    const pn_train_opts o = {.recompute = rec, .no_logits = 1};
    const int rc = pn_model_train_plan(m, 1, (int)max_tokens, &o);
    free(rec);
    if (rc) return pn_error_prefix("evaluation memory for %lld tokens per forward", (long long)max_tokens);
    const int64_t sr[2] = {max_cont, m->cfg.hidden}, sl[2] = {max_cont, m->cfg.vocab}, st[1] = {max_cont},
                  ss[2] = {max_cont, 2};
    if (pn_arena_init(&e->bufs, m->device,
                      pn_arena_need(m->dtype, 2, sr) + pn_arena_need(m->dtype, 2, sl) + pn_arena_need(PN_I32, 1, st) +
                          pn_arena_need(PN_F32, 2, ss)))
        return pn_error_prefix("evaluation: the LM head's buffers (%lld rows)", (long long)max_cont);
    e->rows = pn_arena_tensor(&e->bufs, m->dtype, 2, sr);
    e->logits = pn_arena_tensor(&e->bufs, m->dtype, 2, sl);
    e->targets = pn_arena_tensor(&e->bufs, PN_I32, 1, st);
    e->score = pn_arena_tensor(&e->bufs, PN_F32, 2, ss);
    e->host_targets = pn_malloc(sizeof(int32_t) * (size_t)max_cont);
    e->host = pn_malloc(sizeof(float) * (size_t)max_cont * 2);
    e->ids = pn_malloc(sizeof(int32_t) * (size_t)max_tokens);
    e->cu = pn_malloc(sizeof(int32_t) * (size_t)(max_tokens + 1));
    return 0;
}

void pn_eval_free(pn_eval *e) {
    pn_arena_free(&e->bufs);
    free(e->host), free(e->host_targets), free(e->ids), free(e->cu);
    memset(e, 0, sizeof *e);
}

// Input tokens of a request: (ctx + cont) without its last token, its last `len` of them.
static int input_len(const pn_eval *e, const pn_ll_req *r, int *truncated) {
    const int whole = (r->n_ctx ? r->n_ctx : 1) + r->n_cont;
    *truncated = whole - 1 > e->max_len;
    return whole - 1 > e->max_len ? e->max_len : whole - 1;
}

static int32_t token_at(const pn_eval *e, const pn_ll_req *r, int i) { // of ctx' + cont, ctx' = ctx or [eot]
    const int nc = r->n_ctx ? r->n_ctx : 1;
    if (i < nc) return r->n_ctx ? r->ctx[i] : e->eot;
    return r->cont[i - nc];
}

// The continuation rows of requests q[0 .. nq) through the LM head, max_cont rows at a time: request k's
// input rows end (one past its last) at row end[k] of h, its continuation's n_cont rows just before. Only
// (log-probability, argmax) per row comes back from the device, not [rows, V] logits.
static void score_rows(pn_eval *e, const pn_tensor *h, pn_ll_req *const *q, const int64_t *end, int nq) {
    pn_model *m = e->m;
    int k = 0, t = 0;
    while (k < nq) {
        int64_t rows = 0;
        const int k0 = k, t0 = t;
        while (k < nq && rows < e->max_cont) { // gather (request k, token t) in order, spanning chunks
            const int take = (int)((q[k]->n_cont - t) < (e->max_cont - rows) ? (q[k]->n_cont - t) : (e->max_cont - rows));
            pn_tensor src = pn_rows(h, end[k] - q[k]->n_cont + t, take), dst = pn_rows(&e->rows, rows, take);
            pn_op_copy(&dst, &src);
            memcpy(e->host_targets + rows, q[k]->cont + t, sizeof(int32_t) * (size_t)take);
            rows += take, t += take;
            if (t == q[k]->n_cont) k++, t = 0;
        }
        pn_tensor hr = pn_rows(&e->rows, 0, rows), lg = pn_rows(&e->logits, 0, rows);
        pn_tensor tg = pn_rows(&e->targets, 0, rows), sc = pn_rows(&e->score, 0, rows);
        pn_op_matmul(&lg, &hr, &m->lm_head, NULL);
        pn_backend_get(m->device)->memcpy_h2d(tg.data, e->host_targets, sizeof(int32_t) * (size_t)rows);
        pn_op_lm_score(&sc, &lg, &tg);
        pn_op_to_host_f32(e->host, &sc);
        int kk = k0, tt = t0;
        for (int64_t row = 0; row < rows; row++) {
            q[kk]->ll += e->host[2 * row];
            q[kk]->greedy &= (int32_t)e->host[2 * row + 1] == q[kk]->cont[tt];
            if (++tt == q[kk]->n_cont) kk++, tt = 0;
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// requests over a shared prefix: the few-shot examples computed once

// A cached prefix pays for itself when it saves this many tokens of forwards (its state is copied to each
// batch row and a group adds a forward of its own).
#define PREFIX_MIN_SAVED 512
#define PREFIX_MIN 32   // tokens: shorter common prefixes (a task's one-line description) are not worth it
#define PREFIX_ROWS 64  // sequences continued at once

// Requests i .. j-1 (returned; i when there is no group) whose inputs begin with the same P tokens, P at
// least a quarter of each input and not reaching any continuation (its rows come from the suffix forward):
// a subject's 5-shot MMLU questions share the five examples. Truncated inputs end a group.
static int prefix_group(const pn_eval *e, const pn_ll_req *r, int i, int n, int *P_out) {
    int trunc;
    const int Li = input_len(e, &r[i], &trunc);
    if (trunc) return i;
    int lcp = Li, cap = Li - r[i].n_cont, docs = 1, j = i + 1;
    const pn_ll_req *doc = &r[i]; // the last distinct input
    int Ld = Li;
    for (; j < n; j++) {
        const int Lj = input_len(e, &r[j], &trunc);
        if (trunc) break;
        int t = 0;
        const int lim = lcp < Lj ? lcp : Lj;
        while (t < lim && token_at(e, &r[i], t) == token_at(e, &r[j], t)) t++;
        const int c = cap < Lj - r[j].n_cont ? cap : Lj - r[j].n_cont, p = t < c ? t : c;
        if (p < PREFIX_MIN || 4 * p < Lj) break;
        // a distinct input unless it is a prefix of the last one (then it reads that one's rows)
        int same = e->share_prefix && Lj <= Ld;
        for (int u = p; same && u < Lj; u++) same = token_at(e, doc, u) == token_at(e, &r[j], u);
        if (!same) docs++, doc = &r[j], Ld = Lj;
        lcp = t, cap = c;
    }
    const int P = lcp < cap ? lcp : cap;
    if (j - i < 2 || docs < 2 || (int64_t)(docs - 1) * P < PREFIX_MIN_SAVED) return i;
    *P_out = P;
    return j;
}

typedef struct {
    int first, last; // its requests (the first one's input; the others' are prefixes of it)
    int len;         // input tokens
} pf_doc;

static int by_len_desc(const void *a, const void *b) {
    const pf_doc *x = a, *y = b;
    return x->len != y->len ? y->len - x->len : x->first - y->first;
}

// The generation plan for continuing up to PREFIX_ROWS sequences of max_tokens tokens in all.
static int plan_prefix(pn_eval *e) {
    if (e->pf_planned) return 0;
    const int R = PREFIX_ROWS;
    if (pn_model_plan(e->m, R, (int)((e->max_tokens + R - 1) / R), 0))
        return pn_error_prefix("evaluation memory (cached prefixes)");
    e->pf_planned = 1, e->gen_planned = 0;
    return 0;
}

// Requests i .. j-1 over their common P-token prefix: the prefix forwarded once into a decode state, copied
// to every row of a batch of the distinct inputs' remaining tokens (longest first, padded at the end with
// end-of-text: the model is causal, so padding after a row's tokens changes none of its outputs), one
// multi-token forward continues them all, and each continuation is scored from the final hidden rows.
static int run_prefix_group(pn_eval *e, pn_ll_req *r, int i, int j, int P, int n,
                            void (*progress)(void *ctx, int done, int total), void *pctx) {
    pn_model *m = e->m;
    int trunc, nd = 0, maxL = 0;
    pf_doc *d = pn_malloc(sizeof(pf_doc) * (size_t)(j - i));
    for (int k = i; k < j; k++) {
        const int L = input_len(e, &r[k], &trunc);
        r[k].truncated = 0, r[k].ll = 0, r[k].greedy = 1;
        int same = e->share_prefix && nd > 0 && L <= d[nd - 1].len;
        for (int u = P; same && u < L; u++) same = token_at(e, &r[d[nd - 1].first], u) == token_at(e, &r[k], u);
        if (same) {
            d[nd - 1].last = k;
            e->stats_shared++;
        } else {
            d[nd++] = (pf_doc){k, k, L};
        }
        if (L > maxL) maxL = L;
    }
    qsort(d, (size_t)nd, sizeof *d, by_len_desc);
    const int64_t S0 = d[0].len - P; // the longest remaining input
    int R = (int)(e->max_tokens / S0);
    if (R > PREFIX_ROWS) R = PREFIX_ROWS;
    if ((int64_t)R * maxL > 4 * e->max_tokens) R = (int)(4 * e->max_tokens / maxL); // the cache: ~4 forwards' tokens
    if (R > nd) R = nd;
    if (R < 1) R = 1;
    int rc = plan_prefix(e);
    pn_kvcache pc = {0}, bc = {0};
    if (!rc) rc = pn_kvcache_init(&pc, m, 1, P);
    if (!rc) rc = pn_kvcache_init(&bc, m, R, maxL);
    int32_t *ids = pn_malloc(sizeof(int32_t) * (size_t)(R * S0 > P ? R * S0 : P));
    pn_ll_req **q = pn_malloc(sizeof(pn_ll_req *) * (size_t)(j - i));
    int64_t *end = pn_malloc(sizeof(int64_t) * (size_t)(j - i));
    if (!rc) { // the prefix, once
        for (int t = 0; t < P; t++) ids[t] = token_at(e, &r[i], t);
        rc = pn_model_forward(m, &pc, ids, 1, P);
        e->stats_tokens += P, e->stats_forwards++;
    }
    int done = i;
    for (int d0 = 0; d0 < nd && !rc;) {
        const int64_t T = d[d0].len - P;
        int rows = 0;
        while (d0 + rows < nd && rows < R && (int64_t)(rows + 1) * T <= e->max_tokens) rows++;
        if (rows == 0) rows = 1; // T <= max_len <= max_tokens
        int nq = 0;
        for (int b = 0; b < rows && !rc; b++) {
            const pf_doc *D = &d[d0 + b];
            for (int64_t t = 0; t < T; t++) ids[b * T + t] = P + t < D->len ? token_at(e, &r[D->first], P + (int)t) : e->eot;
            rc = pn_kvcache_copy_row(m, &bc, b, &pc, 0);
            for (int k = D->first; k <= D->last; k++) {
                int tr;
                q[nq] = &r[k], end[nq++] = b * T + input_len(e, &r[k], &tr) - P;
            }
        }
        pn_kvcache view;
        if (!rc) {
            pn_kvcache_rows(&bc, 0, rows, &view);
            rc = pn_model_forward(m, &view, ids, rows, (int)T);
            pn_kvcache_rows_free(&view);
        }
        if (rc) break;
        e->stats_tokens += rows * T, e->stats_forwards++, e->stats_prefixed += nq;
        score_rows(e, &m->xn, q, end, nq);
        d0 += rows, done += nq;
        if (progress) progress(pctx, done, n);
    }
    if (rc) rc = pn_error_prefix("evaluation over a cached prefix of %d tokens", P);
    free(d), free(ids), free(q), free(end);
    pn_kvcache_free(&pc);
    pn_kvcache_free(&bc);
    return rc;
}

int pn_eval_loglikelihood(pn_eval *e, pn_ll_req *r, int n, void (*progress)(void *ctx, int done, int total),
                          void *pctx) {
    pn_model *m = e->m;
    const int64_t V = m->cfg.vocab;
    for (int k = 0; k < n; k++) {
        if (r[k].n_cont < 1) return pn_errorf("evaluation: request %d has an empty continuation", k);
        if (r[k].n_cont > e->max_len)
            return pn_errorf("evaluation: request %d's continuation of %d tokens is longer than the window of %d",
                             k, r[k].n_cont, e->max_len);
        for (int t = 0; t < r[k].n_cont; t++)
            if (r[k].cont[t] < 0 || r[k].cont[t] >= V)
                return pn_errorf("evaluation: request %d: token %d outside the vocabulary (%lld)", k, r[k].cont[t],
                                 (long long)V);
    }
    // end[k]: one past the last input row of request k in the packed row of its forward.
    int64_t *end = pn_malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
    pn_ll_req **q = pn_malloc(sizeof(pn_ll_req *) * (size_t)(n ? n : 1));
    for (int i = 0; i < n;) {
        int P, j = e->prefix_cache ? prefix_group(e, r, i, n, &P) : i;
        if (j > i) {
            if (run_prefix_group(e, r, i, j, P, n, progress, pctx)) {
                free(end), free(q);
                return -1;
            }
            i = j;
            continue;
        }
        int64_t used = 0;
        int ns = 0;
        while (j < n) {
            int trunc;
            const int L = input_len(e, &r[j], &trunc);
            const int whole = (r[j].n_ctx ? r[j].n_ctx : 1) + r[j].n_cont;
            const int first = whole - 1 - L; // the input is tokens first .. whole - 2 of ctx' + cont
            r[j].truncated = trunc, r[j].ll = 0, r[j].greedy = 1;
            // Shared prefix: an input that starts the last packed document (the same context with one-token
            // choices, as MMLU's " A" .. " D", has the same input for every choice) is read from its rows, so
            // that document's forward serves every such request. The model is causal: row t of a document
            // depends on rows 0 .. t only.
            if (e->share_prefix && ns > 0 && L <= e->cu[ns] - e->cu[ns - 1]) {
                const int32_t *prev = e->ids + e->cu[ns - 1];
                int t = 0;
                while (t < L && prev[t] == token_at(e, &r[j], first + t)) t++;
                if (t == L) {
                    end[j++] = e->cu[ns - 1] + L;
                    e->stats_shared++;
                    continue;
                }
            }
            if (used + L > e->max_tokens) break;
            // the next requests over a cached prefix instead: this forward ends before them
            if (ns > 0 && e->prefix_cache && prefix_group(e, r, j, n, &P) > j) break;
            for (int t = 0; t < L; t++) e->ids[used + t] = token_at(e, &r[j], first + t);
            e->cu[ns++] = (int32_t)used;
            used += L;
            e->cu[ns] = (int32_t)used;
            end[j++] = used;
        }
        if (j == i) pn_panic("evaluation: request %d fits no forward", i); // max_tokens >= max_len
        if (pn_model_forward_train(m, e->ids, 1, (int)used, e->cu, ns)) {
            free(end), free(q);
            return pn_error_prefix("evaluation forward");
        }
        e->stats_tokens += used, e->stats_forwards++;
        pn_tensor h = pn_model_train_hidden(m);
        for (int k = i; k < j; k++) q[k - i] = &r[k];
        score_rows(e, &h, q, end + i, j - i);
        i = j;
        if (progress) progress(pctx, i, n);
    }
    free(end), free(q);
    return 0;
}

// ---------------------------------------------------------------------------------------------------
// generate-until

// Invalid UTF-8 replaced as Hugging Face's tokenizers do (Rust's from_utf8_lossy): each maximal subpart of
// an ill-formed sequence becomes one U+FFFD. Returns a new string.
static char *utf8_lossy(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    char *out = pn_malloc(3 * n + 1);
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        const unsigned c = p[i];
        if (c < 0x80) {
            out[o++] = (char)c, i++;
            continue;
        }
        size_t len = 0;
        unsigned lo = 0x80, hi = 0xbf; // the second byte's range (the first continuation)
        if (c >= 0xc2 && c <= 0xdf) len = 2;
        else if (c >= 0xe0 && c <= 0xef) len = 3, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
        else if (c >= 0xf0 && c <= 0xf4) len = 4, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
        size_t k = 1;
        while (len && k < len && i + k < n && p[i + k] >= (k == 1 ? lo : 0x80) && p[i + k] <= (k == 1 ? hi : 0xbf)) k++;
        if (len && k == len) {
            memcpy(out + o, s + i, len), o += len;
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3), o += 3;
        }
        i += k;
    }
    out[o] = 0;
    return out;
}

// Decode as Hugging Face's tokenizers decode: ids the tokenizer does not have (the embedding's padding rows
// beyond its vocabulary) are skipped, not an error, and invalid UTF-8 becomes U+FFFD.
static int decode_known(const pn_tokenizer *tok, const int32_t *ids, int n, int skip_special, char **out) {
    const int V = pn_tokenizer_vocab_size(tok);
    int32_t *k = pn_malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
    int m = 0;
    for (int i = 0; i < n; i++)
        if (ids[i] >= 0 && ids[i] < V) k[m++] = ids[i];
    size_t len;
    char *raw = NULL;
    const int rc = pn_tokenizer_decode(tok, k, (size_t)m, skip_special, &raw, &len);
    free(k);
    if (rc) return rc;
    *out = utf8_lossy(raw, len);
    free(raw);
    return 0;
}

// Appends t to q's generation: 1 when q is finished (end-of-text, max_gen, or a stop string in the text so
// far, special tokens kept as the stopping check sees them), 0 to go on, -1 with the error set.
static int gen_push(const pn_tokenizer *tok, pn_gen_req *q, int32_t t, int32_t eos) {
    q->gen[q->n_gen++] = t;
    if (t == eos || q->n_gen == q->max_gen) return 1;
    char *text = NULL;
    if (decode_known(tok, q->gen, q->n_gen, 0, &text)) return -1;
    int stop = 0;
    for (int k = 0; k < q->n_until && !stop; k++) stop = q->until[k][0] && strstr(text, q->until[k]);
    free(text);
    return stop;
}

// The answer: decoded without special tokens, cut before each stop string in turn.
static int gen_finish(const pn_tokenizer *tok, pn_gen_req *q) {
    if (decode_known(tok, q->gen, q->n_gen, 1, &q->text)) return -1;
    for (int k = 0; k < q->n_until; k++) {
        char *at = q->until[k][0] ? strstr(q->text, q->until[k]) : NULL;
        if (at) *at = 0;
    }
    return 0;
}

// Row b takes request q: its context (cut from the left to the window minus the tokens to generate; an empty
// one is end-of-text) prefilled alone into the emptied row, and its first token. 1 when that finished it.
static int gen_start(pn_eval *e, const pn_tokenizer *tok, pn_kvcache *kc, int b, pn_gen_req *q) {
    pn_model *m = e->m;
    const int keep = e->max_len - q->max_gen;
    const int32_t *ctx = q->n_ctx ? q->ctx : &e->eot;
    int nc = q->n_ctx ? q->n_ctx : 1;
    q->truncated = nc > keep;
    if (nc > keep) ctx += nc - keep, nc = keep;
    q->gen = pn_malloc(sizeof(int32_t) * (size_t)q->max_gen);
    q->n_gen = 0;
    pn_kvcache row;
    pn_kvcache_reset_row(kc, b);
    pn_kvcache_row(kc, b, &row);
    int rc = pn_model_forward(m, &row, ctx, 1, nc);
    pn_kvcache_row_done(kc, b, &row);
    e->stats_tokens += nc, e->stats_forwards++;
    int32_t t;
    if (rc || pn_model_greedy(m, 1, &t)) return -1;
    return gen_push(tok, q, t, m->cfg.eos_id);
}

int pn_eval_generate(pn_eval *e, const pn_tokenizer *tok, pn_gen_req *r, int n,
                     void (*progress)(void *ctx, int done, int total), void *pctx) {
    pn_model *m = e->m;
    for (int i = 0; i < n; i++)
        if (r[i].max_gen < 1 || r[i].max_gen >= e->max_len)
            return pn_errorf("generation: max_gen %d must be in 1 .. %d (the window)", r[i].max_gen, e->max_len - 1);
    if (n == 0) return 0;
    // Continuous batching: G rows of one decode state, each running a request; a row whose request ends takes
    // the next one (prefilled alone into that row), and every step decodes all rows at once, each from its own
    // length. Each row computes what it would alone (the ops treat rows independently; on the CPU a product of
    // G rows may round differently from one of one row, ~1e-6), so the answers do not depend on G but for a
    // near-tie. One state for all requests, so a decode step captured as a CUDA graph serves them all.
    const int G = n < e->gen_batch ? n : e->gen_batch;
    if ((!e->gen_planned || e->gen_rows != G) && pn_model_plan(m, G, (e->max_len + G - 1) / G, 0))
        return pn_error_prefix("generation memory");
    e->gen_planned = 1, e->gen_rows = G, e->pf_planned = 0;
    pn_kvcache kc;
    if (pn_kvcache_init(&kc, m, G, e->max_len)) return pn_error_prefix("generation memory");
    int *slot = pn_malloc(sizeof(int) * (size_t)G); // the request each row runs, -1: none
    int32_t *next = pn_malloc(sizeof(int32_t) * 2 * (size_t)G), *got = next + G;
    for (int b = 0; b < G; b++) slot[b] = -1;
    int rc = 0, taken = 0, done = 0;
    while (!rc && done < n) {
        for (int b = 0; b < G && !rc; b++)
            while (slot[b] < 0 && taken < n && !rc) { // an idle row takes the next request
                const int i = taken++;
                const int fin = gen_start(e, tok, &kc, b, &r[i]);
                if (fin < 0 || (fin && gen_finish(tok, &r[i]))) {
                    rc = -1;
                } else if (fin) { // answered by its first token: the row takes the next one
                    if (progress) progress(pctx, ++done, n);
                } else {
                    slot[b] = i, next[b] = r[i].gen[r[i].n_gen - 1];
                }
            }
        if (rc || done == n) break;
        for (int b = 0; b < G; b++)
            if (slot[b] < 0) kc.lens[b] = 0, next[b] = e->eot; // an idle row: its output is not read
        if (pn_model_forward(m, &kc, next, G, 1) || pn_model_greedy(m, G, got)) {
            rc = -1;
            break;
        }
        e->stats_forwards++;
        for (int b = 0; b < G; b++) e->stats_tokens += slot[b] >= 0; // the rows that run a request
        for (int b = 0; b < G && !rc; b++) {
            if (slot[b] < 0) continue;
            pn_gen_req *q = &r[slot[b]];
            const int fin = gen_push(tok, q, got[b], m->cfg.eos_id);
            if (fin < 0 || (fin && gen_finish(tok, q))) {
                rc = -1;
            } else if (fin) {
                slot[b] = -1;
                if (progress) progress(pctx, ++done, n);
            } else {
                next[b] = got[b];
            }
        }
    }
    free(slot);
    free(next);
    pn_kvcache_free(&kc);
    return rc;
}
