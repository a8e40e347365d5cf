// The CPU backend's threads: one small pool of its own, BLAS always single-threaded, and a thread count
// per op from its size and from how busy the machine is.
//
// Why this model. Before it, the kernels used `#pragma omp parallel` (libgomp's pool) and matmul called
// Debian's pthread OpenBLAS (a second pool). Both pools busy-wait after a parallel region (libgomp ~3 ms of
// spinning per worker, OpenBLAS ~0.1 s of sched_yield loops), so on a 2-core machine with another busy
// process a decode step ran at 0.7 tok/s: the spinners of one pool kept the other's threads and the caller
// off the cores. Alternatives considered and measured there:
// - OpenBLAS's OpenMP build (libopenblas-openmp-dev) shares libgomp's pool, but libgomp still spins after
//   every region and in every barrier; its wait policy (OMP_WAIT_POLICY, GOMP_SPINCOUNT) is read when
//   libgomp loads, before main(), and has no API. With the default policy a region whose worker had gone
//   to sleep took ~3 ms on the busy 2-core machine (the spinning caller held the core the woken worker
//   needed), 16 us with OMP_WAIT_POLICY=passive -- a setting a program cannot give itself. It would also
//   tie the build to one of Debian's alternatives for libopenblas.so.0.
// - libgomp with `num_threads(1)` for small ops wakes no one in decode, but every larger region still ends
//   in a barrier that waits until each worker has run, even one the scheduler has not let start (its core
//   is shared with another process): a 0.2 ms op then takes a time slice (ms).
// So the backend runs its own pool (below): a job is a range of chunks that threads claim one at a time
// from an atomic counter, the calling thread included. The caller never waits for a helper that has not
// started -- if none shows up it runs every chunk itself and returns -- only for chunks a helper has claimed
// and is running. Helpers spin 50 us after a job (the ops of a prefill follow each other closely), then
// sleep on a futex. BLAS (pthread or OpenMP OpenBLAS, or any CBLAS) is set to one thread and called per
// chunk, so the two never oversubscribe the machine, and the build needs no particular OpenBLAS variant.
// Each job picks its thread count (pn_cpu_threads_for):
// - small ops run on the caller and wake nothing (threads.h, PN_CPU_PARALLEL_MIN_WORK);
// - at most as many threads as CPUs that other processes leave free, from /proc/stat every 100 ms (below):
//   with one of 2 CPUs busy, two threads of ours end up sharing the other CPU, so they only add
//   synchronization (measured 10% slower than one); with this, OMP_NUM_THREADS=2 on a loaded machine runs
//   as fast as OMP_NUM_THREADS=1, and on an idle one prefill is 1.6x and decode 1.3x faster than one thread.
// pn_cpu_parallel_for's chunks depend only on the op's shape, so ops give the same bits on any number of
// threads; matmul's tiles follow the thread count, which BLAS's per-element arithmetic does not see.
#include "threads.h"

#include <cblas.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define CLOSED 0xffffffffu      // chunk index of a job that takes no more claims
#define HELPER_SPIN_NS 50000    // a helper's busy wait for the next job before it sleeps
#define CALLER_SPIN_NS 50000    // the caller's busy wait for claimed chunks before it sleeps

typedef struct {
    _Atomic uint32_t word;     // the job the helper is asked to join (futex word); 0 = none yet
    _Atomic int sleeping;      // 1 while the helper is (about to be) asleep on word
    char pad[64 - sizeof(uint32_t) - sizeof(int)];
} helper_slot;

static struct {
    pthread_once_t once;
    _Atomic int threads;        // the configured count (caller included)
    double min_work;            // PN_CPU_PARALLEL_MIN_WORK or PN_CPU_MIN_WORK
    pthread_mutex_t run;        // held by the thread whose job is running
    int helpers;                // helpers started (only changed under run)
    int can_grow;               // 0 after pthread_create failed
    uint32_t jobno;             // the last job's number (under run); never 0
    // The current job. claim = (job number << 32) | next chunk to claim, or CLOSED once the job has ended.
    _Atomic uint64_t claim;
    _Atomic(pn_cpu_range_fn) fn;
    _Atomic(void *) ctx;
    _Atomic int64_t n, grain;
    _Atomic uint32_t chunks;
    _Atomic uint32_t done;        // chunks finished (futex word the caller may sleep on)
    _Atomic int caller_waiting;
    helper_slot h[PN_CPU_MAX_THREADS];
} P = {.once = PTHREAD_ONCE_INIT, .run = PTHREAD_MUTEX_INITIALIZER, .can_grow = 1};

