// pn_model: the Qwen2-family decoder (Qwen2/Qwen2.5, Qwen3, Llama) and its hybrids (Jet-Nemotron: any
// layer's attention replaced by a block of src/blocks/) on either backend.
//
// Forward is written once against kernels/ops.h; the model never branches on the device. Memory is
// planned up front: parameters in one arena, activations for at most max_B x max_T tokens in another,
// and the KV cache in its own (pn_kvcache), so prefill and decode allocate nothing.
#ifndef PN_MODEL_H
#define PN_MODEL_H

#include "../kernels/ops.h"
#include "pn_block.h"
#include "pn_checkpoint.h"
#include "pn_hf_config.h"

// A token mixer: a block type (src/blocks/) with its config and parameters in the type's params() order; gbp
// are their gradients (data NULL = frozen or no gradients planned).
typedef struct pn_slot {
    const pn_block_type *bt;
    pn_block_cfg bc;
    int nbp;
    pn_tensor bp[PN_BLOCK_MAX_PARAMS], gbp[PN_BLOCK_MAX_PARAMS];
    int shares; // >= 0: bp/gbp are those of slot `shares` of the layer (swa runs attn's weights), else -1
} pn_slot;

#define PN_MAX_SLOTS 8

typedef struct pn_layer {
    // The candidate mixers of the layer (a supernet's paths; a plain model has one) and the one in use.
    // Slot 0 is the mixer config.json names, its tensors under model.layers.{i}.self_attn.; the others come
    // from pn_model_add_candidates. Everything else in the layer (norms, MLP) is shared by all of them.
    pn_slot slot[PN_MAX_SLOTS];
    int nslots, active;
    pn_tensor in_norm, post_norm, gate_w, up_w, down_w;
    pn_tensor g_in_norm, g_post_norm, g_gate_w, g_up_w, g_down_w;
} pn_layer;

static inline pn_slot *pn_layer_mixer(pn_layer *L) { return &L->slot[L->active]; }
static inline const pn_slot *pn_layer_mixer_c(const pn_layer *L) { return &L->slot[L->active]; }

// A tap sees the hidden state at a named point of the forward — "embed" (layer -1, the embeddings) and
// "layer_out" (after layer l) — in generation and in training, and may read or overwrite it (teacher
// features for distillation, a heat map's probes), without the model knowing who listens (llama.cpp's
// cb(cur, name, il)). In the training backward (pn_model_backward_hidden) it also sees "layer_out_grad": the
// gradient of layer l's output, before layer l's backward, to which a loss on that hidden state adds its
// own (layers below the lowest trainable one are not visited), and "layer_grads_done" after it: layer l's
// parameter gradients are complete for this backward (hidden: the gradient going on to layer l - 1), so a
// data-parallel trainer can start summing them over ranks while the layers below run. Returns 0, or -1 with
// the error set to stop the pass.
typedef int (*pn_tap_fn)(void *ctx, const char *name, int layer, pn_tensor *hidden);

// What one decoder layer writes: the normalized input, the mixer's output y, the residual after the mixer,
// the MLP's normalized input, gate, up and their product h. Training keeps them for the backward;
// generation passes shared scratch, with xmid and the output aliasing the input (it runs in place).
typedef struct pn_layer_bufs {
    pn_tensor xn1, y, xmid, xn2, gate, up, h;
    // The norm that reads this layer's output (the next layer's input norm, or the final one). With it, the
    // layer's last residual add also writes that norm (one pass, add_rmsnorm) into next_xn1, or xn1 when
    // next_xn1 is NULL (generation: one shared buffer), and sets xn1_ready, so the next layer skips its own
    // (not with taps or check_finite, which may read or change the output in between). Training passes the
    // next layer's kept xn1 (or the final norm's output) as next_xn1.
    const pn_tensor *next_norm;
    pn_tensor *next_xn1;
    int xn1_ready;
} pn_layer_bufs;


