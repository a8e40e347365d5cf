// pn_tokenizer: byte-level BPE (GPT-2 / Qwen2 / Llama 3 families), matching Hugging Face `tokenizers`.
//
// Pipeline for encode, in HF's order: (1) added tokens that are not `normalized` are cut out of the
// raw text (earliest match, longest at a tie; lstrip/rstrip take the blanks beside them, single_word
// ones must stand alone); (2) every other segment goes through the normalizers (NFC, Lowercase) and the
// `normalized` added tokens are cut out of the result; (3) the pre-tokenizer steps split each piece in
// turn (Split with a regex and any of HF's five delimiter behaviours, Digits, ByteLevel with its GPT-2
// regex and prefix space); (4) each piece's bytes become GPT-2 byte-level symbols (a byte without a
// token becomes unk, or is dropped when there is none, as HF's BPE does) and (5) are merged pair by
// pair, lowest merge rank first, leftmost first. The post-processor's special tokens (BOS/EOS of a
// TemplateProcessing, RobertaProcessing's <s> </s>) are added by pn_tokenizer_encode_special.
//
// Decisions a reader would otherwise miss:
// - The regex runs through PCRE2 (JIT) with PCRE2_MATCH_INVALID_UTF, so invalid UTF-8 is never dropped:
//   bytes no pattern item can match end up in the gaps, become pieces of their own, and map to byte
//   tokens like any other bytes. NFC (utf8proc) is applied to the valid runs only.
// - Encoding results per piece are cached per thread (a pthread key owns the cache), so concurrent
//   encode calls on one tokenizer need no lock and repeated words cost one hash lookup.
#include "pn_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <errno.h>
#include <jansson.h>
#include <pcre2.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <utf8proc.h>

#include "../src/pn_common.h"
#include "../src/pn_json.h"
#include "../src/pn_rng.h"

// The pre-tokenizer patterns the families use (REFERENCE.md §3).
static const char *PAT_QWEN2 = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                               "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char *PAT_GPT2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

// ----------------------------------------------------------------------------------------------------
// hashing and the two tables (string -> id, pair -> merge)

static uint64_t fnv1a(const void *data, size_t n, uint64_t h) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}
#define FNV_SEED 0xcbf29ce484222325ull

typedef struct {
    int32_t *slot; // token id or -1; capacity a power of two, at most half full
    size_t cap;
} strmap;

typedef struct {
    uint64_t *key; // (left << 32 | right) + 1; 0 = empty
    uint32_t *rank;
    int32_t *id;
    size_t cap;
} mergemap;

typedef struct {
    int32_t id;
    int special;
    int lstrip, rstrip, single_word, normalized; // HF's AddedToken flags
    char *content;
    size_t len;
} added_token;

// One pre-tokenizer step (HF's pre_tokenizers, flattened out of any Sequence).
typedef enum { PT_SPLIT, PT_DIGITS, PT_BYTELEVEL } pt_kind;
// HF's SplitDelimiterBehavior.
typedef enum { SPLIT_REMOVED, SPLIT_ISOLATED, SPLIT_MERGED_PREV, SPLIT_MERGED_NEXT, SPLIT_CONTIGUOUS } split_behavior;
typedef struct {
    pt_kind kind;
    pcre2_code *re;    // Split's regex; ByteLevel's GPT-2 regex when use_regex (else NULL)
    split_behavior behavior;
    int invert;        // Split: the pattern matches what is kept, not the delimiters
    int prefix_space;  // ByteLevel add_prefix_space
    uint64_t hash;     // of everything above, for the identity
    uint64_t pat_hash; // of the regex alone (the classic identity)
} pre_step;
#define PN_MAX_PRE_STEPS 8
typedef enum { NORM_NFC, NORM_LOWERCASE } norm_kind;
#define PN_MAX_NORMS 4
#define PN_MAX_PP 8

struct pn_tokenizer {
    char kind[32];
    int n_tokens;      // largest id + 1
    int cap_tokens;    // allocated entries of the per-id arrays
    char **tok;        // byte-level string of each id (added tokens: their raw content); NULL = unused id
    uint32_t *tok_len;
    uint8_t *is_added, *is_special;
    strmap vocab; // BPE vocabulary (not the added tokens)
    mergemap merges;
    int n_merges;
    int32_t byte_id[256]; // token of each single byte
    int n_added;
    added_token *added; // sorted by content length, longest first
    pre_step steps[PN_MAX_PRE_STEPS]; // none: the whole piece is one pre-token
    int n_steps;
    norm_kind norms[PN_MAX_NORMS];
    int n_norms, n_added_normalized;
    int ignore_merges;
    int32_t unk;  // BPE unk_token's id (-1: none, bytes without a token are dropped)
    int fuse_unk; // consecutive unknowns become one unk
    int32_t pp_prefix[PN_MAX_PP], pp_suffix[PN_MAX_PP]; // post-processor's special ids around one sequence
    int n_prefix, n_suffix;
    int eos, bos;
    char identity[160];
    char where[256]; // the file the pre-tokenizer came from, for errors at encode time
    char byte_char[256][3]; // GPT-2 bytes_to_unicode, as UTF-8
    uint8_t byte_char_len[256];
    int16_t byte_of_cp[324]; // inverse: code point -> byte, -1 if none
    uint64_t serial;         // distinguishes tokenizers in the per-thread caches
};

static uint64_t next_serial = 1;
static pthread_mutex_t serial_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t pow2_at_least(size_t n) {
    size_t c = 16;
    while (c < n) c <<= 1;
    return c;
}

static int32_t strmap_get(const pn_tokenizer *t, const char *s, size_t n) {
    size_t mask = t->vocab.cap - 1, i = fnv1a(s, n, FNV_SEED) & mask;
    for (;; i = (i + 1) & mask) {
        int32_t id = t->vocab.slot[i];
        if (id < 0) return -1;
        if (t->tok_len[id] == n && memcmp(t->tok[id], s, n) == 0) return id;
    }
}

static void strmap_put(pn_tokenizer *t, int32_t id) {
    size_t mask = t->vocab.cap - 1, i = fnv1a(t->tok[id], t->tok_len[id], FNV_SEED) & mask;
    while (t->vocab.slot[i] >= 0) i = (i + 1) & mask;
    t->vocab.slot[i] = id;
}

static uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1; }

static size_t merge_slot(const mergemap *m, uint64_t key) {
    size_t mask = m->cap - 1, i = (size_t)(pn_splitmix64(key) & mask);
    while (m->key[i] && m->key[i] != key) i = (i + 1) & mask;
    return i;
}

// ----------------------------------------------------------------------------------------------------
// building a tokenizer

static void init_byte_map(pn_tokenizer *t) {
    // GPT-2's bytes_to_unicode: printable bytes keep their code point, the other 68 get 256 + n in order.
    int n = 0;
    for (int i = 0; i < 324; i++) t->byte_of_cp[i] = -1;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
        int cp = printable ? b : 256 + n++;
        t->byte_of_cp[cp] = (int16_t)b;
        utf8proc_ssize_t len = utf8proc_encode_char(cp, (utf8proc_uint8_t *)t->byte_char[b]);
        t->byte_char_len[b] = (uint8_t)len;
    }
}

static pn_tokenizer *tok_new(const char *kind) {
    pn_tokenizer *t = pn_calloc(1, sizeof *t);
    snprintf(t->kind, sizeof t->kind, "%s", kind);
    t->eos = t->bos = t->unk = -1;
    init_byte_map(t);
    pthread_mutex_lock(&serial_lock);
    t->serial = next_serial++;
    pthread_mutex_unlock(&serial_lock);
    return t;
}

