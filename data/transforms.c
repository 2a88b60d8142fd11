/* transforms.c: timm's training transform (RandomResizedCropAndInterpolation, RandomHorizontalFlip,
 * RandAugment or ColorJitter) and evaluation transform (Resize of the shorter side, CenterCrop) on uint8 HWC
 * images.
 *
 * The decision a reader must know: torchvision's resized_crop crops at integer coordinates and then resizes
 * the crop, so filter taps never reach outside the crop. We keep that: the resampler gets a view of the
 * crop's pixels (pointer and row stride), not the whole image with a box. When the JPEG was decoded at a
 * reduced DCT scale the crop has fractional edges in the decoded image; the view is then the smallest
 * whole-pixel rectangle around it and the fractional rectangle goes to the resampler as its box. At scale 1
 * (and for non-JPEG files) the box is the whole view and the result is exactly PIL's. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resample.h"
#include "transforms.h"

void train_aug_defaults(TrainAugConfig *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->size = 224;
    cfg->scale_min = 0.08f;
    cfg->scale_max = 1.0f;
    cfg->ratio_min = 3.0f / 4.0f;
    cfg->ratio_max = 4.0f / 3.0f;
    cfg->interp = INTERP_RANDOM;
    cfg->hflip = 0.5f;
    cfg->ra_ops = 2;
    cfg->ra_magnitude = 9.0f;
    cfg->ra_mstd = 0.5f;
    cfg->ra_prob = 0.5f;
    cfg->color_jitter = 0.4f;
    cfg->max_pixels = IMAGE_MAX_PIXELS_DEFAULT;
}

/* ---- RandomResizedCrop --------------------------------------------------------------------------------- */

CropBox rrc_params(int W, int H, const TrainAugConfig *cfg, uint64_t seed, uint64_t epoch, uint64_t index) {
    CropBox b;
    double area = (double)W * H;
    double lr0 = log((double)cfg->ratio_min), lr1 = log((double)cfg->ratio_max);
    for (int attempt = 0; attempt < 10; attempt++) {
        Philox4 r0 = aug_block(seed, epoch, index, AUG_BLOCK_CROP + 2 * attempt);
        /* random.uniform(a, b) = a + (b - a) * random() */
        double s =
            cfg->scale_min + ((double)cfg->scale_max - cfg->scale_min) * philox_u01_f64(r0.v[0], r0.v[1]);
        double target_area = s * area;
        double aspect = exp(lr0 + (lr1 - lr0) * philox_u01_f64(r0.v[2], r0.v[3]));
        /* int(round(x)): Python rounds half to even, as rint does in the default rounding mode */
        int w = (int)rint(sqrt(target_area * aspect));
        int h = (int)rint(sqrt(target_area / aspect));
        if (w <= W && h <= H) {
            /* a crop of zero pixels (images of a few pixels) would make PIL fail; keep one */
            if (w < 1) w = 1;
            if (h < 1) h = 1;
            Philox4 r1 = aug_block(seed, epoch, index, AUG_BLOCK_CROP + 2 * attempt + 1);
            b.i = (int)aug_below(r1.v[0], (uint32_t)(H - h + 1)); /* random.randint(0, H - h) */
            b.j = (int)aug_below(r1.v[1], (uint32_t)(W - w + 1));
            b.h = h;
            b.w = w;
            return b;
        }
    }
    /* timm's fallback: the whole image, clamped to the ratio range, centred with integer halves. */
    double in_ratio = (double)W / H;
    int w = W, h = H;
    if (in_ratio < cfg->ratio_min) {
        h = (int)rint(w / (double)cfg->ratio_min);
    } else if (in_ratio > cfg->ratio_max) {
        w = (int)rint(h * (double)cfg->ratio_max);
    }
    b.i = (H - h) / 2;
    b.j = (W - w) / 2;
    b.h = h;
    b.w = w;
    return b;
}

