/* gka_layer.c: the Gated KalmaNet layer (spec gka.md section 2) built from the ops, on either backend.
 * Forward for inp [S, L, d] (M = S L tokens):
 *   qkv = inp [Wq; Wk; Wv]^T                  one GEMM ([Wq; Wk] only when !use_v_conv; v then separate)
 *   qkv_c = silu(causal_conv(qkv))            one depthwise conv over the concatenated channels
 *   gpre = inp [Wb; Wal; Wa]^T + [bb; bal; dt_bias]
 *   q^, beta k^, beta v, g, alpha = prep(qkv_c, gpre, A_log)     (L2 norms, gates, head expansion)
 *   o, x, f = GKA core (g for U and, when use_forgetting_gate_kk, for H too)
 *   on = rmsnorm_per_head(o) * w_norm [* silu(inp Wg^T)]
 *   out = on Wo^T
 * The backward runs the same steps in reverse; the input gradients of the four projections of inp add up
 * in place (matmul_backward's dinp_accumulate). */
#include <math.h>
#include <string.h>

#include "profile.h"
#include "core.h"
#include "gka.h"
#include "gka_prep.h"
#include "ops.h"

void gka_config_defaults(GkaConfig *c, int hidden_size, int num_heads, int head_dim) {
    memset(c, 0, sizeof *c);
    c->hidden_size = hidden_size, c->num_heads = num_heads, c->head_dim = head_dim;
    c->use_gate = c->use_beta_gate = c->use_alpha_connection = c->use_v_conv = 1;
    c->use_forgetting_gate = c->use_forgetting_gate_kk = c->gla_rescale = 1;
    c->ridge_ratio = 0.02f, c->num_iter = 30, c->conv_size = 4, c->norm_eps = 1e-6f, c->chunk_size = 64;
}

int gka_config_check(const GkaConfig *c, GkErr *err) {
    if (c->hidden_size < 1 || c->num_heads < 1 || c->head_dim < 1)
        return gk_fail(err, "GKA: hidden_size, num_heads and head_dim must be positive");
    if (c->head_dim > 128 || gka_V(c) > 128)
        return gk_fail(err, "GKA: head dims up to 128 (got %d, %d)", c->head_dim, gka_V(c));
    int hs[3] = {gka_Hq(c), gka_Hk(c), gka_Hv(c)};
    const char *names[3] = {"num_q_heads", "num_k_heads", "num_v_heads"};
    for (int i = 0; i < 3; i++)
        if (hs[i] < 1 || c->num_heads % hs[i] != 0)
            return gk_fail(err, "GKA: %s = %d must divide num_heads = %d", names[i], hs[i], c->num_heads);
    if (c->num_iter < 1 || c->num_iter > 128)
        return gk_fail(err, "GKA: num_iter %d outside 1..128", c->num_iter);
    if (!(c->ridge_ratio > 0.0f))
        return gk_fail(err, "GKA: ridge_ratio must be positive (got %g)", c->ridge_ratio);
    if (c->conv_size < 1 || c->conv_size > 8)
        return gk_fail(err, "GKA: conv_size %d outside 1..8", c->conv_size);
    if (c->chunk_size < 1) return gk_fail(err, "GKA: chunk_size must be positive");
    return 0;
}

static int add(ParamTable *pt, const char *prefix, const char *name, int ndim, int64_t a, int64_t b,
               int64_t c, ParamKind kind, ParamInit init, float arg) {
    int64_t shape[3] = {a, b, c};
    return params_add(pt, prefix, name, ndim, shape, kind, init, arg);
}

