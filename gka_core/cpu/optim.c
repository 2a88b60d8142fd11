/* optim.c: the CPU twins of optim.h (AdamW, LAMB, global gradient norm) and the float32 constants both twins
 * share. The ranges are cut into chunks of OPT_CHUNK elements, one OpenMP task each; every float64 sum is
 * taken per chunk and then over the chunks in order, so results do not depend on the thread count. The
 * per-element arithmetic below is the definition the CUDA twin (cuda/optim.cu) follows operation by
 * operation: PyTorch's order of operations, float32, no fused multiply-adds (C11 mode compiles with
 * -ffp-contract=off). */
#include "optim.h"

#include <math.h>
#include <stdlib.h>

#include "core.h"

#define OPT_CHUNK 4096
#define NORM_CHUNK 65536

OptimConsts optim_consts(OptimHyper hp) {
    GK_CHECK(hp.step >= 1, "optimizer step %lld: steps count from 1 (bias corrections 1 - beta^k)",
             (long long)hp.step);
    double bc1 = 1.0 - pow((double)hp.beta1, (double)hp.step),
           bc2 = 1.0 - pow((double)hp.beta2, (double)hp.step);
    OptimConsts c;
    c.lr = hp.lr;
    c.beta1 = hp.beta1;
    c.beta2 = hp.beta2;
    c.eps = hp.eps;
    c.one_minus_beta1 = (float)(1.0 - (double)hp.beta1);
    c.one_minus_beta2 = (float)(1.0 - (double)hp.beta2);
    c.bc1 = (float)bc1;
    c.bc2_sqrt = (float)sqrt(bc2);
    c.step_size = (float)((double)hp.lr / bc1);
    return c;
}

void optim_check_ranges(const OptimRange *ranges, int n_ranges, size_t n) {
    for (int r = 0; r < n_ranges; r++) {
        const OptimRange *g = &ranges[r];
        GK_CHECK(g->count > 0 && g->offset + g->count <= n,
                 "optimizer range %d [%zu, +%zu) is empty or outside %zu", r, g->offset, g->count, n);
        GK_CHECK(r == 0 || g->offset >= ranges[r - 1].offset + ranges[r - 1].count,
                 "optimizer ranges %d and %d overlap or are out of order", r - 1, r);
    }
}

/* One task: elements [begin, end) of range r. */
typedef struct {
    int r;
    size_t begin, end;
} OptChunk;

static OptChunk *opt_chunks(const OptimRange *ranges, int n_ranges, int *n_chunks) {
    size_t total = 0;
    for (int r = 0; r < n_ranges; r++)
        total += (ranges[r].count + OPT_CHUNK - 1) / OPT_CHUNK;
    OptChunk *ch = mallocCheck((total ? total : 1) * sizeof(OptChunk));
    size_t k = 0;
    for (int r = 0; r < n_ranges; r++)
        for (size_t b = ranges[r].offset; b < ranges[r].offset + ranges[r].count; b += OPT_CHUNK) {
            size_t e = b + OPT_CHUNK, end = ranges[r].offset + ranges[r].count;
            ch[k++] = (OptChunk){r, b, e < end ? e : end};
        }
    *n_chunks = (int)total;
    return ch;
}

void adamw_update_cpu(float *params, float *m, float *v, bf16_t *params_bf16, const float *grads, size_t n,
                      const OptimRange *ranges, int n_ranges, OptimHyper hp, float grad_scale) {
    optim_check_ranges(ranges, n_ranges, n);
    OptimConsts k = optim_consts(hp);
    int n_chunks;
    OptChunk *ch = opt_chunks(ranges, n_ranges, &n_chunks);
#pragma omp parallel for schedule(static)
    for (int c = 0; c < n_chunks; c++) {
        float decay = (float)(1.0 - (double)hp.lr * (double)ranges[ch[c].r].weight_decay);
        for (size_t i = ch[c].begin; i < ch[c].end; i++) {
            float g = grads[i] * grad_scale;
            float mm = m[i] + k.one_minus_beta1 * (g - m[i]);
            float vv = k.beta2 * v[i] + k.one_minus_beta2 * g * g;
            float denom = sqrtf(vv) / k.bc2_sqrt + k.eps;
            float p = params[i] * decay;
            p = p + -k.step_size * (mm / denom);
            m[i] = mm, v[i] = vv, params[i] = p;
            if (params_bf16) params_bf16[i] = f32_to_bf16(p);
        }
    }
    free(ch);
}

