// Minimal test harness: CHECK records a failure with file:line and keeps going; pn_test_done() prints
// "N passed, M failed" and returns the exit code.
#ifndef PN_TEST_H
#define PN_TEST_H

#include <stdio.h>
#include <string.h>

static int pn_test_pass, pn_test_fail;

#define CHECK(cond, ...)                                                \
    do {                                                                \
        if (cond) {                                                     \
            pn_test_pass++;                                             \
        } else {                                                        \
            pn_test_fail++;                                             \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                               \
            fputc('\n', stderr);                                        \
        }                                                               \
    } while (0)

// The call must fail (-1) with an error containing `needle`.
#define CHECK_ERR(call, needle)                                                          \
    do {                                                                                 \
        pn_clear_error();                                                                \
        int rc_ = (call);                                                                \
        CHECK(rc_ != 0 && strstr(pn_last_error(), (needle)) != NULL,                     \
              "expected an error containing \"%s\", got rc=%d \"%s\"", (needle), rc_,    \
              rc_ ? pn_last_error() : "");                                               \
    } while (0)

static inline int pn_test_done(const char *name) {
    printf("%s: %d passed, %d failed\n", name, pn_test_pass, pn_test_fail);
    return pn_test_fail ? 1 : 0;
}

#endif
