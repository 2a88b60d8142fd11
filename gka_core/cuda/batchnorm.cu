// batchnorm.cu: batch norm over the channel (last) dimension of [M, C], M = N*H*W, fused with an activation
// (none, ReLU, GELU-tanh); bf16 data, float32 statistics. dinp written; dweight, dbias accumulated.
//
// The op is pure memory traffic, so every kernel walks the tensor as one flat array of 16-byte vectors (8
// channels) when C % 8 == 0 and the pointers allow it (one channel per element otherwise), BN_UNROLL loads in
// flight per thread, with a stride that is a multiple of the vectors per row: a thread then always holds the
// same channels, its coefficients load once and its per-channel sums stay in registers.
// - Training forward: a statistics pass (per-thread shifted sums -> count, mean, M2 -> Chan's merge across
// the
//   block in thread order; then, per channel, the blocks merged in double in a fixed tree) and a normalise
//   pass. The normalise pass walks memory backwards, so it starts on the lines the statistics pass left in
//   L2.
// - Backward: the same shape. A pass for sum(g) and sum(g x_hat) with g = dout * act'(pre), a combine that
//   also accumulates dweight and dbias, and a backwards pass for dinp that recomputes the pre-activation.
// Every grid is one full wave of resident blocks (no half-empty last wave); the reduction order then depends
// on the shape and the GPU model only, so the sums are bit-identical from run to run. The pre-activation is
// (x - mean) * (rstd * weight) + bias everywhere, as in the CPU twin. The activation is a template argument
// (act.cuh's switch then folds away inside the unrolled loops; GELU-tanh is its fast sigmoid form there).
#include "act.cuh"
#include "cuda_common.h"
#include "ops_cuda.h"

#define BN_THREADS 256
#define BN_UNROLL 4
/* The backward with GELU-tanh keeps fewer loads in flight per thread: its arithmetic needs the registers, and
 * the occupancy they buy hides more (measured on H100: 4 -> 2 took the level-0/1 shapes from 76/73% to 87/84%
 * of copy bandwidth). */
#define BN_UNROLL_GELU_BWD 2

// Loads keep the raw 16 bytes (4 registers for 8 channels) until the arithmetic needs each value: converting
// at load time would hold 4x BN_UNROLL more registers across the loads in flight.
template <int VEC> __device__ __forceinline__ uint4 bn_raw(const bf16 *p) {
    if (VEC == 8) return *reinterpret_cast<const uint4 *>(p);
    uint4 r;
    r.x = (unsigned)__bfloat16_as_ushort(*p);
    return r;
}

template <int VEC> __device__ __forceinline__ float bn_at(uint4 r, int u) {
    unsigned word = u / 2 == 0 ? r.x : u / 2 == 1 ? r.y : u / 2 == 2 ? r.z : r.w;
    return __uint_as_float(u % 2 ? word & 0xffff0000u : word << 16);
}

template <int VEC> __device__ __forceinline__ void bn_load(float *f, const bf16 *p) {
    uint4 r = bn_raw<VEC>(p);
#pragma unroll
    for (int u = 0; u < VEC; u++)
        f[u] = bn_at<VEC>(r, u);
}

// Streaming store: the output is not read again by this op, so it should not evict lines that are.
template <int VEC> __device__ __forceinline__ void bn_store(bf16 *p, const float *f) {
    if (VEC == 8) {
        uint4 raw;
        __nv_bfloat162 *h = reinterpret_cast<__nv_bfloat162 *>(&raw);
#pragma unroll
        for (int u = 0; u < 4; u++)
            h[u] = __floats2bfloat162_rn(f[2 * u], f[2 * u + 1]); /* two to a conversion instruction */
        __stcs(reinterpret_cast<uint4 *>(p), raw);
    } else {
        *p = __float2bfloat16_rn(f[0]);
    }
}

