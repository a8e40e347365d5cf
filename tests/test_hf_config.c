// config.json parsing: the classic keys real checkpoints ship, transformers 5's keys (the goldens), the
// rope scalings, sliding-window rules, and a catalogue of configs that must be refused by key name.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../src/pn_common.h"
#include "../src/pn_block.h"
#include "../src/pn_hf_config.h"
#include "pn_test.h"

static char path[256];

// The JetBlock config config.json gave (all zero when none).
static pn_block_cfg jet_of(const pn_model_config *c) {
    const pn_block_cfg *j = pn_config_mixer(c, "jet");
    return j ? *j : (pn_block_cfg){0};
}

static int load_text(pn_model_config *c, const char *text) {
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return pn_hf_config_load(c, path);
}

// The real Qwen2.5-1.5B config.json (classic key set).
static const char *qwen25 =
    "{\"architectures\": [\"Qwen2ForCausalLM\"], \"attention_dropout\": 0.0, \"bos_token_id\": 151643,"
    " \"eos_token_id\": 151643, \"hidden_act\": \"silu\", \"hidden_size\": 1536, \"initializer_range\": 0.02,"
    " \"intermediate_size\": 8960, \"max_position_embeddings\": 131072, \"max_window_layers\": 28,"
    " \"model_type\": \"qwen2\", \"num_attention_heads\": 12, \"num_hidden_layers\": 28, \"num_key_value_heads\": 2,"
    " \"rms_norm_eps\": 1e-06, \"rope_theta\": 1000000.0, \"sliding_window\": 131072, \"tie_word_embeddings\": true,"
    " \"torch_dtype\": \"bfloat16\", \"transformers_version\": \"4.40.1\", \"use_cache\": true,"
    " \"use_mrope\": false, \"use_sliding_window\": false, \"vocab_size\": 151936}";

static void test_classic(void) {
    pn_model_config c;
    CHECK(load_text(&c, qwen25) == 0, "%s", pn_last_error());
    CHECK(c.arch == PN_ARCH_QWEN2 && c.hidden == 1536 && c.intermediate == 8960 && c.n_layers == 28, "sizes");
    CHECK(c.n_heads == 12 && c.n_kv_heads == 2 && c.head_dim == 128 && c.vocab == 151936, "heads");
    CHECK(c.tie_embeddings && c.qkv_bias && !c.o_bias && !c.qk_norm, "flags");
    CHECK(c.rope_theta == 1e6 && c.rope_type == PN_ROPE_DEFAULT && fabsf(c.rms_eps - 1e-6f) < 1e-12f, "rope/eps");
    int any_window = 0;
    for (int l = 0; l < c.n_layers; l++) any_window |= c.window[l];
    CHECK(!any_window, "use_sliding_window false must disable the window");
    CHECK(c.eos_id == 151643 && c.bos_id == 151643, "token ids");
    CHECK(pn_hf_config_params(&c) == 1543714304LL, "Qwen2.5-1.5B has 1,543,714,304 parameters, got %lld",
          (long long)pn_hf_config_params(&c));

    // Classic sliding-window rule: layers from max_window_layers on.
    CHECK(load_text(&c, "{\"model_type\":\"qwen2\",\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":4,"
                        "\"num_attention_heads\":4,\"vocab_size\":100,\"use_sliding_window\":true,\"sliding_window\":8,"
                        "\"max_window_layers\":2}") == 0, "%s", pn_last_error());
    CHECK(c.window[0] == 0 && c.window[1] == 0 && c.window[2] == 8 && c.window[3] == 8, "windows %d %d %d %d",
          c.window[0], c.window[1], c.window[2], c.window[3]);
    CHECK(c.n_kv_heads == 4 && c.head_dim == 16, "kv heads default to heads");

    // Llama 3 rope scaling: low frequencies divided by the factor, high ones untouched.
    CHECK(load_text(&c, "{\"model_type\":\"llama\",\"hidden_size\":2048,\"intermediate_size\":8192,\"num_hidden_layers\":16,"
                        "\"num_attention_heads\":32,\"num_key_value_heads\":8,\"vocab_size\":128256,\"eos_token_id\":[128001,128008],"
                        "\"rope_theta\":500000.0,\"rope_scaling\":{\"factor\":32.0,\"high_freq_factor\":4.0,"
                        "\"low_freq_factor\":1.0,\"original_max_position_embeddings\":8192,\"rope_type\":\"llama3\"}}") == 0,
          "%s", pn_last_error());
    CHECK(c.arch == PN_ARCH_LLAMA && c.rope_type == PN_ROPE_LLAMA3 && c.rope_factor == 32 && c.eos_id == 128001, "llama");
    CHECK(!c.qkv_bias && !c.tie_embeddings, "llama flags");
    float inv[32];
    pn_rope_inv_freq(&c, inv);
    CHECK(inv[0] == 1.0f, "highest frequency untouched: %g", inv[0]);
    float plain = 1.0f / powf(500000.0f, 62.0f / 64.0f);
    CHECK(fabsf(inv[31] - plain / 32.0f) < 1e-6f * plain, "lowest frequency divided by 32: %g vs %g", inv[31], plain / 32);
}

