// Gated DeltaNet time mixing on the CPU (REFERENCE.md §4): per head, with S the K×V state and g ≤ 0 a
// log decay,
//     S ← e^{g_t} S;   u_t = β_t (v_t − Sᵀ k_t);   S ← S + k_t u_tᵀ;   o_t = Sᵀ (scale · q_t).
// DeltaNet is the same op with g = 0. Shapes follow fla (sequence-first): q, k [B, T, H, K]; v, o
// [B, T, H, V]; g, beta [B, T, H]; states h0, ht [N, H, K, V] with N = B, or, for variable length, B = 1
// and cu_seqlens (N + 1 increasing offsets, 0 first, T last) cutting the T tokens into N independent
// sequences, each starting from h0[n] (or zero) and returning its final state as ht[n].
//
// Four forms, one file (gdn.c): the recurrence in double (the oracle), the chunked forward and its exact
// backward (chunk 64; fp32 for the model, and a double instance of the very same code for gradient
// checks), and the single-token decode step. All compute functions check the configuration first and
// return -1 with the error set (pn_last_error) instead of touching memory when it is invalid.
#ifndef PN_KERNELS_CPU_GDN_H
#define PN_KERNELS_CPU_GDN_H

#include <stdint.h>

#include "../../src/pn_tensor.h"

#define PN_GDN_CHUNK 64   // tokens per chunk of the chunked form (fla's BT)
#define PN_GDN_MAX_K 256  // largest key head dim (fla's kernels support K ≤ 256)
#define PN_GDN_MAX_V 1024 // largest value head dim
#define PN_GDN_L2_EPS 1e-6 // q/k ← x / sqrt(Σx² + eps), fla's l2norm_fwd (use_qk_l2norm_in_kernel)

typedef struct pn_gdn_cfg {
    int64_t B, T, H, K, V;
    // NULL: B sequences of T tokens each. Otherwise B must be 1 and cu_seqlens holds n_seqs + 1 offsets.
    const int32_t *cu_seqlens;
    int64_t n_seqs; // used only with cu_seqlens
    // The same offsets on the host when cu_seqlens is on a device and the caller has them (NULL: the CUDA
    // backend reads them back, synchronizing); they must be equal.
    const int32_t *cu_host;
    float scale;    // on q; 0 means the default K^-1/2
    int qk_l2norm;  // L2-normalize q and k inside the op (and differentiate through it)
    // Where the forward may keep its intermediates for the backward (NULL: nowhere). The CUDA backend, given
    // at least pn_gdn_saved_bytes(B T, its chunk count, H, K, V) bytes at a 256-byte boundary, writes them in
    // the forward and reads them in the backward instead of recomputing (both calls must get the same buffer
    // and inputs, with nothing written to it between them); with fewer bytes, and on the CPU, the backward
    // recomputes. The results are the same bits either way.
    void *saved;
    size_t saved_bytes;
} pn_gdn_cfg;

// Bytes of the intermediates a forward of `rows` token rows in `chunks` chunks keeps for its backward (the
// CUDA backend's layout, each part at a 256-byte boundary): W [rows, H, K], V' [rows, H, V], each chunk's
// entering state [chunks, H, K, V], T and P [chunks, H, 64, 64] (bf16); γ, 1/‖q‖, 1/‖k‖ and the state
// update's row factor e^{γ_L − γ} / ‖k‖ (γ_L the chunk's last γ) [rows, H] (fp32).
size_t pn_gdn_saved_bytes(int64_t rows, int64_t chunks, int64_t H, int64_t K, int64_t V);

// 0 when the configuration is usable; otherwise -1 and an error naming the offending parameter
// ("gdn: K = 300 exceeds the maximum 256", "gdn: cu_seqlens[2] = 5 is not above cu_seqlens[1] = 5", ...).
int pn_gdn_check(const pn_gdn_cfg *c);

// Fills c from tensor shapes (q [B,T,H,K], k like q, v [B,T,H,V], g and beta F32 [B,T,H], state = h0 or ht,
// F32 [N,H,K,V], may be NULL) and checks that they agree with each other and with pn_gdn_check's limits.
// Element dtypes of q, k, v are the backend's business and are not checked here.
int pn_gdn_cfg_from_tensors(pn_gdn_cfg *c, const pn_tensor *q, const pn_tensor *k, const pn_tensor *v,
                            const pn_tensor *g, const pn_tensor *beta, const pn_tensor *state,
                            const int32_t *cu_seqlens, int64_t n_seqs, float scale, int qk_l2norm);

// Number of sequences (B, or n_seqs with cu_seqlens) and the scale actually used.
int64_t pn_gdn_num_seqs(const pn_gdn_cfg *c);
double pn_gdn_scale(const pn_gdn_cfg *c);

// The oracle: the recurrence above, token by token, entirely in double. h0 and ht may be NULL.
int pn_cpu_gdn_naive_f64(const pn_gdn_cfg *c, const double *q, const double *k, const double *v,
                         const double *g, const double *beta, const double *h0, double *o, double *ht);

// Chunked forward (fp32). h0 (NULL = zero state) and ht (NULL = not wanted) are [N, H, K, V].
int pn_cpu_gdn_fwd_f32(const pn_gdn_cfg *c, const float *q, const float *k, const float *v, const float *g,
                   const float *beta, const float *h0, float *o, float *ht);

// Exact gradients of pn_cpu_gdn_fwd_f32. Nothing is saved from the forward: the op recomputes what it needs
// from the inputs (chunk-entry states, then W, U, V' per chunk). dout is dL/do; dht (may be NULL = 0) is
// dL/dht. Writes (overwrites) dq, dk, dv [like q, k, v], dg, dbeta [B, T, H] and, when dh0 is not NULL,
// dh0 [N, H, K, V] (the gradient of the initial state, also when h0 itself is NULL, i.e. zero).
int pn_cpu_gdn_bwd_f32(const pn_gdn_cfg *c, const float *q, const float *k, const float *v, const float *g,
                   const float *beta, const float *h0, const float *dout, const float *dht, float *dq,
                   float *dk, float *dv, float *dg, float *dbeta, float *dh0);

// The same chunked code instantiated in double, for finite-difference gradient checks.
int pn_cpu_gdn_fwd_f64(const pn_gdn_cfg *c, const double *q, const double *k, const double *v,
                       const double *g, const double *beta, const double *h0, double *o, double *ht);
int pn_cpu_gdn_bwd_f64(const pn_gdn_cfg *c, const double *q, const double *k, const double *v,
                       const double *g, const double *beta, const double *h0, const double *dout,
                       const double *dht, double *dq, double *dk, double *dv, double *dg, double *dbeta,
                       double *dh0);

// One decoding step (q_len = 1, fp32): c->T must be 1 and cu_seqlens NULL, so q, k [B, H, K], v, o
// [B, H, V], g, beta [B, H]. The recurrent state S [B, H, K, V] is updated in place; o = Sᵀ(scale q)
// with the updated S. Feeding tokens one at a time reproduces pn_cpu_gdn_fwd_f32.
int pn_cpu_gdn_step_f32(const pn_gdn_cfg *c, const float *q, const float *k, const float *v, const float *g,
                    const float *beta, float *S, float *o);

#endif
