// gdn_bwd.cu: Gated DeltaNet backward on the GPU, exactly pn_cpu_gdn_bwd_f32 (kernels/cpu/gdn.c, whose
// comments derive every step; REFERENCE.md §4). Per (sequence, head) and chunk of Lc ≤ 64 rows, γ the
// inclusive cumsum of g in the chunk, Γ_rs = e^{γ_r − γ_s} (s ≤ r), S the state entering the chunk:
//   A = strict_lower(diag(β) K Kᵀ ⊙ Γ), T = (I + A)⁻¹, W = T diag(β e^γ) K, U = T diag(β) V, V' = U − W S,
//   O = diag(scale e^γ) Q S + P V', P = lower_incl(scale Q Kᵀ ⊙ Γ), S' = e^{γ_L} S + Kᵀ diag(e^{γ_L−γ}) V'.
//
// The decisions a reader would otherwise miss:
// - No atomics; the products are the 64×64 tiles of gdn_tile.cuh (mm64: tf32 tensor cores, fp32
//   accumulators), fed from shared memory; operands of long contractions (over V or K) are staged
//   from the fp32 global workspace in 64-wide slabs (mm64_staged, each thread's loads in flight at once).
//   The sequential kernels copy their per-chunk rows in by cp.async (gb_load_rows): a load loop that stored
//   each value before reading the next waited out every round trip (states 2.26 → 1.33 ms, dstate 6.84 →
//   4.78 ms, chunk 15.4 → 13.5 ms at the anchor shape on an H100).
// - Four kernels, in the order of the CPU code:
//   1. gdn_bwd_prep_kernel, grid (chunk, head): q̂, k̂ (L2-normalized when asked) and their 1/‖x‖, γ (double),
//      T (forward substitution, tri_inv64), P, W and U, all written per token row.
//   2. gdn_bwd_states_kernel, grid (V / 64, head, sequence): the columns of the recurrence are independent,
//      so a block keeps a 64-column slice of the state in shared memory and walks the chunks forward,
//      storing the entering state S_c of every chunk (workspace [chunk, H, K, V]) and V' = U − W S_c in
//      place of U.
//   3. gdn_bwd_dstate_kernel, same grid, chunks in reverse: dS'_c (the gradient of the state leaving chunk
//      c; dht for the last) is stored per chunk, dV' = diag(e^{γ_L−γ}) K dS' + Pᵀ dO per row, and
//      dS_c = e^{γ_L} dS' + (diag(scale e^γ) Q̂)ᵀ dO − Wᵀ dV' becomes dS'_{c−1} (or dh0). Both only involve
//      the block's columns, so no reduction across blocks.
//   4. gdn_bwd_chunk_kernel, grid (chunk, head): everything else of the CPU's chunk_bwd from S_c, dS'_c, V'
//      and dV' (the whole V inside the block, so sums over V need no second pass): dq, dk, dv, dβ, dγ; then
//      the reverse cumsum of dγ into dg (double) and the L2-norm backward; dq, dk, dv rounded to bf16 once.
// - dγ is accumulated in double (terms in fp32, as the CPU does), each term computed by the thread that owns
//   a row, then summed by one thread in a fixed order: deterministic and race-free.
// - Only exponents ≤ 0 are evaluated (Γ masked before expf), γ summed in double as on the CPU.
// - Workspace at the anchor shape (B 8, T 4096, H 12, K 96, V 256): ~3.7 GB (two [chunk, H, K, V] state
//   arrays of 604 MB each, the rest per token row); the backend context's PN_WS_GDN_BWD, grown on demand.
// - GDN_LAUNCH is <<<>>> on CUDA; under PN_GDN_HOST_CHECK the file compiles as plain C++ for a host
//   harness that runs every block with real threads (the one gdn.cu was first checked with).
#include <math.h>
#include <stdlib.h>

#ifndef PN_GDN_HOST_CHECK
#include "common.cuh"
#include "mma.cuh"
#define GDN_LAUNCH(kern, grid, block, smem, ...) kern<<<(grid), (block), (smem), pn_cuda_stream()>>>(__VA_ARGS__)
#endif
#include "gdn_bwd_cuda.h"
#include "gdn_cuda.h"
#include "gdn_tile.cuh"

#define GB_C 64         // chunk length (PN_GDN_CHUNK)
#define GB_P TILE_P     // pitch of the [64, 64] shared matrices (gdn_tile.cuh)
#define GB_THREADS 256  // prep and chunk kernels

#ifndef PN_GDN_HOST_CHECK
__device__ __forceinline__ float *gb_smem(void) {
    extern __shared__ float gdn_bwd_smem[];
    return gdn_bwd_smem;
}
#else
#define gb_smem dyn_smem
#endif

// KK = K̂ K̂ᵀ, A = strict_lower(diag(β) KK ⊙ Γ) (in A), T = (I + A)⁻¹ (in Ts); all [64, GB_P], zero past Lc.
// kn holds the chunk's normalized k rows at rows ((t0 + r) H + h); sa, sb are [64, GB_P] staging slabs.
// Ends with a barrier.
__device__ void gb_build_T(float *KK, float *A, float *Ts, const float *kn, int64_t t0, int Lc, int H, int h, int K,
                           const float *bs, const double *gs, float *sa, float *sb) {
    float acc[4][4];
    zero_acc(acc);
    mm64_staged<true>(acc, K, [&](int r, int i) { return r < Lc ? kn[((t0 + r) * H + h) * (int64_t)K + i] : 0.0f; },
                      [&](int i, int c) { return c < Lc ? kn[((t0 + c) * H + h) * (int64_t)K + i] : 0.0f; }, sa, sb);
#pragma unroll
    for (int ii = 0; ii < 4; ii++)
#pragma unroll
        for (int jj = 0; jj < 4; jj++) {
            const int r = tile_r(ii), c = tile_c(jj);
            KK[r * GB_P + c] = acc[ii][jj]; // rows / columns past Lc are zero (the operands are)
            A[r * GB_P + c] = (c < r && r < Lc) ? bs[r] * acc[ii][jj] * expf((float)(gs[r] - gs[c])) : 0.0f;
        }
    __syncthreads();
    tri_inv64(Ts, A, Lc);
    __syncthreads();
}

