/* conv_blocks.c: the convolutional part of the network: the stem (spec 2.1) and the ConvBlock of levels 0-1
 * (spec 2.2), on NHWC maps. BatchNorm fuses its activation (ReLU in the stem, GELU-tanh inside ConvBlock);
 * its backward recomputes the pre-activation, so only the BN inputs and outputs are kept. */
#include <stdio.h>

#include "blocks.h"
#include "core.h"

DropPath pass_droppath(const Pass *p, float rate, int branch) {
    GK_CHECK(p->step < (1ull << 24) && branch >= 0 && branch < 256,
             "drop path: step %llu or branch %d out of range", (unsigned long long)p->step, branch);
    DropPath dp = {p->train ? rate : 0.0f, p->seed, (p->step << 40) | ((uint64_t)branch << 32)};
    return dp;
}

static Tensor map4(Arena *a, int B, int H, int W, int C) {
    const int64_t s[4] = {B, H, W, C};
    return act_new(a, 4, s);
}

/* ---- stem ------------------------------------------------------------------------------------------- */

#define STEM_BN_EPS 1e-4f

void stem_declare(Stem *s, ParamTable *pt, ParamTable *bt, int in_chans, int in_dim, int dim, int stride) {
    conv_declare(&s->conv0, pt, "patch_embed.conv_down.0.", in_chans, in_dim, 3, stride >= 2 ? 2 : 1, 0);
    bn_declare(&s->bn1, pt, bt, "patch_embed.conv_down.1.", in_dim, STEM_BN_EPS, ACT_RELU);
    conv_declare(&s->conv3, pt, "patch_embed.conv_down.3.", in_dim, dim, 3, stride >= 4 ? 2 : 1, 0);
    bn_declare(&s->bn4, pt, bt, "patch_embed.conv_down.4.", dim, STEM_BN_EPS, ACT_RELU);
}

void stem_bind(Stem *s, const Binder *b) {
    conv_bind(&s->conv0, b), bn_bind(&s->bn1, b), conv_bind(&s->conv3, b), bn_bind(&s->bn4, b);
}

void stem_setup(Stem *s, Arena *a, int B, int H, int W) {
    const int H1 = conv_out_size(&s->conv0, H), W1 = conv_out_size(&s->conv0, W);
    const int H2 = conv_out_size(&s->conv3, H1), W2 = conv_out_size(&s->conv3, W1);
    s->y0 = map4(a, B, H1, W1, s->conv0.OC), s->y1 = map4(a, B, H1, W1, s->conv0.OC);
    s->y3 = map4(a, B, H2, W2, s->conv3.OC), s->y4 = map4(a, B, H2, W2, s->conv3.OC);
    bn_setup(&s->bn1, a), bn_setup(&s->bn4, a);
}

void stem_forward(Stem *s, Tensor img, const Pass *p, Ctx *ctx) {
    conv_forward(&s->conv0, s->y0, img, ctx);
    bn_forward(&s->bn1, s->y1, s->y0, p->train, ctx);
    conv_forward(&s->conv3, s->y3, s->y1, ctx);
    bn_forward(&s->bn4, s->y4, s->y3, p->train, ctx);
}

void stem_backward(Stem *s, Tensor dimg, Tensor dy, Tensor g0, Tensor g1, Tensor img, Ctx *ctx) {
    Tensor d3 = view_as(g0, 4, s->y3.shape), d1 = view_as(g1, 4, s->y1.shape),
           d0 = view_as(g0, 4, s->y0.shape);
    bn_backward(&s->bn4, d3, dy, s->y3, ctx);
    conv_backward(&s->conv3, d1, d3, s->y1, ctx);
    bn_backward(&s->bn1, d0, d1, s->y0, ctx);
    conv_backward(&s->conv0, dimg, d0, img, ctx);
}

/* ---- ConvBlock ----------------------------------------------------------------------------------------- */

#define CONV_BN_EPS 1e-5f

void convblock_declare(ConvBlock *c, ParamTable *pt, ParamTable *bt, const char *prefix, int C,
                       float layer_scale, float drop_path, int index) {
    char p[PARAM_NAME_MAX];
    snprintf(p, sizeof p, "%sconv1.", prefix);
    conv_declare(&c->conv1, pt, p, C, C, 3, 1, 1);
    snprintf(p, sizeof p, "%snorm1.", prefix);
    bn_declare(&c->norm1, pt, bt, p, C, CONV_BN_EPS, ACT_GELU_TANH);
    snprintf(p, sizeof p, "%sconv2.", prefix);
    conv_declare(&c->conv2, pt, p, C, C, 3, 1, 1);
    snprintf(p, sizeof p, "%snorm2.", prefix);
    bn_declare(&c->norm2, pt, bt, p, C, CONV_BN_EPS, ACT_NONE);
    const int64_t s[1] = {C};
    /* initialised to 1 here; model_init scales it to layer_scale_conv (ParamInit has no constant kind) */
    c->i_gamma =
        layer_scale > 0.0f ? params_add(pt, prefix, "gamma", 1, s, PARAM_NO_DECAY, INIT_ONE, 0.0f) : -1;
    c->drop_path = drop_path, c->index = index;
}

void convblock_bind(ConvBlock *c, const Binder *b) {
    conv_bind(&c->conv1, b), conv_bind(&c->conv2, b), bn_bind(&c->norm1, b), bn_bind(&c->norm2, b);
    c->gamma = bind_w(b, c->i_gamma), c->ggamma = bind_g(b, c->i_gamma);
}

void convblock_setup(ConvBlock *c, Arena *a, int B, int H, int W) {
    const int C = c->conv1.OC;
    c->t1 = map4(a, B, H, W, C), c->t2 = map4(a, B, H, W, C), c->t3 = map4(a, B, H, W, C);
    c->t4 = map4(a, B, H, W, C), c->out = map4(a, B, H, W, C);
    bn_setup(&c->norm1, a), bn_setup(&c->norm2, a);
}

void convblock_setup_scratch(ConvBlock *c, Arena *a, int B, int H, int W) {
    c->s1 = map4(a, B, H, W, c->conv1.OC), c->s2 = map4(a, B, H, W, c->conv1.OC);
}

void convblock_forward(ConvBlock *c, Tensor x, const Pass *p, Ctx *ctx) {
    c->in = x;
    conv_forward(&c->conv1, c->t1, x, ctx);
    bn_forward(&c->norm1, c->t2, c->t1, p->train, ctx);
    conv_forward(&c->conv2, c->t3, c->t2, ctx);
    bn_forward(&c->norm2, c->t4, c->t3, p->train, ctx);
    residual_forward(c->out, x, c->t4, c->gamma, pass_droppath(p, c->drop_path, 2 * c->index), ctx);
}

void convblock_backward(ConvBlock *c, Tensor dstream, const Pass *p, Ctx *ctx) {
    residual_backward(c->s1, c->ggamma, dstream, c->t4, c->gamma,
                      pass_droppath(p, c->drop_path, 2 * c->index), ctx);
    bn_backward(&c->norm2, c->s2, c->s1, c->t3, ctx);
    conv_backward(&c->conv2, c->s1, c->s2, c->t2, ctx);
    bn_backward(&c->norm1, c->s2, c->s1, c->t1, ctx);
    conv_backward(&c->conv1, c->s1, c->s2, c->in, ctx);
    add_into(dstream, c->s1, ctx);
}
