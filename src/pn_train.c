// pn_train: the model's training forward and backward on either backend, with its memory planned up front.
//
// One decoder layer is  x_mid = x + mixer(norm1(x));  x_next = x_mid + down(silu(gate(n2)) * up(n2)),
// n2 = norm2(x_mid). The backward walks it in reverse with one residual gradient `dres`:
//
//   mlp        matmul_bwd (down) -> swiglu_bwd -> matmul_bwd (gate, up: dxn2)      frozen or not
//   norm2      rmsnorm_bwd(dxn2), added into dres in the same pass                  dres = dL/dx_mid
//   mixer      the block's backward (src/blocks/<type>.c) from dres -> dxn1
//   norm1      rmsnorm_bwd(dxn1), added into dres in the same pass                  dres = dL/dx
//
// Frozen tensors (no gradient buffer, pn_model_grads_init) still pass gradients through; the walk stops
// below the lowest layer that has a trainable tensor (nothing under it needs a gradient).
//
// Memory. Every layer's input x_l is kept ([N, hidden] each). A layer that keeps its activations owns a
// set of buffers (norm outputs, x_mid, the MLP's gate/up/product and its block's acts(0) tensors); layers
// marked `recompute` share one set per block type and re-run their forward from x_l right before their
// backward. The backward's scratch (block acts(1) per type, MLP gradients) is shared by all layers. All of
// it is carved from one arena sized by a counting pass over the very same layout code (plan_layout), so
// the plan and the carving cannot disagree.
#include <stdlib.h>
#include <string.h>

#include "pn_common.h"
#include "pn_model.h"

#define MAX_TYPES PN_MAX_GTYPES

typedef struct {
    pn_tensor xn1, xmid, xn2, gate, up, h;
    // 0: xn2 and h are the plan's shared buffers (mlp_xn2, mlp_h), planned so because the layer's MLP had no
    // gradient then: they only feed the gate/up and down weights' gradients (the backward's dx needs gate
    // and up, and post_norm's backward reads xmid), so a frozen MLP keeps neither — 8960 + 1536 values a
    // token a layer at the Qwen2.5-1.5B shape, 4.8 GB of the distillation step at 2 x 4096 tokens.
    int mlp_kept;
    // The mixer's kept activations: views into `region`, which is sized for the largest of the layer's
    // candidate mixers (a supernet switches mixers between steps without reallocating); `viewed` is the
    // type whose views blk holds now.
    pn_tensor region;
    const pn_block_type *viewed;
    pn_tensor blk[PN_BLOCK_MAX_ACTS];
} layer_acts;

struct pn_train_plan {
    int max_B, max_T;
    size_t bytes;
    pn_arena arena;
    uint8_t *recompute;
    int logits_planned; // the head's [N, V] logits exist only when asked for (the loss module fuses the head)
    pn_tensor ids, cu;      // I32 [N], [N + 1]
    pn_tensor *xs;          // n_layers + 1 layer inputs (xs[L]: the last layer's output)
    pn_tensor xnf, logits;  // final norm output, logits [N, V]
    layer_acts *own;        // per layer (unused for recompute layers)
    const pn_block_type *types[MAX_TYPES];
    int ntypes;
    layer_acts shared[MAX_TYPES];          // recompute buffers per block type
    pn_tensor scratch[MAX_TYPES][PN_BLOCK_MAX_ACTS]; // backward scratch per block type
    pn_tensor yb, dres, dxn, dh, dgate, dup;
    pn_tensor mlp_xn2, mlp_h; // shared by the layers whose MLP is frozen (layer_acts.mlp_kept)
    // the last forward's batch
    int B, T, n_seqs, ran;
    int32_t *cu_host;
};

void pn_train_free(pn_model *m) {
    if (!m->train) return;
    pn_arena_free(&m->train->arena);
    free(m->train->recompute);
    free(m->train->xs);
    free(m->train->own);
    free(m->train->cu_host);
    free(m->train);
    m->train = NULL;
}

// ---------------------------------------------------------------------------------------------------
// gradients

