/* pack.h: packed shards, GKAVision's own dataset format for large runs: many images per file, so a
 * worker reads one big file with pread instead of opening 1.28 million small ones.
 *
 * The one decision: the index is a separate small file, checked whole (crc32) when the dataset is
 * opened, and each image carries its own crc32, checked on every read; the crc32 of a whole shard is
 * checked by `gkav data check` (pack_verify_shard), because reading every shard at open time would cost
 * minutes on ImageNet.
 *
 * A packed dataset is a folder:
 *   DIR/index.gkpi            the index (below)
 *   DIR/shard-00000.gkps      the images of shard 0, back to back
 *   DIR/shard-00001.gkps      ...
 *
 * All integers are little-endian; there is no padding.
 *
 * index.gkpi
 *   offset  bytes  field
 *   0       8      magic "GKAVPIDX"
 *   8       4      version, 1
 *   12      4      flags: bit 0 set when the pack was made with a max_side: images whose shorter side
 *                  exceeded it were shrunk to it and re-encoded as JPEG quality 95, the others kept
 *                  as they were; other bits 0
 *   16      4      max_side (0 when not resized)
 *   20      4      num_classes (1 .. 1,000,000)
 *   24      4      num_shards (1 .. 1,000,000)
 *   28      4      reserved, 0
 *   32      8      num_images
 *   40      8      names_bytes: size of the name table
 *   48             class names: num_classes x { u32 length (1 .. 4096), the name's bytes (no NUL) },
 *                  in class-index order
 *   then           shard table: num_shards x 24 bytes
 *                    u64 file_size   the shard file's size in bytes, header included
 *                    u64 num_images  records in this shard
 *                    u32 crc32       zlib crc32 of the shard's bytes from offset 16 to its end
 *                    u32 reserved, 0
 *   then           records: num_images x 32 bytes, in sample order (sample i is record i)
 *                    u64 offset      where the image starts in its shard file (>= 16)
 *                    u32 length      bytes of the encoded image (>= 1)
 *                    u32 crc32       zlib crc32 of those bytes
 *                    u32 shard       which shard file
 *                    u32 label       class index (< num_classes)
 *                    u32 name_off    the original relative path in the name table
 *                    u32 name_len
 *   then           name table: names_bytes bytes (paths relative to the source folder, no NULs)
 *   end - 4  4     crc32 of every byte of the index before it
 *
 * shard-NNNNN.gkps
 *   0       8      magic "GKAVPSHD"
 *   8       4      version, 1
 *   12      4      the shard's index (must match its name and the table)
 *   16             the encoded images (JPEG, PNG, ... as found, or JPEG when resized)
 *
 * Sample order, labels and class names are those of the source ImageFolder; files that could not be
 * used (unreadable, not an image, or, when resizing, not decodable) are left out and named in the report.
 * A pack is written into DIR.partial-PID and renamed to DIR once complete, so DIR is never half-written. */
#ifndef GKA_PACK_H
#define GKA_PACK_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "dataset.h"

#ifdef __cplusplus
extern "C" {
#endif

#define PACK_INDEX_NAME "index.gkpi"
#define PACK_VERSION 1
#define PACK_SHARD_HEADER_BYTES 16
#define PACK_JPEG_QUALITY 95

typedef struct PackOptions {
    int max_side;        /* 0: keep the bytes as they are; else shorter side at most this, JPEG q95 */
    int64_t shard_bytes; /* an image that would take a shard past this starts the next (default 1 GiB) */
    int workers;         /* threads reading and re-encoding (default: all cores) */
    int64_t max_pixels;  /* larger images are left out (default IMAGE_MAX_PIXELS_DEFAULT, as the loader) */
    /* Called from the writing thread after each group of images; may be NULL. */
    void (*progress)(int64_t done, int64_t total, void *user);
    void *progress_user;
} PackOptions;
void pack_options_defaults(PackOptions *opt);

typedef struct PackReport {
    int64_t written, resized, left_out, shards, bytes;
    char **left_out_msgs; /* [left_out] "path: why" */
} PackReport;
void pack_report_free(PackReport *rep);

/* Writes src (an ImageFolder, or another pack) as a packed dataset in dst, which must not exist. */
int pack_write(const char *dst, const Dataset *src, const PackOptions *opt, PackReport *rep, GkErr *err);

/* ---- reading -------------------------------------------------------------------------------------- */
/* Opens dir as a Dataset (kind DATASET_PACKED): validates the index (magic, version, sizes, crc32) and
 * every record against its shard (shard present, header, size, offsets inside the file). */
int dataset_open_packed(Dataset *ds, const char *dir, GkErr *err);
void pack_close(PackReader *p);
/* Image i's stored bytes into s (its crc32 checked). Thread-safe (pread). */
int pack_read(const PackReader *p, int64_t i, Sample *s, GkErr *err);
/* "DIR/shard-00003.gkps (name)" into buf; returns buf. */
const char *pack_describe(const PackReader *p, int64_t i, const char *name, char *buf, size_t len);
int pack_num_shards(const PackReader *p);
/* Reads shard k whole and compares its crc32 with the index. */
int pack_verify_shard(const PackReader *p, int k, GkErr *err);
/* 1 when the images were pre-resized, with their max_side. */
int pack_resized(const PackReader *p, int *max_side);

/* ---- checking a dataset (`gkav data check`) -------------------------------------------------------- */
typedef struct CheckReport {
    int64_t *good, *total; /* per class */
    int64_t good_all, bad_all;
    int64_t n_msgs;
    char **msgs; /* "path: why" for every image that could not be used, in sample order, then bad shards */
    int bad_shards;
} CheckReport;
void check_report_free(CheckReport *rep);
/* Decodes every image of ds with `workers` threads and, for a pack, re-reads every shard against its
 * crc32. JPEGs are decoded at libjpeg's 1/8 DCT scale: every byte of the entropy-coded data is still read
 * and checked, at a fraction of the cost. The report says what failed. */
void dataset_check(const Dataset *ds, int workers, int64_t max_pixels, CheckReport *rep);

/* ---- JPEG encoding (libjpeg), shared with the tests and the benchmark ------------------------------ */
/* HWC uint8 pixels (c = 1 or 3) to a JPEG in a malloc'd buffer (*out, *len). */
int jpeg_encode(uint8_t **out, size_t *len, const uint8_t *pix, int w, int h, int c, int quality, GkErr *err);

#ifdef __cplusplus
}
#endif
#endif
