// gdn_bwd.cu: Gated DeltaNet backward on the GPU, the gradients of pn_cpu_gdn_bwd_f32 (kernels/cpu/gdn.c,
// whose comments derive every step; REFERENCE.md §4). Per (sequence, head) and chunk of Lc ≤ 64 rows, γ the
// inclusive cumsum of g in the chunk, Γ_rs = e^{γ_r − γ_s} (s ≤ r), S the state entering the chunk:
//   A = strict_lower(diag(β) K Kᵀ ⊙ Γ), T = (I + A)⁻¹, W = T diag(β e^γ) K, U = T diag(β) V, V' = U − W S,
//   O = diag(scale e^γ) Q S + P V', P = lower_incl(scale Q Kᵀ ⊙ Γ), S' = e^{γ_L} S + Kᵀ diag(e^{γ_L−γ}) V'.
//
// The decisions a reader would otherwise miss:
// - fla's split: recompute what the forward had, walk the state gradient backwards, then everything else
//   per chunk in parallel. Five kernels:
//   1. + 2. the forward's prep and state kernels (gdn.cu, pn_cuda_gdn_fwd_states): 1/‖q‖, 1/‖k‖, γ, W, P, the
//      state entering every chunk and V' (bf16), as the forward computed them, and each chunk's T (bf16);
//      skipped where the forward kept these in cfg->saved (fla keeps only A and recomputes the rest).
//   3. gdn_bwd_dstate_kernel, grid (V / 64, head, sequence), chunks in reverse with a 64-column slice of the
//      state gradient in registers (fp32) and a bf16 copy in shared memory: stores dS'_c (the gradient of
//      the state leaving chunk c; dht for the last) and dV' = diag(e^{γ_L−γ}) K̂ dS'_c + Pᵀ dO (bf16; fla
//      forms Pᵀ dO in a kernel of its own, chunk_bwd_dv_local), then
//      dS_c = e^{γ_L} dS'_c + (diag(scale e^γ) Q̂)ᵀ dO − Wᵀ dV', which is dS'_{c−1} (or dh0).
//   4. gdn_bwd_dqk_kernel, grid (chunk × K / 64, head) (fla's chunk_bwd_dqkwg): per 64 columns of K, one
//      pass over V in 64-column slabs for dK from V' dS'ᵀ, dP = dO V'ᵀ, dQ from dO Sᵀ, dW = −dV' Sᵀ, ⟨S, dS'⟩;
//      then dq (complete before the L2 norm), dk' (dk's terms outside the WY representation) in fp32, dW
//      (bf16) and the gates' gradient through them, per row q̂·dq − k̂·dk' plus the last row's terms.
//   5. gdn_bwd_wy_kernel, grid (chunk, head) (fla's prepare_wy_repr_bwd and the L2 norm's backward): a pass
//      over V for dT from dV' Vᵀ and dv = β Tᵀ dV', then on 64×64 tiles dT += dW (β e^γ K̂)ᵀ, Tᵀ dW,
//      dA = −Tᵀ dT Tᵀ and its terms; dk = dk' + these, dq and dk through the L2 norm, dβ, dg as the reverse
//      cumsum of dγ (this kernel's terms and the K tiles', in a fixed order).
//   Split this way each kernel holds at most a third of the accumulators one fused kernel would (fused,
//   230 registers and 202 KB of shared memory: one block an SM, latency-bound): dqk fits 128 registers and
//   109 KB, two blocks an SM, and its K tiles run side by side, sharing the chunk's V', dO, dV' in L2.
// - The products are gdn_tile.cuh's mm64_bf (bf16 tiles in shared memory, ldmatrix, mma m16n8k16, fp32
//   accumulators); q̂, k̂, T, dT, Tᵀ dT, dP, dW, the states, their gradients, V' and dV' are bf16 as fla
//   keeps them. The triangular solve, every accumulator and γ are fp32.
// - dq, dk accumulate in registers (the mm64 layout: a thread owns 16 elements of each 64×64 tile) within a
//   kernel, so every term is added by the thread that owns the element; K̂K̂ᵀ is recomputed in that layout
//   where a term multiplies it elementwise. Row and column sums of such tiles (dγ, dβ) are warp shuffles
//   then a fixed-order sum in shared memory: deterministic, no atomics.
// - Only exponents ≤ 0 are evaluated (Γ masked before expf; e^{γ_r}, e^{γ_L − γ_r} have γ_r ≤ 0, γ_L ≤ γ_r).
// - Workspace (the backend context's PN_WS_GDN_BWD, grown on demand): the forward's intermediates unless
//   cfg->saved has them (W, V', the per-chunk states, the chunks' T and P (bf16), γ, 1/‖q‖, 1/‖k‖ (fp32)), then
//   dW, dV' per token row, the per-chunk state gradients (bf16), dq, dk', the K tiles' dγ (fp32), the chunk
//   table with cu_seqlens. At the anchor shape (B 8, T 4096, H 12, K 96, V 256): ~1.5 GB, ~0.9 GB with
//   the intermediates saved.
// - With PN_CUDA_EMU the file compiles as C++ for the host emulation the CPU suite checks it with
//   (tests/emu/cuda_emu.h).
#include <math.h>
#include <stdlib.h>

#include "common.cuh"
#include "mma.cuh"
#include "gdn_bwd_cuda.h"
#include "gdn_cuda.h"
#include "gdn_tile.cuh"

// ----------------------------------------------------------------------------------------------------
// helpers

// Sums of tiles in the mm64 accumulator layout (gdn_tile.cuh: a thread owns rows tile_r(i), columns
// tile_c(j)), into out[0..63] in a fixed order. p[i] is the thread's part of row tile_r(i) (rows_sum) or of
// column tile_c(j) (cols_sum). red: 256 floats of shared memory. Barriers inside: every thread calls them.
__device__ __forceinline__ void rows_sum(float (&p)[4], float *red, float *out) {
    const int tid = threadIdx.x;
#pragma unroll
    for (int i = 0; i < 4; i++) { // the row's four lanes (t = lane % 4) ...
        p[i] += __shfl_xor_sync(0xffffffffu, p[i], 1);
        p[i] += __shfl_xor_sync(0xffffffffu, p[i], 2);
    }
    if ((tid & 3) == 0) // ... then its four warps (column groups tid / 64)
#pragma unroll
        for (int i = 0; i < 4; i++) red[tile_r(i) * 4 + (tid >> 6)] = p[i];
    __syncthreads();
    if (tid < 64) out[tid] = (red[4 * tid] + red[4 * tid + 1]) + (red[4 * tid + 2] + red[4 * tid + 3]);
    __syncthreads();
}
__device__ __forceinline__ void cols_sum(float (&p)[4], float *red, float *out) {
    const int tid = threadIdx.x;
#pragma unroll
    for (int j = 0; j < 4; j++) { // the column's eight lanes (g = lane / 4) ...
        p[j] += __shfl_xor_sync(0xffffffffu, p[j], 4);
        p[j] += __shfl_xor_sync(0xffffffffu, p[j], 8);
        p[j] += __shfl_xor_sync(0xffffffffu, p[j], 16);
    }
    if ((tid & 31) < 4) // ... then its two warps (row halves)
#pragma unroll
        for (int j = 0; j < 4; j++) red[tile_c(j) * 2 + ((tid >> 5) & 1)] = p[j];
    __syncthreads();
    if (tid < 64) out[tid] = red[2 * tid] + red[2 * tid + 1];
    __syncthreads();
}

