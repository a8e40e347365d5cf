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
