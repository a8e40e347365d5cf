// pn_hf_config: config.json → pn_model_config, with every inconsistency reported by key name.
#include "pn_hf_config.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pn_common.h"
#include "pn_block.h"
#include "pn_json.h"

const char *pn_arch_name(pn_arch a) {
    switch (a) {
    case PN_ARCH_QWEN2: return "qwen2";
    case PN_ARCH_QWEN3: return "qwen3";
    case PN_ARCH_LLAMA: return "llama";
    case PN_ARCH_JET_NEMOTRON: return "jet_nemotron";
    }
    return "?";
}

static int parse_rope(const char *path, json_t *root, pn_model_config *c) {
    c->rope_theta = c->arch == PN_ARCH_JET_NEMOTRON ? 1e6 : 10000.0; // JetNemotronConfig's default is 1e6
    c->rope_type = PN_ROPE_DEFAULT;
    if (pn_json_num(path, root, "rope_theta", &c->rope_theta)) return -1;
    // transformers 5 writes rope_parameters (with rope_theta inside); older files write rope_scaling.
    json_t *rp = json_object_get(root, "rope_parameters");
    const char *rp_key = "rope_parameters";
    if (!rp || json_is_null(rp)) {
        rp = json_object_get(root, "rope_scaling");
        rp_key = "rope_scaling";
    }
    if (!rp || json_is_null(rp)) return 0;
    if (!json_is_object(rp)) return pn_errorf("%s: \"%s\" must be an object or null", path, rp_key);
    if (pn_json_num(path, rp, "rope_theta", &c->rope_theta)) return -1;
    char rp_dot[24];
    snprintf(rp_dot, sizeof rp_dot, "%s.", rp_key);
    const char *type = "default";
    if (pn_json_string(path, rp, json_object_get(rp, "rope_type") ? "rope_type" : "type", &type)) return -1;
    c->rope_factor = 1.0;
    if (pn_json_num(path, rp, "factor", &c->rope_factor)) return -1;
    if (!strcmp(type, "default")) {
        c->rope_type = PN_ROPE_DEFAULT;
    } else if (!strcmp(type, "linear")) {
        c->rope_type = PN_ROPE_LINEAR;
    } else if (!strcmp(type, "llama3")) {
        c->rope_type = PN_ROPE_LLAMA3;
        c->rope_low_freq = 1.0;
        c->rope_high_freq = 4.0;
        c->rope_orig_max_pos = 8192;
        if (pn_json_num(path, rp, "low_freq_factor", &c->rope_low_freq) ||
            pn_json_num(path, rp, "high_freq_factor", &c->rope_high_freq) ||
            pn_json_int(path, rp, "original_max_position_embeddings", &c->rope_orig_max_pos, 0, 1))
            return -1;
        if (pn_json_pos_float(path, rp_dot, "low_freq_factor", c->rope_low_freq, 1e6) ||
            pn_json_pos_float(path, rp_dot, "high_freq_factor", c->rope_high_freq, 1e6))
            return -1;
        if (c->rope_high_freq <= c->rope_low_freq)
            return pn_errorf("%s: %s.high_freq_factor must exceed low_freq_factor", path, rp_key);
    } else {
        return pn_errorf("%s: unknown rope type \"%s\" in %s (supported: default, linear, llama3)", path, type, rp_key);
    }
    if (pn_json_pos_float(path, rp_dot, "factor", c->rope_factor, 1e6)) return -1;
    return 0;
}

const pn_block_cfg *pn_config_mixer(const pn_model_config *c, const char *type) {
    for (int i = 0; i < c->n_mixer_cfgs; i++)
        if (!strcmp(c->mixer_cfg[i].type, type)) return &c->mixer_cfg[i];
    return NULL;
}

void pn_config_set_mixer(pn_model_config *c, const pn_block_cfg *bc) {
    for (int i = 0; i < c->n_mixer_cfgs; i++)
        if (!strcmp(c->mixer_cfg[i].type, bc->type)) {
            c->mixer_cfg[i] = *bc;
            return;
        }
    PN_ASSERT(c->n_mixer_cfgs < PN_MAX_MIXER_CFGS);
    c->mixer_cfg[c->n_mixer_cfgs++] = *bc;
}

