// pn_block: the attention-layer types a PostNAS supernet chooses between, under Jet-Nemotron's
// `layer_types` names: `attn` (full attention), `swa` (sliding window), `jet` (JetBlock), `gdn` (Gated
// DeltaNet) and `deltanet` (GDN without decay).
//
// One interface per type (src/blocks/<type>.c, one registry line in src/blocks/registry.c). What a type
// describes so far is everything that needs no compute: validation of its config (an impossible config is
// refused at config time, naming the key), its parameters under the names Jet-Nemotron's Hugging Face
// export uses, its decode state (KV cache or recurrent state) for a context length — the quantity the
// hardware-aware search holds fixed — and its FLOPs per token. Forward, backward and the decode step are
// the ops in kernels/ (attention, gdn, conv1d, gated RMSNorm); the block-level wiring of them lands next.
#ifndef PN_BLOCK_H
#define PN_BLOCK_H

#include <stddef.h>
#include <stdint.h>

#include "pn_model.h"

typedef struct pn_block_cfg {
    char type[16]; // attn, swa, jet, gdn, deltanet
    // from the base model
    int hidden, n_heads, n_kv_heads, head_dim, qkv_bias, qk_norm;
    // swa
    int window;
    // linear blocks (Jet-Nemotron's efficient_attention_config.jet / fla's GatedDeltaNet)
    int lin_heads, lin_head_k; // heads and key dim per head (d_k)
    double expand_v;          // d_v = int(d_k * expand_v) per head, as fla computes it
    int conv_size;            // short / dynamic convolution width
    int gen_reduction;        // JetBlock kernel generator: hidden -> value_dim / gen_reduction
    float norm_eps;
} pn_block_cfg;

typedef struct pn_block_type {
    const char *name;
    // 0, or -1 with an error naming the key (`what` prefixes it, e.g. "configs/x.yaml: layer 3").
    int (*check)(const pn_block_cfg *c, const char *what);
    // The block's parameters for layer `layer`, names under model.layers.{layer}.self_attn.; returns the
    // count (out may be NULL to count).
    int (*params)(const pn_block_cfg *c, int layer, pn_param *out);
    // Decode state for one sequence of ctx_len tokens (KV cache in kv_bytes_per_elem, recurrent state fp32).
    size_t (*state_bytes)(const pn_block_cfg *c, int64_t ctx_len, int kv_bytes_per_elem);
    // Forward FLOPs of one token at position pos (multiply-add = 2).
    double (*flops)(const pn_block_cfg *c, int64_t pos);
} pn_block_type;

const pn_block_type *pn_block_find(const char *name); // NULL (with the error set) for an unknown name
// The default config of each type derived from a base model (the paper's 2B JetBlock shape scaled to it:
// d_k = head_dim * 3/4 (96 for 128), expand_v 2.6667 (d_v 256), conv 4, reduction 8, eps 1e-5; window 1152),
// or, for a Jet-Nemotron config, the shape and window its efficient_attention_config gives.
pn_block_cfg pn_block_default(const pn_model_config *base, const char *type);
int64_t pn_block_param_count(const pn_block_type *t, const pn_block_cfg *c);

// Shared by the block files: append one parameter.
void pn_block_add_param(pn_param *out, int *n, int layer, const char *suffix, pn_param_kind kind, int ndim, int64_t d0,
                        int64_t d1, int64_t d2);

#endif
