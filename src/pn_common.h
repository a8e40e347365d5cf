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

// Read a whole file into a NUL-terminated buffer; NULL + error on failure. Only regular files
// (pn_open_regular): a FIFO or device where an input file should be is an error, not a hang.
char *pn_read_file(const char *path, size_t *len_out);

// Open an input file for reading, refusing anything but a regular file. open() on a FIFO with no writer
// blocks for ever, so the file is opened with O_NONBLOCK, checked with fstat (S_ISREG), and only then
// switched back to blocking reads. Returns the descriptor (close it), or -1 with the error set:
// "<path>: cannot open: <reason>" or "<path>: not a regular file (a FIFO)". The stdio form: "rb", fclose.
int pn_open_regular(const char *path);
FILE *pn_fopen_regular(const char *path);

// Strict number parsing for flags and text fields: the whole string must be the number (no sign for the
// unsigned form, no blanks, no empty string, no trailing bytes), in [lo, hi], with no silent wrap or
// clamp. On failure: -1 and the error "<what>: '<s>' is not an integer in [lo, hi]" (s escaped).
int pn_parse_i64(const char *what, const char *s, int64_t lo, int64_t hi, int64_t *out);
int pn_parse_u64(const char *what, const char *s, uint64_t lo, uint64_t hi, uint64_t *out);
int pn_parse_int(const char *what, const char *s, int lo, int hi, int *out);
// A finite decimal number in [lo, hi] (no nan/inf, no trailing bytes).
int pn_parse_f64(const char *what, const char *s, double lo, double hi, double *out);

// Untrusted bytes in one line of text: control characters (C0, DEL, C1), U+2028/U+2029 and bytes that
// are not valid UTF-8 become escapes ("\n", "\t", "\r", "\xNN"); everything else (printable ASCII,
// valid UTF-8, backslashes) is kept, so escaping twice changes nothing. Writes at most cap bytes (NUL
// included, truncated at a character boundary) and returns out. pn_errorf() and pn_error_prefix() apply it
// to every message they record, so an error line can never span several lines, whatever it quotes.
char *pn_escape(const char *s, size_t n, char *out, size_t cap);
// The length of the longest prefix of s[0, n) that is valid UTF-8 (n when all of it is).
size_t pn_utf8_valid_prefix(const char *s, size_t n);

// Write a file atomically: data goes to "<path>.tmp.<pid>", is fsynced and renamed over path, so a
// reader never sees a half-written file. A path that exists and is not a regular file (a symbolic link such
// as /dev/stdout, a pipe, /dev/null) is written through directly: renaming over it would replace the link
// or the device node with a file.
// Returns 0 or -1 with the error set.
typedef struct pn_atomic_file {
    FILE *f;
    char *path, *tmp; // tmp NULL: writing path directly (not a regular file)
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
