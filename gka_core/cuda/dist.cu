/* dist.cu: dist.h over NCCL. Without NCCL (GKA_HAVE_NCCL unset) gka_core/dist_none.c stands in. */
#ifdef GKA_HAVE_NCCL
#include <nccl.h>
#include <string.h>

#include "cuda_common.h"
#include "dist.h"

static_assert(NCCL_UNIQUE_ID_BYTES == DIST_ID_BYTES, "DIST_ID_BYTES must be NCCL's unique id size");

extern "C" {

Dist dist_single(void) {
    return Dist{0, 1, NULL};
}

int dist_available(void) {
    return 1;
}

int dist_new_id(uint8_t id[DIST_ID_BYTES], GkErr *err) {
    ncclUniqueId u;
    ncclResult_t r = ncclGetUniqueId(&u);
    if (r != ncclSuccess) return gk_fail(err, "NCCL: no communicator id (%s)", ncclGetErrorString(r));
    memcpy(id, u.internal, DIST_ID_BYTES);
    return 0;
}

int dist_init(Dist *d, const uint8_t id[DIST_ID_BYTES], int rank, int world, Ctx *ctx, GkErr *err) {
    *d = dist_single();
    if (world <= 1) return 0;
    if (!ctx->cuda) return gk_fail(err, "several ranks need CUDA devices (--device cuda)");
    ncclUniqueId u;
    memcpy(u.internal, id, DIST_ID_BYTES);
    ncclComm_t comm;
    ncclResult_t r = ncclCommInitRank(&comm, world, u, rank);
    if (r != ncclSuccess)
        return gk_fail(err, "NCCL: rank %d of %d could not join (%s; NCCL_DEBUG=INFO says more)", rank, world,
                       ncclGetErrorString(r));
    d->rank = rank, d->world = world, d->comm = comm;
    return 0;
}

void dist_mean_f32(Dist *d, float *x, size_t n, Ctx *ctx) {
    if (d->world <= 1 || n == 0) return;
    ncclCheck(ncclAllReduce(x, x, n, ncclFloat32, ncclAvg, (ncclComm_t)d->comm, ctx->cuda->stream));
}

void dist_destroy(Dist *d) {
    if (d->comm) ncclCommDestroy((ncclComm_t)d->comm);
    *d = dist_single();
}

} /* extern "C" */
#endif
