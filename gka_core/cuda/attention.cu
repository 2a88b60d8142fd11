// attention.cu: non-causal multi-head self-attention for short sequences (windows: L = 196 and 49 in
// GKAVision-T), on bf16 tensor cores (mma.sync m16n8k16, fp32 accumulation).
//
// S sequences of L tokens, C channels, NH heads of dh = C / NH; qkv [S, L, 3C] holds q, k, v side by side,
// head h the columns h*dh .. h*dh + dh - 1 of each. att [S, NH, L, L] float32 keeps the probabilities P for
// the backward (ops.h); datt is scratch for dS. dqkv written.
//
// One block per (sequence, head) keeps that head's q, k, v (or dout, k, v; dout, q) in shared memory, padded
// to Lp = L rounded up to 16 rows and DHP = dh rounded up to 16 columns (zeros), and each warp owns 16-row
// tiles:
// - forward: pass 1 runs S = q k^T / sqrt(dh) over the keys 8 at a time for the row max and sum (online
//   softmax); pass 2 recomputes S, writes P = exp(S - max) / sum to att and accumulates O = P v;
// - backward, kernel 1 (query tiles): D = rowsum(P * dP) with dP = dout v^T, then dS = P (dP - D) written to
//   datt and dq = dS k / sqrt(dh); kernel 2 (key tiles): dv = P^T dout and dk = dS^T q / sqrt(dh), P and dS
//   read back from att and datt.
// The decision to know: P and dS are float32 but tensor cores take bf16, so each is split into hi = bf16(x)
// and lo = bf16(x - hi) and multiplied twice: products then carry ~16 significant bits instead of 8, which
// keeps the GPU within bf16 output rounding of the float32 CPU twin. q, k, v and dout are bf16 tensors
// already, so their products are exact.
#include <math.h>

#include "cuda_common.h"
#include "ops_cuda.h"

#define ATT_MAX_WARPS 8 /* warps per block; a warp takes every ATT_MAX_WARPS-th 16-row tile */
/* Head dims up to 64 fit two blocks per SM in registers; 65..128 run one (their accumulators need the room).
 */
#define ATT_MAX_DH 128

// ---- tensor-core helpers
// ------------------------------------------------------------------------------------

// c[16x8] += a[16x16] b[16x8]. Fragments (g = lane / 4, t = lane % 4): a0 = A[g][2t..2t+1], a1 =
// A[g+8][2t..], a2 = A[g][8+2t..], a3 = A[g+8][8+2t..]; b0 = B[2t..2t+1][g], b1 = B[8+2t..][g]; c0,c1 =
// C[g][2t..2t+1], c2,c3 = C[g+8][2t..2t+1].
__device__ __forceinline__ void mma_bf16(float *c, const unsigned *a, unsigned b0, unsigned b1) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ unsigned ld32(const bf16 *p) {
    return *reinterpret_cast<const unsigned *>(p);
}

// B fragments of two adjacent 8-column tiles from a row-major [k][n] matrix in shared memory: rows k0..k0+15,
// columns n0..n0+15. `row0` is the matrix's row k0 at column n0; ld is its row stride in elements.
__device__ __forceinline__ void ldsm_x4_trans(unsigned *b, const bf16 *row0, int ld) {
    int lane = threadIdx.x % 32;
    const bf16 *p = row0 + ((lane & 7) + ((lane >> 3) & 1) * 8) * ld + (lane >> 4) * 8;
    unsigned addr = (unsigned)__cvta_generic_to_shared(p);
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(b[0]), "=r"(b[1]), "=r"(b[2]), "=r"(b[3])
                 : "r"(addr));
}

// (x, y) as a packed bf16 pair hi, and the rounding error as a second pair lo: hi + lo carries ~16 bits.
__device__ __forceinline__ void split_pack(unsigned *hi, unsigned *lo, float x, float y) {
    __nv_bfloat162 h = __floats2bfloat162_rn(x, y);
    float2 hf = __bfloat1622float2(h);
    __nv_bfloat162 l = __floats2bfloat162_rn(x - hf.x, y - hf.y);
    *hi = *reinterpret_cast<unsigned *>(&h);
    *lo = *reinterpret_cast<unsigned *>(&l);
}

