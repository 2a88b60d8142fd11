/* cuda_common.h: what every .cu file of the CUDA backend shares: the CudaCtx struct, the checked-call
 * macros for the CUDA libraries, and bf16 helpers. C++ (nvcc) only; C code sees cuda_api.h. */
#ifndef GKA_CUDA_COMMON_H
#define GKA_CUDA_COMMON_H

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#ifdef GKA_HAVE_CUDNN
#include <cudnn.h>
#endif
#ifdef GKA_HAVE_NCCL
#include <nccl.h>
#endif

#include "core.h"
#include "cuda_api.h"

typedef __nv_bfloat16 bf16;

/* conv2d (conv2d.cu): the cuDNN algorithm picked for one convolution shape and direction, cached so that the
 * heuristic runs once per shape. algo < 0 means that no deterministic cuDNN algorithm ran this shape and the
 * op's own direct kernels do. */
#define CONV_ALGO_SLOTS 64
typedef struct ConvAlgoSlot {
    int key[12]; /* direction, N, H, W, C, OC, K, stride, pad, groups, pointer alignment, 1 = used */
    int algo;
    int math_type;
} ConvAlgoSlot;

struct CudaCtx {
    int device;
    cudaStream_t stream;
    cublasLtHandle_t lt;
    void *lt_workspace;
    size_t lt_workspace_bytes;
#ifdef GKA_HAVE_CUDNN
    cudnnHandle_t cudnn;
#endif
    void *scratch; /* device scratch for multi-pass reductions, grown on first use */
    size_t scratch_bytes;
    int sm_count;
    size_t smem_optin; /* largest dynamic shared memory a block may opt in to */
    /* conv2d's own device workspace (cuDNN workspace, bf16 weight gradient, bias-gradient partials), grown
     * on first use of a larger shape. Kept apart from `scratch` so that the op never depends on what another
     * op left live there. */
    void *conv_workspace;
    size_t conv_workspace_bytes;
    ConvAlgoSlot conv_algos[CONV_ALGO_SLOTS];
    int conv_algo_next; /* slot the next new shape takes (round robin once all are used) */
};

static inline void cuda_check(cudaError_t e, const char *file, int line) {
    if (e != cudaSuccess)
        gk_die_at(file, line, "CUDA error %s: %s (is the GPU in a good state? `nvidia-smi` shows it)",
                  cudaGetErrorName(e), cudaGetErrorString(e));
}
#define cudaCheck(e) cuda_check((e), __FILE__, __LINE__)
/* After a kernel launch: reports bad launch configurations at the launch site. */
#define cudaCheckLast() cuda_check(cudaGetLastError(), __FILE__, __LINE__)

static inline void cublas_check(cublasStatus_t s, const char *file, int line) {
    if (s != CUBLAS_STATUS_SUCCESS) gk_die_at(file, line, "cuBLAS error %d (%s)", (int)s, cublasGetStatusString(s));
}
#define cublasCheck(s) cublas_check((s), __FILE__, __LINE__)

#ifdef GKA_HAVE_CUDNN
static inline void cudnn_check(cudnnStatus_t s, const char *file, int line) {
    if (s != CUDNN_STATUS_SUCCESS) gk_die_at(file, line, "cuDNN error %d (%s)", (int)s, cudnnGetErrorString(s));
}
#define cudnnCheck(s) cudnn_check((s), __FILE__, __LINE__)
#endif

#ifdef GKA_HAVE_NCCL
static inline void nccl_check(ncclResult_t r, const char *file, int line) {
    if (r != ncclSuccess)
        gk_die_at(file, line, "NCCL error %d (%s); NCCL_DEBUG=INFO prints more", (int)r, ncclGetErrorString(r));
}
#define ncclCheck(r) nccl_check((r), __FILE__, __LINE__)
#endif

/* Device scratch of at least `bytes` (grown outside the hot path on first use, then reused). */
void *cuda_scratch(CudaCtx *cu, size_t bytes);

static inline unsigned ceil_div(long long a, long long b) { return (unsigned)((a + b - 1) / b); }

#endif
