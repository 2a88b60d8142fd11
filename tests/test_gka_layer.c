/* test_gka_layer: the whole GKA layer (spec gka.md section 2) with every switch.
 * CPU mode: the float32 layer against a float64 layer written here from the definition on the float64 core
 *   reference (gka_ref.c, exact solve): output error ratio < 1e-4, and every gradient against a central
 *   difference of the float64 loss along one random direction per parameter tensor and one for the input,
 *   relative to |g| |u|: < 3e-4, measured worst 8e-5 (num_iter 120 in the float32 layer, so its Chebyshev solve is converged and
 *   its backward is the exact-solve gradient, spec 5.2). Float32 differences are useless here: the solve's
 *   null-space components (~1/(a f), spec 9.2) put noise of ~1e-5 relative into a float32 forward.
 * --gpu: the CUDA layer against the CPU layer on the same bf16-rounded weights and input, with the CPU context
 *   emulating bf16 storage (ctx.emulate_bf16: every activation and activation gradient rounded where the CUDA
 *   path stores bf16), so the comparison measures the kernels: error ratio < 1e-2 for the output, < 2e-2 for
 *   the input gradient (it sums the gate projections' gradients too: measured worst 1.0e-2) and for every
 *   other parameter gradient; the per-head gate vectors, whose gradients are
 *   cancelling sums over tokens, by their largest error over the summed magnitude of their per-token terms.
 *   The gate parameters (b_proj, alpha_proj, a_proj, dt_bias, A_log) get 5e-2: their gradients come from dg,
 *   dalpha and dbeta, which in a layer whose tokens mostly see a rank-deficient H_t (L near K: the first K
 *   tokens of any sequence) inherit the 16-bit split of the iterate on tensor cores, amplified by the iterate's
 *   large null-space part (spec 9.2); measured worst 3.6e-2 (tiny layer, L = 9, K = 8), 1.1e-2 at GKAVision-T
 *   level 2. The core operator alone holds dg to ~1e-4 (test_gka_gpu). The distance to the plain float32 CPU layer is printed too
 *   (information: bf16 storage at about nine points, and parameter gradients that are sums of bf16 terms).
 *   Exit 77 without a GPU. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "arena.h"
#include "context.h"
#include "gka.h"
#include "gka/gka_ref.h"
#include "gka_inputs.h"
#include "params.h"
#ifdef GKA_HAVE_CUDA
#include "cuda/cuda_api.h"
#endif

#define SKIP_CODE 77

typedef struct {
    const char *name;
    GkaConfig cfg;
    int S, L;
} LayerCase;

static LayerCase make_case(const char *name, int d, int H, int K, int V, int S, int L) {
    LayerCase c = {name, {0}, S, L};
    gka_config_defaults(&c.cfg, d, H, K);
    c.cfg.v_head_dim = V;
    return c;
}

/* A layer with its own flat buffers on one device. */
typedef struct {
    ParamTable pt;
    GkaLayer layer;
    float *master, *grads; /* on the device */
    void *weights;         /* = master on the CPU, bf16 copy on CUDA */
    Arena arena;
    Ctx *ctx;
} Rig;

static void rig_init(Rig *r, const LayerCase *lc, const float *host_params, Ctx *ctx) {
    memset(r, 0, sizeof *r);
    r->ctx = ctx;
    gka_layer_declare(&r->layer, &r->pt, "mixer.", &lc->cfg);
    size_t n = r->pt.total;
    Device dev = ctx->device;
    r->master = dev_malloc(ctx, n * sizeof(float));
    r->grads = dev_malloc(ctx, n * sizeof(float));
    tensor_copy(tensor_1d(r->master, DT_F32, dev, (int64_t)n), tensor_1d((void *)host_params, DT_F32, DEV_CPU, (int64_t)n), ctx);
    tensor_fill_bytes(tensor_1d(r->grads, DT_F32, dev, (int64_t)n), 0, ctx);
    if (dev == DEV_CUDA) {
        r->weights = dev_malloc(ctx, n * sizeof(bf16_t));
        tensor_copy(tensor_1d(r->weights, DT_BF16, dev, (int64_t)n), tensor_1d(r->master, DT_F32, dev, (int64_t)n), ctx);
    } else {
        r->weights = r->master;
    }
    gka_layer_bind(&r->layer, &r->pt, r->weights, r->master, r->grads, dev);
    Arena dry = arena_dry(dev);
    gka_layer_setup(&r->layer, &dry, lc->S, lc->L, 1);
    r->arena = arena_create(dev, dry.peak);
    gka_layer_setup(&r->layer, &r->arena, lc->S, lc->L, 1);
}