// q̂ or k̂ of the chunk in place: the raw bf16 rows of x [64, KB] times their 1/‖x‖ (r[64]), rounded to bf16.
// A warp a row, lanes across pairs of columns (no division per element; K even here, else one at a time).
__device__ __forceinline__ void normalize_rows(bf16 *x, int KB, int K, const float *r) {
    const int lane = threadIdx.x & 31;
    for (int m = threadIdx.x >> 5; m < GDN_C; m += GDN_THREADS / 32) {
        const float rm = r[m];
        bf16 *row = x + m * KB;
        if ((K & 1) == 0) {
            for (int i = 2 * lane; i < K; i += 64) {
                __nv_bfloat162 *p = (__nv_bfloat162 *)(row + i);
                const __nv_bfloat162 v = *p;
                *p = __floats2bfloat162_rn(bf2f(v.x) * rm, bf2f(v.y) * rm);
            }
        } else {
            for (int i = lane; i < K; i += 32) row[i] = f2bf(bf2f(row[i]) * rm);
        }
    }
}

// dq of the chunk's Lc rows from the dqk kernel's dq' (fp32, before the L2 norm): with l2norm, per row
// dq = r (dq' − q̂ (q̂·dq')), r = 1/‖q‖, q̂ the bf16 r q the products used; else dq = dq'. Row-wise, a warp a row
// at a time with lanes across the columns (coalesced; the MT 64-column tiles' loads of RB rows in flight
// together), independent of the rest of the WY kernel, which runs it first: its loads overlap the chunk's
// copies into shared memory. (Done in the accumulator layout at the kernel's end, its element-wise reads of q
// and dq' were a seventh of the kernel's stall samples.)
template <int MT>
__device__ __forceinline__ void dq_rows(bf16 *dq, const float *dqp, const bf16 *q, const float *rq, int64_t t0,
                                        int Lc, int H, int h, int K, int l2norm) {
    constexpr int NJ = 2 * MT, RB = MT <= 2 ? 8 : 4; // columns lane + 32 j; rows per batch of loads
    const int w = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int64_t ldk = (int64_t)H * K, rk0 = (t0 * H + h) * K;
#pragma unroll 1
    for (int i0 = 0; i0 < GDN_C / 8; i0 += RB) { // the warp's rows w + 8 i
        float x[RB][NJ], y[RB][NJ], r[RB];
#pragma unroll
        for (int i = 0; i < RB; i++) {
            const int m = w + 8 * (i0 + i);
            r[i] = m < Lc && l2norm ? rq[(t0 + m) * H + h] : 1.0f;
#pragma unroll
            for (int j = 0; j < NJ; j++) {
                const int col = lane + 32 * j;
                const bool in = m < Lc && col < K;
                x[i][j] = in ? dqp[rk0 + m * ldk + col] : 0.0f;
                y[i][j] = in && l2norm ? bf2f(q[rk0 + m * ldk + col]) : 0.0f;
            }
        }
#pragma unroll
        for (int i = 0; i < RB; i++) {
            const int m = w + 8 * (i0 + i);
            if (m >= Lc) continue; // (uniform in the warp)
            float sd = 0.0f;
#pragma unroll
            for (int j = 0; j < NJ; j++) {
                y[i][j] = bf2f(f2bf(y[i][j] * r[i])); // q̂
                sd = fmaf(y[i][j], x[i][j], sd);
            }
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) sd += __shfl_xor_sync(0xffffffffu, sd, o);
#pragma unroll
            for (int j = 0; j < NJ; j++) {
                const int col = lane + 32 * j;
                if (col < K) dq[rk0 + m * ldk + col] = f2bf(l2norm ? r[i] * (x[i][j] - y[i][j] * sd) : x[i][j]);
            }
        }
    }
}

// ----------------------------------------------------------------------------------------------------
// 3. the state gradient, chunks in reverse

// Shared memory: the bf16 copy of the dS slice [round16(K), GDN_SP], then per stage the scaled q, k and W
// tiles [64, pitch_kb(K)], dO, dV' and P [64, GDN_SP] (bf16), γ, 1/‖q‖ and the row factor e^{γ_L − γ} / ‖k‖
// [64] (fp32). 94 KB at K 96 in one stage: two blocks an SM.
__host__ __device__ __forceinline__ size_t dstate_stage_bytes(int K) {
    return sizeof(bf16) * (size_t)(3 * GDN_C * pitch_kb(K) + 3 * GDN_C * GDN_SP) + sizeof(float) * 3 * GDN_C;
}
static size_t dstate_smem_bytes(int K, int nst) {
    return sizeof(bf16) * (size_t)round16(K) * GDN_SP + (size_t)nst * dstate_stage_bytes(K);
}

