// gdn.cu: Gated DeltaNet forward (chunked, chunk 64) and decode step on the GPU, the semantics of
// pn_cpu_gdn_fwd_f32 / pn_cpu_gdn_step_f32 (kernels/cpu/gdn.c; REFERENCE.md §4). Per (sequence, head) and chunk of
// Lc ≤ 64 rows, with γ the inclusive cumsum of g inside the chunk and Γ_rs = e^{γ_r − γ_s} (s ≤ r):
//   A = strict_lower(diag(β) K Kᵀ ⊙ Γ), T = (I + A)⁻¹, W = T diag(β e^γ) K, U = T diag(β) V,
//   V' = U − W S,  O = diag(scale e^γ) Q S + P V' with P = lower_incl(scale Q Kᵀ ⊙ Γ),
//   S ← e^{γ_L} S + Kᵀ diag(e^{γ_L − γ}) V'.
//
// The decisions a reader would otherwise miss:
// - Two kernels, so that only what must be sequential is:
//   1. gdn_prep_kernel, grid (chunk, head): the rows' 1/‖q‖, 1/‖k‖ (or 1 without qk_l2norm), γ, A from the
//      bf16 k̂, T (fp32, blocked forward substitution: tri_inv64), W and U (bf16 products of
//      T's column-scaled bf16 copies, stored as bf16), and (for the output) P (bf16, [chunk, H, 64, 64]).
//   2. gdn_state_kernel, grid (V / 64, head, sequence): walks the sequence's chunks in order with a 64-column
//      slice of the state in registers (fp32, the update's accumulators) and a bf16 copy in shared memory:
//      V' = U − W S, the chunk's output O = diag(scale e^γ) Q̂ S + P V' from the copy, and S's update. The
//      state entering each chunk (bf16, [chunk, H, K, V]) and V' (bf16, over U) go to memory only for the
//      backward (the forward keeping them in cfg->saved, or the backward's recompute). The next chunk's
//      tiles are copied in (cp.async) while the current one is computed where two stages pay.
//   fla (and this file until the output moved into the walk) has a third kernel for the output, reading the
//   states and V' back: at the anchor shape a third of the forward's memory traffic.
//   The normalization is never materialized: q̂ = diag(1/‖q‖) q, so 1/‖q‖, 1/‖k‖ scale rows of products
//   of the raw bf16 q, k (W is built from k̂ in fp32 inside the prep kernel).
// - The products are 64×64 tiles on tensor cores: gdn_tile.cuh's mm64_bf, bf16 tiles in shared memory read
//   by ldmatrix, fp32 accumulators. k̂, T's scaled copies, W, U, V', the per-chunk states, P and the
//   operand diag(e^{γ_L − γ}) V' of the state update are rounded to bf16, as fla keeps them; the state
//   itself, γ, A, the triangular solve and every accumulator are fp32. Rows past Lc and columns past K / V are
//   zero in shared memory, so every product runs on full tiles and padding never reaches an output.
// - Only exponents ≤ 0 are evaluated: Γ is masked (s ≤ r) before expf, e^{γ_r} and e^{γ_L − γ_r} have
//   γ_r ≤ 0 and γ_L ≤ γ_r. γ is summed in double (as on the CPU) and stored as fp32.
// - cu_seqlens is a device array; the launcher takes the host copy the block context passes (cu_host) or
//   reads it back, to validate it with pn_gdn_check and count the chunks; the chunk table itself (first row
//   and length of each chunk, first chunk of each sequence) is built on the device (gdn_table_kernel).
// - Shared memory: prep ~140 KB at K = 256 (71 KB at K = 96: three blocks an SM); the state walk with the
//   output ~224 KB (two stages) at K = 256 and 129 KB at K = 96 (one block an SM), one stage 71 KB (three
//   blocks an SM at 80 registers, taken when the grid has more walks than fit one wave with two stages: 384
//   walks at B 8, H 12, V 256 fill one wave of 396 slots); without the output (the backward's recompute)
//   53 KB in one stage at K = 96. Fits Hopper's 227 KB (not an A100's 163).
// - The workspace (one device buffer of the backend context, grown on demand, never shrunk): bf16 W, U per
//   token row, fp32 γ, 1/‖q‖, 1/‖k‖ and the state update's row factor e^{γ_L − γ} / ‖k‖ (rd: the two walks
//   read it instead of four expf a thread a chunk) per token row (in cfg->saved instead where the caller
//   keeps them for the backward, with V' and the per-chunk states), P per chunk, and the chunk table.
// - GDN_LAUNCH is <<<>>> on CUDA (GDN_LAUNCH_PDL, for the decode step, pn_launch); with PN_CUDA_EMU the file
//   compiles as C++ for the host emulation the CPU suite checks the kernels with (tests/emu/cuda_emu.h).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.cuh"
#include "mma.cuh"
#include "gdn_cuda.h"
#include "gdn_tile.cuh"

#define GDN_STEP_WARPS 4 // the decode step: warps per block, each a quarter of the K rows of 32 columns
#define GDN_STEP_THREADS (32 * GDN_STEP_WARPS)
#define GDN_STEP_RPW (PN_GDN_MAX_K / GDN_STEP_WARPS) // rows per thread at most (registers)

// ----------------------------------------------------------------------------------------------------
// kernels

// The prep kernel's shared memory: the k tile [64, pitch_kb(K)] (bf16); a region holding the q tile (same
// shape, for its norm and P) and then two V slabs [64, GDN_SP] (bf16); a region holding A [64, TILE_P] (fp32)
// and then T diag(β e^γ), T diag(β) [64, GDN_SP] (bf16); T [64, TILE_P] (fp32); γ, β, g, 1/‖k‖, 1/‖q‖ [64]
// (fp32). Each region serves its second use once the first is dead: 71 KB at K ≤ 128, three blocks an SM
// (107 KB unshared).
__host__ __device__ __forceinline__ size_t prep_region_q(int K) {
    const size_t a = sizeof(bf16) * (size_t)GDN_C * pitch_kb(K), b = sizeof(bf16) * (size_t)2 * GDN_C * GDN_SP;
    return a > b ? a : b;
}
__host__ __device__ __forceinline__ size_t prep_region_a(void) {
    const size_t a = sizeof(float) * (size_t)GDN_C * TILE_P, b = sizeof(bf16) * (size_t)2 * GDN_C * GDN_SP;
    return a > b ? a : b;
}
__host__ __device__ __forceinline__ size_t prep_smem_bytes(int K) {
    return sizeof(bf16) * (size_t)GDN_C * pitch_kb(K) + prep_region_q(K) + prep_region_a() +
           sizeof(float) * (size_t)(GDN_C * TILE_P + 5 * GDN_C);
}

