// loss.cu: the fused LM loss (KL to the teacher + CE on next tokens, with the gradient over the logits) and
// the hidden-state MSE (kernels/ops.h: lm_loss, lm_score, mse). bf16 in memory, fp32 in registers.
//
// lm_loss: one block per row. Pass 1 reads the row once and keeps three running (max, sum of exp) pairs —
// the student's softmax at temperature 1 (CE) and at tau, the teacher's at tau — merged across the block;
// pass 2 reads it again, sums the KL and writes the gradient (rows of V % 8 == 0: 8 values a load,
// lm_loss_vec_kernel). Probabilities are never stored, and dz may
// alias zs (each element is read by the thread that overwrites it; the target's logit is read before).
#include "../../src/pn_rng.h"
#include "common.cuh"

#define LOSS_THREADS 512

// (max, sum exp(x - max)) of a stream of x; merging two such pairs.
__device__ __forceinline__ void ms_add(float &m, float &s, float x) {
    if (x > m) {
        s = s * expf(m - x) + 1.0f;
        m = x;
    } else {
        s += expf(x - m);
    }
}
__device__ __forceinline__ void ms_merge(float &m, float &s, float m2, float s2) {
    const float M = fmaxf(m, m2);
    if (M == -INFINITY) return;
    s = s * expf(m - M) + s2 * expf(m2 - M);
    m = M;
}

// The block's merged pairs (every thread gets them); red: 3 x 2 x 32 floats.
__device__ void block_ms3(float m[3], float s[3], float *red) {
    for (int o = 16; o > 0; o >>= 1)
        for (int k = 0; k < 3; k++) {
            const float m2 = __shfl_xor_sync(0xffffffffu, m[k], o), s2 = __shfl_xor_sync(0xffffffffu, s[k], o);
            ms_merge(m[k], s[k], m2, s2);
        }
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    if (lane == 0)
        for (int k = 0; k < 3; k++) red[k * 64 + warp] = m[k], red[k * 64 + 32 + warp] = s[k];
    __syncthreads();
    for (int k = 0; k < 3; k++) {
        m[k] = lane < nw ? red[k * 64 + lane] : -INFINITY;
        s[k] = lane < nw ? red[k * 64 + 32 + lane] : 0.0f;
    }
    for (int o = 16; o > 0; o >>= 1)
        for (int k = 0; k < 3; k++) {
            const float m2 = __shfl_xor_sync(0xffffffffu, m[k], o), s2 = __shfl_xor_sync(0xffffffffu, s[k], o);
            ms_merge(m[k], s[k], m2, s2);
        }
}

__global__ void __launch_bounds__(LOSS_THREADS)
lm_loss_kernel(bf16 *dz, float *rowloss, const bf16 *zs, const bf16 *zt, const int32_t *targets, int64_t V,
               pn_lm_loss_args a) {
    __shared__ float red[3 * 64];
    __shared__ float s_tgt;
    const int64_t r = blockIdx.x;
    const bf16 *s = zs + r * V, *t = zt ? zt + r * V : NULL;
    const int tgt = targets ? targets[r] : -1;
    const float tau = a.temperature, inv = 1.0f / tau;
    if (threadIdx.x == 0) s_tgt = tgt >= 0 ? bf2f(s[tgt]) : 0.0f;
    float m[3] = {-INFINITY, -INFINITY, -INFINITY}, sum[3] = {0, 0, 0};
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
        const float sv = bf2f(s[v]);
        ms_add(m[0], sum[0], sv);
        if (t) {
            ms_add(m[1], sum[1], sv * inv);
            ms_add(m[2], sum[2], bf2f(t[v]) * inv);
        }
    }
    block_ms3(m, sum, red); // its barrier also publishes s_tgt
    const float lse1 = m[0] + logf(sum[0]), lse_s = t ? m[1] + logf(sum[1]) : 0.0f, lse_t = t ? m[2] + logf(sum[2]) : 0.0f;
    const float gk = a.kl_grad * tau, gc = tgt >= 0 ? a.ce_grad : 0.0f;
    float kl = 0;
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
        const float sv = bf2f(s[v]);
        float g = 0;
        if (t) {
            const float tv = bf2f(t[v]), pt = expf(tv * inv - lse_t);
            kl += pt * (tv - sv) * inv;
            g += gk * (expf(sv * inv - lse_s) - pt);
        }
        if (gc != 0.0f) g += gc * (expf(sv - lse1) - (v == tgt ? 1.0f : 0.0f));
        if (dz) dz[r * V + v] = f2bf(g);
    }
    __syncthreads(); // red is reused
    kl = pn_block_sum(kl, red);
    if (threadIdx.x == 0) {
        rowloss[2 * r] = t ? tau * tau * (kl + lse_s - lse_t) : 0.0f;
        rowloss[2 * r + 1] = tgt >= 0 ? lse1 - s_tgt : 0.0f;
    }
}

