// The model's training forward and backward (src/pn_train.c) against torch autograd on the same weights
// (tests/make_model_grad_goldens.py): a Jet-Nemotron-style hybrid with attn / swa / jet / gdn layers (the
// blocks in torch float64, the rest transformers' Qwen2) and transformers' Qwen3, loss = sum(logits * R).
// Logits and the gradient of every parameter are compared. Then, on the hybrid: recompute gives the same
// gradients as keeping activations; a frozen subset gets gradients only where it trains (equal to the
// full run's) while gradients still flow through frozen layers; a packed batch (cu_seqlens) equals the
// same sequences as a batch; and bad input is refused with one clear error.
//
// On the CPU, also central finite differences of the loss against the backward on a postnas-mkckpt hybrid.
//
// usage: test_train GOLDENS_DIR [--device cpu|cuda] [--mkckpt PATH]     (GOLDENS_DIR holds model_grad/)
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../src/pn_common.h"
#include "../src/pn_model.h"
#include "../src/pn_rng.h"
#include "../src/pn_safetensors.h"
#include "pn_test.h"

static pn_device dev = PN_CPU;
// tol_grad bounds every tensor's relative error; tol_grad_all the error of all gradients as one vector.
static double tol_logits = 1e-5, tol_grad = 1e-4, tol_grad_all = 1e-4, tol_same = 1e-6, tol_decode = 1e-6;

static double rel_err(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]), den += (double)b[i] * b[i];
    return sqrt(num / (den > 0 ? den : 1e-30));
}

static float *st_get(pn_safetensors *st, const char *name, int64_t *n) {
    const pn_st_entry *e = pn_st_find(st, name);
    if (!e) return NULL;
    *n = pn_st_numel(e);
    float *x = pn_malloc(sizeof(float) * (size_t)*n);
    if (pn_st_to_f32(st, e, x)) {
        free(x);
        return NULL;
    }
    return x;
}

typedef struct {
    pn_safetensors st;
    int B, T, V;
    int32_t *ids;
    float *R, *logits;
} golden;

static int golden_open(golden *g, const char *dir) {
    char path[600];
    snprintf(path, sizeof path, "%s/golden.safetensors", dir);
    if (pn_st_open(&g->st, path)) return -1;
    const pn_st_entry *e = pn_st_find(&g->st, "ids");
    if (!e || e->ndim != 2) return pn_errorf("%s: no ids [B, T]", path);
    g->B = (int)e->shape[0], g->T = (int)e->shape[1];
    if (e->dtype != PN_ST_I32) return pn_errorf("%s: ids must be I32", path);
    int64_t n = pn_st_numel(e);
    g->ids = pn_malloc(sizeof(int32_t) * (size_t)n);
    memcpy(g->ids, e->data, sizeof(int32_t) * (size_t)n);
    g->R = st_get(&g->st, "R", &n);
    g->V = (int)(n / ((int64_t)g->B * g->T));
    g->logits = st_get(&g->st, "logits", &n);
    return g->R && g->logits ? 0 : pn_errorf("%s: R or logits missing", path);
}

static void golden_close(golden *g) {
    free(g->ids), free(g->R), free(g->logits);
    pn_st_close(&g->st);
}

// dlogits = R on the device (activation dtype).
static pn_tensor upload_R(pn_arena *a, const golden *g) {
    const int64_t N = (int64_t)g->B * g->T;
    pn_tensor t = pn_arena_tensor(a, pn_device_dtype(dev), 2, (int64_t[]){N, g->V});
    pn_op_from_host_f32(&t, g->R);
    return t;
}

// All gradients of a model, on the host, in param_list order (NULL for frozen ones).
static float **grads_host(const pn_model *m) {
    float **out = pn_calloc((size_t)m->nparams, sizeof(float *));
    for (int i = 0; i < m->nparams; i++)
        if (m->param_list[i].grad->data) {
            out[i] = pn_malloc(sizeof(float) * (size_t)pn_param_numel(&m->param_list[i]));
            pn_op_to_host_f32(out[i], m->param_list[i].grad);
        }
    return out;
}

static void grads_free(const pn_model *m, float **g) {
    for (int i = 0; i < m->nparams; i++) free(g[i]);
    free(g);
}

// Forward + backward of the golden batch (optionally packed as one row); 0 or -1.
static int step(pn_model *m, const golden *g, pn_arena *a, int packed) {
    pn_model_grads_zero(m);
    const int32_t cu[3] = {0, g->T, 2 * g->T};
    int rc = packed ? pn_model_forward_train(m, g->ids, 1, g->B * g->T, cu, g->B)
                    : pn_model_forward_train(m, g->ids, g->B, g->T, NULL, 0);
    if (rc) return -1;
    a->used = 0;
    pn_tensor R = upload_R(a, g);
    return pn_model_backward(m, &R);
}

// Worst relative error of the model's gradients against `ref` (host, param_list order), over the params
// where both exist; names the worst. *all (when not NULL): the relative error of all of them as one vector.
static double worst_grad_all(const pn_model *m, float **got, float **ref, char *worst, size_t n, double *all) {
    double e = 0, num = 0, den = 0;
    snprintf(worst, n, "-");
    for (int i = 0; i < m->nparams; i++) {
        if (!got[i] || !ref[i]) continue;
        const int64_t k = pn_param_numel(&m->param_list[i]);
        const double ei = rel_err(got[i], ref[i], k);
        for (int64_t j = 0; j < k; j++)
            num += ((double)got[i][j] - ref[i][j]) * ((double)got[i][j] - ref[i][j]), den += (double)ref[i][j] * ref[i][j];
        if (ei > e) e = ei, snprintf(worst, n, "%s", m->param_list[i].name);
    }
    if (all) *all = sqrt(num / (den > 0 ? den : 1e-30));
    return e;
}

