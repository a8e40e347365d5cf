// ops.h: every compute op, declared once. Each backend (kernels/cpu, kernels/cuda) fills one pn_backend
// table; model code calls the pn_op_* wrappers, which check shapes and dtypes and dispatch on the output
// tensor's device, so nothing above this file branches on the device (the ggml pattern).
//
// Conventions:
// - Activations are F32 on the CPU backend and BF16 on the CUDA backend; parameters likewise. Accumulation
//   is always fp32. Index tensors are I32. All tensors of one call live on the same device.
// - Shapes are [B, T, H, D] for per-head tensors and [N, C] (N = B*T rows) for everything else.
// - Linear weights are Hugging Face's [out, in]: y = x W^T + b.
#ifndef PN_OPS_H
#define PN_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "../src/pn_tensor.h"

typedef struct pn_backend {
    const char *name;
    // memory
    void *(*alloc)(size_t bytes); // NULL when out of memory
    void (*free)(void *p);
    void (*memcpy_h2d)(void *dst, const void *src, size_t bytes);
    void (*memcpy_d2h)(void *dst, const void *src, size_t bytes);
    void (*memset0)(void *dst, size_t bytes);
    void (*sync)(void);

    // out[n, :] = table[ids[n], :]; ids already validated against V by the caller.
    void (*embedding)(pn_tensor *out, const pn_tensor *ids, const pn_tensor *table);
    // out = weight * normalize(x) over the last dim D = weight->shape[0]; rows = numel(x) / D.
    // Statistics in fp32; like HF the normalized value is rounded to the activation dtype before * weight.
    void (*rmsnorm)(pn_tensor *out, const pn_tensor *x, const pn_tensor *weight, float eps);
    // out[N, O] = x[N, I] w[O, I]^T (+ bias[O]).
    void (*matmul)(pn_tensor *out, const pn_tensor *x, const pn_tensor *w, const pn_tensor *bias);
    // x += y (same shape).
    void (*add)(pn_tensor *x, const pn_tensor *y);
    // out = silu(gate) * up.
    void (*swiglu)(pn_tensor *out, const pn_tensor *gate, const pn_tensor *up);
    // In place on x[B, T, H, D], rotate-half convention; token t has position pos0 + t;
    // inv_freq[D/2] is F32 on the tensor's device.
    void (*rope)(pn_tensor *x, const pn_tensor *inv_freq, int pos0);
    // cache[b, pos0 + t, :, :] = src[b, t, :, :]; cache is [B, cap, Hkv, D], src [B, T, Hkv, D].
    void (*kv_store)(pn_tensor *cache, const pn_tensor *src, int pos0);
    // Causal GQA attention of q[B, T, Hq, D] (query t at position pos0 + t) over keys/values at positions
    // 0 .. pos0 + T - 1 of kcache/vcache [B, cap, Hkv, D]. Key s is visible to query p iff s <= p and
    // (window == 0 or p - s < window). Scale D^-1/2, softmax in fp32. out is [B, T, Hq, D].
    void (*attention)(pn_tensor *out, const pn_tensor *q, const pn_tensor *kcache, const pn_tensor *vcache,
                      int pos0, int window);
    // dst (host F32, numel(src) floats) = src converted to fp32.
    void (*to_host_f32)(float *dst, const pn_tensor *src);
    // dst (device, activation/parameter dtype) = src (host F32 array of numel(dst) floats).
    void (*from_host_f32)(pn_tensor *dst, const float *src);
    // How many elements of x are NaN or infinite (the guard that names the layer where training diverged).
    int64_t (*count_nonfinite)(const pn_tensor *x);

    // ---- backward ops (NULL where a backend does not have one yet; the wrapper says so) ----
    // Backward of `attention` for training (keys are the T tokens themselves: pos0 = 0, k/v [B, T, Hkv, D]):
    // from the forward's q, k, v, out and the upstream dout [B, T, Hq, D], writes dq [B, T, Hq, D] and
    // dk, dv [B, T, Hkv, D] (overwritten; GQA sums the group's query heads into their kv head).
    void (*attention_bwd)(pn_tensor *dq, pn_tensor *dk, pn_tensor *dv, const pn_tensor *dout, const pn_tensor *q,
                          const pn_tensor *k, const pn_tensor *v, const pn_tensor *out, int window);
} pn_backend;

extern const pn_backend pn_cpu_backend;
#ifdef PN_HAVE_CUDA
extern const pn_backend pn_cuda_backend;
#endif

// The table for a device, or NULL when this build (or machine) has no such backend.
const pn_backend *pn_backend_get(pn_device dev);
// 1 when a CUDA device is usable now (built with CUDA and a GPU present).
int pn_cuda_available(void);
// The activation/parameter dtype a device computes in.
pn_dtype pn_device_dtype(pn_device dev);

// Checked wrappers (shape or dtype mismatches are programmer errors: they panic with the op's name).
void pn_op_embedding(pn_tensor *out, const pn_tensor *ids, const pn_tensor *table);
void pn_op_rmsnorm(pn_tensor *out, const pn_tensor *x, const pn_tensor *weight, float eps);
void pn_op_matmul(pn_tensor *out, const pn_tensor *x, const pn_tensor *w, const pn_tensor *bias);
void pn_op_add(pn_tensor *x, const pn_tensor *y);
void pn_op_swiglu(pn_tensor *out, const pn_tensor *gate, const pn_tensor *up);
void pn_op_rope(pn_tensor *x, const pn_tensor *inv_freq, int pos0);
void pn_op_kv_store(pn_tensor *cache, const pn_tensor *src, int pos0);
void pn_op_attention(pn_tensor *out, const pn_tensor *q, const pn_tensor *kcache, const pn_tensor *vcache,
                     int pos0, int window);
void pn_op_attention_bwd(pn_tensor *dq, pn_tensor *dk, pn_tensor *dv, const pn_tensor *dout, const pn_tensor *q,
                         const pn_tensor *k, const pn_tensor *v, const pn_tensor *out, int window);
void pn_op_to_host_f32(float *dst, const pn_tensor *src);
int64_t pn_op_count_nonfinite(const pn_tensor *x);
void pn_op_from_host_f32(pn_tensor *dst, const float *src);

#endif