static void rig_free(Rig *r) {
    arena_destroy(&r->arena);
    if (r->weights != r->master) dev_free(r->ctx, r->weights);
    dev_free(r->ctx, r->master);
    dev_free(r->ctx, r->grads);
    params_free(&r->pt);
}

/* Random parameters: the layer's own initialisation with the projections scaled so that a projection of a
 * unit-variance input has standard deviation ~1.5 at any width (std 0.02 gives ~0.1 for a tiny layer: no
 * signal; scaling a wide layer as much saturates the beta gate at its 1e-6 floor, where x grows to ~1e13,
 * spec 9.2 — a property of the layer, not what a comparison of kernels should probe). */
static float *make_params(const LayerCase *lc, uint64_t seed, size_t *n_out) {
    ParamTable pt = {0};
    GkaLayer tmp;
    gka_layer_declare(&tmp, &pt, "mixer.", &lc->cfg);
    float *p = mallocCheck(pt.total * sizeof(float));
    params_init(&pt, p, seed);
    const float gain = 1.5f / (0.02f * sqrtf((float)lc->cfg.hidden_size));
    for (int i = 0; i < pt.n; i++)
        if (pt.e[i].init == INIT_TRUNC_NORMAL)
            for (size_t k = 0; k < pt.e[i].numel; k++) p[pt.e[i].offset + k] *= gain;
    /* dt_bias and A_log as initialised give decays in [0.2, 1); the norm weight and biases get some spread */
    for (int i = 0; i < pt.n; i++)
        if (pt.e[i].init == INIT_ONE || pt.e[i].init == INIT_ZERO)
            for (size_t k = 0; k < pt.e[i].numel; k++)
                p[pt.e[i].offset + k] += 0.3f * (float)gi_normal(seed, 60 + (uint32_t)i, k);
    *n_out = pt.total;
    params_free(&pt);
    return p;
}

/* ---- the layer in float64, from the definition (spec gka.md 2.1), on the float64 core reference ---- */
static double silu64(double z) { return z / (1.0 + exp(-z)); }
static double sigm64(double z) { return 1.0 / (1.0 + exp(-z)); }
static double softplus64(double z) { return z > 20.0 ? z : log1p(exp(z)); }

