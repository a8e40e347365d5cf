// pn_common: the single error path, logging, allocation and small file helpers.
#include "pn_common.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static _Thread_local char pn_err[PN_ERR_MAX];

// Messages quote file names, JSON parser text and command-line values: every recorded line is escaped
// (pn_escape), so it stays one line on the terminal whatever bytes it quotes.
int pn_errorf(const char *fmt, ...) {
    char raw[PN_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    pn_escape(raw, strlen(raw), pn_err, sizeof pn_err);
    return -1;
}

int pn_error_prefix(const char *fmt, ...) {
    char raw[PN_ERR_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    // Append ": old" by hand, truncating quietly (snprintf here trips -Wformat-truncation).
    size_t at = n < 0 ? 0 : (size_t)n < sizeof raw ? (size_t)n : sizeof raw - 1;
    const char *sep = ": ";
    for (const char *s = sep; *s && at + 1 < sizeof raw; s++) raw[at++] = *s;
    for (const char *s = pn_err; *s && at + 1 < sizeof raw; s++) raw[at++] = *s;
    raw[at] = 0;
    pn_escape(raw, at, pn_err, sizeof pn_err); // the old part is escaped already: unchanged
    return -1;
}

// Length of the valid UTF-8 sequence at p (code point in *cp), or 0 when it is not one (overlong forms,
// surrogates and values past U+10FFFF are not).
static size_t utf8_seq(const unsigned char *p, size_t n, uint32_t *cp) {
    const unsigned c = p[0];
    size_t len;
    uint32_t v, min;
    if (c >= 0xc2 && c <= 0xdf) len = 2, v = c & 0x1f, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef) len = 3, v = c & 0x0f, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4) len = 4, v = c & 0x07, min = 0x10000;
    else return 0;
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        v = (v << 6) | (p[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
    *cp = v;
    return len;
}

size_t pn_utf8_valid_prefix(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    uint32_t cp;
    while (i < n) {
        if (p[i] < 0x80) {
            i++;
            continue;
        }
        const size_t take = utf8_seq(p + i, n - i, &cp);
        if (!take) break;
        i += take;
    }
    return i;
}

char *pn_escape(const char *s, size_t n, char *out, size_t cap) {
    if (!cap) return out;
    const unsigned char *p = (const unsigned char *)s;
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        char esc[20];
        size_t el = 0, take = 1;
        const unsigned c = p[i];
        uint32_t cp = 0;
        if (c >= 0x20 && c < 0x7f) {
            esc[el++] = (char)c;
        } else if (c == '\n' || c == '\t' || c == '\r') {
            esc[el++] = '\\';
            esc[el++] = c == '\n' ? 'n' : c == '\t' ? 't' : 'r';
        } else if (c >= 0x80 && (take = utf8_seq(p + i, n - i, &cp)) > 0 &&
                   !(cp <= 0x9f || cp == 0x2028 || cp == 0x2029)) {
            memcpy(esc, p + i, take);
            el = take;
        } else { // C0/DEL, invalid UTF-8 (one byte at a time), C1 controls and line separators (all bytes)
            if (take == 0) take = 1;
            for (size_t j = 0; j < take; j++) el += (size_t)snprintf(esc + el, sizeof esc - el, "\\x%02X", p[i + j]);
        }
        if (k + el >= cap) break;
        memcpy(out + k, esc, el);
        k += el;
        i += take;
    }
    out[k] = 0;
    return out;
}

const char *pn_last_error(void) { return pn_err[0] ? pn_err : "unknown error"; }
void pn_clear_error(void) { pn_err[0] = 0; }

_Noreturn void pn_panic_at(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "postnas: internal error at %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

static int pn_log_level(void) {
    static int level = -1;
    if (level < 0) {
        const char *s = getenv("PN_LOG");
        level = PN_LOG_INFO;
        if (s && !strcmp(s, "error")) level = PN_LOG_ERROR;
        if (s && !strcmp(s, "warn")) level = PN_LOG_WARN;
        if (s && !strcmp(s, "debug")) level = PN_LOG_DEBUG;
    }
    return level;
}

void pn_log(int level, const char *fmt, ...) {
    static const char *names[] = {"error", "warn", "info", "debug"};
    if (level > pn_log_level()) return;
    va_list ap;
    fprintf(stderr, "[postnas %s] ", names[level]);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void *pn_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) pn_panic("out of memory allocating %zu bytes", n);
    return p;
}
void *pn_calloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) pn_panic("out of memory allocating %zu x %zu bytes", n, size);
    return p;
}
void *pn_realloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) pn_panic("out of memory reallocating %zu bytes", n);
    return q;
}
char *pn_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    return memcpy(pn_malloc(n), s, n);
}
void *pn_aligned_alloc(size_t align, size_t n) {
    void *p = NULL;
    if (posix_memalign(&p, align, n ? n : align) != 0) pn_panic("out of memory allocating %zu bytes", n);
    return p;
}

char *pn_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *s = pn_malloc(a + b + 2);
    memcpy(s, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/') s[k++] = '/';
    memcpy(s + k, name, b + 1);
    return s;
}

