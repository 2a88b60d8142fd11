/* harness.c: runs the op table (see harness.h for what is checked and how). */
#include "harness.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "philox.h"

#define FD_STEP 1e-5
#define FD_SAMPLES 40 /* finite-difference coordinates per input (all of them for small inputs) */
#define SKIP_CODE 77  /* CTest's skip return code */

static void arg_add(ArgSpec *a, const char *name, ArgRole role, int grad, float lo, float hi, int ndim,
                    va_list ap) {
    memset(a, 0, sizeof *a);
    a->name = name;
    a->role = role;
    a->grad = grad;
    a->lo = lo;
    a->hi = hi;
    a->ndim = ndim;
    for (int i = 0; i < ndim; i++) a->shape[i] = va_arg(ap, int); /* dims are passed as int */
}

void arg_in(OpTest *t, const char *name, ArgRole role, int grad, float lo, float hi, int ndim, ...) {
    GK_CHECK(t->n_in < HARNESS_MAX_ARGS, "too many inputs");
    va_list ap;
    va_start(ap, ndim);
    arg_add(&t->in[t->n_in++], name, role, grad, lo, hi, ndim, ap);
    va_end(ap);
}

void arg_out(OpTest *t, const char *name, ArgRole role, int grad, int ndim, ...) {
    GK_CHECK(t->n_out < HARNESS_MAX_ARGS, "too many outputs");
    va_list ap;
    va_start(ap, ndim);
    arg_add(&t->out[t->n_out++], name, role, grad, 0, 0, ndim, ap);
    va_end(ap);
}

int64_t arg_numel(const ArgSpec *a) {
    int64_t n = 1;
    for (int i = 0; i < a->ndim; i++) n *= a->shape[i];
    return n;
}

static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

/* Deterministic random fill: uniform [lo, hi], or normal(0, 1) * scale when lo == hi. */
static void fill_random(float *x, int64_t n, float lo, float hi, uint64_t seed, uint32_t stream) {
    for (int64_t i = 0; i < n; i++) {
        Philox4 r = philox_draw(seed, RNG_TEST + stream, (uint64_t)i, 0);
        if (lo != hi) {
            x[i] = lo + (hi - lo) * philox_u01(r.v[0]);
        } else {
            double u1 = philox_u01_f64(r.v[0], r.v[1]), u2 = philox_u01_f64(r.v[2], r.v[3]);
            double z = sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586 * u2);
            x[i] = (float)z * (hi != 0.0f ? hi : 1.0f);
        }
    }
}

/* ---- host-side buffers of one test instance ---- */
typedef struct {
    float *in[HARNESS_MAX_ARGS], *out[HARNESS_MAX_ARGS], *dout[HARNESS_MAX_ARGS];
    float *din_init[HARNESS_MAX_ARGS]; /* initial value of each parameter gradient (random), NULL otherwise */
} HostSet;

typedef struct {
    float *out[HARNESS_MAX_ARGS], *din[HARNESS_MAX_ARGS];
} Result;

static DType role_dtype(ArgRole role, Device dev) {
    return (dev == DEV_CUDA && role != ARG_STAT) ? DT_BF16 : DT_F32;
}

static Tensor alloc_like(const ArgSpec *a, DType dt, Ctx *ctx) {
    Tensor t = tensor_make(NULL, dt, ctx->device, a->ndim, a->shape);
    t.data = dev_malloc(ctx, tensor_bytes(t) ? tensor_bytes(t) : 1);
    return t;
}

static Tensor host_view(const ArgSpec *a, float *data) {
    return tensor_make(data, DT_F32, DEV_CPU, a->ndim, a->shape);
}

