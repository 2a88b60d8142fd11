/* test_batch: the batch steps of spec 8.6.
 * CPU (default): Beta sampling, mixup/cutmix draws and their arithmetic on hand-computed examples
 * (rounding half to even, the clipped-box lam, mirror pairs, soft targets), and the normalise + erase
 * CPU twin against an independent float64 reference.
 * --gpu (label gpu; exits 77 without a CUDA device): the CUDA kernel against its CPU twin (bf16 rounding
 * only), and the pinned ring with its asynchronous copy against the host-only loader, byte for byte. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "context.h"
#include "core.h"
#include "dataset.h"
#include "loader.h"
#include "philox.h"
#ifdef GKA_HAVE_CUDA
#include "cuda/cuda_api.h"
#endif

#include "expect.h"

static void test_beta(void) {
    /* mean a / (a + b); variance a b / ((a + b)^2 (a + b + 1)) */
    const double cases[2][2] = {{0.8, 0.8}, {1.0, 1.0}};
    for (int c = 0; c < 2; c++) {
        double a = cases[c][0], b = cases[c][1], s = 0, s2 = 0;
        int n = 40000, in_range = 1;
        for (int i = 0; i < n; i++) {
            double x = philox_beta(7, RNG_TEST, (uint64_t)i, a, b);
            in_range &= x >= 0.0 && x <= 1.0;
            s += x, s2 += x * x;
        }
        double mean = s / n, var = s2 / n - mean * mean;
        double want_var = a * b / ((a + b) * (a + b) * (a + b + 1));
        printf("  Beta(%.1f, %.1f): mean %.4f (0.5), variance %.4f (%.4f)\n", a, b, mean, var, want_var);
        EXPECT(in_range);
        EXPECT(fabs(mean - 0.5) < 0.006);
        EXPECT(fabs(var - want_var) < 0.004);
    }
    /* a pure function of its key */
    EXPECT(philox_beta(3, RNG_MIXUP, 99, 0.8, 0.8) == philox_beta(3, RNG_MIXUP, 99, 0.8, 0.8));
    EXPECT(philox_beta(3, RNG_MIXUP, 99, 0.8, 0.8) != philox_beta(3, RNG_MIXUP, 100, 0.8, 0.8));
}

static void test_draws(void) {
    MixupConfig cfg;
    mixup_defaults(&cfg, 1000);
    int n = 4000, cut = 0, mix = 0, box_ok = 1;
    for (int i = 0; i < n; i++) {
        MixDraw d = mixup_draw(&cfg, 11, batch_key((uint64_t)i, 0), 224, 224);
        if (d.mode == MIX_CUTMIX) {
            cut++;
            box_ok &= d.y0 >= 0 && d.y0 <= d.y1 && d.y1 <= 224 && d.x0 >= 0 && d.x0 <= d.x1 && d.x1 <= 224;
            box_ok &= fabs(d.lam - (1.0 - (double)(d.y1 - d.y0) * (d.x1 - d.x0) / (224.0 * 224.0))) < 1e-12;
        } else if (d.mode == MIX_MIXUP) {
            mix++;
            box_ok &= d.lam >= 0 && d.lam <= 1;
        }
    }
    printf("  mixup_draw: %d cutmix, %d mixup of %d batches (switch prob 0.5)\n", cut, mix, n);
    EXPECT(cut + mix == n); /* prob 1.0: every batch is mixed */
    EXPECT(abs(cut - n / 2) < 150);
    EXPECT(box_ok);
    /* ranks draw differently at the same step; the same (step, rank) draws the same */
    MixDraw a = mixup_draw(&cfg, 11, batch_key(5, 0), 224, 224),
            b = mixup_draw(&cfg, 11, batch_key(5, 1), 224, 224);
    MixDraw c = mixup_draw(&cfg, 11, batch_key(5, 1), 224, 224);
    EXPECT(a.lam != b.lam && b.lam == c.lam && b.mode == c.mode);
    MixupConfig off = cfg;
    off.prob = 0.0f;
    EXPECT(mixup_draw(&off, 11, 3, 224, 224).mode == MIX_NONE &&
           mixup_draw(&off, 11, 3, 224, 224).lam == 1.0);
    MixupConfig only_mix = cfg;
    only_mix.cutmix_alpha = 0.0f;
    int all_mixup = 1;
    for (int i = 0; i < 200; i++)
        all_mixup &= mixup_draw(&only_mix, 1, (uint64_t)i, 224, 224).mode == MIX_MIXUP;
    EXPECT(all_mixup);
}

