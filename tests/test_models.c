/* test_models: the networks as a whole, on the CPU.
 * - Sizes: every model file in configs/ is loaded and built; its parameter count must equal the spec's
 *   block formulas (gkavision.md 6.2, and 7.2 for a GKA layer) evaluated here independently of the model
 *   code, and the spec's own numbers where it has them (6.1 for the six MambaVision sizes, 7.2 config #1 for
 *   GKAVision-T); MACs, the weight-decay split and per-level totals of T against section 3; state_dict names
 *   and shapes of section 2.11. A file in configs/ without an expectation here fails the test.
 * - Model files: malformed values and unknown keys are refused with file:line, impossible architectures
 *   with the file and the key.
 * - Weights: save -> load gives identical logits (gkavision_nano in float32 and bf16, mambavision_t in bf16
 *   at 64 px); Conv2d weights are stored in PyTorch's layout; missing, unexpected, reshaped, mistyped and
 *   truncated files are refused naming the tensor (or the file) and leave the model unchanged.
 * - Gradients: gkavision_nano (and its Mamba variant, and a bidirectional variant with GKA in the attention
 *   blocks too and layer scale) forward and backward in training mode (batch statistics, drop path) against
 *   fourth-order central differences of the float32 loss sum(logits * r) along one random direction per
 *   parameter tensor and one for the image. Error = |fd - g.u| / (|g| |u| + 1e-3 S), S the largest |g| |u|;
 *   bound 3e-3, measured worst 1.2e-3 on one thread (as ctest runs it), 1.3e-3 on two, both for conv
 *   biases before a BatchNorm (no gradient: their differences are rounding); other tensors stay below 8e-4.
 *   The ops are checked in float64 by the op harness and the GKA layer by test_gka_layer; this checks the
 *   network's wiring, where a mistake gives errors of order one. Settings that keep float32 differences
 *   meaningful: the stem's BN biases keep ReLU inputs off the kink; GKA runs with ridge ratio 1 (converged
 *   in its 30 iterations); projections are 3x their initial scale.
 * - Training / inference passes: drop path follows the seed in training only. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core.h"
#include "gka_inputs.h"
#include "model.h"
#include "safetensors.h"

#ifndef GKA_CONFIG_DIR
#define GKA_CONFIG_DIR "configs"
#endif

#include "expect.h"

static char tmpdir[256];

static const char *tpath(const char *name) {
    static char buf[4][300];
    static int k = 0;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopenCheck(path, "w");
    fputs(text, f);
    fcloseCheck(f);
}

/* ---- parameter counts from the spec's formulas (6.2, 7.2), written from the text, not from the code ---- */

static int64_t mlp_block_params(int64_t C, float ratio) { /* LN x2, fc1, fc2 */
    int64_t h = (int64_t)((float)C * ratio);
    return 4 * C + C * h + h + h * C + C;
}

static int64_t mamba_params(int64_t C) {
    int64_t Ch = C / 2, R = (C + 15) / 16;
    return 2 * C * C + Ch * (R + 16) + R * Ch + Ch + 8 * Ch + Ch + 3 * C;
}

/* q, k, v, o projections of width w = H K; b, alpha, a gate projections and their biases / dt_bias; A_log;
 * three width-4 depth-wise convs; the per-head norm; g_proj with the output gate. */
static int64_t gka_params(int64_t C, int64_t H, int64_t K, int gate) {
    int64_t w = H * K;
    return 3 * C * w + 3 * H * C + 3 * H + H + 3 * 4 * w + K + w * C + (gate ? C * w : 0);
}

static int64_t formula_params(const ModelConfig *c) {
    int64_t n = 9 * c->in_chans * c->in_dim + 2 * c->in_dim + 9 * (int64_t)c->in_dim * c->dim + 2 * c->dim;
    for (int l = 0; l < MODEL_LEVELS; l++) {
        int64_t C = (int64_t)c->dim << l;
        for (int j = 0; j < c->depths[l]; j++) {
            if (l < 2) {
                n += 18 * C * C + 6 * C + (c->layer_scale_conv > 0 ? C : 0);
                continue;
            }
            int attn = j >= (c->depths[l] + 1) / 2;
            int gka = attn ? c->gka_replace_attention : c->gka_replace_mamba;
            if (gka)
                n += (c->gka_bidirectional ? 2 : 1) *
                     gka_params(C, c->gka_heads[l], c->gka_head_dim[l], c->gka_use_gate);
            else
                n += attn ? 4 * C * C + 4 * C : mamba_params(C);
            n += mlp_block_params(C, c->mlp_ratio) + (c->layer_scale > 0 ? 2 * C : 0);
        }
        if (l < 3) n += 18 * C * C;
    }
    int64_t C3 = (int64_t)c->dim << 3;
    return n + 2 * C3 + C3 * c->num_classes + c->num_classes;
}

