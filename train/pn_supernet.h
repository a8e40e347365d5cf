// pn_supernet: a PostNAS supernet on disk and back. A supernet checkpoint (postnas-train's stage
// `supernet`) is the teacher's Hugging Face folder plus supernet.safetensors, every candidate mixer's tensors
// under their own names (model.layers.{l}.candidates.{type}.*, fp32), plus the run's config.yaml whose
// model.supernet.candidates lists the candidates every layer holds besides the teacher's attn.
#ifndef PN_SUPERNET_H
#define PN_SUPERNET_H

#include "../src/pn_model.h"

#define PN_SUPERNET_MAX_CANDS 16

// The candidates of a supernet checkpoint (from its config.yaml), the teacher's attn not included, and
// which of them are linear (neither attn nor swa).
typedef struct pn_supernet_info {
    int n_cands;
    char cands[PN_SUPERNET_MAX_CANDS][64]; // specs as configured: "swa=64", "gdn"
    char names[PN_SUPERNET_MAX_CANDS][64]; // block type names: "swa", "gdn"
    int linear[PN_SUPERNET_MAX_CANDS];
} pn_supernet_info;

// Parses a candidate list (a config LIST value) into info, each checked: not attn, not twice, at most
// PN_SUPERNET_MAX_CANDS. 0, or -1 with the error set (`what` names the source in messages).
int pn_supernet_parse(const char *list, const char *what, pn_supernet_info *info);

// Every candidate tensor of m (names containing ".candidates.") to dir/supernet.safetensors (save) or from
// it (load: each tensor checked against the model's shape, and the file holding exactly m's candidates).
// 0, or -1 with the error set.
int pn_supernet_save(const pn_model *m, const char *dir);
int pn_supernet_load(pn_model *m, const char *dir);

// Opens a supernet checkpoint for evaluation: the teacher from dir, every layer given the candidates of
// dir/config.yaml, their tensors from dir/supernet.safetensors; the model runs the teacher (all attn) until
// pn_model_set_mixer switches a layer. 0, or -1 with the error set (not a supernet checkpoint: says so).
int pn_supernet_open(pn_model *m, const char *dir, pn_device dev, pn_supernet_info *info);

#endif
