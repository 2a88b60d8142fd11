/* test_loader: the loader's promises, on generated image folders and an in-memory IDX set.
 * - The same batches, byte for byte, for 1, 2 and 4 worker threads (the real train transform with
 *   RandAugment, and mixup on), and for the test's own simple transform.
 * - Epoch permutations differ and are uniform; rank shards are disjoint and cover the epoch (drop_last),
 *   or cover every sample exactly once counting only the valid ones (evaluation, padded).
 * - Resuming at (epoch, batch) delivers what the uninterrupted run delivered from there.
 * - A corpus of bad files (zero bytes, truncated JPEG, text named .JPEG, a 60000 x 60000 JPEG header, an
 *   unsupported format) is survived: exactly those are counted and named, each once, and replaced; a PNG
 *   named .JPEG works.
 * - Configuration errors, an all-bad dataset, early shutdown, the data-wait clock, raw grayscale pixels. */
#define _GNU_SOURCE /* nftw's FTW_DEPTH and FTW_PHYS */
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* PNG files for the tests; static, so it cannot clash with the library's stb, and its unused writers are
 * no concern of this program's warnings */
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

#include "core.h"
#include "dataset.h"
#include "image.h"
#include "loader.h"
#include "pack.h"
#include "philox.h"
#include "transforms.h"

#include "expect.h"

static char tmp_root[256];
/* snprintf into a path buffer; the paths here are short, so running out of room is a broken test */
#define PATHF(buf, ...) GK_CHECK(snprintf(buf, sizeof buf, __VA_ARGS__) < (int)sizeof buf, "path too long")

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void write_bytes(const char *path, const void *data, size_t len) {
    char dir[1024];
    PATHF(dir, "%s", path);
    for (char *p = dir + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(dir, 0755);
            *p = '/';
        }
    FILE *f = fopenCheck(path, "wb");
    if (len) fwriteCheck(data, 1, len, f);
    fcloseCheck(f);
}