// Jet-Nemotron-2B's config (REFERENCE.md §5): attn at 14 and 19, swa at 20 and 21 (window 1152), JetBlock
// elsewhere (12 heads, d_k 96, expand_v 2.6667); read, and written back to the same thing.
static void test_jet_nemotron(void) {
    char lt[2048] = "[";
    for (int l = 0; l < 28; l++) {
        const char *t = (l == 14 || l == 19) ? "attn" : (l == 20 || l == 21) ? "swa" : "jet";
        snprintf(lt + strlen(lt), sizeof lt - strlen(lt), "%s\"%s\"", l ? ", " : "", t);
    }
    strcat(lt, "]");
    char text[4096];
    snprintf(text, sizeof text,
             "{\"architectures\": [\"JetNemotronForCausalLM\"], \"model_type\": \"jet_nemotron\", \"hidden_size\": 1536,"
             " \"intermediate_size\": 8960, \"num_hidden_layers\": 28, \"num_attention_heads\": 12, \"num_key_value_heads\": 2,"
             " \"rope_theta\": 1000000.0, \"rms_norm_eps\": 1e-06, \"vocab_size\": 151936, \"tie_word_embeddings\": true,"
             " \"bos_token_id\": 151643, \"eos_token_id\": 151643, \"layer_types\": %s,"
             " \"efficient_attention_config\": {\"jet\": {\"num_heads\": 12, \"head_dim\": 96, \"expand_v\": 2.6667,"
             " \"conv_size\": 4, \"dconv_generator_reduction\": 8, \"norm_eps\": 1e-05, \"mode\": \"chunk\","
             " \"dconv_implementation\": \"triton\"}, \"swa\": {\"window_size\": 1152}}}",
             lt);
    pn_model_config c, d;
    CHECK(load_text(&c, text) == 0, "%s", pn_last_error());
    CHECK(c.arch == PN_ARCH_JET_NEMOTRON && c.qkv_bias && c.tie_embeddings, "jet_nemotron base");
    int attn = 0, swa = 0, jet = 0;
    for (int l = 0; l < 28; l++) {
        attn += !strcmp(c.mixer[l], "attn"), swa += !strcmp(c.mixer[l], "swa") && c.window[l] == 1152;
        jet += !strcmp(c.mixer[l], "jet");
    }
    CHECK(attn == 2 && swa == 2 && jet == 24 && !strcmp(c.mixer[14], "attn") && !strcmp(c.mixer[21], "swa"),
          "layer types: %d attn, %d swa, %d jet", attn, swa, jet);
    CHECK(jet_of(&c).lin_heads == 12 && jet_of(&c).lin_head_k == 96 && jet_of(&c).expand_v == 2.6667 && jet_of(&c).conv_size == 4 &&
              jet_of(&c).gen_reduction == 8 && fabsf(jet_of(&c).norm_eps - 1e-5f) < 1e-12f,
          "jet config");
    CHECK(pn_hf_config_save(&c, path) == 0 && pn_hf_config_load(&d, path) == 0, "round trip: %s", pn_last_error());
    int same = d.arch == c.arch && jet_of(&d).lin_heads == jet_of(&c).lin_heads && jet_of(&d).lin_head_k == jet_of(&c).lin_head_k &&
               jet_of(&d).expand_v == jet_of(&c).expand_v && jet_of(&d).gen_reduction == jet_of(&c).gen_reduction;
    for (int l = 0; l < 28; l++) same &= !strcmp(c.mixer[l], d.mixer[l]) && c.window[l] == d.window[l];
    CHECK(same, "Jet-Nemotron config does not survive save + load");
    // A jet layer without its config, and a jet layer in a plain Qwen2 model, are refused.
    CHECK_ERR(load_text(&c, "{\"model_type\":\"jet_nemotron\",\"hidden_size\":64,\"intermediate_size\":128,"
                            "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10,\"layer_types\":[\"jet\"]}"),
              "layer_types use jet but \"efficient_attention_config\" is missing");
    CHECK_ERR(load_text(&c, "{\"model_type\":\"qwen2\",\"hidden_size\":64,\"intermediate_size\":128,"
                            "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10,\"layer_types\":[\"jet\"]}"),
              "layer_types[0] = \"jet\"");
}