// (max, sum of exp) of 8 values x[i] * f added to a running pair: one rescale a chunk (ms_add's is one an
// element), exponents only of values at most the running maximum.
__device__ __forceinline__ void ms_add8(float &m, float &s, const float *x, float f) {
    float mx = x[0] * f;
#pragma unroll
    for (int i = 1; i < 8; i++) mx = fmaxf(mx, x[i] * f);
    if (mx == -INFINITY) return; // nothing to add (and no -inf - -inf)
    if (mx > m) {
        s *= expf(m - mx);
        m = mx;
    }
#pragma unroll
    for (int i = 0; i < 8; i++) s += expf(x[i] * f - m);
}

// lm_loss_kernel with 16-byte loads (V % 8 == 0, 16-byte aligned rows): the same two passes, 8 values a load
// and one rescale of the running pairs per 8 values; at temperature 1 the student's tau softmax is its plain
// one (computed once). One value a load, the scalar kernel took 1.37 ms for 1024 rows of Qwen's 151,936 on an
// H100, three times its bytes' time.
__global__ void __launch_bounds__(LOSS_THREADS)
lm_loss_vec_kernel(bf16 *dz, float *rowloss, const bf16 *zs, const bf16 *zt, const int32_t *targets, int64_t V,
                   pn_lm_loss_args a) {
    __shared__ float red[3 * 64];
    __shared__ float s_tgt;
    const int64_t r = blockIdx.x, nc = V / 8;
    const bf16 *s = zs + r * V, *t = zt ? zt + r * V : NULL;
    const int tgt = targets ? targets[r] : -1;
    const float tau = a.temperature, inv = 1.0f / tau;
    const bool tau1 = tau == 1.0f;
    if (threadIdx.x == 0) s_tgt = tgt >= 0 ? bf2f(s[tgt]) : 0.0f;
    float m[3] = {-INFINITY, -INFINITY, -INFINITY}, sum[3] = {0, 0, 0};
    for (int64_t c = threadIdx.x; c < nc; c += blockDim.x) {
        float sv[8], tv[8];
        load_chunk<8>(s + 8 * c, sv);
        ms_add8(m[0], sum[0], sv, 1.0f);
        if (t) {
            load_chunk<8>(t + 8 * c, tv);
            if (!tau1) ms_add8(m[1], sum[1], sv, inv);
            ms_add8(m[2], sum[2], tv, inv);
        }
    }
    if (tau1) m[1] = m[0], sum[1] = sum[0];
    block_ms3(m, sum, red); // its barrier also publishes s_tgt
    const float lse1 = m[0] + logf(sum[0]), lse_s = t ? m[1] + logf(sum[1]) : 0.0f, lse_t = t ? m[2] + logf(sum[2]) : 0.0f;
    const float gk = a.kl_grad * tau, gc = tgt >= 0 ? a.ce_grad : 0.0f;
    float kl = 0;
    for (int64_t c = threadIdx.x; c < nc; c += blockDim.x) {
        float sv[8], tv[8], g[8];
        load_chunk<8>(s + 8 * c, sv);
        if (t) load_chunk<8>(t + 8 * c, tv);
#pragma unroll
        for (int i = 0; i < 8; i++) {
            const float p1 = gc != 0.0f || (t && tau1) ? expf(sv[i] - lse1) : 0.0f;
            g[i] = 0.0f;
            if (t) {
                const float pt = expf(tv[i] * inv - lse_t), ps = tau1 ? p1 : expf(sv[i] * inv - lse_s);
                kl += pt * (tv[i] - sv[i]) * inv;
                g[i] += gk * (ps - pt);
            }
            if (gc != 0.0f) g[i] += gc * (p1 - (8 * c + i == tgt ? 1.0f : 0.0f));
        }
        if (dz) store_chunk<8>(dz + r * V + 8 * c, g);
    }
    __syncthreads(); // red is reused
    kl = pn_block_sum(kl, red);
    if (threadIdx.x == 0) {
        rowloss[2 * r] = t ? tau * tau * (kl + lse_s - lse_t) : 0.0f;
        rowloss[2 * r + 1] = tgt >= 0 ? lse1 - s_tgt : 0.0f;
    }
}