// grid (n_chunks, H), GDN_THREADS threads. Writes, for the chunk's rows t0 .. t0 + Lc − 1 and head h:
// W [NT, H, K] and U [NT, H, V] (bf16), gam = γ, rq = 1/‖q‖, rk = 1/‖k‖ (1 without l2norm) and rd = e^{γ_L − γ}
// / ‖k‖, the state update's row factor (γ_L the chunk's last γ), [NT, H] (fp32);
// Tout (the backward's, else NULL): T [n_chunks, H, 64, 64] (bf16 as its products read it, zero past Lc),
// for its WY kernel; P = lower_incl(scale Q̂ K̂ᵀ ⊙ Γ) [n_chunks, H, 64, 64] (bf16, zero past Lc) from the raw
// q, k and the norms, for the state walk's output and the backward's Pᵀ dO.
// As fla: k̂ rounded to bf16 for A = diag(β) k̂ k̂ᵀ ⊙ Γ (fp32 accumulators), T = (I + A)⁻¹ in fp32, then W
// and U as bf16 products of T's rounded column-scaled copies, T diag(β e^γ) k̂ and T diag(β) V.
__global__ void __launch_bounds__(GDN_THREADS, 3)
    gdn_prep_kernel(bf16 *W, bf16 *U, float *gam, float *rq, float *rk, float *rd, bf16 *Tout, bf16 *P,
                    const bf16 *q, const bf16 *k, const bf16 *v, const float *g, const float *beta, const int *tab,
                    int T, int ncps, int H, int K, int V, int l2norm, float scale) {
    const int c = blockIdx.x, h = blockIdx.y, tid = threadIdx.x;
    int64_t t0;
    int Lc;
    chunk_rows(tab, c, ncps, T, &t0, &Lc);
    const int KB = pitch_kb(K), K16 = round16(K);
    bf16 *kb = (bf16 *)dyn_smem();                       // [64, KB]: k, then k̂ (bf16)
    char *reg_q = (char *)(kb + GDN_C * KB), *reg_a = reg_q + prep_region_q(K);
    bf16 *qb = (bf16 *)reg_q;                            // [64, KB]: q (for its norm), until step 2
    bf16 *Vb = (bf16 *)reg_q;                            // [2][64, GDN_SP]: V slabs, from step 2 on
    float *As = (float *)reg_a;                          // [64, TILE_P]: A, until the triangular solve
    bf16 *Tw = (bf16 *)reg_a, *Tu = Tw + GDN_C * GDN_SP; // [64, GDN_SP] each: T diag(β e^γ), T diag(β), after it
    float *Ts = (float *)(reg_a + prep_region_a());      // [64, TILE_P]: T
    float *gs = Ts + GDN_C * TILE_P; // [64]: γ
    float *bs = gs + GDN_C;          // [64]: β
    float *graw = bs + GDN_C;        // [64]: g
    float *nks = graw + GDN_C;       // [64]: 1/‖k‖
    float *nqs = nks + GDN_C;        // [64]: 1/‖q‖ (for P)
    const int64_t ldk = (int64_t)H * K, ldv = (int64_t)H * V;
    const bool ak = (K & 7) == 0 && ((uintptr_t)q & 15) == 0 && ((uintptr_t)k & 15) == 0;
    const bool av = (V & 7) == 0 && ((uintptr_t)v & 15) == 0;
    auto load_v = [&](int nt, bf16 *dst) {
        load_tile_async(dst, GDN_SP, v + (t0 * H + h) * V + nt, ldv, GDN_C, Lc, min(64, V - nt), 64, av);
        cp_async_commit();
    };

    // (1) the chunk's q, k tiles, g and β rows (one cp.async group); then both rows' 1/‖x‖, γ (double, one
    // thread), P from the raw tiles, and k̂ = k / ‖k‖ in place, four threads a row and 8 columns (16 bytes) a
    // load: the tiles are zero past K up to KB − 8, so whole groups of 8 read zeros there and write them back
    // (zeros past Lc likewise).
    // (A warp a row with one bf16 a load before: the norms were a tenth of the kernel's instructions.)
    load_tile_async(qb, KB, q + (t0 * H + h) * K, ldk, GDN_C, Lc, K, KB - 8, ak);
    load_tile_async(kb, KB, k + (t0 * H + h) * K, ldk, GDN_C, Lc, K, KB - 8, ak);
    load_row_scalars(graw, g, t0, Lc, H, h, true);
    load_row_scalars(bs, beta, t0, Lc, H, h, true);
    cp_async_commit();
    cp_async_wait<0>();
    __syncthreads();
    {
        const int r = tid >> 2, p = tid & 3, ng = (K + 7) >> 3; // GDN_THREADS = 4 × 64 rows
        float sq = 0.0f, sk = 0.0f, x[8];
        for (int gi = p; gi < ng && l2norm; gi += 4) {
            load_chunk<8>(qb + r * KB + 8 * gi, x);
#pragma unroll
            for (int e = 0; e < 8; e++) sq = fmaf(x[e], x[e], sq);
            load_chunk<8>(kb + r * KB + 8 * gi, x);
#pragma unroll
            for (int e = 0; e < 8; e++) sk = fmaf(x[e], x[e], sk);
        }
        float nq = 1.0f, nk = 1.0f;
        if (l2norm) {
            sq += __shfl_xor_sync(0xffffffffu, sq, 1);
            sk += __shfl_xor_sync(0xffffffffu, sk, 1);
            sq += __shfl_xor_sync(0xffffffffu, sq, 2);
            sk += __shfl_xor_sync(0xffffffffu, sk, 2);
            nq = 1.0f / sqrtf(sq + (float)PN_GDN_L2_EPS);
            nk = 1.0f / sqrtf(sk + (float)PN_GDN_L2_EPS);
        }
        if (p == 0) nks[r] = nk, nqs[r] = nq;
        if (p == 0 && r < Lc) rq[(t0 + r) * H + h] = nq, rk[(t0 + r) * H + h] = nk;
        if (tid == GDN_C) {
            double acc = 0.0;
            for (int i = 0; i < GDN_C; i++) {
                acc += (double)graw[i]; // zero past Lc: rows past Lc repeat γ_{Lc−1}, never used with a nonzero factor
                gs[i] = (float)acc;
            }
        }
        // P from the raw q, k (as the output kernel formed it before: the same bits), before k̂ is written
        __syncthreads(); // the norms and γ
        form_P(P + ((int64_t)c * H + h) * GDN_C * GDN_C, qb, kb, KB, K, gs, nqs, nks, Lc, scale);
        __syncthreads(); // every warp is done reading the raw k
        if (l2norm)
            for (int gi = p; gi < ng; gi += 4) {
                load_chunk<8>(kb + r * KB + 8 * gi, x);
#pragma unroll
                for (int e = 0; e < 8; e++) x[e] *= nk;
                store_chunk<8>(kb + r * KB + 8 * gi, x);
            }
    }
    __syncthreads();

    // (2) The first two V slabs (two cp.async groups, over q: its norms are taken), landing during A and T.
    // A = strict_lower(diag(β) k̂ k̂ᵀ ⊙ Γ) into shared memory (the contraction runs to K16: zeros past K).
    load_v(0, Vb);
    if (V > 64) load_v(64, Vb + GDN_C * GDN_SP);
    form_A(As, kb, KB, K16, bs, gs, Lc);
    __syncthreads();

    // (3) γ to global and the column factors β e^γ (over g's row, read by thread 64 before the barrier);
    // T = (I + A)⁻¹ (gdn_tile.cuh's tri_inv64, fp32, barriers inside); its column-scaled bf16 copies.
    float *ebs = graw;
    if (tid < Lc) gam[(t0 + tid) * H + h] = gs[tid], rd[(t0 + tid) * H + h] = nks[tid] * expf(gs[Lc - 1] - gs[tid]);
    if (tid < GDN_C) ebs[tid] = bs[tid] * expf(gs[tid]); // β is 0 past Lc
    tri_inv64(Ts, As, Lc);
    __syncthreads();
    for (int i = tid; i < GDN_C * GDN_C; i += GDN_THREADS) {
        const int m = i >> 6, s = i & 63;
        const float t = Ts[m * TILE_P + s];
        Tw[m * GDN_SP + s] = f2bf(t * ebs[s]);
        Tu[m * GDN_SP + s] = f2bf(t * bs[s]);
    }
    if (Tout) { // 16-byte stores of 8 bf16, rows of 64
        bf16 *dst = Tout + ((int64_t)c * H + h) * GDN_C * GDN_C;
        for (int i = tid; i < GDN_C * GDN_C / 8; i += GDN_THREADS)
            store_chunk<8>(dst + 8 * i, Ts + (i >> 3) * TILE_P + (i & 7) * 8);
    }
    __syncthreads();

    const float one[4] = {1.0f, 1.0f, 1.0f, 1.0f};
    // (4) W = (T diag(β e^γ)) k̂, 64 columns of K at a time.
    bf16 *Wc = W + (t0 * H + h) * (int64_t)K;
    for (int nt = 0; nt < K; nt += 64) {
        float acc[4][4];
        zero_acc(acc);
        mm64_bf<false, false, MM_LOWER>(acc, Lc, Tw, GDN_SP, kb + nt, KB);
        store_acc(Wc + nt, ldk, acc, one, Lc, K - nt, (K & 1) == 0);
    }

    // (5) U = (T diag(β)) V, a 64-column slab at a time, the slab after next copied in while this one is
    // multiplied (two buffers).
    bf16 *Uc = U + (t0 * H + h) * (int64_t)V;
    for (int j = 0, nt = 0; nt < V; j++, nt += 64) {
        if (nt + 64 < V) cp_async_wait<1>(); // slab j has landed (slab j + 1 may not have)
        else cp_async_wait<0>();
        __syncthreads();
        bf16 *vb = Vb + (j & 1) * GDN_C * GDN_SP;
        float acc[4][4];
        zero_acc(acc);
        mm64_bf<false, false, MM_LOWER>(acc, Lc, Tu, GDN_SP, vb, GDN_SP);
        store_acc(Uc + nt, ldv, acc, one, Lc, V - nt, (V & 1) == 0);
        __syncthreads(); // slab j consumed
        if (nt + 128 < V) load_v(nt + 128, vb);
    }
}

