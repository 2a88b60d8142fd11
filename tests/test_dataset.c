/* test_dataset: the Fashion-MNIST IDX reader (real files and malformed ones), ImageFolder scanning on a
 * generated tree, and packed shards: pack -> check -> read round trip, determinism across thread counts,
 * pre-resizing, and every kind of damage the reader must name. */
#define _GNU_SOURCE /* nftw's FTW_DEPTH and FTW_PHYS */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* PNG files for the tests; static, so it cannot clash with the library's stb, and its unused writers are
 * no concern of this program's warnings */
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#include <stb/stb_image_write.h>
#pragma GCC diagnostic pop

#include "core.h"
#include "dataset.h"
#include "image.h"
#include "pack.h"
#include "philox.h"

#include "expect.h"
/* An error value whose message contains every given piece (the file's name, what is wrong). */
#define EXPECT_ERR(rc, err, ...)                                                                             \
    do {                                                                                                     \
        const char *want_[] = {__VA_ARGS__};                                                                 \
        int ok_ = (rc) == -1;                                                                                \
        for (size_t k_ = 0; k_ < sizeof want_ / sizeof want_[0]; k_++)                                       \
            ok_ = ok_ && strstr((err).msg, want_[k_]);                                                       \
        if (!ok_) {                                                                                          \
            printf("FAIL %s:%d: expected an error naming", __FILE__, __LINE__);                              \
            for (size_t k_ = 0; k_ < sizeof want_ / sizeof want_[0]; k_++)                                   \
                printf(" '%s'", want_[k_]);                                                                  \
            printf(", got rc %d: %s\n", (int)(rc), (rc) == -1 ? (err).msg : "(success)");                    \
            failures++;                                                                                      \
        }                                                                                                    \
    } while (0)

