// conv_depthwise.cu - depthwise convolution (one input channel per group, K/g outputs per
// channel: the channel multiplier) with the fused FusedConv epilogue.
//
//   ei_conv_depthwise_f32   float in/out
//   ei_conv_depthwise_f16   __half in/out, FP32 accumulation (as the FP16 engine computes it)
//
// A depthwise layer is memory bound (R*S FMAs per output), so the GEMM tiling of the dense
// kernels buys nothing: one thread per output pixel of one output channel, consecutive threads
// on consecutive pixels (coalesced rows), the channel's R*S weights read once per thread
// through the read-only cache.
// Grid (ceil(P*Q / EI_DW_THREADS), K, N); block EI_DW_THREADS.
#include "ei_cuda.cuh"
#include "conv_params.cuh"

#define EI_DW_THREADS 128

template <class T>
__device__ __forceinline__ void conv_depthwise(const ConvParams& p) {
    const int pix = blockIdx.x * blockDim.x + threadIdx.x;
    const int k = blockIdx.y, n = blockIdx.z;
    if (pix >= p.p * p.q) return;
    const int multiplier = p.k / p.group;
    const int c = k / multiplier;  // the one input channel of output channel k
    const int oh = pix / p.q, ow = pix - oh * p.q;
    const int ih0 = oh * p.stride_h - p.pad_h, iw0 = ow * p.stride_w - p.pad_w;
    const T* x = static_cast<const T*>(p.x);
    const T* w = static_cast<const T*>(p.weight) + (int64_t)k * p.r * p.s;
    const int64_t plane = ei_view_index(p.xv, n, c, 0, 0);

    float acc = 0.0f;
    for (int r = 0; r < p.r; ++r) {
        const int ih = ih0 + r * p.dil_h;
        if (ih < 0 || ih >= p.h) continue;
        for (int s = 0; s < p.s; ++s) {
            const int iw = iw0 + s * p.dil_w;
            if (iw < 0 || iw >= p.w) continue;
            acc += ei_to_float(__ldg(&x[plane + (int64_t)ih * p.xv.row_stride + iw]), 1.0f) *
                   ei_to_float(__ldg(&w[r * p.s + s]), 1.0f);
        }
    }
    const float* bias = static_cast<const float*>(p.bias);
    ei_conv_finish<T>(p, n, k, oh, ow, acc + (bias ? bias[k] : 0.0f));
}

extern "C" __global__ void ei_conv_depthwise_f32(const ConvParams p) { conv_depthwise<float>(p); }
EI_EXPORT(ei_conv_depthwise_f32, ConvParams);

extern "C" __global__ void ei_conv_depthwise_f16(const ConvParams p) { conv_depthwise<__half>(p); }
EI_EXPORT(ei_conv_depthwise_f16, ConvParams);
