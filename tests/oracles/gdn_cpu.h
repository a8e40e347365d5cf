// The forward of the `gdn` (and `deltanet`) layer on the CPU, composed from the CPU kernels: fla's
// GatedDeltaNet (mode chunk, use_gate, use_short_conv, no conv bias, allow_neg_eigval off).
#ifndef PN_BLOCKS_GDN_CPU_H
#define PN_BLOCKS_GDN_CPU_H

#include <stdint.h>

#include "../../src/pn_block.h"

// y [B, T, hidden] = layer(x [B, T, hidden]), fp32. params are the layer's tensors in the order
// src/blocks/gdn.c lists them (gdn: q_proj, k_proj, v_proj, a_proj, b_proj, A_log, dt_bias, q_conv1d,
// k_conv1d, v_conv1d, g_proj, o_norm, o_proj; deltanet: the same without a_proj, A_log, dt_bias).
// cu_seqlens: NULL, or B = 1 and n_seqs + 1 offsets packing n_seqs independent sequences into T tokens.
// Returns 0, or -1 with the error set (bad config, unknown type, bad cu_seqlens) before touching y.
int pn_gdn_layer_forward_cpu(const pn_block_cfg *c, const float *const *params, const float *x, float *y, int64_t B,
                             int64_t T, const int32_t *cu_seqlens, int n_seqs);

// The backward of pn_gdn_layer_forward_cpu (same c, params, x, B, T, cu_seqlens, n_seqs). Nothing is
// saved from the forward: the intermediates are recomputed here (one extra forward; the arena-planned
// activation store comes with the model backward). dy is dL/dy [B, T, hidden]; dx [B, T, hidden] is
// overwritten with dL/dx. dparams lists the parameter gradients in params' order; they accumulate (+=),
// and a NULL entry (or dparams NULL) skips that gradient (a frozen tensor).
// Returns 0, or -1 with the error set (the forward's refusals) before touching dx or dparams.
int pn_gdn_layer_backward_cpu(const pn_block_cfg *c, const float *const *params, float *const *dparams,
                              const float *x, const float *dy, float *dx, int64_t B, int64_t T,
                              const int32_t *cu_seqlens, int n_seqs);

#endif