static const struct {
    const char *name;
    int64_t params;
    double gmacs; /* conv + linear at 224, spec section 4 (derived column) and 7.4 */
} known[] = {
    {"mambavision_t", 31794248, 4.459},   {"mambavision_t2", 35104008, 5.105},
    {"mambavision_s", 50140584, 7.481},   {"mambavision_b", 97685288, 14.954},
    {"mambavision_l", 227961048, 34.840}, {"mambavision_l2", 241554824, 37.500},
    {"gkavision_t", 31749800, 4.455},
};
#define N_KNOWN (int)(sizeof known / sizeof known[0])

/* gkavision_* and the nano have no number in the spec: the formulas above are their expectation. */
static int formula_only(const char *name) {
    return !strncmp(name, "gkavision_", 10);
}

/* A model file has a [model] or [gka] section (recipes in configs/ have [train] and name a model). */
static int is_model_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    char line[CONFIG_MAX_LINE + 2];
    int yes = 0;
    while (!yes && fgets(line, sizeof line, f))
        yes = !strncmp(line, "[model]", 7) || !strncmp(line, "[gka]", 5);
    fclose(f);
    return yes;
}

static void test_counts(void) {
    DIR *d = opendir(GKA_CONFIG_DIR);
    EXPECT(d != NULL);
    if (!d) return;
    int seen[N_KNOWN] = {0}, files = 0;
    struct dirent *e;
    printf("parameter counts (configs/):\n");
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 4, ".cfg")) continue;
        char path[600];
        snprintf(path, sizeof path, "%s/%s", GKA_CONFIG_DIR, e->d_name);
        if (!is_model_file(path)) continue;
        ModelConfig cfg;
        GkErr err;
        if (model_config_load(&cfg, path, &err) != 0) {
            printf("FAIL %s: %s\n", path, err.msg);
            failures++;
            continue;
        }
        files++;
        Model m;
        model_declare(&m, &cfg);
        ModelCost c;
        model_cost(&m, cfg.img_size, cfg.img_size, &c);
        int64_t want = formula_params(&cfg);
        int k = -1;
        for (int i = 0; i < N_KNOWN; i++)
            if (!strcmp(known[i].name, cfg.name)) k = i;
        int ok = (int64_t)m.params.total == want && c.params == want;
        if (k >= 0) {
            seen[k] = 1;
            ok = ok && want == known[k].params && fabs((double)c.macs * 1e-9 - known[k].gmacs) < 5e-4;
        } else if (!formula_only(cfg.name)) {
            ok = 0;
            printf("  %s: no expected count in test_models.c; add one\n", cfg.name);
        }
        printf("  %-16s %12zu params (spec formula %lld%s)  %.3f GMACs + attention %.1f M + recurrent %.1f M "
               " %s\n",
               cfg.name, m.params.total, (long long)want, k >= 0 ? ", spec number" : "",
               (double)c.macs * 1e-9, (double)c.attn_macs * 1e-6, (double)c.recur_macs * 1e-6,
               ok ? "ok" : "FAIL");
        failures += !ok;
        model_free(&m, NULL);
    }
    closedir(d);
    for (int i = 0; i < N_KNOWN; i++)
        if (!seen[i]) printf("FAIL configs/%s.cfg is missing\n", known[i].name), failures++;
    EXPECT(files >= N_KNOWN + 6); /* and the GKAVision T2, S, B, L, L2 and nano */
}

