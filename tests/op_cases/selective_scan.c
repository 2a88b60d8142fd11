/* Op case: the MambaVision selective scan (selective_scan.h) against a float64 loop of its definition, the
 * chunk checkpoints included; gradients of x, delta_pre, A_log, Bm, Cm, D and dt_bias by finite differences.
 * Shapes: one token, chunk-partial and exactly-one-chunk sequences, channel counts across the CPU's channel
 * blocks, N from 1 to the maximum 16, and softplus arguments past its threshold 20; on the GPU also the
 * MambaVision-T level-2 and level-3 sizes. A_log, D and dt_bias are float32 on both backends (the scan reads
 * the master weights); the harness hands the CUDA twin bf16 weight copies, so run() widens them to float32
 * (the values are bf16-exact in GPU mode, so nothing changes). */
#include "../harness.h"

#include <math.h>

#include "selective_scan.h"

typedef struct {
    int S, L, D, N;
    float dlo, dhi; /* range of delta_pre */
} SsShape;

static const SsShape shapes[] = {
    {2, 7, 5, 8, -3.0f, 1.5f},   {1, 1, 3, 8, -3.0f, 1.5f},     {2, 33, 6, 4, -3.0f, 1.5f},
    {3, 16, 17, 8, -3.0f, 1.5f}, {1, 20, 3, 16, -2.0f, 1.0f},   {2, 40, 2, 1, -3.0f, 1.5f},
    {2, 9, 4, 8, 12.0f, 28.0f},  {2, 196, 160, 8, -3.0f, 1.5f}, {2, 49, 320, 8, -3.0f, 1.5f},
};
#define N_SHAPES (int)(sizeof shapes / sizeof shapes[0])
#define FIRST_GPU_ONLY 7

static void setup(OpTest *t, int s) {
    const SsShape *c = &shapes[s];
    t->gpu_only = s >= FIRST_GPU_ONLY;
    arg_in(t, "x", ARG_ACT, 1, 0, 0, 3, c->S, c->L, c->D);
    arg_in(t, "delta_pre", ARG_ACT, 1, c->dlo, c->dhi, 3, c->S, c->L, c->D);
    arg_in(t, "A_log", ARG_WEIGHT, 1, -0.5f, 2.1f, 2, c->D, c->N);
    arg_in(t, "Bm", ARG_ACT, 1, 0, 0, 3, c->S, c->L, c->N);
    arg_in(t, "Cm", ARG_ACT, 1, 0, 0, 3, c->S, c->L, c->N);
    arg_in(t, "D", ARG_WEIGHT, 1, 0.5f, 1.5f, 1, c->D);
    arg_in(t, "dt_bias", ARG_WEIGHT, 1, -1.0f, 0.5f, 1, c->D);
    arg_out(t, "y", ARG_ACT, 1, 3, c->S, c->L, c->D);
    arg_out(t, "states", ARG_STAT, 0, 4, c->S, (int)selective_scan_nchunks(c->L), c->D, c->N);
}

static void forward64(const OpTest *t, double **out, double *const *in) {
    const SsShape *c = &shapes[t->shape_index];
    const int S = c->S, L = c->L, D = c->D, N = c->N;
    const int64_t nc = selective_scan_nchunks(L);
    const double *x = in[0], *dp = in[1], *Al = in[2], *Bm = in[3], *Cm = in[4], *Dp = in[5], *bias = in[6];
    double h[SELECTIVE_SCAN_MAX_N];
    for (int s = 0; s < S; s++)
        for (int d = 0; d < D; d++) {
            for (int n = 0; n < N; n++)
                h[n] = 0.0;
            for (int t = 0; t < L; t++) {
                const int64_t r = (int64_t)s * L + t;
                if (t % SELECTIVE_SCAN_CHUNK == 0)
                    for (int n = 0; n < N; n++)
                        out[1][(((int64_t)s * nc + t / SELECTIVE_SCAN_CHUNK) * D + d) * N + n] = h[n];
                const double v = dp[r * D + d] + bias[d], delta = v > 20.0 ? v : log1p(exp(v));
                double y = Dp[d] * x[r * D + d];
                for (int n = 0; n < N; n++) {
                    h[n] = exp(-delta * exp(Al[d * N + n])) * h[n] + delta * Bm[r * N + n] * x[r * D + d];
                    y += Cm[r * N + n] * h[n];
                }
                out[0][r * D + d] = y;
            }
        }
}

/* A float32 copy of a parameter on the GPU (where the harness holds it in bf16); the tensor itself on the
 * CPU. */
static Tensor widen(Tensor w, Ctx *ctx) {
    if (w.dtype == DT_F32) return w;
    Tensor f = tensor_make(NULL, DT_F32, w.device, w.ndim, w.shape);
    f.data = dev_malloc(ctx, tensor_bytes(f));
    tensor_copy(f, w, ctx);
    return f;
}

static void run(const OpTest *t, Tensor *out, Tensor *in, Tensor *dout, Tensor *din, Ctx *ctx) {
    (void)t;
    Tensor A_log = widen(in[2], ctx), Dp = widen(in[5], ctx), bias = widen(in[6], ctx);
    selective_scan_forward(out[0], out[1], in[0], in[1], A_log, in[3], in[4], Dp, bias, ctx);
    if (tensor_present(dout[0]))
        selective_scan_backward(din[0], din[1], din[2], din[3], din[4], din[5], din[6], dout[0], in[0], in[1],
                                A_log, in[3], in[4], Dp, bias, out[1], ctx);
    ctx_sync(ctx);
    Tensor wide[3] = {A_log, Dp, bias}, orig[3] = {in[2], in[5], in[6]};
    for (int i = 0; i < 3; i++)
        if (wide[i].data != orig[i].data) dev_free(ctx, wide[i].data);
}

const OpCase case_selective_scan = {.name = "selective_scan",
                                    .n_shapes = N_SHAPES,
                                    .setup = setup,
                                    .forward64 = forward64,
                                    .run = run,
                                    .has_cuda = 1};
