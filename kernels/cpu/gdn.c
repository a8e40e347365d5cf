// Gated DeltaNet on the CPU: the naive recurrence (double, the oracle), the decode step, and then the
// chunked forward and backward that training uses (REFERENCE.md §4; the math is in gdn.h).
//
// The decision a reader would otherwise miss: the chunked code is written once, in the `#else` branch at
// the bottom of this file, over a type `real`, and the file includes itself twice to instantiate it for
// float (pn_cpu_gdn_fwd_f32/bwd, what the model runs) and double (pn_cpu_gdn_fwd_f64/bwd_f64, what the
// finite-difference test differentiates), so the gradient check covers the exact code that ships.
//
// Work is split over (sequence, head) pairs, which are independent; each pair walks its sequence chunk
// by chunk with its own scratch. The backward saves nothing from the forward: like fla it recomputes the
// chunk-entry states S_c with a forward pass, then walks the chunks in reverse, recomputing T, W, U and
// V' of each chunk and carrying dS (the gradient of the state entering the chunk) backwards.
#ifndef PN_GDN_REAL

#include "gdn.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/pn_common.h"
#include "threads.h"

// Work is parallel over (sequence, head) pairs on the backend's pool (threads.h); each pair calls BLAS on its
// small chunk products, and BLAS is single-threaded (pn_cpu_blas_init), so the two never oversubscribe.

// ---------------------------------------------------------------------------------------------------
// configuration

int64_t pn_gdn_num_seqs(const pn_gdn_cfg *c) { return c->cu_seqlens ? c->n_seqs : c->B; }

double pn_gdn_scale(const pn_gdn_cfg *c) { return c->scale != 0.0f ? (double)c->scale : 1.0 / sqrt((double)c->K); }

static size_t align256_sz(size_t b) { return (b + 255) & ~(size_t)255; }

size_t pn_gdn_saved_bytes(int64_t rows, int64_t chunks, int64_t H, int64_t K, int64_t V) {
    const size_t r = (size_t)rows, c = (size_t)chunks, h = (size_t)H, k = (size_t)K, v = (size_t)V;
    return align256_sz(2 * r * h * k) + align256_sz(2 * r * h * v) + align256_sz(2 * c * h * k * v) +
           2 * align256_sz(2 * c * h * PN_GDN_CHUNK * PN_GDN_CHUNK) + 4 * align256_sz(4 * r * h);
}

int pn_gdn_check(const pn_gdn_cfg *c) {
    if (c->B < 1) return pn_errorf("gdn: batch size B = %lld must be at least 1", (long long)c->B);
    if (c->T < 1) return pn_errorf("gdn: sequence length T = %lld must be at least 1", (long long)c->T);
    if (c->H < 1) return pn_errorf("gdn: number of heads H = %lld must be at least 1", (long long)c->H);
    if (c->K < 1 || c->K > PN_GDN_MAX_K)
        return pn_errorf("gdn: key head dim K = %lld is outside 1..%d", (long long)c->K, PN_GDN_MAX_K);
    if (c->V < 1 || c->V > PN_GDN_MAX_V)
        return pn_errorf("gdn: value head dim V = %lld is outside 1..%d", (long long)c->V, PN_GDN_MAX_V);
    if (!(isfinite(c->scale) && c->scale >= 0.0f))
        return pn_errorf("gdn: scale = %g must be positive (or 0 for K^-1/2)", (double)c->scale);
    // Leading dimensions (H*K, H*V) go to BLAS as int; token offsets are int32 in cu_seqlens.
    if (c->B > INT32_MAX / c->T || c->H * c->V > INT32_MAX)
        return pn_errorf("gdn: B = %lld, T = %lld, H = %lld is too large", (long long)c->B, (long long)c->T,
                         (long long)c->H);
    if (!c->cu_seqlens) return 0;
    const int32_t *cu = c->cu_seqlens;
    if (c->B != 1) return pn_errorf("gdn: cu_seqlens needs batch size B = 1, got B = %lld", (long long)c->B);
    if (c->n_seqs < 1) return pn_errorf("gdn: n_seqs = %lld must be at least 1 with cu_seqlens", (long long)c->n_seqs);
    if (cu[0] != 0) return pn_errorf("gdn: cu_seqlens[0] = %d, must be 0", (int)cu[0]);
    for (int64_t n = 1; n <= c->n_seqs; n++)
        if (cu[n] <= cu[n - 1])
            return pn_errorf("gdn: cu_seqlens[%lld] = %d is not above cu_seqlens[%lld] = %d (offsets must increase)",
                             (long long)n, (int)cu[n], (long long)(n - 1), (int)cu[n - 1]);
    if (cu[c->n_seqs] != c->T)
        return pn_errorf("gdn: cu_seqlens[%lld] = %d, must equal T = %lld", (long long)c->n_seqs,
                         (int)cu[c->n_seqs], (long long)c->T);
    return 0;
}

static int check_dims(const char *name, const pn_tensor *t, int ndim, const int64_t *want, const char **axes) {
    char buf[96];
    if (t->ndim != ndim)
        return pn_errorf("gdn: %s has shape %s, expected %d dimensions", name, pn_shape_str(t, buf, sizeof buf), ndim);
    for (int i = 0; i < ndim; i++)
        if (t->shape[i] != want[i])
            return pn_errorf("gdn: %s has %s = %lld (shape %s) but q implies %lld", name, axes[i],
                             (long long)t->shape[i], pn_shape_str(t, buf, sizeof buf), (long long)want[i]);
    return 0;
}

