/* selective_scan.c: the dispatcher of selective_scan.h, in the manner of ops.c: checks shapes, dtypes and
 * devices once, then calls the CPU or the CUDA twin. On the CPU it rounds what it writes to bf16 when the
 * context emulates the GPU's storage. A mismatch is a programming error and stops naming the argument. */
#include "profile.h"
#include "selective_scan.h"

#include <stdio.h>

#include "core.h"

/* What an argument is decides its dtype on CUDA: activations bf16, everything else float32. */
typedef enum { SS_ACT, SS_F32 } SsRole;

static void ss_arg(Tensor t, SsRole role, int ndim, const int64_t *shape, const char *op, const char *arg,
                   const Ctx *ctx) {
    char d[128];
    GK_CHECK(tensor_present(t), "%s: %s is required", op, arg);
    GK_CHECK(t.device == ctx->device, "%s: %s is %s but the op runs on %s", op, arg,
             tensor_describe(t, d, sizeof d), ctx->device == DEV_CUDA ? "cuda" : "cpu");
    DType wdt = ctx->device == DEV_CUDA && role == SS_ACT ? DT_BF16 : DT_F32;
    GK_CHECK(t.dtype == wdt, "%s: %s is %s, expected %s", op, arg, tensor_describe(t, d, sizeof d),
             dtype_name(wdt));
    int ok = t.ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = t.shape[i] == shape[i];
    if (ok) return;
    char want[96];
    int at = snprintf(want, sizeof want, "[");
    for (int i = 0; i < ndim; i++)
        at += snprintf(want + at, sizeof want - (size_t)at, "%s%lld", i ? ", " : "", (long long)shape[i]);
    snprintf(want + at, sizeof want - (size_t)at, "]");
    gk_die("%s: %s is %s, expected %s", op, arg, tensor_describe(t, d, sizeof d), want);
}

/* Checks every argument against the sizes S, L, D, N read from x and A_log. */
static void ss_check(Tensor x, Tensor delta_pre, Tensor A_log, Tensor Bm, Tensor Cm, Tensor Dp,
                     Tensor dt_bias, const char *op, const Ctx *ctx, int64_t dims[4]) {
    char d[128];
    GK_CHECK(tensor_present(x) && x.ndim == 3, "%s: x must be [S, L, D]", op);
    GK_CHECK(tensor_present(A_log) && A_log.ndim == 2, "%s: A_log must be [D, N]", op);
    const int64_t S = x.shape[0], L = x.shape[1], D = x.shape[2], N = A_log.shape[1];
    GK_CHECK(N >= 1 && N <= SELECTIVE_SCAN_MAX_N, "%s: state size %lld outside 1..%d (A_log %s)", op,
             (long long)N, SELECTIVE_SCAN_MAX_N, tensor_describe(A_log, d, sizeof d));
    const int64_t sld[3] = {S, L, D}, sln[3] = {S, L, N}, dn[2] = {D, N}, d1[1] = {D};
    ss_arg(x, SS_ACT, 3, sld, op, "x", ctx);
    ss_arg(delta_pre, SS_ACT, 3, sld, op, "delta_pre", ctx);
    ss_arg(A_log, SS_F32, 2, dn, op, "A_log", ctx);
    ss_arg(Bm, SS_ACT, 3, sln, op, "Bm", ctx);
    ss_arg(Cm, SS_ACT, 3, sln, op, "Cm", ctx);
    ss_arg(Dp, SS_F32, 1, d1, op, "Dp", ctx);
    ss_arg(dt_bias, SS_F32, 1, d1, op, "dt_bias", ctx);
    /* the CUDA backward runs one block per sequence with one thread per channel */
    GK_CHECK(ctx->device != DEV_CUDA || D <= 1024, "%s: %lld channels; the CUDA scan handles up to 1024", op,
             (long long)D);
    dims[0] = S, dims[1] = L, dims[2] = D, dims[3] = N;
}

#define F(t) ((float *)(t).data)
#define B(t) ((bf16_t *)(t).data)

