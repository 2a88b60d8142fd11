/* bench_gka: times our CUDA GKA core operator (forward, and forward + backward) and prints one line per shape;
 * bench/gka/run.sh puts it beside the authors' Triton op in the same call. With --dump DIR it also writes each
 * shape's inputs and our outputs and gradients there (raw little-endian arrays), so the baseline script runs the
 * authors' op on the very same inputs and reports how far apart the two are.
 * Usage: bench_gka [--reps N] [--dump DIR] [B T H K ...]  (default: the two GKAVision-T shapes at batch 256). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "core.h"
#include "gka.h"
#include "../../tests/gka_inputs.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void *up(Ctx *ctx, const float *h, size_t n, DType dt) {
    if (!h) return NULL;
    void *d = dev_malloc(ctx, n * dtype_size(dt));
    tensor_copy(tensor_1d(d, dt, DEV_CUDA, (int64_t)n), tensor_1d((void *)h, DT_F32, DEV_CPU, (int64_t)n), ctx);
    return d;
}

static void dump(const char *dir, int B, int T, int H, int K, const char *name, Tensor t, Ctx *ctx) {
    char path[1024];
    snprintf(path, sizeof path, "%s/gka_%d_%d_%d_%d_%s.%s", dir, B, T, H, K, name, t.dtype == DT_BF16 ? "bf16" : "f32");
    size_t bytes = tensor_bytes(t);
    void *h = mallocCheck(bytes);
    tensor_copy(tensor_1d(h, t.dtype, DEV_CPU, tensor_numel(t)), tensor_1d(t.data, t.dtype, DEV_CUDA, tensor_numel(t)), ctx);
    FILE *fp = fopenCheck(path, "wb");
    fwriteCheck(h, 1, bytes, fp);
    fcloseCheck(fp);
    free(h);
}

static void bench_shape(Ctx *ctx, int B, int T, int H, int K, int reps, const char *dump_dir) {
    int V = K;
    GkaInputFlags fl = {0, 0, 1, 1, 0, 0}; /* one gate for both states and alpha, as the layer runs it */
    GkaInputs in = gka_inputs_make(B, T, H, K, V, fl, 7);
    size_t nt = (size_t)B * T * H;
    Tensor q = tensor_4d(up(ctx, in.q, nt * K, DT_BF16), DT_BF16, DEV_CUDA, B, T, H, K);
    Tensor k = tensor_4d(up(ctx, in.k, nt * K, DT_BF16), DT_BF16, DEV_CUDA, B, T, H, K);
    Tensor v = tensor_4d(up(ctx, in.v, nt * V, DT_BF16), DT_BF16, DEV_CUDA, B, T, H, V);
    Tensor d_o = tensor_4d(up(ctx, in.d_o, nt * V, DT_BF16), DT_BF16, DEV_CUDA, B, T, H, V);
    Tensor g = tensor_3d(up(ctx, in.g, nt, DT_F32), DT_F32, DEV_CUDA, B, T, H);
    Tensor al = tensor_3d(up(ctx, in.alpha, nt, DT_F32), DT_F32, DEV_CUDA, B, T, H);
    Tensor o = tensor_4d(dev_malloc(ctx, nt * V * 2), DT_BF16, DEV_CUDA, B, T, H, V);
    Tensor x = tensor_4d(dev_malloc(ctx, nt * K * 4), DT_F32, DEV_CUDA, B, T, H, K);
    Tensor f = tensor_3d(dev_malloc(ctx, nt * 4), DT_F32, DEV_CUDA, B, T, H);
    Tensor dq = tensor_4d(dev_malloc(ctx, nt * K * 2), DT_BF16, DEV_CUDA, B, T, H, K);
    Tensor dk = tensor_4d(dev_malloc(ctx, nt * K * 2), DT_BF16, DEV_CUDA, B, T, H, K);
    Tensor dv = tensor_4d(dev_malloc(ctx, nt * V * 2), DT_BF16, DEV_CUDA, B, T, H, V);
    Tensor dg = tensor_3d(dev_malloc(ctx, nt * 4), DT_F32, DEV_CUDA, B, T, H);
    Tensor da = tensor_3d(dev_malloc(ctx, nt * 4), DT_F32, DEV_CUDA, B, T, H);
    GkaOpConfig cfg = {0.02f, 30, 1.0f / sqrtf((float)K), 64, GKA_ALGO_AUTO};
    size_t wb = gka_core_workspace_bytes(cfg, B, T, H, K, V);
    Tensor work = tensor_1d(dev_malloc(ctx, wb), DT_F32, DEV_CUDA, (int64_t)(wb / 4));
    size_t sb = gka_core_saved_bytes(cfg, B, T, H, K, V, DEV_CUDA);
    Tensor saved = sb ? tensor_1d(dev_malloc(ctx, sb), DT_F32, DEV_CUDA, (int64_t)(sb / 4)) : TENSOR_NONE;
    double *tf = mallocCheck(sizeof(double) * reps), *tfb = mallocCheck(sizeof(double) * reps);
    for (int r = -3; r < reps; r++) { /* three warm-up runs */
        ctx_sync(ctx);
        double t0 = gk_now();
        gka_core_forward(o, TENSOR_NONE, TENSOR_NONE, x, f, saved, q, k, v, g, g, al, TENSOR_NONE, TENSOR_NONE, cfg,
                         ctx);
        ctx_sync(ctx);
        double t1 = gk_now();
        gka_core_backward(dq, dk, dv, dg, dg, da, TENSOR_NONE, TENSOR_NONE, work, d_o, TENSOR_NONE, TENSOR_NONE, q, k,
                          v, g, g, al, TENSOR_NONE, TENSOR_NONE, x, f, saved, cfg, ctx);
        ctx_sync(ctx);
        double t2 = gk_now();
        if (r >= 0) tf[r] = 1e3 * (t1 - t0), tfb[r] = 1e3 * (t2 - t0);
    }
    qsort(tf, reps, sizeof(double), cmp_double);
    qsort(tfb, reps, sizeof(double), cmp_double);
    printf("ours  B %4d T %5d H %2d K %3d  fwd %8.3f ms  fwd+bwd %8.3f ms  (median of %d)\n", B, T, H, K,
           tf[reps / 2], tfb[reps / 2], reps);
    if (dump_dir) {
        const char *names[] = {"q", "k", "v", "do", "g", "alpha", "o", "dq", "dk", "dv", "dg", "dalpha"};
        Tensor ts[] = {q, k, v, d_o, g, al, o, dq, dk, dv, dg, da};
        for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) dump(dump_dir, B, T, H, K, names[i], ts[i], ctx);
    }
    void *bufs[] = {q.data, k.data, v.data, d_o.data, g.data, al.data, o.data, x.data, f.data, dq.data, dk.data,
                    dv.data, dg.data, da.data, work.data, saved.data};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        if (bufs[i]) dev_free(ctx, bufs[i]);
    free(tf), free(tfb);
    gka_inputs_free(&in);
}

int main(int argc, char **argv) {
    int reps = 20, i = 1;
    const char *dump_dir = NULL;
    while (i + 1 < argc && argv[i][0] == '-') {
        if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--dump")) dump_dir = argv[i + 1];
        else break;
        i += 2;
    }
    Ctx ctx;
    GkErr err;
    if (cuda_device_count() == 0 || ctx_cuda_create(&ctx, 0, &err) != 0) {
        fprintf(stderr, "bench_gka: needs a CUDA device\n");
        return 1;
    }
    if (i >= argc) {
        bench_shape(&ctx, 256, 196, 5, 32, reps, dump_dir);
        bench_shape(&ctx, 256, 49, 10, 32, reps, dump_dir);
    }
    for (; i + 3 < argc; i += 4)
        bench_shape(&ctx, atoi(argv[i]), atoi(argv[i + 1]), atoi(argv[i + 2]), atoi(argv[i + 3]), reps, dump_dir);
    ctx_destroy(&ctx);
    return 0;
}
