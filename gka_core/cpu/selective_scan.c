/* selective_scan.c: the MambaVision selective scan on the CPU (float32), definitions in selective_scan.h.
 * Forward: tasks own (sequence, block of SS_DBLK channels) and carry that block's states through the tokens.
 * Backward: tasks own a sequence, so the gradients of Bm and Cm (sums over channels) have one writer; per
 * chunk of SELECTIVE_SCAN_CHUNK tokens the states are recomputed from the forward's checkpoint, then the
 * adjoint g[d, n] = dL/dh[d, n] runs right to left:
 *   g_t = g_{t+1} a_{t+1} + dy_t Cm_t,   a_t = exp(Delta_t A)
 * and every input's gradient is read off g_t, h_{t-1} and h_t. The exponentials are recomputed with the
 * forward's expressions, so both passes see identical a_t. */
#include <math.h>
#include <string.h>

#include "selective_scan.h"

#define SS_DBLK 16 /* channels per task */
#define SS_CH SELECTIVE_SCAN_CHUNK
#define SS_MAXN SELECTIVE_SCAN_MAX_N

static inline float softplus_f(float v) {
    return v > 20.0f ? v : log1pf(expf(v));
}
static inline float softplus_grad_f(float v) {
    return v > 20.0f ? 1.0f : 1.0f / (1.0f + expf(-v));
}

void selective_scan_forward_cpu(float *y, float *states, const float *x, const float *delta_pre,
                                const float *A_log, const float *Bm, const float *Cm, const float *Dp,
                                const float *dt_bias, int S, int L, int D, int N) {
    const int nblk = (D + SS_DBLK - 1) / SS_DBLK;
    const int64_t nc = selective_scan_nchunks(L);
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t s = 0; s < S; s++)
        for (int blk = 0; blk < nblk; blk++) {
            const int d0 = blk * SS_DBLK, nd = D - d0 < SS_DBLK ? D - d0 : SS_DBLK;
            float h[SS_DBLK][SS_MAXN] = {{0}}, A[SS_DBLK][SS_MAXN];
            for (int i = 0; i < nd; i++)
                for (int n = 0; n < N; n++)
                    A[i][n] = -expf(A_log[(int64_t)(d0 + i) * N + n]);
            for (int t = 0; t < L; t++) {
                const int64_t r = s * L + t;
                if (states && t % SS_CH == 0) {
                    float *st = states + ((s * nc + t / SS_CH) * D + d0) * N;
                    for (int i = 0; i < nd; i++)
                        for (int n = 0; n < N; n++)
                            st[i * N + n] = h[i][n];
                }
                const float *b = Bm + r * N, *c = Cm + r * N;
                for (int i = 0; i < nd; i++) {
                    const int d = d0 + i;
                    const float xv = x[r * D + d], dt = softplus_f(delta_pre[r * D + d] + dt_bias[d]);
                    float acc = 0.0f;
                    for (int n = 0; n < N; n++) {
                        h[i][n] = expf(dt * A[i][n]) * h[i][n] + dt * b[n] * xv;
                        acc += c[n] * h[i][n];
                    }
                    y[r * D + d] = acc + Dp[d] * xv;
                }
            }
        }
}

