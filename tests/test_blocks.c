/* test_blocks: each block of vision/ on its own, and the data-movement ops it adds (seq_ops.h).
 * - Blocks (CPU): the stem, ConvBlock (with and without layer scale, drop path per image) and the
 *   transformer-style block with each mixer (attention; Mamba, also with more channels than a CPU task
 *   holds and sequences over several scan chunks; GKA causal with the output gate; GKA bidirectional-sum),
 *   with layer scale and drop path per window sequence. The blocks are compositions of ops whose CPU twins
 *   the op harness checks in float64 (selective_scan included), and the GKA layer is checked in float64 by
 *   test_gka_layer, so what is tested here is the wiring; a wiring error gives errors of order one.
 *   Every parameter gradient and the input gradient against fourth-order central differences of the
 *   float32 loss sum(y * r) along one random direction per tensor, step 1e-2 of the tensor's rms.
 *   Error = |fd - g.u| / (|g| |u| + 1e-3 S), S the block's largest |g| |u| (a conv bias before a
 *   training-mode BatchNorm has no gradient at all, and its differences are rounding). Bound 3e-3; measured
 *   worst 9.5e-4 (GKA), 6e-4 elsewhere. Float32 differences need tame settings, measured: at step 1e-3 the
 *   loss's rounding dominates, at 3e-2 the curvature; the stem's BatchNorm biases are placed so that no
 *   ReLU input sits next to its kink; GKA runs with ridge ratio 1, where its 30 Chebyshev iterations
 *   converge (so its backward, the exact-solve gradient, is the derivative of its forward) and the solve's
 *   float32 rounding stays out of the differences (at 0.02 it alone moves them by 1e-2).
 * - The Mamba mixer's forward against a float64 loop written from spec 2.7 (the quirks included: the dt
 *   bias twice, the non-causal convs on both halves, [y | z'] into out_proj): error ratio < 1e-5.
 * - seq_ops (op harness): channel_concat, channel_split, token_reverse against float64 loops and finite
 *   differences on the CPU; with --gpu their CUDA twins against the CPU (exit 77 without a GPU). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "blocks.h"
#include "core.h"
#include "gka_inputs.h"
#include "harness.h"
#include "seq_ops.h"

/* ---- seq_ops through the op harness ------------------------------------------------------------------- */

static const int cat_shapes[][3] = {{3, 5, 2}, {1, 1, 1}, {4, 7, 9}, {2, 160, 160}, {512, 160, 160}};
#define CAT_GPU_ONLY 3

static void cat_setup(OpTest *t, int s) {
    const int *c = cat_shapes[s];
    t->gpu_only = s >= CAT_GPU_ONLY;
    arg_in(t, "a", ARG_ACT, 1, 0, 0, 2, c[0], c[1]);
    arg_in(t, "b", ARG_ACT, 1, 0, 0, 2, c[0], c[2]);
    arg_out(t, "out", ARG_ACT, 1, 2, c[0], c[1] + c[2]);
}

static void cat_forward64(const OpTest *t, double **out, double *const *in) {
    const int *c = cat_shapes[t->shape_index];
    for (int m = 0; m < c[0]; m++)
        for (int j = 0; j < c[1] + c[2]; j++)
            out[0][m * (c[1] + c[2]) + j] = j < c[1] ? in[0][m * c[1] + j] : in[1][m * c[2] + j - c[1]];
}

static void cat_run(const OpTest *t, Tensor *out, Tensor *in, Tensor *dout, Tensor *din, Ctx *ctx) {
    (void)t;
    channel_concat(out[0], in[0], in[1], ctx);
    if (tensor_present(dout[0])) channel_split(din[0], din[1], dout[0], ctx);
}

