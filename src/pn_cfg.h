// pn_cfg: experiment configs in YAML (libfyaml), read against a schema written once in the code.
//
// A schema is a table of keys (dotted paths such as "train.lr"), each with its type, default, range or
// choices, one line of documentation and where its value lives in the caller's struct. Everything a user
// can get wrong is one error line naming file:line:column: an unknown key (the closest known key
// suggested), a value of the wrong type, a number out of range, a choice that is not one, YAML that does
// not parse, anchors/aliases/tags (not part of this format), more than one document; a required key
// missing names the file and the key. `--set a.b=v` overrides (v is YAML: `--set data.train=[a.h5,b.h5]`)
// go through the same checks. The resolved config writes back as YAML (every key, defaults included) that
// reads back to the same values, and the schema prints as a Markdown reference, so the documentation is
// generated from the very table the parser uses.
#ifndef PN_CFG_H
#define PN_CFG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
    PN_CFG_STRING, // char[size]; "" = unset when the default is ""
    PN_CFG_INT,    // int or int64_t (by size) in [lo, hi]
    PN_CFG_FLOAT,  // double in [lo, hi], finite
    PN_CFG_BOOL,   // int: true / false
    PN_CFG_CHOICE, // char[size], one of `choices` ("a|b|c")
    PN_CFG_LIST,   // char[size]: a YAML sequence of strings (or one string), joined by PN_CFG_LIST_SEP
} pn_cfg_type;

// The separator of a LIST value's items: the unit separator, which no config text may contain (control
// characters are refused), so an item may hold any other character, newlines included.
#define PN_CFG_LIST_SEP '\x1f'

typedef struct pn_cfg_key {
    const char *path;    // "train.lr"
    pn_cfg_type type;
    const char *def;     // the default as YAML text; NULL = required
    double lo, hi;       // INT / FLOAT range
    const char *choices; // CHOICE: "pretrain|distill"
    size_t offset, size; // where in the struct, and the field's size
    int run_only;        // 1: does not change the numbers a run computes (out_dir, logging, checkpoint
                         // cadence); left out of pn_cfg_hash / pn_cfg_diff, so a resume may change it
    const char *doc;     // one line for the reference
} pn_cfg_key;

// Schema rows for a struct type S (offsetof/sizeof of the named field).
#define PN_CFG_FIELD(S, f) offsetof(S, f), sizeof(((S *)0)->f)
#define PN_CFG_STR(S, path, f, def, run_only, doc) {path, PN_CFG_STRING, def, 0, 0, NULL, PN_CFG_FIELD(S, f), run_only, doc}
#define PN_CFG_I(S, path, f, def, lo, hi, run_only, doc) {path, PN_CFG_INT, def, lo, hi, NULL, PN_CFG_FIELD(S, f), run_only, doc}
#define PN_CFG_F(S, path, f, def, lo, hi, doc) {path, PN_CFG_FLOAT, def, lo, hi, NULL, PN_CFG_FIELD(S, f), 0, doc}
#define PN_CFG_B(S, path, f, def, doc) {path, PN_CFG_BOOL, def, 0, 1, NULL, PN_CFG_FIELD(S, f), 0, doc}
#define PN_CFG_C(S, path, f, def, choices, doc) {path, PN_CFG_CHOICE, def, 0, 0, choices, PN_CFG_FIELD(S, f), 0, doc}
#define PN_CFG_L(S, path, f, def, doc) {path, PN_CFG_LIST, def, 0, 0, NULL, PN_CFG_FIELD(S, f), 0, doc}

// Largest config file read (a config is a page of text; anything bigger is not one).
#define PN_CFG_MAX_BYTES (1 << 20)
// Longest dotted key path.
#define PATH_MAX_KEY 256

// Fill `out` from the defaults, then the YAML file (NULL: none), then the overrides ("a.b=v", n of them,
// applied in order), then check that every required key has a value. 0, or -1 with the error set
// ("<file>:<line>:<col>: ..." for the file, "--set <a.b=v>: ..." for an override).
int pn_cfg_load(const pn_cfg_key *schema, int nkeys, void *out, const char *path, const char *const *overrides,
                int noverrides);
// The same from YAML text in memory (`name` stands for the file in messages).
int pn_cfg_load_string(const pn_cfg_key *schema, int nkeys, void *out, const char *name, const char *text,
                       size_t len, const char *const *overrides, int noverrides);
// The resolved config as YAML (every key, nested mappings, schema order), to f.
void pn_cfg_write_yaml(const pn_cfg_key *schema, int nkeys, const void *cfg, FILE *f);
// The reference: a Markdown table of every key (key, type, default, allowed values, meaning).
void pn_cfg_write_markdown(const pn_cfg_key *schema, int nkeys, FILE *f);
// FNV-1a over the values of every key that is not run_only (what a checkpoint records).
uint64_t pn_cfg_hash(const pn_cfg_key *schema, int nkeys, const void *cfg);
// The first key (not run_only) whose value differs between a and b, or NULL when none does.
const pn_cfg_key *pn_cfg_diff(const pn_cfg_key *schema, int nkeys, const void *a, const void *b);
// One key's value as YAML text (what the writer prints), for messages.
void pn_cfg_format(const pn_cfg_key *k, const void *cfg, char *buf, size_t cap);
// Items of a LIST value: count, and item i copied into buf (NUL-terminated). -1 if i is out of range.
int pn_cfg_list_count(const char *list);
int pn_cfg_list_item(const char *list, int i, char *buf, size_t cap);

// ---- sweeps (postnas-sweep) ----
// A config may hold a top-level `sweep:` section, which the tools' own loading skips:
//   sweep:
//     command: train            # or search: the tool each trial runs
//     grid: {train.lr: [1.0e-3, 3.0e-3], supernet.k_full: [1, 2]}   # every combination
//     zip: {a.b: [x, y], c.d: [u, v]}                                # varied together (equal lengths)
//     metrics: [loss]           # what the results table gathers (default: the tool's headline numbers)
// Trials: the grid's product times the zip's length; each trial's overrides are key=value (YAML text, a
// list value in flow style), applied like --set.
#define PN_CFG_SWEEP_MAX_AXES 16
#define PN_CFG_SWEEP_MAX_VALUES 256
typedef struct pn_cfg_sweep_axis {
    char key[PATH_MAX_KEY];
    int n;
    char **values;
} pn_cfg_sweep_axis;
typedef struct pn_cfg_sweep {
    char command[16], out_dir[1024]; // out_dir: the config's own (the trials go under it)
    int n_grid, n_zip, n_metrics;
    pn_cfg_sweep_axis grid[PN_CFG_SWEEP_MAX_AXES], zip[PN_CFG_SWEEP_MAX_AXES];
    char metrics[PN_CFG_SWEEP_MAX_AXES][64];
} pn_cfg_sweep;
// Reads the sweep section of a config file. 0, or -1 with the error set (file:line:column).
int pn_cfg_sweep_load(const char *path, pn_cfg_sweep *sw);
void pn_cfg_sweep_free(pn_cfg_sweep *sw);
// The number of trials, and trial t's overrides (keys and values, pointers into sw; returns their count).
int pn_cfg_sweep_trials(const pn_cfg_sweep *sw);
int pn_cfg_sweep_trial(const pn_cfg_sweep *sw, int t, const char **keys, const char **values);

#endif
