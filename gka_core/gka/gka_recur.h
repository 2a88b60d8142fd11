/* gka_recur.h: the GKA core operator in token-recurrent form (float32 CPU twin and its CUDA twin), see
 * gka_recur_cpu.c for the algorithm. Layouts (spec 0.2): q, k, x [B, T, H, K]; v, o [B, T, H, V];
 * g, gk, alpha, f [B, T, H] (g, gk, alpha may be NULL = absent); H0, HT [B, H, K, K]; U0, UT [B, H, K, V]
 * (NULL = zero / not wanted). An absent input takes its neutral value (g = gk = 0, alpha = 1), and a gradient
 * asked for it is the gradient at that value. The forward saves x and f for the backward. Gradients are written; passing
 * the same array as dg and dgk (a gate used for both states) receives their sum. */
#ifndef GKA_RECUR_H
#define GKA_RECUR_H

#include <stddef.h>

#include "bf16.h"
#include "context.h"
#include "gka_op.h"

#ifdef __cplusplus
extern "C" {
#endif

void gka_recur_forward_cpu(float *o, float *HT, float *UT, float *x, float *f, const float *q, const float *k,
                           const float *v, const float *g, const float *gk, const float *alpha, const float *H0,
                           const float *U0, GkaOpConfig cfg, int B, int T, int H, int K, int V);
/* Floats of workspace the backward needs (what pass 1 hands to pass 2). */
size_t gka_recur_workspace_floats(int B, int T, int H, int K, int V);
void gka_recur_backward_cpu(float *dq, float *dk, float *dv, float *dg, float *dgk, float *dalpha, float *dH0,
                            float *dU0, float *work, const float *d_o, const float *dHT, const float *dUT,
                            const float *q, const float *k, const float *v, const float *g, const float *gk,
                            const float *alpha, const float *H0, const float *U0, const float *x, const float *f,
                            GkaOpConfig cfg, int B, int T, int H, int K, int V);

/* CUDA twins (CUDA builds only): q, k, v, o, d_o, dq, dk, dv in bf16; everything else float32, as above.
 * They take K <= 32 and V <= 32. They add one argument after f: `states`, the H and U states at every chunk
 * start that the forward computes anyway (gka_recur_states_floats() floats); the forward writes them and the
 * backward reads them instead of recomputing. NULL: context scratch, recomputed by the backward. */
size_t gka_recur_states_floats(int B, int T, int H);
void gka_recur_forward_cuda(bf16_t *o, float *HT, float *UT, float *x, float *f, float *states, const bf16_t *q,
                            const bf16_t *k, const bf16_t *v, const float *g, const float *gk, const float *alpha,
                            const float *H0, const float *U0, GkaOpConfig cfg, int B, int T, int H, int K, int V,
                            CudaCtx *cu);
void gka_recur_backward_cuda(bf16_t *dq, bf16_t *dk, bf16_t *dv, float *dg, float *dgk, float *dalpha, float *dH0,
                             float *dU0, float *work, const bf16_t *d_o, const float *dHT, const float *dUT,
                             const bf16_t *q, const bf16_t *k, const bf16_t *v, const float *g, const float *gk,
                             const float *alpha, const float *H0, const float *U0, const float *x, const float *f,
                             const float *states, GkaOpConfig cfg, int B, int T, int H, int K, int V, CudaCtx *cu);

#ifdef __cplusplus
}
#endif
#endif