// The flat walk: V vectors per row, nv = M*V in all, Tp active threads (a multiple of V). Thread gid < Tp
// takes the indices gid, gid + Tp, ...: all in channel group gid % V.
typedef struct {
    long long nv, Tp, gid;
    int V;
} BnWalk;

template <int VEC> __device__ __forceinline__ BnWalk bn_walk(long long M, int C) {
    BnWalk w;
    w.V = C / VEC;
    w.nv = M * w.V;
    w.Tp = (long long)gridDim.x * BN_THREADS / w.V * w.V;
    w.gid = (long long)blockIdx.x * BN_THREADS + threadIdx.x;
    return w;
}

// First thread of this block that holds channel group g.
__device__ __forceinline__ int bn_first_thread(int g, int V) {
    long long base = (long long)blockIdx.x * BN_THREADS;
    return (int)(((g - base) % V + V) % V);
}

// Chan et al.'s merge of (n, mean, M2) statistics of two disjoint sets.
__device__ __forceinline__ void chan_merge_f(float *n, float *mu, float *m2, float nb, float mub, float m2b) {
    if (nb == 0.0f) return;
    float nab = *n + nb, delta = mub - *mu;
    *mu += delta * (nb / nab);
    *m2 += m2b + delta * delta * (*n * nb / nab);
    *n = nab;
}

__device__ __forceinline__ void chan_merge_d(double *n, double *mu, double *m2, double nb, double mub,
                                             double m2b) {
    if (nb == 0.0) return;
    double nab = *n + nb, delta = mub - *mu;
    *mu += delta * (nb / nab);
    *m2 += m2b + delta * delta * (*n * nb / nab);
    *n = nab;
}

// ---- training statistics
// --------------------------------------------------------------------------------------

// part[block][3][C] = (count, mean, M2) of the block's rows of each channel. Each thread sums x - shift (its
// first value) and its square, which keeps the float32 sums well conditioned, then turns them into (n, mean,
// M2).
template <int VEC>
__global__ void __launch_bounds__(BN_THREADS)
    bn_stats_kernel(float *part, const bf16 *inp, long long M, int C) {
    __shared__ float s_n[BN_THREADS], s_mean[BN_THREADS][VEC], s_m2[BN_THREADS][VEC];
    BnWalk w = bn_walk<VEC>(M, C);
    float shift[VEC], s[VEC], ss[VEC];
    int cnt = 0;
#pragma unroll
    for (int u = 0; u < VEC; u++)
        shift[u] = s[u] = ss[u] = 0.0f;
    if (w.gid < w.Tp && w.gid < w.nv) {
        bn_load<VEC>(shift, inp + w.gid * VEC);
        long long i = w.gid;
        for (; i + (BN_UNROLL - 1) * w.Tp < w.nv; i += BN_UNROLL * w.Tp) {
            uint4 rx[BN_UNROLL];
#pragma unroll
            for (int k = 0; k < BN_UNROLL; k++)
                rx[k] = bn_raw<VEC>(inp + (i + k * w.Tp) * VEC);
#pragma unroll
            for (int k = 0; k < BN_UNROLL; k++)
#pragma unroll
                for (int u = 0; u < VEC; u++) {
                    float d = bn_at<VEC>(rx[k], u) - shift[u];
                    s[u] += d;
                    ss[u] += d * d;
                }
            cnt += BN_UNROLL;
        }
        for (; i < w.nv; i += w.Tp) {
            float x[VEC];
            bn_load<VEC>(x, inp + i * VEC);
#pragma unroll
            for (int u = 0; u < VEC; u++) {
                float d = x[u] - shift[u];
                s[u] += d;
                ss[u] += d * d;
            }
            cnt++;
        }
    }
    s_n[threadIdx.x] = (float)cnt;
#pragma unroll
    for (int u = 0; u < VEC; u++) {
        float m = cnt ? s[u] / (float)cnt : 0.0f;
        s_mean[threadIdx.x][u] = shift[u] + m;
        s_m2[threadIdx.x][u] = cnt ? fmaxf(ss[u] - s[u] * m, 0.0f) : 0.0f;
    }
    __syncthreads();
    for (int c = threadIdx.x; c < C; c += BN_THREADS) {
        int u = c % VEC;
        float n = 0.0f, mu = 0.0f, m2 = 0.0f;
        for (int t = bn_first_thread(c / VEC, w.V); t < BN_THREADS; t += w.V)
            chan_merge_f(&n, &mu, &m2, s_n[t], s_mean[t][u], s_m2[t][u]);
        float *p = part + (long long)blockIdx.x * 3 * C + c;
        p[0] = n, p[C] = mu, p[2 * C] = m2;
    }
}

