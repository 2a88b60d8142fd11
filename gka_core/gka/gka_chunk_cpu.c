/* gka_chunk_cpu.c: the GKA core operator in chunk-wise form (spec gka.md sections 6 and 7), float32 on the
 * CPU, structured step for step as the CUDA twin runs it: one static function per step of the spec's tables
 * (F1-F5 forward, B1-B9 backward), each a loop over independent (batch, head[, chunk]) programs.
 *
 * Letters: B batch, T tokens, H heads, K key/query dim, V value dim, C chunk length, NT = ceil(T/C) chunks,
 * n Chebyshev iterations, a ridge ratio, s readout scale. Inside a chunk, rows i, j, t = 0..C-1 are local
 * token indices; nc <= C rows are valid (the last chunk may be partial).
 *
 * Precision, the decision to know: everything is float32, storage and accumulation alike, with no double
 * anywhere. Every sum is a float accumulator walked in a fixed order, as a GPU kernel's fp32 accumulator
 * would be (the CUDA plan keeps Hc, Uc, the iterate X and every product accumulator in fp32 too). The only
 * double arithmetic is the host-side omega table (gka_chebyshev_omegas), rounded once to float.
 *
 * Partial chunks: invalid rows load q = k = v = do = 0, get f := 1 (spec 6.2), are masked out of every decay
 * matrix and are never stored; "last" always means the last VALID row of the chunk.
 *
 * Scratch (allocated per call with mallocCheck, freed before returning), in floats, with BTH = B*T*H:
 *   forward: Gk, Gv: BTH each; Hc: B*H*(NT+1)*K*K; Uc: B*H*(NT+1)*K*V; q~: BTH*K; x, f when the caller passes
 *     NULL: BTH*K + BTH.
 *   backward: the forward's Gk, Gv, Hc, Uc, q~, plus R (adjoint of U per chunk end): B*H*NT*K*V;
 *     Q and Z per chunk: 2*B*H*NT*K*K; dq~, dx, y, dk^(U), dk^(H): 5*BTH*K; dG: BTH.
 *   per thread, the tiles of the largest step: at most 10CK + 5CV + 5C^2 + 2K^2 + 2KV + 8C.
 * For B = 1, T = 1000, H = 1, K = V = 128 that is about 8 MB. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "core.h"
#include "gka_chunk.h"

typedef GkaChunkDims Dims;

/* ---- small helpers ------------------------------------------------------------------------------------- *
 * Tiles are row-major [C, D] blocks of one chunk of one (sequence, head): C rows (tokens), D = K or V. */

static int thread_id(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static float *falloc(size_t n) {
    return (float *)mallocCheck(sizeof(float) * (n ? n : 1));
}

/* Offsets of token t of sequence b, head h, in [B,T,H,D] and [B,T,H]. */
static size_t tok(const Dims *d, int b, int t, int h, int D) {
    return (((size_t)b * d->T + (size_t)t) * d->H + (size_t)h) * (size_t)D;
}
static size_t scl(const Dims *d, int b, int t, int h) {
    return ((size_t)b * d->T + (size_t)t) * d->H + (size_t)h;
}

static int chunk_rows(const Dims *d, int c) {
    int t0 = c * d->C;
    return d->T - t0 < d->C ? d->T - t0 : d->C;
}

/* Rows t0..t0+nc-1 of (b, h) of a [B,T,H,D] tensor into a [C,D] tile; the rest (and all, if src is NULL) is
 * `fill`. */
static void load_tile(float *tile, const float *src, const Dims *d, int b, int h, int t0, int nc, int D,
                      float fill) {
    for (int i = 0; i < d->C; i++) {
        float *row = tile + (size_t)i * D;
        if (src && i < nc)
            memcpy(row, src + tok(d, b, t0 + i, h, D), sizeof(float) * D);
        else
            for (int j = 0; j < D; j++)
                row[j] = fill;
    }
}

static void store_tile(float *dst, const float *tile, const Dims *d, int b, int h, int t0, int nc, int D) {
    for (int i = 0; i < nc; i++)
        memcpy(dst + tok(d, b, t0 + i, h, D), tile + (size_t)i * D, sizeof(float) * D);
}

/* The chunk's per-row scalars (G, f, alpha) into [C], `fill` past nc or when src is NULL. */
static void load_col(float *col, const float *src, const Dims *d, int b, int h, int t0, int nc, float fill) {
    for (int i = 0; i < d->C; i++)
        col[i] = (src && i < nc) ? src[scl(d, b, t0 + i, h)] : fill;
}

/* Cm[M,N] (= or +=) A[M,P] Bm[P,N], float accumulation in order p = 0..P-1. Zero entries of A are skipped:
 * the masked decay matrices are half zeros, and skipping an exact zero changes no finite result. */
static void mm_nn(float *Cm, const float *A, const float *Bm, int M, int N, int P, int acc) {
    for (int i = 0; i < M; i++) {
        float *c = Cm + (size_t)i * N;
        if (!acc) memset(c, 0, sizeof(float) * N);
        for (int p = 0; p < P; p++) {
            float a = A[(size_t)i * P + p];
            if (a == 0.0f) continue;
            const float *bp = Bm + (size_t)p * N;
            for (int j = 0; j < N; j++)
                c[j] += a * bp[j];
        }
    }
}

/* Cm[M,N] (= or +=) A[R,M]^T Bm[R,N]: sum over rows r of outer products, in order r = 0..R-1. */
static void mm_tn(float *Cm, const float *A, const float *Bm, int R, int M, int N, int acc) {
    if (!acc) memset(Cm, 0, sizeof(float) * (size_t)M * N);
    for (int r = 0; r < R; r++)
        for (int i = 0; i < M; i++) {
            float a = A[(size_t)r * M + i];
            if (a == 0.0f) continue;
            float *c = Cm + (size_t)i * N;
            const float *br = Bm + (size_t)r * N;
            for (int j = 0; j < N; j++)
                c[j] += a * br[j];
        }
}

/* Dst[N,M] = Src[M,N]^T: lets every product above run with a contiguous inner loop. */
static void transpose(float *Dst, const float *Src, int M, int N) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++)
            Dst[(size_t)j * M + i] = Src[(size_t)i * N + j];
}

