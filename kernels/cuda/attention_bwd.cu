// attention_bwd.cu: backward of causal (optionally sliding-window) GQA attention for training, the exact
// transpose of kernels/cpu/attention.c's backward (keys are the T tokens themselves, pos0 = 0): given q, k,
// v, the forward's out and dout, it writes dq, and dk, dv summed over each kv head's GQA group.
//
// Two implementations, and the choice between them is the decision to know about:
// (a) The baseline (any D <= 512, fp32 CUDA cores, no atomics, no T x T buffer), correct and slow:
//     attn_bwd_dq_kernel, one block per query row (t, head, batch), recomputes the row's softmax statistics
//     (L_t and delta_t = <dO_t, O_t>, kept in a [B, Hq, T] workspace) and dQ_t = scale sum_s P_ts (dP_ts -
//     delta_t) K_s; then attn_bwd_dkv_kernel, one block per key row (s, kv head, batch), sums dK_s = scale
//     sum P_ts (dP_ts - delta_t) q_t and dV_s = sum P_ts dO_t over the group's queries that see s.
// (b) FlashAttention-2's backward for D = 64 and 128 (tensor cores, mma.sync.m16n8k16 bf16 in fp32 out,
//     the fragment layouts and ldmatrix addressing of attention.cu's forward), three kernels:
//     attn_bwd_pre_kernel<D>: without the training forward's statistics (lse NULL), a forward-like pass
//       recomputes the log-sum-exp (given them, attn_bwd_prep_kernel only converts them and writes delta): S = Q K^T on tensor cores over the visible key tiles with an online max and sum (no P V),
//       L_t = log2-sum-exp in the log2 domain (scores times scale * log2(e)), so the main kernel's
//       P = exp2(S scale log2(e) - L_t) is one FMA and one exp2. The same kernel writes delta_t.
//       Both go to [B, Hq, Tp] with Tp = T rounded up to 128 (rows past T hold 0), so the main kernel can
//       fetch any 64-row slice with 16-byte cp.async.
//     attn_bwd_main_kernel<D>: one CTA of 8 warps per (128-key block, kv head, batch), heaviest key
//       blocks first (the first keys are seen by the most causal queries). K_j, V_j are loaded once; the
//       CTA walks every (query head of the group, 64-query block) pair that sees the block, skipping
//       blocks wholly outside the causal/window band, Q_i, dO_i, L_i, delta_i double buffered with
//       cp.async. Warp w owns keys 16w .. 16w + 15 and computes the transposed products, so that every
//       operand is a layout the forward already uses: S^T = K Q^T and dP^T = V dO^T (K, V as A fragments,
//       Q, dO as B fragments as the forward's K), P^T = exp2(..) masked per element only on tiles the
//       band or T cuts, dS^T = P^T (dP^T - delta); dV += P^T dO and dK += dS^T Q take P^T and dS^T
//       straight from the accumulators as A fragments (the m16n8 C layout is the m16k16 A layout, as the
//       forward's P) and dO, Q through ldmatrix.trans (as the forward's V). dK and dV (fp32, 128
//       registers per thread at D 128) stay in registers across the whole walk and are written once,
//       dK times scale. P and dS are rounded to bf16 for the mma, as in FlashAttention-2.
//       dQ_i += dS K_j needs a contraction over the keys that the warps split, so dS goes through shared
//       memory ([query][key], bf16) and each warp computes a 16-row x (D / 2) slice of dS K_j. dQ_i gets a
//       partial sum from every key block that sees it, from different CTAs at different times; rather
//       than a second pass that recomputes S and dP per query block (7 instead of 5 matmuls), the
//       partials are added with fp32 atomics (red.global.add; .v2 on sm_90) into an fp32 [B, T, Hq, D]
//       accumulator zeroed with cudaMemsetAsync first. 128-key blocks halve the atomics of 64-key ones.
//       Shared memory: K, V, 2 x (Q, dO) of 64 rows, dS: 154 KB at D 128, one CTA per SM (fits sm_80's 163).
//     attn_bwd_dq_kernel_f32: dq = bf16(scale * accumulator).
//     The order of the fp32 atomics makes dq nondeterministic in its last bits; dk and dv are not.
// (b) runs when D is 64 or 128 and every tensor is 16-byte aligned, unless PN_ATTN_BWD_SIMPLE is set (and
// not "0"), read once; everything else takes (a). The workspace (L, delta, the dQ accumulator) is one
// device buffer grown on demand, kept for the process (one GPU per process, like the kernels' smem
// attribute). Everything runs on the legacy default stream.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.cuh"
#include "mma.cuh"

// ----------------------------------------------------------------------------------------------------
// kernels: (a) the baseline

#define BWD_THREADS 128

__device__ __forceinline__ float bwd_block_sum(float v, float *red) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    float r = 0.0f;
    for (int i = 0; i < (int)(blockDim.x >> 5); i++) r += red[i];
    __syncthreads();
    return r;
}

__device__ __forceinline__ float bwd_block_max(float v, float *red) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    float r = -INFINITY;
    for (int i = 0; i < (int)(blockDim.x >> 5); i++) r = fmaxf(r, red[i]);
    __syncthreads();
    return r;
}

