// pn_model: the Qwen2-family decoder (Qwen2/Qwen2.5, Qwen3, Llama) on either backend.
//
// Forward is written once against kernels/ops.h; the model never branches on the device. Memory is
// planned up front: parameters in one arena, activations for at most max_B x max_T tokens in another,
// and the KV cache in its own (pn_kvcache), so prefill and decode allocate nothing.
#ifndef PN_MODEL_H
#define PN_MODEL_H

#include "../kernels/ops.h"
#include "pn_checkpoint.h"
#include "pn_hf_config.h"

typedef struct pn_layer {
    pn_tensor in_norm, post_norm;
    pn_tensor q_w, k_w, v_w, o_w, q_b, k_b, v_b, o_b; // biases have data == NULL when absent
    pn_tensor q_norm, k_norm;                         // Qwen3 only
    pn_tensor gate_w, up_w, down_w;
} pn_layer;

// One parameter as Hugging Face names it, with the tensor it loads into. The kind says how a fresh one is
// initialized: WEIGHT N(0, std), BIAS, NORM ones, EMBED, and the linear blocks' own: A_LOG (log U(0, 16)),
// DT_BIAS (softplus^-1 of a log-uniform dt), ZERO (JetBlock's kernel-generator weights), GEN_BIAS
// (JetBlock's w2 bias, N(0, 0.02)) and CONV (depthwise conv kernels, [C, 1, W] as nn.Conv1d stores them).
typedef enum {
    PN_PARAM_WEIGHT, PN_PARAM_BIAS, PN_PARAM_NORM, PN_PARAM_EMBED, PN_PARAM_A_LOG, PN_PARAM_DT_BIAS, PN_PARAM_ZERO,
    PN_PARAM_GEN_BIAS, PN_PARAM_CONV
} pn_param_kind;
typedef struct pn_param {
    char name[96];
    pn_param_kind kind;
    int ndim;
    int64_t shape[3];
    pn_tensor *dst;
} pn_param;
int64_t pn_param_numel(const pn_param *p);

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
} pn_model;

typedef struct pn_kvcache {
    int B, cap, len;
    pn_arena arena;
    pn_tensor *k, *v; // per layer [B, cap, Hkv, D]
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

#endif
