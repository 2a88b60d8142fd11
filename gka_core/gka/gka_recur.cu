// gka_recur.cu: the GKA core operator in token-recurrent form on the GPU, the CUDA twin of gka_recur_cpu.c
// (same passes, same order; read that file's banner for the algorithm and the backward's derivation).
//
// One warp per (sequence, head), K <= 32 and V <= 32 (keys and values zero-padded to 32 lanes: a padded
// component of q and k is zero, so it stays zero in x and never reaches f). Lane i keeps row i of H_t in
// registers (H is symmetric, so row i is also column i) and the iterate is shared through a per-warp
// buffer read with broadcast float4 loads, so a Chebyshev step costs 32 FMAs and 8 shared loads per lane.
// Everything runs in float32: q, k, v, do arrive in bf16 and are widened; x, f and all states stay fp32
// (spec gka.md 9.11: rounding the iterate to bf16 is what makes the authors' op inaccurate).
//
// Parallelism: a batch of 256 vision windows gives only B*H = 1280 (sequence, head) pairs, about 10 warps per
// SM, too few to hide the latency of a Chebyshev step. So the solving passes split each sequence into segments
// and give each (sequence, head, segment) its own warp; a cheap first pass (one H and U update per token, 1/30
// of a solve) writes the states at segment starts. The math is the CPU twin's token loop unchanged: a
// segment's first state is what the sequential loop would hold there.
#include "cuda/cuda_common.h"
#include "gka_recur.h"

#define GKA_RECUR_MAX_ITER 128
#define FWD_WARPS 4
#define BWD2_WARPS 2
#define RS 33 /* padded row stride of the per-warp shared matrices: row and column reads are conflict-free */

struct RecurArgs {
    float ridge, scale, step_num; /* step = step_num / f */
    int n_iter, B, T, H, K, V;
    int nseg, seg_len;            /* segments per sequence and their length (the last may be shorter) */
    float omega[GKA_RECUR_MAX_ITER];
};

// States at segment starts: Hs [BH, nseg, 32, 32] and Us [BH, nseg, 32, 32] (padded, row-major, U key-major),
// segment 0 holding H0 / U0 (or zeros). One warp per (sequence, head); lane i owns row i.
__global__ void __launch_bounds__(FWD_WARPS * 32)
    gka_recur_states_kernel(float *Hs, float *Us, const bf16 *k, const bf16 *v, const float *g, const float *gk,
                            const float *H0, const float *U0, const RecurArgs a) {
    __shared__ float sh[FWD_WARPS][2][32];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int bh = blockIdx.x * FWD_WARPS + warp;
    if (bh >= a.B * a.H) return;
    const int b = bh / a.H, h = bh % a.H, K = a.K, V = a.V, Hn = a.H;
    const bool kl = lane < K;
    float *ksh = sh[warp][0], *vsh = sh[warp][1];
    float Hr[32], Ur[32];
#pragma unroll
    for (int j = 0; j < 32; j++) {
        Hr[j] = (H0 && kl && j < K) ? H0[((size_t)bh * K + lane) * K + j] : 0.0f;
        Ur[j] = (U0 && kl && j < V) ? U0[((size_t)bh * K + lane) * V + j] : 0.0f;
    }
    for (int s = 0; s < a.nseg; s++) {
        float *hs = Hs + (((size_t)bh * a.nseg + s) * 32 + lane) * 32, *us = Us + (((size_t)bh * a.nseg + s) * 32 + lane) * 32;
#pragma unroll
        for (int j = 0; j < 32; j += 4) {
            *reinterpret_cast<float4 *>(hs + j) = make_float4(Hr[j], Hr[j + 1], Hr[j + 2], Hr[j + 3]);
            *reinterpret_cast<float4 *>(us + j) = make_float4(Ur[j], Ur[j + 1], Ur[j + 2], Ur[j + 3]);
        }
        if (s == a.nseg - 1) break;
        for (int t = s * a.seg_len; t < (s + 1) * a.seg_len; t++) {
            const size_t tok = ((size_t)b * a.T + t) * Hn + h;
            const float ki = kl ? __bfloat162float(k[tok * K + lane]) : 0.0f;
            const float vj = lane < V ? __bfloat162float(v[tok * V + lane]) : 0.0f;
            const float dk = gk ? expf(gk[tok]) : 1.0f, dv = g ? expf(g[tok]) : 1.0f;
            __syncwarp();
            ksh[lane] = ki, vsh[lane] = vj;
            __syncwarp();
#pragma unroll
            for (int j = 0; j < 32; j++) {
                Hr[j] = fmaf(dk, Hr[j], ki * ksh[j]);
                Ur[j] = fmaf(dv, Ur[j], ki * vsh[j]);
            }
        }
    }
}

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

