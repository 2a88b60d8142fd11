/* blocks.h: the blocks of MambaVision / GKAVision (spec gkavision.md section 2), internal to vision/.
 * Letters: B images, H x W a map (NHWC), C channels, S window sequences, L tokens per window, M = S L tokens.
 *
 * Every block follows one life cycle: *_declare (parameters, under their PyTorch names), *_bind (views into
 * the flat buffers), *_setup (the activations its forward keeps for the backward, from the model's arena),
 * *_setup_scratch (the backward's temporaries; the model hands every block the same region, since blocks
 * run their backward one at a time), *_forward, *_backward.
 * Backward convention: a block on the residual stream updates the stream's gradient in place, from the
 * gradient of its output to the gradient of its input; parameter gradients accumulate. */
#ifndef GKA_VISION_BLOCKS_H
#define GKA_VISION_BLOCKS_H

#include "gka.h"
#include "layers.h"

/* What one forward pass is: training (batch statistics, drop path) or inference, and the key of its
 * drop-path draws. */
typedef struct Pass {
    int train;
    uint64_t seed, step;
} Pass;

/* The drop path of residual branch `branch` in this pass: rate 0 in inference. Block k of the network (over
 * all levels) owns branches 2k (and 2k + 1 for the MLP of a transformer block). The counter gives every
 * (step, branch) its own range of 2^32 samples: step < 2^24, branch < 256. */
DropPath pass_droppath(const Pass *p, float rate, int branch);

/* ---- stem: conv 3x3 s2 (no bias) - BN(eps 1e-4) - ReLU, twice (spec 2.1) ------------------------------- */
typedef struct Stem {
    Conv conv0, conv3;
    Bn bn1, bn4;
    Tensor y0, y1, y3, y4; /* conv0 out, bn1 out, conv3 out, bn4 out = the stem's output */
} Stem;
void stem_declare(Stem *s, ParamTable *pt, ParamTable *bt, int in_chans, int in_dim, int dim, int stride);
void stem_bind(Stem *s, const Binder *b);
void stem_setup(Stem *s, Arena *a, int B, int H, int W);
void stem_forward(Stem *s, Tensor img, const Pass *p, Ctx *ctx);
/* dy: gradient of the stem's output; g0, g1: scratch of at least the stem's largest map each, g0 apart from
 * dy, g1 possibly dy itself (read before g1 is written); dimg (the input's gradient) may be TENSOR_NONE. */
void stem_backward(Stem *s, Tensor dimg, Tensor dy, Tensor g0, Tensor g1, Tensor img, Ctx *ctx);

/* ---- ConvBlock (levels 0-1, spec 2.2): x + DropPath(gamma * BN(conv(GELU_tanh(BN(conv(x)))))) per image --
 */
typedef struct ConvBlock {
    Conv conv1, conv2;
    Bn norm1, norm2;
    int i_gamma, index; /* index: k, the block's position in the network */
    float drop_path;
    Tensor gamma, ggamma;
    Tensor in, t1, t2, t3, t4, out; /* in: the forward's input (a view, not owned) */
    Tensor s1, s2;                  /* backward scratch */
} ConvBlock;
void convblock_declare(ConvBlock *c, ParamTable *pt, ParamTable *bt, const char *prefix, int C,
                       float layer_scale, float drop_path, int index);
void convblock_bind(ConvBlock *c, const Binder *b);
void convblock_setup(ConvBlock *c, Arena *a, int B, int H, int W);
void convblock_setup_scratch(ConvBlock *c, Arena *a, int B, int H, int W);
void convblock_forward(ConvBlock *c, Tensor x, const Pass *p, Ctx *ctx);
void convblock_backward(ConvBlock *c, Tensor dstream, const Pass *p, Ctx *ctx);

/* ---- mixers: [S, L, C] -> [S, L, C] ----------------------------------------------------------------------
 */
typedef enum { MIX_ATTENTION = 0, MIX_MAMBA, MIX_GKA } MixerKind;

