// fuzz_shard: structure-aware. The input bytes choose every property of a shard file (shard_craft.h):
// each dataset's layout, element type, link kind, filters, chunk size, extent and how much of it is
// written, the token and offset values, and each attribute's kind and value. The file is written with
// libhdf5, then opened, validated and read as postnas-data inspect and the loader do: pn_shard_open (with
// and without an expected tokenizer), pn_shard_check_ids, a window of tokens, document ranges.
//
// Why not byte-level mutation of the file: that mostly exercises libhdf5's own parser (1.10.8 has known
// crashes on corrupted metadata that no caller can prevent); this exercises every decision pn_shard makes.
#include "../../data/pn_shard.h"
#include "fuzz_common.h"
#define CRAFT_MAX_CHUNK (1u << 20) // fast writes (see shard_craft.h)
#include "shard_craft.h"

typedef struct rd {
    const uint8_t *p;
    size_t n, at;
} rd;

static uint64_t take(rd *r, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v = (v << 8) | (r->at < r->n ? r->p[r->at++] : 0);
    return v;
}

// Sizes that matter: small, around a chunk, and far past anything stored.
static uint64_t pick_count(rd *r) {
    static const uint64_t table[] = {0, 1, 2, 3, 7, 8, 100, 65535, 65536, 65537, (uint64_t)1 << 20,
                                     (uint64_t)1 << 32, (uint64_t)1 << 36, (uint64_t)1 << 50, UINT64_MAX / 2};
    const uint8_t sel = (uint8_t)take(r, 1);
    if (sel < 128) return sel % 16; // mostly tiny
    return table[sel % (sizeof table / sizeof *table)];
}

static void pick_ds(rd *r, craft_ds *d, uint64_t *vals, uint64_t nvals, uint64_t extent_hint) {
    const uint8_t a = (uint8_t)take(r, 1), b = (uint8_t)take(r, 1);
    d->layout = a % 8 < 5 ? CR_CHUNKED : a % 8 == 5 ? CR_CONTIG : (int)(a % CR_NLAYOUTS);
    d->type = (a >> 3) % 4 == 0 ? (int)((a >> 5) % CR_NTYPES) : d->type;
    d->link = (b % 16) == 0 ? (int)((b >> 4) % CR_NLINKS) : CR_LINK_HARD;
    d->deflate = (b >> 1) & 1;
    d->shuffle = (b >> 2) & 1;
    d->fletcher = ((b >> 3) & 7) == 0;
    d->early_alloc = ((b >> 6) & 3) == 0;
    const uint8_t c = (uint8_t)take(r, 1);
    d->extent = c % 4 == 0 ? pick_count(r) : extent_hint;
    d->chunk = c % 8 == 1 ? pick_count(r) : (c >> 4) % 4 == 0 ? 3 : 1u << 16;
    d->n_write = c % 16 == 2 ? pick_count(r) : d->extent;
    if (d->n_write > nvals) d->n_write = nvals;
    d->data = vals;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    rd r = {data, size, 0};
    enum { NT = 256 };
    static uint64_t tokens[CR_MAX_WRITE], offsets[CR_MAX_WRITE];
    const int64_t vocab = 1 + (int64_t)(take(&r, 1) % 64) * 8, eos = vocab - 1;
    // Documents: lengths from the input, each ending with eos unless a flag says otherwise.
    uint64_t n_docs = take(&r, 1) % 16, n_tokens = 0;
    const uint8_t flags = (uint8_t)take(&r, 1);
    offsets[0] = 0;
    for (uint64_t d = 0; d < n_docs; d++) {
        uint64_t len = take(&r, 1) % 16;
        if (flags % 4 != 0 && len == 0) len = 1;
        for (uint64_t i = 0; i < len && n_tokens < NT; i++)
            tokens[n_tokens++] = i + 1 == len && (flags >> 2) % 4 != 0 ? (uint64_t)eos : take(&r, 1) % (uint64_t)(vocab + 2);
        offsets[d + 1] = n_tokens;
    }
    if ((flags >> 4) % 8 == 0) offsets[take(&r, 1) % (n_docs + 1)] = take(&r, 2); // a damaged offset
    craft_spec c = craft_good(tokens, n_tokens, offsets, n_docs, vocab, eos, "bytes 257");
    pick_ds(&r, &c.ds[0], tokens, n_tokens, n_tokens);
    pick_ds(&r, &c.ds[1], offsets, n_docs + 1, n_docs + 1);
    for (int i = 0; i < CA_N; i++) {
        const uint8_t k = (uint8_t)take(&r, 1);
        if (k % 4 != 0) continue; // mostly as a good shard has it
        c.attr[i].kind = (int)((k >> 2) % CR_NATTRKINDS);
        c.attr[i].i = (k >> 5) == 0 ? (int64_t)take(&r, 8) : (k >> 5) == 1 ? -1 : c.attr[i].i + (int64_t)(k >> 5) - 4;
        if ((k >> 5) == 2) c.attr[i].s = "";
    }
    if (flags >> 7) c.attr[CA_NTOKENS].i = (int64_t)c.ds[0].extent, c.attr[CA_NDOCS].i = (int64_t)c.ds[1].extent - 1;
    char *path = fz_path("shard.h5");
    if (craft_write(path, fz_folder(), &c) == 0) {
        for (int pass = 0; pass < 2; pass++) {
            pn_shard *s = pn_shard_open(path, pass ? "bytes 257" : NULL, pass ? vocab : 0);
            if (!s) continue;
            const uint64_t nt = pn_shard_n_tokens(s), nd = pn_shard_n_docs(s);
            if (nt > CR_MAX_WRITE || nd + 1 > CR_MAX_WRITE) abort(); // open must refuse what the file cannot hold
            pn_shard_check_ids(s);
            uint32_t win[64];
            const uint64_t start = nt ? take(&r, 2) % nt : 0;
            const size_t n = nt - start < 64 ? (size_t)(nt - start) : 64;
            pn_shard_read(s, start, n, win);
            pn_shard_read(s, nt, 1, win); // past the end: an error, not a read
            uint64_t b, e;
            for (uint64_t d = 0; d < nd && d < 4; d++)
                if (pn_shard_doc_range(s, d, &b, &e) == 0 && (b > e || e > nt)) abort();
            pn_shard_doc_range(s, nd, &b, &e);
            pn_shard_close(s);
        }
    }
    free(path);
    pn_clear_error();
    return 0;
}