// NVIDIA's released jetlm_2B.json (NVlabs/Jet-Nemotron, jetai/modeling/configs/), whitespace compacted.
static const char *jetlm_2b =
    "{\"architectures\": [\"JetNemotronForCausalLM\"], \"attention_dropout\": 0.0, "
    "\"auto_map\": {\"AutoConfig\": \"configuration_jet_nemotron.JetNemotronConfig\", "
    "\"AutoModelForCausalLM\": \"modeling_jet_nemotron.JetNemotronForCausalLM\"}, \"bos_token_id\": 151643, "
    "\"efficient_attention_config\": {\"jet\": {\"conv_size\": 4, \"dconv_generator_reduction\": 8, "
    "\"dconv_implementation\": \"triton\", \"expand_v\": 2.6666666667, \"head_dim\": 96, \"mode\": \"chunk\", "
    "\"norm_eps\": \"1e-5\", \"num_heads\": 12}, \"swa\": {\"window_size\": 1152}}, \"eos_token_id\": 151643, "
    "\"hidden_act\": \"silu\", \"hidden_size\": 1536, \"initializer_range\": 0.02, \"intermediate_size\": 8960, "
    "\"layer_types\": [\"jet\", \"jet\", \"jet\", \"jet\", \"jet\", \"jet\", \"jet\", \"jet\", \"jet\", \"jet\", \"jet\", \"jet\", "
    "\"jet\", \"jet\", \"attn\", \"jet\", \"jet\", \"jet\", \"jet\", \"attn\", \"swa\", \"swa\", \"jet\", \"jet\", \"jet\", \"jet\", "
    "\"jet\", \"jet\"], \"max_position_embeddings\": 131072, \"max_window_layers\": 28, "
    "\"model_type\": \"jet_nemotron\", \"num_attention_heads\": 12, \"num_hidden_layers\": 28, "
    "\"num_key_value_heads\": 2, \"rms_norm_eps\": 1e-06, \"rope_scaling\": null, \"rope_theta\": 1000000.0, "
    "\"tie_word_embeddings\": true, \"torch_dtype\": \"bfloat16\", \"transformers_version\": \"4.51.3\", "
    "\"use_cache\": true, \"use_mrope\": false, \"vocab_size\": 151936}";

