// gemv_variants.cu: standalone GEMV experiments for decode at the Qwen2.5-1.5B shape (not built by meson):
// nvcc -O3 -std=c++17 -gencode arch=compute_90,code=sm_90 tests/gpu/gemv_variants.cu -o /tmp/gb && /tmp/gb
// v0 = the kernel of kernels/cuda/matmul.cu before PDL; v1 = all weight words loaded first (before
// griddepcontrol.wait with +pdl); v2 = persistent blocks walking columns with the next column prefetched;
// each shape alone x 28 layers and the whole step (28 layers + LM head) as one CUDA graph, then a sweep
// of warps per column.
// Measured on an H100 80GB HBM3 (1980 MHz; a plain read of the 3.09 GB step: 3090 GB/s): the whole step
// v0 1275 us (2421 GB/s), v0+pdl 1238 (2495), v1 1269, v1+pdl 1273, v2 (2 blocks per SM) 1265, v2+pdl
// 1242, v2 with 4 or 8 per SM 1296-1355. Neither loading all words first nor persistent blocks beats the
// current kernel with PDL (81% of the plain read). Best warps per column (+pdl): qkv 2-4, o 4, gate/up 2,
// down 4, against matmul.cu's rule 2, 2, 2, 8 (it depends on the input width alone, which keeps a fused
// product's bits equal to the separate ones'): ~22 us a step (1.2%) left there. A decode step at 540-575
// tok/s is 1.74-1.85 ms: the GEMVs are ~1.24 ms of it, the rest attention, norms and launch gaps
// (tests/gpu/decode_profile.sh).
#include <cuda_bf16.h>
#include <cstdio>
#include <cstdlib>
#include <vector>
typedef __nv_bfloat16 bf16;
#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { printf("%s:%d %s\n", __FILE__, __LINE__, cudaGetErrorString(e)); exit(1); } } while (0)
union bf16x8 { uint4 u; bf16 h[8]; };
__device__ __forceinline__ float bf2f(bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ void pdl_wait() { asm volatile("griddepcontrol.wait;" ::: "memory"); }
__device__ __forceinline__ void pdl_launch() { asm volatile("griddepcontrol.launch_dependents;" :::); }
#define WARPS 8

// The end of v0 and v1: the lane sums reduced in the warp, the wpr warps of column o added in order.
__device__ __forceinline__ void column_out(float acc, float *red, bf16 *out, int64_t o, int64_t O, int lane, int warp,
                                           int part, int wpr) {
    for (int d = 16; d > 0; d >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, d);
    if (lane == 0) red[warp] = acc;
    __syncthreads();
    if (part == 0 && lane == 0 && o < O) {
        float v = 0; for (int p = 0; p < wpr; p++) v += red[warp + p];
        out[o] = __float2bfloat16(v);
    }
}

// V0: the current kernel (N = 1)
template <bool PDL>
__global__ void __launch_bounds__(256) v0(const bf16 *w, const bf16 *x, bf16 *out, int64_t I, int64_t O, int wpr) {
    __shared__ float red[WARPS];
    if (PDL) { pdl_launch(); pdl_wait(); }
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, part = warp % wpr;
    const int64_t o = (int64_t)blockIdx.x * (WARPS / wpr) + warp / wpr;
    const int64_t I8 = I / 8;
    float acc = 0;
    if (o < O) {
        const uint4 *wr = (const uint4 *)(w + o * I);
#pragma unroll 4
        for (int64_t c = (int64_t)part * 32 + lane; c < I8; c += 32 * wpr) {
            bf16x8 wv, xv; wv.u = __ldg(wr + c); xv.u = __ldg((const uint4 *)x + c);
#pragma unroll
            for (int i = 0; i < 8; i++) acc += bf2f(wv.h[i]) * bf2f(xv.h[i]);
        }
    }
    column_out(acc, red, out, o, O, lane, warp, part, wpr);
}

// V1: all of a lane's weight loads issued first (L per lane, compile time), PDL: the weights are loaded before
// waiting for the previous kernel (they do not depend on it), x after.
template <int L, bool PDL>
__global__ void __launch_bounds__(256) v1(const bf16 *w, const bf16 *x, bf16 *out, int64_t I, int64_t O, int wpr) {
    __shared__ float red[WARPS];
    if (PDL) pdl_launch();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, part = warp % wpr;
    const int64_t o = (int64_t)blockIdx.x * (WARPS / wpr) + warp / wpr;
    const int64_t I8 = I / 8;
    bf16x8 wv[L];
    const uint4 *wr = (const uint4 *)(w + (o < O ? o : 0) * I);
#pragma unroll
    for (int k = 0; k < L; k++) {
        const int64_t c = (int64_t)part * 32 + lane + (int64_t)k * 32 * wpr;
        wv[k].u = c < I8 ? __ldg(wr + c) : make_uint4(0, 0, 0, 0);
    }
    if (PDL) pdl_wait();
    float acc = 0;
#pragma unroll
    for (int k = 0; k < L; k++) {
        const int64_t c = (int64_t)part * 32 + lane + (int64_t)k * 32 * wpr;
        if (c < I8) {
            bf16x8 xv; xv.u = __ldg((const uint4 *)x + c);
#pragma unroll
            for (int i = 0; i < 8; i++) acc += bf2f(wv[k].h[i]) * bf2f(xv.h[i]);
        }
    }
    column_out(acc, red, out, o, O, lane, warp, part, wpr);
}

// V2: persistent: grid = resident blocks; each warp group walks its columns with the next column's weights
// loaded before the current one is reduced; x slice held in registers.
template <int L, bool PDL>
__global__ void __launch_bounds__(256) v2(const bf16 *w, const bf16 *x, bf16 *out, int64_t I, int64_t O, int wpr) {
    __shared__ float red[2][WARPS];
    if (PDL) pdl_launch();
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, part = warp % wpr;
    const int cpb = WARPS / wpr;
    const int64_t I8 = I / 8, stride = (int64_t)gridDim.x * cpb;
    int64_t o = (int64_t)blockIdx.x * cpb + warp / wpr;
    bf16x8 cur[L], nxt[L];
    auto load = [&](bf16x8 *dst, int64_t col) {
        const uint4 *wr = (const uint4 *)(w + (col < O ? col : 0) * I);
#pragma unroll
        for (int k = 0; k < L; k++) {
            const int64_t c = (int64_t)part * 32 + lane + (int64_t)k * 32 * wpr;
            dst[k].u = (c < I8 && col < O) ? __ldg(wr + c) : make_uint4(0, 0, 0, 0);
        }
    };
    load(cur, o);
    if (PDL) pdl_wait();
    float xf[L][8];
#pragma unroll
    for (int k = 0; k < L; k++) {
        const int64_t c = (int64_t)part * 32 + lane + (int64_t)k * 32 * wpr;
        bf16x8 xv; xv.u = c < I8 ? __ldg((const uint4 *)x + c) : make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int i = 0; i < 8; i++) xf[k][i] = bf2f(xv.h[i]);
    }
    int buf = 0;
    for (int64_t base = (int64_t)blockIdx.x * cpb; base < O; base += stride, o += stride) {
        load(nxt, o + stride);
        float acc = 0;
#pragma unroll
        for (int k = 0; k < L; k++)
#pragma unroll
            for (int i = 0; i < 8; i++) acc += bf2f(cur[k].h[i]) * xf[k][i];
        for (int d = 16; d > 0; d >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, d);
        if (wpr == 1) { if (lane == 0 && o < O) out[o] = __float2bfloat16(acc); }
        else {
            if (lane == 0) red[buf][warp] = acc;
            __syncthreads();
            if (part == 0 && lane == 0 && o < O) {
                float v = 0; for (int p = 0; p < wpr; p++) v += red[buf][warp + p];
                out[o] = __float2bfloat16(v);
            }
            buf ^= 1;
        }
#pragma unroll
        for (int k = 0; k < L; k++) cur[k] = nxt[k];
    }
}

