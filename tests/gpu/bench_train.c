// Throughput of one training step's forward + backward (the student side of a PostNAS distillation step:
// no teacher, no optimizer) at batch B x T. By default only the token mixers' tensors train (MLPs, norms and
// embeddings frozen, the ANCHORS.md setting); --train all makes every tensor
// trainable. dlogits are random. Median of --iters timed steps after 2 warm-ups; also times the forward
// alone and reports the planned activation memory.
//
// usage: bench_train MODEL_DIR [--device cpu|cuda] [--batch B] [--seq T] [--iters N] [--train mixers|all]
//                    [--recompute]
#include <stdlib.h>
#include <string.h>

#include "../../src/pn_common.h"
#include "../../src/pn_model.h"
#include "../../src/pn_rng.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int fail(void) {
    fprintf(stderr, "bench_train: error: %s\n", pn_last_error());
    return 1;
}

int main(int argc, char **argv) {
    const char *dir = NULL, *train = "mixers";
    pn_device dev = pn_cuda_available() ? PN_CUDA : PN_CPU;
    int B = 2, T = 4096, iters = 5, recompute = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--device") && i + 1 < argc) dev = !strcmp(argv[++i], "cuda") ? PN_CUDA : PN_CPU;
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc) B = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--seq") && i + 1 < argc) T = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc) iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--train") && i + 1 < argc) train = argv[++i];
        else if (!strcmp(argv[i], "--recompute")) recompute = 1;
        else dir = argv[i];
    }
    if (!dir || B < 1 || T < 1 || iters < 1 || (strcmp(train, "mixers") && strcmp(train, "all"))) {
        fprintf(stderr, "usage: bench_train MODEL_DIR [--device cpu|cuda] [--batch B] [--seq T] [--iters N] "
                        "[--train mixers|all] [--recompute]\n");
        return 2;
    }
    pn_model m;
    if (pn_model_load(&m, dir, dev)) return fail();
    const pn_model_config *c = &m.cfg;
    uint8_t *tr = pn_calloc((size_t)m.nparams, 1), *rec = pn_calloc((size_t)c->n_layers, 1);
    int64_t ntrain = 0;
    for (int i = 0; i < m.nparams; i++) {
        const int mixer = strstr(m.param_list[i].name, ".self_attn.") != NULL;
        tr[i] = !strcmp(train, "all") || mixer;
        if (tr[i]) ntrain += pn_param_numel(&m.param_list[i]);
    }
    memset(rec, recompute, (size_t)c->n_layers);
    pn_train_opts o = {.recompute = rec};
    if (pn_model_grads_init(&m, tr) || pn_model_train_plan(&m, B, T, &o)) return fail();
    const int64_t N = (int64_t)B * T;
    int32_t *ids = pn_malloc(sizeof(int32_t) * (size_t)N);
    for (int64_t i = 0; i < N; i++) ids[i] = (int32_t)(pn_splitmix64((uint64_t)i) % (uint64_t)c->vocab);
    // dlogits: small random values, uploaded once
    pn_arena a;
    if (pn_arena_init(&a, dev, pn_arena_need(m.dtype, 2, (int64_t[]){N, c->vocab}))) return fail();
    pn_tensor dl = pn_arena_tensor(&a, m.dtype, 2, (int64_t[]){N, c->vocab});
    float *h = pn_malloc(sizeof(float) * (size_t)(N * c->vocab));
    for (int64_t i = 0; i < N * c->vocab; i++) h[i] = 1e-4f * pn_rng_normal(7, 0, (uint64_t)i);
    pn_op_from_host_f32(&dl, h);
    free(h);
    const pn_backend *be = pn_backend_get(dev);
    double *fwd = pn_malloc(sizeof(double) * (size_t)iters), *step = pn_malloc(sizeof(double) * (size_t)iters);
    for (int it = -2; it < iters; it++) {
        be->sync();
        const double t0 = pn_now();
        if (pn_model_forward_train(&m, ids, B, T, NULL, 0)) return fail();
        be->sync();
        const double t1 = pn_now();
        if (pn_model_backward(&m, &dl)) return fail();
        be->sync();
        if (it >= 0) fwd[it] = 1e3 * (t1 - t0), step[it] = 1e3 * (pn_now() - t0);
    }
    qsort(fwd, (size_t)iters, sizeof(double), cmp_double);
    qsort(step, (size_t)iters, sizeof(double), cmp_double);
    const double sm = step[iters / 2], fm = fwd[iters / 2];
    printf("train step %s %s: B %d x T %d, %s trainable (%.1fM parameters)%s: forward %.1f ms, forward + backward "
           "%.1f ms = %.0f tok/s; %.2f GiB planned activations\n",
           dir, pn_device_name(dev), B, T, train, ntrain / 1e6, recompute ? ", recompute" : "", fm, sm,
           (double)N / (sm / 1e3), (double)pn_model_train_bytes(&m) / (1 << 30));
    pn_arena_free(&a);
    pn_model_free(&m);
    free(ids), free(tr), free(rec), free(fwd), free(step);
    return 0;
}
