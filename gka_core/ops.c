/* ops.c: the op interface of ops.h: checks shapes, dtypes and devices once, then calls the CPU or CUDA twin.
 * A shape mismatch is a programming error and stops with the op, the argument and both shapes. */
#include "profile.h"
#include "ops.h"

#include <math.h>

#include "core.h"
#include "cpu/ops_cpu.h"
#include "philox.h"
#ifdef GKA_HAVE_CUDA
#include "cuda/ops_cuda.h"
#endif

/* What an argument is decides its dtype on CUDA (everything is float32 on the CPU). */
typedef enum { ROLE_ACT, ROLE_WEIGHT, ROLE_GRAD_W, ROLE_STAT } Role;

static void expect(Tensor t, Role role, const char *op, const char *arg, Ctx *ctx) {
    if (!tensor_present(t)) return;
    char d[128];
    GK_CHECK(t.device == ctx->device, "%s: %s is %s but the op runs on %s", op, arg,
             tensor_describe(t, d, sizeof d), ctx->device == DEV_CUDA ? "cuda" : "cpu");
    DType want = DT_F32;
    if (ctx->device == DEV_CUDA && (role == ROLE_ACT || role == ROLE_WEIGHT)) want = DT_BF16;
    GK_CHECK(t.dtype == want, "%s: %s is %s, expected %s", op, arg, tensor_describe(t, d, sizeof d),
             dtype_name(want));
}

static void need(Tensor t, const char *op, const char *arg) {
    GK_CHECK(tensor_present(t), "%s: %s is required", op, arg);
}

static void same_shape(Tensor a, Tensor b, const char *op, const char *an, const char *bn) {
    if (!tensor_present(a) || !tensor_present(b)) return;
    char x[128], y[128];
    GK_CHECK(tensor_same_shape(a, b), "%s: %s %s and %s %s differ in shape", op, an,
             tensor_describe(a, x, sizeof x), bn, tensor_describe(b, y, sizeof y));
}

static void numel_is(Tensor t, int64_t n, const char *op, const char *arg) {
    if (!tensor_present(t)) return;
    char d[128];
    GK_CHECK(tensor_numel(t) == n, "%s: %s is %s, expected %lld elements", op, arg,
             tensor_describe(t, d, sizeof d), (long long)n);
}

static int64_t last_dim(Tensor t) {
    return t.shape[t.ndim - 1];
}

#define F(t) ((float *)(t).data)
#define B(t) ((bf16_t *)(t).data)
#define CU(ctx) ((ctx)->device == DEV_CUDA)

const char *act_name(Act act) {
    static const char *names[] = {"none", "relu", "gelu", "gelu_tanh", "silu", "softplus", "sigmoid"};
    return (unsigned)act < sizeof names / sizeof names[0] ? names[act] : "?";
}

float droppath_scale(DropPath dp, int64_t s) {
    if (dp.p <= 0.0f) return 1.0f;
    Philox4 r = philox_draw(dp.seed, RNG_DROPPATH, dp.counter + (uint64_t)s, 0);
    return philox_u01(r.v[0]) < dp.p ? 0.0f : 1.0f / (1.0f - dp.p);
}

/* ---------------------------------------------------------------------------------------------- */

void matmul_forward(Tensor out, Tensor pre_gelu, Tensor inp, Tensor weight, Tensor bias, Ctx *ctx) {
    PROF_SCOPE(ctx, __func__);
    const char *op = "matmul_forward";
    need(out, op, "out"), need(inp, op, "inp"), need(weight, op, "weight");
    expect(out, ROLE_ACT, op, "out", ctx), expect(pre_gelu, ROLE_ACT, op, "pre_gelu", ctx);
    expect(inp, ROLE_ACT, op, "inp", ctx), expect(weight, ROLE_WEIGHT, op, "weight", ctx);
    expect(bias, ROLE_WEIGHT, op, "bias", ctx);
    GK_CHECK(weight.ndim == 2, "%s: weight must be [OC, IC]", op);
    int OC = (int)weight.shape[0], IC = (int)weight.shape[1];
    GK_CHECK(last_dim(inp) == IC, "%s: inp's last dimension %lld is not IC = %d", op,
             (long long)last_dim(inp), IC);
    int64_t M = tensor_numel(inp) / IC;
    numel_is(out, M * OC, op, "out"), numel_is(pre_gelu, M * OC, op, "pre_gelu"),
        numel_is(bias, OC, op, "bias");
    if (CU(ctx)) {
#ifdef GKA_HAVE_CUDA
        matmul_forward_cuda(B(out), B(pre_gelu), B(inp), B(weight), B(bias), M, IC, OC, ctx->cuda);
#endif
    } else {
        matmul_forward_cpu(F(out), F(pre_gelu), F(inp), F(weight), F(bias), M, IC, OC);
        ctx_emulate_bf16(out, ctx);
        ctx_emulate_bf16(pre_gelu, ctx);
    }
}

