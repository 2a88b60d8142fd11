/* tblock.c: the transformer-style block of levels 2-3 (spec 2.5) on window sequences [S, L, C]:
 *   h   = x + DropPath(gamma_1 * Mixer(LN_1(x)))
 *   out = h + DropPath(gamma_2 * fc2(GELU(fc1(LN_2(h)))))      exact erf GELU, hidden = C * mlp_ratio
 * The two drop paths draw independently (drop-path branches 2k and 2k + 1 for block k) and per window
 * sequence. The backward runs on the residual stream's gradient in place: the identity path passes it
 * through, each branch adds its input gradient to it. */
#include <stdio.h>

#include "blocks.h"
#include "core.h"

static Tensor seq3(Arena *a, int S, int L, int C) {
    const int64_t s[3] = {S, L, C};
    return act_new(a, 3, s);
}

void tblock_declare(TBlock *t, ParamTable *pt, const char *prefix, const MixerSpec *spec, float mlp_ratio,
                    float layer_scale, float drop_path, int index) {
    char p[PARAM_NAME_MAX];
    const int C = spec->C;
    t->hidden = (int)((float)C * mlp_ratio);
    t->drop_path = drop_path, t->index = index;
    snprintf(p, sizeof p, "%snorm1.", prefix);
    ln_declare(&t->norm1, pt, p, C);
    snprintf(p, sizeof p, "%smixer.", prefix);
    mixer_declare(&t->mixer, pt, p, spec);
    snprintf(p, sizeof p, "%snorm2.", prefix);
    ln_declare(&t->norm2, pt, p, C);
    snprintf(p, sizeof p, "%smlp.fc1.", prefix);
    lin_declare(&t->fc1, pt, p, C, t->hidden, 1);
    snprintf(p, sizeof p, "%smlp.fc2.", prefix);
    lin_declare(&t->fc2, pt, p, t->hidden, C, 1);
    /* initialised to 1 here; model_init scales them to layer_scale (ParamInit has no constant kind) */
    const int64_t s[1] = {C};
    t->i_g1 = t->i_g2 = -1;
    if (layer_scale > 0.0f) {
        t->i_g1 = params_add(pt, prefix, "gamma_1", 1, s, PARAM_NO_DECAY, INIT_ONE, 0.0f);
        t->i_g2 = params_add(pt, prefix, "gamma_2", 1, s, PARAM_NO_DECAY, INIT_ONE, 0.0f);
    }
}

void tblock_bind(TBlock *t, const Binder *b) {
    ln_bind(&t->norm1, b), ln_bind(&t->norm2, b), lin_bind(&t->fc1, b), lin_bind(&t->fc2, b);
    mixer_bind(&t->mixer, b);
    t->g1 = bind_w(b, t->i_g1), t->g2 = bind_w(b, t->i_g2);
    t->gg1 = bind_g(b, t->i_g1), t->gg2 = bind_g(b, t->i_g2);
}

void tblock_setup(TBlock *t, Arena *a, int S, int L, int train) {
    const int C = t->fc2.out;
    const int64_t M = (int64_t)S * L;
    ln_setup(&t->norm1, a, M), ln_setup(&t->norm2, a, M);
    t->ln1 = seq3(a, S, L, C), t->m = seq3(a, S, L, C), t->h = seq3(a, S, L, C), t->ln2 = seq3(a, S, L, C);
    t->f1 = seq3(a, S, L, t->hidden), t->f1a = seq3(a, S, L, t->hidden), t->f2 = seq3(a, S, L, C);
    t->out = seq3(a, S, L, C);
    mixer_setup(&t->mixer, a, S, L, train);
}

void tblock_setup_scratch(TBlock *t, Arena *a, int S, int L) {
    const int C = t->fc2.out;
    t->d_br = seq3(a, S, L, C), t->d_ln = seq3(a, S, L, C), t->d_tmp = seq3(a, S, L, C);
    t->d_f1 = seq3(a, S, L, t->hidden);
    mixer_setup_scratch(&t->mixer, a, S, L);
}

void tblock_forward(TBlock *t, Tensor x, const Pass *p, Ctx *ctx) {
    t->in = x;
    ln_forward(&t->norm1, t->ln1, x, ctx);
    mixer_forward(&t->mixer, t->m, t->ln1, ctx);
    residual_forward(t->h, x, t->m, t->g1, pass_droppath(p, t->drop_path, 2 * t->index), ctx);
    ln_forward(&t->norm2, t->ln2, t->h, ctx);
    lin_forward(&t->fc1, t->f1, t->ln2, ctx);
    act_forward(t->f1a, t->f1, ACT_GELU, ctx);
    lin_forward(&t->fc2, t->f2, t->f1a, ctx);
    residual_forward(t->out, t->h, t->f2, t->g2, pass_droppath(p, t->drop_path, 2 * t->index + 1), ctx);
}

void tblock_backward(TBlock *t, Tensor dstream, const Pass *p, Ctx *ctx) {
    DropPath dp1 = pass_droppath(p, t->drop_path, 2 * t->index);
    DropPath dp2 = pass_droppath(p, t->drop_path, 2 * t->index + 1);
    residual_backward(t->d_br, t->gg2, dstream, t->f2, t->g2, dp2, ctx);
    lin_backward(&t->fc2, t->d_f1, t->d_br, t->f1a, 0, ctx);
    act_backward(t->d_f1, t->d_f1, t->f1, ACT_GELU, ctx);
    lin_backward(&t->fc1, t->d_ln, t->d_f1, t->ln2, 0, ctx);
    ln_backward(&t->norm2, t->d_tmp, t->d_ln, t->h, ctx);
    add_into(dstream, t->d_tmp, ctx); /* now the gradient of h */
    residual_backward(t->d_br, t->gg1, dstream, t->m, t->g1, dp1, ctx);
    mixer_backward(&t->mixer, t->d_ln, t->d_br, t->ln1, ctx);
    ln_backward(&t->norm1, t->d_tmp, t->d_ln, t->in, ctx);
    add_into(dstream, t->d_tmp, ctx); /* now the gradient of x */
}
