/* mixers.c: the token mixers of the transformer-style blocks, [S, L, C] -> [S, L, C]: multi-head attention
 * (spec 2.6), the MambaVision mixer (spec 2.7) and the GKA layer (spec 7.3), causal or bidirectional-sum.
 * Each backward writes the input gradient and accumulates parameter gradients. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "blocks.h"
#include "core.h"
#include "selective_scan.h"
#include "seq_ops.h"

static Tensor seq3(Arena *a, int S, int L, int C) {
    const int64_t s[3] = {S, L, C};
    return act_new(a, 3, s);
}

/* Rows [start, start + count) of a weight or gradient view; absent stays absent. */
static Tensor rows(Tensor t, int64_t start, int64_t count) {
    return tensor_present(t) ? tensor_slice0(t, start, count) : TENSOR_NONE;
}

/* A PyTorch Conv1d depth-wise weight [Ch, 1, W] seen as shortconv's [Ch, W]. */
static Tensor taps(Tensor t) {
    if (!tensor_present(t)) return t;
    const int64_t s[2] = {t.shape[0], t.shape[2]};
    return tensor_reshape(t, 2, s);
}

/* ---- attention ------------------------------------------------------------------------------------------
 */

static void attn_declare(AttnMixer *m, ParamTable *pt, const char *prefix, int C, int heads) {
    char p[PARAM_NAME_MAX];
    m->heads = heads;
    snprintf(p, sizeof p, "%sqkv.", prefix);
    lin_declare(&m->qkv, pt, p, C, 3 * C, 1);
    snprintf(p, sizeof p, "%sproj.", prefix);
    lin_declare(&m->proj, pt, p, C, C, 1);
}

static void attn_setup(AttnMixer *m, Arena *a, int S, int L) {
    const int C = m->proj.out;
    const int64_t att[4] = {S, m->heads, L, L};
    m->qkv_out = seq3(a, S, L, 3 * C);
    m->att = arena_tensor(a, DT_F32, 4, att);
    m->o = seq3(a, S, L, C);
}

static void attn_setup_scratch(AttnMixer *m, Arena *a, int S, int L) {
    const int C = m->proj.out;
    const int64_t att[4] = {S, m->heads, L, L};
    m->d_o = seq3(a, S, L, C);
    m->d_qkv = seq3(a, S, L, 3 * C);
    m->d_att = arena_tensor(a, DT_F32, 4, att);
}

static void attn_forward(AttnMixer *m, Tensor out, Tensor inp, Ctx *ctx) {
    lin_forward(&m->qkv, m->qkv_out, inp, ctx);
    attention_forward(m->o, m->att, m->qkv_out, m->heads, ctx);
    lin_forward(&m->proj, out, m->o, ctx);
}

static void attn_backward(AttnMixer *m, Tensor dinp, Tensor dout, Tensor inp, Ctx *ctx) {
    lin_backward(&m->proj, m->d_o, dout, m->o, 0, ctx);
    attention_backward(m->d_qkv, m->d_att, m->d_o, m->qkv_out, m->att, m->heads, ctx);
    lin_backward(&m->qkv, dinp, m->d_qkv, inp, 0, ctx);
}

/* ---- MambaVision mixer ----------------------------------------------------------------------------------
 */

#define MAMBA_N 8
#define MAMBA_CONV 3

