// gka_recur.cu: the GKA core operator on the GPU for K, V <= 32, the CUDA twin of gka_recur_cpu.c (same
// quantities, same two-pass backward; read that file's banner for the algorithm and its derivation).
//
// Kernels, per call:
//  states  one warp per (sequence, head) walks the tokens once (one H and U update per token, 1/30 of a
//          solve) and writes the states at every chunk start and after the last token.
//  fwd     one warp per (sequence, head, chunk of 16 tokens): the 30 Chebyshev steps of the chunk's 16 tokens
//          run together on tensor cores (spec gka.md 6.2: R = diag(gh) X Hc + ((X K^T) o Gam) K + lambda X -
//          Q), then the readout o = s (diag(gv) Q~ Uc + ((Q~ K^T) o Gamv) V).
//  bwd1    the same warp layout: dq~ = s U_t do, the adjoint solve y (same steps, the forward's f), and
//          what the reverse pass needs per token: H_t k_t, w_t, m_t = <M_t, H_t>, q~.dq~.
//  bwd2    one warp per (sequence, head), backward in time: the value-state adjoint, then the key-covariance
//          adjoint, each with its states in registers.
//
// Precision. The matrix products use mma.m16n8k16 with bf16 operands and fp32 accumulation. Keys and values
// arrive in bf16, so they are exact operands. The iterate X, the states Hc and Uc, and S o Gam are float32
// and enter as two bf16 halves (hi + lo: x = hi + lo to ~16 bits); X Hc takes hi.hi + hi.lo + lo.hi. That
// matters here more than anywhere: while H_t is rank-deficient, x = (H_t + lambda I)^-1 q has a component
// about 1/a = 50 times larger outside the keys' span, and rounding it to bf16 alone (what the authors'
// Triton op does) moves the small in-span part that reaches the output by percents (spec 9.11). Residuals,
// iterates, decays, norms and states stay float32.
//
// Fragment layout (PTX ISA, mma.m16n8k16): lane l holds rows r0 = l/4 and r1 = l/4 + 8 and, per 8-column
// tile, columns 2(l%4) and 2(l%4) + 1. A 16x32 float block in accumulator layout (4 tiles) is therefore
// also the A operand of the next product (k-steps 0 and 1 are tiles 0-1 and 2-3): X never leaves registers.
#include "cuda/cuda_common.h"
#include "gka_recur.h"

#define GKA_RECUR_MAX_ITER 128
#define STATE_WARPS 4
#define CHUNK_WARPS 4
#define BWD2_WARPS 2
#define CH 16 /* tokens per chunk: the M of one mma */
#define SS 32 /* row stride of the stored states (32 x 32, zero-padded) */

struct RecurArgs {
    float ridge, scale, step_num; /* step = step_num / f */
    int n_iter, B, T, H, K, V;
    int nchunk; /* chunks of CH tokens per sequence (the last may be partial) */
    float omega[GKA_RECUR_MAX_ITER];
};

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
// Sum over the 4 lanes that share a row (l/4): the row reductions of accumulator-layout blocks.
__device__ __forceinline__ float quad_sum(float v) {
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    return v + __shfl_xor_sync(0xffffffffu, v, 2);
}
__device__ __forceinline__ float ld(const bf16 *p, size_t i, bool ok) {
    return ok ? __bfloat162float(p[i]) : 0.0f;
}
__device__ __forceinline__ float b2f(bf16 x) {
    return __bfloat162float(x);
}

// ---- mma helpers ---------------------------------------------------------------------------------------
__device__ __forceinline__ uint32_t pack(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<uint32_t *>(&v);
}
// x = hi + lo with both halves bf16 (lo carries the next 8 bits of the mantissa).
__device__ __forceinline__ void split2(float a, float b, uint32_t &hi, uint32_t &lo) {
    __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
    hi = *reinterpret_cast<uint32_t *>(&h);
    lo = pack(a - __low2float(h), b - __high2float(h));
}
__device__ __forceinline__ void mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
                 "{%0,%1,%2,%3};\n"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
// A operand (k-step ks of a 16 x 32 accumulator-layout block) as hi and lo halves.
__device__ __forceinline__ void a_split(const float (&X)[4][4], int ks, uint32_t (&hi)[4],
                                        uint32_t (&lo)[4]) {
    split2(X[2 * ks][0], X[2 * ks][1], hi[0], lo[0]);
    split2(X[2 * ks][2], X[2 * ks][3], hi[1], lo[1]);
    split2(X[2 * ks + 1][0], X[2 * ks + 1][1], hi[2], lo[2]);
    split2(X[2 * ks + 1][2], X[2 * ks + 1][3], hi[3], lo[3]);
}
__device__ __forceinline__ void zero4(float (&c)[4][4]) {
#pragma unroll
    for (int i = 0; i < 4; i++)
        c[i][0] = c[i][1] = c[i][2] = c[i][3] = 0.0f;
}

// A chunk's operands held in registers for its 30 steps: Hc as B of X Hc (hi, lo), K^T as B of X K^T, K as B
// of (S o Gam) K, and Gam in accumulator layout of the 16 x 16 token block.
struct ChunkOps {
    uint32_t hh[2][4][2], hl[2][4][2]; /* [ks][nt][b0/b1] */
    uint32_t kt[2][2][2];              /* [ks][nt (tokens)][b0/b1] */
    uint32_t kb[4][2];                 /* [nt (features)][b0/b1] */
    float gam[2][4];                   /* [token tile][c0..c3] */
    float gh[2];                       /* rows r0, r1 */
};

// Token data of the chunk for this lane's fragments. kc points at the chunk's first key [CH rows, row stride
// H*K elements]; rows >= nvalid read as zero.
__device__ __forceinline__ float kval(const bf16 *kc, size_t stride, int row, int col, int nvalid, int K) {
    return (row < nvalid && col < K) ? b2f(kc[row * stride + col]) : 0.0f;
}

__device__ void load_keys(ChunkOps &op, const bf16 *kc, size_t stride, int nvalid, int K) {
    const int lane = threadIdx.x & 31, q4 = lane & 3, r = lane >> 2;
#pragma unroll
    for (int ks = 0; ks < 2; ks++)
#pragma unroll
        for (int nt = 0; nt < 2; nt++) { /* B[k = feature][n = token] = K[token][feature] */
            int tok = 8 * nt + r, f0 = 16 * ks + 2 * q4;
            op.kt[ks][nt][0] =
                pack(kval(kc, stride, tok, f0, nvalid, K), kval(kc, stride, tok, f0 + 1, nvalid, K));
            op.kt[ks][nt][1] =
                pack(kval(kc, stride, tok, f0 + 8, nvalid, K), kval(kc, stride, tok, f0 + 9, nvalid, K));
        }
#pragma unroll
    for (int nt = 0; nt < 4; nt++) { /* B[k = token][n = feature] = K[token][feature] */
        int f = 8 * nt + r, t0 = 2 * q4;
        op.kb[nt][0] = pack(kval(kc, stride, t0, f, nvalid, K), kval(kc, stride, t0 + 1, f, nvalid, K));
        op.kb[nt][1] = pack(kval(kc, stride, t0 + 8, f, nvalid, K), kval(kc, stride, t0 + 9, f, nvalid, K));
    }
}

