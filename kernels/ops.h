// ops.h: every compute op, declared once. Each backend (kernels/cpu, kernels/cuda) fills one pn_backend
// table; model code calls the pn_op_* wrappers, which check shapes and dtypes and dispatch on the output
// tensor's device, so nothing above this file branches on the device (the ggml pattern).
//
// Conventions:
// - Activations are F32 on the CPU backend and BF16 on the CUDA backend; parameters likewise. Accumulation
//   is always fp32. Index tensors are I32. All tensors of one call live on the same device.
// - Shapes are [B, T, H, D] for per-head tensors and [N, C] (N = B*T rows) for everything else.
// - Linear weights are Hugging Face's [out, in]: y = x W^T + b.
#ifndef PN_OPS_H
#define PN_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "../src/pn_tensor.h"
#include "cpu/gdn.h" // pn_gdn_cfg
#include "ops_list.h"

// Arguments of the fused loss and the optimizer ops (kernels/ops.h's pn_op_lm_loss / pn_op_adamw say what
// they mean).
typedef struct pn_lm_loss_args {
    float temperature; // of the KL term (the CE term always uses the raw logits)
    float kl_grad;     // d(loss)/d(KL_row): the KL weight over the number of rows the loss averages
    float ce_grad;     // d(loss)/d(CE_row): the CE weight over the number of counted targets
} pn_lm_loss_args;

// Sampling (pn_op_sample): temperature (<= 0: greedy), then keep the top_k largest logits (<= 0: all) and of
// those the fewest largest whose probability sums to top_p (>= 1: all); the draw's random numbers are
// (seed, step).
typedef struct pn_sample_args {
    float temperature, top_p;
    int top_k;
    uint64_t seed, step;
} pn_sample_args;

typedef struct pn_adamw_args {
    float lr, beta1, beta2, eps, weight_decay;
    float bc1, bc2;     // bias corrections 1 - beta1^t, 1 - beta2^t of this step t (1-based)
    float grad_scale;   // the gradient is multiplied by it first (global-norm clipping's coefficient)
} pn_adamw_args;

// One tensor of an adamw_list call: pn_op_adamw's arguments.
typedef struct pn_adamw_item {
    pn_tensor *p, *master, *m, *v;
    const pn_tensor *g;
    pn_adamw_args a;
} pn_adamw_item;

#define PN_COMM_ID_BYTES 128 // NCCL_UNIQUE_ID_BYTES

typedef struct pn_backend {
    const char *name;
    // memory
    void *(*alloc)(size_t bytes); // NULL when out of memory
    void (*free)(void *p);
    void (*memcpy_h2d)(void *dst, const void *src, size_t bytes);
    void (*memcpy_d2h)(void *dst, const void *src, size_t bytes);
    void (*memset0)(void *dst, size_t bytes);
    void (*sync)(void);
    size_t (*mem_avail)(void); // bytes that can still be allocated (CPU: MemAvailable; CUDA: the device's free)
    // Graphs (NULL where the backend has none): capture_begin records the backend's work instead of running
    // it (0, or -1 with the error set); capture_end returns the replayable graph (NULL with the error set);
    // graph_launch replays it (queued like an op); graph_free releases it.
    int (*capture_begin)(void);
    void *(*capture_end)(void);
    void (*graph_launch)(void *graph);
    void (*graph_free)(void *graph);
    // Devices and collectives over a job's ranks on device memory (NULL where the backend has none: the
    // CPU's host memory goes through MPI, train/pn_dist.c; the CUDA ones without NCCL in the build).
    // select_device makes GPU `ordinal` (a local rank; the only one when a node shows one) this process's,
    // before its first use (0, or -1 with the error set).
    // comm_id writes rank 0's unique id (PN_COMM_ID_BYTES), which pn_dist broadcasts; comm_init joins the
    // communicator of `world` ranks (0, or -1 with the error set). comm_sum (F32, n elements: in place for
    // root < 0, else into root's buffer) and comm_bcast (bytes from root) are queued on the communication
    // stream after the compute stream's work so far; comm_join makes the compute stream wait for all of
    // them. comm_wait_ms: once that work is done, how long the compute stream waited at the last comm_join
    // beyond its own work (milliseconds, >= 0). comm_free ends the communicator.
    int (*select_device)(int ordinal);
    int (*comm_id)(void *id);
    int (*comm_init)(const void *id, int rank, int world);
    void (*comm_sum)(float *x, int64_t n, int root);
    void (*comm_bcast)(void *x, size_t bytes, int root);
    void (*comm_join)(void);
    double (*comm_wait_ms)(void);
    void (*comm_free)(void);

    // the ops, in kernels/ops_list.h's order (what each computes: the comments below and the wrappers')
    PN_OPS(PN_OP_FIELD)
} pn_backend;

