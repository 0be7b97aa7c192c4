// Reformats between storage dtypes (fp32, fp16, int8 with a per-tensor scale), elementwise
// over a contiguous tensor, in a grid-stride loop. Int8 follows the engine's CPU reference
// (edge_infer/engine/ops/quantize.py): q = clamp(round_half_even(x / scale), -128, 127) with the
// quotient rounded as float64 would round it (see ei_quantize), x = q * scale back.
#include "ei_cuda.cuh"

struct ReformatParams {
    const void* src;
    void* dst;
    int32_t count;
    float scale;  // int8 side: real value = q * scale
};

// round_half_even(x / scale) of the exact quotient, in float arithmetic: the float quotient r
// is correctly rounded, so only when r lands exactly on a half-integer can the exact quotient
// lie on the other side of it; the exact remainder x - r*scale (one fma) says which side.
__device__ __forceinline__ int8_t ei_quantize(float x, float scale) {
    float r = x / scale;
    const float f = floorf(r);
    if (r - f == 0.5f) {
        const float rem = fmaf(-r, scale, x);
        r = rem > 0.0f ? f + 1.0f : (rem < 0.0f ? f : rintf(r));
    } else {
        r = rintf(r);
    }
    r = fminf(fmaxf(r, -128.0f), 127.0f);
    return int8_t(__float2int_rn(r));
}

template <typename S, typename D>
struct Convert;
template <> struct Convert<float, __half> {
    __device__ static __half go(float x, float) { return __float2half_rn(x); }
};
template <> struct Convert<__half, float> {
    __device__ static float go(__half x, float) { return __half2float(x); }
};
template <> struct Convert<float, int8_t> {
    __device__ static int8_t go(float x, float s) { return ei_quantize(x, s); }
};
template <> struct Convert<__half, int8_t> {
    __device__ static int8_t go(__half x, float s) { return ei_quantize(__half2float(x), s); }
};
template <> struct Convert<int8_t, float> {
    __device__ static float go(int8_t q, float s) { return float(q) * s; }
};
template <> struct Convert<int8_t, __half> {
    __device__ static __half go(int8_t q, float s) { return __float2half_rn(float(q) * s); }
};

template <typename S, typename D>
__device__ __forceinline__ void reformat(const ReformatParams& p) {
    const S* __restrict__ src = static_cast<const S*>(p.src);
    D* __restrict__ dst = static_cast<D*>(p.dst);
    const int32_t step = int32_t(gridDim.x * blockDim.x);
    for (int32_t i = int32_t(blockIdx.x * blockDim.x + threadIdx.x); i < p.count; i += step)
        dst[i] = Convert<S, D>::go(src[i], p.scale);
}

extern "C" __global__ void ei_reformat_f32_f16(const ReformatParams p) { reformat<float, __half>(p); }
EI_EXPORT(ei_reformat_f32_f16, ReformatParams);
extern "C" __global__ void ei_reformat_f16_f32(const ReformatParams p) { reformat<__half, float>(p); }
EI_EXPORT(ei_reformat_f16_f32, ReformatParams);
extern "C" __global__ void ei_reformat_f32_i8(const ReformatParams p) { reformat<float, int8_t>(p); }
EI_EXPORT(ei_reformat_f32_i8, ReformatParams);
extern "C" __global__ void ei_reformat_f16_i8(const ReformatParams p) { reformat<__half, int8_t>(p); }
EI_EXPORT(ei_reformat_f16_i8, ReformatParams);
extern "C" __global__ void ei_reformat_i8_f32(const ReformatParams p) { reformat<int8_t, float>(p); }
EI_EXPORT(ei_reformat_i8_f32, ReformatParams);
extern "C" __global__ void ei_reformat_i8_f16(const ReformatParams p) { reformat<int8_t, __half>(p); }
EI_EXPORT(ei_reformat_i8_f16, ReformatParams);
