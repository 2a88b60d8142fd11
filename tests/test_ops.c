/* test_ops: every op of ops.h through the harness. `test_ops` checks the CPU twins against float64 and
 * finite differences; `test_ops --gpu` checks the CUDA twins against the CPU (exit 77: no GPU, skipped);
 * `--perf` times them; `--filter NAME` runs the cases whose name contains NAME. */
#include <stdio.h>
#include <string.h>

#include "harness.h"
#include "op_cases/op_cases.h"

#define DECLARE(name) extern const OpCase case_##name;
OP_CASES(DECLARE)
#define ENTRY(name) &case_##name,
static const OpCase *const cases[] = {OP_CASES(ENTRY)};

int main(int argc, char **argv) {
    int gpu = 0, perf = 0;
    const char *filter = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--gpu")) gpu = 1;
        else if (!strcmp(argv[i], "--perf")) perf = 1;
        else if (!strcmp(argv[i], "--filter") && i + 1 < argc) filter = argv[++i];
        else {
            fprintf(stderr, "usage: test_ops [--gpu] [--perf] [--filter NAME]\n");
            return 2;
        }
    }
    int failures = harness_run(cases, (int)(sizeof cases / sizeof cases[0]), gpu, perf, filter);
    return failures ? 1 : 0;
}