__device__ __forceinline__ float ld(const bf16 *p, size_t i, bool ok) { return ok ? __bfloat162float(p[i]) : 0.0f; }

// Row `Hr` (this lane's row of the matrix) times the vector held in the per-warp buffer `vec`.
__device__ __forceinline__ float row_dot(const float (&Hr)[32], const float *vec) {
    float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
#pragma unroll
    for (int j = 0; j < 32; j += 4) {
        float4 x = *reinterpret_cast<const float4 *>(vec + j);
        a0 = fmaf(Hr[j], x.x, a0);
        a1 = fmaf(Hr[j + 1], x.y, a1);
        a2 = fmaf(Hr[j + 2], x.z, a2);
        a3 = fmaf(Hr[j + 3], x.w, a3);
    }
    return (a0 + a1) + (a2 + a3);
}

// Chebyshev solve of (H + lambda I) x = rhs for this lane's component (spec section 4); xsh is scratch.
__device__ __forceinline__ float cheb_solve(const float (&Hr)[32], float rhs, float f, float *xsh,
                                            const RecurArgs &a) {
    int lane = threadIdx.x & 31;
    float lam = a.ridge * f, step = a.step_num / f;
    float x = step * rhs, xp = 0.0f;
    for (int it = 0; it < a.n_iter; it++) {
        float w = a.omega[it];
        __syncwarp();
        xsh[lane] = x;
        __syncwarp();
        float res = row_dot(Hr, xsh) + lam * x - rhs;
        float xn = x - step * w * res + (w - 1.0f) * (x - xp);
        xp = x;
        x = xn;
    }
    return x;
}

__global__ void __launch_bounds__(FWD_WARPS * 32)
    gka_recur_fwd_kernel(bf16 *o, float *HT, float *UT, float *xs, float *fs, const bf16 *q, const bf16 *k,
                         const bf16 *v, const float *g, const float *gk, const float *alpha, const float *Hs,
                         const float *Us, const RecurArgs a) {
    __shared__ __align__(16) float sh[FWD_WARPS][3][32];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int wid = blockIdx.x * FWD_WARPS + warp;
    if (wid >= a.B * a.H * a.nseg) return; // a whole warp leaves together; the kernel has no block-wide barrier
    const int bh = wid / a.nseg, seg = wid % a.nseg;
    const int b = bh / a.H, h = bh % a.H, K = a.K, V = a.V, Hn = a.H;
    const int t0 = seg * a.seg_len, t1 = min(a.T, t0 + a.seg_len);
    float *xsh = sh[warp][0], *ksh = sh[warp][1], *qsh = sh[warp][2];
    const bool kl = lane < K, vl = lane < V;
    float Hr[32], Uc[32]; // row `lane` of H; column `lane` of U
    const float *hs = Hs + ((size_t)wid * 32) * 32, *us = Us + ((size_t)wid * 32) * 32;
#pragma unroll
    for (int j = 0; j < 32; j++) {
        Hr[j] = hs[lane * 32 + j];
        Uc[j] = us[j * 32 + lane];
    }
    for (int t = t0; t < t1; t++) {
        const size_t tok = ((size_t)b * a.T + t) * Hn + h;
        const float qi = ld(q, tok * K + lane, kl), ki = ld(k, tok * K + lane, kl), vj = ld(v, tok * V + lane, vl);
        const float dk = gk ? expf(gk[tok]) : 1.0f, dv = g ? expf(g[tok]) : 1.0f;
        __syncwarp();
        ksh[lane] = ki;
        __syncwarp();
        float fsq = 0.0f;
#pragma unroll
        for (int j = 0; j < 32; j++) {
            Hr[j] = fmaf(dk, Hr[j], ki * ksh[j]);
            Uc[j] = fmaf(dv, Uc[j], ksh[j] * vj);
            fsq = fmaf(Hr[j], Hr[j], fsq);
        }
        const float f = fmaxf(sqrtf(warp_sum(fsq)), GKA_MIN_FROB);
        const float x = cheb_solve(Hr, qi, f, xsh, a);
        const float al = alpha ? alpha[tok] : 1.0f;
        __syncwarp();
        qsh[lane] = qi + al * (x - qi);
        __syncwarp();
        const float ov = a.scale * row_dot(Uc, qsh); // column `lane` of U dotted with q~
        if (vl) o[tok * V + lane] = __float2bfloat16_rn(ov);
        if (xs && kl) xs[tok * K + lane] = x;
        if (fs && lane == 0) fs[tok] = f;
    }
    if (seg != a.nseg - 1) return;
#pragma unroll
    for (int j = 0; j < 32; j++) {
        if (HT && kl && j < K) HT[((size_t)bh * K + lane) * K + j] = Hr[j];
        if (UT && vl && j < K) UT[((size_t)bh * K + j) * V + lane] = Uc[j];
    }
}

