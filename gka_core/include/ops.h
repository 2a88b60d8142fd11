/* ops.h: the op interface the networks are written against. Each op is declared once here; ops.c checks
 * shapes, dtypes and devices and dispatches to the CPU twin (gka_core/cpu, float32) or the CUDA twin
 * (gka_core/cuda), which share the name stem and argument order (`layernorm_forward_cpu`,
 * `layernorm_forward_cuda`).
 *
 * Conventions
 * - Arguments: outputs first, then inputs, then parameters, then scalar settings, then the Ctx.
 * - Sizes come from the tensors' shapes; a leading "M" means "all leading dimensions flattened".
 * - Activation gradients are WRITTEN (=); parameter gradients are ACCUMULATED (+=). An absent gradient
 *   (TENSOR_NONE) is not computed.
 * - Dtypes. CPU: everything float32. CUDA: activations and their gradients bf16; weights read from their
 *   bf16 copy; parameter gradients and saved statistics (mean, rstd, probabilities, losses) float32.
 * - Layout: images are NHWC, [N, H, W, C]. Chosen because stages 3-4 of the networks work on token
 *   sequences [S, L, C], and a window partition of an NHWC map is a plain gather that is the identity when
 *   one window covers the map (GKAVision-T at 224); channels-last is also cuDNN's native layout for
 *   tensor-core convolutions. Conv weights are kept as [OC, KH, KW, IC/groups] (cuDNN's NHWC filter
 *   layout) and transposed to PyTorch's [OC, IC/groups, KH, KW] only when weights are read or written.
 */
#ifndef GKA_OPS_H
#define GKA_OPS_H

#include <stdint.h>

#include "context.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Pointwise activations. GELU is the exact erf form; GELU_TANH the tanh approximation
 * 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); SOFTPLUS returns x for x > 20 (as PyTorch). */
typedef enum { ACT_NONE = 0, ACT_RELU, ACT_GELU, ACT_GELU_TANH, ACT_SILU, ACT_SOFTPLUS, ACT_SIGMOID } Act;
const char *act_name(Act act);

/* Stochastic depth for one residual branch: sample s of the leading dimension keeps its branch with
 * probability 1 - p, scaled by 1/(1 - p). The choice is Philox(seed, RNG_DROPPATH, counter + s), so the
 * backward regenerates it and CPU and GPU agree. p = 0 is the identity (evaluation). */
typedef struct DropPath {
    float p;
    uint64_t seed;
    uint64_t counter;
} DropPath;
/* 1/(1-p) or 0 for sample s. */
float droppath_scale(DropPath dp, int64_t s);

/* ---- matmul: out[M, OC] = inp[M, IC] weight[OC, IC]^T + bias[OC] ----------------------------------
 * With pre_gelu present: pre_gelu = inp weight^T + bias and out = gelu_tanh(pre_gelu) (cuBLASLt epilogue).
 * Backward with pre_gelu: dout is the gradient of the GELU output and is OVERWRITTEN with the gradient of
 * pre_gelu. dinp written, or accumulated when dinp_accumulate (several projections of one input, as in a
 * GKA layer, sum their input gradients in place); dweight, dbias accumulated. */
void matmul_forward(Tensor out, Tensor pre_gelu, Tensor inp, Tensor weight, Tensor bias, Ctx *ctx);
void matmul_backward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp, Tensor weight,
                     Tensor pre_gelu, int dinp_accumulate, Ctx *ctx);

/* ---- conv2d, NHWC: out[N, OH, OW, OC] from inp[N, H, W, C], weight[OC, K, K, C/groups], bias[OC] ----
 * Square kernel K, equal stride and zero padding on both axes; OH = (H + 2 pad - K) / stride + 1. */
void conv2d_forward(Tensor out, Tensor inp, Tensor weight, Tensor bias, int stride, int pad, int groups,
                    Ctx *ctx);
void conv2d_backward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp, Tensor weight,
                     int stride, int pad, int groups, Ctx *ctx);

/* ---- batch norm over the channel (last) dimension of inp[M, C], M = N*H*W, followed by `act` --------
 * Training: batch statistics (biased variance) saved in mean[C], rstd[C] (float32); running_mean and
 * running_var updated in place with `momentum`, the running variance unbiased (M/(M-1)). Eval: running
 * statistics. act is ACT_NONE, ACT_RELU or ACT_GELU_TANH; the backward recomputes the pre-activation. */
void batchnorm_forward_train(Tensor out, Tensor mean, Tensor rstd, Tensor running_mean, Tensor running_var,
                             Tensor inp, Tensor weight, Tensor bias, float momentum, float eps, Act act,
                             Ctx *ctx);
void batchnorm_forward_eval(Tensor out, Tensor inp, Tensor weight, Tensor bias, Tensor running_mean,
                            Tensor running_var, float eps, Act act, Ctx *ctx);
void batchnorm_backward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp, Tensor weight,
                        Tensor bias, Tensor mean, Tensor rstd, Act act, Ctx *ctx);

