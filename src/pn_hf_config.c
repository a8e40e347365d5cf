// pn_hf_config: config.json → pn_model_config, with every inconsistency reported by key name.
#include "pn_hf_config.h"

#include <jansson.h>
#include <math.h>
#include <string.h>

#include "pn_common.h"

const char *pn_arch_name(pn_arch a) {
    switch (a) {
    case PN_ARCH_QWEN2: return "qwen2";
    case PN_ARCH_QWEN3: return "qwen3";
    case PN_ARCH_LLAMA: return "llama";
    case PN_ARCH_JET_NEMOTRON: return "jet_nemotron";
    }
    return "?";
}

// Reads an optional positive integer key; *out keeps its default when the key is absent or null.
static int get_int(const char *path, json_t *o, const char *key, int *out, int required, int minval) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (required) return pn_errorf("%s: missing required key \"%s\"", path, key);
        return 0;
    }
    if (!json_is_integer(v)) return pn_errorf("%s: \"%s\" must be an integer", path, key);
    json_int_t x = json_integer_value(v);
    if (x < minval || x > (1 << 30)) return pn_errorf("%s: \"%s\" = %lld is out of range", path, key, (long long)x);
    *out = (int)x;
    return 0;
}

static int get_num(const char *path, json_t *o, const char *key, double *out) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return pn_errorf("%s: \"%s\" must be a number", path, key);
    *out = json_number_value(v);
    return 0;
}

static int get_bool(const char *path, json_t *o, const char *key, int *out) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return pn_errorf("%s: \"%s\" must be true or false", path, key);
    *out = json_is_true(v);
    return 0;
}

// eos_token_id may be an int or a list of ints (Llama 3); the first is used to stop generation.
static int get_token_id(const char *path, json_t *o, const char *key, int *out) {
    json_t *v = json_object_get(o, key);
    if (json_is_array(v)) v = json_array_get(v, 0);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0) return pn_errorf("%s: \"%s\" must be a token id", path, key);
    *out = (int)json_integer_value(v);
    return 0;
}

static int parse_rope(const char *path, json_t *root, pn_model_config *c) {
    c->rope_theta = 10000.0;
    c->rope_type = PN_ROPE_DEFAULT;
    if (get_num(path, root, "rope_theta", &c->rope_theta)) return -1;
    // transformers 5 writes rope_parameters (with rope_theta inside); older files write rope_scaling.
    json_t *rp = json_object_get(root, "rope_parameters");
    const char *rp_key = "rope_parameters";
    if (!rp || json_is_null(rp)) {
        rp = json_object_get(root, "rope_scaling");
        rp_key = "rope_scaling";
    }
    if (!rp || json_is_null(rp)) return 0;
    if (!json_is_object(rp)) return pn_errorf("%s: \"%s\" must be an object or null", path, rp_key);
    if (get_num(path, rp, "rope_theta", &c->rope_theta)) return -1;
    json_t *t = json_object_get(rp, "rope_type");
    if (!t) t = json_object_get(rp, "type");
    const char *type = json_is_string(t) ? json_string_value(t) : "default";
    c->rope_factor = 1.0;
    if (get_num(path, rp, "factor", &c->rope_factor)) return -1;
    if (!strcmp(type, "default")) {
        c->rope_type = PN_ROPE_DEFAULT;
    } else if (!strcmp(type, "linear")) {
        c->rope_type = PN_ROPE_LINEAR;
    } else if (!strcmp(type, "llama3")) {
        c->rope_type = PN_ROPE_LLAMA3;
        c->rope_low_freq = 1.0;
        c->rope_high_freq = 4.0;
        c->rope_orig_max_pos = 8192;
        if (get_num(path, rp, "low_freq_factor", &c->rope_low_freq) ||
            get_num(path, rp, "high_freq_factor", &c->rope_high_freq) ||
            get_int(path, rp, "original_max_position_embeddings", &c->rope_orig_max_pos, 0, 1))
            return -1;
        if (c->rope_high_freq <= c->rope_low_freq)
            return pn_errorf("%s: %s.high_freq_factor must exceed low_freq_factor", path, rp_key);
    } else {
        return pn_errorf("%s: unknown rope type \"%s\" in %s (supported: default, linear, llama3)", path, type, rp_key);
    }
    if (c->rope_factor <= 0) return pn_errorf("%s: %s.factor must be positive", path, rp_key);
    return 0;
}

