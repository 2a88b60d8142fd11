/* metrics.c: the run's logs: metrics.jsonl (one JSON object per log line), summary.csv (timm's columns, one
 * row per epoch) and plot.svg (loss and top-1 per epoch). The epoch files are rewritten whole and atomically
 * (PATH.tmp, rename), so a reader never sees half a file. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "train.h"

int metrics_append(const char *path, const char *json_line, GkErr *err) {
    FILE *fp = fopen(path, "a");
    if (!fp) return gk_fail(err, "%s: cannot append: %s", path, strerror(errno));
    int ok = fprintf(fp, "%s\n", json_line) > 0;
    ok &= fclose(fp) == 0;
    return ok ? 0 : gk_fail(err, "%s: write failed (disk full?)", path);
}

static int finish(FILE *fp, const char *tmp, const char *path, GkErr *err) {
    int ok = !ferror(fp);
    ok &= fclose(fp) == 0;
    if (!ok || rename(tmp, path) != 0) {
        remove(tmp);
        return gk_fail(err, "%s: write failed: %s", path, strerror(errno));
    }
    return 0;
}

static int write_csv(const char *dir, const EpochRecord *r, int n, GkErr *err) {
    char path[2048], tmp[2100];
    snprintf(path, sizeof path, "%s/summary.csv", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *fp = fopen(tmp, "w");
    if (!fp) return gk_fail(err, "%s: cannot write: %s", tmp, strerror(errno));
    fprintf(fp, "epoch,train_loss,eval_loss,eval_top1,eval_top5,lr\n");
    for (int i = 0; i < n; i++)
        fprintf(fp, "%d,%.6f,%.6f,%.4f,%.4f,%.6g\n", r[i].epoch, r[i].train_loss, r[i].eval_loss,
                r[i].eval_top1, r[i].eval_top5, r[i].lr);
    return finish(fp, tmp, path, err);
}

/* One polyline of values v[n] (ignoring non-finite ones) scaled to [lo, hi] into the plot box. */
static void polyline(FILE *fp, const double *v, int n, double lo, double hi, const char *color, int x0,
                     int y0, int w, int h) {
    fprintf(fp, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", color);
    for (int i = 0; i < n; i++) {
        if (!isfinite(v[i])) continue;
        double x = x0 + (n > 1 ? (double)i / (n - 1) : 0.5) * w;
        double y = y0 + h - (hi > lo ? (v[i] - lo) / (hi - lo) : 0.5) * h;
        fprintf(fp, "%.1f,%.1f ", x, y);
    }
    fprintf(fp, "\"/>\n");
}

static int write_svg(const char *dir, const EpochRecord *r, int n, GkErr *err) {
    char path[2048], tmp[2100];
    snprintf(path, sizeof path, "%s/plot.svg", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *fp = fopen(tmp, "w");
    if (!fp) return gk_fail(err, "%s: cannot write: %s", tmp, strerror(errno));
    double tl[4096], el[4096], t1[4096], lo = INFINITY, hi = -INFINITY;
    if (n > 4096) n = 4096;
    for (int i = 0; i < n; i++) {
        tl[i] = r[i].train_loss, el[i] = r[i].eval_loss, t1[i] = r[i].eval_top1;
        if (isfinite(tl[i])) lo = fmin(lo, tl[i]), hi = fmax(hi, tl[i]);
        if (isfinite(el[i])) lo = fmin(lo, el[i]), hi = fmax(hi, el[i]);
    }
    if (!(lo <= hi)) lo = 0.0, hi = 1.0;
    const int W = 720, H = 300, x0 = 60, y0 = 30, w = 280, h = 220, x1 = 420;
    fprintf(fp,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" "
            "font-size=\"12\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
            W, H);
    for (int p = 0; p < 2; p++) {
        int bx = p ? x1 : x0;
        fprintf(fp, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"none\" stroke=\"#888\"/>\n",
                bx, y0, w, h);
        fprintf(fp, "<text x=\"%d\" y=\"%d\">%s</text>\n", bx, y0 - 10,
                p ? "eval top-1 (%) per epoch" : "loss per epoch (blue: train, orange: eval)");
        fprintf(fp, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.3g</text>\n", bx - 4, y0 + 10,
                p ? 100.0 : hi);
        fprintf(fp, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%.3g</text>\n", bx - 4, y0 + h,
                p ? 0.0 : lo);
        fprintf(
            fp,
            "<text x=\"%d\" y=\"%d\">epoch 1</text><text x=\"%d\" y=\"%d\" text-anchor=\"end\">%d</text>\n",
            bx, y0 + h + 16, bx + w, y0 + h + 16, n);
    }
    polyline(fp, tl, n, lo, hi, "#1f77b4", x0, y0, w, h);
    polyline(fp, el, n, lo, hi, "#ff7f0e", x0, y0, w, h);
    polyline(fp, t1, n, 0.0, 100.0, "#2ca02c", x1, y0, w, h);
    fprintf(fp, "</svg>\n");
    return finish(fp, tmp, path, err);
}

int write_summary(const char *run_dir, const EpochRecord *rec, int n, GkErr *err) {
    if (write_csv(run_dir, rec, n, err) != 0) return -1;
    return write_svg(run_dir, rec, n, err);
}

int read_summary(const char *run_dir, EpochRecord *rec, int max, int up_to_epoch) {
    char path[2048], line[512];
    snprintf(path, sizeof path, "%s/summary.csv", run_dir);
    FILE *fp = fopen(path, "r");
    if (!fp) return 0;
    int n = 0;
    if (fgets(line, sizeof line, fp))
        while (n < max && fgets(line, sizeof line, fp)) {
            EpochRecord r;
            if (sscanf(line, "%d,%lf,%lf,%lf,%lf,%lf", &r.epoch, &r.train_loss, &r.eval_loss, &r.eval_top1,
                       &r.eval_top5, &r.lr) == 6 &&
                r.epoch <= up_to_epoch)
                rec[n++] = r;
        }
    fclose(fp);
    return n;
}