/* y[S, L, d] from x[S, L, d] and the parameters P (laid out as the layer's table). */
static void layer64(const GkaLayer *l, const ParamTable *pt, const double *P, const double *x, double *y, int S,
                    int L) {
    const GkaConfig *c = &l->cfg;
    const int d = c->hidden_size, H = c->num_heads, K = c->head_dim, V = gka_V(c), W = c->conv_size;
    const int Hq = gka_Hq(c), Hk = gka_Hk(c), Hv = gka_Hv(c), Cq = Hq * K, Ck = Hk * K, Cv = Hv * V;
    const int Cp = Cq + Ck + Cv, Cc = Cq + Ck + (c->use_v_conv ? Cv : 0);
    const int64_t M = (int64_t)S * L;
    const double *Wp = P + pt->e[l->i_q].offset, *Wc = P + pt->e[l->i_qc].offset;
    double *proj = calloc((size_t)M * Cp, sizeof(double)), *act = calloc((size_t)M * Cp, sizeof(double));
    for (int64_t m = 0; m < M; m++)
        for (int j = 0; j < Cp; j++) {
            double a = 0.0;
            for (int i = 0; i < d; i++) a += x[m * d + i] * Wp[(int64_t)j * d + i];
            proj[m * Cp + j] = a;
        }
    for (int64_t m = 0; m < M; m++) /* causal depthwise conv + SiLU on the first Cc channels */
        for (int j = 0; j < Cp; j++) {
            if (j >= Cc) {
                act[m * Cp + j] = proj[m * Cp + j];
                continue;
            }
            int t = (int)(m % L);
            double a = 0.0;
            for (int i = 0; i < W; i++) {
                int ts = t - (W - 1) + i;
                if (ts >= 0) a += Wc[(int64_t)j * W + i] * proj[(m - t + ts) * Cp + j];
            }
            act[m * Cp + j] = silu64(a);
        }
    int NG = gka_gate_cols(c), cb = -1, ca = -1, cg = -1, n = 0;
    if (c->use_beta_gate) cb = n, n += H;
    if (c->use_alpha_connection) ca = n, n += H;
    if (c->use_forgetting_gate) cg = n;
    double *pre = calloc((size_t)M * (NG ? NG : 1), sizeof(double));
    if (NG) {
        const double *Wg = P + pt->e[l->i_gw0].offset, *bg = P + pt->e[l->i_gb0].offset;
        for (int64_t m = 0; m < M; m++)
            for (int j = 0; j < NG; j++) {
                double a = bg[j];
                for (int i = 0; i < d; i++) a += x[m * d + i] * Wg[(int64_t)j * d + i];
                pre[m * NG + j] = a;
            }
    }
    size_t nt = (size_t)M * H;
    double *q = calloc(nt * K, sizeof(double)), *k = calloc(nt * K, sizeof(double)), *v = calloc(nt * V, sizeof(double));
    double *g = cg >= 0 ? calloc(nt, sizeof(double)) : NULL, *al = ca >= 0 ? calloc(nt, sizeof(double)) : NULL;
    const double *Alog = l->i_alog >= 0 ? P + pt->e[l->i_alog].offset : NULL;
    for (int64_t m = 0; m < M; m++)
        for (int e = 0; e < H; e++) {
            const double *qs = act + m * Cp + (e / (H / Hq)) * K, *ks = act + m * Cp + Cq + (e / (H / Hk)) * K;
            const double *vs = act + m * Cp + Cq + Ck + (e / (H / Hv)) * V;
            double sq = 0.0, sk = 0.0;
            for (int i = 0; i < K; i++) sq += qs[i] * qs[i], sk += ks[i] * ks[i];
            double beta = cb >= 0 ? sigm64(pre[m * NG + cb + e]) + 1e-6 : 1.0;
            size_t me = (size_t)m * H + e;
            for (int i = 0; i < K; i++) {
                q[me * K + i] = qs[i] / sqrt(sq + 1e-6);
                k[me * K + i] = beta * ks[i] / sqrt(sk + 1e-6);
            }
            for (int j = 0; j < V; j++) v[me * V + j] = beta * vs[j];
            if (g) g[me] = -exp(Alog[e]) * softplus64(pre[m * NG + cg + e]);
            if (al) al[me] = sigm64(pre[m * NG + ca + e]);
        }
    GkaRefConfig rc = gka_ref_config_from_op(l->op, 1);
    double *o = calloc(nt * V, sizeof(double));
    gka_ref_forward(o, NULL, NULL, NULL, NULL, q, k, v, g, c->use_forgetting_gate_kk ? g : NULL, al, NULL, NULL, rc,
                    S, L, H, K, V);
    const double *wn = P + pt->e[l->i_norm].offset, *Wo = P + pt->e[l->i_o].offset;
    const double *Wz = l->i_g >= 0 ? P + pt->e[l->i_g].offset : NULL;
    double *on = calloc(nt * V, sizeof(double));
    for (int64_t m = 0; m < M; m++)
        for (int e = 0; e < H; e++) {
            double *oo = o + ((size_t)m * H + e) * V, ss = 0.0;
            for (int j = 0; j < V; j++) ss += oo[j] * oo[j];
            double r = 1.0 / sqrt(ss / V + c->norm_eps);
            for (int j = 0; j < V; j++) {
                double gate = 1.0;
                if (Wz) {
                    double z = 0.0;
                    for (int i = 0; i < d; i++) z += x[m * d + i] * Wz[((int64_t)e * V + j) * d + i];
                    gate = silu64(z);
                }
                on[((size_t)m * H + e) * V + j] = oo[j] * r * wn[j] * gate;
            }
        }
    for (int64_t m = 0; m < M; m++)
        for (int i = 0; i < d; i++) {
            double a = 0.0;
            for (int j = 0; j < H * V; j++) a += on[(size_t)m * H * V + j] * Wo[(int64_t)i * H * V + j];
            y[m * d + i] = a;
        }
    free(proj), free(act), free(pre), free(q), free(k), free(v), free(g), free(al), free(o), free(on);
}

