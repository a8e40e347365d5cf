// attention.cu: causal (optionally sliding-window) GQA attention of q[B, T, Hq, D] over a KV cache
// [B, cap, Hkv, D] holding positions 0 .. pos0 + T - 1, position s in slot s mod cap (a ring: a sliding
// window's cache holds only the keys a call reads; every load below maps its key to its slot). Query t
// sits at position p = pos0 + t and sees key s iff s <= p and (window == 0 or p - s < window). Scale
// D^-1/2, softmax in fp32, output rounded to bf16.
//
// Three kernels, and the choice between them is the decision to know about:
// (a) attn_simple_kernel: one block per (query, head, batch, key slice); the block walks its keys in chunks
//     of 256 (one key per thread for the dot product, then all threads over the value dims for P V) with
//     an online softmax in fp32. Obviously right, any D <= 256 (8 values per load when D % 8 == 0, else one
//     at a time: Jet-Nemotron's shrunk test configs have D = 12); used for decode and short
//     prefills (T < 64) and for head sizes other than 64 and 128. When few query rows face many keys
//     (decode over a long cache), each row's keys are cut into slices run by separate blocks and merged by
//     the last of them to finish (flash-decoding, without a second launch), so the GPU is full even at batch 1.
// (b) attn_decode_kernel<D>: decode proper (one new token per sequence at device-held positions, D = 64 or
//     128): one block per (key slice, KV head, sequence) serves the whole GQA group, so each cached K/V row is
//     read once per step (the simple kernel reads it once per query head); K/V chunks staged with cp.async.
// (c) attn_flash_kernel<D>: FlashAttention-2's forward for D = 64 and 128 and T >= 64. A CTA of 4 warps
//     owns 128 queries of one (batch, head), 32 rows (two m16 tiles) per warp, so each K/V fragment read
//     from shared memory feeds two mma; Q and K/V tiles of 64 keys are staged in shared memory with
//     cp.async, K/V double buffered; S = Q K^T and O += P V run on tensor cores (mma.sync.m16n8k16, bf16
//     in, fp32 accumulate), P re-used straight from the S accumulators (the m16n8 C layout is the m16k16 A
//     layout). The softmax runs in the log2 domain (exp2f of scores times scale * log2(e)); P is rounded to
//     bf16 for the P V product while the row sums use the fp32 P. Tiles wholly outside the causal/window
//     band are never loaded; tiles cut by it are masked per element. Key rows at or past pos0 + T (never
//     valid, possibly garbage or NaN in the cache) are zero-filled in shared memory, so 0 * NaN cannot
//     reach the output. About 100 KB of shared memory per CTA: two CTAs per SM on H100, one on A100.
// For training (attention_train) the flash kernel also stores each row's log-sum-exp, and a packed batch
// (cu_seqlens, kernels/packed.h) bounds every row's keys by its document in the same launch: the tiles
// before a block's first document are skipped, those a document boundary cuts are masked per element.
// The flash kernel needs 16-byte aligned q, k, v, out (arena tensors are 256-aligned; rows of D % 8 == 0
// keep it); misaligned views take the simple kernel.
// The split workspace is the backend context's (common.cuh); the kernels' smem attribute is set once.
#include <math.h>
#include <stdlib.h>

#include "common.cuh"
#include "mma.cuh"

// ----------------------------------------------------------------------------------------------------
// kernels: (a) the simple kernel

#define SIMPLE_THREADS 256
#define SPLIT_MAX 64 // the most key slices per query row (split-K, see the launchers)

__device__ __forceinline__ float block_max(float v, float *red) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    float r = red[0];
    for (int i = 1; i < (int)(blockDim.x >> 5); i++) r = fmaxf(r, red[i]);
    __syncthreads(); // red[] is reused by the next reduction
    return r;
}

__device__ __forceinline__ float block_sum(float v, float *red) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
    __syncthreads();
    float r = 0.0f;
    for (int i = 0; i < (int)(blockDim.x >> 5); i++) r += red[i];
    __syncthreads();
    return r;
}

// out[row] = sum_i acc_i e^(m_i - M) / sum_i l_i e^(m_i - M) over the first n of the row's partials (stride
// nsplit), by the threads of one block (the last of the row's split blocks to finish). The partials are read
// past L1 (__ldcg): other blocks wrote them. Each split's weight e^(m_i - M) is computed once, into shared
// memory, and the value loads of different splits are independent (unrolled), so a 64-way merge costs a few
// round trips to L2 rather than one per split (measured: the merge dominated a 640-key decode step).
__device__ void attn_combine_row(bf16 *out, const float *part, int64_t row, int D, int nsplit, int n) {
    __shared__ float wsh[SPLIT_MAX], lsh[SPLIT_MAX];
    const float *pp = part + row * nsplit * (D + 2);
    for (int i = threadIdx.x; i < n; i += blockDim.x) wsh[i] = __ldcg(pp + i * (D + 2) + D), lsh[i] = __ldcg(pp + i * (D + 2) + D + 1);
    __syncthreads();
    float M = -INFINITY;
    for (int i = 0; i < n; i++) M = fmaxf(M, wsh[i]); // finite: some split is not empty
    __syncthreads();
    if ((int)threadIdx.x < n) wsh[threadIdx.x] = wsh[threadIdx.x] == -INFINITY ? 0.0f : expf(wsh[threadIdx.x] - M);
    __syncthreads();
    float L = 0.0f;
    for (int i = 0; i < n; i++) L += lsh[i] * wsh[i];
    for (int d = threadIdx.x; d < D; d += blockDim.x) {
        float acc = 0.0f;
#pragma unroll 8
        for (int i = 0; i < n; i++) acc += __ldcg(pp + i * (D + 2) + d) * wsh[i];
        out[row * D + d] = f2bf(acc / L);
    }
}

