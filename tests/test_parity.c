// Parity with Hugging Face transformers: logits of tiny random Qwen2, Qwen3 and Llama models (goldens
// written by tests/make_goldens.py) must match the CPU fp32 forward to ||Δ||/||ref|| ≤ 1e-5. Also:
// incremental decoding with the KV cache equals the full forward, a batch of two equals two single runs,
// a sharded checkpoint loads like a single file, and the 151936-token vocabulary golden (checkpoint
// rebuilt by postnas-mkckpt, logits by transformers) exercises the LM head at full size.
//
// usage: test_parity GOLDENS_DIR [MKCKPT] [--device cpu|cuda] [--tol X]
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../src/pn_common.h"
#include "../src/pn_model.h"
#include "../src/pn_safetensors.h"
#include "pn_test.h"

static pn_device dev = PN_CPU;
static double tol = 1e-5;
static double worst = 0;

static double rel_err(const float *a, const float *ref, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)a[i] - ref[i];
        num += d * d;
        den += (double)ref[i] * ref[i];
    }
    return sqrt(num / (den > 0 ? den : 1));
}

// Reads a golden tensor as fp32 (ids as I32 through `ids`).
static float *golden_f32(pn_safetensors *st, const char *name, size_t *n) {
    const pn_st_entry *e = pn_st_find(st, name);
    if (!e) return NULL;
    *n = (size_t)pn_st_numel(e);
    float *x = pn_malloc(sizeof(float) * *n);
    if (e->dtype == PN_ST_I32) {
        for (size_t i = 0; i < *n; i++) {
            int32_t v;
            memcpy(&v, (const char *)e->data + 4 * i, 4);
            x[i] = (float)v;
        }
    } else if (pn_st_to_f32(st, e, x)) {
        free(x);
        return NULL;
    }
    return x;
}

// Full forward of B sequences; returns host logits [B*T, V].
static float *forward_all(pn_model *m, const int32_t *ids, int B, int T) {
    pn_kvcache kc;
    if (pn_model_plan(m, B, T, 1) || pn_kvcache_init(&kc, m, B, T)) return NULL;
    float *out = NULL;
    if (pn_model_forward(m, &kc, ids, B, T) == 0) {
        out = pn_malloc(sizeof(float) * (size_t)B * (size_t)T * (size_t)m->cfg.vocab);
        pn_tensor lg = pn_rows(&m->logits, 0, (int64_t)B * T);
        pn_op_to_host_f32(out, &lg);
    }
    pn_kvcache_free(&kc);
    return out;
}

// Prefill `split` tokens, then decode the rest one at a time; returns logits [T, V].
static float *forward_incremental(pn_model *m, const int32_t *ids, int T, int split) {
    const size_t V = (size_t)m->cfg.vocab;
    pn_kvcache kc;
    if (pn_model_plan(m, 1, T, 1) || pn_kvcache_init(&kc, m, 1, T)) return NULL;
    float *out = pn_malloc(sizeof(float) * (size_t)T * V);
    int rc = pn_model_forward(m, &kc, ids, 1, split);
    pn_tensor lg = pn_rows(&m->logits, 0, split);
    if (!rc) pn_op_to_host_f32(out, &lg);
    for (int t = split; t < T && !rc; t++) {
        rc = pn_model_forward(m, &kc, ids + t, 1, 1);
        pn_tensor l1 = pn_rows(&m->logits, 0, 1);
        if (!rc) pn_op_to_host_f32(out + (size_t)t * V, &l1);
    }
    pn_kvcache_free(&kc);
    if (rc) {
        free(out);
        return NULL;
    }
    return out;
}