// efficient_attention_config of a Jet-Nemotron config: the JetBlock shape and the SWA window.
static int parse_efficient(const char *path, json_t *root, pn_model_config *c, int *swa_window) {
    json_t *e = json_object_get(root, "efficient_attention_config");
    if (!e || json_is_null(e)) return 0;
    if (!json_is_object(e)) return pn_errorf("%s: \"efficient_attention_config\" must be an object", path);
    json_t *jet = json_object_get(e, "jet"), *swa = json_object_get(e, "swa");
    if (jet && json_is_object(jet)) {
        double eps = 1e-6;
        c->jet_conv = 4;
        c->jet_reduction = 8;
        c->jet_expand_v = 1.0;
        if (get_int(path, jet, "num_heads", &c->jet_heads, 1, 1) || get_int(path, jet, "head_dim", &c->jet_head_dim, 1, 1) ||
            get_num(path, jet, "expand_v", &c->jet_expand_v) || get_int(path, jet, "conv_size", &c->jet_conv, 0, 1) ||
            get_int(path, jet, "dconv_generator_reduction", &c->jet_reduction, 0, 1) || get_num(path, jet, "norm_eps", &eps))
            return pn_error_prefix("efficient_attention_config.jet");
        c->jet_norm_eps = (float)eps;
    }
    json_t *gdn = json_object_get(e, "gdn");
    if (gdn && json_is_object(gdn)) {
        double eps = 1e-5;
        c->gdn_conv = 4;
        c->gdn_expand_v = 2.0;
        if (get_int(path, gdn, "num_heads", &c->gdn_heads, 1, 1) || get_int(path, gdn, "head_dim", &c->gdn_head_dim, 1, 1) ||
            get_num(path, gdn, "expand_v", &c->gdn_expand_v) || get_int(path, gdn, "conv_size", &c->gdn_conv, 0, 1) ||
            get_num(path, gdn, "norm_eps", &eps))
            return pn_error_prefix("efficient_attention_config.gdn");
        c->gdn_norm_eps = (float)eps;
    }
    if (swa && json_is_object(swa) && get_int(path, swa, "window_size", swa_window, 0, 1))
        return pn_error_prefix("efficient_attention_config.swa");
    return 0;
}

