// Synthetic tasks: each generator is a pure function of (seed, index) (same bytes twice, alone or in a
// sequence, in any order), each item is structurally right (the answer really is in the prompt where
// it should be, multiple choice has exactly one right choice), and JSONL output parses back with the
// lm-evaluation-harness field names, atomically, with errors naming the file.
#include <ctype.h>
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../data/pn_synth.h"
#include "../src/pn_common.h"
#include "pn_test.h"

static char dir[256];

// Printable ASCII and newlines only: what a tiny byte-level vocabulary can hold.
static int is_plain_ascii(const char *s) {
    for (; *s; s++)
        if (!(*s == '\n' || (*s >= 0x20 && *s < 0x7f))) return 0;
    return 1;
}

static int str_eq(const char *a, const char *b) { return (!a && !b) || (a && b && !strcmp(a, b)); }

static int items_equal(const pn_synth_item *a, const pn_synth_item *b) {
    if (!str_eq(a->task, b->task) || !str_eq(a->prompt, b->prompt) || !str_eq(a->answer, b->answer)) return 0;
    if (a->n_choices != b->n_choices || a->gold != b->gold) return 0;
    for (int i = 0; i < a->n_choices; i++)
        if (!str_eq(a->choices[i], b->choices[i])) return 0;
    return 1;
}

// The conventions every generation item keeps (pn_synth.h).
static void check_generation_item(const pn_synth_item *it, const char *what) {
    CHECK(it->prompt && it->answer && !it->choices && it->gold == -1, "%s: kind", what);
    if (!it->prompt || !it->answer) return;
    size_t n = strlen(it->prompt);
    CHECK(n > 0 && it->prompt[n - 1] != ' ', "%s: prompt ends in a space", what);
    CHECK(!strchr(it->answer, '\n'), "%s: answer crosses the stop sequence", what);
    CHECK(is_plain_ascii(it->prompt) && is_plain_ascii(it->answer), "%s: not plain ASCII", what);
    char *doc = pn_synth_item_doc(it);
    size_t a = strlen(it->answer);
    CHECK(strlen(doc) == n + a + 1 && !strncmp(doc, it->prompt, n) && !strncmp(doc + n, it->answer, a) &&
              doc[n + a] == '\n',
          "%s: doc is not prompt + answer + newline", what);
    free(doc);
}

// ---- mqar ----

// Parses the item back and checks it against the task's definition; returns 0 when consistent.
static int mqar_consistent(const pn_synth_item *it, int n_pairs, int n_queries) {
    const char *nl = strchr(it->prompt, '\n');
    if (!nl) return 0;
    char keys[64][4];
    int vals[64], np = 0;
    for (const char *p = it->prompt; p < nl;) {
        if (np == 64 || nl - p < 6 || !islower((unsigned char)p[0]) || !isdigit((unsigned char)p[1]) ||
            !islower((unsigned char)p[2]) || p[3] != ':' || !isdigit((unsigned char)p[4]) ||
            !isdigit((unsigned char)p[5]))
            return 0;
        memcpy(keys[np], p, 3);
        keys[np][3] = 0;
        vals[np] = (p[4] - '0') * 10 + (p[5] - '0');
        if (vals[np] < 10) return 0;
        np++;
        p += 6;
        if (p < nl && *p++ != ' ') return 0;
    }
    if (np != n_pairs) return 0;
    for (int i = 0; i < np; i++)
        for (int j = 0; j < i; j++)
            if (!strcmp(keys[i], keys[j]) || vals[i] == vals[j]) return 0; // no duplicates
    // Query lines: "q: KEY -> V" answered ones, then the last "q: KEY ->" whose value is the answer.
    int nq = 0, asked[64] = {0};
    for (const char *p = nl + 1; *p; nq++) {
        char key[4];
        int v = -1;
        if (strncmp(p, "q: ", 3)) return 0;
        memcpy(key, p + 3, 3);
        key[3] = 0;
        const char *end = strchr(p, '\n');
        int last = end == NULL;
        if (last) {
            if (strcmp(p + 6, " ->")) return 0;
            if (strlen(it->answer) != 3 || it->answer[0] != ' ') return 0;
            v = atoi(it->answer + 1);
        } else {
            if (end - p != 12 || strncmp(p + 6, " -> ", 4)) return 0;
            v = atoi(p + 10);
        }
        int k = -1;
        for (int i = 0; i < np; i++)
            if (!strcmp(keys[i], key)) k = i;
        if (k < 0 || vals[k] != v || asked[k]++) return 0; // asks a present key, once, with its value
        p = last ? p + strlen(p) : end + 1;
    }
    return nq == n_queries;
}

