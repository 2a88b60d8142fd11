/* dist_none.c: dist.h in builds without NCCL (CPU-only, or CUDA without NCCL): one rank only. */
#ifndef GKA_HAVE_NCCL
#include "dist.h"

Dist dist_single(void) {
    Dist d = {0, 1, NULL};
    return d;
}

int dist_available(void) {
    return 0;
}

int dist_new_id(uint8_t id[DIST_ID_BYTES], GkErr *err) {
    (void)id;
    return gk_fail(err, "this build has no NCCL: one GPU only (rebuild with CUDA and NCCL for --gpus)");
}

int dist_init(Dist *d, const uint8_t id[DIST_ID_BYTES], int rank, int world, Ctx *ctx, GkErr *err) {
    (void)id, (void)rank, (void)ctx;
    *d = dist_single();
    if (world <= 1) return 0;
    return gk_fail(err, "this build has no NCCL: one GPU only (rebuild with CUDA and NCCL for --gpus)");
}

void dist_mean_f32(Dist *d, float *x, size_t n, Ctx *ctx) {
    (void)d, (void)x, (void)n, (void)ctx;
}

void dist_destroy(Dist *d) {
    *d = dist_single();
}
#else
typedef int dist_none_unused; /* ISO C: no empty translation unit */
#endif