static void split_setup(OpTest *t, int s) {
    const int *c = cat_shapes[s];
    t->gpu_only = s >= CAT_GPU_ONLY;
    arg_in(t, "inp", ARG_ACT, 1, 0, 0, 3, 1, c[0], c[1] + c[2]);
    arg_out(t, "a", ARG_ACT, 1, 3, 1, c[0], c[1]);
    arg_out(t, "b", ARG_ACT, 1, 3, 1, c[0], c[2]);
}

static void split_forward64(const OpTest *t, double **out, double *const *in) {
    const int *c = cat_shapes[t->shape_index];
    for (int m = 0; m < c[0]; m++)
        for (int j = 0; j < c[1] + c[2]; j++) {
            double v = in[0][m * (c[1] + c[2]) + j];
            if (j < c[1])
                out[0][m * c[1] + j] = v;
            else
                out[1][m * c[2] + j - c[1]] = v;
        }
}

static void split_run(const OpTest *t, Tensor *out, Tensor *in, Tensor *dout, Tensor *din, Ctx *ctx) {
    (void)t;
    channel_split(out[0], out[1], in[0], ctx);
    if (tensor_present(dout[0])) channel_concat(din[0], dout[0], dout[1], ctx);
}

static const int rev_shapes[][3] = {{2, 5, 3}, {1, 1, 4}, {3, 16, 7}, {64, 196, 160}};
#define REV_GPU_ONLY 3

static void rev_setup(OpTest *t, int s) {
    const int *c = rev_shapes[s];
    t->gpu_only = s >= REV_GPU_ONLY;
    arg_in(t, "inp", ARG_ACT, 1, 0, 0, 3, c[0], c[1], c[2]);
    arg_out(t, "out", ARG_ACT, 1, 3, c[0], c[1], c[2]);
}

static void rev_forward64(const OpTest *t, double **out, double *const *in) {
    const int *c = rev_shapes[t->shape_index];
    for (int s = 0; s < c[0]; s++)
        for (int l = 0; l < c[1]; l++)
            for (int j = 0; j < c[2]; j++)
                out[0][((int64_t)s * c[1] + l) * c[2] + j] =
                    in[0][((int64_t)s * c[1] + c[1] - 1 - l) * c[2] + j];
}

static void rev_run(const OpTest *t, Tensor *out, Tensor *in, Tensor *dout, Tensor *din, Ctx *ctx) {
    (void)t;
    token_reverse(out[0], in[0], ctx);
    if (tensor_present(dout[0])) token_reverse(din[0], dout[0], ctx);
}

static const OpCase case_concat = {.name = "channel_concat",
                                   .n_shapes = 5,
                                   .setup = cat_setup,
                                   .forward64 = cat_forward64,
                                   .run = cat_run,
                                   .has_cuda = 1};
static const OpCase case_split = {.name = "channel_split",
                                  .n_shapes = 5,
                                  .setup = split_setup,
                                  .forward64 = split_forward64,
                                  .run = split_run,
                                  .has_cuda = 1};
static const OpCase case_reverse = {.name = "token_reverse",
                                    .n_shapes = 4,
                                    .setup = rev_setup,
                                    .forward64 = rev_forward64,
                                    .run = rev_run,
                                    .has_cuda = 1};

/* ---- a block on its own ----------------------------------------------------------------------------------
 */

typedef enum { B_STEM, B_CONV, B_TBLOCK } BlockKind;

typedef struct {
    const char *name;
    BlockKind kind;
    int B, H, W, C;       /* maps: B x H x W x C; sequences: S = B, L = H, C */
    int in_chans, stride; /* stem */
    float layer_scale, drop_path;
    MixerSpec mix;
} BlockCase;

typedef struct {
    const BlockCase *bc;
    ParamTable pt, bt;
    float *p, *g, *buf;
    Stem stem;
    ConvBlock cb;
    TBlock tb;
    Arena arena;
    Tensor g0, g1; /* the stem's backward scratch */
    Ctx ctx;
} Rig;

