// layernorm.cu: layer norm over the last dimension of [M, C]; bf16 data, fp32 statistics. dinp written;
// dweight, dbias accumulated.
//
// The vector path (C % 8 == 0, C <= 2048, 16-byte aligned pointers) splits a row over a group of G lanes of
// one warp (G a power of two) as 16-byte vectors of 8 channels: lane j of the group holds vectors j, j + G,
// ..., NV of them, so x and dy are read from memory exactly once and the row sums are shuffles inside the
// group. G and NV are picked to fill the lanes (forward, C = 320: 40 vectors = 8 lanes x 5, a warp holds 4
// rows). Each grid is one full wave of resident blocks whose groups walk the rows with a fixed stride, so a
// lane always holds the same channels: the backward keeps its dweight/dbias sums in registers, merges them
// over the warp (shuffles) and the block (shared memory), and, after a grid barrier (cooperative launch),
// adds the block partials in double: fixed orders, no atomics, bit-identical from run to run. A lane writes
// only the vectors it has read, so out == inp and dinp == dout are safe. Other C take the scalar kernels (one
// warp per row) and a column-sum kernel.
#include <cooperative_groups.h>

#include "cuda_common.h"
#include "ops_cuda.h"

#define LN_ROWS_PER_BLOCK 8 /* scalar path: one warp per row */
#define LN_BWD_BLOCKS_MAX 1024
#define LN_THREADS 256 /* vector path */
#define LN_NV_MAX 8    /* vectors per lane: C <= 32 * 8 * 8 = 2048 */
#define LN_BWD_NV 3    /* the backward's preferred most: with its sums it then fits 2 blocks per SM */

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Sum over the G lanes of a group (aligned lanes j ^ o, o < G); every lane of the warp takes part.
__device__ __forceinline__ float group_sum(float v, int G) {
    for (int o = G >> 1; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Channel u (0..7) of a raw 16-byte vector of bf16: the bits moved into the high half of a float.
__device__ __forceinline__ float ln_at(uint4 r, int u) {
    unsigned word = u / 2 == 0 ? r.x : u / 2 == 1 ? r.y : u / 2 == 2 ? r.z : r.w;
    return __uint_as_float(u % 2 ? word & 0xffff0000u : word << 16);
}

// 8 floats rounded to bf16 in one 16-byte vector, two to a conversion instruction.
__device__ __forceinline__ uint4 ln_pack(const float *f) {
    uint4 r;
    __nv_bfloat162 *h = reinterpret_cast<__nv_bfloat162 *>(&r);
#pragma unroll
    for (int u = 0; u < 4; u++)
        h[u] = __floats2bfloat162_rn(f[2 * u], f[2 * u + 1]);
    return r;
}

// Where a group stands: lane j of the group, V vectors per row; the warp's first row `base` steps by `step`
// rows (the groups of the grid), and the group's row is base + sub. The loop over base is uniform in the
// warp, so a group past the last row still takes part in the shuffles (with zeros) and only skips its stores.
typedef struct {
    int j, sub, V;
    long long base, step;
} LnWalk;

__device__ __forceinline__ LnWalk ln_walk(int C, int G) {
    LnWalk w;
    int groups = LN_THREADS / G;
    w.j = threadIdx.x % G;
    w.sub = threadIdx.x % 32 / G;
    w.V = C / 8;
    w.base = (long long)blockIdx.x * groups + threadIdx.x / 32 * (32 / G);
    w.step = (long long)gridDim.x * groups;
    return w;
}

// ---- vector path ----------------------------------------------------------------------------------------

template <int NV>
__global__ void __launch_bounds__(LN_THREADS)
    layernorm_forward_vec_kernel(bf16 *out, float *mean, float *rstd, const bf16 *inp, const bf16 *weight,
                                 const bf16 *bias, float eps, long long M, int C, int G) {
    LnWalk w = ln_walk(C, G);
    const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
    const uint4 *wv = reinterpret_cast<const uint4 *>(weight), *bv = reinterpret_cast<const uint4 *>(bias);
    for (; w.base < M; w.base += w.step) {
        long long row = w.base + w.sub;
        int ok = row < M;
        const uint4 *x = reinterpret_cast<const uint4 *>(inp + row * C);
        uint4 rx[NV];
#pragma unroll
        for (int k = 0; k < NV; k++)
            rx[k] = ok && w.j + k * G < w.V ? x[w.j + k * G] : zero;
        float s = 0.0f;
#pragma unroll
        for (int k = 0; k < NV; k++)
#pragma unroll
            for (int u = 0; u < 8; u++)
                s += ln_at(rx[k], u);
        float mu = group_sum(s, G) / C;
        // Second pass over the registers (as the CPU twin): no cancellation in the variance.
        float q = 0.0f;
#pragma unroll
        for (int k = 0; k < NV; k++)
            if (w.j + k * G < w.V)
#pragma unroll
                for (int u = 0; u < 8; u++) {
                    float d = ln_at(rx[k], u) - mu;
                    q += d * d;
                }
        float rs = rsqrtf(group_sum(q, G) / C + eps);
        if (!ok) continue;
        // weight and bias are read per row (from L1): held in registers across rows, they would cost 16 per
        // vector and the occupancy that keeps loads in flight.
        uint4 *y = reinterpret_cast<uint4 *>(out + row * C);
#pragma unroll
        for (int k = 0; k < NV; k++)
            if (w.j + k * G < w.V) {
                uint4 rw = wv[w.j + k * G], rb = bv[w.j + k * G];
                float f[8];
#pragma unroll
                for (int u = 0; u < 8; u++)
                    f[u] = (ln_at(rx[k], u) - mu) * rs * ln_at(rw, u) + ln_at(rb, u);
                y[w.j + k * G] = ln_pack(f);
            }
        if (w.j == 0) mean[row] = mu, rstd[row] = rs;
    }
}

// cp.async: a 16-byte copy from global to shared memory that holds no register while in flight (L2 only: x
// and dy are read once). A thread waits for its own copies only; it reads back only what it copied itself.
__device__ __forceinline__ void cp_async16(void *smem, const void *gmem) {
    unsigned s = (unsigned)__cvta_generic_to_shared(smem);
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem) : "memory");
}
__device__ __forceinline__ void cp_async_commit(void) {
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}
__device__ __forceinline__ void cp_async_wait_prior1(void) {
    asm volatile("cp.async.wait_group 1;\n" ::: "memory");
}
__device__ __forceinline__ void cp_async_wait_all(void) {
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
}

