/* trainer.c: the training loop (spec gkavision.md 8, DESIGN "One training step"). Per step: the loader's
 * batch (decoded, augmented, mixed, pinned, copied) -> normalise + random erasing (+ cast to bf16 on CUDA) ->
 * forward -> soft-target cross-entropy -> backward -> global-norm clip -> AdamW/LAMB (which also refreshes
 * the bf16 weight copy) -> EMA -> log. Per epoch: evaluation, summary.csv, plot.svg, checkpoint. The same
 * code drives the CPU and the CUDA backend; only where a buffer lives differs. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "batch.h"
#include "checkpoint.h"
#include "dataset.h"
#include "evaluate.h"
#include "launch.h"
#include "loader.h"
#include "model.h"
#include "ops.h"
#include "optim.h"
#include "train.h"
#include "transforms.h"
#ifdef GKA_HAVE_CUDA
#include "cuda/cuda_api.h"
#endif

#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>

/* The run folder's classes.txt (one name per line: what gkav classify prints) and, for raw-pixel datasets, an
 * example image from the validation split (example.png), to try `gkav classify` on. */
static int write_run_extras(const char *dir, const DataSplits *ds, GkErr *err) {
    char path[2 * TRAIN_STR];
    snprintf(path, sizeof path, "%s/classes.txt", dir);
    FILE *fp = fopen(path, "w");
    if (!fp) return gk_fail(err, "%s: %s", path, strerror(errno));
    for (int k = 0; k < ds->train.num_classes; k++)
        fprintf(fp, "%s\n", ds->train.class_names[k]);
    if (fclose(fp) != 0) return gk_fail(err, "%s: write failed", path);
    Sample s = SAMPLE_INIT;
    if (ds->val.count > 0 && dataset_get(&ds->val, 0, &s, err) == 0 && !s.encoded) {
        snprintf(path, sizeof path, "%s/example.png", dir);
        if (!stbi_write_png(path, s.w, s.h, s.c, s.data, s.w * s.c)) {
            sample_free(&s);
            return gk_fail(err, "%s: cannot write", path);
        }
    }
    sample_free(&s);
    return 0;
}

/* Parameter groups for the optimizer: timm's rule (PARAM_WEIGHT decayed, PARAM_NO_DECAY not); for LAMB each
 * decayed tensor is its own range (its trust ratio is per tensor), for AdamW neighbours merge. */
static OptimRange *param_ranges(const ParamTable *pt, double wd, int lamb, int *n_out) {
    OptimRange *r = mallocCheck(sizeof(OptimRange) * (size_t)(pt->n ? pt->n : 1));
    int n = 0;
    for (int i = 0; i < pt->n; i++) {
        float w = pt->e[i].kind == PARAM_WEIGHT ? (float)wd : 0.0f;
        if (n && !(lamb && w != 0.0f) && r[n - 1].weight_decay == w &&
            r[n - 1].offset + r[n - 1].count == pt->e[i].offset)
            r[n - 1].count += pt->e[i].numel;
        else
            r[n++] = (OptimRange){pt->e[i].offset, pt->e[i].numel, w};
    }
    *n_out = n;
    return r;
}

static int make_dir(const char *path, GkErr *err) {
    char buf[TRAIN_STR];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return gk_fail(err, "%s: cannot create: %s", buf, strerror(errno));
            *p = '/';
        }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return gk_fail(err, "%s: cannot create: %s", buf, strerror(errno));
    return 0;
}

/* Device memory for flat float buffers (host memory on the CPU). */
static float *fbuf(Ctx *ctx, size_t n) {
    float *p = dev_malloc(ctx, (n ? n : 1) * sizeof(float));
    tensor_fill_bytes(tensor_1d(p, DT_F32, ctx->device, (int64_t)(n ? n : 1)), 0, ctx);
    return p;
}

static void copy_floats(float *dst, Device dd, const float *src, Device sd, size_t n, Ctx *ctx) {
    tensor_copy(tensor_1d(dst, DT_F32, dd, (int64_t)n), tensor_1d((void *)src, DT_F32, sd, (int64_t)n), ctx);
}

/* A step with a non-finite loss or gradient is skipped; several in a row stop the run (-1 with err), the last
 * checkpoint intact. */
