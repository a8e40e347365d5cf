// optim.cu: AdamW and the sum of squares for the global gradient norm, over one tensor or a list of them
// (kernels/ops.h: adamw, sumsq, adamw_list, sumsq_list). AdamW updates the fp32 master copy (or an fp32
// parameter in place) in torch.optim.AdamW's order and writes the bf16 parameter rounded to nearest; one
// tensor is a list of one (one kernel: the same bits either way). sumsq gives one partial per block over a
// fixed partition, so the norm is the same on every run.
#include <stdint.h>

#include "common.cuh"

// One element's update: w, m, v in place; returns the new w.
__device__ __forceinline__ float adamw1(float g, float &w, float &m, float &v, const pn_adamw_args &a, float decay,
                                        float step, float bc2s) {
    const float gi = g * a.grad_scale;
    float wi = w * decay;
    const float mi = m + (1.0f - a.beta1) * (gi - m);
    const float vi = v * a.beta2 + (1.0f - a.beta2) * gi * gi;
    wi += -step * (mi / (sqrtf(vi) / bc2s + a.eps));
    m = mi, v = vi, w = wi;
    return wi;
}

// Elements 4i .. 4i + 3 (w, m, v, g 16-byte aligned, a bf16 p 8-byte aligned): the fp32 state is 28 of the 30
// bytes an element moves.
__device__ __forceinline__ void adamw4(int64_t i, void *p, int p_bf16, float *w, float *m, float *v, const float *g,
                                       const pn_adamw_args &a, float decay, float step, float bc2s) {
    float4 W = ((float4 *)w)[i], M = ((float4 *)m)[i], V = ((float4 *)v)[i];
    const float4 G = ((const float4 *)g)[i];
    adamw1(G.x, W.x, M.x, V.x, a, decay, step, bc2s);
    adamw1(G.y, W.y, M.y, V.y, a, decay, step, bc2s);
    adamw1(G.z, W.z, M.z, V.z, a, decay, step, bc2s);
    adamw1(G.w, W.w, M.w, V.w, a, decay, step, bc2s);
    ((float4 *)w)[i] = W, ((float4 *)m)[i] = M, ((float4 *)v)[i] = V;
    if (p_bf16) {
        union {
            __nv_bfloat162 h[2];
            uint2 u;
        } q;
        q.h[0] = __floats2bfloat162_rn(W.x, W.y), q.h[1] = __floats2bfloat162_rn(W.z, W.w);
        ((uint2 *)p)[i] = q.u;
    } else if (p != (void *)w) {
        ((float4 *)p)[i] = W;
    }
}

// Element i alone.
__device__ __forceinline__ void adamw_one(int64_t i, void *p, int p_bf16, float *w, float *m, float *v,
                                          const float *g, const pn_adamw_args &a, float decay, float step, float bc2s) {
    const float wi = adamw1(g[i], w[i], m[i], v[i], a, decay, step, bc2s);
    if (p_bf16) ((bf16 *)p)[i] = f2bf(wi);
    else if (p != (void *)w) ((float *)p)[i] = wi;
}

void pn_cuda_adamw(pn_tensor *p, pn_tensor *master, pn_tensor *m, pn_tensor *v, const pn_tensor *g,
                   const pn_adamw_args *a) {
    const pn_adamw_item it = {p, master, m, v, g, *a};
    pn_cuda_adamw_list(&it, 1); // one kernel for one tensor or many: the same bits
}

template <typename T> __device__ __forceinline__ float to_f(T x);
template <> __device__ __forceinline__ float to_f<float>(float x) { return x; }
template <> __device__ __forceinline__ float to_f<bf16>(bf16 x) { return bf2f(x); }

