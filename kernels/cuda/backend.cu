// backend.cu: the CUDA backend table (pn_cuda_backend), device memory, host <-> device conversions and
// pn_cuda_available.
//
// Non-obvious: conversions between the host's fp32 arrays and bf16 device tensors happen on the host
// (pn_f32_to_bf16 rounds to nearest even, exactly as the CPU backend does), so a tensor uploaded here
// holds bit-for-bit what the CPU backend would store in a bf16 tensor. The copies are synchronous.
// An allocation failure is not a panic: alloc returns NULL (after clearing CUDA's last-error state) so
// the arena can report "out of cuda memory" as a user error.
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "common.cuh"
#include "gdn_bwd_cuda.h"
#include "gdn_cuda.h"

// ----------------------------------------------------------------------------------------------------
// memory

static void *cuda_alloc(size_t bytes) {
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 256);
    if (e != cudaSuccess) {
        (void)cudaGetLastError(); // clear it so the next check does not report this failure
        return NULL;
    }
    return p;
}

// ----------------------------------------------------------------------------------------------------
// the context

pn_cuda_ctx *pn_cuda_ctx_ptr = NULL;

pn_cuda_ctx *pn_cuda_ctx_init(void) {
    if (pn_cuda_ctx_ptr) return pn_cuda_ctx_ptr;
    pn_cuda_ctx *c = (pn_cuda_ctx *)pn_calloc(1, sizeof *c);
    CUDA_CHECK(cudaGetDevice(&c->device));
    CUDA_CHECK(cudaDeviceGetAttribute(&c->n_sms, cudaDevAttrMultiProcessorCount, c->device));
    int major = 0;
    CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, c->device));
    c->pdl = major >= 9 && !getenv("PN_NO_PDL"); // PN_NO_PDL=1: every kernel waits for the last (comparisons)
    // Blocking streams (not cudaStreamNonBlocking): a synchronous copy on the legacy stream still waits for
    // them, which the host <-> device conversions rely on.
    CUDA_CHECK(cudaStreamCreate(&c->stream));
    CUDA_CHECK(cudaStreamCreate(&c->comm));
    CUBLAS_CHECK(cublasLtCreate(&c->lt));
    pn_cuda_ctx_ptr = c;
    return c;
}

static const char *const ws_names[PN_WS_N] = {"cuBLASLt", "split attention", "attention backward", "cuDNN SDPA",
                                              "gdn forward", "gdn backward", "conv backward", "non-finite count",
                                              "argmax", "matmul_swiglu", "normalized input", "GEMV counter"};

static void *ws_grow(pn_cuda_ws_id id, size_t need, int may_fail) {
    pn_cuda_ctx *c = pn_cuda_ctx_get();
    if (need <= c->ws_bytes[id]) return c->ws[id];
    cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
    CUDA_CHECK(cudaStreamIsCapturing(c->stream, &cs));
    if (cs != cudaStreamCaptureStatusNone)
        pn_panic("the %s workspace must grow from %zu to %zu bytes while a CUDA graph is being captured (run the "
                 "step once before capturing it)", ws_names[id], c->ws_bytes[id], need);
    if (c->ws[id]) CUDA_CHECK(cudaFree(c->ws[id])); // synchronizes: no queued kernel still uses it
    c->ws[id] = NULL;
    c->ws_bytes[id] = 0;
    void *p = NULL;
    const cudaError_t e = cudaMalloc(&p, need);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        if (may_fail) return NULL;
        pn_panic("out of CUDA memory for the %s workspace (%zu bytes)", ws_names[id], need);
    }
    CUDA_CHECK(cudaMemsetAsync(p, 0, need, c->stream)); // a new workspace starts zero (attention's split counters)
    c->ws[id] = p;
    c->ws_bytes[id] = need;
    return p;
}

void *pn_cuda_ws(pn_cuda_ws_id id, size_t need) { return ws_grow(id, need, 0); }
void *pn_cuda_ws_try(pn_cuda_ws_id id, size_t need) { return ws_grow(id, need, 1); }

size_t pn_cuda_ws_total(void) {
    size_t t = 0;
    for (int i = 0; pn_cuda_ctx_ptr && i < PN_WS_N; i++) t += pn_cuda_ctx_ptr->ws_bytes[i];
    return t;
}

