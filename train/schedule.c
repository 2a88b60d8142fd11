/* schedule.c: the recipe's defaults and reading, and the learning-rate schedule of spec gkavision.md 8.2. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "train.h"

void train_config_defaults(TrainConfig *t) {
    memset(t, 0, sizeof *t);
    snprintf(t->model, sizeof t->model, "gkavision_t");
    snprintf(t->output, sizeof t->output, "runs/train");
    snprintf(t->opt, sizeof t->opt, "adamw");
    snprintf(t->aa, sizeof t->aa, "rand-m9-mstd0.5-inc1");
    snprintf(t->device, sizeof t->device, "auto");
    t->batch_size = 256, t->epochs = 310, t->warmup_epochs = 20, t->cooldown_epochs = 10, t->workers = 0;
    t->img_size = 0, t->log_interval = 50, t->model_ema = 0, t->checkpoint_interval = 0,
    t->nonfinite_limit = 5;
    t->amp = 1;
    t->gpus = 1;
    t->lr = 5e-4, t->min_lr = 5e-6, t->warmup_lr = 1e-6, t->weight_decay = 0.05, t->smoothing = 0.1;
    t->mixup = 0.8, t->cutmix = 1.0, t->mixup_prob = 1.0, t->mixup_switch_prob = 0.5, t->reprob = 0.25;
    t->drop_path = -1.0; /* the model's own rate */
    t->clip_grad = 5.0, t->model_ema_decay = 0.9998, t->crop_pct = 0.875, t->scale_min = 0.08,
    t->scale_max = 1.0;
    t->hflip = 0.5;
    t->mean[0] = 0.485, t->mean[1] = 0.456, t->mean[2] = 0.406;
    t->std[0] = 0.229, t->std[1] = 0.224, t->std[2] = 0.225;
    t->seed = 42;
}

static int get_str(const Config *c, const char *key, char *dst, size_t len) {
    const char *v = config_get_str(c, "train", key, NULL);
    if (v) snprintf(dst, len, "%s", v);
    return 0;
}

int train_config_read(TrainConfig *t, const Config *c, GkErr *err) {
    get_str(c, "model", t->model, sizeof t->model);
    get_str(c, "data-dir", t->data_dir, sizeof t->data_dir);
    get_str(c, "output", t->output, sizeof t->output);
    get_str(c, "resume", t->resume, sizeof t->resume);
    get_str(c, "opt", t->opt, sizeof t->opt);
    get_str(c, "aa", t->aa, sizeof t->aa);
    get_str(c, "device", t->device, sizeof t->device);
    struct {
        const char *key;
        int *dst;
    } ints[] = {{"batch-size", &t->batch_size},
                {"epochs", &t->epochs},
                {"warmup-epochs", &t->warmup_epochs},
                {"cooldown-epochs", &t->cooldown_epochs},
                {"workers", &t->workers},
                {"img-size", &t->img_size},
                {"log-interval", &t->log_interval},
                {"checkpoint-interval", &t->checkpoint_interval},
                {"nonfinite-limit", &t->nonfinite_limit},
                {"gpus", &t->gpus}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        long v;
        if (config_get_int(c, "train", ints[i].key, *ints[i].dst, &v, err) != 0) return -1;
        *ints[i].dst = (int)v;
    }
    struct {
        const char *key;
        int *dst;
    } bools[] = {{"model-ema", &t->model_ema}, {"amp", &t->amp}};
    for (size_t i = 0; i < sizeof bools / sizeof bools[0]; i++)
        if (config_get_bool(c, "train", bools[i].key, *bools[i].dst, bools[i].dst, err) != 0) return -1;
    struct {
        const char *key;
        int64_t *dst;
    } longs[] = {
        {"max-steps", &t->max_steps}, {"limit-train", &t->limit_train}, {"limit-eval", &t->limit_eval}};
    for (size_t i = 0; i < sizeof longs / sizeof longs[0]; i++) {
        long v;
        if (config_get_int(c, "train", longs[i].key, (long)*longs[i].dst, &v, err) != 0) return -1;
        *longs[i].dst = v;
    }
    struct {
        const char *key;
        double *dst;
    } flts[] = {{"lr", &t->lr},
                {"min-lr", &t->min_lr},
                {"warmup-lr", &t->warmup_lr},
                {"weight-decay", &t->weight_decay},
                {"smoothing", &t->smoothing},
                {"mixup", &t->mixup},
                {"cutmix", &t->cutmix},
                {"mixup-prob", &t->mixup_prob},
                {"mixup-switch-prob", &t->mixup_switch_prob},
                {"reprob", &t->reprob},
                {"drop-path", &t->drop_path},
                {"clip-grad", &t->clip_grad},
                {"model-ema-decay", &t->model_ema_decay},
                {"crop-pct", &t->crop_pct},
                {"scale-min", &t->scale_min},
                {"scale-max", &t->scale_max},
                {"hflip", &t->hflip}};
    for (size_t i = 0; i < sizeof flts / sizeof flts[0]; i++)
        if (config_get_float(c, "train", flts[i].key, *flts[i].dst, flts[i].dst, err) != 0) return -1;
    int n;
    if (config_get_list_float(c, "train", "mean", t->mean, 3, t->mean, 3, &n, err) != 0) return -1;
    if (config_get_list_float(c, "train", "std", t->std, 3, t->std, 3, &n, err) != 0) return -1;
    long seed;
    if (config_get_int(c, "train", "seed", (long)t->seed, &seed, err) != 0) return -1;
    t->seed = (uint64_t)seed;
    if (t->gpus < 1) return gk_fail(err, "recipe: gpus must be at least 1");
    if (t->batch_size < 1 || t->epochs < 1 || t->warmup_epochs < 0 || t->cooldown_epochs < 0)
        return gk_fail(err, "recipe: batch-size and epochs must be positive, warm-up and cool-down >= 0");
    if (strcmp(t->opt, "adamw") && strcmp(t->opt, "lamb"))
        return gk_fail(err, "recipe: opt '%s' is not one of adamw, lamb", t->opt);
    if (strcmp(t->device, "auto") && strcmp(t->device, "cpu") && strcmp(t->device, "cuda"))
        return gk_fail(err, "recipe: device '%s' is not one of auto, cpu, cuda", t->device);
    if (!(t->lr > 0.0)) return gk_fail(err, "recipe: lr must be positive");
    return 0;
}

double schedule_lr(const Schedule *s, int64_t t) {
    if (t < s->warmup_steps)
        return s->warmup_lr + (double)t * (s->lr - s->warmup_lr) / (double)s->warmup_steps;
    if (t < s->cycle_steps)
        return s->min_lr + 0.5 * (s->lr - s->min_lr) * (1.0 + cos(M_PI * (double)t / (double)s->cycle_steps));
    return s->min_lr;
}
