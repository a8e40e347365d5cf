// gdn_tile.cuh: what the Gated DeltaNet kernels (gdn.cu, gdn_bwd.cu) are built from: 64×64 tile products on
// tensor cores by 256 threads, each owning 16 elements of the output (tile_r, tile_c below) — mm64_bf from
// bf16 tiles in shared memory (ldmatrix, mma m16n8k16) —, the triangular inverse (fp32), and the chunked
// kernels' common frame (chunk geometry, bf16 tiles in by cp.async and out of the accumulators). fp32
// accumulators throughout.
#ifndef PN_CUDA_GDN_TILE_CUH
#define PN_CUDA_GDN_TILE_CUH

#include "mma.cuh"

// Row pitch (floats) of a [64, 64] fp32 shared tile (A and T of the triangular solve): 4 (mod 32), so that
// 8 rows g × 4 columns t, X[g][t], hit 32 different banks.
#define TILE_P 68
// The pitch (elements) of [*, 64] bf16 tiles (state slices, V', dO, P): 144-byte rows, 16 mod 128, so the
// 8 rows an ldmatrix reads fall in 8 different 16-byte bank groups.
#define TILE_SP 72

// The thread's elements of the 64×64 output: acc[i][j] is row tile_r(i), column tile_c(j). Warp w owns
// rows 32 (w % 2) .. + 31 and columns 16 (w / 2) .. + 15, i.e. two m16 × two n8 tiles of
// mma.m16n8k8; inside them a lane holds rows g, g + 8 (g = lane / 4) and columns 2 (lane % 4), + 1 (the
// accumulator fragment of the PTX ISA). Every element has exactly one owner, as before.
__host__ __device__ __forceinline__ int tile_r(int i) { return 32 * ((threadIdx.x >> 5) & 1) + ((threadIdx.x & 31) >> 2) + 8 * i; }
__host__ __device__ __forceinline__ int tile_c(int j) { return 16 * (threadIdx.x >> 6) + 2 * (threadIdx.x & 3) + (j & 1) + 8 * (j >> 1); }

