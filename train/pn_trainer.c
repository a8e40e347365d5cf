// pn_trainer: the training loop (pn_trainer.h): setup from the resolved config, the step, checkpoints and
// exact resume, metrics and the progress line.
#include "pn_trainer.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../data/pn_loader.h"
#include "../data/pn_shard.h"
#include "../data/pn_tokenizer.h"
#include "pn_dist.h"
#include "../kernels/cpu/threads.h"
#include "../src/pn_checkpoint.h"
#include "../src/pn_common.h"
#include "../src/pn_json.h"
#include "../src/pn_rng.h"
#include "../src/pn_model.h"
#include "../src/pn_safetensors.h"
#include "pn_loss.h"
#include "pn_optim.h"
#include "pn_supernet.h"

// ---------------------------------------------------------------------------------------------------
// the schema: every key of a training config, its default, range and meaning (the reference is generated
// from this table: postnas-train --print-schema)

#define S pn_train_cfg
#define RUN_CHOICE(path, f, def, choices, doc) {path, PN_CFG_CHOICE, def, 0, 0, choices, PN_CFG_FIELD(S, f), 1, doc}
const pn_cfg_key pn_train_schema[] = {
    PN_CFG_STR(S, "out_dir", out_dir, NULL, 1, "run directory: resolved config, metrics.jsonl, checkpoints/"),
    PN_CFG_I(S, "seed", seed, "0", 0, 9.2e18, 0, "seed of the data order and of every random init"),
    RUN_CHOICE("device", device, "auto", "auto|cpu|cuda", "where to train (auto: CUDA when a GPU is usable)"),
    PN_CFG_I(S, "threads", threads, "0", 0, 256, 1, "CPU threads (0: the machine's free cores, or OMP_NUM_THREADS)"),
    PN_CFG_STR(S, "model.teacher", teacher, "", 0,
               "distill: the frozen teacher, a Hugging Face folder (Qwen2.5, Qwen3, Llama, Jet-Nemotron)"),
    PN_CFG_STR(S, "model.init", init, "", 0,
               "pretrain: the model to train, a Hugging Face folder (e.g. a random one from postnas-mkckpt)"),
    PN_CFG_L(S, "model.student.layer_types", layer_types, "",
             "distill: the student's mixer per layer (attn, swa=W, gdn, deltanet, jet), one per teacher layer"),
    PN_CFG_STR(S, "model.student.init", student_init, "", 0,
               "distill, trainable all: the student's starting weights, a hybrid model folder with these layer "
               "types (e.g. stage 1's latest); default: the teacher's weights with fresh mixers"),
    PN_CFG_L(S, "model.supernet.candidates", candidates, "",
             "supernet: the mixers every layer holds besides the teacher's attn (swa=W, gdn, deltanet, jet, ...)"),
    PN_CFG_C(S, "supernet.sample", sample, "uniform", "uniform|k_full",
               "supernet: a subnet per micro-batch, each layer uniform over attn and the candidates, or exactly "
               "supernet.k_full attn layers (the others uniform over the candidates)"),
    PN_CFG_I(S, "supernet.k_full", k_full, "1", 0, 1e6, 0, "supernet, sample k_full: attn layers per subnet"),
    PN_CFG_C(S, "supernet.mode", sn_mode, "global", "global|local",
             "supernet: global = drawn subnets end to end (loss.*); local = every layer's linear candidates take "
             "the teacher's input to that layer and learn its output (loss.mse), all from one teacher pass"),
    PN_CFG_B(S, "supernet.sandwich", sandwich, "true",
             "supernet: every micro-batch also trains the all-linear subnet (the sandwich rule; gradients averaged)"),
    PN_CFG_L(S, "data.train", data_train, NULL, "token shards (postnas-data tokenize): paths or globs, in order"),
    PN_CFG_B(S, "data.mask_documents", mask_documents, "true",
             "packed documents stay apart: attention and state restart after every eos, whose target is not counted"),
    PN_CFG_C(S, "train.stage", stage, "distill", "pretrain|distill|supernet",
             "pretrain (CE on a corpus), distill (a student of model.student.layer_types) or supernet (every "
             "layer's model.supernet.candidates, sampled subnets distilled from the teacher)"),
    PN_CFG_C(S, "train.trainable", trainable, "blocks", "blocks|all",
             "distill: blocks = only the student's new mixers (stage 1), all = every tensor (stage 2)"),
    PN_CFG_I(S, "train.steps", steps, NULL, 1, 1e12, 0, "optimizer steps"),
    PN_CFG_I(S, "train.seq_len", seq_len, NULL, 1, 1 << 20, 0, "tokens per sequence (window)"),
    PN_CFG_I(S, "train.global_batch", global_batch, NULL, 1, 1 << 24, 0, "sequences per optimizer step"),
    PN_CFG_I(S, "train.micro_batch", micro_batch, NULL, 1, 1 << 20, 0,
             "sequences per forward/backward per process (gradients accumulate up to the global batch)"),
    PN_CFG_F(S, "train.lr", lr, NULL, 0, 10, "peak learning rate"),
    PN_CFG_F(S, "train.min_lr_ratio", min_lr_ratio, "0.1", 0, 1, "the cosine decays to lr x this"),
    PN_CFG_I(S, "train.warmup_steps", warmup_steps, "0", 0, 1e12, 0, "linear warm-up steps (lr from 0)"),
    PN_CFG_F(S, "train.beta1", beta1, "0.9", 0, 0.999999, "AdamW beta1"),
    PN_CFG_F(S, "train.beta2", beta2, "0.95", 0, 0.999999, "AdamW beta2"),
    PN_CFG_F(S, "train.eps", eps, "1e-8", 0, 1, "AdamW epsilon"),
    PN_CFG_F(S, "train.weight_decay", weight_decay, "0.1", 0, 10,
             "decoupled weight decay (not on norms, biases, A_log, dt_bias; conv kernels: train.decay_conv)"),
    PN_CFG_B(S, "train.decay_conv", decay_conv, "false", "weight decay on depthwise convolution kernels too"),
    PN_CFG_F(S, "train.clip", clip, "1.0", 0, 1e9, "global gradient-norm clipping (0: none)"),
    PN_CFG_I(S, "train.max_skips", max_skips, "5", 1, 1e6, 0,
             "stop after this many consecutive steps with a non-finite loss or gradient norm"),
    RUN_CHOICE("train.zero", zero, "auto", "auto|on|off",
               "ZeRO-1 under mpirun: each rank keeps the AdamW state of its share of the tensors (gradients reduced "
               "to their owner, updated weights broadcast); auto = on for distill with trainable all (stage 2)"),
    PN_CFG_I(S, "train.step_timeout", step_timeout, "1800", 0, 1e9, 1,
             "under mpirun: seconds a step (checkpoint included) may take before the job is ended as hung, naming "
             "the rank (0: never)"),
    PN_CFG_B(S, "train.recompute", recompute, "false",
             "keep only each layer's input and recompute its activations in the backward (less memory)"),
    PN_CFG_F(S, "loss.kl", kl, "0", 0, 1e6, "weight of KL(teacher || student) on the logits, per token"),
    PN_CFG_F(S, "loss.ce", ce, "0", 0, 1e6, "weight of next-token cross-entropy (not at a document's end)"),
    PN_CFG_F(S, "loss.mse", mse, "0", 0, 1e6, "weight of the hidden-state MSE (mean over loss.mse_layers)"),
    PN_CFG_F(S, "loss.temperature", temperature, "1.0", 1e-3, 1e3, "KL temperature (with Hinton's tau^2)"),
    PN_CFG_STR(S, "loss.mse_layers", mse_layers, "final", 0,
               "final (the LM head's input), all (every layer's output) or layer indices \"3,7,11\""),
    PN_CFG_I(S, "loss.chunk_rows", chunk_rows, "1024", 1, 1 << 24, 0,
             "rows of logits per chunk of the fused LM-head loss (memory: 2 x rows x vocab)"),
    PN_CFG_I(S, "checkpoint.every", ckpt_every, "0", 0, 1e12, 1, "checkpoint every N steps (0: only at the end)"),
    PN_CFG_I(S, "checkpoint.keep", ckpt_keep, "2", 1, 1e6, 1, "checkpoints kept (the newest)"),
    PN_CFG_I(S, "log.every", log_every, "1", 1, 1e12, 1, "a metrics line every N steps (and at the last)"),
};
const int pn_train_schema_n = (int)(sizeof pn_train_schema / sizeof pn_train_schema[0]);
#undef S

// ---------------------------------------------------------------------------------------------------
// small helpers

static volatile sig_atomic_t g_stop; // the signal that asked to stop (0: none)
// The first SIGINT/SIGTERM asks the loop to checkpoint after the current step; a second one stops at once.
static void on_signal(int sig) {
    if (g_stop) _exit(128 + sig);
    g_stop = sig;
}

static int mkdir_p(const char *dir) {
    char *p = pn_strdup(dir);
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            mkdir(p, 0777);
            *s = '/';
        }
    const int rc = mkdir(p, 0777);
    free(p);
    struct stat sb;
    if (rc && (errno != EEXIST || stat(dir, &sb) || !S_ISDIR(sb.st_mode)))
        return pn_errorf("%s: cannot create the folder: %s", dir, strerror(errno == EEXIST ? ENOTDIR : errno));
    return 0;
}

static int rm_rf(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char *p = pn_path_join(dir, e->d_name);
        struct stat sb;
        if (!lstat(p, &sb) && S_ISDIR(sb.st_mode)) rm_rf(p);
        else unlink(p);
        free(p);
    }
    closedir(d);
    return rmdir(dir);
}

static int fsync_dir(const char *dir) {
    const int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return -1;
    const int rc = fsync(fd);
    close(fd);
    return rc;
}

// The config's list of shard paths with globs expanded (sorted per pattern, in the order given).
static int expand_data(const char *list, char ***out, int *n_out) {
    char **paths = NULL;
    int n = 0;
    const int items = pn_cfg_list_count(list);
    for (int i = 0; i < items; i++) {
        char pat[4096];
        pn_cfg_list_item(list, i, pat, sizeof pat);
        if (!strpbrk(pat, "*?[")) {
            paths = pn_realloc(paths, sizeof *paths * (size_t)(n + 1));
            paths[n++] = pn_strdup(pat);
            continue;
        }
        glob_t g;
        const int rc = glob(pat, 0, NULL, &g);
        if (rc == GLOB_NOMATCH || (rc == 0 && g.gl_pathc == 0)) {
            for (int k = 0; k < n; k++) free(paths[k]);
            free(paths);
            if (rc == 0) globfree(&g);
            return pn_errorf("data.train: '%s' matches no file", pat);
        }
        if (rc) {
            for (int k = 0; k < n; k++) free(paths[k]);
            free(paths);
            return pn_errorf("data.train: cannot expand '%s'", pat);
        }
        for (size_t k = 0; k < g.gl_pathc; k++) {
            paths = pn_realloc(paths, sizeof *paths * (size_t)(n + 1));
            paths[n++] = pn_strdup(g.gl_pathv[k]);
        }
        globfree(&g);
    }
    if (!n) return pn_errorf("data.train: no shard given");
    *out = paths, *n_out = n;
    return 0;
}

