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

typedef struct pn_layer {
    // The token mixer: a block type (src/blocks/) with its config and parameters in the type's params()
    // order; gbp are their gradients (data NULL = frozen or no gradients planned).
    const pn_block_type *bt;
    pn_block_cfg bc;
    int nbp;
    pn_tensor bp[PN_BLOCK_MAX_PARAMS], gbp[PN_BLOCK_MAX_PARAMS];
    pn_tensor in_norm, post_norm, gate_w, up_w, down_w;
    pn_tensor g_in_norm, g_post_norm, g_gate_w, g_up_w, g_down_w;
    // attention layers: named views of bp for the inference forward (biases have data == NULL when absent)
    pn_tensor q_w, k_w, v_w, o_w, q_b, k_b, v_b, o_b;
    pn_tensor q_norm, k_norm; // Qwen3 only
} pn_layer;



typedef struct pn_model {
    pn_model_config cfg;
    pn_device device;
    pn_dtype dtype;
    pn_arena params;
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
    pn_tensor ids, x, xn, tmp, q, k, v, att, gate, up, logits;
    // generation scratch of the linear blocks, one set per block type (layer l uses iscr[l])
    pn_tensor (*iscr_pool)[PN_BLOCK_MAX_ACTS];
    pn_tensor **iscr;
    // gradients (pn_model_grads_init) and the training plan (pn_train.c)
    pn_arena grads;
    pn_tensor g_embed, g_final_norm, g_lm_head;
    struct pn_train_plan *train;
} pn_model;

// The decode state of B sequences: per attention layer its KV cache, per linear-block layer its recurrent
// state and convolution history (the block's state() tensors, zero at len 0).
typedef struct pn_kvcache {
    int B, cap, len;
    pn_arena arena;
    pn_tensor *k, *v;                     // per layer [B, cap, Hkv, D] (attention layers)
    pn_tensor (*st)[PN_BLOCK_MAX_STATE]; // per layer (linear blocks)
} pn_kvcache;

// The parameter list of a config in checkpoint order (m may be NULL: then dst is NULL). Returns the count;
// `out` must hold pn_model_nparams(cfg) entries.
int pn_model_nparams(const pn_model_config *cfg);
int pn_model_param_list(const pn_model_config *cfg, pn_model *m, pn_param *out);

// Load a Hugging Face folder onto a device. 0, or -1 with the error set (file and problem named).
int pn_model_load(pn_model *m, const char *dir, pn_device dev);
void pn_model_free(pn_model *m);
// Allocate activations for batches up to max_B x max_T; all_logits: logits for every position
// (else only the last position of each sequence).
int pn_model_plan(pn_model *m, int max_B, int max_T, int all_logits);
int pn_kvcache_init(pn_kvcache *c, const pn_model *m, int B, int cap);
void pn_kvcache_free(pn_kvcache *c);
size_t pn_kvcache_bytes(const pn_model_config *cfg, int B, int cap, pn_device dev);

// Run B sequences of T new tokens (ids_host is [B, T]) at positions cache->len .. cache->len + T - 1 and
// advance the cache. Logits stay on the device in m->logits ([B*T, V] or [B, V]). Returns -1 with the
// error set on a token id outside the vocabulary or a cache overflow.
int pn_model_forward(pn_model *m, pn_kvcache *cache, const int32_t *ids_host, int B, int T);

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
} pn_train_opts;
// Plan the training memory for batches of up to max_B x max_T tokens (packed batches: max_B = 1): per-layer
// inputs, kept activations, the shared recompute buffers, backward scratch and all-position logits. Reports
// the bytes planned (logged). 0, or -1 with the error set (out of memory names the device and size).
int pn_model_train_plan(pn_model *m, int max_B, int max_T, const pn_train_opts *o);
size_t pn_model_train_bytes(const pn_model *m);
// Forward for training: logits for every position into m->train's logits [B T, V] (pn_model_train_logits).
// ids_host [B, T]. cu_seqlens_host: NULL, or (B = 1) n_seqs + 1 offsets packing n_seqs documents into T
// tokens (each starts at RoPE position 0; no attention or state crosses a boundary). 0, or -1 with the
// error set (bad ids or offsets, a block refusing its input, NaN/Inf under check_finite naming the layer).
int pn_model_forward_train(pn_model *m, const int32_t *ids_host, int B, int T, const int32_t *cu_seqlens_host,
                           int n_seqs);
pn_tensor pn_model_train_logits(const pn_model *m);
// Backward of the last pn_model_forward_train from dlogits [B T, V] (activation dtype, on the device):
// accumulates the trainable parameters' gradients. 0, or -1 with the error set.
int pn_model_backward(pn_model *m, const pn_tensor *dlogits);

#endif