void gka_layer_declare(GkaLayer *l, ParamTable *pt, const char *prefix, const GkaConfig *cfg) {
    memset(l, 0, sizeof *l);
    l->cfg = *cfg;
    GkErr err;
    if (gka_config_check(cfg, &err) != 0) gk_die("%s", err.msg);
    const int d = cfg->hidden_size, H = cfg->num_heads, K = cfg->head_dim, V = gka_V(cfg), W = cfg->conv_size;
    const int Cq = gka_Hq(cfg) * K, Ck = gka_Hk(cfg) * K, Cv = gka_Hv(cfg) * V;
    l->op = (GkaOpConfig){cfg->ridge_ratio, cfg->num_iter, cfg->gla_rescale ? 1.0f / sqrtf((float)K) : 1.0f,
                          cfg->chunk_size, GKA_ALGO_AUTO};
    const float std = 0.02f,
                conv_bound = 1.0f / sqrtf((float)W); /* PyTorch's Conv1d default: U(+-1/sqrt(fan_in)) */
    l->i_q = add(pt, prefix, "q_proj.weight", 2, Cq, d, 0, PARAM_WEIGHT, INIT_TRUNC_NORMAL, std);
    l->i_k = add(pt, prefix, "k_proj.weight", 2, Ck, d, 0, PARAM_WEIGHT, INIT_TRUNC_NORMAL, std);
    l->i_v = add(pt, prefix, "v_proj.weight", 2, Cv, d, 0, PARAM_WEIGHT, INIT_TRUNC_NORMAL, std);
    l->i_qc = add(pt, prefix, "q_conv1d.weight", 3, Cq, 1, W, PARAM_WEIGHT, INIT_UNIFORM, conv_bound);
    l->i_vc = add(pt, prefix, "k_conv1d.weight", 3, Ck, 1, W, PARAM_WEIGHT, INIT_UNIFORM, conv_bound);
    if (cfg->use_v_conv)
        l->i_vc = add(pt, prefix, "v_conv1d.weight", 3, Cv, 1, W, PARAM_WEIGHT, INIT_UNIFORM, conv_bound);
    l->i_gw0 = l->i_gw1 = l->i_gb0 = l->i_gb1 = l->i_alog = l->i_g = -1;
    const char *gw[3] = {"b_proj.weight", "alpha_proj.weight", "a_proj.weight"};
    const char *gb[3] = {"b_proj.bias", "alpha_proj.bias", "dt_bias"};
    int on[3] = {cfg->use_beta_gate, cfg->use_alpha_connection, cfg->use_forgetting_gate};
    for (int i = 0; i < 3; i++)
        if (on[i]) {
            int j = add(pt, prefix, gw[i], 2, H, d, 0, PARAM_WEIGHT, INIT_TRUNC_NORMAL, std);
            if (l->i_gw0 < 0) l->i_gw0 = j;
            l->i_gw1 = j;
        }
    for (int i = 0; i < 3; i++)
        if (on[i]) {
            int j =
                add(pt, prefix, gb[i], 1, H, 0, 0, PARAM_NO_DECAY, i == 2 ? INIT_DT_BIAS : INIT_ZERO, 0.0f);
            if (l->i_gb0 < 0) l->i_gb0 = j;
            l->i_gb1 = j;
        }
    if (cfg->use_forgetting_gate)
        l->i_alog = add(pt, prefix, "A_log", 1, H, 0, 0, PARAM_NO_DECAY, INIT_LOG_UNIFORM, 16.0f);
    if (cfg->use_gate)
        l->i_g =
            add(pt, prefix, "g_proj.weight", 2, (int64_t)H * V, d, 0, PARAM_WEIGHT, INIT_TRUNC_NORMAL, std);
    l->i_norm = add(pt, prefix, "o_norm.weight", 1, V, 0, 0, PARAM_NO_DECAY, INIT_ONE, 0.0f);
    l->i_o = add(pt, prefix, "o_proj.weight", 2, d, (int64_t)H * V, 0, PARAM_WEIGHT, INIT_TRUNC_NORMAL, std);
}

