/* bench_loader: images/s of the GKAVision loader on a folder of ImageNet-like JPEGs, for decode +
 * RandomResizedCrop(224) + flip, and the same with RandAugment rand-m9-mstd0.5-inc1, at 1, 2 and all
 * cores. bench/loader/run.sh runs it beside torchvision_loader.py on the same folder.
 *
 * The folder is generated once (and reused): ~2,000 JPEGs, quality 90, sizes drawn from ImageNet's common
 * shapes (mean about 500 x 375), with content that costs what photographs cost to decode: smooth
 * gradients, soft shapes, texture and noise, so the entropy-coded data is not trivially compressible.
 *
 * Timing: from the first batch to the end of the third epoch, as torchvision_loader.py does (with
 * persistent workers), so thread or process start-up is not counted on either side. Output: a table, or
 * CSV lines (--csv)
 * "gkav,<plain|randaugment>,<threads>,<images/s>". */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataset.h"
#include "loader.h"
#include "pack.h"
#include "transforms.h"

#define CLASSES 10
#define DETAIL 50.0 /* amplitude of the fine texture */

/* xorshift64*: the pixel noise needs speed, not Philox's guarantees */
static uint64_t rng_next(uint64_t *s) {
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 2685821657736338717ull;
}
static double rng_u01(uint64_t *s) {
    return (double)(rng_next(s) >> 11) * (1.0 / 9007199254740992.0);
}

static void image_size(uint64_t *s, int *w, int *h) {
    /* ImageNet's frequent shapes, weighted; mean about 500 x 385 */
    static const int sizes[][3] = {{500, 375, 40}, {375, 500, 15}, {500, 333, 15},
                                   {333, 500, 5},  {500, 500, 5},  {640, 480, 5},
                                   {400, 300, 5},  {800, 600, 5},  {300, 225, 5}};
    int r = (int)(rng_u01(s) * 100), acc = 0;
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        acc += sizes[k][2];
        if (r < acc) {
            *w = sizes[k][0], *h = sizes[k][1];
            return;
        }
    }
    *w = 500, *h = 375;
}

static uint8_t clamp_u8(double v) {
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5);
}

static uint8_t *synth_image(int w, int h, uint64_t seed) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    uint8_t *p = mallocCheck((size_t)w * h * 3);
    double c0[3], c1[3], ang = rng_u01(&s) * 6.283, fx = 2 + rng_u01(&s) * 10, fy = 2 + rng_u01(&s) * 10;
    for (int k = 0; k < 3; k++)
        c0[k] = rng_u01(&s) * 255, c1[k] = rng_u01(&s) * 255;
    double ca = cos(ang), sa = sin(ang);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double t = ((x - w / 2.0) * ca + (y - h / 2.0) * sa) / (w + h) + 0.5;
            double tex = 18 * sin(fx * x / w * 6.283 + 3 * sin(fy * y / h * 6.283));
            for (int k = 0; k < 3; k++)
                p[((size_t)y * w + x) * 3 + k] = clamp_u8(c0[k] + (c1[k] - c0[k]) * t + tex);
        }
    int shapes = 3 + (int)(rng_u01(&s) * 6);
    for (int n = 0; n < shapes; n++) {
        double cx = rng_u01(&s) * w, cy = rng_u01(&s) * h, rx = 10 + rng_u01(&s) * w / 4,
               ry = 10 + rng_u01(&s) * h / 4;
        double col[3];
        for (int k = 0; k < 3; k++)
            col[k] = rng_u01(&s) * 255;
        int ellipse = rng_u01(&s) < 0.6;
        int x0 = (int)fmax(0, cx - rx - 2), x1 = (int)fmin(w, cx + rx + 2), y0 = (int)fmax(0, cy - ry - 2),
            y1 = (int)fmin(h, cy + ry + 2);
        for (int y = y0; y < y1; y++)
            for (int x = x0; x < x1; x++) {
                double dx = (x - cx) / rx, dy = (y - cy) / ry;
                double d = ellipse ? sqrt(dx * dx + dy * dy) : fmax(fabs(dx), fabs(dy));
                double a = d < 0.9 ? 1.0 : d < 1.0 ? (1.0 - d) * 10 : 0.0; /* soft edge */
                if (a <= 0) continue;
                double shade = 0.85 + 0.15 * (dy + 1) / 2;
                for (int k = 0; k < 3; k++) {
                    uint8_t *q = &p[((size_t)y * w + x) * 3 + k];
                    *q = clamp_u8(*q * (1 - a) + col[k] * shade * a);
                }
            }
    }
    /* Detail at a few pixels' scale (foliage, fur, gravel): a random grid every 3 pixels, interpolated;
     * then sensor-like noise. Together they give JPEG sizes near ImageNet's (~110 KB per image). */
    int gw = w / 3 + 2, gh = h / 3 + 2;
    float *grid = mallocCheck((size_t)gw * gh * sizeof(float));
    for (int i = 0; i < gw * gh; i++)
        grid[i] = (float)(rng_u01(&s) * 2 - 1);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int gx = x / 3, gy = y / 3;
            float fx3 = (x % 3) / 3.0f, fy3 = (y % 3) / 3.0f;
            float g = (grid[gy * gw + gx] * (1 - fx3) + grid[gy * gw + gx + 1] * fx3) * (1 - fy3) +
                      (grid[(gy + 1) * gw + gx] * (1 - fx3) + grid[(gy + 1) * gw + gx + 1] * fx3) * fy3;
            for (int k = 0; k < 3; k++) {
                double n = (rng_u01(&s) + rng_u01(&s) - 1.0) * 36;
                uint8_t *q = &p[((size_t)y * w + x) * 3 + k];
                *q = clamp_u8(*q + DETAIL * g + n);
            }
        }
    free(grid);
    return p;
}