// NVIDIA's released jetlm_4B.json (NVlabs/Jet-Nemotron, jetai/modeling/configs/), whitespace compacted.
static const char *jetlm_4b =
    "{\"architectures\": [\"JetNemotronForCausalLM\"], \"attention_dropout\": 0.0, "
    "\"auto_map\": {\"AutoConfig\": \"configuration_jet_nemotron.JetNemotronConfig\", "
    "\"AutoModelForCausalLM\": \"modeling_jet_nemotron.JetNemotronForCausalLM\"}, \"bos_token_id\": 151643, "
    "\"efficient_attention_config\": {\"jet\": {\"conv_size\": 4, \"dconv_generator_reduction\": 8, "
    "\"dconv_implementation\": \"triton\", \"expand_v\": 2, \"head_dim\": 128, \"mode\": \"chunk\", "
    "\"norm_eps\": \"1e-5\", \"num_heads\": 16}, \"swa\": {\"window_size\": 2048}}, \"eos_token_id\": 151643, "
    "\"hidden_act\": \"silu\", \"hidden_size\": 2048, \"initializer_range\": 0.02, \"intermediate_size\": 11008, "
    "\"layer_types\": [\"jet\", \"jet\", \"jet\", \"jet\", \"jet\", \"swa\", \"jet\", \"jet\", \"jet\", \"jet\", \"jet\", \"jet\", "
    "\"jet\", \"jet\", \"jet\", \"jet\", \"swa\", \"attn\", \"jet\", \"swa\", \"attn\", \"swa\", \"swa\", \"jet\", \"jet\", \"swa\", "
    "\"jet\", \"swa\", \"jet\", \"jet\", \"jet\", \"jet\", \"attn\", \"jet\", \"jet\", \"jet\"], "
    "\"max_position_embeddings\": 32768, \"max_window_layers\": 36, \"model_type\": \"jet_nemotron\", "
    "\"num_attention_heads\": 16, \"num_hidden_layers\": 36, \"num_key_value_heads\": 2, "
    "\"rms_norm_eps\": 1e-06, \"rope_scaling\": null, \"rope_theta\": 1000000.0, \"tie_word_embeddings\": true, "
    "\"torch_dtype\": \"bfloat16\", \"transformers_version\": \"4.51.3\", \"use_cache\": true, \"use_mrope\": false, "
    "\"vocab_size\": 151936}";

// A minimal Jet-Nemotron config with `extra` spliced in (a leading comma included) and layer types `lt`.
static int load_jet(pn_model_config *c, const char *lt, const char *jet, const char *extra) {
    char text[2048];
    snprintf(text, sizeof text,
             "{\"model_type\":\"jet_nemotron\",\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,"
             "\"num_attention_heads\":4,\"vocab_size\":300,\"layer_types\":%s,"
             "\"efficient_attention_config\":{\"jet\":{%s},\"swa\":{\"window_size\":8}}%s}",
             lt, jet, extra);
    return load_text(c, text);
}

// NVIDIA's released configs load as NVIDIA's code reads them: "norm_eps": "1e-5" is a string there (its
// code converts it with float()), expand_v 2.6666666667 truncates to d_v 256, 2 as a JSON integer works.
static void test_jet_released(void) {
    pn_model_config c;
    CHECK(load_text(&c, jetlm_2b) == 0, "jetlm_2B.json: %s", pn_last_error());
    CHECK(c.arch == PN_ARCH_JET_NEMOTRON && c.hidden == 1536 && c.n_layers == 28 && c.n_kv_heads == 2 && c.tie_embeddings,
          "2B sizes");
    CHECK(fabsf(jet_of(&c).norm_eps - 1e-5f) < 1e-12f && jet_of(&c).lin_heads == 12 && jet_of(&c).lin_head_k == 96, "2B jet: eps %g",
          (double)jet_of(&c).norm_eps);
    CHECK(!strcmp(c.mixer[14], "attn") && !strcmp(c.mixer[19], "attn") && !strcmp(c.mixer[20], "swa") &&
              c.window[21] == 1152 && !strcmp(c.mixer[0], "jet"),
          "2B layer types");
    pn_block_cfg b = pn_block_default(&c, "jet");
    pn_param ps[PN_BLOCK_MAX_PARAMS];
    const pn_block_type *jt = pn_block_find("jet");
    CHECK(jt->check(&b, "2B") == 0, "2B jet block: %s", pn_last_error());
    const int np = jt->params(&b, 0, ps);
    int shapes = 0;
    for (int i = 0; i < np; i++) {
        if (strstr(ps[i].name, "v_proj.weight")) shapes += ps[i].shape[0] == 3072;
        if (strstr(ps[i].name, "w1.weight")) shapes += ps[i].shape[0] == 384 && ps[i].shape[1] == 1536;
        if (strstr(ps[i].name, "w2.weight")) shapes += ps[i].shape[0] == 12288 && ps[i].shape[1] == 384;
        if (strstr(ps[i].name, "o_norm.weight")) shapes += ps[i].shape[0] == 256;
    }
    CHECK(shapes == 4, "2B JetBlock tensor shapes (REFERENCE §5): %d of 4 match", shapes);
    CHECK(load_text(&c, jetlm_4b) == 0, "jetlm_4B.json: %s", pn_last_error());
    CHECK(c.hidden == 2048 && c.n_layers == 36 && jet_of(&c).lin_heads == 16 && jet_of(&c).lin_head_k == 128 && jet_of(&c).expand_v == 2 &&
              c.window[5] == 2048 && !strcmp(c.mixer[17], "attn") && !strcmp(c.mixer[32], "attn"),
          "4B config");
    b = pn_block_default(&c, "jet");
    CHECK(jt->check(&b, "4B") == 0, "4B jet block: %s", pn_last_error());
}