static const int64_t *in_shape(const BlockCase *c, int64_t *s, int *nd) {
    if (c->kind == B_TBLOCK)
        s[0] = c->B, s[1] = c->H, s[2] = c->C, *nd = 3;
    else
        s[0] = c->B, s[1] = c->H, s[2] = c->W, s[3] = c->kind == B_STEM ? c->in_chans : c->C, *nd = 4;
    return s;
}

static void rig_layout(Rig *r, Arena *a) {
    const BlockCase *c = r->bc;
    if (c->kind == B_STEM) {
        stem_setup(&r->stem, a, c->B, c->H, c->W);
        int64_t n = tensor_numel(r->stem.y0) > tensor_numel(r->stem.y3) ? tensor_numel(r->stem.y0)
                                                                        : tensor_numel(r->stem.y3);
        r->g0 = act_new(a, 1, &n), r->g1 = act_new(a, 1, &n);
    } else if (c->kind == B_CONV) {
        convblock_setup(&r->cb, a, c->B, c->H, c->W);
        convblock_setup_scratch(&r->cb, a, c->B, c->H, c->W);
    } else {
        tblock_setup(&r->tb, a, c->B, c->H, 1);
        tblock_setup_scratch(&r->tb, a, c->B, c->H);
    }
}

static void rig_init(Rig *r, const BlockCase *c, uint64_t seed) {
    memset(r, 0, sizeof *r);
    r->bc = c;
    r->ctx = ctx_cpu();
    if (c->kind == B_STEM)
        stem_declare(&r->stem, &r->pt, &r->bt, c->in_chans, 6, c->C, c->stride);
    else if (c->kind == B_CONV)
        convblock_declare(&r->cb, &r->pt, &r->bt, "b.", c->C, c->layer_scale, c->drop_path, 3);
    else
        tblock_declare(&r->tb, &r->pt, "b.", &c->mix, 2.0f, c->layer_scale, c->drop_path, 3);
    r->p = gi_alloc(r->pt.total), r->g = gi_alloc(r->pt.total), r->buf = gi_alloc(r->bt.total + 1);
    params_init(&r->pt, r->p, seed);
    params_init(&r->bt, r->buf, seed);
    /* signal everywhere: norms, biases and layer scales away from their constant initial values, and
     * projections 3x larger (std 0.06), so a small block's output depends on every parameter */
    for (int i = 0; i < r->pt.n; i++) {
        const ParamEntry *e = &r->pt.e[i];
        for (size_t k = 0; k < e->numel; k++) {
            float z = (float)gi_normal(seed, 100 + (uint32_t)i, k);
            if (e->init == INIT_ZERO || e->init == INIT_ONE) r->p[e->offset + k] += 0.3f * z;
            if (e->init == INIT_TRUNC_NORMAL) r->p[e->offset + k] *= 3.0f;
        }
    }
    Binder b = {&r->pt, &r->bt, r->p, r->p, r->g, r->buf, DEV_CPU};
    if (c->kind == B_STEM)
        stem_bind(&r->stem, &b);
    else if (c->kind == B_CONV)
        convblock_bind(&r->cb, &b);
    else
        tblock_bind(&r->tb, &b);
    Arena dry = arena_dry(DEV_CPU);
    rig_layout(r, &dry);
    r->arena = arena_create(DEV_CPU, dry.peak);
    rig_layout(r, &r->arena);
}

static void rig_free(Rig *r) {
    arena_destroy(&r->arena);
    params_free(&r->pt), params_free(&r->bt);
    free(r->p), free(r->g), free(r->buf);
    ctx_destroy(&r->ctx);
}

static const Pass PASS = {1, 0x5eed, 17};

/* y = block(x); returns the output tensor (inside the rig). */
static Tensor rig_forward(Rig *r, Tensor x) {
    switch (r->bc->kind) {
    case B_STEM:
        stem_forward(&r->stem, x, &PASS, &r->ctx);
        return r->stem.y4;
    case B_CONV:
        convblock_forward(&r->cb, x, &PASS, &r->ctx);
        return r->cb.out;
    default:
        tblock_forward(&r->tb, x, &PASS, &r->ctx);
        return r->tb.out;
    }
}