// What the ops compute (each backend's pn_backend_get(dev)-><op>; the wrappers below check the shapes):
// - embedding: out[n, :] = table[ids[n], :]; ids already validated against V by the caller.
// - rmsnorm: out = weight * normalize(x) over the last dim D = weight->shape[0]; statistics in fp32; like
//   HF the normalized value is rounded to the activation dtype before * weight.
// - matmul: out[N, O] = x[N, I] w[O, I]^T (+ bias[O]).   swiglu: out = silu(gate) * up.
// - add: sum = x + y (sum may be x or y: x += y).
// - add_rmsnorm: sum = x + y, then out = rmsnorm(sum) (sum may be x; out must alias neither): the residual add
//   and the next norm in one pass, equal to add then rmsnorm (on CUDA bit for bit); a residual kept apart
//   from its input is written without a copy first.
// - matmul_swiglu: out = swiglu(x w_gate^T, x w_up^T), equal to matmul, matmul and swiglu (each product
//   rounded to the activation dtype as there; on CUDA bit for bit): the MLP's first half in one call, which
//   a decoding step (a few rows) runs as one launch reading both weights instead of three.
// - add_rmsnorm_swiglu: out = matmul_swiglu(rmsnorm(x + y)) (y may be NULL; x and y are only read, x + y
//   rounded as add rounds it): a decoding step's post-attention norm and MLP first half in one launch.
// - matmul_add_rmsnorm: x += y (y may be NULL), x += a w^T (the product rounded as matmul's output), then
//   xn = rmsnorm(x): the MLP's down projection, both residual adds and the next layer's norm in one launch.
//   Both equal the ops they fuse (on CUDA bit for bit).
// - matmul_multi: out[i] = x w[i]^T (+ bias[i]) for i < n <= PN_MATMUL_MULTI (bias may be NULL, or bias[i]
//   NULL), then out[i] = silu(out[i]) where bit i of `silu` is set: the projections of one input (attention's
//   q, k, v; a linear block's q, k, v, gates, JetBlock's SiLU'd q, k and kernel generator input) in one call,
//   equal to n matmuls and the silu ops (on CUDA bit for bit); a decoding step runs them as one GEMV launch.
// - rope: in place on x[B, T, H, D], rotate-half convention; token t at position pos0 + t; inv_freq[D/2] F32.
//   With cu_seqlens (a packed batch, kernels/packed.h; else NULL) token t sits at pos0 + t - its document's start.
// - A KV cache [B, cap, Hkv, D] is a ring: position s lives in slot s mod cap. Full attention never wraps
//   (pos0 + T <= cap); a sliding window's cache needs only T + window - 1 slots (every key a call reads).
// - kv_store: cache[b, (pos0 + t) mod cap] = src[b, t] (src [B, T, Hkv, D], T <= cap).
// - attention: causal GQA of q[B, T, Hq, D] (query t at position pos0 + t) over positions 0 .. pos0 + T - 1
//   of kcache/vcache; key s is visible to query p iff s <= p and (window == 0 or p - s < window); scale
//   D^-1/2, softmax in fp32; out [B, T, Hq, D]. The visible keys must be in the ring: T + min(pos0,
//   window - 1) <= cap with a window, pos0 + T <= cap without.
// - kv_store_at, attention_at: decoding's rope + kv_store and rope + attention, with each sequence's
//   position held on the device: pos I32 [B], sequence b's first new token at pos[b] (instead of pos0 for
//   all). kv_store_at rotates k (RoPE with inv_freq; NULL: none) and stores it and v into the caches;
//   attention_at rotates q the same way (q itself is not written) and attends. Nothing of the launches
//   depends on the positions, so a decode step can be captured once and replayed as a CUDA graph while they
//   advance; sequences of one batch may sit at different positions. The results equal rope, kv_store and
//   attention run per sequence (the rotated values rounded to the activation dtype in between, as there).
//   The ring's condition is the caller's to keep (the device cannot check it).
// - kv_attend_at: kv_store_at then attention_at, equal to them (on CUDA bit for bit, caches included); a
//   one-token decoding step runs both in one launch (the new key and value enter the attention directly).
// - to_host_f32 / from_host_f32: a tensor to / from a host fp32 array. count_nonfinite: NaN/Inf count.
// - attention_train: attention over the T tokens themselves (pos0 = 0, k/v [B, T, Hkv, D]) also writing
//   lse F32 [B, T, Hq] (each query's natural log-sum-exp). attention_bwd: from q, k, v, out, dout (and lse,
//   or NULL to recompute) writes dq [B, T, Hq, D], dk, dv [B, T, Hkv, D] (GQA sums a group into its head).
//   Both take cu_seqlens (NULL, or a packed batch of B = 1: kernels/packed.h): a query then sees only keys of
//   its own document, every document in one call.
// - the training and linear-block ops: see their wrappers below; gdn_*: kernels/cpu/gdn.h's contract, all
//   pointers on the backend's device, returning 0 or -1 with the error set before computing anything.

