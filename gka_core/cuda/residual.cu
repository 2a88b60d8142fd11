// residual.cu: out = res + droppath_scale(s) * gamma * branch over [S, rows_per_sample, C], bf16; gamma
// (layer scale) may be absent (= 1) and out may alias res. The drop-path choice of sample s is the CPU
// twin's, Philox(seed, RNG_DROPPATH, counter + s) drawn on the device (philox.h is host and device code), so
// forward, backward and both backends drop the same samples. dbranch written, dgamma accumulated.
//
// Bandwidth: each block takes a contiguous tile of RES_UNROLL x 256 16-byte vectors (8 channels each; one
// element per "vector" when C % 8 != 0 or a pointer is not 16-byte aligned), issues all of a thread's loads
// before any arithmetic, and draws the Philox number only when a thread's sample changes (a tile is 16 KiB of
// one tensor, so usually once per thread). With dgamma the backward instead walks the tensor with a stride
// that is a multiple of the vectors per row, so a thread always holds the same channels and keeps its dgamma
// sums in registers; block partials are then summed per channel in a fixed order (deterministic).
#include "cuda_common.h"
#include "ops_cuda.h"
#include "philox.h"

#define RES_THREADS 256
#define RES_UNROLL 4
#define RES_MAX_BLOCKS                                                                                       \
    1024 /* dgamma pass: fixed by the shape, so its sum order is the same on every device */

__device__ __forceinline__ float dp_scale(DropPath dp, long long s) {
    if (dp.p <= 0.0f) return 1.0f;
    Philox4 r = philox_draw(dp.seed, RNG_DROPPATH, dp.counter + (uint64_t)s, 0);
    return philox_u01(r.v[0]) < dp.p ? 0.0f : 1.0f / (1.0f - dp.p);
}

template <int VEC> __device__ __forceinline__ uint4 res_raw(const bf16 *p) {
    if (VEC == 8) return *reinterpret_cast<const uint4 *>(p);
    uint4 r;
    r.x = (unsigned)__bfloat16_as_ushort(*p);
    return r;
}

template <int VEC> __device__ __forceinline__ float res_at(uint4 r, int u) {
    unsigned word = u / 2 == 0 ? r.x : u / 2 == 1 ? r.y : u / 2 == 2 ? r.z : r.w;
    return __uint_as_float(u % 2 ? word & 0xffff0000u : word << 16);
}

template <int VEC> __device__ __forceinline__ void res_store(bf16 *p, const float *f) {
    if (VEC == 8) {
        uint4 raw;
        bf16 *h = reinterpret_cast<bf16 *>(&raw);
#pragma unroll
        for (int u = 0; u < 8; u++)
            h[u] = __float2bfloat16_rn(f[u]);
        *reinterpret_cast<uint4 *>(p) = raw;
    } else {
        *p = __float2bfloat16_rn(f[0]);
    }
}

// out and res may be the same buffer: no __restrict__ on them.
template <int VEC>
__global__ void __launch_bounds__(RES_THREADS)
    residual_forward_kernel(bf16 *out, const bf16 *res, const bf16 *branch, const bf16 *gamma, DropPath dp,
                            long long per_sample, int C, long long nvec) {
    long long v0 = (long long)blockIdx.x * RES_THREADS * RES_UNROLL + threadIdx.x;
    uint4 rr[RES_UNROLL], rb[RES_UNROLL];
#pragma unroll
    for (int k = 0; k < RES_UNROLL; k++) {
        long long v = v0 + (long long)k * RES_THREADS;
        if (v < nvec) rr[k] = res_raw<VEC>(res + v * VEC), rb[k] = res_raw<VEC>(branch + v * VEC);
    }
    long long s_cur = -1;
    float sc = 1.0f;
#pragma unroll
    for (int k = 0; k < RES_UNROLL; k++) {
        long long v = v0 + (long long)k * RES_THREADS;
        if (v >= nvec) break;
        long long s = v * VEC / per_sample;
        if (s != s_cur) s_cur = s, sc = dp_scale(dp, s);
        int c0 = (int)(v * VEC % C);
        float y[VEC];
#pragma unroll
        for (int u = 0; u < VEC; u++) {
            float g = gamma ? __bfloat162float(gamma[c0 + u]) : 1.0f;
            y[u] = res_at<VEC>(rr[k], u) + sc * g * res_at<VEC>(rb[k], u);
        }
        res_store<VEC>(out + v * VEC, y);
    }
}