// Hc (symmetric, 32 x 32 padded, row stride SS) as B of X Hc; returns this lane's share of ||Hc||^2.
__device__ float load_state_b(ChunkOps &op, const float *Hc) {
    const int lane = threadIdx.x & 31, q4 = lane & 3, r = lane >> 2;
    float sq = 0.0f;
#pragma unroll
    for (int ks = 0; ks < 2; ks++)
#pragma unroll
        for (int nt = 0; nt < 4; nt++)
#pragma unroll
            for (int half = 0; half < 2; half++) {
                /* B[k][n] = Hc[k][n] = Hc[n][k]: a contiguous pair of row 8 nt + r */
                float2 v =
                    *reinterpret_cast<const float2 *>(Hc + (8 * nt + r) * SS + 16 * ks + 8 * half + 2 * q4);
                split2(v.x, v.y, op.hh[ks][nt][half], op.hl[ks][nt][half]);
                sq += v.x * v.x + v.y * v.y;
            }
    return sq;
}

// Chunk-local decays: G_i = sum of the chunk's log-decays up to token i (lane i < CH holds G_i), then
// gh (rows r0, r1) and Gam[i][j] = e^{G_i - G_j} for j <= i, both tokens valid (accumulator layout).
__device__ void decays(float (&gam)[2][4], float (&gh)[2], const float *gk, size_t tok0, size_t tstride,
                       int nvalid) {
    const int lane = threadIdx.x & 31, q4 = lane & 3, r = lane >> 2;
    float G = (gk && lane < nvalid) ? gk[tok0 + lane * tstride] : 0.0f;
#pragma unroll
    for (int o = 1; o < CH; o <<= 1) { /* inclusive scan over the chunk's 16 lanes */
        float n = __shfl_up_sync(0xffffffffu, G, o);
        if ((lane & 15) >= o) G += n;
    }
    float Gr[2] = {__shfl_sync(0xffffffffu, G, r), __shfl_sync(0xffffffffu, G, r + 8)};
    gh[0] = expf(Gr[0]), gh[1] = expf(Gr[1]);
#pragma unroll
    for (int tt = 0; tt < 2; tt++)
#pragma unroll
        for (int e = 0; e < 2; e++) {
            int j = 8 * tt + 2 * q4 + e;
            float Gj = __shfl_sync(0xffffffffu, G, j);
#pragma unroll
            for (int rr = 0; rr < 2; rr++) {
                int i = r + 8 * rr;
                gam[tt][2 * rr + e] = (j <= i && i < nvalid && j < nvalid) ? expf(Gr[rr] - Gj) : 0.0f;
            }
        }
}

// Z += (S o Gam) Kb for a 16 x 16 token block S (accumulator layout), Kb the chunk's rows as B operand.
__device__ __forceinline__ void gam_times_k(float (&Z)[4][4], const float (&S)[2][4],
                                            const float (&gam)[2][4], const uint32_t (&kb)[4][2]) {
    uint32_t wh[4], wl[4];
    split2(S[0][0] * gam[0][0], S[0][1] * gam[0][1], wh[0], wl[0]);
    split2(S[0][2] * gam[0][2], S[0][3] * gam[0][3], wh[1], wl[1]);
    split2(S[1][0] * gam[1][0], S[1][1] * gam[1][1], wh[2], wl[2]);
    split2(S[1][2] * gam[1][2], S[1][3] * gam[1][3], wh[3], wl[3]);
#pragma unroll
    for (int nt = 0; nt < 4; nt++) {
        mma(Z[nt], wl, kb[nt][0], kb[nt][1]);
        mma(Z[nt], wh, kb[nt][0], kb[nt][1]);
    }
}

// Z = diag(gh) X Hc + ((X K^T) o Gam) K for a 16 x 32 block X (accumulator layout): the block form of H_t
// x_t.
__device__ __forceinline__ void apply_H(float (&Z)[4][4], const float (&X)[4][4], const ChunkOps &op) {
    uint32_t xh[2][4], xl[2][4];
    a_split(X, 0, xh[0], xl[0]);
    a_split(X, 1, xh[1], xl[1]);
    zero4(Z);
#pragma unroll
    for (int nt = 0; nt < 4; nt++)
#pragma unroll
        for (int ks = 0; ks < 2; ks++) {
            mma(Z[nt], xh[ks], op.hh[ks][nt][0], op.hh[ks][nt][1]);
            mma(Z[nt], xh[ks], op.hl[ks][nt][0], op.hl[ks][nt][1]);
            mma(Z[nt], xl[ks], op.hh[ks][nt][0], op.hh[ks][nt][1]);
        }
#pragma unroll
    for (int nt = 0; nt < 4; nt++) {
        Z[nt][0] *= op.gh[0], Z[nt][1] *= op.gh[0], Z[nt][2] *= op.gh[1], Z[nt][3] *= op.gh[1];
    }
    float S[2][4] = {{0, 0, 0, 0}, {0, 0, 0, 0}};
#pragma unroll
    for (int tt = 0; tt < 2; tt++)
#pragma unroll
        for (int ks = 0; ks < 2; ks++) {
            mma(S[tt], xh[ks], op.kt[ks][tt][0], op.kt[ks][tt][1]);
            mma(S[tt], xl[ks], op.kt[ks][tt][0], op.kt[ks][tt][1]);
        }
    gam_times_k(Z, S, op.gam, op.kb);
}

// n Chebyshev steps (spec section 4) for the chunk's 16 right-hand sides at once; per-row f.
__device__ void cheb_block(float (&X)[4][4], const float (&Q)[4][4], const float (&f)[2], const ChunkOps &op,
                           const RecurArgs &a) {
    float lam[2], step[2], Xp[4][4];
#pragma unroll
    for (int rr = 0; rr < 2; rr++)
        lam[rr] = a.ridge * f[rr], step[rr] = a.step_num / f[rr];
#pragma unroll
    for (int nt = 0; nt < 4; nt++)
#pragma unroll
        for (int c = 0; c < 4; c++)
            X[nt][c] = step[c >> 1] * Q[nt][c], Xp[nt][c] = 0.0f;
    for (int it = 0; it < a.n_iter; it++) {
        const float w = a.omega[it];
        float Z[4][4];
        apply_H(Z, X, op);
#pragma unroll
        for (int nt = 0; nt < 4; nt++)
#pragma unroll
            for (int c = 0; c < 4; c++) {
                const int rr = c >> 1;
                float res = Z[nt][c] + lam[rr] * X[nt][c] - Q[nt][c];
                float xn = X[nt][c] - step[rr] * w * res + (w - 1.0f) * (X[nt][c] - Xp[nt][c]);
                Xp[nt][c] = X[nt][c];
                X[nt][c] = xn;
            }
    }
}

