// gdn_bwd.cu: Gated DeltaNet backward on the GPU, exactly pn_cpu_gdn_bwd (kernels/cpu/gdn.c, whose
// comments derive every step; REFERENCE.md §4). Per (sequence, head) and chunk of Lc ≤ 64 rows, γ the
// inclusive cumsum of g in the chunk, Γ_rs = e^{γ_r − γ_s} (s ≤ r), S the state entering the chunk:
//   A = strict_lower(diag(β) K Kᵀ ⊙ Γ), T = (I + A)⁻¹, W = T diag(β e^γ) K, U = T diag(β) V, V' = U − W S,
//   O = diag(scale e^γ) Q S + P V', P = lower_incl(scale Q Kᵀ ⊙ Γ), S' = e^{γ_L} S + Kᵀ diag(e^{γ_L−γ}) V'.
//
// The decisions a reader would otherwise miss:
// - Correct first, speed later: plain fp32 CUDA-core loops, one thread per output element, operands read
//   from an fp32 global workspace (L1/L2 do the reuse). No tensor cores, no atomics.
// - Four kernels, in the order of the CPU code:
//   1. gdn_bwd_prep_kernel, grid (chunk, head): q̂, k̂ (L2-normalized when asked) and their 1/‖x‖, γ (double),
//      T (forward substitution, one column per thread), P, W and U, all written per token row.
//   2. gdn_bwd_states_kernel, grid (V / 128, head, sequence), one thread per state column j: the columns of
//      the recurrence are independent, so each thread walks the chunks forward, storing the entering state
//      S_c[:, j] of every chunk (workspace [chunk, H, K, V]) and V' = U − W S_c in place of U.
//   3. gdn_bwd_dstate_kernel, same grid, one thread per column, chunks in reverse: dS'_c (the gradient of
//      the state leaving chunk c; dht for the last) is stored per chunk, dV' = diag(e^{γ_L−γ}) K dS' + Pᵀ dO
//      per row, and dS_c = e^{γ_L} dS' + (diag(scale e^γ) Q̂)ᵀ dO − Wᵀ dV' becomes dS'_{c−1} (or dh0).
//      Both contributions of dV' and all of dS only involve column j, so no reduction across threads.
//   4. gdn_bwd_chunk_kernel, grid (chunk, head): everything else of the CPU's chunk_bwd from S_c, dS'_c, V'
//      and dV' (the whole V inside the block, so sums over V need no second pass): dq, dk, dv, dβ, dγ; then
//      the reverse cumsum of dγ into dg (double) and the L2-norm backward; dq, dk, dv rounded to bf16 once.
// - dγ is accumulated in double (terms in fp32, as the CPU does), each term computed by the thread that owns
//   a row, then summed by one thread in a fixed order: deterministic and race-free.
// - Only exponents ≤ 0 are evaluated (Γ masked before expf), γ summed in double as on the CPU.
// - Workspace at the anchor shape (B 8, T 4096, H 12, K 96, V 256): ~3.7 GB (two [chunk, H, K, V] state
//   arrays of 604 MB each, the rest per token row); a pn_cuda_scratch grown on demand (one GPU per process).
// - GDN_LAUNCH is <<<>>> on CUDA; under PN_GDN_HOST_CHECK the file compiles as plain C++ for a host
//   harness that runs every block with real threads (the one gdn.cu was first checked with).
#include <math.h>
#include <stdlib.h>

#ifndef PN_GDN_HOST_CHECK
#include "common.cuh"
#define GDN_LAUNCH(kern, grid, block, smem, ...) kern<<<(grid), (block), (smem)>>>(__VA_ARGS__)
#endif
#include "gdn_bwd_cuda.h"
#include "gdn_cuda.h"

#define GB_C 64         // chunk length (PN_GDN_CHUNK)
#define GB_P 65         // pitch of the [64, 64] shared matrices
#define GB_THREADS 256  // prep and chunk kernels
#define GB_COL_THREADS 128 // state and dstate kernels: one thread per V column

#ifndef PN_GDN_HOST_CHECK
__device__ __forceinline__ float *gb_smem(void) {
    extern __shared__ float gdn_bwd_smem[];
    return gdn_bwd_smem;
}
#else
#define gb_smem dyn_smem
#endif