static void check_case(const char *goldens, const char *name) {
    char *dir = pn_path_join(goldens, name), *lp = pn_path_join(dir, "logits.safetensors");
    pn_safetensors st;
    pn_model m;
    if (pn_st_open(&st, lp)) {
        CHECK(0, "%s", pn_last_error());
        goto out0;
    }
    if (pn_model_load(&m, dir, dev)) {
        CHECK(0, "%s", pn_last_error());
        goto out1;
    }
    size_t T, n;
    float *idf = golden_f32(&st, "ids", &T), *ref = golden_f32(&st, "logits", &n);
    const int V = m.cfg.vocab;
    CHECK(idf && ref && n == T * (size_t)V, "%s: golden shapes", name);
    if (!idf || !ref || n != T * (size_t)V) goto out2;
    int32_t *ids = pn_malloc(sizeof(int32_t) * 2 * T);
    for (size_t i = 0; i < T; i++) ids[i] = (int32_t)idf[i];

    // In bf16 (CUDA) the JetBlock layers of NVIDIA's shrunk configs (D = 12 heads, dynamic convolution,
    // gates, the delta rule) land at 2.5-4e-2 from the fp32 goldens, as test_train's hybrid does (3.2e-2):
    // they get 6e-2 there; the base models keep --tol, and the CPU 1e-4 for all.
    const double tol_case = dev == PN_CUDA && !strncmp(name, "jet_nvidia/", 11) && tol < 6e-2 ? 6e-2 : tol;
    float *full = forward_all(&m, ids, 1, (int)T);
    CHECK(full != NULL, "%s: forward: %s", name, pn_last_error());
    if (full) {
        double e = rel_err(full, ref, n);
        if (e > worst) worst = e;
        printf("%-28s %-4s T=%-3zu V=%-6d logits rel err %.3g (tol %.0e)\n", name, pn_device_name(dev), T, V, e,
               tol_case);
        CHECK(e <= tol_case, "%s: logits rel err %.3g > %.0e", name, e, tol_case);

        float *inc = forward_incremental(&m, ids, (int)T, (int)T / 2);
        CHECK(inc != NULL, "%s: incremental: %s", name, pn_last_error());
        if (inc) {
            double ei = rel_err(inc, full, n);
            printf("%-28s %-4s incremental decode vs full forward rel err %.3g\n", name, pn_device_name(dev), ei);
            CHECK(ei <= tol, "%s: incremental vs full %.3g", name, ei);
            free(inc);
        }
        // Batch of two: the golden sequence and its reverse; row block 0 must equal the single run.
        for (size_t i = 0; i < T; i++) ids[T + i] = ids[T - 1 - i];
        float *bat = forward_all(&m, ids, 2, (int)T);
        CHECK(bat != NULL, "%s: batch: %s", name, pn_last_error());
        if (bat) {
            double eb = rel_err(bat, full, n);
            CHECK(eb <= tol, "%s: batch row 0 vs single %.3g", name, eb);
            float *rev = forward_all(&m, ids + T, 1, (int)T);
            if (rev) CHECK(rel_err(bat + n, rev, n) <= tol, "%s: batch row 1 vs single", name);
            free(rev);
            free(bat);
        }
        free(full);
    }
    free(ids);
out2:
    free(idf);
    free(ref);
    pn_model_free(&m);
out1:
    pn_st_close(&st);
out0:
    free(dir);
    free(lp);
}