// efficient_attention_config of a Jet-Nemotron config, read as NVIDIA's code reads it: an entry matters only
// when a layer uses it (NVIDIA never looks at the others, malformed or not), and each is read by its block
// (src/blocks/<type>.c: parse), which knows its keys and defaults.
static int parse_efficient(const char *path, json_t *root, pn_model_config *c) {
    json_t *e = json_object_get(root, "efficient_attention_config");
    for (int l = 0; l < c->n_layers; l++) {
        const pn_block_type *bt = pn_block_find(c->mixer[l]);
        if (!bt->section || pn_config_mixer(c, bt->name)) continue;
        if (!json_is_object(e))
            return pn_errorf("%s: layer_types use %s but \"efficient_attention_config\" is %s", path, bt->name,
                             e && !json_is_null(e) ? "not an object" : "missing");
        char in[64];
        snprintf(in, sizeof in, "efficient_attention_config.%s", bt->section);
        pn_block_cfg bc = pn_block_default(c, bt->name);
        if (bt->parse(&bc, json_object_get(e, bt->section), path, in)) return -1;
        pn_config_set_mixer(c, &bc);
    }
    return 0;
}

// Each layer's token mixer (c->mixer) and attention window (c->window): from layer_types (transformers 5's
// names, or Jet-Nemotron's and the registered block types'), else the classic Qwen2 rule (use_sliding_window +
// max_window_layers).
static int parse_windows(const char *path, json_t *root, pn_model_config *c) {
    const int jet_arch = c->arch == PN_ARCH_JET_NEMOTRON;
    int use_sw = 0, sw = 0, max_window_layers = c->n_layers;
    if (pn_json_bool(path, root, "use_sliding_window", &use_sw) || pn_json_int(path, root, "max_window_layers", &max_window_layers, 0, 0))
        return -1;
    json_t *jsw = json_object_get(root, "sliding_window");
    if (!jet_arch && jsw && !json_is_null(jsw)) {
        if (!json_is_integer(jsw) || json_integer_value(jsw) <= 0 || json_integer_value(jsw) > (1 << 30))
            return pn_errorf("%s: \"sliding_window\" must be a positive integer or null", path);
        sw = (int)json_integer_value(jsw);
    }
    for (int l = 0; l < c->n_layers; l++) snprintf(c->mixer[l], sizeof c->mixer[l], "attn");
    json_t *lt = json_object_get(root, "layer_types");
    if (!lt || json_is_null(lt)) {
        // Classic Qwen2 rule: with use_sliding_window, layers from max_window_layers on use the window.
        if (!jet_arch && c->arch != PN_ARCH_LLAMA && use_sw && sw)
            for (int l = max_window_layers; l < c->n_layers; l++) {
                c->window[l] = sw;
                snprintf(c->mixer[l], sizeof c->mixer[l], "swa");
            }
        return 0;
    }
    const int n_lt = json_is_array(lt) ? (int)json_array_size(lt) : -1;
    // NVIDIA's model reads layer_types[0 .. num_hidden_layers) and ignores the rest; transformers checks the length.
    if (n_lt < c->n_layers || (!jet_arch && n_lt != c->n_layers))
        return pn_errorf("%s: \"layer_types\" must be a list of %d layer types (num_hidden_layers)", path, c->n_layers);
    int any_swa = 0;
    for (int l = 0; l < c->n_layers; l++) {
        const char *s = json_string_value(json_array_get(lt, (size_t)l));
        if (!s) return pn_errorf("%s: layer_types[%d] is not a string", path, l);
        // transformers' names for attention, Jet-Nemotron's (and this project's) block types by name
        const char *name = !strcmp(s, "full_attention") ? "attn" : !strcmp(s, "sliding_attention") ? "swa" : s;
        const int attention = !strcmp(name, "attn") || !strcmp(name, "swa");
        if ((!attention && !jet_arch) || strlen(name) >= sizeof c->mixer[l] || !pn_block_find(name))
            return pn_errorf("%s: layer_types[%d] = \"%s\" is not a layer type this model family has", path, l, s);
        snprintf(c->mixer[l], sizeof c->mixer[l], "%s", name);
        any_swa |= !strcmp(name, "swa");
    }
    if (jet_arch && parse_efficient(path, root, c)) return -1;
    const pn_block_cfg *swa = pn_config_mixer(c, "swa");
    if (swa) sw = swa->window;
    if (any_swa && !sw) return pn_errorf("%s: layer_types has sliding-window layers but no window size is set", path);
    for (int l = 0; l < c->n_layers; l++) c->window[l] = !strcmp(c->mixer[l], "swa") ? sw : 0;
    return 0;
}