// grid (nvs, H, N): sequence n, head h, columns v0 .. v0 + BVa − 1 of the state gradient dS [K, 64] (MT tiles of
// 64 rows in registers, fp32), starting from dht (or zero). For each chunk c of the sequence, last first:
// dSo[c] ← dS (bf16); dV' = diag(e^{γ_L−γ} / ‖k‖) k dS + Pᵀ dO (bf16, to dvp; P the forward's, Pc [chunk, H,
// 64, 64]); dS ← e^{γ_L} dS + (diag(scale e^γ / ‖q‖) q)ᵀ dO − Wᵀ dV'. dh0 (if wanted) ← dS at the end.
// nst = 2: the previous chunk's tiles are copied in while this one is computed.
// Pᵀ dO here rather than in a kernel of its own (fla's chunk_bwd_dv_local, which this file had until the
// forward kept P) saves that kernel's q, k and dO reads, P formed again, and dV''s partial written and read
// back; the sum is no longer rounded to bf16 between its two terms.
template <int MT>
__global__ void __launch_bounds__(GDN_THREADS)
    gdn_bwd_dstate_kernel(bf16 *dSo, bf16 *dvp, float *dh0, const float *dht, const bf16 *q, const bf16 *k,
                          const bf16 *W, const bf16 *dout, const bf16 *Pc, const float *gam, const float *rq, const float *rd,
                          const int *cu_seqlens, const int *cst, int T, int H, int K, int V, float scale, int nst) {
    const int v0 = blockIdx.x * GDN_BV, h = blockIdx.y, n = blockIdx.z;
    const int BVa = min(GDN_BV, V - v0);
    int64_t row0, len, cbase;
    seq_rows(cu_seqlens, cst, n, T, &row0, &len, &cbase);
    const int KB = pitch_kb(K), K16 = round16(K);
    bf16 *dSb = (bf16 *)dyn_smem(); // [K16, GDN_SP]: the k dS product contracts over K16 rows
    char *stage0 = (char *)(dSb + K16 * GDN_SP);
    const size_t sb = dstate_stage_bytes(K);
    auto Qb = [&](int s) { return (bf16 *)(stage0 + s * sb); };
    auto Kb = [&](int s) { return Qb(s) + GDN_C * KB; };
    auto Wb = [&](int s) { return Kb(s) + GDN_C * KB; };
    auto Ob = [&](int s) { return Wb(s) + GDN_C * KB; };
    auto Db = [&](int s) { return Ob(s) + GDN_C * GDN_SP; };
    auto Pb = [&](int s) { return Db(s) + GDN_C * GDN_SP; };
    auto gsp = [&](int s) { return (float *)(Pb(s) + GDN_C * GDN_SP); };
    const int64_t ldk = (int64_t)H * K, ldv = (int64_t)H * V;
    const bool ak = (K & 7) == 0 && ((uintptr_t)q & 15) == 0 && ((uintptr_t)k & 15) == 0 && ((uintptr_t)W & 15) == 0;
    const bool av = (V & 7) == 0 && ((uintptr_t)dout & 15) == 0 && ((uintptr_t)dvp & 15) == 0;
    const bool vpairs = (V & 1) == 0, hvec = BVa == GDN_BV && (V & 7) == 0 && ((uintptr_t)dSo & 15) == 0;
    const int64_t nch = (len + GDN_C - 1) / GDN_C;

    // Whole chunks take gdn_tile.cuh's direct path (load_whole), as in the forward's walk; the K tiles'
    // columns K .. 64 MT − 1 zeroed once here for it.
    constexpr int N8 = GDN_THREADS % (8 * MT) == 0 ? 8 * MT : 0; // 0: not this tile
    const bool whole_k = N8 && ak, whole_v = av && BVa == GDN_BV;
    if constexpr (N8 > 0)
        if (whole_k)
            for (int s = 0; s < nst; s++)
                zero_cols<N8>(Qb(s), KB, K), zero_cols<N8>(Kb(s), KB, K), zero_cols<N8>(Wb(s), KB, K);

    auto issue = [&](int64_t ci, int s) { // chunk ci of the sequence into stage s (one cp.async group)
        const int64_t c0 = ci * GDN_C, t0 = row0 + c0, c = cbase + ci;
        const int Lc = (int)min((int64_t)GDN_C, len - c0);
        // q, W: read 64 columns at a time as Aᵀ (columns past K zero up to the 64-column boundary); k: the
        // contraction over K runs to K16
        load_walk_tile<N8>(Qb(s), KB, q + (t0 * H + h) * K, ldk, Lc, K, 64 * MT, ak, whole_k); // (64 MT = KB − 8)
        load_walk_tile<N8>(Kb(s), KB, k + (t0 * H + h) * K, ldk, Lc, K, 64 * MT, ak, whole_k);
        load_walk_tile<N8>(Wb(s), KB, W + (t0 * H + h) * K, ldk, Lc, K, 64 * MT, ak, whole_k);
        load_walk_tile<8>(Ob(s), GDN_SP, dout + (t0 * H + h) * V + v0, ldv, Lc, BVa, GDN_BV, av, whole_v);
        load_whole<8>(Pb(s), GDN_SP, Pc + (c * H + h) * GDN_C * GDN_C, GDN_C, GDN_C); // zeros past Lc in Pc
        load_row_scalars(gsp(s), gam, t0, Lc, H, h, true);
        load_row_scalars(gsp(s) + GDN_C, rq, t0, Lc, H, h, true);
        load_row_scalars(gsp(s) + 2 * GDN_C, rd, t0, Lc, H, h, true);
        cp_async_commit();
    };

    float dS[MT][4][4];
    slice_load(dS, dht ? dht + (((int64_t)n * H + h) * K) * V + v0 : NULL, K, V, BVa);
    if (nst == 2) issue(nch - 1, 0);

    for (int64_t ci = nch - 1; ci >= 0; ci--) {
        const int s = nst == 2 ? (int)((nch - 1 - ci) & 1) : 0;
        const int64_t c0 = ci * GDN_C, t0 = row0 + c0, c = cbase + ci;
        const int Lc = (int)min((int64_t)GDN_C, len - c0);
        if (nst == 1) issue(ci, 0);
        else if (ci > 0) issue(ci - 1, s ^ 1);
        if (nst == 2 && ci > 0) cp_async_wait<1>();
        else cp_async_wait<0>();

        // dS'_c as bf16: to dSo and to the copy the K̂ dS product reads
        // (rows K .. K16 − 1 of the copy are zero: so is dS there)
        slice_to_bf16(dSb, K16, dS);
        __syncthreads(); // the stage's tiles (every thread's copies) and the bf16 dS complete
        store_rows(dSo + ((c * H + h) * (int64_t)K) * V + v0, V, dSb, K, BVa, hvec);

        bf16 *qb = Qb(s), *kb = Kb(s), *wb = Wb(s), *ob = Ob(s), *db = Db(s);
        const float *gs = gsp(s), *rqs = gs + GDN_C, *rds = rqs + GDN_C;
        const float gL = gs[Lc - 1];
        // dV' = diag(e^{γ_L−γ} / ‖k‖) k dS + Pᵀ dO: to global (bf16) and, negated, to db as the Wᵀ dV'
        // operand; then (every warp done with dO) dO's rows times scale e^γ / ‖q‖ in place (the Qᵀ dO product
        // contracts over the rows: the factor goes on dO's 16 elements a thread, four rows, not on q's K a
        // row), each element read and rewritten by its owner in the mm64 layout.
        {
            float acc[4][4], x[4][4], one[4];
            zero_acc(acc);
            mm64_bf<false, false>(acc, K, kb, KB, dSb, GDN_SP);
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int m = tile_r(i);
                const float d = rds[m]; // e^{γ_L − γ} / ‖k‖ from the prep kernel, zero past Lc
                one[i] = 1.0f;
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] *= d;
            }
            mm64_bf<true, false, MM_UPPER>(acc, Lc, Pb(s), GDN_SP, ob, GDN_SP); // A(s, r) = P[r][s]
            store_acc(dvp + (t0 * H + h) * V + v0, ldv, acc, one, Lc, BVa, vpairs);
            acc_to_smem_bf16(db, GDN_SP, acc, -1.0f);
            __syncthreads(); // every warp's Pᵀ dO read
            tile_from_smem(x, ob, GDN_SP);
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int m = tile_r(i);
                const float f = m < Lc ? scale * rqs[m] * expf(gs[m]) : 0.0f;
#pragma unroll
                for (int j = 0; j < 4; j++) x[i][j] *= f;
            }
            acc_to_smem_bf16(ob, GDN_SP, x);
        }
        __syncthreads();

        // dS ← e^{γ_L} dS + qᵀ (scaled dO) + Wᵀ (−dV'), A(m, r) = X[r][64 mt + m]
        const float eL = expf(gL);
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) dS[mt][i][j] *= eL;
            mm64_bf<true, false>(dS[mt], Lc, qb + 64 * mt, KB, ob, GDN_SP, K - 64 * mt); // (rows past K: none)
            mm64_bf<true, false>(dS[mt], Lc, wb + 64 * mt, KB, db, GDN_SP, K - 64 * mt);
        }
        __syncthreads(); // this stage's buffers and the bf16 copy consumed
    }
    if (dh0) slice_store(dh0 + (((int64_t)n * H + h) * K) * V + v0, dS, K, V, BVa);
}

// ----------------------------------------------------------------------------------------------------
// 4. dq, dk (before the L2 norm) and dW, per K tile

