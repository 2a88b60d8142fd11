/* gkav data: look at a dataset (scan), pack an image folder into shards (pack), decode every image of a
 * folder or pack and name the ones that cannot be used (check). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "core.h"
#include "dataset.h"
#include "image.h"
#include "pack.h"
#include "synth.h"

static void data_usage(FILE *f) {
    fprintf(
        f,
        "usage: gkav data scan PATH\n"
        "       gkav data pack SRC DST [--max-side S] [--shard-size BYTES] [--workers N]\n"
        "       gkav data check PATH [--workers N]\n"
        "       gkav data synth ROOT [--classes N] [--train N] [--val N] [--workers N]\n"
        "PATH: an image folder (ROOT/<class>/<images>; for ILSVRC2012 pass ROOT/train or ROOT/val),\n"
        "      a packed dataset (a folder with " PACK_INDEX_NAME "), or fashion-mnist:train|test.\n"
        "pack: --max-side S  re-encode (JPEG q%d) images whose shorter side exceeds S, shrunk to S\n"
        "      --shard-size  bytes per shard file, with an optional K, M or G suffix (default 1G)\n"
        "      --workers N   threads (default: all cores)\n"
        "synth: ROOT/train and ROOT/val of synthetic ImageNet-like JPEGs (default 1000 classes, 12800 and\n"
        "      1000 images) whose classes say nothing about their content: for throughput runs, not "
        "learning\n",
        PACK_JPEG_QUALITY);
}

/* "512M" -> 536870912; -1 when malformed. */
static int64_t parse_bytes(const char *s) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || v <= 0) return -1;
    double mul = 1;
    if (*end == 'k' || *end == 'K')
        mul = 1024.0, end++;
    else if (*end == 'm' || *end == 'M')
        mul = 1048576.0, end++;
    else if (*end == 'g' || *end == 'G')
        mul = 1073741824.0, end++;
    if (*end == 'i' || *end == 'B') end++; /* KiB, MB, ... */
    if (*end == 'B') end++;
    if (*end) return -1;
    return (int64_t)(v * mul);
}

static int parse_int(const char *flag, const char *s, int lo, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > 1 << 30) {
        fprintf(stderr, "gkav data: %s expects an integer >= %d, got '%s'\n", flag, lo, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int default_workers(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static int data_scan(const char *path) {
    Dataset ds;
    GkErr err;
    if (dataset_open(&ds, path, &err) != 0) {
        fprintf(stderr, "gkav data scan: %s\n", err.msg);
        return 1;
    }
    int64_t *counts = mallocCheck((size_t)ds.num_classes * sizeof(int64_t));
    dataset_class_counts(&ds, counts);
    int64_t lo = counts[0], hi = counts[0];
    for (int c = 0; c < ds.num_classes; c++) {
        if (counts[c] < lo) lo = counts[c];
        if (counts[c] > hi) hi = counts[c];
    }
    printf("%s: %s, %lld images, %d classes (%lld to %lld images per class)\n", ds.source,
           dataset_kind_name(ds.kind), (long long)ds.count, ds.num_classes, (long long)lo, (long long)hi);
    if (ds.kind == DATASET_IDX) printf("  images %dx%dx%d\n", ds.w, ds.h, ds.c);
    if (ds.kind == DATASET_PACKED) {
        int side = 0;
        int resized = pack_resized(ds.pack, &side);
        printf("  %d shard%s%s", pack_num_shards(ds.pack), pack_num_shards(ds.pack) == 1 ? "" : "s",
               resized ? ", pre-resized" : "");
        if (resized) printf(" (shorter side at most %d)", side);
        printf("\n");
    }
    for (int c = 0; c < ds.num_classes; c++)
        printf("  %5d  %-24s %lld\n", c, ds.class_names[c], (long long)counts[c]);
    free(counts);
    dataset_close(&ds);
    return 0;
}

static void pack_progress(int64_t done, int64_t total, void *user) {
    double *t0 = user;
    double dt = gk_now() - *t0;
    fprintf(stderr, "\r  %lld / %lld images (%.0f images/s)", (long long)done, (long long)total,
            dt > 0 ? done / dt : 0.0);
    if (done == total) fputc('\n', stderr);
}

static int data_pack(int argc, char **argv) {
    const char *src = NULL, *dst = NULL;
    PackOptions opt;
    pack_options_defaults(&opt);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--max-side") && i + 1 < argc) {
            if (parse_int(a, argv[++i], 1, &opt.max_side) != 0) return 2;
        } else if (!strcmp(a, "--workers") && i + 1 < argc) {
            if (parse_int(a, argv[++i], 1, &opt.workers) != 0) return 2;
        } else if (!strcmp(a, "--shard-size") && i + 1 < argc) {
            opt.shard_bytes = parse_bytes(argv[++i]);
            if (opt.shard_bytes < 1) {
                fprintf(stderr, "gkav data pack: --shard-size expects a size such as 1G or 512M, got '%s'\n",
                        argv[i]);
                return 2;
            }
        } else if (a[0] == '-') {
            fprintf(stderr, "gkav data pack: unknown option '%s'\n", a);
            data_usage(stderr);
            return 2;
        } else if (!src) {
            src = a;
        } else if (!dst) {
            dst = a;
        } else {
            fprintf(stderr, "gkav data pack: unexpected argument '%s'\n", a);
            return 2;
        }
    }
    if (!src || !dst) {
        data_usage(stderr);
        return 2;
    }
    Dataset ds;
    GkErr err;
    if (dataset_open(&ds, src, &err) != 0) {
        fprintf(stderr, "gkav data pack: %s\n", err.msg);
        return 1;
    }
    printf("packing %s (%lld images, %d classes) into %s\n", ds.source, (long long)ds.count, ds.num_classes,
           dst);
    fflush(stdout); /* before the progress lines on stderr */
    double t0 = gk_now();
    opt.progress = pack_progress;
    opt.progress_user = &t0;
    PackReport rep;
    int rc = pack_write(dst, &ds, &opt, &rep, &err);
    if (rc != 0) {
        fprintf(stderr, "gkav data pack: %s\n", err.msg);
    } else {
        printf("wrote %lld images (%lld resized) in %lld shard%s, %.1f MiB, in %.1f s\n",
               (long long)rep.written, (long long)rep.resized, (long long)rep.shards,
               rep.shards == 1 ? "" : "s", rep.bytes / 1048576.0, gk_now() - t0);
        if (rep.left_out) {
            printf("left out %lld file%s that could not be used:\n", (long long)rep.left_out,
                   rep.left_out == 1 ? "" : "s");
            for (int64_t i = 0; i < rep.left_out; i++)
                printf("  %s\n", rep.left_out_msgs[i]);
        }
    }
    pack_report_free(&rep);
    dataset_close(&ds);
    return rc == 0 ? 0 : 1;
}

static int data_check(int argc, char **argv) {
    const char *path = NULL;
    int workers = default_workers();
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--workers") && i + 1 < argc) {
            if (parse_int(argv[i], argv[i + 1], 1, &workers) != 0) return 2;
            i++;
        } else if (argv[i][0] == '-' || path) {
            fprintf(stderr, "gkav data check: unexpected argument '%s'\n", argv[i]);
            data_usage(stderr);
            return 2;
        } else {
            path = argv[i];
        }
    }
    if (!path) {
        data_usage(stderr);
        return 2;
    }
    Dataset ds;
    GkErr err;
    if (dataset_open(&ds, path, &err) != 0) {
        fprintf(stderr, "gkav data check: %s\n", err.msg);
        return 1;
    }
    double t0 = gk_now();
    CheckReport rep;
    dataset_check(&ds, workers, IMAGE_MAX_PIXELS_DEFAULT, &rep);
    printf("%s: %s, %d classes\n", ds.source, dataset_kind_name(ds.kind), ds.num_classes);
    for (int c = 0; c < ds.num_classes; c++)
        printf("  %5d  %-24s %lld good of %lld\n", c, ds.class_names[c], (long long)rep.good[c],
               (long long)rep.total[c]);
    printf("%lld good of %lld images, %lld could not be used", (long long)rep.good_all, (long long)ds.count,
           (long long)rep.bad_all);
    if (ds.kind == DATASET_PACKED) printf("; %d bad shard%s", rep.bad_shards, rep.bad_shards == 1 ? "" : "s");
    printf(" (%.1f s)\n", gk_now() - t0);
    for (int64_t i = 0; i < rep.n_msgs; i++)
        printf("  %s\n", rep.msgs[i]);
    int bad = rep.bad_all > 0 || rep.bad_shards > 0;
    check_report_free(&rep);
    dataset_close(&ds);
    return bad ? 1 : 0;
}