// grid (T * nsplit, Hq, B), SIMPLE_THREADS threads. D <= 256, D % 8 == 0. Query t's visible keys are cut
// into n = min(nsplit, ceil(keys / min_keys)) equal slices, n known only here (decode replayed from a graph
// launches nsplit for the longest row the cache allows); block (t * nsplit + split) takes the split-th and
// blocks past n return at once. With n == 1 the block writes the normalized output; otherwise it writes its
// unnormalized partial sum, max and sum to part, and the row's last block to finish (counted in cnt[row],
// which it resets to 0 for the next launch) merges them (attn_combine_row): no second launch.
// posv (device, [B]) or NULL: sequence b's queries start at posv[b] instead of pos0 (attention_at: decode
// steps replayed from a CUDA graph, where the position cannot be a launch argument); inv_freq (or NULL):
// the query is rotated here (RoPE at its position, rounded to bf16 as rope_kernel leaves it). VEC: D % 8 == 0 and
// 16-byte aligned rows, read 8 values at a time; else (a head size such as 12) one value at a time.
template <bool VEC>
__global__ void __launch_bounds__(SIMPLE_THREADS)
    attn_simple_kernel(bf16 *out, float *part, const bf16 *q, const bf16 *k, const bf16 *v, int T, int Hq, int Hkv,
                       int D, int64_t cap, int pos0, int window, float scale, int nsplit, int min_keys, const int32_t *cu,
                       int n_docs, const int32_t *posv, const float *inv_freq, bf16 *kst, bf16 *vst,
                       const bf16 *knew, const bf16 *vnew, int *cnt) {
    __shared__ float qs[256];
    __shared__ __align__(16) bf16 kf[256]; // kv_attend_at: the new key, rotated
    pdl_trigger();
    pdl_wait();
    __shared__ float ps[SIMPLE_THREADS];
    __shared__ float comb[2048]; // G * D <= 2048 partial outputs (see the P V layout below)
    __shared__ float red[32];
    const int tid = threadIdx.x;
    const int t = blockIdx.x / nsplit, split = blockIdx.x % nsplit, h = blockIdx.y, b = blockIdx.z;
    const int hk = h / (Hq / Hkv);
    const int64_t qrow = ((int64_t)b * T + t) * Hq + h, qoff = qrow * D;
    // This thread's query values (and RoPE frequency), requested before the position: a decode block's work is
    // a chain of memory round trips, and these two need not follow each other (D <= 256 = SIMPLE_THREADS, so
    // one pass: thread i < D / 2 holds the pair (i, i + D / 2), or thread d < D the value d).
    const int half = D / 2;
    float q1 = 0.0f, q2 = 0.0f, fr = 0.0f;
    if (inv_freq) {
        if (tid < half) q1 = bf2f(q[qoff + tid]), q2 = bf2f(q[qoff + tid + half]), fr = inv_freq[tid];
    } else if (tid < D) {
        q1 = bf2f(q[qoff + tid]);
    }
    const int64_t p = (int64_t)(posv ? posv[b] : pos0) + t;
    int64_t lo = (window > 0 && p - window + 1 > 0) ? p - window + 1 : 0;
    if (cu) lo = max(lo, (int64_t)pn_doc_lo(cu, n_docs, t)); // a packed row (pos0 = 0): its own document's keys only
    const int64_t nkeys = p - lo + 1;
    const int nact = (int)min((int64_t)nsplit, (nkeys + min_keys - 1) / min_keys); // slices in use, >= 1
    if (split >= nact) return; // a slice this row does not need (it takes no part in the count below)
    const int64_t per = (nkeys + nact - 1) / nact; // keys per split
    const int64_t k_begin = lo + split * per, k_end = min(p, k_begin + per - 1); // may be empty (k_begin > k_end)
    const int64_t kv_stride = (int64_t)Hkv * D; // elements between consecutive positions
    const bf16 *kb = k + ((int64_t)b * cap * Hkv + hk) * D;
    const bf16 *vb = v + ((int64_t)b * cap * Hkv + hk) * D;

    if (inv_freq) {
        if (tid < half) {
            rope_pair((float)p * fr, q1, q2);
            qs[tid] = round_bf(q1), qs[tid + half] = round_bf(q2);
        }
    } else if (tid < D) {
        qs[tid] = q1;
    }
    // kv_attend_at (T == 1): the new key and value (knew, vnew [B, 1, Hkv, D]) are not in the cache yet. The
    // block whose keys include position p reads them from there instead, the key rotated here as
    // kv_append_kernel rotates it; the one such block of the kv head's first query head also stores both into
    // the cache (kst, vst) for the later steps. No block reads position p from the cache in this launch.
    const bool fresh = knew && p >= k_begin && p <= k_end;
    const bf16 *vfresh = fresh ? vnew + ((int64_t)b * Hkv + hk) * D : NULL;
    if (fresh) {
        const bf16 *kn = knew + ((int64_t)b * Hkv + hk) * D;
        for (int i = tid; i < half; i += blockDim.x) {
            float x1 = bf2f(kn[i]), x2 = bf2f(kn[i + half]);
            if (inv_freq) rope_pair((float)p * inv_freq[i], x1, x2);
            kf[i] = f2bf(x1), kf[i + half] = f2bf(x2);
        }
        __syncthreads();
        if (h % (Hq / Hkv) == 0) {
            const int64_t at = ((int64_t)b * cap + p % cap) * kv_stride + (int64_t)hk * D;
            for (int d = tid; d < D; d += blockDim.x) kst[at + d] = kf[d], vst[at + d] = vfresh[d];
        }
    }
    __syncthreads();

    // P V layout: thread = (group g, 8 dims starting at 8 c8); the G groups split the keys of a chunk.
    const int C8 = (D + 7) / 8, G = SIMPLE_THREADS / C8;
    const int g = tid / C8, c8 = tid % C8;
    const bool pv_active = g < G;
    float acc[8] = {0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f}, m = -INFINITY, l = 0.0f;

    for (int64_t s0 = k_begin; s0 <= k_end; s0 += SIMPLE_THREADS) {
        const int nc = (int)min((int64_t)SIMPLE_THREADS, k_end - s0 + 1); // keys in this chunk, >= 1
        // key s0 + j in slot slot0 + j, less cap past the ring's end (nc <= the keys <= cap: one wrap at most)
        const int64_t slot0 = s0 % cap;
        float sc = -INFINITY;
        if (tid < nc) {
            float dot = 0.0f;
            const int64_t ks = slot0 + tid < cap ? slot0 + tid : slot0 + tid - cap;
            const bf16 *krow = fresh && s0 + tid == p ? kf : kb + ks * kv_stride;
            if constexpr (VEC) {
                const uint4 *kr = (const uint4 *)krow;
#pragma unroll 8
                for (int c = 0; c < D / 8; c++) {
                    bf16x8 kv;
                    kv.u = kr[c];
#pragma unroll
                    for (int i = 0; i < 8; i++) dot += qs[c * 8 + i] * bf2f(kv.h[i]);
                }
            } else {
                for (int d = 0; d < D; d++) dot += qs[d] * bf2f(krow[d]);
            }
            sc = dot * scale;
        }
        const float m_new = fmaxf(m, block_max(sc, red)); // finite: key s0 is visible
        const float pj = tid < nc ? expf(sc - m_new) : 0.0f;
        ps[tid] = pj;
        const float csum = block_sum(pj, red); // its barrier also publishes ps[]
        const float alpha = expf(m - m_new);   // 0 on the first chunk (m = -inf)
        l = l * alpha + csum;
        m = m_new;
        if (pv_active) {
            const bf16 *vr = vb + c8 * 8;
#pragma unroll
            for (int i = 0; i < 8; i++) acc[i] *= alpha;
#pragma unroll 4
            for (int j = g; j < nc; j += G) {
                const float w = ps[j];
                const int64_t vsl = slot0 + j < cap ? slot0 + j : slot0 + j - cap;
                const bf16 *vrow = fresh && s0 + j == p ? vfresh + c8 * 8 : vr + vsl * kv_stride;
                if constexpr (VEC) {
                    bf16x8 vv;
                    vv.u = *(const uint4 *)vrow;
#pragma unroll
                    for (int i = 0; i < 8; i++) acc[i] += w * bf2f(vv.h[i]);
                } else {
                    for (int i = 0; i < 8 && c8 * 8 + i < D; i++) acc[i] += w * bf2f(vrow[i]);
                }
            }
        }
        __syncthreads(); // ps[] is rewritten by the next chunk
    }

    if (pv_active) {
#pragma unroll
        for (int i = 0; i < 8; i++)
            if (VEC || c8 * 8 + i < D) comb[g * D + c8 * 8 + i] = acc[i];
    }
    __syncthreads();
    if (nact == 1) {
        const float inv = 1.0f / l; // l >= 1: the row's maximum contributes exp(0)
        for (int d = tid; d < D; d += blockDim.x) {
            float sum = 0.0f;
            for (int gg = 0; gg < G; gg++) sum += comb[gg * D + d];
            out[qoff + d] = f2bf(sum * inv);
        }
    } else { // part[qrow][split] = {acc[0 .. D-1], m, l}; an empty split leaves m = -inf, l = 0, acc = 0
        float *pp = part + (qrow * nsplit + split) * (D + 2);
        for (int d = tid; d < D; d += blockDim.x) {
            float sum = 0.0f;
            for (int gg = 0; gg < G; gg++) sum += comb[gg * D + d];
            pp[d] = sum;
        }
        if (tid == 0) pp[D] = m, pp[D + 1] = l;
        // The classic last-block reduction: every writer fences, then one atomic per block; the block that
        // sees nsplit - 1 finishes the row.
        __shared__ bool last;
        __threadfence();
        __syncthreads();
        if (tid == 0) {
            last = atomicAdd(cnt + qrow, 1) == nact - 1;
            if (last) cnt[qrow] = 0;
        }
        __syncthreads();
        if (last) {
            __threadfence();
            attn_combine_row(out, part, qrow, D, nsplit, nact);
        }
    }
}

