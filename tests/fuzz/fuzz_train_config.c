// fuzz_train_config: a training config (YAML, postnas-train's schema) through pn_cfg_load_string; an
// accepted one must write back as YAML that reads to the same values (pn_cfg_diff finds nothing) and hash
// the same.
#include <stdio.h>
#include <stdlib.h>

#include "../../src/pn_cfg.h"
#include "../../src/pn_common.h"
#include "../../train/pn_trainer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pn_train_cfg *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    if (pn_cfg_load_string(pn_train_schema, pn_train_schema_n, a, "fuzz.yaml", (const char *)data, size, NULL, 0) == 0) {
        char *text = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&text, &len);
        pn_cfg_write_yaml(pn_train_schema, pn_train_schema_n, a, f);
        fclose(f);
        if (pn_cfg_load_string(pn_train_schema, pn_train_schema_n, b, "written.yaml", text, len, NULL, 0)) {
            fprintf(stderr, "the written config does not read back: %s\n%s", pn_last_error(), text);
            abort();
        }
        const pn_cfg_key *k = pn_cfg_diff(pn_train_schema, pn_train_schema_n, a, b);
        if (k || pn_cfg_hash(pn_train_schema, pn_train_schema_n, a) != pn_cfg_hash(pn_train_schema, pn_train_schema_n, b)) {
            fprintf(stderr, "round trip changed %s\n%s", k ? k->path : "the hash", text);
            abort();
        }
        free(text);
    }
    free(a), free(b);
    pn_clear_error();
    return 0;
}