int pn_hf_config_load(pn_model_config *c, const char *path) {
    memset(c, 0, sizeof *c);
    json_t *root = pn_json_load(path);
    if (!root) return -1;
    int rc = -1;
    if (!json_is_object(root)) {
        pn_errorf("%s: not a JSON object", path);
        goto done;
    }
    const char *mt = json_string_value(json_object_get(root, "model_type"));
    if (!mt) {
        pn_errorf("%s: missing \"model_type\"", path);
        goto done;
    }
    if (!strcmp(mt, "qwen2")) c->arch = PN_ARCH_QWEN2;
    else if (!strcmp(mt, "qwen3")) c->arch = PN_ARCH_QWEN3;
    else if (!strcmp(mt, "llama")) c->arch = PN_ARCH_LLAMA;
    else if (!strcmp(mt, "jet_nemotron")) c->arch = PN_ARCH_JET_NEMOTRON;
    else {
        pn_errorf("%s: unknown architecture: model_type \"%s\" (supported: qwen2, qwen3, llama, jet_nemotron)", path, mt);
        goto done;
    }
    const char *act = NULL;
    if (pn_json_string(path, root, "hidden_act", &act)) goto done;
    if (act && strcmp(act, "silu") != 0) {
        pn_errorf("%s: \"hidden_act\" = \"%s\" is not supported (only silu)", path, act);
        goto done;
    }
    // Required keys, except for Jet-Nemotron: NVIDIA's JetNemotronConfig gives every key a default (its
    // __init__'s, which are Qwen2.5-1.5B's shape; the class docstring lists older ones), and checkpoints its
    // save_pretrained writes omit keys equal to a default (tie_word_embeddings), so those apply here too.
    const int jet = c->arch == PN_ARCH_JET_NEMOTRON, req = !jet;
    c->max_pos = 32768;
    c->bos_id = c->eos_id = -1;
    if (jet) c->hidden = 1536, c->intermediate = 8960, c->n_layers = 28, c->n_heads = 12, c->vocab = 151936;
    if (pn_json_int(path, root, "hidden_size", &c->hidden, req, 1) ||
        pn_json_int(path, root, "intermediate_size", &c->intermediate, req, 1) ||
        pn_json_int(path, root, "num_hidden_layers", &c->n_layers, req, 1) ||
        pn_json_int(path, root, "num_attention_heads", &c->n_heads, req, 1) ||
        pn_json_int(path, root, "vocab_size", &c->vocab, req, 1) ||
        pn_json_int(path, root, "max_position_embeddings", &c->max_pos, 0, 1) ||
        pn_json_token_id(path, root, "bos_token_id", c->vocab, &c->bos_id) ||
        pn_json_token_id(path, root, "eos_token_id", c->vocab, &c->eos_id))
        goto done;
    // num_key_value_heads: absent means all heads (transformers' Qwen2/Llama), except that JetNemotronConfig's
    // default is 2 and only an explicit null means all heads there.
    json_t *kvh = json_object_get(root, "num_key_value_heads");
    c->n_kv_heads = jet && !kvh ? 2 : c->n_heads;
    // head_dim: hidden // heads (floor, as HF) when absent.
    c->head_dim = c->hidden / c->n_heads;
    if (pn_json_int(path, root, "num_key_value_heads", &c->n_kv_heads, 0, 1) ||
        pn_json_int(path, root, "head_dim", &c->head_dim, 0, 2))
        goto done;
    if (c->n_layers > PN_MAX_LAYERS) {
        pn_errorf("%s: \"num_hidden_layers\" = %d exceeds the supported %d", path, c->n_layers, PN_MAX_LAYERS);
        goto done;
    }
    if (c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads) {
        pn_errorf("%s: \"num_attention_heads\" (%d) is not a multiple of \"num_key_value_heads\" (%d)%s", path,
                  c->n_heads, c->n_kv_heads, jet && !kvh ? " (JetNemotronConfig's default when the key is absent)" : "");
        goto done;
    }
    if (!jet && !json_object_get(root, "head_dim") && c->hidden % c->n_heads) {
        pn_errorf("%s: \"hidden_size\" (%d) is not a multiple of \"num_attention_heads\" (%d)", path, c->hidden, c->n_heads);
        goto done;
    }
    if (c->head_dim < 2 || c->head_dim % 2 || c->head_dim > 512) {
        pn_errorf("%s: \"head_dim\" = %d must be even, 2..512", path, c->head_dim);
        goto done;
    }
    double eps = 1e-6;
    if (pn_json_num(path, root, "rms_norm_eps", &eps)) goto done;
    if (!(eps >= 0 && eps <= 1)) {
        pn_errorf("%s: \"rms_norm_eps\" = %g must be in [0, 1]", path, eps);
        goto done;
    }
    c->rms_eps = (float)eps;
    c->tie_embeddings = jet; // JetNemotronConfig: true; transformers' Qwen2/Qwen3/Llama configs: false
    if (pn_json_bool(path, root, "tie_word_embeddings", &c->tie_embeddings)) goto done;
    int attention_bias = 0, mlp_bias = 0;
    if (pn_json_bool(path, root, "attention_bias", &attention_bias) || pn_json_bool(path, root, "mlp_bias", &mlp_bias)) goto done;
    if (mlp_bias) {
        pn_errorf("%s: \"mlp_bias\": true is not supported", path);
        goto done;
    }
    const int qwen2_like = c->arch == PN_ARCH_QWEN2 || jet;
    c->qkv_bias = qwen2_like ? 1 : attention_bias;
    c->o_bias = qwen2_like ? 0 : attention_bias;
    c->qk_norm = c->arch == PN_ARCH_QWEN3;
    if (parse_rope(path, root, c) || parse_windows(path, root, c)) goto done;
    if (pn_json_pos_float(path, "", "rope_theta", c->rope_theta, 1e12)) goto done;
    snprintf(c->torch_dtype, sizeof c->torch_dtype, "bfloat16");
    const char *dt = NULL;
    // transformers 5 writes "dtype"; older versions "torch_dtype". Kept to be written back on export.
    if (pn_json_string(path, root, json_object_get(root, "dtype") ? "dtype" : "torch_dtype", &dt)) goto done;
    if (dt) {
        static const char *known[] = {"bfloat16", "float16", "float32", "float64", "auto", NULL};
        int k = 0;
        while (known[k] && strcmp(known[k], dt)) k++;
        if (!known[k]) {
            pn_errorf("%s: \"torch_dtype\" = \"%s\" is not bfloat16, float16, float32, float64 or auto", path, dt);
            goto done;
        }
        snprintf(c->torch_dtype, sizeof c->torch_dtype, "%s", dt);
    }
    rc = 0;
done:
    json_decref(root);
    return rc;
}

