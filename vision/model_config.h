/* model_config.h: a network's architecture as read from a model file in configs/ (darknet-style, config.h).
 *
 *   [model]                            MambaVision's constructor arguments (spec gkavision.md sections 1, 4)
 *   in_chans, num_classes, img_size    input channels, classes, the resolution `gkav info` reports at
 *   dim, in_dim                        level-0 channels (levels double them), stem's first conv width
 *   stem_stride = 4                    4: both stem convs stride 2 (MambaVision); 2: only the first; 1: none
 *   depths, num_heads, window_size     four comma-separated values each, one per level
 *   mlp_ratio, drop_path_rate          4, 0.2 for T
 *   layer_scale, layer_scale_conv      0 means none (T, T2, S); 1e-5 for B, L, L2 (transformer blocks)
 *   [gka]                              GKAVision (spec 7.3); absent: plain MambaVision
 *   replace_mamba = true               the GKA layer replaces the Mamba mixers
 *   replace_attention = false          ... and the attention mixers too (spec 7.2 configs 5-6)
 *   heads, head_dim                    for levels 2 and 3; q/k/v width = heads x head_dim
 *   use_gate = false                   output gate g_proj + gated RMSNorm
 *   num_iter = 30, ridge_ratio = 0.02  the Chebyshev solve
 *   bidirectional = false              false: causal over the window's raster order (spec 7.3); true: the sum
 *                                      of a causal GKA on the sequence and a second one, with its own
 *                                      parameters under mixer.reverse., on the reversed sequence
 * Keys are the timm/PyTorch argument names. Every malformed value and every unknown key stops with one
 * message naming file:line (config.h); a value that is well formed but impossible for the architecture (3
 * heads on 80 channels) names the file and the key. */
#ifndef GKA_VISION_MODEL_CONFIG_H
#define GKA_VISION_MODEL_CONFIG_H

#include "config.h"
#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MODEL_LEVELS 4
#define MODEL_NAME_MAX 64
#define MODEL_PATH_MAX 512

typedef struct ModelConfig {
    char name[MODEL_NAME_MAX]; /* the file's stem: "gkavision_t" */
    char path[MODEL_PATH_MAX]; /* the file it was read from */
    int in_chans, num_classes, img_size;
    int dim, in_dim, stem_stride;
    int depths[MODEL_LEVELS], num_heads[MODEL_LEVELS], window[MODEL_LEVELS];
    float mlp_ratio, drop_path_rate, layer_scale, layer_scale_conv;
    /* GKAVision */
    int gka_replace_mamba, gka_replace_attention;
    int gka_heads[MODEL_LEVELS], gka_head_dim[MODEL_LEVELS]; /* levels 2-3 (0-1 have no mixer) */
    int gka_use_gate, gka_num_iter, gka_bidirectional;
    float gka_ridge_ratio;
} ModelConfig;

/* Loads configs/<name>.cfg, or the file at name_or_path when it contains a '/' or ends in ".cfg". The
 * folder is $GKA_CONFIG_DIR, else the source tree's configs/ (compiled in), else ./configs. */
int model_config_load(ModelConfig *cfg, const char *name_or_path, GkErr *err);
/* The same in two steps, for callers that override keys (config_set) before reading: model_config_open
 * adds the file to c; model_config_read reads, checks, and fails on keys no getter asked for. */
int model_config_open(Config *c, const char *name_or_path, char *path_out, size_t path_len, GkErr *err);
int model_config_read(ModelConfig *cfg, const Config *c, const char *path, GkErr *err);

/* Channels of level l: dim * 2^l. */
static inline int model_level_channels(const ModelConfig *cfg, int l) {
    return cfg->dim << l;
}
/* Blocks j < first_attention use the Mamba (or GKA) mixer, the rest attention (spec 2.5). */
static inline int model_first_attention(int depth) {
    return (depth + 1) / 2;
}

#ifdef __cplusplus
}
#endif
#endif
