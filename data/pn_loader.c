// pn_loader: fixed windows over the concatenated shards, in a seeded per-epoch permutation.
//
// The permutation is not stored: a keyed Feistel network over the smallest power of four >= N, with
// cycle-walking back into [0, N), maps position i of epoch e to a window in O(1) memory. At the paper's
// scale (tens of billions of tokens) a stored shuffle would cost hundreds of MB per rank and an O(N)
// pass per epoch; this costs a few hashes per window, and any (epoch, step) can be jumped to directly,
// which is what makes the state two integers.
#include "pn_loader.h"

#include <stdlib.h>
#include <string.h>

#include "../src/pn_common.h"
#include "../src/pn_rng.h"
#include "pn_shard.h"

#define FEISTEL_ROUNDS 6
// Mixed into the seed so the loader's stream differs from other users of the same seed.
#define LOADER_STREAM_KEY 0x6c6f61646572ull // "loader"

struct pn_loader {
    int n_shards;
    pn_shard **shards;
    uint64_t *shard_start; // n_shards + 1: where each shard begins in the concatenated stream
    uint64_t n_tokens, n_windows, steps_per_epoch, dropped;
    int T, B, rank, world, doc_boundaries;
    uint64_t seed;
    int64_t eos_id, vocab_size;
    int half_bits; // the Feistel network permutes [0, 4^half_bits)
    uint32_t *window; // T + 1 tokens being assembled
    int32_t *tokens, *targets, *positions, *segment_ids;
    pn_loader_state state;
};

void pn_loader_close(pn_loader *ld) {
    if (!ld) return;
    for (int i = 0; i < ld->n_shards; i++) pn_shard_close(ld->shards[i]);
    free(ld->shards);
    free(ld->shard_start);
    free(ld->window);
    free(ld->tokens);
    free(ld->targets);
    free(ld->positions);
    free(ld->segment_ids);
    free(ld);
}