// The 64×64 product acc[i][j] += Σ_{kk < nk} A(tile_r(i), kk) B(kk, tile_c(j)) (256 threads) from bf16 tiles
// in shared memory, read with ldmatrix and multiplied by the bf16 mma.sync m16n8k16 (fp32 accumulators):
// per 16 steps of the contraction a warp issues 3 ldmatrix.x4 and 4 mma. Operand layouts:
//   AT false: A(m, kk) = a[m lda + kk] (row-major [64][nk]); AT true: A(m, kk) = a[kk lda + m] (stored [nk][64]),
//   BT false: B(kk, n) = b[kk ldb + n] (stored [nk][64]);    BT true: B(kk, n) = b[n ldb + kk] (stored [64][nk]).
// The contraction runs in steps of 16 up to nk rounded up: the caller keeps A and B zero (finite at least)
// there. Pitches (elements) must keep rows 16-byte aligned; pitches of 16 mod 64 bytes are conflict-free.
// Work a warp can skip, the same bits (products of exact zeros add nothing to an fp32 sum):
//   rows: output rows at or past it are not wanted; a warp whose 32 rows all are skips the product (its
//         accumulators keep what they hold: the rows past K of a state slice's last 64-row tile, zero);
//   tri:  MM_LOWER, A lower triangular (A(m, kk) = 0 for kk > m: T's and P's products): a warp's contraction
//         stops after its last row; MM_UPPER, A upper triangular (A(m, kk) = 0 for kk < m: Pᵀ): it starts at
//         its first row. Either halves the product for half the warps.
#define MM_FULL 0
#define MM_LOWER 1
#define MM_UPPER 2
template <bool AT, bool BT, int TRI = MM_FULL, bool STEP = true>
__device__ __forceinline__ void mm64_bf(float (&acc)[4][4], int nk, const bf16 *a, int lda, const bf16 *b, int ldb,
                                        int rows = 64) {
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    const int mb = 32 * (w & 1), nb = 16 * (w >> 1), q = lane >> 3, l8 = lane & 7;
    if (mb >= rows) return; // (uniform in the warp; no barrier below)
    if (TRI == MM_LOWER) nk = min(nk, mb + 32);
    const int k1 = TRI == MM_UPPER ? mb : 0;
    // STEP: the lane's ldmatrix addresses at k0 = k1 as 32-bit shared addresses, stepped by a constant each 16
    // of the contraction (the pointer arithmetic and generic-to-shared conversion per ldmatrix were most of the
    // product's instructions besides the mma): A's second 16 rows are ma bytes on, each k step ka, B's kbs.
    // Without STEP the addresses are formed per k step from the pointers (fewer live registers: dqk's four
    // accumulators and WY's spill with STEP).
    const uint32_t ma = AT ? 32u : 32u * (uint32_t)lda, ka = AT ? 32u * (uint32_t)lda : 32u,
                   kbs = BT ? 32u : 32u * (uint32_t)ldb;
    uint32_t pa = 0, pb = 0;
    if (STEP) {
        pa = smem_addr(AT ? a + (k1 + 8 * (q >> 1) + l8) * lda + mb + 8 * (q & 1)
                          : a + (mb + (lane & 15)) * lda + k1 + (lane >> 4) * 8);
        pb = smem_addr(BT ? b + (nb + 8 * (q >> 1) + l8) * ldb + k1 + 8 * (q & 1)
                          : b + (k1 + 8 * (q & 1) + l8) * ldb + nb + 8 * (q >> 1));
    }
    for (int k0 = k1; k0 < nk; k0 += 16, pa += ka, pb += kbs) {
        uint32_t af[2][4], bq[4];
        if (STEP) {
#pragma unroll
            for (int mi = 0; mi < 2; mi++) {
                if (!AT) ldsm_x4(af[mi], pa + mi * ma);
                else ldsm_x4_trans(af[mi], pa + mi * ma);
            }
            if (BT) ldsm_x4(bq, pb);
            else ldsm_x4_trans(bq, pb);
        } else {
#pragma unroll
            for (int mi = 0; mi < 2; mi++) {
                const int m0 = mb + 16 * mi;
                if (!AT) ldmatrix_x4(af[mi], a + (m0 + (lane & 15)) * lda + k0 + (lane >> 4) * 8);
                else ldmatrix_x4_trans(af[mi], a + (k0 + 8 * (q >> 1) + l8) * lda + m0 + 8 * (q & 1));
            }
            if (BT) ldmatrix_x4(bq, b + (nb + 8 * (q >> 1) + l8) * ldb + k0 + 8 * (q & 1));
            else ldmatrix_x4_trans(bq, b + (k0 + 8 * (q & 1) + l8) * ldb + nb + 8 * (q >> 1));
        }
#pragma unroll
        for (int mi = 0; mi < 2; mi++)
#pragma unroll
            for (int ni = 0; ni < 2; ni++) {
                float c[4] = {acc[2 * mi][2 * ni], acc[2 * mi][2 * ni + 1], acc[2 * mi + 1][2 * ni], acc[2 * mi + 1][2 * ni + 1]};
                mma_bf16(c, af[mi], bq[2 * ni], bq[2 * ni + 1]);
                acc[2 * mi][2 * ni] = c[0], acc[2 * mi][2 * ni + 1] = c[1];
                acc[2 * mi + 1][2 * ni] = c[2], acc[2 * mi + 1][2 * ni + 1] = c[3];
            }
    }
}

__device__ __forceinline__ void zero_acc(float (&acc)[4][4]) {
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;
}

// s + Σ_{t < 16} a[t] b[t TILE_P], in order: a a 16-byte aligned row of a [*, TILE_P] fp32 tile (four 16-byte
// loads), b a column of one.
__device__ __forceinline__ float dot16(const float *a, const float *b, float s) {
#pragma unroll
    for (int t = 0; t < 16; t += 4) {
        const float4 x = *(const float4 *)(a + t);
        s = fmaf(x.x, b[t * TILE_P], s);
        s = fmaf(x.y, b[(t + 1) * TILE_P], s);
        s = fmaf(x.z, b[(t + 2) * TILE_P], s);
        s = fmaf(x.w, b[(t + 3) * TILE_P], s);
    }
    return s;
}

