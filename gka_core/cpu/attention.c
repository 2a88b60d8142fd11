/* attention.c: non-causal multi-head self-attention (CPU), one task per (sequence, head), two or four
 * OpenBLAS GEMMs each.
 * S sequences of L tokens, C channels, NH heads of dh = C / NH. qkv [S, L, 3C] holds q, k, v side by side;
 * head h of each is the column block h*dh .. h*dh + dh - 1, read in place with a row stride of 3C.
 * att [S, NH, L, L] keeps the softmax probabilities P; the backward uses datt (same shape) for dP and then
 * dS. dqkv written. */
#include <math.h>

#include "ops_cpu.h"

void attention_forward_cpu(float *out, float *att, const float *qkv, int S, int L, int C, int n_heads) {
    int dh = C / n_heads, ld = 3 * C;
    float scale = 1.0f / sqrtf((float)dh);
#pragma omp parallel for schedule(static)
    for (int sh = 0; sh < S * n_heads; sh++) {
        int s = sh / n_heads, h = sh % n_heads;
        const float *q = qkv + (int64_t)s * L * ld + h * dh, *k = q + C, *v = q + 2 * C;
        float *p = att + (int64_t)sh * L * L;
        gemm_cpu(0, 1, L, L, dh, scale, q, ld, k, ld, 0.0f, p, L);
        for (int i = 0; i < L; i++) {
            float *row = p + (int64_t)i * L;
            float mx = row[0], sum = 0.0f;
            for (int j = 1; j < L; j++)
                mx = row[j] > mx ? row[j] : mx;
            for (int j = 0; j < L; j++)
                sum += (row[j] = expf(row[j] - mx));
            float inv = 1.0f / sum;
            for (int j = 0; j < L; j++)
                row[j] *= inv;
        }
        gemm_cpu(0, 0, L, dh, L, 1.0f, p, L, v, ld, 0.0f, out + (int64_t)s * L * C + h * dh, C);
    }
}

void attention_backward_cpu(float *dqkv, float *datt, const float *dout, const float *qkv, const float *att,
                            int S, int L, int C, int n_heads) {
    int dh = C / n_heads, ld = 3 * C;
    float scale = 1.0f / sqrtf((float)dh);
#pragma omp parallel for schedule(static)
    for (int sh = 0; sh < S * n_heads; sh++) {
        int s = sh / n_heads, h = sh % n_heads;
        int64_t head = (int64_t)s * L * ld + h * dh;
        const float *q = qkv + head, *k = q + C, *v = q + 2 * C, *dy = dout + (int64_t)s * L * C + h * dh;
        float *dq = dqkv + head, *dk = dq + C, *dv = dq + 2 * C;
        const float *p = att + (int64_t)sh * L * L;
        float *dp = datt + (int64_t)sh * L * L;
        gemm_cpu(1, 0, L, dh, L, 1.0f, p, L, dy, C, 0.0f, dv, ld);
        gemm_cpu(0, 1, L, L, dh, 1.0f, dy, C, v, ld, 0.0f, dp, L);
        for (int i = 0; i < L; i++) { /* softmax backward, in place: dS = P (dP - rowsum(P dP)) */
            const float *pr = p + (int64_t)i * L;
            float *dr = dp + (int64_t)i * L;
            float dot = 0.0f;
            for (int j = 0; j < L; j++)
                dot += pr[j] * dr[j];
            for (int j = 0; j < L; j++)
                dr[j] = pr[j] * (dr[j] - dot);
        }
        gemm_cpu(0, 0, L, dh, L, scale, dp, L, k, ld, 0.0f, dq, ld);
        gemm_cpu(1, 0, L, dh, L, scale, dp, L, q, ld, 0.0f, dk, ld);
    }
}