static void test_mqar(void) {
    pn_synth_item a, b;
    CHECK(pn_synth_mqar(7, 3, 8, 4, &a) == 0, "%s", pn_last_error());
    CHECK(pn_synth_mqar(7, 3, 8, 4, &b) == 0 && items_equal(&a, &b), "same seed and index differ");
    pn_synth_item_free(&b);
    CHECK(pn_synth_mqar(7, 4, 8, 4, &b) == 0 && strcmp(a.prompt, b.prompt), "index 3 and 4 give the same text");
    pn_synth_item_free(&b);
    CHECK(pn_synth_mqar(8, 3, 8, 4, &b) == 0 && strcmp(a.prompt, b.prompt), "seed 7 and 8 give the same text");
    pn_synth_item_free(&b);
    size_t len = strlen(a.prompt) + strlen(a.answer);
    CHECK(len > 80 && len < 140, "8 pairs / 4 queries should be about 100 bytes, got %zu", len);
    CHECK(!strcmp(a.task, "mqar"), "task %s", a.task);
    pn_synth_item_free(&a);

    int shapes[][2] = {{1, 1}, {2, 2}, {8, 1}, {8, 4}, {8, 8}, {16, 4}, {64, 64}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (uint64_t i = 0; i < 200; i++) {
            int np = shapes[s][0], nq = shapes[s][1];
            CHECK(pn_synth_mqar(11, i, np, nq, &a) == 0, "%s", pn_last_error());
            CHECK(mqar_consistent(&a, np, nq), "mqar %d/%d item %llu inconsistent:\n%s|%s", np, nq,
                  (unsigned long long)i, a.prompt, a.answer);
            check_generation_item(&a, "mqar");
            pn_synth_item_free(&a);
        }

    CHECK_ERR(pn_synth_mqar(1, 0, 0, 1, &a), "n_pairs");
    CHECK_ERR(pn_synth_mqar(1, 0, 65, 1, &a), "n_pairs");
    CHECK_ERR(pn_synth_mqar(1, 0, 4, 5, &a), "n_queries");
    CHECK_ERR(pn_synth_mqar(1, 0, 4, 0, &a), "n_queries");
    CHECK(a.prompt == NULL && a.answer == NULL, "failed generator leaves the item empty");
}

// ---- passkey ----

static int count_char(const char *s, size_t n, char c) {
    int k = 0;
    for (size_t i = 0; i < n; i++) k += s[i] == c;
    return k;
}

static void test_passkey(void) {
    pn_synth_item a, b;
    CHECK(pn_synth_passkey(5, 9, 10, 0.5, &a) == 0, "%s", pn_last_error());
    CHECK(pn_synth_passkey(5, 9, 10, 0.5, &b) == 0 && items_equal(&a, &b), "not deterministic");
    pn_synth_item_free(&b);
    CHECK(pn_synth_passkey(5, 10, 10, 0.5, &b) == 0 && strcmp(a.prompt, b.prompt), "index 9 and 10 agree");
    pn_synth_item_free(&b);
    pn_synth_item_free(&a);

    const char *tail = "\nWhat is the pass key? The pass key is";
    int ns[] = {0, 1, 3, 8, 20, 100};
    double depths[] = {0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0};
    for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
        for (size_t di = 0; di < sizeof depths / sizeof depths[0]; di++)
            for (uint64_t i = 0; i < 20; i++) {
                int n = ns[ni];
                double d = depths[di];
                CHECK(pn_synth_passkey(3, i, n, d, &a) == 0, "%s", pn_last_error());
                check_generation_item(&a, "passkey");
                size_t pl = strlen(a.prompt), tl = strlen(tail);
                CHECK(pl > tl && !strcmp(a.prompt + pl - tl, tail), "prompt must end with the question");
                // Answer " ddddd", and those digits are the only digits in the text, stated once.
                CHECK(strlen(a.answer) == 6 && a.answer[0] == ' ' && a.answer[1] != '0', "answer \"%s\"", a.answer);
                char needle[64];
                snprintf(needle, sizeof needle, "The pass key is%s. Remember it.", a.answer);
                const char *at = strstr(a.prompt, needle);
                CHECK(at && !strstr(at + 1, needle), "needle \"%s\" must occur exactly once", needle);
                int digits = 0;
                for (const char *p = a.prompt; *p; p++) digits += isdigit((unsigned char)*p) != 0;
                CHECK(digits == 5, "the pass key must be the only number (%d digits)", digits);
                if (at) {
                    // Each filler sentence has exactly one period: periods before the needle = sentences.
                    size_t off = (size_t)(at - a.prompt);
                    int before = count_char(a.prompt, off, '.');
                    int expect = (int)lround(d * n);
                    CHECK(before == expect, "n %d depth %.2f: needle after %d sentences, want %d", n, d, before, expect);
                    int total = count_char(a.prompt, pl - tl, '.') - 2;
                    CHECK(total == n, "%d filler sentences, want %d", total, n);
                    // In bytes too (sentence lengths vary a little): within a sentence and a half of d.
                    size_t filler_bytes = pl - tl - strlen(needle);
                    if (n >= 8) {
                        double frac = (double)off / (double)filler_bytes;
                        CHECK(fabs(frac - d) < 1.5 / n + 0.05, "n %d: needle at byte fraction %.3f, want %.2f", n,
                              frac, d);
                    }
                }
                pn_synth_item_free(&a);
            }
    CHECK(pn_synth_passkey(1, 0, 8, 0.5, &a) == 0, "%s", pn_last_error());
    size_t len = strlen(a.prompt);
    CHECK(len > 200 && len < 400, "8 fillers should be a few hundred bytes, got %zu", len);
    pn_synth_item_free(&a);
    CHECK_ERR(pn_synth_passkey(1, 0, 8, 1.5, &a), "depth");
    CHECK_ERR(pn_synth_passkey(1, 0, 8, -0.1, &a), "depth");
    CHECK_ERR(pn_synth_passkey(1, 0, 8, NAN, &a), "depth");
    CHECK_ERR(pn_synth_passkey(1, 0, -1, 0.5, &a), "n_filler_sentences");
}

// ---- recall ----

// Parses a recall item back: distinct one-letter keys with distinct one-digit values, then n_queries - 1
// answered queries "|KV" of distinct keys and the last "|K", whose value is the answer.
static int recall_consistent(const pn_synth_item *it, int n_pairs, int n_queries) {
    const char *p = it->prompt;
    char val[26];
    memset(val, 0, sizeof val);
    int used_vals = 0;
    for (int i = 0; i < n_pairs; i++) {
        if (i && *p++ != ' ') return 0;
        if (p[0] < 'a' || p[0] > 'z' || p[1] < '0' || p[1] > '9' || val[p[0] - 'a']) return 0;
        if (used_vals & (1 << (p[1] - '0'))) return 0;
        used_vals |= 1 << (p[1] - '0');
        val[p[0] - 'a'] = p[1];
        p += 2;
    }
    int asked = 0;
    for (int q = 0; q < n_queries; q++) {
        if (*p++ != '|' || *p < 'a' || *p > 'z' || !val[*p - 'a'] || (asked & (1 << (*p - 'a')))) return 0;
        asked |= 1 << (*p - 'a');
        if (q == n_queries - 1) return p[1] == 0 && it->answer[0] == val[*p - 'a'] && it->answer[1] == 0;
        if (p[1] != val[*p - 'a']) return 0;
        p += 2;
    }
    return 0;
}

static void test_recall(void) {
    pn_synth_item a, b;
    CHECK(pn_synth_recall(7, 3, 8, 4, &a) == 0, "%s", pn_last_error());
    CHECK(pn_synth_recall(7, 3, 8, 4, &b) == 0 && items_equal(&a, &b), "same seed and index differ");
    pn_synth_item_free(&b);
    CHECK(pn_synth_recall(7, 4, 8, 4, &b) == 0 && strcmp(a.prompt, b.prompt), "index 3 and 4 give the same text");
    pn_synth_item_free(&b);
    CHECK(!strcmp(a.task, "recall") && strlen(a.prompt) == 8 * 3 - 1 + 3 * 3 + 2, "task %s, prompt '%s'", a.task, a.prompt);
    pn_synth_item_free(&a);
    int answers[10] = {0};
    for (int np = 1; np <= 10; np++)
        for (int nq = 1; nq <= np; nq++)
            for (uint64_t i = 0; i < 40; i++) {
                CHECK(pn_synth_recall(11, i, np, nq, &a) == 0, "%s", pn_last_error());
                CHECK(recall_consistent(&a, np, nq), "recall %d/%d item %llu inconsistent: %s|%s", np, nq,
                      (unsigned long long)i, a.prompt, a.answer);
                // The eval's stop strings are "\n" and '|': the answer holds neither, the prompt never ends in one.
                check_generation_item(&a, "recall");
                if (np == 8 && a.answer[0] >= '0' && a.answer[0] <= '9') answers[a.answer[0] - '0']++;
                pn_synth_item_free(&a);
            }
    // 8 pairs x 36 (nq, i) items: every digit answers some (a fixed value would be a guessable one)
    for (int d = 0; d < 10; d++) CHECK(answers[d] > 0, "no recall answer is %d", d);
    CHECK_ERR(pn_synth_recall(1, 0, 0, 1, &a), "n_pairs");
    CHECK_ERR(pn_synth_recall(1, 0, 11, 1, &a), "n_pairs 11");
    CHECK_ERR(pn_synth_recall(1, 0, 4, 5, &a), "n_queries");
    CHECK_ERR(pn_synth_recall(1, 0, 4, 0, &a), "n_queries");
}

// ---- repeat ----

// 1 when text is s (gap s){1,2} "\n" for some string s of an allowed length and gaps of 0..4 characters.
static int repeat_consistent(const char *text) {
    const size_t n = strlen(text);
    if (n < 2 || text[n - 1] != '\n') return 0;
    for (size_t i = 0; i + 1 < n; i++)
        if (text[i] < '!' || text[i] > '~') return 0;
    for (int L = PN_SYNTH_REPEAT_MIN; L <= PN_SYNTH_REPEAT_MAX; L++)
        for (int g1 = 0; g1 <= 4; g1++) {
            if ((size_t)(2 * L + g1 + 1) == n && !memcmp(text, text + L + g1, (size_t)L)) return 1;
            for (int g2 = 0; g2 <= 4; g2++)
                if ((size_t)(3 * L + g1 + g2 + 1) == n && !memcmp(text, text + L + g1, (size_t)L) &&
                    !memcmp(text, text + 2 * L + g1 + g2, (size_t)L))
                    return 1;
        }
    return 0;
}

static void test_repeat(void) {
    int lens[2] = {1 << 30, 0};
    for (uint64_t i = 0; i < 2000; i++) {
        pn_synth_item a;
        CHECK(pn_synth_repeat(5, i, &a) == 0, "%s", pn_last_error());
        CHECK(a.prompt && !a.answer && !a.choices && !strcmp(a.task, "repeat"), "repeat: a text item");
        CHECK(a.prompt && repeat_consistent(a.prompt), "repeat item %llu: '%s'", (unsigned long long)i, a.prompt);
        const int n = a.prompt ? (int)strlen(a.prompt) : 0;
        lens[0] = n < lens[0] ? n : lens[0], lens[1] = n > lens[1] ? n : lens[1];
        pn_synth_item_free(&a);
    }
    // the extremes: 4 + 4 + "\n" and 24 x 3 + 2 x 4 + "\n" are reachable; seen lengths stay inside
    CHECK(lens[0] >= 2 * PN_SYNTH_REPEAT_MIN + 1 && lens[1] <= 3 * PN_SYNTH_REPEAT_MAX + 9 && lens[0] < 20 && lens[1] > 60,
          "repeat lengths %d .. %d", lens[0], lens[1]);
    CHECK(!repeat_consistent("abcdXabce\n") && !repeat_consistent("abcdabcd") && repeat_consistent("abcdabcd\n"),
          "the checker itself");
}

// ---- copy ----

static void test_copy(void) {
    pn_synth_item a, b;
    int lens[] = {1, 2, 16, 100, 4096};
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++)
        for (uint64_t i = 0; i < 50; i++) {
            int L = lens[li];
            CHECK(pn_synth_copy(2, i, L, &a) == 0, "%s", pn_last_error());
            check_generation_item(&a, "copy");
            CHECK((int)strlen(a.answer) == L, "length %zu, want %d", strlen(a.answer), L);
            CHECK((int)strlen(a.prompt) == L + 1 && !strncmp(a.prompt, a.answer, (size_t)L) && a.prompt[L] == '|',
                  "prompt must be the string then the marker");
            int lower = 1;
            for (const char *p = a.answer; *p; p++) lower &= *p >= 'a' && *p <= 'z';
            CHECK(lower, "copy string must be lowercase letters");
            pn_synth_item_free(&a);
        }
    CHECK(pn_synth_copy(2, 0, 16, &a) == 0 && pn_synth_copy(2, 0, 16, &b) == 0 && items_equal(&a, &b), "determinism");
    pn_synth_item_free(&b);
    CHECK(pn_synth_copy(2, 1, 16, &b) == 0 && strcmp(a.answer, b.answer), "index 0 and 1 agree");
    pn_synth_item_free(&a);
    pn_synth_item_free(&b);
    CHECK_ERR(pn_synth_copy(1, 0, 0, &a), "length");
    CHECK_ERR(pn_synth_copy(1, 0, 4097, &a), "length");
}

