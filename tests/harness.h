/* harness.h: the op-test harness (ggml style): one table of op cases, each checked the same way.
 *
 * For every case and every shape it declares:
 * - CPU mode: the op's CPU forward against a naive float64 loop (forward64), and every gradient of the
 *   CPU backward against central finite differences of that float64 loop, for the loss
 *   L = sum over outputs marked `grad` of sum(out * dout) with random dout.
 * - GPU mode (--gpu): the CUDA twin against the CPU twin on the same bf16-rounded inputs, by the error
 *   ratio rms(cuda - cpu) / rms(cpu), for outputs and gradients.
 * Outputs are poisoned with NaN before each run (an unwritten element fails); parameter gradients are
 * pre-filled with random values and checked as increments (they must accumulate); activation gradients
 * are poisoned (they must be written).
 * Perf mode (--perf) times each case's run() at its largest shape. */
#ifndef GKA_TEST_HARNESS_H
#define GKA_TEST_HARNESS_H

#include <stdint.h>

#include "context.h"
#include "ops.h"
#include "tensor.h"

#define HARNESS_MAX_ARGS 10

/* What an argument is: decides its dtype on CUDA and how its gradient is checked. */
typedef enum {
    ARG_ACT = 0, /* activation: bf16 on CUDA; its gradient is written */
    ARG_WEIGHT,  /* parameter: bf16 copy on CUDA; its gradient (f32) accumulates */
    ARG_STAT     /* statistics, targets, probabilities: f32 everywhere; never differentiated */
} ArgRole;

typedef struct ArgSpec {
    const char *name;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
    ArgRole role;
    int grad;      /* input: differentiable; output: part of the loss */
    float lo, hi;  /* input init: uniform in [lo, hi]; lo == hi means normal(0, 1) * (hi ? hi : 1) */
} ArgSpec;

typedef struct OpCase OpCase;

typedef struct OpTest {
    const OpCase *c;
    int shape_index;
    int gpu_only; /* set by setup for shapes too large for finite differences: only the GPU mode runs them */
    int p[8];   /* integer settings of this shape (sizes, stride, heads, ...) */
    float f[4]; /* float settings (eps, momentum, p, ...) */
    int n_in, n_out;
    ArgSpec in[HARNESS_MAX_ARGS], out[HARNESS_MAX_ARGS];
} OpTest;

struct OpCase {
    const char *name;
    int n_shapes;
    /* Fills t->p, t->f, t->in[], t->out[] for shape `shape_index`. */
    void (*setup)(OpTest *t, int shape_index);
    /* Optional fix-up of the random host inputs (e.g. make target rows sum to 1). */
    void (*prepare)(const OpTest *t, float **in);
    /* Naive float64 forward: every output from the inputs. */
    void (*forward64)(const OpTest *t, double **out, double *const *in);
    /* Runs forward and, where dout[i] is present, backward through ops.h on ctx. din[j] is present for
     * inputs with grad set. The harness allocates every tensor on ctx's device with the role's dtype. */
    void (*run)(const OpTest *t, Tensor *out, Tensor *in, Tensor *dout, Tensor *din, Ctx *ctx);
    float tol_fwd;      /* CPU vs float64, normalised max error (default 1e-4) */
    float tol_grad;     /* CPU backward vs finite differences (default 1e-3) */
    float tol_gpu;      /* CUDA vs CPU outputs, error ratio (default 1e-2) */
    float tol_gpu_grad; /* CUDA vs CPU gradients, error ratio (default 1e-2) */
    int has_cuda;       /* the op has a CUDA twin */
};

/* Helpers for setup(); the ndim dimensions follow as int arguments. */
void arg_in(OpTest *t, const char *name, ArgRole role, int grad, float lo, float hi, int ndim, ...);
void arg_out(OpTest *t, const char *name, ArgRole role, int grad, int ndim, ...);
int64_t arg_numel(const ArgSpec *a);

/* Runs every case whose name contains `filter` (NULL: all). Returns the number of failures. */
int harness_run(const OpCase *const *cases, int n_cases, int gpu, int perf, const char *filter);

#endif