// Rows [0, Lp) x columns [0, DHP) of one head's matrix into shared rows of DHP + 8 elements (the +8 makes the
// row stride an odd multiple of 16 bytes: no bank conflicts for 32-bit fragment loads nor for ldmatrix), zero
// outside [0, L) x [0, dh). 16-byte loads when the head's columns allow them.
template <int DHP>
__device__ void att_load(bf16 *dst, const bf16 *src, long long ld, int L, int Lp, int dh, int vec) {
    const int SD = DHP + 8;
    if (vec) {
        for (int e = threadIdx.x; e < Lp * (DHP / 8); e += blockDim.x) {
            int j = e / (DHP / 8), d = e % (DHP / 8) * 8;
            uint4 v = make_uint4(0, 0, 0, 0);
            if (j < L && d < dh) v = *reinterpret_cast<const uint4 *>(src + j * ld + d);
            *reinterpret_cast<uint4 *>(dst + j * SD + d) = v;
        }
    } else {
        for (int e = threadIdx.x; e < Lp * DHP; e += blockDim.x) {
            int j = e / DHP, d = e % DHP;
            dst[j * SD + d] = j < L && d < dh ? src[j * ld + d] : __float2bfloat16_rn(0.0f);
        }
    }
}

// A fragments of rows r0..r0+15 of a shared [row][DHP + 8] matrix, all DHP/16 k-steps.
template <int DHP> __device__ __forceinline__ void load_a_rows(unsigned (*a)[4], const bf16 *m, int r0) {
    const int SD = DHP + 8;
    int g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
#pragma unroll
    for (int kk = 0; kk < DHP / 16; kk++) {
        a[kk][0] = ld32(m + (r0 + g) * SD + kk * 16 + 2 * t);
        a[kk][1] = ld32(m + (r0 + g + 8) * SD + kk * 16 + 2 * t);
        a[kk][2] = ld32(m + (r0 + g) * SD + kk * 16 + 8 + 2 * t);
        a[kk][3] = ld32(m + (r0 + g + 8) * SD + kk * 16 + 8 + 2 * t);
    }
}

// c[16 x 8] = a (16 rows x DHP) times the rows n0..n0+7 of a shared [row][DHP + 8] matrix, transposed.
template <int DHP>
__device__ __forceinline__ void mma_rows_t(float *c, unsigned (*a)[4], const bf16 *m, int n0) {
    const int SD = DHP + 8;
    int g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
    c[0] = c[1] = c[2] = c[3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < DHP / 16; kk++)
        mma_bf16(c, a[kk], ld32(m + (n0 + g) * SD + kk * 16 + 2 * t),
                 ld32(m + (n0 + g) * SD + kk * 16 + 8 + 2 * t));
}

// acc[DHP/8 tiles][16 x 8] += (hi + lo)[16 x 16] times rows k0..k0+15 of a shared [row][DHP + 8] matrix.
template <int DHP>
__device__ __forceinline__ void mma_split(float (*acc)[4], const unsigned *hi, const unsigned *lo,
                                          const bf16 *m, int k0) {
    const int SD = DHP + 8;
#pragma unroll
    for (int dn = 0; dn < DHP / 8; dn += 2) {
        unsigned b[4];
        ldsm_x4_trans(b, m + k0 * SD + dn * 8, SD);
        mma_bf16(acc[dn], hi, b[0], b[1]);
        mma_bf16(acc[dn], lo, b[0], b[1]);
        mma_bf16(acc[dn + 1], hi, b[2], b[3]);
        mma_bf16(acc[dn + 1], lo, b[2], b[3]);
    }
}

// Online softmax statistics: running max m and sum l of exp(x - m); -inf entries are masked keys.
__device__ __forceinline__ void online_add(float *m, float *l, float a, float b) {
    float mn = fmaxf(*m, fmaxf(a, b));
    if (mn == -INFINITY) return;
    *l = *l * expf(*m - mn) + expf(a - mn) + expf(b - mn);
    *m = mn;
}