// The 8 weights of vector v from the block's float copy (zeros for v < 0: a slot past the row end).
__device__ __forceinline__ void ln_weight8(float *wf, const float *s_w, int v) {
    float4 a = make_float4(0.0f, 0.0f, 0.0f, 0.0f), b = a;
    if (v >= 0)
        a = reinterpret_cast<const float4 *>(s_w)[2 * v],
        b = reinterpret_cast<const float4 *>(s_w)[2 * v + 1];
    wf[0] = a.x, wf[1] = a.y, wf[2] = a.z, wf[3] = a.w, wf[4] = b.x, wf[5] = b.y, wf[6] = b.z, wf[7] = b.w;
}

// Stage buffer of the backward: [2 stages][NV][x, dy][LN_THREADS] vectors, a thread's own at threadIdx.x
// (consecutive threads, consecutive 16 bytes: no bank conflicts).
template <int NV> __device__ __forceinline__ uint4 *ln_slot(uint4 *buf, int stage, int k, int t) {
    return buf + ((stage * NV + k) * 2 + t) * LN_THREADS + threadIdx.x;
}

// Copies the group's share of row `row` of x and dy into `stage`, and commits the copies as one group (an
// empty one past the last row, so that waiting for "all but the newest" stays right).
template <int NV>
__device__ __forceinline__ void ln_prefetch(uint4 *buf, int stage, const bf16 *inp, const bf16 *dout,
                                            long long row, long long M, int C, const LnWalk &w, int G) {
    if (row < M)
#pragma unroll
        for (int k = 0; k < NV; k++)
            if (w.j + k * G < w.V) {
                long long e = row * C + (long long)(w.j + k * G) * 8;
                cp_async16(ln_slot<NV>(buf, stage, k, 0), inp + e);
                cp_async16(ln_slot<NV>(buf, stage, k, 1), dout + e);
            }
    cp_async_commit();
}

