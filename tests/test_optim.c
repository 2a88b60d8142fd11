/* test_optim: the optimizer steps of optim.h.
 * `test_optim`: the CPU twins against a float64 loop of the torch (AdamW) and timm (LAMB) formulas, over
 * three steps from step 1 (moments zero) and from step 998 (moments warm), with decayed and undecayed ranges,
 * gaps that must stay untouched, a per-step grad_scale, and the recipe-A chain global norm -> clip -> LAMB
 * pre-normalisation; the global norm against a float64 sum.
 * `test_optim --gpu`: the CUDA twins against the CPU twins on the same inputs (exit 77 without a GPU):
 * params, m and v within 1e-6 (max error / max value) after three steps, the bf16 copy equal to the rounding
 * of the float32 params, the gaps untouched, and a range table longer than one launch's batch. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "core.h"
#include "optim.h"
#include "philox.h"

#define SKIP_CODE 77
#define STEPS 3
#define N_ELEMS 20000
#define TOL_REF 2e-6 /* CPU twin vs float64: a few float32 roundings per step */
#define TOL_GPU 1e-6 /* CUDA vs CPU twin (the brief's bound; the twins are written to agree to the bit) */
#define N_MANY 150   /* ranges of the long table: more than one CUDA launch batch (64) */

/* Parameter groups with gaps: [12164, 12300) and [19301, 20000) belong to no range. The decayed ranges are
 * one tensor each (LAMB's trust ratio is per tensor); [12300, 12301) is a decayed tensor of zeros (trust 1).
 */
static const OptimRange ranges_a[] = {
    {0, 5000, 0.05f}, {5000, 64, 0.0f},    {5064, 7000, 0.05f}, {12064, 100, 0.0f},
    {12300, 1, 0.1f}, {12301, 3000, 0.0f}, {15301, 4000, 0.1f},
};
#define N_RANGES_A (int)(sizeof ranges_a / sizeof ranges_a[0])

typedef struct {
    size_t n;
    float *p, *m, *v, *g[STEPS];
    bf16_t *pb;
} State;

static const float grad_scales[STEPS] = {0.7f, 1.0f, 0.35f};

static void fill_normal(float *x, size_t n, float scale, uint64_t seed, uint32_t stream) {
    for (size_t i = 0; i < n; i++) {
        Philox4 r = philox_draw(seed, RNG_TEST + stream, i, 0);
        double u1 = philox_u01_f64(r.v[0], r.v[1]), u2 = philox_u01_f64(r.v[2], r.v[3]);
        x[i] = (float)(sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586 * u2)) * scale;
    }
}

/* warm = 0: moments zero (step 1); warm = 1: moments as after many steps (step 998). The zero tensor of
 * ranges_a is zeroed whatever the table. Gradients vary in size per element, some tiny (eps matters). */
static State state_make(size_t n, int warm, uint64_t seed) {
    State s = {n, NULL, NULL, NULL, {NULL}, NULL};
    s.p = mallocCheck(n * sizeof(float)), s.m = mallocCheck(n * sizeof(float)),
    s.v = mallocCheck(n * sizeof(float));
    s.pb = mallocCheck(n * sizeof(bf16_t));
    fill_normal(s.p, n, 0.5f, seed, 0);
    if (n > 12300) s.p[12300] = 0.0f;
    fill_normal(s.m, n, warm ? 0.01f : 0.0f, seed, 1);
    fill_normal(s.v, n, warm ? 0.01f : 0.0f, seed, 2);
    for (size_t i = 0; i < n; i++)
        s.v[i] *= s.v[i], s.pb[i] = (bf16_t)(0x7fc0u + i % 7); /* bf16: marker values */
    for (int k = 0; k < STEPS; k++) {
        s.g[k] = mallocCheck(n * sizeof(float));
        fill_normal(s.g[k], n, 1.0f, seed, 10u + (uint32_t)k);
        for (size_t i = 0; i < n; i++)
            s.g[k][i] *= i % 97 == 0 ? 1e-4f : (float)(1 + i % 5);
    }
    return s;
}

