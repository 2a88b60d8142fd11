/* seq_ops.c: the checks and CPU twins of seq_ops.h. Shape mismatches are programming errors and stop with
 * both shapes. */
#include "profile.h"
#include "seq_ops.h"

#include <string.h>

#include "core.h"

static void seq_arg(Tensor t, const char *op, const char *arg, const Ctx *ctx) {
    char d[128];
    GK_CHECK(tensor_present(t), "%s: %s is required", op, arg);
    GK_CHECK(t.device == ctx->device, "%s: %s is %s but the op runs on %s", op, arg,
             tensor_describe(t, d, sizeof d), ctx->device == DEV_CUDA ? "cuda" : "cpu");
    DType want = ctx->device == DEV_CUDA ? DT_BF16 : DT_F32;
    GK_CHECK(t.dtype == want, "%s: %s is %s, expected %s", op, arg, tensor_describe(t, d, sizeof d),
             dtype_name(want));
}

static int64_t last(Tensor t) {
    return t.shape[t.ndim - 1];
}

/* The two halves and the whole agree on M and on Ca + Cb. */
static void concat_dims(Tensor whole, Tensor a, Tensor b, const char *op, int64_t *M) {
    char x[128], y[128], z[128];
    int64_t Ca = last(a), Cb = last(b);
    *M = tensor_numel(whole) / (last(whole) ? last(whole) : 1);
    GK_CHECK(last(whole) == Ca + Cb && tensor_numel(a) == *M * Ca && tensor_numel(b) == *M * Cb,
             "%s: %s does not join %s and %s along the last dimension", op,
             tensor_describe(whole, x, sizeof x), tensor_describe(a, y, sizeof y),
             tensor_describe(b, z, sizeof z));
}

#define F(t) ((float *)(t).data)
#define B(t) ((bf16_t *)(t).data)

void channel_concat(Tensor out, Tensor a, Tensor b, Ctx *ctx) {
    PROF_SCOPE(ctx, __func__);
    const char *op = "channel_concat";
    seq_arg(out, op, "out", ctx), seq_arg(a, op, "a", ctx), seq_arg(b, op, "b", ctx);
    int64_t M;
    concat_dims(out, a, b, op, &M);
    if (ctx->device == DEV_CUDA) {
#ifdef GKA_HAVE_CUDA
        channel_concat_cuda(B(out), B(a), B(b), M, (int)last(a), (int)last(b), ctx->cuda);
#endif
    } else {
        channel_concat_cpu(F(out), F(a), F(b), M, (int)last(a), (int)last(b));
        ctx_emulate_bf16(out, ctx);
    }
}

void channel_split(Tensor a, Tensor b, Tensor inp, Ctx *ctx) {
    PROF_SCOPE(ctx, __func__);
    const char *op = "channel_split";
    seq_arg(a, op, "a", ctx), seq_arg(b, op, "b", ctx), seq_arg(inp, op, "inp", ctx);
    int64_t M;
    concat_dims(inp, a, b, op, &M);
    if (ctx->device == DEV_CUDA) {
#ifdef GKA_HAVE_CUDA
        channel_split_cuda(B(a), B(b), B(inp), M, (int)last(a), (int)last(b), ctx->cuda);
#endif
    } else {
        channel_split_cpu(F(a), F(b), F(inp), M, (int)last(a), (int)last(b));
        ctx_emulate_bf16(a, ctx), ctx_emulate_bf16(b, ctx);
    }
}

void token_reverse(Tensor out, Tensor inp, Ctx *ctx) {
    PROF_SCOPE(ctx, __func__);
    const char *op = "token_reverse";
    char x[128], y[128];
    seq_arg(out, op, "out", ctx), seq_arg(inp, op, "inp", ctx);
    GK_CHECK(inp.ndim == 3 && tensor_same_shape(out, inp), "%s: out %s and inp %s must be the same [S, L, C]",
             op, tensor_describe(out, x, sizeof x), tensor_describe(inp, y, sizeof y));
    GK_CHECK(out.data != inp.data, "%s: out must not alias inp", op);
    if (ctx->device == DEV_CUDA) {
#ifdef GKA_HAVE_CUDA
        token_reverse_cuda(B(out), B(inp), inp.shape[0], (int)inp.shape[1], (int)inp.shape[2], ctx->cuda);
#endif
    } else {
        token_reverse_cpu(F(out), F(inp), inp.shape[0], (int)inp.shape[1], (int)inp.shape[2]);
        ctx_emulate_bf16(out, ctx);
    }
}

void channel_concat_cpu(float *out, const float *a, const float *b, int64_t M, int Ca, int Cb) {
    const int C = Ca + Cb;
#pragma omp parallel for schedule(static)
    for (int64_t m = 0; m < M; m++) {
        memcpy(out + m * C, a + m * Ca, sizeof(float) * (size_t)Ca);
        memcpy(out + m * C + Ca, b + m * Cb, sizeof(float) * (size_t)Cb);
    }
}

void channel_split_cpu(float *a, float *b, const float *inp, int64_t M, int Ca, int Cb) {
    const int C = Ca + Cb;
#pragma omp parallel for schedule(static)
    for (int64_t m = 0; m < M; m++) {
        memcpy(a + m * Ca, inp + m * C, sizeof(float) * (size_t)Ca);
        memcpy(b + m * Cb, inp + m * C + Ca, sizeof(float) * (size_t)Cb);
    }
}

void token_reverse_cpu(float *out, const float *inp, int64_t S, int L, int C) {
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < S * L; r++) {
        int64_t s = r / L, t = r % L;
        memcpy(out + r * C, inp + (s * L + (L - 1 - t)) * C, sizeof(float) * (size_t)C);
    }
}