static int data_synth(int argc, char **argv) {
    const char *root = NULL;
    int classes = 1000, n_train = 12800, n_val = 1000, workers = default_workers();
    for (int i = 1; i < argc; i++) {
        int *dst = !strcmp(argv[i], "--classes")   ? &classes
                   : !strcmp(argv[i], "--train")   ? &n_train
                   : !strcmp(argv[i], "--val")     ? &n_val
                   : !strcmp(argv[i], "--workers") ? &workers
                                                   : NULL;
        if (dst && i + 1 < argc) {
            if (parse_int(argv[i], argv[i + 1], 1, dst) != 0) return 2;
            i++;
        } else if (argv[i][0] == '-' || root) {
            fprintf(stderr, "gkav data synth: unexpected argument '%s'\n", argv[i]);
            data_usage(stderr);
            return 2;
        } else {
            root = argv[i];
        }
    }
    if (!root) {
        data_usage(stderr);
        return 2;
    }
    GkErr err;
    char dir[4096];
    if (mkdir(root, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "gkav data synth: cannot create %s: %s\n", root, strerror(errno));
        return 1;
    }
    const char *split[2] = {"train", "val"};
    const int count[2] = {n_train, n_val};
    for (int k = 0; k < 2; k++) {
        double t0 = gk_now();
        SynthStats st;
        snprintf(dir, sizeof dir, "%s/%s", root, split[k]);
        /* val images continue the numbering, so no val image repeats a train image */
        if (synth_folder(dir, classes, count[k], k ? (uint64_t)n_train : 0, workers, &st, &err) != 0) {
            fprintf(stderr, "gkav data synth: %s\n", err.msg);
            return 1;
        }
        if (st.reused)
            printf("%s: complete already (%d images, %d classes)\n", dir, count[k], classes);
        else
            printf("%s: %d images, %d classes, mean %.0f KB and %.0f kilopixels (%.1f s)\n", dir, count[k],
                   classes, st.bytes / 1024.0 / count[k], st.pixels / 1000.0 / count[k], gk_now() - t0);
    }
    return 0;
}

int cmd_data(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        data_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "scan") && argc == 3) return data_scan(argv[2]);
    if (!strcmp(argv[1], "pack")) return data_pack(argc - 1, argv + 1);
    if (!strcmp(argv[1], "check")) return data_check(argc - 1, argv + 1);
    if (!strcmp(argv[1], "synth")) return data_synth(argc - 1, argv + 1);
    fprintf(stderr, "gkav data: unknown or incomplete subcommand '%s'\n", argv[1]);
    data_usage(stderr);
    return 2;
}
