/* image.c: image files to uint8 RGB pixels. JPEG goes through libjpeg(-turbo)'s jpeglib.h API, because only
 * it offers reduced-size DCT decoding and row/column cropping; PNG, BMP, GIF, PNM and PSD go through
 * stb_image.
 *
 * The decision a reader must know: libjpeg reports errors by calling error_exit, which must not return, so
 * every libjpeg call runs under a setjmp and error_exit longjmps back with the message; everything the
 * decoder owns lives in one struct reached through a pointer, so nothing it needs after the jump is held in a
 * register. A truncated JPEG is an error (PIL raises "image file is truncated" too); libjpeg's other warnings
 * (corrupt but decodable entropy data) are counted and stay silent unless the caller asks, as PIL's decoder
 * keeps them. */
#include "image.h"

#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <jerror.h>

/* stb_image: memory input only, and only formats it recognises by a magic number (TGA is left out because its
   header test accepts random bytes, and JPEG because libjpeg handles it). This is the project's one copy of
   the implementation; other files include stb/stb_image.h for declarations only. */
#define STBI_NO_STDIO
#define STBI_NO_LINEAR
#define STBI_NO_HDR
#define STBI_ONLY_PNG
#define STBI_ONLY_BMP
#define STBI_ONLY_GIF
#define STBI_ONLY_PNM
#define STBI_ONLY_PSD
#define STB_IMAGE_IMPLEMENTATION
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#endif
#include <stb/stb_image.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

void image_free(Image *im) {
    if (!im) return;
    free(im->pix);
    im->pix = NULL;
    im->w = im->h = im->c = 0;
}

static const char *stb_reason(void) {
    const char *r = stbi_failure_reason();
    return r ? r : "unknown reason";
}

static int is_jpeg(const uint8_t *buf, size_t len) {
    return len >= 3 && buf[0] == 0xFF && buf[1] == 0xD8 && buf[2] == 0xFF;
}

/* ---- libjpeg error handling ---------------------------------------------------------------------------- */

typedef struct JpegErrMgr {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    int warnings;
    FILE *warn_to;
    char msg[JMSG_LENGTH_MAX];
} JpegErrMgr;

static void jpeg_on_error(j_common_ptr cinfo) {
    JpegErrMgr *e = (JpegErrMgr *)cinfo->err;
    cinfo->err->format_message(cinfo, e->msg);
    longjmp(e->jump, 1);
}

/* level < 0: a warning; level >= 0: trace output, which we never want. */
static void jpeg_on_message(j_common_ptr cinfo, int level) {
    if (level >= 0) return;
    JpegErrMgr *e = (JpegErrMgr *)cinfo->err;
    if (cinfo->err->msg_code == JWRN_JPEG_EOF) { /* the data ran out: the file is truncated */
        cinfo->err->format_message(cinfo, e->msg);
        longjmp(e->jump, 1);
    }
    e->warnings++;
    if (e->warn_to && e->warnings <= 3) {
        char m[JMSG_LENGTH_MAX];
        cinfo->err->format_message(cinfo, m);
        fprintf(e->warn_to, "jpeg warning: %s\n", m);
    }
}

static void jpeg_no_output(j_common_ptr cinfo) {
    (void)cinfo;
}

/* Everything the decoder touches after setjmp: reached through one pointer, so it survives the longjmp. */
typedef struct JpegDec {
    struct jpeg_decompress_struct cinfo;
    JpegErrMgr jerr;
    uint8_t *pix;  /* the output image */
    uint8_t *cmyk; /* one CMYK row, for the conversion to RGB */
} JpegDec;

/* jpeg_mem_src and everything after it can call error_exit, so the caller runs them after its setjmp. */
static void jpeg_dec_init(JpegDec *d, FILE *warn_to) {
    memset(d, 0, sizeof *d);
    d->cinfo.err = jpeg_std_error(&d->jerr.pub);
    d->jerr.pub.error_exit = jpeg_on_error;
    d->jerr.pub.emit_message = jpeg_on_message;
    d->jerr.pub.output_message = jpeg_no_output;
    d->jerr.warn_to = warn_to;
    jpeg_create_decompress(&d->cinfo);
}

