// conv2d.cu: 2-D convolution over NHWC bf16 images through cuDNN's legacy API, fp32 accumulation.
//
// N images, H x W in, OH x OW out, C in and OC out channels, K x K kernel, groups of Cg = C/groups in and
// OCg = OC/groups out channels. The filter [OC, K, K, Cg] is cuDNN's NHWC filter layout, so nothing is
// transposed. dinp written; dweight and dbias accumulated.
//
// The decision to know: the algorithm of each (direction, shape, pointer alignment) is taken once from
// cuDNN's timing of every algorithm on the first call (conv_find; the heuristic ranking when that fails),
// restricted to deterministic algorithms only under GKA_DETERMINISTIC=1 (deterministic_only says why), and
// cached in CudaCtx. Inputs whose channels are not a multiple of 8 (the RGB stem) are zero-padded to one,
// which cuDNN's tensor-core kernels need. All tensors of a cuDNN convolution share one dtype, so the weight
// gradient comes out in bf16 (from fp32 accumulation) and a kernel here adds it to the float32 gradient, as
// torch autocast does. The op has its own workspace in CudaCtx (cuda_scratch may be reused by any op). Shapes
// for which cuDNN has no algorithm, and builds without cuDNN, run the direct kernels below.
#include <stdlib.h>
#include <string.h>

#include "cuda_common.h"
#include "profile.h"
#include "ops_cuda.h"

enum { CONV_FWD = 0, CONV_DGRAD = 1, CONV_WGRAD = 2 };

#define CONV_WS_MAX ((size_t)1 << 30) /* largest cuDNN workspace an algorithm may ask for */
#define BIAS_ROWS_PER_CHUNK 1024      /* fixed, so the bias-gradient sum order ignores the device */
#define DIRECT_MAX_CHUNKS 64          /* weight-gradient partials of the direct kernel */

typedef struct {
    int N, H, W, C, OC, K, stride, pad, groups, OH, OW, Cg, OCg;
} ConvShape;

static ConvShape conv_shape(int N, int H, int W, int C, int OC, int K, int stride, int pad, int groups) {
    ConvShape s = {N, H, W, C, OC, K, stride, pad, groups, 0, 0, C / groups, OC / groups};
    s.OH = (H + 2 * pad - K) / stride + 1;
    s.OW = (W + 2 * pad - K) / stride + 1;
    return s;
}

static size_t align256(size_t b) {
    return (b + 255) & ~(size_t)255;
}

// The op's workspace, grown (never shrunk). Growing waits for queued work that may still read the old one.
static char *conv_ws(CudaCtx *cu, size_t bytes) {
    if (bytes > cu->conv_workspace_bytes) {
        cudaCheck(cudaStreamSynchronize(cu->stream));
        if (cu->conv_workspace) cudaCheck(cudaFree(cu->conv_workspace));
        cu->conv_workspace = NULL;
        cudaCheck(cudaMalloc(&cu->conv_workspace, bytes));
        cu->conv_workspace_bytes = bytes;
    }
    return (char *)cu->conv_workspace;
}

// ---- small kernels: bias, bias gradient, gradient accumulation -------------------------------------------

// out[m, o] += bias[o]; 8 channels per thread (16-byte accesses) when OC % 8 == 0 and out is 16-byte aligned.
__global__ void conv_bias_add_vec_kernel(bf16 *out, const bf16 *bias, long long n_vec, int OC) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n_vec) return;
    int o0 = (int)((i * 8) % OC);
    uint4 raw = reinterpret_cast<uint4 *>(out)[i];
    bf16 *v = reinterpret_cast<bf16 *>(&raw);
#pragma unroll
    for (int u = 0; u < 8; u++)
        v[u] = __float2bfloat16_rn(__bfloat162float(v[u]) + __bfloat162float(bias[o0 + u]));
    reinterpret_cast<uint4 *>(out)[i] = raw;
}

__global__ void conv_bias_add_kernel(bf16 *out, const bf16 *bias, long long n, int OC) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = __float2bfloat16_rn(__bfloat162float(out[i]) + __bfloat162float(bias[i % OC]));
}

