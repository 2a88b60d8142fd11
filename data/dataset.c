/* dataset.c: ImageFolder scanning, the Fashion-MNIST IDX reader, and the one Dataset interface over
 * folders, packs (pack.c) and IDX. Scanning sorts everything by bytes, so sample i is the same file on
 * every machine, whatever order the file system lists a folder in. */
#include "dataset.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "pack.h"

const char *const fashion_mnist_classes[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                               "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

#define MAX_WALK_DEPTH 16 /* nested folders inside a class folder; deeper is a symlink loop */

void sample_free(Sample *s) {
    free(s->buf);
    *s = SAMPLE_INIT;
}

const char *dataset_kind_name(DatasetKind kind) {
    switch (kind) {
    case DATASET_FOLDER:
        return "image folder";
    case DATASET_PACKED:
        return "packed dataset";
    case DATASET_IDX:
        return "IDX files";
    }
    return "?";
}

static char *str_dup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = mallocCheck(n);
    memcpy(d, s, n);
    return d;
}

/* ---- a growable list of strings in one arena ------------------------------------------------------ */
typedef struct {
    char *buf;
    size_t len, cap;
    int64_t *off;
    int64_t n, cap_n;
} StrList;

static void strlist_add(StrList *l, const char *s) {
    size_t k = strlen(s) + 1;
    if (l->len + k > l->cap) {
        l->cap = (l->len + k) * 2 + 4096;
        l->buf = realloc(l->buf, l->cap);
        GK_CHECK(l->buf, "out of host memory listing files");
    }
    if (l->n == l->cap_n) {
        l->cap_n = l->cap_n * 2 + 256;
        l->off = realloc(l->off, (size_t)l->cap_n * sizeof(int64_t));
        GK_CHECK(l->off, "out of host memory listing files");
    }
    memcpy(l->buf + l->len, s, k);
    l->off[l->n++] = (int64_t)l->len;
    l->len += k;
}

static void strlist_free(StrList *l) {
    free(l->buf);
    free(l->off);
    memset(l, 0, sizeof *l);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Pointers to the list's strings, sorted by bytes (the list must not grow while they are in use). */
static const char **strlist_sorted(const StrList *l) {
    const char **p = mallocCheck((size_t)(l->n ? l->n : 1) * sizeof(char *));
    for (int64_t i = 0; i < l->n; i++)
        p[i] = l->buf + l->off[i];
    qsort(p, (size_t)l->n, sizeof(char *), cmp_str);
    return p;
}

/* ---- ImageFolder ---------------------------------------------------------------------------------- */
static int has_image_extension(const char *name) {
    static const char *const ext[] = {"jpeg", "jpg", "png", "bmp", "gif", "ppm", "pgm", "tga", "psd"};
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name) return 0;
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++)
        if (!strcasecmp(dot + 1, ext[i])) return 1;
    return 0;
}

/* 1 directory, 2 regular file, 0 other or unreadable. d_type saves a stat per file on most file
 * systems; links and unknown types are resolved with stat, so symlinked class folders work. */
static int entry_type(const char *dir, const struct dirent *e) {
    if (e->d_type == DT_DIR) return 1;
    if (e->d_type == DT_REG) return 2;
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= (int)sizeof path) return 0;
    struct stat st;
    if (stat(path, &st) != 0) return 0;
    return S_ISDIR(st.st_mode) ? 1 : S_ISREG(st.st_mode) ? 2 : 0;
}

