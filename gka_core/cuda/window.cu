// window.cu: window partition and its inverse (gkavision spec 2.4) on bf16 NHWC images. An image [B, H, W, C]
// is zero-padded on the right and bottom to whole w x w windows; window s = (b*nH + i)*nW + j holds, as token
// l = r*w + c, the pixel (i*w + r, j*w + c). Each op is the other's backward.
// Both are pure gathers: one thread per 16-byte vector (8 channels) of the output when C % 8 == 0 and both
// tensors are 16-byte aligned, one per element otherwise; every output element is written exactly once, so
// reads and writes are each one pass over memory.
#include "cuda_common.h"
#include "ops_cuda.h"

#define WIN_THREADS 256

template <int VEC> __device__ __forceinline__ void win_copy(bf16 *dst, const bf16 *src) {
    if (VEC == 8)
        *reinterpret_cast<uint4 *>(dst) = *reinterpret_cast<const uint4 *>(src);
    else
        *dst = *src;
}

template <int VEC> __device__ __forceinline__ void win_zero(bf16 *dst) {
    if (VEC == 8)
        *reinterpret_cast<uint4 *>(dst) = make_uint4(0, 0, 0, 0);
    else
        *dst = __float2bfloat16_rn(0.0f);
}

// out[s, l, v] for every vector v of every token of every window; padding tokens are zero.
template <int VEC>
__global__ void window_partition_kernel(bf16 *out, const bf16 *inp, int w, int B, int H, int W, int C) {
    int V = C / VEC, nH = (H + w - 1) / w, nW = (W + w - 1) / w;
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)B * nH * nW * w * w * V) return;
    int v = (int)(idx % V);
    long long t = idx / V;
    int l = (int)(t % (w * w));
    long long s = t / (w * w);
    int j = (int)(s % nW), i = (int)(s / nW % nH);
    long long b = s / nW / nH;
    int y = i * w + l / w, x = j * w + l % w;
    if (y < H && x < W)
        win_copy<VEC>(out + idx * VEC, inp + ((b * H + y) * W + x) * C + (long long)v * VEC);
    else
        win_zero<VEC>(out + idx * VEC);
}

// out[b, y, x, v] from the window token that holds pixel (y, x); the padding tokens are never read.
template <int VEC>
__global__ void window_reverse_kernel(bf16 *out, const bf16 *inp, int w, int B, int H, int W, int C) {
    int V = C / VEC, nH = (H + w - 1) / w, nW = (W + w - 1) / w;
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)B * H * W * V) return;
    int v = (int)(idx % V);
    long long p = idx / V;
    int x = (int)(p % W), y = (int)(p / W % H);
    long long b = p / W / H;
    long long s = (b * nH + y / w) * nW + x / w;
    int l = (y % w) * w + x % w;
    win_copy<VEC>(out + idx * VEC, inp + (s * w * w + l) * C + (long long)v * VEC);
}

static int win_vec(int C, const void *a, const void *b) {
    return C % 8 == 0 && ((uintptr_t)a & 15) == 0 && ((uintptr_t)b & 15) == 0 ? 8 : 1;
}

extern "C" void window_partition_cuda(bf16_t *out, const bf16_t *inp, int window, int B, int H, int W, int C,
                                      CudaCtx *cu) {
    int nH = (H + window - 1) / window, nW = (W + window - 1) / window, vec = win_vec(C, out, inp);
    long long n = (long long)B * nH * nW * window * window * (C / vec);
    if (n == 0) return;
    if (vec == 8)
        window_partition_kernel<8><<<ceil_div(n, WIN_THREADS), WIN_THREADS, 0, cu->stream>>>(
            (bf16 *)out, (const bf16 *)inp, window, B, H, W, C);
    else
        window_partition_kernel<1><<<ceil_div(n, WIN_THREADS), WIN_THREADS, 0, cu->stream>>>(
            (bf16 *)out, (const bf16 *)inp, window, B, H, W, C);
    cudaCheckLast();
}

extern "C" void window_reverse_cuda(bf16_t *out, const bf16_t *inp, int window, int B, int H, int W, int C,
                                    CudaCtx *cu) {
    int vec = win_vec(C, out, inp);
    long long n = (long long)B * H * W * (C / vec);
    if (n == 0) return;
    if (vec == 8)
        window_reverse_kernel<8><<<ceil_div(n, WIN_THREADS), WIN_THREADS, 0, cu->stream>>>(
            (bf16 *)out, (const bf16 *)inp, window, B, H, W, C);
    else
        window_reverse_kernel<1><<<ceil_div(n, WIN_THREADS), WIN_THREADS, 0, cu->stream>>>(
            (bf16 *)out, (const bf16 *)inp, window, B, H, W, C);
    cudaCheckLast();
}
