// postnas-info: what a model costs, from its config.json alone (no weights are read): per layer the mixer,
// its parameters, its decode state for one sequence of --context tokens (KV caches in bf16; recurrent
// states and convolution histories as the block keeps them) and its forward FLOPs for the token at that
// position; and the totals — the numbers the placement and hardware-aware searches and the demo's report
// compare (Jet-Nemotron's headline is the decode state: a full-attention layer's grows with the context,
// a linear block's does not).
//
//   postnas-info --model DIR [--context N] [--json]
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../pn_common.h"
#include "../pn_model.h"

static void usage(FILE *f) {
    fprintf(f, "usage: postnas-info --model DIR [--context N] [--json]\n"
               "Per layer: mixer, parameters, decode-state bytes for one sequence of N tokens (default 65536;\n"
               "KV caches in bf16) and forward FLOPs of the token at position N; then the totals. Reads only\n"
               "DIR/config.json. --json: the same as one JSON object.\n");
}

int main(int argc, char **argv) {
    const char *dir = NULL;
    int64_t ctx = 65536;
    int as_json = 0;
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(k, "-h") || !strcmp(k, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(k, "--json")) {
            as_json = 1;
        } else if (!strcmp(k, "--model") && v) {
            dir = v, i++;
        } else if (!strcmp(k, "--context") && v) {
            if (pn_parse_i64("--context", v, 1, (int64_t)1 << 40, &ctx)) {
                fprintf(stderr, "postnas-info: error: %s\n", pn_last_error());
                return 1;
            }
            i++;
        } else {
            char esc[128];
            fprintf(stderr, "postnas-info: error: unknown argument '%s' (postnas-info --help)\n",
                    pn_escape(k, strlen(k), esc, sizeof esc));
            return 1;
        }
    }
    if (!dir) {
        fprintf(stderr, "postnas-info: error: --model DIR is required (postnas-info --help)\n");
        return 1;
    }
    pn_model_config c;
    char *path = pn_path_join(dir, "config.json");
    const int rc = pn_hf_config_load(&c, path);
    free(path);
    if (rc) {
        fprintf(stderr, "postnas-info: error: %s\n", pn_last_error());
        return 1;
    }
    const int64_t H = c.hidden;
    // embeddings (+ an untied head) and the final norm; per layer: two norms, the MLP, the mixer
    const int64_t embed = (int64_t)c.vocab * H * (c.tie_embeddings ? 1 : 2) + H;
    const int64_t per_layer_rest = 2 * H + 3 * H * (int64_t)c.intermediate;
    int64_t params = embed;
    size_t state = 0;
    double flops = 2.0 * (double)c.vocab * (double)H; // the LM head
    json_t *layers = json_array();
    if (!as_json)
        printf("%-6s %-10s %14s %18s %16s\n", "layer", "mixer", "params", "state bytes", "FLOPs/token");
    for (int l = 0; l < c.n_layers; l++) {
        pn_block_cfg bc;
        const pn_block_type *bt = pn_model_layer_block(&c, l, &bc);
        pn_param ps[PN_BLOCK_MAX_PARAMS];
        const int np = bt->params(&bc, l, ps);
        int64_t p = 0;
        for (int i = 0; i < np; i++) p += pn_param_numel(&ps[i]);
        const size_t s = bt->state_bytes(&bc, ctx, 2);
        const double f = bt->flops(&bc, ctx - 1) + 6.0 * (double)H * (double)c.intermediate;
        char spec[80];
        if (!strcmp(bt->name, "swa")) snprintf(spec, sizeof spec, "swa=%d", bc.window);
        else snprintf(spec, sizeof spec, "%s", bt->name);
        params += p + per_layer_rest, state += s, flops += f;
        if (as_json)
            json_array_append_new(layers, json_pack("{s:i, s:s, s:I, s:I, s:f}", "layer", l, "mixer", spec,
                                                    "mixer_params", (json_int_t)p, "state_bytes", (json_int_t)s,
                                                    "flops_per_token", f));
        else
            printf("%-6d %-10s %14lld %18zu %16.4g\n", l, spec, (long long)(p + per_layer_rest), s, f);
    }
    if (as_json) {
        json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:f, s:o}", "model", dir, "context", (json_int_t)ctx, "parameters",
                              (json_int_t)params, "state_bytes", (json_int_t)state, "flops_per_token", flops, "layers",
                              layers);
        char *t = json_dumps(o, JSON_INDENT(2));
        printf("%s\n", t);
        free(t);
        json_decref(o);
    } else {
        json_decref(layers);
        printf("total: %lld parameters (%.3g M), decode state %.4g MiB per sequence at %lld tokens, %.4g GFLOPs "
               "per token there\n", (long long)params, (double)params / 1e6, (double)state / (1 << 20),
               (long long)ctx, flops / 1e9);
    }
    return 0;
}
