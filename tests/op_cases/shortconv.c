/* Op cases: depth-wise 1-D convolution along tokens with a fused activation, causal (GKA, W = 4) and
 * "same" (MambaVision mixer, W = 3), including sequences shorter than the kernel. */
#include "../harness.h"
#include "act64.h"

typedef struct {
    int S, L, C, W, causal;
    Act act;
} ScShape;

/* Also W = 1, W = 11 (the backward sums at most 8 taps per pass over the data) and L < W. */
static const ScShape shapes[] = {
    {2, 7, 5, 4, 1, ACT_SILU},     {1, 3, 3, 4, 1, ACT_NONE},    {3, 13, 17, 4, 1, ACT_SILU},
    {2, 7, 5, 3, 0, ACT_SILU},     {1, 1, 3, 3, 0, ACT_NONE},    {2, 13, 20, 3, 0, ACT_SILU},
    {1, 9, 3, 1, 1, ACT_SILU},     {2, 11, 3, 11, 1, ACT_SILU},  {1, 6, 2, 9, 0, ACT_SILU},
    {2, 196, 160, 4, 1, ACT_SILU}, {2, 49, 320, 4, 1, ACT_SILU}, {2, 196, 160, 3, 0, ACT_SILU},
};
#define N_SHAPES (int)(sizeof shapes / sizeof shapes[0])
#define FIRST_GPU_ONLY 9

static void setup(OpTest *t, int s) {
    const ScShape *c = &shapes[s];
    t->gpu_only = s >= FIRST_GPU_ONLY;
    arg_in(t, "inp", ARG_ACT, 1, 0, 0, 3, c->S, c->L, c->C);
    arg_in(t, "weight", ARG_WEIGHT, 1, -0.5f, 0.5f, 2, c->C, c->W);
    arg_out(t, "out", ARG_ACT, 1, 3, c->S, c->L, c->C);
}

static void forward64(const OpTest *t, double **out, double *const *in) {
    const ScShape *c = &shapes[t->shape_index];
    int off = c->causal ? c->W - 1 : (c->W - 1) / 2;
    for (int s = 0; s < c->S; s++)
        for (int l = 0; l < c->L; l++)
            for (int ch = 0; ch < c->C; ch++) {
                double acc = 0.0;
                for (int i = 0; i < c->W; i++) {
                    int u = l - off + i;
                    if (u >= 0 && u < c->L)
                        acc += in[1][ch * c->W + i] * in[0][((int64_t)s * c->L + u) * c->C + ch];
                }
                out[0][((int64_t)s * c->L + l) * c->C + ch] = act64(c->act, acc);
            }
}

static void run(const OpTest *t, Tensor *out, Tensor *in, Tensor *dout, Tensor *din, Ctx *ctx) {
    const ScShape *c = &shapes[t->shape_index];
    shortconv_forward(out[0], in[0], in[1], c->causal, c->act, ctx);
    if (tensor_present(dout[0]))
        shortconv_backward(din[0], din[1], dout[0], in[0], in[1], c->causal, c->act, ctx);
}

const OpCase case_shortconv = {.name = "shortconv",
                               .n_shapes = N_SHAPES,
                               .setup = setup,
                               .forward64 = forward64,
                               .run = run,
                               .has_cuda = 1};
