// activation.cu: pointwise activations, forward and backward, bf16 in and out, 8 elements per thread.
#include "act.cuh"
#include "cuda_common.h"
#include "ops_cuda.h"

__global__ void act_forward_kernel(bf16 *out, const bf16 *inp, int act, long long n) {
    long long i = ((long long)blockIdx.x * blockDim.x + threadIdx.x) * 8;
    if (i + 8 <= n && ((uintptr_t)(inp + i) & 15) == 0 && ((uintptr_t)(out + i) & 15) == 0) {
        uint4 raw = *reinterpret_cast<const uint4 *>(inp + i);
        bf16 *x = reinterpret_cast<bf16 *>(&raw);
#pragma unroll
        for (int u = 0; u < 8; u++) x[u] = __float2bfloat16_rn(act_apply_d(act, __bfloat162float(x[u])));
        *reinterpret_cast<uint4 *>(out + i) = raw;
    } else {
        for (long long j = i; j < n && j < i + 8; j++) out[j] = __float2bfloat16_rn(act_apply_d(act, __bfloat162float(inp[j])));
    }
}

__global__ void act_backward_kernel(bf16 *dinp, const bf16 *dout, const bf16 *inp, int act, long long n) {
    long long i = ((long long)blockIdx.x * blockDim.x + threadIdx.x) * 8;
    for (long long j = i; j < n && j < i + 8; j++)
        dinp[j] = __float2bfloat16_rn(__bfloat162float(dout[j]) * act_grad_d(act, __bfloat162float(inp[j])));
}

extern "C" void act_forward_cuda(bf16_t *out, const bf16_t *inp, Act act, int64_t n, CudaCtx *cu) {
    if (n == 0) return;
    act_forward_kernel<<<ceil_div(n, 8 * 256), 256, 0, cu->stream>>>((bf16 *)out, (const bf16 *)inp, (int)act, n);
    cudaCheckLast();
}

extern "C" void act_backward_cuda(bf16_t *dinp, const bf16_t *dout, const bf16_t *inp, Act act, int64_t n,
                                  CudaCtx *cu) {
    if (n == 0) return;
    act_backward_kernel<<<ceil_div(n, 8 * 256), 256, 0, cu->stream>>>((bf16 *)dinp, (const bf16 *)dout,
                                                                       (const bf16 *)inp, (int)act, n);
    cudaCheckLast();
}
