// pn_synth: synthetic tasks and the demo corpus (see pn_synth.h for the conventions).
//
// Randomness: each item owns one pn_rng counter stream, selected by a hash of (task tag, index) and read
// from counter 0 upwards. Nothing is shared between items, so rejection sampling inside an item (keys,
// names, distractors) may consume any number of draws without shifting any other item. The word lists
// below are constants; changing one changes every generated text, so treat them like a file format.
#include "pn_synth.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../src/pn_common.h"
#include "../src/pn_rng.h"

// Stream tags: one per kind of draw, so e.g. mqar item 5 and passkey item 5 of one seed are unrelated.
enum {
    TAG_MQAR = 1,
    TAG_PASSKEY,
    TAG_PASSKEY_DEPTH,
    TAG_COPY,
    TAG_NAME,
    TAG_ATTR,
    TAG_FACTS_DOC,
    TAG_FACTS_MC,
    TAG_CORPUS,
    TAG_RECALL,
    TAG_REPEAT,
};

// ---- random draws ----

typedef struct {
    uint64_t seed, stream, n;
} synth_rng;

static synth_rng rng_for(uint64_t seed, uint64_t tag, uint64_t index) {
    // splitmix64 is a bijection, so distinct indices of one tag always get distinct streams.
    return (synth_rng){seed, pn_splitmix64(pn_splitmix64(tag) + index), 0};
}

static double rng_unit(synth_rng *r) { return pn_rng_uniform(r->seed, r->stream, r->n++); }

// Uniform integer in [0, n). The bias of scaling a 53-bit uniform is far below anything a test could see
// for the small n used here.
static uint32_t rng_below(synth_rng *r, uint32_t n) {
    uint32_t k = (uint32_t)(rng_unit(r) * n);
    return k < n ? k : n - 1;
}

