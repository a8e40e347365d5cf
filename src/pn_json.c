// pn_json: JSON files through jansson, with the project's rules (see pn_json.h).
#include "pn_json.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pn_common.h"

// Integer literals of more than 18 digits (beyond int64 in general) get ".0" appended so jansson reads
// them as reals. A number starts after a structural character or a blank; strings are skipped with their
// escapes; anything malformed is left for jansson to report. One pass counts (o == NULL), one writes.
static size_t widen_pass(const char *s, size_t n, char *o) {
    size_t w = 0;
    int in_str = 0;
    char prev = ':'; // the last character outside strings
#define PUT(c) (o ? (void)(o[w] = (c)) : (void)0, w++)
    for (size_t i = 0; i < n; i++) {
        const char ch = s[i];
        if (in_str) {
            PUT(ch);
            if (ch == '\\' && i + 1 < n) {
                i++; // not inside PUT(): its argument is not evaluated when counting
                PUT(s[i]);
            }
            else if (ch == '"') in_str = 0;
            continue;
        }
        if ((ch == '-' || (ch >= '0' && ch <= '9')) && strchr(":,[ \t\r\n", prev)) {
            size_t j = i + (ch == '-'), d0 = j;
            while (j < n && s[j] >= '0' && s[j] <= '9') j++;
            for (size_t k = i; k < j; k++) PUT(s[k]);
            if (j - d0 > 18 && (j == n || !strchr(".eE", s[j]))) PUT('.'), PUT('0');
            prev = s[j - 1];
            i = j - 1;
            continue;
        }
        in_str = ch == '"';
        PUT(ch);
        if (ch != ' ' && ch != '\t' && ch != '\r' && ch != '\n') prev = ch;
    }
#undef PUT
    return w;
}

static char *widen_big_ints(const char *s, size_t n, size_t *out_n) {
    size_t w = widen_pass(s, n, NULL);
    if (w == n) return NULL;
    char *o = pn_malloc(w + 1);
    widen_pass(s, n, o);
    o[w] = 0;
    *out_n = w;
    return o;
}

json_t *pn_json_loadb(const char *buf, size_t len, const char *what) {
    size_t wn = 0;
    char *wide = widen_big_ints(buf, len, &wn);
    json_error_t jerr;
    json_t *root = json_loadb(wide ? wide : buf, wide ? wn : len, JSON_REJECT_DUPLICATES, &jerr);
    free(wide);
    if (!root) pn_errorf("%s:%d:%d: invalid JSON: %s", what, jerr.line, jerr.column, jerr.text);
    return root;
}

json_t *pn_json_load(const char *path) {
    size_t len;
    char *buf = pn_read_file(path, &len);
    if (!buf) return NULL;
    json_t *root = pn_json_loadb(buf, len, path);
    free(buf);
    return root;
}

// ---------------------------------------------------------------------------------------------------
// typed getters for config files

// Reads an optional positive integer key; *out keeps its default when the key is absent or null.
int pn_json_int(const char *path, json_t *o, const char *key, int *out, int required, int minval) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (required) return pn_errorf("%s: missing required key \"%s\"", path, key);
        return 0;
    }
    if (!json_is_integer(v)) return pn_errorf("%s: \"%s\" must be an integer", path, key);
    json_int_t x = json_integer_value(v);
    if (x < minval || x > (1 << 30)) return pn_errorf("%s: \"%s\" = %lld is out of range", path, key, (long long)x);
    *out = (int)x;
    return 0;
}

int pn_json_num(const char *path, json_t *o, const char *key, double *out) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return pn_errorf("%s: \"%s\" must be a number", path, key);
    *out = json_number_value(v);
    return 0;
}

// A number that may also be written as a string ("1e-5"): NVIDIA's Jet-Nemotron code converts these keys
// with float(), and its released configs use the string form. The whole string must be the number.
int pn_json_num_or_string(const char *path, json_t *o, const char *key, double *out) {
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v)) return pn_json_num(path, o, key, out);
    const char *s = json_string_value(v);
    char *end;
    errno = 0;
    double x = strtod(s, &end);
    while (*end == ' ' || *end == '\t' || *end == '\n') end++; // float() ignores surrounding blanks
    if (end == s || *end || errno == ERANGE || !isfinite(x))
        return pn_errorf("%s: \"%s\" = \"%s\" is not a number", path, key, s);
    *out = x;
    return 0;
}

// A positive float parameter: what the kernels use is the float, so 1e-300 (0 as a float) is refused too.
// `in` names the enclosing object ("rope_scaling."), or is "".
int pn_json_pos_float(const char *path, const char *in, const char *key, double x, double hi) {
    if (!((float)x > 0) || !isfinite((float)x) || x > hi)
        return pn_errorf("%s: \"%s%s\" = %g must be positive (as a float) and at most %g", path, in, key, x, hi);
    return 0;
}

int pn_json_bool(const char *path, json_t *o, const char *key, int *out) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return pn_errorf("%s: \"%s\" must be true or false", path, key);
    *out = json_is_true(v);
    return 0;
}

// eos_token_id may be an int or a list of ints (Llama 3); the first is used to stop generation.
// Every id of a list is checked; `vocab` bounds them (HF would index the embedding with them).
int pn_json_token_id(const char *path, json_t *o, const char *key, int vocab, int *out) {
    json_t *v = json_object_get(o, key);
    size_t n = json_is_array(v) ? json_array_size(v) : 1;
    if (json_is_array(v) && n == 0) return 0;
    for (size_t i = 0; i < n; i++) {
        json_t *x = json_is_array(v) ? json_array_get(v, i) : v;
        if (!x || json_is_null(x)) return 0;
        if (!json_is_integer(x) || json_integer_value(x) < 0 || json_integer_value(x) >= vocab)
            return pn_errorf("%s: \"%s\" must be a token id in [0, %d) (vocab_size)", path, key, vocab);
        if (i == 0) *out = (int)json_integer_value(x);
    }
    return 0;
}

int pn_json_string(const char *path, json_t *o, const char *key, const char **out) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_string(v)) return pn_errorf("%s: \"%s\" must be a string", path, key);
    *out = json_string_value(v);
    return 0;
}

int pn_json_known_keys(const char *path, const char *in, json_t *o, const char **known, const char *why) {
    const char *k;
    json_t *v;
    json_object_foreach(o, k, v) {
        int ok = 0;
        for (int i = 0; known[i] && !ok; i++) ok = !strcmp(k, known[i]);
        if (!ok) return pn_errorf("%s: %s has no key \"%s\"%s", path, in, k, why ? why : "");
    }
    return 0;
}

int pn_json_choice(const char *path, const char *in, json_t *o, const char *key, const char **choices) {
    const char *s = NULL;
    if (pn_json_string(path, o, key, &s)) return -1;
    if (!s) return 0;
    for (int i = 0; choices[i]; i++)
        if (!strcmp(s, choices[i])) return 0;
    return pn_errorf("%s: %s.%s = \"%s\" is not one of its values", path, in, key, s);
}


// A float parameter as the shortest decimal that reads back as the same float (1e-06, not
// 9.9999999747524271e-07): what the file says is what the model uses, in any reader.
json_t *pn_json_float(float x) {
    char buf[32];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)x);
        if (strtof(buf, NULL) == x) break;
    }
    return json_real(strtod(buf, NULL));
}

