// gka_chunk.cu: the GKA core operator in chunk-wise form on the GPU, the CUDA twin of gka_chunk_cpu.c: the
// same steps (F1-F5 forward, B1-B9 backward) in the same order, each step one kernel whose thread block runs
// what one iteration of the CPU step's program loop runs, with the same tiles and the same products. Read
// gka_chunk_cpu.c for the algorithm (spec gka.md sections 6 and 7); the comments here only say where the GPU
// differs.
//
// Where it is used: for head dims the token-recurrent kernels (gka_recur.cu, K, V <= 32) do not take, e.g.
// K = 49 (GKAVision-L) or K = 128 (the language shape). Any K, V and chunk length C work.
//
// Layout of the work. A per-chunk step (F3, F5, B1b, B6) runs a persistent grid: each block takes programs
// (b, h, c) in turn and keeps its tiles in its own slice of device scratch (the CPU twin's per-thread
// scratch, same layout), where they stay in L1/L2. A scan step (F2, B1a, B5, B7) runs one block per (b, h).
// Every product is mm(): a block-wide fp32 product with 64 x 128 output tiles staged through shared memory,
// each output summed in order p = 0..P-1 as the CPU twin sums it.
//
// Precision: q, k, v, d_o arrive in bf16 and are widened on load; o, dq, dk, dv leave in bf16; everything
// else (tiles, states, x, f, gates and their gradients) is float32, as in the CPU twin.
#include "cuda/cuda_common.h"
#include "cuda/reduce.cuh"
#include "gka_chunk.h"

#define NTHREADS 256
#define MAX_ITER 128
#define TM 64  /* mm() output tile: TM rows */
#define TN 128 /* by TN columns */
#define TP 16  /* mm() depth per shared-memory stage */

typedef GkaChunkDims Dims;
struct Omegas {
    float w[MAX_ITER];
};

// ---- indexing and tile helpers (block-wide; each ends with __syncthreads) ------------------------------
__device__ __forceinline__ size_t tok(const Dims &d, int b, int t, int h, int D) {
    return (((size_t)b * d.T + (size_t)t) * d.H + (size_t)h) * (size_t)D;
}
__device__ __forceinline__ size_t scl(const Dims &d, int b, int t, int h) {
    return ((size_t)b * d.T + (size_t)t) * d.H + (size_t)h;
}
__host__ __device__ __forceinline__ int chunk_rows(const Dims &d, int c) {
    int t0 = c * d.C;
    return d.T - t0 < d.C ? d.T - t0 : d.C;
}
__device__ __forceinline__ float to_f(float x) {
    return x;
}
__device__ __forceinline__ float to_f(bf16 x) {
    return __bfloat162float(x);
}
__device__ __forceinline__ void put(float *p, float x) {
    *p = x;
}
__device__ __forceinline__ void put(bf16 *p, float x) {
    *p = __float2bfloat16_rn(x);
}

template <typename T>
__device__ void load_tile(float *tile, const T *src, const Dims &d, int b, int h, int t0, int nc, int D,
                          float fill) {
    for (int e = threadIdx.x; e < d.C * D; e += blockDim.x) {
        int i = e / D, j = e % D;
        tile[e] = (src && i < nc) ? to_f(src[tok(d, b, t0 + i, h, D) + j]) : fill;
    }
    __syncthreads();
}

template <typename T>
__device__ void store_tile(T *dst, const float *tile, const Dims &d, int b, int h, int t0, int nc, int D) {
    for (int e = threadIdx.x; e < nc * D; e += blockDim.x)
        put(dst + tok(d, b, t0 + e / D, h, D) + e % D, tile[e]);
    __syncthreads();
}

__device__ void load_col(float *col, const float *src, const Dims &d, int b, int h, int t0, int nc,
                         float fill) {
    for (int i = threadIdx.x; i < d.C; i += blockDim.x)
        col[i] = (src && i < nc) ? src[scl(d, b, t0 + i, h)] : fill;
    __syncthreads();
}

__device__ void copy(float *dst, const float *src, size_t n) {
    for (size_t i = threadIdx.x; i < n; i += blockDim.x)
        dst[i] = src ? src[i] : 0.0f;
    __syncthreads();
}

__device__ void scale(float *x, float s, size_t n) {
    for (size_t i = threadIdx.x; i < n; i += blockDim.x)
        x[i] *= s;
    __syncthreads();
}

__device__ void transpose(float *Dst, const float *Src, int M, int N) {
    for (int e = threadIdx.x; e < M * N; e += blockDim.x) {
        int i = e / N, j = e % N;
        Dst[(size_t)j * M + i] = Src[e];
    }
    __syncthreads();
}

__device__ float dot(const float *a, const float *b, int n) {
    float s = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        s += a[i] * b[i];
    return block_reduce<NTHREADS>(s, 0);
}

