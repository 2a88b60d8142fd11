/* gka_ref.h: the float64 reference of the GKA core operator (spec gka.md sections 3, 4, 5.1, 5.2), token by
 * token. It is what every other form (chunked CPU, CUDA) is tested against, and it is itself tested against
 * the worked example of spec 5.3 and against central finite differences.
 *
 * Letters: B batch, T tokens, H heads, K key/query dim, V value dim, n Chebyshev iterations, a ridge ratio,
 * s readout scale.
 * Layouts (spec 0.2, head-last, row-major): q, k, x [B,T,H,K]; v, o [B,T,H,V]; g, gk, alpha, f [B,T,H];
 * H0, HT [B,H,K,K]; U0, UT [B,H,K,V] (key-major: row = key index).
 * Absent inputs (NULL) take their neutral value: g = gk = 0 (no decay), alpha = 1 (q~ = x), H0 = U0 = 0.
 * Outputs that are NULL are not computed. A gradient requested for an absent input is the gradient at
 * that neutral value (so dg with g == NULL is dL/dg at g = 0).
 * Gradients are WRITTEN (=). g (decay of U) and gk (decay of H) are separate inputs: when the caller ties
 * them (one tensor for both, as the layer does), the gradient of that tensor is dg + dgk, which the caller
 * adds; dg and dgk must then still be two different buffers.
 * dH0 is the gradient with respect to a general (not necessarily symmetric) K x K matrix, as autograd of a
 * general solve gives it (spec 5.2: P = -sum y x^T ...). Only its symmetric part matters when H0 is
 * constrained to be symmetric; the antisymmetric part is what a state-chaining caller must pass on. */
#ifndef GKA_REF_H
#define GKA_REF_H

#include "gka_op.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct GkaRefConfig {
    double ridge;    /* a (default 0.02) */
    int num_iter;    /* n (default 30); used when exact == 0 */
    double scale;    /* s (default K^-1/2) */
    int exact;       /* 1: Cholesky solve (true exact-solve operator); 0: n Chebyshev iterations (spec 4) */
    int f32_iterate; /* Chebyshev only: round the iterate to float32 after every step, all else float64. It
                      * measures the error floor of any implementation that keeps x in float32 (spec 9.2,
                      * 9.11), which tests use to tell that floor apart from a bug. 0 by default. */
} GkaRefConfig;

/* a = 0.02, n = 30, s = K^-1/2, given solver. */
GkaRefConfig gka_ref_config_default(int K, int exact);
/* The reference settings that match a float32 operator's settings (same float values, widened). */
GkaRefConfig gka_ref_config_from_op(GkaOpConfig cfg, int exact);

/* Forward (spec 5.1). x and f (per-token solution and Frobenius norm) are for tests; NULL skips them. */
void gka_ref_forward(double *o, double *HT, double *UT, double *x, double *f, const double *q,
                     const double *k, const double *v, const double *g, const double *gk, const double *alpha,
                     const double *H0, const double *U0, GkaRefConfig cfg, int B, int T, int H, int K, int V);

/* Backward (spec 5.2) of L = sum(o * d_o) + sum(HT * dHT) + sum(UT * dUT) (dHT, dUT NULL = 0). The forward
 * is recomputed inside (states checkpointed every ~sqrt(T) tokens). The adjoint solve y = A_t^-1 dx_t uses
 * the same solver as cfg.exact selects for the forward: with Chebyshev this gives the exact-solve gradient
 * formulas evaluated at the Chebyshev iterates, which is what the chunked kernels compute (spec 5.2, last
 * paragraph); only with exact = 1 is it the true gradient of gka_ref_forward. */
void gka_ref_backward(double *dq, double *dk, double *dv, double *dg, double *dgk, double *dalpha,
                      double *dH0, double *dU0, const double *d_o, const double *dHT, const double *dUT,
                      const double *q, const double *k, const double *v, const double *g, const double *gk,
                      const double *alpha, const double *H0, const double *U0, GkaRefConfig cfg, int B, int T,
                      int H, int K, int V);

#ifdef __cplusplus
}
#endif
#endif
