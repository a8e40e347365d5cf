// Block descriptions (src/blocks/): Jet-Nemotron-2B's JetBlock parameters by name and shape exactly as its
// Hugging Face export (REFERENCE.md §5), the decode-state sizes behind ANCHORS.md's bandwidth floor
// (Jet-Nemotron-2B at 64K context, batch 128), attention blocks agreeing with the model's own parameter
// list, and the configs that must be refused with the key named.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../src/pn_block.h"
#include "../src/pn_model.h"
#include "../src/pn_common.h"
#include "pn_test.h"

static pn_model_config qwen25_15b(void) {
    pn_model_config m = {.arch = PN_ARCH_QWEN2, .hidden = 1536, .intermediate = 8960, .n_layers = 28, .n_heads = 12,
                         .n_kv_heads = 2, .head_dim = 128, .vocab = 151936, .qkv_bias = 1, .tie_embeddings = 1};
    return m;
}

static void test_jet_2b(void) {
    pn_model_config m = qwen25_15b();
    pn_block_cfg c = pn_block_default(&m, "jet");
    const pn_block_type *t = pn_block_find("jet");
    CHECK(t && t->check(&c, "2B") == 0, "%s", pn_last_error());
    static const struct {
        const char *name;
        int ndim;
        int64_t d0, d1;
    } want[] = {{"q_proj.weight", 2, 1152, 1536}, {"k_proj.weight", 2, 1152, 1536}, {"v_proj.weight", 2, 3072, 1536},
                {"g_proj.weight", 2, 3072, 1536}, {"a_proj.weight", 2, 12, 1536},  {"b_proj.weight", 2, 12, 1536},
                {"A_log", 1, 12, 0},              {"dt_bias", 1, 12, 0},
                {"dynamic_conv1d.kernel_generator.w1.weight", 2, 384, 1536},
                {"dynamic_conv1d.kernel_generator.w2.weight", 2, 12288, 384},
                {"dynamic_conv1d.kernel_generator.w2.bias", 1, 12288, 0},
                {"o_norm.weight", 1, 256, 0},     {"o_proj.weight", 2, 1536, 3072}};
    const int n = t->params(&c, 5, NULL);
    pn_param ps[32];
    CHECK(n == 13 && t->params(&c, 5, ps) == 13, "JetBlock has %d parameters, want 13", n);
    for (int i = 0; i < 13 && n == 13; i++) {
        char full[128];
        snprintf(full, sizeof full, "model.layers.5.self_attn.%s", want[i].name);
        int found = 0;
        for (int j = 0; j < n; j++)
            if (!strcmp(ps[j].name, full))
                found = ps[j].ndim == want[i].ndim && ps[j].shape[0] == want[i].d0 && (want[i].ndim < 2 || ps[j].shape[1] == want[i].d1);
        CHECK(found, "JetBlock parameter %s [%lld, %lld] missing or misshaped", full, (long long)want[i].d0,
              (long long)want[i].d1);
    }
    const int64_t count = pn_block_param_count(t, &c);
    CHECK(count == 2 * 1152 * 1536 + 2 * 3072 * 1536 + 2 * 12 * 1536 + 24 + 384 * 1536 + 12288 * 384 + 12288 + 256 + 1536 * 3072,
          "JetBlock parameter count %lld", (long long)count);
}

// ANCHORS.md: Jet-Nemotron-2B at batch 128 and 64K context holds full-attention KV 17.2 GB (layers 14, 19),
// SWA KV 0.3 GB (20, 21; window 1152) and fp32 JetBlock states of 3.6 GB (read + written: 7.2).
static void test_state_sizes(void) {
    pn_model_config m = qwen25_15b();
    pn_block_cfg attn = pn_block_default(&m, "attn"), swa = pn_block_default(&m, "swa"), jet = pn_block_default(&m, "jet");
    const int64_t ctx = 65536, batch = 128;
    const double kv = 2.0 * batch * (double)pn_block_find("attn")->state_bytes(&attn, ctx, 2);
    const double sw = 2.0 * batch * (double)pn_block_find("swa")->state_bytes(&swa, ctx, 2);
    const double js = 24.0 * batch * (double)pn_block_find("jet")->state_bytes(&jet, ctx, 2);
    printf("Jet-Nemotron-2B, 64K x 128: full KV %.2f GB, SWA KV %.3f GB, JetBlock state %.2f GB\n", kv / 1e9, sw / 1e9,
           js / 1e9);
    CHECK(kv > 17.1e9 && kv < 17.3e9, "full-attention KV %.3g", kv);
    CHECK(sw > 0.29e9 && sw < 0.31e9, "SWA KV %.3g", sw);
    CHECK(js > 3.62e9 && js < 3.62e9 * 1.02, "JetBlock state %.4g (3.62 GB recurrent + the conv cache)", js);
    // The window bounds the SWA cache; the full cache grows with the context.
    CHECK(pn_block_find("swa")->state_bytes(&swa, 100, 2) == pn_block_find("attn")->state_bytes(&attn, 100, 2),
          "below the window, SWA and full attention cache the same");
    CHECK(pn_block_find("jet")->state_bytes(&jet, 100, 2) == pn_block_find("jet")->state_bytes(&jet, 1 << 20, 2),
          "a linear block's state does not grow with the context");
}

