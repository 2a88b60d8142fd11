// matmul.cu: out = inp W^T + b through cuBLASLt (bf16 operands, fp32 accumulation), with the bias and the
// tanh-GELU (+ pre-activation aux) epilogues. Row-major tensors are handed to column-major cuBLASLt as
// their transposes: out^T[OC, M] = W[IC, OC]^T-view * inp^T[IC, M].
#include "cuda_common.h"
#include "ops_cuda.h"

// D[m, n] (column-major, ldd = m) = op(A) op(B) (+ beta C), with optional bias/GELU-aux epilogue.
// Returns 0 when cuBLASLt has no algorithm for this epilogue (odd sizes), so the caller can fall back.
static int lt_matmul(CudaCtx *cu, void *d, cudaDataType_t dtype, const void *a, int lda, bool ta, const void *b,
                     int ldb, bool tb, int m, int n, int k, float beta, const void *bias, void *aux, int ldaux) {
    cublasLtMatmulDesc_t op;
    cublasCheck(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
    cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasCheck(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa));
    cublasCheck(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb));
    cublasLtEpilogue_t epi = CUBLASLT_EPILOGUE_DEFAULT;
    if (aux) epi = bias ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX;
    else if (bias) epi = CUBLASLT_EPILOGUE_BIAS;
    cublasCheck(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi));
    if (bias) {
        cudaDataType_t bt = CUDA_R_16BF;
        cublasCheck(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt));
        cublasCheck(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias));
    }
    if (aux) {
        int64_t ld = ldaux;
        cublasCheck(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER, &aux, sizeof aux));
        cublasCheck(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &ld, sizeof ld));
    }
    cublasLtMatrixLayout_t la, lb, ld;
    cublasCheck(cublasLtMatrixLayoutCreate(&la, CUDA_R_16BF, ta ? k : m, ta ? m : k, lda));
    cublasCheck(cublasLtMatrixLayoutCreate(&lb, CUDA_R_16BF, tb ? n : k, tb ? k : n, ldb));
    cublasCheck(cublasLtMatrixLayoutCreate(&ld, dtype, m, n, m));
    cublasLtMatmulPreference_t pref;
    cublasCheck(cublasLtMatmulPreferenceCreate(&pref));
    cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                     &cu->lt_workspace_bytes, sizeof cu->lt_workspace_bytes));
    // Parameters are views into one packed buffer, so operands need not be 256-byte aligned (cuBLASLt's
    // default assumption): tell the heuristic the real alignment of each pointer.
    const void *ptrs[3] = {a, b, d};
    const cublasLtMatmulPreferenceAttributes_t attrs[3] = {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
                                                           CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
                                                           CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
    for (int i = 0; i < 3; i++) {
        uint32_t align = 256;
        while (align > 1 && ((uintptr_t)ptrs[i] % align) != 0) align >>= 1;
        cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, attrs[i], &align, sizeof align));
        if (i == 2)
            cublasCheck(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &align,
                                                             sizeof align));
    }
    cublasLtMatmulHeuristicResult_t heur;
    int found = 0;
    cublasStatus_t hs = cublasLtMatmulAlgoGetHeuristic(cu->lt, op, la, lb, ld, ld, pref, 1, &heur, &found);
    int ok = (hs == CUBLAS_STATUS_SUCCESS && found > 0);
    if (ok) {
        float alpha = 1.0f;
        cublasStatus_t st = cublasLtMatmul(cu->lt, op, &alpha, a, la, b, lb, &beta, d, ld, d, ld, &heur.algo,
                                           cu->lt_workspace, cu->lt_workspace_bytes, cu->stream);
        if (st == CUBLAS_STATUS_NOT_SUPPORTED && (bias || aux)) ok = 0; /* the caller runs the epilogue itself */
        else cublasCheck(st);
    }
    cublasCheck(cublasLtMatmulPreferenceDestroy(pref));
    cublasCheck(cublasLtMatrixLayoutDestroy(la));
    cublasCheck(cublasLtMatrixLayoutDestroy(lb));
    cublasCheck(cublasLtMatrixLayoutDestroy(ld));
    cublasCheck(cublasLtMatmulDescDestroy(op));
    return ok;
}

__device__ __forceinline__ float gelu_tanh_f(float x) {
    float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
}

__device__ __forceinline__ float gelu_tanh_grad_f(float x) {
    float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
    float t = tanhf(u);
    float du = 0.7978845608028654f * (1.0f + 3.0f * 0.044715f * x * x);
    return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * du;
}

