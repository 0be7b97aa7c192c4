// Copies: a strided copy of up to 4 dimensions, by element size (the bytes are moved, so one
// entry serves every dtype of that size). It is the plain contiguous copy, and the copy into or
// out of a slice (a concat piece that could not be written in place, a strided view).
#include "ei_cuda.cuh"

struct CopyParams {
    const void* src;
    void* dst;
    int32_t shape[4];        // outermost first; unused leading dims are 1
    int32_t src_strides[4];  // in elements
    int32_t dst_strides[4];  // in elements
    int32_t count;           // the product of shape
};

// grid-stride loop: any grid covers any count
template <typename T>
__device__ __forceinline__ void copy_4d(const CopyParams& p) {
    const T* __restrict__ src = static_cast<const T*>(p.src);
    T* __restrict__ dst = static_cast<T*>(p.dst);
    const int32_t step = int32_t(gridDim.x * blockDim.x);
    for (int32_t i = int32_t(blockIdx.x * blockDim.x + threadIdx.x); i < p.count; i += step) {
        int32_t r = i;
        const int32_t i3 = r % p.shape[3];
        r /= p.shape[3];
        const int32_t i2 = r % p.shape[2];
        r /= p.shape[2];
        const int32_t i1 = r % p.shape[1];
        const int32_t i0 = r / p.shape[1];
        const int64_t s = int64_t(i0) * p.src_strides[0] + int64_t(i1) * p.src_strides[1] +
                          int64_t(i2) * p.src_strides[2] + int64_t(i3) * p.src_strides[3];
        const int64_t d = int64_t(i0) * p.dst_strides[0] + int64_t(i1) * p.dst_strides[1] +
                          int64_t(i2) * p.dst_strides[2] + int64_t(i3) * p.dst_strides[3];
        dst[d] = src[s];
    }
}

extern "C" __global__ void ei_copy_b1(const CopyParams p) { copy_4d<uint8_t>(p); }
EI_EXPORT(ei_copy_b1, CopyParams);
extern "C" __global__ void ei_copy_b2(const CopyParams p) { copy_4d<uint16_t>(p); }
EI_EXPORT(ei_copy_b2, CopyParams);
extern "C" __global__ void ei_copy_b4(const CopyParams p) { copy_4d<uint32_t>(p); }
EI_EXPORT(ei_copy_b4, CopyParams);