// ---------------------------------------------------------------------------------------------------
// the trainer

enum { MODE_PRETRAIN, MODE_SHARED, MODE_SEPARATE, MODE_SUPERNET };

typedef struct trainer {
    const pn_train_cfg *cfg;
    int mode;
    pn_device dev;
    pn_model model;   // the student (in MODE_SHARED also the teacher: the all-attn choice)
    pn_model teacher; // MODE_SEPARATE only
    int has_teacher;
    char **student_types; // per layer (MODE_SHARED / SEPARATE; MODE_SUPERNET: the subnet running now)
    int n_layers;
    // MODE_SUPERNET: the candidates of every layer (choice 0 is the teacher's attn, choice c + 1 cands[c]),
    // the linear ones among them, the choices a step used, and each optimizer tensor's choice
    char **cands;
    int n_cands, n_lin, *lin;
    uint8_t *used;       // [n_layers][n_cands + 1]
    int *opt_choice;     // per optimizer tensor: its (layer, choice) index into used
    char *subnets;       // the step's subnets, as a JSON array for metrics.jsonl
    int64_t C, V, T, B, N; // hidden, vocabulary, seq_len, micro_batch, rows per micro-batch (B T)
    int accum;              // micro-batches per optimizer step on this rank
    pn_dist dist;           // the data-parallel world (a world of one without a launcher)
    int zero;               // ZeRO-1: the optimizer state is sharded over the ranks
    // MSE terms: layer index per term (-1: the final hidden state)
    int n_mse;
    int *mse_layer;
    int *mse_slot_of_layer; // per layer: the term of its output, or -1
    // data-parallel gradient buckets: per optimizer tensor its layer (-1: embeddings, final norm, head:
    // complete only when the whole backward is) and whether its sum over the ranks has started this step
    int *bucket;
    uint8_t *reducing;
    int reduce_armed;       // the step's last backward runs: start each layer's sums as it finishes
    // device buffers
    pn_arena bufs;
    pn_tensor th;         // teacher's final hidden [N, C]
    pn_tensor *tl;        // teacher's layer outputs per MSE term (NULL entry for the final one)
    pn_tensor dh;         // d(final hidden) [N, C]
    pn_arena local_bufs;  // supernet.mode local: the teacher's embeddings and layer outputs
    pn_tensor *tout;      // [n_layers + 1] x [N, C]: tout[0] the embeddings, tout[l + 1] layer l's output
    int local;
    pn_loss loss;
    pn_optim opt;
    pn_loader *loader;
    // the step's batches, fetched up front
    int32_t *ids, *targets, *cu;
    int *n_seqs;
    int64_t n_ce;         // counted targets of the step
    // backward tap state
    int64_t row0;
    float mse_grad;
    // progress
    int64_t step, tokens;
    uint64_t cfg_hash;
    FILE *metrics;
    double t_start, t_last;
    int64_t tokens_at_start;
    int redraw;
} trainer;

// The model's LM head and its gradient (tied: the embedding's).
static pn_tensor *head_grad(pn_model *m) {
    pn_tensor *g = m->cfg.tie_embeddings ? &m->g_embed : &m->g_lm_head;
    return g->data ? g : NULL;
}

// The mixer type name of a layer spec ("swa=1152" -> "swa").
static void spec_name(const char *spec, char *out, size_t cap) {
    snprintf(out, cap, "%s", spec);
    char *eq = strchr(out, '=');
    if (eq) *eq = 0;
}

// MODE_SHARED / SUPERNET: the model runs the teacher (slot 0 everywhere) or the student.
static void set_choice(trainer *tr, int student) {
    if (tr->mode != MODE_SHARED && tr->mode != MODE_SUPERNET) return;
    for (int l = 0; l < tr->n_layers; l++) {
        char name[64];
        spec_name(student ? tr->student_types[l] : tr->model.layers[l].slot[0].bt->name, name, sizeof name);
        if (pn_model_set_mixer(&tr->model, l, name)) pn_panic("switching layer %d: %s", l, pn_last_error());
    }
}

static void reduce_start(trainer *tr, int k);

// The backward tap: adds the gradient of an inner layer's MSE term to dL/d(output of layer l); in the step's
// last backward, starts summing a finished layer's gradients over the ranks (its bucket).
static int backward_tap(void *ctx, const char *name, int layer, pn_tensor *hidden) {
    trainer *tr = ctx;
    if (tr->reduce_armed && !strcmp(name, "layer_grads_done")) {
        for (int k = 0; k < tr->opt.n; k++)
            if (tr->bucket[k] == layer) reduce_start(tr, k);
        return 0;
    }
    if (strcmp(name, "layer_out_grad") || layer < 0 || tr->mse_slot_of_layer[layer] < 0) return 0;
    const int s = tr->mse_slot_of_layer[layer];
    pn_tensor x = pn_model_train_layer_out(&tr->model, layer);
    pn_loss_mse(&tr->loss, s, tr->row0, &x, &tr->tl[s], hidden, tr->mse_grad, 1);
    return 0;
}

static int parse_mse_layers(trainer *tr) {
    const char *s = tr->cfg->mse_layers;
    tr->mse_slot_of_layer = pn_malloc(sizeof(int) * (size_t)tr->n_layers);
    for (int l = 0; l < tr->n_layers; l++) tr->mse_slot_of_layer[l] = -1;
    if (tr->cfg->mse <= 0) return 0;
    tr->mse_layer = pn_malloc(sizeof(int) * (size_t)(tr->n_layers + 1));
    if (!strcmp(s, "final")) {
        tr->mse_layer[tr->n_mse++] = -1;
        return 0;
    }
    if (!strcmp(s, "all")) {
        for (int l = 0; l < tr->n_layers; l++) tr->mse_layer[tr->n_mse++] = l, tr->mse_slot_of_layer[l] = l;
        return 0;
    }
    char *dup = pn_strdup(s), *save = NULL;
    int rc = 0;
    for (char *tok = strtok_r(dup, ", ", &save); tok && !rc; tok = strtok_r(NULL, ", ", &save)) {
        int l;
        if (pn_parse_int("loss.mse_layers", tok, 0, tr->n_layers - 1, &l))
            rc = pn_error_prefix("config: loss.mse_layers (final, all, or layer indices below %d)", tr->n_layers);
        else if (tr->mse_slot_of_layer[l] >= 0)
            rc = pn_errorf("config: loss.mse_layers names layer %d twice", l);
        else
            tr->mse_slot_of_layer[l] = tr->n_mse, tr->mse_layer[tr->n_mse++] = l;
    }
    free(dup);
    if (!rc && !tr->n_mse) rc = pn_errorf("config: loss.mse_layers is empty");
    return rc;
}

// The config's consistency beyond single keys.
static int check_cfg(const pn_train_cfg *c) {
    const int pretrain = !strcmp(c->stage, "pretrain");
    if (pretrain) {
        if (!c->init[0]) return pn_errorf("config: train.stage pretrain needs model.init (the model to train)");
        if (c->teacher[0]) return pn_errorf("config: train.stage pretrain has no teacher (model.teacher is set)");
        if (c->kl > 0 || c->mse > 0) return pn_errorf("config: train.stage pretrain trains on CE only (loss.kl, loss.mse must be 0)");
        if (c->ce <= 0) return pn_errorf("config: train.stage pretrain needs loss.ce > 0");
    } else {
        if (!c->teacher[0]) return pn_errorf("config: train.stage %s needs model.teacher", c->stage);
        if (c->init[0]) return pn_errorf("config: model.init is for train.stage pretrain (distill starts from model.teacher)");
        if (c->kl <= 0 && c->ce <= 0 && c->mse <= 0) return pn_errorf("config: every loss weight is 0 (loss.kl, loss.ce, loss.mse)");
    }
    const int supernet = !strcmp(c->stage, "supernet");
    if (supernet && !pn_cfg_list_count(c->candidates))
        return pn_errorf("config: train.stage supernet needs model.supernet.candidates (e.g. [swa=64, gdn])");
    if (supernet && strcmp(c->trainable, "blocks"))
        return pn_errorf("config: train.stage supernet trains the candidate mixers only (train.trainable: blocks)");
    if (supernet && !strcmp(c->sn_mode, "local") && (c->mse <= 0 || c->kl > 0 || c->ce > 0))
        return pn_errorf("config: supernet.mode local trains every layer on the teacher's layer outputs: loss.mse > 0, "
                         "loss.kl and loss.ce 0");
    if (supernet && !strcmp(c->sn_mode, "local") && (strcmp(c->sample, "uniform") || c->k_full != 1 || !c->sandwich))
        pn_warn("config: supernet.mode local trains every candidate of every layer from one teacher pass: "
                "supernet.sample, supernet.k_full and supernet.sandwich (set here) do not apply");
    if (c->student_init[0] && (strcmp(c->stage, "distill") || strcmp(c->trainable, "all")))
        return pn_errorf("config: model.student.init is for train.stage distill with train.trainable all (stage 2)");
    if (!supernet && pn_cfg_list_count(c->candidates))
        return pn_errorf("config: model.supernet.candidates is for train.stage supernet (this is %s)", c->stage);
    if (c->global_batch % c->micro_batch)
        return pn_errorf("config: train.global_batch %lld is not a multiple of train.micro_batch %lld",
                         (long long)c->global_batch, (long long)c->micro_batch);
    if (c->warmup_steps > c->steps)
        return pn_errorf("config: train.warmup_steps %lld exceeds train.steps %lld", (long long)c->warmup_steps,
                         (long long)c->steps);
    if (c->micro_batch * c->seq_len > INT32_MAX / 2)
        return pn_errorf("config: train.micro_batch x train.seq_len = %lld tokens is too many for one forward",
                         (long long)(c->micro_batch * c->seq_len));
    return 0;
}