// Sets token `id` (growing the arrays); duplicates are errors.
static int set_token(pn_tokenizer *t, int32_t id, const char *s, size_t n, const char *where) {
    if (id < 0 || id > (1 << 24)) return pn_errorf("%s: token id %d out of range", where, id);
    if (id >= t->cap_tokens) { // geometric growth: vocabularies arrive one id at a time
        int old = t->cap_tokens, cap = id + 1 > 2 * old ? id + 1 : 2 * old;
        t->tok = pn_realloc(t->tok, sizeof(char *) * (size_t)cap);
        t->tok_len = pn_realloc(t->tok_len, sizeof(uint32_t) * (size_t)cap);
        t->is_added = pn_realloc(t->is_added, (size_t)cap);
        t->is_special = pn_realloc(t->is_special, (size_t)cap);
        for (int i = old; i < cap; i++) t->tok[i] = NULL, t->tok_len[i] = 0, t->is_added[i] = t->is_special[i] = 0;
        t->cap_tokens = cap;
    }
    if (id >= t->n_tokens) t->n_tokens = id + 1;
    if (t->tok[id]) return pn_errorf("%s: token id %d given twice", where, id);
    t->tok[id] = pn_malloc(n + 1);
    memcpy(t->tok[id], s, n);
    t->tok[id][n] = 0;
    t->tok_len[id] = (uint32_t)n;
    return 0;
}

static void build_vocab_map(pn_tokenizer *t) {
    t->vocab.cap = pow2_at_least((size_t)t->n_tokens * 2 + 2);
    t->vocab.slot = pn_malloc(sizeof(int32_t) * t->vocab.cap);
    for (size_t i = 0; i < t->vocab.cap; i++) t->vocab.slot[i] = -1;
    for (int32_t id = 0; id < t->n_tokens; id++)
        if (t->tok[id] && !t->is_added[id]) strmap_put(t, id);
    for (int b = 0; b < 256; b++) t->byte_id[b] = strmap_get(t, t->byte_char[b], t->byte_char_len[b]);
}

// One merge "left right" (byte-level strings) of rank `rank`.
static int add_merge(pn_tokenizer *t, const char *l, size_t ln, const char *r, size_t rn, const char *where,
                     int line) {
    int32_t a = strmap_get(t, l, ln), b = strmap_get(t, r, rn);
    char *cat = pn_malloc(ln + rn + 1);
    memcpy(cat, l, ln);
    memcpy(cat + ln, r, rn);
    int32_t m = strmap_get(t, cat, ln + rn);
    free(cat);
    if (a < 0 || b < 0 || m < 0)
        return pn_errorf("%s:%d: merge \"%.*s %.*s\" uses a token that is not in the vocabulary", where, line, (int)ln,
                         l, (int)rn, r);
    uint64_t key = pair_key(a, b);
    size_t i = merge_slot(&t->merges, key);
    if (t->merges.key[i]) return 0; // a repeated merge keeps its first (lowest) rank, as HF does
    t->merges.key[i] = key;
    t->merges.rank[i] = (uint32_t)t->n_merges++;
    t->merges.id[i] = m;
    return 0;
}

static void alloc_merges(pn_tokenizer *t, size_t n) {
    t->merges.cap = pow2_at_least(n * 2 + 2);
    t->merges.key = pn_calloc(t->merges.cap, sizeof(uint64_t));
    t->merges.rank = pn_calloc(t->merges.cap, sizeof(uint32_t));
    t->merges.id = pn_calloc(t->merges.cap, sizeof(int32_t));
}

static int cmp_added(const void *a, const void *b) {
    const added_token *x = a, *y = b;
    return x->len != y->len ? (x->len < y->len ? 1 : -1) : (x->id > y->id) - (x->id < y->id);
}

static int add_added(pn_tokenizer *t, json_int_t jid, const char *content, int special, const char *where) {
    size_t n = strlen(content);
    if (jid < 0 || jid > (1 << 24)) return pn_errorf("%s: added token \"%s\" has id %lld, out of range", where, content, (long long)jid);
    const int32_t id = (int32_t)jid;
    if (n == 0) return pn_errorf("%s: added token %d is empty", where, id);
    if (id < t->n_tokens && t->tok[id]) {
        // HF lets an added token repeat a vocabulary entry of the same id (Llama 3 does); it must agree.
        if (t->tok_len[id] != n || memcmp(t->tok[id], content, n) != 0)
            return pn_errorf("%s: added token %d \"%s\" clashes with vocabulary token \"%s\"", where, id, content,
                             t->tok[id]);
    } else if (set_token(t, id, content, n, where)) {
        return -1;
    }
    t->is_added[id] = 1;
    t->is_special[id] = (uint8_t)(special != 0);
    t->added = pn_realloc(t->added, sizeof(added_token) * (size_t)(t->n_added + 1));
    t->added[t->n_added++] = (added_token){.id = id, .special = special, .content = t->tok[id], .len = n};
    return 0;
}

// The flags HF's AddedToken carries (tokenizer.json's added_tokens, tokenizer_config.json's
// added_tokens_decoder), on the token just added.
static void added_flags(pn_tokenizer *t, json_t *a) {
    added_token *x = &t->added[t->n_added - 1];
    x->lstrip = json_is_true(json_object_get(a, "lstrip"));
    x->rstrip = json_is_true(json_object_get(a, "rstrip"));
    x->single_word = json_is_true(json_object_get(a, "single_word"));
    json_t *norm = json_object_get(a, "normalized"); // HF's default: normalized unless special
    x->normalized = norm ? json_is_true(norm) : !x->special;
}

static pre_step *new_step(pn_tokenizer *t, pt_kind kind, const char *where) {
    if (t->n_steps == PN_MAX_PRE_STEPS) {
        pn_errorf("%s: more than %d pre-tokenizer steps", where, PN_MAX_PRE_STEPS);
        return NULL;
    }
    pre_step *st = &t->steps[t->n_steps++];
    *st = (pre_step){.kind = kind, .behavior = SPLIT_ISOLATED};
    st->hash = fnv1a(&kind, sizeof kind, FNV_SEED);
    return st;
}

static int compile_regex(pre_step *st, const char *pattern, const char *where) {
    int err;
    PCRE2_SIZE off;
    st->re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF,
                           &err, &off, NULL);
    if (!st->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return pn_errorf("%s: pre-tokenizer regex does not compile at offset %zu: %s", where, (size_t)off, (char *)msg);
    }
    pcre2_jit_compile(st->re, PCRE2_JIT_COMPLETE); // falls back to the interpreter if JIT is unavailable
    st->pat_hash = fnv1a(pattern, strlen(pattern), FNV_SEED);
    st->hash = fnv1a(&st->pat_hash, sizeof st->pat_hash, st->hash);
    return 0;
}

// The classic single-regex pipeline (vocab.json + merges.txt, or Split(Isolated) + ByteLevel).
static int regex_step(pn_tokenizer *t, const char *pattern, const char *where) {
    pre_step *st = new_step(t, PT_SPLIT, where);
    return st ? compile_regex(st, pattern, where) : -1;
}

// The identity hashes what decides the ids — vocabulary, merges, added tokens, normalizer and
// pre-tokenizer — and nothing about the file format, so the same tokenizer read from tokenizer.json or
// from vocab.json + merges.txt (or built in) gets the same identity.
static void set_identity(pn_tokenizer *t) {
    uint64_t h = FNV_SEED;
    for (int32_t id = 0; id < t->n_tokens; id++) {
        if (t->tok[id]) h = fnv1a(t->tok[id], t->tok_len[id] + 1, h);
        const uint8_t flags[2] = {t->is_added[id], t->is_special[id]};
        h = fnv1a(flags, 2, fnv1a(&id, sizeof id, h));
    }
    for (size_t i = 0; i < t->merges.cap; i++)
        if (t->merges.key[i]) {
            uint64_t kr[2] = {t->merges.key[i], t->merges.rank[i]};
            h ^= pn_splitmix64(fnv1a(kr, sizeof kr, FNV_SEED)); // order-free over the table
        }
    // The rules: the classic single-regex pipeline hashes as it always has (shards written before the
    // pre-tokenizer steps existed keep their identity); anything else adds every step's description.
    const int classic = t->n_steps <= 1 && (!t->n_steps || (t->steps[0].re && t->steps[0].behavior == SPLIT_ISOLATED &&
                                                            !t->steps[0].invert && !t->steps[0].prefix_space));
    uint64_t pattern_hash = 0;
    if (classic && t->n_steps) {
        pattern_hash = t->steps[0].pat_hash;
    } else {
        for (int i = 0; i < t->n_steps; i++) {
            const uint64_t d[4] = {t->steps[i].hash, t->steps[i].behavior, (uint64_t)t->steps[i].invert,
                                   (uint64_t)t->steps[i].prefix_space};
            pattern_hash = fnv1a(d, sizeof d, pattern_hash ? pattern_hash : FNV_SEED);
        }
    }
    int nfc = 0, lower = 0;
    for (int i = 0; i < t->n_norms; i++) nfc |= t->norms[i] == NORM_NFC, lower |= t->norms[i] == NORM_LOWERCASE;
    const uint64_t rules[4] = {pattern_hash, (uint64_t)nfc, (uint64_t)t->ignore_merges, 0};
    h = fnv1a(rules, sizeof rules, h);
    // Rules added since: only when used, so the identities above stay.
    if (lower || t->unk >= 0 || t->n_prefix || t->n_suffix) {
        const uint64_t more[4] = {(uint64_t)lower, (uint64_t)(t->unk + 1) | (uint64_t)t->fuse_unk << 32,
                                  (uint64_t)t->n_prefix, (uint64_t)t->n_suffix};
        h = fnv1a(more, sizeof more, h);
        h = fnv1a(t->pp_prefix, sizeof(int32_t) * (size_t)t->n_prefix, h);
        h = fnv1a(t->pp_suffix, sizeof(int32_t) * (size_t)t->n_suffix, h);
    }
    for (int i = 0; i < t->n_added; i++) {
        const added_token *a = &t->added[i];
        if (a->lstrip || a->rstrip || a->single_word || a->normalized) {
            const int32_t f[5] = {a->id, a->lstrip, a->rstrip, a->single_word, a->normalized};
            h = fnv1a(f, sizeof f, h);
        }
    }
    snprintf(t->identity, sizeof t->identity, "bpe vocab %d fnv1a64:%016llx", t->n_tokens, (unsigned long long)h);
}