// T = (I + A)⁻¹ for the strictly lower A [64, TILE_P] of a chunk of Lc rows (zero past Lc), blocked in 16-row
// blocks so that the dependent chain is 15 rows long, not 63 (the unblocked substitution kept one warp busy
// for the whole chain while the other seven idled):
//   1. the four diagonal blocks T_ii = (I + A_ii)⁻¹ by forward substitution down each column, four lanes a
//      column (each summing every fourth term, then two shuffles);
//   2. B_ik = T_ii A_ik for the blocks below the diagonal, written over A_ik;
//   3. by distance d = 1, 2, 3 from the diagonal: T_{i,i−d} = −Σ_{k=i−d}^{i−1} B_ik T_{k,i−d}, whose factors
//      are all nearer the diagonal (from (I + A) T = I, row block i: (I + A_ii) T_ij = −Σ_{k<i} A_ik T_kj).
// Steps 2 and 3 give each thread one element (r, c) of a 16×16 block, fp32 FMAs over 16-term rows. Writes all
// of Ts [64, TILE_P] (zero above the diagonal and past Lc); A's blocks below the diagonal are overwritten.
// The caller puts a barrier between A's last write and this, and between this and Ts's first read.
__device__ __forceinline__ void tri_inv64(float *Ts, float *A, int Lc) {
    const int tid = threadIdx.x;
    {
        const int j = tid >> 2, p = tid & 3, b0 = j & ~15, iend = min(b0 + 16, Lc); // a warp's columns share b0
        for (int i = p; i < 64; i += 4) Ts[i * TILE_P + j] = (i == j && j < Lc) ? 1.0f : 0.0f;
        __syncwarp();
        // from the warp's first column + 1 (rows above it have no term in any of its columns): uniform trip count
        // in the warp, so the shuffles see it whole
        for (int i = 8 * (tid >> 5) + 1; i < iend; i++) {
            float s = 0.0f;
            for (int m = j + p; m < i; m += 4) s = fmaf(A[i * TILE_P + m], Ts[m * TILE_P + j], s);
            s += __shfl_xor_sync(0xffffffffu, s, 1);
            s += __shfl_xor_sync(0xffffffffu, s, 2);
            if (i > j && p == 0) Ts[i * TILE_P + j] = -s;
            __syncwarp(); // row i of column j is read by the group's other lanes from the next i on
        }
    }
    const int nb = (Lc + 15) >> 4; // blocks holding rows < Lc (the rest of T stays zero)
    if (nb < 2) return;
    const int r = tid >> 4, c = tid & 15;
    __syncthreads();
    float b[6];
#pragma unroll
    for (int i = 1, q = 0; i < 4; i++)
#pragma unroll
        for (int k = 0; k < i; k++, q++) {
            float s = 0.0f;
            if (i < nb) s = dot16(Ts + (16 * i + r) * TILE_P + 16 * i, A + 16 * k + c + 16 * i * TILE_P, s);
            b[q] = s;
        }
    __syncthreads(); // every A_ik read
#pragma unroll
    for (int i = 1, q = 0; i < 4; i++)
#pragma unroll
        for (int k = 0; k < i; k++, q++)
            if (i < nb) A[(16 * i + r) * TILE_P + 16 * k + c] = b[q];
    for (int d = 1; d < nb; d++) {
        __syncthreads(); // B complete; the blocks nearer the diagonal complete
        for (int i = d; i < nb; i++) {
            const int j = i - d;
            float s = 0.0f;
            for (int k = j; k < i; k++)
                s = dot16(A + (16 * i + r) * TILE_P + 16 * k, Ts + 16 * k * TILE_P + 16 * j + c, s);
            Ts[(16 * i + r) * TILE_P + 16 * j + c] = -s;
        }
    }
}

// ----------------------------------------------------------------------------------------------------
// The chunked kernels' common frame (gdn.cu, gdn_bwd.cu): launch, chunk geometry, bf16 tiles in and out.