static int skip_nonfinite(int *bad_in_row, const TrainConfig *t, int64_t step, int lead, GkErr *err) {
    if (lead) printf("step %lld: non-finite loss or gradient, step skipped\n", (long long)step);
    if (++*bad_in_row < t->nonfinite_limit) return 0;
    return gk_fail(
        err,
        "training diverged: %d non-finite steps in a row at step %lld; the last checkpoint in %s is "
        "intact",
        *bad_in_row, (long long)step, t->output);
}

int train_run(const TrainConfig *t, const Config *recipe, const RankInfo *who, GkErr *err) {
    int rc = -1;
    const RankInfo single = rank_single();
    if (!who) who = &single;
    const int W = who->world, lead = who->rank == 0; /* the lead rank evaluates, logs and writes the run */
    /* ---- device, model, data: everything that can fail on bad input, before any GPU work ---- */
    ModelConfig mc;
    if (model_config_load(&mc, t->model, err) != 0) return -1;
    if (t->drop_path >= 0.0) mc.drop_path_rate = (float)t->drop_path;
    const int img = t->img_size ? t->img_size : mc.img_size;
    DataSplits ds;
    if (data_splits_open(&ds, t->data_dir, t->limit_train, t->limit_eval, err) != 0) return -1;
    if (ds.train.num_classes != mc.num_classes) {
        gk_fail(err, "%s: %d classes, but model %s has num_classes = %d", t->data_dir, ds.train.num_classes,
                mc.name, mc.num_classes);
        data_splits_close(&ds);
        return -1;
    }
    if (lead && make_dir(t->output, err) != 0) return data_splits_close(&ds), -1;
    char path[2 * TRAIN_STR];
    snprintf(path, sizeof path, "%s/latest", t->output);
    if (lead && !t->resume[0] && access(path, F_OK) == 0) { /* never mix two runs' logs and checkpoints */
        gk_fail(err, "%s holds a run already: continue it with --resume %s, or give another --output",
                t->output, t->output);
        return data_splits_close(&ds), -1;
    }
    Ctx ctx = ctx_cpu();
    int use_cuda = !strcmp(t->device, "cuda") || (!strcmp(t->device, "auto") && cuda_device_count() > 0);
    if (W > 1 && !use_cuda) {
        gk_fail(err, "training on %d ranks needs CUDA devices (--device cuda)", W);
        return data_splits_close(&ds), -1;
    }
    if (use_cuda && ctx_cuda_create(&ctx, who->local_rank, err) != 0) return data_splits_close(&ds), -1;
    const Device dev = ctx.device;
    Dist dist = dist_single();
    snprintf(path, sizeof path, "%s/recipe.cfg", t->output);
    if (lead && (config_write(recipe, path, err) != 0 || write_run_extras(t->output, &ds, err) != 0))
        goto out_ctx;
    if (dist_init(&dist, who->id, who->rank, W, &ctx, err) != 0) goto out_ctx;

    Model m;
    model_declare(&m, &mc);
    model_alloc(&m, &ctx, 1);
    model_init(&m, t->seed, &ctx);
    const int B = t->batch_size, C = mc.in_chans, K = mc.num_classes;
    model_setup(&m, B, img, img);
    const size_t P = m.params.total, NB = m.buffers.total;

    /* ---- loaders ---- */
    TrainAugConfig aug;
    train_aug_defaults(&aug);
    aug.size = img, aug.scale_min = (float)t->scale_min, aug.scale_max = (float)t->scale_max;
    aug.hflip = (float)t->hflip;
    if (!t->aa[0] || !strcmp(t->aa, "none"))
        aug.ra_ops = 0;
    else if (parse_randaugment(&aug, t->aa, err) != 0)
        goto out_model;
    MixupConfig mix;
    mixup_defaults(&mix, K);
    mix.mixup_alpha = (float)t->mixup, mix.cutmix_alpha = (float)t->cutmix, mix.prob = (float)t->mixup_prob;
    mix.switch_prob = (float)t->mixup_switch_prob, mix.smoothing = (float)t->smoothing;
    const int mixing = (t->mixup > 0.0 || t->cutmix > 0.0) && t->mixup_prob > 0.0;
    LoaderConfig lc;
    loader_config_defaults(&lc);
    lc.dataset = &ds.train, lc.out_h = lc.out_w = img, lc.out_c = C, lc.batch_size = B;
    if (t->workers > 0) lc.workers = t->workers;
    lc.seed = t->seed, lc.shuffle = 1, lc.drop_last = 1, lc.rank = who->rank, lc.world = W,
    lc.mixup = mixing ? &mix : NULL, lc.ctx = &ctx;
    sample_transform_for(&lc.transform, &lc.transform_user, C, 1, &aug, NULL);
    /* ---- optimizer state, schedule, resume ---- */
    float *adam_m = fbuf(&ctx, P), *adam_v = fbuf(&ctx, P);
    float *ema_p = t->model_ema ? fbuf(&ctx, P) : NULL, *ema_b = t->model_ema ? fbuf(&ctx, NB) : NULL;
    int n_ranges;
    const int lamb = !strcmp(t->opt, "lamb");
    OptimRange *ranges = param_ranges(&m.params, t->weight_decay, lamb, &n_ranges);
    TrainState st = {0};
    st.best_top1 = -1.0;
    if (t->resume[0]) {
        if (checkpoint_load(t->resume, &m, adam_m, adam_v, ema_p, ema_b, &st, &ctx, err) != 0) goto out_opt;
        printf("resumed from %s at epoch %lld, batch %lld (step %lld)\n", t->resume, (long long)st.epoch,
               (long long)st.batch, (long long)st.step);
    } else if (ema_p) {
        copy_floats(ema_p, dev, m.master, dev, P, &ctx);
        copy_floats(ema_b, dev, m.buf, dev, NB, &ctx);
    }
    lc.start_epoch = (uint64_t)st.epoch, lc.start_batch = st.batch;
    const int total_epochs = t->epochs + t->cooldown_epochs;
    lc.end_epoch = (uint64_t)total_epochs;
    Loader *loader;
    if (loader_create(&loader, &lc, err) != 0) goto out_opt;
    const int64_t steps_per_epoch = loader_batches_per_epoch(loader);
    if (steps_per_epoch < 1) {
        gk_fail(err, "%s: %lld training images give no full batch of %d on each of %d ranks", t->data_dir,
                (long long)ds.train.count, B, W);
        goto out_loader;
    }
    Schedule sched = {t->lr, t->warmup_lr, t->min_lr, (int64_t)t->warmup_epochs * steps_per_epoch,
                      (int64_t)t->epochs * steps_per_epoch};

    /* ---- per-step buffers ---- */
    const DType adt = dev == DEV_CUDA ? DT_BF16 : DT_F32;
    Tensor x =
        tensor_4d(dev_malloc(&ctx, (size_t)B * img * img * C * dtype_size(adt)), adt, dev, B, img, img, C);
    Tensor logits = tensor_2d(dev_malloc(&ctx, (size_t)B * K * dtype_size(adt)), adt, dev, B, K);
    Tensor dlogits = tensor_2d(dev_malloc(&ctx, (size_t)B * K * dtype_size(adt)), adt, dev, B, K);
    Tensor probs = tensor_2d(fbuf(&ctx, (size_t)B * K), DT_F32, dev, B, K);
    Tensor targets = tensor_2d(fbuf(&ctx, (size_t)B * K), DT_F32, dev, B, K);
    Tensor losses = tensor_1d(fbuf(&ctx, (size_t)B), DT_F32, dev, B);
    float *h_targets = mallocCheck(sizeof(float) * (size_t)B * K), *h_losses = mallocCheck(sizeof(float) * B);
    double *d_norm = dev == DEV_CUDA ? dev_malloc(&ctx, sizeof(double)) : NULL;
    NormErase ne;
    norm_erase_defaults(&ne, (float)t->reprob);
    for (int c = 0; c < 3; c++)
        ne.mean[c] = t->mean[c], ne.std[c] = t->std[c];
    EpochRecord *hist = callocCheck((size_t)total_epochs + 1, sizeof(EpochRecord));
    int n_hist = t->resume[0] ? read_summary(t->output, hist, total_epochs, (int)st.epoch) : 0,
        bad_in_row = 0;
    snprintf(path, sizeof path, "%s/metrics.jsonl", t->output);
    char dev_name[256] = "cpu";
#ifdef GKA_HAVE_CUDA
    if (dev == DEV_CUDA) cuda_device_name(ctx.cuda, dev_name, sizeof dev_name);
#endif
    if (lead && W > 1)
        printf(
            "training %s (%zu parameters) on %d x %s: %d epochs + %d cool-down, %lld steps of %d x %d, lr %g "
            "(%s)\n",
            mc.name, P, W, dev_name, t->epochs, t->cooldown_epochs, (long long)steps_per_epoch, W, B, t->lr,
            t->opt);
    else if (lead)
        printf("training %s (%zu parameters) on %s: %d epochs + %d cool-down, %lld steps of %d, lr %g (%s)\n",
               mc.name, P, dev_name, t->epochs, t->cooldown_epochs, (long long)steps_per_epoch, B, t->lr,
               t->opt);
    fflush(stdout);

    /* ---- the loop ---- */
    double t_log = gk_now(), loss_sum = 0.0, epoch_loss = st.epoch_loss, wait0 = loader_wait_seconds(loader);
    double peak_gib = 0.0; /* GPU memory in use, the most seen at a log line */
    int64_t log_n = 0, epoch_n = st.epoch_n;
    int64_t cur_epoch = st.epoch;
    for (;;) {
        Batch b;
        int got = loader_next(loader, &b, err);
        if (got < 0) goto out_steps;
        if (got == 0 || (t->max_steps && st.step >= t->max_steps)) break;
        if ((int64_t)b.epoch != cur_epoch) cur_epoch = (int64_t)b.epoch, epoch_loss = 0.0, epoch_n = 0;
        const uint64_t key = batch_key((uint64_t)b.step, who->rank);
        /* images -> model input; targets */
        if (dev == DEV_CUDA) {
#ifdef GKA_HAVE_CUDA
            batch_normalize_erase_cuda(x.data, b.d_images, &ne, t->seed, key, B, img, img, C, ctx.cuda);
#endif
        } else {
            batch_normalize_erase_cpu(x.data, b.images, &ne, t->seed, key, B, img, img, C);
        }
        Tensor tgt = targets; /* mixing: the loader's soft targets, read in place; else smoothed labels */
        if (b.targets) {
            tgt.data = dev == DEV_CUDA ? (void *)b.d_targets : (void *)b.targets;
        } else if (dev == DEV_CUDA) {
            smooth_one_hot(h_targets, b.labels, B, K, (float)t->smoothing);
            copy_floats(targets.data, dev, h_targets, DEV_CPU, (size_t)B * K, &ctx);
        } else {
            smooth_one_hot(targets.data, b.labels, B, K, (float)t->smoothing);
        }
        Pass pass = {1, t->seed + (uint64_t)who->rank,
                     (uint64_t)b.step}; /* drop path: seed + rank, as timm */
        model_zero_grads(&m, &ctx);
        model_forward(&m, logits, x, &pass, &ctx);
        softmax_xent_forward(losses, probs, logits, tgt, &ctx);
        copy_floats(h_losses, DEV_CPU, losses.data, dev, (size_t)B, &ctx);
        double loss = 0.0;
        for (int i = 0; i < B; i++)
            loss += h_losses[i];
        loss /= B;
        /* One rank checks its loss before the backward. Several ranks decide on the averaged gradient's norm
         * instead (a non-finite loss anywhere makes it non-finite everywhere), so that they skip the same
         * steps with no extra collective; their logged loss is the lead rank's shard's. */
        if (W == 1 && !isfinite(loss)) {
            if (skip_nonfinite(&bad_in_row, t, st.step, lead, err) != 0) goto out_steps;
            continue;
        }
        softmax_xent_backward(dlogits, probs, tgt, 1.0f / (float)B, &ctx);
        model_backward(&m, TENSOR_NONE, dlogits, &ctx);
        dist_mean_f32(&dist, m.grads, P, &ctx); /* every rank then clips and steps identically */
        double norm2 = 0.0;
        if (dev == DEV_CUDA) {
#ifdef GKA_HAVE_CUDA
            global_norm_sq_cuda(d_norm, m.grads, P, ctx.cuda);
            ctx_sync(&ctx);
            cuda_copy(&norm2, d_norm, sizeof(double));
#endif
        } else {
            global_norm_sq_cpu(&norm2, m.grads, P);
        }
        const double gnorm = sqrt(norm2);
        if (!isfinite(gnorm)) {
            if (skip_nonfinite(&bad_in_row, t, st.step, lead, err) != 0) goto out_steps;
            continue;
        }
        bad_in_row = 0;
        float scale = 1.0f;
        if (t->clip_grad > 0.0 && gnorm > t->clip_grad) scale = (float)(t->clip_grad / (gnorm + 1e-6));
        const double lr = schedule_lr(&sched, st.step + 1);
        OptimHyper hp = {(float)lr, 0.9f, 0.999f, 1e-8f, st.step + 1};
#ifdef GKA_HAVE_CUDA
        bf16_t *wcopy = dev == DEV_CUDA ? (bf16_t *)m.weights : NULL;
#endif
        if (lamb) {
            /* timm's LAMB pre-normalises by the (clipped) global norm: 1 / max(1, norm / 1.0) */
            double clipped = gnorm * scale;
            if (clipped > 1.0) scale = (float)(scale / clipped);
            if (dev == DEV_CUDA) {
#ifdef GKA_HAVE_CUDA
                lamb_update_cuda(m.master, adam_m, adam_v, wcopy, m.grads, P, ranges, n_ranges, hp, scale,
                                 ctx.cuda);
#endif
            } else {
                lamb_update_cpu(m.master, adam_m, adam_v, NULL, m.grads, P, ranges, n_ranges, hp, scale);
            }
        } else if (dev == DEV_CUDA) {
#ifdef GKA_HAVE_CUDA
            adamw_update_cuda(m.master, adam_m, adam_v, wcopy, m.grads, P, ranges, n_ranges, hp, scale,
                              ctx.cuda);
#endif
        } else {
            adamw_update_cpu(m.master, adam_m, adam_v, NULL, m.grads, P, ranges, n_ranges, hp, scale);
        }
        if (ema_p) {
            if (dev == DEV_CUDA) {
#ifdef GKA_HAVE_CUDA
                ema_update_cuda(ema_p, m.master, P, (float)t->model_ema_decay, ctx.cuda);
                ema_update_cuda(ema_b, m.buf, NB, (float)t->model_ema_decay, ctx.cuda);
#endif
            } else {
                ema_update_cpu(ema_p, m.master, P, (float)t->model_ema_decay);
                ema_update_cpu(ema_b, m.buf, NB, (float)t->model_ema_decay);
            }
        }
        st.step++;
        st.epoch = (int64_t)b.epoch, st.batch = b.index + 1;
        if (st.batch == steps_per_epoch) st.epoch++, st.batch = 0;
        loss_sum += loss, log_n++, epoch_loss += loss, epoch_n++;
        st.epoch_loss = st.batch ? epoch_loss : 0.0, st.epoch_n = st.batch ? epoch_n : 0;
        /* log */
        if (lead && t->log_interval > 0 && (st.step % t->log_interval == 0 || st.batch == 0)) {
            ctx_sync(&ctx);
            double now = gk_now(), wait = loader_wait_seconds(loader), dt = now - t_log;
            double ips = dt > 0 ? (double)log_n * B * W / dt : 0.0,
                   wait_pct = dt > 0 ? 100.0 * (wait - wait0) / dt : 0.0;
            double mem_gb = 0.0;
#ifdef GKA_HAVE_CUDA
            if (dev == DEV_CUDA) {
                mem_gb = (double)m.arena.capacity / 1e9;
                double used = (double)cuda_mem_in_use() / (1024.0 * 1024.0 * 1024.0);
                if (used > peak_gib) peak_gib = used;
            }
#endif
            printf(
                "epoch %lld step %lld/%lld loss %.4f lr %.3g grad-norm %.3g %.0f img/s data-wait %.0f%%%s\n",
                (long long)b.epoch, (long long)(b.index + 1), (long long)steps_per_epoch, loss_sum / log_n,
                lr, gnorm, ips, wait_pct, "");
            fflush(stdout);
            char line[512];
            snprintf(line, sizeof line,
                     "{\"epoch\": %lld, \"step\": %lld, \"loss\": %.6f, \"lr\": %.6g, \"grad_norm\": %.6g, "
                     "\"images_per_s\": %.1f, \"images_per_s_per_gpu\": %.1f, \"data_wait_pct\": %.1f, "
                     "\"activations_gb\": %.3f, \"gpu_memory_gib\": %.2f}",
                     (long long)b.epoch, (long long)st.step, loss_sum / log_n, lr, gnorm, ips, ips / W,
                     wait_pct, mem_gb, peak_gib);
            if (metrics_append(path, line, err) != 0) goto out_steps;
            t_log = now, wait0 = wait, loss_sum = 0.0, log_n = 0;
        }
        int epoch_done = st.batch == 0;
        int last_step = t->max_steps && st.step >= t->max_steps;
        if (epoch_done ||
            last_step) /* BatchNorm running statistics: the ranks' mean (timm's dist_bn reduce) */
            dist_mean_f32(&dist, m.buf, NB, &ctx);
        if (!lead) {
            /* the others go on; their next collective waits for the lead's evaluation and checkpoint */
        } else if (epoch_done || last_step) {
            EvalResult ev;
            if (evaluate(&ev, &m, &ds.val, img, (float)t->crop_pct, B, C, t->mean, t->std, t->workers,
                         ema_p ? ema_p : NULL, ema_b, &ctx, err) != 0)
                goto out_steps;
            EpochRecord *r = &hist[n_hist++];
            r->epoch = (int)(epoch_done ? st.epoch : st.epoch + 1);
            r->train_loss = epoch_n ? epoch_loss / epoch_n : NAN, r->eval_loss = ev.loss;
            r->eval_top1 = ev.top1, r->eval_top5 = ev.top5, r->lr = lr;
            printf("epoch %d: train loss %.4f, eval loss %.4f, top-1 %.2f%%, top-5 %.2f%% (%lld images%s)\n",
                   r->epoch, r->train_loss, ev.loss, ev.top1, ev.top5, (long long)ev.count,
                   ema_p ? ", EMA weights" : "");
            fflush(stdout);
            if (write_summary(t->output, hist, n_hist, err) != 0) goto out_steps;
            int best = ev.top1 > st.best_top1;
            if (best) st.best_top1 = ev.top1;
            if (checkpoint_save(t->output, "last", &m, adam_m, adam_v, ema_p, ema_b, &st, recipe, &ctx,
                                err) != 0)
                goto out_steps;
            if (best && export_best(t->output, &m, ema_p, ema_b, &ctx, err) != 0) goto out_steps;
        } else if (t->checkpoint_interval > 0 && st.step % t->checkpoint_interval == 0) {
            if (checkpoint_save(t->output, "last", &m, adam_m, adam_v, ema_p, ema_b, &st, recipe, &ctx,
                                err) != 0)
                goto out_steps;
        }
        if (last_step) break;
    }
    if (loader_bad_count(loader) > 0) {
        if (W > 1) printf("rank %d: ", who->rank);
        printf("%lld unusable images were skipped and replaced:\n", (long long)loader_bad_count(loader));
        char line[1024];
        for (int64_t i = 0; i < loader_bad_count(loader) && i < 20; i++)
            printf("  %s\n", loader_bad_entry(loader, i, line, sizeof line));
    }
    if (lead) {
        printf("done: %lld steps; best top-1 %.2f%%; run folder %s\n", (long long)st.step, st.best_top1,
               t->output);
        if (peak_gib > 0.0) printf("peak GPU memory in use (rank 0, at the log lines): %.1f GiB\n", peak_gib);
    }
    rc = 0;
out_steps:
    free(hist), free(h_targets), free(h_losses);
    if (d_norm) dev_free(&ctx, d_norm);
    dev_free(&ctx, x.data), dev_free(&ctx, logits.data), dev_free(&ctx, dlogits.data);
    dev_free(&ctx, probs.data), dev_free(&ctx, targets.data), dev_free(&ctx, losses.data);
out_loader:
    loader_destroy(loader);
out_opt:
    free(ranges);
    dev_free(&ctx, adam_m), dev_free(&ctx, adam_v);
    if (ema_p) dev_free(&ctx, ema_p), dev_free(&ctx, ema_b);
out_model:
    model_free(&m, &ctx);
out_ctx:
    dist_destroy(&dist);
    ctx_destroy(&ctx);
    data_splits_close(&ds);
    return rc;
}