// grid (T, Hq, B). Shared: q, do (D floats each), ds of one key tile (BWD_THREADS floats).
__global__ void __launch_bounds__(BWD_THREADS)
    attn_bwd_dq_kernel(bf16 *dq, float *lse, float *delta, const bf16 *q, const bf16 *k, const bf16 *v, const bf16 *o,
                       const bf16 *dout, int T, int Hq, int Hkv, int D, int window, float scale, const int32_t *cu,
                       int n_docs) {
    extern __shared__ float sm[];
    float *qs = sm, *dos = sm + D, *tile = sm + 2 * D, *red = tile + BWD_THREADS;
    const int t = blockIdx.x, h = blockIdx.y, b = blockIdx.z, kvh = h / (Hq / Hkv);
    const int s0 = max(window > 0 && t - window + 1 > 0 ? t - window + 1 : 0, (int)pn_doc_lo(cu, n_docs, t));
    const int64_t row = ((int64_t)(b * T + t) * Hq + h) * D;
    float part = 0.0f;
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        qs[d] = bf2f(q[row + d]);
        dos[d] = bf2f(dout[row + d]);
        part += dos[d] * bf2f(o[row + d]);
    }
    __syncthreads();
    const float dlt = bwd_block_sum(part, red);
    // Pass A: the row's max and sum of exp (scores of one key per thread, keys in tiles).
    float mx = -INFINITY;
    for (int s = s0 + threadIdx.x; s <= t; s += blockDim.x) {
        const bf16 *kr = k + ((int64_t)(b * T + s) * Hkv + kvh) * D;
        float dot = 0.0f;
        for (int d = 0; d < D; d++) dot += qs[d] * bf2f(kr[d]);
        mx = fmaxf(mx, dot * scale);
    }
    mx = bwd_block_max(mx, red);
    float sum = 0.0f;
    for (int s = s0 + threadIdx.x; s <= t; s += blockDim.x) {
        const bf16 *kr = k + ((int64_t)(b * T + s) * Hkv + kvh) * D;
        float dot = 0.0f;
        for (int d = 0; d < D; d++) dot += qs[d] * bf2f(kr[d]);
        sum += __expf(dot * scale - mx);
    }
    sum = bwd_block_sum(sum, red);
    const float L = mx + logf(sum);
    if (threadIdx.x == 0) {
        lse[((int64_t)b * Hq + h) * T + t] = L;
        delta[((int64_t)b * Hq + h) * T + t] = dlt;
    }
    // Pass B: dS for a tile of keys (one per thread), then each thread accumulates its dims of dQ.
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f}; // D <= 4 * BWD_THREADS
    for (int base = s0; base <= t; base += blockDim.x) {
        const int s = base + (int)threadIdx.x;
        float ds = 0.0f;
        if (s <= t) {
            const bf16 *kr = k + ((int64_t)(b * T + s) * Hkv + kvh) * D, *vr = v + ((int64_t)(b * T + s) * Hkv + kvh) * D;
            float dot = 0.0f, dp = 0.0f;
            for (int d = 0; d < D; d++) dot += qs[d] * bf2f(kr[d]), dp += dos[d] * bf2f(vr[d]);
            const float p = __expf(dot * scale - L);
            ds = p * (dp - dlt) * scale;
        }
        tile[threadIdx.x] = ds;
        __syncthreads();
        const int n = min((int)blockDim.x, t - base + 1);
        for (int j = 0; j < n; j++) {
            const bf16 *kr = k + ((int64_t)(b * T + base + j) * Hkv + kvh) * D;
            const float w = tile[j];
#pragma unroll
            for (int c = 0; c < 4; c++) {
                const int d = threadIdx.x + c * blockDim.x;
                if (d < D) acc[c] += w * bf2f(kr[d]);
            }
        }
        __syncthreads();
    }
#pragma unroll
    for (int c = 0; c < 4; c++) {
        const int d = threadIdx.x + c * blockDim.x;
        if (d < D) dq[row + d] = f2bf(acc[c]);
    }
}

// grid (T, Hkv, B). Shared: k, v rows (D floats each), P and dS of one query tile (2 x BWD_THREADS floats).
__global__ void __launch_bounds__(BWD_THREADS)
    attn_bwd_dkv_kernel(bf16 *dk, bf16 *dv, const float *lse, const float *delta, const bf16 *q, const bf16 *k,
                        const bf16 *v, const bf16 *dout, int T, int Hq, int Hkv, int D, int window, float scale,
                        const int32_t *cu, int n_docs) {
    extern __shared__ float sm[];
    float *ks = sm, *vs = sm + D, *ptile = sm + 2 * D, *dstile = ptile + BWD_THREADS;
    const int s = blockIdx.x, kvh = blockIdx.y, b = blockIdx.z, group = Hq / Hkv;
    // The last query that sees s: the window's, and in a packed batch the last of s's document.
    const int t1 = min(window > 0 && s + window - 1 < T - 1 ? s + window - 1 : T - 1,
                       (int)pn_doc_hi(cu, n_docs, s, T) - 1);
    const int64_t krow = ((int64_t)(b * T + s) * Hkv + kvh) * D;
    for (int d = threadIdx.x; d < D; d += blockDim.x) ks[d] = bf2f(k[krow + d]), vs[d] = bf2f(v[krow + d]);
    __syncthreads();
    float adk[4] = {0.0f, 0.0f, 0.0f, 0.0f}, adv[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int h = kvh * group; h < (kvh + 1) * group; h++)
        for (int base = s; base <= t1; base += blockDim.x) {
            const int t = base + (int)threadIdx.x;
            float p = 0.0f, ds = 0.0f;
            if (t <= t1) {
                const int64_t qrow = ((int64_t)(b * T + t) * Hq + h) * D;
                float dot = 0.0f, dp = 0.0f;
                for (int d = 0; d < D; d++) dot += bf2f(q[qrow + d]) * ks[d], dp += bf2f(dout[qrow + d]) * vs[d];
                p = __expf(dot * scale - lse[((int64_t)b * Hq + h) * T + t]);
                ds = p * (dp - delta[((int64_t)b * Hq + h) * T + t]) * scale;
            }
            ptile[threadIdx.x] = p;
            dstile[threadIdx.x] = ds;
            __syncthreads();
            const int n = min((int)blockDim.x, t1 - base + 1);
            for (int j = 0; j < n; j++) {
                const int64_t qrow = ((int64_t)(b * T + base + j) * Hq + h) * D;
                const float pj = ptile[j], dsj = dstile[j];
#pragma unroll
                for (int c = 0; c < 4; c++) {
                    const int d = threadIdx.x + c * blockDim.x;
                    if (d < D) adk[c] += dsj * bf2f(q[qrow + d]), adv[c] += pj * bf2f(dout[qrow + d]);
                }
            }
            __syncthreads();
        }
#pragma unroll
    for (int c = 0; c < 4; c++) {
        const int d = threadIdx.x + c * blockDim.x;
        if (d < D) dk[krow + d] = f2bf(adk[c]), dv[krow + d] = f2bf(adv[c]);
    }
}

// ----------------------------------------------------------------------------------------------------
// kernels: (b) the flash backward

#define PRE_BN 64                         // keys per tile of the preprocessing kernel
#define PRE_MT 2                          // m16 row tiles per warp there (as the forward)
#define PRE_NW 4                          // warps of the preprocessing kernel
#define PRE_BM (16 * PRE_MT * PRE_NW)     // queries per preprocessing CTA: 128
#define PRE_THREADS (32 * PRE_NW)
#define AB_NW 8                           // warps of the main kernel, 16 keys each
#define AB_BC (16 * AB_NW)                // keys per main CTA: 128
#define AB_BR 64                          // queries per step of the main kernel
#define AB_THREADS (32 * AB_NW)
#define AB_TPAD 128                       // rows of L and delta per (batch, head): T rounded up to this

