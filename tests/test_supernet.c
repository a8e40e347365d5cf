// The once-for-all supernet (src/pn_model.c): candidate mixers per layer over one set of frozen tensors.
// - The all-attn choice is the teacher: the base model's logits, bit for bit, with no copy of it.
// - A swa candidate runs attn's tensors; jet and gdn candidates have their own, in one extra arena.
// - Switching mixers allocates nothing; any choice runs in generation (prefill + decode = full forward) and
//   training (gradients only for the chosen candidates).
// - The chosen subnet exported (Jet-Nemotron format) and loaded as a plain model gives the same logits and
//   the same gradients.
//
// usage: test_supernet POSTNAS_MKCKPT
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../src/pn_common.h"
#include "../src/pn_model.h"
#include "../src/pn_rng.h"
#include "pn_test.h"

enum { B = 2, T = 40 };
static int32_t ids[B * T];

static double rel_err(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), den += (double)b[i] * b[i];
    return sqrt(num / (den > 0 ? den : 1e-30));
}

static float *logits_of(pn_model *m) {
    pn_kvcache kc;
    if (pn_model_plan(m, B, T, 1) || pn_kvcache_init(&kc, m, B, T)) return NULL;
    float *out = NULL;
    if (!pn_model_forward(m, &kc, ids, B, T)) {
        out = pn_malloc(sizeof(float) * B * T * (size_t)m->cfg.vocab);
        pn_tensor lg = pn_rows(&m->logits, 0, B * T);
        pn_op_to_host_f32(out, &lg);
    }
    pn_kvcache_free(&kc);
    return out;
}

// Prefill T/2 then single tokens: the logits of sequence 0.
static float *incremental_of(pn_model *m) {
    const int V = m->cfg.vocab;
    pn_kvcache kc;
    if (pn_model_plan(m, 1, T, 1) || pn_kvcache_init(&kc, m, 1, T)) return NULL;
    float *out = pn_malloc(sizeof(float) * T * (size_t)V);
    int rc = pn_model_forward(m, &kc, ids, 1, T / 2);
    pn_tensor lg = pn_rows(&m->logits, 0, T / 2);
    if (!rc) pn_op_to_host_f32(out, &lg);
    for (int t = T / 2; t < T && !rc; t++) {
        rc = pn_model_forward(m, &kc, ids + t, 1, 1);
        pn_tensor l1 = pn_rows(&m->logits, 0, 1);
        if (!rc) pn_op_to_host_f32(out + (size_t)t * V, &l1);
    }
    pn_kvcache_free(&kc);
    if (rc) free(out), out = NULL;
    return out;
}

// Gradients (host, by parameter name) after forward + backward_hidden(U) with the named tensors trainable.
static float *train_grad(pn_model *m, const char *name, int trainable_prefix_layer_jet) {
    (void)trainable_prefix_layer_jet;
    for (int i = 0; i < m->nparams; i++)
        if (!strcmp(m->param_list[i].name, name)) {
            const pn_param *p = &m->param_list[i];
            if (!p->grad->data) return NULL;
            float *g = pn_malloc(sizeof(float) * (size_t)pn_param_numel(p));
            pn_op_to_host_f32(g, p->grad);
            return g;
        }
    return NULL;
}