/* MambaVision-T and GKAVision-T in detail: spec section 3, 6.1, 7.4. */
static void test_t_details(void) {
    ModelConfig cfg;
    GkErr err;
    EXPECT(model_config_load(&cfg, "mambavision_t", &err) == 0);
    Model m;
    model_declare(&m, &cfg);
    ModelCost c;
    model_cost(&m, 224, 224, &c);
    const int64_t levels[6] = {24128, 230880, 1846080, 10928640, 18122240, 642280};
    for (int s = 0; s < 6; s++)
        EXPECT(c.st[s].params == levels[s]);
    EXPECT(c.macs == 4459078656ll);
    EXPECT(c.attn_macs == 104491520ll);
    EXPECT(c.recur_macs == 4704000ll); /* 3 L Ch N + 6 L Ch per Mamba mixer */
    EXPECT(c.params_decay == 31729504 && c.params_no_decay == 64744);
    EXPECT(c.st[3].macs == 4 * 202460160ll + 4 * 240844800ll + 90316800ll);
    EXPECT(m.n_bn == 2 + 2 * 4 + 1);
    /* names and shapes of spec 2.11 */
    struct {
        const char *name;
        int ndim;
        int64_t s[4];
    } want[] = {
        {"patch_embed.conv_down.0.weight", 4, {32, 3, 3, 3}}, /* ours [OC, K, K, IC] */
        {"patch_embed.conv_down.4.bias", 1, {80}},
        {"levels.1.blocks.2.conv2.weight", 4, {160, 3, 3, 160}},
        {"levels.1.blocks.2.norm2.weight", 1, {160}},
        {"levels.2.downsample.reduction.0.weight", 4, {640, 3, 3, 320}},
        {"levels.2.blocks.3.mixer.x_proj.weight", 2, {36, 160}},
        {"levels.2.blocks.3.mixer.dt_proj.bias", 1, {160}},
        {"levels.2.blocks.3.mixer.A_log", 2, {160, 8}},
        {"levels.2.blocks.3.mixer.conv1d_z.weight", 3, {160, 1, 3}},
        {"levels.3.blocks.1.mixer.dt_proj.weight", 2, {320, 40}},
        {"levels.3.blocks.2.mixer.qkv.weight", 2, {1920, 640}},
        {"levels.3.blocks.3.mlp.fc1.bias", 1, {2560}},
        {"norm.weight", 1, {640}},
        {"head.weight", 2, {1000, 640}},
    };
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int k = params_find(&m.params, want[i].name);
        EXPECT(k >= 0);
        if (k < 0) continue;
        int same = m.params.e[k].ndim == want[i].ndim;
        for (int j = 0; same && j < want[i].ndim; j++)
            same = m.params.e[k].shape[j] == want[i].s[j];
        if (!same) printf("FAIL shape of %s\n", want[i].name), failures++;
    }
    EXPECT(params_find(&m.buffers, "levels.0.blocks.0.norm1.running_var") >= 0);
    EXPECT(params_find(&m.params, "levels.0.blocks.0.norm1.running_var") < 0);
    EXPECT(params_find(&m.params, "levels.2.blocks.4.mixer.A_log") < 0); /* an attention block */
    model_free(&m, NULL);

    EXPECT(model_config_load(&cfg, "gkavision_t", &err) == 0);
    model_declare(&m, &cfg);
    model_cost(&m, 224, 224, &c);
    EXPECT(c.macs == 4454688256ll);    /* spec 7.4: 4.455 G */
    EXPECT(c.recur_macs == 172480000); /* spec 7.4: ~0.17 G */
    EXPECT(params_find(&m.params, "levels.2.blocks.0.mixer.q_proj.weight") >= 0);
    EXPECT(params_find(&m.params, "levels.3.blocks.1.mixer.o_norm.weight") >= 0);
    EXPECT(params_find(&m.params, "levels.3.blocks.1.mixer.g_proj.weight") < 0); /* no output gate */
    EXPECT(params_find(&m.params, "levels.2.blocks.4.mixer.qkv.bias") >= 0);
    int k = params_find(&m.params, "levels.2.blocks.0.mixer.k_proj.weight");
    EXPECT(k >= 0 && m.params.e[k].shape[0] == 160 && m.params.e[k].shape[1] == 320);
    printf("MambaVision-T / GKAVision-T sizes, MACs, names: checked\n");
    model_free(&m, NULL);
}

/* ---- model files ------------------------------------------------------------------------------------ */

static void expect_cfg_error(const char *text, const char *want) {
    const char *p = tpath("bad.cfg");
    write_text(p, text);
    ModelConfig cfg;
    GkErr err = {{0}};
    int rc = model_config_load(&cfg, p, &err);
    EXPECT(rc != 0);
    if (rc != 0) EXPECT_MSG(err.msg, want);
}

static void test_config_errors(void) {
    expect_cfg_error("[model]\ndim = 80\ndim2 = 3\n", "bad.cfg:3: unknown key 'dim2'");
    expect_cfg_error("[model]\n\ndepths = 1, 3, x, 4\n", "bad.cfg:3: key 'depths'");
    expect_cfg_error("[model]\ndrop_path_rate = lots\n", "bad.cfg:2: key 'drop_path_rate' in [model]");
    expect_cfg_error("[gka]\nreplace_mamba = maybe\n", "bad.cfg:2: key 'replace_mamba' in [gka]");
    expect_cfg_error("[gka]\nuse_gat = true\n", "bad.cfg:2: unknown key 'use_gat' in [gka]");
    expect_cfg_error("[model]\ndepths = 1, 3, 8\n", "[model] depths: expected 4 comma-separated values");
    expect_cfg_error("[model]\nnum_heads = 2, 4, 7, 16\n",
                     "num_heads: 7 heads do not divide the 320 channels of level 2");
    expect_cfg_error("[model]\nstem_stride = 3\n", "stem_stride = 3");
    expect_cfg_error("[model]\ndrop_path_rate = 1\n", "drop_path_rate = 1");
    expect_cfg_error("[gka]\nreplace_mamba = true\nheads = 5, 10\nhead_dim = 32, 200\n",
                     "[gka] heads / head_dim at level 3");
    expect_cfg_error("[gka]\nheads = 5\n", "[gka] heads: expected 2 comma-separated values (levels 2 to 3)");
    ModelConfig cfg;
    GkErr err;
    EXPECT(model_config_load(&cfg, "no_such_model", &err) != 0);
    EXPECT_MSG(err.msg, "model 'no_such_model': no no_such_model.cfg");
    /* a file that only changes one key inherits the rest from its include */
    write_text(tpath("mine.cfg"), "include = " GKA_CONFIG_DIR "/gkavision_t.cfg\n");
    EXPECT(model_config_load(&cfg, tpath("mine.cfg"), &err) == 0);
    EXPECT(cfg.gka_replace_mamba && cfg.dim == 80 && cfg.gka_heads[3] == 10 && !strcmp(cfg.name, "mine"));
    printf("model-file errors: checked\n");
}