// ---- the facts world ----

static const char *attr_lists[PN_SYNTH_N_ATTRS] = {
    "|Oslo|Lima|Cairo|Rome|Paris|Tokyo|Delhi|Quito|Accra|Dakar|Hanoi|Kyiv|",
    "|red|blue|green|yellow|purple|orange|black|white|brown|gray|",
    NULL, // numbers 10..99
    "|baker|farmer|doctor|teacher|painter|sailor|pilot|lawyer|nurse|engineer|artist|writer|",
};

static int valid_value(int attr, const char *v) {
    if (attr == PN_SYNTH_NUMBER) return strlen(v) == 2 && isdigit((unsigned char)v[0]) && v[0] != '0' && isdigit((unsigned char)v[1]);
    char pat[32];
    snprintf(pat, sizeof pat, "|%s|", v);
    return strstr(attr_lists[attr], pat) != NULL;
}

static void test_world(void) {
    pn_synth_world *w = pn_synth_world_new(42, 2000), *w2 = pn_synth_world_new(42, 2000);
    CHECK(w && w2, "%s", pn_last_error());
    if (!w || !w2) return;
    CHECK(w->n_entities == 2000 && !memcmp(w->entities, w2->entities, 2000 * sizeof *w->entities),
          "same seed must give the same world");
    pn_synth_world_free(w2);
    // A smaller world of the same seed is the prefix of the larger one (entity e depends on (seed, e)).
    pn_synth_world *ws = pn_synth_world_new(42, 10);
    CHECK(ws && !memcmp(ws->entities, w->entities, 10 * sizeof *w->entities), "entity e must not depend on n");
    pn_synth_world_free(ws);
    pn_synth_world *w3 = pn_synth_world_new(43, 2000);
    int same = 0;
    for (int e = 0; e < 2000; e++) same += !strcmp(w->entities[e].name, w3->entities[e].name);
    CHECK(same < 20, "seed 42 and 43 share %d names", same);
    pn_synth_world_free(w3);

    int unique = 1, valid = 1, pronounceable = 1;
    for (int e = 0; e < w->n_entities; e++) {
        const pn_synth_entity *ent = &w->entities[e];
        for (int f = 0; f < e && unique; f++) unique = strcmp(ent->name, w->entities[f].name) != 0;
        size_t n = strlen(ent->name);
        pronounceable &= n >= 4 && n <= 7 && isupper((unsigned char)ent->name[0]);
        for (size_t i = 1; i < n; i++) pronounceable &= islower((unsigned char)ent->name[i]) != 0;
        for (int a = 0; a < PN_SYNTH_N_ATTRS; a++) valid &= valid_value(a, ent->attr[a]);
        for (int a = 0; a < PN_SYNTH_N_ATTRS; a++) valid &= strcasecmp(ent->name, ent->attr[a]) != 0;
        if (!unique || !valid || !pronounceable) {
            CHECK(0, "entity %d \"%s\" unique %d valid %d pronounceable %d", e, ent->name, unique, valid, pronounceable);
            break;
        }
    }
    // Attribute values are spread over their lists (every city appears among 2000 entities).
    for (int c = 0; c < 12; c++) {
        const char *start = attr_lists[PN_SYNTH_CITY] + 1;
        for (int k = 0; k < c; k++) start = strchr(start, '|') + 1;
        char city[16];
        size_t L = (size_t)(strchr(start, '|') - start);
        memcpy(city, start, L);
        city[L] = 0;
        int seen = 0;
        for (int e = 0; e < w->n_entities; e++) seen += !strcmp(w->entities[e].attr[PN_SYNTH_CITY], city);
        CHECK(seen > 80 && seen < 260, "city %s held by %d of 2000", city, seen);
    }

    // Facts documents: name and all four values, one line, plain ASCII, varied.
    for (uint64_t i = 0; i < 400; i++) {
        char *d = pn_synth_facts_doc(w, i), *d2 = pn_synth_facts_doc(w, i);
        const pn_synth_entity *ent = &w->entities[i % 2000];
        CHECK(!strcmp(d, d2), "facts doc %llu not deterministic", (unsigned long long)i);
        CHECK(strstr(d, ent->name) && is_plain_ascii(d), "doc %s", d);
        for (int a = 0; a < PN_SYNTH_N_ATTRS; a++) CHECK(strstr(d, ent->attr[a]), "doc lacks %s: %s", ent->attr[a], d);
        size_t n = strlen(d);
        CHECK(n > 60 && n < 220 && d[n - 1] == '\n' && count_char(d, n, '\n') == 1, "doc shape: %s", d);
        if (i) {
            char *prev = pn_synth_facts_doc(w, i - 1);
            CHECK(strcmp(prev, d), "docs %llu and %llu agree", (unsigned long long)i - 1, (unsigned long long)i);
            free(prev);
        }
        free(d);
        free(d2);
    }
    // Documents about one entity vary in wording (index, index + n, ...).
    {
        char *d0 = pn_synth_facts_doc(w, 5);
        int differ = 0;
        for (uint64_t k = 1; k <= 8; k++) {
            char *d = pn_synth_facts_doc(w, 5 + 2000 * k);
            differ += strcmp(d0, d) != 0;
            free(d);
        }
        CHECK(differ >= 6, "only %d of 8 re-tellings differ", differ);
        free(d0);
    }

    // Multiple choice: exactly one choice is the entity's value, gold points at it, no duplicates.
    int gold_hist[4] = {0}, attr_hist[PN_SYNTH_N_ATTRS] = {0};
    for (uint64_t i = 0; i < 4000; i++) {
        pn_synth_item it, it2;
        int e, a;
        CHECK(pn_synth_facts_mc(w, i, &it) == 0, "%s", pn_last_error());
        CHECK(pn_synth_facts_mc(w, i, &it2) == 0 && items_equal(&it, &it2), "mc %llu not deterministic",
              (unsigned long long)i);
        pn_synth_item_free(&it2);
        pn_synth_facts_mc_target(w, i, &e, &a);
        CHECK(e == (int)(i % 2000) && a >= 0 && a < PN_SYNTH_N_ATTRS, "target %d %d", e, a);
        attr_hist[a]++;
        const pn_synth_entity *ent = &w->entities[e];
        CHECK(it.n_choices == 4 && it.choices && !it.answer && !strcmp(it.task, "facts_mc"), "mc kind");
        int right = 0, dup = 0, shape = 1;
        for (int c = 0; c < it.n_choices; c++) {
            right += !strcmp(it.choices[c], ent->attr[a]);
            shape &= valid_value(a, it.choices[c]) && it.choices[c][0] != ' ';
            for (int d = 0; d < c; d++) dup += !strcmp(it.choices[c], it.choices[d]);
        }
        CHECK(right == 1 && dup == 0 && shape, "mc %llu: %d right, %d duplicates, shape %d", (unsigned long long)i,
              right, dup, shape);
        CHECK(it.gold >= 0 && it.gold < 4 && !strcmp(it.choices[it.gold], ent->attr[a]), "gold %d", it.gold);
        if (it.gold >= 0 && it.gold < 4) gold_hist[it.gold]++;
        size_t n = strlen(it.prompt);
        CHECK(!strncmp(it.prompt, "Question: ", 10) && strstr(it.prompt, ent->name) && n > 8 &&
                  !strcmp(it.prompt + n - 8, "\nAnswer:") && is_plain_ascii(it.prompt),
              "query \"%s\"", it.prompt);
        char *doc = pn_synth_item_doc(&it);
        char want[256];
        snprintf(want, sizeof want, "%s %s\n", it.prompt, ent->attr[a]);
        CHECK(!strcmp(doc, want), "mc doc \"%s\"", doc);
        free(doc);
        pn_synth_item_free(&it);
    }
    for (int g = 0; g < 4; g++) CHECK(gold_hist[g] > 800 && gold_hist[g] < 1200, "gold %d chosen %d of 4000", g, gold_hist[g]);
    for (int a = 0; a < PN_SYNTH_N_ATTRS; a++)
        CHECK(attr_hist[a] > 800 && attr_hist[a] < 1200, "attribute %d asked %d of 4000", a, attr_hist[a]);
    pn_synth_world_free(w);

    CHECK(pn_synth_world_new(1, 0) == NULL && strstr(pn_last_error(), "n_entities"), "n_entities 0 must fail");
    CHECK(pn_synth_world_new(1, 20001) == NULL && strstr(pn_last_error(), "n_entities"), "too many entities");
    pn_synth_item it;
    CHECK_ERR(pn_synth_facts_mc(NULL, 0, &it), "world");
}

