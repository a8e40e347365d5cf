// elementwise.cu: embedding gather, residual add, SwiGLU, RoPE and the KV-cache store, all bf16 in memory
// and fp32 in registers.
//
// Non-obvious: the roundings follow what Hugging Face's bf16 model computes, not the fp32 formula.
// SwiGLU: silu(gate) is a bf16 tensor before the product (act_fn(gate_proj(x)) * up_proj(x)), so
// out = bf16(bf16(silu(g)) * u). RoPE: cos and sin are cast to bf16 before they multiply x, so
// c = bf16(cos(a)), s = bf16(sin(a)) with a = position * inv_freq in fp32 and accurate sincosf (the build
// must not use --use_fast_math, or positions in the thousands lose their angle). The products and the
// sum are done in fp32 and rounded once (HF rounds each product; the difference is within one bf16 ulp).
// Each kernel has a 16-byte vector path (8 bf16 per thread) taken when sizes and pointers allow, and a
// scalar path for everything else.
#include "common.cuh"

// ----------------------------------------------------------------------------------------------------
// kernels

// out[n, :] = table[ids[n], :]; one block per row (grid-stride), C8 = C / 8 vectors when vec.
template <bool VEC>
__global__ void embedding_kernel(bf16 *out, const int32_t *ids, const bf16 *table, int64_t N, int64_t C) {
    pdl_trigger();
    pdl_wait();
    for (int64_t n = blockIdx.x; n < N; n += gridDim.x) {
        const int64_t id = ids[n];
        const bf16 *src = table + id * C;
        bf16 *dst = out + n * C;
        if constexpr (VEC) {
            for (int64_t c = threadIdx.x; c < C / 8; c += blockDim.x) ((uint4 *)dst)[c] = ((const uint4 *)src)[c];
        } else {
            for (int64_t c = threadIdx.x; c < C; c += blockDim.x) dst[c] = src[c];
        }
    }
}

template <bool VEC>
__global__ void add_kernel(bf16 *s, const bf16 *x, const bf16 *y, int64_t n) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    if constexpr (VEC) {
        for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n / 8; i += stride) {
            bf16x8 a, b;
            a.u = ((const uint4 *)x)[i];
            b.u = ((const uint4 *)y)[i];
#pragma unroll
            for (int k = 0; k < 8; k++) a.h[k] = f2bf(bf2f(a.h[k]) + bf2f(b.h[k]));
            ((uint4 *)s)[i] = a.u;
        }
    } else {
        for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
            s[i] = f2bf(bf2f(x[i]) + bf2f(y[i]));
    }
}


template <bool VEC>
__global__ void swiglu_kernel(bf16 *out, const bf16 *gate, const bf16 *up, int64_t n) {
    const int64_t stride = (int64_t)gridDim.x * blockDim.x;
    if constexpr (VEC) {
        for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n / 8; i += stride) {
            bf16x8 g, u, o;
            g.u = ((const uint4 *)gate)[i];
            u.u = ((const uint4 *)up)[i];
#pragma unroll
            for (int k = 0; k < 8; k++) o.h[k] = f2bf(swiglu1(bf2f(g.h[k]), bf2f(u.h[k])));
            ((uint4 *)out)[i] = o.u;
        }
    } else {
        for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride)
            out[i] = f2bf(swiglu1(bf2f(gate[i]), bf2f(up[i])));
    }
}

// x[B, T, H, D] in place; one thread per rotated pair (row, i), i < D/2.
// dir = 1 rotates by the angle (the forward), dir = -1 back (the backward: the rotation's transpose).
__global__ void rope_kernel(bf16 *x, const float *inv_freq, int64_t rows, int64_t T, int64_t H, int64_t D,
                            int64_t pos0, float dir, const int32_t *cu, int n_docs) {
    const int64_t half = D / 2, total = rows * half, stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += stride) {
        const int64_t row = idx / half, i = idx % half;
        const int64_t t = (row / H) % T;
        const float a = (float)(pos0 + t - pn_doc_lo(cu, n_docs, t)) * inv_freq[i]; // packed: from its document's start
        float sn, cs;
        sincosf(a, &sn, &cs);
        const float c = round_bf(cs), s = dir * round_bf(sn);
        bf16 *v = x + row * D;
        const float x1 = bf2f(v[i]), x2 = bf2f(v[i + half]);
        v[i] = f2bf(x1 * c - x2 * s);
        v[i + half] = f2bf(x2 * c + x1 * s);
    }
}

