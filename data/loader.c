/* loader.c: worker threads, the ring of batches, epochs, shards, bad-input replacement (see loader.h).
 *
 * Bookkeeping, all under one mutex: batches are numbered by `seq` from the resume point on. Workers
 * claim (seq, j) pairs in order (claim_seq, claim_j); batch seq lives in slot seq % prefetch and may be
 * started once the consumer has released batch seq - prefetch (released > seq - prefetch). The worker
 * that finishes a batch's last sample mixes it and queues its copy to the GPU, then marks it ready. The
 * heavy work (read, decode, transform, mix) runs outside the lock. */
#include "loader.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "transforms.h"
#ifdef GKA_HAVE_CUDA
#include "cuda/cuda_api.h"
#endif

/* ---- epoch order ------------------------------------------------------------------------------------ */
void epoch_permutation(int64_t *perm, int64_t n, uint64_t seed, uint64_t epoch) {
    for (int64_t i = 0; i < n; i++)
        perm[i] = i;
    Philox4 r = {{0, 0, 0, 0}};
    int64_t have = -1;
    for (int64_t i = n - 1; i > 0; i--) {
        /* one Philox block serves two steps: two words (53 bits) per uniform draw */
        if ((i >> 1) != have) {
            have = i >> 1;
            r = philox_draw(seed, RNG_PERMUTE, epoch, (uint32_t)have);
        }
        int k = (int)(i & 1) * 2;
        int64_t j = (int64_t)(philox_u01_f64(r.v[k], r.v[k + 1]) * (double)(i + 1));
        if (j > i) j = i; /* cannot happen with u < 1, kept against rounding */
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

int64_t shard_count(int64_t n, int drop_last, int world) {
    return drop_last ? n / world : (n + world - 1) / world;
}

void shard_indices(int64_t *out, uint8_t *valid, const int64_t *perm, int64_t n, int drop_last, int rank,
                   int world) {
    int64_t m = shard_count(n, drop_last, world);
    for (int64_t k = 0; k < m; k++) {
        int64_t p = rank + k * world;
        out[k] = perm[p % n];
        if (valid) valid[k] = p < n;
    }
}

/* ---- the project's transforms -------------------------------------------------------------------- */
/* A size x size x 1 image at the start of out becomes size x size x 3, in place (back to front). */
static void gray_to_rgb_inplace(uint8_t *out, size_t pixels) {
    for (size_t i = pixels; i-- > 0;) {
        uint8_t v = out[i];
        out[3 * i] = out[3 * i + 1] = out[3 * i + 2] = v;
    }
}

int loader_train_transform(uint8_t *out, const Sample *s, uint64_t seed, uint64_t epoch, uint64_t index,
                           void *user, GkErr *err) {
    const TrainAugConfig *cfg = user;
    if (s->encoded) return train_transform(out, s->data, s->len, cfg, seed, epoch, index, err);
    if (s->c != 1 && s->c != 3) return gk_fail(err, "raw image with %d channels, expected 1 or 3", s->c);
    Image im = {(uint8_t *)s->data, s->w, s->h, s->c};
    train_transform_pixels(out, &im, cfg, seed, epoch, index);
    if (s->c == 1) gray_to_rgb_inplace(out, (size_t)cfg->size * cfg->size);
    return 0;
}

int loader_eval_transform(uint8_t *out, const Sample *s, uint64_t seed, uint64_t epoch, uint64_t index,
                          void *user, GkErr *err) {
    (void)seed, (void)epoch, (void)index; /* evaluation is deterministic */
    const EvalAug *cfg = user;
    if (s->encoded)
        return eval_transform(out, s->data, s->len, cfg->size, cfg->crop_pct, cfg->max_pixels, err);
    if (s->c != 1 && s->c != 3) return gk_fail(err, "raw image with %d channels, expected 1 or 3", s->c);
    Image im = {(uint8_t *)s->data, s->w, s->h, s->c};
    eval_transform_pixels(out, &im, cfg->size, cfg->crop_pct);
    if (s->c == 1) gray_to_rgb_inplace(out, (size_t)cfg->size * cfg->size);
    return 0;
}

/* ---- the loader ------------------------------------------------------------------------------------- */
typedef struct Slot {
    int64_t seq;
    uint64_t epoch;
    int64_t index;
    int count, remaining, ready;
    uint8_t *images;
    int32_t *labels;
    int64_t *indices;
    uint8_t *valid;
    float *targets;
    MixDraw mix;
    uint8_t *d_images;
    int32_t *d_labels;
    float *d_targets;
} Slot;

struct Loader {
    LoaderConfig cfg;
    const Dataset *ds;
    int64_t per_rank, nb, total; /* total: batches from the resume point to the end (-1: unlimited) */
    uint64_t first_abs;          /* start_epoch * nb + start_batch */
    size_t sample_bytes;
    int R, K;
    Slot *slots;
    pthread_t *threads;
    int nthreads;
    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_ready;
    int64_t claim_seq, released, next_out;
    int claim_j, held;
    uint64_t list_epoch;
    int list_valid;
    int64_t *perm, *list;
    uint8_t *list_ok;
    int stop, failed;
    GkErr fail_err;
    uint8_t *bad_seen;
    int64_t bad_count, bad_cap;
    char **bad_msgs;
    double wait_s;
    int pinned;
#ifdef GKA_HAVE_CUDA
    BatchCopier *copier;
#endif
};

void loader_config_defaults(LoaderConfig *cfg) {
    memset(cfg, 0, sizeof *cfg);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    cfg->workers = n > 0 ? (int)n : 1;
    cfg->prefetch = 4;
    cfg->shuffle = 1;
    cfg->drop_last = 1;
    cfg->world = 1;
    cfg->out_c = 3;
}

int64_t loader_batches_per_epoch(const Loader *L) {
    return L->nb;
}
int64_t loader_samples_per_rank(const Loader *L) {
    return L->per_rank;
}

/* Seq -> (epoch, batch). Called with the lock held. */
static void seq_position(const Loader *L, int64_t seq, uint64_t *epoch, int64_t *index) {
    uint64_t abs = L->first_abs + (uint64_t)seq;
    *epoch = abs / (uint64_t)L->nb;
    *index = (int64_t)(abs % (uint64_t)L->nb);
}

/* Sets up slot for batch seq: its sample list from the epoch's shard. Called with the lock held; the
 * permutation is recomputed once per epoch, when the first batch of the epoch is claimed. */
static void slot_begin(Loader *L, Slot *sl, int64_t seq) {
    uint64_t epoch;
    int64_t index;
    seq_position(L, seq, &epoch, &index);
    if (!L->list_valid || L->list_epoch != epoch) {
        int64_t n = L->ds->count;
        if (L->cfg.shuffle)
            epoch_permutation(L->perm, n, L->cfg.seed, epoch);
        else
            for (int64_t i = 0; i < n; i++)
                L->perm[i] = i;
        shard_indices(L->list, L->list_ok, L->perm, n, L->cfg.drop_last, L->cfg.rank, L->cfg.world);
        L->list_epoch = epoch;
        L->list_valid = 1;
    }
    int64_t first = index * L->cfg.batch_size, left = L->per_rank - first;
    sl->seq = seq;
    sl->epoch = epoch;
    sl->index = index;
    sl->count = (int)(left < L->cfg.batch_size ? left : L->cfg.batch_size);
    sl->remaining = sl->count;
    sl->ready = 0;
    memcpy(sl->indices, L->list + first, (size_t)sl->count * sizeof(int64_t));
    memcpy(sl->valid, L->list_ok + first, (size_t)sl->count);
}

static void record_bad(Loader *L, int64_t i, const char *why) {
    pthread_mutex_lock(&L->mu);
    if (!(L->bad_seen[i >> 3] & (1u << (i & 7)))) {
        L->bad_seen[i >> 3] |= (uint8_t)(1u << (i & 7));
        char where[4200], line[5400];
        dataset_describe(L->ds, i, where, sizeof where);
        /* the message usually starts with the path already; say it once */
        if (!strncmp(why, where, strlen(where)))
            snprintf(line, sizeof line, "%s", why);
        else
            snprintf(line, sizeof line, "%s: %s", where, why);
        if (L->bad_count == L->bad_cap) {
            L->bad_cap = L->bad_cap * 2 + 16;
            L->bad_msgs = realloc(L->bad_msgs, (size_t)L->bad_cap * sizeof(char *));
            GK_CHECK(L->bad_msgs, "out of host memory");
        }
        size_t k = strlen(line) + 1;
        L->bad_msgs[L->bad_count] = mallocCheck(k);
        memcpy(L->bad_msgs[L->bad_count++], line, k);
    }
    pthread_mutex_unlock(&L->mu);
}

/* The a-th replacement candidate for dataset index idx in this epoch: first REPLACE_PROBES keyed random
 * samples, so that a run of bad files does not all fall on one neighbour, then every index after idx in
 * turn, so that a dataset with a single good sample still finds it. The probes use the permutation's
 * purpose with the top bit of `sub` set, a range the permutation (sub = position / 2 < 2^31) never uses. */
#define REPLACE_PROBES 16
static int64_t replacement(uint64_t seed, uint64_t epoch, int64_t idx, int64_t a, int64_t n) {
    if (a == 0) return idx;
    if (a <= REPLACE_PROBES) {
        Philox4 r = philox_draw(seed, RNG_PERMUTE, (uint64_t)idx,
                                0x80000000u | (uint32_t)((epoch << 5) | (uint64_t)a));
        return (int64_t)(philox_u01_f64(r.v[0], r.v[1]) * (double)n);
    }
    return (idx + a - REPLACE_PROBES) % n;
}

/* Sample j of the slot, replaced (replacement above) when it fails. Returns 0, or -1 when nothing in the
 * dataset works (err set) or the loader is stopping. */
static int make_sample(Loader *L, Slot *sl, int j, Sample *s, GkErr *err) {
    const Dataset *ds = L->ds;
    int64_t n = ds->count, idx = sl->indices[j];
    uint8_t *out = sl->images + (size_t)j * L->sample_bytes;
    GkErr why;
    for (int64_t a = 0; a < n + REPLACE_PROBES; a++) {
        int64_t cand = replacement(L->cfg.seed, sl->epoch, idx, a, n);
        if (dataset_get(ds, cand, s, &why) == 0 &&
            L->cfg.transform(out, s, L->cfg.seed, sl->epoch, (uint64_t)idx, L->cfg.transform_user, &why) ==
                0) {
            sl->labels[j] = ds->labels[cand];
            sl->indices[j] = cand;
            return 0;
        }
        record_bad(L, cand, why.msg);
        if (__atomic_load_n(&L->stop, __ATOMIC_ACQUIRE)) return gk_fail(err, "loader stopped");
    }
    return gk_fail(err, "%s: none of its %lld samples could be used (the last: %s)", ds->source, (long long)n,
                   why.msg);
}

/* Done by the worker that completes a batch: mixing, then the copy to the GPU. */
static void slot_finish(Loader *L, Slot *sl) {
    const LoaderConfig *c = &L->cfg;
    if (c->mixup) {
        uint64_t step = sl->epoch * (uint64_t)L->nb + (uint64_t)sl->index;
        batch_mixup_cpu(sl->images, sl->targets, &sl->mix, sl->labels, c->mixup, c->seed,
                        batch_key(step, c->rank), sl->count, c->out_h, c->out_w, c->out_c);
    } else {
        sl->mix = (MixDraw){MIX_NONE, 1.0, 0, 0, 0, 0};
    }
#ifdef GKA_HAVE_CUDA
    if (L->copier) {
        void *dst[3] = {sl->d_images, sl->d_labels, sl->d_targets};
        const void *src[3] = {sl->images, sl->labels, sl->targets};
        size_t bytes[3] = {(size_t)sl->count * L->sample_bytes, (size_t)sl->count * sizeof(int32_t),
                           c->mixup ? (size_t)sl->count * L->K * sizeof(float) : 0};
        batch_copier_upload(L->copier, (int)(sl - L->slots), dst, src, bytes, 3);
    }
#endif
}

/* Workers run at nice 5 (on Linux a thread's own nice value): when the loaders of several GPUs fill every
 * core, the training thread that queues the GPU's work still gets a core at once. Measured on 4 H200 with 16
 * workers each on 64 cores (bench/throughput_8gpu, no step waiting for data either way): GKAVision-T
 * 14,048 -> 14,382 images/s, MambaVision-T 16,052 -> 16,537. */
#define WORKER_NICE 5

static void *worker_main(void *arg) {
    Loader *L = arg;
    Sample s = SAMPLE_INIT;
    GkErr err;
#ifdef SYS_gettid
    (void)setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), WORKER_NICE); /* best effort */
#endif
    pthread_mutex_lock(&L->mu);
    for (;;) {
        while (!L->stop && !L->failed &&
               ((L->total >= 0 && L->claim_seq >= L->total) || L->claim_seq >= L->released + L->R))
            pthread_cond_wait(&L->cv_work, &L->mu);
        if (L->stop || L->failed) break;
        Slot *sl = &L->slots[L->claim_seq % L->R];
        if (L->claim_j == 0) slot_begin(L, sl, L->claim_seq);
        int j = L->claim_j++;
        if (L->claim_j == sl->count) L->claim_seq++, L->claim_j = 0;
        pthread_mutex_unlock(&L->mu);

        int rc = make_sample(L, sl, j, &s, &err);

        pthread_mutex_lock(&L->mu);
        if (rc != 0) {
            if (!L->stop && !L->failed) L->failed = 1, L->fail_err = err;
            pthread_cond_broadcast(&L->cv_ready);
            pthread_cond_broadcast(&L->cv_work);
            break;
        }
        if (--sl->remaining == 0) {
            pthread_mutex_unlock(&L->mu);
            slot_finish(L, sl);
            pthread_mutex_lock(&L->mu);
            sl->ready = 1;
            pthread_cond_broadcast(&L->cv_ready);
        }
    }
    pthread_mutex_unlock(&L->mu);
    sample_free(&s);
    return NULL;
}