// part[chunk][o] = sum over the chunk's rows of dout[r, o]: 32 channels by 8 row lanes per block.
__global__ void conv_bias_grad_kernel(float *part, const bf16 *dout, long long rows, int OC) {
    __shared__ float acc[8][33];
    int o = blockIdx.y * 32 + threadIdx.x;
    long long r0 = (long long)blockIdx.x * BIAS_ROWS_PER_CHUNK, r1 = min(rows, r0 + BIAS_ROWS_PER_CHUNK);
    float s = 0.0f;
    if (o < OC)
        for (long long r = r0 + threadIdx.y; r < r1; r += 8)
            s += __bfloat162float(dout[r * OC + o]);
    acc[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && o < OC) {
        float t = 0.0f;
        for (int k = 0; k < 8; k++)
            t += acc[k][threadIdx.x];
        part[blockIdx.x * OC + o] = t;
    }
}

// dst[i] += sum over p of part[p][i], in a fixed order.
__global__ void conv_partials_accumulate_kernel(float *dst, const float *part, int nparts, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float t = 0.0f;
    for (int p = 0; p < nparts; p++)
        t += part[(long long)p * n + i];
    dst[i] += t;
}

__global__ void conv_bf16_accumulate_kernel(float *dst, const bf16 *src, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] += __bfloat162float(src[i]);
}

// ---- channel padding: cuDNN's tensor-core kernels want C % 8 == 0 (the stem's RGB input has 3)
// --------------

#define PAD_C 8

// dst[r, c] = c < C ? src[r, c] : 0, for rows of C and Cp channels.
__global__ void conv_pad_channels_kernel(bf16 *dst, const bf16 *src, long long rows, int C, int Cp) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * Cp) return;
    long long r = i / Cp;
    int c = (int)(i % Cp);
    dst[i] = c < C ? src[r * C + c] : __float2bfloat16(0.0f);
}

// dst[r, c] = src[r, c] for c < C: the real channels of a padded [rows, Cp] tensor.
__global__ void conv_unpad_channels_kernel(bf16 *dst, const bf16 *src, long long rows, int C, int Cp) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= rows * C) return;
    dst[i] = src[(i / C) * Cp + i % C];
}

// dst[r, c] += src[r, c] for c < C, from a padded bf16 weight gradient [rows, Cp].
__global__ void conv_unpad_accumulate_kernel(float *dst, const bf16 *src, int rows, int C, int Cp) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < rows * C) dst[i] += __bfloat162float(src[(i / C) * Cp + i % C]);
}

static void pad_channels(bf16 *dst, const bf16_t *src, long long rows, int C, int Cp, CudaCtx *cu) {
    conv_pad_channels_kernel<<<ceil_div(rows * Cp, 256), 256, 0, cu->stream>>>(dst, (const bf16 *)src, rows,
                                                                               C, Cp);
    cudaCheckLast();
}

// ---- direct kernels: the path for shapes cuDNN does not take ----------------------------------------------

// One thread per output element; bias added before the single rounding to bf16.
__global__ void conv_fwd_direct_kernel(bf16 *out, const bf16 *inp, const bf16 *w, const bf16 *bias,
                                       ConvShape s) {
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)s.N * s.OH * s.OW * s.OC) return;
    int o = (int)(idx % s.OC);
    long long p = idx / s.OC;
    int ow = (int)(p % s.OW), oh = (int)(p / s.OW % s.OH);
    long long n = p / s.OW / s.OH;
    int c0 = o / s.OCg * s.Cg;
    float acc = bias ? __bfloat162float(bias[o]) : 0.0f;
    for (int kh = 0; kh < s.K; kh++) {
        int ih = oh * s.stride - s.pad + kh;
        if (ih < 0 || ih >= s.H) continue;
        for (int kw = 0; kw < s.K; kw++) {
            int iw = ow * s.stride - s.pad + kw;
            if (iw < 0 || iw >= s.W) continue;
            const bf16 *x = inp + ((n * s.H + ih) * s.W + iw) * s.C + c0;
            const bf16 *wr = w + (((long long)o * s.K + kh) * s.K + kw) * s.Cg;
            for (int c = 0; c < s.Cg; c++)
                acc += __bfloat162float(x[c]) * __bfloat162float(wr[c]);
        }
    }
    out[idx] = __float2bfloat16_rn(acc);
}