// Shared memory of the state kernel: the state slice as bf16 [round16(K), GDN_SP] (the W S product's
// operand), then per stage the W tile [64, pitch_qk(K)] (with OUT, the q tile from the middle of the chunk
// on), the k tile [64, pitch_kb(K)], the U / V' tile [64, GDN_SP] (bf16), γ and the update's row factor
// e^{γ_L − γ} / ‖k‖ [64] (fp32); with OUT also P and V' [64, GDN_SP] (bf16) and 1/‖q‖ [64] (fp32).
// K 96: 53 KB without the output, 71 KB with it (one stage): three blocks an SM either way.
__host__ __device__ __forceinline__ size_t state_stage_bytes(int K, bool out) {
    return sizeof(bf16) * (size_t)GDN_C * (pitch_qk(K) + pitch_kb(K) + (out ? 3 : 1) * GDN_SP) +
           sizeof(float) * (size_t)(out ? 3 : 2) * GDN_C;
}
__host__ __device__ __forceinline__ size_t state_smem_bytes(int K, int nst, bool out) {
    return sizeof(bf16) * (size_t)round16(K) * GDN_SP + (size_t)nst * state_stage_bytes(K, out);
}

// grid (ceil(V / 64), H, N), GDN_THREADS threads: sequence n, head h, state columns v0 .. v0 + BVa − 1.
// Walks the sequence's chunks in order. The state slice S[K, 64] lives in registers in fp32 (MT tiles of
// 64 rows, each thread its 16 elements of every tile: the layout of the update's accumulators), and as a
// bf16 copy in shared memory for the W S product. For chunk c (global index cbase + c): S (bf16) to the copy
// and (hs not NULL) to hs[chunk, h, :, v0 ..]; V' = U − W S (bf16; over U in global where store_vp);
// S ← e^{γ_L} S + k̂ᵀ diag(e^{γ_L − γ}) V'; with OUT the chunk's output columns
// O = diag(scale e^γ / ‖q‖) q S + P V' (S the state entering the chunk, P from the prep kernel: Pc
// [chunk, H, 64, 64]). nst = 2: the next chunk's tiles are copied in while this one is computed; nst = 1:
// one set of buffers (when two do not fit, or three blocks an SM do better: the launcher's choice).
// The output here, not in a kernel of its own, saves the per-chunk states' and V''s round trip through
// memory (written, then read back by an output kernel: about 1 GB at B 8, T 4096, H 12, K 96, V 256, a
// third of the three-kernel forward's traffic), the output's reads of k, and P formed per V slab. The q tile
// is copied into the W tile's buffer once W S is done, while the state update runs: three blocks an SM at
// K 96 (a buffer of its own would take 13 KB more, two).
template <int MT, bool OUT>
__global__ void __launch_bounds__(GDN_THREADS, MT <= 2 ? 3 : 1)
    gdn_state_kernel(bf16 *hs, bf16 *U, float *ht, bf16 *o, const float *h0, const bf16 *W, const bf16 *k,
                     const bf16 *q, const bf16 *Pc, const float *gam, const float *rd, const float *rq,
                     const int *cu_seqlens, const int *cst, int T, int H, int K, int V, int nst, int store_vp,
                     float scale) {
    const int v0 = blockIdx.x * GDN_BV, h = blockIdx.y, n = blockIdx.z, tid = threadIdx.x;
    const int BVa = min(GDN_BV, V - v0);
    int64_t row0, len, cbase;
    seq_rows(cu_seqlens, cst, n, T, &row0, &len, &cbase);
    const int KB = pitch_kb(K), KQ = pitch_qk(K), K16 = round16(K);
    bf16 *Sb = (bf16 *)dyn_smem(); // [K16, GDN_SP]
    char *stage0 = (char *)(Sb + K16 * GDN_SP);
    const size_t sb = state_stage_bytes(K, OUT);
    // stage s: Wb [64, KQ] (W, then q), Kb [64, KB], Ub [64, GDN_SP] (bf16), gs, rs (the update's row
    // factor) [64] (fp32); with OUT then Pb, Vb [64, GDN_SP] (bf16), qs (1/‖q‖) [64] (fp32)
    auto Wb = [&](int s) { return (bf16 *)(stage0 + s * sb); };
    auto Kb = [&](int s) { return Wb(s) + GDN_C * KQ; };
    auto Ub = [&](int s) { return Kb(s) + GDN_C * KB; };
    auto gsp = [&](int s) { return (float *)(Ub(s) + GDN_C * GDN_SP); };
    auto rsp = [&](int s) { return gsp(s) + GDN_C; };
    auto Pb = [&](int s) { return (bf16 *)(rsp(s) + GDN_C); };
    auto Vb = [&](int s) { return Pb(s) + GDN_C * GDN_SP; };
    auto qsp = [&](int s) { return (float *)(Vb(s) + GDN_C * GDN_SP); };
    const int64_t ldk = (int64_t)H * K, ldv = (int64_t)H * V;
    const bool ak = (K & 7) == 0 && ((uintptr_t)k & 15) == 0 && ((uintptr_t)W & 15) == 0 &&
                    (!OUT || ((uintptr_t)q & 15) == 0);
    const bool av = (V & 7) == 0 && ((uintptr_t)U & 15) == 0;
    const bool vpairs = (V & 1) == 0, hvec = BVa == GDN_BV && (V & 7) == 0 && ((uintptr_t)hs & 15) == 0;
    const bool opairs = (V & 1) == 0 && ((uintptr_t)o & 3) == 0;

    // Whole chunks take gdn_tile.cuh's direct path (load_whole) where their rows are 16-byte aligned and the
    // tile's groups divide the block. k: N8 groups a row (MT 3's 24 do not divide it), its columns
    // K .. 64 MT − 1 zeroed once here; W and q: NQ groups of which those at or past K are idle, the columns
    // K .. K16 − 1 (the products' contraction) zeroed once here (both tiles' whole loads leave them alone).
    constexpr int N8 = GDN_THREADS % (8 * MT) == 0 ? 8 * MT : 0; // 0: not this tile
    constexpr int NQ = MT == 3 ? 32 : 8 * MT;
    const bool whole_k = N8 && ak, whole_q = ak, whole_v = av && BVa == GDN_BV;
    for (int s = 0; s < nst; s++) {
        if constexpr (N8 > 0)
            if (whole_k) zero_cols<N8>(Kb(s), KB, K);
        for (int i = tid; i < GDN_C * (K16 - K); i += GDN_THREADS)
            Wb(s)[(i / (K16 - K)) * KQ + K + i % (K16 - K)] = f2bf(0.0f);
    }

    auto issue = [&](int64_t c0, int64_t c, int s) { // chunk c at row c0 of the sequence into stage s (one group)
        const int Lc = (int)min((int64_t)GDN_C, len - c0);
        const int64_t t0 = row0 + c0;
        // W: read up to K16 by W S (zeros past K); k: read 64 columns at a time up to KB − 8 (columns past K,
        // when read, only reach rows of S past K, which are discarded): filled to 64 MT (load_tile's fast path
        // for a constant).
        if (whole_q && Lc == GDN_C) load_whole<NQ>(Wb(s), KQ, W + (t0 * H + h) * K, ldk, K);
        else load_tile(Wb(s), KQ, W + (t0 * H + h) * K, ldk, GDN_C, Lc, K, K16, ak);
        load_walk_tile<N8>(Kb(s), KB, k + (t0 * H + h) * K, ldk, Lc, K, 64 * MT, ak, whole_k);
        load_walk_tile<8>(Ub(s), GDN_SP, U + (t0 * H + h) * V + v0, ldv, Lc, BVa, GDN_BV, av, whole_v);
        load_row_scalars(gsp(s), gam, t0, Lc, H, h, true);
        load_row_scalars(rsp(s), rd, t0, Lc, H, h, true);
        if (OUT) { // P whole (the prep kernel wrote its zeros past Lc)
            load_whole<8>(Pb(s), GDN_SP, Pc + (c * H + h) * GDN_C * GDN_C, GDN_C, GDN_C);
            load_row_scalars(qsp(s), rq, t0, Lc, H, h, true);
        }
        cp_async_commit();
    };

    float S[MT][4][4]; // S[mt][i][j]: row 64 mt + tile_r(i), column tile_c(j)
    slice_load(S, h0 ? h0 + (((int64_t)n * H + h) * K) * V + v0 : NULL, K, V, BVa);
    for (int i = K * GDN_SP + tid; i < K16 * GDN_SP; i += GDN_THREADS) Sb[i] = f2bf(0.0f); // rows K .. K16 − 1
    if (nst == 2) issue(0, cbase, 0);

    int64_t c = cbase;
    for (int64_t c0 = 0; c0 < len; c0 += GDN_C, c++) {
        const int s = nst == 2 ? (int)((c - cbase) & 1) : 0;
        const int Lc = (int)min((int64_t)GDN_C, len - c0);
        const int64_t t0 = row0 + c0;
        if (nst == 1) issue(c0, c, 0); // the buffers are free: barrier at the end of the last chunk
        else if (c0 + GDN_C < len) issue(c0 + GDN_C, c + 1, s ^ 1); // stage s ^ 1 was consumed by the last chunk
        if (nst == 2 && c0 + GDN_C < len) cp_async_wait<1>(); // this chunk's group has landed
        else cp_async_wait<0>();

        // the state entering the chunk as bf16: the copy in shared memory (read by W S below, after the
        // barrier) and, for the backward, hs
        slice_to_bf16(Sb, K, S);
        __syncthreads(); // every thread's copies visible; the bf16 state complete
        if (hs) store_rows(hs + ((c * H + h) * (int64_t)K) * V + v0, V, Sb, K, BVa, hvec);

        // V' = U − W S: to global (bf16, over U) where store_vp; times e^{γ_L − γ} / ‖k‖ in place of U in
        // shared memory (each element read and rewritten by its owner) as the update's operand; with OUT, V'
        // itself (bf16) to Vb, the P V' product's operand.
        bf16 *ub = Ub(s), *wb = Wb(s), *kb = Kb(s);
        const float *gs = gsp(s), *rs = rsp(s);
        const float gL = gs[Lc - 1];
        {
            float acc[4][4], u[4][4], one[4], d[4];
            zero_acc(acc);
            mm64_bf<false, false>(acc, K, wb, KQ, Sb, GDN_SP);
            tile_from_smem(u, ub, GDN_SP);
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int m = tile_r(i);
                one[i] = 1.0f;
                d[i] = rs[m]; // e^{γ_L − γ} / ‖k‖ from the prep kernel, zero past Lc
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] = u[i][j] - acc[i][j];
            }
            if (store_vp) store_acc(U + (t0 * H + h) * V + v0, ldv, acc, one, Lc, BVa, vpairs);
            if (OUT) acc_to_smem_bf16(Vb(s), GDN_SP, acc);
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] *= d[i];
            acc_to_smem_bf16(ub, GDN_SP, acc);
        }
        __syncthreads(); // V' complete; every warp is done with W
        if (OUT) { // the q tile over W, landing during the update (whole rows as W's; zeros past K stay)
            if (whole_q && Lc == GDN_C) load_whole<NQ>(wb, KQ, q + (t0 * H + h) * K, ldk, K);
            else load_tile(wb, KQ, q + (t0 * H + h) * K, ldk, GDN_C, Lc, K, K16, ak);
            cp_async_commit();
        }

        // S ← e^{γ_L} S + k̂ᵀ (diag(e^{γ_L − γ}) V'), in the registers; A(m, r) = k[r][64 mt + m].
        const float eL = expf(gL);