// Block [rows, cols] of a [*, stride] bf16 or fp32 array, into accumulator layout (16 x 32), zero outside.
__device__ __forceinline__ void load_block_bf16(float (&X)[4][4], const bf16 *base, size_t stride, int nvalid,
                                                int ncol) {
    const int lane = threadIdx.x & 31, q4 = lane & 3, r = lane >> 2;
#pragma unroll
    for (int nt = 0; nt < 4; nt++)
#pragma unroll
        for (int c = 0; c < 4; c++) {
            int row = r + 8 * (c >> 1), col = 8 * nt + 2 * q4 + (c & 1);
            X[nt][c] = (row < nvalid && col < ncol) ? b2f(base[row * stride + col]) : 0.0f;
        }
}
__device__ __forceinline__ void load_block_f32(float (&X)[4][4], const float *base, size_t stride, int nvalid,
                                               int ncol) {
    const int lane = threadIdx.x & 31, q4 = lane & 3, r = lane >> 2;
#pragma unroll
    for (int nt = 0; nt < 4; nt++)
#pragma unroll
        for (int c = 0; c < 4; c++) {
            int row = r + 8 * (c >> 1), col = 8 * nt + 2 * q4 + (c & 1);
            X[nt][c] = (row < nvalid && col < ncol) ? base[row * stride + col] : 0.0f;
        }
}
template <typename Tout>
__device__ __forceinline__ void store_block(Tout *base, size_t stride, const float (&X)[4][4], int nvalid,
                                            int ncol) {
    const int lane = threadIdx.x & 31, q4 = lane & 3, r = lane >> 2;
#pragma unroll
    for (int nt = 0; nt < 4; nt++)
#pragma unroll
        for (int c = 0; c < 4; c++) {
            int row = r + 8 * (c >> 1), col = 8 * nt + 2 * q4 + (c & 1);
            if (row < nvalid && col < ncol) {
                if constexpr (sizeof(Tout) == 2)
                    base[row * stride + col] = __float2bfloat16_rn(X[nt][c]);
                else
                    base[row * stride + col] = X[nt][c];
            }
        }
}
// Per-row sums of a block (rows r0, r1 of this lane).
__device__ __forceinline__ void row_dot(float (&out)[2], const float (&A)[4][4], const float (&B)[4][4]) {
    float s0 = 0.0f, s1 = 0.0f;
#pragma unroll
    for (int nt = 0; nt < 4; nt++)
        s0 += A[nt][0] * B[nt][0] + A[nt][1] * B[nt][1], s1 += A[nt][2] * B[nt][2] + A[nt][3] * B[nt][3];
    out[0] = quad_sum(s0), out[1] = quad_sum(s1);
}

// Y += diag(gv) (P Ust) + ((P Bt^T) o Gamv) Cb, the readout-type block products: P [16 x 32] float32 (split);
// Ust a 32 x 32 float32 state as B (Ust[k][n] at Ust + k * SS + n, i.e. row-major, split);
// Bt (bf16 rows of the chunk, [16 tokens x 32]) as B of P Bt^T; Cb (bf16 rows [16 tokens x 32]) as B of the
// last product. Used for o = U_t^T q~ (Ust = Uc, Bt = K, Cb = V) and dq~ = U_t do (Ust = Uc^T, Bt = V, Cb =
// K).
__device__ void readout_block(float (&Y)[4][4], const float (&P)[4][4], const float *Ust, int ust_transposed,
                              const bf16 *bt, size_t bt_stride, const bf16 *cb, size_t cb_stride, int nvalid,
                              int nbt, int ncb, const float (&gamv)[2][4], const float (&gv)[2]) {
    const int lane = threadIdx.x & 31, q4 = lane & 3, r = lane >> 2;
    uint32_t ph[2][4], pl[2][4];
    a_split(P, 0, ph[0], pl[0]);
    a_split(P, 1, ph[1], pl[1]);
    float Z[4][4];
    zero4(Z);
#pragma unroll
    for (int ks = 0; ks < 2; ks++)
#pragma unroll
        for (int nt = 0; nt < 4; nt++) {
            uint32_t bh[2], bl[2];
#pragma unroll
            for (int half = 0; half < 2; half++) {
                int k0 = 16 * ks + 8 * half + 2 * q4, n = 8 * nt + r;
                float v0, v1;
                if (ust_transposed) { /* B[k][n] = U[n][k]: contiguous in row n */
                    float2 v = *reinterpret_cast<const float2 *>(Ust + n * SS + k0);
                    v0 = v.x, v1 = v.y;
                } else {
                    v0 = Ust[k0 * SS + n], v1 = Ust[(k0 + 1) * SS + n];
                }
                split2(v0, v1, bh[half], bl[half]);
            }
            mma(Z[nt], ph[ks], bh[0], bh[1]);
            mma(Z[nt], ph[ks], bl[0], bl[1]);
            mma(Z[nt], pl[ks], bh[0], bh[1]);
        }
    float S[2][4] = {{0, 0, 0, 0}, {0, 0, 0, 0}};
#pragma unroll
    for (int ks = 0; ks < 2; ks++)
#pragma unroll
        for (int tt = 0; tt < 2; tt++) {
            int tok = 8 * tt + r, f0 = 16 * ks + 2 * q4;
            uint32_t b0 = pack(kval(bt, bt_stride, tok, f0, nvalid, nbt),
                               kval(bt, bt_stride, tok, f0 + 1, nvalid, nbt));
            uint32_t b1 = pack(kval(bt, bt_stride, tok, f0 + 8, nvalid, nbt),
                               kval(bt, bt_stride, tok, f0 + 9, nvalid, nbt));
            mma(S[tt], pl[ks], b0, b1);
            mma(S[tt], ph[ks], b0, b1);
        }
    uint32_t cbk[4][2]; /* Cb as B operand: B[k = token][n = feature] */
#pragma unroll
    for (int nt = 0; nt < 4; nt++) {
        Z[nt][0] *= gv[0], Z[nt][1] *= gv[0], Z[nt][2] *= gv[1], Z[nt][3] *= gv[1];
        int f = 8 * nt + r, t0 = 2 * q4;
        cbk[nt][0] =
            pack(kval(cb, cb_stride, t0, f, nvalid, ncb), kval(cb, cb_stride, t0 + 1, f, nvalid, ncb));
        cbk[nt][1] =
            pack(kval(cb, cb_stride, t0 + 8, f, nvalid, ncb), kval(cb, cb_stride, t0 + 9, f, nvalid, ncb));
    }
    gam_times_k(Z, S, gamv, cbk);
#pragma unroll
    for (int nt = 0; nt < 4; nt++)
#pragma unroll
        for (int c = 0; c < 4; c++)
            Y[nt][c] += Z[nt][c];
}

