// pool.cu: average over the L tokens of [B, L, C] (the head's global pool), bf16 in and out, float32 sums.
// Forward: one thread per (image, 8 channels) walking the tokens, so each warp reads whole rows; backward:
// the broadcast dinp[b, l, c] = dout[b, c] / L, one thread per 8 output elements (a single pass over dinp).
#include "cuda_common.h"
#include "ops_cuda.h"

#define POOL_THREADS 256
#define POOL_VEC 8

__global__ void avgpool_forward_kernel(bf16 *out, const bf16 *inp, int B, int L, int C) {
    int nvec = (C + POOL_VEC - 1) / POOL_VEC;
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)B * nvec) return;
    long long b = idx / nvec;
    int c0 = (int)(idx % nvec) * POOL_VEC, nc = min(POOL_VEC, C - c0);
    float acc[POOL_VEC];
#pragma unroll
    for (int u = 0; u < POOL_VEC; u++)
        acc[u] = 0.0f;
    const bf16 *x = inp + b * L * C + c0;
    for (int l = 0; l < L; l++, x += C)
#pragma unroll
        for (int u = 0; u < POOL_VEC; u++)
            if (u < nc) acc[u] += __bfloat162float(x[u]);
    for (int u = 0; u < nc; u++)
        out[b * C + c0 + u] = __float2bfloat16_rn(acc[u] / (float)L);
}

// 8 elements per thread; 16-byte accesses when the rows allow it.
__global__ void avgpool_backward_kernel(bf16 *dinp, const bf16 *dout, int B, int L, int C, int vec_ok) {
    long long n = (long long)B * L * C, i = ((long long)blockIdx.x * blockDim.x + threadIdx.x) * POOL_VEC;
    if (i >= n) return;
    float inv = 1.0f / (float)L;
    if (vec_ok) {
        long long row = i / C;
        const bf16 *dy = dout + row / L * C + i % C;
        uint4 raw;
        bf16 *h = reinterpret_cast<bf16 *>(&raw);
#pragma unroll
        for (int u = 0; u < POOL_VEC; u++)
            h[u] = __float2bfloat16_rn(__bfloat162float(dy[u]) * inv);
        *reinterpret_cast<uint4 *>(dinp + i) = raw;
        return;
    }
    for (long long j = i; j < n && j < i + POOL_VEC; j++)
        dinp[j] = __float2bfloat16_rn(__bfloat162float(dout[j / C / L * C + j % C]) * inv);
}

extern "C" void avgpool_forward_cuda(bf16_t *out, const bf16_t *inp, int B, int L, int C, CudaCtx *cu) {
    long long n = (long long)B * ((C + POOL_VEC - 1) / POOL_VEC);
    if (n == 0) return;
    avgpool_forward_kernel<<<ceil_div(n, POOL_THREADS), POOL_THREADS, 0, cu->stream>>>(
        (bf16 *)out, (const bf16 *)inp, B, L, C);
    cudaCheckLast();
}

extern "C" void avgpool_backward_cuda(bf16_t *dinp, const bf16_t *dout, int B, int L, int C, CudaCtx *cu) {
    long long n = (long long)B * L * C;
    if (n == 0) return;
    int vec_ok = C % POOL_VEC == 0 && ((uintptr_t)dinp & 15) == 0;
    avgpool_backward_kernel<<<ceil_div(n, (long long)POOL_THREADS * POOL_VEC), POOL_THREADS, 0, cu->stream>>>(
        (bf16 *)dinp, (const bf16 *)dout, B, L, C, vec_ok);
    cudaCheckLast();
}
