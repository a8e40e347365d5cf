// pn_rng: counter-based random numbers (splitmix64 of a seeded counter). Element i of a stream depends
// only on (seed, stream, i), so tensors can be filled in parallel and reproduced anywhere.
#ifndef PN_RNG_H
#define PN_RNG_H

#include <math.h>
#include <stdint.h>

#ifdef __CUDACC__ // the CUDA kernels draw the same numbers (sampling: kernels/cuda/loss.cu)
#define PN_RNG_HD __host__ __device__
#else
#define PN_RNG_HD
#endif

static inline PN_RNG_HD uint64_t pn_splitmix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

// Uniform in (0, 1).
static inline PN_RNG_HD double pn_rng_uniform(uint64_t seed, uint64_t stream, uint64_t i) {
    uint64_t r = pn_splitmix64(pn_splitmix64(seed ^ (stream * 0xd1b54a32d192ed03ull)) + i);
    return ((double)(r >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

// Standard normal (Box-Muller on two uniforms of the counter pair 2i, 2i+1).
static inline float pn_rng_normal(uint64_t seed, uint64_t stream, uint64_t i) {
    double u1 = pn_rng_uniform(seed, stream, 2 * i), u2 = pn_rng_uniform(seed, stream, 2 * i + 1);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

// A sequential generator for sampling.
typedef struct pn_rng {
    uint64_t seed, n;
} pn_rng;
static inline double pn_rng_next(pn_rng *r) { return pn_rng_uniform(r->seed, 0, r->n++); }

#endif
