/* gka_prep.h: the layer's step from projections to the core operator's inputs (spec gka.md 2.1 steps 3-7),
 * one fused op with CPU and CUDA twins.
 *   qkv  [M, Hq K + Hk K (+ Hv V)]  silu(conv(x W^T)); q at column 0, k after it, v last when use_v_conv
 *   vraw [M, Hv V]                  the raw v projection when !use_v_conv (else NULL)
 *   gpre [M, NG]                    gate pre-activations, columns beta | alpha | a (those switched on), the
 *                                   biases (b_proj, alpha_proj, dt_bias) already added by the projection
 * Outputs, per expanded head e (source head = e / (H / H_src), HF repeat_kv):
 *   q^ [M, H, K] = q / sqrt(|q|^2 + 1e-6)         ([F]'s L2 norm)
 *   kb [M, H, K] = beta k / sqrt(|k|^2 + 1e-6),   beta = sigmoid(pre_b) + 1e-6 (1 when off)
 *   vb [M, H, V] = beta v
 *   g  [M, H]    = -exp(A_log) softplus(pre_a)    (NULL when no forgetting gate)
 *   al [M, H]    = sigmoid(pre_alpha)              (NULL when off)
 * The backward recomputes everything from the same inputs (nothing is saved). dg is the total gradient of g
 * (dg + dgk when the core operator uses g for both states). dqkv, dvraw, dgpre are written; dA_log is
 * accumulated. M = number of tokens. */
#ifndef GKA_PREP_H
#define GKA_PREP_H

#include <stdint.h>

#include "bf16.h"
#include "context.h"
#include "gka.h"

#ifdef __cplusplus
extern "C" {
#endif

#define GKA_L2_EPS 1e-6f
#define GKA_BETA_EPS 1e-6f

void gka_prep_forward_cpu(float *qo, float *ko, float *vo, float *go, float *ao, const float *qkv, const float *vraw,
                          const float *gpre, const float *A_log, const GkaConfig *cfg, int64_t M);
void gka_prep_backward_cpu(float *dqkv, float *dvraw, float *dgpre, float *dA_log, const float *dq, const float *dk,
                           const float *dv, const float *dg, const float *dal, const float *qkv, const float *vraw,
                           const float *gpre, const float *A_log, const GkaConfig *cfg, int64_t M);

/* CUDA twins: qkv, vraw, q^, kb, vb and their gradients bf16; gates, gate gradients, A_log float32 (gpre and
 * dgpre bf16, as the projection's output). `work` holds M*H floats for the deterministic dA_log reduction. */
void gka_prep_forward_cuda(bf16_t *qo, bf16_t *ko, bf16_t *vo, float *go, float *ao, const bf16_t *qkv,
                           const bf16_t *vraw, const bf16_t *gpre, const float *A_log, const GkaConfig *cfg, int64_t M,
                           CudaCtx *cu);
void gka_prep_backward_cuda(bf16_t *dqkv, bf16_t *dvraw, bf16_t *dgpre, float *dA_log, float *work, const bf16_t *dq,
                            const bf16_t *dk, const bf16_t *dv, const float *dg, const float *dal, const bf16_t *qkv,
                            const bf16_t *vraw, const bf16_t *gpre, const float *A_log, const GkaConfig *cfg,
                            int64_t M, CudaCtx *cu);

#ifdef __cplusplus
}
#endif
#endif
