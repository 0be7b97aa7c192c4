// pool.cu - 2-D max / average pooling and global average / max pooling, FP32 and FP16
// (FP16 accumulated in float, as the engine's reference does), NCHW.
//
//   ei_pool_{max,avg}_{f32,f16}          grid (ceil(OH*OW / blockDim.x), C, N), one thread
//                                        per output element, taps in the reference's order
//   ei_pool_global_{avg,max}_{f32,f16}   grid (C, N), one block per plane, block reduction
//
// Window geometry (pads from auto_pad, ceil_mode, dilations) is resolved on the host by
// edge_infer/engine/ops/conv.py:window_geometry, as the reference resolves it; the kernel
// gets the output size and the explicit begin/end padding. Taps outside the input are
// skipped (the reference pads with -inf for max and 0 for average); the average divides by
// the per-axis count of taps inside the input, or inside input + explicit padding with
// count_include_pad (never the extra ceil_mode padding), as the reference counts. The max
// propagates NaN as np.maximum does. The output may be a slice of a larger buffer (its own
// batch stride), so a pool can write into a concat (SPPF).
// Mirrored by edge_infer/cuda/params/pool.py.
#include "ei_cuda.cuh"
#include "exact_math.cuh"

struct PoolParams {
    const void* x;            // float / __half [n, c, h, w] at x_batch_stride
    void* y;                  // float / __half [n, c, out_h, out_w] at y_batch_stride
    int64_t x_batch_stride;   // elements
    int64_t y_batch_stride;   // elements
    int32_t n, c, h, w;
    int32_t out_h, out_w;
    int32_t kernel_h, kernel_w;
    int32_t stride_h, stride_w;
    int32_t dil_h, dil_w;
    int32_t pad_top, pad_left, pad_bottom, pad_right;  // explicit / auto padding
    int32_t count_include_pad;
    int32_t reserved;
};

template <class T>
__device__ __forceinline__ float pool_load(const T* p);
template <>
__device__ __forceinline__ float pool_load<float>(const float* p) {
    return *p;
}
template <>
__device__ __forceinline__ float pool_load<__half>(const __half* p) {
    return __half2float(*p);
}
template <class T>
__device__ __forceinline__ void pool_store(T* p, float v);
template <>
__device__ __forceinline__ void pool_store<float>(float* p, float v) {
    *p = v;
}
template <>
__device__ __forceinline__ void pool_store<__half>(__half* p, float v) {
    *p = __float2half_rn(v);
}

// np.maximum: a NaN on either side wins
__device__ __forceinline__ float pool_max(float a, float b) {
    return (ei_isnan(a) || a >= b) ? a : b;
}

// taps of one window along one axis that land in [lo, hi)
__device__ __forceinline__ int pool_count(int start, int k, int d, int lo, int hi) {
    int count = 0;
    for (int t = 0; t < k; ++t) count += (start + t * d >= lo && start + t * d < hi);
    return count;
}

template <class T, bool MAX>
__device__ void pool_window(const PoolParams& p) {
    const int pix = blockIdx.x * blockDim.x + threadIdx.x;
    const int ch = blockIdx.y, img = blockIdx.z;
    if (pix >= p.out_h * p.out_w) return;
    const int oy = pix / p.out_w, ox = pix - oy * p.out_w;
    const int y0 = oy * p.stride_h - p.pad_top, x0 = ox * p.stride_w - p.pad_left;
    const T* x = (const T*)p.x + img * p.x_batch_stride + (int64_t)ch * p.h * p.w;
    float acc = MAX ? -3.402823466e38f * 2.0f : 0.0f;  // -inf: what the padding holds
    for (int ky = 0; ky < p.kernel_h; ++ky) {
        const int iy = y0 + ky * p.dil_h;
        if (iy < 0 || iy >= p.h) continue;
        for (int kx = 0; kx < p.kernel_w; ++kx) {
            const int ix = x0 + kx * p.dil_w;
            if (ix < 0 || ix >= p.w) continue;
            const float v = pool_load<T>(x + iy * p.w + ix);
            acc = MAX ? pool_max(acc, v) : ei_fadd(acc, v);
        }
    }
    if (!MAX) {
        const bool inc = p.count_include_pad != 0;
        const int cy = pool_count(y0, p.kernel_h, p.dil_h, inc ? -p.pad_top : 0,
                                  inc ? p.h + p.pad_bottom : p.h);
        const int cx = pool_count(x0, p.kernel_w, p.dil_w, inc ? -p.pad_left : 0,
                                  inc ? p.w + p.pad_right : p.w);
        acc = ei_fdiv(acc, ei_fmul((float)cy, (float)cx));  // 0/0 = NaN, as the reference
    }
    T* y = (T*)p.y + img * p.y_batch_stride + (int64_t)ch * p.out_h * p.out_w + pix;
    pool_store<T>(y, acc);
}

template <class T, bool MAX>
__device__ void pool_global(const PoolParams& p) {
    __shared__ float s_part[32];
    const int ch = blockIdx.x, img = blockIdx.y;
    const int hw = p.h * p.w;
    const T* x = (const T*)p.x + img * p.x_batch_stride + (int64_t)ch * hw;
    float acc = MAX ? -3.402823466e38f * 2.0f : 0.0f;
    for (int i = threadIdx.x; i < hw; i += blockDim.x) {
        const float v = pool_load<T>(x + i);
        acc = MAX ? pool_max(acc, v) : acc + v;
    }
    for (int o = 16; o > 0; o >>= 1) {
        const float v = __shfl_xor_sync(0xffffffffu, acc, o);
        acc = MAX ? pool_max(acc, v) : acc + v;
    }
    if ((threadIdx.x & 31u) == 0) s_part[threadIdx.x >> 5] = acc;
    __syncthreads();
    if (threadIdx.x == 0) {
        float total = s_part[0];
        for (int w = 1; w < (int)(blockDim.x >> 5); ++w)
            total = MAX ? pool_max(total, s_part[w]) : total + s_part[w];
        if (!MAX) total = total / (float)hw;
        pool_store<T>((T*)p.y + img * p.y_batch_stride + ch, total);
    }
}

#define EI_POOL_ENTRY(name, body, T, MAX)                                                    \
    extern "C" __global__ void name(const PoolParams p) { body<T, MAX>(p); }                \
    EI_EXPORT(name, PoolParams);

EI_POOL_ENTRY(ei_pool_max_f32, pool_window, float, true)
EI_POOL_ENTRY(ei_pool_max_f16, pool_window, __half, true)
EI_POOL_ENTRY(ei_pool_avg_f32, pool_window, float, false)
EI_POOL_ENTRY(ei_pool_avg_f16, pool_window, __half, false)
EI_POOL_ENTRY(ei_pool_global_max_f32, pool_global, float, true)
EI_POOL_ENTRY(ei_pool_global_max_f16, pool_global, __half, true)
EI_POOL_ENTRY(ei_pool_global_avg_f32, pool_global, float, false)
EI_POOL_ENTRY(ei_pool_global_avg_f16, pool_global, __half, false)
