/* bench_model: images/s of our models on one GPU, as bench/model/run.sh compares them with the PyTorch
 * reference (bench/model/torch_reference.py) in the same device call.
 *
 * For each model: a full training step (forward with drop path, soft-target cross-entropy, backward,
 * gradient norm, AdamW over all parameters) and an inference forward, on synthetic images already on the
 * GPU (bf16, NHWC), batch B at 224 x 224. Each timed step ends with a device synchronisation; the median
 * of --steps steps after --warmup is reported. Output: a table, or CSV lines
 * "gkav,<model>,<batch>,<train images/s>,<inference images/s>,<activation GB>" (--csv).
 * With GKA_PROFILE=1 each op is synchronised and timed, and a table per phase says where the time goes
 * (the images/s are then the profiled ones, a little lower). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "model.h"
#include "ops.h"
#include "optim.h"
#include "profile.h"
#ifdef GKA_HAVE_CUDA
#include "cuda/cuda_api.h"
#endif

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#ifdef GKA_HAVE_CUDA
static void bench(const char *name, int B, int img, int warmup, int steps, int csv, Ctx *ctx) {
    ModelConfig mc;
    GkErr err;
    if (model_config_load(&mc, name, &err) != 0) gk_die("%s", err.msg);
    Model m;
    model_declare(&m, &mc);
    model_alloc(&m, ctx, 1);
    model_init(&m, 1, ctx);
    model_setup(&m, B, img, img);
    const int C = mc.in_chans, K = mc.num_classes;
    const size_t P = m.params.total, ni = (size_t)B * img * img * C, nk = (size_t)B * K;
    /* inputs: a fixed pseudo-random image batch and smoothed one-hot targets */
    bf16_t *h_img = mallocCheck(ni * sizeof(bf16_t));
    uint64_t s = 88172645463325252ull;
    for (size_t i = 0; i < ni; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        h_img[i] = f32_to_bf16((float)((double)(s >> 11) / 9007199254740992.0 * 4.0 - 2.0));
    }
    float *h_tgt = mallocCheck(nk * sizeof(float));
    for (size_t i = 0; i < nk; i++)
        h_tgt[i] = (i % (size_t)K) == (i / (size_t)K) % (size_t)K ? 0.9f + 0.1f / K : 0.1f / K;
    Tensor x = tensor_4d(dev_malloc(ctx, ni * sizeof(bf16_t)), DT_BF16, DEV_CUDA, B, img, img, C);
    cuda_copy(x.data, h_img, ni * sizeof(bf16_t));
    Tensor logits = tensor_2d(dev_malloc(ctx, nk * sizeof(bf16_t)), DT_BF16, DEV_CUDA, B, K);
    Tensor dlogits = tensor_2d(dev_malloc(ctx, nk * sizeof(bf16_t)), DT_BF16, DEV_CUDA, B, K);
    Tensor probs = tensor_2d(dev_malloc(ctx, nk * sizeof(float)), DT_F32, DEV_CUDA, B, K);
    Tensor targets = tensor_2d(dev_malloc(ctx, nk * sizeof(float)), DT_F32, DEV_CUDA, B, K);
    cuda_copy(targets.data, h_tgt, nk * sizeof(float));
    Tensor losses = tensor_1d(dev_malloc(ctx, (size_t)B * sizeof(float)), DT_F32, DEV_CUDA, B);
    float *adam_m = dev_malloc(ctx, P * sizeof(float)), *adam_v = dev_malloc(ctx, P * sizeof(float));
    cuda_memset(adam_m, 0, P * sizeof(float)), cuda_memset(adam_v, 0, P * sizeof(float));
    double *d_norm = dev_malloc(ctx, sizeof(double));
    OptimRange all = {0, P, 0.05f};
    double *t_train = mallocCheck(sizeof(double) * (size_t)steps),
           *t_inf = mallocCheck(sizeof(double) * (size_t)steps);
    double prof_train = 0.0, prof_inf = 0.0;
    for (int k = 0; k < warmup + steps; k++) {
        if (k == warmup) prof_reset();
        ctx_sync(ctx);
        double t0 = gk_now();
        Pass pass = {1, 1, (uint64_t)k};
        model_zero_grads(&m, ctx);
        model_forward(&m, logits, x, &pass, ctx);
        softmax_xent_forward(losses, probs, logits, targets, ctx);
        softmax_xent_backward(dlogits, probs, targets, 1.0f / (float)B, ctx);
        model_backward(&m, TENSOR_NONE, dlogits, ctx);
        global_norm_sq_cuda(d_norm, m.grads, P, ctx->cuda);
        OptimHyper hp = {1e-4f, 0.9f, 0.999f, 1e-8f, k + 1};
        adamw_update_cuda(m.master, adam_m, adam_v, (bf16_t *)m.weights, m.grads, P, &all, 1, hp, 1.0f,
                          ctx->cuda);
        ctx_sync(ctx);
        if (k >= warmup) t_train[k - warmup] = gk_now() - t0, prof_train += t_train[k - warmup];
    }
    if (prof_enabled()) {
        printf("%s, batch %d: training step, op by op (GKA_PROFILE=1: synchronised after every op)\n", name, B);
        prof_report(stdout, prof_train, steps);
    }
    for (int k = 0; k < warmup + steps; k++) {
        if (k == warmup) prof_reset();
        ctx_sync(ctx);
        double t0 = gk_now();
        Pass pass = {0, 1, 0};
        model_forward(&m, logits, x, &pass, ctx);
        ctx_sync(ctx);
        if (k >= warmup) t_inf[k - warmup] = gk_now() - t0, prof_inf += t_inf[k - warmup];
    }
    if (prof_enabled()) {
        printf("%s, batch %d: inference forward, op by op\n", name, B);
        prof_report(stdout, prof_inf, steps);
    }
    double tr = B / median(t_train, steps), inf = B / median(t_inf, steps),
           gb = (double)m.arena.capacity / 1e9;
    if (csv)
        printf("gkav,%s,%d,%.1f,%.1f,%.2f\n", name, B, tr, inf, gb);
    else
        printf("%-16s batch %4d: train %8.1f images/s, inference %8.1f images/s, activations %.1f GB\n", name,
               B, tr, inf, gb);
    fflush(stdout);
    free(t_train), free(t_inf), free(h_img), free(h_tgt);
    dev_free(ctx, x.data), dev_free(ctx, logits.data), dev_free(ctx, dlogits.data), dev_free(ctx, probs.data);
    dev_free(ctx, targets.data), dev_free(ctx, losses.data), dev_free(ctx, adam_m), dev_free(ctx, adam_v);
    dev_free(ctx, d_norm);
    model_free(&m, ctx);
}
#endif