#pragma unroll
        for (int mt = 0; mt < MT; mt++) {
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) S[mt][i][j] *= eL;
            mm64_bf<true, false>(S[mt], Lc, kb + 64 * mt, KB, ub, GDN_SP);
        }

        // O = diag(scale e^γ / ‖q‖) q S + P V' from S's bf16 copy (as the output kernel read it from hs
        // before: the same bits). The q group is the last issued: waiting for all of them.
        if (OUT) {
            cp_async_wait<0>();
            __syncthreads(); // every thread's q copies visible
            const float *qs = qsp(s);
            float acc[4][4], f[4];
            const float one[4] = {1.0f, 1.0f, 1.0f, 1.0f};
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int m = tile_r(i);
                f[i] = m < Lc ? scale * qs[m] * expf(gs[m]) : 0.0f;
            }
            zero_acc(acc);
            mm64_bf<false, false>(acc, K, wb, KQ, Sb, GDN_SP);
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] *= f[i];
            mm64_bf<false, false, MM_LOWER>(acc, Lc, Pb(s), GDN_SP, Vb(s), GDN_SP);
            store_acc(o + (t0 * H + h) * V + v0, ldv, acc, one, Lc, BVa, opairs);
        }
        __syncthreads(); // this stage's buffers and the bf16 copy consumed
    }
    if (ht) slice_store(ht + (((int64_t)n * H + h) * K) * V + v0, S, K, V, BVa);
}