// Greedy generation after the golden ids (prefill, then one token at a time) against the `greedy` tensor,
// which NVIDIA's generate() wrote (tests/goldens/jet_nvidia/released_2b).
static void check_greedy(const char *goldens, const char *name) {
    char *dir = pn_path_join(goldens, name), *lp = pn_path_join(dir, "logits.safetensors");
    pn_safetensors st;
    pn_model m;
    int ok = pn_st_open(&st, lp) == 0;
    CHECK(ok, "%s", pn_last_error());
    if (ok && pn_model_load(&m, dir, dev)) {
        CHECK(0, "%s", pn_last_error());
        pn_st_close(&st);
        ok = 0;
    }
    if (ok) {
        size_t T, G;
        float *idf = golden_f32(&st, "ids", &T), *gf = golden_f32(&st, "greedy", &G);
        CHECK(idf && gf, "%s: ids and greedy in the golden", name);
        pn_kvcache kc;
        if (idf && gf && pn_model_plan(&m, 1, (int)(T + G), 1) == 0 && pn_kvcache_init(&kc, &m, 1, (int)(T + G)) == 0) {
            int32_t *ids = pn_malloc(sizeof(int32_t) * (T + G));
            for (size_t i = 0; i < T; i++) ids[i] = (int32_t)idf[i];
            float *row = pn_malloc(sizeof(float) * (size_t)m.cfg.vocab);
            int rc = pn_model_forward(&m, &kc, ids, 1, (int)T), same = 1;
            for (size_t g = 0; g < G && !rc; g++) {
                pn_tensor last = pn_rows(&m.logits, g ? 0 : (int64_t)T - 1, 1);
                pn_op_to_host_f32(row, &last);
                int best = 0;
                for (int v = 1; v < m.cfg.vocab; v++)
                    if (row[v] > row[best]) best = v;
                ids[T + g] = best;
                same &= best == (int32_t)gf[g];
                if (g + 1 < G) rc = pn_model_forward(&m, &kc, ids + T + g, 1, 1);
            }
            // Asserted in fp32 (CPU); in bf16 a random tiny model's near-ties flip, so CUDA only reports it.
            CHECK(!rc && (same || dev == PN_CUDA), "%s: greedy tokens differ from NVIDIA's generate() (%s)", name,
                  rc ? pn_last_error() : "");
            printf("%-28s %-4s greedy %zu tokens after %zu: %s\n", name, pn_device_name(dev), G, T,
                   rc ? "error" : same ? "identical to NVIDIA's generate()" : "different (bf16; not asserted on cuda)");
            free(row);
            free(ids);
            pn_kvcache_free(&kc);
        }
        free(idf);
        free(gf);
        pn_model_free(&m);
        pn_st_close(&st);
    }
    free(dir);
    free(lp);
}

static int run_mkckpt(const char *mkckpt, const char *args, const char *out) {
    char *cmd = pn_malloc(strlen(mkckpt) + strlen(args) + strlen(out) + 64);
    sprintf(cmd, "%s %s --out %s > /dev/null", mkckpt, args, out);
    int rc = system(cmd);
    free(cmd);
    return rc;
}

static void check_bigvocab(const char *goldens, const char *mkckpt, const char *tmp) {
    char *dir = pn_path_join(goldens, "qwen2-bigvocab"), *ap = pn_path_join(dir, "mkckpt_args.txt");
    char *lp = pn_path_join(dir, "logits.safetensors");
    char *args = pn_read_file(ap, NULL);
    if (!args) {
        printf("qwen2-bigvocab: skipped (%s)\n", pn_last_error());
        goto out;
    }
    args[strcspn(args, "\n")] = 0;
    char *ck = pn_path_join(tmp, "bigvocab");
    CHECK(run_mkckpt(mkckpt, args, ck) == 0, "mkckpt %s", args);
    pn_safetensors st;
    pn_model m;
    if (pn_st_open(&st, lp) == 0) {
        if (pn_model_load(&m, ck, dev) == 0) {
            size_t T, ns, nl, na;
            float *idf = golden_f32(&st, "ids", &T), *strided = golden_f32(&st, "logits_strided", &ns);
            float *lse = golden_f32(&st, "logsumexp", &nl), *am = golden_f32(&st, "argmax", &na);
            const size_t V = (size_t)m.cfg.vocab, S = (V + 96) / 97;
            CHECK(idf && strided && lse && am && ns == T * S && nl == T && na == T, "bigvocab golden shapes");
            if (idf && strided && lse && am && ns == T * S) {
                int32_t *ids = pn_malloc(sizeof(int32_t) * T);
                for (size_t i = 0; i < T; i++) ids[i] = (int32_t)idf[i];
                float *full = forward_all(&m, ids, 1, (int)T);
                CHECK(full != NULL, "bigvocab forward: %s", pn_last_error());
                if (full) {
                    float *sub = pn_malloc(sizeof(float) * T * S), *mylse = pn_malloc(sizeof(float) * T);
                    int argmax_ok = 1;
                    for (size_t t = 0; t < T; t++) {
                        const float *r = full + t * V;
                        size_t best = 0;
                        double mx = r[0], s = 0;
                        for (size_t v = 0; v < V; v++) {
                            if (r[v] > r[best]) best = v;
                            if (r[v] > mx) mx = r[v];
                        }
                        for (size_t v = 0; v < V; v++) s += exp((double)r[v] - mx);
                        mylse[t] = (float)(mx + log(s));
                        for (size_t j = 0; j < S; j++) sub[t * S + j] = r[j * 97];
                        argmax_ok &= (float)best == am[t];
                    }
                    double e = rel_err(sub, strided, T * S), el = rel_err(mylse, lse, T);
                    printf("qwen2-bigvocab   %-4s T=%-3zu V=%-6zu strided logits rel err %.3g, logsumexp rel err %.3g\n",
                           pn_device_name(dev), T, V, e, el);
                    if (e > worst) worst = e;
                    CHECK(e <= tol && el <= tol, "bigvocab: %.3g / %.3g", e, el);
                    if (dev == PN_CPU) CHECK(argmax_ok, "bigvocab argmax differs");
                    free(sub);
                    free(mylse);
                    free(full);
                }
                free(ids);
            }
            free(idf);
            free(strided);
            free(lse);
            free(am);
            pn_model_free(&m);
        } else {
            CHECK(0, "%s", pn_last_error());
        }
        pn_st_close(&st);
    } else {
        CHECK(0, "%s", pn_last_error());
    }
    free(ck);
out:
    free(args);
    free(dir);
    free(ap);
    free(lp);
}