/* Adds every image file below dir to out, as "rel/name". */
static int walk_images(const char *dir, const char *rel, int depth, StrList *out, GkErr *err) {
    if (depth > MAX_WALK_DEPTH)
        return gk_fail(err, "dataset folder '%s' nests more than %d folders deep (a symlink loop?)", dir,
                       MAX_WALK_DEPTH);
    DIR *d = opendir(dir);
    if (!d) return gk_fail(err, "cannot read dataset folder '%s': %s", dir, strerror(errno));
    struct dirent *e;
    char sub[4096], subrel[4096];
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue; /* ".", "..", and hidden files such as .DS_Store */
        int type = entry_type(dir, e);
        if (type == 0) continue;
        if (snprintf(sub, sizeof sub, "%s/%s", dir, e->d_name) >= (int)sizeof sub ||
            snprintf(subrel, sizeof subrel, "%s/%s", rel, e->d_name) >= (int)sizeof subrel) {
            rc = gk_fail(err, "path too long in dataset folder '%s': '%s'", dir, e->d_name);
            break;
        }
        if (type == 1) {
            if ((rc = walk_images(sub, subrel, depth + 1, out, err)) != 0) break;
        } else if (has_image_extension(e->d_name)) {
            strlist_add(out, subrel);
        }
    }
    closedir(d);
    return rc;
}

static void dataset_zero(Dataset *ds) {
    memset(ds, 0, sizeof *ds);
}

int dataset_open_folder(Dataset *ds, const char *root, GkErr *err) {
    dataset_zero(ds);
    struct stat st;
    if (stat(root, &st) != 0)
        return gk_fail(err, "dataset folder '%s' does not exist (%s); expected ROOT/<class>/<images>", root,
                       strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return gk_fail(err, "dataset path '%s' is not a folder; expected ROOT/<class>/<images>", root);
    DIR *d = opendir(root);
    if (!d) return gk_fail(err, "cannot read dataset folder '%s': %s", root, strerror(errno));
    StrList classes = {0};
    int64_t loose_images = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        int type = entry_type(root, e);
        if (type == 1) strlist_add(&classes, e->d_name);
        if (type == 2 && has_image_extension(e->d_name)) loose_images++;
    }
    closedir(d);
    if (classes.n == 0) {
        strlist_free(&classes);
        if (loose_images)
            return gk_fail(err,
                           "dataset folder '%s' holds %lld images but no class folders; expected "
                           "ROOT/<class>/<images> (one sub-folder per class)",
                           root, (long long)loose_images);
        return gk_fail(err, "dataset folder '%s' is empty: no class folders (expected ROOT/<class>/<images>)",
                       root);
    }
    const char **cls = strlist_sorted(&classes);

    /* An ILSVRC2012 root holds train/ and val/, each full of class folders: taking "train" and "val" as
     * two classes would train a two-class model on the whole of ImageNet without a word. */
    int has_train = 0, has_val = 0;
    for (int64_t c = 0; c < classes.n; c++) {
        has_train |= !strcmp(cls[c], "train");
        has_val |= !strcmp(cls[c], "val");
    }
    if (has_train && has_val) {
        free(cls);
        strlist_free(&classes);
        return gk_fail(err,
                       "dataset folder '%s' holds train/ and val/: it looks like an ILSVRC2012 root; pass "
                       "the split folder ('%s/train' or '%s/val')",
                       root, root, root);
    }

    StrList all = {0}, one = {0};
    int32_t *labels = NULL;
    int64_t labels_cap = 0;
    int rc = 0;
    for (int64_t c = 0; c < classes.n && rc == 0; c++) {
        char dir[4096];
        if (snprintf(dir, sizeof dir, "%s/%s", root, cls[c]) >= (int)sizeof dir) {
            rc = gk_fail(err, "path too long: '%s/%s'", root, cls[c]);
            break;
        }
        one.len = 0, one.n = 0;
        if ((rc = walk_images(dir, cls[c], 0, &one, err)) != 0) break;
        if (one.n == 0) {
            rc = gk_fail(err, "class folder '%s' has no image files (extensions %s, any case)", dir,
                         DATASET_IMAGE_EXTENSIONS);
            break;
        }
        if (c >= INT32_MAX) {
            rc = gk_fail(err, "dataset folder '%s' has too many class folders", root);
            break;
        }
        const char **files = strlist_sorted(&one);
        if (all.n + one.n > labels_cap) {
            labels_cap = (all.n + one.n) * 2;
            labels = realloc(labels, (size_t)labels_cap * sizeof(int32_t));
            GK_CHECK(labels, "out of host memory listing files");
        }
        for (int64_t i = 0; i < one.n; i++) {
            labels[all.n] = (int32_t)c;
            strlist_add(&all, files[i]);
        }
        free(files);
    }
    strlist_free(&one);
    if (rc != 0) {
        free(cls);
        strlist_free(&classes);
        strlist_free(&all);
        free(labels);
        return rc;
    }
    ds->kind = DATASET_FOLDER;
    ds->source = str_dup(root);
    ds->count = all.n;
    ds->num_classes = (int)classes.n;
    ds->class_names = mallocCheck((size_t)classes.n * sizeof(char *));
    for (int64_t c = 0; c < classes.n; c++)
        ds->class_names[c] = str_dup(cls[c]);
    ds->labels = labels;
    ds->names = all.buf;
    ds->name_off = all.off;
    free(cls);
    strlist_free(&classes);
    return 0;
}