/* dx from dy (dy is used as the residual stream's gradient and overwritten by the blocks that update it). */
static void rig_backward(Rig *r, Tensor dx, Tensor dy, Tensor x) {
    switch (r->bc->kind) {
    case B_STEM:
        stem_backward(&r->stem, dx, dy, r->g0, r->g1, x, &r->ctx);
        break;
    case B_CONV:
        convblock_backward(&r->cb, dy, &PASS, &r->ctx), memcpy(dx.data, dy.data, tensor_bytes(dx));
        break;
    default:
        tblock_backward(&r->tb, dy, &PASS, &r->ctx), memcpy(dx.data, dy.data, tensor_bytes(dx));
        break;
    }
}

static double rig_loss(Rig *r, Tensor x, const float *R) {
    Tensor y = rig_forward(r, x);
    double L = 0.0;
    for (int64_t i = 0; i < tensor_numel(y); i++)
        L += (double)tensor_f32(y)[i] * R[i];
    return L;
}

#define BLOCK_TOL 3e-3

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Finite differences across a ReLU kink measure neither side's derivative. For each ReLU BatchNorm of the
 * stem, in order, sets the BN bias of every channel so that zero falls in the middle of the widest gap
 * between the channel's normalised values (within +-1): no pre-activation is then near the kink. */
static void clear_kinks(Rig *r, Tensor x) {
    Bn *bns[2] = {&r->stem.bn1, &r->stem.bn4};
    for (int q = 0; q < 2; q++) {
        rig_forward(r, x);
        const Bn *n = bns[q];
        const Tensor in = q == 0 ? r->stem.y0 : r->stem.y3;
        const int C = n->C;
        const int64_t M = tensor_numel(in) / C;
        double *v = mallocCheck((size_t)M * sizeof(double));
        float *bias = r->p + r->pt.e[n->i_b].offset;
        for (int c = 0; c < C; c++) {
            for (int64_t m = 0; m < M; m++)
                v[m] = (tensor_f32(in)[m * C + c] - tensor_f32(n->mean)[c]) * tensor_f32(n->rstd)[c] *
                       tensor_f32(n->w)[c];
            qsort(v, (size_t)M, sizeof(double), cmp_double);
            double best = 0.0, mid = 0.0;
            for (int64_t m = 0; m + 1 < M; m++) {
                double lo = v[m] > -1.0 ? v[m] : -1.0, hi = v[m + 1] < 1.0 ? v[m + 1] : 1.0;
                if (hi - lo > best) best = hi - lo, mid = 0.5 * (lo + hi);
            }
            bias[c] = (float)-mid;
        }
        free(v);
    }
}