// Set on helpers, and on the caller while its job runs: a parallel loop started there runs inline.
static _Thread_local int in_parallel;

// ---- configuration ----------------------------------------------------------------------------------

// The CPU limit of a cgroup v2 quota on this process's cgroup or an ancestor ("QUOTA PERIOD" in cpu.max),
// rounded up; 0 when there is none.
static int cgroup_cpu_limit(void) {
    char line[512], rel[512] = "", path[600];
    FILE *f = fopen("/proc/self/cgroup", "r");
    if (!f) return 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "0::", 3) == 0) {
            snprintf(rel, sizeof rel, "%s", line + 3);
            rel[strcspn(rel, "\n")] = 0;
            break;
        }
    fclose(f);
    int limit = 0;
    for (;;) {
        snprintf(path, sizeof path, "/sys/fs/cgroup%s/cpu.max", strcmp(rel, "/") == 0 ? "" : rel);
        FILE *m = fopen(path, "r");
        char quota[32];
        long long period = 0;
        if (m && fscanf(m, "%31s %lld", quota, &period) == 2 && strcmp(quota, "max") != 0 && period > 0) {
            const long long q = atoll(quota), cpus = (q + period - 1) / period;
            if (cpus >= 1 && (limit == 0 || cpus < limit)) limit = (int)(cpus < INT_MAX ? cpus : INT_MAX);
        }
        if (m) fclose(m);
        char *slash = strrchr(rel, '/');
        if (!slash || slash == rel) {
            if (rel[0] == 0 || strcmp(rel, "/") == 0) break;
            strcpy(rel, "/");
            continue;
        }
        *slash = 0;
    }
    return limit;
}

static int clamp_threads(long n) { return n < 1 ? 1 : n > PN_CPU_MAX_THREADS ? PN_CPU_MAX_THREADS : (int)n; }

static int default_threads(void) {
    const char *e = getenv("OMP_NUM_THREADS"); // "4" or a nesting list "4,2": the first level
    if (e) {
        char *end;
        errno = 0;
        const long v = strtol(e, &end, 10);
        if (end != e && errno == 0 && v >= 1 && (*end == 0 || *end == ',')) return clamp_threads(v);
    }
    int n = 0;
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
    if (n < 1) n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    const int quota = cgroup_cpu_limit();
    if (quota >= 1 && quota < n) n = quota;
    return clamp_threads(n < PN_CPU_DEFAULT_MAX_THREADS ? n : PN_CPU_DEFAULT_MAX_THREADS);
}

static void blas_single(void) {
#ifdef OPENBLAS_VERSION
    // The pthread build then never hands work to its own threads; the OpenMP build would otherwise start
    // an OpenMP team inside each of our threads.
    openblas_set_num_threads(1);
#endif
}

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
void pn_cpu_blas_init(void) { pthread_once(&blas_once, blas_single); }

static void load_init(void);

static void init(void) {
    atomic_store(&P.threads, default_threads());
    P.min_work = PN_CPU_PARALLEL_MIN_WORK;
    const char *e = getenv("PN_CPU_MIN_WORK");
    if (e && *e) {
        char *end;
        const double v = strtod(e, &end);
        if (end != e && *end == 0 && v >= 0) P.min_work = v;
    }
    pn_cpu_blas_init();
    load_init();
}

void pn_cpu_set_threads(int n) {
    pthread_once(&P.once, init);
    atomic_store(&P.threads, n >= 1 ? clamp_threads(n) : default_threads());
}

int pn_cpu_threads(void) {
    pthread_once(&P.once, init);
    return atomic_load(&P.threads);
}

// ---- waiting ------------------------------------------------------------------------------------------