static float dot(const float *a, const float *b, int n) {
    float s = 0.0f;
    for (int i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

/* Decays of one chunk from its chunk-local cumulative log-decay G[C] (0 past nc):
 * Gam[i,j] = e^{G_i - G_j} for j <= i < nc, else 0 ("from token j to token i"); gh[i] = e^{G_i} (decay of the
 * chunk-start state to row i); l[j] = e^{G_last - G_j} (decay of row j to the chunk end). */
static void chunk_decays(float *Gam, float *gh, float *l, const float *G, int C, int nc) {
    for (int i = 0; i < C; i++) {
        for (int j = 0; j < C; j++)
            Gam[(size_t)i * C + j] = (j <= i && i < nc) ? expf(G[i] - G[j]) : 0.0f;
        gh[i] = i < nc ? expf(G[i]) : 0.0f;
        l[i] = i < nc ? expf(G[nc - 1] - G[i]) : 0.0f;
    }
}

/* ---- forward (spec 6) --------------------------------------------------------------------------------- *
 * F1-F5 over B sequences x H heads, each cut into NT chunks of C tokens (the last may be partial); K key dim,
 * V value dim, n = cfg.num_iter Chebyshev iterations, a = cfg.ridge, s = cfg.scale. */

/* F1: chunk-local cumulative sum of a per-token log-decay (g or gk): G_t = sum of g over the tokens of t's
 * chunk up to and including t. Natural log, as [H] does (fla's 1/ln 2 scaling is the same math). */
static void f1_chunk_local_cumsum(float *G, const float *g, const Dims *d) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->H; h++)
            for (int c = 0; c < d->NT; c++) {
                float acc = 0.0f;
                for (int i = 0, t0 = c * d->C; i < chunk_rows(d, c); i++) {
                    acc += g[scl(d, b, t0 + i, h)];
                    G[scl(d, b, t0 + i, h)] = acc;
                }
            }
}

/* Per-thread floats of f2_chunk_states. */
static size_t f2_scratch(const Dims *d, int D) {
    return 2 * (size_t)d->C * d->K + (size_t)d->C * D + 2 * (size_t)d->C;
}

/* F2: chunk-boundary states, fla's generic chunk_fwd_h: S[c] is the state at the start of chunk c, c = 0..NT
 * (S[NT] is the final state), S[0] = S0 (or 0) and
 *   S[c+1] = e^{G_last(c)} S[c] + sum_{j in c} e^{G_last - G_j} k_j w_j^T      (w = vals, rows of width D).
 * F2 proper is vals := k, G := Gk (key states Hc, [B,H,NT+1,K,K]); F5 reuses it with vals := v, G := Gv
 * (value states Uc, [B,H,NT+1,K,V]). Sequential over chunks, parallel over (b, h). */
static void f2_chunk_states(float *S, float *ST, const float *k, const float *vals, const float *G,
                            const float *S0, int D, const Dims *d, float *scratch) {
    int C = d->C, K = d->K;
    size_t ss = (size_t)K * D, per = f2_scratch(d, D);
#pragma omp parallel for collapse(2) schedule(dynamic)
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->H; h++) {
            float *kl = scratch + per * (size_t)thread_id(), *kt = kl + (size_t)C * K,
                  *wt = kt + (size_t)C * K;
            float *Gc = wt + (size_t)C * D, *lj = Gc + C;
            float *Sb = S + ((size_t)b * d->H + h) * (size_t)(d->NT + 1) * ss;
            if (S0)
                memcpy(Sb, S0 + ((size_t)b * d->H + h) * ss, sizeof(float) * ss);
            else
                memset(Sb, 0, sizeof(float) * ss);
            for (int c = 0; c < d->NT; c++) {
                int t0 = c * C, nc = chunk_rows(d, c);
                load_tile(kt, k, d, b, h, t0, nc, K, 0.0f);
                load_tile(wt, vals, d, b, h, t0, nc, D, 0.0f);
                load_col(Gc, G, d, b, h, t0, nc, 0.0f);
                float decay = expf(Gc[nc - 1]);
                for (int j = 0; j < C; j++) {
                    lj[j] = j < nc ? expf(Gc[nc - 1] - Gc[j]) : 0.0f;
                    for (int p = 0; p < K; p++)
                        kl[(size_t)j * K + p] = lj[j] * kt[(size_t)j * K + p];
                }
                float *cur = Sb + (size_t)c * ss, *nxt = cur + ss;
                for (size_t i = 0; i < ss; i++)
                    nxt[i] = decay * cur[i];
                mm_tn(nxt, kl, wt, C, K, D, 1);
            }
            if (ST) memcpy(ST + ((size_t)b * d->H + h) * ss, Sb + (size_t)d->NT * ss, sizeof(float) * ss);
        }
}

/* F3: the chunked Chebyshev solve (spec 6.2), one program per (chunk, head): X = A^-1 RHS for the chunk's C
 * rows in lockstep, with A_t = H_t + a f_t I and H_t = gh_t Hc + sum_{j<=t} Gam_tj k_j k_j^T never formed:
 *   R = diag(gh) X Hc + ((X K^T) o Gam) K + diag(lambda) X - RHS
 * then x_new = x - step omega R + (omega - 1)(x - x_prev) per row (spec 4; common omega, per-row step).
 * f_in == NULL (forward): f_t = ||H_t||_F by the formula of 6.2, written to f_out:
 *   f^2 = rowsum((Gam (KK o KK)) o Gam) + gh^2 ||Hc||_F^2 + 2 gh o (Gam d),  KK = K K^T, d_j = k_j^T Hc k_j.
 * f_in != NULL (backward B4, adjoint solve): f is read, so the adjoint system is bit for bit the forward's.
 */
