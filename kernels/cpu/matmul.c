// matmul on the CPU: single-threaded BLAS calls on tiles of the output, run by the backend's pool
// (threads.c). Weights stay in Hugging Face's [out, in] layout, so the product is x * w^T (CblasTrans on
// w); the bias is broadcast into out first and BLAS adds with beta = 1.
//
// One row (a decode step) is a matrix-vector product: sgemv streams the weights once, where sgemm would
// first copy ("pack") all of them (3.4x slower for 1536 x 576 on one core, measured). Tiles are cut from
// the shapes and the thread count; each element of the output is still one BLAS dot product over the whole
// inner dimension (BLAS blocks K identically for every tile), so the bits do not depend on the tiling
// (checked: identical logits for 1-4 threads and against one sgemm call).
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/pn_common.h"
#include "cpu.h"
#include "threads.h"

// ---- matrix-vector: y[O] = W[O, I] x[I] (+ y) -----------------------------------------------------------

typedef struct {
    const float *w, *x;
    float *y;
    int in;
    float beta;
} gemv_job;

static void gemv_rows(void *p, int64_t o0, int64_t o1) {
    const gemv_job *g = p;
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)(o1 - o0), g->in, 1.0f, g->w + o0 * g->in, g->in, g->x, 1, g->beta,
                g->y + o0, 1);
}

static void gemv(const float *w, const float *x, float *y, int out, int in, float beta) {
    gemv_job g = {w, x, y, in, beta};
    // It reads 4 bytes per multiply-add from memory: chunks of ~PN_CPU_CHUNK_WORK bytes, 64 rows at least.
    const double cost = 4.0 * in;
    int64_t grain = (pn_cpu_grain(out, cost) + 63) / 64 * 64;
    pn_cpu_parallel_for(out, grain, cost, gemv_rows, &g);
}

// ---- C[M, N] = alpha op(A) op(B) + beta C (row-major) in tiles ------------------------------------------

typedef struct {
    CBLAS_TRANSPOSE ta, tb;
    int M, N, K;
    float alpha, beta;
    const float *A, *B;
    float *C;
    int lda, ldb, ldc;
    int rb, cb, ncb; // tile rows, tile columns, tiles per row band
} gemm_job;

static void gemm_tiles(void *p, int64_t t0, int64_t t1) {
    const gemm_job *g = p;
    for (int64_t t = t0; t < t1; t++) {
        const int r0 = (int)(t / g->ncb) * g->rb, c0 = (int)(t % g->ncb) * g->cb;
        const int m = g->M - r0 < g->rb ? g->M - r0 : g->rb, n = g->N - c0 < g->cb ? g->N - c0 : g->cb;
        const float *a = g->ta == CblasNoTrans ? g->A + (size_t)r0 * g->lda : g->A + r0;
        const float *b = g->tb == CblasNoTrans ? g->B + c0 : g->B + (size_t)c0 * g->ldb;
        cblas_sgemm(CblasRowMajor, g->ta, g->tb, m, n, g->K, g->alpha, a, g->lda, b, g->ldb, g->beta,
                    g->C + (size_t)r0 * g->ldc + c0, g->ldc);
    }
}

#define TILE_MIN_WORK (4.0 * 1024 * 1024) // multiply-adds of a tile, unless the whole product is smaller

static void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc) {
    if (M == 0 || N == 0) return;
    pn_cpu_blas_init();
    // On one thread, one call: every tile copies ("packs") its share of both operands again (16 tiles of
    // [200, 576] x [576, 1536]^T cost 18% more than one call, measured). On more, row bands of 256 for tall
    // products, and columns in multiples of 16 (the BLAS kernels' register block), 4 tiles per thread and
    // band so that a thread that falls behind (a shared core) holds up little, each at least TILE_MIN_WORK.
    const double k = K > 0 ? K : 1;
    const int nt = pn_cpu_threads_for((double)M * N * k), rb = nt > 1 && M > 1024 ? 256 : M;
    int cb = nt > 1 ? (N + 4 * nt - 1) / (4 * nt) : N;
    const int cb_work = (int)(TILE_MIN_WORK / ((double)rb * k)) + 1;
    if (cb < cb_work) cb = cb_work;
    cb = (cb + 15) / 16 * 16;
    if (cb >= N) cb = N;
    gemm_job g = {ta, tb, M, N, K, alpha, beta, A, B, C, lda, ldb, ldc, rb, cb, (N + cb - 1) / cb};
    const int64_t tiles = (int64_t)((M + rb - 1) / rb) * g.ncb;
    pn_cpu_parallel_for(tiles, 1, (double)rb * cb * k, gemm_tiles, &g);
}

void pn_cpu_matmul(pn_tensor *out, const pn_tensor *x, const pn_tensor *w, const pn_tensor *bias) {
    const int rows = (int)x->shape[0], in = (int)x->shape[1], outd = (int)w->shape[0];
    float *y = out->data;
    float beta = 0.0f;
    if (bias) {
        const float *b = bias->data;
        for (int n = 0; n < rows; n++) memcpy(y + (size_t)n * outd, b, sizeof(float) * (size_t)outd);
        beta = 1.0f;
    }
    if (rows == 0) return;
    pn_cpu_blas_init();
    if (rows == 1) gemv(w->data, x->data, y, outd, in, beta);
    else gemm(CblasNoTrans, CblasTrans, rows, outd, in, 1.0f, x->data, in, w->data, in, beta, y, outd);
}