// One block per channel: the blocks' statistics merged in double (strided per thread, then a fixed tree), the
// batch mean and rstd written and the running statistics updated (unbiased variance).
__global__ void __launch_bounds__(BN_THREADS)
    bn_stats_combine_kernel(float *mean, float *rstd, float *running_mean, float *running_var,
                            const float *part, int nparts, long long M, int C, float momentum, float eps) {
    __shared__ double sn[BN_THREADS], smu[BN_THREADS], sm2[BN_THREADS];
    int c = blockIdx.x, t = threadIdx.x;
    double n = 0.0, mu = 0.0, m2 = 0.0;
    for (int b = t; b < nparts; b += BN_THREADS) {
        const float *p = part + (long long)b * 3 * C + c;
        chan_merge_d(&n, &mu, &m2, p[0], p[C], p[2 * C]);
    }
    sn[t] = n, smu[t] = mu, sm2[t] = m2;
    __syncthreads();
    for (int s = BN_THREADS / 2; s > 0; s >>= 1) {
        if (t < s) {
            double a = sn[t], am = smu[t], a2 = sm2[t];
            chan_merge_d(&a, &am, &a2, sn[t + s], smu[t + s], sm2[t + s]);
            sn[t] = a, smu[t] = am, sm2[t] = a2;
        }
        __syncthreads();
    }
    if (t != 0) return;
    double var = fmax(sm2[0] / (double)M, 0.0), unbias = (double)M / (double)(M - 1);
    mean[c] = (float)smu[0];
    rstd[c] = (float)(1.0 / sqrt(var + eps));
    running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + (double)momentum * smu[0]);
    running_var[c] = (float)((1.0 - momentum) * running_var[c] + (double)momentum * var * unbias);
}

// ---- normalise (training and eval)
// ----------------------------------------------------------------------------

// out = act((x - mean) * scale + bias), scale = rstd * weight (training) or (1/sqrt(var + eps)) * weight
// (eval, rstd == NULL). Walks each thread's indices from the last to the first.
template <int VEC, int ACT>
__global__ void __launch_bounds__(BN_THREADS)
    bn_apply_kernel(bf16 *out, const bf16 *inp, const float *mean, const float *rstd, const float *var,
                    const bf16 *weight, const bf16 *bias, float eps, long long M, int C) {
    BnWalk w = bn_walk<VEC>(M, C);
    if (w.gid >= w.Tp || w.gid >= w.nv) return;
    int c0 = (int)(w.gid % w.V) * VEC;
    float shift[VEC], scale[VEC], b[VEC];
#pragma unroll
    for (int u = 0; u < VEC; u++) {
        int c = c0 + u;
        float rs = rstd ? rstd[c] : (float)(1.0 / sqrt((double)var[c] + eps));
        shift[u] = mean[c];
        scale[u] = rs * __bfloat162float(weight[c]);
        b[u] = __bfloat162float(bias[c]);
    }
    long long i = w.gid + (w.nv - 1 - w.gid) / w.Tp * w.Tp;
    for (; i - (BN_UNROLL - 1) * w.Tp >= w.gid; i -= BN_UNROLL * w.Tp) {
        uint4 rx[BN_UNROLL];
#pragma unroll
        for (int k = 0; k < BN_UNROLL; k++)
            rx[k] = bn_raw<VEC>(inp + (i - k * w.Tp) * VEC);
#pragma unroll
        for (int k = 0; k < BN_UNROLL; k++) {
            float y[VEC];
#pragma unroll
            for (int u = 0; u < VEC; u++)
                y[u] = act_apply_d(ACT, (bn_at<VEC>(rx[k], u) - shift[u]) * scale[u] + b[u]);
            bn_store<VEC>(out + (i - k * w.Tp) * VEC, y);
        }
    }
    for (; i >= w.gid; i -= w.Tp) {
        float x[VEC];
        bn_load<VEC>(x, inp + i * VEC);
#pragma unroll
        for (int u = 0; u < VEC; u++)
            x[u] = act_apply_d(ACT, (x[u] - shift[u]) * scale[u] + b[u]);
        bn_store<VEC>(out + i * VEC, x);
    }
}