// ----------------------------------------------------------------------------------------------------
// kernels: (b) the decode kernel: one new token per sequence over a long cache, a GQA group per block

// The simple kernel's blocks are per query head, so every K/V row of a step is read G = Hq / Hkv times (6 for
// Qwen2.5-1.5B and Jet-Nemotron), and its dot products run on CUDA cores: at 64K keys a step ran at ~520 GB/s
// of K/V. Here a block owns one slice of one sequence's keys for one KV head and all G query heads that read
// it (the rows of one m16 tile, rows past G zero), so each K/V row is read once, and both products run on
// tensor cores as in the flash kernel: chunks of DEC_KC keys staged in shared memory with cp.async,
// DEC_STAGES deep; warp w takes keys 16 w .. 16 w + 15 of every chunk (S = Q K^T over two n8 tiles, the
// online softmax in the log2 domain, O += P V with P rounded to bf16), and the warps' partial results are
// merged through shared memory at the end. Split-K over slices and the merge by the last block are the
// simple kernel's (flash-decoding in one launch), counted per (sequence, KV head). A CUDA-core version of
// this kernel (8 lanes per key) reached ~1.2 TB/s on an H100, issue-bound. T == 1, D = 64 or 128,
// G <= 16, 16-byte aligned rows; anything else takes the simple kernel (PN_DECODE_SIMPLE=1: always).
#define DEC_WARPS 4
#define DEC_THREADS (32 * DEC_WARPS)
#define DEC_KC (16 * DEC_WARPS) // keys per stage: 16 per warp
#define DEC_STAGES 3            // stages in flight
#define DEC_SPLIT_MAX 256       // slices per row at most
#define DEC_GMAX 16             // query heads per KV head at most (one m16 tile)
#define DEC_SLICE_KEYS 2048     // keys per slice at most, workspace permitting (see try_launch_decode)
// Keys per slice at least (two stages). Batch 1 at a 4K context on an H100 (Qwen2.5-1.5B shape, postnas-bench):
// one-stage slices (64 keys: 64 slices per KV head, merged by one block) 492 tok/s, 128: 526, 256: 524,
// 512: 487, 1024: 438; at 640 keys 559 / 557 / 546 / 518 / 469; at 64K 337 (64 and 256), 356 (1024).
#define DEC_MIN_SLICE 128

template <int D>
struct dec_cfg {
    static constexpr int LD = D + 8; // smem row pitch in elements (+16 bytes: ldmatrix rows over all banks)
    static constexpr size_t KV_BYTES = (size_t)2 * DEC_STAGES * DEC_KC * LD * sizeof(bf16);
    static constexpr size_t SMEM = KV_BYTES + (size_t)16 * LD * sizeof(bf16); // + the Q tile
    // after the key loop the stages hold the warps' results: o [DEC_WARPS][16][D], m and l [DEC_WARPS][16],
    // then the split merge's weights [DEC_WARPS][DEC_SPLIT_MAX]
    static constexpr size_t MERGE_FLOATS = (size_t)DEC_WARPS * 16 * (D + 2) + DEC_WARPS * DEC_SPLIT_MAX;
    static_assert(KV_BYTES >= MERGE_FLOATS * sizeof(float), "the merge scratch aliases the stages");
};

// grid (nsplit, Hkv, B), DEC_THREADS threads, dec_cfg<D>::SMEM bytes of dynamic shared memory. posv [B]: the
// new token's position (q [B, 1, Hq, D]); inv_freq as the simple kernel's; knew/vnew (kv_attend_at) the new
// key and value, stored at posv[b] by the block whose slice holds it before its own loads of that row.
// part: per (query row, slice) {o[D], m (log2 domain), l}.
template <int D>
__global__ void __launch_bounds__(DEC_THREADS)
    attn_decode_kernel(bf16 *out, float *part, const bf16 *q, const bf16 *k, const bf16 *v, int Hq, int Hkv,
                       int64_t cap, int window, float scale_log2, int nsplit, int min_keys, const int32_t *posv,
                       const float *inv_freq, bf16 *kst, bf16 *vst, const bf16 *knew, const bf16 *vnew, int *cnt) {
    using C = dec_cfg<D>;
    constexpr int LD = C::LD, CPR = D / 8; // 16-byte pieces per row
    extern __shared__ __align__(16) unsigned char dec_smem[];
    bf16 *ks = (bf16 *)dec_smem, *vs = ks + DEC_STAGES * DEC_KC * LD, *qs = vs + DEC_STAGES * DEC_KC * LD;
    __shared__ bool last;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, tig = lane & 3;
    const int split = blockIdx.x, hk = blockIdx.y, b = blockIdx.z, G = Hq / Hkv;
    pdl_trigger();
    pdl_wait();
    const int64_t p = posv[b];
    const int64_t lo = (window > 0 && p - window + 1 > 0) ? p - window + 1 : 0, nkeys = p - lo + 1;
    const int nact = (int)min((int64_t)nsplit, (nkeys + min_keys - 1) / min_keys); // slices in use, >= 1
    if (split >= nact) return;
    const int64_t per = (nkeys + nact - 1) / nact;
    const int64_t k_begin = lo + split * per, k_end = min(p, k_begin + per - 1); // may be empty
    const int64_t kv_stride = (int64_t)Hkv * D;
    const bf16 *kb = k + ((int64_t)b * cap * Hkv + hk) * D, *vb = v + ((int64_t)b * cap * Hkv + hk) * D;

    // The Q tile: row r < G is query head hk G + r, rotated and rounded to bf16 as rope_kernel leaves it.
    for (int i = tid; i < 16 * (D / 2); i += DEC_THREADS) {
        const int r = i / (D / 2), c = i % (D / 2);
        float x1 = 0.0f, x2 = 0.0f;
        if (r < G) {
            const bf16 *qr = q + ((int64_t)b * Hq + hk * G + r) * D;
            x1 = bf2f(qr[c]), x2 = bf2f(qr[c + D / 2]);
            if (inv_freq) rope_pair((float)p * inv_freq[c], x1, x2);
        }
        qs[r * LD + c] = f2bf(x1), qs[r * LD + c + D / 2] = f2bf(x2);
    }
    if (knew && p >= k_begin && p <= k_end) { // kv_attend_at: store the new key (rotated) and value
        const bf16 *kn = knew + ((int64_t)b * Hkv + hk) * D, *vn = vnew + ((int64_t)b * Hkv + hk) * D;
        const int64_t at = ((int64_t)b * cap + p % cap) * kv_stride + (int64_t)hk * D;
        for (int i = tid; i < D / 2; i += DEC_THREADS) {
            float x1 = bf2f(kn[i]), x2 = bf2f(kn[i + D / 2]);
            if (inv_freq) rope_pair((float)p * inv_freq[i], x1, x2); // as kv_append_kernel rotates it
            kst[at + i] = f2bf(x1), kst[at + i + D / 2] = f2bf(x2);
        }
        for (int d = tid; d < D; d += DEC_THREADS) vst[at + d] = vn[d];
    }
    __syncthreads(); // the Q tile written; the new row's stores ordered before this block's loads of it

    uint32_t qa[D / 16][4]; // Q's A fragments, dims 16 kk .. +15
#pragma unroll
    for (int kk = 0; kk < D / 16; kk++) ldmatrix_x4(qa[kk], qs + (lane & 15) * LD + kk * 16 + (lane >> 4) * 8);

    const int64_t nk = k_end - k_begin + 1;
    const int nchunks = nk > 0 ? (int)((nk + DEC_KC - 1) / DEC_KC) : 0;
    auto load = [&](int c) { // chunk c's K and V rows into stage c % DEC_STAGES; rows past the slice: zeros
        const int64_t s0 = k_begin + (int64_t)c * DEC_KC, slot0 = s0 % cap; // key s0 + r: slot0 + r mod cap
        const int nc = (int)min((int64_t)DEC_KC, k_end - s0 + 1);
        bf16 *kd = ks + (c % DEC_STAGES) * DEC_KC * LD, *vd = vs + (c % DEC_STAGES) * DEC_KC * LD;
        for (int i = tid; i < DEC_KC * CPR; i += DEC_THREADS) {
            const int r = i / CPR, c8 = (i % CPR) * 8;
            if (r < nc) { // nc <= the row's keys <= cap: one wrap at most
                const int64_t sl = slot0 + r < cap ? slot0 + r : slot0 + r - cap;
                cp_async16(kd + r * LD + c8, kb + sl * kv_stride + c8);
                cp_async16(vd + r * LD + c8, vb + sl * kv_stride + c8);
            } else { // P is 0 there, but 0 * NaN is not
                *(uint4 *)(kd + r * LD + c8) = make_uint4(0, 0, 0, 0);
                *(uint4 *)(vd + r * LD + c8) = make_uint4(0, 0, 0, 0);
            }
        }
    };
#pragma unroll
    for (int c = 0; c < DEC_STAGES - 1; c++) {
        if (c < nchunks) load(c);
        cp_async_commit();
    }
    float o[D / 8][4], m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f}; // rows g and g + 8
