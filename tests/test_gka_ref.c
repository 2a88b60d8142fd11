/* test_gka_ref: the float64 GKA reference (gka_core/gka/gka_ref.c) against
 *  1. every number of the worked example of spec gka.md 5.3 (exact solve and Chebyshev n = 30);
 *  2. central finite differences of the exact-solve forward, for every input (q, k, v, g, gk, alpha, H0,
 *     U0), through do, dHT and dUT, at several shapes (T = 1, K != V, rank-deficient and full-rank H_t) and
 *     with each optional input present, absent (gradient at its neutral value) or tied (g = gk);
 *  3. the Chebyshev backward with n large enough to converge fully equals the exact backward;
 *  4. state chaining: two calls joined through (HT, UT) -> (H0, U0) and (dH0, dU0) -> (dHT, dUT) equal one
 *     call, which checks dH0 / dU0 including the antisymmetric part of dH0 that a symmetric finite
 *     difference cannot see.
 * Letters: B batch, T tokens, H heads, K key dim, V value dim. Inputs follow spec 11 (tests/gka_inputs.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "gka/gka_ref.h"
#include "gka_inputs.h"

static int failures = 0;

static void check(const char *what, double err, double tol) {
    int ok = err < tol; /* NaN fails too */
    if (!ok) failures++;
    printf("  %-44s err %.3e  (tol %.0e)  %s\n", what, err, tol, ok ? "ok" : "FAIL");
}

/* max|a - b| / max|b| (b the expected values); NaN anywhere gives +Inf. */
static double max_rel(const double *a, const double *b, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i]) || !isfinite(b[i])) return INFINITY;
        num = fmax(num, fabs(a[i] - b[i]));
        den = fmax(den, fabs(b[i]));
    }
    return den > 0.0 ? num / den : num;
}

static double *dalloc(size_t n) {
    double *p = mallocCheck(sizeof(double) * (n ? n : 1));
    for (size_t i = 0; i < n; i++)
        p[i] = NAN; /* an element the code under test forgets to write fails */
    return p;
}

static double *widen(const float *x, size_t n) {
    if (!x) return NULL;
    double *d = dalloc(n);
    for (size_t i = 0; i < n; i++)
        d[i] = x[i];
    return d;
}

/* ---- 1. worked example of spec 5.3 ----------------------------------------------------------------------
 * The spec prints 10 decimals, so a value like 0.0055693961 is known only to 5e-11 absolute (9e-9 relative).
 * Pass rule per number: |got - spec| <= 1e-9 |spec| + 5e-11 (half a unit of the last printed digit). */

static double ex_worst_rel = 0.0, ex_worst_abs = 0.0;
static int ex_fail = 0;

static void ex_cmp(const char *name, int t, const double *got, const double *want, int n) {
    for (int i = 0; i < n; i++) {
        double d = fabs(got[i] - want[i]);
        if (!(d <= 1e-9 * fabs(want[i]) + 5e-11)) {
            printf("  FAIL %s t=%d [%d]: got %.12f, spec %.10f\n", name, t, i, got[i], want[i]);
            ex_fail++;
        }
        ex_worst_abs = fmax(ex_worst_abs, d);
        if (want[i] != 0.0) ex_worst_rel = fmax(ex_worst_rel, d / fabs(want[i]));
    }
}

