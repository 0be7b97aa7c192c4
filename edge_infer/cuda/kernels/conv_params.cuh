// conv_params.cuh - the one parameter struct of every convolution kernel, and the pieces all of
// them share: tensor addressing (an NCHW view at an offset with channel/row strides, so a conv
// reads a slice of a larger buffer and writes into a slice of a concat's buffer), the im2col
// gather of the implicit GEMM, and the fused epilogue of the IR's FusedConv / QConv.
//
// Mirrored field for field by edge_infer/cuda/params/conv.py (ConvParams).
#pragma once
#include "ei_cuda.cuh"
#include "epilogue.cuh"

// FusedConv's `residual` attribute: "none", "pre" (act(conv + b + Z)), "post" (act(conv + b) + Z)
enum EiResidual { EI_RESIDUAL_NONE = 0, EI_RESIDUAL_PRE = 1, EI_RESIDUAL_POST = 2 };

// An NCHW tensor view: element (n, c, h, w) lives at
// offset + n * batch_stride + c * channel_stride + h * row_stride + w (elements, not bytes).
// Per-image strides fit int32 on any edge model; the offset and batch stride need not.
struct TensorView4 {
    int64_t offset;
    int64_t batch_stride;
    int32_t channel_stride;
    int32_t row_stride;
};

// Element types by kernel (see each .cu): x/z/y are float (fp32 kernels), __half (fp16
// kernels) or int8_t (int8 kernels: y and z may also be __half or float); weight is
// float/__half/int8_t [K, C/g, R, S] as ONNX stores it; bias is float (fp32/fp16 kernels) or
// int32_t in accumulator units x_scale * w_scale[k] (int8 kernels); bias/z may be null.
struct ConvParams {
    const void* x;
    const void* weight;
    const void* bias;
    const void* z;           // residual, the output's shape (its own view)
    void* y;
    const float* w_scale;    // int8: per-output-channel weight scale [K]
    TensorView4 xv, zv, yv;
    int32_t n, c, h, w;      // input: batch, channels, height, width
    int32_t k, r, s;         // output channels, kernel height, kernel width
    int32_t p, q;            // output height, width
    int32_t group;
    int32_t stride_h, stride_w;
    int32_t pad_h, pad_w;    // top and left padding; bottom/right follow from p, q
    int32_t dil_h, dil_w;
    int32_t act;             // EiAct
    int32_t residual;        // EiResidual
    float act_p0, act_p1;    // activation_params (alpha, min/max, ...)
    float x_scale;           // int8: input scale (requantization multiplier x_scale * w_scale[k])
    float y_scale;           // int8 output: the output tensor's scale
    float z_scale;           // int8 residual: the residual tensor's scale
    int32_t reserved;        // keeps the size a multiple of 8 on every ABI
};

__device__ __forceinline__ int64_t ei_view_index(const TensorView4& v, int n, int c, int h,
                                                 int w) {
    return v.offset + n * v.batch_stride + (int64_t)c * v.channel_stride +
           (int64_t)h * v.row_stride + w;
}

// -- element conversions ----------------------------------------------------------------------

template <class T>
__device__ __forceinline__ T ei_zero() { return T(0); }
template <>
__device__ __forceinline__ __half ei_zero<__half>() { return __float2half(0.0f); }

__device__ __forceinline__ float ei_to_float(float v, float) { return v; }
__device__ __forceinline__ float ei_to_float(__half v, float) { return __half2float(v); }
__device__ __forceinline__ float ei_to_float(int8_t v, float scale) { return (float)v * scale; }

// Symmetric int8 quantization as the CPU reference does it (quantize_activation): the exact
// quotient v / scale rounded half to even, saturated to [-128, 127]. The float quotient r is
// correctly rounded, so only when it lands exactly on a half-integer can the exact quotient
// lie on the other side of the tie; the exact remainder v - r * scale (one fma) says which
// side -- the reference's float64 decision without double arithmetic (as reformat.cu does).
__device__ __forceinline__ int8_t ei_quantize_s8(float v, float scale) {
    float r = v / scale;
    const float f = floorf(r);
    if (r - f == 0.5f) {
        const float rem = fmaf(-r, scale, v);
        r = rem > 0.0f ? f + 1.0f : (rem < 0.0f ? f : rintf(r));
    } else {
        r = rintf(r);
    }
    return (int8_t)fminf(fmaxf(r, -128.0f), 127.0f);
}

__device__ __forceinline__ void ei_store(float* y, float v, float) { *y = v; }
__device__ __forceinline__ void ei_store(__half* y, float v, float) { *y = __float2half_rn(v); }
__device__ __forceinline__ void ei_store(int8_t* y, float v, float scale) {
    *y = ei_quantize_s8(v, scale);
}

// -- the fused epilogue -----------------------------------------------------------------------

// FusedConv's epilogue on one value that already holds conv + bias: residual before or after
// the activation. One small piece applied to every accumulator element (CUTLASS's
// LinearCombination role), shared by every conv kernel so they cannot disagree.
__device__ __forceinline__ float ei_conv_epilogue(float v, float z, int residual, int act,
                                                  float p0, float p1) {
    if (residual == EI_RESIDUAL_PRE) v += z;
    v = ei_activate(v, act, p0, p1);
    if (residual == EI_RESIDUAL_POST) v += z;
    return v;
}

