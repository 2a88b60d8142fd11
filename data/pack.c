/* pack.c: writing and reading packed shards (the format is documented in pack.h), and JPEG encoding.
 *
 * The writer keeps the source's sample order whatever the number of threads: workers fill a window of
 * numbered slots, and the one writing thread appends slot after slot, so shard boundaries and offsets
 * depend only on the images and the options. */
#include "pack.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include <jpeglib.h>

#include "image.h"
#include "resample.h"

static const char INDEX_MAGIC[8] = {'G', 'K', 'A', 'V', 'P', 'I', 'D', 'X'};
static const char SHARD_MAGIC[8] = {'G', 'K', 'A', 'V', 'P', 'S', 'H', 'D'};
#define INDEX_HEAD_BYTES 48
#define SHARD_ENTRY_BYTES 24
#define RECORD_BYTES 32
#define MAX_CLASSES 1000000
#define MAX_SHARDS 1000000
#define MAX_CLASS_NAME 4096

/* ---- little-endian fields ------------------------------------------------------------------------- */
static void put32(uint8_t *p, uint32_t v) {
    for (int k = 0; k < 4; k++)
        p[k] = (uint8_t)(v >> (8 * k));
}
static void put64(uint8_t *p, uint64_t v) {
    for (int k = 0; k < 8; k++)
        p[k] = (uint8_t)(v >> (8 * k));
}
static uint32_t get32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t get64(const uint8_t *p) {
    return (uint64_t)get32(p) | ((uint64_t)get32(p + 4) << 32);
}

/* zlib's crc32 takes a 32-bit length: feed large buffers in pieces. */
static uint32_t crc_update(uint32_t crc, const uint8_t *p, size_t n) {
    while (n > 0) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = (uint32_t)crc32(crc, p, k);
        p += k, n -= k;
    }
    return crc;
}
static uint32_t crc_of(const uint8_t *p, size_t n) {
    return crc_update((uint32_t)crc32(0L, Z_NULL, 0), p, n);
}

/* DIR/NAME into buf. Folder names longer than MAX_DIR_CHARS are refused where a pack is opened or
 * created, so the buffers below always suffice. */
#define MAX_DIR_CHARS 4000
#define PATH_BUF 4200
static void join_path(char *buf, const char *dir, const char *name) {
    if (snprintf(buf, PATH_BUF, "%s/%s", dir, name) >= PATH_BUF) gk_die("path too long: %s/%s", dir, name);
}
static void shard_file(char *buf, const char *dir, int k) {
    char name[32];
    snprintf(name, sizeof name, "shard-%05d.gkps", k);
    join_path(buf, dir, name);
}

/* ---- JPEG encoding -------------------------------------------------------------------------------- */
typedef struct {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
} JpegErr;

static void jpeg_error_exit(j_common_ptr cinfo) {
    JpegErr *e = (JpegErr *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->msg);
    longjmp(e->jump, 1);
}

int jpeg_encode(uint8_t **out, size_t *len, const uint8_t *pix, int w, int h, int c, int quality,
                GkErr *err) {
    *out = NULL, *len = 0;
    if (c != 1 && c != 3) return gk_fail(err, "jpeg_encode: %d channels, expected 1 or 3", c);
    if (w <= 0 || h <= 0 || w > 65535 || h > 65535)
        return gk_fail(err, "jpeg_encode: size %dx%d is outside JPEG's 1..65535", w, h);
    struct jpeg_compress_struct cinfo;
    JpegErr je;
    /* volatile: these change between setjmp and a possible longjmp */
    unsigned char *volatile buf = NULL;
    unsigned long volatile size = 0;
    cinfo.err = jpeg_std_error(&je.mgr);
    je.mgr.error_exit = jpeg_error_exit;
    if (setjmp(je.jump)) {
        jpeg_destroy_compress(&cinfo);
        free(buf);
        return gk_fail(err, "jpeg_encode: libjpeg: %s", je.msg);
    }
    jpeg_create_compress(&cinfo);
    unsigned char *mem = NULL;
    unsigned long mem_size = 0;
    jpeg_mem_dest(&cinfo, &mem, &mem_size);
    cinfo.image_width = (JDIMENSION)w;
    cinfo.image_height = (JDIMENSION)h;
    cinfo.input_components = c;
    cinfo.in_color_space = c == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = (JSAMPROW)(pix + (size_t)cinfo.next_scanline * w * c);
        jpeg_write_scanlines(&cinfo, &row, 1);
        buf = mem, size = mem_size;
    }
    jpeg_finish_compress(&cinfo);
    buf = mem, size = mem_size;
    jpeg_destroy_compress(&cinfo);
    *out = (uint8_t *)buf;
    *len = (size_t)size;
    return 0;
}

/* ---- writing -------------------------------------------------------------------------------------- */
void pack_options_defaults(PackOptions *opt) {
    memset(opt, 0, sizeof *opt);
    opt->shard_bytes = (int64_t)1 << 30;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    opt->workers = n > 0 ? (int)n : 1;
    opt->max_pixels = IMAGE_MAX_PIXELS_DEFAULT;
}