// Puts k distinct elements of a[0..n) drawn uniformly, in random order, in a[0..k) (partial Fisher-Yates).
static void rng_pick(synth_rng *r, int *a, int n, int k) {
    for (int i = 0; i < k; i++) {
        int j = i + (int)rng_below(r, (uint32_t)(n - i));
        int t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

// ---- a growing string ----

typedef struct {
    char *p;
    size_t n, cap;
} sbuf;

static void sb_putn(sbuf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 128;
        while (cap < b->n + n + 1) cap *= 2;
        b->p = pn_realloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void sb_puts(sbuf *b, const char *s) { sb_putn(b, s, strlen(s)); }
static void sb_putc(sbuf *b, char c) { sb_putn(b, &c, 1); }

__attribute__((format(printf, 2, 3))) static void sb_printf(sbuf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    PN_ASSERT(n >= 0 && (size_t)n < sizeof tmp); // only short fragments are formatted
    sb_putn(b, tmp, (size_t)n);
}

// Never NULL, even for an empty text, so callers can treat every field as a string.
static char *sb_take(sbuf *b) {
    if (!b->p) sb_putn(b, "", 0);
    return b->p;
}

// Templates name their slots "{0}".."{9}"; a template can use its values in any order, which printf
// formats could not do portably.
static void sb_expand(sbuf *b, const char *tmpl, const char *const *vals) {
    for (const char *s = tmpl; *s; s++) {
        if (s[0] == '{' && s[1] >= '0' && s[1] <= '9' && s[2] == '}') {
            sb_puts(b, vals[s[1] - '0']);
            s += 2;
        } else {
            sb_putc(b, *s);
        }
    }
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

// ---- items ----

void pn_synth_item_free(pn_synth_item *it) {
    if (!it) return;
    free(it->prompt);
    free(it->answer);
    for (int i = 0; i < it->n_choices; i++) free(it->choices[i]);
    free(it->choices);
    memset(it, 0, sizeof *it);
    it->gold = -1;
}

char *pn_synth_item_doc(const pn_synth_item *it) {
    sbuf b = {0};
    sb_puts(&b, it->prompt ? it->prompt : "");
    if (it->choices && it->gold >= 0 && it->gold < it->n_choices) {
        sb_putc(&b, ' '); // lm-evaluation-harness's target delimiter
        sb_puts(&b, it->choices[it->gold]);
        sb_putc(&b, '\n');
    } else if (it->answer) {
        sb_puts(&b, it->answer);
        sb_putc(&b, '\n');
    }
    return sb_take(&b);
}

static void item_zero(pn_synth_item *out) {
    memset(out, 0, sizeof *out);
    out->gold = -1;
}

// ---- multi-query associative recall ----

#define MQAR_MAX_PAIRS 64
#define MQAR_N_VALUES 90 // two-digit values 10..99: always two bytes, never a leading zero

// The sizes of an associative-recall task (mqar, recall): 0, or -1 with the error set.
static int check_pairs(const char *task, int n_pairs, int max_pairs, int n_queries) {
    if (n_pairs < 1 || n_pairs > max_pairs) return pn_errorf("%s: n_pairs %d out of range [1, %d]", task, n_pairs, max_pairs);
    if (n_queries < 1 || n_queries > n_pairs)
        return pn_errorf("%s: n_queries %d out of range [1, n_pairs = %d]", task, n_queries, n_pairs);
    return 0;
}

int pn_synth_mqar(uint64_t seed, uint64_t index, int n_pairs, int n_queries, pn_synth_item *out) {
    item_zero(out);
    if (check_pairs("mqar", n_pairs, MQAR_MAX_PAIRS, n_queries)) return -1;
    synth_rng r = rng_for(seed, TAG_MQAR, index);

    // Keys letter-digit-letter (6760 of them): redraw a repeat, since a repeated key has two answers.
    char keys[MQAR_MAX_PAIRS][4];
    for (int i = 0; i < n_pairs; i++) {
        for (;;) {
            keys[i][0] = (char)('a' + rng_below(&r, 26));
            keys[i][1] = (char)('0' + rng_below(&r, 10));
            keys[i][2] = (char)('a' + rng_below(&r, 26));
            keys[i][3] = 0;
            int dup = 0;
            for (int j = 0; j < i && !dup; j++) dup = !memcmp(keys[i], keys[j], 3);
            if (!dup) break;
        }
    }
    // Distinct values (partial Fisher-Yates), so a value also identifies its key: the prompt cannot be
    // answered by guessing the most frequent value.
    int pool[MQAR_N_VALUES];
    for (int j = 0; j < MQAR_N_VALUES; j++) pool[j] = 10 + j;
    rng_pick(&r, pool, MQAR_N_VALUES, n_pairs);
    // Queries ask distinct keys in an order unrelated to the pairs' order.
    int order[MQAR_MAX_PAIRS];
    for (int i = 0; i < n_pairs; i++) order[i] = i;
    rng_pick(&r, order, n_pairs, n_queries);

    sbuf b = {0};
    for (int i = 0; i < n_pairs; i++) sb_printf(&b, "%s%s:%d", i ? " " : "", keys[i], pool[i]);
    sb_putc(&b, '\n');
    for (int q = 0; q < n_queries - 1; q++) sb_printf(&b, "q: %s -> %d\n", keys[order[q]], pool[order[q]]);
    int last = order[n_queries - 1];
    sb_printf(&b, "q: %s ->", keys[last]);
    out->task = "mqar";
    out->prompt = sb_take(&b);
    sbuf a = {0};
    sb_printf(&a, " %d", pool[last]);
    out->answer = sb_take(&a);
    return 0;
}

// ---- single-token associative recall ----

#define RECALL_MAX_PAIRS 10 // distinct digit values

int pn_synth_recall(uint64_t seed, uint64_t index, int n_pairs, int n_queries, pn_synth_item *out) {
    item_zero(out);
    if (check_pairs("recall", n_pairs, RECALL_MAX_PAIRS, n_queries)) return -1;
    synth_rng r = rng_for(seed, TAG_RECALL, index);
    // Distinct keys and distinct values: a key has one answer, and no value is a better guess than another.
    int keys[26], vals[10], order[RECALL_MAX_PAIRS];
    for (int i = 0; i < 26; i++) keys[i] = 'a' + i;
    for (int i = 0; i < 10; i++) vals[i] = '0' + i;
    rng_pick(&r, keys, 26, n_pairs);
    rng_pick(&r, vals, 10, n_pairs);
    for (int i = 0; i < n_pairs; i++) order[i] = i;
    rng_pick(&r, order, n_pairs, n_queries);
    sbuf b = {0};
    for (int i = 0; i < n_pairs; i++) sb_printf(&b, "%s%c%c", i ? " " : "", keys[i], vals[i]);
    for (int q = 0; q < n_queries - 1; q++) sb_printf(&b, "|%c%c", keys[order[q]], vals[order[q]]);
    sb_printf(&b, "|%c", keys[order[n_queries - 1]]);
    out->task = "recall";
    out->prompt = sb_take(&b);
    sbuf a = {0};
    sb_putc(&a, (char)vals[order[n_queries - 1]]);
    out->answer = sb_take(&a);
    return 0;
}

// ---- repeats ----

int pn_synth_repeat(uint64_t seed, uint64_t index, pn_synth_item *out) {
    item_zero(out);
    synth_rng r = rng_for(seed, TAG_REPEAT, index);
    char s[PN_SYNTH_REPEAT_MAX];
    const int len = PN_SYNTH_REPEAT_MIN + (int)rng_below(&r, PN_SYNTH_REPEAT_MAX - PN_SYNTH_REPEAT_MIN + 1);
    for (int i = 0; i < len; i++) s[i] = (char)('!' + rng_below(&r, 94)); // '!' .. '~'
    sbuf b = {0};
    sb_putn(&b, s, (size_t)len);
    for (int rep = 1 + (int)rng_below(&r, 2); rep > 0; rep--) {
        for (int g = (int)rng_below(&r, 5); g > 0; g--) sb_putc(&b, (char)('!' + rng_below(&r, 94)));
        sb_putn(&b, s, (size_t)len);
    }
    sb_putc(&b, '\n');
    out->task = "repeat";
    out->prompt = sb_take(&b);
    return 0;
}

// ---- passkey retrieval ----

// Filler: each template has exactly one '.' and no digit, so the pass key is the only number in the text
// and a sentence count is a period count.
static const char *const filler_templates[] = {
    "The {0} {1} sleeps by the {2}.",
    "A {1} walks across the {2}.",
    "The {2} is {3} today.",
    "We saw a {0} {1} near the {2}.",
    "The wind blows over the {2}.",
    "It is a {3} day at the {2}.",
};
static const char *const filler_colors[] = {"red", "blue", "green", "gray", "brown", "white"};
static const char *const filler_animals[] = {"cat", "dog", "fox", "owl", "goat", "duck", "bear", "hen"};
static const char *const filler_places[] = {"park", "river", "hill", "barn", "field", "road", "lake", "town"};
static const char *const filler_adjs[] = {"quiet", "warm", "cold", "calm", "bright", "dark"};

static void filler_sentence(sbuf *b, synth_rng *r) {
    // Always four value draws, whatever the template uses: keeps the stream layout uniform.
    const char *t = filler_templates[rng_below(r, COUNT(filler_templates))];
    const char *vals[4] = {filler_colors[rng_below(r, COUNT(filler_colors))],
                           filler_animals[rng_below(r, COUNT(filler_animals))],
                           filler_places[rng_below(r, COUNT(filler_places))],
                           filler_adjs[rng_below(r, COUNT(filler_adjs))]};
    sb_expand(b, t, vals);
}

#define PASSKEY_MAX_FILLER 4096

int pn_synth_passkey(uint64_t seed, uint64_t index, int n_filler, double depth, pn_synth_item *out) {
    item_zero(out);
    if (n_filler < 0 || n_filler > PASSKEY_MAX_FILLER)
        return pn_errorf("passkey: n_filler_sentences %d out of range [0, %d]", n_filler, PASSKEY_MAX_FILLER);
    if (!(depth >= 0.0 && depth <= 1.0)) return pn_errorf("passkey: depth %g outside [0, 1]", depth);
    synth_rng r = rng_for(seed, TAG_PASSKEY, index);
    int key = 10000 + (int)rng_below(&r, 90000); // five digits, no leading zero
    int at = (int)lround(depth * n_filler);
    sbuf b = {0};
    for (int s = 0; s <= n_filler; s++) {
        if (s == at) sb_printf(&b, "%sThe pass key is %d. Remember it.", s ? " " : "", key);
        if (s == n_filler) break;
        if (b.n) sb_putc(&b, ' ');
        filler_sentence(&b, &r);
    }
    sb_puts(&b, "\nWhat is the pass key? The pass key is");
    out->task = "passkey";
    out->prompt = sb_take(&b);
    sbuf a = {0};
    sb_printf(&a, " %d", key);
    out->answer = sb_take(&a);
    return 0;
}

// ---- copying ----

#define COPY_MAX 4096

int pn_synth_copy(uint64_t seed, uint64_t index, int length, pn_synth_item *out) {
    item_zero(out);
    if (length < 1 || length > COPY_MAX) return pn_errorf("copy: length %d out of range [1, %d]", length, COPY_MAX);
    synth_rng r = rng_for(seed, TAG_COPY, index);
    char *s = pn_malloc((size_t)length + 2);
    for (int i = 0; i < length; i++) s[i] = (char)('a' + rng_below(&r, 26));
    s[length] = 0;
    out->task = "copy";
    out->answer = pn_strdup(s);
    // The marker is not a letter, so the model cannot mistake where the string ends.
    s[length] = '|';
    s[length + 1] = 0;
    out->prompt = s;
    return 0;
}

// ---- the facts world ----

static const char *const world_cities[] = {"Oslo",  "Lima",  "Cairo", "Rome",  "Paris", "Tokyo",
                                           "Delhi", "Quito", "Accra", "Dakar", "Hanoi", "Kyiv"};
static const char *const world_colors[] = {"red",    "blue",  "green", "yellow", "purple",
                                           "orange", "black", "white", "brown",  "gray"};
static const char *const world_professions[] = {"baker",  "farmer", "doctor", "teacher", "painter", "sailor",
                                                "pilot",  "lawyer", "nurse",  "engineer", "artist", "writer"};
#define WORLD_NUMBER_MIN 10
#define WORLD_NUMBER_COUNT 90

static const char *const attr_names[PN_SYNTH_N_ATTRS] = {"city", "color", "number", "profession"};

const char *pn_synth_attr_name(int attr) {
    return attr >= 0 && attr < PN_SYNTH_N_ATTRS ? attr_names[attr] : "unknown";
}

static int attr_count(int attr) {
    switch (attr) {
    case PN_SYNTH_CITY: return (int)COUNT(world_cities);
    case PN_SYNTH_COLOR: return (int)COUNT(world_colors);
    case PN_SYNTH_NUMBER: return WORLD_NUMBER_COUNT;
    default: return (int)COUNT(world_professions);
    }
}

// Value i of an attribute's list, written into buf (numbers are formatted, the rest copied).
static void attr_value(int attr, int i, char buf[16]) {
    switch (attr) {
    case PN_SYNTH_CITY: snprintf(buf, 16, "%s", world_cities[i]); break;
    case PN_SYNTH_COLOR: snprintf(buf, 16, "%s", world_colors[i]); break;
    case PN_SYNTH_NUMBER: snprintf(buf, 16, "%d", WORLD_NUMBER_MIN + i); break;
    default: snprintf(buf, 16, "%s", world_professions[i]); break;
    }
}

// A name that spells a city ("Lima", "Rome" are valid syllable strings) or another attribute word would
// make "Where does Lima live?" ambiguous, so those are refused.
static int name_reserved(const char *name) {
    for (size_t i = 0; i < COUNT(world_cities); i++)
        if (!strcasecmp(name, world_cities[i])) return 1;
    for (size_t i = 0; i < COUNT(world_colors); i++)
        if (!strcasecmp(name, world_colors[i])) return 1;
    for (size_t i = 0; i < COUNT(world_professions); i++)
        if (!strcasecmp(name, world_professions[i])) return 1;
    return 0;
}

// 2-3 consonant-vowel syllables and sometimes a soft final consonant: "Tavemo", "Kilon", "Rasubin".
// About 1.7 million names, so a redraw is rare even for the largest world.
static void draw_name(synth_rng *r, char name[16]) {
    static const char cons[] = "bdfgklmnprstvz", vows[] = "aeiou", finals[] = "nlrs";
    int n = 0, syl = 2 + (int)rng_below(r, 2);
    for (int s = 0; s < syl; s++) {
        name[n++] = cons[rng_below(r, sizeof cons - 1)];
        name[n++] = vows[rng_below(r, sizeof vows - 1)];
    }
    if (rng_below(r, 5) < 2) name[n++] = finals[rng_below(r, sizeof finals - 1)];
    name[n] = 0;
    name[0] = (char)(name[0] - 'a' + 'A');
}

static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ull; // FNV-1a
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

#define WORLD_MAX_ENTITIES 20000

pn_synth_world *pn_synth_world_new(uint64_t seed, int n_entities) {
    if (n_entities < 1 || n_entities > WORLD_MAX_ENTITIES) {
        pn_errorf("facts world: n_entities %d out of range [1, %d]", n_entities, WORLD_MAX_ENTITIES);
        return NULL;
    }
    pn_synth_world *w = pn_calloc(1, sizeof *w);
    w->seed = seed;
    w->n_entities = n_entities;
    w->entities = pn_calloc((size_t)n_entities, sizeof *w->entities);
    // Open-addressing set of entity indices by name; load factor <= 1/4.
    size_t cap = 1;
    while (cap < 4 * (size_t)n_entities) cap *= 2;
    int *slot = pn_malloc(cap * sizeof *slot);
    for (size_t i = 0; i < cap; i++) slot[i] = -1;

    for (int e = 0; e < n_entities; e++) {
        pn_synth_entity *ent = &w->entities[e];
        synth_rng rn = rng_for(seed, TAG_NAME, (uint64_t)e);
        for (int attempt = 0;; attempt++) {
            if (attempt == 10000) pn_panic("facts world: no free name for entity %d", e); // 1.7M names
            draw_name(&rn, ent->name);
            if (name_reserved(ent->name)) continue;
            size_t h = (size_t)name_hash(ent->name) & (cap - 1);
            int taken = 0;
            for (; slot[h] >= 0; h = (h + 1) & (cap - 1))
                if (!strcmp(w->entities[slot[h]].name, ent->name)) {
                    taken = 1;
                    break;
                }
            if (taken) continue;
            slot[h] = e;
            break;
        }
        synth_rng ra = rng_for(seed, TAG_ATTR, (uint64_t)e);
        for (int a = 0; a < PN_SYNTH_N_ATTRS; a++) attr_value(a, (int)rng_below(&ra, (uint32_t)attr_count(a)), ent->attr[a]);
    }
    free(slot);
    return w;
}

void pn_synth_world_free(pn_synth_world *w) {
    if (!w) return;
    free(w->entities);
    free(w);
}

// Facts templates, slots {0} name, {1} value, {2} article ("a"/"an", professions only). Three phrasings
// per attribute, so the model has to learn the fact rather than one sentence.
static const char *const fact_templates[PN_SYNTH_N_ATTRS][3] = {
    {"{0} lives in {1}.", "{0} is from {1}.", "{0} has a house in {1}."},
    {"{0}'s favorite color is {1}.", "{0} likes the color {1}.", "The favorite color of {0} is {1}."},
    {"{0}'s lucky number is {1}.", "The lucky number of {0} is {1}.", "{0} always picks the number {1}."},
    {"{0} works as {2} {1}.", "{0} is {2} {1} by trade.", "{0} earns a living as {2} {1}."},
};

static const char *const question_templates[PN_SYNTH_N_ATTRS] = {
    "Question: Where does {0} live?\nAnswer:",
    "Question: What is the favorite color of {0}?\nAnswer:",
    "Question: What is the lucky number of {0}?\nAnswer:",
    "Question: What does {0} do for a living?\nAnswer:",
};

static const char *article(const char *word) { return strchr("aeiouAEIOU", word[0]) ? "an" : "a"; }

char *pn_synth_facts_doc(const pn_synth_world *w, uint64_t index) {
    PN_ASSERT(w && w->n_entities > 0);
    const pn_synth_entity *ent = &w->entities[index % (uint64_t)w->n_entities];
    synth_rng r = rng_for(w->seed, TAG_FACTS_DOC, index);
    int order[PN_SYNTH_N_ATTRS];
    for (int a = 0; a < PN_SYNTH_N_ATTRS; a++) order[a] = a;
    for (int a = PN_SYNTH_N_ATTRS - 1; a > 0; a--) {
        int j = (int)rng_below(&r, (uint32_t)a + 1);
        int t = order[a];
        order[a] = order[j];
        order[j] = t;
    }
    sbuf b = {0};
    for (int k = 0; k < PN_SYNTH_N_ATTRS; k++) {
        int a = order[k];
        const char *vals[3] = {ent->name, ent->attr[a], article(ent->attr[a])};
        if (k) sb_putc(&b, ' ');
        sb_expand(&b, fact_templates[a][rng_below(&r, 3)], vals);
    }
    sb_putc(&b, '\n');
    return sb_take(&b);
}

static synth_rng mc_setup(const pn_synth_world *w, uint64_t index, int *entity, int *attr) {
    synth_rng r = rng_for(w->seed, TAG_FACTS_MC, index);
    *entity = (int)(index % (uint64_t)w->n_entities);
    *attr = (int)rng_below(&r, PN_SYNTH_N_ATTRS);
    return r;
}

void pn_synth_facts_mc_target(const pn_synth_world *w, uint64_t index, int *entity, int *attr) {
    PN_ASSERT(w && w->n_entities > 0);
    mc_setup(w, index, entity, attr);
}

int pn_synth_facts_mc(const pn_synth_world *w, uint64_t index, pn_synth_item *out) {
    item_zero(out);
    if (!w || w->n_entities < 1) return pn_errorf("facts_mc: no facts world given");
    int e, a;
    synth_rng r = mc_setup(w, index, &e, &a);
    const pn_synth_entity *ent = &w->entities[e];
    // Three distinct wrong values of the same attribute: every choice is a plausible answer in form, so
    // only knowing the fact helps.
    char wrong[3][16];
    for (int k = 0; k < 3; k++) {
        for (;;) {
            attr_value(a, (int)rng_below(&r, (uint32_t)attr_count(a)), wrong[k]);
            int clash = !strcmp(wrong[k], ent->attr[a]);
            for (int j = 0; j < k && !clash; j++) clash = !strcmp(wrong[k], wrong[j]);
            if (!clash) break;
        }
    }
    out->task = "facts_mc";
    out->gold = (int)rng_below(&r, 4);
    out->n_choices = 4;
    out->choices = pn_calloc(4, sizeof *out->choices);
    for (int c = 0, k = 0; c < 4; c++) out->choices[c] = pn_strdup(c == out->gold ? ent->attr[a] : wrong[k++]);
    sbuf b = {0};
    const char *vals[1] = {ent->name};
    sb_expand(&b, question_templates[a], vals);
    out->prompt = sb_take(&b);
    return 0;
}

// ---- the mixed corpus ----

// Fixed interleaving of 20: F facts (8), M mqar (6), P passkey (3), C copy (3). Spread out rather than
// blocked, so any short run of documents (one training batch) already mixes the kinds.
static const char corpus_pattern[21] = "FMFPFMCFMFMPFMCFMFPC";

char *pn_synth_corpus_doc(const pn_synth_world *w, uint64_t index, const char **task_out) {
    PN_ASSERT(w && w->n_entities > 0);
    uint64_t pos = index % 20;
    char kind = corpus_pattern[pos];
    // A seed of its own: eval sets made with the world's seed never reappear in the training corpus.
    uint64_t cseed = pn_splitmix64(w->seed ^ 0x636f72707573ull);
    synth_rng r = rng_for(cseed, TAG_CORPUS, index);
    pn_synth_item it;
    int rc = 0;
    switch (kind) {
    case 'F': {
        // Number the facts documents consecutively so they walk through the entities in turn.
        uint64_t k = (index / 20) * 8;
        for (uint64_t p = 0; p < pos; p++) k += corpus_pattern[p] == 'F';
        if (task_out) *task_out = "facts";
        return pn_synth_facts_doc(w, k);
    }
    case 'M': {
        int pairs = PN_SYNTH_CORPUS_MQAR_PAIRS_MIN +
                    (int)rng_below(&r, PN_SYNTH_CORPUS_MQAR_PAIRS_MAX - PN_SYNTH_CORPUS_MQAR_PAIRS_MIN + 1);
        int qmax = pairs < PN_SYNTH_CORPUS_MQAR_QUERIES_MAX ? pairs : PN_SYNTH_CORPUS_MQAR_QUERIES_MAX;
        rc = pn_synth_mqar(cseed, index, pairs, 1 + (int)rng_below(&r, (uint32_t)qmax), &it);
        break;
    }
    case 'P': {
        int n = PN_SYNTH_CORPUS_PASSKEY_FILLER_MIN +
                (int)rng_below(&r, PN_SYNTH_CORPUS_PASSKEY_FILLER_MAX - PN_SYNTH_CORPUS_PASSKEY_FILLER_MIN + 1);
        rc = pn_synth_passkey(cseed, index, n, rng_unit(&r), &it);
        break;
    }
    default: {
        int len = PN_SYNTH_CORPUS_COPY_MIN + (int)rng_below(&r, PN_SYNTH_CORPUS_COPY_MAX - PN_SYNTH_CORPUS_COPY_MIN + 1);
        rc = pn_synth_copy(cseed, index, len, &it);
        break;
    }
    }
    PN_ASSERT(rc == 0); // sizes above are within every generator's range
    if (task_out) *task_out = it.task;
    char *doc = pn_synth_item_doc(&it);
    pn_synth_item_free(&it);
    return doc;
}

// ---- tasks by name, and JSONL ----

static const char *const task_names[PN_SYNTH_N_TASKS] = {"mqar",  "passkey", "copy",   "facts_mc",
                                                         "facts", "corpus",  "recall", "repeat"};

const char *pn_synth_task_name(pn_synth_task t) {
    return (int)t >= 0 && t < PN_SYNTH_N_TASKS ? task_names[t] : "unknown";
}

int pn_synth_task_parse(const char *name, pn_synth_task *out) {
    for (int t = 0; t < PN_SYNTH_N_TASKS; t++)
        if (!strcmp(name, task_names[t])) {
            *out = (pn_synth_task)t;
            return 0;
        }
    return pn_errorf("unknown synthetic task \"%s\" (expected mqar, passkey, copy, facts_mc, facts, corpus, recall or repeat)", name);
}

pn_synth_spec pn_synth_spec_default(pn_synth_task task, uint64_t seed) {
    return (pn_synth_spec){.task = task, .seed = seed, .n_pairs = 8, .n_queries = 4, .n_filler = 8,
                           .depth = -1.0, .length = 16, .world = NULL};
}

int pn_synth_generate(const pn_synth_spec *spec, uint64_t index, pn_synth_item *out) {
    item_zero(out);
    switch (spec->task) {
    case PN_SYNTH_MQAR: return pn_synth_mqar(spec->seed, index, spec->n_pairs, spec->n_queries, out);
    case PN_SYNTH_PASSKEY: {
        double depth = spec->depth;
        if (depth < 0) { // a spread of depths, each a function of (seed, index) alone
            synth_rng r = rng_for(spec->seed, TAG_PASSKEY_DEPTH, index);
            depth = rng_unit(&r);
        }
        return pn_synth_passkey(spec->seed, index, spec->n_filler, depth, out);
    }
    case PN_SYNTH_COPY: return pn_synth_copy(spec->seed, index, spec->length, out);
    case PN_SYNTH_RECALL: return pn_synth_recall(spec->seed, index, spec->n_pairs, spec->n_queries, out);
    case PN_SYNTH_REPEAT: return pn_synth_repeat(spec->seed, index, out);
    case PN_SYNTH_FACTS_MC: return pn_synth_facts_mc(spec->world, index, out);
    case PN_SYNTH_FACTS:
    case PN_SYNTH_CORPUS:
        if (!spec->world || spec->world->n_entities < 1)
            return pn_errorf("%s: no facts world given", pn_synth_task_name(spec->task));
        if (spec->task == PN_SYNTH_FACTS) {
            out->task = "facts";
            out->prompt = pn_synth_facts_doc(spec->world, index);
        } else {
            out->prompt = pn_synth_corpus_doc(spec->world, index, &out->task);
        }
        return 0;
    default: return pn_errorf("synthetic task %d out of range", (int)spec->task);
    }
}

// One JSON line for an item; the key set follows its kind (see the header).
static char *item_json(const pn_synth_item *it, int as_text) {
    json_t *o = json_object();
    if (as_text) {
        char *doc = pn_synth_item_doc(it);
        json_object_set_new(o, "text", json_string(doc));
        free(doc);
    } else if (it->choices) {
        json_t *arr = json_array();
        for (int i = 0; i < it->n_choices; i++) json_array_append_new(arr, json_string(it->choices[i]));
        json_object_set_new(o, "query", json_string(it->prompt));
        json_object_set_new(o, "choices", arr);
        json_object_set_new(o, "gold", json_integer(it->gold));
    } else if (it->answer) {
        json_object_set_new(o, "context", json_string(it->prompt));
        json_object_set_new(o, "answer", json_string(it->answer));
    } else {
        json_object_set_new(o, "text", json_string(it->prompt));
    }
    char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(o);
    if (!s) pn_panic("json_dumps failed (out of memory)"); // texts are ASCII, so only memory can fail
    return s;
}

int pn_synth_write_jsonl(const char *path, const pn_synth_spec *spec, uint64_t first, uint64_t n) {
    // Parameters are checked on the first item before anything is created: a bad spec leaves no file
    // (even when n is 0, so a config error shows up on the dry run too).
    pn_synth_item it;
    if (pn_synth_generate(spec, first, &it) != 0) return pn_error_prefix("%s", path);
    pn_atomic_file af;
    if (pn_atomic_open(&af, path) != 0) {
        pn_synth_item_free(&it);
        return -1; // the message names the temporary file, which starts with path
    }
    for (uint64_t i = 0; i < n; i++) {
        if (i && pn_synth_generate(spec, first + i, &it) != 0) {
            pn_atomic_abort(&af);
            return pn_error_prefix("%s", path);
        }
        char *line = item_json(&it, spec->as_text);
        fputs(line, af.f);
        fputc('\n', af.f);
        free(line);
        pn_synth_item_free(&it);
    }
    if (!n) pn_synth_item_free(&it);
    return pn_atomic_commit(&af); // write errors surface here (ferror), with the path named
}