void pn_cuda_lm_loss(pn_tensor *dz, pn_tensor *rowloss, const pn_tensor *zs, const pn_tensor *zt,
                     const pn_tensor *targets, const pn_lm_loss_args *a) {
    const int64_t R = zs->shape[0], V = zs->shape[1];
    const bool vec = V % 8 == 0 && is_aligned16(zs->data) && (!zt || is_aligned16(zt->data)) &&
                     (!dz || is_aligned16(dz->data));
    for (int64_t r0 = 0; r0 < R; r0 += 65535) { // grid.x of at most 65535 rows per launch keeps r a plain index
        const int64_t n = R - r0 < 65535 ? R - r0 : 65535;
        (vec ? lm_loss_vec_kernel : lm_loss_kernel)<<<(unsigned)n, LOSS_THREADS, 0, pn_cuda_stream()>>>(
            dz ? (bf16 *)dz->data + r0 * V : NULL, (float *)rowloss->data + 2 * r0, (const bf16 *)zs->data + r0 * V,
            zt ? (const bf16 *)zt->data + r0 * V : NULL, targets ? (const int32_t *)targets->data + r0 : NULL, V, *a);
        CUDA_LAUNCH_CHECK();
    }
}

// lm_score: one block per row, one pass: every thread keeps a running (max, sum of exp) pair and its first
// maximum (value, index); the block merges both (a tie goes to the smaller index, as the CPU's scan).
__device__ __forceinline__ void arg_merge(float &b, int &i, float b2, int i2) {
    if (b2 > b || (b2 == b && i2 < i)) b = b2, i = i2;
}

// Both pairs merged across a warp (every lane gets them).
__device__ __forceinline__ void warp_score_merge(float &m, float &s, float &b, int &bi) {
    for (int o = 16; o > 0; o >>= 1) {
        const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
        const float b2 = __shfl_xor_sync(0xffffffffu, b, o);
        const int i2 = __shfl_xor_sync(0xffffffffu, bi, o);
        ms_merge(m, s, m2, s2);
        arg_merge(b, bi, b2, i2);
    }
}

