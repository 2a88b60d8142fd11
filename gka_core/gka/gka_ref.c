/* gka_ref.c: the GKA core operator in float64, token by token (spec gka.md 5.1 forward, 5.2 backward): the
 * reference for every other implementation. Written for clarity and exactness, not speed: per (sequence,
 * head) the K x K state H_t and the K x V state U_t are carried token by token and every token's ridge
 * system is solved on its own, by Cholesky (exact) or by the n-step Chebyshev iteration of spec 4.
 *
 * Letters: B batch, T tokens, H heads, K key/query dim, V value dim, n Chebyshev iterations, a ridge ratio,
 * s readout scale, S checkpoint interval of the backward (tokens).
 * The one decision to know: the backward recomputes the states. It keeps H and U only every S = ceil(sqrt T)
 * tokens and re-runs each S-token segment forward before walking it backward, so memory is
 * O((T/S + S)(K^2 + KV)) per head instead of O(T (K^2 + KV)), and no state is ever run backwards in time
 * (dividing by e^{g} would amplify rounding). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "gka_ref.h"

GkaRefConfig gka_ref_config_default(int K, int exact) {
    GkaRefConfig c = {0.02, 30, 1.0 / sqrt((double)K), exact, 0};
    return c;
}

GkaRefConfig gka_ref_config_from_op(GkaOpConfig cfg, int exact) {
    GkaRefConfig c = {(double)cfg.ridge, cfg.num_iter, (double)cfg.scale, exact, 0};
    return c;
}

/* ---- per-token building blocks ---------------------------------------------------------------------- *
 * One (sequence, head) at one token: H is K x K, U is K x V, both row-major; n = cfg->num_iter. */

/* Offsets of token t of sequence b, head h, in [B,T,H,D] and [B,T,H]. */
#define TOK(b, t, h, D) ((((size_t)(b)*T + (size_t)(t)) * H + (size_t)(h)) * (size_t)(D))
#define SCL(b, t, h) (((size_t)(b)*T + (size_t)(t)) * H + (size_t)(h))

/* H <- e^{gk} H + k k^T and U <- e^{g} U + k v^T (spec 5.1 a, b). */
static void ref_state_step(double *Hm, double *Um, const double *kt, const double *vt, double dkk, double dvv,
                           int K, int V) {
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j++)
            Hm[i * K + j] = dkk * Hm[i * K + j] + kt[i] * kt[j];
    for (int i = 0; i < K; i++)
        for (int j = 0; j < V; j++)
            Um[i * V + j] = dvv * Um[i * V + j] + kt[i] * vt[j];
}

/* f = ||H||_F, clamped below by GKA_MIN_FROB like every other implementation (spec 9.4). */
static double ref_frob(const double *Hm, int K) {
    double s = 0.0;
    for (int i = 0; i < K * K; i++)
        s += Hm[i] * Hm[i];
    double f = sqrt(s);
    return f > (double)GKA_MIN_FROB ? f : (double)GKA_MIN_FROB;
}

/* The omega sequence of spec 4 in float64: omega[i] is omega after loop iteration i + 1. */
static void ref_omegas(double *omega, int n, double ridge) {
    double rho = 1.0 / (1.0 + 2.0 * ridge), r = rho * rho / 4.0, w = 2.0;
    for (int i = 0; i < n; i++) {
        w = 1.0 / (1.0 - r * w);
        omega[i] = w;
    }
}

/* x = (Hm + a f I)^-1 rhs. work holds K*K + 2K doubles.
 * Exact: Cholesky of the symmetric positive definite A (only the lower triangle of Hm is read).
 * Chebyshev: spec 4 exactly, x_prev = 0, x = step rhs, then n steps with the common omega sequence
 * (with cfg->f32_iterate the iterate is rounded to float32 after each step). */
