/* Op cases: average over the tokens of [B, L, C]. */
#include "../harness.h"

/* p: B, L, C */
static void setup(OpTest *t, int s) {
    static const int shapes[][3] = {{2, 3, 5}, {1, 1, 1}, {3, 13, 7}, {2, 7, 40}, {3, 5, 16}, {2, 49, 640}};
    for (int i = 0; i < 3; i++)
        t->p[i] = shapes[s][i];
    t->gpu_only = s >= 5;
    arg_in(t, "inp", ARG_ACT, 1, 0, 0, 3, t->p[0], t->p[1], t->p[2]);
    arg_out(t, "out", ARG_ACT, 1, 2, t->p[0], t->p[2]);
}

static void forward64(const OpTest *t, double **out, double *const *in) {
    int B = t->p[0], L = t->p[1], C = t->p[2];
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++) {
            double s = 0.0;
            for (int l = 0; l < L; l++)
                s += in[0][((int64_t)b * L + l) * C + c];
            out[0][(int64_t)b * C + c] = s / L;
        }
}

static void run(const OpTest *t, Tensor *out, Tensor *in, Tensor *dout, Tensor *din, Ctx *ctx) {
    (void)t;
    avgpool_forward(out[0], in[0], ctx);
    if (tensor_present(dout[0])) avgpool_backward(din[0], dout[0], ctx);
}

const OpCase case_avgpool = {
    .name = "avgpool", .n_shapes = 6, .setup = setup, .forward64 = forward64, .run = run, .has_cuda = 1};
