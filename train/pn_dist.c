// pn_dist: launcher environment and MPI collectives (pn_dist.h).
#include "pn_dist.h"

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../kernels/ops.h"
#include "../src/pn_common.h"

#ifdef PN_HAVE_MPI
#include <mpi.h>
#endif

// A launcher variable as a non-negative int; -1 when unset, -2 when set but not a number.
static int env_int(const char *name) {
    const char *s = getenv(name);
    if (!s || !*s) return -1;
    char *end;
    const long v = strtol(s, &end, 10);
    return *end || v < 0 || v > INT_MAX ? -2 : (int)v;
}

int pn_dist_env(pn_dist *d) {
    memset(d, 0, sizeof *d);
    d->world = 1;
    static const char *const vars[2][3] = {{"OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK"},
                                           {"SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID"}};
    for (int l = 0; l < 2; l++) {
        const int w = env_int(vars[l][0]);
        if (w == -1) continue;
        const int r = env_int(vars[l][1]), lr = env_int(vars[l][2]);
        if (w < 1 || r < 0 || r >= w || lr == -2)
            return pn_errorf("launcher environment: %s=%s, %s=%s: not a valid world size and rank", vars[l][0],
                             getenv(vars[l][0]), vars[l][1], getenv(vars[l][1]) ? getenv(vars[l][1]) : "(unset)");
        d->world = w, d->rank = r, d->local_rank = lr < 0 ? 0 : lr;
        d->launched = 1;
        break;
    }
    return 0;
}

int pn_dist_init(pn_dist *d) {
    if (pn_dist_env(d)) return -1;
    if (!d->launched) return 0;
#ifndef PN_HAVE_MPI
    if (d->world == 1) return 0; // mpirun -np 1 without MPI in the build: a world of one all the same
#endif
#ifdef PN_HAVE_MPI // under a launcher, even a world of one (its NCCL communicator is bootstrapped over MPI)
    int provided;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return pn_errorf("MPI_Init failed (rank %d of %d)", d->rank, d->world);
    d->mpi = 1;
    int w, r;
    MPI_Comm_size(MPI_COMM_WORLD, &w);
    MPI_Comm_rank(MPI_COMM_WORLD, &r);
    if (w != d->world || r != d->rank)
        return pn_errorf("MPI says rank %d of %d, the launcher's environment %d of %d", r, w, d->rank, d->world);
    return 0;
#else
    return pn_errorf("started as rank %d of %d by a launcher, but this postnas was built without MPI (install "
                     "libopenmpi-dev and reconfigure the build)", d->rank, d->world);
#endif
}

// ---- the hang watchdog ----

struct pn_dist_watch {
    pthread_t thread;
    double seconds;
    int rank, world;
    _Atomic int64_t step;    // the step running, -1 when disarmed
    _Atomic double since;    // when it began (pn_now)
    _Atomic int waiting;     // inside a collective now
    _Atomic int quit;
};

static void *watch_main(void *arg) {
    pn_dist_watch *w = arg;
    while (!atomic_load(&w->quit)) {
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
        const int64_t step = atomic_load(&w->step);
        if (step < 0) continue;
        const int waiting = atomic_load(&w->waiting);
        const double ran = pn_now() - atomic_load(&w->since);
        if (ran < w->seconds + (waiting ? 10.0 : 0.0)) continue;
        if (waiting)
            fprintf(stderr, "postnas-train: error: rank %d of %d: waited in a collective at step %lld for %.0f s "
                    "(train.step_timeout %.0f s): another rank hangs or died; ending the job\n", w->rank, w->world,
                    (long long)step + 1, ran, w->seconds);
        else
            fprintf(stderr, "postnas-train: error: rank %d of %d: step %lld has run %.0f s without finishing "
                    "(train.step_timeout %.0f s): this rank hangs; ending the job\n", w->rank, w->world,
                    (long long)step + 1, ran, w->seconds);
        fflush(stderr);
        _exit(1); // the launcher sees a rank exit with an error and ends the others
    }
    return NULL;
}

