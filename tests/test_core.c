/* test_core: the runtime pieces everything stands on: bf16 rounding, Philox known answers, arena,
 * tensor views, error values. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "arena.h"
#include "bf16.h"
#include "context.h"
#include "core.h"
#include "philox.h"
#include "tensor.h"

#include "expect.h"

static void test_bf16(void) {
    EXPECT(f32_to_bf16(1.0f) == 0x3f80);
    EXPECT(f32_to_bf16(-2.0f) == 0xc000);
    /* 1 + 2^-8 is exactly halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1.0) */
    EXPECT(f32_to_bf16(1.0f + 1.0f / 256.0f) == 0x3f80);
    /* 1 + 3 * 2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even): rounds up to even */
    EXPECT(f32_to_bf16(1.0f + 3.0f / 256.0f) == 0x3f82);
    /* just above halfway rounds up */
    EXPECT(f32_to_bf16(1.0f + 1.0f / 256.0f + 1.0f / 65536.0f) == 0x3f81);
    EXPECT(isnan(bf16_to_f32(f32_to_bf16(NAN))));
    EXPECT(isinf(bf16_to_f32(f32_to_bf16(INFINITY))));
    /* the largest finite float rounds to infinity in bf16, as on the GPU */
    EXPECT(isinf(bf16_to_f32(f32_to_bf16(3.4028235e38f))));
    for (int i = -1000; i <= 1000; i++) { /* round trip of representable values is exact */
        float v = bf16_to_f32((bf16_t)(0x3f00 + i));
        EXPECT(bf16_round(v) == v);
    }
}

static void test_philox(void) {
    /* Known-answer vectors of Random123's philox4x32_10 (kat_vectors). */
    Philox4 a = philox4x32(0, 0, 0, 0, 0, 0);
    EXPECT(a.v[0] == 0x6627e8d5u && a.v[1] == 0xe169c58du && a.v[2] == 0xbc57ac4cu && a.v[3] == 0x9b00dbd8u);
    Philox4 b = philox4x32(0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu);
    EXPECT(b.v[0] == 0x408f276du && b.v[1] == 0x41c83b0eu && b.v[2] == 0xa20bc7c6u && b.v[3] == 0x6d5451fdu);
    Philox4 c = philox4x32(0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u, 0xa4093822u, 0x299f31d0u);
    EXPECT(c.v[0] == 0xd16cfe09u && c.v[1] == 0x94fdccebu && c.v[2] == 0x5001e420u && c.v[3] == 0x24126ea1u);
    /* uniform floats stay in [0, 1) and average near 1/2 */
    double s = 0.0;
    for (int i = 0; i < 100000; i++) {
        float u = philox_u01(philox_draw(42, RNG_TEST, (uint64_t)i, 0).v[0]);
        EXPECT(u >= 0.0f && u < 1.0f);
        s += u;
    }
    EXPECT(fabs(s / 100000 - 0.5) < 0.01);
    EXPECT(philox_u01(0xffffffffu) < 1.0f);
}

static void test_arena_tensor(void) {
    Arena dry = arena_dry(DEV_CPU);
    int64_t s1[2] = {3, 5}, s2[1] = {7};
    Tensor t1 = arena_tensor(&dry, DT_F32, 2, s1);
    Tensor t2 = arena_tensor(&dry, DT_BF16, 1, s2);
    EXPECT(t1.data == NULL && t2.data == NULL);
    EXPECT(dry.peak == ARENA_ALIGN + 14);
    Arena a = arena_create(DEV_CPU, dry.peak);
    t1 = arena_tensor(&a, DT_F32, 2, s1);
    size_t mark = arena_mark(&a);
    t2 = arena_tensor(&a, DT_BF16, 1, s2);
    EXPECT((uintptr_t)t1.data % ARENA_ALIGN == 0 && (uintptr_t)t2.data % ARENA_ALIGN == 0);
    EXPECT(tensor_numel(t1) == 15 && tensor_bytes(t2) == 14);
    arena_rewind(&a, mark);
    Tensor t3 = arena_tensor(&a, DT_BF16, 1, s2);
    EXPECT(t3.data == t2.data);
    Tensor row = tensor_slice0(t1, 1, 2);
    EXPECT(row.shape[0] == 2 && (char *)row.data == (char *)t1.data + 5 * 4);
    int64_t s3[3] = {5, 1, 3};
    Tensor r = tensor_reshape(t1, 3, s3);
    EXPECT(r.ndim == 3 && tensor_numel(r) == 15 && tensor_span(r, 1, 3) == 3);
    char buf[64];
    EXPECT(strcmp(tensor_describe(t1, buf, sizeof buf), "[3, 5] f32 cpu") == 0);
    /* host tensor_copy converts between dtypes with round to nearest even */
    float src[3] = {1.0f, 1.0f + 3.0f / 256.0f, -0.5f};
    bf16_t mid[3];
    float back[3];
    Ctx cpu = ctx_cpu();
    tensor_copy(tensor_1d(mid, DT_BF16, DEV_CPU, 3), tensor_1d(src, DT_F32, DEV_CPU, 3), &cpu);
    tensor_copy(tensor_1d(back, DT_F32, DEV_CPU, 3), tensor_1d(mid, DT_BF16, DEV_CPU, 3), &cpu);
    EXPECT(back[0] == 1.0f && back[1] == 1.0f + 4.0f / 256.0f && back[2] == -0.5f);
    arena_destroy(&a);
    ctx_destroy(&cpu);
}

static void test_errors(void) {
    GkErr err;
    EXPECT(gk_fail(&err, "%s: tensor '%s' has shape [%d]", "w.safetensors", "head.weight", 3) == -1);
    EXPECT(strcmp(err.msg, "w.safetensors: tensor 'head.weight' has shape [3]") == 0);
    EXPECT(gk_fail(NULL, "ignored") == -1);
}

int main(void) {
    test_bf16();
    test_philox();
    test_arena_tensor();
    test_errors();
    printf("core tests: %d failed\n", failures);
    return failures ? 1 : 0;
}