void pn_tokenizer_free(pn_tokenizer *t) {
    if (!t) return;
    for (int i = 0; i < t->n_tokens; i++) free(t->tok[i]);
    free(t->tok);
    free(t->tok_len);
    free(t->is_added);
    free(t->is_special);
    free(t->vocab.slot);
    free(t->merges.key);
    free(t->merges.rank);
    free(t->merges.id);
    free(t->added);
    for (int i = 0; i < t->n_steps; i++)
        if (t->steps[i].re) pcre2_code_free(t->steps[i].re);
    free(t);
}

pn_tokenizer *pn_tokenizer_bytes(void) {
    pn_tokenizer *t = tok_new("bytes");
    for (int b = 0; b < 256; b++) set_token(t, b, t->byte_char[b], t->byte_char_len[b], "bytes");
    build_vocab_map(t);
    alloc_merges(t, 0);
    add_added(t, 256, "<|endoftext|>", 1, "bytes");
    t->eos = 256;
    set_identity(t);
    return t;
}

// ----------------------------------------------------------------------------------------------------
// loading: vocab.json + merges.txt (+ tokenizer_config.json), or tokenizer.json

static int is_file(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int load_vocab_obj(pn_tokenizer *t, json_t *vocab, const char *where) {
    if (!json_is_object(vocab) || json_object_size(vocab) == 0)
        return pn_errorf("%s: the vocabulary must be a non-empty object of token -> id", where);
    const char *k;
    json_t *v;
    json_object_foreach(vocab, k, v) {
        if (!json_is_integer(v)) return pn_errorf("%s: id of token \"%s\" is not an integer", where, k);
        const json_int_t id = json_integer_value(v);
        if (id < 0 || id > (1 << 24)) return pn_errorf("%s: token \"%s\" has id %lld, out of range", where, k, (long long)id);
        if (set_token(t, (int32_t)id, k, strlen(k), where)) return -1;
    }
    return 0;
}

// Splits a merge written "left right" at its single space.
static int split_merge(const char *s, size_t n, size_t *sp) {
    const char *x = memchr(s, ' ', n);
    if (!x || x == s || (size_t)(x - s) + 1 >= n || memchr(x + 1, ' ', n - (size_t)(x - s) - 1)) return -1;
    *sp = (size_t)(x - s);
    return 0;
}

static int load_merges_txt(pn_tokenizer *t, const char *path) {
    size_t len;
    char *buf = pn_read_file(path, &len);
    if (!buf) return -1;
    size_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += buf[i] == '\n';
    alloc_merges(t, lines);
    int rc = 0, line = 0;
    for (char *p = buf, *end = buf + len; p < end && !rc;) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        line++;
        if (n && p[n - 1] == '\r') n--;
        if (n && !(line == 1 && n >= 8 && !memcmp(p, "#version", 8))) {
            size_t sp;
            if (split_merge(p, n, &sp)) rc = pn_errorf("%s:%d: a merge must be two tokens separated by one space", path, line);
            else rc = add_merge(t, p, sp, p + sp + 1, n - sp - 1, path, line);
        }
        p = nl ? nl + 1 : end;
    }
    free(buf);
    if (!rc && t->n_merges == 0) rc = pn_errorf("%s: no merges (an empty merges file cannot be a BPE tokenizer)", path);
    return rc;
}

// "eos_token": "<|endoftext|>" or {"content": "..."} -> id, or -1.
static int special_id(const pn_tokenizer *t, json_t *v) {
    if (json_is_object(v)) v = json_object_get(v, "content");
    const char *s = json_string_value(v);
    if (!s) return -1;
    for (int i = 0; i < t->n_added; i++)
        if (!strcmp(t->added[i].content, s)) return t->added[i].id;
    return strmap_get(t, s, strlen(s));
}

static int load_tokenizer_config(pn_tokenizer *t, const char *path, const char **klass_out, json_t **root_out) {
    json_t *root = pn_json_load(path);
    if (!root) return -1;
    *root_out = root;
    if (!json_is_object(root)) return pn_errorf("%s: not a JSON object", path);
    json_t *kl = json_object_get(root, "tokenizer_class");
    if (kl && !json_is_null(kl) && !json_is_string(kl)) return pn_errorf("%s: \"tokenizer_class\" must be a string", path);
    *klass_out = json_string_value(kl);
    json_t *dec = json_object_get(root, "added_tokens_decoder");
    if (dec && !json_is_null(dec) && !json_is_object(dec)) return pn_errorf("%s: \"added_tokens_decoder\" must be an object", path);
    const char *k;
    json_t *v;
    json_object_foreach(dec, k, v) {
        char *end;
        errno = 0;
        long long id = strtoll(k, &end, 10);
        const char *content = json_string_value(json_object_get(v, "content"));
        if (*end || !*k || errno == ERANGE || !content)
            return pn_errorf("%s: added_tokens_decoder[\"%s\"] needs a numeric id and a content", path, k);
        if (add_added(t, id, content, json_is_true(json_object_get(v, "special")), path)) return -1;
        added_flags(t, v);
    }
    return 0;
}

static int load_vocab_merges(pn_tokenizer *t, const char *dir) {
    char *vp = pn_path_join(dir, "vocab.json"), *mp = pn_path_join(dir, "merges.txt");
    char *cp = pn_path_join(dir, "tokenizer_config.json");
    json_t *cfg = NULL;
    const char *klass = NULL;
    int rc = -1;
    json_t *vocab = pn_json_load(vp);
    if (!vocab) goto done;
    if (load_vocab_obj(t, vocab, vp)) goto done;
    build_vocab_map(t);
    if (load_merges_txt(t, mp)) goto done;
    if (is_file(cp) && load_tokenizer_config(t, cp, &klass, &cfg)) goto done;
    snprintf(t->where, sizeof t->where, "%s", vp);
    // vocab.json + merges.txt carry no pre-tokenizer: the tokenizer class decides (transformers' rules).
    if (!klass || !strncmp(klass, "GPT2Tokenizer", 13)) {
        snprintf(t->kind, sizeof t->kind, "gpt2");
        rc = regex_step(t, PAT_GPT2, vp);
    } else if (!strncmp(klass, "Qwen2Tokenizer", 14)) {
        snprintf(t->kind, sizeof t->kind, "qwen2");
        t->norms[t->n_norms++] = NORM_NFC;
        rc = regex_step(t, PAT_QWEN2, vp);
    } else {
        rc = pn_errorf("%s: tokenizer_class \"%s\" is not a byte-level BPE this loader knows (Qwen2Tokenizer, "
                       "GPT2Tokenizer); give a tokenizer.json instead", cp, klass);
    }
    if (!rc && cfg) {
        t->eos = special_id(t, json_object_get(cfg, "eos_token"));
        t->bos = special_id(t, json_object_get(cfg, "bos_token"));
    }
done:
    json_decref(vocab);
    json_decref(cfg);
    free(vp);
    free(mp);
    free(cp);
    return rc;
}