static void test_cutmix_box(void) {
    /* lam 0.75: sqrt(0.25) = 0.5, cut 112, half 56. Centre (10, 200): rows [-46, 66) -> [0, 66), columns
     * [144, 256) -> [144, 224). Area 66 * 80 = 5280 of 50176: lam = 1 - 5280 / 50176 = 0.894770408... */
    MixDraw d = cutmix_box(0.75, 10, 200, 224, 224);
    EXPECT(d.mode == MIX_CUTMIX && d.y0 == 0 && d.y1 == 66 && d.x0 == 144 && d.x1 == 224);
    EXPECT(fabs(d.lam - 0.89477040816326531) < 1e-15);
    /* unclipped: lam 0.5 on 10 x 10: cut int(10 * 0.7071) = 7, half 3 -> [2, 8) x [2, 8), area 36: 0.64 */
    d = cutmix_box(0.5, 5, 5, 10, 10);
    EXPECT(d.y0 == 2 && d.y1 == 8 && d.x0 == 2 && d.x1 == 8 && fabs(d.lam - 0.64) < 1e-15);
    /* odd cut, non-square image: H 7, W 12, lam 0.19: sqrt(0.81) = 0.9, cut_h int(6.3) = 6, cut_w int(10.8)
     * = 10 -> rows [6 - 3, 6 + 3) = [3, 6+3) clipped [3, 7), columns [0 - 5, 0 + 5) -> [0, 5): area 4 * 5 */
    d = cutmix_box(0.19, 6, 0, 7, 12);
    EXPECT(d.y0 == 3 && d.y1 == 7 && d.x0 == 0 && d.x1 == 5 && fabs(d.lam - (1.0 - 20.0 / 84.0)) < 1e-15);
}

