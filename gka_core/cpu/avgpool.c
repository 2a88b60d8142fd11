/* avgpool.c: mean over the L tokens of [B, L, C] (CPU). Threads own (image, block of channels) pairs. */
#include "ops_cpu.h"

#define POOL_BLOCK 16

void avgpool_forward_cpu(float *out, const float *inp, int B, int L, int C) {
    int nblk = (C + POOL_BLOCK - 1) / POOL_BLOCK;
#pragma omp parallel for schedule(static)
    for (int64_t task = 0; task < (int64_t)B * nblk; task++) {
        int64_t b = task / nblk;
        int c0 = (int)(task % nblk) * POOL_BLOCK, nc = C - c0 < POOL_BLOCK ? C - c0 : POOL_BLOCK;
        double acc[POOL_BLOCK] = {0};
        for (int l = 0; l < L; l++)
            for (int j = 0; j < nc; j++)
                acc[j] += inp[(b * L + l) * C + c0 + j];
        for (int j = 0; j < nc; j++)
            out[b * C + c0 + j] = (float)(acc[j] / L);
    }
}

void avgpool_backward_cpu(float *dinp, const float *dout, int B, int L, int C) {
    float inv = 1.0f / (float)L;
#pragma omp parallel for schedule(static)
    for (int64_t row = 0; row < (int64_t)B * L; row++) {
        const float *dy = dout + row / L * C;
        for (int c = 0; c < C; c++)
            dinp[row * C + c] = dy[c] * inv;
    }
}