static void cuda_free(void *p) {
    if (p) CUDA_CHECK(cudaFree(p));
}

// Both are synchronous for the host (the source may be reused, the destination read, right after), and
// ordered after the work queued on the compute stream.
static void cuda_memcpy_h2d(void *dst, const void *src, size_t bytes) {
    if (!bytes) return;
    const cudaStream_t s = pn_cuda_stream();
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cudaStreamSynchronize(s));
}

static void cuda_memcpy_d2h(void *dst, const void *src, size_t bytes) {
    if (!bytes) return;
    const cudaStream_t s = pn_cuda_stream();
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s));
    CUDA_CHECK(cudaStreamSynchronize(s));
}

static void cuda_memset0(void *dst, size_t bytes) {
    if (bytes) CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, pn_cuda_stream()));
}

static void cuda_sync(void) { CUDA_CHECK(cudaDeviceSynchronize()); }

static size_t cuda_mem_avail(void) {
    size_t free_b = 0, total = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_b, &total));
    return free_b;
}

// ----------------------------------------------------------------------------------------------------
// conversions

extern "C" void pn_cuda_to_host_f32(float *dst, const pn_tensor *src) {
    const int64_t n = pn_numel(src);
    if (n == 0) return;
    if (src->dtype == PN_F32) {
        cuda_memcpy_d2h(dst, src->data, (size_t)n * sizeof(float));
    } else if (src->dtype == PN_BF16) {
        uint16_t *tmp = (uint16_t *)pn_malloc((size_t)n * sizeof(uint16_t));
        cuda_memcpy_d2h(tmp, src->data, (size_t)n * sizeof(uint16_t));
        for (int64_t i = 0; i < n; i++) dst[i] = pn_bf16_to_f32(tmp[i]);
        free(tmp);
    } else {
        pn_panic("to_host_f32: unsupported dtype %s on cuda", pn_dtype_name(src->dtype));
    }
}

extern "C" void pn_cuda_from_host_f32(pn_tensor *dst, const float *src) {
    const int64_t n = pn_numel(dst);
    if (n == 0) return;
    if (dst->dtype == PN_F32) {
        cuda_memcpy_h2d(dst->data, src, (size_t)n * sizeof(float));
    } else if (dst->dtype == PN_BF16) {
        uint16_t *tmp = (uint16_t *)pn_malloc((size_t)n * sizeof(uint16_t));
        for (int64_t i = 0; i < n; i++) tmp[i] = pn_f32_to_bf16(src[i]);
        cuda_memcpy_h2d(dst->data, tmp, (size_t)n * sizeof(uint16_t));
        free(tmp);
    } else {
        pn_panic("from_host_f32: unsupported dtype %s on cuda", pn_dtype_name(dst->dtype));
    }
}

// ----------------------------------------------------------------------------------------------------
// timing (benchmarks only)

static cudaEvent_t timer_ev[2];
static int timer_ready = 0;

extern "C" void pn_cuda_timer_start(void) {
    if (!timer_ready) {
        CUDA_CHECK(cudaEventCreate(&timer_ev[0]));
        CUDA_CHECK(cudaEventCreate(&timer_ev[1]));
        timer_ready = 1;
    }
    CUDA_CHECK(cudaEventRecord(timer_ev[0], pn_cuda_stream()));
}

extern "C" float pn_cuda_timer_stop_ms(void) {
    PN_ASSERT(timer_ready);
    float ms = 0.0f;
    CUDA_CHECK(cudaEventRecord(timer_ev[1], pn_cuda_stream()));
    CUDA_CHECK(cudaEventSynchronize(timer_ev[1]));
    CUDA_CHECK(cudaEventElapsedTime(&ms, timer_ev[0], timer_ev[1]));
    return ms;
}

// ----------------------------------------------------------------------------------------------------
// CUDA graphs: the compute stream's work between capture_begin and capture_end, replayed by graph_launch
// with one call instead of one launch per kernel. Only this thread's work is recorded (relaxed mode would
// also allow it, but a stray legacy-stream call from elsewhere should fail the capture, not join it).

static int cuda_capture_begin(void) {
    const cudaError_t e = cudaStreamBeginCapture(pn_cuda_stream(), cudaStreamCaptureModeThreadLocal);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return pn_errorf("CUDA graph capture: %s", cudaGetErrorString(e));
    }
    return 0;
}