static double worst_grad(const pn_model *m, float **got, float **ref, char *worst, size_t n) {
    return worst_grad_all(m, got, ref, worst, n, NULL);
}

static void check_against_torch(const char *root, const char *name, int is_hybrid) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/model_grad/%s", root, name);
    golden g;
    if (golden_open(&g, dir)) {
        CHECK(0, "%s", pn_last_error());
        return;
    }
    pn_model m;
    if (pn_model_load(&m, dir, dev)) {
        CHECK(0, "%s", pn_last_error());
        golden_close(&g);
        return;
    }
    const int64_t N = (int64_t)g.B * g.T;
    pn_arena a;
    int ok = pn_model_grads_init(&m, NULL) == 0 && pn_model_train_plan(&m, g.B, g.T, NULL) == 0 &&
             pn_arena_init(&a, dev, pn_arena_need(pn_device_dtype(dev), 2, (int64_t[]){N, g.V})) == 0;
    CHECK(ok, "%s: %s", name, pn_last_error());
    if (!ok) {
        pn_model_free(&m);
        golden_close(&g);
        return;
    }
    int rc = step(&m, &g, &a, 0);
    CHECK(rc == 0, "%s step: %s", name, pn_last_error());
    pn_tensor lt = pn_model_train_logits(&m);
    float *logits = pn_malloc(sizeof(float) * (size_t)(N * g.V));
    pn_op_to_host_f32(logits, &lt);
    const double el = rel_err(logits, g.logits, N * g.V);
    // torch's gradients by parameter name
    float **ref = pn_calloc((size_t)m.nparams, sizeof(float *)), **got = grads_host(&m);
    int missing = 0;
    for (int i = 0; i < m.nparams; i++) {
        char key[160];
        int64_t n = 0;
        snprintf(key, sizeof key, "grad.%s", m.param_list[i].name);
        ref[i] = st_get(&g.st, key, &n);
        if (!ref[i] || n != pn_param_numel(&m.param_list[i])) missing++;
    }
    CHECK(missing == 0, "%s: %d parameters without a matching torch gradient", name, missing);
    char worst[160];
    double eall = 0;
    const double eg = worst_grad_all(&m, got, ref, worst, sizeof worst, &eall);
    printf("%-7s %-4s B %d T %d: logits %.2e; %d parameter gradients: all %.2e, worst tensor %.2e (%s)\n", name,
           pn_device_name(dev), g.B, g.T, el, m.nparams, eall, eg, worst);
    CHECK(el <= tol_logits, "%s logits %.3e", name, el);
    CHECK(eg <= tol_grad, "%s gradient of %s %.3e", name, worst, eg);
    CHECK(eall <= tol_grad_all, "%s gradients %.3e", name, eall);

    if (!is_hybrid) {
        // recompute every layer: here consecutive layers are of one type and share one buffer set (the last add
        // of each writing the next layer's input norm into it, the forward's fusion): less memory, the same
        // gradients as keeping everything
        uint8_t *rec = pn_calloc((size_t)m.cfg.n_layers, 1);
        memset(rec, 1, (size_t)m.cfg.n_layers);
        const size_t keep = pn_model_train_bytes(&m);
        pn_train_opts o = {.recompute = rec};
        rc = pn_model_train_plan(&m, g.B, g.T, &o) || step(&m, &g, &a, 0);
        CHECK(rc == 0, "%s recompute: %s", name, pn_last_error());
        float **gs = grads_host(&m);
        const double er = worst_grad(&m, gs, got, worst, sizeof worst);
        printf("%-7s %-4s recompute all layers: %.1f -> %.1f KiB planned, gradients vs keeping %.2e (%s)\n", name,
               pn_device_name(dev), keep / 1024.0, pn_model_train_bytes(&m) / 1024.0, er, worst);
        CHECK(er <= tol_same && pn_model_train_bytes(&m) < keep, "%s recompute %.3e", name, er);
        grads_free(&m, gs);
        free(rec);
    }
    if (is_hybrid) {
        // recompute every layer: same gradients
        uint8_t *rec = pn_calloc((size_t)m.cfg.n_layers, 1);
        memset(rec, 1, (size_t)m.cfg.n_layers);
        const size_t keep = pn_model_train_bytes(&m);
        pn_train_opts o = {.recompute = rec};
        rc = pn_model_train_plan(&m, g.B, g.T, &o) || step(&m, &g, &a, 0);
        CHECK(rc == 0, "recompute: %s", pn_last_error());
        float **gr = grads_host(&m);
        const double er = worst_grad(&m, gr, got, worst, sizeof worst);
        printf("%-7s %-4s recompute all layers: %.1f -> %.1f KiB planned, gradients vs keeping %.2e (%s)\n", name,
               pn_device_name(dev), keep / 1024.0, pn_model_train_bytes(&m) / 1024.0, er, worst);
        // (this model has one layer of each type, so recompute shares nothing here: no memory saved)
        CHECK(er <= tol_same && pn_model_train_bytes(&m) <= keep, "recompute %.3e", er);
        grads_free(&m, gr);

        // a packed batch of equal sequences is run as the plain batch
        rc = pn_model_train_plan(&m, g.B, g.T, NULL) || step(&m, &g, &a, 1);
        CHECK(rc == 0, "packed as a batch: %s", pn_last_error());
        {
            pn_tensor lu = pn_model_train_logits(&m);
            float *lq = pn_malloc(sizeof(float) * (size_t)(N * g.V));
            pn_op_to_host_f32(lq, &lu);
            float **gu = grads_host(&m);
            const double eu = rel_err(lq, logits, N * g.V), eug = worst_grad(&m, gu, got, worst, sizeof worst);
            printf("%-7s %-4s packed [1, %d] of equal sequences (run as the batch): logits %.2e, gradients %.2e\n",
                   name, pn_device_name(dev), g.B * g.T, eu, eug);
            // CPU: the same bits; CUDA: up to the order of the fp32 atomics some backward kernels sum with
            const double tol_u = dev == PN_CPU ? 0.0 : tol_same;
            CHECK(eu <= tol_u && eug <= tol_u, "equal packed sequences as a batch %.3e %.3e", eu, eug);
            free(lq);
            grads_free(&m, gu);
        }
        // the packed kernels: the two sequences as one row with cu_seqlens (under the [B, T] plan: a packed
        // row may hold all B T tokens)
        setenv("PN_KEEP_PACKED", "1", 1);
        rc = step(&m, &g, &a, 1);
        unsetenv("PN_KEEP_PACKED");
        CHECK(rc == 0, "packed: %s", pn_last_error());
        lt = pn_model_train_logits(&m);
        float *lp = pn_malloc(sizeof(float) * (size_t)(N * g.V));
        pn_op_to_host_f32(lp, &lt);
        gr = grads_host(&m);
        const double ep = rel_err(lp, logits, N * g.V), epg = worst_grad(&m, gr, got, worst, sizeof worst);
        printf("%-7s %-4s packed [1, %d] with cu_seqlens vs batch [%d, %d]: logits %.2e, gradients %.2e (%s)\n", name,
               pn_device_name(dev), g.B * g.T, g.B, g.T, ep, epg, worst);
        if (dev == PN_CPU) { // fp32: the same sums in the same order, up to the attention's tile bounds
            CHECK(ep <= tol_same && epg <= tol_same * 10, "packed %.3e %.3e", ep, epg);
        } else { // bf16: the packed batch takes the own attention kernels, the [B, T] one cuDNN's, and each
                 // rounds differently; both must match torch's fp32 goldens as closely as the batch does
            const double el_p = rel_err(lp, g.logits, N * g.V), eg_p = worst_grad(&m, gr, ref, worst, sizeof worst);
            printf("%-7s %-4s packed vs torch: logits %.2e, worst tensor %.2e (%s)\n", name, pn_device_name(dev), el_p,
                   eg_p, worst);
            CHECK(el_p <= tol_logits && eg_p <= tol_grad, "packed vs torch %.3e %.3e", el_p, eg_p);
        }
        free(lp);
        grads_free(&m, gr);
        { // as many documents as tokens (each alone) fits the same plan
            int32_t *cu_all = pn_malloc(sizeof(int32_t) * (size_t)(N + 1));
            for (int64_t i = 0; i <= N; i++) cu_all[i] = (int32_t)i;
            rc = pn_model_forward_train(&m, g.ids, 1, (int)N, cu_all, (int)N);
            CHECK(rc == 0, "%lld one-token documents: %s", (long long)N, pn_last_error());
            free(cu_all);
        }

        // frozen: only the linear blocks train (the PostNAS setting)
        uint8_t *tr = pn_calloc((size_t)m.nparams, 1);
        int ntrain = 0;
        for (int i = 0; i < m.nparams; i++) {
            int l = -1;
            if (sscanf(m.param_list[i].name, "model.layers.%d.self_attn.", &l) == 1 &&
                strstr(m.param_list[i].name, "self_attn") &&
                (!strcmp(m.cfg.mixer[l], "jet") || !strcmp(m.cfg.mixer[l], "gdn")))
                tr[i] = 1, ntrain++;
        }
        rc = pn_model_grads_init(&m, tr) || pn_model_train_plan(&m, g.B, g.T, NULL) || step(&m, &g, &a, 0);
        CHECK(rc == 0, "frozen: %s", pn_last_error());
        gr = grads_host(&m);
        int with = 0, wrong = 0;
        for (int i = 0; i < m.nparams; i++) with += gr[i] != NULL, wrong += (gr[i] != NULL) != (tr[i] != 0);
        const double ef = worst_grad(&m, gr, got, worst, sizeof worst);
        printf("%-7s %-4s only jet/gdn train: %d of %d parameters have gradients, vs all trainable %.2e (%s)\n", name,
               pn_device_name(dev), with, m.nparams, ef, worst);
        CHECK(wrong == 0 && with == ntrain && ntrain > 0, "frozen buffers: %d with, %d wrong", with, wrong);
        CHECK(ef <= tol_same * 10, "frozen gradients %.3e", ef);
        grads_free(&m, gr);
        // frozen MLPs keep no activations for their weights' gradients: a smaller plan; a plan made while
        // they were frozen refuses a backward that finds them trainable
        const size_t frozen_bytes = pn_model_train_bytes(&m);
        rc = pn_model_grads_init(&m, NULL) || pn_model_train_plan(&m, g.B, g.T, NULL);
        const size_t all_bytes = pn_model_train_bytes(&m);
        CHECK(rc == 0 && frozen_bytes < all_bytes, "plan with frozen MLPs %zu bytes, all trainable %zu", frozen_bytes,
              all_bytes);
        rc = pn_model_grads_init(&m, tr) || pn_model_train_plan(&m, g.B, g.T, NULL) || pn_model_grads_init(&m, NULL);
        CHECK(rc == 0, "%s", pn_last_error());
        rc = step(&m, &g, &a, 0);
        CHECK(rc != 0 && strstr(pn_last_error(), "plan after pn_model_grads_init"),
              "a stale plan's backward: rc %d (%s)", rc, pn_last_error());
        CHECK(pn_model_train_plan(&m, g.B, g.T, NULL) == 0, "%s", pn_last_error());
        free(tr);
        free(rec);

        // generation: prefill of a prefix then single-token steps through the KV caches and recurrent states
        // reproduce the training forward's logits at every position (per sequence, batched)
        {
            const int P = g.T / 2 + 3; // prefill crosses no chunk; the steps run past the 64-token chunk
            pn_kvcache kc;
            rc = pn_model_plan(&m, g.B, g.T, 1) || pn_kvcache_init(&kc, &m, g.B, g.T);
            CHECK(rc == 0, "generation plan: %s", pn_last_error());
            float *lg = pn_malloc(sizeof(float) * (size_t)(N * g.V)), *row = pn_malloc(sizeof(float) * (size_t)g.V * P);
            int32_t *pre = pn_malloc(sizeof(int32_t) * (size_t)(g.B * P)), tok[16];
            for (int b = 0; b < g.B; b++) memcpy(pre + b * P, g.ids + b * g.T, sizeof(int32_t) * (size_t)P);
            rc = pn_model_forward(&m, &kc, pre, g.B, P);
            CHECK(rc == 0, "prefill: %s", pn_last_error());
            for (int b = 0; b < g.B && rc == 0; b++) {
                pn_tensor lr = pn_rows(&m.logits, (int64_t)b * P, P);
                pn_op_to_host_f32(row, &lr);
                memcpy(lg + ((int64_t)b * g.T) * g.V, row, sizeof(float) * (size_t)(P * g.V));
            }
            for (int t = P; t < g.T && rc == 0; t++) {
                for (int b = 0; b < g.B; b++) tok[b] = g.ids[b * g.T + t];
                rc = pn_model_forward(&m, &kc, tok, g.B, 1);
                for (int b = 0; b < g.B && rc == 0; b++) {
                    pn_tensor lr = pn_rows(&m.logits, b, 1);
                    pn_op_to_host_f32(lg + ((int64_t)b * g.T + t) * g.V, &lr);
                }
            }
            CHECK(rc == 0, "decode: %s", pn_last_error());
            const double ed = rel_err(lg, logits, N * g.V);
            printf("%-7s %-4s prefill %d + %d single-token steps (KV caches, recurrent states) vs training forward: "
                   "logits %.2e\n", name, pn_device_name(dev), P, g.T - P, ed);
            CHECK(ed <= tol_decode, "decode vs forward %.3e", ed);
            free(lg), free(row), free(pre);
            pn_kvcache_free(&kc);
        }

        // a NaN reaching the backward is reported with the layer and block that produced it
        if (dev == PN_CPU) {
            rc = pn_model_train_plan(&m, g.B, g.T, NULL) || pn_model_forward_train(&m, g.ids, g.B, g.T, NULL, 0);
            CHECK(rc == 0, "%s", pn_last_error());
            a.used = 0;
            pn_tensor R = upload_R(&a, &g);
            ((float *)R.data)[5] = NAN;
            m.check_finite = 1;
            CHECK_ERR(pn_model_backward(&m, &R), "layer 3 (gdn) backward: ");
            m.check_finite = 0;
        }

        // bad input
        int32_t bad_ids[4] = {1, 2, 300, 4};
        CHECK_ERR(pn_model_forward_train(&m, bad_ids, 1, 4, NULL, 0), "token id 300 at position 2 is outside");
        const int32_t cu_bad[3] = {0, 3, 3};
        CHECK_ERR(pn_model_forward_train(&m, g.ids, 1, 3, cu_bad, 2), "cu_seqlens[2] = 3 is not above");
        const int32_t cu_short[3] = {0, 2, 3};
        CHECK_ERR(pn_model_forward_train(&m, g.ids, 1, 4, cu_short, 2), "cu_seqlens[2] = 3, expected T = 4");
        CHECK_ERR(pn_model_forward_train(&m, g.ids, g.B, g.T + 1, NULL, 0), "does not fit the planned");
        CHECK_ERR(pn_model_backward(&m, &lt), "no training forward");
        rc = pn_model_forward_train(&m, g.ids, g.B, g.T, NULL, 0);
        CHECK(rc == 0, "%s", pn_last_error());
        pn_tensor cur = pn_model_train_logits(&m), small = pn_rows(&cur, 0, 3);
        CHECK_ERR(pn_model_backward(&m, &small), "dlogits is");
    }
    free(logits);
    grads_free(&m, got);
    for (int i = 0; i < m.nparams; i++) free(ref[i]);
    free(ref);
    pn_arena_free(&a);
    pn_model_free(&m);
    golden_close(&g);
}