void pack_report_free(PackReport *rep) {
    for (int64_t i = 0; i < rep->left_out; i++)
        free(rep->left_out_msgs[i]);
    free(rep->left_out_msgs);
    memset(rep, 0, sizeof *rep);
}

/* One source image on its way into a shard. */
typedef struct {
    int ready;
    int ok, resized;
    uint8_t *bytes; /* malloc'd: the file's bytes or the re-encoded JPEG */
    size_t len;
    char msg[1600];
} PackSlot;

typedef struct {
    const Dataset *src;
    const PackOptions *opt;
    pthread_mutex_t mu;
    pthread_cond_t cv_slot, cv_ready;
    PackSlot *slots;
    int64_t window;
    int64_t next_claim, next_write;
    int stop;
} PackJob;

/* Reads image i and makes the bytes that go into the shard. */
static void pack_one(const PackJob *job, int64_t i, Sample *s, PackSlot *slot) {
    GkErr err;
    char where[4200];
    dataset_describe(job->src, i, where, sizeof where);
    slot->ok = 0, slot->resized = 0, slot->bytes = NULL, slot->len = 0;
    if (dataset_get(job->src, i, s, &err) != 0) {
        snprintf(slot->msg, sizeof slot->msg, "%s", err.msg);
        return;
    }
    int w = 0, h = 0;
    if (image_probe(s->data, s->len, &w, &h, &err) != 0) {
        snprintf(slot->msg, sizeof slot->msg, "%.*s: %s", 500, where, err.msg);
        return;
    }
    if ((int64_t)w * h > job->opt->max_pixels) {
        snprintf(slot->msg, sizeof slot->msg, "%.*s: %dx%d pixels, more than the limit of %lld", 500, where,
                 w, h, (long long)job->opt->max_pixels);
        return;
    }
    int side = job->opt->max_side, shorter = w < h ? w : h;
    if (side <= 0 || shorter <= side) { /* already small enough: keep the original bytes, no second loss */
        slot->bytes = mallocCheck(s->len);
        memcpy(slot->bytes, s->data, s->len);
        slot->len = s->len;
        slot->ok = 1;
        return;
    }
    /* Target size: the shorter side becomes `side`, the longer keeps the aspect ratio (rounded). */
    int tw = w < h ? side : (int)((double)w * side / h + 0.5);
    int th = w < h ? (int)((double)h * side / w + 0.5) : side;
    /* A reduced-size DCT decode does most of the shrinking; the antialiased resample does the rest. */
    Image im = {0};
    ImageRegion whole = {0, 0, w, h}, reg;
    if (image_decode(&im, &reg, NULL, s->data, s->len, &whole, tw, th, job->opt->max_pixels, &err) != 0) {
        snprintf(slot->msg, sizeof slot->msg, "%.*s: %s", 500, where, err.msg);
        return;
    }
    uint8_t *small = mallocCheck((size_t)tw * th * im.c);
    double box[4] = {reg.x, reg.y, reg.x + reg.w, reg.y + reg.h};
    resample_u8(small, tw, th, im.pix, im.w, im.h, (ptrdiff_t)im.w * im.c, im.c, box, RESAMPLE_BICUBIC);
    int rc = jpeg_encode(&slot->bytes, &slot->len, small, tw, th, im.c, PACK_JPEG_QUALITY, &err);
    free(small);
    image_free(&im);
    if (rc != 0) {
        snprintf(slot->msg, sizeof slot->msg, "%.*s: %s", 500, where, err.msg);
        return;
    }
    slot->ok = 1, slot->resized = 1;
}

static void *pack_worker(void *arg) {
    PackJob *job = arg;
    Sample s = SAMPLE_INIT;
    pthread_mutex_lock(&job->mu);
    for (;;) {
        while (!job->stop && job->next_claim < job->src->count &&
               job->next_claim >= job->next_write + job->window)
            pthread_cond_wait(&job->cv_slot, &job->mu);
        if (job->stop || job->next_claim >= job->src->count) break;
        int64_t i = job->next_claim++;
        PackSlot *slot = &job->slots[i % job->window];
        pthread_mutex_unlock(&job->mu);
        pack_one(job, i, &s, slot);
        pthread_mutex_lock(&job->mu);
        slot->ready = 1;
        pthread_cond_broadcast(&job->cv_ready);
    }
    pthread_mutex_unlock(&job->mu);
    sample_free(&s);
    return NULL;
}

/* The shard being written. */
typedef struct {
    FILE *fp;
    int index;
    uint64_t size, count;
    uint32_t crc;
} ShardOut;

typedef struct {
    uint64_t size, count;
    uint32_t crc;
} ShardInfo;

static int shard_open(ShardOut *sh, const char *dir, int index, GkErr *err) {
    char path[PATH_BUF];
    shard_file(path, dir, index);
    sh->fp = fopen(path, "wb");
    if (!sh->fp) return gk_fail(err, "%s: cannot create: %s", path, strerror(errno));
    uint8_t head[PACK_SHARD_HEADER_BYTES];
    memcpy(head, SHARD_MAGIC, 8);
    put32(head + 8, PACK_VERSION);
    put32(head + 12, (uint32_t)index);
    if (fwrite(head, 1, sizeof head, sh->fp) != sizeof head) {
        fclose(sh->fp);
        sh->fp = NULL;
        return gk_fail(err, "%s: write failed: %s (disk full?)", path, strerror(errno));
    }
    sh->index = index;
    sh->size = PACK_SHARD_HEADER_BYTES;
    sh->count = 0;
    sh->crc = (uint32_t)crc32(0L, Z_NULL, 0);
    return 0;
}