template <int D>
struct ab_cfg {
    static constexpr int LD = D + 8;      // smem row pitch in elements: +16 bytes spreads ldmatrix rows over all banks
    static constexpr int LDS = AB_BC + 8; // pitch of the dS tile [AB_BR][LDS]
    // Queries per phase-1 sub-step: S^T and dP^T take QSUB / 2 registers each. At D 128, 32 keeps ptxas
    // within 255 registers without spills on sm_90 (64: 40 bytes of spills) for re-reading K and V fragments.
    static constexpr int QSUB = D > 64 ? 32 : 64;
    static constexpr int DQC = 4 * D / AB_NW; // dQ columns per warp: 4 row tiles x (D / DQC) column slices = AB_NW
    static constexpr size_t PRE_SMEM = (size_t)(PRE_BM * LD + 2 * PRE_BN * LD) * sizeof(bf16); // Q, K x 2
    // K, V, then Q and dO x 2 buffers, dS, then L and delta x 2 buffers (fp32)
    static constexpr size_t SMEM =
        (size_t)(2 * AB_BC * LD + 4 * AB_BR * LD + AB_BR * LDS) * sizeof(bf16) + 4 * AB_BR * sizeof(float);
    static_assert(D % 16 == 0 && AB_BR % QSUB == 0 && QSUB % 16 == 0, "tile shapes");
    static_assert(DQC % 16 == 0 && (AB_BR / 16) * (D / DQC) == AB_NW, "one dQ slice per warp");
};


// A fragment (16 rows x 16 k) from the accumulators of two m16n8 tiles (k 0 .. 7, then 8 .. 15).
__device__ __forceinline__ void ab_c_to_a(uint32_t *a, const float *c0, const float *c1) {
    a[0] = pack_bf16(c0[0], c0[1]);
    a[1] = pack_bf16(c0[2], c0[3]);
    a[2] = pack_bf16(c1[0], c1[1]);
    a[3] = pack_bf16(c1[2], c1[3]);
}

// p[0] += x, p[1] += y in global memory, result unused (RED); p 8-byte aligned.
__device__ __forceinline__ void ab_red_add2(float *p, float x, float y) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    atomicAdd((float2 *)p, make_float2(x, y));
#else
    atomicAdd(p, x);
    atomicAdd(p + 1, y);
#endif
}