static int pick_device(const pn_train_cfg *c, pn_device *dev) {
    if (!strcmp(c->device, "cpu")) *dev = PN_CPU;
    else if (!strcmp(c->device, "cuda")) {
        if (!pn_cuda_available()) return pn_errorf("config: device cuda, but %s", pn_backend_get(PN_CUDA) ? "no GPU is usable" : "this build has no CUDA backend");
        *dev = PN_CUDA;
    } else *dev = pn_cuda_available() ? PN_CUDA : PN_CPU;
    return 0;
}

// The student's types per layer from model.student.layer_types.
static int student_types(trainer *tr) {
    const char *list = tr->cfg->layer_types;
    const int n = pn_cfg_list_count(list);
    if (n != tr->n_layers)
        return pn_errorf("config: model.student.layer_types has %d entries, the teacher %s has %d layers", n,
                         tr->cfg->teacher, tr->n_layers);
    tr->student_types = pn_calloc((size_t)n, sizeof(char *));
    for (int l = 0; l < n; l++) {
        char buf[256];
        pn_cfg_list_item(list, l, buf, sizeof buf);
        tr->student_types[l] = pn_strdup(buf);
    }
    return 0;
}

// MODE_SUPERNET: model.supernet.candidates, added to every layer; the linear ones (neither attn nor swa)
// make the sandwich rule's all-linear subnet.
static int supernet_candidates(trainer *tr, pn_model *m) {
    const pn_train_cfg *c = tr->cfg;
    pn_supernet_info info;
    if (pn_supernet_parse(c->candidates, "config: model.supernet.candidates", &info)) return -1;
    tr->n_cands = info.n_cands;
    tr->cands = pn_calloc((size_t)tr->n_cands, sizeof(char *));
    tr->lin = pn_calloc((size_t)tr->n_cands, sizeof(int));
    size_t len = 1;
    for (int i = 0; i < tr->n_cands; i++) {
        tr->cands[i] = pn_strdup(info.cands[i]);
        if (info.linear[i]) tr->lin[tr->n_lin++] = i;
        len += strlen(info.cands[i]) + 1;
    }
    if (c->sandwich && !tr->n_lin)
        return pn_errorf("config: supernet.sandwich needs a linear candidate in model.supernet.candidates (gdn, jet, ...)");
    if (!strcmp(c->sample, "k_full") && c->k_full > tr->n_layers)
        return pn_errorf("config: supernet.k_full %lld is more than the teacher's %d layers", (long long)c->k_full,
                         tr->n_layers);
    char *all = pn_malloc(len);
    all[0] = 0;
    for (int i = 0; i < tr->n_cands; i++) strcat(strcat(all, i ? "," : ""), tr->cands[i]);
    const char **types = pn_calloc((size_t)tr->n_layers, sizeof(char *));
    for (int l = 0; l < tr->n_layers; l++) types[l] = all;
    const int rc = pn_model_add_candidates(m, types, 0.02, (uint64_t)c->seed);
    free(types), free(all);
    if (rc) return pn_error_prefix("config: model.supernet.candidates");
    tr->student_types = pn_calloc((size_t)tr->n_layers, sizeof(char *)); // the teacher until a subnet is drawn
    for (int l = 0; l < tr->n_layers; l++) tr->student_types[l] = pn_strdup("attn");
    tr->used = pn_calloc((size_t)tr->n_layers * (size_t)(tr->n_cands + 1), 1);
    return 0;
}

// The choice (0: attn, c + 1: cands[c]) of one layer of subnet draw `draw`, counter-based on the run's seed
// so a resumed run draws the same subnets: every layer uniform over its choices; sample k_full: exactly k
// attn layers (a partial Fisher-Yates shuffle), the others uniform over the candidates; all_linear: each
// layer uniform over the linear candidates.
static void sample_subnet(const trainer *tr, uint64_t draw, int all_linear, int *choice) {
    const int L = tr->n_layers;
    const uint64_t base = draw * (uint64_t)(2 * L + 1), seed = (uint64_t)tr->cfg->seed;
#define U(i) pn_rng_uniform(seed, 0x5e9e7, base + (uint64_t)(i))
    const int k = !all_linear && !strcmp(tr->cfg->sample, "k_full") ? (int)tr->cfg->k_full : -1;
    int *order = pn_malloc(sizeof(int) * (size_t)L);
    for (int l = 0; l < L; l++) order[l] = l;
    for (int i = 0; i < k; i++) { // order[0 .. k - 1]: the attn layers
        const int j = i + (int)(U(i) * (L - i));
        const int t = order[i];
        order[i] = order[j], order[j] = t;
    }
    for (int l = 0; l < L; l++) choice[l] = -1;
    for (int i = 0; i < k; i++) choice[order[i]] = 0;
    for (int l = 0; l < L; l++) {
        if (choice[l] == 0) continue;
        const double u = U(L + l);
        if (all_linear) choice[l] = 1 + tr->lin[(int)(u * tr->n_lin)];
        else if (k >= 0) choice[l] = 1 + (int)(u * tr->n_cands);
        else choice[l] = (int)(u * (tr->n_cands + 1));
    }
#undef U
    free(order);
}

// Runs subnet `choice` from now on (record 0), or (record 1) notes its choices as used by this step and
// appends it to tr->subnets without running it.
static void use_subnet(trainer *tr, const int *choice, int record) {
    if (!record) {
        for (int l = 0; l < tr->n_layers; l++) {
            free(tr->student_types[l]);
            tr->student_types[l] = pn_strdup(choice[l] ? tr->cands[choice[l] - 1] : "attn");
        }
        set_choice(tr, 1);
        return;
    }
    size_t len = tr->subnets ? strlen(tr->subnets) : 0, need = len + 4;
    for (int l = 0; l < tr->n_layers; l++) {
        tr->used[l * (tr->n_cands + 1) + choice[l]] = 1;
        need += strlen(choice[l] ? tr->cands[choice[l] - 1] : "attn") + 1;
    }
    tr->subnets = pn_realloc(tr->subnets, need);
    if (!len) tr->subnets[len++] = '[';
    else tr->subnets[len - 1] = ','; // replaces the closing bracket
    tr->subnets[len++] = '"';
    for (int l = 0; l < tr->n_layers; l++) {
        const char *spec = choice[l] ? tr->cands[choice[l] - 1] : "attn";
        if (l) tr->subnets[len++] = ',';
        memcpy(tr->subnets + len, spec, strlen(spec));
        len += strlen(spec);
    }
    tr->subnets[len++] = '"', tr->subnets[len++] = ']', tr->subnets[len] = 0;
}

// The candidate lists for pn_model_add_candidates: layer l gets its student type when it is not the
// teacher's own ("attn" stays slot 0).
static int add_student_candidates(trainer *tr, pn_model *m) {
    const char **types = pn_calloc((size_t)tr->n_layers, sizeof(char *));
    for (int l = 0; l < tr->n_layers; l++) types[l] = strcmp(tr->student_types[l], "attn") ? tr->student_types[l] : "";
    const int rc = pn_model_add_candidates(m, types, 0.02, (uint64_t)tr->cfg->seed);
    free(types);
    return rc ? pn_error_prefix("config: model.student.layer_types") : 0;
}

// Which tensors train: pretrain and MODE_SEPARATE all of the active model; MODE_SHARED the candidate
// mixers the student runs (model.layers.{l}.candidates.{type}.*); MODE_SUPERNET every candidate mixer.
static uint8_t *trainable_mask(trainer *tr) {
    pn_model *m = &tr->model;
    uint8_t *mask = pn_calloc((size_t)m->nparams, 1);
    for (int i = 0; i < m->nparams; i++) {
        const char *name = m->param_list[i].name;
        if (tr->mode != MODE_SHARED && tr->mode != MODE_SUPERNET) {
            mask[i] = 1;
            continue;
        }
        int l;
        char type[64];
        if (sscanf(name, "model.layers.%d.candidates.%63[^.]", &l, type) == 2 && l >= 0 && l < tr->n_layers) {
            char want[64];
            spec_name(tr->student_types[l], want, sizeof want);
            // MODE_SUPERNET: every candidate trains (in the steps that draw it)
            mask[i] = tr->mode == MODE_SUPERNET || !strcmp(type, want);
        }
    }
    return mask;
}

// A checkpoint's tensors into the student (MODE_SHARED: the replaced layers' mixers, saved under
// self_attn names, into their candidate slots).
static int load_student_blocks(trainer *tr, const char *dir) {
    pn_checkpoint ck;
    if (pn_ckpt_open(&ck, dir)) return -1;
    pn_model *m = &tr->model;
    int rc = 0;
    for (int i = 0; i < m->nparams && !rc; i++) {
        const pn_param *p = &m->param_list[i];
        if (!p->grad || !p->grad->data) continue; // frozen: the teacher's own
        int l, off = 0;
        char type[64];
        if (sscanf(p->name, "model.layers.%d.candidates.%63[^.].%n", &l, type, &off) != 2 || !off) continue;
        char name[160];
        snprintf(name, sizeof name, "model.layers.%d.self_attn.%s", l, p->name + off);
        const pn_safetensors *st;
        const pn_st_entry *e = pn_ckpt_find(&ck, name, &st);
        if (!e) rc = pn_errorf("%s: tensor '%s' is missing", dir, name);
        else if (pn_st_numel(e) != pn_numel(p->dst))
            rc = pn_errorf("%s: tensor '%s' has %lld elements, the student's has %lld", dir, name,
                           (long long)pn_st_numel(e), (long long)pn_numel(p->dst));
        else {
            float *h = pn_malloc(sizeof(float) * (size_t)pn_numel(p->dst));
            rc = pn_st_to_f32(st, e, h);
            if (!rc) pn_op_from_host_f32(p->dst, h);
            free(h);
        }
    }
    pn_ckpt_close(&ck);
    return rc;
}

// Teacher and student must agree on everything the loss compares and everything MODE_SEPARATE shares.
static int check_pair(const pn_model *t, const pn_model *s, const char *tdir, const char *sdir) {
    if (t->cfg.vocab != s->cfg.vocab || t->cfg.hidden != s->cfg.hidden || t->cfg.n_layers != s->cfg.n_layers)
        return pn_errorf("teacher %s (vocab %d, hidden %d, %d layers) and student %s (vocab %d, hidden %d, %d layers) "
                         "do not match", tdir, t->cfg.vocab, t->cfg.hidden, t->cfg.n_layers, sdir, s->cfg.vocab,
                         s->cfg.hidden, s->cfg.n_layers);
    // every tensor both have outside the token mixers (which differ by design): embeddings, norms, MLPs, head
    for (int i = 0; i < s->nparams; i++)
        for (int j = 0; j < t->nparams; j++)
            if (!strstr(s->param_list[i].name, ".self_attn.") && !strcmp(s->param_list[i].name, t->param_list[j].name)) {
                const pn_param *a = &s->param_list[i], *b = &t->param_list[j];
                if (a->ndim != b->ndim || memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim)) {
                    char x[64], y[64];
                    pn_shape_fmt(b->ndim, b->shape, x, sizeof x), pn_shape_fmt(a->ndim, a->shape, y, sizeof y);
                    return pn_errorf("tensor '%s' is %s in the teacher %s and %s in the student %s", a->name, x, tdir, y,
                                     sdir);
                }
            }
    return 0;
}