// Fallback epilogue: y[m, o] += bias[o]; if pre: pre = y, out = gelu(y).
__global__ void bias_gelu_kernel(bf16 *out, bf16 *pre, const bf16 *bias, long long total, int OC) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= total) return;
    bf16 *y = pre ? pre : out;
    float v = __bfloat162float(y[i]);
    if (bias) v += __bfloat162float(bias[i % OC]);
    if (pre) {
        bf16 vb = __float2bfloat16_rn(v);
        pre[i] = vb;
        out[i] = __float2bfloat16_rn(gelu_tanh_f(__bfloat162float(vb)));
    } else {
        out[i] = __float2bfloat16_rn(v);
    }
}

__global__ void gelu_tanh_backward_inplace_kernel(bf16 *dout, const bf16 *pre, long long total) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < total) dout[i] = __float2bfloat16_rn(__bfloat162float(dout[i]) * gelu_tanh_grad_f(__bfloat162float(pre[i])));
}

// dbias[o] += sum_m dout[m, o]: each block sums a column strip over all rows (deterministic order).
__global__ void bias_grad_kernel(float *dbias, const bf16 *dout, long long M, int OC) {
    int o = blockIdx.x * 32 + threadIdx.x;
    __shared__ float part[8][33];
    float s = 0.0f;
    if (o < OC)
        for (long long m = threadIdx.y; m < M; m += 8) s += __bfloat162float(dout[m * OC + o]);
    part[threadIdx.y][threadIdx.x] = s;
    __syncthreads();
    if (threadIdx.y == 0 && o < OC) {
        float t = 0.0f;
        for (int r = 0; r < 8; r++) t += part[r][threadIdx.x];
        dbias[o] += t;
    }
}

extern "C" void matmul_forward_cuda(bf16_t *out, bf16_t *pre_gelu, const bf16_t *inp, const bf16_t *weight,
                                    const bf16_t *bias, int64_t M, int IC, int OC, CudaCtx *cu) {
    void *d = pre_gelu ? (void *)pre_gelu : (void *)out;
    if (lt_matmul(cu, pre_gelu ? (void *)out : d, CUDA_R_16BF, weight, IC, true, inp, IC, false, OC, (int)M, IC,
                  0.0f, bias, pre_gelu, OC))
        return;
    // No fused algorithm for this shape: plain product, then the epilogue as its own kernel.
    GK_CHECK(lt_matmul(cu, d, CUDA_R_16BF, weight, IC, true, inp, IC, false, OC, (int)M, IC, 0.0f, NULL, NULL, 0),
             "cuBLASLt found no algorithm for a [%lld x %d] x [%d x %d]^T product", (long long)M, IC, OC, IC);
    if (bias || pre_gelu) {
        long long total = (long long)M * OC;
        bias_gelu_kernel<<<ceil_div(total, 256), 256, 0, cu->stream>>>((bf16 *)out, (bf16 *)pre_gelu,
                                                                        (const bf16 *)bias, total, OC);
        cudaCheckLast();
    }
}

extern "C" void matmul_backward_cuda(bf16_t *dinp, float *dweight, float *dbias, bf16_t *dout, const bf16_t *inp,
                                     const bf16_t *weight, const bf16_t *pre_gelu, int dinp_accumulate, int64_t M,
                                     int IC, int OC, CudaCtx *cu) {
    if (pre_gelu) {
        long long total = (long long)M * OC;
        gelu_tanh_backward_inplace_kernel<<<ceil_div(total, 256), 256, 0, cu->stream>>>((bf16 *)dout,
                                                                                         (const bf16 *)pre_gelu, total);
        cudaCheckLast();
    }
    if (dinp) // dinp^T[IC, M] = W^T-view[IC, OC] * dout^T[OC, M]
        GK_CHECK(lt_matmul(cu, dinp, CUDA_R_16BF, weight, IC, false, dout, OC, false, IC, (int)M, OC,
                           dinp_accumulate ? 1.0f : 0.0f, NULL, NULL, 0),
                 "cuBLASLt found no algorithm for the input gradient");
    if (dweight) // dW^T[IC, OC] += inp^T[IC, M] * dout[M, OC]
        GK_CHECK(lt_matmul(cu, dweight, CUDA_R_32F, inp, IC, false, dout, OC, true, IC, OC, (int)M, 1.0f, NULL,
                           NULL, 0),
                 "cuBLASLt found no algorithm for the weight gradient");
    if (dbias) {
        dim3 block(32, 8);
        bias_grad_kernel<<<ceil_div(OC, 32), block, 0, cu->stream>>>(dbias, (const bf16 *)dout, M, OC);
        cudaCheckLast();
    }
}
