/* gka_recur_cpu.c: the GKA core operator in token-recurrent form, float32: the CPU twin of the CUDA
 * kernels in gka_recur.cu, step for step.
 *
 * Letters: B batch, T tokens, H heads, K key/query dim, V value dim, n Chebyshev iterations, a ridge ratio,
 * s readout scale. Per (sequence, head) the states H_t (K x K) and U_t (K x V) are carried token by token
 * (spec gka.md 5.1); every token's ridge system is solved with its own H_t. For small K (vision: K = 32,
 * T <= 196) this is about 4C/K times less arithmetic than the chunked form, in full float32.
 *
 * Backward (spec 5.2), in two passes so that no state is ever run backwards in time:
 *  pass 1, forward in time (H_t, U_t recomputed): dq~ = s U_t do, dalpha, dx = alpha dq~, the adjoint solve
 *    y = A_t^-1 dx (reusing the forward's f_t), dq, and per token: w_t = 2a (y.x)/f_t, hk_t = H_t k_t and
 *    m_t = <M_t, H_t> = -y^T H_t x - (w_t/2) f_t^2, where M_t = -y x^T - (w_t/2) H_t is the direct adjoint of H_t.
 *  pass 2, backward in time, with the adjoint of H_t written as P_t = Qd_t - Lambda_t/2:
 *    Qd_t = -y_t x_t^T + e^{gk_{t+1}} Qd_{t+1}                 (direct path; starts from dH_T)
 *    Lambda_t = sum_{s>=t} D_{s,t} w_s H_s = omega_t H_t + Psi_t  (lambda path), with the scalar
 *    omega_t = w_t + e^{2 gk_{t+1}} omega_{t+1} and Psi_{t-1} = e^{gk_t} (Psi_t + omega_t k_t k_t^T),
 *    so Lambda_t k_t = omega_t hk_t + Psi_t k_t needs H_t only through hk_t from pass 1 (derived:
 *    expand H_s = D_{s,t} H_t + sum_{t<j<=s} D_{s,j} k_j k_j^T). dg and dgk use the closed forms of
 *    spec 5.2: dg_t = sum_{s>=t} [q~_s.dq~_s - k_s.dk^U_s] + <dU_T, U_T>,
 *    dgk_t = sum_{s>=t} [m_s - k_s.dk^H_s / 2] + <dH_T, H_T>.
 *  dH_0 = Qd_0 - (omega_0 H_0 + Psi_0)/2, dU_0 = R_0.
 * Gradients are written (=). g and gk are per-token log-decays; when the caller passes the same array for
 * dg and dgk (one gate for both states) it receives dg + dgk there. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "gka_recur.h"

void gka_chebyshev_omegas(float *omega, int n, float ridge) {
    double rho = 1.0 / (1.0 + 2.0 * ridge), r = rho * rho / 4.0, w = 2.0;
    for (int i = 0; i < n; i++) {
        w = 1.0 / (1.0 - r * w);
        omega[i] = (float)w;
    }
}

/* x = Chebyshev solve of (Hm + ridge f I) x = rhs (spec 4); Hm is K x K row-major; omega precomputed. */
static void cheb_solve(float *x, float *xp, float *res, const float *Hm, const float *rhs, float f,
                       const GkaOpConfig *cfg, const float *omega, int K) {
    float lam = cfg->ridge * f, step = 2.0f / ((1.0f + 2.0f * cfg->ridge) * f);
    for (int i = 0; i < K; i++) xp[i] = 0.0f, x[i] = step * rhs[i];
    for (int it = 0; it < cfg->num_iter; it++) {
        float w = omega[it];
        for (int i = 0; i < K; i++) {
            float acc = lam * x[i] - rhs[i];
            for (int j = 0; j < K; j++) acc += Hm[i * K + j] * x[j];
            res[i] = acc;
        }
        for (int i = 0; i < K; i++) {
            float xn = x[i] - step * w * res[i] + (w - 1.0f) * (x[i] - xp[i]);
            xp[i] = x[i];
            x[i] = xn;
        }
    }
}

static float frob(const float *Hm, int K) {
    double s = 0.0;
    for (int i = 0; i < K * K; i++) s += (double)Hm[i] * Hm[i];
    return (float)sqrt(s);
}