// A checkpoint split into shards with an index loads to the same logits as the single file.
static void check_sharded(const char *mkckpt, const char *tmp) {
    const char *args = "--arch qwen3 --hidden 48 --intermediate 96 --layers 3 --heads 4 --kv-heads 2 --head-dim 16 "
                       "--vocab 1000 --seed 3 --init-std 0.2 --dtype f32";
    char *one = pn_path_join(tmp, "single"), *many = pn_path_join(tmp, "sharded"), a2[512];
    snprintf(a2, sizeof a2, "%s --shard-mb 1", args);
    CHECK(run_mkckpt(mkckpt, args, one) == 0 && run_mkckpt(mkckpt, a2, many) == 0, "mkckpt");
    char *idx = pn_path_join(many, "model.safetensors.index.json");
    CHECK(access(idx, F_OK) == 0, "no index written");
    pn_model m1, m2;
    int ok1 = pn_model_load(&m1, one, dev) == 0, ok2 = ok1 && pn_model_load(&m2, many, dev) == 0;
    CHECK(ok1 && ok2, "%s", pn_last_error());
    if (ok1 && ok2) {
        int32_t ids[7] = {0, 999, 5, 17, 400, 3, 3};
        float *a = forward_all(&m1, ids, 1, 7), *b = forward_all(&m2, ids, 1, 7);
        CHECK(a && b && rel_err(a, b, 7 * 1000) == 0.0, "sharded vs single logits differ");
        free(a);
        free(b);
    }
    if (ok2) pn_model_free(&m2);
    if (ok1) pn_model_free(&m1);
    free(one);
    free(many);
    free(idx);
}