void pn_dist_watchdog(pn_dist *d, double seconds) {
    if (d->world <= 1 || seconds <= 0 || d->watch) return;
    pn_dist_watch *w = pn_calloc(1, sizeof *w);
    w->seconds = seconds, w->rank = d->rank, w->world = d->world;
    atomic_store(&w->step, -1);
    if (pthread_create(&w->thread, NULL, watch_main, w)) {
        free(w);
        pn_warn("rank %d: no watchdog thread: a hung rank will not be detected", d->rank);
        return;
    }
    d->watch = w;
}

void pn_dist_step_begin(pn_dist *d, int64_t step) {
    if (!d->watch) return;
    atomic_store(&d->watch->since, pn_now());
    atomic_store(&d->watch->step, step);
}

void pn_dist_step_end(pn_dist *d) {
    if (d->watch) atomic_store(&d->watch->step, -1);
}

static void waiting(pn_dist *d, int on) {
    if (d->watch) atomic_store(&d->watch->waiting, on);
}

void pn_dist_finalize(pn_dist *d) {
    if (d->watch) {
        atomic_store(&d->watch->quit, 1);
        pthread_join(d->watch->thread, NULL);
        free(d->watch);
        d->watch = NULL;
    }
    if (d->nccl) {
        pn_backend_get(d->dev)->comm_free();
        d->nccl = 0;
    }
    free(d->reqs);
    d->reqs = NULL, d->n_reqs = d->cap_reqs = 0;
#ifdef PN_HAVE_MPI
    if (d->mpi) MPI_Finalize();
#endif
    d->mpi = 0;
}

void pn_dist_abort(pn_dist *d, int code) {
#ifdef PN_HAVE_MPI
    if (d->mpi) MPI_Abort(MPI_COMM_WORLD, code);
#endif
    (void)d, (void)code;
}

