/* seq_ops.h: three data-movement ops the vision blocks need and ops.h does not have, each with a CPU twin
 * (seq_ops.c) and a CUDA twin (seq_ops.cu), tested by the op harness in tests/test_blocks.c.
 * - channel_concat / channel_split: the MambaVision mixer joins its scan output and its gate branch along the
 *   channels before out_proj ([y | z'], spec 2.7 step 8); the split is the concat's backward.
 * - token_reverse: the bidirectional-sum GKA mixer runs a second GKA layer on the sequence read backwards.
 * Activations and their gradients (all arguments here) are float32 on the CPU and bf16 on CUDA; outputs
 * are written, never accumulated, and must not alias the inputs. */
#ifndef GKA_VISION_SEQ_OPS_H
#define GKA_VISION_SEQ_OPS_H

#include <stdint.h>

#include "context.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out[M, Ca + Cb] = [a | b] along the last dimension; a [M, Ca], b [M, Cb] (M: leading dimensions). */
void channel_concat(Tensor out, Tensor a, Tensor b, Ctx *ctx);
/* a = inp[:, 0:Ca], b = inp[:, Ca:Ca + Cb]: the inverse of channel_concat and its backward. */
void channel_split(Tensor a, Tensor b, Tensor inp, Ctx *ctx);
/* out[s, t, :] = inp[s, L - 1 - t, :] over [S, L, C]; it is its own inverse and its own backward. */
void token_reverse(Tensor out, Tensor inp, Ctx *ctx);

/* ---- the twins, called by seq_ops.c after its checks ---------------------------------------------- */
void channel_concat_cpu(float *out, const float *a, const float *b, int64_t M, int Ca, int Cb);
void channel_split_cpu(float *a, float *b, const float *inp, int64_t M, int Ca, int Cb);
void token_reverse_cpu(float *out, const float *inp, int64_t S, int L, int C);
void channel_concat_cuda(bf16_t *out, const bf16_t *a, const bf16_t *b, int64_t M, int Ca, int Cb,
                         CudaCtx *cu);
void channel_split_cuda(bf16_t *a, bf16_t *b, const bf16_t *inp, int64_t M, int Ca, int Cb, CudaCtx *cu);
void token_reverse_cuda(bf16_t *out, const bf16_t *inp, int64_t S, int L, int C, CudaCtx *cu);

#ifdef __cplusplus
}
#endif
#endif
