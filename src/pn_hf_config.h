// pn_hf_config: a Hugging Face config.json for the Qwen2 family (Qwen2/Qwen2.5, Qwen3, Llama) read into
// one flat struct. Reads both the classic keys real checkpoints ship (top-level rope_theta, rope_scaling,
// use_sliding_window/max_window_layers) and transformers 5's (rope_parameters, layer_types).
#ifndef PN_HF_CONFIG_H
#define PN_HF_CONFIG_H

#include <stdint.h>

#include "pn_block_cfg.h"

// Jet-Nemotron hybrids (model_type "jet_nemotron") are Qwen2 models whose layers each name a token mixer.
typedef enum { PN_ARCH_QWEN2 = 0, PN_ARCH_QWEN3, PN_ARCH_LLAMA, PN_ARCH_JET_NEMOTRON } pn_arch;
typedef enum { PN_ROPE_DEFAULT = 0, PN_ROPE_LINEAR, PN_ROPE_LLAMA3 } pn_rope_type;

#define PN_MAX_LAYERS 512

typedef struct pn_model_config {
    pn_arch arch;
    int hidden, intermediate, n_layers, n_heads, n_kv_heads, head_dim, vocab;
    int max_pos;
    float rms_eps;
    int tie_embeddings;
    int qkv_bias; // q/k/v projections have a bias (Qwen2; Llama/Qwen3 with attention_bias)
    int o_bias;   // o_proj has a bias (Llama/Qwen3 attention_bias)
    int qk_norm;  // per-head RMSNorm on q and k (Qwen3)
    // RoPE
    double rope_theta;
    pn_rope_type rope_type;
    double rope_factor, rope_low_freq, rope_high_freq; // linear / llama3 scaling
    int rope_orig_max_pos;
    // window[l] = 0 for full attention, else the sliding window width of layer l
    int window[PN_MAX_LAYERS];
    int bos_id, eos_id; // -1 when absent
    // The token mixer of each layer under Jet-Nemotron's names: "attn", "swa", "jet", and this project's "gdn" and
    // "deltanet" (plain models: attn/swa).
    char mixer[PN_MAX_LAYERS][12];
    // The configs efficient_attention_config gives (Jet-Nemotron's `jet`, `swa`; this project's `gdn` for
    // gdn/deltanet layers), one per block type the layers use, each read by its block (src/blocks/<type>.c)
    // and found by pn_config_mixer.
#define PN_MAX_MIXER_CFGS 8
    int n_mixer_cfgs;
    pn_block_cfg mixer_cfg[PN_MAX_MIXER_CFGS];
    // config.json's torch_dtype ("bfloat16", "float32", ...), written back on export; "bfloat16" when absent.
    char torch_dtype[16];
} pn_model_config;

// The config of block type `type` that efficient_attention_config gave (or was set), NULL when none.
const pn_block_cfg *pn_config_mixer(const pn_model_config *c, const char *type);
// Sets (adds or replaces) the config of bc->type.
void pn_config_set_mixer(pn_model_config *c, const pn_block_cfg *bc);

// Parse `path` (a config.json). Returns 0, or -1 with an error that names the file and the key.
int pn_hf_config_load(pn_model_config *c, const char *path);
// Write a config.json that transformers and pn_hf_config_load both read (classic key set).
int pn_hf_config_save(const pn_model_config *c, const char *path);
const char *pn_arch_name(pn_arch a);
// Parameter count (embedding counted once when tied).
int64_t pn_hf_config_params(const pn_model_config *c);
// inv_freq[i], i < head_dim/2, with the config's rope scaling applied (computed as HF does).
void pn_rope_inv_freq(const pn_model_config *c, float *inv_freq);

#endif