// grid (ceil(V / 32), H, B), GDN_STEP_THREADS threads: lane c owns column v0 + c of S[b, h] (the columns of
// the recurrence are independent given q̂, k̂), warp w the rows w, w + 4, w + 8, ... of it:
// u_j = β (v_j − Σ_i e^g S_ij k̂_i), S_ij ← e^g S_ij + k̂_i u_j, o_j = Σ_i scale q̂_i S_ij. A thread keeps its
// rows of S in registers between the two sums, so S is read once and written once, and each sum is four
// warps' partials added in shared memory (the CPU step sums the rows in order: float rounding apart). The
// state's loads are issued first, before q, k and the norms that do not need them.
// Measured before (one thread per column over all K rows, 24 blocks at Jet-Nemotron-2B's H 12, K 96,
// V 256, the l2 norms summed by one thread each): 17.9 us per layer under ncu, the largest kernel of a
// JetBlock decode step.
__global__ void __launch_bounds__(GDN_STEP_THREADS)
    gdn_step_kernel(bf16 *o, float *S, const bf16 *q, const bf16 *k, const bf16 *v, const float *g,
                    const float *beta, int H, int K, int V, float scale, int l2norm) {
    pdl_trigger();
    pdl_wait();
    __shared__ float qn[PN_GDN_MAX_K], kn[PN_GDN_MAX_K], rn[2], part[GDN_STEP_WARPS][32];
    const int h = blockIdx.y, b = blockIdx.z, tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int64_t bh = (int64_t)b * H + h;
    const int j = blockIdx.x * 32 + lane;
    const bool live = j < V; // every thread reaches the barriers below
    float *Sc = S + bh * K * (int64_t)V + j;
    float s[GDN_STEP_RPW], acc = 0.0f;
#pragma unroll
    for (int r = 0; r < GDN_STEP_RPW; r++) { // the state first: its loads need nothing below (one round trip)
        const int i = warp + r * GDN_STEP_WARPS;
        s[r] = live && i < K ? Sc[(int64_t)i * V] : 0.0f;
    }
    const float gb = g[bh], bb = beta[bh], vj = live ? bf2f(v[bh * V + j]) : 0.0f;
    for (int i = tid; i < K; i += GDN_STEP_THREADS) qn[i] = bf2f(q[bh * K + i]), kn[i] = bf2f(k[bh * K + i]);
    __syncthreads();
    if (warp < 2) { // warp 0: q's norm, warp 1: k's
        const float *x = warp == 0 ? qn : kn;
        float ss = 0.0f;
        if (l2norm)
            for (int i = lane; i < K; i += 32) ss = fmaf(x[i], x[i], ss);
        ss = warp_sum(ss);
        if (lane == 0) rn[warp] = l2norm ? 1.0f / sqrtf(ss + (float)PN_GDN_L2_EPS) : 1.0f;
    }
    __syncthreads();
    for (int i = tid; i < K; i += GDN_STEP_THREADS) qn[i] *= rn[0] * scale, kn[i] *= rn[1];
    __syncthreads();
    const float decay = expf(gb);
#pragma unroll
    for (int r = 0; r < GDN_STEP_RPW; r++) s[r] *= decay;
#pragma unroll
    for (int r = 0; r < GDN_STEP_RPW; r++) {
        const int i = warp + r * GDN_STEP_WARPS;
        if (i < K) acc = fmaf(s[r], kn[i], acc);
    }
    part[warp][lane] = acc;
    __syncthreads();
    float u = 0.0f;
#pragma unroll
    for (int w = 0; w < GDN_STEP_WARPS; w++) u += part[w][lane];
    u = live ? bb * (vj - u) : 0.0f;
    acc = 0.0f;
#pragma unroll
    for (int r = 0; r < GDN_STEP_RPW; r++) {
        const int i = warp + r * GDN_STEP_WARPS;
        if (live && i < K) {
            s[r] = fmaf(kn[i], u, s[r]);
            Sc[(int64_t)i * V] = s[r];
            acc = fmaf(qn[i], s[r], acc);
        }
    }
    __syncthreads(); // part[] is read above
    part[warp][lane] = acc;
    __syncthreads();
    if (warp == 0 && live) {
        float out = 0.0f;
#pragma unroll
        for (int w = 0; w < GDN_STEP_WARPS; w++) out += part[w][lane];
        o[bh * V + j] = f2bf(out);
    }
}

