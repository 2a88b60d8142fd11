/* test_gka_gpu: the CUDA twins of the GKA core operator (token-recurrent and chunked forms) against their CPU
 * twins, forward and backward, with bf16 q/k/v/do on both sides. Pass: error ratio rms(cuda - cpu)/rms(cpu) <
 * 1e-2 for outputs, states and gradients, < 2e-2 for the gate gradients (dg, dgk, dalpha). Exit 77 (skipped)
 * without a GPU. */
#include <stdio.h>
#include <string.h>

#include "context.h"
#include "gka/gka_chunk.h"
#include "gka/gka_prep.h"
#include "gka/gka_recur.h"
#include "gka_inputs.h"
#ifdef GKA_HAVE_CUDA
#include "cuda/cuda_api.h"
#endif

#define SKIP_CODE 77

#ifdef GKA_HAVE_CUDA
static Ctx gpu;

static void *up_f32(const float *h, size_t n) {
    if (!h) return NULL;
    void *d = dev_malloc(&gpu, n * sizeof(float));
    cuda_copy(d, h, n * sizeof(float));
    return d;
}

static void *up_bf16(const float *h, size_t n) {
    bf16_t *tmp = mallocCheck(n * sizeof(bf16_t));
    for (size_t i = 0; i < n; i++)
        tmp[i] = f32_to_bf16(h[i]);
    void *d = dev_malloc(&gpu, n * sizeof(bf16_t));
    cuda_copy(d, tmp, n * sizeof(bf16_t));
    free(tmp);
    return d;
}

static float *down(const void *d, size_t n, int is_bf16) {
    float *h = mallocCheck(n * sizeof(float));
    if (is_bf16) {
        bf16_t *tmp = mallocCheck(n * sizeof(bf16_t));
        cuda_copy(tmp, d, n * sizeof(bf16_t));
        for (size_t i = 0; i < n; i++)
            h[i] = bf16_to_f32(tmp[i]);
        free(tmp);
    } else {
        cuda_copy(h, d, n * sizeof(float));
    }
    return h;
}

static void *dalloc(size_t bytes) {
    void *d = dev_malloc(&gpu, bytes);
    cuda_memset(d, 0xff, bytes); /* NaN: an element the kernel forgets to write fails the comparison */
    return d;
}

static int check(const char *what, const float *got, const float *ref, size_t n, double tol, double *worst) {
    double e = err_ratio_f(got, ref, n);
    if (e > *worst) *worst = e;
    if (!(e <= tol)) {
        printf("    %s: error ratio %.3g > %.0e\n", what, e, tol);
        return 0;
    }
    return 1;
}

/* One shape and one combination of optional inputs in one form (recurrent, or chunked with chunk length C);
 * returns 1 on pass. A tied gate (one tensor for g and gk) gets one gradient buffer on the chunked CUDA twin,
 * which then holds dg + dgk: it is compared with the sum of the CPU twin's two. */
