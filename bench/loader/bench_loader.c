/* bench_loader: images/s of the GKAVision loader on a folder of ImageNet-like JPEGs, for decode +
 * RandomResizedCrop(224) + flip, and the same with RandAugment rand-m9-mstd0.5-inc1, at 1, 2 and all
 * cores. bench/loader/run.sh runs it beside torchvision_loader.py on the same folder.
 *
 * The folder is generated once (and reused): ~2,000 JPEGs, quality 90, sizes drawn from ImageNet's common
 * shapes (mean about 500 x 375), with content that costs what photographs cost to decode: smooth
 * gradients, soft shapes, texture and noise, so the entropy-coded data is not trivially compressible.
 *
 * Timing: from the first batch to the end of the third epoch, as torchvision_loader.py does (with
 * persistent workers), so thread or process start-up is not counted on either side. Output: a table, or
 * CSV lines (--csv)
 * "gkav,<plain|randaugment>,<threads>,<images/s>". */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataset.h"
#include "loader.h"
#include "synth.h"
#include "transforms.h"

#define CLASSES 10

/* Makes the folder unless a complete one is already there. */
static void ensure_corpus(const char *dir, int count, int threads) {
    printf("generating (or reusing) %d JPEGs in %s ...\n", count, dir);
    double t0 = gk_now();
    SynthStats st;
    GkErr err;
    if (synth_folder(dir, CLASSES, count, 0, threads, &st, &err) != 0) gk_die("%s", err.msg);
    if (!st.reused)
        printf("  %.1f s; mean %.0f KB and %.0f kilopixels per image\n", gk_now() - t0,
               st.bytes / 1024.0 / count, st.pixels / 1000.0 / count);
}

/* `epochs` epochs through the loader; images/s from the first batch to the last. */
static double run_epochs(const Dataset *ds, TrainAugConfig *aug, int threads, int batch, int epochs) {
    LoaderConfig cfg;
    loader_config_defaults(&cfg);
    cfg.dataset = ds;
    cfg.transform = loader_train_transform;
    cfg.transform_user = aug;
    cfg.out_h = cfg.out_w = aug->size;
    cfg.out_c = 3;
    cfg.batch_size = batch;
    cfg.workers = threads;
    cfg.prefetch = 2 + threads; /* as torch's prefetch_factor 2 per worker, roughly */
    cfg.seed = 0;
    cfg.end_epoch = (uint64_t)epochs;
    Loader *L;
    GkErr err;
    if (loader_create(&L, &cfg, &err) != 0) gk_die("%s", err.msg);
    Batch b;
    double t_first = 0;
    int64_t after_first = 0, n = 0;
    int rc;
    while ((rc = loader_next(L, &b, &err)) == 1) {
        if (n++ == 0)
            t_first = gk_now();
        else
            after_first += b.count;
    }
    if (rc < 0) gk_die("%s", err.msg);
    double dt = gk_now() - t_first;
    if (loader_bad_count(L))
        gk_die("the benchmark folder has %lld bad images", (long long)loader_bad_count(L));
    loader_destroy(L);
    return after_first / dt;
}

int main(int argc, char **argv) {
    const char *dir = "/tmp/gkav_bench_jpegs";
    int count = 2000, csv = 0, batch = 64, epochs = 3;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--dir") && i + 1 < argc)
            dir = argv[++i];
        else if (!strcmp(argv[i], "--count") && i + 1 < argc)
            count = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--epochs") && i + 1 < argc)
            epochs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--csv"))
            csv = 1;
        else {
            fprintf(stderr, "usage: bench_loader [--dir DIR] [--count N] [--batch B] [--epochs E] [--csv]\n");
            return 2;
        }
    }
    if (count < batch * 2 || epochs < 1)
        gk_die("--count %d is too small for two batches of %d", count, batch);
    ensure_corpus(dir, count, cores > 0 ? (int)cores : 1);
    Dataset ds;
    GkErr err;
    if (dataset_open_folder(&ds, dir, &err) != 0) gk_die("%s", err.msg);

    int threads[3] = {1, 2, (int)cores}, nt = cores > 2 ? 3 : cores == 2 ? 2 : 1;
    const char *names[2] = {"plain", "randaugment"};
    if (!csv)
        printf("%d JPEGs, batch %d, output 224x224 uint8; images/s from the first batch to the end of epoch "
               "%d\n",
               count, batch, epochs);
    for (int mode = 0; mode < 2; mode++) {
        TrainAugConfig aug;
        train_aug_defaults(&aug);
        if (mode == 0) aug.ra_ops = 0; /* decode + RandomResizedCrop + flip only */
        aug.color_jitter = 0;
        for (int t = 0; t < nt; t++) {
            double ips = run_epochs(&ds, &aug, threads[t], batch, epochs);
            if (csv)
                printf("gkav,%s,%d,%.1f\n", names[mode], threads[t], ips);
            else
                printf("  %-12s %3d thread%s %8.1f images/s  (%.1f per thread)\n", names[mode], threads[t],
                       threads[t] == 1 ? " " : "s", ips, ips / threads[t]);
            fflush(stdout);
        }
    }
    dataset_close(&ds);
    return 0;
}
