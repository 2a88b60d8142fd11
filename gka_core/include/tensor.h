/* tensor.h: a contiguous, row-major view of memory that knows its shape, dtype and device.
 *
 * A Tensor owns nothing: its data points into an arena, a flat parameter buffer or a caller's array.
 * An absent optional argument is a Tensor with data == NULL (TENSOR_NONE). Images are NHWC throughout
 * (see ops.h for why). */
#ifndef GKA_TENSOR_H
#define GKA_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "bf16.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { DT_F32 = 0, DT_BF16 = 1 } DType;
typedef enum { DEV_CPU = 0, DEV_CUDA = 1 } Device;

#define TENSOR_MAX_DIMS 6

typedef struct Tensor {
    void *data;
    DType dtype;
    Device device;
    int ndim;
    int64_t shape[TENSOR_MAX_DIMS];
} Tensor;

#define TENSOR_NONE ((Tensor){0})

static inline int tensor_present(Tensor t) { return t.data != NULL; }
size_t dtype_size(DType dt);
const char *dtype_name(DType dt);
int64_t tensor_numel(Tensor t);
size_t tensor_bytes(Tensor t);
/* Product of the dimensions from `from` (inclusive) to `to` (exclusive). */
int64_t tensor_span(Tensor t, int from, int to);

/* A view with the given shape over `data` (no allocation). ndim from 1 to TENSOR_MAX_DIMS. */
Tensor tensor_make(void *data, DType dtype, Device device, int ndim, const int64_t *shape);
Tensor tensor_1d(void *data, DType dt, Device dev, int64_t d0);
Tensor tensor_2d(void *data, DType dt, Device dev, int64_t d0, int64_t d1);
Tensor tensor_3d(void *data, DType dt, Device dev, int64_t d0, int64_t d1, int64_t d2);
Tensor tensor_4d(void *data, DType dt, Device dev, int64_t d0, int64_t d1, int64_t d2, int64_t d3);
/* The same memory seen with another shape of equal element count. */
Tensor tensor_reshape(Tensor t, int ndim, const int64_t *shape);
/* Rows [start, start + count) of the leading dimension. */
Tensor tensor_slice0(Tensor t, int64_t start, int64_t count);

static inline float *tensor_f32(Tensor t) { return (float *)t.data; }
static inline bf16_t *tensor_bf16(Tensor t) { return (bf16_t *)t.data; }

/* "[2, 196, 320] bf16 cuda" into buf; returns buf. */
const char *tensor_describe(Tensor t, char *buf, size_t len);

/* Shape equality (dtype and device not compared). */
int tensor_same_shape(Tensor a, Tensor b);

#ifdef __cplusplus
}
#endif
#endif