typedef struct {
    const char *dir;
    int count, next;
    pthread_mutex_t mu;
    int64_t bytes, pixels;
} GenJob;

static void *gen_worker(void *arg) {
    GenJob *g = arg;
    for (;;) {
        pthread_mutex_lock(&g->mu);
        int i = g->next++;
        pthread_mutex_unlock(&g->mu);
        if (i >= g->count) break;
        uint64_t s = (uint64_t)i * 7919 + 17;
        int w, h;
        image_size(&s, &w, &h);
        uint8_t *pix = synth_image(w, h, (uint64_t)i), *jpg;
        size_t len;
        GkErr err;
        if (jpeg_encode(&jpg, &len, pix, w, h, 3, 90, &err) != 0) gk_die("%s", err.msg);
        char path[4200];
        snprintf(path, sizeof path, "%s/class_%02d/img_%05d.JPEG", g->dir, i % CLASSES, i);
        FILE *f = fopenCheck(path, "wb");
        fwriteCheck(jpg, 1, len, f);
        fcloseCheck(f);
        free(jpg);
        free(pix);
        pthread_mutex_lock(&g->mu);
        g->bytes += (int64_t)len;
        g->pixels += (int64_t)w * h;
        pthread_mutex_unlock(&g->mu);
    }
    return NULL;
}

/* Makes the folder unless a complete one (its marker file says how many images) is already there. */
static void ensure_corpus(const char *dir, int count, int threads) {
    char marker[4200];
    snprintf(marker, sizeof marker, "%s/.complete-%d", dir, count);
    if (access(marker, F_OK) == 0) {
        printf("reusing %s (%d JPEGs)\n", dir, count);
        return;
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) gk_die("cannot create %s: %s", dir, strerror(errno));
    for (int c = 0; c < CLASSES; c++) {
        char sub[4200];
        snprintf(sub, sizeof sub, "%s/class_%02d", dir, c);
        if (mkdir(sub, 0755) != 0 && errno != EEXIST) gk_die("cannot create %s: %s", sub, strerror(errno));
    }
    printf("generating %d JPEGs in %s ...\n", count, dir);
    double t0 = gk_now();
    GenJob g = {dir, count, 0, PTHREAD_MUTEX_INITIALIZER, 0, 0};
    pthread_t *th = mallocCheck((size_t)threads * sizeof(pthread_t));
    for (int t = 0; t < threads; t++)
        pthread_create(&th[t], NULL, gen_worker, &g);
    for (int t = 0; t < threads; t++)
        pthread_join(th[t], NULL);
    free(th);
    printf("  %.1f s; mean %.0f KB and %.0f kilopixels per image\n", gk_now() - t0, g.bytes / 1024.0 / count,
           g.pixels / 1000.0 / count);
    fclose(fopenCheck(marker, "w"));
}

