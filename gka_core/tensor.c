/* tensor.c: shapes, views and descriptions. */
#include "tensor.h"

#include <stdio.h>
#include <string.h>

#include "core.h"

size_t dtype_size(DType dt) { return dt == DT_BF16 ? 2 : 4; }
const char *dtype_name(DType dt) { return dt == DT_BF16 ? "bf16" : "f32"; }

int64_t tensor_numel(Tensor t) {
    if (t.ndim == 0) return 0;
    int64_t n = 1;
    for (int i = 0; i < t.ndim; i++) n *= t.shape[i];
    return n;
}

size_t tensor_bytes(Tensor t) { return (size_t)tensor_numel(t) * dtype_size(t.dtype); }

int64_t tensor_span(Tensor t, int from, int to) {
    int64_t n = 1;
    for (int i = from; i < to; i++) n *= t.shape[i];
    return n;
}

Tensor tensor_make(void *data, DType dtype, Device device, int ndim, const int64_t *shape) {
    GK_CHECK(ndim >= 1 && ndim <= TENSOR_MAX_DIMS, "tensor rank %d outside 1..%d", ndim, TENSOR_MAX_DIMS);
    Tensor t = {0};
    t.data = data;
    t.dtype = dtype;
    t.device = device;
    t.ndim = ndim;
    for (int i = 0; i < ndim; i++) {
        GK_CHECK(shape[i] >= 0, "negative dimension %lld", (long long)shape[i]);
        t.shape[i] = shape[i];
    }
    return t;
}

Tensor tensor_1d(void *data, DType dt, Device dev, int64_t d0) { return tensor_make(data, dt, dev, 1, &d0); }

Tensor tensor_2d(void *data, DType dt, Device dev, int64_t d0, int64_t d1) {
    int64_t s[2] = {d0, d1};
    return tensor_make(data, dt, dev, 2, s);
}

Tensor tensor_3d(void *data, DType dt, Device dev, int64_t d0, int64_t d1, int64_t d2) {
    int64_t s[3] = {d0, d1, d2};
    return tensor_make(data, dt, dev, 3, s);
}

Tensor tensor_4d(void *data, DType dt, Device dev, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    int64_t s[4] = {d0, d1, d2, d3};
    return tensor_make(data, dt, dev, 4, s);
}

Tensor tensor_reshape(Tensor t, int ndim, const int64_t *shape) {
    Tensor r = tensor_make(t.data, t.dtype, t.device, ndim, shape);
    char a[128], b[128];
    GK_CHECK(tensor_numel(r) == tensor_numel(t), "reshape %s to %s changes the element count",
             tensor_describe(t, a, sizeof a), tensor_describe(r, b, sizeof b));
    return r;
}

Tensor tensor_slice0(Tensor t, int64_t start, int64_t count) {
    GK_CHECK(t.ndim >= 1 && start >= 0 && count >= 0 && start + count <= t.shape[0],
             "slice [%lld, %lld) outside a leading dimension of %lld", (long long)start,
             (long long)(start + count), (long long)(t.ndim ? t.shape[0] : 0));
    Tensor r = t;
    size_t row = (size_t)tensor_span(t, 1, t.ndim) * dtype_size(t.dtype);
    r.data = t.data ? (char *)t.data + (size_t)start * row : NULL;
    r.shape[0] = count;
    return r;
}

const char *tensor_describe(Tensor t, char *buf, size_t len) {
    size_t n = 0;
    n += (size_t)snprintf(buf + n, len - n, "[");
    for (int i = 0; i < t.ndim && n < len; i++)
        n += (size_t)snprintf(buf + n, len - n, i ? ", %lld" : "%lld", (long long)t.shape[i]);
    if (n < len) snprintf(buf + n, len - n, "] %s %s", dtype_name(t.dtype), t.device == DEV_CUDA ? "cuda" : "cpu");
    return buf;
}

int tensor_same_shape(Tensor a, Tensor b) {
    if (a.ndim != b.ndim) return 0;
    for (int i = 0; i < a.ndim; i++)
        if (a.shape[i] != b.shape[i]) return 0;
    return 1;
}
