// pn_param: one model parameter as Hugging Face names it, the tensor it loads into and its gradient.
#ifndef PN_PARAM_H
#define PN_PARAM_H

#include <stdint.h>

#include "pn_tensor.h"

// One parameter as Hugging Face names it, with the tensor it loads into. The kind says how a fresh one is
// initialized: WEIGHT N(0, std), BIAS, NORM ones, EMBED, and the linear blocks' own: A_LOG (log U(0, 16)),
// DT_BIAS (softplus^-1 of a log-uniform dt), ZERO (JetBlock's kernel-generator weights), GEN_BIAS
// (JetBlock's w2 bias, N(0, 0.02)) and CONV (depthwise conv kernels, [C, 1, W] as nn.Conv1d stores them).
typedef enum {
    PN_PARAM_WEIGHT, PN_PARAM_BIAS, PN_PARAM_NORM, PN_PARAM_EMBED, PN_PARAM_A_LOG, PN_PARAM_DT_BIAS, PN_PARAM_ZERO,
    PN_PARAM_GEN_BIAS, PN_PARAM_CONV
} pn_param_kind;
typedef struct pn_param {
    char name[96];
    pn_param_kind kind;
    int ndim;
    int64_t shape[3];
    pn_tensor *dst;  // where the model keeps it (NULL when the list is built from a config alone)
    pn_tensor *grad; // where its gradient goes (F32; data NULL while the parameter is frozen)
} pn_param;
int64_t pn_param_numel(const pn_param *p);

// Element j of a fresh parameter of p's kind, as the published inits draw it (counter-based: element j of
// stream `stream` under `seed`, so any element is reproducible on its own): weights N(0, std), norms 1;
// Gated DeltaNet / JetBlock (fla's GatedDeltaNet._init_weights, Jet-Nemotron's JetBlock): A_log = log U(1, 16),
// dt_bias = softplus^-1(dt) with dt log-uniform in [0.001, 0.1] (floored at 1e-4), depthwise conv kernels
// nn.Conv1d's default U(-1/sqrt(W), 1/sqrt(W)), the kernel generator's weights zero, its w2 bias N(0, 0.02).
float pn_param_init_value(const pn_param *p, double std, uint64_t seed, uint64_t stream, uint64_t j);

#endif