#define GDN_LAUNCH(kern, grid, block, smem, ...) pn_launch_plain(kern, dim3(grid), dim3(block), (smem), __VA_ARGS__)
#define GDN_LAUNCH_PDL(kern, grid, block, smem, ...) pn_launch(kern, (grid), (block), (smem), __VA_ARGS__)

#define GDN_C 64        // chunk length (PN_GDN_CHUNK)
#define GDN_THREADS 256 // threads of the chunked kernels (mm64 assumes 256)
#define GDN_BV 64       // V columns per block of the state walks
#define GDN_SP TILE_SP  // row pitch of the [*, 64] state slice and V' tiles (gdn_tile.cuh)

// Row pitch (bf16 elements) of a [rows, K] bf16 tile, read by ldmatrix (mm64_bf) as A(m, kk) = X[m][kk] or,
// 64 columns at a time, as A(m, kk) = X[kk][mt + m]: K rounded up to 64 (so the last 64-column tile stays
// inside the row), plus 8: rows 16 mod 128 bytes apart, so the 8 rows of an ldmatrix hit 8 different
// 16-byte bank groups, and 16-byte aligned for cp.async.
__host__ __device__ __forceinline__ int pitch_kb(int K) { return ((K + 63) & ~63) + 8; }
__host__ __device__ __forceinline__ int round16(int x) { return (x + 15) & ~15; }
// Row pitch of [64, K] bf16 tiles only ever read along their rows (A(m, kk) = X[m][kk], or B(kk, n) = X[n][kk])
// up to round16(K) (the forward walk's W and q): that plus 8, an odd multiple of 16 bytes, so the 8 rows of an
// ldmatrix hit 8 different 16-byte bank groups (104 at K 96 against pitch_kb's 136).
__host__ __device__ __forceinline__ int pitch_qk(int K) { return round16(K) + 8; }
static inline size_t align256(size_t n) { return (n + 255) & ~(size_t)255; } // workspace carving