/* Index helpers: token t of sequence b, head h, in [B, T, H, D] and [B, T, H] layouts. */
#define TOK(b, t, h, D) ((((size_t)(b) * T + (t)) * H + (h)) * (D))
#define SCL(b, t, h) (((size_t)(b) * T + (t)) * H + (h))

void gka_recur_forward_cpu(float *o, float *HT, float *UT, float *xs, float *fs, const float *q, const float *k,
                           const float *v, const float *g, const float *gk, const float *alpha, const float *H0,
                           const float *U0, GkaOpConfig cfg, int B, int T, int H, int K, int V) {
    float *omega = mallocCheck(sizeof(float) * (size_t)(cfg.num_iter + 1));
    gka_chebyshev_omegas(omega, cfg.num_iter, cfg.ridge);
#pragma omp parallel for collapse(2) schedule(dynamic)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            float *Hm = mallocCheck(sizeof(float) * (size_t)(K * K + K * V + 4 * K));
            float *Um = Hm + K * K, *x = Um + K * V, *xp = x + K, *res = xp + K, *qt = res + K;
            size_t st = ((size_t)b * H + h);
            if (H0) memcpy(Hm, H0 + st * K * K, sizeof(float) * K * K);
            else memset(Hm, 0, sizeof(float) * K * K);
            if (U0) memcpy(Um, U0 + st * K * V, sizeof(float) * K * V);
            else memset(Um, 0, sizeof(float) * K * V);
            for (int t = 0; t < T; t++) {
                const float *qv = q + TOK(b, t, h, K), *kv = k + TOK(b, t, h, K), *vv = v + TOK(b, t, h, V);
                float dk = gk ? expf(gk[SCL(b, t, h)]) : 1.0f, dv = g ? expf(g[SCL(b, t, h)]) : 1.0f;
                for (int i = 0; i < K; i++)
                    for (int j = 0; j < K; j++) Hm[i * K + j] = dk * Hm[i * K + j] + kv[i] * kv[j];
                for (int i = 0; i < K; i++)
                    for (int j = 0; j < V; j++) Um[i * V + j] = dv * Um[i * V + j] + kv[i] * vv[j];
                float f = fmaxf(frob(Hm, K), GKA_MIN_FROB);
                cheb_solve(x, xp, res, Hm, qv, f, &cfg, omega, K);
                float al = alpha ? alpha[SCL(b, t, h)] : 1.0f;
                for (int i = 0; i < K; i++) qt[i] = qv[i] + al * (x[i] - qv[i]);
                float *ov = o + TOK(b, t, h, V);
                for (int j = 0; j < V; j++) {
                    float acc = 0.0f;
                    for (int i = 0; i < K; i++) acc += Um[i * V + j] * qt[i];
                    ov[j] = cfg.scale * acc;
                }
                if (xs) memcpy(xs + TOK(b, t, h, K), x, sizeof(float) * K);
                if (fs) fs[SCL(b, t, h)] = f;
            }
            if (HT) memcpy(HT + st * K * K, Hm, sizeof(float) * K * K);
            if (UT) memcpy(UT + st * K * V, Um, sizeof(float) * K * V);
            free(Hm);
        }
    free(omega);
}

size_t gka_recur_workspace_floats(int B, int T, int H, int K, int V) {
    size_t ntok = (size_t)B * T * H;
    /* y, H_t k_t, w, m, q~.dq~ per token; then the CPU twin's final states or the CUDA twin's dk^U */
    size_t tail = (size_t)B * H * K * (K + V), dku = ntok * (size_t)K;
    return ntok * (2 * (size_t)K + 3) + (tail > dku ? tail : dku);
}