// Every key NVIDIA's JetNemotronConfig / JetBlockConfig defaults gets that default when absent.
static void test_jet_defaults(void) {
    pn_model_config c;
    // Top level: nothing but the model type and the layer types.
    CHECK(load_text(&c, "{\"model_type\":\"jet_nemotron\"}") == 0, "%s", pn_last_error());
    CHECK(c.hidden == 1536 && c.intermediate == 8960 && c.n_layers == 28 && c.n_heads == 12 && c.n_kv_heads == 2 &&
              c.vocab == 151936 && c.head_dim == 128 && c.tie_embeddings && c.rope_theta == 1e6 &&
              fabsf(c.rms_eps - 1e-6f) < 1e-12f && !strcmp(c.mixer[27], "attn"),
          "JetNemotronConfig defaults: hidden %d kv %d vocab %d tie %d theta %g", c.hidden, c.n_kv_heads, c.vocab,
          c.tie_embeddings, c.rope_theta);
    // num_key_value_heads: absent -> 2, explicit null -> all heads.
    CHECK(load_jet(&c, "[\"attn\",\"attn\"]", "", ",\"num_key_value_heads\":null") == 0 && c.n_kv_heads == 4,
          "null kv heads -> heads (%d)", c.n_kv_heads);
    CHECK(load_jet(&c, "[\"attn\",\"attn\"]", "", "") == 0 && c.n_kv_heads == 2, "absent kv heads -> 2");
    // tie_word_embeddings absent -> true (save_pretrained omits it); rope_theta absent -> 1e6.
    CHECK(c.tie_embeddings && c.rope_theta == 1e6, "tie %d theta %g", c.tie_embeddings, c.rope_theta);
    // JetBlockConfig: all keys absent.
    CHECK(load_jet(&c, "[\"jet\",\"attn\"]", "", "") == 0, "%s", pn_last_error());
    CHECK(jet_of(&c).lin_heads == 6 && jet_of(&c).lin_head_k == 256 && jet_of(&c).expand_v == 2.0 && jet_of(&c).conv_size == 4 && jet_of(&c).gen_reduction == 8 &&
              fabsf(jet_of(&c).norm_eps - 1e-5f) < 1e-12f,
          "JetBlockConfig defaults: heads %d d_k %d expand_v %g eps %g", jet_of(&c).lin_heads, jet_of(&c).lin_head_k, jet_of(&c).expand_v,
          (double)jet_of(&c).norm_eps);
    // norm_eps as a string or a number; garbage refused by name.
    CHECK(load_jet(&c, "[\"jet\",\"attn\"]", "\"norm_eps\":\"3e-4\"", "") == 0 && fabsf(jet_of(&c).norm_eps - 3e-4f) < 1e-10f,
          "string norm_eps");
    CHECK(load_jet(&c, "[\"jet\",\"attn\"]", "\"norm_eps\":1e-3", "") == 0 && fabsf(jet_of(&c).norm_eps - 1e-3f) < 1e-10f,
          "number norm_eps");
    CHECK_ERR(load_jet(&c, "[\"jet\",\"attn\"]", "\"norm_eps\":\"1e-5x\"", ""), "\"norm_eps\" = \"1e-5x\" is not a number");
    CHECK_ERR(load_jet(&c, "[\"jet\",\"attn\"]", "\"norm_eps\":\"-1\"", ""), "norm_eps\" = -1 must be positive");
    // NVIDIA refuses what JetBlockConfig does not know (a dataclass built with **dict), and bad choices.
    CHECK_ERR(load_jet(&c, "[\"jet\",\"attn\"]", "\"num_head\":4", ""), "efficient_attention_config.jet has no key \"num_head\"");
    CHECK_ERR(load_jet(&c, "[\"jet\",\"attn\"]", "\"mode\":\"parallel\"", ""), "jet.mode = \"parallel\"");
    CHECK_ERR(load_jet(&c, "[\"jet\",\"attn\"]", "\"expand_v\":\"2\"", ""), "\"expand_v\" must be a number");
    // Entries no layer uses are ignored, malformed or not (NVIDIA never reads them).
    CHECK(load_jet(&c, "[\"attn\",\"swa\"]", "\"num_head\":\"x\"", "") == 0 && jet_of(&c).lin_heads == 0 && c.window[1] == 8,
          "an unused jet entry must be ignored: %s", pn_last_error());
    // swa window_size has no default there.
    CHECK_ERR(load_text(&c, "{\"model_type\":\"jet_nemotron\",\"num_hidden_layers\":1,\"layer_types\":[\"swa\"],"
                            "\"efficient_attention_config\":{\"swa\":{}}}"),
              "efficient_attention_config.swa.window_size is missing");
    // layer_types beyond num_hidden_layers are ignored (NVIDIA reads the first num_hidden_layers), fewer refused.
    CHECK(load_jet(&c, "[\"attn\",\"jet\",\"attn\"]", "", "") == 0 && !strcmp(c.mixer[1], "jet"), "longer layer_types");
    CHECK_ERR(load_jet(&c, "[\"attn\"]", "", ""), "must be a list of 2 layer types");
    // A reduction that does not divide the value dim floors (60 // 8 = 7): the block is built, w1 is [7, H].
    CHECK(load_jet(&c, "[\"jet\",\"attn\"]", "\"num_heads\":2,\"head_dim\":10,\"expand_v\":3.0", "") == 0, "%s",
          pn_last_error());
    pn_block_cfg b = pn_block_default(&c, "jet");
    pn_param ps[PN_BLOCK_MAX_PARAMS];
    const int np = pn_block_find("jet")->params(&b, 0, ps);
    int w1 = 0;
    for (int i = 0; i < np; i++)
        if (strstr(ps[i].name, "w1.weight")) w1 = ps[i].shape[0] == 7 && ps[i].shape[1] == 64;
    CHECK(w1 && pn_block_find("jet")->check(&b, "x") == 0, "floor reduction: w1 [7, 64]");
}

