// The forward and backward of the `jet` layer (JetBlock, Jet-Nemotron) on the CPU, composed from the CPU kernels.
#ifndef PN_BLOCKS_JET_CPU_H
#define PN_BLOCKS_JET_CPU_H

#include <stdint.h>

#include "../../src/pn_block.h"

// y [B, T, hidden] = layer(x [B, T, hidden]), fp32. params are the layer's tensors in the order
// src/blocks/jet.c lists them (q_proj, k_proj, v_proj, g_proj, a_proj, b_proj, A_log, dt_bias,
// dynamic_conv1d.kernel_generator.w1.weight, .w2.weight, .w2.bias, o_norm, o_proj).
// cu_seqlens: NULL, or B = 1 and n_seqs + 1 offsets packing n_seqs independent sequences into T tokens
// (neither the dynamic convolution nor the recurrence reads across a sequence start).
// Returns 0, or -1 with the error set (bad config, wrong type, bad cu_seqlens) before touching y.
int pn_jet_layer_forward_cpu(const pn_block_cfg *c, const float *const *params, const float *x, float *y, int64_t B,
                             int64_t T, const int32_t *cu_seqlens, int n_seqs);

// The layer's backward for upstream gradient dy [B, T, hidden]: writes (overwrites) dx [B, T, hidden] and
// accumulates (+=) each parameter's gradient into dparams[i] (same order and shapes as params). dparams
// may be NULL, and any entry NULL, for frozen tensors. Recomputes the forward; saves nothing. Same
// cu_seqlens contract; returns 0, or -1 with the error set before touching dx or dparams.
int pn_jet_layer_backward_cpu(const pn_block_cfg *c, const float *const *params, float *const *dparams,
                              const float *x, const float *dy, float *dx, int64_t B, int64_t T,
                              const int32_t *cu_seqlens, int n_seqs);

#endif