static void test_mix_arithmetic(void) {
    /* mixup of a pair, in float32 and rounded half to even: 10 * 0.3 + 200 * 0.7 = 143,
     * 200 * 0.3 + 10 * 0.7 = 67; with lam 0.5, 2 and 3 give 2.5 -> 2 (not 3) both ways */
    uint8_t im[4] = {10, 2, 200, 3};
    MixDraw d = {MIX_MIXUP, 0.3, 0, 0, 0, 0};
    batch_mix_cpu(im, &d, 2, 1, 1, 2);
    EXPECT(im[0] == 143 && im[2] == 67);
    uint8_t half[4] = {2, 4, 3, 5};
    d.lam = 0.5;
    batch_mix_cpu(half, &d, 2, 1, 1, 2);
    EXPECT(half[0] == 2 && half[2] == 2); /* 2.5 -> 2 */
    EXPECT(half[1] == 4 && half[3] == 4); /* 4.5 -> 4 */
    /* an odd batch: the middle image is its own partner and stays */
    uint8_t odd[5] = {0, 50, 77, 150, 250};
    d.lam = 0.25;
    batch_mix_cpu(odd, &d, 5, 1, 1, 1);
    /* 0 * .25 + 250 * .75 = 187.5 -> 188; 250 * .25 + 0 = 62.5 -> 62; 50 * .25 + 150 * .75 = 125 */
    EXPECT(odd[0] == 188 && odd[4] == 62 && odd[1] == 125 && odd[3] == 75 && odd[2] == 77);
    /* lam 1: untouched (timm skips it) */
    uint8_t same[2] = {1, 9};
    d.lam = 1.0;
    batch_mix_cpu(same, &d, 2, 1, 1, 1);
    EXPECT(same[0] == 1 && same[1] == 9);

    /* cutmix: four 8 x 8 images of 10, 20, 30, 40; box rows [2, 5) columns [1, 7): image i's box holds
     * image (3 - i)'s pixels, the rest its own */
    uint8_t cm[4 * 64];
    for (int i = 0; i < 4; i++)
        memset(cm + 64 * i, 10 * (i + 1), 64);
    MixDraw box = {MIX_CUTMIX, 1.0 - 18.0 / 64.0, 2, 5, 1, 7};
    batch_mix_cpu(cm, &box, 4, 8, 8, 1);
    int ok = 1, inside = 0;
    for (int i = 0; i < 4; i++)
        for (int y = 0; y < 8; y++)
            for (int x = 0; x < 8; x++) {
                int in = y >= 2 && y < 5 && x >= 1 && x < 7;
                inside += in;
                ok &= cm[64 * i + 8 * y + x] == (in ? 10 * (4 - i) : 10 * (i + 1));
            }
    EXPECT(ok && inside == 4 * 18);

    /* soft targets: K 5, smoothing 0.1 -> off 0.02, on 0.92; lam 0.7; labels 0 1 2 3 pair 0<->3, 1<->2 */
    int32_t labels[4] = {0, 1, 2, 3};
    float t[4 * 5];
    batch_targets_cpu(t, labels, 0.7, 0.1f, 4, 5);
    EXPECT(fabsf(t[0] - (0.7f * 0.92f + 0.3f * 0.02f)) < 1e-7f); /* own class: 0.65 */
    EXPECT(fabsf(t[3] - (0.7f * 0.02f + 0.3f * 0.92f)) < 1e-7f); /* the mirror's: 0.29 */
    EXPECT(fabsf(t[1] - 0.02f) < 1e-7f && fabsf(t[4] - 0.02f) < 1e-7f);
    EXPECT(fabsf(t[5 * 1 + 1] - 0.65f) < 1e-6f && fabsf(t[5 * 1 + 2] - 0.29f) < 1e-6f);
    EXPECT(fabsf(t[5 * 3 + 3] - 0.65f) < 1e-6f && fabsf(t[5 * 3 + 0] - 0.29f) < 1e-6f);
    for (int i = 0; i < 4; i++) {
        double s = 0;
        for (int k = 0; k < 5; k++)
            s += t[5 * i + k];
        EXPECT(fabs(s - 1.0) < 1e-6);
    }
    /* a pair with the same label: on everywhere it matters */
    int32_t same_lab[2] = {4, 4};
    batch_targets_cpu(t, same_lab, 0.3, 0.1f, 2, 5);
    EXPECT(fabsf(t[4] - 0.92f) < 1e-6f && fabsf(t[0] - 0.02f) < 1e-7f);

    /* the whole step on a real-sized batch: targets sum to 1, the mixed images are what the draw says */
    MixupConfig cfg;
    mixup_defaults(&cfg, 10);
    int B = 6, H = 16, W = 16, C = 3;
    size_t per = (size_t)H * W * C;
    uint8_t *x = mallocCheck(B * per), *orig = mallocCheck(B * per);
    int32_t lab[6] = {0, 1, 2, 3, 4, 5};
    float *tg = mallocCheck((size_t)B * 10 * sizeof(float));
    for (uint64_t step = 0; step < 40; step++) {
        for (size_t k = 0; k < B * per; k++)
            x[k] = orig[k] = (uint8_t)philox_draw(step, RNG_TEST, k, 0).v[0];
        MixDraw md;
        batch_mixup_cpu(x, tg, &md, lab, &cfg, 5, batch_key(step, 0), B, H, W, C);
        for (int i = 0; i < B; i++) {
            double s = 0;
            for (int k = 0; k < 10; k++)
                s += tg[10 * i + k];
            EXPECT(fabs(s - 1.0) < 1e-6);
            EXPECT(fabsf(tg[10 * i + i] - (float)(md.lam * 0.91 + (1 - md.lam) * 0.01)) < 1e-6f);
        }
        uint8_t *a = orig, *b = orig + (B - 1) * per; /* image 0 against its mirror */
        int good = 1;
        for (int y = 0; y < H; y++)
            for (int xx = 0; xx < W; xx++)
                for (int c = 0; c < C; c++) {
                    size_t k = ((size_t)y * W + xx) * C + c;
                    uint8_t want;
                    if (md.mode == MIX_MIXUP)
                        want =
                            (uint8_t)rintf((float)a[k] * (float)md.lam + (float)b[k] * (float)(1 - md.lam));
                    else
                        want = (y >= md.y0 && y < md.y1 && xx >= md.x0 && xx < md.x1) ? b[k] : a[k];
                    good &= x[k] == want;
                }
        EXPECT(good);
    }
    free(x), free(orig), free(tg);
}

