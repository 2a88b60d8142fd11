// optim.cu: the CUDA twins of optim.h (AdamW, LAMB, global gradient norm) over the flat float32 buffers.
//
// The range table travels in the kernel parameters, OPT_BATCH ranges per launch (a longer table takes several
// launches): no copy to the device and no state kept between steps. Each block takes OPT_CHUNK elements of
// one range and finds that range with a scan unrolled over the batch (constant-bank reads; indexing a
// parameter array with a run-time index would copy it to local memory). The element arithmetic is optim.c's,
// operation by operation, written with round-to-nearest intrinsics so that nvcc fuses no multiply-add: given
// the same inputs, the GPU produces the CPU twin's float32 values. Every float64 sum (LAMB norms, global
// norm) runs in an order fixed by the sizes alone: per-block partials, then a fixed sequence or tree.
#include <string.h>

#include "cuda_common.h"
#include "optim.h"

#define OPT_THREADS 256
#define OPT_PER_THREAD 16
#define OPT_CHUNK (OPT_THREADS * OPT_PER_THREAD)
#define OPT_BATCH 64
#define GN_THREADS 256
#define GN_MAX_BLOCKS 1024

typedef struct {
    unsigned long long offset[OPT_BATCH], count[OPT_BATCH];
    float wd[OPT_BATCH], decay[OPT_BATCH]; /* decay = 1 - lr wd (AdamW) */
    int block0[OPT_BATCH + 1];             /* first block of each range within the launch; [n] = blocks */
    int n, first, part0; /* ranges; index of the first one in the table; of the first block */
} OptBatch;

typedef struct {
    unsigned long long begin, end; /* this block's elements */
    float wd, decay;
    int r; /* range index within the batch */
} OptSpan;

__device__ __forceinline__ OptSpan opt_span(const OptBatch &b) {
    OptSpan s = {0, 0, 0.0f, 1.0f, 0};
    int blk = blockIdx.x;
#pragma unroll
    for (int r = 0; r < OPT_BATCH; r++)
        if (r < b.n && blk >= b.block0[r]) {
            s.r = r;
            s.begin = b.offset[r] + (unsigned long long)(blk - b.block0[r]) * OPT_CHUNK;
            s.end = b.offset[r] + b.count[r];
            s.wd = b.wd[r], s.decay = b.decay[r];
        }
    return s;
}

__global__ void __launch_bounds__(OPT_THREADS)
    adamw_kernel(float *__restrict__ params, float *__restrict__ m, float *__restrict__ v,
                 bf16 *__restrict__ pbf, const float *__restrict__ grads, const OptBatch b, OptimConsts k,
                 float grad_scale) {
    OptSpan sp = opt_span(b);
    float neg_step = -k.step_size;
#pragma unroll 4
    for (int e = 0; e < OPT_PER_THREAD; e++) {
        unsigned long long i = sp.begin + (unsigned long long)e * OPT_THREADS + threadIdx.x;
        if (i >= sp.end) break;
        float g = __fmul_rn(grads[i], grad_scale), m0 = m[i];
        float mm = __fadd_rn(m0, __fmul_rn(k.one_minus_beta1, __fsub_rn(g, m0)));
        float vv = __fadd_rn(__fmul_rn(k.beta2, v[i]), __fmul_rn(__fmul_rn(k.one_minus_beta2, g), g));
        float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vv), k.bc2_sqrt), k.eps);
        float p = __fmul_rn(params[i], sp.decay);
        p = __fadd_rn(p, __fmul_rn(neg_step, __fdiv_rn(mm, denom)));
        m[i] = mm, v[i] = vv, params[i] = p;
        if (pbf) pbf[i] = __float2bfloat16_rn(p);
    }
}

// LAMB's update direction from the new moments (optim.c's lamb_direction).
__device__ __forceinline__ float lamb_u(float mm, float vv, float p, float wd, const OptimConsts &k) {
    float u = __fdiv_rn(__fdiv_rn(mm, k.bc1), __fadd_rn(__fdiv_rn(__fsqrt_rn(vv), k.bc2_sqrt), k.eps));
    return wd != 0.0f ? __fadd_rn(u, __fmul_rn(wd, p)) : u;
}

__device__ __forceinline__ double block_sum_d(double x, double *sh) {
    for (int o = 16; o > 0; o >>= 1)
        x += __shfl_xor_sync(0xffffffffu, x, o);
    if (threadIdx.x % 32 == 0) sh[threadIdx.x / 32] = x;
    __syncthreads();
    double t = 0.0;
    for (int w = 0; w < (int)blockDim.x / 32; w++)
        t += sh[w];
    __syncthreads();
    return t;
}

