// shortconv.cu: depthwise 1-D convolution along tokens with a fused activation (GKA's causal width-4 conv,
// the MambaVision mixer's "same" width-3 conv). out[t] = act(sum_i w[c, i] x[t - o + i]) with o = W - 1
// (causal) or (W - 1) / 2 (same). Threads run over channels, so every access is coalesced; the weight
// gradient is reduced over token tiles in two passes (deterministic).
#include "act.cuh"
#include "cuda_common.h"
#include "ops_cuda.h"

#define SC_TAPS 8 /* weight-gradient taps per pass (registers); wider filters take several passes */
#define SC_TILE 64 /* tokens per weight-gradient partial */

__device__ __forceinline__ float sc_pre(const bf16 *x, const bf16 *w, long long base, int t, int c, int L, int C,
                                        int W, int o) {
    float acc = 0.0f;
    for (int i = 0; i < W; i++) {
        int ts = t - o + i;
        if (ts >= 0 && ts < L) acc += __bfloat162float(w[c * W + i]) * __bfloat162float(x[base + (long long)ts * C + c]);
    }
    return acc;
}

__global__ void shortconv_fwd_kernel(bf16 *out, const bf16 *inp, const bf16 *w, int S, int L, int C, int W, int o,
                                     int act) {
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)S * L * C) return;
    int c = (int)(idx % C);
    long long r = idx / C;
    int t = (int)(r % L);
    long long base = (r - t) * C;
    out[idx] = __float2bfloat16_rn(act_apply_d(act, sc_pre(inp, w, base, t, c, L, C, W, o)));
}

// dinp[t] = sum_i w_i dpre[t + o - i], recomputing each pre-activation it needs.
__global__ void shortconv_dinp_kernel(bf16 *dinp, const bf16 *dout, const bf16 *inp, const bf16 *w, int S, int L,
                                      int C, int W, int o, int act) {
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)S * L * C) return;
    int c = (int)(idx % C);
    long long r = idx / C;
    int t = (int)(r % L);
    long long base = (r - t) * C;
    float acc = 0.0f;
    for (int i = 0; i < W; i++) {
        int tp = t + o - i;
        if (tp < 0 || tp >= L) continue;
        float g = __bfloat162float(dout[base + (long long)tp * C + c]);
        if (act != ACT_NONE) g *= act_grad_d(act, sc_pre(inp, w, base, tp, c, L, C, W, o));
        acc += __bfloat162float(w[c * W + i]) * g;
    }
    dinp[idx] = __float2bfloat16_rn(acc);
}

// part[tile][c][i] = sum over the tile's tokens of dpre[t] x[t - o + i] for taps i in [i0, i0 + SC_TAPS);
// tiles never straddle sequences.
__global__ void shortconv_dw_kernel(float *part, const bf16 *dout, const bf16 *inp, const bf16 *w, int S, int L,
                                    int C, int W, int o, int act, int tiles_per_seq, int i0) {
    int c = blockIdx.y * blockDim.x + threadIdx.x;
    if (c >= C) return;
    int tile = blockIdx.x, s = tile / tiles_per_seq, t0 = (tile % tiles_per_seq) * SC_TILE;
    long long base = (long long)s * L * C;
    float dw[SC_TAPS];
    const int ntap = min(SC_TAPS, W - i0);
    for (int i = 0; i < SC_TAPS; i++) dw[i] = 0.0f;
    for (int t = t0; t < t0 + SC_TILE && t < L; t++) {
        float g = __bfloat162float(dout[base + (long long)t * C + c]);
        if (act != ACT_NONE) g *= act_grad_d(act, sc_pre(inp, w, base, t, c, L, C, W, o));
#pragma unroll
        for (int i = 0; i < SC_TAPS; i++) {
            int ts = t - o + i0 + i;
            if (i < ntap && ts >= 0 && ts < L) dw[i] += g * __bfloat162float(inp[base + (long long)ts * C + c]);
        }
    }
    for (int i = 0; i < ntap; i++) part[((long long)tile * C + c) * W + i0 + i] = dw[i];
}

__global__ void shortconv_dw_reduce_kernel(float *dweight, const float *part, int ntiles, int CW) {
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= CW) return;
    float s = 0.0f;
    for (int p = 0; p < ntiles; p++) s += part[(long long)p * CW + j];
    dweight[j] += s;
}

extern "C" void shortconv_forward_cuda(bf16_t *out, const bf16_t *inp, const bf16_t *weight, int causal, Act act,
                                       int S, int L, int C, int W, CudaCtx *cu) {
    long long n = (long long)S * L * C;
    if (n == 0) return;
    int o = causal ? W - 1 : (W - 1) / 2;
    shortconv_fwd_kernel<<<ceil_div(n, 256), 256, 0, cu->stream>>>((bf16 *)out, (const bf16 *)inp,
                                                                    (const bf16 *)weight, S, L, C, W, o, (int)act);
    cudaCheckLast();
}

extern "C" void shortconv_backward_cuda(bf16_t *dinp, float *dweight, const bf16_t *dout, const bf16_t *inp,
                                        const bf16_t *weight, int causal, Act act, int S, int L, int C, int W,
                                        CudaCtx *cu) {
    long long n = (long long)S * L * C;
    if (n == 0) return;
    int o = causal ? W - 1 : (W - 1) / 2;
    if (dinp) {
        shortconv_dinp_kernel<<<ceil_div(n, 256), 256, 0, cu->stream>>>(
            (bf16 *)dinp, (const bf16 *)dout, (const bf16 *)inp, (const bf16 *)weight, S, L, C, W, o, (int)act);
        cudaCheckLast();
    }
    if (dweight) {
        int tiles_per_seq = (L + SC_TILE - 1) / SC_TILE, ntiles = S * tiles_per_seq;
        float *part = (float *)cuda_scratch(cu, (size_t)ntiles * C * W * sizeof(float));
        dim3 grid(ntiles, ceil_div(C, 128));
        for (int i0 = 0; i0 < W; i0 += SC_TAPS) {
            shortconv_dw_kernel<<<grid, 128, 0, cu->stream>>>(part, (const bf16 *)dout, (const bf16 *)inp,
                                                               (const bf16 *)weight, S, L, C, W, o, (int)act,
                                                               tiles_per_seq, i0);
            cudaCheckLast();
        }
        shortconv_dw_reduce_kernel<<<ceil_div(C * W, 256), 256, 0, cu->stream>>>(dweight, part, ntiles, C * W);
        cudaCheckLast();
    }
}