#pragma unroll
    for (int i = 0; i < D / 8; i++) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
    for (int c = 0; c < nchunks; c++) {
        if (c + DEC_STAGES - 1 < nchunks) load(c + DEC_STAGES - 1);
        cp_async_commit();
        cp_async_wait<DEC_STAGES - 1>(); // chunk c has landed (this thread's copies) ...
        __syncthreads();                 // ... and everyone's
        const int nc = (int)min((int64_t)DEC_KC, k_end - (k_begin + (int64_t)c * DEC_KC) + 1);
        const bf16 *kt = ks + (c % DEC_STAGES) * DEC_KC * LD + warp * 16 * LD;
        const bf16 *vt = vs + (c % DEC_STAGES) * DEC_KC * LD + warp * 16 * LD;
        if (warp * 16 < nc) { // this warp's 16 keys hold at least one of the slice's
            float s[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}}; // keys 8 j .. 8 j + 7
#pragma unroll
            for (int kk = 0; kk < D / 16; kk++) {
                uint32_t bk[4];
                ldmatrix_x4(bk, kt + ((lane & 7) + ((lane >> 4) & 1) * 8) * LD + kk * 16 + ((lane >> 3) & 1) * 8);
                mma_bf16(s[0], qa[kk], bk[0], bk[1]);
                mma_bf16(s[1], qa[kk], bk[2], bk[3]);
            }
#pragma unroll
            for (int j = 0; j < 2; j++)
#pragma unroll
                for (int e = 0; e < 4; e++)
                    s[j][e] = warp * 16 + j * 8 + 2 * tig + (e & 1) < nc ? s[j][e] * scale_log2 : -INFINITY;
#pragma unroll
            for (int r = 0; r < 2; r++) {
                float mx = fmaxf(fmaxf(s[0][2 * r], s[0][2 * r + 1]), fmaxf(s[1][2 * r], s[1][2 * r + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2)); // finite: key 16 warp is in the slice
                const float mn = fmaxf(m[r], mx), alpha = exp2f(m[r] - mn); // 0 while m = -inf
                m[r] = mn;
                float rs = 0.0f;
#pragma unroll
                for (int j = 0; j < 2; j++) {
                    s[j][2 * r] = exp2f(s[j][2 * r] - mn), s[j][2 * r + 1] = exp2f(s[j][2 * r + 1] - mn);
                    rs += s[j][2 * r] + s[j][2 * r + 1];
                }
                l[r] = l[r] * alpha + rs;
#pragma unroll
                for (int i = 0; i < D / 8; i++) o[i][2 * r] *= alpha, o[i][2 * r + 1] *= alpha;
            }
            uint32_t a[4] = {pack_bf16(s[0][0], s[0][1]), pack_bf16(s[0][2], s[0][3]), pack_bf16(s[1][0], s[1][1]),
                             pack_bf16(s[1][2], s[1][3])};
#pragma unroll
            for (int n2 = 0; n2 < D / 16; n2++) {
                uint32_t bv[4];
                ldmatrix_x4_trans(bv, vt + ((lane & 7) + ((lane >> 3) & 1) * 8) * LD + n2 * 16 + (lane >> 4) * 8);
                mma_bf16(o[2 * n2], a, bv[0], bv[1]);
                mma_bf16(o[2 * n2 + 1], a, bv[2], bv[3]);
            }
        }
        __syncthreads(); // stage c % DEC_STAGES is refilled by the next iteration's copies
    }
    cp_async_wait<0>();
    __syncthreads(); // the stages are free: the warps' results go there

    // The warps' results through shared memory: row r's max (log2), sum and unnormalized O of warp w.
    float *wo = (float *)dec_smem, *wm = wo + DEC_WARPS * 16 * D, *wl = wm + DEC_WARPS * 16;
#pragma unroll
    for (int r = 0; r < 2; r++) {
        float sum = l[r];
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        const int row = g + 8 * r;
        if (tig == 0) wm[warp * 16 + row] = m[r], wl[warp * 16 + row] = sum;
#pragma unroll
        for (int i = 0; i < D / 8; i++) {
            float *w2 = wo + (warp * 16 + row) * D + i * 8 + 2 * tig;
            w2[0] = o[i][2 * r], w2[1] = o[i][2 * r + 1];
        }
    }
    __syncthreads();
    // Row r < G: M = max over warps, then the weighted sums; one thread per (row, dim) pair.
    for (int i = tid; i < G * D; i += DEC_THREADS) {
        const int r = i / D, d = i % D;
        float M = -INFINITY;
#pragma unroll
        for (int w = 0; w < DEC_WARPS; w++) M = fmaxf(M, wm[w * 16 + r]);
        float L = 0.0f, acc = 0.0f;
#pragma unroll
        for (int w = 0; w < DEC_WARPS; w++) {
            const float wt = wm[w * 16 + r] == -INFINITY ? 0.0f : exp2f(wm[w * 16 + r] - M);
            L += wt * wl[w * 16 + r], acc += wt * wo[(w * 16 + r) * D + d];
        }
        const int64_t qrow = (int64_t)b * Hq + hk * G + r;
        if (nact == 1) {
            out[qrow * D + d] = f2bf(acc / L); // L >= 1: the row's maximum contributes 2^0
        } else { // part[qrow][split] = {o, m, l}; an empty slice leaves m = -inf, l = 0, o = 0
            float *pp = part + (qrow * nsplit + split) * (D + 2);
            pp[d] = acc;
            if (d == 0) pp[D] = M, pp[D + 1] = L;
        }
    }
    if (nact == 1) return;
    __threadfence();
    __syncthreads();
    if (tid == 0) {
        const int64_t crow = (int64_t)b * Hkv + hk;
        last = atomicAdd(cnt + crow, 1) == nact - 1;
        if (last) cnt[crow] = 0;
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    // The last block merges the slices: warp w takes rows w, w + DEC_WARPS, ...; each slice's weight
    // 2^(m_i - M) once, into shared memory, then the partial loads over slices independent of each other.
    float *wsh = wl + DEC_WARPS * 16 + warp * DEC_SPLIT_MAX;
    for (int r = warp; r < G; r += DEC_WARPS) {
        const int64_t qrow = (int64_t)b * Hq + hk * G + r;
        const float *pp = part + qrow * nsplit * (D + 2);
        float M = -INFINITY, L = 0.0f;
        for (int i = lane; i < nact; i += 32) M = fmaxf(M, __ldcg(pp + i * (D + 2) + D));
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) M = fmaxf(M, __shfl_xor_sync(0xffffffffu, M, off)); // finite
        for (int i = lane; i < nact; i += 32) {
            const float mi = __ldcg(pp + i * (D + 2) + D), w = mi == -INFINITY ? 0.0f : exp2f(mi - M);
            wsh[i] = w;
            L += w * __ldcg(pp + i * (D + 2) + D + 1);
        }
#pragma unroll
        for (int off = 16; off > 0; off >>= 1) L += __shfl_xor_sync(0xffffffffu, L, off);
        __syncwarp();
        float acc[D / 32];
#pragma unroll
        for (int e = 0; e < D / 32; e++) acc[e] = 0.0f;
#pragma unroll 4
        for (int s = 0; s < nact; s++) {
            const float w = wsh[s];
#pragma unroll
            for (int e = 0; e < D / 32; e++) acc[e] += __ldcg(pp + s * (D + 2) + e * 32 + lane) * w;
        }
#pragma unroll
        for (int e = 0; e < D / 32; e++) out[qrow * D + e * 32 + lane] = f2bf(acc[e] / L);
        __syncwarp(); // wsh is rewritten for the warp's next row
    }
}

