// fuzz_shard_bytes: byte-level mutation of whole shard files (seeds: shards postnas-data wrote), opened,
// validated and read as postnas-data inspect does. Most of what it reaches is libhdf5's own parser of
// file metadata, where 1.10.8 has crashes on corrupted input that no caller can prevent (see
// tests/fuzz/README.md); tests/fuzz/run.sh runs it only when FUZZ_TARGETS names it ("shard_bytes").
#include "../../data/pn_shard.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fz_write("shard.h5", data, size);
    char *path = fz_path("shard.h5");
    pn_shard *s = pn_shard_open(path, NULL, 0);
    if (s) {
        pn_shard_check_ids(s);
        uint32_t win[64];
        const uint64_t nt = pn_shard_n_tokens(s);
        pn_shard_read(s, nt / 2, nt - nt / 2 < 64 ? (size_t)(nt - nt / 2) : 64, win);
        uint64_t b, e;
        pn_shard_doc_range(s, 0, &b, &e);
        pn_shard_close(s);
    }
    free(path);
    pn_clear_error();
    return 0;
}