// Preprocessing: lse2[b, h, t] = log2 sum_s exp2(scale log2(e) q_t.k_s) over the keys t sees, and
// delta[b, h, t] = <dO_t, O_t>, both [B, Hq, Tp] fp32 (rows T .. Tp - 1 set to 0).
// grid (Tp / PRE_BM, Hq, B), PRE_THREADS threads, ab_cfg<D>::PRE_SMEM bytes of dynamic shared memory.
// The S = Q K^T loop is attention.cu's attn_flash_kernel without the P V product.
template <int D>
__global__ void __launch_bounds__(PRE_THREADS)
    attn_bwd_pre_kernel(float *lse2, float *delta, const bf16 *q, const bf16 *k, const bf16 *o, const bf16 *dout,
                        int T, int Tp, int Hq, int Hkv, int window, float scale_log2, const int32_t *cu, int n_docs) {
    constexpr int LD = ab_cfg<D>::LD, TILE = PRE_BN * LD, CPR = D / 8; // CPR: 16-byte chunks per row
    extern __shared__ __align__(16) unsigned char ab_pre_smem[];
    bf16 *Qs = (bf16 *)ab_pre_smem; // [PRE_BM][LD]
    bf16 *Ks = Qs + PRE_BM * LD;    // [2][PRE_BN][LD]

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, tig = lane & 3;
    const int mb = gridDim.x - 1 - blockIdx.x; // the longest (last) query blocks start first
    const int h = blockIdx.y, b = blockIdx.z, hk = h / (Hq / Hkv);
    const int t0 = mb * PRE_BM, t_last = min(t0 + PRE_BM, T) - 1; // t0 < T: Tp / PRE_BM blocks
    // Packed documents as in the forward: keys from the block's first document on, dlo per row.
    const int lo = max((window > 0 && t0 - window + 1 > 0) ? t0 - window + 1 : 0, (int)pn_doc_lo(cu, n_docs, t0));
    const int doc_last = (int)pn_doc_lo(cu, n_docs, t_last);
    const int n_first = lo / PRE_BN, n_last = t_last / PRE_BN;
    const int64_t q_stride = (int64_t)Hq * D, kv_stride = (int64_t)Hkv * D;
    const bf16 *qb = q + ((int64_t)b * T * Hq + h) * D;
    const bf16 *kb = k + ((int64_t)b * T * Hkv + hk) * D;
    const int64_t stat0 = ((int64_t)b * Hq + h) * Tp + t0; // this block's first row of lse2 and delta

    // The Q block; rows past T become zeros.
    for (int c = tid; c < PRE_BM * CPR; c += PRE_THREADS) {
        const int r = c / CPR, col = (c % CPR) * 8, t = t0 + r;
        if (t < T)
            cp_async16(Qs + r * LD + col, qb + t * q_stride + col);
        else
            *(uint4 *)(Qs + r * LD + col) = make_uint4(0, 0, 0, 0);
    }
    // Key tile n into buffer buf; keys past T become zeros.
    auto load_tile = [&](int n, int buf) {
        bf16 *kd = Ks + buf * TILE;
        for (int c = tid; c < PRE_BN * CPR; c += PRE_THREADS) {
            const int r = c / CPR, col = (c % CPR) * 8, s = n * PRE_BN + r;
            if (s < T)
                cp_async16(kd + r * LD + col, kb + s * kv_stride + col);
            else
                *(uint4 *)(kd + r * LD + col) = make_uint4(0, 0, 0, 0);
        }
    };
    load_tile(n_first, 0);
    cp_async_commit(); // group 0: Q and the first tile

    // delta while the tiles load: CPR consecutive lanes share a row (CPR divides 32), one 16-byte chunk each.
    for (int c = tid; c < PRE_BM * CPR; c += PRE_THREADS) {
        const int r = c / CPR, col = (c % CPR) * 8, t = t0 + r;
        float part = 0.0f;
        if (t < T) {
            const int64_t off = ((int64_t)b * T + t) * q_stride + (int64_t)h * D + col;
            bf16x8 ov, dv;
            ov.u = *(const uint4 *)(o + off);
            dv.u = *(const uint4 *)(dout + off);
#pragma unroll
            for (int i = 0; i < 8; i++) part += bf2f(ov.h[i]) * bf2f(dv.h[i]);
        }
#pragma unroll
        for (int x = CPR / 2; x > 0; x >>= 1) part += __shfl_xor_sync(0xffffffffu, part, x);
        if (c % CPR == 0) delta[stat0 + r] = part; // 0 for rows past T
    }

    const int rw = warp * 16 * PRE_MT; // this warp's first row in the block
    int dlo[PRE_MT][2]; // relative to t0; INT32_MIN when not packed
#pragma unroll
    for (int mi = 0; mi < PRE_MT; mi++)
#pragma unroll
        for (int r = 0; r < 2; r++)
            dlo[mi][r] = cu ? (int)pn_doc_lo(cu, n_docs, min(t0 + rw + mi * 16 + g + 8 * r, T - 1)) - t0 : INT32_MIN;
    float m[PRE_MT][2], l[PRE_MT][2];  // running max (log2 domain); this thread's share of the row sums
#pragma unroll
    for (int mi = 0; mi < PRE_MT; mi++) m[mi][0] = m[mi][1] = -INFINITY, l[mi][0] = l[mi][1] = 0.0f;

    for (int n = n_first; n <= n_last; n++) {
        const int buf = (n - n_first) & 1;
        if (n < n_last) {
            load_tile(n + 1, buf ^ 1); // that buffer was released by the barrier ending the last iteration
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        const bf16 *kt = Ks + buf * TILE;

        float s[PRE_MT][PRE_BN / 8][4];
#pragma unroll
        for (int mi = 0; mi < PRE_MT; mi++)
#pragma unroll
            for (int j = 0; j < PRE_BN / 8; j++) s[mi][j][0] = s[mi][j][1] = s[mi][j][2] = s[mi][j][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            uint32_t qa[PRE_MT][4];
#pragma unroll
            for (int mi = 0; mi < PRE_MT; mi++)
                ldmatrix_x4(qa[mi], Qs + (rw + mi * 16 + (lane & 15)) * LD + kk * 16 + (lane >> 4) * 8);
#pragma unroll
            for (int j2 = 0; j2 < PRE_BN / 16; j2++) {
                uint32_t bk[4];
                ldmatrix_x4(bk, kt + (j2 * 16 + (lane & 7) + ((lane >> 4) & 1) * 8) * LD + kk * 16 +
                                       ((lane >> 3) & 1) * 8);
#pragma unroll
                for (int mi = 0; mi < PRE_MT; mi++) {
                    mma_bf16(s[mi][2 * j2], qa[mi], bk[0], bk[1]);
                    mma_bf16(s[mi][2 * j2 + 1], qa[mi], bk[2], bk[3]);
                }
            }
        }

        const int kbase = n * PRE_BN;
        const bool need_mask =
            (kbase + PRE_BN - 1 > t0) || (window > 0 && kbase < t_last - window + 1) || kbase < doc_last;
        if (need_mask) {
            const int krel = kbase - t0 + 2 * tig;
#pragma unroll
            for (int mi = 0; mi < PRE_MT; mi++)
#pragma unroll
                for (int j = 0; j < PRE_BN / 8; j++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int key = krel + j * 8 + (e & 1), row = rw + mi * 16 + g + 8 * (e >> 1);
                        if (key > row || (window > 0 && row - key >= window) || key < dlo[mi][e >> 1])
                            s[mi][j][e] = -INFINITY;
                    }
        }
#pragma unroll
        for (int mi = 0; mi < PRE_MT; mi++)
#pragma unroll
            for (int r = 0; r < 2; r++) {
                float mx = -INFINITY;
#pragma unroll
                for (int j = 0; j < PRE_BN / 8; j++)
                    mx = fmaxf(mx, fmaxf(s[mi][j][2 * r], s[mi][j][2 * r + 1]) * scale_log2);
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                const float mn = fmaxf(m[mi][r], mx);
                const float mu = mn == -INFINITY ? 0.0f : mn; // no visible key yet: exp2 gives 0, not NaN
                float rs = 0.0f;
#pragma unroll
                for (int j = 0; j < PRE_BN / 8; j++)
                    rs += exp2f(s[mi][j][2 * r] * scale_log2 - mu) + exp2f(s[mi][j][2 * r + 1] * scale_log2 - mu);
                l[mi][r] = l[mi][r] * exp2f(m[mi][r] - mu) + rs;
                m[mi][r] = mn;
            }
        __syncthreads(); // every warp is done with buffer buf before the next iteration refills it
    }

#pragma unroll
    for (int mi = 0; mi < PRE_MT; mi++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float sum = l[mi][r];
            sum += __shfl_xor_sync(0xffffffffu, sum, 1);
            sum += __shfl_xor_sync(0xffffffffu, sum, 2);
            const int row = rw + mi * 16 + g + 8 * r;
            // Every row before T sees its own key, so m is finite and sum >= 1 there.
            if (tig == 0) lse2[stat0 + row] = t0 + row < T ? m[mi][r] + log2f(sum) : 0.0f;
        }
}

// The main kernel: dk, dv of one 128-key block (all of the kv head's group summed) and its atomic partials
// of dq. grid (ceil(T / AB_BC) * B * Hkv), block index = key block * B * Hkv + b * Hkv + kv head, so the
// heaviest (first) key blocks start first; AB_THREADS threads, ab_cfg<D>::SMEM bytes of shared memory.
// lse2, delta: [B, Hq, Tp] from attn_bwd_pre_kernel; dqacc: [B, T, Hq, D] fp32, zeroed before.
template <int D>
__global__ void __launch_bounds__(AB_THREADS, 1)
    attn_bwd_main_kernel(bf16 *dk, bf16 *dv, float *dqacc, const float *lse2, const float *delta, const bf16 *q,
                         const bf16 *k, const bf16 *v, const bf16 *dout, int B, int T, int Tp, int Hq, int Hkv,
                         int window, float scale_log2, float scale, const int32_t *cu, int n_docs) {
    constexpr int LD = ab_cfg<D>::LD, LDS = ab_cfg<D>::LDS, QSUB = ab_cfg<D>::QSUB, DQC = ab_cfg<D>::DQC;
    constexpr int CPR = D / 8, QTILE = AB_BR * LD;
    extern __shared__ __align__(16) unsigned char ab_main_smem[];
    bf16 *Ks = (bf16 *)ab_main_smem;         // [AB_BC][LD]
    bf16 *Vs = Ks + AB_BC * LD;              // [AB_BC][LD]
    bf16 *Qs = Vs + AB_BC * LD;              // [2][AB_BR][LD]
    bf16 *dOs = Qs + 2 * QTILE;              // [2][AB_BR][LD]
    bf16 *dSs = dOs + 2 * QTILE;             // [AB_BR][LDS]: dS of the current step, [query][key]
    float *Ls = (float *)(dSs + AB_BR * LDS); // [2][AB_BR]
    float *Dls = Ls + 2 * AB_BR;             // [2][AB_BR]

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, tig = lane & 3; // mma fragment coordinates: row group, thread in group
    const int BH = B * Hkv, jb = blockIdx.x / BH, bh = blockIdx.x % BH, b = bh / Hkv, hk = bh % Hkv;
    const int G = Hq / Hkv;
    const int k0 = jb * AB_BC, k_last = min(k0 + AB_BC, T) - 1;
    // Queries that see some key of the block: k0 .. min(T - 1, k_last + window - 1), a contiguous range.
    // In a packed batch also no query past the last key's document.
    const int t_hi = min(window > 0 ? (int)min((int64_t)T - 1, (int64_t)k_last + window - 1) : T - 1,
                         (int)pn_doc_hi(cu, n_docs, k_last, T) - 1);
    const int doc_first_end = (int)pn_doc_hi(cu, n_docs, k0, T); // the earliest document end of the block's keys
    const int i_first = k0 / AB_BR, nI = t_hi / AB_BR - i_first + 1, n_it = G * nI;
    const int64_t q_stride = (int64_t)Hq * D, kv_stride = (int64_t)Hkv * D;

    // K and V of the block; keys past T become zeros.
    {
        const bf16 *kb = k + ((int64_t)b * T * Hkv + hk) * D, *vb = v + ((int64_t)b * T * Hkv + hk) * D;
        for (int c = tid; c < AB_BC * CPR; c += AB_THREADS) {
            const int r = c / CPR, col = (c % CPR) * 8, s = k0 + r;
            if (s < T) {
                cp_async16(Ks + r * LD + col, kb + s * kv_stride + col);
                cp_async16(Vs + r * LD + col, vb + s * kv_stride + col);
            } else {
                *(uint4 *)(Ks + r * LD + col) = make_uint4(0, 0, 0, 0);
                *(uint4 *)(Vs + r * LD + col) = make_uint4(0, 0, 0, 0);
            }
        }
    }
    // Step `it` (query head hk * G + it / nI, query block i_first + it % nI): Q, dO, L, delta into buffer buf;
    // query rows past T become zeros (L and delta rows past T are 0 in the workspace).
    auto load_step = [&](int it, int buf) {
        const int h = hk * G + it / nI, q0 = (i_first + it % nI) * AB_BR;
        const bf16 *qb = q + ((int64_t)b * T * Hq + h) * D, *db = dout + ((int64_t)b * T * Hq + h) * D;
        bf16 *qd = Qs + buf * QTILE, *dd = dOs + buf * QTILE;
        for (int c = tid; c < AB_BR * CPR; c += AB_THREADS) {
            const int r = c / CPR, col = (c % CPR) * 8, t = q0 + r;
            if (t < T) {
                cp_async16(qd + r * LD + col, qb + t * q_stride + col);
                cp_async16(dd + r * LD + col, db + t * q_stride + col);
            } else {
                *(uint4 *)(qd + r * LD + col) = make_uint4(0, 0, 0, 0);
                *(uint4 *)(dd + r * LD + col) = make_uint4(0, 0, 0, 0);
            }
        }
        if (tid < AB_BR / 2) { // AB_BR / 4 chunks of 4 floats for L, as many for delta; q0 + AB_BR <= Tp
            const int c = tid % (AB_BR / 4);
            const int64_t src = ((int64_t)b * Hq + h) * Tp + q0 + 4 * c;
            if (tid < AB_BR / 4)
                cp_async16(Ls + buf * AB_BR + 4 * c, lse2 + src);
            else
                cp_async16(Dls + buf * AB_BR + 4 * c, delta + src);
        }
    };
    load_step(0, 0);
    cp_async_commit(); // group 0: K, V and step 0

    const int kr = warp * 16; // this warp's first key row in the block
    int dhi[2]; // one past the last query of the document of this thread's keys kr + g, + 8 (T if not packed)
#pragma unroll
    for (int r = 0; r < 2; r++) dhi[r] = (int)pn_doc_hi(cu, n_docs, min(k0 + kr + g + 8 * r, T - 1), T);
    float dka[D / 8][4], dva[D / 8][4]; // dK, dV accumulators: rows (keys kr + g, + 8) x dims 8n + 2 tig, + 1
#pragma unroll
    for (int n = 0; n < D / 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) dka[n][e] = dva[n][e] = 0.0f;

    for (int it = 0; it < n_it; it++) {
        const int buf = it & 1;
        if (it + 1 < n_it) {
            // Buffer buf ^ 1 was last read before the barrier that ended phase 1 of the previous step.
            load_step(it + 1, buf ^ 1);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads(); // step it's tiles visible; every warp is done reading dSs (phase 2 of the last step)
        const int h = hk * G + it / nI, q0 = (i_first + it % nI) * AB_BR;
        const bf16 *qt = Qs + buf * QTILE, *dot = dOs + buf * QTILE;
        const float *lt = Ls + buf * AB_BR, *dlt = Dls + buf * AB_BR;
        // Does the causal/window band or the end of the sequence cut this (query block, key block) tile?
        const bool need_mask =
            (k0 + AB_BC - 1 > q0) || (window > 0 && q0 + AB_BR - 1 - k0 >= window) || (q0 + AB_BR > doc_first_end);

        // Phase 1, per QSUB queries: S^T, dP^T, P^T, dS^T; dV += P^T dO, dK += dS^T Q; dS into dSs.
#pragma unroll
        for (int qs = 0; qs < AB_BR; qs += QSUB) {
            float st[QSUB / 8][4], dpt[QSUB / 8][4]; // rows keys kr + g, + 8; columns queries qs + 8j + 2 tig, + 1
#pragma unroll
            for (int j = 0; j < QSUB / 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) st[j][e] = dpt[j][e] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) {
                uint32_t ka[4], va[4]; // A fragments: keys kr .. kr + 15, dims 16 kk .. + 15
                ldmatrix_x4(ka, Ks + (kr + (lane & 15)) * LD + kk * 16 + (lane >> 4) * 8);
                ldmatrix_x4(va, Vs + (kr + (lane & 15)) * LD + kk * 16 + (lane >> 4) * 8);
#pragma unroll
                for (int j2 = 0; j2 < QSUB / 16; j2++) {
                    // B fragments: b0, b1 of queries qs + 16 j2 .. + 7, then of + 8 .. + 15
                    const int off = (qs + j2 * 16 + (lane & 7) + ((lane >> 4) & 1) * 8) * LD + kk * 16 +
                                    ((lane >> 3) & 1) * 8;
                    uint32_t bq[4], bd[4];
                    ldmatrix_x4(bq, qt + off);
                    ldmatrix_x4(bd, dot + off);
                    mma_bf16(st[2 * j2], ka, bq[0], bq[1]);
                    mma_bf16(st[2 * j2 + 1], ka, bq[2], bq[3]);
                    mma_bf16(dpt[2 * j2], va, bd[0], bd[1]);
                    mma_bf16(dpt[2 * j2 + 1], va, bd[2], bd[3]);
                }
            }
            // P^T = exp2(S^T scale log2(e) - L) (0 where masked), dS^T = P^T (dP^T - delta), unscaled.
#pragma unroll
            for (int j = 0; j < QSUB / 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) {
                    const int ql = qs + j * 8 + 2 * tig + (e & 1), t = q0 + ql, s = k0 + kr + g + 8 * (e >> 1);
                    float p = exp2f(fmaf(st[j][e], scale_log2, -lt[ql]));
                    if (need_mask && (t >= dhi[e >> 1] || s > t || (window > 0 && t - s >= window))) p = 0.0f;
                    st[j][e] = p;
                    dpt[j][e] = p * (dpt[j][e] - dlt[ql]);
                }
            // dV += P^T dO and dK += dS^T Q over these QSUB queries: P^T, dS^T as A fragments from the
            // accumulators, dO and Q (k = query, n = dim) through ldmatrix.trans.
#pragma unroll
            for (int kk = 0; kk < QSUB / 16; kk++) {
                uint32_t pa[4], sa[4];
                ab_c_to_a(pa, st[2 * kk], st[2 * kk + 1]);
                ab_c_to_a(sa, dpt[2 * kk], dpt[2 * kk + 1]);
#pragma unroll
                for (int n2 = 0; n2 < D / 16; n2++) {
                    // b0, b1 of dims 16 n2 .. + 7, then of + 8 .. + 15
                    const int off = (qs + kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + n2 * 16 + (lane >> 4) * 8;
                    uint32_t bd[4], bq[4];
                    ldmatrix_x4_trans(bd, dot + off);
                    mma_bf16(dva[2 * n2], pa, bd[0], bd[1]);
                    mma_bf16(dva[2 * n2 + 1], pa, bd[2], bd[3]);
                    ldmatrix_x4_trans(bq, qt + off);
                    mma_bf16(dka[2 * n2], sa, bq[0], bq[1]);
                    mma_bf16(dka[2 * n2 + 1], sa, bq[2], bq[3]);
                }
            }
            // dS (bf16, as it entered dK) into dSs[query][key], element by element (a transpose).
#pragma unroll
            for (int j = 0; j < QSUB / 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    dSs[(qs + j * 8 + 2 * tig + (e & 1)) * LDS + kr + g + 8 * (e >> 1)] = f2bf(dpt[j][e]);
        }
        __syncthreads(); // dSs complete

        // Phase 2: this warp's slice of dS K (query rows 16 rt .. + 15, dims c0 .. c0 + DQC - 1), added to dqacc.
        {
            const int rt = warp % (AB_BR / 16), c0 = (warp / (AB_BR / 16)) * DQC;
            float acc[DQC / 8][4];
#pragma unroll
            for (int n = 0; n < DQC / 8; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
#pragma unroll
            for (int kk = 0; kk < AB_BC / 16; kk++) {
                uint32_t a[4]; // dS rows 16 rt .. + 15, keys 16 kk .. + 15
                ldmatrix_x4(a, dSs + (rt * 16 + (lane & 15)) * LDS + kk * 16 + (lane >> 4) * 8);
#pragma unroll
                for (int n2 = 0; n2 < DQC / 16; n2++) {
                    uint32_t bk[4]; // K (k = key, n = dim) through ldmatrix.trans
                    ldmatrix_x4_trans(bk, Ks + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + c0 +
                                                 n2 * 16 + (lane >> 4) * 8);
                    mma_bf16(acc[2 * n2], a, bk[0], bk[1]);
                    mma_bf16(acc[2 * n2 + 1], a, bk[2], bk[3]);
                }
            }
#pragma unroll
            for (int r = 0; r < 2; r++) {
                const int t = q0 + rt * 16 + g + 8 * r;
                if (t < T) {
                    float *dst = dqacc + ((int64_t)b * T + t) * q_stride + (int64_t)h * D + c0 + 2 * tig;
#pragma unroll
                    for (int n = 0; n < DQC / 8; n++) ab_red_add2(dst + n * 8, acc[n][2 * r], acc[n][2 * r + 1]);
                }
            }
        }
    }

    // dK (times scale) and dV of this warp's 16 keys; keys past T belong to no token.
#pragma unroll
    for (int r = 0; r < 2; r++) {
        const int s = k0 + kr + g + 8 * r;
        if (s < T) {
            const int64_t off = ((int64_t)b * T + s) * kv_stride + (int64_t)hk * D + 2 * tig;
#pragma unroll
            for (int n = 0; n < D / 8; n++) {
                *(__nv_bfloat162 *)(dk + off + n * 8) =
                    __floats2bfloat162_rn(dka[n][2 * r] * scale, dka[n][2 * r + 1] * scale);
                *(__nv_bfloat162 *)(dv + off + n * 8) = __floats2bfloat162_rn(dva[n][2 * r], dva[n][2 * r + 1]);
            }
        }
    }
}

// dq = bf16(scale * acc), 4 elements per thread and step (n4 = elements / 4). grid-stride, 256 threads.
__global__ void attn_bwd_dq_kernel_f32(bf16 *dq, const float *acc, int64_t n4, float scale) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += (int64_t)gridDim.x * blockDim.x) {
        const float4 a = ((const float4 *)acc)[i];
        const __nv_bfloat162 lo = __floats2bfloat162_rn(a.x * scale, a.y * scale);
        const __nv_bfloat162 hi = __floats2bfloat162_rn(a.z * scale, a.w * scale);
        uint2 u;
        u.x = *(const uint32_t *)&lo;
        u.y = *(const uint32_t *)&hi;
        ((uint2 *)dq)[i] = u;
    }
}

// ----------------------------------------------------------------------------------------------------
// launchers


// The workspace (the context's): (a) L, delta; (b) L, delta, the dQ accumulator.
static float *workspace(size_t need) { return (float *)pn_cuda_ws(PN_WS_ATTN_BWD, need); }

// stats = lse2 ln 2: cuDNN's softmax statistics (natural log) from the pre-pass's log2-domain sums.
__global__ void attn_stats_kernel(float *stats, const float *lse2, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
        stats[i] = lse2[i] * 0.6931471805599453f;
}

// From the training forward's statistics instead of the pre-pass: lse2 = lse log2(e) and delta = <dO_t, O_t>,
// both [B, Hq, Tp] (rows past T 0). One warp per row (b, h, t < Tp); no Q K^T pass.
__global__ void attn_bwd_prep_kernel(float *lse2, float *delta, const float *lse, const bf16 *o, const bf16 *dout,
                                     int B, int T, int Tp, int Hq, int D) {
    const int lane = threadIdx.x & 31;
    const int64_t row = (int64_t)blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5);
    if (row >= (int64_t)B * Hq * Tp) return; // the whole warp: one row per warp
    const int t = (int)(row % Tp), h = (int)((row / Tp) % Hq), b = (int)(row / ((int64_t)Tp * Hq));
    float L = 0.0f, dl = 0.0f;
    if (t < T) {
        const int64_t off = (((int64_t)b * T + t) * Hq + h) * D;
        for (int i = lane; i < D; i += 32) dl = fmaf(bf2f(o[off + i]), bf2f(dout[off + i]), dl);
        L = lse[((int64_t)b * T + t) * Hq + h] * 1.4426950408889634f;
    }
#pragma unroll
    for (int s = 16; s > 0; s >>= 1) dl += __shfl_xor_sync(0xffffffffu, dl, s);
    if (lane == 0) lse2[row] = L, delta[row] = dl;
}

// lse[b, t, h] = lse2[b, h, t] ln 2: the statistics attention_train returns, from the pre-pass.
__global__ void attn_lse_kernel(float *lse, const float *lse2, int T, int Tp, int Hq, int64_t n) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t h = i % Hq, t = (i / Hq) % T, b = i / ((int64_t)Hq * T);
        lse[i] = lse2[(b * Hq + h) * Tp + t] * 0.6931471805599453f;
    }
}

