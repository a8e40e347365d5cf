// packed.h: where a row's document starts and ends in a packed batch, shared by the CPU ops and the CUDA
// kernels (one definition, so both backends draw the same document boundaries).
//
// A packed batch is B = 1 row of T tokens holding n documents back to back; cu (cu_seqlens, as fla and
// FlashAttention's varlen API name it) holds the n + 1 offsets, cu[0] = 0 <= cu[1] <= ... <= cu[n] = T
// (empty documents allowed). Attention, RoPE and the convolutions treat each document as its own sequence:
// row t sees keys of its own document only and sits at position t - pn_doc_lo(cu, n, t). A NULL cu is one
// document of the whole row.
#ifndef PN_PACKED_H
#define PN_PACKED_H

#include <stdint.h>

#ifdef __CUDACC__
#define PN_HOST_DEVICE static __host__ __device__ __forceinline__
#else
#define PN_HOST_DEVICE static inline
#endif

// The index i of row t's document: cu[i] <= t < cu[i + 1] (binary search, log2(n) steps).
PN_HOST_DEVICE int pn_doc_index(const int32_t *cu, int n, int64_t t) {
    int lo = 0, hi = n; // invariant: cu[lo] <= t < cu[hi]
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (cu[mid] <= t) lo = mid;
        else hi = mid;
    }
    return lo;
}

// The first row of row t's document (0 without packing).
PN_HOST_DEVICE int64_t pn_doc_lo(const int32_t *cu, int n, int64_t t) { return cu ? cu[pn_doc_index(cu, n, t)] : 0; }

// One past the last row of row t's document (`end`, the sequence length, without packing).
PN_HOST_DEVICE int64_t pn_doc_hi(const int32_t *cu, int n, int64_t t, int64_t end) {
    return cu ? cu[pn_doc_index(cu, n, t) + 1] : end;
}

#endif
