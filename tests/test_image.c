/* test_image: decoding. JPEGs (RGB, grayscale, CMYK and YCCK with the Adobe marker, progressive) made here
 * with libjpeg's compressor and PNG/BMP made with stb_image_write are decoded and compared with their source
 * pixels; the DCT-scaled region decode is compared with a full decode (exactly where libjpeg promises it,
 * within a measured tolerance where a reduced DCT replaces PIL's antialiased downscale); a corpus of bad
 * inputs (empty, truncated, garbage, decompression bombs, corrupt chunks, random bit flips) must give -1 or a
 * valid image, never a crash. Run it under the sanitizers too (build with -DGKA_SANITIZE=ON). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>

#define STB_IMAGE_WRITE_IMPLEMENTATION
#define STBI_WRITE_NO_STDIO
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#endif
#include <stb/stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

#include "core.h"
#include "image.h"
#include "philox.h"
#include "resample.h"

#include "expect.h"

/* ---- sources ------------------------------------------------------------------------------------------- */

/* A photo-like test image: gradients, a texture, a hard edge and noise (so JPEG has real entropy to code);
   noise = 0 leaves it smooth, for checks of colour conversion that JPEG's quantisation must not drown. */
static uint8_t *synth_image_noise(int w, int h, int c, uint64_t seed, int noise) {
    uint8_t *p = mallocCheck((size_t)w * h * c);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int ch = 0; ch < c; ch++) {
                double v = 40 + 150.0 * x / w + 30 * sin(0.15 * y + ch) + 25 * cos(0.07 * x * (ch + 1));
                if (x > w / 2 && y < h / 3) v = 220 - 0.3 * v; /* an edge */
                uint32_t r = philox_draw(seed, RNG_TEST, (uint64_t)(y * w + x), (uint32_t)ch).v[0];
                if (noise) v += (double)(r % (2 * noise + 1)) - noise;
                p[((size_t)y * w + x) * c + ch] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
    return p;
}

static uint8_t *synth_image(int w, int h, int c, uint64_t seed) {
    return synth_image_noise(w, h, c, seed, 12);
}

/* libjpeg's compressor into memory; in_cs/jpeg_cs pick the input layout and the stored colour space. */
/* flags: 1 progressive, 2 no chroma subsampling (4:4:4). */
static uint8_t *jpeg_encode(const uint8_t *pix, int w, int h, int comps, J_COLOR_SPACE in_cs,
                            J_COLOR_SPACE jpeg_cs, int quality, int flags, size_t *len) {
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr je;
    ci.err = jpeg_std_error(&je);
    jpeg_create_compress(&ci);
    unsigned char *out = NULL;
    unsigned long outlen = 0;
    jpeg_mem_dest(&ci, &out, &outlen);
    ci.image_width = (JDIMENSION)w;
    ci.image_height = (JDIMENSION)h;
    ci.input_components = comps;
    ci.in_color_space = in_cs;
    jpeg_set_defaults(&ci);
    jpeg_set_colorspace(&ci, jpeg_cs); /* CMYK and YCCK get the Adobe marker here */
    jpeg_set_quality(&ci, quality, TRUE);
    if (flags & 2)
        for (int k = 0; k < ci.num_components; k++)
            ci.comp_info[k].h_samp_factor = ci.comp_info[k].v_samp_factor = 1;
    if (flags & 1) jpeg_simple_progression(&ci);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW row = (JSAMPROW)(pix + (size_t)ci.next_scanline * w * comps);
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    *len = outlen;
    return out;
}

typedef struct MemBuf {
    uint8_t *p;
    size_t n;
} MemBuf;

static void membuf_write(void *ctx, void *data, int size) {
    MemBuf *m = ctx;
    m->p = realloc(m->p, m->n + (size_t)size);
    GK_CHECK(m->p, "out of memory");
    memcpy(m->p + m->n, data, (size_t)size);
    m->n += (size_t)size;
}