// Values a file can hold that would silently break the model (fuzzing found them): refused by key.
static void test_limits(void) {
    pn_model_config c;
    static const char *base = "{\"model_type\":\"qwen2\",\"hidden_size\":64,\"intermediate_size\":128,"
                              "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100";
    char t[512];
#define WITH(extra) (snprintf(t, sizeof t, "%s,%s}", base, extra), load_text(&c, t))
    CHECK_ERR(WITH("\"rope_theta\":1e-300"), "\"rope_theta\" = 1e-300 must be positive (as a float)");
    CHECK_ERR(WITH("\"rope_theta\":-5"), "\"rope_theta\" = -5");
    CHECK_ERR(WITH("\"rope_scaling\":{\"rope_type\":\"linear\",\"factor\":1e-300}"), "\"rope_scaling.factor\" = 1e-300");
    CHECK_ERR(WITH("\"rope_scaling\":{\"rope_type\":\"llama3\",\"factor\":8,\"low_freq_factor\":-1,\"high_freq_factor\":4}"),
              "rope_scaling.low_freq_factor");
    CHECK_ERR(WITH("\"rms_norm_eps\":-1e-6"), "\"rms_norm_eps\" = -1e-06 must be in [0, 1]");
    CHECK_ERR(WITH("\"eos_token_id\":100"), "\"eos_token_id\" must be a token id in [0, 100)");
    CHECK_ERR(WITH("\"bos_token_id\":4294967301"), "\"bos_token_id\" must be a token id");
    CHECK_ERR(WITH("\"eos_token_id\":[5, 100]"), "\"eos_token_id\" must be a token id");
    CHECK_ERR(WITH("\"hidden_act\":7"), "\"hidden_act\" must be a string");
    CHECK_ERR(WITH("\"rope_scaling\":{\"rope_type\":3,\"factor\":2}"), "\"rope_type\" must be a string");
    CHECK_ERR(WITH("\"torch_dtype\":\"int4\""), "\"torch_dtype\" = \"int4\"");
    CHECK_ERR(WITH("\"num_key_value_heads\":8"), "not a multiple of \"num_key_value_heads\" (8)");
    CHECK(WITH("\"eos_token_id\":[99, 5],\"torch_dtype\":\"float32\"") == 0 && c.eos_id == 99 &&
              !strcmp(c.torch_dtype, "float32"),
          "valid ids and dtype: %s", pn_last_error());
    // A number beyond 64-bit integers (transformers writes int(1e30)) is read as a real, not a broken file;
    // where an integer is needed it is refused by name.
    CHECK(WITH("\"model_max_length\": 1000000000000000019884624838656, \"x\": [-99999999999999999999]") == 0,
          "a huge integer in an unused key: %s", pn_last_error());
    CHECK_ERR(WITH("\"max_position_embeddings\": 1000000000000000019884624838656"),
              "\"max_position_embeddings\" must be an integer");
#undef WITH
}

