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

#ifdef __cplusplus
}
#endif
#endif