// dinp for the rows; dweight += sum dout x_hat, dbias += sum dout over the rows, through part[2C][gridDim.x]
// (the blocks' sums). The dweight/dbias sums take most of a thread's registers, so the rows do not wait in
// registers: the next row of the group is copied into shared memory (cp.async) while the current one is
// worked on, which keeps two rows per group in flight at the occupancy the sums leave.
template <int NV>
__global__ void __launch_bounds__(LN_THREADS)
    layernorm_backward_vec_kernel(bf16 *dinp, float *dweight, float *dbias, float *part, const bf16 *dout,
                                  const bf16 *inp, const bf16 *weight, const float *mean, const float *rstd,
                                  long long M, int C, int G) {
    extern __shared__ uint4 s_buf[]; /* stages (ln_slot), then weight [C] floats */
    LnWalk w = ln_walk(C, G);
    float *s_w = reinterpret_cast<float *>(s_buf + 4 * NV * LN_THREADS);
    const uint4 zero = make_uint4(0u, 0u, 0u, 0u);
    long long row = w.base + w.sub;
    ln_prefetch<NV>(s_buf, 0, inp, dout, row, M, C, w, G);
    float mu = row < M ? mean[row] : 0.0f, rs = row < M ? rstd[row] : 0.0f;
    for (int c = threadIdx.x; c < C; c += LN_THREADS)
        s_w[c] = __bfloat162float(weight[c]);
    __syncthreads();
    float aw[NV * 8], ab[NV * 8];
#pragma unroll
    for (int i = 0; i < NV * 8; i++)
        aw[i] = ab[i] = 0.0f;
    int stage = 0;
    for (; w.base < M; w.base += w.step, stage ^= 1) {
        row = w.base + w.sub;
        long long next = row + w.step;
        ln_prefetch<NV>(s_buf, stage ^ 1, inp, dout, next, M, C, w, G);
        float next_mu = next < M ? mean[next] : 0.0f, next_rs = next < M ? rstd[next] : 0.0f;
        cp_async_wait_prior1();
        int ok = row < M;
        // Vectors past the row end and rows past M read as zeros: dy = 0 adds nothing to any sum.
        float sg = 0.0f, sgx = 0.0f;
#pragma unroll
        for (int k = 0; k < NV; k++) {
            int in = ok && w.j + k * G < w.V;
            uint4 rx = in ? *ln_slot<NV>(s_buf, stage, k, 0) : zero,
                  rd = in ? *ln_slot<NV>(s_buf, stage, k, 1) : zero;
            float wf[8];
            ln_weight8(wf, s_w, in ? w.j + k * G : -1);
#pragma unroll
            for (int u = 0; u < 8; u++) {
                float d = ln_at(rd, u), xh = (ln_at(rx, u) - mu) * rs, g = d * wf[u];
                sg += g;
                sgx += g * xh;
                aw[k * 8 + u] += d * xh;
                ab[k * 8 + u] += d;
            }
        }
        float mg = group_sum(sg, G) / C, mgx = group_sum(sgx, G) / C;
        if (ok && dinp) {
            // (g - mg - x_hat mgx) rs as g rs - mg rs - (x - mu) rs^2 mgx: 4 operations an element.
            float a = -mg * rs, b = -rs * rs * mgx;
            uint4 *dx = reinterpret_cast<uint4 *>(dinp + row * C);
#pragma unroll
            for (int k = 0; k < NV; k++)
                if (w.j + k * G < w.V) {
                    uint4 rx = *ln_slot<NV>(s_buf, stage, k, 0), rd = *ln_slot<NV>(s_buf, stage, k, 1);
                    float wf[8], f[8];
                    ln_weight8(wf, s_w, w.j + k * G);
#pragma unroll
                    for (int u = 0; u < 8; u++)
                        f[u] = fmaf(ln_at(rx, u) - mu, b, fmaf(ln_at(rd, u) * wf[u], rs, a));
                    dx[w.j + k * G] = ln_pack(f);
                }
        }
        mu = next_mu, rs = next_rs;
    }
    // The groups of a warp hold the same channels in lanes j, j + G, ...: merge them (butterfly), then the
    // warps' sums go to shared memory (the stage buffers, free now) and are added in warp order, and the
    // block partial goes out as part[c][block]: all fixed orders.
#pragma unroll
    for (int i = 0; i < NV * 8; i++)
        for (int o = G; o < 32; o <<= 1) {
            aw[i] += __shfl_xor_sync(0xffffffffu, aw[i], o);
            ab[i] += __shfl_xor_sync(0xffffffffu, ab[i], o);
        }
    float *s_red = reinterpret_cast<float *>(s_buf); /* [warp][2C], 64 C <= 16 KB NV bytes (C <= 256 NV) */
    cp_async_wait_all();
    __syncthreads();
    if (w.sub == 0)
#pragma unroll
        for (int k = 0; k < NV; k++)
            if (w.j + k * G < w.V)
#pragma unroll
                for (int u = 0; u < 8; u++) {
                    float *r = s_red + threadIdx.x / 32 * 2 * C + (w.j + k * G) * 8 + u;
                    r[0] = aw[k * 8 + u], r[C] = ab[k * 8 + u];
                }
    __syncthreads();
    for (int c = threadIdx.x; c < 2 * C; c += LN_THREADS) {
        float t = 0.0f;
        for (int warp = 0; warp < LN_THREADS / 32; warp++)
            t += s_red[warp * 2 * C + c];
        part[(long long)c * gridDim.x + blockIdx.x] = t;
    }
    // The grid is one wave of co-resident blocks, launched cooperatively: once every partial is out, each
    // warp of the grid takes columns and adds the gridDim.x partials of each (lanes striding the parts, in
    // double, then a butterfly: a fixed order). This saves launching a kernel for it between two memory-bound
    // ones.
    cooperative_groups::this_grid().sync();
    int lane = threadIdx.x % 32, warps = gridDim.x * (LN_THREADS / 32);
    for (int c = blockIdx.x * (LN_THREADS / 32) + threadIdx.x / 32; c < 2 * C; c += warps) {
        double t = 0.0;
#pragma unroll 8
        for (int p = lane; p < gridDim.x; p += 32)
            t += part[(long long)c * gridDim.x + p];
        for (int o = 16; o > 0; o >>= 1)
            t += __shfl_xor_sync(0xffffffffu, t, o);
        if (lane == 0) {
            if (c < C) {
                if (dweight) dweight[c] += (float)t;
            } else if (dbias) {
                dbias[c - C] += (float)t;
            }
        }
    }
}

