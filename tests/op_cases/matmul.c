/* Op cases: matmul (with bias and the tanh-GELU epilogue), and two projections of one input whose input
 * gradients add up in place (dinp_accumulate). */
#include <math.h>

#include "../harness.h"

/* p: M, IC, OC, has_bias, has_gelu, second projection (out2 = inp weight2^T, its dinp accumulated) */
static void setup(OpTest *t, int s) {
    static const int shapes[][6] = {{5, 7, 3, 1, 0, 0},       {33, 17, 9, 1, 1, 0},    {64, 64, 48, 0, 0, 0},
                                    {2, 1, 5, 1, 1, 0},       {13, 9, 6, 1, 0, 1},     {392, 320, 1280, 1, 1, 0},
                                    {98, 640, 1000, 1, 0, 0}, {392, 1280, 320, 0, 0, 0}, {392, 320, 480, 0, 0, 1}};
    const int *p = shapes[s];
    for (int i = 0; i < 6; i++) t->p[i] = p[i];
    t->gpu_only = s >= 5;
    arg_in(t, "inp", ARG_ACT, 1, 0, 0, 2, p[0], p[1]);
    arg_in(t, "weight", ARG_WEIGHT, 1, 0, 0, 2, p[2], p[1]);
    arg_in(t, "bias", ARG_WEIGHT, p[3], 0, 0, 1, p[3] ? p[2] : 1);
    arg_in(t, "weight2", ARG_WEIGHT, p[5], 0, 0, 2, p[5] ? p[2] : 1, p[5] ? p[1] : 1);
    arg_out(t, "out", ARG_ACT, 1, 2, p[0], p[2]);
    arg_out(t, "pre_gelu", ARG_ACT, 0, 2, p[4] ? p[0] : 1, p[4] ? p[2] : 1);
    arg_out(t, "out2", ARG_ACT, p[5], 2, p[5] ? p[0] : 1, p[5] ? p[2] : 1);
}

static void forward64(const OpTest *t, double **out, double *const *in) {
    int M = t->p[0], IC = t->p[1], OC = t->p[2];
    out[1][0] = out[2][0] = 0.0;
    for (int m = 0; m < M; m++)
        for (int o = 0; o < OC; o++) {
            double s = t->p[3] ? in[2][o] : 0.0, s2 = 0.0;
            for (int i = 0; i < IC; i++) {
                s += in[0][m * IC + i] * in[1][o * IC + i];
                if (t->p[5]) s2 += in[0][m * IC + i] * in[3][o * IC + i];
            }
            if (t->p[4]) {
                out[1][m * OC + o] = s;
                s = 0.5 * s * (1.0 + tanh(0.7978845608028654 * (s + 0.044715 * s * s * s)));
            }
            out[0][m * OC + o] = s;
            if (t->p[5]) out[2][m * OC + o] = s2;
        }
}

static void run(const OpTest *t, Tensor *out, Tensor *in, Tensor *dout, Tensor *din, Ctx *ctx) {
    Tensor bias = t->p[3] ? in[2] : TENSOR_NONE, dbias = t->p[3] ? din[2] : TENSOR_NONE;
    Tensor pre = t->p[4] ? out[1] : TENSOR_NONE;
    if (!t->p[4]) tensor_fill_bytes(out[1], 0, ctx); /* unused outputs: defined values */
    if (!t->p[5]) tensor_fill_bytes(out[2], 0, ctx);
    matmul_forward(out[0], pre, in[0], in[1], bias, ctx);
    if (t->p[5]) matmul_forward(out[2], TENSOR_NONE, in[0], in[3], TENSOR_NONE, ctx);
    if (!tensor_present(dout[0])) return;
    matmul_backward(din[0], din[1], dbias, dout[0], in[0], in[1], pre, 0, ctx);
    if (t->p[5]) matmul_backward(din[0], din[3], TENSOR_NONE, dout[2], in[0], in[3], TENSOR_NONE, 1, ctx);
}

const OpCase case_matmul = {.name = "matmul", .n_shapes = 9, .setup = setup, .forward64 = forward64, .run = run,
                            .has_cuda = 1};