/* Runs the case on ctx with the host inputs; returns host float32 copies of outputs and gradients. */
static Result run_on(const OpTest *t, const HostSet *h, Ctx *ctx) {
    Tensor in[HARNESS_MAX_ARGS] = {0}, out[HARNESS_MAX_ARGS] = {0}, dout[HARNESS_MAX_ARGS] = {0},
           din[HARNESS_MAX_ARGS] = {0};
    for (int i = 0; i < t->n_in; i++) {
        const ArgSpec *a = &t->in[i];
        in[i] = alloc_like(a, role_dtype(a->role, ctx->device), ctx);
        tensor_copy(in[i], host_view(a, h->in[i]), ctx);
        if (a->grad) {
            /* parameter gradients are f32 everywhere; activation gradients follow the activation dtype */
            din[i] = alloc_like(a, a->role == ARG_WEIGHT ? DT_F32 : role_dtype(a->role, ctx->device), ctx);
            if (h->din_init[i]) tensor_copy(din[i], host_view(a, h->din_init[i]), ctx);
            else tensor_fill_bytes(din[i], 0xff, ctx);
        }
    }
    for (int i = 0; i < t->n_out; i++) {
        const ArgSpec *a = &t->out[i];
        out[i] = alloc_like(a, role_dtype(a->role, ctx->device), ctx);
        tensor_fill_bytes(out[i], 0xff, ctx);
        if (a->grad && h->dout[i]) {
            dout[i] = alloc_like(a, role_dtype(a->role, ctx->device), ctx);
            tensor_copy(dout[i], host_view(a, h->dout[i]), ctx);
        }
    }
    t->c->run(t, out, in, dout, din, ctx);
    ctx_sync(ctx);
    Result r = {0};
    for (int i = 0; i < t->n_out; i++) {
        r.out[i] = mallocCheck((size_t)arg_numel(&t->out[i]) * sizeof(float));
        tensor_copy(host_view(&t->out[i], r.out[i]), out[i], ctx);
        dev_free(ctx, out[i].data);
        if (dout[i].data) dev_free(ctx, dout[i].data);
    }
    for (int i = 0; i < t->n_in; i++) {
        if (din[i].data) {
            r.din[i] = mallocCheck((size_t)arg_numel(&t->in[i]) * sizeof(float));
            tensor_copy(host_view(&t->in[i], r.din[i]), din[i], ctx);
            if (h->din_init[i]) /* checked as an increment */
                for (int64_t k = 0; k < arg_numel(&t->in[i]); k++) r.din[i][k] -= h->din_init[i][k];
            dev_free(ctx, din[i].data);
        }
        dev_free(ctx, in[i].data);
    }
    return r;
}

static void result_free(const OpTest *t, Result *r) {
    for (int i = 0; i < t->n_out; i++) free(r->out[i]);
    for (int i = 0; i < t->n_in; i++) free(r->din[i]);
}

/* Loss of the float64 reference: sum over grad outputs of sum(out * dout). */
static double loss64(const OpTest *t, double *const *in, double **out, const HostSet *h) {
    t->c->forward64(t, out, in);
    double L = 0.0;
    for (int i = 0; i < t->n_out; i++) {
        if (!t->out[i].grad) continue;
        for (int64_t k = 0; k < arg_numel(&t->out[i]); k++) L += out[i][k] * (double)h->dout[i][k];
    }
    return L;
}

static int is_bad(float x) { return isnan(x) || isinf(x); }

/* max |a - ref| / max |ref| over n elements; NaN anywhere gives +inf. */
static double max_err(const float *a, const double *ref, int64_t n) {
    double num = 0.0, den = 0.0;
    for (int64_t k = 0; k < n; k++) {
        if (is_bad(a[k])) return INFINITY;
        double d = fabs((double)a[k] - ref[k]);
        if (d > num) num = d;
        if (fabs(ref[k]) > den) den = fabs(ref[k]);
    }
    return num / (den > 1e-6 ? den : 1e-6);
}

/* rms(a - b) / rms(b) (fla's err_ratio); NaN anywhere gives +inf. */
static double err_ratio(const float *a, const float *b, int64_t n) {
    double num = 0.0, den = 0.0;
    for (int64_t k = 0; k < n; k++) {
        if (is_bad(a[k]) || is_bad(b[k])) return INFINITY;
        double d = (double)a[k] - b[k];
        num += d * d;
        den += (double)b[k] * b[k];
    }
    if (n == 0) return 0.0;
    return sqrt(num / n) / (sqrt(den / n) + 1e-8);
}