static int parse_windows(const char *path, json_t *root, pn_model_config *c) {
    int use_sw = 0, sw = 0, max_window_layers = c->n_layers;
    if (get_bool(path, root, "use_sliding_window", &use_sw) || get_int(path, root, "max_window_layers", &max_window_layers, 0, 0))
        return -1;
    json_t *jsw = json_object_get(root, "sliding_window");
    if (jsw && !json_is_null(jsw)) {
        if (!json_is_integer(jsw) || json_integer_value(jsw) <= 0 || json_integer_value(jsw) > (1 << 30))
            return pn_errorf("%s: \"sliding_window\" must be a positive integer or null", path);
        sw = (int)json_integer_value(jsw);
    }
    if (c->arch == PN_ARCH_JET_NEMOTRON && parse_efficient(path, root, c, &sw)) return -1;
    for (int l = 0; l < c->n_layers; l++) snprintf(c->mixer[l], sizeof c->mixer[l], "attn");
    json_t *lt = json_object_get(root, "layer_types");
    if (lt && !json_is_null(lt)) {
        if (!json_is_array(lt) || (int)json_array_size(lt) != c->n_layers)
            return pn_errorf("%s: \"layer_types\" must list %d layer types", path, c->n_layers);
        for (int l = 0; l < c->n_layers; l++) {
            const char *s = json_string_value(json_array_get(lt, (size_t)l));
            if (!s) return pn_errorf("%s: layer_types[%d] is not a string", path, l);
            // transformers' names, and Jet-Nemotron's
            if (!strcmp(s, "full_attention") || !strcmp(s, "attn")) {
                c->window[l] = 0;
            } else if (!strcmp(s, "sliding_attention") || !strcmp(s, "swa")) {
                if (!sw) return pn_errorf("%s: layer_types[%d] is %s but no sliding window size is set", path, l, s);
                c->window[l] = sw;
                snprintf(c->mixer[l], sizeof c->mixer[l], "swa");
            } else if (!strcmp(s, "jet") && c->arch == PN_ARCH_JET_NEMOTRON) {
                if (!c->jet_heads)
                    return pn_errorf("%s: layer_types[%d] is jet but efficient_attention_config.jet is missing", path, l);
                snprintf(c->mixer[l], sizeof c->mixer[l], "jet");
            } else if ((!strcmp(s, "gdn") || !strcmp(s, "deltanet")) && c->arch == PN_ARCH_JET_NEMOTRON) {
                if (!c->gdn_heads)
                    return pn_errorf("%s: layer_types[%d] is %s but efficient_attention_config.gdn is missing", path, l, s);
                snprintf(c->mixer[l], sizeof c->mixer[l], "%s", s);
            } else {
                return pn_errorf("%s: layer_types[%d] = \"%s\" is not a layer type this model family has", path, l, s);
            }
        }
        return 0;
    }
    // Classic Qwen2 rule: with use_sliding_window, layers from max_window_layers on use the window.
    if (c->arch != PN_ARCH_LLAMA && use_sw && sw)
        for (int l = max_window_layers; l < c->n_layers; l++) {
            c->window[l] = sw;
            snprintf(c->mixer[l], sizeof c->mixer[l], "swa");
        }
    return 0;
}