static State state_copy(const State *a) {
    State s = *a;
    s.p = mallocCheck(a->n * sizeof(float)), s.m = mallocCheck(a->n * sizeof(float));
    s.v = mallocCheck(a->n * sizeof(float)), s.pb = mallocCheck(a->n * sizeof(bf16_t));
    memcpy(s.p, a->p, a->n * sizeof(float)), memcpy(s.m, a->m, a->n * sizeof(float));
    memcpy(s.v, a->v, a->n * sizeof(float)), memcpy(s.pb, a->pb, a->n * sizeof(bf16_t));
    return s; /* gradients shared with a */
}

static void state_free(State *s, int owns_grads) {
    free(s->p), free(s->m), free(s->v), free(s->pb);
    if (owns_grads)
        for (int k = 0; k < STEPS; k++)
            free(s->g[k]);
}

/* ---- float64 references ------------------------------------------------------------------------------ */

typedef struct {
    double *p, *m, *v;
} Ref;

static Ref ref_make(const State *s) {
    Ref r = {mallocCheck(s->n * sizeof(double)), mallocCheck(s->n * sizeof(double)),
             mallocCheck(s->n * sizeof(double))};
    for (size_t i = 0; i < s->n; i++)
        r.p[i] = s->p[i], r.m[i] = s->m[i], r.v[i] = s->v[i];
    return r;
}

static void ref_free(Ref *r) {
    free(r->p), free(r->m), free(r->v);
}

/* torch.optim.AdamW, one step. */
static void adamw_ref(Ref *r, const float *grads, double grad_scale, const OptimRange *ranges, int nr,
                      OptimHyper hp) {
    double b1 = hp.beta1, b2 = hp.beta2, bc1 = 1.0 - pow(b1, (double)hp.step),
           bc2 = 1.0 - pow(b2, (double)hp.step);
    for (int q = 0; q < nr; q++)
        for (size_t i = ranges[q].offset; i < ranges[q].offset + ranges[q].count; i++) {
            double g = grads[i] * grad_scale;
            r->p[i] *= 1.0 - (double)hp.lr * ranges[q].weight_decay;
            r->m[i] = b1 * r->m[i] + (1.0 - b1) * g;
            r->v[i] = b2 * r->v[i] + (1.0 - b2) * g * g;
            r->p[i] -= hp.lr / bc1 * r->m[i] / (sqrt(r->v[i]) / sqrt(bc2) + hp.eps);
        }
}

/* timm.optim.Lamb, one step (the global pre-normalisation is the caller's, through grad_scale). */
static void lamb_ref(Ref *r, const float *grads, double grad_scale, const OptimRange *ranges, int nr,
                     OptimHyper hp) {
    double b1 = hp.beta1, b2 = hp.beta2, bc1 = 1.0 - pow(b1, (double)hp.step),
           bc2 = 1.0 - pow(b2, (double)hp.step);
    for (int q = 0; q < nr; q++) {
        size_t o = ranges[q].offset, n = ranges[q].count;
        double wd = ranges[q].weight_decay, pn = 0.0, un = 0.0;
        double *u = mallocCheck(n * sizeof(double));
        for (size_t i = 0; i < n; i++) {
            double g = grads[o + i] * grad_scale;
            r->m[o + i] = b1 * r->m[o + i] + (1.0 - b1) * g;
            r->v[o + i] = b2 * r->v[o + i] + (1.0 - b2) * g * g;
            u[i] = (r->m[o + i] / bc1) / (sqrt(r->v[o + i]) / sqrt(bc2) + hp.eps) + wd * r->p[o + i];
            pn += r->p[o + i] * r->p[o + i], un += u[i] * u[i];
        }
        double trust = wd != 0.0 && pn > 0.0 && un > 0.0 ? sqrt(pn) / sqrt(un) : 1.0;
        for (size_t i = 0; i < n; i++)
            r->p[o + i] -= hp.lr * trust * u[i];
        free(u);
    }
}

