// batch.cu: the GPU side of the batch steps (batch.h): normalise + random erasing + cast to bf16 in one
// kernel, pinned host memory, and the loader's copy engine (a stream of its own plus two events per slot).
//
// The kernel: a block row per image (blockIdx.y), whose first thread draws the image's erase box into
// shared memory; each thread then handles four consecutive elements, so the four normals of one Philox
// block are drawn once and the loads and stores are 4- and 8-byte wide.
#include "cuda/cuda_common.h"

#include "batch.h"

struct NormConst {
    float m[4], s[4];
};

__global__ void normalize_erase_kernel(bf16 *out, const uint8_t *in, NormConst k, float p, uint64_t seed,
                                       uint64_t key, int H, int W, int C) {
    __shared__ EraseBox box;
    const int n = blockIdx.y;
    if (threadIdx.x == 0) box = erase_box(seed, key + (uint64_t)n, p, H, W);
    __syncthreads();
    const unsigned per = (unsigned)H * W * C; // < 2^32, checked by the launcher: 32-bit index arithmetic
    const uint8_t *x = in + (size_t)n * per;
    bf16 *y = out + (size_t)n * per;
    const bool vec = (per & 3) == 0; // then every group of four is whole and aligned
    for (unsigned q = blockIdx.x * blockDim.x + threadIdx.x; 4 * q < per; q += gridDim.x * blockDim.x) {
        const unsigned e0 = 4 * q;
        uint8_t v[4] = {0, 0, 0, 0};
        if (vec) {
            uchar4 u = *reinterpret_cast<const uchar4 *>(x + e0);
            v[0] = u.x, v[1] = u.y, v[2] = u.z, v[3] = u.w;
        } else {
            for (unsigned j = 0; j < 4 && e0 + j < per; j++)
                v[j] = x[e0 + j];
        }
        // position of the first element; the other three follow by increments (divisions are slow here)
        unsigned c = e0 % C, pix = e0 / C, yy = pix / W, xx = pix % W;
        float r[4];
        float z[4];
        bool have_z = false;
        for (int j = 0; j < 4; j++) {
            if (box.h && (int)yy >= box.top && (int)yy < box.top + box.h && (int)xx >= box.left &&
                (int)xx < box.left + box.w) {
                if (!have_z) erase_normals4(z, seed, key + (uint64_t)n, q), have_z = true;
                r[j] = z[j];
            } else {
                r[j] = ((float)v[j] - k.m[c]) / k.s[c];
            }
            if (++c == (unsigned)C) {
                c = 0;
                if (++xx == (unsigned)W) xx = 0, yy++;
            }
        }
        if (vec) {
            __nv_bfloat162 lo = __floats2bfloat162_rn(r[0], r[1]), hi = __floats2bfloat162_rn(r[2], r[3]);
            uint2 w;
            w.x = *reinterpret_cast<uint32_t *>(&lo);
            w.y = *reinterpret_cast<uint32_t *>(&hi);
            *reinterpret_cast<uint2 *>(y + e0) = w;
        } else {
            for (unsigned j = 0; j < 4 && e0 + j < per; j++)
                y[e0 + j] = __float2bfloat16_rn(r[j]);
        }
    }
}

extern "C" void batch_normalize_erase_cuda(bf16_t *out, const uint8_t *in, const NormErase *cfg,
                                           uint64_t seed, uint64_t key, int B, int H, int W, int C,
                                           CudaCtx *cu) {
    GK_CHECK(C >= 1 && C <= 4, "normalise: %d channels, expected 1 to 4", C);
    GK_CHECK(B <= BATCH_MAX_IMAGES, "normalise: batch of %d images, at most %d", B, BATCH_MAX_IMAGES);
    GK_CHECK((uint64_t)H * W * C < (1ull << 32) - 4, "normalise: %dx%dx%d images are too large", H, W, C);
    if (B == 0) return;
    NormConst k;
    for (int c = 0; c < 4; c++) {
        k.m[c] = c < C ? (float)(255.0 * cfg->mean[c]) : 0.0f; // the CPU twin's exact float constants
        k.s[c] = c < C ? (float)(255.0 * cfg->std[c]) : 1.0f;
    }
    const size_t groups = ((size_t)H * W * C + 3) / 4; // one thread per group of four elements
    const int threads = 256;
    unsigned blocks_x = ceil_div((long long)groups, threads);
    if (blocks_x > 1024) blocks_x = 1024; // the grid-stride loop covers the rest
    dim3 grid(blocks_x, (unsigned)B);
    normalize_erase_kernel<<<grid, threads, 0, cu->stream>>>((bf16 *)out, in, k, cfg->reprob, seed, key, H, W,
                                                             C);
    cudaCheckLast();
}

