// pn_block: the attention-layer types a PostNAS supernet chooses between, under Jet-Nemotron's
// `layer_types` names: `attn` (full attention), `swa` (sliding window), `jet` (JetBlock), `gdn` (Gated
// DeltaNet) and `deltanet` (GDN without decay); and `shortconv` (a short causal convolution alone: this
// project's cheapest candidate and the example of adding a block).
//
// One interface per type (src/blocks/<type>.c, one registry line in src/blocks/registry.c). What a type
// describes so far is everything that needs no compute: validation of its config (an impossible config is
// refused at config time, naming the key), its parameters under the names Jet-Nemotron's Hugging Face
// export uses, its decode state (KV cache or recurrent state) for a context length — the quantity the
// hardware-aware search holds fixed — and its FLOPs per token — and its training forward and backward,
// written once against kernels/ops.h (so they run on either backend) with the activations they keep
// declared up front: the model plans every block's memory before the first step (src/pn_train.c).
#ifndef PN_BLOCK_H
#define PN_BLOCK_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "../kernels/ops.h"
#include "pn_block_cfg.h"
#include "pn_hf_config.h"
#include "pn_param.h"



// What a block's forward and backward need to know about the batch besides its own config.
typedef struct pn_block_ctx {
    int64_t B, T;                // the N = B T token rows of x are B sequences of T tokens ...
    const pn_tensor *cu_seqlens; // ... or (B = 1) n_seqs packed sequences: I32 [n_seqs + 1] on the device,
    const int32_t *cu_host;      // the same offsets on the host (NULL both when not packed)
    int n_seqs;
    const pn_tensor *inv_freq; // RoPE table (attention), F32 [head_dim / 2] on the device
    float rms_eps;             // the base model's RMSNorm eps (attention's q/k norm)
    int64_t pos0;              // generation: tokens the decode state already holds (the new ones follow)
    // Decoding (T = 1): the same count per sequence on the device, I32 [B] (NULL otherwise). A block that
    // reads positions takes them from here (kv_store_at, attention_at: RoPE folded in), so the step can be
    // captured as a CUDA graph and replayed at later positions; pos0 is then only for the host's checks.
    const pn_tensor *pos;
} pn_block_ctx;

#define PN_BLOCK_MAX_PARAMS 16
#define PN_BLOCK_MAX_ACTS 24