// Rewrites a golden checkpoint with every floating tensor stored as `dt` (F16 or BF16), except that
// `bad_name` (if any) is stored as I32 zeros; returns the new folder.
static char *rewrite_ckpt(const char *src_dir, const char *tmp, const char *name, pn_st_dtype dt, const char *bad_name) {
    char *dst = pn_path_join(tmp, name), cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p %s && cp %s/config.json %s/", dst, src_dir, dst);
    if (system(cmd) != 0) return dst;
    char *sp = pn_path_join(src_dir, "model.safetensors"), *dp = pn_path_join(dst, "model.safetensors");
    pn_safetensors st;
    if (pn_st_open(&st, sp) == 0) {
        pn_st_decl *decl = pn_calloc((size_t)st.n, sizeof(pn_st_decl));
        for (int i = 0; i < st.n; i++) {
            decl[i].name = st.entries[i].name;
            decl[i].dtype = bad_name && !strcmp(st.entries[i].name, bad_name) ? PN_ST_I32 : dt;
            decl[i].ndim = st.entries[i].ndim;
            memcpy(decl[i].shape, st.entries[i].shape, sizeof decl[i].shape);
        }
        pn_st_writer *w = pn_st_writer_begin(dp, decl, st.n, NULL);
        for (int i = 0; w && i < st.n; i++) {
            size_t n = (size_t)pn_st_numel(&st.entries[i]);
            float *f = pn_malloc(4 * n);
            uint16_t *h = pn_malloc(4 * n);
            pn_st_to_f32(&st, &st.entries[i], f);
            if (decl[i].dtype == PN_ST_I32) {
                memset(h, 0, 4 * n);
            } else {
                for (size_t j = 0; j < n; j++) {
                    if (dt == PN_ST_BF16) {
                        h[j] = pn_f32_to_bf16(f[j]);
                    } else { // f32 -> f16 for the small normal values of a golden (no subnormal/overflow care)
                        union { float f; uint32_t u; } v = {.f = f[j]};
                        uint32_t sign = (v.u >> 16) & 0x8000u, e = (v.u >> 23) & 0xffu, man = v.u & 0x7fffffu;
                        int ee = (int)e - 127 + 15;
                        uint32_t r = ee <= 0 ? 0 : (uint32_t)ee << 10 | (man >> 13);
                        if (ee > 0 && (man & 0x1fffu) > 0x1000u) r++; // round to nearest
                        h[j] = (uint16_t)(sign | r);
                    }
                }
            }
            pn_st_writer_write(w, h, decl[i].dtype == PN_ST_I32 ? 4 * n : 2 * n);
            free(f);
            free(h);
        }
        if (w) pn_st_writer_finish(w);
        free(decl);
        pn_st_close(&st);
    }
    free(sp);
    free(dp);
    return dst;
}

// F16 checkpoints load through the same path (close to the F32 logits); a weight stored as an integer
// dtype is refused by name.
static void check_dtypes(const char *goldens, const char *tmp) {
    char *src = pn_path_join(goldens, "qwen2-tiny");
    char *f16 = rewrite_ckpt(src, tmp, "f16", PN_ST_F16, NULL);
    char *bad = rewrite_ckpt(src, tmp, "i32", PN_ST_BF16, "model.norm.weight");
    pn_model a, b;
    int ok = pn_model_load(&a, src, dev) == 0 && pn_model_load(&b, f16, dev) == 0;
    CHECK(ok, "%s", pn_last_error());
    if (ok) {
        int32_t ids[5] = {1, 2, 299, 0, 7};
        float *la = forward_all(&a, ids, 1, 5), *lb = forward_all(&b, ids, 1, 5);
        double e = la && lb ? rel_err(lb, la, 5 * 300) : 1;
        printf("qwen2-tiny       %-4s F16 checkpoint vs F32 checkpoint rel err %.3g\n", pn_device_name(dev), e);
        // F16 rounding of the weights costs ~1e-3 in fp32; on CUDA the bf16 compute dominates.
        CHECK(e > 0 && e < (dev == PN_CPU ? 5e-3 : tol), "f16 checkpoint rel err %.3g", e);
        free(la);
        free(lb);
        pn_model_free(&a);
        pn_model_free(&b);
    }
    pn_model c;
    CHECK_ERR(pn_model_load(&c, bad, dev), "tensor 'model.norm.weight' has dtype I32, expected a floating-point dtype");
    free(src);
    free(f16);
    free(bad);
}

