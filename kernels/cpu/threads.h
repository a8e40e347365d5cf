// Threads of the CPU backend: how many, and the one parallel loop every CPU kernel uses (threads.c says why
// the backend has its own pool instead of OpenMP's and OpenBLAS's).
#ifndef PN_KERNELS_CPU_THREADS_H
#define PN_KERNELS_CPU_THREADS_H

#include <stdint.h>

// The number of threads CPU ops may use (the calling thread included). n >= 1 sets it (at most
// PN_CPU_MAX_THREADS); n <= 0 restores the default: OMP_NUM_THREADS when set (its first value), otherwise
// the cores this process may run on (sched_getaffinity, and the cgroup's CPU quota when it has one), at
// most PN_CPU_DEFAULT_MAX_THREADS. Call it between ops, not while one runs on another thread.
void pn_cpu_set_threads(int n);
int pn_cpu_threads(void);

#define PN_CPU_MAX_THREADS 256
#define PN_CPU_DEFAULT_MAX_THREADS 32

// The work of an op is counted in "units" of about one fp32 multiply-add done from cache (~0.02-0.05 ns
// of one core); an op that streams memory (a matrix-vector product) counts each byte it reads as one unit.
// An op smaller than PN_CPU_PARALLEL_MIN_WORK units (~0.1 ms on one core) runs on the calling thread and
// wakes no other thread: norms, element-wise ops and attention of a decode step, and its 576 x 576
// matrix-vector products (1.3 M units). Larger ones (1536 x 576: 3.5 M) are split: on 2 idle cores that
// took decode of SmolLM2-135M's shape from 25.4 to 29.2 tok/s (measured), and on a loaded machine the load
// limit (threads.c) keeps them on one thread anyway. PN_CPU_MIN_WORK in the environment overrides the
// threshold.
#define PN_CPU_PARALLEL_MIN_WORK (2.0 * 1024 * 1024)
// Work of one chunk that a thread takes at a time when the op is split automatically (grain 0).
#define PN_CPU_CHUNK_WORK (1.0 * 1024 * 1024)

// fn(ctx, begin, end) over [begin, end) of a range of items.
typedef void (*pn_cpu_range_fn)(void *ctx, int64_t begin, int64_t end);

// Calls fn over [0, n) in chunks of `grain` items (the last one shorter; grain 0: sized from `cost` so a
// chunk is about PN_CPU_CHUNK_WORK units), `cost` being the work of one item. The chunks run on up to
// pn_cpu_threads_for(n * cost) threads (the caller takes part), or all on the caller when that is 1 or
// while another thread runs a parallel loop (no nesting, no oversubscription). The chunks are the same
// whatever the thread count, so an op whose result depends only on how it is chunked gives the same bits
// on any number of threads. fn must not depend on which thread runs a chunk or in what order chunks run.
void pn_cpu_parallel_for(int64_t n, int64_t grain, double cost, pn_cpu_range_fn fn, void *ctx);

// How many threads pn_cpu_parallel_for would use now for a job of `work` units (with enough chunks): 1 below
// the threshold or inside a parallel loop, else pn_cpu_threads() or fewer while other processes keep some
// of this process's CPUs busy (threads.c; PN_CPU_ADAPT=0 in the environment turns that off). For ops that
// shape their chunks to the threads (matmul tiles).
int pn_cpu_threads_for(double work);

// The grain pn_cpu_parallel_for picks for grain 0 (items per chunk), for ops that size scratch per chunk.
int64_t pn_cpu_grain(int64_t n, double cost);

// Makes the BLAS library single-threaded (once; cheap afterwards). Every CPU kernel calls it before its
// first BLAS call, so the library never starts threads of its own next to the pool's.
void pn_cpu_blas_init(void);

#endif
