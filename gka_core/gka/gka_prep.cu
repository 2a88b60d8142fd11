// gka_prep.cu: CUDA twin of the GKA layer's prep step (definition in gka_prep.h, CPU twin gka_prep_cpu.c).
// One warp per token; lanes stride over the features of each head. The backward walks source heads, so an
// expanded group's gradients are summed in registers before the L2-norm backward.
#include "cuda/cuda_common.h"
#include "gka_prep.h"

#define PREP_WARPS 8
#define MAXR 4 /* features per lane: K, V <= 128 */

struct PrepDims {
    int H, K, V, Hq, Hk, Hv, NG, ld, use_v_conv, cb, ca, cg;
};

static PrepDims prep_dims(const GkaConfig *c) {
    PrepDims d;
    d.H = c->num_heads, d.K = c->head_dim, d.V = gka_V(c), d.Hq = gka_Hq(c), d.Hk = gka_Hk(c), d.Hv = gka_Hv(c);
    d.NG = gka_gate_cols(c), d.use_v_conv = c->use_v_conv;
    d.ld = d.Hq * d.K + d.Hk * d.K + (c->use_v_conv ? d.Hv * d.V : 0);
    gka_gate_offsets(c, &d.cb, &d.ca, &d.cg);
    GK_CHECK(d.K <= 32 * MAXR && d.V <= 32 * MAXR, "gka_prep: head dims up to %d (K %d, V %d)", 32 * MAXR, d.K, d.V);
    return d;
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float b2f(bf16 x) { return __bfloat162float(x); }
__device__ __forceinline__ float sigm(float z) { return 1.0f / (1.0f + expf(-z)); }
__device__ __forceinline__ float softplus(float z) { return z > 20.0f ? z : log1pf(expf(z)); }

// Sum over the warp of the squares of n elements at p (lane-strided); returns 1 / sqrt(sum + eps).
__device__ __forceinline__ float rnorm(const bf16 *p, int n) {
    float s = 0.0f;
    for (int i = threadIdx.x & 31; i < n; i += 32) s += b2f(p[i]) * b2f(p[i]);
    return rsqrtf(warp_sum(s) + GKA_L2_EPS);
}

__global__ void prep_fwd_kernel(bf16 *qo, bf16 *ko, bf16 *vo, float *go, float *ao, const bf16 *qkv,
                                const bf16 *vraw, const bf16 *gpre, const float *A_log, PrepDims d, long long M) {
    const long long m = (long long)blockIdx.x * PREP_WARPS + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (m >= M) return;
    const bf16 *row = qkv + m * d.ld, *gp = gpre + m * d.NG;
    const bf16 *vrow = d.use_v_conv ? row + (d.Hq + d.Hk) * d.K : vraw + m * d.Hv * d.V;
    for (int e = 0; e < d.H; e++) {
        const bf16 *qs = row + (e / (d.H / d.Hq)) * d.K, *ks = row + d.Hq * d.K + (e / (d.H / d.Hk)) * d.K;
        const bf16 *vs = vrow + (e / (d.H / d.Hv)) * d.V;
        const float rq = rnorm(qs, d.K), rk = rnorm(ks, d.K);
        const float beta = d.cb >= 0 ? sigm(b2f(gp[d.cb + e])) + GKA_BETA_EPS : 1.0f;
        const long long me = m * d.H + e;
        for (int i = lane; i < d.K; i += 32) {
            qo[me * d.K + i] = __float2bfloat16_rn(b2f(qs[i]) * rq);
            ko[me * d.K + i] = __float2bfloat16_rn(beta * b2f(ks[i]) * rk);
        }
        for (int j = lane; j < d.V; j += 32) vo[me * d.V + j] = __float2bfloat16_rn(beta * b2f(vs[j]));
        if (lane == 0) {
            if (ao && d.ca >= 0) ao[me] = sigm(b2f(gp[d.ca + e]));
            if (go && d.cg >= 0) go[me] = -expf(A_log[e]) * softplus(b2f(gp[d.cg + e]));
        }
    }
}

__global__ void prep_bwd_kernel(bf16 *dqkv, bf16 *dvraw, bf16 *dgpre, float *work, const bf16 *dq, const bf16 *dk,
                                const bf16 *dv, const float *dg, const float *dal, const bf16 *qkv, const bf16 *vraw,
                                const bf16 *gpre, const float *A_log, PrepDims d, long long M) {
    const long long m = (long long)blockIdx.x * PREP_WARPS + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (m >= M) return;
    const bf16 *row = qkv + m * d.ld, *gp = gpre + m * d.NG;
    const bf16 *vrow = d.use_v_conv ? row + (d.Hq + d.Hk) * d.K : vraw + m * d.Hv * d.V;
    bf16 *drow = dqkv + m * d.ld, *dgp = dgpre + m * d.NG;
    bf16 *dvrow = d.use_v_conv ? drow + (d.Hq + d.Hk) * d.K : dvraw + m * d.Hv * d.V;
    // beta of expanded head e, and the input-gate gradient terms per head
    for (int e = 0; e < d.H; e++) {
        const bf16 *ks = row + d.Hq * d.K + (e / (d.H / d.Hk)) * d.K, *vs = vrow + (e / (d.H / d.Hv)) * d.V;
        const long long me = m * d.H + e;
        const float rk = rnorm(ks, d.K);
        float db = 0.0f;
        for (int i = lane; i < d.K; i += 32) db += b2f(dk[me * d.K + i]) * b2f(ks[i]) * rk;
        for (int j = lane; j < d.V; j += 32) db += b2f(dv[me * d.V + j]) * b2f(vs[j]);
        db = warp_sum(db);
        if (lane == 0) {
            if (d.cb >= 0) {
                float sb = sigm(b2f(gp[d.cb + e]));
                dgpre[m * d.NG + d.cb + e] = __float2bfloat16_rn(db * sb * (1.0f - sb));
            }
            if (d.ca >= 0) {
                float a = sigm(b2f(gp[d.ca + e]));
                dgp[d.ca + e] = __float2bfloat16_rn(dal[me] * a * (1.0f - a));
            }
            if (d.cg >= 0) {
                float z = b2f(gp[d.cg + e]), A = expf(A_log[e]);
                dgp[d.cg + e] = __float2bfloat16_rn(dg[me] * -A * sigm(z));
                work[me] = dg[me] * -A * softplus(z); // d g / d A_log = g
            }
        }
    }
    // q and k: sum the group's gradients of the normalised vector, then through the L2 norm
    for (int s = 0; s < d.Hq + d.Hk; s++) {
        const bool isq = s < d.Hq;
        const int src = isq ? s : s - d.Hq, Hs = isq ? d.Hq : d.Hk, grp = d.H / Hs;
        const bf16 *x = row + s * d.K;
        const float r = rnorm(x, d.K);
        float D[MAXR];
        float dot = 0.0f;
#pragma unroll
        for (int u = 0; u < MAXR; u++) {
            int i = lane + 32 * u;
            D[u] = 0.0f;
            if (i >= d.K) continue;
            for (int e = src * grp; e < (src + 1) * grp; e++) {
                const long long me = m * d.H + e;
                if (isq) {
                    D[u] += b2f(dq[me * d.K + i]);
                } else {
                    float beta = d.cb >= 0 ? sigm(b2f(gp[d.cb + e])) + GKA_BETA_EPS : 1.0f;
                    D[u] += beta * b2f(dk[me * d.K + i]);
                }
            }
            dot += b2f(x[i]) * r * D[u];
        }
        dot = warp_sum(dot);
#pragma unroll
        for (int u = 0; u < MAXR; u++) {
            int i = lane + 32 * u;
            if (i < d.K) drow[s * d.K + i] = __float2bfloat16_rn(r * (D[u] - b2f(x[i]) * r * dot));
        }
    }
    for (int s = 0; s < d.Hv; s++) {
        const int grp = d.H / d.Hv;
        for (int j = lane; j < d.V; j += 32) {
            float acc = 0.0f;
            for (int e = s * grp; e < (s + 1) * grp; e++) {
                float beta = d.cb >= 0 ? sigm(b2f(gp[d.cb + e])) + GKA_BETA_EPS : 1.0f;
                acc += beta * b2f(dv[(m * d.H + e) * d.V + j]);
            }
            dvrow[s * d.V + j] = __float2bfloat16_rn(acc);
        }
    }
}

// dA_log[e] += sum over tokens of work[m, e]: one block per head, a fixed reduction tree (deterministic).
__global__ void column_reduce_kernel(float *out, const float *work, long long M, int H) {
    __shared__ float part[256];
    const int e = blockIdx.x;
    float s = 0.0f;
    for (long long m = threadIdx.x; m < M; m += 256) s += work[m * H + e];
    part[threadIdx.x] = s;
    __syncthreads();
    for (int w = 128; w > 0; w >>= 1) {
        if (threadIdx.x < w) part[threadIdx.x] += part[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[e] += part[0];
}

extern "C" void gka_prep_forward_cuda(bf16_t *qo, bf16_t *ko, bf16_t *vo, float *go, float *ao, const bf16_t *qkv,
                                      const bf16_t *vraw, const bf16_t *gpre, const float *A_log,
                                      const GkaConfig *cfg, int64_t M, CudaCtx *cu) {
    if (M == 0) return;
    PrepDims d = prep_dims(cfg);
    prep_fwd_kernel<<<ceil_div(M, PREP_WARPS), PREP_WARPS * 32, 0, cu->stream>>>(
        (bf16 *)qo, (bf16 *)ko, (bf16 *)vo, go, ao, (const bf16 *)qkv, (const bf16 *)vraw, (const bf16 *)gpre, A_log,
        d, M);
    cudaCheckLast();
}

extern "C" void gka_prep_backward_cuda(bf16_t *dqkv, bf16_t *dvraw, bf16_t *dgpre, float *dA_log, float *work,
                                       const bf16_t *dq, const bf16_t *dk, const bf16_t *dv, const float *dg,
                                       const float *dal, const bf16_t *qkv, const bf16_t *vraw, const bf16_t *gpre,
                                       const float *A_log, const GkaConfig *cfg, int64_t M, CudaCtx *cu) {
    if (M == 0) return;
    PrepDims d = prep_dims(cfg);
    prep_bwd_kernel<<<ceil_div(M, PREP_WARPS), PREP_WARPS * 32, 0, cu->stream>>>(
        (bf16 *)dqkv, (bf16 *)dvraw, (bf16 *)dgpre, work, (const bf16 *)dq, (const bf16 *)dk, (const bf16 *)dv, dg,
        dal, (const bf16 *)qkv, (const bf16 *)vraw, (const bf16 *)gpre, A_log, d, M);
    cudaCheckLast();
    if (dA_log && d.cg >= 0) {
        column_reduce_kernel<<<d.H, 256, 0, cu->stream>>>(dA_log, work, M, d.H);
        cudaCheckLast();
    }
}