static void test_worked_example(void) {
    printf("worked example (spec 5.3)\n");
    enum { T = 3, K = 2, V = 2 };
    const double q[T * K] = {1, 0, 0.6, 0.8, 0, 1}, k[T * K] = {0.4, 0.3, 0, 0.7, 0.6, 0};
    const double v[T * V] = {1, 2, -1, 0.5, 0.3, -0.2}, alpha[T] = {0.5, 0.7, 0.9};
    double g[T], d_o[T * V];
    for (int t = 0; t < T; t++)
        g[t] = log(0.9);
    for (int i = 0; i < T * V; i++)
        d_o[i] = 1.0;
    double o[T * V], x[T * K], f[T], HT[K * K], UT[K * V];
    GkaRefConfig ex = gka_ref_config_default(K, 1);
    gka_ref_forward(o, HT, UT, x, f, q, k, v, g, g, alpha, NULL, NULL, ex, 1, T, 1, K, V);
    const double f_w[T] = {0.25, 0.6083625564, 0.7229779042};
    const double x_w[T * K] = {74.5098039216, -94.1176470588, 3.3183254821,
                               0.7572799177,  -0.3783914423,  1.9622615553};
    const double o_w[T * V] = {0.6960149101, 1.3920298202,  0.4029637259,
                               1.7588725620, -0.6320078393, 0.9297625032};
    const double HT_w[K * K] = {0.4896, 0.0972, 0.0972, 0.5139}, UT_w[K * V] = {0.504, 0.528, -0.387, 0.801};
    for (int t = 0; t < T; t++) {
        ex_cmp("f", t + 1, f + t, f_w + t, 1);
        ex_cmp("x exact", t + 1, x + t * K, x_w + t * K, K);
        ex_cmp("o exact", t + 1, o + t * V, o_w + t * V, V);
    }
    ex_cmp("H_T", T, HT, HT_w, K * K);
    ex_cmp("U_T", T, UT, UT_w, K * V);

    double dq[T * K], dk[T * K], dv[T * V], dg[T], dgk[T], dal[T], dH0[K * K], dU0[K * V];
    gka_ref_backward(dq, dk, dv, dg, dgk, dal, dH0, dU0, d_o, NULL, NULL, q, k, v, g, g, alpha, NULL, NULL,
                     ex, 1, T, 1, K, V);
    const double dq_w[T * K] = {2.0880447303,  1.5660335477, 3.8453164863,
                                -0.1816920049, 1.3241439793, 0.2977546639};
    const double dk_w[T * K] = {-5.3682371033, -1.0231723188, -3.5862610933,
                                -1.5445176621, 0.5431701516,  -1.2803435754};
    const double dv_w[T * V] = {1.7227704314, 1.7227704314,  1.2124544037,
                                1.2124544037, -0.1444841036, -0.1444841036};
    const double dg_w[T] = {0, 3.0802665640, 0.3122030742}, dgk_w[T] = {0, -2.1474982540, -0.4386556938};
    const double dal_w[T] = {2.4790331858, 2.0620225689, 0.0055693961};
    for (int t = 0; t < T; t++) {
        ex_cmp("dq", t + 1, dq + t * K, dq_w + t * K, K);
        ex_cmp("dk", t + 1, dk + t * K, dk_w + t * K, K);
        ex_cmp("dv", t + 1, dv + t * V, dv_w + t * V, V);
        ex_cmp("dg", t + 1, dg + t, dg_w + t, 1);
        ex_cmp("dgk", t + 1, dgk + t, dgk_w + t, 1);
        ex_cmp("dalpha", t + 1, dal + t, dal_w + t, 1);
    }

    GkaRefConfig ch = gka_ref_config_default(K, 0);
    gka_ref_forward(o, NULL, NULL, x, NULL, q, k, v, g, g, alpha, NULL, NULL, ch, 1, T, 1, K, V);
    const double xc_w[K] = {74.4875408093, -94.0862877313};
    const double oc_w[T * V] = {0.6961925895, 1.3923851791,  0.4032350131,
                                1.7589459989, -0.6321016040, 0.9298557637};
    ex_cmp("x Chebyshev", 1, x, xc_w, K);
    for (int t = 0; t < T; t++)
        ex_cmp("o Chebyshev", t + 1, o + t * V, oc_w + t * V, V);
    printf("  %d numbers off; worst relative error %.2e, worst absolute error %.2e\n", ex_fail, ex_worst_rel,
           ex_worst_abs);
    check("worked example: numbers outside the rule", (double)ex_fail, 0.5);
}

/* ---- 2. finite differences ------------------------------------------------------------------------------
 */

typedef struct RefCase {
    int B, T, H, K, V;
    int gate_g, gate_gk, tied, alpha, h0, u0, final_grad;
} RefCase;

