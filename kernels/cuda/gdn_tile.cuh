// gdn_tile.cuh: the 64×64 fp32 tile products the Gated DeltaNet kernels (gdn.cu, gdn_bwd.cu) are built
// from: 256 threads, each owning a 4×4 register tile of the 64×64 output (rows ty + 16 i, columns tx + 16 j
// with tx = tid % 16, ty = tid / 16). CUDA cores, fp32; the operands come through accessor lambdas.
#ifndef PN_CUDA_GDN_TILE_CUH
#define PN_CUDA_GDN_TILE_CUH

// acc[i][j] += Σ_{kk < nk} a(ty + 16 i, kk) · b(kk, tx + 16 j) with tx = tid % 16, ty = tid / 16 (256
// threads, 64×64 outputs). A warp reads two rows of a (pitches are odd: no bank conflict) and 16
// consecutive columns of b.
template <class FA, class FB>
__device__ __forceinline__ void mm64(float (&acc)[4][4], int nk, FA a, FB b) {
    const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
    for (int kk = 0; kk < nk; kk++) {
        float av[4], bv[4];
#pragma unroll
        for (int i = 0; i < 4; i++) av[i] = a(ty + 16 * i, kk);
#pragma unroll
        for (int j = 0; j < 4; j++) bv[j] = b(kk, tx + 16 * j);
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
    }
}

__device__ __forceinline__ void zero_acc(float (&acc)[4][4]) {
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;
}

// The same product over a long contraction (n, e.g. the value dim) whose operands live in global memory:
// 64-wide slabs of a(m, kk) and b(kk, c) are staged through shared memory sa, sb ([64, 65] floats each), so
// every global element is read once per block, coalesced. a(m, kk) is loaded with kk fastest across threads
// (A row-major along the contraction: token rows of q, v, dO, ...). b(kk, c) is loaded with kk fastest when
// B_KFAST (B stored [c][kk], e.g. a state [K, V] contracted over V, or token rows of another operand), else
// with c fastest (B stored [kk][c]). The lambdas return 0 outside their operand. Contains barriers: every
// thread of the block calls it; on return sa and sb may be reused after a __syncthreads().
template <bool B_KFAST, class FA, class FB>
__device__ __forceinline__ void mm64_staged(float (&acc)[4][4], int n, FA a, FB b, float *sa, float *sb) {
    for (int k0 = 0; k0 < n; k0 += 64) {
        const int nk = min(64, n - k0);
        __syncthreads(); // the previous slab (or whatever the caller kept in sa, sb) is consumed
        for (int idx = threadIdx.x; idx < 64 * 64; idx += 256) {
            const int hi = idx >> 6, lo = idx & 63;
            sa[hi * 65 + lo] = lo < nk ? a(hi, k0 + lo) : 0.0f;
            if (B_KFAST) sb[lo * 65 + hi] = lo < nk ? b(k0 + lo, hi) : 0.0f;
            else sb[hi * 65 + lo] = hi < nk ? b(k0 + hi, lo) : 0.0f;
        }
        __syncthreads();
        mm64(acc, nk, [&](int m, int kk) { return sa[m * 65 + kk]; }, [&](int kk, int c) { return sb[kk * 65 + c]; });
    }
}

#endif
