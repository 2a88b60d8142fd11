/* params.c: the parameter table and its initialisers. */
#include "params.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "philox.h"

int params_add(ParamTable *pt, const char *prefix, const char *name, int ndim, const int64_t *shape, ParamKind kind,
               ParamInit init, float init_arg) {
    GK_CHECK(ndim >= 1 && ndim <= PARAM_MAX_DIMS, "parameter %s%s: rank %d", prefix, name, ndim);
    if (pt->n == pt->cap) {
        pt->cap = pt->cap ? 2 * pt->cap : 64;
        pt->e = realloc(pt->e, sizeof(ParamEntry) * (size_t)pt->cap);
        GK_CHECK(pt->e != NULL, "out of memory for the parameter table");
    }
    ParamEntry *p = &pt->e[pt->n];
    memset(p, 0, sizeof *p);
    int len = snprintf(p->name, sizeof p->name, "%s%s", prefix, name);
    GK_CHECK(len < (int)sizeof p->name, "parameter name %s%s too long", prefix, name);
    p->ndim = ndim;
    p->numel = 1;
    for (int i = 0; i < ndim; i++) p->shape[i] = shape[i], p->numel *= (size_t)shape[i];
    p->offset = pt->total;
    p->kind = kind;
    p->init = init;
    p->init_arg = init_arg;
    pt->total += p->numel;
    return pt->n++;
}

Tensor params_view(const ParamTable *pt, int i, void *base, DType dt, Device dev) {
    const ParamEntry *p = &pt->e[i];
    void *data = base ? (char *)base + p->offset * dtype_size(dt) : NULL;
    return tensor_make(data, dt, dev, p->ndim, p->shape);
}

Tensor params_span(const ParamTable *pt, int i, int j, int64_t cols, void *base, DType dt, Device dev) {
    size_t n = 0;
    for (int k = i; k <= j; k++) {
        GK_CHECK(k == i || pt->e[k].offset == pt->e[k - 1].offset + pt->e[k - 1].numel,
                 "parameters %s..%s are not contiguous", pt->e[i].name, pt->e[j].name);
        GK_CHECK(pt->e[k].numel % (size_t)cols == 0, "parameter %s does not have %lld columns", pt->e[k].name,
                 (long long)cols);
        n += pt->e[k].numel;
    }
    void *data = base ? (char *)base + pt->e[i].offset * dtype_size(dt) : NULL;
    return tensor_2d(data, dt, dev, (int64_t)(n / (size_t)cols), cols);
}

int params_find(const ParamTable *pt, const char *name) {
    for (int i = 0; i < pt->n; i++)
        if (!strcmp(pt->e[i].name, name)) return i;
    return -1;
}

static double normal_at(uint64_t seed, uint64_t idx) {
    Philox4 r = philox_draw(seed, RNG_INIT, idx, 0);
    double u1 = philox_u01_f64(r.v[0], r.v[1]), u2 = philox_u01_f64(r.v[2], r.v[3]);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586 * u2);
}

static double uniform_at(uint64_t seed, uint64_t idx) {
    Philox4 r = philox_draw(seed, RNG_INIT, idx, 1);
    return philox_u01_f64(r.v[0], r.v[1]);
}

void params_init(const ParamTable *pt, float *base, uint64_t seed) {
    for (int i = 0; i < pt->n; i++) {
        const ParamEntry *p = &pt->e[i];
        float *w = base + p->offset;
        for (size_t k = 0; k < p->numel; k++) {
            uint64_t idx = p->offset + k;
            double v = 0.0;
            switch (p->init) {
            case INIT_ZERO: v = 0.0; break;
            case INIT_ONE: v = 1.0; break;
            case INIT_TRUNC_NORMAL: {
                /* truncation at +-2 absolute: redraw outside (never happens for std 0.02, as upstream) */
                uint32_t sub = 0;
                do {
                    v = p->init_arg * normal_at(seed + 0x9E3779B97F4A7C15ull * sub, idx);
                    sub++;
                } while (fabs(v) > 2.0);
                break;
            }
            case INIT_UNIFORM: v = p->init_arg * (2.0 * uniform_at(seed, idx) - 1.0); break;
            case INIT_LOG_UNIFORM: {
                double u = uniform_at(seed, idx) * p->init_arg;
                v = log(u > 1e-30 ? u : 1e-30);
                break;
            }
            case INIT_DT_BIAS: {
                double dt = exp(log(1e-3) + uniform_at(seed, idx) * (log(1e-1) - log(1e-3)));
                if (dt < 1e-4) dt = 1e-4;
                v = dt + log(-expm1(-dt));
                break;
            }
            case INIT_LOG_RANGE: v = log((double)(k % (size_t)p->shape[p->ndim - 1]) + 1.0); break;
            }
            w[k] = (float)v;
        }
    }
}

void params_free(ParamTable *pt) {
    free(pt->e);
    *pt = (ParamTable){0};
}