static void *host_alloc(Loader *L, size_t bytes) {
#ifdef GKA_HAVE_CUDA
    if (L->pinned) return batch_host_alloc_pinned(bytes);
#endif
    (void)L;
    return mallocCheck(bytes);
}

static void host_free(Loader *L, void *p) {
#ifdef GKA_HAVE_CUDA
    if (L->pinned) {
        batch_host_free_pinned(p);
        return;
    }
#endif
    (void)L;
    free(p);
}

int loader_create(Loader **out, const LoaderConfig *cfg, GkErr *err) {
    *out = NULL;
    const Dataset *ds = cfg->dataset;
    if (!ds || ds->count <= 0) return gk_fail(err, "loader: no dataset, or an empty one");
    if (!cfg->transform) return gk_fail(err, "loader: no sample transform");
    if (cfg->batch_size < 1 || cfg->batch_size > BATCH_MAX_IMAGES)
        return gk_fail(err, "loader: batch size %d, expected 1 to %d", cfg->batch_size, BATCH_MAX_IMAGES);
    if (cfg->out_h < 1 || cfg->out_w < 1 || cfg->out_c < 1 || cfg->out_c > 4)
        return gk_fail(err, "loader: sample size %dx%dx%d is not a valid image size", cfg->out_h, cfg->out_w,
                       cfg->out_c);
    if (cfg->world < 1 || cfg->world > BATCH_MAX_RANKS || cfg->rank < 0 || cfg->rank >= cfg->world)
        return gk_fail(err, "loader: rank %d of world size %d", cfg->rank, cfg->world);
    if (cfg->mixup && cfg->mixup->num_classes != ds->num_classes)
        return gk_fail(err, "loader: mixup set up for %d classes, but %s has %d", cfg->mixup->num_classes,
                       ds->source, ds->num_classes);
    int64_t per_rank = shard_count(ds->count, cfg->drop_last, cfg->world);
    int64_t nb =
        cfg->drop_last ? per_rank / cfg->batch_size : (per_rank + cfg->batch_size - 1) / cfg->batch_size;
    if (nb < 1)
        return gk_fail(
            err, "loader: %s has %lld samples, too few for one batch of %d on each of %d rank%s (drop_last)",
            ds->source, (long long)ds->count, cfg->batch_size, cfg->world, cfg->world == 1 ? "" : "s");
    if (cfg->start_batch < 0 || cfg->start_batch >= nb)
        return gk_fail(err, "loader: resume batch %lld is outside the epoch's %lld batches",
                       (long long)cfg->start_batch, (long long)nb);
    if (cfg->end_epoch && cfg->start_epoch >= cfg->end_epoch)
        return gk_fail(err, "loader: resume epoch %llu is at or past the last epoch (%llu)",
                       (unsigned long long)cfg->start_epoch, (unsigned long long)cfg->end_epoch);
    int cuda = cfg->ctx && cfg->ctx->device == DEV_CUDA;
#ifndef GKA_HAVE_CUDA
    if (cuda) return gk_fail(err, "loader: a CUDA context was given to a build without CUDA");
#endif

    Loader *L = callocCheck(1, sizeof(Loader));
    L->cfg = *cfg;
    if (L->cfg.workers < 1) L->cfg.workers = 1;
    if (L->cfg.prefetch < 2) L->cfg.prefetch = 2;
    L->ds = ds;
    L->per_rank = per_rank;
    L->nb = nb;
    L->first_abs = cfg->start_epoch * (uint64_t)nb + (uint64_t)cfg->start_batch;
    L->total = cfg->end_epoch ? (int64_t)(cfg->end_epoch * (uint64_t)nb - L->first_abs) : -1;
    L->sample_bytes = (size_t)cfg->out_h * cfg->out_w * cfg->out_c;
    L->R = L->cfg.prefetch;
    L->K = ds->num_classes;
    L->pinned = cuda;
    L->perm = mallocCheck((size_t)ds->count * sizeof(int64_t));
    L->list = mallocCheck((size_t)per_rank * sizeof(int64_t));
    L->list_ok = mallocCheck((size_t)per_rank);
    L->bad_seen = callocCheck((size_t)(ds->count / 8 + 1), 1);
    int B = cfg->batch_size;
    L->slots = callocCheck((size_t)L->R, sizeof(Slot));
    for (int r = 0; r < L->R; r++) {
        Slot *sl = &L->slots[r];
        sl->seq = -1;
        sl->images = host_alloc(L, (size_t)B * L->sample_bytes);
        sl->labels = host_alloc(L, (size_t)B * sizeof(int32_t));
        if (cfg->mixup) sl->targets = host_alloc(L, (size_t)B * L->K * sizeof(float));
        sl->indices = mallocCheck((size_t)B * sizeof(int64_t));
        sl->valid = mallocCheck((size_t)B);
#ifdef GKA_HAVE_CUDA
        if (cuda) {
            sl->d_images = cuda_alloc((size_t)B * L->sample_bytes);
            sl->d_labels = cuda_alloc((size_t)B * sizeof(int32_t));
            if (cfg->mixup) sl->d_targets = cuda_alloc((size_t)B * L->K * sizeof(float));
        }
#endif
    }
#ifdef GKA_HAVE_CUDA
    if (cuda) L->copier = batch_copier_create(cfg->ctx->cuda, L->R);
#endif
    pthread_mutex_init(&L->mu, NULL);
    pthread_cond_init(&L->cv_work, NULL);
    pthread_cond_init(&L->cv_ready, NULL);
    L->threads = mallocCheck((size_t)L->cfg.workers * sizeof(pthread_t));
    for (int t = 0; t < L->cfg.workers; t++) {
        if (pthread_create(&L->threads[t], NULL, worker_main, L) != 0) {
            L->nthreads = t;
            loader_destroy(L);
            return gk_fail(err, "loader: cannot start worker thread %d; lower --workers", t);
        }
        L->nthreads = t + 1;
    }
    *out = L;
    return 0;
}