/* ---- comparisons ----------------------------------------------------------------------------------- */

static int in_ranges(size_t i, const OptimRange *ranges, int nr) {
    for (int q = 0; q < nr; q++)
        if (i >= ranges[q].offset && i < ranges[q].offset + ranges[q].count) return 1;
    return 0;
}

/* max |a - b| / max |b| over the elements in the ranges (a NaN fails). */
static double err_fd(const float *a, const double *b, size_t n, const OptimRange *ranges, int nr) {
    double num = 0.0, den = 1e-30;
    for (size_t i = 0; i < n; i++) {
        if (!in_ranges(i, ranges, nr)) continue;
        double d = fabs((double)a[i] - b[i]);
        if (d != d) return INFINITY;
        num = d > num ? d : num, den = fabs(b[i]) > den ? fabs(b[i]) : den;
    }
    return num / den;
}

/* Elements outside the ranges equal the initial state's bit for bit; the bf16 copy inside is the rounding of
 * p. */
static int check_layout(const State *s, const State *init, const OptimRange *ranges, int nr,
                        const char *what) {
    for (size_t i = 0; i < s->n; i++) {
        if (in_ranges(i, ranges, nr)) {
            if (s->pb[i] != f32_to_bf16(s->p[i])) {
                printf("  %s: bf16 copy of element %zu is %#x, expected %#x\n", what, i, s->pb[i],
                       f32_to_bf16(s->p[i]));
                return 0;
            }
        } else if (memcmp(&s->p[i], &init->p[i], 4) || memcmp(&s->m[i], &init->m[i], 4) ||
                   memcmp(&s->v[i], &init->v[i], 4) || s->pb[i] != init->pb[i]) {
            printf("  %s: element %zu lies outside every range but was changed\n", what, i);
            return 0;
        }
    }
    return 1;
}

static int report(const char *what, double e, double tol) {
    int ok = e <= tol;
    printf("  %-44s %.2e  %s\n", what, e, ok ? "ok" : "FAIL");
    return ok;
}

typedef void (*StepFn)(float *, float *, float *, bf16_t *, const float *, size_t, const OptimRange *, int,
                       OptimHyper, float);
typedef void (*RefFn)(Ref *, const float *, double, const OptimRange *, int, OptimHyper);

/* STEPS steps of the CPU twin from `first_step`, against the float64 reference. */
static int cpu_case(const char *name, StepFn step, RefFn ref, OptimHyper hp, int warm) {
    State init = state_make(N_ELEMS, warm, 0x0971ull + (uint64_t)warm), s = state_copy(&init);
    Ref r = ref_make(&s);
    for (int k = 0; k < STEPS; k++, hp.step++) {
        step(s.p, s.m, s.v, s.pb, s.g[k], s.n, ranges_a, N_RANGES_A, hp, grad_scales[k]);
        ref(&r, s.g[k], grad_scales[k], ranges_a, N_RANGES_A, hp);
    }
    char what[96];
    int ok = 1;
    snprintf(what, sizeof what, "%s to step %lld: params", name, (long long)hp.step - 1);
    ok &= report(what, err_fd(s.p, r.p, s.n, ranges_a, N_RANGES_A), TOL_REF);
    snprintf(what, sizeof what, "%s to step %lld: m", name, (long long)hp.step - 1);
    ok &= report(what, err_fd(s.m, r.m, s.n, ranges_a, N_RANGES_A), TOL_REF);
    snprintf(what, sizeof what, "%s to step %lld: v", name, (long long)hp.step - 1);
    ok &= report(what, err_fd(s.v, r.v, s.n, ranges_a, N_RANGES_A), TOL_REF);
    ok &= check_layout(&s, &init, ranges_a, N_RANGES_A, name);
    ref_free(&r);
    state_free(&s, 0);
    state_free(&init, 1);
    return ok;
}