// A Jet-Nemotron config with a JetBlock layer over an attention-only checkpoint: the loader expects the
// JetBlock's tensors and names the first one whose shape disagrees.
static void check_hybrid_refused(const char *goldens, const char *tmp) {
    char *src = pn_path_join(goldens, "qwen2-tiny"), *dst = pn_path_join(tmp, "hybrid"), cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p %s && cp %s/model.safetensors %s/", dst, src, dst);
    if (system(cmd) != 0) return;
    char *cfg = pn_path_join(dst, "config.json");
    FILE *f = fopen(cfg, "w");
    fputs("{\"model_type\": \"jet_nemotron\", \"hidden_size\": 64, \"intermediate_size\": 160, "
          "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"vocab_size\": 300, "
          "\"tie_word_embeddings\": true, \"layer_types\": [\"attn\", \"jet\"], \"efficient_attention_config\": "
          "{\"jet\": {\"num_heads\": 4, \"head_dim\": 12, \"expand_v\": 2.0, \"conv_size\": 4, "
          "\"dconv_generator_reduction\": 8, \"norm_eps\": 1e-5}}}\n", f);
    fclose(f);
    pn_model m;
    CHECK_ERR(pn_model_load(&m, dst, dev),
              "tensor 'model.layers.1.self_attn.q_proj.weight' has shape [64, 64] but config.json implies [48, 64]");
    free(src), free(dst), free(cfg);
}

// Continuous batching at the model level: two cache rows serve three sequences of different lengths. Row 0
// prefills sequence 0 (through a row view) and decodes; row 1 stays idle, then prefills sequence 1 in the
// middle of row 0's decoding; when sequence 0 ends, row 0 is emptied and prefills sequence 2. Every logit
// row must be what the sequence gets alone (prefill + one token at a time): rows are independent whatever
// their lengths, also through recurrent (jet) and sliding-window (swa) states. Up to rounding: a product of
// two rows and one of one row need not round alike in the CPU's BLAS (1.2e-6 measured).
static void check_ragged(const char *goldens, const char *name) {
    char *dir = pn_path_join(goldens, name);
    pn_model m;
    if (pn_model_load(&m, dir, dev)) {
        CHECK(0, "%s", pn_last_error());
        free(dir);
        return;
    }
    const int V = m.cfg.vocab, P[3] = {5, 9, 3}, L[3] = {11, 14, 9}, start[3] = {0, 2, -1};
    int32_t ids[3][16];
    float *ref[3];
    for (int s = 0; s < 3; s++) {
        for (int t = 0; t < L[s]; t++) ids[s][t] = (int32_t)((s * 37 + t * 11 + 1) % V);
        ref[s] = forward_incremental(&m, ids[s], L[s], P[s]);
    }
    pn_kvcache kc;
    float *row = pn_malloc(sizeof(float) * (size_t)V * 2);
    double worst = 0;
    int ok = ref[0] && ref[1] && ref[2] && pn_model_plan(&m, 2, 16, 0) == 0 && pn_kvcache_init(&kc, &m, 2, 16) == 0;
    CHECK(ok, "%s: ragged setup: %s", name, pn_last_error());
    int slot[2] = {-1, -1}, at[3] = {0, 0, 0}, done = 0;
    // each step: rows taking a sequence prefill it alone (its last prompt position compared), then one token
    // for both rows (an idle row at position 0, unread)
    for (int step = 0; ok && done < 3 && step < 64; step++) {
        for (int b = 0; b < 2 && ok; b++) { // rows taking a sequence now
            int s = -1;
            if (b == 0 && slot[0] < 0) s = at[0] == 0 ? 0 : (at[2] == 0 ? 2 : -1);
            if (b == 1 && slot[1] < 0 && step == start[1] && at[1] == 0) s = 1;
            if (s < 0) continue;
            pn_kvcache r;
            pn_kvcache_reset_row(&kc, b);
            pn_kvcache_row(&kc, b, &r);
            ok = pn_model_forward(&m, &r, ids[s], 1, P[s]) == 0;
            pn_kvcache_row_done(&kc, b, &r);
            pn_tensor l0 = pn_rows(&m.logits, 0, 1);
            if (ok) pn_op_to_host_f32(row, &l0);
            if (ok) worst = fmax(worst, rel_err(row, ref[s] + (size_t)(P[s] - 1) * V, (size_t)V));
            slot[b] = s, at[s] = P[s];
        }
        int32_t next[2];
        for (int b = 0; b < 2; b++) {
            if (slot[b] < 0) kc.lens[b] = 0, next[b] = 0; // idle: its output is not read
            else next[b] = ids[slot[b]][at[slot[b]]];
        }
        ok = ok && pn_model_forward(&m, &kc, next, 2, 1) == 0;
        pn_tensor l2 = pn_rows(&m.logits, 0, 2);
        if (ok) pn_op_to_host_f32(row, &l2);
        for (int b = 0; b < 2 && ok; b++) {
            const int s = slot[b];
            if (s < 0) continue;
            worst = fmax(worst, rel_err(row + (size_t)b * V, ref[s] + (size_t)at[s] * V, (size_t)V));
            if (++at[s] == L[s]) slot[b] = -1, done++;
        }
    }
    CHECK(ok && done == 3, "%s: ragged decode: %s", name, ok ? "not all sequences ran" : pn_last_error());
    printf("%-28s %-4s 3 sequences through 2 rows, refilled mid-flight: worst rel err %.3g vs alone\n", name,
           pn_device_name(dev), worst);
    CHECK(worst <= (dev == PN_CPU ? 1e-5 : 1e-2), "%s: ragged rows differ from alone: %.3g", name, worst);
    if (ok) pn_kvcache_free(&kc);
    for (int s = 0; s < 3; s++) free(ref[s]);
    free(row);
    pn_model_free(&m);
    free(dir);
}