// Backward pass 1, forward in time: see gka_recur_cpu.c. Lane i keeps row i of H and row i of U.
__global__ void __launch_bounds__(FWD_WARPS * 32)
    gka_recur_bwd1_kernel(bf16 *dq, float *dalpha, float *ys, float *hks, float *ws, float *ms, float *qds,
                          float *HTs, float *UTs, const bf16 *d_o, const bf16 *q, const bf16 *k, const bf16 *v,
                          const float *g, const float *gk, const float *alpha, const float *Hs, const float *Us,
                          const float *xs, const float *fs, const RecurArgs a) {
    __shared__ __align__(16) float sh[FWD_WARPS][4][32];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int wid = blockIdx.x * FWD_WARPS + warp;
    if (wid >= a.B * a.H * a.nseg) return;
    const int bh = wid / a.nseg, seg = wid % a.nseg;
    const int b = bh / a.H, h = bh % a.H, K = a.K, V = a.V, Hn = a.H;
    const int t0 = seg * a.seg_len, t1 = min(a.T, t0 + a.seg_len);
    float *xsh = sh[warp][0], *ksh = sh[warp][1], *vsh = sh[warp][2], *dsh = sh[warp][3];
    const bool kl = lane < K, vl = lane < V;
    float Hr[32], Ur[32]; // row `lane` of H; row `lane` of U
    const float *hs = Hs + ((size_t)wid * 32) * 32, *us = Us + ((size_t)wid * 32) * 32;
#pragma unroll
    for (int j = 0; j < 32; j++) {
        Hr[j] = hs[lane * 32 + j];
        Ur[j] = us[lane * 32 + j];
    }
    for (int t = t0; t < t1; t++) {
        const size_t tok = ((size_t)b * a.T + t) * Hn + h;
        const float qi = ld(q, tok * K + lane, kl), ki = ld(k, tok * K + lane, kl), vj = ld(v, tok * V + lane, vl);
        const float doj = ld(d_o, tok * V + lane, vl), xi = kl ? xs[tok * K + lane] : 0.0f;
        const float dk = gk ? expf(gk[tok]) : 1.0f, dv = g ? expf(g[tok]) : 1.0f;
        const float f = fs[tok], al = alpha ? alpha[tok] : 1.0f;
        __syncwarp();
        ksh[lane] = ki, vsh[lane] = vj, dsh[lane] = doj;
        __syncwarp();
#pragma unroll
        for (int j = 0; j < 32; j++) {
            Hr[j] = fmaf(dk, Hr[j], ki * ksh[j]);
            Ur[j] = fmaf(dv, Ur[j], ki * vsh[j]);
        }
        const float dqt = a.scale * row_dot(Ur, dsh);
        const float qd = warp_sum((qi + al * (xi - qi)) * dqt), da = warp_sum(dqt * (xi - qi));
        const float y = cheb_solve(Hr, al * dqt, f, xsh, a);
        __syncwarp();
        xsh[lane] = xi;
        __syncwarp();
        const float hx = row_dot(Hr, xsh), hk = row_dot(Hr, ksh);
        const float c = warp_sum(y * xi), yhx = warp_sum(y * hx);
        const float w = 2.0f * a.ridge * c / f;
        if (kl) {
            ys[tok * K + lane] = y;
            hks[tok * K + lane] = hk;
            if (dq) dq[tok * K + lane] = __float2bfloat16_rn((alpha ? (1.0f - al) * dqt : 0.0f) + y);
        }
        if (lane == 0) {
            ws[tok] = w;
            ms[tok] = -yhx - 0.5f * w * f * f;
            qds[tok] = qd;
            if (dalpha) dalpha[tok] = da;
        }
    }
    if (seg != a.nseg - 1) return;
#pragma unroll
    for (int j = 0; j < 32; j++) {
        if (kl && j < K) HTs[((size_t)bh * K + lane) * K + j] = Hr[j];
        if (kl && j < V) UTs[((size_t)bh * K + lane) * V + j] = Ur[j];
    }
}

