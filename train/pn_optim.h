// pn_optim: AdamW over a model's trainable tensors, with the learning-rate schedule and global-norm clipping.
//
// Only tensors with a gradient buffer (pn_model_grads_init's trainable set) get optimizer state: moments m
// and v in fp32 and, where parameters are not fp32 (CUDA's bf16), an fp32 master copy that the update works
// on. Weight decay is decoupled (torch.optim.AdamW) and skipped for norms, biases, A_log, dt_bias and, unless
// asked, depthwise convolution kernels.
#ifndef PN_OPTIM_H
#define PN_OPTIM_H

#include "../src/pn_model.h"

typedef struct pn_optim_cfg {
    double lr, min_lr_ratio;       // peak learning rate; the cosine ends at lr * min_lr_ratio
    int64_t warmup_steps, total_steps;
    double beta1, beta2, eps, weight_decay;
    double clip;                   // global gradient-norm limit (0: none)
    int decay_conv;                // weight decay on depthwise convolution kernels too
    int shard_rank, shard_world;   // ZeRO-1: this rank keeps the state of its share of the tensors (world 0
                                   // or 1: every tensor)
} pn_optim_cfg;

typedef struct pn_optim_tensor {
    int param;                     // index into the model's param_list
    pn_tensor *p, *g;              // the parameter and its gradient (the model's)
    pn_tensor master, m, v;        // F32; master.data NULL where p is F32 itself; all NULL when not owned
    int owner;                     // ZeRO-1: the rank that keeps the state and updates the tensor (else 0)
    float *held[3];                // rank 0, between pn_optim_gather and pn_optim_release: an owner's m, v, master
    float wd;                      // 0 for the excluded kinds
    int64_t steps;                 // updates this tensor received (torch's state["step"]; bias corrections)
    uint8_t skip;                  // set by the caller: the tensor had no gradient this step (torch's grad None:
                                   // a supernet path not sampled), so the update and the norm leave it out
} pn_optim_tensor;

// Partial sums of squares per tensor (pn_op_sumsq_list: one CUDA block each, a fixed partition, so the norm is
// the same on every run). 32 left a 4.7M-element gradient to 32 blocks, 70 µs: the 338 tensors of the
// Qwen2.5-1.5B distillation student took 24 ms of a 306 ms step on an H100.
#define PN_OPTIM_PARTIALS 256

typedef struct pn_optim {
    pn_optim_cfg cfg;
    pn_device dev;
    int n;
    pn_optim_tensor *t;
    pn_arena arena;
    pn_tensor partials;            // F32 [n, PN_OPTIM_PARTIALS]
    float *host;
    int64_t updates;               // updates applied so far (AdamW's step count t; skipped steps do not count)
} pn_optim;

// State for every parameter of m that has a gradient buffer (masters copied from the parameters, moments
// zero). 0, or -1 with the error set (no trainable tensor, no memory).
int pn_optim_init(pn_optim *o, pn_model *m, const pn_optim_cfg *c);
void pn_optim_free(pn_optim *o);

// The learning rate of optimizer step `step` (0-based): Hugging Face's cosine schedule with warm-up and a
// floor (get_cosine_with_min_lr_schedule_with_warmup): lr step / warmup during warm-up, then
// lr (min + (1 - min) (1 + cos(pi progress)) / 2).
double pn_optim_lr(const pn_optim_cfg *c, int64_t step);

// The global L2 norm of the trainable gradients not skipped (one synchronization); NaN or Inf when any is
// non-finite. Sharded: over this rank's tensors (pn_optim_grad_sumsq: the square, to sum over ranks).
double pn_optim_grad_norm(pn_optim *o);
double pn_optim_grad_sumsq(pn_optim *o);
int pn_optim_owns(const pn_optim *o, int k);

// One AdamW update (of this rank's tensors, sharded) at schedule step `step` with the gradients as they are, clipped to cfg.clip given their
// norm gnorm (torch's clip_grad_norm_: scaled by min(1, clip / (gnorm + 1e-6))). Tensors marked skip are
// left as they are (parameter, moments, step count), as torch.optim.AdamW leaves a parameter without a
// gradient; each tensor's bias correction uses its own step count. Returns the lr used.
double pn_optim_update(pn_optim *o, int64_t step, double gnorm);

// The optimizer state as safetensors (<param>.exp_avg, <param>.exp_avg_sq and, with master copies,
// <param>.master; metadata "updates" and "steps", the per-tensor counts), written atomically. Load checks that every tensor is there with its
// shape, F32, and names the file and tensor otherwise. 0, or -1 with the error set.
// Sharded, rank 0 saves (the same file as one process writes: resumable at any world size) after every rank
// called pn_optim_gather (collective: the owners send their state to rank 0), and pn_optim_release after;
// every rank loads, keeping its own tensors' state.
int pn_optim_save(const pn_optim *o, const pn_model *m, const char *path);
int pn_optim_load(pn_optim *o, const pn_model *m, const char *path);
struct pn_dist;
void pn_optim_gather(pn_optim *o, struct pn_dist *d);
void pn_optim_release(pn_optim *o);

#endif