static char tmp_root[256];
/* snprintf into a path buffer; the paths here are short, so running out of room is a broken test */
#define PATHF(buf, ...) GK_CHECK(snprintf(buf, sizeof buf, __VA_ARGS__) < (int)sizeof buf, "path too long")

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}
static void rm_tree(const char *path) {
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static const char *tpath(char *buf, const char *rel) {
    GK_CHECK(snprintf(buf, 1024, "%s/%s", tmp_root, rel) < 1024, "path too long");
    return buf;
}

static void write_bytes(const char *path, const void *data, size_t len) {
    /* make the parent folders */
    char dir[1024];
    PATHF(dir, "%s", path);
    for (char *p = dir + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(dir, 0755);
            *p = '/';
        }
    FILE *f = fopenCheck(path, "wb");
    if (len) fwriteCheck(data, 1, len, f);
    fcloseCheck(f);
}

static uint8_t *read_bytes(const char *path, size_t *len) {
    FILE *f = fopenCheck(path, "rb");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = mallocCheck((size_t)n);
    if (n) freadCheck(b, 1, (size_t)n, f);
    fclose(f);
    *len = (size_t)n;
    return b;
}

/* A w x h image with smooth gradients and Philox noise (so JPEG sizes are realistic), keyed by `key`. */
static uint8_t *make_pixels(int w, int h, int c, uint64_t key) {
    uint8_t *p = mallocCheck((size_t)w * h * c);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int k = 0; k < c; k++) {
                uint32_t r = philox_draw(key, RNG_TEST, (uint64_t)(y * w + x), (uint32_t)k).v[0];
                int v =
                    (int)((x * 255) / w + (y * 97) / h + (int)(key * 37) + k * 60) % 256 + (int)(r % 24) - 12;
                p[((size_t)y * w + x) * c + k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
    return p;
}

static void write_jpeg(const char *path, int w, int h, int c, uint64_t key) {
    uint8_t *pix = make_pixels(w, h, c, key), *jpg;
    size_t len;
    GkErr err;
    GK_CHECK(jpeg_encode(&jpg, &len, pix, w, h, c, 90, &err) == 0, "%s", err.msg);
    write_bytes(path, jpg, len);
    free(jpg);
    free(pix);
}

static void write_png(const char *path, int w, int h, uint64_t key) {
    uint8_t *pix = make_pixels(w, h, 3, key);
    int len = 0;
    unsigned char *png = stbi_write_png_to_mem(pix, w * 3, w, h, 3, &len);
    GK_CHECK(png, "stbi_write_png_to_mem failed");
    write_bytes(path, png, (size_t)len);
    free(png);
    free(pix);
}

/* ---- IDX -------------------------------------------------------------------------------------------- */
static void test_idx_real(void) {
    if (access(FASHION_MNIST_DIR "/train-images-idx3-ubyte.gz", R_OK) != 0) {
        printf("  Fashion-MNIST not installed (%s): real-file checks skipped; `apt-get install "
               "dataset-fashion-mnist` runs them\n",
               FASHION_MNIST_DIR);
        return;
    }
    Dataset ds;
    GkErr err;
    int rc = dataset_open(&ds, "fashion-mnist:train", &err);
    EXPECT(rc == 0);
    if (rc != 0) {
        printf("  %s\n", err.msg);
        return;
    }
    EXPECT(ds.kind == DATASET_IDX && ds.count == 60000 && ds.w == 28 && ds.h == 28 && ds.c == 1);
    EXPECT(ds.num_classes == 10 && !strcmp(ds.class_names[0], "T-shirt/top") &&
           !strcmp(ds.class_names[9], "Ankle boot"));
    static const int32_t first_train[10] = {9, 0, 0, 3, 0, 2, 7, 2, 5, 5};
    for (int i = 0; i < 10; i++)
        EXPECT(ds.labels[i] == first_train[i]);
    /* crc32 of all 47,040,000 pixel bytes, computed once with Python's gzip + zlib.crc32 */
    EXPECT(crc32(crc32(0L, Z_NULL, 0), ds.pixels, (uInt)(60000 * 784)) == 0xae65dccdu);
    Sample s = SAMPLE_INIT;
    EXPECT(dataset_get(&ds, 59999, &s, &err) == 0 && !s.encoded && s.w == 28 && s.h == 28 && s.c == 1 &&
           s.len == 784 && s.data == ds.pixels + 59999 * 784 && s.label == ds.labels[59999]);
    int64_t counts[10];
    dataset_class_counts(&ds, counts);
    for (int c = 0; c < 10; c++)
        EXPECT(counts[c] == 6000);
    sample_free(&s);
    dataset_close(&ds);

    rc = dataset_open(&ds, "fashion-mnist:" FASHION_MNIST_DIR ":test", &err);
    EXPECT(rc == 0 && ds.count == 10000);
    if (rc == 0) {
        static const int32_t first_test[10] = {9, 2, 1, 1, 6, 1, 4, 6, 5, 7};
        for (int i = 0; i < 10; i++)
            EXPECT(ds.labels[i] == first_test[i]);
        EXPECT(crc32(crc32(0L, Z_NULL, 0), ds.pixels, (uInt)(10000 * 784)) == 0x12728439u);
        dataset_close(&ds);
    }
    EXPECT_ERR(dataset_open(&ds, "fashion-mnist:validation", &err), err, "validation", "train or test");
    printf("  Fashion-MNIST: 60000 + 10000 images, labels and pixel crc32 as expected\n");
}

static void be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* An IDX file: magic, dims, then `payload` bytes of data (0, 1, 2, ...), gzip'd. */
static void write_idx(const char *path, uint32_t magic, const uint32_t *dims, int ndims, size_t payload,
                      int label_mod) {
    size_t n = 4 + 4 * (size_t)ndims + payload;
    uint8_t *b = mallocCheck(n);
    be32(b, magic);
    for (int k = 0; k < ndims; k++)
        be32(b + 4 + 4 * k, dims[k]);
    for (size_t i = 0; i < payload; i++)
        b[4 + 4 * ndims + i] = (uint8_t)(i % (size_t)label_mod);
    gzFile gz = gzopen(path, "wb");
    GK_CHECK(gz, "cannot create %s", path);
    gzwrite(gz, b, (unsigned)n);
    gzclose(gz);
    free(b);
}

static void test_idx_malformed(void) {
    char img[1024], lab[1024], p2[1024];
    GkErr err;
    Dataset ds;
    static const char *names[10] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
    uint32_t idims[3] = {3, 4, 5}, ldims[1] = {3};
    tpath(img, "idx/good-images.gz");
    tpath(lab, "idx/good-labels.gz");
    mkdir(tpath(p2, "idx"), 0755);
    write_idx(img, 0x803, idims, 3, 60, 256);
    write_idx(lab, 0x801, ldims, 1, 3, 10);
    int rc = dataset_open_idx(&ds, img, lab, names, 10, &err);
    EXPECT(rc == 0 && ds.count == 3 && ds.h == 4 && ds.w == 5 && ds.labels[2] == 2 && ds.pixels[59] == 59);
    if (rc == 0) dataset_close(&ds);

    /* bad magic: a label file where images are expected, and a 0x0802 file */
    EXPECT_ERR(dataset_open_idx(&ds, lab, lab, names, 10, &err), err, "good-labels.gz", "magic");
    tpath(p2, "idx/magic.gz");
    write_idx(p2, 0x802, idims, 2, 12, 256);
    EXPECT_ERR(dataset_open_idx(&ds, p2, lab, names, 10, &err), err, "magic.gz", "0x00000802");
    /* wrong counts: 2 labels for 3 images */
    uint32_t two[1] = {2};
    tpath(p2, "idx/two-labels.gz");
    write_idx(p2, 0x801, two, 1, 2, 10);
    EXPECT_ERR(dataset_open_idx(&ds, img, p2, names, 10, &err), err, "two-labels.gz", "2 labels", "3 images");
    /* the header promises more images than the file holds, or fewer */
    uint32_t four[3] = {4, 4, 5};
    tpath(p2, "idx/short.gz");
    write_idx(p2, 0x803, four, 3, 60, 256);
    EXPECT_ERR(dataset_open_idx(&ds, p2, lab, names, 10, &err), err, "short.gz", "truncated");
    uint32_t fewer[3] = {2, 4, 5};
    tpath(p2, "idx/long.gz");
    write_idx(p2, 0x803, fewer, 3, 60, 256);
    EXPECT_ERR(dataset_open_idx(&ds, p2, lab, names, 10, &err), err, "long.gz", "trailing data");
    /* zero rows */
    uint32_t zero[3] = {3, 0, 5};
    tpath(p2, "idx/zero.gz");
    write_idx(p2, 0x803, zero, 3, 0, 256);
    EXPECT_ERR(dataset_open_idx(&ds, p2, lab, names, 10, &err), err, "zero.gz", "dimension 1");
    /* a label out of range */
    tpath(p2, "idx/label.gz");
    write_idx(p2, 0x801, ldims, 1, 3, 256);
    EXPECT_ERR(dataset_open_idx(&ds, img, p2, names, 2, &err), err, "label.gz", "out of range");
    /* a gzip stream cut in half */
    size_t len;
    uint8_t *gz = read_bytes(img, &len);
    tpath(p2, "idx/cut.gz");
    write_bytes(p2, gz, len / 2);
    free(gz);
    EXPECT_ERR(dataset_open_idx(&ds, p2, lab, names, 10, &err), err, "cut.gz");
    EXPECT(strstr(err.msg, "truncated") || strstr(err.msg, "corrupt"));
    /* a missing file */
    EXPECT_ERR(dataset_open_idx(&ds, tpath(p2, "idx/none.gz"), lab, names, 10, &err), err, "none.gz",
               "cannot open");
    EXPECT_ERR(dataset_open(&ds, "fashion-mnist:/nonexistent/dir:train", &err), err, "/nonexistent/dir");
}

/* ---- ImageFolder ------------------------------------------------------------------------------------- */
static void touch(const char *rel, const char *content) {
    char p[1024];
    write_bytes(tpath(p, rel), content, strlen(content));
}

static void test_folder(void) {
    GkErr err;
    Dataset ds;
    char p[1024], q[1024];
    /* two classes, every accepted extension in odd cases, nested folders, and files to ignore */
    const char *ant[] = {"t.Jpeg", "u.psd", "v.tga", "w.pgm", "x.ppm", "y.GIF", "z.bmp"};
    for (int i = 0; i < 7; i++) {
        PATHF(q, "tree/ant/%s", ant[i]);
        touch(q, ant[i]);
    }
    touch("tree/cat/b.JPEG", "b");
    touch("tree/cat/a.jpg", "a");
    touch("tree/cat/sub/c.PNG", "c");
    touch("tree/cat/readme.txt", "not an image");
    touch("tree/cat/.hidden.jpg", "hidden");
    touch("tree/cat/noext", "no extension");
    touch("tree/.git/x.jpg", "hidden folder");
    touch("tree/loose.jpg", "a file beside the class folders");
    int rc = dataset_open(&ds, tpath(p, "tree"), &err);
    EXPECT(rc == 0);
    if (rc == 0) {
        EXPECT(ds.kind == DATASET_FOLDER && ds.num_classes == 2 && ds.count == 10);
        EXPECT(!strcmp(ds.class_names[0], "ant") && !strcmp(ds.class_names[1], "cat"));
        for (int i = 0; i < 7; i++) {
            PATHF(q, "ant/%s", ant[i]);
            EXPECT(!strcmp(ds.names + ds.name_off[i], q) && ds.labels[i] == 0);
        }
        EXPECT(!strcmp(ds.names + ds.name_off[7], "cat/a.jpg") && ds.labels[7] == 1);
        EXPECT(!strcmp(ds.names + ds.name_off[8], "cat/b.JPEG"));
        EXPECT(!strcmp(ds.names + ds.name_off[9], "cat/sub/c.PNG"));
        Sample s = SAMPLE_INIT;
        EXPECT(dataset_get(&ds, 9, &s, &err) == 0 && s.encoded && s.len == 1 && s.data[0] == 'c' &&
               s.label == 1);
        EXPECT(dataset_get(&ds, 0, &s, &err) == 0 && s.len == 6 && !memcmp(s.data, "t.Jpeg", 6));
        char d[2048];
        EXPECT(strstr(dataset_describe(&ds, 9, d, sizeof d), "tree/cat/sub/c.PNG") != NULL);
        sample_free(&s);
        dataset_close(&ds);
    }
    /* a class folder without images (only a text file) */
    touch("empty/a/x.jpg", "x");
    touch("empty/b/notes.txt", "no images here");
    EXPECT_ERR(dataset_open(&ds, tpath(p, "empty"), &err), err, "empty/b", "no image files");
    /* missing, empty, flat */
    EXPECT_ERR(dataset_open(&ds, tpath(p, "missing"), &err), err, "missing", "does not exist");
    mkdir(tpath(p, "bare"), 0755);
    EXPECT_ERR(dataset_open(&ds, p, &err), err, "bare", "empty");
    touch("flat/a.jpg", "a");
    EXPECT_ERR(dataset_open(&ds, tpath(p, "flat"), &err), err, "flat", "no class folders");
    touch("file.jpg", "x");
    EXPECT_ERR(dataset_open(&ds, tpath(p, "file.jpg"), &err), err, "file.jpg", "not a folder");
    /* the ILSVRC2012 layout: the root is refused, the split folders work */
    touch("ilsvrc/train/n01440764/n01440764_10026.JPEG", "x");
    touch("ilsvrc/train/n01443537/n01443537_1.JPEG", "y");
    touch("ilsvrc/val/n01440764/ILSVRC2012_val_00000293.JPEG", "z");
    EXPECT_ERR(dataset_open(&ds, tpath(p, "ilsvrc"), &err), err, "ilsvrc", "ILSVRC2012", "/train");
    rc = dataset_open(&ds, tpath(p, "ilsvrc/train"), &err);
    EXPECT(rc == 0 && ds.num_classes == 2 && ds.count == 2 && !strcmp(ds.class_names[1], "n01443537"));
    if (rc == 0) dataset_close(&ds);
    rc = dataset_open(&ds, tpath(p, "ilsvrc/val"), &err);
    EXPECT(rc == 0 && ds.num_classes == 1 && ds.count == 1);
    if (rc == 0) dataset_close(&ds);
}

/* ---- packed shards --------------------------------------------------------------------------------- */
static int files_equal(const char *a, const char *b) {
    size_t la, lb;
    uint8_t *x = read_bytes(a, &la), *y = read_bytes(b, &lb);
    int eq = la == lb && !memcmp(x, y, la);
    free(x), free(y);
    return eq;
}

static void copy_file(const char *from, const char *to) {
    size_t n;
    uint8_t *b = read_bytes(from, &n);
    write_bytes(to, b, n);
    free(b);
}

/* A copy of the pack folder `src` at `dst` with its index replaced by `ix` (crc32 trailer recomputed when
 * fix_crc). */
static void pack_variant(const char *src, const char *dst, int shards, const uint8_t *ix, size_t ixlen,
                         int fix_crc) {
    char a[1024], b[1024];
    for (int k = 0; k < shards; k++) {
        PATHF(a, "%s/shard-%05d.gkps", src, k);
        PATHF(b, "%s/shard-%05d.gkps", dst, k);
        copy_file(a, b);
    }
    uint8_t *copy = mallocCheck(ixlen);
    memcpy(copy, ix, ixlen);
    if (fix_crc && ixlen >= 4) {
        uint32_t c = (uint32_t)crc32(crc32(0L, Z_NULL, 0), copy, (uInt)(ixlen - 4));
        for (int k = 0; k < 4; k++)
            copy[ixlen - 4 + k] = (uint8_t)(c >> (8 * k));
    }
    PATHF(b, "%s/%s", dst, PACK_INDEX_NAME);
    write_bytes(b, copy, ixlen);
    free(copy);
}

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static void test_pack(void) {
    GkErr err;
    char p[1024], q[1024], r[1024];
    /* 3 classes x 5 images: JPEGs of several sizes, one grayscale, one PNG; and one text file named .JPEG */
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 5; i++) {
            PATHF(q, "src/class%d/img%d.%s", c, i, i == 4 ? "png" : "JPEG");
            uint64_t key = (uint64_t)(c * 5 + i);
            if (i == 4)
                write_png(tpath(p, q), 40 + 3 * c, 30, key);
            else
                write_jpeg(tpath(p, q), 60 + 20 * i, 45 + 10 * c, i == 3 ? 1 : 3, key);
        }
    touch("src/class1/zz_text.JPEG", "this is not an image\n");
    Dataset src;
    int rc = dataset_open(&src, tpath(p, "src"), &err);
    EXPECT(rc == 0 && src.count == 16);
    if (rc != 0) return;

    PackOptions opt;
    pack_options_defaults(&opt);
    opt.shard_bytes = 12000; /* several shards */
    opt.workers = 3;
    PackReport rep;
    char pk[1024];
    tpath(pk, "packed");
    rc = pack_write(pk, &src, &opt, &rep, &err);
    EXPECT(rc == 0);
    if (rc != 0) printf("  %s\n", err.msg);
    EXPECT(rep.written == 15 && rep.left_out == 1 && rep.resized == 0 && rep.shards >= 3);
    EXPECT(rep.left_out == 1 && strstr(rep.left_out_msgs[0], "zz_text.JPEG"));
    int shards = (int)rep.shards;
    printf("  packed 15 images into %d shards (%lld bytes); left out: %s\n", shards, (long long)rep.bytes,
           rep.left_out ? rep.left_out_msgs[0] : "-");
    pack_report_free(&rep);
    EXPECT_ERR(pack_write(pk, &src, &opt, &rep, &err), err, "packed", "already exists");

    /* the same pack from one thread: byte-identical files */
    opt.workers = 1;
    tpath(q, "packed1");
    EXPECT(pack_write(q, &src, &opt, &rep, &err) == 0 && rep.shards == shards);
    pack_report_free(&rep);
    PATHF(p, "%s/%s", pk, PACK_INDEX_NAME);
    PATHF(r, "%s/%s", q, PACK_INDEX_NAME);
    EXPECT(files_equal(p, r));
    for (int k = 0; k < shards; k++) {
        PATHF(p, "%s/shard-%05d.gkps", pk, k);
        PATHF(r, "%s/shard-%05d.gkps", q, k);
        EXPECT(files_equal(p, r));
    }

    /* read back: bytes, labels, names, classes */
    Dataset pd;
    rc = dataset_open(&pd, pk, &err);
    EXPECT(rc == 0);
    if (rc != 0) {
        printf("  %s\n", err.msg);
        dataset_close(&src);
        return;
    }
    EXPECT(pd.kind == DATASET_PACKED && pd.count == 15 && pd.num_classes == 3 &&
           pack_num_shards(pd.pack) == shards);
    for (int c = 0; c < 3; c++)
        EXPECT(!strcmp(pd.class_names[c], src.class_names[c]));
    Sample a = SAMPLE_INIT, b = SAMPLE_INIT;
    int64_t j = 0;
    for (int64_t i = 0; i < src.count; i++) {
        if (strstr(src.names + src.name_off[i], "zz_text")) continue;
        EXPECT(!strcmp(pd.names + pd.name_off[j], src.names + src.name_off[i]) &&
               pd.labels[j] == src.labels[i]);
        EXPECT(dataset_get(&src, i, &a, &err) == 0 && dataset_get(&pd, j, &b, &err) == 0);
        EXPECT(a.len == b.len && !memcmp(a.data, b.data, a.len) && a.label == b.label);
        j++;
    }
    CheckReport cr;
    dataset_check(&pd, 2, IMAGE_MAX_PIXELS_DEFAULT, &cr);
    EXPECT(cr.good_all == 15 && cr.bad_all == 0 && cr.bad_shards == 0 && cr.good[0] == 5 && cr.total[2] == 5);
    check_report_free(&cr);
    dataset_check(&src, 2, IMAGE_MAX_PIXELS_DEFAULT, &cr);
    EXPECT(cr.good_all == 15 && cr.bad_all == 1 && cr.good[1] == 5 && cr.total[1] == 6 && cr.n_msgs == 1 &&
           strstr(cr.msgs[0], "src/class1/zz_text.JPEG"));
    check_report_free(&cr);

    /* pre-resized: shorter side at most 32, larger ones re-encoded, small ones kept as they are */
    Dataset rd;
    opt.max_side = 32;
    opt.workers = 2;
    tpath(q, "resized");
    EXPECT(pack_write(q, &src, &opt, &rep, &err) == 0 && rep.written == 15 && rep.resized == 15 - 3);
    pack_report_free(&rep);
    rc = dataset_open(&rd, q, &err);
    EXPECT(rc == 0);
    int side = 0;
    EXPECT(rc == 0 && pack_resized(rd.pack, &side) && side == 32);
    for (int64_t i = 0; rc == 0 && i < rd.count; i++) {
        int w = 0, h = 0;
        EXPECT(dataset_get(&rd, i, &b, &err) == 0 && image_probe(b.data, b.len, &w, &h, &err) == 0);
        int shorter = w < h ? w : h;
        EXPECT(shorter <= 32 && (shorter == 32 || shorter == 30)); /* the PNGs are 30 high: kept */
        Image im;
        EXPECT(image_decode(&im, NULL, NULL, b.data, b.len, NULL, 0, 0, 0, &err) == 0);
        image_free(&im);
    }
    if (rc == 0) dataset_close(&rd);

    /* damage, each on its own copy: the reader names the file and what is wrong */
    size_t ixlen;
    PATHF(p, "%s/%s", pk, PACK_INDEX_NAME);
    uint8_t *ix = read_bytes(p, &ixlen);
    Dataset bad;
    mkdir(tpath(q, "v_magic"), 0755);
    ix[0] ^= 0xff;
    pack_variant(pk, q, shards, ix, ixlen, 1);
    ix[0] ^= 0xff;
    EXPECT_ERR(dataset_open(&bad, q, &err), err, "v_magic/index.gkpi", "bad magic");
    mkdir(tpath(q, "v_version"), 0755);
    ix[8] = 2;
    pack_variant(pk, q, shards, ix, ixlen, 1);
    ix[8] = 1;
    EXPECT_ERR(dataset_open(&bad, q, &err), err, "v_version/index.gkpi", "version 2");
    mkdir(tpath(q, "v_trunc"), 0755);
    pack_variant(pk, q, shards, ix, ixlen - 40, 0);
    EXPECT_ERR(dataset_open(&bad, q, &err), err, "v_trunc/index.gkpi", "checksum mismatch");
    mkdir(tpath(q, "v_trunc2"), 0755);
    pack_variant(pk, q, shards, ix, ixlen - 40, 1); /* a consistent crc cannot hide the missing bytes */
    EXPECT_ERR(dataset_open(&bad, q, &err), err, "v_trunc2/index.gkpi", "truncated");
    mkdir(tpath(q, "v_flip"), 0755);
    ix[ixlen / 2] ^= 0x10;
    pack_variant(pk, q, shards, ix, ixlen, 0);
    ix[ixlen / 2] ^= 0x10;
    EXPECT_ERR(dataset_open(&bad, q, &err), err, "v_flip/index.gkpi", "checksum mismatch");
    /* a record whose offset lies past the end of its shard: find record 0 (after header, class names and
     * shard table) and move it */
    size_t pos = 48;
    for (int c = 0; c < 3; c++)
        pos += 4 + le32(ix + pos);
    size_t rec0 = pos + (size_t)shards * 24;
    mkdir(tpath(q, "v_offset"), 0755);
    uint8_t save[8];
    memcpy(save, ix + rec0, 8);
    ix[rec0 + 5] = 0x01; /* offset += 2^40 */
    pack_variant(pk, q, shards, ix, ixlen, 1);
    memcpy(ix + rec0, save, 8);
    EXPECT_ERR(dataset_open(&bad, q, &err), err, "v_offset/index.gkpi", "record 0", "lies outside",
               "shard-00000.gkps");
    mkdir(tpath(q, "v_label"), 0755);
    ix[rec0 + 20] = 7; /* label 7 of 3 classes */
    pack_variant(pk, q, shards, ix, ixlen, 1);
    memcpy(ix + rec0, save, 8);
    ix[rec0 + 20] = (uint8_t)pd.labels[0];
    EXPECT_ERR(dataset_open(&bad, q, &err), err, "v_label/index.gkpi", "label 7");
    /* a missing shard, a truncated shard */
    mkdir(tpath(q, "v_missing"), 0755);
    pack_variant(pk, q, shards, ix, ixlen, 0);
    PATHF(r, "%s/shard-%05d.gkps", q, shards - 1);
    remove(r);
    PATHF(r, "shard-%05d.gkps", shards - 1);
    EXPECT_ERR(dataset_open(&bad, q, &err), err, "v_missing/", r, "cannot open");
    mkdir(tpath(q, "v_short"), 0755);
    pack_variant(pk, q, shards, ix, ixlen, 0);
    PATHF(r, "%s/shard-00000.gkps", q);
    EXPECT(truncate(r, 100) == 0);
    EXPECT_ERR(dataset_open(&bad, q, &err), err, "v_short/shard-00000.gkps", "truncated");
    free(ix);

    /* one flipped byte inside shard 1: opening succeeds (sizes agree), the shard check and the image's
     * own check name the shard, and `check` counts one bad image and one bad shard */
    Sample s = SAMPLE_INIT;
    int64_t victim = -1;
    for (int64_t i = 0; i < pd.count && victim < 0; i++) {
        char d[2048];
        if (strstr(dataset_describe(&pd, i, d, sizeof d), "shard-00001.gkps")) victim = i;
    }
    EXPECT(victim >= 0);
    dataset_close(&pd);
    if (victim >= 0) {
        PATHF(r, "%s/shard-00001.gkps", pk);
        size_t sl;
        uint8_t *sh = read_bytes(r, &sl);
        sh[sl - 3] ^= 0x01; /* inside the shard's last image */
        write_bytes(r, sh, sl);
        free(sh);
        rc = dataset_open(&pd, pk, &err);
        EXPECT(rc == 0);
        if (rc == 0) {
            EXPECT_ERR(pack_verify_shard(pd.pack, 1, &err), err, "packed/shard-00001.gkps",
                       "checksum mismatch");
            EXPECT(pack_verify_shard(pd.pack, 0, &err) == 0);
            int64_t last = -1;
            for (int64_t i = 0; i < pd.count; i++) {
                char d[2048];
                if (strstr(dataset_describe(&pd, i, d, sizeof d), "shard-00001.gkps")) last = i;
            }
            EXPECT_ERR(dataset_get(&pd, last, &s, &err), err, "packed/shard-00001.gkps", "checksum mismatch");
            EXPECT(dataset_get(&pd, victim == last ? 0 : victim, &s, &err) == 0);
            dataset_check(&pd, 2, IMAGE_MAX_PIXELS_DEFAULT, &cr);
            EXPECT(cr.bad_all == 1 && cr.good_all == 14 && cr.bad_shards == 1 && cr.n_msgs == 2 &&
                   strstr(cr.msgs[1], "shard-00001.gkps"));
            check_report_free(&cr);
            dataset_close(&pd);
        }
    }
    sample_free(&a);
    sample_free(&b);
    sample_free(&s);
    dataset_close(&src);
    /* an IDX source is refused (test_idx_malformed wrote these files) */
    static const char *names[10] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
    Dataset idx;
    rc = dataset_open_idx(&idx, tpath(p, "idx/good-images.gz"), tpath(q, "idx/good-labels.gz"), names, 10,
                          &err);
    EXPECT(rc == 0);
    if (rc == 0) {
        EXPECT(pack_write(tpath(r, "idx-pack"), &idx, &opt, &rep, &err) == -1 && strstr(err.msg, "IDX"));
        dataset_close(&idx);
    }
}

int main(void) {
    PATHF(tmp_root, "/tmp/gkav_test_dataset_XXXXXX");
    GK_CHECK(mkdtemp(tmp_root), "cannot create a temporary folder under /tmp");
    double t0 = gk_now();
    test_idx_real();
    test_idx_malformed();
    test_folder();
    test_pack();
    rm_tree(tmp_root);
    printf("dataset tests: %d failed (%.1f s)\n", failures, gk_now() - t0);
    return failures ? 1 : 0;
}
