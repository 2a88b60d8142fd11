/* safetensors.c: validation-first reader and Python-compatible atomic writer of safetensors files.
 *
 * Reading is one pass of checks over the parsed header (each tensor on its own, then names sorted for
 * duplicates, then ranges sorted for overlaps and holes) before StFile is handed out; writing builds
 * the whole header first, so a failed validation writes nothing. Little-endian host assumed (checked). */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bf16.h"
#include "json.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c reads and writes tensor data in host order, which must be little-endian"
#endif

/* rank: the order of Python safetensors' Dtype enum, which its writer sorts by (descending). */
static const struct {
    const char *name;
    size_t size;
    int rank;
} DT[] = {
    [ST_F32] = {"F32", 4, 4}, [ST_BF16] = {"BF16", 2, 2}, [ST_F16] = {"F16", 2, 1},
    [ST_I64] = {"I64", 8, 5}, [ST_I32] = {"I32", 4, 3},   [ST_U8] = {"U8", 1, 0},
};
#define ST_NDTYPES ((int)(sizeof DT / sizeof DT[0]))
#define ST_JSON_DEPTH 8 /* the format needs 3: header object, tensor object, shape array */
/* About 10 values per tensor: room for 200k tensors in one file, and at most ~400 MB of parse tree. */
#define ST_JSON_VALUES 2000000L

const char *st_dtype_name(StDType dt) {
    return (int)dt >= 0 && (int)dt < ST_NDTYPES ? DT[dt].name : "?";
}
size_t st_dtype_size(StDType dt) {
    return (int)dt >= 0 && (int)dt < ST_NDTYPES ? DT[dt].size : 0;
}

int64_t st_numel(const StTensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

/* A name made safe for a one-line message: control bytes as \xNN, cut after 200 bytes. */
static const char *printable(const char *s, char *buf, size_t n) {
    size_t o = 0;
    for (size_t i = 0; s[i] && o + 8 < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i == 200) {
            memcpy(buf + o, "...", 3);
            o += 3;
            break;
        }
        if (c < 0x20 || c == 0x7f)
            o += (size_t)snprintf(buf + o, n - o, "\\x%02x", c);
        else
            buf[o++] = (char)c;
    }
    buf[o] = '\0';
    return buf;
}

static const char *fmt_shape(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t o = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
    return buf;
}

/* Element count and byte size with overflow checks; -1 if either exceeds 64 bits. */
static int byte_size(StDType dt, int ndim, const int64_t *shape, uint64_t *bytes) {
    uint64_t numel = 1;
    for (int i = 0; i < ndim; i++)
        if (shape[i] == 0) {
            *bytes = 0;
            return 0;
        }
    for (int i = 0; i < ndim; i++) {
        uint64_t d = (uint64_t)shape[i];
        if (numel > UINT64_MAX / d) return -1;
        numel *= d;
    }
    if (numel > UINT64_MAX / DT[dt].size) return -1;
    *bytes = numel * DT[dt].size;
    return 0;
}

/* ---- reading ------------------------------------------------------------------------------------------ */

void st_close(StFile *f) {
    if (!f) return;
    for (int i = 0; i < f->n; i++)
        free(f->t[i].name);
    free(f->t);
    for (int i = 0; i < f->n_meta; i++) {
        free(f->meta_key[i]);
        free(f->meta_val[i]);
    }
    free(f->meta_key);
    free(f->meta_val);
    free(f->by_name_);
    if (f->mapped_)
        munmap(f->base_, f->size_);
    else
        free(f->base_);
    free(f->path);
    memset(f, 0, sizeof *f);
}

/* A value for a message: a number as written in the header (so "1.0" is not shown as "1"), else its type. */
static const char *value_text(const StFile *f, const JsonValue *v, char *buf, size_t n) {
    if (v->type != JSON_NUMBER) {
        snprintf(buf, n, "%s", json_type_name(v->type));
        return buf;
    }
    const char *text = (const char *)f->base_ + 8, *end = (const char *)f->data;
    size_t o = 0;
    for (const char *c = text + v->offset; c < end && o + 1 < n && *c && strchr("+-.eE0123456789", *c); c++)
        buf[o++] = *c;
    buf[o] = '\0';
    return buf;
}