void matmul_backward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp, Tensor weight,
                     Tensor pre_gelu, int dinp_accumulate, Ctx *ctx) {
    PROF_SCOPE(ctx, __func__);
    const char *op = "matmul_backward";
    need(dout, op, "dout"), need(inp, op, "inp"), need(weight, op, "weight");
    expect(dinp, ROLE_ACT, op, "dinp", ctx), expect(dweight, ROLE_GRAD_W, op, "dweight", ctx);
    expect(dbias, ROLE_GRAD_W, op, "dbias", ctx), expect(dout, ROLE_ACT, op, "dout", ctx);
    expect(inp, ROLE_ACT, op, "inp", ctx), expect(weight, ROLE_WEIGHT, op, "weight", ctx);
    expect(pre_gelu, ROLE_ACT, op, "pre_gelu", ctx);
    int OC = (int)weight.shape[0], IC = (int)weight.shape[1];
    int64_t M = tensor_numel(inp) / IC;
    numel_is(dout, M * OC, op, "dout"), numel_is(dinp, M * IC, op, "dinp");
    numel_is(dweight, (int64_t)OC * IC, op, "dweight"), numel_is(dbias, OC, op, "dbias");
    numel_is(pre_gelu, M * OC, op, "pre_gelu");
    if (CU(ctx)) {
#ifdef GKA_HAVE_CUDA
        matmul_backward_cuda(B(dinp), F(dweight), F(dbias), B(dout), B(inp), B(weight), B(pre_gelu),
                             dinp_accumulate, M, IC, OC, ctx->cuda);
#endif
    } else {
        matmul_backward_cpu(F(dinp), F(dweight), F(dbias), F(dout), F(inp), F(weight), F(pre_gelu),
                            dinp_accumulate, M, IC, OC);
        ctx_emulate_bf16(dinp, ctx);
    }
}

/* ---------------------------------------------------------------------------------------------- */

static void conv_dims(Tensor out, Tensor inp, Tensor weight, int stride, int pad, int groups,
                      const char *op) {
    char a[128], b[128];
    GK_CHECK(inp.ndim == 4 && weight.ndim == 4 && out.ndim == 4, "%s: inp, weight and out must be 4-D (NHWC)",
             op);
    int C = (int)inp.shape[3], OC = (int)weight.shape[0], K = (int)weight.shape[1];
    GK_CHECK(groups >= 1 && C % groups == 0 && OC % groups == 0,
             "%s: %d groups do not divide %d -> %d channels", op, groups, C, OC);
    GK_CHECK(weight.shape[2] == K && weight.shape[3] == C / groups,
             "%s: weight %s is not [OC, K, K, C/groups]", op, tensor_describe(weight, a, sizeof a));
    GK_CHECK(stride >= 1 && pad >= 0, "%s: stride %d, pad %d", op, stride, pad);
    int64_t OH = (inp.shape[1] + 2 * pad - K) / stride + 1, OW = (inp.shape[2] + 2 * pad - K) / stride + 1;
    GK_CHECK(out.shape[0] == inp.shape[0] && out.shape[1] == OH && out.shape[2] == OW && out.shape[3] == OC,
             "%s: out %s, expected [%lld, %lld, %lld, %d] from inp %s", op, tensor_describe(out, a, sizeof a),
             (long long)inp.shape[0], (long long)OH, (long long)OW, OC, tensor_describe(inp, b, sizeof b));
}

/* The profiler's row for a convolution: op and shape, since the shapes differ by orders of magnitude. */
#define CONV_PROF_NAME(op, inp, weight, stride, groups)                                                      \
    (prof_enabled() ? prof_name("%s %lldx%lld %lld->%lld k%lld s%d g%d", op, (long long)(inp).shape[1],      \
                                (long long)(inp).shape[2], (long long)(inp).shape[3],                        \
                                (long long)(weight).shape[0], (long long)(weight).shape[1], stride, groups)  \
                    : op)

void conv2d_forward(Tensor out, Tensor inp, Tensor weight, Tensor bias, int stride, int pad, int groups,
                    Ctx *ctx) {
    PROF_SCOPE(ctx, CONV_PROF_NAME("conv2d_forward", inp, weight, stride, groups));
    const char *op = "conv2d_forward";
    need(out, op, "out"), need(inp, op, "inp"), need(weight, op, "weight");
    expect(out, ROLE_ACT, op, "out", ctx), expect(inp, ROLE_ACT, op, "inp", ctx);
    expect(weight, ROLE_WEIGHT, op, "weight", ctx), expect(bias, ROLE_WEIGHT, op, "bias", ctx);
    conv_dims(out, inp, weight, stride, pad, groups, op);
    numel_is(bias, weight.shape[0], op, "bias");
    if (CU(ctx)) {
#ifdef GKA_HAVE_CUDA
        conv2d_forward_cuda(B(out), B(inp), B(weight), B(bias), (int)inp.shape[0], (int)inp.shape[1],
                            (int)inp.shape[2], (int)inp.shape[3], (int)weight.shape[0], (int)weight.shape[1],
                            stride, pad, groups, ctx->cuda);
#endif
    } else {
        conv2d_forward_cpu(F(out), F(inp), F(weight), F(bias), (int)inp.shape[0], (int)inp.shape[1],
                           (int)inp.shape[2], (int)inp.shape[3], (int)weight.shape[0], (int)weight.shape[1],
                           stride, pad, groups, ctx);
        ctx_emulate_bf16(out, ctx);
    }
}