static int check_block(const BlockCase *c, uint64_t seed) {
    Rig r;
    rig_init(&r, c, seed);
    int64_t xs[4];
    int nd;
    in_shape(c, xs, &nd);
    Tensor x = tensor_make(NULL, DT_F32, DEV_CPU, nd, xs);
    const size_t nx = (size_t)tensor_numel(x);
    float *xd = gi_alloc(nx), *dxd = gi_alloc(nx);
    x.data = xd;
    for (size_t i = 0; i < nx; i++)
        xd[i] = (float)gi_normal(seed, 7, i);
    if (c->kind == B_STEM) clear_kinks(&r, x);
    Tensor y = rig_forward(&r, x);
    const size_t ny = (size_t)tensor_numel(y);
    float *R = gi_alloc(ny), *dy = gi_alloc(ny);
    for (size_t i = 0; i < ny; i++)
        R[i] = dy[i] = (float)gi_normal(seed, 8, i);
    Tensor dyt = tensor_make(dy, DT_F32, DEV_CPU, y.ndim, y.shape),
           dx = tensor_make(dxd, DT_F32, DEV_CPU, nd, xs);
    rig_backward(&r, dx, dyt, x);
    /* the directional derivative of every tensor (parameters, then the input) by the backward and by
     * differences: fourth-order central differences, fd = (8 (L(h) - L(-h)) - (L(2h) - L(-2h))) / 12h */
    const int nt = r.pt.n + 1;
    double *gus = mallocCheck((size_t)nt * sizeof(double)), *fds = mallocCheck((size_t)nt * sizeof(double));
    double *scale = mallocCheck((size_t)nt * sizeof(double)), S = 0.0;
    for (int i = 0; i < nt; i++) {
        const int is_x = i == r.pt.n;
        const size_t n = is_x ? nx : r.pt.e[i].numel;
        float *base = is_x ? xd : r.p + r.pt.e[i].offset;
        const float *g = is_x ? dxd : r.g + r.pt.e[i].offset;
        float *u = gi_alloc(n), *save = gi_alloc(n);
        double rms = 0.0, gu = 0.0, gn = 0.0, un = 0.0, L[4];
        for (size_t k = 0; k < n; k++)
            rms += (double)base[k] * base[k];
        rms = sqrt(rms / (double)n);
        const double h = 1e-2 * (rms > 1e-2 ? rms : 1e-2), steps[4] = {h, -h, 2 * h, -2 * h};
        for (size_t k = 0; k < n; k++) {
            u[k] = (float)gi_normal(seed, 200 + (uint32_t)i, k);
            gu += (double)g[k] * u[k], gn += (double)g[k] * g[k], un += (double)u[k] * u[k];
        }
        memcpy(save, base, n * sizeof(float));
        for (int j = 0; j < 4; j++) {
            for (size_t k = 0; k < n; k++)
                base[k] = (float)(save[k] + steps[j] * u[k]);
            L[j] = rig_loss(&r, x, R);
        }
        memcpy(base, save, n * sizeof(float));
        gus[i] = gu, fds[i] = (8.0 * (L[0] - L[1]) - (L[2] - L[3])) / (12.0 * h), scale[i] = sqrt(gn * un);
        if (scale[i] > S) S = scale[i];
        free(u), free(save);
    }
    double worst = 0.0;
    int ok = 1;
    for (int i = 0; i < nt; i++) {
        /* relative to |g| |u|, or to 1e-4 of the block's largest directional derivative for tensors below it
         * (a conv bias before a training-mode BatchNorm has none at all: BN removes it) */
        const double err = fabs(fds[i] - gus[i]) / (scale[i] + 1e-3 * S);
        if (err > worst) worst = err;
        if (!(err < BLOCK_TOL)) {
            ok = 0;
            printf("    %s: difference %.6g, backward %.6g (err %.2e)\n",
                   i == r.pt.n ? "input" : r.pt.e[i].name, fds[i], gus[i], err);
        }
    }
    free(gus), free(fds), free(scale);
    printf("  %-40s %2d tensors + input: worst %.2e  %s\n", c->name, r.pt.n, worst, ok ? "ok" : "FAIL");
    free(xd), free(dxd), free(R), free(dy);
    rig_free(&r);
    return ok;
}

/* ---- the MambaVision mixer's forward in float64, from spec gkavision.md 2.7 ---------------------------- */

static double silu64(double v) {
    return v / (1.0 + exp(-v));
}