static HostSet make_inputs(const OpTest *t, int gpu) {
    HostSet h = {0};
    uint64_t seed = name_hash(t->c->name) + 7919u * (uint64_t)t->shape_index;
    for (int i = 0; i < t->n_in; i++) {
        const ArgSpec *a = &t->in[i];
        int64_t n = arg_numel(a);
        h.in[i] = mallocCheck((size_t)n * sizeof(float));
        fill_random(h.in[i], n, a->lo, a->hi, seed, (uint32_t)i);
        if (a->grad && a->role == ARG_WEIGHT) {
            h.din_init[i] = mallocCheck((size_t)n * sizeof(float));
            fill_random(h.din_init[i], n, -1.0f, 1.0f, seed, 40u + (uint32_t)i);
        }
    }
    if (t->c->prepare) t->c->prepare(t, h.in);
    if (gpu) /* both twins see the values the GPU can hold */
        for (int i = 0; i < t->n_in; i++)
            if (t->in[i].role != ARG_STAT)
                for (int64_t k = 0; k < arg_numel(&t->in[i]); k++) h.in[i][k] = bf16_round(h.in[i][k]);
    for (int i = 0; i < t->n_out; i++) {
        if (!t->out[i].grad) continue;
        int64_t n = arg_numel(&t->out[i]);
        h.dout[i] = mallocCheck((size_t)n * sizeof(float));
        fill_random(h.dout[i], n, 0, 0, seed, 20u + (uint32_t)i);
        if (gpu)
            for (int64_t k = 0; k < n; k++) h.dout[i][k] = bf16_round(h.dout[i][k]);
    }
    return h;
}

static void free_inputs(const OpTest *t, HostSet *h) {
    for (int i = 0; i < HARNESS_MAX_ARGS; i++) {
        if (i < t->n_in) free(h->in[i]), free(h->din_init[i]);
        if (i < t->n_out) free(h->dout[i]);
    }
}

/* CPU twin against the float64 reference and finite differences. Returns 1 on pass. */
static int check_cpu(const OpTest *t, const HostSet *h, Ctx *cpu) {
    const OpCase *c = t->c;
    double tol_fwd = c->tol_fwd > 0 ? c->tol_fwd : 1e-4, tol_grad = c->tol_grad > 0 ? c->tol_grad : 1e-3;
    double *in64[HARNESS_MAX_ARGS] = {0}, *out64[HARNESS_MAX_ARGS] = {0};
    for (int i = 0; i < t->n_in; i++) {
        int64_t n = arg_numel(&t->in[i]);
        in64[i] = mallocCheck((size_t)n * sizeof(double));
        for (int64_t k = 0; k < n; k++) in64[i][k] = h->in[i][k];
    }
    for (int i = 0; i < t->n_out; i++) out64[i] = mallocCheck((size_t)arg_numel(&t->out[i]) * sizeof(double));
    c->forward64(t, out64, in64);

    Result r = run_on(t, h, cpu);
    int pass = 1;
    double worst_fwd = 0.0, worst_grad = 0.0;
    char where[160] = "";
    for (int i = 0; i < t->n_out; i++) {
        double e = max_err(r.out[i], out64[i], arg_numel(&t->out[i]));
        if (e > worst_fwd) worst_fwd = e;
        if (!(e <= tol_fwd)) {
            pass = 0;
            snprintf(where, sizeof where, "output %s err %.3g", t->out[i].name, e);
        }
    }
    for (int i = 0; i < t->n_in; i++) {
        if (!t->in[i].grad) continue;
        int64_t n = arg_numel(&t->in[i]);
        int64_t samples = n < FD_SAMPLES ? n : FD_SAMPLES;
        double num = 0.0, den = 0.0;
        for (int64_t s = 0; s < samples; s++) {
            int64_t k = samples == n ? s : (s * 7919 + 13) % n;
            double x0 = in64[i][k];
            in64[i][k] = x0 + FD_STEP;
            double lp = loss64(t, in64, out64, h);
            in64[i][k] = x0 - FD_STEP;
            double lm = loss64(t, in64, out64, h);
            in64[i][k] = x0;
            double fd = (lp - lm) / (2 * FD_STEP), g = r.din[i][k];
            if (is_bad((float)g)) num = INFINITY;
            if (fabs(g - fd) > num) num = fabs(g - fd);
            if (fabs(fd) > den) den = fabs(fd);
        }
        double e = num / (den > 1e-6 ? den : 1e-6);
        if (e > worst_grad) worst_grad = e;
        if (!(e <= tol_grad)) {
            pass = 0;
            snprintf(where, sizeof where, "gradient of %s err %.3g", t->in[i].name, e);
        }
    }
    printf("  %-28s shape %d  cpu: fwd %.2e  grad %.2e  %s%s%s\n", c->name, t->shape_index, worst_fwd, worst_grad,
           pass ? "ok" : "FAIL", pass ? "" : ": ", where);
    result_free(t, &r);
    for (int i = 0; i < t->n_in; i++) free(in64[i]);
    for (int i = 0; i < t->n_out; i++) free(out64[i]);
    return pass;
}