// The data's tokenizer and vocabulary against the model's, before step 0.
static int open_data(trainer *tr, const char *model_dir) {
    char **paths = NULL;
    int n = 0;
    if (expand_data(tr->cfg->data_train, &paths, &n)) return -1;
    // The model folder's tokenizer, when it has one, must be the one the shards were made with.
    pn_tokenizer *tok = NULL;
    int rc = 0;
    const char *tok_files[] = {"tokenizer.json", "vocab.json"};
    for (int i = 0; i < 2 && !tok && !rc; i++) {
        char *p = pn_path_join(model_dir, tok_files[i]);
        struct stat sb;
        if (!stat(p, &sb)) {
            tok = pn_tokenizer_load(model_dir);
            if (!tok) rc = pn_error_prefix("the tokenizer of %s", model_dir);
        }
        free(p);
    }
    for (int i = 0; i < n && !rc; i++) {
        pn_shard *sh = pn_shard_open(paths[i], NULL, 0);
        if (!sh) {
            rc = -1;
            break;
        }
        const pn_shard_meta *mt = pn_shard_get_meta(sh);
        if (mt->vocab_size > tr->V)
            rc = pn_errorf("%s: tokens from a vocabulary of %lld, the model %s embeds %lld", paths[i],
                           (long long)mt->vocab_size, model_dir, (long long)tr->V);
        else if (tok && strcmp(mt->tokenizer, pn_tokenizer_identity(tok)))
            rc = pn_errorf("%s: tokenized with \"%s\", the model %s has the tokenizer \"%s\"", paths[i], mt->tokenizer,
                           model_dir, pn_tokenizer_identity(tok));
        pn_shard_close(sh);
    }
    if (!rc) {
        // A rank reads its slice of the step's global batch at once (batch_local = global_batch / world) and
        // cuts it into micro-batches: a step sees the same windows whatever the micro-batch size and world.
        const pn_loader_config lc = {.paths = (const char *const *)paths, .n_paths = n, .seq_len = (int)tr->T,
                                     .batch_local = (int)(tr->cfg->global_batch / tr->dist.world),
                                     .rank = tr->dist.rank, .world = tr->dist.world,
                                     .seed = (uint64_t)tr->cfg->seed, .doc_boundaries = 1};
        tr->loader = pn_loader_open(&lc);
        if (!tr->loader) rc = pn_error_prefix("data.train");
    }
    if (tok) pn_tokenizer_free(tok);
    for (int i = 0; i < n; i++) free(paths[i]);
    free(paths);
    return rc;
}

// ---------------------------------------------------------------------------------------------------
// setup

static int setup_models(trainer *tr, const char *resume_dir) {
    const pn_train_cfg *c = tr->cfg;
    pn_model *m = &tr->model;
    if (tr->mode == MODE_PRETRAIN) {
        if (pn_model_load(m, resume_dir ? resume_dir : c->init, tr->dev)) return -1;
        tr->n_layers = m->cfg.n_layers;
        return 0;
    }
    if (pn_model_load(m, c->teacher, tr->dev)) return pn_error_prefix("model.teacher");
    tr->n_layers = m->cfg.n_layers;
    for (int l = 0; l < tr->n_layers; l++)
        if (strcmp(m->layers[l].slot[0].bt->name, "attn"))
            return pn_errorf("model.teacher %s: layer %d is %s; a teacher has full attention in every layer", c->teacher,
                             l, m->layers[l].slot[0].bt->name);
    if (tr->mode == MODE_SUPERNET) {
        if (supernet_candidates(tr, m)) return -1;
        tr->has_teacher = 1;
        return 0;
    }
    if (student_types(tr)) return -1;
    if (tr->mode == MODE_SHARED) {
        if (add_student_candidates(tr, m)) return -1;
        set_choice(tr, 1);
        tr->has_teacher = 1;
        return 0;
    }
    // MODE_SEPARATE: the loaded model becomes the frozen teacher; the student is the teacher with the
    // student's mixers (written once to out_dir/student-init, the run's starting point) or a checkpoint.
    tr->teacher = *m;
    memset(m, 0, sizeof *m);
    tr->has_teacher = 1;
    const char *from = resume_dir ? resume_dir : c->student_init[0] ? c->student_init : NULL;
    char *init_dir = pn_path_join(c->out_dir, "student-init");
    if (!from && tr->dist.rank != 0) { // rank 0 writes it (below); the others wait for it and load it
        pn_dist_barrier(&tr->dist);
        from = init_dir;
    } else if (!from) {
        pn_model tmp;
        struct stat sb;
        if (stat(init_dir, &sb) == 0) rm_rf(init_dir); // a leftover of a run that did not reach step 1
        if (pn_model_load(&tmp, c->teacher, tr->dev)) {
            free(init_dir);
            return -1;
        }
        int rc = add_student_candidates(tr, &tmp);
        for (int l = 0; l < tr->n_layers && !rc; l++) {
            char name[64];
            spec_name(tr->student_types[l], name, sizeof name);
            rc = pn_model_set_mixer(&tmp, l, name);
        }
        if (!rc) rc = pn_model_export(&tmp, init_dir);
        pn_model_free(&tmp);
        if (rc) {
            free(init_dir);
            return pn_error_prefix("writing the initial student");
        }
        from = init_dir;
        pn_dist_barrier(&tr->dist);
    }
    int rc = pn_model_load(m, from, tr->dev);
    if (!rc) rc = check_pair(&tr->teacher, m, c->teacher, from);
    for (int l = 0; !rc && l < tr->n_layers; l++) { // a given student must be the configured hybrid
        char want[64];
        spec_name(tr->student_types[l], want, sizeof want);
        if (strcmp(pn_model_mixer(m, l), want))
            rc = pn_errorf("%s: layer %d is %s, model.student.layer_types says %s", from, l, pn_model_mixer(m, l), want);
    }
    free(init_dir);
    return rc;
}

static int setup(trainer *tr, const char *resume_dir) {
    const pn_train_cfg *c = tr->cfg;
    tr->mode = !strcmp(c->stage, "pretrain")   ? MODE_PRETRAIN
               : !strcmp(c->stage, "supernet") ? MODE_SUPERNET
               : !strcmp(c->trainable, "all")  ? MODE_SEPARATE
                                               : MODE_SHARED;
    if (pick_device(c, &tr->dev)) return -1;
    if (pn_dist_bind(&tr->dist, tr->dev)) return -1; // this rank's GPU and its NCCL communicator, before any use
    const int shared = tr->mode == MODE_SHARED || tr->mode == MODE_SUPERNET; // resumes its tensors below
    if (setup_models(tr, shared ? NULL : resume_dir)) return -1;
    pn_model *m = &tr->model;
    tr->C = m->cfg.hidden, tr->V = m->cfg.vocab, tr->T = c->seq_len, tr->B = c->micro_batch;
    tr->N = tr->B * tr->T;
    tr->accum = (int)(c->global_batch / tr->dist.world / c->micro_batch);
    if (parse_mse_layers(tr)) return -1;
    // memory: gradients, the training plan (packed micro-batches: one row of B T tokens; after the gradients:
    // frozen MLPs keep less), loss, optimizer
    uint8_t *mask = trainable_mask(tr);
    int rc = pn_model_grads_init(m, mask);
    free(mask);
    if (rc) return -1;
    uint8_t *rec = NULL;
    if (c->recompute) {
        rec = pn_malloc((size_t)tr->n_layers);
        memset(rec, 1, (size_t)tr->n_layers);
    }
    const pn_train_opts o = {.recompute = rec, .no_logits = 1};
    rc = pn_model_train_plan(m, 1, (int)tr->N, &o);
    if (!rc && tr->mode == MODE_SEPARATE) {
        // The teacher never runs a backward: every layer "recomputes", i.e. keeps only its input (which the
        // MSE terms read as the previous layer's output) and shares one set of activation buffers.
        uint8_t *all = pn_malloc((size_t)tr->n_layers);
        memset(all, 1, (size_t)tr->n_layers);
        const pn_train_opts ot = {.recompute = all, .no_logits = 1};
        rc = pn_model_train_plan(&tr->teacher, 1, (int)tr->N, &ot);
        free(all);
    }
    free(rec);
    if (rc) return pn_error_prefix("training memory for train.micro_batch %lld x train.seq_len %lld (a smaller "
                                   "train.micro_batch, or train.recompute: true, needs less)",
                                   (long long)c->micro_batch, (long long)c->seq_len);
    if (resume_dir && tr->mode == MODE_SHARED && load_student_blocks(tr, resume_dir)) return -1;
    if (resume_dir && tr->mode == MODE_SUPERNET && pn_supernet_load(&tr->model, resume_dir)) return -1;
    const pn_optim_cfg oc = {.lr = c->lr, .min_lr_ratio = c->min_lr_ratio, .warmup_steps = c->warmup_steps,
                             .total_steps = c->steps, .beta1 = c->beta1, .beta2 = c->beta2, .eps = c->eps,
                             .weight_decay = c->weight_decay, .clip = c->clip, .decay_conv = c->decay_conv};
    pn_optim_cfg ocs = oc;
    tr->zero = tr->dist.world > 1 && (!strcmp(c->zero, "on") || (!strcmp(c->zero, "auto") && tr->mode == MODE_SEPARATE));
    if (tr->zero) ocs.shard_rank = tr->dist.rank, ocs.shard_world = tr->dist.world;
    if (pn_optim_init(&tr->opt, m, &ocs)) return -1;
    tr->bucket = pn_malloc(sizeof(int) * (size_t)(tr->opt.n ? tr->opt.n : 1));
    tr->reducing = pn_calloc((size_t)(tr->opt.n ? tr->opt.n : 1), 1);
    for (int k = 0; k < tr->opt.n; k++) {
        int l = -1;
        if (sscanf(m->param_list[tr->opt.t[k].param].name, "model.layers.%d.", &l) != 1) l = -1;
        tr->bucket[k] = l;
    }
    if (tr->mode == MODE_SUPERNET) { // each optimizer tensor's (layer, choice), for the step's skip flags
        tr->opt_choice = pn_malloc(sizeof(int) * (size_t)tr->opt.n);
        for (int k = 0; k < tr->opt.n; k++) {
            int l = -1, off = 0;
            char type[64];
            sscanf(m->param_list[tr->opt.t[k].param].name, "model.layers.%d.candidates.%63[^.].%n", &l, type, &off);
            tr->opt_choice[k] = -1;
            for (int i = 0; off && i < tr->n_cands; i++) {
                char name[64];
                spec_name(tr->cands[i], name, sizeof name);
                if (!strcmp(name, type)) tr->opt_choice[k] = l * (tr->n_cands + 1) + i + 1;
            }
            if (tr->opt_choice[k] < 0) pn_panic("supernet: trainable tensor %s is no candidate's", m->param_list[tr->opt.t[k].param].name);
        }
    }
    // supernet.mode local: one MSE term per (layer, linear candidate), and the teacher's layer outputs
    tr->local = tr->mode == MODE_SUPERNET && !strcmp(c->sn_mode, "local");
    if (tr->local) { // every layer's output is a term of its own; loss.mse_layers does not apply
        for (int l = 0; l < tr->n_layers; l++) tr->mse_slot_of_layer[l] = -1;
        tr->n_mse = 0;
    }
    const int n_terms = tr->local ? tr->n_layers * tr->n_lin : tr->n_mse;
    if (pn_loss_init(&tr->loss, tr->dev, tr->V, tr->C, c->chunk_rows, (int64_t)tr->accum * tr->N, n_terms)) return -1;
    if (tr->local) {
        const int64_t sh1[2] = {tr->N, tr->C};
        if (pn_arena_init(&tr->local_bufs, tr->dev, (size_t)(tr->n_layers + 1) * pn_arena_need(m->dtype, 2, sh1)))
            return pn_error_prefix("the teacher's layer outputs for supernet.mode local (a smaller train.micro_batch "
                                   "needs less)");
        tr->tout = pn_calloc((size_t)tr->n_layers + 1, sizeof(pn_tensor));
        for (int l = 0; l <= tr->n_layers; l++) tr->tout[l] = pn_arena_tensor(&tr->local_bufs, m->dtype, 2, sh1);
    }
    // teacher features and d(hidden)
    const pn_dtype dt = m->dtype;
    const int64_t sh[2] = {tr->N, tr->C};
    const int n_tl = tr->n_mse;
    if (pn_arena_init(&tr->bufs, tr->dev, (size_t)(2 + n_tl) * pn_arena_need(dt, 2, sh)))
        return pn_error_prefix("teacher features (a smaller train.micro_batch needs less)");
    tr->th = pn_arena_tensor(&tr->bufs, dt, 2, sh);
    tr->dh = pn_arena_tensor(&tr->bufs, dt, 2, sh);
    tr->tl = pn_calloc((size_t)(n_tl ? n_tl : 1), sizeof(pn_tensor));
    for (int s = 0; s < n_tl; s++)
        if (tr->mse_layer[s] >= 0) tr->tl[s] = pn_arena_tensor(&tr->bufs, dt, 2, sh);
    if (open_data(tr, tr->mode == MODE_PRETRAIN ? (resume_dir ? resume_dir : c->init) : c->teacher)) return -1;
    const int64_t rows = c->global_batch * tr->T;
    tr->ids = pn_malloc(sizeof(int32_t) * (size_t)rows);
    tr->targets = pn_malloc(sizeof(int32_t) * (size_t)rows);
    tr->cu = pn_malloc(sizeof(int32_t) * (size_t)(rows + tr->accum));
    tr->n_seqs = pn_malloc(sizeof(int) * (size_t)tr->accum);
    tr->model.tap = backward_tap, tr->model.tap_ctx = tr;
    return 0;
}

