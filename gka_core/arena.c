/* arena.c: bump allocation over one block; dry arenas measure. */
#include "arena.h"

#include <stdlib.h>

#include "context.h"
#include "core.h"

Arena arena_create(Device device, size_t capacity) {
    Arena a = {0};
    a.device = device;
    a.capacity = capacity;
    if (device == DEV_CPU) {
        a.base = (char *)aligned_alloc(ARENA_ALIGN, (capacity + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN);
        GK_CHECK(a.base != NULL || capacity == 0, "out of host memory for an arena of %zu bytes", capacity);
    } else {
        Ctx tmp = {.device = DEV_CUDA};
        a.base = (char *)dev_malloc(&tmp, capacity);
    }
    return a;
}

Arena arena_dry(Device device) {
    Arena a = {0};
    a.device = device;
    return a;
}

void arena_destroy(Arena *a) {
    if (a->base) {
        if (a->device == DEV_CPU) {
            free(a->base);
        } else {
            Ctx tmp = {.device = DEV_CUDA};
            dev_free(&tmp, a->base);
        }
    }
    *a = (Arena){0};
}

void *arena_alloc(Arena *a, size_t bytes) {
    size_t start = (a->used + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    size_t end = start + bytes;
    if (a->base) GK_CHECK(end <= a->capacity, "arena of %zu bytes exhausted (%zu needed)", a->capacity, end);
    a->used = end;
    if (end > a->peak) a->peak = end;
    return a->base ? a->base + start : NULL;
}

Tensor arena_tensor(Arena *a, DType dt, int ndim, const int64_t *shape) {
    Tensor t = tensor_make(NULL, dt, a->device, ndim, shape);
    t.data = arena_alloc(a, tensor_bytes(t));
    return t;
}

void arena_rewind(Arena *a, size_t mark) {
    GK_CHECK(mark <= a->used, "arena rewind past its end");
    a->used = mark;
}