// ----------------------------------------------------------------------------------------------------
// kernels: (c) the flash kernel

// Measured on H100 (B 8, T 4096, Hq 12, Hkv 2, D 128, causal): FA_MT 2 x FA_NW 4 1.52 ms, 2 x 8 1.66 ms,
// 1 x 8 1.84 ms (shared-memory bandwidth bound: 16 rows per warp read each K/V fragment for one mma).
#define FA_BN 64 // keys per tile
#define FA_MT 2  // m16 row tiles per warp: each K/V fragment read from shared memory feeds FA_MT mma
#define FA_NW 4  // warps per CTA
#define FA_BM (16 * FA_MT * FA_NW) // queries per CTA
#define FA_THREADS (32 * FA_NW)

template <int D>
struct fa_cfg {
    static constexpr int LD = D + 8; // smem row pitch in elements: +16 bytes spreads ldmatrix rows over all banks
    static constexpr int TILE = FA_BN * LD;
    static constexpr size_t SMEM = (size_t)(FA_BM * LD + 4 * TILE) * sizeof(bf16); // Q, then K and V x 2 buffers
};


// grid (ceil(T / FA_BM), Hq, B), FA_THREADS threads, fa_cfg<D>::SMEM bytes of dynamic shared memory.
// Warp w owns query rows w * 16 * FA_MT + 16 * mi + (g, g + 8) of the block, mi < FA_MT.
template <int D>
__global__ void __launch_bounds__(FA_THREADS)
    attn_flash_kernel(bf16 *out, const bf16 *q, const bf16 *k, const bf16 *v, int T, int Hq, int Hkv, int64_t cap,
                      int pos0, int window, float scale_log2, const int32_t *cu, int n_docs, float *lse) {
    constexpr int LD = fa_cfg<D>::LD, TILE = fa_cfg<D>::TILE;
    constexpr int CPR = D / 8; // 16-byte chunks per row
    extern __shared__ __align__(16) unsigned char fa_smem[];
    bf16 *Qs = (bf16 *)fa_smem;  // [FA_BM][LD]
    bf16 *Ks = Qs + FA_BM * LD;  // [2][FA_BN][LD]
    bf16 *Vs = Ks + 2 * TILE;    // [2][FA_BN][LD]

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, tig = lane & 3; // mma fragment coordinates: row group, thread in group
    const int mb = gridDim.x - 1 - blockIdx.x; // the longest (last) query blocks start first
    const int h = blockIdx.y, b = blockIdx.z, hk = h / (Hq / Hkv);
    const int t0 = mb * FA_BM;
    const int t_last = min(t0 + FA_BM, T) - 1;
    const int64_t p_min = (int64_t)pos0 + t0, p_max = (int64_t)pos0 + t_last, kv_len = (int64_t)pos0 + T;
    int64_t lo = (window > 0 && p_min - window + 1 > 0) ? p_min - window + 1 : 0;
    // A packed batch: the block's first row has the earliest document start; rows of later documents in
    // the block mask the keys before their own (dlo, relative to p_min, INT32_MIN when not packed).
    // (pos0 = 0 when packed.)
    if (cu) lo = max(lo, (int64_t)pn_doc_lo(cu, n_docs, t0));
    const int64_t doc_last = cu ? pn_doc_lo(cu, n_docs, t_last) : 0;
    const int n_first = (int)(lo / FA_BN), n_last = (int)(p_max / FA_BN);

    const int64_t kv_stride = (int64_t)Hkv * D;
    const bf16 *kb = k + ((int64_t)b * cap * Hkv + hk) * D;
    const bf16 *vb = v + ((int64_t)b * cap * Hkv + hk) * D;

    // The Q block; rows past T become zeros (their results are never stored).
    for (int c = tid; c < FA_BM * CPR; c += FA_THREADS) {
        const int r = c / CPR, col = (c % CPR) * 8, t = t0 + r;
        if (t < T)
            cp_async16(Qs + r * LD + col, q + (((int64_t)b * T + t) * Hq + h) * D + col);
        else
            *(uint4 *)(Qs + r * LD + col) = make_uint4(0, 0, 0, 0);
    }

    // Tile n of K and V into buffer buf; rows past the valid keys become zeros.
    auto load_tile = [&](int n, int buf) {
        bf16 *kd = Ks + buf * TILE, *vd = Vs + buf * TILE;
        const int64_t slot0 = (int64_t)n * FA_BN % cap; // key s in slot s mod cap (a ring; cap >= T >= 64)
        for (int c = tid; c < FA_BN * CPR; c += FA_THREADS) {
            const int r = c / CPR, col = (c % CPR) * 8;
            const int64_t s = (int64_t)n * FA_BN + r, sl = slot0 + r < cap ? slot0 + r : slot0 + r - cap;
            if (s < kv_len) {
                cp_async16(kd + r * LD + col, kb + sl * kv_stride + col);
                cp_async16(vd + r * LD + col, vb + sl * kv_stride + col);
            } else {
                *(uint4 *)(kd + r * LD + col) = make_uint4(0, 0, 0, 0);
                *(uint4 *)(vd + r * LD + col) = make_uint4(0, 0, 0, 0);
            }
        }
    };

    load_tile(n_first, 0);
    cp_async_commit(); // group 0: Q and the first tile

    const int rw = warp * 16 * FA_MT; // this warp's first row in the block
    int dlo[FA_MT][2];
#pragma unroll
    for (int mi = 0; mi < FA_MT; mi++)
#pragma unroll
        for (int r = 0; r < 2; r++)
            dlo[mi][r] = cu ? (int)(pn_doc_lo(cu, n_docs, min(t0 + rw + mi * 16 + g + 8 * r, T - 1)) - t0) : INT32_MIN;

    float o[FA_MT][D / 8][4]; // O accumulators: n-tile of 8 dims x (rows g, g + 8)
    float m[FA_MT][2], l[FA_MT][2]; // running max (log2 domain); this thread's share of the row sums
#pragma unroll
    for (int mi = 0; mi < FA_MT; mi++) {
#pragma unroll
        for (int i = 0; i < D / 8; i++) o[mi][i][0] = o[mi][i][1] = o[mi][i][2] = o[mi][i][3] = 0.0f;
        m[mi][0] = m[mi][1] = -INFINITY;
        l[mi][0] = l[mi][1] = 0.0f;
    }

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
        const bf16 *kt = Ks + buf * TILE, *vt = Vs + buf * TILE;

        // S = Q K^T: 16 x 64 per m tile, s[mi][j] is keys 8j .. 8j + 7.
        float s[FA_MT][FA_BN / 8][4];
#pragma unroll
        for (int mi = 0; mi < FA_MT; mi++)
#pragma unroll
            for (int j = 0; j < FA_BN / 8; j++) s[mi][j][0] = s[mi][j][1] = s[mi][j][2] = s[mi][j][3] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < D / 16; kk++) {
            uint32_t qa[FA_MT][4]; // A fragments of dims 16 kk .. +15
#pragma unroll
            for (int mi = 0; mi < FA_MT; mi++)
                ldmatrix_x4(qa[mi], Qs + (rw + mi * 16 + (lane & 15)) * LD + kk * 16 + (lane >> 4) * 8);
#pragma unroll
            for (int j2 = 0; j2 < FA_BN / 16; j2++) {
                uint32_t bk[4]; // b0, b1 of keys 16 j2 .. +7, then of keys +8 .. +15
                ldmatrix_x4(bk, kt + (j2 * 16 + (lane & 7) + ((lane >> 4) & 1) * 8) * LD + kk * 16 +
                                    ((lane >> 3) & 1) * 8);
#pragma unroll
                for (int mi = 0; mi < FA_MT; mi++) {
                    mma_bf16(s[mi][2 * j2], qa[mi], bk[0], bk[1]);
                    mma_bf16(s[mi][2 * j2 + 1], qa[mi], bk[2], bk[3]);
                }
            }
        }

        // Scale into the log2 domain and mask the tiles that the causal/window band cuts.
        // Positions relative to p_min (the block's first query) fit an int: |kbase - p_min| <= pos0 + T.
        const int64_t kbase = (int64_t)n * FA_BN;
        const bool need_mask =
            (kbase + FA_BN - 1 > p_min) || (window > 0 && kbase < p_max - window + 1) || kbase < doc_last;
        if (need_mask) {
            const int krel = (int)(kbase - p_min) + 2 * tig;
#pragma unroll
            for (int mi = 0; mi < FA_MT; mi++)
#pragma unroll
                for (int j = 0; j < FA_BN / 8; j++)
#pragma unroll
                    for (int e = 0; e < 4; e++) {
                        const int key = krel + j * 8 + (e & 1), row = rw + mi * 16 + g + 8 * (e >> 1);
                        if (key > row || (window > 0 && row - key >= window) || key < dlo[mi][e >> 1])
                            s[mi][j][e] = -INFINITY;
                    }
        }