// ---------------------------------------------------------------------------------------------------
// one optimizer step

// Fetches the step's global batch and lays it out per micro-batch: ids, targets (-1 after an eos: the next
// document's first token is not predictable) and cu_seqlens (a sequence starts at each row and after each
// eos, so no attention or state crosses a document).
static int fetch_step(trainer *tr) {
    pn_batch b;
    if (pn_loader_next(tr->loader, &b)) return pn_error_prefix("data.train");
    const int64_t eos = pn_loader_eos_id(tr->loader), T = tr->T;
    tr->n_ce = 0;
    for (int k = 0; k < tr->accum; k++) {
        int32_t *cu = tr->cu + (int64_t)k * (tr->N + 1);
        int n = 0;
        for (int64_t r = 0; r < tr->B; r++) {
            const int64_t row = (int64_t)k * tr->B + r;
            for (int64_t t = 0; t < T; t++) {
                const int64_t i = row * T + t, j = (int64_t)k * tr->N + r * T + t;
                tr->ids[j] = b.tokens[i];
                const int doc_end = tr->cfg->mask_documents && b.tokens[i] == eos;
                tr->targets[j] = doc_end ? -1 : b.targets[i];
                tr->n_ce += tr->targets[j] >= 0;
                if (t == 0 || (tr->cfg->mask_documents && b.tokens[i - 1] == eos)) cu[n++] = (int32_t)(r * T + t);
            }
        }
        cu[n] = (int32_t)tr->N;
        tr->n_seqs[k] = n;
    }
    pn_dist_sum_i64(&tr->dist, &tr->n_ce, 1); // CE averages over the global batch's counted targets
    return 0;
}

typedef struct step_result {
    double loss, kl, ce, mse, gnorm, lr;
    double comm_ms; // data-parallel: the step's wait for gradient sums the backward did not hide
    int skipped;
} step_result;

static int finish_step(trainer *tr, step_result *res);

// supernet.mode local: per micro-batch one teacher forward records every layer's input and output; then
// every layer's linear candidates run that layer alone on the teacher's input (pn_model_layer_forward_train)
// and learn its output by MSE, each backward reaching only its own layer (pn_model_layer_backward). The
// loss reported is the mean MSE over the (layer, candidate) terms, per token and channel.
static int train_step_local(trainer *tr, step_result *res) {
    const pn_train_cfg *c = tr->cfg;
    pn_model *m = &tr->model;
    pn_model_grads_zero(m);
    const int64_t n_rows = (int64_t)tr->accum * tr->N, n_tok = n_rows * tr->dist.world; // this rank's, global
    const float grad = (float)(c->mse / ((double)n_tok * (double)tr->C));
    for (int k = 0; k < tr->accum; k++) {
        const int32_t *ids = tr->ids + (int64_t)k * tr->N, *cu = tr->cu + (int64_t)k * (tr->N + 1);
        const int64_t row0 = (int64_t)k * tr->N;
        set_choice(tr, 0);
        if (pn_model_forward_train(m, ids, 1, (int)tr->N, cu, tr->n_seqs[k])) return pn_error_prefix("teacher forward");
        for (int l = -1; l < tr->n_layers; l++) {
            pn_tensor y = pn_model_train_layer_out(m, l);
            pn_op_copy(&tr->tout[l + 1], &y);
        }
        for (int l = 0; l < tr->n_layers; l++)
            for (int j = 0; j < tr->n_lin; j++) {
                char name[64];
                spec_name(tr->cands[tr->lin[j]], name, sizeof name);
                if (pn_model_set_mixer(m, l, name)) return -1;
                if (pn_model_layer_forward_train(m, l, &tr->tout[l])) return pn_error_prefix("layer %d (%s)", l, name);
                pn_tensor y = pn_model_train_layer_out(m, l);
                pn_loss_mse(&tr->loss, l * tr->n_lin + j, row0, &y, &tr->tout[l + 1], &tr->dh, grad, 0);
                if (pn_model_layer_backward(m, l, &tr->dh, NULL)) return pn_error_prefix("layer %d (%s) backward", l, name);
                tr->used[l * (tr->n_cands + 1) + tr->lin[j] + 1] = 1;
            }
    }
    const int n_terms = tr->n_layers * tr->n_lin;
    double *mse = pn_calloc((size_t)n_terms, sizeof(double));
    pn_loss_totals(&tr->loss, n_rows, NULL, NULL, mse);
    pn_dist_sum_f64(&tr->dist, mse, n_terms);
    res->kl = res->ce = res->mse = 0;
    for (int t = 0; t < n_terms; t++) res->mse += mse[t] / ((double)n_tok * (double)tr->C) / n_terms;
    free(mse);
    res->loss = c->mse * res->mse;
    return 0;
}