void selective_scan_backward_cpu(float *dx, float *ddelta_pre, float *dA_log, float *dBm, float *dCm,
                                 float *dD, float *ddt_bias, float *part, const float *dy, const float *x,
                                 const float *delta_pre, const float *A_log, const float *Bm, const float *Cm,
                                 const float *Dp, const float *dt_bias, const float *states, int S, int L,
                                 int D, int N) {
    const int nblk = (D + SS_DBLK - 1) / SS_DBLK, W = N + 2;
    const int64_t nc = selective_scan_nchunks(L);
#pragma omp parallel for schedule(static)
    for (int64_t s = 0; s < S; s++) {
        float *dB = dBm + s * L * N, *dC = dCm + s * L * N;
        memset(dB, 0, sizeof(float) * (size_t)L * N);
        memset(dC, 0, sizeof(float) * (size_t)L * N);
        for (int blk = 0; blk < nblk; blk++) {
            const int d0 = blk * SS_DBLK, nd = D - d0 < SS_DBLK ? D - d0 : SS_DBLK;
            /* hs[k] = state before token t0 + k of the chunk (hs[0] is the checkpoint) */
            float A[SS_DBLK][SS_MAXN], g[SS_DBLK][SS_MAXN] = {{0}}, dA[SS_DBLK][SS_MAXN] = {{0}};
            float hs[SS_CH + 1][SS_DBLK][SS_MAXN], dDacc[SS_DBLK] = {0}, dbacc[SS_DBLK] = {0};
            for (int i = 0; i < nd; i++)
                for (int n = 0; n < N; n++)
                    A[i][n] = -expf(A_log[(int64_t)(d0 + i) * N + n]);
            for (int64_t c = nc - 1; c >= 0; c--) {
                const int t0 = (int)c * SS_CH, len = L - t0 < SS_CH ? L - t0 : SS_CH;
                const float *st = states + ((s * nc + c) * D + d0) * N;
                for (int i = 0; i < nd; i++)
                    for (int n = 0; n < N; n++)
                        hs[0][i][n] = st[i * N + n];
                for (int k = 0; k < len; k++) {
                    const int64_t r = s * L + t0 + k;
                    const float *b = Bm + r * N;
                    for (int i = 0; i < nd; i++) {
                        const int d = d0 + i;
                        const float xv = x[r * D + d], dt = softplus_f(delta_pre[r * D + d] + dt_bias[d]);
                        for (int n = 0; n < N; n++)
                            hs[k + 1][i][n] = expf(dt * A[i][n]) * hs[k][i][n] + dt * b[n] * xv;
                    }
                }
                for (int k = len - 1; k >= 0; k--) {
                    const int64_t r = s * L + t0 + k;
                    const float *b = Bm + r * N, *cm = Cm + r * N;
                    float *dBt = dB + (int64_t)(t0 + k) * N, *dCt = dC + (int64_t)(t0 + k) * N;
                    for (int i = 0; i < nd; i++) {
                        const int d = d0 + i;
                        const float xv = x[r * D + d], v = delta_pre[r * D + d] + dt_bias[d];
                        const float dt = softplus_f(v), dyv = dy[r * D + d];
                        float ddt = 0.0f, dxv = dyv * Dp[d];
                        for (int n = 0; n < N; n++) {
                            const float gn = g[i][n] + dyv * cm[n], a = expf(dt * A[i][n]), hp = hs[k][i][n];
                            dCt[n] += dyv * hs[k + 1][i][n];
                            ddt += gn * (hp * a * A[i][n] + b[n] * xv);
                            dA[i][n] += gn * hp * a * dt;
                            dBt[n] += gn * dt * xv;
                            dxv += gn * dt * b[n];
                            g[i][n] = a * gn;
                        }
                        const float dp = ddt * softplus_grad_f(v);
                        dDacc[i] += dyv * xv;
                        dbacc[i] += dp;
                        ddelta_pre[r * D + d] = dp;
                        dx[r * D + d] = dxv;
                    }
                }
            }
            for (int i = 0; i < nd; i++) { /* dA_log = dA dA/dA_log = dA A */
                float *p = part + (s * D + d0 + i) * W;
                for (int n = 0; n < N; n++)
                    p[n] = dA[i][n] * A[i][n];
                p[N] = dDacc[i];
                p[N + 1] = dbacc[i];
            }
        }
    }
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < (int64_t)D * W; j++) {
        double sum = 0.0;
        for (int64_t s = 0; s < S; s++)
            sum += part[s * D * W + j];
        const int64_t d = j / W, k = j % W;
        if (k < N)
            dA_log[d * N + k] += (float)sum;
        else if (k == N)
            dD[d] += (float)sum;
        else
            ddt_bias[d] += (float)sum;
    }
}