// grid (n_chunks, H), GB_THREADS. Chunk c is rows tab[2c] .. tab[2c] + tab[2c + 1] − 1.
__global__ void __launch_bounds__(GB_THREADS, 2)
    gdn_bwd_prep_kernel(float *qn, float *kn, float *rq, float *rk, double *gam, float *P, float *W, float *U,
                        const bf16 *q, const bf16 *k, const bf16 *v, const float *g, const float *beta, const int *tab,
                        int H, int K, int V, float scale, int l2norm) {
    const int c = blockIdx.x, h = blockIdx.y, tid = threadIdx.x;
    const int64_t t0 = tab[2 * c];
    const int Lc = tab[2 * c + 1];
    double *gs = (double *)gb_smem();
    float *bs = (float *)(gs + GB_C);
    float *KK = bs + GB_C, *A = KK + GB_C * GB_P, *Ts = A + GB_C * GB_P;
    float *sa = Ts + GB_C * GB_P, *sb = sa + GB_C * GB_P; // staging slabs

    // q̂, k̂ rows: a warp per row (q rows, then k rows), the row in registers (K ≤ 256: 8 values a lane).
    for (int x = tid >> 5; x < 2 * Lc; x += GB_THREADS / 32) {
        const int which = x >= Lc, r = which ? x - Lc : x, lane = tid & 31;
        const int64_t row = (t0 + r) * H + h, off = row * (int64_t)K;
        const bf16 *src = (which ? k : q) + off;
        float *dst = (which ? kn : qn) + off;
        float xv[PN_GDN_MAX_K / 32], ss = 0.0f;
#pragma unroll
        for (int u = 0; u < PN_GDN_MAX_K / 32; u++) {
            const int c = lane + 32 * u;
            xv[u] = c < K ? bf2f(src[c]) : 0.0f;
            ss = fmaf(xv[u], xv[u], ss);
        }
        const float ri = l2norm ? 1.0f / sqrtf(warp_sum(ss) + (float)PN_GDN_L2_EPS) : 1.0f;
#pragma unroll
        for (int u = 0; u < PN_GDN_MAX_K / 32; u++)
            if (lane + 32 * u < K) dst[lane + 32 * u] = xv[u] * ri;
        if (lane == 0) (which ? rk : rq)[row] = ri;
    }
    if (tid == 0) {
        double acc = 0.0;
        for (int r = 0; r < GB_C; r++) {
            if (r < Lc) {
                acc += (double)g[(t0 + r) * H + h];
                gam[(t0 + r) * H + h] = acc;
            }
            gs[r] = acc;
        }
    }
    if (tid < GB_C) bs[tid] = tid < Lc ? beta[(t0 + tid) * H + h] : 0.0f;
    __syncthreads(); // qn, kn (global) and gs, bs visible to the block

    gb_build_T(KK, A, Ts, kn, t0, Lc, H, h, K, bs, gs, sa, sb);

    // P = lower_incl(scale Q̂ K̂ᵀ) ⊙ Γ, a [64] row per token (zeros past r).
    {
            float acc[4][4];
        zero_acc(acc);
        mm64_staged<true>(acc, K, [&](int r, int i) { return r < Lc ? qn[((t0 + r) * H + h) * (int64_t)K + i] : 0.0f; },
                          [&](int i, int c) { return c < Lc ? kn[((t0 + c) * H + h) * (int64_t)K + i] : 0.0f; }, sa, sb);
#pragma unroll
        for (int ii = 0; ii < 4; ii++)
#pragma unroll
            for (int jj = 0; jj < 4; jj++) {
                const int r = tile_r(ii), c = tile_c(jj);
                if (r < Lc)
                    P[((t0 + r) * H + h) * (int64_t)GB_C + c] =
                        c <= r ? scale * acc[ii][jj] * expf((float)(gs[r] - gs[c])) : 0.0f;
            }
    }
    // W = T diag(β e^γ) K̂, U = T diag(β) V (T is zero above the diagonal and past Lc).
    for (int i0 = 0; i0 < K; i0 += 64) {
        float acc[4][4];
        zero_acc(acc);
        mm64_staged<false>(acc, Lc, [&](int r, int s) { return Ts[r * GB_P + s]; },
                           [&](int s, int c) {
                               return i0 + c < K ? bs[s] * expf((float)gs[s]) * kn[((t0 + s) * H + h) * (int64_t)K + i0 + c]
                                                 : 0.0f;
                           },
                           sa, sb);
#pragma unroll
        for (int ii = 0; ii < 4; ii++)
#pragma unroll
            for (int jj = 0; jj < 4; jj++) {
                const int r = tile_r(ii), c = tile_c(jj);
                if (r < Lc && i0 + c < K) W[((t0 + r) * H + h) * (int64_t)K + i0 + c] = acc[ii][jj];
            }
    }
    for (int j0 = 0; j0 < V; j0 += 64) {
        float acc[4][4];
        zero_acc(acc);
        mm64_staged<false>(acc, Lc, [&](int r, int s) { return Ts[r * GB_P + s]; },
                           [&](int s, int c) {
                               return j0 + c < V ? bs[s] * bf2f(v[((t0 + s) * H + h) * (int64_t)V + j0 + c]) : 0.0f;
                           },
                           sa, sb);
#pragma unroll
        for (int ii = 0; ii < 4; ii++)
#pragma unroll
            for (int jj = 0; jj < 4; jj++) {
                const int r = tile_r(ii), c = tile_c(jj);
                if (r < Lc && j0 + c < V) U[((t0 + r) * H + h) * (int64_t)V + j0 + c] = acc[ii][jj];
            }
    }
}

// Rows r < 64 of an fp32 tile into shared memory dst (pitch dp, a multiple of 4): columns < ncols of global
// rows r < nvalid (row r at src + r ld), zeros elsewhere up to column wfill. 16-byte cp.async copies when
// async (ncols % 4 == 0, rows 16-byte aligned; they land after cp_async_wait), else plain loads. All
// threads call it.
__device__ __forceinline__ void gb_load_rows(float *dst, int dp, const float *src, int64_t ld, int nvalid, int ncols,
                                             int wfill, bool async) {
    const int n4 = (wfill + 3) >> 2;
    for (int idx = threadIdx.x; idx < 64 * n4; idx += GB_THREADS) {
        const int r = idx / n4, c = (idx - r * n4) * 4;
        if (async && r < nvalid && c + 4 <= ncols) {
            cp_async16(dst + r * dp + c, src + r * ld + c);
        } else {
#pragma unroll
            for (int e = 0; e < 4; e++) dst[r * dp + c + e] = (r < nvalid && c + e < ncols) ? src[r * ld + c + e] : 0.0f;
        }
    }
}

