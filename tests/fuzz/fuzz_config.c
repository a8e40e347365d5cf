// fuzz_config: config.json of every family (Qwen2, Qwen3, Llama, Jet-Nemotron hybrids) through
// pn_hf_config_load; an accepted config then goes through what model loading does with it before any
// tensor is read: every layer's block config and check, the parameter list, the KV cache size and RoPE.
#include "../../src/pn_block.h"
#include "../../src/pn_hf_config.h"
#include "../../src/pn_model.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_write("config.json", data, size);
    char *path = fz_path("config.json");
    pn_model_config *c = malloc(sizeof *c); // large (per-layer arrays): not on the stack
    if (pn_hf_config_load(c, path) == 0) {
        int ok = 1;
        for (int l = 0; l < c->n_layers && ok; l++) {
            const char *name = c->mixer[l][0] ? c->mixer[l] : c->window[l] ? "swa" : "attn";
            const pn_block_type *bt = pn_block_find(name);
            if (!bt) abort(); // pn_hf_config only produces registered names
            pn_block_cfg bc = pn_block_default(c, name);
            if (c->window[l]) bc.window = c->window[l];
            ok = bt->check(&bc, "layer") == 0;
        }
        if (ok) {
            const int n = pn_model_nparams(c);
            pn_param *ps = calloc((size_t)n, sizeof *ps);
            if (pn_model_param_list(c, NULL, ps) != n) abort();
            free(ps);
            pn_hf_config_params(c);
            pn_kvcache_bytes(c, 1, 16, 4, PN_CPU);
            float *inv = malloc(sizeof(float) * (size_t)(c->head_dim / 2 + 1));
            pn_rope_inv_freq(c, inv);
            free(inv);
        }
    }
    free(c);
    free(path);
    pn_clear_error();
    return 0;
}