__device__ __forceinline__ void online_merge(float *m, float *l, float mo, float lo) {
    float mn = fmaxf(*m, mo);
    if (mn == -INFINITY) return;
    *l = *l * expf(*m - mn) + lo * expf(mo - mn);
    *m = mn;
}

// Writes the two values a row's thread holds for keys j, j + 1 (each only inside [0, L)).
__device__ __forceinline__ void store_pair(float *row, int j, int L, float a, float b, int pair_ok) {
    if (pair_ok && j + 1 < L) {
        *reinterpret_cast<float2 *>(row + j) = make_float2(a, b);
    } else {
        if (j < L) row[j] = a;
        if (j + 1 < L) row[j + 1] = b;
    }
}

__device__ __forceinline__ float load_or_zero(const float *row, int j, int L, int valid_row) {
    return valid_row && j < L ? row[j] : 0.0f;
}

// Writes a [16 x DHP] accumulator (times `scale`) as bf16 rows r0.. of dst (row stride ld), columns < dh.
template <int DHP>
__device__ __forceinline__ void store_tile(bf16 *dst, long long ld, float (*acc)[4], int r0, int L, int dh,
                                           float scale) {
    int g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
#pragma unroll
    for (int dn = 0; dn < DHP / 8; dn++) {
        int d = dn * 8 + 2 * t;
#pragma unroll
        for (int half = 0; half < 2; half++) {
            int r = r0 + g + 8 * half;
            if (r >= L) continue;
            if (d < dh) dst[r * ld + d] = __float2bfloat16_rn(acc[dn][2 * half] * scale);
            if (d + 1 < dh) dst[r * ld + d + 1] = __float2bfloat16_rn(acc[dn][2 * half + 1] * scale);
        }
    }
}

// ---- kernels
// --------------------------------------------------------------------------------------------------