// The statistics by brute force, one warp per (token, head) row: the fallback for head sizes the pre-pass
// does not cover (the backward never needs them there; attention_train still returns them).
__global__ void attn_lse_naive_kernel(float *lse, const bf16 *q, const bf16 *k, int B, int T, int Hq, int Hkv, int D,
                                      int window, float scale, const int32_t *cu, int n_docs) {
    const int lane = threadIdx.x & 31;
    const int64_t row = (int64_t)blockIdx.x * (blockDim.x / 32) + (threadIdx.x >> 5), rows = (int64_t)B * T * Hq;
    if (row >= rows) return;
    const int h = (int)(row % Hq), t = (int)((row / Hq) % T), b = (int)(row / ((int64_t)Hq * T));
    const bf16 *qr = q + row * D;
    const int s0 = max(window > 0 && t - window + 1 > 0 ? t - window + 1 : 0, (int)pn_doc_lo(cu, n_docs, t));
    float mx = -INFINITY, sum = 0.0f;
    for (int s = s0; s <= t; s++) {
        const bf16 *kr = k + (((int64_t)b * T + s) * Hkv + h / (Hq / Hkv)) * D;
        float dot = 0.0f;
        for (int i = lane; i < D; i += 32) dot = fmaf(bf2f(qr[i]), bf2f(kr[i]), dot);
        for (int o = 16; o > 0; o >>= 1) dot += __shfl_xor_sync(0xffffffffu, dot, o);
        const float sc = dot * scale, m = fmaxf(mx, sc);
        sum = sum * expf(mx - m) + expf(sc - m);
        mx = m;
    }
    if (lane == 0) lse[row] = mx + logf(sum);
}

