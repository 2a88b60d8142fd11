/* act64.h: the activations of ops.h in float64, for the reference loops of the op cases. */
#ifndef GKA_TEST_ACT64_H
#define GKA_TEST_ACT64_H

#include <math.h>

#include "ops.h"

static inline double act64(Act act, double x) {
    switch (act) {
    case ACT_NONE:
        return x;
    case ACT_RELU:
        return x > 0.0 ? x : 0.0;
    case ACT_GELU:
        return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
    case ACT_GELU_TANH:
        return 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
    case ACT_SILU:
        return x / (1.0 + exp(-x));
    case ACT_SOFTPLUS:
        return x > 20.0 ? x : log1p(exp(x));
    case ACT_SIGMOID:
        return 1.0 / (1.0 + exp(-x));
    }
    return x;
}

#endif
