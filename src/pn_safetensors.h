// pn_safetensors: the Hugging Face safetensors format (REFERENCE.md §2), read through mmap and written
// atomically with an 8-byte-aligned header.
//
// The reader validates everything a damaged or hostile file could get wrong before any tensor is
// touched (header length, JSON, dtypes, shapes vs byte ranges, overlapping or uncovered ranges,
// duplicate names), so code above it can trust every entry.
#ifndef PN_SAFETENSORS_H
#define PN_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "pn_tensor.h"

#define PN_ST_MAX_DIMS 8

typedef enum {
    PN_ST_BOOL, PN_ST_U8, PN_ST_I8, PN_ST_F8_E5M2, PN_ST_F8_E4M3, PN_ST_I16, PN_ST_U16, PN_ST_F16,
    PN_ST_BF16, PN_ST_I32, PN_ST_U32, PN_ST_F32, PN_ST_F64, PN_ST_I64, PN_ST_U64, PN_ST_NDTYPES
} pn_st_dtype;

const char *pn_st_dtype_name(pn_st_dtype dt);
size_t pn_st_dtype_size(pn_st_dtype dt);
int pn_st_dtype_parse(const char *s, pn_st_dtype *out); // 0 or -1

typedef struct pn_st_entry {
    char *name;
    pn_st_dtype dtype;
    int ndim;
    int64_t shape[PN_ST_MAX_DIMS];
    uint64_t begin, end; // byte range relative to the data buffer
    const void *data;    // points into the mapping (alignment not guaranteed)
} pn_st_entry;

typedef struct pn_safetensors {
    char *path;
    void *map;
    size_t map_len;
    int n;
    pn_st_entry *entries; // in file order of data_offsets
    int nmeta;
    char **meta_keys, **meta_vals;
} pn_safetensors;

int pn_st_open(pn_safetensors *st, const char *path);
void pn_st_close(pn_safetensors *st);
const pn_st_entry *pn_st_find(const pn_safetensors *st, const char *name);
int64_t pn_st_numel(const pn_st_entry *e);
// Convert an entry's floating-point data (F32, F16, BF16, F64) into fp32. -1 + error for other dtypes.
int pn_st_to_f32(const pn_safetensors *st, const pn_st_entry *e, float *dst);
const char *pn_st_meta(const pn_safetensors *st, const char *key);

// Streaming writer: declare every tensor up front (the header needs all offsets), then append each
// tensor's bytes in the declared order, then finish. Nothing appears at `path` unless finish succeeds.
typedef struct pn_st_decl {
    const char *name;
    pn_st_dtype dtype;
    int ndim;
    int64_t shape[PN_ST_MAX_DIMS];
} pn_st_decl;

typedef struct pn_st_writer pn_st_writer;
// meta: NULL or alternating key, value strings ending in NULL.
pn_st_writer *pn_st_writer_begin(const char *path, const pn_st_decl *decl, int n, const char *const *meta);
int pn_st_writer_write(pn_st_writer *w, const void *data, size_t bytes);
int pn_st_writer_finish(pn_st_writer *w); // frees w; 0 on success
void pn_st_writer_abort(pn_st_writer *w); // frees w, removes the temporary file

#endif