// ---- states -------------------------------------------------------------------------------------------
// Hs, Us [BH, nchunk + 1, 32, 32] float32 (padded): slot c holds the states before chunk c, slot nchunk the
// final ones. One warp per (sequence, head), lane i owns row i; the next token's inputs are loaded while
// the current one is applied, so the walk is not a chain of global-memory latencies.
__global__ void __launch_bounds__(STATE_WARPS * 32)
    gka_states_kernel(float *Hs, float *Us, float *HT, float *UT, const bf16 *k, const bf16 *v,
                      const float *g, const float *gk, const float *H0, const float *U0, const RecurArgs a) {
    __shared__ __align__(16) float sh[STATE_WARPS][2][32];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int bh = blockIdx.x * STATE_WARPS + warp;
    if (bh >= a.B * a.H) return;
    const int b = bh / a.H, h = bh % a.H, K = a.K, V = a.V, Hn = a.H;
    const bool kl = lane < K, vl = lane < V;
    float *ksh = sh[warp][0], *vsh = sh[warp][1];
    float Hr[32], Ur[32];
#pragma unroll
    for (int j = 0; j < 32; j++) {
        Hr[j] = (H0 && kl && j < K) ? H0[((size_t)bh * K + lane) * K + j] : 0.0f;
        Ur[j] = (U0 && kl && j < V) ? U0[((size_t)bh * K + lane) * V + j] : 0.0f;
    }
    size_t tok = (size_t)b * a.T * Hn + h;
    float ki = ld(k, tok * K + lane, kl && a.T > 0), vj = ld(v, tok * V + lane, vl && a.T > 0);
    float dk = (gk && a.T > 0) ? expf(gk[tok]) : 1.0f, dv = (g && a.T > 0) ? expf(g[tok]) : 1.0f;
    for (int c = 0; c <= a.nchunk; c++) {
        float *hs = Hs + (((size_t)bh * (a.nchunk + 1) + c) * 32 + lane) * SS;
        float *us = Us + (((size_t)bh * (a.nchunk + 1) + c) * 32 + lane) * SS;
#pragma unroll
        for (int j = 0; j < 32; j += 4) {
            *reinterpret_cast<float4 *>(hs + j) = make_float4(Hr[j], Hr[j + 1], Hr[j + 2], Hr[j + 3]);
            *reinterpret_cast<float4 *>(us + j) = make_float4(Ur[j], Ur[j + 1], Ur[j + 2], Ur[j + 3]);
        }
        if (c == a.nchunk) break;
        const int t1 = min(a.T, (c + 1) * CH);
        for (int t = c * CH; t < t1; t++) {
            __syncwarp();
            ksh[lane] = ki, vsh[lane] = vj;
            __syncwarp();
            const float dkc = dk, dvc = dv, kic = ki;
            if (t + 1 < a.T) { /* prefetch the next token */
                size_t nt = ((size_t)b * a.T + t + 1) * Hn + h;
                ki = ld(k, nt * K + lane, kl), vj = ld(v, nt * V + lane, vl);
                dk = gk ? expf(gk[nt]) : 1.0f, dv = g ? expf(g[nt]) : 1.0f;
            }
#pragma unroll
            for (int j = 0; j < 32; j++) {
                Hr[j] = fmaf(dkc, Hr[j], kic * ksh[j]);
                Ur[j] = fmaf(dvc, Ur[j], kic * vsh[j]);
            }
        }
    }
#pragma unroll
    for (int j = 0; j < 32; j++) {
        if (HT && kl && j < K) HT[((size_t)bh * K + lane) * K + j] = Hr[j];
        if (UT && kl && j < V) UT[((size_t)bh * K + lane) * V + j] = Ur[j];
    }
}

// Where chunk c of warp `wid` starts, and its state slot.
struct ChunkPos {
    int bh, b, h, c, t0, nvalid;
    size_t tok0, tstride; /* token index of row 0 and the step between rows, in [B, T, H] units */
    const float *Hc, *Uc;
};
__device__ __forceinline__ ChunkPos chunk_pos(int wid, const RecurArgs &a, const float *Hs, const float *Us) {
    ChunkPos p;
    p.bh = wid / a.nchunk, p.c = wid % a.nchunk, p.b = p.bh / a.H, p.h = p.bh % a.H;
    p.t0 = p.c * CH, p.nvalid = min(CH, a.T - p.t0);
    p.tok0 = ((size_t)p.b * a.T + p.t0) * a.H + p.h, p.tstride = a.H;
    p.Hc = Hs + ((size_t)p.bh * (a.nchunk + 1) + p.c) * 32 * SS;
    p.Uc = Us + ((size_t)p.bh * (a.nchunk + 1) + p.c) * 32 * SS;
    return p;
}

// f_i = ||H_t||_F for the chunk's tokens, from the block formula of spec 6.2 (H_t is never formed):
// f^2 = sum_jl Gam_ij Gam_il (k_j.k_l)^2 + gh_i^2 ||Hc||^2 + 2 gh_i sum_j Gam_ij (k_j^T Hc k_j).
// kk: the 16 x 16 Gram block K K^T (accumulator layout), d_j = k_j^T Hc k_j (lane j < CH). The O(CH^3)
// triple sum runs once per chunk on CUDA cores; it is small beside the 30 steps.
__device__ void frob_rows(float (&f)[2], const float (&kk)[2][4], float dj, float hc2, const ChunkOps &op,
                          float *scratch /* per-warp shared, 2 CH * CH floats */, int nvalid) {
    const int lane = threadIdx.x & 31, q4 = lane & 3, r = lane >> 2;
    float *KK2 = scratch, *Gm = scratch + CH * CH; /* (k_i.k_j)^2 and Gam_ij, row-major */
    __syncwarp();
#pragma unroll
    for (int tt = 0; tt < 2; tt++)
#pragma unroll
        for (int c = 0; c < 4; c++) {
            int i = r + 8 * (c >> 1), j = 8 * tt + 2 * q4 + (c & 1);
            KK2[i * CH + j] = kk[tt][c] * kk[tt][c];
            Gm[i * CH + j] = op.gam[tt][c];
        }
    __syncwarp();
    float t1 = 0.0f, t2 = 0.0f; /* lane i < CH: sum_j Gam_ij sum_l Gam_il KK2_jl, and sum_j Gam_ij d_j */
    for (int j = 0; j < CH; j++) {
        const float dval = __shfl_sync(0xffffffffu, dj, j);
        if (lane < CH) {
            const float gij = Gm[lane * CH + j];
            float inner = 0.0f;
            for (int l = 0; l < CH; l++)
                inner += Gm[lane * CH + l] * KK2[j * CH + l];
            t1 += gij * inner;
            t2 += gij * dval;
        }
    }
    /* gh of token `lane` (rows 0-7 live in op.gh[0] of lanes 4 r, rows 8-15 in op.gh[1]) */
    const float g0 = __shfl_sync(0xffffffffu, op.gh[0], (lane & 7) * 4);
    const float g1 = __shfl_sync(0xffffffffu, op.gh[1], (lane & 7) * 4);
    const float ghl = (lane & 8) ? g1 : g0;
    const float f2 = t1 + ghl * ghl * hc2 + 2.0f * ghl * t2;
    const float fi = (lane < nvalid) ? fmaxf(sqrtf(fmaxf(f2, 0.0f)), GKA_MIN_FROB) : 1.0f;
    f[0] = __shfl_sync(0xffffffffu, fi, r), f[1] = __shfl_sync(0xffffffffu, fi, r + 8);
    __syncwarp();
}

