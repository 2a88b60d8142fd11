/* test_train: the training loop end to end on the CPU (train.h, checkpoint.h), on a generated two-class image
 * folder (horizontal against vertical stripes, PNG files) and GKAVision-nano with two classes.
 * - the schedule of spec gkavision.md 8.2 at the points that define it (recipe B's numbers);
 * - a malformed recipe stops with the file and line, an unknown key with its name;
 * - a short run learns: the training loss falls and the evaluation reaches 90% top-1 on held-out images;
 * - a run stopped mid-epoch and resumed gives the uninterrupted run's parameters, moments and EMA bit for bit
 *   (RandAugment, mixup, drop path, erasing, EMA and two loader workers on), and the same summary.csv;
 * - a truncated checkpoint or a dangling `latest` is refused with the file named, not half-loaded.
 * Writes under $TMPDIR (or /tmp). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "config.h"
#include "model.h"
#include "train.h"

#include <stb/stb_image_write.h>

#include "expect.h"

static char root[512];

static void write_text(const char *path, const char *text) {
    FILE *fp = fopen(path, "w");
    if (!fp) {
        perror(path);
        exit(1);
    }
    fputs(text, fp);
    fclose(fp);
}

/* ROOT/data/{train,val}/{h,v}/N.png: 28x28 grey stripes of period 4-7 at a random phase, with noise. */
static void make_dataset(void) {
    const char *splits[2] = {"train", "val"};
    const int counts[2] = {48, 24};
    char path[1024];
    snprintf(path, sizeof path, "%s/data", root);
    mkdir(path, 0755);
    uint32_t rng = 12345u;
    for (int s = 0; s < 2; s++) {
        snprintf(path, sizeof path, "%s/data/%s", root, splits[s]);
        mkdir(path, 0755);
        for (int cls = 0; cls < 2; cls++) {
            snprintf(path, sizeof path, "%s/data/%s/%c", root, splits[s], cls ? 'v' : 'h');
            mkdir(path, 0755);
            for (int n = 0; n < counts[s]; n++) {
                uint8_t px[28 * 28];
                rng = rng * 1664525u + 1013904223u;
                int period = 4 + (int)(rng >> 30), phase = (int)((rng >> 8) % 7);
                for (int y = 0; y < 28; y++)
                    for (int x = 0; x < 28; x++) {
                        rng = rng * 1664525u + 1013904223u;
                        int pos = (cls ? x : y) + phase;
                        int on = (pos % period) < period / 2;
                        int v = (on ? 200 : 40) + (int)(rng >> 27) - 16;
                        px[y * 28 + x] = (uint8_t)v;
                    }
                snprintf(path, sizeof path, "%s/data/%s/%c/%03d.png", root, splits[s], cls ? 'v' : 'h', n);
                if (!stbi_write_png(path, 28, 28, 1, px, 28)) {
                    printf("cannot write %s\n", path);
                    exit(1);
                }
            }
        }
    }
    /* GKAVision-nano with two classes */
    char src[1024], text[8192];
    snprintf(src, sizeof src, "%s/gkavision_nano.cfg", GKA_CONFIG_DIR);
    FILE *fp = fopen(src, "r");
    if (!fp) {
        perror(src);
        exit(1);
    }
    size_t n = fread(text, 1, sizeof text - 1, fp);
    fclose(fp);
    text[n] = 0;
    char *k = strstr(text, "num_classes = 10");
    if (!k) {
        printf("%s: no 'num_classes = 10' line\n", src);
        exit(1);
    }
    memcpy(k, "num_classes =  2", 16);
    snprintf(path, sizeof path, "%s/nano2.cfg", root);
    write_text(path, text);
}