int read_file(const char *path, int64_t max_bytes, uint8_t **buf, size_t *cap, size_t *len, GkErr *err) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return gk_fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        close(fd);
        return gk_fail(err, "%s: cannot stat: %s", path, strerror(errno));
    }
    if (max_bytes > 0 && (int64_t)st.st_size > max_bytes) {
        close(fd);
        return gk_fail(err, "%s: file of %lld bytes is larger than the %lld-byte limit", path,
                       (long long)st.st_size, (long long)max_bytes);
    }
    size_t want = (size_t)st.st_size;
    if (want > *cap || !*buf) {
        free(*buf);
        *cap = want + want / 4 + 1;
        *buf = mallocCheck(*cap);
    }
    size_t got = 0;
    while (got < want) {
        ssize_t r = read(fd, *buf + got, want - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = errno;
            close(fd);
            return gk_fail(err, "%s: read failed after %zu of %zu bytes: %s", path, got, want,
                           r < 0 ? strerror(e) : "file shrank while reading");
        }
        got += (size_t)r;
    }
    close(fd);
    *len = want;
    return 0;
}

/* Reads a whole image file into s->buf. */
static int read_file_into(const char *path, Sample *s, GkErr *err) {
    size_t want;
    if (read_file(path, DATASET_MAX_FILE_BYTES, &s->buf, &s->cap, &want, err) != 0) return -1;
    s->encoded = 1;
    s->data = s->buf;
    s->len = want;
    s->w = s->h = s->c = 0;
    return 0;
}

/* ---- IDX (Fashion-MNIST) --------------------------------------------------------------------------- */
static uint32_t be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

/* Reads exactly n bytes; names the file and what was expected when the stream ends or is corrupt. */
static int gz_read_exact(gzFile gz, const char *path, void *dst, size_t n, const char *what, GkErr *err) {
    size_t got = 0;
    while (got < n) {
        unsigned chunk = (unsigned)((n - got) > (1u << 30) ? (1u << 30) : (n - got));
        int r = gzread(gz, (uint8_t *)dst + got, chunk);
        if (r < 0) {
            int errnum = 0;
            const char *m = gzerror(gz, &errnum);
            return gk_fail(err, "%s: corrupt gzip stream while reading %s: %s", path, what, m);
        }
        if (r == 0) break;
        got += (size_t)r;
    }
    if (got < n) {
        int errnum = 0;
        const char *m = gzerror(gz, &errnum);
        return gk_fail(err, "%s: truncated: %s needs %zu bytes, the file ends after %zu%s%s", path, what, n,
                       got, errnum ? " (" : "", errnum ? m : "");
    }
    return 0;
}