static void futex_wait(_Atomic uint32_t *w, uint32_t val) {
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}
static void futex_wake(_Atomic uint32_t *w, int n) {
    syscall(SYS_futex, (uint32_t *)w, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

// ---- the machine's load -------------------------------------------------------------------------------

// How many of our CPUs other processes keep busy, from /proc/stat (busy time of the CPUs in our affinity
// set, all processes) minus this process's own CPU time, over the last SAMPLE_NS or more. A job then uses
// at most as many threads as there are CPUs left, rounded: with one of two CPUs busy, 3 runnable threads on
// 2 CPUs leave the scheduler no fair placement and both of ours end up sharing one CPU (measured: 1.03 CPUs
// for 2 threads, 10% slower than 1 thread), so a second thread only adds synchronization.
#define SAMPLE_NS 100000000 // 100 ms: 10 ticks of /proc/stat per CPU

static struct {
    pthread_mutex_t lock;
    _Atomic int on;       // sampling works and is wanted (PN_CPU_ADAPT=0 turns it off)
    _Atomic int64_t t;    // when the last sample was taken (ns), 0 before the first
    double busy, self;    // CPU seconds: busy on our CPUs (everyone), and this process's, at that time
    int ncpu;
    cpu_set_t set;
    _Atomic int limit;    // threads the load leaves us
} L = {.lock = PTHREAD_MUTEX_INITIALIZER, .limit = PN_CPU_MAX_THREADS};

static int read_busy(double *busy) {
    FILE *f = fopen("/proc/stat", "r");
    if (!f) return -1;
    char line[512];
    double ticks = 0;
    int seen = 0;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "cpu", 3) != 0 || !isdigit((unsigned char)line[3])) continue;
        char *end;
        const long c = strtol(line + 3, &end, 10);
        if (c < 0 || c >= CPU_SETSIZE || !CPU_ISSET(c, &L.set)) continue;
        unsigned long long v[8] = {0}; // user nice system idle iowait irq softirq steal
        if (sscanf(end, "%llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6],
                   &v[7]) < 4)
            continue;
        ticks += (double)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]); // steal: the hypervisor ran someone else
        seen++;
    }
    fclose(f);
    *busy = ticks / (double)sysconf(_SC_CLK_TCK);
    return seen ? 0 : -1;
}

static double self_cpu(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void sample_load(int64_t t) {
    if (pthread_mutex_trylock(&L.lock) != 0) return; // another thread is sampling
    const int64_t t0 = atomic_load(&L.t);
    if (atomic_load(&L.on) && (t0 == 0 || t - t0 >= SAMPLE_NS)) {
        double busy;
        const double self = self_cpu();
        if (read_busy(&busy) != 0) {
            atomic_store(&L.on, 0);
            atomic_store(&L.limit, PN_CPU_MAX_THREADS);
        } else {
            if (t0 != 0) {
                const double wall = 1e-9 * (double)(t - t0);
                double others = ((busy - L.busy) - (self - L.self)) / wall;
                if (others < 0) others = 0;
                const int limit = (int)floor((double)L.ncpu - others + 0.5);
                atomic_store(&L.limit, limit < 1 ? 1 : limit);
            }
            L.busy = busy, L.self = self;
            atomic_store(&L.t, t);
        }
    }
    pthread_mutex_unlock(&L.lock);
}

// The thread count the load allows now (resampled at most every SAMPLE_NS).
static int load_limit(void) {
    if (!atomic_load(&L.on)) return PN_CPU_MAX_THREADS;
    const int64_t t = now_ns();
    if (t - atomic_load(&L.t) >= SAMPLE_NS) sample_load(t);
    return atomic_load(&L.limit);
}

static void load_init(void) {
    const char *e = getenv("PN_CPU_ADAPT");
    if (e && strcmp(e, "0") == 0) return;
    if (sched_getaffinity(0, sizeof L.set, &L.set) != 0) return;
    L.ncpu = CPU_COUNT(&L.set);
    atomic_store(&L.on, 1);
    sample_load(now_ns()); // the baseline; the first limit comes SAMPLE_NS later
}

// ---- jobs -------------------------------------------------------------------------------------------

static void run_chunk(pn_cpu_range_fn fn, void *ctx, int64_t n, int64_t grain, int64_t k) {
    const int64_t b = k * grain, e = n - b < grain ? n : b + grain;
    fn(ctx, b, e);
}

// Claims and runs chunks of job `job` until it has none left (or has ended). Every access to the pool's
// atomics is sequentially consistent: a claim that succeeds proves the job was still open when its fields
// were read, since the caller closes a job before it writes the next one's fields.
static void work_on(uint32_t job) {
    for (;;) {
        uint64_t w = atomic_load(&P.claim);
        if ((uint32_t)(w >> 32) != job) return;
        const uint32_t k = (uint32_t)w, chunks = atomic_load(&P.chunks);
        if (k >= chunks) return; // all claimed (or CLOSED)
        const pn_cpu_range_fn fn = atomic_load(&P.fn);
        void *ctx = atomic_load(&P.ctx);
        const int64_t n = atomic_load(&P.n), grain = atomic_load(&P.grain);
        if (!atomic_compare_exchange_weak(&P.claim, &w, w + 1)) continue;
        run_chunk(fn, ctx, n, grain, k);
        if (atomic_fetch_add(&P.done, 1) + 1 == chunks && atomic_load(&P.caller_waiting)) futex_wake(&P.done, 1);
    }
}

static void *helper_main(void *arg) {
    helper_slot *s = &P.h[(intptr_t)arg];
    in_parallel = 1;
    uint32_t seen = 0;
    for (;;) {
        uint32_t w;
        const int64_t t0 = now_ns();
        for (unsigned i = 1; (w = atomic_load(&s->word)) == seen; i++) {
            cpu_relax();
            if (i % 64 == 0 && now_ns() - t0 > HELPER_SPIN_NS) break;
        }
        if (w == seen) {
            atomic_store(&s->sleeping, 1);
            while ((w = atomic_load(&s->word)) == seen) futex_wait(&s->word, seen);
            atomic_store(&s->sleeping, 0);
        }
        seen = w;
        work_on(w);
    }
    return NULL;
}

// Starts helpers up to `want` (under P.run); returns how many exist.
static int grow(int want) {
    while (P.helpers < want && P.can_grow) {
        pthread_attr_t attr;
        pthread_t t;
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old); // helpers inherit it: signals go to the program's threads
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        const int rc = pthread_create(&t, &attr, helper_main, (void *)(intptr_t)P.helpers);
        pthread_attr_destroy(&attr);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (rc != 0) P.can_grow = 0;
        else P.helpers++;
    }
    return P.helpers < want ? P.helpers : want;
}