/* Recipe A's chain on gradients with a large norm: global norm -> clip to 5 -> LAMB's pre-normalisation by
 * max(1, norm / 1) -> one LAMB step, against the same chain in float64. */
static int chain_case(void) {
    State s = state_make(N_ELEMS, 0, 0xc4a1ull);
    for (size_t i = 0; i < s.n; i++)
        s.g[0][i] *= 3.0f;
    Ref r = ref_make(&s);
    double sq = 0.0, ref_sq = 0.0;
    global_norm_sq_cpu(&sq, s.g[0], s.n);
    for (size_t i = 0; i < s.n; i++)
        ref_sq += (double)s.g[0][i] * s.g[0][i];
    int ok = report("global_norm_sq_cpu vs float64 (relative)", fabs(sq - ref_sq) / ref_sq, 1e-12);
    double norm = sqrt(sq), clip = fmin(1.0, 5.0 / (norm + 1e-6));
    float grad_scale = (float)(clip / fmax(1.0, clip * norm / 1.0));
    double ref_norm = sqrt(ref_sq), ref_clip = fmin(1.0, 5.0 / (ref_norm + 1e-6));
    double ref_scale = ref_clip / fmax(1.0, ref_clip * ref_norm);
    OptimHyper hp = {5e-3f, 0.9f, 0.999f, 1e-8f, 1};
    lamb_update_cpu(s.p, s.m, s.v, s.pb, s.g[0], s.n, ranges_a, N_RANGES_A, hp, grad_scale);
    lamb_ref(&r, s.g[0], ref_scale, ranges_a, N_RANGES_A, hp);
    ok &= report("LAMB after clip + pre-normalisation: params", err_fd(s.p, r.p, s.n, ranges_a, N_RANGES_A),
                 TOL_REF);
    ref_free(&r);
    state_free(&s, 1);
    return ok;
}

/* EMA over 3 steps against float64: ema = d ema + (1 - d) p. */
static int ema_case(void) {
    const size_t n = 1001;
    const float d = 0.9998f;
    float *e = mallocCheck(n * sizeof(float)), *p = mallocCheck(n * sizeof(float));
    double *r = mallocCheck(n * sizeof(double)), num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) e[i] = (float)sin((double)i), r[i] = e[i];
    for (int step = 0; step < 3; step++) {
        for (size_t i = 0; i < n; i++) p[i] = (float)cos((double)(i + 7 * step));
        ema_update_cpu(e, p, n, d);
        for (size_t i = 0; i < n; i++) r[i] = (double)d * r[i] + (1.0 - (double)d) * p[i];
    }
    for (size_t i = 0; i < n; i++) num = fmax(num, fabs(e[i] - r[i])), den = fmax(den, fabs(r[i]));
    free(e), free(p), free(r);
    return report("ema vs float64", num / den, 1e-6);
}

static int run_cpu(void) {
    OptimHyper adamw = {1e-3f, 0.9f, 0.999f, 1e-8f, 1}, lamb = {5e-3f, 0.9f, 0.999f, 1e-8f, 1};
    int ok = 1;
    ok &= cpu_case("adamw", adamw_update_cpu, adamw_ref, adamw, 0);
    ok &= cpu_case("lamb", lamb_update_cpu, lamb_ref, lamb, 0);
    adamw.step = lamb.step = 998;
    ok &= cpu_case("adamw", adamw_update_cpu, adamw_ref, adamw, 1);
    ok &= cpu_case("lamb", lamb_update_cpu, lamb_ref, lamb, 1);
    ok &= chain_case();
    ok &= ema_case();
    printf("CPU optimizer tests: %s\n", ok ? "passed" : "FAILED");
    return ok;
}

/* ---- CUDA twins against CPU twins -------------------------------------------------------------------- */
#ifdef GKA_HAVE_CUDA
#include "cuda/cuda_api.h"