/* The operator's inputs in float64. Absent optional inputs are NULL here; `full` holds the same inputs with
 * every absent one replaced by an array of its neutral value, which finite differences perturb. */
typedef struct RefIn {
    double *q, *k, *v, *g, *gk, *alpha, *H0, *U0, *d_o, *dHT, *dUT;
} RefIn;

static double ref_loss(const RefIn *in, GkaRefConfig cfg, const RefCase *c) {
    size_t no = (size_t)c->B * c->T * c->H * c->V, nh = (size_t)c->B * c->H;
    double *o = dalloc(no), *HT = dalloc(nh * c->K * c->K), *UT = dalloc(nh * c->K * c->V);
    gka_ref_forward(o, HT, UT, NULL, NULL, in->q, in->k, in->v, in->g, in->gk, in->alpha, in->H0, in->U0, cfg,
                    c->B, c->T, c->H, c->K, c->V);
    double L = 0.0;
    for (size_t i = 0; i < no; i++)
        L += o[i] * in->d_o[i];
    if (in->dHT)
        for (size_t i = 0; i < nh * c->K * c->K; i++)
            L += HT[i] * in->dHT[i];
    if (in->dUT)
        for (size_t i = 0; i < nh * c->K * c->V; i++)
            L += UT[i] * in->dUT[i];
    free(o), free(HT), free(UT);
    return L;
}

/* Fourth-order central difference of the loss along x[i] (and x[j] too when j >= 0, for symmetric
 * perturbations): (8 (L(+h) - L(-h)) - (L(+2h) - L(-2h))) / 12h. Second order is not enough near a
 * rank-deficient H_t, where x ~ 1/(a f) makes the third derivative large (spec 9.2). */
static double fd_at(RefIn *full, double *x, size_t i, long j, GkaRefConfig cfg, const RefCase *c) {
    const double h = 1e-4;
    const double steps[4] = {h, -h, 2 * h, -2 * h};
    double x0 = x[i], y0 = j >= 0 ? x[j] : 0.0, L[4];
    for (int s = 0; s < 4; s++) {
        x[i] = x0 + steps[s];
        if (j >= 0) x[j] = y0 + steps[s];
        L[s] = ref_loss(full, cfg, c);
    }
    x[i] = x0;
    if (j >= 0) x[j] = y0;
    return (8.0 * (L[0] - L[1]) - (L[2] - L[3])) / (12.0 * h);
}

static double fd_tensor(RefIn *full, double *x, const double *an, size_t n, GkaRefConfig cfg,
                        const RefCase *c) {
    double *fd = dalloc(n);
    for (size_t i = 0; i < n; i++)
        fd[i] = fd_at(full, x, i, -1, cfg, c);
    double e = max_rel(an, fd, n);
    free(fd);
    return e;
}

/* H0 stays symmetric (the exact solve is a Cholesky): perturb (i,j) and (j,i) together, which measures the
 * symmetric part P_ij + P_ji of the general-matrix gradient P = dH0. */
static double fd_sym(RefIn *full, double *X, const double *P, int nmat, int K, GkaRefConfig cfg,
                     const RefCase *c) {
    size_t n = (size_t)nmat * K * K;
    double *fd = dalloc(n), *an = dalloc(n);
    for (int m = 0; m < nmat; m++)
        for (int i = 0; i < K; i++)
            for (int j = 0; j < K; j++) {
                size_t a = ((size_t)m * K + i) * K + j, b = ((size_t)m * K + j) * K + i;
                if (j < i) {
                    fd[a] = fd[b], an[a] = an[b]; /* filled at (j, i) */
                    continue;
                }
                fd[a] = fd_at(full, X, a, i == j ? -1 : (long)b, cfg, c);
                an[a] = i == j ? P[a] : P[a] + P[b];
            }
    double e = max_rel(an, fd, n);
    free(fd), free(an);
    return e;
}

static double *neutral(double *x, size_t n, double val) {
    if (x) return x;
    double *d = dalloc(n);
    for (size_t i = 0; i < n; i++)
        d[i] = val;
    return d;
}

