/* batch.h: the batch-level steps of spec 8.6, after the per-image transforms.
 *
 * B images per batch, each H x W x C uint8 (NHWC); K classes.
 *
 * 1. Mixup / CutMix with soft targets (timm's FastCollateMixup, mode "batch"): on the CPU, on uint8,
 *    while the loader collates (so it has no CUDA twin). One draw per batch; image i is mixed with its
 *    mirror B-1-i.
 * 2. Normalise, random erasing, cast: one CUDA kernel (bf16 out) and its CPU twin (float32 out, the CPU
 *    backend's dtype), which consume the same Philox numbers, so they differ only by the bf16 rounding.
 *
 * Keys: every random number is Philox(seed, purpose, key, sub). A batch's key is
 * batch_key(step, rank) with step = epoch * batches_per_epoch + batch index, so each rank of a
 * multi-GPU run mixes and erases differently (as timm's per-rank seeds do) and a resumed run repeats
 * the uninterrupted one. Random erasing keys image n of the batch with batch_key(step, rank) + n.
 *
 * Also here: pinned host memory and the loader's asynchronous copy engine (CUDA builds only). */
#ifndef GKA_BATCH_H
#define GKA_BATCH_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "bf16.h"
#include "context.h"
#include "philox.h"

/* step in the high 32 bits, rank in the next 16, the image within the batch in the low 16. */
GK_HD uint64_t batch_key(uint64_t step, int rank) {
    return (step << 32) | ((uint64_t)(uint32_t)rank << 16);
}
#define BATCH_MAX_IMAGES 65535 /* the kernel puts images on grid.y */
#define BATCH_MAX_RANKS 65536

#ifdef __cplusplus
extern "C" {
#endif

/* ---- 1. mixup / cutmix ---------------------------------------------------------------------------- */
typedef struct MixupConfig {
    float mixup_alpha;  /* Beta(a, a) for mixup; 0 disables mixup (timm --mixup, default 0.8) */
    float cutmix_alpha; /* Beta(a, a) for cutmix; 0 disables cutmix (--cutmix, default 1.0) */
    float prob;         /* chance a batch is mixed at all (--mixup-prob, 1.0) */
    float switch_prob;  /* chance of cutmix when both are enabled (--mixup-switch-prob, 0.5) */
    float smoothing;    /* label smoothing folded into the targets (--smoothing, 0.1) */
    int num_classes;
} MixupConfig;
void mixup_defaults(MixupConfig *cfg, int num_classes);

typedef enum { MIX_NONE = 0, MIX_MIXUP = 1, MIX_CUTMIX = 2 } MixMode;

/* One batch's draw: mode, lam (corrected for the clipped box with cutmix), and the cutmix box
 * rows [y0, y1) x columns [x0, x1). */
typedef struct MixDraw {
    MixMode mode;
    double lam;
    int y0, y1, x0, x1;
} MixDraw;

/* The batch's draw from Philox(seed, RNG_MIXUP, key): apply with prob, then cutmix with switch_prob,
 * lam ~ Beta(alpha, alpha); for cutmix the box of side ratio sqrt(1 - lam) centred at a uniform pixel,
 * integer halves, clipped, and lam = 1 - box area / (H W). */
MixDraw mixup_draw(const MixupConfig *cfg, uint64_t seed, uint64_t key, int H, int W);
/* timm's cutmix box for a given lam and centre (cy, cx): cut = int(side * sqrt(1 - lam)), the box
 * [c - cut / 2, c + cut / 2) in integer halves on each axis, clipped to the image; the returned lam is
 * 1 - box area / (H W). Exposed for the tests. */
MixDraw cutmix_box(double lam, int cy, int cx, int H, int W);
/* Applies the draw in place: mixup image_i = rint(lam image_i + (1 - lam) image_{B-1-i}) in float32 (as
 * timm, round half to even); cutmix pastes the mirror's box. Both read the unmixed partner. */
void batch_mix_cpu(uint8_t *images, const MixDraw *draw, int B, int H, int W, int C);
/* Soft targets [B, K]: off = smoothing / K, on = 1 - smoothing + off;
 * target_i = lam * onehot(y_i) + (1 - lam) * onehot(y_{B-1-i}). */
void batch_targets_cpu(float *targets, const int32_t *labels, double lam, float smoothing, int B, int K);
/* Both of the above: draw, mix images in place, write targets (and the draw, if wanted). */
void batch_mixup_cpu(uint8_t *images, float *targets, MixDraw *draw_out, const int32_t *labels,
                     const MixupConfig *cfg, uint64_t seed, uint64_t key, int B, int H, int W, int C);
/* A Beta(a, b) variate from Philox(seed, purpose, key), as the ratio of two Gamma variates
 * (Marsaglia-Tsang). Exposed for the tests. */
double philox_beta(uint64_t seed, uint32_t purpose, uint64_t key, double a, double b);

/* ---- 2. normalise + random erasing + cast --------------------------------------------------------- */
typedef struct NormErase {
    double mean[4], std[4]; /* per channel, on the 0..1 scale (x is divided by 255 implicitly) */
    float reprob;           /* random erasing probability per image (--reprob, 0.25; 0 for evaluation) */
} NormErase;
/* ImageNet's mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225); reprob as given. */
void norm_erase_defaults(NormErase *cfg, float reprob);

#ifdef __cplusplus
}
#endif