// ---- the corpus ----

static void test_corpus(void) {
    pn_synth_world *w = pn_synth_world_new(9, 64);
    int counts[4] = {0}; // facts, mqar, passkey, copy
    const char *names[4] = {"facts", "mqar", "passkey", "copy"};
    size_t max_len = 0, total = 0;
    char *docs[400];
    for (uint64_t i = 0; i < 400; i++) {
        const char *task = NULL;
        docs[i] = pn_synth_corpus_doc(w, i, &task);
        int k = -1;
        for (int j = 0; j < 4; j++)
            if (task && !strcmp(task, names[j])) k = j;
        CHECK(k >= 0, "doc %llu task %s", (unsigned long long)i, task ? task : "(null)");
        if (k >= 0) counts[k]++;
        size_t n = strlen(docs[i]);
        CHECK(n > 0 && docs[i][n - 1] == '\n' && is_plain_ascii(docs[i]), "doc %llu shape", (unsigned long long)i);
        max_len = n > max_len ? n : max_len;
        total += n;
        // Exact proportions over every window of 20.
        if (i % 20 == 19) {
            CHECK(counts[0] == 8 * (int)(i / 20 + 1) && counts[1] == 6 * (int)(i / 20 + 1) &&
                      counts[2] == 3 * (int)(i / 20 + 1) && counts[3] == 3 * (int)(i / 20 + 1),
                  "after %llu docs: %d %d %d %d", (unsigned long long)i + 1, counts[0], counts[1], counts[2], counts[3]);
        }
    }
    CHECK(max_len < 400, "longest corpus doc %zu bytes", max_len);
    printf("corpus: 400 docs, mean %.0f bytes, max %zu\n", (double)total / 400, max_len);
    // Alone, in reverse order, equals the sequence; neighbours differ.
    for (uint64_t i = 400; i-- > 0;) {
        char *d = pn_synth_corpus_doc(w, i, NULL);
        CHECK(!strcmp(d, docs[i]), "corpus doc %llu differs alone", (unsigned long long)i);
        if (i) CHECK(strcmp(docs[i], docs[i - 1]), "corpus docs %llu and %llu agree", (unsigned long long)i - 1,
                     (unsigned long long)i);
        free(d);
    }
    // The facts documents are facts_doc(w, 0), facts_doc(w, 1), ... in order: they walk through the
    // entities (8 per 20 docs, so the first 160 docs tell about all 64).
    uint64_t k = 0;
    for (uint64_t i = 0; i < 400; i++) {
        const char *task;
        char *d = pn_synth_corpus_doc(w, i, &task);
        if (!strcmp(task, "facts")) {
            char *f = pn_synth_facts_doc(w, k++);
            CHECK(!strcmp(d, f), "corpus doc %llu is not facts doc %llu", (unsigned long long)i, (unsigned long long)k - 1);
            free(f);
        }
        free(d);
    }
    CHECK(k == 160, "%llu facts docs in 400", (unsigned long long)k);
    // The corpus never contains the eval items made with the world's seed.
    pn_synth_spec s = pn_synth_spec_default(PN_SYNTH_MQAR, w->seed);
    int leaked = 0;
    for (uint64_t i = 0; i < 400; i++) {
        pn_synth_item it;
        CHECK(pn_synth_generate(&s, i, &it) == 0, "%s", pn_last_error());
        const char *nl = strchr(it.prompt, '\n');
        size_t L = (size_t)(nl - it.prompt);
        for (uint64_t j = 0; j < 400; j++) leaked += !strncmp(docs[j], it.prompt, L) && docs[j][L] == '\n';
        pn_synth_item_free(&it);
    }
    CHECK(leaked == 0, "%d eval items appear in the corpus", leaked);
    for (int i = 0; i < 400; i++) free(docs[i]);
    pn_synth_world_free(w);
}

