// act.cuh: pointwise activations and their derivatives on the device (same formulas as cpu/activation.c).
#ifndef GKA_ACT_CUH
#define GKA_ACT_CUH

#include "ops.h"

__device__ __forceinline__ float act_apply_d(int act, float x) {
    switch (act) {
    case ACT_RELU: return x > 0.0f ? x : 0.0f;
    case ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case ACT_GELU_TANH: return 0.5f * x * (1.0f + tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x)));
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
        float t = tanhf(0.7978845608028654f * (x + 0.044715f * x * x * x));
        return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * 0.7978845608028654f * (1.0f + 0.134145f * x * x);
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
