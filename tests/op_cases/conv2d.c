/* Op cases: 2-D convolution, NHWC: dense (im2col + GEMM, and the 1x1 GEMM without im2col), grouped,
 * depth-wise (direct loop) and depth-wise with a channel multiplier (grouped GEMMs of one input channel). */
#include "../harness.h"

typedef struct {
    int N, H, W, C, OC, K, stride, pad, groups, bias;
} ConvShape;

static const ConvShape shapes[] = {
    {1, 5, 7, 3, 4, 3, 1, 1, 1, 1},       /* dense 3x3 */
    {2, 7, 6, 5, 7, 3, 2, 1, 1, 0},       /* stride 2, odd sizes */
    {2, 3, 1, 3, 5, 1, 1, 0, 1, 1},       /* 1x1: GEMM on the input */
    {1, 5, 5, 4, 6, 1, 2, 0, 1, 0},       /* 1x1 with stride: im2col */
    {2, 6, 5, 6, 4, 3, 1, 1, 2, 1},       /* 2 groups */
    {2, 7, 7, 8, 8, 3, 1, 1, 8, 1},       /* depth-wise */
    {1, 9, 8, 4, 4, 5, 2, 2, 4, 0},       /* depth-wise 5x5, stride 2 */
    {2, 5, 5, 4, 8, 3, 1, 0, 4, 1},       /* 4 groups of 1 -> 2 channels, no padding */
    {1, 13, 13, 3, 8, 3, 2, 1, 1, 0},     /* stem-like */
    {1, 6, 6, 3, 5, 2, 2, 0, 1, 1},       /* patchify, K = stride */
    {1, 1, 1, 2, 3, 3, 1, 1, 1, 1},       /* one pixel, all taps but the centre in the padding */
    {2, 56, 56, 80, 80, 3, 1, 1, 1, 1},   /* GKAVision-T at batch 2: ConvBlock conv */
    {2, 28, 28, 160, 320, 3, 2, 1, 1, 0}, /* level 1 -> 2 downsample */
    {2, 112, 112, 32, 80, 3, 2, 1, 1, 0}, /* stem conv 2 */
    {2, 224, 224, 3, 32, 3, 2, 1, 1, 0},  /* stem conv 1 */
};
#define N_SHAPES (int)(sizeof shapes / sizeof shapes[0])
#define FIRST_GPU_ONLY 11

static int out_size(int n, const ConvShape *c) {
    return (n + 2 * c->pad - c->K) / c->stride + 1;
}

static void setup(OpTest *t, int s) {
    const ConvShape *c = &shapes[s];
    t->gpu_only = s >= FIRST_GPU_ONLY;
    arg_in(t, "inp", ARG_ACT, 1, 0, 0, 4, c->N, c->H, c->W, c->C);
    arg_in(t, "weight", ARG_WEIGHT, 1, 0, 0, 4, c->OC, c->K, c->K, c->C / c->groups);
    if (c->bias) arg_in(t, "bias", ARG_WEIGHT, 1, 0, 0, 1, c->OC);
    arg_out(t, "out", ARG_ACT, 1, 4, c->N, out_size(c->H, c), out_size(c->W, c), c->OC);
}

static void forward64(const OpTest *t, double **out, double *const *in) {
    const ConvShape *c = &shapes[t->shape_index];
    int OH = out_size(c->H, c), OW = out_size(c->W, c), Cg = c->C / c->groups, OCg = c->OC / c->groups;
    for (int n = 0; n < c->N; n++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++)
                for (int o = 0; o < c->OC; o++) {
                    double s = c->bias ? in[2][o] : 0.0;
                    for (int kh = 0; kh < c->K; kh++)
                        for (int kw = 0; kw < c->K; kw++) {
                            int ih = oh * c->stride - c->pad + kh, iw = ow * c->stride - c->pad + kw;
                            if (ih < 0 || ih >= c->H || iw < 0 || iw >= c->W) continue;
                            const double *x =
                                in[0] + (((int64_t)n * c->H + ih) * c->W + iw) * c->C + o / OCg * Cg;
                            const double *w = in[1] + (((int64_t)o * c->K + kh) * c->K + kw) * Cg;
                            for (int i = 0; i < Cg; i++)
                                s += x[i] * w[i];
                        }
                    out[0][(((int64_t)n * OH + oh) * OW + ow) * c->OC + o] = s;
                }
}

static void run(const OpTest *t, Tensor *out, Tensor *in, Tensor *dout, Tensor *din, Ctx *ctx) {
    const ConvShape *c = &shapes[t->shape_index];
    Tensor bias = c->bias ? in[2] : TENSOR_NONE, dbias = c->bias ? din[2] : TENSOR_NONE;
    conv2d_forward(out[0], in[0], in[1], bias, c->stride, c->pad, c->groups, ctx);
    if (tensor_present(dout[0]))
        conv2d_backward(din[0], din[1], dbias, dout[0], in[0], in[1], c->stride, c->pad, c->groups, ctx);
}

const OpCase case_conv2d = {.name = "conv2d",
                            .n_shapes = N_SHAPES,
                            .setup = setup,
                            .forward64 = forward64,
                            .run = run,
                            .has_cuda = 1};