// Finite differences of L = sum(logits * R) on the CPU (fp32 model, loss summed in double) against the
// backward, on a hybrid made by postnas-mkckpt with every block type: an oracle independent of torch.
static void check_entry_points(pn_model *m, const int32_t *ids, int B, int T);

static double loss_of(pn_model *m, const int32_t *ids, int B, int T, const float *R, float *buf) {
    if (pn_model_forward_train(m, ids, B, T, NULL, 0)) return NAN;
    pn_tensor lt = pn_model_train_logits(m);
    pn_op_to_host_f32(buf, &lt);
    double L = 0;
    for (int64_t i = 0; i < pn_numel(&lt); i++) L += (double)buf[i] * R[i];
    return L;
}

static void check_finite_differences(const char *mkckpt, int n_layers, const char *types) {
    char dir[] = "/tmp/pn_test_train_XXXXXX";
    if (!mkdtemp(dir)) {
        CHECK(0, "mkdtemp");
        return;
    }
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "%s --out %s/m --layers %d --layer-types %s --hidden 32 --heads 4 --kv-heads 2 "
             "--intermediate 48 --sliding-window 5 --tie 0 --dtype f32 --init-std 0.1 --seed 11 > /dev/null",
             mkckpt, dir, n_layers, types);
    CHECK(system(cmd) == 0, "%s", cmd);
    snprintf(cmd, sizeof cmd, "%s/m", dir);
    pn_model m;
    if (pn_model_load(&m, cmd, PN_CPU)) {
        CHECK(0, "%s", pn_last_error());
        return;
    }
    const int B = 2, T = 70, V = m.cfg.vocab;
    int32_t ids[2 * 70];
    for (int i = 0; i < B * T; i++) ids[i] = (int32_t)(pn_splitmix64((uint64_t)i + 99) % (uint64_t)V);
    float *R = pn_malloc(sizeof(float) * (size_t)(B * T * V)), *buf = pn_malloc(sizeof(float) * (size_t)(B * T * V));
    for (int i = 0; i < B * T * V; i++) R[i] = pn_rng_normal(5, 0, (uint64_t)i);
    pn_arena a;
    int rc = pn_model_grads_init(&m, NULL) || pn_model_train_plan(&m, B, T, NULL) ||
             pn_arena_init(&a, PN_CPU, pn_arena_need(PN_F32, 2, (int64_t[]){B * T, V}));
    CHECK(rc == 0, "%s", pn_last_error());
    if (rc) return;
    pn_tensor dl = pn_arena_tensor(&a, PN_F32, 2, (int64_t[]){B * T, V});
    memcpy(dl.data, R, sizeof(float) * (size_t)(B * T * V));
    rc = pn_model_forward_train(&m, ids, B, T, NULL, 0) || pn_model_backward(&m, &dl);
    CHECK(rc == 0, "%s", pn_last_error());
    // Per tensor: the directional derivative along a random direction u (all elements at once, so it stands
    // far above the fp32 noise of the loss) by central differences, D(h) = (L(w + h u) - L(w - h u)) / 2h,
    // against sum_j g_j u_j from the backward. h = 1e-3 balances the loss's fp32 noise against curvature
    // (D(2e-3) is printed too: where the two disagree, curvature, not the backward, is what differs).
    double worst = 0;
    char wname[128] = "-";
    for (int i = 0; i < m.nparams; i++) {
        const pn_param *p = &m.param_list[i];
        if (p->kind == PN_PARAM_ZERO) continue; // w1 has a zero gradient at the released init (w2 = 0)
        float *w = p->dst->data, *g = p->grad->data;
        const int64_t n = pn_param_numel(p);
        float *w0 = pn_malloc(sizeof(float) * (size_t)n), *u = pn_malloc(sizeof(float) * (size_t)n);
        memcpy(w0, w, sizeof(float) * (size_t)n);
        double gu = 0;
        for (int64_t j = 0; j < n; j++) u[j] = pn_rng_normal(17, (uint64_t)i, (uint64_t)j), gu += (double)g[j] * u[j];
        double D[2];
        for (int k = 0; k < 2; k++) {
            const float h = k ? 1e-3f : 2e-3f;
            for (int64_t j = 0; j < n; j++) w[j] = w0[j] + h * u[j];
            const double lp = loss_of(&m, ids, B, T, R, buf);
            for (int64_t j = 0; j < n; j++) w[j] = w0[j] - h * u[j];
            const double lm = loss_of(&m, ids, B, T, R, buf);
            D[k] = (lp - lm) / (2.0 * h);
        }
        memcpy(w, w0, sizeof(float) * (size_t)n);
        const double fd = D[1], e = fabs(fd - gu) / (fabs(fd) + fabs(gu) + 1e-6);
        if (e > 0.01) printf("  %s: directional derivative fd %.6g (D(2e-3) %.6g, D(1e-3) %.6g) backward %.6g\n", p->name, fd, D[0], D[1], gu);
        if (e > worst) worst = e, snprintf(wname, sizeof wname, "%s", p->name);
        free(w0), free(u);
    }
    printf("finite differences (cpu, fp32 model, %s): directional derivatives of %d parameter tensors, worst relative "
           "error %.2e (%s)\n", types, m.nparams, worst, wname);
    CHECK(worst <= 0.03, "finite differences: %s %.3e", wname, worst);
    check_entry_points(&m, ids, B, T);
    // generation (prefill 20, then single-token steps through every block's decode state) reproduces the
    // training forward's logits
    {
        rc = pn_model_train_plan(&m, B, T, NULL) || isnan(loss_of(&m, ids, B, T, R, buf)); // buf: its logits
        const int P = 20;
        pn_kvcache kc;
        rc = rc || pn_model_plan(&m, B, T, 1) || pn_kvcache_init(&kc, &m, B, T);
        CHECK(rc == 0, "generation plan: %s", pn_last_error());
        float *lg = pn_malloc(sizeof(float) * (size_t)(B * T * V));
        int32_t pre[2 * 20], tok[2];
        for (int b = 0; b < B; b++) memcpy(pre + b * P, ids + b * T, sizeof(int32_t) * P);
        rc = rc || pn_model_forward(&m, &kc, pre, B, P);
        for (int b = 0; b < B && !rc; b++)
            for (int t = 0; t < P; t++) {
                pn_tensor lr = pn_rows(&m.logits, (int64_t)b * P + t, 1);
                pn_op_to_host_f32(lg + ((int64_t)b * T + t) * V, &lr);
            }
        for (int t = P; t < T && !rc; t++) {
            for (int b = 0; b < B; b++) tok[b] = ids[b * T + t];
            rc = pn_model_forward(&m, &kc, tok, B, 1);
            for (int b = 0; b < B && !rc; b++) {
                pn_tensor lr = pn_rows(&m.logits, b, 1);
                pn_op_to_host_f32(lg + ((int64_t)b * T + t) * V, &lr);
            }
        }
        CHECK(rc == 0, "decode: %s", pn_last_error());
        double num = 0, den = 0;
        for (int64_t i = 0; i < (int64_t)B * T * V; i++) num += (lg[i] - buf[i]) * (lg[i] - buf[i]), den += (double)buf[i] * buf[i];
        printf("generation (%s): prefill %d + %d single-token steps vs the training forward: logits %.2e\n", types, P,
               T - P, sqrt(num / den));
        CHECK(sqrt(num / den) <= 1e-5, "decode vs forward (%s): %.3e", types, sqrt(num / den));
        free(lg);
        if (!rc) pn_kvcache_free(&kc);
    }
    free(R), free(buf);
    pn_arena_free(&a);
    pn_model_free(&m);
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