#ifdef PN_HAVE_MPI
// MPI counts are int: large buffers go in pieces.
static void allreduce(pn_dist *d, void *x, int64_t n, MPI_Datatype t, size_t elem, MPI_Op op) {
    if (!d->mpi) return;
    waiting(d, 1);
    for (int64_t i = 0; i < n; i += INT_MAX / 2) {
        const int64_t k = n - i < INT_MAX / 2 ? n - i : INT_MAX / 2;
        if (MPI_Allreduce(MPI_IN_PLACE, (char *)x + (size_t)i * elem, (int)k, t, op, MPI_COMM_WORLD) != MPI_SUCCESS)
            pn_panic("MPI_Allreduce failed on rank %d", d->rank);
    }
    waiting(d, 0);
}
void pn_dist_sum_f32(pn_dist *d, float *x, int64_t n) { allreduce(d, x, n, MPI_FLOAT, sizeof *x, MPI_SUM); }
void pn_dist_sum_f64(pn_dist *d, double *x, int64_t n) { allreduce(d, x, n, MPI_DOUBLE, sizeof *x, MPI_SUM); }
void pn_dist_sum_i64(pn_dist *d, int64_t *x, int64_t n) { allreduce(d, x, n, MPI_INT64_T, sizeof *x, MPI_SUM); }
void pn_dist_max_u8(pn_dist *d, uint8_t *x, int64_t n) { allreduce(d, x, n, MPI_UINT8_T, sizeof *x, MPI_MAX); }
void pn_dist_barrier(pn_dist *d) {
    waiting(d, 1);
    if (d->mpi) MPI_Barrier(MPI_COMM_WORLD);
    waiting(d, 0);
}
#define CHUNK (INT_MAX / 2) // elements (reduce) or bytes (the rest) per MPI call
void pn_dist_reduce_sum_f32(pn_dist *d, float *x, int64_t n, int root) {
    if (!d->mpi) return;
    waiting(d, 1);
    for (int64_t i = 0; i < n; i += CHUNK) {
        const int k = (int)(n - i < CHUNK ? n - i : CHUNK);
        const int rc = d->rank == root ? MPI_Reduce(MPI_IN_PLACE, x + i, k, MPI_FLOAT, MPI_SUM, root, MPI_COMM_WORLD)
                                       : MPI_Reduce(x + i, NULL, k, MPI_FLOAT, MPI_SUM, root, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) pn_panic("MPI_Reduce failed on rank %d", d->rank);
    }
    waiting(d, 0);
}
void pn_dist_bcast(pn_dist *d, void *x, size_t bytes, int root) {
    if (!d->mpi) return;
    waiting(d, 1);
    for (size_t i = 0; i < bytes; i += CHUNK) {
        const int k = (int)(bytes - i < CHUNK ? bytes - i : CHUNK);
        if (MPI_Bcast((char *)x + i, k, MPI_BYTE, root, MPI_COMM_WORLD) != MPI_SUCCESS)
            pn_panic("MPI_Bcast failed on rank %d", d->rank);
    }
    waiting(d, 0);
}
void pn_dist_send(pn_dist *d, const void *x, size_t bytes, int to) {
    waiting(d, 1);
    for (size_t i = 0; d->mpi && i < bytes; i += CHUNK) {
        const int k = (int)(bytes - i < CHUNK ? bytes - i : CHUNK);
        if (MPI_Send((const char *)x + i, k, MPI_BYTE, to, 0, MPI_COMM_WORLD) != MPI_SUCCESS)
            pn_panic("MPI_Send failed on rank %d", d->rank);
    }
    waiting(d, 0);
}
void pn_dist_recv(pn_dist *d, void *x, size_t bytes, int from) {
    waiting(d, 1);
    for (size_t i = 0; d->mpi && i < bytes; i += CHUNK) {
        const int k = (int)(bytes - i < CHUNK ? bytes - i : CHUNK);
        if (MPI_Recv((char *)x + i, k, MPI_BYTE, from, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE) != MPI_SUCCESS)
            pn_panic("MPI_Recv failed on rank %d", d->rank);
    }
    waiting(d, 0);
}
#else
void pn_dist_sum_f32(pn_dist *d, float *x, int64_t n) { (void)d, (void)x, (void)n, (void)waiting; }
void pn_dist_sum_f64(pn_dist *d, double *x, int64_t n) { (void)d, (void)x, (void)n; }
void pn_dist_sum_i64(pn_dist *d, int64_t *x, int64_t n) { (void)d, (void)x, (void)n; }
void pn_dist_max_u8(pn_dist *d, uint8_t *x, int64_t n) { (void)d, (void)x, (void)n; }
void pn_dist_barrier(pn_dist *d) { (void)d; }
void pn_dist_reduce_sum_f32(pn_dist *d, float *x, int64_t n, int root) { (void)d, (void)x, (void)n, (void)root; }
void pn_dist_bcast(pn_dist *d, void *x, size_t bytes, int root) { (void)d, (void)x, (void)bytes, (void)root; }
void pn_dist_send(pn_dist *d, const void *x, size_t bytes, int to) { (void)d, (void)x, (void)bytes, (void)to; }
void pn_dist_recv(pn_dist *d, void *x, size_t bytes, int from) { (void)d, (void)x, (void)bytes, (void)from; }
#endif

// ---- binding to a device; gradient buckets ----

int pn_dist_bind(pn_dist *d, pn_device dev) {
    d->dev = dev;
    if (dev != PN_CUDA) return 0;
    const pn_backend *be = pn_backend_get(dev);
    if (d->launched && be->select_device(d->local_rank))
        return pn_error_prefix("rank %d of %d (local rank %d)", d->rank, d->world, d->local_rank);
    if (!d->launched) return 0; // no launcher: a world of one, nothing to sum
    if (!be->comm_init) {
        if (d->world == 1) return 0;
        return pn_errorf("data-parallel training on CUDA (%d processes) needs NCCL, and this postnas was built "
                         "without it (install NCCL's development files, e.g. libnccl-dev, and reconfigure the build)",
                         d->world);
    }
    unsigned char id[PN_COMM_ID_BYTES] = {0};
    if (d->rank == 0 && be->comm_id(id)) return -1; // a failure on rank 0 alone: the launcher ends the job
    pn_dist_bcast(d, id, sizeof id, 0);
    if (be->comm_init(id, d->rank, d->world)) return -1;
    d->nccl = 1;
    return 0;
}