__global__ void __launch_bounds__(LOSS_THREADS)
lm_score_kernel(float *out, const bf16 *z, const int32_t *targets, int64_t V) {
    __shared__ float red_m[32], red_s[32], red_b[32];
    __shared__ int red_i[32];
    const bf16 *row = z + (int64_t)blockIdx.x * V;
    float m = -INFINITY, s = 0.0f, b = -INFINITY;
    int bi = (int)V; // no element yet: loses every merge against one
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
        const float x = bf2f(row[v]);
        ms_add(m, s, x);
        if (x > b || bi == (int)V) b = x, bi = (int)v;
    }
    warp_score_merge(m, s, b, bi);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, nw = blockDim.x >> 5;
    if (lane == 0) red_m[warp] = m, red_s[warp] = s, red_b[warp] = b, red_i[warp] = bi;
    __syncthreads();
    if (warp) return;
    m = lane < nw ? red_m[lane] : -INFINITY, s = lane < nw ? red_s[lane] : 0.0f;
    b = lane < nw ? red_b[lane] : -INFINITY, bi = lane < nw ? red_i[lane] : (int)V;
    warp_score_merge(m, s, b, bi);
    if (lane == 0) {
        const int t = targets[blockIdx.x];
        out[2 * (int64_t)blockIdx.x] = t >= 0 ? bf2f(row[t]) - (m + logf(s)) : 0.0f;
        out[2 * (int64_t)blockIdx.x + 1] = (float)bi;
    }
}

void pn_cuda_lm_score(pn_tensor *out, const pn_tensor *z, const pn_tensor *targets) {
    const int64_t R = z->shape[0], V = z->shape[1];
    for (int64_t r0 = 0; r0 < R; r0 += 65535) {
        const int64_t n = R - r0 < 65535 ? R - r0 : 65535;
        lm_score_kernel<<<(unsigned)n, LOSS_THREADS, 0, pn_cuda_stream()>>>((float *)out->data + 2 * r0, (const bf16 *)z->data + r0 * V,
                                                        (const int32_t *)targets->data + r0, V);
        CUDA_LAUNCH_CHECK();
    }
}

// mse: one block per row.
__global__ void mse_kernel(bf16 *dx, float *rowloss, const bf16 *x, const bf16 *y, int64_t C, float scale,
                           int accumulate) {
    __shared__ float red[32];
    const int64_t r = blockIdx.x;
    float sum = 0;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
        const float e = bf2f(x[r * C + c]) - bf2f(y[r * C + c]);
        sum += e * e;
        if (dx) dx[r * C + c] = f2bf((accumulate ? bf2f(dx[r * C + c]) : 0.0f) + scale * 2.0f * e);
    }
    sum = pn_block_sum(sum, red);
    if (threadIdx.x == 0) rowloss[r] = sum;
}

void pn_cuda_mse(pn_tensor *dx, pn_tensor *rowloss, const pn_tensor *x, const pn_tensor *y, float grad_scale,
                 int accumulate) {
    const int64_t R = x->shape[0], C = x->shape[1];
    for (int64_t r0 = 0; r0 < R; r0 += 65535) {
        const int64_t n = R - r0 < 65535 ? R - r0 : 65535;
        mse_kernel<<<(unsigned)n, 256, 0, pn_cuda_stream()>>>(dx ? (bf16 *)dx->data + r0 * C : NULL, (float *)rowloss->data + r0,
                                         (const bf16 *)x->data + r0 * C, (const bf16 *)y->data + r0 * C, C, grad_scale,
                                         accumulate);
        CUDA_LAUNCH_CHECK();
    }
}

// ----------------------------------------------------------------------------------------------------
// argmax: a row of V = 151,936 logits is too long for one block at decoding's R = 1, so each row is cut into
// `parts` slices scanned by separate blocks (the larger value wins, the smaller index on a tie), and a second
// kernel takes the first maximum over the slices: the result is the first index of the maximum however the
// row was cut.

#define ARGMAX_THREADS 256
#define ARGMAX_PER_PART 4096 // elements per slice at least

__device__ __forceinline__ void argmax_merge(float &v, int &i, float v2, int i2) {
    if (v2 > v || (v2 == v && i2 < i)) v = v2, i = i2;
}

// The block's first maximum of the threads' (v, i) in shared sv[0], si[0] (tree over NT threads, NT a power
// of two; every thread calls it).
template <int NT>
__device__ __forceinline__ void block_argmax(float *sv, int *si, float v, int i) {
    sv[threadIdx.x] = v, si[threadIdx.x] = i;
    __syncthreads();
    for (int s = NT / 2; s > 0; s >>= 1) {
        if ((int)threadIdx.x < s) {
            float a = sv[threadIdx.x];
            int ai = si[threadIdx.x];
            argmax_merge(a, ai, sv[threadIdx.x + s], si[threadIdx.x + s]);
            sv[threadIdx.x] = a, si[threadIdx.x] = ai;
        }
        __syncthreads();
    }
}

