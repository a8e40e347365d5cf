// pn_json: JSON files through jansson, with the project's rules (see pn_json.h).
#include "pn_json.h"

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
