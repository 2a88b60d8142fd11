/* cuda_api.h: the CUDA backend as seen from C: device discovery, the context, memory and copies.
 * Declared for every build; defined only in CUDA builds (GKA_HAVE_CUDA). */
#ifndef GKA_CUDA_API_H
#define GKA_CUDA_API_H

#include <stddef.h>

#include "context.h"

#ifdef __cplusplus
extern "C" {
#endif

int cuda_count_devices(void);
int cuda_ctx_open(CudaCtx **out, int index, GkErr *err);
void cuda_ctx_close(CudaCtx *cu);
void cuda_ctx_sync(CudaCtx *cu);
/* The context's cudaStream_t, as a void pointer so that C callers need no CUDA header (benchmarks record
 * their CUDA events on it). */
void *cuda_ctx_stream(CudaCtx *cu);
void *cuda_alloc(size_t bytes);
void cuda_release(void *p);
/* Bytes in use on the current device (cudaMemGetInfo's total - free: this process's buffers, its CUDA and
 * library contexts, and anything else running there). */
size_t cuda_mem_in_use(void);
/* Plain copy between any two pointers (unified addressing decides the direction). Synchronous. */
void cuda_copy(void *dst, const void *src, size_t bytes);
void cuda_memset(void *p, int byte, size_t bytes);
/* Device-side conversions between f32 and bf16 arrays (n elements), on the context's stream. */
void cuda_f32_to_bf16(bf16_t *dst, const float *src, size_t n, CudaCtx *cu);
void cuda_bf16_to_f32(float *dst, const bf16_t *src, size_t n, CudaCtx *cu);
/* "NVIDIA H100 80GB HBM3, 132 SMs, sm_90" */
const char *cuda_device_name(CudaCtx *cu, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
