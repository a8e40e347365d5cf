// ops_list.h: the one list of compute ops. Each entry is X(name, return type, (parameters)); the backend
// table (pn_backend in ops.h), the CPU declarations (kernels/cpu/cpu.h: pn_cpu_<name>) and the CUDA ones
// (kernels/cuda/common.cuh: pn_cuda_<name>) and both tables (kernels/cpu/backend.c, kernels/cuda/backend.cu)
// are all generated from it, so a backend that lacks an op fails to link, naming pn_<backend>_<name>. What
// each op computes is written beside its checked wrapper in ops.h.
#ifndef PN_OPS_LIST_H
#define PN_OPS_LIST_H

#define PN_OPS(X)                                                                                                  \
    X(embedding, void, (pn_tensor * out, const pn_tensor *ids, const pn_tensor *table))                          \
    X(rmsnorm, void, (pn_tensor * out, const pn_tensor *x, const pn_tensor *weight, float eps))                  \
    X(matmul, void, (pn_tensor * out, const pn_tensor *x, const pn_tensor *w, const pn_tensor *bias))            \
    X(add, void, (pn_tensor * sum, const pn_tensor *x, const pn_tensor *y))                                      \
    X(add_rmsnorm, void,                                                                                         \
      (pn_tensor * sum, const pn_tensor *x, const pn_tensor *y, pn_tensor *out, const pn_tensor *weight, float eps)) \
    X(swiglu, void, (pn_tensor * out, const pn_tensor *gate, const pn_tensor *up))                               \
    X(matmul_swiglu, void, (pn_tensor * out, const pn_tensor *x, const pn_tensor *w_gate, const pn_tensor *w_up))  \
    X(matmul_multi, void,                                                                                        \
      (int n, pn_tensor *const *out, const pn_tensor *x, const pn_tensor *const *w, const pn_tensor *const *bias,   \
       unsigned silu))                                                                                           \
    X(add_rmsnorm_swiglu, void,                                                                                  \
      (pn_tensor * out, const pn_tensor *x, const pn_tensor *y, const pn_tensor *norm_w, float eps,               \
       const pn_tensor *w_gate, const pn_tensor *w_up))                                                          \
    X(matmul_add_rmsnorm, void,                                                                                  \
      (pn_tensor * x, const pn_tensor *y, const pn_tensor *a, const pn_tensor *w, pn_tensor *xn,                 \
       const pn_tensor *norm_w, float eps))                                                                      \
    X(rope, void, (pn_tensor * x, const pn_tensor *inv_freq, int pos0, const pn_tensor *cu_seqlens))               \
    X(kv_store, void, (pn_tensor * cache, const pn_tensor *src, int pos0))                                       \
    X(attention, void,                                                                                           \
      (pn_tensor * out, const pn_tensor *q, const pn_tensor *kcache, const pn_tensor *vcache, int pos0, int window)) \
    X(kv_store_at, void,                                                                                         \
      (pn_tensor * kcache, pn_tensor * vcache, const pn_tensor *k, const pn_tensor *v, const pn_tensor *inv_freq, \
       const pn_tensor *pos))                                                                                    \
    X(attention_at, void,                                                                                        \
      (pn_tensor * out, const pn_tensor *q, const pn_tensor *kcache, const pn_tensor *vcache,                    \
       const pn_tensor *inv_freq, const pn_tensor *pos, int window))                                             \
    X(kv_attend_at, void,                                                                                        \
      (pn_tensor * out, const pn_tensor *q, pn_tensor *kcache, pn_tensor *vcache, const pn_tensor *k,            \
       const pn_tensor *v, const pn_tensor *inv_freq, const pn_tensor *pos, int window))                         \
    X(to_host_f32, void, (float *dst, const pn_tensor *src))                                                     \
    X(from_host_f32, void, (pn_tensor * dst, const float *src))                                                  \
    X(count_nonfinite, int64_t, (const pn_tensor *x))                                                            \
    X(attention_train, void,                                                                                     \
      (pn_tensor * out, pn_tensor * lse, const pn_tensor *q, const pn_tensor *k, const pn_tensor *v, int window,  \
       const pn_tensor *cu_seqlens))                                                                            \
    X(attention_bwd, void,                                                                                       \
      (pn_tensor * dq, pn_tensor * dk, pn_tensor * dv, const pn_tensor *dout, const pn_tensor *q, const pn_tensor *k, \
       const pn_tensor *v, const pn_tensor *out, const pn_tensor *lse, int window, const pn_tensor *cu_seqlens))   \
    X(copy, void, (pn_tensor * dst, const pn_tensor *src))                                                       \
    X(silu, void, (pn_tensor * y, const pn_tensor *x))                                                           \
    X(silu_bwd, void, (pn_tensor * dx, const pn_tensor *dy, const pn_tensor *x))                                 \
    X(rmsnorm_bwd, void,                                                                                         \
      (pn_tensor * dx, pn_tensor * dw, const pn_tensor *dy, const pn_tensor *x, const pn_tensor *w, float eps,    \
       int accumulate_dx))                                                                                       \
    X(gated_rmsnorm, void,                                                                                       \
      (pn_tensor * y, const pn_tensor *x, const pn_tensor *gate, const pn_tensor *w, float eps))                 \
    X(gated_rmsnorm_bwd, void,                                                                                   \
      (pn_tensor * dx, pn_tensor * dgate, pn_tensor * dw, const pn_tensor *dy, const pn_tensor *x,               \
       const pn_tensor *gate, const pn_tensor *w, float eps))                                                    \
    X(swiglu_bwd, void,                                                                                          \
      (pn_tensor * dgate, pn_tensor * dup, const pn_tensor *dout, const pn_tensor *gate, const pn_tensor *up))    \
    X(matmul_bwd, void,                                                                                          \
      (pn_tensor * dx, pn_tensor * dw, pn_tensor * db, const pn_tensor *dout, const pn_tensor *x, const pn_tensor *w, \
       int accumulate_dx))                                                                                       \
    X(rope_bwd, void, (pn_tensor * dx, const pn_tensor *inv_freq, int pos0, const pn_tensor *cu_seqlens))          \
    X(embedding_bwd, void, (pn_tensor * dtable, const pn_tensor *ids, const pn_tensor *dout))                    \
    X(conv1d, void,                                                                                              \
      (pn_tensor * y, const pn_tensor *x, const pn_tensor *w, const pn_tensor *bias, const pn_tensor *kdyn,      \
       int act_silu, const pn_tensor *cu_seqlens))                                                               \
    X(conv1d_continue, void,                                                                                     \
      (pn_tensor * y, pn_tensor * cache, const pn_tensor *x, const pn_tensor *w, const pn_tensor *kdyn, int act_silu)) \
    X(conv1d_bwd, void,                                                                                          \
      (pn_tensor * dx, pn_tensor * dw, pn_tensor * dbias, pn_tensor * dkdyn, const pn_tensor *dy, const pn_tensor *x, \
       const pn_tensor *w, const pn_tensor *bias, const pn_tensor *kdyn, int act_silu, const pn_tensor *cu_seqlens)) \
    X(lin_gates, void,                                                                                           \
      (pn_tensor * g, pn_tensor * beta, const pn_tensor *za, const pn_tensor *zb, const pn_tensor *A_log,        \
       const pn_tensor *dt_bias))                                                                                \
    X(lin_gates_bwd, void,                                                                                       \
      (pn_tensor * dza, pn_tensor * dzb, pn_tensor * dA_log, pn_tensor * ddt_bias, const pn_tensor *dg,          \
       const pn_tensor *dbeta, const pn_tensor *za, const pn_tensor *g, const pn_tensor *beta,                  \
       const pn_tensor *A_log, const pn_tensor *dt_bias))                                                        \
    X(gdn_fwd, int,                                                                                              \
      (const pn_gdn_cfg *cfg, void *o, float *ht, const void *q, const void *k, const void *v, const float *g,   \
       const float *beta, const float *h0))                                                                      \
    X(gdn_bwd, int,                                                                                              \
      (const pn_gdn_cfg *cfg, void *dq, void *dk, void *dv, float *dg, float *dbeta, float *dh0, const void *dout, \
       const float *dht, const void *q, const void *k, const void *v, const float *g, const float *beta,         \
       const float *h0))                                                                                         \
    X(gdn_step, int,                                                                                             \
      (const pn_gdn_cfg *cfg, void *o, float *S, const void *q, const void *k, const void *v, const float *g,    \
       const float *beta))                                                                                       \
    X(lm_loss, void,                                                                                             \
      (pn_tensor * dz, pn_tensor * rowloss, const pn_tensor *zs, const pn_tensor *zt, const pn_tensor *targets,  \
       const pn_lm_loss_args *a))                                                                                \
    X(lm_score, void, (pn_tensor * out, const pn_tensor *z, const pn_tensor *targets))                           \
    X(argmax, void, (pn_tensor * out, const pn_tensor *z))                                                       \
    X(sample, void, (pn_tensor * out, const pn_tensor *z, const pn_sample_args *a))                              \
    X(mse, void,                                                                                                 \
      (pn_tensor * dx, pn_tensor * rowloss, const pn_tensor *x, const pn_tensor *y, float grad_scale,            \
       int accumulate))                                                                                          \
    X(adamw, void,                                                                                               \
      (pn_tensor * p, pn_tensor * master, pn_tensor * m, pn_tensor * v, const pn_tensor *g,                      \
       const pn_adamw_args *a))                                                                                  \
    X(sumsq, void, (pn_tensor * partial, const pn_tensor *x))                                                     \
    X(adamw_list, void, (const pn_adamw_item *items, int n))                                                     \
    X(sumsq_list, void, (pn_tensor * partial, const pn_tensor *const *xs, int n))

// Declarations of one backend's implementations: PN_OPS(PN_OP_DECLARE_CPU) in cpu.h, ..._CUDA in common.cuh.
#define PN_OP_DECLARE_CPU(name, ret, params) ret pn_cpu_##name params;
#define PN_OP_DECLARE_CUDA(name, ret, params) ret pn_cuda_##name params;
// A table's entries in list order, for each backend.
#define PN_OP_ENTRY_CPU(name, ret, params) pn_cpu_##name,
#define PN_OP_ENTRY_CUDA(name, ret, params) pn_cuda_##name,
// The table's fields.
#define PN_OP_FIELD(name, ret, params) ret(*name) params;

#endif