/* One header entry into *t (name already set), with every check that needs no other tensor. */
static int parse_entry(const StFile *f, const JsonValue *v, StTensor *t, GkErr *err) {
    char nb[256], sb[256], vb[64];
    const char *path = f->path, *name = printable(t->name, nb, sizeof nb);
    if (v->type != JSON_OBJECT)
        return gk_fail(err,
                       "%s: tensor '%s': found %s, expected an object with dtype, shape and data_offsets",
                       path, name, json_type_name(v->type));
    static const char *const keys[3] = {"dtype", "shape", "data_offsets"};
    const JsonValue *field[3] = {NULL, NULL, NULL};
    for (int i = 0; i < v->n; i++) {
        int k = 0;
        while (k < 3 && strcmp(v->keys[i], keys[k]) != 0)
            k++;
        if (k == 3)
            return gk_fail(err, "%s: tensor '%s': unexpected key '%s' (expected dtype, shape, data_offsets)",
                           path, name, printable(v->keys[i], sb, sizeof sb));
        if (field[k]) return gk_fail(err, "%s: tensor '%s': key '%s' appears twice", path, name, keys[k]);
        field[k] = &v->items[i];
    }
    for (int k = 0; k < 3; k++)
        if (!field[k]) return gk_fail(err, "%s: tensor '%s': missing \"%s\"", path, name, keys[k]);

    const JsonValue *dt = field[0], *shape = field[1], *offs = field[2];
    if (dt->type != JSON_STRING)
        return gk_fail(err, "%s: tensor '%s': dtype is %s, expected a string like \"F32\"", path, name,
                       json_type_name(dt->type));
    int d = 0;
    while (d < ST_NDTYPES && strcmp(dt->str, DT[d].name) != 0)
        d++;
    if (d == ST_NDTYPES)
        return gk_fail(err,
                       "%s: tensor '%s': unsupported dtype '%s' (expected F32, BF16, F16, I64, I32 or U8)",
                       path, name, printable(dt->str, sb, 64));
    t->dtype = (StDType)d;

    if (shape->type != JSON_ARRAY)
        return gk_fail(err, "%s: tensor '%s': shape is %s, expected an array of non-negative integers", path,
                       name, json_type_name(shape->type));
    if (shape->n > ST_MAX_DIMS)
        return gk_fail(err, "%s: tensor '%s': shape has %d dimensions, at most %d are supported", path, name,
                       shape->n, ST_MAX_DIMS);
    t->ndim = shape->n;
    for (int i = 0; i < shape->n; i++) {
        const JsonValue *e = &shape->items[i];
        if (e->type != JSON_NUMBER || !e->is_int || e->integer < 0)
            return gk_fail(err, "%s: tensor '%s': shape entry %d is %s, expected a non-negative integer",
                           path, name, i, value_text(f, e, vb, sizeof vb));
        t->shape[i] = e->integer;
    }

    if (offs->type != JSON_ARRAY)
        return gk_fail(err, "%s: tensor '%s': data_offsets is %s, expected [begin, end]", path, name,
                       json_type_name(offs->type));
    if (offs->n != 2)
        return gk_fail(err, "%s: tensor '%s': data_offsets has %d entries, expected [begin, end]", path, name,
                       offs->n);
    for (int i = 0; i < 2; i++) {
        const JsonValue *e = &offs->items[i];
        if (e->type != JSON_NUMBER || !e->is_int || e->integer < 0)
            return gk_fail(err, "%s: tensor '%s': data_offsets %s is %s, expected a non-negative integer",
                           path, name, i ? "end" : "begin", value_text(f, e, vb, sizeof vb));
    }
    uint64_t begin = (uint64_t)offs->items[0].integer, end = (uint64_t)offs->items[1].integer, bytes;
    if (end < begin)
        return gk_fail(err, "%s: tensor '%s': data_offsets [%llu, %llu] end before they begin", path, name,
                       (unsigned long long)begin, (unsigned long long)end);
    fmt_shape(t->ndim, t->shape, sb, sizeof sb);
    if (byte_size(t->dtype, t->ndim, t->shape, &bytes))
        return gk_fail(err, "%s: tensor '%s': shape %s of %s is larger than 2^64 bytes", path, name, sb,
                       DT[d].name);
    if (end - begin != bytes)
        return gk_fail(err, "%s: tensor '%s': data_offsets [%llu, %llu] but shape %s of %s needs %llu bytes",
                       path, name, (unsigned long long)begin, (unsigned long long)end, sb, DT[d].name,
                       (unsigned long long)bytes);
    if (end > f->data_size)
        return gk_fail(err,
                       "%s: tensor '%s': data_offsets [%llu, %llu] run past the end of the data section "
                       "(%zu bytes; file truncated?)",
                       path, name, (unsigned long long)begin, (unsigned long long)end, f->data_size);
    t->begin = (size_t)begin;
    t->end = (size_t)end;
    return 0;
}