int pn_model_grads_init(pn_model *m, const uint8_t *trainable) {
    pn_arena_free(&m->grads);
    size_t bytes = 0;
    for (int i = 0; i < m->nparams; i++) {
        const pn_param *p = &m->param_list[i];
        memset(p->grad, 0, sizeof *p->grad);
        if (!trainable || trainable[i]) bytes += pn_arena_need(PN_F32, p->ndim, p->shape);
    }
    if (bytes == 0) return 0;
    if (pn_arena_init(&m->grads, m->device, bytes)) return pn_error_prefix("gradient buffers");
    for (int i = 0; i < m->nparams; i++) {
        const pn_param *p = &m->param_list[i];
        if (!trainable || trainable[i]) *p->grad = pn_arena_tensor(&m->grads, PN_F32, p->ndim, p->shape);
    }
    pn_model_sync_slots(m);
    pn_model_grads_zero(m);
    return 0;
}

void pn_model_grads_zero(pn_model *m) {
    if (m->grads.base) pn_backend_get(m->device)->memset0(m->grads.base, m->grads.used);
}

static pn_tensor *grad_of(pn_tensor *g) { return g->data ? g : NULL; }

// ---------------------------------------------------------------------------------------------------
// the plan

typedef struct {
    pn_arena *a; // NULL: count only
    size_t need;
} carver;

static pn_tensor carve(carver *cv, pn_dtype dt, int64_t rows, int64_t cols) {
    const int64_t shape[2] = {rows, cols};
    if (!cv->a) {
        cv->need += pn_arena_need(dt, 2, shape);
        return (pn_tensor){0};
    }
    return pn_arena_tensor(cv->a, dt, 2, shape);
}

static int type_index(struct pn_train_plan *tp, const pn_block_type *bt) {
    for (int i = 0; i < tp->ntypes; i++)
        if (tp->types[i] == bt) return i;
    PN_ASSERT(tp->ntypes < MAX_TYPES);
    tp->types[tp->ntypes] = bt;
    return tp->ntypes++;
}

// Bytes of a mixer's kept activations for N rows (each tensor aligned as the arena aligns it).
static size_t slot_act_bytes(const pn_slot *S, pn_dtype act, int64_t N) {
    pn_dtype dt[PN_BLOCK_MAX_ACTS];
    int64_t cols[PN_BLOCK_MAX_ACTS];
    const int n = S->bt->acts(&S->bc, 0, act, dt, cols);
    size_t b = 0;
    for (int i = 0; i < n; i++) b += pn_arena_need(dt[i], 2, (int64_t[]){N, cols[i]});
    return b;
}

static size_t layer_act_bytes(const pn_layer *L, pn_dtype act, int64_t N) { // the largest candidate's
    size_t most = 0;
    for (int s = 0; s < L->nslots; s++) {
        const size_t b = slot_act_bytes(&L->slot[s], act, N);
        most = b > most ? b : most;
    }
    return most;
}

// Whether layer l's MLP has a gradient buffer (pn_model_grads_init).
static int mlp_trains(const pn_layer *L) { return L->g_gate_w.data || L->g_up_w.data || L->g_down_w.data; }

// A layer's buffers; the mixer's region holds `most` bytes. keep_mlp 0: xn2 and h are the shared ones.
static void carve_layer(carver *cv, struct pn_train_plan *tp, layer_acts *A, size_t most, const pn_model_config *c,
                        pn_dtype act, int64_t N, int keep_mlp) {
    A->xn1 = carve(cv, act, N, c->hidden);
    A->xmid = carve(cv, act, N, c->hidden);
    A->xn2 = keep_mlp ? carve(cv, act, N, c->hidden) : tp->mlp_xn2;
    A->gate = carve(cv, act, N, c->intermediate);
    A->up = carve(cv, act, N, c->intermediate);
    A->h = keep_mlp ? carve(cv, act, N, c->intermediate) : tp->mlp_h;
    A->mlp_kept = keep_mlp;
    A->region = carve(cv, PN_F32, 1, (int64_t)(most / 4 + 1));
    A->viewed = NULL;
}

