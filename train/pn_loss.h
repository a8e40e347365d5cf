// pn_loss: the distillation and language-model losses the trainer sums (docs/README.md "Losses").
//
// KL(teacher || student) and next-token CE come from the final hidden states through the LM head, a chunk
// of rows at a time: the chunk's student (and teacher) logits [R, V] are made by one matmul, the fused op
// (pn_op_lm_loss) turns them into per-row losses and overwrites the student's with d(loss)/d(logits), and
// the head's backward adds the chunk's rows of d(hidden) and d(W). Only two [R, V] buffers ever exist,
// never [tokens, V]. Hidden-state MSE (any layer, or the final hidden state) is pn_op_mse into its own rows.
//
// Per-row values stay on the device in row order until pn_loss_totals copies them back once per step and
// sums them in double in a fixed order (deterministic, one synchronization per optimizer step).
#ifndef PN_LOSS_H
#define PN_LOSS_H

#include "../kernels/ops.h"
#include "../src/pn_tensor.h"

typedef struct pn_loss {
    pn_device dev;
    pn_arena arena;
    int64_t R, V, C, max_rows;
    int n_mse;
    pn_tensor zs, zt;     // [R, V] activation dtype: one chunk's student and teacher logits
    pn_tensor targets;    // I32 [max_rows] on the device
    pn_tensor lm_rows;    // F32 [max_rows, 2]: KL_r, CE_r
    pn_tensor mse_rows;   // F32 [n_mse, max_rows]
    float *host;          // max_rows * (2 + n_mse) floats (pn_loss_totals)
} pn_loss;

// Buffers for up to max_rows rows per optimizer step (all micro-batches), a vocabulary of V, hidden size C,
// chunks of chunk_rows rows, and n_mse MSE terms. 0, or -1 with the error set (out of memory names the
// size and suggests smaller chunks).
int pn_loss_init(pn_loss *L, pn_device dev, int64_t V, int64_t C, int64_t chunk_rows, int64_t max_rows, int n_mse);
void pn_loss_free(pn_loss *L);

// KL and CE of rows [row0, row0 + N) of the step from the student's final hidden states hs [N, C] through
// Ws [V, C], and the teacher's ht through Wt (ht NULL: no KL; Wt may be Ws). targets_host [N]: the next
// token of each row, -1 where there is none to count (a document's end); NULL: no CE. The gradient of
// a->kl_grad sum KL_r + a->ce_grad sum CE_r goes to dh [N, C] (overwritten, or added with accumulate; NULL:
// values only) and dWs (F32, accumulated; NULL: frozen head). 0, or -1 with the error set (a bad target).
int pn_loss_head(pn_loss *L, int64_t row0, const pn_tensor *hs, const pn_tensor *ht, const pn_tensor *Ws,
                 const pn_tensor *Wt, const int32_t *targets_host, const pn_lm_loss_args *a, pn_tensor *dh,
                 int accumulate, pn_tensor *dWs);

// MSE term `slot` of rows [row0, row0 + N): sum over channels of (x - y)^2 per row, and
// dx (= or += with accumulate; NULL: values only) = grad_scale 2 (x - y).
void pn_loss_mse(pn_loss *L, int slot, int64_t row0, const pn_tensor *x, const pn_tensor *y, pn_tensor *dx,
                 float grad_scale, int accumulate);

// The sums over rows [0, nrows) of the step (synchronizes): KL, CE and each MSE term (mse: n_mse values;
// any pointer may be NULL).
void pn_loss_totals(pn_loss *L, int64_t nrows, double *kl, double *ce, double *mse);

#endif