__global__ void readall(const uint4 *p, int64_t n, unsigned *sink) {
    unsigned a = 0;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        uint4 v = __ldg(p + i); a ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (a == 0x12345678u) *sink = a;
}

static int wpr_of(int64_t I) { int wpr = 1; while (wpr < WARPS && I / 8 >= 64LL * 2 * wpr) wpr *= 2; return wpr; }
static int nsm;

struct shape { const char *name; int64_t O, I; };
enum { K_V0, K_V1, K_V2 };

static int g_wpr = 0; // override
template <bool PDL>
static void launch(int kind, const bf16 *w, const bf16 *x, bf16 *out, int64_t I, int64_t O, cudaStream_t s, int occ) {
    int wpr = g_wpr ? g_wpr : wpr_of(I), cpb = WARPS / wpr;
    int64_t I8 = I / 8; int L = (int)((I8 + 32 * wpr - 1) / (32 * wpr));
    unsigned grid = (unsigned)((O + cpb - 1) / cpb);
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization; at[0].val.programmaticStreamSerializationAllowed = 1;
    cfg.blockDim = dim3(256); cfg.stream = s; cfg.attrs = at; cfg.numAttrs = PDL ? 1 : 0;
    if (kind == K_V2) { unsigned g = (unsigned)(nsm * occ); if (g < grid) grid = g; }
    cfg.gridDim = dim3(grid);
#define DISP(K) switch (L) { case 1: CK(cudaLaunchKernelEx(&cfg, K<1, PDL>, w, x, out, I, O, wpr)); break; \
    case 2: CK(cudaLaunchKernelEx(&cfg, K<2, PDL>, w, x, out, I, O, wpr)); break; \
    case 3: CK(cudaLaunchKernelEx(&cfg, K<3, PDL>, w, x, out, I, O, wpr)); break; \
    case 4: CK(cudaLaunchKernelEx(&cfg, K<4, PDL>, w, x, out, I, O, wpr)); break; \
    case 5: CK(cudaLaunchKernelEx(&cfg, K<5, PDL>, w, x, out, I, O, wpr)); break; \
    case 6: CK(cudaLaunchKernelEx(&cfg, K<6, PDL>, w, x, out, I, O, wpr)); break; \
    default: printf("L %d\n", L); exit(1); }
    if (kind == K_V0) CK(cudaLaunchKernelEx(&cfg, v0<PDL>, w, x, out, I, O, wpr));
    else if (kind == K_V1) { DISP(v1) }
    else { DISP(v2) }
}