// ---------------------------------------------------------------------------------------------------
// The entry points the trainer and the search use, on the same every-block-type CPU hybrid: backward from
// the final hidden state (the loss module owns the head) equals backward from the logits; a plan without
// logits gives the same hidden state; one layer run from its recorded input reproduces its output; one
// layer's backward against finite differences of a local loss (its parameters and its input); taps see
// every layer in generation and training and can overwrite the hidden state.

typedef struct {
    int calls, embed, last_layer;
    int zero_layer; // >= 0: overwrite that layer's output with zeros
} tap_log;

static int record_tap(void *ctx, const char *name, int layer, pn_tensor *h) {
    tap_log *t = ctx;
    t->calls++;
    t->embed += !strcmp(name, "embed") && layer == -1;
    if (!strcmp(name, "layer_out")) t->last_layer = layer;
    if (layer == t->zero_layer && !strcmp(name, "layer_out")) pn_backend_get(h->device)->memset0(h->data, pn_nbytes(h));
    return 0;
}

static float **grads_snapshot(const pn_model *m) { return grads_host(m); }

// The backward's "layer_grads_done" tap: layer l's parameter gradients, as the tap sees them, must already be
// their final values (a data-parallel trainer starts summing them over ranks right then).
typedef struct {
    pn_model *m;
    int calls, order_ok, last;
    float **seen; // per parameter: its gradient at its layer's tap (host copy)
} done_log;

