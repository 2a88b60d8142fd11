/* randaugment.c: timm's RandAugment "rand-mM-mstdS-inc1" (timm/data/auto_augment.py) and the PIL operations
 * it is made of, on uint8 HWC images with c = 1 or 3.
 *
 * Each PIL primitive reproduces Pillow's C code or Python code bit for bit: the same integer formulas, the
 * same float or double arithmetic in the same order (ImageEnhance blends in float, like ImagingBlend; the
 * affine sampler in double, like Geometry.c). That is why some expressions below are spelled out in an order
 * that looks arbitrary: reordering them changes the rounding. The file relies on the C11 build's default of
 * no floating contraction (GCC's -std=c11 implies -ffp-contract=off; the pragma covers clang): a fused
 * multiply-add would round differently from Pillow's separate multiply and add. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "transforms.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

const uint8_t RA_FILL_RGB[3] = {124, 116, 104};

static const char *const RA_NAMES[RA_NUM_OPS] = {"AutoContrast",
                                                 "Equalize",
                                                 "Invert",
                                                 "Rotate",
                                                 "PosterizeIncreasing",
                                                 "SolarizeIncreasing",
                                                 "SolarizeAdd",
                                                 "ColorIncreasing",
                                                 "ContrastIncreasing",
                                                 "BrightnessIncreasing",
                                                 "SharpnessIncreasing",
                                                 "ShearX",
                                                 "ShearY",
                                                 "TranslateXRel",
                                                 "TranslateYRel"};

const char *randaug_op_name(RandAugOp op) {
    return (unsigned)op < RA_NUM_OPS ? RA_NAMES[op] : "?";
}

/* PIL's RGB -> L (Convert.c, L24): ITU-R 601-2 weights in 16-bit fixed point, rounded half up. */
static inline uint8_t rgb_to_l(const uint8_t *p) {
    return (uint8_t)((p[0] * 19595 + p[1] * 38470 + p[2] * 7471 + 0x8000) >> 16);
}

/* ---- lookup tables (Image.point) ----------------------------------------------------------------------- */

/* One 256-entry table per channel (luts[ch * 256 + v]), or the same table for all when shared. */
static void apply_lut(uint8_t *img, size_t npix, int c, const uint8_t *luts, int shared) {
    if (shared || c == 1) {
        for (size_t i = 0; i < npix * c; i++)
            img[i] = luts[img[i]];
        return;
    }
    for (size_t i = 0; i < npix; i++)
        for (int ch = 0; ch < c; ch++)
            img[i * c + ch] = luts[ch * 256 + img[i * c + ch]];
}

static void histograms(uint32_t *hist, const uint8_t *img, size_t npix, int c) {
    memset(hist, 0, sizeof(uint32_t) * 256 * c);
    for (size_t i = 0; i < npix; i++)
        for (int ch = 0; ch < c; ch++)
            hist[ch * 256 + img[i * c + ch]]++;
}

/* ImageOps.autocontrast(image), cutoff 0, no ignore: per channel, map [lo, hi] linearly onto [0, 255]. */
void pil_autocontrast(uint8_t *img, int w, int h, int c) {
    size_t npix = (size_t)w * h;
    uint32_t hist[3 * 256];
    uint8_t lut[3 * 256];
    histograms(hist, img, npix, c);
    for (int ch = 0; ch < c; ch++) {
        const uint32_t *hc = hist + ch * 256;
        int lo = 0, hi = 255;
        while (lo < 255 && !hc[lo])
            lo++;
        while (hi > 0 && !hc[hi])
            hi--;
        for (int i = 0; i < 256; i++) {
            int v = i;
            if (hi > lo) {
                double scale = 255.0 / (hi - lo), offset = -lo * scale;
                v = (int)(i * scale + offset);
                v = v < 0 ? 0 : v > 255 ? 255 : v;
            }
            lut[ch * 256 + i] = (uint8_t)v;
        }
    }
    apply_lut(img, npix, c, lut, 0);
}