void conv2d_backward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp, Tensor weight,
                     int stride, int pad, int groups, Ctx *ctx) {
    PROF_SCOPE(ctx, CONV_PROF_NAME("conv2d_backward", inp, weight, stride, groups));
    const char *op = "conv2d_backward";
    need(dout, op, "dout"), need(inp, op, "inp"), need(weight, op, "weight");
    expect(dinp, ROLE_ACT, op, "dinp", ctx), expect(dweight, ROLE_GRAD_W, op, "dweight", ctx);
    expect(dbias, ROLE_GRAD_W, op, "dbias", ctx), expect(dout, ROLE_ACT, op, "dout", ctx);
    expect(inp, ROLE_ACT, op, "inp", ctx), expect(weight, ROLE_WEIGHT, op, "weight", ctx);
    conv_dims(dout, inp, weight, stride, pad, groups, op);
    same_shape(dinp, inp, op, "dinp", "inp"), same_shape(dweight, weight, op, "dweight", "weight");
    numel_is(dbias, weight.shape[0], op, "dbias");
    if (CU(ctx)) {
#ifdef GKA_HAVE_CUDA
        conv2d_backward_cuda(B(dinp), F(dweight), F(dbias), B(dout), B(inp), B(weight), (int)inp.shape[0],
                             (int)inp.shape[1], (int)inp.shape[2], (int)inp.shape[3], (int)weight.shape[0],
                             (int)weight.shape[1], stride, pad, groups, ctx->cuda);
#endif
    } else {
        conv2d_backward_cpu(F(dinp), F(dweight), F(dbias), F(dout), F(inp), F(weight), (int)inp.shape[0],
                            (int)inp.shape[1], (int)inp.shape[2], (int)inp.shape[3], (int)weight.shape[0],
                            (int)weight.shape[1], stride, pad, groups, ctx);
        ctx_emulate_bf16(dinp, ctx);
    }
}

/* ---------------------------------------------------------------------------------------------- */

static void bn_act_ok(Act act, const char *op) {
    GK_CHECK(act == ACT_NONE || act == ACT_RELU || act == ACT_GELU_TANH,
             "%s: activation %s is not fused here", op, act_name(act));
}

void batchnorm_forward_train(Tensor out, Tensor mean, Tensor rstd, Tensor running_mean, Tensor running_var,
                             Tensor inp, Tensor weight, Tensor bias, float momentum, float eps, Act act,
                             Ctx *ctx) {
    PROF_SCOPE(ctx, __func__);
    const char *op = "batchnorm_forward_train";
    need(out, op, "out"), need(mean, op, "mean"), need(rstd, op, "rstd"), need(inp, op, "inp");
    need(weight, op, "weight"), need(bias, op, "bias");
    expect(out, ROLE_ACT, op, "out", ctx), expect(inp, ROLE_ACT, op, "inp", ctx);
    expect(mean, ROLE_STAT, op, "mean", ctx), expect(rstd, ROLE_STAT, op, "rstd", ctx);
    expect(running_mean, ROLE_STAT, op, "running_mean", ctx),
        expect(running_var, ROLE_STAT, op, "running_var", ctx);
    expect(weight, ROLE_WEIGHT, op, "weight", ctx), expect(bias, ROLE_WEIGHT, op, "bias", ctx);
    same_shape(out, inp, op, "out", "inp");
    bn_act_ok(act, op);
    int C = (int)last_dim(inp);
    int64_t M = tensor_numel(inp) / C;
    GK_CHECK(M > 1, "%s: training statistics need more than one value per channel (M = %lld)", op,
             (long long)M);
    numel_is(mean, C, op, "mean"), numel_is(rstd, C, op, "rstd"), numel_is(weight, C, op, "weight");
    numel_is(bias, C, op, "bias"), numel_is(running_mean, C, op, "running_mean");
    numel_is(running_var, C, op, "running_var");
    if (CU(ctx)) {
#ifdef GKA_HAVE_CUDA
        batchnorm_forward_train_cuda(B(out), F(mean), F(rstd), F(running_mean), F(running_var), B(inp),
                                     B(weight), B(bias), momentum, eps, act, M, C, ctx->cuda);
#endif
    } else {
        batchnorm_forward_train_cpu(F(out), F(mean), F(rstd), F(running_mean), F(running_var), F(inp),
                                    F(weight), F(bias), momentum, eps, act, M, C);
        ctx_emulate_bf16(out, ctx);
    }
}

void batchnorm_forward_eval(Tensor out, Tensor inp, Tensor weight, Tensor bias, Tensor running_mean,
                            Tensor running_var, float eps, Act act, Ctx *ctx) {
    PROF_SCOPE(ctx, __func__);
    const char *op = "batchnorm_forward_eval";
    need(out, op, "out"), need(inp, op, "inp"), need(weight, op, "weight"), need(bias, op, "bias");
    need(running_mean, op, "running_mean"), need(running_var, op, "running_var");
    expect(out, ROLE_ACT, op, "out", ctx), expect(inp, ROLE_ACT, op, "inp", ctx);
    expect(weight, ROLE_WEIGHT, op, "weight", ctx), expect(bias, ROLE_WEIGHT, op, "bias", ctx);
    expect(running_mean, ROLE_STAT, op, "running_mean", ctx),
        expect(running_var, ROLE_STAT, op, "running_var", ctx);
    same_shape(out, inp, op, "out", "inp");
    bn_act_ok(act, op);
    int C = (int)last_dim(inp);
    numel_is(weight, C, op, "weight"), numel_is(bias, C, op, "bias");
    numel_is(running_mean, C, op, "running_mean"), numel_is(running_var, C, op, "running_var");
    if (CU(ctx)) {
#ifdef GKA_HAVE_CUDA
        batchnorm_forward_eval_cuda(B(out), B(inp), B(weight), B(bias), F(running_mean), F(running_var), eps,
                                    act, tensor_numel(inp) / C, C, ctx->cuda);
#endif
    } else {
        batchnorm_forward_eval_cpu(F(out), F(inp), F(weight), F(bias), F(running_mean), F(running_var), eps,
                                   act, tensor_numel(inp) / C, C);
        ctx_emulate_bf16(out, ctx);
    }
}