// One thread per input element, gathering the output gradients its pixel contributed to.
__global__ void conv_dgrad_direct_kernel(bf16 *dinp, const bf16 *dout, const bf16 *w, ConvShape s) {
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx >= (long long)s.N * s.H * s.W * s.C) return;
    int c = (int)(idx % s.C);
    long long p = idx / s.C;
    int iw = (int)(p % s.W), ih = (int)(p / s.W % s.H);
    long long n = p / s.W / s.H;
    int g = c / s.Cg, ci = c % s.Cg;
    float acc = 0.0f;
    for (int kh = 0; kh < s.K; kh++) {
        int th = ih + s.pad - kh;
        if (th < 0 || th % s.stride || th / s.stride >= s.OH) continue;
        for (int kw = 0; kw < s.K; kw++) {
            int tw = iw + s.pad - kw;
            if (tw < 0 || tw % s.stride || tw / s.stride >= s.OW) continue;
            const bf16 *dy = dout + ((n * s.OH + th / s.stride) * s.OW + tw / s.stride) * s.OC + g * s.OCg;
            for (int oo = 0; oo < s.OCg; oo++) {
                long long wi = (((long long)(g * s.OCg + oo) * s.K + kh) * s.K + kw) * s.Cg + ci;
                acc += __bfloat162float(dy[oo]) * __bfloat162float(w[wi]);
            }
        }
    }
    dinp[idx] = __float2bfloat16_rn(acc);
}

// part[chunk][widx] = sum over the chunk's output pixels of dout[r, o] * inp[pixel under tap (kh, kw), c].
__global__ void conv_wgrad_direct_kernel(float *part, const bf16 *dout, const bf16 *inp, ConvShape s,
                                         long long rows_per_chunk) {
    int nw = s.OC * s.K * s.K * s.Cg, widx = blockIdx.x * blockDim.x + threadIdx.x;
    if (widx >= nw) return;
    int ci = widx % s.Cg, t = widx / s.Cg, kw = t % s.K, kh = t / s.K % s.K, o = t / s.K / s.K;
    int c = o / s.OCg * s.Cg + ci;
    long long rows = (long long)s.N * s.OH * s.OW, r0 = blockIdx.y * rows_per_chunk;
    long long r1 = min(rows, r0 + rows_per_chunk);
    float acc = 0.0f;
    for (long long r = r0; r < r1; r++) {
        int ow = (int)(r % s.OW), oh = (int)(r / s.OW % s.OH);
        long long n = r / s.OW / s.OH;
        int ih = oh * s.stride - s.pad + kh, iw = ow * s.stride - s.pad + kw;
        if (ih < 0 || ih >= s.H || iw < 0 || iw >= s.W) continue;
        acc += __bfloat162float(dout[r * s.OC + o]) *
               __bfloat162float(inp[((n * s.H + ih) * s.W + iw) * s.C + c]);
    }
    part[(long long)blockIdx.y * nw + widx] = acc;
}

// ---- cuDNN ------------------------------------------------------------------------------------------------
#ifdef GKA_HAVE_CUDNN

typedef struct {
    cudnnTensorDescriptor_t x, y;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
} ConvDesc;

typedef struct {
    int algo, math;
} ConvCand;

