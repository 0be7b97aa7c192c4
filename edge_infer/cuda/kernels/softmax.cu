// Softmax / LogSoftmax over one axis of a contiguous tensor seen as [outer, axis, inner], as
// the engine's reference computes it: subtract the max (0 if it is not finite), exp, sum, divide
// (or shifted - log(sum)). fp32, or fp16 computed in float and rounded once.
//   rows:    inner == 1 (the last axis): one warp per row, shuffle reductions.
//   columns: inner > 1 (e.g. the channel axis of NCHW): one thread per (outer, inner) column,
//            neighbouring threads read neighbouring elements.
#include "ei_cuda.cuh"

struct SoftmaxParams {
    const void* x;
    void* y;
    int32_t outer;
    int32_t axis;
    int32_t inner;
    int32_t log;  // 1: LogSoftmax
};

__device__ __forceinline__ float ei_ld(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float ei_ld(const __half* p, int64_t i) { return __half2float(p[i]); }
__device__ __forceinline__ void ei_st(float* p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void ei_st(__half* p, int64_t i, float v) { p[i] = __float2half_rn(v); }

__device__ __forceinline__ float ei_finite_or_zero(float m) {
    return (m - m == 0.0f) ? m : 0.0f;  // inf - inf and NaN - NaN are NaN
}

template <typename T>
__device__ __forceinline__ void softmax_rows(const SoftmaxParams& p) {
    const int32_t lane = int32_t(threadIdx.x) & 31;
    const int32_t row = int32_t(blockIdx.x) * int32_t(blockDim.x / 32) + int32_t(threadIdx.x / 32);
    if (row >= p.outer) return;  // a whole warp leaves together
    const T* __restrict__ x = static_cast<const T*>(p.x) + int64_t(row) * p.axis;
    T* __restrict__ y = static_cast<T*>(p.y) + int64_t(row) * p.axis;
    float peak = -__int_as_float(0x7f800000);
    for (int32_t i = lane; i < p.axis; i += 32) peak = fmaxf(peak, ei_ld(x, i));
    for (int off = 16; off > 0; off /= 2) peak = fmaxf(peak, __shfl_xor_sync(0xffffffffu, peak, off));
    peak = ei_finite_or_zero(peak);
    float total = 0.0f;
    for (int32_t i = lane; i < p.axis; i += 32) total += expf(ei_ld(x, i) - peak);
    for (int off = 16; off > 0; off /= 2) total += __shfl_xor_sync(0xffffffffu, total, off);
    const float log_total = logf(total);
    for (int32_t i = lane; i < p.axis; i += 32) {
        const float s = ei_ld(x, i) - peak;
        ei_st(y, i, p.log ? s - log_total : expf(s) / total);
    }
}

template <typename T>
__device__ __forceinline__ void softmax_columns(const SoftmaxParams& p) {
    const int64_t col = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    if (col >= int64_t(p.outer) * p.inner) return;
    const int64_t o = col / p.inner, in = col % p.inner;
    const int64_t base = o * int64_t(p.axis) * p.inner + in;
    const T* __restrict__ x = static_cast<const T*>(p.x) + base;
    T* __restrict__ y = static_cast<T*>(p.y) + base;
    float peak = -__int_as_float(0x7f800000);
    for (int32_t a = 0; a < p.axis; ++a) peak = fmaxf(peak, ei_ld(x, int64_t(a) * p.inner));
    peak = ei_finite_or_zero(peak);
    float total = 0.0f;
    for (int32_t a = 0; a < p.axis; ++a) total += expf(ei_ld(x, int64_t(a) * p.inner) - peak);
    const float log_total = logf(total);
    for (int32_t a = 0; a < p.axis; ++a) {
        const float s = ei_ld(x, int64_t(a) * p.inner) - peak;
        ei_st(y, int64_t(a) * p.inner, p.log ? s - log_total : expf(s) / total);
    }
}

extern "C" __global__ void ei_softmax_rows_f32(const SoftmaxParams p) { softmax_rows<float>(p); }
EI_EXPORT(ei_softmax_rows_f32, SoftmaxParams);
extern "C" __global__ void ei_softmax_rows_f16(const SoftmaxParams p) { softmax_rows<__half>(p); }
EI_EXPORT(ei_softmax_rows_f16, SoftmaxParams);
extern "C" __global__ void ei_softmax_columns_f32(const SoftmaxParams p) { softmax_columns<float>(p); }
EI_EXPORT(ei_softmax_columns_f32, SoftmaxParams);
extern "C" __global__ void ei_softmax_columns_f16(const SoftmaxParams p) { softmax_columns<__half>(p); }
EI_EXPORT(ei_softmax_columns_f16, SoftmaxParams);
