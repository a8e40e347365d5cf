// shard_craft: writes HDF5 files shaped like postnas shards, with every property a hostile or damaged
// file could get wrong set by hand: dataset layout (contiguous, chunked, compact, virtual, external),
// chunk size, filters, extent vs. data actually written (sparse datasets), element type, link kind, and
// each attribute's presence, type and value.
//
// Shared by the structure-aware shard fuzzer (fuzz_shard.c decodes its input bytes into a craft_spec)
// and mkbadshard.c (named recipes for tests/test_bad_input.sh). Byte-level mutation of an HDF5 file
// mostly exercises libhdf5's own parser; this exercises what pn_shard does with whatever a valid HDF5 file
// can say.
#ifndef PN_SHARD_CRAFT_H
#define PN_SHARD_CRAFT_H

#ifndef CRAFT_MAX_CHUNK
#define CRAFT_MAX_CHUNK (1u << 24) // elements per chunk at most
#endif

#include <hdf5.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CR_CONTIG = 0, CR_CHUNKED, CR_COMPACT, CR_VIRTUAL, CR_EXTERNAL, CR_NLAYOUTS };
enum { CR_U32 = 0, CR_U64, CR_U16, CR_I32, CR_F32, CR_NTYPES };
enum { CR_LINK_HARD = 0, CR_LINK_SOFT, CR_LINK_EXTERNAL, CR_LINK_NONE, CR_NLINKS };
enum { CR_ATTR_I64 = 0, CR_ATTR_I32, CR_ATTR_U8, CR_ATTR_F64, CR_ATTR_STR_FIXED, CR_ATTR_STR_VLEN, CR_ATTR_I64_PAIR,
       CR_ATTR_NONE, CR_NATTRKINDS };

#define CR_MAX_WRITE ((uint64_t)1 << 13) // elements written at most per dataset (the rest stays sparse)

typedef struct craft_ds {
    int layout, type, link, deflate, shuffle, fletcher, early_alloc;
    uint64_t extent;  // dataset extent (elements)
    uint64_t chunk;   // chunk length (chunked layout)
    uint64_t n_write; // elements actually written from `data` (<= extent, <= CR_MAX_WRITE)
    const uint64_t *data;
} craft_ds;

typedef struct craft_attr {
    int kind;
    int64_t i;
    const char *s;
} craft_attr;

enum { CA_TOKENIZER = 0, CA_SOURCE, CA_VOCAB, CA_EOS, CA_VERSION, CA_NTOKENS, CA_NDOCS, CA_N };
static const char *const craft_attr_names[CA_N] = {"tokenizer", "source", "vocab_size", "eos_id",
                                                   "format_version", "n_tokens", "n_docs"};

typedef struct craft_spec {
    craft_ds ds[2]; // tokens, doc_offsets
    craft_attr attr[CA_N];
} craft_spec;

static inline hid_t craft_type(int t) {
    switch (t) {
    case CR_U64: return H5T_STD_U64LE;
    case CR_U16: return H5T_STD_U16LE;
    case CR_I32: return H5T_STD_I32LE;
    case CR_F32: return H5T_IEEE_F32LE;
    default: return H5T_STD_U32LE;
    }
}

// A good shard's spec over caller-owned tokens / offsets (consistent attributes).
static inline craft_spec craft_good(const uint64_t *tokens, uint64_t n_tokens, const uint64_t *offsets, uint64_t n_docs,
                             int64_t vocab, int64_t eos, const char *identity) {
    craft_spec c;
    memset(&c, 0, sizeof c);
    c.ds[0] = (craft_ds){.layout = CR_CHUNKED, .type = CR_U32, .deflate = 1, .shuffle = 1, .extent = n_tokens,
                         .chunk = 1u << 16, .n_write = n_tokens, .data = tokens};
    c.ds[1] = (craft_ds){.layout = CR_CHUNKED, .type = CR_U64, .deflate = 1, .shuffle = 1, .extent = n_docs + 1,
                         .chunk = n_docs + 1 < (1u << 16) ? n_docs + 1 : 1u << 16, .n_write = n_docs + 1,
                         .data = offsets};
    c.attr[CA_TOKENIZER] = (craft_attr){CR_ATTR_STR_VLEN, 0, identity};
    c.attr[CA_SOURCE] = (craft_attr){CR_ATTR_STR_VLEN, 0, "shard_craft"};
    c.attr[CA_VOCAB] = (craft_attr){CR_ATTR_I64, vocab, NULL};
    c.attr[CA_EOS] = (craft_attr){CR_ATTR_I64, eos, NULL};
    c.attr[CA_VERSION] = (craft_attr){CR_ATTR_I64, 1, NULL};
    c.attr[CA_NTOKENS] = (craft_attr){CR_ATTR_I64, (int64_t)n_tokens, NULL};
    c.attr[CA_NDOCS] = (craft_attr){CR_ATTR_I64, (int64_t)n_docs, NULL};
    return c;
}