// ---- backward
// ---------------------------------------------------------------------------------------------------

// part[block][2][C] = (sum g, sum g x_hat) over the block's rows, g = dout * act'(pre), x_hat = (x - mean)
// rstd. A thread sums g (x - mean) and applies its channel's rstd once at the end.
template <int VEC, int ACT>
__global__ void __launch_bounds__(BN_THREADS)
    bn_bwd_reduce_kernel(float *part, const bf16 *dout, const bf16 *inp, const float *mean, const float *rstd,
                         const bf16 *weight, const bf16 *bias, long long M, int C) {
    const int U = ACT == ACT_GELU_TANH ? BN_UNROLL_GELU_BWD : BN_UNROLL;
    __shared__ float s_g[BN_THREADS][VEC], s_gx[BN_THREADS][VEC];
    BnWalk w = bn_walk<VEC>(M, C);
    float sg[VEC], sgx[VEC];
#pragma unroll
    for (int u = 0; u < VEC; u++)
        sg[u] = sgx[u] = 0.0f;
    if (w.gid < w.Tp && w.gid < w.nv) {
        int c0 = (int)(w.gid % w.V) * VEC;
        float mu[VEC], scale[VEC], b[VEC];
#pragma unroll
        for (int u = 0; u < VEC; u++) {
            mu[u] = mean[c0 + u], b[u] = __bfloat162float(bias[c0 + u]);
            scale[u] = rstd[c0 + u] * __bfloat162float(weight[c0 + u]);
        }
        long long i = w.gid;
        for (; i + (U - 1) * w.Tp < w.nv; i += U * w.Tp) {
            uint4 rx[U], rd[U];
#pragma unroll
            for (int k = 0; k < U; k++) {
                rx[k] = bn_raw<VEC>(inp + (i + k * w.Tp) * VEC);
                rd[k] = bn_raw<VEC>(dout + (i + k * w.Tp) * VEC);
            }
#pragma unroll
            for (int k = 0; k < U; k++)
#pragma unroll
                for (int u = 0; u < VEC; u++) {
                    float d = bn_at<VEC>(rx[k], u) - mu[u];
                    float g = bn_at<VEC>(rd[k], u) * act_grad_d(ACT, d * scale[u] + b[u]);
                    sg[u] += g;
                    sgx[u] += g * d;
                }
        }
        for (; i < w.nv; i += w.Tp) {
            float x[VEC], dy[VEC];
            bn_load<VEC>(x, inp + i * VEC);
            bn_load<VEC>(dy, dout + i * VEC);
#pragma unroll
            for (int u = 0; u < VEC; u++) {
                float d = x[u] - mu[u], g = dy[u] * act_grad_d(ACT, d * scale[u] + b[u]);
                sg[u] += g;
                sgx[u] += g * d;
            }
        }
#pragma unroll
        for (int u = 0; u < VEC; u++)
            sgx[u] *= rstd[c0 + u];
    }
#pragma unroll
    for (int u = 0; u < VEC; u++)
        s_g[threadIdx.x][u] = sg[u], s_gx[threadIdx.x][u] = sgx[u];
    __syncthreads();
    for (int c = threadIdx.x; c < C; c += BN_THREADS) {
        int u = c % VEC;
        float a = 0.0f, ax = 0.0f;
        for (int t = bn_first_thread(c / VEC, w.V); t < BN_THREADS; t += w.V)
            a += s_g[t][u], ax += s_gx[t][u];
        float *p = part + (long long)blockIdx.x * 2 * C + c;
        p[0] = a, p[C] = ax;
    }
}

