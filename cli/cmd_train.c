/* gkav train / eval / classify: the command line of the training loop and of evaluation. Flags are timm's
 * names
 * (`--batch-size 256`); `--config FILE` reads a recipe whose [train] keys are the same names, and a flag on
 * the command line overrides the file. An unknown flag or key stops with its name. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checkpoint.h"
#include "commands.h"
#include "launch.h"
#include "config.h"
#include "evaluate.h"
#include "image.h"
#include "model.h"
#include "ops.h"
#include "train.h"
#include "transforms.h"

/* Where eval and classify run unless --device says otherwise: the GPU when there is one. */
#define INFER_DEVICE "auto"

/* Flags without a value. */
static int is_switch(const char *key) {
    static const char *sw[] = {"model-ema", "amp", "json", "ema", NULL};
    for (int i = 0; sw[i]; i++)
        if (!strcmp(key, sw[i])) return 1;
    return 0;
}

/* --key value pairs (and switches) into section `section` of c, after --config FILE is loaded. Positional
 * arguments (images for classify) are collected in pos. */
static int parse_flags(Config *c, const char *section, int argc, char **argv, char **pos, int *npos,
                       GkErr *err) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--config")) {
            if (i + 1 >= argc) return gk_fail(err, "--config needs a file");
            if (config_load(c, argv[i + 1], err) != 0) return -1;
        }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--config")) {
            i++;
            continue;
        }
        if (strncmp(a, "--", 2)) {
            if (!pos) return gk_fail(err, "unexpected argument '%s'", a);
            pos[(*npos)++] = argv[i];
            continue;
        }
        const char *key = a + 2;
        const char *val = "true";
        if (!strncmp(key, "no-", 3) && is_switch(key + 3))
            key += 3, val = "false"; /* --no-amp, --no-model-ema */
        else if (!is_switch(key)) {
            if (i + 1 >= argc) return gk_fail(err, "--%s needs a value", key);
            val = argv[++i];
        } else if (i + 1 < argc && (!strcmp(argv[i + 1], "true") || !strcmp(argv[i + 1], "false"))) {
            val = argv[++i]; /* --model-ema false */
        }
        if (config_set(c, section, key, val) != 0)
            return gk_fail(err, "--%s: value '%s' cannot be stored", key, val);
    }
    return 0;
}

/* `--resume RUN_DIR` without `--config`: the run's own recipe.cfg is the starting point (flags still
 * override), so a resumed run needs no repetition of the original command line. */
static int load_run_recipe(Config *c, int argc, char **argv, GkErr *err) {
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--config")) return 0;
        if (!strcmp(argv[i], "--resume") && i + 1 < argc) dir = argv[i + 1];
    }
    struct stat sb;
    if (!dir || stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) return 0;
    char path[2048];
    snprintf(path, sizeof path, "%s/recipe.cfg", dir);
    if (stat(path, &sb) != 0) return 0;
    return config_load(c, path, err);
}

int cmd_train(int argc, char **argv) {
    GkErr err;
    Config *c = config_new();
    TrainConfig t;
    train_config_defaults(&t);
    RankInfo who = rank_single();
    int rc = 1;
    if (load_run_recipe(c, argc, argv, &err) != 0 ||
        parse_flags(c, "train", argc, argv, NULL, NULL, &err) != 0 || train_config_read(&t, c, &err) != 0 ||
        config_check_unused(c, &err) != 0)
        goto fail;
    int from_env = launch_from_env(&who, &err), forked = 0;
    if (from_env < 0) goto fail;
    if (!from_env && t.gpus > 1) {
        forked = launch_local(t.gpus, &who, &err);
        if (forked < 0) goto fail;
        if (forked == 0) { /* the launcher: every rank has finished well */
            rc = 0;
            goto done;
        }
    }
    if (train_run(&t, c, &who, &err) != 0) goto fail;
    rc = 0;
    goto done;
fail:
    if (who.world > 1)
        fprintf(stderr, "gkav train (rank %d of %d): %s\n", who.rank, who.world, err.msg);
    else
        fprintf(stderr, "gkav train: %s\n", err.msg);
done:
    config_free(c);
    return rc;
}

/* DIR/NAME for the folder of file PATH. */
static void sibling(char *out, size_t len, const char *path, const char *name) {
    const char *slash = strrchr(path, '/');
    if (slash)
        snprintf(out, len, "%.*s/%s", (int)(slash - path), path, name);
    else
        snprintf(out, len, "%s", name);
}