typedef struct pn_model {
    pn_model_config cfg;
    pn_device device;
    pn_dtype dtype;
    pn_arena params;
    pn_arena cand; // the candidate mixers' own parameters (pn_model_add_candidates)
    char dir[1024]; // the folder it was loaded from (its tokenizer goes with an export)
    pn_tensor embed, final_norm, lm_head, inv_freq;
    pn_layer *layers;
    int nparams;
    pn_param *param_list;
    // activations (pn_model_plan)
    pn_arena acts;
    int max_B, max_T, all_logits;
    // With check_finite (set from PN_CHECK_FINITE=1 at load, or by the caller), every layer's output is
    // checked for NaN/Inf and the forward fails naming the first layer that produced one.
    int check_finite;
    pn_tensor ids, x, xn, tmp, gate, up, logits;
    pn_tensor greedy; // pn_model_greedy's answer, I32 [max_B]
    // Decode steps replay a CUDA graph where the backend has them (PN_NO_GRAPH=1 at load turns it off);
    // epoch counts the changes (plan, mixer choice, candidates) that invalidate a captured one.
    int use_graphs, epoch;
    // the tap (NULL: none) and its context
    pn_tap_fn tap;
    void *tap_ctx;
    // generation scratch, one set per block type over all layers and candidate slots
#define PN_MAX_GTYPES 8
    int n_gtypes;
    const pn_block_type *gtype[PN_MAX_GTYPES];
    pn_block_cfg gtype_cfg[PN_MAX_GTYPES];
    pn_tensor gscr[PN_MAX_GTYPES][PN_BLOCK_MAX_ACTS];
    // gradients (pn_model_grads_init) and the training plan (pn_train.c)
    pn_arena grads;
    pn_tensor g_embed, g_final_norm, g_lm_head;
    struct pn_train_plan *train;
} pn_model;

// The decode state of B sequences: per layer its block's state() tensors (attention: K and V caches [B, cap,
// Hkv, D]; a linear block: its recurrent state and convolution history), zero at len 0.
typedef struct pn_kvcache {
    int B, cap, len, n_layers;
    int max_T; // a sequence's tokens per call at most (pn_kvcache_init_calls): a window's ring holds them
    // Each row's length (host): equal to len while the rows move together; rows filled one at a time
    // (pn_kvcache_row) make them ragged, and then one-token steps read each row's own (len = the longest).
    int *lens, ragged;
    pn_arena arena;
    pn_tensor (*st)[PN_BLOCK_MAX_STATE]; // per layer
    pn_tensor pos;                       // len per sequence on the device, I32 [B] (pn_block_ctx.pos)
    // The decode step as a CUDA graph (pn_model_forward): captured at the second one-token step, replayed
    // after; it holds this cache's and the model's buffers, so it is made again when the model changes
    // (epoch) and freed with the cache.
    void *graph;
    const struct pn_model *graph_model;
    int graph_epoch, graph_warm, graph_off;
} pn_kvcache;

// The parameter list of a config in checkpoint order (m may be NULL: then dst is NULL). Returns the count;
// `out` must hold pn_model_nparams(cfg) entries.
int pn_model_nparams(const pn_model_config *cfg);
// Layer l's mixer as the config gives it (type and block config), without loading anything.
const pn_block_type *pn_model_layer_block(const pn_model_config *cfg, int l, pn_block_cfg *bc);
int pn_model_param_list(const pn_model_config *cfg, pn_model *m, pn_param *out);

// Load a Hugging Face folder onto a device. 0, or -1 with the error set (file and problem named).
int pn_model_load(pn_model *m, const char *dir, pn_device dev);
void pn_model_free(pn_model *m);
// Allocate activations for batches up to max_B x max_T; all_logits: logits for every position
// (else only the last position of each sequence).
int pn_model_plan(pn_model *m, int max_B, int max_T, int all_logits);
// The decode state of B sequences of up to cap tokens (KV caches, recurrent states) for the model's plan.
// A sliding window's KV cache is a ring that holds what one call reads: up to the plan's max_B x max_T
// tokens of one sequence (a single row may take them all); pn_kvcache_init_calls bounds a sequence's
// tokens per call by max_T instead (every call of that cache then gives each sequence at most max_T).
int pn_kvcache_init(pn_kvcache *c, const pn_model *m, int B, int cap);
int pn_kvcache_init_calls(pn_kvcache *c, const pn_model *m, int B, int cap, int max_T);
void pn_kvcache_free(pn_kvcache *c);
// Empty it (len 0, states zero) for new sequences of the same batch size; keeps its memory and its graph.
void pn_kvcache_reset(pn_kvcache *c);
// Continuous batching: row b emptied (its states zero, length 0) while the others keep theirs; and row b as
// a cache of one sequence (*row: views into c's memory, no graph of its own) to prefill it alone with
// pn_model_forward, after which pn_kvcache_row_done records its new length in c. One-token steps of c then
// continue every row from its own length.
void pn_kvcache_reset_row(pn_kvcache *c, int b);
void pn_kvcache_row(pn_kvcache *c, int b, pn_kvcache *row);
void pn_kvcache_row_done(pn_kvcache *c, int b, pn_kvcache *row);
// Rows b .. b+n-1 as a cache of n sequences (views, as pn_kvcache_row), for multi-token forwards of those
// rows only; the parent's lengths are not updated (pn_kvcache_rows_free releases the view).
void pn_kvcache_rows(pn_kvcache *c, int b, int n, pn_kvcache *rows);
void pn_kvcache_rows_free(pn_kvcache *rows);
// Row db of dst takes row sb of src's decode state and length (caches of model m; dst's capacity at least
// that length): many sequences continuing one prefix computed once. The rows move together again (one
// multi-token forward continues them all) once every row holds as many tokens. 0, or -1 with the error set.
int pn_kvcache_copy_row(const pn_model *m, pn_kvcache *dst, int db, const pn_kvcache *src, int sb);
size_t pn_kvcache_bytes(const pn_model_config *cfg, int B, int cap, int max_T, pn_device dev);

