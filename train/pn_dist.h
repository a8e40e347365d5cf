// pn_dist: the processes of a data-parallel run (issue 17). One process per GPU (or per CPU socket), started
// by a launcher: Open MPI's mpirun (OMPI_COMM_WORLD_SIZE / _RANK / _LOCAL_RANK) or Slurm's srun
// (SLURM_NTASKS / SLURM_PROCID / SLURM_LOCALID). Without one a run is a world of one and MPI is never
// initialized, so the tools run anywhere, MPI installed or not.
//
// Host memory goes through MPI (the CPU backend's gradients, the step's loss sums and counts, the stop flag);
// CUDA memory through NCCL on the backend's communication stream, bootstrapped over MPI (pn_dist_bind).
// Every rank calls the same collectives in the same order.
#ifndef PN_DIST_H
#define PN_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "../src/pn_tensor.h"

typedef struct pn_dist_watch pn_dist_watch;

typedef struct pn_dist {
    int rank, world, local_rank;
    int launched;         // started by a launcher (its environment was read), whatever the world's size
    int mpi;              // MPI_Init was called (under a launcher)
    int nccl;             // the device's communicator is up (pn_dist_bind: CUDA under a launcher)
    pn_device dev;        // pn_dist_bind's device
    pn_dist_watch *watch; // the hang watchdog (pn_dist_watchdog), or NULL
    void *reqs;           // pn_dist_isum's MPI requests in flight
    int n_reqs, cap_reqs;
    int dev_pending;      // device collectives queued since the last pn_dist_wait
} pn_dist;

// Reads the launcher's environment only (rank, world, local rank; a world of one without a launcher), before
// anything else: 0, or -1 with the error set.
int pn_dist_env(pn_dist *d);
// pn_dist_env and, under a launcher, initializes MPI (for a world of one too, whose NCCL communicator it
// bootstraps; a world of more than one without MPI in the build is a clear error). 0, or -1 with the error set.
int pn_dist_init(pn_dist *d);
void pn_dist_finalize(pn_dist *d);
// Binds this rank to its device, before anything is allocated there: on CUDA, GPU local_rank (an error
// naming both when the node has fewer GPUs than ranks) and, under a launcher, the NCCL communicator (rank
// 0's unique id broadcast over MPI; a world of one under `mpirun -np 1` gets one too, so the same bucketed
// code runs). A world of more than one on CUDA without NCCL in the build is an error. 0, or -1 with the
// error set.
int pn_dist_bind(pn_dist *d, pn_device dev);
// 1 when gradients must be summed over ranks: a world of more than one, or an NCCL communicator of one.
int pn_dist_active(const pn_dist *d);
// Ends every rank of the job now (MPI_Abort), after a rank's fatal error: no rank is left waiting in a
// collective for one that will never come.
void pn_dist_abort(pn_dist *d, int code);

// The hang watchdog (a world of more than one): a thread that ends this process (exit status 1, which makes
// the launcher end the job) when a step has run `seconds` without finishing — and, while this rank waits in
// a collective for the others, `seconds` + 10: so a rank that hangs in its own work speaks first and names
// itself ("rank R of W: step S has run ... without finishing: this rank hangs"), and the ranks waiting for it
// follow. pn_dist_step_begin arms it for a step, pn_dist_step_end disarms it. seconds 0: no watchdog.
void pn_dist_watchdog(pn_dist *d, double seconds);
void pn_dist_step_begin(pn_dist *d, int64_t step);
void pn_dist_step_end(pn_dist *d);

// In place, over all ranks, on host memory; no-ops for a world of one.
void pn_dist_sum_f32(pn_dist *d, float *x, int64_t n);
void pn_dist_sum_f64(pn_dist *d, double *x, int64_t n);
void pn_dist_sum_i64(pn_dist *d, int64_t *x, int64_t n);
void pn_dist_max_u8(pn_dist *d, uint8_t *x, int64_t n);
void pn_dist_barrier(pn_dist *d);
// ZeRO-1's exchanges: the sum over ranks into root's x (the others' x unchanged), root's bytes to every
// rank, and bytes from one rank to another (both call it: the sender with to, the receiver with from).
void pn_dist_reduce_sum_f32(pn_dist *d, float *x, int64_t n, int root);
void pn_dist_bcast(pn_dist *d, void *x, size_t bytes, int root);
void pn_dist_send(pn_dist *d, const void *x, size_t bytes, int to);
void pn_dist_recv(pn_dist *d, void *x, size_t bytes, int from);

// Gradient buckets (the trainer starts a layer's as soon as its backward is done, so the sums overlap the
// backward of the layers below): pn_dist_isum starts summing an F32 tensor over the ranks in place (root < 0:
// every rank gets the sum; else only root's copy, the others' unchanged), pn_dist_ibcast sends root's tensor
// to every rank; on host memory with MPI's nonblocking collectives, on CUDA memory with NCCL on the
// communication stream after the compute stream's work so far. pn_dist_wait finishes all of them: the host
// waits for MPI's, the compute stream for NCCL's (the host does not block). It returns the host's seconds
// waiting; pn_dist_comm_ms, once the step's work is synchronized, the milliseconds the compute stream
// waited for NCCL beyond its own work at the last pn_dist_wait (0 on the CPU, where the host's wait is the
// whole story). No-ops when pn_dist_active is 0.
void pn_dist_isum(pn_dist *d, pn_tensor *x, int root);
void pn_dist_ibcast(pn_dist *d, pn_tensor *x, int root);
double pn_dist_wait(pn_dist *d);
double pn_dist_comm_ms(pn_dist *d);

#endif
