/* gka.h: libgka, the Gated KalmaNet layer as a C library (CPU and CUDA, forward and backward), usable
 * without the vision code. The layer is spec gka.md section 2; its core operator section 3.
 *
 *   y = o_proj( norm( GKA(q^, beta k^, beta v, g, alpha) ) [* silu(g_proj x)] )
 *   q, k, v = silu(causal_conv(x W^T)), heads expanded to H, q and k L2-normalised,
 *   beta = sigmoid(x Wb^T + bb) + 1e-6, alpha = sigmoid(x Wal^T + bal), g = -exp(A_log) softplus(x Wa^T + dt_bias).
 *
 * Typical use (see README "libgka"):
 *   GkaConfig cfg; gka_config_defaults(&cfg, hidden, heads, head_dim);
 *   ParamTable pt = {0}; GkaLayer layer; gka_layer_declare(&layer, &pt, "mixer.", &cfg);
 *   ... allocate pt.total floats of parameters (and gradients), gka_layer_bind(&layer, params, grads, ...);
 *   gka_layer_init(&layer, seed); gka_layer_setup(&layer, &arena, S, L, device);
 *   gka_layer_forward(&layer, y, x, ctx); gka_layer_backward(&layer, dx, dy, x, ctx);
 */
#ifndef GKA_H
#define GKA_H

#include <stddef.h>
#include <stdint.h>

#include "arena.h"
#include "context.h"
#include "gka_op.h"
#include "params.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct GkaConfig {
    int hidden_size;    /* d */
    int num_heads;      /* H: heads of the core operator (states, gates, norm, o_proj) */
    int head_dim;       /* K: query/key head dimension */
    int v_head_dim;     /* V: value head dimension (0: K) */
    int num_q_heads;    /* heads of q_proj, k_proj, v_proj before repeat-interleave to H (0: H); */
    int num_k_heads;    /*   each must divide H. GQA: k and v with fewer heads; GVA: q and k with fewer. */
    int num_v_heads;
    int use_gate;       /* output gate g_proj + gated RMSNorm (else plain per-head RMSNorm) */
    int use_beta_gate;  /* input gate beta on k and v */
    int use_alpha_connection; /* blend q~ = q + alpha (x - q) (else pure ridge readout) */
    int use_v_conv;     /* short conv + SiLU on v too */
    int use_forgetting_gate;    /* decay g of U (and of H when use_forgetting_gate_kk) */
    int use_forgetting_gate_kk;
    int gla_rescale;    /* readout scale K^-1/2 (else 1) */
    float ridge_ratio;  /* a, default 0.02 */
    int num_iter;       /* n, default 30 */
    int conv_size;      /* W, default 4 */
    float norm_eps;     /* RMSNorm eps, default 1e-6 */
    int chunk_size;     /* C of the chunked algorithm, default 64 */
} GkaConfig;

/* The code defaults of spec gka.md 8.1 (every gate on, a = 0.02, n = 30, W = 4). */
void gka_config_defaults(GkaConfig *cfg, int hidden_size, int num_heads, int head_dim);
/* Checks divisibility and ranges; a message names the field. */
int gka_config_check(const GkaConfig *cfg, GkErr *err);

/* Derived sizes. */
static inline int gka_V(const GkaConfig *c) { return c->v_head_dim ? c->v_head_dim : c->head_dim; }
static inline int gka_Hq(const GkaConfig *c) { return c->num_q_heads ? c->num_q_heads : c->num_heads; }
static inline int gka_Hk(const GkaConfig *c) { return c->num_k_heads ? c->num_k_heads : c->num_heads; }
static inline int gka_Hv(const GkaConfig *c) { return c->num_v_heads ? c->num_v_heads : c->num_heads; }
/* Columns of the gate projection: beta | alpha | a, each H wide when switched on. */
static inline int gka_gate_cols(const GkaConfig *c) {
    return c->num_heads * (!!c->use_beta_gate + !!c->use_alpha_connection + !!c->use_forgetting_gate);
}
/* First column of each gate in the gate projection (-1: switched off). */
static inline void gka_gate_offsets(const GkaConfig *c, int *cb, int *ca, int *cg) {
    int n = 0, H = c->num_heads;
    *cb = c->use_beta_gate ? (n += H) - H : -1;
    *ca = c->use_alpha_connection ? (n += H) - H : -1;
    *cg = c->use_forgetting_gate ? (n += H) - H : -1;
}