int pn_gdn_cfg_from_tensors(pn_gdn_cfg *c, const pn_tensor *q, const pn_tensor *k, const pn_tensor *v,
                            const pn_tensor *g, const pn_tensor *beta, const pn_tensor *state,
                            const int32_t *cu_seqlens, int64_t n_seqs, float scale, int qk_l2norm) {
    char buf[96];
    if (q->ndim != 4) return pn_errorf("gdn: q has shape %s, expected [B, T, H, K]", pn_shape_str(q, buf, sizeof buf));
    if (v->ndim != 4) return pn_errorf("gdn: v has shape %s, expected [B, T, H, V]", pn_shape_str(v, buf, sizeof buf));
    *c = (pn_gdn_cfg){.B = q->shape[0], .T = q->shape[1], .H = q->shape[2], .K = q->shape[3], .V = v->shape[3],
                      .cu_seqlens = cu_seqlens, .n_seqs = n_seqs, .scale = scale, .qk_l2norm = qk_l2norm};
    static const char *ax4[] = {"batch", "length", "heads", "head dim"}, *axs[] = {"sequences", "heads", "K", "V"};
    if (check_dims("k", k, 4, q->shape, ax4)) return -1;
    if (check_dims("v", v, 4, (int64_t[]){c->B, c->T, c->H, c->V}, ax4)) return -1;
    if (check_dims("g", g, 3, q->shape, ax4) || check_dims("beta", beta, 3, q->shape, ax4)) return -1;
    if (g->dtype != PN_F32 || beta->dtype != PN_F32)
        return pn_errorf("gdn: g and beta must be F32, got %s and %s", pn_dtype_name(g->dtype), pn_dtype_name(beta->dtype));
    if (pn_gdn_check(c)) return -1;
    if (state) {
        if (check_dims("state (h0/ht)", state, 4, (int64_t[]){pn_gdn_num_seqs(c), c->H, c->K, c->V}, axs)) return -1;
        if (state->dtype != PN_F32) return pn_errorf("gdn: state must be F32, got %s", pn_dtype_name(state->dtype));
    }
    return 0;
}

// Sequence n covers rows [*row0, *row0 + *len) of the flattened B*T token axis.
static void seq_span(const pn_gdn_cfg *c, int64_t n, int64_t *row0, int64_t *len) {
    if (c->cu_seqlens) {
        *row0 = c->cu_seqlens[n];
        *len = c->cu_seqlens[n + 1] - c->cu_seqlens[n];
    } else {
        *row0 = n * c->T;
        *len = c->T;
    }
}

// ---------------------------------------------------------------------------------------------------
// The naive recurrence in double: the definition, and the oracle for everything below.

int pn_cpu_gdn_naive_f64(const pn_gdn_cfg *c, const double *q, const double *k, const double *v,
                         const double *g, const double *beta, const double *h0, double *o, double *ht) {
    if (pn_gdn_check(c)) return -1;
    const int64_t H = c->H, K = c->K, V = c->V, N = pn_gdn_num_seqs(c);
    const double scale = pn_gdn_scale(c);
    double *S = pn_malloc(sizeof(double) * (size_t)(K * V));
    double *qn = pn_malloc(sizeof(double) * (size_t)K), *kn = pn_malloc(sizeof(double) * (size_t)K);
    double *u = pn_malloc(sizeof(double) * (size_t)V);
    for (int64_t n = 0; n < N; n++)
        for (int64_t h = 0; h < H; h++) {
            int64_t row0, len;
            seq_span(c, n, &row0, &len);
            if (h0) memcpy(S, h0 + (n * H + h) * K * V, sizeof(double) * (size_t)(K * V));
            else memset(S, 0, sizeof(double) * (size_t)(K * V));
            for (int64_t t = row0; t < row0 + len; t++) {
                const int64_t th = t * H + h;
                double sq = 0, sk = 0;
                for (int64_t i = 0; i < K; i++) sq += q[th * K + i] * q[th * K + i], sk += k[th * K + i] * k[th * K + i];
                const double rq = c->qk_l2norm ? 1.0 / sqrt(sq + PN_GDN_L2_EPS) : 1.0;
                const double rk = c->qk_l2norm ? 1.0 / sqrt(sk + PN_GDN_L2_EPS) : 1.0;
                for (int64_t i = 0; i < K; i++) qn[i] = q[th * K + i] * rq * scale, kn[i] = k[th * K + i] * rk;
                const double decay = exp(g[th]);
                for (int64_t i = 0; i < K * V; i++) S[i] *= decay;
                for (int64_t j = 0; j < V; j++) u[j] = v[th * V + j];
                for (int64_t i = 0; i < K; i++)
                    for (int64_t j = 0; j < V; j++) u[j] -= S[i * V + j] * kn[i];
                for (int64_t j = 0; j < V; j++) u[j] *= beta[th];
                for (int64_t i = 0; i < K; i++)
                    for (int64_t j = 0; j < V; j++) S[i * V + j] += kn[i] * u[j];
                for (int64_t j = 0; j < V; j++) {
                    double acc = 0;
                    for (int64_t i = 0; i < K; i++) acc += qn[i] * S[i * V + j];
                    o[th * V + j] = acc;
                }
            }
            if (ht) memcpy(ht + (n * H + h) * K * V, S, sizeof(double) * (size_t)(K * V));
        }
    free(S), free(qn), free(kn), free(u);
    return 0;
}