// grid (ceil(V / 64), H, N), GB_THREADS: sequence n, head h, state columns v0 .. v0 + 63, held in shared
// memory as S[K, 64] for the whole sequence (the forward's gdn_state_kernel pattern; chunks of sequence n are
// cst[n] .. cst[n + 1] − 1). Per chunk c: states[c] ← S (the entering state), V' = U − W S (written over U),
// S ← e^{γ_L} S + K̂ᵀ diag(e^{γ_L − γ}) V'.
__global__ void __launch_bounds__(GB_THREADS)
    gdn_bwd_states_kernel(float *states, float *U, const float *h0, const float *kn, const float *W, const double *gam,
                          const int *tab, const int *cst, int H, int K, int V) {
    const int v0 = blockIdx.x * 64, h = blockIdx.y, n = blockIdx.z, tid = threadIdx.x;
    const int BVa = min(64, V - v0), Kp = pitch_k(K);
    const int64_t KV = (int64_t)K * V;
    const int c0 = cst[n], c1 = cst[n + 1];
    float *Ss = gb_smem();         // [K, TILE_SP]
    float *buf = Ss + K * TILE_SP; // [64, Kp]: W rows, then K̂ rows (the update scales them by ed as it reads)
    float *Vs = buf + 64 * Kp;     // [64, TILE_SP]: V'
    float *ed = Vs + 64 * TILE_SP; // [64]
    const bool ak = (K & 3) == 0, av = (V & 3) == 0; // 16-byte rows (the workspace arrays are aligned)
    for (int i = tid; i < K * 64; i += GB_THREADS) {
        const int r = i >> 6, cc = i & 63;
        Ss[r * TILE_SP + cc] = (h0 && cc < BVa) ? h0[((int64_t)n * H + h) * KV + (int64_t)r * V + v0 + cc] : 0.0f;
    }
    for (int c = c0; c < c1; c++) {
        const int64_t t0 = tab[2 * c];
        const int Lc = tab[2 * c + 1];
        __syncthreads(); // S complete; buf, Vs, ed free
        float *Sc = states + ((int64_t)c * H + h) * KV + v0;
        // this chunk's W rows and U slice, copied in at once (cp.async where rows are 16-byte aligned)
        gb_load_rows(buf, Kp, W + ((t0 * H + h) * (int64_t)K), (int64_t)H * K, Lc, K, K, ak);
        gb_load_rows(Vs, TILE_SP, U + ((t0 * H + h) * (int64_t)V + v0), (int64_t)H * V, Lc, BVa, 64, av);
        cp_async_commit();
        for (int i = tid; i < K * 64; i += GB_THREADS) {
            const int r = i >> 6, cc = i & 63;
            if (cc < BVa) Sc[(int64_t)r * V + cc] = Ss[r * TILE_SP + cc];
        }
        const double gL = gam[(t0 + Lc - 1) * H + h];
        if (tid < 64) ed[tid] = tid < Lc ? expf((float)(gL - gam[(t0 + tid) * H + h])) : 0.0f;
        cp_async_wait<0>();
        __syncthreads();
        { // V' = U − W S
            float acc[4][4];
            zero_acc(acc);
            mm64(acc, K, [&](int m, int kk) { return buf[m * Kp + kk]; }, [&](int kk, int cc) { return Ss[kk * TILE_SP + cc]; });
#pragma unroll
            for (int ii = 0; ii < 4; ii++)
#pragma unroll
                for (int jj = 0; jj < 4; jj++) Vs[tile_r(ii) * TILE_SP + tile_c(jj)] -= acc[ii][jj];
        }
        __syncthreads(); // Vs complete, buf (W) consumed
        for (int i = tid; i < 64 * 64; i += GB_THREADS) {
            const int r = i >> 6, cc = i & 63;
            if (r < Lc && cc < BVa) U[((t0 + r) * H + h) * (int64_t)V + v0 + cc] = Vs[r * TILE_SP + cc];
        }
        if (c == c1 - 1) break; // the state leaving the last chunk is not needed
        gb_load_rows(buf, Kp, kn + ((t0 * H + h) * (int64_t)K), (int64_t)H * K, Lc, K, K, ak); // (buf: W consumed)
        cp_async_commit();
        cp_async_wait<0>();
        __syncthreads();
        const float eL = expf((float)gL);
        for (int i0 = 0; i0 < K; i0 += 64) { // S rows i0 .. i0 + 63: each thread updates the elements it owns
            float acc[4][4];
            zero_acc(acc);
            mm64(acc, Lc, [&](int m, int kk) { return i0 + m < K ? ed[kk] * buf[kk * Kp + i0 + m] : 0.0f; },
                 [&](int kk, int cc) { return Vs[kk * TILE_SP + cc]; });
#pragma unroll
            for (int ii = 0; ii < 4; ii++)
#pragma unroll
                for (int jj = 0; jj < 4; jj++) {
                    const int i = i0 + tile_r(ii), cc = tile_c(jj);
                    if (i < K) Ss[i * TILE_SP + cc] = eL * Ss[i * TILE_SP + cc] + acc[ii][jj];
                }
        }
    }
}