/* ---- the core operator (spec section 3) on tensors ---------------------------------------------------
 * q, k, x [B, T, H, K]; v, o [B, T, H, V]; g, gk, alpha, f [B, T, H] float32 (absent: TENSOR_NONE; pass the
 * same tensor as g and gk for one gate on both states, and the same tensor as dg and dgk to receive the sum
 * of their gradients); H0, HT [B, H, K, K] and U0, UT [B, H, K, V] float32. CPU: all float32. CUDA: q, k, v,
 * o and their gradients bf16. x and f (float32) are saved by the forward for the backward, and so is `saved`,
 * float32 of gka_core_saved_bytes() (0 bytes on the CPU; on CUDA the chunk-start states, which the backward
 * would otherwise recompute; TENSOR_NONE: recompute); `work` is scratch of gka_core_workspace_bytes().
 * Gradients are written. */
void gka_core_forward(Tensor o, Tensor HT, Tensor UT, Tensor x, Tensor f, Tensor saved, Tensor q, Tensor k, Tensor v,
                      Tensor g, Tensor gk, Tensor alpha, Tensor H0, Tensor U0, GkaOpConfig cfg, Ctx *ctx);
size_t gka_core_workspace_bytes(GkaOpConfig cfg, int B, int T, int H, int K, int V);
size_t gka_core_saved_bytes(GkaOpConfig cfg, int B, int T, int H, int K, int V, Device dev);
void gka_core_backward(Tensor dq, Tensor dk, Tensor dv, Tensor dg, Tensor dgk, Tensor dalpha, Tensor dH0, Tensor dU0,
                       Tensor work, Tensor d_o, Tensor dHT, Tensor dUT, Tensor q, Tensor k, Tensor v, Tensor g,
                       Tensor gk, Tensor alpha, Tensor H0, Tensor U0, Tensor x, Tensor f, Tensor saved,
                       GkaOpConfig cfg, Ctx *ctx);
/* The form AUTO resolves to for these sizes. */
GkaAlgo gka_core_algo(GkaOpConfig cfg, int K, int V);

/* ---- the layer ------------------------------------------------------------------------------------------
 * Parameters are declared in a ParamTable under `prefix` with the authors' names (q_proj, k_proj, v_proj,
 * q_conv1d, k_conv1d, v_conv1d, b_proj, alpha_proj, a_proj, dt_bias, A_log, g_proj, o_norm, o_proj), in an
 * order that makes [q; k; v] one projection matrix and one depthwise filter, and [b; alpha; a] one gate
 * projection whose bias is [b_proj.bias; alpha_proj.bias; dt_bias]. Input and output are [S, L, d]: S
 * independent sequences of L tokens (zero initial states). */
typedef struct GkaLayer {
    GkaConfig cfg;
    GkaOpConfig op;
    int i_q, i_k, i_v, i_qc, i_vc, i_gw0, i_gw1, i_gb0, i_gb1, i_alog, i_g, i_norm, i_o; /* -1: absent */
    Tensor w_qkv, w_v, w_conv, w_gate, b_gate, A_log, w_g, w_norm, w_o;                /* compute copies */
    Tensor gw_qkv, gw_v, gw_conv, gw_gate, gb_gate, gA_log, gw_g, gw_norm, gw_o;       /* float32 gradients */
    int S, L;
    Tensor qkv, qkv_c, vraw, gpre, q, k, v, g, alpha, x, f, saved, o, rstd, z, on;     /* saved activations */
    Tensor d_on, d_o, dz, dq, dk, dv, dg, dalpha, work, dqkv_c, dqkv, dvraw, dgpre, prep_work; /* scratch */
} GkaLayer;

/* Declares the layer's parameters (with their initialisers and weight-decay kinds) in pt. */
void gka_layer_declare(GkaLayer *l, ParamTable *pt, const char *prefix, const GkaConfig *cfg);
/* Points the layer at the flat buffers: `weights` is what the ops read (float32 on the CPU, the bf16 copy
 * on CUDA), `master` the float32 parameters on the same device (A_log is read in float32), `grads` the
 * float32 gradients (may be NULL for inference). */
void gka_layer_bind(GkaLayer *l, const ParamTable *pt, void *weights, float *master, float *grads, Device dev);
/* Allocates the activations for S sequences of L tokens from `acts` (and the backward's scratch when
 * `train`); a dry arena measures. */
void gka_layer_setup(GkaLayer *l, Arena *acts, int S, int L, int train);
void gka_layer_forward(GkaLayer *l, Tensor out, Tensor inp, Ctx *ctx);
/* dinp written (or accumulated with dinp_accumulate); parameter gradients accumulated. */
void gka_layer_backward(GkaLayer *l, Tensor dinp, Tensor dout, Tensor inp, int dinp_accumulate, Ctx *ctx);

#ifdef __cplusplus
}
#endif
#endif
