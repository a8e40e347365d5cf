// gdn_tile.cuh: the 64×64 fp32 tile products the Gated DeltaNet kernels (gdn.cu, gdn_bwd.cu) are built
// from: 256 threads, each owning 16 elements of the 64×64 output (tile_r, tile_c below), computed on tensor
// cores (tf32 in, fp32 accumulators); the operands come through accessor lambdas.
#ifndef PN_CUDA_GDN_TILE_CUH
#define PN_CUDA_GDN_TILE_CUH

// Row pitch (floats) of a [64, 64] shared tile. mm64's fragment loads read, per k-step, lanes at 8 rows
// g × 4 columns t: a(m, kk) = X[m][kk] then hits bank 4 g + t, all 32 different, when the pitch is
// 4 (mod 32). (b(kk, n) = X[kk][n] would want 8 (mod 32), and gets 2-way conflicts here.)
#define TILE_P 68
// The pitch of [*, 64] tiles read only as b(kk, n) = X[kk][n] (state slices, V' and dO tiles): bank 8 t + g.
#define TILE_SP 72

// Row pitch (floats) of a [64, K] shared tile read as a(m, kk) = X[m][kk]: a multiple of 32 plus 4, for the
// reason above.
__host__ __device__ __forceinline__ int pitch_k(int K) { return ((K + 31) & ~31) + 4; }

// The thread's elements of the 64×64 output: acc[i][j] is row tile_r(i), column tile_c(j). Warp w owns
// rows 32 (w % 2) .. + 31 and columns 16 (w / 2) .. + 15, i.e. two m16 × two n8 tiles of
// mma.m16n8k8; inside them a lane holds rows g, g + 8 (g = lane / 4) and columns 2 (lane % 4), + 1 (the
// accumulator fragment of the PTX ISA). Every element has exactly one owner, as before.
__host__ __device__ __forceinline__ int tile_r(int i) { return 32 * ((threadIdx.x >> 5) & 1) + ((threadIdx.x & 31) >> 2) + 8 * i; }
__host__ __device__ __forceinline__ int tile_c(int j) { return 16 * (threadIdx.x >> 6) + 2 * (threadIdx.x & 3) + (j & 1) + 8 * (j >> 1); }

#ifndef PN_GDN_HOST_CHECK
// fp32 → tf32 (round to nearest, ties away: cvt.rna), the operand format of the tf32 mma.
__device__ __forceinline__ uint32_t to_tf32(float x) {
    uint32_t r;
    asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
    return r;
}

// d += A (16×8 tf32, 4 regs) B (8×8 tf32, 2 regs), fp32 accumulators c0..c3 as in the ISA's fragment.
__device__ __forceinline__ void mma_tf32(float &c0, float &c1, float &c2, float &c3, const uint32_t *a, uint32_t b0,
                                        uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
                 "{%8, %9}, {%0, %1, %2, %3};\n"
                 : "+f"(c0), "+f"(c1), "+f"(c2), "+f"(c3)
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
#endif

// acc[i][j] += Σ_{kk < nk} a(tile_r(i), kk) · b(kk, tile_c(j)) (256 threads, 64×64 outputs) on tensor
// cores: operands are read from the accessors as fp32, rounded to tf32 (10-bit mantissa, fla itself feeds
// these products in bf16), accumulated in fp32. nk need not be a multiple of 8: the accessors are never
// called with kk ≥ nk (the fragment is zero there), nor outside rows/columns 0..63. Each step of 8 along the
// contraction is 12 operand loads and 4 mma per thread (the CUDA-core loop it replaces: 64 loads, 128 FMA).
template <class FA, class FB>
__device__ __forceinline__ void mm64(float (&acc)[4][4], int nk, FA a, FB b) {
#ifdef PN_GDN_HOST_CHECK
    for (int kk = 0; kk < nk; kk++)
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 4; j++) acc[i][j] = fmaf(a(tile_r(i), kk), b(kk, tile_c(j)), acc[i][j]);
#else
    const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int r0 = tile_r(0), c0 = 16 * (threadIdx.x >> 6) + g; // B's fragment: column g of each n8 tile
    for (int k0 = 0; k0 < nk; k0 += 8) {
        const int ka = k0 + t, kb = ka + 4;
        const bool va = ka < nk, vb = kb < nk;
        uint32_t af[2][4], bf[2][2];
#pragma unroll
        for (int mi = 0; mi < 2; mi++) {
            const int r = r0 + 16 * mi;
            af[mi][0] = to_tf32(va ? a(r, ka) : 0.0f);
            af[mi][1] = to_tf32(va ? a(r + 8, ka) : 0.0f);
            af[mi][2] = to_tf32(vb ? a(r, kb) : 0.0f);
            af[mi][3] = to_tf32(vb ? a(r + 8, kb) : 0.0f);
        }
#pragma unroll
        for (int ni = 0; ni < 2; ni++) {
            bf[ni][0] = to_tf32(va ? b(ka, c0 + 8 * ni) : 0.0f);
            bf[ni][1] = to_tf32(vb ? b(kb, c0 + 8 * ni) : 0.0f);
        }
#pragma unroll
        for (int mi = 0; mi < 2; mi++)
#pragma unroll
            for (int ni = 0; ni < 2; ni++)
                mma_tf32(acc[2 * mi][2 * ni], acc[2 * mi][2 * ni + 1], acc[2 * mi + 1][2 * ni],
                         acc[2 * mi + 1][2 * ni + 1], af[mi], bf[ni][0], bf[ni][1]);
    }
#endif
}