// Same grid: the gradient of the state slice dS[K, 64] in shared memory, chunks in reverse. Per chunk c:
// dSo[c] ← dS (= dS'_c, the gradient of the state leaving c; dht for the last), dV' = diag(e^{γ_L−γ}) K̂ dS'
// + Pᵀ dO (to dvp), dS ← e^{γ_L} dS' + (diag(scale e^γ) Q̂)ᵀ dO − Wᵀ dV' (into dh0 after the first chunk).
// K̂, Q̂, W are staged in 64-column slabs (sa, sb), so shared memory stays ~163 KB at K = 256.
__global__ void __launch_bounds__(GB_THREADS)
    gdn_bwd_dstate_kernel(float *dSo, float *dvp, float *dh0, const float *dht, const bf16 *dout, const float *qn,
                          const float *kn, const float *W, const float *P, const double *gam, const int *tab,
                          const int *cst, int H, int K, int V, float scale) {
    const int v0 = blockIdx.x * 64, h = blockIdx.y, n = blockIdx.z, tid = threadIdx.x;
    const int BVa = min(64, V - v0);
    const int64_t KV = (int64_t)K * V;
    const int c0 = cst[n], c1 = cst[n + 1];
    float *dS = gb_smem();         // [K, TILE_SP]
    float *sa = dS + K * TILE_SP;  // [64, GB_P] slabs
    float *sb = sa + 64 * GB_P;    // [64, GB_P]
    float *Os = sb + 64 * GB_P;    // [64, TILE_SP]: dO
    float *Vs = Os + 64 * TILE_SP; // [64, TILE_SP]: dV'
    float *Ps = Vs + 64 * TILE_SP; // [64, GB_P]: P
    float *ed = Ps + 64 * GB_P, *eq = ed + 64;
    const bool ak = (K & 3) == 0; // 16-byte rows of qn, kn, W (the workspace arrays are aligned)
    for (int i = tid; i < K * 64; i += GB_THREADS) {
        const int r = i >> 6, cc = i & 63;
        dS[r * TILE_SP + cc] = (dht && cc < BVa) ? dht[((int64_t)n * H + h) * KV + (int64_t)r * V + v0 + cc] : 0.0f;
    }
    for (int c = c1 - 1; c >= c0; c--) {
        const int64_t t0 = tab[2 * c];
        const int Lc = tab[2 * c + 1];
        const double gL = gam[(t0 + Lc - 1) * H + h];
        __syncthreads(); // dS complete; everything else free
        float *dSc = dSo + ((int64_t)c * H + h) * KV + v0;
        for (int i = tid; i < K * 64; i += GB_THREADS) {
            const int r = i >> 6, cc = i & 63;
            if (cc < BVa) dSc[(int64_t)r * V + cc] = dS[r * TILE_SP + cc];
        }
        if (tid < 64) {
            const double gr = tid < Lc ? gam[(t0 + tid) * H + h] : gL;
            ed[tid] = tid < Lc ? expf((float)(gL - gr)) : 0.0f;
            eq[tid] = tid < Lc ? scale * expf((float)gr) : 0.0f;
        }
        gb_load_rows(Ps, GB_P, P + (t0 * H + h) * (int64_t)GB_C, (int64_t)H * GB_C, Lc, GB_C, GB_C, true);
        cp_async_commit();
        { // dO: 16 values a thread, all loads in flight before the first store
            float ov[16];
#pragma unroll
            for (int u = 0; u < 16; u++) {
                const int i = tid + GB_THREADS * u, r = i >> 6, cc = i & 63;
                ov[u] = (r < Lc && cc < BVa) ? bf2f(dout[((t0 + r) * H + h) * (int64_t)V + v0 + cc]) : 0.0f;
            }
#pragma unroll
            for (int u = 0; u < 16; u++) {
                const int i = tid + GB_THREADS * u;
                Os[(i >> 6) * TILE_SP + (i & 63)] = ov[u];
            }
        }
        // dV' = diag(e^{γ_L−γ}) K̂ dS' + Pᵀ dO, K̂ staged 64 columns at a time
        float acc[4][4];
        zero_acc(acc);
        for (int i0 = 0; i0 < K; i0 += 64) {
            const int nk = min(64, K - i0);
            __syncthreads(); // ed ready; the previous slab consumed
            gb_load_rows(sa, GB_P, kn + (t0 * H + h) * (int64_t)K + i0, (int64_t)H * K, Lc, nk, 64, ak);
            cp_async_commit();
            cp_async_wait<0>();
            __syncthreads();
            mm64(acc, nk, [&](int m, int kk) { return ed[m] * sa[m * GB_P + kk]; },
                 [&](int kk, int cc) { return dS[(i0 + kk) * TILE_SP + cc]; });
        }
        mm64(acc, Lc, [&](int m, int kk) { return Ps[kk * GB_P + m]; }, [&](int kk, int cc) { return Os[kk * TILE_SP + cc]; });
#pragma unroll
        for (int ii = 0; ii < 4; ii++)
#pragma unroll
            for (int jj = 0; jj < 4; jj++) {
                const int r = tile_r(ii), cc = tile_c(jj);
                const float val = r < Lc ? acc[ii][jj] : 0.0f;
                Vs[r * TILE_SP + cc] = val;
                if (r < Lc && cc < BVa) dvp[((t0 + r) * H + h) * (int64_t)V + v0 + cc] = val;
            }
        if (c == c0 && !dh0) break; // dS_0 is not wanted
        // dS = e^{γ_L} dS' + (diag(scale e^γ) Q̂)ᵀ dO − Wᵀ dV', rows i0 .. i0 + 63 at a time
        const float eL = expf((float)gL);
        for (int i0 = 0; i0 < K; i0 += 64) {
            const int nk = min(64, K - i0);
            __syncthreads(); // Vs complete; sa, sb consumed (also by the dV' product)
            gb_load_rows(sa, GB_P, qn + (t0 * H + h) * (int64_t)K + i0, (int64_t)H * K, Lc, nk, 64, ak);
            gb_load_rows(sb, GB_P, W + (t0 * H + h) * (int64_t)K + i0, (int64_t)H * K, Lc, nk, 64, ak);
            cp_async_commit();
            cp_async_wait<0>();
            __syncthreads();
            float ad[4][4];
            zero_acc(ad);
            mm64(ad, Lc, [&](int m, int kk) { return eq[kk] * sa[kk * GB_P + m]; }, [&](int kk, int cc) { return Os[kk * TILE_SP + cc]; });
            mm64(ad, Lc, [&](int m, int kk) { return -sb[kk * GB_P + m]; }, [&](int kk, int cc) { return Vs[kk * TILE_SP + cc]; });
#pragma unroll
            for (int ii = 0; ii < 4; ii++)
#pragma unroll
                for (int jj = 0; jj < 4; jj++) {
                    const int i = i0 + tile_r(ii), cc = tile_c(jj);
                    if (i < K) dS[i * TILE_SP + cc] = eL * dS[i * TILE_SP + cc] + ad[ii][jj];
                }
        }
    }
    if (dh0) {
        __syncthreads();
        for (int i = tid; i < K * 64; i += GB_THREADS) {
            const int r = i >> 6, cc = i & 63;
            if (cc < BVa) dh0[((int64_t)n * H + h) * KV + (int64_t)r * V + v0 + cc] = dS[r * TILE_SP + cc];
        }
    }
}