static void desc_create(ConvDesc *d, const ConvShape *s) {
    cudnnCheck(cudnnCreateTensorDescriptor(&d->x));
    cudnnCheck(cudnnCreateTensorDescriptor(&d->y));
    cudnnCheck(cudnnCreateFilterDescriptor(&d->w));
    cudnnCheck(cudnnCreateConvolutionDescriptor(&d->conv));
    cudnnCheck(
        cudnnSetTensor4dDescriptor(d->x, CUDNN_TENSOR_NHWC, CUDNN_DATA_BFLOAT16, s->N, s->C, s->H, s->W));
    cudnnCheck(
        cudnnSetTensor4dDescriptor(d->y, CUDNN_TENSOR_NHWC, CUDNN_DATA_BFLOAT16, s->N, s->OC, s->OH, s->OW));
    cudnnCheck(
        cudnnSetFilter4dDescriptor(d->w, CUDNN_DATA_BFLOAT16, CUDNN_TENSOR_NHWC, s->OC, s->Cg, s->K, s->K));
    cudnnCheck(cudnnSetConvolution2dDescriptor(d->conv, s->pad, s->pad, s->stride, s->stride, 1, 1,
                                               CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    cudnnCheck(cudnnSetConvolutionGroupCount(d->conv, s->groups));
    // bf16 on tensor cores: with the default math type cuDNN's legacy API offers its slow CUDA-core kernels
    cudnnCheck(cudnnSetConvolutionMathType(d->conv, CUDNN_TENSOR_OP_MATH));
}

static void desc_destroy(ConvDesc *d) {
    cudnnCheck(cudnnDestroyConvolutionDescriptor(d->conv));
    cudnnCheck(cudnnDestroyFilterDescriptor(d->w));
    cudnnCheck(cudnnDestroyTensorDescriptor(d->y));
    cudnnCheck(cudnnDestroyTensorDescriptor(d->x));
}

// A status that means "this algorithm does not take this configuration": try the next one.
static int rejected(cudnnStatus_t st) {
    return ((int)st >= 3000 && (int)st < 4000) || st == CUDNN_STATUS_BAD_PARAM_MISALIGNED_POINTER;
}

// Whether only deterministic algorithms may run (GKA_DETERMINISTIC=1). cuDNN's deterministic weight- and
// data-gradient algorithms for NHWC bf16 are an order of magnitude slower than the fastest (measured on H100:
// a GKAVision-T training step 1.36 s against about 0.1 s without the convolutions), so by default the
// heuristic's best algorithm runs, and a GPU run is reproducible to rounding, not bit for bit.
static int deterministic_only(void) {
    static int v = -1;
    if (v < 0) {
        const char *e = getenv("GKA_DETERMINISTIC");
        v = e && *e && strcmp(e, "0") != 0;
    }
    return v;
}

// Algorithms that fit CONV_WS_MAX (deterministic ones only when asked), in cuDNN's heuristic order (best
// expected first).
#define CONV_TAKE(perf)                                                                                      \
    ((perf).status == CUDNN_STATUS_SUCCESS && (perf).memory <= CONV_WS_MAX &&                                \
     (!deterministic_only() || (perf).determinism == CUDNN_DETERMINISTIC))
static int conv_candidates(CudaCtx *cu, const ConvDesc *d, int dir, ConvCand *out) {
    int got = 0, n = 0;
    if (dir == CONV_FWD) {
        cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
        cudnnCheck(cudnnGetConvolutionForwardAlgorithm_v7(cu->cudnn, d->x, d->w, d->conv, d->y,
                                                          CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got, perf));
        for (int i = 0; i < got; i++)
            if (CONV_TAKE(perf[i])) out[n++] = ConvCand{(int)perf[i].algo, (int)perf[i].mathType};
    } else if (dir == CONV_DGRAD) {
        cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        cudnnCheck(cudnnGetConvolutionBackwardDataAlgorithm_v7(
            cu->cudnn, d->w, d->y, d->conv, d->x, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &got, perf));
        for (int i = 0; i < got; i++)
            if (CONV_TAKE(perf[i])) out[n++] = ConvCand{(int)perf[i].algo, (int)perf[i].mathType};
    } else {
        cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
        cudnnCheck(cudnnGetConvolutionBackwardFilterAlgorithm_v7(
            cu->cudnn, d->x, d->y, d->conv, d->w, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &got, perf));
        for (int i = 0; i < got; i++)
            if (CONV_TAKE(perf[i])) out[n++] = ConvCand{(int)perf[i].algo, (int)perf[i].mathType};
    }
    return n;
}

// Runs one direction with one algorithm. FWD: out = conv(a = x, b = w). DGRAD: out = conv^T(a = dy, b = w).
// WGRAD: the workspace's first `reserved` bytes (bf16 weight gradient) = a = dy correlated with b = x. The
// workspace after `reserved` is cuDNN's. Returns cuDNN's status, so a caller can move on to the next
// algorithm.
static cudnnStatus_t conv_try(CudaCtx *cu, const ConvDesc *d, int dir, ConvCand c, void *out, const void *a,
                              const void *b, size_t reserved) {
    size_t ws = 0;
    cudnnStatus_t st;
    cudnnCheck(cudnnSetConvolutionMathType(d->conv, (cudnnMathType_t)c.math));
    if (dir == CONV_FWD)
        st = cudnnGetConvolutionForwardWorkspaceSize(cu->cudnn, d->x, d->w, d->conv, d->y,
                                                     (cudnnConvolutionFwdAlgo_t)c.algo, &ws);
    else if (dir == CONV_DGRAD)
        st = cudnnGetConvolutionBackwardDataWorkspaceSize(cu->cudnn, d->w, d->y, d->conv, d->x,
                                                          (cudnnConvolutionBwdDataAlgo_t)c.algo, &ws);
    else
        st = cudnnGetConvolutionBackwardFilterWorkspaceSize(cu->cudnn, d->x, d->y, d->conv, d->w,
                                                            (cudnnConvolutionBwdFilterAlgo_t)c.algo, &ws);
    if (st != CUDNN_STATUS_SUCCESS) return st;
    char *base = conv_ws(cu, reserved + ws + 256);
    void *wsp = ws ? base + reserved : NULL;
    const float one = 1.0f, zero = 0.0f;
    if (dir == CONV_FWD)
        return cudnnConvolutionForward(cu->cudnn, &one, d->x, a, d->w, b, d->conv,
                                       (cudnnConvolutionFwdAlgo_t)c.algo, wsp, ws, &zero, d->y, out);
    if (dir == CONV_DGRAD)
        return cudnnConvolutionBackwardData(cu->cudnn, &one, d->w, b, d->y, a, d->conv,
                                            (cudnnConvolutionBwdDataAlgo_t)c.algo, wsp, ws, &zero, d->x, out);
    return cudnnConvolutionBackwardFilter(cu->cudnn, &one, d->x, b, d->y, a, d->conv,
                                          (cudnnConvolutionBwdFilterAlgo_t)c.algo, wsp, ws, &zero, d->w,
                                          base);
}

// The candidates ranked by cuDNN's own timing of each algorithm on these very buffers (cudnnFind*Ex), once
// per shape: the legacy API's heuristic ranks slow CUDA-core kernels first for NHWC bf16 gradients. FWD:
// a = x, b = w, out = y. DGRAD: a = dy, b = w, out = dx. WGRAD: a = dy, b = x, out = the workspace's first
// `reserved` bytes. Returns the number of candidates (0: fall back to the heuristic).
#define CONV_FIND_WS ((size_t)512 << 20)
static int conv_find(CudaCtx *cu, const ConvDesc *d, int dir, void *out, const void *a, const void *b,
                     size_t reserved, ConvCand *cand) {
    char *base = conv_ws(cu, reserved + CONV_FIND_WS + 256);
    void *ws = base + reserved;
    int got = 0, n = 0;
    cudnnStatus_t st;
    if (dir == CONV_FWD) {
        cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT];
        st = cudnnFindConvolutionForwardAlgorithmEx(cu->cudnn, d->x, a, d->w, b, d->conv, d->y, out,
                                                    CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &got, perf, ws,
                                                    CONV_FIND_WS);
        for (int i = 0; st == CUDNN_STATUS_SUCCESS && i < got; i++)
            if (CONV_TAKE(perf[i])) cand[n++] = ConvCand{(int)perf[i].algo, (int)perf[i].mathType};
    } else if (dir == CONV_DGRAD) {
        cudnnConvolutionBwdDataAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT];
        st = cudnnFindConvolutionBackwardDataAlgorithmEx(cu->cudnn, d->w, b, d->y, a, d->conv, d->x, out,
                                                         CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &got, perf,
                                                         ws, CONV_FIND_WS);
        for (int i = 0; st == CUDNN_STATUS_SUCCESS && i < got; i++)
            if (CONV_TAKE(perf[i])) cand[n++] = ConvCand{(int)perf[i].algo, (int)perf[i].mathType};
    } else {
        cudnnConvolutionBwdFilterAlgoPerf_t perf[CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT];
        st = cudnnFindConvolutionBackwardFilterAlgorithmEx(cu->cudnn, d->x, b, d->y, a, d->conv, d->w, base,
                                                           CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &got,
                                                           perf, ws, CONV_FIND_WS);
        for (int i = 0; st == CUDNN_STATUS_SUCCESS && i < got; i++)
            if (CONV_TAKE(perf[i])) cand[n++] = ConvCand{(int)perf[i].algo, (int)perf[i].mathType};
    }
    return n;
}