static void f3_chunk_solve(float *X, float *f_out, const float *f_in, const float *rhs, const float *k,
                           const float *Gk, const float *Hc, const float *omega, GkaOpConfig cfg,
                           const Dims *d, float *scratch, size_t per) {
    int C = d->C, K = d->K, n_items = d->B * d->H * d->NT;
    float a = cfg.ridge;
#pragma omp parallel for schedule(dynamic)
    for (int item = 0; item < n_items; item++) {
        int c = item % d->NT, h = (item / d->NT) % d->H, b = item / (d->NT * d->H);
        int t0 = c * C, nc = chunk_rows(d, c);
        float *Qt = scratch + per * (size_t)thread_id(), *Kt = Qt + (size_t)C * K, *KtT = Kt + (size_t)C * K;
        float *Xc = KtT + (size_t)C * K, *Xp = Xc + (size_t)C * K, *Rr = Xp + (size_t)C * K;
        float *Gam = Rr + (size_t)C * K, *P = Gam + (size_t)C * C, *M2 = P + (size_t)C * C;
        float *G = M2 + (size_t)C * C, *gh = G + C, *l = gh + C, *fc = l + C, *lam = fc + C, *step = lam + C;
        const float *Hcc = Hc + (((size_t)b * d->H + h) * (size_t)(d->NT + 1) + c) * (size_t)K * K;
        load_tile(Qt, rhs, d, b, h, t0, nc, K, 0.0f);
        load_tile(Kt, k, d, b, h, t0, nc, K, 0.0f);
        load_col(G, Gk, d, b, h, t0, nc, 0.0f);
        transpose(KtT, Kt, C, K);
        chunk_decays(Gam, gh, l, G, C, nc);
        if (!f_in) {
            mm_nn(P, Kt, KtT, C, C, K, 0); /* KK */
            for (size_t i = 0; i < (size_t)C * C; i++)
                P[i] *= P[i];
            mm_nn(M2, Gam, P, C, C, C, 0); /* Gam (KK o KK) */
            float hn2 = dot(Hcc, Hcc, K * K);
            mm_nn(Rr, Kt, Hcc, C, K, K, 0); /* rows k_j^T Hc */
            float *dj = lam;                /* lam is free until the norms are done */
            for (int j = 0; j < C; j++)
                dj[j] = dot(Rr + (size_t)j * K, Kt + (size_t)j * K, K);
            for (int i = 0; i < C; i++) {
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
        } else {
            load_col(fc, f_in, d, b, h, t0, nc, 1.0f);
        }
        for (int i = 0; i < C; i++) {
            lam[i] = a * fc[i];
            step[i] = 2.0f / ((1.0f + 2.0f * a) * fc[i]);
            for (int p = 0; p < K; p++) {
                Xp[(size_t)i * K + p] = 0.0f;
                Xc[(size_t)i * K + p] = step[i] * Qt[(size_t)i * K + p];
            }
        }
        for (int it = 0; it < cfg.num_iter; it++) {
            float w = omega[it];
            mm_nn(Rr, Xc, Hcc, C, K, K, 0); /* X Hc: Hc is symmetric, so row i is (Hc x_i)^T */
            for (int i = 0; i < C; i++)
                for (int p = 0; p < K; p++)
                    Rr[(size_t)i * K + p] *= gh[i];
            mm_nn(P, Xc, KtT, C, C, K, 0); /* X K^T */
            for (size_t i = 0; i < (size_t)C * C; i++)
                P[i] *= Gam[i];
            mm_nn(Rr, P, Kt, C, K, C, 1);
            for (int i = 0; i < C; i++) {
                float *r = Rr + (size_t)i * K, *x = Xc + (size_t)i * K, *xp = Xp + (size_t)i * K;
                const float *qr = Qt + (size_t)i * K;
                float sw = step[i] * w;
                for (int p = 0; p < K; p++) {
                    float res = r[p] + lam[i] * x[p] - qr[p];
                    float xn = x[p] - sw * res + (w - 1.0f) * (x[p] - xp[p]);
                    xp[p] = x[p];
                    x[p] = xn;
                }
            }
        }
        store_tile(X, Xc, d, b, h, t0, nc, K);
        if (f_out)
            for (int i = 0; i < nc; i++)
                f_out[scl(d, b, t0 + i, h)] = fc[i];
    }
}

static size_t f3_scratch(const Dims *d) {
    return 6 * (size_t)d->C * d->K + 3 * (size_t)d->C * d->C + 6 * (size_t)d->C;
}

/* F4: q~ = q + alpha (x - q), elementwise (alpha absent: q~ = x). */
static void f4_blend(float *qt, const float *q, const float *x, const float *alpha, const Dims *d) {
    size_t ntok = (size_t)d->B * d->T * d->H;
#pragma omp parallel for schedule(static)
    for (size_t s = 0; s < ntok; s++) {
        float al = alpha ? alpha[s] : 1.0f;
        for (int i = 0; i < d->K; i++) {
            size_t e = s * (size_t)d->K + i;
            qt[e] = q[e] + al * (x[e] - q[e]);
        }
    }
}

/* F5: the simple-GLA readout in chunk form (spec 6.3), one program per (chunk, head), from the value states
 * Uc = F2 with (v, Gv):
 *   o_i = s ( e^{Gv_i} Uc[c]^T q~_i + sum_{j<=i} e^{Gv_i - Gv_j} (q~_i . k_j) v_j ),
 * i.e. O = s ( diag(e^{Gv}) Q~ Uc + ((Q~ K^T) o Ab) V ). */
static void f5_readout(float *o, const float *qt, const float *k, const float *v, const float *Gv,
                       const float *Uc, float scale, const Dims *d, float *scratch, size_t per) {
    int C = d->C, K = d->K, V = d->V, n_items = d->B * d->H * d->NT;
#pragma omp parallel for schedule(dynamic)
    for (int item = 0; item < n_items; item++) {
        int c = item % d->NT, h = (item / d->NT) % d->H, b = item / (d->NT * d->H);
        int t0 = c * C, nc = chunk_rows(d, c);
        float *Qt = scratch + per * (size_t)thread_id(), *KtT = Qt + (size_t)C * K, *Kt = KtT + (size_t)C * K;
        float *Vt = Kt + (size_t)C * K, *Ot = Vt + (size_t)C * V, *Ab = Ot + (size_t)C * V,
              *A = Ab + (size_t)C * C;
        float *G = A + (size_t)C * C, *gh = G + C, *l = gh + C;
        const float *Ucc = Uc + (((size_t)b * d->H + h) * (size_t)(d->NT + 1) + c) * (size_t)K * V;
        load_tile(Qt, qt, d, b, h, t0, nc, K, 0.0f);
        load_tile(Kt, k, d, b, h, t0, nc, K, 0.0f);
        load_tile(Vt, v, d, b, h, t0, nc, V, 0.0f);
        load_col(G, Gv, d, b, h, t0, nc, 0.0f);
        chunk_decays(Ab, gh, l, G, C, nc);
        transpose(KtT, Kt, C, K);
        mm_nn(A, Qt, KtT, C, C, K, 0);
        for (size_t i = 0; i < (size_t)C * C; i++)
            A[i] *= Ab[i];
        mm_nn(Ot, A, Vt, C, V, C, 0);
        for (int i = 0; i < C; i++)
            for (int p = 0; p < K; p++)
                Qt[(size_t)i * K + p] *= gh[i]; /* Q~ scaled in place: no longer needed */
        mm_nn(Ot, Qt, Ucc, C, V, K, 1);
        for (size_t i = 0; i < (size_t)C * V; i++)
            Ot[i] *= scale;
        store_tile(o, Ot, d, b, h, t0, nc, V);
    }
}

static size_t f5_scratch(const Dims *d) {
    return 3 * (size_t)d->C * d->K + 2 * (size_t)d->C * d->V + 2 * (size_t)d->C * d->C + 3 * (size_t)d->C;
}

GkaChunkDims gka_chunk_dims(const char *op, GkaOpConfig cfg, int B, int T, int H, int K, int V) {
    GK_CHECK(B >= 1 && T >= 1 && H >= 1 && K >= 1 && V >= 1, "%s: sizes B=%d T=%d H=%d K=%d V=%d must be >= 1",
             op, B, T, H, K, V);
    GK_CHECK(cfg.chunk >= 1 && cfg.num_iter >= 0 && cfg.ridge > 0.0f,
             "%s: needs chunk >= 1, num_iter >= 0, ridge > 0 (got %d, %d, %g)", op, cfg.chunk, cfg.num_iter,
             (double)cfg.ridge);
    GkaChunkDims d = {B, T, H, K, V, cfg.chunk, (T + cfg.chunk - 1) / cfg.chunk};
    return d;
}

static size_t max_sz(size_t a, size_t b) {
    return a > b ? a : b;
}

void gka_chunk_forward_cpu(float *o, float *HT, float *UT, float *x, float *f, const float *q, const float *k,
                           const float *v, const float *g, const float *gk, const float *alpha,
                           const float *H0, const float *U0, GkaOpConfig cfg, int B, int T, int H, int K,
                           int V) {
    Dims d = gka_chunk_dims("gka_chunk_forward_cpu", cfg, B, T, H, K, V);
    size_t ntok = (size_t)B * T * H, nst = (size_t)B * H * (size_t)(d.NT + 1);
    int nth = gk_cpu_threads();
    size_t per = max_sz(max_sz(f2_scratch(&d, K), f2_scratch(&d, V)), max_sz(f3_scratch(&d), f5_scratch(&d)));
    float *scratch = falloc(per * (size_t)nth);
    float *Gk = gk ? falloc(ntok) : NULL, *Gv = g ? falloc(ntok) : NULL;
    float *Hc = falloc(nst * K * K), *Uc = falloc(nst * K * V), *qt = falloc(ntok * K);
    float *xs = x ? x : falloc(ntok * K), *fs = f ? f : falloc(ntok);
    float *omega = falloc((size_t)cfg.num_iter);
    gka_chebyshev_omegas(omega, cfg.num_iter, cfg.ridge);

    if (gk) f1_chunk_local_cumsum(Gk, gk, &d);
    if (g) f1_chunk_local_cumsum(Gv, g, &d);
    f2_chunk_states(Hc, HT, k, k, Gk, H0, K, &d, scratch);
    f3_chunk_solve(xs, fs, NULL, q, k, Gk, Hc, omega, cfg, &d, scratch, f3_scratch(&d));
    f4_blend(qt, q, xs, alpha, &d);
    f2_chunk_states(Uc, UT, k, v, Gv, U0, V, &d, scratch);
    if (o) f5_readout(o, qt, k, v, Gv, Uc, cfg.scale, &d, scratch, f5_scratch(&d));

    if (!x) free(xs);
    if (!f) free(fs);
    free(scratch), free(Gk), free(Gv), free(Hc), free(Uc), free(qt), free(omega);
}

/* ---- backward (spec 7) ----------------------------------------------------------------------------------
 * B1-B9 with the letters of the forward (B, H, NT chunks of C tokens, K, V, n, a, s). Loss L = sum(o * do) +
 * sum(HT * dHT) + sum(UT * dUT). Adjoints: R of U, P of H; at a chunk end both split into what later chunks
 * send back (R_c; Q_c - Lam/2 for H, 7.2-7.3) and what the chunk's own rows add. */

/* B1: the readout (simple GLA) backward in chunk form (spec 7.4), in two parts.
 * Scan, per (b, h), sequential over chunks: R_c (adjoint of U at the END of chunk c from later chunks):
 *   Racc := dUT; for c = NT-1..0: R_c := Racc; Racc := e^{Gv_last} Racc + s sum_i e^{Gv_i} q~_i do_i^T;
 *   dU0 := Racc.
 * Per (chunk, head), with Ab_ij = e^{Gv_i - Gv_j} (j <= i), l_j = e^{Gv_last - Gv_j}:
 *   dq~_i    = s e^{Gv_i} Uc do_i + s sum_{j<=i} Ab_ij (do_i.v_j) k_j
 *   dk^(U)_j = s sum_{i>=j} Ab_ij (do_i.v_j) q~_i + l_j R_c v_j
 *   dv_j     = s sum_{i>=j} Ab_ij (q~_i.k_j) do_i + l_j R_c^T k_j
 *   dg_t     = sum_{s>=t, s in chunk} [q~_s.dq~_s - k_s.dk^(U)_s] + <R_c, Uc[c+1]>.
 * The last term replaces spec 7.4's reverse sum over all later tokens plus <dUT, UT>: both are the gradient
 * of L with respect to a common shift of every Gv after chunk c, and <R_c, U_end(c)> is that gradient read at
 * the chunk boundary (derived; it equals e^{g} <R, U_{t-1}> of spec 5.2 step 11 at the next chunk's first
 * token). It keeps dg a chunk-local computation instead of a sequence-long float sum. */
static void b1_readout_backward(float *dqt, float *dkU, float *dv, float *dg, float *dU0, float *Rc,
                                const float *d_o, const float *dUT, const float *qt, const float *k,
                                const float *v, const float *Gv, const float *Uc, float scale, const Dims *d,
                                float *scratch, size_t per) {
    int C = d->C, K = d->K, V = d->V, NT = d->NT;
    size_t kv = (size_t)K * V;
#pragma omp parallel for collapse(2) schedule(dynamic)
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->H; h++) {
            float *Qs = scratch + per * (size_t)thread_id(), *dOt = Qs + (size_t)C * K,
                  *G = dOt + (size_t)C * V;
            float *Racc = G + C;
            float *Rb = Rc + ((size_t)b * d->H + h) * (size_t)NT * kv;
            if (dUT)
                memcpy(Racc, dUT + ((size_t)b * d->H + h) * kv, sizeof(float) * kv);
            else
                memset(Racc, 0, sizeof(float) * kv);
            for (int c = NT - 1; c >= 0; c--) {
                int t0 = c * C, nc = chunk_rows(d, c);
                memcpy(Rb + (size_t)c * kv, Racc, sizeof(float) * kv);
                load_tile(Qs, qt, d, b, h, t0, nc, K, 0.0f);
                load_tile(dOt, d_o, d, b, h, t0, nc, V, 0.0f);
                load_col(G, Gv, d, b, h, t0, nc, 0.0f);
                for (int i = 0; i < nc; i++) {
                    float e = scale * expf(G[i]);
                    for (int p = 0; p < K; p++)
                        Qs[(size_t)i * K + p] *= e;
                }
                float decay = expf(G[nc - 1]);
                for (size_t i = 0; i < kv; i++)
                    Racc[i] *= decay;
                mm_tn(Racc, Qs, dOt, C, K, V, 1);
            }
            if (dU0) memcpy(dU0 + ((size_t)b * d->H + h) * kv, Racc, sizeof(float) * kv);
        }

    int n_items = d->B * d->H * NT;
#pragma omp parallel for schedule(dynamic)
    for (int item = 0; item < n_items; item++) {
        int c = item % NT, h = (item / NT) % d->H, b = item / (NT * d->H);
        int t0 = c * C, nc = chunk_rows(d, c);
        float *Qt = scratch + per * (size_t)thread_id(), *Kt = Qt + (size_t)C * K, *KtT = Kt + (size_t)C * K;
        float *Kl = KtT + (size_t)C * K, *dQ = Kl + (size_t)C * K, *dK = dQ + (size_t)C * K;
        float *Vt = dK + (size_t)C * K, *VtT = Vt + (size_t)C * V, *Vl = VtT + (size_t)C * V;
        float *dOt = Vl + (size_t)C * V, *dV = dOt + (size_t)C * V, *UcT = dV + (size_t)C * V,
              *RcT = UcT + kv;
        float *Ab = RcT + kv, *A1 = Ab + (size_t)C * C, *A2 = A1 + (size_t)C * C, *G = A2 + (size_t)C * C;
        float *gh = G + C, *l = gh + C;
        size_t sidx = ((size_t)b * d->H + h) * (size_t)(NT + 1) + c;
        const float *Ucc = Uc + sidx * kv, *Unext = Ucc + kv;
        const float *Rcc = Rc + (((size_t)b * d->H + h) * (size_t)NT + c) * kv;
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
        for (int j = 0; j < C; j++) {
            for (int p = 0; p < K; p++)
                Kl[(size_t)j * K + p] = l[j] * Kt[(size_t)j * K + p];
            for (int e = 0; e < V; e++)
                Vl[(size_t)j * V + e] = l[j] * Vt[(size_t)j * V + e];
        }
        mm_nn(A1, Qt, KtT, C, C, K, 0);  /* q~_i . k_j */
        mm_nn(A2, dOt, VtT, C, C, V, 0); /* do_i . v_j */
        for (size_t i = 0; i < (size_t)C * C; i++)
            A1[i] *= Ab[i], A2[i] *= Ab[i];
        /* dq~ = s (diag(gh) dO Uc^T + A2 K) */
        mm_nn(dQ, dOt, UcT, C, K, V, 0);
        for (int i = 0; i < C; i++)
            for (int p = 0; p < K; p++)
                dQ[(size_t)i * K + p] *= gh[i];
        mm_nn(dQ, A2, Kt, C, K, C, 1);
        for (size_t i = 0; i < (size_t)C * K; i++)
            dQ[i] *= scale;
        /* dk^(U) = s A2^T Q~ + diag(l) V Rc^T */
        mm_tn(dK, A2, Qt, C, C, K, 0);
        for (size_t i = 0; i < (size_t)C * K; i++)
            dK[i] *= scale;
        mm_nn(dK, Vl, RcT, C, K, V, 1);
        /* dv = s A1^T dO + diag(l) K Rc */
        if (dv) {
            mm_tn(dV, A1, dOt, C, C, V, 0);
            for (size_t i = 0; i < (size_t)C * V; i++)
                dV[i] *= scale;
            mm_nn(dV, Kl, Rcc, C, V, K, 1);
            store_tile(dv, dV, d, b, h, t0, nc, V);
        }
        store_tile(dqt, dQ, d, b, h, t0, nc, K);
        store_tile(dkU, dK, d, b, h, t0, nc, K);
        if (dg) {
            float acc = dot(Rcc, Unext, (int)kv);
            for (int t = nc - 1; t >= 0; t--) {
                acc += dot(Qt + (size_t)t * K, dQ + (size_t)t * K, K) -
                       dot(Kt + (size_t)t * K, dK + (size_t)t * K, K);
                dg[scl(d, b, t0 + t, h)] = acc;
            }
        }
    }
}