void batchnorm_backward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp, Tensor weight,
                        Tensor bias, Tensor mean, Tensor rstd, Act act, Ctx *ctx) {
    PROF_SCOPE(ctx, __func__);
    const char *op = "batchnorm_backward";
    need(dout, op, "dout"), need(inp, op, "inp"), need(weight, op, "weight"), need(bias, op, "bias");
    need(mean, op, "mean"), need(rstd, op, "rstd");
    expect(dinp, ROLE_ACT, op, "dinp", ctx), expect(dweight, ROLE_GRAD_W, op, "dweight", ctx);
    expect(dbias, ROLE_GRAD_W, op, "dbias", ctx), expect(dout, ROLE_ACT, op, "dout", ctx);
    expect(inp, ROLE_ACT, op, "inp", ctx), expect(weight, ROLE_WEIGHT, op, "weight", ctx);
    expect(bias, ROLE_WEIGHT, op, "bias", ctx), expect(mean, ROLE_STAT, op, "mean", ctx);
    expect(rstd, ROLE_STAT, op, "rstd", ctx);
    same_shape(dinp, inp, op, "dinp", "inp"), same_shape(dout, inp, op, "dout", "inp");
    bn_act_ok(act, op);
    int C = (int)last_dim(inp);
    numel_is(dweight, C, op, "dweight"), numel_is(dbias, C, op, "dbias");
    if (CU(ctx)) {
#ifdef GKA_HAVE_CUDA
        batchnorm_backward_cuda(B(dinp), F(dweight), F(dbias), B(dout), B(inp), B(weight), B(bias), F(mean),
                                F(rstd), act, tensor_numel(inp) / C, C, ctx->cuda);
#endif
    } else {
        batchnorm_backward_cpu(F(dinp), F(dweight), F(dbias), F(dout), F(inp), F(weight), F(bias), F(mean),
                               F(rstd), act, tensor_numel(inp) / C, C);
        ctx_emulate_bf16(dinp, ctx);
    }
}

/* ---------------------------------------------------------------------------------------------- */

void layernorm_forward(Tensor out, Tensor mean, Tensor rstd, Tensor inp, Tensor weight, Tensor bias,
                       float eps, Ctx *ctx) {
    PROF_SCOPE(ctx, __func__);
    const char *op = "layernorm_forward";
    need(out, op, "out"), need(mean, op, "mean"), need(rstd, op, "rstd"), need(inp, op, "inp");
    need(weight, op, "weight"), need(bias, op, "bias");
    expect(out, ROLE_ACT, op, "out", ctx), expect(inp, ROLE_ACT, op, "inp", ctx);
    expect(mean, ROLE_STAT, op, "mean", ctx), expect(rstd, ROLE_STAT, op, "rstd", ctx);
    expect(weight, ROLE_WEIGHT, op, "weight", ctx), expect(bias, ROLE_WEIGHT, op, "bias", ctx);
    same_shape(out, inp, op, "out", "inp");
    int C = (int)last_dim(inp);
    int64_t M = tensor_numel(inp) / C;
    numel_is(mean, M, op, "mean"), numel_is(rstd, M, op, "rstd");
    numel_is(weight, C, op, "weight"), numel_is(bias, C, op, "bias");
    if (CU(ctx)) {
#ifdef GKA_HAVE_CUDA
        layernorm_forward_cuda(B(out), F(mean), F(rstd), B(inp), B(weight), B(bias), eps, M, C, ctx->cuda);
#endif
    } else {
        layernorm_forward_cpu(F(out), F(mean), F(rstd), F(inp), F(weight), F(bias), eps, M, C);
        ctx_emulate_bf16(out, ctx);
    }
}

void layernorm_backward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp, Tensor weight,
                        Tensor mean, Tensor rstd, Ctx *ctx) {
    PROF_SCOPE(ctx, __func__);
    const char *op = "layernorm_backward";
    need(dout, op, "dout"), need(inp, op, "inp"), need(weight, op, "weight");
    need(mean, op, "mean"), need(rstd, op, "rstd");
    expect(dinp, ROLE_ACT, op, "dinp", ctx), expect(dweight, ROLE_GRAD_W, op, "dweight", ctx);
    expect(dbias, ROLE_GRAD_W, op, "dbias", ctx), expect(dout, ROLE_ACT, op, "dout", ctx);
    expect(inp, ROLE_ACT, op, "inp", ctx), expect(weight, ROLE_WEIGHT, op, "weight", ctx);
    expect(mean, ROLE_STAT, op, "mean", ctx), expect(rstd, ROLE_STAT, op, "rstd", ctx);
    same_shape(dinp, inp, op, "dinp", "inp"), same_shape(dout, inp, op, "dout", "inp");
    int C = (int)last_dim(inp);
    int64_t M = tensor_numel(inp) / C;
    numel_is(dweight, C, op, "dweight"), numel_is(dbias, C, op, "dbias");
    numel_is(mean, M, op, "mean"), numel_is(rstd, M, op, "rstd");
    if (CU(ctx)) {
#ifdef GKA_HAVE_CUDA
        layernorm_backward_cuda(B(dinp), F(dweight), F(dbias), B(dout), B(inp), B(weight), F(mean), F(rstd),
                                M, C, ctx->cuda);
#endif
    } else {
        layernorm_backward_cpu(F(dinp), F(dweight), F(dbias), F(dout), F(inp), F(weight), F(mean), F(rstd), M,
                               C);
        ctx_emulate_bf16(dinp, ctx);
    }
}

/* ---------------------------------------------------------------------------------------------- */