static int ptr_align(const void *p) {
    uintptr_t u = (uintptr_t)p;
    return (u & 15) == 0 ? 16 : (u & 7) == 0 ? 8 : (u & 3) == 0 ? 4 : 2;
}

// Runs the direction through cuDNN with the cached algorithm, picking one on the first call of a shape.
// Returns 0 when no cuDNN algorithm takes it (cached too), so the caller runs the direct
// kernel.
static int conv_cudnn(CudaCtx *cu, const ConvShape *s, int dir, void *out, const void *a, const void *b,
                      size_t reserved) {
    int align = ptr_align(a) < ptr_align(b) ? ptr_align(a) : ptr_align(b);
    if (out && ptr_align(out) < align) align = ptr_align(out);
    int key[12] = {dir, s->N, s->H, s->W, s->C, s->OC, s->K, s->stride, s->pad, s->groups, align, 1};
    ConvAlgoSlot *slot = NULL;
    for (int i = 0; i < CONV_ALGO_SLOTS && !slot; i++)
        if (!memcmp(cu->conv_algos[i].key, key, sizeof key)) slot = &cu->conv_algos[i];
    if (slot && slot->algo < 0) return 0;
    ConvDesc d;
    desc_create(&d, s);
    int ran = 0;
    if (slot) {
        cudnnStatus_t st = conv_try(cu, &d, dir, ConvCand{slot->algo, slot->math_type}, out, a, b, reserved);
        if (st == CUDNN_STATUS_SUCCESS)
            ran = 1;
        else if (!rejected(st))
            cudnnCheck(st);
    }
    if (!ran) {
        ConvCand cand[16];
        int n = conv_find(cu, &d, dir, out, a, b, reserved, cand), chosen = -1;
        if (n == 0) n = conv_candidates(cu, &d, dir, cand);
        for (int i = 0; i < n && chosen < 0; i++) {
            cudnnStatus_t st = conv_try(cu, &d, dir, cand[i], out, a, b, reserved);
            if (st == CUDNN_STATUS_SUCCESS)
                chosen = i;
            else if (!rejected(st))
                cudnnCheck(st);
        }
        if (!slot) {
            slot = &cu->conv_algos[cu->conv_algo_next];
            cu->conv_algo_next = (cu->conv_algo_next + 1) % CONV_ALGO_SLOTS;
            memcpy(slot->key, key, sizeof key);
        }
        slot->algo = chosen >= 0 ? cand[chosen].algo : -1;
        slot->math_type = chosen >= 0 ? cand[chosen].math : 0;
        if (prof_enabled()) // GKA_PROFILE=1: say which path each shape takes
            fprintf(stderr,
                    "conv %s N%d %dx%d %d->%d k%d s%d g%d align %d: %s algo %d math %d (%d candidates)\n",
                    dir == CONV_FWD     ? "fwd"
                    : dir == CONV_DGRAD ? "dgrad"
                                        : "wgrad",
                    s->N, s->H, s->W, s->C, s->OC, s->K, s->stride, s->groups, align,
                    chosen >= 0 ? "cudnn" : "DIRECT", slot->algo, slot->math_type, n);
        ran = chosen >= 0;
    }
    desc_destroy(&d);
    return ran;
}
#else
static int conv_cudnn(CudaCtx *, const ConvShape *, int, void *, const void *, const void *, size_t) {
    return 0;
}
#endif

