/* shortconv.c: depth-wise 1-D convolution along the tokens of [S, L, C] with weight [C, W], then `act`
 * (CPU). out[s, t, c] = act(sum_i weight[c, i] inp[s, t - off + i, c]), zero outside [0, L), with off = W - 1
 * (causal: tap W - 1 on the current token) or (W - 1) / 2 ("same", W odd).
 * The backward recomputes the pre-activation with the forward's summation order. Threads own blocks of
 * SC_BLOCK channels over all sequences, so dinp can be scattered and dweight summed in double without
 * conflicts or scratch. dinp written, dweight accumulated. */
#include "ops_cpu.h"

#define SC_BLOCK 16 /* channels per backward task */
#define SC_TAPS 8   /* weight-gradient accumulators per pass over the data; wider kernels take more passes */

static int tap_offset(int causal, int W) {
    return causal ? W - 1 : (W - 1) / 2;
}

void shortconv_forward_cpu(float *out, const float *inp, const float *weight, int causal, Act act, int S,
                           int L, int C, int W) {
    int off = tap_offset(causal, W);
#pragma omp parallel for schedule(static)
    for (int64_t row = 0; row < (int64_t)S * L; row++) {
        int64_t s = row / L;
        int t = (int)(row % L);
        float *y = out + row * C;
        for (int c = 0; c < C; c++)
            y[c] = 0.0f;
        for (int i = 0; i < W; i++) {
            int u = t - off + i;
            if (u < 0 || u >= L) continue;
            const float *x = inp + (s * L + u) * C;
            for (int c = 0; c < C; c++)
                y[c] += weight[(int64_t)c * W + i] * x[c];
        }
        for (int c = 0; c < C; c++)
            y[c] = act_apply(act, y[c]);
    }
}

void shortconv_backward_cpu(float *dinp, float *dweight, const float *dout, const float *inp,
                            const float *weight, int causal, Act act, int S, int L, int C, int W) {
    int off = tap_offset(causal, W);
#pragma omp parallel for schedule(static)
    for (int blk = 0; blk < (C + SC_BLOCK - 1) / SC_BLOCK; blk++) {
        int c0 = blk * SC_BLOCK, nc = C - c0 < SC_BLOCK ? C - c0 : SC_BLOCK;
        for (int i0 = 0; i0 < W; i0 += SC_TAPS) { /* this pass scatters and sums the taps [i0, i1) */
            int i1 = W - i0 < SC_TAPS ? W : i0 + SC_TAPS;
            double acc[SC_TAPS][SC_BLOCK] = {{0}};
            for (int64_t s = 0; s < S; s++) {
                const float *x = inp + s * L * C + c0;
                float *dx = dinp ? dinp + s * L * C + c0 : NULL;
                if (dx && i0 == 0)
                    for (int t = 0; t < L; t++)
                        for (int j = 0; j < nc; j++)
                            dx[(int64_t)t * C + j] = 0.0f;
                for (int t = 0; t < L; t++) {
                    float g[SC_BLOCK];
                    for (int j = 0; j < nc; j++)
                        g[j] = 0.0f;
                    for (int i = 0; i < W; i++) {
                        int u = t - off + i;
                        if (u < 0 || u >= L) continue;
                        for (int j = 0; j < nc; j++)
                            g[j] += weight[(int64_t)(c0 + j) * W + i] * x[(int64_t)u * C + j];
                    }
                    const float *dy = dout + (s * L + t) * C + c0;
                    for (int j = 0; j < nc; j++)
                        g[j] = dy[j] * act_grad(act, g[j]);
                    for (int i = i0; i < i1; i++) {
                        int u = t - off + i;
                        if (u < 0 || u >= L) continue;
                        for (int j = 0; j < nc; j++) {
                            if (dx) dx[(int64_t)u * C + j] += weight[(int64_t)(c0 + j) * W + i] * g[j];
                            acc[i - i0][j] += (double)g[j] * x[(int64_t)u * C + j];
                        }
                    }
                }
            }
            if (dweight)
                for (int i = i0; i < i1; i++)
                    for (int j = 0; j < nc; j++)
                        dweight[(int64_t)(c0 + j) * W + i] += (float)acc[i - i0][j];
        }
    }
}
