// Gated DeltaNet backward on the GPU (kernels/cuda/gdn_bwd.cu): exactly the gradients of pn_cpu_gdn_bwd_f32
// (kernels/cpu/gdn.h; the derivation is in kernels/cpu/gdn.c). C linkage, no CUDA headers.
//
// Every pointer is a device pointer. q, k, dq, dk bf16 [B, T, H, K]; v, dv, dout bf16 [B, T, H, V]; g, beta,
// dg, dbeta fp32 [B, T, H]; h0, dh0, dht fp32 [N, H, K, V] (N = B, or cfg->n_seqs with cu_seqlens, a device
// int32 array copied to the host once per call). h0 NULL = zero initial state, dht NULL = zero gradient of
// the final state, dh0 NULL = not wanted. All gradients are overwritten. Returns 0, or -1 with the error set
// (pn_last_error) for a configuration it cannot run, before launching anything.
#ifndef PN_KERNELS_CUDA_GDN_BWD_CUDA_H
#define PN_KERNELS_CUDA_GDN_BWD_CUDA_H

#ifdef __cplusplus
extern "C" {
#endif

#include "../cpu/gdn.h" // pn_gdn_cfg, pn_gdn_check (C functions: inside the extern "C" block)

int pn_cuda_gdn_bwd(const pn_gdn_cfg *cfg, void *dq, void *dk, void *dv, float *dg, float *dbeta, float *dh0,
                    const void *dout, const float *dht, const void *q, const void *k, const void *v, const float *g,
                    const float *beta, const float *h0);

#ifdef __cplusplus
}
#endif

#endif