/* out[S, L, C] from u[S, L, C]; P: the block's parameters, found by name under "b.mixer.". */
static void mamba64(const ParamTable *pt, const float *P, const float *u, double *out, int S, int L, int C) {
    const int Ch = C / 2, R = (C + 15) / 16, N = 8;
#define W(name) (P + pt->e[params_find(pt, "b.mixer." name)].offset)
    const float *Win = W("in_proj.weight"), *Wxp = W("x_proj.weight"), *Wdt = W("dt_proj.weight");
    const float *bdt = W("dt_proj.bias"), *Alog = W("A_log"), *Dp = W("D"), *Wout = W("out_proj.weight");
    const float *wcx = W("conv1d_x.weight"), *wcz = W("conv1d_z.weight");
#undef W
    double *xz = calloc((size_t)L * C, sizeof(double)), *xc = calloc((size_t)L * Ch, sizeof(double));
    double *zc = calloc((size_t)L * Ch, sizeof(double)),
           *dbc = calloc((size_t)L * (R + 2 * N), sizeof(double));
    double *yz = calloc((size_t)L * C, sizeof(double)), h[8];
    for (int s = 0; s < S; s++) {
        const float *us = u + (size_t)s * L * C;
        for (int t = 0; t < L; t++) /* 1. in_proj, x = first half, z = second half */
            for (int o = 0; o < C; o++) {
                double a = 0.0;
                for (int i = 0; i < C; i++)
                    a += (double)us[t * C + i] * Win[o * C + i];
                xz[t * C + o] = a;
            }
        for (int t = 0; t < L; t++) /* 2. "same" width-3 depth-wise convs, no bias, then SiLU */
            for (int d = 0; d < Ch; d++) {
                double ax = 0.0, az = 0.0;
                for (int i = 0; i < 3; i++) {
                    int ts = t - 1 + i;
                    if (ts < 0 || ts >= L) continue;
                    ax += wcx[d * 3 + i] * xz[ts * C + d];
                    az += wcz[d * 3 + i] * xz[ts * C + Ch + d];
                }
                xc[t * Ch + d] = silu64(ax), zc[t * Ch + d] = silu64(az);
            }
        for (int t = 0; t < L; t++) /* 3. [dt_low | Bm | Cm] = x' W_xproj^T */
            for (int o = 0; o < R + 2 * N; o++) {
                double a = 0.0;
                for (int i = 0; i < Ch; i++)
                    a += xc[t * Ch + i] * Wxp[o * Ch + i];
                dbc[t * (R + 2 * N) + o] = a;
            }
        for (int d = 0; d < Ch; d++) { /* 4-7. dt_proj, the bias a second time, the scan */
            for (int n = 0; n < N; n++)
                h[n] = 0.0;
            for (int t = 0; t < L; t++) {
                const double *row = dbc + t * (R + 2 * N);
                double pre = bdt[d];
                for (int k = 0; k < R; k++)
                    pre += row[k] * Wdt[d * R + k];
                double v = pre + bdt[d], delta = v > 20.0 ? v : log1p(exp(v)), y = Dp[d] * xc[t * Ch + d];
                for (int n = 0; n < N; n++) {
                    h[n] = exp(-delta * exp((double)Alog[d * N + n])) * h[n] +
                           delta * row[R + n] * xc[t * Ch + d];
                    y += row[R + N + n] * h[n];
                }
                yz[t * C + d] = y; /* 8. [y | z'] */
                yz[t * C + Ch + d] = zc[t * Ch + d];
            }
        }
        for (int t = 0; t < L; t++) /* 9. out_proj */
            for (int o = 0; o < C; o++) {
                double a = 0.0;
                for (int i = 0; i < C; i++)
                    a += yz[t * C + i] * Wout[o * C + i];
                out[((size_t)s * L + t) * C + o] = a;
            }
    }
    free(xz), free(xc), free(zc), free(dbc), free(yz);
}