/* Flushes the file to disk before the folder is renamed into place, so a crash never leaves a complete-
 * looking pack with missing data. */
static int file_sync_close(FILE *fp, const char *what, GkErr *err) {
    int bad = fflush(fp) != 0 || fsync(fileno(fp)) != 0;
    int e = errno;
    bad |= fclose(fp) != 0;
    if (bad) return gk_fail(err, "%s: write failed: %s (disk full?)", what, strerror(e ? e : errno));
    return 0;
}

static int shard_close(ShardOut *sh, const char *dir, ShardInfo *info, GkErr *err) {
    char path[PATH_BUF];
    shard_file(path, dir, sh->index);
    info->size = sh->size, info->count = sh->count, info->crc = sh->crc;
    int rc = file_sync_close(sh->fp, path, err);
    sh->fp = NULL;
    return rc;
}

static void remove_tree(const char *dir, int num_shards) {
    char path[PATH_BUF];
    for (int k = 0; k < num_shards; k++) {
        shard_file(path, dir, k);
        unlink(path);
    }
    join_path(path, dir, PACK_INDEX_NAME);
    unlink(path);
    rmdir(dir);
}

static void fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

typedef struct {
    uint8_t *p;
    size_t len, cap;
} Bytes;

static void bytes_add(Bytes *b, const void *p, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 4096;
        b->p = realloc(b->p, b->cap);
        GK_CHECK(b->p, "out of host memory building a pack index");
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static int write_index(const char *dir, const Dataset *src, const PackOptions *opt, const ShardInfo *shards,
                       int num_shards, const Bytes *records, int64_t num_images, const Bytes *names,
                       GkErr *err) {
    Bytes ix = {0};
    uint8_t head[INDEX_HEAD_BYTES] = {0};
    memcpy(head, INDEX_MAGIC, 8);
    put32(head + 8, PACK_VERSION);
    put32(head + 12, opt->max_side > 0 ? 1u : 0u);
    put32(head + 16, opt->max_side > 0 ? (uint32_t)opt->max_side : 0u);
    put32(head + 20, (uint32_t)src->num_classes);
    put32(head + 24, (uint32_t)num_shards);
    put64(head + 32, (uint64_t)num_images);
    put64(head + 40, (uint64_t)names->len);
    bytes_add(&ix, head, sizeof head);
    for (int c = 0; c < src->num_classes; c++) {
        uint8_t l[4];
        put32(l, (uint32_t)strlen(src->class_names[c]));
        bytes_add(&ix, l, 4);
        bytes_add(&ix, src->class_names[c], strlen(src->class_names[c]));
    }
    for (int k = 0; k < num_shards; k++) {
        uint8_t e[SHARD_ENTRY_BYTES] = {0};
        put64(e, shards[k].size);
        put64(e + 8, shards[k].count);
        put32(e + 16, shards[k].crc);
        bytes_add(&ix, e, sizeof e);
    }
    bytes_add(&ix, records->p, records->len);
    bytes_add(&ix, names->p, names->len);
    uint8_t tail[4];
    put32(tail, crc_of(ix.p, ix.len));
    bytes_add(&ix, tail, 4);

    char path[PATH_BUF];
    join_path(path, dir, PACK_INDEX_NAME);
    FILE *fp = fopen(path, "wb");
    if (!fp) {
        free(ix.p);
        return gk_fail(err, "%s: cannot create: %s", path, strerror(errno));
    }
    int rc = 0;
    if (fwrite(ix.p, 1, ix.len, fp) != ix.len) {
        fclose(fp);
        rc = gk_fail(err, "%s: write failed: %s (disk full?)", path, strerror(errno));
    } else {
        rc = file_sync_close(fp, path, err);
    }
    free(ix.p);
    return rc;
}

int pack_write(const char *dst, const Dataset *src, const PackOptions *opt_in, PackReport *rep, GkErr *err) {
    memset(rep, 0, sizeof *rep);
    PackOptions opt = *opt_in;
    if (opt.workers < 1) opt.workers = 1;
    if (opt.shard_bytes < 1) return gk_fail(err, "pack: shard size must be positive");
    if (src->kind == DATASET_IDX)
        return gk_fail(err, "pack: %s is an IDX file, already one file per split; pack an image folder",
                       src->source);
    if (src->num_classes > MAX_CLASSES)
        return gk_fail(err, "pack: %d classes, at most %d", src->num_classes, MAX_CLASSES);
    for (int c = 0; c < src->num_classes; c++)
        if (strlen(src->class_names[c]) > MAX_CLASS_NAME)
            return gk_fail(err, "pack: class name '%.40s...' is longer than %d bytes", src->class_names[c],
                           MAX_CLASS_NAME);
    struct stat st;
    if (stat(dst, &st) == 0)
        return gk_fail(err, "pack: '%s' already exists; remove it or choose another name", dst);
    if (strlen(dst) > MAX_DIR_CHARS) return gk_fail(err, "pack: the path '%.60s...' is too long", dst);
    char tmp[PATH_BUF];
    snprintf(tmp, sizeof tmp, "%s.partial-%ld", dst, (long)getpid());
    if (mkdir(tmp, 0755) != 0) return gk_fail(err, "pack: cannot create '%s': %s", tmp, strerror(errno));

    PackJob job = {0};
    job.src = src;
    job.opt = &opt;
    job.window = 8 * (int64_t)opt.workers + 16;
    job.slots = callocCheck((size_t)job.window, sizeof(PackSlot));
    pthread_mutex_init(&job.mu, NULL);
    pthread_cond_init(&job.cv_slot, NULL);
    pthread_cond_init(&job.cv_ready, NULL);
    pthread_t *threads = mallocCheck((size_t)opt.workers * sizeof(pthread_t));
    for (int t = 0; t < opt.workers; t++)
        GK_CHECK(pthread_create(&threads[t], NULL, pack_worker, &job) == 0,
                 "cannot start a pack worker thread");

    Bytes records = {0}, names = {0};
    ShardInfo *shards = NULL;
    int num_shards = 0, rc = 0;
    ShardOut sh = {0};
    int64_t left_cap = 0;
    for (int64_t i = 0; i < src->count && rc == 0; i++) {
        PackSlot *slot = &job.slots[i % job.window];
        pthread_mutex_lock(&job.mu);
        while (!slot->ready)
            pthread_cond_wait(&job.cv_ready, &job.mu);
        pthread_mutex_unlock(&job.mu);
        if (!slot->ok) {
            if (rep->left_out == left_cap) {
                left_cap = left_cap * 2 + 16;
                rep->left_out_msgs = realloc(rep->left_out_msgs, (size_t)left_cap * sizeof(char *));
                GK_CHECK(rep->left_out_msgs, "out of host memory");
            }
            size_t n = strlen(slot->msg) + 1;
            rep->left_out_msgs[rep->left_out] = mallocCheck(n);
            memcpy(rep->left_out_msgs[rep->left_out++], slot->msg, n);
        } else {
            if (slot->len > UINT32_MAX) {
                rc = gk_fail(err, "pack: %s is larger than 4 GiB", src->names + src->name_off[i]);
            } else if (sh.fp && sh.count > 0 && sh.size + slot->len > (uint64_t)opt.shard_bytes) {
                shards = realloc(shards, (size_t)(num_shards + 1) * sizeof(ShardInfo));
                GK_CHECK(shards, "out of host memory");
                rc = shard_close(&sh, tmp, &shards[num_shards++], err);
            }
            if (rc == 0 && !sh.fp) {
                if (num_shards >= MAX_SHARDS)
                    rc = gk_fail(err, "pack: more than %d shards; raise --shard-size", MAX_SHARDS);
                else
                    rc = shard_open(&sh, tmp, num_shards, err);
            }
            if (rc == 0) {
                const char *name = src->names + src->name_off[i];
                size_t name_len = strlen(name);
                if (names.len + name_len > UINT32_MAX) rc = gk_fail(err, "pack: the file names exceed 4 GiB");
                uint8_t r[RECORD_BYTES];
                put64(r, sh.size);
                put32(r + 8, (uint32_t)slot->len);
                put32(r + 12, crc_of(slot->bytes, slot->len));
                put32(r + 16, (uint32_t)sh.index);
                put32(r + 20, (uint32_t)src->labels[i]);
                put32(r + 24, (uint32_t)names.len);
                put32(r + 28, (uint32_t)name_len);
                if (rc == 0 && fwrite(slot->bytes, 1, slot->len, sh.fp) != slot->len)
                    rc = gk_fail(err, "%s/shard-%05d.gkps: write failed: %s (disk full?)", tmp, sh.index,
                                 strerror(errno));
                if (rc == 0) {
                    sh.crc = crc_update(sh.crc, slot->bytes, slot->len);
                    sh.size += slot->len;
                    sh.count++;
                    bytes_add(&records, r, sizeof r);
                    bytes_add(&names, name, name_len);
                    rep->written++;
                    rep->resized += slot->resized;
                    rep->bytes += (int64_t)slot->len;
                }
            }
        }
        free(slot->bytes);
        slot->bytes = NULL;
        pthread_mutex_lock(&job.mu);
        slot->ready = 0;
        job.next_write = i + 1;
        pthread_cond_broadcast(&job.cv_slot);
        pthread_mutex_unlock(&job.mu);
        if (opt.progress && ((i + 1) % 256 == 0 || i + 1 == src->count))
            opt.progress(i + 1, src->count, opt.progress_user);
    }
    pthread_mutex_lock(&job.mu);
    job.stop = 1;
    pthread_cond_broadcast(&job.cv_slot);
    pthread_mutex_unlock(&job.mu);
    for (int t = 0; t < opt.workers; t++)
        pthread_join(threads[t], NULL);
    for (int64_t k = 0; k < job.window; k++)
        free(job.slots[k].bytes);
    free(job.slots);
    free(threads);
    pthread_mutex_destroy(&job.mu);
    pthread_cond_destroy(&job.cv_slot);
    pthread_cond_destroy(&job.cv_ready);

    if (rc == 0 && sh.fp) {
        shards = realloc(shards, (size_t)(num_shards + 1) * sizeof(ShardInfo));
        GK_CHECK(shards, "out of host memory");
        rc = shard_close(&sh, tmp, &shards[num_shards++], err);
    } else if (sh.fp) {
        fclose(sh.fp);
        num_shards++;
    }
    if (rc == 0 && rep->written == 0)
        rc = gk_fail(err, "pack: none of the %lld images of '%s' could be used (first: %s)",
                     (long long)src->count, src->source, rep->left_out ? rep->left_out_msgs[0] : "?");
    if (rc == 0) rc = write_index(tmp, src, &opt, shards, num_shards, &records, rep->written, &names, err);
    if (rc == 0) {
        fsync_dir(tmp);
        if (rename(tmp, dst) != 0)
            rc = gk_fail(err, "pack: cannot rename '%s' to '%s': %s", tmp, dst, strerror(errno));
    }
    if (rc == 0) {
        /* make the rename itself durable */
        char parent[PATH_BUF];
        snprintf(parent, sizeof parent, "%s", dst);
        char *slash = strrchr(parent, '/');
        if (slash && slash != parent)
            *slash = 0;
        else
            snprintf(parent, sizeof parent, "%s", slash ? "/" : ".");
        fsync_dir(parent);
    } else {
        remove_tree(tmp, num_shards);
    }
    rep->shards = num_shards;
    free(shards);
    free(records.p);
    free(names.p);
    return rc;
}

/* ---- reading -------------------------------------------------------------------------------------- */
struct PackReader {
    char *dir;
    int num_shards;
    int *fds;
    uint64_t *shard_size, *shard_count;
    uint32_t *shard_crc;
    int64_t count;
    uint64_t *off;
    uint32_t *len, *crc, *shard;
    int resized, max_side;
};

void pack_close(PackReader *p) {
    if (!p) return;
    for (int k = 0; k < p->num_shards; k++)
        if (p->fds[k] >= 0) close(p->fds[k]);
    free(p->fds);
    free(p->shard_size);
    free(p->shard_count);
    free(p->shard_crc);
    free(p->off);
    free(p->len);
    free(p->crc);
    free(p->shard);
    free(p->dir);
    free(p);
}

int pack_num_shards(const PackReader *p) {
    return p->num_shards;
}

int pack_resized(const PackReader *p, int *max_side) {
    if (max_side) *max_side = p->max_side;
    return p->resized;
}

static void shard_path(const PackReader *p, int k, char *buf) {
    shard_file(buf, p->dir, k);
}

const char *pack_describe(const PackReader *p, int64_t i, const char *name, char *buf, size_t len) {
    char sp[PATH_BUF];
    shard_path(p, (int)p->shard[i], sp);
    snprintf(buf, len, "%s (%s)", sp, name);
    return buf;
}

/* Bounds-checked reader over the index bytes. */
typedef struct {
    const uint8_t *p;
    size_t len, pos;
} Cursor;

static int take(Cursor *c, size_t n, const uint8_t **out) {
    if (c->len - c->pos < n) return -1;
    *out = c->p + c->pos;
    c->pos += n;
    return 0;
}

int dataset_open_packed(Dataset *ds, const char *dir, GkErr *err) {
    memset(ds, 0, sizeof *ds);
    if (strlen(dir) > MAX_DIR_CHARS) return gk_fail(err, "pack: the path '%.60s...' is too long", dir);
    char ipath[PATH_BUF];
    join_path(ipath, dir, PACK_INDEX_NAME);
    uint8_t *ix = NULL;
    size_t ixlen = 0, ixcap = 0;
    if (read_file(ipath, 0, &ix, &ixcap, &ixlen, err) != 0) return free(ix), -1;
    PackReader *p = callocCheck(1, sizeof(PackReader));
    p->dir = mallocCheck(strlen(dir) + 1);
    strcpy(p->dir, dir);
    int rc = 0;
#define BAD(...) (rc = gk_fail(err, __VA_ARGS__), failed = 1)
    int failed = 0;
    if (ixlen < 8 || memcmp(ix, INDEX_MAGIC, 8) != 0) {
        BAD("%s: bad magic: not a GKAVision pack index (expected \"GKAVPIDX\")", ipath);
    } else if (ixlen < INDEX_HEAD_BYTES + 4) {
        BAD("%s: truncated: %zu bytes, shorter than the %d-byte header", ipath, ixlen, INDEX_HEAD_BYTES + 4);
    } else if (get32(ix + 8) != PACK_VERSION) {
        BAD("%s: unsupported version %u (this build reads version %d)", ipath, get32(ix + 8), PACK_VERSION);
    } else if (crc_of(ix, ixlen - 4) != get32(ix + ixlen - 4)) {
        BAD("%s: checksum mismatch (stored crc32 0x%08x, computed 0x%08x): the index is truncated or corrupt",
            ipath, get32(ix + ixlen - 4), crc_of(ix, ixlen - 4));
    }
    uint32_t num_classes = 0, num_shards = 0;
    uint64_t num_images = 0, names_bytes = 0;
    if (!failed) {
        uint32_t flags = get32(ix + 12);
        p->resized = (int)(flags & 1u);
        p->max_side = (int)get32(ix + 16);
        num_classes = get32(ix + 20);
        num_shards = get32(ix + 24);
        num_images = get64(ix + 32);
        names_bytes = get64(ix + 40);
        /* checked against the file size before anything is allocated from them */
        uint64_t fixed = INDEX_HEAD_BYTES + 4 + (uint64_t)num_shards * SHARD_ENTRY_BYTES;
        if (flags & ~1u)
            BAD("%s: unknown flags 0x%x", ipath, flags);
        else if (num_classes < 1 || num_classes > MAX_CLASSES)
            BAD("%s: %u classes, expected 1 to %d", ipath, num_classes, MAX_CLASSES);
        else if (num_shards < 1 || num_shards > MAX_SHARDS)
            BAD("%s: %u shards, expected 1 to %d", ipath, num_shards, MAX_SHARDS);
        else if (num_images < 1 || num_images > (ixlen / RECORD_BYTES) ||
                 fixed + num_images * RECORD_BYTES + names_bytes > ixlen)
            BAD("%s: truncated index: the header promises %llu images and %llu name bytes, more than its %zu "
                "bytes "
                "hold",
                ipath, (unsigned long long)num_images, (unsigned long long)names_bytes, ixlen);
    }
    Cursor cur = {ix, ixlen - 4, INDEX_HEAD_BYTES};
    if (!failed) {
        ds->num_classes = (int)num_classes;
        ds->class_names = callocCheck(num_classes, sizeof(char *));
        for (uint32_t c = 0; c < num_classes && !failed; c++) {
            const uint8_t *q;
            if (take(&cur, 4, &q) != 0) {
                BAD("%s: truncated index in the class names (class %u)", ipath, c);
                break;
            }
            uint32_t n = get32(q);
            if (n < 1 || n > MAX_CLASS_NAME || take(&cur, n, &q) != 0) {
                BAD("%s: class name %u has a bad length %u", ipath, c, n);
                break;
            }
            ds->class_names[c] = mallocCheck(n + 1);
            memcpy(ds->class_names[c], q, n);
            ds->class_names[c][n] = 0;
        }
    }
    if (!failed) {
        p->num_shards = (int)num_shards;
        p->shard_size = mallocCheck(num_shards * sizeof(uint64_t));
        p->shard_count = mallocCheck(num_shards * sizeof(uint64_t));
        p->shard_crc = mallocCheck(num_shards * sizeof(uint32_t));
        p->fds = mallocCheck(num_shards * sizeof(int));
        for (uint32_t k = 0; k < num_shards; k++)
            p->fds[k] = -1;
        const uint8_t *q;
        if (take(&cur, (size_t)num_shards * SHARD_ENTRY_BYTES, &q) != 0) {
            BAD("%s: truncated index in the shard table", ipath);
        } else {
            for (uint32_t k = 0; k < num_shards; k++) {
                p->shard_size[k] = get64(q + k * SHARD_ENTRY_BYTES);
                p->shard_count[k] = get64(q + k * SHARD_ENTRY_BYTES + 8);
                p->shard_crc[k] = get32(q + k * SHARD_ENTRY_BYTES + 16);
            }
        }
    }
    const uint8_t *rec = NULL, *names = NULL;
    if (!failed && (take(&cur, num_images * RECORD_BYTES, &rec) != 0 || take(&cur, names_bytes, &names) != 0))
        BAD("%s: truncated index in the records", ipath);
    if (!failed && cur.pos != cur.len)
        BAD("%s: %zu unexpected bytes after the name table", ipath, cur.len - cur.pos);
    /* the shard files: present, the right header, the size the index recorded */
    for (uint32_t k = 0; k < num_shards && !failed; k++) {
        char sp[PATH_BUF];
        shard_path(p, (int)k, sp);
        int fd = open(sp, O_RDONLY);
        if (fd < 0) {
            BAD("%s: cannot open: %s%s", sp, strerror(errno),
                errno == EMFILE
                    ? " (too many shards open: raise `ulimit -n` or pack with a larger --shard-size)"
                    : "");
            break;
        }
        p->fds[k] = fd;
        struct stat st;
        uint8_t head[PACK_SHARD_HEADER_BYTES];
        if (fstat(fd, &st) != 0 || (uint64_t)st.st_size != p->shard_size[k])
            BAD("%s: %lld bytes, but the index says %llu: the shard is truncated or was replaced", sp,
                (long long)st.st_size, (unsigned long long)p->shard_size[k]);
        else if (pread(fd, head, sizeof head, 0) != (ssize_t)sizeof head || memcmp(head, SHARD_MAGIC, 8) != 0)
            BAD("%s: bad magic: not a GKAVision shard (expected \"GKAVPSHD\")", sp);
        else if (get32(head + 8) != PACK_VERSION)
            BAD("%s: unsupported version %u (this build reads version %d)", sp, get32(head + 8),
                PACK_VERSION);
        else if (get32(head + 12) != k)
            BAD("%s: the header says shard %u: files renamed or mixed between packs", sp, get32(head + 12));
    }
    if (!failed) {
        p->count = (int64_t)num_images;
        p->off = mallocCheck(num_images * sizeof(uint64_t));
        p->len = mallocCheck(num_images * sizeof(uint32_t));
        p->crc = mallocCheck(num_images * sizeof(uint32_t));
        p->shard = mallocCheck(num_images * sizeof(uint32_t));
        ds->labels = mallocCheck(num_images * sizeof(int32_t));
        ds->name_off = mallocCheck(num_images * sizeof(int64_t));
        ds->names = mallocCheck(names_bytes + num_images);
        uint64_t *seen = callocCheck(num_shards, sizeof(uint64_t));
        size_t npos = 0;
        for (uint64_t i = 0; i < num_images && !failed; i++) {
            const uint8_t *r = rec + i * RECORD_BYTES;
            uint64_t off = get64(r);
            uint32_t len = get32(r + 8), shard = get32(r + 16), label = get32(r + 20);
            uint32_t noff = get32(r + 24), nlen = get32(r + 28);
            if (shard >= num_shards) {
                BAD("%s: record %llu names shard %u of %u", ipath, (unsigned long long)i, shard, num_shards);
                break;
            }
            char sp[PATH_BUF];
            shard_path(p, (int)shard, sp);
            if (len < 1 || off < PACK_SHARD_HEADER_BYTES || off > p->shard_size[shard] ||
                len > p->shard_size[shard] - off)
                BAD("%s: record %llu (offset %llu, %u bytes) lies outside %s (%llu bytes)", ipath,
                    (unsigned long long)i, (unsigned long long)off, len, sp,
                    (unsigned long long)p->shard_size[shard]);
            else if (label >= num_classes)
                BAD("%s: record %llu has label %u, but there are %u classes", ipath, (unsigned long long)i,
                    label, num_classes);
            else if ((uint64_t)noff + nlen > names_bytes)
                BAD("%s: record %llu's name lies outside the name table", ipath, (unsigned long long)i);
            if (failed) break;
            p->off[i] = off, p->len[i] = len, p->crc[i] = get32(r + 12), p->shard[i] = shard;
            ds->labels[i] = (int32_t)label;
            ds->name_off[i] = (int64_t)npos;
            memcpy(ds->names + npos, names + noff, nlen);
            npos += nlen;
            ds->names[npos++] = 0;
            seen[shard]++;
        }
        for (uint32_t k = 0; k < num_shards && !failed; k++)
            if (seen[k] != p->shard_count[k]) {
                char sp[PATH_BUF];
                shard_path(p, (int)k, sp);
                BAD("%s: the index lists %llu images in %s but its shard table says %llu", ipath,
                    (unsigned long long)seen[k], sp, (unsigned long long)p->shard_count[k]);
            }
        free(seen);
    }
#undef BAD
    free(ix);
    if (failed) {
        pack_close(p);
        ds->pack = NULL;
        dataset_close(ds);
        return rc;
    }
    ds->kind = DATASET_PACKED;
    ds->source = mallocCheck(strlen(dir) + 1);
    strcpy(ds->source, dir);
    ds->count = p->count;
    ds->pack = p;
    return 0;
}

int pack_read(const PackReader *p, int64_t i, Sample *s, GkErr *err) {
    size_t want = p->len[i];
    if (want > s->cap) {
        free(s->buf);
        s->cap = want + want / 4;
        s->buf = mallocCheck(s->cap);
    }
    int fd = p->fds[p->shard[i]];
    size_t got = 0;
    while (got < want) {
        ssize_t r = pread(fd, s->buf + got, want - got, (off_t)(p->off[i] + got));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            char sp[PATH_BUF];
            shard_path(p, (int)p->shard[i], sp);
            return gk_fail(err, "%s: read of image %lld failed: %s", sp, (long long)i,
                           r < 0 ? strerror(errno) : "the shard shrank after it was opened");
        }
        got += (size_t)r;
    }
    uint32_t c = crc_of(s->buf, want);
    if (c != p->crc[i]) {
        char sp[PATH_BUF];
        shard_path(p, (int)p->shard[i], sp);
        return gk_fail(
            err,
            "%s: checksum mismatch in image %lld (crc32 0x%08x, the index says 0x%08x): the shard is "
            "corrupt; `gkav data check %s` checks every shard",
            sp, (long long)i, c, p->crc[i], p->dir);
    }
    s->encoded = 1;
    s->data = s->buf;
    s->len = want;
    s->w = s->h = s->c = 0;
    return 0;
}

