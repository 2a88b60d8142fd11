/* bench_kernels: the kernel lab for the memory-bound ops of a GKAVision-T training step at batch 256. Each
 * CUDA twin is timed (CUDA events on the op's stream, 5 warm-up runs, median of 50) at the sizes the step
 * runs it, its achieved bandwidth computed from the bytes it must move at the least (counted in the table
 * below, per pass over memory), and printed beside the device's copy bandwidth (cudaMemcpy device to device
 * of 1 GiB, read + write counted) as a percentage; the target is 70% for every elementwise or
 * normalisation op. Before each timed run a read-only pass over 2x the L2 size evicts the previous run's
 * data, so no op is timed from cache; that pass is queued ahead of the timed work, so the GPU never waits on
 * the host inside a timing. Usage: bench_kernels [--batch B] [--reps N]. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "context.h"
#include "core.h"
#include "ops.h"
#include "optim.h"
#include "philox.h"
#ifdef GKA_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "cuda/cuda_api.h"
#endif

#define WARMUP 5
#define FILL_CHUNK ((size_t)1 << 22)
#define TARGET_PCT 70.0

#ifdef GKA_HAVE_CUDA
/* Everything the timed runs share; every op's argument block starts with a pointer to it. */
typedef struct {
    Ctx ctx;
    cudaStream_t stream;
    float *flush; /* 2x the L2 size, read before each timed run */
    size_t flush_n;
    bf16_t *pattern; /* FILL_CHUNK random bf16 values, tiled over every filled tensor */
    double copy_gbps;
    int reps;
} Lab;

