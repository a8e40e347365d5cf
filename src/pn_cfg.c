// pn_cfg: YAML experiment configs against a schema (see pn_cfg.h).
//
// libfyaml parses; this file only walks the document. Every value, whether it comes from the schema's
// default, the file or a `--set` override, is a YAML node converted by the same function (set_value), so a
// default that would not parse is caught the first time the schema is used, and an override is checked
// exactly as the file would be.
#include "src/pn_cfg.h"

#include <libfyaml.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "src/pn_common.h"

#define PATH_MAX_LEN 256

// ---------------------------------------------------------------------------------------------------------
// libfyaml's diagnostics: it formats "<input>:<line>:<col>: error: <message>" and hands the text to an
// output function. The first error line is kept and re-parsed for line, column and message, so the error we
// record names our file, not libfyaml's "<memory-@0x...>".

typedef struct diag_capture {
    int have, line, col;
    char msg[256];
} diag_capture;

static void diag_out(struct fy_diag *diag, void *user, const char *buf, size_t len) {
    (void)diag;
    diag_capture *c = user;
    if (c->have) return;
    char line[512];
    size_t n = len < sizeof line - 1 ? len : sizeof line - 1;
    memcpy(line, buf, n);
    line[n] = 0;
    char *e = strstr(line, ": error: ");
    if (!e) return;
    char *nl = strchr(e, '\n');
    if (nl) *nl = 0;
    snprintf(c->msg, sizeof c->msg, "%s", e + 9);
    // Walk back over ":<line>:<col>" before ": error:".
    *e = 0;
    char *c2 = strrchr(line, ':');
    if (c2) {
        *c2 = 0;
        char *c1 = strrchr(line, ':');
        if (c1) {
            c->line = atoi(c1 + 1);
            c->col = atoi(c2 + 1);
        }
    }
    c->have = 1;
}

// ---------------------------------------------------------------------------------------------------------
// Schema helpers.

static const pn_cfg_key *find_key(const pn_cfg_key *s, int n, const char *path) {
    for (int i = 0; i < n; i++)
        if (!strcmp(s[i].path, path)) return &s[i];
    return NULL;
}

// `prefix` names a section: some key is "<prefix>.<...>".
static int is_section(const pn_cfg_key *s, int n, const char *prefix) {
    size_t l = strlen(prefix);
    for (int i = 0; i < n; i++)
        if (!strncmp(s[i].path, prefix, l) && s[i].path[l] == '.') return 1;
    return 0;
}