/* Mean and max absolute difference of two byte arrays. */
static double mean_abs(const uint8_t *a, const uint8_t *b, size_t n, int *maxd) {
    double s = 0;
    int m = 0;
    for (size_t i = 0; i < n; i++) {
        int d = abs((int)a[i] - (int)b[i]);
        s += d;
        if (d > m) m = d;
    }
    if (maxd) *maxd = m;
    return s / (double)n;
}

/* A decoded image has a shape and pixels; reading every byte lets the sanitizer catch a short allocation. */
static int image_valid(const Image *im) {
    if (!im->pix || im->w <= 0 || im->h <= 0 || im->c != 3) return 0;
    volatile unsigned sum = 0;
    for (size_t i = 0; i < (size_t)im->w * im->h * 3; i++)
        sum += im->pix[i];
    (void)sum;
    return 1;
}

/* ---- formats ------------------------------------------------------------------------------------------- */

static void test_jpeg_rgb_gray_progressive(void) {
    const int w = 67, h = 45;
    uint8_t *rgb = synth_image_noise(w, h, 3, 1, 0), *gray = synth_image(w, h, 1, 2);
    GkErr err;
    /* a smooth image: 4:4:4 shows the colour conversion, 4:2:0 (libjpeg's default, most ImageNet files) adds
       the error of halved chroma resolution at the edge */
    for (int flags = 0; flags < 4; flags++) {
        size_t len;
        uint8_t *jpg = jpeg_encode(rgb, w, h, 3, JCS_RGB, JCS_YCbCr, 95, flags, &len);
        int pw = 0, ph = 0;
        EXPECT(image_probe(jpg, len, &pw, &ph, &err) == 0 && pw == w && ph == h);
        Image im;
        ImageRegion r;
        double sc = 0;
        EXPECT(image_decode(&im, &r, &sc, jpg, len, NULL, 0, 0, IMAGE_MAX_PIXELS_DEFAULT, &err) == 0);
        EXPECT(im.w == w && im.h == h && im.c == 3 && sc == 1.0 && r.x == 0 && r.w == w && r.h == h);
        int maxd;
        double md = mean_abs(im.pix, rgb, (size_t)w * h * 3, &maxd);
        printf("  jpeg rgb q95 %s%s: mean |diff| %.2f, max %d\n", flags & 2 ? "4:4:4" : "4:2:0",
               flags & 1 ? " progressive" : "", md, maxd);
        if (flags & 2)
            EXPECT(md < 1.0 && maxd < 16); /* the max is at the hard edge */
        else
            EXPECT(md < 2.0 && maxd < 60);
        image_free(&im);
        free(jpg);
    }
    size_t len;
    uint8_t *jpg = jpeg_encode(gray, w, h, 1, JCS_GRAYSCALE, JCS_GRAYSCALE, 95, 0, &len);
    Image im;
    EXPECT(image_decode(&im, NULL, NULL, jpg, len, NULL, 0, 0, 0, &err) == 0);
    EXPECT(im.c == 3 && im.w == w && im.h == h);
    int equal_channels = 1, maxd = 0;
    double s = 0;
    for (int i = 0; i < w * h; i++) {
        const uint8_t *p = im.pix + 3 * i;
        equal_channels &= p[0] == p[1] && p[1] == p[2];
        int d = abs(p[0] - gray[i]);
        s += d;
        if (d > maxd) maxd = d;
    }
    printf("  jpeg gray q95 -> rgb: mean |diff| %.2f, max %d\n", s / (w * h), maxd);
    EXPECT(equal_channels); /* L -> RGB replicates, as convert("RGB") does */
    EXPECT(s / (w * h) < 2.0 && maxd < 20);
    image_free(&im);
    free(jpg);
    free(rgb);
    free(gray);
}