static int run_case(GkaAlgo algo, int C, int B, int T, int H, int K, int V, GkaInputFlags fl, uint64_t seed) {
    GkaInputs in = gka_inputs_make(B, T, H, K, V, fl, seed);
    gka_inputs_round_bf16(&in);
    GkaOpConfig cfg = {0.02f, 30, 1.0f / sqrtf((float)K), C, algo};
    const int chunked = algo == GKA_ALGO_CHUNKED, tied = chunked && in.g && in.g == in.gk;
    size_t nt = (size_t)B * T * H, ns = (size_t)B * H;
    size_t nq = nt * K, nv = nt * V, nhh = ns * K * K, nhu = ns * K * V;

    /* CPU twin */
    float *o = gi_alloc(nv), *HT = gi_alloc(nhh), *UT = gi_alloc(nhu), *x = gi_alloc(nq), *f = gi_alloc(nt);
    float *dq = gi_alloc(nq), *dk = gi_alloc(nq), *dv = gi_alloc(nv), *dg = gi_alloc(nt), *dgk = gi_alloc(nt);
    float *da = gi_alloc(nt), *dH0 = gi_alloc(nhh), *dU0 = gi_alloc(nhu);
    float *work = chunked ? NULL : gi_alloc(gka_recur_workspace_floats(B, T, H, K, V));
    if (chunked) {
        gka_chunk_forward_cpu(o, HT, UT, x, f, in.q, in.k, in.v, in.g, in.gk, in.alpha, in.H0, in.U0, cfg, B,
                              T, H, K, V);
        gka_chunk_backward_cpu(dq, dk, dv, dg, dgk, da, dH0, dU0, in.d_o, in.dHT, in.dUT, in.q, in.k, in.v,
                               in.g, in.gk, in.alpha, in.H0, in.U0, x, f, cfg, B, T, H, K, V);
        if (tied)
            for (size_t i = 0; i < nt; i++)
                dg[i] += dgk[i];
    } else {
        gka_recur_forward_cpu(o, HT, UT, x, f, in.q, in.k, in.v, in.g, in.gk, in.alpha, in.H0, in.U0, cfg, B,
                              T, H, K, V);
        gka_recur_backward_cpu(dq, dk, dv, dg, dgk, da, dH0, dU0, work, in.d_o, in.dHT, in.dUT, in.q, in.k,
                               in.v, in.g, in.gk, in.alpha, in.H0, in.U0, x, f, cfg, B, T, H, K, V);
    }

    /* CUDA twin */
    void *q_d = up_bf16(in.q, nq), *k_d = up_bf16(in.k, nq), *v_d = up_bf16(in.v, nv),
         *do_d = up_bf16(in.d_o, nv);
    float *g_d = up_f32(in.g, nt), *gk_d = in.gk == in.g ? g_d : up_f32(in.gk, nt),
          *al_d = up_f32(in.alpha, nt);
    float *H0_d = up_f32(in.H0, nhh), *U0_d = up_f32(in.U0, nhu), *dHT_d = up_f32(in.dHT, nhh);
    float *dUT_d = up_f32(in.dUT, nhu);
    void *o_d = dalloc(nv * 2);
    float *HT_d = dalloc(nhh * 4), *UT_d = dalloc(nhu * 4), *x_d = dalloc(nq * 4), *f_d = dalloc(nt * 4);
    /* odd seeds: the backward recomputes the chunk states; even seeds: it reads the forward's */
    float *st_d = (chunked || (seed & 1)) ? NULL : dalloc(gka_recur_states_floats(B, T, H) * 4);
    void *dq_d = dalloc(nq * 2), *dk_d = dalloc(nq * 2), *dv_d = dalloc(nv * 2);
    float *dg_d = dalloc(nt * 4), *dgk_d = dalloc(nt * 4), *da_d = dalloc(nt * 4), *dH0_d = dalloc(nhh * 4);
    float *dU0_d = dalloc(nhu * 4),
          *work_d = chunked ? NULL : dalloc(gka_recur_workspace_floats(B, T, H, K, V) * 4);
    if (chunked) {
        gka_chunk_forward_cuda(o_d, HT_d, UT_d, x_d, f_d, q_d, k_d, v_d, g_d, gk_d, al_d, H0_d, U0_d, cfg, B,
                               T, H, K, V, gpu.cuda);
        gka_chunk_backward_cuda(dq_d, dk_d, dv_d, dg_d, tied ? dg_d : dgk_d, da_d, dH0_d, dU0_d, do_d, dHT_d,
                                dUT_d, q_d, k_d, v_d, g_d, gk_d, al_d, H0_d, U0_d, x_d, f_d, cfg, B, T, H, K,
                                V, gpu.cuda);
    } else {
        gka_recur_forward_cuda(o_d, HT_d, UT_d, x_d, f_d, st_d, q_d, k_d, v_d, g_d, gk_d, al_d, H0_d, U0_d,
                               cfg, B, T, H, K, V, gpu.cuda);
        gka_recur_backward_cuda(dq_d, dk_d, dv_d, dg_d, dgk_d, da_d, dH0_d, dU0_d, work_d, do_d, dHT_d, dUT_d,
                                q_d, k_d, v_d, g_d, gk_d, al_d, H0_d, U0_d, x_d, f_d, st_d, cfg, B, T, H, K,
                                V, gpu.cuda);
    }
    ctx_sync(&gpu);

    int ok = 1;
    double worst = 0.0, worst_gate = 0.0;
    struct {
        const char *name;
        void *dev;
        const float *ref;
        size_t n;
        int bf16, gate, present;
    } cmp[] = {
        {"o", o_d, o, nv, 1, 0, 1},
        {"H_T", HT_d, HT, nhh, 0, 0, 1},
        {"U_T", UT_d, UT, nhu, 0, 0, 1},
        {"x", x_d, x, nq, 0, 0, 1},
        {"f", f_d, f, nt, 0, 0, 1},
        {"dq", dq_d, dq, nq, 1, 0, 1},
        {"dk", dk_d, dk, nq, 1, 0, 1},
        {"dv", dv_d, dv, nv, 1, 0, 1},
        {"dH0", dH0_d, dH0, nhh, 0, 0, 1},
        {"dU0", dU0_d, dU0, nhu, 0, 0, 1},
        {"dg", dg_d, dg, nt, 0, 1, in.g != NULL},
        {"dgk", dgk_d, dgk, nt, 0, 1, in.gk != NULL && !tied},
        {"dalpha", da_d, da, nt, 0, 1, in.alpha != NULL},
    };
    for (size_t i = 0; i < sizeof cmp / sizeof cmp[0]; i++) {
        if (!cmp[i].present) continue;
        float *got = down(cmp[i].dev, cmp[i].n, cmp[i].bf16);
        ok &= check(cmp[i].name, got, cmp[i].ref, cmp[i].n, cmp[i].gate ? 2e-2 : 1e-2,
                    cmp[i].gate ? &worst_gate : &worst);
        free(got);
    }
    printf("  %s B %d T %4d H %d K %3d V %3d  g %d gk %d tied %d alpha %d H0 %d dHT %d: worst %.2e, gates "
           "%.2e  %s\n",
           chunked ? "chunked  " : "recurrent", B, T, H, K, V, fl.gate_g, fl.gate_gk, fl.tied, fl.alpha,
           fl.init_state, fl.final_grad, worst, worst_gate, ok ? "ok" : "FAIL");

    void *devs[] = {q_d,    k_d,  v_d,   do_d,  g_d,   in.gk == in.g ? NULL : gk_d,
                    al_d,   H0_d, U0_d,  dHT_d, dUT_d, o_d,
                    HT_d,   UT_d, x_d,   f_d,   dq_d,  dk_d,
                    dv_d,   dg_d, dgk_d, da_d,  dH0_d, dU0_d,
                    work_d, st_d};
    for (size_t i = 0; i < sizeof devs / sizeof devs[0]; i++)
        if (devs[i]) dev_free(&gpu, devs[i]);
    float *hs[] = {o, HT, UT, x, f, dq, dk, dv, dg, dgk, da, dH0, dU0, work};
    for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++)
        free(hs[i]);
    gka_inputs_free(&in);
    return ok;
}