// For each row r < rows: fin(r, Σ_{i<n1} t1(r, i), Σ_{i<n2} t2(r, i)), a warp per row (lanes take every 32nd
// term, coalesced along a row in global memory), then warp reductions; fin runs on lane 0. The per-row dot
// products of gdn_bwd_chunk_kernel (one thread walking a whole row was a chain of dependent strided loads).
template <class F1, class F2, class FIN>
__device__ __forceinline__ void gb_rows_dot2(int rows, int n1, F1 t1, int n2, F2 t2, FIN fin) {
    const int lane = threadIdx.x & 31;
    for (int r = threadIdx.x >> 5; r < rows; r += GB_THREADS / 32) {
        float a = 0.0f, b = 0.0f;
        for (int i = lane; i < n1; i += 32) a += t1(r, i);
        for (int i = lane; i < n2; i += 32) b += t2(r, i);
        a = warp_sum(a);
        b = warp_sum(b);
        if (lane == 0) fin(r, a, b);
    }
}

// grid (n_chunks, H), GB_THREADS: the rest of the CPU's chunk_bwd for one chunk, then its outputs.
// dqw, dkw, dw, tk [rows, K] and tv [rows, V] are fp32 scratch rows of this chunk.
__global__ void __launch_bounds__(GB_THREADS, 2) // two blocks an SM (shared memory allows it): registers ≤ 128
    gdn_bwd_chunk_kernel(bf16 *dq, bf16 *dk, bf16 *dv, float *dg, float *dbeta, float *dqw, float *dkw, float *dw,
                         float *tk, float *tv, const float *states, const float *dSo, const float *Vp, const float *dvp,
                         const float *qn, const float *kn, const float *rq, const float *rk, const double *gam,
                         const float *P, const bf16 *v, const bf16 *dout, const float *beta, const int *tab, int H,
                         int K, int V, float scale, int l2norm) {
    const int c = blockIdx.x, h = blockIdx.y, tid = threadIdx.x;
    const int64_t t0 = tab[2 * c];
    const int Lc = tab[2 * c + 1], L = Lc - 1;
    const int64_t KV = (int64_t)K * V;
    const float *S = states + ((int64_t)c * H + h) * KV, *dSp = dSo + ((int64_t)c * H + h) * KV;
    double *gs = (double *)gb_smem(), *dgam = gs + GB_C;
    float *bs = (float *)(dgam + GB_C), *ta = bs + GB_C, *tb = ta + GB_C, *tc = tb + GB_C, *dbs = tc + GB_C;
    float *red = dbs + GB_C; // [GB_THREADS]
    float *KK = red + GB_THREADS, *Ts = KK + GB_C * GB_P, *dP = Ts + GB_C * GB_P, *X = dP + GB_C * GB_P;
    float *SA = X + GB_C * GB_P, *SB = SA + GB_C * GB_P; // staging slabs of mm64_staged
// The 64×64 tile of mm64 at rows tile_r(i), columns tile_c(j): body(r, c, value) for each element.
#define TILE_FOR(acc, body)                                  \
    for (int ii = 0; ii < 4; ii++)                           \
        for (int jj = 0; jj < 4; jj++) {                     \
            const int r = tile_r(ii), c = tile_c(jj);    \
            const float val = acc[ii][jj];                   \
            body;                                            \
        }
#define RK(r) (((t0 + (r)) * H + h) * (int64_t)K)
#define RV(r) (((t0 + (r)) * H + h) * (int64_t)V)
#define RP(r) (((t0 + (r)) * H + h) * (int64_t)GB_C)
#define GAM(r, s) expf((float)(gs[r] - gs[s]))
#define NO_TERM [](int, int) { return 0.0f; }

    if (tid < GB_C) {
        gs[tid] = tid < Lc ? gam[(t0 + tid) * H + h] : gam[(t0 + L) * H + h];
        bs[tid] = tid < Lc ? beta[(t0 + tid) * H + h] : 0.0f;
        dgam[tid] = 0.0;
        dbs[tid] = 0.0f;
    }
    __syncthreads();
    gb_build_T(KK, X, Ts, kn, t0, Lc, H, h, K, bs, gs, SA, SB); // X holds A until step (4)
    const double gL = gs[L];
    const float eL = expf((float)gL);

    // (1) dK = diag(e^{γ_L−γ}) V' dS'ᵀ (64 columns of K at a time); a_r = k̂_r·dK_r; e^{γ_L}⟨S, dS'⟩.
    for (int i0 = 0; i0 < K; i0 += 64) {
        float acc[4][4];
        zero_acc(acc);
        mm64_staged<true>(acc, V, [&](int r, int j) { return r < Lc ? Vp[RV(r) + j] : 0.0f; },
                          [&](int j, int c) { return i0 + c < K ? dSp[(int64_t)(i0 + c) * V + j] : 0.0f; }, SA, SB);
        TILE_FOR(acc, if (r < Lc && i0 + c < K) dkw[RK(r) + i0 + c] = val * expf((float)(gL - gs[r])));
    }
    {
        float part = 0.0f;
        for (int64_t idx = tid; idx < KV; idx += GB_THREADS) part = fmaf(S[idx], dSp[idx], part);
        red[tid] = part;
    }
    __syncthreads();
    gb_rows_dot2(Lc, K, [&](int r, int i) { return kn[RK(r) + i] * dkw[RK(r) + i]; }, 0, NO_TERM,
                 [&](int r, float a, float) { ta[r] = a; });
    __syncthreads();
    if (tid == 0) {
        double sd = 0.0;
        for (int t = 0; t < GB_THREADS; t++) sd += (double)red[t];
        dgam[L] += (double)(eL * (float)sd);
        for (int r = 0; r < Lc; r++) dgam[L] += (double)ta[r], dgam[r] -= (double)ta[r];
    }

    // (2) dQ = diag(scale e^γ) dO Sᵀ; dP = dO V'ᵀ (s ≤ r).
    for (int i0 = 0; i0 < K; i0 += 64) {
        float acc[4][4];
        zero_acc(acc);
        mm64_staged<true>(acc, V, [&](int r, int j) { return r < Lc ? bf2f(dout[RV(r) + j]) : 0.0f; },
                          [&](int j, int c) { return i0 + c < K ? S[(int64_t)(i0 + c) * V + j] : 0.0f; }, SA, SB);
        TILE_FOR(acc, if (r < Lc && i0 + c < K) dqw[RK(r) + i0 + c] = val * (scale * expf((float)gs[r])));
    }
    {
        float acc[4][4];
        zero_acc(acc);
        mm64_staged<true>(acc, V, [&](int r, int j) { return r < Lc ? bf2f(dout[RV(r) + j]) : 0.0f; },
                          [&](int j, int c) { return c < Lc ? Vp[RV(c) + j] : 0.0f; }, SA, SB);
        TILE_FOR(acc, dP[r * GB_P + c] = (r < Lc && c <= r) ? val : 0.0f);
    }
    __syncthreads();
    // q̂_r·dQ_r, the row sums and the column sums of E = dP ⊙ P (both zero above the diagonal)
    gb_rows_dot2(Lc, K, [&](int r, int i) { return qn[RK(r) + i] * dqw[RK(r) + i]; }, Lc,
                 [&](int r, int s) { return dP[r * GB_P + s] * P[RP(r) + s]; },
                 [&](int r, float a, float e) { ta[r] = a, tb[r] = e; });
    gb_rows_dot2(Lc, Lc, [&](int s, int r) { return dP[r * GB_P + s] * P[RP(r) + s]; }, 0, NO_TERM,
                 [&](int s, float e, float) { tc[s] = e; });
    __syncthreads();
    if (tid == 0)
        for (int r = 0; r < Lc; r++) dgam[r] += (double)ta[r] + (double)tb[r] - (double)tc[r];
    for (int idx = tid; idx < GB_C * GB_C; idx += GB_THREADS) {
        const int r = idx >> 6, s = idx & 63;
        if (r < Lc && s <= r) dP[r * GB_P + s] *= scale * GAM(r, s);
    }
    __syncthreads();
    // dQ += (dP ⊙ scale Γ) K̂, dK += (dP ⊙ scale Γ)ᵀ Q̂ (dP is zero above the diagonal and past Lc)
    for (int i0 = 0; i0 < K; i0 += 64) {
        float aq[4][4], ak[4][4];
        zero_acc(aq);
        zero_acc(ak);
        mm64_staged<false>(aq, Lc, [&](int r, int s) { return dP[r * GB_P + s]; },
                           [&](int s, int c) { return i0 + c < K ? kn[RK(s) + i0 + c] : 0.0f; }, SA, SB);
        mm64_staged<false>(ak, Lc, [&](int r, int s) { return dP[s * GB_P + r]; },
                           [&](int s, int c) { return i0 + c < K ? qn[RK(s) + i0 + c] : 0.0f; }, SA, SB);
        TILE_FOR(aq, if (r < Lc && i0 + c < K) dqw[RK(r) + i0 + c] += val);
        TILE_FOR(ak, if (r < Lc && i0 + c < K) dkw[RK(r) + i0 + c] += val);
    }

    // (3) dW = −dV' Sᵀ
    for (int i0 = 0; i0 < K; i0 += 64) {
        float acc[4][4];
        zero_acc(acc);
        mm64_staged<true>(acc, V, [&](int r, int j) { return r < Lc ? dvp[RV(r) + j] : 0.0f; },
                          [&](int j, int c) { return i0 + c < K ? S[(int64_t)(i0 + c) * V + j] : 0.0f; }, SA, SB);
        TILE_FOR(acc, if (r < Lc && i0 + c < K) dw[RK(r) + i0 + c] = -val);
    }
    // (dw complete at the next barrier, the first inside mm64_staged; X (A) is not read any more)

    // (4) X = dT = dV' Vbᵀ + dW Kbᵀ; tv = dVb = Tᵀ dV'; tk = dKb = Tᵀ dW (T is upper-zero: Tᵀ_rs = T_sr, s ≥ r).
    {
        float acc[4][4];
        zero_acc(acc);
        mm64_staged<true>(acc, V, [&](int r, int j) { return r < Lc ? dvp[RV(r) + j] : 0.0f; },
                          [&](int j, int c) { return c < Lc ? bs[c] * bf2f(v[RV(c) + j]) : 0.0f; }, SA, SB);
        mm64_staged<true>(acc, K, [&](int r, int i) { return r < Lc ? dw[RK(r) + i] : 0.0f; },
                          [&](int i, int c) { return c < Lc ? bs[c] * expf((float)gs[c]) * kn[RK(c) + i] : 0.0f; },
                          SA, SB);
        TILE_FOR(acc, X[r * GB_P + c] = (r < Lc && c < Lc) ? val : 0.0f);
    }
    for (int j0 = 0; j0 < V; j0 += 64) {
        float acc[4][4];
        zero_acc(acc);
        mm64_staged<false>(acc, Lc, [&](int r, int s) { return Ts[s * GB_P + r]; },
                           [&](int s, int c) { return j0 + c < V ? dvp[RV(s) + j0 + c] : 0.0f; }, SA, SB);
        TILE_FOR(acc, if (r < Lc && j0 + c < V) tv[RV(r) + j0 + c] = val);
    }
    for (int i0 = 0; i0 < K; i0 += 64) {
        float acc[4][4];
        zero_acc(acc);
        mm64_staged<false>(acc, Lc, [&](int r, int s) { return Ts[s * GB_P + r]; },
                           [&](int s, int c) { return i0 + c < K ? dw[RK(s) + i0 + c] : 0.0f; }, SA, SB);
        TILE_FOR(acc, if (r < Lc && i0 + c < K) tk[RK(r) + i0 + c] = val);
    }
    __syncthreads();
    // dβ_r += v_r·dVb_r + c_r, dγ_r += β_r c_r with c_r = e^{γ_r} k̂_r·dKb_r
    gb_rows_dot2(Lc, V, [&](int r, int j) { return bf2f(v[RV(r) + j]) * tv[RV(r) + j]; }, K,
                 [&](int r, int i) { return kn[RK(r) + i] * tk[RK(r) + i]; },
                 [&](int r, float db, float cr) {
                     cr *= expf((float)gs[r]);
                     dbs[r] += db + cr;
                     ta[r] = bs[r] * cr;
                 });
    __syncthreads();
    if (tid == 0)
        for (int r = 0; r < Lc; r++) dgam[r] += (double)ta[r];
    for (int r = tid >> 5; r < Lc; r += GB_THREADS / 32) { // a warp per row
        const float eb = bs[r] * expf((float)gs[r]);
        for (int j = tid & 31; j < V; j += 32) dv[RV(r) + j] = f2bf(bs[r] * tv[RV(r) + j]);
        for (int i = tid & 31; i < K; i += 32) dkw[RK(r) + i] += eb * tk[RK(r) + i];
    }

    // (5) dA = −Tᵀ dT Tᵀ: dP := Tᵀ X, then X := −dP Tᵀ (all in shared memory).
    __syncthreads(); // X (dT) complete
    {
        float acc[4][4];
        zero_acc(acc);
        mm64(acc, Lc, [&](int r, int m) { return Ts[m * GB_P + r]; }, [&](int m, int c) { return X[m * GB_P + c]; });
        TILE_FOR(acc, dP[r * GB_P + c] = val);
    }
    __syncthreads();
    {
        float acc[4][4];
        zero_acc(acc);
        mm64(acc, Lc, [&](int r, int m) { return dP[r * GB_P + m]; }, [&](int m, int c) { return Ts[c * GB_P + m]; });
        TILE_FOR(acc, X[r * GB_P + c] = -val);
    }
    __syncthreads();

    // (6) A_rs = β_r KK_rs Γ_rs (s < r): F = dA ⊙ A to dγ; M = dA ⊙ Γ: dβ_r += Σ_s M_rs KK_rs;
    //     dK += diag(β) M K̂ + (diag(β) M)ᵀ K̂.
    // (Γ_rs only for s < r: its exponent is then ≤ 0.) Row r: Σ_s M_rs KK_rs, F's row sum is β_r times it.
    gb_rows_dot2(Lc, Lc, [&](int r, int s) { return s < r ? X[r * GB_P + s] * GAM(r, s) * KK[r * GB_P + s] : 0.0f; },
                 0, NO_TERM, [&](int r, float m, float) { tb[r] = bs[r] * m, dbs[r] += m; });
    gb_rows_dot2(Lc, Lc,
                 [&](int s, int r) { return r > s ? X[r * GB_P + s] * bs[r] * KK[r * GB_P + s] * GAM(r, s) : 0.0f; },
                 0, NO_TERM, [&](int s, float f, float) { tc[s] = f; });
    __syncthreads();
    if (tid == 0)
        for (int r = 0; r < Lc; r++) dgam[r] += (double)tb[r] - (double)tc[r];
    for (int idx = tid; idx < GB_C * GB_C; idx += GB_THREADS) {
        const int r = idx >> 6, s = idx & 63;
        X[r * GB_P + s] = (r < Lc && s < r) ? bs[r] * (X[r * GB_P + s] * GAM(r, s)) : 0.0f;
    }
    __syncthreads();
    for (int i0 = 0; i0 < K; i0 += 64) { // X is zero on and above the diagonal and past Lc
        float acc[4][4];
        zero_acc(acc);
        mm64_staged<false>(acc, Lc, [&](int r, int s) { return X[r * GB_P + s] + X[s * GB_P + r]; },
                           [&](int s, int c) { return i0 + c < K ? kn[RK(s) + i0 + c] : 0.0f; }, SA, SB);
        TILE_FOR(acc, if (r < Lc && i0 + c < K) dkw[RK(r) + i0 + c] += val);
    }
    __syncthreads();

    // Outputs: dg = reverse cumsum of dγ (double), dβ, and dq, dk through the L2 norm: dx = r (dy − y (dy·y)).
    if (tid == 0) {
        double acc = 0.0;
        for (int r = L; r >= 0; r--) {
            acc += dgam[r];
            dg[(t0 + r) * H + h] = (float)acc;
            dbeta[(t0 + r) * H + h] = dbs[r];
        }
    }
    gb_rows_dot2(Lc, l2norm ? K : 0, [&](int r, int i) { return dqw[RK(r) + i] * qn[RK(r) + i]; }, l2norm ? K : 0,
                 [&](int r, int i) { return dkw[RK(r) + i] * kn[RK(r) + i]; },
                 [&](int r, float sq, float sk) { ta[r] = sq, tb[r] = sk; });
    __syncthreads();
    for (int r = tid >> 5; r < Lc; r += GB_THREADS / 32) { // a warp per row
        const int64_t row = (t0 + r) * H + h;
        for (int i = tid & 31; i < K; i += 32) {
            const int64_t o = RK(r) + i;
            float xq = dqw[o], xk = dkw[o];
            if (l2norm) {
                xq = rq[row] * (xq - qn[o] * ta[r]);
                xk = rk[row] * (xk - kn[o] * tb[r]);
            }
            dq[o] = f2bf(xq);
            dk[o] = f2bf(xk);
        }
    }
#undef RK
#undef RV
#undef GAM
#undef RP
#undef NO_TERM
#undef TILE_FOR
}