// Run B sequences of T new tokens (ids_host is [B, T]) at positions cache->len .. cache->len + T - 1 and
// advance the cache. Logits stay on the device in m->logits ([B*T, V] or [B, V]). Returns -1 with the
// error set on a token id outside the vocabulary or a cache overflow. One-token steps (decoding) on CUDA
// run as a CUDA graph from the second on (not with a tap or check_finite, which need the host per layer).
int pn_model_forward(pn_model *m, pn_kvcache *cache, const int32_t *ids_host, int B, int T);

// The greedy choice for each of the B sequences of the last forward (rows 0 .. B-1 of m->logits: a
// one-token step, or a forward without all_logits): the first index of the maximum, as an argmax over the
// host's copy picks it, computed on the device (the argmax op) so that only B ids come back. 0, or -1 with
// the error set.
int pn_model_greedy(pn_model *m, int B, int32_t *ids);
// A draw from each row's softmax(logits / temperature), top-k / top-p filtered, on the device (pn_op_sample:
// the same numbers on every device for the same seed and step; a new step gives new draws); temperature <= 0:
// pn_model_greedy.
int pn_model_sample(pn_model *m, int B, const pn_sample_args *a, int32_t *ids);

// One decoder layer, the only place its math is written (generation and training both call it):
//   x_mid = x + mixer(norm1(x));   out = x_mid + down(silu(gate(n2)) * up(n2)),  n2 = norm2(x_mid).
// Generation (state != NULL): the mixer continues its decode state (KV cache or recurrent state) with
// `scratch`, for ctx->B sequences of ctx->T new tokens at ctx->pos0. Training (state NULL): the mixer keeps
// its activations in blk. out NULL: stop after h (a recomputed layer's backward needs no output). Calls the
// tap with "layer_out". 0, or -1 with the error set (naming the layer).
int pn_layer_forward(const pn_model *m, int l, const pn_tensor *x, pn_tensor *out, pn_layer_bufs *b, pn_tensor *blk,
                     pn_tensor *state, pn_tensor *scratch, const pn_block_ctx *ctx);

// ---- the once-for-all supernet ----
// Adds candidate mixers to every layer: types[l] is a comma-separated list of block types ("swa=1152,jet,gdn";
// "swa=W" gives the window; NULL or "" for none) that layer l may run instead of its own (slot 0). Candidates get the published init,
// copying the tensors whose name and shape match the layer's pretrained attention (pn_block_init); a `swa`
// candidate next to an `attn` one runs the very same tensors (no copy). Their parameters are named
// model.layers.{l}.candidates.{type}.<name> in param_list (after the base model's), in one new arena;
// nothing of the base model moves, so the all-`attn` choice is the teacher over the same frozen tensors.
// Call pn_model_plan / pn_model_train_plan / pn_model_grads_init afterwards (they size for every candidate).
// 0, or -1 with the error set (an unknown type, a config its kernels cannot run, no memory).
int pn_model_add_candidates(pn_model *m, const char *const *types, double init_std, uint64_t seed);
// Switch layer l to its candidate of type `type` (no allocation: between steps, any time). 0, or -1 naming
// the layer and the types it has. Generation state (pn_kvcache) must be made after choosing.
int pn_model_set_mixer(pn_model *m, int l, const char *type);
const char *pn_model_mixer(const pn_model *m, int l);
// Writes the model as it runs now (each layer's chosen mixer) as a Hugging Face folder: config.json (a
// Jet-Nemotron hybrid with layer_types, or the base family when every layer is attention), model.safetensors
// (the chosen mixers under Jet-Nemotron's self_attn names; F32 from the CPU, BF16 from CUDA) and the source
// folder's tokenizer files. Written atomically into a new folder. 0, or -1 with the error set.
int pn_model_export(const pn_model *m, const char *dir);
// Keeps shared candidates (swa on attn's tensors) in step after their owner's tensors changed (gradients).
void pn_model_sync_slots(pn_model *m);