/* The layer's prep op (L2 norms, gates, head expansion), CUDA against CPU on the same bf16 inputs. */
static int run_prep_case(const char *name, GkaConfig cfg, int64_t M, uint64_t seed) {
    const int H = cfg.num_heads, K = cfg.head_dim, V = gka_V(&cfg), NG = gka_gate_cols(&cfg);
    const int Cqkv = gka_Hq(&cfg) * K + gka_Hk(&cfg) * K + (cfg.use_v_conv ? gka_Hv(&cfg) * V : 0);
    const int Cv = gka_Hv(&cfg) * V;
    size_t nqkv = (size_t)M * Cqkv, nvr = cfg.use_v_conv ? 0 : (size_t)M * Cv, ng = (size_t)M * (NG ? NG : 1);
    size_t nq = (size_t)M * H * K, nv = (size_t)M * H * V, nh = (size_t)M * H;
    float *qkv = gi_alloc(nqkv), *vraw = gi_alloc(nvr + 1), *gpre = gi_alloc(ng), *alog = gi_alloc(H);
    float *dq = gi_alloc(nq), *dk = gi_alloc(nq), *dv = gi_alloc(nv), *dg = gi_alloc(nh), *dal = gi_alloc(nh);
    for (size_t i = 0; i < nqkv; i++)
        qkv[i] = bf16_round((float)gi_normal(seed, 1, i));
    for (size_t i = 0; i < nvr; i++)
        vraw[i] = bf16_round((float)gi_normal(seed, 2, i));
    for (size_t i = 0; i < ng; i++)
        gpre[i] = bf16_round((float)gi_normal(seed, 3, i));
    for (int i = 0; i < H; i++)
        alog[i] = (float)log(1.0 + 15.0 * gi_uniform(seed, 4, i));
    for (size_t i = 0; i < nq; i++)
        dq[i] = bf16_round((float)gi_normal(seed, 5, i)), dk[i] = bf16_round((float)gi_normal(seed, 6, i));
    for (size_t i = 0; i < nv; i++)
        dv[i] = bf16_round((float)gi_normal(seed, 7, i));
    for (size_t i = 0; i < nh; i++)
        dg[i] = (float)gi_normal(seed, 8, i), dal[i] = (float)gi_normal(seed, 9, i);
    /* CPU */
    float *qo = gi_alloc(nq), *ko = gi_alloc(nq), *vo = gi_alloc(nv), *go = gi_alloc(nh), *ao = gi_alloc(nh);
    float *dqkv = gi_alloc(nqkv), *dvraw = gi_alloc(nvr + 1), *dgpre = gi_alloc(ng), *dalog = gi_alloc(H);
    gka_prep_forward_cpu(qo, ko, vo, go, ao, qkv, nvr ? vraw : NULL, gpre, alog, &cfg, M);
    gka_prep_backward_cpu(dqkv, nvr ? dvraw : NULL, dgpre, dalog, dq, dk, dv, dg, dal, qkv, nvr ? vraw : NULL,
                          gpre, alog, &cfg, M);
    /* CUDA */
    void *qkv_d = up_bf16(qkv, nqkv), *vraw_d = nvr ? up_bf16(vraw, nvr) : NULL, *gpre_d = up_bf16(gpre, ng);
    float *alog_d = up_f32(alog, H);
    void *dq_d = up_bf16(dq, nq), *dk_d = up_bf16(dk, nq), *dv_d = up_bf16(dv, nv);
    float *dg_d = up_f32(dg, nh), *dal_d = up_f32(dal, nh);
    void *qo_d = dalloc(nq * 2), *ko_d = dalloc(nq * 2), *vo_d = dalloc(nv * 2);
    float *go_d = dalloc(nh * 4), *ao_d = dalloc(nh * 4);
    void *dqkv_d = dalloc(nqkv * 2), *dvraw_d = nvr ? dalloc(nvr * 2) : NULL, *dgpre_d = dalloc(ng * 2);
    float *dalog_d = dalloc(H * 4), *work_d = dalloc(nh * 4);
    cuda_memset(dalog_d, 0, H * sizeof(float)); /* dA_log accumulates; the CPU twin started from zeros too */
    gka_prep_forward_cuda(qo_d, ko_d, vo_d, cfg.use_forgetting_gate ? go_d : NULL,
                          cfg.use_alpha_connection ? ao_d : NULL, qkv_d, vraw_d, gpre_d, alog_d, &cfg, M,
                          gpu.cuda);
    gka_prep_backward_cuda(dqkv_d, dvraw_d, dgpre_d, dalog_d, work_d, dq_d, dk_d, dv_d, dg_d, dal_d, qkv_d,
                           vraw_d, gpre_d, alog_d, &cfg, M, gpu.cuda);
    ctx_sync(&gpu);
    int ok = 1;
    double worst = 0.0;
    struct {
        const char *n;
        void *dev;
        const float *ref;
        size_t len;
        int bf16, present;
    } cmp[] = {{"q^", qo_d, qo, nq, 1, 1},
               {"k", ko_d, ko, nq, 1, 1},
               {"v", vo_d, vo, nv, 1, 1},
               {"g", go_d, go, nh, 0, cfg.use_forgetting_gate},
               {"alpha", ao_d, ao, nh, 0, cfg.use_alpha_connection},
               {"dqkv", dqkv_d, dqkv, nqkv, 1, 1},
               {"dvraw", dvraw_d, dvraw, nvr, 1, nvr > 0},
               {"dgpre", dgpre_d, dgpre, (size_t)M * NG, 1, NG > 0},
               {"dA_log", dalog_d, dalog, (size_t)H, 0, cfg.use_forgetting_gate}};
    for (size_t i = 0; i < sizeof cmp / sizeof cmp[0]; i++) {
        if (!cmp[i].present) continue;
        float *got = down(cmp[i].dev, cmp[i].len, cmp[i].bf16);
        ok &= check(cmp[i].n, got, cmp[i].ref, cmp[i].len, 1e-2, &worst);
        free(got);
    }
    printf("  prep %-28s M %6lld: worst %.2e  %s\n", name, (long long)M, worst, ok ? "ok" : "FAIL");
    void *devs[] = {qkv_d, vraw_d, gpre_d, alog_d, dq_d,   dk_d,    dv_d,    dg_d,    dal_d, qo_d,
                    ko_d,  vo_d,   go_d,   ao_d,   dqkv_d, dvraw_d, dgpre_d, dalog_d, work_d};
    for (size_t i = 0; i < sizeof devs / sizeof devs[0]; i++)
        if (devs[i]) dev_free(&gpu, devs[i]);
    float *hs[] = {qkv, vraw, gpre, alog, dq, dk, dv, dg, dal, qo, ko, vo, go, ao, dqkv, dvraw, dgpre, dalog};
    for (size_t i = 0; i < sizeof hs / sizeof hs[0]; i++)
        free(hs[i]);
    return ok;
}
#endif

