/* dist.h: data parallelism, one process per GPU: the NCCL communicator and the collectives the trainer needs
 * (gradient and loss averages, the per-epoch BatchNorm statistics average).
 *
 * Defined over NCCL in CUDA builds that found it (gka_core/cuda/dist.cu). Elsewhere dist_available() is 0
 * and dist_new_id / dist_init fail with a message; the collectives of a one-rank Dist (world 1, no
 * communicator) do nothing in every build, so single-GPU and CPU code calls them unconditionally. */
#ifndef GKA_DIST_H
#define GKA_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "context.h"
#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DIST_ID_BYTES 128 /* NCCL_UNIQUE_ID_BYTES */

typedef struct Dist {
    int rank, world;
    void *comm; /* ncclComm_t; NULL when world is 1 */
} Dist;

/* A one-rank Dist: every collective is a no-op. */
Dist dist_single(void);
/* 1 when this build can run several ranks (CUDA and NCCL). */
int dist_available(void);
/* A new communicator id (rank 0 makes it; every rank must receive it before dist_init). */
int dist_new_id(uint8_t id[DIST_ID_BYTES], GkErr *err);
/* Joins the communicator as `rank` of `world`, on the GPU of ctx (opened before). Blocks until all ranks
 * have joined. */
int dist_init(Dist *d, const uint8_t id[DIST_ID_BYTES], int rank, int world, Ctx *ctx, GkErr *err);
/* In-place average over the ranks of n device floats, queued on ctx's stream. */
void dist_mean_f32(Dist *d, float *x, size_t n, Ctx *ctx);
void dist_destroy(Dist *d);

#ifdef __cplusplus
}
#endif
#endif