// dbranch = scale(s) * gamma * dout, tile by tile (no dgamma).
template <int VEC>
__global__ void __launch_bounds__(RES_THREADS)
    residual_dbranch_kernel(bf16 *dbranch, const bf16 *dout, const bf16 *gamma, DropPath dp,
                            long long per_sample, int C, long long nvec) {
    long long v0 = (long long)blockIdx.x * RES_THREADS * RES_UNROLL + threadIdx.x;
    uint4 rd[RES_UNROLL];
#pragma unroll
    for (int k = 0; k < RES_UNROLL; k++) {
        long long v = v0 + (long long)k * RES_THREADS;
        if (v < nvec) rd[k] = res_raw<VEC>(dout + v * VEC);
    }
    long long s_cur = -1;
    float sc = 1.0f;
#pragma unroll
    for (int k = 0; k < RES_UNROLL; k++) {
        long long v = v0 + (long long)k * RES_THREADS;
        if (v >= nvec) break;
        long long s = v * VEC / per_sample;
        if (s != s_cur) s_cur = s, sc = dp_scale(dp, s);
        int c0 = (int)(v * VEC % C);
        float y[VEC];
#pragma unroll
        for (int u = 0; u < VEC; u++) {
            float g = gamma ? __bfloat162float(gamma[c0 + u]) : 1.0f;
            y[u] = sc * g * res_at<VEC>(rd[k], u);
        }
        res_store<VEC>(dbranch + v * VEC, y);
    }
}

// dbranch (when present) and part[block][C] = sum over the block's elements of scale(s) * dout * branch. The
// walk: V = C / VEC vectors per row, Tp active threads (a multiple of V), thread gid takes gid, gid + Tp, ...
template <int VEC>
__global__ void __launch_bounds__(RES_THREADS)
    residual_dgamma_kernel(float *part, bf16 *dbranch, const bf16 *dout, const bf16 *branch,
                           const bf16 *gamma, DropPath dp, long long per_sample, int C, long long nvec) {
    __shared__ float s_acc[RES_THREADS][VEC];
    int V = C / VEC;
    long long Tp = (long long)gridDim.x * RES_THREADS / V * V,
              gid = (long long)blockIdx.x * RES_THREADS + threadIdx.x;
    float acc[VEC];
#pragma unroll
    for (int u = 0; u < VEC; u++)
        acc[u] = 0.0f;
    if (gid < Tp) {
        int c0 = (int)(gid % V) * VEC;
        float g[VEC];
#pragma unroll
        for (int u = 0; u < VEC; u++)
            g[u] = __bfloat162float(gamma[c0 + u]);
        for (long long v = gid; v < nvec; v += Tp) {
            uint4 rd = res_raw<VEC>(dout + v * VEC), rb = res_raw<VEC>(branch + v * VEC);
            float sc = dp_scale(dp, v * VEC / per_sample), y[VEC];
#pragma unroll
            for (int u = 0; u < VEC; u++) {
                float dy = res_at<VEC>(rd, u);
                acc[u] += sc * (dy * res_at<VEC>(rb, u));
                y[u] = sc * g[u] * dy;
            }
            if (dbranch) res_store<VEC>(dbranch + v * VEC, y);
        }
    }
#pragma unroll
    for (int u = 0; u < VEC; u++)
        s_acc[threadIdx.x][u] = acc[u];
    __syncthreads();
    long long base = (long long)blockIdx.x * RES_THREADS;
    for (int c = threadIdx.x; c < C; c += RES_THREADS) {
        int grp = c / VEC, u = c % VEC;
        float t = 0.0f;
        for (int th = (int)(((grp - base) % V + V) % V); th < RES_THREADS; th += V)
            t += s_acc[th][u];
        part[(long long)blockIdx.x * C + c] = t;
    }
}