/* One IDX file of unsigned bytes with `ndims` dimensions (3: images, 1: labels). */
static int idx_read(const char *path, int ndims, uint32_t *dims, uint8_t **data, GkErr *err) {
    *data = NULL;
    gzFile gz = gzopen(path, "rb");
    if (!gz) return gk_fail(err, "%s: cannot open: %s", path, strerror(errno ? errno : ENOENT));
    gzbuffer(gz, 1 << 17);
    uint8_t head[16];
    uint32_t magic_want = 0x00000800u | (uint32_t)ndims;
    /* the magic first, so a file of another kind is named as such rather than as a short one */
    int rc = gz_read_exact(gz, path, head, 4, "the IDX magic number", err);
    if (rc == 0) {
        uint32_t magic = be32(head);
        if (magic != magic_want) {
            rc = gk_fail(err,
                         "%s: bad IDX magic 0x%08x, expected 0x%08x (unsigned bytes, %d dimension%s): not an "
                         "IDX %s file",
                         path, magic, magic_want, ndims, ndims == 1 ? "" : "s",
                         ndims == 1 ? "label" : "image");
        }
    }
    if (rc == 0) rc = gz_read_exact(gz, path, head + 4, 4 * (size_t)ndims, "the IDX dimensions", err);
    size_t total = 1;
    for (int k = 0; rc == 0 && k < ndims; k++) {
        dims[k] = be32(head + 4 + 4 * k);
        uint32_t limit = k == 0 ? 100000000u : 4096u; /* a count, then rows and columns */
        if (dims[k] == 0 || dims[k] > limit)
            rc = gk_fail(err, "%s: IDX dimension %d is %u, expected 1 to %u", path, k, dims[k], limit);
        total *= dims[k];
    }
    if (rc == 0) {
        *data = mallocCheck(total);
        rc = gz_read_exact(gz, path, *data, total, ndims == 1 ? "the labels" : "the pixels", err);
    }
    if (rc == 0) { /* the header's count must describe the whole file */
        uint8_t extra;
        int r = gzread(gz, &extra, 1);
        if (r > 0)
            rc = gk_fail(err, "%s: trailing data after %zu bytes of %s: the header's count (%u) is wrong",
                         path, total, ndims == 1 ? "labels" : "pixels", dims[0]);
        else if (r < 0) {
            int errnum = 0;
            rc = gk_fail(err, "%s: corrupt gzip stream at its end: %s", path, gzerror(gz, &errnum));
        }
    }
    gzclose(gz);
    if (rc != 0) {
        free(*data);
        *data = NULL;
    }
    return rc;
}

int dataset_open_idx(Dataset *ds, const char *images_path, const char *labels_path,
                     const char *const *class_names, int num_classes, GkErr *err) {
    dataset_zero(ds);
    uint32_t idim[3], ldim[1];
    uint8_t *pix = NULL, *lab = NULL;
    if (idx_read(images_path, 3, idim, &pix, err) != 0) return -1;
    if (idx_read(labels_path, 1, ldim, &lab, err) != 0) {
        free(pix);
        return -1;
    }
    if (ldim[0] != idim[0]) {
        free(pix), free(lab);
        return gk_fail(err, "%s: %u labels, but %s holds %u images", labels_path, ldim[0], images_path,
                       idim[0]);
    }
    ds->labels = mallocCheck((size_t)ldim[0] * sizeof(int32_t));
    for (uint32_t i = 0; i < ldim[0]; i++) {
        if (lab[i] >= num_classes) {
            unsigned bad = lab[i];
            free(pix), free(lab), free(ds->labels);
            ds->labels = NULL;
            return gk_fail(err, "%s: label %u of image %u is out of range (expected 0 to %d)", labels_path,
                           bad, i, num_classes - 1);
        }
        ds->labels[i] = lab[i];
    }
    free(lab);
    ds->kind = DATASET_IDX;
    ds->source = str_dup(images_path);
    ds->count = idim[0];
    ds->h = (int)idim[1];
    ds->w = (int)idim[2];
    ds->c = 1;
    ds->pixels = pix;
    ds->num_classes = num_classes;
    ds->class_names = mallocCheck((size_t)num_classes * sizeof(char *));
    for (int c = 0; c < num_classes; c++)
        ds->class_names[c] = str_dup(class_names[c]);
    return 0;
}

