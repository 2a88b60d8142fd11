/* batch.c: the CPU side of the batch steps (batch.h): mixup/cutmix with soft targets, and the CPU twin
 * of the normalise + random-erasing kernel.
 *
 * Numbers follow timm's FastCollateMixup exactly where they are observable: the float32 blend rounded
 * half to even, cut sizes int(H sqrt(1 - lam)) with integer halves, the lam correction for a clipped
 * box, and float32 target arithmetic. Only the source of randomness differs (Philox instead of numpy). */
#include "batch.h"

#include <math.h>
#include <string.h>

#include "core.h"

void mixup_defaults(MixupConfig *cfg, int num_classes) {
    cfg->mixup_alpha = 0.8f;
    cfg->cutmix_alpha = 1.0f;
    cfg->prob = 1.0f;
    cfg->switch_prob = 0.5f;
    cfg->smoothing = 0.1f;
    cfg->num_classes = num_classes;
}

void norm_erase_defaults(NormErase *cfg, float reprob) {
    static const double mean[3] = {0.485, 0.456, 0.406}, std[3] = {0.229, 0.224, 0.225};
    memset(cfg, 0, sizeof *cfg);
    for (int c = 0; c < 4; c++) { /* a fourth channel, if ever used, is left unscaled around mid-grey */
        cfg->mean[c] = c < 3 ? mean[c] : 0.5;
        cfg->std[c] = c < 3 ? std[c] : 0.5;
    }
    cfg->reprob = reprob;
}

/* ---- Philox as a stream of words, for draws that take a variable count (rejection sampling) ------- */
typedef struct {
    uint64_t seed, key;
    uint32_t purpose, sub;
    Philox4 block;
    int used;
} PhiloxStream;

static PhiloxStream stream_at(uint64_t seed, uint32_t purpose, uint64_t key, uint32_t first_sub) {
    PhiloxStream s;
    memset(&s, 0, sizeof s);
    s.seed = seed, s.key = key, s.purpose = purpose, s.sub = first_sub, s.used = 4;
    return s;
}

static uint32_t stream_word(PhiloxStream *s) {
    if (s->used == 4) {
        s->block = philox_draw(s->seed, s->purpose, s->key, s->sub++);
        s->used = 0;
    }
    return s->block.v[s->used++];
}

static double stream_u01(PhiloxStream *s) {
    uint32_t a = stream_word(s), b = stream_word(s);
    return philox_u01_f64(a, b);
}

static double stream_normal(PhiloxStream *s) {
    double u1 = stream_u01(s), u2 = stream_u01(s);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586 * u2);
}

/* Gamma(a, 1) by Marsaglia and Tsang (2000); for a < 1 the boost Gamma(a) = Gamma(a + 1) U^(1/a). */
static double gamma_draw(PhiloxStream *s, double a) {
    if (a < 1.0) {
        double u = 1.0 - stream_u01(s); /* (0, 1] */
        return gamma_draw(s, a + 1.0) * pow(u, 1.0 / a);
    }
    double d = a - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x = stream_normal(s), v = 1.0 + c * x;
        if (v <= 0.0) continue;
        v = v * v * v;
        double u = stream_u01(s);
        if (u < 1.0 - 0.0331 * x * x * x * x) return d * v;
        if (log(u) < 0.5 * x * x + d * (1.0 - v + log(v))) return d * v;
    }
}

double philox_beta(uint64_t seed, uint32_t purpose, uint64_t key, double a, double b) {
    PhiloxStream s = stream_at(seed, purpose, key, 1);
    double x = gamma_draw(&s, a), y = gamma_draw(&s, b);
    return x + y > 0.0 ? x / (x + y) : 0.5; /* both underflow only for tiny alphas */
}

/* ---- mixup / cutmix ------------------------------------------------------------------------------- */
MixDraw mixup_draw(const MixupConfig *cfg, uint64_t seed, uint64_t key, int H, int W) {
    MixDraw d = {MIX_NONE, 1.0, 0, 0, 0, 0};
    /* sub 0: apply, switch, box centre row, box centre column; sub 1 on: the Beta draw */
    Philox4 r = philox_draw(seed, RNG_MIXUP, key, 0);
    int use_mixup = cfg->mixup_alpha > 0.0f, use_cutmix = cfg->cutmix_alpha > 0.0f;
    if (!(use_mixup || use_cutmix) || !(philox_u01(r.v[0]) < cfg->prob)) return d;
    int cutmix = use_cutmix && (!use_mixup || philox_u01(r.v[1]) < cfg->switch_prob);
    double alpha = cutmix ? cfg->cutmix_alpha : cfg->mixup_alpha;
    double lam = philox_beta(seed, RNG_MIXUP, key, alpha, alpha);
    if (!cutmix) {
        d.mode = MIX_MIXUP;
        d.lam = lam;
        return d;
    }
    int cy = (int)(((double)r.v[2] * (1.0 / 4294967296.0)) * H); /* randint(0, H) */
    int cx = (int)(((double)r.v[3] * (1.0 / 4294967296.0)) * W);
    return cutmix_box(lam, cy, cx, H, W);
}