// dgamma[c] += sum over blocks of part[block][c], in double and in block order.
__global__ void residual_dgamma_combine_kernel(float *dgamma, const float *part, int nparts, int C) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    double t = 0.0;
    for (int p = 0; p < nparts; p++)
        t += part[(long long)p * C + c];
    dgamma[c] += (float)t;
}

static int res_vec(int C, const void *a, const void *b, const void *c) {
    uintptr_t m = (uintptr_t)a | (uintptr_t)b | (uintptr_t)c;
    return C % 8 == 0 && (m & 15) == 0 ? 8 : 1;
}

extern "C" void residual_forward_cuda(bf16_t *out, const bf16_t *res, const bf16_t *branch,
                                      const bf16_t *gamma, DropPath dp, int64_t S, int64_t rows_per_sample,
                                      int C, CudaCtx *cu) {
    long long per_sample = rows_per_sample * C, n = S * per_sample;
    if (n == 0) return;
    int vec = res_vec(C, out, res, branch);
    long long nvec = n / vec;
    unsigned blocks = ceil_div(nvec, RES_THREADS * RES_UNROLL);
    if (vec == 8)
        residual_forward_kernel<8>
            <<<blocks, RES_THREADS, 0, cu->stream>>>((bf16 *)out, (const bf16 *)res, (const bf16 *)branch,
                                                     (const bf16 *)gamma, dp, per_sample, C, nvec);
    else
        residual_forward_kernel<1>
            <<<blocks, RES_THREADS, 0, cu->stream>>>((bf16 *)out, (const bf16 *)res, (const bf16 *)branch,
                                                     (const bf16 *)gamma, dp, per_sample, C, nvec);
    cudaCheckLast();
}

extern "C" void residual_backward_cuda(bf16_t *dbranch, float *dgamma, const bf16_t *dout,
                                       const bf16_t *branch, const bf16_t *gamma, DropPath dp, int64_t S,
                                       int64_t rows_per_sample, int C, CudaCtx *cu) {
    long long per_sample = rows_per_sample * C, n = S * per_sample;
    if (n == 0 || (!dbranch && !dgamma)) return;
    int vec = res_vec(C, dbranch, dout, branch);
    long long nvec = n / vec;
    if (!dgamma) {
        unsigned blocks = ceil_div(nvec, RES_THREADS * RES_UNROLL);
        if (vec == 8)
            residual_dbranch_kernel<8><<<blocks, RES_THREADS, 0, cu->stream>>>(
                (bf16 *)dbranch, (const bf16 *)dout, (const bf16 *)gamma, dp, per_sample, C, nvec);
        else
            residual_dbranch_kernel<1><<<blocks, RES_THREADS, 0, cu->stream>>>(
                (bf16 *)dbranch, (const bf16 *)dout, (const bf16 *)gamma, dp, per_sample, C, nvec);
        cudaCheckLast();
        return;
    }
    long long V = C / vec, blocks = ceil_div(nvec, RES_THREADS * 8), least = ceil_div(V, RES_THREADS);
    blocks = blocks < least ? least : blocks;
    blocks = blocks > RES_MAX_BLOCKS ? RES_MAX_BLOCKS : blocks;
    GK_CHECK(least <= RES_MAX_BLOCKS, "residual_backward: %d channels are more than this kernel takes", C);
    float *part = (float *)cuda_scratch(cu, (size_t)blocks * C * sizeof(float));
    if (vec == 8)
        residual_dgamma_kernel<8><<<(unsigned)blocks, RES_THREADS, 0, cu->stream>>>(
            part, (bf16 *)dbranch, (const bf16 *)dout, (const bf16 *)branch, (const bf16 *)gamma, dp,
            per_sample, C, nvec);
    else
        residual_dgamma_kernel<1><<<(unsigned)blocks, RES_THREADS, 0, cu->stream>>>(
            part, (bf16 *)dbranch, (const bf16 *)dout, (const bf16 *)branch, (const bf16 *)gamma, dp,
            per_sample, C, nvec);
    cudaCheckLast();
    residual_dgamma_combine_kernel<<<ceil_div(C, 256), 256, 0, cu->stream>>>(dgamma, part, (int)blocks, C);
    cudaCheckLast();
}