// ---- training (src/pn_train.c) ----
// Gradient buffers (F32, zeroed) for the parameters whose trainable[i] is non-zero (indices into
// param_list); every other parameter is frozen: no buffer, no gradient computed, but gradients still flow
// through it to earlier layers. trainable NULL = all. Replaces earlier buffers. 0, or -1 with the error set.
int pn_model_grads_init(pn_model *m, const uint8_t *trainable);
// Zero the gradient buffers (they accumulate across backward calls).
void pn_model_grads_zero(pn_model *m);

// Training options. recompute[l] != 0: layer l keeps only its input for the backward and recomputes its
// activations there (all such layers share one set of buffers); otherwise it keeps all of them.
typedef struct pn_train_opts {
    const uint8_t *recompute; // n_layers flags, or NULL = keep everything
    int no_logits;            // stop at the final norm's output: no [N, V] logits (the loss fuses the head)
} pn_train_opts;
// Plan the training memory for batches of up to max_B x max_T tokens (packed batches: max_B = 1): per-layer
// inputs, kept activations, the shared recompute buffers, backward scratch and all-position logits. Reports
// the bytes planned (logged). Plan after pn_model_grads_init: a layer whose MLP has no gradient buffer then
// keeps no activations for its weights' gradients (a backward that finds them trainable later refuses). 0,
// or -1 with the error set (out of memory names the device and size).
int pn_model_train_plan(pn_model *m, int max_B, int max_T, const pn_train_opts *o);
size_t pn_model_train_bytes(const pn_model *m);
// Forward for training: logits for every position into m->train's logits [B T, V] (pn_model_train_logits).
// ids_host [B, T]. cu_seqlens_host: NULL, or (B = 1) n_seqs + 1 offsets packing n_seqs documents into T
// tokens (each starts at RoPE position 0; no attention or state crosses a boundary). 0, or -1 with the
// error set (bad ids or offsets, a block refusing its input, NaN/Inf under check_finite naming the layer).
int pn_model_forward_train(pn_model *m, const int32_t *ids_host, int B, int T, const int32_t *cu_seqlens_host,
                           int n_seqs);
pn_tensor pn_model_train_logits(const pn_model *m); // planned unless no_logits
// The final hidden state (after the final norm: the LM head's input) [B T, hidden], and layer l's output
// (l = -1: the embeddings) of the last training forward, on the device.
pn_tensor pn_model_train_hidden(const pn_model *m);
pn_tensor pn_model_train_layer_out(const pn_model *m, int l);
// Backward of the last pn_model_forward_train from dlogits [B T, V] (activation dtype, on the device):
// accumulates the trainable parameters' gradients. 0, or -1 with the error set.
int pn_model_backward(pn_model *m, const pn_tensor *dlogits);
// The same from the gradient of the final hidden state [B T, hidden] (the loss module owns the LM head).
int pn_model_backward_hidden(pn_model *m, const pn_tensor *dhidden);
// Per-layer entry points (local, layer-wise distillation: each layer takes the teacher's input to it and is
// trained to reproduce the teacher's output). After a pn_model_forward_train has set the batch: run layer l
// from x_in [B T, hidden] (its output: pn_model_train_layer_out(m, l)); and its backward alone from dout =
// dL/d(output), accumulating its parameters' gradients, dx (NULL: not needed) receiving dL/d(x_in).
int pn_model_layer_forward_train(pn_model *m, int l, const pn_tensor *x_in);
int pn_model_layer_backward(pn_model *m, int l, const pn_tensor *dout, pn_tensor *dx);

#endif