static void mamba_declare(MambaMixer *m, ParamTable *pt, const char *prefix, int C) {
    const int Ch = C / 2, R = (C + 15) / 16, N = MAMBA_N;
    const float std = 0.02f, conv_bound = 1.0f / sqrtf((float)MAMBA_CONV);
    m->C = C, m->Ch = Ch, m->R = R, m->N = N;
#define P(name, nd, a, b, c, kind, init, arg)                                                                \
    params_add(pt, prefix, name, nd, (const int64_t[]){a, b, c}, kind, init, arg)
    m->i_in = P("in_proj.weight", 2, C, C, 0, PARAM_WEIGHT, INIT_TRUNC_NORMAL, std);
    m->i_xp = P("x_proj.weight", 2, R + 2 * N, Ch, 0, PARAM_WEIGHT, INIT_TRUNC_NORMAL, std);
    m->i_dtw = P("dt_proj.weight", 2, Ch, R, 0, PARAM_WEIGHT, INIT_TRUNC_NORMAL, std);
    m->i_dtb = P("dt_proj.bias", 1, Ch, 0, 0, PARAM_NO_DECAY, INIT_ZERO, 0.0f);
    /* 2-D, so timm's rule decays it (spec 8.4) */
    m->i_alog = P("A_log", 2, Ch, N, 0, PARAM_WEIGHT, INIT_LOG_RANGE, 0.0f);
    m->i_D = P("D", 1, Ch, 0, 0, PARAM_NO_DECAY, INIT_ONE, 0.0f);
    m->i_out = P("out_proj.weight", 2, C, C, 0, PARAM_WEIGHT, INIT_TRUNC_NORMAL, std);
    m->i_cx = P("conv1d_x.weight", 3, Ch, 1, MAMBA_CONV, PARAM_WEIGHT, INIT_UNIFORM, conv_bound);
    m->i_cz = P("conv1d_z.weight", 3, Ch, 1, MAMBA_CONV, PARAM_WEIGHT, INIT_UNIFORM, conv_bound);
#undef P
}

static void mamba_bind(MambaMixer *m, const Binder *b) {
    const int Ch = m->Ch, R = m->R, N = m->N;
    Tensor w_in = bind_w(b, m->i_in), w_xp = bind_w(b, m->i_xp), g_in = bind_g(b, m->i_in),
           g_xp = bind_g(b, m->i_xp);
    m->w_inx = rows(w_in, 0, Ch), m->w_inz = rows(w_in, Ch, Ch);
    m->w_xdt = rows(w_xp, 0, R), m->w_xB = rows(w_xp, R, N), m->w_xC = rows(w_xp, R + N, N);
    m->w_dt = bind_w(b, m->i_dtw), m->b_dt = bind_w(b, m->i_dtb), m->w_out = bind_w(b, m->i_out);
    m->w_cx = taps(bind_w(b, m->i_cx)), m->w_cz = taps(bind_w(b, m->i_cz));
    /* the scan runs in float32 on the master values, as upstream's under AMP */
    m->A_log = bind_m(b, m->i_alog), m->Dp = bind_m(b, m->i_D), m->dt_bias = bind_m(b, m->i_dtb);
    m->g_inx = rows(g_in, 0, Ch), m->g_inz = rows(g_in, Ch, Ch);
    m->g_xdt = rows(g_xp, 0, R), m->g_xB = rows(g_xp, R, N), m->g_xC = rows(g_xp, R + N, N);
    m->g_dt = bind_g(b, m->i_dtw), m->gb_dt = bind_g(b, m->i_dtb), m->g_out = bind_g(b, m->i_out);
    m->g_cx = taps(bind_g(b, m->i_cx)), m->g_cz = taps(bind_g(b, m->i_cz));
    m->gA_log = bind_g(b, m->i_alog), m->gD = bind_g(b, m->i_D);
}

static void mamba_setup(MambaMixer *m, Arena *a, int S, int L, int train) {
    const int Ch = m->Ch;
    m->x = seq3(a, S, L, Ch), m->z = seq3(a, S, L, Ch), m->xc = seq3(a, S, L, Ch), m->zc = seq3(a, S, L, Ch);
    m->dt = seq3(a, S, L, m->R), m->Bm = seq3(a, S, L, m->N), m->Cm = seq3(a, S, L, m->N);
    m->dpre = seq3(a, S, L, Ch), m->y = seq3(a, S, L, Ch), m->yz = seq3(a, S, L, m->C);
    const int64_t st[4] = {S, selective_scan_nchunks(L), Ch, m->N};
    m->states = train ? arena_tensor(a, DT_F32, 4, st) : TENSOR_NONE;
}

static void mamba_setup_scratch(MambaMixer *m, Arena *a, int S, int L) {
    const int Ch = m->Ch;
    m->d_yz = seq3(a, S, L, m->C), m->d_y = seq3(a, S, L, Ch), m->d_zc = seq3(a, S, L, Ch);
    m->d_xc = seq3(a, S, L, Ch), m->d_dpre = seq3(a, S, L, Ch), m->d_dt = seq3(a, S, L, m->R);
    m->d_Bm = seq3(a, S, L, m->N), m->d_Cm = seq3(a, S, L, m->N);
    m->d_x = seq3(a, S, L, Ch), m->d_z = seq3(a, S, L, Ch);
}

