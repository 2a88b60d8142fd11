/* Op cases: residual add with optional layer scale and drop path (per sample of the leading dimension), on
 * token sequences [S, L, C] and NHWC images [N, H, W, C]; also with out aliasing res. The float64 reference
 * takes its mask from droppath_scale, so it drops the same samples as the op. */
#include "../harness.h"

typedef struct {
    int S, R1, R2, C; /* [S, R1, C], or [S, R1, R2, C] when R2 > 0 */
    int gamma;
    float p;
    int alias;
} ResShape;

static const ResShape shapes[] = {
    {3, 5, 0, 7, 1, 0.0f, 0},    {4, 3, 0, 5, 0, 0.0f, 1},     {8, 2, 0, 3, 1, 0.5f, 0},
    {8, 3, 0, 4, 0, 0.3f, 1},    {6, 3, 4, 5, 1, 0.5f, 0},     {1, 1, 0, 1, 1, 0.0f, 0},
    {4, 2, 0, 20, 1, 0.25f, 1},  {4, 3, 0, 16, 1, 0.25f, 0},   {2, 196, 0, 320, 1, 0.1f, 0},
    {2, 56, 56, 80, 0, 0.1f, 1}, {2, 28, 28, 160, 0, 0.1f, 1}, {16, 49, 0, 640, 1, 0.3f, 0},
};
#define N_SHAPES (int)(sizeof shapes / sizeof shapes[0])
#define FIRST_GPU_ONLY 8

static DropPath drop_path(int shape_index) {
    DropPath dp = {shapes[shape_index].p, 0x5eedull + (uint64_t)shape_index, 1000u * (uint64_t)shape_index};
    return dp;
}

static void setup(OpTest *t, int s) {
    const ResShape *r = &shapes[s];
    t->gpu_only = s >= FIRST_GPU_ONLY;
    if (r->R2) {
        arg_in(t, "res", ARG_ACT, 0, 0, 0, 4, r->S, r->R1, r->R2, r->C);
        arg_in(t, "branch", ARG_ACT, 1, 0, 0, 4, r->S, r->R1, r->R2, r->C);
        arg_out(t, "out", ARG_ACT, 1, 4, r->S, r->R1, r->R2, r->C);
    } else {
        arg_in(t, "res", ARG_ACT, 0, 0, 0, 3, r->S, r->R1, r->C);
        arg_in(t, "branch", ARG_ACT, 1, 0, 0, 3, r->S, r->R1, r->C);
        arg_out(t, "out", ARG_ACT, 1, 3, r->S, r->R1, r->C);
    }
    if (r->gamma) arg_in(t, "gamma", ARG_WEIGHT, 1, 0.5f, 1.5f, 1, r->C);
}

static void forward64(const OpTest *t, double **out, double *const *in) {
    const ResShape *r = &shapes[t->shape_index];
    int64_t per_sample = (int64_t)r->R1 * (r->R2 ? r->R2 : 1) * r->C;
    DropPath dp = drop_path(t->shape_index);
    for (int s = 0; s < r->S; s++) {
        double scale = droppath_scale(dp, s);
        for (int64_t k = 0; k < per_sample; k++) {
            int64_t i = s * per_sample + k;
            out[0][i] = in[0][i] + scale * (r->gamma ? in[2][k % r->C] : 1.0) * in[1][i];
        }
    }
}

static void run(const OpTest *t, Tensor *out, Tensor *in, Tensor *dout, Tensor *din, Ctx *ctx) {
    const ResShape *r = &shapes[t->shape_index];
    Tensor gamma = r->gamma ? in[2] : TENSOR_NONE, dgamma = r->gamma ? din[2] : TENSOR_NONE;
    DropPath dp = drop_path(t->shape_index);
    if (r->alias) { /* out = out + branch, in place on the residual stream */
        tensor_copy(out[0], in[0], ctx);
        residual_forward(out[0], out[0], in[1], gamma, dp, ctx);
    } else {
        residual_forward(out[0], in[0], in[1], gamma, dp, ctx);
    }
    if (tensor_present(dout[0])) residual_backward(din[1], dgamma, dout[0], in[1], gamma, dp, ctx);
}

const OpCase case_residual = {.name = "residual",
                              .n_shapes = N_SHAPES,
                              .setup = setup,
                              .forward64 = forward64,
                              .run = run,
                              .has_cuda = 1};
