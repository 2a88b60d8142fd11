/* gemm.c: every CPU GEMM goes through gemm_cpu: OpenBLAS on one thread, the parallelism ours (OpenMP).
 *
 * Why: the CPU ops are OpenMP loops, and some call a GEMM per task (attention, one per head). Debian's
 * OpenBLAS keeps its own pthread pool, which spins (sched_yield) beside OpenMP's and oversubscribes the cores
 * when called from inside a parallel loop. With BLAS on one thread and a large GEMM split here by output rows
 * (disjoint blocks of C, one sgemm each), GKAVision-nano trains ~30% faster on a 2-core machine. A row block
 * computes each element of C exactly as the whole call would (OpenBLAS blocks K the same way), so results do
 * not depend on the thread count. */
#include <cblas.h>
#include <pthread.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "ops_cpu.h"

static pthread_once_t blas_once = PTHREAD_ONCE_INIT;
static void blas_single_thread(void) {
    openblas_set_num_threads(1);
}

void gemm_cpu(int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc) {
    pthread_once(&blas_once, blas_single_thread);
    const enum CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans,
                               tb = trans_b ? CblasTrans : CblasNoTrans;
    int threads = 1;
#ifdef _OPENMP
    if (!omp_in_parallel() && (double)M * N * K >= 262144.0 && (M >= 32 || N >= 32))
        threads = omp_get_max_threads();
#endif
    if (threads <= 1) {
        cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    if (M >= N) {
        /* rows of C in blocks of a multiple of 16, one per thread; row r of op(A) starts at A + r*lda (A as
         * is) or at A + r (A transposed: column r) */
        int block = ((M + threads - 1) / threads + 15) / 16 * 16;
#pragma omp parallel for schedule(static) num_threads(threads)
        for (int r0 = 0; r0 < M; r0 += block) {
            int rows = M - r0 < block ? M - r0 : block;
            const float *a = trans_a ? A + r0 : A + (int64_t)r0 * lda;
            cblas_sgemm(CblasRowMajor, ta, tb, rows, N, K, alpha, a, lda, B, ldb, beta, C + (int64_t)r0 * ldc,
                        ldc);
        }
    } else {
        /* columns of C likewise (a weight gradient with few output rows): column c of op(B) starts at B + c
         * (B as is) or at B + c*ldb (B transposed: row c) */
        int block = ((N + threads - 1) / threads + 15) / 16 * 16;
#pragma omp parallel for schedule(static) num_threads(threads)
        for (int c0 = 0; c0 < N; c0 += block) {
            int cols = N - c0 < block ? N - c0 : block;
            const float *b = trans_b ? B + (int64_t)c0 * ldb : B + c0;
            cblas_sgemm(CblasRowMajor, ta, tb, M, cols, K, alpha, A, lda, b, ldb, beta, C + c0, ldc);
        }
    }
}