// One block per channel: the block partials summed in double (fixed order); dbias += sum g, dweight += sum g
// x_hat; coef[c] = mean g, coef[C + c] = mean g x_hat for the dinp pass.
__global__ void __launch_bounds__(BN_THREADS)
    bn_bwd_combine_kernel(float *dweight, float *dbias, float *coef, const float *part, int nparts,
                          long long M, int C) {
    __shared__ double sg[BN_THREADS], sgx[BN_THREADS];
    int c = blockIdx.x, t = threadIdx.x;
    double a = 0.0, ax = 0.0;
    for (int b = t; b < nparts; b += BN_THREADS) {
        const float *p = part + (long long)b * 2 * C + c;
        a += p[0], ax += p[C];
    }
    sg[t] = a, sgx[t] = ax;
    __syncthreads();
    for (int s = BN_THREADS / 2; s > 0; s >>= 1) {
        if (t < s) sg[t] += sg[t + s], sgx[t] += sgx[t + s];
        __syncthreads();
    }
    if (t != 0) return;
    if (dbias) dbias[c] += (float)sg[0];
    if (dweight) dweight[c] += (float)sgx[0];
    coef[c] = (float)(sg[0] / (double)M);
    coef[C + c] = (float)(sgx[0] / (double)M);
}

// dinp = (g - mean g - x_hat mean(g x_hat)) * scale, walking each thread's indices backwards; x_hat mean(g
// x_hat) is (x - mean) * mgx with mgx = rstd mean(g x_hat) folded per channel.
template <int VEC, int ACT>
__global__ void __launch_bounds__(BN_THREADS)
    bn_bwd_apply_kernel(bf16 *dinp, const bf16 *dout, const bf16 *inp, const float *mean, const float *rstd,
                        const bf16 *weight, const bf16 *bias, const float *coef, long long M, int C) {
    const int U = ACT == ACT_GELU_TANH ? BN_UNROLL_GELU_BWD : BN_UNROLL;
    BnWalk w = bn_walk<VEC>(M, C);
    if (w.gid >= w.Tp || w.gid >= w.nv) return;
    int c0 = (int)(w.gid % w.V) * VEC;
    float mu[VEC], scale[VEC], b[VEC], mg[VEC], mgx[VEC];
#pragma unroll
    for (int u = 0; u < VEC; u++) {
        int c = c0 + u;
        mu[u] = mean[c], b[u] = __bfloat162float(bias[c]);
        scale[u] = rstd[c] * __bfloat162float(weight[c]);
        mg[u] = coef[c], mgx[u] = rstd[c] * coef[C + c];
    }
    long long i = w.gid + (w.nv - 1 - w.gid) / w.Tp * w.Tp;
    for (; i - (U - 1) * w.Tp >= w.gid; i -= U * w.Tp) {
        uint4 rx[U], rd[U];
#pragma unroll
        for (int k = 0; k < U; k++) {
            rx[k] = bn_raw<VEC>(inp + (i - k * w.Tp) * VEC);
            rd[k] = bn_raw<VEC>(dout + (i - k * w.Tp) * VEC);
        }
#pragma unroll
        for (int k = 0; k < U; k++) {
            float y[VEC];
#pragma unroll
            for (int u = 0; u < VEC; u++) {
                float d = bn_at<VEC>(rx[k], u) - mu[u];
                float g = bn_at<VEC>(rd[k], u) * act_grad_d(ACT, d * scale[u] + b[u]);
                y[u] = (g - mg[u] - d * mgx[u]) * scale[u];
            }
            bn_store<VEC>(dinp + (i - k * w.Tp) * VEC, y);
        }
    }
    for (; i >= w.gid; i -= w.Tp) {
        float x[VEC], dy[VEC];
        bn_load<VEC>(x, inp + i * VEC);
        bn_load<VEC>(dy, dout + i * VEC);
#pragma unroll
        for (int u = 0; u < VEC; u++) {
            float d = x[u] - mu[u], g = dy[u] * act_grad_d(ACT, d * scale[u] + b[u]);
            x[u] = (g - mg[u] - d * mgx[u]) * scale[u];
        }
        bn_store<VEC>(dinp + i * VEC, x);
    }
}