// Shared memory (bf16): the K tile's columns of q̂, k̂ [64, GDN_SP]; nbuf slab buffers of five [64, GDN_SP]
// tiles (V', dO, dV', and the K tile's rows of S and dS'), the first reused for dP ⊙ scale Γ after the pass;
// then γ, 1/‖q‖, 1/‖k‖, row sums [64] and 256 floats for reductions (fp32). 109 KB with two buffers: two
// blocks an SM.
#define DQK_SLAB (5 * GDN_C * GDN_SP)
static size_t dqk_smem_bytes(int nbuf) {
    return sizeof(bf16) * (size_t)(2 * GDN_C * GDN_SP + nbuf * DQK_SLAB) + sizeof(float) * (4 * GDN_C + 256);
}

// grid (n_chunks × nkt, H), nkt = ceil(K / 64): block x = c nkt + kt (the K tiles of a chunk side by side,
// so they share its V', dO, dV' in L2) takes chunk c, columns k0 = 64 kt .. + 63 of K. One pass over V in
// 64-column slabs: dK1 = V' dS'ᵀ, dP = dO V'ᵀ, dQ1 = dO Sᵀ, dWn = dV' Sᵀ, ⟨S, dS'⟩. Then
//   dq = diag(scale e^γ) dQ1 + (dP ⊙ scale Γ) K̂,  dk' = diag(e^{γ_L−γ}) dK1 + (dP ⊙ scale Γ)ᵀ Q̂,  dW = −dWn,
// dq and dk' (the part of dk outside the WY representation) to fp32 dqp, dkp, dW (bf16) over W (read only by
// the state-gradient kernel, before). The gates' gradient through these terms is, per row (fla's dqkwg),
//   dγ_r = q̂_r · dq_r − k̂_r · dk'_r,  plus at the last row Σ_r k̂_r · dK1'_r + e^{γ_L} ⟨S, dS'⟩,
// a sum over K: each tile writes its part to dgp [nkt, NT, H], the WY kernel adds them in a fixed order.
__global__ void __launch_bounds__(GDN_THREADS, 2)
    gdn_bwd_dqk_kernel(float *dqp, float *dkp, bf16 *dW, float *dgp, const bf16 *q, const bf16 *k, const bf16 *dout,
                       const bf16 *hs, const bf16 *dSo, const bf16 *Vp, const bf16 *dVp, const float *gam,
                       const float *rq, const float *rk, const int *tab, int T, int ncps, int nkt, int H, int K, int V,
                       float scale, int nbuf, int64_t NT) {
    const int64_t c = blockIdx.x / nkt;
    const int kt = (int)(blockIdx.x - c * nkt), k0 = 64 * kt, KT = min(64, K - k0), h = blockIdx.y, tid = threadIdx.x;
    int64_t t0;
    int Lc;
    chunk_rows(tab, c, ncps, T, &t0, &Lc);
    const int L = Lc - 1;
    const int64_t ldk = (int64_t)H * K, ldv = (int64_t)H * V, rv = (t0 * H + h) * V,
                  rs = (c * H + h) * (int64_t)K * V + (int64_t)k0 * V;
    bf16 *Qt = (bf16 *)dyn_smem(), *Kt = Qt + GDN_C * GDN_SP, *buf0 = Kt + GDN_C * GDN_SP;
    bf16 *buf[2] = {buf0, buf0 + (nbuf == 2 ? DQK_SLAB : 0)};
    float *gs = (float *)(buf0 + nbuf * DQK_SLAB), *rqs = gs + GDN_C, *rks = rqs + GDN_C, *s1 = rks + GDN_C;
    float *red = s1 + GDN_C;
    const bool ak = (K & 7) == 0 && ((uintptr_t)q & 15) == 0 && ((uintptr_t)k & 15) == 0;
    const bool av = (V & 7) == 0 && ((uintptr_t)dout & 15) == 0 && ((uintptr_t)Vp & 15) == 0 &&
                    ((uintptr_t)dVp & 15) == 0 && ((uintptr_t)hs & 15) == 0 && ((uintptr_t)dSo & 15) == 0;

    // the tile's raw q, k columns (zero past Lc and past K) and the row scalars: the first copy group
    load_tile_async(Qt, GDN_SP, q + (t0 * H + h) * K + k0, ldk, GDN_C, Lc, KT, GDN_BV, ak);
    load_tile_async(Kt, GDN_SP, k + (t0 * H + h) * K + k0, ldk, GDN_C, Lc, KT, GDN_BV, ak);
    load_row_scalars(gs, gam, t0, Lc, H, h, true);
    load_row_scalars(rqs, rq, t0, Lc, H, h, true);
    load_row_scalars(rks, rk, t0, Lc, H, h, true);
    cp_async_commit();
    auto issue = [&](int j0, bf16 *b) { // the slab at column j0 (one copy group)
        const int BVa = min(GDN_BV, V - j0);
        load_tile_async(b, GDN_SP, Vp + rv + j0, ldv, GDN_C, Lc, BVa, GDN_BV, av);
        load_tile_async(b + GDN_C * GDN_SP, GDN_SP, dout + rv + j0, ldv, GDN_C, Lc, BVa, GDN_BV, av);
        load_tile_async(b + 2 * GDN_C * GDN_SP, GDN_SP, dVp + rv + j0, ldv, GDN_C, Lc, BVa, GDN_BV, av);
        load_tile_async(b + 3 * GDN_C * GDN_SP, GDN_SP, hs + rs + j0, V, GDN_C, KT, BVa, GDN_BV, av);
        load_tile_async(b + 4 * GDN_C * GDN_SP, GDN_SP, dSo + rs + j0, V, GDN_C, KT, BVa, GDN_BV, av);
        cp_async_commit();
    };

    float dK[4][4], dP[4][4], dQ[4][4], dWn[4][4], sd = 0.0f;
    zero_acc(dK);
    zero_acc(dP);
    zero_acc(dQ);
    zero_acc(dWn);
    issue(0, buf[0]);
    for (int j0 = 0, it = 0; j0 < V; j0 += GDN_BV, it++) {
        // with two buffers the next slab is copied in while this one is multiplied; with one, after
        slab_wait(nbuf == 2 && j0 + GDN_BV < V, [&] { issue(j0 + GDN_BV, buf[(it + 1) & 1]); });
        const bf16 *Pv = buf[it & 1], *Po = Pv + GDN_C * GDN_SP, *Pd = Po + GDN_C * GDN_SP, *Ps = Pd + GDN_C * GDN_SP,
                   *PdS = Ps + GDN_C * GDN_SP;
        mm64_bf<false, true, MM_FULL, false>(dK, GDN_BV, Pv, GDN_SP, PdS, GDN_SP);
        mm64_bf<false, true, MM_FULL, false>(dP, GDN_BV, Po, GDN_SP, Pv, GDN_SP);
        mm64_bf<false, true, MM_FULL, false>(dQ, GDN_BV, Po, GDN_SP, Ps, GDN_SP);
        mm64_bf<false, true, MM_FULL, false>(dWn, GDN_BV, Pd, GDN_SP, Ps, GDN_SP);
        for (int idx = tid; idx < GDN_C * 8; idx += GDN_THREADS) { // 8 columns a step; zero past KT, BVa
            const int i = idx >> 3, j = (idx & 7) * 8;
            bf16x8 a, b;
            a.u = *(const uint4 *)(Ps + i * GDN_SP + j);
            b.u = *(const uint4 *)(PdS + i * GDN_SP + j);
#pragma unroll
            for (int e = 0; e < 8; e++) sd = fmaf(bf2f(a.h[e]), bf2f(b.h[e]), sd);
        }
        __syncthreads(); // every thread is done with the buffer
        if (nbuf == 1 && j0 + GDN_BV < V) issue(j0 + GDN_BV, buf[0]);
    }

    // q̂, k̂ in place, 8 columns a step (the first group landed before the first slab)
    for (int idx = tid; idx < GDN_C * 32; idx += GDN_THREADS) { // column pairs
        const int m = idx >> 5, o = m * GDN_SP + (idx & 31) * 2;
        const __nv_bfloat162 a = *(const __nv_bfloat162 *)(Qt + o), b = *(const __nv_bfloat162 *)(Kt + o);
        *(__nv_bfloat162 *)(Qt + o) = __floats2bfloat162_rn(bf2f(a.x) * rqs[m], bf2f(a.y) * rqs[m]);
        *(__nv_bfloat162 *)(Kt + o) = __floats2bfloat162_rn(bf2f(b.x) * rks[m], bf2f(b.y) * rks[m]);
    }
    // dK1 rows times e^{γ_L − γ}, dQ1 rows times scale e^γ; dP (s ≤ r) times scale Γ to bf16 in the first
    // buffer. pa: this thread's part of e^{γ_L} ⟨S, dS'⟩ + Σ_r k̂_r · dK1'_r (after the barrier: k̂ in place).
    const float gL = gs[L], eL = expf(gL);
    float pa = eL * sd;
    bf16 *dPb = buf[0];
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int m = tile_r(i);
        const float fk = m < Lc ? expf(gL - gs[m]) : 0.0f, fq = m < Lc ? scale * expf(gs[m]) : 0.0f;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int n = tile_c(j);
            dK[i][j] *= fk;
            dQ[i][j] *= fq;
            dP[i][j] = (n <= m && m < Lc) ? dP[i][j] * scale * expf(gs[m] - gs[n]) : 0.0f;
        }
    }
    acc_to_smem_bf16(dPb, GDN_SP, dP);
    __syncthreads(); // dPb, q̂, k̂ complete
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j += 2) { // column pairs: one 4-byte load
            const __nv_bfloat162 k2 = *(const __nv_bfloat162 *)(Kt + tile_r(i) * GDN_SP + tile_c(j));
            pa = fmaf(bf2f(k2.x), dK[i][j], pa);
            pa = fmaf(bf2f(k2.y), dK[i][j + 1], pa);
        }
    mm64_bf<false, false, MM_FULL, false>(dQ, Lc, dPb, GDN_SP, Kt, GDN_SP); // dq += (dP ⊙ scale Γ) K̂
    mm64_bf<true, false, MM_FULL, false>(dK, Lc, dPb, GDN_SP, Qt, GDN_SP);  // dk' += (dP ⊙ scale Γ)ᵀ Q̂ (A(s, r) = dP[r][s])

    // dγ's rows: q̂_r · dq_r − k̂_r · dk'_r over the tile's columns
    float p[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int m = tile_r(i);
#pragma unroll
        for (int j = 0; j < 4; j += 2) {
            const __nv_bfloat162 q2 = *(const __nv_bfloat162 *)(Qt + m * GDN_SP + tile_c(j)),
                                 k2 = *(const __nv_bfloat162 *)(Kt + m * GDN_SP + tile_c(j));
            p[i] = fmaf(bf2f(q2.x), dQ[i][j], p[i]);
            p[i] = fmaf(-bf2f(k2.x), dK[i][j], p[i]);
            p[i] = fmaf(bf2f(q2.y), dQ[i][j + 1], p[i]);
            p[i] = fmaf(-bf2f(k2.y), dK[i][j + 1], p[i]);
        }
    }
    rows_sum(p, red, s1);
    pa = pn_block_sum(pa, red);
    if (tid < Lc) dgp[((int64_t)kt * NT + t0 + tid) * H + h] = s1[tid] + (tid == L ? pa : 0.0f);
    const bool kpairs = (K & 1) == 0;
    const float one[4] = {1.0f, 1.0f, 1.0f, 1.0f}, mone[4] = {-1.0f, -1.0f, -1.0f, -1.0f};
    store_acc(dqp + (t0 * H + h) * K + k0, ldk, dQ, one, Lc, KT, kpairs);
    store_acc(dkp + (t0 * H + h) * K + k0, ldk, dK, one, Lc, KT, kpairs);
    store_acc(dW + (t0 * H + h) * K + k0, ldk, dWn, mone, Lc, KT, kpairs);
}