/* A recipe over the training defaults: base keys, then extra "key=value" pairs. */
static int run(const char *out, const char *const *extra, GkErr *err) {
    Config *c = config_new();
    char model[1024], data[1024], output[1024];
    snprintf(model, sizeof model, "%s/nano2.cfg", root);
    snprintf(data, sizeof data, "%s/data", root);
    snprintf(output, sizeof output, "%s/%s", root, out);
    const char *base[][2] = {{"model", model},       {"data-dir", data},       {"output", output},
                             {"device", "cpu"},      {"batch-size", "16"},     {"epochs", "4"},
                             {"warmup-epochs", "1"}, {"cooldown-epochs", "1"}, {"lr", "3e-3"},
                             {"workers", "2"},       {"log-interval", "0"},    {"amp", "false"}};
    for (size_t i = 0; i < sizeof base / sizeof base[0]; i++)
        config_set(c, "train", base[i][0], base[i][1]);
    for (int i = 0; extra && extra[i]; i++) {
        char kv[256];
        snprintf(kv, sizeof kv, "%s", extra[i]);
        char *eq = strchr(kv, '=');
        *eq = 0;
        config_set(c, "train", kv, eq + 1);
    }
    TrainConfig t;
    train_config_defaults(&t);
    int rc = train_config_read(&t, c, err);
    if (rc == 0) rc = config_check_unused(c, err);
    if (rc == 0) rc = train_run(&t, c, NULL, err);
    config_free(c);
    return rc;
}

static void test_schedule(void) {
    /* recipe B: 625 steps per epoch, W = 12,500, T = 193,750 (spec 8.1) */
    Schedule s = {5e-4, 1e-6, 5e-6, 12500, 193750};
    const double pi = 3.14159265358979323846;
    struct {
        int64_t t;
        double want;
    } pts[] = {
        {0, 1e-6},
        {1, 1e-6 + (5e-4 - 1e-6) / 12500.0},
        {6250, 1e-6 + 0.5 * (5e-4 - 1e-6)},
        {12499, 1e-6 + 12499.0 * (5e-4 - 1e-6) / 12500.0},
        {12500, 5e-6 + 0.5 * (5e-4 - 5e-6) * (1.0 + cos(pi * 12500.0 / 193750.0))}, /* just under the peak */
        {96875, 5e-6 + 0.5 * (5e-4 - 5e-6)},                                        /* half the cycle */
        {193749, 5e-6 + 0.5 * (5e-4 - 5e-6) * (1.0 + cos(pi * 193749.0 / 193750.0))},
        {193750, 5e-6},
        {200000, 5e-6},
    };
    for (size_t i = 0; i < sizeof pts / sizeof pts[0]; i++) {
        double got = schedule_lr(&s, pts[i].t);
        EXPECTF(fabs(got - pts[i].want) <= 1e-15 + 1e-12 * pts[i].want, "lr(%lld) = %.12g, want %.12g",
                (long long)pts[i].t, got, pts[i].want);
    }
    EXPECTF(schedule_lr(&s, 12500) < schedule_lr(&s, 12499) + 1e-9 && schedule_lr(&s, 12500) < 5e-4,
            "the cosine at W is below the peak (warmup_prefix = false)");
    printf("schedule: %zu points of spec 8.2\n", sizeof pts / sizeof pts[0]);
}

static void test_recipe_errors(void) {
    char path[1024];
    GkErr err;
    snprintf(path, sizeof path, "%s/bad.cfg", root);
    write_text(path, "[train]\nbatch-size = 64\nlr = fast\n");
    Config *c = config_new();
    TrainConfig t;
    train_config_defaults(&t);
    int rc = config_load(c, path, &err);
    if (rc == 0) rc = train_config_read(&t, c, &err);
    EXPECTF(rc != 0 && strstr(err.msg, "bad.cfg") && strstr(err.msg, ":3"), "malformed lr: '%s'",
            rc ? err.msg : "(accepted)");
    config_free(c);

    write_text(path, "[train]\nbatchsize = 64\n");
    c = config_new();
    train_config_defaults(&t);
    rc = config_load(c, path, &err);
    if (rc == 0) rc = train_config_read(&t, c, &err);
    if (rc == 0) rc = config_check_unused(c, &err);
    EXPECTF(rc != 0 && strstr(err.msg, "batchsize"), "unknown key: '%s'", rc ? err.msg : "(accepted)");
    config_free(c);

    const char *neg[] = {"batch-size=0", NULL};
    rc = run("neg", neg, &err);
    EXPECTF(rc != 0 && strstr(err.msg, "batch-size"), "batch-size 0: '%s'", rc ? err.msg : "(accepted)");
    printf("recipe errors: %s\n", err.msg);
}