int pack_verify_shard(const PackReader *p, int k, GkErr *err) {
    char sp[PATH_BUF];
    shard_path(p, k, sp);
    size_t chunk = (size_t)4 << 20;
    uint8_t *buf = mallocCheck(chunk);
    uint32_t crc = (uint32_t)crc32(0L, Z_NULL, 0);
    uint64_t pos = PACK_SHARD_HEADER_BYTES;
    int rc = 0;
    while (pos < p->shard_size[k]) {
        size_t n = p->shard_size[k] - pos < chunk ? (size_t)(p->shard_size[k] - pos) : chunk;
        ssize_t r = pread(p->fds[k], buf, n, (off_t)pos);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            rc = gk_fail(err, "%s: read failed at byte %llu: %s", sp, (unsigned long long)pos,
                         r < 0 ? strerror(errno) : "the shard shrank after it was opened");
            break;
        }
        crc = crc_update(crc, buf, (size_t)r);
        pos += (uint64_t)r;
    }
    free(buf);
    if (rc == 0 && crc != p->shard_crc[k])
        rc = gk_fail(err, "%s: checksum mismatch (crc32 0x%08x, the index says 0x%08x): the shard is corrupt",
                     sp, crc, p->shard_crc[k]);
    return rc;
}

/* ---- checking ------------------------------------------------------------------------------------- */
typedef struct {
    const Dataset *ds;
    int64_t max_pixels;
    pthread_mutex_t mu;
    int64_t next;
    uint8_t *ok; /* [count] */
    char **why;  /* [count], NULL when ok */
} CheckJob;