// ----------------------------------------------------------------------------------------------------
// 5. the WY representation's gradients and the outputs

// Shared memory (bf16): k̂ [64, KB]; T, dT [64, GDN_SP]; then a region used in turn by nbuf buffers of the
// pass over V (dV', v [64, GDN_SP]), and the last steps' Tᵀ dT [64, GDN_SP], dW [64, KB] and β M
// [64, GDN_SP]; then 64-row scalars (dγ in double; γ, β, 1/‖k‖, dβ, sums, fp32) and 256 floats for
// reductions. 72 KB at K 96 (two blocks an SM: the registers).
__host__ __device__ __forceinline__ size_t wy_region_bytes(int K, int nbuf) {
    const size_t sl = sizeof(bf16) * (size_t)nbuf * 2 * GDN_C * GDN_SP,
                 last = sizeof(bf16) * ((size_t)GDN_C * pitch_kb(K) + 2 * GDN_C * GDN_SP);
    return sl > last ? sl : last;
}
static size_t wy_smem_bytes(int K, int nbuf) {
    return sizeof(bf16) * (size_t)(GDN_C * pitch_kb(K) + 2 * GDN_C * GDN_SP) + wy_region_bytes(K, nbuf) +
           sizeof(double) * GDN_C + sizeof(float) * (size_t)(7 * GDN_C + 256);
}

