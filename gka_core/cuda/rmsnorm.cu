// rmsnorm.cu: RMS norm over the last dimension with an optional SiLU gate (GKA's per-head output norm):
// out = x / sqrt(mean(x^2) + eps) * w * silu(gate). One warp per row; the weight gradient is reduced in two
// passes (per-block partials, then a column sum), so it does not depend on block order.
#include "act.cuh"
#include "cuda_common.h"
#include "ops_cuda.h"

#define RMS_WARPS 8
#define RMS_BWD_BLOCKS_MAX 1024

__device__ __forceinline__ float warp_sum_r(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__global__ void rmsnorm_fwd_kernel(bf16 *out, float *rstd, const bf16 *inp, const bf16 *gate, const bf16 *w,
                                   float eps, long long M, int D) {
    long long row = (long long)blockIdx.x * RMS_WARPS + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= M) return;
    const bf16 *x = inp + row * D;
    float s = 0.0f;
    for (int i = lane; i < D; i += 32) s += __bfloat162float(x[i]) * __bfloat162float(x[i]);
    float r = rsqrtf(warp_sum_r(s) / D + eps);
    for (int i = lane; i < D; i += 32) {
        float y = __bfloat162float(x[i]) * r * __bfloat162float(w[i]);
        if (gate) y *= act_apply_d(ACT_SILU, __bfloat162float(gate[row * D + i]));
        out[row * D + i] = __float2bfloat16_rn(y);
    }
    if (lane == 0) rstd[row] = r;
}

// Rows [r0, r1) per block; part[block][D] gets the block's share of the weight gradient.
__global__ void rmsnorm_bwd_kernel(bf16 *dinp, bf16 *dgate, float *part, const bf16 *dout, const bf16 *inp,
                                   const bf16 *gate, const bf16 *w, const float *rstd, long long M, int D,
                                   long long rows_per_block) {
    extern __shared__ float acc[]; /* [RMS_WARPS][D] */
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float *my = acc + warp * D;
    for (int i = lane; i < D; i += 32) my[i] = 0.0f;
    long long r0 = blockIdx.x * rows_per_block, r1 = min(M, r0 + rows_per_block);
    for (long long row = r0 + warp; row < r1; row += RMS_WARPS) {
        const bf16 *x = inp + row * D, *dy = dout + row * D;
        float r = rstd[row], dot = 0.0f;
        for (int i = lane; i < D; i += 32) {
            float n = __bfloat162float(x[i]) * r;
            float sg = gate ? act_apply_d(ACT_SILU, __bfloat162float(gate[row * D + i])) : 1.0f;
            float dn = __bfloat162float(dy[i]) * __bfloat162float(w[i]) * sg;
            dot += dn * n;
            my[i] += __bfloat162float(dy[i]) * n * sg;
            if (dgate) {
                float z = __bfloat162float(gate[row * D + i]);
                dgate[row * D + i] =
                    __float2bfloat16_rn(__bfloat162float(dy[i]) * n * __bfloat162float(w[i]) * act_grad_d(ACT_SILU, z));
            }
        }
        dot = warp_sum_r(dot) / D;
        if (dinp)
            for (int i = lane; i < D; i += 32) {
                float n = __bfloat162float(x[i]) * r;
                float sg = gate ? act_apply_d(ACT_SILU, __bfloat162float(gate[row * D + i])) : 1.0f;
                float dn = __bfloat162float(dy[i]) * __bfloat162float(w[i]) * sg;
                dinp[row * D + i] = __float2bfloat16_rn(r * (dn - n * dot));
            }
    }
    __syncthreads();
    for (int i = threadIdx.x; i < D; i += blockDim.x) {
        float t = 0.0f;
        for (int k = 0; k < RMS_WARPS; k++) t += acc[k * D + i];
        part[(long long)blockIdx.x * D + i] = t;
    }
}

__global__ void rms_column_sum_kernel(float *dweight, const float *part, int nparts, int D) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= D) return;
    float t = 0.0f;
    for (int p = 0; p < nparts; p++) t += part[(long long)p * D + i];
    dweight[i] += t;
}

extern "C" void rmsnorm_forward_cuda(bf16_t *out, float *rstd, const bf16_t *inp, const bf16_t *gate,
                                     const bf16_t *weight, float eps, int64_t M, int D, CudaCtx *cu) {
    if (M == 0) return;
    rmsnorm_fwd_kernel<<<ceil_div(M, RMS_WARPS), RMS_WARPS * 32, 0, cu->stream>>>(
        (bf16 *)out, rstd, (const bf16 *)inp, (const bf16 *)gate, (const bf16 *)weight, eps, M, D);
    cudaCheckLast();
}

extern "C" void rmsnorm_backward_cuda(bf16_t *dinp, bf16_t *dgate, float *dweight, const bf16_t *dout,
                                      const bf16_t *inp, const bf16_t *gate, const bf16_t *weight, const float *rstd,
                                      int64_t M, int D, CudaCtx *cu) {
    if (M == 0) return;
    long long nblocks = M < RMS_BWD_BLOCKS_MAX ? M : RMS_BWD_BLOCKS_MAX;
    long long rows_per_block = (M + nblocks - 1) / nblocks;
    nblocks = (M + rows_per_block - 1) / rows_per_block;
    float *part = (float *)cuda_scratch(cu, (size_t)nblocks * D * sizeof(float));
    size_t smem = (size_t)RMS_WARPS * D * sizeof(float);
    if (smem > 48 * 1024)
        cudaCheck(cudaFuncSetAttribute(rmsnorm_bwd_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    rmsnorm_bwd_kernel<<<(unsigned)nblocks, RMS_WARPS * 32, smem, cu->stream>>>(
        (bf16 *)dinp, (bf16 *)dgate, part, (const bf16 *)dout, (const bf16 *)inp, (const bf16 *)gate,
        (const bf16 *)weight, rstd, M, D, rows_per_block);
    cudaCheckLast();
    if (dweight) {
        rms_column_sum_kernel<<<ceil_div(D, 256), 256, 0, cu->stream>>>(dweight, part, (int)nblocks, D);
        cudaCheckLast();
    }
}