// K K^T (16 x 16) and K Hc (16 x 32), both in accumulator layout, and d_j = k_j^T Hc k_j (lane j).
__device__ void key_products(float (&kk)[2][4], float (&khc)[4][4], float &dj, const bf16 *kc, size_t stride,
                             int nvalid, int K, const ChunkOps &op) {
    const int lane = threadIdx.x & 31, q4 = lane & 3, r = lane >> 2;
    uint32_t ka[2][4]; /* K as A operand: rows = tokens */
#pragma unroll
    for (int ks = 0; ks < 2; ks++) {
        int f0 = 16 * ks + 2 * q4;
        ka[ks][0] = pack(kval(kc, stride, r, f0, nvalid, K), kval(kc, stride, r, f0 + 1, nvalid, K));
        ka[ks][1] = pack(kval(kc, stride, r + 8, f0, nvalid, K), kval(kc, stride, r + 8, f0 + 1, nvalid, K));
        ka[ks][2] = pack(kval(kc, stride, r, f0 + 8, nvalid, K), kval(kc, stride, r, f0 + 9, nvalid, K));
        ka[ks][3] =
            pack(kval(kc, stride, r + 8, f0 + 8, nvalid, K), kval(kc, stride, r + 8, f0 + 9, nvalid, K));
    }
    for (int tt = 0; tt < 2; tt++)
        kk[tt][0] = kk[tt][1] = kk[tt][2] = kk[tt][3] = 0.0f;
    zero4(khc);
#pragma unroll
    for (int ks = 0; ks < 2; ks++) {
#pragma unroll
        for (int tt = 0; tt < 2; tt++)
            mma(kk[tt], ka[ks], op.kt[ks][tt][0], op.kt[ks][tt][1]);
#pragma unroll
        for (int nt = 0; nt < 4; nt++) {
            mma(khc[nt], ka[ks], op.hl[ks][nt][0], op.hl[ks][nt][1]);
            mma(khc[nt], ka[ks], op.hh[ks][nt][0], op.hh[ks][nt][1]);
        }
    }
    /* d_j = sum_i K[j][i] (K Hc)[j][i]: row dot of khc with K (reload K in accumulator layout) */
    float kacc[4][4];
    load_block_bf16(kacc, kc, stride, nvalid, K);
    float d[2];
    row_dot(d, kacc, khc);
    float d0 = __shfl_sync(0xffffffffu, d[0], (lane & 7) * 4),
          d1 = __shfl_sync(0xffffffffu, d[1], (lane & 7) * 4);
    dj = (lane & 8) ? d1 : d0; /* lane j < CH: d_j */
}

// ---- forward ------------------------------------------------------------------------------------------
__global__ void __launch_bounds__(CHUNK_WARPS * 32)
    gka_chunk_fwd_kernel(bf16 *o, float *xs, float *fs, const bf16 *q, const bf16 *k, const bf16 *v,
                         const float *g, const float *gk, const float *alpha, const float *Hs,
                         const float *Us, const RecurArgs a) {
    __shared__ float scratch[CHUNK_WARPS][2 * CH * CH];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, q4 = lane & 3, r = lane >> 2;
    const int wid = blockIdx.x * CHUNK_WARPS + warp;
    if (wid >= a.B * a.H * a.nchunk) return; /* whole warps leave; no block-wide barrier below */
    const ChunkPos p = chunk_pos(wid, a, Hs, Us);
    const int K = a.K, V = a.V;
    const size_t sk = (size_t)a.H * K, sv = (size_t)a.H * V; /* row strides of q/k/x and v/o */
    const bf16 *kc = k + p.tok0 * K, *qc = q + p.tok0 * K, *vc = v + p.tok0 * V;
    ChunkOps op;
    load_keys(op, kc, sk, p.nvalid, K);
    float hc2 = warp_sum(load_state_b(op, p.Hc));
    decays(op.gam, op.gh, gk, p.tok0, p.tstride, p.nvalid);
    float kk[2][4], khc[4][4], dj, f[2];
    key_products(kk, khc, dj, kc, sk, p.nvalid, K, op);
    frob_rows(f, kk, dj, hc2, op, scratch[warp], p.nvalid);
    float Q[4][4], X[4][4];
    load_block_bf16(Q, qc, sk, p.nvalid, K);
    cheb_block(X, Q, f, op, a);
    /* q~ = q + alpha (x - q), then o = s (diag(gv) Q~ Uc + ((Q~ K^T) o Gamv) V) */
    float al[2];
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        int row = r + 8 * rr;
        al[rr] = (alpha && row < p.nvalid) ? alpha[p.tok0 + row * p.tstride] : 1.0f;
    }
    float Qt[4][4], O[4][4];
#pragma unroll
    for (int nt = 0; nt < 4; nt++)
#pragma unroll
        for (int c = 0; c < 4; c++)
            Qt[nt][c] = Q[nt][c] + al[c >> 1] * (X[nt][c] - Q[nt][c]), O[nt][c] = 0.0f;
    float gamv[2][4], gv[2];
    if (g == gk) {
        for (int tt = 0; tt < 2; tt++)
            for (int c = 0; c < 4; c++)
                gamv[tt][c] = op.gam[tt][c];
        gv[0] = op.gh[0], gv[1] = op.gh[1];
    } else {
        decays(gamv, gv, g, p.tok0, p.tstride, p.nvalid);
    }
    readout_block(O, Qt, p.Uc, 0, kc, sk, vc, sv, p.nvalid, K, V, gamv, gv);
#pragma unroll
    for (int nt = 0; nt < 4; nt++)
#pragma unroll
        for (int c = 0; c < 4; c++)
            O[nt][c] *= a.scale;
    store_block(o + p.tok0 * V, sv, O, p.nvalid, V);
    if (xs) store_block(xs + p.tok0 * K, sk, X, p.nvalid, K);
    if (fs && q4 == 0) {
        if (r < p.nvalid) fs[p.tok0 + r * p.tstride] = f[0];
        if (r + 8 < p.nvalid) fs[p.tok0 + (r + 8) * p.tstride] = f[1];
    }
}

