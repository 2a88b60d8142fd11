/* ops_cpu.h: the CPU twins of the ops in ops.h: float32, OpenBLAS GEMMs, OpenMP loops.
 * Same name stem and argument order as the CUDA twins (ops_cuda.h); sizes follow the inputs. Called
 * through ops.c, which has checked shapes already. Gradient rules as in ops.h: activation gradients
 * written, parameter gradients accumulated. */
#ifndef GKA_OPS_CPU_H
#define GKA_OPS_CPU_H

#include <stdint.h>

#include "context.h"
#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* C = alpha op(A) op(B) + beta C, row-major (cblas_sgemm's arguments without the layout; trans_* 0 or 1):
 * OpenBLAS on one thread, large products split by rows of C over the OpenMP threads (gemm.c says why). */
void gemm_cpu(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda, const float *B,
              int ldb, float beta, float *C, int ldc);

/* Scalar activation and its derivative, shared by every CPU op that fuses an activation. */
float act_apply(Act act, float x);
float act_grad(Act act, float x); /* d act(x) / dx */

void matmul_forward_cpu(float *out, float *pre_gelu, const float *inp, const float *weight, const float *bias,
                        int64_t M, int IC, int OC);
void matmul_backward_cpu(float *dinp, float *dweight, float *dbias, float *dout, const float *inp,
                         const float *weight, const float *pre_gelu, int dinp_accumulate, int64_t M, int IC, int OC);

void conv2d_forward_cpu(float *out, const float *inp, const float *weight, const float *bias, int N, int H,
                        int W, int C, int OC, int K, int stride, int pad, int groups, Ctx *ctx);
void conv2d_backward_cpu(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                         const float *weight, int N, int H, int W, int C, int OC, int K, int stride, int pad,
                         int groups, Ctx *ctx);

void batchnorm_forward_train_cpu(float *out, float *mean, float *rstd, float *running_mean, float *running_var,
                                 const float *inp, const float *weight, const float *bias, float momentum,
                                 float eps, Act act, int64_t M, int C);
void batchnorm_forward_eval_cpu(float *out, const float *inp, const float *weight, const float *bias,
                                const float *running_mean, const float *running_var, float eps, Act act,
                                int64_t M, int C);
void batchnorm_backward_cpu(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                            const float *weight, const float *bias, const float *mean, const float *rstd,
                            Act act, int64_t M, int C);

void layernorm_forward_cpu(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                           const float *bias, float eps, int64_t M, int C);
void layernorm_backward_cpu(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                            const float *weight, const float *mean, const float *rstd, int64_t M, int C);

void rmsnorm_forward_cpu(float *out, float *rstd, const float *inp, const float *gate, const float *weight,
                         float eps, int64_t M, int D);
void rmsnorm_backward_cpu(float *dinp, float *dgate, float *dweight, const float *dout, const float *inp,
                          const float *gate, const float *weight, const float *rstd, int64_t M, int D);

void act_forward_cpu(float *out, const float *inp, Act act, int64_t n);
void act_backward_cpu(float *dinp, const float *dout, const float *inp, Act act, int64_t n);

void shortconv_forward_cpu(float *out, const float *inp, const float *weight, int causal, Act act, int S, int L,
                           int C, int W);
void shortconv_backward_cpu(float *dinp, float *dweight, const float *dout, const float *inp,
                            const float *weight, int causal, Act act, int S, int L, int C, int W);

void window_partition_cpu(float *out, const float *inp, int window, int B, int H, int W, int C);
void window_reverse_cpu(float *out, const float *inp, int window, int B, int H, int W, int C);

void attention_forward_cpu(float *out, float *att, const float *qkv, int S, int L, int C, int n_heads);
void attention_backward_cpu(float *dqkv, float *datt, const float *dout, const float *qkv, const float *att,
                            int S, int L, int C, int n_heads);

void avgpool_forward_cpu(float *out, const float *inp, int B, int L, int C);
void avgpool_backward_cpu(float *dinp, const float *dout, int B, int L, int C);

/* rows_per_sample = (elements per sample) / C: the leading dimension is the drop-path sample. */
void residual_forward_cpu(float *out, const float *res, const float *branch, const float *gamma, DropPath dp,
                          int64_t S, int64_t rows_per_sample, int C);
void residual_backward_cpu(float *dbranch, float *dgamma, const float *dout, const float *branch,
                           const float *gamma, DropPath dp, int64_t S, int64_t rows_per_sample, int C);

void softmax_xent_forward_cpu(float *losses, float *probs, const float *logits, const float *targets, int B,
                              int K);
void softmax_xent_backward_cpu(float *dlogits, const float *probs, const float *targets, float dloss, int B,
                               int K);

#ifdef __cplusplus
}
#endif
#endif
