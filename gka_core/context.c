/* context.c: contexts, device memory and tensor copies, for CPU-only and CUDA builds alike. */
#include "context.h"

#include <stdlib.h>
#include <string.h>

#include "core.h"
#ifdef GKA_HAVE_CUDA
#include "cuda/cuda_api.h"
#endif

Ctx ctx_cpu(void) {
    Ctx c = {0};
    c.device = DEV_CPU;
    return c;
}

int cuda_device_count(void) {
#ifdef GKA_HAVE_CUDA
    return cuda_count_devices();
#else
    return 0;
#endif
}

int ctx_cuda_create(Ctx *ctx, int index, GkErr *err) {
    *ctx = ctx_cpu();
#ifdef GKA_HAVE_CUDA
    if (cuda_ctx_open(&ctx->cuda, index, err) != 0) return -1;
    ctx->device = DEV_CUDA;
    return 0;
#else
    (void)index;
    return gk_fail(err, "this build has no CUDA support (nvcc was not found when it was configured)");
#endif
}

void ctx_destroy(Ctx *ctx) {
#ifdef GKA_HAVE_CUDA
    if (ctx->cuda) cuda_ctx_close(ctx->cuda);
#endif
    free(ctx->scratch);
    *ctx = ctx_cpu();
}

void ctx_sync(Ctx *ctx) {
#ifdef GKA_HAVE_CUDA
    if (ctx->cuda) cuda_ctx_sync(ctx->cuda);
#else
    (void)ctx;
#endif
}

void ctx_emulate_bf16(Tensor t, const Ctx *ctx) {
    if (!ctx->emulate_bf16 || !tensor_present(t) || t.device != DEV_CPU || t.dtype != DT_F32) return;
    float *x = (float *)t.data;
    int64_t n = tensor_numel(t);
    for (int64_t i = 0; i < n; i++) x[i] = bf16_round(x[i]);
}

void *ctx_scratch(Ctx *ctx, size_t bytes) {
    if (bytes > ctx->scratch_bytes) {
        free(ctx->scratch);
        ctx->scratch = mallocCheck(bytes);
        ctx->scratch_bytes = bytes;
    }
    return ctx->scratch;
}

void *dev_malloc(Ctx *ctx, size_t bytes) {
    if (ctx->device == DEV_CPU) return mallocCheck(bytes);
#ifdef GKA_HAVE_CUDA
    return cuda_alloc(bytes);
#else
    gk_die("device memory requested in a build without CUDA");
#endif
}

void dev_free(Ctx *ctx, void *p) {
    if (ctx->device == DEV_CPU) {
        free(p);
        return;
    }
#ifdef GKA_HAVE_CUDA
    cuda_release(p);
#endif
}

static void convert_host(void *dst, DType dd, const void *src, DType sd, size_t n) {
    if (dd == sd) {
        memcpy(dst, src, n * dtype_size(dd));
    } else if (dd == DT_BF16) {
        for (size_t i = 0; i < n; i++) ((bf16_t *)dst)[i] = f32_to_bf16(((const float *)src)[i]);
    } else {
        for (size_t i = 0; i < n; i++) ((float *)dst)[i] = bf16_to_f32(((const bf16_t *)src)[i]);
    }
}

void tensor_copy(Tensor dst, Tensor src, Ctx *ctx) {
    char a[128], b[128];
    GK_CHECK(tensor_numel(dst) == tensor_numel(src), "tensor_copy from %s to %s: element counts differ",
             tensor_describe(src, a, sizeof a), tensor_describe(dst, b, sizeof b));
    size_t n = (size_t)tensor_numel(src);
    if (n == 0) return;
    if (dst.device == DEV_CPU && src.device == DEV_CPU) {
        convert_host(dst.data, dst.dtype, src.data, src.dtype, n);
        return;
    }
#ifdef GKA_HAVE_CUDA
    if (dst.dtype == src.dtype) {
        cuda_copy(dst.data, src.data, n * dtype_size(src.dtype));
    } else if (dst.device == DEV_CUDA && src.device == DEV_CUDA) {
        GK_CHECK(ctx && ctx->cuda, "a device-side conversion needs a CUDA context");
        if (dst.dtype == DT_BF16) cuda_f32_to_bf16((bf16_t *)dst.data, (const float *)src.data, n, ctx->cuda);
        else cuda_bf16_to_f32((float *)dst.data, (const bf16_t *)src.data, n, ctx->cuda);
        cuda_ctx_sync(ctx->cuda);
    } else if (src.device == DEV_CPU) { /* convert on the host, then copy */
        void *tmp = mallocCheck(n * dtype_size(dst.dtype));
        convert_host(tmp, dst.dtype, src.data, src.dtype, n);
        cuda_copy(dst.data, tmp, n * dtype_size(dst.dtype));
        free(tmp);
    } else { /* copy to the host, then convert */
        void *tmp = mallocCheck(n * dtype_size(src.dtype));
        cuda_copy(tmp, src.data, n * dtype_size(src.dtype));
        convert_host(dst.data, dst.dtype, tmp, src.dtype, n);
        free(tmp);
    }
#else
    (void)ctx;
    gk_die("tensor_copy to or from device memory in a build without CUDA");
#endif
}

void tensor_fill_bytes(Tensor t, int byte, Ctx *ctx) {
    (void)ctx;
    if (t.device == DEV_CPU) {
        memset(t.data, byte, tensor_bytes(t));
        return;
    }
#ifdef GKA_HAVE_CUDA
    cuda_memset(t.data, byte, tensor_bytes(t));
#endif
}
