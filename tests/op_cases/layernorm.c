/* Op cases: layer norm. */
#include <math.h>

#include "../harness.h"

/* p: M, C */
static void setup(OpTest *t, int s) {
    static const int shapes[][2] = {{3, 5}, {17, 33}, {64, 320}, {1, 1}, {392, 320}, {98, 640}, {50176, 80}};
    t->p[0] = shapes[s][0], t->p[1] = shapes[s][1];
    t->f[0] = 1e-5f;
    t->gpu_only = s >= 4;
    arg_in(t, "inp", ARG_ACT, 1, -2.0f, 3.0f, 2, t->p[0], t->p[1]);
    arg_in(t, "weight", ARG_WEIGHT, 1, 0.5f, 1.5f, 1, t->p[1]);
    arg_in(t, "bias", ARG_WEIGHT, 1, 0, 0, 1, t->p[1]);
    arg_out(t, "out", ARG_ACT, 1, 2, t->p[0], t->p[1]);
    arg_out(t, "mean", ARG_STAT, 0, 1, t->p[0]);
    arg_out(t, "rstd", ARG_STAT, 0, 1, t->p[0]);
}

static void forward64(const OpTest *t, double **out, double *const *in) {
    int M = t->p[0], C = t->p[1];
    for (int m = 0; m < M; m++) {
        const double *x = in[0] + (int64_t)m * C;
        double mu = 0.0, var = 0.0;
        for (int c = 0; c < C; c++) mu += x[c];
        mu /= C;
        for (int c = 0; c < C; c++) var += (x[c] - mu) * (x[c] - mu);
        double rs = 1.0 / sqrt(var / C + t->f[0]);
        for (int c = 0; c < C; c++) out[0][(int64_t)m * C + c] = (x[c] - mu) * rs * in[1][c] + in[2][c];
        out[1][m] = mu;
        out[2][m] = rs;
    }
}

static void run(const OpTest *t, Tensor *out, Tensor *in, Tensor *dout, Tensor *din, Ctx *ctx) {
    layernorm_forward(out[0], out[1], out[2], in[0], in[1], in[2], t->f[0], ctx);
    if (tensor_present(dout[0]))
        layernorm_backward(din[0], din[1], din[2], dout[0], in[0], in[1], out[1], out[2], ctx);
}

const OpCase case_layernorm = {.name = "layernorm", .n_shapes = 7, .setup = setup, .forward64 = forward64,
                               .run = run, .has_cuda = 1};
