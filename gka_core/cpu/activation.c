/* activation.c: pointwise activations and their derivatives (CPU). */
#include <math.h>

#include "ops_cpu.h"

#define GELU_TANH_K 0.7978845608028654f /* sqrt(2/pi) */

float act_apply(Act act, float x) {
    switch (act) {
    case ACT_NONE: return x;
    case ACT_RELU: return x > 0.0f ? x : 0.0f;
    case ACT_GELU: return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case ACT_GELU_TANH: return 0.5f * x * (1.0f + tanhf(GELU_TANH_K * (x + 0.044715f * x * x * x)));
    case ACT_SILU: return x / (1.0f + expf(-x));
    case ACT_SOFTPLUS: return x > 20.0f ? x : log1pf(expf(x));
    case ACT_SIGMOID: return 1.0f / (1.0f + expf(-x));
    }
    return x;
}

float act_grad(Act act, float x) {
    switch (act) {
    case ACT_NONE: return 1.0f;
    case ACT_RELU: return x > 0.0f ? 1.0f : 0.0f;
    case ACT_GELU: {
        float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752f));
        float pdf = 0.3989422804014327f * expf(-0.5f * x * x);
        return cdf + x * pdf;
    }
    case ACT_GELU_TANH: {
        float u = GELU_TANH_K * (x + 0.044715f * x * x * x);
        float t = tanhf(u);
        float du = GELU_TANH_K * (1.0f + 3.0f * 0.044715f * x * x);
        return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
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
    }
    return 1.0f;
}

void act_forward_cpu(float *out, const float *inp, Act act, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) out[i] = act_apply(act, inp[i]);
}

void act_backward_cpu(float *dinp, const float *dout, const float *inp, Act act, int64_t n) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) dinp[i] = dout[i] * act_grad(act, inp[i]);
}