// grid (ceil(N / 128)), 128 threads: sequence n's chunks after those of sequences 0 .. n-1 (counted here:
// a packed batch has at most a few thousand documents).
__global__ void gdn_table_kernel(int *tab, int *cst, const int32_t *cu, int N, int64_t T, int C) {
    const int n = blockIdx.x * blockDim.x + threadIdx.x;
    if (n >= N) return;
    int64_t ci = 0;
    for (int m = 0; m < n; m++) ci += ((cu ? cu[m + 1] - cu[m] : T) + C - 1) / C;
    const int64_t row0 = cu ? cu[n] : (int64_t)n * T, len = cu ? cu[n + 1] - cu[n] : T;
    if (cst) cst[n] = (int)ci;
    for (int64_t t = 0; t < len; t += C, ci++) {
        tab[2 * ci] = (int)(row0 + t);
        tab[2 * ci + 1] = (int)(len - t < C ? len - t : C);
    }
    if (cst && n == N - 1) cst[N] = (int)ci;
}

// ----------------------------------------------------------------------------------------------------
// launchers

static void *workspace(size_t need) { return pn_cuda_ws(PN_WS_GDN, need); } // the context's

// The parts of pn_gdn_saved_bytes' layout (kernels/cpu/gdn.h) at base (states false: without the chunk
// states and T, which only the backward reads; NULL there). Returns the bytes they take (base may be NULL
// for that alone: integer offsets, no pointer arithmetic on it).
size_t gdn_saved_at(void *base, int64_t NT, int64_t n_chunks, int64_t H, int64_t K, int64_t V, bool states,
                    gdn_saved *sv) {
    const uintptr_t b = (uintptr_t)base;
    const size_t tile = align256(sizeof(bf16) * (size_t)(n_chunks * H * GDN_C * GDN_C)),
                 bg = align256(sizeof(float) * (size_t)(NT * H));
    size_t o = 0;
    sv->W = (bf16 *)(b + o), o += align256(sizeof(bf16) * (size_t)(NT * H * K));
    sv->Vp = (bf16 *)(b + o), o += align256(sizeof(bf16) * (size_t)(NT * H * V));
    sv->hs = states ? (bf16 *)(b + o) : NULL, o += states ? align256(sizeof(bf16) * (size_t)(n_chunks * H * K * V)) : 0;
    sv->T = states ? (bf16 *)(b + o) : NULL, o += states ? tile : 0;
    sv->P = (bf16 *)(b + o), o += tile;
    sv->gam = (float *)(b + o), sv->rq = (float *)(b + o + bg), sv->rk = (float *)(b + o + 2 * bg);
    sv->rd = (float *)(b + o + 3 * bg);
    return o + 4 * bg;
}

// Whether cfg->saved holds the forward's intermediates for this call (then *sv points into it).
bool gdn_saved_of(const pn_gdn_cfg *cfg, int64_t NT, int64_t n_chunks, gdn_saved *sv) {
    if (!cfg->saved || ((uintptr_t)cfg->saved & 255) ||
        cfg->saved_bytes < pn_gdn_saved_bytes(NT, n_chunks, cfg->H, cfg->K, cfg->V))
        return false;
    gdn_saved_at(cfg->saved, NT, n_chunks, cfg->H, cfg->K, cfg->V, true, sv);
    return true;
}

// The most dynamic shared memory a block of this device may opt into (227 KB on Hopper).
static size_t smem_optin(void) {
    static int bytes = 0;
    if (!bytes) {
        int dev;
        CUDA_CHECK(cudaGetDevice(&dev));
        CUDA_CHECK(cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    }
    return (size_t)bytes;
}

// Raises kern's dynamic shared-memory limit to need (once per size: *allowed remembers the largest set).
template <class F>
static void allow_smem(F kern, size_t need, size_t *allowed) {
    if (need <= *allowed) return;
    CUDA_CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)need));
    *allowed = need;
}


void pn_cuda_gdn_chunk_table(int *tab, int *cst, const int32_t *cu, int N, int64_t T, int C) {
    if (N < 1) return;
    GDN_LAUNCH(gdn_table_kernel, (unsigned)ceil_div64(N, 128), 128, 0, tab, cst, cu, N, T, C);
    CUDA_LAUNCH_CHECK();
}

