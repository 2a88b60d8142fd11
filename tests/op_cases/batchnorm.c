/* Op cases: batch norm over the channel (last) dimension with a fused activation. Training: batch statistics
 * and the running-statistics update (checked through copies of the updated running tensors); eval: running
 * statistics, forward only (the network never differentiates an eval-mode batch norm). */
#include <math.h>

#include "../harness.h"
#include "act64.h"

typedef struct {
    int M, C;
    Act act;
    float eps;
} BnShape;

static const BnShape shapes[] = {
    {7, 3, ACT_NONE, 1e-5f},
    {13, 5, ACT_RELU, 1e-4f},
    {32, 17, ACT_GELU_TANH, 1e-5f},
    {3, 1, ACT_RELU, 1e-4f},
    {40, 35, ACT_GELU_TANH, 1e-5f},
    {64, 24, ACT_GELU_TANH, 1e-5f},           /* whole 8-channel vectors: the GPU's vector path */
    {2 * 56 * 56, 80, ACT_GELU_TANH, 1e-5f},  /* GKAVision-T at batch 2: level-0 ConvBlock */
    {2 * 112 * 112, 32, ACT_RELU, 1e-4f},     /* stem BN 1 */
    {2 * 56 * 56, 80, ACT_RELU, 1e-4f},       /* stem BN 2 */
    {2 * 28 * 28, 160, ACT_GELU_TANH, 1e-5f}, /* level-1 ConvBlock */
    {2 * 28 * 28, 160, ACT_NONE, 1e-5f},      /* level-1 ConvBlock, second BN */
    {2 * 7 * 7, 640, ACT_NONE, 1e-5f},        /* final norm */
};
#define N_SHAPES (int)(sizeof shapes / sizeof shapes[0])
#define FIRST_GPU_ONLY 6
#define MOMENTUM 0.1f

static void add_inputs(OpTest *t, const BnShape *b, int grad) {
    arg_in(t, "inp", ARG_ACT, grad, -2.0f, 3.0f, 2, b->M, b->C);
    arg_in(t, "weight", ARG_WEIGHT, grad, 0.5f, 1.5f, 1, b->C);
    arg_in(t, "bias", ARG_WEIGHT, grad, 0, 0, 1, b->C);
    arg_in(t, "running_mean", ARG_STAT, 0, 0, 0, 1, b->C);
    arg_in(t, "running_var", ARG_STAT, 0, 0.5f, 2.0f, 1, b->C);
}

static void setup_train(OpTest *t, int s) {
    const BnShape *b = &shapes[s];
    t->gpu_only = s >= FIRST_GPU_ONLY;
    add_inputs(t, b, 1);
    arg_out(t, "out", ARG_ACT, 1, 2, b->M, b->C);
    arg_out(t, "mean", ARG_STAT, 0, 1, b->C);
    arg_out(t, "rstd", ARG_STAT, 0, 1, b->C);
    arg_out(t, "running_mean_new", ARG_STAT, 0, 1, b->C);
    arg_out(t, "running_var_new", ARG_STAT, 0, 1, b->C);
}

/* Batch mean and biased variance of channel c, in float64. */
static void stats64(const double *x, int M, int C, int c, double *mu, double *var) {
    double s = 0.0, v = 0.0;
    for (int m = 0; m < M; m++)
        s += x[(int64_t)m * C + c];
    *mu = s / M;
    for (int m = 0; m < M; m++)
        v += (x[(int64_t)m * C + c] - *mu) * (x[(int64_t)m * C + c] - *mu);
    *var = v / M;
}

/* With ReLU, moves inputs whose pre-activation is near 0, so that neither the float32 op nor the finite
 * differences sit on the kink (moving one input shifts the statistics, hence the few rounds). */