static size_t b1_scratch(const Dims *d) {
    size_t C = (size_t)d->C, K = (size_t)d->K, V = (size_t)d->V;
    return max_sz(6 * C * K + 5 * C * V + 2 * K * V + 3 * C * C + 3 * C, C * K + C * V + C + K * V);
}

/* B2: backward of q~ = q + alpha (x - q), per token: dalpha = dq~.(x - q); dx = alpha dq~; dq = (1 - alpha)
 * dq~ (alpha absent: dx = dq~, dq = 0). dq is written here and completed by B4 (dq += y). */
static void b2_blend_backward(float *dx, float *dq, float *dalpha, const float *dqt, const float *x,
                              const float *q, const float *alpha, const Dims *d) {
    size_t ntok = (size_t)d->B * d->T * d->H;
#pragma omp parallel for schedule(static)
    for (size_t s = 0; s < ntok; s++) {
        float al = alpha ? alpha[s] : 1.0f, da = 0.0f;
        for (int i = 0; i < d->K; i++) {
            size_t e = s * (size_t)d->K + i;
            da += dqt[e] * (x[e] - q[e]);
            dx[e] = al * dqt[e];
            if (dq) dq[e] = (1.0f - al) * dqt[e];
        }
        if (dalpha) dalpha[s] = da;
    }
}