static void jpeg_dec_release(JpegDec *d) {
    jpeg_destroy_decompress(&d->cinfo);
    free(d->cmyk);
    d->cmyk = NULL;
}

/* PIL's CMYK -> RGB (Convert.c cmyk2rgb) after PIL's "CMYK;I" unpacking, which PIL applies to every CMYK JPEG
   ("assume adobe conventions"): the file stores inverted ink, so with c' = 255 - C and k' = 255 - K as
   libjpeg returns them, R = k' - MULDIV255(255 - c', k'), and likewise for G and B. */
static inline uint8_t muldiv255(int a, int b) {
    int t = a * b + 128;
    return (uint8_t)(((t >> 8) + t) >> 8);
}

static void cmyk_inverted_to_rgb(uint8_t *rgb, const uint8_t *cmyk, int n) {
    for (int i = 0; i < n; i++, cmyk += 4, rgb += 3) {
        int nk = cmyk[3];
        for (int ch = 0; ch < 3; ch++) {
            int v = nk - muldiv255(255 - cmyk[ch], nk);
            rgb[ch] = (uint8_t)(v < 0 ? 0 : v);
        }
    }
}

static int jpeg_dims(const uint8_t *buf, size_t len, int *w, int *h, GkErr *err) {
    JpegDec dec, *d = &dec;
    jpeg_dec_init(d, NULL);
    if (setjmp(d->jerr.jump)) {
        jpeg_dec_release(d);
        return gk_fail(err, "corrupt JPEG header: %s", d->jerr.msg);
    }
    jpeg_mem_src(&d->cinfo, buf, (unsigned long)len);
    jpeg_read_header(&d->cinfo, TRUE);
    *w = (int)d->cinfo.image_width;
    *h = (int)d->cinfo.image_height;
    jpeg_dec_release(d);
    return 0;
}

/* Clamps a region to [0, W] x [0, H]; -1 when nothing of it is left. */
static int clamp_region(ImageRegion *r, const ImageRegion *in, int W, int H) {
    double x0 = fmax(in->x, 0.0), y0 = fmax(in->y, 0.0);
    double x1 = fmin(in->x + in->w, (double)W), y1 = fmin(in->y + in->h, (double)H);
    if (!(x1 > x0 && y1 > y0)) return -1;
    r->x = x0;
    r->y = y0;
    r->w = x1 - x0;
    r->h = y1 - y0;
    return 0;
}