void gka_recur_backward_cpu(float *dq, float *dk, float *dv, float *dg, float *dgk, float *dalpha, float *dH0,
                            float *dU0, float *work, const float *d_o, const float *dHT, const float *dUT,
                            const float *q, const float *k, const float *v, const float *g, const float *gk,
                            const float *alpha, const float *H0, const float *U0, const float *xs, const float *fs,
                            GkaOpConfig cfg, int B, int T, int H, int K, int V) {
    float *omega = mallocCheck(sizeof(float) * (size_t)(cfg.num_iter + 1));
    gka_chebyshev_omegas(omega, cfg.num_iter, cfg.ridge);
    size_t ntok = (size_t)B * T * H;
    /* what pass 1 hands to pass 2, per token: y, H_t k_t, w, m, q~.dq~; and the final states */
    float *ys = work, *hks = ys + ntok * K, *ws = hks + ntok * K, *ms = ws + ntok, *qds = ms + ntok;
    float *HTs = qds + ntok, *UTs = HTs + (size_t)B * H * K * K;

    /* ---- pass 1: forward in time ---- */
#pragma omp parallel for collapse(2) schedule(dynamic)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            float *Hm = mallocCheck(sizeof(float) * (size_t)(K * K + K * V + 6 * K));
            float *Um = Hm + K * K, *y = Um + K * V, *yp = y + K, *res = yp + K, *dx = res + K, *hx = dx + K;
            float *dqt = hx + K;
            size_t st = ((size_t)b * H + h);
            if (H0) memcpy(Hm, H0 + st * K * K, sizeof(float) * K * K);
            else memset(Hm, 0, sizeof(float) * K * K);
            if (U0) memcpy(Um, U0 + st * K * V, sizeof(float) * K * V);
            else memset(Um, 0, sizeof(float) * K * V);
            for (int t = 0; t < T; t++) {
                size_t ti = TOK(b, t, h, K), si = SCL(b, t, h);
                const float *qv = q + ti, *kv = k + ti, *vv = v + TOK(b, t, h, V), *xv = xs + ti;
                const float *dov = d_o + TOK(b, t, h, V);
                float dkk = gk ? expf(gk[si]) : 1.0f, dvv = g ? expf(g[si]) : 1.0f;
                for (int i = 0; i < K; i++)
                    for (int j = 0; j < K; j++) Hm[i * K + j] = dkk * Hm[i * K + j] + kv[i] * kv[j];
                for (int i = 0; i < K; i++)
                    for (int j = 0; j < V; j++) Um[i * V + j] = dvv * Um[i * V + j] + kv[i] * vv[j];
                float f = fs[si], al = alpha ? alpha[si] : 1.0f;
                float qd = 0.0f, da = 0.0f;
                for (int i = 0; i < K; i++) {
                    float acc = 0.0f;
                    for (int j = 0; j < V; j++) acc += Um[i * V + j] * dov[j];
                    dqt[i] = cfg.scale * acc;
                    float qt = qv[i] + al * (xv[i] - qv[i]);
                    qd += qt * dqt[i];
                    da += dqt[i] * (xv[i] - qv[i]);
                    dx[i] = al * dqt[i];
                }
                cheb_solve(y, yp, res, Hm, dx, f, &cfg, omega, K);
                float c = 0.0f, yhx = 0.0f;
                for (int i = 0; i < K; i++) {
                    float hk = 0.0f, hxi = 0.0f;
                    for (int j = 0; j < K; j++) hk += Hm[i * K + j] * kv[j], hxi += Hm[i * K + j] * xv[j];
                    hks[ti + i] = hk;
                    hx[i] = hxi;
                    c += y[i] * xv[i];
                    yhx += y[i] * hxi;
                    if (dq) dq[ti + i] = (alpha ? (1.0f - al) * dqt[i] : 0.0f) + y[i];
                    ys[ti + i] = y[i];
                }
                float w = 2.0f * cfg.ridge * c / f;
                ws[si] = w;
                ms[si] = -yhx - 0.5f * w * f * f;
                qds[si] = qd;
                if (dalpha) dalpha[si] = da;
            }
            memcpy(HTs + st * K * K, Hm, sizeof(float) * K * K);
            memcpy(UTs + st * K * V, Um, sizeof(float) * K * V);
            free(Hm);
        }

    /* ---- pass 2: backward in time ---- */
