/* evaluate.c: data splits, transforms by input channels, and the evaluation loop (evaluate.h). */
#include "evaluate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "ops.h"

/* ---- splits ------------------------------------------------------------------------------------------ */
static void limit(Dataset *d, int64_t n) {
    if (n > 0 && n < d->count) d->count = n;
}

int data_splits_open(DataSplits *ds, const char *data_dir, int64_t limit_train, int64_t limit_eval,
                     GkErr *err) {
    memset(ds, 0, sizeof *ds);
    if (!data_dir || !data_dir[0])
        return gk_fail(err, "no data: give --data-dir (a folder with train/ and val/, or fashion-mnist)");
    char tr[2048], va[2048];
    if (!strncmp(data_dir, "fashion-mnist", 13)) {
        const char *dir = data_dir[13] == ':' ? data_dir + 14 : NULL;
        snprintf(tr, sizeof tr, "fashion-mnist:%s%strain", dir ? dir : "", dir ? ":" : "");
        snprintf(va, sizeof va, "fashion-mnist:%s%stest", dir ? dir : "", dir ? ":" : "");
    } else {
        snprintf(tr, sizeof tr, "%s/train", data_dir);
        snprintf(va, sizeof va, "%s/val", data_dir);
    }
    if (dataset_open(&ds->train, tr, err) != 0) return -1;
    if (dataset_open(&ds->val, va, err) != 0) return dataset_close(&ds->train), -1;
    if (ds->train.num_classes != ds->val.num_classes) {
        gk_fail(err, "%s: %d classes in train but %d in val", data_dir, ds->train.num_classes,
                ds->val.num_classes);
        data_splits_close(ds);
        return -1;
    }
    limit(&ds->train, limit_train);
    limit(&ds->val, limit_eval);
    return 0;
}

void data_splits_close(DataSplits *ds) {
    dataset_close(&ds->train);
    dataset_close(&ds->val);
}

/* ---- one-channel transforms ---------------------------------------------------------------------------
 * Raw one-channel pixels go through the same crops and resizes on one channel. Anything else is made RGB
 * first (the project's transforms), then reduced to luma with PIL's convert("L") weights. */
static void to_luma(uint8_t *out, const uint8_t *rgb, size_t n) {
    for (size_t i = 0; i < n; i++)
        out[i] =
            (uint8_t)((rgb[3 * i] * 19595u + rgb[3 * i + 1] * 38470u + rgb[3 * i + 2] * 7471u + 0x8000u) >>
                      16);
}

static int gray_train(uint8_t *out, const Sample *s, uint64_t seed, uint64_t epoch, uint64_t index,
                      void *user, GkErr *err) {
    const TrainAugConfig *cfg = user;
    if (!s->encoded && s->c == 1 && cfg->ra_ops == 0) {
        Image im = {(uint8_t *)s->data, s->w, s->h, 1};
        train_transform_pixels(out, &im, cfg, seed, epoch, index);
        return 0;
    }
    uint8_t *rgb = mallocCheck((size_t)cfg->size * cfg->size * 3);
    int rc = loader_train_transform(rgb, s, seed, epoch, index, user, err);
    if (rc == 0) to_luma(out, rgb, (size_t)cfg->size * cfg->size);
    free(rgb);
    return rc;
}

static int gray_eval(uint8_t *out, const Sample *s, uint64_t seed, uint64_t epoch, uint64_t index, void *user,
                     GkErr *err) {
    const EvalAug *cfg = user;
    if (!s->encoded && s->c == 1) {
        Image im = {(uint8_t *)s->data, s->w, s->h, 1};
        eval_transform_pixels(out, &im, cfg->size, cfg->crop_pct);
        return 0;
    }
    uint8_t *rgb = mallocCheck((size_t)cfg->size * cfg->size * 3);
    int rc = loader_eval_transform(rgb, s, seed, epoch, index, user, err);
    if (rc == 0) to_luma(out, rgb, (size_t)cfg->size * cfg->size);
    free(rgb);
    return rc;
}

void sample_transform_for(SampleTransform *fn, void **user, int in_chans, int train, TrainAugConfig *aug,
                          EvalAug *eval) {
    if (train)
        *fn = in_chans == 1 ? gray_train : loader_train_transform, *user = aug;
    else
        *fn = in_chans == 1 ? gray_eval : loader_eval_transform, *user = eval;
}

/* ---- evaluation --------------------------------------------------------------------------------------- */
void topk_softmax(const float *logits, int K, int k, int *idx, float *prob) {
    double mx = -INFINITY, sum = 0.0;
    for (int c = 0; c < K; c++)
        mx = fmax(mx, logits[c]);
    for (int c = 0; c < K; c++)
        sum += exp((double)logits[c] - mx);
    for (int j = 0; j < k; j++)
        idx[j] = -1;
    for (int c = 0; c < K; c++) { /* insertion into the sorted top-k (ties: lower class first) */
        int pos = k;
        while (pos > 0 && (idx[pos - 1] < 0 || logits[c] > logits[idx[pos - 1]]))
            pos--;
        if (pos >= k) continue;
        for (int j = k - 1; j > pos; j--)
            idx[j] = idx[j - 1];
        idx[pos] = c;
    }
    for (int j = 0; j < k; j++)
        prob[j] = idx[j] < 0 ? 0.0f : (float)(exp((double)logits[idx[j]] - mx) / sum);
}

/* Swaps the model's weights with host copies of (params, buffers); returns the previous ones in the same
 * arrays. */
