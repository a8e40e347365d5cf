// One tensor on both backends (host values, the CPU tensor over them, the device copy) and the RMS-ratio
// comparison the CUDA-vs-CPU op tests (test_train_ops_cuda.c, test_conv_cuda.c) count their cases with.
#ifndef PN_PAIR_TEST_H
#define PN_PAIR_TEST_H

#include <stdio.h>
#include <stdlib.h>

#include "gpu_test.h"

static int fails, cases;

// One tensor on both backends: host values h, the CPU tensor over them (F32) and the CUDA copy (dtype dt).
typedef struct {
    float *h;
    pn_tensor c, g;
} pair;

static pair mk(int ndim, const int64_t *shape, pn_dtype dt, float mean, float std) {
    pair p;
    pn_tensor t = pn_view(NULL, PN_F32, PN_CPU, ndim, shape);
    p.h = randn(pn_numel(&t), mean, std);
    p.c = pn_view(p.h, PN_F32, PN_CPU, ndim, shape);
    p.g = dev_upload(p.h, dt, ndim, shape);
    return p;
}
#define ACT PN_BF16
#define GRAD PN_F32

static void rel(const char *what, pair *p, double tol) {
    float *d = dev_download(&p->g);
    const double e = relerr(d, p->h, pn_numel(&p->c));
    const int ok = e <= tol;
    printf("%-44s rel err %.2e (tol %.0e) %s\n", what, e, tol, ok ? "ok" : "FAIL");
    fails += !ok;
    cases++;
    free(d);
}

static void drop(pair *p) {
    free(p->h);
    dev_free(&p->g);
}

#endif