// The pre-pass: lse2, delta [B, Hq, Tp] (see attn_bwd_pre_kernel).
template <int D>
static void launch_pre(float *lse2, float *delta, const bf16 *q, const bf16 *k, const bf16 *o, const bf16 *dout, int B,
                       int T, int Tp, int Hq, int Hkv, int window, float scale_log2, const int32_t *cu, int n_docs) {
    static bool attr_set = false;
    if (!attr_set) {
        CUDA_CHECK(cudaFuncSetAttribute(attn_bwd_pre_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)ab_cfg<D>::PRE_SMEM));
        attr_set = true;
    }
    attn_bwd_pre_kernel<D><<<dim3((unsigned)(Tp / PRE_BM), (unsigned)Hq, (unsigned)B), PRE_THREADS,
                             ab_cfg<D>::PRE_SMEM, pn_cuda_stream()>>>(lse2, delta, q, k, o, dout, T, Tp, Hq, Hkv, window, scale_log2,
                                                         cu, n_docs);
    CUDA_LAUNCH_CHECK();
}

template <int D>
static void launch_flash_bwd(pn_tensor *const *t, const float *lse, bf16 *dq, bf16 *dk, bf16 *dv, const bf16 *dout,
                             const bf16 *q, const bf16 *k, const bf16 *v, const bf16 *o, int B, int T, int Hq, int Hkv,
                             int window, const int32_t *cu, int n_docs) {
    static bool attr_set = false;
    if (!attr_set) {
        CUDA_CHECK(cudaFuncSetAttribute(attn_bwd_main_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)ab_cfg<D>::SMEM));
        attr_set = true;
    }