// ---- the spec entry point: independence across a sequence ----

static void test_independence(void) {
    pn_synth_world *w = pn_synth_world_new(77, 50);
    for (int t = 0; t < PN_SYNTH_N_TASKS; t++) {
        pn_synth_spec s = pn_synth_spec_default((pn_synth_task)t, 1234);
        s.world = w;
        enum { N = 64 };
        pn_synth_item seq[N];
        for (int i = 0; i < N; i++) CHECK(pn_synth_generate(&s, (uint64_t)i, &seq[i]) == 0, "%s", pn_last_error());
        // Alone, in a scrambled order (stride 27 is coprime to 64).
        for (int k = 0; k < N; k++) {
            int i = (k * 27) % N;
            pn_synth_item it;
            CHECK(pn_synth_generate(&s, (uint64_t)i, &it) == 0, "%s", pn_last_error());
            CHECK(items_equal(&it, &seq[i]), "%s item %d differs alone", pn_synth_task_name((pn_synth_task)t), i);
            pn_synth_item_free(&it);
        }
        int distinct = 1;
        for (int i = 1; i < N; i++) distinct &= strcmp(seq[i].prompt, seq[i - 1].prompt) != 0;
        CHECK(distinct, "%s: neighbouring items agree", pn_synth_task_name((pn_synth_task)t));
        // Passkey at the default spread depth: depths differ between items.
        if (t == PN_SYNTH_PASSKEY) {
            int at0 = 0, atn = 0;
            for (int i = 0; i < N; i++) {
                const char *p = strstr(seq[i].prompt, "The pass key is");
                at0 += p == seq[i].prompt;
                atn += p && p[strlen("The pass key is 12345. Remember it.")] == '\n';
            }
            CHECK(at0 > 0 && atn > 0 && at0 + atn < N / 2, "spread depths: %d at the start, %d at the end", at0, atn);
        }
        for (int i = 0; i < N; i++) pn_synth_item_free(&seq[i]);
        pn_synth_task back;
        CHECK(pn_synth_task_parse(pn_synth_task_name((pn_synth_task)t), &back) == 0 && back == (pn_synth_task)t,
              "task name round trip");
    }
    pn_synth_task bad;
    CHECK_ERR(pn_synth_task_parse("mmlu", &bad), "\"mmlu\"");
    pn_synth_spec s = pn_synth_spec_default(PN_SYNTH_FACTS_MC, 1);
    pn_synth_item it;
    CHECK_ERR(pn_synth_generate(&s, 0, &it), "world");
    s.task = PN_SYNTH_CORPUS;
    CHECK_ERR(pn_synth_generate(&s, 0, &it), "corpus: no facts world");
    pn_synth_world_free(w);
}

