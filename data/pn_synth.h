// pn_synth: built-in synthetic tasks and a small training corpus, made on the spot (no download), for the
// embedded demo and the tests (DESIGN.md).
//
// Every generator is a pure function of (seed, index): item i draws only from its own pn_rng counter
// stream (stream = hash of the task and i), so any item can be made alone, in any order, on any thread,
// and the same (seed, index) gives the same bytes everywhere. Texts are printable ASCII, short and
// regular, so a byte-level vocabulary and a tiny model can learn them on a laptop CPU in minutes.
//
// The one convention to know: a generation item's prompt never ends in a space, its answer is the exact
// continuation including the leading space (" 48213"), generation stops at "\n" (REFERENCE.md §7,
// retrieval), and the task's training document is prompt + answer + "\n". An eval prompt is therefore a
// prefix of the kind of document the model was trained on: the demo measures recall, not format guessing.
// Multiple-choice items follow lm-evaluation-harness: choices carry no leading space (the harness adds
// the " " target delimiter) and are scored by log-likelihood after the query.
#ifndef PN_SYNTH_H
#define PN_SYNTH_H

#include <stdint.h>

// One task item; which pointers are set says its kind:
//   generation      prompt + answer (choices NULL, gold -1)
//   multiple choice prompt (the query) + choices[n_choices] + gold (answer NULL)
//   text            prompt only: a whole training document
typedef struct pn_synth_item {
    const char *task; // static name ("mqar", "recall", "passkey", "copy", "repeat", "facts", ...); never freed
    char *prompt;
    char *answer;
    char **choices;
    int n_choices, gold;
} pn_synth_item;

void pn_synth_item_free(pn_synth_item *it); // frees the strings, leaves an empty item (gold -1)
// The training document of an item (malloc'd): prompt + answer + "\n" for generation, query + " " +
// gold choice + "\n" for multiple choice, the text itself for text items.
char *pn_synth_item_doc(const pn_synth_item *it);

// Generators fill *out and return 0, or return -1 with the error set for parameters out of range
// (*out is then zeroed). All of them are thread-safe.

// Multi-query associative recall. n_pairs keys ("k3f": letter, digit, letter) with distinct two-digit
// values (10..99), one line "k3f:72 a9x:15 ...", then n_queries lines "q: KEY -> VALUE" asking distinct
// keys in random order. The eval item's prompt stops at the last query ("q: a9x ->"), answer " 15"; the
// earlier answered queries show the format. 1 <= n_pairs <= 64, 1 <= n_queries <= n_pairs.
// 8 pairs and 4 queries make about 110 bytes.
int pn_synth_mqar(uint64_t seed, uint64_t index, int n_pairs, int n_queries, pn_synth_item *out);

// Single-token associative recall (the MQAR of Zoology, Arora et al. 2023, on a byte vocabulary): n_pairs
// distinct lowercase letters, each with a distinct digit, "a4 k7 z1 m3", then n_queries queries "|KV" of
// distinct keys in random order. The eval item's prompt stops at the last query's key
// ("a4 k7 z1 m3|k7|z"), the answer is the digit ("1": the exact continuation, which here has no leading
// space; eval stops at "|" as well as "\n"). Keys and values are one token each in a byte vocabulary, so one
// induction head (find the earlier copy of the key, emit what followed it) answers every query: a tiny teacher
// learns it on a laptop in minutes, where mqar's three-byte keys and two-digit values take it far longer.
// 1 <= n_pairs <= 10, 1 <= n_queries <= n_pairs. 8 pairs and 4 queries make 35 bytes.
int pn_synth_recall(uint64_t seed, uint64_t index, int n_pairs, int n_queries, pn_synth_item *out);

// Repeats (a text item, for training): a random string of printable non-space characters, its length drawn
// from [PN_SYNTH_REPEAT_MIN, PN_SYNTH_REPEAT_MAX], then once or twice a gap of 0 to 4 random characters and
// the string again; ends in "\n". Every character of a repeat after its first is predictable only by looking
// back at the earlier copy: the text that grows the induction heads recall needs (Olsson et al. 2022).
#define PN_SYNTH_REPEAT_MIN 4
#define PN_SYNTH_REPEAT_MAX 24
int pn_synth_repeat(uint64_t seed, uint64_t index, pn_synth_item *out);

// Passkey retrieval. n_filler_sentences filler sentences (each with exactly one '.' and no digit) with
// "The pass key is 48213. Remember it." placed after round(depth * n) of them, then
// "\nWhat is the pass key? The pass key is" → answer " 48213". 0 <= n <= 4096, depth in [0, 1].
int pn_synth_passkey(uint64_t seed, uint64_t index, int n_filler_sentences, double depth, pn_synth_item *out);

// Copying: `length` random lowercase letters, then the marker '|'; answer = the same letters.
// 1 <= length <= 4096.
int pn_synth_copy(uint64_t seed, uint64_t index, int length, pn_synth_item *out);

// ---- The facts world: entities with attributes, for knowledge-style (MMLU-like) questions ----

enum { PN_SYNTH_CITY, PN_SYNTH_COLOR, PN_SYNTH_NUMBER, PN_SYNTH_PROFESSION, PN_SYNTH_N_ATTRS };