// Backward pass 2, backward in time: R (adjoint of U), Qd (direct-path adjoint of H) and Psi (lambda path)
// live in padded per-warp shared memory; lane i updates row i and reads rows or columns.
__global__ void __launch_bounds__(BWD2_WARPS * 32)
    gka_recur_bwd2_kernel(bf16 *dk_out, bf16 *dv_out, float *dg, float *dgk, float *dH0, float *dU0,
                          const float *ys, const float *hks, const float *ws, const float *ms, const float *qds,
                          const float *HTs, const float *UTs, const bf16 *d_o, const float *dHT, const float *dUT,
                          const bf16 *q, const bf16 *k, const bf16 *v, const float *g, const float *gk,
                          const float *alpha, const float *H0, const float *xs, const RecurArgs a) {
    __shared__ float R[BWD2_WARPS][32 * RS], Qd[BWD2_WARPS][32 * RS], Ps[BWD2_WARPS][32 * RS];
    __shared__ float vec[BWD2_WARPS][4][32];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int bh = blockIdx.x * BWD2_WARPS + warp;
    if (bh >= a.B * a.H) return;
    const int b = bh / a.H, h = bh % a.H, K = a.K, V = a.V, T = a.T, Hn = a.H;
    float *Rw = R[warp], *Qw = Qd[warp], *Pw = Ps[warp];
    float *ksh = vec[warp][0], *vsh = vec[warp][1], *dsh = vec[warp][2], *xsh = vec[warp][3];
    const bool kl = lane < K, vl = lane < V;
    float gsum = 0.0f, gksum = 0.0f;
    for (int j = 0; j < 32; j++) {
        float r = (dUT && kl && j < V) ? dUT[((size_t)bh * K + lane) * V + j] : 0.0f;
        float p = (dHT && kl && j < K) ? dHT[((size_t)bh * K + lane) * K + j] : 0.0f;
        if (r != 0.0f) gsum += r * UTs[((size_t)bh * K + lane) * V + j];
        if (p != 0.0f) gksum += p * HTs[((size_t)bh * K + lane) * K + j];
        Rw[lane * RS + j] = r;
        Qw[lane * RS + j] = p;
        Pw[lane * RS + j] = 0.0f;
    }
    gsum = warp_sum(gsum), gksum = warp_sum(gksum);
    float om_carry = 0.0f;
    for (int t = T - 1; t >= 0; t--) {
        const size_t tok = ((size_t)b * T + t) * Hn + h;
        const float qi = ld(q, tok * K + lane, kl), ki = ld(k, tok * K + lane, kl), vj = ld(v, tok * V + lane, vl);
        const float doj = ld(d_o, tok * V + lane, vl);
        const float xi = kl ? xs[tok * K + lane] : 0.0f, yi = kl ? ys[tok * K + lane] : 0.0f;
        const float hki = kl ? hks[tok * K + lane] : 0.0f;
        const float al = alpha ? alpha[tok] : 1.0f, qt = qi + al * (xi - qi);
        const float om = ws[tok] + om_carry;
        __syncwarp();
        ksh[lane] = ki, vsh[lane] = vj, dsh[lane] = doj, xsh[lane] = xi;
        __syncwarp();
        for (int j = 0; j < 32; j++) {
            Rw[lane * RS + j] = fmaf(a.scale * qt, dsh[j], Rw[lane * RS + j]);
            Qw[lane * RS + j] = fmaf(-yi, xsh[j], Qw[lane * RS + j]);
        }
        __syncwarp();
        float pk = 0.0f, qk = 0.0f, qtk = 0.0f, ru = 0.0f, dvj = 0.0f;
        for (int j = 0; j < 32; j++) {
            const float kj = ksh[j];
            pk = fmaf(Pw[lane * RS + j], kj, pk);
            qk = fmaf(Qw[lane * RS + j], kj, qk);
            qtk = fmaf(Qw[j * RS + lane], kj, qtk);
            ru = fmaf(Rw[lane * RS + j], vsh[j], ru);
            dvj = fmaf(Rw[j * RS + lane], kj, dvj);
        }
        const float dkh = qk + qtk - (om * hki + pk);
        const float kdku = warp_sum(ki * ru), kdkh = warp_sum(ki * dkh);
        gsum += qds[tok] - kdku;
        gksum += ms[tok] - 0.5f * kdkh;
        if (dk_out && kl) dk_out[tok * K + lane] = __float2bfloat16_rn(ru + dkh);
        if (dv_out && vl) dv_out[tok * V + lane] = __float2bfloat16_rn(dvj);
        if (lane == 0) {
            if (dg && dg == dgk) { // one gate for both states: its gradient is the sum
                dg[tok] = gsum + gksum;
            } else {
                if (dg) dg[tok] = gsum;
                if (dgk) dgk[tok] = gksum;
            }
        }
        const float dk = gk ? expf(gk[tok]) : 1.0f, dv = g ? expf(g[tok]) : 1.0f;
        __syncwarp();
        for (int j = 0; j < 32; j++) {
            Rw[lane * RS + j] *= dv;
            Qw[lane * RS + j] *= dk;
            Pw[lane * RS + j] = dk * fmaf(om * ki, ksh[j], Pw[lane * RS + j]);
        }
        om_carry = dk * dk * om;
    }
    __syncwarp();
    for (int j = 0; j < 32; j++) {
        if (dU0 && kl && j < V) dU0[((size_t)bh * K + lane) * V + j] = Rw[lane * RS + j];
        if (dH0 && kl && j < K) {
            float h0 = H0 ? H0[((size_t)bh * K + lane) * K + j] : 0.0f;
            dH0[((size_t)bh * K + lane) * K + j] = Qw[lane * RS + j] - 0.5f * (om_carry * h0 + Pw[lane * RS + j]);
        }
    }
}