/* The normalisation a run trained with: [train] mean and std of the recipe.cfg that gkav train wrote next to
 * its checkpoints (absent: ImageNet's, the defaults given). Flags override it. */
static int run_normalisation(const char *ckpt, double *mean, double *std, GkErr *err) {
    char path[2048];
    sibling(path, sizeof path, ckpt, "recipe.cfg");
    FILE *fp = fopen(path, "r");
    if (!fp) return 0;
    fclose(fp);
    Config *r = config_new();
    int n, rc = config_load(r, path, err);
    if (rc == 0) rc = config_get_list_float(r, "train", "mean", mean, 3, mean, 3, &n, err);
    if (rc == 0) rc = config_get_list_float(r, "train", "std", std, 3, std, 3, &n, err);
    config_free(r);
    return rc;
}

/* The model with weights from an exported file (model_best.safetensors, PyTorch names) or a training
 * checkpoint (its EMA weights with --ema). */
static int load_model(Model *m, const char *model_name, const char *ckpt, int ema, int B, int img, Ctx *ctx,
                      GkErr *err) {
    ModelConfig mc;
    if (model_config_load(&mc, model_name, err) != 0) return -1;
    model_declare(m, &mc);
    model_alloc(m, ctx, 0); /* no init: loading sets every parameter and buffer, or fails */
    if (!ckpt || !ckpt[0]) return gk_fail(err, "--checkpoint is required");
    int rc = checkpoint_load_weights(ckpt, m, ema, ctx, err);
    if (rc == 1) rc = model_load(m, ckpt, ctx, err); /* not a training checkpoint: exported weights */
    if (rc != 0) return model_free(m, ctx), -1;
    model_setup(m, B, img, img);
    return 0;
}

static int open_ctx(Ctx *ctx, const char *device, GkErr *err) {
    *ctx = ctx_cpu();
    if (!strcmp(device, "cpu")) return 0;
    if (!strcmp(device, "cuda") || (!strcmp(device, "auto") && cuda_device_count() > 0))
        return ctx_cuda_create(ctx, 0, err);
    if (strcmp(device, "auto")) return gk_fail(err, "--device '%s' is not one of auto, cpu, cuda", device);
    return 0;
}

int cmd_eval(int argc, char **argv) {
    GkErr err;
    Config *c = config_new();
    int rc = 1, ema = 0;
    long B = 128, img = 0, workers = 0;
    double crop = -1.0;
    Ctx ctx = ctx_cpu();
    DataSplits ds = {0};
    Model m;
    int have_model = 0;
    if (parse_flags(c, "eval", argc, argv, NULL, NULL, &err) != 0) goto fail;
    const char *model = config_get_str(c, "eval", "model", "gkavision_t"),
               *ckpt = config_get_str(c, "eval", "checkpoint", "");
    const char *data = config_get_str(c, "eval", "data-dir", ""),
               *device = config_get_str(c, "eval", "device", INFER_DEVICE);
    const char *out = config_get_str(c, "eval", "output", "");
    if (config_get_int(c, "eval", "batch-size", B, &B, &err) ||
        config_get_int(c, "eval", "img-size", 0, &img, &err) ||
        config_get_int(c, "eval", "workers", 0, &workers, &err) ||
        config_get_float(c, "eval", "crop-pct", -1.0, &crop, &err) ||
        config_get_bool(c, "eval", "ema", 0, &ema, &err))
        goto fail;
    double mean[3] = {0.485, 0.456, 0.406}, std[3] = {0.229, 0.224, 0.225};
    int n;
    if (run_normalisation(ckpt, mean, std, &err) ||
        config_get_list_float(c, "eval", "mean", mean, 3, mean, 3, &n, &err) ||
        config_get_list_float(c, "eval", "std", std, 3, std, 3, &n, &err) || config_check_unused(c, &err))
        goto fail;
    if (data_splits_open(&ds, data, 0, 0, &err) != 0 || open_ctx(&ctx, device, &err) != 0) goto fail;
    ModelConfig mc;
    if (model_config_load(&mc, model, &err) != 0) goto fail;
    if (!img) img = mc.img_size;
    if (crop < 0.0) crop = 1.0;
    if (load_model(&m, model, ckpt, ema, (int)B, (int)img, &ctx, &err) != 0) goto fail;
    have_model = 1;
    int K = m.cfg.num_classes;
    if (ds.val.num_classes != K) {
        gk_fail(&err, "%s: %d classes, the model has %d", data, ds.val.num_classes, K);
        goto fail;
    }
    int64_t *hits = calloc((size_t)K, sizeof(int64_t)), *count = calloc((size_t)K, sizeof(int64_t));
    EvalResult r;
    double t0 = gk_now();
    int erc = evaluate_ex(&r, hits, count, &m, &ds.val, (int)img, (float)crop, (int)B, m.cfg.in_chans, mean,
                          std, (int)workers, NULL, NULL, &ctx, &err);
    double dt = gk_now() - t0;
    if (erc == 0) {
        printf("%s on %s (%lld images, crop_pct %.3g): top-1 %.2f%% (%lld), top-5 %.2f%% (%lld), loss %.4f, "
               "%.0f images/s\n",
               m.cfg.name, data, (long long)r.count, crop, r.top1, (long long)r.hits1, r.top5,
               (long long)r.hits5, r.loss, dt > 0 ? (double)r.count / dt : 0.0);
        if (out[0]) {
            char path[2048];
            mkdir(out, 0755);
            snprintf(path, sizeof path, "%s/per_class.csv", out);
            FILE *fp = fopen(path, "w");
            if (fp) {
                fprintf(fp, "class,name,images,top1\n");
                for (int k = 0; k < K; k++)
                    fprintf(fp, "%d,%s,%lld,%.4f\n", k, ds.val.class_names[k], (long long)count[k],
                            count[k] ? 100.0 * (double)hits[k] / (double)count[k] : 0.0);
                fclose(fp);
                printf("per-class accuracy: %s\n", path);
            }
        }
    }
    free(hits), free(count);
    if (erc != 0) goto fail;
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "gkav eval: %s\n", err.msg);
done:
    if (have_model) model_free(&m, &ctx);
    data_splits_close(&ds);
    ctx_destroy(&ctx);
    config_free(c);
    return rc;
}