// Rows 0 .. rows − 1 of a bf16 tile into shared memory dst (pitch dp elements, rows 16-byte aligned), columns
// 0 .. fill − 1 (fill a multiple of 8): global row r < nvalid (at src + r ld) supplies columns c < ncols,
// everything else is zero. 16-byte cp.async copies when async (the caller guarantees ncols % 8 == 0 and 16-byte
// aligned rows; the copies land after cp_async_wait), else plain loads; zero groups are one 16-byte store.
// Every thread of the block calls it. Where the block divides into whole rows of 8-column groups (fill 64, 128,
// 256: every tile but K 129..192's), a thread keeps one column group and steps down the rows, without a
// division per group; fill is a constant after inlining where the caller passes one (GDN_BV, 64 MT).
// load_tile runs the async and plain paths as separate loops (Nsight Compute had the tile loads at a fifth to
// a third of the state walks' and dqk kernel's instructions; split, the state walks gained 5%);
// load_tile_small keeps one loop for both, less code: the WY kernel, at the instruction cache's limit, ran
// 1.27 ms with it against 1.42 split (H100, anchor shape).
__device__ __forceinline__ void load_group(bf16 *dst, int dp, const bf16 *src, int64_t ld, int nvalid, int ncols,
                                           bool async, int r, int c) {
    bf16 *d = dst + r * dp + c;
    if (r < nvalid && c < ncols && async) {
        cp_async16(d, src + r * ld + c);
    } else if (r >= nvalid || c >= ncols) {
        *(uint4 *)d = uint4{0u, 0u, 0u, 0u};
    } else {
#pragma unroll
        for (int e = 0; e < 8; e++) d[e] = c + e < ncols ? src[r * ld + c + e] : f2bf(0.0f);
    }
}
// PATH 0: plain loads, 1: cp.async, 2: async decides per group.
template <int PATH>
__device__ __forceinline__ void load_rows(bf16 *dst, int dp, const bf16 *src, int64_t ld, int rows, int nvalid,
                                          int ncols, int n8, bool async) {
    const bool as = PATH == 2 ? async : PATH == 1;
    if (GDN_THREADS % n8 == 0) {
        const int step = GDN_THREADS / n8, c = (int)(threadIdx.x % n8) * 8;
        for (int r = threadIdx.x / n8; r < rows; r += step) load_group(dst, dp, src, ld, nvalid, ncols, as, r, c);
    } else {
        for (int idx = threadIdx.x; idx < rows * n8; idx += GDN_THREADS) {
            const int r = idx / n8;
            load_group(dst, dp, src, ld, nvalid, ncols, as, r, (idx - r * n8) * 8);
        }
    }
}
__device__ __forceinline__ void load_tile(bf16 *dst, int dp, const bf16 *src, int64_t ld, int rows, int nvalid,
                                          int ncols, int fill, bool async) {
    if (async) load_rows<1>(dst, dp, src, ld, rows, nvalid, ncols, fill >> 3, true);
    else load_rows<0>(dst, dp, src, ld, rows, nvalid, ncols, fill >> 3, false);
}
// load_tile for the one-chunk kernels' async copies: where every row is valid (whole chunks) and the block
// covers whole rows of groups, the thread's column test once and no row test (the walks, whose registers it
// raised into spills, keep load_tile and their own load_whole).
__device__ __forceinline__ void load_tile_async(bf16 *dst, int dp, const bf16 *src, int64_t ld, int rows, int nvalid,
                                                int ncols, int fill, bool async) {
    const int n8 = fill >> 3;
    if (!async || nvalid < rows || GDN_THREADS % n8) {
        load_tile(dst, dp, src, ld, rows, nvalid, ncols, fill, async);
        return;
    }
    const int step = GDN_THREADS / n8, c = (int)(threadIdx.x % n8) * 8;
    int r = (int)(threadIdx.x / n8);
    if (c < ncols) {
        const bf16 *s = src + r * ld + c;
        for (bf16 *d = dst + r * dp + c; r < rows; r += step, s += step * ld, d += step * dp) cp_async16(d, s);
    } else {
        for (; r < rows; r += step) *(uint4 *)(dst + r * dp + c) = uint4{0u, 0u, 0u, 0u};
    }
}
__device__ __forceinline__ void load_tile_small(bf16 *dst, int dp, const bf16 *src, int64_t ld, int rows, int nvalid,
                                                int ncols, int fill, bool async) {
    const int n8 = fill >> 3;
    if (GDN_THREADS % n8 == 0) {
        const int step = GDN_THREADS / n8, c = (int)(threadIdx.x % n8) * 8;
        for (int r = threadIdx.x / n8; r < rows; r += step) load_group(dst, dp, src, ld, nvalid, ncols, async, r, c);
    } else {
        load_tile(dst, dp, src, ld, rows, nvalid, ncols, fill, async);
    }
}

// The state walks' direct path for whole chunks (all but a sequence's last, short one): rows 0 .. 63 of a
// bf16 tile of 16-byte aligned rows and ncols % 8 == 0 columns by cp.async, the thread's group of 8 columns
// (tid % N8) at rows tid / N8, + GDN_THREADS / N8, ...; groups at or past ncols are skipped: the caller zeroed
// them once with zero_cols (fill 8 N8). No bounds or zero-fill tests (Nsight Compute had load_tile's address
// and branch instructions at a fifth of the walks' and the state gradient's instructions). N8 divides
// GDN_THREADS (tiles of 64 and 128 columns, 256 with 32-row passes).
template <int N8>
__device__ __forceinline__ void load_whole(bf16 *dst, int dp, const bf16 *src, int64_t ld, int ncols) {
    static_assert(GDN_THREADS % N8 == 0, "the block covers whole rows of groups");
    const int c = (int)(threadIdx.x % N8) * 8, r0 = (int)(threadIdx.x / N8);
    if (c >= ncols) return;
    src += r0 * ld + c;
    dst += r0 * dp + c;
#pragma unroll
    for (int r = 0; r < GDN_C; r += GDN_THREADS / N8) cp_async16(dst + r * dp, src + r * ld);
}
template <int N8>
__device__ __forceinline__ void zero_cols(bf16 *dst, int dp, int ncols) {
    const int c = (int)(threadIdx.x % N8) * 8;
    if (c < ncols) return;
    for (int r = (int)(threadIdx.x / N8); r < GDN_C; r += GDN_THREADS / N8)
        *(uint4 *)(dst + r * dp + c) = uint4{0u, 0u, 0u, 0u};
}

