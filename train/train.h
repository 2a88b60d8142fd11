/* train.h: the training recipe, its schedule, checkpoints, logs and the training loop (spec gkavision.md 8).
 *
 * A recipe is a config file (darknet-style, config.h) of [train] keys named after timm's flags
 * (`batch-size = 256`, `lr = 5e-4`); `gkav train --flag value` overrides the file. The resolved recipe is
 * written to the run folder and into every checkpoint.
 *
 * The one decision a reader must know: a run is a pure function of (recipe, seed). The loader keys every
 * sample by (seed, epoch, index), drop path by (seed, step), mixup and erasing by (seed, step); the
 * optimizer and the schedule are deterministic. So a checkpoint needs only the flat buffers (parameters,
 * BatchNorm statistics, AdamW moments, EMA) and the step: resuming replays the interrupted epoch from its
 * first unfinished batch and gives the uninterrupted run's numbers (bit for bit on the CPU). */
#ifndef GKA_TRAIN_H
#define GKA_TRAIN_H

#include <stdint.h>

#include "config.h"
#include "core.h"
#include "launch.h"

#ifdef __cplusplus
extern "C" {
#endif

#define TRAIN_STR 1024

typedef struct TrainConfig {
    char model[TRAIN_STR];    /* --model: a name in configs/ or a .cfg path */
    char data_dir[TRAIN_STR]; /* --data-dir: ROOT (ROOT/train, ROOT/val) or "fashion-mnist" */
    char output[TRAIN_STR];   /* --output: the run folder */
    char resume[TRAIN_STR];   /* --resume: a checkpoint, or a run folder (its newest complete one) */
    char opt[16];             /* --opt: adamw | lamb */
    char aa[64];              /* --aa: RandAugment spec, "" or "none" for none */
    char device[16];          /* --device: auto | cpu | cuda */
    int batch_size, epochs, warmup_epochs, cooldown_epochs, workers, img_size, log_interval;
    int model_ema, checkpoint_interval, nonfinite_limit, amp;
    int gpus; /* --gpus: ranks to fork on this node, one per GPU (batch-size is per GPU, as timm's) */
    int64_t max_steps;               /* --max-steps: stop after this many optimizer steps (0: none) */
    int64_t limit_train, limit_eval; /* use only the first N samples (0: all): short demos, tests */
    double lr, min_lr, warmup_lr, weight_decay, smoothing, mixup, cutmix, mixup_prob, mixup_switch_prob;
    double reprob, drop_path, clip_grad, model_ema_decay, crop_pct, scale_min, scale_max, hflip;
    double mean[3], std[3];
    uint64_t seed;
} TrainConfig;

/* timm's / MambaVision's recipe B defaults (spec 8.1). */
void train_config_defaults(TrainConfig *t);
/* Reads [train] of c over the defaults; a malformed value names file:line. */
int train_config_read(TrainConfig *t, const Config *c, GkErr *err);

/* ---- the learning-rate schedule (spec 8.2, exactly) -------------------------------------------------- */
typedef struct Schedule {
    double lr, warmup_lr, min_lr;
    int64_t warmup_steps; /* W = warmup_epochs * steps_per_epoch */
    int64_t cycle_steps;  /* T = epochs * steps_per_epoch (the cosine spans the warm-up too) */
} Schedule;
/* The rate of global step t (t = epoch * steps_per_epoch + i + 1 for the i-th batch of an epoch). */
double schedule_lr(const Schedule *s, int64_t t);

/* ---- logs ------------------------------------------------------------------------------------------- */
typedef struct EpochRecord {
    int epoch;
    double train_loss, eval_loss, eval_top1, eval_top5, lr;
} EpochRecord;
/* Appends one JSON object line to PATH. */
int metrics_append(const char *path, const char *json_line, GkErr *err);
/* Writes summary.csv (timm's columns) and an SVG plot of loss and top-1 per epoch, both atomically. */
int write_summary(const char *run_dir, const EpochRecord *rec, int n, GkErr *err);
/* The rows of RUN_DIR/summary.csv up to epoch up_to_epoch (at most max): a resumed run's history. A missing
 * file gives 0 rows. */
int read_summary(const char *run_dir, EpochRecord *rec, int max, int up_to_epoch);

/* ---- the run ---------------------------------------------------------------------------------------- */
/* Trains as the recipe says, as rank `who` of a data-parallel job (NULL: the only rank; launch.h). Every rank
 * trains on its shard of each epoch with the same parameters (gradients and BatchNorm statistics averaged
 * over NCCL); the lead rank (0) evaluates, logs and writes the run folder. Trains as the recipe says; prints
 * progress; returns 0, or -1 with err (bad input, or training diverged: nonfinite_limit non-finite losses in
 * a row). Config c is the resolved recipe (model keys included). */
int train_run(const TrainConfig *t, const Config *recipe, const RankInfo *who, GkErr *err);

#ifdef __cplusplus
}
#endif
#endif
