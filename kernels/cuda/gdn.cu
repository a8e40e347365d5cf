// gdn.cu: Gated DeltaNet forward (chunked, chunk 64) and decode step on the GPU, the semantics of
// pn_cpu_gdn_fwd_f32 / pn_cpu_gdn_step_f32 (kernels/cpu/gdn.c; REFERENCE.md §4). Per (sequence, head) and chunk of
// Lc ≤ 64 rows, with γ the inclusive cumsum of g inside the chunk and Γ_rs = e^{γ_r − γ_s} (s ≤ r):
//   A = strict_lower(diag(β) K Kᵀ ⊙ Γ), T = (I + A)⁻¹, W = T diag(β e^γ) K, U = T diag(β) V,
//   V' = U − W S,  O = diag(scale e^γ) Q S + P V' with P = lower_incl(scale Q Kᵀ ⊙ Γ),
//   S ← e^{γ_L} S + Kᵀ diag(e^{γ_L − γ}) V'.
//
// The decisions a reader would otherwise miss:
// - Two kernels, fla's split. gdn_prep_kernel is parallel over (chunk, head): it normalizes q, k (when
//   asked), forms γ, P, A, T (forward substitution, four lanes per column: tri_inv64) and writes to an
//   fp32 workspace everything the sequential part needs, indexed by token row like the inputs:
//   Qs = diag(scale e^γ) Q̂, Kd = diag(e^{γ_L − γ}) K̂, W, U, P (a [64]-row per token) and γ. gdn_chunk_kernel
//   then walks the chunks of one sequence in order, one block per (V slice of 64 columns, head, sequence),
//   holding the state slice S[K, 64] in shared memory in fp32 for the whole sequence.
// - The products are 64×64 tiles on tensor cores (gdn_tile.cuh's mm64: 256 threads, tf32 operands read
//   from shared memory, fp32 accumulators); inputs are bf16, everything else (the triangular solve, the
//   exponentials, the state and the workspace) fp32, o is rounded to bf16 once. Rows past Lc and columns past K / V are zero in shared memory, so
//   every product runs on full 64-wide tiles and padding never reaches an output.
// - Only exponents ≤ 0 are evaluated: Γ is masked (s ≤ r) before expf, e^{γ_r} and e^{γ_L − γ_r} have
//   γ_r ≤ 0 and γ_L ≤ γ_r. γ is summed in double (as on the CPU) and stored as fp32.
// - cu_seqlens is a device array; the launcher copies it to the host (synchronizing) to validate it with
//   pn_gdn_check and to build the chunk table of gdn_prep_kernel (fla does the same host round trip).
// - Shared memory at K = 256 is ~169 KB (prep) and ~176 KB (chunk): fits Hopper's 227 KB (not an A100's 163).
// - The workspace (one device buffer of the backend context, grown on demand, never shrunk).
// - GDN_LAUNCH is <<<>>> on CUDA (GDN_LAUNCH_PDL, for the decode step, pn_launch); under PN_GDN_HOST_CHECK the file is compiled as plain C++ by a host
//   harness (not in the tree) that runs every block with real threads (a barrier for __syncthreads) and
//   NaN-filled shared memory; that is how kernels and launchers were first checked against the CPU code.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifndef PN_GDN_HOST_CHECK
#include "common.cuh"
#define GDN_LAUNCH(kern, grid, block, smem, ...) kern<<<(grid), (block), (smem), pn_cuda_stream()>>>(__VA_ARGS__)
#define GDN_LAUNCH_PDL(kern, grid, block, smem, ...) pn_launch(kern, (grid), (block), (smem), __VA_ARGS__)
#endif
#include "gdn_cuda.h"
#include "gdn_tile.cuh"

#define GDN_C 64        // chunk length (PN_GDN_CHUNK)
#define GDN_THREADS 256 // threads of the prep and chunk kernels (mm64 assumes 256)
#define GDN_BV 64       // V columns per block of the chunk kernel
#define GDN_SP TILE_SP  // row pitch of the [*, 64] state slice and V' tiles (gdn_tile.cuh)
#define GDN_STEP_WARPS 4 // the decode step: warps per block, each a quarter of the K rows of 32 columns
#define GDN_STEP_THREADS (32 * GDN_STEP_WARPS)
#define GDN_STEP_RPW (PN_GDN_MAX_K / GDN_STEP_WARPS) // rows per thread at most (registers)

