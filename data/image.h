/* image.h: decoding image files into uint8 HWC pixels (libjpeg-turbo for JPEG, stb_image for the rest).
 *
 * The one decision a reader must know: a JPEG can be decoded at a reduced DCT scale (1/8 .. 8/8) and only
 * over the rows and columns of a region, which is what makes RandomResizedCrop cheap; the caller gets back
 * the scale and the region's rectangle in the decoded image, and resamples from there. Everything else
 * mirrors what timm's loader gets from PIL's Image.open(f).convert("RGB"). Bad input is an error value (-1
 * and a message), never a crash. */
#ifndef GKA_IMAGE_H
#define GKA_IMAGE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* HWC, row-major, c = 1 or 3, owned: image_free. */
typedef struct Image {
    uint8_t *pix;
    int w, h, c;
} Image;

void image_free(Image *im);

/* PIL's decompression-bomb limit (Image.MAX_IMAGE_PIXELS * 2, where PIL raises): a sensible max_pixels. */
#define IMAGE_MAX_PIXELS_DEFAULT ((int64_t)178956970)

/* Width and height from the header only (JPEG, PNG, BMP, GIF, PNM, PSD), no pixel decode. */
int image_probe(const uint8_t *buf, size_t len, int *w, int *h, GkErr *err);

/* A rectangle in pixel coordinates (floating point, for the resampler). */
typedef struct ImageRegion {
    double x, y, w, h;
} ImageRegion;

/* Decodes to RGB (c = 3): grayscale, CMYK/YCCK JPEGs (inverted Adobe CMYK, as PIL's convert("RGB") does) and
   a PNG stored under a .JPEG name all become RGB. If region is not NULL (x, y, w, h in full-resolution
   pixels) and min_w/min_h > 0, JPEGs are decoded at the smallest libjpeg DCT scale (1/8, 2/8, ..., 8/8) at
   which the region is still at least min_w x min_h pixels, and only the region's rows and columns are decoded
   where libjpeg allows (jpeg_crop_scanline, jpeg_skip_scanlines); *scale_out receives the scale factor
   (decoded pixels per source pixel) and *region_out the region's rectangle in the decoded image's
   coordinates. The decoded image may extend beyond the region (libjpeg crops at iMCU boundaries); its columns
   outside [floor(x), ceil(x + w)) of region_out can differ from a full decode's (chroma upsampling at a crop
   edge), those inside are identical. Without a region (or for non-JPEG files) the whole image is decoded at
   scale 1 and region_out is the region unchanged (or the whole image). Images with more than max_pixels
   source pixels (w*h) are refused (max_pixels <= 0: no limit). A corrupt, truncated, empty or unsupported
   buffer returns -1 with a one-line message in err. region_out and scale_out may be NULL. */
int image_decode(Image *out, ImageRegion *region_out, double *scale_out, const uint8_t *buf, size_t len,
                 const ImageRegion *region, int min_w, int min_h, int64_t max_pixels, GkErr *err);

/* image_decode with libjpeg's warnings about corrupt-but-decodable data made visible: *n_warnings (if not
   NULL) receives their count and, if warn_to is not NULL, the first few are printed there. image_decode is
   this with both NULL (PIL, too, decodes such files silently). */
int image_decode_ex(Image *out, ImageRegion *region_out, double *scale_out, const uint8_t *buf, size_t len,
                    const ImageRegion *region, int min_w, int min_h, int64_t max_pixels, int *n_warnings,
                    FILE *warn_to, GkErr *err);

#ifdef __cplusplus
}
#endif
#endif