static void mamba_forward(MambaMixer *m, Tensor out, Tensor u, Ctx *ctx) {
    const Tensor none = TENSOR_NONE;
    matmul_forward(m->x, none, u, m->w_inx, none, ctx);
    matmul_forward(m->z, none, u, m->w_inz, none, ctx);
    shortconv_forward(m->xc, m->x, m->w_cx, 0, ACT_SILU, ctx);
    shortconv_forward(m->zc, m->z, m->w_cz, 0, ACT_SILU, ctx);
    matmul_forward(m->dt, none, m->xc, m->w_xdt, none, ctx);
    matmul_forward(m->Bm, none, m->xc, m->w_xB, none, ctx);
    matmul_forward(m->Cm, none, m->xc, m->w_xC, none, ctx);
    matmul_forward(m->dpre, none, m->dt, m->w_dt, m->b_dt, ctx);
    selective_scan_forward(m->y, m->states, m->xc, m->dpre, m->A_log, m->Bm, m->Cm, m->Dp, m->dt_bias, ctx);
    channel_concat(m->yz, m->y, m->zc, ctx);
    matmul_forward(out, none, m->yz, m->w_out, none, ctx);
}

static void mamba_backward(MambaMixer *m, Tensor du, Tensor dout, Tensor u, Ctx *ctx) {
    const Tensor none = TENSOR_NONE;
    GK_CHECK(tensor_present(m->states), "mamba mixer: backward after a setup without training buffers");
    matmul_backward(m->d_yz, m->g_out, none, dout, m->yz, m->w_out, none, 0, ctx);
    channel_split(m->d_y, m->d_zc, m->d_yz, ctx);
    /* dt_proj's bias is also the scan's delta bias: both gradients accumulate into gb_dt */
    selective_scan_backward(m->d_xc, m->d_dpre, m->gA_log, m->d_Bm, m->d_Cm, m->gD, m->gb_dt, m->d_y, m->xc,
                            m->dpre, m->A_log, m->Bm, m->Cm, m->Dp, m->dt_bias, m->states, ctx);
    matmul_backward(m->d_dt, m->g_dt, m->gb_dt, m->d_dpre, m->dt, m->w_dt, none, 0, ctx);
    matmul_backward(m->d_xc, m->g_xdt, none, m->d_dt, m->xc, m->w_xdt, none, 1, ctx);
    matmul_backward(m->d_xc, m->g_xB, none, m->d_Bm, m->xc, m->w_xB, none, 1, ctx);
    matmul_backward(m->d_xc, m->g_xC, none, m->d_Cm, m->xc, m->w_xC, none, 1, ctx);
    shortconv_backward(m->d_x, m->g_cx, m->d_xc, m->x, m->w_cx, 0, ACT_SILU, ctx);
    shortconv_backward(m->d_z, m->g_cz, m->d_zc, m->z, m->w_cz, 0, ACT_SILU, ctx);
    matmul_backward(du, m->g_inx, none, m->d_x, u, m->w_inx, none, 0, ctx);
    matmul_backward(du, m->g_inz, none, m->d_z, u, m->w_inz, none, 1, ctx);
}

/* ---- GKA ------------------------------------------------------------------------------------------------
 */

static void gka_declare(GkaMixer *m, ParamTable *pt, const char *prefix, const GkaConfig *cfg,
                        int bidirectional) {
    m->bidirectional = bidirectional;
    gka_layer_declare(&m->fwd, pt, prefix, cfg);
    if (bidirectional) {
        char p[PARAM_NAME_MAX];
        snprintf(p, sizeof p, "%sreverse.", prefix);
        gka_layer_declare(&m->rev, pt, p, cfg);
    }
}

static void gka_bind(GkaMixer *m, const Binder *b) {
    gka_layer_bind(&m->fwd, b->pt, b->weights, b->master, b->grads, b->dev);
    if (m->bidirectional) gka_layer_bind(&m->rev, b->pt, b->weights, b->master, b->grads, b->dev);
}

static void gka_setup(GkaMixer *m, Arena *a, int S, int L, int train) {
    gka_layer_setup(&m->fwd, a, S, L, train);
    if (!m->bidirectional) return;
    const int C = m->fwd.cfg.hidden_size;
    gka_layer_setup(&m->rev, a, S, L, train);
    m->u_rev = seq3(a, S, L, C), m->o_rev = seq3(a, S, L, C), m->o_back = seq3(a, S, L, C);
}