// What postnas writes for a hybrid: only the efficient_attention_config entries its layers use, torch_dtype
// as given, and it reads back the same.
static void test_export_clean(void) {
    pn_model_config c, d;
    CHECK(load_jet(&c, "[\"attn\",\"swa\"]", "\"num_heads\":2", ",\"torch_dtype\":\"float32\"") == 0, "%s",
          pn_last_error());
    CHECK(pn_hf_config_save(&c, path) == 0, "%s", pn_last_error());
    char *text = pn_read_file(path, NULL);
    CHECK(text && !strstr(text, "\"jet\"") && !strstr(text, "\"gdn\"") && strstr(text, "\"window_size\": 8") &&
              strstr(text, "\"torch_dtype\": \"float32\""),
          "export holds only the used entries and the dtype: %s", text ? text : "");
    free(text);
    CHECK(pn_hf_config_load(&d, path) == 0 && d.window[1] == 8 && d.tie_embeddings == c.tie_embeddings, "read back");
    CHECK(load_jet(&c, "[\"jet\",\"attn\"]", "\"num_heads\":2,\"head_dim\":16,\"norm_eps\":\"1e-5\"", "") == 0 &&
              pn_hf_config_save(&c, path) == 0 && pn_hf_config_load(&d, path) == 0,
          "%s", pn_last_error());
    text = pn_read_file(path, NULL);
    CHECK(text && strstr(text, "\"jet\"") && !strstr(text, "\"swa\"") && !strstr(text, "\"gdn\"") &&
              strstr(text, "\"dconv_implementation\": \"triton\""),
          "jet export: %s", text ? text : "");
    free(text);
    CHECK(jet_of(&d).lin_heads == 2 && jet_of(&d).lin_head_k == 16 && jet_of(&d).norm_eps == jet_of(&c).norm_eps && jet_of(&d).expand_v == 2.0,
          "jet round trip");
}