static void test_attn_matches_model(void) {
    pn_model_config m = qwen25_15b();
    m.n_layers = 1;
    pn_block_cfg c = pn_block_default(&m, "attn");
    pn_param bp[16], mp[16];
    const int nb = pn_block_find("attn")->params(&c, 0, bp), nm = pn_model_param_list(&m, NULL, mp);
    int matched = 0;
    for (int i = 0; i < nb; i++)
        for (int j = 0; j < nm; j++)
            if (!strcmp(bp[i].name, mp[j].name) && bp[i].ndim == mp[j].ndim && bp[i].shape[0] == mp[j].shape[0] &&
                (bp[i].ndim < 2 || bp[i].shape[1] == mp[j].shape[1]))
                matched++;
    CHECK(nb == 7 && matched == nb, "attn block: %d of %d parameters match the model's", matched, nb);
    pn_block_cfg g = pn_block_default(&m, "gdn");
    const int64_t pg = pn_block_param_count(pn_block_find("gdn"), &g), pd = pn_block_param_count(pn_block_find("deltanet"), &g);
    CHECK(pg - pd == 12 * 1536 + 24, "gdn - deltanet = a_proj + A_log + dt_bias, got %lld", (long long)(pg - pd));
    CHECK(pn_block_find("gdn")->flops(&g, 0) > 0 && pn_block_find("attn")->flops(&c, 4095) > pn_block_find("attn")->flops(&c, 0),
          "flops");
}

static void test_refusals(void) {
    pn_model_config m = qwen25_15b();
    pn_block_cfg c = pn_block_default(&m, "jet");
    const pn_block_type *jet = pn_block_find("jet");
    c.lin_head_k = 300;
    CHECK_ERR(jet->check(&c, "cfg.yaml: layer 3"), "cfg.yaml: layer 3: jet.head_dim = 300");
    c = pn_block_default(&m, "jet");
    c.conv_size = 0;
    CHECK_ERR(jet->check(&c, "x"), "jet.conv_size = 0");
    c = pn_block_default(&m, "jet");
    c.gen_reduction = 7; // floors, as NVIDIA's code: 3072 // 7 = 438
    CHECK(jet->check(&c, "x") == 0, "a reduction that does not divide the value dim floors");
    c.gen_reduction = 4000; // wider than the value dim: no generator width left
    CHECK_ERR(jet->check(&c, "x"), "jet.dconv_generator_reduction = 4000");
    c = pn_block_default(&m, "jet");
    c.lin_heads = 5;
    c.expand_v = 2.1;
    CHECK_ERR(jet->check(&c, "x"), "does not divide the value dim");
    c = pn_block_default(&m, "gdn");
    c.expand_v = 20;
    CHECK_ERR(pn_block_find("gdn")->check(&c, "x"), "gdn.expand_v = 20");
    c = pn_block_default(&m, "swa");
    c.window = 0;
    CHECK_ERR(pn_block_find("swa")->check(&c, "x"), "swa: window_size 0");
    c = pn_block_default(&m, "attn");
    c.n_kv_heads = 5;
    CHECK_ERR(pn_block_find("attn")->check(&c, "x"), "not a positive multiple of num_key_value_heads 5");
    pn_clear_error();
    CHECK(pn_block_find("mamba3") == NULL && strstr(pn_last_error(), "unknown block type \"mamba3\""), "unknown type");
}

// A Jet-Nemotron config's own JetBlock shape wins over the defaults.
static void test_from_jet_config(void) {
    pn_model_config m = qwen25_15b();
    pn_block_cfg j = pn_block_default(&m, "jet");
    j.lin_heads = 16, j.lin_head_k = 128, j.expand_v = 2.0, j.conv_size = 4, j.gen_reduction = 8, j.norm_eps = 1e-5f;
    pn_config_set_mixer(&m, &j);
    m.window[3] = 2048;
    pn_block_cfg c = pn_block_default(&m, "jet");
    CHECK(c.lin_heads == 16 && c.lin_head_k == 128 && c.expand_v == 2.0 && c.window == 2048, "jet config not used");
    CHECK(pn_block_find("jet")->check(&c, "x") == 0, "%s", pn_last_error());
}