/* `epochs` epochs through the loader; images/s from the first batch to the last. */
static double run_epochs(const Dataset *ds, TrainAugConfig *aug, int threads, int batch, int epochs) {
    LoaderConfig cfg;
    loader_config_defaults(&cfg);
    cfg.dataset = ds;
    cfg.transform = loader_train_transform;
    cfg.transform_user = aug;
    cfg.out_h = cfg.out_w = aug->size;
    cfg.out_c = 3;
    cfg.batch_size = batch;
    cfg.workers = threads;
    cfg.prefetch = 2 + threads; /* as torch's prefetch_factor 2 per worker, roughly */
    cfg.seed = 0;
    cfg.end_epoch = (uint64_t)epochs;
    Loader *L;
    GkErr err;
    if (loader_create(&L, &cfg, &err) != 0) gk_die("%s", err.msg);
    Batch b;
    double t_first = 0;
    int64_t after_first = 0, n = 0;
    int rc;
    while ((rc = loader_next(L, &b, &err)) == 1) {
        if (n++ == 0)
            t_first = gk_now();
        else
            after_first += b.count;
    }
    if (rc < 0) gk_die("%s", err.msg);
    double dt = gk_now() - t_first;
    if (loader_bad_count(L))
        gk_die("the benchmark folder has %lld bad images", (long long)loader_bad_count(L));
    loader_destroy(L);
    return after_first / dt;
}

int main(int argc, char **argv) {
    const char *dir = "/tmp/gkav_bench_jpegs";
    int count = 2000, csv = 0, batch = 64, epochs = 3;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--count") && i + 1 < argc)
            count = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--epochs") && i + 1 < argc)
            epochs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--csv"))
            csv = 1;
        else {
            fprintf(stderr, "usage: bench_loader [--dir DIR] [--count N] [--batch B] [--epochs E] [--csv]\n");
            return 2;
        }
    }
    if (count < batch * 2 || epochs < 1)
        gk_die("--count %d is too small for two batches of %d", count, batch);
    ensure_corpus(dir, count, cores > 0 ? (int)cores : 1);
    Dataset ds;
    GkErr err;
    if (dataset_open_folder(&ds, dir, &err) != 0) gk_die("%s", err.msg);

    int threads[3] = {1, 2, (int)cores}, nt = cores > 2 ? 3 : cores == 2 ? 2 : 1;
    const char *names[2] = {"plain", "randaugment"};
    if (!csv)
        printf("%d JPEGs, batch %d, output 224x224 uint8; images/s from the first batch to the end of epoch "
               "%d\n",
               count, batch, epochs);
    for (int mode = 0; mode < 2; mode++) {
        TrainAugConfig aug;
        train_aug_defaults(&aug);
        if (mode == 0) aug.ra_ops = 0; /* decode + RandomResizedCrop + flip only */
        aug.color_jitter = 0;
        for (int t = 0; t < nt; t++) {
            double ips = run_epochs(&ds, &aug, threads[t], batch, epochs);
            if (csv)
                printf("gkav,%s,%d,%.1f\n", names[mode], threads[t], ips);
            else
                printf("  %-12s %3d thread%s %8.1f images/s  (%.1f per thread)\n", names[mode], threads[t],
                       threads[t] == 1 ? " " : "s", ips, ips / threads[t]);
            fflush(stdout);
        }
    }
    dataset_close(&ds);
    return 0;
}
