// reduce.cuh: a block-wide reduction in a fixed order, for kernels whose blocks have NT threads (a multiple
// of 32, at most 1024). Every thread of the block must call it; every thread gets the result.
#ifndef GKA_REDUCE_CUH
#define GKA_REDUCE_CUH

// Sum (or max) over the block, the same fixed tree every time.
template <int NT>
__device__ float block_reduce(float v, int is_max) {
    __shared__ float warp_part[NT / 32];
    for (int o = 16; o > 0; o >>= 1) {
        float w = __shfl_xor_sync(0xffffffffu, v, o);
        v = is_max ? fmaxf(v, w) : v + w;
    }
    int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    __syncthreads(); /* warp_part may still be read by the previous reduction */
    if (lane == 0) warp_part[warp] = v;
    __syncthreads();
    v = warp_part[0];
    for (int i = 1; i < NT / 32; i++)
        v = is_max ? fmaxf(v, warp_part[i]) : v + warp_part[i];
    return v;
}

#endif