/* PIL reads every CMYK JPEG as "CMYK;I" (inverted, Adobe convention) and converts with cmyk2rgb. */
static void test_jpeg_cmyk(void) {
    const int w = 40, h = 24;
    uint8_t *ink = synth_image_noise(w, h, 4, 3, 0); /* C, M, Y, K as PIL holds them after inversion */
    uint8_t *stored = mallocCheck((size_t)w * h * 4), *want = mallocCheck((size_t)w * h * 3);
    for (int i = 0; i < w * h * 4; i++)
        stored[i] = (uint8_t)(255 - ink[i]);
    for (int i = 0; i < w * h; i++) {
        int nk = 255 - ink[4 * i + 3];
        for (int ch = 0; ch < 3; ch++) {
            int t = ink[4 * i + ch] * nk + 128;
            int v = nk - (((t >> 8) + t) >> 8);
            want[3 * i + ch] = (uint8_t)(v < 0 ? 0 : v);
        }
    }
    J_COLOR_SPACE spaces[2] = {JCS_CMYK, JCS_YCCK};
    for (int k = 0; k < 2; k++) {
        size_t len;
        uint8_t *jpg = jpeg_encode(stored, w, h, 4, JCS_CMYK, spaces[k], 100, 2, &len);
        Image im;
        GkErr err;
        EXPECT(image_decode(&im, NULL, NULL, jpg, len, NULL, 0, 0, 0, &err) == 0);
        EXPECT(im.c == 3 && im.w == w && im.h == h);
        int maxd;
        double md = mean_abs(im.pix, want, (size_t)w * h * 3, &maxd);
        printf("  jpeg %s (Adobe) -> rgb: mean |diff| %.2f, max %d\n", k ? "YCCK" : "CMYK", md, maxd);
        EXPECT(md < 1.0 && maxd < 6); /* inverted or uninverted ink would be off by ~100 */
        image_free(&im);
        free(jpg);
    }
    free(ink);
    free(stored);
    free(want);
}

static void test_png_bmp(void) {
    const int w = 33, h = 21;
    GkErr err;
    for (int comp = 1; comp <= 4; comp++) {
        uint8_t *src = synth_image(w, h, comp, 10 + (uint64_t)comp);
        for (int fmt = 0; fmt < 2; fmt++) {
            if (fmt == 1 && comp == 2) continue; /* BMP has no gray+alpha */
            MemBuf m = {0};
            int ok = fmt == 0 ? stbi_write_png_to_func(membuf_write, &m, w, h, comp, src, w * comp)
                              : stbi_write_bmp_to_func(membuf_write, &m, w, h, comp, src);
            EXPECT(ok);
            int pw, ph;
            EXPECT(image_probe(m.p, m.n, &pw, &ph, &err) == 0 && pw == w && ph == h);
            Image im;
            ImageRegion r;
            double sc;
            ImageRegion reg = {3, 2, 10, 9};
            EXPECT(image_decode(&im, &r, &sc, m.p, m.n, &reg, 4, 4, 0, &err) == 0);
            EXPECT(im.c == 3 && im.w == w && im.h == h && sc == 1.0);
            EXPECT(r.x == 3 && r.y == 2 && r.w == 10 && r.h == 9); /* non-JPEG: the region as given */
            int exact = 1;
            for (int i = 0; i < w * h; i++)
                for (int ch = 0; ch < 3; ch++) {
                    /* gray replicates; alpha is dropped (convert("RGB")) */
                    uint8_t want = comp <= 2 ? src[i * comp] : src[i * comp + ch];
                    exact &= im.pix[3 * i + ch] == want;
                }
            if (!exact)
                printf("  %s with %d channels does not decode to its source\n", fmt ? "BMP" : "PNG", comp);
            EXPECT(exact);
            image_free(&im);
            free(m.p);
        }
        free(src);
    }
}

/* ---- the DCT-scaled region decode ---------------------------------------------------------------------- */

/* part's columns [floor(r.x), ceil(r.x + r.w)) and all its rows against whole, where part's (0, 0) is whole's
   (x0, y0). */