static int train_step(trainer *tr, step_result *res) {
    const pn_train_cfg *c = tr->cfg;
    pn_model *m = &tr->model, *tm = tr->mode == MODE_SEPARATE ? &tr->teacher : m;
    if (fetch_step(tr)) return -1;
    if (tr->local) {
        memset(tr->used, 0, (size_t)tr->n_layers * (size_t)(tr->n_cands + 1));
        if (train_step_local(tr, res)) return -1;
        return finish_step(tr, res);
    }
    pn_model_grads_zero(m);
    // Every term averages over the global batch (all ranks' rows), so summing the ranks' gradients gives
    // the gradient of one process running the whole batch.
    const int64_t n_rows = (int64_t)tr->accum * tr->N, n_tok = n_rows * tr->dist.world;
    const pn_lm_loss_args la = {.temperature = (float)c->temperature, .kl_grad = (float)(c->kl / (double)n_tok),
                                .ce_grad = tr->n_ce ? (float)(c->ce / (double)tr->n_ce) : 0.0f};
    tr->mse_grad = tr->n_mse ? (float)(c->mse / ((double)tr->n_mse * (double)n_tok * (double)tr->C)) : 0.0f;
    const int need_teacher = tr->has_teacher && (c->kl > 0 || c->mse > 0);
    // MODE_SUPERNET: each micro-batch trains a drawn subnet, and with the sandwich rule the all-linear one
    // after it (on the same teacher features), each with half the gradient.
    const int n_sub = tr->mode == MODE_SUPERNET && c->sandwich ? 2 : 1;
    pn_lm_loss_args lsub = la;
    lsub.kl_grad /= (float)n_sub, lsub.ce_grad /= (float)n_sub;
    tr->mse_grad /= (float)n_sub;
    if (tr->mode == MODE_SUPERNET) {
        memset(tr->used, 0, (size_t)tr->n_layers * (size_t)(tr->n_cands + 1));
        free(tr->subnets);
        tr->subnets = NULL;
    }
    int *choice = tr->mode == MODE_SUPERNET ? pn_malloc(sizeof(int) * (size_t)tr->n_layers) : NULL;
    // Draw number of a subnet: its micro-batch's index in the global step, as one process running the whole
    // step counts them (2 per micro-batch: the drawn subnet, the all-linear one). Every rank notes every
    // rank's subnets (the draws are a function of the seed alone): the metrics list the step's subnets and
    // every rank knows which candidates got a gradient.
    const uint64_t mb0 = (uint64_t)tr->step * (uint64_t)tr->dist.world * (uint64_t)tr->accum;
    for (uint64_t mb = mb0; choice && mb < mb0 + (uint64_t)tr->dist.world * (uint64_t)tr->accum; mb++)
        for (int sub = 0; sub < n_sub; sub++) {
            sample_subnet(tr, mb * 2 + (uint64_t)sub, sub == 1, choice);
            use_subnet(tr, choice, 1);
        }
    for (int k = 0; k < tr->accum; k++) {
        const int32_t *ids = tr->ids + (int64_t)k * tr->N, *cu = tr->cu + (int64_t)k * (tr->N + 1);
        tr->row0 = (int64_t)k * tr->N;
        if (need_teacher) {
            set_choice(tr, 0);
            if (pn_model_forward_train(tm, ids, 1, (int)tr->N, cu, tr->n_seqs[k])) return pn_error_prefix("teacher forward");
            pn_tensor h = pn_model_train_hidden(tm);
            pn_op_copy(&tr->th, &h);
            for (int s = 0; s < tr->n_mse; s++)
                if (tr->mse_layer[s] >= 0) {
                    pn_tensor y = pn_model_train_layer_out(tm, tr->mse_layer[s]);
                    pn_op_copy(&tr->tl[s], &y);
                }
            set_choice(tr, 1);
        }
        for (int sub = 0; sub < n_sub; sub++) {
        if (choice) {
            const uint64_t mb = mb0 + (uint64_t)tr->dist.rank * (uint64_t)tr->accum + (uint64_t)k;
            sample_subnet(tr, mb * 2 + (uint64_t)sub, sub == 1, choice);
            use_subnet(tr, choice, 0);
        }
        if (pn_model_forward_train(m, ids, 1, (int)tr->N, cu, tr->n_seqs[k])) {
            free(choice);
            return pn_error_prefix("student forward");
        }
        pn_tensor hs = pn_model_train_hidden(m);
        int acc = 0;
        for (int s = 0; s < tr->n_mse; s++) {
            if (tr->mse_layer[s] < 0) { // the final hidden state: its gradient starts d(hidden)
                pn_loss_mse(&tr->loss, s, tr->row0, &hs, &tr->th, &tr->dh, tr->mse_grad, 0);
                acc = 1;
            } else { // values now; the gradient joins in the backward (mse_tap)
                pn_tensor x = pn_model_train_layer_out(m, tr->mse_layer[s]);
                pn_loss_mse(&tr->loss, s, tr->row0, &x, &tr->tl[s], NULL, 0, 0);
            }
        }
        if (c->kl > 0 || c->ce > 0) {
            if (pn_loss_head(&tr->loss, tr->row0, &hs, c->kl > 0 ? &tr->th : NULL, &m->lm_head, &tm->lm_head,
                             c->ce > 0 ? tr->targets + tr->row0 : NULL, &lsub, &tr->dh, acc, head_grad(m))) {
                free(choice);
                return -1;
            }
        } else if (!acc) {
            pn_backend_get(tr->dev)->memset0(tr->dh.data, pn_nbytes(&tr->dh));
        }
        // The step's last backward: each layer's gradients are final once its backward is done, so their
        // sums over the ranks start then (backward_tap) and overlap the layers below.
        tr->reduce_armed = pn_dist_active(&tr->dist) && k == tr->accum - 1 && sub == n_sub - 1;
        const int brc = pn_model_backward_hidden(m, &tr->dh);
        tr->reduce_armed = 0;
        if (brc) {
            free(choice);
            return pn_error_prefix("backward");
        }
        } // subnets
    }
    free(choice);
    double kl = 0, ce = 0, *mse = pn_calloc((size_t)(tr->n_mse ? tr->n_mse : 1), sizeof(double));
    pn_loss_totals(&tr->loss, n_rows, &kl, &ce, mse);
    double sums[2] = {kl, ce};
    pn_dist_sum_f64(&tr->dist, sums, 2);
    pn_dist_sum_f64(&tr->dist, mse, tr->n_mse);
    kl = sums[0], ce = sums[1];
    res->kl = kl / (double)n_tok;
    res->ce = tr->n_ce ? ce / (double)tr->n_ce : 0;
    res->mse = 0;
    for (int s = 0; s < tr->n_mse; s++) res->mse += mse[s] / ((double)n_tok * (double)tr->C) / tr->n_mse;
    free(mse);
    res->loss = c->kl * res->kl + c->ce * res->ce + c->mse * res->mse;
    return finish_step(tr, res);
}

// Starts the sum over the ranks of optimizer tensor k's gradient (each rank's already scaled by the global
// count), once per step. ZeRO-1: only the tensor's owner needs the sum.
static void reduce_start(trainer *tr, int k) {
    if (tr->reducing[k]) return;
    tr->reducing[k] = 1;
    pn_dist_isum(&tr->dist, tr->opt.t[k].g, tr->zero ? tr->opt.t[k].owner : -1);
}

// The end of every step: the skip flags of the candidates no subnet ran, the gradient norm and the update.
static int finish_step(trainer *tr, step_result *res) {
    pn_model *m = &tr->model;
    res->comm_ms = 0;
    if (pn_dist_active(&tr->dist)) { // data-parallel: the buckets the backward did not start (the embeddings,
        for (int k = 0; k < tr->opt.n; k++) reduce_start(tr, k); // final norm and head; all of them after a
        res->comm_ms = 1e3 * pn_dist_wait(&tr->dist);            // supernet's local step), then wait for all
        memset(tr->reducing, 0, (size_t)tr->opt.n);
        if (tr->mode == MODE_SUPERNET) // a candidate any rank ran has a gradient
            pn_dist_max_u8(&tr->dist, tr->used, (int64_t)tr->n_layers * (tr->n_cands + 1));
    }
    for (int k = 0; tr->mode == MODE_SUPERNET && k < tr->opt.n; k++) tr->opt.t[k].skip = !tr->used[tr->opt_choice[k]];
    // Fault injection for the tests: PN_TEST_NAN_FROM_STEP=k makes every step from k on look non-finite.
    const char *nan_from = getenv("PN_TEST_NAN_FROM_STEP");
    if (nan_from && tr->step + 1 >= atoll(nan_from)) res->loss = NAN;
    double sumsq = pn_optim_grad_sumsq(&tr->opt); // sharded: each rank's tensors, summed over the ranks
    if (tr->zero) pn_dist_sum_f64(&tr->dist, &sumsq, 1);
    res->gnorm = sqrt(sumsq);
    res->skipped = !isfinite(res->loss) || !isfinite(res->gnorm);
    res->lr = pn_optim_lr(&tr->opt.cfg, tr->step);
    if (!res->skipped) {
        pn_optim_update(&tr->opt, tr->step, res->gnorm);
        if (tr->zero) { // every rank gets the owners' updated tensors
            for (int k = 0; k < tr->opt.n; k++)
                if (!tr->opt.t[k].skip) pn_dist_ibcast(&tr->dist, tr->opt.t[k].p, tr->opt.t[k].owner);
            res->comm_ms += 1e3 * pn_dist_wait(&tr->dist);
        }
        pn_model_sync_slots(m);
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------------
// checkpoints: out_dir/checkpoints/step-NNNNNNNN/ = a Hugging Face folder of the student (config.json,
// model.safetensors, tokenizer files) + optimizer.safetensors + trainer_state.json + config.yaml. Written
// under a dot-name and renamed when complete, so a folder without the dot is always whole.

static char *ckpt_root(const pn_train_cfg *c) { return pn_path_join(c->out_dir, "checkpoints"); }

// The newest complete checkpoint's folder (NULL: none), and (keep > 0) removing all but the newest `keep`
// and every incomplete one.
static char *newest_ckpt(const pn_train_cfg *c, int keep) {
    char *root = ckpt_root(c);
    DIR *d = opendir(root);
    if (!d) {
        free(root);
        return NULL;
    }
    int64_t *steps = NULL;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        long long s;
        char tail;
        if (sscanf(e->d_name, "step-%lld%c", &s, &tail) == 1) {
            steps = pn_realloc(steps, sizeof *steps * (size_t)(n + 1));
            steps[n++] = s;
        } else if (keep > 0 && !strncmp(e->d_name, ".step-", 6)) {
            char *p = pn_path_join(root, e->d_name);
            rm_rf(p);
            free(p);
        }
    }
    closedir(d);
    // newest first
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++)
            if (steps[j] > steps[i]) {
                const int64_t t = steps[i];
                steps[i] = steps[j], steps[j] = t;
            }
    char *out = NULL;
    if (n) {
        char name[64];
        snprintf(name, sizeof name, "step-%08lld", (long long)steps[0]);
        out = pn_path_join(root, name);
    }
    for (int i = keep; keep > 0 && i < n; i++) {
        char name[64];
        snprintf(name, sizeof name, "step-%08lld", (long long)steps[i]);
        char *p = pn_path_join(root, name);
        rm_rf(p);
        free(p);
    }
    free(steps);
    free(root);
    return out;
}

static int write_config_yaml(const pn_train_cfg *c, const char *path) {
    pn_atomic_file af;
    if (pn_atomic_open(&af, path)) return -1;
    fprintf(af.f, "# the resolved config of this run (postnas-train): every key, defaults included\n");
    pn_cfg_write_yaml(pn_train_schema, pn_train_schema_n, c, af.f);
    return pn_atomic_commit(&af);
}