static void test_fd_case(const RefCase *c, uint64_t seed) {
    int B = c->B, T = c->T, H = c->H, K = c->K, V = c->V;
    printf("finite differences B=%d T=%d H=%d K=%d V=%d g=%s gk=%s alpha=%s H0=%s U0=%s dHT/dUT=%s\n", B, T,
           H, K, V,
           c->tied     ? "tied"
           : c->gate_g ? "yes"
                       : "no",
           c->tied      ? "tied"
           : c->gate_gk ? "yes"
                        : "no",
           c->alpha ? "yes" : "no", c->h0 ? "yes" : "no", c->u0 ? "yes" : "no", c->final_grad ? "yes" : "no");
    GkaInputFlags fl = {c->gate_g, c->gate_gk, c->tied, c->alpha, c->h0 || c->u0, c->final_grad};
    GkaInputs fi = gka_inputs_make(B, T, H, K, V, fl, seed);
    size_t nt = (size_t)B * T * H, nh = (size_t)B * H, kk = (size_t)K * K, kv = (size_t)K * V;
    RefIn in = {widen(fi.q, nt * K),
                widen(fi.k, nt * K),
                widen(fi.v, nt * V),
                widen(fi.g, nt),
                NULL,
                widen(fi.alpha, nt),
                c->h0 ? widen(fi.H0, nh * kk) : NULL,
                c->u0 ? widen(fi.U0, nh * kv) : NULL,
                widen(fi.d_o, nt * V),
                widen(fi.dHT, nh * kk),
                widen(fi.dUT, nh * kv)};
    in.gk = c->tied ? in.g : widen(fi.gk, nt);
    RefIn full = in;
    full.g = neutral(in.g, nt, 0.0);
    full.gk = c->tied ? full.g : neutral(in.gk, nt, 0.0);
    full.alpha = neutral(in.alpha, nt, 1.0);
    full.H0 = neutral(in.H0, nh * kk, 0.0);
    full.U0 = neutral(in.U0, nh * kv, 0.0);

    GkaRefConfig cfg = gka_ref_config_default(K, 1);
    double *dq = dalloc(nt * K), *dk = dalloc(nt * K), *dv = dalloc(nt * V), *dg = dalloc(nt);
    double *dgk = dalloc(nt), *dal = dalloc(nt), *dH0 = dalloc(nh * kk), *dU0 = dalloc(nh * kv);
    /* the analytic gradient is taken with the absent inputs really absent (NULL) */
    gka_ref_backward(dq, dk, dv, dg, dgk, dal, dH0, dU0, in.d_o, in.dHT, in.dUT, in.q, in.k, in.v, in.g,
                     in.gk, in.alpha, in.H0, in.U0, cfg, B, T, H, K, V);
    const double tol = 1e-6;
    check("dq", fd_tensor(&full, full.q, dq, nt * K, cfg, c), tol);
    check("dk", fd_tensor(&full, full.k, dk, nt * K, cfg, c), tol);
    check("dv", fd_tensor(&full, full.v, dv, nt * V, cfg, c), tol);
    if (c->tied) {
        for (size_t i = 0; i < nt; i++)
            dg[i] += dgk[i]; /* the caller's job for a tied gate */
        check("dg + dgk (tied gate)", fd_tensor(&full, full.g, dg, nt, cfg, c), tol);
    } else {
        check(in.g ? "dg" : "dg at g = 0 (g absent)", fd_tensor(&full, full.g, dg, nt, cfg, c), tol);
        check(in.gk ? "dgk" : "dgk at gk = 0 (gk absent)", fd_tensor(&full, full.gk, dgk, nt, cfg, c), tol);
    }
    check(in.alpha ? "dalpha" : "dalpha at alpha = 1 (absent)", fd_tensor(&full, full.alpha, dal, nt, cfg, c),
          tol);
    check(in.H0 ? "dH0 (symmetric part)" : "dH0 at H0 = 0 (symmetric part)",
          fd_sym(&full, full.H0, dH0, (int)nh, K, cfg, c), tol);
    check(in.U0 ? "dU0" : "dU0 at U0 = 0", fd_tensor(&full, full.U0, dU0, nh * kv, cfg, c), tol);

    free(dq), free(dk), free(dv), free(dg), free(dgk), free(dal), free(dH0), free(dU0);
    if (full.gk != full.g) free(full.gk);
    free(full.q), free(full.k), free(full.v), free(full.g), free(full.alpha), free(full.H0), free(full.U0);
    free(full.d_o), free(full.dHT), free(full.dUT);
    gka_inputs_free(&fi);
}