/* The erased box of one image: rows [top, top + h), columns [left, left + w); h == 0: not erased. */
typedef struct EraseBox {
    int top, left, h, w;
} EraseBox;

/* timm's RandomErasing (mode "pixel", 1 box): with probability p, up to 10 attempts of area fraction
 * U(0.02, 1/3) and log-aspect U(ln 0.3, ln 1/0.3), h = round(sqrt(area r)), w = round(sqrt(area / r)),
 * accepted when h < H and w < W, top-left uniform. Philox(seed, RNG_ERASE, key, 0): the p draw;
 * sub 1 + attempt: the attempt's four numbers. Shared by both twins so they erase the same box. */
GK_HD EraseBox erase_box(uint64_t seed, uint64_t key, float p, int H, int W) {
    EraseBox b = {0, 0, 0, 0};
    Philox4 r = philox_draw(seed, RNG_ERASE, key, 0);
    if (!(philox_u01(r.v[0]) < p)) return b;
    const double lo = log(0.3), hi = -log(0.3), area = (double)H * W;
    for (uint32_t attempt = 0; attempt < 10; attempt++) {
        Philox4 a = philox_draw(seed, RNG_ERASE, key, 1 + attempt);
        double target = (0.02 + (1.0 / 3.0 - 0.02) * ((double)a.v[0] * (1.0 / 4294967296.0))) * area;
        double ratio = exp(lo + (hi - lo) * ((double)a.v[1] * (1.0 / 4294967296.0)));
        int h = (int)rint(sqrt(target * ratio)), w = (int)rint(sqrt(target / ratio));
        if (h < H && w < W) {
            b.h = h, b.w = w;
            b.top = (int)(((double)a.v[2] * (1.0 / 4294967296.0)) * (H - h + 1)); /* randint(0, H - h) */
            b.left = (int)(((double)a.v[3] * (1.0 / 4294967296.0)) * (W - w + 1));
            return b;
        }
    }
    return b;
}

/* The N(0, 1) fill of elements 4q .. 4q + 3 of an erased image (element e = (y W + x) C + c): Box-Muller
 * in float64 on the four words of Philox(seed, RNG_ERASE, key, 16 + q). */
GK_HD void erase_normals4(float z[4], uint64_t seed, uint64_t key, uint64_t q) {
    Philox4 r = philox_draw(seed, RNG_ERASE, key, 16u + (uint32_t)q);
    for (int k = 0; k < 4; k += 2) {
        double u1 = ((double)r.v[k] + 1.0) * (1.0 / 4294967296.0); /* (0, 1]: the log is finite */
        double u2 = (double)r.v[k + 1] * (1.0 / 4294967296.0);
        double rad = sqrt(-2.0 * log(u1)), th = 6.283185307179586 * u2;
        z[k] = (float)(rad * cos(th));
        z[k + 1] = (float)(rad * sin(th));
    }
}

#ifdef __cplusplus
extern "C" {
#endif

/* out[B, H, W, C] = (in - 255 mean) / (255 std) per channel, then each image's erase box (if any)
 * filled with N(0, 1). C at most 4. The CUDA twin writes bf16 and reads `in` from device memory. */
void batch_normalize_erase_cpu(float *out, const uint8_t *in, const NormErase *cfg, uint64_t seed,
                               uint64_t key, int B, int H, int W, int C);
#ifdef GKA_HAVE_CUDA
void batch_normalize_erase_cuda(bf16_t *out, const uint8_t *in, const NormErase *cfg, uint64_t seed,
                                uint64_t key, int B, int H, int W, int C, CudaCtx *cu);

/* ---- pinned memory and the loader's copy engine --------------------------------------------------- */
/* Page-locked host memory (cudaHostAlloc, portable), so copies to the GPU run asynchronously. */
void *batch_host_alloc_pinned(size_t bytes);
void batch_host_free_pinned(void *p);

/* A stream of its own for host-to-device copies, and per ring slot two events: `copied` (the
 * consumer's stream waits on it before using the slot's device data) and `consumed` (the copy stream
 * waits on it before overwriting the slot's device buffer). */
typedef struct BatchCopier BatchCopier;
BatchCopier *batch_copier_create(CudaCtx *cu, int slots);
void batch_copier_destroy(BatchCopier *c);
/* Queues the copies of one slot (n pieces) after its previous consumer is done, then records `copied`.
 * Callable from any thread. */
void batch_copier_upload(BatchCopier *c, int slot, void *const *dst, const void *const *src,
                         const size_t *bytes, int n);
/* The consumer's stream waits (on the GPU) for the slot's copies. */
void batch_copier_acquire(BatchCopier *c, int slot);
/* The consumer's work on the slot so far is recorded as `consumed`; then the host waits until the
 * slot's copies have finished, so its host buffer may be refilled. */
void batch_copier_release(BatchCopier *c, int slot);
#endif

#ifdef __cplusplus
}
#endif
#endif
