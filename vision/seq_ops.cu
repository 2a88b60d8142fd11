// seq_ops.cu: the CUDA twins of seq_ops.h: one thread per element, consecutive threads on consecutive
// channels, so reads and writes are coalesced.
#include "cuda/cuda_common.h"
#include "seq_ops.h"

__global__ void channel_concat_kernel(bf16 *out, const bf16 *a, const bf16 *b, long long M, int Ca, int Cb) {
    const int C = Ca + Cb;
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= M * C) return;
    long long m = i / C;
    int c = (int)(i % C);
    out[i] = c < Ca ? a[m * Ca + c] : b[m * Cb + (c - Ca)];
}

__global__ void channel_split_kernel(bf16 *a, bf16 *b, const bf16 *inp, long long M, int Ca, int Cb) {
    const int C = Ca + Cb;
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= M * C) return;
    long long m = i / C;
    int c = (int)(i % C);
    if (c < Ca)
        a[m * Ca + c] = inp[i];
    else
        b[m * Cb + (c - Ca)] = inp[i];
}

__global__ void token_reverse_kernel(bf16 *out, const bf16 *inp, long long S, int L, int C) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= S * L * C) return;
    long long r = i / C;
    int c = (int)(i % C);
    long long s = r / L, t = r % L;
    out[i] = inp[(s * L + (L - 1 - t)) * C + c];
}

extern "C" void channel_concat_cuda(bf16_t *out, const bf16_t *a, const bf16_t *b, int64_t M, int Ca, int Cb,
                                    CudaCtx *cu) {
    long long n = (long long)M * (Ca + Cb);
    if (n == 0) return;
    channel_concat_kernel<<<ceil_div(n, 256), 256, 0, cu->stream>>>((bf16 *)out, (const bf16 *)a,
                                                                    (const bf16 *)b, M, Ca, Cb);
    cudaCheckLast();
}

extern "C" void channel_split_cuda(bf16_t *a, bf16_t *b, const bf16_t *inp, int64_t M, int Ca, int Cb,
                                   CudaCtx *cu) {
    long long n = (long long)M * (Ca + Cb);
    if (n == 0) return;
    channel_split_kernel<<<ceil_div(n, 256), 256, 0, cu->stream>>>((bf16 *)a, (bf16 *)b, (const bf16 *)inp, M,
                                                                   Ca, Cb);
    cudaCheckLast();
}

extern "C" void token_reverse_cuda(bf16_t *out, const bf16_t *inp, int64_t S, int L, int C, CudaCtx *cu) {
    long long n = (long long)S * L * C;
    if (n == 0) return;
    token_reverse_kernel<<<ceil_div(n, 256), 256, 0, cu->stream>>>((bf16 *)out, (const bf16 *)inp, S, L, C);
    cudaCheckLast();
}