/* ---- 3. Chebyshev backward, converged, equals the exact backward ------------------------------------------
 * With n = 200 the Chebyshev error bound (spec 4) is 2 q^201 ~ 1e-24 relative, so both solvers must agree to
 * rounding; this checks the Chebyshev path of the adjoint solve, which the chunked tests rely on. */
static void test_chebyshev_converged(void) {
    int B = 2, T = 20, H = 2, K = 6, V = 5;
    printf("Chebyshev n=200 backward vs exact backward, B=%d T=%d H=%d K=%d V=%d, all inputs on\n", B, T, H,
           K, V);
    GkaInputFlags fl = {1, 1, 0, 1, 1, 1};
    GkaInputs fi = gka_inputs_make(B, T, H, K, V, fl, 7);
    size_t nt = (size_t)B * T * H, nh = (size_t)B * H, kk = (size_t)K * K, kv = (size_t)K * V;
    double *q = widen(fi.q, nt * K), *k = widen(fi.k, nt * K), *v = widen(fi.v, nt * V), *g = widen(fi.g, nt);
    double *gk = widen(fi.gk, nt), *al = widen(fi.alpha, nt), *H0 = widen(fi.H0, nh * kk);
    double *U0 = widen(fi.U0, nh * kv), *d_o = widen(fi.d_o, nt * V), *dHT = widen(fi.dHT, nh * kk);
    double *dUT = widen(fi.dUT, nh * kv);
    const char *names[8] = {"dq", "dk", "dv", "dg", "dgk", "dalpha", "dH0", "dU0"};
    size_t sizes[8] = {nt * K, nt * K, nt * V, nt, nt, nt, nh * kk, nh * kv};
    double *gr[2][8];
    for (int s = 0; s < 2; s++) {
        for (int i = 0; i < 8; i++)
            gr[s][i] = dalloc(sizes[i]);
        GkaRefConfig cfg = gka_ref_config_default(K, s == 0);
        cfg.num_iter = 200;
        gka_ref_backward(gr[s][0], gr[s][1], gr[s][2], gr[s][3], gr[s][4], gr[s][5], gr[s][6], gr[s][7], d_o,
                         dHT, dUT, q, k, v, g, gk, al, H0, U0, cfg, B, T, H, K, V);
    }
    for (int i = 0; i < 8; i++) {
        char what[64];
        snprintf(what, sizeof what, "%s Chebyshev-200 vs exact", names[i]);
        check(what, max_rel(gr[1][i], gr[0][i], sizes[i]), 1e-11);
        free(gr[0][i]), free(gr[1][i]);
    }
    free(q), free(k), free(v), free(g), free(gk), free(al), free(H0), free(U0), free(d_o), free(dHT),
        free(dUT);
    gka_inputs_free(&fi);
}

/* ---- 4. state chaining ----------------------------------------------------------------------------------
 */

/* Copies tokens [t0, t0 + n) of a [B,T,H,D] (or [B,T,H] with D = 1) tensor. */
static double *slice_t(const double *x, int B, int T, int H, int D, int t0, int n) {
    if (!x) return NULL;
    double *y = dalloc((size_t)B * n * H * D);
    for (int b = 0; b < B; b++)
        memcpy(y + (size_t)b * n * H * D, x + ((size_t)b * T + t0) * H * D,
               sizeof(double) * (size_t)n * H * D);
    return y;
}