// KK = K̂ K̂ᵀ, A = strict_lower(diag(β) KK ⊙ Γ) (in A), T = (I + A)⁻¹ (in Ts); all [64, GB_P], zero past Lc.
// kn holds the chunk's normalized k rows at rows ((t0 + r) H + h). Ends with a barrier.
__device__ void gb_build_T(float *KK, float *A, float *Ts, const float *kn, int64_t t0, int Lc, int H, int h, int K,
                           const float *bs, const double *gs) {
    const int tid = threadIdx.x;
    for (int idx = tid; idx < GB_C * GB_C; idx += GB_THREADS) {
        const int r = idx >> 6, s = idx & 63;
        float acc = 0.0f;
        if (r < Lc && s < Lc) {
            const float *a = kn + ((t0 + r) * H + h) * (int64_t)K, *b = kn + ((t0 + s) * H + h) * (int64_t)K;
            for (int i = 0; i < K; i++) acc = fmaf(a[i], b[i], acc);
        }
        KK[r * GB_P + s] = acc;
        A[r * GB_P + s] = (s < r && r < Lc) ? bs[r] * acc * expf((float)(gs[r] - gs[s])) : 0.0f;
        Ts[r * GB_P + s] = 0.0f;
    }
    __syncthreads();
    if (tid < Lc) { // column j of T, rows j..Lc−1: T_ij = −Σ_{j≤m<i} A_im T_mj
        const int j = tid;
        Ts[j * GB_P + j] = 1.0f;
        for (int i = j + 1; i < Lc; i++) {
            float t = 0.0f;
            for (int m = j; m < i; m++) t -= A[i * GB_P + m] * Ts[m * GB_P + j];
            Ts[i * GB_P + j] = t;
        }
    }
    __syncthreads();
}