// The active mixer's activation views in A's region (made again when the layer's mixer changed).
static void view_acts(layer_acts *A, const pn_slot *S, pn_dtype act, int64_t N) {
    if (A->viewed == S->bt) return;
    pn_dtype dt[PN_BLOCK_MAX_ACTS];
    int64_t cols[PN_BLOCK_MAX_ACTS];
    const int n = S->bt->acts(&S->bc, 0, act, dt, cols);
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        A->blk[i] = pn_view((char *)A->region.data + off, dt[i], A->region.device, 2, (int64_t[]){N, cols[i]});
        off += pn_arena_need(dt[i], 2, (int64_t[]){N, cols[i]});
    }
    PN_ASSERT(off <= pn_nbytes(&A->region));
    A->viewed = S->bt;
}

// The whole layout, once counting and once carving. Block types are looked up by their forward (attn and
// swa share a layout; a type's config is the same in every layer of that type).
static void plan_layout(carver *cv, struct pn_train_plan *tp, pn_model *m, int64_t N) {
    const pn_model_config *c = &m->cfg;
    const pn_dtype act = m->dtype;
    int shared_done[MAX_TYPES] = {0}, scratch_done[MAX_TYPES] = {0};
    tp->ntypes = 0;
    tp->ids = carve(cv, PN_I32, 1, N);
    tp->cu = carve(cv, PN_I32, 1, N + 1);
    for (int l = 0; l <= c->n_layers; l++) tp->xs[l] = carve(cv, act, N, c->hidden);
    tp->xnf = carve(cv, act, N, c->hidden);
    if (tp->logits_planned) tp->logits = carve(cv, act, N, c->vocab);
    tp->yb = carve(cv, act, N, c->hidden);
    tp->dres = carve(cv, act, N, c->hidden);
    tp->dxn = carve(cv, act, N, c->hidden);
    tp->dh = carve(cv, act, N, c->intermediate);
    tp->dgate = carve(cv, act, N, c->intermediate);
    tp->dup = carve(cv, act, N, c->intermediate);
    int frozen = 0;
    for (int l = 0; l < c->n_layers; l++) frozen |= !mlp_trains(&m->layers[l]);
    tp->mlp_xn2 = frozen ? carve(cv, act, N, c->hidden) : (pn_tensor){0};
    tp->mlp_h = frozen ? carve(cv, act, N, c->intermediate) : (pn_tensor){0};
    // Recompute buffers are shared by the layers of one kind: keyed by the layer's first slot's type (a
    // plain model's mixer; in a supernet, layers with the same candidates share).
    size_t shared_most[MAX_TYPES] = {0};
    for (int l = 0; l < c->n_layers; l++) {
        const int ti = type_index(tp, m->layers[l].slot[0].bt);
        const size_t b = layer_act_bytes(&m->layers[l], act, N);
        if (tp->recompute[l] && b > shared_most[ti]) shared_most[ti] = b;
    }
    for (int l = 0; l < c->n_layers; l++) {
        const pn_layer *L = &m->layers[l];
        const int ti = type_index(tp, L->slot[0].bt);
        if (tp->recompute[l]) {
            if (!shared_done[ti]) carve_layer(cv, tp, &tp->shared[ti], shared_most[ti], c, act, N, 1), shared_done[ti] = 1;
        } else {
            carve_layer(cv, tp, &tp->own[l], layer_act_bytes(L, act, N), c, act, N, mlp_trains(L));
        }
    }
    // Backward scratch per block type, over every candidate.
    for (int l = 0; l < c->n_layers; l++)
        for (int s = 0; s < m->layers[l].nslots; s++) {
            const pn_slot *S = &m->layers[l].slot[s];
            const int ti = type_index(tp, S->bt);
            if (scratch_done[ti]) continue;
            pn_dtype dt[PN_BLOCK_MAX_ACTS];
            int64_t cols[PN_BLOCK_MAX_ACTS];
            const int n = S->bt->acts(&S->bc, 1, act, dt, cols);
            for (int i = 0; i < n; i++) tp->scratch[ti][i] = carve(cv, dt[i], N, cols[i]);
            scratch_done[ti] = 1;
        }
}