static int region_equal(const Image *part, const ImageRegion *r, const Image *whole, int x0, int y0) {
    int c0 = (int)floor(r->x), c1 = (int)ceil(r->x + r->w), eq = 1;
    if (c1 > part->w) return 0;
    for (int y = 0; y < part->h; y++)
        eq &= memcmp(part->pix + ((size_t)y * part->w + c0) * 3,
                     whole->pix + ((size_t)(y + y0) * whole->w + x0 + c0) * 3, (size_t)(c1 - c0) * 3) == 0;
    return eq;
}

static void test_region_decode(void) {
    const int W = 500, H = 375;
    uint8_t *rgb = synth_image(W, H, 3, 20);
    size_t len;
    uint8_t *jpg = jpeg_encode(rgb, W, H, 3, JCS_RGB, JCS_YCbCr, 90, 0, &len);
    GkErr err;
    Image full;
    EXPECT(image_decode(&full, NULL, NULL, jpg, len, NULL, 0, 0, 0, &err) == 0);
    ImageRegion reg = {100, 50, 300, 250};
    /* the scale rule: the smallest s/8 with 300 s/8 >= min and 250 s/8 >= min */
    int mins[] = {1, 31, 32, 120, 125, 200, 219, 250, 251, 400};
    int want_s[] = {1, 1, 2, 4, 4, 7, 8, 8, 8, 8};
    for (int k = 0; k < 10; k++) {
        Image im;
        ImageRegion r;
        double sc = 0;
        EXPECT(image_decode(&im, &r, &sc, jpg, len, &reg, mins[k], mins[k], 0, &err) == 0);
        EXPECT(sc == want_s[k] / 8.0);
        /* region_out: the region scaled, relative to the decoded rows and the iMCU-aligned first column */
        EXPECT(r.w == 300 * sc && r.h == 250 * sc);
        EXPECT(r.y == 50 * sc - floor(50 * sc));
        EXPECT(r.x >= 0 && r.x < 16 * sc + 1 && r.x + r.w <= im.w + 1e-9 && r.y + r.h <= im.h + 1e-9);
        EXPECT(im.h == (int)(ceil(300 * sc) - floor(50 * sc)));
        image_free(&im);
    }
    /* At 8/8 the cropped decode must equal the full decode over the region's columns and rows. */
    Image im;
    ImageRegion r;
    double sc;
    EXPECT(image_decode(&im, &r, &sc, jpg, len, &reg, 280, 280, 0, &err) == 0);
    EXPECT(sc == 1.0 && r.x == floor(r.x) && r.y == 0);
    int same = region_equal(&im, &r, &full, 100 - (int)r.x, 50);
    printf("  region decode at 8/8 equals the full decode's pixels: %s\n", same ? "yes" : "NO");
    EXPECT(same);
    image_free(&im);
    /* At s/8 < 1 the cropped decode must equal a whole-image decode at the same scale ... */
    for (int s = 1; s < 8; s++) {
        int m = (int)floor(250 * s / 8.0);
        Image whole, part;
        ImageRegion all = {0, 0, W, H}, rw, rp;
        double sw, sp;
        EXPECT(image_decode(&whole, &rw, &sw, jpg, len, &all, (int)floor(W * s / 8.0),
                            (int)floor(H * s / 8.0), 0, &err) == 0);
        EXPECT(image_decode(&part, &rp, &sp, jpg, len, &reg, m, m, 0, &err) == 0);
        EXPECT(sw == s / 8.0 && sp == s / 8.0);
        /* the part's first column and row in the whole decode (whole numbers: s/8 is dyadic) */
        int eq = region_equal(&part, &rp, &whole, (int)(100 * sp - rp.x), (int)floor(50 * sp));
        if (!eq) printf("  region decode at %d/8 differs from the whole decode at %d/8\n", s, s);
        EXPECT(eq);
        /* ... and be close to the full-resolution decode resampled (antialiased bicubic) to the region's
         * size. */
        int ow = (int)(300 * sp), oh = (int)(250 * sp);
        uint8_t *a = mallocCheck((size_t)ow * oh * 3), *b = mallocCheck((size_t)ow * oh * 3);
        double box_full[4] = {100, 50, 400, 300};
        resample_u8(a, ow, oh, full.pix, W, H, (ptrdiff_t)W * 3, 3, box_full, RESAMPLE_BICUBIC);
        double box_part[4] = {rp.x, rp.y, rp.x + rp.w, rp.y + rp.h};
        resample_u8(b, ow, oh, part.pix, part.w, part.h, (ptrdiff_t)part.w * 3, 3, box_part,
                    RESAMPLE_BICUBIC);
        int maxd;
        double md = mean_abs(a, b, (size_t)ow * oh * 3, &maxd);
        printf("  DCT %d/8 region vs full decode + bicubic downscale (%dx%d): mean |diff| %.2f, max %d\n", s,
               ow, oh, md, maxd);
        EXPECT(md < 2.5 && maxd < 32); /* measured 0.8 to 1.8, max 7 to 15, on this noisy image */
        free(a);
        free(b);
        image_free(&whole);
        image_free(&part);
    }
    /* A progressive file takes the same cropped path. */
    size_t plen;
    uint8_t *pjpg = jpeg_encode(rgb, W, H, 3, JCS_RGB, JCS_YCbCr, 90, 1, &plen);
    Image pfull, ppart;
    EXPECT(image_decode(&pfull, NULL, NULL, pjpg, plen, NULL, 0, 0, 0, &err) == 0);
    EXPECT(image_decode(&ppart, &r, &sc, pjpg, plen, &reg, 300, 250, 0, &err) == 0);
    EXPECT(sc == 1.0 && region_equal(&ppart, &r, &pfull, 100 - (int)r.x, 50));
    image_free(&pfull);
    image_free(&ppart);
    free(pjpg);
    /* Decode timings on one core (informational). */
    double t0 = gk_now();
    int n = 0;
    for (; n < 100; n++) {
        Image t;
        image_decode(&t, NULL, NULL, jpg, len, NULL, 0, 0, 0, &err);
        image_free(&t);
    }
    double t1 = gk_now();
    for (int k = 0; k < 100; k++) {
        Image t;
        image_decode(&t, NULL, NULL, jpg, len, &reg, 224, 224, 0, &err);
        image_free(&t);
    }
    double t2 = gk_now();
    printf("  500x375 q90 JPEG (%zu bytes): full decode %.2f ms, 300x250 region for 224 %.2f ms\n", len,
           (t1 - t0) * 1e3 / n, (t2 - t1) * 1e3 / n);
    image_free(&full);
    free(jpg);
    free(rgb);
}