extern const pn_backend pn_cpu_backend;
#ifdef PN_HAVE_CUDA
extern const pn_backend pn_cuda_backend;
// pn_cuda_backend, or with PN_OP_PROFILE=1 the same table with every op timed on the GPU (a table of ops by
// total time on stderr at exit; kernels/cuda/backend.cu)
const pn_backend *pn_cuda_backend_active(void);
#endif

// The table for a device, or NULL when this build (or machine) has no such backend.
const pn_backend *pn_backend_get(pn_device dev);
// 1 when a CUDA device is usable now (built with CUDA and a GPU present).
int pn_cuda_available(void);
// The activation/parameter dtype a device computes in.
pn_dtype pn_device_dtype(pn_device dev);

// 1 when PN_NO_FUSED is set: the decode fusions (matmul_multi, kv_attend_at, the model's matmul_swiglu)
// run as the ops they fuse, for comparisons.
int pn_ops_unfused(void);
// Checked wrappers (shape or dtype mismatches are programmer errors: they panic with the op's name).
void pn_op_embedding(pn_tensor *out, const pn_tensor *ids, const pn_tensor *table);
void pn_op_rmsnorm(pn_tensor *out, const pn_tensor *x, const pn_tensor *weight, float eps);
void pn_op_matmul(pn_tensor *out, const pn_tensor *x, const pn_tensor *w, const pn_tensor *bias);
void pn_op_add(pn_tensor *sum, const pn_tensor *x, const pn_tensor *y);
void pn_op_add_rmsnorm(pn_tensor *sum, const pn_tensor *x, const pn_tensor *y, pn_tensor *out, const pn_tensor *weight,
                       float eps);
void pn_op_swiglu(pn_tensor *out, const pn_tensor *gate, const pn_tensor *up);
void pn_op_matmul_swiglu(pn_tensor *out, const pn_tensor *x, const pn_tensor *w_gate, const pn_tensor *w_up);
void pn_op_add_rmsnorm_swiglu(pn_tensor *out, const pn_tensor *x, const pn_tensor *y, const pn_tensor *norm_w,
                              float eps, const pn_tensor *w_gate, const pn_tensor *w_up);
