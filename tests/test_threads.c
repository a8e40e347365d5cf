// The CPU backend's thread pool (kernels/cpu/threads.c): every item of a parallel loop runs exactly once,
// whatever the thread count, the grain and the size; a loop started inside another runs on the caller (no
// nesting); several threads may start loops at once; the chunks depend only on the shape (so ops give the
// same bits on any number of threads); and the thread count follows pn_cpu_set_threads / OMP_NUM_THREADS.
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/cpu/threads.h"
#include "../src/pn_rng.h"
#include "pn_test.h"

typedef struct {
    _Atomic int *hits;
    int nested;
    _Atomic int64_t chunks, chunk_sum; // how the range was cut
} job;

static void count(void *p, int64_t b, int64_t e) {
    job *j = p;
    for (int64_t i = b; i < e; i++) atomic_fetch_add(&j->hits[i], 1);
}

static void body(void *p, int64_t b, int64_t e) {
    job *j = p;
    atomic_fetch_add(&j->chunks, 1);
    atomic_fetch_add(&j->chunk_sum, (b + 1) * (e - b)); // a fingerprint of the cut
    if (j->nested) { // a loop inside a loop: must run (on this thread) and cover its range once
        job k = {.hits = j->hits + b};
        pn_cpu_parallel_for(e - b, 1, 1e9, count, &k);
        return;
    }
    count(p, b, e);
}

// `iters` random loops (size, grain, nesting from the seed); returns the number of wrong ones.
static int loops(int iters, uint64_t seed, int check_cut) {
    int bad = 0;
    for (int it = 0; it < iters; it++) {
        const uint64_t r = pn_splitmix64(seed + (uint64_t)it);
        const int64_t n = 1 + (int64_t)(r % 3000), grain = (int64_t)((r >> 16) % 17); // grain 0: automatic
        job j = {.hits = calloc((size_t)n, sizeof(_Atomic int)), .nested = ((r >> 32) & 7) == 0};
        pn_cpu_parallel_for(n, grain, 1e9, body, &j); // a large cost per item: the pool is used
        for (int64_t i = 0; i < n; i++)
            if (j.hits[i] != 1) {
                bad++;
                break;
            }
        if (check_cut) { // the same cut on one thread
            const int t = pn_cpu_threads();
            pn_cpu_set_threads(1);
            job k = {.hits = calloc((size_t)n, sizeof(_Atomic int)), .nested = j.nested};
            pn_cpu_parallel_for(n, grain, 1e9, body, &k);
            pn_cpu_set_threads(t);
            bad += k.chunks != j.chunks || k.chunk_sum != j.chunk_sum;
            free(k.hits);
        }
        free(j.hits);
    }
    return bad;
}

static void *caller(void *a) { return (void *)(intptr_t)loops(2000, (uint64_t)(intptr_t)a, 0); }

int main(void) {
    for (int t = 1; t <= 5; t++) {
        pn_cpu_set_threads(t);
        CHECK(pn_cpu_threads() == t, "set %d threads, got %d", t, pn_cpu_threads());
        const int bad = loops(3000, (uint64_t)t * 1000, 1);
        CHECK(bad == 0, "%d threads: %d loops ran an item not exactly once or cut differently", t, bad);
    }
    pn_cpu_set_threads(3);
    pthread_t th[3];
    for (int i = 0; i < 3; i++) pthread_create(&th[i], NULL, caller, (void *)(intptr_t)((i + 7) * 100000));
    int bad = 0;
    for (int i = 0; i < 3; i++) {
        void *r;
        pthread_join(th[i], &r);
        bad += (int)(intptr_t)r;
    }
    CHECK(bad == 0, "three threads starting loops at once: %d wrong loops", bad);
    // Small work stays on the caller; the default follows OMP_NUM_THREADS.
    if (!getenv("PN_CPU_MIN_WORK")) CHECK(pn_cpu_threads_for(1.0) == 1, "a tiny op must not wake threads");
    setenv("OMP_NUM_THREADS", "2", 1);
    pn_cpu_set_threads(0);
    CHECK(pn_cpu_threads() == 2, "OMP_NUM_THREADS=2 gives %d threads", pn_cpu_threads());
    return pn_test_done("test_threads");
}
