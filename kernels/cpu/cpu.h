// The CPU backend's op implementations (fp32, OpenBLAS + OpenMP). This backend is the readable
// reference every CUDA kernel is tested against, so clarity wins over speed wherever they conflict.
#ifndef PN_KERNELS_CPU_H
#define PN_KERNELS_CPU_H

#include "../ops.h"

void pn_cpu_embedding(pn_tensor *out, const pn_tensor *ids, const pn_tensor *table);
void pn_cpu_rmsnorm(pn_tensor *out, const pn_tensor *x, const pn_tensor *weight, float eps);
void pn_cpu_matmul(pn_tensor *out, const pn_tensor *x, const pn_tensor *w, const pn_tensor *bias);
void pn_cpu_add(pn_tensor *x, const pn_tensor *y);
void pn_cpu_swiglu(pn_tensor *out, const pn_tensor *gate, const pn_tensor *up);
void pn_cpu_rope(pn_tensor *x, const pn_tensor *inv_freq, int pos0);
void pn_cpu_kv_store(pn_tensor *cache, const pn_tensor *src, int pos0);
void pn_cpu_attention(pn_tensor *out, const pn_tensor *q, const pn_tensor *kcache, const pn_tensor *vcache,
                      int pos0, int window);
void pn_cpu_attention_bwd(pn_tensor *dq, pn_tensor *dk, pn_tensor *dv, const pn_tensor *dout, const pn_tensor *q,
                          const pn_tensor *k, const pn_tensor *v, const pn_tensor *out, int window);

#endif