/* ---- a model on the CPU -------------------------------------------------------------------------------- */

typedef struct {
    Model m;
    Ctx ctx;
    float *img, *logits;
    int B, H;
} Net;

static int net_open(Net *n, const char *name, const char *const *overrides, int B, int H, int train,
                    uint64_t seed) {
    memset(n, 0, sizeof *n);
    n->ctx = ctx_cpu();
    Config *c = config_new();
    ModelConfig cfg;
    GkErr err;
    char path[MODEL_PATH_MAX];
    int rc = model_config_open(c, name, path, sizeof path, &err);
    for (int i = 0; rc == 0 && overrides && overrides[i]; i += 3)
        config_set(c, overrides[i], overrides[i + 1], overrides[i + 2]);
    if (rc == 0) rc = model_config_read(&cfg, c, path, &err);
    config_free(c);
    if (rc != 0) {
        printf("FAIL %s: %s\n", name, err.msg);
        failures++;
        return -1;
    }
    model_declare(&n->m, &cfg);
    model_alloc(&n->m, &n->ctx, train);
    model_init(&n->m, seed, &n->ctx);
    model_setup(&n->m, B, H, H);
    n->B = B, n->H = H;
    size_t ni = (size_t)B * H * H * cfg.in_chans;
    n->img = gi_alloc(ni), n->logits = gi_alloc((size_t)B * cfg.num_classes);
    for (size_t i = 0; i < ni; i++)
        n->img[i] = (float)gi_normal(seed, 1, i);
    return 0;
}

static Tensor net_img(const Net *n) {
    return tensor_4d(n->img, DT_F32, DEV_CPU, n->B, n->H, n->H, n->m.cfg.in_chans);
}
static Tensor net_logits(const Net *n) {
    return tensor_2d(n->logits, DT_F32, DEV_CPU, n->B, n->m.cfg.num_classes);
}

static void net_forward(Net *n, int train, uint64_t seed, uint64_t step) {
    Pass p = {train, seed, step};
    model_forward(&n->m, net_logits(n), net_img(n), &p, &n->ctx);
}

static void net_close(Net *n) {
    model_free(&n->m, &n->ctx);
    ctx_destroy(&n->ctx);
    free(n->img), free(n->logits);
}

static int same_floats(const float *a, const float *b, size_t n) {
    return memcmp(a, b, n * sizeof(float)) == 0;
}

/* ---- weights ------------------------------------------------------------------------------------------ */

/* Logits for images img of a fresh model (another seed) after loading path; -1 when the load fails. */
static int load_logits(const char *name, const char *path, const float *img, float *logits, int B, int H,
                       int64_t *nbt0) {
    Net n;
    if (net_open(&n, name, NULL, B, H, 0, 99) != 0) return -1;
    memcpy(n.img, img, sizeof(float) * (size_t)B * H * H * n.m.cfg.in_chans);
    GkErr err;
    int rc = model_load(&n.m, path, &n.ctx, &err);
    if (rc != 0) printf("    load: %s\n", err.msg);
    if (rc == 0) {
        net_forward(&n, 0, 0, 0);
        memcpy(logits, n.logits, sizeof(float) * (size_t)B * n.m.cfg.num_classes);
        if (nbt0) *nbt0 = n.m.nbt[0];
    }
    net_close(&n);
    return rc;
}

static void round_params_bf16(Net *n) {
    size_t np = n->m.params.total, nb = n->m.buffers.total;
    float *p = gi_alloc(np), *b = gi_alloc(nb);
    model_get_params(&n->m, p, &n->ctx), model_get_buffers(&n->m, b, &n->ctx);
    for (size_t i = 0; i < np; i++)
        p[i] = bf16_round(p[i]);
    for (size_t i = 0; i < nb; i++)
        b[i] = bf16_round(b[i]);
    model_set_params(&n->m, p, &n->ctx), model_set_buffers(&n->m, b, &n->ctx);
    free(p), free(b);
}

