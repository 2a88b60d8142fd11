/* matmul.c: out = inp W^T + b through OpenBLAS, with the optional tanh-GELU epilogue (CPU). */

#include "ops_cpu.h"

void matmul_forward_cpu(float *out, float *pre_gelu, const float *inp, const float *weight, const float *bias,
                        int64_t M, int IC, int OC) {
    float *y = pre_gelu ? pre_gelu : out;
    gemm_cpu(0, 1, (int)M, OC, IC, 1.0f, inp, IC, weight, IC, 0.0f, y, OC);
    if (!bias && !pre_gelu) return;
#pragma omp parallel for schedule(static)
    for (int64_t m = 0; m < M; m++) {
        float *row = y + m * OC;
        if (bias)
            for (int o = 0; o < OC; o++)
                row[o] += bias[o];
        if (pre_gelu)
            for (int o = 0; o < OC; o++)
                out[m * OC + o] = act_apply(ACT_GELU_TANH, row[o]);
    }
}

void matmul_backward_cpu(float *dinp, float *dweight, float *dbias, float *dout, const float *inp,
                         const float *weight, const float *pre_gelu, int dinp_accumulate, int64_t M, int IC,
                         int OC) {
    if (pre_gelu) act_backward_cpu(dout, dout, pre_gelu, ACT_GELU_TANH, M * OC);
    if (dinp)
        gemm_cpu(0, 0, (int)M, IC, OC, 1.0f, dout, OC, weight, IC, dinp_accumulate ? 1.0f : 0.0f, dinp, IC);
    if (dweight) gemm_cpu(1, 0, OC, IC, (int)M, 1.0f, dout, OC, inp, IC, 1.0f, dweight, IC);
    if (dbias) {
#pragma omp parallel for schedule(static)
        for (int o = 0; o < OC; o++) {
            double s = 0.0;
            for (int64_t m = 0; m < M; m++)
                s += dout[m * OC + o];
            dbias[o] += (float)s;
        }
    }
}
