/* selective_scan.h: the selective scan of the MambaVision mixer (Mamba S6, spec gkavision.md 2.7 steps 5-7),
 * forward and backward, with a CPU twin (float32) and a CUDA twin (bf16 activations, float32 state).
 *
 * Letters: S sequences, L tokens, D channels (the mixer's Ch = C/2), N state size (8 in MambaVision, at most
 * SELECTIVE_SCAN_MAX_N). Per sequence, with h[d, n] = 0 before token 0:
 *   Delta[t, d] = softplus(delta_pre[t, d] + dt_bias[d])      (the mixer's dt_proj bias is added a second
 *                                                              time here: spec 2.7 note 1)
 *   A[d, n]     = -exp(A_log[d, n])
 *   h[d, n]    <- exp(Delta[t, d] A[d, n]) h[d, n] + Delta[t, d] Bm[t, n] x[t, d]
 *   y[t, d]     = sum_n Cm[t, n] h[d, n] + Dp[d] x[t, d]
 * Bm and Cm are shared by all channels; there is no z gating.
 *
 * The decision a reader must know: the forward can save the state at the start of every chunk of
 * SELECTIVE_SCAN_CHUNK tokens (`states`, float32 [S, nchunks, D, N]); the backward is a reverse scan that
 * recomputes each chunk's states from its checkpoint, so it stores nothing per token.
 *
 * Dtypes. CPU: all float32. CUDA: x, delta_pre, Bm, Cm, y and their gradients bf16 (activations); A_log,
 * Dp, dt_bias float32, read from the master weights (the scan runs in float32, as upstream's does under
 * AMP); states and parameter gradients float32.
 * Gradients: dx, ddelta_pre, dBm, dCm written; dA_log, dD, ddt_bias accumulated (+=). */
#ifndef GKA_SELECTIVE_SCAN_H
#define GKA_SELECTIVE_SCAN_H

#include <stdint.h>

#include "context.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SELECTIVE_SCAN_CHUNK 16 /* tokens between saved states */
#define SELECTIVE_SCAN_MAX_N 16

static inline int64_t selective_scan_nchunks(int64_t L) {
    return (L + SELECTIVE_SCAN_CHUNK - 1) / SELECTIVE_SCAN_CHUNK;
}

/* y [S, L, D] from x, delta_pre [S, L, D], A_log [D, N], Bm, Cm [S, L, N], Dp, dt_bias [D]. `states`
 * [S, nchunks(L), D, N] float32 is written when present (training) and may be TENSOR_NONE (inference). */
void selective_scan_forward(Tensor y, Tensor states, Tensor x, Tensor delta_pre, Tensor A_log, Tensor Bm,
                            Tensor Cm, Tensor Dp, Tensor dt_bias, Ctx *ctx);
/* `states` is the forward's. Every gradient is required (the mixer needs them all). */
void selective_scan_backward(Tensor dx, Tensor ddelta_pre, Tensor dA_log, Tensor dBm, Tensor dCm, Tensor dD,
                             Tensor ddt_bias, Tensor dy, Tensor x, Tensor delta_pre, Tensor A_log, Tensor Bm,
                             Tensor Cm, Tensor Dp, Tensor dt_bias, Tensor states, Ctx *ctx);

/* ---- the twins, called by the dispatcher (gka_core/selective_scan.c) after its checks ---------------- */
void selective_scan_forward_cpu(float *y, float *states, const float *x, const float *delta_pre,
                                const float *A_log, const float *Bm, const float *Cm, const float *Dp,
                                const float *dt_bias, int S, int L, int D, int N);
/* `part` holds S * D * (N + 2) floats: per-sequence parameter-gradient partials, summed over sequences in
 * a fixed order afterwards so the result does not depend on the thread count. */
void selective_scan_backward_cpu(float *dx, float *ddelta_pre, float *dA_log, float *dBm, float *dCm,
                                 float *dD, float *ddt_bias, float *part, const float *dy, const float *x,
                                 const float *delta_pre, const float *A_log, const float *Bm, const float *Cm,
                                 const float *Dp, const float *dt_bias, const float *states, int S, int L,
                                 int D, int N);
void selective_scan_forward_cuda(bf16_t *y, float *states, const bf16_t *x, const bf16_t *delta_pre,
                                 const float *A_log, const bf16_t *Bm, const bf16_t *Cm, const float *Dp,
                                 const float *dt_bias, int S, int L, int D, int N, CudaCtx *cu);
void selective_scan_backward_cuda(bf16_t *dx, bf16_t *ddelta_pre, float *dA_log, bf16_t *dBm, bf16_t *dCm,
                                  float *dD, float *ddt_bias, const bf16_t *dy, const bf16_t *x,
                                  const bf16_t *delta_pre, const float *A_log, const bf16_t *Bm,
                                  const bf16_t *Cm, const float *Dp, const float *dt_bias,
                                  const float *states, int S, int L, int D, int N, CudaCtx *cu);

#ifdef __cplusplus
}
#endif
#endif