void pn_op_matmul_add_rmsnorm(pn_tensor *x, const pn_tensor *y, const pn_tensor *a, const pn_tensor *w, pn_tensor *xn,
                              const pn_tensor *norm_w, float eps);
#define PN_MATMUL_MULTI 8
void pn_op_matmul_multi(int n, pn_tensor *const *out, const pn_tensor *x, const pn_tensor *const *w,
                        const pn_tensor *const *bias, unsigned silu);
void pn_op_rope(pn_tensor *x, const pn_tensor *inv_freq, int pos0, const pn_tensor *cu_seqlens);
void pn_op_kv_store(pn_tensor *cache, const pn_tensor *src, int pos0);
void pn_op_attention(pn_tensor *out, const pn_tensor *q, const pn_tensor *kcache, const pn_tensor *vcache,
                     int pos0, int window);
void pn_op_kv_store_at(pn_tensor *kcache, pn_tensor *vcache, const pn_tensor *k, const pn_tensor *v,
                       const pn_tensor *inv_freq, const pn_tensor *pos);
void pn_op_attention_at(pn_tensor *out, const pn_tensor *q, const pn_tensor *kcache, const pn_tensor *vcache,
                        const pn_tensor *inv_freq, const pn_tensor *pos, int window);
void pn_op_kv_attend_at(pn_tensor *out, const pn_tensor *q, pn_tensor *kcache, pn_tensor *vcache, const pn_tensor *k,
                        const pn_tensor *v, const pn_tensor *inv_freq, const pn_tensor *pos, int window);
void pn_op_attention_train(pn_tensor *out, pn_tensor *lse, const pn_tensor *q, const pn_tensor *k, const pn_tensor *v,
                           int window, const pn_tensor *cu_seqlens);
void pn_op_attention_bwd(pn_tensor *dq, pn_tensor *dk, pn_tensor *dv, const pn_tensor *dout, const pn_tensor *q,
                         const pn_tensor *k, const pn_tensor *v, const pn_tensor *out, const pn_tensor *lse,
                         int window, const pn_tensor *cu_seqlens);
void pn_op_to_host_f32(float *dst, const pn_tensor *src);
int64_t pn_op_count_nonfinite(const pn_tensor *x);
void pn_op_from_host_f32(pn_tensor *dst, const float *src);

// ---- training and linear-block ops ----
// Gradient conventions (llm.c's): input gradients (dx, dq, ...) are overwritten; parameter gradients (dw,
// db, dA_log, ...) are F32 on every backend, accumulate (+=) and may be NULL for a frozen tensor. Activations
// and their gradients are in the device's activation dtype; parameters in its parameter dtype.

// dst = src (same shape and dtype, same device).
void pn_op_copy(pn_tensor *dst, const pn_tensor *src);
// y = x sigmoid(x) elementwise (y may alias x); dx = dy silu'(x) (dx may alias dy).
void pn_op_silu(pn_tensor *y, const pn_tensor *x);
void pn_op_silu_bwd(pn_tensor *dx, const pn_tensor *dy, const pn_tensor *x);
// Backward of pn_op_rmsnorm (rows of D = w->shape[0]): dx overwritten (accumulate_dx: dx += the gradient, a
// residual's sum in the same pass; dx must not alias dy then), dw += (NULL = frozen).
void pn_op_rmsnorm_bwd(pn_tensor *dx, pn_tensor *dw, const pn_tensor *dy, const pn_tensor *x, const pn_tensor *w,
                       float eps, int accumulate_dx);
// fla's FusedRMSNormGated (swish): y = x / sqrt(mean(x^2) + eps) * w * silu(gate) over rows of D = w->shape[0]
// (one row per token and head); x, gate, y the same shape. Statistics in fp32.
void pn_op_gated_rmsnorm(pn_tensor *y, const pn_tensor *x, const pn_tensor *gate, const pn_tensor *w, float eps);
void pn_op_gated_rmsnorm_bwd(pn_tensor *dx, pn_tensor *dgate, pn_tensor *dw, const pn_tensor *dy, const pn_tensor *x,
                             const pn_tensor *gate, const pn_tensor *w, float eps);
