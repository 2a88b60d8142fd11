/* resample.h: PIL's Image.resize for 8-bit images (ImagingResample in Pillow's libImaging/Resample.c),
 * bit-exact with Pillow up to 12.x (Pillow 13 changed the pass order for some sizes; resample.c says how).
 *
 * Separable: a horizontal pass over the rows the vertical pass will need, then a vertical pass. The filter's
 * support grows with the downscale factor (antialiasing); coefficients are normalised per output pixel and
 * turned into fixed point with 22 fraction bits; the intermediate image is rounded and clipped to 8 bits, as
 * in PIL. Coefficients are computed once per call, not per pixel. */
#ifndef GKA_RESAMPLE_H
#define GKA_RESAMPLE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The same numbering as Interp's first two values in transforms.h. */
typedef enum { RESAMPLE_BILINEAR = 0, RESAMPLE_BICUBIC = 1 } ResampleFilter;

/* Image.resize((dw, dh), filter, box) of an sw x sh image with c interleaved 8-bit channels (1 to 4) whose
   rows are src_stride bytes apart, into dst (dw * dh * c bytes, rows packed). box = {x0, y0, x1, y1} in
   source pixels, or NULL for the whole image; it is rounded to float, as PIL stores it, and must lie within
   [0, sw] x [0, sh] with x1 > x0 and y1 > y0. Filter taps that fall outside the source are dropped and the
   rest renormalised (PIL's border rule), so passing a view of a crop reproduces torchvision's resized_crop
   (crop, then resize). */
void resample_u8(uint8_t *dst, int dw, int dh, const uint8_t *src, int sw, int sh, ptrdiff_t src_stride,
                 int c, const double *box, ResampleFilter filter);

#ifdef __cplusplus
}
#endif
#endif
