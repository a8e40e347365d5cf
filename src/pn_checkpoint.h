// pn_checkpoint: a Hugging Face checkpoint folder — config.json plus model.safetensors or the sharded
// model.safetensors.index.json with its shards — opened as one name → tensor lookup.
#ifndef PN_CHECKPOINT_H
#define PN_CHECKPOINT_H

#include "pn_hf_config.h"
#include "pn_safetensors.h"

typedef struct pn_checkpoint {
    char *dir;
    pn_model_config cfg;
    int nfiles;
    pn_safetensors *files;
} pn_checkpoint;

int pn_ckpt_open(pn_checkpoint *ck, const char *dir);
void pn_ckpt_close(pn_checkpoint *ck);
// The entry named `name` (and its file through *file), or NULL.
const pn_st_entry *pn_ckpt_find(const pn_checkpoint *ck, const char *name, const pn_safetensors **file);

#endif