// Backward of out[N, O] = x[N, I] w[O, I]^T + b: dx = dout w (overwritten, when dx != NULL),
// dw += dout^T x and db += column sums of dout (when not NULL: frozen weights pass NULL).
typedef struct {
    float *db;
    const float *dout;
    int64_t N, n_out;
} colsum_job;

static void colsum_range(void *p, int64_t o0, int64_t o1) {
    const colsum_job *c = p;
    for (int64_t n = 0; n < c->N; n++)
        for (int64_t o = o0; o < o1; o++) c->db[o] += c->dout[n * c->n_out + o];
}

void pn_cpu_matmul_bwd_f32(float *dx, float *dw, float *db, const float *dout, const float *x, const float *w, int64_t N,
                       int64_t n_in, int64_t n_out) {
    if (N == 0) return;
    const int n = (int)N, ni = (int)n_in, no = (int)n_out;
    if (dx) gemm(CblasNoTrans, CblasNoTrans, n, ni, no, 1.0f, dout, no, w, ni, 0.0f, dx, ni);
    if (dw) gemm(CblasTrans, CblasNoTrans, no, ni, n, 1.0f, dout, no, x, ni, 1.0f, dw, ni);
    if (db) {
        colsum_job c = {db, dout, N, n_out};
        pn_cpu_parallel_for(n_out, (pn_cpu_grain(n_out, (double)N) + 15) / 16 * 16, (double)N, colsum_range, &c);
    }
}

// The CPU's fused MLP half is the three ops themselves (the fusion matters only for launch-bound GPU decoding):
// gate and up into temporaries, then swiglu.
void pn_cpu_matmul_swiglu(pn_tensor *out, const pn_tensor *x, const pn_tensor *w_gate, const pn_tensor *w_up) {
    const int64_t n = pn_numel(out);
    float *tmp = pn_malloc(sizeof(float) * (size_t)(2 * (n ? n : 1)));
    pn_tensor g = pn_view(tmp, PN_F32, PN_CPU, 2, out->shape), u = pn_view(tmp + n, PN_F32, PN_CPU, 2, out->shape);
    pn_cpu_matmul(&g, x, w_gate, NULL);
    pn_cpu_matmul(&u, x, w_up, NULL);
    pn_cpu_swiglu(out, &g, &u);
    free(tmp);
}

// The CPU's projections of one input are the n products (one GEMM each), then the SiLUs asked for.
void pn_cpu_matmul_multi(int n, pn_tensor *const *out, const pn_tensor *x, const pn_tensor *const *w,
                         const pn_tensor *const *bias, unsigned silu) {
    for (int i = 0; i < n; i++) {
        pn_cpu_matmul(out[i], x, w[i], bias ? bias[i] : NULL);
        if (silu >> i & 1) pn_cpu_silu(out[i], out[i]);
    }
}

// The MLP's first half with its input norm (add_rmsnorm_swiglu): x + y and its norm into temporaries, then
// matmul_swiglu; x and y are only read.
void pn_cpu_add_rmsnorm_swiglu(pn_tensor *out, const pn_tensor *x, const pn_tensor *y, const pn_tensor *norm_w,
                               float eps, const pn_tensor *w_gate, const pn_tensor *w_up) {
    const int64_t n = pn_numel(x);
    float *tmp = pn_malloc(sizeof(float) * (size_t)(2 * (n ? n : 1)));
    pn_tensor sum = pn_view(tmp, PN_F32, PN_CPU, 2, x->shape), xn = pn_view(tmp + n, PN_F32, PN_CPU, 2, x->shape);
    if (y) {
        pn_cpu_add_rmsnorm(&sum, x, y, &xn, norm_w, eps);
    } else {
        pn_cpu_rmsnorm(&xn, x, norm_w, eps);
    }
    pn_cpu_matmul_swiglu(out, &xn, w_gate, w_up);
    free(tmp);
}

// The MLP's second half into the residual, then the next norm (matmul_add_rmsnorm): x += y, the product into
// a temporary, add_rmsnorm.
void pn_cpu_matmul_add_rmsnorm(pn_tensor *x, const pn_tensor *y, const pn_tensor *a, const pn_tensor *w, pn_tensor *xn,
                               const pn_tensor *norm_w, float eps) {
    if (y) pn_cpu_add(x, x, y);
    const int64_t n = pn_numel(x);
    float *tmp = pn_malloc(sizeof(float) * (size_t)(n ? n : 1));
    pn_tensor p = pn_view(tmp, PN_F32, PN_CPU, 2, x->shape);
    pn_cpu_matmul(&p, a, w, NULL);
    pn_cpu_add_rmsnorm(x, x, &p, xn, norm_w, eps);
    free(tmp);
}
