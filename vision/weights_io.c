/* weights_io.c: a model's parameters and BatchNorm buffers to and from safetensors files with PyTorch's
 * names and shapes (model.h), so that a file moves between this project and a PyTorch MambaVision or
 * GKAVision module's state_dict without renaming. Conv2d weights are kept [OC, K, K, IC] here and stored
 * [OC, IC, K, K]; num_batches_tracked is an int64 scalar, as PyTorch stores it.
 * Loading validates the whole file first (every expected tensor present with its shape and a float dtype,
 * the counters int64 scalars, nothing else in the file), then converts into host staging, then copies to
 * the device: a file that fails leaves the model as it was. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "safetensors.h"

/* The name and PyTorch shape of parameter (or buffer) e. */
static int torch_shape(const ParamEntry *e, int64_t *shape) {
    for (int i = 0; i < e->ndim; i++)
        shape[i] = e->shape[i];
    if (e->torch_conv2d) shape[1] = e->shape[3], shape[2] = e->shape[1], shape[3] = e->shape[2];
    return e->ndim;
}

/* [OC, K, K, IC] <-> [OC, IC, K, K]; to_torch selects the direction. */
static void conv_transpose(float *dst, const float *src, const ParamEntry *e, int to_torch) {
    const int64_t OC = e->shape[0], K = e->shape[1], IC = e->shape[3];
    for (int64_t o = 0; o < OC; o++)
        for (int64_t y = 0; y < K; y++)
            for (int64_t x = 0; x < K; x++)
                for (int64_t i = 0; i < IC; i++) {
                    const int64_t ours = ((o * K + y) * K + x) * IC + i,
                                  theirs = ((o * IC + i) * K + y) * K + x;
                    if (to_torch)
                        dst[theirs] = src[ours];
                    else
                        dst[ours] = src[theirs];
                }
}

/* "levels.0.blocks.0.norm1." + "num_batches_tracked" from the BatchNorm's running_mean name. */
static void nbt_name(const Model *m, int i, char *out, size_t cap) {
    const char *rm = m->buffers.e[m->bn_rm[i]].name;
    size_t n = strlen(rm) - strlen("running_mean");
    snprintf(out, cap, "%.*snum_batches_tracked", (int)n, rm);
}

static const char *shape_str(int ndim, const int64_t *s, char *buf, size_t cap) {
    int at = snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && at < (int)cap; i++)
        at += snprintf(buf + at, cap - (size_t)at, "%s%lld", i ? ", " : "", (long long)s[i]);
    if (at < (int)cap) snprintf(buf + at, cap - (size_t)at, "]");
    return buf;
}

/* ---- save ------------------------------------------------------------------------------------------------
 */

/* Adds every entry of table t (values in host) to w, converted into out (advanced past what it used). */
static void add_table(StWriter *w, const ParamTable *t, const float *host, int bf16, char **out, float *tmp) {
    for (int i = 0; i < t->n; i++) {
        const ParamEntry *e = &t->e[i];
        const float *src = host + e->offset;
        if (e->torch_conv2d) {
            conv_transpose(tmp, src, e, 1);
            src = tmp;
        }
        int64_t shape[PARAM_MAX_DIMS];
        int nd = torch_shape(e, shape);
        char *at = *out;
        if (bf16)
            for (size_t k = 0; k < e->numel; k++)
                ((bf16_t *)at)[k] = f32_to_bf16(src[k]);
        else
            memcpy(at, src, e->numel * sizeof(float));
        *out += e->numel * (bf16 ? sizeof(bf16_t) : sizeof(float));
        st_writer_add(w, e->name, bf16 ? ST_BF16 : ST_F32, nd, shape, at);
    }
}

static size_t largest(const ParamTable *t) {
    size_t n = 1;
    for (int i = 0; i < t->n; i++)
        if (t->e[i].numel > n) n = t->e[i].numel;
    return n;
}

int model_save(const Model *m, const char *path, int bf16, Ctx *ctx, GkErr *err) {
    const size_t np = m->params.total, nb = m->buffers.total, es = bf16 ? sizeof(bf16_t) : sizeof(float);
    float *p = mallocCheck((np + 1) * sizeof(float)), *b = mallocCheck((nb + 1) * sizeof(float));
    float *tmp = mallocCheck(largest(&m->params) * sizeof(float));
    char *data = mallocCheck((np + nb + 1) * es), *at = data;
    int64_t *counts = mallocCheck(((size_t)m->n_bn + 1) * sizeof(int64_t));
    model_get_params(m, p, ctx);
    model_get_buffers(m, b, ctx);
    StWriter *w = st_writer_new();
    add_table(w, &m->params, p, bf16, &at, tmp);
    add_table(w, &m->buffers, b, bf16, &at, tmp);
    char name[PARAM_NAME_MAX + 32];
    for (int i = 0; i < m->n_bn; i++) {
        counts[i] = m->nbt[i];
        nbt_name(m, i, name, sizeof name);
        st_writer_add(w, name, ST_I64, 0, NULL, &counts[i]);
    }
    st_writer_meta(w, "format", "pt");
    st_writer_meta(w, "gkav_model", m->cfg.name);
    int rc = st_writer_write(w, path, err);
    st_writer_free(w);
    free(p), free(b), free(tmp), free(data), free(counts);
    return rc;
}