/* ---- bad input ----------------------------------------------------------------------------------------- */

/* Every call returns -1 with a message, or 0 with a valid image. */
static int try_decode(const uint8_t *buf, size_t len, int with_region, int *n_ok) {
    Image im;
    GkErr err;
    err.msg[0] = '\0';
    ImageRegion reg = {5, 3, 40, 30};
    int rc = image_decode(&im, NULL, NULL, buf, len, with_region ? &reg : NULL, 16, 16, 1 << 24, &err);
    if (rc == 0) {
        int ok = image_valid(&im);
        image_free(&im);
        if (n_ok) (*n_ok)++;
        return ok;
    }
    int w, h;
    image_probe(buf, len, &w, &h, &err); /* must not crash either */
    return rc == -1 && err.msg[0] != '\0';
}

static void test_bad_inputs(void) {
    GkErr err;
    Image im;
    uint8_t *rgb = synth_image(64, 48, 3, 30);
    size_t len, plen;
    uint8_t *jpg = jpeg_encode(rgb, 64, 48, 3, JCS_RGB, JCS_YCbCr, 90, 0, &len);
    uint8_t *pjpg = jpeg_encode(rgb, 64, 48, 3, JCS_RGB, JCS_YCbCr, 90, 1, &plen);
    MemBuf png = {0};
    stbi_write_png_to_func(membuf_write, &png, 64, 48, 3, rgb, 64 * 3);

    EXPECT(image_decode(&im, NULL, NULL, jpg, 0, NULL, 0, 0, 0, &err) == -1);
    EXPECT(strstr(err.msg, "empty") != NULL);
    EXPECT(image_decode(&im, NULL, NULL, NULL, 0, NULL, 0, 0, 0, &err) == -1);
    int w, h;
    EXPECT(image_probe(jpg, 0, &w, &h, &err) == -1);

    /* truncated JPEGs: PIL refuses them ("image file is truncated"), and so do we once the data runs out */
    size_t cuts[] = {1, 2, 3, 4, 10, 20, 100, 300, len / 2, len - 100, len - 3, len - 2, len - 1};
    int all_ok = 1;
    for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
        all_ok &= try_decode(jpg, cuts[k], 0, NULL) && try_decode(jpg, cuts[k], 1, NULL);
        all_ok &= try_decode(pjpg, cuts[k] * plen / len, 0, NULL);
    }
    EXPECT(all_ok);
    EXPECT(image_decode(&im, NULL, NULL, jpg, len / 2, NULL, 0, 0, 0, &err) == -1);
    printf("  truncated JPEG: %s\n", err.msg);
    EXPECT(strstr(err.msg, "Premature end") != NULL);

    /* garbage, alone and behind JPEG and PNG magic numbers */
    uint8_t garbage[4096];
    for (int seed = 0; seed < 50; seed++) {
        for (size_t i = 0; i < sizeof garbage; i++)
            garbage[i] = (uint8_t)philox_draw(seed, RNG_TEST, i, 1).v[0];
        if (seed % 3 == 1) memcpy(garbage, "\xFF\xD8\xFF\xE0", 4);
        if (seed % 3 == 2) memcpy(garbage, "\x89PNG\r\n\x1a\n", 8);
        all_ok &= try_decode(garbage, sizeof garbage, seed & 1, NULL);
    }
    EXPECT(all_ok);
    EXPECT(image_decode(&im, NULL, NULL, (const uint8_t *)"hello", 5, NULL, 0, 0, 0, &err) == -1);

    /* decompression bombs: a JPEG header claiming 65500 x 65500 (libjpeg's largest), PNG ones 18000 x 18000
       and 100000 x 100000 */
    uint8_t *bomb = mallocCheck(len);
    memcpy(bomb, jpg, len);
    int patched = 0;
    for (size_t i = 0; i + 9 < len; i++)
        if (bomb[i] == 0xFF &&
            bomb[i + 1] == 0xC0) {            /* SOF0: FF C0, length(2), precision(1), height(2), width(2) */
            bomb[i + 5] = bomb[i + 7] = 0xFF; /* 0xFFDC = 65500 */
            bomb[i + 6] = bomb[i + 8] = 0xDC;
            patched = 1;
            break;
        }
    EXPECT(patched);
    EXPECT(image_probe(bomb, len, &w, &h, &err) == 0 && w == 65500 && h == 65500);
    EXPECT(image_decode(&im, NULL, NULL, bomb, len, NULL, 0, 0, IMAGE_MAX_PIXELS_DEFAULT, &err) == -1);
    printf("  JPEG bomb: %s\n", err.msg);
    EXPECT(strstr(err.msg, "decompression-bomb") != NULL);
    uint8_t *pbomb = mallocCheck(png.n);
    memcpy(pbomb, png.p, png.n);
    const uint8_t dims[2][4] = {{0x00, 0x00, 0x46, 0x50}, {0x00, 0x01, 0x86, 0xA0}}; /* 18000, 100000 */
    for (int k = 0; k < 2; k++) {
        memcpy(pbomb + 16, dims[k], 4); /* IHDR width and height, big-endian */
        memcpy(pbomb + 20, dims[k], 4);
        EXPECT(image_decode(&im, NULL, NULL, pbomb, png.n, NULL, 0, 0, IMAGE_MAX_PIXELS_DEFAULT, &err) == -1);
        printf("  PNG bomb: %s\n", err.msg);
        EXPECT(strstr(err.msg, "decompression-bomb") != NULL);
    }

    /* a PNG with a corrupt IDAT chunk (zlib data overwritten) and one with a corrupt chunk length */
    uint8_t *pc = mallocCheck(png.n);
    memcpy(pc, png.p, png.n);
    for (size_t i = 0; i + 8 < png.n; i++)
        if (!memcmp(pc + i, "IDAT", 4)) {
            memset(pc + i + 4, 0xA5, 16);
            break;
        }
    all_ok &= try_decode(pc, png.n, 0, NULL);
    EXPECT(image_decode(&im, NULL, NULL, pc, png.n, NULL, 0, 0, 0, &err) == -1);
    memcpy(pc, png.p, png.n);
    for (size_t i = 4; i + 8 < png.n; i++)
        if (!memcmp(pc + i, "IDAT", 4)) {
            pc[i - 4] = 0x7F; /* length far beyond the file */
            break;
        }
    all_ok &= try_decode(pc, png.n, 0, NULL);
    EXPECT(all_ok);

    /* random bit flips in valid files */
    int n_files = 0, n_decoded = 0;
    uint8_t *flip = mallocCheck(len > plen ? (len > png.n ? len : png.n) : (plen > png.n ? plen : png.n));
    for (int seed = 0; seed < 400; seed++) {
        const uint8_t *src = seed % 4 == 3 ? png.p : seed % 4 == 2 ? pjpg : jpg;
        size_t n = seed % 4 == 3 ? png.n : seed % 4 == 2 ? plen : len;
        memcpy(flip, src, n);
        Philox4 r = philox_draw((uint64_t)seed, RNG_TEST, 7, 0);
        int nflips = 1 + (int)(r.v[0] % 8);
        for (int f = 0; f < nflips; f++) {
            uint32_t v = philox_draw((uint64_t)seed, RNG_TEST, 8, (uint32_t)f).v[0];
            size_t at = v % n;
            flip[at] ^= (uint8_t)(1u << ((v >> 24) % 8));
        }
        all_ok &= try_decode(flip, n, seed & 1, &n_decoded);
        n_files++;
    }
    printf("  bit flips: %d corrupted files, %d decoded to valid images, the rest refused\n", n_files,
           n_decoded);
    EXPECT(all_ok);

    /* corrupt-but-decodable data: the scan cut short by an EOI marker is libjpeg's "premature end of data
       segment" warning (PIL decodes such files too): counted, not an error, and silent */
    uint8_t *extra = mallocCheck(len / 2 + 2);
    memcpy(extra, jpg, len / 2);
    extra[len / 2] = 0xFF;
    extra[len / 2 + 1] = 0xD9;
    int nw = -1;
    EXPECT(image_decode_ex(&im, NULL, NULL, extra, len / 2 + 2, NULL, 0, 0, 0, &nw, NULL, &err) == 0);
    EXPECT(nw >= 1 && im.w == 64 && im.h == 48);
    printf("  JPEG scan cut short by EOI: decoded, %d warning(s) counted silently\n", nw);
    image_free(&im);

    free(extra);
    free(flip);
    free(pc);
    free(pbomb);
    free(bomb);
    free(png.p);
    free(pjpg);
    free(jpg);
    free(rgb);
}

int main(void) {
    test_jpeg_rgb_gray_progressive();
    test_jpeg_cmyk();
    test_png_bmp();
    test_region_decode();
    test_bad_inputs();
    printf("image tests: %d failed\n", failures);
    return failures ? 1 : 0;
}
