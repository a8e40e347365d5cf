// postnas-bench: the decode-throughput testbed of Jet-Nemotron's paper on any checkpoint the project loads.
// B random prompts of --context tokens are prefilled --prefill-chunk tokens at a time (each chunk continuing
// every block's decode state), then --new-tokens are decoded greedily for all B at once (on CUDA each step
// after the second replays one CUDA graph). Reported: prefill tok/s, decode tok/s (B x new tokens / decode
// time, as the released benchmark computes it), the decode state per sequence by block type, and the step's
// memory-bandwidth floor: the bytes a step must move (every weight once, each sequence's KV cache up to its
// length or window, a linear block's recurrent state read and written) over the device's measured copy
// bandwidth. The decode state is the blocks' state-bytes formula (a sliding window's cache counted at the
// window, what a step reads; it is allocated as a ring of window + prefill chunk - 1 slots).
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../kernels/cpu/threads.h"
#include "../pn_common.h"
#include "../pn_model.h"
#include "../pn_param.h"
#include "../pn_rng.h"

static void usage(FILE *f) {
    fprintf(f, "usage: postnas-bench --model DIR [--context N] [--prefill-chunk N] [--batch N|max] [--new-tokens N]\n"
               "                     [--device auto|cpu|cuda] [--seed S] [--threads N]\n"
               "Random prompts of --context tokens (default 65536), prefilled --prefill-chunk at a time (default\n"
               "1024), then --new-tokens (default 128) decoded greedily for --batch sequences at once (default 1;\n"
               "max: the most whose decode state and activations fit in 90%% of the free memory). Prints prefill\n"
               "and decode tok/s, the decode state per sequence by block type and the bandwidth floor of a step.\n");
}

typedef struct bench_args {
    const char *model, *device_s;
    int context, chunk, batch, new_tokens, threads, help; // batch 0: max
    uint64_t seed;
} bench_args;

static int parse_args(int argc, char **argv, bench_args *a) {
    static const struct option opts[] = {{"model", 1, 0, 'm'},      {"context", 1, 0, 'c'}, {"prefill-chunk", 1, 0, 'p'},
                                         {"batch", 1, 0, 'b'},      {"new-tokens", 1, 0, 'n'}, {"device", 1, 0, 'd'},
                                         {"seed", 1, 0, 's'},       {"threads", 1, 0, 't'}, {"help", 0, 0, 'h'},
                                         {0, 0, 0, 0}};
    *a = (bench_args){.device_s = "auto", .context = 65536, .chunk = 1024, .batch = 1, .new_tokens = 128, .seed = 1};
    int opt;
    optind = 0;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 'm': a->model = optarg; break;
        case 'c':
            if (pn_parse_int("--context", optarg, 1, INT32_MAX / 2, &a->context)) return -1;
            break;
        case 'p':
            if (pn_parse_int("--prefill-chunk", optarg, 1, INT32_MAX / 2, &a->chunk)) return -1;
            break;
        case 'b':
            if (!strcmp(optarg, "max")) a->batch = 0;
            else if (pn_parse_int("--batch", optarg, 1, 65535, &a->batch)) return -1;
            break;
        case 'n':
            if (pn_parse_int("--new-tokens", optarg, 1, INT32_MAX / 2, &a->new_tokens)) return -1;
            break;
        case 'd': a->device_s = optarg; break;
        case 's':
            if (pn_parse_u64("--seed", optarg, 0, UINT64_MAX, &a->seed)) return -1;
            break;
        case 't':
            if (pn_parse_int("--threads", optarg, 1, PN_CPU_MAX_THREADS, &a->threads)) return -1;
            break;
        case 'h': a->help = 1; return 0;
        default:
            return pn_errorf("unknown option or missing value: '%s' (see --help)",
                             optind > 0 && optind <= argc ? argv[optind - 1] : "?");
        }
    }
    if (optind < argc) return pn_errorf("unexpected argument '%s'", argv[optind]);
    if (!a->model) return pn_errorf("--model DIR is required (see --help)");
    if (strcmp(a->device_s, "auto") && strcmp(a->device_s, "cpu") && strcmp(a->device_s, "cuda"))
        return pn_errorf("--device: '%s' is not auto, cpu or cuda", a->device_s);
    return 0;
}

// A progress line redrawn on a terminal (the prefill of a long context takes a while on a CPU).
static void progress(const char *what, int done, int total) {
    static int tty = -1;
    if (tty < 0) tty = isatty(2);
    if (!tty) return;
    fprintf(stderr, "\r%s %d/%d tokens (%.0f%%)", what, done, total, 100.0 * done / total);
    if (done == total) fputc('\n', stderr);
}

