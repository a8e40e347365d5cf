// The JetBlock forward on the CPU, step by step as Jet-Nemotron's JetBlock.forward
// (jetai/modeling/hf/jet_block.py, with DynamicShortConvolution of jetai/modeling/hf/dynamic_conv.py):
//
//   q = silu(x Wq^T), k = silu(x Wk^T)                                   no convolution on q and k
//   K_t = w2(silu(w1 x_t)) + b2 as [value_dim, conv_size]               'b t (d w) -> b t d w': tap contiguous
//   v_t[d] = silu(sum_w K_t[d, w] * (x Wv^T)[t - (W-1) + w, d])          zero left padding, per sequence
//   beta = sigmoid(x Wb^T)
//   g = -exp(A_log) * softplus(x Wa^T + dt_bias)   (softplus(z) = z above 20)
//   o = gated delta rule(l2norm(q), l2norm(k), v, g, beta), scale d_k^-1/2   use_qk_l2norm_in_kernel=True
//   o = rmsnorm(o per head over d_v) * o_norm.weight * silu(x Wg^T per head)  FusedRMSNormGated
//   y = o Wo^T
//
// The generated kernels [B, T, value_dim, W] are exactly the layout pn_cpu_conv1d_fwd takes as kdyn.
// Scratch is allocated per call, as in gdn_cpu.c (reference forward for tests and the CPU path).
#include "jet_cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernels/cpu/cpu.h"
#include "../../kernels/cpu/gdn.h"
#include "../pn_common.h"
#include "linear_common.h"

// out [N, n_out] = x [N, n_in] w[n_out, n_in]^T (+ bias[n_out]) through the matmul kernel.
static void linear(float *out, const float *x, const float *w, const float *bias, int64_t N, int64_t n_in,
                   int64_t n_out) {
    pn_tensor to = pn_view(out, PN_F32, PN_CPU, 2, (int64_t[]){N, n_out});
    pn_tensor tx = pn_view((void *)x, PN_F32, PN_CPU, 2, (int64_t[]){N, n_in});
    pn_tensor tw = pn_view((void *)w, PN_F32, PN_CPU, 2, (int64_t[]){n_out, n_in});
    pn_tensor tb = bias ? pn_view((void *)bias, PN_F32, PN_CPU, 1, (int64_t[]){n_out}) : (pn_tensor){0};
    pn_cpu_matmul(&to, &tx, &tw, bias ? &tb : NULL);
}

static float silu(float z) { return z / (1.0f + expf(-z)); }

// torch's F.softplus (beta 1, threshold 20).
static float softplus(float z) { return z > 20.0f ? z : log1pf(expf(z)); }

int pn_jet_layer_forward_cpu(const pn_block_cfg *c, const float *const *params, const float *x, float *y, int64_t B,
                             int64_t T, const int32_t *cu_seqlens, int n_seqs) {
    if (strcmp(c->type, "jet")) return pn_errorf("jet layer: block type '%s' is not jet", c->type);
    const pn_block_type *bt = pn_block_find(c->type);
    if (!bt || bt->check(c, "jet layer")) return -1;
    if (c->hidden < 1) return pn_errorf("jet layer: hidden = %d must be positive", c->hidden);
    if (B < 1 || T < 1) return pn_errorf("jet layer: B = %lld, T = %lld must be positive", (long long)B, (long long)T);

    const pn_lin_dims d = pn_lin_dims_of(c);
    const int64_t Hd = c->hidden, H = c->lin_heads, K = c->lin_head_k, V = d.head_v, N = B * T;
    const int64_t KD = d.key_dim, VD = d.value_dim, R = VD / c->gen_reduction;
    const int W = c->conv_size;

    // The recurrence's config first: it validates cu_seqlens before anything is computed.
    pn_gdn_cfg gc = {.B = B, .T = T, .H = H, .K = K, .V = V, .cu_seqlens = cu_seqlens,
                     .n_seqs = cu_seqlens ? n_seqs : 0, .scale = 0.0f, .qk_l2norm = 1};
    if (pn_gdn_check(&gc)) return -1;

    int i = 0;
    const float *wq = params[i++], *wk = params[i++], *wv = params[i++], *wg = params[i++];
    const float *wa = params[i++], *wb = params[i++], *A_log = params[i++], *dt_bias = params[i++];
    const float *w1 = params[i++], *w2 = params[i++], *b2 = params[i++];
    const float *wn = params[i++], *wo = params[i++];

    float *q = pn_malloc(sizeof(float) * (size_t)(N * KD)), *k = pn_malloc(sizeof(float) * (size_t)(N * KD));
    float *vraw = pn_malloc(sizeof(float) * (size_t)(N * VD)), *v = pn_malloc(sizeof(float) * (size_t)(N * VD));
    float *hgen = pn_malloc(sizeof(float) * (size_t)(N * R));
    float *kdyn = pn_malloc(sizeof(float) * (size_t)(N * VD * W));
    float *gate = pn_malloc(sizeof(float) * (size_t)(N * VD));
    float *o = pn_malloc(sizeof(float) * (size_t)(N * VD)), *on = pn_malloc(sizeof(float) * (size_t)(N * VD));
    float *g = pn_malloc(sizeof(float) * (size_t)(N * H)), *beta = pn_malloc(sizeof(float) * (size_t)(N * H));

    linear(q, x, wq, NULL, N, Hd, KD);
    linear(k, x, wk, NULL, N, Hd, KD);
    for (int64_t r = 0; r < N * KD; r++) q[r] = silu(q[r]), k[r] = silu(k[r]);

    // Dynamic convolution of v: per-token kernels from the generator, then causal conv + SiLU.
    linear(vraw, x, wv, NULL, N, Hd, VD);
    linear(hgen, x, w1, NULL, N, Hd, R);
    for (int64_t r = 0; r < N * R; r++) hgen[r] = silu(hgen[r]);
    linear(kdyn, hgen, w2, b2, N, R, VD * W);
    pn_cpu_conv1d_fwd(v, vraw, NULL, NULL, kdyn, B, T, VD, W, 1, cu_seqlens, n_seqs);

    linear(beta, x, wb, NULL, N, Hd, H);
    for (int64_t r = 0; r < N * H; r++) beta[r] = 1.0f / (1.0f + expf(-beta[r]));
    linear(g, x, wa, NULL, N, Hd, H);
    for (int64_t r = 0; r < N; r++)
        for (int64_t h = 0; h < H; h++) g[r * H + h] = -expf(A_log[h]) * softplus(g[r * H + h] + dt_bias[h]);

    int rc = pn_cpu_gdn_fwd(&gc, q, k, v, g, beta, NULL, o, NULL);
    if (rc == 0) {
        linear(gate, x, wg, NULL, N, Hd, VD);
        pn_cpu_gated_rmsnorm_fwd(on, o, gate, wn, N * H, V, c->norm_eps);
        linear(y, on, wo, NULL, N, VD, Hd);
    }
    float *all[] = {q, k, vraw, v, hgen, kdyn, gate, o, on, g, beta};
    for (size_t j = 0; j < sizeof all / sizeof all[0]; j++) free(all[j]);
    return rc;
}