void rmsnorm_forward(Tensor out, Tensor rstd, Tensor inp, Tensor gate, Tensor weight, float eps, Ctx *ctx) {
    PROF_SCOPE(ctx, __func__);
    const char *op = "rmsnorm_forward";
    need(out, op, "out"), need(rstd, op, "rstd"), need(inp, op, "inp"), need(weight, op, "weight");
    expect(out, ROLE_ACT, op, "out", ctx), expect(rstd, ROLE_STAT, op, "rstd", ctx);
    expect(inp, ROLE_ACT, op, "inp", ctx), expect(gate, ROLE_ACT, op, "gate", ctx);
    expect(weight, ROLE_WEIGHT, op, "weight", ctx);
    same_shape(out, inp, op, "out", "inp"), same_shape(gate, inp, op, "gate", "inp");
    int D = (int)last_dim(inp);
    int64_t M = tensor_numel(inp) / D;
    numel_is(rstd, M, op, "rstd"), numel_is(weight, D, op, "weight");
    if (CU(ctx)) {
#ifdef GKA_HAVE_CUDA
        rmsnorm_forward_cuda(B(out), F(rstd), B(inp), B(gate), B(weight), eps, M, D, ctx->cuda);
#endif
    } else {
        rmsnorm_forward_cpu(F(out), F(rstd), F(inp), F(gate), F(weight), eps, M, D);
        ctx_emulate_bf16(out, ctx);
    }
}

void rmsnorm_backward(Tensor dinp, Tensor dgate, Tensor dweight, Tensor dout, Tensor inp, Tensor gate,
                      Tensor weight, Tensor rstd, Ctx *ctx) {
    PROF_SCOPE(ctx, __func__);
    const char *op = "rmsnorm_backward";
    need(dout, op, "dout"), need(inp, op, "inp"), need(weight, op, "weight"), need(rstd, op, "rstd");
    GK_CHECK(!tensor_present(dgate) || tensor_present(gate), "%s: dgate without gate", op);
    expect(dinp, ROLE_ACT, op, "dinp", ctx), expect(dgate, ROLE_ACT, op, "dgate", ctx);
    expect(dweight, ROLE_GRAD_W, op, "dweight", ctx), expect(dout, ROLE_ACT, op, "dout", ctx);
    expect(inp, ROLE_ACT, op, "inp", ctx), expect(gate, ROLE_ACT, op, "gate", ctx);
    expect(weight, ROLE_WEIGHT, op, "weight", ctx), expect(rstd, ROLE_STAT, op, "rstd", ctx);
    same_shape(dinp, inp, op, "dinp", "inp"), same_shape(dout, inp, op, "dout", "inp");
    same_shape(gate, inp, op, "gate", "inp"), same_shape(dgate, inp, op, "dgate", "inp");
    int D = (int)last_dim(inp);
    int64_t M = tensor_numel(inp) / D;
    numel_is(rstd, M, op, "rstd"), numel_is(dweight, D, op, "dweight");
    if (CU(ctx)) {
#ifdef GKA_HAVE_CUDA
        rmsnorm_backward_cuda(B(dinp), B(dgate), F(dweight), B(dout), B(inp), B(gate), B(weight), F(rstd), M,
                              D, ctx->cuda);
#endif
    } else {
        rmsnorm_backward_cpu(F(dinp), F(dgate), F(dweight), F(dout), F(inp), F(gate), F(weight), F(rstd), M,
                             D);
        ctx_emulate_bf16(dinp, ctx);
        ctx_emulate_bf16(dgate, ctx);
    }
}

/* ---------------------------------------------------------------------------------------------- */

void act_forward(Tensor out, Tensor inp, Act act, Ctx *ctx) {
    PROF_SCOPE(ctx, __func__);
    const char *op = "act_forward";
    need(out, op, "out"), need(inp, op, "inp");
    expect(out, ROLE_ACT, op, "out", ctx), expect(inp, ROLE_ACT, op, "inp", ctx);
    numel_is(out, tensor_numel(inp), op, "out");
    if (CU(ctx)) {
#ifdef GKA_HAVE_CUDA
        act_forward_cuda(B(out), B(inp), act, tensor_numel(inp), ctx->cuda);
#endif
    } else {
        act_forward_cpu(F(out), F(inp), act, tensor_numel(inp));
        ctx_emulate_bf16(out, ctx);
    }
}

void act_backward(Tensor dinp, Tensor dout, Tensor inp, Act act, Ctx *ctx) {
    PROF_SCOPE(ctx, __func__);
    const char *op = "act_backward";
    need(dinp, op, "dinp"), need(dout, op, "dout"), need(inp, op, "inp");
    expect(dinp, ROLE_ACT, op, "dinp", ctx), expect(dout, ROLE_ACT, op, "dout", ctx);
    expect(inp, ROLE_ACT, op, "inp", ctx);
    numel_is(dinp, tensor_numel(inp), op, "dinp"), numel_is(dout, tensor_numel(inp), op, "dout");
    if (CU(ctx)) {
#ifdef GKA_HAVE_CUDA
        act_backward_cuda(B(dinp), B(dout), B(inp), act, tensor_numel(inp), ctx->cuda);
#endif
    } else {
        act_backward_cpu(F(dinp), F(dout), F(inp), act, tensor_numel(inp));
        ctx_emulate_bf16(dinp, ctx);
    }
}

/* ---------------------------------------------------------------------------------------------- */

static void shortconv_dims(Tensor inp, Tensor weight, int causal, const char *op) {
    char a[128];
    GK_CHECK(inp.ndim == 3, "%s: inp %s must be [S, L, C]", op, tensor_describe(inp, a, sizeof a));
    GK_CHECK(weight.ndim == 2 && weight.shape[0] == inp.shape[2],
             "%s: weight %s must be [C, W] with C = %lld", op, tensor_describe(weight, a, sizeof a),
             (long long)inp.shape[2]);
    GK_CHECK(causal || weight.shape[1] % 2 == 1, "%s: a non-causal short conv needs an odd width", op);
}

