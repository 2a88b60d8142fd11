/* transforms.h: the per-image training and evaluation transforms on uint8 HWC images, reproducing timm's PIL
 * pipeline (spec sections 8.5, 8.7 and 9): RandomResizedCrop, horizontal flip, RandAugment or colour jitter
 * for training; resize-shorter-side and centre crop for evaluation.
 *
 * The decision a reader must know: every random choice of a sample is a pure function of (seed, epoch,
 * index), drawn from Philox with purpose RNG_AUGMENT at a fixed place in the sample's stream (the AUG_BLOCK_*
 * layout below), so a sample looks the same whatever thread decodes it, in whatever order, and one choice
 * (say the flip) does not shift when another (say the number of crop attempts) changes. */
#ifndef GKA_TRANSFORMS_H
#define GKA_TRANSFORMS_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "image.h"
#include "philox.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { INTERP_BILINEAR, INTERP_BICUBIC, INTERP_RANDOM } Interp;

typedef struct TrainAugConfig {
    int size;                   /* output side, e.g. 224 */
    float scale_min, scale_max; /* RandomResizedCrop area fraction, 0.08 .. 1 */
    float ratio_min, ratio_max; /* 3/4 .. 4/3 */
    Interp interp;              /* INTERP_RANDOM: bilinear or bicubic with p 0.5 (timm 'random') */
    float hflip;                /* 0.5 */
    int ra_ops;                 /* RandAugment ops per image (2); 0 disables RandAugment */
    float ra_magnitude,
        ra_mstd;   /* 9, 0.5 (mstd = INFINITY: magnitude uniform in [0, m], timm's mstd > 100) */
    float ra_prob; /* 0.5 */
    float
        color_jitter; /* used only when RandAugment is off (0.4 brightness/contrast/saturation, timm order) */
    int64_t max_pixels; /* decode guard */
} TrainAugConfig;

/* timm's ImageNet training defaults, rand-m9-mstd0.5-inc1. */
void train_aug_defaults(TrainAugConfig *cfg);

/* Parses a timm RandAugment string like "rand-m9-mstd0.5-inc1" into cfg (n, m, mstd, p, inc; only inc1 is
   supported: 'inc0' or no 'inc' at all would select timm's other op set, and is refused with a clear
   message). Returns -1 with err on a malformed string. */
int parse_randaugment(TrainAugConfig *cfg, const char *spec, GkErr *err);

/* The full training transform of one sample: decode (at reduced DCT scale when the crop allows) ->
   RandomResizedCrop -> resize to size x size -> horizontal flip -> RandAugment (or colour jitter). Output:
   size*size*3 uint8 HWC. Every random choice comes from Philox keyed by (seed, RNG_AUGMENT, index, epoch):
   the same output for any thread and call order. Returns -1 with err for an unusable image. */
int train_transform(uint8_t *out, const uint8_t *buf, size_t len, const TrainAugConfig *cfg, uint64_t seed,
                    uint64_t epoch, uint64_t index, GkErr *err);

/* The same on already-decoded pixels (e.g. Fashion-MNIST, c = 1 or 3). Output: size*size*src->c bytes. */
void train_transform_pixels(uint8_t *out, const Image *src, const TrainAugConfig *cfg, uint64_t seed,
                            uint64_t epoch, uint64_t index);

/* Evaluation: resize the shorter side to floor(size / crop_pct) with bicubic (PIL, antialiased), centre-crop
   size x size (offsets round((H - size)/2), round((W - size)/2), Python's half-to-even round; zero padding
   when crop_pct > 1 leaves the image smaller than the crop, as torchvision's CenterCrop does); spec
   section 9. Output: size*size*3 (eval_transform) or size*size*src->c bytes. */
int eval_transform(uint8_t *out, const uint8_t *buf, size_t len, int size, float crop_pct, int64_t max_pixels,
                   GkErr *err);
void eval_transform_pixels(uint8_t *out, const Image *src, int size, float crop_pct);

/* ---- the pieces, for tests and other pipelines --------------------------------------------------------- */

/* The sample's random stream: block b of (seed, epoch, index) is
   philox_draw(seed, RNG_AUGMENT, index, (uint32_t)epoch * AUG_BLOCKS_PER_EPOCH + b), four 32-bit words.
   - crop attempt a (0..9): block AUG_BLOCK_CROP + 2a: words 0-1 area fraction (f64), 2-3 log-ratio (f64);
     block AUG_BLOCK_CROP + 2a + 1: word 0 top offset, word 1 left offset;
   - AUG_BLOCK_MISC: word 0 interpolation (bilinear if u < 0.5), word 1 flip (if u < hflip);
   - RandAugment layer l (0..RA_MAX_LAYERS-1): block AUG_BLOCK_RA + 2l: word 0 op, 1 apply (if u <= ra_prob),
     2 sign (negate if u > 0.5), 3 interpolation; block AUG_BLOCK_RA + 2l + 1: two f64 for the magnitude;
   - AUG_BLOCK_JITTER: words 0-2 brightness, contrast, saturation factors, word 3 their order. */
enum {
    AUG_BLOCKS_PER_EPOCH = 256,
    AUG_BLOCK_CROP = 0,
    AUG_BLOCK_MISC = 20,
    AUG_BLOCK_RA = 32,
    AUG_BLOCK_JITTER = 64,
    RA_MAX_LAYERS = 16
};
static inline Philox4 aug_block(uint64_t seed, uint64_t epoch, uint64_t index, uint32_t block) {
    return philox_draw(seed, RNG_AUGMENT, index, (uint32_t)epoch * AUG_BLOCKS_PER_EPOCH + block);
}
/* A uniform integer in [0, n) from one word (n < 2^32). */
static inline uint32_t aug_below(uint32_t word, uint32_t n) {
    return (uint32_t)(((uint64_t)word * n) >> 32);
}