#pragma unroll
        for (int mi = 0; mi < FA_MT; mi++)
#pragma unroll
            for (int j = 0; j < FA_BN / 8; j++)
#pragma unroll
                for (int e = 0; e < 4; e++) s[mi][j][e] *= scale_log2; // -inf stays -inf

        // Online softmax, per row: the max over the 4 threads of a row group (lanes differing in tig).
#pragma unroll
        for (int mi = 0; mi < FA_MT; mi++) {
#pragma unroll
            for (int r = 0; r < 2; r++) {
                float mx = -INFINITY;
#pragma unroll
                for (int j = 0; j < FA_BN / 8; j++) mx = fmaxf(mx, fmaxf(s[mi][j][2 * r], s[mi][j][2 * r + 1]));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
                const float mn = fmaxf(m[mi][r], mx);
                // A row that has seen no visible key yet keeps max -inf; subtract 0 so exp2 gives 0, not NaN.
                const float mu = mn == -INFINITY ? 0.0f : mn;
                const float alpha = exp2f(m[mi][r] - mu);
                m[mi][r] = mn;
                float rs = 0.0f;
#pragma unroll
                for (int j = 0; j < FA_BN / 8; j++) {
                    s[mi][j][2 * r] = exp2f(s[mi][j][2 * r] - mu);
                    s[mi][j][2 * r + 1] = exp2f(s[mi][j][2 * r + 1] - mu);
                    rs += s[mi][j][2 * r] + s[mi][j][2 * r + 1];
                }
                l[mi][r] = l[mi][r] * alpha + rs;
#pragma unroll
                for (int i = 0; i < D / 8; i++) {
                    o[mi][i][2 * r] *= alpha;
                    o[mi][i][2 * r + 1] *= alpha;
                }
            }
        }

        // O += P V: P (16 x 64 per m tile) comes from the S accumulators as 4 A fragments of 16 keys.
#pragma unroll
        for (int kk = 0; kk < FA_BN / 16; kk++) {
            uint32_t a[FA_MT][4];
#pragma unroll
            for (int mi = 0; mi < FA_MT; mi++) {
                a[mi][0] = pack_bf16(s[mi][2 * kk][0], s[mi][2 * kk][1]);
                a[mi][1] = pack_bf16(s[mi][2 * kk][2], s[mi][2 * kk][3]);
                a[mi][2] = pack_bf16(s[mi][2 * kk + 1][0], s[mi][2 * kk + 1][1]);
                a[mi][3] = pack_bf16(s[mi][2 * kk + 1][2], s[mi][2 * kk + 1][3]);
            }
#pragma unroll
            for (int n2 = 0; n2 < D / 16; n2++) {
                uint32_t bv[4]; // b0, b1 of dims 16 n2 .. +7, then of dims +8 .. +15
                ldmatrix_x4_trans(bv, vt + (kk * 16 + (lane & 7) + ((lane >> 3) & 1) * 8) * LD + n2 * 16 +
                                          (lane >> 4) * 8);
#pragma unroll
                for (int mi = 0; mi < FA_MT; mi++) {
                    mma_bf16(o[mi][2 * n2], a[mi], bv[0], bv[1]);
                    mma_bf16(o[mi][2 * n2 + 1], a[mi], bv[2], bv[3]);
                }
            }
        }
        __syncthreads(); // every warp is done with buffer buf before the next iteration refills it
    }

    // Normalize and store (rows past T belong to no query).
#pragma unroll
    for (int mi = 0; mi < FA_MT; mi++)
#pragma unroll
        for (int r = 0; r < 2; r++) {
            float sum = l[mi][r];
            sum += __shfl_xor_sync(0xffffffffu, sum, 1);
            sum += __shfl_xor_sync(0xffffffffu, sum, 2);
            const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
            const int t = t0 + rw + mi * 16 + g + 8 * r;
            if (t < T && lse && tig == 0) // the training forward's statistics: natural log-sum-exp
                lse[((int64_t)b * T + t) * Hq + h] = (m[mi][r] + log2f(sum)) * 0.6931471805599453f;
            if (t < T) {
                bf16 *orow = out + (((int64_t)b * T + t) * Hq + h) * D + 2 * tig;
#pragma unroll
                for (int i = 0; i < D / 8; i++)
                    *(__nv_bfloat162 *)(orow + i * 8) =
                        __floats2bfloat162_rn(o[mi][i][2 * r] * inv, o[mi][i][2 * r + 1] * inv);
            }
        }
}

// ----------------------------------------------------------------------------------------------------
// launchers

template <int D>
static void launch_flash(bf16 *out, const bf16 *q, const bf16 *k, const bf16 *v, int B, int T, int Hq, int Hkv,
                         int64_t cap, int pos0, int window, const int32_t *cu, int n_docs, float *lse) {
    static bool attr_set = false;
    if (!attr_set) {
        CUDA_CHECK(cudaFuncSetAttribute(attn_flash_kernel<D>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        (int)fa_cfg<D>::SMEM));
        attr_set = true;
    }
    const float scale_log2 = (1.0f / sqrtf((float)D)) * 1.4426950408889634f;
    const dim3 grid((unsigned)ceil_div64(T, FA_BM), (unsigned)Hq, (unsigned)B);
    attn_flash_kernel<D><<<grid, FA_THREADS, fa_cfg<D>::SMEM, pn_cuda_stream()>>>(out, q, k, v, T, Hq, Hkv, cap, pos0, window,
                                                                  scale_log2, cu, n_docs, lse);
    CUDA_LAUNCH_CHECK();
}

