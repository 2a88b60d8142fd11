/* model.h: MambaVision and GKAVision (spec gkavision.md sections 1-2, 4, 7.3), one network definition for
 * both backends, written against ops.h and gka.h.
 *
 *   stem -> level 0 (ConvBlocks) -> down -> level 1 (ConvBlocks) -> down -> level 2 (windows; Mamba or GKA
 *   mixer blocks, then attention blocks) -> down -> level 3 (the same) -> BatchNorm -> token mean -> head
 *
 * Typical use:
 *   ModelConfig cfg; model_config_load(&cfg, "gkavision_t", &err);
 *   Model m; model_declare(&m, &cfg);           the parameter and buffer tables (no memory yet)
 *   model_alloc(&m, ctx, 1);                    flat buffers on ctx's device (with gradients: 1)
 *   model_init(&m, seed, ctx);                  spec 2.10 / 7.3, or model_load(&m, path, ctx, &err)
 *   model_setup(&m, B, H, W);                   the activation arena, sized by a dry run
 *   model_forward(&m, logits, images, &pass, ctx);
 *   model_backward(&m, TENSOR_NONE, dlogits, ctx);
 * Images are NHWC [B, H, W, in_chans]; logits [B, num_classes]; on CUDA both bf16, on the CPU float32.
 *
 * The decision a reader must know: every parameter is a named view into ONE table (PyTorch state_dict
 * names, spec 2.11), so the optimizer, all-reduce and checkpoints each see one flat buffer; BatchNorm's
 * running statistics live in a second table (`buffers`) the optimizer never sees, and its
 * num_batches_tracked counters, int64 scalars that feed no computation, are host integers (`nbt`) that
 * count training forwards. All three are saved and loaded with the weights (weights_io.c). */
#ifndef GKA_VISION_MODEL_H
#define GKA_VISION_MODEL_H

#include <stdint.h>

#include "blocks.h"
#include "model_config.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Map sizes at one input resolution. */
typedef struct LevelGeom {
    int H, W;       /* the level's map */
    int nH, nW, L;  /* windows per column and row, tokens per window (transformer levels) */
    int Hout, Wout; /* after its downsample (= H, W at the last level) */
} LevelGeom;
typedef struct ModelGeom {
    int H1, W1, H2, W2; /* after the first and the second stem conv */
    LevelGeom lv[MODEL_LEVELS];
} ModelGeom;

typedef struct Level {
    int C, depth, window, conv, has_down;
    LevelGeom g;
    int S, identity; /* window sequences in the batch; identity: one window covers the map exactly */
    ConvBlock *cb;   /* conv levels */
    TBlock *tb;      /* transformer levels */
    Conv down;
    Tensor seq_in, map_out; /* partition / reverse buffers (absent when identity) */
    Tensor out_map, down_out;
} Level;

typedef struct Model {
    ModelConfig cfg;
    ParamTable params;  /* trained */
    ParamTable buffers; /* BatchNorm running_mean / running_var */
    int n_bn;
    int *bn_rm;   /* per BatchNorm: its running_mean's index in `buffers` (its name gives the prefix) */
    int64_t *nbt; /* per BatchNorm: num_batches_tracked */
    Stem stem;
    Level lv[MODEL_LEVELS];
    Bn norm;
    Lin head;
    /* memory */
    Device dev;
    int train;             /* gradients and backward buffers allocated */
    float *master, *grads; /* float32, params.total each */
    void *weights;         /* what the ops read: master on the CPU, a bf16 copy on CUDA */
    float *buf;            /* float32, buffers.total */
    int B, H, W;           /* the sizes model_setup prepared */
    Arena arena;
    Tensor img, feat, pooled, dpooled, g0, g1; /* g0, g1: the residual stream's gradient, ping-pong */
    Pass pass;                                 /* of the last forward */
} Model;

void model_declare(Model *m, const ModelConfig *cfg);
/* Flat buffers on ctx's device (gradients too when train) and every view bound to them. */
void model_alloc(Model *m, Ctx *ctx, int train);
/* The initialisation of spec 2.10 (and 7.3 for GKA), from Philox(seed); running statistics 0 and 1. */
void model_init(Model *m, uint64_t seed, Ctx *ctx);
/* Sizes the activation arena for B images of H x W by a dry run; reuses the arena when it is large enough. */
void model_setup(Model *m, int B, int H, int W);
/* pass->train: batch statistics (running ones updated), drop path, and the activations the backward needs;
 * otherwise inference (running statistics, no drop path). The images must stay unchanged until the
 * backward. */
void model_forward(Model *m, Tensor logits, Tensor img, const Pass *pass, Ctx *ctx);
/* After a training forward: parameter gradients accumulated; dimg (may be TENSOR_NONE) written. */
void model_backward(Model *m, Tensor dimg, Tensor dlogits, Ctx *ctx);
void model_zero_grads(Model *m, Ctx *ctx);
/* After the master weights change (optimizer step, load): refreshes the bf16 copy on CUDA. */
void model_sync_weights(Model *m, Ctx *ctx);
void model_free(Model *m, Ctx *ctx);

/* Host copies of the flat buffers (params.total or buffers.total floats). */
void model_get_params(const Model *m, float *host, Ctx *ctx);
void model_set_params(Model *m, const float *host, Ctx *ctx); /* and syncs the compute copy */
void model_get_grads(const Model *m, float *host, Ctx *ctx);
void model_get_buffers(const Model *m, float *host, Ctx *ctx);
void model_set_buffers(Model *m, const float *host, Ctx *ctx);

void model_geometry(const Model *m, int H, int W, ModelGeom *g);

/* ---- size and cost (model_info.c) ----------------------------------------------------------------------
 * MACs per image at H x W, as spec 5.2 counts them: conv and linear weights only (no bias, norm or
 * activation); the attention products (Q K^T and A V), and the recurrent work of the Mamba scan (3 L Ch N:
 * state update and readout, plus its two width-3 convs) and of GKA (its short convs, and per token and
 * head n K^2 for the Chebyshev solve + 2 K^2 + 2 K V for the state updates, ridge and readout, spec 7.4)
 * separately. Padded window tokens count, as they are computed. */
typedef struct StageCost {
    char name[32];
    int H, W, C, depth;
    char blocks[64]; /* "4 mamba + 4 attention" */
    int64_t params, macs, attn_macs, recur_macs;
} StageCost;
typedef struct ModelCost {
    int n;
    StageCost st[MODEL_LEVELS + 2]; /* stem, levels 0-3, norm + head */
    int64_t params, params_decay, params_no_decay, buffers, macs, attn_macs, recur_macs;
} ModelCost;
void model_cost(const Model *m, int H, int W, ModelCost *c);

/* ---- weights (weights_io.c) ------------------------------------------------------------------------------
 * safetensors with the PyTorch names and shapes (Conv2d weights transposed to [OC, IC, K, K]), parameters
 * and running statistics in float32 or bf16 (bf16 = 1), num_batches_tracked as int64 scalars. Loading checks
 * the whole file against the model before it changes anything, and names the first tensor that is missing,
 * unexpected, of another shape or of a dtype it cannot hold; the parser names malformed files. */
int model_save(const Model *m, const char *path, int bf16, Ctx *ctx, GkErr *err);
int model_load(Model *m, const char *path, Ctx *ctx, GkErr *err);

#ifdef __cplusplus
}
#endif
#endif
