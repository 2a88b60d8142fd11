// loss.cu: softmax cross-entropy with soft targets. logits [B, K] bf16, targets [B, K] float32 (rows sum to
// 1), losses [B] and the saved probabilities [B, K] float32. One block per row: the row max, then
// lse = max + log sum exp(x - max) (no exp overflows), then probs = exp(x - lse) and
// loss = -sum_k t_k (x_k - lse), each a block reduction in a fixed order. Backward:
// dlogits = dloss * (probs - targets), written as bf16.
#include <math.h>

#include "cuda_common.h"
#include "ops_cuda.h"
#include "reduce.cuh"

#define XENT_THREADS 256

__global__ void __launch_bounds__(XENT_THREADS)
    softmax_xent_forward_kernel(float *losses, float *probs, const bf16 *logits, const float *targets,
                                int K) {
    long long b = blockIdx.x;
    const bf16 *x = logits + b * K;
    const float *t = targets + b * K;
    float *p = probs + b * K;
    float mx = -INFINITY;
    for (int k = threadIdx.x; k < K; k += XENT_THREADS)
        mx = fmaxf(mx, __bfloat162float(x[k]));
    mx = block_reduce<XENT_THREADS>(mx, 1);
    float sum = 0.0f;
    for (int k = threadIdx.x; k < K; k += XENT_THREADS)
        sum += expf(__bfloat162float(x[k]) - mx);
    float log_sum = logf(block_reduce<XENT_THREADS>(sum, 0)), loss = 0.0f;
    for (int k = threadIdx.x; k < K; k += XENT_THREADS) {
        float z = (__bfloat162float(x[k]) - mx) - log_sum; /* log softmax */
        p[k] = expf(z);
        loss -= t[k] * z;
    }
    loss = block_reduce<XENT_THREADS>(loss, 0);
    if (threadIdx.x == 0) losses[b] = loss;
}

__global__ void softmax_xent_backward_kernel(bf16 *dlogits, const float *probs, const float *targets,
                                             float dloss, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dlogits[i] = __float2bfloat16_rn(dloss * (probs[i] - targets[i]));
}

extern "C" void softmax_xent_forward_cuda(float *losses, float *probs, const bf16_t *logits,
                                          const float *targets, int B, int K, CudaCtx *cu) {
    if (B == 0 || K == 0) return;
    softmax_xent_forward_kernel<<<B, XENT_THREADS, 0, cu->stream>>>(losses, probs, (const bf16 *)logits,
                                                                    targets, K);
    cudaCheckLast();
}

extern "C" void softmax_xent_backward_cuda(bf16_t *dlogits, const float *probs, const float *targets,
                                           float dloss, int B, int K, CudaCtx *cu) {
    long long n = (long long)B * K;
    if (n == 0) return;
    softmax_xent_backward_kernel<<<ceil_div(n, 256), 256, 0, cu->stream>>>((bf16 *)dlogits, probs, targets,
                                                                           dloss, n);
    cudaCheckLast();
}