// Split-K for the simple kernel: when few query rows face many keys (decode), each row's keys are cut into
// slices run by separate blocks, the last of which merges the partials. The context's split workspace holds
// SPLIT_ROWS counters (zero when allocated; each launch leaves them zero), then the partials; a launch that
// would need more than it holds uses fewer splits (or none: more rows than counters).
#define SPLIT_MIN_KEYS 256   // keys per split at least (one chunk of the simple kernel)
#define SPLIT_MIN_KEYS_AT 64 // the same for attention_at (decoding)
#define SPLIT_WORKSPACE (8u << 20)
#define SPLIT_ROWS 65536 // counters (int) at the workspace's start

// The number of key slices per row (none shorter than min_keys, at most max_splits, about per_sm blocks per
// SM in all when each slice takes `blocks` blocks, or one per slice_keys keys if that is more), and *ws the
// context's split workspace when it is more than one; rows: the query rows (B T Hq), each with a partial
// sum per slice.
static int choose_splits(int64_t rows, int64_t blocks, int64_t max_keys, int D, int64_t min_keys, int per_sm,
                         int64_t slice_keys, int max_splits, float **ws) {
    int64_t ns = ceil_div64(max_keys, min_keys);
    int64_t want = ceil_div64((int64_t)per_sm * pn_cuda_ctx_get()->n_sms, blocks);
    if (slice_keys > 0 && want < ceil_div64(max_keys, slice_keys)) want = ceil_div64(max_keys, slice_keys);
    if (ns > want) ns = want;
    if (ns > max_splits) ns = max_splits;
    const int64_t fit = (int64_t)((SPLIT_WORKSPACE - SPLIT_ROWS * sizeof(int)) / sizeof(float)) / (rows * (D + 2));
    if (ns > fit) ns = fit;
    if (ns <= 1 || rows > SPLIT_ROWS) return 1;
    if (!(*ws = (float *)pn_cuda_ws_try(PN_WS_ATTN_SPLIT, SPLIT_WORKSPACE))) return 1; // no room: unsplit
    return (int)ns;
}

// The simple kernel (+ the combine when split) over max_keys keys at most per row.
static void launch_simple(bf16 *o, const bf16 *qp, const bf16 *kp, const bf16 *vp, int64_t B, int64_t T, int64_t Hq,
                          int64_t Hkv, int64_t D, int64_t cap, int pos0, int window, const int32_t *cu, int n_docs,
                          const int32_t *posv, const float *inv_freq, int64_t max_keys, int64_t min_keys,
                          bf16 *kst = NULL, bf16 *vst = NULL, const bf16 *knew = NULL, const bf16 *vnew = NULL) {
    const int64_t rows = B * T * Hq;
    float *split_ws = NULL;
    // Decode (min_keys SPLIT_MIN_KEYS_AT): about 3 blocks per SM. Measured on an H100 (Qwen2.5-1.5B shape,
    // batch 1, 8K-token cache, same machine): 487 tok/s with 33 slices of ~250 keys, 452 with 64 of 128 (8
    // per SM) and 452 with 22 of ~370 (2 per SM); at 640 keys the kernel uses 10 slices of 64 either way (its
    // own count, from the real length).
    const int ns = choose_splits(rows, rows, max_keys, (int)D, min_keys, min_keys == SPLIT_MIN_KEYS_AT ? 3 : 8, 0,
                                 SPLIT_MAX, &split_ws);
    const dim3 grid((unsigned)(T * ns), (unsigned)Hq, (unsigned)B);
    const bool vec = D % 8 == 0 && is_aligned16(o) && is_aligned16(qp) && is_aligned16(kp) && is_aligned16(vp) &&
                     (!knew || (is_aligned16(knew) && is_aligned16(vnew)));
    int *cnt = ns > 1 ? (int *)split_ws : NULL;
    float *part = ns > 1 ? split_ws + SPLIT_ROWS : NULL; // SPLIT_ROWS ints = as many floats
    pn_launch(vec ? attn_simple_kernel<true> : attn_simple_kernel<false>, grid, SIMPLE_THREADS, 0, o, part, qp, kp, vp,
              (int)T, (int)Hq, (int)Hkv, (int)D, cap, pos0, window, 1.0f / sqrtf((float)D), ns, (int)min_keys, cu, n_docs, posv,
              inv_freq, kst, vst, knew, vnew, cnt);
}

// The decode kernel (T == 1) where it applies (D 64 or 128, Hq / Hkv <= DEC_GMAX, 16-byte aligned rows,
// PN_DECODE_SIMPLE unset): 1, else 0 and nothing launched. About 2 blocks per SM (~108 KB of shared memory
// each at D = 128); slices of DEC_KC keys at least.
static int try_launch_decode(bf16 *o, const bf16 *qp, const bf16 *kp, const bf16 *vp, int64_t B, int64_t Hq,
                             int64_t Hkv, int64_t D, int64_t cap, int window, const int32_t *posv,
                             const float *inv_freq, int64_t max_keys, bf16 *kst = NULL, bf16 *vst = NULL,
                             const bf16 *knew = NULL, const bf16 *vnew = NULL) {
    static const bool simple = getenv("PN_DECODE_SIMPLE") != NULL; // read once
    const bool aligned = is_aligned16(o) && is_aligned16(qp) && is_aligned16(kp) && is_aligned16(vp) &&
                         (!knew || (is_aligned16(knew) && is_aligned16(vnew)));
    if (simple || (D != 64 && D != 128) || Hq % Hkv || Hq / Hkv > DEC_GMAX || !aligned) return 0;
    static bool attr_set[2] = {false, false};
    const size_t smem = D == 128 ? dec_cfg<128>::SMEM : dec_cfg<64>::SMEM;
    void (*kern)(bf16 *, float *, const bf16 *, const bf16 *, const bf16 *, int, int, int64_t, int, float, int, int,
                 const int32_t *, const float *, bf16 *, bf16 *, const bf16 *, const bf16 *, int *) =
        D == 128 ? attn_decode_kernel<128> : attn_decode_kernel<64>;
    if (!attr_set[D == 128]) {
        CUDA_CHECK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
        attr_set[D == 128] = true;
    }
    // Slices of DEC_SLICE_KEYS keys at most (PN_DECODE_SLICE_KEYS=N: N, 0 for none) where the batch alone
    // would fill the GPU: a block that walks a whole 64K-key row takes milliseconds, and a batch of 156 rows
    // x 2 KV heads is 1.2 waves of them (the last 0.2 alone on the GPU).
    static const char *sk_env = getenv("PN_DECODE_SLICE_KEYS");
    static const int64_t slice_keys = sk_env ? atoll(sk_env) : DEC_SLICE_KEYS;
    // PN_DECODE_MIN_SLICE=N (>= DEC_KC) and PN_DECODE_PER_SM=N (blocks per SM the slices aim for) sweep the
    // slicing (tests/gpu/decode_slices.sh); per SM 1 and 2 measured alike.
    static const char *mk_env = getenv("PN_DECODE_MIN_SLICE");
    static const int min_keys = mk_env && atoi(mk_env) >= DEC_KC ? atoi(mk_env) : DEC_MIN_SLICE;
    static const char *ps_env = getenv("PN_DECODE_PER_SM");
    static const int per_sm = ps_env && atoi(ps_env) > 0 ? atoi(ps_env) : 2;
    float *split_ws = NULL;
    const int ns = choose_splits(B * Hq, B * Hkv, max_keys, (int)D, min_keys, per_sm, slice_keys, DEC_SPLIT_MAX, &split_ws);
    int *cnt = ns > 1 ? (int *)split_ws : NULL;
    float *part = ns > 1 ? split_ws + SPLIT_ROWS : NULL;
    const float scale_log2 = (1.0f / sqrtf((float)D)) * 1.4426950408889634f;
    pn_launch(kern, dim3((unsigned)ns, (unsigned)Hkv, (unsigned)B), DEC_THREADS, smem, o, part, qp, kp, vp, (int)Hq,
              (int)Hkv, cap, window, scale_log2, ns, min_keys, posv, inv_freq, kst, vst, knew, vnew, cnt);
    return 1;
}