typedef struct pn_block_type {
    const char *name;
    // config.json: the key of its section in efficient_attention_config (NULL: it has none), the section read
    // into c (whose fields from the base model are set; `in` names the section in messages; section NULL:
    // absent), and the section as config.json writes it. A block that has a section must be given one.
    const char *section;
    int (*parse)(pn_block_cfg *c, json_t *section, const char *path, const char *in);
    json_t *(*to_json)(const pn_block_cfg *c);
    // 0, or -1 with an error naming the key (`what` prefixes it, e.g. "configs/x.yaml: layer 3").
    int (*check)(const pn_block_cfg *c, const char *what);
    // The block's parameters for layer `layer`, names under model.layers.{layer}.self_attn.; returns the
    // count (out may be NULL to count).
    int (*params)(const pn_block_cfg *c, int layer, pn_param *out);
    // Decode state for one sequence of ctx_len tokens (KV cache in kv_bytes_per_elem, recurrent state fp32).
    size_t (*state_bytes)(const pn_block_cfg *c, int64_t ctx_len, int kv_bytes_per_elem);
    // Forward FLOPs of one token at position pos (multiply-add = 2).
    double (*flops)(const pn_block_cfg *c, int64_t pos);

    // The [N, cols[i]] tensors of dtype dt[i] (act: the device's activation dtype) that the training forward
    // keeps for the backward (which = 0), or that the backward uses as scratch (which = 1, shared by all
    // layers). Returns the count (<= PN_BLOCK_MAX_ACTS).
    int (*acts)(const pn_block_cfg *c, int which, pn_dtype act, pn_dtype *dt, int64_t *cols);
    // Training forward: y [N, hidden] = block(x [N, hidden]); p are the block's parameters in params()'
    // order; acts the tensors acts(which = 0) planned, filled for the backward. 0, or -1 with the error set.
    int (*forward)(const pn_block_cfg *c, const pn_tensor *p, pn_tensor *acts, const pn_tensor *x, pn_tensor *y,
                   const pn_block_ctx *ctx);
    // Training backward from the forward's acts: dx [N, hidden] overwritten with dL/dx; parameter gradients
    // (F32) accumulate into gp[i], skipped where gp is NULL or gp[i].data is NULL (frozen). scratch: the
    // tensors acts(which = 1) planned. 0, or -1 with the error set.
    int (*backward)(const pn_block_cfg *c, const pn_tensor *p, pn_tensor *gp, pn_tensor *acts, pn_tensor *scratch,
                    const pn_tensor *x, const pn_tensor *dy, pn_tensor *dx, const pn_block_ctx *ctx);

    // Generation (prefill and decode; every type has it, attention included: the model's one layer loop
    // calls it for every layer). The decode state of B sequences of up to cap tokens, each call adding up to
    // max_T of them (0: unknown, up to cap), (the KV cache of attention — a sliding window's a ring that holds
    // what one call needs —, the recurrent state and convolution history of a linear block) as tensors of
    // dtype dt[i] and shape[i] (ndim[i] dims; all zero = empty context); returns the count
    // (<= PN_BLOCK_MAX_STATE).
    int (*state)(const pn_block_cfg *c, int64_t B, int64_t cap, int64_t max_T, pn_dtype act, pn_dtype *dt, int *ndim,
                 int64_t (*shape)[4]);
    // Scratch for up to max_B sequences of max_T new tokens: [rows[i], cols[i]] tensors of dtype dt[i].
    int (*infer_acts)(const pn_block_cfg *c, int64_t max_B, int64_t max_T, pn_dtype act, pn_dtype *dt, int64_t *rows,
                      int64_t *cols);
    // y [B T, hidden] = block(x [B T, hidden]) for ctx->B sequences of ctx->T new tokens at positions ctx->pos0
    // ... that continue `state` (any T: prefill or a single-token step), updating it. 0, or -1 with the
    // error set.
    int (*infer)(const pn_block_cfg *c, const pn_tensor *p, pn_tensor *state, pn_tensor *scratch, const pn_tensor *x,
                 pn_tensor *y, const pn_block_ctx *ctx);
} pn_block_type;

#define PN_BLOCK_MAX_STATE 4

// gp[i] as an op argument: NULL when frozen.
static inline pn_tensor *pn_block_grad(pn_tensor *gp, int i) { return gp && gp[i].data ? &gp[i] : NULL; }
// Rows [0, N) of a planned [max_N, cols] tensor (plans are made for the largest batch).
static inline pn_tensor pn_block_rows(const pn_tensor *t, int64_t N) { return pn_rows(t, 0, N); }

const pn_block_type *pn_block_find(const char *name); // NULL (with the error set) for an unknown name
int pn_block_count(void);                              // the registered types, pn_block_at(0 .. count - 1)
const pn_block_type *pn_block_at(int i);
// The default config of each type derived from a base model (the paper's 2B JetBlock shape scaled to it:
// d_k = head_dim * 3/4 (96 for 128), expand_v 2.6667 (d_v 256), conv 4, reduction 8, eps 1e-5; window 1152),
// or, for a Jet-Nemotron config, the shape and window its efficient_attention_config gives.
pn_block_cfg pn_block_default(const pn_model_config *base, const char *type);
int64_t pn_block_param_count(const pn_block_type *t, const pn_block_cfg *c);

// Initialize layer `layer`'s block parameters p (params() order, on any device): a tensor whose name and
// shape equal one of the pretrained attention layer's (attn: its tensors in pn_block_attn's params() order
// for attn_cfg; NULL for none) starts as a copy of it — a `swa` path gets the whole attention layer, a
// linear block sized like the attention its q/k/v/o projections — and every other tensor gets the
// published init (pn_param_init_value with std, streams keyed by layer and tensor). Returns the number of
// tensors copied.
int pn_block_init(const pn_block_type *bt, const pn_block_cfg *c, int layer, pn_tensor *p,
                  const pn_block_cfg *attn_cfg, const pn_tensor *attn, double std, uint64_t seed);

// Shared by the block files: append one parameter.
void pn_block_add_param(pn_param *out, int *n, int layer, const char *suffix, pn_param_kind kind, int ndim, int64_t d0,
                        int64_t d1, int64_t d2);

#endif