// ---- launchers
// ----------------------------------------------------------------------------------------------------

static int aligned16(const void *p) {
    return p == NULL || ((uintptr_t)p & 15) == 0;
}

// 8 channels per vector when rows split into whole 16-byte vectors at 16-byte aligned addresses.
static int bn_vec(int C, const void *a, const void *b, const void *c) {
    return C % 8 == 0 && aligned16(a) && aligned16(b) && aligned16(c) ? 8 : 1;
}

// One full wave of resident blocks of `kernel` (each thread walks many vectors, so no block waits on a last,
// half-empty wave), no more blocks than one vector per thread, and at least one thread per channel group.
static int bn_blocks(const void *kernel, long long M, int C, int vec, CudaCtx *cu) {
    int per_sm = 0;
    cudaCheck(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, BN_THREADS, 0));
    long long V = C / vec, nv = M * V, b = (long long)(per_sm > 0 ? per_sm : 1) * cu->sm_count;
    long long need = (nv + BN_THREADS - 1) / BN_THREADS, least = (V + BN_THREADS - 1) / BN_THREADS;
    b = b < need ? b : need;
    return (int)(b < least ? least : b);
}

// The kernel of each pass for a vector width and an activation (ops.c admits none, ReLU and GELU-tanh).
typedef void (*BnStatsFn)(float *, const bf16 *, long long, int);
typedef void (*BnApplyFn)(bf16 *, const bf16 *, const float *, const float *, const float *, const bf16 *,
                          const bf16 *, float, long long, int);
typedef void (*BnReduceFn)(float *, const bf16 *, const bf16 *, const float *, const float *, const bf16 *,
                           const bf16 *, long long, int);
typedef void (*BnBwdApplyFn)(bf16 *, const bf16 *, const bf16 *, const float *, const float *, const bf16 *,
                             const bf16 *, const float *, long long, int);

template <int VEC> static BnApplyFn bn_apply_fn(int act) {
    return act == ACT_RELU        ? bn_apply_kernel<VEC, ACT_RELU>
           : act == ACT_GELU_TANH ? bn_apply_kernel<VEC, ACT_GELU_TANH>
                                  : bn_apply_kernel<VEC, ACT_NONE>;
}
template <int VEC> static BnReduceFn bn_reduce_fn(int act) {
    return act == ACT_RELU        ? bn_bwd_reduce_kernel<VEC, ACT_RELU>
           : act == ACT_GELU_TANH ? bn_bwd_reduce_kernel<VEC, ACT_GELU_TANH>
                                  : bn_bwd_reduce_kernel<VEC, ACT_NONE>;
}
template <int VEC> static BnBwdApplyFn bn_bwd_apply_fn(int act) {
    return act == ACT_RELU        ? bn_bwd_apply_kernel<VEC, ACT_RELU>
           : act == ACT_GELU_TANH ? bn_bwd_apply_kernel<VEC, ACT_GELU_TANH>
                                  : bn_bwd_apply_kernel<VEC, ACT_NONE>;
}

