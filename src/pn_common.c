// pn_common: the single error path, logging, allocation and small file helpers.
#include "pn_common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static _Thread_local char pn_err[PN_ERR_MAX];

int pn_errorf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pn_err, sizeof pn_err, fmt, ap);
    va_end(ap);
    return -1;
}

int pn_error_prefix(const char *fmt, ...) {
    char old[PN_ERR_MAX];
    memcpy(old, pn_err, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(pn_err, sizeof pn_err, fmt, ap);
    va_end(ap);
    // Append ": old" by hand, truncating quietly (snprintf here trips -Wformat-truncation).
    size_t at = n < 0 ? 0 : (size_t)n < sizeof pn_err ? (size_t)n : sizeof pn_err - 1;
    const char *sep = ": ";
    for (const char *s = sep; *s && at + 1 < sizeof pn_err; s++) pn_err[at++] = *s;
    for (const char *s = old; *s && at + 1 < sizeof pn_err; s++) pn_err[at++] = *s;
    pn_err[at] = 0;
    return -1;
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

char *pn_read_file(const char *path, size_t *len_out) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        pn_errorf("%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
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
    size_t n = strlen(path) + 32;
    af->path = pn_strdup(path);
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
    if (!rc && fsync(fileno(af->f)) != 0) rc = pn_errorf("%s: fsync failed: %s", af->path, strerror(errno));
    if (fclose(af->f) != 0 && !rc) rc = pn_errorf("%s: close failed: %s", af->path, strerror(errno));
    if (!rc && rename(af->tmp, af->path) != 0) rc = pn_errorf("%s: rename failed: %s", af->path, strerror(errno));
    if (rc) unlink(af->tmp);
    free(af->path);
    free(af->tmp);
    return rc;
}

void pn_atomic_abort(pn_atomic_file *af) {
    fclose(af->f);
    unlink(af->tmp);
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