// ---- backward pass 1 (forward in time, per chunk) -----------------------------------------------------
__global__ void __launch_bounds__(CHUNK_WARPS * 32)
    gka_chunk_bwd1_kernel(bf16 *dq, float *dalpha, float *ys, float *hks, float *ws, float *ms, float *qds,
                          const bf16 *d_o, const bf16 *q, const bf16 *k, const bf16 *v, const float *g,
                          const float *gk, const float *alpha, const float *Hs, const float *Us,
                          const float *xs, const float *fs, const RecurArgs a) {
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, q4 = lane & 3, r = lane >> 2;
    const int wid = blockIdx.x * CHUNK_WARPS + warp;
    if (wid >= a.B * a.H * a.nchunk) return;
    (void)warp;
    const ChunkPos p = chunk_pos(wid, a, Hs, Us);
    const int K = a.K, V = a.V;
    const size_t sk = (size_t)a.H * K, sv = (size_t)a.H * V;
    const bf16 *kc = k + p.tok0 * K, *qc = q + p.tok0 * K, *vc = v + p.tok0 * V, *dc = d_o + p.tok0 * V;
    ChunkOps op;
    load_keys(op, kc, sk, p.nvalid, K);
    load_state_b(op, p.Hc);
    decays(op.gam, op.gh, gk, p.tok0, p.tstride, p.nvalid);
    float gamv[2][4], gv[2];
    if (g == gk) {
        for (int tt = 0; tt < 2; tt++)
            for (int c = 0; c < 4; c++)
                gamv[tt][c] = op.gam[tt][c];
        gv[0] = op.gh[0], gv[1] = op.gh[1];
    } else {
        decays(gamv, gv, g, p.tok0, p.tstride, p.nvalid);
    }
    float f[2], al[2];
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        int row = r + 8 * rr;
        f[rr] = row < p.nvalid ? fs[p.tok0 + row * p.tstride] : 1.0f;
        al[rr] = (alpha && row < p.nvalid) ? alpha[p.tok0 + row * p.tstride] : 1.0f;
    }
    /* dq~ = s (diag(gv) DO Uc^T + ((DO V^T) o Gamv) K) */
    float DO[4][4], DQT[4][4], Q[4][4], X[4][4];
    load_block_bf16(DO, dc, sv, p.nvalid, V);
    zero4(DQT);
    readout_block(DQT, DO, p.Uc, 1, vc, sv, kc, sk, p.nvalid, V, K, gamv, gv);
    load_block_bf16(Q, qc, sk, p.nvalid, K);
    load_block_f32(X, xs + p.tok0 * K, sk, p.nvalid, K);
    float DX[4][4], qt_dqt[4][4], dqt_xq[4][4];
#pragma unroll
    for (int nt = 0; nt < 4; nt++)
#pragma unroll
        for (int c = 0; c < 4; c++) {
            DQT[nt][c] *= a.scale;
            const float qt = Q[nt][c] + al[c >> 1] * (X[nt][c] - Q[nt][c]);
            qt_dqt[nt][c] = qt * DQT[nt][c];
            dqt_xq[nt][c] = DQT[nt][c] * (X[nt][c] - Q[nt][c]);
            DX[nt][c] = al[c >> 1] * DQT[nt][c];
        }
    float qd[2], da[2], ones[4][4];
#pragma unroll
    for (int nt = 0; nt < 4; nt++)
        ones[nt][0] = ones[nt][1] = ones[nt][2] = ones[nt][3] = 1.0f;
    row_dot(qd, qt_dqt, ones);
    row_dot(da, dqt_xq, ones);
    float Y[4][4];
    cheb_block(Y, DX, f, op, a);
    /* H_t x_t (block form) and H_t k_t = diag(gh) K Hc + ((K K^T) o Gam) K */
    float HX[4][4];
    apply_H(HX, X, op);
    float kk[2][4], khc[4][4], dj;
    key_products(kk, khc, dj, kc, sk, p.nvalid, K, op);
    float HK[4][4];
#pragma unroll
    for (int nt = 0; nt < 4; nt++) {
        HK[nt][0] = op.gh[0] * khc[nt][0], HK[nt][1] = op.gh[0] * khc[nt][1];
        HK[nt][2] = op.gh[1] * khc[nt][2], HK[nt][3] = op.gh[1] * khc[nt][3];
    }
    gam_times_k(HK, kk, op.gam, op.kb);
    float c_[2], yhx[2];
    row_dot(c_, Y, X);
    row_dot(yhx, Y, HX);
    /* dq = (1 - alpha) dq~ + y  (alpha absent: y) */
    float DQ[4][4];
#pragma unroll
    for (int nt = 0; nt < 4; nt++)
#pragma unroll
        for (int c = 0; c < 4; c++)
            DQ[nt][c] = (alpha ? (1.0f - al[c >> 1]) * DQT[nt][c] : 0.0f) + Y[nt][c];
    if (dq) store_block(dq + p.tok0 * K, sk, DQ, p.nvalid, K);
    store_block(ys + p.tok0 * K, sk, Y, p.nvalid, K);
    store_block(hks + p.tok0 * K, sk, HK, p.nvalid, K);
    if (q4 == 0)
#pragma unroll
        for (int rr = 0; rr < 2; rr++) {
            int row = r + 8 * rr;
            if (row >= p.nvalid) continue;
            size_t t = p.tok0 + row * p.tstride;
            float w = 2.0f * a.ridge * c_[rr] / f[rr];
            ws[t] = w;
            ms[t] = -yhx[rr] - 0.5f * w * f[rr] * f[rr];
            qds[t] = qd[rr];
            if (dalpha) dalpha[t] = da[rr];
        }
}

// ---- backward pass 2 (backward in time, per sequence) --------------------------------------------------
// The adjoints of U (R) and of H (Qd and Psi) run backwards independently of each other, so they are two
// kernels, each with its states in registers: lane i keeps row i and column i (Psi is symmetric), so every
// product and update needs only the token's vectors, broadcast through a per-warp buffer with float4 loads.

// acc += M_row . vec for a per-lane 32-vector M and a broadcast vector.
__device__ __forceinline__ float bdot(const float (&M)[32], const float *vec) {
    float a0 = 0.0f, a1 = 0.0f;
#pragma unroll
    for (int j = 0; j < 32; j += 4) {
        float4 x = *reinterpret_cast<const float4 *>(vec + j);
        a0 = fmaf(M[j], x.x, a0), a1 = fmaf(M[j + 1], x.y, a1);
        a0 = fmaf(M[j + 2], x.z, a0), a1 = fmaf(M[j + 3], x.w, a1);
    }
    return a0 + a1;
}
// M_row += s * vec (broadcast).
__device__ __forceinline__ void baxpy(float (&M)[32], float s, const float *vec) {
#pragma unroll
    for (int j = 0; j < 32; j += 4) {
        float4 x = *reinterpret_cast<const float4 *>(vec + j);
        M[j] = fmaf(s, x.x, M[j]), M[j + 1] = fmaf(s, x.y, M[j + 1]);
        M[j + 2] = fmaf(s, x.z, M[j + 2]), M[j + 3] = fmaf(s, x.w, M[j + 3]);
    }
}

