// The Gated DeltaNet layer forward on the CPU, step by step as fla's GatedDeltaNet.forward (mode chunk):
//
//   q = silu(conv_q(x Wq^T)), k = silu(conv_k(x Wk^T)), v = silu(conv_v(x Wv^T))   ShortConvolution, no bias
//   beta = sigmoid(x Wb^T)                                                         use_beta_sigmoid_in_kernel
//   g = -exp(A_log) * softplus(x Wa^T + dt_bias)   (fp32; softplus(z) = z above 20) use_gate_in_kernel
//   o = delta rule(l2norm(q), l2norm(k), v, g, beta), scale d_k^-1/2               use_qk_l2norm_in_kernel
//   o = rmsnorm(o per head over d_v) * o_norm.weight * silu(x Wg^T per head)       FusedRMSNormGated (swish)
//   y = o Wo^T
//
// Heads are laid out "b t (h d) -> b t h d", so the projections' outputs are already [B, T, H, d] and
// feed the kernels without any copy. `deltanet` is the same with g = 0.
//
// Scratch is allocated here per call (and freed before returning). That is acceptable for now: this is
// the reference forward used by tests and the CPU path; the arena-planned version, which keeps the
// activations the backward needs, comes with the model backward.
#include "gdn_cpu.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../kernels/cpu/cpu.h"
#include "../../kernels/cpu/gdn.h"
#include "../pn_common.h"
#include "linear_common.h"

// out [N, n_out] = x [N, n_in] w[n_out, n_in]^T through the matmul kernel.
static void linear(float *out, const float *x, const float *w, int64_t N, int64_t n_in, int64_t n_out) {
    pn_tensor to = pn_view(out, PN_F32, PN_CPU, 2, (int64_t[]){N, n_out});
    pn_tensor tx = pn_view((void *)x, PN_F32, PN_CPU, 2, (int64_t[]){N, n_in});
    pn_tensor tw = pn_view((void *)w, PN_F32, PN_CPU, 2, (int64_t[]){n_out, n_in});
    pn_cpu_matmul(&to, &tx, &tw, NULL);
}

// torch's F.softplus (beta 1, threshold 20), which fla's gate kernel matches.
static float softplus(float z) { return z > 20.0f ? z : log1pf(expf(z)); }

int pn_gdn_layer_forward_cpu(const pn_block_cfg *c, const float *const *params, const float *x, float *y, int64_t B,
                             int64_t T, const int32_t *cu_seqlens, int n_seqs) {
    int decay;
    if (!strcmp(c->type, "gdn")) decay = 1;
    else if (!strcmp(c->type, "deltanet")) decay = 0;
    else return pn_errorf("gdn layer: block type '%s' is not gdn or deltanet", c->type);
    const pn_block_type *bt = pn_block_find(c->type);
    if (!bt || bt->check(c, "gdn layer")) return -1;
    if (c->hidden < 1) return pn_errorf("gdn layer: hidden = %d must be positive", c->hidden);
    if (B < 1 || T < 1) return pn_errorf("gdn layer: B = %lld, T = %lld must be positive", (long long)B, (long long)T);

    const pn_lin_dims d = pn_lin_dims_of(c);
    const int64_t Hd = c->hidden, H = c->lin_heads, K = c->lin_head_k, V = d.head_v, N = B * T;
    const int64_t KD = d.key_dim, VD = d.value_dim;

    // The recurrence's config first: it validates cu_seqlens before anything is computed.
    pn_gdn_cfg gc = {.B = B, .T = T, .H = H, .K = K, .V = V, .cu_seqlens = cu_seqlens,
                     .n_seqs = cu_seqlens ? n_seqs : 0, .scale = 0.0f, .qk_l2norm = 1};
    if (pn_gdn_check(&gc)) return -1;

    int i = 0;
    const float *wq = params[i++], *wk = params[i++], *wv = params[i++];
    const float *wa = decay ? params[i++] : NULL, *wb = params[i++];
    const float *A_log = decay ? params[i++] : NULL, *dt_bias = decay ? params[i++] : NULL;
    const float *cq = params[i++], *ck = params[i++], *cv = params[i++];
    const float *wg = params[i++], *wn = params[i++], *wo = params[i++];

    float *proj = pn_malloc(sizeof(float) * (size_t)(N * (2 * KD + VD))); // projections before the conv
    float *q = pn_malloc(sizeof(float) * (size_t)(N * KD)), *k = pn_malloc(sizeof(float) * (size_t)(N * KD));
    float *v = pn_malloc(sizeof(float) * (size_t)(N * VD)), *gate = pn_malloc(sizeof(float) * (size_t)(N * VD));
    float *o = pn_malloc(sizeof(float) * (size_t)(N * VD)), *on = pn_malloc(sizeof(float) * (size_t)(N * VD));
    float *g = pn_malloc(sizeof(float) * (size_t)(N * H)), *beta = pn_malloc(sizeof(float) * (size_t)(N * H));
    float *pq = proj, *pk = proj + N * KD, *pv = proj + 2 * N * KD;
    const int W = c->conv_size;

    linear(pq, x, wq, N, Hd, KD);
    linear(pk, x, wk, N, Hd, KD);
    linear(pv, x, wv, N, Hd, VD);
    // conv weights [C, 1, W] are [C, W] in memory
    pn_cpu_conv1d_fwd(q, pq, cq, NULL, NULL, B, T, KD, W, 1, cu_seqlens, n_seqs);
    pn_cpu_conv1d_fwd(k, pk, ck, NULL, NULL, B, T, KD, W, 1, cu_seqlens, n_seqs);
    pn_cpu_conv1d_fwd(v, pv, cv, NULL, NULL, B, T, VD, W, 1, cu_seqlens, n_seqs);

    linear(beta, x, wb, N, Hd, H);
    for (int64_t r = 0; r < N * H; r++) beta[r] = 1.0f / (1.0f + expf(-beta[r]));
    if (decay) {
        linear(g, x, wa, N, Hd, H);
        for (int64_t r = 0; r < N; r++)
            for (int64_t h = 0; h < H; h++)
                g[r * H + h] = -expf(A_log[h]) * softplus(g[r * H + h] + dt_bias[h]);
    } else {
        memset(g, 0, sizeof(float) * (size_t)(N * H));
    }

    int rc = pn_cpu_gdn_fwd(&gc, q, k, v, g, beta, NULL, o, NULL);
    if (rc == 0) {
        linear(gate, x, wg, N, Hd, VD);
        pn_cpu_gated_rmsnorm_fwd(on, o, gate, wn, N * H, V, c->norm_eps);
        linear(y, on, wo, N, VD, Hd);
    }
    float *all[] = {proj, q, k, v, gate, o, on, g, beta};
    for (size_t j = 0; j < sizeof all / sizeof all[0]; j++) free(all[j]);
    return rc;
}