void selective_scan_forward(Tensor y, Tensor states, Tensor x, Tensor delta_pre, Tensor A_log, Tensor Bm,
                            Tensor Cm, Tensor Dp, Tensor dt_bias, Ctx *ctx) {
    PROF_SCOPE(ctx, __func__);
    const char *op = "selective_scan_forward";
    int64_t n[4];
    ss_check(x, delta_pre, A_log, Bm, Cm, Dp, dt_bias, op, ctx, n);
    const int64_t sld[3] = {n[0], n[1], n[2]}, st[4] = {n[0], selective_scan_nchunks(n[1]), n[2], n[3]};
    ss_arg(y, SS_ACT, 3, sld, op, "y", ctx);
    if (tensor_present(states)) ss_arg(states, SS_F32, 4, st, op, "states", ctx);
    if (ctx->device == DEV_CUDA) {
#ifdef GKA_HAVE_CUDA
        selective_scan_forward_cuda(B(y), F(states), B(x), B(delta_pre), F(A_log), B(Bm), B(Cm), F(Dp),
                                    F(dt_bias), (int)n[0], (int)n[1], (int)n[2], (int)n[3], ctx->cuda);
#endif
    } else {
        selective_scan_forward_cpu(F(y), F(states), F(x), F(delta_pre), F(A_log), F(Bm), F(Cm), F(Dp),
                                   F(dt_bias), (int)n[0], (int)n[1], (int)n[2], (int)n[3]);
        ctx_emulate_bf16(y, ctx);
    }
}

void selective_scan_backward(Tensor dx, Tensor ddelta_pre, Tensor dA_log, Tensor dBm, Tensor dCm, Tensor dD,
                             Tensor ddt_bias, Tensor dy, Tensor x, Tensor delta_pre, Tensor A_log, Tensor Bm,
                             Tensor Cm, Tensor Dp, Tensor dt_bias, Tensor states, Ctx *ctx) {
    PROF_SCOPE(ctx, __func__);
    const char *op = "selective_scan_backward";
    int64_t n[4];
    ss_check(x, delta_pre, A_log, Bm, Cm, Dp, dt_bias, op, ctx, n);
    const int64_t sld[3] = {n[0], n[1], n[2]}, sln[3] = {n[0], n[1], n[3]}, dn[2] = {n[2], n[3]},
                  d1[1] = {n[2]};
    const int64_t st[4] = {n[0], selective_scan_nchunks(n[1]), n[2], n[3]};
    ss_arg(dy, SS_ACT, 3, sld, op, "dy", ctx);
    ss_arg(states, SS_F32, 4, st, op, "states", ctx);
    ss_arg(dx, SS_ACT, 3, sld, op, "dx", ctx);
    ss_arg(ddelta_pre, SS_ACT, 3, sld, op, "ddelta_pre", ctx);
    ss_arg(dBm, SS_ACT, 3, sln, op, "dBm", ctx);
    ss_arg(dCm, SS_ACT, 3, sln, op, "dCm", ctx);
    ss_arg(dA_log, SS_F32, 2, dn, op, "dA_log", ctx);
    ss_arg(dD, SS_F32, 1, d1, op, "dD", ctx);
    ss_arg(ddt_bias, SS_F32, 1, d1, op, "ddt_bias", ctx);
    if (ctx->device == DEV_CUDA) {
#ifdef GKA_HAVE_CUDA
        selective_scan_backward_cuda(B(dx), B(ddelta_pre), F(dA_log), B(dBm), B(dCm), F(dD), F(ddt_bias),
                                     B(dy), B(x), B(delta_pre), F(A_log), B(Bm), B(Cm), F(Dp), F(dt_bias),
                                     F(states), (int)n[0], (int)n[1], (int)n[2], (int)n[3], ctx->cuda);
#endif
    } else {
        float *part = ctx_scratch(ctx, sizeof(float) * (size_t)(n[0] * n[2] * (n[3] + 2)));
        selective_scan_backward_cpu(F(dx), F(ddelta_pre), F(dA_log), F(dBm), F(dCm), F(dD), F(ddt_bias), part,
                                    F(dy), F(x), F(delta_pre), F(A_log), F(Bm), F(Cm), F(Dp), F(dt_bias),
                                    F(states), (int)n[0], (int)n[1], (int)n[2], (int)n[3]);
        ctx_emulate_bf16(dx, ctx), ctx_emulate_bf16(ddelta_pre, ctx);
        ctx_emulate_bf16(dBm, ctx), ctx_emulate_bf16(dCm, ctx);
    }
}
