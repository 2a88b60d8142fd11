/* gkav: the GKAVision command-line program. Each subcommand is a function here or in its folder's
 * command file; this is the only layer that prints errors and exits. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "context.h"
#include "core.h"
#include "commands.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: gkav COMMAND [options]\n"
            "commands:\n"
            "  selfcheck [--gpu]   check every op against float64 and finite differences (CPU), or the CUDA\n"
            "                      twins against the CPU (--gpu)\n"
            "  devices             list the CUDA devices this build can use\n"
            "  info --model NAME   parameter count, MACs and a per-stage table of a model\n"
            "  data check|pack     verify a dataset (decodes every image) or pack it into shards\n"
            "  train [--config RECIPE] [--FLAG VALUE...]   train a model (timm's flag names)\n"
            "  eval --model NAME --checkpoint FILE --data-dir DIR   top-1/top-5 on DIR/val\n"
            "  classify --model NAME --checkpoint FILE IMAGE...       top-5 classes of each image\n");
}

/* OpenBLAS (Debian's, DYNAMIC_ARCH) picks its kernels by CPU model at load time; a virtual machine that
 * reports a generic "Intel Xeon Processor" gets the Prescott (SSE3) kernels, 2-3x slower. When that happened
 * on a CPU with AVX-512 or AVX2, name the matching core and start again (OpenBLAS reads OPENBLAS_CORETYPE
 * only while loading). OPENBLAS_CORETYPE set by the user is left alone. Likewise OpenBLAS sizes its thread
 * pool at load time, and Debian's build supports 64 threads: on a machine with more cores (the 8-GPU hosts
 * have 128) it warns and can crash. We call it single-threaded anyway (gemm.c splits the work over OpenMP),
 * so OPENBLAS_NUM_THREADS=1 is set before it loads. */
static void fix_blas_env(char **argv) {
    int again = 0;
    if (!getenv("OPENBLAS_NUM_THREADS") && sysconf(_SC_NPROCESSORS_ONLN) > 64) {
        setenv("OPENBLAS_NUM_THREADS", "1", 1);
        again = 1;
    }
    if (!getenv("OPENBLAS_CORETYPE") && strcmp(openblas_get_corename(), "Prescott") == 0) {
        __builtin_cpu_init();
        const char *core = __builtin_cpu_supports("avx512f") ? "SkylakeX"
                           : __builtin_cpu_supports("avx2")  ? "Haswell"
                                                             : NULL;
        if (core) setenv("OPENBLAS_CORETYPE", core, 1), again = 1;
    }
    if (again) execv("/proc/self/exe", argv); /* on failure, go on as loaded */
}

int main(int argc, char **argv) {
    fix_blas_env(argv);
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "selfcheck")) return cmd_selfcheck(argc - 1, argv + 1);
    if (!strcmp(cmd, "devices")) return cmd_devices(argc - 1, argv + 1);
    if (!strcmp(cmd, "data")) return cmd_data(argc - 1, argv + 1);
    if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "train")) return cmd_train(argc - 1, argv + 1);
    if (!strcmp(cmd, "eval")) return cmd_eval(argc - 1, argv + 1);
    if (!strcmp(cmd, "classify")) return cmd_classify(argc - 1, argv + 1);
    fprintf(stderr, "gkav: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