/* ---- normalise + erase against float64 -------------------------------------------------------------- */
/* timm's RandomErasing written again from the spec, in float64, on the same Philox words. */
static void ref_box(int *top, int *left, int *h, int *w, uint64_t seed, uint64_t key, double p, int H,
                    int W) {
    *top = *left = *h = *w = 0;
    if ((double)(philox_draw(seed, RNG_ERASE, key, 0).v[0] >> 8) / 16777216.0 >= p) return;
    for (uint32_t attempt = 0; attempt < 10; attempt++) {
        Philox4 r = philox_draw(seed, RNG_ERASE, key, 1 + attempt);
        double u[4];
        for (int k = 0; k < 4; k++)
            u[k] = r.v[k] / 4294967296.0;
        double area = (0.02 + (1.0 / 3 - 0.02) * u[0]) * H * W;
        double aspect = exp(log(0.3) + (log(1 / 0.3) - log(0.3)) * u[1]);
        int hh = (int)nearbyint(sqrt(area * aspect)), ww = (int)nearbyint(sqrt(area / aspect));
        if (hh < H && ww < W) {
            *h = hh, *w = ww;
            *top = (int)floor(u[2] * (H - hh + 1));
            *left = (int)floor(u[3] * (W - ww + 1));
            return;
        }
    }
}

static double ref_normal(uint64_t seed, uint64_t key, uint64_t e) {
    Philox4 r = philox_draw(seed, RNG_ERASE, key, 16u + (uint32_t)(e / 4));
    int k = (int)(e % 4), pair = k / 2;
    double u1 = (r.v[2 * pair] + 1.0) / 4294967296.0, u2 = r.v[2 * pair + 1] / 4294967296.0;
    double rad = sqrt(-2 * log(u1)), th = 2 * M_PI * u2;
    return k % 2 ? rad * sin(th) : rad * cos(th);
}

static void test_normalize_erase_cpu(void) {
    NormErase cfg;
    norm_erase_defaults(&cfg, 0.25f);
    const int shapes[3][4] = {{16, 32, 24, 3}, {9, 27, 27, 3}, {12, 20, 20, 1}};
    double worst_norm = 0, worst_fill = 0;
    int boxes = 0, box_mismatch = 0;
    for (int s = 0; s < 3; s++) {
        int B = shapes[s][0], H = shapes[s][1], W = shapes[s][2], C = shapes[s][3];
        size_t per = (size_t)H * W * C;
        uint8_t *in = mallocCheck(B * per);
        float *out = mallocCheck(B * per * sizeof(float));
        for (size_t k = 0; k < B * per; k++)
            in[k] = (uint8_t)philox_draw(s, RNG_TEST, k, 1).v[0];
        uint64_t key = batch_key(12345, 3);
        cfg.reprob = s == 0 ? 1.0f : 0.5f;
        batch_normalize_erase_cpu(out, in, &cfg, 42, key, B, H, W, C);
        for (int n = 0; n < B; n++) {
            int top, left, h, w;
            ref_box(&top, &left, &h, &w, 42, key + (uint64_t)n, cfg.reprob, H, W);
            EraseBox eb = erase_box(42, key + (uint64_t)n, cfg.reprob, H, W);
            box_mismatch += eb.top != top || eb.left != left || eb.h != h || eb.w != w;
            boxes += h > 0;
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++)
                    for (int c = 0; c < C; c++) {
                        size_t e = ((size_t)y * W + x) * C + c;
                        double got = out[n * per + e];
                        if (h && y >= top && y < top + h && x >= left && x < left + w) {
                            worst_fill = fmax(worst_fill, fabs(got - ref_normal(42, key + (uint64_t)n, e)));
                        } else {
                            double want = (in[n * per + e] - 255.0 * cfg.mean[c]) / (255.0 * cfg.std[c]);
                            worst_norm = fmax(worst_norm, fabs(got - want));
                        }
                    }
        }
        free(in), free(out);
    }
    printf("  normalise+erase CPU vs float64: normalised max err %.2e, N(0,1) fill max err %.2e, %d boxes\n",
           worst_norm, worst_fill, boxes);
    EXPECT(box_mismatch == 0);
    EXPECT(boxes >= 16 + 3); /* all 16 of the p = 1 batch, and some of the others */
    EXPECT(worst_norm < 2e-6);
    EXPECT(worst_fill < 1e-6);

    /* the box statistics of timm's rule at 224 x 224 */
    int n = 20000, erased = 0, in_bounds = 1;
    double area_min = 1, area_max = 0;
    for (int i = 0; i < n; i++) {
        EraseBox b = erase_box(9, (uint64_t)i, 0.25f, 224, 224);
        if (!b.h) continue;
        erased++;
        in_bounds &=
            b.top >= 0 && b.left >= 0 && b.top + b.h <= 224 && b.left + b.w <= 224 && b.h < 224 && b.w < 224;
        double a = (double)b.h * b.w / (224.0 * 224.0);
        area_min = fmin(area_min, a), area_max = fmax(area_max, a);
    }
    printf("  erase_box: %.3f of images erased (p 0.25), box area %.3f .. %.3f of the image\n",
           (double)erased / n, area_min, area_max);
    EXPECT(fabs((double)erased / n - 0.25) < 0.012);
    EXPECT(in_bounds && area_min > 0.015 && area_max < 0.35);
    EXPECT(erase_box(9, 1, 0.0f, 224, 224).h == 0);
    /* the fill is N(0, 1) */
    double s = 0, s2 = 0;
    int m = 200000;
    for (int i = 0; i < m; i += 4) {
        float z[4];
        erase_normals4(z, 1, 2, (uint64_t)i / 4);
        for (int k = 0; k < 4; k++)
            s += z[k], s2 += (double)z[k] * z[k];
    }
    EXPECT(fabs(s / m) < 0.01 && fabs(s2 / m - 1.0) < 0.02);
}