/* ImageOps.equalize(image): per channel, step = (pixels - count of the top value) // 255; the table entries
   are clipped to 255 as Image.point does with an 8-bit table. */
void pil_equalize(uint8_t *img, int w, int h, int c) {
    size_t npix = (size_t)w * h;
    uint32_t hist[3 * 256];
    uint8_t lut[3 * 256];
    histograms(hist, img, npix, c);
    for (int ch = 0; ch < c; ch++) {
        const uint32_t *hc = hist + ch * 256;
        int64_t total = 0, last = 0;
        int nonzero = 0;
        for (int i = 0; i < 256; i++)
            if (hc[i]) {
                nonzero++;
                total += hc[i];
                last = hc[i];
            }
        int64_t step = nonzero > 1 ? (total - last) / 255 : 0;
        int64_t n = step / 2;
        for (int i = 0; i < 256; i++) {
            int64_t v = i;
            if (step) {
                v = n / step;
                n += hc[i];
            }
            lut[ch * 256 + i] = (uint8_t)(v > 255 ? 255 : v);
        }
    }
    apply_lut(img, npix, c, lut, 0);
}

/* ---- ImageEnhance: Image.blend(degenerate, image, factor) ---------------------------------------------- */

/* ImagingBlend (Blend.c) for one value: alpha is a C float and the expression is evaluated in float; inside
   [0, 1] the result is truncated, outside it is clipped first. */
static inline uint8_t blend_interp(int deg, int v, float alpha) {
    return (uint8_t)((float)deg + alpha * (float)(v - deg));
}
static inline uint8_t blend_extrap(int deg, int v, float alpha) {
    float t = (float)deg + alpha * (float)(v - deg);
    return t <= 0.0f ? 0 : t >= 255.0f ? 255 : (uint8_t)t;
}

/* deg: a degenerate image of the same layout, or (deg_stride 0) one pixel of c values used everywhere. */
static void blend(uint8_t *img, size_t npix, int c, const uint8_t *deg, int deg_is_pixel, double factor) {
    float alpha = (float)factor;
    size_t n = npix * c;
    if (alpha == 1.0f) return;
    if (alpha == 0.0f) {
        for (size_t i = 0; i < n; i++)
            img[i] = deg_is_pixel ? deg[i % c] : deg[i];
        return;
    }
    int inside = alpha >= 0.0f && alpha <= 1.0f;
    if (deg_is_pixel) {
        for (size_t i = 0; i < npix; i++)
            for (int ch = 0; ch < c; ch++) {
                uint8_t *p = img + i * c + ch;
                *p = inside ? blend_interp(deg[ch], *p, alpha) : blend_extrap(deg[ch], *p, alpha);
            }
    } else if (inside) {
        for (size_t i = 0; i < n; i++)
            img[i] = blend_interp(deg[i], img[i], alpha);
    } else {
        for (size_t i = 0; i < n; i++)
            img[i] = blend_extrap(deg[i], img[i], alpha);
    }
}

/* ImageEnhance.Brightness: the degenerate image is black. */
void pil_brightness(uint8_t *img, int w, int h, int c, double factor) {
    const uint8_t black[3] = {0, 0, 0};
    blend(img, (size_t)w * h, c, black, 1, factor);
}

/* ImageEnhance.Contrast: the degenerate image is the mean of the L image, int(mean + 0.5) as ImageStat gives
 * it. */
void pil_contrast(uint8_t *img, int w, int h, int c, double factor) {
    size_t npix = (size_t)w * h;
    uint64_t sum = 0;
    for (size_t i = 0; i < npix; i++)
        sum += c == 3 ? rgb_to_l(img + 3 * i) : img[i];
    int mean = (int)((double)sum / (double)npix + 0.5);
    uint8_t deg[3] = {(uint8_t)mean, (uint8_t)mean, (uint8_t)mean};
    blend(img, npix, c, deg, 1, factor);
}