// ----------------------------------------------------------------------------------------------------
// launcher


static size_t gb_prep_smem(void) { return sizeof(double) * GB_C + sizeof(float) * (GB_C + 5 * GB_C * GB_P); }
static size_t gb_chunk_smem(void) {
    return sizeof(double) * 2 * GB_C + sizeof(float) * (5 * GB_C + GB_THREADS + 6 * GB_C * GB_P);
}

extern "C" int pn_cuda_gdn_bwd(const pn_gdn_cfg *cfg, void *dq, void *dk, void *dv, float *dg, float *dbeta,
                               float *dh0, const void *dout, const float *dht, const void *q, const void *k,
                               const void *v, const float *g, const float *beta, const float *h0) {
    int32_t *hcu;
    if (pn_cuda_gdn_check_cfg(cfg, &hcu)) return -1;
    const int H = (int)cfg->H, K = (int)cfg->K, V = (int)cfg->V;
    const int N = (int)pn_gdn_num_seqs(cfg);
    const int64_t R = cfg->B * cfg->T * cfg->H; // (token, head) rows
    const float scale = (float)pn_gdn_scale(cfg);

    // Chunk table (first row, length) and each sequence's first chunk, built on the device for both layouts
    // (the count from the host's offsets).
    int64_t nch = 0;
    for (int n = 0; n < N; n++) {
        const int64_t len = hcu ? hcu[n + 1] - hcu[n] : cfg->T;
        nch += ceil_div64(len, GB_C);
    }
    if (nch > 0x7fffffff) {
        free(hcu);
        return pn_errorf("gdn (cuda): %lld chunks exceed the grid", (long long)nch);
    }

    // Workspace: γ (double) [R]; qn, kn, W, dqw, dkw, dw, tk [R, K]; Vp, dvp, tv [R, V]; P [R, 64]; rq, rk [R];
    // states, dSo [nch, H, K, V]; then the tables.
    const size_t nk = (size_t)R * K, nv = (size_t)R * V, nst = (size_t)nch * H * K * V;
    const size_t nfl = 7 * nk + 3 * nv + (size_t)R * GB_C + 2 * (size_t)R + 2 * nst;
    const size_t ntab = (size_t)(2 * nch + N + 1);
    char *w = (char *)pn_cuda_ws(PN_WS_GDN_BWD, sizeof(double) * (size_t)R + sizeof(float) * nfl + sizeof(int) * ntab);
    double *gam = (double *)w;
    float *f = (float *)(gam + R);
    float *qn = f, *kn = qn + nk, *W = kn + nk, *dqw = W + nk, *dkw = dqw + nk, *dw = dkw + nk, *tk = dw + nk;
    float *Vp = tk + nk, *dvp = Vp + nv, *tv = dvp + nv, *P = tv + nv, *rq = P + (size_t)R * GB_C, *rk = rq + R;
    float *states = rk + R, *dSo = states + nst;
    int *tab = (int *)(dSo + nst), *cst = tab + 2 * nch;
    pn_cuda_gdn_chunk_table(tab, cst, hcu ? cfg->cu_seqlens : NULL, N, cfg->T, GB_C);

    static size_t prep_attr = 48 * 1024, chunk_attr = 48 * 1024;
    const size_t prep_smem = gb_prep_smem(), chunk_smem = gb_chunk_smem();
    if (prep_smem > prep_attr) {
        CUDA_CHECK(cudaFuncSetAttribute(gdn_bwd_prep_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)prep_smem));
        prep_attr = prep_smem;
    }
    if (chunk_smem > chunk_attr) {
        CUDA_CHECK(cudaFuncSetAttribute(gdn_bwd_chunk_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)chunk_smem));
        chunk_attr = chunk_smem;
    }
    const dim3 gch((unsigned)nch, (unsigned)H), gcol((unsigned)ceil_div64(V, 64), (unsigned)H, (unsigned)N);
    static size_t states_attr = 48 * 1024, dstate_attr = 48 * 1024;
    const size_t states_smem = sizeof(float) * ((size_t)K * TILE_SP + 64 * (size_t)pitch_k(K) + 64 * TILE_SP + 64);
    const size_t dstate_smem = sizeof(float) * ((size_t)K * TILE_SP + 3 * 64 * GB_P + 2 * 64 * TILE_SP + 128);
    if (states_smem > states_attr) {
        CUDA_CHECK(cudaFuncSetAttribute(gdn_bwd_states_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)states_smem));
        states_attr = states_smem;
    }
    if (dstate_smem > dstate_attr) {
        CUDA_CHECK(cudaFuncSetAttribute(gdn_bwd_dstate_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)dstate_smem));
        dstate_attr = dstate_smem;
    }