// A walk's chunk tile of Lc rows: load_whole<N8> where whole (the caller's alignment test, N8 > 0) and the
// chunk is whole, else load_tile (rows 64, filled to fill columns).
template <int N8>
__device__ __forceinline__ void load_walk_tile(bf16 *dst, int dp, const bf16 *src, int64_t ld, int Lc, int ncols,
                                               int fill, bool async, bool whole) {
    if constexpr (N8 > 0) {
        if (whole && Lc == GDN_C) {
            load_whole<N8>(dst, dp, src, ld, ncols);
            return;
        }
    }
    load_tile(dst, dp, src, ld, GDN_C, Lc, ncols, fill, async);
}

// 64 per-row fp32 values x[(t0 + r) H + h] (r < Lc, zero past) into dst, by the block's first 64 threads.
__device__ __forceinline__ void load_row_scalars(float *dst, const float *x, int64_t t0, int Lc, int H, int h,
                                                 bool async) {
    const int r = threadIdx.x;
    if (r >= GDN_C) return;
    if (r < Lc && async) cp_async4(dst + r, x + (t0 + r) * H + h);
    else dst[r] = r < Lc ? x[(t0 + r) * H + h] : 0.0f;
}

// The thread's 16 elements (the mm64 layout) of a bf16 tile in shared memory (pitch dp, even; 4-byte aligned
// rows) to and from fp32 registers: columns tile_c(j), tile_c(j) + 1 (j even) are one 4-byte access, half the
// loads and stores of element-wise ones.
__device__ __forceinline__ void tile_from_smem(float (&x)[4][4], const bf16 *src, int dp) {
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j += 2) {
            const __nv_bfloat162 p = *(const __nv_bfloat162 *)(src + tile_r(i) * dp + tile_c(j));
            x[i][j] = bf2f(p.x), x[i][j + 1] = bf2f(p.y);
        }
}
__device__ __forceinline__ void acc_to_smem_bf16(bf16 *dst, int dp, const float (&acc)[4][4], float f = 1.0f) {
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j += 2)
            *(__nv_bfloat162 *)(dst + tile_r(i) * dp + tile_c(j)) = __floats2bfloat162_rn(f * acc[i][j], f * acc[i][j + 1]);
}

// Stores the thread's 4 × 4 accumulator elements, times rowf[i] (row tile_r(i)), as bf16 or fp32 (T) at
// dst + m ld + c for rows m < nr and columns c < nc: adjacent column pairs (j, j + 1) as one 32-bit (bf16) or
// 64-bit (fp32) store when pairs are aligned (ld and the row start even).
__device__ __forceinline__ void store_pair(bf16 *d, float x0, float x1) { *(__nv_bfloat162 *)d = __floats2bfloat162_rn(x0, x1); }
__device__ __forceinline__ void store_pair(float *d, float x0, float x1) { *(float2 *)d = make_float2(x0, x1); }
__device__ __forceinline__ void store_one(bf16 *d, float x) { *d = f2bf(x); }
__device__ __forceinline__ void store_one(float *d, float x) { *d = x; }
template <class T>
__device__ __forceinline__ void store_acc(T *dst, int64_t ld, const float (&acc)[4][4], const float *rowf, int nr, int nc,
                                          bool pairs) {
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int m = tile_r(i);
        if (m >= nr) continue;
#pragma unroll
        for (int j = 0; j < 4; j += 2) {
            const int c = tile_c(j); // even; tile_c(j + 1) = c + 1
            const float x0 = acc[i][j] * rowf[i], x1 = acc[i][j + 1] * rowf[i];
            if (pairs && c + 1 < nc) {
                store_pair(dst + m * ld + c, x0, x1);
            } else {
                if (c < nc) store_one(dst + m * ld + c, x0);
                if (c + 1 < nc) store_one(dst + m * ld + c + 1, x1);
            }
        }
    }
}

