// pn_gguf: the GGUF file format (llama.cpp's single-file models, versions 2 and 3), read through mmap.
//
// Layout: "GGUF", u32 version, u64 tensor count, u64 metadata count; the metadata (key string, u32 value
// type, value; strings are u64 length + bytes, arrays are u32 element type + u64 count + values); the
// tensor infos (name, u32 n_dims, u64 ne[n_dims] with ne[0] the contiguous dimension, u32 ggml type, u64
// offset into the data section); padding to `general.alignment` (32 when absent); the data section.
//
// Like pn_safetensors, the reader checks everything a damaged or hostile file could get wrong before any
// tensor is touched: every length and count against the bytes that remain (no allocation is sized by the
// file before that check), value types, nested arrays, duplicate keys and tensor names, dimension counts
// and element counts (overflow), ggml types, alignment, and every tensor's byte range inside the file.
// Tensor types the converter cannot dequantize are refused by name when the file is opened.
#ifndef PN_GGUF_H
#define PN_GGUF_H

#include <stddef.h>
#include <stdint.h>

// Metadata value types (gguf_type).
enum {
    PN_GGUF_U8 = 0, PN_GGUF_I8, PN_GGUF_U16, PN_GGUF_I16, PN_GGUF_U32, PN_GGUF_I32, PN_GGUF_F32, PN_GGUF_BOOL,
    PN_GGUF_STRING, PN_GGUF_ARRAY, PN_GGUF_U64, PN_GGUF_I64, PN_GGUF_F64, PN_GGUF_NTYPES
};

// The ggml tensor types this reader dequantizes (ggml_type ids).
enum { PN_GGML_F32 = 0, PN_GGML_F16 = 1, PN_GGML_Q4_0 = 2, PN_GGML_Q4_1 = 3, PN_GGML_Q8_0 = 8, PN_GGML_BF16 = 30 };

typedef struct pn_gguf_kv {
    char *key;               // NUL-terminated copy
    uint32_t type;           // PN_GGUF_*
    uint32_t arr_type;       // arrays: the element type
    uint64_t arr_n;          // arrays: the element count
    const uint8_t *val;      // the value's bytes in the mapping (arrays: the first element)
    uint64_t *str_off;       // arrays of strings: offset of each element's u64 length, from val
} pn_gguf_kv;

typedef struct pn_gguf_tensor {
    char *name;
    int ndim;
    int64_t ne[4]; // ggml order: ne[0] contiguous
    uint32_t type;
    uint64_t offset, nbytes;
    const uint8_t *data;
} pn_gguf_tensor;

typedef struct pn_gguf {
    char *path;
    uint8_t *map;
    size_t len;
    uint32_t version;
    int n_kv, n_tensors;
    pn_gguf_kv *kv;
    pn_gguf_tensor *tensors;
    uint64_t alignment, data_offset;
} pn_gguf;

// Open and validate. Returns 0, or -1 with an error naming the file and the problem.
int pn_gguf_open(pn_gguf *g, const char *path);
void pn_gguf_close(pn_gguf *g);

const pn_gguf_kv *pn_gguf_find(const pn_gguf *g, const char *key);
const pn_gguf_tensor *pn_gguf_tensor_find(const pn_gguf *g, const char *name);
const char *pn_ggml_type_name(uint32_t type);

// Typed getters: 0 on success; 1 when the key is absent (and *out untouched); -1 + error when it has
// another type. Integers of any integer type are accepted when the value fits.
int pn_gguf_get_int(const pn_gguf *g, const char *key, int64_t *out);
int pn_gguf_get_float(const pn_gguf *g, const char *key, double *out);
int pn_gguf_get_bool(const pn_gguf *g, const char *key, int *out);
int pn_gguf_get_str(const pn_gguf *g, const char *key, const char **s, size_t *len);
// Element i of an array of strings (bounds checked by the caller against kv->arr_n).
void pn_gguf_arr_str(const pn_gguf_kv *kv, uint64_t i, const char **s, size_t *len);
// Element i of an array of integers (any integer type), as int64.
int64_t pn_gguf_arr_int(const pn_gguf_kv *kv, uint64_t i);

// Dequantize a whole tensor to fp32 in ggml order (ne[0] fastest), bit-exact with ggml / gguf-py.
void pn_gguf_dequant(const pn_gguf_tensor *t, float *out);
int64_t pn_gguf_numel(const pn_gguf_tensor *t);

#endif