// Validates cfg like pn_gdn_check, reading cu_seqlens from the device. On success *hcu is a host copy of
// cu_seqlens (NULL without varlen; the caller frees it). Shared with gdn_bwd.cu.
int pn_cuda_gdn_check_cfg(const pn_gdn_cfg *cfg, int32_t **hcu) {
    *hcu = NULL;
    pn_gdn_cfg c = *cfg;
    c.cu_seqlens = NULL;
    if (pn_gdn_check(&c)) return -1;
    if (c.H > 65535) return pn_errorf("gdn (cuda): H = %lld exceeds 65535", (long long)c.H);
    if (!cfg->cu_seqlens) {
        if (c.B > 65535) return pn_errorf("gdn (cuda): B = %lld exceeds 65535", (long long)c.B);
        return 0;
    }
    if (c.B != 1) return pn_errorf("gdn: cu_seqlens needs batch size B = 1, got B = %lld", (long long)c.B);
    if (c.n_seqs < 1 || c.n_seqs > c.T || c.n_seqs > 65535)
        return pn_errorf("gdn (cuda): n_seqs = %lld must be in 1..min(T, 65535) (T = %lld)", (long long)c.n_seqs,
                         (long long)c.T);
    int32_t *h = (int32_t *)pn_malloc(sizeof(int32_t) * (size_t)(c.n_seqs + 1));
    if (cfg->cu_host) // the caller's copy: no round trip
        memcpy(h, cfg->cu_host, sizeof(int32_t) * (size_t)(c.n_seqs + 1));
    else
        CUDA_CHECK(cudaMemcpy(h, cfg->cu_seqlens, sizeof(int32_t) * (size_t)(c.n_seqs + 1), cudaMemcpyDeviceToHost));
    c.cu_seqlens = h;
    if (pn_gdn_check(&c)) {
        free(h);
        return -1;
    }
    *hcu = h;
    return 0;
}

// pn_cuda_gdn_check_cfg for the chunked kernels, which also counts the chunks: N sequences of ceil(T / 64),
// or with cu_seqlens from the host's offsets (the table itself is built on the device), and checks that they
// fit the grids (the backward's widest: chunk × K / 64 tiles). Shared with gdn_bwd.cu.
int pn_cuda_gdn_count_chunks(const pn_gdn_cfg *cfg, int64_t *n_chunks) {
    int32_t *hcu;
    if (pn_cuda_gdn_check_cfg(cfg, &hcu)) return -1;
    const int N = (int)pn_gdn_num_seqs(cfg), nkt = (int)ceil_div64(cfg->K, 64);
    int64_t n = (int64_t)N * ceil_div64(cfg->T, GDN_C);
    if (hcu) {
        n = 0;
        for (int i = 0; i < N; i++) n += ceil_div64(hcu[i + 1] - hcu[i], GDN_C);
    }
    free(hcu);
    if (n * nkt > 0x7fffffff)
        return pn_errorf("gdn (cuda): %lld chunks x %d key tiles exceed the grid", (long long)n, nkt);
    *n_chunks = n;
    return 0;
}

// The forward's two kernels, prep and the state walk, into sv: W [NT, H, K], U [NT, H, V] (V' on return where
// the states are stored), hs [n_chunks, H, K, V], P [n_chunks, H, 64, 64] (bf16), gam, rq, rk, rd [NT, H]
// (fp32), T with keep_T; ht (NULL: not wanted). o NULL: the backward's recompute (the states and V' stored;
// sv->hs set). o set: the output too, the states and V' stored only where sv->hs is set (the forward keeping
// them for the backward). tab, cst: the chunk table and first
// chunks with cu_seqlens, else NULL. ev: NULL, or three events recorded before, between and after the two.
// cfg was checked by the caller. Returns the state kernel's stages.
int pn_cuda_gdn_fwd_states(const pn_gdn_cfg *cfg, int64_t n_chunks, const int *tab, const int *cst, const gdn_saved *sv,
                           bool keep_T, float *ht, const void *q, const void *k, const void *v, const float *g,
                           const float *beta, const float *h0, void *o, cudaEvent_t *ev) {
    const int H = (int)cfg->H, K = (int)cfg->K, V = (int)cfg->V, T = (int)cfg->T;
    const int N = (int)pn_gdn_num_seqs(cfg), ncps = (int)ceil_div64(T, GDN_C), nvs = (int)ceil_div64(V, GDN_BV);
    const bool out = o != NULL;
    const float scale = (float)pn_gdn_scale(cfg);
    // The state kernel instance holding ceil(K / 64) tiles of S in registers. Stages: two (the next chunk's
    // copies overlapping this one's products) where they fit and either the grid fits one wave at the blocks
    // an SM they leave or they leave as many as one stage does; else one (three blocks an SM at K ≤ 128 beat
    // the overlap: 384 walks at B 8, H 12, V 256 fill one wave of 396 slots instead of 1.45 of 264).
    const int mt = (K + 63) / 64;
    static int per_sm = 0, n_sm = 0; // read once, as smem_optin (every layer's call asks)
    if (!per_sm) {
        int dev;
        CUDA_CHECK(cudaGetDevice(&dev));
        CUDA_CHECK(cudaDeviceGetAttribute(&n_sm, cudaDevAttrMultiProcessorCount, dev));
        CUDA_CHECK(cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev));
    }
    int nst = 1;
    if (state_smem_bytes(K, 2, out) <= smem_optin()) {
        const int cap = mt <= 2 ? 3 : 1; // the launch bounds' blocks an SM
        const int b1 = (int)min((size_t)cap, (size_t)per_sm / (state_smem_bytes(K, 1, out) + 1024));
        const int b2 = (int)min((size_t)cap, (size_t)per_sm / (state_smem_bytes(K, 2, out) + 1024));
        if ((int64_t)nvs * H * N <= (int64_t)b2 * n_sm || b2 >= b1) nst = 2;
    }
    typedef void (*state_fn)(bf16 *, bf16 *, float *, bf16 *, const float *, const bf16 *, const bf16 *, const bf16 *,
                             const bf16 *, const float *, const float *, const float *, const int *, const int *, int,
                             int, int, int, int, int, float);
    static const state_fn kern[2][4] = {
        {gdn_state_kernel<1, false>, gdn_state_kernel<2, false>, gdn_state_kernel<3, false>, gdn_state_kernel<4, false>},
        {gdn_state_kernel<1, true>, gdn_state_kernel<2, true>, gdn_state_kernel<3, true>, gdn_state_kernel<4, true>}};
    static size_t prep_attr = 48 * 1024, state_attr[2][4] = {{48 * 1024, 48 * 1024, 48 * 1024, 48 * 1024},
                                                            {48 * 1024, 48 * 1024, 48 * 1024, 48 * 1024}};
    const size_t prep_smem = prep_smem_bytes(K), state_smem = state_smem_bytes(K, nst, out);
    const state_fn state_kernel = kern[out][mt - 1];
    allow_smem(gdn_prep_kernel, prep_smem, &prep_attr);
    allow_smem(state_kernel, state_smem, &state_attr[out][mt - 1]);
    if (ev) CUDA_CHECK(cudaEventRecord(ev[0], pn_cuda_stream()));
    GDN_LAUNCH(gdn_prep_kernel, dim3((unsigned)n_chunks, (unsigned)H), GDN_THREADS, prep_smem, sv->W, sv->Vp, sv->gam,
               sv->rq, sv->rk, sv->rd, keep_T ? sv->T : NULL, sv->P, (const bf16 *)q, (const bf16 *)k,
               (const bf16 *)v, g, beta, tab, T, ncps, H, K, V, cfg->qk_l2norm ? 1 : 0, scale);
    CUDA_LAUNCH_CHECK();
    if (ev) CUDA_CHECK(cudaEventRecord(ev[1], pn_cuda_stream()));
    GDN_LAUNCH(state_kernel, dim3((unsigned)nvs, (unsigned)H, (unsigned)N), GDN_THREADS, state_smem, sv->hs, sv->Vp,
               ht, (bf16 *)o, h0, (const bf16 *)sv->W, (const bf16 *)k, (const bf16 *)q, (const bf16 *)sv->P,
               (const float *)sv->gam, (const float *)sv->rd, (const float *)sv->rq, (const int *)cfg->cu_seqlens,
               cst, T, H, K, V, nst, sv->hs != NULL, scale);
    CUDA_LAUNCH_CHECK();
    if (ev) CUDA_CHECK(cudaEventRecord(ev[2], pn_cuda_stream()));
    return nst;
}