/* B5: direct-path adjoint scan (spec 7.2), per (b, h), sequential over chunks:
 *   Qacc := dHT; for c = NT-1..0: Q_c := Qacc; Qacc := e^{Gk_last} Qacc - sum_{i in c} e^{Gk_i} y_i x_i^T;
 *   dH0^dir := Qacc.
 * Q_c is the direct-path adjoint of the state at the END of chunk c ([B,H,NT,K,K]). */
static void b5_direct_adjoint_scan(float *Qc, float *dH0dir, const float *y, const float *x, const float *Gk,
                                   const float *dHT, const Dims *d, float *scratch, size_t per) {
    int C = d->C, K = d->K, NT = d->NT;
    size_t kk = (size_t)K * K;
#pragma omp parallel for collapse(2) schedule(dynamic)
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->H; h++) {
            float *Ys = scratch + per * (size_t)thread_id(), *Xt = Ys + (size_t)C * K,
                  *G = Xt + (size_t)C * K;
            float *Qacc = G + C, *Qb = Qc + ((size_t)b * d->H + h) * (size_t)NT * kk;
            if (dHT)
                memcpy(Qacc, dHT + ((size_t)b * d->H + h) * kk, sizeof(float) * kk);
            else
                memset(Qacc, 0, sizeof(float) * kk);
            for (int c = NT - 1; c >= 0; c--) {
                int t0 = c * C, nc = chunk_rows(d, c);
                memcpy(Qb + (size_t)c * kk, Qacc, sizeof(float) * kk);
                load_tile(Ys, y, d, b, h, t0, nc, K, 0.0f);
                load_tile(Xt, x, d, b, h, t0, nc, K, 0.0f);
                load_col(G, Gk, d, b, h, t0, nc, 0.0f);
                for (int i = 0; i < nc; i++) {
                    float e = -expf(G[i]);
                    for (int p = 0; p < K; p++)
                        Ys[(size_t)i * K + p] *= e;
                }
                float decay = expf(G[nc - 1]);
                for (size_t i = 0; i < kk; i++)
                    Qacc[i] *= decay;
                mm_tn(Qacc, Ys, Xt, C, K, K, 1);
            }
            if (dH0dir) memcpy(dH0dir + ((size_t)b * d->H + h) * kk, Qacc, sizeof(float) * kk);
        }
}

