/* synth.h: folders of ImageNet-like JPEGs, for the loader benchmark and throughput runs (`gkav data synth`).
 *
 * Quality 90, sizes drawn from ImageNet's common shapes (mean about 500 x 385), with content that costs what
 * photographs cost to decode: smooth gradients, soft shapes, texture and noise, so the entropy-coded data is
 * not trivially compressible (~110 KB per image). The class of an image is i mod classes and says nothing
 * about its content: these folders measure speed, not learning. Image i of a folder made with `seed` is the
 * same on every machine. */
#ifndef GKA_SYNTH_H
#define GKA_SYNTH_H

#include <stdint.h>

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct SynthStats {
    int reused;            /* the folder was complete already (its marker file), nothing written */
    int64_t bytes, pixels; /* of the images written */
} SynthStats;

/* w x h RGB pixels (malloc'd) of synthetic image `seed`. */
uint8_t *synth_image(int w, int h, uint64_t seed);

/* Writes DIR/class_<c>/img_<i>.JPEG for i < count (class c = i mod classes) on `threads` threads, unless a
 * marker file says a folder of the same (classes, count, seed) is complete. stats may be NULL. */
int synth_folder(const char *dir, int classes, int count, uint64_t seed, int threads, SynthStats *stats,
                 GkErr *err);

#ifdef __cplusplus
}
#endif
#endif