static void *cuda_capture_end(void) {
    cudaGraph_t g = NULL;
    cudaGraphExec_t x = NULL;
    cudaError_t e = cudaStreamEndCapture(pn_cuda_stream(), &g);
    if (e == cudaSuccess) e = cudaGraphInstantiate(&x, g, 0);
    if (g) (void)cudaGraphDestroy(g);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        pn_errorf("CUDA graph capture: %s", cudaGetErrorString(e));
        return NULL;
    }
    return (void *)x;
}

static void cuda_graph_launch(void *g) { CUDA_CHECK(cudaGraphLaunch((cudaGraphExec_t)g, pn_cuda_stream())); }

static void cuda_graph_free(void *g) {
    if (g) CUDA_CHECK(cudaGraphExecDestroy((cudaGraphExec_t)g));
}

// ----------------------------------------------------------------------------------------------------
// availability and the table

static int cuda_select_device(int ordinal) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return pn_errorf("CUDA: cannot count the GPUs: %s", cudaGetErrorString(e));
    }
    // A launcher that gives each rank its own GPU (srun --gpus-per-task=1, CUDA_VISIBLE_DEVICES per rank) leaves
    // one visible whatever the local rank: that one is this rank's.
    if (n == 1) ordinal = 0;
    if (ordinal < 0 || ordinal >= n)
        return pn_errorf("CUDA: GPU %d asked for, but this node shows %d (CUDA_VISIBLE_DEVICES=%s): one rank per GPU",
                         ordinal, n, getenv("CUDA_VISIBLE_DEVICES") ? getenv("CUDA_VISIBLE_DEVICES") : "unset");
    if (pn_cuda_ctx_ptr && pn_cuda_ctx_ptr->device != ordinal)
        return pn_errorf("CUDA: GPU %d asked for after GPU %d was put to use in this process", ordinal,
                         pn_cuda_ctx_ptr->device);
    if ((e = cudaSetDevice(ordinal)) != cudaSuccess) {
        (void)cudaGetLastError();
        return pn_errorf("CUDA: cannot use GPU %d: %s", ordinal, cudaGetErrorString(e));
    }
    return 0;
}

extern "C" int pn_cuda_available(void) {
    static int cached = -1;
    if (cached < 0) {
        int n = 0;
        cudaError_t e = cudaGetDeviceCount(&n);
        if (e != cudaSuccess) (void)cudaGetLastError();
        cached = (e == cudaSuccess && n >= 1) ? 1 : 0;
    }
    return cached;
}

extern "C" const pn_backend pn_cuda_backend = {
    "cuda",
    cuda_alloc,
    cuda_free,
    cuda_memcpy_h2d,
    cuda_memcpy_d2h,
    cuda_memset0,
    cuda_sync,
    cuda_mem_avail,
    cuda_capture_begin,
    cuda_capture_end,
    cuda_graph_launch,
    cuda_graph_free,
    cuda_select_device,
#ifdef PN_HAVE_NCCL // comm.cu
    pn_cuda_comm_id,
    pn_cuda_comm_init,
    pn_cuda_comm_sum,
    pn_cuda_comm_bcast,
    pn_cuda_comm_join,
    pn_cuda_comm_wait_ms,
    pn_cuda_comm_free,
#else
    NULL, NULL, NULL, NULL, NULL, NULL, NULL,
#endif
    PN_OPS(PN_OP_ENTRY_CUDA) // in the list's order, like the struct's fields: a missing pn_cuda_<op> does not link
};

// ----------------------------------------------------------------------------------------------------
// PN_OP_PROFILE=1: the GPU time of each op, for finding where a step's time goes (nsys is not everywhere).
// pn_cuda_backend_active() then hands out a second table whose entries record a CUDA event on the compute
// stream before and after the real op (no host synchronization; the pairs are read when a few thousand
// are pending and at exit, where a table of ops by total time goes to stderr). An op's time is from the
// first of its kernels starting to the last ending, so it includes gaps in the stream while its launches
// are issued; an op that calls another through the table (none do on CUDA) would count both. Ops issued
// while the stream is being captured into a graph are not timed.