static double err_ff(const float *a, const float *b, size_t n, const OptimRange *ranges, int nr) {
    double *bd = mallocCheck(n * sizeof(double));
    for (size_t i = 0; i < n; i++)
        bd[i] = b[i];
    double e = err_fd(a, bd, n, ranges, nr);
    free(bd);
    return e;
}

typedef void (*StepCudaFn)(float *, float *, float *, bf16_t *, const float *, size_t, const OptimRange *,
                           int, OptimHyper, float, CudaCtx *);

static void *upload(Ctx *gpu, const void *h, size_t bytes) {
    void *d = dev_malloc(gpu, bytes);
    cuda_copy(d, h, bytes);
    return d;
}

static int gpu_case(Ctx *gpu, const char *name, StepFn cpu_step, StepCudaFn cuda_step, OptimHyper hp,
                    int warm, const OptimRange *ranges, int nr) {
    State init = state_make(N_ELEMS, warm, 0x6b0ull + (uint64_t)warm), c = state_copy(&init),
          g = state_copy(&init);
    size_t fb = init.n * sizeof(float);
    float *dp = upload(gpu, g.p, fb), *dm = upload(gpu, g.m, fb), *dv = upload(gpu, g.v, fb);
    bf16_t *dpb = upload(gpu, g.pb, init.n * sizeof(bf16_t));
    for (int k = 0; k < STEPS; k++, hp.step++) {
        float *dg = upload(gpu, init.g[k], fb);
        cpu_step(c.p, c.m, c.v, c.pb, init.g[k], c.n, ranges, nr, hp, grad_scales[k]);
        cuda_step(dp, dm, dv, dpb, dg, g.n, ranges, nr, hp, grad_scales[k], gpu->cuda);
        ctx_sync(gpu);
        dev_free(gpu, dg);
    }
    cuda_copy(g.p, dp, fb), cuda_copy(g.m, dm, fb), cuda_copy(g.v, dv, fb);
    cuda_copy(g.pb, dpb, init.n * sizeof(bf16_t));
    char what[96];
    int ok = 1;
    snprintf(what, sizeof what, "%s cuda vs cpu, %d ranges, to step %lld: params", name, nr,
             (long long)hp.step - 1);
    ok &= report(what, err_ff(g.p, c.p, g.n, ranges, nr), TOL_GPU);
    snprintf(what, sizeof what, "%s cuda vs cpu, %d ranges: m", name, nr);
    ok &= report(what, err_ff(g.m, c.m, g.n, ranges, nr), TOL_GPU);
    snprintf(what, sizeof what, "%s cuda vs cpu, %d ranges: v", name, nr);
    ok &= report(what, err_ff(g.v, c.v, g.n, ranges, nr), TOL_GPU);
    ok &= check_layout(&g, &init, ranges, nr, name);
    dev_free(gpu, dp), dev_free(gpu, dm), dev_free(gpu, dv), dev_free(gpu, dpb);
    state_free(&c, 0), state_free(&g, 0), state_free(&init, 1);
    return ok;
}

static int norm_case(Ctx *gpu) {
    size_t n = 3000007; /* several blocks of the first pass, with a ragged end */
    float *h = mallocCheck(n * sizeof(float));
    fill_normal(h, n, 2.0f, 0x40e1ull, 0);
    float *dg = upload(gpu, h, n * sizeof(float));
    double *dout = dev_malloc(gpu, sizeof(double)), cpu = 0.0, a = 0.0, b = 0.0;
    global_norm_sq_cpu(&cpu, h, n);
    global_norm_sq_cuda(dout, dg, n, gpu->cuda);
    ctx_sync(gpu);
    cuda_copy(&a, dout, sizeof(double));
    global_norm_sq_cuda(dout, dg, n, gpu->cuda);
    ctx_sync(gpu);
    cuda_copy(&b, dout, sizeof(double));
    int ok = report("global_norm_sq cuda vs cpu (relative)", fabs(a - cpu) / cpu, 1e-10);
    ok &= report("global_norm_sq cuda, two runs (bits differ: 1)", memcmp(&a, &b, sizeof a) != 0, 0.0);
    dev_free(gpu, dg), dev_free(gpu, dout);
    free(h);
    return ok;
}

