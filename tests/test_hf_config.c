// config.json parsing: the classic keys real checkpoints ship, transformers 5's keys (the goldens), the
// rope scalings, sliding-window rules, and a catalogue of configs that must be refused by key name.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../src/pn_common.h"
#include "../src/pn_hf_config.h"
#include "pn_test.h"

static char path[256];

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
    CHECK(c.jet_heads == 12 && c.jet_head_dim == 96 && c.jet_expand_v == 2.6667 && c.jet_conv == 4 &&
              c.jet_reduction == 8 && fabsf(c.jet_norm_eps - 1e-5f) < 1e-12f,
          "jet config");
    CHECK(pn_hf_config_save(&c, path) == 0 && pn_hf_config_load(&d, path) == 0, "round trip: %s", pn_last_error());
    int same = d.arch == c.arch && d.jet_heads == c.jet_heads && d.jet_head_dim == c.jet_head_dim &&
               d.jet_expand_v == c.jet_expand_v && d.jet_reduction == c.jet_reduction;
    for (int l = 0; l < 28; l++) same &= !strcmp(c.mixer[l], d.mixer[l]) && c.window[l] == d.window[l];
    CHECK(same, "Jet-Nemotron config does not survive save + load");
    // A jet layer without its config, and a jet layer in a plain Qwen2 model, are refused.
    CHECK_ERR(load_text(&c, "{\"model_type\":\"jet_nemotron\",\"hidden_size\":64,\"intermediate_size\":128,"
                            "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10,\"layer_types\":[\"jet\"]}"),
              "efficient_attention_config.jet is missing");
    CHECK_ERR(load_text(&c, "{\"model_type\":\"qwen2\",\"hidden_size\":64,\"intermediate_size\":128,"
                            "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10,\"layer_types\":[\"jet\"]}"),
              "layer_types[0] = \"jet\"");
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
              "must list 2 layer types");
    CHECK_ERR(load_text(&c, "{\"model_type\":\"qwen2\",\"hidden_size\":64,\"intermediate_size\":128,\"num_hidden_layers\":1,"
                            "\"num_attention_heads\":4,\"vocab_size\":10,\"layer_types\":[\"sliding_attention\"]}"),
              "no sliding window size is set");
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
    if (argc > 1 && access(argv[1], F_OK) == 0) test_goldens(argv[1]);
    unlink(path);
    return pn_test_done("test_hf_config");
}