static void test_chaining(int exact) {
    int B = 2, T = 11, T1 = 4, T2 = T - T1, H = 2, K = 5, V = 3;
    printf("state chaining (%s): T=%d as %d + %d, B=%d H=%d K=%d V=%d, all inputs on\n",
           exact ? "exact" : "Chebyshev n=30", T, T1, T2, B, H, K, V);
    GkaInputFlags fl = {1, 1, 0, 1, 1, 1};
    GkaInputs fi = gka_inputs_make(B, T, H, K, V, fl, 11);
    size_t nt = (size_t)B * T * H, nh = (size_t)B * H, kk = (size_t)K * K, kv = (size_t)K * V;
    double *q = widen(fi.q, nt * K), *k = widen(fi.k, nt * K), *v = widen(fi.v, nt * V), *g = widen(fi.g, nt);
    double *gk = widen(fi.gk, nt), *al = widen(fi.alpha, nt), *H0 = widen(fi.H0, nh * kk);
    double *U0 = widen(fi.U0, nh * kv), *d_o = widen(fi.d_o, nt * V), *dHT = widen(fi.dHT, nh * kk);
    double *dUT = widen(fi.dUT, nh * kv);
    GkaRefConfig cfg = gka_ref_config_default(K, exact);
    /* one call */
    double *o = dalloc(nt * V), *HT = dalloc(nh * kk), *UT = dalloc(nh * kv);
    double *gr[8], *gc[8];
    size_t sizes[8] = {nt * K, nt * K, nt * V, nt, nt, nt, nh * kk, nh * kv};
    for (int i = 0; i < 8; i++)
        gr[i] = dalloc(sizes[i]), gc[i] = dalloc(sizes[i]);
    gka_ref_forward(o, HT, UT, NULL, NULL, q, k, v, g, gk, al, H0, U0, cfg, B, T, H, K, V);
    gka_ref_backward(gr[0], gr[1], gr[2], gr[3], gr[4], gr[5], gr[6], gr[7], d_o, dHT, dUT, q, k, v, g, gk,
                     al, H0, U0, cfg, B, T, H, K, V);
    /* two calls */
    double *part[2][7];
    int ts[2] = {0, T1}, ns[2] = {T1, T2};
    for (int p = 0; p < 2; p++) {
        part[p][0] = slice_t(q, B, T, H, K, ts[p], ns[p]), part[p][1] = slice_t(k, B, T, H, K, ts[p], ns[p]);
        part[p][2] = slice_t(v, B, T, H, V, ts[p], ns[p]), part[p][3] = slice_t(g, B, T, H, 1, ts[p], ns[p]);
        part[p][4] = slice_t(gk, B, T, H, 1, ts[p], ns[p]),
        part[p][5] = slice_t(al, B, T, H, 1, ts[p], ns[p]);
        part[p][6] = slice_t(d_o, B, T, H, V, ts[p], ns[p]);
    }
    double *o1 = dalloc(nt * V), *o2 = dalloc(nt * V), *Hm = dalloc(nh * kk), *Um = dalloc(nh * kv);
    double *HT2 = dalloc(nh * kk), *UT2 = dalloc(nh * kv), *dHm = dalloc(nh * kk), *dUm = dalloc(nh * kv);
    gka_ref_forward(o1, Hm, Um, NULL, NULL, part[0][0], part[0][1], part[0][2], part[0][3], part[0][4],
                    part[0][5], H0, U0, cfg, B, T1, H, K, V);
    gka_ref_forward(o2, HT2, UT2, NULL, NULL, part[1][0], part[1][1], part[1][2], part[1][3], part[1][4],
                    part[1][5], Hm, Um, cfg, B, T2, H, K, V);
    double *g2[8], *g1[8];
    size_t s1[6] = {(size_t)K, (size_t)K, (size_t)V, 1, 1, 1};
    for (int i = 0; i < 6; i++) {
        g1[i] = dalloc((size_t)B * T1 * H * s1[i]);
        g2[i] = dalloc((size_t)B * T2 * H * s1[i]);
    }
    g1[6] = dalloc(nh * kk), g1[7] = dalloc(nh * kv);
    gka_ref_backward(g2[0], g2[1], g2[2], g2[3], g2[4], g2[5], dHm, dUm, part[1][6], dHT, dUT, part[1][0],
                     part[1][1], part[1][2], part[1][3], part[1][4], part[1][5], Hm, Um, cfg, B, T2, H, K, V);
    gka_ref_backward(g1[0], g1[1], g1[2], g1[3], g1[4], g1[5], g1[6], g1[7], part[0][6], dHm, dUm, part[0][0],
                     part[0][1], part[0][2], part[0][3], part[0][4], part[0][5], H0, U0, cfg, B, T1, H, K, V);
    /* reassemble the chained results in [B,T,H,D] order (each call wrote its tokens at its own stride) */
    double *oc = dalloc(nt * V);
    memcpy(gc[6], g1[6], sizeof(double) * nh * kk);
    memcpy(gc[7], g1[7], sizeof(double) * nh * kv);
    for (int b = 0; b < B; b++) {
        for (int i = 0; i < 6; i++) {
            size_t D = s1[i], r1 = (size_t)T1 * H * D, r2 = (size_t)T2 * H * D, row = (size_t)T * H * D;
            memcpy(gc[i] + b * row, g1[i] + b * r1, sizeof(double) * r1);
            memcpy(gc[i] + b * row + r1, g2[i] + b * r2, sizeof(double) * r2);
        }
        size_t r1 = (size_t)T1 * H * V, r2 = (size_t)T2 * H * V, row = (size_t)T * H * V;
        memcpy(oc + b * row, o1 + b * r1, sizeof(double) * r1);
        memcpy(oc + b * row + r1, o2 + b * r2, sizeof(double) * r2);
    }
    const double tol = 1e-12;
    check("o chained vs one call", max_rel(oc, o, nt * V), tol);
    check("H_T chained vs one call", max_rel(HT2, HT, nh * kk), tol);
    check("U_T chained vs one call", max_rel(UT2, UT, nh * kv), tol);
    const char *names[8] = {"dq", "dk", "dv", "dg", "dgk", "dalpha", "dH0 (full matrix)", "dU0"};
    for (int i = 0; i < 8; i++) {
        char what[64];
        snprintf(what, sizeof what, "%s chained vs one call", names[i]);
        check(what, max_rel(gc[i], gr[i], sizes[i]), tol);
    }
    for (int i = 0; i < 8; i++)
        free(gr[i]), free(gc[i]), free(g1[i]);
    for (int i = 0; i < 6; i++)
        free(g2[i]);
    for (int p = 0; p < 2; p++)
        for (int i = 0; i < 7; i++)
            free(part[p][i]);
    free(o), free(HT), free(UT), free(o1), free(o2), free(oc), free(Hm), free(Um), free(HT2), free(UT2);
    free(dHm), free(dUm);
    free(q), free(k), free(v), free(g), free(gk), free(al), free(H0), free(U0), free(d_o), free(dHT),
        free(dUT);
    gka_inputs_free(&fi);
}

