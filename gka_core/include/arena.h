/* arena.h: one block of memory, handed out by bumping an offset.
 *
 * Activations live in an arena sized once from the model and the batch size; nothing is allocated inside
 * the training step. An arena can be measured first (a "dry" arena with no memory counts the bytes a
 * sequence of allocations needs) and then created with exactly that size. */
#ifndef GKA_ARENA_H
#define GKA_ARENA_H

#include <stddef.h>

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ARENA_ALIGN 256

typedef struct Arena {
    char *base;      /* NULL for a dry (measuring) arena */
    size_t capacity; /* bytes available; 0 for a dry arena */
    size_t used;     /* bytes handed out so far */
    size_t peak;     /* largest `used` seen */
    Device device;
} Arena;

/* A real arena of `capacity` bytes on `device` (device memory needs a CUDA build). */
Arena arena_create(Device device, size_t capacity);
/* A dry arena: allocations return NULL data but count bytes, so arena.peak is the size to create. */
Arena arena_dry(Device device);
void arena_destroy(Arena *a);

void *arena_alloc(Arena *a, size_t bytes);
Tensor arena_tensor(Arena *a, DType dt, int ndim, const int64_t *shape);
/* Marks and rewinds: everything allocated after the mark is released at once. */
static inline size_t arena_mark(const Arena *a) { return a->used; }
void arena_rewind(Arena *a, size_t mark);

#ifdef __cplusplus
}
#endif
#endif
