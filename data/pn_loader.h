// pn_loader: training batches from HDF5 token shards, deterministic across ranks, epochs and resumes.
//
// The shards' token streams are concatenated (in the order given) into one stream of S tokens, cut into
// N = floor((S - 1) / T) windows: window w holds tokens [w*T, w*T + T + 1), so its T inputs are
// tokens [w*T, w*T + T) and its T targets the same shifted by one. Documents are packed as they come
// (each followed by its eos); a window may span documents and shards.
//
// Epoch e visits the windows in a permutation that depends only on (seed, e). A step takes the next
// B_global = world * B_local windows of the permutation; rank r takes the slice
// [step*B_global + r*B_local, +B_local). So every window of an epoch is seen exactly once across ranks,
// and `world` 1 with B_local 2k sees the same global batches as `world` 2 with B_local k. The last
// N mod B_global windows of each epoch's permutation do not fill a global batch and are dropped
// (pn_loader_dropped_windows); since the permutation changes every epoch, different windows are dropped.
//
// All ranks must pass the same shard list in the same order, the same T, B_global and seed.
#ifndef PN_LOADER_H
#define PN_LOADER_H

#include <stddef.h>
#include <stdint.h>

typedef struct pn_loader_config {
    const char *const *paths; // shard files, concatenated in this order
    int n_paths;
    const char *tokenizer; // expected tokenizer identity, or NULL (the shards must still agree)
    int64_t vocab_size;    // expected vocabulary size, or 0
    int seq_len;           // T
    int batch_local;       // B_local: windows per rank per step
    int rank, world;       // this process and the number of processes (0 <= rank < world)
    uint64_t seed;
    // Also produce positions and segment ids that restart after every eos, so blocks can keep
    // attention and recurrent state from crossing documents.
    int doc_boundaries;
} pn_loader_config;

// Where the loader stands: the batch that pn_loader_next returns next. Saved in checkpoints; restoring
// it makes a resumed run see exactly the batches an uninterrupted one would.
typedef struct pn_loader_state {
    uint64_t epoch, step;
} pn_loader_state;

// One rank's batch; the arrays belong to the loader and stay valid until the next pn_loader_next.
typedef struct pn_batch {
    int B, T;
    int32_t *tokens;      // [B, T]
    int32_t *targets;     // [B, T], the token after each input
    int32_t *positions;   // [B, T], 0 at the row start and after every eos; NULL without doc_boundaries
    int32_t *segment_ids; // [B, T], 0 at the row start, +1 after every eos; NULL without doc_boundaries
    pn_loader_state state; // the (epoch, step) this batch is
} pn_batch;

typedef struct pn_loader pn_loader;

// Opens every shard (validated, tokenizer checked), keeps them open. NULL with the error set, e.g. when
// the shards disagree on the tokenizer or hold too few tokens for one global batch.
pn_loader *pn_loader_open(const pn_loader_config *cfg);
void pn_loader_close(pn_loader *ld);

// Fills `batch` with the batch at the current state, then advances the state (to the next epoch after
// its last step). -1 with the error set if a read fails or a token is outside the vocabulary.
int pn_loader_next(pn_loader *ld, pn_batch *batch);

pn_loader_state pn_loader_get_state(const pn_loader *ld);
int pn_loader_set_state(pn_loader *ld, pn_loader_state state); // -1 when step >= steps per epoch

uint64_t pn_loader_n_tokens(const pn_loader *ld);         // S, all shards together
uint64_t pn_loader_n_windows(const pn_loader *ld);        // N
uint64_t pn_loader_steps_per_epoch(const pn_loader *ld);  // floor(N / B_global)
uint64_t pn_loader_dropped_windows(const pn_loader *ld);  // N mod B_global, per epoch
int64_t pn_loader_eos_id(const pn_loader *ld);
// The window that row `row` (0 <= row < B_local) of this rank's batch at (epoch, step) reads.
uint64_t pn_loader_window(const pn_loader *ld, uint64_t epoch, uint64_t step, int row);

#endif