#pragma omp parallel for collapse(2) schedule(dynamic)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            float *R = mallocCheck(sizeof(float) * (size_t)(K * V + 2 * K * K + 4 * K));
            float *Qd = R + K * V, *Psi = Qd + K * K, *lk = Psi + K * K, *dku = lk + K, *dkh = dku + K, *qt = dkh + K;
            size_t st = ((size_t)b * H + h);
            double gsum = 0.0, gksum = 0.0;
            if (dUT) {
                memcpy(R, dUT + st * K * V, sizeof(float) * K * V);
                for (int i = 0; i < K * V; i++) gsum += (double)R[i] * UTs[st * K * V + i];
            } else {
                memset(R, 0, sizeof(float) * K * V);
            }
            if (dHT) {
                memcpy(Qd, dHT + st * K * K, sizeof(float) * K * K);
                for (int i = 0; i < K * K; i++) gksum += (double)Qd[i] * HTs[st * K * K + i];
            } else {
                memset(Qd, 0, sizeof(float) * K * K);
            }
            memset(Psi, 0, sizeof(float) * K * K);
            float om_carry = 0.0f;
            for (int t = T - 1; t >= 0; t--) {
                size_t ti = TOK(b, t, h, K), si = SCL(b, t, h);
                const float *qv = q + ti, *kv = k + ti, *vv = v + TOK(b, t, h, V), *xv = xs + ti, *yv = ys + ti;
                const float *dov = d_o + TOK(b, t, h, V);
                float al = alpha ? alpha[si] : 1.0f;
                for (int i = 0; i < K; i++) qt[i] = qv[i] + al * (xv[i] - qv[i]);
                for (int i = 0; i < K; i++)
                    for (int j = 0; j < V; j++) R[i * V + j] += cfg.scale * qt[i] * dov[j];
                for (int i = 0; i < K; i++)
                    for (int j = 0; j < K; j++) Qd[i * K + j] -= yv[i] * xv[j];
                float om = ws[si] + om_carry;
                float kdku = 0.0f, kdkh = 0.0f;
                for (int i = 0; i < K; i++) {
                    float pk = 0.0f, ru = 0.0f, qk = 0.0f, qtk = 0.0f;
                    for (int j = 0; j < K; j++) {
                        pk += Psi[i * K + j] * kv[j];
                        qk += Qd[i * K + j] * kv[j];
                        qtk += Qd[j * K + i] * kv[j];
                    }
                    for (int j = 0; j < V; j++) ru += R[i * V + j] * vv[j];
                    lk[i] = om * hks[ti + i] + pk;
                    dku[i] = ru;
                    dkh[i] = qk + qtk - lk[i];
                    kdku += kv[i] * dku[i];
                    kdkh += kv[i] * dkh[i];
                }
                if (dk)
                    for (int i = 0; i < K; i++) dk[ti + i] = dku[i] + dkh[i];
                if (dv)
                    for (int j = 0; j < V; j++) {
                        float acc = 0.0f;
                        for (int i = 0; i < K; i++) acc += R[i * V + j] * kv[i];
                        dv[TOK(b, t, h, V) + j] = acc;
                    }
                gsum += (double)qds[si] - kdku;
                gksum += (double)ms[si] - 0.5 * kdkh;
                if (dg && dg == dgk) { /* one gate for both states: its gradient is the sum */
                    dg[si] = (float)gsum + (float)gksum;
                } else {
                    if (dg) dg[si] = (float)gsum;
                    if (dgk) dgk[si] = (float)gksum;
                }
                /* carry to token t-1 */
                float dvv = g ? expf(g[si]) : 1.0f, dkk = gk ? expf(gk[si]) : 1.0f;
                for (int i = 0; i < K * V; i++) R[i] *= dvv;
                for (int i = 0; i < K; i++)
                    for (int j = 0; j < K; j++) {
                        Qd[i * K + j] *= dkk;
                        Psi[i * K + j] = dkk * (Psi[i * K + j] + om * kv[i] * kv[j]);
                    }
                om_carry = dkk * dkk * om;
            }
            if (dU0) memcpy(dU0 + st * K * V, R, sizeof(float) * K * V);
            if (dH0)
                for (int i = 0; i < K * K; i++)
                    dH0[st * K * K + i] = Qd[i] - 0.5f * (om_carry * (H0 ? H0[st * K * K + i] : 0.0f) + Psi[i]);
            free(R);
        }
    free(omega);
}