int pn_model_train_plan(pn_model *m, int max_B, int max_T, const pn_train_opts *o) {
    const pn_model_config *c = &m->cfg;
    pn_train_free(m);
    if (max_B < 1 || max_T < 1) return pn_errorf("training plan: batch %d x %d must be positive", max_B, max_T);
    struct pn_train_plan *tp = pn_calloc(1, sizeof *tp);
    tp->max_B = max_B, tp->max_T = max_T;
    tp->recompute = pn_calloc((size_t)c->n_layers, 1);
    if (o && o->recompute) memcpy(tp->recompute, o->recompute, (size_t)c->n_layers);
    tp->logits_planned = !(o && o->no_logits);
    tp->xs = pn_calloc((size_t)c->n_layers + 1, sizeof(pn_tensor));
    tp->own = pn_calloc((size_t)c->n_layers, sizeof(layer_acts));
    tp->cu_host = pn_calloc((size_t)max_B * (size_t)max_T + 1, sizeof(int32_t)); // a packed batch may hold B T tokens
    m->train = tp;
    const int64_t N = (int64_t)max_B * max_T;
    carver count = {NULL, 0};
    plan_layout(&count, tp, m, N);
    if (pn_arena_init(&tp->arena, m->device, count.need)) {
        pn_train_free(m);
        return pn_error_prefix("training activations for %d x %d tokens", max_B, max_T);
    }
    carver cut = {&tp->arena, 0};
    plan_layout(&cut, tp, m, N);
    tp->bytes = count.need;
    pn_debug("training plan: %d x %d tokens, %.1f MiB of activations on %s", max_B, max_T,
             (double)count.need / (1 << 20), pn_device_name(m->device));
    return 0;
}

size_t pn_model_train_bytes(const pn_model *m) { return m->train ? m->train->bytes : 0; }

pn_tensor pn_model_train_logits(const pn_model *m) {
    PN_ASSERT(m->train && m->train->ran && m->train->logits_planned);
    return pn_rows(&m->train->logits, 0, (int64_t)m->train->B * m->train->T);
}

pn_tensor pn_model_train_hidden(const pn_model *m) {
    PN_ASSERT(m->train && m->train->ran);
    return pn_rows(&m->train->xnf, 0, (int64_t)m->train->B * m->train->T);
}

pn_tensor pn_model_train_layer_out(const pn_model *m, int l) {
    PN_ASSERT(m->train && l >= -1 && l < m->cfg.n_layers);
    return pn_rows(&m->train->xs[l + 1], 0, (int64_t)m->train->B * m->train->T);
}

// ---------------------------------------------------------------------------------------------------
// forward

// Layer l's buffers, with the views of its active mixer's activations.
static layer_acts *acts_of(struct pn_train_plan *tp, const pn_model *m, int l) {
    layer_acts *A = NULL;
    if (!tp->recompute[l]) A = &tp->own[l];
    for (int i = 0; i < tp->ntypes && !A; i++)
        if (tp->types[i] == m->layers[l].slot[0].bt) A = &tp->shared[i];
    if (!A) pn_panic("training plan: no buffers for layer %d", l);
    view_acts(A, pn_layer_mixer_c(&m->layers[l]), m->dtype, (int64_t)tp->max_B * tp->max_T);
    return A;
}

static pn_tensor *scratch_of(struct pn_train_plan *tp, const pn_model *m, int l) {
    const pn_block_type *bt = pn_layer_mixer_c(&m->layers[l])->bt;
    for (int i = 0; i < tp->ntypes; i++)
        if (tp->types[i] == bt) return tp->scratch[i];
    pn_panic("training plan: no scratch for layer %d (%s): plan again after adding candidates", l, bt->name);
}

static pn_block_ctx ctx_of(const pn_model *m, const struct pn_train_plan *tp, pn_tensor *cu) {
    return (pn_block_ctx){.B = tp->B, .T = tp->T, .cu_seqlens = tp->n_seqs ? cu : NULL,
                          .cu_host = tp->n_seqs ? tp->cu_host : NULL, .n_seqs = tp->n_seqs,
                          .inv_freq = &m->inv_freq, .rms_eps = m->cfg.rms_eps};
}