void shortconv_forward(Tensor out, Tensor inp, Tensor weight, int causal, Act act, Ctx *ctx) {
    PROF_SCOPE(ctx, __func__);
    const char *op = "shortconv_forward";
    need(out, op, "out"), need(inp, op, "inp"), need(weight, op, "weight");
    expect(out, ROLE_ACT, op, "out", ctx), expect(inp, ROLE_ACT, op, "inp", ctx);
    expect(weight, ROLE_WEIGHT, op, "weight", ctx);
    shortconv_dims(inp, weight, causal, op);
    same_shape(out, inp, op, "out", "inp");
    if (CU(ctx)) {
#ifdef GKA_HAVE_CUDA
        shortconv_forward_cuda(B(out), B(inp), B(weight), causal, act, (int)inp.shape[0], (int)inp.shape[1],
                               (int)inp.shape[2], (int)weight.shape[1], ctx->cuda);
#endif
    } else {
        shortconv_forward_cpu(F(out), F(inp), F(weight), causal, act, (int)inp.shape[0], (int)inp.shape[1],
                              (int)inp.shape[2], (int)weight.shape[1]);
        ctx_emulate_bf16(out, ctx);
    }
}

void shortconv_backward(Tensor dinp, Tensor dweight, Tensor dout, Tensor inp, Tensor weight, int causal,
                        Act act, Ctx *ctx) {
    PROF_SCOPE(ctx, __func__);
    const char *op = "shortconv_backward";
    need(dout, op, "dout"), need(inp, op, "inp"), need(weight, op, "weight");
    expect(dinp, ROLE_ACT, op, "dinp", ctx), expect(dweight, ROLE_GRAD_W, op, "dweight", ctx);
    expect(dout, ROLE_ACT, op, "dout", ctx), expect(inp, ROLE_ACT, op, "inp", ctx);
    expect(weight, ROLE_WEIGHT, op, "weight", ctx);
    shortconv_dims(inp, weight, causal, op);
    same_shape(dinp, inp, op, "dinp", "inp"), same_shape(dout, inp, op, "dout", "inp");
    same_shape(dweight, weight, op, "dweight", "weight");
    if (CU(ctx)) {
#ifdef GKA_HAVE_CUDA
        shortconv_backward_cuda(B(dinp), F(dweight), B(dout), B(inp), B(weight), causal, act,
                                (int)inp.shape[0], (int)inp.shape[1], (int)inp.shape[2], (int)weight.shape[1],
                                ctx->cuda);
#endif
    } else {
        shortconv_backward_cpu(F(dinp), F(dweight), F(dout), F(inp), F(weight), causal, act,
                               (int)inp.shape[0], (int)inp.shape[1], (int)inp.shape[2], (int)weight.shape[1]);
        ctx_emulate_bf16(dinp, ctx);
    }
}

/* ---------------------------------------------------------------------------------------------- */

static void window_dims(Tensor img, Tensor seq, int window, const char *op) {
    char a[128], b[128];
    GK_CHECK(img.ndim == 4 && seq.ndim == 3 && window >= 1,
             "%s: image must be [B, H, W, C], windows [S, w*w, C]", op);
    int64_t nH = (img.shape[1] + window - 1) / window, nW = (img.shape[2] + window - 1) / window;
    GK_CHECK(seq.shape[0] == img.shape[0] * nH * nW && seq.shape[1] == (int64_t)window * window &&
                 seq.shape[2] == img.shape[3],
             "%s: windows %s do not match image %s with window %d", op, tensor_describe(seq, a, sizeof a),
             tensor_describe(img, b, sizeof b), window);
}

void window_partition(Tensor out, Tensor inp, int window, Ctx *ctx) {
    PROF_SCOPE(ctx, __func__);
    const char *op = "window_partition";
    need(out, op, "out"), need(inp, op, "inp");
    expect(out, ROLE_ACT, op, "out", ctx), expect(inp, ROLE_ACT, op, "inp", ctx);
    window_dims(inp, out, window, op);
    if (CU(ctx)) {
#ifdef GKA_HAVE_CUDA
        window_partition_cuda(B(out), B(inp), window, (int)inp.shape[0], (int)inp.shape[1], (int)inp.shape[2],
                              (int)inp.shape[3], ctx->cuda);
#endif
    } else {
        window_partition_cpu(F(out), F(inp), window, (int)inp.shape[0], (int)inp.shape[1], (int)inp.shape[2],
                             (int)inp.shape[3]);
        ctx_emulate_bf16(out, ctx);
    }
}

void window_reverse(Tensor out, Tensor inp, int window, Ctx *ctx) {
    PROF_SCOPE(ctx, __func__);
    const char *op = "window_reverse";
    need(out, op, "out"), need(inp, op, "inp");
    expect(out, ROLE_ACT, op, "out", ctx), expect(inp, ROLE_ACT, op, "inp", ctx);
    window_dims(out, inp, window, op);
    if (CU(ctx)) {
#ifdef GKA_HAVE_CUDA
        window_reverse_cuda(B(out), B(inp), window, (int)out.shape[0], (int)out.shape[1], (int)out.shape[2],
                            (int)out.shape[3], ctx->cuda);
#endif
    } else {
        window_reverse_cpu(F(out), F(inp), window, (int)out.shape[0], (int)out.shape[1], (int)out.shape[2],
                           (int)out.shape[3]);
        ctx_emulate_bf16(out, ctx);
    }
}

/* ---------------------------------------------------------------------------------------------- */

