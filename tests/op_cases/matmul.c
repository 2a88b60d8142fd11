/* Op cases: matmul (with bias and the tanh-GELU epilogue). */
#include <math.h>

#include "../harness.h"

/* p: M, IC, OC, has_bias, has_gelu */
static void setup(OpTest *t, int s) {
    static const int shapes[][5] = {{5, 7, 3, 1, 0}, {33, 17, 9, 1, 1}, {64, 64, 48, 0, 0}, {2, 1, 5, 1, 1},
                                    {392, 320, 1280, 1, 1}, {98, 640, 1000, 1, 0}, {392, 1280, 320, 0, 0}};
    const int *p = shapes[s];
    for (int i = 0; i < 5; i++) t->p[i] = p[i];
    t->gpu_only = s >= 4;
    arg_in(t, "inp", ARG_ACT, 1, 0, 0, 2, p[0], p[1]);
    arg_in(t, "weight", ARG_WEIGHT, 1, 0, 0, 2, p[2], p[1]);
    if (p[3]) arg_in(t, "bias", ARG_WEIGHT, 1, 0, 0, 1, p[2]);
    arg_out(t, "out", ARG_ACT, 1, 2, p[0], p[2]);
    if (p[4]) arg_out(t, "pre_gelu", ARG_ACT, 0, 2, p[0], p[2]);
}

static void forward64(const OpTest *t, double **out, double *const *in) {
    int M = t->p[0], IC = t->p[1], OC = t->p[2];
    for (int m = 0; m < M; m++)
        for (int o = 0; o < OC; o++) {
            double s = t->p[3] ? in[2][o] : 0.0;
            for (int i = 0; i < IC; i++) s += in[0][m * IC + i] * in[1][o * IC + i];
            if (t->p[4]) {
                out[1][m * OC + o] = s;
                s = 0.5 * s * (1.0 + tanh(0.7978845608028654 * (s + 0.044715 * s * s * s)));
            }
            out[0][m * OC + o] = s;
        }
}

static void run(const OpTest *t, Tensor *out, Tensor *in, Tensor *dout, Tensor *din, Ctx *ctx) {
    Tensor bias = t->p[3] ? in[2] : TENSOR_NONE, dbias = t->p[3] ? din[2] : TENSOR_NONE;
    Tensor pre = t->p[4] ? out[1] : TENSOR_NONE;
    matmul_forward(out[0], pre, in[0], in[1], bias, ctx);
    if (tensor_present(dout[0])) matmul_backward(din[0], din[1], dbias, dout[0], in[0], in[1], pre, ctx);
}

const OpCase case_matmul = {.name = "matmul", .n_shapes = 7, .setup = setup, .forward64 = forward64, .run = run,
                            .has_cuda = 1};