// Layer l from its input xs[l] into A (and, with write_out, its output xs[l + 1]): pn_layer_forward with the
// layer's kept buffers. The whole forward's walk also passes next_norm and next_xn1 (the next layer's kept xn1,
// or the final norm's output) and *ready (layer l's xn1 already holds its input norm): the layer's last add
// then writes the next norm in the same pass and sets *ready (pn_layer_bufs); the others pass NULLs.
static int layer_forward(pn_model *m, int l, layer_acts *A, int write_out, const pn_block_ctx *ctx,
                         const pn_tensor *next_norm, pn_tensor *next_xn1, int *ready) {
    struct pn_train_plan *tp = m->train;
    const int64_t N = ctx->B * ctx->T;
    pn_tensor x = pn_rows(&tp->xs[l], 0, N), out = pn_rows(&tp->xs[l + 1], 0, N);
    pn_layer_bufs b = {.xn1 = pn_rows(&A->xn1, 0, N), .y = pn_rows(&tp->yb, 0, N), .xmid = pn_rows(&A->xmid, 0, N),
                       .xn2 = pn_rows(&A->xn2, 0, N), .gate = pn_rows(&A->gate, 0, N), .up = pn_rows(&A->up, 0, N),
                       .h = pn_rows(&A->h, 0, N), .next_norm = next_norm, .next_xn1 = next_xn1,
                       .xn1_ready = ready ? *ready : 0};
    const int rc = pn_layer_forward(m, l, &x, write_out ? &out : NULL, &b, A->blk, NULL, NULL, ctx);
    if (ready) *ready = !rc && b.xn1_ready;
    return rc;
}

static int check_offsets(const int32_t *cu, int n_seqs, int B, int T) {
    if (B != 1) return pn_errorf("packed batch: cu_seqlens needs batch 1, got %d", B);
    if (n_seqs < 1) return pn_errorf("packed batch: %d sequences", n_seqs);
    if (cu[0] != 0) return pn_errorf("packed batch: cu_seqlens[0] = %d, expected 0", cu[0]);
    for (int i = 1; i <= n_seqs; i++)
        if (cu[i] <= cu[i - 1])
            return pn_errorf("packed batch: cu_seqlens[%d] = %d is not above cu_seqlens[%d] = %d", i, cu[i], i - 1,
                             cu[i - 1]);
    if (cu[n_seqs] != T) return pn_errorf("packed batch: cu_seqlens[%d] = %d, expected T = %d", n_seqs, cu[n_seqs], T);
    return 0;
}

