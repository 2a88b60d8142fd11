/* conv2d.c: 2-D convolution over NHWC images (CPU): im2col + OpenBLAS GEMM, one GEMM per group, and a
 * direct loop for the depth-wise case.
 *
 * N images, H x W input, OH x OW output, C input and OC output channels, K x K kernel, groups of Cg =
 * C/groups input and OCg = OC/groups output channels. Weight [OC, K, K, Cg], so an im2col row laid out (kh,
 * kw, c) is a weight row, and out[N*OH*OW, OC] = col[N*OH*OW, K*K*Cg] weight^T per group, with no
 * transposition of the activations. Several images share one im2col buffer (and one GEMM) up to
 * CONV_CHUNK_BYTES of scratch. dinp written; dweight and dbias accumulated. */
#include <string.h>

#include "ops_cpu.h"

#define CONV_CHUNK_BYTES ((size_t)32 << 20) /* im2col scratch per chunk of images (at least one image) */
/* Row blocks of the depth-wise weight gradient: fixed, so its sum order ignores the thread count. */
#define DW_BLOCKS 32

typedef struct {
    int N, H, W, C, OC, K, stride, pad, OH, OW;
} ConvDims;

static ConvDims conv_dims(int N, int H, int W, int C, int OC, int K, int stride, int pad) {
    ConvDims d = {N, H, W, C, OC, K, stride, pad, 0, 0};
    d.OH = (H + 2 * pad - K) / stride + 1;
    d.OW = (W + 2 * pad - K) / stride + 1;
    return d;
}

static size_t align64(size_t bytes) {
    return (bytes + 63) & ~(size_t)63;
}

/* col[n*OH*OW + p, (kh*K + kw)*Cg + c] = inp[n, ih, iw, c0 + c] for n < n_img, 0 in the padding. */
static void im2col(float *col, const float *inp, int n_img, ConvDims d, int c0, int Cg) {
    int K = d.K;
    int64_t kkc = (int64_t)K * K * Cg;
#pragma omp parallel for schedule(static)
    for (int64_t row = 0; row < (int64_t)n_img * d.OH; row++) {
        int64_t n = row / d.OH;
        int oh = (int)(row % d.OH);
        for (int ow = 0; ow < d.OW; ow++) {
            float *dst = col + (row * d.OW + ow) * kkc;
            for (int kh = 0; kh < K; kh++) {
                int ih = oh * d.stride - d.pad + kh;
                for (int kw = 0; kw < K; kw++, dst += Cg) {
                    int iw = ow * d.stride - d.pad + kw;
                    if (ih < 0 || ih >= d.H || iw < 0 || iw >= d.W)
                        memset(dst, 0, (size_t)Cg * sizeof(float));
                    else
                        memcpy(dst, inp + ((n * d.H + ih) * d.W + iw) * d.C + c0, (size_t)Cg * sizeof(float));
                }
            }
        }
    }
}

/* The adjoint of im2col, written as a gather over input pixels so that threads never write the same element:
 * dinp[n, ih, iw, c0 + c] = sum of the dcol entries that im2col read from that pixel. */
static void col2im(float *dinp, const float *dcol, int n_img, ConvDims d, int c0, int Cg) {
    int K = d.K;
    int64_t kkc = (int64_t)K * K * Cg;
#pragma omp parallel for schedule(static)
    for (int64_t row = 0; row < (int64_t)n_img * d.H; row++) {
        int64_t n = row / d.H;
        int ih = (int)(row % d.H);
        for (int iw = 0; iw < d.W; iw++) {
            float *dst = dinp + (row * d.W + iw) * d.C + c0;
            for (int c = 0; c < Cg; c++)
                dst[c] = 0.0f;
            for (int kh = 0; kh < K; kh++) {
                int th = ih + d.pad - kh;
                if (th < 0 || th % d.stride || th / d.stride >= d.OH) continue;
                int oh = th / d.stride;
                for (int kw = 0; kw < K; kw++) {
                    int tw = iw + d.pad - kw;
                    if (tw < 0 || tw % d.stride || tw / d.stride >= d.OW) continue;
                    int ow = tw / d.stride;
                    const float *src = dcol + ((n * d.OH + oh) * d.OW + ow) * kkc + (kh * K + kw) * Cg;
                    for (int c = 0; c < Cg; c++)
                        dst[c] += src[c];
                }
            }
        }
    }
}

/* Depth-wise weight [C, K, K, 1] transposed to [K*K, C], so the inner loops run over contiguous channels. */
static void dw_transpose(float *wt, const float *weight, int C, int K) {
    for (int c = 0; c < C; c++)
        for (int kk = 0; kk < K * K; kk++)
            wt[(int64_t)kk * C + c] = weight[(int64_t)c * K * K + kk];
}

