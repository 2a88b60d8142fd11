/* layers.c: Linear, Conv2d, BatchNorm2d and LayerNorm over the ops of ops.h (layers.h). */
#include "layers.h"

#include <math.h>
#include <stdio.h>

#include "core.h"

Tensor bind_w(const Binder *b, int i) {
    if (i < 0) return TENSOR_NONE;
    return params_view(b->pt, i, b->weights, b->dev == DEV_CUDA ? DT_BF16 : DT_F32, b->dev);
}

Tensor bind_m(const Binder *b, int i) {
    return i < 0 ? TENSOR_NONE : params_view(b->pt, i, b->master, DT_F32, b->dev);
}

Tensor bind_g(const Binder *b, int i) {
    return i < 0 || !b->grads ? TENSOR_NONE : params_view(b->pt, i, b->grads, DT_F32, b->dev);
}

Tensor bind_buf(const Binder *b, int i) {
    return params_view(b->bt, i, b->buffers, DT_F32, b->dev);
}

Tensor act_new(Arena *a, int ndim, const int64_t *shape) {
    return arena_tensor(a, act_dtype(a), ndim, shape);
}

Tensor stat_new(Arena *a, int64_t n) {
    return arena_tensor(a, DT_F32, 1, &n);
}

Tensor view_as(Tensor t, int ndim, const int64_t *shape) {
    Tensor v = tensor_make(NULL, t.dtype, t.device, ndim, shape);
    GK_CHECK(tensor_numel(v) <= tensor_numel(t) || !t.data, "view of %lld elements over a tensor of %lld",
             (long long)tensor_numel(v), (long long)tensor_numel(t));
    v.data = t.data;
    return v;
}

static int add(ParamTable *pt, const char *prefix, const char *name, int ndim, const int64_t *shape,
               ParamKind kind, ParamInit init, float arg) {
    return params_add(pt, prefix, name, ndim, shape, kind, init, arg);
}

/* ---- Linear ------------------------------------------------------------------------------------------- */

void lin_declare(Lin *l, ParamTable *pt, const char *prefix, int in, int out, int bias) {
    const int64_t w[2] = {out, in}, b[1] = {out};
    l->in = in, l->out = out;
    l->i_w = add(pt, prefix, "weight", 2, w, PARAM_WEIGHT, INIT_TRUNC_NORMAL, 0.02f);
    l->i_b = bias ? add(pt, prefix, "bias", 1, b, PARAM_NO_DECAY, INIT_ZERO, 0.0f) : -1;
}

void lin_bind(Lin *l, const Binder *b) {
    l->w = bind_w(b, l->i_w), l->b = bind_w(b, l->i_b);
    l->gw = bind_g(b, l->i_w), l->gb = bind_g(b, l->i_b);
}

void lin_forward(const Lin *l, Tensor out, Tensor inp, Ctx *ctx) {
    matmul_forward(out, TENSOR_NONE, inp, l->w, l->b, ctx);
}

void lin_backward(const Lin *l, Tensor dinp, Tensor dout, Tensor inp, int acc, Ctx *ctx) {
    matmul_backward(dinp, l->gw, l->gb, dout, inp, l->w, TENSOR_NONE, acc, ctx);
}

/* ---- Conv2d ------------------------------------------------------------------------------------------- */

void conv_declare(Conv *c, ParamTable *pt, const char *prefix, int IC, int OC, int K, int stride, int bias) {
    const int64_t w[4] = {OC, K, K, IC}, b[1] = {OC};
    const float bound = 1.0f / sqrtf((float)(IC * K * K));
    c->IC = IC, c->OC = OC, c->K = K, c->stride = stride, c->pad = K / 2;
    c->i_w = add(pt, prefix, "weight", 4, w, PARAM_WEIGHT, INIT_UNIFORM, bound);
    pt->e[c->i_w].torch_conv2d = 1;
    c->i_b = bias ? add(pt, prefix, "bias", 1, b, PARAM_NO_DECAY, INIT_UNIFORM, bound) : -1;
}

void conv_bind(Conv *c, const Binder *b) {
    c->w = bind_w(b, c->i_w), c->b = bind_w(b, c->i_b);
    c->gw = bind_g(b, c->i_w), c->gb = bind_g(b, c->i_b);
}