static double loss64(const GkaLayer *l, const ParamTable *pt, const double *P, const double *x, const double *dy,
                     int S, int L) {
    size_t nx = (size_t)S * L * l->cfg.hidden_size;
    double *y = malloc(nx * sizeof(double)), s = 0.0;
    layer64(l, pt, P, x, y, S, L);
    for (size_t i = 0; i < nx; i++) s += y[i] * dy[i];
    free(y);
    return s;
}

/* The float32 CPU layer against the float64 layer: output, and every gradient against a central difference
 * of the float64 loss along one random direction per parameter tensor (and one for the input). */
static int check_cpu(const LayerCase *lc, uint64_t seed) {
    Ctx cpu = ctx_cpu();
    LayerCase c = *lc;
    c.cfg.num_iter = 120; /* converged: the float32 backward is then the exact-solve gradient (spec 5.2) */
    size_t np, nx = (size_t)c.S * c.L * c.cfg.hidden_size;
    float *p = make_params(&c, seed, &np);
    Rig r;
    rig_init(&r, &c, p, &cpu);
    float *x = gi_alloc(nx), *dy = gi_alloc(nx), *dx = gi_alloc(nx), *y = gi_alloc(nx);
    for (size_t i = 0; i < nx; i++) x[i] = (float)gi_normal(seed, 70, i), dy[i] = (float)gi_normal(seed, 71, i);
    Tensor in = tensor_3d(x, DT_F32, DEV_CPU, c.S, c.L, c.cfg.hidden_size);
    gka_layer_forward(&r.layer, tensor_3d(y, DT_F32, DEV_CPU, c.S, c.L, c.cfg.hidden_size), in, &cpu);
    float *dcopy = gi_alloc(nx);
    memcpy(dcopy, dy, nx * sizeof(float));
    gka_layer_backward(&r.layer, tensor_3d(dx, DT_F32, DEV_CPU, c.S, c.L, c.cfg.hidden_size),
                       tensor_3d(dcopy, DT_F32, DEV_CPU, c.S, c.L, c.cfg.hidden_size), in, 0, &cpu);
    double *P = malloc(np * sizeof(double)), *x64 = malloc(nx * sizeof(double)), *dy64 = malloc(nx * sizeof(double));
    double *y64 = malloc(nx * sizeof(double));
    for (size_t i = 0; i < np; i++) P[i] = p[i];
    for (size_t i = 0; i < nx; i++) x64[i] = x[i], dy64[i] = dy[i];
    layer64(&r.layer, &r.pt, P, x64, y64, c.S, c.L);
    float *y64f = gi_alloc(nx);
    for (size_t i = 0; i < nx; i++) y64f[i] = (float)y64[i];
    double e_out = err_ratio_f(y, y64f, nx);
    int ok = e_out < 1e-4;
    if (!ok) printf("    output: error ratio %.3g against float64\n", e_out);
    double worst = 0.0;
    for (int i = 0; i <= r.pt.n; i++) {
        double *base = i < r.pt.n ? P + r.pt.e[i].offset : x64;
        size_t n = i < r.pt.n ? r.pt.e[i].numel : nx;
        const float *gr = i < r.pt.n ? r.grads + r.pt.e[i].offset : dx;
        double *save = malloc(n * sizeof(double)), gu = 0.0, un = 0.0, gn = 0.0;
        memcpy(save, base, n * sizeof(double));
        double *u = malloc(n * sizeof(double));
        for (size_t k = 0; k < n; k++) {
            u[k] = gi_normal(seed, 80 + (uint32_t)i, k);
            gu += gr[k] * u[k], un += u[k] * u[k], gn += (double)gr[k] * gr[k];
        }
        const double h = 1e-6;
        for (size_t k = 0; k < n; k++) base[k] = save[k] + h * u[k];
        double lp = loss64(&r.layer, &r.pt, P, x64, dy64, c.S, c.L);
        for (size_t k = 0; k < n; k++) base[k] = save[k] - h * u[k];
        double lm = loss64(&r.layer, &r.pt, P, x64, dy64, c.S, c.L);
        memcpy(base, save, n * sizeof(double));
        double fd = (lp - lm) / (2.0 * h);
        /* relative to the size the directional derivative has for this gradient (|g| |u|), so a direction
         * that happens to be nearly orthogonal to the gradient is not judged against a tiny number */
        double err = fabs(fd - gu) / (sqrt(gn * un) + 1e-12);
        if (err > worst) worst = err;
        if (!(err < 3e-4)) {
            ok = 0;
            printf("    %s: float64 directional derivative %.9g, float32 backward %.9g (rel err %.2e)\n",
                   i < r.pt.n ? r.pt.e[i].name : "input", fd, gu, err);
        }
        free(save), free(u);
    }
    printf("  %-22s cpu: output vs float64 %.2e; gradients vs float64 differences: worst %.2e  %s\n", lc->name,
           e_out, worst, ok ? "ok" : "FAIL");
    rig_free(&r);
    free(p), free(x), free(dy), free(dx), free(y), free(dcopy), free(P), free(x64), free(dy64), free(y64), free(y64f);
    ctx_destroy(&cpu);
    return ok;
}