static int decode_jpeg(Image *out, ImageRegion *region_out, double *scale_out, const uint8_t *buf, size_t len,
                       const ImageRegion *region, int min_w, int min_h, int64_t max_pixels, int *n_warnings,
                       FILE *warn_to, GkErr *err) {
    JpegDec dec, *d = &dec;
    jpeg_dec_init(d, warn_to);
    if (setjmp(d->jerr.jump)) {
        if (n_warnings) *n_warnings = d->jerr.warnings;
        free(d->pix);
        jpeg_dec_release(d);
        return gk_fail(err, "corrupt JPEG: %s", d->jerr.msg);
    }
    struct jpeg_decompress_struct *ci = &d->cinfo;
    jpeg_mem_src(ci, buf, (unsigned long)len);
    jpeg_read_header(ci, TRUE);
    int W = (int)ci->image_width, H = (int)ci->image_height;
    if (max_pixels > 0 && (int64_t)W * H > max_pixels) {
        jpeg_dec_release(d);
        return gk_fail(err, "JPEG of %d x %d pixels exceeds the decompression-bomb limit of %lld pixels", W,
                       H, (long long)max_pixels);
    }
    ImageRegion reg = {0, 0, W, H};
    if (region && clamp_region(&reg, region, W, H)) {
        jpeg_dec_release(d);
        return gk_fail(err, "region (%g, %g, %g, %g) lies outside the %d x %d image", region->x, region->y,
                       region->w, region->h, W, H);
    }
    /* The smallest DCT scale s/8 at which the region keeps min_w x min_h pixels. */
    int s = 8;
    if (region && min_w > 0 && min_h > 0)
        for (s = 1; s < 8; s++)
            if (reg.w * s / 8.0 >= min_w && reg.h * s / 8.0 >= min_h) break;
    ci->scale_num = (unsigned)s;
    ci->scale_denom = 8;
    int cmyk = ci->jpeg_color_space == JCS_CMYK || ci->jpeg_color_space == JCS_YCCK;
    /* libjpeg expands grayscale to RGB by replication, as convert("RGB") does */
    ci->out_color_space = cmyk ? JCS_CMYK : JCS_RGB;
    jpeg_start_decompress(ci);
    int ow = (int)ci->output_width, oh = (int)ci->output_height;
    /* The region in decoded pixels: exact, because s/8 is a dyadic fraction. */
    double sc = s / 8.0;
    double dx0 = reg.x * sc, dy0 = reg.y * sc, dx1 = (reg.x + reg.w) * sc, dy1 = (reg.y + reg.h) * sc;
    JDIMENSION xoff = 0, cw = (JDIMENSION)ow;
    int y0 = 0, y1 = oh;
    if (region) {
        /* One column more on each side: the fancy chroma upsampler replicates chroma at the edges of a
           cropped scanline, so only columns with decoded neighbours equal the full decode's. */
        int cx0 = (int)floor(dx0) - 1, cx1 = (int)ceil(dx1) + 1;
        y0 = (int)floor(dy0);
        y1 = (int)ceil(dy1);
        if (cx0 < 0) cx0 = 0;
        if (cx1 > ow) cx1 = ow;
        if (y1 > oh) y1 = oh;
        if (cx1 <= cx0) cx1 = cx0 + 1;
        if (y1 <= y0) y1 = y0 + 1;
        xoff = (JDIMENSION)cx0;
        cw = (JDIMENSION)(cx1 - cx0);
        /* libjpeg widens the columns to whole iMCUs and tells us where they start. */
        if (cw < (JDIMENSION)ow) jpeg_crop_scanline(ci, &xoff, &cw);
        if (y0 > 0) jpeg_skip_scanlines(ci, (JDIMENSION)y0);
    }
    int w = (int)ci->output_width, h = y1 - y0;
    d->pix = mallocCheck((size_t)w * h * 3);
    if (cmyk) d->cmyk = mallocCheck((size_t)w * 4);
    while ((int)ci->output_scanline < y1) {
        int y = (int)ci->output_scanline - y0;
        JSAMPROW row = cmyk ? d->cmyk : d->pix + (size_t)y * w * 3;
        if (jpeg_read_scanlines(ci, &row, 1) != 1) break;
        if (cmyk) cmyk_inverted_to_rgb(d->pix + (size_t)y * w * 3, d->cmyk, w);
    }
    if ((int)ci->output_scanline < y1) { /* a suspending source would end here; jpeg_mem_src never suspends */
        free(d->pix);
        jpeg_dec_release(d);
        return gk_fail(err, "corrupt JPEG: decoding stopped at row %d of %d", (int)ci->output_scanline, y1);
    }
    if (n_warnings) *n_warnings = d->jerr.warnings;
    jpeg_dec_release(d); /* aborts the rows below the region without decoding them */
    out->pix = d->pix;
    out->w = w;
    out->h = h;
    out->c = 3;
    if (scale_out) *scale_out = sc;
    if (region_out) {
        region_out->x = dx0 - (double)xoff;
        region_out->y = dy0 - (double)y0;
        region_out->w = dx1 - dx0;
        region_out->h = dy1 - dy0;
    }
    return 0;
}

/* A PNG's size from its IHDR chunk: stb refuses sizes it cannot allocate with only "unknown image type", and
   a decompression bomb deserves its own message. */