static size_t b5_scratch(const Dims *d) {
    return 2 * (size_t)d->C * d->K + d->C + (size_t)d->K * d->K;
}

/* B6: per-chunk terms of the key-state backward (spec 7.3), one program per (chunk, head). With E = Gam^T
 * (E_jt = e^{G_t - G_j} for j <= t: "token j feeds H_t"), gh_t = e^{G_t}, l_j = e^{G_last - G_j}, Hc = Hc[c],
 * Q = Q_c from B5 and the per-row lambda weight w_t = 2 a (y_t.x_t) / f_t:
 *   w1_j = sum_{t>=j} E_jt gh_t w_t;   W2 = E diag(w) E^T;
 *   tau_j = sum_l W2_jl (k_j.k_l) k_l + w1_j Hc k_j        (= sum_{t>=j} E_jt w_t H_t k_j)
 *   Z_c = (sum_t gh_t^2 w_t) Hc + sum_j w1_j k_j k_j^T      (= sum_t gh_t w_t H_t; to the B7 scan)
 *   dk^(H)_j = - sum_{t>=j} E_jt [(k_j.x_t) y_t + (k_j.y_t) x_t] - tau_j + l_j (Q + Q^T) k_j
 *   dG_j = - sum_{i<j} E_ij (k_i.y_j)(k_i.x_j) + sum_{t>j} E_jt (k_j.y_t)(k_j.x_t) - gh_j (y_j^T Hc x_j)
 *          - a (y_j.x_j) f_j + 1/2 k_j.tau_j - l_j k_j^T Q k_j + [j = last] <Q, H_[c+1]>
 * (the i = j and t = j terms of the two double sums cancel exactly and are left out of both). dG is the
 * gradient with respect to the chunk-local cumulative decay G_j; B7 adds the inter-chunk lambda path, B8
 * turns it into dgk. */