// ---------------------------------------------------------------------------------------------------
// Decoding: one token per sequence, the recurrence in fp32 on a persistent state.

typedef struct {
    const pn_gdn_cfg *c;
    const float *q, *k, *v, *g, *beta;
    float *S, *o;
} gdn_step_job;

static void gdn_step_range(void *p, int64_t bh0, int64_t bh1) {
    const gdn_step_job *a = p;
    const pn_gdn_cfg *c = a->c;
    const float *q = a->q, *k = a->k, *v = a->v, *g = a->g, *beta = a->beta;
    float *S = a->S, *o = a->o;
    const int64_t K = c->K, V = c->V;
    const float scale = (float)pn_gdn_scale(c);
    for (int64_t bh = bh0; bh < bh1; bh++) {
        const float *qr = q + bh * K, *kr = k + bh * K, *vr = v + bh * V;
        float *Sh = S + bh * K * V, *ob = o + bh * V;
        float rq = 1.0f, rk = 1.0f;
        if (c->qk_l2norm) {
            float sq = 0.0f, sk = 0.0f;
            for (int64_t i = 0; i < K; i++) sq += qr[i] * qr[i], sk += kr[i] * kr[i];
            rq = 1.0f / sqrtf(sq + (float)PN_GDN_L2_EPS);
            rk = 1.0f / sqrtf(sk + (float)PN_GDN_L2_EPS);
        }
        const float decay = expf(g[bh]);
        // u = β (v − (e^g S)ᵀ k), accumulated row by row of S so that S is read once here ...
        float u[PN_GDN_MAX_V];
        for (int64_t j = 0; j < V; j++) u[j] = 0.0f;
        for (int64_t i = 0; i < K; i++) {
            float *Si = Sh + i * V;
            const float ki = kr[i] * rk;
            for (int64_t j = 0; j < V; j++) {
                Si[j] *= decay;
                u[j] += Si[j] * ki;
            }
        }
        for (int64_t j = 0; j < V; j++) u[j] = beta[bh] * (vr[j] - u[j]), ob[j] = 0.0f;
        // ... and once more for the rank-1 update fused with o = Sᵀ (scale q).
        for (int64_t i = 0; i < K; i++) {
            float *Si = Sh + i * V;
            const float ki = kr[i] * rk, qi = qr[i] * rq * scale;
            for (int64_t j = 0; j < V; j++) {
                Si[j] += ki * u[j];
                ob[j] += qi * Si[j];
            }
        }
    }
}

int pn_cpu_gdn_step_f32(const pn_gdn_cfg *c, const float *q, const float *k, const float *v, const float *g,
                    const float *beta, float *S, float *o) {
    if (pn_gdn_check(c)) return -1;
    if (c->T != 1 || c->cu_seqlens)
        return pn_errorf("gdn: the decode step takes exactly one token per sequence (T = %lld%s)", (long long)c->T,
                         c->cu_seqlens ? ", cu_seqlens given" : "");
    gdn_step_job a = {c, q, k, v, g, beta, S, o};
    pn_cpu_parallel_for(c->B * c->H, 0, 6.0 * (double)(c->K * c->V), gdn_step_range, &a);
    return 0;
}

// ---------------------------------------------------------------------------------------------------
// The chunked form, instantiated for float and double from the template below.

#define PN_GDN_REAL float
#define FN(x) x##_f32
#define PUB(x) pn_cpu_gdn_##x##_f32
#define EXP expf
#define SQRT sqrtf
#define GEMM cblas_sgemm
#include "gdn.c"
#undef PN_GDN_REAL
#undef FN
#undef PUB
#undef EXP
#undef SQRT
#undef GEMM

#define PN_GDN_REAL double
#define FN(x) x##_f64
#define PUB(x) pn_cpu_gdn_##x##_f64
#define EXP exp
#define SQRT sqrt
#define GEMM cblas_dgemm
#include "gdn.c"

#else // ===========================================================================================
// Template: the chunked forward and backward over `real`. Notation per (sequence, head) and chunk of
// Lc ≤ 64 rows r, s: q_r, k_r (rows of Q, K), v_r, β_r, γ_r = Σ_{m≤r} g_m (cumsum within the chunk), L = Lc−1,
// Γ_rs = e^{γ_r − γ_s} for s ≤ r (always ≤ 1), S the state entering the chunk:
//   A  = strict_lower(diag(β) K Kᵀ ⊙ Γ)          T = (I + A)⁻¹
//   W  = T diag(β e^γ) K                          U = T diag(β) V          V' = U − W S
//   O  = diag(scale e^γ) Q S + P V',  P = lower_incl(scale Q Kᵀ ⊙ Γ)
//   S' = e^{γ_L} S + Kᵀ diag(e^{γ_L − γ}) V'
// V' row r is the u_r of the recurrence; the last chunk of a sequence is simply shorter (no padding).

#define real PN_GDN_REAL