// A sliding window's KV cache as a ring: qwen2-swa (window 4) over 120 tokens, prefilled 4 at a time and
// then decoded, with caches made for calls of 4 tokens (its swa layers get rings of 64 slots: the positions
// wrap) and for calls of 120 (no ring); the same calls through both give the same logits (on the CPU bit for
// bit: the same keys in the same order). A call the ring cannot hold is refused by name.
static void check_ring(const char *goldens) {
    char *dir = pn_path_join(goldens, "qwen2-swa");
    pn_model m;
    if (pn_model_load(&m, dir, dev)) {
        CHECK(0, "%s", pn_last_error());
        free(dir);
        return;
    }
    enum { N = 120, P = 100, C = 4 };
    const size_t V = (size_t)m.cfg.vocab;
    int32_t ids[N];
    for (int t = 0; t < N; t++) ids[t] = (int32_t)((t * 29 + 7) % (int)V);
    float *out[2] = {pn_malloc(sizeof(float) * N * V), pn_malloc(sizeof(float) * N * V)};
    int64_t slots[2] = {0, 0};
    int ok = 1;
    for (int run = 0; run < 2 && ok; run++) {
        pn_kvcache kc;
        ok = pn_model_plan(&m, 1, run == 0 ? C : N, 1) == 0 && pn_kvcache_init(&kc, &m, 1, N) == 0;
        CHECK(ok, "ring setup: %s", pn_last_error());
        if (!ok) break;
        slots[run] = kc.st[1][0].shape[1]; // layer 1 is sliding
        for (int t = 0; t < N && ok; t += t < P ? C : 1) { // chunks of C, then one token at a time
            const int n = t < P ? C : 1;
            ok = pn_model_forward(&m, &kc, ids + t, 1, n) == 0;
            pn_tensor lg = pn_rows(&m.logits, 0, n);
            if (ok) pn_op_to_host_f32(out[run] + (size_t)t * V, &lg);
        }
        CHECK(ok, "ring run %d: %s", run, pn_last_error());
        if (ok && run == 0) { // a call of more tokens than the ring was made for
            ok = pn_model_plan(&m, 1, 80, 1) == 0;
            pn_kvcache_reset(&kc);
            if (ok) CHECK_ERR(pn_model_forward(&m, &kc, ids, 1, 80), "sliding-window cache of 64 slots");
        }
        pn_kvcache_free(&kc);
    }
    if (ok) {
        const double e = rel_err(out[0], out[1], (size_t)N * V);
        printf("%-28s %-4s window 4 over %d tokens in a ring of %lld slots (vs %lld): rel err %.3g\n", "qwen2-swa",
               pn_device_name(dev), N, (long long)slots[0], (long long)slots[1], e);
        CHECK(slots[0] == 64 && slots[1] == N, "ring sizes %lld and %lld (want 64 and %d)", (long long)slots[0],
              (long long)slots[1], N);
        CHECK(e <= (dev == PN_CPU ? 0.0 : 1e-2), "ring vs full cache: rel err %.3g", e);
    }
    free(out[0]), free(out[1]);
    pn_model_free(&m);
    free(dir);
}