/* Trains one step's forward (so running statistics and counters move), then saves and reloads. */
static void roundtrip(const char *name, int B, int H, int bf16) {
    double t0 = gk_now();
    Net n;
    if (net_open(&n, name, NULL, B, H, 1, 5) != 0) return;
    net_forward(&n, 1, 7, 3);
    if (bf16) round_params_bf16(&n);
    net_forward(&n, 0, 0, 0);
    const char *path = tpath(bf16 ? "w_bf16.safetensors" : "w_f32.safetensors");
    GkErr err;
    int rc = model_save(&n.m, path, bf16, &n.ctx, &err);
    EXPECT(rc == 0);
    if (rc != 0) printf("    save: %s\n", err.msg);
    size_t nl = (size_t)B * n.m.cfg.num_classes;
    float *got = gi_alloc(nl);
    int64_t nbt = -1;
    EXPECT(load_logits(name, path, n.img, got, B, H, &nbt) == 0);
    int ok = same_floats(got, n.logits, nl) && nbt == 1;
    printf("  %-14s %s at %dx%d, batch %d: save -> load -> logits %s, num_batches_tracked %lld (%.1f s)\n",
           name, bf16 ? "bf16" : "f32 ", H, H, B, ok ? "identical" : "DIFFER", (long long)nbt, gk_now() - t0);
    failures += !ok;
    free(got);
    net_close(&n);
}

/* The stem's first conv as stored: PyTorch's [OC, IC, K, K]. */
static void test_conv_layout(void) {
    Net n;
    if (net_open(&n, "gkavision_nano", NULL, 1, 28, 0, 5) != 0) return;
    GkErr err;
    const char *path = tpath("layout.safetensors");
    EXPECT(model_save(&n.m, path, 0, &n.ctx, &err) == 0);
    int i = params_find(&n.m.params, "levels.0.blocks.0.conv1.weight");
    const ParamEntry *e = &n.m.params.e[i];
    StFile f;
    EXPECT(st_open(&f, path, &err) == 0);
    const StTensor *t = st_find(&f, e->name);
    EXPECT(t && t->ndim == 4 && t->shape[0] == 16 && t->shape[1] == 16 && t->shape[2] == 3 &&
           t->shape[3] == 3);
    if (t) {
        const float *file = st_tensor_data(&f, t), *ours = n.m.master + e->offset;
        int ok = 1; /* ours [o][y][x][i] == theirs [o][i][y][x] */
        for (int o = 0; o < 16; o++)
            for (int y = 0; y < 3; y++)
                for (int x = 0; x < 3; x++)
                    for (int c = 0; c < 16; c++)
                        ok &= ours[((o * 3 + y) * 3 + x) * 16 + c] == file[((o * 16 + c) * 3 + y) * 3 + x];
        EXPECT(ok);
        const StTensor *nb = st_find(&f, "norm.num_batches_tracked");
        EXPECT(nb && nb->dtype == ST_I64 && nb->ndim == 0);
    }
    st_close(&f);
    net_close(&n);
}

/* Writes the model's own tensors (as a save would) with one change; returns the path. */
typedef enum { BAD_MISSING, BAD_EXTRA, BAD_SHAPE, BAD_DTYPE, BAD_COUNTER } BadKind;

static const char *write_bad(const Model *m, BadKind kind, const char *victim) {
    StWriter *w = st_writer_new();
    size_t np = m->params.total, nb = m->buffers.total;
    float *p = gi_alloc(np), *b = gi_alloc(nb);
    static int64_t counts[64], big[4096];
    GK_CHECK(m->n_bn <= 64, "write_bad: %d BatchNorms", m->n_bn);
    memcpy(p, m->master, np * sizeof(float)), memcpy(b, m->buf, nb * sizeof(float));
    const ParamTable *tabs[2] = {&m->params, &m->buffers};
    const float *vals[2] = {p, b};
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < tabs[t]->n; i++) {
            const ParamEntry *e = &tabs[t]->e[i];
            int64_t shape[4];
            for (int k = 0; k < e->ndim; k++)
                shape[k] = e->shape[k];
            if (e->torch_conv2d) shape[1] = e->shape[3], shape[2] = e->shape[1], shape[3] = e->shape[2];
            int victim_here = !strcmp(e->name, victim);
            if (victim_here && kind == BAD_MISSING) continue;
            if (victim_here && kind == BAD_SHAPE) shape[0] -= 1;
            if (victim_here && kind == BAD_DTYPE) {
                GK_CHECK(e->numel <= 4096, "write_bad: %s is too large to retype", e->name);
                st_writer_add(w, e->name, ST_I64, e->ndim, shape, big);
                continue;
            }
            st_writer_add(w, e->name, ST_F32, e->ndim, shape, vals[t] + e->offset);
        }
    for (int i = 0; i < m->n_bn; i++) {
        char name[PARAM_NAME_MAX + 32];
        const char *rm = m->buffers.e[m->bn_rm[i]].name;
        snprintf(name, sizeof name, "%.*snum_batches_tracked", (int)(strlen(rm) - 12), rm);
        counts[i] = 1;
        int64_t one = 1;
        if (kind == BAD_COUNTER && !strcmp(name, victim))
            st_writer_add(w, name, ST_F32, 1, &one, p);
        else
            st_writer_add(w, name, ST_I64, 0, NULL, &counts[i]);
    }
    if (kind == BAD_EXTRA) {
        int64_t s[1] = {4};
        st_writer_add(w, victim, ST_F32, 1, s, p);
    }
    const char *path = tpath("bad.safetensors");
    GkErr err;
    EXPECT(st_writer_write(w, path, &err) == 0);
    st_writer_free(w);
    free(p), free(b);
    return path;
}