// Backward of out = silu(gate) * up: dgate, dup overwritten.
void pn_op_swiglu_bwd(pn_tensor *dgate, pn_tensor *dup, const pn_tensor *dout, const pn_tensor *gate,
                      const pn_tensor *up);
// Backward of out[N, O] = x[N, I] w[O, I]^T + b: dx = dout w (or dx += dout w with accumulate_dx; dx NULL:
// not wanted), dw += dout^T x and db += column sums of dout (F32; NULL = frozen).
void pn_op_matmul_bwd(pn_tensor *dx, pn_tensor *dw, pn_tensor *db, const pn_tensor *dout, const pn_tensor *x,
                      const pn_tensor *w, int accumulate_dx);
// Backward of pn_op_rope in place: rotates dx[B, T, H, D] back by the same angles.
void pn_op_rope_bwd(pn_tensor *dx, const pn_tensor *inv_freq, int pos0, const pn_tensor *cu_seqlens);
// dtable[ids[n], :] += dout[n, :] (dtable F32 [V, C]).
void pn_op_embedding_bwd(pn_tensor *dtable, const pn_tensor *ids, const pn_tensor *dout);
// Causal depthwise convolution over W taps of x [B, T, C]:
//   y[b, t, c] = act(sum_{w < W} K[c, w] x[b, t - (W - 1) + w, c] + bias[c]), zero before a sequence's start,
// with K the static kernel w [C, W] (parameter dtype; nn.Conv1d's [C, 1, W] has that layout) or, when kdyn is
// not NULL (then w and bias are NULL), a kernel per token kdyn [B, T, C * W] (activation dtype, tap fastest:
// JetBlock's 'b t (d w)'). act is SiLU when act_silu, else identity. bias may be NULL. cu_seqlens: NULL, or
// I32 [n_seqs + 1] on the device with B = 1 (sequences packed along T; nothing reads across a start).
// W <= 64.
void pn_op_conv1d(pn_tensor *y, const pn_tensor *x, const pn_tensor *w, const pn_tensor *bias, const pn_tensor *kdyn,
                  int act_silu, const pn_tensor *cu_seqlens);
// Generation's form: B sequences continue from their last W - 1 inputs, cache [B, W - 1, C] (activation
// dtype): with e_b = cache[b] followed by x[b] (W - 1 + T rows),
//   y[b, t, c] = act(sum_{j < W} K[c, j] e_b[t + j, c])      (K: w [C, W], or kdyn [B, T, C * W] per token)
// and cache[b] becomes the last W - 1 rows of e_b. The same sums, in the same order, as conv1d over e_b
// (on CUDA bit for bit), in one launch for all sequences; no bias. W <= 64.
void pn_op_conv1d_continue(pn_tensor *y, pn_tensor *cache, const pn_tensor *x, const pn_tensor *w,
                           const pn_tensor *kdyn, int act_silu);
// Its backward: dx overwritten; dw, dbias accumulate (F32, NULL = frozen); dkdyn overwritten (activation
// dtype, required with kdyn).
void pn_op_conv1d_bwd(pn_tensor *dx, pn_tensor *dw, pn_tensor *dbias, pn_tensor *dkdyn, const pn_tensor *dy,
                      const pn_tensor *x, const pn_tensor *w, const pn_tensor *bias, const pn_tensor *kdyn,
                      int act_silu, const pn_tensor *cu_seqlens);
