/* layers.h: the parameterised layers the vision blocks are made of (Linear, Conv2d, BatchNorm2d, LayerNorm),
 * each a thin wrapper over its op in ops.h that declares its parameters under their PyTorch names, binds
 * their views, and allocates what the backward needs. Internal to vision/.
 *
 * Life of a layer: *_declare puts its parameters in the model's ParamTable (and BatchNorm's running
 * statistics in the buffer table) with the initialisation of spec gkavision.md 2.10; *_bind points it at the
 * flat buffers; *_setup (where there is one) allocates its saved statistics from the activation arena. */
#ifndef GKA_VISION_LAYERS_H
#define GKA_VISION_LAYERS_H

#include "arena.h"
#include "ops.h"
#include "params.h"

/* The flat buffers a model's tensors are views into. */
typedef struct Binder {
    const ParamTable *pt; /* trained parameters */
    const ParamTable *bt; /* buffers: BatchNorm running statistics */
    void *weights;        /* what the ops read: = master on the CPU, the bf16 copy on CUDA */
    float *master;        /* float32 parameters, on the device */
    float *grads;         /* float32 gradients; NULL for inference */
    float *buffers;       /* float32 running statistics */
    Device dev;
} Binder;

Tensor bind_w(const Binder *b, int i);   /* compute copy of parameter i (TENSOR_NONE for i < 0) */
Tensor bind_m(const Binder *b, int i);   /* its float32 master */
Tensor bind_g(const Binder *b, int i);   /* its gradient, TENSOR_NONE without gradients */
Tensor bind_buf(const Binder *b, int i); /* buffer i */

/* Activation dtype of an arena's device: float32 on the CPU, bf16 on CUDA. */
static inline DType act_dtype(const Arena *a) {
    return a->device == DEV_CUDA ? DT_BF16 : DT_F32;
}
Tensor act_new(Arena *a, int ndim, const int64_t *shape); /* an activation */
Tensor stat_new(Arena *a, int64_t n);                     /* float32 statistics [n] */
/* The same memory with another shape (a view of a gradient buffer, a map seen as tokens). */
Tensor view_as(Tensor t, int ndim, const int64_t *shape);

/* ---- Linear: y = x W^T + b; W [out, in] trunc-normal(0.02), b zero ------------------------------------- */
typedef struct Lin {
    int i_w, i_b, in, out;
    Tensor w, b, gw, gb;
} Lin;
void lin_declare(Lin *l, ParamTable *pt, const char *prefix, int in, int out, int bias);
void lin_bind(Lin *l, const Binder *b);
void lin_forward(const Lin *l, Tensor out, Tensor inp, Ctx *ctx);
/* dinp written (accumulated with acc); parameter gradients accumulated. */
void lin_backward(const Lin *l, Tensor dinp, Tensor dout, Tensor inp, int acc, Ctx *ctx);

/* ---- Conv2d, K x K, padding K/2; weight [OC, K, K, IC] here, [OC, IC, K, K] in files -------------------
 * PyTorch's default init: weight and bias U(+-1/sqrt(IC K K)). */
typedef struct Conv {
    int i_w, i_b, IC, OC, K, stride, pad;
    Tensor w, b, gw, gb;
} Conv;
void conv_declare(Conv *c, ParamTable *pt, const char *prefix, int IC, int OC, int K, int stride, int bias);
void conv_bind(Conv *c, const Binder *b);
static inline int conv_out_size(const Conv *c, int h) {
    return (h + 2 * c->pad - c->K) / c->stride + 1;
}
void conv_forward(const Conv *c, Tensor out, Tensor inp, Ctx *ctx);
void conv_backward(const Conv *c, Tensor dinp, Tensor dout, Tensor inp, Ctx *ctx);

/* ---- BatchNorm2d over the channels of an NHWC map, momentum 0.1, followed by act ---------------------
 * weight 1, bias 0; running_mean 0 and running_var 1 in the buffer table. The batch statistics of the last
 * training forward are kept (mean, rstd) for the backward. */
typedef struct Bn {
    int i_w, i_b, i_rm, i_rv, C;
    float eps;
    Act act;
    Tensor w, b, gw, gb, rm, rv, mean, rstd;
} Bn;
void bn_declare(Bn *n, ParamTable *pt, ParamTable *bt, const char *prefix, int C, float eps, Act act);
void bn_bind(Bn *n, const Binder *b);
void bn_setup(Bn *n, Arena *a);
void bn_forward(Bn *n, Tensor out, Tensor inp, int train, Ctx *ctx);
void bn_backward(const Bn *n, Tensor dinp, Tensor dout, Tensor inp, Ctx *ctx);

/* ---- LayerNorm over the channels of tokens [M, C], eps 1e-5; weight 1, bias 0 -------------------------- */
typedef struct Ln {
    int i_w, i_b;
    Tensor w, b, gw, gb, mean, rstd;
} Ln;
void ln_declare(Ln *n, ParamTable *pt, const char *prefix, int C);
void ln_bind(Ln *n, const Binder *b);
void ln_setup(Ln *n, Arena *a, int64_t M);
void ln_forward(const Ln *n, Tensor out, Tensor inp, Ctx *ctx);
void ln_backward(const Ln *n, Tensor dinp, Tensor dout, Tensor inp, Ctx *ctx);

/* dst += src, elementwise over equal shapes: a residual-stream gradient adds a branch's input gradient, a
 * bidirectional mixer its two directions.
 * (residual_forward with no layer scale and no drop path is exactly this add.) */
void add_into(Tensor dst, Tensor src, Ctx *ctx);

#endif