// Finish output element (n, k, oh, ow) from `v` = conv + bias as float: read the residual,
// apply the epilogue, convert to the output type and store it through the output view.
// TOut is float, __half or int8_t; the residual has the output's type.
template <class TOut>
__device__ __forceinline__ void ei_conv_finish(const ConvParams& p, int n, int k, int oh, int ow,
                                               float v) {
    float zval = 0.0f;
    if (p.residual != EI_RESIDUAL_NONE) {
        const TOut* z = static_cast<const TOut*>(p.z);
        zval = ei_to_float(z[ei_view_index(p.zv, n, k, oh, ow)], p.z_scale);
    }
    v = ei_conv_epilogue(v, zval, p.residual, p.act, p.act_p0, p.act_p1);
    TOut* y = static_cast<TOut*>(p.y);
    ei_store(&y[ei_view_index(p.yv, n, k, oh, ow)], v, p.y_scale);
}

// INT8 requantization of the int32 accumulator (bias included) to a real value, as the CPU
// reference computes it: acc * (x_scale * w_scale[k]) in double, rounded once to float. The
// double multiply runs once per output element, so its cost is negligible beside the K loop,
// and the fp32 result then equals the reference bit for bit.
__device__ __forceinline__ float ei_requantize(int32_t acc, float x_scale, float w_scale) {
    return (float)((double)acc * ((double)x_scale * (double)w_scale));
}

// -- implicit GEMM view of a convolution ------------------------------------------------------
//
// Per group g: C[m, j] = sum_kk A[m, kk] * B[kk, j] with
//   m  in [0, K/g)        output channel g*K/g + m,   A = the weights [K/g, C/g*R*S] (ONNX layout)
//   j  in [0, N*P*Q)      output pixel (n, oh, ow)
//   kk in [0, C/g*R*S)    input channel g*C/g + c, kernel tap (r, s)
// B[kk, j] is the input pixel that tap reads (zero in the padding): gathered, never stored.

struct ConvGemmShape {
    int gm, gn, gk;   // GEMM M, N, K of one group
    int pq, rs;
};

__device__ __forceinline__ ConvGemmShape ei_conv_gemm_shape(const ConvParams& p) {
    ConvGemmShape g;
    g.pq = p.p * p.q;
    g.rs = p.r * p.s;
    g.gm = p.k / p.group;
    g.gn = p.n * g.pq;
    g.gk = (p.c / p.group) * g.rs;
    return g;
}

// A[m, kk] of group `grp`: the ONNX weight tensor read as [K, C/g*R*S] row-major.
template <class T>
__device__ __forceinline__ T ei_conv_weight(const ConvParams& p, const ConvGemmShape& g, int grp,
                                            int m, int kk) {
    if (m >= g.gm || kk >= g.gk) return ei_zero<T>();
    const T* w = static_cast<const T*>(p.weight);
    return w[(int64_t)(grp * g.gm + m) * g.gk + kk];
}

// The loader functors of the shared mainloops (simt_tile.cuh, wmma_tile.cuh) for group grp.
// A: the weights, element (m, kk).
template <class T>
struct ConvLoadA {
    const ConvParams& p;
    ConvGemmShape g;
    int grp;
    __device__ __forceinline__ T operator()(int m, int kk) const {
        return ei_conv_weight<T>(p, g, grp, m, kk);
    }
};
// B of group grp: the im2col gather. A thread loads one fixed column j (output pixel) of the
// B tile at every stage (the mainloops require THREADS % BN == 0), so the pixel's address
// and window origin are computed once (column()); each element then only splits kk into
// (c, r, s) and checks the padding. Zero past the GEMM edges and in the padding.
template <class T>
struct ConvLoadB {
    const ConvParams& p;
    ConvGemmShape g;
    int grp;

    struct Column {
        int64_t base;  // element (n, first channel of the group, 0, 0)
        int ih0, iw0;  // the window's top-left input pixel (may be in the padding)
        bool valid;    // j < N*P*Q
    };

    __device__ __forceinline__ Column column(int j) const {
        Column col;
        col.valid = j < g.gn;
        if (!col.valid) j = 0;
        const int n = j / g.pq, pix = j - (j / g.pq) * g.pq;
        const int oh = pix / p.q, ow = pix - (pix / p.q) * p.q;
        col.base = ei_view_index(p.xv, n, grp * (p.c / p.group), 0, 0);
        col.ih0 = oh * p.stride_h - p.pad_h;
        col.iw0 = ow * p.stride_w - p.pad_w;
        return col;
    }

    __device__ __forceinline__ T operator()(const Column& col, int kk) const {
        if (!col.valid || kk >= g.gk) return ei_zero<T>();
        const int c = kk / g.rs, tap = kk - (kk / g.rs) * g.rs;
        const int r = tap / p.s, s = tap - (tap / p.s) * p.s;
        const int ih = col.ih0 + r * p.dil_h, iw = col.iw0 + s * p.dil_w;
        if (ih < 0 || ih >= p.h || iw < 0 || iw >= p.w) return ei_zero<T>();
        const T* x = static_cast<const T*>(p.x);
        return x[col.base + (int64_t)c * p.xv.channel_stride + (int64_t)ih * p.xv.row_stride + iw];
    }
};

// Output element (n, oh, ow) of GEMM column j.
__device__ __forceinline__ void ei_conv_pixel(const ConvParams& p, const ConvGemmShape& g, int j,
                                              int& n, int& oh, int& ow) {
    n = j / g.pq;
    int pix = j - n * g.pq;
    oh = pix / p.q;
    ow = pix - oh * p.q;
}