// Pass 2a, the value-state adjoint R (the simple-GLA part): dv = R^T k, dk^U = R v (to float32 scratch), and
// dg from its closed form, accumulated as sum_{s>=t} [q~.dq~ - k.dk^U] + <dU_T, U_T>.
__global__ void __launch_bounds__(BWD2_WARPS * 32)
    gka_bwd2_value_kernel(float *dku, bf16 *dv_out, float *dg, float *dU0, const float *qds, const float *Us,
                          const bf16 *d_o, const float *dUT, const bf16 *q, const bf16 *k, const bf16 *v,
                          const float *g, const float *alpha, const float *xs, const RecurArgs a) {
    __shared__ __align__(16) float vec[BWD2_WARPS][4][32];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int bh = blockIdx.x * BWD2_WARPS + warp;
    if (bh >= a.B * a.H) return;
    const int b = bh / a.H, h = bh % a.H, K = a.K, V = a.V, T = a.T, Hn = a.H;
    const float *UTs = Us + ((size_t)bh * (a.nchunk + 1) + a.nchunk) * 32 * SS;
    float *kb = vec[warp][0], *vb = vec[warp][1], *db = vec[warp][2], *qb = vec[warp][3];
    const bool kl = lane < K, vl = lane < V;
    float Rr[32], Rc[32]; /* row `lane` and column `lane` of R (K x V) */
    float gsum0 = 0.0f;
#pragma unroll
    for (int j = 0; j < 32; j++) {
        Rr[j] = (dUT && kl && j < V) ? dUT[((size_t)bh * K + lane) * V + j] : 0.0f;
        Rc[j] = (dUT && vl && j < K) ? dUT[((size_t)bh * K + j) * V + lane] : 0.0f;
        gsum0 += Rr[j] * UTs[lane * SS + j];
    }
    // dg is a reverse running sum over the whole sequence whose terms largely cancel: kept in double, as the
    // CPU twin does (a float sum measured no different in test_models_gpu; double keeps the twins alike)
    double gsum = warp_sum(gsum0);
    for (int t = T - 1; t >= 0; t--) {
        const size_t tok = ((size_t)b * T + t) * Hn + h;
        const float qi = ld(q, tok * K + lane, kl), ki = ld(k, tok * K + lane, kl),
                    vi = ld(v, tok * V + lane, vl);
        const float doi = ld(d_o, tok * V + lane, vl), xi = kl ? xs[tok * K + lane] : 0.0f;
        const float al = alpha ? alpha[tok] : 1.0f, qt = qi + al * (xi - qi);
        const float dv = g ? expf(g[tok]) : 1.0f;
        __syncwarp();
        kb[lane] = ki, vb[lane] = vi, db[lane] = doi, qb[lane] = qt;
        __syncwarp();
        baxpy(Rr, a.scale * qt, db); /* R += s q~ do^T */
        baxpy(Rc, a.scale * doi, qb);
        const float ru = bdot(Rr, vb), dvi = bdot(Rc, kb);
        gsum += (double)qds[tok] - (double)warp_sum(ki * ru);
        if (kl) dku[tok * K + lane] = ru;
        if (dv_out && vl) dv_out[tok * V + lane] = __float2bfloat16_rn(dvi);
        if (dg && lane == 0) dg[tok] = (float)gsum;
#pragma unroll
        for (int j = 0; j < 32; j++)
            Rr[j] *= dv, Rc[j] *= dv;
    }
#pragma unroll
    for (int j = 0; j < 32; j++)
        if (dU0 && kl && j < V) dU0[((size_t)bh * K + lane) * V + j] = Rr[j];
}

// Pass 2b, the key-covariance adjoint P = Qd - Lambda/2 (gka_recur_cpu.c): dk = dk^U + (Qd + Qd^T) k - Lambda
// k, and dgk from its closed form, added to dg when one gate drives both states.
__global__ void __launch_bounds__(BWD2_WARPS * 32)
    gka_bwd2_key_kernel(bf16 *dk_out, float *dg, float *dgk, float *dH0, const float *dku, const float *ys,
                        const float *hks, const float *ws, const float *ms, const float *Hs, const float *dHT,
                        const bf16 *k, const float *gk, const float *H0, const float *xs, const RecurArgs a) {
    __shared__ __align__(16) float vec[BWD2_WARPS][3][32];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int bh = blockIdx.x * BWD2_WARPS + warp;
    if (bh >= a.B * a.H) return;
    const int b = bh / a.H, h = bh % a.H, K = a.K, T = a.T, Hn = a.H;
    const float *HTs = Hs + ((size_t)bh * (a.nchunk + 1) + a.nchunk) * 32 * SS;
    float *kb = vec[warp][0], *xb = vec[warp][1], *yb = vec[warp][2];
    const bool kl = lane < K;
    float Qr[32], Qc[32], Pr[32]; /* row and column `lane` of Qd; row `lane` of Psi (symmetric) */
    float gksum0 = 0.0f;
#pragma unroll
    for (int j = 0; j < 32; j++) {
        Qr[j] = (dHT && kl && j < K) ? dHT[((size_t)bh * K + lane) * K + j] : 0.0f;
        Qc[j] = (dHT && kl && j < K) ? dHT[((size_t)bh * K + j) * K + lane] : 0.0f;
        Pr[j] = 0.0f;
        gksum0 += Qr[j] * HTs[lane * SS + j];
    }
    double gksum = warp_sum(gksum0); /* in double, as gsum in pass 2a */
    float om_carry = 0.0f;
    for (int t = T - 1; t >= 0; t--) {
        const size_t tok = ((size_t)b * T + t) * Hn + h;
        const float ki = ld(k, tok * K + lane, kl);
        const float xi = kl ? xs[tok * K + lane] : 0.0f, yi = kl ? ys[tok * K + lane] : 0.0f;
        const float hki = kl ? hks[tok * K + lane] : 0.0f;
        const float om = ws[tok] + om_carry;
        const float dk = gk ? expf(gk[tok]) : 1.0f;
        __syncwarp();
        kb[lane] = ki, xb[lane] = xi, yb[lane] = yi;
        __syncwarp();
        baxpy(Qr, -yi, xb); /* Qd -= y x^T */
        baxpy(Qc, -xi, yb);
        const float pk = bdot(Pr, kb), qk = bdot(Qr, kb), qtk = bdot(Qc, kb);
        const float dkh = qk + qtk - (om * hki + pk);
        gksum += (double)ms[tok] - 0.5 * (double)warp_sum(ki * dkh);
        if (dk_out && kl) dk_out[tok * K + lane] = __float2bfloat16_rn(dku[tok * K + lane] + dkh);
        if (lane == 0) {
            if (dg && dg == dgk)
                dg[tok] += (float)gksum; /* one gate for both states: the sum */
            else if (dgk)
                dgk[tok] = (float)gksum;
        }
#pragma unroll
        for (int j = 0; j < 32; j++)
            Qr[j] *= dk, Qc[j] *= dk;
        baxpy(Pr, om * ki, kb); /* Psi = e^gk (Psi + om k k^T) */
#pragma unroll
        for (int j = 0; j < 32; j++)
            Pr[j] *= dk;
        om_carry = dk * dk * om;
    }
#pragma unroll
    for (int j = 0; j < 32; j++)
        if (dH0 && kl && j < K) {
            float h0 = H0 ? H0[((size_t)bh * K + lane) * K + j] : 0.0f;
            dH0[((size_t)bh * K + lane) * K + j] = Qr[j] - 0.5f * (om_carry * h0 + Pr[j]);
        }
}