#ifndef PN_GDN_HOST_CHECK
    // PN_GDN_PROFILE=1: time each of the four kernels (events between launches) and log the split.
    static int profile = -1;
    if (profile < 0) profile = getenv("PN_GDN_PROFILE") && getenv("PN_GDN_PROFILE")[0] == '1';
    cudaEvent_t ev[5];
    if (profile)
        for (int i = 0; i < 5; i++) CUDA_CHECK(cudaEventCreate(&ev[i]));
#define GB_MARK(i) \
    if (profile) CUDA_CHECK(cudaEventRecord(ev[i], pn_cuda_stream()))
#else
#define GB_MARK(i)
#endif
    GB_MARK(0);
    GDN_LAUNCH(gdn_bwd_prep_kernel, gch, GB_THREADS, prep_smem, qn, kn, rq, rk, gam, P, W, Vp, (const bf16 *)q,
               (const bf16 *)k, (const bf16 *)v, g, beta, (const int *)tab, H, K, V, scale, cfg->qk_l2norm ? 1 : 0);
    CUDA_LAUNCH_CHECK();
    GB_MARK(1);
    GDN_LAUNCH(gdn_bwd_states_kernel, gcol, GB_THREADS, states_smem, states, Vp, h0, (const float *)kn,
               (const float *)W, (const double *)gam, (const int *)tab, (const int *)cst, H, K, V);
    CUDA_LAUNCH_CHECK();
    GB_MARK(2);
    GDN_LAUNCH(gdn_bwd_dstate_kernel, gcol, GB_THREADS, dstate_smem, dSo, dvp, dh0, dht,
               (const bf16 *)dout, (const float *)qn, (const float *)kn, (const float *)W, (const float *)P,
               (const double *)gam, (const int *)tab, (const int *)cst, H, K, V, scale);
    CUDA_LAUNCH_CHECK();
    GB_MARK(3);
    GDN_LAUNCH(gdn_bwd_chunk_kernel, gch, GB_THREADS, chunk_smem, (bf16 *)dq, (bf16 *)dk, (bf16 *)dv, dg, dbeta, dqw,
               dkw, dw, tk, tv, (const float *)states, (const float *)dSo, (const float *)Vp, (const float *)dvp,
               (const float *)qn, (const float *)kn, (const float *)rq, (const float *)rk, (const double *)gam,
               (const float *)P, (const bf16 *)v, (const bf16 *)dout, beta, (const int *)tab, H, K, V, scale,
               cfg->qk_l2norm ? 1 : 0);
    CUDA_LAUNCH_CHECK();
    GB_MARK(4);
#ifndef PN_GDN_HOST_CHECK
    if (profile) {
        float ms[4];
        CUDA_CHECK(cudaEventSynchronize(ev[4]));
        for (int i = 0; i < 4; i++) CUDA_CHECK(cudaEventElapsedTime(&ms[i], ev[i], ev[i + 1]));
        pn_info("gdn bwd (cuda) B %lld T %lld H %d K %d V %d: prep %.2f ms, states %.2f ms, dstate %.2f ms, chunk %.2f ms",
                (long long)cfg->B, (long long)cfg->T, H, K, V, ms[0], ms[1], ms[2], ms[3]);
        for (int i = 0; i < 5; i++) CUDA_CHECK(cudaEventDestroy(ev[i]));
    }
#endif
#undef GB_MARK
    free(hcu);
    return 0;
}