/* ImageEnhance.Color: the degenerate image is convert("L").convert("RGB"); a grayscale image is its own. */
void pil_color(uint8_t *img, int w, int h, int c, double factor) {
    if (c != 3) return;
    size_t npix = (size_t)w * h;
    uint8_t *deg = mallocCheck(npix * 3);
    for (size_t i = 0; i < npix; i++)
        deg[3 * i] = deg[3 * i + 1] = deg[3 * i + 2] = rgb_to_l(img + 3 * i);
    blend(img, npix, 3, deg, 0, factor);
    free(deg);
}

/* ImageFilter.SMOOTH (3x3 kernel 1 1 1 / 1 5 1 / 1 1 1, divisor 13) as ImagingFilter3x3 runs it: float
   weights k / 13.0f, a 0.5 rounding offset, rows y+1, y, y-1 summed in that order, the one-pixel border
   copied. */
static void smooth3x3(uint8_t *dst, const uint8_t *src, int w, int h, int c) {
    memcpy(dst, src, (size_t)w * h * c);
    if (w < 3 || h < 3) return; /* ImagingFilter returns a copy when the image is smaller than the kernel */
    const float k1 = 1.0f / 13.0f, k5 = 5.0f / 13.0f;
    size_t row = (size_t)w * c;
    for (int y = 1; y < h - 1; y++) {
        const uint8_t *in_1 = src + (y - 1) * row, *in0 = src + y * row, *in1 = src + (y + 1) * row;
        uint8_t *out = dst + y * row;
        for (int x = 1; x < w - 1; x++)
            for (int ch = 0; ch < c; ch++) {
                int i = x * c + ch, l = i - c, r = i + c;
                float ss = 0.5f;
                ss += (float)in1[l] * k1 + (float)in1[i] * k1 + (float)in1[r] * k1;
                ss += (float)in0[l] * k1 + (float)in0[i] * k5 + (float)in0[r] * k1;
                ss += (float)in_1[l] * k1 + (float)in_1[i] * k1 + (float)in_1[r] * k1;
                out[i] = ss <= 0.0f ? 0 : ss >= 255.0f ? 255 : (uint8_t)ss;
            }
    }
}

/* ImageEnhance.Sharpness: the degenerate image is the SMOOTH-filtered one. */
void pil_sharpness(uint8_t *img, int w, int h, int c, double factor, uint8_t *scratch) {
    size_t n = (size_t)w * h * c;
    uint8_t *deg = scratch ? scratch : mallocCheck(n);
    smooth3x3(deg, img, w, h, c);
    blend(img, (size_t)w * h, c, deg, 0, factor);
    if (!scratch) free(deg);
}

/* ---- geometry (Geometry.c: ImagingGenericTransform with affine_transform) ------------------------------ */

static inline int clampi(int v, int hi) {
    return v < 0 ? 0 : v < hi ? v : hi - 1;
}

/* bilinear_filter8 / bilinear_filter32RGB; (x, y) already known to lie inside the image. */
static void sample_bilinear(uint8_t *out, const uint8_t *src, int w, int h, int c, double xin, double yin) {
    xin -= 0.5;
    yin -= 0.5;
    int x = (int)floor(xin), y = (int)floor(yin);
    double dx = xin - x, dy = yin - y;
    int x0 = clampi(x, w) * c, x1 = clampi(x + 1, w) * c;
    const uint8_t *r0 = src + (size_t)clampi(y, h) * w * c;
    const uint8_t *r1 = (y + 1 >= 0 && y + 1 < h) ? src + (size_t)(y + 1) * w * c : NULL;
    for (int b = 0; b < c; b++) {
        double v1 = r0[x0 + b] + (r0[x1 + b] - r0[x0 + b]) * dx;
        double v2 = r1 ? r1[x0 + b] + (r1[x1 + b] - r1[x0 + b]) * dx : v1;
        v1 = v1 + (v2 - v1) * dy;
        out[b] = (uint8_t)v1;
    }
}

