// mkbadshard RECIPE OUT.h5: writes one of the malformed shards that tests/test_bad_input.sh feeds to
// `postnas-data inspect` (h5py is not available to the suite, so the files are made here with libhdf5).
// Every recipe is a small file whose attributes agree with each other; what is wrong is one thing only.
#include "shard_craft.h"

#define VOCAB 257
#define EOS 256

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: mkbadshard RECIPE OUT.h5\n");
        return 2;
    }
    const char *r = argv[1];
    static uint64_t tokens[] = {104, 105, EOS, 33, 33, EOS}, offsets[] = {0, 3, 6};
    craft_spec c = craft_good(tokens, 6, offsets, 2, VOCAB, EOS, "bytes 257");
    static uint64_t huge_off[] = {0, (uint64_t)1 << 36};
    if (!strcmp(r, "good")) {
    } else if (!strcmp(r, "sparse-tokens")) { // 2^36 ids claimed, a handful written: the rest would read as 0
        c.ds[0].extent = (uint64_t)1 << 36;
        c.ds[1] = (craft_ds){.layout = CR_CHUNKED, .type = CR_U64, .deflate = 1, .extent = 2, .chunk = 2,
                             .n_write = 2, .data = huge_off};
        c.attr[CA_NTOKENS].i = (int64_t)1 << 36;
        c.attr[CA_NDOCS].i = 1;
    } else if (!strcmp(r, "sparse-offsets")) { // 2^36 offsets claimed
        c.ds[1].extent = (uint64_t)1 << 36;
        c.attr[CA_NDOCS].i = ((int64_t)1 << 36) - 1;
    } else if (!strcmp(r, "contiguous-unwritten")) { // contiguous, never written: no storage at all
        c.ds[0].layout = CR_CONTIG;
        c.ds[0].n_write = 0;
    } else if (!strcmp(r, "virtual-tokens")) { // a virtual dataset over a file that does not exist
        c.ds[0].layout = CR_VIRTUAL;
    } else if (!strcmp(r, "external-tokens")) {
        c.ds[0].layout = CR_EXTERNAL;
    } else if (!strcmp(r, "compact-tokens")) {
        c.ds[0].layout = CR_COMPACT;
    } else if (!strcmp(r, "external-link")) {
        c.ds[0].link = CR_LINK_EXTERNAL;
    } else if (!strcmp(r, "huge-chunk")) {
        c.ds[0].chunk = (uint64_t)1 << 24;
    } else if (!strcmp(r, "fletcher-only")) { // accepted: a checksum filter, uncompressed
        c.ds[0].deflate = 0;
        c.ds[0].fletcher = 1;
    } else if (!strcmp(r, "no-eos-last")) {
        static uint64_t t[] = {104, 105, EOS, 33, 33, 33};
        c.ds[0].data = t;
    } else if (!strcmp(r, "no-eos-first")) { // only a full scan (inspect) finds it
        static uint64_t t[] = {104, 105, 106, 33, 33, EOS};
        c.ds[0].data = t;
    } else if (!strcmp(r, "empty-doc")) {
        static uint64_t o[] = {0, 0, 6};
        c.ds[1].data = o;
    } else if (!strcmp(r, "empty-tokenizer")) {
        c.attr[CA_TOKENIZER].s = "";
    } else if (!strcmp(r, "wide-int-attr")) { // vocab_size as a pair of integers
        c.attr[CA_VOCAB].kind = CR_ATTR_I64_PAIR;
    } else if (!strcmp(r, "float-attr")) {
        c.attr[CA_EOS].kind = CR_ATTR_F64;
    } else {
        fprintf(stderr, "mkbadshard: unknown recipe '%s'\n", r);
        return 2;
    }
    if (craft_write(argv[2], ".", &c)) {
        fprintf(stderr, "mkbadshard: HDF5 refused recipe '%s'\n", r);
        return 1;
    }
    return 0;
}