// grid (n_chunks, H), GB_THREADS. Chunk c is rows tab[2c] .. tab[2c] + tab[2c + 1] − 1.
__global__ void __launch_bounds__(GB_THREADS)
    gdn_bwd_prep_kernel(float *qn, float *kn, float *rq, float *rk, double *gam, float *P, float *W, float *U,
                        const bf16 *q, const bf16 *k, const bf16 *v, const float *g, const float *beta, const int *tab,
                        int H, int K, int V, float scale, int l2norm) {
    const int c = blockIdx.x, h = blockIdx.y, tid = threadIdx.x;
    const int64_t t0 = tab[2 * c];
    const int Lc = tab[2 * c + 1];
    double *gs = (double *)gb_smem();
    float *bs = (float *)(gs + GB_C);
    float *KK = bs + GB_C, *A = KK + GB_C * GB_P, *Ts = A + GB_C * GB_P;

    if (tid < 2 * GB_C) { // thread r: q row r; thread 64 + r: k row r
        const int which = tid / GB_C, r = tid % GB_C;
        if (r < Lc) {
            const int64_t row = (t0 + r) * H + h, off = row * (int64_t)K;
            const bf16 *src = (which ? k : q) + off;
            float *dst = (which ? kn : qn) + off;
            float ri = 1.0f;
            if (l2norm) {
                float ss = 0.0f;
                for (int i = 0; i < K; i++) ss = fmaf(bf2f(src[i]), bf2f(src[i]), ss);
                ri = 1.0f / sqrtf(ss + (float)PN_GDN_L2_EPS);
            }
            for (int i = 0; i < K; i++) dst[i] = bf2f(src[i]) * ri;
            (which ? rk : rq)[row] = ri;
        }
    } else if (tid == 2 * GB_C) {
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

    gb_build_T(KK, A, Ts, kn, t0, Lc, H, h, K, bs, gs);

    // P = lower_incl(scale Q̂ K̂ᵀ) ⊙ Γ, a [64] row per token (zeros past r).
    for (int idx = tid; idx < Lc * GB_C; idx += GB_THREADS) {
        const int r = idx >> 6, s = idx & 63;
        float val = 0.0f;
        if (s <= r) {
            const float *a = qn + ((t0 + r) * H + h) * (int64_t)K, *b = kn + ((t0 + s) * H + h) * (int64_t)K;
            float acc = 0.0f;
            for (int i = 0; i < K; i++) acc = fmaf(a[i], b[i], acc);
            val = scale * acc * expf((float)(gs[r] - gs[s]));
        }
        P[((t0 + r) * H + h) * (int64_t)GB_C + s] = val;
    }
    // W = T diag(β e^γ) K̂, U = T diag(β) V.
    for (int idx = tid; idx < Lc * K; idx += GB_THREADS) {
        const int r = idx / K, i = idx % K;
        float acc = 0.0f;
        for (int s = 0; s <= r; s++)
            acc = fmaf(Ts[r * GB_P + s], bs[s] * expf((float)gs[s]) * kn[((t0 + s) * H + h) * (int64_t)K + i], acc);
        W[((t0 + r) * H + h) * (int64_t)K + i] = acc;
    }
    for (int idx = tid; idx < Lc * V; idx += GB_THREADS) {
        const int r = idx / V, j = idx % V;
        float acc = 0.0f;
        for (int s = 0; s <= r; s++)
            acc = fmaf(Ts[r * GB_P + s], bs[s] * bf2f(v[((t0 + s) * H + h) * (int64_t)V + j]), acc);
        U[((t0 + r) * H + h) * (int64_t)V + j] = acc;
    }
}

// grid (ceil(V / GB_COL_THREADS), H, N), GB_COL_THREADS; thread owns state column j of sequence n, head h.
// Chunks of sequence n are cst[n] .. cst[n + 1] − 1. Writes states[c] (entering S_c) and U ← V'.
__global__ void __launch_bounds__(GB_COL_THREADS)
    gdn_bwd_states_kernel(float *states, float *U, const float *h0, const float *kn, const float *W, const double *gam,
                          const int *tab, const int *cst, int H, int K, int V) {
    const int h = blockIdx.y, n = blockIdx.z, tid = threadIdx.x, j = blockIdx.x * GB_COL_THREADS + tid;
    const bool on = j < V;
    const int64_t KV = (int64_t)K * V;
    const int c0 = cst[n], c1 = cst[n + 1];
    float *ed = gb_smem(); // [64]: e^{γ_L − γ_r}
    if (on) {
        float *S0 = states + ((int64_t)c0 * H + h) * KV;
        for (int i = 0; i < K; i++) S0[(int64_t)i * V + j] = h0 ? h0[((int64_t)n * H + h) * KV + (int64_t)i * V + j] : 0.0f;
    }
    for (int c = c0; c < c1; c++) {
        const int64_t t0 = tab[2 * c];
        const int Lc = tab[2 * c + 1];
        const float *Sc = states + ((int64_t)c * H + h) * KV;
        if (on)
            for (int r = 0; r < Lc; r++) { // V' = U − W S
                const int64_t row = (t0 + r) * H + h;
                const float *w = W + row * K;
                float acc = 0.0f;
                for (int i = 0; i < K; i++) acc = fmaf(w[i], Sc[(int64_t)i * V + j], acc);
                U[row * V + j] -= acc;
            }
        if (c == c1 - 1) break; // the state leaving the last chunk is not needed
        const double gL = gam[(t0 + Lc - 1) * H + h];
        if (tid < Lc) ed[tid] = expf((float)(gL - gam[(t0 + tid) * H + h]));
        __syncthreads();
        if (on) {
            float *Sn = states + ((int64_t)(c + 1) * H + h) * KV;
            const float eL = expf((float)gL);
            for (int i = 0; i < K; i++) {
                float acc = 0.0f;
                for (int r = 0; r < Lc; r++) {
                    const int64_t row = (t0 + r) * H + h;
                    acc = fmaf(ed[r] * kn[row * K + i], U[row * V + j], acc);
                }
                Sn[(int64_t)i * V + j] = eL * Sc[(int64_t)i * V + j] + acc;
            }
        }
        __syncthreads(); // ed is rewritten next chunk
    }
}

// Same grid. dSo[c] = dS'_c (gradient of the state leaving chunk c); dvp = dV' per row; dh0 = dS_0.
__global__ void __launch_bounds__(GB_COL_THREADS)
    gdn_bwd_dstate_kernel(float *dSo, float *dvp, float *dh0, const float *dht, const bf16 *dout, const float *qn,
                          const float *kn, const float *W, const float *P, const double *gam, const int *tab,
                          const int *cst, int H, int K, int V, float scale) {
    const int h = blockIdx.y, n = blockIdx.z, tid = threadIdx.x, j = blockIdx.x * GB_COL_THREADS + tid;
    const bool on = j < V;
    const int64_t KV = (int64_t)K * V;
    const int c0 = cst[n], c1 = cst[n + 1];
    float *ed = gb_smem(), *eq = ed + GB_C; // e^{γ_L − γ_r}, scale e^{γ_r}
    if (on) {
        float *d = dSo + ((int64_t)(c1 - 1) * H + h) * KV;
        for (int i = 0; i < K; i++) d[(int64_t)i * V + j] = dht ? dht[((int64_t)n * H + h) * KV + (int64_t)i * V + j] : 0.0f;
    }
    for (int c = c1 - 1; c >= c0; c--) {
        const int64_t t0 = tab[2 * c];
        const int Lc = tab[2 * c + 1];
        const double gL = gam[(t0 + Lc - 1) * H + h];
        if (tid < Lc) {
            const double gr = gam[(t0 + tid) * H + h];
            ed[tid] = expf((float)(gL - gr));
            eq[tid] = scale * expf((float)gr);
        }
        __syncthreads();
        if (on) {
            const float *dSp = dSo + ((int64_t)c * H + h) * KV;
            for (int r = 0; r < Lc; r++) { // dV' = diag(e^{γ_L−γ}) K̂ dS' + Pᵀ dO
                const int64_t row = (t0 + r) * H + h;
                float acc = 0.0f;
                for (int i = 0; i < K; i++) acc = fmaf(ed[r] * kn[row * K + i], dSp[(int64_t)i * V + j], acc);
                for (int s = r; s < Lc; s++) {
                    const int64_t rs = (t0 + s) * H + h;
                    acc = fmaf(P[rs * GB_C + r], bf2f(dout[rs * V + j]), acc);
                }
                dvp[row * V + j] = acc;
            }
            float *dst = c > c0 ? dSo + ((int64_t)(c - 1) * H + h) * KV
                                : (dh0 ? dh0 + ((int64_t)n * H + h) * KV : (float *)0);
            if (dst) {
                const float eL = expf((float)gL);
                for (int i = 0; i < K; i++) { // dS = e^{γ_L} dS' + (diag(scale e^γ) Q̂)ᵀ dO − Wᵀ dV'
                    float acc = 0.0f;
                    for (int r = 0; r < Lc; r++) {
                        const int64_t row = (t0 + r) * H + h;
                        acc = fmaf(eq[r] * qn[row * K + i], bf2f(dout[row * V + j]), acc);
                        acc = fmaf(-W[row * K + i], dvp[row * V + j], acc);
                    }
                    dst[(int64_t)i * V + j] = eL * dSp[(int64_t)i * V + j] + acc;
                }
            }
        }
        __syncthreads(); // ed, eq are rewritten next chunk
    }
}

// grid (n_chunks, H), GB_THREADS: the rest of the CPU's chunk_bwd for one chunk, then its outputs.
// dqw, dkw, dw, tk [rows, K] and tv [rows, V] are fp32 scratch rows of this chunk.
__global__ void __launch_bounds__(GB_THREADS)
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
#define RK(r) (((t0 + (r)) * H + h) * (int64_t)K)
#define RV(r) (((t0 + (r)) * H + h) * (int64_t)V)
#define GAM(r, s) expf((float)(gs[r] - gs[s]))

    if (tid < GB_C) {
        gs[tid] = tid < Lc ? gam[(t0 + tid) * H + h] : gam[(t0 + L) * H + h];
        bs[tid] = tid < Lc ? beta[(t0 + tid) * H + h] : 0.0f;
        dgam[tid] = 0.0;
        dbs[tid] = 0.0f;
    }
    __syncthreads();
    gb_build_T(KK, X, Ts, kn, t0, Lc, H, h, K, bs, gs); // X holds A until step (4)
    const double gL = gs[L];
    const float eL = expf((float)gL);

    // (1) dK = diag(e^{γ_L−γ}) V' dS'ᵀ; a_r = k̂_r·dK_r; e^{γ_L}⟨S, dS'⟩.
    for (int idx = tid; idx < Lc * K; idx += GB_THREADS) {
        const int r = idx / K, i = idx % K;
        const float *vp = Vp + RV(r), *ds = dSp + (int64_t)i * V;
        float acc = 0.0f;
        for (int j = 0; j < V; j++) acc = fmaf(vp[j], ds[j], acc);
        dkw[RK(r) + i] = acc * expf((float)(gL - gs[r]));
    }
    {
        float part = 0.0f;
        for (int64_t idx = tid; idx < KV; idx += GB_THREADS) part = fmaf(S[idx], dSp[idx], part);
        red[tid] = part;
    }
    __syncthreads();
    if (tid < Lc) {
        float a = 0.0f;
        for (int i = 0; i < K; i++) a = fmaf(kn[RK(tid) + i], dkw[RK(tid) + i], a);
        ta[tid] = a;
    }
    __syncthreads();
    if (tid == 0) {
        double sd = 0.0;
        for (int t = 0; t < GB_THREADS; t++) sd += (double)red[t];
        dgam[L] += (double)(eL * (float)sd);
        for (int r = 0; r < Lc; r++) dgam[L] += (double)ta[r], dgam[r] -= (double)ta[r];
    }

    // (2) dQ = diag(scale e^γ) dO Sᵀ; dP = dO V'ᵀ (s ≤ r).
    for (int idx = tid; idx < Lc * K; idx += GB_THREADS) {
        const int r = idx / K, i = idx % K;
        const bf16 *o = dout + RV(r);
        const float *sr = S + (int64_t)i * V;
        float acc = 0.0f;
        for (int j = 0; j < V; j++) acc = fmaf(bf2f(o[j]), sr[j], acc);
        dqw[RK(r) + i] = acc * (scale * expf((float)gs[r]));
    }
    for (int idx = tid; idx < GB_C * GB_C; idx += GB_THREADS) {
        const int r = idx >> 6, s = idx & 63;
        float acc = 0.0f;
        if (r < Lc && s <= r) {
            const bf16 *o = dout + RV(r);
            const float *vp = Vp + RV(s);
            for (int j = 0; j < V; j++) acc = fmaf(bf2f(o[j]), vp[j], acc);
        }
        dP[r * GB_P + s] = acc;
    }
    __syncthreads();
    if (tid < Lc) { // q̂_r·dQ_r and the row sums of E = dP ⊙ P
        const int r = tid;
        float a = 0.0f, e = 0.0f;
        for (int i = 0; i < K; i++) a = fmaf(qn[RK(r) + i], dqw[RK(r) + i], a);
        for (int s = 0; s <= r; s++) e = fmaf(dP[r * GB_P + s], P[((t0 + r) * H + h) * (int64_t)GB_C + s], e);
        ta[r] = a;
        tb[r] = e;
    } else if (tid >= GB_C && tid < GB_C + Lc) { // column sums of E
        const int s = tid - GB_C;
        float e = 0.0f;
        for (int r = s; r < Lc; r++) e = fmaf(dP[r * GB_P + s], P[((t0 + r) * H + h) * (int64_t)GB_C + s], e);
        tc[s] = e;
    }
    __syncthreads();
    if (tid == 0)
        for (int r = 0; r < Lc; r++) dgam[r] += (double)ta[r] + (double)tb[r] - (double)tc[r];
    for (int idx = tid; idx < GB_C * GB_C; idx += GB_THREADS) {
        const int r = idx >> 6, s = idx & 63;
        if (r < Lc && s <= r) dP[r * GB_P + s] *= scale * GAM(r, s);
    }
    __syncthreads();
    // dQ += (dP ⊙ scale Γ) K̂, dK += (dP ⊙ scale Γ)ᵀ Q̂
    for (int idx = tid; idx < Lc * K; idx += GB_THREADS) {
        const int r = idx / K, i = idx % K;
        float aq = 0.0f, ak = 0.0f;
        for (int s = 0; s <= r; s++) aq = fmaf(dP[r * GB_P + s], kn[RK(s) + i], aq);
        for (int s = r; s < Lc; s++) ak = fmaf(dP[s * GB_P + r], qn[RK(s) + i], ak);
        dqw[RK(r) + i] += aq;
        dkw[RK(r) + i] += ak;
    }

    // (3) dW = −dV' Sᵀ
    for (int idx = tid; idx < Lc * K; idx += GB_THREADS) {
        const int r = idx / K, i = idx % K;
        const float *d = dvp + RV(r), *sr = S + (int64_t)i * V;
        float acc = 0.0f;
        for (int j = 0; j < V; j++) acc = fmaf(d[j], sr[j], acc);
        dw[RK(r) + i] = -acc;
    }
    __syncthreads(); // dw complete; X (A) no longer needed before it is overwritten below

    // (4) X = dT = dV' Vbᵀ + dW Kbᵀ; tv = dVb = Tᵀ dV'; tk = dKb = Tᵀ dW.
    for (int idx = tid; idx < GB_C * GB_C; idx += GB_THREADS) {
        const int r = idx >> 6, s = idx & 63;
        float acc = 0.0f;
        if (r < Lc && s < Lc) {
            const float *d = dvp + RV(r), *dwr = dw + RK(r), *ks = kn + RK(s);
            const bf16 *vs = v + RV(s);
            const float bk = bs[s] * expf((float)gs[s]);
            for (int j = 0; j < V; j++) acc = fmaf(d[j], bs[s] * bf2f(vs[j]), acc);
            for (int i = 0; i < K; i++) acc = fmaf(dwr[i], bk * ks[i], acc);
        }
        X[r * GB_P + s] = acc;
    }
    for (int idx = tid; idx < Lc * V; idx += GB_THREADS) {
        const int r = idx / V, j = idx % V;
        float acc = 0.0f;
        for (int s = r; s < Lc; s++) acc = fmaf(Ts[s * GB_P + r], dvp[RV(s) + j], acc);
        tv[RV(r) + j] = acc;
    }
    for (int idx = tid; idx < Lc * K; idx += GB_THREADS) {
        const int r = idx / K, i = idx % K;
        float acc = 0.0f;
        for (int s = r; s < Lc; s++) acc = fmaf(Ts[s * GB_P + r], dw[RK(s) + i], acc);
        tk[RK(r) + i] = acc;
    }
    __syncthreads();
    if (tid < Lc) { // dβ_r += v_r·dVb_r + c_r, dγ_r += β_r c_r with c_r = e^{γ_r} k̂_r·dKb_r
        const int r = tid;
        float db = 0.0f, cr = 0.0f;
        for (int j = 0; j < V; j++) db = fmaf(bf2f(v[RV(r) + j]), tv[RV(r) + j], db);
        for (int i = 0; i < K; i++) cr = fmaf(kn[RK(r) + i], tk[RK(r) + i], cr);
        cr *= expf((float)gs[r]);
        dbs[r] += db + cr;
        ta[r] = bs[r] * cr;
    }
    __syncthreads();
    if (tid == 0)
        for (int r = 0; r < Lc; r++) dgam[r] += (double)ta[r];
    for (int idx = tid; idx < Lc * V; idx += GB_THREADS) {
        const int r = idx / V, j = idx % V;
        dv[RV(r) + j] = f2bf(bs[r] * tv[RV(r) + j]);
    }
    for (int idx = tid; idx < Lc * K; idx += GB_THREADS) {
        const int r = idx / K, i = idx % K;
        dkw[RK(r) + i] += bs[r] * expf((float)gs[r]) * tk[RK(r) + i];
    }

    // (5) dA = −Tᵀ dT Tᵀ: dP := Tᵀ X, then X := −dP Tᵀ.
    for (int idx = tid; idx < GB_C * GB_C; idx += GB_THREADS) {
        const int r = idx >> 6, s = idx & 63;
        float acc = 0.0f;
        for (int m = 0; m < Lc; m++) acc = fmaf(Ts[m * GB_P + r], X[m * GB_P + s], acc);
        dP[r * GB_P + s] = acc;
    }
    __syncthreads();
    for (int idx = tid; idx < GB_C * GB_C; idx += GB_THREADS) {
        const int r = idx >> 6, s = idx & 63;
        float acc = 0.0f;
        for (int m = 0; m < Lc; m++) acc = fmaf(dP[r * GB_P + m], Ts[s * GB_P + m], acc);
        X[r * GB_P + s] = -acc;
    }
    __syncthreads();

    // (6) A_rs = β_r KK_rs Γ_rs (s < r): F = dA ⊙ A to dγ; M = dA ⊙ Γ: dβ_r += Σ_s M_rs KK_rs;
    //     dK += diag(β) M K̂ + (diag(β) M)ᵀ K̂.
    if (tid < Lc) {
        const int r = tid;
        float f = 0.0f, db = 0.0f;
        for (int s = 0; s < r; s++) {
            const float x = X[r * GB_P + s], G = GAM(r, s);
            f = fmaf(x, bs[r] * KK[r * GB_P + s] * G, f);
            db = fmaf(x * G, KK[r * GB_P + s], db);
        }
        tb[r] = f;
        dbs[r] += db;
    } else if (tid >= GB_C && tid < GB_C + Lc) {
        const int s = tid - GB_C;
        float f = 0.0f;
        for (int r = s + 1; r < Lc; r++) f = fmaf(X[r * GB_P + s], bs[r] * KK[r * GB_P + s] * GAM(r, s), f);
        tc[s] = f;
    }
    __syncthreads();
    if (tid == 0)
        for (int r = 0; r < Lc; r++) dgam[r] += (double)tb[r] - (double)tc[r];
    for (int idx = tid; idx < GB_C * GB_C; idx += GB_THREADS) {
        const int r = idx >> 6, s = idx & 63;
        X[r * GB_P + s] = (r < Lc && s < r) ? bs[r] * (X[r * GB_P + s] * GAM(r, s)) : 0.0f;
    }
    __syncthreads();
    for (int idx = tid; idx < Lc * K; idx += GB_THREADS) {
        const int r = idx / K, i = idx % K;
        float acc = 0.0f;
        for (int s = 0; s < r; s++) acc = fmaf(X[r * GB_P + s], kn[RK(s) + i], acc);
        for (int s = r + 1; s < Lc; s++) acc = fmaf(X[s * GB_P + r], kn[RK(s) + i], acc);
        dkw[RK(r) + i] += acc;
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
    if (tid < Lc) {
        float sq = 0.0f, sk = 0.0f;
        if (l2norm)
            for (int i = 0; i < K; i++) {
                sq = fmaf(dqw[RK(tid) + i], qn[RK(tid) + i], sq);
                sk = fmaf(dkw[RK(tid) + i], kn[RK(tid) + i], sk);
            }
        ta[tid] = sq;
        tb[tid] = sk;
    }
    __syncthreads();
    for (int idx = tid; idx < Lc * K; idx += GB_THREADS) {
        const int r = idx / K;
        const int64_t o = RK(r) + idx % K;
        float xq = dqw[o], xk = dkw[o];
        if (l2norm) {
            const int64_t row = (t0 + r) * H + h;
            xq = rq[row] * (xq - qn[o] * ta[r]);
            xk = rk[row] * (xk - kn[o] * tb[r]);
        }
        dq[o] = f2bf(xq);
        dk[o] = f2bf(xk);
    }
#undef RK
#undef RV
#undef GAM
}

// ----------------------------------------------------------------------------------------------------
// launcher

static pn_cuda_scratch gb_ws; // the workspace (one GPU per process)

static size_t gb_prep_smem(void) { return sizeof(double) * GB_C + sizeof(float) * (GB_C + 3 * GB_C * GB_P); }
static size_t gb_chunk_smem(void) {
    return sizeof(double) * 2 * GB_C + sizeof(float) * (5 * GB_C + GB_THREADS + 4 * GB_C * GB_P);
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

    // Chunk table (first row, length) and each sequence's first chunk, built on the host for both layouts.
    int64_t nch = 0;
    for (int n = 0; n < N; n++) {
        const int64_t len = hcu ? hcu[n + 1] - hcu[n] : cfg->T;
        nch += ceil_div64(len, GB_C);
    }
    if (nch > 0x7fffffff) {
        free(hcu);
        return pn_errorf("gdn (cuda): %lld chunks exceed the grid", (long long)nch);
    }
    int *htab = (int *)pn_malloc(sizeof(int) * (size_t)(2 * nch + N + 1));
    int *hcst = htab + 2 * nch;
    {
        int64_t ci = 0;
        for (int n = 0; n < N; n++) {
            const int64_t row0 = hcu ? hcu[n] : (int64_t)n * cfg->T, len = hcu ? hcu[n + 1] - hcu[n] : cfg->T;
            hcst[n] = (int)ci;
            for (int64_t t = 0; t < len; t += GB_C, ci++) {
                htab[2 * ci] = (int)(row0 + t);
                htab[2 * ci + 1] = (int)(len - t < GB_C ? len - t : GB_C);
            }
        }
        hcst[N] = (int)ci;
    }

    // Workspace: γ (double) [R]; qn, kn, W, dqw, dkw, dw, tk [R, K]; Vp, dvp, tv [R, V]; P [R, 64]; rq, rk [R];
    // states, dSo [nch, H, K, V]; then the tables.
    const size_t nk = (size_t)R * K, nv = (size_t)R * V, nst = (size_t)nch * H * K * V;
    const size_t nfl = 7 * nk + 3 * nv + (size_t)R * GB_C + 2 * (size_t)R + 2 * nst;
    const size_t ntab = (size_t)(2 * nch + N + 1);
    char *w = (char *)pn_cuda_scratch_get(&gb_ws, sizeof(double) * (size_t)R + sizeof(float) * nfl + sizeof(int) * ntab);
    double *gam = (double *)w;
    float *f = (float *)(gam + R);
    float *qn = f, *kn = qn + nk, *W = kn + nk, *dqw = W + nk, *dkw = dqw + nk, *dw = dkw + nk, *tk = dw + nk;
    float *Vp = tk + nk, *dvp = Vp + nv, *tv = dvp + nv, *P = tv + nv, *rq = P + (size_t)R * GB_C, *rk = rq + R;
    float *states = rk + R, *dSo = states + nst;
    int *tab = (int *)(dSo + nst), *cst = tab + 2 * nch;
    CUDA_CHECK(cudaMemcpy(tab, htab, sizeof(int) * ntab, cudaMemcpyHostToDevice));

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
    const dim3 gch((unsigned)nch, (unsigned)H), gcol((unsigned)ceil_div64(V, GB_COL_THREADS), (unsigned)H, (unsigned)N);
    GDN_LAUNCH(gdn_bwd_prep_kernel, gch, GB_THREADS, prep_smem, qn, kn, rq, rk, gam, P, W, Vp, (const bf16 *)q,
               (const bf16 *)k, (const bf16 *)v, g, beta, (const int *)tab, H, K, V, scale, cfg->qk_l2norm ? 1 : 0);
    CUDA_LAUNCH_CHECK();
    GDN_LAUNCH(gdn_bwd_states_kernel, gcol, GB_COL_THREADS, sizeof(float) * GB_C, states, Vp, h0, (const float *)kn,
               (const float *)W, (const double *)gam, (const int *)tab, (const int *)cst, H, K, V);
    CUDA_LAUNCH_CHECK();
    GDN_LAUNCH(gdn_bwd_dstate_kernel, gcol, GB_COL_THREADS, sizeof(float) * 2 * GB_C, dSo, dvp, dh0, dht,
               (const bf16 *)dout, (const float *)qn, (const float *)kn, (const float *)W, (const float *)P,
               (const double *)gam, (const int *)tab, (const int *)cst, H, K, V, scale);
    CUDA_LAUNCH_CHECK();
    GDN_LAUNCH(gdn_bwd_chunk_kernel, gch, GB_THREADS, chunk_smem, (bf16 *)dq, (bf16 *)dk, (bf16 *)dv, dg, dbeta, dqw,
               dkw, dw, tk, tv, (const float *)states, (const float *)dSo, (const float *)Vp, (const float *)dvp,
               (const float *)qn, (const float *)kn, (const float *)rq, (const float *)rk, (const double *)gam,
               (const float *)P, (const bf16 *)v, (const bf16 *)dout, beta, (const int *)tab, H, K, V, scale,
               cfg->qk_l2norm ? 1 : 0);
    CUDA_LAUNCH_CHECK();
    free(hcu), free(htab);
    return 0;
}