static RecurArgs recur_args(GkaOpConfig cfg, int B, int T, int H, int K, int V) {
    GK_CHECK(K >= 1 && K <= 32 && V >= 1 && V <= 32, "gka_recur: the token-recurrent CUDA kernels take K, V <= 32 "
                                                       "(got K = %d, V = %d)", K, V);
    GK_CHECK(cfg.num_iter >= 1 && cfg.num_iter <= GKA_RECUR_MAX_ITER, "gka_recur: num_iter %d outside 1..%d",
             cfg.num_iter, GKA_RECUR_MAX_ITER);
    RecurArgs a;
    a.ridge = cfg.ridge, a.scale = cfg.scale, a.step_num = 2.0f / (1.0f + 2.0f * cfg.ridge);
    a.n_iter = cfg.num_iter, a.B = B, a.T = T, a.H = H, a.K = K, a.V = V;
    gka_chebyshev_omegas(a.omega, cfg.num_iter, cfg.ridge);
    a.nseg = 1, a.seg_len = T > 0 ? T : 1;
    return a;
}

// Segments enough for about 48 warps per SM (segments of at least 8 tokens), then the segment-start states.
static void recur_segment(RecurArgs *a, const bf16_t *k, const bf16_t *v, const float *g, const float *gk,
                          const float *H0, const float *U0, float **Hs, float **Us, CudaCtx *cu) {
    long long pairs = (long long)a->B * a->H, want = 48LL * cu->sm_count;
    int nseg = (int)((want + pairs - 1) / pairs);
    int max_seg = a->T / 8 > 1 ? a->T / 8 : 1;
    if (nseg > max_seg) nseg = max_seg;
    if (nseg < 1) nseg = 1;
    a->seg_len = (a->T + nseg - 1) / nseg;
    a->nseg = (a->T + a->seg_len - 1) / a->seg_len;
    if (a->nseg < 1) a->nseg = 1;
    size_t per = (size_t)pairs * a->nseg * 32 * 32;
    float *buf = (float *)cuda_scratch(cu, 2 * per * sizeof(float));
    *Hs = buf, *Us = buf + per;
    gka_recur_states_kernel<<<ceil_div(pairs, FWD_WARPS), FWD_WARPS * 32, 0, cu->stream>>>(
        *Hs, *Us, (const bf16 *)k, (const bf16 *)v, g, gk, H0, U0, *a);
    cudaCheckLast();
}

