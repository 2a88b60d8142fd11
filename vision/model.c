/* model.c: the network assembled from its blocks (model.h): declaration in PyTorch module order, memory,
 * initialisation, the activation arena, forward and backward.
 * Letters: B images, H x W maps (NHWC), C channels, S window sequences, L tokens per window.
 *
 * Arena layout (model_setup): every activation a backward reads, in forward order; then, when training, the
 * two gradient buffers of the residual stream (each as large as the largest map or window tensor, used in
 * turn as a level changes shape); then one region that every block's backward scratch reuses, since
 * backward runs one block at a time. A dry run of the same code measures it. */
#include "model.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"

/* ---- declaration ----------------------------------------------------------------------------------------
 */

static MixerSpec mixer_spec(const ModelConfig *cfg, int l, int j) {
    MixerSpec s;
    memset(&s, 0, sizeof s);
    const int attention = j >= model_first_attention(cfg->depths[l]);
    s.C = model_level_channels(cfg, l);
    s.heads = cfg->num_heads[l];
    s.kind = attention ? MIX_ATTENTION : MIX_MAMBA;
    if ((attention && cfg->gka_replace_attention) || (!attention && cfg->gka_replace_mamba)) {
        s.kind = MIX_GKA;
        gka_config_defaults(&s.gka, s.C, cfg->gka_heads[l], cfg->gka_head_dim[l]);
        s.gka.use_gate = cfg->gka_use_gate;
        s.gka.num_iter = cfg->gka_num_iter;
        s.gka.ridge_ratio = cfg->gka_ridge_ratio;
        s.bidirectional = cfg->gka_bidirectional;
    }
    return s;
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

void model_declare(Model *m, const ModelConfig *cfg) {
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    ParamTable *pt = &m->params, *bt = &m->buffers;
    stem_declare(&m->stem, pt, bt, cfg->in_chans, cfg->in_dim, cfg->dim, cfg->stem_stride);
    int total = 0, k = 0;
    for (int l = 0; l < MODEL_LEVELS; l++)
        total += cfg->depths[l];
    for (int l = 0; l < MODEL_LEVELS; l++) {
        Level *L = &m->lv[l];
        L->C = model_level_channels(cfg, l), L->depth = cfg->depths[l], L->window = cfg->window[l];
        L->conv = l < 2, L->has_down = l < MODEL_LEVELS - 1;
        if (L->conv)
            L->cb = callocCheck((size_t)L->depth, sizeof(ConvBlock));
        else
            L->tb = callocCheck((size_t)L->depth, sizeof(TBlock));
        for (int j = 0; j < L->depth; j++, k++) {
            /* torch.linspace(0, drop_path_rate, sum(depths)), in block order (spec 2.9) */
            const float rate = total > 1 ? cfg->drop_path_rate * (float)k / (float)(total - 1) : 0.0f;
            char prefix[PARAM_NAME_MAX];
            snprintf(prefix, sizeof prefix, "levels.%d.blocks.%d.", l, j);
            if (L->conv) {
                convblock_declare(&L->cb[j], pt, bt, prefix, L->C, cfg->layer_scale_conv, rate, k);
            } else {
                MixerSpec spec = mixer_spec(cfg, l, j);
                tblock_declare(&L->tb[j], pt, prefix, &spec, cfg->mlp_ratio, cfg->layer_scale, rate, k);
            }
        }
        if (L->has_down) {
            char prefix[PARAM_NAME_MAX];
            snprintf(prefix, sizeof prefix, "levels.%d.downsample.reduction.0.", l);
            conv_declare(&L->down, pt, prefix, L->C, 2 * L->C, 3, 2, 0);
        }
    }
    const int C3 = model_level_channels(cfg, MODEL_LEVELS - 1);
    bn_declare(&m->norm, pt, bt, "norm.", C3, 1e-5f, ACT_NONE);
    lin_declare(&m->head, pt, "head.", C3, cfg->num_classes, 1);
    for (int i = 0; i < bt->n; i++)
        m->n_bn += ends_with(bt->e[i].name, "running_mean");
    m->bn_rm = callocCheck((size_t)m->n_bn, sizeof(int));
    m->nbt = callocCheck((size_t)m->n_bn, sizeof(int64_t));
    for (int i = 0, n = 0; i < bt->n; i++)
        if (ends_with(bt->e[i].name, "running_mean")) m->bn_rm[n++] = i;
}

/* ---- memory ------------------------------------------------------------------------------------------- */

static Binder binder(const Model *m) {
    Binder b = {&m->params, &m->buffers, m->weights, m->master, m->grads, m->buf, m->dev};
    return b;
}

static void bind_all(Model *m) {
    Binder b = binder(m);
    stem_bind(&m->stem, &b);
    for (int l = 0; l < MODEL_LEVELS; l++) {
        Level *L = &m->lv[l];
        for (int j = 0; j < L->depth; j++) {
            if (L->conv)
                convblock_bind(&L->cb[j], &b);
            else
                tblock_bind(&L->tb[j], &b);
        }
        if (L->has_down) conv_bind(&L->down, &b);
    }
    bn_bind(&m->norm, &b);
    lin_bind(&m->head, &b);
}

static Tensor flat(void *p, DType dt, Device dev, size_t n) {
    return tensor_1d(p, dt, dev, (int64_t)n);
}

void model_alloc(Model *m, Ctx *ctx, int train) {
    const size_t n = m->params.total, nb = m->buffers.total;
    m->dev = ctx->device, m->train = train;
    m->master = dev_malloc(ctx, n * sizeof(float));
    m->grads = train ? dev_malloc(ctx, n * sizeof(float)) : NULL;
    m->weights = m->dev == DEV_CUDA ? dev_malloc(ctx, n * sizeof(bf16_t)) : m->master;
    m->buf = dev_malloc(ctx, (nb ? nb : 1) * sizeof(float));
    if (train) model_zero_grads(m, ctx);
    bind_all(m);
}

void model_zero_grads(Model *m, Ctx *ctx) {
    GK_CHECK(m->grads, "model_zero_grads: the model was allocated without gradients");
    tensor_fill_bytes(flat(m->grads, DT_F32, m->dev, m->params.total), 0, ctx);
}

void model_sync_weights(Model *m, Ctx *ctx) {
    if (m->weights == (void *)m->master) return;
    size_t n = m->params.total;
    tensor_copy(flat(m->weights, DT_BF16, m->dev, n), flat(m->master, DT_F32, m->dev, n), ctx);
}

void model_get_params(const Model *m, float *host, Ctx *ctx) {
    size_t n = m->params.total;
    tensor_copy(flat(host, DT_F32, DEV_CPU, n), flat(m->master, DT_F32, m->dev, n), ctx);
}

void model_set_params(Model *m, const float *host, Ctx *ctx) {
    size_t n = m->params.total;
    tensor_copy(flat(m->master, DT_F32, m->dev, n), flat((void *)host, DT_F32, DEV_CPU, n), ctx);
    model_sync_weights(m, ctx);
}

void model_get_grads(const Model *m, float *host, Ctx *ctx) {
    GK_CHECK(m->grads, "model_get_grads: the model was allocated without gradients");
    size_t n = m->params.total;
    tensor_copy(flat(host, DT_F32, DEV_CPU, n), flat(m->grads, DT_F32, m->dev, n), ctx);
}

void model_get_buffers(const Model *m, float *host, Ctx *ctx) {
    size_t n = m->buffers.total;
    tensor_copy(flat(host, DT_F32, DEV_CPU, n), flat(m->buf, DT_F32, m->dev, n), ctx);
}

void model_set_buffers(Model *m, const float *host, Ctx *ctx) {
    size_t n = m->buffers.total;
    tensor_copy(flat(m->buf, DT_F32, m->dev, n), flat((void *)host, DT_F32, DEV_CPU, n), ctx);
}

void model_init(Model *m, uint64_t seed, Ctx *ctx) {
    float *p = mallocCheck(m->params.total * sizeof(float)),
          *b = mallocCheck((m->buffers.total + 1) * sizeof(float));
    params_init(&m->params, p, seed);
    /* layer scales start at their configured value (ParamInit has no constant kind; declared as ones) */
    for (int i = 0; i < m->params.n; i++) {
        const ParamEntry *e = &m->params.e[i];
        float s = ends_with(e->name, ".gamma_1") || ends_with(e->name, ".gamma_2") ? m->cfg.layer_scale
                  : ends_with(e->name, ".gamma")                                   ? m->cfg.layer_scale_conv
                                                                                   : 1.0f;
        if (s != 1.0f)
            for (size_t k = 0; k < e->numel; k++)
                p[e->offset + k] *= s;
    }
    params_init(&m->buffers, b, seed);
    memset(m->nbt, 0, (size_t)m->n_bn * sizeof(int64_t));
    model_set_params(m, p, ctx);
    model_set_buffers(m, b, ctx);
    free(p), free(b);
}

void model_free(Model *m, Ctx *ctx) {
    for (int l = 0; l < MODEL_LEVELS; l++)
        free(m->lv[l].cb), free(m->lv[l].tb);
    if (m->weights && m->weights != (void *)m->master) dev_free(ctx, m->weights);
    if (m->master) dev_free(ctx, m->master);
    if (m->grads) dev_free(ctx, m->grads);
    if (m->buf) dev_free(ctx, m->buf);
    arena_destroy(&m->arena);
    params_free(&m->params), params_free(&m->buffers);
    free(m->bn_rm), free(m->nbt);
    memset(m, 0, sizeof *m);
}

/* ---- geometry and the arena ---------------------------------------------------------------------------- */

void model_geometry(const Model *m, int H, int W, ModelGeom *g) {
    g->H1 = conv_out_size(&m->stem.conv0, H), g->W1 = conv_out_size(&m->stem.conv0, W);
    g->H2 = conv_out_size(&m->stem.conv3, g->H1), g->W2 = conv_out_size(&m->stem.conv3, g->W1);
    int h = g->H2, w = g->W2;
    for (int l = 0; l < MODEL_LEVELS; l++) {
        const Level *L = &m->lv[l];
        LevelGeom *lg = &g->lv[l];
        lg->H = h, lg->W = w;
        lg->nH = (h + L->window - 1) / L->window, lg->nW = (w + L->window - 1) / L->window;
        lg->L = L->window * L->window;
        if (L->has_down) h = conv_out_size(&L->down, h), w = conv_out_size(&L->down, w);
        lg->Hout = h, lg->Wout = w;
    }
}

static Tensor map4(Arena *a, int B, int H, int W, int C) {
    const int64_t s[4] = {B, H, W, C};
    return act_new(a, 4, s);
}

static int64_t max64(int64_t a, int64_t b) {
    return a > b ? a : b;
}

static void layout(Model *m, Arena *a, int B, int H, int W) {
    ModelGeom g;
    model_geometry(m, H, W, &g);
    const int train = m->train;
    int64_t biggest = (int64_t)B * g.H1 * g.W1 * m->stem.conv0.OC;
    stem_setup(&m->stem, a, B, H, W);
    for (int l = 0; l < MODEL_LEVELS; l++) {
        Level *L = &m->lv[l];
        const LevelGeom *lg = &g.lv[l];
        L->g = *lg;
        L->S = B * lg->nH * lg->nW;
        biggest = max64(biggest, (int64_t)B * lg->H * lg->W * L->C);
        if (L->conv) {
            for (int j = 0; j < L->depth; j++)
                convblock_setup(&L->cb[j], a, B, lg->H, lg->W);
        } else {
            const int64_t seq[3] = {L->S, lg->L, L->C};
            L->identity = lg->H == L->window && lg->W == L->window;
            biggest = max64(biggest, (int64_t)L->S * lg->L * L->C);
            L->seq_in = L->identity ? TENSOR_NONE : act_new(a, 3, seq);
            for (int j = 0; j < L->depth; j++)
                tblock_setup(&L->tb[j], a, L->S, lg->L, train);
            L->map_out = L->identity ? TENSOR_NONE : map4(a, B, lg->H, lg->W, L->C);
        }
        if (L->has_down) L->down_out = map4(a, B, lg->Hout, lg->Wout, 2 * L->C);
    }
    const LevelGeom *last = &g.lv[MODEL_LEVELS - 1];
    const int C3 = m->lv[MODEL_LEVELS - 1].C;
    bn_setup(&m->norm, a);
    m->feat = map4(a, B, last->H, last->W, C3);
    const int64_t pooled[2] = {B, C3};
    m->pooled = act_new(a, 2, pooled);
    if (!train) return;
    m->dpooled = act_new(a, 2, pooled);
    m->g0 = act_new(a, 1, &biggest);
    m->g1 = act_new(a, 1, &biggest);
    const size_t scratch = arena_mark(a);
    for (int l = 0; l < MODEL_LEVELS; l++) {
        Level *L = &m->lv[l];
        for (int j = 0; j < L->depth; j++) {
            if (L->conv)
                convblock_setup_scratch(&L->cb[j], a, B, L->g.H, L->g.W);
            else
                tblock_setup_scratch(&L->tb[j], a, L->S, L->g.L);
            arena_rewind(a, scratch);
        }
    }
}

void model_setup(Model *m, int B, int H, int W) {
    GK_CHECK(B >= 1 && H >= 1 && W >= 1, "model_setup: %d images of %d x %d", B, H, W);
    Arena dry = arena_dry(m->dev);
    layout(m, &dry, B, H, W);
    if (m->arena.capacity < dry.peak) {
        arena_destroy(&m->arena);
        m->arena = arena_create(m->dev, dry.peak);
    }
    arena_rewind(&m->arena, 0);
    layout(m, &m->arena, B, H, W);
    m->B = B, m->H = H, m->W = W;
}

/* ---- forward and backward ------------------------------------------------------------------------------ */

static Tensor as3(Tensor t, int64_t a, int64_t b, int64_t c) {
    const int64_t s[3] = {a, b, c};
    return view_as(t, 3, s);
}

static Tensor as4(Tensor t, int64_t a, int64_t b, int64_t c, int64_t d) {
    const int64_t s[4] = {a, b, c, d};
    return view_as(t, 4, s);
}

void model_forward(Model *m, Tensor logits, Tensor img, const Pass *pass, Ctx *ctx) {
    char d[128];
    GK_CHECK(m->B > 0, "model_forward: call model_setup first");
    GK_CHECK(img.ndim == 4 && img.shape[0] == m->B && img.shape[1] == m->H && img.shape[2] == m->W &&
                 img.shape[3] == m->cfg.in_chans,
             "model_forward: images %s, expected [%d, %d, %d, %d] (model_setup's sizes)",
             tensor_describe(img, d, sizeof d), m->B, m->H, m->W, m->cfg.in_chans);
    GK_CHECK(!pass->train || m->train, "model_forward: a training pass needs model_alloc(..., train = 1)");
    m->img = img, m->pass = *pass;
    if (pass->train)
        for (int i = 0; i < m->n_bn; i++)
            m->nbt[i]++;
    stem_forward(&m->stem, img, pass, ctx);
    Tensor x = m->stem.y4;
    const int B = m->B;
    for (int l = 0; l < MODEL_LEVELS; l++) {
        Level *L = &m->lv[l];
        if (L->conv) {
            for (int j = 0; j < L->depth; j++) {
                convblock_forward(&L->cb[j], x, pass, ctx);
                x = L->cb[j].out;
            }
        } else {
            Tensor seq = L->seq_in;
            if (L->identity)
                seq = as3(x, L->S, L->g.L, L->C);
            else
                window_partition(seq, x, L->window, ctx);
            for (int j = 0; j < L->depth; j++) {
                tblock_forward(&L->tb[j], seq, pass, ctx);
                seq = L->tb[j].out;
            }
            if (L->identity) {
                x = as4(seq, B, L->g.H, L->g.W, L->C);
            } else {
                window_reverse(L->map_out, seq, L->window, ctx);
                x = L->map_out;
            }
        }
        L->out_map = x;
        if (L->has_down) {
            conv_forward(&L->down, L->down_out, x, ctx);
            x = L->down_out;
        }
    }
    bn_forward(&m->norm, m->feat, x, pass->train, ctx);
    avgpool_forward(m->pooled, as3(m->feat, B, m->feat.shape[1] * m->feat.shape[2], m->feat.shape[3]), ctx);
    lin_forward(&m->head, logits, m->pooled, ctx);
}

void model_backward(Model *m, Tensor dimg, Tensor dlogits, Ctx *ctx) {
    GK_CHECK(m->train && m->pass.train, "model_backward: needs a training forward of a model with gradients");
    const int B = m->B;
    const Pass *pass = &m->pass;
    Tensor cur = m->g0, oth = m->g1, t;
#define SWAP() (t = cur, cur = oth, oth = t)
    lin_backward(&m->head, m->dpooled, dlogits, m->pooled, 0, ctx);
    const int64_t hw = m->feat.shape[1] * m->feat.shape[2], C3 = m->feat.shape[3];
    avgpool_backward(as3(cur, B, hw, C3), m->dpooled, ctx);
    bn_backward(&m->norm, view_as(oth, 4, m->feat.shape), view_as(cur, 4, m->feat.shape),
                m->lv[MODEL_LEVELS - 1].out_map, ctx);
    SWAP();
    for (int l = MODEL_LEVELS - 1; l >= 0; l--) {
        Level *L = &m->lv[l];
        const int H = L->g.H, W = L->g.W;
        if (L->has_down) {
            conv_backward(&L->down, as4(oth, B, H, W, L->C), view_as(cur, 4, L->down_out.shape), L->out_map,
                          ctx);
            SWAP();
        }
        if (L->conv) {
            Tensor d = as4(cur, B, H, W, L->C);
            for (int j = L->depth - 1; j >= 0; j--)
                convblock_backward(&L->cb[j], d, pass, ctx);
        } else {
            if (!L->identity) {
                window_partition(as3(oth, L->S, L->g.L, L->C), as4(cur, B, H, W, L->C), L->window, ctx);
                SWAP();
            }
            Tensor dseq = as3(cur, L->S, L->g.L, L->C);
            for (int j = L->depth - 1; j >= 0; j--)
                tblock_backward(&L->tb[j], dseq, pass, ctx);
            if (!L->identity) {
                window_reverse(as4(oth, B, H, W, L->C), dseq, L->window, ctx);
                SWAP();
            }
        }
    }
    stem_backward(&m->stem, dimg, view_as(cur, 4, m->stem.y4.shape), oth, cur, m->img, ctx);
#undef SWAP
}