extern "C" int pn_cuda_gdn_fwd(const pn_gdn_cfg *cfg, void *o, float *ht, const void *q, const void *k,
                               const void *v, const float *g, const float *beta, const float *h0) {
    const int H = (int)cfg->H, K = (int)cfg->K, V = (int)cfg->V;
    const int N = (int)pn_gdn_num_seqs(cfg);
    const int64_t NT = cfg->B * cfg->T; // flattened token rows

    // Chunks: uniform (N sequences of ceil(T / 64)) or, with cu_seqlens, a table of (first row, length).
    int64_t n_chunks;
    if (pn_cuda_gdn_count_chunks(cfg, &n_chunks)) return -1;

    // W [NT, H, K], U [NT, H, V], P [n_chunks, H, 64, 64] (bf16), γ, 1/‖q‖, 1/‖k‖, rd [NT, H] (fp32), and for
    // the backward V' (over U), the per-chunk states [n_chunks, H, K, V] and T: in the caller's cfg->saved
    // where it holds them, else in the workspace without the states and T (nothing reads them); with
    // cu_seqlens the chunk table [n_chunks, 2] and first chunks [N + 1] (int) in the workspace.
    gdn_saved sv;
    const bool keep = gdn_saved_of(cfg, NT, n_chunks, &sv);
    const size_t bs = keep ? 0 : gdn_saved_at(NULL, NT, n_chunks, H, K, V, false, &sv),
                 bt = cfg->cu_seqlens ? align256(sizeof(int) * (size_t)(2 * n_chunks + N + 1)) : 0;
    char *w = (char *)workspace(bs + bt);
    if (!keep) gdn_saved_at(w, NT, n_chunks, H, K, V, false, &sv);
    int *tab = NULL, *cst = NULL;
    if (cfg->cu_seqlens) {
        tab = (int *)(w + bs);
        cst = tab + 2 * n_chunks;
        pn_cuda_gdn_chunk_table(tab, cst, cfg->cu_seqlens, N, cfg->T, GDN_C);
    }

    // PN_GDN_PROFILE=1: time the two kernels (events between launches) and log the split.
    static int profile = -1;
    if (profile < 0) profile = getenv("PN_GDN_PROFILE") && getenv("PN_GDN_PROFILE")[0] == '1';
    cudaEvent_t ev[3];
    if (profile)
        for (int i = 0; i < 3; i++) CUDA_CHECK(cudaEventCreate(&ev[i]));
    const int nst =
        pn_cuda_gdn_fwd_states(cfg, n_chunks, tab, cst, &sv, keep, ht, q, k, v, g, beta, h0, o, profile ? ev : NULL);
    if (profile) {
        float ms[2];
        CUDA_CHECK(cudaEventSynchronize(ev[2]));
        for (int i = 0; i < 2; i++) CUDA_CHECK(cudaEventElapsedTime(&ms[i], ev[i], ev[i + 1]));
        pn_info("gdn fwd (cuda) B %lld T %lld H %d K %d V %d: prep %.2f ms, state + out %.2f ms (%d stage%s%s)",
                (long long)cfg->B, (long long)cfg->T, H, K, V, ms[0], ms[1], nst, nst > 1 ? "s" : "",
                keep ? ", states kept" : "");
        for (int i = 0; i < 3; i++) CUDA_CHECK(cudaEventDestroy(ev[i]));
    }
    return 0;
}

extern "C" int pn_cuda_gdn_step(const pn_gdn_cfg *cfg, void *o, float *S, const void *q, const void *k,
                                const void *v, const float *g, const float *beta) {
    if (cfg->T != 1 || cfg->cu_seqlens)
        return pn_errorf("gdn: the decode step takes exactly one token per sequence (T = %lld%s)", (long long)cfg->T,
                         cfg->cu_seqlens ? ", cu_seqlens given" : "");
    int32_t *hcu;
    if (pn_cuda_gdn_check_cfg(cfg, &hcu)) return -1;
    const int H = (int)cfg->H, K = (int)cfg->K, V = (int)cfg->V, B = (int)cfg->B;
    GDN_LAUNCH_PDL(gdn_step_kernel, dim3((unsigned)ceil_div64(V, 32), (unsigned)H, (unsigned)B),
               GDN_STEP_THREADS, 0, (bf16 *)o, S, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, g, beta, H, K, V,
               (float)pn_gdn_scale(cfg), cfg->qk_l2norm ? 1 : 0);
    CUDA_LAUNCH_CHECK();
    return 0;
}