static int is_type(json_t *o, const char *type) {
    const char *s = json_string_value(json_object_get(o, "type"));
    return s && !strcmp(s, type);
}

static const char *type_of(json_t *o) {
    const char *s = json_string_value(json_object_get(o, "type"));
    return s ? s : "?";
}

static int parse_normalizer(pn_tokenizer *t, json_t *n, const char *path) {
    if (!n || json_is_null(n)) return 0;
    if (is_type(n, "Sequence")) {
        json_t *list = json_object_get(n, "normalizers"), *x;
        size_t i;
        if (!json_is_array(list)) return pn_errorf("%s: normalizer Sequence without a \"normalizers\" list", path);
        json_array_foreach(list, i, x) if (parse_normalizer(t, x, path)) return -1;
        return 0;
    }
    const int nfc = is_type(n, "NFC"), lower = is_type(n, "Lowercase");
    if (!nfc && !lower) return pn_errorf("%s: normalizer \"%s\" is not supported (NFC, Lowercase, Sequence)", path, type_of(n));
    if (t->n_norms == PN_MAX_NORMS) return pn_errorf("%s: more than %d normalizers", path, PN_MAX_NORMS);
    t->norms[t->n_norms++] = nfc ? NORM_NFC : NORM_LOWERCASE;
    return 0;
}

static int parse_pre_tokenizer(pn_tokenizer *t, json_t *p, const char *path, int *have_bytelevel) {
    if (!p || json_is_null(p)) return pn_errorf("%s: no pre_tokenizer (a byte-level BPE needs ByteLevel)", path);
    if (is_type(p, "Sequence")) {
        json_t *list = json_object_get(p, "pretokenizers"), *x;
        size_t i;
        if (!json_is_array(list)) return pn_errorf("%s: pre_tokenizer Sequence without a \"pretokenizers\" list", path);
        json_array_foreach(list, i, x) if (parse_pre_tokenizer(t, x, path, have_bytelevel)) return -1;
        return 0;
    }
    if (is_type(p, "Split")) {
        json_t *pat = json_object_get(p, "pattern");
        const char *re = json_string_value(json_object_get(pat, "Regex"));
        const char *str = json_string_value(json_object_get(pat, "String"));
        const char *behavior = json_string_value(json_object_get(p, "behavior"));
        static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
        int b = -1;
        for (int i = 0; i < 5 && behavior; i++)
            if (!strcmp(behavior, names[i])) b = i;
        if (!re && !str) return pn_errorf("%s: Split pre-tokenizer needs a \"Regex\" or \"String\" pattern", path);
        if (b < 0)
            return pn_errorf("%s: Split behavior \"%s\" is not one of Removed, Isolated, MergedWithPrevious, MergedWithNext, "
                             "Contiguous", path, behavior ? behavior : "?");
        pre_step *st = new_step(t, PT_SPLIT, path);
        if (!st) return -1;
        st->behavior = (split_behavior)b;
        st->invert = json_is_true(json_object_get(p, "invert"));
        if (str) { // a literal: quoted into a regex (\Q...\E cannot hold "\E", so escape byte by byte)
            size_t n = strlen(str);
            char *q = pn_malloc(n * 2 + 1), *w = q;
            for (size_t i = 0; i < n; i++) {
                if (strchr("\\^$.|?*+()[]{}", str[i])) *w++ = '\\';
                *w++ = str[i];
            }
            *w = 0;
            int rc = compile_regex(st, q, path);
            free(q);
            if (rc) return -1;
        } else if (compile_regex(st, re, path)) {
            return -1;
        }
        const uint64_t d[2] = {(uint64_t)b, (uint64_t)st->invert};
        st->hash = fnv1a(d, sizeof d, st->hash);
        return 0;
    }
    if (is_type(p, "Digits")) { // HF: split on char::is_numeric, each digit alone or runs together
        pre_step *st = new_step(t, PT_DIGITS, path);
        if (!st) return -1;
        st->behavior = json_is_true(json_object_get(p, "individual_digits")) ? SPLIT_ISOLATED : SPLIT_CONTIGUOUS;
        st->hash = fnv1a(&st->behavior, sizeof st->behavior, st->hash);
        return 0;
    }
    if (is_type(p, "ByteLevel")) {
        *have_bytelevel = 1;
        const int prefix = json_is_true(json_object_get(p, "add_prefix_space"));
        json_t *ur = json_object_get(p, "use_regex");
        const int use_regex = !ur || json_is_true(ur);
        if (!use_regex && !prefix) return 0; // only the byte mapping, which BPE does on every piece
        pre_step *st = new_step(t, PT_BYTELEVEL, path);
        if (!st) return -1;
        st->prefix_space = prefix;
        if (use_regex && compile_regex(st, PAT_GPT2, path)) return -1;
        st->hash = fnv1a(&st->prefix_space, sizeof st->prefix_space, st->hash);
        return 0;
    }
    return pn_errorf("%s: pre_tokenizer \"%s\" is not supported (Sequence, Split, Digits, ByteLevel)", path, type_of(p));
}

// The special token named `name` in a post-processor, as an id.
static int pp_token(pn_tokenizer *t, json_t *ids, const char *name, int32_t *out, const char *path) {
    if (json_is_integer(ids)) {
        json_int_t id = json_integer_value(ids);
        if (id < 0 || id >= t->n_tokens || !t->tok[id])
            return pn_errorf("%s: post_processor token %s has id %lld, outside the vocabulary", path, name, (long long)id);
        *out = (int32_t)id;
        return 0;
    }
    return pn_errorf("%s: post_processor token %s has no id", path, name);
}

static int pp_push(int32_t *arr, int *n, int32_t id, const char *path) {
    if (*n == PN_MAX_PP) return pn_errorf("%s: post_processor adds more than %d tokens", path, PN_MAX_PP);
    arr[(*n)++] = id;
    return 0;
}

// The special tokens a post-processor puts around a single sequence (what HF's encode adds with
// add_special_tokens=True): TemplateProcessing's "single" template, RobertaProcessing / BertProcessing's
// cls + $A + sep; ByteLevel adds none; a Sequence applies each in turn.
static int parse_post_processor(pn_tokenizer *t, json_t *p, const char *path) {
    if (!p || json_is_null(p) || is_type(p, "ByteLevel")) return 0;
    if (is_type(p, "Sequence")) {
        json_t *list = json_object_get(p, "processors"), *x;
        size_t i;
        if (!json_is_array(list)) return pn_errorf("%s: post_processor Sequence without a \"processors\" list", path);
        json_array_foreach(list, i, x) if (parse_post_processor(t, x, path)) return -1;
        return 0;
    }
    int32_t pre[PN_MAX_PP], suf[PN_MAX_PP];
    int npre = 0, nsuf = 0;
    if (is_type(p, "RobertaProcessing") || is_type(p, "BertProcessing")) { // "cls": ["<s>", 0], "sep": ["</s>", 2]
        json_t *cls = json_object_get(p, "cls"), *sep = json_object_get(p, "sep");
        int32_t a = -1, b = -1;
        if (!json_is_array(cls) || !json_is_array(sep) || pp_token(t, json_array_get(cls, 1), "cls", &a, path) ||
            pp_token(t, json_array_get(sep, 1), "sep", &b, path))
            return pn_errorf("%s: %s needs \"cls\" and \"sep\" as [token, id]", path, type_of(p));
        pre[npre++] = a, suf[nsuf++] = b;
    } else if (is_type(p, "TemplateProcessing")) {
        json_t *single = json_object_get(p, "single"), *specials = json_object_get(p, "special_tokens"), *item;
        size_t i;
        int seen_a = 0;
        if (!json_is_array(single)) return pn_errorf("%s: TemplateProcessing without a \"single\" template", path);
        json_array_foreach(single, i, item) {
            json_t *sp = json_object_get(item, "SpecialToken");
            if (json_object_get(item, "Sequence")) {
                if (seen_a++) return pn_errorf("%s: TemplateProcessing's single template has two sequences", path);
                continue;
            }
            const char *name = json_string_value(json_object_get(sp, "id"));
            if (!name) return pn_errorf("%s: TemplateProcessing: single[%zu] is neither Sequence nor SpecialToken", path, i);
            json_t *ids = json_object_get(json_object_get(specials, name), "ids"), *id;
            size_t j;
            if (!json_is_array(ids) || !json_array_size(ids))
                return pn_errorf("%s: TemplateProcessing's special_tokens has no ids for \"%s\"", path, name);
            json_array_foreach(ids, j, id) {
                int32_t v = -1;
                if (pp_token(t, id, name, &v, path)) return -1;
                if (seen_a ? (nsuf == PN_MAX_PP) : (npre == PN_MAX_PP))
                    return pn_errorf("%s: post_processor adds more than %d tokens", path, PN_MAX_PP);
                if (seen_a) suf[nsuf++] = v;
                else pre[npre++] = v;
            }
        }
        if (!seen_a) return pn_errorf("%s: TemplateProcessing's single template has no $A", path);
    } else {
        return pn_errorf("%s: post_processor \"%s\" is not supported (TemplateProcessing, RobertaProcessing, "
                         "BertProcessing, ByteLevel, Sequence)", path, type_of(p));
    }
    // Wrapping what is there: new prefix = pre + prefix, new suffix = suffix + suf.
    int32_t old[PN_MAX_PP];
    int nold = t->n_prefix;
    memcpy(old, t->pp_prefix, sizeof(int32_t) * (size_t)nold);
    t->n_prefix = 0;
    for (int i = 0; i < npre; i++)
        if (pp_push(t->pp_prefix, &t->n_prefix, pre[i], path)) return -1;
    for (int i = 0; i < nold; i++)
        if (pp_push(t->pp_prefix, &t->n_prefix, old[i], path)) return -1;
    for (int i = 0; i < nsuf; i++)
        if (pp_push(t->pp_suffix, &t->n_suffix, suf[i], path)) return -1;
    return 0;
}

