// cuda_emu.cpp: the runtime of cuda_emu.h: fibers for a block's threads, the barrier scheduler, the warp
// collectives in the PTX ISA's fragment layouts, deferred cp.async copies, and the backend context's
// workspaces in host memory.
#include "cuda_emu.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <vector>

#define _Noreturn __attribute__((noreturn))
extern "C" {
#include "src/pn_common.h"
}
#undef _Noreturn

// ----------------------------------------------------------------------------------------------------
// fibers

enum { RUN, WAIT_BLOCK, WAIT_WARP, DONE };

struct emu_copy {
    void *dst;
    unsigned char bytes[16];
    int n;
    long group;
};

struct emu_thread {
    void *sp;      // saved stack pointer while switched out
    char *stack;   // its own stack (allocated once, reused by every block)
    dim3 tid;
    int state;
    long cseq;     // warp collectives so far: which bank of the slots the next one uses
    long groups;   // cp.async groups committed so far (the open group's index)
    std::vector<emu_copy> pend;
};

emu_thread *emu_cur;
dim3 emu_block_idx, emu_block_dim, emu_grid_dim;
static void *sched_sp;                // the scheduler's stack pointer while a fiber runs
static std::vector<emu_thread> threads;
static unsigned char *smem_buf;       // the block's dynamic shared memory
static size_t smem_size, smem_cap;
static uint64_t order_rng = 0x9e3779b97f4a7c15ull; // the fibers' running order (below)
static void (*cur_body)(void *);

static void shuffle(unsigned *x, unsigned n) { // Fisher-Yates with xorshift64: the same order on every run
    for (unsigned i = n - 1; i > 0; i--) {
        order_rng ^= order_rng << 13, order_rng ^= order_rng >> 7, order_rng ^= order_rng << 17;
        const unsigned j = (unsigned)(order_rng % (i + 1)), t = x[i];
        x[i] = x[j], x[j] = t;
    }
}
static void *cur_arg;
#define EMU_STACK (256 * 1024)

const dim3 &emu_thread_idx(void) { return emu_cur->tid; }
void *emu_dyn_smem(void) { return smem_buf; }

[[noreturn]] static void emu_fail(const char *what) {
    fprintf(stderr, "cuda_emu: block (%u, %u, %u) thread %u: %s\n", emu_block_idx.x, emu_block_idx.y, emu_block_idx.z,
            emu_cur ? emu_cur->tid.x : 0u, what);
    abort();
}

// Saves the callee-saved registers and the SSE/x87 control words on the current stack, stores the stack
// pointer in *from, loads `to` and restores what that stack holds: a cooperative switch (SysV x86-64).
extern "C" void emu_switch(void **from, void *to);
#if defined(__x86_64__)
__asm__(".text\n"
        ".globl emu_switch\n"
        ".type emu_switch,@function\n"
        "emu_switch:\n"
        "  pushq %rbp\n  pushq %rbx\n  pushq %r12\n  pushq %r13\n  pushq %r14\n  pushq %r15\n"
        "  subq $8, %rsp\n  stmxcsr (%rsp)\n  fnstcw 4(%rsp)\n"
        "  movq %rsp, (%rdi)\n  movq %rsi, %rsp\n"
        "  ldmxcsr (%rsp)\n  fldcw 4(%rsp)\n  addq $8, %rsp\n"
        "  popq %r15\n  popq %r14\n  popq %r13\n  popq %r12\n  popq %rbx\n  popq %rbp\n"
        "  ret\n"
        ".size emu_switch,.-emu_switch\n"
        ".section .note.GNU-stack,\"\",@progbits\n"
        ".text\n");
#else
#error "cuda_emu: the fiber switch is written for x86-64 only"
#endif

static void land(emu_thread *t, long below) { // copies of groups < below reach shared memory
    size_t keep = 0;
    for (size_t i = 0; i < t->pend.size(); i++) {
        emu_copy &c = t->pend[i];
        if (c.group < below) memcpy(c.dst, c.bytes, (size_t)c.n);
        else t->pend[keep++] = c;
    }
    t->pend.resize(keep);
}

static void fiber_main(void) {
    cur_body(cur_arg);
    land(emu_cur, 1L << 62); // copies never waited for still land
    emu_cur->state = DONE;
    emu_switch(&emu_cur->sp, sched_sp);
    abort(); // not reached: a finished fiber is never resumed
}

