/* optim.h: the optimizer steps (AdamW, LAMB) and the global gradient norm, over the flat buffers of one role
 * each (parameters, gradients, moments m and v, the bf16 copy of the parameters). Not in ops.h: these work
 * on flat buffers, not tensors. Each has a CPU twin (gka_core/cpu/optim.c) and a CUDA twin
 * (gka_core/cuda/optim.cu) with the same arguments plus the CudaCtx; every pointer of a CUDA twin is device
 * memory, except `ranges`, which is host memory.
 *
 * Parameter groups are a small table of ranges of the flat buffers (n elements each), each with its weight
 * decay (timm's rule: matrices and filters decayed, 1-D tensors and biases not). Ranges are sorted by offset,
 * disjoint and inside [0, n) (checked); elements outside every range are not touched. For LAMB a decayed
 * range must be exactly one parameter tensor, since its trust ratio is taken over the range; undecayed
 * tensors may share a range.
 *
 * Both steps scale each gradient by `grad_scale` as they read it: the clip factor
 * min(1, max_norm / (norm + 1e-6)) of the global norm (global_norm_sq), and for LAMB also timm's global
 * pre-normalisation 1 / max(1, clipped_norm / 1.0). Each refreshes params_bf16 (when not NULL) in the same
 * pass, rounding to nearest even. The float32 arithmetic is spelled out in optim.c and is the same in both
 * twins (constants derived from OptimHyper once, in double, by optim_consts). */
#ifndef GKA_OPTIM_H
#define GKA_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "bf16.h"
#include "context.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct OptimRange {
    size_t offset, count; /* elements [offset, offset + count) of every flat buffer */
    float weight_decay;   /* 0: no decay */
} OptimRange;

typedef struct OptimHyper {
    float lr, beta1, beta2, eps; /* gkavision spec 8.4: betas (0.9, 0.999), eps 1e-8 */
    int64_t step;                /* k >= 1: the step being taken, for the bias corrections 1 - beta^k */
} OptimHyper;

/* The float32 constants both twins compute with (each derived in double, then rounded once, as PyTorch
 * turns its Python-float hyperparameters into float32 scalars). */
typedef struct OptimConsts {
    float lr, beta1, beta2, one_minus_beta1, one_minus_beta2, eps;
    float bc1;       /* 1 - beta1^k */
    float bc2_sqrt;  /* sqrt(1 - beta2^k) */
    float step_size; /* lr / (1 - beta1^k) (AdamW) */
} OptimConsts;
OptimConsts optim_consts(OptimHyper hp);
/* Stops with a message unless the ranges are non-empty, sorted, disjoint and inside [0, n). */
void optim_check_ranges(const OptimRange *ranges, int n_ranges, size_t n);

/* AdamW, torch semantics (decoupled decay): with g = grad * grad_scale,
 *   p *= 1 - lr*wd;  m = m + (1 - b1)(g - m);  v = b2 v + (1 - b2) g^2;
 *   p += -(lr / (1 - b1^k)) * m / (sqrt(v) / sqrt(1 - b2^k) + eps). */
void adamw_update_cpu(float *params, float *m, float *v, bf16_t *params_bf16, const float *grads, size_t n,
                      const OptimRange *ranges, int n_ranges, OptimHyper hp, float grad_scale);
void adamw_update_cuda(float *params, float *m, float *v, bf16_t *params_bf16, const float *grads, size_t n,
                       const OptimRange *ranges, int n_ranges, OptimHyper hp, float grad_scale, CudaCtx *cu);

/* LAMB, timm semantics (bias correction on, grad averaging on, no trust clipping): with g = grad *
 * grad_scale, m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;  u = (m / (1 - b1^k)) / (sqrt(v) / sqrt(1 -
 * b2^k) + eps); decayed range: u += wd p, u *= ||p|| / ||u|| over the range (1 if either norm is 0);  p +=
 * -lr u. Two passes: moments, u and the range's norms (float64, fixed order), then the update. */
void lamb_update_cpu(float *params, float *m, float *v, bf16_t *params_bf16, const float *grads, size_t n,
                     const OptimRange *ranges, int n_ranges, OptimHyper hp, float grad_scale);
void lamb_update_cuda(float *params, float *m, float *v, bf16_t *params_bf16, const float *grads, size_t n,
                      const OptimRange *ranges, int n_ranges, OptimHyper hp, float grad_scale, CudaCtx *cu);

/* *out = sum of grads[i]^2 in float64, in an order fixed by n alone (deterministic). Inf or NaN anywhere
 * gives a non-finite result: the caller's overflow check comes with it. The CUDA twin writes *out in device
 * memory. */
void global_norm_sq_cpu(double *out, const float *grads, size_t n);
void global_norm_sq_cuda(double *out, const float *grads, size_t n, CudaCtx *cu);

/* Exponential moving average (timm ModelEmaV2): ema = decay ema + (1 - decay) src, element-wise, over a flat
 * buffer (the parameters, or the BatchNorm buffers), as ema + (1 - decay) (src - ema) in float32. */
void ema_update_cpu(float *ema, const float *src, size_t n, float decay);
void ema_update_cuda(float *ema, const float *src, size_t n, float decay, CudaCtx *cu);

#ifdef __cplusplus
}
#endif
#endif
