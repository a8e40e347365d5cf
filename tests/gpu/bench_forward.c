// Forward throughput of a checkpoint at batch B x T (all positions' logits computed, as a distillation
// teacher does). Median of --iters timed runs after 2 warm-ups; reports tok/s and achieved TFLOP/s
// (2 * params per token for the matmuls + causal attention + LM head).
//
// usage: bench_forward MODEL_DIR [--device cpu|cuda] [--batch B] [--seq T] [--iters N]
#include <stdlib.h>
#include <string.h>

#include "../../src/pn_common.h"
#include "../../src/pn_model.h"
#include "../../src/pn_rng.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    const char *dir = NULL;
    pn_device dev = pn_cuda_available() ? PN_CUDA : PN_CPU;
    int B = 2, T = 4096, iters = 10;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc) dev = !strcmp(argv[++i], "cuda") ? PN_CUDA : PN_CPU;
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) B = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seq") && i + 1 < argc) T = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
        else dir = argv[i];
    }
    if (!dir || B < 1 || T < 1 || iters < 1) {
        fprintf(stderr, "usage: bench_forward MODEL_DIR [--device cpu|cuda] [--batch B] [--seq T] [--iters N]\n");
        return 2;
    }
    pn_model m;
    pn_kvcache kc;
    if (pn_model_load(&m, dir, dev) || pn_model_plan(&m, B, T, 1) || pn_kvcache_init(&kc, &m, B, T)) {
        fprintf(stderr, "bench_forward: error: %s\n", pn_last_error());
        return 1;
    }
    const pn_model_config *c = &m.cfg;
    int32_t *ids = pn_malloc(sizeof(int32_t) * (size_t)B * (size_t)T);
    for (int i = 0; i < B * T; i++) ids[i] = (int32_t)(pn_splitmix64((uint64_t)i) % (uint64_t)c->vocab);
    const pn_backend *be = pn_backend_get(dev);
    double *ms = pn_malloc(sizeof(double) * (size_t)iters);
    for (int it = -2; it < iters; it++) {
        kc.len = 0;
        be->sync();
        double t0 = pn_now();
        if (pn_model_forward(&m, &kc, ids, B, T)) {
            fprintf(stderr, "bench_forward: error: %s\n", pn_last_error());
            return 1;
        }
        be->sync();
        if (it >= 0) ms[it] = 1e3 * (pn_now() - t0);
    }
    qsort(ms, (size_t)iters, sizeof(double), cmp_double);
    const double med = ms[iters / 2], tokens = (double)B * T;
    const double body = (double)pn_hf_config_params(c) - (double)c->vocab * c->hidden * (c->tie_embeddings ? 1 : 2);
    const double attn = 2.0 * 2.0 * c->n_layers * (double)c->n_heads * c->head_dim * (T / 2.0); // QK^T and PV, causal
    const double flops = tokens * (2.0 * body + 2.0 * (double)c->vocab * c->hidden + attn);
    printf("forward %s %s: B %d x T %d, median %.2f ms (min %.2f) over %d runs: %.0f tok/s, %.1f TFLOP/s\n", dir,
           pn_device_name(dev), B, T, med, ms[0], iters, tokens / (med / 1e3), flops / (med / 1e3) / 1e12);
    free(ms);
    free(ids);
    pn_kvcache_free(&kc);
    pn_model_free(&m);
    return 0;
}
