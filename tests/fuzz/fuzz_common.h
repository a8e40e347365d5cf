// fuzz_common: what every libFuzzer target here shares. Inputs that stand for several files are a small
// archive: the pieces between FZ_SEP markers go, in order, to the target's list of file names (an empty
// piece writes no file), in one temporary folder per process that each input overwrites.
#ifndef PN_FUZZ_COMMON_H
#define PN_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/pn_common.h"

#define FZ_SEP "\0##\0"
#define FZ_SEP_LEN 4

static char fz_dir[512];

// The per-process folder (made on first use, removed at exit), and quiet logs: warnings on every input
// would make the fuzzer spend its time on stderr.
static void fz_cleanup(void);
static inline const char *fz_folder(void) {
    if (!fz_dir[0]) {
        setenv("PN_LOG", "error", 1);
        const char *t = getenv("TMPDIR");
        snprintf(fz_dir, sizeof fz_dir, "%s/pn_fuzz.XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(fz_dir)) {
            perror("mkdtemp");
            abort();
        }
        atexit(fz_cleanup);
    }
    return fz_dir;
}

static inline char *fz_path(const char *name) { return pn_path_join(fz_folder(), name); }

static inline void fz_write(const char *name, const uint8_t *data, size_t n) {
    char *p = fz_path(name);
    FILE *f = fopen(p, "wb");
    if (!f) {
        perror(p);
        abort();
    }
    if (n) fwrite(data, 1, n, f);
    fclose(f);
    free(p);
}

static inline void fz_unlink(const char *name) {
    char *p = fz_path(name);
    unlink(p);
    free(p);
}

// Splits data on FZ_SEP into at most max pieces (the last takes the rest); returns the count.
static inline int fz_split(const uint8_t *data, size_t n, const uint8_t **piece, size_t *len, int max) {
    int k = 0;
    size_t at = 0;
    while (k < max - 1) {
        const uint8_t *hit = NULL;
        for (size_t i = at; i + FZ_SEP_LEN <= n; i++)
            if (!memcmp(data + i, FZ_SEP, FZ_SEP_LEN)) {
                hit = data + i;
                break;
            }
        if (!hit) break;
        piece[k] = data + at;
        len[k++] = (size_t)(hit - (data + at));
        at = (size_t)(hit - data) + FZ_SEP_LEN;
    }
    piece[k] = data + at;
    len[k++] = n - at;
    for (int i = k; i < max; i++) piece[i] = data + n, len[i] = 0;
    return k;
}

// Writes the pieces to names[] (a piece of length 0 removes the file instead).
static inline void fz_write_archive(const uint8_t *data, size_t n, const char *const *names, int count) {
    const uint8_t *piece[16];
    size_t len[16];
    fz_split(data, n, piece, len, count);
    for (int i = 0; i < count; i++) {
        if (len[i]) fz_write(names[i], piece[i], len[i]);
        else fz_unlink(names[i]);
    }
}

static void fz_cleanup(void) {
    if (!fz_dir[0]) return;
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fz_dir);
    if (system(cmd) != 0) fprintf(stderr, "fuzz: could not remove %s\n", fz_dir);
}

// argv from NUL-separated input (at most max - 1 arguments after argv[0] = prog). The strings point into
// a copy the caller frees (*buf).
static inline int fz_argv(const uint8_t *data, size_t n, const char *prog, char **argv, int max, char **buf) {
    *buf = malloc(n + 1);
    memcpy(*buf, data, n);
    (*buf)[n] = 0;
    int argc = 0;
    argv[argc++] = (char *)prog;
    size_t at = 0;
    while (at <= n && argc < max - 1) {
        argv[argc++] = *buf + at;
        at += strlen(*buf + at) + 1;
    }
    if (n == 0) argc = 1;
    argv[argc] = NULL;
    return argc;
}

#endif
