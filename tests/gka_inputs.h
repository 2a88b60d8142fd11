/* gka_inputs.h: random inputs for GKA core-operator tests, drawn as fla's tests draw them (spec gka.md 11):
 * q L2-normalised N(0,1); k L2-normalised N(0,1) times sigmoid(U(0,1)); v N(0,1); g = ln U(0.8, 0.99);
 * alpha = sigmoid(U(0,1)); H0 = sum of 8 outer products of random unit vectors; U0 = 0.1 N(0,1);
 * do N(0,1); dHT, dUT 0.1 N(0,1). Deterministic (Philox, purpose RNG_TEST). */
#ifndef GKA_TEST_INPUTS_H
#define GKA_TEST_INPUTS_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "bf16.h"
#include "core.h"
#include "philox.h"

typedef struct GkaInputs {
    int B, T, H, K, V;
    float *q, *k, *v, *g, *gk, *alpha, *H0, *U0, *d_o, *dHT, *dUT; /* absent ones are NULL */
} GkaInputs;

typedef struct GkaInputFlags {
    int gate_g, gate_gk, tied, alpha, init_state, final_grad;
} GkaInputFlags;

static inline double gi_normal(uint64_t seed, uint32_t stream, uint64_t i) {
    Philox4 r = philox_draw(seed, RNG_TEST + stream, i, 0);
    double u1 = philox_u01_f64(r.v[0], r.v[1]), u2 = philox_u01_f64(r.v[2], r.v[3]);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586 * u2);
}

static inline double gi_uniform(uint64_t seed, uint32_t stream, uint64_t i) {
    Philox4 r = philox_draw(seed, RNG_TEST + stream, i, 0);
    return philox_u01_f64(r.v[0], r.v[1]);
}

static inline float *gi_alloc(size_t n) { return (float *)callocCheck(n ? n : 1, sizeof(float)); }

/* Vectors of length D at each of n positions, L2-normalised, times factor(i) if sig_scale. */
static inline void gi_unit_rows(float *x, size_t n, int D, uint64_t seed, uint32_t stream, int sig_scale) {
    for (size_t r = 0; r < n; r++) {
        double s = 0.0;
        for (int i = 0; i < D; i++) {
            x[r * D + i] = (float)gi_normal(seed, stream, r * D + i);
            s += (double)x[r * D + i] * x[r * D + i];
        }
        double scale = 1.0 / sqrt(s);
        if (sig_scale) scale *= 1.0 / (1.0 + exp(-gi_uniform(seed, stream + 50, r)));
        for (int i = 0; i < D; i++) x[r * D + i] = (float)(x[r * D + i] * scale);
    }
}

static inline GkaInputs gka_inputs_make(int B, int T, int H, int K, int V, GkaInputFlags fl, uint64_t seed) {
    GkaInputs in = {.B = B, .T = T, .H = H, .K = K, .V = V};
    size_t nt = (size_t)B * T * H;
    in.q = gi_alloc(nt * K), in.k = gi_alloc(nt * K), in.v = gi_alloc(nt * V), in.d_o = gi_alloc(nt * V);
    gi_unit_rows(in.q, nt, K, seed, 1, 0);
    gi_unit_rows(in.k, nt, K, seed, 2, 1);
    for (size_t i = 0; i < nt * V; i++) in.v[i] = (float)gi_normal(seed, 3, i), in.d_o[i] = (float)gi_normal(seed, 4, i);
    if (fl.gate_g || fl.tied) {
        in.g = gi_alloc(nt);
        for (size_t i = 0; i < nt; i++) in.g[i] = (float)log(0.8 + 0.19 * gi_uniform(seed, 5, i));
    }
    if (fl.tied) {
        in.gk = in.g;
    } else if (fl.gate_gk) {
        in.gk = gi_alloc(nt);
        for (size_t i = 0; i < nt; i++) in.gk[i] = (float)log(0.8 + 0.19 * gi_uniform(seed, 6, i));
    }
    if (fl.alpha) {
        in.alpha = gi_alloc(nt);
        for (size_t i = 0; i < nt; i++) in.alpha[i] = (float)(1.0 / (1.0 + exp(-gi_uniform(seed, 7, i))));
    }
    if (fl.init_state) {
        size_t ns = (size_t)B * H;
        in.H0 = gi_alloc(ns * K * K), in.U0 = gi_alloc(ns * K * V);
        float *u = gi_alloc((size_t)8 * K);
        for (size_t s = 0; s < ns; s++) {
            gi_unit_rows(u, 8, K, seed + s, 8, 0);
            for (int r = 0; r < 8; r++)
                for (int i = 0; i < K; i++)
                    for (int j = 0; j < K; j++) in.H0[s * K * K + (size_t)i * K + j] += u[r * K + i] * u[r * K + j];
        }
        free(u);
        for (size_t i = 0; i < ns * K * V; i++) in.U0[i] = (float)(0.1 * gi_normal(seed, 9, i));
    }
    if (fl.final_grad) {
        size_t ns = (size_t)B * H;
        in.dHT = gi_alloc(ns * K * K), in.dUT = gi_alloc(ns * K * V);
        for (size_t i = 0; i < ns * K * K; i++) in.dHT[i] = (float)(0.1 * gi_normal(seed, 10, i));
        for (size_t i = 0; i < ns * K * V; i++) in.dUT[i] = (float)(0.1 * gi_normal(seed, 11, i));
    }
    return in;
}

/* Rounds the tensors a GPU holds in bf16 (q, k, v, do), so both twins see the same values. */
static inline void gka_inputs_round_bf16(GkaInputs *in) {
    size_t nt = (size_t)in->B * in->T * in->H;
    for (size_t i = 0; i < nt * in->K; i++) in->q[i] = bf16_round(in->q[i]), in->k[i] = bf16_round(in->k[i]);
    for (size_t i = 0; i < nt * in->V; i++) in->v[i] = bf16_round(in->v[i]), in->d_o[i] = bf16_round(in->d_o[i]);
}

static inline void gka_inputs_free(GkaInputs *in) {
    if (in->gk != in->g) free(in->gk);
    free(in->q), free(in->k), free(in->v), free(in->g), free(in->alpha), free(in->H0), free(in->U0);
    free(in->d_o), free(in->dHT), free(in->dUT);
}

/* rms(a - b) / rms(b), fla's err_ratio; NaN or Inf anywhere gives +Inf. */
static inline double err_ratio_f(const float *a, const float *b, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(b[i])) return INFINITY;
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
    }
    return n ? sqrt(num / n) / (sqrt(den / n) + 1e-8) : 0.0;
}

#endif