pn_loader *pn_loader_open(const pn_loader_config *cfg) {
    if (cfg->n_paths < 1 || !cfg->paths) {
        pn_errorf("loader: no shards given");
        return NULL;
    }
    if (cfg->seq_len < 1 || cfg->batch_local < 1 || cfg->world < 1 || cfg->rank < 0 || cfg->rank >= cfg->world) {
        pn_errorf("loader: bad shape: seq_len %d, batch_local %d, rank %d of %d", cfg->seq_len, cfg->batch_local,
                  cfg->rank, cfg->world);
        return NULL;
    }
    pn_loader *ld = pn_calloc(1, sizeof *ld);
    ld->T = cfg->seq_len;
    ld->B = cfg->batch_local;
    ld->rank = cfg->rank;
    ld->world = cfg->world;
    ld->seed = cfg->seed;
    ld->doc_boundaries = cfg->doc_boundaries;
    ld->shards = pn_calloc((size_t)cfg->n_paths, sizeof *ld->shards);
    ld->shard_start = pn_calloc((size_t)cfg->n_paths + 1, sizeof *ld->shard_start);

    // The first shard is checked against the caller's expectation (if any); every later one against
    // the first, so a mixed set is refused even when the caller names no tokenizer.
    for (int i = 0; i < cfg->n_paths; i++) {
        const char *want_tok = cfg->tokenizer;
        int64_t want_vocab = cfg->vocab_size;
        if (i > 0) {
            const pn_shard_meta *m0 = pn_shard_get_meta(ld->shards[0]);
            want_tok = m0->tokenizer;
            want_vocab = m0->vocab_size;
        }
        ld->shards[i] = pn_shard_open(cfg->paths[i], want_tok, want_vocab);
        if (!ld->shards[i]) {
            if (i > 0) {
                char msg[PN_ERR_MAX];
                snprintf(msg, sizeof msg, "%s", pn_last_error());
                pn_errorf("%s (as %s is)", msg, cfg->paths[0]);
            }
            pn_loader_close(ld);
            return NULL;
        }
        ld->n_shards = i + 1;
        const pn_shard_meta *m = pn_shard_get_meta(ld->shards[i]);
        if (i == 0) {
            ld->eos_id = m->eos_id;
            ld->vocab_size = m->vocab_size;
        } else if (m->eos_id != ld->eos_id) {
            pn_errorf("%s: eos id %lld differs from %s's %lld", cfg->paths[i], (long long)m->eos_id, cfg->paths[0],
                      (long long)ld->eos_id);
            pn_loader_close(ld);
            return NULL;
        }
        ld->shard_start[i + 1] = ld->shard_start[i] + pn_shard_n_tokens(ld->shards[i]);
    }

    ld->n_tokens = ld->shard_start[ld->n_shards];
    // A window needs T + 1 tokens (its last target is the next window's first input).
    ld->n_windows = ld->n_tokens > 0 ? (ld->n_tokens - 1) / (uint64_t)ld->T : 0;
    uint64_t global = (uint64_t)ld->world * (uint64_t)ld->B;
    ld->steps_per_epoch = ld->n_windows / global;
    ld->dropped = ld->n_windows % global;
    if (ld->steps_per_epoch == 0) {
        pn_errorf("loader: %d shard(s) hold %llu tokens, %llu windows of %d+1 tokens: fewer than one global batch "
                  "of %llu windows (%d ranks x %d)",
                  ld->n_shards, (unsigned long long)ld->n_tokens, (unsigned long long)ld->n_windows, ld->T,
                  (unsigned long long)global, ld->world, ld->B);
        pn_loader_close(ld);
        return NULL;
    }
    ld->half_bits = 1;
    while (ld->half_bits < 32 && (1ull << (2 * ld->half_bits)) < ld->n_windows) ld->half_bits++;

    size_t bt = (size_t)ld->B * (size_t)ld->T;
    ld->window = pn_malloc(((size_t)ld->T + 1) * sizeof *ld->window);
    ld->tokens = pn_malloc(bt * sizeof *ld->tokens);
    ld->targets = pn_malloc(bt * sizeof *ld->targets);
    if (ld->doc_boundaries) {
        ld->positions = pn_malloc(bt * sizeof *ld->positions);
        ld->segment_ids = pn_malloc(bt * sizeof *ld->segment_ids);
    }
    return ld;
}

// One pass of the balanced Feistel network on [0, 4^half_bits), keyed by (seed, epoch).
static uint64_t feistel(const pn_loader *ld, uint64_t epoch, uint64_t x) {
    uint64_t mask = (1ull << ld->half_bits) - 1;
    uint64_t left = x >> ld->half_bits, right = x & mask;
    uint64_t base = pn_splitmix64(ld->seed ^ LOADER_STREAM_KEY) ^ (epoch * 0xd1b54a32d192ed03ull);
    for (int r = 0; r < FEISTEL_ROUNDS; r++) {
        uint64_t key = pn_splitmix64(base + (uint64_t)r);
        uint64_t f = pn_splitmix64(key ^ right) & mask;
        uint64_t next = left ^ f;
        left = right;
        right = next;
    }
    return (left << ld->half_bits) | right;
}

// Position i of epoch e's order -> window. Feistel permutes a power of four >= N; values >= N are
// walked through the cycle again until they land in [0, N), which keeps it a permutation of [0, N)
// (at most 4x the domain, so a few passes on average).
static uint64_t permute(const pn_loader *ld, uint64_t epoch, uint64_t i) {
    uint64_t x = i;
    do x = feistel(ld, epoch, x);
    while (x >= ld->n_windows);
    return x;
}

uint64_t pn_loader_window(const pn_loader *ld, uint64_t epoch, uint64_t step, int row) {
    uint64_t global = (uint64_t)ld->world * (uint64_t)ld->B;
    return permute(ld, epoch, step * global + (uint64_t)ld->rank * (uint64_t)ld->B + (uint64_t)row);
}

