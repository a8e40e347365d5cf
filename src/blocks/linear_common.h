// Dimensions and checks shared by the linear-attention blocks (jet, gdn, deltanet), computed the way fla
// and Jet-Nemotron compute them: key_dim = heads * d_k, value_dim = int(key_dim * expand_v),
// d_v = int(d_k * expand_v).
#ifndef PN_BLOCKS_LINEAR_COMMON_H
#define PN_BLOCKS_LINEAR_COMMON_H

#include "../pn_block.h"
#include "../pn_common.h"

typedef struct {
    int64_t key_dim, value_dim, head_v;
} pn_lin_dims;

static inline pn_lin_dims pn_lin_dims_of(const pn_block_cfg *c) {
    pn_lin_dims d;
    d.key_dim = (int64_t)c->lin_heads * c->lin_head_k;
    d.value_dim = (int64_t)((double)d.key_dim * c->expand_v);
    d.head_v = (int64_t)((double)c->lin_head_k * c->expand_v);
    return d;
}

// The limits are the kernels': chunked CUDA kernels hold d_k <= 256 and d_v <= 1024.
static inline int pn_lin_check(const pn_block_cfg *c, const char *what) {
    const pn_lin_dims d = pn_lin_dims_of(c);
    if (c->lin_heads < 1) return pn_errorf("%s: %s.num_heads = %d must be positive", what, c->type, c->lin_heads);
    if (c->lin_head_k < 1 || c->lin_head_k > 256)
        return pn_errorf("%s: %s.head_dim = %d: the kernels support 1..256", what, c->type, c->lin_head_k);
    if (!(c->expand_v > 0) || d.head_v < 1 || d.head_v > 1024)
        return pn_errorf("%s: %s.expand_v = %g gives a value head dim of %lld: the kernels support 1..1024", what,
                         c->type, c->expand_v, (long long)d.head_v);
    if (d.value_dim != d.head_v * c->lin_heads)
        return pn_errorf("%s: %s: num_heads %d does not divide the value dim %lld (expand_v %g)", what, c->type,
                         c->lin_heads, (long long)d.value_dim, c->expand_v);
    if (c->conv_size < 1 || c->conv_size > 64)
        return pn_errorf("%s: %s.conv_size = %d must be 1..64", what, c->type, c->conv_size);
    if (!(c->norm_eps > 0)) return pn_errorf("%s: %s.norm_eps must be positive", what, c->type);
    return 0;
}

// Recurrent state (fp32, heads x d_k x d_v) plus the last conv_size - 1 inputs of each convolution.
static inline size_t pn_lin_state(const pn_block_cfg *c, int64_t conv_channels, int elem) {
    const pn_lin_dims d = pn_lin_dims_of(c);
    return (size_t)c->lin_heads * (size_t)c->lin_head_k * (size_t)d.head_v * 4 +
           (size_t)(c->conv_size - 1) * (size_t)conv_channels * (size_t)elem;
}

// The delta rule per token and head: S^T k, the rank-1 update k u^T, and S^T q — three d_k x d_v products.
static inline double pn_lin_recurrence_flops(const pn_block_cfg *c) {
    return 6.0 * c->lin_heads * (double)c->lin_head_k * (double)pn_lin_dims_of(c).head_v;
}

#endif
