// selective_scan.cu: the MambaVision selective scan on the GPU (selective_scan.h): bf16 activations, float32
// state and arithmetic. One thread per (sequence, channel) runs the scan over the tokens with its N states in
// registers; Bm and Cm, shared by all channels of a token, are broadcast loads.
// Backward: one block per sequence, one thread per channel, so the gradients of Bm and Cm (sums over the
// channels) are reduced inside the block: warp shuffles, then a fixed-order sum over the warps, once per
// chunk of SELECTIVE_SCAN_CHUNK tokens. Each chunk's states are recomputed from the forward's checkpoint
// into a per-thread array, then the adjoint runs right to left. Parameter gradients go through per-sequence
// partials and a second kernel that sums them in sequence order, so results are deterministic.
#include "cuda_common.h"
#include "selective_scan.h"

#define SS_CH SELECTIVE_SCAN_CHUNK
#define SS_MAXN SELECTIVE_SCAN_MAX_N
#define SS_FWD_THREADS 128

__device__ __forceinline__ float ss_softplus(float v) {
    return v > 20.0f ? v : log1pf(expf(v));
}
__device__ __forceinline__ float ss_softplus_grad(float v) {
    return v > 20.0f ? 1.0f : 1.0f / (1.0f + expf(-v));
}

__device__ __forceinline__ float ss_warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// grid (S, ceil(D / SS_FWD_THREADS)); states (when not NULL) gets h before tokens 0, SS_CH, 2 SS_CH, ...
__global__ void ss_fwd_kernel(bf16 *y, float *states, const bf16 *x, const bf16 *dpre, const float *A_log,
                              const bf16 *Bm, const bf16 *Cm, const float *Dp, const float *bias, int L,
                              int D, int N) {
    const int s = blockIdx.x, d = blockIdx.y * blockDim.x + threadIdx.x;
    if (d >= D) return;
    const int nc = (L + SS_CH - 1) / SS_CH;
    float A[SS_MAXN], h[SS_MAXN];
#pragma unroll
    for (int n = 0; n < SS_MAXN; n++) {
        A[n] = n < N ? -expf(A_log[d * N + n]) : 0.0f;
        h[n] = 0.0f;
    }
    const float Dd = Dp[d], bd = bias[d];
    for (int t = 0; t < L; t++) {
        const long long r = (long long)s * L + t;
        if (states && t % SS_CH == 0) {
            float *st = states + (((long long)s * nc + t / SS_CH) * D + d) * N;
#pragma unroll
            for (int n = 0; n < SS_MAXN; n++)
                if (n < N) st[n] = h[n];
        }
        const float xv = __bfloat162float(x[r * D + d]),
                    dt = ss_softplus(__bfloat162float(dpre[r * D + d]) + bd);
        float acc = 0.0f;
#pragma unroll
        for (int n = 0; n < SS_MAXN; n++)
            if (n < N) {
                h[n] = expf(dt * A[n]) * h[n] + dt * __bfloat162float(Bm[r * N + n]) * xv;
                acc += __bfloat162float(Cm[r * N + n]) * h[n];
            }
        y[r * D + d] = __float2bfloat16_rn(acc + Dd * xv);
    }
}