// ---- the same items from several threads at once ----

enum { PAR_THREADS = 4, PAR_N = 256 };
typedef struct {
    const pn_synth_spec *spec;
    int t;
    char *docs[PAR_N];
} par_job;

static void *par_worker(void *arg) {
    par_job *j = arg;
    // Thread t makes items t, t + 4, ... (an interleaving no sequential caller would use).
    for (int i = j->t; i < PAR_N; i += PAR_THREADS) {
        pn_synth_item it;
        j->docs[i] = pn_synth_generate(j->spec, (uint64_t)i, &it) == 0 ? pn_synth_item_doc(&it) : NULL;
        pn_synth_item_free(&it);
    }
    return NULL;
}

static void test_parallel(void) {
    pn_synth_world *w = pn_synth_world_new(3, 30);
    for (int t = 0; t < PN_SYNTH_N_TASKS; t++) {
        pn_synth_spec s = pn_synth_spec_default((pn_synth_task)t, 555);
        s.world = w;
        par_job jobs[PAR_THREADS];
        pthread_t th[PAR_THREADS];
        for (int k = 0; k < PAR_THREADS; k++) {
            memset(&jobs[k], 0, sizeof jobs[k]);
            jobs[k].spec = &s;
            jobs[k].t = k;
            CHECK(pthread_create(&th[k], NULL, par_worker, &jobs[k]) == 0, "pthread_create");
        }
        for (int k = 0; k < PAR_THREADS; k++) pthread_join(th[k], NULL);
        int same = 1;
        for (int i = 0; i < PAR_N; i++) {
            char *par = jobs[i % PAR_THREADS].docs[i];
            pn_synth_item it;
            CHECK(pn_synth_generate(&s, (uint64_t)i, &it) == 0, "%s", pn_last_error());
            char *seq = pn_synth_item_doc(&it);
            same &= par && !strcmp(par, seq);
            free(seq);
            free(par);
            pn_synth_item_free(&it);
        }
        CHECK(same, "%s: threaded items differ from sequential ones", pn_synth_task_name((pn_synth_task)t));
    }
    pn_synth_world_free(w);
}