/* Gives the consumer's current batch back to the workers. */
static void release_held(Loader *L) {
    if (!L->held) return;
#ifdef GKA_HAVE_CUDA
    /* outside the lock: waits (rarely) for the slot's copy to have left the host buffer */
    if (L->copier) batch_copier_release(L->copier, (int)((L->next_out - 1) % L->R));
#endif
    pthread_mutex_lock(&L->mu);
    L->held = 0;
    L->released = L->next_out;
    pthread_cond_broadcast(&L->cv_work);
    pthread_mutex_unlock(&L->mu);
}

int loader_next(Loader *L, Batch *b, GkErr *err) {
    release_held(L);
    pthread_mutex_lock(&L->mu);
    if (L->total >= 0 && L->next_out >= L->total) {
        pthread_mutex_unlock(&L->mu);
        return 0;
    }
    Slot *sl = &L->slots[L->next_out % L->R];
    if (!(sl->seq == L->next_out && sl->ready) && !L->failed) {
        double t0 = gk_now();
        while (!(sl->seq == L->next_out && sl->ready) && !L->failed)
            pthread_cond_wait(&L->cv_ready, &L->mu);
        L->wait_s += gk_now() - t0;
    }
    if (L->failed) {
        if (err) *err = L->fail_err;
        pthread_mutex_unlock(&L->mu);
        return -1;
    }
    L->next_out++;
    L->held = 1;
    pthread_mutex_unlock(&L->mu);
    b->epoch = sl->epoch;
    b->index = sl->index;
    b->step = (int64_t)(sl->epoch * (uint64_t)L->nb) + sl->index;
    b->count = sl->count;
    b->images = sl->images;
    b->labels = sl->labels;
    b->indices = sl->indices;
    b->valid = sl->valid;
    b->targets = sl->targets;
    b->mix = sl->mix;
    b->d_images = sl->d_images;
    b->d_labels = sl->d_labels;
    b->d_targets = sl->d_targets;
#ifdef GKA_HAVE_CUDA
    if (L->copier) batch_copier_acquire(L->copier, (int)(sl - L->slots));
#endif
    return 1;
}