/* The Mamba block's mixer output (from its saved LN output) against the float64 mixer. */
static int check_mamba_forward(const BlockCase *c, uint64_t seed) {
    Rig r;
    rig_init(&r, c, seed);
    const size_t n = (size_t)c->B * c->H * c->C;
    float *x = gi_alloc(n), *ref = gi_alloc(n);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)gi_normal(seed, 7, i);
    rig_forward(&r, tensor_3d(x, DT_F32, DEV_CPU, c->B, c->H, c->C));
    double *out = mallocCheck(n * sizeof(double));
    mamba64(&r.pt, r.p, tensor_f32(r.tb.ln1), out, c->B, c->H, c->C);
    for (size_t i = 0; i < n; i++)
        ref[i] = (float)out[i];
    double e = err_ratio_f(tensor_f32(r.tb.m), ref, n);
    int ok = e < 1e-5;
    printf("  %-40s forward vs float64 spec 2.7: error ratio %.2e  %s\n", c->name, e, ok ? "ok" : "FAIL");
    free(x), free(ref), free(out);
    rig_free(&r);
    return ok;
}

static MixerSpec gka_spec(int C, int H, int K, int gate, int bidir) {
    MixerSpec s = {MIX_GKA, C, 0, {0}, bidir};
    gka_config_defaults(&s.gka, C, H, K);
    s.gka.use_gate = gate;
    s.gka.ridge_ratio = 1; /* well conditioned: 30 iterations converge, float32 rounding stays small */
    return s;
}

int main(int argc, char **argv) {
    int gpu = argc > 1 && !strcmp(argv[1], "--gpu");
    const OpCase *const vision_ops[] = {&case_concat, &case_split, &case_reverse};
    int fails = harness_run(vision_ops, 3, gpu, 0, NULL);
    if (gpu) return fails ? 1 : 0;
    const MixerSpec attn = {MIX_ATTENTION, 16, 2, {0}, 0}, mamba = {MIX_MAMBA, 16, 0, {0}, 0};
    const MixerSpec mamba_wide = {MIX_MAMBA, 40, 0, {0}, 0};
    const BlockCase cases[] = {
        {"stem, stride 4, 3 channels, 9x11", B_STEM, 2, 9, 11, 12, 3, 4, 0, 0, {0}},
        {"stem, stride 1, 1 channel, 6x5", B_STEM, 3, 6, 5, 8, 1, 1, 0, 0, {0}},
        {"ConvBlock C 8, drop path 0.4", B_CONV, 4, 5, 6, 8, 0, 0, 0.0f, 0.4f, {0}},
        {"ConvBlock C 6, layer scale", B_CONV, 2, 4, 3, 6, 0, 0, 0.5f, 0.0f, {0}},
        {"block: attention, layer scale, drop path", B_TBLOCK, 6, 9, 0, 16, 0, 0, 0.5f, 0.3f, attn},
        {"block: Mamba, L 37 (3 scan chunks)", B_TBLOCK, 4, 37, 0, 16, 0, 0, 0.0f, 0.3f, mamba},
        {"block: Mamba, C 40 (Ch 20, R 3)", B_TBLOCK, 2, 7, 0, 40, 0, 0, 0.7f, 0.0f, mamba_wide},
        {"block: GKA causal, output gate", B_TBLOCK, 3, 11, 0, 16, 0, 0, 0.5f, 0.3f,
         gka_spec(16, 2, 4, 1, 0)},
        {"block: GKA bidirectional-sum", B_TBLOCK, 3, 9, 0, 16, 0, 0, 0.0f, 0.3f, gka_spec(16, 2, 4, 0, 1)},
    };
    const int n = (int)(sizeof cases / sizeof cases[0]);
    printf("blocks, CPU (float32 directional differences):\n");
    double t0 = gk_now();
    for (int i = 0; i < n; i++)
        fails += !check_block(&cases[i], 500 + (uint64_t)i);
    for (int i = 0; i < n; i++)
        if (cases[i].kind == B_TBLOCK && cases[i].mix.kind == MIX_MAMBA)
            fails += !check_mamba_forward(&cases[i], 900);
    printf("test_blocks: %d failures (%.1f s)\n", fails, gk_now() - t0);
    return fails ? 1 : 0;
}