#ifdef PN_HAVE_CUDNN
    // The training forward's statistics: cuDNN's fused backward needs nothing else.
    if (lse && !cu && T >= 64 && t &&
        pn_cuda_attention_bwd_cudnn(t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], lse, (int64_t)T * Hq, 1, Hq,
                                    window) == 0)
        return;
#else
    (void)lse;
#endif
    const int Tp = (int)ceil_div64(T, AB_TPAD) * AB_TPAD;
    const size_t n_stat = (size_t)B * Hq * Tp, n_q = (size_t)B * T * Hq * D; // n_stat: a multiple of 4
    float *w = workspace(sizeof(float) * (2 * n_stat + n_q));
    float *lse2 = w, *delta = w + n_stat, *dqacc = w + 2 * n_stat; // 16-byte aligned: Tp % 128 == 0
    const float scale = 1.0f / sqrtf((float)D), scale_log2 = scale * 1.4426950408889634f;

    if (lse) { // the forward's statistics: only delta to compute
        attn_bwd_prep_kernel<<<(unsigned)ceil_div64((int64_t)n_stat, 8), 256, 0, pn_cuda_stream()>>>(lse2, delta, lse, o, dout, B, T, Tp, Hq,
                                                                                D);
        CUDA_LAUNCH_CHECK();
    } else {
        launch_pre<D>(lse2, delta, q, k, o, dout, B, T, Tp, Hq, Hkv, window, scale_log2, cu, n_docs);
    }
#ifdef PN_HAVE_CUDNN
    // Causal attention, plain or windowed: cuDNN's fused SDPA backward from these statistics (staged in the dQ
    // accumulator, which the own kernels zero below when cuDNN declines).
    if (!cu && T >= 64 && t) { // T >= 64: the stats fit the accumulator, as cuDNN wants
        attn_stats_kernel<<<grid_1d((int64_t)n_stat, 256), 256, 0, pn_cuda_stream()>>>(dqacc, lse2, (int64_t)n_stat);
        CUDA_LAUNCH_CHECK();
        if (pn_cuda_attention_bwd_cudnn(t[0], t[1], t[2], t[3], t[4], t[5], t[6], t[7], dqacc, (int64_t)Hq * Tp, Tp,
                                        1, window) == 0)
            return;
    }
