// pn_param: the published initializations by parameter kind (pn_param.h).
#include "pn_param.h"

#include <math.h>

#include "pn_rng.h"

float pn_param_init_value(const pn_param *p, double std, uint64_t seed, uint64_t stream, uint64_t j) {
    const double u = pn_rng_uniform(seed, stream, j);
    switch (p->kind) {
    case PN_PARAM_NORM: return 1.0f;
    case PN_PARAM_ZERO: return 0.0f;
    case PN_PARAM_A_LOG: return (float)log(1.0 + 15.0 * u);
    case PN_PARAM_DT_BIAS: {
        double dt = exp(log(0.001) + u * (log(0.1) - log(0.001)));
        if (dt < 1e-4) dt = 1e-4;
        return (float)(dt + log(-expm1(-dt))); // softplus^-1
    }
    case PN_PARAM_CONV: {
        const double bound = 1.0 / sqrt((double)p->shape[p->ndim - 1]);
        return (float)((2.0 * u - 1.0) * bound);
    }
    case PN_PARAM_GEN_BIAS: return 0.02f * pn_rng_normal(seed, stream, j);
    default: return (float)(std * pn_rng_normal(seed, stream, j));
    }
}