static void cudaOk(cudaError_t e, const char *what) {
    if (e != cudaSuccess) gk_die("%s: %s", what, cudaGetErrorString(e));
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

typedef void (*RunFn)(void *arg);

/* Median milliseconds of lab->reps runs of fn(arg), each after the L2-evicting read pass. */
static float time_ms(Lab *lab, RunFn fn, void *arg) {
    int reps = lab->reps;
    cudaEvent_t e0, e1;
    cudaOk(cudaEventCreate(&e0), "event"), cudaOk(cudaEventCreate(&e1), "event");
    float *ms = mallocCheck((size_t)reps * sizeof(float));
    double *sink = dev_malloc(&lab->ctx, sizeof(double));
    for (int r = -WARMUP; r < reps; r++) {
        global_norm_sq_cuda(sink, lab->flush, lab->flush_n, lab->ctx.cuda);
        cudaOk(cudaEventRecord(e0, lab->stream), "record");
        fn(arg);
        cudaOk(cudaEventRecord(e1, lab->stream), "record");
        cudaOk(cudaEventSynchronize(e1), "synchronize");
        if (r >= 0) cudaOk(cudaEventElapsedTime(&ms[r], e0, e1), "elapsed");
    }
    qsort(ms, (size_t)reps, sizeof(float), cmp_float);
    float med = ms[reps / 2];
    free(ms);
    dev_free(&lab->ctx, sink);
    cudaOk(cudaEventDestroy(e0), "event"), cudaOk(cudaEventDestroy(e1), "event");
    return med;
}

/* ---- device tensors with random contents ----------------------------------------------------------------
 */

static Tensor dev_tensor(Lab *lab, DType dt, int ndim, const int64_t *shape) {
    Tensor t = tensor_make(NULL, dt, DEV_CUDA, ndim, shape);
    t.data = dev_malloc(&lab->ctx, tensor_bytes(t));
    return t;
}

static Tensor bf16_random(Lab *lab, int ndim, const int64_t *shape) {
    Tensor t = dev_tensor(lab, DT_BF16, ndim, shape);
    size_t n = (size_t)tensor_numel(t);
    for (size_t i = 0; i < n; i += FILL_CHUNK)
        cuda_copy((bf16_t *)t.data + i, lab->pattern,
                  (n - i < FILL_CHUNK ? n - i : FILL_CHUNK) * sizeof(bf16_t));
    return t;
}

static Tensor const_vec(Lab *lab, DType dt, int64_t n, float value) {
    Tensor t = dev_tensor(lab, dt, 1, &n);
    float *h = mallocCheck((size_t)n * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        h[i] = value;
    tensor_copy(t, tensor_1d(h, DT_F32, DEV_CPU, n), &lab->ctx);
    free(h);
    return t;
}

static void release(Lab *lab, Tensor *ts, int n) {
    for (int i = 0; i < n; i++)
        if (ts[i].data) dev_free(&lab->ctx, ts[i].data);
}

/* ---- the ops ----------------------------------------------------------------------------------------------
 */

static void report(Lab *lab, const char *op, const char *shape, double bytes, float ms, const char *count) {
    double gbps = bytes / (ms * 1e-3) / 1e9, pct = 100.0 * gbps / lab->copy_gbps;
    printf("%-40s %-20s %8.3f %8.0f %7.1f%%%s  %s\n", op, shape, ms, gbps, pct,
           pct < TARGET_PCT ? " <" : "  ", count);
}

enum {
    BN_INP,
    BN_DOUT,
    BN_OUT,
    BN_DINP,
    BN_W,
    BN_B,
    BN_MEAN,
    BN_RSTD,
    BN_RMEAN,
    BN_RVAR,
    BN_DW,
    BN_DB,
    BN_N
};
typedef struct {
    Lab *lab;
    Tensor t[BN_N];
    Act act;
    float eps;
} BnArgs;

static void bn_train(void *a) {
    BnArgs *b = a;
    batchnorm_forward_train(b->t[BN_OUT], b->t[BN_MEAN], b->t[BN_RSTD], b->t[BN_RMEAN], b->t[BN_RVAR],
                            b->t[BN_INP], b->t[BN_W], b->t[BN_B], 0.1f, b->eps, b->act, &b->lab->ctx);
}
static void bn_eval(void *a) {
    BnArgs *b = a;
    batchnorm_forward_eval(b->t[BN_OUT], b->t[BN_INP], b->t[BN_W], b->t[BN_B], b->t[BN_RMEAN], b->t[BN_RVAR],
                           b->eps, b->act, &b->lab->ctx);
}
static void bn_backward(void *a) {
    BnArgs *b = a;
    batchnorm_backward(b->t[BN_DINP], b->t[BN_DW], b->t[BN_DB], b->t[BN_DOUT], b->t[BN_INP], b->t[BN_W],
                       b->t[BN_B], b->t[BN_MEAN], b->t[BN_RSTD], b->act, &b->lab->ctx);
}

static void bench_batchnorm(Lab *lab, const char *where, int64_t M, int64_t C, Act act, float eps) {
    int64_t shape[2] = {M, C};
    BnArgs b = {lab, {{0}}, act, eps};
    b.t[BN_INP] = bf16_random(lab, 2, shape), b.t[BN_DOUT] = bf16_random(lab, 2, shape);
    b.t[BN_OUT] = dev_tensor(lab, DT_BF16, 2, shape), b.t[BN_DINP] = dev_tensor(lab, DT_BF16, 2, shape);
    b.t[BN_W] = const_vec(lab, DT_BF16, C, 1.0f), b.t[BN_B] = const_vec(lab, DT_BF16, C, 0.1f);
    b.t[BN_MEAN] = const_vec(lab, DT_F32, C, 0.0f), b.t[BN_RSTD] = const_vec(lab, DT_F32, C, 1.0f);
    b.t[BN_RMEAN] = const_vec(lab, DT_F32, C, 0.0f), b.t[BN_RVAR] = const_vec(lab, DT_F32, C, 1.0f);
    b.t[BN_DW] = const_vec(lab, DT_F32, C, 0.0f), b.t[BN_DB] = const_vec(lab, DT_F32, C, 0.0f);
    double e = 2.0 * (double)M * C; /* bytes of one bf16 pass over the tensor */
    char sh[32], op[64];
    snprintf(sh, sizeof sh, "[%lld, %lld]", (long long)M, (long long)C);
    snprintf(op, sizeof op, "batchnorm train + %s %s", act_name(act), where);
    report(lab, op, sh, 3 * e, time_ms(lab, bn_train, &b), "stats read + normalise read + write");
    snprintf(op, sizeof op, "batchnorm eval + %s %s", act_name(act), where);
    report(lab, op, sh, 2 * e, time_ms(lab, bn_eval, &b), "read + write");
    snprintf(op, sizeof op, "batchnorm bwd + %s %s", act_name(act), where);
    report(lab, op, sh, 5 * e, time_ms(lab, bn_backward, &b), "(x, dy) read twice + dx write");
    release(lab, b.t, BN_N);
}

enum { LN_INP, LN_DOUT, LN_OUT, LN_DINP, LN_MEAN, LN_RSTD, LN_W, LN_B, LN_DW, LN_DB, LN_N };
typedef struct {
    Lab *lab;
    Tensor t[LN_N];
} LnArgs;

static void ln_forward(void *a) {
    LnArgs *l = a;
    layernorm_forward(l->t[LN_OUT], l->t[LN_MEAN], l->t[LN_RSTD], l->t[LN_INP], l->t[LN_W], l->t[LN_B], 1e-5f,
                      &l->lab->ctx);
}
static void ln_backward(void *a) {
    LnArgs *l = a;
    layernorm_backward(l->t[LN_DINP], l->t[LN_DW], l->t[LN_DB], l->t[LN_DOUT], l->t[LN_INP], l->t[LN_W],
                       l->t[LN_MEAN], l->t[LN_RSTD], &l->lab->ctx);
}

static void bench_layernorm(Lab *lab, const char *where, int64_t M, int64_t C) {
    int64_t shape[2] = {M, C};
    LnArgs l = {lab, {{0}}};
    l.t[LN_INP] = bf16_random(lab, 2, shape), l.t[LN_DOUT] = bf16_random(lab, 2, shape);
    l.t[LN_OUT] = dev_tensor(lab, DT_BF16, 2, shape), l.t[LN_DINP] = dev_tensor(lab, DT_BF16, 2, shape);
    l.t[LN_MEAN] = const_vec(lab, DT_F32, M, 0.0f), l.t[LN_RSTD] = const_vec(lab, DT_F32, M, 1.0f);
    l.t[LN_W] = const_vec(lab, DT_BF16, C, 1.0f), l.t[LN_B] = const_vec(lab, DT_BF16, C, 0.0f);
    l.t[LN_DW] = const_vec(lab, DT_F32, C, 0.0f), l.t[LN_DB] = const_vec(lab, DT_F32, C, 0.0f);
    double e = 2.0 * (double)M * C, stats = 8.0 * M; /* mean and rstd, float32 per row */
    char sh[32], op[64];
    snprintf(sh, sizeof sh, "[%lld, %lld]", (long long)M, (long long)C);
    ln_forward(&l); /* real statistics for the backward */
    snprintf(op, sizeof op, "layernorm fwd %s", where);
    report(lab, op, sh, 2 * e + stats, time_ms(lab, ln_forward, &l), "read + write + stats");
    snprintf(op, sizeof op, "layernorm bwd %s", where);
    report(lab, op, sh, 3 * e + stats, time_ms(lab, ln_backward, &l), "x, dy read + dx write + stats");
    release(lab, l.t, LN_N);
}

enum { RS_OUT, RS_BRANCH, RS_DOUT, RS_DBRANCH, RS_N };
typedef struct {
    Lab *lab;
    Tensor t[RS_N];
    DropPath dp;
} ResArgs;

static void res_forward(void *a) {
    ResArgs *r = a;
    residual_forward(r->t[RS_OUT], r->t[RS_OUT], r->t[RS_BRANCH], TENSOR_NONE, r->dp, &r->lab->ctx);
}
static void res_backward(void *a) {
    ResArgs *r = a;
    residual_backward(r->t[RS_DBRANCH], TENSOR_NONE, r->t[RS_DOUT], r->t[RS_BRANCH], TENSOR_NONE, r->dp,
                      &r->lab->ctx);
}

static void bench_residual(Lab *lab, const char *where, int ndim, const int64_t *shape, float p) {
    ResArgs r = {lab, {{0}}, {p, 31, 1000}};
    r.t[RS_OUT] = bf16_random(lab, ndim, shape), r.t[RS_BRANCH] = bf16_random(lab, ndim, shape);
    r.t[RS_DOUT] = bf16_random(lab, ndim, shape), r.t[RS_DBRANCH] = dev_tensor(lab, DT_BF16, ndim, shape);
    double e = 2.0 * (double)tensor_numel(r.t[RS_OUT]);
    char sh[48], op[64];
    int n = snprintf(sh, sizeof sh, "[%lld", (long long)shape[0]);
    for (int i = 1; i < ndim; i++)
        n += snprintf(sh + n, sizeof sh - (size_t)n, ", %lld", (long long)shape[i]);
    snprintf(sh + n, sizeof sh - (size_t)n, "]");
    snprintf(op, sizeof op, "residual + drop path fwd %s", where);
    report(lab, op, sh, 3 * e, time_ms(lab, res_forward, &r), "res, branch read + out write (in place)");
    snprintf(op, sizeof op, "residual + drop path bwd %s", where);
    report(lab, op, sh, 2 * e, time_ms(lab, res_backward, &r), "dout read + dbranch write");
    release(lab, r.t, RS_N);
}

enum { AT_QKV, AT_DOUT, AT_OUT, AT_DQKV, AT_ATT, AT_DATT, AT_N };
typedef struct {
    Lab *lab;
    Tensor t[AT_N];
    int heads;
} AttArgs;

static void att_forward(void *a) {
    AttArgs *t = a;
    attention_forward(t->t[AT_OUT], t->t[AT_ATT], t->t[AT_QKV], t->heads, &t->lab->ctx);
}
static void att_backward(void *a) {
    AttArgs *t = a;
    attention_backward(t->t[AT_DQKV], t->t[AT_DATT], t->t[AT_DOUT], t->t[AT_QKV], t->t[AT_ATT], t->heads,
                       &t->lab->ctx);
}

/* Attention is not among the lab's targets (it must write and read its float32 probabilities, which ops.h
 * keeps); it is timed for the record, with its bandwidth counted from the bytes it must move. */
static void bench_attention(Lab *lab, const char *where, int64_t S, int64_t L, int64_t C, int heads) {
    AttArgs t = {lab, {{0}}, heads};
    int64_t qs[3] = {S, L, 3 * C}, os[3] = {S, L, C}, as[4] = {S, heads, L, L};
    t.t[AT_QKV] = bf16_random(lab, 3, qs), t.t[AT_DOUT] = bf16_random(lab, 3, os);
    t.t[AT_OUT] = dev_tensor(lab, DT_BF16, 3, os), t.t[AT_DQKV] = dev_tensor(lab, DT_BF16, 3, qs);
    t.t[AT_ATT] = dev_tensor(lab, DT_F32, 4, as), t.t[AT_DATT] = dev_tensor(lab, DT_F32, 4, as);
    double q = 2.0 * S * L * 3 * C, o = 2.0 * S * L * C, p = 4.0 * S * heads * L * L;
    char sh[48], op[64];
    snprintf(sh, sizeof sh, "[%lld, %lld, %lld] %dh", (long long)S, (long long)L, (long long)(3 * C), heads);
    snprintf(op, sizeof op, "attention fwd %s", where);
    report(lab, op, sh, q + o + p, time_ms(lab, att_forward, &t), "qkv read + out, P write");
    snprintf(op, sizeof op, "attention bwd %s", where);
    report(lab, op, sh, 2 * q + o + 4 * p, time_ms(lab, att_backward, &t),
           "qkv, dout read, dqkv write; P x2, dS x2");
    release(lab, t.t, AT_N);
}

typedef struct {
    Lab *lab;
    void *dst, *src;
    size_t bytes;
} CopyArgs;

static void copy_run(void *a) {
    CopyArgs *c = a;
    cudaOk(cudaMemcpyAsync(c->dst, c->src, c->bytes, cudaMemcpyDeviceToDevice, c->lab->stream), "copy");
}

int main(int argc, char **argv) {
    Lab lab = {0};
    int batch = 256;
    lab.reps = 50;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            lab.reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_kernels [--batch B] [--reps N]\n");
            return 2;
        }
    }
    if (batch < 1 || lab.reps < 1) gk_die("--batch and --reps must be positive");
    if (cuda_device_count() == 0) {
        printf("bench_kernels: no CUDA device\n");
        return 1;
    }
    GkErr err;
    if (ctx_cuda_create(&lab.ctx, 0, &err) != 0) gk_die("%s", err.msg);
    lab.stream = (cudaStream_t)cuda_ctx_stream(lab.ctx.cuda);
    int l2 = 0;
    cudaOk(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, 0), "L2 size");
    lab.flush_n = 2 * (size_t)l2 / sizeof(float);
    lab.flush = dev_malloc(&lab.ctx, lab.flush_n * sizeof(float));
    cuda_memset(lab.flush, 0, lab.flush_n * sizeof(float));
    lab.pattern = mallocCheck(FILL_CHUNK * sizeof(bf16_t));
    for (size_t i = 0; i < FILL_CHUNK; i++)
        lab.pattern[i] = f32_to_bf16(-2.0f + 5.0f * philox_u01(philox_draw(11, RNG_TEST, i, 0).v[0]));

    CopyArgs copy = {&lab, NULL, NULL, (size_t)1 << 30};
    copy.dst = dev_malloc(&lab.ctx, copy.bytes), copy.src = dev_malloc(&lab.ctx, copy.bytes);
    cuda_memset(copy.src, 1, copy.bytes);
    float copy_ms = time_ms(&lab, copy_run, &copy);
    lab.copy_gbps = 2.0 * (double)copy.bytes / (copy_ms * 1e-3) / 1e9;
    dev_free(&lab.ctx, copy.dst), dev_free(&lab.ctx, copy.src);
    char name[256];
    printf("device: %s; L2 %d MiB\n", cuda_device_name(lab.ctx.cuda, name, sizeof name), l2 >> 20);
    printf("copy bandwidth (cudaMemcpy D2D of 1 GiB, read + write): %.0f GB/s (%.3f ms); batch %d, median of "
           "%d\n\n",
           lab.copy_gbps, copy_ms, batch, lab.reps);
    printf("%-40s %-20s %8s %8s %8s   %s\n", "op", "shape", "ms", "GB/s", "of copy", "bytes counted");

    int64_t B = batch;
    bench_batchnorm(&lab, "(stem 1)", B * 112 * 112, 32, ACT_RELU, 1e-4f);
    bench_batchnorm(&lab, "(stem 2)", B * 56 * 56, 80, ACT_RELU, 1e-4f);
    bench_batchnorm(&lab, "(level 0)", B * 56 * 56, 80, ACT_GELU_TANH, 1e-5f);
    bench_batchnorm(&lab, "(level 1)", B * 28 * 28, 160, ACT_GELU_TANH, 1e-5f);
    bench_layernorm(&lab, "(level 2)", B * 196, 320);
    int64_t r0[4] = {B, 56, 56, 80}, r1[4] = {B, 28, 28, 160}, r2[3] = {B, 196, 320};
    bench_residual(&lab, "(level 0)", 4, r0, 0.0f);
    bench_residual(&lab, "(level 1)", 4, r1, 0.0267f);
    bench_residual(&lab, "(level 2)", 3, r2, 0.08f);
    bench_attention(&lab, "(level 2)", B, 196, 320, 8);
    bench_attention(&lab, "(level 3)", B, 49, 640, 16);
    printf("\n'<' marks an op below %.0f%% of copy bandwidth.\n", TARGET_PCT);
    free(lab.pattern);
    dev_free(&lab.ctx, lab.flush);
    ctx_destroy(&lab.ctx);
    return 0;
}
#else
int main(void) {
    printf("bench_kernels: this build has no CUDA support\n");
    return 1;
}
#endif