// ---- launchers
// ---------------------------------------------------------------------------------------------

extern "C" void conv2d_forward_cuda(bf16_t *out, const bf16_t *inp, const bf16_t *weight, const bf16_t *bias,
                                    int N, int H, int W, int C, int OC, int K, int stride, int pad,
                                    int groups, CudaCtx *cu) {
    ConvShape s = conv_shape(N, H, W, C, OC, K, stride, pad, groups);
    long long n = (long long)N * s.OH * s.OW * OC;
    if (n == 0) return;
    int ran = 0;
    if (C % PAD_C && groups == 1) { // zero channels up to a multiple of 8: the same sums, on tensor cores
        const int Cp = (C + PAD_C - 1) / PAD_C * PAD_C;
        ConvShape sp = conv_shape(N, H, W, Cp, OC, K, stride, pad, 1);
        long long rows = (long long)N * H * W, wrows = (long long)OC * K * K;
        bf16 *xp = (bf16 *)cuda_scratch(cu, align256((size_t)(rows + wrows) * Cp * sizeof(bf16))),
             *wp = xp + align256((size_t)rows * Cp * sizeof(bf16)) / sizeof(bf16);
        pad_channels(xp, inp, rows, C, Cp, cu), pad_channels(wp, weight, wrows, C, Cp, cu);
        ran = conv_cudnn(cu, &sp, CONV_FWD, out, xp, wp, 0);
    }
    if (!ran && !conv_cudnn(cu, &s, CONV_FWD, out, inp, weight, 0)) {
        conv_fwd_direct_kernel<<<ceil_div(n, 256), 256, 0, cu->stream>>>(
            (bf16 *)out, (const bf16 *)inp, (const bf16 *)weight, (const bf16 *)bias, s);
        cudaCheckLast();
        return;
    }
    if (!bias) return;
    if (OC % 8 == 0 && ((uintptr_t)out & 15) == 0)
        conv_bias_add_vec_kernel<<<ceil_div(n / 8, 256), 256, 0, cu->stream>>>((bf16 *)out,
                                                                               (const bf16 *)bias, n / 8, OC);
    else
        conv_bias_add_kernel<<<ceil_div(n, 256), 256, 0, cu->stream>>>((bf16 *)out, (const bf16 *)bias, n,
                                                                       OC);
    cudaCheckLast();
}