/* CUDA twin against the CPU twin on the same (bf16-rounded) inputs. Returns 1 on pass. */
static int check_gpu(const OpTest *t, const HostSet *h, Ctx *cpu, Ctx *gpu) {
    const OpCase *c = t->c;
    double tol = c->tol_gpu > 0 ? c->tol_gpu : 1e-2, tol_g = c->tol_gpu_grad > 0 ? c->tol_gpu_grad : 1e-2;
    Result ref = run_on(t, h, cpu), got = run_on(t, h, gpu);
    int pass = 1;
    double worst_out = 0.0, worst_grad = 0.0;
    char where[160] = "";
    for (int i = 0; i < t->n_out; i++) {
        double e = err_ratio(got.out[i], ref.out[i], arg_numel(&t->out[i]));
        if (e > worst_out) worst_out = e;
        if (!(e <= tol)) pass = 0, snprintf(where, sizeof where, "output %s ratio %.3g", t->out[i].name, e);
    }
    for (int i = 0; i < t->n_in; i++) {
        if (!t->in[i].grad) continue;
        double e = err_ratio(got.din[i], ref.din[i], arg_numel(&t->in[i]));
        if (e > worst_grad) worst_grad = e;
        if (!(e <= tol_g)) pass = 0, snprintf(where, sizeof where, "gradient of %s ratio %.3g", t->in[i].name, e);
    }
    printf("  %-28s shape %d  gpu vs cpu: out %.2e  grad %.2e  %s%s%s\n", c->name, t->shape_index, worst_out,
           worst_grad, pass ? "ok" : "FAIL", pass ? "" : ": ", where);
    result_free(t, &ref);
    result_free(t, &got);
    return pass;
}

static void perf_case(const OpTest *t, const HostSet *h, Ctx *ctx) {
    Result warm = run_on(t, h, ctx);
    result_free(t, &warm);
    int reps = 5;
    double t0 = gk_now();
    for (int r = 0; r < reps; r++) {
        Result x = run_on(t, h, ctx);
        result_free(t, &x);
    }
    printf("  %-28s shape %d  %s: %.3f ms per forward+backward (with transfers)\n", t->c->name, t->shape_index,
           ctx->device == DEV_CUDA ? "gpu" : "cpu", 1e3 * (gk_now() - t0) / reps);
}

int harness_run(const OpCase *const *cases, int n_cases, int gpu, int perf, const char *filter) {
    Ctx cpu = ctx_cpu(), dev = ctx_cpu();
    if (gpu) {
        if (cuda_device_count() == 0) {
            printf("no CUDA device: GPU op tests skipped\n");
            exit(SKIP_CODE);
        }
        GkErr err;
        if (ctx_cuda_create(&dev, 0, &err) != 0) gk_die("%s", err.msg);
    }
    int failures = 0, checks = 0;
    for (int ci = 0; ci < n_cases; ci++) {
        const OpCase *c = cases[ci];
        if (filter && !strstr(c->name, filter)) continue;
        if (gpu && !c->has_cuda) continue;
        for (int s = 0; s < c->n_shapes; s++) {
            if (perf && s != c->n_shapes - 1) continue;
            OpTest t = {0};
            t.c = c;
            t.shape_index = s;
            c->setup(&t, s);
            if (t.gpu_only && !gpu && !perf) continue;
            HostSet h = make_inputs(&t, gpu);
            if (perf) {
                perf_case(&t, &h, gpu ? &dev : &cpu);
            } else {
                int ok = gpu ? check_gpu(&t, &h, &cpu, &dev) : check_cpu(&t, &h, &cpu);
                failures += !ok;
                checks++;
            }
            free_inputs(&t, &h);
        }
    }
    if (!perf) printf("%s op tests: %d checks, %d failed\n", gpu ? "GPU" : "CPU", checks, failures);
    ctx_destroy(&cpu);
    if (gpu) ctx_destroy(&dev);
    return failures;
}