// The linear blocks' gates, F32 outputs [N, H] from pre-activations za, zb [N, H] (activation dtype):
//   beta = sigmoid(zb);  g = -exp(A_log[h]) softplus(za + dt_bias[h])  (softplus(z) = z above 20, torch's),
// or g = 0 when za is NULL (DeltaNet; then A_log and dt_bias are NULL too).
void pn_op_lin_gates(pn_tensor *g, pn_tensor *beta, const pn_tensor *za, const pn_tensor *zb, const pn_tensor *A_log,
                     const pn_tensor *dt_bias);
// Its backward from dg, dbeta (F32 [N, H]): dza, dzb overwritten (activation dtype; dza NULL without
// decay); dA_log += sum_n dg g, ddt_bias += sum_n dza (F32 [H], NULL = frozen).
void pn_op_lin_gates_bwd(pn_tensor *dza, pn_tensor *dzb, pn_tensor *dA_log, pn_tensor *ddt_bias, const pn_tensor *dg,
                         const pn_tensor *dbeta, const pn_tensor *za, const pn_tensor *g, const pn_tensor *beta,
                         const pn_tensor *A_log, const pn_tensor *dt_bias);
// Gated DeltaNet (kernels/cpu/gdn.h): q, k [B, T, H, K], v, o [B, T, H, V] activation dtype; g, beta F32
// [B, T, H]; h0, ht F32 [N, H, K, V] or NULL; cu_seqlens NULL or I32 [N + 1] on the device (B = 1). In-kernel
// q/k L2 norm when qk_l2norm; scale K^-1/2. saved: NULL, or a buffer (any dtype, its bytes counted) where
// the forward keeps intermediates for a backward given the same one (pn_gdn_cfg.saved: too small, or on
// the CPU, it is left alone and the backward recomputes). Returns 0, or -1 with the error set (a config
// the op cannot run) before computing anything.
int pn_op_gdn(pn_tensor *o, pn_tensor *ht, const pn_tensor *q, const pn_tensor *k, const pn_tensor *v,
              const pn_tensor *g, const pn_tensor *beta, const pn_tensor *h0, const pn_tensor *cu_seqlens,
              const int32_t *cu_host, int qk_l2norm, pn_tensor *saved);
// Its backward: every gradient overwritten; dht NULL = zero, dh0 NULL = not wanted; saved: the forward's.
int pn_op_gdn_bwd(pn_tensor *dq, pn_tensor *dk, pn_tensor *dv, pn_tensor *dg, pn_tensor *dbeta, pn_tensor *dh0,
                  const pn_tensor *dout, const pn_tensor *dht, const pn_tensor *q, const pn_tensor *k,
                  const pn_tensor *v, const pn_tensor *g, const pn_tensor *beta, const pn_tensor *h0,
                  const pn_tensor *cu_seqlens, const int32_t *cu_host, int qk_l2norm, const pn_tensor *saved);
// One decode step: q, k [B, 1, H, K], v, o [B, 1, H, V], g, beta F32 [B, 1, H]; S F32 [B, H, K, V] in place.
int pn_op_gdn_step(pn_tensor *o, pn_tensor *S, const pn_tensor *q, const pn_tensor *k, const pn_tensor *v,
                   const pn_tensor *g, const pn_tensor *beta, int qk_l2norm);

// ---- losses and the optimizer (train/) ----
// The distillation / language-model loss of R rows of logits, fused with its gradient (llm.c's fused
// classifier): zs the student's logits [R, V] (activation dtype), zt the teacher's [R, V] or NULL (no KL),
// targets I32 [R] in [-1, V) or NULL (no CE; -1 = not counted: a document's end). Per row r, in fp32:
//   ps = softmax(zs / tau), pt = softmax(zt / tau)
//   rowloss[r, 0] = KL_r = tau^2 sum_v pt (log pt - log ps)          (Hinton's tau^2: gradients keep their size)
//   rowloss[r, 1] = CE_r = logsumexp(zs_r) - zs_r[target_r]          (0 for -1)
//   dz[r]        = kl_grad tau (ps - pt) + ce_grad (softmax(zs) - onehot(target_r))
// dz (activation dtype, may alias zs, NULL = values only) is the gradient of kl_grad sum_r KL_r + ce_grad
// sum_r CE_r. rowloss F32 [R, 2] is overwritten; the caller sums rows on the host in a fixed order.
void pn_op_lm_loss(pn_tensor *dz, pn_tensor *rowloss, const pn_tensor *zs, const pn_tensor *zt,
                   const pn_tensor *targets, const pn_lm_loss_args *a);