static void check_shape(int64_t B, int64_t T, int64_t Hq, int64_t D) {
    if (D > 256 || D == 0) pn_panic("attention: head size %lld is not supported on cuda (up to 256)", (long long)D);
    if (T > INT32_MAX / SPLIT_MAX || B > 65535 || Hq > 65535)
        pn_panic("attention: shape B=%lld T=%lld Hq=%lld too large for the cuda grid", (long long)B, (long long)T,
                 (long long)Hq);
}

// Decode at device-held positions: the splits are chosen for the longest row the cache allows (the real
// length is only known on the device), so one launch configuration serves every step of a graph; slices of
// 64 keys at least (not a whole chunk): a decode row is latency-bound, and short rows then still spread
// over more blocks. Still latency-bound: ~13.6 us per launch under ncu at a 640-key cache (10 slices of 64
// keys; 16.3 us when all 64 launched slices ran, ~10 keys each, and one block merged all 64 serially).
// Loading each thread's whole key row, or values ahead of the dot products, gained 1% at 640 keys and lost
// 11% at 8K (122 registers: two blocks per SM), so the kernel keeps its loops.
void pn_cuda_attention_at(pn_tensor *out, const pn_tensor *q, const pn_tensor *kcache, const pn_tensor *vcache,
                          const pn_tensor *inv_freq, const pn_tensor *pos, int window) {
    const int64_t B = q->shape[0], T = q->shape[1], Hq = q->shape[2], D = q->shape[3];
    const int64_t cap = kcache->shape[1], Hkv = kcache->shape[2];
    if (B == 0 || T == 0 || Hq == 0) return;
    check_shape(B, T, Hq, D);
    const int64_t max_keys = window > 0 && window < cap ? window : cap;
    const float *fr = inv_freq ? (const float *)inv_freq->data : NULL;
    if (T == 1 && try_launch_decode((bf16 *)out->data, (const bf16 *)q->data, (const bf16 *)kcache->data,
                                    (const bf16 *)vcache->data, B, Hq, Hkv, D, cap, window, (const int32_t *)pos->data,
                                    fr, max_keys))
        return;
    launch_simple((bf16 *)out->data, (const bf16 *)q->data, (const bf16 *)kcache->data, (const bf16 *)vcache->data,
                  B, T, Hq, Hkv, D, cap, 0, window, NULL, 0, (const int32_t *)pos->data, fr, max_keys,
                  SPLIT_MIN_KEYS_AT);
}

// kv_store_at and attention_at in one launch (one new token per sequence): the new key and value enter the
// attention from k and v and are stored by the kernel. Several new tokens: the two ops.
void pn_cuda_kv_attend_at(pn_tensor *out, const pn_tensor *q, pn_tensor *kcache, pn_tensor *vcache, const pn_tensor *k,
                          const pn_tensor *v, const pn_tensor *inv_freq, const pn_tensor *pos, int window) {
    const int64_t B = q->shape[0], T = q->shape[1], Hq = q->shape[2], D = q->shape[3];
    const int64_t cap = kcache->shape[1], Hkv = kcache->shape[2];
    if (T != 1) {
        pn_cuda_kv_store_at(kcache, vcache, k, v, inv_freq, pos);
        pn_cuda_attention_at(out, q, kcache, vcache, inv_freq, pos, window);
        return;
    }
    if (B == 0 || Hq == 0) return;
    check_shape(B, T, Hq, D);
    const int64_t max_keys = window > 0 && window < cap ? window : cap;
    const float *fr = inv_freq ? (const float *)inv_freq->data : NULL;
    if (try_launch_decode((bf16 *)out->data, (const bf16 *)q->data, (const bf16 *)kcache->data,
                          (const bf16 *)vcache->data, B, Hq, Hkv, D, cap, window, (const int32_t *)pos->data, fr,
                          max_keys, (bf16 *)kcache->data, (bf16 *)vcache->data, (const bf16 *)k->data,
                          (const bf16 *)v->data))
        return;
    launch_simple((bf16 *)out->data, (const bf16 *)q->data, (const bf16 *)kcache->data, (const bf16 *)vcache->data,
                  B, T, Hq, Hkv, D, cap, 0, window, NULL, 0, (const int32_t *)pos->data, fr, max_keys,
                  SPLIT_MIN_KEYS_AT, (bf16 *)kcache->data, (bf16 *)vcache->data, (const bf16 *)k->data,
                  (const bf16 *)v->data);
}

void pn_cuda_attention(pn_tensor *out, const pn_tensor *q, const pn_tensor *kcache, const pn_tensor *vcache,
                       int pos0, int window) {
    pn_cuda_attention_packed(out, NULL, q, kcache, vcache, pos0, window, NULL, 0);
}

int pn_cuda_attention_packed(pn_tensor *out, float *lse, const pn_tensor *q, const pn_tensor *kcache,
                             const pn_tensor *vcache, int pos0, int window, const int32_t *cu, int n_docs) {
#ifdef PN_HAVE_CUDNN
    // cuDNN's fused SDPA takes plain causal prefill when it can (-1: not handled); PN_NO_CUDNN set disables it.
    // Packed documents take the own kernels (one launch for all of them).
    static const bool no_cudnn = getenv("PN_NO_CUDNN") != NULL; // read once
    // cuDNN reads the cache as positions 0 .. pos0 + T - 1 in order: not a ring that wrapped
    if (!cu && !lse && !no_cudnn && pos0 + q->shape[1] <= kcache->shape[1] &&
        pn_cuda_attention_cudnn(out, q, kcache, vcache, pos0, window) == 0)
        return 0;
#endif
    const int64_t B = q->shape[0], T = q->shape[1], Hq = q->shape[2], D = q->shape[3];
    const int64_t cap = kcache->shape[1], Hkv = kcache->shape[2];
    if (B == 0 || T == 0 || Hq == 0) return lse != NULL;
    check_shape(B, T, Hq, D);
    bf16 *o = (bf16 *)out->data;
    const bf16 *qp = (const bf16 *)q->data, *kp = (const bf16 *)kcache->data, *vp = (const bf16 *)vcache->data;
    const bool aligned = is_aligned16(o) && is_aligned16(qp) && is_aligned16(kp) && is_aligned16(vp);
    if (T >= 64 && D == 128 && aligned) {
        launch_flash<128>(o, qp, kp, vp, (int)B, (int)T, (int)Hq, (int)Hkv, cap, pos0, window, cu, n_docs, lse);
        return lse != NULL;
    } else if (T >= 64 && D == 64 && aligned) {
        launch_flash<64>(o, qp, kp, vp, (int)B, (int)T, (int)Hq, (int)Hkv, cap, pos0, window, cu, n_docs, lse);
        return lse != NULL;
    } else {
        const int64_t max_keys = window > 0 && window < pos0 + T ? window : pos0 + T;
        launch_simple(o, qp, kp, vp, B, T, Hq, Hkv, D, cap, pos0, window, cu, n_docs, NULL, NULL, max_keys,
                      SPLIT_MIN_KEYS);
    }
    return 0;
}