static void test_learns(void) {
    GkErr err;
    const char *extra[] = {"epochs=8",    "aa=none",     "mixup=0",       "cutmix=0", "reprob=0",
                           "smoothing=0", "drop-path=0", "scale-min=0.5", "hflip=0",  NULL};
    int rc = run("learn", extra, &err);
    EXPECTF(rc == 0, "training run: %s", err.msg);
    if (rc) return;
    EpochRecord rec[16];
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/learn", root);
    int rows = read_summary(dir, rec, 16, 1000);
    double l0 = rows ? rec[0].train_loss : 0, l1 = rows ? rec[rows - 1].train_loss : 0;
    double top1 = rows ? rec[rows - 1].eval_top1 : 0;
    EXPECTF(rows == 9, "summary.csv has %d epoch rows, want 9", rows);
    EXPECTF(l1 < 0.6 * l0, "training loss %.4f -> %.4f did not fall by 40%%", l0, l1);
    EXPECTF(top1 >= 90.0, "held-out top-1 %.2f%% < 90%%", top1);
    printf("learns: train loss %.4f -> %.4f, held-out top-1 %.2f%%\n", l0, l1, top1);
}

typedef struct {
    Model m;
    float *am, *av, *ep, *eb;
    TrainState st;
} Loaded;

static int load(Loaded *L, const char *path, Ctx *ctx, GkErr *err) {
    ModelConfig mc;
    char model[1024];
    snprintf(model, sizeof model, "%s/nano2.cfg", root);
    if (model_config_load(&mc, model, err) != 0) return -1;
    model_declare(&L->m, &mc);
    model_alloc(&L->m, ctx, 1);
    size_t P = L->m.params.total, NB = L->m.buffers.total;
    L->am = calloc(P, sizeof(float)), L->av = calloc(P, sizeof(float)), L->ep = calloc(P, sizeof(float));
    L->eb = calloc(NB ? NB : 1, sizeof(float));
    int rc = checkpoint_load(path, &L->m, L->am, L->av, L->ep, L->eb, &L->st, ctx, err);
    return rc;
}

static void unload(Loaded *L, Ctx *ctx) {
    model_free(&L->m, ctx);
    free(L->am), free(L->av), free(L->ep), free(L->eb);
}

static size_t count_diff(const float *a, const float *b, size_t n) {
    size_t d = 0;
    for (size_t i = 0; i < n; i++)
        d += memcmp(&a[i], &b[i], sizeof(float)) != 0;
    return d;
}

static char *slurp(const char *rel) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    char *buf = calloc(1, 65536);
    size_t n = fread(buf, 1, 65535, fp);
    buf[n] = 0;
    fclose(fp);
    return buf;
}