int main(void) {
#ifndef GKA_HAVE_CUDA
    printf("CPU-only build: GKA GPU tests skipped\n");
    return SKIP_CODE;
#else
    if (cuda_device_count() == 0) {
        printf("no CUDA device: GKA GPU tests skipped\n");
        return SKIP_CODE;
    }
    GkErr err;
    if (ctx_cuda_create(&gpu, 0, &err) != 0) gk_die("%s", err.msg);
    const GkaInputFlags all = {0, 0, 1, 1, 1, 1}, none = {0, 0, 0, 0, 0, 0}, g_only = {1, 0, 0, 1, 0, 0},
                        gk_only = {0, 1, 0, 0, 1, 0}, both = {1, 1, 0, 1, 0, 1};
    int fails = 0, n = 0;
    const int Ts[] = {1, 49, 64, 100, 196, 1000};
    const GkaAlgo R = GKA_ALGO_RECURRENT, CH = GKA_ALGO_CHUNKED;
    printf("token-recurrent GKA, CUDA vs CPU:\n");
    for (size_t i = 0; i < sizeof Ts / sizeof Ts[0]; i++) {
        fails += !run_case(R, 64, 2, Ts[i], 3, 32, 32, all, 100 + i), n++;
        fails += !run_case(R, 64, 2, Ts[i], 2, 32, 32, none, 200 + i), n++;
    }
    fails += !run_case(R, 64, 3, 196, 5, 32, 32, g_only, 300), n++;
    fails += !run_case(R, 64, 2, 100, 2, 20, 24, gk_only, 301), n++;
    fails += !run_case(R, 64, 2, 49, 4, 16, 32, both, 302), n++;
    fails += !run_case(R, 64, 1, 77, 1, 32, 7, all, 303), n++;
    printf("chunked GKA (chunk 64 unless given), CUDA vs CPU:\n");
    for (size_t i = 0; i < sizeof Ts / sizeof Ts[0]; i++) {
        /* T = 1 runs with initial states: without them the gate gradients are exactly zero (one token,
         * nothing to decay) and both twins return rounding noise */
        fails += !run_case(CH, 64, 2, Ts[i], 2, 64, 64, i % 2 ? both : all, 500 + i), n++;
        fails += !run_case(CH, 64, 1, Ts[i], 2, 128, 128, i % 2 ? none : all, 600 + i), n++;
    }
    fails += !run_case(CH, 64, 2, 196, 3, 32, 32, g_only, 700), n++;
    fails += !run_case(CH, 64, 2, 196, 2, 49, 49, all, 701), n++; /* GKAVision-L's head dim */
    fails += !run_case(CH, 32, 2, 100, 2, 96, 40, gk_only, 702), n++;
    fails += !run_case(CH, 16, 1, 49, 3, 20, 24, both, 703), n++;
    printf("GKA layer prep op, CUDA vs CPU:\n");
    GkaConfig pc;
    gka_config_defaults(&pc, 320, 5, 32);
    fails += !run_prep_case("GKAVision-T level 2", pc, 2 * 196, 400), n++;
    gka_config_defaults(&pc, 64, 4, 20);
    pc.num_k_heads = pc.num_v_heads = 2, pc.v_head_dim = 12;
    fails += !run_prep_case("GQA, K 20, V 12", pc, 37, 401), n++;
    gka_config_defaults(&pc, 64, 4, 128);
    pc.num_q_heads = pc.num_k_heads = 1, pc.use_v_conv = 0, pc.use_alpha_connection = 0;
    fails += !run_prep_case("GVA, K 128, no v conv/alpha", pc, 29, 402), n++;
    gka_config_defaults(&pc, 32, 2, 16);
    pc.use_beta_gate = pc.use_forgetting_gate = pc.use_forgetting_gate_kk = 0;
    fails += !run_prep_case("no beta, no decay", pc, 11, 403), n++;
    printf("GKA GPU tests: %d cases, %d failed\n", n, fails);
    ctx_destroy(&gpu);
    return fails ? 1 : 0;
#endif
}
