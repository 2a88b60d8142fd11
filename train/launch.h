/* launch.h: how a training process learns its rank, and how the ranks share the NCCL communicator id.
 *
 * Two ways in (DESIGN.md, "Several GPUs and several nodes"):
 * - `gkav train --gpus N` on one node: the process forks N children, one per GPU; child 0 makes the id and
 *   hands it to its siblings over pipes; the parent only waits (and stops the others when one fails).
 * - torchrun-style variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), as torchrun
 *   --no-python, Slurm or mpirun wrappers set them: this process is one rank of a multi-node job. Rank 0
 *   makes the id and serves it over TCP on MASTER_PORT; every other rank fetches it from
 *   MASTER_ADDR:MASTER_PORT (retrying until rank 0 is up). */
#ifndef GKA_LAUNCH_H
#define GKA_LAUNCH_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "dist.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct RankInfo {
    int rank, world, local_rank; /* local_rank: the GPU index on this node */
    uint8_t id[DIST_ID_BYTES];   /* the communicator id, the same on every rank */
} RankInfo;

/* One process, one GPU (device 0). */
RankInfo rank_single(void);

/* 1 with r filled (the id shared) when torchrun-style variables are set, 0 when they are not, -1 with err
 * when they are malformed or the rendezvous fails. */
int launch_from_env(RankInfo *r, GkErr *err);

/* Forks n ranks. In each child: returns 1 with r filled, or -1 with err when the id could not be shared
 * (r->world is n in a child either way: the caller exits). In the parent (r->world 1): returns 0 once every
 * child has exited with status 0, or -1 with err naming the first rank that failed (the others are
 * stopped). */
int launch_local(int n, RankInfo *r, GkErr *err);

/* The TCP exchange of the id, exposed for tests: serve sends blob (n bytes) to each of `clients`
 * connections on port, then closes; fetch connects to host:port (retrying) and reads n bytes. Both give up
 * after timeout_s seconds. */
int rendezvous_serve(int port, const uint8_t *blob, size_t n, int clients, double timeout_s, GkErr *err);
int rendezvous_fetch(const char *host, int port, uint8_t *blob, size_t n, double timeout_s, GkErr *err);

#ifdef __cplusplus
}
#endif
#endif