// A fresh stack whose first switch "returns" into fiber_main with the ABI's alignment.
static void fiber_init(emu_thread *t) {
    uintptr_t top = ((uintptr_t)(t->stack + EMU_STACK)) & ~(uintptr_t)15;
    uint64_t *sp = (uint64_t *)top;
    *--sp = 0;                     // fiber_main's would-be return address (keeps the entry alignment)
    *--sp = (uint64_t)fiber_main;  // ret target
    for (int i = 0; i < 6; i++) *--sp = 0; // rbp rbx r12 r13 r14 r15
    *--sp = 0x1f80ull | (0x037full << 32); // mxcsr (low), x87 control word (bytes 4..5)
    t->sp = sp;
}

static void wait_state(int st) {
    emu_cur->state = st;
    emu_switch(&emu_cur->sp, sched_sp);
}

void __syncthreads(void) { wait_state(WAIT_BLOCK); }

// ----------------------------------------------------------------------------------------------------
// the scheduler

static void emu_release(void) { // at exit: the fibers' stacks and the shared memory (LeakSanitizer)
    for (emu_thread &t : threads) free(t.stack);
    threads.clear();
    free(smem_buf);
    smem_buf = NULL, smem_cap = 0;
}

void emu_run_grid(dim3 grid, dim3 block, size_t smem, void (*body)(void *), void *arg) {
    if (block.y != 1 || block.z != 1 || block.x < 1 || block.x > 1024 || block.x % 32)
        emu_fail("emulated blocks are one-dimensional, a multiple of 32 threads, at most 1024");
    if (smem > 232448) emu_fail("dynamic shared memory above Hopper's 227 KB");
    const unsigned n = block.x;
    if (threads.size() < n) {
        if (threads.empty()) atexit(emu_release);
        size_t old = threads.size();
        threads.resize(n);
        for (size_t i = old; i < n; i++) threads[i].stack = (char *)pn_malloc(EMU_STACK);
    }
    if (smem > smem_cap) {
        free(smem_buf);
        smem_buf = (unsigned char *)aligned_alloc(128, (smem + 127) & ~(size_t)127);
        smem_cap = smem;
    }
    smem_size = smem;
    emu_block_dim = block, emu_grid_dim = grid;
    const unsigned nw = n / 32;
    unsigned worder[32], lorder[32];
    for (unsigned i = 0; i < 32; i++) worder[i] = i, lorder[i] = i;
    cur_body = body, cur_arg = arg;
    for (unsigned bz = 0; bz < grid.z; bz++)
        for (unsigned by = 0; by < grid.y; by++)
            for (unsigned bx = 0; bx < grid.x; bx++) {
                emu_block_idx = dim3(bx, by, bz);
                if (smem) memset(smem_buf, 0xff, smem); // uninitialized: NaN as fp32 and as bf16
                for (unsigned i = 0; i < n; i++) {
                    emu_thread &t = threads[i];
                    t.tid = dim3(i, 0, 0), t.state = RUN, t.cseq = 0, t.groups = 0;
                    t.pend.clear();
                    fiber_init(&t);
                }
                for (;;) {
                    // Between two barriers of the block the warps run one after another, each to the barrier,
                    // in an order shuffled every time (fixed seed); inside a warp the lanes run in a shuffled
                    // order up to each warp collective. A read of what another thread writes in the same
                    // interval (a missing barrier) then sees the old contents about half the time, and fails a
                    // test: the hardware's interleaving is not assumed.
                    shuffle(worder, nw);
                    for (unsigned k = 0; k < nw; k++) {
                        emu_thread *lanes = &threads[32 * worder[k]];
                        for (;;) {
                            shuffle(lorder, 32);
                            for (unsigned l = 0; l < 32; l++)
                                if (lanes[lorder[l]].state == RUN) {
                                    emu_cur = &lanes[lorder[l]];
                                    emu_switch(&sched_sp, emu_cur->sp);
                                }
                            unsigned lw = 0, ww = 0; // live lanes, lanes waiting in a collective
                            for (unsigned l = 0; l < 32; l++) lw += lanes[l].state != DONE, ww += lanes[l].state == WAIT_WARP;
                            if (!ww) break; // at the block's barrier (or done)
                            if (ww != lw) {
                                emu_cur = &lanes[0];
                                emu_fail("divergent barrier: lanes of a warp wait in a warp collective while others "
                                         "wait at __syncthreads or have exited");
                            }
                            for (unsigned l = 0; l < 32; l++) lanes[l].state = lanes[l].state == WAIT_WARP ? RUN : lanes[l].state;
                        }
                    }
                    emu_cur = NULL;
                    unsigned live = 0;
                    for (unsigned i = 0; i < n; i++) live += threads[i].state != DONE;
                    if (!live) break;
                    for (unsigned i = 0; i < n; i++) // every live thread waits at __syncthreads
                        if (threads[i].state == WAIT_BLOCK) threads[i].state = RUN;
                }
            }
}