template <int DHP>
__global__ void __launch_bounds__(ATT_MAX_WARPS * 32, DHP > 64 ? 1 : 2)
    attention_forward_kernel(bf16 *out, float *att, const bf16 *qkv, int L, int C, int NH, int vec,
                             int pair_ok) {
    const int SD = DHP + 8;
    extern __shared__ __align__(16) unsigned char att_smem[];
    int Lp = (L + 15) & ~15, dh = C / NH, s = blockIdx.x / NH, h = blockIdx.x % NH;
    bf16 *Qs = reinterpret_cast<bf16 *>(att_smem), *Ks = Qs + Lp * SD, *Vs = Ks + Lp * SD;
    const bf16 *src = qkv + (long long)s * L * 3 * C + h * dh;
    att_load<DHP>(Qs, src, 3 * C, L, Lp, dh, vec);
    att_load<DHP>(Ks, src + C, 3 * C, L, Lp, dh, vec);
    att_load<DHP>(Vs, src + 2 * C, 3 * C, L, Lp, dh, vec);
    __syncthreads();
    float scale = 1.0f / sqrtf((float)dh);
    int g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
    float *P = att + (long long)blockIdx.x * L * L;
    for (int i0 = threadIdx.x / 32 * 16; i0 < Lp; i0 += blockDim.x / 32 * 16) {
        unsigned qa[DHP / 16][4];
        load_a_rows<DHP>(qa, Qs, i0);
        float mA = -INFINITY, mB = -INFINITY, lA = 0.0f, lB = 0.0f; /* rows i0 + g and i0 + g + 8 */
        for (int j0 = 0; j0 < Lp; j0 += 8) {
            float c[4];
            mma_rows_t<DHP>(c, qa, Ks, j0);
            int j = j0 + 2 * t;
            online_add(&mA, &lA, j < L ? c[0] * scale : -INFINITY, j + 1 < L ? c[1] * scale : -INFINITY);
            online_add(&mB, &lB, j < L ? c[2] * scale : -INFINITY, j + 1 < L ? c[3] * scale : -INFINITY);
        }
        for (int o = 1; o < 4; o <<= 1) { /* the four threads of a row hold disjoint keys */
            float ma = __shfl_xor_sync(0xffffffffu, mA, o), la = __shfl_xor_sync(0xffffffffu, lA, o);
            float mb = __shfl_xor_sync(0xffffffffu, mB, o), lb = __shfl_xor_sync(0xffffffffu, lB, o);
            online_merge(&mA, &lA, ma, la);
            online_merge(&mB, &lB, mb, lb);
        }
        float invA = 1.0f / lA, invB = 1.0f / lB;
        int iA = i0 + g, iB = iA + 8;
        float acc[DHP / 8][4];
#pragma unroll
        for (int dn = 0; dn < DHP / 8; dn++)
            acc[dn][0] = acc[dn][1] = acc[dn][2] = acc[dn][3] = 0.0f;
        for (int k0 = 0; k0 < Lp; k0 += 16) {
            float p[2][4];
#pragma unroll
            for (int half = 0; half < 2; half++) {
                float c[4];
                mma_rows_t<DHP>(c, qa, Ks, k0 + 8 * half);
                int j = k0 + 8 * half + 2 * t;
                p[half][0] = j < L ? expf(c[0] * scale - mA) * invA : 0.0f;
                p[half][1] = j + 1 < L ? expf(c[1] * scale - mA) * invA : 0.0f;
                p[half][2] = j < L ? expf(c[2] * scale - mB) * invB : 0.0f;
                p[half][3] = j + 1 < L ? expf(c[3] * scale - mB) * invB : 0.0f;
                if (iA < L) store_pair(P + (long long)iA * L, j, L, p[half][0], p[half][1], pair_ok);
                if (iB < L) store_pair(P + (long long)iB * L, j, L, p[half][2], p[half][3], pair_ok);
            }
            unsigned hi[4], lo[4];
            split_pack(&hi[0], &lo[0], p[0][0], p[0][1]);
            split_pack(&hi[1], &lo[1], p[0][2], p[0][3]);
            split_pack(&hi[2], &lo[2], p[1][0], p[1][1]);
            split_pack(&hi[3], &lo[3], p[1][2], p[1][3]);
            mma_split<DHP>(acc, hi, lo, Vs, k0);
        }
        store_tile<DHP>(out + (long long)s * L * C + h * dh, C, acc, i0, L, dh, 1.0f);
    }
}