#ifdef GKA_HAVE_CUDA
/* For the per-head gate vectors (A_log, dt_bias, b_proj.bias, alpha_proj.bias), whose gradients are sums over
 * all tokens of terms that cancel (an A_log gradient can be 1000 times smaller than what is summed), the
 * largest |per-token term| summed over tokens, from the CPU layer's saved gate gradients; 0 for the others. */
static double gate_scale(const GkaLayer *l, int param) {
    const GkaConfig *c = &l->cfg;
    const int H = c->num_heads, NG = gka_gate_cols(c);
    const int64_t M = (int64_t)l->S * l->L;
    int col0 = -1;
    if (param == l->i_alog) {
        double best = 0.0;
        for (int e = 0; e < H; e++) {
            double s = 0.0;
            for (int64_t m = 0; m < M; m++) s += fabs((double)((float *)l->dg.data)[m * H + e] * ((float *)l->g.data)[m * H + e]);
            best = fmax(best, s);
        }
        return best;
    }
    if (param >= l->i_gb0 && param <= l->i_gb1 && l->i_gb0 >= 0) col0 = (param - l->i_gb0) * H;
    if (col0 < 0) return 0.0;
    double best = 0.0;
    for (int e = 0; e < H; e++) {
        double s = 0.0;
        for (int64_t m = 0; m < M; m++) s += fabs((double)((float *)l->dgpre.data)[m * NG + col0 + e]);
        best = fmax(best, s);
    }
    return best;
}

static int is_gate_param(const GkaLayer *l, int i) {
    return (l->i_gw0 >= 0 && i >= l->i_gw0 && i <= l->i_gw1) || (l->i_gb0 >= 0 && i >= l->i_gb0 && i <= l->i_gb1) ||
           i == l->i_alog;
}