// Pass 1: moments written; part[part0 + block] = (sum p^2, sum u^2) over the block's elements.
__global__ void __launch_bounds__(OPT_THREADS)
    lamb_moments_kernel(double *__restrict__ part, float *__restrict__ m, float *__restrict__ v,
                        const float *__restrict__ params, const float *__restrict__ grads, const OptBatch b,
                        OptimConsts k, float grad_scale) {
    __shared__ double sh[OPT_THREADS / 32];
    OptSpan sp = opt_span(b);
    double pp = 0.0, uu = 0.0;
#pragma unroll 4
    for (int e = 0; e < OPT_PER_THREAD; e++) {
        unsigned long long i = sp.begin + (unsigned long long)e * OPT_THREADS + threadIdx.x;
        if (i >= sp.end) break;
        float g = __fmul_rn(grads[i], grad_scale), p = params[i];
        float mm = __fadd_rn(__fmul_rn(k.beta1, m[i]), __fmul_rn(k.one_minus_beta1, g));
        float vv = __fadd_rn(__fmul_rn(k.beta2, v[i]), __fmul_rn(__fmul_rn(k.one_minus_beta2, g), g));
        m[i] = mm, v[i] = vv;
        float u = lamb_u(mm, vv, p, sp.wd, k);
        pp += (double)p * p;
        uu += (double)u * u;
    }
    pp = block_sum_d(pp, sh);
    uu = block_sum_d(uu, sh);
    if (threadIdx.x == 0) {
        part[2 * (b.part0 + blockIdx.x)] = pp;
        part[2 * (b.part0 + blockIdx.x) + 1] = uu;
    }
}

// One thread per range of the batch: its blocks' partials summed in block order, then the trust ratio.
__global__ void lamb_trust_kernel(float *trust, const double *part, const OptBatch b) {
    int me = threadIdx.x;
    int blk0 = 0, blk1 = 0;
    float wd = 0.0f;
#pragma unroll
    for (int r = 0; r < OPT_BATCH; r++)
        if (r == me) blk0 = b.block0[r], blk1 = b.block0[r + 1], wd = b.wd[r];
    if (me >= b.n) return;
    double pp = 0.0, uu = 0.0;
    for (int q = blk0; q < blk1; q++)
        pp += part[2 * (b.part0 + q)], uu += part[2 * (b.part0 + q) + 1];
    double wn = sqrt(pp), un = sqrt(uu);
    trust[b.first + me] = wd != 0.0f && wn > 0.0 && un > 0.0 ? (float)(wn / un) : 1.0f;
}

// Pass 2: p += -lr (u trust), u recomputed from the moments pass 1 wrote.
__global__ void __launch_bounds__(OPT_THREADS)
    lamb_apply_kernel(float *__restrict__ params, bf16 *__restrict__ pbf, const float *__restrict__ m,
                      const float *__restrict__ v, const float *__restrict__ trust, const OptBatch b,
                      OptimConsts k) {
    OptSpan sp = opt_span(b);
    float tr = trust[b.first + sp.r], neg_lr = -k.lr;
#pragma unroll 4
    for (int e = 0; e < OPT_PER_THREAD; e++) {
        unsigned long long i = sp.begin + (unsigned long long)e * OPT_THREADS + threadIdx.x;
        if (i >= sp.end) break;
        float p = params[i];
        p = __fadd_rn(p, __fmul_rn(neg_lr, __fmul_rn(lamb_u(m[i], v[i], p, sp.wd, k), tr)));
        params[i] = p;
        if (pbf) pbf[i] = __float2bfloat16_rn(p);
    }
}