// ----------------------------------------------------------------------------------------------------
// warp collectives: each lane publishes its operand in its slot, waits for the warp, and reads the others'.
// Two banks, alternating: a lane writes bank b again only two collectives later, when every lane has passed
// the collective in between, so every read of bank b is done.

struct warp_slots {
    const void *addr[2][32];
    uint32_t reg[2][32][6];
    float f[2][32];
};
static warp_slots slots[32];

static inline int lane_id(void) { return (int)(emu_cur->tid.x & 31); }
static inline warp_slots &my_warp(void) { return slots[emu_cur->tid.x >> 5]; }
static inline int publish_bank(void) { return (int)(emu_cur->cseq++ & 1); }

void __syncwarp(unsigned) { wait_state(WAIT_WARP); }

float __shfl_xor_sync(unsigned, float v, int lane_mask) {
    warp_slots &w = my_warp();
    const int b = publish_bank(), l = lane_id();
    w.f[b][l] = v;
    wait_state(WAIT_WARP);
    return w.f[b][(l ^ lane_mask) & 31];
}
int __shfl_xor_sync(unsigned mask, int v, int lane_mask) {
    float f;
    memcpy(&f, &v, 4);
    f = __shfl_xor_sync(mask, f, lane_mask);
    memcpy(&v, &f, 4);
    return v;
}
float __shfl_sync(unsigned, float v, int src_lane) {
    warp_slots &w = my_warp();
    const int b = publish_bank(), l = lane_id();
    w.f[b][l] = v;
    wait_state(WAIT_WARP);
    return w.f[b][src_lane & 31];
}

static void check_smem(const void *p, size_t bytes, size_t align, const char *what) {
    const unsigned char *c = (const unsigned char *)p;
    if ((uintptr_t)p % align) {
        char msg[96];
        snprintf(msg, sizeof msg, "%s: address not %zu-byte aligned", what, align);
        emu_fail(msg);
    }
    if (c < smem_buf || c + bytes > smem_buf + smem_size) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s: %zu bytes at offset %td outside the block's %zu bytes of shared memory", what,
                 bytes, c - smem_buf, smem_size);
        emu_fail(msg);
    }
}

uint32_t smem_addr(const void *p) { return (uint32_t)((const unsigned char *)p - smem_buf); }

// A cp.async of n bytes: the source read now, the destination written when its group is waited for.
static void defer_copy(void *smem, const void *gmem, int n) {
    char what[48];
    snprintf(what, sizeof what, "cp.async %d", n);
    check_smem(smem, (size_t)n, (size_t)n, what);
    if ((uintptr_t)gmem % (uintptr_t)n) emu_fail("cp.async: global address not aligned to the copy's size");
    emu_copy c;
    c.dst = smem, c.n = n, c.group = emu_cur->groups;
    memcpy(c.bytes, gmem, (size_t)n);
    emu_cur->pend.push_back(c);
}
void cp_async16(void *smem, const void *gmem) { defer_copy(smem, gmem, 16); }
void cp_async4(void *smem, const void *gmem) { defer_copy(smem, gmem, 4); }
void cp_async_commit(void) { emu_cur->groups++; }
void emu_cp_async_wait(int n) { land(emu_cur, emu_cur->groups - n); }

static inline uint16_t b16_at(const void *row, int e) {
    uint16_t v;
    memcpy(&v, (const unsigned char *)row + 2 * e, 2);
    return v;
}