static int check_gpu(const LayerCase *lc, uint64_t seed, Ctx *gpu, int emulate) {
    Ctx cpu = ctx_cpu();
    cpu.emulate_bf16 = emulate;
    size_t np, nx = (size_t)lc->S * lc->L * lc->cfg.hidden_size;
    float *p = make_params(lc, seed, &np);
    for (size_t i = 0; i < np; i++) p[i] = bf16_round(p[i]); /* both twins use the values the GPU holds */
    float *x = gi_alloc(nx), *dy = gi_alloc(nx);
    for (size_t i = 0; i < nx; i++) x[i] = bf16_round((float)gi_normal(seed, 70, i)), dy[i] = bf16_round((float)gi_normal(seed, 71, i));
    Rig rc, rg;
    rig_init(&rc, lc, p, &cpu);
    rig_init(&rg, lc, p, gpu);
    const int S = lc->S, L = lc->L, d = lc->cfg.hidden_size;
    /* CPU */
    float *yc = gi_alloc(nx), *dxc = gi_alloc(nx), *dyc = gi_alloc(nx);
    memcpy(dyc, dy, nx * sizeof(float));
    Tensor xin = tensor_3d(x, DT_F32, DEV_CPU, S, L, d);
    gka_layer_forward(&rc.layer, tensor_3d(yc, DT_F32, DEV_CPU, S, L, d), xin, &cpu);
    gka_layer_backward(&rc.layer, tensor_3d(dxc, DT_F32, DEV_CPU, S, L, d), tensor_3d(dyc, DT_F32, DEV_CPU, S, L, d),
                       xin, 0, &cpu);
    /* CUDA */
    Tensor xg = tensor_3d(dev_malloc(gpu, nx * 2), DT_BF16, DEV_CUDA, S, L, d);
    Tensor yg = tensor_3d(dev_malloc(gpu, nx * 2), DT_BF16, DEV_CUDA, S, L, d);
    Tensor dyg = tensor_3d(dev_malloc(gpu, nx * 2), DT_BF16, DEV_CUDA, S, L, d);
    Tensor dxg = tensor_3d(dev_malloc(gpu, nx * 2), DT_BF16, DEV_CUDA, S, L, d);
    tensor_copy(xg, xin, gpu);
    tensor_copy(dyg, tensor_3d(dy, DT_F32, DEV_CPU, S, L, d), gpu);
    tensor_fill_bytes(yg, 0xff, gpu), tensor_fill_bytes(dxg, 0xff, gpu);
    gka_layer_forward(&rg.layer, yg, xg, gpu);
    gka_layer_backward(&rg.layer, dxg, dyg, xg, 0, gpu);
    ctx_sync(gpu);
    float *yh = gi_alloc(nx), *dxh = gi_alloc(nx), *gh = gi_alloc(np);
    tensor_copy(tensor_3d(yh, DT_F32, DEV_CPU, S, L, d), yg, gpu);
    tensor_copy(tensor_3d(dxh, DT_F32, DEV_CPU, S, L, d), dxg, gpu);
    cuda_copy(gh, rg.grads, np * sizeof(float));
    int ok = 1;
    double e_out = err_ratio_f(yh, yc, nx), e_dx = err_ratio_f(dxh, dxc, nx), worst_p = 0.0;
    if (emulate && !(e_out < 1e-2)) ok = 0, printf("    output: error ratio %.3g\n", e_out);
    if (emulate && !(e_dx < 2e-2)) ok = 0, printf("    input gradient: error ratio %.3g\n", e_dx);
    for (int i = 0; i < rc.pt.n; i++) {
        const ParamEntry *e = &rc.pt.e[i];
        double er = err_ratio_f(gh + e->offset, rc.grads + e->offset, e->numel);
        double scale = gate_scale(&rc.layer, i);
        if (scale > 0.0) { /* a per-head gate vector: a sum over tokens, judged against what is summed */
            double num = 0.0;
            for (size_t k = 0; k < e->numel; k++) num = fmax(num, fabs((double)gh[e->offset + k] - rc.grads[e->offset + k]));
            er = num / scale;
        }
        if (er > worst_p) worst_p = er;
        if (emulate && !(er < (is_gate_param(&rc.layer, i) ? 5e-2 : 2e-2)))
            ok = 0, printf("    gradient of %s: %s %.3g\n", e->name, scale > 0.0 ? "error / summed magnitude" : "error ratio", er);
    }
    printf("  %-22s gpu vs cpu%s: out %.2e  dinp %.2e  worst param grad %.2e  %s\n", lc->name,
           emulate ? " (bf16-emulating)" : " (float32, info)", e_out, e_dx, worst_p, emulate ? (ok ? "ok" : "FAIL") : "");
    dev_free(gpu, xg.data), dev_free(gpu, yg.data), dev_free(gpu, dyg.data), dev_free(gpu, dxg.data);
    rig_free(&rc), rig_free(&rg);
    free(p), free(x), free(dy), free(yc), free(dxc), free(dyc), free(yh), free(dxh), free(gh);
    ctx_destroy(&cpu);
    return ok;
}
#endif