static void gka_setup_scratch(GkaMixer *m, Arena *a, int S, int L) {
    if (!m->bidirectional) return;
    const int C = m->fwd.cfg.hidden_size;
    m->d_rev = seq3(a, S, L, C), m->du_rev = seq3(a, S, L, C);
}

static void gka_forward(GkaMixer *m, Tensor out, Tensor u, Ctx *ctx) {
    gka_layer_forward(&m->fwd, out, u, ctx);
    if (!m->bidirectional) return;
    token_reverse(m->u_rev, u, ctx);
    gka_layer_forward(&m->rev, m->o_rev, m->u_rev, ctx);
    token_reverse(m->o_back, m->o_rev, ctx);
    add_into(out, m->o_back, ctx);
}

static void gka_backward(GkaMixer *m, Tensor du, Tensor dout, Tensor u, Ctx *ctx) {
    gka_layer_backward(&m->fwd, du, dout, u, 0, ctx);
    if (!m->bidirectional) return;
    token_reverse(m->d_rev, dout, ctx);
    gka_layer_backward(&m->rev, m->du_rev, m->d_rev, m->u_rev, 0, ctx);
    token_reverse(m->d_rev, m->du_rev, ctx);
    add_into(du, m->d_rev, ctx);
}

/* ---- dispatch -------------------------------------------------------------------------------------------
 */

void mixer_declare(Mixer *m, ParamTable *pt, const char *prefix, const MixerSpec *spec) {
    memset(m, 0, sizeof *m);
    m->kind = spec->kind;
    switch (spec->kind) {
    case MIX_ATTENTION:
        attn_declare(&m->attn, pt, prefix, spec->C, spec->heads);
        break;
    case MIX_MAMBA:
        mamba_declare(&m->mamba, pt, prefix, spec->C);
        break;
    case MIX_GKA:
        gka_declare(&m->gka, pt, prefix, &spec->gka, spec->bidirectional);
        break;
    }
}

void mixer_bind(Mixer *m, const Binder *b) {
    switch (m->kind) {
    case MIX_ATTENTION:
        lin_bind(&m->attn.qkv, b), lin_bind(&m->attn.proj, b);
        break;
    case MIX_MAMBA:
        mamba_bind(&m->mamba, b);
        break;
    case MIX_GKA:
        gka_bind(&m->gka, b);
        break;
    }
}

void mixer_setup(Mixer *m, Arena *a, int S, int L, int train) {
    switch (m->kind) {
    case MIX_ATTENTION:
        attn_setup(&m->attn, a, S, L);
        break;
    case MIX_MAMBA:
        mamba_setup(&m->mamba, a, S, L, train);
        break;
    case MIX_GKA:
        gka_setup(&m->gka, a, S, L, train);
        break;
    }
}

void mixer_setup_scratch(Mixer *m, Arena *a, int S, int L) {
    switch (m->kind) {
    case MIX_ATTENTION:
        attn_setup_scratch(&m->attn, a, S, L);
        break;
    case MIX_MAMBA:
        mamba_setup_scratch(&m->mamba, a, S, L);
        break;
    case MIX_GKA:
        gka_setup_scratch(&m->gka, a, S, L);
        break;
    }
}

void mixer_forward(Mixer *m, Tensor out, Tensor inp, Ctx *ctx) {
    switch (m->kind) {
    case MIX_ATTENTION:
        attn_forward(&m->attn, out, inp, ctx);
        break;
    case MIX_MAMBA:
        mamba_forward(&m->mamba, out, inp, ctx);
        break;
    case MIX_GKA:
        gka_forward(&m->gka, out, inp, ctx);
        break;
    }
}

void mixer_backward(Mixer *m, Tensor dinp, Tensor dout, Tensor inp, Ctx *ctx) {
    switch (m->kind) {
    case MIX_ATTENTION:
        attn_backward(&m->attn, dinp, dout, inp, ctx);
        break;
    case MIX_MAMBA:
        mamba_backward(&m->mamba, dinp, dout, inp, ctx);
        break;
    case MIX_GKA:
        gka_backward(&m->gka, dinp, dout, inp, ctx);
        break;
    }
}