// ----------------------------------------------------------------------------------------------------
// kernels

#ifndef PN_GDN_HOST_CHECK
__device__ __forceinline__ float *dyn_smem(void) {
    extern __shared__ float gdn_smem[];
    return gdn_smem;
}
#endif

// grid (n_chunks, H), GDN_THREADS threads. Chunk c covers flattened token rows t0 .. t0 + Lc − 1: from
// tab[2c], tab[2c + 1] when tab is given (varlen), else sequence c / ncps, chunk c % ncps of T tokens.
// Writes rows t0 .. t0 + Lc − 1 (head h) of Qs, Kd, W [NT, H, K], U [NT, H, V], P [NT, H, 64], gam [NT, H].
__global__ void __launch_bounds__(GDN_THREADS)
    gdn_prep_kernel(float *Qs, float *Kd, float *W, float *U, float *P, float *gam, const bf16 *q, const bf16 *k,
                    const bf16 *v, const float *g, const float *beta, const int *tab, int T, int ncps, int H, int K,
                    int V, float scale, int l2norm) {
    const int c = blockIdx.x, h = blockIdx.y, tid = threadIdx.x;
    int64_t t0;
    int Lc;
    if (tab) {
        t0 = tab[2 * c];
        Lc = tab[2 * c + 1];
    } else {
        const int64_t seq = c / ncps, ci = c % ncps;
        t0 = seq * T + ci * GDN_C;
        Lc = (int)min((int64_t)GDN_C, (int64_t)T - ci * GDN_C);
    }
    const int Kp = pitch_k(K), Xp = Kp > GDN_SP ? Kp : GDN_SP;
    float *xs = dyn_smem();          // [64, Xp]: q̂ rows, later tiles of diag(β) V (pitch GDN_SP)
    float *ks = xs + GDN_C * Xp;     // [64, Kp]: k̂ rows, later diag(β e^γ) K̂
    float *As = ks + GDN_C * Kp;     // [64, TILE_P]: A
    float *Ts = As + GDN_C * TILE_P; // [64, TILE_P]: T
    float *gs = Ts + GDN_C * TILE_P;     // [64]: γ
    float *bs = gs + GDN_C;          // [64]: β

    // (1) the chunk's q, k rows, L2-normalized when asked (zeros past Lc): a warp per row, the row in
    // registers (K ≤ 256: 8 values a lane), its sum of squares by a warp reduction; β; γ (in double, one
    // thread, as on the CPU).
    const int lane = tid & 31;
    for (int r = tid >> 5; r < GDN_C; r += GDN_THREADS / 32) {
        float qv[PN_GDN_MAX_K / 32], kv[PN_GDN_MAX_K / 32], sq = 0.0f, sk = 0.0f;
        const int64_t off = ((t0 + r) * H + h) * (int64_t)K;
#pragma unroll
        for (int u = 0; u < PN_GDN_MAX_K / 32; u++) {
            const int c = lane + 32 * u;
            const bool in = r < Lc && c < K;
            qv[u] = in ? bf2f(q[off + c]) : 0.0f;
            kv[u] = in ? bf2f(k[off + c]) : 0.0f;
            sq = fmaf(qv[u], qv[u], sq);
            sk = fmaf(kv[u], kv[u], sk);
        }
        float nq = 1.0f, nk = 1.0f;
        if (l2norm) {
            nq = 1.0f / sqrtf(warp_sum(sq) + (float)PN_GDN_L2_EPS);
            nk = 1.0f / sqrtf(warp_sum(sk) + (float)PN_GDN_L2_EPS);
        }
#pragma unroll
        for (int u = 0; u < PN_GDN_MAX_K / 32; u++) {
            const int c = lane + 32 * u;
            if (c < K) xs[r * Xp + c] = qv[u] * nq, ks[r * Kp + c] = kv[u] * nk;
        }
    }
    if (tid < GDN_C) bs[tid] = tid < Lc ? beta[(t0 + tid) * H + h] : 0.0f;
    if (tid == GDN_C) {
        double acc = 0.0;
        for (int r = 0; r < GDN_C; r++) {
            if (r < Lc) acc += (double)g[(t0 + r) * H + h];
            gs[r] = (float)acc; // rows past Lc repeat γ_{Lc−1}; never used with a nonzero factor
        }
    }
    __syncthreads();

    // (3) A = strict_lower(diag(β) K̂ K̂ᵀ ⊙ Γ) into shared memory; P = lower_incl(scale Q̂ K̂ᵀ ⊙ Γ) to global.
    {
        float acc[4][4];
        zero_acc(acc);
        mm64(acc, K, [&](int m, int kk) { return ks[m * Kp + kk]; }, [&](int kk, int n) { return ks[n * Kp + kk]; });
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const int m = tile_r(i), n = tile_c(j);
                As[m * TILE_P + n] = (n < m && m < Lc) ? bs[m] * acc[i][j] * expf(gs[m] - gs[n]) : 0.0f;
            }
        zero_acc(acc);
        mm64(acc, K, [&](int m, int kk) { return xs[m * Xp + kk]; }, [&](int kk, int n) { return ks[n * Kp + kk]; });
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int m = tile_r(i);
            if (m >= Lc) continue;
            float *prow = P + ((t0 + m) * H + h) * (int64_t)GDN_C;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const int n = tile_c(j);
                prow[n] = n <= m ? scale * acc[i][j] * expf(gs[m] - gs[n]) : 0.0f;
            }
        }
    }
    __syncthreads();

    // (4) Qs = diag(scale e^γ) Q̂ and Kd = diag(e^{γ_L − γ}) K̂ to global; K̂ → diag(β e^γ) K̂ in place (each
    // element read and rewritten by the same thread). Then T = (I + A)⁻¹ (gdn_tile.cuh's tri_inv64).
    {
        const float gL = gs[Lc - 1];
        for (int r = tid >> 5; r < Lc; r += GDN_THREADS / 32) {
            const float eg = expf(gs[r]), ed = expf(gL - gs[r]), be = bs[r] * eg;
            for (int cc = lane; cc < K; cc += 32) {
                const int64_t off = ((t0 + r) * H + h) * (int64_t)K + cc;
                const float kv = ks[r * Kp + cc];
                Qs[off] = scale * eg * xs[r * Xp + cc];
                Kd[off] = ed * kv;
                ks[r * Kp + cc] = be * kv;
            }
        }
        tri_inv64(Ts, As, Lc);
        if (tid < Lc) gam[(t0 + tid) * H + h] = gs[tid];
    }
    __syncthreads();

    // (5) W = T diag(β e^γ) K̂, 64 columns of K at a time.
    for (int nt = 0; nt < K; nt += 64) {
        float acc[4][4];
        zero_acc(acc);
        mm64(acc, Lc, [&](int m, int kk) { return Ts[m * TILE_P + kk]; },
             [&](int kk, int n) { return nt + n < K ? ks[kk * Kp + nt + n] : 0.0f; });
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int m = tile_r(i);
            if (m >= Lc) continue;
            float *wrow = W + ((t0 + m) * H + h) * (int64_t)K;
#pragma unroll
            for (int j = 0; j < 4; j++)
                if (nt + tile_c(j) < K) wrow[nt + tile_c(j)] = acc[i][j];
        }
    }

    // (6) U = T diag(β) V, 64 columns of V at a time staged in xs (pitch GDN_SP).
    for (int nt = 0; nt < V; nt += 64) {
        __syncthreads(); // xs free: q̂ (step 4) or the previous tile fully read
        for (int i = tid; i < GDN_C * 64; i += GDN_THREADS) {
            const int r = i >> 6, cc = i & 63;
            xs[r * GDN_SP + cc] =
                (r < Lc && nt + cc < V) ? bs[r] * bf2f(v[((t0 + r) * H + h) * (int64_t)V + nt + cc]) : 0.0f;
        }
        __syncthreads();
        float acc[4][4];
        zero_acc(acc);
        mm64(acc, Lc, [&](int m, int kk) { return Ts[m * TILE_P + kk]; }, [&](int kk, int n) { return xs[kk * GDN_SP + n]; });
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int m = tile_r(i);
            if (m >= Lc) continue;
            float *urow = U + ((t0 + m) * H + h) * (int64_t)V;
#pragma unroll
            for (int j = 0; j < 4; j++)
                if (nt + tile_c(j) < V) urow[nt + tile_c(j)] = acc[i][j];
        }
    }
}

