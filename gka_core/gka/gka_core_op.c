/* gka_core_op.c: the GKA core operator on tensors: checks shapes, dtypes and devices, picks the form
 * (token-recurrent or chunked, the same on CPU and GPU) and calls the CPU or CUDA twin. */
#include <string.h>

#include "profile.h"
#include "core.h"
#include "gka.h"
#include "gka_chunk.h"
#include "gka_recur.h"

#define F(t) ((float *)(t).data)
#define B(t) ((bf16_t *)(t).data)

GkaAlgo gka_core_algo(GkaOpConfig cfg, int K, int V) {
    if (cfg.algo != GKA_ALGO_AUTO) return cfg.algo;
    return (K <= 32 && V <= 32) ? GKA_ALGO_RECURRENT : GKA_ALGO_CHUNKED;
}

typedef struct {
    int B, T, H, K, V;
} CoreDims;

static void want(Tensor t, int io, const char *op, const char *name, Ctx *ctx, int ndim, int64_t d0,
                 int64_t d1, int64_t d2, int64_t d3) {
    if (!tensor_present(t)) return;
    char buf[128];
    DType dt = (ctx->device == DEV_CUDA && io) ? DT_BF16 : DT_F32;
    int64_t want_shape[4] = {d0, d1, d2, d3};
    int ok = t.device == ctx->device && t.dtype == dt && t.ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = t.shape[i] == want_shape[i];
    GK_CHECK(ok, "%s: %s is %s, expected a %d-D %s tensor [%lld, %lld, %lld%s] on the op's device", op, name,
             tensor_describe(t, buf, sizeof buf), ndim, dtype_name(dt), (long long)d0, (long long)d1,
             (long long)d2, ndim == 4 ? ", ..." : "");
}

/* Shapes of every argument from q and v; io = 1 marks the tensors that are bf16 on CUDA. */
static CoreDims check_all(const char *op, Ctx *ctx, Tensor q, Tensor v, Tensor k, Tensor g, Tensor gk,
                          Tensor alpha, Tensor H0, Tensor U0, Tensor x, Tensor f, Tensor o, Tensor HT,
                          Tensor UT) {
    GK_CHECK(tensor_present(q) && tensor_present(k) && tensor_present(v), "%s: q, k and v are required", op);
    GK_CHECK(q.ndim == 4 && v.ndim == 4, "%s: q and v must be [B, T, H, D]", op);
    CoreDims d = {(int)q.shape[0], (int)q.shape[1], (int)q.shape[2], (int)q.shape[3], (int)v.shape[3]};
    want(q, 1, op, "q", ctx, 4, d.B, d.T, d.H, d.K);
    want(k, 1, op, "k", ctx, 4, d.B, d.T, d.H, d.K);
    want(v, 1, op, "v", ctx, 4, d.B, d.T, d.H, d.V);
    want(o, 1, op, "o", ctx, 4, d.B, d.T, d.H, d.V);
    want(x, 0, op, "x", ctx, 4, d.B, d.T, d.H, d.K);
    want(g, 0, op, "g", ctx, 3, d.B, d.T, d.H, 0);
    want(gk, 0, op, "gk", ctx, 3, d.B, d.T, d.H, 0);
    want(alpha, 0, op, "alpha", ctx, 3, d.B, d.T, d.H, 0);
    want(f, 0, op, "f", ctx, 3, d.B, d.T, d.H, 0);
    want(H0, 0, op, "H0", ctx, 4, d.B, d.H, d.K, d.K);
    want(HT, 0, op, "HT", ctx, 4, d.B, d.H, d.K, d.K);
    want(U0, 0, op, "U0", ctx, 4, d.B, d.H, d.K, d.V);
    want(UT, 0, op, "UT", ctx, 4, d.B, d.H, d.K, d.V);
    return d;
}

#ifdef GKA_HAVE_CUDA
static float *saved_ptr(Tensor saved, GkaOpConfig cfg, CoreDims d, Ctx *ctx, const char *op) {
    if (!tensor_present(saved)) return NULL;
    size_t need = gka_core_saved_bytes(cfg, d.B, d.T, d.H, d.K, d.V, ctx->device);
    GK_CHECK(saved.device == ctx->device && saved.dtype == DT_F32 && tensor_bytes(saved) >= need,
             "%s: `saved` must be float32 of at least %zu bytes on the op's device", op, need);
    return need ? (float *)saved.data : NULL;
}
#endif