// pn_block_init: tensors whose name and shape match the pretrained attention's are copied, the rest get the
// published init (A_log in log [1, 16], dt_bias = softplus^-1 of dt in [1e-3, 0.1], conv kernels within
// +-1/sqrt(W), generator weights zero, generator bias small, norms one).
static void test_init(void) {
    pn_model_config m;
    memset(&m, 0, sizeof m);
    m.hidden = 64, m.n_heads = 4, m.n_kv_heads = 4, m.head_dim = 16, m.n_layers = 1, m.qkv_bias = 1;
    pn_block_cfg ac = pn_block_default(&m, "attn");
    const pn_block_type *at = pn_block_find("attn");
    pn_param ap[PN_BLOCK_MAX_PARAMS];
    const int na = at->params(&ac, 0, ap);
    pn_tensor attn[PN_BLOCK_MAX_PARAMS];
    float *store[PN_BLOCK_MAX_PARAMS];
    for (int i = 0; i < na; i++) {
        store[i] = pn_malloc(sizeof(float) * (size_t)pn_param_numel(&ap[i]));
        for (int64_t j = 0; j < pn_param_numel(&ap[i]); j++) store[i][j] = (float)(i + 1) + 1e-3f * (float)j;
        attn[i] = pn_view(store[i], PN_F32, PN_CPU, ap[i].ndim, ap[i].shape);
    }
    const char *types[] = {"swa", "gdn", "jet"};
    const int want_copied[] = {7, 4, 4}; // swa: all 7 (q/k/v weight + bias, o); gdn/jet: q, k, v, o_proj weights
    for (int t = 0; t < 3; t++) {
        pn_block_cfg c = pn_block_default(&m, types[t]);
        c.lin_heads = 4, c.lin_head_k = 16, c.expand_v = 1.0, c.gen_reduction = 4; // sized like the attention
        const pn_block_type *bt = pn_block_find(types[t]);
        pn_param pl[PN_BLOCK_MAX_PARAMS];
        const int n = bt->params(&c, 0, pl);
        pn_tensor p[PN_BLOCK_MAX_PARAMS];
        float *buf[PN_BLOCK_MAX_PARAMS];
        for (int i = 0; i < n; i++) {
            buf[i] = pn_malloc(sizeof(float) * (size_t)pn_param_numel(&pl[i]));
            p[i] = pn_view(buf[i], PN_F32, PN_CPU, pl[i].ndim, pl[i].shape);
        }
        const int copied = pn_block_init(bt, &c, 0, p, &ac, attn, 0.02, 7);
        CHECK(copied == want_copied[t], "%s: copied %d tensors, expected %d", types[t], copied, want_copied[t]);
        int bad = 0;
        for (int i = 0; i < n; i++) {
            const int64_t k = pn_param_numel(&pl[i]);
            int src = -1;
            for (int j = 0; j < na; j++)
                if (!strcmp(pl[i].name, ap[j].name) && pn_param_numel(&ap[j]) == k) src = j;
            for (int64_t j = 0; j < k; j++) {
                const float v = buf[i][j];
                int ok = 1;
                if (src >= 0) ok = v == store[src][j];
                else if (pl[i].kind == PN_PARAM_A_LOG) ok = v >= 0.0f && v <= logf(16.0f) + 1e-6f;
                else if (pl[i].kind == PN_PARAM_DT_BIAS) ok = v > -7.0f && v < -2.2f; // softplus^-1 of [1e-3, 0.1]
                else if (pl[i].kind == PN_PARAM_CONV) ok = fabsf(v) <= 0.5f + 1e-6f;
                else if (pl[i].kind == PN_PARAM_ZERO) ok = v == 0.0f;
                else if (pl[i].kind == PN_PARAM_NORM) ok = v == 1.0f;
                else if (pl[i].kind == PN_PARAM_GEN_BIAS) ok = fabsf(v) < 0.2f;
                else ok = fabsf(v) < 0.2f; // N(0, 0.02)
                bad += !ok;
            }
        }
        CHECK(bad == 0, "%s: %d initialized values out of their range", types[t], bad);
        for (int i = 0; i < n; i++) free(buf[i]);
    }
    for (int i = 0; i < na; i++) free(store[i]);
}

int main(void) {
    test_init();
    test_from_jet_config();
    test_jet_2b();
    test_state_sizes();
    test_attn_matches_model();
    test_refusals();
    return pn_test_done("test_blocks");
}
