// fuzz_gguf: GGUF files through pn_gguf_open (every metadata value and tensor info) and, when a file opens,
// every getter, every string of every string array and the dequantization of every tensor of moderate
// size; then postnas-convert's own run() on it (config, tensor mapping and the tokenizer.json it builds
// from the vocabulary), writing into the per-process folder. The tool's source is compiled in without its
// main (PN_CONVERT_NO_MAIN).
#define PN_CONVERT_NO_MAIN
#include "../../src/tools/postnas-convert.c"

#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_write("m.gguf", data, size);
    char *in = fz_path("m.gguf"), *out = fz_path("out");
    pn_gguf g;
    if (pn_gguf_open(&g, in) == 0) {
        for (int i = 0; i < g.n_kv; i++) {
            const pn_gguf_kv *kv = &g.kv[i];
            int64_t v;
            double f;
            int b;
            const char *s;
            size_t n;
            pn_gguf_get_int(&g, kv->key, &v), pn_gguf_get_float(&g, kv->key, &f), pn_gguf_get_bool(&g, kv->key, &b);
            pn_gguf_get_str(&g, kv->key, &s, &n);
            if (kv->type == PN_GGUF_ARRAY && kv->arr_type == PN_GGUF_STRING)
                for (uint64_t j = 0; j < kv->arr_n; j++) pn_gguf_arr_str(kv, j, &s, &n);
            else if (kv->type == PN_GGUF_ARRAY && kv->arr_type != PN_GGUF_STRING && kv->arr_type != PN_GGUF_F32 &&
                     kv->arr_type != PN_GGUF_F64)
                for (uint64_t j = 0; j < kv->arr_n && j < 4096; j++) pn_gguf_arr_int(kv, j);
        }
        for (int i = 0; i < g.n_tensors; i++) {
            const int64_t n = pn_gguf_numel(&g.tensors[i]);
            if (n > (1 << 20)) continue;
            float *x = malloc(sizeof(float) * (size_t)n);
            pn_gguf_dequant(&g.tensors[i], x);
            free(x);
        }
        pn_gguf_close(&g);
    }
    char *argv[] = {"postnas-convert", "--from-gguf", in, "--out", out, "--dtype", "f32", NULL};
    if (run(7, argv) == 0) { // a model came out: remove it for the next input
        static const char *files[] = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"};
        for (int k = 0; k < 4; k++) {
            char *p = pn_path_join(out, files[k]);
            unlink(p);
            free(p);
        }
        rmdir(out);
    }
    if (strchr(pn_last_error(), '\n')) abort(); // every message is one line
    free(in);
    free(out);
    pn_clear_error();
    return 0;
}