// ldmatrix.m8n8.x4: lane 8m + i gives the address of row i of matrix m (8 consecutive b16); lane L receives
// in r[m] matrix m's elements (L / 4, 2 (L % 4)) and (L / 4, 2 (L % 4) + 1), low half first; .trans gives the
// transposed matrix's.
static void ldmatrix(uint32_t *r, const void *p, bool trans) {
    check_smem(p, 16, 16, "ldmatrix row");
    warp_slots &w = my_warp();
    const int b = publish_bank(), l = lane_id(), g = l >> 2, t = l & 3;
    w.addr[b][l] = p;
    wait_state(WAIT_WARP);
    for (int m = 0; m < 4; m++) {
        uint16_t lo, hi;
        if (!trans) {
            lo = b16_at(w.addr[b][8 * m + g], 2 * t), hi = b16_at(w.addr[b][8 * m + g], 2 * t + 1);
        } else {
            lo = b16_at(w.addr[b][8 * m + 2 * t], g), hi = b16_at(w.addr[b][8 * m + 2 * t + 1], g);
        }
        r[m] = (uint32_t)lo | ((uint32_t)hi << 16);
    }
}
void ldmatrix_x4(uint32_t *r, const __nv_bfloat16 *p) { ldmatrix(r, p, false); }
void ldmatrix_x4_trans(uint32_t *r, const __nv_bfloat16 *p) { ldmatrix(r, p, true); }
void ldsm_x4(uint32_t *r, uint32_t addr) { ldmatrix(r, (const __nv_bfloat16 *)(smem_buf + addr), false); }
void ldsm_x4_trans(uint32_t *r, uint32_t addr) { ldmatrix(r, (const __nv_bfloat16 *)(smem_buf + addr), true); }

static inline float bf_lo(uint32_t x) { return __bfloat162float(__nv_bfloat16{(uint16_t)(x & 0xffff)}); }
static inline float bf_hi(uint32_t x) { return __bfloat162float(__nv_bfloat16{(uint16_t)(x >> 16)}); }
static inline float f_of(uint32_t x) {
    float f;
    memcpy(&f, &x, 4);
    return f;
}

// mma.m16n8k16 (bf16, fp32 accumulators). Lane L (g = L / 4, t = L % 4) holds A(g, 2t..2t+1) in a[0],
// A(g+8, 2t..) in a[1], A(g, 2t+8..) in a[2], A(g+8, 2t+8..) in a[3]; B(2t..2t+1, g) in b0, B(2t+8.., g) in
// b1; and C / D (g, 2t), (g, 2t+1), (g+8, 2t), (g+8, 2t+1) in c[0..3].
void mma_bf16(float *c, const uint32_t *a, uint32_t b0, uint32_t b1) {
    warp_slots &w = my_warp();
    const int b = publish_bank(), l = lane_id(), g = l >> 2, t = l & 3;
    for (int i = 0; i < 4; i++) w.reg[b][l][i] = a[i];
    w.reg[b][l][4] = b0, w.reg[b][l][5] = b1;
    wait_state(WAIT_WARP);
    auto A = [&](int row, int k) { // from the lane holding it
        const int gl = row & 7, hi_row = row >> 3, kt = (k & 7) >> 1, hi_k = k >> 3;
        const uint32_t x = w.reg[b][4 * gl + kt][hi_row + 2 * hi_k];
        return (k & 1) ? bf_hi(x) : bf_lo(x);
    };
    auto B = [&](int k, int col) {
        const int kt = (k & 7) >> 1, hi_k = k >> 3;
        const uint32_t x = w.reg[b][4 * col + kt][4 + hi_k];
        return (k & 1) ? bf_hi(x) : bf_lo(x);
    };
    const int rows[4] = {g, g, g + 8, g + 8}, cols[4] = {2 * t, 2 * t + 1, 2 * t, 2 * t + 1};
    for (int e = 0; e < 4; e++) {
        double s = 0.0;
        for (int k = 0; k < 16; k++) s += (double)A(rows[e], k) * (double)B(k, cols[e]);
        c[e] = (float)((double)c[e] + s);
    }
}

// ----------------------------------------------------------------------------------------------------
// events and the backend context

struct emu_event {
    double t;
};
static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}
cudaError_t cudaEventCreate(cudaEvent_t *e) { return *e = new emu_event{0.0}, cudaSuccess; }
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) { return e->t = now_ms(), cudaSuccess; }
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t a, cudaEvent_t b) { return *ms = (float)(b->t - a->t), cudaSuccess; }
cudaError_t cudaEventDestroy(cudaEvent_t e) { return delete e, cudaSuccess; }