static void bn_apply(bf16_t *out, const bf16_t *inp, const float *mean, const float *rstd, const float *var,
                     const bf16_t *weight, const bf16_t *bias, float eps, Act act, int64_t M, int C, int vec,
                     CudaCtx *cu) {
    BnApplyFn apply = vec == 8 ? bn_apply_fn<8>((int)act) : bn_apply_fn<1>((int)act);
    int blocks = bn_blocks((const void *)apply, M, C, vec, cu);
    apply<<<blocks, BN_THREADS, 0, cu->stream>>>((bf16 *)out, (const bf16 *)inp, mean, rstd, var,
                                                 (const bf16 *)weight, (const bf16 *)bias, eps, M, C);
    cudaCheckLast();
}

extern "C" void batchnorm_forward_train_cuda(bf16_t *out, float *mean, float *rstd, float *running_mean,
                                             float *running_var, const bf16_t *inp, const bf16_t *weight,
                                             const bf16_t *bias, float momentum, float eps, Act act,
                                             int64_t M, int C, CudaCtx *cu) {
    if (M == 0) return;
    int vec = bn_vec(C, out, inp, NULL);
    BnStatsFn stats = vec == 8 ? bn_stats_kernel<8> : bn_stats_kernel<1>;
    int blocks = bn_blocks((const void *)stats, M, C, vec, cu);
    float *part = (float *)cuda_scratch(cu, (size_t)blocks * 3 * C * sizeof(float));
    stats<<<blocks, BN_THREADS, 0, cu->stream>>>(part, (const bf16 *)inp, M, C);
    cudaCheckLast();
    bn_stats_combine_kernel<<<C, BN_THREADS, 0, cu->stream>>>(mean, rstd, running_mean, running_var, part,
                                                              blocks, M, C, momentum, eps);
    cudaCheckLast();
    bn_apply(out, inp, mean, rstd, NULL, weight, bias, eps, act, M, C, vec, cu);
}

extern "C" void batchnorm_forward_eval_cuda(bf16_t *out, const bf16_t *inp, const bf16_t *weight,
                                            const bf16_t *bias, const float *running_mean,
                                            const float *running_var, float eps, Act act, int64_t M, int C,
                                            CudaCtx *cu) {
    if (M == 0) return;
    bn_apply(out, inp, running_mean, NULL, running_var, weight, bias, eps, act, M, C,
             bn_vec(C, out, inp, NULL), cu);
}

extern "C" void batchnorm_backward_cuda(bf16_t *dinp, float *dweight, float *dbias, const bf16_t *dout,
                                        const bf16_t *inp, const bf16_t *weight, const bf16_t *bias,
                                        const float *mean, const float *rstd, Act act, int64_t M, int C,
                                        CudaCtx *cu) {
    if (M == 0 || (!dinp && !dweight && !dbias)) return;
    int vec = bn_vec(C, dinp, dout, inp);
    BnReduceFn reduce = vec == 8 ? bn_reduce_fn<8>((int)act) : bn_reduce_fn<1>((int)act);
    int blocks = bn_blocks((const void *)reduce, M, C, vec, cu);
    float *coef = (float *)cuda_scratch(cu, ((size_t)blocks + 1) * 2 * C * sizeof(float));
    float *part = coef + 2 * C;
    reduce<<<blocks, BN_THREADS, 0, cu->stream>>>(part, (const bf16 *)dout, (const bf16 *)inp, mean, rstd,
                                                  (const bf16 *)weight, (const bf16 *)bias, M, C);
    cudaCheckLast();
    bn_bwd_combine_kernel<<<C, BN_THREADS, 0, cu->stream>>>(dweight, dbias, coef, part, blocks, M, C);
    cudaCheckLast();
    if (!dinp) return;
    BnBwdApplyFn apply = vec == 8 ? bn_bwd_apply_fn<8>((int)act) : bn_bwd_apply_fn<1>((int)act);
    blocks = bn_blocks((const void *)apply, M, C, vec, cu);
    apply<<<blocks, BN_THREADS, 0, cu->stream>>>((bf16 *)dinp, (const bf16 *)dout, (const bf16 *)inp, mean,
                                                 rstd, (const bf16 *)weight, (const bf16 *)bias, coef, M, C);
    cudaCheckLast();
}