/* Geometry.c's BICUBIC macro: the a = -1 cubic convolution in its own operation order. */
static inline double cubic(double v1, double v2, double v3, double v4, double d) {
    double p1 = v2;
    double p2 = -v1 + v3;
    double p3 = 2 * (v1 - v2) + v3 - v4;
    double p4 = -v1 + v2 - v3 + v4;
    return p1 + d * (p2 + d * (p3 + d * p4));
}

/* bicubic_filter8 / bicubic_filter32RGB: rows outside the image repeat the previous row's value. */
static void sample_bicubic(uint8_t *out, const uint8_t *src, int w, int h, int c, double xin, double yin) {
    xin -= 0.5;
    yin -= 0.5;
    int x = (int)floor(xin), y = (int)floor(yin);
    double dx = xin - x, dy = yin - y;
    x--;
    y--;
    int xs[4];
    for (int i = 0; i < 4; i++)
        xs[i] = clampi(x + i, w) * c;
    const uint8_t *rows[4];
    rows[0] = src + (size_t)clampi(y, h) * w * c;
    for (int i = 1; i < 4; i++)
        rows[i] = (y + i >= 0 && y + i < h) ? src + (size_t)(y + i) * w * c : NULL;
    for (int b = 0; b < c; b++) {
        double v[4];
        const uint8_t *r = rows[0];
        v[0] = cubic(r[xs[0] + b], r[xs[1] + b], r[xs[2] + b], r[xs[3] + b], dx);
        for (int i = 1; i < 4; i++) {
            r = rows[i];
            v[i] = r ? cubic(r[xs[0] + b], r[xs[1] + b], r[xs[2] + b], r[xs[3] + b], dx) : v[i - 1];
        }
        double t = cubic(v[0], v[1], v[2], v[3], dy);
        out[b] = t <= 0.0 ? 0 : t >= 255.0 ? 255 : (uint8_t)t;
    }
}

void pil_affine(uint8_t *dst, const uint8_t *src, int w, int h, int c, const double a[6], Interp interp,
                const uint8_t *fill) {
    for (int y = 0; y < h; y++) {
        uint8_t *out = dst + (size_t)y * w * c;
        for (int x = 0; x < w; x++, out += c) {
            double xo = x + 0.5, yo = y + 0.5;
            double xin = a[0] * xo + a[1] * yo + a[2];
            double yin = a[3] * xo + a[4] * yo + a[5];
            if (xin < 0.0 || xin >= w || yin < 0.0 || yin >= h) {
                memcpy(out, fill, (size_t)c); /* the output image was created filled with fillcolor */
                continue;
            }
            if (interp == INTERP_BICUBIC)
                sample_bicubic(out, src, w, h, c, xin, yin);
            else
                sample_bilinear(out, src, w, h, c, xin, yin);
        }
    }
}

/* Python's round(x, 15): the correctly rounded 15-decimal value, which printf's %.15f also produces. */
static double py_round15(double x) {
    char buf[400];
    snprintf(buf, sizeof buf, "%.15f", x);
    return strtod(buf, NULL);
}

/* Image.rotate(angle, resample, fillcolor): angle % 360 (Python's modulo), then the inverse rotation matrix
   with entries rounded to 15 decimals, about (w / 2, h / 2). The special cases PIL shortcuts (0, 90, 180, 270
   degrees) give exact matrices, where this general path returns the same pixels. */
void pil_rotate(uint8_t *dst, const uint8_t *src, int w, int h, int c, double degrees, Interp interp,
                const uint8_t *fill) {
    double angle = fmod(degrees, 360.0);
    if (angle != 0.0 && (angle < 0.0) != (360.0 < 0.0)) angle += 360.0;
    double rad = -(angle * (3.141592653589793 / 180.0)); /* math.radians: x * (pi / 180) */
    double m[6] = {py_round15(cos(rad)),  py_round15(sin(rad)), 0.0,
                   py_round15(-sin(rad)), py_round15(cos(rad)), 0.0};
    double cx = w / 2.0, cy = h / 2.0;
    double tx = -cx, ty = -cy;
    double m2 = m[0] * tx + m[1] * ty + m[2];
    double m5 = m[3] * tx + m[4] * ty + m[5];
    m[2] = m2 + cx;
    m[5] = m5 + cy;
    pil_affine(dst, src, w, h, c, m, interp, fill);
}