// Copies rows t0 .. t0 + Lc − 1 (head h) of a [NT, H, K] workspace array into dst [64, Kp], zeros past Lc.
__device__ __forceinline__ void load_rows_k(float *dst, const float *src, int64_t t0, int Lc, int H, int h, int K,
                                            int Kp) {
    // A warp per row (no division by K), 16-byte loads when rows are 16-byte aligned (K % 4 == 0).
    const int lane = threadIdx.x & 31;
    for (int r = threadIdx.x >> 5; r < GDN_C; r += GDN_THREADS / 32) {
        const float *row = src + ((t0 + r) * H + h) * (int64_t)K;
        float *d = dst + r * Kp;
        if ((K & 3) == 0)
            for (int c = 4 * lane; c < K; c += 128) {
                const float4 x = r < Lc ? *(const float4 *)(row + c) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
                *(float4 *)(d + c) = x; // Kp % 4 == 0 too (pitch_k)
            }
        else
            for (int c = lane; c < K; c += 32) d[c] = r < Lc ? row[c] : 0.0f;
    }
}

// grid (ceil(V / 64), H, N), GDN_THREADS threads: sequence n, head h, state columns v0 .. v0 + BVa − 1.
// Walks the sequence's chunks in order with the state slice S[K, 64] in shared memory.
__global__ void __launch_bounds__(GDN_THREADS)
    gdn_chunk_kernel(bf16 *o, float *ht, const float *h0, const float *Qs, const float *Kd, const float *W,
                     const float *U, const float *P, const float *gam, const int *cu_seqlens, int T, int H, int K,
                     int V) {
    const int v0 = blockIdx.x * GDN_BV, h = blockIdx.y, n = blockIdx.z, tid = threadIdx.x;
    const int BVa = min(GDN_BV, V - v0);
    int64_t row0, len;
    if (cu_seqlens) {
        row0 = cu_seqlens[n];
        len = (int64_t)cu_seqlens[n + 1] - row0;
    } else {
        row0 = (int64_t)n * T;
        len = T;
    }
    const int Kp = pitch_k(K);
    float *Ss = dyn_smem();        // [K, GDN_SP]: the state slice
    float *buf = Ss + K * GDN_SP;  // [64, Kp]: W, then Qs, then Kd rows of the chunk
    float *Vp = buf + GDN_C * Kp;  // [64, GDN_SP]: U, then V' = U − W S
    float *Ps = Vp + GDN_C * GDN_SP; // [64, TILE_P]: P
    const int64_t sbase = ((int64_t)n * H + h) * K * (int64_t)V + v0;

    for (int i = tid; i < K * GDN_BV; i += GDN_THREADS) {
        const int r = i >> 6, cc = i & 63;
        Ss[r * GDN_SP + cc] = (h0 && cc < BVa) ? h0[sbase + (int64_t)r * V + cc] : 0.0f;
    }

    for (int64_t c0 = 0; c0 < len; c0 += GDN_C) {
        const int Lc = (int)min((int64_t)GDN_C, len - c0);
        const int64_t t0 = row0 + c0;
        __syncthreads(); // S written (initial load or last update); buf, Vp, Ps free

        // V' = U − W S
        load_rows_k(buf, W, t0, Lc, H, h, K, Kp);
        for (int i = tid; i < GDN_C * GDN_BV; i += GDN_THREADS) {
            const int r = i >> 6, cc = i & 63;
            Vp[r * GDN_SP + cc] = (r < Lc && cc < BVa) ? U[((t0 + r) * H + h) * (int64_t)V + v0 + cc] : 0.0f;
        }
        for (int i = tid; i < GDN_C * GDN_C; i += GDN_THREADS) {
            const int r = i >> 6, cc = i & 63;
            Ps[r * TILE_P + cc] = r < Lc ? P[((t0 + r) * H + h) * (int64_t)GDN_C + cc] : 0.0f;
        }
        __syncthreads();
        {
            float acc[4][4];
            zero_acc(acc);
            mm64(acc, K, [&](int m, int kk) { return buf[m * Kp + kk]; },
                 [&](int kk, int c) { return Ss[kk * GDN_SP + c]; });
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) Vp[tile_r(i) * GDN_SP + tile_c(j)] -= acc[i][j];
        }
        __syncthreads();

        // O = Qs S + P V'
        load_rows_k(buf, Qs, t0, Lc, H, h, K, Kp);
        __syncthreads();
        {
            float acc[4][4];
            zero_acc(acc);
            mm64(acc, K, [&](int m, int kk) { return buf[m * Kp + kk]; },
                 [&](int kk, int c) { return Ss[kk * GDN_SP + c]; });
            mm64(acc, Lc, [&](int m, int kk) { return Ps[m * TILE_P + kk]; },
                 [&](int kk, int c) { return Vp[kk * GDN_SP + c]; });
#pragma unroll
            for (int i = 0; i < 4; i++) {
                const int m = tile_r(i);
                if (m >= Lc) continue;
                bf16 *orow = o + ((t0 + m) * H + h) * (int64_t)V + v0;
#pragma unroll
                for (int j = 0; j < 4; j++)
                    if (tile_c(j) < BVa) orow[tile_c(j)] = f2bf(acc[i][j]);
            }
        }
        __syncthreads();

        // S ← e^{γ_L} S + Kdᵀ V', 64 rows of S at a time; each thread rewrites only its own elements of S.
        load_rows_k(buf, Kd, t0, Lc, H, h, K, Kp);
        __syncthreads();
        const float eL = expf(gam[(t0 + Lc - 1) * H + h]);
        for (int mt = 0; mt < K; mt += 64) {
            float acc[4][4];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    const int m = mt + tile_r(i);
                    acc[i][j] = m < K ? eL * Ss[m * GDN_SP + tile_c(j)] : 0.0f;
                }
            mm64(acc, Lc, [&](int m, int r) { return mt + m < K ? buf[r * Kp + mt + m] : 0.0f; },
                 [&](int r, int c) { return Vp[r * GDN_SP + c]; });
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    const int m = mt + tile_r(i);
                    if (m < K) Ss[m * GDN_SP + tile_c(j)] = acc[i][j];
                }
        }
    }
    __syncthreads();
    if (ht)
        for (int i = tid; i < K * GDN_BV; i += GDN_THREADS) {
            const int r = i >> 6, cc = i & 63;
            if (cc < BVa) ht[sbase + (int64_t)r * V + cc] = Ss[r * GDN_SP + cc];
        }
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