static int done_tap(void *ctx, const char *name, int layer, pn_tensor *h) {
    (void)h;
    done_log *t = ctx;
    if (strcmp(name, "layer_grads_done")) return 0;
    t->calls++;
    t->order_ok &= layer < t->last; // top down, each layer once
    t->last = layer;
    char pre[32];
    snprintf(pre, sizeof pre, "model.layers.%d.", layer);
    for (int i = 0; i < t->m->nparams; i++)
        if (t->m->param_list[i].grad->data && !strncmp(t->m->param_list[i].name, pre, strlen(pre))) {
            t->seen[i] = pn_malloc(sizeof(float) * (size_t)pn_param_numel(&t->m->param_list[i]));
            pn_op_to_host_f32(t->seen[i], t->m->param_list[i].grad);
        }
    return 0;
}

static void check_entry_points(pn_model *m, const int32_t *ids, int B, int T) {
    const int64_t N = (int64_t)B * T, H = m->cfg.hidden, V = m->cfg.vocab;
    pn_arena a;
    CHECK(pn_arena_init(&a, PN_CPU, pn_arena_need(PN_F32, 2, (int64_t[]){N, V}) + 4 * pn_arena_need(PN_F32, 2, (int64_t[]){N, H})) == 0,
          "arena");
    pn_tensor dl = pn_arena_tensor(&a, PN_F32, 2, (int64_t[]){N, V}), dh = pn_arena_tensor(&a, PN_F32, 2, (int64_t[]){N, H});
    pn_tensor u = pn_arena_tensor(&a, PN_F32, 2, (int64_t[]){N, H}), dx = pn_arena_tensor(&a, PN_F32, 2, (int64_t[]){N, H});
    pn_tensor xin = pn_arena_tensor(&a, PN_F32, 2, (int64_t[]){N, H});
    float *R = dl.data;
    for (int64_t i = 0; i < N * V; i++) R[i] = pn_rng_normal(23, 0, (uint64_t)i);
    // 1. backward(dlogits) vs backward_hidden(dlogits · W_head)
    pn_model_grads_zero(m);
    CHECK(pn_model_forward_train(m, ids, B, T, NULL, 0) == 0 && pn_model_backward(m, &dl) == 0, "%s", pn_last_error());
    float **g1 = grads_snapshot(m);
    pn_tensor hid = pn_model_train_hidden(m);
    float *h1 = pn_malloc(sizeof(float) * (size_t)(N * H));
    memcpy(h1, hid.data, sizeof(float) * (size_t)(N * H));
    const float *W = m->lm_head.data;
    float *D = dh.data;
    for (int64_t i = 0; i < N; i++)
        for (int64_t k = 0; k < H; k++) {
            double s = 0;
            for (int64_t v = 0; v < V; v++) s += (double)R[i * V + v] * W[v * H + k];
            D[i * H + k] = (float)s;
        }
    pn_model_grads_zero(m);
    CHECK(pn_model_forward_train(m, ids, B, T, NULL, 0) == 0 && pn_model_backward_hidden(m, &dh) == 0, "%s", pn_last_error());
    float **g2 = grads_snapshot(m);
    double worst = 0;
    for (int i = 0; i < m->nparams; i++) {
        if (!g1[i] || !g2[i] || !strcmp(m->param_list[i].name, "lm_head.weight")) continue;
        const double e = rel_err(g2[i], g1[i], pn_param_numel(&m->param_list[i]));
        worst = e > worst ? e : worst;
    }
    printf("entry points: backward from the final hidden state vs from the logits: worst gradient rel err %.2g\n", worst);
    CHECK(worst < 1e-5, "backward_hidden vs backward: %g", worst);
    grads_free(m, g1), grads_free(m, g2);
    // 2. a plan without logits: the same hidden state
    pn_train_opts o = {.no_logits = 1};
    CHECK(pn_model_train_plan(m, B, T, &o) == 0 && pn_model_forward_train(m, ids, B, T, NULL, 0) == 0, "%s", pn_last_error());
    hid = pn_model_train_hidden(m);
    CHECK(!memcmp(hid.data, h1, sizeof(float) * (size_t)(N * H)), "no_logits plan: hidden state differs");
    free(h1);
    // 3. one layer from its recorded input reproduces its output
    const int l = 2;
    pn_tensor in = pn_model_train_layer_out(m, l - 1), out = pn_model_train_layer_out(m, l);
    float *o_ref = pn_malloc(sizeof(float) * (size_t)(N * H));
    memcpy(o_ref, out.data, sizeof(float) * (size_t)(N * H));
    memcpy(xin.data, in.data, sizeof(float) * (size_t)(N * H));
    CHECK(pn_model_layer_forward_train(m, l, &xin) == 0 && !memcmp(pn_model_train_layer_out(m, l).data, o_ref, sizeof(float) * (size_t)(N * H)),
          "layer %d rerun from its input: %s", l, pn_last_error());
    free(o_ref);
    // 4. one layer's backward vs finite differences of L = sum(out_l * U) (its parameters, its input)
    float *U = u.data;
    for (int64_t i = 0; i < N * H; i++) U[i] = pn_rng_normal(29, 0, (uint64_t)i);
    pn_model_grads_zero(m);
    CHECK(pn_model_layer_backward(m, l, &u, &dx) == 0, "%s", pn_last_error());
    float *x0 = pn_malloc(sizeof(float) * (size_t)(N * H));
    memcpy(x0, xin.data, sizeof(float) * (size_t)(N * H));
    double fd_worst = 0;
    char wname[96] = "-";
    for (int i = -1; i < m->nparams; i++) { // i = -1: the input
        float *w, *g;
        int64_t n;
        if (i < 0) {
            w = xin.data, g = dx.data, n = N * H;
        } else {
            const pn_param *p = &m->param_list[i];
            char pre[32];
            snprintf(pre, sizeof pre, "model.layers.%d.", l);
            if (strncmp(p->name, pre, strlen(pre)) || p->kind == PN_PARAM_ZERO || !p->grad->data) continue;
            w = p->dst->data, g = p->grad->data, n = pn_param_numel(p);
        }
        float *w0 = pn_malloc(sizeof(float) * (size_t)n), *dir = pn_malloc(sizeof(float) * (size_t)n);
        memcpy(w0, w, sizeof(float) * (size_t)n);
        double gu = 0, Lpm[2];
        for (int64_t j = 0; j < n; j++) dir[j] = pn_rng_normal(31, (uint64_t)(i + 1), (uint64_t)j), gu += (double)g[j] * dir[j];
        for (int k = 0; k < 2; k++) {
            const float hstep = k ? -1e-3f : 1e-3f;
            for (int64_t j = 0; j < n; j++) w[j] = w0[j] + hstep * dir[j];
            pn_model_layer_forward_train(m, l, &xin);
            const float *y = pn_model_train_layer_out(m, l).data;
            double L = 0;
            for (int64_t j = 0; j < N * H; j++) L += (double)y[j] * U[j];
            Lpm[k] = L;
        }
        memcpy(w, w0, sizeof(float) * (size_t)n);
        const double fd = (Lpm[0] - Lpm[1]) / 2e-3, e = fabs(fd - gu) / (fabs(fd) + fabs(gu) + 1e-6);
        if (e > fd_worst) fd_worst = e, snprintf(wname, sizeof wname, "%s", i < 0 ? "the layer input" : m->param_list[i].name);
        free(w0), free(dir);
    }
    memcpy(xin.data, x0, sizeof(float) * (size_t)(N * H));
    free(x0);
    printf("entry points: layer %d (%s) backward alone vs finite differences: worst %.2e (%s)\n", l, m->layers[l].slot[0].bt->name,
           fd_worst, wname);
    CHECK(fd_worst < 0.02, "layer backward: %s %.3e", wname, fd_worst);
    // 5. taps: every layer seen, in training and in generation; a write reaches the output
    tap_log t = {.zero_layer = -1};
    m->tap = record_tap, m->tap_ctx = &t;
    CHECK(pn_model_forward_train(m, ids, B, T, NULL, 0) == 0 && t.calls == m->cfg.n_layers + 1 && t.embed == 1 &&
              t.last_layer == m->cfg.n_layers - 1,
          "training taps: %d calls", t.calls);
    pn_kvcache kc;
    t = (tap_log){.zero_layer = m->cfg.n_layers - 1};
    int ok = pn_model_plan(m, B, T, 1) == 0 && pn_kvcache_init(&kc, m, B, T) == 0;
    CHECK(ok && pn_model_forward(m, &kc, ids, B, T) == 0 && t.calls == m->cfg.n_layers + 1, "generation taps: %d", t.calls);
    if (ok) {
        float mx = 0; // the last layer's output zeroed by the tap: the final norm of 0 is 0, so are the logits
        const float *lg = m->logits.data;
        for (int64_t i = 0; i < N * V; i++) mx = fabsf(lg[i]) > mx ? fabsf(lg[i]) : mx;
        CHECK(mx == 0, "a tap's write must reach the logits (max |logit| %g)", mx);
        pn_kvcache_free(&kc);
    }
    // 6. the backward's "layer_grads_done": once per layer, top down, each layer's gradients final by then
    done_log d = {.m = m, .order_ok = 1, .last = m->cfg.n_layers};
    d.seen = pn_calloc((size_t)m->nparams, sizeof(float *));
    m->tap = done_tap, m->tap_ctx = &d;
    for (int64_t i = 0; i < N * H; i++) D[i] = pn_rng_normal(29, 0, (uint64_t)i);
    pn_model_grads_zero(m);
    int grc = pn_model_forward_train(m, ids, B, T, NULL, 0) || pn_model_backward_hidden(m, &dh);
    m->tap = NULL;
    float **fin = grads_host(m);
    int n_seen = 0, same = 1;
    for (int i = 0; i < m->nparams; i++)
        if (d.seen[i]) {
            n_seen++;
            same &= !memcmp(d.seen[i], fin[i], sizeof(float) * (size_t)pn_param_numel(&m->param_list[i]));
        }
    CHECK(!grc && d.calls == m->cfg.n_layers && d.order_ok && n_seen > 0 && same,
          "layer_grads_done: rc %d, %d calls for %d layers, order %s, %d tensors seen, %s", grc, d.calls,
          m->cfg.n_layers, d.order_ok ? "ok" : "wrong", n_seen, same ? "final" : "changed after the tap");
    grads_free(m, fin);
    grads_free(m, d.seen);
    pn_arena_free(&a);
}

