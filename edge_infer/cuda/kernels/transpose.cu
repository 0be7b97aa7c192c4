// Batched 2-D transpose through a shared-memory tile: dst[b][c][r] = src[b][r][c]. NCHW -> NHWC
// is rows = C, cols = H*W; NHWC -> NCHW is rows = H*W, cols = C. A 32x32 tile (one column of
// padding: no bank conflicts on the transposed read) is loaded by a 32x8 block, row-coalesced,
// and written back row-coalesced in the destination.
#include "ei_cuda.cuh"

struct TransposeParams {
    const void* src;
    void* dst;
    int32_t rows;
    int32_t cols;
    int64_t src_batch_stride;  // elements between batches (rows * cols when packed)
    int64_t dst_batch_stride;
};

#define EI_TILE 32
#define EI_TILE_ROWS 8

template <typename T>
__device__ __forceinline__ void transpose_tile(const TransposeParams& p) {
    __shared__ T tile[EI_TILE][EI_TILE + 1];
    const T* __restrict__ src = static_cast<const T*>(p.src) + int64_t(blockIdx.z) * p.src_batch_stride;
    T* __restrict__ dst = static_cast<T*>(p.dst) + int64_t(blockIdx.z) * p.dst_batch_stride;
    const int32_t c0 = int32_t(blockIdx.x) * EI_TILE, r0 = int32_t(blockIdx.y) * EI_TILE;
    const int32_t tx = int32_t(threadIdx.x), ty = int32_t(threadIdx.y);
    for (int32_t k = ty; k < EI_TILE; k += EI_TILE_ROWS) {
        const int32_t r = r0 + k, c = c0 + tx;
        if (r < p.rows && c < p.cols) tile[k][tx] = src[int64_t(r) * p.cols + c];
    }
    __syncthreads();
    for (int32_t k = ty; k < EI_TILE; k += EI_TILE_ROWS) {
        const int32_t c = c0 + k, r = r0 + tx;  // destination row c, column r
        if (r < p.rows && c < p.cols) dst[int64_t(c) * p.rows + r] = tile[tx][k];
    }
}

extern "C" __global__ void ei_transpose_b1(const TransposeParams p) { transpose_tile<uint8_t>(p); }
EI_EXPORT(ei_transpose_b1, TransposeParams);
extern "C" __global__ void ei_transpose_b2(const TransposeParams p) { transpose_tile<uint16_t>(p); }
EI_EXPORT(ei_transpose_b2, TransposeParams);
extern "C" __global__ void ei_transpose_b4(const TransposeParams p) { transpose_tile<uint32_t>(p); }
EI_EXPORT(ei_transpose_b4, TransposeParams);
