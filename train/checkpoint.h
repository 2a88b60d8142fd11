/* checkpoint.h: training checkpoints (everything a run needs to continue exactly) and the exported weights.
 *
 * A checkpoint is one safetensors file, DIR/NAME.safetensors, written to a temporary file, fsynced and
 * renamed (safetensors.h), then recorded in DIR/latest (also written atomically): the completion marker that
 * `--resume DIR` follows, so a run killed during a write resumes from the previous complete checkpoint. It
 * holds the flat buffers in this project's layout (model.params, model.buffers, model.num_batches_tracked,
 * optim.adam_m, optim.adam_v, ema.params, ema.buffers) and, in __metadata__, the format, the model, the step,
 * the position (epoch, batch) of the next batch, the best top-1 so far and the resolved recipe.
 * Exported weights (DIR/model_best.safetensors) carry PyTorch's names and layouts instead (model_save): they
 * are what `gkav eval` and `gkav classify` read, and what moves to and from PyTorch. */
#ifndef GKA_TRAIN_CHECKPOINT_H
#define GKA_TRAIN_CHECKPOINT_H

#include <stdint.h>

#include "config.h"
#include "core.h"
#include "model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct TrainState {
    int64_t step;      /* optimizer steps taken */
    int64_t epoch;     /* epoch of the next batch */
    int64_t batch;     /* index of the next batch within its epoch */
    double best_top1;  /* -1 before the first evaluation */
    double epoch_loss; /* sum of this epoch's training losses so far, and their count: a resumed epoch */
    int64_t epoch_n;   /* reports the same mean as an uninterrupted one */
} TrainState;

/* Writes DIR/NAME.safetensors and then DIR/latest. m, v, ema_p, ema_b are on the model's device (ema_* may be
 * NULL). */
int checkpoint_save(const char *dir, const char *name, const Model *m, const float *adam_m,
                    const float *adam_v, const float *ema_p, const float *ema_b, const TrainState *st,
                    const Config *recipe, Ctx *ctx, GkErr *err);
/* Reads a checkpoint file, or the newest complete one of a run folder (its `latest`), into the model and the
 * optimizer buffers; refuses a file made for another model, naming what differs. */
int checkpoint_load(const char *path_or_dir, Model *m, float *adam_m, float *adam_v, float *ema_p,
                    float *ema_b, TrainState *st, Ctx *ctx, GkErr *err);
/* Only the model's weights (or, with ema, its EMA weights) from a training checkpoint: 0 loaded, 1 the file
 * is not a training checkpoint (so it may be an exported weights file), -1 error (message in err). */
int checkpoint_load_weights(const char *path, Model *m, int ema, Ctx *ctx, GkErr *err);
/* DIR/model_best.safetensors: the weights (the EMA weights when ema_p is given) with PyTorch's names. */
int export_best(const char *dir, Model *m, const float *ema_p, const float *ema_b, Ctx *ctx, GkErr *err);

#ifdef __cplusplus
}
#endif
#endif