static int png_header_dims(const uint8_t *buf, size_t len, int64_t *w, int64_t *h) {
    if (len < 24 || memcmp(buf, "\x89PNG\r\n\x1a\n", 8) != 0 || memcmp(buf + 12, "IHDR", 4) != 0) return 0;
    *w = ((int64_t)buf[16] << 24) | (buf[17] << 16) | (buf[18] << 8) | buf[19];
    *h = ((int64_t)buf[20] << 24) | (buf[21] << 16) | (buf[22] << 8) | buf[23];
    return 1;
}

static int decode_stb(Image *out, ImageRegion *region_out, double *scale_out, const uint8_t *buf, size_t len,
                      const ImageRegion *region, int64_t max_pixels, GkErr *err) {
    if (len > INT_MAX)
        return gk_fail(err, "image file of %zu bytes is too large for the PNG/BMP/GIF decoder", len);
    int64_t pw, ph;
    if (max_pixels > 0 && png_header_dims(buf, len, &pw, &ph) && pw * ph > max_pixels)
        return gk_fail(err, "PNG of %lld x %lld pixels exceeds the decompression-bomb limit of %lld pixels",
                       (long long)pw, (long long)ph, (long long)max_pixels);
    int w, h, comp;
    if (!stbi_info_from_memory(buf, (int)len, &w, &h, &comp))
        return gk_fail(err, "not a JPEG, PNG, BMP, GIF, PNM or PSD image, or a corrupt one (%s)",
                       stb_reason());
    if (max_pixels > 0 && (int64_t)w * h > max_pixels)
        return gk_fail(err, "image of %d x %d pixels exceeds the decompression-bomb limit of %lld pixels", w,
                       h, (long long)max_pixels);
    ImageRegion reg = {0, 0, w, h};
    if (region && clamp_region(&reg, region, w, h))
        return gk_fail(err, "region (%g, %g, %g, %g) lies outside the %d x %d image", region->x, region->y,
                       region->w, region->h, w, h);
    /* req_comp = 3: grayscale is replicated and alpha dropped, as convert("RGB") does. */
    uint8_t *pix = stbi_load_from_memory(buf, (int)len, &w, &h, &comp, 3);
    if (!pix) return gk_fail(err, "corrupt image: %s", stb_reason());
    out->pix = pix;
    out->w = w;
    out->h = h;
    out->c = 3;
    if (scale_out) *scale_out = 1.0;
    if (region_out) *region_out = reg;
    return 0;
}

int image_probe(const uint8_t *buf, size_t len, int *w, int *h, GkErr *err) {
    if (!buf || len == 0) return gk_fail(err, "empty image file");
    if (is_jpeg(buf, len)) return jpeg_dims(buf, len, w, h, err);
    if (len > INT_MAX)
        return gk_fail(err, "image file of %zu bytes is too large for the PNG/BMP/GIF decoder", len);
    int comp;
    if (!stbi_info_from_memory(buf, (int)len, w, h, &comp))
        return gk_fail(err, "not a JPEG, PNG, BMP, GIF, PNM or PSD image, or a corrupt one (%s)",
                       stb_reason());
    return 0;
}

int image_decode_ex(Image *out, ImageRegion *region_out, double *scale_out, const uint8_t *buf, size_t len,
                    const ImageRegion *region, int min_w, int min_h, int64_t max_pixels, int *n_warnings,
                    FILE *warn_to, GkErr *err) {
    memset(out, 0, sizeof *out);
    if (n_warnings) *n_warnings = 0;
    if (!buf || len == 0) return gk_fail(err, "empty image file");
    if (is_jpeg(buf, len))
        return decode_jpeg(out, region_out, scale_out, buf, len, region, min_w, min_h, max_pixels, n_warnings,
                           warn_to, err);
    return decode_stb(out, region_out, scale_out, buf, len, region, max_pixels, err);
}

int image_decode(Image *out, ImageRegion *region_out, double *scale_out, const uint8_t *buf, size_t len,
                 const ImageRegion *region, int min_w, int min_h, int64_t max_pixels, GkErr *err) {
    return image_decode_ex(out, region_out, scale_out, buf, len, region, min_w, min_h, max_pixels, NULL, NULL,
                           err);
}
