// pn_tensor: a typed, shaped view of memory on one device, and the arenas that own that memory.
//
// Tensors never own memory: parameters, caches and activations are carved out of a few arenas sized
// up front (DESIGN.md "Memory"), so the step loop never allocates. Row-major, contiguous, no strides.
#ifndef PN_TENSOR_H
#define PN_TENSOR_H

#include <stddef.h>
#include <stdint.h>

typedef enum { PN_F32 = 0, PN_BF16, PN_F16, PN_I32 } pn_dtype;
typedef enum { PN_CPU = 0, PN_CUDA } pn_device;

#define PN_MAX_DIMS 4

typedef struct pn_tensor {
    void *data;
    pn_dtype dtype;
    pn_device device;
    int ndim;
    int64_t shape[PN_MAX_DIMS];
} pn_tensor;

size_t pn_dtype_size(pn_dtype dt);
const char *pn_dtype_name(pn_dtype dt);
const char *pn_device_name(pn_device dev);
int64_t pn_numel(const pn_tensor *t);
size_t pn_nbytes(const pn_tensor *t);
// A view: pn_view(data, PN_F32, PN_CPU, 2, (int64_t[]){rows, cols}).
pn_tensor pn_view(void *data, pn_dtype dt, pn_device dev, int ndim, const int64_t *shape);
// The same memory with another shape of the same element count.
pn_tensor pn_reshape(const pn_tensor *t, int ndim, const int64_t *shape);
// Rows [r0, r0+n) of the leading dimension.
pn_tensor pn_rows(const pn_tensor *t, int64_t r0, int64_t n);
// "[2, 4096, 1536]" into buf.
const char *pn_shape_str(const pn_tensor *t, char *buf, size_t n);
// The same for a shape of any rank (a file's tensor may have more dimensions than PN_MAX_DIMS).
const char *pn_shape_fmt(int ndim, const int64_t *shape, char *buf, size_t n);

// A bump allocator on one device. Allocations are 256-byte aligned (what cuBLAS and vector loads like).
typedef struct pn_arena {
    pn_device device;
    char *base;
    size_t size, used;
} pn_arena;

// Returns 0, or -1 with the error set when the device cannot provide `bytes` (on the CPU, also when
// `bytes` exceeds the machine's physical memory: such a request is refused before it reaches malloc).
int pn_arena_init(pn_arena *a, pn_device dev, size_t bytes);
void pn_arena_free(pn_arena *a);
pn_tensor pn_arena_tensor(pn_arena *a, pn_dtype dt, int ndim, const int64_t *shape);
// Bytes an arena needs for a tensor of this size (with alignment padding), for up-front planning.
size_t pn_arena_need(pn_dtype dt, int ndim, const int64_t *shape);

#endif