// grid (parts, R): part[r * parts + p] = (value, index) of slice p's first maximum; SAMPLE: of the values
// perturbed for sampling (row r0 + r of the call, see pn_cuda_sample).
template <bool SAMPLE>
__global__ void argmax_part_kernel(float2 *part, const bf16 *z, int64_t V, int parts, int64_t r0, float temperature,
                                   uint64_t seed, uint64_t step) {
    pdl_trigger();
    pdl_wait();
    __shared__ float sv[ARGMAX_THREADS];
    __shared__ int si[ARGMAX_THREADS];
    const int64_t r = blockIdx.y, per = (V + parts - 1) / parts, lo = blockIdx.x * per;
    const int64_t hi = lo + per < V ? lo + per : V;
    const bf16 *row = z + r * V;
    const uint64_t stream = step * 65536 + (uint64_t)(r0 + r);
    float v = -INFINITY;
    int i = 0x7fffffff;
    for (int64_t k = lo + threadIdx.x; k < hi; k += ARGMAX_THREADS) {
        float x = bf2f(row[k]);
        if constexpr (SAMPLE) {
            const double u = pn_rng_uniform(seed, stream, (uint64_t)k);
            x = (float)((double)x / temperature - log(-log(u)));
        }
        argmax_merge(v, i, x, (int)k);
    }
    block_argmax<ARGMAX_THREADS>(sv, si, v, i);
    if (threadIdx.x == 0) part[r * parts + blockIdx.x] = make_float2(sv[0], __int_as_float(si[0]));
}

// grid (R), one thread per row over its slices.
__global__ void argmax_final_kernel(int32_t *out, const float2 *part, int parts) {
    pdl_trigger();
    pdl_wait();
    const float2 *p = part + (int64_t)blockIdx.x * parts;
    float v = p[0].x;
    int i = __float_as_int(p[0].y);
    for (int k = 1; k < parts; k++) argmax_merge(v, i, p[k].x, __float_as_int(p[k].y));
    out[blockIdx.x] = i == 0x7fffffff ? 0 : i; // a row of NaN or -inf only
}

// sample with top-k / top-p: one block per row. The kept set is {z >= threshold}, thresholds found as the
// CPU finds them (kernels/cpu/loss.c: a bisection over the bits of an order-preserving key of the value;
// the logits are bf16, so the low 16 bits of every key are zero and 16 steps decide it): the largest with
// top_k values at least, then the largest whose probability mass (fp32 here, double there: a draw at the
// boundary may differ) is top_p of the top-k set's. Then the Gumbel-max draw over the kept values.
#define SAMPLE_THREADS 512

__device__ __forceinline__ uint32_t order_key(float x) { // larger float, larger key
    const uint32_t u = __float_as_uint(x);
    return u & 0x80000000u ? ~u : u | 0x80000000u;
}

