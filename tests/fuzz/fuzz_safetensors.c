// fuzz_safetensors: a checkpoint folder from one input. Pieces (fuzz_common.h archive): model.safetensors,
// model.safetensors.index.json, two shards, config.json. Each safetensors piece goes through pn_st_open
// (and every floating-point tensor through pn_st_to_f32); the folder through pn_ckpt_open and
// pn_model_load on the CPU, which checks every tensor against the config before allocating.
#include "../../src/pn_checkpoint.h"
#include "../../src/pn_model.h"
#include "fuzz_common.h"

static const char *const names[] = {"model.safetensors", "model.safetensors.index.json",
                                    "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                                    "config.json"};

static void one_file(const char *name) {
    char *p = fz_path(name);
    pn_safetensors st;
    if (pn_st_open(&st, p) == 0) {
        for (int i = 0; i < st.n; i++) {
            const pn_st_entry *e = &st.entries[i];
            if (pn_st_find(&st, e->name) == NULL) abort();
            const int64_t n = pn_st_numel(e);
            if ((uint64_t)n * pn_st_dtype_size(e->dtype) != e->end - e->begin) abort();
            float *dst = malloc(((size_t)n + 1) * sizeof(float));
            pn_st_to_f32(&st, e, dst);
            free(dst);
        }
        pn_st_meta(&st, "format");
        pn_st_close(&st);
    }
    free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_write_archive(data, size, names, 5);
    one_file(names[0]);
    one_file(names[2]);
    one_file(names[3]);
    pn_checkpoint ck;
    if (pn_ckpt_open(&ck, fz_folder()) == 0) pn_ckpt_close(&ck);
    pn_model m;
    if (pn_model_load(&m, fz_folder(), PN_CPU) == 0) pn_model_free(&m);
    pn_clear_error();
    return 0;
}