/* ---- GPU ------------------------------------------------------------------------------------------- */
#ifdef GKA_HAVE_CUDA
static void test_kernel_vs_cpu(Ctx *gpu) {
    NormErase cfg;
    norm_erase_defaults(&cfg, 0.25f);
    const int shapes[4][4] = {{32, 224, 224, 3}, {7, 27, 27, 3}, {9, 28, 28, 1}, {5, 10, 10, 4}};
    for (int s = 0; s < 4; s++) {
        int B = shapes[s][0], H = shapes[s][1], W = shapes[s][2], C = shapes[s][3];
        size_t per = (size_t)H * W * C, total = (size_t)B * per;
        uint8_t *in = mallocCheck(total);
        for (size_t k = 0; k < total; k++)
            in[k] = (uint8_t)philox_draw(100 + s, RNG_TEST, k, 0).v[0];
        float *ref = mallocCheck(total * sizeof(float));
        bf16_t *got = mallocCheck(total * sizeof(bf16_t));
        cfg.reprob = s == 1 ? 1.0f : 0.25f;
        uint64_t key = batch_key(777, 1);
        batch_normalize_erase_cpu(ref, in, &cfg, 31, key, B, H, W, C);
        uint8_t *d_in = cuda_alloc(total);
        bf16_t *d_out = cuda_alloc(total * sizeof(bf16_t));
        cuda_copy(d_in, in, total);
        cuda_memset(d_out, 0xff, total * sizeof(bf16_t)); /* NaNs: an unwritten element fails */
        batch_normalize_erase_cuda(d_out, d_in, &cfg, 31, key, B, H, W, C, gpu->cuda);
        ctx_sync(gpu);
        cuda_copy(got, d_out, total * sizeof(bf16_t));
        double worst = 0, worst_ulps = 0;
        size_t differ = 0;
        for (size_t k = 0; k < total; k++) {
            float g = bf16_to_f32(got[k]), r = ref[k];
            double d = fabs((double)g - r);
            if (!(d == d)) d = INFINITY;
            worst = fmax(worst, d);
            /* one bf16 ulp at r: 2^(exponent - 7) */
            double ulp = ldexp(1.0, (int)floor(log2(fmax(fabs(r), 1e-30))) - 7);
            worst_ulps = fmax(worst_ulps, d / ulp);
            differ += got[k] != f32_to_bf16(r);
        }
        printf(
            "  normalise+erase CUDA vs CPU [%d, %d, %d, %d]: max |diff| %.3g (%.2f bf16 ulp), %zu of %zu not "
            "the CPU value rounded\n",
            B, H, W, C, worst, worst_ulps, differ, total);
        EXPECT(worst_ulps <= 0.5 + 1e-9); /* rounding to nearest: at most half an ulp */
        EXPECT(differ == 0);
        cuda_release(d_in), cuda_release(d_out);
        free(in), free(ref), free(got);
    }
}

