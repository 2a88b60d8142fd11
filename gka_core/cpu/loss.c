/* loss.c: softmax cross-entropy with soft targets (CPU). For logits x[B, K] and targets t[B, K]:
 * losses[b] = sum_k t_k (lse - x_k) with lse = log sum_k exp(x_k), computed as (x_k - max) and
 * log sum exp(x_k - max) so that no exp overflows; probs = exp(x - lse) saved.
 * Backward: dlogits = dloss * (probs - targets) (written), exact when each target row sums to 1. */
#include <math.h>

#include "ops_cpu.h"

void softmax_xent_forward_cpu(float *losses, float *probs, const float *logits, const float *targets, int B,
                              int K) {
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        const float *x = logits + (int64_t)b * K, *t = targets + (int64_t)b * K;
        float *p = probs + (int64_t)b * K;
        float mx = x[0];
        for (int k = 1; k < K; k++)
            mx = x[k] > mx ? x[k] : mx;
        double sum = 0.0;
        for (int k = 0; k < K; k++)
            sum += exp((double)(x[k] - mx));
        double log_sum = log(sum), loss = 0.0;
        for (int k = 0; k < K; k++) {
            double z = (double)(x[k] - mx) - log_sum; /* log softmax */
            p[k] = (float)exp(z);
            loss -= t[k] * z;
        }
        losses[b] = (float)loss;
    }
}

void softmax_xent_backward_cpu(float *dlogits, const float *probs, const float *targets, float dloss, int B,
                               int K) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < (int64_t)B * K; i++)
        dlogits[i] = dloss * (probs[i] - targets[i]);
}
