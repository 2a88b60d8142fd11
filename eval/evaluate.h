/* evaluate.h: the evaluation protocol (spec gkavision.md section 9) and what training and evaluation share:
 * the train/val splits of a data folder, and the per-sample transforms for a model's input channels.
 *
 * Accuracy is counted exactly: every image of the split once (the loader marks an evaluation shard's padding
 * repeats invalid and they are not counted), top-1 and top-5 as hits over images, the loss as plain
 * cross-entropy with the hard labels. */
#ifndef GKA_EVAL_EVALUATE_H
#define GKA_EVAL_EVALUATE_H

#include <stdint.h>

#include "dataset.h"
#include "loader.h"
#include "model.h"
#include "transforms.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The splits of --data-dir: "fashion-mnist" (the Debian files: train 60,000, test 10,000) or ROOT with
 * ROOT/train and ROOT/val (ImageFolder or packed). limit_* > 0 keep only the first samples (dataset order).
 */
typedef struct DataSplits {
    Dataset train, val;
} DataSplits;
int data_splits_open(DataSplits *ds, const char *data_dir, int64_t limit_train, int64_t limit_eval,
                     GkErr *err);
void data_splits_close(DataSplits *ds);

/* The loader's transform for a model with `in_chans` inputs: 3 -> the project's RGB transforms (grayscale
 * replicated); 1 -> the same crops, flips and resizes on one channel (raw 1-channel pixels, e.g.
 * Fashion-MNIST; encoded files are converted to luma). train selects the training or the evaluation one. */
void sample_transform_for(SampleTransform *fn, void **user, int in_chans, int train, TrainAugConfig *aug,
                          EvalAug *eval);

typedef struct EvalResult {
    int64_t count; /* images counted */
    int64_t hits1, hits5;
    double top1, top5, loss; /* percentages; mean cross-entropy */
} EvalResult;
/* Evaluates the model on ds: images resized to floor(img / crop_pct) and centre-cropped to img, normalised
 * with mean/std. With ema_p (and ema_b) the EMA weights are evaluated and the model's own restored
 * afterwards. per_class_hits (num_classes entries, may be NULL) receives top-1 hits per true class. */
int evaluate(EvalResult *r, Model *m, const Dataset *ds, int img, float crop_pct, int batch_size,
             int in_chans, const double *mean, const double *std, int workers, const float *ema_p,
             const float *ema_b, Ctx *ctx, GkErr *err);
int evaluate_ex(EvalResult *r, int64_t *per_class_hits, int64_t *per_class_count, Model *m, const Dataset *ds,
                int img, float crop_pct, int batch_size, int in_chans, const double *mean, const double *std,
                int workers, const float *ema_p, const float *ema_b, Ctx *ctx, GkErr *err);

/* Top-k of one row of logits: indices and softmax probabilities, best first. */
void topk_softmax(const float *logits, int K, int k, int *idx, float *prob);

#ifdef __cplusplus
}
#endif
#endif
