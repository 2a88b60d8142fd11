/* ops_cuda.h: the CUDA twins of the ops in ops.h. Same name stem and argument order as the CPU twins
 * (ops_cpu.h); activations bf16, parameter gradients and saved statistics float32; each launcher ends
 * with the CudaCtx, whose stream it runs on (and whose handles it uses). Each op added here gets a case
 * in tests/test_ops.c comparing it with its CPU twin. */
#ifndef GKA_OPS_CUDA_H
#define GKA_OPS_CUDA_H

#include <stdint.h>

#include "bf16.h"
#include "context.h"
#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

void matmul_forward_cuda(bf16_t *out, bf16_t *pre_gelu, const bf16_t *inp, const bf16_t *weight,
                         const bf16_t *bias, int64_t M, int IC, int OC, CudaCtx *cu);
void matmul_backward_cuda(bf16_t *dinp, float *dweight, float *dbias, bf16_t *dout, const bf16_t *inp,
                          const bf16_t *weight, const bf16_t *pre_gelu, int dinp_accumulate, int64_t M, int IC,
                          int OC, CudaCtx *cu);

void conv2d_forward_cuda(bf16_t *out, const bf16_t *inp, const bf16_t *weight, const bf16_t *bias, int N,
                         int H, int W, int C, int OC, int K, int stride, int pad, int groups, CudaCtx *cu);
void conv2d_backward_cuda(bf16_t *dinp, float *dweight, float *dbias, const bf16_t *dout, const bf16_t *inp,
                          const bf16_t *weight, int N, int H, int W, int C, int OC, int K, int stride,
                          int pad, int groups, CudaCtx *cu);

void batchnorm_forward_train_cuda(bf16_t *out, float *mean, float *rstd, float *running_mean,
                                  float *running_var, const bf16_t *inp, const bf16_t *weight,
                                  const bf16_t *bias, float momentum, float eps, Act act, int64_t M, int C,
                                  CudaCtx *cu);
void batchnorm_forward_eval_cuda(bf16_t *out, const bf16_t *inp, const bf16_t *weight, const bf16_t *bias,
                                 const float *running_mean, const float *running_var, float eps, Act act,
                                 int64_t M, int C, CudaCtx *cu);
void batchnorm_backward_cuda(bf16_t *dinp, float *dweight, float *dbias, const bf16_t *dout,
                             const bf16_t *inp, const bf16_t *weight, const bf16_t *bias, const float *mean,
                             const float *rstd, Act act, int64_t M, int C, CudaCtx *cu);

void layernorm_forward_cuda(bf16_t *out, float *mean, float *rstd, const bf16_t *inp, const bf16_t *weight,
                            const bf16_t *bias, float eps, int64_t M, int C, CudaCtx *cu);
void layernorm_backward_cuda(bf16_t *dinp, float *dweight, float *dbias, const bf16_t *dout, const bf16_t *inp,
                             const bf16_t *weight, const float *mean, const float *rstd, int64_t M, int C,
                             CudaCtx *cu);

void rmsnorm_forward_cuda(bf16_t *out, float *rstd, const bf16_t *inp, const bf16_t *gate, const bf16_t *weight,
                          float eps, int64_t M, int D, CudaCtx *cu);
void rmsnorm_backward_cuda(bf16_t *dinp, bf16_t *dgate, float *dweight, const bf16_t *dout, const bf16_t *inp,
                           const bf16_t *gate, const bf16_t *weight, const float *rstd, int64_t M, int D,
                           CudaCtx *cu);

void act_forward_cuda(bf16_t *out, const bf16_t *inp, Act act, int64_t n, CudaCtx *cu);
void act_backward_cuda(bf16_t *dinp, const bf16_t *dout, const bf16_t *inp, Act act, int64_t n, CudaCtx *cu);

void shortconv_forward_cuda(bf16_t *out, const bf16_t *inp, const bf16_t *weight, int causal, Act act, int S, int L,
                            int C, int W, CudaCtx *cu);
void shortconv_backward_cuda(bf16_t *dinp, float *dweight, const bf16_t *dout, const bf16_t *inp,
                             const bf16_t *weight, int causal, Act act, int S, int L, int C, int W, CudaCtx *cu);

void window_partition_cuda(bf16_t *out, const bf16_t *inp, int window, int B, int H, int W, int C,
                           CudaCtx *cu);
void window_reverse_cuda(bf16_t *out, const bf16_t *inp, int window, int B, int H, int W, int C, CudaCtx *cu);

void attention_forward_cuda(bf16_t *out, float *att, const bf16_t *qkv, int S, int L, int C, int n_heads,
                            CudaCtx *cu);
void attention_backward_cuda(bf16_t *dqkv, float *datt, const bf16_t *dout, const bf16_t *qkv,
                             const float *att, int S, int L, int C, int n_heads, CudaCtx *cu);

void avgpool_forward_cuda(bf16_t *out, const bf16_t *inp, int B, int L, int C, CudaCtx *cu);
void avgpool_backward_cuda(bf16_t *dinp, const bf16_t *dout, int B, int L, int C, CudaCtx *cu);

void residual_forward_cuda(bf16_t *out, const bf16_t *res, const bf16_t *branch, const bf16_t *gamma,
                           DropPath dp, int64_t S, int64_t rows_per_sample, int C, CudaCtx *cu);
void residual_backward_cuda(bf16_t *dbranch, float *dgamma, const bf16_t *dout, const bf16_t *branch,
                            const bf16_t *gamma, DropPath dp, int64_t S, int64_t rows_per_sample, int C,
                            CudaCtx *cu);

void softmax_xent_forward_cuda(float *losses, float *probs, const bf16_t *logits, const float *targets, int B,
                               int K, CudaCtx *cu);
void softmax_xent_backward_cuda(bf16_t *dlogits, const float *probs, const float *targets, float dloss, int B,
                                int K, CudaCtx *cu);

#ifdef __cplusplus
}
#endif
#endif