// ---- scalar path (C % 8 != 0, C > 2048 or unaligned pointers) ----------------------------------------

__global__ void layernorm_forward_kernel(bf16 *out, float *mean, float *rstd, const bf16 *inp,
                                         const bf16 *weight, const bf16 *bias, float eps, long long M,
                                         int C) {
    long long row = (long long)blockIdx.x * LN_ROWS_PER_BLOCK + threadIdx.y;
    if (row >= M) return;
    const bf16 *x = inp + row * C;
    float s = 0.0f;
    for (int c = threadIdx.x; c < C; c += 32)
        s += __bfloat162float(x[c]);
    float mu = warp_sum(s) / C;
    float v = 0.0f;
    for (int c = threadIdx.x; c < C; c += 32) {
        float d = __bfloat162float(x[c]) - mu;
        v += d * d;
    }
    float rs = rsqrtf(warp_sum(v) / C + eps);
    bf16 *y = out + row * C;
    for (int c = threadIdx.x; c < C; c += 32) {
        float n = (__bfloat162float(x[c]) - mu) * rs;
        y[c] = __float2bfloat16_rn(n * __bfloat162float(weight[c]) + __bfloat162float(bias[c]));
    }
    if (threadIdx.x == 0) {
        mean[row] = mu;
        rstd[row] = rs;
    }
}

// dinp for the block's rows; per-block partial sums of dweight, dbias into part[blockIdx.x][2C].
__global__ void layernorm_backward_kernel(bf16 *dinp, float *part, const bf16 *dout, const bf16 *inp,
                                          const bf16 *weight, const float *mean, const float *rstd,
                                          long long M, int C, long long rows_per_block) {
    extern __shared__ float acc[]; /* [LN_ROWS_PER_BLOCK][2C] */
    float *my = acc + threadIdx.y * 2 * C;
    for (int c = threadIdx.x; c < 2 * C; c += 32)
        my[c] = 0.0f;
    long long r0 = blockIdx.x * rows_per_block, r1 = min(M, r0 + rows_per_block);
    for (long long row = r0 + threadIdx.y; row < r1; row += LN_ROWS_PER_BLOCK) {
        const bf16 *x = inp + row * C, *dy = dout + row * C;
        float mu = mean[row], rs = rstd[row];
        float sg = 0.0f, sgx = 0.0f;
        for (int c = threadIdx.x; c < C; c += 32) {
            float g = __bfloat162float(dy[c]) * __bfloat162float(weight[c]);
            float xh = (__bfloat162float(x[c]) - mu) * rs;
            sg += g;
            sgx += g * xh;
            my[c] += __bfloat162float(dy[c]) * xh;
            my[C + c] += __bfloat162float(dy[c]);
        }
        float mg = warp_sum(sg) / C, mgx = warp_sum(sgx) / C;
        if (dinp)
            for (int c = threadIdx.x; c < C; c += 32) {
                float g = __bfloat162float(dy[c]) * __bfloat162float(weight[c]);
                float xh = (__bfloat162float(x[c]) - mu) * rs;
                dinp[row * C + c] = __float2bfloat16_rn((g - mg - xh * mgx) * rs);
            }
    }
    __syncthreads();
    int tid = threadIdx.y * 32 + threadIdx.x;
    for (int c = tid; c < 2 * C; c += 32 * LN_ROWS_PER_BLOCK) {
        float t = 0.0f;
        for (int w = 0; w < LN_ROWS_PER_BLOCK; w++)
            t += acc[w * 2 * C + c];
        part[blockIdx.x * 2 * C + c] = t;
    }
}

