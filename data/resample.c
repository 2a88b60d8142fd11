/* resample.c: PIL's ImagingResample (Pillow libImaging/Resample.c) on uint8 HWC images, reproduced bit for
 * bit.
 *
 * What has to match PIL exactly, and why each line below looks the way it does:
 * - the box is held in float (PIL's float box[4]) and the scale is computed from the float difference;
 * - a tap window is [(int)(center - support + 0.5), (int)(center + support + 0.5)) clipped to the image, and
 * each weight is filter((x + xmin - center + 0.5) / filterscale), normalised by the window's sum;
 * - weights become int32 with PRECISION_BITS = 32 - 8 - 2 = 22 fraction bits, rounded half away from zero;
 * - sums start at 1 << 21 (rounding) and are clipped to 0..255 after the shift, in both passes;
 * - a pass is skipped when it is the identity (PIL's need_horizontal / need_vertical);
 * - the horizontal pass runs first, over only the rows the vertical pass will read. That is Pillow's order
 * from 2016 through 12.x, the Pillow of the recipe's time. Pillow 13 (PR #9549) runs the vertical pass first
 * when the height shrinks more than twice as much as the width, which moves some pixels by one level;
 * matching it would mean swapping the passes under that condition. The vertical pass runs row by row into an
 * int32 accumulator, which gives the same integers as PIL's pixel order (integer addition is exact) while
 * letting the compiler vectorise over the row. */
#include "resample.h"

#include <math.h>
#include <string.h>
#include <stdlib.h>

#include "core.h"

#define PRECISION_BITS (32 - 8 - 2)

static double filter_bilinear(double x) {
    if (x < 0.0) x = -x;
    if (x < 1.0) return 1.0 - x;
    return 0.0;
}

/* Keys' cubic with a = -0.5, written in PIL's operation order so the doubles round identically. */
static double filter_bicubic(double x) {
    const double a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
}

typedef struct Coeffs {
    int ksize;
    int *bounds; /* per output pixel: first input index, tap count */
    int32_t *k;  /* per output pixel: ksize fixed-point weights */
} Coeffs;

/* PIL's precompute_coeffs followed by normalize_coeffs_8bpc. */
static void precompute_coeffs(Coeffs *co, int in_size, float in0, float in1, int out_size, ResampleFilter f) {
    double (*filt)(double) = f == RESAMPLE_BICUBIC ? filter_bicubic : filter_bilinear;
    double fsupport = f == RESAMPLE_BICUBIC ? 2.0 : 1.0;
    double scale = (double)(in1 - in0) / out_size, filterscale = scale;
    if (filterscale < 1.0) filterscale = 1.0;
    double support = fsupport * filterscale;
    int ksize = (int)ceil(support) * 2 + 1;
    co->ksize = ksize;
    co->bounds = mallocCheck(sizeof(int) * 2 * (size_t)out_size);
    co->k = mallocCheck(sizeof(int32_t) * (size_t)ksize * out_size);
    double *w = mallocCheck(sizeof(double) * (size_t)ksize);
    for (int xx = 0; xx < out_size; xx++) {
        double center = in0 + (xx + 0.5) * scale;
        double ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        if (xmax < 0) xmax = 0;
        for (int x = 0; x < xmax; x++) {
            w[x] = filt((x + xmin - center + 0.5) * ss);
            ww += w[x];
        }
        int32_t *k = co->k + (size_t)xx * ksize;
        for (int x = 0; x < ksize; x++) {
            double v = 0.0;
            if (x < xmax) v = ww != 0.0 ? w[x] / ww : w[x];
            k[x] = (int32_t)(v < 0 ? -0.5 + v * (1 << PRECISION_BITS) : 0.5 + v * (1 << PRECISION_BITS));
        }
        co->bounds[2 * xx] = xmin;
        co->bounds[2 * xx + 1] = xmax;
    }
    free(w);
}

static void coeffs_free(Coeffs *co) {
    free(co->bounds);
    free(co->k);
}