int pn_hf_config_load(pn_model_config *c, const char *path) {
    memset(c, 0, sizeof *c);
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        if (jerr.line < 0 || strstr(jerr.text, "unable to open")) return pn_errorf("%s: cannot open", path);
        return pn_errorf("%s:%d:%d: invalid JSON: %s", path, jerr.line, jerr.column, jerr.text);
    }
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
    const char *act = json_string_value(json_object_get(root, "hidden_act"));
    if (act && strcmp(act, "silu") != 0) {
        pn_errorf("%s: \"hidden_act\" = \"%s\" is not supported (only silu)", path, act);
        goto done;
    }
    c->max_pos = 32768;
    c->bos_id = c->eos_id = -1;
    if (get_int(path, root, "hidden_size", &c->hidden, 1, 1) ||
        get_int(path, root, "intermediate_size", &c->intermediate, 1, 1) ||
        get_int(path, root, "num_hidden_layers", &c->n_layers, 1, 1) ||
        get_int(path, root, "num_attention_heads", &c->n_heads, 1, 1) ||
        get_int(path, root, "vocab_size", &c->vocab, 1, 1) ||
        get_int(path, root, "max_position_embeddings", &c->max_pos, 0, 1) ||
        get_token_id(path, root, "bos_token_id", &c->bos_id) || get_token_id(path, root, "eos_token_id", &c->eos_id))
        goto done;
    c->n_kv_heads = c->n_heads;
    c->head_dim = c->hidden / c->n_heads;
    if (get_int(path, root, "num_key_value_heads", &c->n_kv_heads, 0, 1) ||
        get_int(path, root, "head_dim", &c->head_dim, 0, 2))
        goto done;
    if (c->n_layers > PN_MAX_LAYERS) {
        pn_errorf("%s: \"num_hidden_layers\" = %d exceeds the supported %d", path, c->n_layers, PN_MAX_LAYERS);
        goto done;
    }
    if (c->n_heads % c->n_kv_heads) {
        pn_errorf("%s: \"num_attention_heads\" (%d) is not a multiple of \"num_key_value_heads\" (%d)", path,
                  c->n_heads, c->n_kv_heads);
        goto done;
    }
    if (!json_object_get(root, "head_dim") && c->hidden % c->n_heads) {
        pn_errorf("%s: \"hidden_size\" (%d) is not a multiple of \"num_attention_heads\" (%d)", path, c->hidden, c->n_heads);
        goto done;
    }
    if (c->head_dim % 2 || c->head_dim > 512) {
        pn_errorf("%s: \"head_dim\" = %d must be even and at most 512", path, c->head_dim);
        goto done;
    }
    double eps = 1e-6;
    if (get_num(path, root, "rms_norm_eps", &eps)) goto done;
    c->rms_eps = (float)eps;
    c->tie_embeddings = 0;
    if (get_bool(path, root, "tie_word_embeddings", &c->tie_embeddings)) goto done;
    int attention_bias = 0, mlp_bias = 0;
    if (get_bool(path, root, "attention_bias", &attention_bias) || get_bool(path, root, "mlp_bias", &mlp_bias)) goto done;
    if (mlp_bias) {
        pn_errorf("%s: \"mlp_bias\": true is not supported", path);
        goto done;
    }
    const int qwen2_like = c->arch == PN_ARCH_QWEN2 || c->arch == PN_ARCH_JET_NEMOTRON;
    c->qkv_bias = qwen2_like ? 1 : attention_bias;
    c->o_bias = qwen2_like ? 0 : attention_bias;
    c->qk_norm = c->arch == PN_ARCH_QWEN3;
    if (parse_rope(path, root, c) || parse_windows(path, root, c)) goto done;
    if (!(c->rope_theta > 0)) {
        pn_errorf("%s: \"rope_theta\" must be positive", path);
        goto done;
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
    json_object_set_new(r, "rms_norm_eps", json_real(c->rms_eps));
    json_object_set_new(r, "rope_theta", json_real(c->rope_theta));
    json_object_set_new(r, "hidden_act", json_string("silu"));
    json_object_set_new(r, "tie_word_embeddings", json_boolean(c->tie_embeddings));
    if (c->arch != PN_ARCH_QWEN2 && c->arch != PN_ARCH_JET_NEMOTRON)
        json_object_set_new(r, "attention_bias", json_boolean(c->qkv_bias));
    if (c->bos_id >= 0) json_object_set_new(r, "bos_token_id", json_integer(c->bos_id));
    if (c->eos_id >= 0) json_object_set_new(r, "eos_token_id", json_integer(c->eos_id));
    json_object_set_new(r, "torch_dtype", json_string("bfloat16"));
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
        json_t *eac = json_object();
        if (c->jet_heads)
            json_object_set_new(eac, "jet",
                                json_pack("{s:i, s:i, s:f, s:i, s:i, s:f, s:s}", "num_heads", c->jet_heads, "head_dim",
                                          c->jet_head_dim, "expand_v", c->jet_expand_v, "conv_size", c->jet_conv,
                                          "dconv_generator_reduction", c->jet_reduction, "norm_eps",
                                          (double)c->jet_norm_eps, "mode", "chunk"));
        if (c->gdn_heads)
            json_object_set_new(eac, "gdn",
                                json_pack("{s:i, s:i, s:f, s:i, s:f}", "num_heads", c->gdn_heads, "head_dim",
                                          c->gdn_head_dim, "expand_v", c->gdn_expand_v, "conv_size", c->gdn_conv,
                                          "norm_eps", (double)c->gdn_norm_eps));
        if (sw) json_object_set_new(eac, "swa", json_pack("{s:i}", "window_size", sw));
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