static int cmp_tensor_name(const void *a, const void *b) {
    return strcmp((*(const StTensor *const *)a)->name, (*(const StTensor *const *)b)->name);
}

static int cmp_tensor_range(const void *a, const void *b) {
    const StTensor *x = *(const StTensor *const *)a, *y = *(const StTensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Duplicate names (also the index for st_find), then the ranges: sorted by offset, each tensor must begin
 * where the previous one ended, and the last must end at the end of the data section. */
static int check_layout(StFile *f, GkErr *err) {
    char na[256], nb[256];
    const StTensor **s = mallocCheck((size_t)f->n * sizeof *s);
    for (int i = 0; i < f->n; i++)
        s[i] = &f->t[i];
    qsort(s, (size_t)f->n, sizeof *s, cmp_tensor_name);
    for (int i = 1; i < f->n; i++)
        if (strcmp(s[i - 1]->name, s[i]->name) == 0) {
            gk_fail(err, "%s: tensor '%s' appears twice in the header", f->path,
                    printable(s[i]->name, na, 256));
            free(s);
            return -1;
        }
    f->by_name_ = mallocCheck((size_t)f->n * sizeof *f->by_name_);
    for (int i = 0; i < f->n; i++)
        f->by_name_[i] = (int)(s[i] - f->t);

    qsort(s, (size_t)f->n, sizeof *s, cmp_tensor_range);
    size_t at = 0;
    const StTensor *prev = NULL;
    int rc = 0;
    for (int i = 0; i < f->n && rc == 0; i++) {
        const StTensor *t = s[i];
        if (t->begin < at)
            rc = gk_fail(err, "%s: tensors '%s' [%zu, %zu] and '%s' [%zu, %zu] overlap", f->path,
                         printable(prev->name, na, 256), prev->begin, prev->end, printable(t->name, nb, 256),
                         t->begin, t->end);
        else if (t->begin > at)
            rc = gk_fail(err,
                         "%s: bytes [%zu, %zu) of the data section belong to no tensor (a hole %s%s%s '%s'; "
                         "the format allows no holes)",
                         f->path, at, t->begin, prev ? "between '" : "before",
                         prev ? printable(prev->name, na, 256) : "", prev ? "' and" : "",
                         printable(t->name, nb, 256));
        at = t->end;
        prev = t;
    }
    if (rc == 0 && at != f->data_size)
        rc = gk_fail(err,
                     "%s: bytes [%zu, %zu) of the data section belong to no tensor (after %s%s%s; the format "
                     "allows no holes)",
                     f->path, at, f->data_size, prev ? "'" : "the header",
                     prev ? printable(prev->name, na, 256) : "", prev ? "'" : "");
    free(s);
    return rc;
}

static int parse_metadata(StFile *f, const JsonValue *m, GkErr *err) {
    char nb[256];
    if (m->type != JSON_OBJECT)
        return gk_fail(err, "%s: __metadata__ is %s, expected an object of string values", f->path,
                       json_type_name(m->type));
    f->meta_key = callocCheck((size_t)m->n, sizeof(char *));
    f->meta_val = callocCheck((size_t)m->n, sizeof(char *));
    for (int i = 0; i < m->n; i++) {
        if (m->items[i].type != JSON_STRING)
            return gk_fail(err, "%s: __metadata__ '%s' is %s, expected a string", f->path,
                           printable(m->keys[i], nb, sizeof nb), json_type_name(m->items[i].type));
        f->meta_key[i] = strdup(m->keys[i]);
        f->meta_val[i] = strdup(m->items[i].str);
        if (!f->meta_key[i] || !f->meta_val[i]) gk_die("out of host memory reading %s", f->path);
        f->n_meta = i + 1;
    }
    const char **keys = mallocCheck((size_t)f->n_meta * sizeof *keys);
    memcpy(keys, f->meta_key, (size_t)f->n_meta * sizeof *keys);
    qsort(keys, (size_t)f->n_meta, sizeof *keys, cmp_str);
    int rc = 0;
    for (int i = 1; i < f->n_meta && rc == 0; i++)
        if (strcmp(keys[i - 1], keys[i]) == 0)
            rc = gk_fail(err, "%s: __metadata__ key '%s' appears twice", f->path,
                         printable(keys[i], nb, sizeof nb));
    free(keys);
    return rc;
}

/* Takes ownership of base (mapped or heap) and validates the image it holds. */
static int st_parse(StFile *f, const char *path, void *base, size_t size, int mapped, GkErr *err) {
    memset(f, 0, sizeof *f);
    f->base_ = base;
    f->size_ = size;
    f->mapped_ = mapped;
    f->path = strdup(path);
    if (!f->path) gk_die("out of host memory");
    const uint8_t *b = base;
    JsonValue root = {0};
    if (size < 8) {
        gk_fail(err,
                "%s: file is %zu bytes, too short for the 8-byte header length (not a safetensors file?)",
                path, size);
        goto fail;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | b[i];
    if (hlen > ST_MAX_HEADER) {
        gk_fail(err,
                "%s: header length %llu is over the %llu-byte limit (corrupt, or not a safetensors file)",
                path, (unsigned long long)hlen, ST_MAX_HEADER);
        goto fail;
    }
    if (hlen > size - 8) {
        gk_fail(err,
                "%s: header length %llu runs past the end of the file (%zu bytes after the length field)",
                path, (unsigned long long)hlen, size - 8);
        goto fail;
    }
    f->data = b + 8 + hlen;
    f->data_size = size - 8 - (size_t)hlen;
    GkErr jerr;
    if (json_parse((const char *)b + 8, (size_t)hlen, ST_JSON_DEPTH, ST_JSON_VALUES, &root, &jerr)) {
        gk_fail(err, "%s: header is not valid JSON: %s", path, jerr.msg);
        goto fail;
    }
    if (root.type != JSON_OBJECT) {
        gk_fail(err,
                "%s: header is %s, expected an object mapping tensor names to {dtype, shape, data_offsets}",
                path, json_type_name(root.type));
        goto fail;
    }
    const JsonValue *meta = NULL;
    for (int i = 0; i < root.n; i++)
        if (strcmp(root.keys[i], "__metadata__") == 0) {
            if (meta) {
                gk_fail(err, "%s: __metadata__ appears twice in the header", path);
                goto fail;
            }
            meta = &root.items[i];
        }
    f->t = callocCheck((size_t)root.n, sizeof *f->t);
    for (int i = 0; i < root.n; i++) {
        if (&root.items[i] == meta) continue;
        StTensor *t = &f->t[f->n];
        t->name = root.keys[i]; /* taken over from the JSON tree */
        root.keys[i] = NULL;
        f->n++;
        if (parse_entry(f, &root.items[i], t, err)) goto fail;
    }
    if (check_layout(f, err)) goto fail;
    if (meta && parse_metadata(f, meta, err)) goto fail;
    json_free(&root);
    return 0;
fail:
    json_free(&root);
    st_close(f);
    return -1;
}

int st_open_flags(StFile *f, const char *path, int flags, GkErr *err) {
    memset(f, 0, sizeof *f);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return gk_fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return gk_fail(err, "%s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    void *base = NULL;
    int mapped = 0;
    if (size >= 8 && !(flags & ST_OPEN_NO_MMAP)) {
        base = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (base == MAP_FAILED)
            base = NULL;
        else
            mapped = 1;
    }
    if (!base) { /* fallback: read the whole file (also for tiny files, which mmap may refuse) */
        base = mallocCheck(size);
        size_t got = 0;
        while (got < size) {
            ssize_t r = read(fd, (char *)base + got, size - got);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) {
                int e = r < 0 ? errno : 0;
                close(fd);
                free(base);
                return gk_fail(err, "%s: read failed after %zu of %zu bytes: %s", path, got, size,
                               e ? strerror(e) : "the file shrank while being read");
            }
            got += (size_t)r;
        }
    }
    close(fd);
    return st_parse(f, path, base, size, mapped, err);
}

int st_open(StFile *f, const char *path, GkErr *err) {
    return st_open_flags(f, path, 0, err);
}

int st_open_memory(StFile *f, const char *label, const void *bytes, size_t size, GkErr *err) {
    void *copy = mallocCheck(size);
    if (size) memcpy(copy, bytes, size);
    return st_parse(f, label, copy, size, 0, err);
}

const StTensor *st_find(const StFile *f, const char *name) {
    int lo = 0, hi = f->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const StTensor *t = &f->t[f->by_name_[mid]];
        int c = strcmp(name, t->name);
        if (c == 0) return t;
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return NULL;
}

const char *st_meta(const StFile *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta_key[i], key) == 0) return f->meta_val[i];
    return NULL;
}

static float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, u;
    if (exp == 0 && man == 0)
        u = sign;
    else if (exp == 0) { /* subnormal: shift the mantissa up until its leading one is the implicit bit */
        int e = -1;
        do {
            e++;
            man <<= 1;
        } while (!(man & 0x400u));
        u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
    } else if (exp == 31)
        u = sign | 0x7f800000u | (man << 13);
    else
        u = sign | ((exp + 112u) << 23) | (man << 13);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

int st_read_f32(const StFile *f, const char *name, float *dst, int ndim, const int64_t *shape, GkErr *err) {
    char nb[256], got[256], want[256];
    const StTensor *t = st_find(f, name);
    if (!t) return gk_fail(err, "%s: no tensor '%s'", f->path, printable(name, nb, sizeof nb));
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = t->shape[i] == shape[i];
    if (!same)
        return gk_fail(err, "%s: tensor '%s' has shape %s, expected %s", f->path,
                       printable(name, nb, sizeof nb), fmt_shape(t->ndim, t->shape, got, sizeof got),
                       fmt_shape(ndim, shape, want, sizeof want));
    const uint8_t *src = f->data + t->begin;
    size_t n = (size_t)st_numel(t);
    /* the data section has no alignment guarantee: element loads go through memcpy */
    switch (t->dtype) {
    case ST_F32:
        if (n) memcpy(dst, src, n * 4);
        break;
    case ST_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = bf16_to_f32(h);
        }
        break;
    case ST_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            dst[i] = f16_to_f32(h);
        }
        break;
    case ST_I64:
        for (size_t i = 0; i < n; i++) {
            int64_t v;
            memcpy(&v, src + 8 * i, 8);
            dst[i] = (float)v;
        }
        break;
    case ST_I32:
        for (size_t i = 0; i < n; i++) {
            int32_t v;
            memcpy(&v, src + 4 * i, 4);
            dst[i] = (float)v;
        }
        break;
    case ST_U8:
        for (size_t i = 0; i < n; i++)
            dst[i] = (float)src[i];
        break;
    }
    return 0;
}

