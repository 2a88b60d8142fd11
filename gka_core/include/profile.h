/* profile.h: where a step's time goes, op by op (GKA_PROFILE=1 in the environment; off otherwise, at the
 * cost of one branch per op).
 *
 * Every op of ops.h (and the GKA and selective-scan ops) opens a PROF_SCOPE: when profiling is on, the
 * device is synchronised before and after the op and the wall time is added to the op's row. The numbers are
 * exclusive (no op calls another op that is also timed) and include each op's launch gaps, which is what a
 * training step pays. bench_model prints the table. */
#ifndef GKA_PROFILE_H
#define GKA_PROFILE_H

#include <stdio.h>

#include "context.h"

#ifdef __cplusplus
extern "C" {
#endif

int prof_enabled(void);
/* Synchronises ctx and returns the time, or 0 when profiling is off. */
double prof_begin(Ctx *ctx);
/* Synchronises ctx and adds the time since t0 to the row `name` (nothing when t0 is 0). */
void prof_end(Ctx *ctx, const char *name, double t0);
void prof_reset(void);
/* A row name made from a format (e.g. an op and its shape), kept for the life of the process: the same text
 * gives the same pointer. */
const char *prof_name(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* The rows by total time, with their share of `step_seconds` (the time they were measured in). */
void prof_report(FILE *f, double step_seconds, int steps);

typedef struct ProfScope {
    Ctx *ctx;
    const char *name;
    double t0;
} ProfScope;
static inline void prof_scope_end(ProfScope *s) {
    if (s->t0 > 0) prof_end(s->ctx, s->name, s->t0);
}
/* Times the rest of the enclosing block as `name` (GCC and Clang's cleanup attribute). */
#define PROF_SCOPE(ctx, name)                                                                                \
    ProfScope prof_scope_ __attribute__((cleanup(prof_scope_end))) = {(ctx), (name), prof_begin(ctx)}

#ifdef __cplusplus
}
#endif
#endif
