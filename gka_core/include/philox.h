/* philox.h: the Philox4x32-10 counter-based generator (Salmon et al., SC'11), host and device.
 *
 * Every random choice in GKAVision is a pure function of (seed, purpose, index): the key is built from the
 * seed, the counter from the purpose and the index. No generator state is carried between calls, so the
 * same numbers come out on CPU and GPU, for any thread count and any order of evaluation. */
#ifndef GKA_PHILOX_H
#define GKA_PHILOX_H

#include <stdint.h>

#if defined(__CUDACC__)
#define GK_HD __host__ __device__ __forceinline__
#else
#define GK_HD static inline
#endif

typedef struct {
    uint32_t v[4];
} Philox4;

GK_HD uint32_t philox_mulhilo(uint32_t a, uint32_t b, uint32_t *hi) {
    uint64_t p = (uint64_t)a * (uint64_t)b;
    *hi = (uint32_t)(p >> 32);
    return (uint32_t)p;
}

/* One Philox4x32-10 block: 4 random 32-bit words from a 128-bit counter and a 64-bit key. */
GK_HD Philox4 philox4x32(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
    for (int round = 0; round < 10; round++) {
        uint32_t hi0, hi1;
        uint32_t lo0 = philox_mulhilo(0xD2511F53u, c0, &hi0);
        uint32_t lo1 = philox_mulhilo(0xCD9E8D57u, c2, &hi1);
        uint32_t n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0;
        c1 = lo1;
        c2 = n2;
        c3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    Philox4 r;
    r.v[0] = c0;
    r.v[1] = c1;
    r.v[2] = c2;
    r.v[3] = c3;
    return r;
}

/* Four words for (seed, purpose, index, sub): sub lets one index draw more than four words. */
GK_HD Philox4 philox_draw(uint64_t seed, uint32_t purpose, uint64_t index, uint32_t sub) {
    return philox4x32((uint32_t)index, (uint32_t)(index >> 32), sub, purpose, (uint32_t)seed,
                      (uint32_t)(seed >> 32));
}

/* A uniform float in [0, 1) from one 32-bit word (24 random bits, exactly representable). */
GK_HD float philox_u01(uint32_t w) { return (float)(w >> 8) * (1.0f / 16777216.0f); }

/* A uniform double in [0, 1) from two words (53 random bits). */
GK_HD double philox_u01_f64(uint32_t a, uint32_t b) {
    uint64_t x = ((uint64_t)(a >> 5) << 26) | (uint64_t)(b >> 6);
    return (double)x * (1.0 / 9007199254740992.0);
}

/* Purposes: one constant per kind of random choice, so no two kinds share a stream. */
enum {
    RNG_INIT = 1,      /* parameter initialisation */
    RNG_DROPPATH = 2,  /* stochastic depth masks */
    RNG_PERMUTE = 3,   /* epoch permutation */
    RNG_AUGMENT = 4,   /* per-sample augmentation choices */
    RNG_MIXUP = 5,     /* per-batch mixup/cutmix choices */
    RNG_ERASE = 6,     /* random erasing */
    RNG_TEST = 100     /* test inputs */
};

#endif