int main(int argc, char **argv) {
    const char *root = NULL, *mkckpt = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc) dev = !strcmp(argv[++i], "cuda") ? PN_CUDA : PN_CPU;
        else if (!strcmp(argv[i], "--mkckpt") && i + 1 < argc) mkckpt = argv[++i];
        else root = argv[i];
    }
    if (!root) {
        fprintf(stderr, "usage: test_train GOLDENS_DIR [--device cpu|cuda]\n");
        return 2;
    }
    if (dev == PN_CUDA) {
        if (!pn_cuda_available()) {
            printf("skipped: no CUDA device\n");
            return 0;
        }
        // bf16 activations and weights through a whole model whose random weights give large logits (as the
        // parity goldens' CUDA tolerance notes); a tensor with a near-zero true gradient (a k bias: softmax is
        // almost shift-invariant) has a large relative error while its absolute error is tiny, hence the
        // looser per-tensor bound next to the bound on all gradients together.
        // Measured on an H100: hybrid logits 0.032, all gradients 0.093 (worst tensor 0.2, a k bias); Qwen3 0.015
        // and 0.024. The blocks themselves are held to 1-4% against the CPU in test_block_train.
        tol_logits = 0.05, tol_grad = 0.3, tol_grad_all = 0.12, tol_same = 0.02, tol_decode = 0.05;
    }
    if (mkckpt && dev == PN_CPU) {
        check_finite_differences(mkckpt, 5, "gdn,attn,jet,swa,deltanet");
        check_finite_differences(mkckpt, 3, "shortconv,attn,shortconv"); // the block added as an example
    }
    check_against_torch(root, "hybrid", 1);
    check_against_torch(root, "qwen3", 0);
    return pn_test_done("test_train");
}