// Scoring R rows of logits z [R, V] (activation dtype) against targets I32 [R] in [-1, V) (pn_eval's
// log-likelihood requests): out F32 [R, 2] (overwritten) = (log softmax(z_r)[target_r], 0 for -1; the first
// index of the row's maximum, exact in F32 since V < 2^24). lm-evaluation-harness's greedy flag is
// out[r, 1] == target_r.
void pn_op_lm_score(pn_tensor *out, const pn_tensor *z, const pn_tensor *targets);
// Greedy decoding's choice: out I32 [R] = the first index of the maximum of each row of z [R, V] (activation
// dtype), as a scan with `>` from index 0 picks it (NaN rows: unspecified). Exact whatever the split, so a
// row's answer does not depend on R.
void pn_op_argmax(pn_tensor *out, const pn_tensor *z);
// Sampling's choice: out I32 [R] = a draw from softmax(z_r / temperature) for each row of z [R, V]
// (activation dtype) restricted to the kept logits (pn_sample_args: top_k, then top_p of the renormalized
// rest; a value tied with the last kept one is kept too), as the first index of the maximum of
// (float)(z_ri / temperature - log(-log u_ri)) over the kept i (the Gumbel-max trick, every element at once;
// the perturbation in double) with u_ri = pn_rng_uniform(seed, step * 65536 + r, i): the same numbers on
// every device, a new draw per step. temperature <= 0: argmax. R <= 65536.
void pn_op_sample(pn_tensor *out, const pn_tensor *z, const pn_sample_args *a);
// Hidden-state MSE of x against y [R, C] (activation dtype): rowloss F32 [R] = sum_c (x - y)^2 (overwritten);
// dx (activation dtype, NULL = values only) = grad_scale 2 (x - y), or += with accumulate.
void pn_op_mse(pn_tensor *dx, pn_tensor *rowloss, const pn_tensor *x, const pn_tensor *y, float grad_scale,
               int accumulate);
// One AdamW step in torch.optim.AdamW's order (decoupled decay, bias-corrected moments, eps outside the
// square root), elementwise over a tensor, with g F32 scaled by grad_scale first:
//   w *= 1 - lr wd;  m += (g - m)(1 - b1);  v = b2 v + (1 - b2) g^2;  w -= lr/bc1 m / (sqrt(v)/sqrt(bc2) + eps)
// w is the fp32 master copy when master is not NULL (then p, in the parameter dtype, receives w rounded), else
// p itself (F32). m, v F32, same element count.
void pn_op_adamw(pn_tensor *p, pn_tensor *master, pn_tensor *m, pn_tensor *v, const pn_tensor *g,
                 const pn_adamw_args *a);
// Sum of squares of x (F32 or the activation dtype) into partial F32 [P] (overwritten): partial[i] is the
// sum over the i-th of P equal contiguous parts of x, so the caller's ordered sum of the partials is the same
// on every run (no atomics): the global gradient norm and the non-finite check of a step.
void pn_op_sumsq(pn_tensor *partial, const pn_tensor *x);
// The optimizer's step over its tensors: pn_op_adamw on each of the n items, and pn_op_sumsq of each xs[k]
// into row k of partial F32 [n, P] (a NULL xs[k] leaves row k as it was), with the same bits as the calls one
// by one. The CUDA backend batches them into a few launches: the distillation student's 338 mixer tensors
// are mostly small, where a launch a tensor was mostly launch and tail.
void pn_op_adamw_list(const pn_adamw_item *items, int n);
void pn_op_sumsq_list(pn_tensor *partial, const pn_tensor *const *xs, int n);

#endif
