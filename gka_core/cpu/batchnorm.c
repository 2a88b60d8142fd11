/* batchnorm.c: batch norm over the channel (last) dimension of [M, C], M = N*H*W, fused with an activation
 * (CPU). Threads own blocks of BN_BLOCK channels and walk all M rows, so every per-channel sum is one
 * thread's double accumulator: no scratch, no reduction across threads. The pre-activation is always formed
 * as (x - mean) * (rstd * weight) + bias, in the forward and when the backward recomputes it, so both see the
 * same value. dinp written; dweight and dbias accumulated. */
#include <math.h>

#include "ops_cpu.h"

#define BN_BLOCK 16 /* channels per task: one cache line of floats per row */

static int n_blocks(int C) {
    return (C + BN_BLOCK - 1) / BN_BLOCK;
}
static int block_width(int b, int C) {
    return C - b * BN_BLOCK < BN_BLOCK ? C - b * BN_BLOCK : BN_BLOCK;
}

/* out = act((x - shift) * scale + bias) over the channels [c0, c0 + nc) of every row. */
static void bn_apply(float *out, const float *inp, const float *shift, const float *scale, const float *bias,
                     Act act, int64_t M, int C, int c0, int nc) {
    for (int64_t m = 0; m < M; m++) {
        const float *x = inp + m * C + c0;
        float *y = out + m * C + c0;
        for (int j = 0; j < nc; j++)
            y[j] = act_apply(act, (x[j] - shift[j]) * scale[j] + bias[j]);
    }
}

void batchnorm_forward_train_cpu(float *out, float *mean, float *rstd, float *running_mean,
                                 float *running_var, const float *inp, const float *weight, const float *bias,
                                 float momentum, float eps, Act act, int64_t M, int C) {
    /* M == 1 has no unbiased variance; the biased one (0) goes to the running average instead of inf. */
    double unbias = M > 1 ? (double)M / (double)(M - 1) : 1.0;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < n_blocks(C); b++) {
        int c0 = b * BN_BLOCK, nc = block_width(b, C);
        double sum[BN_BLOCK] = {0}, sq[BN_BLOCK] = {0}, mu[BN_BLOCK];
        for (int64_t m = 0; m < M; m++)
            for (int j = 0; j < nc; j++)
                sum[j] += inp[m * C + c0 + j];
        for (int j = 0; j < nc; j++)
            mu[j] = sum[j] / (double)M;
        for (int64_t m = 0; m < M; m++)
            for (int j = 0; j < nc; j++) {
                double dx = inp[m * C + c0 + j] - mu[j];
                sq[j] += dx * dx;
            }
        float scale[BN_BLOCK];
        for (int j = 0; j < nc; j++) {
            int c = c0 + j;
            double var = sq[j] / (double)M;
            mean[c] = (float)mu[j];
            rstd[c] = (float)(1.0 / sqrt(var + eps));
            scale[j] = rstd[c] * weight[c];
            running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + (double)momentum * mu[j]);
            running_var[c] = (float)((1.0 - momentum) * running_var[c] + (double)momentum * var * unbias);
        }
        bn_apply(out, inp, mean + c0, scale, bias + c0, act, M, C, c0, nc);
    }
}

void batchnorm_forward_eval_cpu(float *out, const float *inp, const float *weight, const float *bias,
                                const float *running_mean, const float *running_var, float eps, Act act,
                                int64_t M, int C) {
#pragma omp parallel for schedule(static)
    for (int b = 0; b < n_blocks(C); b++) {
        int c0 = b * BN_BLOCK, nc = block_width(b, C);
        float scale[BN_BLOCK];
        for (int j = 0; j < nc; j++)
            scale[j] = (float)(1.0 / sqrt((double)running_var[c0 + j] + eps)) * weight[c0 + j];
        bn_apply(out, inp, running_mean + c0, scale, bias + c0, act, M, C, c0, nc);
    }
}

void batchnorm_backward_cpu(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                            const float *weight, const float *bias, const float *mean, const float *rstd,
                            Act act, int64_t M, int C) {
#pragma omp parallel for schedule(static)
    for (int b = 0; b < n_blocks(C); b++) {
        int c0 = b * BN_BLOCK, nc = block_width(b, C);
        float scale[BN_BLOCK];
        for (int j = 0; j < nc; j++)
            scale[j] = rstd[c0 + j] * weight[c0 + j];
        /* g = dL/d(normalised * weight + bias), through the activation */
        double sum_g[BN_BLOCK] = {0}, sum_gx[BN_BLOCK] = {0};
        for (int64_t m = 0; m < M; m++)
            for (int j = 0; j < nc; j++) {
                int c = c0 + j;
                float d = inp[m * C + c] - mean[c];
                float g = dout[m * C + c] * act_grad(act, d * scale[j] + bias[c]);
                sum_g[j] += g;
                sum_gx[j] += (double)g * (d * rstd[c]);
            }
        for (int j = 0; j < nc; j++) {
            if (dbias) dbias[c0 + j] += (float)sum_g[j];
            if (dweight) dweight[c0 + j] += (float)sum_gx[j];
        }
        if (!dinp) continue;
        float mg[BN_BLOCK], mgx[BN_BLOCK];
        for (int j = 0; j < nc; j++)
            mg[j] = (float)(sum_g[j] / (double)M), mgx[j] = (float)(sum_gx[j] / (double)M);
        for (int64_t m = 0; m < M; m++)
            for (int j = 0; j < nc; j++) {
                int c = c0 + j;
                float d = inp[m * C + c] - mean[c];
                float g = dout[m * C + c] * act_grad(act, d * scale[j] + bias[c]);
                dinp[m * C + c] = (g - mg[j] - d * rstd[c] * mgx[j]) * scale[j];
            }
    }
}