// Query tiles: D, dS (to datt) and dq.
template <int DHP>
__global__ void __launch_bounds__(ATT_MAX_WARPS * 32, DHP > 64 ? 1 : 2)
    attention_backward_dq_kernel(bf16 *dqkv, float *datt, const bf16 *dout, const bf16 *qkv, const float *att,
                                 int L, int C, int NH, int vec_qkv, int vec_out, int pair_ok) {
    const int SD = DHP + 8;
    extern __shared__ __align__(16) unsigned char att_smem[];
    int Lp = (L + 15) & ~15, dh = C / NH, s = blockIdx.x / NH, h = blockIdx.x % NH;
    bf16 *Os = reinterpret_cast<bf16 *>(att_smem), *Ks = Os + Lp * SD, *Vs = Ks + Lp * SD;
    const bf16 *src = qkv + (long long)s * L * 3 * C + h * dh;
    att_load<DHP>(Os, dout + (long long)s * L * C + h * dh, C, L, Lp, dh, vec_out);
    att_load<DHP>(Ks, src + C, 3 * C, L, Lp, dh, vec_qkv);
    att_load<DHP>(Vs, src + 2 * C, 3 * C, L, Lp, dh, vec_qkv);
    __syncthreads();
    float scale = 1.0f / sqrtf((float)dh);
    int g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
    const float *P = att + (long long)blockIdx.x * L * L;
    float *dS = datt + (long long)blockIdx.x * L * L;
    for (int i0 = threadIdx.x / 32 * 16; i0 < Lp; i0 += blockDim.x / 32 * 16) {
        unsigned oa[DHP / 16][4];
        load_a_rows<DHP>(oa, Os, i0);
        int iA = i0 + g, iB = iA + 8;
        const float *PA = P + (long long)iA * L, *PB = P + (long long)iB * L;
        float DA = 0.0f, DB = 0.0f;
        for (int j0 = 0; j0 < Lp; j0 += 8) {
            float c[4];
            mma_rows_t<DHP>(c, oa, Vs, j0);
            int j = j0 + 2 * t;
            DA += load_or_zero(PA, j, L, iA < L) * c[0] + load_or_zero(PA, j + 1, L, iA < L) * c[1];
            DB += load_or_zero(PB, j, L, iB < L) * c[2] + load_or_zero(PB, j + 1, L, iB < L) * c[3];
        }
        for (int o = 1; o < 4; o <<= 1) {
            DA += __shfl_xor_sync(0xffffffffu, DA, o);
            DB += __shfl_xor_sync(0xffffffffu, DB, o);
        }
        float acc[DHP / 8][4];
#pragma unroll
        for (int dn = 0; dn < DHP / 8; dn++)
            acc[dn][0] = acc[dn][1] = acc[dn][2] = acc[dn][3] = 0.0f;
        for (int k0 = 0; k0 < Lp; k0 += 16) {
            float ds[2][4];
#pragma unroll
            for (int half = 0; half < 2; half++) {
                float c[4];
                mma_rows_t<DHP>(c, oa, Vs, k0 + 8 * half);
                int j = k0 + 8 * half + 2 * t;
                ds[half][0] = load_or_zero(PA, j, L, iA < L) * (c[0] - DA);
                ds[half][1] = load_or_zero(PA, j + 1, L, iA < L) * (c[1] - DA);
                ds[half][2] = load_or_zero(PB, j, L, iB < L) * (c[2] - DB);
                ds[half][3] = load_or_zero(PB, j + 1, L, iB < L) * (c[3] - DB);
                if (iA < L) store_pair(dS + (long long)iA * L, j, L, ds[half][0], ds[half][1], pair_ok);
                if (iB < L) store_pair(dS + (long long)iB * L, j, L, ds[half][2], ds[half][3], pair_ok);
            }
            unsigned hi[4], lo[4];
            split_pack(&hi[0], &lo[0], ds[0][0], ds[0][1]);
            split_pack(&hi[1], &lo[1], ds[0][2], ds[0][3]);
            split_pack(&hi[2], &lo[2], ds[1][0], ds[1][1]);
            split_pack(&hi[3], &lo[3], ds[1][2], ds[1][3]);
            mma_split<DHP>(acc, hi, lo, Ks, k0);
        }
        store_tile<DHP>(dqkv + (long long)s * L * 3 * C + h * dh, 3 * C, acc, i0, L, dh, scale);
    }
}