// One block of ceil(D / 32) warps per sequence. Shared memory: the chunk's Bm and Cm (float32), then per warp
// and token of the chunk its sums of the Bm and Cm gradient terms. The launch bound holds the kernel to 64
// registers (a few bytes spill), so that a block of 1024 channels (MambaVision-L's level 3 has 784) fits
// an SM's register file; unbounded it takes 121.
__global__ void __launch_bounds__(1024)
    ss_bwd_kernel(bf16 *dx, bf16 *ddpre, float *part, bf16 *dBm, bf16 *dCm, const bf16 *dy, const bf16 *x,
                  const bf16 *dpre, const float *A_log, const bf16 *Bm, const bf16 *Cm, const float *Dp,
                  const float *bias, const float *states, int L, int D, int N) {
    extern __shared__ float sh[];
    float *sB = sh, *sC = sB + SS_CH * N, *red = sC + SS_CH * N; // red[warp][k][2N]: dB terms, then dC terms
    const int nwarps = blockDim.x / 32, warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int s = blockIdx.x, d = threadIdx.x, nc = (L + SS_CH - 1) / SS_CH;
    const bool on = d < D; // threads past D take part in the shuffles with zeros
    float A[SS_MAXN], g[SS_MAXN], dA[SS_MAXN];
#pragma unroll
    for (int n = 0; n < SS_MAXN; n++) {
        A[n] = on && n < N ? -expf(A_log[d * N + n]) : 0.0f;
        g[n] = dA[n] = 0.0f;
    }
    const float Dd = on ? Dp[d] : 0.0f, bd = on ? bias[d] : 0.0f;
    float dDacc = 0.0f, dbacc = 0.0f;
    float hs[SS_CH + 1][SS_MAXN]; // hs[k]: state before token t0 + k of the chunk
    for (int c = nc - 1; c >= 0; c--) {
        const int t0 = c * SS_CH, len = min(SS_CH, L - t0);
        for (int i = threadIdx.x; i < len * N; i += blockDim.x) {
            const long long at = ((long long)s * L + t0) * N + i;
            sB[i] = __bfloat162float(Bm[at]);
            sC[i] = __bfloat162float(Cm[at]);
        }
        __syncthreads();
        const float *st = states + (((long long)s * nc + c) * D + d) * N;
#pragma unroll
        for (int n = 0; n < SS_MAXN; n++)
            hs[0][n] = on && n < N ? st[n] : 0.0f;
        for (int k = 0; k < len; k++) {
            const long long r = (long long)s * L + t0 + k;
            const float xv = on ? __bfloat162float(x[r * D + d]) : 0.0f;
            const float dt = on ? ss_softplus(__bfloat162float(dpre[r * D + d]) + bd) : 0.0f;
#pragma unroll
            for (int n = 0; n < SS_MAXN; n++)
                hs[k + 1][n] = n < N ? expf(dt * A[n]) * hs[k][n] + dt * sB[k * N + n] * xv : 0.0f;
        }
        for (int k = len - 1; k >= 0; k--) {
            const long long r = (long long)s * L + t0 + k;
            const float xv = on ? __bfloat162float(x[r * D + d]) : 0.0f;
            const float v = on ? __bfloat162float(dpre[r * D + d]) + bd : 0.0f;
            const float dt = on ? ss_softplus(v) : 0.0f, dyv = on ? __bfloat162float(dy[r * D + d]) : 0.0f;
            float ddt = 0.0f, dxv = dyv * Dd;
            float *rw = red + ((long long)warp * SS_CH + k) * 2 * N;
#pragma unroll
            for (int n = 0; n < SS_MAXN; n++)
                if (n < N) {
                    const float b = sB[k * N + n], gn = g[n] + dyv * sC[k * N + n];
                    const float a = expf(dt * A[n]), hp = hs[k][n];
                    const float tb = ss_warp_sum(gn * dt * xv), tc = ss_warp_sum(dyv * hs[k + 1][n]);
                    if (lane == 0) rw[n] = tb, rw[N + n] = tc;
                    ddt += gn * (hp * a * A[n] + b * xv);
                    dA[n] += gn * hp * a * dt;
                    dxv += gn * dt * b;
                    g[n] = a * gn;
                }
            if (on) {
                const float dp = ddt * ss_softplus_grad(v);
                dDacc += dyv * xv;
                dbacc += dp;
                ddpre[r * D + d] = __float2bfloat16_rn(dp);
                dx[r * D + d] = __float2bfloat16_rn(dxv);
            }
        }
        __syncthreads();
        for (int i = threadIdx.x; i < len * 2 * N; i += blockDim.x) {
            const int k = i / (2 * N), j = i % (2 * N);
            float sum = 0.0f;
            for (int w = 0; w < nwarps; w++)
                sum += red[((long long)w * SS_CH + k) * 2 * N + j];
            const long long at = ((long long)s * L + t0 + k) * N + (j < N ? j : j - N);
            (j < N ? dBm : dCm)[at] = __float2bfloat16_rn(sum);
        }
        __syncthreads(); // sB, sC and red are reused by the next chunk
    }
    if (on) {
        float *p = part + ((long long)s * D + d) * (N + 2);
#pragma unroll
        for (int n = 0; n < SS_MAXN; n++)
            if (n < N) p[n] = dA[n] * A[n]; // dA_log = dA A, since A = -exp(A_log)
        p[N] = dDacc;
        p[N + 1] = dbacc;
    }
}

