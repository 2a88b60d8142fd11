/* checkpoint.c: training checkpoints and exported weights (checkpoint.h). */
#include "checkpoint.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"

#define CKPT_FORMAT "gkavision-checkpoint-1"

static float *to_host(const float *src, size_t n, Device dev, Ctx *ctx) {
    float *h = mallocCheck((n ? n : 1) * sizeof(float));
    if (n)
        tensor_copy(tensor_1d(h, DT_F32, DEV_CPU, (int64_t)n),
                    tensor_1d((void *)src, DT_F32, dev, (int64_t)n), ctx);
    return h;
}

static void from_host(float *dst, const float *h, size_t n, Device dev, Ctx *ctx) {
    if (n)
        tensor_copy(tensor_1d(dst, DT_F32, dev, (int64_t)n),
                    tensor_1d((void *)h, DT_F32, DEV_CPU, (int64_t)n), ctx);
}

/* The recipe as text, for the metadata: written to a temporary file by config_write, read back. */
static char *recipe_text(const Config *recipe, const char *dir, GkErr *err) {
    char path[2048];
    snprintf(path, sizeof path, "%s/.recipe-%ld.cfg", dir, (long)getpid());
    if (config_write(recipe, path, err) != 0) return NULL;
    FILE *fp = fopen(path, "rb");
    if (!fp) return gk_fail(err, "%s: %s", path, strerror(errno)), NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *s = mallocCheck((size_t)n + 1);
    size_t got = fread(s, 1, (size_t)n, fp);
    s[got] = 0;
    fclose(fp);
    remove(path);
    return s;
}

static int write_latest(const char *dir, const char *name, const TrainState *st, GkErr *err) {
    char path[2048], tmp[2100];
    snprintf(path, sizeof path, "%s/latest", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *fp = fopen(tmp, "w");
    if (!fp) return gk_fail(err, "%s: %s", tmp, strerror(errno));
    fprintf(fp, "%s.safetensors step %lld epoch %lld batch %lld\n", name, (long long)st->step,
            (long long)st->epoch, (long long)st->batch);
    int ok = fflush(fp) == 0 && fsync(fileno(fp)) == 0;
    ok &= fclose(fp) == 0;
    if (!ok || rename(tmp, path) != 0) return gk_fail(err, "%s: write failed: %s", path, strerror(errno));
    return 0;
}

int checkpoint_save(const char *dir, const char *name, const Model *m, const float *adam_m,
                    const float *adam_v, const float *ema_p, const float *ema_b, const TrainState *st,
                    const Config *recipe, Ctx *ctx, GkErr *err) {
    const size_t P = m->params.total, NB = m->buffers.total;
    char *rtext = recipe_text(recipe, dir, err);
    if (!rtext) return -1;
    float *hp = mallocCheck((P ? P : 1) * sizeof(float)), *hb = mallocCheck((NB ? NB : 1) * sizeof(float));
    model_get_params(m, hp, ctx);
    model_get_buffers(m, hb, ctx);
    float *hm = to_host(adam_m, P, m->dev, ctx), *hv = to_host(adam_v, P, m->dev, ctx);
    float *he = ema_p ? to_host(ema_p, P, m->dev, ctx) : NULL,
          *heb = ema_b ? to_host(ema_b, NB, m->dev, ctx) : NULL;
    StWriter *w = st_writer_new();
    int64_t sp = (int64_t)P, sb = (int64_t)NB, sn = m->n_bn;
    st_writer_add(w, "model.params", ST_F32, 1, &sp, hp);
    st_writer_add(w, "model.buffers", ST_F32, 1, &sb, hb);
    st_writer_add(w, "model.num_batches_tracked", ST_I64, 1, &sn, m->nbt);
    st_writer_add(w, "optim.adam_m", ST_F32, 1, &sp, hm);
    st_writer_add(w, "optim.adam_v", ST_F32, 1, &sp, hv);
    if (he)
        st_writer_add(w, "ema.params", ST_F32, 1, &sp, he),
            st_writer_add(w, "ema.buffers", ST_F32, 1, &sb, heb);
    char num[7][64];
    snprintf(num[0], 64, "%lld", (long long)st->step);
    snprintf(num[1], 64, "%lld", (long long)st->epoch);
    snprintf(num[2], 64, "%lld", (long long)st->batch);
    snprintf(num[3], 64, "%.17g", st->best_top1);
    snprintf(num[4], 64, "%zu", P);
    snprintf(num[5], 64, "%.17g", st->epoch_loss);
    snprintf(num[6], 64, "%lld", (long long)st->epoch_n);
    st_writer_meta(w, "format", CKPT_FORMAT);
    st_writer_meta(w, "model", m->cfg.name);
    st_writer_meta(w, "step", num[0]);
    st_writer_meta(w, "epoch", num[1]);
    st_writer_meta(w, "batch", num[2]);
    st_writer_meta(w, "best_top1", num[3]);
    st_writer_meta(w, "param_count", num[4]);
    st_writer_meta(w, "epoch_loss", num[5]);
    st_writer_meta(w, "epoch_n", num[6]);
    st_writer_meta(w, "recipe", rtext);
    char path[2048];
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, name);
    int rc = st_writer_write(w, path, err);
    st_writer_free(w);
    free(hp), free(hb), free(hm), free(hv), free(he), free(heb), free(rtext);
    if (rc != 0) return -1;
    return write_latest(dir, name, st, err);
}