/* ---- the fifteen ops ----------------------------------------------------------------------------------- */

/* timm's level functions use the magnitude m on a 0..10 scale (_LEVEL_DENOM). */
static double enhance_factor(double m, int negate) {
    double level = (m / 10.0) * 0.9; /* _enhance_increasing_level_to_arg */
    double f = 1.0 + (negate ? -level : level);
    return f > 0.1 ? f : 0.1;
}

void randaug_op(uint8_t *img, int w, int h, int c, RandAugOp op, double m, int negate, Interp interp,
                uint8_t *scratch) {
    GK_CHECK(c == 1 || c == 3, "randaug_op: c must be 1 or 3, got %d", c);
    GK_CHECK(interp == INTERP_BILINEAR || interp == INTERP_BICUBIC, "randaug_op: interp must be resolved");
    size_t npix = (size_t)w * h, n = npix * c;
    uint8_t lut[256];
    /* A grayscale image takes the fill colour's L value, as PIL would convert it. */
    uint8_t fill[3] = {RA_FILL_RGB[0], RA_FILL_RGB[1], RA_FILL_RGB[2]};
    if (c == 1) fill[0] = rgb_to_l(RA_FILL_RGB);
    uint8_t *tmp = NULL;
    double a[6] = {1, 0, 0, 0, 1, 0};
    switch (op) {
    case RA_AUTOCONTRAST:
        pil_autocontrast(img, w, h, c);
        return;
    case RA_EQUALIZE:
        pil_equalize(img, w, h, c);
        return;
    case RA_INVERT: /* ImageOps.invert */
        for (int i = 0; i < 256; i++)
            lut[i] = (uint8_t)(255 - i);
        apply_lut(img, npix, c, lut, 1);
        return;
    case RA_POSTERIZE_INC: { /* ImageOps.posterize(img, 4 - int(4 m / 10)); 0 bits: black, as Pillow < 13 */
        int bits = 4 - (int)((m / 10.0) * 4);
        if (bits >= 8) return;
        int mask = bits <= 0 ? 0 : ~((1 << (8 - bits)) - 1);
        for (int i = 0; i < 256; i++)
            lut[i] = (uint8_t)(i & mask);
        apply_lut(img, npix, c, lut, 1);
        return;
    }
    case RA_SOLARIZE_INC: { /* ImageOps.solarize(img, 256 - min(256, int(256 m / 10))) */
        int t = (int)((m / 10.0) * 256);
        int thresh = 256 - (t < 256 ? t : 256);
        for (int i = 0; i < 256; i++)
            lut[i] = (uint8_t)(i < thresh ? i : 255 - i);
        apply_lut(img, npix, c, lut, 1);
        return;
    }
    case RA_SOLARIZE_ADD: { /* timm solarize_add: add min(128, int(110 m / 10)) below 128 */
        int add = (int)((m / 10.0) * 110);
        if (add > 128) add = 128;
        for (int i = 0; i < 256; i++)
            lut[i] = (uint8_t)(i < 128 ? (i + add < 255 ? i + add : 255) : i);
        apply_lut(img, npix, c, lut, 1);
        return;
    }
    case RA_COLOR_INC:
        pil_color(img, w, h, c, enhance_factor(m, negate));
        return;
    case RA_CONTRAST_INC:
        pil_contrast(img, w, h, c, enhance_factor(m, negate));
        return;
    case RA_BRIGHTNESS_INC:
        pil_brightness(img, w, h, c, enhance_factor(m, negate));
        return;
    case RA_SHARPNESS_INC:
        pil_sharpness(img, w, h, c, enhance_factor(m, negate), scratch);
        return;
    case RA_ROTATE:
    case RA_SHEAR_X:
    case RA_SHEAR_Y:
    case RA_TRANSLATE_X_REL:
    case RA_TRANSLATE_Y_REL:
        break;
    default:
        gk_die("randaug_op: unknown op %d", (int)op);
    }
    /* Geometric ops read a copy of the image and write the result in place. */
    tmp = scratch ? scratch : mallocCheck(n);
    memcpy(tmp, img, n);
    if (op == RA_ROTATE) {
        double deg = (m / 10.0) * 30.0; /* _rotate_level_to_arg */
        pil_rotate(img, tmp, w, h, c, negate ? -deg : deg, interp, fill);
    } else {
        if (op == RA_SHEAR_X || op == RA_SHEAR_Y) {
            double s = (m / 10.0) * 0.3; /* _shear_level_to_arg */
            if (negate) s = -s;
            if (op == RA_SHEAR_X)
                a[1] = s;
            else
                a[3] = s;
        } else {
            double pct = (m / 10.0) * 0.45; /* _translate_rel_level_to_arg */
            if (negate) pct = -pct;
            if (op == RA_TRANSLATE_X_REL)
                a[2] = pct * w;
            else
                a[5] = pct * h;
        }
        pil_affine(img, tmp, w, h, c, a, interp, fill);
    }
    if (!scratch) free(tmp);
}