static void attention_dims(Tensor out, Tensor att, Tensor qkv, int n_heads, const char *op) {
    char a[128];
    GK_CHECK(qkv.ndim == 3 && qkv.shape[2] % 3 == 0, "%s: qkv %s must be [S, L, 3C]", op,
             tensor_describe(qkv, a, sizeof a));
    int64_t S = qkv.shape[0], L = qkv.shape[1], C = qkv.shape[2] / 3;
    GK_CHECK(n_heads >= 1 && C % n_heads == 0, "%s: %d heads do not divide %lld channels", op, n_heads,
             (long long)C);
    numel_is(out, S * L * C, op, "out");
    numel_is(att, S * n_heads * L * L, op, "att");
}

void attention_forward(Tensor out, Tensor att, Tensor qkv, int n_heads, Ctx *ctx) {
    PROF_SCOPE(ctx, __func__);
    const char *op = "attention_forward";
    need(out, op, "out"), need(att, op, "att"), need(qkv, op, "qkv");
    expect(out, ROLE_ACT, op, "out", ctx), expect(att, ROLE_STAT, op, "att", ctx);
    expect(qkv, ROLE_ACT, op, "qkv", ctx);
    attention_dims(out, att, qkv, n_heads, op);
    if (CU(ctx)) {
#ifdef GKA_HAVE_CUDA
        attention_forward_cuda(B(out), F(att), B(qkv), (int)qkv.shape[0], (int)qkv.shape[1],
                               (int)(qkv.shape[2] / 3), n_heads, ctx->cuda);
#endif
    } else {
        attention_forward_cpu(F(out), F(att), F(qkv), (int)qkv.shape[0], (int)qkv.shape[1],
                              (int)(qkv.shape[2] / 3), n_heads);
        ctx_emulate_bf16(out, ctx);
    }
}

void attention_backward(Tensor dqkv, Tensor datt, Tensor dout, Tensor qkv, Tensor att, int n_heads,
                        Ctx *ctx) {
    PROF_SCOPE(ctx, __func__);
    const char *op = "attention_backward";
    need(dqkv, op, "dqkv"), need(datt, op, "datt"), need(dout, op, "dout"), need(qkv, op, "qkv");
    need(att, op, "att");
    expect(dqkv, ROLE_ACT, op, "dqkv", ctx), expect(datt, ROLE_STAT, op, "datt", ctx);
    expect(dout, ROLE_ACT, op, "dout", ctx), expect(qkv, ROLE_ACT, op, "qkv", ctx);
    expect(att, ROLE_STAT, op, "att", ctx);
    attention_dims(dout, att, qkv, n_heads, op);
    same_shape(dqkv, qkv, op, "dqkv", "qkv"), same_shape(datt, att, op, "datt", "att");
    if (CU(ctx)) {
#ifdef GKA_HAVE_CUDA
        attention_backward_cuda(B(dqkv), F(datt), B(dout), B(qkv), F(att), (int)qkv.shape[0],
                                (int)qkv.shape[1], (int)(qkv.shape[2] / 3), n_heads, ctx->cuda);
#endif
    } else {
        attention_backward_cpu(F(dqkv), F(datt), F(dout), F(qkv), F(att), (int)qkv.shape[0],
                               (int)qkv.shape[1], (int)(qkv.shape[2] / 3), n_heads);
        ctx_emulate_bf16(dqkv, ctx);
    }
}

/* ---------------------------------------------------------------------------------------------- */

void avgpool_forward(Tensor out, Tensor inp, Ctx *ctx) {
    PROF_SCOPE(ctx, __func__);
    const char *op = "avgpool_forward";
    need(out, op, "out"), need(inp, op, "inp");
    expect(out, ROLE_ACT, op, "out", ctx), expect(inp, ROLE_ACT, op, "inp", ctx);
    GK_CHECK(inp.ndim == 3, "%s: inp must be [B, L, C]", op);
    numel_is(out, inp.shape[0] * inp.shape[2], op, "out");
    if (CU(ctx)) {
#ifdef GKA_HAVE_CUDA
        avgpool_forward_cuda(B(out), B(inp), (int)inp.shape[0], (int)inp.shape[1], (int)inp.shape[2],
                             ctx->cuda);
#endif
    } else {
        avgpool_forward_cpu(F(out), F(inp), (int)inp.shape[0], (int)inp.shape[1], (int)inp.shape[2]);
        ctx_emulate_bf16(out, ctx);
    }
}

void avgpool_backward(Tensor dinp, Tensor dout, Ctx *ctx) {
    PROF_SCOPE(ctx, __func__);
    const char *op = "avgpool_backward";
    need(dinp, op, "dinp"), need(dout, op, "dout");
    expect(dinp, ROLE_ACT, op, "dinp", ctx), expect(dout, ROLE_ACT, op, "dout", ctx);
    GK_CHECK(dinp.ndim == 3, "%s: dinp must be [B, L, C]", op);
    numel_is(dout, dinp.shape[0] * dinp.shape[2], op, "dout");
    if (CU(ctx)) {
#ifdef GKA_HAVE_CUDA
        avgpool_backward_cuda(B(dinp), B(dout), (int)dinp.shape[0], (int)dinp.shape[1], (int)dinp.shape[2],
                              ctx->cuda);
#endif
    } else {
        avgpool_backward_cpu(F(dinp), F(dout), (int)dinp.shape[0], (int)dinp.shape[1], (int)dinp.shape[2]);
        ctx_emulate_bf16(dinp, ctx);
    }
}

/* ---------------------------------------------------------------------------------------------- */