#endif
    CUDA_CHECK(cudaMemsetAsync(dqacc, 0, sizeof(float) * n_q, pn_cuda_stream()));
    const int64_t n_blocks = ceil_div64(T, AB_BC) * B * Hkv;
    attn_bwd_main_kernel<D><<<(unsigned)n_blocks, AB_THREADS, ab_cfg<D>::SMEM, pn_cuda_stream()>>>(
        dk, dv, dqacc, lse2, delta, q, k, v, dout, B, T, Tp, Hq, Hkv, window, scale_log2, scale, cu, n_docs);
    CUDA_LAUNCH_CHECK();
    attn_bwd_dq_kernel_f32<<<grid_1d((int64_t)(n_q / 4), 256), 256, 0, pn_cuda_stream()>>>(dq, dqacc, (int64_t)(n_q / 4), scale);
    CUDA_LAUNCH_CHECK();
}

void pn_cuda_attention_train(pn_tensor *out, pn_tensor *lse, const pn_tensor *q, const pn_tensor *k, const pn_tensor *v,
                             int window, const pn_tensor *cu_seqlens) {
    const int B = (int)q->shape[0], T = (int)q->shape[1], Hq = (int)q->shape[2], D = (int)q->shape[3];
    const int Hkv = (int)k->shape[2];
    if (B == 0 || T == 0 || Hq == 0 || D == 0) return;
    int n_docs;
    const int32_t *cu = packed_offsets(cu_seqlens, &n_docs);
#ifdef PN_HAVE_CUDNN
    if (!cu && pn_cuda_attention_cudnn_stats(out, (float *)lse->data, q, k, v, window) == 0) return;
#endif
    // The own flash kernels store the statistics as they go; the simple kernel does not.
    if (pn_cuda_attention_packed(out, (float *)lse->data, q, k, v, 0, window, cu, n_docs)) return;
    const bf16 *qp = (const bf16 *)q->data, *kp = (const bf16 *)k->data, *op = (const bf16 *)out->data;
    const int64_t n = (int64_t)B * T * Hq;
    const float scale = 1.0f / sqrtf((float)D), scale_log2 = scale * 1.4426950408889634f;
    if ((D == 64 || D == 128) && is_aligned16(qp) && is_aligned16(kp) && is_aligned16(op) && B <= 65535 &&
        Hq <= 65535) { // the pre-pass (its <dO, O> output, here from O itself, is not used)
        const int Tp = (int)ceil_div64(T, AB_TPAD) * AB_TPAD;
        const size_t n_stat = (size_t)B * Hq * Tp;
        float *w = workspace(sizeof(float) * 2 * n_stat);
        if (D == 128) launch_pre<128>(w, w + n_stat, qp, kp, op, op, B, T, Tp, Hq, Hkv, window, scale_log2, cu, n_docs);
        else launch_pre<64>(w, w + n_stat, qp, kp, op, op, B, T, Tp, Hq, Hkv, window, scale_log2, cu, n_docs);
        attn_lse_kernel<<<grid_1d(n, 256), 256, 0, pn_cuda_stream()>>>((float *)lse->data, w, T, Tp, Hq, n);
    } else {
        attn_lse_naive_kernel<<<(unsigned)ceil_div64(n, 8), 256, 0, pn_cuda_stream()>>>((float *)lse->data, qp, kp, B, T, Hq, Hkv, D,
                                                                  window, scale, cu, n_docs);
    }
    CUDA_LAUNCH_CHECK();
}

void pn_cuda_attention_bwd(pn_tensor *dq, pn_tensor *dk, pn_tensor *dv, const pn_tensor *dout, const pn_tensor *q,
                           const pn_tensor *k, const pn_tensor *v, const pn_tensor *out, const pn_tensor *lse,
                           int window, const pn_tensor *cu_seqlens) {
    const int B = (int)q->shape[0], T = (int)q->shape[1], Hq = (int)q->shape[2], D = (int)q->shape[3];
    const int Hkv = (int)k->shape[2];
    if (B == 0 || T == 0 || Hq == 0 || D == 0) return; // nothing to write
    int n_docs;
    const int32_t *cu = packed_offsets(cu_seqlens, &n_docs);
    static int simple = -1; // PN_ATTN_BWD_SIMPLE set (and not "0"): always the baseline; read once
    if (simple < 0) {
        const char *e = getenv("PN_ATTN_BWD_SIMPLE");
        simple = e != NULL && e[0] != '\0' && strcmp(e, "0") != 0;
    }
    bf16 *dqp = (bf16 *)dq->data, *dkp = (bf16 *)dk->data, *dvp = (bf16 *)dv->data;
    const bf16 *dop = (const bf16 *)dout->data, *qp = (const bf16 *)q->data, *kp = (const bf16 *)k->data;
    const bf16 *vp = (const bf16 *)v->data, *op = (const bf16 *)out->data;
    const bool aligned = is_aligned16(dqp) && is_aligned16(dkp) && is_aligned16(dvp) && is_aligned16(dop) &&
                         is_aligned16(qp) && is_aligned16(kp) && is_aligned16(vp) && is_aligned16(op);
    pn_tensor *const t[8] = {dq, dk, dv, (pn_tensor *)dout, (pn_tensor *)q, (pn_tensor *)k, (pn_tensor *)v,
                             (pn_tensor *)out};
    if (!simple && aligned && B <= 65535 && Hq <= 65535) {
        if (D == 128) {
            launch_flash_bwd<128>(t, lse ? (const float *)lse->data : NULL, dqp, dkp, dvp, dop, qp, kp, vp, op, B, T,
                                  Hq, Hkv, window, cu, n_docs);
            return;
        }
        if (D == 64) {
            launch_flash_bwd<64>(t, lse ? (const float *)lse->data : NULL, dqp, dkp, dvp, dop, qp, kp, vp, op, B, T,
                                 Hq, Hkv, window, cu, n_docs);
            return;
        }
    }

    // (a) the baseline
    if (D > 4 * BWD_THREADS) pn_panic("attention_bwd: head dim %d > %d", D, 4 * BWD_THREADS);
    float *rlse = workspace(2 * sizeof(float) * (size_t)B * (size_t)Hq * (size_t)T); // recomputed, own layout
    float *delta = rlse + (size_t)B * Hq * T;
    const float scale = 1.0f / sqrtf((float)D);
    const size_t smem = sizeof(float) * (size_t)(2 * D + 2 * BWD_THREADS + 32);
    attn_bwd_dq_kernel<<<dim3(T, Hq, B), BWD_THREADS, smem, pn_cuda_stream()>>>(dqp, rlse, delta, qp, kp, vp, op, dop, T, Hq, Hkv, D,
                                                             window, scale, cu, n_docs);
    CUDA_LAUNCH_CHECK();
    attn_bwd_dkv_kernel<<<dim3(T, Hkv, B), BWD_THREADS, smem, pn_cuda_stream()>>>(dkp, dvp, rlse, delta, qp, kp, vp, dop, T, Hq, Hkv,
                                                               D, window, scale, cu, n_docs);
    CUDA_LAUNCH_CHECK();
}
