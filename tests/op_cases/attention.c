/* Op cases: multi-head self-attention on qkv [S, L, 3C]; the saved probabilities are checked too. */
#include <math.h>

#include "../harness.h"

/* p: S, L, C, heads */
static void setup(OpTest *t, int s) {
    static const int shapes[][4] = {{1, 1, 4, 1},   {2, 7, 12, 3},    {1, 13, 16, 2},
                                    {3, 5, 6, 6},   {2, 9, 8, 1},     {1, 13, 80, 2},
                                    {2, 17, 48, 2}, {2, 196, 320, 8}, {2, 49, 640, 16}};
    for (int i = 0; i < 4; i++)
        t->p[i] = shapes[s][i];
    const int *p = t->p;
    t->gpu_only = s >= 7;
    arg_in(t, "qkv", ARG_ACT, 1, 0, 0, 3, p[0], p[1], 3 * p[2]);
    arg_out(t, "out", ARG_ACT, 1, 3, p[0], p[1], p[2]);
    arg_out(t, "att", ARG_STAT, 0, 4, p[0], p[3], p[1], p[1]);
}

static void forward64(const OpTest *t, double **out, double *const *in) {
    int S = t->p[0], L = t->p[1], C = t->p[2], NH = t->p[3], dh = C / NH;
    for (int s = 0; s < S; s++)
        for (int h = 0; h < NH; h++)
            for (int i = 0; i < L; i++) {
                const double *q = in[0] + ((int64_t)s * L + i) * 3 * C + h * dh;
                double *p = out[1] + (((int64_t)s * NH + h) * L + i) * L;
                double mx = -INFINITY, sum = 0.0;
                for (int j = 0; j < L; j++) {
                    const double *k = in[0] + ((int64_t)s * L + j) * 3 * C + C + h * dh;
                    double dot = 0.0;
                    for (int d = 0; d < dh; d++)
                        dot += q[d] * k[d];
                    p[j] = dot / sqrt((double)dh);
                    mx = p[j] > mx ? p[j] : mx;
                }
                for (int j = 0; j < L; j++)
                    sum += (p[j] = exp(p[j] - mx));
                for (int j = 0; j < L; j++)
                    p[j] /= sum;
                for (int d = 0; d < dh; d++) {
                    double o = 0.0;
                    for (int j = 0; j < L; j++)
                        o += p[j] * in[0][((int64_t)s * L + j) * 3 * C + 2 * C + h * dh + d];
                    out[0][((int64_t)s * L + i) * C + h * dh + d] = o;
                }
            }
}

static void run(const OpTest *t, Tensor *out, Tensor *in, Tensor *dout, Tensor *din, Ctx *ctx) {
    attention_forward(out[0], out[1], in[0], t->p[3], ctx);
    if (!tensor_present(dout[0])) return;
    Tensor datt = tensor_make(NULL, out[1].dtype, out[1].device, out[1].ndim, out[1].shape);
    datt.data = dev_malloc(ctx, tensor_bytes(datt));
    attention_backward(din[0], datt, dout[0], in[0], out[1], t->p[3], ctx);
    dev_free(ctx, datt.data);
}

const OpCase case_attention = {
    .name = "attention", .n_shapes = 9, .setup = setup, .forward64 = forward64, .run = run, .has_cuda = 1};
