/* rmsnorm.c: RMS norm over the last dimension D of [M, D] with a shared weight[D] and an optional SiLU gate
 * (CPU): out = x * rstd * weight * silu(gate), rstd = 1 / sqrt(mean(x^2) + eps). dinp and dgate written,
 * dweight accumulated (threads own blocks of RMS_BLOCK columns for it, so its sums need no reduction). */
#include <math.h>

#include "ops_cpu.h"

#define RMS_BLOCK 16 /* weight-gradient columns per task */

void rmsnorm_forward_cpu(float *out, float *rstd, const float *inp, const float *gate, const float *weight,
                         float eps, int64_t M, int D) {
#pragma omp parallel for schedule(static)
    for (int64_t m = 0; m < M; m++) {
        const float *x = inp + m * D;
        double ss = 0.0;
        for (int d = 0; d < D; d++)
            ss += (double)x[d] * x[d];
        float rs = (float)(1.0 / sqrt(ss / D + eps));
        float *y = out + m * D;
        for (int d = 0; d < D; d++) {
            float s = gate ? act_apply(ACT_SILU, gate[m * D + d]) : 1.0f;
            y[d] = x[d] * rs * weight[d] * s;
        }
        rstd[m] = rs;
    }
}

void rmsnorm_backward_cpu(float *dinp, float *dgate, float *dweight, const float *dout, const float *inp,
                          const float *gate, const float *weight, const float *rstd, int64_t M, int D) {
    if (dinp || dgate) {
#pragma omp parallel for schedule(static)
        for (int64_t m = 0; m < M; m++) {
            const float *x = inp + m * D, *dy = dout + m * D;
            float rs = rstd[m];
            /* h = dL/d(x * rstd); dx = rstd (h - n mean(h n)) with n = x * rstd */
            double sum_hn = 0.0;
            for (int d = 0; d < D; d++) {
                float s = gate ? act_apply(ACT_SILU, gate[m * D + d]) : 1.0f;
                float n = x[d] * rs;
                if (dgate) dgate[m * D + d] = dy[d] * n * weight[d] * act_grad(ACT_SILU, gate[m * D + d]);
                sum_hn += (double)(dy[d] * weight[d] * s) * n;
            }
            if (!dinp) continue;
            float mhn = (float)(sum_hn / D);
            for (int d = 0; d < D; d++) {
                float s = gate ? act_apply(ACT_SILU, gate[m * D + d]) : 1.0f;
                dinp[m * D + d] = rs * (dy[d] * weight[d] * s - x[d] * rs * mhn);
            }
        }
    }
    if (dweight) {
#pragma omp parallel for schedule(static)
        for (int b = 0; b < (D + RMS_BLOCK - 1) / RMS_BLOCK; b++) {
            int d0 = b * RMS_BLOCK, nd = D - d0 < RMS_BLOCK ? D - d0 : RMS_BLOCK;
            double acc[RMS_BLOCK] = {0};
            for (int64_t m = 0; m < M; m++)
                for (int j = 0; j < nd; j++) {
                    int64_t i = m * D + d0 + j;
                    float s = gate ? act_apply(ACT_SILU, gate[i]) : 1.0f;
                    acc[j] += (double)dout[i] * (inp[i] * rstd[m]) * s;
                }
            for (int j = 0; j < nd; j++)
                dweight[d0 + j] += (float)acc[j];
        }
    }
}
