/* gkav: the GKAVision command-line program. Each subcommand is a function here or in its folder's
 * command file; this is the only layer that prints errors and exits. */
#include <stdio.h>
#include <string.h>

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
            "  info --model NAME   parameter count, MACs and a per-stage table of a model\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "selfcheck")) return cmd_selfcheck(argc - 1, argv + 1);
    if (!strcmp(cmd, "devices")) return cmd_devices(argc - 1, argv + 1);
    if (!strcmp(cmd, "data")) return cmd_data(argc - 1, argv + 1);
    if (!strcmp(cmd, "info")) return cmd_info(argc - 1, argv + 1);
    fprintf(stderr, "gkav: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