static void *check_worker(void *arg) {
    CheckJob *job = arg;
    Sample s = SAMPLE_INIT;
    GkErr err;
    for (;;) {
        pthread_mutex_lock(&job->mu);
        int64_t i = job->next++;
        pthread_mutex_unlock(&job->mu);
        if (i >= job->ds->count) break;
        int good = dataset_get(job->ds, i, &s, &err) == 0;
        if (good && s.encoded) {
            int w = 0, h = 0;
            good = image_probe(s.data, s.len, &w, &h, &err) == 0;
            if (good) {
                Image im;
                ImageRegion whole = {0, 0, w, h};
                good = image_decode(&im, NULL, NULL, s.data, s.len, &whole, 1, 1, job->max_pixels, &err) == 0;
                if (good) image_free(&im);
            }
        }
        job->ok[i] = (uint8_t)good;
        if (!good) {
            char where[4200], line[5400];
            dataset_describe(job->ds, i, where, sizeof where);
            if (!strncmp(err.msg, where, strlen(where)))
                snprintf(line, sizeof line, "%s", err.msg);
            else
                snprintf(line, sizeof line, "%s: %s", where, err.msg);
            job->why[i] = mallocCheck(strlen(line) + 1);
            strcpy(job->why[i], line);
        }
    }
    sample_free(&s);
    return NULL;
}