// Key tiles: dv = P^T dout and dk = dS^T q / sqrt(dh), with P^T and dS^T fragments read from att and datt.
template <int DHP>
__global__ void __launch_bounds__(ATT_MAX_WARPS * 32, DHP > 64 ? 1 : 2)
    attention_backward_dkv_kernel(bf16 *dqkv, const float *datt, const bf16 *dout, const bf16 *qkv,
                                  const float *att, int L, int C, int NH, int vec_qkv, int vec_out) {
    const int SD = DHP + 8;
    extern __shared__ __align__(16) unsigned char att_smem[];
    int Lp = (L + 15) & ~15, dh = C / NH, s = blockIdx.x / NH, h = blockIdx.x % NH;
    bf16 *Os = reinterpret_cast<bf16 *>(att_smem), *Qs = Os + Lp * SD;
    att_load<DHP>(Os, dout + (long long)s * L * C + h * dh, C, L, Lp, dh, vec_out);
    att_load<DHP>(Qs, qkv + (long long)s * L * 3 * C + h * dh, 3 * C, L, Lp, dh, vec_qkv);
    __syncthreads();
    float scale = 1.0f / sqrtf((float)dh);
    int g = threadIdx.x % 32 / 4, t = threadIdx.x % 4;
    const float *P = att + (long long)blockIdx.x * L * L, *dS = datt + (long long)blockIdx.x * L * L;
    for (int j0 = threadIdx.x / 32 * 16; j0 < Lp; j0 += blockDim.x / 32 * 16) {
        float dk[DHP / 8][4], dv[DHP / 8][4];
#pragma unroll
        for (int dn = 0; dn < DHP / 8; dn++)
#pragma unroll
            for (int e = 0; e < 4; e++)
                dk[dn][e] = dv[dn][e] = 0.0f;
        int kA = j0 + g, kB = kA + 8;
        for (int i0 = 0; i0 < Lp; i0 += 16) {
            // fragment (row = key, column = query) of the transposed matrices: queries i0 + 2t (+1), i0 + 8 +
            // 2t (+1)
            int q[4] = {i0 + 2 * t, i0 + 2 * t + 1, i0 + 8 + 2 * t, i0 + 9 + 2 * t};
            float pa[4], pb[4], sa[4], sb[4];
#pragma unroll
            for (int e = 0; e < 4; e++) {
                int ok = q[e] < L;
                pa[e] = load_or_zero(P + (long long)q[e] * L, kA, L, ok);
                pb[e] = load_or_zero(P + (long long)q[e] * L, kB, L, ok);
                sa[e] = load_or_zero(dS + (long long)q[e] * L, kA, L, ok);
                sb[e] = load_or_zero(dS + (long long)q[e] * L, kB, L, ok);
            }
            unsigned ph[4], pl[4], sh[4], sl[4];
            split_pack(&ph[0], &pl[0], pa[0], pa[1]);
            split_pack(&ph[1], &pl[1], pb[0], pb[1]);
            split_pack(&ph[2], &pl[2], pa[2], pa[3]);
            split_pack(&ph[3], &pl[3], pb[2], pb[3]);
            split_pack(&sh[0], &sl[0], sa[0], sa[1]);
            split_pack(&sh[1], &sl[1], sb[0], sb[1]);
            split_pack(&sh[2], &sl[2], sa[2], sa[3]);
            split_pack(&sh[3], &sl[3], sb[2], sb[3]);
            mma_split<DHP>(dv, ph, pl, Os, i0);
            mma_split<DHP>(dk, sh, sl, Qs, i0);
        }
        bf16 *dst = dqkv + (long long)s * L * 3 * C + h * dh;
        store_tile<DHP>(dst + C, 3 * C, dk, j0, L, dh, scale);
        store_tile<DHP>(dst + 2 * C, 3 * C, dv, j0, L, dh, 1.0f);
    }
}

// ---- launchers
// ----------------------------------------------------------------------------------------------

static int att_dhp(int dh) {
    return dh <= 16 ? 16 : dh <= 32 ? 32 : dh <= 48 ? 48 : dh <= 64 ? 64 : 128;
}

typedef struct {
    int dhp, threads, Lp;
    size_t smem_per_matrix;
} AttPlan;

static AttPlan att_plan(int L, int C, int n_heads, int n_matrices, const char *op, CudaCtx *cu) {
    int dh = C / n_heads;
    GK_CHECK(dh <= ATT_MAX_DH, "%s: head dim %d is above the %d this kernel keeps in registers", op, dh,
             ATT_MAX_DH);
    AttPlan p;
    p.dhp = att_dhp(dh);
    p.Lp = (L + 15) & ~15;
    p.smem_per_matrix = (size_t)p.Lp * (p.dhp + 8) * sizeof(bf16);
    int tiles = p.Lp / 16;
    p.threads = 32 * (tiles < ATT_MAX_WARPS ? tiles : ATT_MAX_WARPS);
    GK_CHECK(p.smem_per_matrix * n_matrices <= cu->smem_optin,
             "%s: a sequence of %d tokens with head dim %d needs %zu bytes of shared memory, the GPU has "
             "%zu; this "
             "kernel is for short (window) sequences",
             op, L, dh, p.smem_per_matrix * n_matrices, cu->smem_optin);
    return p;
}

