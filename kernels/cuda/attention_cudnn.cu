// attention_cudnn.cu: causal prefill attention (pos0 == 0), plain or with a sliding window, and its backward
// through cuDNN's fused flash-attention engines, built with the cuDNN backend (graph) API in C style (no
// cudnn_frontend). The backward graph is build_bwd_graph's (commented there); what follows is the forward's.
//
// The operation graph is the one cudnn_frontend's CompositeSDPANode builds for SDPA forward in inference
// mode on cuDNN 9.19 (no stats output, no dropout; the composite diagonal-band mask and composite softmax
// are what the frontend emits for backends older than 9.21), op by op:
//   S   = matmul(Q, K^T)                       fp32 compute, S virtual fp32 [B, Hq, T, T]
//   S1  = S * scale                            pointwise MUL, scale a by-value fp32 scalar (D^-1/2)
//   r   = gen_index(S1, axis 2), c = gen_index(S1, axis 3)      virtual INT32
//   m   = r >= c                               pointwise CMP_GE, virtual BOOLEAN
//   S2  = m ? S1 : -inf                        pointwise BINARY_SELECT, -inf a by-value fp32 scalar
//   with a sliding window W (key s visible to query t iff 0 <= t - s < W), the frontend's band after the
//   causal select, with its own indices (it builds no LOGICAL_AND):
//   r2, c2 = gen_index(S2, axis 2 / 3);  cw = c2 + W (W a by-value fp32 scalar);  m2 = cw > r2 (CMP_GT);
//   S2  = m2 ? S2 : -inf
//   M   = reduce_max(S2) [B, Hq, T, 1];  E = exp(S2 - M);  L = reduce_add(E) [B, Hq, T, 1]
//   st  = M + log(L)                           virtual statistics nothing reads, but the matcher needs
//   P   = E / L                                virtual, BF16 (the frontend gives P the I/O type)
//   O   = matmul(P, V)                         fp32 compute, O bf16
// cuDNN pattern-matches this graph onto its flash-attention kernel; nothing of size T x T is materialized.
//
// Layout: tensors are described in cuDNN's [B, H, S, D] order with strides that address our row-major
// [B, T, H, D] activations and [B, cap, Hkv, D] caches directly (no transposes); K is given as K^T
// ([B, Hkv, D, T], the last two strides swapped), as the frontend does. GQA needs nothing more: K and V have
// Hkv heads, Q and O have Hq, and cuDNN maps query head h to kv head h / (Hq / Hkv). The keys' S extent is
// T, so cache rows at or past T (possibly garbage or NaN) are never read.
//
// The decisions to know about: the finalized execution plan is cached per (B, T, Hq, Hkv, D, cap) in a small
// array (round-robin eviction), together with every descriptor it was built from (kept alive for the plan's
// lifetime). A shape cuDNN cannot plan (no handle, heuristics or every plan finalize failing) is reported
// once on stderr and remembered as failed: the entry returns -1 from then on and the caller runs its own
// kernel. A failure after a plan exists (variant pack, execute) is an internal error and panics. One
// handle, created lazily, runs on the legacy default stream like the rest of the backend; one workspace
// buffer grows as plans need. Process-wide state, one GPU per process, not thread-safe (as the backend).
#include <cudnn_graph.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.cuh"

// ----------------------------------------------------------------------------------------------------
// graph construction

// Tensor unique ids: the variant pack's (non-virtual) tensors, then the virtual intermediates.
enum {
    UID_Q = 1,
    UID_K = 2,
    UID_V = 3,
    UID_O = 4,
    UID_SCALE = 5,
    UID_NEG_INF = 6,
    UID_WINDOW = 7, // the sliding window, a by-value fp32 scalar
    UID_S = 101,       // Q K^T
    UID_S_SCALED = 102,
    UID_ROW = 103,     // gen_index axis 2
    UID_COL = 104,     // gen_index axis 3
    UID_MASK = 105,    // row >= col
    UID_S_MASKED = 106,
    UID_MAX = 107,     // row max
    UID_SUB = 108,
    UID_EXP = 109,
    UID_SUM = 110,     // row sum
    UID_P = 111,       // softmax
    UID_LOG = 112,     // log(row sum)
    UID_STATS = 113,   // max + log(sum), virtual (the frontend always builds it)
    // the backward graph's
    UID_DO = 201,
    UID_STATS_IN = 202,  // the forward's softmax statistics (natural log-sum-exp of the scaled scores)
    UID_DQ = 203,
    UID_DK = 204,
    UID_DV = 205,
    UID_ONE = 206,
    UID_SOFTMAX_SUM = 207, // rowsum(dO * O), non-virtual (workspace)
    UID_DQ_ACCUM = 208,    // fp32 dQ, non-virtual (workspace)
    UID_B_DOO = 301,
    UID_B_RED = 302,
    UID_B_S = 303,
    UID_B_S1 = 304,
    UID_B_S2 = 305,
    UID_B_ROW = 306,
    UID_B_COL = 307,
    UID_B_MASK = 308,
    UID_B_S3 = 309,
    UID_B_E = 310,
    UID_B_PT = 311,
    UID_B_DV_FULL = 312,
    UID_B_DP = 313,
    UID_B_X1 = 314,
    UID_B_X2 = 315,
    UID_B_DS = 316,
    UID_B_DST = 317,
    UID_B_DK_FULL = 318,
    UID_B_KR = 319,
    // the sliding window's band (either graph)
    UID_W_ROW = 401,
    UID_W_COL = 402,
    UID_W_COLW = 403, // col + W
    UID_W_MASK = 404, // col + W > row
    UID_W_OUT = 405,  // the banded scores
};

#define MAX_DESC 160 // descriptors one plan keeps alive (about 45 forward, about 100 backward)
#define N_OPS 14 // the forward graph's, without the band
#define N_BAND_OPS 5

// Everything one plan was built from, destroyed together.
typedef struct {
    cudnnBackendDescriptor_t d[MAX_DESC];
    int n;
    char err[512]; // the failing step, set by fail()
} desc_set;

static void desc_set_free(desc_set *s) {
    for (int i = s->n - 1; i >= 0; i--) (void)cudnnBackendDestroyDescriptor(s->d[i]);
    s->n = 0;
}