extern "C" void gka_recur_forward_cuda(bf16_t *o, float *HT, float *UT, float *x, float *f, const bf16_t *q,
                                       const bf16_t *k, const bf16_t *v, const float *g, const float *gk,
                                       const float *alpha, const float *H0, const float *U0, GkaOpConfig cfg, int B,
                                       int T, int H, int K, int V, CudaCtx *cu) {
    if ((long long)B * H * T == 0) return;
    RecurArgs a = recur_args(cfg, B, T, H, K, V);
    float *Hs, *Us;
    recur_segment(&a, k, v, g, gk, H0, U0, &Hs, &Us, cu);
    gka_recur_fwd_kernel<<<ceil_div((long long)B * H * a.nseg, FWD_WARPS), FWD_WARPS * 32, 0, cu->stream>>>(
        (bf16 *)o, HT, UT, x, f, (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, g, gk, alpha, Hs, Us, a);
    cudaCheckLast();
}

extern "C" void gka_recur_backward_cuda(bf16_t *dq, bf16_t *dk, bf16_t *dv, float *dg, float *dgk, float *dalpha,
                                        float *dH0, float *dU0, float *work, const bf16_t *d_o, const float *dHT,
                                        const float *dUT, const bf16_t *q, const bf16_t *k, const bf16_t *v,
                                        const float *g, const float *gk, const float *alpha, const float *H0,
                                        const float *U0, const float *x, const float *f, GkaOpConfig cfg, int B,
                                        int T, int H, int K, int V, CudaCtx *cu) {
    if ((long long)B * H * T == 0) return;
    RecurArgs a = recur_args(cfg, B, T, H, K, V);
    size_t ntok = (size_t)B * T * H;
    float *ys = work, *hks = ys + ntok * K, *ws = hks + ntok * K, *ms = ws + ntok, *qds = ms + ntok;
    float *HTs = qds + ntok, *UTs = HTs + (size_t)B * H * K * K;
    float *Hs, *Us;
    recur_segment(&a, k, v, g, gk, H0, U0, &Hs, &Us, cu);
    gka_recur_bwd1_kernel<<<ceil_div((long long)B * H * a.nseg, FWD_WARPS), FWD_WARPS * 32, 0, cu->stream>>>(
        (bf16 *)dq, dalpha, ys, hks, ws, ms, qds, HTs, UTs, (const bf16 *)d_o, (const bf16 *)q, (const bf16 *)k,
        (const bf16 *)v, g, gk, alpha, Hs, Us, x, f, a);
    cudaCheckLast();
    gka_recur_bwd2_kernel<<<ceil_div((long long)B * H, BWD2_WARPS), BWD2_WARPS * 32, 0, cu->stream>>>(
        (bf16 *)dk, (bf16 *)dv, dg, dgk, dH0, dU0, ys, hks, ws, ms, qds, HTs, UTs, (const bf16 *)d_o, dHT, dUT,
        (const bf16 *)q, (const bf16 *)k, (const bf16 *)v, g, gk, alpha, H0, x, a);
    cudaCheckLast();
}