int pn_hf_config_save(const pn_model_config *c, const char *path) {
    static const char *archs[] = {"Qwen2ForCausalLM", "Qwen3ForCausalLM", "LlamaForCausalLM", "JetNemotronForCausalLM"};
    json_t *r = json_object();
    json_object_set_new(r, "architectures", json_pack("[s]", archs[c->arch]));
    json_object_set_new(r, "model_type", json_string(pn_arch_name(c->arch)));
    json_object_set_new(r, "hidden_size", json_integer(c->hidden));
    json_object_set_new(r, "intermediate_size", json_integer(c->intermediate));
    json_object_set_new(r, "num_hidden_layers", json_integer(c->n_layers));
    json_object_set_new(r, "num_attention_heads", json_integer(c->n_heads));
    json_object_set_new(r, "num_key_value_heads", json_integer(c->n_kv_heads));
    json_object_set_new(r, "head_dim", json_integer(c->head_dim));
    json_object_set_new(r, "vocab_size", json_integer(c->vocab));
    json_object_set_new(r, "max_position_embeddings", json_integer(c->max_pos));
    json_object_set_new(r, "rms_norm_eps", pn_json_float(c->rms_eps));
    json_object_set_new(r, "rope_theta", json_real(c->rope_theta));
    json_object_set_new(r, "hidden_act", json_string("silu"));
    json_object_set_new(r, "tie_word_embeddings", json_boolean(c->tie_embeddings));
    if (c->arch != PN_ARCH_QWEN2 && c->arch != PN_ARCH_JET_NEMOTRON)
        json_object_set_new(r, "attention_bias", json_boolean(c->qkv_bias));
    if (c->bos_id >= 0) json_object_set_new(r, "bos_token_id", json_integer(c->bos_id));
    if (c->eos_id >= 0) json_object_set_new(r, "eos_token_id", json_integer(c->eos_id));
    json_object_set_new(r, "torch_dtype", json_string(c->torch_dtype[0] ? c->torch_dtype : "bfloat16"));
    if (c->rope_type == PN_ROPE_LLAMA3) {
        json_object_set_new(r, "rope_scaling",
                            json_pack("{s:s,s:f,s:f,s:f,s:i}", "rope_type", "llama3", "factor", c->rope_factor,
                                      "low_freq_factor", c->rope_low_freq, "high_freq_factor", c->rope_high_freq,
                                      "original_max_position_embeddings", c->rope_orig_max_pos));
    } else if (c->rope_type == PN_ROPE_LINEAR) {
        json_object_set_new(r, "rope_scaling", json_pack("{s:s,s:f}", "rope_type", "linear", "factor", c->rope_factor));
    } else {
        json_object_set_new(r, "rope_scaling", json_null());
    }
    int sw = 0;
    for (int l = 0; l < c->n_layers; l++)
        if (c->window[l]) sw = c->window[l];
    if (c->arch == PN_ARCH_JET_NEMOTRON) { // Jet-Nemotron's names: layer_types + efficient_attention_config
        json_t *lt = json_array();
        for (int l = 0; l < c->n_layers; l++) json_array_append_new(lt, json_string(c->mixer[l]));
        json_object_set_new(r, "layer_types", lt);
        // Only the entries a layer uses (NVIDIA's code ignores the others; in an export they are noise), each
        // written by its block.
        json_t *eac = json_object();
        for (int l = 0; l < c->n_layers; l++) {
            const pn_block_type *bt = pn_block_find(c->mixer[l]);
            if (!bt || !bt->section || json_object_get(eac, bt->section)) continue;
            pn_block_cfg bc = pn_block_default(c, bt->name);
            if (!strcmp(bt->name, "swa")) bc.window = c->window[l];
            json_object_set_new(eac, bt->section, bt->to_json(&bc));
        }
        json_object_set_new(r, "efficient_attention_config", eac);
    } else if (c->arch != PN_ARCH_LLAMA) {
        json_object_set_new(r, "use_sliding_window", json_boolean(sw > 0));
        json_object_set_new(r, "sliding_window", sw ? json_integer(sw) : json_null());
        json_t *lt = json_array();
        for (int l = 0; l < c->n_layers; l++)
            json_array_append_new(lt, json_string(c->window[l] ? "sliding_attention" : "full_attention"));
        json_object_set_new(r, "layer_types", lt);
        int mwl = c->n_layers;
        for (int l = 0; l < c->n_layers; l++)
            if (c->window[l]) {
                mwl = l;
                break;
            }
        json_object_set_new(r, "max_window_layers", json_integer(mwl));
    }
    char *s = json_dumps(r, JSON_INDENT(2));
    json_decref(r);
    pn_atomic_file af;
    if (pn_atomic_open(&af, path)) {
        free(s);
        return -1;
    }
    fputs(s, af.f);
    fputc('\n', af.f);
    free(s);
    return pn_atomic_commit(&af);
}