void residual_forward(Tensor out, Tensor res, Tensor branch, Tensor gamma, DropPath dp, Ctx *ctx) {
    PROF_SCOPE(ctx, __func__);
    const char *op = "residual_forward";
    need(out, op, "out"), need(res, op, "res"), need(branch, op, "branch");
    expect(out, ROLE_ACT, op, "out", ctx), expect(res, ROLE_ACT, op, "res", ctx);
    expect(branch, ROLE_ACT, op, "branch", ctx), expect(gamma, ROLE_WEIGHT, op, "gamma", ctx);
    same_shape(out, res, op, "out", "res"), same_shape(branch, res, op, "branch", "res");
    int C = (int)last_dim(res);
    int64_t S = res.shape[0];
    numel_is(gamma, C, op, "gamma");
    GK_CHECK(dp.p >= 0.0f && dp.p < 1.0f, "%s: drop-path rate %g outside [0, 1)", op, dp.p);
    if (CU(ctx)) {
#ifdef GKA_HAVE_CUDA
        residual_forward_cuda(B(out), B(res), B(branch), B(gamma), dp, S, tensor_numel(res) / S / C, C,
                              ctx->cuda);
#endif
    } else {
        residual_forward_cpu(F(out), F(res), F(branch), F(gamma), dp, S, tensor_numel(res) / S / C, C);
        ctx_emulate_bf16(out, ctx);
    }
}

void residual_backward(Tensor dbranch, Tensor dgamma, Tensor dout, Tensor branch, Tensor gamma, DropPath dp,
                       Ctx *ctx) {
    PROF_SCOPE(ctx, __func__);
    const char *op = "residual_backward";
    need(dout, op, "dout"), need(branch, op, "branch");
    expect(dbranch, ROLE_ACT, op, "dbranch", ctx), expect(dgamma, ROLE_GRAD_W, op, "dgamma", ctx);
    expect(dout, ROLE_ACT, op, "dout", ctx), expect(branch, ROLE_ACT, op, "branch", ctx);
    expect(gamma, ROLE_WEIGHT, op, "gamma", ctx);
    same_shape(dbranch, branch, op, "dbranch", "branch"), same_shape(dout, branch, op, "dout", "branch");
    int C = (int)last_dim(branch);
    int64_t S = branch.shape[0];
    numel_is(gamma, C, op, "gamma"), numel_is(dgamma, C, op, "dgamma");
    GK_CHECK(!tensor_present(dgamma) || tensor_present(gamma), "%s: dgamma without gamma", op);
    if (CU(ctx)) {
#ifdef GKA_HAVE_CUDA
        residual_backward_cuda(B(dbranch), F(dgamma), B(dout), B(branch), B(gamma), dp, S,
                               tensor_numel(branch) / S / C, C, ctx->cuda);
#endif
    } else {
        residual_backward_cpu(F(dbranch), F(dgamma), F(dout), F(branch), F(gamma), dp, S,
                              tensor_numel(branch) / S / C, C);
        ctx_emulate_bf16(dbranch, ctx);
    }
}

/* ---------------------------------------------------------------------------------------------- */

void softmax_xent_forward(Tensor losses, Tensor probs, Tensor logits, Tensor targets, Ctx *ctx) {
    PROF_SCOPE(ctx, __func__);
    const char *op = "softmax_xent_forward";
    need(losses, op, "losses"), need(probs, op, "probs"), need(logits, op, "logits"),
        need(targets, op, "targets");
    expect(losses, ROLE_STAT, op, "losses", ctx), expect(probs, ROLE_STAT, op, "probs", ctx);
    expect(logits, ROLE_ACT, op, "logits", ctx), expect(targets, ROLE_STAT, op, "targets", ctx);
    GK_CHECK(logits.ndim == 2, "%s: logits must be [B, K]", op);
    same_shape(probs, logits, op, "probs", "logits"), same_shape(targets, logits, op, "targets", "logits");
    numel_is(losses, logits.shape[0], op, "losses");
    if (CU(ctx)) {
#ifdef GKA_HAVE_CUDA
        softmax_xent_forward_cuda(F(losses), F(probs), B(logits), F(targets), (int)logits.shape[0],
                                  (int)logits.shape[1], ctx->cuda);
#endif
    } else {
        softmax_xent_forward_cpu(F(losses), F(probs), F(logits), F(targets), (int)logits.shape[0],
                                 (int)logits.shape[1]);
    }
}

void softmax_xent_backward(Tensor dlogits, Tensor probs, Tensor targets, float dloss, Ctx *ctx) {
    PROF_SCOPE(ctx, __func__);
    const char *op = "softmax_xent_backward";
    need(dlogits, op, "dlogits"), need(probs, op, "probs"), need(targets, op, "targets");
    expect(dlogits, ROLE_ACT, op, "dlogits", ctx), expect(probs, ROLE_STAT, op, "probs", ctx);
    expect(targets, ROLE_STAT, op, "targets", ctx);
    GK_CHECK(probs.ndim == 2, "%s: probs must be [B, K]", op);
    same_shape(dlogits, probs, op, "dlogits", "probs"), same_shape(targets, probs, op, "targets", "probs");
    if (CU(ctx)) {
#ifdef GKA_HAVE_CUDA
        softmax_xent_backward_cuda(B(dlogits), F(probs), F(targets), dloss, (int)probs.shape[0],
                                   (int)probs.shape[1], ctx->cuda);
#endif
    } else {
        softmax_xent_backward_cpu(F(dlogits), F(probs), F(targets), dloss, (int)probs.shape[0],
                                  (int)probs.shape[1]);
        ctx_emulate_bf16(dlogits, ctx);
    }
}

void smooth_one_hot(float *targets, const int *labels, int B, int K, float smoothing) {
    float off = smoothing / (float)K, on = 1.0f - smoothing + off;
    for (int b = 0; b < B; b++)
        for (int k = 0; k < K; k++)
            targets[(int64_t)b * K + k] = k == labels[b] ? on : off;
}
