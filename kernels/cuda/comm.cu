// comm.cu: collectives over a job's GPUs with NCCL: pn_backend's comm_* entries, driven by train/pn_dist.c
// (which bootstraps the communicator over MPI and decides what to sum when).
//
// One communicator per process. Every collective is queued on the context's communication stream behind an
// event recorded on the compute stream at the call, so it starts once the work queued so far (a layer's
// backward, which wrote the gradient) is done, and runs while the compute stream goes on with the layers
// below; comm_join puts the compute stream behind the last collective, so the optimizer reads summed
// gradients, and the host never blocks. Two timed events around that join say how long the compute stream
// waited for communication beyond its own work: the step's communication that the backward did not hide.
#include <nccl.h>

#include "common.cuh"

static ncclComm_t g_comm = NULL;
static int g_rank = 0, g_world = 0;
static cudaEvent_t g_ready;          // compute stream's progress at each collective (no timing)
static cudaEvent_t g_computed, g_communicated; // timed: end of the compute stream's / comm stream's work at the join
static int g_joined = 0;             // a join was recorded since the last wait read

#define NCCL_CHECK(call)                                                                                          \
    do {                                                                                                          \
        const ncclResult_t r_ = (call);                                                                           \
        if (r_ != ncclSuccess)                                                                                    \
            pn_panic("NCCL (rank %d of %d): %s failed: %s", g_rank, g_world, #call, ncclGetErrorString(r_));      \
    } while (0)

extern "C" int pn_cuda_comm_id(void *id) {
    static_assert(sizeof(ncclUniqueId) == PN_COMM_ID_BYTES, "NCCL's unique id size changed");
    const ncclResult_t r = ncclGetUniqueId((ncclUniqueId *)id);
    return r == ncclSuccess ? 0 : pn_errorf("NCCL: ncclGetUniqueId failed: %s", ncclGetErrorString(r));
}

extern "C" int pn_cuda_comm_init(const void *id, int rank, int world) {
    if (g_comm) return pn_errorf("NCCL: the communicator is already up");
    pn_cuda_ctx *c = pn_cuda_ctx_get(); // on the device select_device chose
    ncclUniqueId uid;
    memcpy(&uid, id, sizeof uid);
    const ncclResult_t r = ncclCommInitRank(&g_comm, world, uid, rank);
    if (r != ncclSuccess) {
        g_comm = NULL;
        return pn_errorf("NCCL: ncclCommInitRank (rank %d of %d, GPU %d) failed: %s", rank, world, c->device,
                         ncclGetErrorString(r));
    }
    g_rank = rank, g_world = world;
    CUDA_CHECK(cudaEventCreateWithFlags(&g_ready, cudaEventDisableTiming));
    CUDA_CHECK(cudaEventCreate(&g_computed));
    CUDA_CHECK(cudaEventCreate(&g_communicated));
    return 0;
}

// The communication stream waits for the compute stream's work so far (each call records the event anew;
// a wait takes the record current at the call).
static cudaStream_t comm_after_compute(void) {
    pn_cuda_ctx *c = pn_cuda_ctx_get();
    PN_ASSERT(g_comm);
    CUDA_CHECK(cudaEventRecord(g_ready, c->stream));
    CUDA_CHECK(cudaStreamWaitEvent(c->comm, g_ready, 0));
    return c->comm;
}

extern "C" void pn_cuda_comm_sum(float *x, int64_t n, int root) {
    if (n <= 0) return;
    const cudaStream_t s = comm_after_compute();
    if (root < 0) NCCL_CHECK(ncclAllReduce(x, x, (size_t)n, ncclFloat32, ncclSum, g_comm, s));
    else NCCL_CHECK(ncclReduce(x, x, (size_t)n, ncclFloat32, ncclSum, root, g_comm, s)); // recvbuff: root's only
}

extern "C" void pn_cuda_comm_bcast(void *x, size_t bytes, int root) {
    if (!bytes) return;
    const cudaStream_t s = comm_after_compute();
    NCCL_CHECK(ncclBroadcast(x, x, bytes, ncclUint8, root, g_comm, s));
}

extern "C" void pn_cuda_comm_join(void) {
    pn_cuda_ctx *c = pn_cuda_ctx_get();
    PN_ASSERT(g_comm);
    CUDA_CHECK(cudaEventRecord(g_computed, c->stream));
    CUDA_CHECK(cudaEventRecord(g_communicated, c->comm));
    CUDA_CHECK(cudaStreamWaitEvent(c->stream, g_communicated, 0));
    g_joined = 1;
}

extern "C" double pn_cuda_comm_wait_ms(void) {
    if (!g_joined) return 0;
    float ms = 0;
    CUDA_CHECK(cudaEventSynchronize(g_communicated));
    CUDA_CHECK(cudaEventSynchronize(g_computed));
    CUDA_CHECK(cudaEventElapsedTime(&ms, g_computed, g_communicated));
    g_joined = 0;
    return ms > 0 ? ms : 0;
}

extern "C" void pn_cuda_comm_free(void) {
    if (!g_comm) return;
    CUDA_CHECK(cudaStreamSynchronize(pn_cuda_ctx_get()->comm));
    (void)ncclCommDestroy(g_comm);
    g_comm = NULL;
    (void)cudaEventDestroy(g_ready);
    (void)cudaEventDestroy(g_computed);
    (void)cudaEventDestroy(g_communicated);
}