// grid (n_chunks, H). Reads the chunk's k, v, β, γ, 1/‖k‖, dV', dW, the prep kernel's T (Tg, bf16) and the dqk
// kernel's dkp, dgp (and q, 1/‖q‖, dqp for the L2 norm's backward); writes dq, dk, dv (bf16), dg, dβ (fp32)
// of its rows. The products with Tᵀ (upper triangular) run in full: skipping its zeros (MM_UPPER, which
// idles half the warps for half the contraction while the others run it all) measured slower here: WY
// 0.89 ms at B 8 before it, 0.93 with it (one H100), 0.89-0.90 without it again (two others); the backward
// at B 2 0.92-0.93 ms with it, 0.89-0.92 without.
template <int MT>
__global__ void __launch_bounds__(GDN_THREADS, MT <= 2 ? 2 : 1)
    gdn_bwd_wy_kernel(bf16 *dq, bf16 *dk, bf16 *dv, float *dg, float *dbeta, const bf16 *q, const bf16 *k,
                      const bf16 *v, const float *beta, const bf16 *dW, const bf16 *dVp, const float *dqp,
                      const float *dkp, const float *dgp, const float *gam, const float *rq, const float *rk,
                      const bf16 *Tg, const int *tab, int T, int ncps, int H, int K, int V, int l2norm, int nbuf,
                      int64_t NT) {
    const int64_t c = blockIdx.x;
    const int h = blockIdx.y, tid = threadIdx.x;
    int64_t t0;
    int Lc;
    chunk_rows(tab, c, ncps, T, &t0, &Lc);
    const int L = Lc - 1, KB = pitch_kb(K);
    const int64_t ldk = (int64_t)H * K, ldv = (int64_t)H * V, rk0 = (t0 * H + h) * K, rv = (t0 * H + h) * V;
    bf16 *Kn = (bf16 *)dyn_smem();                                      // k̂ [64, KB]
    bf16 *Tb = Kn + GDN_C * KB, *Xb = Tb + GDN_C * GDN_SP;              // T, dT [64, GDN_SP]
    char *region = (char *)(Xb + GDN_C * GDN_SP);
    double *dgam = (double *)(region + wy_region_bytes(K, nbuf)); // [64]
    float *gs = (float *)(dgam + GDN_C), *bs = gs + GDN_C, *rks = bs + GDN_C;                    // [64] each
    float *dbs = rks + GDN_C, *s1 = dbs + GDN_C, *s2 = s1 + GDN_C, *s3 = s2 + GDN_C;              // [64] each
    float *red = s3 + GDN_C;                                                                  // [256]
    // the region's uses
    bf16 *buf[2] = {(bf16 *)region, (bf16 *)region + (nbuf == 2 ? 2 * GDN_C * GDN_SP : 0)};        // V slabs
    bf16 *Yb = (bf16 *)region, *dWb = Yb + GDN_C * GDN_SP, *Mb = dWb + GDN_C * KB;                 // Tᵀ dT, dW, β M
    const bool ak = (K & 7) == 0 && ((uintptr_t)k & 15) == 0 && ((uintptr_t)dW & 15) == 0;
    const bool av = (V & 7) == 0 && ((uintptr_t)v & 15) == 0 && ((uintptr_t)dVp & 15) == 0;

    // (0) k̂ (bf16; zero past Lc and past K to the 64-column boundary), the row scalars and T (the prep
    // kernel's, bf16: recomputing it here, A and the triangular solve, was a sixth of this kernel's
    // instructions). dk starts from the dqk kernel's dk' (its loads in flight meanwhile).
    {
        const bf16 *Tc = Tg + (c * H + h) * (int64_t)(GDN_C * GDN_C);
        for (int i = tid; i < GDN_C * GDN_C / 8; i += GDN_THREADS)
            cp_async16(Tb + (i >> 3) * GDN_SP + (i & 7) * 8, Tc + 8 * i);
    }
    load_tile_small(Kn, KB, k + rk0, ldk, GDN_C, Lc, K, KB - 8, ak);
    load_row_scalars(gs, gam, t0, Lc, H, h, true);
    load_row_scalars(bs, beta, t0, Lc, H, h, true);
    load_row_scalars(rks, rk, t0, Lc, H, h, true);
    cp_async_commit();
    dq_rows<MT>(dq, dqp, q, rq, t0, Lc, H, h, K, l2norm); // (while the copies land)
    float dK[MT][4][4];
    tiles_load(dK, dkp + rk0, ldk, Lc, K, false);
    cp_async_wait<0>();
    if (tid < GDN_C) dgam[tid] = 0.0, dbs[tid] = 0.0f;
    __syncthreads();
    normalize_rows(Kn, KB, K, rks);

    // (1) The pass over V: dT1 = dV' Vᵀ; per slab tv = Tᵀ dV' (dv = β tv, and v·tv for dβ).
    float dT[4][4], pb[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    zero_acc(dT);
    auto issue = [&](int j0, bf16 *b) {
        const int BVa = min(GDN_BV, V - j0);
        load_tile_small(b, GDN_SP, dVp + rv + j0, ldv, GDN_C, Lc, BVa, GDN_BV, av);
        load_tile_small(b + GDN_C * GDN_SP, GDN_SP, v + rv + j0, ldv, GDN_C, Lc, BVa, GDN_BV, av);
        cp_async_commit();
    };
    issue(0, buf[0]);
    for (int j0 = 0, it = 0; j0 < V; j0 += GDN_BV, it++) {
        const int BVa = min(GDN_BV, V - j0);
        // (Tb complete at the first wait's barrier)
        slab_wait(nbuf == 2 && j0 + GDN_BV < V, [&] { issue(j0 + GDN_BV, buf[(it + 1) & 1]); });
        const bf16 *Pd = buf[it & 1], *Pvv = Pd + GDN_C * GDN_SP;
        mm64_bf<false, true, MM_FULL, false>(dT, GDN_BV, Pd, GDN_SP, Pvv, GDN_SP);
        float tv[4][4], vv[4][4];
        zero_acc(tv);
        mm64_bf<true, false, MM_FULL, false>(tv, Lc, Tb, GDN_SP, Pd, GDN_SP); // A(r, s) = T[s][r]
        tile_from_smem(vv, Pvv, GDN_SP);
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) pb[i] = fmaf(vv[i][j], tv[i][j], pb[i]);
        float bf[4];
#pragma unroll
        for (int i = 0; i < 4; i++) bf[i] = bs[tile_r(i)];
        store_acc(dv + rv + j0, ldv, tv, bf, Lc, BVa, (V & 1) == 0);
        __syncthreads(); // every thread is done with the buffer
        if (nbuf == 1 && j0 + GDN_BV < V) issue(j0 + GDN_BV, buf[0]);
    }
    load_tile_small(dWb, KB, dW + rk0, ldk, GDN_C, Lc, K, KB - 8, ak); // arrives during what follows
    cp_async_commit();
    rows_sum(pb, red, s1); // v_r · (Tᵀ dV')_r
    if (tid < GDN_C) dbs[tid] += s1[tid];
    cp_async_wait<0>();
    __syncthreads(); // dWb landed

    // (2) dT = dT1 diag(β) + dW (β e^γ K̂)ᵀ (fp32 in the registers, then bf16 for its products, as fla);
    // tk = Tᵀ dW: c_r = e^{γ_r} k̂_r · tk_r, dβ_r += c_r, dγ_r += β_r c_r, dK += diag(β e^γ) tk.
    {
        float acc[4][4];
        zero_acc(acc);
        mm64_bf<false, true, MM_FULL, false>(acc, K, dWb, KB, Kn, KB);
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int n = tile_c(j);
            const float bn = bs[n], be = n < Lc ? bn * expf(gs[n]) : 0.0f;
#pragma unroll
            for (int i = 0; i < 4; i++) dT[i][j] = tile_r(i) < Lc && n < Lc ? fmaf(acc[i][j], be, dT[i][j] * bn) : 0.0f;
        }
        acc_to_smem_bf16(Xb, GDN_SP, dT);
        float p[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
            zero_acc(acc);
            mm64_bf<true, false, MM_FULL, false>(acc, Lc, Tb, GDN_SP, dWb + 64 * mt, KB);
            float kn[4][4];
            tile_from_smem(kn, Kn + 64 * mt, KB);
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int m = tile_r(i);
                const float eb = m < Lc ? bs[m] * expf(gs[m]) : 0.0f;
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    p[i] = fmaf(kn[i][j], acc[i][j], p[i]);
                    dK[mt][i][j] = fmaf(eb, acc[i][j], dK[mt][i][j]);
                }
            }
        }
        rows_sum(p, red, s1); // (barriers: Xb complete)
    }
    if (tid < Lc) {
        const float cr = expf(gs[tid]) * s1[tid];
        dbs[tid] += cr;
        dgam[tid] += (double)(bs[tid] * cr);
    }

    // (3) dA = −Tᵀ dT Tᵀ: Y = Tᵀ dT, dA = −Y Tᵀ, bf16 products with fp32 accumulators as fla's
    // prepare_wy_repr_bwd (tf32 products from fp32 tiles had twelve scalar loads and conversions per mma).
    {
        float acc[4][4];
        zero_acc(acc);
        mm64_bf<true, false, MM_FULL, false>(acc, Lc, Tb, GDN_SP, Xb, GDN_SP); // A(r, m) = T[m][r]
        acc_to_smem_bf16(Yb, GDN_SP, acc);
    }
    __syncthreads();
    float dA[4][4]; // −dA
    zero_acc(dA);
    mm64_bf<false, true, MM_FULL, false>(dA, Lc, Yb, GDN_SP, Tb, GDN_SP); // B(m, n) = T[n][m]

    // (4) With A_rs = β_r KK_rs Γ_rs (s < r, KK = K̂ K̂ᵀ recomputed in this layout) and M = dA ⊙ Γ (dA is
    // minus the product above):
    // dβ_r += Σ_s M_rs KK_rs; F = M ⊙ β KK: dγ_r += rowsum F − colsum F; dK += (β M) K̂ + (β M)ᵀ K̂.
    {
        float KK[4][4];
        zero_acc(KK);
        mm64_bf<false, true, MM_FULL, false>(KK, K, Kn, KB, Kn, KB);
        float pm[4] = {0.0f, 0.0f, 0.0f, 0.0f}, pf[4] = {0.0f, 0.0f, 0.0f, 0.0f}, pc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const int m = tile_r(i), n = tile_c(j);
                const bool in = n < m && m < Lc;
                const float M = in ? -dA[i][j] * expf(gs[m] - gs[n]) : 0.0f;
                const float mk = M * KK[i][j], f = bs[m] * mk;
                pm[i] += mk, pf[i] += f, pc[j] += f;
                dA[i][j] = bs[m] * M; // β M, over dA (its last use)
            }
        acc_to_smem_bf16(Mb, GDN_SP, dA);
        rows_sum(pm, red, s1);
        rows_sum(pf, red, s2);
        cols_sum(pc, red, s3); // (barriers: Mb complete)
    }
    if (tid < Lc) {
        dbs[tid] += s1[tid];
        // dγ: this kernel's terms, then the K tiles' (the dqk kernel's), in a fixed order
        double s = dgam[tid] + ((double)s2[tid] - (double)s3[tid]);
        for (int kt = 0; kt < MT; kt++) s += (double)dgp[((int64_t)kt * NT + t0 + tid) * H + h];
        dgam[tid] = s;
    }
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        mm64_bf<false, false, MM_LOWER, false>(dK[mt], Lc, Mb, GDN_SP, Kn + 64 * mt, KB);
        mm64_bf<true, false, MM_UPPER, false>(dK[mt], Lc, Mb, GDN_SP, Kn + 64 * mt, KB);
    }

    // (5) Outputs: dg = reverse cumsum of dγ (double), dβ; dk through the L2 norm, dk = r (dk' − k̂ (k̂·dk')),
    // k̂ the bf16 normalized k the products used (dq went first: dq_rows).
    {
        float pk[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        if (l2norm)
#pragma unroll
            for (int mt = 0; mt < MT; mt++) {
                float kn[4][4];
                tile_from_smem(kn, Kn + 64 * mt, KB);
#pragma unroll
                for (int i = 0; i < 4; i++)
#pragma unroll
                    for (int j = 0; j < 4; j++) pk[i] = fmaf(kn[i][j], dK[mt][i][j], pk[i]); // (k̂ zero past Lc, K)
            }
        rows_sum(pk, red, s2); // (barriers: dgam complete)
    }
    if (tid == 0) {
        double acc = 0.0;
        for (int r = L; r >= 0; r--) {
            acc += dgam[r];
            dg[(t0 + r) * H + h] = (float)acc;
            dbeta[(t0 + r) * H + h] = dbs[r];
        }
    }
    const bool kpairs = (K & 1) == 0;
#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
        float one[4], kn[4][4];
        if (l2norm) tile_from_smem(kn, Kn + 64 * mt, KB);
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int m = tile_r(i);
            one[i] = 1.0f;
            if (l2norm && m < Lc)
#pragma unroll
                for (int j = 0; j < 4; j++) dK[mt][i][j] = rks[m] * (dK[mt][i][j] - kn[i][j] * s2[m]);
        }
        store_acc(dk + rk0 + 64 * mt, ldk, dK[mt], one, Lc, K - 64 * mt, kpairs);
    }
}