// ---- host side ----------------------------------------------------------------------------------------
static RecurArgs recur_args(GkaOpConfig cfg, int B, int T, int H, int K, int V) {
    GK_CHECK(K >= 1 && K <= 32 && V >= 1 && V <= 32,
             "gka_recur: these CUDA kernels take K, V <= 32 (got K = %d, V = %d)", K, V);
    GK_CHECK(cfg.num_iter >= 1 && cfg.num_iter <= GKA_RECUR_MAX_ITER, "gka_recur: num_iter %d outside 1..%d",
             cfg.num_iter, GKA_RECUR_MAX_ITER);
    RecurArgs a;
    a.ridge = cfg.ridge, a.scale = cfg.scale, a.step_num = 2.0f / (1.0f + 2.0f * cfg.ridge);
    a.n_iter = cfg.num_iter, a.B = B, a.T = T, a.H = H, a.K = K, a.V = V;
    a.nchunk = (T + CH - 1) / CH;
    gka_chebyshev_omegas(a.omega, cfg.num_iter, cfg.ridge);
    return a;
}

extern "C" size_t gka_recur_states_floats(int B, int T, int H) {
    return 2 * (size_t)B * H * ((T + CH - 1) / CH + 1) * 32 * SS;
}

// The states at every chunk start and after the last token, into `states` (or context scratch).
static void run_states(const RecurArgs &a, const bf16_t *k, const bf16_t *v, const float *g, const float *gk,
                       const float *H0, const float *U0, float *HT, float *UT, float *states, float **Hs,
                       float **Us, CudaCtx *cu) {
    size_t per = (size_t)a.B * a.H * (a.nchunk + 1) * 32 * SS;
    float *buf = states ? states : (float *)cuda_scratch(cu, 2 * per * sizeof(float));
    *Hs = buf, *Us = buf + per;
    gka_states_kernel<<<ceil_div((long long)a.B * a.H, STATE_WARPS), STATE_WARPS * 32, 0, cu->stream>>>(
        *Hs, *Us, HT, UT, (const bf16 *)k, (const bf16 *)v, g, gk, H0, U0, a);
    cudaCheckLast();
}

extern "C" void gka_recur_forward_cuda(bf16_t *o, float *HT, float *UT, float *x, float *f, float *states,
                                       const bf16_t *q, const bf16_t *k, const bf16_t *v, const float *g,
                                       const float *gk, const float *alpha, const float *H0, const float *U0,
                                       GkaOpConfig cfg, int B, int T, int H, int K, int V, CudaCtx *cu) {
    if ((long long)B * H * T == 0) return;
    RecurArgs a = recur_args(cfg, B, T, H, K, V);
    float *Hs, *Us;
    run_states(a, k, v, g, gk, H0, U0, HT, UT, states, &Hs, &Us, cu);
    gka_chunk_fwd_kernel<<<ceil_div((long long)B * H * a.nchunk, CHUNK_WARPS), CHUNK_WARPS * 32, 0,
                           cu->stream>>>((bf16 *)o, x, f, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v,
                                         g, gk, alpha, Hs, Us, a);
    cudaCheckLast();
}

extern "C" void gka_recur_backward_cuda(bf16_t *dq, bf16_t *dk, bf16_t *dv, float *dg, float *dgk,
                                        float *dalpha, float *dH0, float *dU0, float *work, const bf16_t *d_o,
                                        const float *dHT, const float *dUT, const bf16_t *q, const bf16_t *k,
                                        const bf16_t *v, const float *g, const float *gk, const float *alpha,
                                        const float *H0, const float *U0, const float *x, const float *f,
                                        const float *states, GkaOpConfig cfg, int B, int T, int H, int K,
                                        int V, CudaCtx *cu) {
    if ((long long)B * H * T == 0) return;
    RecurArgs a = recur_args(cfg, B, T, H, K, V);
    size_t ntok = (size_t)B * T * H;
    float *ys = work, *hks = ys + ntok * K, *ws = hks + ntok * K, *ms = ws + ntok, *qds = ms + ntok;
    float *Hs, *Us;
    if (states) { /* the forward's */
        size_t per = (size_t)a.B * a.H * (a.nchunk + 1) * 32 * SS;
        Hs = (float *)states, Us = (float *)states + per;
    } else {
        run_states(a, k, v, g, gk, H0, U0, NULL, NULL, NULL, &Hs, &Us, cu);
    }
    gka_chunk_bwd1_kernel<<<ceil_div((long long)B * H * a.nchunk, CHUNK_WARPS), CHUNK_WARPS * 32, 0,
                            cu->stream>>>((bf16 *)dq, dalpha, ys, hks, ws, ms, qds, (const bf16 *)d_o,
                                          (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, g, gk, alpha, Hs,
                                          Us, x, f, a);
    cudaCheckLast();
    float *dku = qds + ntok; /* dk^U, float32: pass 2a writes it, pass 2b adds dk^H */
    gka_bwd2_value_kernel<<<ceil_div((long long)B * H, BWD2_WARPS), BWD2_WARPS * 32, 0, cu->stream>>>(
        dku, (bf16 *)dv, dg, dU0, qds, Us, (const bf16 *)d_o, dUT, (const bf16 *)q, (const bf16 *)k,
        (const bf16 *)v, g, alpha, x, a);
    cudaCheckLast();
    gka_bwd2_key_kernel<<<ceil_div((long long)B * H, BWD2_WARPS), BWD2_WARPS * 32, 0, cu->stream>>>(
        (bf16 *)dk, dg, dgk, dH0, dku, ys, hks, ws, ms, Hs, dHT, (const bf16 *)k, gk, H0, x, a);
    cudaCheckLast();
}