static void human(double bytes, char *buf, size_t n) {
    const char *u[] = {"B", "KB", "MB", "GB", "TB"};
    int i = 0;
    while (bytes >= 1000 && i < 4) bytes /= 1000, i++;
    snprintf(buf, n, i ? "%.2f %s" : "%.0f %s", bytes, u[i]);
}

// The device's copy bandwidth (read + write bytes per second) over a buffer well beyond its caches.
static double copy_bandwidth(pn_device dev) {
    const int64_t n = dev == PN_CUDA ? (int64_t)256 << 20 : (int64_t)32 << 20; // elements
    const pn_dtype dt = pn_device_dtype(dev);
    pn_arena ar;
    const int64_t shape[1] = {n};
    if (pn_arena_init(&ar, dev, 2 * pn_arena_need(dt, 1, shape))) return 0;
    pn_tensor a = pn_arena_tensor(&ar, dt, 1, shape), b = pn_arena_tensor(&ar, dt, 1, shape);
    const pn_backend *be = pn_backend_get(dev);
    be->memset0(ar.base, ar.size);
    pn_op_copy(&b, &a); // warm up
    be->sync();
    const int reps = 5;
    const double t0 = pn_now();
    for (int r = 0; r < reps; r++) pn_op_copy(r % 2 ? &a : &b, r % 2 ? &b : &a);
    be->sync();
    const double dt_s = pn_now() - t0;
    pn_arena_free(&ar);
    return dt_s > 0 ? 2.0 * (double)pn_nbytes(&a) * reps / dt_s : 0;
}