Interp train_interp(const TrainAugConfig *cfg, uint64_t seed, uint64_t epoch, uint64_t index) {
    if (cfg->interp != INTERP_RANDOM) return cfg->interp;
    /* random.choice((BILINEAR, BICUBIC)) */
    return philox_u01(aug_block(seed, epoch, index, AUG_BLOCK_MISC).v[0]) < 0.5f ? INTERP_BILINEAR
                                                                                 : INTERP_BICUBIC;
}

int train_flip(const TrainAugConfig *cfg, uint64_t seed, uint64_t epoch, uint64_t index) {
    return cfg->hflip > 0.0f && philox_u01(aug_block(seed, epoch, index, AUG_BLOCK_MISC).v[1]) < cfg->hflip;
}

void hflip_u8(uint8_t *img, int w, int h, int c) {
    for (int y = 0; y < h; y++) {
        uint8_t *row = img + (size_t)y * w * c;
        for (int a = 0, b = w - 1; a < b; a++, b--)
            for (int ch = 0; ch < c; ch++) {
                uint8_t t = row[a * c + ch];
                row[a * c + ch] = row[b * c + ch];
                row[b * c + ch] = t;
            }
    }
}

/* ---- colour: ColorJitter (torchvision) when RandAugment is off ----------------------------------------- */

