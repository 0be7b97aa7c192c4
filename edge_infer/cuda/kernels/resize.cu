// resize.cu - ONNX Resize / Upsample over the two spatial axes of NCHW, nearest and
// (bi)linear, FP32 and FP16 (interpolated in float, as the engine's reference does).
//
//   ei_resize_{f32,f16}   grid (ceil(OH*OW / blockDim.x), C, N), one thread per output element
//
// The coordinate transform (every coordinate_transformation_mode and nearest_mode the
// reference supports) is computed on the host by the reference's own functions
// (edge_infer/engine/ops/resize.py) into per-axis tap tables: for each output row / column
// two source indices and, for linear, two float32 weights. An axis without weights takes its
// first index only (nearest, or an identity axis the reference skips); index -1 marks an
// output outside the crop of tf_crop_and_resize (extrapolation_value). The arithmetic is the
// reference's, rounded op by op, its axes in its order (rows then columns, x[i0] * wy0 +
// x[i1] * wy1 first, unless the node's `axes` list W before H), so FP32 results are bit-equal. The output may be a slice of a larger buffer (own batch
// stride): the nearest upsample of YOLO's neck writes straight into its concat.
// Mirrored by edge_infer/cuda/params/resize.py.
#include "ei_cuda.cuh"
#include "exact_math.cuh"

struct ResizeParams {
    const void* x;               // float / __half [n, c, h, w] at x_batch_stride
    void* y;                     // float / __half [n, c, out_h, out_w] at y_batch_stride
    const int32_t* row_index;    // [out_h, 2]
    const float* row_weight;     // [out_h, 2], or null: take row_index[., 0]
    const int32_t* col_index;    // [out_w, 2]
    const float* col_weight;     // [out_w, 2], or null
    int64_t x_batch_stride;      // elements
    int64_t y_batch_stride;      // elements
    int32_t n, c, h, w;
    int32_t out_h, out_w;
    float extrapolation_value;
    int32_t cols_first;          // the reference interpolates W before H (axes = [.., 3, 2])
};

template <class T>
__device__ __forceinline__ float rs_load(const T* p);
template <>
__device__ __forceinline__ float rs_load<float>(const float* p) {
    return *p;
}
template <>
__device__ __forceinline__ float rs_load<__half>(const __half* p) {
    return __half2float(*p);
}
template <class T>
__device__ __forceinline__ T rs_from(float v);
template <>
__device__ __forceinline__ float rs_from<float>(float v) {
    return v;
}
template <>
__device__ __forceinline__ __half rs_from<__half>(float v) {
    return __float2half_rn(v);
}

// one source row interpolated along the columns (or the column's first index)
template <class T>
__device__ __forceinline__ float rs_row(const T* row, const int* ci, const float* cw) {
    if (!cw) return rs_load<T>(row + ci[0]);
    return ei_fadd(ei_fmul(rs_load<T>(row + ci[0]), cw[0]),
                   ei_fmul(rs_load<T>(row + ci[1]), cw[1]));
}

template <class T>
__device__ void rs_resize(const ResizeParams& p) {
    const int pix = blockIdx.x * blockDim.x + threadIdx.x;
    const int ch = blockIdx.y, img = blockIdx.z;
    if (pix >= p.out_h * p.out_w) return;
    const int oy = pix / p.out_w, ox = pix - oy * p.out_w;
    T* y = (T*)p.y + img * p.y_batch_stride + (int64_t)ch * p.out_h * p.out_w + pix;
    const int* ri = p.row_index + 2 * oy;
    const int* ci = p.col_index + 2 * ox;
    if (ri[0] < 0 || ci[0] < 0) {
        *y = rs_from<T>(p.extrapolation_value);
        return;
    }
    const T* x = (const T*)p.x + img * p.x_batch_stride + (int64_t)ch * p.h * p.w;
    const float* rw = p.row_weight ? p.row_weight + 2 * oy : nullptr;
    const float* cw = p.col_weight ? p.col_weight + 2 * ox : nullptr;
    float v;
    if (!rw) {
        v = rs_row<T>(x + (int64_t)ri[0] * p.w, ci, cw);
    } else if (!cw) {
        v = ei_fadd(ei_fmul(rs_load<T>(x + (int64_t)ri[0] * p.w + ci[0]), rw[0]),
                    ei_fmul(rs_load<T>(x + (int64_t)ri[1] * p.w + ci[0]), rw[1]));
    } else if (p.cols_first) {
        float t[2];
        for (int k = 0; k < 2; ++k) t[k] = rs_row<T>(x + (int64_t)ri[k] * p.w, ci, cw);
        v = ei_fadd(ei_fmul(t[0], rw[0]), ei_fmul(t[1], rw[1]));
    } else {
        float t[2];
        for (int k = 0; k < 2; ++k) {
            const int col = ci[k];
            t[k] = ei_fadd(ei_fmul(rs_load<T>(x + (int64_t)ri[0] * p.w + col), rw[0]),
                           ei_fmul(rs_load<T>(x + (int64_t)ri[1] * p.w + col), rw[1]));
        }
        v = ei_fadd(ei_fmul(t[0], cw[0]), ei_fmul(t[1], cw[1]));
    }
    *y = rs_from<T>(v);
}

extern "C" __global__ void ei_resize_f32(const ResizeParams p) { rs_resize<float>(p); }
EI_EXPORT(ei_resize_f32, ResizeParams);

extern "C" __global__ void ei_resize_f16(const ResizeParams p) { rs_resize<__half>(p); }
EI_EXPORT(ei_resize_f16, ResizeParams);