// cache[b, (pos0 + t) mod cap, :] = src[b, t, :] (a ring) with rows of HD = Hkv * D elements; E = 8 (vectors)
// or 1.
template <int E>
__global__ void kv_store_kernel(bf16 *cache, const bf16 *src, int64_t B, int64_t T, int64_t HD, int64_t cap,
                                int64_t pos0) {
    const int64_t per_b = T * HD / E, per_t = HD / E, total = B * per_b, stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += stride) {
        const int64_t b = idx / per_b, rest = idx % per_b, t = rest / per_t; // rest: vector index inside src[b]
        const int64_t dst = (b * cap + (pos0 + t) % cap) * per_t + rest % per_t;
        if constexpr (E == 8)
            ((uint4 *)cache)[dst] = ((const uint4 *)src)[idx];
        else
            cache[dst] = src[idx];
    }
}

// Decoding's append (kv_store_at): k [B, T, H, D] rotated at position posv[b] + t (inv_freq NULL: copied)
// into kc[b, posv[b] + t], v copied into vc likewise; one thread per (row, pair i < D/2) writes elements i
// and i + D/2 of both. The rotation is rope_kernel's (angles rounded to bf16, the result rounded once).
// The cache is a ring (slot p mod cap); a negative position (a wrong device value) writes nothing.
__global__ void kv_append_kernel(bf16 *kc, bf16 *vc, const bf16 *k, const bf16 *v, const float *inv_freq,
                                 const int32_t *posv, int64_t B, int64_t T, int64_t H, int64_t D, int64_t cap) {
    const int64_t half = D / 2, total = B * T * H * half, stride = (int64_t)gridDim.x * blockDim.x;
    for (int64_t idx = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += stride) {
        const int64_t row = idx / half, i = idx % half; // row = (b T + t) H + h
        const int64_t b = row / (T * H), t = (row / H) % T, h = row % H, p = (int64_t)posv[b] + t;
        if (p < 0) continue;
        const bf16 *kr = k + row * D, *vr = v + row * D;
        const int64_t at = ((b * cap + p % cap) * H + h) * D;
        float x1 = bf2f(kr[i]), x2 = bf2f(kr[i + half]);
        if (inv_freq) rope_pair((float)p * inv_freq[i], x1, x2);
        kc[at + i] = f2bf(x1);
        kc[at + i + half] = f2bf(x2);
        vc[at + i] = vr[i];
        vc[at + i + half] = vr[i + half];
    }
}

// ----------------------------------------------------------------------------------------------------
// launchers

void pn_cuda_embedding(pn_tensor *out, const pn_tensor *ids, const pn_tensor *table) {
    const int64_t N = out->shape[0], C = out->shape[1];
    if (N == 0 || C == 0) return;
    bf16 *o = (bf16 *)out->data;
    const bf16 *tab = (const bf16 *)table->data;
    const int32_t *id = (const int32_t *)ids->data;
    if (C % 8 == 0 && is_aligned16(o) && is_aligned16(tab))
        pn_launch(embedding_kernel<true>, grid_1d(N, 1), 128, 0, o, id, tab, N, C);
    else
        pn_launch(embedding_kernel<false>, grid_1d(N, 1), 128, 0, o, id, tab, N, C);
    CUDA_LAUNCH_CHECK();
}

void pn_cuda_add(pn_tensor *sum, const pn_tensor *x, const pn_tensor *y) {
    const int64_t n = pn_numel(x);
    if (n == 0) return;
    bf16 *o = (bf16 *)sum->data;
    const bf16 *a = (const bf16 *)x->data, *b = (const bf16 *)y->data;
    if (n % 8 == 0 && is_aligned16(o) && is_aligned16(a) && is_aligned16(b))
        add_kernel<true><<<grid_1d(n / 8, 256), 256, 0, pn_cuda_stream()>>>(o, a, b, n);
    else
        add_kernel<false><<<grid_1d(n, 256), 256, 0, pn_cuda_stream()>>>(o, a, b, n);
    CUDA_LAUNCH_CHECK();
}

void pn_cuda_swiglu(pn_tensor *out, const pn_tensor *gate, const pn_tensor *up) {
    const int64_t n = pn_numel(out);
    if (n == 0) return;
    bf16 *o = (bf16 *)out->data;
    const bf16 *g = (const bf16 *)gate->data, *u = (const bf16 *)up->data;
    if (n % 8 == 0 && is_aligned16(o) && is_aligned16(g) && is_aligned16(u))
        swiglu_kernel<true><<<grid_1d(n / 8, 256), 256, 0, pn_cuda_stream()>>>(o, g, u, n);
    else
        swiglu_kernel<false><<<grid_1d(n, 256), 256, 0, pn_cuda_stream()>>>(o, g, u, n);
    CUDA_LAUNCH_CHECK();
}