int pn_model_forward_train(pn_model *m, const int32_t *ids_host, int B, int T, const int32_t *cu_seqlens_host,
                           int n_seqs) {
    struct pn_train_plan *tp = m->train;
    const pn_model_config *c = &m->cfg;
    if (!tp) return pn_errorf("training forward: no training plan (pn_model_train_plan)");
    tp->ran = 0; // a failed forward leaves nothing to differentiate
    if (B < 1 || T < 1 || B > tp->max_B || (int64_t)B * T > (int64_t)tp->max_B * tp->max_T)
        return pn_errorf("training batch %d x %d does not fit the planned %d x %d", B, T, tp->max_B, tp->max_T);
    const int64_t N = (int64_t)B * T;
    for (int64_t i = 0; i < N; i++)
        if (ids_host[i] < 0 || ids_host[i] >= c->vocab)
            return pn_errorf("token id %d at position %lld is outside the vocabulary (size %d)", ids_host[i],
                             (long long)i, c->vocab);
    if (cu_seqlens_host && check_offsets(cu_seqlens_host, n_seqs, B, T)) return -1;
    // Packed sequences of one length, one after another (the trainer's rows when documents are not masked),
    // are a plain batch of n_seqs rows: the same sums without offsets, which cuDNN's attention needs (the
    // own packed kernel took 0.50 ms a layer at 2 x 4096 tokens on an H100). PN_KEEP_PACKED=1 keeps them
    // packed (the tests' way to run the packed kernels on such a batch).
    const char *keep_packed = getenv("PN_KEEP_PACKED");
    if (cu_seqlens_host && T % n_seqs == 0 && !(keep_packed && keep_packed[0] == '1')) {
        int uniform = 1;
        for (int i = 0; i <= n_seqs; i++) uniform &= cu_seqlens_host[i] == i * (T / n_seqs);
        if (uniform) B = n_seqs, T /= n_seqs, cu_seqlens_host = NULL, n_seqs = 0;
    }
    const pn_backend *be = pn_backend_get(m->device);
    tp->B = B, tp->T = T;
    tp->n_seqs = cu_seqlens_host ? n_seqs : 0;
    // a batch smaller than planned uses the first N ids
    pn_tensor ids = pn_reshape(&tp->ids, 1, (int64_t[]){pn_numel(&tp->ids)}), cu = (pn_tensor){0};
    ids = pn_rows(&ids, 0, N);
    be->memcpy_h2d(ids.data, ids_host, sizeof(int32_t) * (size_t)N);
    if (tp->n_seqs) {
        memcpy(tp->cu_host, cu_seqlens_host, sizeof(int32_t) * (size_t)(n_seqs + 1));
        cu = pn_reshape(&tp->cu, 1, (int64_t[]){pn_numel(&tp->cu)});
        cu = pn_rows(&cu, 0, n_seqs + 1);
        be->memcpy_h2d(cu.data, cu_seqlens_host, sizeof(int32_t) * (size_t)(n_seqs + 1));
    }
    const pn_block_ctx ctx = ctx_of(m, tp, &cu);
    pn_tensor x0 = pn_rows(&tp->xs[0], 0, N);
    pn_op_embedding(&x0, &ids, &m->embed);
    if (m->tap && m->tap(m->tap_ctx, "embed", -1, &x0)) return pn_error_prefix("tap after the embeddings");
    // Each layer's last residual add also writes the next layer's input norm into that layer's kept xn1 (the
    // final norm's output after the last layer): one pass over the hidden state instead of two (on an H100 at
    // 2 x 4096 x 1536: add 0.025 ms + rmsnorm 0.026 against add_rmsnorm 0.036, equal bits).
    pn_tensor xl = pn_rows(&tp->xs[c->n_layers], 0, N), xnf = pn_rows(&tp->xnf, 0, N);
    int ready = 0; // layer l's xn1 holds its input norm already
    for (int l = 0; l < c->n_layers; l++) {
        const int last = l + 1 == c->n_layers;
        // (the next layer's buffers first: acts_of views a shared set for the layer asked for)
        pn_tensor nx = last ? xnf : pn_rows(&acts_of(tp, m, l + 1)->xn1, 0, N);
        if (layer_forward(m, l, acts_of(tp, m, l), 1, &ctx, last ? &m->final_norm : &m->layers[l + 1].in_norm, &nx,
                          &ready))
            return -1;
    }
    if (!ready) pn_op_rmsnorm(&xnf, &xl, &m->final_norm, c->rms_eps); // else the last layer's add wrote it
    if (tp->logits_planned) {
        pn_tensor logits = pn_rows(&tp->logits, 0, N);
        pn_op_matmul(&logits, &xnf, &m->lm_head, NULL);
    }
    tp->ran = 1;
    return 0;
}

// ---------------------------------------------------------------------------------------------------
// backward

// The lowest layer holding a trainable tensor (0 when the embedding trains; n_layers when none does).
static int lowest_trainable_layer(const pn_model *m) {
    if (m->g_embed.data) return 0;
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const pn_layer *L = &m->layers[l];
        if (L->g_in_norm.data || L->g_post_norm.data || L->g_gate_w.data || L->g_up_w.data || L->g_down_w.data)
            return l;
        for (int s = 0; s < L->nslots; s++)
            for (int i = 0; i < L->slot[s].nbp; i++)
                if (L->slot[s].gbp[i].data) return l;
    }
    return m->cfg.n_layers;
}