static void b6_chunk_terms(float *dkH, float *dG, float *Zc, const float *k, const float *x, const float *y,
                           const float *f, const float *Gk, const float *Hc, const float *Qc, float ridge,
                           const Dims *d, float *scratch, size_t per) {
    int C = d->C, K = d->K, NT = d->NT, n_items = d->B * d->H * NT;
    size_t kk = (size_t)K * K, CK = (size_t)C * K, CC = (size_t)C * C;
#pragma omp parallel for schedule(dynamic)
    for (int item = 0; item < n_items; item++) {
        int c = item % NT, h = (item / NT) % d->H, b = item / (NT * d->H);
        int t0 = c * C, nc = chunk_rows(d, c);
        float *Kt = scratch + per * (size_t)thread_id(), *KtT = Kt + CK, *Xt = KtT + CK, *XtT = Xt + CK;
        float *Yt = XtT + CK, *YtT = Yt + CK, *Kw = YtT + CK, *dK = Kw + CK, *T1 = dK + CK, *T2 = T1 + CK;
        float *Gam = T2 + CK, *E = Gam + CC, *KX = E + CC, *KY = KX + CC, *W2 = KY + CC;
        float *Qs = W2 + CC, *Z = Qs + kk, *G = Z + kk, *gh = G + C, *l = gh + C, *fc = l + C, *w = fc + C;
        float *w1 = w + C, *dGc = w1 + C;
        size_t hidx = ((size_t)b * d->H + h) * (size_t)(NT + 1) + c;
        const float *Hcc = Hc + hidx * kk, *Hnext = Hcc + kk;
        const float *Q = Qc + (((size_t)b * d->H + h) * (size_t)NT + c) * kk;
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
        for (int t = 0; t < C; t++)
            w[t] = t < nc ? 2.0f * ridge * dot(Yt + (size_t)t * K, Xt + (size_t)t * K, K) / fc[t] : 0.0f;
        mm_nn(KX, Kt, XtT, C, C, K, 0); /* k_j . x_t */
        mm_nn(KY, Kt, YtT, C, C, K, 0); /* k_j . y_t */

        /* the two double sums of dG (before KX, KY are masked in place) */
        for (int j = 0; j < C; j++)
            dGc[j] = 0.0f;
        for (int j = 0; j < nc; j++)
            for (int t = j + 1; t < nc; t++) {
                float dd = E[(size_t)j * C + t] * KY[(size_t)j * C + t] * KX[(size_t)j * C + t];
                dGc[j] += dd; /* + sum_{t>j} E_jt (k_j.y_t)(k_j.x_t) */
                dGc[t] -= dd; /* - sum_{i<t} E_it (k_i.y_t)(k_i.x_t), seen from column t */
            }
        /* direct part of dk: - (KX o E) Y - (KY o E) X */
        for (size_t i = 0; i < CC; i++)
            KX[i] *= -E[i], KY[i] *= -E[i];
        mm_nn(dK, KX, Yt, C, K, C, 0);
        mm_nn(dK, KY, Xt, C, K, C, 1);

        /* tau = (KK o W2) K + diag(w1) K Hc, with W2 = (E diag(w)) E^T */
        for (int j = 0; j < C; j++) {
            float s = 0.0f;
            for (int t = j; t < nc; t++)
                s += E[(size_t)j * C + t] * gh[t] * w[t];
            w1[j] = s;
        }
        for (int j = 0; j < C; j++)
            for (int t = 0; t < C; t++)
                KX[(size_t)j * C + t] = E[(size_t)j * C + t] * w[t]; /* E diag(w) */
        mm_nn(W2, KX, Gam, C, C, C, 0);
        mm_nn(KY, Kt, KtT, C, C, K, 0); /* KK */
        for (size_t i = 0; i < CC; i++)
            KY[i] *= W2[i];
        mm_nn(T1, KY, Kt, C, K, C, 0);
        mm_nn(T2, Kt, Hcc, C, K, K, 0); /* rows (Hc k_j)^T */
        for (int j = 0; j < C; j++)
            for (int p = 0; p < K; p++)
                T1[(size_t)j * K + p] += w1[j] * T2[(size_t)j * K + p]; /* T1 = tau */

        /* Z_c = (sum gh^2 w) Hc + (diag(w1) K)^T K */
        float sgw = 0.0f;
        for (int t = 0; t < nc; t++)
            sgw += gh[t] * gh[t] * w[t];
        for (int j = 0; j < C; j++)
            for (int p = 0; p < K; p++)
                Kw[(size_t)j * K + p] = w1[j] * Kt[(size_t)j * K + p];
        for (size_t i = 0; i < kk; i++)
            Z[i] = sgw * Hcc[i];
        mm_tn(Z, Kw, Kt, C, K, K, 1);
        memcpy(Zc + (((size_t)b * d->H + h) * (size_t)NT + c) * kk, Z, sizeof(float) * kk);

        /* (Q + Q^T) k_j rows, and y^T Hc x */
        for (int i = 0; i < K; i++)
            for (int p = 0; p < K; p++)
                Qs[(size_t)i * K + p] = Q[(size_t)i * K + p] + Q[(size_t)p * K + i];
        mm_nn(T2, Kt, Qs, C, K, K, 0);
        mm_nn(Kw, Yt, Hcc, C, K, K, 0); /* rows (Hc^T y_j)^T */
        float qh = dot(Q, Hnext, (int)kk);
        for (int j = 0; j < nc; j++) {
            float *dkj = dK + (size_t)j * K;
            const float *kj = Kt + (size_t)j * K, *tj = T1 + (size_t)j * K, *qj = T2 + (size_t)j * K;
            for (int p = 0; p < K; p++)
                dkj[p] += -tj[p] + l[j] * qj[p];
            float yx = dot(Yt + (size_t)j * K, Xt + (size_t)j * K, K);
            float yhx = dot(Kw + (size_t)j * K, Xt + (size_t)j * K, K);
            dGc[j] +=
                -gh[j] * yhx - ridge * yx * fc[j] + 0.5f * dot(kj, tj, K) - 0.5f * l[j] * dot(qj, kj, K);
        }
        dGc[nc - 1] += qh;
        store_tile(dkH, dK, d, b, h, t0, nc, K);
        for (int j = 0; j < nc; j++)
            dG[scl(d, b, t0 + j, h)] = dGc[j];
    }
}

static size_t b6_scratch(const Dims *d) {
    size_t C = (size_t)d->C, K = (size_t)d->K;
    return 10 * C * K + 5 * C * C + 2 * K * K + 8 * C;
}

/* B7: inter-chunk lambda-path scan (spec 7.3), per (b, h), sequential over chunks, Lam := 0:
 *   for c = NT-1..0:  dk_j += - l_j Lam k_j;  dG_j += 1/2 l_j k_j^T Lam k_j  (rows j of c)
 *                     dG_last += - 1/2 <Lam, H_[c+1]>;  Lam := e^{G_last} Lam + Z_c
 *   dH0^lam := - Lam / 2.
 * Lam at chunk c is sum over later tokens t of e^{Gk(t) - Gk(end of c)} w_t H_t; the true adjoint of the
 * state at the end of chunk c is Q_c - Lam/2. */
