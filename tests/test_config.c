/* test_config: configuration files: every syntax feature, getters and their defaults, command-line
 * overrides, includes (relative paths, cycles, depth), write-then-load round trips, the unused-key check,
 * and a corpus of malformed files, each failing with its exact message. Files live in a fresh temporary
 * directory that the test removes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "core.h"

#include "expect.h"

static char tmpdir[256];
static char made[128][300]; /* files and folders to remove at the end, in creation order */
static int n_made = 0;

static const char *tpath(const char *name) {
    static char buf[8][300];
    static int k = 0;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static void remember(const char *path) {
    for (int i = 0; i < n_made; i++)
        if (strcmp(made[i], path) == 0) return;
    GK_CHECK(n_made < 128, "test_config: too many temporary files");
    snprintf(made[n_made++], sizeof made[0], "%s", path);
}

static const char *put_n(const char *name, const char *text, size_t n) {
    const char *path = tpath(name);
    FILE *fp = fopenCheck(path, "wb");
    if (n) fwriteCheck(text, 1, n, fp);
    fcloseCheck(fp);
    remember(path);
    return path;
}
static const char *put(const char *name, const char *text) {
    return put_n(name, text, strlen(text));
}

static void mkdir_t(const char *name) {
    const char *path = tpath(name);
    GK_CHECK(mkdir(path, 0755) == 0, "cannot create %s", path);
    remember(path);
}

static char *slurp(const char *path) {
    FILE *fp = fopenCheck(path, "rb");
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *s = mallocCheck((size_t)n + 1);
    if (n) freadCheck(s, 1, (size_t)n, fp);
    s[n] = '\0';
    fcloseCheck(fp);
    return s;
}

/* ---- syntax ----------------------------------------------------------------------------------------- */

static void test_syntax(void) {
    const char *path = put("syntax.cfg", "\xef\xbb\xbf# a full-line comment\n"
                                         "; another one\n"
                                         "\n"
                                         "   \t\n"
                                         "model = gkavision_t\n"
                                         "seed = 42    # trailing comment\n"
                                         "name = a#b;c\n"
                                         "empty =\n"
                                         "empty2 = ; only a comment\n"
                                         "[train]\r\n"
                                         "batch-size = 256\r\n"
                                         "lr = 5e-4 ; trailing\n"
                                         "  epochs=300  \n"
                                         "neg = -17\n"
                                         "plus = +3\n"
                                         "amp = yes\n"
                                         "b2 = OFF\n"
                                         "b3 = 1\n"
                                         "b4 = False\n"
                                         "b5 = On\n"
                                         "b6 = no\n"
                                         "b7 = 0\n"
                                         "b8 = TRUE\n"
                                         "depths = 1, 3, 8, 4\n"
                                         "mix = 0.8,1.0 , 2e-1\n"
                                         "one = 5\n"
                                         "nolist =\n"
                                         "data-dir = /data/imagenet train\tset\n"
                                         "eq = a=b = c\n"
                                         "[model]   # a comment after a header\n"
                                         "drop-path = 0.2\n"
                                         " [ eval.v2 ] \n"
                                         "crop_pct = 0.875\n"
                                         "[train]\n"
                                         "warmup = 5"); /* no final newline */
    Config *c = config_new();
    GkErr err;
    int rc = config_load(c, path, &err);
    EXPECT(rc == 0);
    if (rc) {
        printf("  %s\n", err.msg);
        config_free(c);
        return;
    }
    long l;
    double d;
    int b;
    EXPECT(strcmp(config_get_str(c, "", "model", "x"), "gkavision_t") == 0);
    EXPECT(config_get_int(c, "", "seed", 0, &l, &err) == 0 && l == 42);
    EXPECT(strcmp(config_get_str(c, "", "name", NULL), "a#b;c") == 0);
    EXPECT(strcmp(config_get_str(c, "", "empty", "x"), "") == 0);
    EXPECT(strcmp(config_get_str(c, "", "empty2", "x"), "") == 0);
    EXPECT(config_get_int(c, "train", "batch-size", 0, &l, &err) == 0 && l == 256);
    EXPECT(config_get_float(c, "train", "lr", 0, &d, &err) == 0 && d == 5e-4);
    EXPECT(config_get_int(c, "train", "epochs", 0, &l, &err) == 0 && l == 300);
    EXPECT(config_get_int(c, "train", "neg", 0, &l, &err) == 0 && l == -17);
    EXPECT(config_get_int(c, "train", "plus", 0, &l, &err) == 0 && l == 3);
    EXPECT(config_get_float(c, "train", "neg", 0, &d, &err) == 0 && d == -17.0);
    const char *bools[8] = {"amp", "b2", "b3", "b4", "b5", "b6", "b7", "b8"};
    const int want[8] = {1, 0, 1, 0, 1, 0, 0, 1};
    for (int i = 0; i < 8; i++)
        EXPECT(config_get_bool(c, "train", bools[i], -1, &b, &err) == 0 && b == want[i]);
    long li[8];
    double lf[8];
    int n;
    EXPECT(config_get_list_int(c, "train", "depths", NULL, 0, li, 8, &n, &err) == 0 && n == 4);
    EXPECT(li[0] == 1 && li[1] == 3 && li[2] == 8 && li[3] == 4);
    EXPECT(config_get_list_int(c, "train", "depths", NULL, 0, li, 4, &n, &err) == 0 && n == 4);
    EXPECT(config_get_list_float(c, "train", "mix", NULL, 0, lf, 8, &n, &err) == 0 && n == 3);
    EXPECT(lf[0] == 0.8 && lf[1] == 1.0 && lf[2] == 0.2);
    EXPECT(config_get_list_int(c, "train", "one", NULL, 0, li, 8, &n, &err) == 0 && n == 1 && li[0] == 5);
    EXPECT(config_get_list_int(c, "train", "nolist", NULL, 0, li, 8, &n, &err) == 0 && n == 0);
    EXPECT(strcmp(config_get_str(c, "train", "data-dir", NULL), "/data/imagenet train\tset") == 0);
    EXPECT(strcmp(config_get_str(c, "train", "eq", NULL), "a=b = c") == 0);
    EXPECT(config_get_float(c, "model", "drop-path", 0, &d, &err) == 0 && d == 0.2);
    EXPECT(config_get_float(c, "eval.v2", "crop_pct", 0, &d, &err) == 0 && d == 0.875);
    EXPECT(config_get_int(c, "train", "warmup", 0, &l, &err) == 0 && l == 5);

    /* absent keys give the defaults; sections are separate name spaces */
    EXPECT(config_get_int(c, "", "lr", 7, &l, &err) == 0 && l == 7);
    EXPECT(config_get_float(c, "eval", "crop_pct", 0.9, &d, &err) == 0 && d == 0.9);
    EXPECT(config_get_bool(c, "train", "absent", 1, &b, &err) == 0 && b == 1);
    EXPECT(config_get_str(c, "train", "model", NULL) == NULL);
    const long dl[2] = {2, 2};
    const double dd[1] = {0.5};
    EXPECT(config_get_list_int(c, "model", "depths", dl, 2, li, 4, &n, &err) == 0 && n == 2 && li[1] == 2);
    EXPECT(config_get_list_float(c, "model", "mix", dd, 1, lf, 4, &n, &err) == 0 && n == 1 && lf[0] == 0.5);
    EXPECT(config_has(c, "train", "lr") && !config_has(c, "train", "LR") && !config_has(c, "Train", "lr"));
    EXPECT(config_check_unused(c, &err) == 0);
    config_free(c);
}

/* ---- getters on malformed values --------------------------------------------------------------------- */

static void test_bad_values(void) {
    const char *path = put("values.cfg", "[train]\n"
                                         "batch-size = 12x\n"
                                         "big = 99999999999999999999\n"
                                         "lr = 5e-4x\n"
                                         "huge = 1e999\n"
                                         "nan = nan\n"
                                         "inf = inf\n"
                                         "amp = maybe\n"
                                         "depths = 1, x, 3\n"
                                         "gap = 1,,3\n"
                                         "trail = 1, 2,\n"
                                         "many = 1, 2, 3, 4, 5\n"
                                         "mix = 0.5, a\n"
                                         "empty =\n"
                                         "space = 1 2\n"
                                         "hex = 0x10\n"
                                         "deep = 9223372036854775807\n");
    Config *c = config_new();
    GkErr err;
    EXPECT(config_load(c, path, &err) == 0);
    long l, li[4];
    double d, lf[4];
    int b, n;
    char want[600];
#define BAD(call, line, key, text)                                                                           \
    do {                                                                                                     \
        EXPECT((call) == -1);                                                                                \
        snprintf(want, sizeof want, "%s:%d: key '%s' in [train]: %s", path, line, key, text);                \
        EXPECT(strcmp(err.msg, want) == 0);                                                                  \
        if (strcmp(err.msg, want) != 0) printf("  got  '%s'\n  want '%s'\n", err.msg, want);                 \
    } while (0)
    BAD(config_get_int(c, "train", "batch-size", 0, &l, &err), 2, "batch-size",
        "expected an integer, found '12x'");
    BAD(config_get_int(c, "train", "big", 0, &l, &err), 3, "big",
        "integer '99999999999999999999' is out of range");
    BAD(config_get_float(c, "train", "lr", 0, &d, &err), 4, "lr",
        "expected a finite number like 5e-4, found '5e-4x'");
    BAD(config_get_float(c, "train", "huge", 0, &d, &err), 5, "huge", "number '1e999' is out of range");
    BAD(config_get_float(c, "train", "nan", 0, &d, &err), 6, "nan",
        "expected a finite number like 5e-4, found 'nan'");
    BAD(config_get_float(c, "train", "inf", 0, &d, &err), 7, "inf",
        "expected a finite number like 5e-4, found 'inf'");
    BAD(config_get_bool(c, "train", "amp", 0, &b, &err), 8, "amp",
        "expected a boolean (true/false, yes/no, on/off, 1/0), found 'maybe'");
    BAD(config_get_list_int(c, "train", "depths", NULL, 0, li, 4, &n, &err), 9, "depths",
        "item 2 'x' is not an integer (expected a comma list of integers like 1, 3, 8, 4)");
    BAD(config_get_list_int(c, "train", "gap", NULL, 0, li, 4, &n, &err), 10, "gap",
        "item 2 of '1,,3' is empty (expected a comma list of integers like 1, 3, 8, 4)");
    BAD(config_get_list_int(c, "train", "trail", NULL, 0, li, 4, &n, &err), 11, "trail",
        "item 3 of '1, 2,' is empty (expected a comma list of integers like 1, 3, 8, 4)");
    BAD(config_get_list_int(c, "train", "many", NULL, 0, li, 4, &n, &err), 12, "many",
        "more than 4 items in '1, 2, 3, 4, 5' (a comma list of at most 4 integers)");
    BAD(config_get_list_float(c, "train", "mix", NULL, 0, lf, 4, &n, &err), 13, "mix",
        "item 2 'a' is not a number (expected a comma list of numbers like 1, 3, 8, 4)");
    BAD(config_get_int(c, "train", "empty", 0, &l, &err), 14, "empty", "expected an integer, found ''");
    BAD(config_get_float(c, "train", "empty", 0, &d, &err), 14, "empty",
        "expected a finite number like 5e-4, found ''");
    BAD(config_get_bool(c, "train", "empty", 0, &b, &err), 14, "empty",
        "expected a boolean (true/false, yes/no, on/off, 1/0), found ''");
    BAD(config_get_int(c, "train", "space", 0, &l, &err), 15, "space", "expected an integer, found '1 2'");
    BAD(config_get_int(c, "train", "hex", 0, &l, &err), 16, "hex", "expected an integer, found '0x10'");
    EXPECT(config_get_int(c, "train", "deep", 0, &l, &err) == 0 && l == 9223372036854775807L);
    EXPECT(config_get_list_int(c, "train", "many", NULL, 0, li, 4, &n, &err) == -1);
    /* a command-line value says so */
    EXPECT(config_set(c, "train", "batch-size", "abc") == 0);
    EXPECT(config_get_int(c, "train", "batch-size", 0, &l, &err) == -1);
    EXPECT(strcmp(err.msg, "command line: key 'batch-size' in [train]: expected an integer, found 'abc'") ==
           0);
    EXPECT(config_set(c, "", "top", "x") == 0);
    EXPECT(config_get_int(c, "", "top", 0, &l, &err) == -1);
    EXPECT(strcmp(err.msg, "command line: key 'top' in the top section (before any [section]): expected an "
                           "integer, found 'x'") == 0);
#undef BAD
    EXPECT(config_check_unused(c, &err) == 0);
    config_free(c);
}

/* ---- overrides and the unused-key check ------------------------------------------------------------- */

static void test_overrides(void) {
    const char *path = put("over.cfg", "model = gkavision_t\n[train]\nlr = 5e-4\nepochs = 300\n");
    Config *c = config_new();
    GkErr err;
    /* set before load: the command line still wins over the file */
    EXPECT(config_set(c, "train", "epochs", " 10 ") == 0);
    EXPECT(config_load(c, path, &err) == 0);
    EXPECT(config_set(c, "train", "lr", "1e-3") == 0);
    EXPECT(config_set(c, "train", "new-key", "v a l") == 0);
    EXPECT(config_set(c, "", "model", "mambavision_t") == 0);
    EXPECT(config_set(c, "train", "ba ch", "1") == -1);
    EXPECT(config_set(c, "train", "", "1") == -1);
    EXPECT(config_set(c, "tr ain", "k", "1") == -1);
    EXPECT(config_set(c, "train", "include", "x.cfg") == -1);
    EXPECT(config_set(c, "train", "lr", "1\n2") == -1);
    EXPECT(config_set(c, "train", "lr", "1 # c") == -1);
    EXPECT(config_set(c, "train", "lr", "; c") == -1);
    long l;
    double d;
    EXPECT(config_get_int(c, "train", "epochs", 0, &l, &err) == 0 && l == 10);
    EXPECT(config_get_float(c, "train", "lr", 0, &d, &err) == 0 && d == 1e-3);
    EXPECT(strcmp(config_get_str(c, "train", "new-key", ""), "v a l") == 0);
    EXPECT(strcmp(config_get_str(c, "", "model", ""), "mambavision_t") == 0);
    EXPECT(config_check_unused(c, &err) == 0);
    config_free(c);

    /* typos are reported with their origin; reading a key clears it */
    path = put("typo.cfg", "[train]\nbatch-size = 1\nbach-size = 2\nlr = 1\n[model]\nwidht = 3\ndepth = 4\n");
    c = config_new();
    EXPECT(config_load(c, path, &err) == 0);
    EXPECT(config_set(c, "train", "epoks", "3") == 0);
    EXPECT(config_get_int(c, "train", "batch-size", 0, &l, &err) == 0);
    EXPECT(config_get_int(c, "train", "lr", 0, &l, &err) == 0);
    EXPECT(config_has(c, "model", "widht")); /* config_has does not count as reading */
    char want[600];
    EXPECT(config_check_unused(c, &err) == -1);
    snprintf(
        want, sizeof want,
        "%s:3: unknown key 'bach-size' in [train] (and 3 more: 'widht' at %s:6, 'depth' at %s:7, 'epoks' at "
        "command line)",
        path, path, path);
    EXPECT(strcmp(err.msg, want) == 0);
    if (strcmp(err.msg, want) != 0) printf("  got  '%s'\n  want '%s'\n", err.msg, want);
    config_get_str(c, "train", "bach-size", NULL);
    config_get_str(c, "train", "epoks", NULL);
    config_get_str(c, "model", "depth", NULL);
    EXPECT(config_check_unused(c, &err) == -1);
    snprintf(want, sizeof want, "%s:6: unknown key 'widht' in [model]", path);
    EXPECT(strcmp(err.msg, want) == 0);
    config_get_str(c, "model", "widht", NULL);
    EXPECT(config_check_unused(c, &err) == 0);
    config_free(c);
}

/* ---- includes --------------------------------------------------------------------------------------- */

static void test_includes(void) {
    mkdir_t("sub");
    mkdir_t("sub/model");
    put("sub/model/t.cfg", "[model]\ndepths = 1, 3, 8, 4\ndim = 80\n");
    put("sub/base.cfg", "seed = 0\ninclude = model/t.cfg   # relative to sub/\n[train]\nepochs = 300\n");
    const char *main_cfg = put("main.cfg", "[train]\ninclude = sub/base.cfg\nlr = 5e-4\n");
    Config *c = config_new();
    GkErr err;
    int rc = config_load(c, main_cfg, &err);
    EXPECT(rc == 0);
    if (rc) printf("  %s\n", err.msg);
    long l;
    double d;
    EXPECT(config_get_int(c, "", "seed", -1, &l, &err) == 0 && l == 0);         /* included: top section */
    EXPECT(config_get_int(c, "model", "dim", 0, &l, &err) == 0 && l == 80);     /* nested include */
    EXPECT(config_get_int(c, "train", "epochs", 0, &l, &err) == 0 && l == 300); /* included [train] */
    EXPECT(config_get_float(c, "train", "lr", 0, &d, &err) == 0 && d == 5e-4); /* ours continues in [train] */
    EXPECT(!config_has(c, "train", "seed") && !config_has(c, "", "lr"));
    config_get_str(c, "model", "depths", NULL);
    EXPECT(config_check_unused(c, &err) == 0);
    config_free(c);
    /* messages name the included file and line */
    c = config_new();
    EXPECT(config_load(c, main_cfg, &err) == 0);
    config_get_str(c, "", "seed", NULL);
    EXPECT(config_check_unused(c, &err) == -1);
    EXPECT_MSG(err.msg, "/sub/model/t.cfg:2: unknown key 'depths' in [model] (and 3 more: 'dim' at ");
    EXPECT_MSG(err.msg, "/sub/base.cfg:4, 'lr' at ");
    EXPECT_MSG(err.msg, "/main.cfg:3)");
    config_free(c);

    /* an absolute include */
    char abs_line[400];
    snprintf(abs_line, sizeof abs_line, "include = %s\n", tpath("sub/model/t.cfg"));
    c = config_new();
    EXPECT(config_load(c, put("abs.cfg", abs_line), &err) == 0 && config_has(c, "model", "dim"));
    config_free(c);

    /* cycles, self-includes, depth, missing files, duplicates across files */
    char want[800];
    const char *a = put("cyc_a.cfg", "x = 1\ninclude = cyc_b.cfg\n");
    const char *bpath = put("cyc_b.cfg", "\ny = 2\ninclude = cyc_a.cfg\n");
    c = config_new();
    EXPECT(config_load(c, a, &err) == -1);
    snprintf(want, sizeof want, "%s:3: include cycle: %s -> %s -> %s", bpath, a, bpath, tpath("cyc_a.cfg"));
    EXPECT(strcmp(err.msg, want) == 0);
    if (strcmp(err.msg, want) != 0) printf("  got  '%s'\n  want '%s'\n", err.msg, want);
    EXPECT(!config_has(c, "", "x") && !config_has(c, "", "y")); /* a failed load changes nothing */
    const char *self = put("self.cfg", "include = ./self.cfg\n");
    EXPECT(config_load(c, self, &err) == -1);
    snprintf(want, sizeof want, "%s:1: include cycle: %s -> %s/./self.cfg", self, self, tmpdir);
    EXPECT(strcmp(err.msg, want) == 0);
    if (strcmp(err.msg, want) != 0) printf("  got  '%s'\n  want '%s'\n", err.msg, want);
    for (int i = 0; i < 20; i++) { /* a chain of 20 distinct files */
        char name[32], text[64];
        snprintf(name, sizeof name, "chain%02d.cfg", i);
        snprintf(text, sizeof text, "k%d = %d\ninclude = chain%02d.cfg\n", i, i, i + 1);
        put(name, text);
    }
    put("chain20.cfg", "end = 1\n");
    EXPECT(config_load(c, tpath("chain00.cfg"), &err) == -1);
    snprintf(want, sizeof want, "%s:2: includes nested deeper than 16 files", tpath("chain15.cfg"));
    EXPECT(strcmp(err.msg, want) == 0);
    EXPECT(config_load(c, tpath("chain05.cfg"), &err) == 0 && config_has(c, "", "end"));
    const char *miss = put("missing.cfg", "a = 1\ninclude = nope.cfg\n");
    EXPECT(config_load(c, miss, &err) == -1);
    snprintf(want, sizeof want,
             "%s:2: cannot open included file 'nope.cfg' (looked for %s/nope.cfg): No such file or directory",
             miss, tmpdir);
    EXPECT(strcmp(err.msg, want) == 0);
    EXPECT(!config_has(c, "", "a"));
    const char *noname = put("noname.cfg", "include =\n");
    EXPECT(config_load(c, noname, &err) == -1);
    snprintf(want, sizeof want, "%s:1: include needs a file name: 'include = other.cfg'", noname);
    EXPECT(strcmp(err.msg, want) == 0);
    put("dup_inner.cfg", "[train]\nlr = 1\n");
    const char *dup = put("dup_outer.cfg", "include = dup_inner.cfg\n[train]\nlr = 2\n");
    config_free(c);
    c = config_new();
    EXPECT(config_load(c, dup, &err) == -1);
    snprintf(want, sizeof want, "%s:3: duplicate key 'lr' in [train] (first set at %s:2)", dup,
             tpath("dup_inner.cfg"));
    EXPECT(strcmp(err.msg, want) == 0);
    if (strcmp(err.msg, want) != 0) printf("  got  '%s'\n  want '%s'\n", err.msg, want);
    /* and across two config_load calls */
    EXPECT(config_load(c, tpath("dup_inner.cfg"), &err) == 0);
    EXPECT(config_load(c, tpath("dup_inner.cfg"), &err) == -1);
    EXPECT_MSG(err.msg, "dup_inner.cfg:2: duplicate key 'lr' in [train] (first set at ");
    config_free(c);
}

/* ---- write, then load ------------------------------------------------------------------------------- */

static void test_write_roundtrip(void) {
    const char *src = put("rt.cfg", "model = gkavision_t\nempty =\n[train]\nlr = 5e-4   # comment\n"
                                    "depths = 1, 3, 8, 4\n[model]\nname = a#b;c\n[train]\nepochs = 300\n");
    Config *c = config_new();
    GkErr err;
    EXPECT(config_load(c, src, &err) == 0);
    EXPECT(config_set(c, "train", "lr", "1e-3") == 0);
    EXPECT(config_set(c, "eval", "crop-pct", "0.95") == 0);
    EXPECT(config_set(c, "", "seed", "7") == 0);
    const char *out = tpath("resolved.cfg");
    remember(out);
    EXPECT(config_write(c, out, &err) == 0);
    char *text = slurp(out);
    const char *want = "# resolved configuration: the files as loaded, then the command-line overrides\n"
                       "model = gkavision_t\n"
                       "empty =\n"
                       "seed = 7\n"
                       "\n[train]\n"
                       "lr = 1e-3\n"
                       "depths = 1, 3, 8, 4\n"
                       "epochs = 300\n"
                       "\n[model]\n"
                       "name = a#b;c\n"
                       "\n[eval]\n"
                       "crop-pct = 0.95\n";
    EXPECT(strcmp(text, want) == 0);
    if (strcmp(text, want) != 0) printf("  got:\n%s\n", text);
    Config *c2 = config_new();
    EXPECT(config_load(c2, out, &err) == 0);
    double d;
    long li[4];
    int n;
    EXPECT(config_get_float(c2, "train", "lr", 0, &d, &err) == 0 && d == 1e-3);
    EXPECT(config_get_list_int(c2, "train", "depths", NULL, 0, li, 4, &n, &err) == 0 && n == 4 && li[2] == 8);
    EXPECT(strcmp(config_get_str(c2, "model", "name", ""), "a#b;c") == 0);
    EXPECT(strcmp(config_get_str(c2, "", "empty", "x"), "") == 0);
    const char *out2 = tpath("resolved2.cfg");
    remember(out2);
    EXPECT(config_write(c2, out2, &err) == 0);
    char *text2 = slurp(out2);
    EXPECT(strcmp(text, text2) == 0); /* a fixed point */
    EXPECT(access(tpath("resolved.cfg.tmp"), F_OK) != 0);
    free(text);
    free(text2);
    EXPECT(config_write(c2, tpath("no/such/dir/x.cfg"), &err) == -1);
    EXPECT_MSG(err.msg, "cannot create");
    config_free(c);
    config_free(c2);
}

/* ---- malformed files -------------------------------------------------------------------------------- */

/* The file must fail to load with exactly "PATH:LINE: what". */
static void bad_file(const char *name, const char *text, size_t n, int line, const char *what) {
    const char *path = put_n(name, text, n);
    char want[900];
    snprintf(want, sizeof want, "%s:%d: %s", path, line, what);
    Config *c = config_new();
    GkErr err;
    EXPECT(config_set(c, "keep", "k", "v") == 0);
    int rc = config_load(c, path, &err);
    if (rc == 0 || strcmp(err.msg, want) != 0) {
        printf("FAIL malformed %s:\n  got  '%s'\n  want '%s'\n", name, rc ? err.msg : "(loaded)", want);
        failures++;
    }
    EXPECT(config_has(c, "keep", "k") && !config_has(c, "", "a"));
    config_free(c);
}
#define BADF(name, text, line, what) bad_file(name, text, strlen(text), line, what)

static void test_malformed(void) {
    BADF("m1.cfg", "[train\nlr = 1\n", 1, "section header '[train' is missing its closing ']'");
    BADF("m2.cfg", "a = 1\n[model", 2, "section header '[model' is missing its closing ']'");
    BADF("m3.cfg", "a = 1\n[train] extra\n", 2, "unexpected 'extra' after the section header");
    BADF("m4.cfg", "a = 1\n[]\n", 2, "empty section name '[]'");
    BADF("m5.cfg", "a = 1\n[tr ain]\n", 2,
         "section name 'tr ain' has the character ' ' (expected letters, digits, "
         "'_', '-', '.')");
    BADF("m6.cfg", "a = 1\nbatch-size 256\n", 2,
         "expected 'key = value' or '[section]', found 'batch-size 256'");
    BADF("m7.cfg", "a = 1\n  = 5\n", 2, "empty key before '='");
    BADF("m8.cfg", "a = 1\nba ch = 5\n", 2, "invalid key 'ba ch' (expected letters, digits, '_', '-', '.')");
    BADF("m9.cfg", "a = 1\nkey\xc3\xa9 = 5\n", 2,
         "invalid key 'key\xc3\xa9' (expected letters, digits, '_', '-', '.')");
    {
        char want[600];
        snprintf(want, sizeof want, "duplicate key 'lr' in [train] (first set at %s:3)", tpath("m10.cfg"));
        BADF("m10.cfg", "a = 1\n[train]\nlr = 1\nlr = 2\n", 4, want);
        const char *p = tpath("m11.cfg");
        snprintf(want, sizeof want, "duplicate key 'k' in [a] (first set at %s:3)", p);
        BADF("m11.cfg", "a = 1\n[a]\nk = 1\n[b]\nk = 1\n[a]\nk = 2\n", 7, want);
        snprintf(want, sizeof want,
                 "duplicate key 'a' in the top section (before any [section]) (first set at %s:1)",
                 tpath("m12.cfg"));
        BADF("m12.cfg", "a = 1\na = 1\n", 2, want);
    }
    {
        char *long_line = mallocCheck(6000);
        strcpy(long_line, "a = 1\nk = ");
        memset(long_line + 10, 'x', 5000);
        strcpy(long_line + 5010, "\n");
        BADF("m13.cfg", long_line, 2, "line longer than 4096 characters");
        /* exactly 4096 characters (plus \r\n) is fine */
        memset(long_line, 'y', 4096);
        memcpy(long_line, "k = ", 4);
        strcpy(long_line + 4096, "\r\n");
        Config *c = config_new();
        GkErr err;
        EXPECT(config_load(c, put("ok4096.cfg", long_line), &err) == 0);
        EXPECT(strlen(config_get_str(c, "", "k", "")) == 4092);
        config_free(c);
        free(long_line);
    }
    bad_file("m14.cfg", "a = 1\nb = \0x\n", 11, 2, "NUL byte in the file (a binary file, not a config?)");
    bad_file("m15.cfg", "a = 1\n\0", 7, 2, "NUL byte in the file (a binary file, not a config?)");
    {
        char want[600];
        snprintf(want, sizeof want,
                 "cannot open included file 'gone.cfg' (looked for %s/gone.cfg): No such file or directory",
                 tmpdir);
        BADF("m16.cfg", "a = 1\n\ninclude = gone.cfg\n", 3, want);
    }
    /* the same errors inside an included file name that file */
    put("inner_bad.cfg", "ok = 1\n[oops\n");
    put("m17.cfg", "include = inner_bad.cfg\n");
    {
        Config *c = config_new();
        GkErr err;
        EXPECT(config_load(c, tpath("m17.cfg"), &err) == -1);
        char want[600];
        snprintf(want, sizeof want, "%s:2: section header '[oops' is missing its closing ']'",
                 tpath("inner_bad.cfg"));
        EXPECT(strcmp(err.msg, want) == 0);
        EXPECT(config_load(c, tpath("absent.cfg"), &err) == -1);
        EXPECT_MSG(err.msg, "absent.cfg: cannot open: No such file or directory");
        EXPECT(config_load(c, tmpdir, &err) == -1);
        EXPECT_MSG(err.msg, ": read failed: Is a directory");
        config_free(c);
    }
}

int main(void) {
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/gka_cfg_XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) gk_die("cannot create a temporary directory under %s", base ? base : "/tmp");
    test_syntax();
    test_bad_values();
    test_overrides();
    test_includes();
    test_write_roundtrip();
    test_malformed();
    for (int i = n_made - 1; i >= 0; i--)
        remove(made[i]);
    if (rmdir(tmpdir) != 0) {
        printf("FAIL: files left in %s\n", tmpdir);
        failures++;
    }
    printf("config tests: %d failed\n", failures);
    return failures ? 1 : 0;
}
