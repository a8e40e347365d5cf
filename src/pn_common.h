// pn_common: errors, logging and allocation used by every module.
//
// Library functions never exit on bad input: they record one line with pn_errorf() and return a
// non-zero int (or NULL). The line names the file and the problem ("model.safetensors: header length
// 9999 runs past the end of the file (123 bytes)"); the command-line tools print it after their name and
// exit 1. Only programmer errors (broken invariants) and exhausted memory abort through pn_panic().
#ifndef PN_COMMON_H
#define PN_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define PN_ERR_MAX 1024

// Record the current error (printf-style); returns -1 so callers can `return pn_errorf(...)`.
int pn_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// Prefix the current error with more context: "ctx: <old message>".
int pn_error_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *pn_last_error(void);
void pn_clear_error(void);

// Abort with file:line for broken invariants and out-of-memory; never for user input.
_Noreturn void pn_panic_at(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define pn_panic(...) pn_panic_at(__FILE__, __LINE__, __VA_ARGS__)
#define PN_ASSERT(c)                                             \
    do {                                                         \
        if (!(c)) pn_panic_at(__FILE__, __LINE__, "assertion failed: %s", #c); \
    } while (0)

// Logging to stderr. Level from PN_LOG (error, warn, info, debug); default info.
enum { PN_LOG_ERROR = 0, PN_LOG_WARN = 1, PN_LOG_INFO = 2, PN_LOG_DEBUG = 3 };
void pn_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define pn_info(...) pn_log(PN_LOG_INFO, __VA_ARGS__)
#define pn_warn(...) pn_log(PN_LOG_WARN, __VA_ARGS__)
#define pn_debug(...) pn_log(PN_LOG_DEBUG, __VA_ARGS__)

// Allocation that cannot fail silently (panics on out-of-memory).
void *pn_malloc(size_t n);
void *pn_calloc(size_t n, size_t size);
void *pn_realloc(void *p, size_t n);
char *pn_strdup(const char *s);
void *pn_aligned_alloc(size_t align, size_t n); // free with free()

// Path helper: dir + "/" + name into a fresh string.
char *pn_path_join(const char *dir, const char *name);

// Wall-clock seconds (monotonic).
double pn_now(void);

// Read a whole file into a NUL-terminated buffer; NULL + error on failure.
char *pn_read_file(const char *path, size_t *len_out);

// Write a file atomically: data goes to "<path>.tmp.<pid>", is fsynced and renamed over path, so a
// reader never sees a half-written file. Returns 0 or -1 with the error set.
typedef struct pn_atomic_file {
    FILE *f;
    char *path, *tmp;
} pn_atomic_file;
int pn_atomic_open(pn_atomic_file *af, const char *path);
int pn_atomic_commit(pn_atomic_file *af); // fflush + fsync + rename; closes
void pn_atomic_abort(pn_atomic_file *af); // close + unlink the temporary

// bf16 / f16 conversion (round-to-nearest-even, NaN preserved).
static inline float pn_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v = {.u = (uint32_t)h << 16};
    return v.f;
}
static inline uint16_t pn_f32_to_bf16(float f) {
    union { uint32_t u; float f; } v = {.f = f};
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40); // quiet NaN
    uint32_t rounding = 0x7fffu + ((v.u >> 16) & 1u);
    return (uint16_t)((v.u + rounding) >> 16);
}
float pn_f16_to_f32(uint16_t h);

#endif
