// pn_optim: AdamW, the schedule, clipping, and the optimizer state on disk (pn_optim.h).
#include "pn_optim.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/pn_common.h"
#include "../src/pn_safetensors.h"
#include "pn_dist.h"

static int decays(const pn_param *p, int decay_conv) {
    switch (p->kind) {
    case PN_PARAM_NORM: case PN_PARAM_BIAS: case PN_PARAM_GEN_BIAS: case PN_PARAM_A_LOG: case PN_PARAM_DT_BIAS:
        return 0;
    case PN_PARAM_CONV:
        return decay_conv;
    default:
        return 1;
    }
}

int pn_optim_owns(const pn_optim *o, int k) { return o->t[k].owner == o->cfg.shard_rank; }

// ZeRO-1's split: tensors by size, largest first, each to the rank holding the fewest elements so far (the
// lowest such rank on a tie): deterministic, and balanced to within one tensor.
static void assign_owners(pn_optim *o) {
    const int W = o->cfg.shard_world;
    int64_t *load = pn_calloc((size_t)W, sizeof(int64_t));
    uint8_t *done = pn_calloc((size_t)o->n, 1);
    for (int it = 0; it < o->n; it++) {
        int best = -1;
        for (int k = 0; k < o->n; k++)
            if (!done[k] && (best < 0 || pn_numel(o->t[k].g) > pn_numel(o->t[best].g))) best = k;
        int r = 0;
        for (int q = 1; q < W; q++)
            if (load[q] < load[r]) r = q;
        o->t[best].owner = r, load[r] += pn_numel(o->t[best].g), done[best] = 1;
    }
    free(load), free(done);
}

int pn_optim_init(pn_optim *o, pn_model *m, const pn_optim_cfg *c) {
    memset(o, 0, sizeof *o);
    o->cfg = *c;
    if (o->cfg.shard_world < 1) o->cfg.shard_world = 1, o->cfg.shard_rank = 0;
    o->dev = m->device;
    for (int i = 0; i < m->nparams; i++) o->n += m->param_list[i].grad && m->param_list[i].grad->data;
    if (!o->n) return pn_errorf("optimizer: the model has no trainable tensor");
    o->t = pn_calloc((size_t)o->n, sizeof *o->t);
    const int need_master = m->dtype != PN_F32;
    size_t bytes = pn_arena_need(PN_F32, 2, (int64_t[]){o->n, PN_OPTIM_PARTIALS});
    for (int i = 0, k = 0; i < m->nparams; i++) {
        const pn_param *p = &m->param_list[i];
        if (!p->grad || !p->grad->data) continue;
        pn_optim_tensor *t = &o->t[k++];
        t->param = i, t->p = p->dst, t->g = p->grad;
        t->wd = decays(p, c->decay_conv) ? (float)c->weight_decay : 0.0f;
    }
    if (o->cfg.shard_world > 1) assign_owners(o);
    for (int k = 0; k < o->n; k++) {
        const pn_param *p = &m->param_list[o->t[k].param];
        if (pn_optim_owns(o, k)) bytes += (2 + need_master) * pn_arena_need(PN_F32, p->ndim, p->shape);
    }
    if (pn_arena_init(&o->arena, o->dev, bytes)) {
        free(o->t);
        o->t = NULL;
        return pn_error_prefix("optimizer state (%.2f GiB: moments%s of the trainable tensors)",
                               (double)bytes / (1 << 30), need_master ? " and fp32 master copies" : "");
    }
    const pn_backend *be = pn_backend_get(o->dev);
    be->memset0(o->arena.base, o->arena.size);
    o->partials = pn_arena_tensor(&o->arena, PN_F32, 2, (int64_t[]){o->n, PN_OPTIM_PARTIALS});
    for (int k = 0; k < o->n; k++) {
        pn_optim_tensor *t = &o->t[k];
        const pn_param *p = &m->param_list[t->param];
        if (!pn_optim_owns(o, k)) continue; // another rank's: no state here
        t->m = pn_arena_tensor(&o->arena, PN_F32, p->ndim, p->shape);
        t->v = pn_arena_tensor(&o->arena, PN_F32, p->ndim, p->shape);
        if (need_master) {
            t->master = pn_arena_tensor(&o->arena, PN_F32, p->ndim, p->shape);
            // the parameter's value widened to fp32 (once, at start: through the host)
            float *h = pn_malloc(sizeof(float) * (size_t)pn_numel(t->p));
            pn_op_to_host_f32(h, t->p);
            pn_op_from_host_f32(&t->master, h);
            free(h);
        }
    }
    o->host = pn_malloc(sizeof(float) * (size_t)o->n * PN_OPTIM_PARTIALS);
    return 0;
}

void pn_optim_free(pn_optim *o) {
    if (o->t) pn_optim_release(o);
    pn_arena_free(&o->arena);
    free(o->t);
    free(o->host);
    memset(o, 0, sizeof *o);
}

