// The CPU backend's op implementations (fp32; single-threaded OpenBLAS calls and parallel loops on the
// backend's own thread pool, threads.h). This backend is the readable reference every CUDA kernel is
// tested against, so clarity wins over speed wherever they conflict.
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
void pn_cpu_attention_train(pn_tensor *out, pn_tensor *lse, const pn_tensor *q, const pn_tensor *k, const pn_tensor *v,
                            int window);
void pn_cpu_attention_bwd(pn_tensor *dq, pn_tensor *dk, pn_tensor *dv, const pn_tensor *dout, const pn_tensor *q,
                          const pn_tensor *k, const pn_tensor *v, const pn_tensor *out, const pn_tensor *lse,
                          int window);

// Backward ops on raw fp32 arrays (the training path; the backend table gains them with their CUDA twins).
// Parameter gradients accumulate (+=) and may be NULL for frozen tensors; input gradients are overwritten.
void pn_cpu_rmsnorm_bwd(float *dx, float *dw, const float *dy, const float *x, const float *w, int64_t rows, int64_t D,
                        float eps);
void pn_cpu_gated_rmsnorm_fwd(float *y, const float *x, const float *g, const float *w, int64_t rows, int64_t D,
                              float eps);
void pn_cpu_gated_rmsnorm_bwd(float *dx, float *dg, float *dw, const float *dy, const float *x, const float *g,
                              const float *w, int64_t rows, int64_t D, float eps);
void pn_cpu_swiglu_bwd(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int64_t n);
void pn_cpu_matmul_bwd(float *dx, float *dw, float *db, const float *dout, const float *x, const float *w, int64_t N,
                       int64_t n_in, int64_t n_out);

// Causal depthwise convolution over W tokens (kernels/cpu/conv1d.c): a static kernel w [C, W] (+ bias [C])
// or, when kdyn != NULL, a dynamic kernel per token kdyn [B, T, C, W]; optional SiLU; cu_seqlens NULL or
// n_seqs + 1 offsets (B = 1). The backward writes dx, accumulates dw and dbias (+=; either may be NULL),
// and writes dkdyn for the dynamic form. W <= 64.
void pn_cpu_conv1d_fwd(float *y, const float *x, const float *w, const float *bias, const float *kdyn, int64_t B,
                       int64_t T, int64_t C, int W, int act_silu, const int32_t *cu_seqlens, int n_seqs);
void pn_cpu_conv1d_bwd(float *dx, float *dw, float *dbias, float *dkdyn, const float *dy, const float *x,
                       const float *w, const float *bias, const float *kdyn, int64_t B, int64_t T, int64_t C, int W,
                       int act_silu, const int32_t *cu_seqlens, int n_seqs);

// The linear blocks' gates on raw fp32 arrays (train_ops.c; the math in ops.h's pn_op_lin_gates), shared by the
// tensor op and the layer references in src/blocks/*_cpu.c. za, A_log, dt_bias NULL: no decay (g = 0).
void pn_cpu_gates_fwd(float *g, float *beta, const float *za, const float *zb, const float *A_log,
                      const float *dt_bias, int64_t N, int64_t H);
void pn_cpu_gates_bwd(float *dza, float *dzb, float *dA_log, float *ddt_bias, const float *dg, const float *dbeta,
                      const float *za, const float *g, const float *beta, const float *A_log, const float *dt_bias,
                      int64_t N, int64_t H);

// Tensor forms of the training and linear-block ops for the backend table (train_ops.c; contracts in ops.h).
void pn_cpu_copy(pn_tensor *dst, const pn_tensor *src);
void pn_cpu_silu(pn_tensor *y, const pn_tensor *x);
void pn_cpu_silu_bwd(pn_tensor *dx, const pn_tensor *dy, const pn_tensor *x);
void pn_cpu_rmsnorm_bwd_t(pn_tensor *dx, pn_tensor *dw, const pn_tensor *dy, const pn_tensor *x, const pn_tensor *w,
                          float eps);
void pn_cpu_gated_rmsnorm_t(pn_tensor *y, const pn_tensor *x, const pn_tensor *gate, const pn_tensor *w, float eps);
void pn_cpu_gated_rmsnorm_bwd_t(pn_tensor *dx, pn_tensor *dgate, pn_tensor *dw, const pn_tensor *dy, const pn_tensor *x,
                                const pn_tensor *gate, const pn_tensor *w, float eps);
void pn_cpu_swiglu_bwd_t(pn_tensor *dgate, pn_tensor *dup, const pn_tensor *dout, const pn_tensor *gate,
                         const pn_tensor *up);
void pn_cpu_matmul_bwd_t(pn_tensor *dx, pn_tensor *dw, pn_tensor *db, const pn_tensor *dout, const pn_tensor *x,
                         const pn_tensor *w, int accumulate_dx);
void pn_cpu_rope_bwd(pn_tensor *dx, const pn_tensor *inv_freq, int pos0);
void pn_cpu_embedding_bwd(pn_tensor *dtable, const pn_tensor *ids, const pn_tensor *dout);
void pn_cpu_conv1d_t(pn_tensor *y, const pn_tensor *x, const pn_tensor *w, const pn_tensor *bias, const pn_tensor *kdyn,
                     int act_silu, const pn_tensor *cu_seqlens);
void pn_cpu_conv1d_bwd_t(pn_tensor *dx, pn_tensor *dw, pn_tensor *dbias, pn_tensor *dkdyn, const pn_tensor *dy,
                         const pn_tensor *x, const pn_tensor *w, const pn_tensor *bias, const pn_tensor *kdyn,
                         int act_silu, const pn_tensor *cu_seqlens);
void pn_cpu_lin_gates(pn_tensor *g, pn_tensor *beta, const pn_tensor *za, const pn_tensor *zb, const pn_tensor *A_log,
                      const pn_tensor *dt_bias);
void pn_cpu_lin_gates_bwd(pn_tensor *dza, pn_tensor *dzb, pn_tensor *dA_log, pn_tensor *ddt_bias, const pn_tensor *dg,
                          const pn_tensor *dbeta, const pn_tensor *za, const pn_tensor *g, const pn_tensor *beta,
                          const pn_tensor *A_log, const pn_tensor *dt_bias);
int pn_cpu_gdn_fwd_t(const pn_gdn_cfg *c, void *o, float *ht, const void *q, const void *k, const void *v,
                     const float *g, const float *beta, const float *h0);
int pn_cpu_gdn_bwd_t(const pn_gdn_cfg *c, void *dq, void *dk, void *dv, float *dg, float *dbeta, float *dh0,
                     const void *dout, const float *dht, const void *q, const void *k, const void *v, const float *g,
                     const float *beta, const float *h0);
int pn_cpu_gdn_step_t(const pn_gdn_cfg *c, void *o, float *S, const void *q, const void *k, const void *v,
                      const float *g, const float *beta);

#endif