// C[M,N] = alpha op(A) op(B) + beta C, row-major; op(X) = Xᵀ when the flag is set.
static void FN(gemm)(int ta, int tb, int64_t M, int64_t N, int64_t Kd, real alpha, const real *A, int64_t lda,
                     const real *B, int64_t ldb, real beta, real *C, int64_t ldc) {
    GEMM(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (int)M, (int)N, (int)Kd,
         alpha, A, (int)lda, B, (int)ldb, beta, C, (int)ldc);
}

static real FN(dot)(const real *a, const real *b, int64_t n) {
    real s = 0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

// Per-(sequence, head) scratch; every matrix is dense with leading dimension Lc (or K / V).
typedef struct {
    real *q, *k, *v;        // [C,K] [C,K] [C,V]: the chunk's rows (q, k L2-normalized when asked)
    real *rq, *rk;          // [C]: 1/sqrt(Σx² + eps) of the raw q, k rows (the l2norm backward needs them)
    real *beta;             // [C]: β
    // γ in double even in the fp32 instance: |γ| grows along the chunk (to ~30 for typical decays), where
    // fp32 resolves only ~2e-6, and that error would reappear as a relative error of every decay factor
    // e^{γ_r − γ_s} -- the largest fp32 error of the chunked form otherwise. The differences are formed in
    // double and only then rounded and exponentiated.
    double gam[PN_GDN_CHUNK];
    real *G, *KK, *A, *T;   // [C,C]: Γ (zero above the diagonal), K Kᵀ, A, T
    real *P, *dP, *X;       // [C,C]: P, and backward scratch
    real *kb, *vb, *w, *u;  // diag(β e^γ) K [C,K], diag(β) V [C,V], W [C,K], U then V' [C,V]
    real *tk, *tv;          // scratch [C,K], [C,V]
    real *dvp, *dq, *dk, *dw; // backward: dV' [C,V], dQ [C,K], dK [C,K], dW [C,K]
    real *dbeta;            // backward: [C]
    double dgam[PN_GDN_CHUNK]; // backward: dL/dγ, a sum of many cancelling terms (row minus column sums)
    real *S, *dS, *dSn;     // [K,V]: state; gradient of the state leaving / entering the chunk
    real *states;           // backward: [n_chunks, K, V] chunk-entry states
    void *block;
} FN(work);

static void FN(work_init)(FN(work) *w, int64_t K, int64_t V, int64_t n_states) {
    const int64_t C = PN_GDN_CHUNK, CC = C * C, CK = C * K, CV = C * V, KV = K * V;
    struct {
        real **p;
        int64_t n;
    } slots[] = {{&w->q, CK},   {&w->k, CK},   {&w->v, CV},   {&w->rq, C},   {&w->rk, C},   {&w->beta, C},
                 {&w->G, CC},   {&w->KK, CC},  {&w->A, CC},   {&w->T, CC},   {&w->P, CC},   {&w->dP, CC},
                 {&w->X, CC},   {&w->kb, CK},  {&w->vb, CV},  {&w->w, CK},   {&w->u, CV},   {&w->tk, CK},
                 {&w->tv, CV},  {&w->dvp, CV}, {&w->dq, CK},  {&w->dk, CK},  {&w->dw, CK},  {&w->dbeta, C},
                 {&w->S, KV},   {&w->dS, KV},  {&w->dSn, KV}, {&w->states, n_states * KV}};
    const int n = (int)(sizeof slots / sizeof slots[0]);
    size_t total = 0;
    for (int i = 0; i < n; i++) total += (size_t)slots[i].n;
    real *p = pn_calloc(total, sizeof(real));
    w->block = p;
    for (int i = 0; i < n; i++) *slots[i].p = p, p += slots[i].n;
}

// Copies the chunk's rows (flattened tokens row0 .. row0+Lc−1, head h) into w, normalizing q and k if
// asked, and forms γ. Rows of one head are H*K (H*V, H) apart in the [B, T, H, ·] inputs.
static void FN(gather)(const pn_gdn_cfg *c, const real *q, const real *k, const real *v, const real *g,
                       const real *beta, int64_t row0, int64_t h, int64_t Lc, FN(work) *w) {
    const int64_t H = c->H, K = c->K, V = c->V;
    for (int64_t r = 0; r < Lc; r++) {
        const int64_t th = (row0 + r) * H + h;
        memcpy(w->q + r * K, q + th * K, sizeof(real) * (size_t)K);
        memcpy(w->k + r * K, k + th * K, sizeof(real) * (size_t)K);
        memcpy(w->v + r * V, v + th * V, sizeof(real) * (size_t)V);
        w->rq[r] = w->rk[r] = 1;
        if (c->qk_l2norm) {
            w->rq[r] = 1 / SQRT(FN(dot)(w->q + r * K, w->q + r * K, K) + (real)PN_GDN_L2_EPS);
            w->rk[r] = 1 / SQRT(FN(dot)(w->k + r * K, w->k + r * K, K) + (real)PN_GDN_L2_EPS);
            for (int64_t i = 0; i < K; i++) w->q[r * K + i] *= w->rq[r], w->k[r * K + i] *= w->rk[r];
        }
        w->beta[r] = beta[th];
        w->gam[r] = (r ? w->gam[r - 1] : 0) + (double)g[th];
    }
}

// Given the gathered chunk and w->S, forms Γ, K Kᵀ, A, T, diag(β e^γ) K, diag(β) V, W and V' (in w->u).
static void FN(prepare)(const pn_gdn_cfg *c, int64_t Lc, FN(work) *w) {
    const int64_t K = c->K, V = c->V;
    // Γ only where s ≤ r: there γ_r − γ_s = Σ g ≤ 0. The upper triangle would be e^{positive}, which can
    // overflow to inf (and inf · 0 = NaN), so it is masked before exponentiating, never after.
    for (int64_t r = 0; r < Lc; r++)
        for (int64_t s = 0; s < Lc; s++) w->G[r * Lc + s] = s <= r ? EXP((real)(w->gam[r] - w->gam[s])) : 0;
    FN(gemm)(0, 1, Lc, Lc, K, 1, w->k, K, w->k, K, 0, w->KK, Lc);
    for (int64_t r = 0; r < Lc; r++)
        for (int64_t s = 0; s < Lc; s++) w->A[r * Lc + s] = s < r ? w->beta[r] * w->KK[r * Lc + s] * w->G[r * Lc + s] : 0;
    // T = (I + A)⁻¹ by forward substitution: row i of (I + A) T = I gives T_ij = −Σ_{j≤m<i} A_im T_mj for
    // j < i (T_jj = 1, T lower triangular). O(Lc³/6), cheap next to the matmuls.
    for (int64_t i = 0; i < Lc; i++)
        for (int64_t j = 0; j < Lc; j++) {
            real t = i == j;
            if (j < i) {
                t = 0;
                for (int64_t m = j; m < i; m++) t -= w->A[i * Lc + m] * w->T[m * Lc + j];
            }
            w->T[i * Lc + j] = t;
        }
    for (int64_t r = 0; r < Lc; r++) {
        const real bk = w->beta[r] * EXP((real)w->gam[r]);
        for (int64_t i = 0; i < K; i++) w->kb[r * K + i] = bk * w->k[r * K + i];
        for (int64_t j = 0; j < V; j++) w->vb[r * V + j] = w->beta[r] * w->v[r * V + j];
    }
    FN(gemm)(0, 0, Lc, K, Lc, 1, w->T, Lc, w->kb, K, 0, w->w, K); // W = T diag(β e^γ) K
    FN(gemm)(0, 0, Lc, V, Lc, 1, w->T, Lc, w->vb, V, 0, w->u, V); // U = T diag(β) V
    FN(gemm)(0, 0, Lc, V, K, -1, w->w, K, w->S, V, 1, w->u, V);   // V' = U − W S
}

// P = lower_incl(scale Q Kᵀ) ⊙ Γ.
static void FN(intra_scores)(const pn_gdn_cfg *c, int64_t Lc, real scale, FN(work) *w) {
    FN(gemm)(0, 1, Lc, Lc, c->K, scale, w->q, c->K, w->k, c->K, 0, w->P, Lc);
    for (int64_t r = 0; r < Lc; r++)
        for (int64_t s = 0; s < Lc; s++) w->P[r * Lc + s] = s <= r ? w->P[r * Lc + s] * w->G[r * Lc + s] : 0;
}

// S ← e^{γ_L} S + Kᵀ diag(e^{γ_L − γ}) V'.
static void FN(advance_state)(const pn_gdn_cfg *c, int64_t Lc, FN(work) *w) {
    const int64_t K = c->K, V = c->V;
    const double gL = w->gam[Lc - 1];
    const real eL = EXP((real)gL);
    for (int64_t r = 0; r < Lc; r++) {
        const real e = EXP((real)(gL - w->gam[r]));
        for (int64_t i = 0; i < K; i++) w->tk[r * K + i] = e * w->k[r * K + i];
    }
    for (int64_t i = 0; i < K * V; i++) w->S[i] *= eL;
    FN(gemm)(1, 0, K, V, Lc, 1, w->tk, K, w->u, V, 1, w->S, V);
}

static void FN(load_state)(const pn_gdn_cfg *c, const real *h0, int64_t n, int64_t h, real *S) {
    const int64_t KV = c->K * c->V;
    if (h0) memcpy(S, h0 + (n * c->H + h) * KV, sizeof(real) * (size_t)KV);
    else memset(S, 0, sizeof(real) * (size_t)KV);
}

// The arguments of a forward or backward call, for the pool's range functions.
typedef struct {
    const pn_gdn_cfg *c;
    const real *q, *k, *v, *g, *beta, *h0, *dout, *dht;
    real *o, *ht, *dq, *dk, *dv, *dg, *dbeta, *dh0;
} FN(gdn_args);

// ---- forward --------------------------------------------------------------------------------------

static void FN(fwd_range)(void *p, int64_t nh0, int64_t nh1) {
    const FN(gdn_args) *a = p;
    const pn_gdn_cfg *c = a->c;
    const int64_t H = c->H, K = c->K, V = c->V, C = PN_GDN_CHUNK;
    const real scale = (real)pn_gdn_scale(c);
    const real *q = a->q, *k = a->k, *v = a->v, *g = a->g, *beta = a->beta, *h0 = a->h0;
    real *o = a->o, *ht = a->ht;
    for (int64_t nh = nh0; nh < nh1; nh++) {
        const int64_t n = nh / H, h = nh % H;
        int64_t row0, len;
        seq_span(c, n, &row0, &len);
        FN(work) w;
        FN(work_init)(&w, K, V, 0);
        FN(load_state)(c, h0, n, h, w.S);
        for (int64_t i0 = 0; i0 < len; i0 += C) {
            const int64_t Lc = len - i0 < C ? len - i0 : C;
            FN(gather)(c, q, k, v, g, beta, row0 + i0, h, Lc, &w);
            FN(prepare)(c, Lc, &w);
            // O = diag(scale e^γ) Q S + P V', written straight into o's rows for this head.
            real *orow = o + ((row0 + i0) * H + h) * V;
            for (int64_t r = 0; r < Lc; r++) {
                const real e = scale * EXP((real)w.gam[r]);
                for (int64_t i = 0; i < K; i++) w.tk[r * K + i] = e * w.q[r * K + i];
            }
            FN(gemm)(0, 0, Lc, V, K, 1, w.tk, K, w.S, V, 0, orow, H * V);
            FN(intra_scores)(c, Lc, scale, &w);
            FN(gemm)(0, 0, Lc, V, Lc, 1, w.P, Lc, w.u, V, 1, orow, H * V);
            FN(advance_state)(c, Lc, &w);
        }
        if (ht) memcpy(ht + nh * K * V, w.S, sizeof(real) * (size_t)(K * V));
        free(w.block);
    }
}

int PUB(fwd)(const pn_gdn_cfg *c, const real *q, const real *k, const real *v, const real *g, const real *beta,
             const real *h0, real *o, real *ht) {
    if (pn_gdn_check(c)) return -1;
    const int64_t N = pn_gdn_num_seqs(c);
    FN(gdn_args) a = {.c = c, .q = q, .k = k, .v = v, .g = g, .beta = beta, .h0 = h0, .o = o, .ht = ht};
    // Per token of a pair: the state products (K x V, a few times) and the chunk's (C x K, C x V).
    const double cost = (double)c->B * c->T / N * (4.0 * c->K * c->V + 3.0 * PN_GDN_CHUNK * (c->K + c->V));
    pn_cpu_parallel_for(N * c->H, 1, cost, FN(fwd_range), &a);
    return 0;
}

// ---- backward -------------------------------------------------------------------------------------
// Reverse-mode through one chunk, given w->S (state entering the chunk), w->dS = dL/dS' (state leaving)
// and the chunk's rows of dO. Accumulates dL/dγ in w->dgam and writes dL/dS into w->dSn. Each step names
// the forward line it differentiates; "rows scaled" means diag(·) on the left.
static void FN(chunk_bwd)(const pn_gdn_cfg *c, int64_t Lc, real scale, const real *dO, int64_t ldo, FN(work) *w) {
    const int64_t K = c->K, V = c->V, L = Lc - 1;
    const double gL = w->gam[L];
    const real eL = EXP((real)gL);
    for (int64_t r = 0; r < Lc; r++) w->dgam[r] = w->dbeta[r] = 0;

    // (1) S' = e^{γ_L} S + Kᵀ diag(e^{γ_L − γ}) V':
    //     dV' = diag(e^{γ_L−γ}) K dS'    dK = diag(e^{γ_L−γ}) V' dS'ᵀ    dS = e^{γ_L} dS'
    //     dγ_L += e^{γ_L}⟨S, dS'⟩ + Σ_r a_r and dγ_r −= a_r, where a_r = e^{γ_L−γ_r} k_r·(dS' v'_r).
    for (int64_t r = 0; r < Lc; r++) {
        const real e = EXP((real)(gL - w->gam[r]));
        for (int64_t i = 0; i < K; i++) w->tk[r * K + i] = e * w->k[r * K + i];
    }
    FN(gemm)(0, 0, Lc, V, K, 1, w->tk, K, w->dS, V, 0, w->dvp, V);
    FN(gemm)(0, 1, Lc, K, V, 1, w->u, V, w->dS, V, 0, w->dk, K);
    for (int64_t r = 0; r < Lc; r++) {
        const real e = EXP((real)(gL - w->gam[r]));
        for (int64_t i = 0; i < K; i++) w->dk[r * K + i] *= e;
        const real a = FN(dot)(w->k + r * K, w->dk + r * K, K);
        w->dgam[L] += a;
        w->dgam[r] -= a;
    }
    w->dgam[L] += eL * FN(dot)(w->S, w->dS, K * V);
    for (int64_t i = 0; i < K * V; i++) w->dSn[i] = eL * w->dS[i];

    // (2) O = diag(scale e^γ) Q S + P V':
    //     dQ = diag(scale e^γ) dO Sᵀ, dγ_r += q_r·dQ_r    dS += (diag(scale e^γ) Q)ᵀ dO    dV' += Pᵀ dO
    FN(gemm)(0, 1, Lc, K, V, 1, dO, ldo, w->S, V, 0, w->dq, K);
    for (int64_t r = 0; r < Lc; r++) {
        const real e = scale * EXP((real)w->gam[r]);
        for (int64_t i = 0; i < K; i++) w->dq[r * K + i] *= e, w->tk[r * K + i] = e * w->q[r * K + i];
        w->dgam[r] += FN(dot)(w->q + r * K, w->dq + r * K, K);
    }
    FN(gemm)(1, 0, K, V, Lc, 1, w->tk, K, dO, ldo, 1, w->dSn, V);
    FN(gemm)(1, 0, Lc, V, Lc, 1, w->P, Lc, dO, ldo, 1, w->dvp, V);
    //     P_rs = scale Γ_rs q_r·k_s (s ≤ r): dP = dO V'ᵀ (masked); with E = dP ⊙ P, dγ_r += Σ_s E_rs and
    //     dγ_s −= Σ_r E_rs; then dQ += (dP ⊙ scale Γ) K and dK += (dP ⊙ scale Γ)ᵀ Q.
    FN(gemm)(0, 1, Lc, Lc, V, 1, dO, ldo, w->u, V, 0, w->dP, Lc);
    for (int64_t r = 0; r < Lc; r++)
        for (int64_t s = 0; s < Lc; s++) {
            real *d = w->dP + r * Lc + s;
            if (s > r) {
                *d = 0;
                continue;
            }
            const real e = *d * w->P[r * Lc + s];
            w->dgam[r] += e;
            w->dgam[s] -= e;
            *d *= scale * w->G[r * Lc + s];
        }
    FN(gemm)(0, 0, Lc, K, Lc, 1, w->dP, Lc, w->k, K, 1, w->dq, K);
    FN(gemm)(1, 0, Lc, K, Lc, 1, w->dP, Lc, w->q, K, 1, w->dk, K);

    // (3) V' = U − W S:   dU = dV'    dW = −dV' Sᵀ    dS −= Wᵀ dV'
    FN(gemm)(0, 1, Lc, K, V, -1, w->dvp, V, w->S, V, 0, w->dw, K);
    FN(gemm)(1, 0, K, V, Lc, -1, w->w, K, w->dvp, V, 1, w->dSn, V);

    // (4) U = T Vb, W = T Kb with Vb = diag(β) V, Kb = diag(β e^γ) K:
    //     dT = dU Vbᵀ + dW Kbᵀ    dVb = Tᵀ dU    dKb = Tᵀ dW, then through the row scalings:
    //     dv_r = β_r dVb_r, dβ_r += v_r·dVb_r;  dk_r += β_r e^{γ_r} dKb_r, with c_r = e^{γ_r} k_r·dKb_r:
    //     dβ_r += c_r, dγ_r += β_r c_r.
    FN(gemm)(0, 1, Lc, Lc, V, 1, w->dvp, V, w->vb, V, 0, w->X, Lc);
    FN(gemm)(0, 1, Lc, Lc, K, 1, w->dw, K, w->kb, K, 1, w->X, Lc); // X = dT
    FN(gemm)(1, 0, Lc, V, Lc, 1, w->T, Lc, w->dvp, V, 0, w->tv, V); // tv = dVb
    FN(gemm)(1, 0, Lc, K, Lc, 1, w->T, Lc, w->dw, K, 0, w->tk, K);  // tk = dKb
    for (int64_t r = 0; r < Lc; r++) {
        const real eg = EXP((real)w->gam[r]), b = w->beta[r];
        w->dbeta[r] += FN(dot)(w->v + r * V, w->tv + r * V, V);
        for (int64_t j = 0; j < V; j++) w->tv[r * V + j] *= b; // now dv
        const real cr = eg * FN(dot)(w->k + r * K, w->tk + r * K, K);
        w->dbeta[r] += cr;
        w->dgam[r] += b * cr;
        for (int64_t i = 0; i < K; i++) w->dk[r * K + i] += b * eg * w->tk[r * K + i];
    }

    // (5) T = (I + A)⁻¹:  dA = −Tᵀ dT Tᵀ, kept on the strict lower triangle where A lives. (Only the
    //     strictly lower part of dT reaches it, since T is lower triangular with a constant diagonal.)
    FN(gemm)(1, 0, Lc, Lc, Lc, 1, w->T, Lc, w->X, Lc, 0, w->dP, Lc);   // dP := Tᵀ dT
    FN(gemm)(0, 1, Lc, Lc, Lc, -1, w->dP, Lc, w->T, Lc, 0, w->X, Lc);  // X := dA
    // (6) A_rs = β_r (k_r·k_s) Γ_rs, s < r. With M_rs = dA_rs Γ_rs:
    //     dβ_r += Σ_s M_rs k_r·k_s    dK += diag(β) M K + (diag(β) M)ᵀ K
    //     dγ_r += Σ_s F_rs, dγ_s −= Σ_r F_rs with F = dA ⊙ A.
    for (int64_t r = 0; r < Lc; r++)
        for (int64_t s = 0; s < Lc; s++) {
            real *m = w->X + r * Lc + s;
            if (s >= r) {
                *m = 0;
                continue;
            }
            const real f = *m * w->A[r * Lc + s];
            w->dgam[r] += f;
            w->dgam[s] -= f;
            *m *= w->G[r * Lc + s];
            w->dbeta[r] += *m * w->KK[r * Lc + s];
            *m *= w->beta[r];
        }
    FN(gemm)(0, 0, Lc, K, Lc, 1, w->X, Lc, w->k, K, 1, w->dk, K);
    FN(gemm)(1, 0, Lc, K, Lc, 1, w->X, Lc, w->k, K, 1, w->dk, K);
}

// L2-norm backward for one row: y = x r, r = (Σx² + eps)^{-1/2}  ⇒  dx = r (dy − y (dy·y)).
static void FN(l2norm_bwd)(const real *y, real r, const real *dy, real *dx, int64_t n) {
    const real s = FN(dot)(dy, y, n);
    for (int64_t i = 0; i < n; i++) dx[i] = r * (dy[i] - y[i] * s);
}

static void FN(bwd_range)(void *p, int64_t nh0, int64_t nh1) {
    const FN(gdn_args) *a = p;
    const pn_gdn_cfg *c = a->c;
    const int64_t H = c->H, K = c->K, V = c->V, C = PN_GDN_CHUNK;
    const real scale = (real)pn_gdn_scale(c);
    const real *q = a->q, *k = a->k, *v = a->v, *g = a->g, *beta = a->beta, *h0 = a->h0, *dout = a->dout,
               *dht = a->dht;
    real *dq = a->dq, *dk = a->dk, *dv = a->dv, *dg = a->dg, *dbeta = a->dbeta, *dh0 = a->dh0;
    for (int64_t nh = nh0; nh < nh1; nh++) {
        const int64_t n = nh / H, h = nh % H;
        int64_t row0, len;
        seq_span(c, n, &row0, &len);
        const int64_t nchunks = (len + C - 1) / C;
        FN(work) w;
        FN(work_init)(&w, K, V, nchunks);
        // Pass 1 (forward, no outputs): the state entering every chunk.
        FN(load_state)(c, h0, n, h, w.S);
        for (int64_t ci = 0; ci < nchunks; ci++) {
            const int64_t i0 = ci * C, Lc = len - i0 < C ? len - i0 : C;
            memcpy(w.states + ci * K * V, w.S, sizeof(real) * (size_t)(K * V));
            if (ci + 1 == nchunks) break; // the final state is not needed
            FN(gather)(c, q, k, v, g, beta, row0 + i0, h, Lc, &w);
            FN(prepare)(c, Lc, &w);
            FN(advance_state)(c, Lc, &w);
        }
        // Pass 2 (reverse): dS starts as dL/dht and leaves as dL/dh0.
        if (dht) memcpy(w.dS, dht + nh * K * V, sizeof(real) * (size_t)(K * V));
        else memset(w.dS, 0, sizeof(real) * (size_t)(K * V));
        for (int64_t ci = nchunks - 1; ci >= 0; ci--) {
            const int64_t i0 = ci * C, Lc = len - i0 < C ? len - i0 : C, t0 = row0 + i0;
            memcpy(w.S, w.states + ci * K * V, sizeof(real) * (size_t)(K * V));
            FN(gather)(c, q, k, v, g, beta, t0, h, Lc, &w);
            FN(prepare)(c, Lc, &w);
            FN(intra_scores)(c, Lc, scale, &w);
            FN(chunk_bwd)(c, Lc, scale, dout + (t0 * H + h) * V, H * V, &w);
            for (int64_t r = 0; r < Lc; r++) {
                const int64_t th = (t0 + r) * H + h;
                if (c->qk_l2norm) {
                    FN(l2norm_bwd)(w.q + r * K, w.rq[r], w.dq + r * K, dq + th * K, K);
                    FN(l2norm_bwd)(w.k + r * K, w.rk[r], w.dk + r * K, dk + th * K, K);
                } else {
                    memcpy(dq + th * K, w.dq + r * K, sizeof(real) * (size_t)K);
                    memcpy(dk + th * K, w.dk + r * K, sizeof(real) * (size_t)K);
                }
                memcpy(dv + th * V, w.tv + r * V, sizeof(real) * (size_t)V);
                dbeta[th] = w.dbeta[r];
            }
            // γ_r = Σ_{m≤r} g_m within the chunk, so dg is the reverse cumulative sum of dγ.
            double acc = 0; // in double for the same reason as γ itself
            for (int64_t r = Lc - 1; r >= 0; r--) acc += w.dgam[r], dg[(t0 + r) * H + h] = (real)acc;
            real *tmp = w.dS;
            w.dS = w.dSn, w.dSn = tmp;
        }
        if (dh0) memcpy(dh0 + nh * K * V, w.dS, sizeof(real) * (size_t)(K * V));
        free(w.block);
    }
}

int PUB(bwd)(const pn_gdn_cfg *c, const real *q, const real *k, const real *v, const real *g, const real *beta,
             const real *h0, const real *dout, const real *dht, real *dq, real *dk, real *dv, real *dg,
             real *dbeta, real *dh0) {
    if (pn_gdn_check(c)) return -1;
    const int64_t N = pn_gdn_num_seqs(c);
    FN(gdn_args) a = {.c = c, .q = q, .k = k, .v = v, .g = g, .beta = beta, .h0 = h0, .dout = dout, .dht = dht,
                      .dq = dq, .dk = dk, .dv = dv, .dg = dg, .dbeta = dbeta, .dh0 = dh0};
    const double cost = (double)c->B * c->T / N * (12.0 * c->K * c->V + 10.0 * PN_GDN_CHUNK * (c->K + c->V));
    pn_cpu_parallel_for(N * c->H, 1, cost, FN(bwd_range), &a);
    return 0;
}

#undef real
#endif