static void ref_solve(double *x, double *work, const double *Hm, double f, const double *rhs,
                      const GkaRefConfig *cfg, const double *omega, int K) {
    double lam = cfg->ridge * f;
    if (cfg->exact) {
        double *L = work;
        for (int i = 0; i < K; i++)
            for (int j = 0; j <= i; j++) {
                double s = Hm[i * K + j] + (i == j ? lam : 0.0);
                for (int p = 0; p < j; p++)
                    s -= L[i * K + p] * L[j * K + p];
                if (i == j) {
                    GK_CHECK(s > 0.0,
                             "gka_ref: H_t + lambda I is not positive definite (pivot %g at %d): "
                             "H0 must be symmetric positive semi-definite",
                             s, i);
                    L[i * K + i] = sqrt(s);
                } else {
                    L[i * K + j] = s / L[j * K + j];
                }
            }
        for (int i = 0; i < K; i++) { /* L z = rhs */
            double s = rhs[i];
            for (int p = 0; p < i; p++)
                s -= L[i * K + p] * x[p];
            x[i] = s / L[i * K + i];
        }
        for (int i = K - 1; i >= 0; i--) { /* L^T x = z */
            double s = x[i];
            for (int p = i + 1; p < K; p++)
                s -= L[p * K + i] * x[p];
            x[i] = s / L[i * K + i];
        }
        return;
    }
    double *xp = work, *res = work + K;
    double step = 2.0 / ((1.0 + 2.0 * cfg->ridge) * f);
    for (int i = 0; i < K; i++)
        xp[i] = 0.0, x[i] = cfg->f32_iterate ? (double)(float)(step * rhs[i]) : step * rhs[i];
    for (int it = 0; it < cfg->num_iter; it++) {
        double w = omega[it];
        for (int i = 0; i < K; i++) {
            double acc = lam * x[i] - rhs[i];
            for (int j = 0; j < K; j++)
                acc += Hm[i * K + j] * x[j];
            res[i] = acc;
        }
        for (int i = 0; i < K; i++) {
            double xn = x[i] - step * w * res[i] + (w - 1.0) * (x[i] - xp[i]);
            xp[i] = x[i];
            x[i] = cfg->f32_iterate ? (double)(float)xn : xn;
        }
    }
}

static void ref_load_state(double *dst, const double *src, size_t off, size_t n) {
    if (src)
        memcpy(dst, src + off, sizeof(double) * n);
    else
        memset(dst, 0, sizeof(double) * n);
}

/* ---- forward (spec 5.1) ------------------------------------------------------------------------------ *
 * B sequences x H heads in parallel, each a loop over its T tokens; K key dim, V value dim. */

void gka_ref_forward(double *o, double *HT, double *UT, double *x, double *f, const double *q,
                     const double *k, const double *v, const double *g, const double *gk, const double *alpha,
                     const double *H0, const double *U0, GkaRefConfig cfg, int B, int T, int H, int K,
                     int V) {
    double *omega = mallocCheck(sizeof(double) * (size_t)(cfg.num_iter + 1));
    ref_omegas(omega, cfg.num_iter, cfg.ridge);
#pragma omp parallel for collapse(2) schedule(dynamic)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            size_t kk = (size_t)K * K, kv = (size_t)K * V, st = (size_t)b * H + h;
            double *Hm = mallocCheck(sizeof(double) * (2 * kk + kv + 4 * (size_t)K));
            double *Um = Hm + kk, *work = Um + kv, *xt = work + kk + 2 * K, *qt = xt + K;
            ref_load_state(Hm, H0, st * kk, kk);
            ref_load_state(Um, U0, st * kv, kv);
            for (int t = 0; t < T; t++) {
                const double *qv = q + TOK(b, t, h, K);
                size_t si = SCL(b, t, h);
                ref_state_step(Hm, Um, k + TOK(b, t, h, K), v + TOK(b, t, h, V), gk ? exp(gk[si]) : 1.0,
                               g ? exp(g[si]) : 1.0, K, V);
                double ft = ref_frob(Hm, K);
                ref_solve(xt, work, Hm, ft, qv, &cfg, omega, K);
                double al = alpha ? alpha[si] : 1.0;
                for (int i = 0; i < K; i++)
                    qt[i] = qv[i] + al * (xt[i] - qv[i]);
                if (o) {
                    double *ov = o + TOK(b, t, h, V);
                    for (int j = 0; j < V; j++) {
                        double acc = 0.0;
                        for (int i = 0; i < K; i++)
                            acc += Um[i * V + j] * qt[i];
                        ov[j] = cfg.scale * acc;
                    }
                }
                if (x) memcpy(x + TOK(b, t, h, K), xt, sizeof(double) * K);
                if (f) f[si] = ft;
            }
            if (HT) memcpy(HT + st * kk, Hm, sizeof(double) * kk);
            if (UT) memcpy(UT + st * kv, Um, sizeof(double) * kv);
            free(Hm);
        }
    free(omega);
}