/* EMA: the CUDA twin against the CPU twin, bit for bit (both round each operation to nearest). */
static int ema_gpu_case(Ctx *gpu) {
    const size_t n = 100003;
    float *e = mallocCheck(n * sizeof(float)), *p = mallocCheck(n * sizeof(float)), *got = mallocCheck(n * 4);
    for (size_t i = 0; i < n; i++) e[i] = (float)sin((double)i), p[i] = (float)cos((double)i);
    float *de = upload(gpu, e, n * 4), *dp = upload(gpu, p, n * 4);
    ema_update_cpu(e, p, n, 0.9998f);
    ema_update_cuda(de, dp, n, 0.9998f, gpu->cuda);
    ctx_sync(gpu);
    cuda_copy(got, de, n * 4);
    int same = memcmp(got, e, n * 4) == 0;
    printf("  ema cuda vs cpu: %s\n", same ? "identical" : "DIFFERS");
    dev_free(gpu, de), dev_free(gpu, dp);
    free(e), free(p), free(got);
    return same;
}

static int run_gpu(void) {
    if (cuda_device_count() == 0) {
        printf("no CUDA device: GPU optimizer tests skipped\n");
        exit(SKIP_CODE);
    }
    Ctx gpu = ctx_cpu();
    GkErr err;
    if (ctx_cuda_create(&gpu, 0, &err) != 0) gk_die("%s", err.msg);
    OptimRange many[N_MANY]; /* one tensor each, alternately decayed, with a gap every 10th */
    for (int q = 0, o = 0; q < N_MANY; q++) {
        int len = 1 + (q * 37) % 200;
        many[q] = (OptimRange){(size_t)o, (size_t)len, q % 2 ? 0.0f : 0.05f};
        o += len + (q % 10 == 9 ? 13 : 0);
    }
    OptimHyper adamw = {1e-3f, 0.9f, 0.999f, 1e-8f, 1}, lamb = {5e-3f, 0.9f, 0.999f, 1e-8f, 1};
    int ok = 1;
    for (int warm = 0; warm < 2; warm++) {
        adamw.step = lamb.step = warm ? 998 : 1;
        ok &= gpu_case(&gpu, "adamw", adamw_update_cpu, adamw_update_cuda, adamw, warm, ranges_a, N_RANGES_A);
        ok &= gpu_case(&gpu, "lamb", lamb_update_cpu, lamb_update_cuda, lamb, warm, ranges_a, N_RANGES_A);
    }
    ok &= gpu_case(&gpu, "adamw", adamw_update_cpu, adamw_update_cuda, adamw, 1, many, N_MANY);
    ok &= gpu_case(&gpu, "lamb", lamb_update_cpu, lamb_update_cuda, lamb, 1, many, N_MANY);
    ok &= norm_case(&gpu);
    ok &= ema_gpu_case(&gpu);
    ctx_destroy(&gpu);
    printf("GPU optimizer tests: %s\n", ok ? "passed" : "FAILED");
    return ok;
}
#else
static int run_gpu(void) {
    printf("built without CUDA: GPU optimizer tests skipped\n");
    exit(SKIP_CODE);
}
#endif

int main(int argc, char **argv) {
    int gpu = argc > 1 && !strcmp(argv[1], "--gpu");
    if (argc > 2 || (argc == 2 && !gpu)) {
        fprintf(stderr, "usage: test_optim [--gpu]\n");
        return 2;
    }
    return (gpu ? run_gpu() : run_cpu()) ? 0 : 1;
}