static int clip(int v, int hi) {
    return v < 0 ? 0 : v > hi ? hi : v;
}

MixDraw cutmix_box(double lam, int cy, int cx, int H, int W) {
    double ratio = sqrt(1.0 - lam);
    int cut_h = (int)(H * ratio), cut_w = (int)(W * ratio);
    MixDraw d;
    d.mode = MIX_CUTMIX;
    d.y0 = clip(cy - cut_h / 2, H);
    d.y1 = clip(cy + cut_h / 2, H);
    d.x0 = clip(cx - cut_w / 2, W);
    d.x1 = clip(cx + cut_w / 2, W);
    d.lam = 1.0 - (double)(d.y1 - d.y0) * (d.x1 - d.x0) / ((double)H * W);
    return d;
}

void batch_mix_cpu(uint8_t *images, const MixDraw *draw, int B, int H, int W, int C) {
    if (draw->mode == MIX_NONE || draw->lam == 1.0) return; /* timm skips lam == 1 too */
    size_t per = (size_t)H * W * C;
    /* Pairs (i, B-1-i) are done together so each reads its partner before either is overwritten; an odd
     * middle image is its own partner and stays as it is. */
    for (int i = 0; i < B / 2; i++) {
        uint8_t *a = images + (size_t)i * per, *b = images + (size_t)(B - 1 - i) * per;
        if (draw->mode == MIX_MIXUP) {
            float l = (float)draw->lam, m = (float)(1.0 - draw->lam);
            for (size_t k = 0; k < per; k++) {
                float fa = (float)a[k], fb = (float)b[k];
                float na = fa * l, nb = fb * l; /* separate products and sums, as numpy evaluates them */
                float pa = fb * m, pb = fa * m;
                a[k] = (uint8_t)rintf(na + pa);
                b[k] = (uint8_t)rintf(nb + pb);
            }
        } else {
            size_t row = (size_t)(draw->x1 - draw->x0) * C;
            for (int y = draw->y0; y < draw->y1; y++) {
                size_t o = ((size_t)y * W + draw->x0) * C;
                for (size_t k = 0; k < row; k++) {
                    uint8_t t = a[o + k];
                    a[o + k] = b[o + k];
                    b[o + k] = t;
                }
            }
        }
    }
}

void batch_targets_cpu(float *targets, const int32_t *labels, double lam, float smoothing, int B, int K) {
    float off = smoothing / (float)K, on = 1.0f - smoothing + off;
    float l = (float)lam, m = (float)(1.0 - lam);
    for (int i = 0; i < B; i++) {
        float *t = targets + (size_t)i * K;
        int32_t y1 = labels[i], y2 = labels[B - 1 - i];
        for (int k = 0; k < K; k++) {
            float a = (k == y1 ? on : off) * l, b = (k == y2 ? on : off) * m;
            t[k] = a + b;
        }
    }
}

void batch_mixup_cpu(uint8_t *images, float *targets, MixDraw *draw_out, const int32_t *labels,
                     const MixupConfig *cfg, uint64_t seed, uint64_t key, int B, int H, int W, int C) {
    MixDraw d = mixup_draw(cfg, seed, key, H, W);
    batch_mix_cpu(images, &d, B, H, W, C);
    batch_targets_cpu(targets, labels, d.lam, cfg->smoothing, B, cfg->num_classes);
    if (draw_out) *draw_out = d;
}

/* ---- normalise + random erasing, CPU twin ---------------------------------------------------------- */
void batch_normalize_erase_cpu(float *out, const uint8_t *in, const NormErase *cfg, uint64_t seed,
                               uint64_t key, int B, int H, int W, int C) {
    GK_CHECK(C >= 1 && C <= 4, "normalise: %d channels, expected 1 to 4", C);
    GK_CHECK(B <= BATCH_MAX_IMAGES, "normalise: batch of %d images, at most %d", B, BATCH_MAX_IMAGES);
    float m[4], s[4];
    for (int c = 0; c < C; c++) {
        m[c] = (float)(255.0 * cfg->mean[c]);
        s[c] = (float)(255.0 * cfg->std[c]);
    }
    size_t per = (size_t)H * W * C;
    for (int n = 0; n < B; n++) {
        const uint8_t *x = in + (size_t)n * per;
        float *y = out + (size_t)n * per;
        for (size_t e = 0; e < per; e++) {
            int c = (int)(e % (size_t)C);
            y[e] = ((float)x[e] - m[c]) / s[c];
        }
        EraseBox b = erase_box(seed, key + (uint64_t)n, cfg->reprob, H, W);
        for (int yy = b.top; yy < b.top + b.h; yy++) {
            size_t e0 = ((size_t)yy * W + b.left) * C, e1 = e0 + (size_t)b.w * C;
            float z[4];
            uint64_t q_have = UINT64_MAX;
            for (size_t e = e0; e < e1; e++) {
                if ((e >> 2) != q_have) erase_normals4(z, seed, key + (uint64_t)n, q_have = e >> 2);
                y[e] = z[e & 3];
            }
        }
    }
}
