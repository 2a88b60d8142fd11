/* synth.c: ImageNet-like JPEG folders for benchmarks and throughput runs (synth.h). */
#define _POSIX_C_SOURCE 200809L
#include "synth.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pack.h"

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

uint8_t *synth_image(int w, int h, uint64_t seed) {
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
    int classes, width, count, next, failed;
    uint64_t seed;
    pthread_mutex_t mu;
    int64_t bytes, pixels;
    GkErr err;
} GenJob;

static void *gen_worker(void *arg) {
    GenJob *g = arg;
    for (;;) {
        pthread_mutex_lock(&g->mu);
        int i = g->failed ? g->count : g->next++;
        pthread_mutex_unlock(&g->mu);
        if (i >= g->count) break;
        uint64_t key = g->seed + (uint64_t)i, s = key * 7919 + 17;
        int w, h;
        image_size(&s, &w, &h);
        uint8_t *pix = synth_image(w, h, key), *jpg = NULL;
        size_t len = 0;
        GkErr err;
        char path[4200];
        snprintf(path, sizeof path, "%s/class_%0*d/img_%05d.JPEG", g->dir, g->width, i % g->classes, i);
        int rc = jpeg_encode(&jpg, &len, pix, w, h, 3, 90, &err);
        FILE *f = rc == 0 ? fopen(path, "wb") : NULL;
        if (rc == 0 && !f) gk_fail(&err, "cannot create %s: %s", path, strerror(errno)), rc = -1;
        if (f && (fwrite(jpg, 1, len, f) != len || fclose(f) != 0))
            gk_fail(&err, "cannot write %s: %s", path, strerror(errno)), rc = -1;
        free(jpg);
        free(pix);
        pthread_mutex_lock(&g->mu);
        if (rc != 0 && !g->failed) g->failed = 1, g->err = err;
        g->bytes += (int64_t)len;
        g->pixels += (int64_t)w * h;
        pthread_mutex_unlock(&g->mu);
    }
    return NULL;
}

static int make_dir(const char *path, GkErr *err) {
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return gk_fail(err, "cannot create %s: %s", path, strerror(errno));
    return 0;
}

int synth_folder(const char *dir, int classes, int count, uint64_t seed, int threads, SynthStats *stats,
                 GkErr *err) {
    if (classes < 1 || count < classes)
        return gk_fail(err, "synthetic folder %s: %d images cannot fill %d classes", dir, count, classes);
    char marker[4200];
    if (strlen(dir) > 4000) return gk_fail(err, "synthetic folder: path too long: %.80s...", dir);
    snprintf(marker, sizeof marker, "%s/.complete-%d-%d-%llu", dir, classes, count, (unsigned long long)seed);
    if (stats) memset(stats, 0, sizeof *stats);
    if (access(marker, F_OK) == 0) {
        if (stats) stats->reused = 1;
        return 0;
    }
    int width = 2;
    for (int c = classes - 1; c >= 100; c /= 10)
        width++;
    if (make_dir(dir, err) != 0) return -1;
    for (int c = 0; c < classes; c++) {
        char sub[4200];
        if (snprintf(sub, sizeof sub, "%s/class_%0*d", dir, width, c) >= (int)sizeof sub)
            return gk_fail(err, "synthetic folder: path too long under %s", dir);
        if (make_dir(sub, err) != 0) return -1;
    }
    GenJob g = {dir, classes, width, count, 0, 0, seed, PTHREAD_MUTEX_INITIALIZER, 0, 0, {{0}}};
    if (threads < 1) threads = 1;
    pthread_t *th = mallocCheck((size_t)threads * sizeof(pthread_t));
    for (int t = 0; t < threads; t++)
        pthread_create(&th[t], NULL, gen_worker, &g);
    for (int t = 0; t < threads; t++)
        pthread_join(th[t], NULL);
    free(th);
    if (g.failed) {
        if (err) *err = g.err;
        return -1;
    }
    if (stats) stats->bytes = g.bytes, stats->pixels = g.pixels;
    FILE *f = fopen(marker, "w");
    if (!f) return gk_fail(err, "cannot create %s: %s", marker, strerror(errno));
    fclose(f);
    return 0;
}