int main() {
    CK(cudaDeviceGetAttribute(&nsm, cudaDevAttrMultiProcessorCount, 0));
    cudaDeviceProp pr; CK(cudaGetDeviceProperties(&pr, 0));
    printf("%s, %d SMs\n", pr.name, nsm);
    const int NL = 28;
    shape sh[] = {{"qkv", 2048, 1536}, {"o", 1536, 1536}, {"gate+up", 17920, 1536}, {"down", 1536, 8960}};
    const int NS = 4;
    size_t per_layer = 0; for (int s = 0; s < NS; s++) per_layer += sh[s].O * sh[s].I;
    size_t head = (size_t)151936 * 1536;
    size_t total = per_layer * NL + head;
    bf16 *W; CK(cudaMalloc(&W, total * 2)); CK(cudaMemset(W, 0x3c, total * 2));
    bf16 *x, *out; CK(cudaMalloc(&x, 8960 * 2 * 4)); CK(cudaMemset(x, 0x3c, 8960 * 8));
    CK(cudaMalloc(&out, 151936 * 2 * 8));
    unsigned *sink; CK(cudaMalloc(&sink, 4));
    cudaStream_t s; CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
    // streaming read of everything
    for (int r = 0; r < 3; r++) {
        cudaEventRecord(e0, s); readall<<<nsm * 8, 256, 0, s>>>((const uint4 *)W, (int64_t)(total * 2 / 16), sink); cudaEventRecord(e1, s);
        CK(cudaEventSynchronize(e1)); float ms; cudaEventElapsedTime(&ms, e0, e1);
        if (r == 2) printf("read all %.2f GB: %.3f ms = %.0f GB/s\n", total * 2e-9, ms, total * 2e-6 / ms);
    }
    auto bench = [&](const char *label, auto body, size_t bytes) {
        cudaGraph_t g; cudaGraphExec_t ge;
        CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal)); body(); CK(cudaStreamEndCapture(s, &g));
        CK(cudaGraphInstantiate(&ge, g, 0));
        for (int r = 0; r < 3; r++) CK(cudaGraphLaunch(ge, s));
        CK(cudaStreamSynchronize(s));
        const int R = 20;
        cudaEventRecord(e0, s); for (int r = 0; r < R; r++) CK(cudaGraphLaunch(ge, s)); cudaEventRecord(e1, s);
        CK(cudaEventSynchronize(e1)); float ms; cudaEventElapsedTime(&ms, e0, e1); ms /= R;
        printf("%-34s %8.1f us  %6.0f GB/s\n", label, ms * 1e3, bytes / (ms * 1e6));
        cudaGraphExecDestroy(ge); cudaGraphDestroy(g);
    };
    const char *kn[] = {"v0", "v1", "v2"};
    for (int kind = 0; kind < 3; kind++)
        for (int pdl = 0; pdl < 2; pdl++)
            for (int occ = (kind == K_V2 ? 2 : 0); occ <= (kind == K_V2 ? 8 : 0); occ *= 2) {
                char lab[96];
                // each shape alone, 28 layers
                for (int si = 0; si < NS; si++) {
                    size_t off = 0; for (int t = 0; t < si; t++) off += sh[t].O * sh[t].I;
                    snprintf(lab, sizeof lab, "%s%s occ%d %s x28", kn[kind], pdl ? "+pdl" : "", occ, sh[si].name);
                    bench(lab, [&] { for (int l = 0; l < NL; l++) {
                        const bf16 *wl = W + l * per_layer + off;
                        if (pdl) launch<true>(kind, wl, x, out, sh[si].I, sh[si].O, s, occ); else launch<false>(kind, wl, x, out, sh[si].I, sh[si].O, s, occ); } },
                        (size_t)NL * sh[si].O * sh[si].I * 2);
                }
                snprintf(lab, sizeof lab, "%s%s occ%d step (28 layers + head)", kn[kind], pdl ? "+pdl" : "", occ);
                bench(lab, [&] { for (int l = 0; l < NL; l++) { size_t off = 0;
                    for (int si = 0; si < NS; si++) { const bf16 *wl = W + l * per_layer + off;
                        if (pdl) launch<true>(kind, wl, x, out, sh[si].I, sh[si].O, s, occ); else launch<false>(kind, wl, x, out, sh[si].I, sh[si].O, s, occ);
                        off += sh[si].O * sh[si].I; } }
                    if (pdl) launch<true>(kind, W + NL * per_layer, x, out, 1536, 151936, s, occ); else launch<false>(kind, W + NL * per_layer, x, out, 1536, 151936, s, occ); },
                    total * 2);
                if (kind != K_V2) break;
            }
    for (int pdl = 0; pdl < 2; pdl++)
        for (int wv = 1; wv <= 8; wv *= 2) {
            g_wpr = wv;
            for (int si = 0; si < NS; si++) {
                size_t off = 0; for (int t = 0; t < si; t++) off += sh[t].O * sh[t].I;
                char lab[96];
                snprintf(lab, sizeof lab, "v0%s wpr%d %s x28", pdl ? "+pdl" : "", wv, sh[si].name);
                bench(lab, [&] { for (int l = 0; l < NL; l++) {
                    const bf16 *wl = W + l * per_layer + off;
                    if (pdl) launch<true>(K_V0, wl, x, out, sh[si].I, sh[si].O, s, 0); else launch<false>(K_V0, wl, x, out, sh[si].I, sh[si].O, s, 0); } },
                    (size_t)NL * sh[si].O * sh[si].I * 2);
            }
        }
    return 0;
}