static size_t prep_smem_bytes(int K) {
    const int Kp = pitch_k(K), Xp = Kp > GDN_SP ? Kp : GDN_SP;
    return sizeof(float) * (size_t)(GDN_C * Xp + GDN_C * Kp + 2 * GDN_C * TILE_P + 2 * GDN_C);
}

static size_t chunk_smem_bytes(int K) {
    return sizeof(float) * (size_t)(K * GDN_SP + GDN_C * pitch_k(K) + GDN_C * GDN_SP + GDN_C * TILE_P);
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

extern "C" int pn_cuda_gdn_fwd(const pn_gdn_cfg *cfg, void *o, float *ht, const void *q, const void *k,
                               const void *v, const float *g, const float *beta, const float *h0) {
    int32_t *hcu;
    if (pn_cuda_gdn_check_cfg(cfg, &hcu)) return -1;
    const int H = (int)cfg->H, K = (int)cfg->K, V = (int)cfg->V, T = (int)cfg->T;
    const int N = (int)pn_gdn_num_seqs(cfg);
    const int64_t NT = cfg->B * cfg->T; // flattened token rows
    const float scale = (float)pn_gdn_scale(cfg);

    // Chunks: uniform (N sequences of ceil(T / 64)) or, with cu_seqlens, a table of (first row, length).
    const int ncps = (int)ceil_div64(T, GDN_C);
    int64_t n_chunks = (int64_t)N * ncps;
    if (hcu) { // the count from the host's offsets; the table itself is built on the device
        n_chunks = 0;
        for (int n = 0; n < N; n++) n_chunks += ceil_div64(hcu[n + 1] - hcu[n], GDN_C);
    }
    if (n_chunks > 0x7fffffff) {
        free(hcu);
        return pn_errorf("gdn (cuda): %lld chunks exceed the grid", (long long)n_chunks);
    }

    // Workspace (fp32): Qs, Kd, W [NT, H, K]; U [NT, H, V]; P [NT, H, 64]; γ [NT, H]; then the chunk table.
    const size_t nk = (size_t)(NT * H * K), nv = (size_t)(NT * H * V), np = (size_t)(NT * H * GDN_C),
                 ng = (size_t)(NT * H);
    const size_t nfl = 3 * nk + nv + np + ng;
    float *w = (float *)workspace(sizeof(float) * nfl + (hcu ? sizeof(int) * 2 * (size_t)n_chunks : 0));
    float *Qs = w, *Kd = Qs + nk, *W = Kd + nk, *U = W + nk, *P = U + nv, *gam = P + np;
    int *tab = NULL;
    if (hcu) {
        tab = (int *)(w + nfl);
        pn_cuda_gdn_chunk_table(tab, NULL, cfg->cu_seqlens, N, T, GDN_C);
    }

    static size_t prep_attr = 48 * 1024, chunk_attr = 48 * 1024; // dynamic smem allowed so far
    const size_t prep_smem = prep_smem_bytes(K), chunk_smem = chunk_smem_bytes(K);
    if (prep_smem > prep_attr) {
        CUDA_CHECK(cudaFuncSetAttribute(gdn_prep_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)prep_smem));
        prep_attr = prep_smem;
    }
    if (chunk_smem > chunk_attr) {
        CUDA_CHECK(cudaFuncSetAttribute(gdn_chunk_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)chunk_smem));
        chunk_attr = chunk_smem;
    }