double pn_optim_lr(const pn_optim_cfg *c, int64_t step) {
    if (step < c->warmup_steps) return c->lr * (double)step / (double)(c->warmup_steps > 1 ? c->warmup_steps : 1);
    const int64_t span = c->total_steps - c->warmup_steps;
    double progress = (double)(step - c->warmup_steps) / (double)(span > 1 ? span : 1);
    if (progress > 1) progress = 1;
    const double cosine = 0.5 * (1.0 + cos(M_PI * progress));
    return c->lr * (c->min_lr_ratio + (1.0 - c->min_lr_ratio) * cosine);
}

double pn_optim_grad_norm(pn_optim *o) { return sqrt(pn_optim_grad_sumsq(o)); }

double pn_optim_grad_sumsq(pn_optim *o) {
    if (o->n == 0) return 0;
    const pn_tensor **xs = pn_malloc(sizeof *xs * (size_t)o->n); // NULL: skipped or another rank's
    for (int k = 0; k < o->n; k++) xs[k] = o->t[k].skip || !pn_optim_owns(o, k) ? NULL : o->t[k].g;
    pn_op_sumsq_list(&o->partials, xs, o->n);
    free(xs);
    pn_backend_get(o->dev)->memcpy_d2h(o->host, o->partials.data, sizeof(float) * (size_t)o->n * PN_OPTIM_PARTIALS);
    double s = 0;
    for (int k = 0; k < o->n; k++)
        for (int i = 0; !o->t[k].skip && pn_optim_owns(o, k) && i < PN_OPTIM_PARTIALS; i++)
            s += o->host[k * PN_OPTIM_PARTIALS + i];
    return s;
}

double pn_optim_update(pn_optim *o, int64_t step, double gnorm) {
    const double lr = pn_optim_lr(&o->cfg, step);
    o->updates++;
    double scale = 1.0;
    if (o->cfg.clip > 0) {
        scale = o->cfg.clip / (gnorm + 1e-6);
        if (scale > 1.0) scale = 1.0;
    }
    pn_adamw_item *items = pn_malloc(sizeof *items * (size_t)(o->n ? o->n : 1));
    int ni = 0;
    for (int k = 0; k < o->n; k++) {
        pn_optim_tensor *t = &o->t[k];
        if (t->skip) continue;
        t->steps++; // on every rank: the counts are saved by rank 0 whoever owns the tensor
        if (!pn_optim_owns(o, k)) continue;
        const pn_adamw_args a = {.lr = (float)lr, .beta1 = (float)o->cfg.beta1, .beta2 = (float)o->cfg.beta2,
                                 .eps = (float)o->cfg.eps, .weight_decay = t->wd,
                                 .bc1 = (float)(1.0 - pow(o->cfg.beta1, (double)t->steps)),
                                 .bc2 = (float)(1.0 - pow(o->cfg.beta2, (double)t->steps)),
                                 .grad_scale = (float)scale};
        items[ni++] = (pn_adamw_item){t->p, t->master.data ? &t->master : NULL, &t->m, &t->v, t->g, a};
    }
    pn_op_adamw_list(items, ni); // one call: a few launches on the GPU instead of one a tensor
    free(items);
    return lr;
}

// ---- state on disk ----

static const char *const kSuffix[3] = {"exp_avg", "exp_avg_sq", "master"};

static pn_tensor *state_of(pn_optim_tensor *t, int j) { return j == 0 ? &t->m : j == 1 ? &t->v : &t->master; }

int pn_optim_save(const pn_optim *o, const pn_model *m, const char *path) {
    const int per = o->n && o->dev != PN_CPU ? 3 : 2; // master copies where parameters are not F32
    pn_st_decl *d = pn_calloc((size_t)o->n * per, sizeof *d);
    char **names = pn_calloc((size_t)o->n * per, sizeof *names);
    for (int k = 0; k < o->n; k++)
        for (int j = 0; j < per; j++) {
            const pn_param *p = &m->param_list[o->t[k].param];
            const size_t len = strlen(p->name) + 16;
            names[k * per + j] = pn_malloc(len);
            snprintf(names[k * per + j], len, "%s.%s", p->name, kSuffix[j]);
            pn_st_decl *e = &d[k * per + j];
            e->name = names[k * per + j], e->dtype = PN_ST_F32, e->ndim = p->ndim;
            for (int i = 0; i < p->ndim; i++) e->shape[i] = p->shape[i];
        }
    char upd[32];
    snprintf(upd, sizeof upd, "%lld", (long long)o->updates);
    char *steps = pn_malloc((size_t)o->n * 21 + 1); // the per-tensor counts, comma-separated in tensor order
    steps[0] = 0;
    for (int k = 0, at = 0; k < o->n; k++) at += sprintf(steps + at, k ? ",%lld" : "%lld", (long long)o->t[k].steps);
    const char *meta[] = {"format", "postnas-adamw", "updates", upd, "steps", steps, NULL};
    int rc = -1;
    pn_st_writer *w = pn_st_writer_begin(path, d, o->n * per, meta);
    if (w) {
        rc = 0;
        const pn_backend *be = pn_backend_get(o->dev);
        for (int k = 0; k < o->n && !rc; k++)
            for (int j = 0; j < per && !rc; j++) {
                const pn_optim_tensor *t = &o->t[k];
                const size_t bytes = sizeof(float) * (size_t)pn_numel(t->g);
                if (!pn_optim_owns(o, k)) { // an owner's state, gathered (pn_optim_gather)
                    PN_ASSERT(t->held[j]);
                    rc = pn_st_writer_write(w, t->held[j], bytes);
                    continue;
                }
                void *h = pn_malloc(bytes ? bytes : 1);
                be->memcpy_d2h(h, state_of((pn_optim_tensor *)t, j)->data, bytes);
                rc = pn_st_writer_write(w, h, bytes);
                free(h);
            }
        if (rc) pn_st_writer_abort(w);
        else rc = pn_st_writer_finish(w);
    }
    for (int i = 0; i < o->n * per; i++) free(names[i]);
    free(names), free(d), free(steps);
    return rc ? pn_error_prefix("writing the optimizer state") : 0;
}