// dweight += the parts' column sums of part[p][0..C), dbias += those of part[p][C..2C): per block 32 columns
// x LN_SLICES slices of the parts, each slice summed in double, then the slices in a fixed tree. It runs
// between two memory-bound kernels, so it is made short: many loads in flight, few in sequence.
#define LN_SLICES 32
__global__ void __launch_bounds__(32 * LN_SLICES)
    ln_column_sum_kernel(float *dweight, float *dbias, const float *part, int nparts, int C) {
    __shared__ double s[LN_SLICES][32];
    int c = blockIdx.x * 32 + threadIdx.x, y = threadIdx.y;
    double t = 0.0;
    if (c < 2 * C)
#pragma unroll 4
        for (int p = y; p < nparts; p += LN_SLICES)
            t += part[(long long)p * 2 * C + c];
    s[y][threadIdx.x] = t;
    __syncthreads();
    for (int h = LN_SLICES / 2; h > 0; h >>= 1) {
        if (y < h) s[y][threadIdx.x] += s[y + h][threadIdx.x];
        __syncthreads();
    }
    if (y != 0 || c >= 2 * C) return;
    t = s[0][threadIdx.x];
    if (c < C) {
        if (dweight) dweight[c] += (float)t;
    } else if (dbias) {
        dbias[c - C] += (float)t;
    }
}

// ---- launchers ------------------------------------------------------------------------------------------

typedef void (*LnFwdFn)(bf16 *, float *, float *, const bf16 *, const bf16 *, const bf16 *, float, long long,
                        int, int);
typedef void (*LnBwdFn)(bf16 *, float *, float *, float *, const bf16 *, const bf16 *, const bf16 *,
                        const float *, const float *, long long, int, int);

static LnFwdFn ln_fwd_fn(int nv) {
    switch (nv) {
    case 1:
        return layernorm_forward_vec_kernel<1>;
    case 2:
        return layernorm_forward_vec_kernel<2>;
    case 3:
        return layernorm_forward_vec_kernel<3>;
    case 4:
        return layernorm_forward_vec_kernel<4>;
    case 5:
        return layernorm_forward_vec_kernel<5>;
    case 6:
        return layernorm_forward_vec_kernel<6>;
    case 7:
        return layernorm_forward_vec_kernel<7>;
    default:
        return layernorm_forward_vec_kernel<8>;
    }
}

static LnBwdFn ln_bwd_fn(int nv) {
    switch (nv) {
    case 1:
        return layernorm_backward_vec_kernel<1>;
    case 2:
        return layernorm_backward_vec_kernel<2>;
    case 3:
        return layernorm_backward_vec_kernel<3>;
    case 4:
        return layernorm_backward_vec_kernel<4>;
    case 5:
        return layernorm_backward_vec_kernel<5>;
    case 6:
        return layernorm_backward_vec_kernel<6>;
    case 7:
        return layernorm_backward_vec_kernel<7>;
    default:
        return layernorm_backward_vec_kernel<8>;
    }
}

static int aligned16(const void *p) {
    return p == NULL || ((uintptr_t)p & 15) == 0;
}

// Lanes per row (*G) and vectors per lane (returned) for the vector path, 0 where it does not apply. G is the
// largest power of two <= 32 dividing the V = C / 8 vectors (every lane busy) if a lane then holds at most
// nv_max of them, else the smallest that brings ceil(V / G) to nv_max or under.
static int ln_vec_shape(int C, int nv_max, int *G, const void *a, const void *b, const void *c,
                        const void *d) {
    if (C % 8 || !aligned16(a) || !aligned16(b) || !aligned16(c) || !aligned16(d)) return 0;
    int V = C / 8, g = 32;
    while (V % g)
        g >>= 1;
    if (V / g > nv_max)
        for (g = 1; g < 32 && (V + g - 1) / g > nv_max; g <<= 1)
            ;
    int nv = (V + g - 1) / g;
    *G = g;
    return nv <= LN_NV_MAX ? nv : 0;
}