/* A crop in torchvision's order: top, left, height, width. */
typedef struct CropBox {
    int i, j, h, w;
} CropBox;

/* timm's RandomResizedCropAndInterpolation.get_params on a W x H image: 10 attempts, then the centre
 * fallback. */
CropBox rrc_params(int W, int H, const TrainAugConfig *cfg, uint64_t seed, uint64_t epoch, uint64_t index);

/* The resize filter of the sample (cfg->interp, or the random choice for INTERP_RANDOM) and its flip
 * decision. */
Interp train_interp(const TrainAugConfig *cfg, uint64_t seed, uint64_t epoch, uint64_t index);
int train_flip(const TrainAugConfig *cfg, uint64_t seed, uint64_t epoch, uint64_t index);

/* Mirrors an HWC image left-right in place (PIL's FLIP_LEFT_RIGHT). */
void hflip_u8(uint8_t *img, int w, int h, int c);

/* floor(size / crop_pct) as timm computes it with the double of the decimal the user wrote (0.8 -> 280 for
   224, where the float 0.8f alone would give 279). */
int eval_scale_size(int size, float crop_pct);

/* torchvision ColorJitter(b, b, b, hue 0) on PIL images: factors U(max(0, 1 - b), 1 + b), the three
   enhancements in a random order. c = 1 or 3 (saturation leaves a grayscale image unchanged, as PIL's Color
   does). */
void color_jitter(uint8_t *img, int w, int h, int c, float strength, uint64_t seed, uint64_t epoch,
                  uint64_t index);

/* ---- RandAugment (data/randaugment.c): timm's _RAND_INCREASING_TRANSFORMS, in timm's order ------------- */

typedef enum {
    RA_AUTOCONTRAST,
    RA_EQUALIZE,
    RA_INVERT,
    RA_ROTATE,
    RA_POSTERIZE_INC,
    RA_SOLARIZE_INC,
    RA_SOLARIZE_ADD,
    RA_COLOR_INC,
    RA_CONTRAST_INC,
    RA_BRIGHTNESS_INC,
    RA_SHARPNESS_INC,
    RA_SHEAR_X,
    RA_SHEAR_Y,
    RA_TRANSLATE_X_REL,
    RA_TRANSLATE_Y_REL,
    RA_NUM_OPS
} RandAugOp;

/* timm's name of the op ("AutoContrast", ..., "TranslateYRel"). */
const char *randaug_op_name(RandAugOp op);

/* Fill colour of the geometric ops: round(255 * ImageNet mean), as timm's hparams img_mean. */
extern const uint8_t RA_FILL_RGB[3];

/* Applies one op in place to a w x h image with c = 1 or 3 channels, at magnitude m (0..10, timm's level)
   with the sign of the "+-" ops negated when negate != 0, and interp (bilinear or bicubic) for the geometric
   ops. scratch: w*h*c bytes of working memory, or NULL to have the op allocate it. */
void randaug_op(uint8_t *img, int w, int h, int c, RandAugOp op, double magnitude, int negate, Interp interp,
                uint8_t *scratch);

/* One RandAugment layer of a sample: which op, whether it is applied, and its random arguments. */
typedef struct RandAugStep {
    RandAugOp op;
    int apply, negate;
    double magnitude; /* after the N(m, mstd) draw and the clip to [0, 10] */
    Interp interp;
} RandAugStep;

/* The cfg->ra_ops layers (at most RA_MAX_LAYERS) of sample (seed, epoch, index); returns their number. */
int randaug_plan(RandAugStep *steps, const TrainAugConfig *cfg, uint64_t seed, uint64_t epoch,
                 uint64_t index);

/* RandAugment in place: randaug_plan, then each applied op in turn. */
void randaugment(uint8_t *img, int w, int h, int c, const TrainAugConfig *cfg, uint64_t seed, uint64_t epoch,
                 uint64_t index);

/* ---- PIL primitives the ops are built from (data/randaugment.c), each bit-exact with Pillow ------------ */

/* ImageEnhance.Brightness / Contrast / Color / Sharpness(img).enhance(factor), in place. */
void pil_brightness(uint8_t *img, int w, int h, int c, double factor);
void pil_contrast(uint8_t *img, int w, int h, int c, double factor);
void pil_color(uint8_t *img, int w, int h, int c, double factor);
void pil_sharpness(uint8_t *img, int w, int h, int c, double factor, uint8_t *scratch);
/* ImageOps.autocontrast(img) and ImageOps.equalize(img), per channel, in place. */
void pil_autocontrast(uint8_t *img, int w, int h, int c);
void pil_equalize(uint8_t *img, int w, int h, int c);
/* img.transform(img.size, Image.AFFINE, a, resample, fillcolor=fill): output pixel (x, y) samples the input
   at (a0 (x + .5) + a1 (y + .5) + a2, a3 (x + .5) + a4 (y + .5) + a5); fill has c entries. */
void pil_affine(uint8_t *dst, const uint8_t *src, int w, int h, int c, const double a[6], Interp interp,
                const uint8_t *fill);
/* img.rotate(degrees, resample, fillcolor=fill): counter-clockwise about the centre, same size. */
void pil_rotate(uint8_t *dst, const uint8_t *src, int w, int h, int c, double degrees, Interp interp,
                const uint8_t *fill);

#ifdef __cplusplus
}
#endif
#endif