static void rope_launch(pn_tensor *x, const pn_tensor *inv_freq, int pos0, const pn_tensor *cu, float dir) {
    const int64_t B = x->shape[0], T = x->shape[1], H = x->shape[2], D = x->shape[3];
    const int64_t rows = B * T * H;
    if (rows == 0 || D == 0) return;
    rope_kernel<<<grid_1d(rows * (D / 2), 256), 256, 0, pn_cuda_stream()>>>((bf16 *)x->data, (const float *)inv_freq->data, rows, T, H,
                                                       D, pos0, dir, cu ? (const int32_t *)cu->data : NULL,
                                                       cu ? (int)cu->shape[0] - 1 : 0);
    CUDA_LAUNCH_CHECK();
}

void pn_cuda_rope(pn_tensor *x, const pn_tensor *inv_freq, int pos0, const pn_tensor *cu_seqlens) {
    rope_launch(x, inv_freq, pos0, cu_seqlens, 1.0f);
}

void pn_cuda_rope_bwd(pn_tensor *dx, const pn_tensor *inv_freq, int pos0, const pn_tensor *cu_seqlens) {
    rope_launch(dx, inv_freq, pos0, cu_seqlens, -1.0f);
}

void pn_cuda_kv_store(pn_tensor *cache, const pn_tensor *src, int pos0) {
    const int64_t B = src->shape[0], T = src->shape[1], HD = src->shape[2] * src->shape[3];
    const int64_t cap = cache->shape[1];
    if (B * T * HD == 0) return;
    bf16 *c = (bf16 *)cache->data;
    const bf16 *s = (const bf16 *)src->data;
    if (HD % 8 == 0 && is_aligned16(c) && is_aligned16(s))
        kv_store_kernel<8><<<grid_1d(B * T * HD / 8, 256), 256, 0, pn_cuda_stream()>>>(c, s, B, T, HD, cap, pos0);
    else
        kv_store_kernel<1><<<grid_1d(B * T * HD, 256), 256, 0, pn_cuda_stream()>>>(c, s, B, T, HD, cap, pos0);
    CUDA_LAUNCH_CHECK();
}

void pn_cuda_kv_store_at(pn_tensor *kcache, pn_tensor *vcache, const pn_tensor *k, const pn_tensor *v,
                         const pn_tensor *inv_freq, const pn_tensor *pos) {
    const int64_t B = k->shape[0], T = k->shape[1], H = k->shape[2], D = k->shape[3];
    if (B * T * H * D == 0) return;
    kv_append_kernel<<<grid_1d(B * T * H * (D / 2), 256), 256, 0, pn_cuda_stream()>>>(
        (bf16 *)kcache->data, (bf16 *)vcache->data, (const bf16 *)k->data, (const bf16 *)v->data,
        inv_freq ? (const float *)inv_freq->data : NULL, (const int32_t *)pos->data, B, T, H, D, kcache->shape[1]);
    CUDA_LAUNCH_CHECK();
}

// ----------------------------------------------------------------------------------------------------
// the non-finite guard: a grid-stride count, one atomicAdd per block, read back synchronously (it is a
// debugging guard, run when asked for, not on the hot path).

__global__ void count_nonfinite_kernel(unsigned long long *out, const void *x, int64_t n, int is_bf16) {
    unsigned long long bad = 0;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        const float v = is_bf16 ? bf2f(((const bf16 *)x)[i]) : ((const float *)x)[i];
        bad += !isfinite(v);
    }
    for (int o = 16; o > 0; o >>= 1) bad += __shfl_xor_sync(0xffffffffu, bad, o);
    if ((threadIdx.x & 31) == 0 && bad) atomicAdd(out, bad);
}


int64_t pn_cuda_count_nonfinite(const pn_tensor *x) {
    const int64_t n = pn_numel(x);
    unsigned long long *d = (unsigned long long *)pn_cuda_ws(PN_WS_COUNT_NF, sizeof(unsigned long long)), h = 0;
    CUDA_CHECK(cudaMemsetAsync(d, 0, sizeof h, pn_cuda_stream()));
    if (n > 0) {
        count_nonfinite_kernel<<<grid_1d(n, 256 * 8), 256, 0, pn_cuda_stream()>>>(d, x->data, n, x->dtype == PN_BF16);
        CUDA_LAUNCH_CHECK();
    }
    CUDA_CHECK(cudaMemcpyAsync(&h, d, sizeof h, cudaMemcpyDeviceToHost, pn_cuda_stream()));
    CUDA_CHECK(cudaStreamSynchronize(pn_cuda_stream()));
    return (int64_t)h;
}