/* Up to 6 names of a list, quoted, then "and N more". */
static void list_names(JsonBuf *b, const char *const *names, int n) {
    char nb[256];
    for (int i = 0; i < n && i < 6; i++)
        jbuf_printf(b, "%s'%s'", i ? ", " : "", printable(names[i], nb, 256));
    if (n > 6) jbuf_printf(b, " and %d more", n - 6);
}

int st_expect_names(const StFile *f, const char *const *names, int n, GkErr *err) {
    const char **want = mallocCheck((size_t)n * sizeof *want);
    const char **missing = mallocCheck((size_t)n * sizeof *missing);
    const char **extra = mallocCheck((size_t)f->n * sizeof *extra);
    memcpy(want, names, (size_t)n * sizeof *want);
    qsort(want, (size_t)n, sizeof *want, cmp_str);
    for (int i = 1; i < n; i++)
        GK_CHECK(strcmp(want[i - 1], want[i]) != 0, "st_expect_names: '%s' listed twice", want[i]);
    int n_missing = 0, n_extra = 0;
    for (int i = 0; i < n; i++)
        if (!st_find(f, want[i])) missing[n_missing++] = want[i];
    for (int i = 0; i < f->n; i++) { /* by_name_ order, so the message lists names sorted */
        const char *name = f->t[f->by_name_[i]].name;
        if (!bsearch(&name, want, (size_t)n, sizeof *want, cmp_str)) extra[n_extra++] = name;
    }
    int rc = 0;
    if (n_missing || n_extra) {
        JsonBuf b = {0};
        jbuf_printf(&b, "%s: ", f->path);
        if (n_missing) {
            jbuf_printf(&b, "%d expected tensor%s missing: ", n_missing, n_missing == 1 ? "" : "s");
            list_names(&b, missing, n_missing);
        }
        if (n_extra) {
            jbuf_printf(&b, "%s%d unexpected tensor%s: ", n_missing ? "; " : "", n_extra,
                        n_extra == 1 ? "" : "s");
            list_names(&b, extra, n_extra);
        }
        rc = gk_fail(err, "%s", b.p);
        jbuf_free(&b);
    }
    free(want);
    free(missing);
    free(extra);
    return rc;
}