// Levenshtein distance (paths are short; the row is capped).
static int edit_distance(const char *a, const char *b) {
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > PATH_MAX_LEN || lb > PATH_MAX_LEN) return 1 << 20;
    int row[PATH_MAX_LEN + 1];
    for (int j = 0; j <= lb; j++) row[j] = j;
    for (int i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = i;
        for (int j = 1; j <= lb; j++) {
            int up = row[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static const char *leaf(const char *path) {
    const char *d = strrchr(path, '.');
    return d ? d + 1 : path;
}

// The known key or section closest to `path`: a small edit distance on the whole path, or the same last
// component under another section ("lr" at the top level -> "train.lr").
static void suggest(const pn_cfg_key *s, int n, const char *path, char *out, size_t cap) {
    out[0] = 0;
    int best = 1 << 20;
    int limit = (int)strlen(path) / 3;
    if (limit < 2) limit = 2;
    for (int i = 0; i < n; i++) {
        // The key itself and each of its sections.
        char buf[PATH_MAX_LEN + 1];
        snprintf(buf, sizeof buf, "%s", s[i].path);
        for (;;) {
            int d = edit_distance(path, buf);
            if (d < best && d <= limit) {
                best = d;
                snprintf(out, cap, "%s", buf);
            }
            char *dot = strrchr(buf, '.');
            if (!dot) break;
            *dot = 0;
        }
    }
    if (out[0]) return;
    for (int i = 0; i < n; i++)
        if (!strcmp(leaf(s[i].path), leaf(path))) {
            snprintf(out, cap, "%s", s[i].path);
            return;
        }
}

static int unknown_key(const pn_cfg_key *s, int n, const char *where, const char *path) {
    char near[PATH_MAX_LEN + 1];
    suggest(s, n, path, near, sizeof near);
    if (near[0]) return pn_errorf("%s: unknown key '%s' (did you mean '%s'?)", where, path, near);
    return pn_errorf("%s: unknown key '%s' (postnas-train --print-schema lists the keys)", where, path);
}

// The schema is a programmer's table: keys unique, sections contiguous (the writer nests them), not both a
// key and a section, and every default must convert. Checked once per use; a broken table panics.
static void schema_check(const pn_cfg_key *s, int n) {
    for (int i = 0; i < n; i++) {
        if (strlen(s[i].path) >= PATH_MAX_LEN) pn_panic("schema key too long: %s", s[i].path);
        for (int j = 0; j < i; j++)
            if (!strcmp(s[i].path, s[j].path)) pn_panic("schema key twice: %s", s[i].path);
        if (is_section(s, n, s[i].path)) pn_panic("schema key is also a section: %s", s[i].path);
        // Contiguity: the section of key i, if it appeared before, appeared in key i-1's ancestry.
        char sec[PATH_MAX_LEN];
        snprintf(sec, sizeof sec, "%s", s[i].path);
        for (char *dot = strrchr(sec, '.'); dot; dot = strrchr(sec, '.')) {
            *dot = 0;
            size_t l = strlen(sec);
            int seen = 0;
            for (int j = 0; j < i; j++)
                if (!strncmp(s[j].path, sec, l) && s[j].path[l] == '.') seen = 1;
            if (seen && !(i > 0 && !strncmp(s[i - 1].path, sec, l) && s[i - 1].path[l] == '.'))
                pn_panic("schema section %s is not contiguous (at %s)", sec, s[i].path);
        }
        if ((s[i].type == PN_CFG_INT && s[i].size != sizeof(int) && s[i].size != sizeof(int64_t)) ||
            (s[i].type == PN_CFG_FLOAT && s[i].size != sizeof(double)) ||
            (s[i].type == PN_CFG_BOOL && s[i].size != sizeof(int)))
            pn_panic("schema key %s: field size %zu does not fit its type", s[i].path, s[i].size);
    }
}

// ---------------------------------------------------------------------------------------------------------
// Values.

static const char *type_name(pn_cfg_type t) {
    switch (t) {
    case PN_CFG_STRING: return "a string";
    case PN_CFG_INT: return "an integer";
    case PN_CFG_FLOAT: return "a number";
    case PN_CFG_BOOL: return "true or false";
    case PN_CFG_CHOICE: return "one of the choices";
    case PN_CFG_LIST: return "a list of strings";
    }
    return "?";
}

static const char *node_kind(struct fy_node *v) {
    if (!v) return "nothing";
    switch (fy_node_get_type(v)) {
    case FYNT_MAPPING: return "a mapping";
    case FYNT_SEQUENCE: return "a list";
    default: return "a scalar";
    }
}

// Where a node is, 1-based, for messages ("file:3:7"); a node without a scalar token (a mapping or a list)
// points at its key instead.
static void node_where(char *buf, size_t cap, const char *name, struct fy_node *v, struct fy_node *key) {
    struct fy_token *t = v ? fy_node_get_scalar_token(v) : NULL;
    if (!t && key) t = fy_node_get_scalar_token(key);
    const struct fy_mark *m = t ? fy_token_start_mark(t) : NULL;
    if (m)
        snprintf(buf, cap, "%s:%d:%d", name, m->line + 1, m->column + 1);
    else
        snprintf(buf, cap, "%s", name);
}

// A scalar's text; *is_null for YAML's null (~, null, an empty plain value), *plain when unquoted.
// Aliases and explicit tags are refused: configs are plain data, and an alias could expand without bound.
static int scalar_text(const char *where, const char *path, struct fy_node *v, const char **text, size_t *len,
                       int *is_null, int *plain) {
    *is_null = 0;
    *plain = 1;
    if (!v) {
        *is_null = 1;
        *text = "";
        *len = 0;
        return 0;
    }
    if (fy_node_is_alias(v)) return pn_errorf("%s: key '%s': anchors and aliases are not supported", where, path);
    size_t tl;
    if (fy_node_get_tag(v, &tl)) return pn_errorf("%s: key '%s': YAML tags are not supported", where, path);
    if (fy_node_get_type(v) != FYNT_SCALAR) return -2; // the caller words the type error
    *text = fy_node_get_scalar(v, len);
    if (!*text) {
        *text = "";
        *len = 0;
    }
    *plain = fy_node_get_style(v) == FYNS_PLAIN;
    if (*plain && (*len == 0 || (*len == 1 && (*text)[0] == '~') ||
                   (*len == 4 && (!memcmp(*text, "null", 4) || !memcmp(*text, "Null", 4) || !memcmp(*text, "NULL", 4)))))
        *is_null = 1;
    if (memchr(*text, 0, *len)) return pn_errorf("%s: key '%s': value contains a NUL byte", where, path);
    return 0;
}

static int copy_string(const char *where, const pn_cfg_key *k, const char *text, size_t len, char *dst) {
    if (len >= k->size)
        return pn_errorf("%s: key '%s': value is %zu bytes, longer than the %zu this key holds", where, k->path, len,
                         k->size - 1);
    memcpy(dst, text, len);
    dst[len] = 0;
    return 0;
}

static int wrong_type(const char *where, const pn_cfg_key *k, const char *got) {
    if (k->type == PN_CFG_CHOICE)
        return pn_errorf("%s: key '%s': expected one of %s, got %s", where, k->path, k->choices, got);
    return pn_errorf("%s: key '%s': expected %s, got %s", where, k->path, type_name(k->type), got);
}

// Convert node v (NULL = null) into key k's field in out. `name` is the file (or "--set ...") for messages,
// `key` the mapping key node (for positions of non-scalars).
static int set_value(const pn_cfg_key *k, void *out, const char *name, struct fy_node *v, struct fy_node *key) {
    char where[PATH_MAX_LEN + 64];
    node_where(where, sizeof where, name, v, key);
    char *field = (char *)out + k->offset;
    const char *text;
    size_t len;
    int is_null, plain;

    if (k->type == PN_CFG_LIST && v && fy_node_get_type(v) == FYNT_SEQUENCE && !fy_node_is_alias(v)) {
        size_t tl;
        if (fy_node_get_tag(v, &tl)) return pn_errorf("%s: key '%s': YAML tags are not supported", where, k->path);
        size_t used = 0;
        int count = 0;
        void *it = NULL;
        struct fy_node *item;
        while ((item = fy_node_sequence_iterate(v, &it))) {
            char iw[PATH_MAX_LEN + 64];
            node_where(iw, sizeof iw, name, item, key);
            int r = scalar_text(iw, k->path, item, &text, &len, &is_null, &plain);
            if (r == -2) return pn_errorf("%s: key '%s': list items must be strings, got %s", iw, k->path, node_kind(item));
            if (r) return -1;
            if (is_null || len == 0) return pn_errorf("%s: key '%s': list item %d is empty", iw, k->path, count);
            if (used + (count > 0) + len >= k->size)
                return pn_errorf("%s: key '%s': the list is longer than the %zu bytes this key holds", iw, k->path,
                                 k->size - 1);
            if (count > 0) field[used++] = PN_CFG_LIST_SEP;
            memcpy(field + used, text, len);
            used += len;
            count++;
        }
        field[used] = 0;
        if (!count && !(k->def && !k->def[0]))
            return pn_errorf("%s: key '%s': the list is empty", where, k->path);
        return 0;
    }

    int r = scalar_text(where, k->path, v, &text, &len, &is_null, &plain);
    if (r == -2) return wrong_type(where, k, node_kind(v));
    if (r) return -1;
    if (is_null) {
        // null clears an optional string or list (default ""); every other key needs a value.
        if ((k->type == PN_CFG_STRING || k->type == PN_CFG_LIST) && k->def && !k->def[0]) {
            field[0] = 0;
            return 0;
        }
        return pn_errorf("%s: key '%s': needs a value (%s)", where, k->path, type_name(k->type));
    }
    char buf[128];
    switch (k->type) {
    case PN_CFG_STRING:
        return copy_string(where, k, text, len, field);
    case PN_CFG_LIST:
        return copy_string(where, k, text, len, field);
    case PN_CFG_CHOICE: {
        // The choices are "a|b|c"; the value must be one of them exactly.
        const char *c = k->choices;
        while (*c) {
            const char *bar = strchr(c, '|');
            size_t cl = bar ? (size_t)(bar - c) : strlen(c);
            if (cl == len && !memcmp(c, text, len)) return copy_string(where, k, text, len, field);
            c += cl + (bar != NULL);
        }
        char q[96];
        pn_escape(text, len, q, sizeof q);
        return pn_errorf("%s: key '%s': '%s' is not one of %s", where, k->path, q, k->choices);
    }
    case PN_CFG_INT:
    case PN_CFG_FLOAT:
    case PN_CFG_BOOL: {
        if (!plain) return wrong_type(where, k, "a quoted string");
        if (len >= sizeof buf) return wrong_type(where, k, "a long scalar");
        memcpy(buf, text, len);
        buf[len] = 0;
        char what[PATH_MAX_LEN + 96];
        snprintf(what, sizeof what, "%s: key '%s'", where, k->path);
        if (k->type == PN_CFG_BOOL) {
            int b = -1;
            if (!strcmp(buf, "true") || !strcmp(buf, "True") || !strcmp(buf, "TRUE")) b = 1;
            if (!strcmp(buf, "false") || !strcmp(buf, "False") || !strcmp(buf, "FALSE")) b = 0;
            if (b < 0) {
                char q[96];
                pn_escape(buf, len, q, sizeof q);
                return pn_errorf("%s: '%s' is not true or false", what, q);
            }
            *(int *)field = b;
            return 0;
        }
        if (k->type == PN_CFG_FLOAT) {
            double d;
            if (pn_parse_f64(what, buf, k->lo, k->hi, &d)) return -1;
            *(double *)field = d;
            return 0;
        }
        int64_t i;
        if (pn_parse_i64(what, buf, (int64_t)k->lo, (int64_t)k->hi, &i)) return -1;
        if (k->size == sizeof(int)) {
            if (i < INT32_MIN || i > INT32_MAX) pn_panic("schema range of %s exceeds int", k->path);
            *(int *)field = (int)i;
        } else {
            *(int64_t *)field = i;
        }
        return 0;
    }
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------------------
// Documents.

typedef struct loader {
    const pn_cfg_key *s;
    int n;
    void *out;
    const char *name;
    int *from_file; // per key: line (1-based) where the file set it, 0 = not from the file
} loader;

// One parsed YAML text. The document is used while its parser lives (fy_parse_document_destroy takes the
// parser), and the parser reads the caller's text in place, so both outlive the walk.
typedef struct yaml_doc {
    diag_capture cap;
    struct fy_diag *diag;
    struct fy_parser *p;
    struct fy_document *doc; // NULL for an empty text
} yaml_doc;

static void yaml_close(yaml_doc *y) {
    if (y->doc) fy_parse_document_destroy(y->p, y->doc);
    if (y->p) fy_parser_destroy(y->p);
    if (y->diag) fy_diag_destroy(y->diag); // frees the collected errors too (fy_diag_unref alone does not)
    memset(y, 0, sizeof *y);
}

// Parse one YAML text (exactly one document, or none). -1 with the error set, naming `name`; libfyaml's
// own message and position are kept.
// YAML is Unicode text: invalid UTF-8 and control characters other than tab, CR and LF are refused here,
// before libfyaml sees them (libfyaml 0.7.12 loops for ever on invalid UTF-8 in a directive line).
// Explicit mapping keys ("? key", YAML's complex keys) are refused too: no config needs one, and libfyaml
// 0.7.12 crashes destroying its parser after some malformed ones ("? a:\t:", found by fuzz_train_config).
// The indicator is a '?' where a token starts (line start, after blanks or [ { , -) followed by a blank or
// the end; quoted strings and comments are skipped.
static size_t explicit_key_at(const char *text, size_t len) {
    char quote = 0;
    for (size_t i = 0; i < len; i++) {
        const char c = text[i], prev = i ? text[i - 1] : '\n';
        if (quote) {
            if (c == quote && !(quote == '"' && prev == '\\')) quote = 0;
            continue;
        }
        const int at_start = prev == '\n' || prev == ' ' || prev == '\t' || prev == '[' || prev == '{' || prev == ',' ||
                             prev == '-' || prev == '\r';
        if ((c == '\'' || c == '"') && at_start) quote = c;
        else if (c == '#' && at_start)
            while (i + 1 < len && text[i + 1] != '\n') i++;
        else if (c == '?' && at_start && (i + 1 == len || strchr(" \t\r\n", text[i + 1])))
            return i;
    }
    return len;
}

static int check_text(const char *name, const char *text, size_t len) {
    const size_t ok = pn_utf8_valid_prefix(text, len);
    size_t bad = ok;
    for (size_t i = 0; i < ok; i++) {
        const unsigned char c = (unsigned char)text[i];
        if ((c < 0x20 && c != '\t' && c != '\n' && c != '\r') || c == 0x7f) {
            bad = i;
            break;
        }
    }
    const size_t q = bad == len ? explicit_key_at(text, len) : len;
    if (bad == len && q == len) return 0;
    const size_t at = q < len ? q : bad;
    int line = 1, col = 1;
    for (size_t i = 0; i < at; i++) {
        if (text[i] == '\n') line++, col = 1;
        else if (((unsigned char)text[i] & 0xc0) != 0x80) col++;
    }
    if (q < len)
        return pn_errorf("%s:%d:%d: an explicit mapping key ('? '): a config's keys are plain names", name, line, col);
    return pn_errorf("%s:%d:%d: %s (byte 0x%02x): a config is UTF-8 text", name, line, col,
                     bad < ok ? "control character" : "invalid UTF-8", (unsigned char)text[bad]);
}

// The first error libfyaml collected (line, column, message), unless one is held already.
static void collected_error(yaml_doc *y) {
    void *it = NULL;
    struct fy_diag_error *e;
    while (!y->cap.have && (e = fy_diag_errors_iterate(y->diag, &it)))
        if (e->type >= FYET_ERROR) {
            snprintf(y->cap.msg, sizeof y->cap.msg, "%s", e->msg ? e->msg : "(no message)");
            char *nl = strchr(y->cap.msg, '\n');
            if (nl) *nl = 0;
            y->cap.line = e->line, y->cap.col = e->column, y->cap.have = 1;
        }
}

static int yaml_open(yaml_doc *y, const char *name, const char *text, size_t len) {
    memset(y, 0, sizeof *y);
    if (check_text(name, text, len)) return -1;
    struct fy_diag_cfg dc;
    fy_diag_cfg_default(&dc);
    dc.fp = NULL;
    dc.output_fn = diag_out;
    dc.user = &y->cap;
    dc.colorize = false;
    y->diag = fy_diag_create(&dc);
    if (!y->diag) pn_panic("fy_diag_create failed");
    // Errors are collected, not printed: libfyaml 0.7.12's printer of the offending line (its excerpt with a
    // ~~~ marker) crashes inside vasprintf on some long lines of tabs (fuzz_train_config,
    // tests/fuzz/crashes/train_config-libfyaml-3). Messages without a token still come through diag_out.
    fy_diag_set_collect_errors(y->diag, true);
    struct fy_parse_cfg pc = {0};
    pc.flags = FYPCF_QUIET;
    pc.diag = y->diag;
    y->p = fy_parser_create(&pc);
    if (!y->p) pn_panic("fy_parser_create failed");
    if (fy_parser_set_string(y->p, text, len)) {
        yaml_close(y);
        return pn_errorf("%s: cannot read the YAML", name);
    }
    y->doc = fy_parse_load_document(y->p);
    collected_error(y);
    struct fy_document *more = (y->doc && !y->cap.have) ? fy_parse_load_document(y->p) : NULL;
    if (more) fy_parse_document_destroy(y->p, more);
    collected_error(y);
    if (y->cap.have) {
        pn_errorf("%s:%d:%d: YAML error: %s", name, y->cap.line, y->cap.col, y->cap.msg);
        yaml_close(y);
        return -1;
    }
    if (more) {
        yaml_close(y);
        return pn_errorf("%s: more than one YAML document (one config per file)", name);
    }
    return 0;
}

static int walk(loader *L, struct fy_node *map, const char *prefix, struct fy_node *map_key) {
    if (fy_node_is_alias(map)) {
        char where[PATH_MAX_LEN + 64];
        node_where(where, sizeof where, L->name, map, map_key);
        return pn_errorf("%s: anchors and aliases are not supported", where);
    }
    size_t tl;
    if (fy_node_get_tag(map, &tl)) {
        char where[PATH_MAX_LEN + 64];
        node_where(where, sizeof where, L->name, map, map_key);
        return pn_errorf("%s: YAML tags are not supported", where);
    }
    void *it = NULL;
    struct fy_node_pair *pair;
    while ((pair = fy_node_mapping_iterate(map, &it))) {
        struct fy_node *k = fy_node_pair_key(pair), *v = fy_node_pair_value(pair);
        char where[PATH_MAX_LEN + 64];
        node_where(where, sizeof where, L->name, k, map_key);
        if (!k || fy_node_get_type(k) != FYNT_SCALAR || fy_node_is_alias(k))
            return pn_errorf("%s: keys must be plain names", where);
        size_t kl;
        const char *ks = fy_node_get_scalar(k, &kl);
        if (!ks || !kl || memchr(ks, 0, kl)) return pn_errorf("%s: empty key", where);
        char path[PATH_MAX_LEN + 1];
        int pl = snprintf(path, sizeof path, "%s%s%.*s", prefix, prefix[0] ? "." : "", (int)kl, ks);
        if (pl < 0 || pl >= PATH_MAX_LEN) return pn_errorf("%s: key path too long", where);
        if (memchr(path, '\n', (size_t)pl)) return unknown_key(L->s, L->n, where, path);
        const pn_cfg_key *key = find_key(L->s, L->n, path);
        if (!key && !strcmp(path, "sweep") && !is_section(L->s, L->n, path)) continue; // postnas-sweep's (pn_cfg_sweep_load)
        if (key) {
            int idx = (int)(key - L->s);
            struct fy_token *kt = fy_node_get_scalar_token(k);
            const struct fy_mark *m = kt ? fy_token_start_mark(kt) : NULL;
            if (L->from_file[idx])
                return pn_errorf("%s: key '%s' is given twice (first on line %d)", where, path, L->from_file[idx]);
            L->from_file[idx] = m ? m->line + 1 : 1;
            if (set_value(key, L->out, L->name, v, k)) return -1;
        } else if (is_section(L->s, L->n, path)) {
            if (!v || fy_node_get_type(v) != FYNT_MAPPING) {
                char vw[PATH_MAX_LEN + 64];
                node_where(vw, sizeof vw, L->name, v, k);
                return pn_errorf("%s: '%s' is a section: expected a mapping of %s.* keys, got %s", vw, path, path,
                                 node_kind(v));
            }
            if (walk(L, v, path, k)) return -1;
        } else {
            return unknown_key(L->s, L->n, where, path);
        }
    }
    return 0;
}

// Apply YAML text `def` (a default or an override's value) to key k.
static int set_from_text(const pn_cfg_key *k, void *out, const char *name, const char *text) {
    yaml_doc y;
    if (yaml_open(&y, name, text, strlen(text))) return -1;
    int r = set_value(k, out, name, y.doc ? fy_document_root(y.doc) : NULL, NULL);
    yaml_close(&y);
    return r;
}

int pn_cfg_load_string(const pn_cfg_key *s, int n, void *out, const char *name, const char *text, size_t len,
                       const char *const *ov, int nov) {
    schema_check(s, n);
    int *from_file = pn_calloc((size_t)n, sizeof(int));
    int *given = pn_calloc((size_t)n, sizeof(int));
    int rc = -1;
    for (int i = 0; i < n; i++) {
        if (!s[i].def) continue;
        char what[PATH_MAX_LEN + 32];
        snprintf(what, sizeof what, "schema default of %s", s[i].path);
        if (set_from_text(&s[i], out, what, s[i].def)) pn_panic("%s", pn_last_error());
        given[i] = 1;
    }
    if (text) {
        yaml_doc y;
        if (yaml_open(&y, name, text, len)) goto done;
        struct fy_node *root = y.doc ? fy_document_root(y.doc) : NULL;
        if (root) {
            if (fy_node_get_type(root) != FYNT_MAPPING || fy_node_is_alias(root)) {
                char where[PATH_MAX_LEN + 64];
                node_where(where, sizeof where, name, root, NULL);
                pn_errorf("%s: expected a mapping of keys at the top level, got %s", where, node_kind(root));
                yaml_close(&y);
                goto done;
            }
            loader L = {s, n, out, name, from_file};
            int r = walk(&L, root, "", NULL);
            yaml_close(&y);
            if (r) goto done;
            for (int i = 0; i < n; i++) given[i] |= from_file[i] != 0;
        } else {
            yaml_close(&y);
        }
    }
    for (int i = 0; i < nov; i++) {
        char where[PATH_MAX_LEN + 80];
        char q[PATH_MAX_LEN + 32];
        pn_escape(ov[i], strlen(ov[i]), q, sizeof q);
        snprintf(where, sizeof where, "--set %s", q);
        const char *eq = strchr(ov[i], '=');
        if (!eq || eq == ov[i]) {
            pn_errorf("%s: expected key=value (e.g. --set train.lr=3e-4)", where);
            goto done;
        }
        char path[PATH_MAX_LEN + 1];
        if ((size_t)(eq - ov[i]) >= sizeof path) {
            pn_errorf("%s: key path too long", where);
            goto done;
        }
        memcpy(path, ov[i], (size_t)(eq - ov[i]));
        path[eq - ov[i]] = 0;
        const pn_cfg_key *k = find_key(s, n, path);
        if (!k) {
            if (is_section(s, n, path))
                pn_errorf("%s: '%s' is a section; set one of its keys (%s.<key>=value)", where, path, path);
            else
                unknown_key(s, n, where, path);
            goto done;
        }
        if (set_from_text(k, out, where, eq + 1)) goto done;
        given[k - s] = 1;
    }
    for (int i = 0; i < n; i++)
        if (!given[i]) {
            pn_errorf("%s: missing required key '%s' (%s)", text ? name : "config", s[i].path, s[i].doc);
            goto done;
        }
    rc = 0;
done:
    free(from_file);
    free(given);
    return rc;
}

// A config file's text (malloc'ed; NULL with the error set: unreadable, or too big to be a config).
static char *config_text(const char *path, size_t *len) {
    char *text = pn_read_file(path, len);
    if (text && *len > PN_CFG_MAX_BYTES) {
        free(text);
        pn_errorf("%s: %zu bytes is not a config (at most %d)", path, *len, PN_CFG_MAX_BYTES);
        return NULL;
    }
    return text;
}

int pn_cfg_load(const pn_cfg_key *s, int n, void *out, const char *path, const char *const *ov, int nov) {
    if (!path) return pn_cfg_load_string(s, n, out, "config", NULL, 0, ov, nov);
    size_t len;
    char *text = config_text(path, &len);
    if (!text) return -1;
    int r = pn_cfg_load_string(s, n, out, path, text, len, ov, nov);
    free(text);
    return r;
}

// ---------------------------------------------------------------------------------------------------------
// The sweep section.

static size_t quote(const char *s, size_t n, char *buf, size_t cap);

static void sweep_axis_free(pn_cfg_sweep_axis *a) {
    for (int i = 0; i < a->n; i++) free(a->values[i]);
    free(a->values);
}

void pn_cfg_sweep_free(pn_cfg_sweep *sw) {
    for (int i = 0; i < sw->n_grid; i++) sweep_axis_free(&sw->grid[i]);
    for (int i = 0; i < sw->n_zip; i++) sweep_axis_free(&sw->zip[i]);
    memset(sw, 0, sizeof *sw);
}

// A value of an axis as YAML text for an override: a scalar's text (quoted when it was quoted), a sequence
// in flow style on one line.
static char *node_text(struct fy_node *v) {
    if (fy_node_get_type(v) == FYNT_SCALAR) {
        size_t len;
        const char *t = fy_node_get_scalar(v, &len);
        if (fy_node_get_style(v) == FYNS_PLAIN) {
            char *out = pn_malloc(len + 1);
            memcpy(out, t, len);
            out[len] = 0;
            return out;
        }
        char *out = pn_malloc(4 * len + 8);
        quote(t, len, out, 4 * len + 8);
        return out;
    }
    char *e = fy_emit_node_to_string(v, FYECF_MODE_FLOW_ONELINE | FYECF_WIDTH_INF);
    char *out = pn_strdup(e ? e : "");
    free(e);
    return out;
}

// One axis section (grid or zip): a mapping of config keys to sequences of values.
static int sweep_axes(const char *name, struct fy_node *map, const char *what, pn_cfg_sweep_axis *axes, int *n) {
    char where[PATH_MAX_LEN + 64];
    if (fy_node_get_type(map) != FYNT_MAPPING) {
        node_where(where, sizeof where, name, map, NULL);
        return pn_errorf("%s: sweep.%s: expected a mapping of config keys to lists of values", where, what);
    }
    void *it = NULL;
    struct fy_node_pair *pair;
    while ((pair = fy_node_mapping_iterate(map, &it))) {
        struct fy_node *k = fy_node_pair_key(pair), *v = fy_node_pair_value(pair);
        node_where(where, sizeof where, name, k, NULL);
        size_t kl = 0;
        const char *ks = k && fy_node_get_type(k) == FYNT_SCALAR ? fy_node_get_scalar(k, &kl) : NULL;
        if (!ks || !kl || kl >= sizeof axes[0].key || memchr(ks, '=', kl) || memchr(ks, 0, kl))
            return pn_errorf("%s: sweep.%s: keys must be config keys such as train.lr", where, what);
        if (*n == PN_CFG_SWEEP_MAX_AXES) return pn_errorf("%s: sweep.%s: at most %d keys", where, what, PN_CFG_SWEEP_MAX_AXES);
        if (!v || fy_node_get_type(v) != FYNT_SEQUENCE || !fy_node_sequence_item_count(v))
            return pn_errorf("%s: sweep.%s.%.*s: expected a non-empty list of values", where, what, (int)kl, ks);
        pn_cfg_sweep_axis *a = &axes[(*n)++];
        memcpy(a->key, ks, kl);
        a->key[kl] = 0;
        void *vi = NULL;
        struct fy_node *item;
        while ((item = fy_node_sequence_iterate(v, &vi))) {
            if (a->n == PN_CFG_SWEEP_MAX_VALUES)
                return pn_errorf("%s: sweep.%s.%s: at most %d values", where, what, a->key, PN_CFG_SWEEP_MAX_VALUES);
            a->values = pn_realloc(a->values, sizeof(char *) * (size_t)(a->n + 1));
            a->values[a->n++] = node_text(item);
        }
    }
    return 0;
}

int pn_cfg_sweep_load(const char *path, pn_cfg_sweep *sw) {
    memset(sw, 0, sizeof *sw);
    size_t len;
    char *text = config_text(path, &len);
    if (!text) return -1;
    yaml_doc y;
    if (yaml_open(&y, path, text, len)) {
        free(text);
        return -1;
    }
    int rc = 0;
    struct fy_node *root = y.doc ? fy_document_root(y.doc) : NULL;
    struct fy_node *node = root && fy_node_get_type(root) == FYNT_MAPPING ? fy_node_mapping_lookup_by_string(root, "sweep", 5) : NULL;
    struct fy_node *od = root && fy_node_get_type(root) == FYNT_MAPPING ? fy_node_mapping_lookup_by_string(root, "out_dir", 7) : NULL;
    if (od && fy_node_get_type(od) == FYNT_SCALAR) {
        size_t ol;
        const char *o = fy_node_get_scalar(od, &ol);
        if (o && ol < sizeof sw->out_dir) memcpy(sw->out_dir, o, ol), sw->out_dir[ol] = 0;
    }
    char where[PATH_MAX_LEN + 64];
    if (!node) rc = pn_errorf("%s: no sweep section (sweep: {grid: {train.lr: [1.0e-3, 3.0e-3]}})", path);
    else if (fy_node_get_type(node) != FYNT_MAPPING) {
        node_where(where, sizeof where, path, node, NULL);
        rc = pn_errorf("%s: sweep: expected a mapping (command, grid, zip, metrics)", where);
    }
    snprintf(sw->command, sizeof sw->command, "train");
    void *it = NULL;
    struct fy_node_pair *pair;
    while (!rc && (pair = fy_node_mapping_iterate(node, &it))) {
        struct fy_node *k = fy_node_pair_key(pair), *v = fy_node_pair_value(pair);
        size_t kl = 0;
        const char *ks = k && fy_node_get_type(k) == FYNT_SCALAR ? fy_node_get_scalar(k, &kl) : "";
        node_where(where, sizeof where, path, k, NULL);
        if (kl == 4 && !memcmp(ks, "grid", 4)) rc = sweep_axes(path, v, "grid", sw->grid, &sw->n_grid);
        else if (kl == 3 && !memcmp(ks, "zip", 3)) rc = sweep_axes(path, v, "zip", sw->zip, &sw->n_zip);
        else if (kl == 7 && !memcmp(ks, "command", 7)) {
            size_t cl = 0;
            const char *c = v && fy_node_get_type(v) == FYNT_SCALAR ? fy_node_get_scalar(v, &cl) : NULL;
            if (!c || !((cl == 5 && !memcmp(c, "train", 5)) || (cl == 6 && !memcmp(c, "search", 6))))
                rc = pn_errorf("%s: sweep.command: train or search", where);
            else memcpy(sw->command, c, cl), sw->command[cl] = 0;
        } else if (kl == 7 && !memcmp(ks, "metrics", 7)) {
            void *vi = NULL;
            struct fy_node *item;
            if (!v || fy_node_get_type(v) != FYNT_SEQUENCE) rc = pn_errorf("%s: sweep.metrics: expected a list of names", where);
            while (!rc && (item = fy_node_sequence_iterate(v, &vi))) {
                size_t ml = 0;
                const char *m = fy_node_get_type(item) == FYNT_SCALAR ? fy_node_get_scalar(item, &ml) : NULL;
                if (!m || !ml || ml >= sizeof sw->metrics[0] || sw->n_metrics == PN_CFG_SWEEP_MAX_AXES)
                    rc = pn_errorf("%s: sweep.metrics: at most %d names of at most %zu characters", where,
                                   PN_CFG_SWEEP_MAX_AXES, sizeof sw->metrics[0] - 1);
                else memcpy(sw->metrics[sw->n_metrics], m, ml), sw->metrics[sw->n_metrics++][ml] = 0;
            }
        } else {
            rc = pn_errorf("%s: unknown key 'sweep.%.*s' (sweep takes command, grid, zip, metrics)", where, (int)kl, ks);
        }
    }
    for (int i = 1; !rc && i < sw->n_zip; i++)
        if (sw->zip[i].n != sw->zip[0].n)
            rc = pn_errorf("%s: sweep.zip: %s has %d values, %s has %d (zipped lists go together)", path, sw->zip[i].key,
                           sw->zip[i].n, sw->zip[0].key, sw->zip[0].n);
    if (!rc && !sw->n_grid && !sw->n_zip) rc = pn_errorf("%s: sweep: no grid or zip keys", path);
    yaml_close(&y);
    free(text);
    if (rc) pn_cfg_sweep_free(sw);
    return rc;
}

int pn_cfg_sweep_trials(const pn_cfg_sweep *sw) {
    int n = sw->n_zip ? sw->zip[0].n : 1;
    for (int i = 0; i < sw->n_grid; i++) n *= sw->grid[i].n;
    return n;
}

int pn_cfg_sweep_trial(const pn_cfg_sweep *sw, int t, const char **overrides_key, const char **overrides_value) {
    int k = 0, rest = t;
    const int z = sw->n_zip ? rest % sw->zip[0].n : 0; // the zip index varies fastest
    if (sw->n_zip) rest /= sw->zip[0].n;
    for (int i = sw->n_grid - 1; i >= 0; i--) { // the last grid key varies next fastest
        overrides_key[i] = sw->grid[i].key, overrides_value[i] = sw->grid[i].values[rest % sw->grid[i].n];
        rest /= sw->grid[i].n;
    }
    k = sw->n_grid;
    for (int i = 0; i < sw->n_zip; i++) overrides_key[k] = sw->zip[i].key, overrides_value[k++] = sw->zip[i].values[z];
    return k;
}

// ---------------------------------------------------------------------------------------------------------
// Writing.

// A YAML double-quoted scalar (JSON's escapes; \xNN for other control bytes).
static size_t quote(const char *s, size_t n, char *buf, size_t cap) {
    size_t k = 0;
#define PUT(c)                      \
    do {                            \
        if (k + 1 < cap) buf[k] = (c); \
        k++;                        \
    } while (0)
    PUT('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            PUT('\\');
            PUT((char)c);
        } else if (c < 0x20 || c == 0x7f) {
            char e[8];
            snprintf(e, sizeof e, "\\x%02x", c);
            for (char *p = e; *p; p++) PUT(*p);
        } else {
            PUT((char)c);
        }
    }
    PUT('"');
#undef PUT
    if (cap) buf[k < cap ? k : cap - 1] = 0;
    return k;
}

static void format_double(double x, char *buf, size_t cap) {
    // The shortest decimal that reads back as the same double.
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, cap, "%.*g", p, x);
        if (strtod(buf, NULL) == x) break;
    }
}

void pn_cfg_format(const pn_cfg_key *k, const void *cfg, char *buf, size_t cap) {
    const char *field = (const char *)cfg + k->offset;
    switch (k->type) {
    case PN_CFG_STRING:
    case PN_CFG_CHOICE:
        quote(field, strlen(field), buf, cap);
        return;
    case PN_CFG_LIST: {
        size_t used = 0;
        used += (size_t)snprintf(buf, cap, "[");
        const char *p = field;
        int first = 1;
        while (*p) {
            const char *nl = strchr(p, PN_CFG_LIST_SEP);
            size_t l = nl ? (size_t)(nl - p) : strlen(p);
            if (!first && used < cap) used += (size_t)snprintf(buf + used, cap - used, ", ");
            if (used < cap) used += quote(p, l, buf + used, cap - used);
            first = 0;
            p += l + (nl != NULL);
        }
        if (used < cap) snprintf(buf + used, cap - used, "]");
        return;
    }
    case PN_CFG_INT:
        if (k->size == sizeof(int))
            snprintf(buf, cap, "%d", *(const int *)field);
        else
            snprintf(buf, cap, "%lld", (long long)*(const int64_t *)field);
        return;
    case PN_CFG_FLOAT:
        format_double(*(const double *)field, buf, cap);
        return;
    case PN_CFG_BOOL:
        snprintf(buf, cap, "%s", *(const int *)field ? "true" : "false");
        return;
    }
}

// Count the sections two paths share ("train.lr" and "train.seq_len" share 1).
static int shared_sections(const char *a, const char *b) {
    int n = 0;
    for (;;) {
        const char *da = strchr(a, '.'), *db = strchr(b, '.');
        if (!da || !db || da - a != db - b || memcmp(a, b, (size_t)(da - a))) return n;
        n++;
        a = da + 1;
        b = db + 1;
    }
}

void pn_cfg_write_yaml(const pn_cfg_key *s, int n, const void *cfg, FILE *f) {
    schema_check(s, n);
    for (int i = 0; i < n; i++) {
        int keep = i ? shared_sections(s[i - 1].path, s[i].path) : 0;
        // Open the sections of this key beyond those it shares with the previous one.
        const char *p = s[i].path;
        int depth = 0;
        for (const char *dot = strchr(p, '.'); dot; dot = strchr(p, '.')) {
            if (depth >= keep) fprintf(f, "%*s%.*s:\n", 2 * depth, "", (int)(dot - p), p);
            depth++;
            p = dot + 1;
        }
        size_t cap = s[i].size * 2 + 64;
        char *val = pn_malloc(cap * 2);
        pn_cfg_format(&s[i], cfg, val, cap * 2);
        fprintf(f, "%*s%s: %s\n", 2 * depth, "", p, val);
        free(val);
    }
}

void pn_cfg_write_markdown(const pn_cfg_key *s, int n, FILE *f) {
    schema_check(s, n);
    fprintf(f, "| key | type | default | allowed | meaning |\n|---|---|---|---|---|\n");
    for (int i = 0; i < n; i++) {
        const pn_cfg_key *k = &s[i];
        const char *t = k->type == PN_CFG_STRING ? "string"
                      : k->type == PN_CFG_INT    ? "integer"
                      : k->type == PN_CFG_FLOAT  ? "number"
                      : k->type == PN_CFG_BOOL   ? "boolean"
                      : k->type == PN_CFG_CHOICE ? "choice"
                                                 : "list of strings";
        char allowed[256] = "";
        if (k->type == PN_CFG_INT || k->type == PN_CFG_FLOAT) {
            char lo[32], hi[32];
            format_double(k->lo, lo, sizeof lo);
            format_double(k->hi, hi, sizeof hi);
            snprintf(allowed, sizeof allowed, "%s … %s", lo, hi);
        } else if (k->type == PN_CFG_CHOICE) {
            size_t u = 0;
            for (const char *c = k->choices; *c && u + 8 < sizeof allowed; c++) {
                if (*c == '|') {
                    u += (size_t)snprintf(allowed + u, sizeof allowed - u, "`, `");
                } else {
                    if (u == 0) allowed[u++] = '`';
                    allowed[u++] = *c;
                    allowed[u] = 0;
                }
            }
            if (u + 2 < sizeof allowed) snprintf(allowed + u, sizeof allowed - u, "`");
        }
        const char *def = !k->def ? "*required*" : !k->def[0] ? "(none)" : k->def;
        fprintf(f, "| `%s` | %s | %s%s%s | %s | %s%s |\n", k->path, t, k->def && k->def[0] ? "`" : "", def,
                k->def && k->def[0] ? "`" : "", allowed, k->doc, k->run_only ? " (may change on --resume)" : "");
    }
}

uint64_t pn_cfg_hash(const pn_cfg_key *s, int n, const void *cfg) {
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < n; i++) {
        if (s[i].run_only) continue;
        size_t cap = s[i].size * 2 + 64;
        char *val = pn_malloc(cap * 2);
        pn_cfg_format(&s[i], cfg, val, cap * 2);
        for (const char *p = s[i].path; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
        h = (h ^ '=') * 1099511628211ull;
        for (const char *p = val; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ull;
        h = (h ^ '\n') * 1099511628211ull;
        free(val);
    }
    return h;
}

const pn_cfg_key *pn_cfg_diff(const pn_cfg_key *s, int n, const void *a, const void *b) {
    for (int i = 0; i < n; i++) {
        if (s[i].run_only) continue;
        size_t cap = s[i].size * 2 + 64;
        char *va = pn_malloc(cap), *vb = pn_malloc(cap);
        pn_cfg_format(&s[i], a, va, cap);
        pn_cfg_format(&s[i], b, vb, cap);
        int d = strcmp(va, vb);
        free(va);
        free(vb);
        if (d) return &s[i];
    }
    return NULL;
}

int pn_cfg_list_count(const char *list) {
    if (!list[0]) return 0;
    int n = 1;
    for (const char *p = list; *p; p++) n += *p == PN_CFG_LIST_SEP;
    return n;
}

int pn_cfg_list_item(const char *list, int i, char *buf, size_t cap) {
    if (i < 0 || i >= pn_cfg_list_count(list)) return -1;
    const char *p = list;
    for (int j = 0; j < i; j++) p = strchr(p, PN_CFG_LIST_SEP) + 1;
    const char *nl = strchr(p, PN_CFG_LIST_SEP);
    size_t l = nl ? (size_t)(nl - p) : strlen(p);
    if (l >= cap) return -1;
    memcpy(buf, p, l);
    buf[l] = 0;
    return 0;
}
