/* bf16.h: bfloat16 storage type and conversions on the host (round to nearest, ties to even).
 * The device side uses cuda_bf16.h's __nv_bfloat16, which has the same bit layout; host code sees bf16
 * tensors as arrays of bf16_t (uint16_t) so that C files never need CUDA headers. */
#ifndef GKA_BF16_H
#define GKA_BF16_H

#include <stdint.h>
#include <string.h>

typedef uint16_t bf16_t;

static inline bf16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (bf16_t)((u >> 16) | 0x0040u); /* NaN stays a quiet NaN */
    uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
    return (bf16_t)((u + rounding) >> 16);
}

static inline float bf16_to_f32(bf16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* The float32 value a float32 becomes after a round trip through bf16. */
static inline float bf16_round(float f) { return bf16_to_f32(f32_to_bf16(f)); }

#endif