// Sums the per-sequence partials in sequence order and accumulates them into the parameter gradients.
__global__ void ss_param_reduce_kernel(float *dA_log, float *dD, float *dbias, const float *part, int S,
                                       int D, int N) {
    const int W = N + 2, j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= D * W) return;
    float sum = 0.0f;
    for (int s = 0; s < S; s++)
        sum += part[(long long)s * D * W + j];
    const int d = j / W, k = j % W;
    if (k < N)
        dA_log[d * N + k] += sum;
    else if (k == N)
        dD[d] += sum;
    else
        dbias[d] += sum;
}

extern "C" void selective_scan_forward_cuda(bf16_t *y, float *states, const bf16_t *x,
                                            const bf16_t *delta_pre, const float *A_log, const bf16_t *Bm,
                                            const bf16_t *Cm, const float *Dp, const float *dt_bias, int S,
                                            int L, int D, int N, CudaCtx *cu) {
    if ((long long)S * L * D == 0) return;
    dim3 grid(S, ceil_div(D, SS_FWD_THREADS));
    ss_fwd_kernel<<<grid, SS_FWD_THREADS, 0, cu->stream>>>((bf16 *)y, states, (const bf16 *)x,
                                                           (const bf16 *)delta_pre, A_log, (const bf16 *)Bm,
                                                           (const bf16 *)Cm, Dp, dt_bias, L, D, N);
    cudaCheckLast();
}

extern "C" void selective_scan_backward_cuda(bf16_t *dx, bf16_t *ddelta_pre, float *dA_log, bf16_t *dBm,
                                             bf16_t *dCm, float *dD, float *ddt_bias, const bf16_t *dy,
                                             const bf16_t *x, const bf16_t *delta_pre, const float *A_log,
                                             const bf16_t *Bm, const bf16_t *Cm, const float *Dp,
                                             const float *dt_bias, const float *states, int S, int L, int D,
                                             int N, CudaCtx *cu) {
    if ((long long)S * L * D == 0) return;
    const int threads = (D + 31) / 32 * 32, nwarps = threads / 32;
    const size_t smem = sizeof(float) * ((size_t)2 * SS_CH * N + (size_t)nwarps * SS_CH * 2 * N);
    if (smem > 48 * 1024) {
        if (smem > cu->smem_optin)
            gk_die("selective_scan_backward: %zu bytes of shared memory for %d channels and N = %d; this GPU "
                   "allows %zu",
                   smem, D, N, cu->smem_optin);
        cudaCheck(
            cudaFuncSetAttribute(ss_bwd_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    }
    float *part = (float *)cuda_scratch(cu, sizeof(float) * (size_t)S * D * (N + 2));
    ss_bwd_kernel<<<S, threads, smem, cu->stream>>>(
        (bf16 *)dx, (bf16 *)ddelta_pre, part, (bf16 *)dBm, (bf16 *)dCm, (const bf16 *)dy, (const bf16 *)x,
        (const bf16 *)delta_pre, A_log, (const bf16 *)Bm, (const bf16 *)Cm, Dp, dt_bias, states, L, D, N);
    cudaCheckLast();
    ss_param_reduce_kernel<<<ceil_div((long long)D * (N + 2), 256), 256, 0, cu->stream>>>(
        dA_log, dD, ddt_bias, part, S, D, N);
    cudaCheckLast();
}