// ---- JSONL ----

static int count_tmp_files(void) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) n += strstr(e->d_name, ".tmp.") != NULL;
    if (d) closedir(d);
    return n;
}

static void test_jsonl(void) {
    pn_synth_world *w = pn_synth_world_new(5, 40);
    for (int t = 0; t < PN_SYNTH_N_TASKS; t++) {
        pn_synth_spec s = pn_synth_spec_default((pn_synth_task)t, 99);
        s.world = w;
        char name[64];
        snprintf(name, sizeof name, "%s.jsonl", pn_synth_task_name((pn_synth_task)t));
        char *path = pn_path_join(dir, name);
        const uint64_t first = 10, n = 37;
        CHECK(pn_synth_write_jsonl(path, &s, first, n) == 0, "%s", pn_last_error());
        char *text = pn_read_file(path, NULL);
        CHECK(text != NULL, "%s", pn_last_error());
        uint64_t lines = 0;
        for (char *line = text, *nl; text && *line; line = nl + 1, lines++) {
            nl = strchr(line, '\n');
            if (!nl) {
                CHECK(0, "%s: last line without newline", name);
                break;
            }
            *nl = 0;
            json_error_t err;
            json_t *o = json_loads(line, 0, &err);
            CHECK(o && json_is_object(o), "%s line %llu: %s", name, (unsigned long long)lines + 1, err.text);
            pn_synth_item it;
            CHECK(pn_synth_generate(&s, first + lines, &it) == 0, "%s", pn_last_error());
            if (o && t == PN_SYNTH_FACTS_MC) {
                json_t *q = json_object_get(o, "query"), *c = json_object_get(o, "choices"), *g = json_object_get(o, "gold");
                CHECK(json_object_size(o) == 3 && json_is_string(q) && json_is_array(c) && json_is_integer(g),
                      "%s: fields query/choices/gold", name);
                CHECK(q && !strcmp(json_string_value(q), it.prompt) && json_array_size(c) == 4 &&
                          json_integer_value(g) == it.gold,
                      "%s: values", name);
                for (size_t k = 0; c && k < json_array_size(c); k++)
                    CHECK(!strcmp(json_string_value(json_array_get(c, k)), it.choices[k]), "choice %zu", k);
            } else if (o && it.answer) { // generation
                json_t *c = json_object_get(o, "context"), *a = json_object_get(o, "answer");
                CHECK(json_object_size(o) == 2 && json_is_string(c) && json_is_string(a), "%s: fields context/answer",
                      name);
                CHECK(c && a && !strcmp(json_string_value(c), it.prompt) && !strcmp(json_string_value(a), it.answer),
                      "%s: values", name);
            } else if (o) {
                json_t *x = json_object_get(o, "text");
                CHECK(json_object_size(o) == 1 && json_is_string(x) && !strcmp(json_string_value(x), it.prompt),
                      "%s: field text", name);
            }
            pn_synth_item_free(&it);
            json_decref(o);
        }
        CHECK(lines == n, "%s: %llu lines, want %llu", name, (unsigned long long)lines, (unsigned long long)n);
        free(text);
        free(path);
    }
    // Zero items: an empty file.
    pn_synth_spec s = pn_synth_spec_default(PN_SYNTH_COPY, 1);
    char *path = pn_path_join(dir, "empty.jsonl");
    size_t len = 99;
    CHECK(pn_synth_write_jsonl(path, &s, 0, 0) == 0, "%s", pn_last_error());
    char *text = pn_read_file(path, &len);
    CHECK(text && len == 0, "empty file has %zu bytes", len);
    free(text);
    free(path);

    // A missing directory: the error names the file.
    CHECK_ERR(pn_synth_write_jsonl("/nonexistent_pn_dir/items.jsonl", &s, 0, 5), "/nonexistent_pn_dir/items.jsonl");
    // A bad spec: error names the file and the parameter, and no file is left.
    path = pn_path_join(dir, "bad.jsonl");
    s.length = 0;
    CHECK_ERR(pn_synth_write_jsonl(path, &s, 0, 5), "bad.jsonl: copy: length 0");
    CHECK(access(path, F_OK) != 0, "a failed write must leave no file");
    CHECK_ERR(pn_synth_write_jsonl(path, &s, 0, 0), "copy: length 0");
    CHECK(access(path, F_OK) != 0, "a failed empty write must leave no file");
    // Overwriting an existing file replaces it whole.
    s.length = 8;
    CHECK(pn_synth_write_jsonl(path, &s, 0, 3) == 0, "%s", pn_last_error());
    CHECK(pn_synth_write_jsonl(path, &s, 0, 1) == 0, "%s", pn_last_error());
    text = pn_read_file(path, &len);
    CHECK(text && count_char(text, len, '\n') == 1, "rewrite must replace the file");
    free(text);
    free(path);
    CHECK(count_tmp_files() == 0, "temporary files left behind");
    pn_synth_world_free(w);
}

