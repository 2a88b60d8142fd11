/* Op cases: softmax cross-entropy with soft targets: random target distributions, label-smoothed one-hot
 * targets (smooth_one_hot) and large logits (an unshifted exp would overflow). The backward takes one dloss
 * for all rows, so run() calls it row by row with each row's dloss = dout[b] of the harness loss. */
#include <math.h>
#include <stdlib.h>

#include "../harness.h"

typedef struct {
    int B, K;
    int smoothed; /* targets: 0 random distribution, 1 smooth_one_hot(labels, 0.1) */
    float lo, hi; /* logits range */
} XentShape;

static const XentShape shapes[] = {
    {1, 1, 0, -3.0f, 3.0f},      {3, 7, 0, -3.0f, 3.0f},   {4, 13, 1, -5.0f, 5.0f},
    {2, 10, 0, 990.0f, 1010.0f}, {5, 3, 1, -60.0f, 60.0f}, {2, 1000, 1, -10.0f, 10.0f},
};
#define N_SHAPES (int)(sizeof shapes / sizeof shapes[0])
#define FIRST_GPU_ONLY 5

static void setup(OpTest *t, int s) {
    const XentShape *x = &shapes[s];
    t->gpu_only = s >= FIRST_GPU_ONLY;
    arg_in(t, "logits", ARG_ACT, 1, x->lo, x->hi, 2, x->B, x->K);
    arg_in(t, "targets", ARG_STAT, 0, 0.0f, 1.0f, 2, x->B, x->K);
    arg_out(t, "losses", ARG_STAT, 1, 1, x->B);
    arg_out(t, "probs", ARG_STAT, 0, 2, x->B, x->K);
}

/* Target rows become distributions (sum 1), as the backward's probs - targets requires. */
static void prepare(const OpTest *t, float **in) {
    const XentShape *x = &shapes[t->shape_index];
    if (x->smoothed) {
        int *labels = mallocCheck((size_t)x->B * sizeof(int));
        for (int b = 0; b < x->B; b++)
            labels[b] = (b * 7 + 3) % x->K;
        smooth_one_hot(in[1], labels, x->B, x->K, 0.1f);
        free(labels);
        return;
    }
    for (int b = 0; b < x->B; b++) {
        float *row = in[1] + (int64_t)b * x->K, sum = 0.0f;
        for (int k = 0; k < x->K; k++)
            sum += row[k];
        for (int k = 0; k < x->K; k++)
            row[k] /= sum;
    }
}

static void forward64(const OpTest *t, double **out, double *const *in) {
    const XentShape *x = &shapes[t->shape_index];
    for (int b = 0; b < x->B; b++) {
        const double *z = in[0] + (int64_t)b * x->K, *tg = in[1] + (int64_t)b * x->K;
        double mx = z[0], sum = 0.0, loss = 0.0;
        for (int k = 1; k < x->K; k++)
            mx = z[k] > mx ? z[k] : mx;
        for (int k = 0; k < x->K; k++)
            sum += exp(z[k] - mx);
        for (int k = 0; k < x->K; k++) {
            double logp = z[k] - mx - log(sum);
            out[1][(int64_t)b * x->K + k] = exp(logp);
            loss -= tg[k] * logp;
        }
        out[0][b] = loss;
    }
}

static void run(const OpTest *t, Tensor *out, Tensor *in, Tensor *dout, Tensor *din, Ctx *ctx) {
    int B = shapes[t->shape_index].B;
    softmax_xent_forward(out[0], out[1], in[0], in[1], ctx);
    if (!tensor_present(dout[0])) return;
    float *dloss = mallocCheck((size_t)B * sizeof(float));
    tensor_copy(tensor_1d(dloss, DT_F32, DEV_CPU, B), dout[0], ctx);
    for (int b = 0; b < B; b++)
        softmax_xent_backward(tensor_slice0(din[0], b, 1), tensor_slice0(out[1], b, 1),
                              tensor_slice0(in[1], b, 1), dloss[b], ctx);
    free(dloss);
}

const OpCase case_softmax_xent = {.name = "softmax_xent",
                                  .n_shapes = N_SHAPES,
                                  .setup = setup,
                                  .prepare = prepare,
                                  .forward64 = forward64,
                                  .run = run,
                                  .has_cuda = 1};