/* ---- backward (spec 5.2) ------------------------------------------------------------------------------ *
 * B sequences x H heads in parallel; per head the T tokens are walked in reverse, S at a time.
 * P is the adjoint of H_t and R that of U_t, both walked from t = T down to 1:
 *   R += s q~_t do_t^T;  dq~ = s U_t do_t;  dalpha = dq~.(x - q);  dx = alpha dq~;  dq = (1 - alpha) dq~
 *   y = A_t^-1 dx;  dq += y;  c = y.x;  P += -y x^T - a (c / f) H_t
 *   dv = R^T k;  dk = R v + (P + P^T) k;  dg = e^{g} <R, U_{t-1}>;  dgk = e^{gk} <P, H_{t-1}>
 *   R *= e^{g};  P *= e^{gk}
 * and dU0 = R, dH0 = P at the end. */

void gka_ref_backward(double *dq, double *dk, double *dv, double *dg, double *dgk, double *dalpha,
                      double *dH0, double *dU0, const double *d_o, const double *dHT, const double *dUT,
                      const double *q, const double *k, const double *v, const double *g, const double *gk,
                      const double *alpha, const double *H0, const double *U0, GkaRefConfig cfg, int B, int T,
                      int H, int K, int V) {
    double *omega = mallocCheck(sizeof(double) * (size_t)(cfg.num_iter + 1));
    ref_omegas(omega, cfg.num_iter, cfg.ridge);
    int S = (int)ceil(sqrt((double)(T > 0 ? T : 1)));
    int nseg = (T + S - 1) / S;
#pragma omp parallel for collapse(2) schedule(dynamic)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++) {
            size_t kk = (size_t)K * K, kv = (size_t)K * V, st = (size_t)b * H + h, sz = kk + kv;
            /* checkpoints: state (H, U) before token sS, for segments s; seg: the S + 1 states of one segment
             */
            double *ck = mallocCheck(sizeof(double) * sz * (size_t)(nseg > 0 ? nseg : 1));
            double *seg = mallocCheck(sizeof(double) * sz * (size_t)(S + 1));
            double *xs = mallocCheck(sizeof(double) * ((size_t)T * (2 * (size_t)K + 1) + 1));
            double *qts = xs + (size_t)T * K, *fs = qts + (size_t)T * K;
            double *P = mallocCheck(sizeof(double) * (2 * kk + kv + 6 * (size_t)K));
            double *R = P + kk, *work = R + kv, *y = work + kk + 2 * K, *dqt = y + K, *dx = dqt + K,
                   *tmp = dx + K;
            double *Hm = seg, *Um = seg + kk;
            ref_load_state(Hm, H0, st * kk, kk);
            ref_load_state(Um, U0, st * kv, kv);
            /* forward sweep: checkpoints, x_t, q~_t, f_t */
            for (int t = 0; t < T; t++) {
                if (t % S == 0) memcpy(ck + (size_t)(t / S) * sz, seg, sizeof(double) * sz);
                const double *qv = q + TOK(b, t, h, K);
                size_t si = SCL(b, t, h);
                ref_state_step(Hm, Um, k + TOK(b, t, h, K), v + TOK(b, t, h, V), gk ? exp(gk[si]) : 1.0,
                               g ? exp(g[si]) : 1.0, K, V);
                fs[t] = ref_frob(Hm, K);
                double *xt = xs + (size_t)t * K, *qt = qts + (size_t)t * K, al = alpha ? alpha[si] : 1.0;
                ref_solve(xt, work, Hm, fs[t], qv, &cfg, omega, K);
                for (int i = 0; i < K; i++)
                    qt[i] = qv[i] + al * (xt[i] - qv[i]);
            }
            ref_load_state(P, dHT, st * kk, kk);
            ref_load_state(R, dUT, st * kv, kv);
            for (int s = nseg - 1; s >= 0; s--) {
                int t0 = s * S, t1 = t0 + S < T ? t0 + S : T;
                memcpy(seg, ck + (size_t)s * sz, sizeof(double) * sz);
                for (int t = t0; t < t1; t++) { /* seg[i] = states after token t0 + i - 1 */
                    double *cur = seg + (size_t)(t - t0 + 1) * sz;
                    memcpy(cur, cur - sz, sizeof(double) * sz);
                    size_t si = SCL(b, t, h);
                    ref_state_step(cur, cur + kk, k + TOK(b, t, h, K), v + TOK(b, t, h, V),
                                   gk ? exp(gk[si]) : 1.0, g ? exp(g[si]) : 1.0, K, V);
                }
                for (int t = t1 - 1; t >= t0; t--) {
                    const double *Ht = seg + (size_t)(t - t0 + 1) * sz, *Ut = Ht + kk;
                    const double *Hp = Ht - sz, *Up = Hp + kk;
                    size_t si = SCL(b, t, h), ti = TOK(b, t, h, K);
                    const double *qv = q + ti, *kt = k + ti, *vt = v + TOK(b, t, h, V);
                    const double *dov = d_o + TOK(b, t, h, V), *xt = xs + (size_t)t * K;
                    const double *qt = qts + (size_t)t * K;
                    double al = alpha ? alpha[si] : 1.0, ft = fs[t];
                    for (int i = 0; i < K; i++)
                        for (int j = 0; j < V; j++)
                            R[i * V + j] += cfg.scale * qt[i] * dov[j];
                    double da = 0.0;
                    for (int i = 0; i < K; i++) {
                        double acc = 0.0;
                        for (int j = 0; j < V; j++)
                            acc += Ut[i * V + j] * dov[j];
                        dqt[i] = cfg.scale * acc;
                        da += dqt[i] * (xt[i] - qv[i]);
                        dx[i] = al * dqt[i];
                    }
                    ref_solve(y, work, Ht, ft, dx, &cfg, omega, K);
                    double c = 0.0;
                    for (int i = 0; i < K; i++)
                        c += y[i] * xt[i];
                    double lam_coef = cfg.ridge * c / ft;
                    for (int i = 0; i < K; i++)
                        for (int j = 0; j < K; j++)
                            P[i * K + j] += -y[i] * xt[j] - lam_coef * Ht[i * K + j];
                    if (dalpha) dalpha[si] = da;
                    if (dq)
                        for (int i = 0; i < K; i++)
                            dq[ti + i] = (1.0 - al) * dqt[i] + y[i];
                    if (dv)
                        for (int j = 0; j < V; j++) {
                            double acc = 0.0;
                            for (int i = 0; i < K; i++)
                                acc += R[i * V + j] * kt[i];
                            dv[TOK(b, t, h, V) + j] = acc;
                        }
                    if (dk) {
                        for (int i = 0; i < K; i++) {
                            double acc = 0.0;
                            for (int j = 0; j < V; j++)
                                acc += R[i * V + j] * vt[j];
                            for (int j = 0; j < K; j++)
                                acc += (P[i * K + j] + P[j * K + i]) * kt[j];
                            tmp[i] = acc;
                        }
                        memcpy(dk + ti, tmp, sizeof(double) * K);
                    }
                    double eg = g ? exp(g[si]) : 1.0, egk = gk ? exp(gk[si]) : 1.0;
                    if (dg) {
                        double acc = 0.0;
                        for (size_t i = 0; i < kv; i++)
                            acc += R[i] * Up[i];
                        dg[si] = eg * acc;
                    }
                    if (dgk) {
                        double acc = 0.0;
                        for (size_t i = 0; i < kk; i++)
                            acc += P[i] * Hp[i];
                        dgk[si] = egk * acc;
                    }
                    for (size_t i = 0; i < kv; i++)
                        R[i] *= eg;
                    for (size_t i = 0; i < kk; i++)
                        P[i] *= egk;
                }
            }
            if (dH0) memcpy(dH0 + st * kk, P, sizeof(double) * kk);
            if (dU0) memcpy(dU0 + st * kv, R, sizeof(double) * kv);
            free(ck), free(seg), free(xs), free(P);
        }
    free(omega);
}
