/* gka_op.h: settings shared by every implementation of the GKA core operator (spec gka.md section 3):
 * the float64 reference, the chunked and token-recurrent CPU forms, and their CUDA twins. */
#ifndef GKA_OP_H
#define GKA_OP_H

#ifdef __cplusplus
extern "C" {
#endif

/* Which form of the operator runs. AUTO: the token-recurrent form when K <= 32 and V <= 32 (a warp holds a
 * sequence's states; about 4C/K times less arithmetic than the chunked form), the chunked form otherwise.
 * The CPU and the GPU pick the same form, so each CUDA path is tested against its own CPU twin. */
typedef enum { GKA_ALGO_AUTO = 0, GKA_ALGO_RECURRENT, GKA_ALGO_CHUNKED } GkaAlgo;

typedef struct GkaOpConfig {
    float ridge;  /* a: lambda_t = a ||H_t||_F (default 0.02) */
    int num_iter; /* n: Chebyshev iterations (default 30) */
    float scale;  /* s: readout scale (default K^-1/2) */
    int chunk;    /* C: chunk length of the chunked forms (default 64) */
    GkaAlgo algo;
} GkaOpConfig;

/* The Frobenius norm is clamped below to this value before it divides anything (spec 9.4): f = 0 only
 * happens when every key so far is exactly zero, and the clamp keeps the solve finite there. */
#define GKA_MIN_FROB 1e-30f

/* The Chebyshev omega sequence of spec section 4 (the same for every token): omega[i] after iteration
 * i + 1, computed in double and rounded once, so that every implementation uses identical values. */
void gka_chebyshev_omegas(float *omega, int n, float ridge);

#ifdef __cplusplus
}
#endif
#endif
