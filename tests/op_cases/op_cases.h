/* op_cases.h: every op case of the harness, one line each (X-macro). Add a case: write
 * tests/op_cases/<op>.c defining `const OpCase case_<name>` and add X(<name>) here. */
#define OP_CASES(X)                                                                                           \
    X(matmul)                                                                                                 \
    X(layernorm)                                                                                              \
    X(conv2d)                                                                                                 \
    X(batchnorm)                                                                                              \
    X(batchnorm_eval)                                                                                         \
    X(rmsnorm)                                                                                                \
    X(act)                                                                                                    \
    X(shortconv)                                                                                              \
    X(window_partition)                                                                                       \
    X(window_reverse)                                                                                         \
    X(attention)                                                                                              \
    X(avgpool)                                                                                                \
    X(residual)                                                                                               \
    X(softmax_xent)                                                                                           \
    X(selective_scan)
