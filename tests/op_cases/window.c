/* Op cases: window partition and window reverse (gkavision spec 2.4), with and without padding; each op's
 * backward is the other op. */
#include "../harness.h"

/* p: B, H, W, C, window */
static const int shapes[][5] = {{1, 4, 4, 3, 2},  {2, 5, 7, 3, 3},      {1, 3, 3, 2, 4},
                                {2, 6, 6, 1, 6},  {1, 1, 1, 5, 1},      {1, 13, 7, 2, 7},
                                {2, 9, 10, 8, 4}, {2, 14, 14, 320, 14}, {2, 7, 7, 640, 7}};
#define N_SHAPES (int)(sizeof shapes / sizeof shapes[0])
#define FIRST_GPU_ONLY 7

static int n_windows(const int *p) {
    return p[0] * ((p[1] + p[4] - 1) / p[4]) * ((p[2] + p[4] - 1) / p[4]);
}

/* The float64 partition: windows[s, l, c] from image[b, y, x, c], 0 in the padding. */
static void partition64(double *win, const double *img, const int *p) {
    int B = p[0], H = p[1], W = p[2], C = p[3], w = p[4], nH = (H + w - 1) / w, nW = (W + w - 1) / w;
    for (int b = 0; b < B; b++)
        for (int i = 0; i < nH; i++)
            for (int j = 0; j < nW; j++)
                for (int r = 0; r < w; r++)
                    for (int c = 0; c < w; c++)
                        for (int ch = 0; ch < C; ch++) {
                            int64_t s = ((int64_t)b * nH + i) * nW + j, y = i * w + r, x = j * w + c;
                            double v = y < H && x < W ? img[(((int64_t)b * H + y) * W + x) * C + ch] : 0.0;
                            win[(s * w * w + r * w + c) * C + ch] = v;
                        }
}

/* The float64 reverse: image[b, y, x, c] from the windows, dropping the padding. */
static void reverse64(double *img, const double *win, const int *p) {
    int B = p[0], H = p[1], W = p[2], C = p[3], w = p[4], nH = (H + w - 1) / w, nW = (W + w - 1) / w;
    for (int b = 0; b < B; b++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int ch = 0; ch < C; ch++) {
                    int64_t s = ((int64_t)b * nH + y / w) * nW + x / w, l = (y % w) * w + x % w;
                    img[(((int64_t)b * H + y) * W + x) * C + ch] = win[(s * w * w + l) * C + ch];
                }
}

static void setup_partition(OpTest *t, int s) {
    const int *p = shapes[s];
    for (int i = 0; i < 5; i++)
        t->p[i] = p[i];
    t->gpu_only = s >= FIRST_GPU_ONLY;
    arg_in(t, "inp", ARG_ACT, 1, 0, 0, 4, p[0], p[1], p[2], p[3]);
    arg_out(t, "out", ARG_ACT, 1, 3, n_windows(p), p[4] * p[4], p[3]);
}

static void forward64_partition(const OpTest *t, double **out, double *const *in) {
    partition64(out[0], in[0], t->p);
}

static void run_partition(const OpTest *t, Tensor *out, Tensor *in, Tensor *dout, Tensor *din, Ctx *ctx) {
    window_partition(out[0], in[0], t->p[4], ctx);
    if (tensor_present(dout[0])) window_reverse(din[0], dout[0], t->p[4], ctx);
}

const OpCase case_window_partition = {.name = "window_partition",
                                      .n_shapes = N_SHAPES,
                                      .setup = setup_partition,
                                      .forward64 = forward64_partition,
                                      .run = run_partition,
                                      .has_cuda = 1};

static void setup_reverse(OpTest *t, int s) {
    const int *p = shapes[s];
    for (int i = 0; i < 5; i++)
        t->p[i] = p[i];
    t->gpu_only = s >= FIRST_GPU_ONLY;
    arg_in(t, "inp", ARG_ACT, 1, 0, 0, 3, n_windows(p), p[4] * p[4], p[3]);
    arg_out(t, "out", ARG_ACT, 1, 4, p[0], p[1], p[2], p[3]);
}

static void forward64_reverse(const OpTest *t, double **out, double *const *in) {
    reverse64(out[0], in[0], t->p);
}

static void run_reverse(const OpTest *t, Tensor *out, Tensor *in, Tensor *dout, Tensor *din, Ctx *ctx) {
    window_reverse(out[0], in[0], t->p[4], ctx);
    if (tensor_present(dout[0])) window_partition(din[0], dout[0], t->p[4], ctx);
}

const OpCase case_window_reverse = {.name = "window_reverse",
                                    .n_shapes = N_SHAPES,
                                    .setup = setup_reverse,
                                    .forward64 = forward64_reverse,
                                    .run = run_reverse,
                                    .has_cuda = 1};