void color_jitter(uint8_t *img, int w, int h, int c, float strength, uint64_t seed, uint64_t epoch,
                  uint64_t index) {
    if (!(strength > 0.0f)) return;
    static const uint8_t orders[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2}, {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    Philox4 r = aug_block(seed, epoch, index, AUG_BLOCK_JITTER);
    float lo = 1.0f - strength > 0.0f ? 1.0f - strength : 0.0f, hi = 1.0f + strength;
    float f[3];
    for (int k = 0; k < 3; k++)
        f[k] = lo + (hi - lo) * philox_u01(r.v[k]);
    const uint8_t *order = orders[aug_below(r.v[3], 6)]; /* torch.randperm, hue (absent) left out */
    for (int k = 0; k < 3; k++) {
        int op = order[k];
        if (op == 0)
            pil_brightness(img, w, h, c, f[0]);
        else if (op == 1)
            pil_contrast(img, w, h, c, f[1]);
        else
            pil_color(img, w, h, c, f[2]);
    }
}

static void color_augment(uint8_t *img, int size, int c, const TrainAugConfig *cfg, uint64_t seed,
                          uint64_t epoch, uint64_t index) {
    if (cfg->ra_ops > 0)
        randaugment(img, size, size, c, cfg, seed, epoch, index);
    else
        color_jitter(img, size, size, c, cfg->color_jitter, seed, epoch, index);
}

/* ---- training ------------------------------------------------------------------------------------------ */

void train_transform_pixels(uint8_t *out, const Image *src, const TrainAugConfig *cfg, uint64_t seed,
                            uint64_t epoch, uint64_t index) {
    int c = src->c, size = cfg->size;
    CropBox b = rrc_params(src->w, src->h, cfg, seed, epoch, index);
    Interp interp = train_interp(cfg, seed, epoch, index);
    const uint8_t *view = src->pix + ((size_t)b.i * src->w + b.j) * c;
    resample_u8(out, size, size, view, b.w, b.h, (ptrdiff_t)src->w * c, c, NULL, (ResampleFilter)interp);
    if (train_flip(cfg, seed, epoch, index)) hflip_u8(out, size, size, c);
    color_augment(out, size, c, cfg, seed, epoch, index);
}

int train_transform(uint8_t *out, const uint8_t *buf, size_t len, const TrainAugConfig *cfg, uint64_t seed,
                    uint64_t epoch, uint64_t index, GkErr *err) {
    int W, H, size = cfg->size;
    if (image_probe(buf, len, &W, &H, err)) return -1;
    if (W <= 0 || H <= 0) return gk_fail(err, "image header gives %d x %d pixels", W, H);
    CropBox b = rrc_params(W, H, cfg, seed, epoch, index);
    ImageRegion reg = {b.j, b.i, b.w, b.h}, r;
    Image im;
    if (image_decode(&im, &r, NULL, buf, len, &reg, size, size, cfg->max_pixels, err)) return -1;
    /* The view: whole pixels around the (possibly fractional) region in the decoded image. */
    int x0 = (int)floor(r.x), y0 = (int)floor(r.y);
    int x1 = (int)ceil(r.x + r.w), y1 = (int)ceil(r.y + r.h);
    if (x1 > im.w) x1 = im.w;
    if (y1 > im.h) y1 = im.h;
    double vw = x1 - x0, vh = y1 - y0;
    double box[4] = {r.x - x0, r.y - y0, fmin(r.x + r.w - x0, vw), fmin(r.y + r.h - y0, vh)};
    const uint8_t *view = im.pix + ((size_t)y0 * im.w + x0) * 3;
    Interp interp = train_interp(cfg, seed, epoch, index);
    resample_u8(out, size, size, view, x1 - x0, y1 - y0, (ptrdiff_t)im.w * 3, 3, box, (ResampleFilter)interp);
    image_free(&im);
    if (train_flip(cfg, seed, epoch, index)) hflip_u8(out, size, size, 3);
    color_augment(out, size, 3, cfg, seed, epoch, index);
    return 0;
}

/* ---- evaluation ---------------------------------------------------------------------------------------- */

int eval_scale_size(int size, float crop_pct) {
    /* The float came from a decimal the user wrote; its 6-significant-digit form (FLT_DIG) recovers that
       decimal, whose double is what timm divides by. */
    char buf[32];
    snprintf(buf, sizeof buf, "%.6g", (double)crop_pct);
    return (int)floor(size / strtod(buf, NULL));
}

void eval_transform_pixels(uint8_t *out, const Image *src, int size, float crop_pct) {
    int c = src->c, w = src->w, h = src->h, s = eval_scale_size(size, crop_pct);
    /* torchvision's _compute_resized_output_size: the shorter side becomes s, the longer int(s * long /
     * short) */
    int nw, nh;
    if (w <= h) {
        nw = s;
        nh = (int)((double)s * h / w);
    } else {
        nh = s;
        nw = (int)((double)s * w / h);
    }
    const uint8_t *img = src->pix;
    uint8_t *resized = NULL;
    if (nw != w || nh != h) {
        resized = mallocCheck((size_t)nw * nh * c);
        resample_u8(resized, nw, nh, src->pix, w, h, (ptrdiff_t)w * c, c, NULL, RESAMPLE_BICUBIC);
        img = resized;
    }
    /* torchvision's center_crop: zero padding where the image is smaller, then offsets
       int(round(d / 2.0)). */
    int pad_l = size > nw ? (size - nw) / 2 : 0, pad_t = size > nh ? (size - nh) / 2 : 0;
    int pw = size > nw ? size : nw, ph = size > nh ? size : nh;
    int top = (int)rint((ph - size) / 2.0), left = (int)rint((pw - size) / 2.0);
    for (int y = 0; y < size; y++) {
        int sy = y + top - pad_t;
        uint8_t *o = out + (size_t)y * size * c;
        if (sy < 0 || sy >= nh) {
            memset(o, 0, (size_t)size * c);
            continue;
        }
        for (int x = 0; x < size; x++) {
            int sx = x + left - pad_l;
            for (int ch = 0; ch < c; ch++)
                o[x * c + ch] = (sx >= 0 && sx < nw) ? img[((size_t)sy * nw + sx) * c + ch] : 0;
        }
    }
    free(resized);
}

int eval_transform(uint8_t *out, const uint8_t *buf, size_t len, int size, float crop_pct, int64_t max_pixels,
                   GkErr *err) {
    Image im;
    if (image_decode(&im, NULL, NULL, buf, len, NULL, 0, 0, max_pixels, err)) return -1;
    eval_transform_pixels(out, &im, size, crop_pct);
    image_free(&im);
    return 0;
}