namespace {
#define PROF_ID(name, ret, params) PROF_##name,
#define PROF_NAME(name, ret, params) #name,
enum { PN_OPS(PROF_ID) PROF_N };
const char *const prof_names[PROF_N] = {PN_OPS(PROF_NAME)};

struct prof_op_rec {
    std::vector<cudaEvent_t> ev; // pairs (start, stop); the first `used` are recorded, not yet read
    size_t used = 0;
    long calls = 0;
    double ms = 0.0;
};
prof_op_rec prof_rec[PROF_N];
size_t prof_pending = 0;

void prof_read(void) { // the recorded pairs into the totals (waits for the last)
    for (auto &r : prof_rec) {
        for (size_t i = 0; i + 1 < r.used; i += 2) {
            float ms = 0.0f;
            CUDA_CHECK(cudaEventSynchronize(r.ev[i + 1]));
            CUDA_CHECK(cudaEventElapsedTime(&ms, r.ev[i], r.ev[i + 1]));
            r.ms += ms;
        }
        r.used = 0;
    }
    prof_pending = 0;
}

void prof_report(void) {
    prof_read();
    int idx[PROF_N];
    double total = 0.0;
    for (int i = 0; i < PROF_N; i++) idx[i] = i, total += prof_rec[i].ms;
    std::sort(idx, idx + PROF_N, [](int a, int b) { return prof_rec[a].ms > prof_rec[b].ms; });
    fprintf(stderr, "[postnas] op profile (PN_OP_PROFILE=1): GPU time from each op's first kernel to its last\n");
    fprintf(stderr, "%-22s %9s %12s %12s %7s\n", "op", "calls", "total ms", "ms / call", "share");
    for (int j = 0; j < PROF_N; j++) {
        const prof_op_rec &r = prof_rec[idx[j]];
        if (!r.calls) continue;
        fprintf(stderr, "%-22s %9ld %12.3f %12.4f %6.1f%%\n", prof_names[idx[j]], r.calls, r.ms, r.ms / (double)r.calls,
                total > 0.0 ? 100.0 * r.ms / total : 0.0);
    }
    fprintf(stderr, "%-22s %9s %12.3f\n", "all", "", total);
}

// Two events for op id's next call (created once, reused after each read).
void prof_pair(int id, cudaEvent_t *e0, cudaEvent_t *e1) {
    if (prof_pending >= 4096) prof_read();
    prof_op_rec &r = prof_rec[id];
    while (r.ev.size() < r.used + 2) {
        cudaEvent_t e;
        CUDA_CHECK(cudaEventCreate(&e));
        r.ev.push_back(e);
    }
    *e0 = r.ev[r.used], *e1 = r.ev[r.used + 1];
    r.used += 2, r.calls++, prof_pending++;
}

template <int ID, auto F> struct prof_call;
template <int ID, class R, class... A, R (*F)(A...)> struct prof_call<ID, F> {
    static R call(A... a) {
        cudaStream_t s = pn_cuda_stream();
        cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
        CUDA_CHECK(cudaStreamIsCapturing(s, &cs));
        if (cs != cudaStreamCaptureStatusNone) return F(a...);
        cudaEvent_t e0, e1;
        prof_pair(ID, &e0, &e1);
        CUDA_CHECK(cudaEventRecord(e0, s));
        if constexpr (std::is_void_v<R>) {
            F(a...);
            CUDA_CHECK(cudaEventRecord(e1, s));
        } else {
            R r = F(a...);
            CUDA_CHECK(cudaEventRecord(e1, s));
            return r;
        }
    }
};
// pn_cuda_backend with every op timed (the other entries the same).
pn_backend prof_backend(void) {
    pn_backend b = pn_cuda_backend;
#define PROF_SET(name, ret, params) b.name = prof_call<PROF_##name, pn_cuda_##name>::call;
    PN_OPS(PROF_SET)
    return b;
}
} // namespace

extern "C" const pn_backend *pn_cuda_backend_active(void) {
    static int on = -1;
    static pn_backend timed;
    if (on < 0) {
        const char *e = getenv("PN_OP_PROFILE");
        on = e && e[0] == '1';
        if (on) {
            timed = prof_backend();
            atexit(prof_report);
        }
    }
    return on ? &timed : &pn_cuda_backend;
}