static int load_tokenizer_json(pn_tokenizer *t, const char *path) {
    json_t *root = pn_json_load(path);
    if (!root) return -1;
    int rc = -1, have_bytelevel = 0;
    snprintf(t->where, sizeof t->where, "%s", path);
    json_t *model = json_object_get(root, "model");
    if (!json_is_object(model) || !is_type(model, "BPE")) {
        pn_errorf("%s: model.type must be \"BPE\"", path);
        goto done;
    }
    if (json_is_true(json_object_get(model, "byte_fallback"))) {
        pn_errorf("%s: byte_fallback BPE (SentencePiece-style) is not a byte-level BPE", path);
        goto done;
    }
    t->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    t->fuse_unk = json_is_true(json_object_get(model, "fuse_unk"));
    if (load_vocab_obj(t, json_object_get(model, "vocab"), path)) goto done;
    build_vocab_map(t);
    json_t *merges = json_object_get(model, "merges");
    // No merges is legal only for a pure byte vocabulary; anywhere else it means the merges were lost.
    if (!json_is_array(merges) || (json_array_size(merges) == 0 && json_object_size(json_object_get(model, "vocab")) > 256)) {
        pn_errorf("%s: model.merges must be a non-empty list", path);
        goto done;
    }
    alloc_merges(t, json_array_size(merges));
    size_t i;
    json_t *m;
    json_array_foreach(merges, i, m) {
        const char *l, *r;
        size_t ln, rn, sp;
        if (json_is_string(m)) { // "a b"
            const char *s = json_string_value(m);
            if (split_merge(s, strlen(s), &sp)) {
                pn_errorf("%s: merges[%zu] \"%s\" is not two tokens separated by one space", path, i, s);
                goto done;
            }
            l = s, ln = sp, r = s + sp + 1, rn = strlen(s) - sp - 1;
        } else if (json_is_array(m) && json_array_size(m) == 2 && json_is_string(json_array_get(m, 0)) &&
                   json_is_string(json_array_get(m, 1))) { // ["a", "b"]
            l = json_string_value(json_array_get(m, 0)), ln = strlen(l);
            r = json_string_value(json_array_get(m, 1)), rn = strlen(r);
        } else {
            pn_errorf("%s: merges[%zu] must be \"a b\" or [\"a\", \"b\"]", path, i);
            goto done;
        }
        if (add_merge(t, l, ln, r, rn, path, (int)i + 1)) goto done;
    }
    json_t *added = json_object_get(root, "added_tokens");
    if (added && !json_is_null(added) && !json_is_array(added)) {
        pn_errorf("%s: \"added_tokens\" must be a list", path);
        goto done;
    }
    json_t *a;
    json_array_foreach(added, i, a) {
        const char *content = json_string_value(json_object_get(a, "content"));
        json_t *id = json_object_get(a, "id");
        if (!content || !json_is_integer(id)) {
            pn_errorf("%s: added_tokens[%zu] needs \"id\" and \"content\"", path, i);
            goto done;
        }
        if (add_added(t, json_integer_value(id), content, json_is_true(json_object_get(a, "special")), path)) goto done;
        added_flags(t, a);
    }
    // unk: bytes whose token is missing become unk; without one they are dropped (HF's BPE).
    json_t *unk = json_object_get(model, "unk_token");
    if (unk && !json_is_null(unk)) {
        const char *u = json_string_value(unk);
        t->unk = u ? special_id(t, unk) : -1;
        if (t->unk < 0) {
            pn_errorf("%s: model.unk_token \"%s\" is not in the vocabulary", path, u ? u : "?");
            goto done;
        }
    }
    if (parse_normalizer(t, json_object_get(root, "normalizer"), path) ||
        parse_pre_tokenizer(t, json_object_get(root, "pre_tokenizer"), path, &have_bytelevel) ||
        parse_post_processor(t, json_object_get(root, "post_processor"), path))
        goto done;
    if (!have_bytelevel) {
        pn_errorf("%s: the pre_tokenizer has no ByteLevel step: not a byte-level BPE", path);
        goto done;
    }
    snprintf(t->kind, sizeof t->kind, "json");
    rc = 0;
done:
    json_decref(root);
    return rc;
}

pn_tokenizer *pn_tokenizer_load(const char *dir) {
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        pn_errorf("%s: no such tokenizer folder", dir);
        return NULL;
    }
    pn_tokenizer *t = tok_new("?");
    char *tj = pn_path_join(dir, "tokenizer.json"), *vj = pn_path_join(dir, "vocab.json");
    int rc;
    if (is_file(tj)) {
        rc = load_tokenizer_json(t, tj);
        // tokenizer.json has no eos: tokenizer_config.json names it. A broken one is an error, never skipped:
        // ignoring it silently once gave shards the wrong eos.
        char *cp = pn_path_join(dir, "tokenizer_config.json");
        if (!rc && is_file(cp)) {
            json_t *cfg = pn_json_load(cp);
            if (!cfg) {
                rc = -1;
            } else if (!json_is_object(cfg)) {
                rc = pn_errorf("%s: not a JSON object", cp);
            } else {
                t->eos = special_id(t, json_object_get(cfg, "eos_token"));
                t->bos = special_id(t, json_object_get(cfg, "bos_token"));
            }
            json_decref(cfg);
        }
        free(cp);
    } else if (is_file(vj)) {
        rc = load_vocab_merges(t, dir);
    } else {
        rc = pn_errorf("%s: no tokenizer.json or vocab.json + merges.txt in the folder", dir);
    }
    free(tj);
    free(vj);
    if (rc) {
        pn_tokenizer_free(t);
        return NULL;
    }
    if (t->eos < 0) // the usual name when the config does not say
        for (int i = 0; i < t->n_added; i++)
            if (!strcmp(t->added[i].content, "<|endoftext|>")) t->eos = t->added[i].id;
    // Byte tokens may be missing (SmolLM2 lacks 21 control and invalid-UTF-8 bytes: HF maps those bytes to
    // unk, or drops them), but a vocabulary without the printable ASCII ones is not a byte-level BPE.
    for (int b = 33; b < 127; b++)
        if (t->byte_id[b] < 0) {
            pn_errorf("%s: the vocabulary has no token for byte 0x%02x (\"%s\"): not a byte-level BPE", dir, b,
                      t->byte_char[b]);
            pn_tokenizer_free(t);
            return NULL;
        }
    if (t->n_added) qsort(t->added, (size_t)t->n_added, sizeof(added_token), cmp_added);
    for (int i = 0; i < t->n_added; i++) t->n_added_normalized += t->added[i].normalized;
    // added[].content points at tok[]: still valid after the sort.
    set_identity(t);
    return t;
}

