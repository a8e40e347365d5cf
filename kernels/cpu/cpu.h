// The CPU backend's op implementations (fp32; single-threaded OpenBLAS calls and parallel loops on the
// backend's own thread pool, threads.h). This backend is the readable reference every CUDA kernel is
// tested against, so clarity wins over speed wherever they conflict.
#ifndef PN_KERNELS_CPU_H
#define PN_KERNELS_CPU_H

#include "../ops.h"

// The backend's ops (pn_cpu_<name>, in kernels/ops_list.h), implemented in the files of this folder.
PN_OPS(PN_OP_DECLARE_CPU)


// Backward ops on raw fp32 arrays (the training path; the backend table gains them with their CUDA twins).
// Parameter gradients accumulate (+=) and may be NULL for frozen tensors; input gradients are overwritten.
void pn_cpu_rmsnorm_bwd_f32(float *dx, float *dw, const float *dy, const float *x, const float *w, int64_t rows, int64_t D,
                            float eps, int accumulate_dx);
void pn_cpu_gated_rmsnorm_fwd(float *y, const float *x, const float *g, const float *w, int64_t rows, int64_t D,
                              float eps);
void pn_cpu_gated_rmsnorm_bwd_f32(float *dx, float *dg, float *dw, const float *dy, const float *x, const float *g,
                              const float *w, int64_t rows, int64_t D, float eps);
void pn_cpu_swiglu_bwd_f32(float *dgate, float *dup, const float *dout, const float *gate, const float *up, int64_t n);
void pn_cpu_matmul_bwd_f32(float *dx, float *dw, float *db, const float *dout, const float *x, const float *w, int64_t N,
                       int64_t n_in, int64_t n_out);

// Causal depthwise convolution over W tokens (kernels/cpu/conv1d.c): a static kernel w [C, W] (+ bias [C])
// or, when kdyn != NULL, a dynamic kernel per token kdyn [B, T, C, W]; optional SiLU; cu_seqlens NULL or
// n_seqs + 1 offsets (B = 1). The backward writes dx, accumulates dw and dbias (+=; either may be NULL),
// and writes dkdyn for the dynamic form. W <= 64.
void pn_cpu_conv1d_fwd(float *y, const float *x, const float *w, const float *bias, const float *kdyn, int64_t B,
                       int64_t T, int64_t C, int W, int act_silu, const int32_t *cu_seqlens, int n_seqs);
// Generation's continuation (pn_op_conv1d_continue): cache [B, W - 1, C] read, then updated.
void pn_cpu_conv1d_continue_f32(float *y, float *cache, const float *x, const float *w, const float *kdyn, int64_t B,
                                int64_t T, int64_t C, int W, int act_silu);
void pn_cpu_conv1d_bwd_f32(float *dx, float *dw, float *dbias, float *dkdyn, const float *dy, const float *x,
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

#endif