static void expect_load_error(Net *n, const char *path, const char *want, const float *logits_before) {
    GkErr err = {{0}};
    int rc = model_load(&n->m, path, &n->ctx, &err);
    EXPECT(rc != 0);
    if (rc != 0) EXPECT_MSG(err.msg, want);
    net_forward(n, 0, 0, 0); /* unchanged */
    EXPECT(same_floats(n->logits, logits_before, (size_t)n->B * n->m.cfg.num_classes));
}

static void test_bad_weights(void) {
    Net n;
    if (net_open(&n, "gkavision_nano", NULL, 2, 28, 0, 5) != 0) return;
    net_forward(&n, 0, 0, 0);
    size_t nl = (size_t)2 * n.m.cfg.num_classes;
    float *before = gi_alloc(nl);
    memcpy(before, n.logits, nl * sizeof(float));
    const char *w = "levels.2.blocks.0.mixer.q_proj.weight";
    expect_load_error(&n, write_bad(&n.m, BAD_MISSING, w),
                      "tensor 'levels.2.blocks.0.mixer.q_proj.weight' is missing", before);
    expect_load_error(&n, write_bad(&n.m, BAD_EXTRA, "levels.2.blocks.0.mixer.g_proj.weight"),
                      "unexpected tensor 'levels.2.blocks.0.mixer.g_proj.weight'", before);
    expect_load_error(
        &n, write_bad(&n.m, BAD_SHAPE, "levels.0.blocks.0.conv1.weight"),
        "tensor 'levels.0.blocks.0.conv1.weight' has shape [15, 16, 3, 3]; model gkavision_nano expects "
        "[16, 16, 3, 3]",
        before);
    expect_load_error(&n, write_bad(&n.m, BAD_DTYPE, "head.bias"), "tensor 'head.bias' is I64", before);
    expect_load_error(&n, write_bad(&n.m, BAD_MISSING, "norm.running_var"),
                      "tensor 'norm.running_var' is missing", before);
    expect_load_error(&n, write_bad(&n.m, BAD_COUNTER, "norm.num_batches_tracked"),
                      "tensor 'norm.num_batches_tracked' is F32 with 1 dimensions; expected an int64 scalar",
                      before);
    /* a whole file cut short: the parser's message names the file */
    GkErr err;
    const char *good = tpath("good.safetensors");
    EXPECT(model_save(&n.m, good, 0, &n.ctx, &err) == 0);
    struct stat st;
    EXPECT(stat(good, &st) == 0);
    EXPECT(truncate(good, st.st_size - 100) == 0);
    expect_load_error(&n, good, good, before);
    expect_load_error(&n, tpath("absent.safetensors"), "absent.safetensors", before);
    printf("malformed weight files: checked\n");
    free(before);
    net_close(&n);
}

/* ---- gradients of the whole model against directional differences ------------------------------------ */

