// Gated DeltaNet on the GPU (kernels/cuda/gdn.cu): the chunked forward and the decode step, with exactly
// the semantics of pn_cpu_gdn_fwd_f32 and pn_cpu_gdn_step_f32 (kernels/cpu/gdn.h; the math is there). C linkage,
// no CUDA headers, so C tests and the model code can call them.
//
// Every pointer is a device pointer. q, k are bf16 [B, T, H, K]; v, o bf16 [B, T, H, V]; g, beta fp32
// [B, T, H]; h0, ht, S fp32 [N, H, K, V] (N = B, or cfg->n_seqs with cu_seqlens). cfg->cu_seqlens, when
// not NULL, is a device int32 array of n_seqs + 1 offsets; it is copied to the host once per call (a
// synchronizing cudaMemcpy) to be validated and cut into chunks. Both return 0, or -1 with the error set
// (pn_last_error) for a configuration they cannot run, before launching anything.
#ifndef PN_KERNELS_CUDA_GDN_CUDA_H
#define PN_KERNELS_CUDA_GDN_CUDA_H

#ifdef __cplusplus
extern "C" {
#endif

#include "../cpu/gdn.h" // pn_gdn_cfg, pn_gdn_check (C functions: inside the extern "C" block)

// Chunked forward (chunk 64). h0 NULL = zero initial state; ht NULL = final state not wanted. h0 and ht
// may be the same buffer (the state is updated in place).
int pn_cuda_gdn_fwd(const pn_gdn_cfg *cfg, void *o, float *ht, const void *q, const void *k, const void *v,
                    const float *g, const float *beta, const float *h0);

// One decode step: cfg->T must be 1 and cu_seqlens NULL; q, k [B, H, K], v, o [B, H, V], g, beta [B, H];
// S [B, H, K, V] fp32 is updated in place and o = Sᵀ(scale q) with the updated S.
int pn_cuda_gdn_step(const pn_gdn_cfg *cfg, void *o, float *S, const void *q, const void *k, const void *v,
                     const float *g, const float *beta);

#ifdef __cplusplus
}
// pn_gdn_check for a config whose cu_seqlens lives on the device; *hcu receives a host copy (or NULL),
// taken from cfg->cu_host when the caller gave one, else read back from the device (synchronizing).
int pn_cuda_gdn_check_cfg(const pn_gdn_cfg *cfg, int32_t **hcu);
// The same for the chunked forward and backward, counting their chunks into *n_chunks (and checking they
// fit the launch grids).
int pn_cuda_gdn_count_chunks(const pn_gdn_cfg *cfg, int64_t *n_chunks);
// The chunk table on the device, from the device's offsets (no host copy): for each of the N sequences
// (rows n T .. with cu NULL, else cu[n] .. cu[n + 1]) its chunks of C rows as (first row, length) pairs in
// tab, and (cst != NULL) the index of its first chunk in cst[n], cst[N] = the count. Queued on the stream.
void pn_cuda_gdn_chunk_table(int *tab, int *cst, const int32_t *cu, int N, int64_t T, int C);
// pn_gdn_saved_bytes' parts (kernels/cpu/gdn.h): where the forward's intermediates are, in cfg->saved or
// in a workspace.
typedef struct {
    __nv_bfloat16 *W, *Vp, *hs, *T, *P;
    float *gam, *rq, *rk, *rd; // rd: the state update's row factor e^{γ_L − γ} / ‖k‖
} gdn_saved;
// states false: the forward's alone (no hs, T: NULL). Returns the bytes the layout takes from base.
size_t gdn_saved_at(void *base, int64_t NT, int64_t n_chunks, int64_t H, int64_t K, int64_t V, bool states,
                    gdn_saved *sv);
// true when cfg->saved holds them for a call of NT rows in n_chunks chunks (*sv then points there)
bool gdn_saved_of(const pn_gdn_cfg *cfg, int64_t NT, int64_t n_chunks, gdn_saved *sv);
// The forward's prep and state kernels into the buffers of sv (gdn.cu has the layouts), the chunks' T too
// with keep_T; o NULL: the backward's recompute (states and V' stored), else the output too, the states and
// V' stored only where sv->hs is set. Returns the state kernel's stages.
int pn_cuda_gdn_fwd_states(const pn_gdn_cfg *cfg, int64_t n_chunks, const int *tab, const int *cst, const gdn_saved *sv,
                           bool keep_T, float *ht, const void *q, const void *k, const void *v, const float *g,
                           const float *beta, const float *h0, void *o, cudaEvent_t *ev);
#endif

#endif