/* ---- writing ------------------------------------------------------------------------------------------ */

typedef struct WEntry {
    char *name;
    StDType dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;
    size_t bytes;
} WEntry;

struct StWriter {
    WEntry *t;
    int n, cap;
    char **mk, **mv;
    int nm, capm;
};

StWriter *st_writer_new(void) {
    return callocCheck(1, sizeof(StWriter));
}

static char *dup_check(const char *s) {
    char *d = strdup(s);
    if (!d) gk_die("out of host memory");
    return d;
}

void st_writer_add(StWriter *w, const char *name, StDType dtype, int ndim, const int64_t *shape,
                   const void *data) {
    GK_CHECK(w && name, "st_writer_add: NULL writer or name");
    GK_CHECK((int)dtype >= 0 && (int)dtype < ST_NDTYPES, "st_writer_add '%s': bad dtype %d", name,
             (int)dtype);
    GK_CHECK(ndim >= 0 && ndim <= ST_MAX_DIMS, "st_writer_add '%s': ndim %d not in 0..%d", name, ndim,
             ST_MAX_DIMS);
    WEntry e = {0};
    for (int i = 0; i < ndim; i++) {
        GK_CHECK(shape[i] >= 0, "st_writer_add '%s': negative dimension %lld", name, (long long)shape[i]);
        e.shape[i] = shape[i];
    }
    uint64_t bytes;
    GK_CHECK(byte_size(dtype, ndim, shape, &bytes) == 0 && bytes <= SIZE_MAX, "st_writer_add '%s': too large",
             name);
    GK_CHECK(data || bytes == 0, "st_writer_add '%s': NULL data for %llu bytes", name,
             (unsigned long long)bytes);
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 16;
        w->t = realloc(w->t, (size_t)w->cap * sizeof *w->t);
        if (!w->t) gk_die("out of host memory");
    }
    e.name = dup_check(name);
    e.dtype = dtype;
    e.ndim = ndim;
    e.data = data;
    e.bytes = (size_t)bytes;
    w->t[w->n++] = e;
}