// One full wave of resident blocks, no more than the rows need.
static int ln_blocks(const void *kernel, size_t smem, long long M, int G, CudaCtx *cu) {
    int per_sm = 0;
    cudaCheck(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, LN_THREADS, smem));
    long long b = (long long)(per_sm > 0 ? per_sm : 1) * cu->sm_count,
              need = (M + LN_THREADS / G - 1) / (LN_THREADS / G);
    return (int)(b < need ? b : need);
}

extern "C" void layernorm_forward_cuda(bf16_t *out, float *mean, float *rstd, const bf16_t *inp,
                                       const bf16_t *weight, const bf16_t *bias, float eps, int64_t M, int C,
                                       CudaCtx *cu) {
    if (M == 0) return;
    int G = 0, nv = ln_vec_shape(C, LN_NV_MAX, &G, out, inp, weight, bias);
    if (nv) {
        LnFwdFn k = ln_fwd_fn(nv);
        int blocks = ln_blocks((const void *)k, 0, M, G, cu);
        k<<<blocks, LN_THREADS, 0, cu->stream>>>((bf16 *)out, mean, rstd, (const bf16 *)inp,
                                                 (const bf16 *)weight, (const bf16 *)bias, eps, M, C, G);
        cudaCheckLast();
        return;
    }
    dim3 block(32, LN_ROWS_PER_BLOCK);
    layernorm_forward_kernel<<<ceil_div(M, LN_ROWS_PER_BLOCK), block, 0, cu->stream>>>(
        (bf16 *)out, mean, rstd, (const bf16 *)inp, (const bf16 *)weight, (const bf16 *)bias, eps, M, C);
    cudaCheckLast();
}

extern "C" void layernorm_backward_cuda(bf16_t *dinp, float *dweight, float *dbias, const bf16_t *dout,
                                        const bf16_t *inp, const bf16_t *weight, const float *mean,
                                        const float *rstd, int64_t M, int C, CudaCtx *cu) {
    if (M == 0) return;
    int G = 0, nv = ln_vec_shape(C, LN_BWD_NV, &G, dinp, dout, inp, weight);
    if (nv) {
        LnBwdFn k = ln_bwd_fn(nv);
        size_t smem = (size_t)4 * nv * LN_THREADS * sizeof(uint4) + (size_t)C * sizeof(float);
        if (smem > 48 * 1024)
            cudaCheck(cudaFuncSetAttribute((const void *)k, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           (int)smem));
        int nblocks = ln_blocks((const void *)k, smem, M, G, cu);
        float *part = (float *)cuda_scratch(cu, (size_t)nblocks * 2 * C * sizeof(float));
        long long rows = M;
        void *args[] = {&dinp, &dweight, &dbias, &part, &dout, &inp, &weight, &mean, &rstd, &rows, &C, &G};
        cudaCheck(cudaLaunchCooperativeKernel((const void *)k, dim3(nblocks), dim3(LN_THREADS), args, smem,
                                              cu->stream));
        return;
    }
    long long nblocks = M < LN_BWD_BLOCKS_MAX ? M : LN_BWD_BLOCKS_MAX;
    long long rows_per_block = (M + nblocks - 1) / nblocks;
    nblocks = (M + rows_per_block - 1) / rows_per_block;
    float *part = (float *)cuda_scratch(cu, (size_t)nblocks * 2 * C * sizeof(float));
    size_t smem = (size_t)LN_ROWS_PER_BLOCK * 2 * C * sizeof(float);
    if (smem > 48 * 1024)
        cudaCheck(cudaFuncSetAttribute(layernorm_backward_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                       (int)smem));
    dim3 block(32, LN_ROWS_PER_BLOCK);
    layernorm_backward_kernel<<<(unsigned)nblocks, block, smem, cu->stream>>>(
        (bf16 *)dinp, part, (const bf16 *)dout, (const bf16 *)inp, (const bf16 *)weight, mean, rstd, M, C,
        rows_per_block);
    cudaCheckLast();
    ln_column_sum_kernel<<<ceil_div(2 * C, 32), dim3(32, LN_SLICES), 0, cu->stream>>>(dweight, dbias, part,
                                                                                      (int)nblocks, C);
    cudaCheckLast();
}