static int save_ckpt(trainer *tr) {
    const pn_train_cfg *c = tr->cfg;
    char *root = ckpt_root(c);
    char name[64], tmpname[64];
    snprintf(name, sizeof name, "step-%08lld", (long long)tr->step);
    snprintf(tmpname, sizeof tmpname, ".step-%08lld", (long long)tr->step);
    char *dir = pn_path_join(root, name), *tmp = pn_path_join(root, tmpname);
    int rc = mkdir_p(root);
    struct stat sb;
    if (!rc && stat(tmp, &sb) == 0) rm_rf(tmp);
    if (!rc && stat(dir, &sb) == 0) rm_rf(dir); // the same step again (a resumed run passing it)
    if (tr->mode == MODE_SUPERNET) set_choice(tr, 0); // the folder is the teacher, the paths beside it
    if (!rc) rc = pn_model_export(&tr->model, tmp);
    if (tr->mode == MODE_SUPERNET) {
        set_choice(tr, 1);
        if (!rc) rc = pn_supernet_save(&tr->model, tmp);
    }
    if (!rc) {
        char *p = pn_path_join(tmp, "optimizer.safetensors");
        rc = pn_optim_save(&tr->opt, &tr->model, p);
        free(p);
    }
    if (!rc) {
        char *p = pn_path_join(tmp, "config.yaml");
        rc = write_config_yaml(c, p);
        free(p);
    }
    if (!rc) {
        char *p = pn_path_join(tmp, "trainer_state.json");
        pn_atomic_file af;
        rc = pn_atomic_open(&af, p);
        if (!rc) {
            const pn_loader_state ls = pn_loader_get_state(tr->loader);
            fprintf(af.f,
                    "{\n  \"format\": \"postnas-trainer\",\n  \"step\": %lld,\n  \"tokens\": %lld,\n  \"updates\": %lld,\n"
                    "  \"loader_epoch\": %llu,\n  \"loader_step\": %llu,\n  \"config_hash\": \"%016llx\"\n}\n",
                    (long long)tr->step, (long long)tr->tokens, (long long)tr->opt.updates,
                    (unsigned long long)ls.epoch, (unsigned long long)ls.step, (unsigned long long)tr->cfg_hash);
            rc = pn_atomic_commit(&af);
        }
        free(p);
    }
    if (!rc && (fsync_dir(tmp) || rename(tmp, dir) || fsync_dir(root)))
        rc = pn_errorf("%s: cannot complete the checkpoint: %s", dir, strerror(errno));
    if (!rc) {
        // out_dir/latest -> checkpoints/step-N: the next stage's config can name it (replaced atomically)
        char *link = pn_path_join(c->out_dir, "latest"), *ltmp = pn_path_join(c->out_dir, ".latest.tmp");
        char target[96];
        snprintf(target, sizeof target, "checkpoints/%s", name);
        unlink(ltmp);
        if (symlink(target, ltmp) || rename(ltmp, link)) {
            pn_warn("%s: cannot point it at %s: %s", link, target, strerror(errno));
            unlink(ltmp);
        }
        free(link), free(ltmp);
    }
    if (rc) {
        rm_rf(tmp);
        rc = pn_error_prefix("checkpoint at step %lld (the previous one is kept)", (long long)tr->step);
    } else {
        free(newest_ckpt(c, (int)c->ckpt_keep));
    }
    free(root), free(dir), free(tmp);
    return rc;
}

// trainer_state.json and config.yaml of a checkpoint: the config must be this one (run-only keys aside).
static int load_state(trainer *tr, const char *dir) {
    const pn_train_cfg *c = tr->cfg;
    char *cp = pn_path_join(dir, "config.yaml");
    pn_train_cfg *saved = pn_calloc(1, sizeof *saved);
    int rc = pn_cfg_load(pn_train_schema, pn_train_schema_n, saved, cp, NULL, 0);
    if (rc) rc = pn_error_prefix("checkpoint %s", dir);
    if (!rc) {
        const pn_cfg_key *k = pn_cfg_diff(pn_train_schema, pn_train_schema_n, c, saved);
        if (k) {
            char a[256], b[256];
            pn_cfg_format(k, saved, a, sizeof a), pn_cfg_format(k, c, b, sizeof b);
            rc = pn_errorf("checkpoint %s was written with %s = %s, this config has %s = %s: resume only the same "
                           "run (or start a new out_dir)", dir, k->path, a, k->path, b);
        }
    }
    free(saved), free(cp);
    if (rc) return rc;
    char *sp = pn_path_join(dir, "trainer_state.json");
    json_t *j = pn_json_load(sp);
    rc = j ? 0 : -1;
    const char *fmt = NULL;
    double step = 0, tokens = 0, ep = 0, st = 0;
    if (!rc && (pn_json_string(sp, j, "format", &fmt) || !fmt || strcmp(fmt, "postnas-trainer")))
        rc = pn_errorf("%s: not a postnas trainer state", sp);
    if (!rc && (pn_json_num(sp, j, "step", &step) || pn_json_num(sp, j, "tokens", &tokens) ||
                pn_json_num(sp, j, "loader_epoch", &ep) || pn_json_num(sp, j, "loader_step", &st)))
        rc = -1;
    if (!rc && (step < 0 || step > (double)c->steps || tokens < 0 || ep < 0 || st < 0 || step != floor(step)))
        rc = pn_errorf("%s: step %g is outside this run's 0 .. %lld", sp, step, (long long)c->steps);
    if (!rc) {
        tr->step = (int64_t)step, tr->tokens = (int64_t)tokens;
        if (pn_loader_set_state(tr->loader, (pn_loader_state){.epoch = (uint64_t)ep, .step = (uint64_t)st}))
            rc = pn_error_prefix("%s: the data position", sp);
    }
    if (j) json_decref(j);
    free(sp);
    if (rc) return rc;
    char *op = pn_path_join(dir, "optimizer.safetensors");
    rc = pn_optim_load(&tr->opt, &tr->model, op);
    free(op);
    return rc;
}

// ---------------------------------------------------------------------------------------------------
// metrics and progress

// metrics.jsonl keeps the lines up to `step` (a resumed run rewrites what the interrupted one logged after
// its checkpoint), then appends.
static int open_metrics(trainer *tr, int64_t keep_upto) {
    char *p = pn_path_join(tr->cfg->out_dir, "metrics.jsonl");
    if (keep_upto >= 0) {
        FILE *in = fopen(p, "r");
        char *kept = NULL;
        size_t klen = 0;
        if (in) {
            char line[4096];
            while (fgets(line, sizeof line, in)) {
                long long s;
                if (sscanf(line, "{\"step\": %lld", &s) == 1 && s <= keep_upto) {
                    kept = pn_realloc(kept, klen + strlen(line) + 1);
                    memcpy(kept + klen, line, strlen(line) + 1);
                    klen += strlen(line);
                }
            }
            fclose(in);
        }
        pn_atomic_file af;
        int rc = pn_atomic_open(&af, p);
        if (!rc) {
            if (klen) fwrite(kept, 1, klen, af.f);
            rc = pn_atomic_commit(&af);
        }
        free(kept);
        if (rc) {
            free(p);
            return -1;
        }
    }
    tr->metrics = fopen(p, keep_upto >= 0 ? "a" : "w");
    const int rc = tr->metrics ? 0 : pn_errorf("%s: cannot write: %s", p, strerror(errno));
    free(p);
    return rc;
}

static void fmt_time(double s, char *buf, size_t n) {
    if (!isfinite(s) || s < 0) snprintf(buf, n, "?");
    else if (s < 60) snprintf(buf, n, "%.0fs", s);
    else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(buf, n, "%dh%02dm", (int)s / 3600, (int)s % 3600 / 60);
}

// Forward FLOPs per token of a model as it runs now (each layer's active mixer at the mean position of a
// T-token sequence, the MLP, the head).
static double fwd_flops_per_token(const pn_model *m, int64_t T) {
    const pn_model_config *c = &m->cfg;
    double f = 2.0 * c->hidden * (double)c->vocab;
    for (int l = 0; l < c->n_layers; l++) {
        const pn_slot *S = pn_layer_mixer_c(&m->layers[l]);
        f += S->bt->flops(&S->bc, T / 2) + 6.0 * c->hidden * (double)c->intermediate;
    }
    return f;
}

// Model FLOP utilization on CUDA: the step's FLOPs (teacher forward, student forward and a backward of twice
// the forward's) over the GPU's dense bf16 peak (989 TFLOP/s, H100/H200 SXM; PN_PEAK_TFLOPS overrides).
static double mfu(trainer *tr, double tok_s) {
    if (tr->dev != PN_CUDA) return NAN;
    const char *e = getenv("PN_PEAK_TFLOPS");
    const double peak = (e && atof(e) > 0 ? atof(e) : 989.0) * 1e12;
    set_choice(tr, 1);
    double f = 3.0 * fwd_flops_per_token(&tr->model, tr->T);
    if (tr->has_teacher && (tr->cfg->kl > 0 || tr->cfg->mse > 0)) {
        set_choice(tr, 0);
        f += fwd_flops_per_token(tr->mode == MODE_SEPARATE ? &tr->teacher : &tr->model, tr->T);
        set_choice(tr, 1);
    }
    return f * tok_s / peak;
}

static void log_step(trainer *tr, const step_result *r, double tok_s) {
    const pn_train_cfg *c = tr->cfg;
    if (tr->dist.rank != 0) return; // rank 0 logs and writes the metrics
    const int last = tr->step == c->steps;
    // data-parallel: how long the step waited for gradient sums (and ZeRO's broadcasts) that the backward
    // did not hide, in ms (host wait for MPI + the GPU's compute stream's wait for NCCL)
    char comm[48] = "";
    if (pn_dist_active(&tr->dist)) snprintf(comm, sizeof comm, ", \"comm_wait_ms\": %.3f", r->comm_ms);
    if (tr->step % c->log_every == 0 || last || r->skipped) {
        fprintf(tr->metrics,
                "{\"step\": %lld, \"loss\": %.9g, \"kl\": %.9g, \"ce\": %.9g, \"mse\": %.9g, \"lr\": %.9g, "
                "\"grad_norm\": %.9g, \"tokens\": %lld, \"tok_s\": %.1f, \"skipped\": %s%s%s%s}\n",
                (long long)tr->step, r->loss, r->kl, r->ce, r->mse, r->lr, r->gnorm, (long long)tr->tokens, tok_s,
                r->skipped ? "true" : "false", comm, tr->subnets ? ", \"subnets\": " : "", tr->subnets ? tr->subnets : "");
        fflush(tr->metrics);
    }
    char eta[32];
    const double el = pn_now() - tr->t_start;
    const int64_t done = tr->step - (tr->tokens_at_start / (tr->cfg->global_batch * tr->T));
    fmt_time(done > 0 ? el / (double)done * (double)(c->steps - tr->step) : NAN, eta, sizeof eta);
    char terms[160] = "";
    if (c->kl > 0) snprintf(terms + strlen(terms), sizeof terms - strlen(terms), " kl %.4f", r->kl);
    if (c->ce > 0) snprintf(terms + strlen(terms), sizeof terms - strlen(terms), " ce %.4f", r->ce);
    if (c->mse > 0) snprintf(terms + strlen(terms), sizeof terms - strlen(terms), " mse %.4g", r->mse);
    char util[64] = "";
    const double u = mfu(tr, tok_s);
    if (isfinite(u)) snprintf(util, sizeof util, " MFU %.1f%%", 100 * u);
    if (pn_dist_active(&tr->dist))
        snprintf(util + strlen(util), sizeof util - strlen(util), " comm wait %.1f ms", r->comm_ms);
    if (tr->redraw)
        fprintf(stderr, "\r\033[Kstep %lld/%lld loss %.4f%s lr %.2e gnorm %.3f %.0f tok/s%s ETA %s%s", (long long)tr->step,
                (long long)c->steps, r->loss, terms, r->lr, r->gnorm, tok_s, util, eta, r->skipped ? " (skipped)" : "");
    else if (tr->step % c->log_every == 0 || last || r->skipped)
        fprintf(stderr, "step %lld/%lld loss %.4f%s lr %.2e gnorm %.3f %.0f tok/s%s ETA %s%s\n", (long long)tr->step,
                (long long)c->steps, r->loss, terms, r->lr, r->gnorm, tok_s, util, eta,
                r->skipped ? " (skipped: not finite)" : "");
}

