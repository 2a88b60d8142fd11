/* Op cases: RMS norm over the last dimension, with and without the SiLU gate. */
#include <math.h>

#include "../harness.h"
#include "act64.h"

/* p: M, D, has_gate */
static void setup(OpTest *t, int s) {
    static const int shapes[][3] = {{3, 8, 1},
                                    {1, 2, 0},
                                    {7, 13, 1},
                                    {5, 40, 0},
                                    {4, 3, 1},
                                    {2 * 196 * 5, 32, 0},
                                    {2 * 49 * 10, 32, 0},
                                    {2 * 196, 160, 1}};
    for (int i = 0; i < 3; i++)
        t->p[i] = shapes[s][i];
    t->f[0] = 1e-6f;
    t->gpu_only = s >= 5;
    arg_in(t, "inp", ARG_ACT, 1, 0, 0, 2, t->p[0], t->p[1]);
    arg_in(t, "weight", ARG_WEIGHT, 1, 0.5f, 1.5f, 1, t->p[1]);
    if (t->p[2]) arg_in(t, "gate", ARG_ACT, 1, -3.0f, 3.0f, 2, t->p[0], t->p[1]);
    arg_out(t, "out", ARG_ACT, 1, 2, t->p[0], t->p[1]);
    arg_out(t, "rstd", ARG_STAT, 0, 1, t->p[0]);
}

static void forward64(const OpTest *t, double **out, double *const *in) {
    int M = t->p[0], D = t->p[1];
    for (int m = 0; m < M; m++) {
        const double *x = in[0] + (int64_t)m * D;
        double ss = 0.0;
        for (int d = 0; d < D; d++)
            ss += x[d] * x[d];
        double rs = 1.0 / sqrt(ss / D + t->f[0]);
        for (int d = 0; d < D; d++) {
            double g = t->p[2] ? act64(ACT_SILU, in[2][(int64_t)m * D + d]) : 1.0;
            out[0][(int64_t)m * D + d] = x[d] * rs * in[1][d] * g;
        }
        out[1][m] = rs;
    }
}

static void run(const OpTest *t, Tensor *out, Tensor *in, Tensor *dout, Tensor *din, Ctx *ctx) {
    Tensor gate = t->p[2] ? in[2] : TENSOR_NONE, dgate = t->p[2] ? din[2] : TENSOR_NONE;
    rmsnorm_forward(out[0], out[1], in[0], gate, in[1], t->f[0], ctx);
    if (tensor_present(dout[0]))
        rmsnorm_backward(din[0], dgate, din[1], dout[0], in[0], gate, in[1], out[1], ctx);
}

const OpCase case_rmsnorm = {
    .name = "rmsnorm", .n_shapes = 8, .setup = setup, .forward64 = forward64, .run = run, .has_cuda = 1};