__device__ __forceinline__ void zero_acc(float (&acc)[4][4]) {
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;
}

// The same product over a long contraction (n, e.g. the value dim) whose operands live in global memory:
// 64-wide slabs of a(m, kk) and b(kk, c) are staged through shared memory sa, sb ([64, TILE_P] floats
// each), so every global element is read once per block, coalesced. a(m, kk) is loaded with kk fastest across threads
// (A row-major along the contraction: token rows of q, v, dO, ...). b(kk, c) is loaded with kk fastest when
// B_KFAST (B stored [c][kk], e.g. a state [K, V] contracted over V, or token rows of another operand), else
// with c fastest (B stored [kk][c]). The lambdas return 0 outside their operand. Contains barriers: every
// thread of the block calls it; on return sa and sb may be reused after a __syncthreads().
// A thread's 16 + 16 elements of a slab are read into registers first, in one unrolled loop, so that all
// 32 loads are in flight at once (a loop storing each value before loading the next waited for every
// load in turn: the backward's kernels were bound by that latency).
template <bool B_KFAST, class FA, class FB>
__device__ __forceinline__ void mm64_staged(float (&acc)[4][4], int n, FA a, FB b, float *sa, float *sb) {
    for (int k0 = 0; k0 < n; k0 += 64) {
        const int nk = min(64, n - k0);
        __syncthreads(); // the previous slab (or whatever the caller kept in sa, sb) is consumed
        float ra[16], rb[16];
#pragma unroll
        for (int u = 0; u < 16; u++) {
            const int idx = threadIdx.x + 256 * u, hi = idx >> 6, lo = idx & 63;
            ra[u] = lo < nk ? a(hi, k0 + lo) : 0.0f;
            if (B_KFAST) rb[u] = lo < nk ? b(k0 + lo, hi) : 0.0f;
            else rb[u] = hi < nk ? b(k0 + hi, lo) : 0.0f;
        }
#pragma unroll
        for (int u = 0; u < 16; u++) {
            const int idx = threadIdx.x + 256 * u, hi = idx >> 6, lo = idx & 63;
            sa[hi * TILE_P + lo] = ra[u];
            if (B_KFAST) sb[lo * TILE_P + hi] = rb[u];
            else sb[hi * TILE_P + lo] = rb[u];
        }
        __syncthreads();
        mm64(acc, nk, [&](int m, int kk) { return sa[m * TILE_P + kk]; }, [&](int kk, int c) { return sb[kk * TILE_P + c]; });
    }
}

// T = (I + A)⁻¹ for the strictly lower A [64, TILE_P] of a chunk of Lc rows (zero past Lc), by forward
// substitution down each column: T_jj = 1, T_ij = −Σ_{j ≤ m < i} A_im T_mj (i > j). Writes all of Ts
// [64, TILE_P] (zero above the diagonal and past Lc). Four lanes per column (256 threads, 64 columns), each
// summing every fourth m, then two shuffles: the 64 rows are sequential, the sum over m is split, so the
// longest column costs ~Lc²/8 dependent FMAs instead of Lc²/2 on one thread. The caller puts a barrier
// between A's last write and this, and between this and Ts's first read.
__device__ __forceinline__ void tri_inv64(float *Ts, const float *A, int Lc) {
#ifdef PN_GDN_HOST_CHECK
    const int j = threadIdx.x;
    for (int i = 0; j < 64 && i < 64; i++) Ts[i * TILE_P + j] = (i == j && j < Lc) ? 1.0f : 0.0f;
    if (j < Lc)
        for (int i = j + 1; i < Lc; i++) {
            float s = 0.0f;
            for (int m = j; m < i; m++) s -= A[i * TILE_P + m] * Ts[m * TILE_P + j];
            Ts[i * TILE_P + j] = s;
        }
#else
    const int j = threadIdx.x >> 2, p = threadIdx.x & 3;
    for (int i = p; i < 64; i += 4) Ts[i * TILE_P + j] = (i == j && j < Lc) ? 1.0f : 0.0f;
    __syncwarp();
    for (int i = 1; i < Lc; i++) { // uniform trip count: the shuffles see the whole warp
        float s = 0.0f;
        for (int m = j + p; m < i; m += 4) s = fmaf(A[i * TILE_P + m], Ts[m * TILE_P + j], s);
        s += __shfl_xor_sync(0xffffffffu, s, 1);
        s += __shfl_xor_sync(0xffffffffu, s, 2);
        if (i > j && p == 0) Ts[i * TILE_P + j] = -s;
        __syncwarp(); // row i of column j is read by the group's other lanes from the next i on
    }
#endif
}

#endif
