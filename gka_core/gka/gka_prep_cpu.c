/* gka_prep_cpu.c: CPU twin of the GKA layer's prep step (see gka_prep.h for the definition). */
#include <math.h>
#include <string.h>

#include "gka_prep.h"

static float sigm(float z) { return 1.0f / (1.0f + expf(-z)); }
static float softplus(float z) { return z > 20.0f ? z : log1pf(expf(z)); }

void gka_prep_forward_cpu(float *qo, float *ko, float *vo, float *go, float *ao, const float *qkv, const float *vraw,
                          const float *gpre, const float *A_log, const GkaConfig *cfg, int64_t M) {
    const int H = cfg->num_heads, K = cfg->head_dim, V = gka_V(cfg), Hq = gka_Hq(cfg), Hk = gka_Hk(cfg);
    const int Hv = gka_Hv(cfg), NG = gka_gate_cols(cfg);
    const int ld = Hq * K + Hk * K + (cfg->use_v_conv ? Hv * V : 0);
    int cb, ca, cg;
    gka_gate_offsets(cfg, &cb, &ca, &cg);
#pragma omp parallel for schedule(static)
    for (int64_t m = 0; m < M; m++) {
        const float *row = qkv + m * ld, *gp = gpre + m * NG;
        const float *vrow = cfg->use_v_conv ? row + (Hq + Hk) * K : vraw + m * (int64_t)Hv * V;
        for (int e = 0; e < H; e++) {
            const float *qs = row + (e / (H / Hq)) * K, *ks = row + Hq * K + (e / (H / Hk)) * K;
            const float *vs = vrow + (e / (H / Hv)) * V;
            float sq = 0.0f, sk = 0.0f;
            for (int i = 0; i < K; i++) sq += qs[i] * qs[i], sk += ks[i] * ks[i];
            float rq = 1.0f / sqrtf(sq + GKA_L2_EPS), rk = 1.0f / sqrtf(sk + GKA_L2_EPS);
            float beta = cb >= 0 ? sigm(gp[cb + e]) + GKA_BETA_EPS : 1.0f;
            float *qd = qo + (m * H + e) * K, *kd = ko + (m * H + e) * K, *vd = vo + (m * H + e) * V;
            for (int i = 0; i < K; i++) qd[i] = qs[i] * rq, kd[i] = beta * ks[i] * rk;
            for (int j = 0; j < V; j++) vd[j] = beta * vs[j];
            if (ao && ca >= 0) ao[m * H + e] = sigm(gp[ca + e]);
            if (go && cg >= 0) go[m * H + e] = -expf(A_log[e]) * softplus(gp[cg + e]);
        }
    }
}

void gka_prep_backward_cpu(float *dqkv, float *dvraw, float *dgpre, float *dA_log, const float *dq, const float *dk,
                           const float *dv, const float *dg, const float *dal, const float *qkv, const float *vraw,
                           const float *gpre, const float *A_log, const GkaConfig *cfg, int64_t M) {
    const int H = cfg->num_heads, K = cfg->head_dim, V = gka_V(cfg), Hq = gka_Hq(cfg), Hk = gka_Hk(cfg);
    const int Hv = gka_Hv(cfg), NG = gka_gate_cols(cfg);
    const int ld = Hq * K + Hk * K + (cfg->use_v_conv ? Hv * V : 0);
    int cb, ca, cg;
    gka_gate_offsets(cfg, &cb, &ca, &cg);
    if (dA_log && cg >= 0)
        for (int e = 0; e < H; e++) {
            double s = 0.0;
            for (int64_t m = 0; m < M; m++)
                s += (double)dg[m * H + e] * (-expf(A_log[e]) * softplus(gpre[m * NG + cg + e]));
            dA_log[e] += (float)s;
        }
#pragma omp parallel for schedule(static)
    for (int64_t m = 0; m < M; m++) {
        const float *row = qkv + m * ld, *gp = gpre + m * NG;
        float *drow = dqkv + m * ld, *dgp = dgpre + m * NG;
        const float *vrow = cfg->use_v_conv ? row + (Hq + Hk) * K : vraw + m * (int64_t)Hv * V;
        float *dvrow = cfg->use_v_conv ? drow + (Hq + Hk) * K : dvraw + m * (int64_t)Hv * V;
        memset(drow, 0, sizeof(float) * (size_t)ld);
        if (!cfg->use_v_conv) memset(dvrow, 0, sizeof(float) * (size_t)Hv * V);
        /* expanded heads add into their source heads' gradients of the normalised q^ and k^ */
        float *gq = dqkv + m * ld, *gk = gq + Hq * K; /* first: d q^, d k^ sums, normalised below */
        for (int e = 0; e < H; e++) {
            const float *ks = row + Hq * K + (e / (H / Hk)) * K, *vs = vrow + (e / (H / Hv)) * V;
            float sk = 0.0f;
            for (int i = 0; i < K; i++) sk += ks[i] * ks[i];
            float rk = 1.0f / sqrtf(sk + GKA_L2_EPS);
            float sb = cb >= 0 ? sigm(gp[cb + e]) : 0.0f, beta = cb >= 0 ? sb + GKA_BETA_EPS : 1.0f;
            const float *dqe = dq + (m * H + e) * K, *dke = dk + (m * H + e) * K, *dve = dv + (m * H + e) * V;
            float dbeta = 0.0f;
            for (int i = 0; i < K; i++) {
                gq[(e / (H / Hq)) * K + i] += dqe[i];
                gk[(e / (H / Hk)) * K + i] += beta * dke[i];
                dbeta += dke[i] * ks[i] * rk;
            }
            for (int j = 0; j < V; j++) {
                dvrow[(e / (H / Hv)) * V + j] += beta * dve[j];
                dbeta += dve[j] * vs[j];
            }
            if (cb >= 0) dgp[cb + e] = dbeta * sb * (1.0f - sb);
            if (ca >= 0) {
                float a = sigm(gp[ca + e]);
                dgp[ca + e] = dal[m * H + e] * a * (1.0f - a);
            }
            if (cg >= 0) dgp[cg + e] = dg[m * H + e] * -expf(A_log[e]) * sigm(gp[cg + e]);
        }
        /* through the L2 norms: d x = r (d x^ - x^ (x^ . d x^)) */
        for (int s = 0; s < Hq + Hk; s++) {
            const float *x = row + s * K;
            float *d = drow + s * K;
            float sx = 0.0f;
            for (int i = 0; i < K; i++) sx += x[i] * x[i];
            float r = 1.0f / sqrtf(sx + GKA_L2_EPS), dot = 0.0f;
            for (int i = 0; i < K; i++) dot += x[i] * r * d[i];
            for (int i = 0; i < K; i++) d[i] = r * (d[i] - x[i] * r * dot);
        }
    }
}