static int meta_i64(const StFile *f, const char *key, int64_t *out, GkErr *err) {
    const char *v = st_meta(f, key);
    char *end;
    if (!v) return gk_fail(err, "%s: not a GKAVision checkpoint (no '%s' in its metadata)", f->path, key);
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || *end || end == v)
        return gk_fail(err, "%s: metadata '%s' = '%s' is not an integer", f->path, key, v);
    *out = x;
    return 0;
}

static int read_flat(const StFile *f, const char *name, float *dst, size_t n, Device dev, Ctx *ctx,
                     GkErr *err) {
    float *h = mallocCheck((n ? n : 1) * sizeof(float));
    int64_t shape = (int64_t)n;
    int rc = st_read_f32(f, name, h, 1, &shape, err);
    if (rc == 0) from_host(dst, h, n, dev, ctx);
    free(h);
    return rc;
}

int checkpoint_load(const char *path_or_dir, Model *m, float *adam_m, float *adam_v, float *ema_p,
                    float *ema_b, TrainState *st, Ctx *ctx, GkErr *err) {
    char path[2048];
    struct stat sb;
    if (stat(path_or_dir, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        char latest[2048], name[1024] = "";
        snprintf(latest, sizeof latest, "%s/latest", path_or_dir);
        FILE *fp = fopen(latest, "r");
        if (!fp)
            return gk_fail(err, "%s: no complete checkpoint in this run folder (no 'latest' file)",
                           path_or_dir);
        int got = fscanf(fp, "%1023s", name);
        fclose(fp);
        if (got != 1) return gk_fail(err, "%s: malformed (expected a checkpoint file name)", latest);
        snprintf(path, sizeof path, "%s/%s", path_or_dir, name);
    } else {
        snprintf(path, sizeof path, "%s", path_or_dir);
    }
    StFile f;
    if (st_open(&f, path, err) != 0) return -1;
    int rc = -1;
    const char *fmt = st_meta(&f, "format"), *model = st_meta(&f, "model");
    int64_t pc, step, epoch, batch;
    const size_t P = m->params.total, NB = m->buffers.total;
    if (!fmt || strcmp(fmt, CKPT_FORMAT)) {
        gk_fail(err, "%s: not a GKAVision training checkpoint (format '%s', expected '%s')", path,
                fmt ? fmt : "none", CKPT_FORMAT);
        goto out;
    }
    if (!model || strcmp(model, m->cfg.name)) {
        gk_fail(err, "%s: a checkpoint of model '%s', not '%s'", path, model ? model : "?", m->cfg.name);
        goto out;
    }
    if (meta_i64(&f, "param_count", &pc, err) || meta_i64(&f, "step", &step, err) ||
        meta_i64(&f, "epoch", &epoch, err) || meta_i64(&f, "batch", &batch, err))
        goto out;
    if ((size_t)pc != P) {
        gk_fail(err, "%s: %lld parameters, model %s has %zu (another configuration)", path, (long long)pc,
                m->cfg.name, P);
        goto out;
    }
    const StTensor *nbt = st_find(&f, "model.num_batches_tracked");
    if (!nbt || nbt->dtype != ST_I64 || nbt->ndim != 1 || nbt->shape[0] != m->n_bn) {
        gk_fail(err, "%s: tensor 'model.num_batches_tracked' missing or not int64 [%d]", path, m->n_bn);
        goto out;
    }
    if ((ema_p != NULL) != (st_find(&f, "ema.params") != NULL)) {
        gk_fail(err, "%s: %s EMA weights, but the recipe %s model-ema", path, ema_p ? "has no" : "has",
                ema_p ? "sets" : "does not set");
        goto out;
    }
    float *hp = mallocCheck((P ? P : 1) * sizeof(float)), *hb = mallocCheck((NB ? NB : 1) * sizeof(float));
    int64_t sp = (int64_t)P, sbn = (int64_t)NB;
    int ok = st_read_f32(&f, "model.params", hp, 1, &sp, err) == 0 &&
             st_read_f32(&f, "model.buffers", hb, 1, &sbn, err) == 0 &&
             read_flat(&f, "optim.adam_m", adam_m, P, m->dev, ctx, err) == 0 &&
             read_flat(&f, "optim.adam_v", adam_v, P, m->dev, ctx, err) == 0;
    if (ok && ema_p)
        ok = read_flat(&f, "ema.params", ema_p, P, m->dev, ctx, err) == 0 &&
             read_flat(&f, "ema.buffers", ema_b, NB, m->dev, ctx, err) == 0;
    if (ok) {
        model_set_params(m, hp, ctx);
        model_set_buffers(m, hb, ctx);
        if (m->n_bn) memcpy(m->nbt, st_tensor_data(&f, nbt), sizeof(int64_t) * (size_t)m->n_bn);
        const char *best = st_meta(&f, "best_top1");
        const char *el = st_meta(&f, "epoch_loss"), *en = st_meta(&f, "epoch_n");
        st->step = step, st->epoch = epoch, st->batch = batch, st->best_top1 = best ? atof(best) : -1.0;
        st->epoch_loss = el ? atof(el) : 0.0, st->epoch_n = en ? atoll(en) : 0;
        rc = 0;
    }
    free(hp), free(hb);
out:
    st_close(&f);
    return rc;
}

int export_best(const char *dir, Model *m, const float *ema_p, const float *ema_b, Ctx *ctx, GkErr *err) {
    char path[2048];
    snprintf(path, sizeof path, "%s/model_best.safetensors", dir);
    if (!ema_p) return model_save(m, path, 0, ctx, err);
    /* the EMA weights: swap them in, save, swap back */
    const size_t P = m->params.total, NB = m->buffers.total;
    float *hp = mallocCheck((P ? P : 1) * 4), *hb = mallocCheck((NB ? NB : 1) * 4);
    model_get_params(m, hp, ctx);
    model_get_buffers(m, hb, ctx);
    float *ep = to_host(ema_p, P, m->dev, ctx), *eb = to_host(ema_b, NB, m->dev, ctx);
    model_set_params(m, ep, ctx);
    model_set_buffers(m, eb, ctx);
    int rc = model_save(m, path, 0, ctx, err);
    model_set_params(m, hp, ctx);
    model_set_buffers(m, hb, ctx);
    free(hp), free(hb), free(ep), free(eb);
    return rc;
}

int checkpoint_load_weights(const char *path, Model *m, int ema, Ctx *ctx, GkErr *err) {
    StFile f;
    if (st_open(&f, path, err) != 0) return -1;
    const char *fmt = st_meta(&f, "format"), *model = st_meta(&f, "model");
    if (!fmt || strcmp(fmt, CKPT_FORMAT)) {
        st_close(&f);
        return 1;
    }
    int rc = -1;
    const size_t P = m->params.total, NB = m->buffers.total;
    int64_t sp = (int64_t)P, sb = (int64_t)NB;
    float *hp = mallocCheck((P ? P : 1) * 4), *hb = mallocCheck((NB ? NB : 1) * 4);
    if (!model || strcmp(model, m->cfg.name)) {
        gk_fail(err, "%s: a checkpoint of model '%s', not '%s'", path, model ? model : "?", m->cfg.name);
    } else if (ema && !st_find(&f, "ema.params")) {
        gk_fail(err, "%s: --ema asked for, but the checkpoint has no EMA weights", path);
    } else if (st_read_f32(&f, ema ? "ema.params" : "model.params", hp, 1, &sp, err) == 0 &&
               st_read_f32(&f, ema ? "ema.buffers" : "model.buffers", hb, 1, &sb, err) == 0) {
        model_set_params(m, hp, ctx);
        model_set_buffers(m, hb, ctx);
        rc = 0;
    }
    free(hp), free(hb);
    st_close(&f);
    return rc;
}