void gka_layer_bind(GkaLayer *l, const ParamTable *pt, void *weights, float *master, float *grads,
                    Device dev) {
    const GkaConfig *c = &l->cfg;
    const int d = c->hidden_size, W = c->conv_size;
    DType wt = dev == DEV_CUDA ? DT_BF16 : DT_F32;
    int last_proj = c->use_v_conv ? l->i_v : l->i_k;
    void *bases[2] = {weights, grads};
    DType dts[2] = {wt, DT_F32};
    Tensor *dst[2][9] = {
        {&l->w_qkv, &l->w_v, &l->w_conv, &l->w_gate, &l->b_gate, &l->A_log, &l->w_g, &l->w_norm, &l->w_o},
        {&l->gw_qkv, &l->gw_v, &l->gw_conv, &l->gw_gate, &l->gb_gate, &l->gA_log, &l->gw_g, &l->gw_norm,
         &l->gw_o}};
    for (int r = 0; r < 2; r++) {
        void *b = bases[r];
        if (!b) {
            for (int i = 0; i < 9; i++)
                *dst[r][i] = TENSOR_NONE;
            continue;
        }
        *dst[r][0] = params_span(pt, l->i_q, last_proj, d, b, dts[r], dev);
        *dst[r][1] = c->use_v_conv ? TENSOR_NONE : params_view(pt, l->i_v, b, dts[r], dev);
        *dst[r][2] = params_span(pt, l->i_qc, l->i_vc, W, b, dts[r], dev);
        *dst[r][3] = l->i_gw0 >= 0 ? params_span(pt, l->i_gw0, l->i_gw1, d, b, dts[r], dev) : TENSOR_NONE;
        *dst[r][4] = l->i_gb0 >= 0 ? params_span(pt, l->i_gb0, l->i_gb1, 1, b, dts[r], dev) : TENSOR_NONE;
        if (tensor_present(*dst[r][4])) { /* the gate bias is a vector */
            int64_t n = dst[r][4]->shape[0];
            *dst[r][4] = tensor_1d(dst[r][4]->data, dts[r], dev, n);
        }
        *dst[r][6] = l->i_g >= 0 ? params_view(pt, l->i_g, b, dts[r], dev) : TENSOR_NONE;
        *dst[r][7] = params_view(pt, l->i_norm, b, dts[r], dev);
        *dst[r][8] = params_view(pt, l->i_o, b, dts[r], dev);
    }
    /* A_log feeds the float32 gate arithmetic: read from the master weights, its gradient is float32 too */
    l->A_log = l->i_alog >= 0 ? params_view(pt, l->i_alog, master, DT_F32, dev) : TENSOR_NONE;
    l->gA_log = (l->i_alog >= 0 && grads) ? params_view(pt, l->i_alog, grads, DT_F32, dev) : TENSOR_NONE;
}

void gka_layer_setup(GkaLayer *l, Arena *a, int S, int L, int train) {
    const GkaConfig *c = &l->cfg;
    const int H = c->num_heads, K = c->head_dim, V = gka_V(c), NG = gka_gate_cols(c);
    const int Cq = gka_Hq(c) * K, Ck = gka_Hk(c) * K, Cv = gka_Hv(c) * V;
    const int Cqkv = Cq + Ck + (c->use_v_conv ? Cv : 0);
    const int64_t M = (int64_t)S * L;
    DType at = a->device == DEV_CUDA ? DT_BF16 : DT_F32;
    l->S = S, l->L = L;
#define T3(dt, x, y, z) arena_tensor(a, dt, 3, (int64_t[]){x, y, z})
#define T4(dt, x, y, z, w) arena_tensor(a, dt, 4, (int64_t[]){x, y, z, w})
#define T2(dt, x, y) arena_tensor(a, dt, 2, (int64_t[]){x, y})
    l->qkv = T3(at, S, L, Cqkv);
    l->qkv_c = T3(at, S, L, Cqkv);
    l->vraw = c->use_v_conv ? TENSOR_NONE : T2(at, M, Cv);
    l->gpre = NG ? T2(at, M, NG) : TENSOR_NONE;
    l->q = T4(at, S, L, H, K);
    l->k = T4(at, S, L, H, K);
    l->v = T4(at, S, L, H, V);
    l->g = c->use_forgetting_gate ? T3(DT_F32, S, L, H) : TENSOR_NONE;
    l->alpha = c->use_alpha_connection ? T3(DT_F32, S, L, H) : TENSOR_NONE;
    l->x = T4(DT_F32, S, L, H, K);
    l->f = T3(DT_F32, S, L, H);
    size_t sb = gka_core_saved_bytes(l->op, S, L, H, K, V, a->device);
    l->saved =
        (train && sb) ? arena_tensor(a, DT_F32, 1, (int64_t[]){(int64_t)(sb / sizeof(float))}) : TENSOR_NONE;
    l->o = T4(at, S, L, H, V);
    l->rstd = arena_tensor(a, DT_F32, 1, (int64_t[]){M * H});
    l->z = c->use_gate ? T2(at, M * H, V) : TENSOR_NONE;
    l->on = T2(at, M, (int64_t)H * V);
    if (!train) return;
    l->d_on = T2(at, M, (int64_t)H * V);
    l->d_o = T4(at, S, L, H, V);
    l->dz = c->use_gate ? T2(at, M * H, V) : TENSOR_NONE;
    l->dq = T4(at, S, L, H, K);
    l->dk = T4(at, S, L, H, K);
    l->dv = T4(at, S, L, H, V);
    l->dg = c->use_forgetting_gate ? T3(DT_F32, S, L, H) : TENSOR_NONE;
    l->dalpha = c->use_alpha_connection ? T3(DT_F32, S, L, H) : TENSOR_NONE;
    size_t wb = gka_core_workspace_bytes(l->op, S, L, H, K, V);
    l->work = wb ? arena_tensor(a, DT_F32, 1, (int64_t[]){(int64_t)(wb / sizeof(float))}) : TENSOR_NONE;
    l->dqkv_c = T3(at, S, L, Cqkv);
    l->dqkv = T3(at, S, L, Cqkv);
    l->dvraw = c->use_v_conv ? TENSOR_NONE : T2(at, M, Cv);
    l->dgpre = NG ? T2(at, M, NG) : TENSOR_NONE;
    l->prep_work = arena_tensor(a, DT_F32, 1, (int64_t[]){M * H});
#undef T2
#undef T3
#undef T4
}