// Prints one item of each generator (the samples quoted in docs and reviews come from here).
static void print_samples(void) {
    pn_synth_item it;
    pn_synth_world *w = pn_synth_world_new(1, 8);
    printf("--- mqar(1, 0, 8, 4)\n");
    if (pn_synth_mqar(1, 0, 8, 4, &it) == 0) printf("%s«%s»\n", it.prompt, it.answer);
    pn_synth_item_free(&it);
    printf("--- passkey(1, 0, 6, 0.5)\n");
    if (pn_synth_passkey(1, 0, 6, 0.5, &it) == 0) printf("%s«%s»\n", it.prompt, it.answer);
    pn_synth_item_free(&it);
    printf("--- recall(1, 0, 8, 4)\n");
    if (pn_synth_recall(1, 0, 8, 4, &it) == 0) printf("%s«%s»\n", it.prompt, it.answer);
    pn_synth_item_free(&it);
    printf("--- repeat(1, 0)\n");
    if (pn_synth_repeat(1, 0, &it) == 0) printf("%s", it.prompt);
    pn_synth_item_free(&it);
    printf("--- copy(1, 0, 16)\n");
    if (pn_synth_copy(1, 0, 16, &it) == 0) printf("%s«%s»\n", it.prompt, it.answer);
    pn_synth_item_free(&it);
    printf("--- facts_doc(world 1/8, 0..1)\n");
    for (int i = 0; i < 2; i++) {
        char *d = pn_synth_facts_doc(w, (uint64_t)i);
        printf("%s", d);
        free(d);
    }
    printf("--- facts_mc(world 1/8, 0)\n");
    if (pn_synth_facts_mc(w, 0, &it) == 0) {
        printf("%s\n", it.prompt);
        for (int c = 0; c < it.n_choices; c++) printf("  [%d] \"%s\"%s\n", c, it.choices[c], c == it.gold ? " (gold)" : "");
    }
    pn_synth_item_free(&it);
    printf("--- corpus_doc(world 1/8, 0..19)\n");
    for (int i = 0; i < 20; i++) {
        const char *task;
        char *d = pn_synth_corpus_doc(w, (uint64_t)i, &task);
        printf("[%s] %s", task, d);
        free(d);
    }
    pn_synth_world_free(w);
}

int main(int argc, char **argv) {
    snprintf(dir, sizeof dir, "/tmp/pn_test_synth_%d", (int)getpid());
    char cmd[300];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    if (system(cmd) != 0) return 1;
    if (argc > 1 && !strcmp(argv[1], "--samples")) print_samples();
    test_mqar();
    test_passkey();
    test_copy();
    test_recall();
    test_repeat();
    test_world();
    test_corpus();
    test_independence();
    test_parallel();
    test_jsonl();
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) return 1;
    return pn_test_done("test_synth");
}