int64_t pn_hf_config_params(const pn_model_config *c) {
    const int64_t H = c->hidden, q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim;
    int64_t layer = H * q + 2 * H * kv + q * H + 3 * H * c->intermediate + 2 * H;
    if (c->qkv_bias) layer += q + 2 * kv;
    if (c->o_bias) layer += H;
    if (c->qk_norm) layer += 2 * c->head_dim;
    int64_t n = layer * c->n_layers + (int64_t)c->vocab * H + H;
    if (!c->tie_embeddings) n += (int64_t)c->vocab * H;
    return n;
}

void pn_rope_inv_freq(const pn_model_config *c, float *inv_freq) {
    const int D = c->head_dim;
    for (int i = 0; i < D / 2; i++) {
        // HF: 1 / base ** (arange(0, D, 2).float() / D), in fp32.
        float f = 1.0f / powf((float)c->rope_theta, (float)(2 * i) / (float)D);
        if (c->rope_type == PN_ROPE_LINEAR) {
            f = f / (float)c->rope_factor;
        } else if (c->rope_type == PN_ROPE_LLAMA3) {
            const float factor = (float)c->rope_factor, lo = (float)c->rope_low_freq, hi = (float)c->rope_high_freq;
            const float old_ctx = (float)c->rope_orig_max_pos;
            const float wavelen = 2.0f * 3.14159265358979323846f / f;
            const float low_wavelen = old_ctx / lo, high_wavelen = old_ctx / hi;
            if (wavelen > low_wavelen) {
                f = f / factor; // long wavelengths: interpolate fully
            } else if (wavelen >= high_wavelen) {
                const float smooth = (old_ctx / wavelen - lo) / (hi - lo);
                f = (1.0f - smooth) * f / factor + smooth * f; // between: blend
            }
        }
        inv_freq[i] = f;
    }
}
