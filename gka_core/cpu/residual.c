/* residual.c: out = res + droppath_scale(s) * gamma * branch over [S, rows_per_sample, C] (CPU); gamma
 * (layer scale) may be absent (= 1), out may alias res. The drop-path scale of a row comes from its sample s,
 * so forward and backward regenerate the same mask. dbranch written, dgamma accumulated. */
#include "ops_cpu.h"

#define RES_BLOCK 16 /* dgamma channels per task */

void residual_forward_cpu(float *out, const float *res, const float *branch, const float *gamma, DropPath dp,
                          int64_t S, int64_t rows_per_sample, int C) {
#pragma omp parallel for schedule(static)
    for (int64_t row = 0; row < S * rows_per_sample; row++) {
        float sc = droppath_scale(dp, row / rows_per_sample);
        int64_t i = row * C;
        if (gamma)
            for (int c = 0; c < C; c++)
                out[i + c] = res[i + c] + sc * gamma[c] * branch[i + c];
        else
            for (int c = 0; c < C; c++)
                out[i + c] = res[i + c] + sc * branch[i + c];
    }
}

void residual_backward_cpu(float *dbranch, float *dgamma, const float *dout, const float *branch,
                           const float *gamma, DropPath dp, int64_t S, int64_t rows_per_sample, int C) {
    if (dbranch) {
#pragma omp parallel for schedule(static)
        for (int64_t row = 0; row < S * rows_per_sample; row++) {
            float sc = droppath_scale(dp, row / rows_per_sample);
            int64_t i = row * C;
            for (int c = 0; c < C; c++)
                dbranch[i + c] = sc * (gamma ? gamma[c] : 1.0f) * dout[i + c];
        }
    }
    if (dgamma) {
#pragma omp parallel for schedule(static)
        for (int b = 0; b < (C + RES_BLOCK - 1) / RES_BLOCK; b++) {
            int c0 = b * RES_BLOCK, nc = C - c0 < RES_BLOCK ? C - c0 : RES_BLOCK;
            double acc[RES_BLOCK] = {0};
            for (int64_t s = 0; s < S; s++) {
                float sc = droppath_scale(dp, s);
                if (sc == 0.0f) continue;
                double part[RES_BLOCK] = {0};
                for (int64_t i = s * rows_per_sample * C + c0; i < (s + 1) * rows_per_sample * C; i += C)
                    for (int j = 0; j < nc; j++)
                        part[j] += (double)dout[i + j] * branch[i + j];
                for (int j = 0; j < nc; j++)
                    acc[j] += sc * part[j];
            }
            for (int j = 0; j < nc; j++)
                dgamma[c0 + j] += (float)acc[j];
        }
    }
}
