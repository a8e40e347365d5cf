// pn_trainer: the training loop every PostNAS stage runs on (postnas-train).
//
// Stages: `pretrain` trains a model (model.init, e.g. a random one from postnas-mkckpt) on next-token CE;
// `distill` trains a student against the frozen teacher (model.teacher) with any weighted sum of KL, CE and
// hidden-state MSE. With train.trainable = blocks (stage 1) the student is the teacher's own model with
// its attention replaced, per model.student.layer_types, by candidate mixers (pn_model_add_candidates):
// norms, MLPs and embeddings exist once and the teacher is the all-attn choice over them; only the new
// mixers train. With train.trainable = all (stage 2) the student is a model of its own (every tensor
// trains) and the teacher a second, frozen one.
//
// A step: the whole global batch's windows are fetched first (CE's denominator counts its targets), then
// per micro-batch: teacher forward (features copied), student forward, losses (the head fused with KL/CE
// in row chunks, MSE terms, pn_loss), backward from d(final hidden) with the MSE gradients of inner layers
// added on the way down (the model's "layer_out_grad" tap), gradients accumulating; then the global
// gradient norm, and AdamW unless the loss or the norm is not finite (the step is skipped and logged).
#ifndef PN_TRAINER_H
#define PN_TRAINER_H

#include <stdint.h>

#include "../src/pn_cfg.h"

typedef struct pn_train_cfg {
    char out_dir[1024];
    int64_t seed;
    char device[8];
    int64_t threads;
    // model
    char teacher[1024], init[1024];
    char layer_types[4096];
    char student_init[1024]; // stage 2: the student's starting weights (e.g. stage 1's result)
    char candidates[4096];   // supernet: every layer's candidate mixers besides the teacher's attn
    char sample[16];         // supernet: uniform | k_full
    char sn_mode[16];        // supernet: global | local
    char zero[8];            // ZeRO-1 optimizer sharding across ranks: auto | on | off
    int64_t step_timeout;    // seconds a step may take under mpirun before the job is ended as hung (0: never)
    int64_t k_full;
    int sandwich;
    // data
    char data_train[16384];
    int mask_documents;
    // train
    char stage[16], trainable[16];
    int64_t steps, seq_len, global_batch, micro_batch, warmup_steps, max_skips;
    double lr, min_lr_ratio, beta1, beta2, eps, weight_decay, clip;
    int decay_conv, recompute;
    // loss
    double kl, ce, mse, temperature;
    char mse_layers[1024];
    int64_t chunk_rows;
    // checkpoints and logs
    int64_t ckpt_every, ckpt_keep, log_every;
} pn_train_cfg;

extern const pn_cfg_key pn_train_schema[];
extern const int pn_train_schema_n;

typedef struct pn_run_opts {
    int resume;      // continue from the newest complete checkpoint in out_dir/checkpoints
    int overwrite;   // start over in an out_dir that holds a run (else that is an error)
    int progress;    // -1: redraw when stderr is a terminal; 0 plain lines; 1 redraw
    int check;       // only check the config (keys and their consistency), run nothing
} pn_run_opts;

// Runs the configured training to the end (or until SIGINT/SIGTERM, after writing a checkpoint). 0 when
// done, 1 when stopped by a signal (a checkpoint holds the state), -1 with the error set.
int pn_train_run(const pn_train_cfg *cfg, const char *config_path, const pn_run_opts *opts);

#endif