// ---------------------------------------------------------------------------------------------------
// the run

static void trainer_free(trainer *tr) {
    if (tr->metrics) fclose(tr->metrics);
    if (tr->loader) pn_loader_close(tr->loader);
    pn_optim_free(&tr->opt);
    if (tr->loss.host) pn_loss_free(&tr->loss);
    pn_arena_free(&tr->bufs);
    pn_arena_free(&tr->local_bufs);
    free(tr->tout);
    if (tr->model.layers) pn_model_free(&tr->model);
    if (tr->teacher.layers) pn_model_free(&tr->teacher);
    for (int l = 0; tr->student_types && l < tr->n_layers; l++) free(tr->student_types[l]);
    free(tr->student_types);
    for (int i = 0; tr->cands && i < tr->n_cands; i++) free(tr->cands[i]);
    free(tr->cands), free(tr->lin), free(tr->used), free(tr->opt_choice), free(tr->subnets);
    free(tr->bucket), free(tr->reducing);
    free(tr->mse_layer), free(tr->mse_slot_of_layer), free(tr->tl);
    free(tr->ids), free(tr->targets), free(tr->cu), free(tr->n_seqs);
}

static int train_run(trainer *tr0, const pn_run_opts *opts);

int pn_train_run(const pn_train_cfg *cfg, const char *config_path, const pn_run_opts *opts) {
    (void)config_path;
    if (check_cfg(cfg)) return -1;
    if (opts->check) return 0;
    trainer tr = {.cfg = cfg};
    // The world's size from the launcher, before MPI: an error every rank finds alike returns here, and
    // postnas-train prints it once (rank 0), not once per rank.
    if (pn_dist_env(&tr.dist)) return -1;
    if (cfg->global_batch % ((int64_t)tr.dist.world * cfg->micro_batch))
        return pn_errorf("config: train.global_batch %lld is not a multiple of the %d processes x train.micro_batch %lld",
                         (long long)cfg->global_batch, tr.dist.world, (long long)cfg->micro_batch);
    if (pn_dist_init(&tr.dist)) return -1;
    const pn_dist d = tr.dist;
    int rc = 0;
    pn_dist_watchdog(&tr.dist, (double)cfg->step_timeout);
    rc = train_run(&tr, opts);
    if (rc < 0 && d.world > 1) { // one rank's error ends them all (no rank waits in a collective forever)
        fprintf(stderr, "postnas-train: error (rank %d of %d): %s\n", d.rank, d.world, pn_last_error());
        fflush(stderr);
        pn_dist_abort(&tr.dist, 1);
    }
    pn_dist_finalize(&tr.dist);
    return rc;
}

// The run on this rank: rank 0 prepares out_dir, logs, writes the metrics and the checkpoints; every rank
// trains (the same updates: the gradients are summed over the ranks before each one).
static int train_run(trainer *tr0, const pn_run_opts *opts) {
    const pn_train_cfg *cfg = tr0->cfg;
    trainer tr = *tr0;
    const int lead = tr.dist.rank == 0;
    if (cfg->threads > 0) pn_cpu_set_threads((int)cfg->threads);
    tr.cfg_hash = pn_cfg_hash(pn_train_schema, pn_train_schema_n, cfg);
    // out_dir must be writable before anything is loaded: the resolved config goes there first
    if (mkdir_p(cfg->out_dir)) return -1;
    char *resume_dir = NULL;
    char *have = opts->resume ? NULL : newest_ckpt(cfg, 0);
    if (have && !opts->overwrite) {
        const int rc0 = pn_errorf("%s already holds a run (%s): --resume continues it, --overwrite starts over",
                                  cfg->out_dir, have);
        free(have);
        return rc0;
    }
    free(have);
    if (lead && opts->overwrite && !opts->resume) { // what a previous run left: its checkpoints, metrics, links
        const char *names[] = {"checkpoints", "student-init", "metrics.jsonl", "latest"};
        for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
            char *p = pn_path_join(cfg->out_dir, names[i]);
            struct stat sb;
            if (!lstat(p, &sb)) {
                if (S_ISDIR(sb.st_mode)) rm_rf(p);
                else unlink(p);
            }
            free(p);
        }
    }
    if (opts->resume) {
        resume_dir = newest_ckpt(cfg, 0);
        if (!resume_dir) return pn_errorf("--resume: no complete checkpoint in %s/checkpoints", cfg->out_dir);
    }
    char *cy = pn_path_join(cfg->out_dir, "config.yaml");
    int rc = lead ? write_config_yaml(cfg, cy) : 0;
    free(cy);
    pn_dist_barrier(&tr.dist); // out_dir is ready before any rank reads from it
    if (rc) {
        free(resume_dir);
        return pn_error_prefix("out_dir");
    }
    rc = setup(&tr, resume_dir);
    if (!rc && resume_dir) rc = load_state(&tr, resume_dir);
    if (!rc && lead) rc = open_metrics(&tr, resume_dir ? tr.step : -1);
    if (rc) {
        trainer_free(&tr);
        free(resume_dir);
        return -1;
    }
    if (resume_dir && lead) pn_info("resuming from %s (step %lld)", resume_dir, (long long)tr.step);
    free(resume_dir);
    tr.redraw = lead && (opts->progress < 0 ? isatty(2) : opts->progress);
    if (lead && tr.dist.world > 1)
        pn_info("training on %s: %s, %lld steps of %lld x %lld tokens (%d processes x %d micro-batches of %lld), %d "
                "trainable tensors%s", pn_device_name(tr.dev), cfg->stage, (long long)cfg->steps,
                (long long)cfg->global_batch, (long long)tr.T, tr.dist.world, tr.accum, (long long)cfg->micro_batch,
                tr.opt.n, tr.zero ? ", optimizer state sharded over the processes (ZeRO-1)" : "");
    else if (lead)
        pn_info("training on %s: %s, %lld steps of %lld x %lld tokens (%d micro-batches of %lld), %d trainable tensors",
                pn_device_name(tr.dev), cfg->stage, (long long)cfg->steps, (long long)cfg->global_batch,
                (long long)tr.T, tr.accum, (long long)cfg->micro_batch, tr.opt.n);
    struct sigaction sa = {.sa_handler = on_signal}, old_int, old_term;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    g_stop = 0;
    tr.t_start = tr.t_last = pn_now();
    tr.tokens_at_start = tr.tokens;
    int skips = 0, stopped = 0;
    double first_loss = NAN, last_loss = NAN;
    // Fault injection for the tests: PN_TEST_HANG_RANK=r PN_TEST_HANG_STEP=s makes rank r hang in step s.
    const char *hang_rank = getenv("PN_TEST_HANG_RANK"), *hang_step = getenv("PN_TEST_HANG_STEP");
    while (tr.step < cfg->steps && !rc) {
        step_result r = {0};
        const double t0 = pn_now();
        pn_dist_step_begin(&tr.dist, tr.step);
        if (hang_rank && hang_step && atoi(hang_rank) == tr.dist.rank && atoll(hang_step) == tr.step + 1)
            for (;;) pause();
        if (train_step(&tr, &r)) {
            rc = -1;
            break;
        }
        if (tr.dev == PN_CUDA) pn_backend_get(tr.dev)->sync();
        r.comm_ms += pn_dist_comm_ms(&tr.dist); // the compute stream's wait for NCCL, known once it ran
        tr.step++;
        tr.tokens += cfg->global_batch * tr.T;
        const double dt = pn_now() - t0;
        log_step(&tr, &r, (double)(cfg->global_batch * tr.T) / (dt > 0 ? dt : 1e-9));
        if (isnan(first_loss) && !r.skipped) first_loss = r.loss;
        if (!r.skipped) last_loss = r.loss;
        skips = r.skipped ? skips + 1 : 0;
        if (skips >= cfg->max_skips) {
            rc = pn_errorf("%d consecutive steps had a non-finite loss or gradient norm (the last: step %lld); "
                           "a lower train.lr or a tighter train.clip may help",
                           skips, (long long)tr.step);
            break;
        }
        const int at_end = tr.step == cfg->steps;
        uint8_t stop = g_stop != 0; // a signal any rank received stops every rank after this step
        pn_dist_max_u8(&tr.dist, &stop, 1);
        if (stop || at_end || (cfg->ckpt_every > 0 && tr.step % cfg->ckpt_every == 0)) {
            if (tr.redraw) fputc('\n', stderr);
            pn_optim_gather(&tr.opt, &tr.dist); // ZeRO-1: rank 0 collects the optimizer shards (collective)
            const int bad = lead && save_ckpt(&tr);
            pn_optim_release(&tr.opt);
            if (bad) {
                rc = -1;
                break;
            }
            if (stop) {
                if (lead)
                    pn_info("stopped by signal %d%s at step %lld: checkpoint written; --resume continues",
                            (int)g_stop, g_stop ? "" : " (sent to another rank)", (long long)tr.step);
                stopped = 1;
                break;
            }
        }
        pn_dist_step_end(&tr.dist);
    }
    pn_dist_step_end(&tr.dist);
    if (tr.redraw) fputc('\n', stderr);
    if (!rc && !stopped && lead) {
        char took[32];
        fmt_time(pn_now() - tr.t_start, took, sizeof took);
        char *last = newest_ckpt(cfg, 0);
        fprintf(stderr, "done: %lld steps, %lld tokens in %s, loss %.4f -> %.4f; the model: %s\n", (long long)tr.step,
                (long long)tr.tokens, took, first_loss, last_loss, last ? last : "?");
        free(last);
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    trainer_free(&tr);
    return rc ? -1 : stopped;
}
