// AdamW's per-tensor skip (a supernet path not sampled this step, torch's grad None): a skipped tensor keeps
// its value, moments and step count, is left out of the gradient norm, and later continues exactly as if
// the skipped steps had not happened (its own bias corrections, the schedule's lr of the step it runs in);
// the other tensors are unaffected. The per-tensor counts survive a save and load.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../src/pn_common.h"
#include "../src/pn_model.h"
#include "../src/pn_rng.h"
#include "../train/pn_optim.h"
#include "pn_test.h"

enum { NA = 12, NB = 5, STEPS = 3 };

typedef struct {
    pn_model m;
    pn_param p[2];
    pn_tensor w[2], g[2];
} toy;

// A model of the given tensors (0: A [3, 4], 1: B [5]), weights drawn the same in every toy.
static void toy_init(toy *t, int with_a, int with_b) {
    memset(t, 0, sizeof *t);
    const int64_t n[2] = {NA, NB};
    int k = 0;
    for (int i = 0; i < 2; i++) {
        if (!(i ? with_b : with_a)) continue;
        t->w[k] = pn_view(pn_malloc(sizeof(float) * (size_t)n[i]), PN_F32, PN_CPU, 1, (int64_t[]){n[i]});
        t->g[k] = pn_view(pn_malloc(sizeof(float) * (size_t)n[i]), PN_F32, PN_CPU, 1, (int64_t[]){n[i]});
        for (int64_t j = 0; j < n[i]; j++) ((float *)t->w[k].data)[j] = pn_rng_normal(3, (uint64_t)i, (uint64_t)j);
        pn_param *p = &t->p[k];
        snprintf(p->name, sizeof p->name, "toy.%c.weight", 'a' + i);
        p->kind = PN_PARAM_WEIGHT, p->ndim = 1, p->shape[0] = n[i], p->dst = &t->w[k], p->grad = &t->g[k];
        k++;
    }
    t->m.device = PN_CPU, t->m.dtype = PN_F32, t->m.nparams = k, t->m.param_list = t->p;
}

static void toy_free(toy *t) {
    for (int k = 0; k < t->m.nparams; k++) free(t->w[k].data), free(t->g[k].data);
}

// Tensor i's gradient of step s.
static void set_grad(pn_tensor *g, int i, int s) {
    for (int64_t j = 0; j < pn_numel(g); j++) ((float *)g->data)[j] = pn_rng_normal(4 + (uint64_t)s, (uint64_t)i, (uint64_t)j);
}

static const pn_optim_cfg cfg = {.lr = 0.05, .min_lr_ratio = 0.1, .warmup_steps = 1, .total_steps = 4, .beta1 = 0.9,
                                 .beta2 = 0.95, .eps = 1e-8, .weight_decay = 0.1, .clip = 0};

static int same(const pn_tensor *a, const pn_tensor *b) { return !memcmp(a->data, b->data, pn_nbytes(a)); }

int main(void) {
    // X: A and B; B has no gradient at step 1. Then A alone for 3 steps, B alone at steps 0 and 2.
    toy x, a, b;
    toy_init(&x, 1, 1), toy_init(&a, 1, 0), toy_init(&b, 0, 1);
    pn_optim ox, oa, ob;
    CHECK(!pn_optim_init(&ox, &x.m, &cfg) && !pn_optim_init(&oa, &a.m, &cfg) && !pn_optim_init(&ob, &b.m, &cfg),
          "optimizer init: %s", pn_last_error());
    char dir[] = "/tmp/pn_test_optim.XXXXXX", path[64];
    CHECK(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
    for (int s = 0; s < STEPS; s++) {
        set_grad(&x.g[0], 0, s), set_grad(&x.g[1], 1, s), set_grad(&a.g[0], 0, s), set_grad(&b.g[0], 1, s);
        ox.t[1].skip = s == 1;
        float before[NB], m_before[NB];
        memcpy(before, x.w[1].data, sizeof before), memcpy(m_before, ox.t[1].m.data, sizeof m_before);
        const double gx = pn_optim_grad_norm(&ox), ga = pn_optim_grad_norm(&oa), gb = pn_optim_grad_norm(&ob);
        if (s == 1) CHECK(fabs(gx - ga) < 1e-12 * ga, "the skipped tensor counts in the norm: %g vs %g", gx, ga);
        else CHECK(fabs(gx * gx - ga * ga - gb * gb) < 1e-6 * gx * gx, "norm %g vs %g, %g", gx, ga, gb);
        pn_optim_update(&ox, s, gx), pn_optim_update(&oa, s, ga);
        if (s != 1) pn_optim_update(&ob, s, gb);
        else
            CHECK(!memcmp(before, x.w[1].data, sizeof before) && !memcmp(m_before, ox.t[1].m.data, sizeof m_before),
                  "a skipped tensor changed");
        if (s == 1) { // the state on disk, and a fresh optimizer from it, continues identically
            CHECK(!pn_optim_save(&ox, &x.m, path), "save: %s", pn_last_error());
            pn_optim fresh;
            CHECK(!pn_optim_init(&fresh, &x.m, &cfg) && !pn_optim_load(&fresh, &x.m, path), "load: %s", pn_last_error());
            CHECK(fresh.updates == 2 && fresh.t[0].steps == 2 && fresh.t[1].steps == 1,
                  "loaded counts: %lld updates, steps %lld and %lld", (long long)fresh.updates,
                  (long long)fresh.t[0].steps, (long long)fresh.t[1].steps);
            CHECK(same(&fresh.t[1].v, &ox.t[1].v) && same(&fresh.t[0].m, &ox.t[0].m), "loaded moments differ");
            pn_optim_free(&ox);
            ox = fresh;
        }
    }
    CHECK(ox.t[0].steps == 3 && ox.t[1].steps == 2, "step counts %lld, %lld", (long long)ox.t[0].steps,
          (long long)ox.t[1].steps);
    CHECK(same(&x.w[0], &a.w[0]), "the tensor that always trained differs from training it alone");
    CHECK(same(&x.w[1], &b.w[0]) && same(&ox.t[1].m, &ob.t[0].m) && same(&ox.t[1].v, &ob.t[0].v),
          "the skipped tensor differs from training it only at the steps it had a gradient");
    printf("AdamW skip: the skipped tensor unchanged, then equal to training it at its own steps; counts saved\n");
    pn_optim_free(&ox), pn_optim_free(&oa), pn_optim_free(&ob);
    toy_free(&x), toy_free(&a), toy_free(&b);
    unlink(path), rmdir(dir);
    return pn_test_done("test_optim");
}