static int run(int argc, char **argv) {
    bench_args a;
    if (parse_args(argc, argv, &a)) return -1;
    if (a.help) {
        usage(stdout);
        return 0;
    }
    if (a.threads) pn_cpu_set_threads(a.threads);
    pn_device dev = PN_CPU;
    if (!strcmp(a.device_s, "cuda") && !pn_cuda_available())
        return pn_errorf("--device cuda: no usable GPU (or no CUDA backend in this build)");
    if (!strcmp(a.device_s, "cuda") || (!strcmp(a.device_s, "auto") && pn_cuda_available())) dev = PN_CUDA;
    pn_model m;
    if (pn_model_load(&m, a.model, dev)) return -1;
    const pn_model_config *c = &m.cfg;
    const pn_backend *be = pn_backend_get(dev);
    const int ctx = a.context, cap = a.context + a.new_tokens, chunk = a.chunk < ctx ? a.chunk : ctx;
    if (cap > c->max_pos) pn_warn("%d tokens exceed max_position_embeddings %d of %s", cap, c->max_pos, a.model);

    // --batch max: the decode state and the activations grow linearly with the batch; the largest batch
    // whose both fit in 90% of what is free, then fewer while the allocation itself fails.
    int B = a.batch;
    if (B == 0) {
        if (pn_model_plan(&m, 1, chunk, 0)) goto fail;
        const double per = (double)pn_kvcache_bytes(c, 1, cap, chunk, dev) + (double)m.acts.size;
        pn_arena_free(&m.acts);
        const double avail = 0.9 * (double)be->mem_avail();
        B = per > 0 && avail / per < 65535 ? (int)(avail / per) : 65535;
        if (B < 1) {
            char h1[32], h2[32];
            human(per, h1, sizeof h1), human(avail / 0.9, h2, sizeof h2);
            pn_errorf("--batch max: one sequence of %d tokens needs %s, %s is free on %s", cap, h1, h2,
                      pn_device_name(dev));
            goto fail;
        }
    }
    pn_kvcache kc = {0};
    for (;;) { // a batch that does not fit after all: 10% fewer (only for --batch max)
        if (!pn_model_plan(&m, B, chunk, 0) && !pn_kvcache_init_calls(&kc, &m, B, cap, chunk)) break;
        pn_arena_free(&m.acts);
        if (a.batch || B == 1) goto fail;
        B = B * 9 / 10 > 0 ? B * 9 / 10 : 1;
    }
    fprintf(stderr, "postnas-bench: %s on %s, %d sequences x %d tokens (prefill chunk %d), %d new tokens\n", a.model,
            pn_device_name(dev), B, ctx, chunk, a.new_tokens);

    int32_t *ids = pn_malloc(sizeof(int32_t) * (size_t)B * (size_t)chunk), *next = pn_malloc(sizeof(int32_t) * (size_t)B);
    double t0 = pn_now();
    int rc = 0;
    for (int t = 0; t < ctx && !rc; t += chunk) { // random prompts, chunk by chunk: ids [B, n]
        const int n = ctx - t < chunk ? ctx - t : chunk;
        for (int b = 0; b < B; b++)
            for (int i = 0; i < n; i++)
                ids[(size_t)b * n + i] = (int32_t)(pn_rng_uniform(a.seed, (uint64_t)b, (uint64_t)(t + i)) * c->vocab);
        rc = pn_model_forward(&m, &kc, ids, B, n);
        if (!rc) progress("prefill", t + n, ctx);
    }
    if (!rc) rc = pn_model_greedy(&m, B, next); // also waits for the prefill
    const double t_prefill = pn_now() - t0;
    t0 = pn_now();
    for (int s = 0; s < a.new_tokens && !rc; s++) {
        rc = pn_model_forward(&m, &kc, next, B, 1);
        if (!rc) rc = pn_model_greedy(&m, B, next); // one id per sequence back: the step's only host sync
    }
    const double t_decode = pn_now() - t0;
    free(ids), free(next);
    if (rc) {
        pn_kvcache_free(&kc);
        goto fail;
    }

    // The decode state per sequence by block type, and the bytes one step reads.
    const char *types[PN_MAX_GTYPES + 8];
    int layers[PN_MAX_GTYPES + 8] = {0}, nt = 0;
    double state[PN_MAX_GTYPES + 8] = {0}, step_state = 0;
    for (int l = 0; l < c->n_layers; l++) {
        pn_block_cfg bc;
        const pn_block_type *bt = pn_model_layer_block(c, l, &bc);
        const int kvb = pn_dtype_size(m.dtype);
        const double s0 = (double)bt->state_bytes(&bc, cap, kvb), s1 = (double)bt->state_bytes(&bc, 1, kvb);
        step_state += s0 > s1 ? s0 : 2 * s0; // a (window's) KV cache is read; a recurrent state read and written
        int k = 0;
        while (k < nt && strcmp(types[k], bt->name)) k++;
        if (k == nt) types[nt++] = bt->name;
        layers[k]++, state[k] += s0;
    }
    double weights = (double)m.params.size;
    if (m.lm_head.data != m.embed.data) weights -= (double)pn_nbytes(&m.embed); // a step reads B rows of it
    const double bytes = weights + (double)B * step_state, bw = copy_bandwidth(dev);
    const double step = t_decode / a.new_tokens, floor_s = bw > 0 ? bytes / bw : 0;
    char h1[32], h2[32], h3[32], h4[32];
    int64_t nparams = 0; // tied embeddings are listed once
    for (int i = 0; i < m.nparams; i++) nparams += pn_param_numel(&m.param_list[i]);
    printf("parameters: %lld\n", (long long)nparams);
    printf("prefill: %d x %d tokens in %.2f s = %.1f tok/s\n", B, ctx, t_prefill, (double)B * ctx / t_prefill);
    printf("decode: %d x %d tokens in %.3f s = %.1f tok/s (%.3f ms per step)\n", B, a.new_tokens, t_decode,
           (double)B * a.new_tokens / t_decode, 1e3 * step);
    double total = 0;
    for (int k = 0; k < nt; k++) {
        human(state[k], h1, sizeof h1);
        printf("decode state per sequence at %d tokens: %-6s %3d layers %s\n", cap, types[k], layers[k], h1);
        total += state[k];
    }
    human(total, h1, sizeof h1);
    printf("decode state per sequence at %d tokens: total %s\n", cap, h1);
    human(bytes, h1, sizeof h1), human(weights, h2, sizeof h2), human((double)B * step_state, h3, sizeof h3);
    human(bw, h4, sizeof h4);
    printf("bandwidth floor: %s per step (weights %s, decode states %s) at %s/s (measured copy) = %.3f ms; "
           "reached %.0f%%\n", h1, h2, h3, h4, 1e3 * floor_s, step > 0 ? 100.0 * floor_s / step : 0.0);
    pn_kvcache_free(&kc);
    pn_model_free(&m);
    return 0;
fail:
    pn_model_free(&m);
    return -1;
}

int main(int argc, char **argv) {
    if (run(argc, argv)) {
        fprintf(stderr, "postnas-bench: error: %s\n", pn_last_error());
        return 1;
    }
    return 0;
}