static int step(pn_model *m, pn_arena *a) {
    pn_model_grads_zero(m);
    if (pn_model_forward_train(m, ids, B, T, NULL, 0)) return -1;
    a->used = 0;
    pn_tensor u = pn_arena_tensor(a, PN_F32, 2, (int64_t[]){B * T, m->cfg.hidden});
    for (int64_t i = 0; i < B * T * (int64_t)m->cfg.hidden; i++) ((float *)u.data)[i] = pn_rng_normal(41, 0, (uint64_t)i);
    return pn_model_backward_hidden(m, &u);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: test_supernet POSTNAS_MKCKPT\n");
        return 2;
    }
    char dir[] = "/tmp/pn_test_supernet_XXXXXX", cmd[1024], base[256], sub[256];
    if (!mkdtemp(dir)) return 1;
    snprintf(base, sizeof base, "%s/base", dir);
    snprintf(sub, sizeof sub, "%s/subnet", dir);
    snprintf(cmd, sizeof cmd, "%s --out %s --layers 4 --hidden 32 --heads 4 --kv-heads 2 --intermediate 48 --vocab 300 "
             "--dtype f32 --init-std 0.1 --seed 5 > /dev/null", argv[1], base);
    CHECK(system(cmd) == 0, "%s", cmd);
    for (int i = 0; i < B * T; i++) ids[i] = (int32_t)(pn_splitmix64((uint64_t)i + 3) % 300);
    pn_model m;
    if (pn_model_load(&m, base, PN_CPU)) {
        CHECK(0, "%s", pn_last_error());
        return pn_test_done("test_supernet");
    }
    float *teacher = logits_of(&m);
    const int base_params = m.nparams;
    const size_t base_bytes = m.params.used;
    const char *cands[4] = {"swa=6,jet,gdn", "swa=6,jet,gdn", "swa=6,jet,gdn", "swa=6,jet,gdn"};
    CHECK(pn_model_add_candidates(&m, cands, 0.05, 9) == 0, "%s", pn_last_error());
    CHECK(m.params.used == base_bytes && m.layers[0].nslots == 4 && m.layers[0].slot[1].shares == 0,
          "the base tensors stay; swa shares attn's");
    printf("supernet: 4 layers x {attn, swa, jet, gdn}: %d base tensors, %d candidate tensors in %.1f KiB (swa: none)\n",
           base_params, m.nparams - base_params, (double)m.cand.used / 1024);
    // Teacher view.
    float *t2 = logits_of(&m);
    CHECK(t2 && teacher && !memcmp(t2, teacher, sizeof(float) * B * T * 300), "the all-attn choice must be the base model");
    free(t2);
    CHECK_ERR(pn_model_set_mixer(&m, 1, "deltanet"), "layer 1 has no deltanet mixer (it has attn, swa, jet, gdn)");
    // A subnet: jet, attn, gdn, swa.
    static const char *choice[4] = {"jet", "attn", "gdn", "swa"};
    for (int l = 0; l < 4; l++) CHECK(pn_model_set_mixer(&m, l, choice[l]) == 0, "%s", pn_last_error());
    float *sn = logits_of(&m), *inc = incremental_of(&m);
    CHECK(sn && inc, "subnet forward: %s", pn_last_error());
    const double e_inc = sn && inc ? rel_err(inc, sn, T * 300) : 1;
    printf("supernet: subnet jet/attn/gdn/swa: prefill + decode vs full forward %.2g\n", e_inc);
    CHECK(e_inc < 1e-5, "subnet incremental decode vs full forward %g", e_inc);
    // Switching back and forth allocates nothing and reproduces both.
    for (int l = 0; l < 4; l++) pn_model_set_mixer(&m, l, "attn");
    float *t3 = logits_of(&m);
    for (int l = 0; l < 4; l++) pn_model_set_mixer(&m, l, choice[l]);
    float *sn2 = logits_of(&m);
    CHECK(t3 && !memcmp(t3, teacher, sizeof(float) * B * T * 300) && sn2 && sn && !memcmp(sn2, sn, sizeof(float) * B * T * 300),
          "switching mixers must reproduce each choice");
    free(t3), free(sn2);
    // Export the subnet and load it as a plain Jet-Nemotron model: the same logits.
    CHECK(pn_model_export(&m, sub) == 0, "export: %s", pn_last_error());
    CHECK_ERR(pn_model_export(&m, sub), "already exists");
    pn_model e;
    if (pn_model_load(&e, sub, PN_CPU) == 0) {
        float *le = logits_of(&e);
        const double err = le && sn ? rel_err(le, sn, B * T * 300) : 1;
        printf("supernet: exported subnet (config.json %s) loaded as a plain model: logits %.2g\n", pn_arch_name(e.cfg.arch), err);
        CHECK(err == 0 && e.cfg.arch == PN_ARCH_JET_NEMOTRON && !strcmp(e.cfg.mixer[0], "jet") &&
                  !strcmp(e.cfg.mixer[3], "swa") && e.cfg.window[3] == 6,
              "exported subnet: logits %g", err);
        free(le);
        // Training: the candidates trainable, the base frozen; gradients only for the chosen ones, equal to
        // the exported model's with its mixers trainable.
        uint8_t *tr = pn_calloc((size_t)m.nparams, 1);
        for (int i = base_params; i < m.nparams; i++) tr[i] = 1;
        pn_arena a;
        pn_arena_init(&a, PN_CPU, pn_arena_need(PN_F32, 2, (int64_t[]){B * T, 32}));
        int rc = pn_model_grads_init(&m, tr) || pn_model_train_plan(&m, B, T, NULL) || step(&m, &a);
        CHECK(rc == 0, "supernet training step: %s", pn_last_error());
        uint8_t *tre = pn_calloc((size_t)e.nparams, 1);
        for (int i = 0; i < e.nparams; i++) {
            int l;
            tre[i] = sscanf(e.param_list[i].name, "model.layers.%d.self_attn.", &l) == 1 && (l == 0 || l == 2);
        }
        rc = pn_model_grads_init(&e, tre) || pn_model_train_plan(&e, B, T, NULL) || step(&e, &a);
        CHECK(rc == 0, "exported model training step: %s", pn_last_error());
        double worst = 0;
        int compared = 0, idle_zero = 1;
        for (int i = base_params; i < m.nparams; i++) {
            const pn_param *p = &m.param_list[i];
            int l;
            char type[16], suffix[64];
            if (sscanf(p->name, "model.layers.%d.candidates.%15[^.].%63s", &l, type, suffix) != 3) continue;
            float *g = train_grad(&m, p->name, 0);
            if (strcmp(type, choice[l])) { // not chosen: its gradient stays zero
                for (int64_t j = 0; g && j < pn_param_numel(p); j++) idle_zero &= g[j] == 0;
            } else {
                char en[128];
                snprintf(en, sizeof en, "model.layers.%d.self_attn.%s", l, suffix);
                float *ge = train_grad(&e, en, 0);
                if (g && ge) worst = fmax(worst, rel_err(g, ge, pn_param_numel(p))), compared++;
                free(ge);
            }
            free(g);
        }
        printf("supernet: training the chosen candidates: %d gradients vs the exported model's %.2g; unchosen ones zero: %s\n",
               compared, worst, idle_zero ? "yes" : "NO");
        CHECK(compared == 26 && worst == 0 && idle_zero, "supernet gradients: %d compared, worst %g", compared, worst);
        free(tr), free(tre);
        pn_arena_free(&a);
        pn_model_free(&e);
    } else {
        CHECK(0, "load the export: %s", pn_last_error());
    }
    free(teacher), free(sn), free(inc);
    pn_model_free(&m);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) return 1;
    return pn_test_done("test_supernet");
}