/* ---- the policy ---------------------------------------------------------------------------------------- */

int randaug_plan(RandAugStep *steps, const TrainAugConfig *cfg, uint64_t seed, uint64_t epoch,
                 uint64_t index) {
    int n = cfg->ra_ops < RA_MAX_LAYERS ? cfg->ra_ops : RA_MAX_LAYERS;
    for (int l = 0; l < n; l++) {
        Philox4 a = aug_block(seed, epoch, index, AUG_BLOCK_RA + 2 * l);
        Philox4 b = aug_block(seed, epoch, index, AUG_BLOCK_RA + 2 * l + 1);
        RandAugStep *s = &steps[l];
        s->op = (RandAugOp)aug_below(a.v[0], RA_NUM_OPS); /* np.random.choice, with replacement */
        s->apply = cfg->ra_prob >= 1.0f || philox_u01(a.v[1]) <= cfg->ra_prob;
        double m = cfg->ra_magnitude;
        if (isinf(cfg->ra_mstd)) { /* random.uniform(0, m) */
            m = m * philox_u01_f64(b.v[0], b.v[1]);
        } else if (cfg->ra_mstd > 0) { /* random.gauss(m, mstd), Box-Muller */
            double u1 = philox_u01_f64(b.v[0], b.v[1]), u2 = philox_u01_f64(b.v[2], b.v[3]);
            m += cfg->ra_mstd * sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * 3.141592653589793 * u2);
        }
        s->magnitude = m < 0.0 ? 0.0 : m > 10.0 ? 10.0 : m;
        s->negate = philox_u01(a.v[2]) > 0.5f; /* _randomly_negate */
        s->interp = cfg->interp != INTERP_RANDOM ? cfg->interp
                    : philox_u01(a.v[3]) < 0.5f  ? INTERP_BILINEAR
                                                 : INTERP_BICUBIC;
    }
    return n;
}

void randaugment(uint8_t *img, int w, int h, int c, const TrainAugConfig *cfg, uint64_t seed, uint64_t epoch,
                 uint64_t index) {
    RandAugStep steps[RA_MAX_LAYERS];
    int n = randaug_plan(steps, cfg, seed, epoch, index);
    uint8_t *scratch = NULL;
    for (int l = 0; l < n; l++) {
        if (!steps[l].apply) continue;
        if (!scratch) scratch = mallocCheck((size_t)w * h * c);
        randaug_op(img, w, h, c, steps[l].op, steps[l].magnitude, steps[l].negate, steps[l].interp, scratch);
    }
    free(scratch);
}