int pn_tokenizer_vocab_size(const pn_tokenizer *t) { return t->n_tokens; }
int pn_tokenizer_eos_id(const pn_tokenizer *t) { return t->eos; }
int pn_tokenizer_bos_id(const pn_tokenizer *t) { return t->bos; }
const char *pn_tokenizer_identity(const pn_tokenizer *t) { return t->identity; }
const char *pn_tokenizer_token(const pn_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_tokens ? t->tok[id] : NULL;
}

// ----------------------------------------------------------------------------------------------------
// the per-thread cache of piece -> ids

typedef struct {
    uint64_t serial;
    size_t cap, used;        // table slots
    uint64_t *hash;          // 0 = empty
    uint32_t *key_off, *key_len, *ids_off, *ids_n;
    char *keys;
    int32_t *ids;
    size_t keys_len, keys_cap, ids_len, ids_cap;
    pcre2_match_data *md;
    int32_t *sym; // BPE scratch
    size_t sym_cap;
    char *buf; // NFC / byte-level scratch
    size_t buf_cap;
} tok_cache;

#define CACHE_SLOTS (1u << 16)
static pthread_key_t cache_key;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;

static void cache_destroy(void *p) {
    tok_cache *c = p;
    if (!c) return;
    free(c->hash);
    free(c->key_off);
    free(c->key_len);
    free(c->ids_off);
    free(c->ids_n);
    free(c->keys);
    free(c->ids);
    free(c->sym);
    free(c->buf);
    if (c->md) pcre2_match_data_free(c->md);
    free(c);
}

static void cache_key_init(void) { pthread_key_create(&cache_key, cache_destroy); }

static void cache_clear(tok_cache *c) {
    memset(c->hash, 0, sizeof(uint64_t) * c->cap);
    c->used = c->keys_len = c->ids_len = 0;
}

static tok_cache *cache_get(const pn_tokenizer *t) {
    pthread_once(&cache_once, cache_key_init);
    tok_cache *c = pthread_getspecific(cache_key);
    if (!c) {
        c = pn_calloc(1, sizeof *c);
        c->cap = CACHE_SLOTS;
        c->hash = pn_calloc(c->cap, sizeof(uint64_t));
        c->key_off = pn_malloc(sizeof(uint32_t) * c->cap);
        c->key_len = pn_malloc(sizeof(uint32_t) * c->cap);
        c->ids_off = pn_malloc(sizeof(uint32_t) * c->cap);
        c->ids_n = pn_malloc(sizeof(uint32_t) * c->cap);
        pthread_setspecific(cache_key, c);
    }
    if (c->serial != t->serial) {
        cache_clear(c);
        c->serial = t->serial;
        // One ovector pair is all any step needs (the whole match), whatever the patterns' groups.
        if (!c->md) c->md = pcre2_match_data_create(1, NULL);
    }
    return c;
}

// The slot holding `piece`, or the empty slot where it would go.
static size_t cache_find(tok_cache *c, const char *piece, size_t n, uint64_t h) {
    size_t mask = c->cap - 1, i = h & mask;
    while (c->hash[i] && !(c->hash[i] == h && c->key_len[i] == n && !memcmp(c->keys + c->key_off[i], piece, n)))
        i = (i + 1) & mask;
    return i;
}

static void cache_put(tok_cache *c, size_t slot, uint64_t h, const char *piece, size_t n, const int32_t *ids,
                      size_t k) {
    if (c->used * 2 >= c->cap || c->keys_len + n > UINT32_MAX / 2 || c->ids_len + k > UINT32_MAX / 2) {
        cache_clear(c); // full: start over (the working set of a corpus refills it quickly)
        slot = cache_find(c, piece, n, h);
    }
    if (c->keys_len + n > c->keys_cap) c->keys = pn_realloc(c->keys, c->keys_cap = (c->keys_len + n) * 2 + 4096);
    if (c->ids_len + k > c->ids_cap) c->ids = pn_realloc(c->ids, sizeof(int32_t) * (c->ids_cap = (c->ids_len + k) * 2 + 1024));
    memcpy(c->keys + c->keys_len, piece, n);
    memcpy(c->ids + c->ids_len, ids, sizeof(int32_t) * k);
    c->hash[slot] = h;
    c->key_off[slot] = (uint32_t)c->keys_len;
    c->key_len[slot] = (uint32_t)n;
    c->ids_off[slot] = (uint32_t)c->ids_len;
    c->ids_n[slot] = (uint32_t)k;
    c->keys_len += n;
    c->ids_len += k;
    c->used++;
}

// ----------------------------------------------------------------------------------------------------
// encoding

typedef struct {
    int32_t **ids;
    size_t *n, *cap;
} out_ids;

static void push(out_ids *o, const int32_t *v, size_t k) {
    if (!k) return; // a piece whose bytes all lack tokens adds nothing (and *o->ids may still be NULL)
    if (*o->n + k > *o->cap) {
        *o->cap = (*o->n + k) * 2 + 64;
        *o->ids = pn_realloc(*o->ids, sizeof(int32_t) * *o->cap);
    }
    memcpy(*o->ids + *o->n, v, sizeof(int32_t) * k);
    *o->n += k;
}

static uint32_t merge_rank(const pn_tokenizer *t, int32_t a, int32_t b, int32_t *merged) {
    size_t i = merge_slot(&t->merges, pair_key(a, b));
    if (!t->merges.key[i]) return UINT32_MAX;
    *merged = t->merges.id[i];
    return t->merges.rank[i];
}

// BPE of one pre-token (raw bytes): start from byte tokens, merge the lowest-ranked adjacent pair (the
// leftmost of equals) until none is left. Quadratic in the piece length, which is a word.
static void bpe_piece(const pn_tokenizer *t, tok_cache *c, const char *piece, size_t n, out_ids *o) {
    uint64_t h = fnv1a(piece, n, FNV_SEED) | 1;
    size_t slot = cache_find(c, piece, n, h);
    if (c->hash[slot]) {
        push(o, c->ids + c->ids_off[slot], c->ids_n[slot]);
        return;
    }
    if (n > c->sym_cap) c->sym = pn_realloc(c->sym, sizeof(int32_t) * (c->sym_cap = n * 2));
    int32_t *s = c->sym;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) { // a byte without a token: unk (consecutive ones fused if asked), or dropped
        int32_t id = t->byte_id[(unsigned char)piece[i]];
        if (id < 0 && (id = t->unk) >= 0 && t->fuse_unk && k && s[k - 1] == t->unk && t->byte_id[(unsigned char)piece[i - 1]] < 0)
            continue;
        if (id >= 0) s[k++] = id;
    }
    if (t->ignore_merges && n > 1 && k == n) { // Llama 3: a piece that is itself a token is not merged
        size_t bl = 0;
        if (n * 2 > c->buf_cap) c->buf = pn_realloc(c->buf, c->buf_cap = n * 2 + 16);
        for (size_t i = 0; i < n; i++) {
            memcpy(c->buf + bl, t->byte_char[(unsigned char)piece[i]], t->byte_char_len[(unsigned char)piece[i]]);
            bl += t->byte_char_len[(unsigned char)piece[i]];
        }
        int32_t id = strmap_get(t, c->buf, bl);
        if (id >= 0) s[0] = id, k = 1;
    }
    while (k > 1) {
        uint32_t best = UINT32_MAX;
        size_t at = 0;
        int32_t best_id = -1, m;
        for (size_t i = 0; i + 1 < k; i++) {
            uint32_t r = merge_rank(t, s[i], s[i + 1], &m);
            if (r < best) best = r, at = i, best_id = m;
        }
        if (best == UINT32_MAX) break;
        // Merge every non-overlapping occurrence of that pair, left to right (the same result as merging the
        // leftmost one at a time).
        const int32_t a = s[at], b = s[at + 1];
        size_t w = at;
        for (size_t i = at; i < k;) {
            if (i + 1 < k && s[i] == a && s[i + 1] == b) {
                s[w++] = best_id;
                i += 2;
            } else {
                s[w++] = s[i++];
            }
        }
        k = w;
    }
    push(o, s, k);
    cache_put(c, slot, h, piece, n, s, k);
}

