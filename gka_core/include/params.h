/* params.h: the parameter table. Every parameter of a model is a named view into one flat buffer per role
 * (float32 master weights, gradients, AdamW moments, the bf16 copy): declaring a parameter reserves its
 * offset; the same offset indexes every buffer. Names are the PyTorch state_dict keys, so weights move to
 * and from PyTorch without a renaming table. Parameters a layer multiplies as one matrix are declared
 * next to each other, so that a view spanning them is one operand (e.g. [q_proj; k_proj; v_proj]). */
#ifndef GKA_PARAMS_H
#define GKA_PARAMS_H

#include <stddef.h>
#include <stdint.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PARAM_NAME_MAX 160
#define PARAM_MAX_DIMS 4

typedef enum {
    PARAM_WEIGHT = 0, /* a matrix or filter: weight decay applies (timm: ndim > 1 and not a bias) */
    PARAM_NO_DECAY,   /* 1-D parameters, biases, norms: no weight decay */
} ParamKind;

/* How a parameter is initialised (spec gkavision.md 2.10, gka.md 2.2). */
typedef enum {
    INIT_ZERO = 0,
    INIT_ONE,
    INIT_TRUNC_NORMAL, /* N(0, std) truncated at +-2 (absolute), std in init_arg */
    INIT_UNIFORM,      /* U(-init_arg, init_arg), e.g. PyTorch's conv default 1/sqrt(fan_in) */
    INIT_LOG_UNIFORM,  /* A_log = ln U(0, init_arg) (GKA) */
    INIT_DT_BIAS,      /* inverse softplus of dt = exp(U(ln 1e-3, ln 1e-1)), clamped >= 1e-4 */
    INIT_LOG_RANGE,    /* A_log[c, n] = ln(n + 1) of the Mamba mixer, n = column index */
} ParamInit;

typedef struct ParamEntry {
    char name[PARAM_NAME_MAX];
    int ndim;
    int64_t shape[PARAM_MAX_DIMS];
    size_t offset; /* in elements, into every flat buffer */
    size_t numel;
    ParamKind kind;
    ParamInit init;
    float init_arg;
    int torch_conv2d; /* stored [OC, K, K, IC/g] here, [OC, IC/g, K, K] in PyTorch files */
} ParamEntry;

typedef struct ParamTable {
    ParamEntry *e;
    int n, cap;
    size_t total; /* elements */
} ParamTable;

/* Declares a parameter named prefix + name; returns its index. Shapes of up to 4 dimensions. */
int params_add(ParamTable *pt, const char *prefix, const char *name, int ndim, const int64_t *shape, ParamKind kind,
               ParamInit init, float init_arg);
/* A Tensor over buffer `base` (of dtype dt, on dev) for parameter i. */
Tensor params_view(const ParamTable *pt, int i, void *base, DType dt, Device dev);
/* A view spanning parameters i..j (declared consecutively) as one [rows, cols] matrix: their numels must
 * add up, each having `cols` columns. */
Tensor params_span(const ParamTable *pt, int i, int j, int64_t cols, void *base, DType dt, Device dev);
int params_find(const ParamTable *pt, const char *name);
/* Fills the float32 buffer with each parameter's initial values, from Philox(seed, RNG_INIT, offset). */
void params_init(const ParamTable *pt, float *base, uint64_t seed);
void params_free(ParamTable *pt);

#ifdef __cplusplus
}
#endif
#endif
