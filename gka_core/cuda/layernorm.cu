// layernorm.cu: layer norm over the last dimension, one warp per row; bf16 data, fp32 statistics.
// The weight/bias gradients are reduced in two passes (per-block partials, then a column sum) so that the
// result does not depend on the order blocks run in.
#include "cuda_common.h"
#include "ops_cuda.h"

#define LN_ROWS_PER_BLOCK 8   /* one warp per row */
#define LN_BWD_BLOCKS_MAX 1024

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__global__ void layernorm_forward_kernel(bf16 *out, float *mean, float *rstd, const bf16 *inp, const bf16 *weight,
                                         const bf16 *bias, float eps, long long M, int C) {
    long long row = (long long)blockIdx.x * LN_ROWS_PER_BLOCK + threadIdx.y;
    if (row >= M) return;
    const bf16 *x = inp + row * C;
    float s = 0.0f;
    for (int c = threadIdx.x; c < C; c += 32) s += __bfloat162float(x[c]);
    float mu = warp_sum(s) / C;
    float v = 0.0f;
    for (int c = threadIdx.x; c < C; c += 32) {
        float d = __bfloat162float(x[c]) - mu;
        v += d * d;
    }
    float rs = rsqrtf(warp_sum(v) / C + eps);
    bf16 *y = out + row * C;
    for (int c = threadIdx.x; c < C; c += 32) {
        float n = (__bfloat162float(x[c]) - mu) * rs;
        y[c] = __float2bfloat16_rn(n * __bfloat162float(weight[c]) + __bfloat162float(bias[c]));
    }
    if (threadIdx.x == 0) {
        mean[row] = mu;
        rstd[row] = rs;
    }
}

// dinp for the block's rows; per-block partial sums of dweight, dbias into part[blockIdx.x][2C].
__global__ void layernorm_backward_kernel(bf16 *dinp, float *part, const bf16 *dout, const bf16 *inp,
                                          const bf16 *weight, const float *mean, const float *rstd, long long M,
                                          int C, long long rows_per_block) {
    extern __shared__ float acc[]; /* [LN_ROWS_PER_BLOCK][2C] */
    float *my = acc + threadIdx.y * 2 * C;
    for (int c = threadIdx.x; c < 2 * C; c += 32) my[c] = 0.0f;
    long long r0 = blockIdx.x * rows_per_block, r1 = min(M, r0 + rows_per_block);
    for (long long row = r0 + threadIdx.y; row < r1; row += LN_ROWS_PER_BLOCK) {
        const bf16 *x = inp + row * C, *dy = dout + row * C;
        float mu = mean[row], rs = rstd[row];
        float sg = 0.0f, sgx = 0.0f;
        for (int c = threadIdx.x; c < C; c += 32) {
            float g = __bfloat162float(dy[c]) * __bfloat162float(weight[c]);
            float xh = (__bfloat162float(x[c]) - mu) * rs;
            sg += g;
            sgx += g * xh;
            my[c] += __bfloat162float(dy[c]) * xh;
            my[C + c] += __bfloat162float(dy[c]);
        }
        float mg = warp_sum(sg) / C, mgx = warp_sum(sgx) / C;
        if (dinp)
            for (int c = threadIdx.x; c < C; c += 32) {
                float g = __bfloat162float(dy[c]) * __bfloat162float(weight[c]);
                float xh = (__bfloat162float(x[c]) - mu) * rs;
                dinp[row * C + c] = __float2bfloat16_rn((g - mg - xh * mgx) * rs);
            }
    }
    __syncthreads();
    int tid = threadIdx.y * 32 + threadIdx.x;
    for (int c = tid; c < 2 * C; c += 32 * LN_ROWS_PER_BLOCK) {
        float t = 0.0f;
        for (int w = 0; w < LN_ROWS_PER_BLOCK; w++) t += acc[w * 2 * C + c];
        part[blockIdx.x * 2 * C + c] = t;
    }
}

__global__ void column_sum_kernel(float *dweight, float *dbias, const float *part, int nparts, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= 2 * C) return;
    float t = 0.0f;
    for (int p = 0; p < nparts; p++) t += part[p * 2 * C + c];
    if (c < C) {
        if (dweight) dweight[c] += t;
    } else if (dbias) {
        dbias[c - C] += t;
    }
}

extern "C" void layernorm_forward_cuda(bf16_t *out, float *mean, float *rstd, const bf16_t *inp,
                                       const bf16_t *weight, const bf16_t *bias, float eps, int64_t M, int C,
                                       CudaCtx *cu) {
    if (M == 0) return;
    dim3 block(32, LN_ROWS_PER_BLOCK);
    layernorm_forward_kernel<<<ceil_div(M, LN_ROWS_PER_BLOCK), block, 0, cu->stream>>>(
        (bf16 *)out, mean, rstd, (const bf16 *)inp, (const bf16 *)weight, (const bf16 *)bias, eps, M, C);
    cudaCheckLast();
}

extern "C" void layernorm_backward_cuda(bf16_t *dinp, float *dweight, float *dbias, const bf16_t *dout,
                                        const bf16_t *inp, const bf16_t *weight, const float *mean,
                                        const float *rstd, int64_t M, int C, CudaCtx *cu) {
    if (M == 0) return;
    long long nblocks = M < LN_BWD_BLOCKS_MAX ? M : LN_BWD_BLOCKS_MAX;
    long long rows_per_block = (M + nblocks - 1) / nblocks;
    nblocks = (M + rows_per_block - 1) / rows_per_block;
    float *part = (float *)cuda_scratch(cu, (size_t)nblocks * 2 * C * sizeof(float));
    size_t smem = (size_t)LN_ROWS_PER_BLOCK * 2 * C * sizeof(float);
    if (smem > 48 * 1024)
        cudaCheck(cudaFuncSetAttribute(layernorm_backward_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       (int)smem));
    dim3 block(32, LN_ROWS_PER_BLOCK);
    layernorm_backward_kernel<<<(unsigned)nblocks, block, smem, cu->stream>>>(
        (bf16 *)dinp, part, (const bf16 *)dout, (const bf16 *)inp, (const bf16 *)weight, mean, rstd, M, C,
        rows_per_block);
    cudaCheckLast();
    column_sum_kernel<<<ceil_div(2 * C, 256), 256, 0, cu->stream>>>(dweight, dbias, part, (int)nblocks, C);
    cudaCheckLast();
}