__global__ void __launch_bounds__(SAMPLE_THREADS)
    sample_filter_kernel(int32_t *out, const bf16 *z, int64_t V, pn_sample_args a) {
    pdl_trigger();
    pdl_wait();
    __shared__ float red[32];
    __shared__ float sv[SAMPLE_THREADS];
    __shared__ int si[SAMPLE_THREADS];
    const int64_t r = blockIdx.x;
    const bf16 *row = z + r * V;
    const float T = a.temperature;
    uint32_t lo = 0; // keys >= lo are kept
    if (a.top_k > 0 && a.top_k < V)
        for (int bit = 31; bit >= 16; bit--) {
            const uint32_t c = lo | (1u << bit);
            float n = 0.0f; // a count, exact in fp32 (V < 2^24)
            for (int64_t k = threadIdx.x; k < V; k += SAMPLE_THREADS) n += order_key(bf2f(row[k])) >= c ? 1.0f : 0.0f;
            if (pn_block_sum(n, red) >= (float)a.top_k) lo = c;
        }
    if (a.top_p < 1.0f) {
        float mx = -INFINITY;
        for (int64_t k = threadIdx.x; k < V; k += SAMPLE_THREADS) mx = fmaxf(mx, bf2f(row[k]));
        mx = pn_block_max(mx, red);
        auto mass = [&](uint32_t c) {
            float m = 0.0f;
            for (int64_t k = threadIdx.x; k < V; k += SAMPLE_THREADS) {
                const float x = bf2f(row[k]);
                if (order_key(x) >= c) m += expf((x - mx) / T);
            }
            return pn_block_sum(m, red);
        };
        const float goal = a.top_p * mass(lo);
        uint32_t t = 0;
        for (int bit = 31; bit >= 16; bit--) {
            const uint32_t c = t | (1u << bit);
            if (mass(c > lo ? c : lo) >= goal) t = c; // never more than the top-k set
        }
        if (t > lo) lo = t;
    }
    const uint64_t stream = a.step * 65536 + (uint64_t)r;
    float v = -INFINITY;
    int i = 0x7fffffff;
    for (int64_t k = threadIdx.x; k < V; k += SAMPLE_THREADS) {
        const float x = bf2f(row[k]);
        if (order_key(x) < lo) continue;
        const double u = pn_rng_uniform(a.seed, stream, (uint64_t)k);
        argmax_merge(v, i, (float)((double)x / T - log(-log(u))), (int)k);
    }
    block_argmax<SAMPLE_THREADS>(sv, si, v, i);
    if (threadIdx.x == 0) out[r] = si[0] == 0x7fffffff ? 0 : si[0];
}

// argmax and sample: R rows, each cut into slices for argmax_part_kernel, then the slices' first maximum.
// sample (kernels/ops.h) takes it over the perturbed values z / temperature - log(-log u), u from
// pn_rng_uniform (src/pn_rng.h: the CPU's numbers), in double and rounded to float as there. Only the ids
// leave the device.
static void argmax_rows(pn_tensor *out, const pn_tensor *z, bool sample, float temperature, uint64_t seed,
                        uint64_t step) {
    const int64_t R = z->shape[0], V = z->shape[1];
    if (R == 0) return;
    int parts = (int)ceil_div64(V, ARGMAX_PER_PART);
    if (parts > 64) parts = 64;
    float2 *part = (float2 *)pn_cuda_ws(PN_WS_ARGMAX, sizeof(float2) * (size_t)(R * parts));
    for (int64_t r0 = 0; r0 < R; r0 += 65535) {
        const int64_t n = R - r0 < 65535 ? R - r0 : 65535;
        pn_launch(sample ? argmax_part_kernel<true> : argmax_part_kernel<false>, dim3((unsigned)parts, (unsigned)n),
                  ARGMAX_THREADS, 0, part, (const bf16 *)z->data + r0 * V, V, parts, r0, temperature, seed, step);
        pn_launch(argmax_final_kernel, (unsigned)n, 1, 0, (int32_t *)out->data + r0, part, parts);
    }
}

void pn_cuda_sample(pn_tensor *out, const pn_tensor *z, const pn_sample_args *a) {
    const int64_t R = z->shape[0], V = z->shape[1];
    if ((a->top_k > 0 && a->top_k < V) || a->top_p < 1.0f) {
        if (R > 0) pn_launch(sample_filter_kernel, (unsigned)R, SAMPLE_THREADS, 0, (int32_t *)out->data,
                             (const bf16 *)z->data, V, *a);
        return;
    }
    argmax_rows(out, z, true, a->temperature, a->seed, a->step);
}

void pn_cuda_argmax(pn_tensor *out, const pn_tensor *z) { argmax_rows(out, z, false, 0.0f, 0, 0); }