int main(int argc, char **argv) {
    int gpu_mode = argc > 1 && !strcmp(argv[1], "--gpu");
    LayerCase cases[16];
    int n = 0;
    cases[n++] = make_case("defaults", 24, 2, 8, 8, 2, 11);
    LayerCase c = make_case("no output gate", 24, 3, 8, 8, 2, 9);
    c.cfg.use_gate = 0;
    cases[n++] = c;
    c = make_case("GQA (k, v 2 of 4)", 16, 4, 6, 6, 1, 13);
    c.cfg.num_k_heads = c.cfg.num_v_heads = 2;
    cases[n++] = c;
    c = make_case("GVA (q, k 2 of 4)", 16, 4, 6, 10, 2, 7);
    c.cfg.num_q_heads = c.cfg.num_k_heads = 2;
    cases[n++] = c;
    c = make_case("no v conv, no alpha", 20, 2, 8, 8, 2, 10);
    c.cfg.use_v_conv = 0, c.cfg.use_alpha_connection = 0;
    cases[n++] = c;
    c = make_case("no beta, H decay off", 20, 2, 8, 8, 2, 10);
    c.cfg.use_beta_gate = 0, c.cfg.use_forgetting_gate_kk = 0;
    cases[n++] = c;
    c = make_case("no forgetting gate", 20, 2, 8, 8, 2, 10);
    c.cfg.use_forgetting_gate = 0, c.cfg.use_forgetting_gate_kk = 0;
    cases[n++] = c;
    c = make_case("no gates at all", 16, 2, 8, 8, 1, 6);
    c.cfg.use_gate = c.cfg.use_beta_gate = c.cfg.use_alpha_connection = 0;
    c.cfg.use_forgetting_gate = c.cfg.use_forgetting_gate_kk = c.cfg.gla_rescale = 0;
    cases[n++] = c;
    c = make_case("GKAVision-T level 2", 320, 5, 32, 32, 2, 196);
    c.cfg.use_gate = 0;
    int n_cpu = n; /* the full-size case runs on the GPU only */
    cases[n++] = c;
    c = make_case("GKAVision-T level 3", 640, 10, 32, 32, 2, 49);
    c.cfg.use_gate = 0;
    cases[n++] = c;
    c = make_case("K 49 (chunked form)", 392, 8, 49, 49, 2, 196); /* GKAVision-L level 2's head dim */
    c.cfg.use_gate = 0;
    cases[n++] = c;
    c = make_case("K 64, gated (chunked)", 256, 2, 64, 64, 2, 100);
    cases[n++] = c;

    int fails = 0;
    if (!gpu_mode) {
        printf("GKA layer, CPU:\n");
        for (int i = 0; i < n_cpu; i++) fails += !check_cpu(&cases[i], 1000 + (uint64_t)i);
        printf("GKA layer CPU tests: %d cases, %d failed\n", n_cpu, fails);
        return fails ? 1 : 0;
    }
#ifdef GKA_HAVE_CUDA
    if (cuda_device_count() == 0) {
        printf("no CUDA device: GKA layer GPU tests skipped\n");
        return SKIP_CODE;
    }
    Ctx gpu;
    GkErr err;
    if (ctx_cuda_create(&gpu, 0, &err) != 0) gk_die("%s", err.msg);
    printf("GKA layer, CUDA vs CPU:\n");
    for (int i = 0; i < n; i++) {
        fails += !check_gpu(&cases[i], 2000 + (uint64_t)i, &gpu, 1);
        check_gpu(&cases[i], 2000 + (uint64_t)i, &gpu, 0);
    }
    printf("GKA layer GPU tests: %d cases, %d failed\n", n, fails);
    ctx_destroy(&gpu);
    return fails ? 1 : 0;
#else
    printf("CPU-only build: GKA layer GPU tests skipped\n");
    return SKIP_CODE;
#endif
}