static void test_resume(void) {
    GkErr err;
    const char *full[] = {
        "epochs=2", "cooldown-epochs=0", "model-ema=true", "model-ema-decay=0.9", "reprob=0.5", NULL};
    EXPECTF(run("full", full, &err) == 0, "uninterrupted run: %s", err.msg);
    /* 6 steps per epoch (96 / 16): stop after step 8, in the middle of epoch 2 */
    const char *part[] = {
        "epochs=2", "cooldown-epochs=0", "model-ema=true", "model-ema-decay=0.9", "reprob=0.5", "max-steps=8",
        NULL};
    EXPECTF(run("split", part, &err) == 0, "first half: %s", err.msg);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/split", root);
    const char *rest[] = {
        "epochs=2", "cooldown-epochs=0", "model-ema=true", "model-ema-decay=0.9", "reprob=0.5", NULL};
    char resume[1100];
    snprintf(resume, sizeof resume, "resume=%s", dir);
    const char *rest2[8];
    int n = 0;
    for (; rest[n]; n++)
        rest2[n] = rest[n];
    rest2[n++] = resume, rest2[n] = NULL;
    EXPECTF(run("split", rest2, &err) == 0, "resumed half: %s", err.msg);

    Ctx ctx = ctx_cpu();
    Loaded a, b;
    char pa[1024], pb[1024];
    snprintf(pa, sizeof pa, "%s/full", root);
    snprintf(pb, sizeof pb, "%s/split", root);
    if (load(&a, pa, &ctx, &err) != 0 || load(&b, pb, &ctx, &err) != 0) {
        EXPECTF(0, "loading the final checkpoints: %s", err.msg);
        return;
    }
    size_t P = a.m.params.total, NB = a.m.buffers.total;
    EXPECTF(a.st.step == 12 && b.st.step == 12, "steps %lld and %lld, want 12", (long long)a.st.step,
            (long long)b.st.step);
    size_t dp = count_diff(a.m.master, b.m.master, P), dm = count_diff(a.am, b.am, P),
           dv = count_diff(a.av, b.av, P);
    size_t de = count_diff(a.ep, b.ep, P), db = count_diff(a.m.buf, b.m.buf, NB),
           deb = count_diff(a.eb, b.eb, NB);
    EXPECTF(dp + dm + dv + de + db + deb == 0,
            "resumed != uninterrupted: params %zu, adam m %zu, v %zu, ema %zu, buffers %zu, ema buffers %zu "
            "differ",
            dp, dm, dv, de, db, deb);
    printf("resume: %zu parameters, %zu buffer values, moments and EMA identical after 8 + 4 steps\n", P, NB);
    char *sa = slurp("full/summary.csv"), *sb = slurp("split/summary.csv");
    EXPECTF(sa && sb && !strcmp(sa, sb), "summary.csv differs:\n%s---\n%s", sa ? sa : "(none)",
            sb ? sb : "(none)");
    free(sa), free(sb);
    unload(&a, &ctx), unload(&b, &ctx);

    /* a truncated checkpoint is refused, naming the file */
    char ck[1100], cut[1100];
    snprintf(ck, sizeof ck, "%s/split/last.safetensors", root);
    snprintf(cut, sizeof cut, "%s/cut.safetensors", root);
    FILE *in = fopen(ck, "rb"), *out = fopen(cut, "wb");
    EXPECTF(in && out, "cannot copy %s", ck);
    if (in && out) {
        fseek(in, 0, SEEK_END);
        long len = ftell(in);
        fseek(in, 0, SEEK_SET);
        char *buf = malloc((size_t)len);
        if (fread(buf, 1, (size_t)len, in) != (size_t)len) len = 0;
        fwrite(buf, 1, (size_t)len / 2, out);
        free(buf);
    }
    if (in) fclose(in);
    if (out) fclose(out);
    Loaded c;
    int rc = load(&c, cut, &ctx, &err);
    EXPECTF(rc != 0 && strstr(err.msg, "cut.safetensors"), "truncated checkpoint: '%s'",
            rc ? err.msg : "(loaded)");
    printf("truncated checkpoint: %s\n", err.msg);
    unload(&c, &ctx);
    /* a `latest` naming a file that is not there */
    char latest[1100];
    snprintf(latest, sizeof latest, "%s/split/latest", root);
    write_text(latest, "gone.safetensors\n");
    rc = load(&c, pb, &ctx, &err);
    EXPECTF(rc != 0 && strstr(err.msg, "gone.safetensors"), "dangling latest: '%s'",
            rc ? err.msg : "(loaded)");
    printf("dangling latest: %s\n", err.msg);
    unload(&c, &ctx);
}

int main(void) {
    const char *tmp = getenv("TMPDIR");
    snprintf(root, sizeof root, "%s/gka_test_train_XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(root)) {
        perror(root);
        return 1;
    }
    make_dataset();
    test_schedule();
    test_recipe_errors();
    test_learns();
    test_resume();
    if (failures) {
        printf("test_train: %d failure(s); files kept in %s\n", failures, root);
        return 1;
    }
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) printf("could not remove %s\n", root);
    printf("test_train: all passed\n");
    return 0;
}
