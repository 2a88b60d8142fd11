// act.cuh: pointwise activations and their derivatives on the device (same formulas as cpu/activation.c,
// except GELU-tanh, below). A call with a constant `act` folds the switch away.
#ifndef GKA_ACT_CUH
#define GKA_ACT_CUH

#include "ops.h"

#define GELU_TANH_K 0.7978845608028654f /* sqrt(2/pi) */
#define GELU_TANH_C 0.044715f

// GELU-tanh as x * s with s = sigmoid(2u) = 0.5 (1 + tanh u), u = k (x + c x^3), xx = x^2: one hardware exp2
// and one reciprocal instead of tanhf's long polynomial and branches, which made the fused batch-norm kernels
// compute bound. __expf's relative error is at most about 1e-5 where it matters (|2u| < 88; beyond, s is
// exactly 0 or 1), far under bf16's 2e-3 half step, and the form has no cancellation in 1 + tanh u for x < 0.
__device__ __forceinline__ float gelu_tanh_s(float x, float xx) {
    float e = __expf(x * fmaf(-2.0f * GELU_TANH_K * GELU_TANH_C, xx, -2.0f * GELU_TANH_K)); /* exp(-2u) */
    return __fdividef(1.0f, 1.0f + e); /* 1 / inf = 0, also for a denominator past 2^126 */
}

__device__ __forceinline__ float act_apply_d(int act, float x) {
    switch (act) {
    case ACT_RELU: return x > 0.0f ? x : 0.0f;
    case ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case ACT_GELU_TANH: return x * gelu_tanh_s(x, x * x);
    case ACT_SILU: return x / (1.0f + expf(-x));
    case ACT_SOFTPLUS: return x > 20.0f ? x : log1pf(expf(x));
    case ACT_SIGMOID: return 1.0f / (1.0f + expf(-x));
    default: return x;
    }
}

__device__ __forceinline__ float act_grad_d(int act, float x) {
    switch (act) {
    case ACT_RELU: return x > 0.0f ? 1.0f : 0.0f;
    case ACT_GELU: return 0.5f * (1.0f + erff(x * 0.70710678118654752f)) + x * 0.3989422804014327f * expf(-0.5f * x * x);
    case ACT_GELU_TANH: {
        /* 0.5 (1 + t) + 0.5 x (1 - t^2) u' = s + x s (1 - s) 2u' (1 + t = 2s, 1 - t^2 = 4 s (1 - s)); s (1 - s)
         * as fma(-s, s, s), which has no cancellation where s is near 1 */
        float xx = x * x, s = gelu_tanh_s(x, xx);
        float du2 = fmaf(2.0f * GELU_TANH_K * 3.0f * GELU_TANH_C, xx, 2.0f * GELU_TANH_K);
        return fmaf(x * fmaf(-s, s, s), du2, s);
    }
    case ACT_SILU: {
        float s = 1.0f / (1.0f + expf(-x));
        return s * (1.0f + x * (1.0f - s));
    }
    case ACT_SOFTPLUS: return x > 20.0f ? 1.0f : 1.0f / (1.0f + expf(-x));
    case ACT_SIGMOID: {
        float s = 1.0f / (1.0f + expf(-x));
        return s * (1.0f - s);
    }
    default: return 1.0f;
    }
}

#endif
