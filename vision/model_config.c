/* model_config.c: reading and checking model files (model_config.h). Defaults are MambaVision-T's, so a
 * file states what it changes; the shipped files state everything anyway, to be read on their own. */
#include "model_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gka.h"

#ifndef GKA_CONFIG_DIR
#define GKA_CONFIG_DIR "configs"
#endif

static int is_path(const char *s) {
    size_t n = strlen(s);
    return strchr(s, '/') != NULL || (n > 4 && !strcmp(s + n - 4, ".cfg"));
}

/* The file stem: "configs/gkavision_t.cfg" -> "gkavision_t". */
static void stem_of(const char *path, char *out, size_t cap) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    size_t n = strlen(b);
    if (n > 4 && !strcmp(b + n - 4, ".cfg")) n -= 4;
    if (n >= cap) n = cap - 1;
    memcpy(out, b, n);
    out[n] = '\0';
}

int model_config_open(Config *c, const char *name, char *path_out, size_t path_len, GkErr *err) {
    char path[MODEL_PATH_MAX];
    if (is_path(name)) {
        snprintf(path, sizeof path, "%s", name);
    } else {
        const char *env = getenv("GKA_CONFIG_DIR");
        const char *dirs[3] = {env && env[0] ? env : NULL, GKA_CONFIG_DIR, "configs"};
        int found = 0;
        for (int i = 0; i < 3 && !found; i++) {
            if (!dirs[i]) continue;
            snprintf(path, sizeof path, "%s/%s.cfg", dirs[i], name);
            found = access(path, R_OK) == 0;
        }
        if (!found)
            return gk_fail(err,
                           "model '%s': no %s.cfg in $GKA_CONFIG_DIR, %s or ./configs (give a path to "
                           "load another file)",
                           name, name, GKA_CONFIG_DIR);
    }
    if (config_load(c, path, err) != 0) return -1;
    if (path_out) snprintf(path_out, path_len, "%s", path);
    return 0;
}

/* A list of one integer per level from `first` to the last, each >= lo, into out[first..]. */
static int get_levels(const Config *c, const char *sec, const char *key, const long *def, int first, int *out,
                      long lo, const char *path, GkErr *err) {
    const int want = MODEL_LEVELS - first;
    long v[MODEL_LEVELS + 1];
    int n;
    if (config_get_list_int(c, sec, key, def, want, v, MODEL_LEVELS + 1, &n, err) != 0) return -1;
    if (n != want)
        return gk_fail(err, "%s: [%s] %s: expected %d comma-separated values (levels %d to %d), found %d",
                       path, sec, key, want, first, MODEL_LEVELS - 1, n);
    for (int i = 0; i < want; i++) {
        if (v[i] < lo || v[i] > 1 << 20)
            return gk_fail(err, "%s: [%s] %s: value %ld for level %d is outside %ld..%d", path, sec, key,
                           v[i], first + i, lo, 1 << 20);
        out[first + i] = (int)v[i];
    }
    return 0;
}

static int get_int(const Config *c, const char *sec, const char *key, long def, long lo, long hi, int *out,
                   const char *path, GkErr *err) {
    long v;
    if (config_get_int(c, sec, key, def, &v, err) != 0) return -1;
    if (v < lo || v > hi)
        return gk_fail(err, "%s: [%s] %s = %ld: expected %ld..%ld", path, sec, key, v, lo, hi);
    *out = (int)v;
    return 0;
}

/* A float in [lo, hi) (hi_open) or [lo, hi]. */
static int get_float(const Config *c, const char *sec, const char *key, double def, double lo, double hi,
                     int hi_open, float *out, const char *path, GkErr *err) {
    double v;
    if (config_get_float(c, sec, key, def, &v, err) != 0) return -1;
    if (v < lo || v > hi || (hi_open && v == hi))
        return gk_fail(err, "%s: [%s] %s = %g: expected %g <= value %s %g", path, sec, key, v, lo,
                       hi_open ? "<" : "<=", hi);
    *out = (float)v;
    return 0;
}