/* Multi-head self-attention with qkv and output projections (spec 2.6). */
typedef struct AttnMixer {
    Lin qkv, proj;
    int heads;
    Tensor qkv_out, att, o;   /* saved */
    Tensor d_o, d_qkv, d_att; /* scratch */
} AttnMixer;

/* The MambaVision mixer (spec 2.7): d_state N = 8, d_conv 3, expand 1, dt_rank R = ceil(C / 16). in_proj
 * and x_proj run as separate GEMMs on row blocks of their weights, so that x, z, dt, Bm and Cm come out as
 * separate tensors without a split. */
typedef struct MambaMixer {
    int C, Ch, R, N;
    int i_in, i_xp, i_dtw, i_dtb, i_alog, i_D, i_out, i_cx, i_cz;
    Tensor w_inx, w_inz, w_xdt, w_xB, w_xC, w_dt, b_dt, w_out, w_cx, w_cz; /* compute copies */
    Tensor A_log, Dp, dt_bias;                                             /* float32 masters */
    Tensor g_inx, g_inz, g_xdt, g_xB, g_xC, g_dt, gb_dt, g_out, g_cx, g_cz, gA_log, gD;
    Tensor x, z, xc, zc, dt, Bm, Cm, dpre, y, yz, states;             /* saved */
    Tensor d_yz, d_y, d_zc, d_xc, d_dpre, d_dt, d_Bm, d_Cm, d_x, d_z; /* scratch */
} MambaMixer;

/* One GKA layer (spec 7.3), or with `bidirectional` the sum of one on the sequence and one on the reversed
 * sequence (parameters under "mixer.reverse."). */
typedef struct GkaMixer {
    GkaLayer fwd, rev;
    int bidirectional;
    Tensor u_rev, o_rev, o_back; /* saved: reversed input, reverse layer's output, that output re-reversed */
    Tensor d_rev, du_rev;        /* scratch */
} GkaMixer;

typedef struct Mixer {
    MixerKind kind;
    AttnMixer attn;
    MambaMixer mamba;
    GkaMixer gka;
} Mixer;

typedef struct MixerSpec {
    MixerKind kind;
    int C, heads;  /* attention heads */
    GkaConfig gka; /* for MIX_GKA */
    int bidirectional;
} MixerSpec;

void mixer_declare(Mixer *m, ParamTable *pt, const char *prefix, const MixerSpec *spec);
void mixer_bind(Mixer *m, const Binder *b);
void mixer_setup(Mixer *m, Arena *a, int S, int L, int train);
void mixer_setup_scratch(Mixer *m, Arena *a, int S, int L);
void mixer_forward(Mixer *m, Tensor out, Tensor inp, Ctx *ctx);
/* dinp written. */
void mixer_backward(Mixer *m, Tensor dinp, Tensor dout, Tensor inp, Ctx *ctx);

/* ---- transformer-style block (levels 2-3, spec 2.5), drop path per window sequence ----------------------
 */
typedef struct TBlock {
    Ln norm1, norm2;
    Mixer mixer;
    Lin fc1, fc2;
    int i_g1, i_g2, index, hidden; /* index: k, the block's position in the network */
    float drop_path;
    Tensor g1, g2, gg1, gg2;
    Tensor in, ln1, m, h, ln2, f1, f1a, f2, out; /* in: the forward's input (a view, not owned) */
    Tensor d_br, d_ln, d_tmp, d_f1;              /* scratch */
} TBlock;
void tblock_declare(TBlock *t, ParamTable *pt, const char *prefix, const MixerSpec *spec, float mlp_ratio,
                    float layer_scale, float drop_path, int index);
void tblock_bind(TBlock *t, const Binder *b);
void tblock_setup(TBlock *t, Arena *a, int S, int L, int train);
void tblock_setup_scratch(TBlock *t, Arena *a, int S, int L);
void tblock_forward(TBlock *t, Tensor x, const Pass *p, Ctx *ctx);
void tblock_backward(TBlock *t, Tensor dstream, const Pass *p, Ctx *ctx);

#endif