int dataset_open_fashion_mnist(Dataset *ds, const char *dir, const char *split, GkErr *err) {
    dataset_zero(ds);
    const char *stem;
    if (!strcmp(split, "train"))
        stem = "train";
    else if (!strcmp(split, "test") || !strcmp(split, "t10k"))
        stem = "t10k";
    else
        return gk_fail(err, "fashion-mnist: unknown split '%s' (expected train or test)", split);
    if (!dir) dir = FASHION_MNIST_DIR;
    char images[4096], labels[4096];
    snprintf(images, sizeof images, "%s/%s-images-idx3-ubyte.gz", dir, stem);
    snprintf(labels, sizeof labels, "%s/%s-labels-idx1-ubyte.gz", dir, stem);
    if (access(images, R_OK) != 0)
        return gk_fail(err, "%s: not found (%s); install Debian's dataset-fashion-mnist", images,
                       strerror(errno));
    return dataset_open_idx(ds, images, labels, fashion_mnist_classes, 10, err);
}

/* ---- the one interface ----------------------------------------------------------------------------- */
int dataset_open(Dataset *ds, const char *spec, GkErr *err) {
    dataset_zero(ds);
    const char *fm = "fashion-mnist:";
    if (!strncmp(spec, fm, strlen(fm))) {
        const char *rest = spec + strlen(fm);
        const char *colon = strrchr(rest, ':');
        if (!colon) return dataset_open_fashion_mnist(ds, NULL, rest, err);
        char dir[4096];
        size_t n = (size_t)(colon - rest);
        if (n >= sizeof dir) return gk_fail(err, "dataset '%s': folder name too long", spec);
        memcpy(dir, rest, n);
        dir[n] = 0;
        return dataset_open_fashion_mnist(ds, dir, colon + 1, err);
    }
    char index[4096];
    if (snprintf(index, sizeof index, "%s/%s", spec, PACK_INDEX_NAME) < (int)sizeof index &&
        access(index, F_OK) == 0)
        return dataset_open_packed(ds, spec, err);
    return dataset_open_folder(ds, spec, err);
}

void dataset_close(Dataset *ds) {
    if (ds->class_names)
        for (int c = 0; c < ds->num_classes; c++)
            free(ds->class_names[c]);
    free(ds->class_names);
    free(ds->source);
    free(ds->labels);
    free(ds->names);
    free(ds->name_off);
    free(ds->pixels);
    if (ds->pack) pack_close(ds->pack);
    dataset_zero(ds);
}

int dataset_get(const Dataset *ds, int64_t i, Sample *s, GkErr *err) {
    GK_CHECK(i >= 0 && i < ds->count, "sample %lld out of range [0, %lld)", (long long)i,
             (long long)ds->count);
    s->label = ds->labels[i];
    switch (ds->kind) {
    case DATASET_FOLDER: {
        char path[4096];
        if (snprintf(path, sizeof path, "%s/%s", ds->source, ds->names + ds->name_off[i]) >= (int)sizeof path)
            return gk_fail(err, "%s/%s: path too long", ds->source, ds->names + ds->name_off[i]);
        return read_file_into(path, s, err);
    }
    case DATASET_PACKED:
        return pack_read(ds->pack, i, s, err);
    case DATASET_IDX:
        s->encoded = 0;
        s->w = ds->w, s->h = ds->h, s->c = ds->c;
        s->len = (size_t)ds->w * ds->h * ds->c;
        s->data = ds->pixels + (size_t)i * s->len;
        return 0;
    }
    return gk_fail(err, "dataset: unknown kind %d", (int)ds->kind);
}

const char *dataset_describe(const Dataset *ds, int64_t i, char *buf, size_t len) {
    switch (ds->kind) {
    case DATASET_FOLDER:
        snprintf(buf, len, "%s/%s", ds->source, ds->names + ds->name_off[i]);
        break;
    case DATASET_PACKED:
        pack_describe(ds->pack, i, ds->names + ds->name_off[i], buf, len);
        break;
    case DATASET_IDX:
        snprintf(buf, len, "%s[%lld]", ds->source, (long long)i);
        break;
    }
    return buf;
}

void dataset_class_counts(const Dataset *ds, int64_t *counts) {
    memset(counts, 0, (size_t)ds->num_classes * sizeof(int64_t));
    for (int64_t i = 0; i < ds->count; i++)
        counts[ds->labels[i]]++;
}