// One thread's dot product (row-wise work inside a block).
__device__ __forceinline__ float dot1(const float *a, const float *b, int n) {
    float s = 0.0f;
    for (int i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

// Cm[M,N] (= or +=) op(A) Bm with op(A) = A [M,P] (ta = 0) or A^T for A stored [P,M] (ta = 1), Bm [P,N]. The
// CPU's mm_nn is ta = 0, its mm_tn ta = 1. Cm must not alias A or Bm. Output tiles of TM x TN; 256 threads as
// 16 x 16, each 4 rows x (4 + 4) columns, read from shared memory as float4.
__device__ void mm(float *Cm, const float *A, const float *Bm, int M, int N, int P, int ta, int acc) {
    __shared__ __align__(16) float As[TP][TM + 4]; /* +4: row-major A stores spread over the banks */
    __shared__ __align__(16) float Bs[TP][TN];
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    for (int i0 = 0; i0 < M; i0 += TM)
        for (int j0 = 0; j0 < N; j0 += TN) {
            float c[4][8] = {};
            for (int p0 = 0; p0 < P; p0 += TP) {
                for (int e = threadIdx.x; e < TM * TP; e += NTHREADS) {
                    int ii, pp;
                    if (ta) /* A^T: consecutive threads read consecutive i of one row p */
                        pp = e / TM, ii = e % TM;
                    else
                        ii = e / TP, pp = e % TP;
                    int i = i0 + ii, p = p0 + pp;
                    As[pp][ii] = (i < M && p < P) ? (ta ? A[(size_t)p * M + i] : A[(size_t)i * P + p]) : 0.0f;
                }
                for (int e = threadIdx.x; e < TN * TP; e += NTHREADS) {
                    int jj = e % TN, pb = e / TN, j = j0 + jj;
                    Bs[pb][jj] = (j < N && p0 + pb < P) ? Bm[(size_t)(p0 + pb) * N + j] : 0.0f;
                }
                __syncthreads();
#pragma unroll
                for (int pp = 0; pp < TP; pp++) {
                    float4 a = *reinterpret_cast<const float4 *>(&As[pp][4 * ty]);
                    float4 b0 = *reinterpret_cast<const float4 *>(&Bs[pp][4 * tx]);
                    float4 b1 = *reinterpret_cast<const float4 *>(&Bs[pp][TN / 2 + 4 * tx]);
                    const float av[4] = {a.x, a.y, a.z, a.w};
                    const float bv[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
                    for (int r = 0; r < 4; r++)
#pragma unroll
                        for (int s = 0; s < 8; s++)
                            c[r][s] += av[r] * bv[s];
                }
                __syncthreads();
            }
#pragma unroll
            for (int r = 0; r < 4; r++)
#pragma unroll
                for (int s = 0; s < 8; s++) {
                    int i = i0 + 4 * ty + r, j = j0 + (s < 4 ? 4 * tx + s : TN / 2 + 4 * tx + s - 4);
                    if (i < M && j < N) {
                        float *o = Cm + (size_t)i * N + j;
                        *o = acc ? *o + c[r][s] : c[r][s];
                    }
                }
        }
    __syncthreads();
}

// Decays of one chunk (gka_chunk_cpu.c chunk_decays).
__device__ void chunk_decays(float *Gam, float *gh, float *l, const float *G, int C, int nc) {
    for (int e = threadIdx.x; e < C * C; e += blockDim.x) {
        int i = e / C, j = e % C;
        Gam[e] = (j <= i && i < nc) ? expf(G[i] - G[j]) : 0.0f;
    }
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        gh[i] = i < nc ? expf(G[i]) : 0.0f;
        l[i] = i < nc ? expf(G[nc - 1] - G[i]) : 0.0f;
    }
    __syncthreads();
}

// Program item -> (b, h, c), in the CPU twin's order.
__device__ __forceinline__ void item_bhc(const Dims &d, int item, int &b, int &h, int &c) {
    c = item % d.NT, h = (item / d.NT) % d.H, b = item / (d.NT * d.H);
}

// ---- forward -------------------------------------------------------------------------------------------
__global__ void f1_kernel(float *G, const float *g, Dims d) {
    int item = blockIdx.x * blockDim.x + threadIdx.x;
    if (item >= d.B * d.H * d.NT) return;
    int b, h, c;
    item_bhc(d, item, b, h, c);
    float acc = 0.0f;
    for (int i = 0, t0 = c * d.C; i < chunk_rows(d, c); i++) {
        acc += g[scl(d, b, t0 + i, h)];
        G[scl(d, b, t0 + i, h)] = acc;
    }
}

__host__ __device__ static size_t f2_scratch(const Dims &d, int D) {
    return (size_t)d.C * d.K + (size_t)d.C * D + (size_t)d.C;
}

// F2 (and F5's value states): one block per (b, h), sequential over chunks.
__global__ void __launch_bounds__(NTHREADS)
    f2_kernel(float *S, float *ST, const bf16 *k, const bf16 *vals, const float *G, const float *S0, int D,
              Dims d, float *scratch) {
    const int b = blockIdx.x / d.H, h = blockIdx.x % d.H, C = d.C, K = d.K;
    size_t ss = (size_t)K * D;
    float *kt = scratch + f2_scratch(d, D) * blockIdx.x, *wt = kt + (size_t)C * K, *Gc = wt + (size_t)C * D;
    float *Sb = S + ((size_t)b * d.H + h) * (size_t)(d.NT + 1) * ss;
    copy(Sb, S0 ? S0 + ((size_t)b * d.H + h) * ss : NULL, ss);
    for (int c = 0; c < d.NT; c++) {
        int t0 = c * C, nc = chunk_rows(d, c);
        load_tile(kt, k, d, b, h, t0, nc, K, 0.0f);
        load_tile(wt, vals, d, b, h, t0, nc, D, 0.0f);
        load_col(Gc, G, d, b, h, t0, nc, 0.0f);
        float decay = expf(Gc[nc - 1]);
        for (int e = threadIdx.x; e < C * K; e += blockDim.x) {
            int j = e / K;
            kt[e] *= j < nc ? expf(Gc[nc - 1] - Gc[j]) : 0.0f; /* the CPU twin's kl, in place */
        }
        float *cur = Sb + (size_t)c * ss, *nxt = cur + ss;
        for (size_t i = threadIdx.x; i < ss; i += blockDim.x)
            nxt[i] = decay * cur[i];
        __syncthreads();
        mm(nxt, kt, wt, K, D, C, 1, 1);
    }
    if (ST) {
        float *dst = ST + ((size_t)b * d.H + h) * ss;
        const float *src = Sb + (size_t)d.NT * ss;
        for (size_t i = threadIdx.x; i < ss; i += blockDim.x)
            dst[i] = src[i];
    }
}

__host__ __device__ static size_t f3_scratch(const Dims &d) {
    return 6 * (size_t)d.C * d.K + 3 * (size_t)d.C * d.C + 6 * (size_t)d.C;
}

// F3 (and B4): the chunked Chebyshev solve, one program per (chunk, head). The right-hand side is bf16 q in
// the forward and float dx in the adjoint solve.
template <typename TR>
__global__ void __launch_bounds__(NTHREADS)
    f3_kernel(float *X, float *f_out, const float *f_in, const TR *rhs, const bf16 *k, const float *Gk,
              const float *Hc, Omegas om, int n_iter, float a, Dims d, float *scratch) {
    const int C = d.C, K = d.K, n_items = d.B * d.H * d.NT;
    float *Qt = scratch + f3_scratch(d) * blockIdx.x, *Kt = Qt + (size_t)C * K, *KtT = Kt + (size_t)C * K;
    float *Xc = KtT + (size_t)C * K, *Xp = Xc + (size_t)C * K, *Rr = Xp + (size_t)C * K;
    float *Gam = Rr + (size_t)C * K, *P = Gam + (size_t)C * C, *M2 = P + (size_t)C * C;
    float *G = M2 + (size_t)C * C, *gh = G + C, *l = gh + C, *fc = l + C, *lam = fc + C, *step = lam + C;
    for (int item = blockIdx.x; item < n_items; item += gridDim.x) {
        int b, h, c;
        item_bhc(d, item, b, h, c);
        int t0 = c * C, nc = chunk_rows(d, c);
        const float *Hcc = Hc + (((size_t)b * d.H + h) * (size_t)(d.NT + 1) + c) * (size_t)K * K;
        load_tile(Qt, rhs, d, b, h, t0, nc, K, 0.0f);
        load_tile(Kt, k, d, b, h, t0, nc, K, 0.0f);
        load_col(G, Gk, d, b, h, t0, nc, 0.0f);
        transpose(KtT, Kt, C, K);
        chunk_decays(Gam, gh, l, G, C, nc);
        if (!f_in) {
            mm(P, Kt, KtT, C, C, K, 0, 0); /* KK */
            for (int i = threadIdx.x; i < C * C; i += blockDim.x)
                P[i] *= P[i];
            __syncthreads();
            mm(M2, Gam, P, C, C, C, 0, 0); /* Gam (KK o KK) */
            float hn2 = dot(Hcc, Hcc, K * K);
            mm(Rr, Kt, Hcc, C, K, K, 0, 0); /* rows k_j^T Hc */
            float *dj = lam;
            for (int j = threadIdx.x; j < C; j += blockDim.x)
                dj[j] = dot1(Rr + (size_t)j * K, Kt + (size_t)j * K, K);
            __syncthreads();
            for (int i = threadIdx.x; i < C; i += blockDim.x) {
                if (i >= nc) {
                    fc[i] = 1.0f;
                    continue;
                }
                float s1 = 0.0f, s3 = 0.0f;
                for (int j = 0; j <= i; j++) {
                    s1 += M2[(size_t)i * C + j] * Gam[(size_t)i * C + j];
                    s3 += Gam[(size_t)i * C + j] * dj[j];
                }
                float f2 = s1 + gh[i] * gh[i] * hn2 + 2.0f * gh[i] * s3;
                float ft = sqrtf(f2 > 0.0f ? f2 : 0.0f);
                fc[i] = ft > GKA_MIN_FROB ? ft : GKA_MIN_FROB;
            }
            __syncthreads();
        } else {
            load_col(fc, f_in, d, b, h, t0, nc, 1.0f);
        }
        for (int i = threadIdx.x; i < C; i += blockDim.x) {
            lam[i] = a * fc[i];
            step[i] = 2.0f / ((1.0f + 2.0f * a) * fc[i]);
        }
        __syncthreads();
        for (int e = threadIdx.x; e < C * K; e += blockDim.x)
            Xp[e] = 0.0f, Xc[e] = step[e / K] * Qt[e];
        __syncthreads();
        for (int it = 0; it < n_iter; it++) {
            float w = om.w[it];
            mm(Rr, Xc, Hcc, C, K, K, 0, 0); /* X Hc */
            mm(P, Xc, KtT, C, C, K, 0, 0);  /* X K^T */
            for (int i = threadIdx.x; i < C * C; i += blockDim.x)
                P[i] *= Gam[i];
            for (int e = threadIdx.x; e < C * K; e += blockDim.x)
                Rr[e] *= gh[e / K];
            __syncthreads();
            mm(Rr, P, Kt, C, K, C, 0, 1);
            for (int e = threadIdx.x; e < C * K; e += blockDim.x) {
                int i = e / K;
                float x = Xc[e], res = Rr[e] + lam[i] * x - Qt[e];
                float xn = x - step[i] * w * res + (w - 1.0f) * (x - Xp[e]);
                Xp[e] = x, Xc[e] = xn;
            }
            __syncthreads();
        }
        store_tile(X, Xc, d, b, h, t0, nc, K);
        if (f_out)
            for (int i = threadIdx.x; i < nc; i += blockDim.x)
                f_out[scl(d, b, t0 + i, h)] = fc[i];
        __syncthreads();
    }
}

// F4: q~ = q + alpha (x - q).
__global__ void f4_kernel(float *qt, const bf16 *q, const float *x, const float *alpha, Dims d) {
    size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x, n = (size_t)d.B * d.T * d.H * d.K;
    if (e >= n) return;
    float al = alpha ? alpha[e / d.K] : 1.0f, qv = __bfloat162float(q[e]);
    qt[e] = qv + al * (x[e] - qv);
}

__host__ __device__ static size_t f5_scratch(const Dims &d) {
    return 3 * (size_t)d.C * d.K + 2 * (size_t)d.C * d.V + 2 * (size_t)d.C * d.C + 3 * (size_t)d.C;
}

// F5: the simple-GLA readout, one program per (chunk, head).
__global__ void __launch_bounds__(NTHREADS)
    f5_kernel(bf16 *o, const float *qt, const bf16 *k, const bf16 *v, const float *Gv, const float *Uc,
              float s, Dims d, float *scratch) {
    const int C = d.C, K = d.K, V = d.V, n_items = d.B * d.H * d.NT;
    float *Qt = scratch + f5_scratch(d) * blockIdx.x, *KtT = Qt + (size_t)C * K, *Kt = KtT + (size_t)C * K;
    float *Vt = Kt + (size_t)C * K, *Ot = Vt + (size_t)C * V, *Ab = Ot + (size_t)C * V,
          *A = Ab + (size_t)C * C;
    float *G = A + (size_t)C * C, *gh = G + C, *l = gh + C;
    for (int item = blockIdx.x; item < n_items; item += gridDim.x) {
        int b, h, c;
        item_bhc(d, item, b, h, c);
        int t0 = c * C, nc = chunk_rows(d, c);
        const float *Ucc = Uc + (((size_t)b * d.H + h) * (size_t)(d.NT + 1) + c) * (size_t)K * V;
        load_tile(Qt, qt, d, b, h, t0, nc, K, 0.0f);
        load_tile(Kt, k, d, b, h, t0, nc, K, 0.0f);
        load_tile(Vt, v, d, b, h, t0, nc, V, 0.0f);
        load_col(G, Gv, d, b, h, t0, nc, 0.0f);
        chunk_decays(Ab, gh, l, G, C, nc);
        transpose(KtT, Kt, C, K);
        mm(A, Qt, KtT, C, C, K, 0, 0);
        for (int i = threadIdx.x; i < C * C; i += blockDim.x)
            A[i] *= Ab[i];
        __syncthreads();
        mm(Ot, A, Vt, C, V, C, 0, 0);
        for (int e = threadIdx.x; e < C * K; e += blockDim.x)
            Qt[e] *= gh[e / K];
        __syncthreads();
        mm(Ot, Qt, Ucc, C, V, K, 0, 1);
        scale(Ot, s, (size_t)C * V);
        store_tile(o, Ot, d, b, h, t0, nc, V);
    }
}

// ---- backward ------------------------------------------------------------------------------------------
__host__ __device__ static size_t b1_scratch(const Dims &d) {
    size_t C = (size_t)d.C, K = (size_t)d.K, V = (size_t)d.V;
    return 6 * C * K + 5 * C * V + 2 * K * V + 3 * C * C + 3 * C;
}

// The backward's adjoint state scans (B1's R_c and B5's Q_c), one block per (b, h), from the last chunk:
//   Sacc := S_end (or 0); for c = NT-1..0: S_c := Sacc; Sacc := e^{G_last} Sacc + sum_{i in c} coef e^{G_i}
//   a_i w_i^T; S_0 := Sacc.
// B1: a = q~, w = do, coef = s, G = Gv (R, [K, V]); B5: a = y, w = x, coef = -1, G = Gk (Q, [K, K]).
__host__ __device__ static size_t scan_scratch(const Dims &d, int D) {
    return (size_t)d.C * d.K + (size_t)d.C * D + d.C + (size_t)d.K * D;
}

template <typename TW>
__global__ void __launch_bounds__(NTHREADS)
    adjoint_scan_kernel(float *Sc, float *S0, const float *arows, const TW *wrows, const float *Gl,
                        const float *Send, float coef, int D, Dims d, float *scratch) {
    const int b = blockIdx.x / d.H, h = blockIdx.x % d.H, C = d.C, K = d.K, NT = d.NT;
    size_t kd = (size_t)K * D;
    float *At = scratch + scan_scratch(d, D) * blockIdx.x, *Wt = At + (size_t)C * K, *G = Wt + (size_t)C * D;
    float *Sacc = G + C, *Sb = Sc + ((size_t)b * d.H + h) * (size_t)NT * kd;
    copy(Sacc, Send ? Send + ((size_t)b * d.H + h) * kd : NULL, kd);
    for (int c = NT - 1; c >= 0; c--) {
        int t0 = c * C, nc = chunk_rows(d, c);
        for (size_t i = threadIdx.x; i < kd; i += blockDim.x)
            Sb[(size_t)c * kd + i] = Sacc[i];
        load_tile(At, arows, d, b, h, t0, nc, K, 0.0f);
        load_tile(Wt, wrows, d, b, h, t0, nc, D, 0.0f);
        load_col(G, Gl, d, b, h, t0, nc, 0.0f);
        for (int e = threadIdx.x; e < nc * K; e += blockDim.x)
            At[e] *= coef * expf(G[e / K]);
        scale(Sacc, expf(G[nc - 1]), kd);
        mm(Sacc, At, Wt, K, D, C, 1, 1);
    }
    if (S0)
        for (size_t i = threadIdx.x; i < kd; i += blockDim.x)
            S0[((size_t)b * d.H + h) * kd + i] = Sacc[i];
}

// B1, per-chunk part: dq~, dk^(U), dv and dg, one program per (chunk, head).
__global__ void __launch_bounds__(NTHREADS)
    b1_chunk_kernel(float *dqt, float *dkU, bf16 *dv, float *dg, const float *Rc, const bf16 *d_o,
                    const float *qt, const bf16 *k, const bf16 *v, const float *Gv, const float *Uc, float s,
                    Dims d, float *scratch) {
    const int C = d.C, K = d.K, V = d.V, NT = d.NT, n_items = d.B * d.H * NT;
    size_t kv = (size_t)K * V;
    float *Qt = scratch + b1_scratch(d) * blockIdx.x, *Kt = Qt + (size_t)C * K, *KtT = Kt + (size_t)C * K;
    float *Kl = KtT + (size_t)C * K, *dQ = Kl + (size_t)C * K, *dK = dQ + (size_t)C * K;
    float *Vt = dK + (size_t)C * K, *VtT = Vt + (size_t)C * V, *Vl = VtT + (size_t)C * V;
    float *dOt = Vl + (size_t)C * V, *dV = dOt + (size_t)C * V, *UcT = dV + (size_t)C * V, *RcT = UcT + kv;
    float *Ab = RcT + kv, *A1 = Ab + (size_t)C * C, *A2 = A1 + (size_t)C * C, *G = A2 + (size_t)C * C;
    float *gh = G + C, *l = gh + C;
    for (int item = blockIdx.x; item < n_items; item += gridDim.x) {
        int b, h, c;
        item_bhc(d, item, b, h, c);
        int t0 = c * C, nc = chunk_rows(d, c);
        size_t sidx = ((size_t)b * d.H + h) * (size_t)(NT + 1) + c;
        const float *Ucc = Uc + sidx * kv, *Unext = Ucc + kv;
        const float *Rcc = Rc + (((size_t)b * d.H + h) * (size_t)NT + c) * kv;
        load_tile(Qt, qt, d, b, h, t0, nc, K, 0.0f);
        load_tile(Kt, k, d, b, h, t0, nc, K, 0.0f);
        load_tile(Vt, v, d, b, h, t0, nc, V, 0.0f);
        load_tile(dOt, d_o, d, b, h, t0, nc, V, 0.0f);
        load_col(G, Gv, d, b, h, t0, nc, 0.0f);
        chunk_decays(Ab, gh, l, G, C, nc);
        transpose(KtT, Kt, C, K);
        transpose(VtT, Vt, C, V);
        transpose(UcT, Ucc, K, V);
        transpose(RcT, Rcc, K, V);
        for (int e = threadIdx.x; e < C * K; e += blockDim.x)
            Kl[e] = l[e / K] * Kt[e];
        for (int e = threadIdx.x; e < C * V; e += blockDim.x)
            Vl[e] = l[e / V] * Vt[e];
        __syncthreads();
        mm(A1, Qt, KtT, C, C, K, 0, 0);  /* q~_i . k_j */
        mm(A2, dOt, VtT, C, C, V, 0, 0); /* do_i . v_j */
        for (int i = threadIdx.x; i < C * C; i += blockDim.x)
            A1[i] *= Ab[i], A2[i] *= Ab[i];
        __syncthreads();
        mm(dQ, dOt, UcT, C, K, V, 0, 0); /* dq~ = s (diag(gh) dO Uc^T + A2 K) */
        for (int e = threadIdx.x; e < C * K; e += blockDim.x)
            dQ[e] *= gh[e / K];
        __syncthreads();
        mm(dQ, A2, Kt, C, K, C, 0, 1);
        scale(dQ, s, (size_t)C * K);
        mm(dK, A2, Qt, C, K, C, 1, 0); /* dk^(U) = s A2^T Q~ + diag(l) V Rc^T */
        scale(dK, s, (size_t)C * K);
        mm(dK, Vl, RcT, C, K, V, 0, 1);
        if (dv) { /* dv = s A1^T dO + diag(l) K Rc */
            mm(dV, A1, dOt, C, V, C, 1, 0);
            scale(dV, s, (size_t)C * V);
            mm(dV, Kl, Rcc, C, V, K, 0, 1);
            store_tile(dv, dV, d, b, h, t0, nc, V);
        }
        store_tile(dqt, dQ, d, b, h, t0, nc, K);
        store_tile(dkU, dK, d, b, h, t0, nc, K);
        if (dg) {
            float acc = dot(Rcc, Unext, (int)kv);
            float *rowd = A1; /* free now: per-row q~.dq~ - k.dk^(U) */
            for (int t = threadIdx.x; t < nc; t += blockDim.x)
                rowd[t] = dot1(Qt + (size_t)t * K, dQ + (size_t)t * K, K) -
                          dot1(Kt + (size_t)t * K, dK + (size_t)t * K, K);
            __syncthreads();
            if (threadIdx.x == 0)
                for (int t = nc - 1; t >= 0; t--) {
                    acc += rowd[t];
                    dg[scl(d, b, t0 + t, h)] = acc;
                }
            __syncthreads();
        }
    }
}

// B2: dalpha, dx, and dq's (1 - alpha) dq~ part, one thread per token.
__global__ void b2_kernel(float *dx, float *dq, float *dalpha, const float *dqt, const float *x,
                          const bf16 *q, const float *alpha, Dims d) {
    size_t s = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (s >= (size_t)d.B * d.T * d.H) return;
    float al = alpha ? alpha[s] : 1.0f, da = 0.0f;
    for (int i = 0; i < d.K; i++) {
        size_t e = s * (size_t)d.K + i;
        da += dqt[e] * (x[e] - __bfloat162float(q[e]));
        dx[e] = al * dqt[e];
        dq[e] = (1.0f - al) * dqt[e];
    }
    if (dalpha) dalpha[s] = da;
}

__host__ __device__ static size_t b6_scratch(const Dims &d) {
    size_t C = (size_t)d.C, K = (size_t)d.K;
    return 10 * C * K + 5 * C * C + K * K + 8 * C;
}

// B6: per-chunk terms of the key-state backward, one program per (chunk, head).
__global__ void __launch_bounds__(NTHREADS)
    b6_kernel(float *dkH, float *dG, float *Zc, const bf16 *k, const float *x, const float *y, const float *f,
              const float *Gk, const float *Hc, const float *Qc, float ridge, Dims d, float *scratch) {
    const int C = d.C, K = d.K, NT = d.NT, n_items = d.B * d.H * NT;
    size_t kk = (size_t)K * K, CK = (size_t)C * K, CC = (size_t)C * C;
    float *Kt = scratch + b6_scratch(d) * blockIdx.x, *KtT = Kt + CK, *Xt = KtT + CK, *XtT = Xt + CK;
    float *Yt = XtT + CK, *YtT = Yt + CK, *Kw = YtT + CK, *dK = Kw + CK, *T1 = dK + CK, *T2 = T1 + CK;
    float *Gam = T2 + CK, *E = Gam + CC, *KX = E + CC, *KY = KX + CC, *W2 = KY + CC;
    float *Qs = W2 + CC, *G = Qs + kk, *gh = G + C, *l = gh + C, *fc = l + C, *w = fc + C;
    float *w1 = w + C, *dGc = w1 + C;
    for (int item = blockIdx.x; item < n_items; item += gridDim.x) {
        int b, h, c;
        item_bhc(d, item, b, h, c);
        int t0 = c * C, nc = chunk_rows(d, c);
        size_t hidx = ((size_t)b * d.H + h) * (size_t)(NT + 1) + c;
        const float *Hcc = Hc + hidx * kk, *Hnext = Hcc + kk;
        const float *Q = Qc + (((size_t)b * d.H + h) * (size_t)NT + c) * kk;
        float *Z = Zc + (((size_t)b * d.H + h) * (size_t)NT + c) * kk; /* to the B7 scan */
        load_tile(Kt, k, d, b, h, t0, nc, K, 0.0f);
        load_tile(Xt, x, d, b, h, t0, nc, K, 0.0f);
        load_tile(Yt, y, d, b, h, t0, nc, K, 0.0f);
        load_col(G, Gk, d, b, h, t0, nc, 0.0f);
        load_col(fc, f, d, b, h, t0, nc, 1.0f);
        chunk_decays(Gam, gh, l, G, C, nc);
        transpose(E, Gam, C, C);
        transpose(KtT, Kt, C, K);
        transpose(XtT, Xt, C, K);
        transpose(YtT, Yt, C, K);
        for (int t = threadIdx.x; t < C; t += blockDim.x)
            w[t] = t < nc ? 2.0f * ridge * dot1(Yt + (size_t)t * K, Xt + (size_t)t * K, K) / fc[t] : 0.0f;
        __syncthreads();
        mm(KX, Kt, XtT, C, C, K, 0, 0); /* k_j . x_t */
        mm(KY, Kt, YtT, C, C, K, 0, 0); /* k_j . y_t */

        /* the two double sums of dG, row j's terms summed by one thread in the CPU twin's order per target:
         * + sum_{t>j} E_jt (k_j.y_t)(k_j.x_t) to dG_j, then - sum_{i<j} of the same with (i, j) to dG_j */
        for (int j = threadIdx.x; j < C; j += blockDim.x) {
            float acc = 0.0f;
            if (j < nc) {
                for (int i = 0; i < j; i++)
                    acc -= E[(size_t)i * C + j] * KY[(size_t)i * C + j] * KX[(size_t)i * C + j];
                for (int t = j + 1; t < nc; t++)
                    acc += E[(size_t)j * C + t] * KY[(size_t)j * C + t] * KX[(size_t)j * C + t];
            }
            dGc[j] = acc;
        }
        __syncthreads();
        for (size_t i = threadIdx.x; i < CC; i += blockDim.x)
            KX[i] *= -E[i], KY[i] *= -E[i];
        __syncthreads();
        mm(dK, KX, Yt, C, K, C, 0, 0); /* direct part of dk: - (KX o E) Y - (KY o E) X */
        mm(dK, KY, Xt, C, K, C, 0, 1);

        /* tau = (KK o W2) K + diag(w1) K Hc, with W2 = (E diag(w)) E^T */
        for (int j = threadIdx.x; j < C; j += blockDim.x) {
            float sacc = 0.0f;
            for (int t = j; t < nc; t++)
                sacc += E[(size_t)j * C + t] * gh[t] * w[t];
            w1[j] = sacc;
        }
        for (size_t e = threadIdx.x; e < CC; e += blockDim.x)
            KX[e] = E[e] * w[e % C]; /* E diag(w) */
        __syncthreads();
        mm(W2, KX, Gam, C, C, C, 0, 0);
        mm(KY, Kt, KtT, C, C, K, 0, 0); /* KK */
        for (size_t i = threadIdx.x; i < CC; i += blockDim.x)
            KY[i] *= W2[i];
        __syncthreads();
        mm(T1, KY, Kt, C, K, C, 0, 0);
        mm(T2, Kt, Hcc, C, K, K, 0, 0); /* rows (Hc k_j)^T */
        for (size_t e = threadIdx.x; e < CK; e += blockDim.x)
            T1[e] += w1[e / K] * T2[e]; /* T1 = tau */

        /* Z_c = (sum gh^2 w) Hc + (diag(w1) K)^T K */
        float part = 0.0f;
        for (int t = threadIdx.x; t < nc; t += blockDim.x)
            part += gh[t] * gh[t] * w[t];
        float sgw = block_reduce<NTHREADS>(part, 0);
        for (size_t e = threadIdx.x; e < CK; e += blockDim.x)
            Kw[e] = w1[e / K] * Kt[e];
        for (size_t i = threadIdx.x; i < kk; i += blockDim.x)
            Z[i] = sgw * Hcc[i];
        __syncthreads();
        mm(Z, Kw, Kt, K, K, C, 1, 1);

        /* (Q + Q^T) k_j rows, and y^T Hc x */
        for (size_t e = threadIdx.x; e < kk; e += blockDim.x) {
            size_t i = e / K, p = e % K;
            Qs[e] = Q[e] + Q[p * K + i];
        }
        __syncthreads();
        mm(T2, Kt, Qs, C, K, K, 0, 0);
        mm(Kw, Yt, Hcc, C, K, K, 0, 0); /* rows (Hc^T y_j)^T */
        float qh = dot(Q, Hnext, (int)kk);
        for (size_t e = threadIdx.x; e < (size_t)nc * K; e += blockDim.x) {
            size_t j = e / K;
            dK[e] += -T1[e] + l[j] * T2[e];
        }
        for (int j = threadIdx.x; j < nc; j += blockDim.x) {
            const float *kj = Kt + (size_t)j * K, *tj = T1 + (size_t)j * K, *qj = T2 + (size_t)j * K;
            float yx = dot1(Yt + (size_t)j * K, Xt + (size_t)j * K, K);
            float yhx = dot1(Kw + (size_t)j * K, Xt + (size_t)j * K, K);
            dGc[j] +=
                -gh[j] * yhx - ridge * yx * fc[j] + 0.5f * dot1(kj, tj, K) - 0.5f * l[j] * dot1(qj, kj, K);
        }
        __syncthreads();
        if (threadIdx.x == 0) dGc[nc - 1] += qh;
        __syncthreads();
        store_tile(dkH, dK, d, b, h, t0, nc, K);
        for (int j = threadIdx.x; j < nc; j += blockDim.x)
            dG[scl(d, b, t0 + j, h)] = dGc[j];
        __syncthreads();
    }
}

__host__ __device__ static size_t b7_scratch(const Dims &d) {
    return 2 * (size_t)d.C * d.K + d.C + (size_t)d.K * d.K;
}

// B7: inter-chunk lambda-path scan, one block per (b, h).
__global__ void __launch_bounds__(NTHREADS)
    b7_kernel(float *dkH, float *dG, float *dH0lam, const bf16 *k, const float *Gk, const float *Hc,
              const float *Zc, Dims d, float *scratch) {
    const int b = blockIdx.x / d.H, h = blockIdx.x % d.H, C = d.C, K = d.K, NT = d.NT;
    size_t kk = (size_t)K * K, bh = (size_t)b * d.H + h;
    float *Kt = scratch + b7_scratch(d) * blockIdx.x, *LK = Kt + (size_t)C * K, *G = LK + (size_t)C * K;
    float *Lam = G + C;
    copy(Lam, NULL, kk);
    for (int c = NT - 1; c >= 0; c--) {
        int t0 = c * C, nc = chunk_rows(d, c);
        load_tile(Kt, k, d, b, h, t0, nc, K, 0.0f);
        load_col(G, Gk, d, b, h, t0, nc, 0.0f);
        mm(LK, Kt, Lam, C, K, K, 0, 0); /* rows (Lam k_j)^T: Lam is symmetric */
        for (size_t e = threadIdx.x; e < (size_t)nc * K; e += blockDim.x) {
            int j = (int)(e / K);
            dkH[tok(d, b, t0 + j, h, K) + e % K] -= expf(G[nc - 1] - G[j]) * LK[e];
        }
        for (int j = threadIdx.x; j < nc; j += blockDim.x)
            dG[scl(d, b, t0 + j, h)] +=
                0.5f * expf(G[nc - 1] - G[j]) * dot1(LK + (size_t)j * K, Kt + (size_t)j * K, K);
        __syncthreads();
        const float *Hnext = Hc + (bh * (size_t)(NT + 1) + c + 1) * kk;
        float lh = dot(Lam, Hnext, (int)kk);
        if (threadIdx.x == 0) dG[scl(d, b, t0 + nc - 1, h)] -= 0.5f * lh;
        float decay = expf(G[nc - 1]);
        const float *Z = Zc + (bh * (size_t)NT + c) * kk;
        for (size_t i = threadIdx.x; i < kk; i += blockDim.x)
            Lam[i] = decay * Lam[i] + Z[i];
        __syncthreads();
    }
    if (dH0lam)
        for (size_t i = threadIdx.x; i < kk; i += blockDim.x)
            dH0lam[bh * kk + i] = -0.5f * Lam[i];
}

// B8: chunk-local reverse cumulative sum of dG; acc = 1 adds it to dgk (a gate tied to dg: dg + dgk).
__global__ void b8_kernel(float *dgk, const float *dG, int acc_into, Dims d) {
    int item = blockIdx.x * blockDim.x + threadIdx.x;
    if (item >= d.B * d.H * d.NT) return;
    int b, h, c;
    item_bhc(d, item, b, h, c);
    float acc = 0.0f;
    for (int i = chunk_rows(d, c) - 1, t0 = c * d.C; i >= 0; i--) {
        acc += dG[scl(d, b, t0 + i, h)];
        size_t s = scl(d, b, t0 + i, h);
        dgk[s] = acc_into ? dgk[s] + acc : acc;
    }
}

// B9 and B4's dq += y: the bf16 totals.
__global__ void b9_kernel(bf16 *dq, bf16 *dk, const float *dqf, const float *y, const float *dkU,
                          const float *dkH, size_t n) {
    size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= n) return;
    if (dq) dq[e] = __float2bfloat16_rn(dqf[e] + y[e]);
    if (dk) dk[e] = __float2bfloat16_rn(dkU[e] + dkH[e]);
}

__global__ void add_kernel(float *dst, const float *src, size_t n) {
    size_t e = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (e < n) dst[e] += src[e];
}

// ---- host side ----------------------------------------------------------------------------------------
static Dims make_dims(const char *op, GkaOpConfig cfg, int B, int T, int H, int K, int V) {
    GK_CHECK(cfg.num_iter <= MAX_ITER, "%s: num_iter %d above %d", op, cfg.num_iter, MAX_ITER);
    return gka_chunk_dims(op, cfg, B, T, H, K, V);
}

static size_t max2(size_t a, size_t b) {
    return a > b ? a : b;
}

// Floats carved one after another out of one device scratch allocation (each rounded up to 256 bytes). A
// layout function runs twice: on a Carve with base NULL to count, then on scratch_for's to place.
struct Carve {
    float *base;
    size_t used;
};
static float *carve(Carve *cv, size_t n) {
    float *p = cv->base ? cv->base + cv->used : NULL;
    cv->used += (n + 63) / 64 * 64;
    return p;
}
// After the counting run: the device scratch that holds what it counted, to place from its start.
static Carve scratch_for(Carve counted, CudaCtx *cu) {
    Carve cv = {(float *)cuda_scratch(cu, counted.used * sizeof(float)), 0};
    return cv;
}

// Blocks of a persistent per-chunk grid: two per SM, never more than the programs.
static int item_blocks(const Dims &d, CudaCtx *cu) {
    long long n = (long long)d.B * d.H * d.NT, cap = 2LL * cu->sm_count;
    return (int)(n < cap ? n : cap);
}

static Omegas make_omegas(GkaOpConfig cfg) {
    Omegas om;
    gka_chebyshev_omegas(om.w, cfg.num_iter, cfg.ridge);
    return om;
}

// The forward's buffers: cumulative decays, key and value chunk states, q~, x and f when the caller keeps
// none, and the blocks' tiles.
struct FwdBufs {
    float *Gk, *Gv, *Hc, *Uc, *qt, *x, *f, *scratch;
};
static void fwd_layout(FwdBufs *b, Carve *cv, const Dims &d, const float *g, const float *gk, float *x,
                       float *f, size_t tiles) {
    size_t ntok = (size_t)d.B * d.T * d.H, nst = (size_t)d.B * d.H * (size_t)(d.NT + 1);
    b->Gk = gk ? carve(cv, ntok) : NULL, b->Gv = g ? carve(cv, ntok) : NULL;
    b->Hc = carve(cv, nst * d.K * d.K), b->Uc = carve(cv, nst * d.K * d.V), b->qt = carve(cv, ntok * d.K);
    b->x = x ? x : carve(cv, ntok * d.K), b->f = f ? f : carve(cv, ntok);
    b->scratch = carve(cv, tiles);
}

extern "C" void gka_chunk_forward_cuda(bf16_t *o, float *HT, float *UT, float *x, float *f, const bf16_t *q,
                                       const bf16_t *k, const bf16_t *v, const float *g, const float *gk,
                                       const float *alpha, const float *H0, const float *U0, GkaOpConfig cfg,
                                       int B, int T, int H, int K, int V, CudaCtx *cu) {
    Dims d = make_dims("gka_chunk_forward_cuda", cfg, B, T, H, K, V);
    size_t ntok = (size_t)B * T * H, nbh = (size_t)B * H;
    int nb = item_blocks(d, cu);
    size_t tiles = max2(f2_scratch(d, K > V ? K : V) * nbh, max2(f3_scratch(d), f5_scratch(d)) * nb);
    FwdBufs w;
    Carve cv = {NULL, 0};
    fwd_layout(&w, &cv, d, g, gk, x, f, tiles);
    cv = scratch_for(cv, cu);
    fwd_layout(&w, &cv, d, g, gk, x, f, tiles);
    const bf16 *qb = (const bf16 *)q, *kb = (const bf16 *)k, *vb = (const bf16 *)v;
    unsigned nitem = ceil_div((long long)B * H * d.NT, 128);
    if (gk) f1_kernel<<<nitem, 128, 0, cu->stream>>>(w.Gk, gk, d);
    if (g) f1_kernel<<<nitem, 128, 0, cu->stream>>>(w.Gv, g, d);
    cudaCheckLast();
    f2_kernel<<<(unsigned)nbh, NTHREADS, 0, cu->stream>>>(w.Hc, HT, kb, kb, w.Gk, H0, K, d, w.scratch);
    cudaCheckLast();
    f3_kernel<bf16><<<nb, NTHREADS, 0, cu->stream>>>(w.x, w.f, NULL, qb, kb, w.Gk, w.Hc, make_omegas(cfg),
                                                     cfg.num_iter, cfg.ridge, d, w.scratch);
    cudaCheckLast();
    f4_kernel<<<ceil_div((long long)ntok * K, 256), 256, 0, cu->stream>>>(w.qt, qb, w.x, alpha, d);
    f2_kernel<<<(unsigned)nbh, NTHREADS, 0, cu->stream>>>(w.Uc, UT, kb, vb, w.Gv, U0, V, d, w.scratch);
    cudaCheckLast();
    if (o)
        f5_kernel<<<nb, NTHREADS, 0, cu->stream>>>((bf16 *)o, w.qt, kb, vb, w.Gv, w.Uc, cfg.scale, d,
                                                   w.scratch);
    cudaCheckLast();
}

// The backward's buffers: the forward's recomputed (Gk, Gv, Hc, Uc, q~), the adjoint chunk states (R, Q, Z),
// the per-token float32 intermediates, dG, dH0's lambda part, and the blocks' tiles.
struct BwdBufs {
    float *Gk, *Gv, *Hc, *Uc, *qt, *Rc, *Qc, *Zc, *dqt, *dkU, *dx, *y, *dkH, *dqf, *dG, *dH0lam, *scratch;
};
static void bwd_layout(BwdBufs *b, Carve *cv, const Dims &d, const float *g, const float *gk, int want_dH0,
                       size_t tiles) {
    size_t ntok = (size_t)d.B * d.T * d.H, nst = (size_t)d.B * d.H * (size_t)(d.NT + 1);
    size_t nch = (size_t)d.B * d.H * d.NT, kk = (size_t)d.K * d.K, kv = (size_t)d.K * d.V, nq = ntok * d.K;
    b->Gk = gk ? carve(cv, ntok) : NULL, b->Gv = g ? carve(cv, ntok) : NULL;
    b->Hc = carve(cv, nst * kk), b->Uc = carve(cv, nst * kv), b->qt = carve(cv, nq);
    b->Rc = carve(cv, nch * kv), b->Qc = carve(cv, nch * kk), b->Zc = carve(cv, nch * kk);
    b->dqt = carve(cv, nq), b->dkU = carve(cv, nq), b->dx = carve(cv, nq);
    b->y = carve(cv, nq), b->dkH = carve(cv, nq), b->dqf = carve(cv, nq);
    b->dG = carve(cv, ntok), b->dH0lam = want_dH0 ? carve(cv, (size_t)d.B * d.H * kk) : NULL;
    b->scratch = carve(cv, tiles);
}

extern "C" void gka_chunk_backward_cuda(bf16_t *dq, bf16_t *dk, bf16_t *dv, float *dg, float *dgk,
                                        float *dalpha, float *dH0, float *dU0, const bf16_t *d_o,
                                        const float *dHT, const float *dUT, const bf16_t *q, const bf16_t *k,
                                        const bf16_t *v, const float *g, const float *gk, const float *alpha,
                                        const float *H0, const float *U0, const float *x, const float *f,
                                        GkaOpConfig cfg, int B, int T, int H, int K, int V, CudaCtx *cu) {
    Dims d = make_dims("gka_chunk_backward_cuda", cfg, B, T, H, K, V);
    GK_CHECK(d_o && x && f, "gka_chunk_backward_cuda: d_o, x and f (saved by the forward) are required");
    size_t ntok = (size_t)B * T * H, nch = (size_t)B * H * d.NT;
    size_t kk = (size_t)K * K, nbh = (size_t)B * H;
    int nb = item_blocks(d, cu), KV = K > V ? K : V;
    size_t per_scan = max2(max2(f2_scratch(d, KV), scan_scratch(d, KV)), b7_scratch(d));
    size_t per_item = max2(max2(f3_scratch(d), b1_scratch(d)), b6_scratch(d));
    size_t tiles = max2(per_scan * nbh, per_item * nb);
    BwdBufs w;
    Carve cv = {NULL, 0};
    bwd_layout(&w, &cv, d, g, gk, dH0 != NULL, tiles);
    cv = scratch_for(cv, cu);
    bwd_layout(&w, &cv, d, g, gk, dH0 != NULL, tiles);
    const bf16 *qb = (const bf16 *)q, *kb = (const bf16 *)k, *vb = (const bf16 *)v, *dob = (const bf16 *)d_o;
    float *sc = w.scratch;
    unsigned nitem = ceil_div((long long)nch, 128);
    /* recompute what the forward did not save */
    if (gk) f1_kernel<<<nitem, 128, 0, cu->stream>>>(w.Gk, gk, d);
    if (g) f1_kernel<<<nitem, 128, 0, cu->stream>>>(w.Gv, g, d);
    f4_kernel<<<ceil_div((long long)ntok * K, 256), 256, 0, cu->stream>>>(w.qt, qb, x, alpha, d);
    cudaCheckLast();
    f2_kernel<<<(unsigned)nbh, NTHREADS, 0, cu->stream>>>(w.Uc, NULL, kb, vb, w.Gv, U0, V, d, sc);
    cudaCheckLast();
    /* B1 */
    adjoint_scan_kernel<bf16>
        <<<(unsigned)nbh, NTHREADS, 0, cu->stream>>>(w.Rc, dU0, w.qt, dob, w.Gv, dUT, cfg.scale, V, d, sc);
    cudaCheckLast();
    b1_chunk_kernel<<<nb, NTHREADS, 0, cu->stream>>>(w.dqt, w.dkU, (bf16 *)dv, dg, w.Rc, dob, w.qt, kb, vb,
                                                     w.Gv, w.Uc, cfg.scale, d, sc);
    cudaCheckLast();
    b2_kernel<<<ceil_div((long long)ntok, 256), 256, 0, cu->stream>>>(w.dx, w.dqf, dalpha, w.dqt, x, qb,
                                                                      alpha, d);
    /* B3: chunk-start key states, as F2 */
    f2_kernel<<<(unsigned)nbh, NTHREADS, 0, cu->stream>>>(w.Hc, NULL, kb, kb, w.Gk, H0, K, d, sc);
    cudaCheckLast();
    /* B4: adjoint solve y = A^-1 dx with the forward's f */
    f3_kernel<float><<<nb, NTHREADS, 0, cu->stream>>>(w.y, NULL, f, w.dx, kb, w.Gk, w.Hc, make_omegas(cfg),
                                                      cfg.num_iter, cfg.ridge, d, sc);
    cudaCheckLast();
    /* B5 */
    adjoint_scan_kernel<float>
        <<<(unsigned)nbh, NTHREADS, 0, cu->stream>>>(w.Qc, dH0, w.y, x, w.Gk, dHT, -1.0f, K, d, sc);
    cudaCheckLast();
    b6_kernel<<<nb, NTHREADS, 0, cu->stream>>>(w.dkH, w.dG, w.Zc, kb, x, w.y, f, w.Gk, w.Hc, w.Qc, cfg.ridge,
                                               d, sc);
    cudaCheckLast();
    b7_kernel<<<(unsigned)nbh, NTHREADS, 0, cu->stream>>>(w.dkH, w.dG, w.dH0lam, kb, w.Gk, w.Hc, w.Zc, d, sc);
    cudaCheckLast();
    if (dgk) b8_kernel<<<nitem, 128, 0, cu->stream>>>(dgk, w.dG, dg == dgk, d);
    /* B9: totals */
    b9_kernel<<<ceil_div((long long)ntok * K, 256), 256, 0, cu->stream>>>((bf16 *)dq, (bf16 *)dk, w.dqf, w.y,
                                                                          w.dkU, w.dkH, ntok * K);
    if (dH0) add_kernel<<<ceil_div((long long)nbh * kk, 256), 256, 0, cu->stream>>>(dH0, w.dH0lam, nbh * kk);
    cudaCheckLast();
}
