/* layernorm.c: layer norm over the last dimension (CPU). */
#include <math.h>

#include "ops_cpu.h"

void layernorm_forward_cpu(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                           const float *bias, float eps, int64_t M, int C) {
#pragma omp parallel for schedule(static)
    for (int64_t m = 0; m < M; m++) {
        const float *x = inp + m * C;
        double s = 0.0;
        for (int c = 0; c < C; c++) s += x[c];
        float mu = (float)(s / C);
        double v = 0.0;
        for (int c = 0; c < C; c++) v += (double)(x[c] - mu) * (x[c] - mu);
        float rs = 1.0f / sqrtf((float)(v / C) + eps);
        float *y = out + m * C;
        for (int c = 0; c < C; c++) y[c] = (x[c] - mu) * rs * weight[c] + bias[c];
        mean[m] = mu;
        rstd[m] = rs;
    }
}

void layernorm_backward_cpu(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                            const float *weight, const float *mean, const float *rstd, int64_t M, int C) {
    if (dinp) {
#pragma omp parallel for schedule(static)
        for (int64_t m = 0; m < M; m++) {
            const float *x = inp + m * C, *dy = dout + m * C;
            float mu = mean[m], rs = rstd[m];
            double sum_g = 0.0, sum_gx = 0.0;
            for (int c = 0; c < C; c++) {
                float g = dy[c] * weight[c];
                sum_g += g;
                sum_gx += (double)g * (x[c] - mu) * rs;
            }
            float mg = (float)(sum_g / C), mgx = (float)(sum_gx / C);
            float *dx = dinp + m * C;
            for (int c = 0; c < C; c++) {
                float xhat = (x[c] - mu) * rs;
                dx[c] = (dy[c] * weight[c] - mg - xhat * mgx) * rs;
            }
        }
    }
    if (dweight || dbias) {
#pragma omp parallel for schedule(static)
        for (int c = 0; c < C; c++) {
            double sw = 0.0, sb = 0.0;
            for (int64_t m = 0; m < M; m++) {
                float dy = dout[m * C + c];
                sw += (double)dy * (inp[m * C + c] - mean[m]) * rstd[m];
                sb += dy;
            }
            if (dweight) dweight[c] += (float)sw;
            if (dbias) dbias[c] += (float)sb;
        }
    }
}