static void b7_lambda_scan(float *dkH, float *dG, float *dH0lam, const float *k, const float *Gk,
                           const float *Hc, const float *Zc, const Dims *d, float *scratch, size_t per) {
    int C = d->C, K = d->K, NT = d->NT;
    size_t kk = (size_t)K * K;
#pragma omp parallel for collapse(2) schedule(dynamic)
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->H; h++) {
            float *Kt = scratch + per * (size_t)thread_id(), *LK = Kt + (size_t)C * K,
                  *G = LK + (size_t)C * K;
            float *Lam = G + C;
            size_t bh = (size_t)b * d->H + h;
            memset(Lam, 0, sizeof(float) * kk);
            for (int c = NT - 1; c >= 0; c--) {
                int t0 = c * C, nc = chunk_rows(d, c);
                load_tile(Kt, k, d, b, h, t0, nc, K, 0.0f);
                load_col(G, Gk, d, b, h, t0, nc, 0.0f);
                mm_nn(LK, Kt, Lam, C, K, K, 0); /* rows (Lam k_j)^T: Lam is symmetric */
                for (int j = 0; j < nc; j++) {
                    float lj = expf(G[nc - 1] - G[j]), *dkj = dkH + tok(d, b, t0 + j, h, K);
                    const float *lk = LK + (size_t)j * K;
                    for (int p = 0; p < K; p++)
                        dkj[p] -= lj * lk[p];
                    dG[scl(d, b, t0 + j, h)] += 0.5f * lj * dot(lk, Kt + (size_t)j * K, K);
                }
                const float *Hnext = Hc + (bh * (size_t)(NT + 1) + c + 1) * kk;
                dG[scl(d, b, t0 + nc - 1, h)] -= 0.5f * dot(Lam, Hnext, (int)kk);
                float decay = expf(G[nc - 1]);
                const float *Z = Zc + (bh * (size_t)NT + c) * kk;
                for (size_t i = 0; i < kk; i++)
                    Lam[i] = decay * Lam[i] + Z[i];
            }
            if (dH0lam)
                for (size_t i = 0; i < kk; i++)
                    dH0lam[bh * kk + i] = -0.5f * Lam[i];
        }
}

static size_t b7_scratch(const Dims *d) {
    return 2 * (size_t)d->C * d->K + d->C + (size_t)d->K * d->K;
}

/* B8: chunk-local REVERSE cumulative sum: dgk_t = sum of dG_s over s >= t in t's chunk (G_s is the sum of gk
 * over the chunk's tokens up to s, so gk_t feeds every G_s with s >= t of its own chunk). */
static void b8_chunk_local_reverse_cumsum(float *dgk, const float *dG, const Dims *d) {
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->H; h++)
            for (int c = 0; c < d->NT; c++) {
                float acc = 0.0f;
                for (int i = chunk_rows(d, c) - 1, t0 = c * d->C; i >= 0; i--) {
                    acc += dG[scl(d, b, t0 + i, h)];
                    dgk[scl(d, b, t0 + i, h)] = acc;
                }
            }
}

void gka_chunk_backward_cpu(float *dq, float *dk, float *dv, float *dg, float *dgk, float *dalpha, float *dH0,
                            float *dU0, const float *d_o, const float *dHT, const float *dUT, const float *q,
                            const float *k, const float *v, const float *g, const float *gk,
                            const float *alpha, const float *H0, const float *U0, const float *x,
                            const float *f, GkaOpConfig cfg, int B, int T, int H, int K, int V) {
    Dims d = gka_chunk_dims("gka_chunk_backward_cpu", cfg, B, T, H, K, V);
    GK_CHECK(d_o && x && f, "gka_chunk_backward_cpu: d_o, x and f (saved by the forward) are required");
    size_t ntok = (size_t)B * T * H, nst = (size_t)B * H * (size_t)(d.NT + 1), nch = (size_t)B * H * d.NT;
    size_t kk = (size_t)K * K, nh = (size_t)B * H;
    int nth = gk_cpu_threads();
    size_t per = max_sz(max_sz(f2_scratch(&d, K), f2_scratch(&d, V)), max_sz(f3_scratch(&d), b1_scratch(&d)));
    per = max_sz(per, max_sz(max_sz(b5_scratch(&d), b6_scratch(&d)), b7_scratch(&d)));
    float *scratch = falloc(per * (size_t)nth);
    float *Gk = gk ? falloc(ntok) : NULL, *Gv = g ? falloc(ntok) : NULL;
    float *Hc = falloc(nst * kk), *Uc = falloc(nst * K * V), *qt = falloc(ntok * K);
    float *Rc = falloc(nch * K * V), *Qc = falloc(nch * kk), *Zc = falloc(nch * kk);
    float *dqt = falloc(ntok * K), *dkU = falloc(ntok * K), *dx = falloc(ntok * K), *y = falloc(ntok * K);
    float *dkH = falloc(ntok * K), *dG = falloc(ntok), *dH0lam = dH0 ? falloc(nh * kk) : NULL;
    float *omega = falloc((size_t)cfg.num_iter);
    gka_chebyshev_omegas(omega, cfg.num_iter, cfg.ridge);

    /* recompute what the forward did not save: cumulative decays, q~, value states */
    if (gk) f1_chunk_local_cumsum(Gk, gk, &d);
    if (g) f1_chunk_local_cumsum(Gv, g, &d);
    f4_blend(qt, q, x, alpha, &d);
    f2_chunk_states(Uc, NULL, k, v, Gv, U0, V, &d, scratch);
    b1_readout_backward(dqt, dkU, dv, dg, dU0, Rc, d_o, dUT, qt, k, v, Gv, Uc, cfg.scale, &d, scratch,
                        b1_scratch(&d));
    b2_blend_backward(dx, dq, dalpha, dqt, x, q, alpha, &d);
    /* B3: chunk-start key states, as F2 */
    f2_chunk_states(Hc, NULL, k, k, Gk, H0, K, &d, scratch);
    /* B4: adjoint solve y = A^-1 dx with the forward's f */
    f3_chunk_solve(y, NULL, f, dx, k, Gk, Hc, omega, cfg, &d, scratch, f3_scratch(&d));
    if (dq)
        for (size_t i = 0; i < ntok * K; i++)
            dq[i] += y[i];
    b5_direct_adjoint_scan(Qc, dH0, y, x, Gk, dHT, &d, scratch, b5_scratch(&d));
    b6_chunk_terms(dkH, dG, Zc, k, x, y, f, Gk, Hc, Qc, cfg.ridge, &d, scratch, b6_scratch(&d));
    b7_lambda_scan(dkH, dG, dH0lam, k, Gk, Hc, Zc, &d, scratch, b7_scratch(&d));
    if (dgk) b8_chunk_local_reverse_cumsum(dgk, dG, &d);
    /* B9: totals */
    if (dk)
        for (size_t i = 0; i < ntok * K; i++)
            dk[i] = dkU[i] + dkH[i];
    if (dH0)
        for (size_t i = 0; i < nh * kk; i++)
            dH0[i] += dH0lam[i];

    free(scratch), free(Gk), free(Gv), free(Hc), free(Uc), free(qt), free(Rc), free(Qc), free(Zc);
    free(dqt), free(dkU), free(dx), free(y), free(dkH), free(dG), free(dH0lam), free(omega);
}