static inline int craft_write_attr(hid_t f, const char *name, const craft_attr *a) {
    hid_t type = -1, space = H5Screate(H5S_SCALAR), at = -1;
    herr_t rc = 0;
    const char *s = a->s ? a->s : "";
    switch (a->kind) {
    case CR_ATTR_NONE: H5Sclose(space); return 0;
    case CR_ATTR_I64: type = H5Tcopy(H5T_STD_I64LE); break;
    case CR_ATTR_I32: type = H5Tcopy(H5T_STD_I32LE); break;
    case CR_ATTR_U8: type = H5Tcopy(H5T_STD_U8LE); break;
    case CR_ATTR_F64: type = H5Tcopy(H5T_IEEE_F64LE); break;
    case CR_ATTR_I64_PAIR: {
        H5Sclose(space);
        hsize_t two = 2;
        space = H5Screate_simple(1, &two, NULL);
        type = H5Tcopy(H5T_STD_I64LE);
        break;
    }
    case CR_ATTR_STR_FIXED:
        type = H5Tcopy(H5T_C_S1);
        H5Tset_size(type, strlen(s) ? strlen(s) : 1);
        break;
    default: // vlen UTF-8, as the writer makes them
        type = H5Tcopy(H5T_C_S1);
        H5Tset_size(type, H5T_VARIABLE);
        H5Tset_cset(type, H5T_CSET_UTF8);
        break;
    }
    at = H5Acreate2(f, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (at < 0) rc = -1;
    else if (a->kind == CR_ATTR_STR_VLEN) rc = H5Awrite(at, type, &s);
    else if (a->kind == CR_ATTR_STR_FIXED) {
        char *buf = calloc(strlen(s) + 1, 1);
        memcpy(buf, s, strlen(s));
        rc = H5Awrite(at, type, buf);
        free(buf);
    } else if (a->kind == CR_ATTR_F64) {
        double d = (double)a->i;
        rc = H5Awrite(at, H5T_NATIVE_DOUBLE, &d);
    } else if (a->kind == CR_ATTR_I64_PAIR) {
        int64_t v[2] = {a->i, a->i};
        rc = H5Awrite(at, H5T_NATIVE_INT64, v);
    } else {
        int64_t v = a->i; // converted (and clamped by HDF5) to the attribute's type
        rc = H5Awrite(at, H5T_NATIVE_INT64, &v);
    }
    if (at >= 0) H5Aclose(at);
    H5Tclose(type);
    H5Sclose(space);
    return rc < 0 ? -1 : 0;
}

// Writes dataset `name` per d. Extents of layouts that allocate everything up front are capped so the
// crafted file stays small (see below); others may be huge and sparse.
static inline int craft_write_ds(hid_t f, const char *dir, const char *name, const craft_ds *d) {
    craft_ds x = *d;
    if (x.n_write > x.extent) x.n_write = x.extent;
    if (x.n_write > CR_MAX_WRITE) x.n_write = CR_MAX_WRITE;
    if (x.layout == CR_COMPACT && x.extent > 4096) x.extent = 4096;
    // Storage allocated for the whole extent (early allocation, or contiguous data once anything is
    // written) would make a huge file: such extents stay small.
    if (x.early_alloc && x.extent > 512) x.extent = 512;
    if ((x.layout == CR_EXTERNAL || (x.layout == CR_CONTIG && x.n_write > 0)) && x.extent > CR_MAX_WRITE)
        x.extent = CR_MAX_WRITE;
    if (x.n_write > x.extent) x.n_write = x.extent;
    hsize_t ext = x.extent, maxd = H5S_UNLIMITED;
    hid_t space = H5Screate_simple(1, &ext, x.layout == CR_CHUNKED ? &maxd : NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t type = craft_type(x.type);
    char target[512];
    switch (x.layout) {
    case CR_CHUNKED: {
        hsize_t ch = x.chunk ? x.chunk : 1;
        // HDF5 limits a chunk to 4 GiB (CRAFT_MAX_CHUNK, 2^24 elements, what the bad-input catalogue's
        // huge-chunk shard needs); the fuzzer sets 2^20 (8 MiB, past HDF5's 1 MiB chunk cache) to keep writing
        // a crafted file fast: a 2^24-element chunk's fill took ~1 s per input, 14 s on a loaded machine
        if (ch > (hsize_t)CRAFT_MAX_CHUNK) ch = (hsize_t)CRAFT_MAX_CHUNK;
        H5Pset_chunk(dcpl, 1, &ch);
        if (x.shuffle) H5Pset_shuffle(dcpl);
        if (x.deflate) H5Pset_deflate(dcpl, 1);
        if (x.fletcher) H5Pset_fletcher32(dcpl);
        if (x.early_alloc) H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY);
        break;
    }
    case CR_COMPACT: H5Pset_layout(dcpl, H5D_COMPACT); break;
    case CR_EXTERNAL:
        snprintf(target, sizeof target, "%s.ext", name);
        H5Pset_external(dcpl, target, 0, (hsize_t)(x.extent * H5Tget_size(type)));
        x.n_write = 0; // nothing is written, so no external file appears
        break;
    case CR_VIRTUAL: { // maps the whole extent onto a dataset in a file that does not exist
        hid_t src = H5Screate_simple(1, &ext, NULL);
        H5Pset_virtual(dcpl, space, "missing-source.h5", name, src);
        H5Sclose(src);
        x.n_write = 0;
        break;
    }
    default:
        if (x.early_alloc) H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY);
        break;
    }
    (void)dir;
    const char *dsname = name;
    char hidden[64];
    if (x.link == CR_LINK_SOFT || x.link == CR_LINK_EXTERNAL) {
        snprintf(hidden, sizeof hidden, "real_%s", name);
        dsname = hidden;
    }
    int rc = 0;
    if (x.link != CR_LINK_NONE) {
        hid_t ds = H5Dcreate2(f, dsname, type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        if (ds < 0) {
            rc = -1;
        } else {
            if (x.n_write > 0 && x.data) {
                hsize_t start = 0, count = x.n_write;
                hid_t fs = H5Dget_space(ds), ms = H5Screate_simple(1, &count, NULL);
                H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &count, NULL);
                if (H5Dwrite(ds, H5T_NATIVE_UINT64, ms, fs, H5P_DEFAULT, x.data) < 0) rc = -1;
                H5Sclose(ms);
                H5Sclose(fs);
            }
            H5Dclose(ds);
        }
        if (x.link == CR_LINK_SOFT) H5Lcreate_soft(dsname, f, name, H5P_DEFAULT, H5P_DEFAULT);
        if (x.link == CR_LINK_EXTERNAL) H5Lcreate_external("missing-target.h5", dsname, f, name, H5P_DEFAULT, H5P_DEFAULT);
    }
    H5Pclose(dcpl);
    H5Sclose(space);
    return rc;
}

// Writes the file (truncating); 0, or -1 when HDF5 refused the spec (a fuzzer skips such inputs).
static inline int craft_write(const char *path, const char *dir, const craft_spec *c) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0) return -1;
    int rc = craft_write_ds(f, dir, "tokens", &c->ds[0]);
    rc |= craft_write_ds(f, dir, "doc_offsets", &c->ds[1]);
    for (int i = 0; i < CA_N; i++) rc |= craft_write_attr(f, craft_attr_names[i], &c->attr[i]);
    if (H5Fclose(f) < 0) rc = -1;
    H5Eclear2(H5E_DEFAULT);
    return rc;
}

#endif