int main(int argc, char **argv) {
    const char *models = "gkavision_t,mambavision_t";
    int B = 256, img = 224, warmup = 5, steps = 20, csv = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--models") && i + 1 < argc)
            models = argv[++i];
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            B = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--img") && i + 1 < argc)
            img = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--warmup") && i + 1 < argc)
            warmup = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc)
            steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--csv"))
            csv = 1;
        else {
            fprintf(stderr,
                    "usage: bench_model [--models a,b] [--batch B] [--img S] [--warmup N] [--steps N] "
                    "[--csv]\n");
            return 2;
        }
    }
    if (B < 1 || img < 32 || steps < 1 || warmup < 0) gk_die("bench_model: bad batch, size or step count");
#ifdef GKA_HAVE_CUDA
    if (cuda_device_count() == 0) {
        printf("bench_model: no CUDA device\n");
        return 0;
    }
    Ctx ctx;
    GkErr err;
    if (ctx_cuda_create(&ctx, 0, &err) != 0) gk_die("%s", err.msg);
    char list[1024];
    snprintf(list, sizeof list, "%s", models);
    for (char *name = strtok(list, ","); name; name = strtok(NULL, ","))
        bench(name, B, img, warmup, steps, csv, &ctx);
    ctx_destroy(&ctx);
#else
    (void)models, (void)csv, (void)median;
    printf("bench_model: a CPU-only build has nothing to time\n");
#endif
    return 0;
}