// A NaN planted in layer 1's o_proj is reported by name when the finite check is on.
static void check_nonfinite(const char *goldens) {
    char *dir = pn_path_join(goldens, "qwen2-tiny");
    pn_model m;
    if (pn_model_load(&m, dir, dev) == 0) {
        const pn_tensor *w = &m.layers[1].slot[0].bp[m.layers[1].slot[0].nbp - 1]; // o_proj.weight: last of params_attn (no o bias)
        float nan = NAN;
        pn_tensor one = pn_rows(w, 0, 1);
        float *row = pn_malloc(sizeof(float) * (size_t)pn_numel(&one));
        pn_op_to_host_f32(row, &one);
        row[3] = nan;
        pn_op_from_host_f32(&one, row);
        free(row);
        int32_t ids[4] = {1, 2, 3, 4};
        pn_kvcache kc;
        m.check_finite = 1;
        if (pn_model_plan(&m, 1, 4, 1) == 0 && pn_kvcache_init(&kc, &m, 1, 4) == 0) {
            CHECK_ERR(pn_model_forward(&m, &kc, ids, 1, 4), "layer 1 (attn): ");
            pn_kvcache_free(&kc);
        }
        pn_model_free(&m);
    } else {
        CHECK(0, "%s", pn_last_error());
    }
    free(dir);
}

int main(int argc, char **argv) {
    const char *goldens = NULL, *mkckpt = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc) {
            dev = !strcmp(argv[++i], "cuda") ? PN_CUDA : PN_CPU;
        } else if (!strcmp(argv[i], "--tol") && i + 1 < argc) {
            tol = atof(argv[++i]);
        } else if (!goldens) {
            goldens = argv[i];
        } else {
            mkckpt = argv[i];
        }
    }
    if (!goldens) {
        fprintf(stderr, "usage: test_parity GOLDENS_DIR [MKCKPT] [--device cpu|cuda] [--tol X]\n");
        return 2;
    }
    if (dev == PN_CUDA && !pn_cuda_available()) {
        printf("skipped: no CUDA device\n");
        return 0;
    }
    // The base models (transformers), then Jet-Nemotron checkpoints as NVIDIA's own code reads them (its
    // released configs shrunk, and one case per key whose default it supplies: tests/goldens/jet_nvidia).
    static const char *cases[] = {"qwen2-tiny", "qwen3-tiny", "llama-tiny", "qwen2-swa", "jet_nvidia/released_2b",
                                  "jet_nvidia/released_4b", "jet_nvidia/no_jet_norm_eps", "jet_nvidia/no_expand_v",
                                  "jet_nvidia/saved_tied", "jet_nvidia/no_rope_theta", "jet_nvidia/no_kv_heads",
                                  "jet_nvidia/floor_reduction"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) check_case(goldens, cases[i]);
    check_greedy(goldens, "jet_nvidia/released_2b");
    check_ragged(goldens, "jet_nvidia/released_2b");
    check_ragged(goldens, "qwen2-swa");
    check_ring(goldens);
    char tmp[128];
    snprintf(tmp, sizeof tmp, "/tmp/pn_test_parity_%d", (int)getpid());
    check_dtypes(goldens, tmp);
    check_nonfinite(goldens);
    check_hybrid_refused(goldens, tmp);
    if (mkckpt) {
        check_bigvocab(goldens, mkckpt, tmp);
        check_sharded(mkckpt, tmp);
    }
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    if (system(cmd) != 0) return 1;
    printf("worst logits rel err on %s: %.3g\n", pn_device_name(dev), worst);
    return pn_test_done("test_parity");
}