void st_writer_meta(StWriter *w, const char *key, const char *value) {
    GK_CHECK(w && key && value, "st_writer_meta: NULL argument");
    for (int i = 0; i < w->nm; i++)
        if (strcmp(w->mk[i], key) == 0) {
            free(w->mv[i]);
            w->mv[i] = dup_check(value);
            return;
        }
    if (w->nm == w->capm) {
        w->capm = w->capm ? 2 * w->capm : 8;
        w->mk = realloc(w->mk, (size_t)w->capm * sizeof *w->mk);
        w->mv = realloc(w->mv, (size_t)w->capm * sizeof *w->mv);
        if (!w->mk || !w->mv) gk_die("out of host memory");
    }
    w->mk[w->nm] = dup_check(key);
    w->mv[w->nm] = dup_check(value);
    w->nm++;
}

void st_writer_free(StWriter *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++)
        free(w->t[i].name);
    for (int i = 0; i < w->nm; i++) {
        free(w->mk[i]);
        free(w->mv[i]);
    }
    free(w->t);
    free(w->mk);
    free(w->mv);
    free(w);
}

static int cmp_entry_name(const void *a, const void *b) {
    return strcmp((*(const WEntry *const *)a)->name, (*(const WEntry *const *)b)->name);
}

static int cmp_entry_layout(const void *a, const void *b) {
    const WEntry *x = *(const WEntry *const *)a, *y = *(const WEntry *const *)b;
    if (DT[x->dtype].rank != DT[y->dtype].rank) return DT[y->dtype].rank - DT[x->dtype].rank;
    return strcmp(x->name, y->name);
}

static int write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t r = write(fd, c, n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) return -1;
        c += r;
        n -= (size_t)r;
    }
    return 0;
}