// The double-buffered walks over V's 64-column slabs: with a next slab (more), issue_next() queues its copy
// group into the other buffer and this waits for all groups but that one; else for all. Then a barrier: every
// thread's copies of this slab are visible (and whatever the block wrote before it).
template <class F> __device__ __forceinline__ void slab_wait(bool more, F issue_next) {
    if (more) {
        issue_next();
        cp_async_wait<1>();
    } else {
        cp_async_wait<0>();
    }
    __syncthreads();
}

// Sequence n of the flattened token rows (the state kernels walk one): its first row *row0, length *len and
// the index of its first chunk *cbase, from cu_seqlens and cst (varlen) or, without them, n T, T, n ceil(T / 64).
__device__ __forceinline__ void seq_rows(const int *cu_seqlens, const int *cst, int n, int T, int64_t *row0,
                                         int64_t *len, int64_t *cbase) {
    if (cu_seqlens) {
        *row0 = cu_seqlens[n];
        *len = (int64_t)cu_seqlens[n + 1] - *row0;
        *cbase = cst[n];
    } else {
        *row0 = (int64_t)n * T;
        *len = T;
        *cbase = (int64_t)n * ((T + GDN_C - 1) / GDN_C);
    }
}

// The chunk c of the flattened token rows: first row *t0 and length *Lc, from tab (varlen) or, without it,
// sequence c / ncps, chunk c % ncps of T tokens.
__device__ __forceinline__ void chunk_rows(const int *tab, int64_t c, int ncps, int T, int64_t *t0, int *Lc) {
    if (tab) {
        *t0 = tab[2 * c];
        *Lc = tab[2 * c + 1];
    } else {
        const int64_t seq = c / ncps, ci = c % ncps;
        *t0 = seq * T + ci * GDN_C;
        *Lc = (int)min((int64_t)GDN_C, (int64_t)T - ci * GDN_C);
    }
}


// MT 64×64 tiles in the mm64 layout from x (row pitch ld), stacked down the rows (by_rows: X[mt][i][j] is
// row 64 mt + tile_r(i), column tile_c(j)) or across the columns (row tile_r(i), column 64 mt + tile_c(j)):
// elements at rows < nr and columns < nc, zeros elsewhere and everywhere when x is NULL. tiles_store writes
// the elements at rows < nr, columns < nc of tiles stacked down the rows back.
template <int MT>
__device__ __forceinline__ void tiles_store(float *x, const float (&X)[MT][4][4], int64_t ld, int nr, int nc) {
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const int r = 64 * mt + tile_r(i), cc = tile_c(j);
                if (r < nr && cc < nc) x[r * ld + cc] = X[mt][i][j];
            }
}
template <int MT>
__device__ __forceinline__ void tiles_load(float (&X)[MT][4][4], const float *x, int64_t ld, int nr, int nc, bool by_rows) {
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int i = 0; i < 4; i++)
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const int r = tile_r(i) + (by_rows ? 64 * mt : 0), cc = tile_c(j) + (by_rows ? 0 : 64 * mt);
                X[mt][i][j] = (x && r < nr && cc < nc) ? x[r * ld + cc] : 0.0f;
            }
}

