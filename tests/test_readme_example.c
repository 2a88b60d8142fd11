/* test_readme_example: the libgka example of README.md, verbatim between the markers, run as a test so the
 * README cannot drift from the library. It runs one GKA layer forward and backward on random input (CPU). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

/* README example begins */
#include "gka.h"

int main(void) {
    GkaConfig cfg;
    gka_config_defaults(&cfg, 64, 4, 16); /* d = 64, 4 heads of dimension 16, every gate on */

    ParamTable pt = {0}; /* the layer's parameters: named views into one flat buffer */
    GkaLayer layer;
    gka_layer_declare(&layer, &pt, "mixer.", &cfg);
    float *params = calloc(pt.total, sizeof(float)), *grads = calloc(pt.total, sizeof(float));
    params_init(&pt, params, 42);
    gka_layer_bind(&layer, &pt, params, params, grads, DEV_CPU);

    int S = 2, L = 50; /* 2 sequences of 50 tokens */
    Arena dry = arena_dry(DEV_CPU);
    gka_layer_setup(&layer, &dry, S, L, 1); /* measure, then allocate once */
    Arena acts = arena_create(DEV_CPU, dry.peak);
    gka_layer_setup(&layer, &acts, S, L, 1);

    size_t n = (size_t)S * L * cfg.hidden_size;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float));
    float *dy = malloc(n * sizeof(float)), *dx = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = (float)rand() / RAND_MAX - 0.5f, dy[i] = 1.0f / (float)n;

    Ctx ctx = ctx_cpu();
    Tensor tx = tensor_3d(x, DT_F32, DEV_CPU, S, L, cfg.hidden_size);
    gka_layer_forward(&layer, tensor_3d(y, DT_F32, DEV_CPU, S, L, cfg.hidden_size), tx, &ctx);
    gka_layer_backward(&layer, tensor_3d(dx, DT_F32, DEV_CPU, S, L, cfg.hidden_size),
                       tensor_3d(dy, DT_F32, DEV_CPU, S, L, cfg.hidden_size), tx, 0, &ctx);
    printf("y[0] = %.6f, dL/dx[0] = %.3e, %zu parameters\n", y[0], dx[0], pt.total);
    /* README example ends */

    int ok = 1;
    for (size_t i = 0; i < n; i++) ok &= isfinite(y[i]) && isfinite(dx[i]);
    for (size_t i = 0; i < pt.total; i++) ok &= isfinite(grads[i]);
    ok &= pt.total == 22048; /* q, k, v, their convs, three gates, A_log, dt_bias, g_proj, o_norm, o_proj */
    free(x), free(y), free(dy), free(dx), free(params), free(grads);
    arena_destroy(&acts);
    params_free(&pt);
    printf("readme example: %s\n", ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}