#define PF(t) ((float *)(t).data)
#define PB(t) ((bf16_t *)(t).data)

static void prep_forward(GkaLayer *l, Ctx *ctx) {
    PROF_SCOPE(ctx, "gka_prep_forward");
    int64_t M = (int64_t)l->S * l->L;
    if (ctx->device == DEV_CUDA) {
#ifdef GKA_HAVE_CUDA
        gka_prep_forward_cuda(PB(l->q), PB(l->k), PB(l->v), PF(l->g), PF(l->alpha), PB(l->qkv_c), PB(l->vraw),
                              PB(l->gpre), PF(l->A_log), &l->cfg, M, ctx->cuda);
#endif
    } else {
        gka_prep_forward_cpu(PF(l->q), PF(l->k), PF(l->v), PF(l->g), PF(l->alpha), PF(l->qkv_c), PF(l->vraw),
                             PF(l->gpre), PF(l->A_log), &l->cfg, M);
        ctx_emulate_bf16(l->q, ctx), ctx_emulate_bf16(l->k, ctx), ctx_emulate_bf16(l->v, ctx);
    }
}

static void prep_backward(GkaLayer *l, Ctx *ctx) {
    PROF_SCOPE(ctx, "gka_prep_backward");
    int64_t M = (int64_t)l->S * l->L;
    if (ctx->device == DEV_CUDA) {
#ifdef GKA_HAVE_CUDA
        gka_prep_backward_cuda(PB(l->dqkv_c), PB(l->dvraw), PB(l->dgpre), PF(l->gA_log), PF(l->prep_work),
                               PB(l->dq), PB(l->dk), PB(l->dv), PF(l->dg), PF(l->dalpha), PB(l->qkv_c),
                               PB(l->vraw), PB(l->gpre), PF(l->A_log), &l->cfg, M, ctx->cuda);
#endif
    } else {
        gka_prep_backward_cpu(PF(l->dqkv_c), PF(l->dvraw), PF(l->dgpre), PF(l->gA_log), PF(l->dq), PF(l->dk),
                              PF(l->dv), PF(l->dg), PF(l->dalpha), PF(l->qkv_c), PF(l->vraw), PF(l->gpre),
                              PF(l->A_log), &l->cfg, M);
        ctx_emulate_bf16(l->dqkv_c, ctx), ctx_emulate_bf16(l->dvraw, ctx), ctx_emulate_bf16(l->dgpre, ctx);
    }
}

/* [M, H V] seen as M H rows of V (the per-head norm). */
static Tensor rows_of(Tensor t, int64_t rows, int64_t cols) {
    int64_t s[2] = {rows, cols};
    return tensor_reshape(t, 2, s);
}

