// conv_depthwise.cu - depthwise convolution (one input channel per group, K/g outputs per
// channel: the channel multiplier) with the fused FusedConv epilogue.
//
//   ei_conv_depthwise_f32       float in/out
//   ei_conv_depthwise_f16       __half in/out, FP32 accumulation (as the FP16 engine does)
//   ei_conv_depthwise_s8_<out>  int8 in, exact int32 accumulation, the INT8 epilogue of
//                               conv_int8.cu (requantize, residual, activation), out s8/f16/f32
//                               -- the GEMM kernels would waste most of a 32-row tile on the
//                               one output row of a depthwise group
//
// A depthwise layer is memory bound (R*S FMAs per output), so the GEMM tiling of the dense
// kernels buys nothing: one thread per output pixel of one output channel, consecutive threads
// on consecutive pixels (coalesced rows), the channel's R*S weights read once per thread
// through the read-only cache.
// Grid (ceil(P*Q / EI_DW_THREADS), K, N); block EI_DW_THREADS.
#include "ei_cuda.cuh"
#include "conv_params.cuh"

#define EI_DW_THREADS 128

// The accumulator type of an element type: FP32 for float and __half, exact int32 for int8.
__device__ __forceinline__ float ei_widen(float v) { return v; }
__device__ __forceinline__ float ei_widen(__half v) { return __half2float(v); }
__device__ __forceinline__ int32_t ei_widen(int8_t v) { return (int32_t)v; }

// This thread's output (n, k, oh, ow) and its R x S window sum, or false past the last pixel.
template <class T, class TAcc>
__device__ __forceinline__ bool depthwise_window(const ConvParams& p, int& n, int& k, int& oh,
                                                 int& ow, TAcc& acc) {
    const int pix = blockIdx.x * blockDim.x + threadIdx.x;
    k = blockIdx.y;
    n = blockIdx.z;
    if (pix >= p.p * p.q) return false;
    const int multiplier = p.k / p.group;
    const int c = k / multiplier;  // the one input channel of output channel k
    oh = pix / p.q;
    ow = pix - oh * p.q;
    const int ih0 = oh * p.stride_h - p.pad_h, iw0 = ow * p.stride_w - p.pad_w;
    const T* x = static_cast<const T*>(p.x);
    const T* w = static_cast<const T*>(p.weight) + (int64_t)k * p.r * p.s;
    const int64_t plane = ei_view_index(p.xv, n, c, 0, 0);
    acc = TAcc(0);
    for (int r = 0; r < p.r; ++r) {
        const int ih = ih0 + r * p.dil_h;
        if (ih < 0 || ih >= p.h) continue;
        for (int s = 0; s < p.s; ++s) {
            const int iw = iw0 + s * p.dil_w;
            if (iw < 0 || iw >= p.w) continue;
            acc += ei_widen(__ldg(&x[plane + (int64_t)ih * p.xv.row_stride + iw])) *
                   ei_widen(__ldg(&w[r * p.s + s]));
        }
    }
    return true;
}

// float / __half in and out; bias float
template <class T>
__device__ __forceinline__ void conv_depthwise(const ConvParams& p) {
    int n, k, oh, ow;
    float acc;
    if (!depthwise_window<T, float>(p, n, k, oh, ow, acc)) return;
    const float* bias = static_cast<const float*>(p.bias);
    ei_conv_finish<T>(p, n, k, oh, ow, acc + (bias ? bias[k] : 0.0f));
}

// int8 in (x_scale), int8 weights (w_scale[k]), int32 bias; requantized as conv_int8.cu does
template <class TOut>
__device__ __forceinline__ void conv_depthwise_s8(const ConvParams& p) {
    int n, k, oh, ow;
    int32_t acc;
    if (!depthwise_window<int8_t, int32_t>(p, n, k, oh, ow, acc)) return;
    const int32_t* bias = static_cast<const int32_t*>(p.bias);
    if (bias) acc += bias[k];
    ei_conv_finish<TOut>(p, n, k, oh, ow, ei_requantize(acc, p.x_scale, p.w_scale[k]));
}

extern "C" __global__ void ei_conv_depthwise_f32(const ConvParams p) { conv_depthwise<float>(p); }
EI_EXPORT(ei_conv_depthwise_f32, ConvParams);

extern "C" __global__ void ei_conv_depthwise_f16(const ConvParams p) { conv_depthwise<__half>(p); }
EI_EXPORT(ei_conv_depthwise_f16, ConvParams);

#define EI_CONV_DEPTHWISE_S8(OUT, TOUT)                                                   \
    extern "C" __global__ void ei_conv_depthwise_s8_##OUT(const ConvParams p) {           \
        conv_depthwise_s8<TOUT>(p);                                                       \
    }                                                                                     \
    EI_EXPORT(ei_conv_depthwise_s8_##OUT, ConvParams);

EI_CONV_DEPTHWISE_S8(s8, int8_t)
EI_CONV_DEPTHWISE_S8(f16, __half)
EI_CONV_DEPTHWISE_S8(f32, float)