size_t gka_core_saved_bytes(GkaOpConfig cfg, int B, int T, int H, int K, int V, Device dev) {
#ifdef GKA_HAVE_CUDA
    if (dev == DEV_CUDA && gka_core_algo(cfg, K, V) == GKA_ALGO_RECURRENT)
        return sizeof(float) * gka_recur_states_floats(B, T, H);
#else
    (void)cfg, (void)B, (void)T, (void)H, (void)K, (void)V, (void)dev;
#endif
    return 0;
}

void gka_core_forward(Tensor o, Tensor HT, Tensor UT, Tensor x, Tensor f, Tensor saved, Tensor q, Tensor k,
                      Tensor v, Tensor g, Tensor gk, Tensor alpha, Tensor H0, Tensor U0, GkaOpConfig cfg,
                      Ctx *ctx) {
    PROF_SCOPE(ctx, __func__);
    (void)saved; /* CUDA only */
    const char *op = "gka_core_forward";
    CoreDims d = check_all(op, ctx, q, v, k, g, gk, alpha, H0, U0, x, f, o, HT, UT);
    GK_CHECK(tensor_present(o) && tensor_present(x) && tensor_present(f), "%s: o, x and f are required", op);
    GkaAlgo algo = gka_core_algo(cfg, d.K, d.V);
    if (ctx->device == DEV_CUDA) {
#ifdef GKA_HAVE_CUDA
        if (algo == GKA_ALGO_CHUNKED)
            gka_chunk_forward_cuda(B(o), F(HT), F(UT), F(x), F(f), B(q), B(k), B(v), F(g), F(gk), F(alpha),
                                   F(H0), F(U0), cfg, d.B, d.T, d.H, d.K, d.V, ctx->cuda);
        else
            gka_recur_forward_cuda(B(o), F(HT), F(UT), F(x), F(f), saved_ptr(saved, cfg, d, ctx, op), B(q),
                                   B(k), B(v), F(g), F(gk), F(alpha), F(H0), F(U0), cfg, d.B, d.T, d.H, d.K,
                                   d.V, ctx->cuda);
#endif
        return;
    }
    if (algo == GKA_ALGO_RECURRENT)
        gka_recur_forward_cpu(F(o), F(HT), F(UT), F(x), F(f), F(q), F(k), F(v), F(g), F(gk), F(alpha), F(H0),
                              F(U0), cfg, d.B, d.T, d.H, d.K, d.V);
    else
        gka_chunk_forward_cpu(F(o), F(HT), F(UT), F(x), F(f), F(q), F(k), F(v), F(g), F(gk), F(alpha), F(H0),
                              F(U0), cfg, d.B, d.T, d.H, d.K, d.V);
    ctx_emulate_bf16(o, ctx);
}

size_t gka_core_workspace_bytes(GkaOpConfig cfg, int B, int T, int H, int K, int V) {
    if (gka_core_algo(cfg, K, V) == GKA_ALGO_RECURRENT)
        return sizeof(float) * gka_recur_workspace_floats(B, T, H, K, V);
    return sizeof(float) * (size_t)B * T * H; /* the chunked form's separate dgk, for a tied gate */
}

