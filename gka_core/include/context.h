/* context.h: where ops run. A Ctx is passed down to every op; it holds the device and, for CUDA, the one
 * struct of handles (stream, cuBLASLt, cuDNN, workspace). It is the only mutable state shared by ops.
 * The CPU side keeps a scratch buffer here (im2col and similar), grown on first use and then reused, so
 * a training step allocates nothing after the first. */
#ifndef GKA_CONTEXT_H
#define GKA_CONTEXT_H

#include <stddef.h>

#include "core.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct CudaCtx CudaCtx; /* defined in gka_core/cuda/cuda_common.h */

typedef struct Ctx {
    Device device;
    CudaCtx *cuda;       /* NULL for the CPU */
    void *scratch;       /* CPU scratch (host memory) */
    size_t scratch_bytes;
    int emulate_bf16;    /* CPU only, for tests: round every activation and activation gradient an op writes to
                          * bf16, where the CUDA twins store them, so whole-layer and whole-model comparisons
                          * between the backends measure the kernels, not bf16 storage */
} Ctx;

/* Rounds a float32 CPU tensor to bf16 values in place when ctx->emulate_bf16 is set (no-op otherwise). */
void ctx_emulate_bf16(Tensor t, const Ctx *ctx);

Ctx ctx_cpu(void);
/* Number of usable CUDA devices: 0 without a GPU, a driver, or a CUDA build. */
int cuda_device_count(void);
/* Opens device `index`: stream, cuBLASLt and cuDNN handles, workspace. Returns -1 (with err) on failure. */
int ctx_cuda_create(Ctx *ctx, int index, GkErr *err);
void ctx_destroy(Ctx *ctx);
/* Waits for all work queued on the context (no-op on the CPU). */
void ctx_sync(Ctx *ctx);
/* CPU scratch of at least `bytes` bytes (grown, never shrunk). */
void *ctx_scratch(Ctx *ctx, size_t bytes);

/* Memory on the context's device. */
void *dev_malloc(Ctx *ctx, size_t bytes);
void dev_free(Ctx *ctx, void *p);
/* Copies between tensors of equal element count on any devices, converting f32 <-> bf16 (round to
 * nearest even) when the dtypes differ. Synchronous. */
void tensor_copy(Tensor dst, Tensor src, Ctx *ctx);
/* Sets every byte of t to `byte` (0xff fills with NaN, to find unwritten outputs in tests). */
void tensor_fill_bytes(Tensor t, int byte, Ctx *ctx);

#ifdef __cplusplus
}
#endif
#endif