void gka_layer_forward(GkaLayer *l, Tensor out, Tensor inp, Ctx *ctx) {
    const GkaConfig *c = &l->cfg;
    const int H = c->num_heads, V = gka_V(c);
    const int64_t M = (int64_t)l->S * l->L;
    GK_CHECK(inp.ndim == 3 && inp.shape[0] == l->S && inp.shape[1] == l->L && inp.shape[2] == c->hidden_size,
             "gka_layer_forward: input must be [%d, %d, %d] (the size given to gka_layer_setup)", l->S, l->L,
             c->hidden_size);
    matmul_forward(l->qkv, TENSOR_NONE, inp, l->w_qkv, TENSOR_NONE, ctx);
    if (!c->use_v_conv) matmul_forward(l->vraw, TENSOR_NONE, inp, l->w_v, TENSOR_NONE, ctx);
    shortconv_forward(l->qkv_c, l->qkv, l->w_conv, 1, ACT_SILU, ctx);
    if (tensor_present(l->gpre)) matmul_forward(l->gpre, TENSOR_NONE, inp, l->w_gate, l->b_gate, ctx);
    prep_forward(l, ctx);
    Tensor gk = c->use_forgetting_gate_kk ? l->g : TENSOR_NONE;
    gka_core_forward(l->o, TENSOR_NONE, TENSOR_NONE, l->x, l->f, l->saved, l->q, l->k, l->v, l->g, gk,
                     l->alpha, TENSOR_NONE, TENSOR_NONE, l->op, ctx);
    Tensor o_rows = rows_of(l->o, M * H, V);
    if (c->use_gate)
        matmul_forward(rows_of(l->z, M, (int64_t)H * V), TENSOR_NONE, inp, l->w_g, TENSOR_NONE, ctx);
    rmsnorm_forward(rows_of(l->on, M * H, V), l->rstd, o_rows, l->z, l->w_norm, c->norm_eps, ctx);
    matmul_forward(out, TENSOR_NONE, l->on, l->w_o, TENSOR_NONE, ctx);
}

void gka_layer_backward(GkaLayer *l, Tensor dinp, Tensor dout, Tensor inp, int dinp_accumulate, Ctx *ctx) {
    const GkaConfig *c = &l->cfg;
    const int H = c->num_heads, V = gka_V(c);
    const int64_t M = (int64_t)l->S * l->L;
    GK_CHECK(tensor_present(l->d_o), "gka_layer_backward: the layer was set up without training buffers");
    matmul_backward(l->d_on, l->gw_o, TENSOR_NONE, dout, l->on, l->w_o, TENSOR_NONE, 0, ctx);
    rmsnorm_backward(rows_of(l->d_o, M * H, V), l->dz, l->gw_norm, rows_of(l->d_on, M * H, V),
                     rows_of(l->o, M * H, V), l->z, l->w_norm, l->rstd, ctx);
    Tensor gk = c->use_forgetting_gate_kk ? l->g : TENSOR_NONE,
           dgk = c->use_forgetting_gate_kk ? l->dg : TENSOR_NONE;
    gka_core_backward(l->dq, l->dk, l->dv, l->dg, dgk, l->dalpha, TENSOR_NONE, TENSOR_NONE, l->work, l->d_o,
                      TENSOR_NONE, TENSOR_NONE, l->q, l->k, l->v, l->g, gk, l->alpha, TENSOR_NONE,
                      TENSOR_NONE, l->x, l->f, l->saved, l->op, ctx);
    prep_backward(l, ctx);
    shortconv_backward(l->dqkv, l->gw_conv, l->dqkv_c, l->qkv, l->w_conv, 1, ACT_SILU, ctx);
    matmul_backward(dinp, l->gw_qkv, TENSOR_NONE, l->dqkv, inp, l->w_qkv, TENSOR_NONE, dinp_accumulate, ctx);
    if (!c->use_v_conv)
        matmul_backward(dinp, l->gw_v, TENSOR_NONE, l->dvraw, inp, l->w_v, TENSOR_NONE, 1, ctx);
    if (tensor_present(l->gpre))
        matmul_backward(dinp, l->gw_gate, l->gb_gate, l->dgpre, inp, l->w_gate, TENSOR_NONE, 1, ctx);
    if (c->use_gate)
        matmul_backward(dinp, l->gw_g, TENSOR_NONE, rows_of(l->dz, M, (int64_t)H * V), inp, l->w_g,
                        TENSOR_NONE, 1, ctx);
}