// Reads stream tokens [w*T, w*T + T + 1) into ld->window, across as many shards as they span.
static int read_window(pn_loader *ld, uint64_t w) {
    uint64_t pos = w * (uint64_t)ld->T;
    size_t need = (size_t)ld->T + 1, got = 0;
    // The shard holding pos: the last k with shard_start[k] <= pos (empty shards are passed over).
    int lo = 0, hi = ld->n_shards; // invariant: shard_start[lo] <= pos < shard_start[hi]
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (ld->shard_start[mid] <= pos) lo = mid;
        else hi = mid;
    }
    for (int k = lo; got < need; k++) {
        PN_ASSERT(k < ld->n_shards); // N was computed so that every window fits in the stream
        uint64_t begin = pos + got - ld->shard_start[k], avail = ld->shard_start[k + 1] - ld->shard_start[k] - begin;
        size_t take = need - got < avail ? need - got : (size_t)avail;
        if (take == 0) continue;
        if (pn_shard_read(ld->shards[k], begin, take, ld->window + got)) return -1;
        // A corrupted or foreign shard must not index past the embedding table.
        for (size_t i = 0; i < take; i++)
            if (ld->window[got + i] >= (uint64_t)ld->vocab_size)
                return pn_errorf("%s: token %u at position %llu is ≥ vocab size %lld", pn_shard_path(ld->shards[k]),
                                 ld->window[got + i], (unsigned long long)(begin + i), (long long)ld->vocab_size);
        got += take;
    }
    return 0;
}

int pn_loader_next(pn_loader *ld, pn_batch *batch) {
    const int T = ld->T;
    for (int b = 0; b < ld->B; b++) {
        uint64_t w = pn_loader_window(ld, ld->state.epoch, ld->state.step, b);
        if (read_window(ld, w)) return -1;
        int32_t *tok = ld->tokens + (size_t)b * T, *tgt = ld->targets + (size_t)b * T;
        for (int t = 0; t < T; t++) {
            tok[t] = (int32_t)ld->window[t];
            tgt[t] = (int32_t)ld->window[t + 1];
        }
        if (ld->doc_boundaries) {
            // A row starts mid-document as often as not; its first token gets position 0 regardless.
            int32_t *pos = ld->positions + (size_t)b * T, *seg = ld->segment_ids + (size_t)b * T;
            int32_t p = 0, s = 0;
            for (int t = 0; t < T; t++) {
                pos[t] = p;
                seg[t] = s;
                if (tok[t] == ld->eos_id) {
                    p = 0;
                    s++;
                } else {
                    p++;
                }
            }
        }
    }
    *batch = (pn_batch){.B = ld->B, .T = T, .tokens = ld->tokens, .targets = ld->targets,
                        .positions = ld->positions, .segment_ids = ld->segment_ids, .state = ld->state};
    if (++ld->state.step == ld->steps_per_epoch) {
        ld->state.step = 0;
        ld->state.epoch++;
    }
    return 0;
}

pn_loader_state pn_loader_get_state(const pn_loader *ld) { return ld->state; }

int pn_loader_set_state(pn_loader *ld, pn_loader_state state) {
    if (state.step >= ld->steps_per_epoch)
        return pn_errorf("loader: step %llu is past the end of an epoch (%llu steps): the data or batch shape "
                         "differs from the run that saved it",
                         (unsigned long long)state.step, (unsigned long long)ld->steps_per_epoch);
    ld->state = state;
    return 0;
}

uint64_t pn_loader_n_tokens(const pn_loader *ld) { return ld->n_tokens; }
uint64_t pn_loader_n_windows(const pn_loader *ld) { return ld->n_windows; }
uint64_t pn_loader_steps_per_epoch(const pn_loader *ld) { return ld->steps_per_epoch; }
uint64_t pn_loader_dropped_windows(const pn_loader *ld) { return ld->dropped; }
int64_t pn_loader_eos_id(const pn_loader *ld) { return ld->eos_id; }