// ---- pinned memory ---------------------------------------------------------------------------------------
extern "C" void *batch_host_alloc_pinned(size_t bytes) {
    void *p = NULL;
    cudaError_t e = cudaHostAlloc(&p, bytes ? bytes : 1, cudaHostAllocPortable);
    if (e == cudaErrorMemoryAllocation)
        gk_die("cannot pin %.1f MiB of host memory for the batch ring; lower --batch-size or --prefetch",
               bytes / 1048576.0);
    cudaCheck(e);
    return p;
}

extern "C" void batch_host_free_pinned(void *p) {
    if (p) cudaCheck(cudaFreeHost(p));
}

// ---- the copy engine -------------------------------------------------------------------------------------
struct BatchCopier {
    CudaCtx *cu;
    cudaStream_t stream;
    int slots;
    cudaEvent_t *copied, *consumed;
};

extern "C" BatchCopier *batch_copier_create(CudaCtx *cu, int slots) {
    BatchCopier *c = (BatchCopier *)callocCheck(1, sizeof(BatchCopier));
    c->cu = cu;
    c->slots = slots;
    cudaCheck(cudaSetDevice(cu->device));
    cudaCheck(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    c->copied = (cudaEvent_t *)mallocCheck((size_t)slots * sizeof(cudaEvent_t));
    c->consumed = (cudaEvent_t *)mallocCheck((size_t)slots * sizeof(cudaEvent_t));
    for (int s = 0; s < slots; s++) {
        // never-recorded events count as complete, so the first use of a slot waits for nothing
        cudaCheck(cudaEventCreateWithFlags(&c->copied[s], cudaEventDisableTiming));
        cudaCheck(cudaEventCreateWithFlags(&c->consumed[s], cudaEventDisableTiming));
    }
    return c;
}

extern "C" void batch_copier_destroy(BatchCopier *c) {
    if (!c) return;
    cudaCheck(cudaSetDevice(c->cu->device));
    cudaCheck(cudaStreamSynchronize(c->stream));
    for (int s = 0; s < c->slots; s++) {
        cudaCheck(cudaEventDestroy(c->copied[s]));
        cudaCheck(cudaEventDestroy(c->consumed[s]));
    }
    cudaCheck(cudaStreamDestroy(c->stream));
    free(c->copied);
    free(c->consumed);
    free(c);
}

extern "C" void batch_copier_upload(BatchCopier *c, int slot, void *const *dst, const void *const *src,
                                    const size_t *bytes, int n) {
    cudaCheck(cudaSetDevice(c->cu->device)); // called from loader threads, whose current device is unset
    cudaCheck(cudaStreamWaitEvent(c->stream, c->consumed[slot], 0));
    for (int i = 0; i < n; i++)
        if (bytes[i]) cudaCheck(cudaMemcpyAsync(dst[i], src[i], bytes[i], cudaMemcpyHostToDevice, c->stream));
    cudaCheck(cudaEventRecord(c->copied[slot], c->stream));
}

extern "C" void batch_copier_acquire(BatchCopier *c, int slot) {
    cudaCheck(cudaStreamWaitEvent(c->cu->stream, c->copied[slot], 0));
}

extern "C" void batch_copier_release(BatchCopier *c, int slot) {
    cudaCheck(cudaEventRecord(c->consumed[slot], c->cu->stream));
    cudaCheck(cudaEventSynchronize(c->copied[slot]));
}