static inline uint8_t clip8(int32_t ss) {
    int32_t v = ss >> PRECISION_BITS; /* arithmetic shift, as PIL relies on */
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* The horizontal pass works on strips of STRIP rows transposed so that one source column of the strip is
   contiguous (STRIP * c bytes): an output column is then a sum of whole source columns times one weight each,
   the same loop shape as the vertical pass, which the compiler vectorises. Per-pixel dot products over
   interleaved channels (PIL's loop order) do not vectorise and cost three times as much; the integers are the
   same either way. */
enum { STRIP = 16 };

/* One output column of a strip: len = rows * c accumulators. Inlined with len constant in the common case. */
static inline __attribute__((always_inline)) void strip_column(uint8_t *out, ptrdiff_t out_stride, int c,
                                                               int len, const uint8_t *cols, const int32_t *k,
                                                               int n) {
    int32_t acc[STRIP * 4];
    for (int e = 0; e < len; e++)
        acc[e] = 1 << (PRECISION_BITS - 1);
    for (int x = 0; x < n; x++) {
        const uint8_t *col = cols + (size_t)x * len;
        int32_t kv = k[x];
        for (int e = 0; e < len; e++)
            acc[e] += col[e] * kv;
    }
    for (int e = 0, r = 0; e < len; e += c, r++)
        for (int ch = 0; ch < c; ch++)
            out[(ptrdiff_t)r * out_stride + ch] = clip8(acc[e + ch]);
}

/* Rows [0, rows) of src into dst (dw pixels per row). */
static void resample_horizontal(uint8_t *dst, const uint8_t *src, ptrdiff_t src_stride, int rows, int dw,
                                int c, const Coeffs *co) {
    /* the source columns the weights touch: window starts and ends never decrease along the output */
    int x_lo = co->bounds[0], x_hi = co->bounds[2 * (dw - 1)] + co->bounds[2 * dw - 1];
    int ncols = x_hi > x_lo ? x_hi - x_lo : 1;
    uint8_t *t = mallocCheck((size_t)ncols * STRIP * c);
    ptrdiff_t out_stride = (ptrdiff_t)dw * c;
    for (int r0 = 0; r0 < rows; r0 += STRIP) {
        int nr = rows - r0 < STRIP ? rows - r0 : STRIP, len = nr * c;
        for (int r = 0; r < nr; r++) {
            const uint8_t *in = src + (ptrdiff_t)(r0 + r) * src_stride + (size_t)x_lo * c;
            uint8_t *o = t + (size_t)r * c;
            if (c == 3) {
                for (int x = 0; x < x_hi - x_lo; x++, o += len, in += 3) {
                    o[0] = in[0];
                    o[1] = in[1];
                    o[2] = in[2];
                }
            } else {
                for (int x = 0; x < x_hi - x_lo; x++)
                    for (int ch = 0; ch < c; ch++)
                        o[(size_t)x * len + ch] = in[(size_t)x * c + ch];
            }
        }
        uint8_t *out = dst + (size_t)r0 * out_stride;
        for (int xx = 0; xx < dw; xx++) {
            const int32_t *k = co->k + (size_t)xx * co->ksize;
            const uint8_t *cols = t + (size_t)(co->bounds[2 * xx] - x_lo) * len;
            int n = co->bounds[2 * xx + 1];
            if (c == 3 && nr == STRIP)
                strip_column(out + 3 * xx, out_stride, 3, 3 * STRIP, cols, k, n);
            else
                strip_column(out + (size_t)c * xx, out_stride, c, len, cols, k, n);
        }
    }
    free(t);
}

/* dh output rows from src (row stride src_stride, rows indexed by the coefficients' bounds). */
static void resample_vertical(uint8_t *dst, const uint8_t *src, ptrdiff_t src_stride, int dh, int rowlen,
                              const Coeffs *co) {
    const int32_t half = 1 << (PRECISION_BITS - 1);
    int32_t *acc = mallocCheck(sizeof(int32_t) * (size_t)rowlen);
    for (int yy = 0; yy < dh; yy++) {
        const int32_t *k = co->k + (size_t)yy * co->ksize;
        int ymin = co->bounds[2 * yy], n = co->bounds[2 * yy + 1];
        for (int e = 0; e < rowlen; e++)
            acc[e] = half;
        for (int y = 0; y < n; y++) {
            const uint8_t *row = src + (ptrdiff_t)(ymin + y) * src_stride;
            int32_t kv = k[y];
            for (int e = 0; e < rowlen; e++)
                acc[e] += row[e] * kv;
        }
        uint8_t *out = dst + (size_t)yy * rowlen;
        for (int e = 0; e < rowlen; e++)
            out[e] = clip8(acc[e]);
    }
    free(acc);
}

void resample_u8(uint8_t *dst, int dw, int dh, const uint8_t *src, int sw, int sh, ptrdiff_t src_stride,
                 int c, const double *box, ResampleFilter filter) {
    GK_CHECK(dw > 0 && dh > 0 && sw > 0 && sh > 0 && c >= 1 && c <= 4,
             "resample_u8: bad sizes %dx%d -> %dx%d c=%d", sw, sh, dw, dh, c);
    float b[4] = {0.0f, 0.0f, (float)sw, (float)sh};
    if (box)
        for (int i = 0; i < 4; i++)
            b[i] = (float)box[i];
    GK_CHECK(b[0] >= 0 && b[1] >= 0 && b[2] <= sw && b[3] <= sh && b[2] > b[0] && b[3] > b[1],
             "resample_u8: box (%g, %g, %g, %g) is not inside the %d x %d image", b[0], b[1], b[2], b[3], sw,
             sh);
    int need_h = dw != sw || b[0] != 0.0f || b[2] != (float)dw;
    int need_v = dh != sh || b[1] != 0.0f || b[3] != (float)dh;
    if (!need_h && !need_v) {
        for (int y = 0; y < dh; y++)
            memcpy(dst + (size_t)y * dw * c, src + (ptrdiff_t)y * src_stride, (size_t)dw * c);
        return;
    }
    Coeffs cv = {0}, ch = {0};
    precompute_coeffs(&cv, sh, b[1], b[3], dh, filter);
    int yfirst = cv.bounds[0], ylast = cv.bounds[2 * dh - 2] + cv.bounds[2 * dh - 1];
    if (need_h) {
        precompute_coeffs(&ch, sw, b[0], b[2], dw, filter);
        if (!need_v) { /* the same rows, resampled horizontally: straight into dst */
            resample_horizontal(dst, src, src_stride, sh, dw, c, &ch);
        } else {
            int rows = ylast - yfirst;
            uint8_t *tmp = mallocCheck((size_t)dw * c * (rows > 0 ? rows : 1));
            resample_horizontal(tmp, src + (ptrdiff_t)yfirst * src_stride, src_stride, rows, dw, c, &ch);
            for (int i = 0; i < dh; i++)
                cv.bounds[2 * i] -= yfirst;
            resample_vertical(dst, tmp, (ptrdiff_t)dw * c, dh, dw * c, &cv);
            free(tmp);
        }
        coeffs_free(&ch);
    } else {
        resample_vertical(dst, src, src_stride, dh, dw * c, &cv);
    }
    coeffs_free(&cv);
}