static void prepare_train(const OpTest *t, float **in) {
    const BnShape *b = &shapes[t->shape_index];
    if (b->act != ACT_RELU) return;
    int M = b->M, C = b->C;
    for (int round = 0, moved = 1; round < 20 && moved; round++) {
        moved = 0;
        for (int c = 0; c < C; c++) {
            double sum = 0.0, sq = 0.0;
            for (int m = 0; m < M; m++)
                sum += in[0][(int64_t)m * C + c];
            double mu = sum / M;
            for (int m = 0; m < M; m++)
                sq += (in[0][(int64_t)m * C + c] - mu) * (in[0][(int64_t)m * C + c] - mu);
            double scale = in[1][c] / sqrt(sq / M + b->eps);
            for (int m = 0; m < M; m++) {
                float *x = &in[0][(int64_t)m * C + c];
                double pre = (*x - mu) * scale + in[2][c];
                if (fabs(pre) < 0.05) *x += (float)((pre < 0.0 ? -0.15 : 0.15) / scale), moved = 1;
            }
        }
    }
}

static void forward64_train(const OpTest *t, double **out, double *const *in) {
    const BnShape *b = &shapes[t->shape_index];
    int M = b->M, C = b->C;
    for (int c = 0; c < C; c++) {
        double mu, var;
        stats64(in[0], M, C, c, &mu, &var);
        double rs = 1.0 / sqrt(var + b->eps);
        for (int m = 0; m < M; m++) {
            int64_t i = (int64_t)m * C + c;
            out[0][i] = act64(b->act, (in[0][i] - mu) * rs * in[1][c] + in[2][c]);
        }
        out[1][c] = mu;
        out[2][c] = rs;
        out[3][c] = (1.0 - MOMENTUM) * in[3][c] + (double)MOMENTUM * mu;
        out[4][c] = (1.0 - MOMENTUM) * in[4][c] + (double)MOMENTUM * var * M / (M - 1);
    }
}

static void run_train(const OpTest *t, Tensor *out, Tensor *in, Tensor *dout, Tensor *din, Ctx *ctx) {
    const BnShape *b = &shapes[t->shape_index];
    batchnorm_forward_train(out[0], out[1], out[2], in[3], in[4], in[0], in[1], in[2], MOMENTUM, b->eps,
                            b->act, ctx);
    tensor_copy(out[3], in[3], ctx);
    tensor_copy(out[4], in[4], ctx);
    if (tensor_present(dout[0]))
        batchnorm_backward(din[0], din[1], din[2], dout[0], in[0], in[1], in[2], out[1], out[2], b->act, ctx);
}

const OpCase case_batchnorm = {.name = "batchnorm",
                               .n_shapes = N_SHAPES,
                               .setup = setup_train,
                               .prepare = prepare_train,
                               .forward64 = forward64_train,
                               .run = run_train,
                               .has_cuda = 1};

static void setup_eval(OpTest *t, int s) {
    const BnShape *b = &shapes[s];
    t->gpu_only = s >= FIRST_GPU_ONLY;
    add_inputs(t, b, 0);
    arg_out(t, "out", ARG_ACT, 0, 2, b->M, b->C);
}

static void forward64_eval(const OpTest *t, double **out, double *const *in) {
    const BnShape *b = &shapes[t->shape_index];
    for (int m = 0; m < b->M; m++)
        for (int c = 0; c < b->C; c++) {
            int64_t i = (int64_t)m * b->C + c;
            double rs = 1.0 / sqrt(in[4][c] + b->eps);
            out[0][i] = act64(b->act, (in[0][i] - in[3][c]) * rs * in[1][c] + in[2][c]);
        }
}

static void run_eval(const OpTest *t, Tensor *out, Tensor *in, Tensor *dout, Tensor *din, Ctx *ctx) {
    (void)dout, (void)din;
    const BnShape *b = &shapes[t->shape_index];
    batchnorm_forward_eval(out[0], in[0], in[1], in[2], in[3], in[4], b->eps, b->act, ctx);
}

const OpCase case_batchnorm_eval = {.name = "batchnorm_eval",
                                    .n_shapes = N_SHAPES,
                                    .setup = setup_eval,
                                    .forward64 = forward64_eval,
                                    .run = run_eval,
                                    .has_cuda = 1};