void check_report_free(CheckReport *rep) {
    free(rep->good);
    free(rep->total);
    for (int64_t i = 0; i < rep->n_msgs; i++)
        free(rep->msgs[i]);
    free(rep->msgs);
    memset(rep, 0, sizeof *rep);
}

void dataset_check(const Dataset *ds, int workers, int64_t max_pixels, CheckReport *rep) {
    memset(rep, 0, sizeof *rep);
    if (workers < 1) workers = 1;
    rep->good = callocCheck((size_t)ds->num_classes, sizeof(int64_t));
    rep->total = callocCheck((size_t)ds->num_classes, sizeof(int64_t));
    int64_t cap = 16;
    rep->msgs = mallocCheck((size_t)cap * sizeof(char *));
    CheckJob job = {0};
    job.ds = ds;
    job.max_pixels = max_pixels;
    job.ok = callocCheck((size_t)ds->count, 1);
    job.why = callocCheck((size_t)ds->count, sizeof(char *));
    pthread_mutex_init(&job.mu, NULL);
    pthread_t *threads = mallocCheck((size_t)workers * sizeof(pthread_t));
    int started = 0;
    for (; started < workers; started++)
        if (pthread_create(&threads[started], NULL, check_worker, &job) != 0) break;
    if (started == 0) check_worker(&job); /* no thread could start: do it here */
    for (int t = 0; t < started; t++)
        pthread_join(threads[t], NULL);
    free(threads);
    pthread_mutex_destroy(&job.mu);
    for (int64_t i = 0; i < ds->count; i++) {
        rep->total[ds->labels[i]]++;
        if (job.ok[i]) {
            rep->good[ds->labels[i]]++;
            rep->good_all++;
            continue;
        }
        rep->bad_all++;
        if (rep->n_msgs == cap) {
            cap *= 2;
            rep->msgs = realloc(rep->msgs, (size_t)cap * sizeof(char *));
            GK_CHECK(rep->msgs, "out of host memory");
        }
        rep->msgs[rep->n_msgs++] = job.why[i];
    }
    free(job.ok);
    free(job.why);
    if (ds->kind == DATASET_PACKED)
        for (int k = 0; k < ds->pack->num_shards; k++) {
            GkErr e;
            if (pack_verify_shard(ds->pack, k, &e) == 0) continue;
            rep->bad_shards++;
            if (rep->n_msgs == cap) {
                cap *= 2;
                rep->msgs = realloc(rep->msgs, (size_t)cap * sizeof(char *));
                GK_CHECK(rep->msgs, "out of host memory");
            }
            rep->msgs[rep->n_msgs] = mallocCheck(strlen(e.msg) + 1);
            strcpy(rep->msgs[rep->n_msgs++], e.msg);
        }
}
