/* safetensors.h: read and write safetensors files, the weight and checkpoint format of GKAVision.
 *
 * Layout: an 8-byte little-endian header length N, N bytes of UTF-8 JSON mapping each tensor name to
 * {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the end of the header) plus an
 * optional "__metadata__" object of string values, then the raw little-endian tensor data.
 *
 * The decision a reader must know: st_open validates the whole header against the file before it returns
 * anything (sizes, offsets within the data section, no overlaps and no holes, every dtype and shape), so
 * a caller may index tensor data without further checks; every failure is one line naming the file and
 * the tensor. Files are mapped read-only (a fallback reads them into memory); the mapping lives until
 * st_close. The writer lays files out exactly as Python's safetensors library does, so the two produce
 * identical bytes for identical tensors and metadata. */
#ifndef GKA_SAFETENSORS_H
#define GKA_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ST_MAX_DIMS 8
/* Headers larger than this are refused as corrupt (the Python library's limit). */
#define ST_MAX_HEADER 100000000ull

typedef enum { ST_F32 = 0, ST_BF16, ST_F16, ST_I64, ST_I32, ST_U8 } StDType;

typedef struct StTensor {
    char *name;
    StDType dtype;
    int ndim; /* 0 for a scalar */
    int64_t shape[ST_MAX_DIMS];
    size_t begin, end; /* byte range in the data section (StFile.data) */
} StTensor;

typedef struct StFile {
    char *path;
    int n; /* tensors, in header order */
    StTensor *t;
    int n_meta; /* __metadata__ entries, in header order */
    char **meta_key, **meta_val;
    const uint8_t *data; /* the data section: tensor i is data[t[i].begin, t[i].end) */
    size_t data_size;
    /* private */
    void *base_;   /* the whole file: a mapping or a heap copy */
    size_t size_;  /* its size */
    int mapped_;   /* base_ is an mmap mapping */
    int *by_name_; /* tensor indices sorted by name, for st_find */
} StFile;

/* Opens and validates path. On failure f is left empty (st_close is harmless) and err names the file. */
int st_open(StFile *f, const char *path, GkErr *err);
/* As st_open; with ST_OPEN_NO_MMAP the file is read into memory instead of mapped. */
#define ST_OPEN_NO_MMAP 1
int st_open_flags(StFile *f, const char *path, int flags, GkErr *err);
/* Validates a file image already in memory (copied; `label` stands for the path in messages). */
int st_open_memory(StFile *f, const char *label, const void *bytes, size_t size, GkErr *err);
void st_close(StFile *f);

const StTensor *st_find(const StFile *f, const char *name); /* NULL if absent */
const char *st_meta(const StFile *f, const char *key);      /* NULL if absent */
/* The raw little-endian bytes of a tensor (t from this file). */
static inline const void *st_tensor_data(const StFile *f, const StTensor *t) {
    return f->data + t->begin;
}
int64_t st_numel(const StTensor *t);

const char *st_dtype_name(StDType dt); /* "F32", "BF16", ... as in the header */
size_t st_dtype_size(StDType dt);

/* Copies a tensor into float32, converting BF16/F16/I64/I32/U8 as needed (I64 beyond 2^24 rounds). Fails,
 * naming the tensor, when it is absent or its shape differs from the expected ndim/shape. */
int st_read_f32(const StFile *f, const char *name, float *dst, int ndim, const int64_t *shape, GkErr *err);

/* Checks that the file holds exactly the tensors `names` (no duplicates in names): the message lists the
 * missing and the unexpected ones by name. */
int st_expect_names(const StFile *f, const char *const *names, int n, GkErr *err);

/* The writer REFERENCES tensor data: `data` must stay valid and unchanged until st_writer_write returns
 * (a checkpoint would otherwise hold two copies of every buffer). Names, keys and values are copied.
 * data may be NULL for a tensor with no elements. Misuse (ndim out of 0..8, a negative dimension, NULL
 * data for a non-empty tensor) is a programming error and exits. */
typedef struct StWriter StWriter;
StWriter *st_writer_new(void);
void st_writer_add(StWriter *w, const char *name, StDType dtype, int ndim, const int64_t *shape,
                   const void *data);
/* A second call with the same key replaces the value. */
void st_writer_meta(StWriter *w, const char *key, const char *value);
/* Writes atomically: PATH.tmp, fsync, rename to PATH, fsync the directory. Layout as the Python library:
 * "__metadata__" first (its keys sorted, where Python's order is arbitrary), then the tensors sorted by
 * dtype (larger elements first: I64, F32, I32, BF16, F16, U8) and then by name, the data in that order,
 * the header padded with spaces to a multiple of 8 bytes. Fails (nothing written) on a duplicate tensor
 * name, a tensor named "__metadata__", or a name, key or value that is not valid UTF-8. */
int st_writer_write(StWriter *w, const char *path, GkErr *err);
void st_writer_free(StWriter *w);

#ifdef __cplusplus
}
#endif
#endif
