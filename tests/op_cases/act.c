/* Op cases: pointwise activations, forward and backward (also in place, dinp == dout). */
#include "../harness.h"
#include "act64.h"

typedef struct {
    int n;
    Act act;
    float lo, hi;
    int in_place;
} ActShape;

/* SOFTPLUS spans its x > 20 threshold; RELU inputs are kept away from 0 by prepare(). */
static const ActShape shapes[] = {
    {37, ACT_NONE, -3.0f, 3.0f, 0},      {37, ACT_RELU, -3.0f, 3.0f, 0},
    {1, ACT_RELU, -3.0f, 3.0f, 1},       {37, ACT_GELU, -4.0f, 4.0f, 0},
    {13, ACT_GELU, -4.0f, 4.0f, 1},      {37, ACT_GELU_TANH, -4.0f, 4.0f, 0},
    {37, ACT_SILU, -6.0f, 6.0f, 0},      {64, ACT_SOFTPLUS, -8.0f, 30.0f, 0},
    {7, ACT_SOFTPLUS, 19.0f, 21.0f, 1},  {37, ACT_SIGMOID, -6.0f, 6.0f, 0},
    {2 * 196 * 1280, ACT_GELU, 0, 0, 0}, {2 * 196 * 160, ACT_SILU, 0, 0, 1},
};
#define N_SHAPES (int)(sizeof shapes / sizeof shapes[0])

static void setup(OpTest *t, int s) {
    const ActShape *a = &shapes[s];
    t->p[0] = a->n, t->p[1] = (int)a->act, t->p[2] = a->in_place;
    t->gpu_only = s >= 10;
    arg_in(t, "inp", ARG_ACT, 1, a->lo, a->hi, 1, a->n);
    arg_out(t, "out", ARG_ACT, 1, 1, a->n);
}

static void prepare(const OpTest *t, float **in) {
    if (t->p[1] != ACT_RELU) return;
    for (int i = 0; i < t->p[0]; i++) /* finite differences must not straddle the kink at 0 */
        if (fabsf(in[0][i]) < 0.1f) in[0][i] += in[0][i] < 0.0f ? -0.2f : 0.2f;
}

static void forward64(const OpTest *t, double **out, double *const *in) {
    for (int i = 0; i < t->p[0]; i++)
        out[0][i] = act64((Act)t->p[1], in[0][i]);
}

static void run(const OpTest *t, Tensor *out, Tensor *in, Tensor *dout, Tensor *din, Ctx *ctx) {
    act_forward(out[0], in[0], (Act)t->p[1], ctx);
    if (!tensor_present(dout[0])) return;
    if (t->p[2]) {
        tensor_copy(din[0], dout[0], ctx);
        act_backward(din[0], din[0], in[0], (Act)t->p[1], ctx);
    } else {
        act_backward(din[0], dout[0], in[0], (Act)t->p[1], ctx);
    }
}

const OpCase case_act = {.name = "act",
                         .n_shapes = N_SHAPES,
                         .setup = setup,
                         .prepare = prepare,
                         .forward64 = forward64,
                         .run = run,
                         .has_cuda = 1};