// Part b of P of x, summed by one block: the scalar elements up to the part's first 16-byte boundary, then
// 16-byte loads four deep a thread (one load at a time kept ~2 KB in flight a block: 13 us for a 4.7M-element
// fp32 gradient on an H100, 1.4 TB/s), then the scalar tail. The order of the sums is fixed by n and P alone.
template <typename T>
__device__ __forceinline__ float sumsq_part(const T *x, int64_t n, int64_t P, int64_t b, float *red) {
    constexpr int VEC = 16 / sizeof(T), DEEP = 4;
    const int64_t tid = threadIdx.x, nt = blockDim.x;
    const int64_t i0 = n * b / P, i1 = n * (b + 1) / P;
    const int64_t mis = (int64_t)(((uintptr_t)(x + i0) & 15) / sizeof(T));
    const int64_t head = mis ? min(i1 - i0, (int64_t)VEC - mis) : 0, nv = (i1 - i0 - head) / VEC;
    const int64_t tail0 = i0 + head + nv * VEC;
    float s = 0.0f;
    for (int64_t i = i0 + tid; i < i0 + head; i += nt) s = fmaf(to_f<T>(x[i]), to_f<T>(x[i]), s);
    const uint4 *xv = (const uint4 *)(x + i0 + head);
    float acc[DEEP] = {0.0f, 0.0f, 0.0f, 0.0f};
    union word { // one 16-byte load, read as VEC elements
        uint4 u;
        T e[VEC];
    };
    for (int64_t j = tid; j < nv; j += DEEP * nt) {
        word u[DEEP];
#pragma unroll
        for (int d = 0; d < DEEP; d++)
            if (j + d * nt < nv) u[d].u = xv[j + d * nt];
#pragma unroll
        for (int d = 0; d < DEEP; d++) {
            if (j + d * nt >= nv) break;
#pragma unroll
            for (int k = 0; k < VEC; k++) acc[d] = fmaf(to_f<T>(u[d].e[k]), to_f<T>(u[d].e[k]), acc[d]);
        }
    }
    s += (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (int64_t i = tail0 + tid; i < i1; i += nt) s = fmaf(to_f<T>(x[i]), to_f<T>(x[i]), s);
    return pn_block_sum(s, red);
}

template <typename T> __global__ void sumsq_kernel(float *partial, const T *x, int64_t n, int64_t P) {
    __shared__ float red[32];
    for (int64_t b = blockIdx.x; b < P; b += gridDim.x) {
        const float s = sumsq_part<T>(x, n, P, b, red);
        if (threadIdx.x == 0) partial[b] = s;
    }
}

void pn_cuda_sumsq(pn_tensor *partial, const pn_tensor *x) {
    const int64_t n = pn_numel(x), P = pn_numel(partial);
    const unsigned grid = (unsigned)(P < 65535 ? P : 65535);
    if (x->dtype == PN_BF16)
        pn_launch_plain(sumsq_kernel<bf16>, grid, 256, 0, (float *)partial->data, (const bf16 *)x->data, n, P);
    else
        pn_launch_plain(sumsq_kernel<float>, grid, 256, 0, (float *)partial->data, (const float *)x->data, n, P);
    CUDA_LAUNCH_CHECK();
}

// ----------------------------------------------------------------------------------------------------
// The lists (pn_op_adamw_list, pn_op_sumsq_list): up to OPT_BATCH tensors a launch, their pointers and
// sizes in the kernel's parameters (1.3 and ~3 KB, under the 4 KB limit). A sumsq_list block does what a
// sumsq block does, and one-tensor AdamW is a list of one, so the bits are the same either way.

#define OPT_BATCH 32

struct sumsq_batch {
    const void *x[OPT_BATCH];
    float *part[OPT_BATCH];
    int64_t n[OPT_BATCH];
    int bf16[OPT_BATCH];
};

// Grid (P, tensors): block (b, k) writes tensor k's partial b.
__global__ void sumsq_list_kernel(sumsq_batch B, int64_t P) {
    __shared__ float red[32];
    const int k = blockIdx.y;
    const float s = B.bf16[k] ? sumsq_part<bf16>((const bf16 *)B.x[k], B.n[k], P, blockIdx.x, red)
                              : sumsq_part<float>((const float *)B.x[k], B.n[k], P, blockIdx.x, red);
    if (threadIdx.x == 0) B.part[k][blockIdx.x] = s;
}

void pn_cuda_sumsq_list(pn_tensor *partial, const pn_tensor *const *xs, int n) {
    const int64_t P = partial->shape[1];
    if (P > 65535) { // more parts than a grid's y... x dimension takes: one tensor a launch
        for (int k = 0; k < n; k++) {
            if (!xs[k]) continue;
            pn_tensor row = pn_rows(partial, k, 1);
            row = pn_reshape(&row, 1, &P);
            pn_cuda_sumsq(&row, xs[k]);
        }
        return;
    }
    sumsq_batch B;
    int c = 0;
    for (int k = 0; k <= n; k++) {
        if (c == OPT_BATCH || (k == n && c > 0)) {
            pn_launch_plain(sumsq_list_kernel, dim3((unsigned)P, (unsigned)c), 256, 0, B, P);
            CUDA_LAUNCH_CHECK();
            c = 0;
        }
        if (k == n || !xs[k]) continue;
        B.x[c] = xs[k]->data, B.part[c] = (float *)partial->data + (int64_t)k * P, B.n[c] = pn_numel(xs[k]);
        B.bf16[c] = xs[k]->dtype == PN_BF16;
        c++;
    }
}

// AdamW: block j of the launch belongs to the tensor k with first[k] <= j < first[k + 1] and updates its
// elements [(j − first[k]) ADAMW_CHUNK, + ADAMW_CHUNK): four a thread a step (adamw4) where the tensor is
// aligned, else one (adamw_one).
#define ADAMW_CHUNK 4096

struct adamw_batch { // ~3 KB of the kernel parameters' 4
    void *p[OPT_BATCH];
    float *w[OPT_BATCH], *m[OPT_BATCH], *v[OPT_BATCH];
    const float *g[OPT_BATCH];
    int64_t n[OPT_BATCH];
    int first[OPT_BATCH + 1];
    uint8_t p_bf16[OPT_BATCH], vec[OPT_BATCH];
    pn_adamw_args a[OPT_BATCH];
    float decay[OPT_BATCH], step[OPT_BATCH], bc2s[OPT_BATCH];
};

__global__ void adamw_list_kernel(const __grid_constant__ adamw_batch B, int count) {
    int k = 0;
    while (k + 1 < count && (int)blockIdx.x >= B.first[k + 1]) k++;
    const int64_t e0 = (int64_t)(blockIdx.x - B.first[k]) * ADAMW_CHUNK, e1 = min(B.n[k], e0 + ADAMW_CHUNK);
    float *w = B.w[k], *m = B.m[k], *v = B.v[k];
    const float *g = B.g[k];
    void *p = B.p[k];
    const int pb = B.p_bf16[k];
    const pn_adamw_args &a = B.a[k];
    const float decay = B.decay[k], step = B.step[k], bc2s = B.bc2s[k];
    int64_t i0 = e0;
    if (B.vec[k]) { // e0 is a multiple of 4; the tensor's last partial float4 goes to the scalar loop
        for (int64_t i = e0 / 4 + threadIdx.x; i < e1 / 4; i += blockDim.x)
            adamw4(i, p, pb, w, m, v, g, a, decay, step, bc2s);
        i0 = e1 / 4 * 4;
    }
    for (int64_t i = i0 + threadIdx.x; i < e1; i += blockDim.x) adamw_one(i, p, pb, w, m, v, g, a, decay, step, bc2s);
}

static_assert(sizeof(adamw_batch) <= 4000 && sizeof(sumsq_batch) <= 4000, "kernel parameters are limited to 4 KB");

void pn_cuda_adamw_list(const pn_adamw_item *items, int n) {
    adamw_batch *B = (adamw_batch *)calloc(1, sizeof(adamw_batch)); // ~3 KB: off the stack
    if (!B) pn_panic("adamw_list: out of host memory");
    int c = 0, blocks = 0;
    for (int k = 0; k <= n; k++) {
        const int64_t nk = k < n ? pn_numel(items[k].p) : 0;
        const int nb = (int)ceil_div64(nk, ADAMW_CHUNK);
        if (c > 0 && (k == n || c == OPT_BATCH || (int64_t)blocks + nb > INT32_MAX / 2)) {
            B->first[c] = blocks;
            pn_launch_plain(adamw_list_kernel, (unsigned)blocks, 256, 0, *B, c);
            CUDA_LAUNCH_CHECK();
            c = 0, blocks = 0;
        }
        if (k == n || nk == 0) continue;
        const pn_adamw_item *t = &items[k];
        float *w = t->master ? (float *)t->master->data : (float *)t->p->data;
        const int p_bf16 = t->p->dtype == PN_BF16;
        B->p[c] = t->p->data, B->w[c] = w, B->m[c] = (float *)t->m->data, B->v[c] = (float *)t->v->data;
        B->g[c] = (const float *)t->g->data, B->n[c] = nk, B->first[c] = blocks;
        B->p_bf16[c] = (uint8_t)p_bf16;
        B->vec[c] = is_aligned16(w) && is_aligned16(t->m->data) && is_aligned16(t->v->data) &&
                    is_aligned16(t->g->data) && ((uintptr_t)t->p->data % (p_bf16 ? 8 : 16)) == 0;
        B->a[c] = t->a;
        B->decay[c] = 1.0f - t->a.lr * t->a.weight_decay;
        B->step[c] = (float)((double)t->a.lr / t->a.bc1), B->bc2s[c] = (float)sqrt((double)t->a.bc2);
        blocks += nb, c++;
    }
    free(B);
}
