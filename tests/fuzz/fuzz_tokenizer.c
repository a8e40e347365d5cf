// fuzz_tokenizer: a tokenizer folder from one input. Pieces (fuzz_common.h archive): tokenizer.json,
// vocab.json, merges.txt, tokenizer_config.json, and text. pn_tokenizer_load reads the folder as
// postnas-generate and postnas-data do; a loaded tokenizer encodes the text piece and a few fixed strings
// (with and without special tokens), and every result is decoded back.
#include "../../data/pn_tokenizer.h"
#include "fuzz_common.h"

static const char *const names[] = {"tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json", "text"};

static void roundtrip(const pn_tokenizer *tok, const char *text, size_t len, int special) {
    int32_t *ids = NULL;
    size_t n = 0, cap = 0;
    if (pn_tokenizer_encode(tok, text, len, special, &ids, &n, &cap) == 0) {
        const int V = pn_tokenizer_vocab_size(tok);
        for (size_t i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= V) abort(); // encode only hands out ids of the vocabulary
        char *out = NULL; // not compared with the text: NFC may have changed it
        size_t olen = 0;
        pn_tokenizer_decode(tok, ids, n, 0, &out, &olen);
        free(out);
        out = NULL;
        pn_tokenizer_decode(tok, ids, n, 1, &out, &olen);
        free(out);
    }
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *piece[5];
    size_t len[5];
    fz_split(data, size, piece, len, 5);
    fz_write_archive(data, size, names, 4);
    if (len[0] || len[1]) { // the loader needs tokenizer.json or vocab.json
        pn_tokenizer *tok = pn_tokenizer_load(fz_folder());
        if (tok) {
            pn_tokenizer_identity(tok);
            pn_tokenizer_eos_id(tok);
            pn_tokenizer_bos_id(tok);
            const int V = pn_tokenizer_vocab_size(tok);
            for (int32_t id = -1; id <= V && id < 64; id++) pn_tokenizer_token(tok, id);
            pn_tokenizer_token(tok, V);
            roundtrip(tok, (const char *)piece[4], len[4], 0);
            roundtrip(tok, (const char *)piece[4], len[4], 1);
            static const char *fixed[] = {"Hello, world! 123", "  spaces\n\ttabs  ", "<|endoftext|>x<|im_start|>",
                                          "caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 \xf0\x9f\x98\x80", "\xff\xfe\x80 bad",
                                          "don't I'll we've"};
            for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++) {
                roundtrip(tok, fixed[i], strlen(fixed[i]), 0);
                roundtrip(tok, fixed[i], strlen(fixed[i]), 1);
            }
            pn_tokenizer_free(tok);
        }
    }
    pn_clear_error();
    return 0;
}