static void depthwise_forward(float *out, const float *inp, const float *weight, const float *bias,
                              ConvDims d, Ctx *ctx) {
    int C = d.C, K = d.K;
    float *wt = ctx_scratch(ctx, (size_t)K * K * C * sizeof(float));
    dw_transpose(wt, weight, C, K);
#pragma omp parallel for schedule(static)
    for (int64_t row = 0; row < (int64_t)d.N * d.OH; row++) {
        int64_t n = row / d.OH;
        int oh = (int)(row % d.OH);
        for (int ow = 0; ow < d.OW; ow++) {
            float *y = out + (row * d.OW + ow) * C;
            for (int c = 0; c < C; c++)
                y[c] = bias ? bias[c] : 0.0f;
            for (int kh = 0; kh < K; kh++) {
                int ih = oh * d.stride - d.pad + kh;
                if (ih < 0 || ih >= d.H) continue;
                for (int kw = 0; kw < K; kw++) {
                    int iw = ow * d.stride - d.pad + kw;
                    if (iw < 0 || iw >= d.W) continue;
                    const float *x = inp + ((n * d.H + ih) * d.W + iw) * C,
                                *w = wt + (int64_t)(kh * K + kw) * C;
                    for (int c = 0; c < C; c++)
                        y[c] += x[c] * w[c];
                }
            }
        }
    }
}

static void depthwise_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                               const float *weight, ConvDims d, Ctx *ctx) {
    int C = d.C, K = d.K;
    int64_t kkc = (int64_t)K * K * C, rows = (int64_t)d.N * d.OH;
    int nblk = rows < DW_BLOCKS ? (int)rows : DW_BLOCKS;
    size_t wt_bytes = align64((size_t)kkc * sizeof(float));
    char *scratch = ctx_scratch(ctx, wt_bytes + (dweight ? (size_t)nblk * kkc * sizeof(double) : 0));
    float *wt = (float *)scratch;
    dw_transpose(wt, weight, C, K);
    if (dinp) {
#pragma omp parallel for schedule(static)
        for (int64_t row = 0; row < (int64_t)d.N * d.H; row++) {
            int64_t n = row / d.H;
            int ih = (int)(row % d.H);
            for (int iw = 0; iw < d.W; iw++) {
                float *dx = dinp + (row * d.W + iw) * C;
                for (int c = 0; c < C; c++)
                    dx[c] = 0.0f;
                for (int kh = 0; kh < K; kh++) {
                    int th = ih + d.pad - kh;
                    if (th < 0 || th % d.stride || th / d.stride >= d.OH) continue;
                    for (int kw = 0; kw < K; kw++) {
                        int tw = iw + d.pad - kw;
                        if (tw < 0 || tw % d.stride || tw / d.stride >= d.OW) continue;
                        const float *dy = dout + ((n * d.OH + th / d.stride) * d.OW + tw / d.stride) * C;
                        const float *w = wt + (int64_t)(kh * K + kw) * C;
                        for (int c = 0; c < C; c++)
                            dx[c] += dy[c] * w[c];
                    }
                }
            }
        }
    }
    if (dweight) {
        double *part = (double *)(scratch + wt_bytes); /* [nblk, K*K, C] partial sums */
#pragma omp parallel for schedule(static)
        for (int b = 0; b < nblk; b++) {
            double *acc = part + (int64_t)b * kkc;
            for (int64_t i = 0; i < kkc; i++)
                acc[i] = 0.0;
            for (int64_t row = rows * b / nblk; row < rows * (b + 1) / nblk; row++) {
                int64_t n = row / d.OH;
                int oh = (int)(row % d.OH);
                for (int ow = 0; ow < d.OW; ow++) {
                    const float *dy = dout + (row * d.OW + ow) * C;
                    for (int kh = 0; kh < K; kh++) {
                        int ih = oh * d.stride - d.pad + kh;
                        if (ih < 0 || ih >= d.H) continue;
                        for (int kw = 0; kw < K; kw++) {
                            int iw = ow * d.stride - d.pad + kw;
                            if (iw < 0 || iw >= d.W) continue;
                            const float *x = inp + ((n * d.H + ih) * d.W + iw) * C;
                            double *a = acc + (int64_t)(kh * K + kw) * C;
                            for (int c = 0; c < C; c++)
                                a[c] += (double)dy[c] * x[c];
                        }
                    }
                }
            }
        }
#pragma omp parallel for schedule(static)
        for (int c = 0; c < C; c++)
            for (int kk = 0; kk < K * K; kk++) {
                double s = 0.0;
                for (int b = 0; b < nblk; b++)
                    s += part[(int64_t)b * kkc + (int64_t)kk * C + c];
                dweight[(int64_t)c * K * K + kk] += (float)s;
            }
    }
}