/* LAMB's moments for element i, written back; returns the update direction u before the trust ratio. */
static inline float lamb_moments(float *m, float *v, float p, float g, float wd, const OptimConsts *k) {
    float mm = k->beta1 * *m + k->one_minus_beta1 * g;
    float vv = k->beta2 * *v + k->one_minus_beta2 * g * g;
    *m = mm, *v = vv;
    float u = (mm / k->bc1) / (sqrtf(vv) / k->bc2_sqrt + k->eps);
    return wd != 0.0f ? u + wd * p : u;
}

/* The same u from the moments already updated (the second pass). */
static inline float lamb_direction(float mm, float vv, float p, float wd, const OptimConsts *k) {
    float u = (mm / k->bc1) / (sqrtf(vv) / k->bc2_sqrt + k->eps);
    return wd != 0.0f ? u + wd * p : u;
}

void lamb_update_cpu(float *params, float *m, float *v, bf16_t *params_bf16, const float *grads, size_t n,
                     const OptimRange *ranges, int n_ranges, OptimHyper hp, float grad_scale) {
    optim_check_ranges(ranges, n_ranges, n);
    OptimConsts k = optim_consts(hp);
    int n_chunks;
    OptChunk *ch = opt_chunks(ranges, n_ranges, &n_chunks);
    double *part = mallocCheck(((size_t)n_chunks * 2 + 1) * sizeof(double)); /* per chunk: sum p^2, sum u^2 */
    float *trust = mallocCheck(((size_t)n_ranges + 1) * sizeof(float));
#pragma omp parallel for schedule(static)
    for (int c = 0; c < n_chunks; c++) {
        float wd = ranges[ch[c].r].weight_decay;
        double pp = 0.0, uu = 0.0;
        for (size_t i = ch[c].begin; i < ch[c].end; i++) {
            float u = lamb_moments(&m[i], &v[i], params[i], grads[i] * grad_scale, wd, &k);
            pp += (double)params[i] * params[i];
            uu += (double)u * u;
        }
        part[2 * c] = pp, part[2 * c + 1] = uu;
    }
    for (int r = 0, c = 0; r < n_ranges; r++) {
        double pp = 0.0, uu = 0.0;
        for (; c < n_chunks && ch[c].r == r; c++)
            pp += part[2 * c], uu += part[2 * c + 1];
        double wn = sqrt(pp), un = sqrt(uu);
        trust[r] = ranges[r].weight_decay != 0.0f && wn > 0.0 && un > 0.0 ? (float)(wn / un) : 1.0f;
    }
#pragma omp parallel for schedule(static)
    for (int c = 0; c < n_chunks; c++) {
        float wd = ranges[ch[c].r].weight_decay, tr = trust[ch[c].r];
        for (size_t i = ch[c].begin; i < ch[c].end; i++) {
            float p = params[i] + -k.lr * (lamb_direction(m[i], v[i], params[i], wd, &k) * tr);
            params[i] = p;
            if (params_bf16) params_bf16[i] = f32_to_bf16(p);
        }
    }
    free(trust);
    free(part);
    free(ch);
}

void global_norm_sq_cpu(double *out, const float *grads, size_t n) {
    size_t n_chunks = (n + NORM_CHUNK - 1) / NORM_CHUNK;
    double *part = mallocCheck((n_chunks + 1) * sizeof(double));
#pragma omp parallel for schedule(static)
    for (size_t c = 0; c < n_chunks; c++) {
        double s = 0.0;
        size_t end = (c + 1) * NORM_CHUNK < n ? (c + 1) * NORM_CHUNK : n;
        for (size_t i = c * NORM_CHUNK; i < end; i++)
            s += (double)grads[i] * grads[i];
        part[c] = s;
    }
    double s = 0.0;
    for (size_t c = 0; c < n_chunks; c++)
        s += part[c];
    *out = s;
    free(part);
}

void ema_update_cpu(float *ema, const float *src, size_t n, float decay) {
    const float w = 1.0f - decay;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) ema[i] = ema[i] + w * (src[i] - ema[i]);
}
