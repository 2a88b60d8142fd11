/* gkav selfcheck / gkav devices: the op harness from the command line, and the visible GPUs. */
#include <stdio.h>
#include <string.h>

#include "../tests/harness.h"
#include "../tests/op_cases/op_cases.h"
#include "commands.h"
#include "context.h"
#include "core.h"
#ifdef GKA_HAVE_CUDA
#include "cuda/cuda_api.h"
#endif

#define DECLARE(name) extern const OpCase case_##name;
OP_CASES(DECLARE)
#define ENTRY(name) &case_##name,
static const OpCase *const cases[] = {OP_CASES(ENTRY)};

int cmd_selfcheck(int argc, char **argv) {
    int gpu = argc > 1 && !strcmp(argv[1], "--gpu");
    printf("gkav selfcheck: every op's %s\n",
           gpu ? "CUDA twin against its CPU twin (bf16 error ratios)"
               : "CPU forward against a float64 loop and its backward against finite differences");
    double t0 = gk_now();
    int failures = harness_run(cases, (int)(sizeof cases / sizeof cases[0]), gpu, 0, NULL);
    printf("selfcheck %s in %.1f s\n", failures ? "FAILED" : "passed", gk_now() - t0);
    return failures ? 1 : 0;
}

int cmd_devices(int argc, char **argv) {
    (void)argc, (void)argv;
    int n = cuda_device_count();
    printf("%d CUDA device%s\n", n, n == 1 ? "" : "s");
#ifdef GKA_HAVE_CUDA
    for (int i = 0; i < n; i++) {
        Ctx ctx;
        GkErr err;
        if (ctx_cuda_create(&ctx, i, &err) != 0) {
            printf("  %d: %s\n", i, err.msg);
            continue;
        }
        char name[256];
        printf("  %d: %s\n", i, cuda_device_name(ctx.cuda, name, sizeof name));
        ctx_destroy(&ctx);
    }
#endif
    return 0;
}