void gka_core_backward(Tensor dq, Tensor dk, Tensor dv, Tensor dg, Tensor dgk, Tensor dalpha, Tensor dH0,
                       Tensor dU0, Tensor work, Tensor d_o, Tensor dHT, Tensor dUT, Tensor q, Tensor k,
                       Tensor v, Tensor g, Tensor gk, Tensor alpha, Tensor H0, Tensor U0, Tensor x, Tensor f,
                       Tensor saved, GkaOpConfig cfg, Ctx *ctx) {
    PROF_SCOPE(ctx, __func__);
    (void)saved; /* CUDA only */
    const char *op = "gka_core_backward";
    CoreDims d = check_all(op, ctx, q, v, k, g, gk, alpha, H0, U0, x, f, d_o, dHT, dUT);
    GK_CHECK(tensor_present(d_o) && tensor_present(x) && tensor_present(f), "%s: d_o, x and f are required",
             op);
    want(dq, 1, op, "dq", ctx, 4, d.B, d.T, d.H, d.K);
    want(dk, 1, op, "dk", ctx, 4, d.B, d.T, d.H, d.K);
    want(dv, 1, op, "dv", ctx, 4, d.B, d.T, d.H, d.V);
    want(dg, 0, op, "dg", ctx, 3, d.B, d.T, d.H, 0);
    want(dgk, 0, op, "dgk", ctx, 3, d.B, d.T, d.H, 0);
    want(dalpha, 0, op, "dalpha", ctx, 3, d.B, d.T, d.H, 0);
    want(dH0, 0, op, "dH0", ctx, 4, d.B, d.H, d.K, d.K);
    want(dU0, 0, op, "dU0", ctx, 4, d.B, d.H, d.K, d.V);
    size_t need = gka_core_workspace_bytes(cfg, d.B, d.T, d.H, d.K, d.V);
    GK_CHECK(need == 0 || (tensor_present(work) && tensor_bytes(work) >= need && work.device == ctx->device),
             "%s: workspace of %zu bytes required", op, need);
    GkaAlgo algo = gka_core_algo(cfg, d.K, d.V);
    if (ctx->device == DEV_CUDA) {
#ifdef GKA_HAVE_CUDA
        if (algo == GKA_ALGO_CHUNKED) /* the CUDA twin takes a tied gate (dg == dgk) itself */
            gka_chunk_backward_cuda(B(dq), B(dk), B(dv), F(dg), F(dgk), F(dalpha), F(dH0), F(dU0), B(d_o),
                                    F(dHT), F(dUT), B(q), B(k), B(v), F(g), F(gk), F(alpha), F(H0), F(U0),
                                    F(x), F(f), cfg, d.B, d.T, d.H, d.K, d.V, ctx->cuda);
        else
            gka_recur_backward_cuda(B(dq), B(dk), B(dv), F(dg), F(dgk), F(dalpha), F(dH0), F(dU0), F(work),
                                    B(d_o), F(dHT), F(dUT), B(q), B(k), B(v), F(g), F(gk), F(alpha), F(H0),
                                    F(U0), F(x), F(f), saved_ptr(saved, cfg, d, ctx, op), cfg, d.B, d.T, d.H,
                                    d.K, d.V, ctx->cuda);
#endif
        return;
    }
    if (algo == GKA_ALGO_RECURRENT) {
        gka_recur_backward_cpu(F(dq), F(dk), F(dv), F(dg), F(dgk), F(dalpha), F(dH0), F(dU0), F(work), F(d_o),
                               F(dHT), F(dUT), F(q), F(k), F(v), F(g), F(gk), F(alpha), F(H0), F(U0), F(x),
                               F(f), cfg, d.B, d.T, d.H, d.K, d.V);
        ctx_emulate_bf16(dq, ctx), ctx_emulate_bf16(dk, ctx), ctx_emulate_bf16(dv, ctx);
        return;
    }
    /* the chunked form writes dg and dgk separately: a tied gate gets dgk in the workspace, then the sum */
    int tied = tensor_present(dg) && dg.data == dgk.data;
    float *dgk_out = tied ? F(work) : F(dgk);
    gka_chunk_backward_cpu(F(dq), F(dk), F(dv), F(dg), dgk_out, F(dalpha), F(dH0), F(dU0), F(d_o), F(dHT),
                           F(dUT), F(q), F(k), F(v), F(g), F(gk), F(alpha), F(H0), F(U0), F(x), F(f), cfg,
                           d.B, d.T, d.H, d.K, d.V);
    if (tied)
        for (int64_t i = 0; i < tensor_numel(dg); i++)
            F(dg)[i] += dgk_out[i];
    ctx_emulate_bf16(dq, ctx), ctx_emulate_bf16(dk, ctx), ctx_emulate_bf16(dv, ctx);
}