// The one place a layer's backward is written: from dres = dL/d(out_l) (in place: on return dres holds
// dL/dx_l), parameter gradients accumulating. A recomputed layer re-runs its forward from xs[l] first.
static int backward_layer(pn_model *m, int l, pn_tensor *dres, const pn_block_ctx *ctx) {
    struct pn_train_plan *tp = m->train;
    const pn_model_config *c = &m->cfg;
    const int64_t N = ctx->B * ctx->T;
    pn_layer *L = &m->layers[l];
    pn_slot *S = pn_layer_mixer(L);
    layer_acts *A = acts_of(tp, m, l);
    if (!A->mlp_kept && mlp_trains(L))
        return pn_errorf("layer %d: its MLP trains, but the training plan was made while it was frozen and keeps "
                         "no activations for its gradients (plan after pn_model_grads_init)", l);
    if (tp->recompute[l] && layer_forward(m, l, A, 0, ctx, NULL, NULL, NULL)) return -1;
    pn_tensor dxn = pn_rows(&tp->dxn, 0, N);
    pn_tensor dh = pn_rows(&tp->dh, 0, N), dgate = pn_rows(&tp->dgate, 0, N), dup = pn_rows(&tp->dup, 0, N);
    pn_tensor x = pn_rows(&tp->xs[l], 0, N), xn1 = pn_rows(&A->xn1, 0, N), xmid = pn_rows(&A->xmid, 0, N);
    pn_tensor xn2 = pn_rows(&A->xn2, 0, N), gate = pn_rows(&A->gate, 0, N), up = pn_rows(&A->up, 0, N);
    pn_tensor h = pn_rows(&A->h, 0, N);
    // MLP (dres is dL/dx_next)
    pn_op_matmul_bwd(&dh, grad_of(&L->g_down_w), NULL, dres, &h, &L->down_w, 0);
    pn_op_swiglu_bwd(&dgate, &dup, &dh, &gate, &up);
    pn_op_matmul_bwd(&dxn, grad_of(&L->g_gate_w), NULL, &dgate, &xn2, &L->gate_w, 0);
    pn_op_matmul_bwd(&dxn, grad_of(&L->g_up_w), NULL, &dup, &xn2, &L->up_w, 1);
    pn_op_rmsnorm_bwd(dres, grad_of(&L->g_post_norm), &dxn, &xmid, &L->post_norm, c->rms_eps, 1); // dL/dx_mid
    // token mixer
    if (S->bt->backward(&S->bc, S->bp, S->gbp, A->blk, scratch_of(tp, m, l), &xn1, dres, &dxn, ctx))
        return pn_error_prefix("layer %d (%s) backward", l, S->bt->name);
    pn_op_rmsnorm_bwd(dres, grad_of(&L->g_in_norm), &dxn, &x, &L->in_norm, c->rms_eps, 1); // dL/dx_l
    if (m->check_finite) {
        const int64_t bad = pn_op_count_nonfinite(dres);
        if (bad)
            return pn_errorf("layer %d (%s) backward: %lld non-finite values (NaN/Inf) in its input gradient", l, S->bt->name,
                             (long long)bad);
    }
    return 0;
}

// A gradient handed in: [N, hidden] in the model's activation dtype and device.
static int check_grad_in(const pn_model *m, const pn_tensor *g, int64_t N, int64_t cols, const char *what) {
    if (g->ndim == 2 && g->shape[0] == N && g->shape[1] == cols && g->dtype == m->dtype && g->device == m->device) return 0;
    char s[96];
    return pn_errorf("backward: %s is %s %s on %s, expected [%lld, %lld] %s on %s", what, pn_dtype_name(g->dtype),
                     pn_shape_str(g, s, sizeof s), pn_device_name(g->device), (long long)N, (long long)cols,
                     pn_dtype_name(m->dtype), pn_device_name(m->device));
}

static pn_block_ctx backward_ctx(pn_model *m, pn_tensor *cu) {
    struct pn_train_plan *tp = m->train;
    *cu = tp->n_seqs ? pn_reshape(&tp->cu, 1, (int64_t[]){pn_numel(&tp->cu)}) : (pn_tensor){0};
    if (tp->n_seqs) *cu = pn_rows(cu, 0, tp->n_seqs + 1);
    return ctx_of(m, tp, cu);
}