/* Class names: CHECKPOINT's folder's classes.txt (one per line, written by gkav train), else "class N". */
static char **class_names(const char *ckpt, int K) {
    char path[2048];
    sibling(path, sizeof path, ckpt, "classes.txt");
    char **names = calloc((size_t)K, sizeof(char *));
    FILE *fp = fopen(path, "r");
    char line[512];
    for (int k = 0; k < K; k++) {
        if (fp && fgets(line, sizeof line, fp)) {
            line[strcspn(line, "\r\n")] = 0;
            names[k] = strdup(line);
        } else {
            snprintf(line, sizeof line, "class %d", k);
            names[k] = strdup(line);
        }
    }
    if (fp) fclose(fp);
    return names;
}

int cmd_classify(int argc, char **argv) {
    const double t_start = gk_now();
    GkErr err;
    Config *c = config_new();
    char *pos[256];
    int npos = 0, rc = 1, json = 0, have_model = 0;
    Ctx ctx = ctx_cpu();
    Model m;
    if (parse_flags(c, "classify", argc > 257 ? 257 : argc, argv, pos, &npos, &err) != 0) goto fail;
    const char *model = config_get_str(c, "classify", "model", "gkavision_t");
    const char *ckpt = config_get_str(c, "classify", "checkpoint", ""),
               *device = config_get_str(c, "classify", "device", INFER_DEVICE);
    double crop = 1.0;
    long img = 0;
    double mean[3] = {0.485, 0.456, 0.406}, std[3] = {0.229, 0.224, 0.225};
    int n;
    if (run_normalisation(ckpt, mean, std, &err) || config_get_bool(c, "classify", "json", 0, &json, &err) ||
        config_get_float(c, "classify", "crop-pct", 1.0, &crop, &err) ||
        config_get_int(c, "classify", "img-size", 0, &img, &err) ||
        config_get_list_float(c, "classify", "mean", mean, 3, mean, 3, &n, &err) ||
        config_get_list_float(c, "classify", "std", std, 3, std, 3, &n, &err) || config_check_unused(c, &err))
        goto fail;
    if (npos == 0) {
        gk_fail(&err, "no image given (gkav classify --model NAME --checkpoint FILE IMAGE...)");
        goto fail;
    }
    ModelConfig mc;
    if (open_ctx(&ctx, device, &err) != 0 || model_config_load(&mc, model, &err) != 0) goto fail;
    const double t_ctx = gk_now();
    if (!img) img = mc.img_size;
    if (load_model(&m, model, ckpt, 0, 1, (int)img, &ctx, &err) != 0) goto fail;
    have_model = 1;
    const double t_model = gk_now();
    const int K = m.cfg.num_classes, C = m.cfg.in_chans, S = (int)img;
    char **names = class_names(ckpt, K);
    uint8_t *pix = malloc((size_t)S * S * 3), *px1 = malloc((size_t)S * S);
    float *h = malloc(sizeof(float) * (size_t)S * S * C), *hl = malloc(sizeof(float) * (size_t)K);
    const DType adt = ctx.device == DEV_CUDA ? DT_BF16 : DT_F32;
    Tensor x = tensor_4d(dev_malloc(&ctx, (size_t)S * S * C * dtype_size(adt)), adt, ctx.device, 1, S, S, C);
    Tensor logits = tensor_2d(dev_malloc(&ctx, (size_t)K * dtype_size(adt)), adt, ctx.device, 1, K);
    int failures = 0;
    uint8_t *buf = NULL; /* the file being classified, reused */
    size_t cap = 0;
    for (int f = 0; f < npos; f++) {
        GkErr ierr;
        size_t len = 0;
        if (read_file(pos[f], DATASET_MAX_FILE_BYTES, &buf, &cap, &len, &ierr) != 0) {
            fprintf(stderr, "%s\n", ierr.msg), failures++;
            continue;
        }
        if (len == 0 || eval_transform(pix, buf, len, S, (float)crop, (int64_t)1 << 28, &ierr) != 0) {
            fprintf(stderr, "%s: not a usable image: %s\n", pos[f], len == 0 ? "empty file" : ierr.msg),
                failures++;
            continue;
        }
        for (int i = 0; i < S * S; i++) {
            if (C == 1) {
                px1[i] = (uint8_t)((pix[3 * i] * 19595u + pix[3 * i + 1] * 38470u + pix[3 * i + 2] * 7471u +
                                    0x8000u) >>
                                   16);
                h[i] = (float)((px1[i] / 255.0 - mean[0]) / std[0]);
            } else {
                for (int ch = 0; ch < C; ch++)
                    h[i * C + ch] = (float)((pix[3 * i + ch] / 255.0 - mean[ch]) / std[ch]);
            }
        }
        tensor_copy(x, tensor_4d(h, DT_F32, DEV_CPU, 1, S, S, C), &ctx);
        Pass pass = {0, 0, 0};
        model_forward(&m, logits, x, &pass, &ctx);
        tensor_copy(tensor_2d(hl, DT_F32, DEV_CPU, 1, K), logits, &ctx);
        int idx[5];
        float prob[5];
        int k = K < 5 ? K : 5;
        topk_softmax(hl, K, k, idx, prob);
        if (json) {
            printf("{\"image\": \"%s\", \"top5\": [", pos[f]);
            for (int j = 0; j < k; j++)
                printf("%s{\"class\": %d, \"name\": \"%s\", \"probability\": %.6f}", j ? ", " : "", idx[j],
                       names[idx[j]], prob[j]);
            printf("]}\n");
        } else {
            printf("%s:\n", pos[f]);
            for (int j = 0; j < k; j++)
                printf("  %6.2f%%  %s\n", 100.0 * prob[j], names[idx[j]]);
        }
    }
    for (int k = 0; k < K; k++)
        free(names[k]);
    free(names), free(pix), free(px1), free(h), free(hl), free(buf);
    dev_free(&ctx, x.data), dev_free(&ctx, logits.data);
    /* on stderr, so that --json output stays one object per line */
    fflush(stdout);
    fprintf(stderr, "gkav classify on %s: start-up %.0f ms, model load %.0f ms, %d image%s in %.0f ms\n",
            ctx.device == DEV_CUDA ? "cuda" : "cpu", 1e3 * (t_ctx - t_start), 1e3 * (t_model - t_ctx), npos,
            npos == 1 ? "" : "s", 1e3 * (gk_now() - t_model));
    rc = failures ? 1 : 0;
    goto done;
fail:
    fprintf(stderr, "gkav classify: %s\n", err.msg);
done:
    if (have_model) model_free(&m, &ctx);
    ctx_destroy(&ctx);
    config_free(c);
    return rc;
}