/* Images per im2col chunk, so that one group's columns fit in CONV_CHUNK_BYTES (at least one image). */
static int chunk_images(ConvDims d, int64_t kkc) {
    size_t per_image = (size_t)d.OH * d.OW * (size_t)kkc * sizeof(float);
    size_t n = CONV_CHUNK_BYTES / (per_image ? per_image : 1);
    return n < 1 ? 1 : n > (size_t)d.N ? d.N : (int)n;
}

/* A 1x1 convolution with stride 1 and no padding is a plain GEMM on the input: no im2col. */
static int is_pointwise(ConvDims d, int groups) {
    return d.K == 1 && d.stride == 1 && d.pad == 0 && groups == 1;
}

void conv2d_forward_cpu(float *out, const float *inp, const float *weight, const float *bias, int N, int H,
                        int W, int C, int OC, int K, int stride, int pad, int groups, Ctx *ctx) {
    ConvDims d = conv_dims(N, H, W, C, OC, K, stride, pad);
    if (groups == C && OC == C) {
        depthwise_forward(out, inp, weight, bias, d, ctx);
        return;
    }
    int Cg = C / groups, OCg = OC / groups;
    int64_t P = (int64_t)d.OH * d.OW, kkc = (int64_t)K * K * Cg;
    int direct = is_pointwise(d, groups), nb = direct ? N : chunk_images(d, kkc);
    float *col = direct ? NULL : ctx_scratch(ctx, (size_t)nb * P * kkc * sizeof(float));
    for (int n0 = 0; n0 < N; n0 += nb) {
        int cnt = N - n0 < nb ? N - n0 : nb;
        const float *x = inp + (int64_t)n0 * H * W * C;
        float *y = out + (int64_t)n0 * P * OC;
        for (int g = 0; g < groups; g++) {
            if (!direct) im2col(col, x, cnt, d, g * Cg, Cg);
            gemm_cpu(0, 1, (int)(cnt * P), OCg, (int)kkc, 1.0f, direct ? x : col, (int)kkc,
                     weight + (int64_t)g * OCg * kkc, (int)kkc, 0.0f, y + g * OCg, OC);
        }
    }
    if (bias) {
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < (int64_t)N * P; r++)
            for (int o = 0; o < OC; o++)
                out[r * OC + o] += bias[o];
    }
}

void conv2d_backward_cpu(float *dinp, float *dweight, float *dbias, const float *dout, const float *inp,
                         const float *weight, int N, int H, int W, int C, int OC, int K, int stride, int pad,
                         int groups, Ctx *ctx) {
    ConvDims d = conv_dims(N, H, W, C, OC, K, stride, pad);
    int64_t P = (int64_t)d.OH * d.OW;
    if (dbias) {
#pragma omp parallel for schedule(static)
        for (int o = 0; o < OC; o++) {
            double s = 0.0;
            for (int64_t r = 0; r < (int64_t)N * P; r++)
                s += dout[r * OC + o];
            dbias[o] += (float)s;
        }
    }
    if (!dinp && !dweight) return;
    if (groups == C && OC == C) {
        depthwise_backward(dinp, dweight, dout, inp, weight, d, ctx);
        return;
    }
    int Cg = C / groups, OCg = OC / groups;
    int64_t kkc = (int64_t)K * K * Cg;
    int direct = is_pointwise(d, groups), nb = direct ? N : chunk_images(d, kkc);
    float *col = direct ? NULL : ctx_scratch(ctx, (size_t)nb * P * kkc * sizeof(float));
    for (int n0 = 0; n0 < N; n0 += nb) {
        int cnt = N - n0 < nb ? N - n0 : nb, rows = (int)(cnt * P);
        const float *x = inp + (int64_t)n0 * H * W * C, *dy = dout + (int64_t)n0 * P * OC;
        float *dx = dinp ? dinp + (int64_t)n0 * H * W * C : NULL;
        for (int g = 0; g < groups; g++) {
            const float *wg = weight + (int64_t)g * OCg * kkc;
            if (dweight) { /* dW_g += dout_g^T col_g */
                if (!direct) im2col(col, x, cnt, d, g * Cg, Cg);
                gemm_cpu(1, 0, OCg, (int)kkc, rows, 1.0f, dy + g * OCg, OC, direct ? x : col, (int)kkc, 1.0f,
                         dweight + (int64_t)g * OCg * kkc, (int)kkc);
            }
            if (dx && direct) { /* dinp = dout W */
                gemm_cpu(0, 0, rows, C, OC, 1.0f, dy, OC, wg, C, 0.0f, dx, C);
            } else if (dx) { /* dcol_g = dout_g W_g, then scattered back to the pixels it came from */
                gemm_cpu(0, 0, rows, (int)kkc, OCg, 1.0f, dy + g * OCg, OC, wg, (int)kkc, 0.0f, col,
                         (int)kkc);
                col2im(dx, col, cnt, d, g * Cg, Cg);
            }
        }
    }
}