/* Architecture checks that involve several keys. */
static int check(const ModelConfig *m, const char *path, GkErr *err) {
    if (m->stem_stride != 1 && m->stem_stride != 2 && m->stem_stride != 4)
        return gk_fail(err, "%s: [model] stem_stride = %d: expected 1, 2 or 4", path, m->stem_stride);
    for (int l = 2; l < MODEL_LEVELS; l++) {
        const int C = model_level_channels(m, l), first_attn = model_first_attention(m->depths[l]);
        const int has_mamba = first_attn > 0, has_attn = first_attn < m->depths[l];
        if (has_attn && !m->gka_replace_attention && C % m->num_heads[l] != 0)
            return gk_fail(err, "%s: [model] num_heads: %d heads do not divide the %d channels of level %d",
                           path, m->num_heads[l], C, l);
        if (has_mamba && !m->gka_replace_mamba && C % 2 != 0)
            return gk_fail(err,
                           "%s: [model] dim: the Mamba mixer splits the %d channels of level %d in halves",
                           path, C, l);
        if ((int)((float)C * m->mlp_ratio) < 1)
            return gk_fail(err, "%s: [model] mlp_ratio %g leaves no hidden units at level %d", path,
                           m->mlp_ratio, l);
        if ((m->gka_replace_mamba && has_mamba) || (m->gka_replace_attention && has_attn)) {
            GkaConfig g;
            gka_config_defaults(&g, C, m->gka_heads[l], m->gka_head_dim[l]);
            GkErr e;
            if (gka_config_check(&g, &e) != 0)
                return gk_fail(err, "%s: [gka] heads / head_dim at level %d: %s", path, l, e.msg);
        }
    }
    return 0;
}

int model_config_read(ModelConfig *m, const Config *c, const char *path, GkErr *err) {
    memset(m, 0, sizeof *m);
    snprintf(m->path, sizeof m->path, "%s", path);
    stem_of(path, m->name, sizeof m->name);
    static const long depths[4] = {1, 3, 8, 4}, heads[4] = {2, 4, 8, 16}, windows[4] = {8, 8, 14, 7};
    static const long gheads[2] = {5, 10}, gdim[2] = {32, 32};
    const char *M = "model", *G = "gka";
    if (get_int(c, M, "in_chans", 3, 1, 64, &m->in_chans, path, err) ||
        get_int(c, M, "num_classes", 1000, 1, 1 << 20, &m->num_classes, path, err) ||
        get_int(c, M, "img_size", 224, 1, 1 << 14, &m->img_size, path, err) ||
        get_int(c, M, "dim", 80, 1, 1 << 14, &m->dim, path, err) ||
        get_int(c, M, "in_dim", 32, 1, 1 << 14, &m->in_dim, path, err) ||
        get_int(c, M, "stem_stride", 4, 1, 4, &m->stem_stride, path, err) ||
        get_levels(c, M, "depths", depths, 0, m->depths, 1, path, err) ||
        get_levels(c, M, "num_heads", heads, 0, m->num_heads, 1, path, err) ||
        get_levels(c, M, "window_size", windows, 0, m->window, 1, path, err) ||
        get_float(c, M, "mlp_ratio", 4.0, 0.0, 64.0, 0, &m->mlp_ratio, path, err) ||
        get_float(c, M, "drop_path_rate", 0.2, 0.0, 1.0, 1, &m->drop_path_rate, path, err) ||
        get_float(c, M, "layer_scale", 0.0, 0.0, 1e6, 0, &m->layer_scale, path, err) ||
        get_float(c, M, "layer_scale_conv", 0.0, 0.0, 1e6, 0, &m->layer_scale_conv, path, err))
        return -1;
    if (config_get_bool(c, G, "replace_mamba", 0, &m->gka_replace_mamba, err) ||
        config_get_bool(c, G, "replace_attention", 0, &m->gka_replace_attention, err) ||
        get_levels(c, G, "heads", gheads, 2, m->gka_heads, 1, path, err) ||
        get_levels(c, G, "head_dim", gdim, 2, m->gka_head_dim, 1, path, err) ||
        config_get_bool(c, G, "use_gate", 0, &m->gka_use_gate, err) ||
        get_int(c, G, "num_iter", 30, 1, 128, &m->gka_num_iter, path, err) ||
        get_float(c, G, "ridge_ratio", 0.02, 1e-8, 1e3, 0, &m->gka_ridge_ratio, path, err) ||
        config_get_bool(c, G, "bidirectional", 0, &m->gka_bidirectional, err))
        return -1;
    if (config_check_unused(c, err) != 0) return -1;
    return check(m, path, err);
}

int model_config_load(ModelConfig *cfg, const char *name_or_path, GkErr *err) {
    Config *c = config_new();
    char path[MODEL_PATH_MAX];
    int rc = model_config_open(c, name_or_path, path, sizeof path, err);
    if (rc == 0) rc = model_config_read(cfg, c, path, err);
    config_free(c);
    return rc;
}