/* ---- "rand-m9-mstd0.5-inc1" ---------------------------------------------------------------------------- */

/* A whole-string number: strtod/strtol must consume everything. */
static int parse_double(const char *s, double *v) {
    char *end;
    *v = strtod(s, &end);
    return *s && !*end;
}

static int parse_int(const char *s, int *v) {
    char *end;
    long x = strtol(s, &end, 10);
    if (!*s || *end || x < 0 || x > 1000000) return 0;
    *v = (int)x;
    return 1;
}

int parse_randaugment(TrainAugConfig *cfg, const char *spec, GkErr *err) {
    static const char *const usage =
        "expected 'rand' followed by '-'-separated sections m<int> (magnitude), "
        "n<int> (ops per image), mstd<float>, p<float>, inc1, e.g. rand-m9-mstd0.5-inc1";
    if (!spec || strncmp(spec, "rand", 4) != 0 || (spec[4] != '\0' && spec[4] != '-'))
        return gk_fail(err, "RandAugment '%s': %s", spec ? spec : "(null)", usage);
    int n = 2, inc = -1, m = 10; /* timm's defaults when a section is absent */
    double mstd = 0.0, p = 0.5;
    const char *s = spec + 4;
    while (*s == '-') {
        s++;
        char sec[64];
        size_t len = strcspn(s, "-");
        if (len == 0 || len >= sizeof sec)
            return gk_fail(err, "RandAugment '%s': empty or overlong section; %s", spec, usage);
        memcpy(sec, s, len);
        sec[len] = '\0';
        s += len;
        if (sec[0] == 't')
            return gk_fail(err,
                           "RandAugment '%s': section '%s' (a named or weighted op set) is not supported",
                           spec, sec);
        size_t klen = strcspn(sec, "0123456789");
        if (klen == len)
            return gk_fail(err, "RandAugment '%s': section '%s' has no number; %s", spec, sec, usage);
        char key[64];
        memcpy(key, sec, klen);
        key[klen] = '\0';
        const char *val = sec + klen;
        int ok;
        if (!strcmp(key, "mstd")) {
            ok = parse_double(val, &mstd) && mstd >= 0.0;
            if (ok && mstd > 100.0) mstd = INFINITY; /* timm: uniform magnitude in [0, m] */
        } else if (!strcmp(key, "m")) {
            ok = parse_int(val, &m) && m <= 30;
        } else if (!strcmp(key, "n")) {
            ok = parse_int(val, &n) && n <= RA_MAX_LAYERS;
        } else if (!strcmp(key, "p")) {
            ok = parse_double(val, &p) && p >= 0.0 && p <= 1.0;
        } else if (!strcmp(key, "inc")) {
            ok = parse_int(val, &inc);
        } else if (!strcmp(key, "mmax")) {
            return gk_fail(err, "RandAugment '%s': 'mmax' (magnitudes above 10) is not supported", spec);
        } else {
            return gk_fail(err, "RandAugment '%s': unknown section '%s'; %s", spec, sec, usage);
        }
        if (!ok)
            return gk_fail(
                err, "RandAugment '%s': bad value in section '%s' (n: 0..%d, m: 0..30, p: 0..1, mstd >= 0)",
                spec, sec, RA_MAX_LAYERS);
    }
    if (*s) return gk_fail(err, "RandAugment '%s': %s", spec, usage);
    if (inc != 1)
        return gk_fail(
            err,
            "RandAugment '%s': only the increasing op set ('inc1') is implemented; without it timm uses "
            "its non-increasing set (Posterize, Solarize, Color, ... at other levels). Add '-inc1'",
            spec);
    cfg->ra_ops = n;
    cfg->ra_magnitude = (float)m;
    cfg->ra_mstd = (float)mstd;
    cfg->ra_prob = (float)p;
    return 0;
}