int pn_cpu_threads_for(double work) {
    pthread_once(&P.once, init);
    int nt = atomic_load(&P.threads);
    if (nt <= 1 || work < P.min_work || in_parallel) return 1;
    const int limit = load_limit();
    return nt < limit ? nt : limit;
}

int64_t pn_cpu_grain(int64_t n, double cost) {
    if (n < 1) return 1;
    if (!(cost > 0)) cost = 1;
    const double g = ceil(PN_CPU_CHUNK_WORK / cost);
    int64_t grain = g < 1 ? 1 : g >= (double)n ? n : (int64_t)g;
    while ((n - 1) / grain + 1 > INT32_MAX) grain *= 2;
    return grain;
}

void pn_cpu_parallel_for(int64_t n, int64_t grain, double cost, pn_cpu_range_fn fn, void *ctx) {
    if (n <= 0) return;
    pthread_once(&P.once, init);
    if (grain <= 0) grain = pn_cpu_grain(n, cost);
    while ((n - 1) / grain + 1 > INT32_MAX) grain *= 2;
    const int64_t chunks = (n - 1) / grain + 1;
    int nt = pn_cpu_threads_for((double)n * cost);
    if (nt > chunks) nt = (int)chunks;
    if (nt <= 1 || pthread_mutex_trylock(&P.run) != 0) {
        for (int64_t k = 0; k < chunks; k++) run_chunk(fn, ctx, n, grain, k);
        return;
    }
    const int helpers = grow(nt - 1);
    if (helpers == 0) {
        pthread_mutex_unlock(&P.run);
        for (int64_t k = 0; k < chunks; k++) run_chunk(fn, ctx, n, grain, k);
        return;
    }
    in_parallel = 1;
    if (++P.jobno == 0) P.jobno = 1;
    const uint32_t job = P.jobno;
    atomic_store(&P.fn, fn);
    atomic_store(&P.ctx, ctx);
    atomic_store(&P.n, n);
    atomic_store(&P.grain, grain);
    atomic_store(&P.chunks, (uint32_t)chunks);
    atomic_store(&P.done, 0);
    atomic_store(&P.claim, (uint64_t)job << 32);
    for (int i = 0; i < helpers; i++) {
        atomic_store(&P.h[i].word, job);
        if (atomic_load(&P.h[i].sleeping)) futex_wake(&P.h[i].word, 1);
    }
    work_on(job);
    // Every chunk is claimed; wait for the ones helpers are still running.
    uint32_t d;
    const int64_t t0 = now_ns();
    for (unsigned i = 1; (d = atomic_load(&P.done)) != chunks; i++) {
        cpu_relax();
        if (i % 64 == 0 && now_ns() - t0 > CALLER_SPIN_NS) break;
    }
    if (d != chunks) {
        atomic_store(&P.caller_waiting, 1);
        while ((d = atomic_load(&P.done)) != chunks) futex_wait(&P.done, d);
        atomic_store(&P.caller_waiting, 0);
    }
    atomic_store(&P.claim, (uint64_t)job << 32 | CLOSED);
    in_parallel = 0;
    pthread_mutex_unlock(&P.run);
}
