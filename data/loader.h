/* loader.h: the training and evaluation loader: worker threads decode and transform samples into a ring
 * of batch buffers; the consumer takes batches in order.
 *
 * The one decision: everything random is keyed, nothing depends on which thread does what. The epoch's
 * order is a Fisher-Yates permutation drawn from Philox(seed, RNG_PERMUTE, epoch); sample augmentation is
 * keyed by (seed, epoch, sample index); a batch's mixup by (seed, step, rank). Workers take samples one at
 * a time (a batch is spread over all of them), each writes its own place, and a batch is handed out
 * only when complete and only in order, so a batch is byte-identical for any number of workers, and a
 * run resumed at (epoch, batch) delivers what the uninterrupted run would have.
 *
 * Sharding (torch's DistributedSampler): with n samples and W ranks, the permuted list is cut to
 * W floor(n / W) (drop_last, training) or padded to W ceil(n / W) by repeating its start (evaluation;
 * the repeats are marked invalid); rank r takes positions r, r + W, r + 2W, ... Batches: floor (drop_last)
 * or ceil of the rank's count over the batch size.
 *
 * Bad input: when a sample cannot be read or transformed, another takes its place: up to 16 samples
 * drawn from Philox(seed, epoch, index), then i + 1, i + 2, ... (wrapping), the first that works, with
 * the augmentation key of the sample it replaces. The file is logged once (a de-duplicated list of
 * "path: why"), counted, and the run goes on; the loader never prints. Only when every sample of the
 * dataset has failed does loader_next return an error. The count after an epoch is deterministic; the
 * order of the list is the order in which workers met the files.
 *
 * With a CUDA context, the ring is pinned host memory and each batch is copied to the GPU on a stream of
 * the loader's own as soon as it is complete; loader_next makes the context's stream wait (on the GPU)
 * for that copy, so the consumer simply queues its kernels. */
#ifndef GKA_LOADER_H
#define GKA_LOADER_H

#include <stdint.h>

#include "batch.h"
#include "context.h"
#include "core.h"
#include "dataset.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Makes one sample: writes out_h x out_w x out_c uint8 HWC pixels to out from s. Keys its random choices
 * by (seed, epoch, index). Returns -1 with a message when s cannot be used (not an image, truncated,
 * too large, ...). Called from several threads at once. */
typedef int (*SampleTransform)(uint8_t *out, const Sample *s, uint64_t seed, uint64_t epoch, uint64_t index,
                               void *user, GkErr *err);

/* The project's transforms (transforms.h) as SampleTransforms. Both write RGB, size x size x 3; raw
 * grayscale pixels (Fashion-MNIST) are replicated to RGB, as PIL's convert("RGB") would.
 * loader_train_transform: user is a const TrainAugConfig * (decode, RandomResizedCrop, flip, RandAugment).
 * loader_eval_transform: user is a const EvalAug * (resize shorter side, centre crop; no randomness). */
typedef struct EvalAug {
    int size;
    float crop_pct;
    int64_t max_pixels;
} EvalAug;
int loader_train_transform(uint8_t *out, const Sample *s, uint64_t seed, uint64_t epoch, uint64_t index,
                           void *user, GkErr *err);
int loader_eval_transform(uint8_t *out, const Sample *s, uint64_t seed, uint64_t epoch, uint64_t index,
                          void *user, GkErr *err);

typedef struct LoaderConfig {
    const Dataset *dataset;
    SampleTransform transform;
    void *transform_user;
    int out_h, out_w, out_c; /* what the transform writes per sample */
    int batch_size;          /* per rank */
    int workers;             /* transform threads (default: all cores) */
    int prefetch;            /* batches in the ring, the one the consumer holds included (default 4) */
    uint64_t seed;
    int shuffle;   /* 1: a new permutation each epoch (training); 0: dataset order (evaluation) */
    int drop_last; /* 1: equal shards by dropping the tail, and only full batches (training) */
    int rank, world;
    uint64_t start_epoch; /* resume point: the first batch delivered is (start_epoch, start_batch) */
    int64_t start_batch;
    uint64_t end_epoch;       /* stop after epoch end_epoch - 1; 0: never stop */
    const MixupConfig *mixup; /* NULL: no mixing and no soft targets */
    Ctx *ctx; /* a CUDA context: pinned ring + asynchronous copies (it must outlive the loader); NULL or a
               * CPU context: host memory only */
} LoaderConfig;
void loader_config_defaults(LoaderConfig *cfg);

/* One batch, valid until the next loader_next or loader_destroy. */
typedef struct Batch {
    uint64_t epoch;
    int64_t index;    /* batch within the epoch */
    int64_t step;     /* epoch * batches_per_epoch + index: the key of everything random about the batch */
    int count;        /* samples: batch_size, or fewer for the last batch without drop_last */
    uint8_t *images;  /* [count, out_h, out_w, out_c] host (pinned with CUDA) */
    int32_t *labels;  /* [count] the (unmixed) labels */
    int64_t *indices; /* [count] the dataset index each sample came from (after any replacement) */
    uint8_t *valid;   /* [count] 0 for the padding repeats of an evaluation shard */
    float *targets;   /* [count, num_classes] soft targets with mixup configured, else NULL */
    MixDraw mix;      /* the batch's mixup draw (mode MIX_NONE without mixup) */
    /* Device copies (CUDA context only, else NULL); ready for work queued on the context's stream. */
    uint8_t *d_images;
    int32_t *d_labels;
    float *d_targets;
} Batch;

typedef struct Loader Loader;

/* Checks the configuration and starts the workers. */
int loader_create(Loader **out, const LoaderConfig *cfg, GkErr *err);
/* The next batch in order: 1 with *b filled, 0 after the last batch (end_epoch), -1 with err when no
 * sample of the dataset can be used. Releases the batch handed out before. */
int loader_next(Loader *L, Batch *b, GkErr *err);
void loader_destroy(Loader *L);

int64_t loader_batches_per_epoch(const Loader *L);
int64_t loader_samples_per_rank(const Loader *L);
/* Seconds the consumer has spent blocked in loader_next (the "data-wait" of the training log). */
double loader_wait_seconds(Loader *L);
/* Distinct bad files found so far, and the i-th of them as "path: why" (copied into buf). */
int64_t loader_bad_count(Loader *L);
const char *loader_bad_entry(Loader *L, int64_t i, char *buf, size_t len);

/* ---- the epoch's order, exposed for tests and tools ---------------------------------------------- */
/* perm[n]: Fisher-Yates with Philox(seed, RNG_PERMUTE, epoch) draws. */
void epoch_permutation(int64_t *perm, int64_t n, uint64_t seed, uint64_t epoch);
/* Samples per rank: floor(n / world) with drop_last, else ceil(n / world). */
int64_t shard_count(int64_t n, int drop_last, int world);
/* Rank r's list (shard_count entries) from the permuted list; valid[k] = 0 for padding repeats. */
void shard_indices(int64_t *out, uint8_t *valid, const int64_t *perm, int64_t n, int drop_last, int rank,
                   int world);

#ifdef __cplusplus
}
#endif
#endif