int pn_model_backward_hidden(pn_model *m, const pn_tensor *dhidden) {
    struct pn_train_plan *tp = m->train;
    const pn_model_config *c = &m->cfg;
    if (!tp || !tp->ran) return pn_errorf("backward: no training forward to differentiate");
    const int64_t N = (int64_t)tp->B * tp->T;
    if (check_grad_in(m, dhidden, N, c->hidden, "dhidden")) return -1;
    pn_tensor cu;
    const pn_block_ctx ctx = backward_ctx(m, &cu);
    pn_tensor dres = pn_rows(&tp->dres, 0, N), xl = pn_rows(&tp->xs[c->n_layers], 0, N);
    pn_op_rmsnorm_bwd(&dres, grad_of(&m->g_final_norm), dhidden, &xl, &m->final_norm, c->rms_eps, 0);
    const int lo = lowest_trainable_layer(m);
    for (int l = c->n_layers - 1; l >= lo; l--) {
        // dres is dL/d(output of layer l): a loss on that hidden state adds its gradient here
        if (m->tap && m->tap(m->tap_ctx, "layer_out_grad", l, &dres))
            return pn_error_prefix("tap on layer %d's output gradient", l);
        if (backward_layer(m, l, &dres, &ctx)) return -1;
        if (m->tap && m->tap(m->tap_ctx, "layer_grads_done", l, &dres))
            return pn_error_prefix("tap after layer %d's backward", l);
    }
    if (m->g_embed.data && lo == 0) {
        pn_tensor ids = pn_reshape(&tp->ids, 1, (int64_t[]){pn_numel(&tp->ids)});
        ids = pn_rows(&ids, 0, N);
        pn_op_embedding_bwd(&m->g_embed, &ids, &dres);
    }
    return 0;
}

int pn_model_backward(pn_model *m, const pn_tensor *dlogits) {
    struct pn_train_plan *tp = m->train;
    const pn_model_config *c = &m->cfg;
    if (!tp || !tp->ran) return pn_errorf("backward: no training forward to differentiate");
    const int64_t N = (int64_t)tp->B * tp->T;
    if (check_grad_in(m, dlogits, N, c->vocab, "dlogits")) return -1;
    pn_tensor dxnf = pn_rows(&tp->dxn, 0, N), xnf = pn_rows(&tp->xnf, 0, N);
    // dxn is free until the first layer's backward: the head's input gradient goes there (the final norm's
    // backward reads it before any layer writes dxn).
    pn_op_matmul_bwd(&dxnf, grad_of(c->tie_embeddings ? &m->g_embed : &m->g_lm_head), NULL, dlogits, &xnf, &m->lm_head, 0);
    return pn_model_backward_hidden(m, &dxnf);
}

int pn_model_layer_forward_train(pn_model *m, int l, const pn_tensor *x_in) {
    struct pn_train_plan *tp = m->train;
    if (!tp || !tp->ran) return pn_errorf("layer forward: run pn_model_forward_train first (it sets the batch)");
    if (l < 0 || l >= m->cfg.n_layers) return pn_errorf("layer forward: no layer %d", l);
    const int64_t N = (int64_t)tp->B * tp->T;
    if (check_grad_in(m, x_in, N, m->cfg.hidden, "the layer input")) return -1;
    pn_tensor x = pn_rows(&tp->xs[l], 0, N), cu;
    if (x_in->data != x.data) pn_op_copy(&x, x_in);
    const pn_block_ctx ctx = backward_ctx(m, &cu);
    return layer_forward(m, l, acts_of(tp, m, l), 1, &ctx, NULL, NULL, NULL);
}

int pn_model_layer_backward(pn_model *m, int l, const pn_tensor *dout, pn_tensor *dx) {
    struct pn_train_plan *tp = m->train;
    if (!tp || !tp->ran) return pn_errorf("layer backward: no training forward to differentiate");
    if (l < 0 || l >= m->cfg.n_layers) return pn_errorf("layer backward: no layer %d", l);
    const int64_t N = (int64_t)tp->B * tp->T;
    if (check_grad_in(m, dout, N, m->cfg.hidden, "dout") || (dx && check_grad_in(m, dx, N, m->cfg.hidden, "dx"))) return -1;
    pn_tensor dres = pn_rows(&tp->dres, 0, N), cu;
    pn_op_copy(&dres, dout);
    const pn_block_ctx ctx = backward_ctx(m, &cu);
    if (backward_layer(m, l, &dres, &ctx)) return -1;
    if (dx) pn_op_copy(dx, &dres);
    return 0;
}