#ifndef PN_GDN_HOST_CHECK
    // PN_GDN_PROFILE=1: time the two kernels (events between launches) and log the split.
    static int profile = -1;
    if (profile < 0) profile = getenv("PN_GDN_PROFILE") && getenv("PN_GDN_PROFILE")[0] == '1';
    cudaEvent_t ev[3];
    if (profile) {
        for (int i = 0; i < 3; i++) CUDA_CHECK(cudaEventCreate(&ev[i]));
        CUDA_CHECK(cudaEventRecord(ev[0], pn_cuda_stream()));
    }
#endif
    GDN_LAUNCH(gdn_prep_kernel, dim3((unsigned)n_chunks, (unsigned)H), GDN_THREADS, prep_smem, Qs, Kd, W, U, P, gam,
               (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, g, beta, (const int *)tab, T, ncps, H, K, V, scale,
               cfg->qk_l2norm ? 1 : 0);
    CUDA_LAUNCH_CHECK();
#ifndef PN_GDN_HOST_CHECK
    if (profile) CUDA_CHECK(cudaEventRecord(ev[1], pn_cuda_stream()));
#endif
    GDN_LAUNCH(gdn_chunk_kernel, dim3((unsigned)ceil_div64(V, GDN_BV), (unsigned)H, (unsigned)N), GDN_THREADS,
               chunk_smem, (bf16 *)o, ht, h0, (const float *)Qs, (const float *)Kd, (const float *)W, (const float *)U,
               (const float *)P, (const float *)gam, (const int *)cfg->cu_seqlens, T, H, K, V);
    CUDA_LAUNCH_CHECK();
#ifndef PN_GDN_HOST_CHECK
    if (profile) {
        float ms[2];
        CUDA_CHECK(cudaEventRecord(ev[2], pn_cuda_stream()));
        CUDA_CHECK(cudaEventSynchronize(ev[2]));
        for (int i = 0; i < 2; i++) CUDA_CHECK(cudaEventElapsedTime(&ms[i], ev[i], ev[i + 1]));
        pn_info("gdn fwd (cuda) B %lld T %lld H %d K %d V %d: prep %.2f ms, chunk %.2f ms", (long long)cfg->B,
                (long long)cfg->T, H, K, V, ms[0], ms[1]);
        for (int i = 0; i < 3; i++) CUDA_CHECK(cudaEventDestroy(ev[i]));
    }
#endif
    free(hcu);
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