// Length of the valid UTF-8 sequence at p (1..4), or 0 if invalid.
static size_t utf8_valid_len(const unsigned char *p, size_t n) {
    utf8proc_int32_t cp;
    utf8proc_ssize_t r = utf8proc_iterate(p, (utf8proc_ssize_t)n, &cp);
    return r > 0 ? (size_t)r : 0;
}

// NFC of a segment into c->buf (valid runs normalized, invalid bytes copied). Returns the length.
static size_t nfc_segment(tok_cache *c, const char *s, size_t n) {
    size_t bl = 0, i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n) { // extend over valid UTF-8
            if ((unsigned char)s[j] < 0x80) {
                j++;
                continue;
            }
            size_t l = utf8_valid_len((const unsigned char *)s + j, n - j);
            if (!l) break;
            j += l;
        }
        if (j > i) {
            utf8proc_uint8_t *norm = NULL;
            utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(j - i), &norm,
                                              UTF8PROC_STABLE | UTF8PROC_COMPOSE);
            const char *src = r >= 0 ? (const char *)norm : s + i;
            size_t len = r >= 0 ? (size_t)r : j - i;
            if (bl + len > c->buf_cap) c->buf = pn_realloc(c->buf, c->buf_cap = (bl + len) * 2 + 64);
            memcpy(c->buf + bl, src, len);
            bl += len;
            free(norm);
            i = j;
        }
        if (i < n) { // one invalid byte, kept
            if (bl + 1 > c->buf_cap) c->buf = pn_realloc(c->buf, c->buf_cap = (bl + 1) * 2 + 64);
            c->buf[bl++] = s[i++];
        }
    }
    return bl;
}

// Lowercase as HF's Lowercase normalizer (Rust's char::to_lowercase, one character at a time: the simple
// mappings plus U+0130 -> "i̇"), into c->buf; invalid bytes copied.
static size_t lower_segment(tok_cache *c, const char *s, size_t n) {
    size_t bl = 0;
    if (n * 3 / 2 + 8 > c->buf_cap) c->buf = pn_realloc(c->buf, c->buf_cap = n * 2 + 64);
    for (size_t i = 0; i < n;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t r = (unsigned char)s[i] < 0x80 ? 1 : utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (bl + 8 > c->buf_cap) c->buf = pn_realloc(c->buf, c->buf_cap = bl * 2 + 64);
        if ((unsigned char)s[i] < 0x80) {
            c->buf[bl++] = (char)((s[i] >= 'A' && s[i] <= 'Z') ? s[i] + 32 : s[i]);
            i++;
        } else if (r <= 0) {
            c->buf[bl++] = s[i++];
        } else {
            if (cp == 0x130) {
                bl += (size_t)utf8proc_encode_char('i', (utf8proc_uint8_t *)c->buf + bl);
                cp = 0x307;
            } else {
                cp = utf8proc_tolower(cp);
            }
            bl += (size_t)utf8proc_encode_char(cp, (utf8proc_uint8_t *)c->buf + bl);
            i += (size_t)r;
        }
    }
    return bl;
}

static int is_ascii(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] >= 0x80) return 0;
    return 1;
}