static void att_smem_attr(const void *kernel, size_t smem) {
    if (smem > 48 * 1024)
        cudaCheck(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
}

// 16-byte loads of a head's columns: whole vectors per row at 16-byte aligned addresses.
static int att_vec(const void *base, long long ld, int dh) {
    return dh % 8 == 0 && ld % 8 == 0 && ((uintptr_t)base & 15) == 0;
}

#define ATT_DISPATCH(DHPV, LAUNCH)                                                                           \
    switch (DHPV) {                                                                                          \
    case 16:                                                                                                 \
        LAUNCH(16);                                                                                          \
        break;                                                                                               \
    case 32:                                                                                                 \
        LAUNCH(32);                                                                                          \
        break;                                                                                               \
    case 48:                                                                                                 \
        LAUNCH(48);                                                                                          \
        break;                                                                                               \
    case 64:                                                                                                 \
        LAUNCH(64);                                                                                          \
        break;                                                                                               \
    default:                                                                                                 \
        LAUNCH(128);                                                                                         \
        break;                                                                                               \
    }

extern "C" void attention_forward_cuda(bf16_t *out, float *att, const bf16_t *qkv, int S, int L, int C,
                                       int n_heads, CudaCtx *cu) {
    if (S == 0 || L == 0) return;
    AttPlan p = att_plan(L, C, n_heads, 3, "attention_forward", cu);
    size_t smem = 3 * p.smem_per_matrix;
    int vec = att_vec(qkv, 3LL * C, C / n_heads), pair_ok = L % 2 == 0 && ((uintptr_t)att & 7) == 0;
#define ATT_FWD(D)                                                                                           \
    att_smem_attr((const void *)attention_forward_kernel<D>, smem);                                          \
    attention_forward_kernel<D><<<S * n_heads, p.threads, smem, cu->stream>>>(                               \
        (bf16 *)out, att, (const bf16 *)qkv, L, C, n_heads, vec, pair_ok)
    ATT_DISPATCH(p.dhp, ATT_FWD)
#undef ATT_FWD
    cudaCheckLast();
}

extern "C" void attention_backward_cuda(bf16_t *dqkv, float *datt, const bf16_t *dout, const bf16_t *qkv,
                                        const float *att, int S, int L, int C, int n_heads, CudaCtx *cu) {
    if (S == 0 || L == 0) return;
    AttPlan p = att_plan(L, C, n_heads, 3, "attention_backward", cu);
    int dh = C / n_heads, vec_qkv = att_vec(qkv, 3LL * C, dh), vec_out = att_vec(dout, C, dh);
    int pair_ok = L % 2 == 0 && ((uintptr_t)att & 7) == 0 && ((uintptr_t)datt & 7) == 0;
    size_t smem1 = 3 * p.smem_per_matrix, smem2 = 2 * p.smem_per_matrix;
#define ATT_BWD(D)                                                                                           \
    att_smem_attr((const void *)attention_backward_dq_kernel<D>, smem1);                                     \
    att_smem_attr((const void *)attention_backward_dkv_kernel<D>, smem2);                                    \
    attention_backward_dq_kernel<D><<<S * n_heads, p.threads, smem1, cu->stream>>>(                          \
        (bf16 *)dqkv, datt, (const bf16 *)dout, (const bf16 *)qkv, att, L, C, n_heads, vec_qkv, vec_out,     \
        pair_ok);                                                                                            \
    cudaCheckLast();                                                                                         \
    attention_backward_dkv_kernel<D><<<S * n_heads, p.threads, smem2, cu->stream>>>(                         \
        (bf16 *)dqkv, datt, (const bf16 *)dout, (const bf16 *)qkv, att, L, C, n_heads, vec_qkv, vec_out)
    ATT_DISPATCH(p.dhp, ATT_BWD)
#undef ATT_BWD
    cudaCheckLast();
}