// ----------------------------------------------------------------------------------------------------
// launcher

// Raises kern's dynamic shared-memory limit to need (once per size: *allowed remembers the largest set).
template <class F> static void allow_smem_bwd(F kern, size_t need, size_t *allowed) {
    if (need <= *allowed) return;
    CUDA_CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)need));
    *allowed = need;
}

extern "C" int pn_cuda_gdn_bwd(const pn_gdn_cfg *cfg, void *dq, void *dk, void *dv, float *dg, float *dbeta,
                               float *dh0, const void *dout, const float *dht, const void *q, const void *k,
                               const void *v, const float *g, const float *beta, const float *h0) {
    const int H = (int)cfg->H, K = (int)cfg->K, V = (int)cfg->V, T = (int)cfg->T;
    const int N = (int)pn_gdn_num_seqs(cfg);
    const int64_t NT = cfg->B * cfg->T;
    const float scale = (float)pn_gdn_scale(cfg);
    const int ncps = (int)ceil_div64(T, GDN_C), nvs = (int)ceil_div64(V, GDN_BV), mt = (K + 63) / 64;
    int64_t n_chunks;
    if (pn_cuda_gdn_count_chunks(cfg, &n_chunks)) return -1;

    // The forward's intermediates (W, V', hs, T, P, γ, 1/‖q‖, 1/‖k‖, e^{γ_L − γ} / ‖k‖: pn_gdn_saved_bytes'
    // layout) from cfg->saved where the forward kept them there, else recomputed into the workspace. Workspace
    // besides: dW [NT, H, K], dV' [NT, H, V], dSo [n_chunks, H, K, V] (bf16); the K tiles' dγ [nkt, NT, H], dq
    // and dk' [NT, H, K] (fp32); with cu_seqlens the chunk table and first chunks (int).
    gdn_saved sv;
    const bool kept = gdn_saved_of(cfg, NT, n_chunks, &sv);
    const size_t bs = kept ? 0 : align256(pn_gdn_saved_bytes(NT, n_chunks, H, K, V));
    const size_t bw = align256(sizeof(bf16) * (size_t)(NT * H * K)), bu = align256(sizeof(bf16) * (size_t)(NT * H * V)),
                 bh = align256(sizeof(bf16) * (size_t)(n_chunks * H * K * V)), bg = align256(sizeof(float) * (size_t)(NT * H)),
                 bq = align256(sizeof(float) * (size_t)(NT * H * K)),
                 bt = cfg->cu_seqlens ? align256(sizeof(int) * (size_t)(2 * n_chunks + N + 1)) : 0;
    char *w = (char *)pn_cuda_ws(PN_WS_GDN_BWD, bs + bw + bu + bh + mt * bg + 2 * bq + bt);
    if (!kept) gdn_saved_at(w, NT, n_chunks, H, K, V, true, &sv);
    bf16 *W = sv.W, *Vp = sv.Vp, *hs = sv.hs, *Tch = sv.T;
    float *gam = sv.gam, *rq = sv.rq, *rk = sv.rk;
    bf16 *dW = (bf16 *)(w + bs), *dVp = (bf16 *)(w + bs + bw), *dSo = (bf16 *)(w + bs + bw + bu);
    float *dgp = (float *)(w + bs + bw + bu + bh), *dqp = (float *)((char *)dgp + mt * bg), *dkp = (float *)((char *)dqp + bq);
    int *tab = NULL, *cst = NULL;
    if (cfg->cu_seqlens) {
        tab = (int *)((char *)dkp + bq);
        cst = tab + 2 * n_chunks;
        pn_cuda_gdn_chunk_table(tab, cst, cfg->cu_seqlens, N, T, GDN_C);
    }

    // PN_GDN_PROFILE=1: time the kernels (events between launches) and log the split.
    static int profile = -1;
    if (profile < 0) profile = getenv("PN_GDN_PROFILE") && getenv("PN_GDN_PROFILE")[0] == '1';
    cudaEvent_t ev[6];
    if (profile)
        for (int i = 0; i < 6; i++) CUDA_CHECK(cudaEventCreate(&ev[i]));

    // 1, 2: the forward's W, V', states (h0 in, no final state), unless the forward kept them
    if (!kept)
        pn_cuda_gdn_fwd_states(cfg, n_chunks, tab, cst, &sv, true, NULL, q, k, v, g, beta, h0, NULL, profile ? ev : NULL);
    else if (profile)
        for (int i = 0; i < 3; i++) CUDA_CHECK(cudaEventRecord(ev[i], pn_cuda_stream()));

    // 3: the state gradient (and dV'). Two stages only where two blocks an SM still fit (the grid is V / 64 × H × N
    // blocks: more blocks in flight beat the overlap of one block's copies).
    int optin = 0, dev = 0;
    CUDA_CHECK(cudaGetDevice(&dev));
    CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    const int nst = 2 * dstate_smem_bytes(K, 2) <= (size_t)optin ? 2 : 1;
    static size_t dstate_attr[4] = {48 * 1024, 48 * 1024, 48 * 1024, 48 * 1024};
    void (*dstate)(bf16 *, bf16 *, float *, const float *, const bf16 *, const bf16 *, const bf16 *, const bf16 *,
                   const bf16 *, const float *, const float *, const float *, const int *, const int *, int, int, int, int, float,
                   int) = mt == 1   ? gdn_bwd_dstate_kernel<1>
                          : mt == 2 ? gdn_bwd_dstate_kernel<2>
                          : mt == 3 ? gdn_bwd_dstate_kernel<3>
                                    : gdn_bwd_dstate_kernel<4>;
    allow_smem_bwd(dstate, dstate_smem_bytes(K, nst), &dstate_attr[mt - 1]);
    GDN_LAUNCH(dstate, dim3((unsigned)nvs, (unsigned)H, (unsigned)N), GDN_THREADS, dstate_smem_bytes(K, nst), dSo, dVp,
               dh0, dht, (const bf16 *)q, (const bf16 *)k, (const bf16 *)W, (const bf16 *)dout, (const bf16 *)sv.P,
               (const float *)gam, (const float *)rq, (const float *)sv.rd, (const int *)cfg->cu_seqlens,
               (const int *)cst, T, H, K, V, scale, nst);
    CUDA_LAUNCH_CHECK();
    if (profile) CUDA_CHECK(cudaEventRecord(ev[3], pn_cuda_stream()));

    // 4: dq, dk', dW and the K tiles' dγ, two blocks an SM
    const int nbuf = dqk_smem_bytes(2) <= (size_t)optin ? 2 : 1, wbuf = wy_smem_bytes(K, 2) <= (size_t)optin ? 2 : 1;
    static size_t dqk_attr = 48 * 1024, wy_attr[4] = {48 * 1024, 48 * 1024, 48 * 1024, 48 * 1024};
    allow_smem_bwd(gdn_bwd_dqk_kernel, dqk_smem_bytes(nbuf), &dqk_attr);
    GDN_LAUNCH(gdn_bwd_dqk_kernel, dim3((unsigned)(n_chunks * mt), (unsigned)H), GDN_THREADS, dqk_smem_bytes(nbuf), dqp,
               dkp, dW, dgp, (const bf16 *)q, (const bf16 *)k, (const bf16 *)dout, (const bf16 *)hs, (const bf16 *)dSo,
               (const bf16 *)Vp, (const bf16 *)dVp, (const float *)gam, (const float *)rq, (const float *)rk,
               (const int *)tab, T, ncps, mt, H, K, V, scale, nbuf, (int64_t)NT);
    CUDA_LAUNCH_CHECK();
    if (profile) CUDA_CHECK(cudaEventRecord(ev[4], pn_cuda_stream()));

    // 5: the WY representation's gradients, the L2 norm's, the outputs
    void (*wy)(bf16 *, bf16 *, bf16 *, float *, float *, const bf16 *, const bf16 *, const bf16 *, const float *,
               const bf16 *, const bf16 *, const float *, const float *, const float *, const float *, const float *,
               const float *, const bf16 *, const int *, int, int, int, int, int, int, int, int64_t) =
        mt == 1   ? gdn_bwd_wy_kernel<1>
        : mt == 2 ? gdn_bwd_wy_kernel<2>
        : mt == 3 ? gdn_bwd_wy_kernel<3>
                  : gdn_bwd_wy_kernel<4>;
    allow_smem_bwd(wy, wy_smem_bytes(K, wbuf), &wy_attr[mt - 1]);
    GDN_LAUNCH(wy, dim3((unsigned)n_chunks, (unsigned)H), GDN_THREADS, wy_smem_bytes(K, wbuf), (bf16 *)dq, (bf16 *)dk,
               (bf16 *)dv, dg, dbeta, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, beta, (const bf16 *)dW,
               (const bf16 *)dVp, (const float *)dqp, (const float *)dkp, (const float *)dgp, (const float *)gam,
               (const float *)rq, (const float *)rk, (const bf16 *)Tch, (const int *)tab, T, ncps, H, K, V,
               cfg->qk_l2norm ? 1 : 0, wbuf,
               (int64_t)NT);
    CUDA_LAUNCH_CHECK();
    if (profile) {
        float ms[5];
        CUDA_CHECK(cudaEventRecord(ev[5], pn_cuda_stream()));
        CUDA_CHECK(cudaEventSynchronize(ev[5]));
        for (int i = 0; i < 5; i++) CUDA_CHECK(cudaEventElapsedTime(&ms[i], ev[i], ev[i + 1]));
        pn_info("gdn bwd (cuda) B %lld T %lld H %d K %d V %d: prep %.2f ms, states %.2f ms, dstate %.2f ms (%d stage%s), "
                "dqk %.2f ms, wy %.2f ms",
                (long long)cfg->B, (long long)cfg->T, H, K, V, ms[0], ms[1], ms[2], nst, nst > 1 ? "s" : "", ms[3], ms[4]);
        for (int i = 0; i < 6; i++) CUDA_CHECK(cudaEventDestroy(ev[i]));
    }
    return 0;
}