// A [K, 64] slice of a state (or its gradient) in registers: MT tiles of 64 rows in the mm64 layout,
// S[mt][i][j] row 64 mt + tile_r(i), column tile_c(j). slice_load reads it from x (row pitch V: the slice's
// first column; rows < K and columns < nv, zeros elsewhere and everywhere when x is NULL); slice_store
// writes those elements back.
template <int MT>
__device__ __forceinline__ void slice_load(float (&S)[MT][4][4], const float *x, int K, int V, int nv) {
    tiles_load(S, x, V, K, nv, true);
}
template <int MT>
__device__ __forceinline__ void slice_store(float *x, const float (&S)[MT][4][4], int K, int V, int nv) {
    tiles_store(x, S, V, K, nv);
}
// The slice rounded to bf16, rows < srows, to the shared copy sb (pitch GDN_SP).
template <int MT>
__device__ __forceinline__ void slice_to_bf16(bf16 *sb, int srows, const float (&S)[MT][4][4]) {
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const int m = 64 * mt + tile_r(i);
#pragma unroll
            for (int j = 0; j < 4; j += 2)
                if (m < srows)
                    *(__nv_bfloat162 *)(sb + m * GDN_SP + tile_c(j)) = __floats2bfloat162_rn(S[mt][i][j], S[mt][i][j + 1]);
        }
}
// Rows 0 .. rows − 1, columns 0 .. nv − 1 of a bf16 tile in shared memory (pitch GDN_SP) to global g (row pitch
// ld): 16-byte copies when vec (nv 64, 16-byte aligned rows), else one element at a time. A thread keeps one
// 8-column group, 32 rows a pass. (The state walks stored their slices from the accumulator layout before:
// 4-byte stores, an int64 address each, a tenth of the state-gradient kernel's instructions.)
__device__ __forceinline__ void store_rows(bf16 *g, int64_t ld, const bf16 *sb, int rows, int nv, bool vec) {
    const int c = (threadIdx.x & 7) * 8;
    for (int r = threadIdx.x >> 3; r < rows; r += GDN_THREADS / 8) {
        const bf16 *s = sb + r * GDN_SP + c;
        bf16 *d = g + r * ld + c;
        if (vec) {
            *(uint4 *)d = *(const uint4 *)s;
        } else {
#pragma unroll
            for (int e = 0; e < 8; e++)
                if (c + e < nv) d[e] = s[e];
        }
    }
}


// Whether every element the warp owns in a 64×64 output lies above the diagonal (column > row: warps 4 and 6,
// rows 0..31, columns 32..63), where A and P are zero: form_A and form_P skip their product there.
__device__ __forceinline__ bool above_diag(void) {
    const int w = threadIdx.x >> 5;
    return 16 * (w >> 1) >= 32 * (w & 1) + 32;
}

// A = strict_lower(diag(β) k̂ k̂ᵀ ⊙ Γ) of a chunk into As [64, TILE_P] (fp32, zero on and above the diagonal
// and past Lc), from the bf16 k̂ rows kb [64, KB] (zero past K up to K16) and γ, β [64]. The caller puts a
// barrier before tri_inv64 reads it.
__device__ __forceinline__ void form_A(float *As, const bf16 *kb, int KB, int K16, const float *bs, const float *gs,
                                       int Lc) {
    float acc[4][4];
    zero_acc(acc);
    if (!above_diag()) mm64_bf<false, true>(acc, K16, kb, KB, kb, KB);
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int m = tile_r(i), n = tile_c(j);
            As[m * TILE_P + n] = (n < m && m < Lc) ? bs[m] * acc[i][j] * expf(gs[m] - gs[n]) : 0.0f;
        }
}

// P = lower_incl(scale diag(1/‖q‖) q kᵀ diag(1/‖k‖) ⊙ Γ) of a chunk, from the raw q, k tiles qb, kb (pitch
// ld, zero past Lc and past K up to round16(K)) and γ, 1/‖q‖, 1/‖k‖ [64] (after a barrier), rounded to bf16
// as fla rounds it for its products, into a [64, 64] tile in global memory (zero past Lc): the forward's
// prep kernel forms it for the state walk's output and the backward's Pᵀ dO.
__device__ __forceinline__ void form_P(bf16 *Pg, const bf16 *qb, const bf16 *kb, int ld, int K, const float *gs,
                                       const float *rqs, const float *rks, int Lc, float scale) {
    float acc[4][4];
    const float one[4] = {1.0f, 1.0f, 1.0f, 1.0f};
    zero_acc(acc);
    if (!above_diag()) mm64_bf<false, true>(acc, K, qb, ld, kb, ld); // q kᵀ: B(kk, n) = k[n][kk]
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int m = tile_r(i), n = tile_c(j);
            acc[i][j] = (n <= m && m < Lc) ? scale * rqs[m] * rks[n] * acc[i][j] * expf(gs[m] - gs[n]) : 0.0f;
        }
    store_acc(Pg, GDN_C, acc, one, GDN_C, GDN_C, true);
}

#endif
