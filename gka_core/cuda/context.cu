// context.cu: the CUDA context (stream, cuBLASLt, cuDNN, scratch), device memory, copies and conversions.
#include <stdio.h>

#include "cuda_common.h"

#define LT_WORKSPACE_BYTES (32u << 20) /* cuBLASLt's recommended workspace on Hopper */

extern "C" int cuda_count_devices(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError(); /* no driver or no device: clear the sticky error, report none */
        return 0;
    }
    return n;
}

extern "C" int cuda_ctx_open(CudaCtx **out, int index, GkErr *err) {
    int n = cuda_count_devices();
    if (index < 0 || index >= n) return gk_fail(err, "CUDA device %d requested but %d found", index, n);
    CudaCtx *cu = (CudaCtx *)callocCheck(1, sizeof(CudaCtx));
    cu->device = index;
    cudaCheck(cudaSetDevice(index));
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, index));
    cu->sm_count = prop.multiProcessorCount;
    cu->smem_optin = prop.sharedMemPerBlockOptin;
    // A blocking stream, not cudaStreamNonBlocking: cuda_copy and cuda_memset (and cudaFree) run on the
    // legacy default stream, which is ordered only against blocking streams. With a non-blocking compute
    // stream a device-to-host copy read logits before the forward had written them (GPU evaluation at chance
    // level), and a gradient memset could overlap the kernels around it.
    cudaCheck(cudaStreamCreate(&cu->stream));
    cublasCheck(cublasLtCreate(&cu->lt));
    cu->lt_workspace_bytes = LT_WORKSPACE_BYTES;
    cudaCheck(cudaMalloc(&cu->lt_workspace, cu->lt_workspace_bytes));
#ifdef GKA_HAVE_CUDNN
    cudnnCheck(cudnnCreate(&cu->cudnn));
    cudnnCheck(cudnnSetStream(cu->cudnn, cu->stream));
#endif
    *out = cu;
    return 0;
}

extern "C" void cuda_ctx_close(CudaCtx *cu) {
    if (!cu) return;
    cudaCheck(cudaStreamSynchronize(cu->stream));
#ifdef GKA_HAVE_CUDNN
    cudnnCheck(cudnnDestroy(cu->cudnn));
#endif
    cublasCheck(cublasLtDestroy(cu->lt));
    cudaCheck(cudaFree(cu->lt_workspace));
    if (cu->scratch) cudaCheck(cudaFree(cu->scratch));
    if (cu->conv_workspace) cudaCheck(cudaFree(cu->conv_workspace));
    cudaCheck(cudaStreamDestroy(cu->stream));
    free(cu);
}

extern "C" void cuda_ctx_sync(CudaCtx *cu) {
    cudaCheck(cudaStreamSynchronize(cu->stream));
}

extern "C" void *cuda_ctx_stream(CudaCtx *cu) {
    return (void *)cu->stream;
}

void *cuda_scratch(CudaCtx *cu, size_t bytes) {
    if (bytes > cu->scratch_bytes) {
        cudaCheck(cudaStreamSynchronize(cu->stream));
        if (cu->scratch) cudaCheck(cudaFree(cu->scratch));
        cudaCheck(cudaMalloc(&cu->scratch, bytes));
        cu->scratch_bytes = bytes;
    }
    return cu->scratch;
}

extern "C" void *cuda_alloc(size_t bytes) {
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 1);
    if (e == cudaErrorMemoryAllocation) {
        size_t free_b = 0, total = 0;
        cudaMemGetInfo(&free_b, &total);
        gk_die("out of GPU memory allocating %.1f MiB (%.1f of %.1f MiB free); lower --batch-size",
               bytes / 1048576.0, free_b / 1048576.0, total / 1048576.0);
    }
    cudaCheck(e);
    return p;
}

extern "C" size_t cuda_mem_in_use(void) {
    size_t free_b = 0, total = 0;
    cudaCheck(cudaMemGetInfo(&free_b, &total));
    return total - free_b;
}

extern "C" void cuda_release(void *p) {
    if (p) cudaCheck(cudaFree(p));
}

// On the legacy default stream: ordered after everything queued on the (blocking) compute stream, and before
// what is queued there later. The loader's copy stream is non-blocking and orders itself with events.
extern "C" void cuda_copy(void *dst, const void *src, size_t bytes) {
    cudaCheck(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault));
}

extern "C" void cuda_memset(void *p, int byte, size_t bytes) {
    cudaCheck(cudaMemset(p, byte, bytes));
}

__global__ void f32_to_bf16_kernel(bf16 *dst, const float *src, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = __float2bfloat16_rn(src[i]);
}

__global__ void bf16_to_f32_kernel(float *dst, const bf16 *src, size_t n) {
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = __bfloat162float(src[i]);
}

extern "C" void cuda_f32_to_bf16(bf16_t *dst, const float *src, size_t n, CudaCtx *cu) {
    if (n == 0) return;
    f32_to_bf16_kernel<<<ceil_div(n, 256), 256, 0, cu->stream>>>((bf16 *)dst, src, n);
    cudaCheckLast();
}

extern "C" void cuda_bf16_to_f32(float *dst, const bf16_t *src, size_t n, CudaCtx *cu) {
    if (n == 0) return;
    bf16_to_f32_kernel<<<ceil_div(n, 256), 256, 0, cu->stream>>>(dst, (const bf16 *)src, n);
    cudaCheckLast();
}

extern "C" const char *cuda_device_name(CudaCtx *cu, char *buf, size_t len) {
    cudaDeviceProp prop;
    cudaCheck(cudaGetDeviceProperties(&prop, cu->device));
    snprintf(buf, len, "%s, %d SMs, sm_%d%d, %.0f GiB", prop.name, prop.multiProcessorCount, prop.major,
             prop.minor, prop.totalGlobalMem / 1073741824.0);
    return buf;
}