int pn_dist_active(const pn_dist *d) { return d->world > 1 || d->nccl; }

#ifdef PN_HAVE_MPI
static MPI_Request *new_request(pn_dist *d) {
    if (d->n_reqs == d->cap_reqs) {
        d->cap_reqs = d->cap_reqs ? 2 * d->cap_reqs : 64;
        d->reqs = pn_realloc(d->reqs, sizeof(MPI_Request) * (size_t)d->cap_reqs);
    }
    return (MPI_Request *)d->reqs + d->n_reqs++;
}

// Open MPI moves a nonblocking collective on only inside MPI calls: a test of what is in flight at each
// start lets the earlier buckets progress while the backward goes on.
static void progress(pn_dist *d) {
    int done;
    if (d->n_reqs) MPI_Testall(d->n_reqs, (MPI_Request *)d->reqs, &done, MPI_STATUSES_IGNORE);
}
#endif

void pn_dist_isum(pn_dist *d, pn_tensor *x, int root) {
    if (!pn_dist_active(d)) return;
    PN_ASSERT(x->dtype == PN_F32);
    const int64_t n = pn_numel(x);
    if (x->device != PN_CPU) {
        PN_ASSERT(d->nccl && x->device == d->dev);
        pn_backend_get(x->device)->comm_sum(x->data, n, root);
        d->dev_pending = 1;
        return;
    }
#ifdef PN_HAVE_MPI
    if (!d->mpi) return;
    for (int64_t i = 0; i < n; i += CHUNK) {
        const int k = (int)(n - i < CHUNK ? n - i : CHUNK);
        float *p = (float *)x->data + i;
        int rc;
        if (root < 0) rc = MPI_Iallreduce(MPI_IN_PLACE, p, k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, new_request(d));
        else if (d->rank == root) rc = MPI_Ireduce(MPI_IN_PLACE, p, k, MPI_FLOAT, MPI_SUM, root, MPI_COMM_WORLD, new_request(d));
        else rc = MPI_Ireduce(p, NULL, k, MPI_FLOAT, MPI_SUM, root, MPI_COMM_WORLD, new_request(d));
        if (rc != MPI_SUCCESS) pn_panic("MPI_I%s failed on rank %d", root < 0 ? "allreduce" : "reduce", d->rank);
    }
    progress(d);
#endif
}

void pn_dist_ibcast(pn_dist *d, pn_tensor *x, int root) {
    if (!pn_dist_active(d)) return;
    const size_t bytes = pn_nbytes(x);
    if (x->device != PN_CPU) {
        PN_ASSERT(d->nccl && x->device == d->dev);
        pn_backend_get(x->device)->comm_bcast(x->data, bytes, root);
        d->dev_pending = 1;
        return;
    }
#ifdef PN_HAVE_MPI
    if (!d->mpi) return;
    for (size_t i = 0; i < bytes; i += CHUNK) {
        const int k = (int)(bytes - i < CHUNK ? bytes - i : CHUNK);
        if (MPI_Ibcast((char *)x->data + i, k, MPI_BYTE, root, MPI_COMM_WORLD, new_request(d)) != MPI_SUCCESS)
            pn_panic("MPI_Ibcast failed on rank %d", d->rank);
    }
    progress(d);
#endif
}

double pn_dist_wait(pn_dist *d) {
    const double t0 = pn_now();
    if (d->dev_pending) {
        pn_backend_get(d->dev)->comm_join();
        d->dev_pending = 0;
    }
#ifdef PN_HAVE_MPI
    if (d->n_reqs) {
        waiting(d, 1);
        if (MPI_Waitall(d->n_reqs, (MPI_Request *)d->reqs, MPI_STATUSES_IGNORE) != MPI_SUCCESS)
            pn_panic("MPI_Waitall failed on rank %d", d->rank);
        waiting(d, 0);
        d->n_reqs = 0;
    }
#endif
    return pn_now() - t0;
}

double pn_dist_comm_ms(pn_dist *d) { return d->nccl ? pn_backend_get(d->dev)->comm_wait_ms() : 0; }