static void swap_weights(Model *m, float *hp, float *hb, Ctx *ctx) {
    const size_t P = m->params.total, NB = m->buffers.total;
    float *cp = mallocCheck((P ? P : 1) * 4), *cb = mallocCheck((NB ? NB : 1) * 4);
    model_get_params(m, cp, ctx);
    model_get_buffers(m, cb, ctx);
    model_set_params(m, hp, ctx);
    model_set_buffers(m, hb, ctx);
    memcpy(hp, cp, P * 4), memcpy(hb, cb, NB * 4);
    free(cp), free(cb);
}

int evaluate_ex(EvalResult *r, int64_t *per_class_hits, int64_t *per_class_count, Model *m, const Dataset *ds,
                int img, float crop_pct, int batch_size, int in_chans, const double *mean, const double *std,
                int workers, const float *ema_p, const float *ema_b, Ctx *ctx, GkErr *err) {
    memset(r, 0, sizeof *r);
    const int B = batch_size, K = m->cfg.num_classes, C = in_chans;
    if (m->B != B || m->H != img || m->W != img) model_setup(m, B, img, img);
    EvalAug ea = {img, crop_pct, (int64_t)1 << 27};
    LoaderConfig lc;
    loader_config_defaults(&lc);
    lc.dataset = ds, lc.out_h = lc.out_w = img, lc.out_c = C, lc.batch_size = B;
    if (workers > 0) lc.workers = workers;
    lc.shuffle = 0, lc.drop_last = 0, lc.end_epoch = 1, lc.ctx = ctx;
    sample_transform_for(&lc.transform, &lc.transform_user, C, 0, NULL, &ea);
    Loader *L;
    if (loader_create(&L, &lc, err) != 0) return -1;
    const size_t P = m->params.total, NB = m->buffers.total;
    float *hp = NULL, *hb = NULL;
    if (ema_p) {
        hp = mallocCheck((P ? P : 1) * 4), hb = mallocCheck((NB ? NB : 1) * 4);
        tensor_copy(tensor_1d(hp, DT_F32, DEV_CPU, (int64_t)P),
                    tensor_1d((void *)ema_p, DT_F32, m->dev, (int64_t)P), ctx);
        tensor_copy(tensor_1d(hb, DT_F32, DEV_CPU, (int64_t)NB),
                    tensor_1d((void *)ema_b, DT_F32, m->dev, (int64_t)NB), ctx);
        swap_weights(m, hp, hb, ctx);
    }
    const DType adt = ctx->device == DEV_CUDA ? DT_BF16 : DT_F32;
    Tensor x = tensor_4d(dev_malloc(ctx, (size_t)B * img * img * C * dtype_size(adt)), adt, ctx->device, B,
                         img, img, C);
    Tensor logits = tensor_2d(dev_malloc(ctx, (size_t)B * K * dtype_size(adt)), adt, ctx->device, B, K);
    float *hl = mallocCheck(sizeof(float) * (size_t)B * K);
    NormErase ne;
    norm_erase_defaults(&ne, 0.0f);
    for (int c = 0; c < 3; c++)
        ne.mean[c] = mean[c], ne.std[c] = std[c];
    double loss = 0.0;
    int rc = 0;
    Pass pass = {0, 0, 0};
    for (;;) {
        Batch b;
        int got = loader_next(L, &b, err);
        if (got < 0) {
            rc = -1;
            break;
        }
        if (got == 0) break;
        if (ctx->device == DEV_CUDA) {
#ifdef GKA_HAVE_CUDA
            batch_normalize_erase_cuda(x.data, b.d_images, &ne, 0, 0, b.count, img, img, C, ctx->cuda);
#endif
        } else {
            batch_normalize_erase_cpu(x.data, b.images, &ne, 0, 0, b.count, img, img, C);
        }
        model_forward(m, logits, x, &pass, ctx);
        tensor_copy(tensor_2d(hl, DT_F32, DEV_CPU, B, K), logits, ctx);
        for (int i = 0; i < b.count; i++) {
            if (b.valid && !b.valid[i]) continue;
            const float *row = hl + (size_t)i * K;
            int idx[5];
            float prob[5];
            int k = K < 5 ? K : 5, y = b.labels[i];
            topk_softmax(row, K, k, idx, prob);
            double mx = -INFINITY, sum = 0.0;
            for (int c = 0; c < K; c++)
                mx = fmax(mx, row[c]);
            for (int c = 0; c < K; c++)
                sum += exp((double)row[c] - mx);
            loss += -((double)row[y] - mx - log(sum));
            r->count++;
            if (per_class_count) per_class_count[y]++;
            if (idx[0] == y) {
                r->hits1++;
                if (per_class_hits) per_class_hits[y]++;
            }
            for (int j = 0; j < k; j++)
                if (idx[j] == y) r->hits5++;
        }
    }
    if (r->count) {
        r->top1 = 100.0 * (double)r->hits1 / (double)r->count,
        r->top5 = 100.0 * (double)r->hits5 / (double)r->count;
        r->loss = loss / (double)r->count;
    }
    if (ema_p) swap_weights(m, hp, hb, ctx); /* the model's own weights back */
    free(hp), free(hb), free(hl);
    dev_free(ctx, x.data), dev_free(ctx, logits.data);
    loader_destroy(L);
    return rc;
}

int evaluate(EvalResult *r, Model *m, const Dataset *ds, int img, float crop_pct, int batch_size,
             int in_chans, const double *mean, const double *std, int workers, const float *ema_p,
             const float *ema_b, Ctx *ctx, GkErr *err) {
    return evaluate_ex(r, NULL, NULL, m, ds, img, crop_pct, batch_size, in_chans, mean, std, workers, ema_p,
                       ema_b, ctx, err);
}