/* How long the kernel takes on a training batch (information, not a check). */
static void time_kernel(Ctx *gpu) {
    NormErase cfg;
    norm_erase_defaults(&cfg, 0.25f);
    const int B = 256, H = 224, W = 224, C = 3;
    size_t total = (size_t)B * H * W * C;
    uint8_t *d_in = cuda_alloc(total);
    bf16_t *d_out = cuda_alloc(total * sizeof(bf16_t));
    cuda_memset(d_in, 0x55, total);
    batch_normalize_erase_cuda(d_out, d_in, &cfg, 1, batch_key(0, 0), B, H, W, C, gpu->cuda);
    ctx_sync(gpu);
    int reps = 20;
    double t0 = gk_now();
    for (int r = 0; r < reps; r++)
        batch_normalize_erase_cuda(d_out, d_in, &cfg, 1, batch_key((uint64_t)r, 0), B, H, W, C, gpu->cuda);
    ctx_sync(gpu);
    double dt = (gk_now() - t0) / reps;
    printf(
        "  normalise+erase kernel on [256, 224, 224, 3]: %.1f us per batch, %.0f GB/s (uint8 in, bf16 out)\n",
        dt * 1e6, 3.0 * total / dt / 1e9);
    cuda_release(d_in), cuda_release(d_out);
}

/* A dataset held in memory (raw pixels), so the ring test needs no files. */
static Dataset memory_dataset(int n, int side, int classes) {
    Dataset ds;
    memset(&ds, 0, sizeof ds);
    ds.kind = DATASET_IDX;
    ds.source = mallocCheck(16);
    strcpy(ds.source, "memory");
    ds.count = n;
    ds.w = ds.h = side;
    ds.c = 3;
    ds.pixels = mallocCheck((size_t)n * side * side * 3);
    for (size_t k = 0; k < (size_t)n * side * side * 3; k++)
        ds.pixels[k] = (uint8_t)philox_draw(5, RNG_TEST, k, 2).v[0];
    ds.labels = mallocCheck((size_t)n * sizeof(int32_t));
    for (int i = 0; i < n; i++)
        ds.labels[i] = i % classes;
    ds.num_classes = classes;
    ds.class_names = mallocCheck((size_t)classes * sizeof(char *));
    for (int c = 0; c < classes; c++) {
        ds.class_names[c] = mallocCheck(16);
        snprintf(ds.class_names[c], 16, "c%d", c);
    }
    return ds;
}

/* Crop 24 x 24 at a keyed offset and flip with a keyed coin. */
static int crop_flip(uint8_t *out, const Sample *s, uint64_t seed, uint64_t epoch, uint64_t index, void *user,
                     GkErr *err) {
    (void)user, (void)err;
    Philox4 r = philox_draw(seed, RNG_AUGMENT, index, (uint32_t)epoch);
    int oy = (int)(r.v[0] % (uint32_t)(s->h - 23)), ox = (int)(r.v[1] % (uint32_t)(s->w - 23)),
        flip = r.v[2] & 1;
    for (int y = 0; y < 24; y++)
        for (int x = 0; x < 24; x++)
            for (int c = 0; c < 3; c++)
                out[(y * 24 + x) * 3 + c] =
                    s->data[((size_t)(oy + y) * s->w + (flip ? ox + 23 - x : ox + x)) * 3 + c];
    return 0;
}