static void test_goldens(const char *goldens) {
    static const char *cases[] = {"qwen2-tiny", "qwen3-tiny", "llama-tiny", "qwen2-swa"};
    for (int i = 0; i < 4; i++) {
        char *d = pn_path_join(goldens, cases[i]), *p = pn_path_join(d, "config.json");
        pn_model_config c;
        CHECK(pn_hf_config_load(&c, p) == 0, "%s", pn_last_error());
        if (i == 1) CHECK(c.arch == PN_ARCH_QWEN3 && c.head_dim == 32 && c.qk_norm && !c.qkv_bias, "qwen3 golden");
        if (i == 2) CHECK(c.arch == PN_ARCH_LLAMA && c.rope_type == PN_ROPE_LLAMA3, "llama golden rope");
        if (i == 3) {
            int n = 0;
            for (int l = 0; l < c.n_layers; l++) n += c.window[l] == 4;
            CHECK(n > 0 && n < c.n_layers, "qwen2-swa golden: %d of %d layers windowed", n, c.n_layers);
        }
        free(d);
        free(p);
    }
}

static void test_bad(void) {
    pn_model_config c;
    CHECK_ERR(pn_hf_config_load(&c, "/nonexistent/config.json"), "/nonexistent/config.json: cannot open");
    CHECK_ERR(load_text(&c, "{\"model_type\": \"qwen2\",, }"), "invalid JSON");
    CHECK_ERR(load_text(&c, "[1]"), "not a JSON object");
    CHECK_ERR(load_text(&c, "{\"hidden_size\": 64}"), "missing \"model_type\"");
    CHECK_ERR(load_text(&c, "{\"model_type\": \"gpt2\"}"), "unknown architecture");
    CHECK_ERR(load_text(&c, "{\"model_type\":\"qwen2\",\"intermediate_size\":128,\"num_hidden_layers\":2,"
                            "\"num_attention_heads\":4,\"vocab_size\":100}"),
              "missing required key \"hidden_size\"");
    CHECK_ERR(load_text(&c, "{\"model_type\":\"qwen2\",\"hidden_size\":\"64\",\"intermediate_size\":128,"
                            "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"vocab_size\":100}"),
              "\"hidden_size\" must be an integer");
    CHECK_ERR(load_text(&c, "{\"model_type\":\"qwen2\",\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,"
                            "\"num_attention_heads\":4,\"num_key_value_heads\":3,\"vocab_size\":100}"),
              "not a multiple of \"num_key_value_heads\"");
    CHECK_ERR(load_text(&c, "{\"model_type\":\"qwen2\",\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,"
                            "\"num_attention_heads\":4,\"vocab_size\":100,\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4}}"),
              "unknown rope type \"yarn\"");
    CHECK_ERR(load_text(&c, "{\"model_type\":\"qwen2\",\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,"
                            "\"num_attention_heads\":4,\"vocab_size\":0}"),
              "\"vocab_size\" = 0 is out of range");
    CHECK_ERR(load_text(&c, "{\"model_type\":\"qwen2\",\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,"
                            "\"num_attention_heads\":4,\"vocab_size\":10,\"hidden_act\":\"gelu\"}"),
              "\"hidden_act\" = \"gelu\"");
    CHECK_ERR(load_text(&c, "{\"model_type\":\"qwen2\",\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,"
                            "\"num_attention_heads\":4,\"vocab_size\":10,\"layer_types\":[\"full_attention\"]}"),
              "must be a list of 2 layer types");
    CHECK_ERR(load_text(&c, "{\"model_type\":\"qwen2\",\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":1,"
                            "\"num_attention_heads\":4,\"vocab_size\":10,\"layer_types\":[\"sliding_attention\"]}"),
              "no window size is set");
    CHECK_ERR(load_text(&c, "{\"model_type\":\"qwen2\",\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":2,"
                            "\"num_attention_heads\":4,\"vocab_size\":10,\"head_dim\":15}"),
              "must be even");
    CHECK_ERR(load_text(&c, "{\"model_type\":\"qwen2\",\"model_type\":\"llama\"}"), "invalid JSON");
}

int main(int argc, char **argv) {
    snprintf(path, sizeof path, "/tmp/pn_test_cfg_%d.json", (int)getpid());
    test_classic();
    test_bad();
    test_jet_nemotron();
    test_jet_released();
    test_jet_defaults();
    test_limits();
    test_export_clean();
    if (argc > 1 && access(argv[1], F_OK) == 0) test_goldens(argv[1]);
    unlink(path);
    return pn_test_done("test_hf_config");
}