static double loss_of(Net *n, const float *R) {
    net_forward(n, 1, 11, 5);
    double L = 0.0;
    size_t nl = (size_t)n->B * n->m.cfg.num_classes;
    for (size_t i = 0; i < nl; i++)
        L += (double)n->logits[i] * R[i];
    return L;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Differences across a ReLU kink measure neither side's derivative. For each ReLU BatchNorm of the stem, in
 * order, sets the BN bias of every channel so that zero falls in the middle of the widest gap between the
 * channel's normalised values (within +-1): no pre-activation is then near the kink. */
static void clear_kinks(Net *n, float *P, const float *R) {
    Stem *st = &n->m.stem;
    Bn *bns[2] = {&st->bn1, &st->bn4};
    for (int q = 0; q < 2; q++) {
        model_set_params(&n->m, P, &n->ctx);
        loss_of(n, R);
        const Bn *b = bns[q];
        const Tensor in = q == 0 ? st->y0 : st->y3;
        const int C = b->C;
        const int64_t M = tensor_numel(in) / C;
        double *v = mallocCheck((size_t)M * sizeof(double));
        for (int c = 0; c < C; c++) {
            for (int64_t m = 0; m < M; m++)
                v[m] = (tensor_f32(in)[m * C + c] - tensor_f32(b->mean)[c]) * tensor_f32(b->rstd)[c] *
                       tensor_f32(b->w)[c];
            qsort(v, (size_t)M, sizeof(double), cmp_double);
            double best = 0.0, mid = 0.0;
            for (int64_t m = 0; m + 1 < M; m++) {
                double lo = v[m] > -1.0 ? v[m] : -1.0, hi = v[m + 1] < 1.0 ? v[m + 1] : 1.0;
                if (hi - lo > best) best = hi - lo, mid = 0.5 * (lo + hi);
            }
            P[n->m.params.e[b->i_b].offset + (size_t)c] = (float)-mid;
        }
        free(v);
    }
    model_set_params(&n->m, P, &n->ctx);
}

#define FD_TOL 3e-3

static void grad_check(const char *label, const char *const *overrides, int B, int H) {
    double t0 = gk_now();
    Net n;
    if (net_open(&n, "gkavision_nano", overrides, B, H, 1, 21) != 0) return;
    const size_t np = n.m.params.total, nl = (size_t)B * n.m.cfg.num_classes,
                 ni = (size_t)B * H * H * n.m.cfg.in_chans;
    float *P = gi_alloc(np), *G = gi_alloc(np), *R = gi_alloc(nl), *dimg = gi_alloc(ni),
          *u = gi_alloc(np > ni ? np : ni);
    model_get_params(&n.m, P, &n.ctx);
    /* signal in every parameter: norms and biases off their constant initial values, projections 3x */
    for (int i = 0; i < n.m.params.n; i++) {
        const ParamEntry *e = &n.m.params.e[i];
        for (size_t k = 0; k < e->numel; k++) {
            if (e->init == INIT_ZERO || e->init == INIT_ONE)
                P[e->offset + k] += 0.2f * (float)gi_normal(31, (uint32_t)i, k);
            if (e->init == INIT_TRUNC_NORMAL) P[e->offset + k] *= 3.0f;
        }
    }
    for (size_t i = 0; i < nl; i++)
        R[i] = (float)gi_normal(41, 0, i);
    clear_kinks(&n, P, R);
    loss_of(&n, R);
    model_zero_grads(&n.m, &n.ctx);
    model_backward(&n.m, tensor_4d(dimg, DT_F32, DEV_CPU, B, H, H, n.m.cfg.in_chans),
                   tensor_2d(R, DT_F32, DEV_CPU, B, n.m.cfg.num_classes), &n.ctx);
    model_get_grads(&n.m, G, &n.ctx);
    /* fourth-order central differences along one direction per tensor (and the image), step 2e-3 of the
     * tensor's rms: fd = (8 (L(h) - L(-h)) - (L(2h) - L(-2h))) / 12h. Measured: at 1e-2 the stem's ReLUs
     * (1568 values per channel, too many to keep all away from the kink) cost 4e-3; at 2e-3 the worst is
     * 1.2e-3 over all three variants. */
    const int nt = n.m.params.n + 1;
    double *gus = mallocCheck((size_t)nt * sizeof(double)), *fds = mallocCheck((size_t)nt * sizeof(double));
    double *scale = mallocCheck((size_t)nt * sizeof(double)), S = 0.0;
    for (int i = 0; i < nt; i++) {
        const int is_img = i == n.m.params.n;
        const size_t cnt = is_img ? ni : n.m.params.e[i].numel;
        float *base = is_img ? n.img : P + n.m.params.e[i].offset;
        const float *g = is_img ? dimg : G + n.m.params.e[i].offset;
        double rms = 0.0, gu = 0.0, gn = 0.0, un = 0.0, L[4];
        for (size_t k = 0; k < cnt; k++)
            rms += (double)base[k] * base[k];
        rms = sqrt(rms / (double)cnt);
        const double h = 2e-3 * (rms > 1e-2 ? rms : 1e-2), steps[4] = {h, -h, 2 * h, -2 * h};
        for (size_t k = 0; k < cnt; k++) {
            u[k] = (float)gi_normal(51, (uint32_t)i, k);
            gu += (double)g[k] * u[k], gn += (double)g[k] * g[k], un += (double)u[k] * u[k];
        }
        float *saved = gi_alloc(cnt);
        memcpy(saved, base, cnt * sizeof(float));
        for (int j = 0; j < 4; j++) {
            for (size_t k = 0; k < cnt; k++)
                base[k] = (float)(saved[k] + steps[j] * u[k]);
            if (!is_img) model_set_params(&n.m, P, &n.ctx);
            L[j] = loss_of(&n, R);
        }
        memcpy(base, saved, cnt * sizeof(float));
        if (!is_img) model_set_params(&n.m, P, &n.ctx);
        free(saved);
        gus[i] = gu, fds[i] = (8.0 * (L[0] - L[1]) - (L[2] - L[3])) / (12.0 * h), scale[i] = sqrt(gn * un);
        if (scale[i] > S) S = scale[i];
    }
    double worst = 0.0;
    const char *worst_name = "";
    for (int i = 0; i < nt; i++) {
        /* relative to |g| |u|, or to 1e-3 of the largest |g| |u| for tensors below it (conv biases before a
         * training-mode BatchNorm have no gradient at all) */
        const char *name = i == n.m.params.n ? "image" : n.m.params.e[i].name;
        const double err = fabs(fds[i] - gus[i]) / (scale[i] + 1e-3 * S);
        if (err > worst) worst = err, worst_name = name;
        if (!(err < FD_TOL)) {
            printf("    %s: difference %.6g, backward %.6g (err %.2e)\n", name, fds[i], gus[i], err);
            failures++;
        }
    }
    printf("  %-40s %3d tensors + image: worst %.2e (%s)  %s (%.1f s)\n", label, n.m.params.n, worst,
           worst_name, worst < FD_TOL ? "ok" : "FAIL", gk_now() - t0);
    free(P), free(G), free(R), free(dimg), free(u), free(gus), free(fds), free(scale);
    net_close(&n);
}

/* Inference ignores the drop-path key; training follows it. */
static void test_passes(void) {
    Net n;
    const char *ov[] = {"model", "drop_path_rate", "0.5", NULL};
    if (net_open(&n, "gkavision_nano", ov, 4, 28, 1, 5) != 0) return;
    size_t nl = (size_t)4 * 10;
    float *a = gi_alloc(nl), *b = gi_alloc(nl);
    net_forward(&n, 0, 1, 1);
    memcpy(a, n.logits, nl * sizeof(float));
    net_forward(&n, 0, 2, 9);
    EXPECT(same_floats(a, n.logits, nl));
    net_forward(&n, 1, 1, 1);
    memcpy(a, n.logits, nl * sizeof(float));
    net_forward(&n, 1, 1, 2);
    memcpy(b, n.logits, nl * sizeof(float));
    net_forward(&n, 1, 1, 1);
    EXPECT(same_floats(a, n.logits, nl)); /* same key, same masks */
    EXPECT(!same_floats(a, b, nl));       /* another step, other masks */
    EXPECT(n.m.nbt[0] == 3);
    printf("training / inference passes: checked\n");
    free(a), free(b);
    net_close(&n);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/gkav_test_models_XXXXXX");
    if (!mkdtemp(tmpdir)) gk_die("cannot create a temporary folder");
    double t0 = gk_now();
    test_counts();
    test_t_details();
    test_config_errors();
    test_passes();
    printf("weights:\n");
    roundtrip("gkavision_nano", 2, 28, 0);
    roundtrip("gkavision_nano", 2, 28, 1);
    roundtrip("mambavision_t", 1, 64, 1);
    test_conv_layout();
    test_bad_weights();
    printf("gradients of the whole model (directional differences, float32):\n");
    /* GKA with a well-conditioned solve: at ridge ratio 1 the Chebyshev iteration converges in far fewer
     * than 30 steps, so its backward (the exact-solve gradient) is its forward's derivative, and float32
     * rounding in the solve stays out of the differences (at 0.02 it alone moves them by 1e-2) */
    const char *gka[] = {"gka", "num_iter", "30", "gka", "ridge_ratio", "1", NULL};
    grad_check("gkavision_nano, 28 px", gka, 2, 28);
    const char *mamba[] = {"gka", "replace_mamba", "false", NULL};
    grad_check("nano with the Mamba mixer, 28 px", mamba, 2, 28);
    const char *bidir[] = {"gka",   "num_iter",      "30",   "gka", "ridge_ratio",       "1",
                           "gka",   "bidirectional", "true", "gka", "replace_attention", "true",
                           "model", "layer_scale",   "0.5",  NULL};
    grad_check("nano, bidirectional GKA everywhere, 20 px", bidir, 2, 20);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) printf("(could not remove %s)\n", tmpdir);
    printf("test_models: %s in %.1f s\n", failures ? "FAILED" : "passed", gk_now() - t0);
    return failures ? 1 : 0;
}
