/* gkav info: a model's size and cost without running it: parameters (from its parameter table), MACs per
 * image at a resolution (conv + linear as spec gkavision.md 5.2 counts them; attention products and the
 * recurrent Mamba-scan / GKA work apart), and one row per stage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "core.h"
#include "model.h"

static void info_usage(FILE *f) {
    fprintf(f, "usage: gkav info --model NAME|PATH [--img-size N]\n"
               "  --model     a model file: configs/NAME.cfg, or a path to a .cfg\n"
               "  --img-size  input resolution (default: the model's img_size)\n");
}

/* 31794248 -> "31,794,248" */
static const char *commas(int64_t v, char *buf, size_t cap) {
    char digits[32];
    int n = snprintf(digits, sizeof digits, "%lld", (long long)(v < 0 ? -v : v)), at = 0;
    if (v < 0 && at < (int)cap - 1) buf[at++] = '-';
    for (int i = 0; i < n && at < (int)cap - 1; i++) {
        if (i && (n - i) % 3 == 0 && at < (int)cap - 1) buf[at++] = ',';
        buf[at++] = digits[i];
    }
    buf[at] = '\0';
    return buf;
}

int cmd_info(int argc, char **argv) {
    const char *name = NULL;
    int img = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) {
            name = argv[++i];
        } else if (!strcmp(argv[i], "--img-size") && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (end == argv[i] || *end || v < 1 || v > 1 << 14) {
                fprintf(stderr, "gkav info: --img-size expects an integer from 1 to %d, got '%s'\n", 1 << 14,
                        argv[i]);
                return 2;
            }
            img = (int)v;
        } else {
            info_usage(!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help") ? stdout : stderr);
            return strcmp(argv[i], "-h") && strcmp(argv[i], "--help") ? 2 : 0;
        }
    }
    if (!name) {
        info_usage(stderr);
        return 2;
    }
    ModelConfig cfg;
    GkErr err;
    if (model_config_load(&cfg, name, &err) != 0) {
        fprintf(stderr, "gkav info: %s\n", err.msg);
        return 1;
    }
    if (!img) img = cfg.img_size;
    Model m;
    model_declare(&m, &cfg);
    ModelCost c;
    model_cost(&m, img, img, &c);
    char a[32], b[32], d[32], e[32];
    printf("%s (%s) at %d x %d, %d input channels, %d classes\n", cfg.name, cfg.path, img, img, cfg.in_chans,
           cfg.num_classes);
    printf("parameters  %s (weight decay: %s, none: %s); buffers %s (BatchNorm running statistics and "
           "counters)\n",
           commas(c.params, a, sizeof a), commas(c.params_decay, b, sizeof b),
           commas(c.params_no_decay, d, sizeof d), commas(c.buffers, e, sizeof e));
    printf("MACs/image  conv + linear %s (%.3f G); attention products %s; recurrent (Mamba scan / GKA) %s\n",
           commas(c.macs, a, sizeof a), (double)c.macs * 1e-9, commas(c.attn_macs, b, sizeof b),
           commas(c.recur_macs, d, sizeof d));
    printf("\n%-12s %9s %6s  %-24s %14s %16s %14s %14s\n", "stage", "map", "C", "blocks", "params", "MACs",
           "attention", "recurrent");
    for (int s = 0; s < c.n; s++) {
        const StageCost *t = &c.st[s];
        char map[24];
        snprintf(map, sizeof map, "%dx%d", t->H, t->W);
        char f[32], g[32];
        printf("%-12s %9s %6d  %-24s %14s %16s %14s %14s\n", t->name, map, t->C, t->blocks,
               commas(t->params, a, sizeof a), commas(t->macs, b, sizeof b),
               commas(t->attn_macs, f, sizeof f), commas(t->recur_macs, g, sizeof g));
    }
    printf("%-12s %9s %6s  %-24s %14s %16s %14s %14s\n", "total", "", "", "", commas(c.params, a, sizeof a),
           commas(c.macs, b, sizeof b), commas(c.attn_macs, d, sizeof d), commas(c.recur_macs, e, sizeof e));
    model_free(&m, NULL);
    return 0;
}