/* ---- layer norm over the last dimension of inp[M, C]; mean[M], rstd[M] float32 saved ---------------- */
void layernorm_forward(Tensor out, Tensor mean, Tensor rstd, Tensor inp, Tensor weight, Tensor bias, float eps,
                       Ctx *ctx);
void layernorm_backward(Tensor dinp, Tensor dweight, Tensor dbias, Tensor dout, Tensor inp, Tensor weight,
                        Tensor mean, Tensor rstd, Ctx *ctx);

/* ---- RMS norm over the last dimension D of inp[M, D], weight[D], optional SiLU gate --------------------
 * out = inp / sqrt(mean(inp^2) + eps) * weight * silu(gate)   (gate absent: no gate factor); rstd[M]. */
void rmsnorm_forward(Tensor out, Tensor rstd, Tensor inp, Tensor gate, Tensor weight, float eps, Ctx *ctx);
void rmsnorm_backward(Tensor dinp, Tensor dgate, Tensor dweight, Tensor dout, Tensor inp, Tensor gate,
                      Tensor weight, Tensor rstd, Ctx *ctx);

/* ---- pointwise activation; the backward recomputes from inp and may run in place (dinp == dout) ---- */
void act_forward(Tensor out, Tensor inp, Act act, Ctx *ctx);
void act_backward(Tensor dinp, Tensor dout, Tensor inp, Act act, Ctx *ctx);

/* ---- depthwise 1-D convolution along tokens, then `act` ------------------------------------------------
 * inp, out [S, L, C]; weight [C, W] (PyTorch's [C, 1, W]); no bias. causal = 1: out[t] uses inp[t-W+1..t]
 * (left zero padding, tap W-1 on the current token), as GKA's short conv. causal = 0: "same" padding,
 * out[t] uses inp[t-(W-1)/2 .. t+(W-1)/2] (W odd), as the MambaVision mixer's conv. */
void shortconv_forward(Tensor out, Tensor inp, Tensor weight, int causal, Act act, Ctx *ctx);
void shortconv_backward(Tensor dinp, Tensor dweight, Tensor dout, Tensor inp, Tensor weight, int causal,
                        Act act, Ctx *ctx);

/* ---- windows: inp[B, H, W, C] -> out[B*nH*nW, w*w, C], zero padding on the right and bottom -----------
 * Window order and token order inside a window are row-major (gkavision spec 2.4). window_reverse is the
 * inverse (dropping the padding). Each is the other's backward. */
void window_partition(Tensor out, Tensor inp, int window, Ctx *ctx);
void window_reverse(Tensor out, Tensor inp, int window, Ctx *ctx);

/* ---- multi-head self-attention, non-causal, for short sequences -------------------------------------
 * qkv[S, L, 3C]: channels [0, C) are q, [C, 2C) k, [2C, 3C) v; head h owns channels h*dh .. h*dh+dh-1 of
 * each. out[S, L, C] = concat_h softmax(q_h k_h^T / sqrt(dh)) v_h. att[S, NH, L, L] float32 keeps the
 * probabilities for the backward; datt is scratch of the same shape. */
void attention_forward(Tensor out, Tensor att, Tensor qkv, int n_heads, Ctx *ctx);
void attention_backward(Tensor dqkv, Tensor datt, Tensor dout, Tensor qkv, Tensor att, int n_heads, Ctx *ctx);

/* ---- average over tokens: out[B, C] = mean over L of inp[B, L, C] --------------------------------- */
void avgpool_forward(Tensor out, Tensor inp, Ctx *ctx);
void avgpool_backward(Tensor dinp, Tensor dout, Ctx *ctx);

/* ---- residual: out = res + droppath_scale(s) * gamma * branch over [S, ..., C] ------------------------
 * gamma[C] (layer scale) may be absent (= 1). out may alias res. The identity path's gradient is dout
 * itself, so the backward computes only the branch side: dbranch = scale(s) gamma dout (written),
 * dgamma += sum scale(s) dout branch. */
void residual_forward(Tensor out, Tensor res, Tensor branch, Tensor gamma, DropPath dp, Ctx *ctx);
void residual_backward(Tensor dbranch, Tensor dgamma, Tensor dout, Tensor branch, Tensor gamma, DropPath dp,
                       Ctx *ctx);

/* ---- softmax cross-entropy with soft targets ------------------------------------------------------
 * logits[B, K]; targets[B, K] float32 (rows sum to 1); losses[B] = -sum_k targets log softmax(logits);
 * probs[B, K] float32 saved. Backward: dlogits = dloss * (probs - targets), with dloss the gradient of
 * each sample's loss (1/B for the batch mean). */
void softmax_xent_forward(Tensor losses, Tensor probs, Tensor logits, Tensor targets, Ctx *ctx);
void softmax_xent_backward(Tensor dlogits, Tensor probs, Tensor targets, float dloss, Ctx *ctx);
/* Host helper: label-smoothed one-hot targets, timm's rule: off = smoothing / K, on = 1 - smoothing + off. */
void smooth_one_hot(float *targets, const int *labels, int B, int K, float smoothing);

#ifdef __cplusplus
}
#endif
#endif