int main(void) {
    double t0 = gk_now();
    test_worked_example();
    /* B, T, H, K, V, g, gk, tied, alpha, H0, U0, dHT/dUT */
    const RefCase cases[] = {
        {1, 1, 1, 3, 2, 0, 0, 1, 1, 0, 0, 0}, /* T = 1, tied gate */
        {1, 1, 2, 4, 4, 1, 1, 0, 1, 1, 1, 1}, /* T = 1, everything on, separate gates */
        {2, 5, 2, 4, 3, 0, 0, 1, 1, 1, 1, 1}, /* K != V, tied, states in and out */
        {1, 9, 1, 3, 5, 1, 0, 0, 0, 0, 1, 0}, /* g only, alpha absent, U0 only, full-rank H_t */
        {2, 6, 1, 5, 2, 0, 1, 0, 1, 1, 0, 1}, /* gk only, H0 only, rank-deficient H_t (T < K at first) */
        {1, 7, 2, 4, 4, 0, 0, 0, 0, 0, 0, 0}, /* no optional input at all */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        test_fd_case(&cases[i], 100 + i);
    test_chebyshev_converged();
    test_chaining(1);
    test_chaining(0);
    printf("gka_ref tests: %d failed (%.2f s)\n", failures, gk_now() - t0);
    return failures ? 1 : 0;
}