int pn_optim_load(pn_optim *o, const pn_model *m, const char *path) {
    pn_safetensors st;
    if (pn_st_open(&st, path)) return -1;
    const int per = o->n && o->dev != PN_CPU ? 3 : 2;
    int rc = 0;
    const char *fmt = pn_st_meta(&st, "format"), *upd = pn_st_meta(&st, "updates");
    int64_t updates = 0;
    if (!fmt || strcmp(fmt, "postnas-adamw"))
        rc = pn_errorf("%s: not an optimizer state written by postnas (metadata format \"%s\")", path, fmt ? fmt : "");
    else if (!upd || pn_parse_i64("metadata \"updates\"", upd, 0, INT64_MAX, &updates))
        rc = pn_error_prefix("%s", path);
    if (!rc && st.n != o->n * per)
        rc = pn_errorf("%s: %d tensors, expected %d (%d trainable tensors x %d): written for other trainable tensors",
                       path, st.n, o->n * per, o->n, per);
    const pn_backend *be = pn_backend_get(o->dev);
    for (int k = 0; k < o->n && !rc; k++)
        for (int j = 0; j < per && !rc; j++) {
            const pn_param *p = &m->param_list[o->t[k].param];
            char name[128];
            snprintf(name, sizeof name, "%s.%s", p->name, kSuffix[j]);
            const pn_st_entry *e = pn_st_find(&st, name);
            const int64_t n = pn_numel(o->t[k].g);
            if (!e) rc = pn_errorf("%s: tensor '%s' is missing", path, name);
            else if (e->dtype != PN_ST_F32 || pn_st_numel(e) != n)
                rc = pn_errorf("%s: tensor '%s' is %s with %lld elements, expected F32 with %lld", path, name,
                               pn_st_dtype_name(e->dtype), (long long)pn_st_numel(e), (long long)n);
            else if (pn_optim_owns(o, k)) // e->data may be unaligned: a byte copy
                be->memcpy_h2d(state_of(&o->t[k], j)->data, e->data, sizeof(float) * (size_t)n);
        }
    // Per-tensor step counts ("steps"; a state written before they existed: every tensor took every update).
    const char *steps = pn_st_meta(&st, "steps");
    int64_t *cnt = pn_malloc(sizeof(int64_t) * (size_t)(o->n ? o->n : 1));
    for (int k = 0; k < o->n && !rc; k++) {
        cnt[k] = updates;
        if (!steps) continue;
        char *end;
        errno = 0;
        const long long v = strtoll(steps, &end, 10);
        if (end == steps || errno || v < 0 || v > updates || (*end != (k + 1 < o->n ? ',' : '\0')))
            rc = pn_errorf("%s: metadata \"steps\" is not %d counts of at most %lld", path, o->n, (long long)updates);
        else cnt[k] = v, steps = end + (*end == ',');
    }
    if (!rc) {
        o->updates = updates;
        for (int k = 0; k < o->n; k++) o->t[k].steps = cnt[k];
    }
    free(cnt);
    pn_st_close(&st);
    return rc;
}

void pn_optim_gather(pn_optim *o, pn_dist *d) {
    if (o->cfg.shard_world <= 1) return;
    const int per = o->dev != PN_CPU ? 3 : 2;
    const pn_backend *be = pn_backend_get(o->dev);
    for (int k = 0; k < o->n; k++) {
        pn_optim_tensor *t = &o->t[k];
        if (t->owner == 0) continue;
        const size_t bytes = sizeof(float) * (size_t)pn_numel(t->g);
        for (int j = 0; j < per; j++) {
            if (o->cfg.shard_rank == t->owner) {
                void *h = pn_malloc(bytes ? bytes : 1);
                be->memcpy_d2h(h, state_of(t, j)->data, bytes);
                pn_dist_send(d, h, bytes, 0);
                free(h);
            } else if (o->cfg.shard_rank == 0) {
                t->held[j] = pn_malloc(bytes ? bytes : 1);
                pn_dist_recv(d, t->held[j], bytes, t->owner);
            }
        }
    }
}

void pn_optim_release(pn_optim *o) {
    for (int k = 0; k < o->n; k++)
        for (int j = 0; j < 3; j++) {
            free(o->t[k].held[j]);
            o->t[k].held[j] = NULL;
        }
}
