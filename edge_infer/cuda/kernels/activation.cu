// A standalone activation layer (Sigmoid, Relu, ... every EiAct of epilogue.cuh), elementwise
// over a contiguous tensor: fp32, or fp16 computed in float and rounded once (as the engine's
// reference computes float16 activations).
#include "ei_cuda.cuh"

struct ActivationParams {
    const void* x;
    void* y;
    int32_t count;
    int32_t act;  // EiAct
    float p0;
    float p1;
};

__device__ __forceinline__ float ei_load(const float* p, int32_t i) { return p[i]; }
__device__ __forceinline__ float ei_load(const __half* p, int32_t i) { return __half2float(p[i]); }
__device__ __forceinline__ void ei_store(float* p, int32_t i, float v) { p[i] = v; }
__device__ __forceinline__ void ei_store(__half* p, int32_t i, float v) { p[i] = __float2half_rn(v); }

template <typename T>
__device__ __forceinline__ void activation(const ActivationParams& p) {
    const T* __restrict__ x = static_cast<const T*>(p.x);
    T* __restrict__ y = static_cast<T*>(p.y);
    const int32_t step = int32_t(gridDim.x * blockDim.x);
    for (int32_t i = int32_t(blockIdx.x * blockDim.x + threadIdx.x); i < p.count; i += step)
        ei_store(y, i, ei_activate(ei_load(x, i), p.act, p.p0, p.p1));
}

extern "C" __global__ void ei_activation_f32(const ActivationParams p) { activation<float>(p); }
EI_EXPORT(ei_activation_f32, ActivationParams);
extern "C" __global__ void ei_activation_f16(const ActivationParams p) { activation<__half>(p); }
EI_EXPORT(ei_activation_f16, ActivationParams);