// Length of the character at s (1 for an invalid byte) and its code point (-1 if invalid).
static size_t char_at(const char *s, size_t n, int32_t *cp) {
    if ((unsigned char)s[0] < 0x80) {
        *cp = (unsigned char)s[0];
        return 1;
    }
    utf8proc_int32_t c;
    utf8proc_ssize_t r = utf8proc_iterate((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &c);
    *cp = r > 0 ? c : -1;
    return r > 0 ? (size_t)r : 1;
}

static int is_numeric_cp(int32_t cp) { // Rust's char::is_numeric: Nd, Nl, No
    if (cp < 0) return 0;
    if (cp < 0x80) return cp >= '0' && cp <= '9';
    utf8proc_category_t k = utf8proc_category(cp);
    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

static int is_space_cp(int32_t cp) { // Rust's char::is_whitespace (Unicode White_Space)
    if (cp < 0) return 0;
    if (cp < 0x80) return cp == ' ' || (cp >= 9 && cp <= 13);
    if (cp == 0x85) return 1;
    utf8proc_category_t k = utf8proc_category(cp);
    return k == UTF8PROC_CATEGORY_ZS || k == UTF8PROC_CATEGORY_ZL || k == UTF8PROC_CATEGORY_ZP;
}

static int is_word_cp(int32_t cp) { // HF's single_word test: alphanumeric or '_'
    if (cp < 0) return 0;
    if (cp < 0x80) return cp == '_' || (cp >= '0' && cp <= '9') || ((cp | 32) >= 'a' && (cp | 32) <= 'z');
    utf8proc_category_t k = utf8proc_category(cp);
    return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) || (k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO);
}

// ----------------------------------------------------------------------------------------------------
// pre-tokenizer steps

static int pretok(const pn_tokenizer *t, tok_cache *c, int step, const char *s, size_t n, out_ids *o);

// A split behaviour applied to a stream of spans (start, end, is it a delimiter match), as HF's
// NormalizedString::split folds them; every resulting non-empty piece goes on to the next step.
typedef struct {
    const pn_tokenizer *t;
    tok_cache *c;
    out_ids *o;
    const char *s;
    int step, rc, have, prev_match;
    split_behavior behavior;
    size_t ps, pe; // the pending piece
} splitter;

static void split_piece(splitter *sp, size_t a, size_t b) {
    if (b > a && !sp->rc) sp->rc = pretok(sp->t, sp->c, sp->step + 1, sp->s + a, b - a, sp->o);
}

static void split_pending(splitter *sp, size_t a, size_t b) {
    if (sp->have) split_piece(sp, sp->ps, sp->pe);
    sp->ps = a, sp->pe = b, sp->have = 1;
}

static void split_span(splitter *sp, size_t a, size_t b, int match) {
    if (b == a) return;
    switch (sp->behavior) {
    case SPLIT_ISOLATED: split_piece(sp, a, b); break;
    case SPLIT_REMOVED:
        if (!match) split_piece(sp, a, b);
        break;
    case SPLIT_MERGED_PREV: // a delimiter joins the piece before it
        if (match && !sp->prev_match && sp->have) sp->pe = b;
        else split_pending(sp, a, b);
        break;
    case SPLIT_MERGED_NEXT: // a delimiter joins the piece after it
        if (!match && sp->have && sp->prev_match) {
            split_piece(sp, sp->ps, b);
            sp->have = 0;
        } else if (!match) {
            if (sp->have) split_piece(sp, sp->ps, sp->pe);
            sp->have = 0;
            split_piece(sp, a, b);
        } else {
            split_pending(sp, a, b);
        }
        break;
    case SPLIT_CONTIGUOUS: // runs of delimiters (and of the rest) become one piece each
        if (match == sp->prev_match && sp->have) sp->pe = b;
        else split_pending(sp, a, b);
        break;
    }
    sp->prev_match = match;
}

static int split_end(splitter *sp) {
    if (sp->have) split_piece(sp, sp->ps, sp->pe);
    sp->have = 0;
    return sp->rc;
}

// The regex's matches as delimiter spans (or, inverted, as the kept spans) and the gaps between them.
static int split_regex(splitter *sp, const pcre2_code *re, int invert, size_t n) {
    const pn_tokenizer *t = sp->t;
    size_t at = 0, gap = 0;
    while (at < n && !sp->rc) {
        int rc = pcre2_match(re, (PCRE2_SPTR)sp->s, n, at, 0, sp->c->md, NULL);
        if (rc == PCRE2_ERROR_NOMATCH) break;
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return sp->rc = pn_errorf("%s: the pre-tokenizer regex failed on the text: %s", t->where, (char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(sp->c->md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) { // an empty match delimits nothing: search on from the next character
            int32_t cp;
            at = ms + char_at(sp->s + ms, n - ms, &cp);
            continue;
        }
        if (ms > gap) split_span(sp, gap, ms, invert);
        split_span(sp, ms, me, !invert);
        gap = at = me;
    }
    if (gap < n) split_span(sp, gap, n, invert);
    return split_end(sp);
}

// Pre-tokenizer step `step` on one piece; past the last step the piece is BPE-encoded.
static int pretok(const pn_tokenizer *t, tok_cache *c, int step, const char *s, size_t n, out_ids *o) {
    if (!n) return 0;
    if (step == t->n_steps) {
        bpe_piece(t, c, s, n, o);
        return 0;
    }
    const pre_step *st = &t->steps[step];
    splitter sp = {.t = t, .c = c, .o = o, .s = s, .step = step, .behavior = st->behavior};
    switch (st->kind) {
    case PT_SPLIT: return split_regex(&sp, st->re, st->invert, n);
    case PT_DIGITS: { // every numeric character is a delimiter (Isolated: alone; Contiguous: runs)
        size_t run = 0;
        for (size_t i = 0; i < n;) {
            int32_t cp;
            size_t len = char_at(s + i, n - i, &cp);
            if (is_numeric_cp(cp)) {
                if (i > run) split_span(&sp, run, i, 0);
                split_span(&sp, i, i + len, 1);
                run = i + len;
            }
            i += len;
        }
        if (run < n) split_span(&sp, run, n, 0);
        return split_end(&sp);
    }
    case PT_BYTELEVEL: {
        char *owned = NULL;
        if (st->prefix_space && s[0] != ' ') { // HF: a space before each piece that lacks one
            owned = pn_malloc(n + 1);
            owned[0] = ' ';
            memcpy(owned + 1, s, n);
            s = sp.s = owned, n++;
        }
        int rc = st->re ? split_regex(&sp, st->re, 0, n) : pretok(t, c, step + 1, s, n, o);
        free(owned);
        return rc;
    }
    }
    return 0;
}

// ----------------------------------------------------------------------------------------------------
// added tokens and the encode entry points

// The next added token (of those with normalized == `normalized`) in s[pos, n): earliest start, longest at
// a tie (HF's leftmost-longest), single_word ones only where they stand alone; lstrip/rstrip widen the
// match over the blanks beside it (never before `pos`). Returns the token index or -1; *ms, *me the match.
static int next_added(const pn_tokenizer *t, const char *s, size_t n, size_t pos, int normalized, int allow_special,
                      size_t *ms, size_t *me) {
    int best = -1;
    size_t bs = n, be = n;
    for (int i = 0; i < t->n_added; i++) {
        const added_token *a = &t->added[i];
        if (a->normalized != normalized || (a->special && !allow_special) || a->len > n - pos) continue;
        for (size_t from = pos; from + a->len <= n && from < bs;) {
            const char *hit = memmem(s + from, n - from, a->content, a->len);
            if (!hit || (size_t)(hit - s) > bs) break;
            size_t hs = (size_t)(hit - s), he = hs + a->len;
            if (a->single_word) {
                int32_t cb = -1, ca = -1;
                if (hs > 0) { // the character before: step back over continuation bytes
                    size_t k = hs - 1;
                    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80 && hs - k < 4) k--;
                    char_at(s + k, hs - k, &cb);
                }
                if (he < n) char_at(s + he, n - he, &ca);
                if (is_word_cp(cb) || is_word_cp(ca)) {
                    from = hs + 1;
                    continue;
                }
            }
            if (hs < bs || (hs == bs && he - hs > be - bs)) best = i, bs = hs, be = he;
            break;
        }
    }
    if (best < 0) return -1;
    const added_token *a = &t->added[best];
    if (a->lstrip)
        while (bs > pos) {
            size_t k = bs - 1;
            while (k > pos && ((unsigned char)s[k] & 0xC0) == 0x80 && bs - k < 4) k--;
            int32_t cp;
            if (char_at(s + k, bs - k, &cp) != bs - k || !is_space_cp(cp)) break;
            bs = k;
        }
    if (a->rstrip)
        while (be < n) {
            int32_t cp;
            size_t len = char_at(s + be, n - be, &cp);
            if (!is_space_cp(cp)) break;
            be += len;
        }
    *ms = bs, *me = be;
    return best;
}

// A segment between non-normalized added tokens: the normalizers, then the normalized added tokens, then
// the pre-tokenizer on what lies between them.
static int encode_segment(const pn_tokenizer *t, tok_cache *c, const char *s, size_t n, out_ids *o, int allow_special) {
    if (!n) return 0;
    char *owned = NULL;
    for (int i = 0; i < t->n_norms; i++) {
        size_t bl;
        if (t->norms[i] == NORM_NFC && !is_ascii(s, n)) bl = nfc_segment(c, s, n);
        else if (t->norms[i] == NORM_LOWERCASE) bl = lower_segment(c, s, n);
        else continue;
        char *x = pn_malloc(bl + 1);
        memcpy(x, c->buf, bl);
        free(owned);
        s = owned = x, n = bl;
    }
    size_t pos = 0, ms, me;
    int rc = 0, k;
    while (!rc && t->n_added_normalized && (k = next_added(t, s, n, pos, 1, allow_special, &ms, &me)) >= 0) {
        rc = pretok(t, c, 0, s + pos, ms - pos, o);
        push(o, &t->added[k].id, 1);
        pos = me;
    }
    if (!rc) rc = pretok(t, c, 0, s + pos, n - pos, o);
    free(owned);
    return rc;
}

int pn_tokenizer_encode(const pn_tokenizer *t, const char *text, size_t len, int allow_special, int32_t **ids,
                        size_t *n, size_t *cap) {
    tok_cache *c = cache_get(t);
    out_ids o = {ids, n, cap};
    size_t pos = 0, ms, me;
    int rc = 0, k;
    while (!rc && (k = next_added(t, text, len, pos, 0, allow_special, &ms, &me)) >= 0) {
        rc = encode_segment(t, c, text + pos, ms - pos, &o, allow_special);
        push(&o, &t->added[k].id, 1);
        pos = me;
    }
    if (!rc) rc = encode_segment(t, c, text + pos, len - pos, &o, allow_special);
    return rc;
}

int pn_tokenizer_encode_special(const pn_tokenizer *t, const char *text, size_t len, int32_t **ids, size_t *n,
                                size_t *cap) {
    out_ids o = {ids, n, cap};
    if (t->n_prefix) push(&o, t->pp_prefix, (size_t)t->n_prefix);
    if (pn_tokenizer_encode(t, text, len, 1, ids, n, cap)) return -1;
    if (t->n_suffix) push(&o, t->pp_suffix, (size_t)t->n_suffix);
    return 0;
}

int pn_tokenizer_special_count(const pn_tokenizer *t, int *prefix, int *suffix) {
    if (prefix) *prefix = t->n_prefix;
    if (suffix) *suffix = t->n_suffix;
    return t->n_prefix + t->n_suffix;
}

// ----------------------------------------------------------------------------------------------------
// decoding

int pn_tokenizer_decode(const pn_tokenizer *t, const int32_t *ids, size_t n, int skip_special, char **out,
                        size_t *len) {
    size_t cap = n * 4 + 16, bl = 0;
    char *b = pn_malloc(cap);
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_tokens || !t->tok[id]) {
            free(b);
            return pn_errorf("token id %d at position %zu is outside the vocabulary (size %d)", id, i, t->n_tokens);
        }
        if (t->is_added[id] && t->is_special[id] && skip_special) continue;
        const char *s = t->tok[id];
        size_t sl = t->tok_len[id];
        if (bl + sl + 1 > cap) b = pn_realloc(b, cap = (bl + sl + 1) * 2);
        if (t->is_added[id]) { // raw content
            memcpy(b + bl, s, sl);
            bl += sl;
            continue;
        }
        for (size_t j = 0; j < sl;) { // byte-level symbols back to bytes
            utf8proc_int32_t cp;
            utf8proc_ssize_t r = utf8proc_iterate((const utf8proc_uint8_t *)s + j, (utf8proc_ssize_t)(sl - j), &cp);
            if (r <= 0 || cp >= 324 || t->byte_of_cp[cp] < 0) {
                free(b);
                return pn_errorf("token %d \"%s\" has a character outside the byte-level alphabet", id, s);
            }
            b[bl++] = (char)t->byte_of_cp[cp];
            j += (size_t)r;
        }
    }
    b[bl] = 0;
    *out = b;
    if (len) *len = bl;
    return 0;
}