static uint8_t *make_pixels(int w, int h, uint64_t key) {
    uint8_t *p = mallocCheck((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int k = 0; k < 3; k++) {
                uint32_t r = philox_draw(key, RNG_TEST, (uint64_t)(y * w + x), (uint32_t)k).v[0];
                int v = (int)((x * 255) / w + (y * 131) / h + (int)(key * 53) + k * 70) % 256 +
                        (int)(r % 32) - 16;
                p[((size_t)y * w + x) * 3 + k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
    return p;
}

static uint8_t *make_jpeg(int w, int h, uint64_t key, size_t *len) {
    uint8_t *pix = make_pixels(w, h, key), *jpg;
    GkErr err;
    GK_CHECK(jpeg_encode(&jpg, len, pix, w, h, 3, 90, &err) == 0, "%s", err.msg);
    free(pix);
    return jpg;
}

static void write_jpeg(const char *path, int w, int h, uint64_t key) {
    size_t len;
    uint8_t *jpg = make_jpeg(w, h, key, &len);
    write_bytes(path, jpg, len);
    free(jpg);
}

/* The byte offset of JPEG marker m (0xFF m), or -1. */
static long find_marker(const uint8_t *b, size_t len, uint8_t m) {
    for (size_t i = 2; i + 1 < len; i++)
        if (b[i] == 0xFF && b[i + 1] == m) return (long)i;
    return -1;
}

/* root/c<k>/img<i>.JPEG for k < classes, i < per_class, sizes 40..90 x 36..80. */
static void make_corpus(const char *root, int classes, int per_class, uint64_t salt) {
    char p[1024];
    for (int c = 0; c < classes; c++)
        for (int i = 0; i < per_class; i++) {
            PATHF(p, "%s/c%d/img%02d.JPEG", root, c, i);
            uint64_t key = salt * 1000 + (uint64_t)(c * per_class + i);
            write_jpeg(p, 40 + (int)(key * 7 % 51), 36 + (int)(key * 13 % 45), key);
        }
}

/* Everything a run delivers, concatenated: images, labels, indices, valid flags, targets. */
typedef struct {
    uint8_t *buf;
    size_t len, cap;
    int batches;
    int64_t first_index[64]; /* the dataset index of each batch's first sample */
} Run;

static void run_add(Run *r, const void *p, size_t n) {
    if (r->len + n > r->cap) {
        r->cap = (r->len + n) * 2;
        r->buf = realloc(r->buf, r->cap);
        GK_CHECK(r->buf, "out of memory");
    }
    memcpy(r->buf + r->len, p, n);
    r->len += n;
}

/* Runs cfg to its end (or `max_batches`), recording every batch. Returns the loader's bad count. */
static int64_t run_loader(const LoaderConfig *cfg, Run *r, int max_batches, Loader **keep) {
    Loader *L;
    GkErr err;
    memset(r, 0, sizeof *r);
    if (loader_create(&L, cfg, &err) != 0) {
        printf("  loader_create: %s\n", err.msg);
        failures++;
        return -1;
    }
    Batch b;
    int rc;
    size_t img = (size_t)cfg->out_h * cfg->out_w * cfg->out_c;
    while ((max_batches < 0 || r->batches < max_batches) && (rc = loader_next(L, &b, &err)) == 1) {
        if (r->batches < 64) r->first_index[r->batches] = b.indices[0];
        r->batches++;
        int64_t head[3] = {(int64_t)b.epoch, b.index, b.count};
        run_add(r, head, sizeof head);
        run_add(r, b.images, b.count * img);
        run_add(r, b.labels, b.count * sizeof(int32_t));
        run_add(r, b.indices, b.count * sizeof(int64_t));
        run_add(r, b.valid, (size_t)b.count);
        if (b.targets) run_add(r, b.targets, (size_t)b.count * cfg->dataset->num_classes * sizeof(float));
        for (int i = 0; i < b.count; i++)
            EXPECT(b.labels[i] == cfg->dataset->labels[b.indices[i]]);
    }
    int64_t bad = loader_bad_count(L);
    if (keep)
        *keep = L;
    else
        loader_destroy(L);
    return bad;
}

static int runs_equal(const Run *a, const Run *b) {
    return a->batches == b->batches && a->len == b->len && !memcmp(a->buf, b->buf, a->len);
}

static void base_config(LoaderConfig *cfg, const Dataset *ds, TrainAugConfig *aug) {
    loader_config_defaults(cfg);
    cfg->dataset = ds;
    cfg->transform = loader_train_transform;
    cfg->transform_user = aug;
    cfg->out_h = cfg->out_w = aug->size;
    cfg->out_c = 3;
    cfg->batch_size = 5;
    cfg->seed = 1234;
    cfg->end_epoch = 2;
}

static void test_determinism(const Dataset *ds) {
    TrainAugConfig aug;
    train_aug_defaults(&aug);
    aug.size = 32;
    MixupConfig mix;
    mixup_defaults(&mix, ds->num_classes);
    LoaderConfig cfg;
    base_config(&cfg, ds, &aug);
    cfg.mixup = &mix;
    Run r1, r2, r4;
    cfg.workers = 1;
    run_loader(&cfg, &r1, -1, NULL);
    cfg.workers = 2;
    cfg.prefetch = 2;
    run_loader(&cfg, &r2, -1, NULL);
    cfg.workers = 4;
    cfg.prefetch = 6;
    run_loader(&cfg, &r4, -1, NULL);
    int64_t nb = (ds->count / 5);
    printf("  determinism: %d batches over 2 epochs; 1 vs 2 vs 4 workers %s\n", r1.batches,
           runs_equal(&r1, &r2) && runs_equal(&r1, &r4) ? "byte-identical" : "DIFFER");
    EXPECT(r1.batches == 2 * nb);
    EXPECT(runs_equal(&r1, &r2));
    EXPECT(runs_equal(&r1, &r4));

    /* resume at (epoch 1, batch 3) = the tail of the uninterrupted run */
    cfg.workers = 3;
    cfg.start_epoch = 1;
    cfg.start_batch = 3;
    Run rr;
    run_loader(&cfg, &rr, -1, NULL);
    size_t per_batch = r1.len / (size_t)r1.batches; /* every batch is full with drop_last */
    size_t skip = (size_t)(nb + 3) * per_batch;
    EXPECT(rr.batches == (int)(nb - 3));
    EXPECT(rr.len == r1.len - skip && !memcmp(rr.buf, r1.buf + skip, rr.len));
    printf("  resume at (epoch 1, batch 3): %d batches, %s the uninterrupted run's\n", rr.batches,
           rr.len == r1.len - skip && !memcmp(rr.buf, r1.buf + skip, rr.len) ? "equal to" : "DIFFERENT from");
    /* a different seed changes the order and the pixels */
    cfg.start_epoch = 0, cfg.start_batch = 0, cfg.seed = 4321;
    Run rs;
    run_loader(&cfg, &rs, -1, NULL);
    EXPECT(rs.len == r1.len && memcmp(rs.buf, r1.buf, r1.len) != 0);
    free(r1.buf), free(r2.buf), free(r4.buf), free(rr.buf), free(rs.buf);

    /* the data-wait clock runs and stays finite */
    cfg.seed = 1234;
    cfg.end_epoch = 1;
    cfg.workers = 1;
    Loader *L;
    Run rw;
    run_loader(&cfg, &rw, -1, &L);
    double w = loader_wait_seconds(L);
    EXPECT(w >= 0.0 && w < 60.0 && isfinite(w));
    loader_destroy(L);
    free(rw.buf);
}

static void test_epochs_and_shards(const Dataset *ds) {
    int64_t n = ds->count;
    int64_t *p0 = mallocCheck((size_t)n * sizeof(int64_t)), *p1 = mallocCheck((size_t)n * sizeof(int64_t));
    epoch_permutation(p0, n, 1234, 0);
    epoch_permutation(p1, n, 1234, 1);
    uint8_t *seen = callocCheck((size_t)n, 1);
    int is_perm = 1, differ = 0;
    for (int64_t i = 0; i < n; i++) {
        is_perm &= p0[i] >= 0 && p0[i] < n && !seen[p0[i]];
        seen[p0[i]] = 1;
        differ += p0[i] != p1[i];
    }
    EXPECT(is_perm);
    EXPECT(differ > n / 2);
    /* the same key gives the same permutation */
    epoch_permutation(p1, n, 1234, 0);
    EXPECT(!memcmp(p0, p1, (size_t)n * sizeof(int64_t)));
    /* Fisher-Yates is uniform: position 0 takes each of 4 values about equally often */
    int hist[4] = {0};
    int64_t q[4];
    for (uint64_t e = 0; e < 8000; e++) {
        epoch_permutation(q, 4, 99, e);
        hist[q[0]]++;
    }
    for (int k = 0; k < 4; k++)
        EXPECT(abs(hist[k] - 2000) < 150);

    /* shards: 3 ranks; drop_last keeps 3 floor(n / 3), disjoint, the first 3 floor(n/3) of the permuted list
     */
    for (int drop = 0; drop < 2; drop++) {
        int W = 3;
        int64_t m = shard_count(n, drop, W);
        EXPECT(m == (drop ? n / 3 : (n + 2) / 3));
        memset(seen, 0, (size_t)n);
        int64_t valid_total = 0, dup = 0;
        for (int r = 0; r < W; r++) {
            int64_t *out = mallocCheck((size_t)m * sizeof(int64_t));
            uint8_t *ok = mallocCheck((size_t)m);
            shard_indices(out, ok, p0, n, drop, r, W);
            for (int64_t k = 0; k < m; k++) {
                if (!ok[k]) continue;
                valid_total++;
                dup += seen[out[k]];
                seen[out[k]] = 1;
            }
            free(out), free(ok);
        }
        EXPECT(dup == 0);
        EXPECT(valid_total == (drop ? 3 * (n / 3) : n));
    }

    /* through the loader: 3 training ranks are disjoint; 3 evaluation ranks cover every sample once */
    TrainAugConfig aug;
    train_aug_defaults(&aug);
    aug.size = 16;
    aug.ra_ops = 0;
    for (int eval = 0; eval < 2; eval++) {
        memset(seen, 0, (size_t)n);
        int64_t dup = 0, valid = 0, delivered = 0;
        EvalAug ev = {16, 0.875f, IMAGE_MAX_PIXELS_DEFAULT};
        for (int r = 0; r < 3; r++) {
            LoaderConfig cfg;
            base_config(&cfg, ds, &aug);
            cfg.world = 3, cfg.rank = r, cfg.end_epoch = 1, cfg.workers = 2, cfg.batch_size = 4;
            if (eval) {
                cfg.shuffle = 0, cfg.drop_last = 0;
                cfg.transform = loader_eval_transform, cfg.transform_user = &ev;
            }
            Loader *L;
            GkErr err;
            GK_CHECK(loader_create(&L, &cfg, &err) == 0, "%s", err.msg);
            Batch b;
            while (loader_next(L, &b, &err) == 1)
                for (int i = 0; i < b.count; i++) {
                    delivered++;
                    if (!b.valid[i]) continue;
                    valid++;
                    dup += seen[b.indices[i]];
                    seen[b.indices[i]] = 1;
                }
            EXPECT(loader_batches_per_epoch(L) ==
                   (eval ? (shard_count(n, 0, 3) + 3) / 4 : shard_count(n, 1, 3) / 4));
            loader_destroy(L);
        }
        EXPECT(dup == 0);
        if (eval)
            EXPECT(valid == n && delivered == 3 * shard_count(n, 0, 3));
        else
            EXPECT(valid == delivered && delivered == 3 * 4 * (shard_count(n, 1, 3) / 4));
        printf("  %s, 3 ranks: %lld samples delivered, %lld valid, no sample twice\n",
               eval ? "evaluation (padded)" : "training (drop_last)", (long long)delivered, (long long)valid);
    }
    free(p0), free(p1), free(seen);
}

/* The bad corpus: class a holds 8 good JPEGs, the 5 bad files and a PNG named .JPEG; class b 8 good. */
static const char *const BAD_FILES[5] = {"a/1_zero.JPEG", "a/2_truncated.JPEG", "a/3_text.JPEG",
                                         "a/4_huge.JPEG", "a/5_tiff.JPEG"};

static void make_bad_corpus(const char *root) {
    char p[1024];
    for (int c = 0; c < 2; c++)
        for (int i = 0; i < 8; i++) {
            PATHF(p, "%s/%c/good%d.JPEG", root, 'a' + c, i);
            write_jpeg(p, 48 + 4 * i, 40, (uint64_t)(500 + 10 * c + i));
        }
    size_t len;
    uint8_t *jpg = make_jpeg(64, 48, 77, &len);
    PATHF(p, "%s/%s", root, BAD_FILES[0]);
    write_bytes(p, "", 0);
    long sos = find_marker(jpg, len, 0xDA);
    GK_CHECK(sos > 0, "no SOS marker in the generated JPEG");
    PATHF(p, "%s/%s", root, BAD_FILES[1]);
    write_bytes(p, jpg, (size_t)sos + 40); /* the headers and 26 bytes of scan data */
    PATHF(p, "%s/%s", root, BAD_FILES[2]);
    const char *text = "<html><body>404 Not Found</body></html>\n";
    write_bytes(p, text, strlen(text));
    long sof = find_marker(jpg, len, 0xC0);
    GK_CHECK(sof > 0, "no SOF0 marker in the generated JPEG");
    /* SOF0: FF C0, length (2), precision (1), height (2), width (2): claim 60000 x 60000 */
    jpg[sof + 5] = 0xEA, jpg[sof + 6] = 0x60, jpg[sof + 7] = 0xEA, jpg[sof + 8] = 0x60;
    PATHF(p, "%s/%s", root, BAD_FILES[3]);
    write_bytes(p, jpg, len);
    free(jpg);
    static const uint8_t tiff[16] = {'I', 'I', 42, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    PATHF(p, "%s/%s", root, BAD_FILES[4]);
    write_bytes(p, tiff, sizeof tiff);
    /* a PNG under a .JPEG name, as in ImageNet's train/n02105855: must decode */
    uint8_t *pix = make_pixels(50, 40, 9);
    int plen = 0;
    unsigned char *png = stbi_write_png_to_mem(pix, 50 * 3, 50, 40, 3, &plen);
    PATHF(p, "%s/a/6_png.JPEG", root);
    write_bytes(p, png, (size_t)plen);
    free(png), free(pix);
}

static void test_bad_input(const char *root) {
    Dataset ds;
    GkErr err;
    GK_CHECK(dataset_open(&ds, root, &err) == 0, "%s", err.msg);
    EXPECT(ds.count == 22);
    int64_t png_index = -1;
    uint8_t is_bad[64] = {0};
    for (int64_t i = 0; i < ds.count; i++) {
        const char *name = ds.names + ds.name_off[i];
        if (strstr(name, "6_png")) png_index = i;
        for (int k = 0; k < 5; k++)
            is_bad[i] |= !strcmp(name, BAD_FILES[k]);
    }
    TrainAugConfig aug;
    train_aug_defaults(&aug);
    aug.size = 24;
    LoaderConfig cfg;
    base_config(&cfg, &ds, &aug);
    cfg.batch_size = 4;
    cfg.end_epoch = 3;
    cfg.drop_last = 0; /* every sample is visited every epoch, so every bad one is met */
    Run r1, r3;
    Loader *L;
    cfg.workers = 1;
    int64_t bad1 = run_loader(&cfg, &r1, -1, NULL);
    cfg.workers = 3;
    int64_t bad3 = run_loader(&cfg, &r3, -1, &L);
    EXPECT(bad1 == 5 && bad3 == 5);
    EXPECT(runs_equal(&r1, &r3));
    /* each bad file named once, with its path; the PNG never */
    int named[5] = {0};
    for (int64_t i = 0; i < loader_bad_count(L); i++) {
        char line[6000];
        loader_bad_entry(L, i, line, sizeof line);
        printf("    bad: %s\n", line);
        EXPECT(strstr(line, root) != NULL && !strstr(line, "6_png"));
        for (int k = 0; k < 5; k++)
            named[k] += strstr(line, BAD_FILES[k]) != NULL;
    }
    for (int k = 0; k < 5; k++)
        EXPECT(named[k] == 1);
    loader_destroy(L);
    /* no bad index was ever delivered; the PNG was */
    int png_seen = 0, bad_seen = 0;
    size_t img = (size_t)24 * 24 * 3;
    for (size_t pos = 0; pos < r1.len;) {
        int64_t head[3];
        memcpy(head, r1.buf + pos, sizeof head);
        int count = (int)head[2];
        pos += sizeof head + count * img + count * sizeof(int32_t);
        for (int i = 0; i < count; i++) {
            int64_t idx;
            memcpy(&idx, r1.buf + pos + i * sizeof(int64_t), sizeof idx);
            bad_seen += is_bad[idx];
            png_seen += idx == png_index;
        }
        pos += count * sizeof(int64_t) + count;
    }
    printf("  bad input: %lld bad files counted (1 and 3 workers agree), none delivered; the PNG named .JPEG "
           "delivered %d times in 3 epochs\n",
           (long long)bad1, png_seen);
    EXPECT(bad_seen == 0);
    EXPECT(png_seen >= 1);
    free(r1.buf), free(r3.buf);

    /* `check` agrees */
    CheckReport cr;
    dataset_check(&ds, 2, aug.max_pixels, &cr);
    EXPECT(cr.bad_all == 5 && cr.good_all == 17);
    check_report_free(&cr);
    dataset_close(&ds);
}

/* The test's own transform: decode, keyed crop and flip, nearest-neighbour resize to 16 x 16. */
static int simple_transform(uint8_t *out, const Sample *s, uint64_t seed, uint64_t epoch, uint64_t index,
                            void *user, GkErr *err) {
    (void)user;
    Image im;
    if (image_decode(&im, NULL, NULL, s->data, s->len, NULL, 0, 0, 1 << 24, err) != 0) return -1;
    Philox4 r = philox_draw(seed, RNG_AUGMENT, index, (uint32_t)epoch);
    int cw = im.w / 2 + (int)(r.v[0] % (uint32_t)(im.w / 2)),
        ch = im.h / 2 + (int)(r.v[1] % (uint32_t)(im.h / 2));
    int ox = (int)(r.v[2] % (uint32_t)(im.w - cw + 1)), oy = (int)(r.v[3] % (uint32_t)(im.h - ch + 1));
    for (int y = 0; y < 16; y++)
        for (int x = 0; x < 16; x++) {
            int sx = ox + (x * cw) / 16, sy = oy + (y * ch) / 16;
            if (epoch & 1) sx = ox + cw - 1 - (x * cw) / 16;
            memcpy(out + (y * 16 + x) * 3, im.pix + ((size_t)sy * im.w + sx) * 3, 3);
        }
    image_free(&im);
    return 0;
}

static int always_fail(uint8_t *out, const Sample *s, uint64_t seed, uint64_t epoch, uint64_t index,
                       void *user, GkErr *err) {
    (void)out, (void)s, (void)seed, (void)epoch, (void)index, (void)user;
    return gk_fail(err, "refused by the test");
}

static void test_simple_transform_and_errors(const Dataset *ds, const char *bad_root) {
    LoaderConfig cfg;
    loader_config_defaults(&cfg);
    cfg.dataset = ds;
    cfg.transform = simple_transform;
    cfg.out_h = cfg.out_w = 16;
    cfg.batch_size = 7;
    cfg.end_epoch = 2;
    cfg.seed = 5;
    Run a, b;
    cfg.workers = 1;
    run_loader(&cfg, &a, -1, NULL);
    cfg.workers = 4;
    run_loader(&cfg, &b, -1, NULL);
    EXPECT(a.batches == 2 * (int)(ds->count / 7) && runs_equal(&a, &b));
    /* consecutive epochs start differently */
    EXPECT(a.first_index[0] != a.first_index[ds->count / 7] ||
           a.first_index[1] != a.first_index[ds->count / 7 + 1]);
    free(a.buf), free(b.buf);

    /* the bad corpus through the simple transform: the same five */
    Dataset bad;
    GkErr err;
    GK_CHECK(dataset_open(&bad, bad_root, &err) == 0, "%s", err.msg);
    cfg.dataset = &bad;
    cfg.batch_size = 3;
    cfg.drop_last = 0;
    int64_t nbad = run_loader(&cfg, &a, -1, NULL);
    EXPECT(nbad == 5);
    if (nbad != 5) printf("  simple transform on the bad corpus: %lld bad\n", (long long)nbad);
    free(a.buf);

    /* every sample fails: loader_next reports it */
    cfg.transform = always_fail;
    Loader *L;
    GK_CHECK(loader_create(&L, &cfg, &err) == 0, "%s", err.msg);
    Batch batch;
    EXPECT(loader_next(L, &batch, &err) == -1 && strstr(err.msg, "none of its 22 samples") &&
           strstr(err.msg, "refused by the test"));
    EXPECT(loader_bad_count(L) == 22);
    loader_destroy(L);
    dataset_close(&bad);

    /* configuration errors */
    cfg.drop_last = 1;
    cfg.transform = simple_transform;
    cfg.dataset = ds;
    cfg.batch_size = (int)ds->count + 1;
    EXPECT(loader_create(&L, &cfg, &err) == -1 && strstr(err.msg, "too few for one batch"));
    cfg.batch_size = 4;
    cfg.start_batch = 1000;
    EXPECT(loader_create(&L, &cfg, &err) == -1 && strstr(err.msg, "resume batch 1000"));
    cfg.start_batch = 0;
    cfg.rank = 3, cfg.world = 3;
    EXPECT(loader_create(&L, &cfg, &err) == -1 && strstr(err.msg, "rank 3 of world size 3"));
    cfg.rank = 0, cfg.world = 1;
    MixupConfig mix;
    mixup_defaults(&mix, 1000);
    cfg.mixup = &mix;
    EXPECT(loader_create(&L, &cfg, &err) == -1 && strstr(err.msg, "1000 classes"));
    /* stopping early, with batches in flight, is clean */
    cfg.mixup = NULL;
    cfg.end_epoch = 0;
    GK_CHECK(loader_create(&L, &cfg, &err) == 0, "%s", err.msg);
    EXPECT(loader_next(L, &batch, &err) == 1);
    loader_destroy(L);
}

/* Raw grayscale pixels (the Fashion-MNIST path) through the project's transforms: RGB out, the three
 * channels equal, deterministic across thread counts. The dataset is built in memory. */
static void test_raw_pixels(void) {
    Dataset ds;
    memset(&ds, 0, sizeof ds);
    ds.kind = DATASET_IDX;
    ds.source = mallocCheck(16);
    strcpy(ds.source, "memory");
    ds.count = 40, ds.w = 28, ds.h = 28, ds.c = 1, ds.num_classes = 2;
    ds.pixels = mallocCheck(40 * 28 * 28);
    for (size_t k = 0; k < 40 * 28 * 28; k++)
        ds.pixels[k] = (uint8_t)philox_draw(3, RNG_TEST, k, 0).v[0];
    ds.labels = mallocCheck(40 * sizeof(int32_t));
    for (int i = 0; i < 40; i++)
        ds.labels[i] = i % 2;
    ds.class_names = mallocCheck(2 * sizeof(char *));
    for (int c = 0; c < 2; c++) {
        ds.class_names[c] = mallocCheck(8);
        snprintf(ds.class_names[c], 8, "k%d", c);
    }
    TrainAugConfig aug;
    train_aug_defaults(&aug);
    aug.size = 20;
    EvalAug ev = {20, 0.875f, 0};
    for (int eval = 0; eval < 2; eval++) {
        LoaderConfig cfg;
        base_config(&cfg, &ds, &aug);
        cfg.end_epoch = 1;
        if (eval) cfg.transform = loader_eval_transform, cfg.transform_user = &ev, cfg.shuffle = 0;
        Run a, b;
        cfg.workers = 1;
        run_loader(&cfg, &a, -1, NULL);
        cfg.workers = 3;
        run_loader(&cfg, &b, -1, NULL);
        EXPECT(a.batches == 8 && runs_equal(&a, &b));
        /* the first image of the first batch: gray replicated to RGB, not all one value */
        const uint8_t *img = a.buf + 3 * sizeof(int64_t);
        int gray = 1, flat = 1;
        for (int k = 0; k < 20 * 20; k++) {
            gray &= img[3 * k] == img[3 * k + 1] && img[3 * k] == img[3 * k + 2];
            flat &= img[3 * k] == img[0];
        }
        EXPECT(gray && !flat);
        free(a.buf), free(b.buf);
    }
    printf(
        "  raw 28x28x1 pixels: train and eval transforms give RGB with equal channels, the same for 1 and 3 "
        "workers\n");
    dataset_close(&ds);
}

int main(void) {
    PATHF(tmp_root, "/tmp/gkav_test_loader_XXXXXX");
    GK_CHECK(mkdtemp(tmp_root), "cannot create a temporary folder under /tmp");
    double t0 = gk_now();
    char good[1024], bad[1024];
    PATHF(good, "%s/good", tmp_root);
    PATHF(bad, "%s/bad", tmp_root);
    make_corpus(good, 4, 12, 1);
    make_bad_corpus(bad);
    Dataset ds;
    GkErr err;
    GK_CHECK(dataset_open(&ds, good, &err) == 0, "%s", err.msg);
    test_determinism(&ds);
    test_epochs_and_shards(&ds);
    test_bad_input(bad);
    test_simple_transform_and_errors(&ds, bad);
    test_raw_pixels();
    dataset_close(&ds);
    nftw(tmp_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    printf("loader tests: %d failed (%.1f s)\n", failures, gk_now() - t0);
    return failures ? 1 : 0;
}
