// preprocess.cu - a batch of uint8 BGR frames -> the detector's input, in one kernel:
// letterbox (the daemon's geometry, edge_infer/pipeline/preprocess.py), bilinear resize,
// BGR -> RGB, x 1/255, NCHW, FP32 or FP16, written straight into the engine's input buffer.
//
//   ei_preprocess_letterbox_f32 / _f16   grid (ceil(W / blockDim.x), ceil(H / EI_PRE_ROWS),
//                                        batch): a thread per output column, EI_PRE_ROWS rows
//                                        of it (three channels each); the float64 tap
//                                        coordinates once per column and once per row
//
// Each frame has its own size, row pitch and pointer (PreprocessFrame, a device array), so
// frames of several cameras go in one launch. The letterbox geometry (resized size, padding)
// and cv2's resize scale (1 / (new / old), in double, as cv::resize computes it) come from the
// host: they are Python's own rounding, and computing them there keeps one definition.
//
// The resize is cv2's INTER_LINEAR for 8-bit images, replayed in integers: 11-bit weights
// from float source coordinates (columns past the border clamped with a zero fraction, rows
// clamped but weighted as computed, as cv2's resizeGeneric does), the horizontal pass exact
// in int32, the vertical pass as cv2's SIMD path computes it ((row >> 4) * w >> 16, summed,
// rounded >> 2). tests/cuda/test_preprocess.py: equal to the reference (cv2) on down- and
// upscales; a cv2 whose vertical pass falls back to its scalar code (a row tail narrower
// than a vector) may differ by one 8-bit level there.
// Pixel values are float(v) * float(1/255) and padding float(114/255), as numpy computes them.
// Mirrored by edge_infer/cuda/params/preprocess.py.
#include "ei_cuda.cuh"
#include "exact_math.cuh"

#define EI_PRE_ROWS 16  // output rows per block: the row taps are computed once per block

struct PreprocessFrame {
    const unsigned char* data;  // BGR, HWC, row_pitch bytes per row
    double scale_x, scale_y;    // cv::resize's 1 / (new_width / width), 1 / (new_height / height)
    int32_t width, height, row_pitch;
    int32_t new_width, new_height;  // letterboxed (resized) size, pad_x + new_width <= W
    int32_t pad_x, pad_y;
    int32_t reserved;
};

struct PreprocessParams {
    const PreprocessFrame* frames;  // [batch]
    void* out;                      // float or __half [batch, 3, height, width] (+ strides)
    int64_t batch_stride;           // elements between images of out
    int32_t batch;
    int32_t width, height;          // model input
    float pad_value;                // float32(114 / 255)
    float inv_255;                  // float32(1 / 255)
    int32_t reserved;
};

struct PpTap {
    int s0, s1, a0, a1;
};

// cv2's linear tap for destination index d (resize.cpp: fx = (float)((d + 0.5) * scale - 0.5),
// floor, weights cvRound((1 - fx) * 2048) and cvRound(fx * 2048)). Columns (clamp = true)
// past a border take the edge pixel with a zero fraction; rows keep their fraction and only
// their indices are clamped (cv2 clips the row it fetches, not the weight).
__device__ __forceinline__ PpTap pp_linear_tap(int d, int src, double scale, bool clamp) {
    float f = (float)ei_dsub(ei_dmul(ei_dadd((double)d, 0.5), scale), 0.5);
    int s = (int)floorf(f);
    f = ei_fsub(f, (float)s);
    if (clamp && s < 0) {
        s = 0;
        f = 0.0f;
    }
    if (clamp && s >= src - 1) {
        s = src - 1;
        f = 0.0f;
    }
    PpTap t;
    t.s0 = s < 0 ? 0 : (s > src - 1 ? src - 1 : s);
    t.s1 = s + 1 < 0 ? 0 : (s + 1 > src - 1 ? src - 1 : s + 1);
    t.a0 = __float2int_rn(ei_fmul(ei_fsub(1.0f, f), 2048.0f));
    t.a1 = __float2int_rn(ei_fmul(f, 2048.0f));
    return t;
}

template <class T>
__device__ __forceinline__ T pp_store(float v);
template <>
__device__ __forceinline__ float pp_store<float>(float v) {
    return v;
}
template <>
__device__ __forceinline__ __half pp_store<__half>(float v) {
    return __float2half_rn(v);
}

template <class T>
__device__ void pp_letterbox(const PreprocessParams& p) {
    __shared__ PpTap s_rows[EI_PRE_ROWS];
    const int n = blockIdx.z;
    const PreprocessFrame f = p.frames[n];
    const int x = blockIdx.x * blockDim.x + threadIdx.x, y0 = blockIdx.y * EI_PRE_ROWS;
    // the taps' float64 coordinates once per row (shared) and once per column (register)
    for (int r = threadIdx.x; r < EI_PRE_ROWS; r += blockDim.x)
        s_rows[r] = pp_linear_tap(y0 + r - f.pad_y, f.height, f.scale_y, false);
    const int dx = x - f.pad_x;
    const bool col_in = x < p.width && dx >= 0 && dx < f.new_width;
    const PpTap tx = pp_linear_tap(col_in ? dx : 0, f.width, f.scale_x, true);
    __syncthreads();
    if (x >= p.width) return;
    const int hw = p.width * p.height;
    const T pad = pp_store<T>(p.pad_value);
    for (int r = 0; r < EI_PRE_ROWS && y0 + r < p.height; ++r) {
        const int y = y0 + r, dy = y - f.pad_y;
        T* out = (T*)p.out + n * p.batch_stride + (int64_t)y * p.width + x;
        if (!col_in || dy < 0 || dy >= f.new_height) {
            out[0] = pad;
            out[hw] = pad;
            out[2 * hw] = pad;
            continue;
        }
        const PpTap ty = s_rows[r];
        const unsigned char* r0 = f.data + (int64_t)ty.s0 * f.row_pitch;
        const unsigned char* r1 = f.data + (int64_t)ty.s1 * f.row_pitch;
        for (int ch = 0; ch < 3; ++ch) {  // BGR in, channel ch goes to plane 2 - ch (RGB out)
            const int h0 = r0[tx.s0 * 3 + ch] * tx.a0 + r0[tx.s1 * 3 + ch] * tx.a1;
            const int h1 = r1[tx.s0 * 3 + ch] * tx.a0 + r1[tx.s1 * 3 + ch] * tx.a1;
            int v = ((((h0 >> 4) * ty.a0) >> 16) + (((h1 >> 4) * ty.a1) >> 16) + 2) >> 2;
            v = v < 0 ? 0 : (v > 255 ? 255 : v);
            out[(2 - ch) * hw] = pp_store<T>(ei_fmul((float)v, p.inv_255));
        }
    }
}

extern "C" __global__ void ei_preprocess_letterbox_f32(const PreprocessParams p) {
    pp_letterbox<float>(p);
}
EI_EXPORT(ei_preprocess_letterbox_f32, PreprocessParams);

extern "C" __global__ void ei_preprocess_letterbox_f16(const PreprocessParams p) {
    pp_letterbox<__half>(p);
}
EI_EXPORT(ei_preprocess_letterbox_f16, PreprocessParams);
