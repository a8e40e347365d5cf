// matmul on the CPU: one OpenBLAS sgemm. Weights stay in Hugging Face's [out, in] layout, so the
// product is x * w^T (CblasTrans on w); the bias is broadcast into out first and sgemm adds with beta = 1.
#include <cblas.h>
#include <string.h>

#include "cpu.h"

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
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, outd, in, 1.0f, x->data, in, w->data, in, beta, y, outd);
}

// Backward of out[N, O] = x[N, I] w[O, I]^T + b: dx = dout w (overwritten, when dx != NULL),
// dw += dout^T x and db += column sums of dout (when not NULL: frozen weights pass NULL).
void pn_cpu_matmul_bwd(float *dx, float *dw, float *db, const float *dout, const float *x, const float *w, int64_t N,
                       int64_t n_in, int64_t n_out) {
    if (N == 0) return;
    if (dx) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)n_in, (int)n_out, 1.0f, dout, (int)n_out, w, (int)n_in,
                        0.0f, dx, (int)n_in);
    if (dw) cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)n_out, (int)n_in, (int)N, 1.0f, dout, (int)n_out, x, (int)n_in,
                        1.0f, dw, (int)n_in);
    if (db)
        for (int64_t n = 0; n < N; n++)
            for (int64_t o = 0; o < n_out; o++) db[o] += dout[n * n_out + o];
}