__global__ void __launch_bounds__(GN_THREADS)
    global_norm_part_kernel(double *part, const float *g, size_t n) {
    __shared__ double sh[GN_THREADS / 32];
    double s = 0.0;
    for (size_t i = (size_t)blockIdx.x * GN_THREADS + threadIdx.x; i < n; i += (size_t)gridDim.x * GN_THREADS)
        s += (double)g[i] * g[i];
    s = block_sum_d(s, sh);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

__global__ void __launch_bounds__(GN_THREADS)
    global_norm_final_kernel(double *out, const double *part, int nparts) {
    __shared__ double sh[GN_THREADS / 32];
    double s = 0.0;
    for (int p = threadIdx.x; p < nparts; p += GN_THREADS)
        s += part[p];
    s = block_sum_d(s, sh);
    if (threadIdx.x == 0) *out = s;
}

// ---- launchers
// ----------------------------------------------------------------------------------------------

static int opt_blocks(const OptimRange *r) {
    return (int)((r->count + OPT_CHUNK - 1) / OPT_CHUNK);
}

// The batch of ranges [first, first + OPT_BATCH) (fewer at the end); part0 = blocks of the earlier batches.
static OptBatch opt_batch(const OptimRange *ranges, int n_ranges, int first, int part0, float lr) {
    OptBatch b;
    memset(&b, 0, sizeof b);
    b.first = first;
    b.part0 = part0;
    b.n = n_ranges - first < OPT_BATCH ? n_ranges - first : OPT_BATCH;
    for (int r = 0; r < b.n; r++) {
        const OptimRange *g = &ranges[first + r];
        b.offset[r] = g->offset, b.count[r] = g->count, b.wd[r] = g->weight_decay;
        b.decay[r] = (float)(1.0 - (double)lr * (double)g->weight_decay);
        b.block0[r + 1] = b.block0[r] + opt_blocks(g);
    }
    return b;
}

extern "C" void adamw_update_cuda(float *params, float *m, float *v, bf16_t *params_bf16, const float *grads,
                                  size_t n, const OptimRange *ranges, int n_ranges, OptimHyper hp,
                                  float grad_scale, CudaCtx *cu) {
    optim_check_ranges(ranges, n_ranges, n);
    OptimConsts k = optim_consts(hp);
    for (int first = 0; first < n_ranges; first += OPT_BATCH) {
        OptBatch b = opt_batch(ranges, n_ranges, first, 0, hp.lr);
        adamw_kernel<<<b.block0[b.n], OPT_THREADS, 0, cu->stream>>>(params, m, v, (bf16 *)params_bf16, grads,
                                                                    b, k, grad_scale);
        cudaCheckLast();
    }
}

extern "C" void lamb_update_cuda(float *params, float *m, float *v, bf16_t *params_bf16, const float *grads,
                                 size_t n, const OptimRange *ranges, int n_ranges, OptimHyper hp,
                                 float grad_scale, CudaCtx *cu) {
    optim_check_ranges(ranges, n_ranges, n);
    if (n_ranges == 0) return;
    OptimConsts k = optim_consts(hp);
    int total = 0;
    for (int r = 0; r < n_ranges; r++)
        total += opt_blocks(&ranges[r]);
    size_t part_bytes = ((size_t)total * 2 * sizeof(double) + 255) & ~(size_t)255;
    char *scratch = (char *)cuda_scratch(cu, part_bytes + (size_t)n_ranges * sizeof(float));
    double *part = (double *)scratch;
    float *trust = (float *)(scratch + part_bytes);
    for (int first = 0, part0 = 0; first < n_ranges; first += OPT_BATCH) {
        OptBatch b = opt_batch(ranges, n_ranges, first, part0, hp.lr);
        lamb_moments_kernel<<<b.block0[b.n], OPT_THREADS, 0, cu->stream>>>(part, m, v, params, grads, b, k,
                                                                           grad_scale);
        cudaCheckLast();
        lamb_trust_kernel<<<1, OPT_BATCH, 0, cu->stream>>>(trust, part, b);
        cudaCheckLast();
        part0 += b.block0[b.n];
    }
    for (int first = 0; first < n_ranges; first += OPT_BATCH) {
        OptBatch b = opt_batch(ranges, n_ranges, first, 0, hp.lr);
        lamb_apply_kernel<<<b.block0[b.n], OPT_THREADS, 0, cu->stream>>>(params, (bf16 *)params_bf16, m, v,
                                                                         trust, b, k);
        cudaCheckLast();
    }
}

extern "C" void global_norm_sq_cuda(double *out, const float *grads, size_t n, CudaCtx *cu) {
    size_t want = (n + GN_THREADS * 16 - 1) / (GN_THREADS * 16);
    int blocks = want < 1 ? 1 : want > GN_MAX_BLOCKS ? GN_MAX_BLOCKS : (int)want;
    double *part = (double *)cuda_scratch(cu, (size_t)blocks * sizeof(double));
    global_norm_part_kernel<<<blocks, GN_THREADS, 0, cu->stream>>>(part, grads, n);
    cudaCheckLast();
    global_norm_final_kernel<<<1, GN_THREADS, 0, cu->stream>>>(out, part, blocks);
    cudaCheckLast();
}

__global__ void ema_kernel(float *ema, const float *src, size_t n, float w) {
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        ema[i] = __fadd_rn(ema[i], __fmul_rn(w, __fsub_rn(src[i], ema[i])));
}

extern "C" void ema_update_cuda(float *ema, const float *src, size_t n, float decay, CudaCtx *cu) {
    if (n == 0) return;
    size_t blocks = (n + 255) / 256;
    ema_kernel<<<(unsigned)(blocks < 4096 ? blocks : 4096), 256, 0, cu->stream>>>(ema, src, n, 1.0f - decay);
    cudaCheckLast();
}
