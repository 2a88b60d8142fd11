/* profile.c: the op profiler (profile.h). Rows are found by name pointer (each call site passes __func__,
 * a string with static storage), so a lookup is a short scan and no allocation. */
#include "profile.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

#define PROF_ROWS 128

typedef struct {
    const char *name;
    double seconds;
    long calls;
} ProfRow;

static ProfRow rows[PROF_ROWS];
static int n_rows, enabled = -1;

int prof_enabled(void) {
    if (enabled < 0) {
        const char *v = getenv("GKA_PROFILE");
        enabled = v && *v && strcmp(v, "0") != 0;
    }
    return enabled;
}

double prof_begin(Ctx *ctx) {
    if (!prof_enabled()) return 0.0;
    ctx_sync(ctx);
    return gk_now();
}

void prof_end(Ctx *ctx, const char *name, double t0) {
    if (t0 <= 0.0) return;
    ctx_sync(ctx);
    double dt = gk_now() - t0;
    int i = 0;
    while (i < n_rows && rows[i].name != name && strcmp(rows[i].name, name) != 0)
        i++;
    if (i == n_rows) {
        if (n_rows == PROF_ROWS) return;
        rows[n_rows++] = (ProfRow){name, 0.0, 0};
    }
    rows[i].seconds += dt, rows[i].calls++;
}

const char *prof_name(const char *fmt, ...) {
    static char names[PROF_ROWS][96];
    static int n_names;
    char buf[96];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    for (int i = 0; i < n_names; i++)
        if (!strcmp(names[i], buf)) return names[i];
    if (n_names == PROF_ROWS) return "(other)";
    memcpy(names[n_names], buf, sizeof buf);
    return names[n_names++];
}

void prof_reset(void) {
    n_rows = 0;
}

static int by_time(const void *a, const void *b) {
    double x = ((const ProfRow *)a)->seconds, y = ((const ProfRow *)b)->seconds;
    return x < y ? 1 : x > y ? -1 : 0;
}

void prof_report(FILE *f, double step_seconds, int steps) {
    qsort(rows, (size_t)n_rows, sizeof rows[0], by_time);
    double sum = 0.0;
    for (int i = 0; i < n_rows; i++)
        sum += rows[i].seconds;
    if (steps < 1) steps = 1;
    fprintf(f, "%-44s %10s %8s %8s\n", "op", "ms/step", "calls", "share");
    for (int i = 0; i < n_rows; i++)
        fprintf(f, "%-44s %10.2f %8ld %7.1f%%\n", rows[i].name, 1e3 * rows[i].seconds / steps,
                rows[i].calls / steps, step_seconds > 0 ? 100.0 * rows[i].seconds / step_seconds : 0.0);
    fprintf(f, "%-44s %10.2f %8s %7.1f%%\n", "(all timed ops)", 1e3 * sum / steps, "",
            step_seconds > 0 ? 100.0 * sum / step_seconds : 0.0);
    fprintf(f, "%-44s %10.2f\n", "(step, profiled)", 1e3 * step_seconds / steps);
}