/* ---- load ------------------------------------------------------------------------------------------------
 */

static int is_float(StDType d) {
    return d == ST_F32 || d == ST_BF16 || d == ST_F16;
}

/* Checks that every entry of table t is in f with its PyTorch shape and a float dtype. */
static int check_table(const StFile *f, const ParamTable *t, const char *model, GkErr *err) {
    char a[96], b[96];
    for (int i = 0; i < t->n; i++) {
        const ParamEntry *e = &t->e[i];
        int64_t shape[PARAM_MAX_DIMS];
        int nd = torch_shape(e, shape);
        const StTensor *s = st_find(f, e->name);
        if (!s)
            return gk_fail(err, "%s: tensor '%s' is missing (model %s expects it with shape %s)", f->path,
                           e->name, model, shape_str(nd, shape, a, sizeof a));
        if (!is_float(s->dtype))
            return gk_fail(err, "%s: tensor '%s' is %s; a parameter needs F32, BF16 or F16", f->path, e->name,
                           st_dtype_name(s->dtype));
        int same = s->ndim == nd;
        for (int k = 0; same && k < nd; k++)
            same = s->shape[k] == shape[k];
        if (!same)
            return gk_fail(err, "%s: tensor '%s' has shape %s; model %s expects %s", f->path, e->name,
                           shape_str(s->ndim, s->shape, a, sizeof a), model,
                           shape_str(nd, shape, b, sizeof b));
    }
    return 0;
}

static int expected_name(const Model *m, const char *name) {
    if (params_find(&m->params, name) >= 0 || params_find(&m->buffers, name) >= 0) return 1;
    char n[PARAM_NAME_MAX + 32];
    for (int i = 0; i < m->n_bn; i++) {
        nbt_name(m, i, n, sizeof n);
        if (!strcmp(n, name)) return 1;
    }
    return 0;
}

static int check_file(const StFile *f, const Model *m, GkErr *err) {
    const char *model = m->cfg.name;
    if (check_table(f, &m->params, model, err) != 0 || check_table(f, &m->buffers, model, err) != 0)
        return -1;
    char name[PARAM_NAME_MAX + 32];
    for (int i = 0; i < m->n_bn; i++) {
        nbt_name(m, i, name, sizeof name);
        const StTensor *s = st_find(f, name);
        if (!s) return gk_fail(err, "%s: tensor '%s' is missing (an int64 scalar)", f->path, name);
        if (s->dtype != ST_I64 || s->ndim != 0)
            return gk_fail(err, "%s: tensor '%s' is %s with %d dimensions; expected an int64 scalar", f->path,
                           name, st_dtype_name(s->dtype), s->ndim);
    }
    for (int i = 0; i < f->n; i++)
        if (!expected_name(m, f->t[i].name))
            return gk_fail(err,
                           "%s: unexpected tensor '%s': model %s has no parameter or buffer of that name",
                           f->path, f->t[i].name, model);
    return 0;
}

/* Converts every entry of t from f into host (our layout). */
static int read_table(const StFile *f, const ParamTable *t, float *host, float *tmp, GkErr *err) {
    for (int i = 0; i < t->n; i++) {
        const ParamEntry *e = &t->e[i];
        int64_t shape[PARAM_MAX_DIMS];
        int nd = torch_shape(e, shape);
        float *dst = e->torch_conv2d ? tmp : host + e->offset;
        if (st_read_f32(f, e->name, dst, nd, shape, err) != 0) return -1;
        if (e->torch_conv2d) conv_transpose(host + e->offset, tmp, e, 0);
    }
    return 0;
}

int model_load(Model *m, const char *path, Ctx *ctx, GkErr *err) {
    StFile f;
    if (st_open(&f, path, err) != 0) return -1;
    float *p = mallocCheck((m->params.total + 1) * sizeof(float)),
          *b = mallocCheck((m->buffers.total + 1) * sizeof(float));
    float *tmp = mallocCheck(largest(&m->params) * sizeof(float));
    int64_t *counts = mallocCheck(((size_t)m->n_bn + 1) * sizeof(int64_t));
    int rc = check_file(&f, m, err);
    if (rc == 0) rc = read_table(&f, &m->params, p, tmp, err);
    if (rc == 0) rc = read_table(&f, &m->buffers, b, tmp, err);
    if (rc == 0) {
        char name[PARAM_NAME_MAX + 32];
        for (int i = 0; i < m->n_bn; i++) {
            nbt_name(m, i, name, sizeof name);
            memcpy(&counts[i], st_tensor_data(&f, st_find(&f, name)),
                   sizeof(int64_t)); /* little-endian host */
        }
        model_set_params(m, p, ctx);
        model_set_buffers(m, b, ctx);
        memcpy(m->nbt, counts, (size_t)m->n_bn * sizeof(int64_t));
    }
    st_close(&f);
    free(p), free(b), free(tmp), free(counts);
    return rc;
}