// The backward with channels zero-padded to a multiple of 8 (see conv2d_forward_cuda). Returns 0, having
// written nothing, when cuDNN takes neither padded direction; the caller then runs the unpadded path.
static int conv_backward_padded(bf16_t *dinp, float *dweight, const bf16_t *dout, const bf16_t *inp,
                                const bf16_t *weight, ConvShape s, CudaCtx *cu) {
    const int C = s.C, Cp = (C + PAD_C - 1) / PAD_C * PAD_C;
    ConvShape sp = conv_shape(s.N, s.H, s.W, Cp, s.OC, s.K, s.stride, s.pad, 1);
    long long rows = (long long)s.N * s.H * s.W, wrows = (long long)s.OC * s.K * s.K;
    size_t x_bytes = align256((size_t)rows * Cp * sizeof(bf16)),
           w_bytes = align256((size_t)wrows * Cp * sizeof(bf16));
    char *base = (char *)cuda_scratch(cu, 2 * x_bytes + w_bytes);
    bf16 *xp = (bf16 *)base, *wp = (bf16 *)(base + x_bytes), *dxp = (bf16 *)(base + x_bytes + w_bytes);
    if (dweight) {
        pad_channels(xp, inp, rows, C, Cp, cu);
        size_t reserved = align256((size_t)wrows * Cp * sizeof(bf16));
        if (!conv_cudnn(cu, &sp, CONV_WGRAD, NULL, dout, xp, reserved)) return 0;
        conv_unpad_accumulate_kernel<<<ceil_div(wrows * C, 256), 256, 0, cu->stream>>>(
            dweight, (const bf16 *)cu->conv_workspace, (int)wrows, C, Cp);
        cudaCheckLast();
    }
    if (dinp) {
        pad_channels(wp, weight, wrows, C, Cp, cu);
        if (!conv_cudnn(cu, &sp, CONV_DGRAD, dxp, dout, wp, 0)) {
            // the weight gradient is done; the input gradient takes the direct kernel
            long long n = rows * C;
            conv_dgrad_direct_kernel<<<ceil_div(n, 256), 256, 0, cu->stream>>>(
                (bf16 *)dinp, (const bf16 *)dout, (const bf16 *)weight, s);
            cudaCheckLast();
            return 1;
        }
        conv_unpad_channels_kernel<<<ceil_div(rows * C, 256), 256, 0, cu->stream>>>((bf16 *)dinp, dxp, rows,
                                                                                    C, Cp);
        cudaCheckLast();
    }
    return 1;
}