typedef struct pn_synth_entity {
    char name[16];                        // pronounceable, capitalized ("Tavemo"), unique in the world
    char attr[PN_SYNTH_N_ATTRS][16];      // "Oslo", "green", "37", "baker"
} pn_synth_entity;

typedef struct pn_synth_world {
    uint64_t seed;
    int n_entities;
    pn_synth_entity *entities;
} pn_synth_world;

// Entity e is drawn from (seed, e); a name that repeats an earlier one (or an attribute word) is redrawn
// from the same stream, so a world is a pure function of (seed, n_entities). 1 <= n_entities <= 20000.
// NULL with the error set when out of range.
pn_synth_world *pn_synth_world_new(uint64_t seed, int n_entities);
void pn_synth_world_free(pn_synth_world *w);
const char *pn_synth_attr_name(int attr); // "city", "color", "number", "profession"

// A one-line paragraph (malloc'd, ends in "\n") stating all four attributes of entity index % n, in a
// random order and with templates drawn per document. Documents 0..n-1 cover every entity once.
char *pn_synth_facts_doc(const pn_synth_world *w, uint64_t index);

// Which entity and attribute multiple-choice item `index` asks about (entity index % n, attribute drawn).
void pn_synth_facts_mc_target(const pn_synth_world *w, uint64_t index, int *entity, int *attr);
// A 4-choice question about that attribute: query "Question: Where does Tavemo live?\nAnswer:", the
// correct value and 3 distinct distractors of the same attribute in random order, gold = its position.
int pn_synth_facts_mc(const pn_synth_world *w, uint64_t index, pn_synth_item *out);

// ---- A mixed training corpus ----

// Document `index` of the demo's training corpus (malloc'd, ends in "\n"). Kinds come in a fixed pattern
// of 20: 8 facts documents (walking through the world's entities), 6 mqar, 3 passkey, 3 copy documents
// (40/30/15/15 %, exact over any 20 consecutive documents). Task sizes vary per document within
// PN_SYNTH_CORPUS_* below so eval items of those sizes are in distribution. The corpus draws from a seed
// derived from the world's seed, so it never repeats an eval item made with the world's seed.
// *task_out (if not NULL) receives the kind's static name.
#define PN_SYNTH_CORPUS_MQAR_PAIRS_MIN 2
#define PN_SYNTH_CORPUS_MQAR_PAIRS_MAX 12
#define PN_SYNTH_CORPUS_MQAR_QUERIES_MAX 4
#define PN_SYNTH_CORPUS_PASSKEY_FILLER_MIN 2
#define PN_SYNTH_CORPUS_PASSKEY_FILLER_MAX 8
#define PN_SYNTH_CORPUS_COPY_MIN 4
#define PN_SYNTH_CORPUS_COPY_MAX 24
char *pn_synth_corpus_doc(const pn_synth_world *w, uint64_t index, const char **task_out);

// ---- One entry point for tools and configs ----

typedef enum pn_synth_task {
    PN_SYNTH_MQAR,     // generation
    PN_SYNTH_PASSKEY,  // generation
    PN_SYNTH_COPY,     // generation
    PN_SYNTH_FACTS_MC, // multiple choice
    PN_SYNTH_FACTS,    // text: facts documents
    PN_SYNTH_CORPUS,   // text: the mixed corpus
    PN_SYNTH_RECALL,   // generation
    PN_SYNTH_REPEAT,   // text: repeated random strings
    PN_SYNTH_N_TASKS
} pn_synth_task;

typedef struct pn_synth_spec {
    pn_synth_task task;
    uint64_t seed;               // mqar, passkey, copy, recall, repeat (facts and corpus use world->seed)
    int n_pairs, n_queries;      // mqar, recall
    int n_filler;                // passkey
    double depth;                // passkey: in [0, 1], or < 0 for a depth drawn per item from (seed, index)
    int length;                  // copy
    const pn_synth_world *world; // facts_mc, facts, corpus
    int as_text;                 // pn_synth_write_jsonl: every item as a training document {"text"}
} pn_synth_spec;

const char *pn_synth_task_name(pn_synth_task t);
// "mqar", "passkey", "copy", "facts_mc", "facts", "corpus", "recall", "repeat"; -1 with an error listing them
// otherwise.
int pn_synth_task_parse(const char *name, pn_synth_task *out);
// The demo's sizes: mqar and recall 8 pairs / 4 queries, passkey 8 fillers at a per-item depth, copy 16;
// world NULL.
pn_synth_spec pn_synth_spec_default(pn_synth_task task, uint64_t seed);

// Item `index` of the spec's task (corpus and facts give text items).
int pn_synth_generate(const pn_synth_spec *spec, uint64_t index, pn_synth_item *out);

// Items first .. first+n-1 as JSONL with lm-evaluation-harness field names: multiple choice
// {"query", "choices", "gold"}, generation {"context", "answer"}, text {"text"}; with spec->as_text every
// item as the document a corpus would hold ({"text": pn_synth_item_doc}). Written atomically
// (temporary file, fsync, rename); on any error no file is left at path. 0, or -1 with the error set
// (naming the file).
int pn_synth_write_jsonl(const char *path, const pn_synth_spec *spec, uint64_t first, uint64_t n);

#endif