/* Checks names, keys and values, and builds the header with padding; entries come back in file order. */
static int build_header(const StWriter *w, const char *path, const WEntry **order, JsonBuf *h, GkErr *err) {
    char nb[256];
    for (int i = 0; i < w->n; i++) {
        order[i] = &w->t[i];
        if (!json_utf8_valid(w->t[i].name, strlen(w->t[i].name)))
            return gk_fail(err, "%s: tensor name '%s' is not valid UTF-8", path,
                           printable(w->t[i].name, nb, 256));
        if (strcmp(w->t[i].name, "__metadata__") == 0)
            return gk_fail(err, "%s: a tensor may not be named __metadata__", path);
    }
    for (int i = 0; i < w->nm; i++)
        if (!json_utf8_valid(w->mk[i], strlen(w->mk[i])) || !json_utf8_valid(w->mv[i], strlen(w->mv[i])))
            return gk_fail(err, "%s: metadata '%s' is not valid UTF-8", path, printable(w->mk[i], nb, 256));
    qsort(order, (size_t)w->n, sizeof *order, cmp_entry_name);
    for (int i = 1; i < w->n; i++)
        if (strcmp(order[i - 1]->name, order[i]->name) == 0)
            return gk_fail(err, "%s: tensor '%s' added twice", path, printable(order[i]->name, nb, 256));
    qsort(order, (size_t)w->n, sizeof *order, cmp_entry_layout);

    jbuf_puts(h, "{");
    if (w->nm) {
        const char **keys = mallocCheck((size_t)w->nm * sizeof *keys);
        memcpy(keys, w->mk, (size_t)w->nm * sizeof *keys);
        qsort(keys, (size_t)w->nm, sizeof *keys, cmp_str);
        jbuf_puts(h, "\"__metadata__\":{");
        for (int i = 0; i < w->nm; i++) {
            int j = 0;
            while (w->mk[j] != keys[i])
                j++;
            if (i) jbuf_puts(h, ",");
            jbuf_string(h, keys[i]);
            jbuf_puts(h, ":");
            jbuf_string(h, w->mv[j]);
        }
        jbuf_puts(h, "}");
        free(keys);
    }
    size_t at = 0;
    for (int i = 0; i < w->n; i++) {
        const WEntry *e = order[i];
        if (i || w->nm) jbuf_puts(h, ",");
        jbuf_string(h, e->name);
        jbuf_printf(h, ":{\"dtype\":\"%s\",\"shape\":[", DT[e->dtype].name);
        for (int k = 0; k < e->ndim; k++)
            jbuf_printf(h, "%s%lld", k ? "," : "", (long long)e->shape[k]);
        jbuf_printf(h, "],\"data_offsets\":[%zu,%zu]}", at, at + e->bytes);
        at += e->bytes;
    }
    jbuf_puts(h, "}");
    while (h->len % 8)
        jbuf_puts(h, " ");
    return 0;
}

int st_writer_write(StWriter *w, const char *path, GkErr *err) {
    const WEntry **order = mallocCheck((size_t)w->n * sizeof *order);
    JsonBuf h = {0};
    if (build_header(w, path, order, &h, err)) {
        free(order);
        jbuf_free(&h);
        return -1;
    }
    size_t plen = strlen(path);
    char *tmp = mallocCheck(plen + 5);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    int rc = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = gk_fail(err, "%s: cannot create %s: %s", path, tmp, strerror(errno));
        goto done;
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)((uint64_t)h.len >> (8 * i));
    int bad = write_all(fd, len8, 8) || write_all(fd, h.p, h.len);
    for (int i = 0; i < w->n && !bad; i++)
        bad = order[i]->bytes && write_all(fd, order[i]->data, order[i]->bytes);
    if (bad || fsync(fd) != 0) {
        rc = gk_fail(err, "%s: writing %s failed: %s (disk full?)", path, tmp, strerror(errno));
        close(fd);
        unlink(tmp);
        goto done;
    }
    if (close(fd) != 0 || rename(tmp, path) != 0) {
        rc = gk_fail(err, "%s: finishing %s failed: %s", path, tmp, strerror(errno));
        unlink(tmp);
        goto done;
    }
    /* the rename itself is durable only once the directory entry is on disk */
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : dup_check(".");
    if (!dir) gk_die("out of host memory");
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || (fsync(dfd) != 0 && errno != EINVAL))
        rc = gk_fail(err, "%s: syncing directory %s failed: %s", path, dir, strerror(errno));
    if (dfd >= 0) close(dfd);
    free(dir);
done:
    free(tmp);
    free(order);
    jbuf_free(&h);
    return rc;
}
