/* dataset.h: labelled images from three sources behind one interface: an ImageFolder tree
 * (root/<class>/<images>), a packed dataset (pack.h), and the gzip'd IDX files of Fashion-MNIST.
 *
 * The one decision: a sample is handed out as the source stores it, encoded file bytes (folders, packs)
 * or raw pixels (IDX). Decoding belongs to the transform, so the loader treats every source alike and a
 * bad file is found where it is decoded, with its path.
 *
 * Opening validates the whole source (a missing or empty folder, a class folder without images, a
 * malformed IDX or pack file stops with a message naming the file); reading one sample never prints and
 * is thread-safe: any number of threads may call dataset_get on one Dataset, each with its own Sample. */
#ifndef GKA_DATASET_H
#define GKA_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { DATASET_FOLDER = 0, DATASET_PACKED = 1, DATASET_IDX = 2 } DatasetKind;

typedef struct PackReader PackReader; /* pack.h */

typedef struct Dataset {
    DatasetKind kind;
    char *source; /* the folder, pack folder or images file, as opened */
    int64_t count;
    int num_classes;
    char **class_names;
    int32_t *labels; /* [count] */
    /* Folders: each image's path relative to source; packs: the original relative path. One arena. */
    char *names;
    int64_t *name_off; /* [count]; names + name_off[i] is NUL-terminated */
    /* IDX: all images, [count, h, w, c] uint8. */
    uint8_t *pixels;
    int w, h, c;
    PackReader *pack;
} Dataset;

/* One sample. dataset_get fills data/len (and w, h, c for raw pixels); buf is scratch owned by the
 * Sample, grown as needed and reused between calls, so a worker thread allocates nothing per image
 * once its largest file has been seen. Start from SAMPLE_INIT; release with sample_free. */
typedef struct Sample {
    int encoded;         /* 1: data[0..len) is an encoded image file; 0: raw HWC pixels w x h x c */
    const uint8_t *data; /* into buf, or into the dataset's memory (IDX) */
    size_t len;
    int w, h, c;
    int32_t label;
    uint8_t *buf;
    size_t cap;
} Sample;
#define SAMPLE_INIT ((Sample){0})
void sample_free(Sample *s);

/* Reads the whole file into *buf (grown with malloc when smaller than the file, *cap its size; start from
 * NULL and 0), its length in *len. Refuses files over max_bytes (0: no limit). -1 with err naming the file. */
int read_file(const char *path, int64_t max_bytes, uint8_t **buf, size_t *cap, size_t *len, GkErr *err);

/* The file extensions an ImageFolder accepts (case-insensitive), for messages. */
#define DATASET_IMAGE_EXTENSIONS ".jpeg .jpg .png .bmp .gif .ppm .pgm .tga .psd"
/* Largest file dataset_get reads: anything bigger is no photograph, and reading it would stall a worker. */
#define DATASET_MAX_FILE_BYTES ((int64_t)256 << 20)

/* Opens by the form of `spec`:
 * - "fashion-mnist:train", "fashion-mnist:test" (the Debian dataset-fashion-mnist files), or
 *   "fashion-mnist:DIR:train" for another folder holding the same four files;
 * - a folder holding index.gkpi: a packed dataset (pack.h);
 * - any other folder: an ImageFolder (pass the split folder, e.g. ILSVRC2012's root/train or root/val). */
int dataset_open(Dataset *ds, const char *spec, GkErr *err);
/* root/<class>/<images>: classes are the sub-folder names sorted by bytes; images are found in every
 * folder below a class folder, by extension, and sorted by their relative path; hidden entries are
 * skipped. Errors: a missing root, no class folders, a class folder without images. */
int dataset_open_folder(Dataset *ds, const char *root, GkErr *err);
/* IDX images (magic 0x00000803: count, rows, cols) and labels (0x00000801: count), gzip'd or plain.
 * Checks magic, dimensions, equal counts, exact lengths and labels < num_classes. */
int dataset_open_idx(Dataset *ds, const char *images_path, const char *labels_path,
                     const char *const *class_names, int num_classes, GkErr *err);
/* split "train" (60,000 images) or "test" (10,000, the t10k files) from dir (NULL: the Debian location). */
int dataset_open_fashion_mnist(Dataset *ds, const char *dir, const char *split, GkErr *err);
#define FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"
extern const char *const fashion_mnist_classes[10];
void dataset_close(Dataset *ds);

/* Sample i: for folders the file's bytes, for packs the stored bytes (their crc32 checked), for IDX a
 * view of the pixels. Fails (-1, message naming the file) when the file cannot be read; the loader
 * treats that like an undecodable image. */
int dataset_get(const Dataset *ds, int64_t i, Sample *s, GkErr *err);
/* A printable name for sample i, for messages: the full path of a folder image, "PACK/shard-00003.gkps
 * (name)" for a pack, "IMAGES[i]" for IDX. Returns buf. */
const char *dataset_describe(const Dataset *ds, int64_t i, char *buf, size_t len);
/* Images per class: counts[num_classes]. */
void dataset_class_counts(const Dataset *ds, int64_t *counts);
const char *dataset_kind_name(DatasetKind kind);

#ifdef __cplusplus
}
#endif
#endif