double pn_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int pn_open_regular(const char *path) {
    // O_NONBLOCK: open() of a FIFO returns at once instead of waiting for a writer; O_NOCTTY: a terminal
    // device never becomes the controlling terminal.
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) return pn_errorf("%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return pn_errorf("%s: cannot open: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        const char *kind = S_ISDIR(sb.st_mode)    ? "a directory"
                           : S_ISFIFO(sb.st_mode) ? "a FIFO"
                           : S_ISCHR(sb.st_mode)  ? "a character device"
                           : S_ISBLK(sb.st_mode)  ? "a block device"
                           : S_ISSOCK(sb.st_mode) ? "a socket"
                                                  : "not a plain file";
        return pn_errorf("%s: not a regular file (%s)", path, kind);
    }
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) != 0) {
        int e = errno;
        close(fd);
        return pn_errorf("%s: cannot open: %s", path, strerror(e));
    }
    return fd;
}

FILE *pn_fopen_regular(const char *path) {
    int fd = pn_open_regular(path);
    if (fd < 0) return NULL;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        pn_errorf("%s: cannot open: %s", path, strerror(errno));
        close(fd);
    }
    return f;
}

static int parse_fail(const char *what, const char *s, const char *want) {
    char q[256];
    pn_escape(s, strlen(s), q, sizeof q);
    return pn_errorf("%s: '%s' is not %s", what, q, want);
}

int pn_parse_u64(const char *what, const char *s, uint64_t lo, uint64_t hi, uint64_t *out) {
    char want[96];
    snprintf(want, sizeof want, "an integer in [%" PRIu64 ", %" PRIu64 "]", lo, hi);
    // Digits only: strtoull alone would take blanks, a sign ("-1" wraps to 2^64 - 1) and an empty string.
    if (!s[0]) return parse_fail(what, s, want);
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9') return parse_fail(what, s, want);
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return parse_fail(what, s, want);
    *out = v;
    return 0;
}

int pn_parse_i64(const char *what, const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char want[96];
    snprintf(want, sizeof want, "an integer in [%" PRId64 ", %" PRId64 "]", lo, hi);
    const char *d = s[0] == '-' ? s + 1 : s;
    if (!d[0]) return parse_fail(what, s, want);
    for (const char *p = d; *p; p++)
        if (*p < '0' || *p > '9') return parse_fail(what, s, want);
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return parse_fail(what, s, want);
    *out = v;
    return 0;
}

int pn_parse_int(const char *what, const char *s, int lo, int hi, int *out) {
    int64_t v;
    if (pn_parse_i64(what, s, lo, hi, &v)) return -1;
    *out = (int)v;
    return 0;
}

int pn_parse_f64(const char *what, const char *s, double lo, double hi, double *out) {
    char want[96];
    snprintf(want, sizeof want, "a number in [%g, %g]", lo, hi);
    // Decimal only: strtod would also take blanks, "inf", "nan" and hexadecimal.
    if (!s[0]) return parse_fail(what, s, want);
    for (const char *p = s; *p; p++)
        if (!((*p >= '0' && *p <= '9') || *p == '.' || *p == '-' || *p == '+' || *p == 'e' || *p == 'E'))
            return parse_fail(what, s, want);
    errno = 0;
    char *end;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v) || !(v >= lo && v <= hi)) return parse_fail(what, s, want);
    *out = v;
    return 0;
}

char *pn_read_file(const char *path, size_t *len_out) {
    FILE *f = pn_fopen_regular(path);
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = pn_malloc(cap + 1);
    for (;;) {
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (len < cap) break;
        cap *= 2;
        buf = pn_realloc(buf, cap + 1);
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        pn_errorf("%s: read error", path);
        return NULL;
    }
    buf[len] = 0;
    if (len_out) *len_out = len;
    return buf;
}

int pn_atomic_open(pn_atomic_file *af, const char *path) {
    struct stat st;
    af->path = pn_strdup(path);
    af->tmp = NULL;
    if (lstat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
            free(af->path);
            return pn_errorf("%s: is a directory", path);
        }
        if (!(af->f = fopen(path, "wb"))) {
            pn_errorf("%s: cannot open for writing: %s", path, strerror(errno));
            free(af->path);
            return -1;
        }
        return 0;
    }
    size_t n = strlen(path) + 32;
    af->tmp = pn_malloc(n);
    snprintf(af->tmp, n, "%s.tmp.%d", path, (int)getpid());
    af->f = fopen(af->tmp, "wb");
    if (!af->f) {
        pn_errorf("%s: cannot create: %s", af->tmp, strerror(errno));
        free(af->path);
        free(af->tmp);
        return -1;
    }
    return 0;
}

int pn_atomic_commit(pn_atomic_file *af) {
    int rc = 0;
    if (fflush(af->f) != 0 || ferror(af->f)) rc = pn_errorf("%s: write error: %s", af->path, strerror(errno));
    if (!rc && af->tmp && fsync(fileno(af->f)) != 0) rc = pn_errorf("%s: fsync failed: %s", af->path, strerror(errno));
    if (fclose(af->f) != 0 && !rc) rc = pn_errorf("%s: close failed: %s", af->path, strerror(errno));
    if (af->tmp) {
        if (!rc && rename(af->tmp, af->path) != 0) rc = pn_errorf("%s: rename failed: %s", af->path, strerror(errno));
        if (rc) unlink(af->tmp);
    }
    free(af->path);
    free(af->tmp);
    return rc;
}

void pn_atomic_abort(pn_atomic_file *af) {
    fclose(af->f);
    if (af->tmp) unlink(af->tmp);
    free(af->path);
    free(af->tmp);
}

float pn_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { // subnormal: normalize
            exp = 127 - 15 + 1;
            while (!(man & 0x400)) {
                man <<= 1;
                exp--;
            }
            man &= 0x3ff;
            u = sign | (exp << 23) | (man << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    union { uint32_t u; float f; } v = {.u = u};
    return v.f;
}