extern "C" void conv2d_backward_cuda(bf16_t *dinp, float *dweight, float *dbias, const bf16_t *dout,
                                     const bf16_t *inp, const bf16_t *weight, int N, int H, int W, int C,
                                     int OC, int K, int stride, int pad, int groups, CudaCtx *cu) {
    ConvShape s = conv_shape(N, H, W, C, OC, K, stride, pad, groups);
    long long rows = (long long)N * s.OH * s.OW;
    if (rows == 0) return;
    if (dbias) {
        int chunks = (int)ceil_div(rows, BIAS_ROWS_PER_CHUNK);
        float *part = (float *)conv_ws(cu, (size_t)chunks * OC * sizeof(float));
        conv_bias_grad_kernel<<<dim3(chunks, ceil_div(OC, 32)), dim3(32, 8), 0, cu->stream>>>(
            part, (const bf16 *)dout, rows, OC);
        cudaCheckLast();
        conv_partials_accumulate_kernel<<<ceil_div(OC, 256), 256, 0, cu->stream>>>(dbias, part, chunks, OC);
        cudaCheckLast();
    }
    if (C % PAD_C && groups == 1 && conv_backward_padded(dinp, dweight, dout, inp, weight, s, cu)) return;
    if (dinp && !conv_cudnn(cu, &s, CONV_DGRAD, dinp, dout, weight, 0)) {
        long long n = (long long)N * H * W * C;
        conv_dgrad_direct_kernel<<<ceil_div(n, 256), 256, 0, cu->stream>>>((bf16 *)dinp, (const bf16 *)dout,
                                                                           (const bf16 *)weight, s);
        cudaCheckLast();
    }
    if (!dweight) return;
    int nw = OC * K * K * s.Cg;
    size_t reserved = align256((size_t)nw * sizeof(bf16));
    if (conv_cudnn(cu, &s, CONV_WGRAD, NULL, dout, inp, reserved)) {
        conv_bf16_accumulate_kernel<<<ceil_div(nw, 256), 256, 0, cu->stream>>>(
            dweight, (const bf16 *)cu->conv_workspace, nw);
        cudaCheckLast();
        return;
    }
    long long per_chunk = rows < 256 * DIRECT_MAX_CHUNKS ? 256 : (long long)ceil_div(rows, DIRECT_MAX_CHUNKS);
    int chunks = (int)ceil_div(rows, per_chunk);
    float *part = (float *)conv_ws(cu, (size_t)chunks * nw * sizeof(float));
    conv_wgrad_direct_kernel<<<dim3(ceil_div(nw, 256), chunks), 256, 0, cu->stream>>>(
        part, (const bf16 *)dout, (const bf16 *)inp, s, per_chunk);
    cudaCheckLast();
    conv_partials_accumulate_kernel<<<ceil_div(nw, 256), 256, 0, cu->stream>>>(dweight, part, chunks, nw);
    cudaCheckLast();
}