static void test_pinned_ring(Ctx *gpu) {
    Dataset ds = memory_dataset(300, 32, 10);
    MixupConfig mix;
    mixup_defaults(&mix, 10);
    NormErase ne;
    norm_erase_defaults(&ne, 0.25f);
    LoaderConfig cfg;
    loader_config_defaults(&cfg);
    cfg.dataset = &ds;
    cfg.transform = crop_flip;
    cfg.out_h = cfg.out_w = 24;
    cfg.out_c = 3;
    cfg.batch_size = 16;
    cfg.workers = 3;
    cfg.seed = 8;
    cfg.end_epoch = 2;
    cfg.mixup = &mix;
    Loader *host, *dev;
    GkErr err;
    GK_CHECK(loader_create(&host, &cfg, &err) == 0, "%s", err.msg);
    cfg.ctx = gpu;
    GK_CHECK(loader_create(&dev, &cfg, &err) == 0, "%s", err.msg);
    size_t img_bytes = 16 * 24 * 24 * 3;
    uint8_t *back = mallocCheck(img_bytes);
    int32_t lab[16];
    float *tg = mallocCheck(16 * 10 * sizeof(float)), *ref = mallocCheck(img_bytes * sizeof(float));
    bf16_t *out = mallocCheck(img_bytes * sizeof(bf16_t));
    bf16_t *d_out = cuda_alloc(img_bytes * sizeof(bf16_t));
    Batch hb, db;
    int batches = 0, same = 1, same_norm = 1;
    while (loader_next(host, &hb, &err) == 1) {
        GK_CHECK(loader_next(dev, &db, &err) == 1, "the CUDA loader ended early");
        EXPECT(db.d_images && db.d_labels && db.d_targets && db.step == hb.step && db.count == hb.count);
        /* the consumer's pipeline: the kernel straight on the copied batch, queued on the context's stream */
        uint64_t key = batch_key((uint64_t)db.step, 0);
        batch_normalize_erase_cuda(d_out, db.d_images, &ne, 8, key, db.count, 24, 24, 3, gpu->cuda);
        ctx_sync(gpu);
        cuda_copy(back, db.d_images, img_bytes);
        cuda_copy(lab, db.d_labels, sizeof lab);
        cuda_copy(tg, db.d_targets, 16 * 10 * sizeof(float));
        cuda_copy(out, d_out, img_bytes * sizeof(bf16_t));
        same &= !memcmp(back, hb.images, img_bytes) && !memcmp(lab, hb.labels, sizeof lab) &&
                !memcmp(tg, hb.targets, 16 * 10 * sizeof(float)) && !memcmp(db.images, hb.images, img_bytes);
        batch_normalize_erase_cpu(ref, hb.images, &ne, 8, key, hb.count, 24, 24, 3);
        for (size_t k = 0; k < img_bytes; k++)
            same_norm &= out[k] == f32_to_bf16(ref[k]);
        batches++;
    }
    printf(
        "  pinned ring + async copy: %d batches, device bytes %s the host-only loader's; kernel on them %s\n",
        batches, same ? "equal to" : "DIFFER from", same_norm ? "matches the CPU twin" : "DIFFERS");
    EXPECT(batches == 2 * (300 / 16));
    EXPECT(same);
    EXPECT(same_norm);
    EXPECT(loader_next(dev, &db, &err) == 0);
    loader_destroy(host);
    loader_destroy(dev);
    cuda_release(d_out);
    free(back), free(tg), free(ref), free(out);
    dataset_close(&ds);
}
#endif

int main(int argc, char **argv) {
    int gpu = argc > 1 && !strcmp(argv[1], "--gpu");
    double t0 = gk_now();
    if (gpu) {
        if (cuda_device_count() == 0) {
            printf("no CUDA device: GPU batch tests skipped\n");
            return 77;
        }
#ifdef GKA_HAVE_CUDA
        Ctx ctx;
        GkErr err;
        if (ctx_cuda_create(&ctx, 0, &err) != 0) gk_die("%s", err.msg);
        test_kernel_vs_cpu(&ctx);
        time_kernel(&ctx);
        test_pinned_ring(&ctx);
        ctx_destroy(&ctx);
#endif
    } else {
        test_beta();
        test_draws();
        test_cutmix_box();
        test_mix_arithmetic();
        test_normalize_erase_cpu();
    }
    printf("batch tests (%s): %d failed (%.1f s)\n", gpu ? "gpu" : "cpu", failures, gk_now() - t0);
    return failures ? 1 : 0;
}