// Record a failed step (with cuDNN's own last message) and pass the status on.
static cudnnStatus_t fail(desc_set *s, cudnnStatus_t st, const char *fmt, ...) {
    char what[160], last[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    last[0] = '\0';
    cudnnGetLastErrorString(last, sizeof last);
    snprintf(s->err, sizeof s->err, "%s: %s%s%s", what, cudnnGetErrorString(st), last[0] ? "; " : "", last);
    return st;
}

#define TRY(call)                                       \
    do {                                                \
        const cudnnStatus_t st_ = (call);               \
        if (st_ != CUDNN_STATUS_SUCCESS) return st_;    \
    } while (0)

// Set one attribute; on failure name it (and the descriptor's role) in s->err.
#define SET(s, desc, role, attr, type, count, ptr)                                                        \
    do {                                                                                                  \
        const cudnnStatus_t st_ = cudnnBackendSetAttribute((desc), (attr), (type), (int64_t)(count), (ptr)); \
        if (st_ != CUDNN_STATUS_SUCCESS) return fail((s), st_, "%s: set " #attr, (role));                 \
    } while (0)

static cudnnStatus_t create(desc_set *s, cudnnBackendDescriptorType_t type, cudnnBackendDescriptor_t *out,
                            const char *role) {
    *out = NULL;
    if (s->n >= MAX_DESC) pn_panic("cuDNN SDPA: more than %d descriptors for one plan", MAX_DESC);
    const cudnnStatus_t st = cudnnBackendCreateDescriptor(type, out);
    if (st != CUDNN_STATUS_SUCCESS) return fail(s, st, "%s: cudnnBackendCreateDescriptor", role);
    s->d[s->n++] = *out;
    return CUDNN_STATUS_SUCCESS;
}

static cudnnStatus_t finalize(desc_set *s, cudnnBackendDescriptor_t d, const char *role) {
    const cudnnStatus_t st = cudnnBackendFinalize(d);
    if (st != CUDNN_STATUS_SUCCESS) return fail(s, st, "%s: cudnnBackendFinalize", role);
    return CUDNN_STATUS_SUCCESS;
}

// A 4-d tensor descriptor (byte alignment 16, as the frontend's default).
static cudnnStatus_t make_tensor(desc_set *s, cudnnBackendDescriptor_t *t, const char *role, int64_t uid,
                                 cudnnDataType_t dt, const int64_t dims[4], const int64_t strides[4],
                                 bool is_virtual, bool by_value) {
    const int64_t align = 16;
    TRY(create(s, CUDNN_BACKEND_TENSOR_DESCRIPTOR, t, role));
    SET(s, *t, role, CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &dt);
    SET(s, *t, role, CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, 4, dims);
    SET(s, *t, role, CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, 4, strides);
    SET(s, *t, role, CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, 1, &uid);
    SET(s, *t, role, CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, 1, &align);
    if (is_virtual) SET(s, *t, role, CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &is_virtual);
    if (by_value) SET(s, *t, role, CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &by_value);
    return finalize(s, *t, role);
}

// A pointwise operation y = mode(x [, b [, t]]); axis >= 0 only for GEN_INDEX.
static cudnnStatus_t make_pointwise(desc_set *s, cudnnBackendDescriptor_t *op, const char *role,
                                    cudnnPointwiseMode_t mode, cudnnDataType_t prec, int64_t axis,
                                    cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t b,
                                    cudnnBackendDescriptor_t t, cudnnBackendDescriptor_t y) {
    cudnnBackendDescriptor_t pw;
    const float alpha1 = 1.0f, alpha2 = 1.0f;
    TRY(create(s, CUDNN_BACKEND_POINTWISE_DESCRIPTOR, &pw, role));
    SET(s, pw, role, CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &mode);
    SET(s, pw, role, CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, 1, &prec);
    if (axis >= 0) SET(s, pw, role, CUDNN_ATTR_POINTWISE_AXIS, CUDNN_TYPE_INT64, 1, &axis);
    TRY(finalize(s, pw, role));

    TRY(create(s, CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, op, role));
    SET(s, *op, role, CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &pw);
    SET(s, *op, role, CUDNN_ATTR_OPERATION_POINTWISE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x);
    SET(s, *op, role, CUDNN_ATTR_OPERATION_POINTWISE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y);
    if (b) SET(s, *op, role, CUDNN_ATTR_OPERATION_POINTWISE_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b);
    if (t) SET(s, *op, role, CUDNN_ATTR_OPERATION_POINTWISE_TDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &t);
    SET(s, *op, role, CUDNN_ATTR_OPERATION_POINTWISE_ALPHA1, CUDNN_TYPE_FLOAT, 1, &alpha1);
    SET(s, *op, role, CUDNN_ATTR_OPERATION_POINTWISE_ALPHA2, CUDNN_TYPE_FLOAT, 1, &alpha2);
    return finalize(s, *op, role);
}

// c = a b over the last two dims (batch dims broadcast), fp32 compute.
static cudnnStatus_t make_matmul(desc_set *s, cudnnBackendDescriptor_t *op, const char *role,
                                 cudnnBackendDescriptor_t a, cudnnBackendDescriptor_t b,
                                 cudnnBackendDescriptor_t c) {
    cudnnBackendDescriptor_t md;
    const cudnnDataType_t comp = CUDNN_DATA_FLOAT;
    TRY(create(s, CUDNN_BACKEND_MATMUL_DESCRIPTOR, &md, role));
    SET(s, md, role, CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp);
    TRY(finalize(s, md, role));

    TRY(create(s, CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR, op, role));
    SET(s, *op, role, CUDNN_ATTR_OPERATION_MATMUL_ADESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &a);
    SET(s, *op, role, CUDNN_ATTR_OPERATION_MATMUL_BDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &b);
    SET(s, *op, role, CUDNN_ATTR_OPERATION_MATMUL_CDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &c);
    SET(s, *op, role, CUDNN_ATTR_OPERATION_MATMUL_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &md);
    return finalize(s, *op, role);
}

// y = reduce(x) over the dims where y has extent 1, fp32 compute.
static cudnnStatus_t make_reduction(desc_set *s, cudnnBackendDescriptor_t *op, const char *role,
                                    cudnnReduceTensorOp_t mode, cudnnBackendDescriptor_t x,
                                    cudnnBackendDescriptor_t y) {
    cudnnBackendDescriptor_t rd;
    const cudnnDataType_t comp = CUDNN_DATA_FLOAT;
    TRY(create(s, CUDNN_BACKEND_REDUCTION_DESCRIPTOR, &rd, role));
    SET(s, rd, role, CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, 1, &comp);
    SET(s, rd, role, CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &mode);
    if (cudnnGetVersion() >= 91100) { // as the frontend: the attribute exists from 9.11 on
        const bool deterministic = false;
        SET(s, rd, role, CUDNN_ATTR_REDUCTION_IS_DETERMINISTIC, CUDNN_TYPE_BOOLEAN, 1, &deterministic);
    }
    TRY(finalize(s, rd, role));

    TRY(create(s, CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR, op, role));
    SET(s, *op, role, CUDNN_ATTR_OPERATION_REDUCTION_DESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &rd);
    SET(s, *op, role, CUDNN_ATTR_OPERATION_REDUCTION_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x);
    SET(s, *op, role, CUDNN_ATTR_OPERATION_REDUCTION_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y);
    return finalize(s, *op, role);
}

typedef struct {
    int64_t B, T, Hq, Hkv, D, cap;
    int64_t window;         // 0: plain causal; W > 0: keys t - W < s <= t
    int64_t bwd;            // the backward graph
    int64_t sb, sh, st;     // statistics strides over (batch, head, token): the forward's output when st != 0,
                            // the backward's input
} sdpa_key;

// A view operation (CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR): y is x with other dims / strides.
static cudnnStatus_t make_reshape(desc_set *s, cudnnBackendDescriptor_t *op, const char *role,
                                  cudnnBackendDescriptor_t x, cudnnBackendDescriptor_t y) {
    TRY(create(s, CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR, op, role));
    SET(s, *op, role, CUDNN_ATTR_OPERATION_RESHAPE_XDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &x);
    SET(s, *op, role, CUDNN_ATTR_OPERATION_RESHAPE_YDESC, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &y);
    return finalize(s, *op, role);
}

// The sliding window's band over the causally masked scores x (virtual fp32 [B, Hq, T, T], dims / strides
// s_dims, s_str): *y = (c + W > r) ? x : -inf, with the row and column indices generated anew as the
// frontend does, as N_BAND_OPS operations appended at ops[*n]. f32_index: the indices as fp32 tensors (what
// frontends before 1.19 emit) instead of int32 (later ones).
static cudnnStatus_t add_band(desc_set *s, cudnnBackendDescriptor_t *ops, int *n, cudnnBackendDescriptor_t x,
                              cudnnBackendDescriptor_t neg_inf, const int64_t s_dims[4], const int64_t s_str[4],
                              bool f32_index, cudnnBackendDescriptor_t *y) {
    const cudnnDataType_t F32 = CUDNN_DATA_FLOAT, IDX = f32_index ? CUDNN_DATA_FLOAT : CUDNN_DATA_INT32,
                          BOOL_ = CUDNN_DATA_BOOLEAN;
    const int64_t one[4] = {1, 1, 1, 1};
    cudnnBackendDescriptor_t tW, vRow, vCol, vColW, vMask;
    TRY(make_tensor(s, &tW, "window", UID_WINDOW, F32, one, one, false, true));
    TRY(make_tensor(s, &vRow, "band row index", UID_W_ROW, IDX, s_dims, s_str, true, false));
    TRY(make_tensor(s, &vCol, "band col index", UID_W_COL, IDX, s_dims, s_str, true, false));
    TRY(make_tensor(s, &vColW, "col + window", UID_W_COLW, F32, s_dims, s_str, true, false));
    TRY(make_tensor(s, &vMask, "col + window > row", UID_W_MASK, BOOL_, s_dims, s_str, true, false));
    TRY(make_tensor(s, y, "banded scores", UID_W_OUT, F32, s_dims, s_str, true, false));
    TRY(make_pointwise(s, &ops[(*n)++], "band gen_row_index", CUDNN_POINTWISE_GEN_INDEX, F32, 2, x, NULL, NULL, vRow));
    TRY(make_pointwise(s, &ops[(*n)++], "band gen_col_index", CUDNN_POINTWISE_GEN_INDEX, F32, 3, x, NULL, NULL, vCol));
    TRY(make_pointwise(s, &ops[(*n)++], "col + window (ADD)", CUDNN_POINTWISE_ADD, F32, -1, vCol, tW, NULL, vColW));
    TRY(make_pointwise(s, &ops[(*n)++], "col + window > row (CMP_GT)", CUDNN_POINTWISE_CMP_GT, BOOL_, -1, vColW, vRow,
                       NULL, vMask));
    return make_pointwise(s, &ops[(*n)++], "band mask (BINARY_SELECT)", CUDNN_POINTWISE_BINARY_SELECT, F32, -1, x,
                          neg_inf, vMask, *y);
}

// Which index type the band's graph is built with (add_band's f32_index): get_plan tries the other when
// cuDNN finds no engine for the first.
static bool g_band_f32_index = false;

// The finalized operation graph of one shape (descriptors kept in s).
static cudnnStatus_t build_graph(desc_set *s, cudnnHandle_t handle, const sdpa_key *k,
                                 cudnnBackendDescriptor_t *graph) {
    const int64_t B = k->B, T = k->T, Hq = k->Hq, Hkv = k->Hkv, D = k->D, cap = k->cap;
    const cudnnDataType_t DT_BF16 = CUDNN_DATA_BFLOAT16, DT_F32 = CUDNN_DATA_FLOAT, DT_I32 = CUDNN_DATA_INT32,
                          DT_BOOL = CUDNN_DATA_BOOLEAN;

    // I/O tensors in [B, H, S, D] order over the row-major [B, T, H, D] / [B, cap, Hkv, D] memory.
    const int64_t q_dims[4] = {B, Hq, T, D}, q_str[4] = {T * Hq * D, D, Hq * D, 1};
    const int64_t kt_dims[4] = {B, Hkv, D, T}, kt_str[4] = {cap * Hkv * D, D, 1, Hkv * D}; // K^T
    const int64_t v_dims[4] = {B, Hkv, T, D}, v_str[4] = {cap * Hkv * D, D, Hkv * D, 1};
    const int64_t one[4] = {1, 1, 1, 1};
    // Scores [B, Hq, T, T] (row-major) and row statistics [B, Hq, T, 1].
    const int64_t s_dims[4] = {B, Hq, T, T}, s_str[4] = {Hq * T * T, T * T, T, 1};
    const int64_t r_dims[4] = {B, Hq, T, 1}, r_str[4] = {Hq * T, T, 1, 1};

    // What cuDNN 9.19's fused-attention matcher needs, found on an H100: the softmax statistics subgraph
    // (LOG of the row sum, ADD to the row max) must be present even though nothing reads it — the
    // frontend always builds it — and P must be bf16 (with fp32 P or without the statistics, heuristics
    // return no engine: "tag_mha_graph ... Dropout set of ops not configured correctly").
    cudnnBackendDescriptor_t tQ, tK, tV, tO, tScale, tNegInf, tS, tS1, tRow, tCol, tMask, tS2, tMax, tSub, tExp,
        tSum, tP, tLog, tStats;
    TRY(make_tensor(s, &tQ, "Q", UID_Q, DT_BF16, q_dims, q_str, false, false));
    TRY(make_tensor(s, &tK, "K^T", UID_K, DT_BF16, kt_dims, kt_str, false, false));
    TRY(make_tensor(s, &tV, "V", UID_V, DT_BF16, v_dims, v_str, false, false));
    TRY(make_tensor(s, &tO, "O", UID_O, DT_BF16, q_dims, q_str, false, false));
    TRY(make_tensor(s, &tScale, "attn_scale", UID_SCALE, DT_F32, one, one, false, true));
    TRY(make_tensor(s, &tNegInf, "-inf", UID_NEG_INF, DT_F32, one, one, false, true));
    TRY(make_tensor(s, &tS, "S = Q K^T", UID_S, DT_F32, s_dims, s_str, true, false));
    TRY(make_tensor(s, &tS1, "S * scale", UID_S_SCALED, DT_F32, s_dims, s_str, true, false));
    TRY(make_tensor(s, &tRow, "row index", UID_ROW, DT_I32, s_dims, s_str, true, false));
    TRY(make_tensor(s, &tCol, "col index", UID_COL, DT_I32, s_dims, s_str, true, false));
    TRY(make_tensor(s, &tMask, "row >= col", UID_MASK, DT_BOOL, s_dims, s_str, true, false));
    TRY(make_tensor(s, &tS2, "masked S", UID_S_MASKED, DT_F32, s_dims, s_str, true, false));
    TRY(make_tensor(s, &tMax, "row max", UID_MAX, DT_F32, r_dims, r_str, true, false));
    TRY(make_tensor(s, &tSub, "S - max", UID_SUB, DT_F32, s_dims, s_str, true, false));
    TRY(make_tensor(s, &tExp, "exp(S - max)", UID_EXP, DT_F32, s_dims, s_str, true, false));
    TRY(make_tensor(s, &tSum, "row sum", UID_SUM, DT_F32, r_dims, r_str, true, false));
    TRY(make_tensor(s, &tP, "P (softmax)", UID_P, DT_BF16, s_dims, s_str, true, false));
    TRY(make_tensor(s, &tLog, "log(row sum)", UID_LOG, DT_F32, r_dims, r_str, true, false));
    const int64_t st_str[4] = {k->sb, k->sh, k->st, 1}; // when kept: the caller's layout
    if (k->st) TRY(make_tensor(s, &tStats, "softmax stats", UID_STATS, DT_F32, r_dims, st_str, false, false));
    else TRY(make_tensor(s, &tStats, "softmax stats", UID_STATS, DT_F32, r_dims, r_str, true, false));

    cudnnBackendDescriptor_t ops[N_OPS + N_BAND_OPS];
    int n = 0;
    TRY(make_matmul(s, &ops[n++], "bmm1 (Q K^T)", tQ, tK, tS));
    TRY(make_pointwise(s, &ops[n++], "attn_scale (MUL)", CUDNN_POINTWISE_MUL, DT_F32, -1, tS, tScale, NULL, tS1));
    TRY(make_pointwise(s, &ops[n++], "gen_row_index", CUDNN_POINTWISE_GEN_INDEX, DT_F32, 2, tS1, NULL, NULL, tRow));
    TRY(make_pointwise(s, &ops[n++], "gen_col_index", CUDNN_POINTWISE_GEN_INDEX, DT_F32, 3, tS1, NULL, NULL, tCol));
    TRY(make_pointwise(s, &ops[n++], "row >= col (CMP_GE)", CUDNN_POINTWISE_CMP_GE, DT_BOOL, -1, tRow, tCol, NULL,
                       tMask));
    TRY(make_pointwise(s, &ops[n++], "causal mask (BINARY_SELECT)", CUDNN_POINTWISE_BINARY_SELECT, DT_F32, -1, tS1,
                       tNegInf, tMask, tS2));
    if (k->window > 0) TRY(add_band(s, ops, &n, tS2, tNegInf, s_dims, s_str, g_band_f32_index, &tS2));
    TRY(make_reduction(s, &ops[n++], "softmax max (REDUCTION MAX)", CUDNN_REDUCE_TENSOR_MAX, tS2, tMax));
    TRY(make_pointwise(s, &ops[n++], "softmax SUB", CUDNN_POINTWISE_SUB, DT_F32, -1, tS2, tMax, NULL, tSub));
    TRY(make_pointwise(s, &ops[n++], "softmax EXP", CUDNN_POINTWISE_EXP, DT_F32, -1, tSub, NULL, NULL, tExp));
    TRY(make_reduction(s, &ops[n++], "softmax sum (REDUCTION ADD)", CUDNN_REDUCE_TENSOR_ADD, tExp, tSum));
    TRY(make_pointwise(s, &ops[n++], "softmax LOG", CUDNN_POINTWISE_LOG, DT_F32, -1, tSum, NULL, NULL, tLog));
    TRY(make_pointwise(s, &ops[n++], "softmax stats ADD", CUDNN_POINTWISE_ADD, DT_F32, -1, tMax, tLog, NULL, tStats));
    TRY(make_pointwise(s, &ops[n++], "softmax DIV", CUDNN_POINTWISE_DIV, DT_F32, -1, tExp, tSum, NULL, tP));
    TRY(make_matmul(s, &ops[n++], "bmm2 (P V)", tP, tV, tO));
    PN_ASSERT(n == N_OPS + (k->window > 0 ? N_BAND_OPS : 0));

    TRY(create(s, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, graph, "operation graph"));
    SET(s, *graph, "operation graph", CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, n, ops);
    SET(s, *graph, "operation graph", CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
    return finalize(s, *graph, "operation graph");
}

// The backward graph: cudnn_frontend's CompositeSDPABackwardNode for causal attention without dropout, op
// by op (the statistics come from the forward; softmax_sum and the fp32 dQ accumulator are non-virtual
// tensors the caller places in memory):
//   softmax_sum = reduce_add(dO * O) * 1           [B, Hq, T, 1]
//   S = Q K^T;  S1 = S * scale;  S2 = S1 - stats;  S3 = causal mask (row >= col ? S2 : -inf), then the
//   forward's band with a sliding window;  E = exp(S3)
//   dV = reduce over the group(reshape(E)^T dO)    (P^T as a [B, Hq, Tk, Tq] bf16 view)
//   dP = dO V^T;  dS = (dP - softmax_sum) * E * scale
//   dK = reduce over the group(reshape(dS)^T Q);   dQ_accum = dS K (fp32);  dQ = identity(dQ_accum)
static cudnnStatus_t build_bwd_graph(desc_set *s, cudnnHandle_t handle, const sdpa_key *k,
                                     cudnnBackendDescriptor_t *graph) {
    const int64_t B = k->B, T = k->T, Hq = k->Hq, Hkv = k->Hkv, D = k->D;
    const cudnnDataType_t BF = CUDNN_DATA_BFLOAT16, F32 = CUDNN_DATA_FLOAT, I32 = CUDNN_DATA_INT32,
                          BOOL_ = CUDNN_DATA_BOOLEAN;
    const bool gqa = Hq != Hkv;
    // row-major [B, T, H, D] memory seen as [B, H, S, D]
    const int64_t q_dims[4] = {B, Hq, T, D}, q_str[4] = {T * Hq * D, D, Hq * D, 1};
    const int64_t kv_dims[4] = {B, Hkv, T, D}, kv_str[4] = {T * Hkv * D, D, Hkv * D, 1};
    const int64_t kt_dims[4] = {B, Hkv, D, T}, kt_str[4] = {T * Hkv * D, D, 1, Hkv * D};
    const int64_t st_dims[4] = {B, Hq, T, 1}, st_str[4] = {k->sb, k->sh, k->st, 1};
    const int64_t r_str[4] = {Hq * T, T, 1, 1};
    const int64_t s_dims[4] = {B, Hq, T, T}, s_str[4] = {Hq * T * T, T * T, T, 1};
    const int64_t sT_str[4] = {Hq * T * T, T * T, 1, T}; // the same [B, Hq, T, T] transposed
    const int64_t full_dims[4] = {B, Hq, T, D}, full_str[4] = {Hq * T * D, T * D, D, 1};
    const int64_t one[4] = {1, 1, 1, 1};

    cudnnBackendDescriptor_t tQ, tKt, tVt, tO, tdO, tSt, tdQ, tdK, tdV, tScale, tOne, tNegInf, tSum, tAcc;
    TRY(make_tensor(s, &tQ, "Q", UID_Q, BF, q_dims, q_str, false, false));
    TRY(make_tensor(s, &tKt, "K^T", UID_K, BF, kt_dims, kt_str, false, false));
    TRY(make_tensor(s, &tVt, "V^T", UID_V, BF, kt_dims, kt_str, false, false));
    TRY(make_tensor(s, &tO, "O", UID_O, BF, q_dims, q_str, false, false));
    TRY(make_tensor(s, &tdO, "dO", UID_DO, BF, q_dims, q_str, false, false));
    TRY(make_tensor(s, &tSt, "stats", UID_STATS_IN, F32, st_dims, st_str, false, false));
    TRY(make_tensor(s, &tdQ, "dQ", UID_DQ, BF, q_dims, q_str, false, false));
    TRY(make_tensor(s, &tdK, "dK", UID_DK, BF, kv_dims, kv_str, false, false));
    TRY(make_tensor(s, &tdV, "dV", UID_DV, BF, kv_dims, kv_str, false, false));
    TRY(make_tensor(s, &tScale, "attn_scale", UID_SCALE, F32, one, one, false, true));
    TRY(make_tensor(s, &tOne, "one", UID_ONE, F32, one, one, false, true));
    TRY(make_tensor(s, &tNegInf, "-inf", UID_NEG_INF, F32, one, one, false, true));
    TRY(make_tensor(s, &tSum, "softmax_sum", UID_SOFTMAX_SUM, F32, st_dims, r_str, false, false));
    TRY(make_tensor(s, &tAcc, "dQ_accum", UID_DQ_ACCUM, F32, q_dims, full_str, false, false));

    cudnnBackendDescriptor_t vDOO, vRed, vS, vS1, vS2, vRow, vCol, vMask, vS3, vE, vPt, vDvFull, vDP, vX1, vX2, vDS,
        vDSt, vDkFull, vKr;
    TRY(make_tensor(s, &vDOO, "dO * O", UID_B_DOO, F32, q_dims, full_str, true, false));
    TRY(make_tensor(s, &vRed, "rowsum(dO * O)", UID_B_RED, F32, st_dims, r_str, true, false));
    TRY(make_tensor(s, &vS, "S = Q K^T", UID_B_S, F32, s_dims, s_str, true, false));
    TRY(make_tensor(s, &vS1, "S * scale", UID_B_S1, F32, s_dims, s_str, true, false));
    TRY(make_tensor(s, &vS2, "S - stats", UID_B_S2, F32, s_dims, s_str, true, false));
    TRY(make_tensor(s, &vRow, "row index", UID_B_ROW, I32, s_dims, s_str, true, false));
    TRY(make_tensor(s, &vCol, "col index", UID_B_COL, I32, s_dims, s_str, true, false));
    TRY(make_tensor(s, &vMask, "row >= col", UID_B_MASK, BOOL_, s_dims, s_str, true, false));
    TRY(make_tensor(s, &vS3, "masked", UID_B_S3, F32, s_dims, s_str, true, false));
    TRY(make_tensor(s, &vE, "P = exp", UID_B_E, F32, s_dims, s_str, true, false));
    const int64_t sT_dims[4] = {B, Hq, T, T};
    TRY(make_tensor(s, &vPt, "P^T", UID_B_PT, BF, sT_dims, sT_str, true, false));
    if (gqa) TRY(make_tensor(s, &vDvFull, "dV per query head", UID_B_DV_FULL, BF, full_dims, full_str, true, false));
    TRY(make_tensor(s, &vDP, "dP = dO V^T", UID_B_DP, F32, s_dims, s_str, true, false));
    TRY(make_tensor(s, &vX1, "dP - softmax_sum", UID_B_X1, F32, s_dims, s_str, true, false));
    TRY(make_tensor(s, &vX2, "* P", UID_B_X2, F32, s_dims, s_str, true, false));
    TRY(make_tensor(s, &vDS, "dS", UID_B_DS, F32, s_dims, s_str, true, false));
    TRY(make_tensor(s, &vDSt, "dS^T", UID_B_DST, BF, sT_dims, sT_str, true, false));
    if (gqa) TRY(make_tensor(s, &vDkFull, "dK per query head", UID_B_DK_FULL, BF, full_dims, full_str, true, false));
    TRY(make_tensor(s, &vKr, "K", UID_B_KR, BF, kv_dims, kv_str, true, false));

    cudnnBackendDescriptor_t ops[24 + N_BAND_OPS];
    int n = 0;
    TRY(make_pointwise(s, &ops[n++], "mul_dO_O", CUDNN_POINTWISE_MUL, F32, -1, tdO, tO, NULL, vDOO));
    TRY(make_reduction(s, &ops[n++], "reduce_dO_o", CUDNN_REDUCE_TENSOR_ADD, vDOO, vRed));
    TRY(make_pointwise(s, &ops[n++], "scale_dropout_inv", CUDNN_POINTWISE_MUL, F32, -1, vRed, tOne, NULL, tSum));
    TRY(make_matmul(s, &ops[n++], "matmul_Q_KT", tQ, tKt, vS));
    TRY(make_pointwise(s, &ops[n++], "mul_s_attn_scale", CUDNN_POINTWISE_MUL, F32, -1, vS, tScale, NULL, vS1));
    TRY(make_pointwise(s, &ops[n++], "sub_s_m", CUDNN_POINTWISE_SUB, F32, -1, vS1, tSt, NULL, vS2));
    TRY(make_pointwise(s, &ops[n++], "gen_row_index", CUDNN_POINTWISE_GEN_INDEX, F32, 2, vS2, NULL, NULL, vRow));
    TRY(make_pointwise(s, &ops[n++], "gen_col_index", CUDNN_POINTWISE_GEN_INDEX, F32, 3, vS2, NULL, NULL, vCol));
    TRY(make_pointwise(s, &ops[n++], "row >= col", CUDNN_POINTWISE_CMP_GE, BOOL_, -1, vRow, vCol, NULL, vMask));
    TRY(make_pointwise(s, &ops[n++], "causal mask", CUDNN_POINTWISE_BINARY_SELECT, F32, -1, vS2, tNegInf, vMask,
                       vS3));
    if (k->window > 0) TRY(add_band(s, ops, &n, vS3, tNegInf, s_dims, s_str, g_band_f32_index, &vS3));
    TRY(make_pointwise(s, &ops[n++], "exp_s", CUDNN_POINTWISE_EXP, F32, -1, vS3, NULL, NULL, vE));
    TRY(make_reshape(s, &ops[n++], "reshape_p", vE, vPt));
    if (gqa) {
        TRY(make_matmul(s, &ops[n++], "matmul_pT_dO", vPt, tdO, vDvFull));
        TRY(make_reduction(s, &ops[n++], "red_dV_head", CUDNN_REDUCE_TENSOR_ADD, vDvFull, tdV));
    } else {
        TRY(make_matmul(s, &ops[n++], "matmul_pT_dO", vPt, tdO, tdV));
    }
    TRY(make_matmul(s, &ops[n++], "matmul_dO_VT", tdO, tVt, vDP));
    TRY(make_pointwise(s, &ops[n++], "sub_dP_softmax_sum", CUDNN_POINTWISE_SUB, F32, -1, vDP, tSum, NULL, vX1));
    TRY(make_pointwise(s, &ops[n++], "mul_dP_exp_s", CUDNN_POINTWISE_MUL, F32, -1, vX1, vE, NULL, vX2));
    TRY(make_pointwise(s, &ops[n++], "mul_dS_attn_scale", CUDNN_POINTWISE_MUL, F32, -1, vX2, tScale, NULL, vDS));
    TRY(make_reshape(s, &ops[n++], "reshape_dS", vDS, vDSt));
    if (gqa) {
        TRY(make_matmul(s, &ops[n++], "matmul_dST_Q", vDSt, tQ, vDkFull));
        TRY(make_reduction(s, &ops[n++], "red_dK_head", CUDNN_REDUCE_TENSOR_ADD, vDkFull, tdK));
    } else {
        TRY(make_matmul(s, &ops[n++], "matmul_dST_Q", vDSt, tQ, tdK));
    }
    TRY(make_reshape(s, &ops[n++], "reshape_k", tKt, vKr));
    TRY(make_matmul(s, &ops[n++], "matmul_dS_K", vDS, vKr, tAcc));
    TRY(make_pointwise(s, &ops[n++], "identity_dQ", CUDNN_POINTWISE_IDENTITY, F32, -1, tAcc, NULL, NULL, tdQ));

    TRY(create(s, CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, graph, "backward operation graph"));
    SET(s, *graph, "backward operation graph", CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, n, ops);
    SET(s, *graph, "backward operation graph", CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
    return finalize(s, *graph, "backward operation graph");
}

// The first engine config of heuristics `mode` whose execution plan finalizes, as a finalized plan in *plan
// (its descriptors added to s). Engine configs that fail are destroyed at once.
static cudnnStatus_t plan_from_heuristics(desc_set *s, cudnnHandle_t handle, cudnnBackendDescriptor_t graph,
                                          cudnnBackendHeurMode_t mode, const char *mode_name,
                                          cudnnBackendDescriptor_t *plan, int64_t *engine_index) {
    cudnnBackendDescriptor_t heur;
    char role[64];
    snprintf(role, sizeof role, "heuristics %s", mode_name);
    TRY(create(s, CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, &heur, role));
    SET(s, heur, role, CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &graph);
    SET(s, heur, role, CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
    TRY(finalize(s, heur, role));

    int64_t count = 0;
    cudnnStatus_t st =
        cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, NULL);
    if (st != CUDNN_STATUS_SUCCESS) return fail(s, st, "%s: get CUDNN_ATTR_ENGINEHEUR_RESULTS count", role);
    if (count <= 0) return fail(s, CUDNN_STATUS_NOT_SUPPORTED, "%s: no engine configs", role);
    if (count > 64) count = 64;

    cudnnBackendDescriptor_t cfgs[64];
    int64_t n_created = 0;
    for (; n_created < count; n_created++) {
        st = cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, &cfgs[n_created]);
        if (st != CUDNN_STATUS_SUCCESS) break;
    }
    int64_t got = 0;
    if (st == CUDNN_STATUS_SUCCESS)
        st = cudnnBackendGetAttribute(heur, CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, count,
                                      &got, cfgs);
    if (st != CUDNN_STATUS_SUCCESS) {
        for (int64_t i = 0; i < n_created; i++) (void)cudnnBackendDestroyDescriptor(cfgs[i]);
        return fail(s, st, "%s: get CUDNN_ATTR_ENGINEHEUR_RESULTS", role);
    }
    if (got > count) got = count;

    // Build plans in heuristic order; keep the first that finalizes.
    int64_t chosen = -1;
    cudnnStatus_t last = CUDNN_STATUS_NOT_SUPPORTED;
    char last_msg[256] = "";
    const bool old_api = cudnnGetVersion() < 90800; // before 9.8 the plan needs the handle
    for (int64_t i = 0; i < got && chosen < 0; i++) {
        cudnnBackendDescriptor_t p = NULL;
        last = cudnnBackendCreateDescriptor(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, &p);
        if (last != CUDNN_STATUS_SUCCESS) break;
        last = cudnnBackendSetAttribute(p, CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1,
                                        &cfgs[i]);
        if (last == CUDNN_STATUS_SUCCESS && old_api)
            last = cudnnBackendSetAttribute(p, CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, 1, &handle);
        if (last == CUDNN_STATUS_SUCCESS) last = cudnnBackendFinalize(p);
        if (last == CUDNN_STATUS_SUCCESS) {
            chosen = i;
            *plan = p;
        } else {
            cudnnGetLastErrorString(last_msg, sizeof last_msg);
            (void)cudnnBackendDestroyDescriptor(p);
        }
    }
    for (int64_t i = 0; i < n_created; i++)
        if (i != chosen) (void)cudnnBackendDestroyDescriptor(cfgs[i]);
    if (chosen < 0) {
        snprintf(s->err, sizeof s->err, "%s: none of %lld engine configs gave an execution plan: %s%s%s", role,
                 (long long)got, cudnnGetErrorString(last), last_msg[0] ? "; " : "", last_msg);
        return last != CUDNN_STATUS_SUCCESS ? last : CUDNN_STATUS_NOT_SUPPORTED;
    }
    // The plan and its engine config live as long as the cache entry (the plan is destroyed first: the set
    // is freed in reverse order of addition).
    if (s->n + 2 > MAX_DESC) pn_panic("cuDNN SDPA: more than %d descriptors for one plan", MAX_DESC);
    s->d[s->n++] = cfgs[chosen];
    s->d[s->n++] = *plan;

    // The engine's global index, for the debug log only.
    *engine_index = -1;
    cudnnBackendDescriptor_t eng = NULL;
    if (cudnnBackendCreateDescriptor(CUDNN_BACKEND_ENGINE_DESCRIPTOR, &eng) == CUDNN_STATUS_SUCCESS) {
        int64_t n = 0, idx = -1;
        if (cudnnBackendGetAttribute(cfgs[chosen], CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n,
                                     &eng) == CUDNN_STATUS_SUCCESS &&
            cudnnBackendGetAttribute(eng, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &n, &idx) ==
                CUDNN_STATUS_SUCCESS)
            *engine_index = idx;
        (void)cudnnBackendDestroyDescriptor(eng);
    }
    return CUDNN_STATUS_SUCCESS;
}

// ----------------------------------------------------------------------------------------------------
// process-wide state: handle, plan cache, workspace

#define CACHE_SIZE 32

typedef struct {
    int state; // 0 empty, 1 plan ready, -1 cuDNN cannot do this shape
    sdpa_key key;
    desc_set set; // everything the plan was built from (plan included)
    cudnnBackendDescriptor_t plan;
    int64_t workspace;
} plan_entry;

static plan_entry g_cache[CACHE_SIZE];
static int g_next_victim = 0;

static void warn_unavailable(const sdpa_key *k, const char *why) {
    pn_warn("cuDNN SDPA%s unavailable for B %lld T %lld Hq %lld Hkv %lld D %lld cap %lld window %lld: %s",
            k->bwd ? " backward" : "", (long long)k->B, (long long)k->T, (long long)k->Hq, (long long)k->Hkv,
            (long long)k->D, (long long)k->cap, (long long)k->window, why);
}

// The context's cuDNN handle, made on first use and bound to the compute stream.
static cudnnHandle_t get_handle(const sdpa_key *k) {
    pn_cuda_ctx *ctx = pn_cuda_ctx_get();
    if (ctx->cudnn_state == 0) {
        ctx->cudnn_state = -1;
        char why[512];
        const size_t ver = cudnnGetVersion();
        cudnnStatus_t st = CUDNN_STATUS_SUCCESS;
        cudnnHandle_t h = NULL;
        if (ver < 90000) {
            snprintf(why, sizeof why, "cuDNN runtime version %zu is older than 9.0", ver);
        } else if ((st = cudnnCreate(&h)) != CUDNN_STATUS_SUCCESS) {
            char last[256] = "";
            cudnnGetLastErrorString(last, sizeof last);
            snprintf(why, sizeof why, "cudnnCreate: %s%s%s", cudnnGetErrorString(st), last[0] ? "; " : "", last);
        } else if ((st = cudnnSetStream(h, ctx->stream)) != CUDNN_STATUS_SUCCESS) {
            snprintf(why, sizeof why, "cudnnSetStream: %s", cudnnGetErrorString(st));
            (void)cudnnDestroy(h);
        } else {
            ctx->cudnn = (void *)h;
            ctx->cudnn_state = 1;
            pn_debug("cuDNN %zu: fused SDPA enabled for causal prefill attention (plain or sliding window)", ver);
        }
        // cuDNN may leave a CUDA error behind when it fails; the backend checks cudaGetLastError after launches.
        if (ctx->cudnn_state < 0) {
            (void)cudaGetLastError();
            warn_unavailable(k, why);
        }
    }
    return ctx->cudnn_state > 0 ? (cudnnHandle_t)ctx->cudnn : NULL;
}

static bool same_key(const sdpa_key *a, const sdpa_key *b) {
    return a->B == b->B && a->T == b->T && a->Hq == b->Hq && a->Hkv == b->Hkv && a->D == b->D && a->cap == b->cap &&
           a->window == b->window && a->bwd == b->bwd && a->sb == b->sb && a->sh == b->sh && a->st == b->st;
}

// The graph of e's shape and its execution plan (e->plan, descriptors in e->set): heuristics mode A (what
// the frontend's users ask for), then the fallback list.
static cudnnStatus_t make_plan(plan_entry *e, cudnnHandle_t handle, int64_t *engine) {
    cudnnBackendDescriptor_t graph = NULL;
    const sdpa_key *k = &e->key;
    cudnnStatus_t st = k->bwd ? build_bwd_graph(&e->set, handle, k, &graph) : build_graph(&e->set, handle, k, &graph);
    if (st != CUDNN_STATUS_SUCCESS) return st;
    st = plan_from_heuristics(&e->set, handle, graph, CUDNN_HEUR_MODE_A, "A", &e->plan, engine);
    if (st == CUDNN_STATUS_SUCCESS) return st;
    char first[512];
    snprintf(first, sizeof first, "%s", e->set.err);
    st = plan_from_heuristics(&e->set, handle, graph, CUDNN_HEUR_MODE_FALLBACK, "FALLBACK", &e->plan, engine);
    if (st != CUDNN_STATUS_SUCCESS) {
        char both[512];
        snprintf(both, sizeof both, "%.250s | %.250s", first, e->set.err);
        snprintf(e->set.err, sizeof e->set.err, "%s", both);
    }
    return st;
}

// The cache entry of a shape, building (or failing) it on first use.
static plan_entry *get_plan(cudnnHandle_t handle, const sdpa_key *k) {
    for (int i = 0; i < CACHE_SIZE; i++)
        if (g_cache[i].state != 0 && same_key(&g_cache[i].key, k)) return &g_cache[i];

    plan_entry *e = NULL;
    for (int i = 0; i < CACHE_SIZE && !e; i++)
        if (g_cache[i].state == 0) e = &g_cache[i];
    if (!e) { // evict round-robin (the plan's descriptors go with it)
        e = &g_cache[g_next_victim];
        g_next_victim = (g_next_victim + 1) % CACHE_SIZE;
        desc_set_free(&e->set);
    }
    memset(e, 0, sizeof *e);
    e->key = *k;

    const double t0 = pn_now();
    int64_t engine = -1;
    cudnnStatus_t st = make_plan(e, handle, &engine);
    if (st != CUDNN_STATUS_SUCCESS && k->window > 0) { // the band's other index type
        char first[512];
        snprintf(first, sizeof first, "%s", e->set.err);
        desc_set_free(&e->set);
        e->plan = NULL;
        g_band_f32_index = !g_band_f32_index;
        st = make_plan(e, handle, &engine);
        if (st != CUDNN_STATUS_SUCCESS) {
            g_band_f32_index = !g_band_f32_index;
            char both[512];
            snprintf(both, sizeof both, "%.250s | %s indices: %.200s", first, g_band_f32_index ? "int32" : "fp32",
                     e->set.err);
            snprintf(e->set.err, sizeof e->set.err, "%s", both);
        }
    }
    if (st == CUDNN_STATUS_SUCCESS) {
        int64_t n = 0, ws = 0;
        st = cudnnBackendGetAttribute(e->plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &n, &ws);
        if (st != CUDNN_STATUS_SUCCESS)
            fail(&e->set, st, "execution plan: get CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE");
        else
            e->workspace = ws > 0 ? ws : 0;
    }
    if (st != CUDNN_STATUS_SUCCESS) {
        (void)cudaGetLastError(); // see get_handle
        warn_unavailable(k, e->set.err);
        desc_set_free(&e->set);
        e->plan = NULL;
        e->state = -1;
        return e;
    }
    e->state = 1;
    pn_debug("cuDNN SDPA%s plan for B %lld T %lld Hq %lld Hkv %lld D %lld cap %lld window %lld%s: engine %lld, "
             "workspace %lld bytes, built in %.1f ms",
             k->bwd ? " backward" : "", (long long)k->B, (long long)k->T, (long long)k->Hq, (long long)k->Hkv,
             (long long)k->D, (long long)k->cap, (long long)k->window,
             k->window > 0 ? (g_band_f32_index ? " (fp32 band indices)" : " (int32 band indices)") : "",
             (long long)engine, (long long)e->workspace, (pn_now() - t0) * 1e3);
    return e;
}

// The context's cuDNN workspace, grown to at least `bytes`; NULL (warned, nothing allocated) when the device
// is full.
static void *ensure_workspace(const sdpa_key *k, size_t bytes) {
    void *p = pn_cuda_ws_try(PN_WS_CUDNN, bytes ? bytes : 1);
    if (!p) {
        char why[96];
        snprintf(why, sizeof why, "no device memory for a %zu-byte workspace", bytes);
        warn_unavailable(k, why);
        return NULL; // nothing written; the next call tries again
    }
    return p;
}

// Run a plan on a variant pack; a failure here (the plan exists) is an internal error.
static void execute(cudnnHandle_t handle, const plan_entry *e, int n, int64_t *uids, void **ptrs, void *ws) {
    cudnnBackendDescriptor_t pack = NULL;
    cudnnStatus_t st = cudnnBackendCreateDescriptor(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, &pack);
    const char *step = "create variant pack";
    if (st == CUDNN_STATUS_SUCCESS) {
        step = "set CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS";
        st = cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, n, uids);
    }
    if (st == CUDNN_STATUS_SUCCESS) {
        step = "set CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS";
        st = cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, n, ptrs);
    }
    if (st == CUDNN_STATUS_SUCCESS) {
        step = "set CUDNN_ATTR_VARIANT_PACK_WORKSPACE";
        st = cudnnBackendSetAttribute(pack, CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &ws);
    }
    if (st == CUDNN_STATUS_SUCCESS) {
        step = "finalize variant pack";
        st = cudnnBackendFinalize(pack);
    }
    if (st == CUDNN_STATUS_SUCCESS) {
        step = "cudnnBackendExecute";
        st = cudnnBackendExecute(handle, e->plan, pack);
    }
    if (pack) (void)cudnnBackendDestroyDescriptor(pack);
    if (st != CUDNN_STATUS_SUCCESS) {
        char last[256] = "";
        cudnnGetLastErrorString(last, sizeof last);
        const sdpa_key *k = &e->key;
        pn_panic_at(__FILE__, __LINE__, "cuDNN SDPA%s (B %lld T %lld Hq %lld Hkv %lld D %lld cap %lld): %s: %s%s%s",
                    k->bwd ? " backward" : "", (long long)k->B, (long long)k->T, (long long)k->Hq, (long long)k->Hkv,
                    (long long)k->D, (long long)k->cap, step, cudnnGetErrorString(st), last[0] ? "; " : "", last);
    }
}

// ----------------------------------------------------------------------------------------------------
// entry points

// The forward: causal prefill (queries at positions 0 .. T-1 over keys 0 .. T-1, top-left causal; with
// window > 0 the keys t - window < s <= t), optionally writing the statistics lse [B, T, Hq].
static int sdpa_forward(pn_tensor *out, float *lse, const pn_tensor *q, const pn_tensor *kcache,
                        const pn_tensor *vcache, int pos0, int window) {
    if (pos0 != 0 || window < 0) return -1;
    if (q->ndim != 4 || out->ndim != 4 || kcache->ndim != 4 || vcache->ndim != 4) return -1;
    if (q->dtype != PN_BF16 || out->dtype != PN_BF16 || kcache->dtype != PN_BF16 || vcache->dtype != PN_BF16)
        return -1;
    if (q->device != PN_CUDA || out->device != PN_CUDA || kcache->device != PN_CUDA || vcache->device != PN_CUDA)
        return -1;
    const int64_t T = q->shape[1], Hq = q->shape[2];
    window = window >= T ? 0 : window; // a window holding every key is no window (and below 2^24 as a float)
    const sdpa_key k = {q->shape[0], T, Hq, kcache->shape[2], q->shape[3], kcache->shape[1], window, 0,
                        lse ? T * Hq : 0, lse ? 1 : 0, lse ? Hq : 0};
    for (int i = 0; i < 4; i++)
        if (out->shape[i] != q->shape[i] || vcache->shape[i] != kcache->shape[i]) return -1;
    if (kcache->shape[0] != k.B || kcache->shape[3] != k.D) return -1;
    if (k.B < 1 || k.Hq < 1 || k.Hkv < 1 || k.Hq % k.Hkv != 0) return -1;
    // T >= 64 (shorter prefills are cheap for the own kernels); any head size cuDNN's flash attention takes on
    // Hopper (multiple of 8, at most 256). D 64 and 128 are the tested ones.
    if (k.T < 64 || k.T > k.cap || k.D < 8 || k.D > 256 || k.D % 8 != 0) return -1;
    if (!is_aligned16(out->data) || !is_aligned16(q->data) || !is_aligned16(kcache->data) ||
        !is_aligned16(vcache->data))
        return -1;

    cudnnHandle_t handle = get_handle(&k);
    if (!handle) return -1;
    plan_entry *e = get_plan(handle, &k);
    if (e->state != 1) return -1;
    void *ws = ensure_workspace(&k, (size_t)e->workspace);
    if (!ws) return -1;
    // By-value scalars are read from host memory during cudnnBackendExecute.
    float scale = 1.0f / sqrtf((float)k.D);
    float neg_inf = -INFINITY, win = (float)window;
    int64_t uids[8] = {UID_Q, UID_K, UID_V, UID_O, UID_SCALE, UID_NEG_INF};
    void *ptrs[8] = {q->data, kcache->data, vcache->data, out->data, &scale, &neg_inf};
    int n = 6; // then the graph's optional tensors
    if (window > 0) uids[n] = UID_WINDOW, ptrs[n++] = &win;
    if (lse) uids[n] = UID_STATS, ptrs[n++] = lse;
    execute(handle, e, n, uids, ptrs, e->workspace > 0 ? ws : NULL);
    return 0;
}

extern "C" int pn_cuda_attention_cudnn(pn_tensor *out, const pn_tensor *q, const pn_tensor *kcache,
                                       const pn_tensor *vcache, int pos0, int window) {
    return sdpa_forward(out, NULL, q, kcache, vcache, pos0, window);
}

extern "C" int pn_cuda_attention_cudnn_stats(pn_tensor *out, float *lse, const pn_tensor *q, const pn_tensor *k,
                                             const pn_tensor *v, int window) {
    if (k->ndim != 4 || k->shape[1] != q->shape[1]) return -1;
    return sdpa_forward(out, lse, q, k, v, 0, window);
}

// The backward of causal attention (window 0: plain; W > 0: the keys t - W < s <= t) over k, v [B, T, Hkv, D]
// (keys are the T tokens), with the forward's softmax statistics: stats[b sb + h sh + t st] =
// ln sum_s exp(scale q_t.k_s) (device, fp32). 0 when it wrote dq, dk, dv; -1 (nothing written) when cuDNN does
// not take the call.
extern "C" int pn_cuda_attention_bwd_cudnn(pn_tensor *dq, pn_tensor *dk, pn_tensor *dv, const pn_tensor *dout,
                                           const pn_tensor *q, const pn_tensor *k, const pn_tensor *v,
                                           const pn_tensor *out, const float *stats, int64_t sb, int64_t sh,
                                           int64_t st, int window) {
    if (window < 0) return -1;
    const pn_tensor *all[8] = {dq, dk, dv, dout, q, k, v, out};
    for (int i = 0; i < 8; i++)
        if (all[i]->ndim != 4 || all[i]->dtype != PN_BF16 || all[i]->device != PN_CUDA || !is_aligned16(all[i]->data))
            return -1;
    if (window >= q->shape[1]) window = 0; // every key in the window: plain causal
    const sdpa_key key = {q->shape[0], q->shape[1], q->shape[2], k->shape[2], q->shape[3], k->shape[1], window, 1,
                          sb, sh, st};
    if (key.T < 64 || key.D < 8 || key.D > 128 || key.D % 8 != 0 || key.Hq % key.Hkv != 0) return -1;
    static int disabled = -1; // PN_NO_CUDNN_BWD=1: the own kernels (for comparisons)
    if (disabled < 0) disabled = getenv("PN_NO_CUDNN_BWD") && strcmp(getenv("PN_NO_CUDNN_BWD"), "0") != 0;
    if (disabled) return -1;
    cudnnHandle_t handle = get_handle(&key);
    if (!handle) return -1;
    plan_entry *e = get_plan(handle, &key);
    if (e->state != 1) return -1;
    // workspace: the plan's, then softmax_sum [B, Hq, T] and the fp32 dQ accumulator [B, Hq, T, D]
    const size_t plan_ws = ((size_t)e->workspace + 255) / 256 * 256;
    const size_t n_sum = (size_t)(key.B * key.Hq * key.T), n_acc = n_sum * (size_t)key.D;
    const size_t sum_bytes = (sizeof(float) * n_sum + 255) / 256 * 256;
    char *base = (char *)ensure_workspace(&key, plan_ws + sum_bytes + sizeof(float) * n_acc);
    if (!base) return -1;
    float scale = 1.0f / sqrtf((float)key.D), one = 1.0f, neg_inf = -INFINITY, win = (float)window;
    int64_t uids[15] = {UID_Q,     UID_K,     UID_V,     UID_O,   UID_DO,      UID_STATS_IN,    UID_DQ,      UID_DK,
                        UID_DV,    UID_SCALE, UID_ONE,   UID_NEG_INF, UID_SOFTMAX_SUM, UID_DQ_ACCUM, UID_WINDOW};
    void *ptrs[15] = {q->data,  k->data, v->data, out->data, dout->data,     (void *)stats,
                      dq->data, dk->data, dv->data, &scale,  &one,           &neg_inf,
                      base + plan_ws, base + plan_ws + sum_bytes, &win};
    execute(handle, e, window > 0 ? 15 : 14, uids, ptrs, e->workspace > 0 ? (void *)base : NULL);
    return 0;
}
