/* gka_chunk.h: the GKA core operator in chunk-wise form (spec gka.md sections 6 and 7), float32 on the CPU;
 * the CUDA twin takes the same arguments plus a trailing CudaCtx *.
 *
 * Letters: B batch, T tokens, H heads, K key/query dim, V value dim, C chunk length (cfg.chunk),
 * NT = ceil(T / C) chunks, n Chebyshev iterations (cfg.num_iter).
 * Layouts (spec 0.2, head-last, row-major): q, k, x, dq, dk [B,T,H,K]; v, o, d_o, dv [B,T,H,V];
 * g, gk, alpha, f and their gradients [B,T,H]; H0, HT, dH0, dHT [B,H,K,K]; U0, UT, dU0, dUT [B,H,K,V].
 * Absent inputs (NULL) take their neutral value: g = gk = 0, alpha = 1, H0 = U0 = 0; dHT = dUT = 0.
 * Outputs that are NULL are not computed; a gradient asked for an absent input is the gradient at its
 * neutral value. H0 must be symmetric (it is a key covariance state).
 * The forward saves x (the Chebyshev solution) and f (the Frobenius norms ||H_t||_F) for the backward;
 * pass NULL when no backward follows. The backward's adjoint solve reuses f bit for bit (spec 9.9).
 * Gradients are WRITTEN (=). g and gk are separate inputs; for a tied gate (one tensor for both, as the
 * layer does) the caller adds dg + dgk (dg and dgk must be two different buffers).
 * The backward gives the exact-solve gradient formulas of spec 5.2 evaluated at the Chebyshev iterates,
 * as upstream does; they are not the derivative of the n-step iteration itself. */
#ifndef GKA_CHUNK_H
#define GKA_CHUNK_H

#include "bf16.h"
#include "context.h"
#include "gka_op.h" /* GkaOpConfig {ridge, num_iter, scale, chunk}, shared with the other GKA forms */

#ifdef __cplusplus
extern "C" {
#endif

/* The sizes of one call with NT = ceil(T / C) chunks, checked (a bad size or setting stops with a message
 * naming `op`); both twins take them from here. */
typedef struct GkaChunkDims {
    int B, T, H, K, V, C, NT;
} GkaChunkDims;
GkaChunkDims gka_chunk_dims(const char *op, GkaOpConfig cfg, int B, int T, int H, int K, int V);

/* a = 0.02, n = 30, s = K^-1/2, C = 64 (spec 8.1). */
GkaOpConfig gka_op_config_default(int K);

void gka_chunk_forward_cpu(float *o, float *HT, float *UT, float *x, float *f, const float *q, const float *k,
                           const float *v, const float *g, const float *gk, const float *alpha,
                           const float *H0, const float *U0, GkaOpConfig cfg, int B, int T, int H, int K,
                           int V);

void gka_chunk_backward_cpu(float *dq, float *dk, float *dv, float *dg, float *dgk, float *dalpha, float *dH0,
                            float *dU0, const float *d_o, const float *dHT, const float *dUT, const float *q,
                            const float *k, const float *v, const float *g, const float *gk,
                            const float *alpha, const float *H0, const float *U0, const float *x,
                            const float *f, GkaOpConfig cfg, int B, int T, int H, int K, int V);

/* CUDA twins (gka_chunk.cu, CUDA builds only): q, k, v, o, d_o, dq, dk, dv in bf16, everything else float32,
 * as above. Any K, V and chunk length; num_iter <= 128. Unlike the CPU twins they also accept dg == dgk (a
 * tied gate: that buffer receives dg + dgk). Device scratch comes from the context. */
void gka_chunk_forward_cuda(bf16_t *o, float *HT, float *UT, float *x, float *f, const bf16_t *q,
                            const bf16_t *k, const bf16_t *v, const float *g, const float *gk,
                            const float *alpha, const float *H0, const float *U0, GkaOpConfig cfg, int B,
                            int T, int H, int K, int V, CudaCtx *cu);
void gka_chunk_backward_cuda(bf16_t *dq, bf16_t *dk, bf16_t *dv, float *dg, float *dgk, float *dalpha,
                             float *dH0, float *dU0, const bf16_t *d_o, const float *dHT, const float *dUT,
                             const bf16_t *q, const bf16_t *k, const bf16_t *v, const float *g,
                             const float *gk, const float *alpha, const float *H0, const float *U0,
                             const float *x, const float *f, GkaOpConfig cfg, int B, int T, int H, int K,
                             int V, CudaCtx *cu);

#ifdef __cplusplus
}
#endif
#endif