void conv_forward(const Conv *c, Tensor out, Tensor inp, Ctx *ctx) {
    conv2d_forward(out, inp, c->w, c->b, c->stride, c->pad, 1, ctx);
}

void conv_backward(const Conv *c, Tensor dinp, Tensor dout, Tensor inp, Ctx *ctx) {
    conv2d_backward(dinp, c->gw, c->gb, dout, inp, c->w, c->stride, c->pad, 1, ctx);
}

/* ---- BatchNorm2d -------------------------------------------------------------------------------------- */

#define BN_MOMENTUM 0.1f

void bn_declare(Bn *n, ParamTable *pt, ParamTable *bt, const char *prefix, int C, float eps, Act act) {
    const int64_t s[1] = {C};
    n->C = C, n->eps = eps, n->act = act;
    n->i_w = add(pt, prefix, "weight", 1, s, PARAM_NO_DECAY, INIT_ONE, 0.0f);
    n->i_b = add(pt, prefix, "bias", 1, s, PARAM_NO_DECAY, INIT_ZERO, 0.0f);
    n->i_rm = add(bt, prefix, "running_mean", 1, s, PARAM_NO_DECAY, INIT_ZERO, 0.0f);
    n->i_rv = add(bt, prefix, "running_var", 1, s, PARAM_NO_DECAY, INIT_ONE, 0.0f);
}

void bn_bind(Bn *n, const Binder *b) {
    n->w = bind_w(b, n->i_w), n->b = bind_w(b, n->i_b);
    n->gw = bind_g(b, n->i_w), n->gb = bind_g(b, n->i_b);
    n->rm = bind_buf(b, n->i_rm), n->rv = bind_buf(b, n->i_rv);
}

void bn_setup(Bn *n, Arena *a) {
    n->mean = stat_new(a, n->C);
    n->rstd = stat_new(a, n->C);
}

void bn_forward(Bn *n, Tensor out, Tensor inp, int train, Ctx *ctx) {
    if (train)
        batchnorm_forward_train(out, n->mean, n->rstd, n->rm, n->rv, inp, n->w, n->b, BN_MOMENTUM, n->eps,
                                n->act, ctx);
    else
        batchnorm_forward_eval(out, inp, n->w, n->b, n->rm, n->rv, n->eps, n->act, ctx);
}

void bn_backward(const Bn *n, Tensor dinp, Tensor dout, Tensor inp, Ctx *ctx) {
    batchnorm_backward(dinp, n->gw, n->gb, dout, inp, n->w, n->b, n->mean, n->rstd, n->act, ctx);
}

/* ---- LayerNorm ---------------------------------------------------------------------------------------- */

#define LN_EPS 1e-5f

void ln_declare(Ln *n, ParamTable *pt, const char *prefix, int C) {
    const int64_t s[1] = {C};
    n->i_w = add(pt, prefix, "weight", 1, s, PARAM_NO_DECAY, INIT_ONE, 0.0f);
    n->i_b = add(pt, prefix, "bias", 1, s, PARAM_NO_DECAY, INIT_ZERO, 0.0f);
}

void ln_bind(Ln *n, const Binder *b) {
    n->w = bind_w(b, n->i_w), n->b = bind_w(b, n->i_b);
    n->gw = bind_g(b, n->i_w), n->gb = bind_g(b, n->i_b);
}

void ln_setup(Ln *n, Arena *a, int64_t M) {
    n->mean = stat_new(a, M);
    n->rstd = stat_new(a, M);
}

void ln_forward(const Ln *n, Tensor out, Tensor inp, Ctx *ctx) {
    layernorm_forward(out, n->mean, n->rstd, inp, n->w, n->b, LN_EPS, ctx);
}

void ln_backward(const Ln *n, Tensor dinp, Tensor dout, Tensor inp, Ctx *ctx) {
    layernorm_backward(dinp, n->gw, n->gb, dout, inp, n->w, n->mean, n->rstd, ctx);
}

void add_into(Tensor dst, Tensor src, Ctx *ctx) {
    DropPath none = {0};
    residual_forward(dst, dst, src, TENSOR_NONE, none, ctx);
}