void loader_destroy(Loader *L) {
    if (!L) return;
    pthread_mutex_lock(&L->mu);
    __atomic_store_n(&L->stop, 1, __ATOMIC_RELEASE); /* also read, without the lock, by make_sample */
    pthread_cond_broadcast(&L->cv_work);
    pthread_cond_broadcast(&L->cv_ready);
    pthread_mutex_unlock(&L->mu);
    for (int t = 0; t < L->nthreads; t++)
        pthread_join(L->threads[t], NULL);
#ifdef GKA_HAVE_CUDA
    if (L->copier) {
        cuda_ctx_sync(L->cfg.ctx->cuda); /* the consumer's kernels may still read the device buffers */
        batch_copier_destroy(L->copier);
    }
#endif
    for (int r = 0; r < L->R; r++) {
        Slot *sl = &L->slots[r];
        host_free(L, sl->images);
        host_free(L, sl->labels);
        if (sl->targets) host_free(L, sl->targets);
        free(sl->indices);
        free(sl->valid);
#ifdef GKA_HAVE_CUDA
        cuda_release(sl->d_images);
        cuda_release(sl->d_labels);
        cuda_release(sl->d_targets);
#endif
    }
    for (int64_t i = 0; i < L->bad_count; i++)
        free(L->bad_msgs[i]);
    free(L->bad_msgs);
    free(L->bad_seen);
    free(L->slots);
    free(L->threads);
    free(L->perm);
    free(L->list);
    free(L->list_ok);
    pthread_mutex_destroy(&L->mu);
    pthread_cond_destroy(&L->cv_work);
    pthread_cond_destroy(&L->cv_ready);
    free(L);
}

double loader_wait_seconds(Loader *L) {
    pthread_mutex_lock(&L->mu);
    double w = L->wait_s;
    pthread_mutex_unlock(&L->mu);
    return w;
}

int64_t loader_bad_count(Loader *L) {
    pthread_mutex_lock(&L->mu);
    int64_t n = L->bad_count;
    pthread_mutex_unlock(&L->mu);
    return n;
}

const char *loader_bad_entry(Loader *L, int64_t i, char *buf, size_t len) {
    pthread_mutex_lock(&L->mu);
    if (i >= 0 && i < L->bad_count)
        snprintf(buf, len, "%s", L->bad_msgs[i]);
    else if (len)
        buf[0] = 0;
    pthread_mutex_unlock(&L->mu);
    return buf;
}
