// pn_block_cfg: one block's configuration (src/pn_block.h has the types). It lives in its own header
// because the model config holds the ones config.json's efficient_attention_config gives.
#ifndef PN_BLOCK_CFG_H
#define PN_BLOCK_CFG_H

typedef struct pn_block_cfg {
    char type[16]; // attn, swa, jet, gdn, deltanet
    // from the base model
    int hidden, n_heads, n_kv_heads, head_dim, qkv_bias, o_bias, qk_norm;
    // swa
    int window;
    // linear blocks (Jet-Nemotron's efficient_attention_config.jet / fla's GatedDeltaNet)
    int lin_heads, lin_head_k; // heads and key dim per head (d_k)
    double expand_v;          // d_v = int(d_k * expand_v) per head, as fla computes it
    int conv_size;            // short / dynamic convolution width
    int gen_reduction;        // JetBlock kernel generator: hidden -> value_dim / gen_reduction
    float norm_eps;
} pn_block_cfg;

#endif
