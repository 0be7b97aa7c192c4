// gemm.cu - batched GEMM for Gemm/MatMul layers: Y = act(alpha * A @ B + beta * C), every
// operand addressed through (batch, row, column) element strides, so transA/transB, MatMul's
// broadcast batch (stride 0) and Gemm's broadcast C (row or column stride 0) are only strides,
// and Y may be a slice of a larger buffer (its row stride).
//
//   ei_gemm_f32_<BM>x<BN>        FP32 SIMT, the mainloop of simt_tile.cuh
//   ei_gemm_f16_wmma_<BM>x<BN>   __half A, B, Y on tensor cores (wmma 16x16x16, FP32
//                                accumulation, the mainloop of wmma_tile.cuh), one rounding to
//                                FP16 at the store
//
//   ei_gemm_s8_wmma_<BM>x<BN>_<out>
//                                INT8 (the CPU reference's QGemm): int8 A with the tensor's
//                                x_scale, int8 B with per-column scales w_scale[N] (QGemm's
//                                W_q [N, K] read through strides), int32 C in accumulator
//                                units, wmma s8 -> s32, requantized as conv_int8.cu does; out
//                                s8 (y_scale), f16 or f32
//
// C is float (null when absent) in the float kernels, int32 in the INT8 ones.
// Grid (ceil(N / BN), ceil(M / BM), batch).
#include "ei_cuda.cuh"
#include "epilogue.cuh"
#include "conv_params.cuh"
#include "simt_tile.cuh"
#include "wmma_tile.cuh"

// Mirrored by edge_infer/cuda/params/gemm.py (GemmParams).
struct GemmParams {
    const void* a;            // [batch][M][K] through a_* strides
    const void* b;            // [batch][K][N] through b_* strides
    const void* c;            // [batch][M][N] through c_* strides (0 to broadcast), or null
    const float* w_scale;     // INT8: per-column (output feature) weight scale [N]
    void* y;                  // [batch][M][N], column stride 1
    int64_t a_batch, b_batch, c_batch, y_batch;
    int32_t a_row, a_col, b_row, b_col, c_row, c_col, y_row;
    int32_t m, n, k, batch;
    float alpha, beta;        // float kernels only
    int32_t act;              // EiAct
    float act_p0, act_p1;
    float x_scale, y_scale;   // INT8: A's scale, an int8 Y's scale
};

// The operand loaders of the mainloops for the block's batch item, 0 outside the matrix.
// A: element (i, k).
template <class T>
struct GemmLoadA {
    const T* ptr;
    int32_t row, col;
    int rows, cols;
    __device__ __forceinline__ T operator()(int i, int k) const {
        if (i >= rows || k >= cols) return ei_zero<T>();
        return ptr[(int64_t)i * row + (int64_t)k * col];
    }
};
// B: a thread's fixed column j (column()), then element (k, j) of it.
template <class T>
struct GemmLoadB {
    const T* ptr;
    int32_t row, col;
    int rows, cols;
    __device__ __forceinline__ int column(int j) const { return j; }
    __device__ __forceinline__ T operator()(int j, int k) const {
        if (k >= rows || j >= cols) return ei_zero<T>();
        return ptr[(int64_t)k * row + (int64_t)j * col];
    }
};

template <class T>
__device__ __forceinline__ GemmLoadA<T> gemm_a(const GemmParams& p) {
    return GemmLoadA<T>{static_cast<const T*>(p.a) + blockIdx.z * p.a_batch, p.a_row, p.a_col,
                        p.m, p.k};
}
template <class T>
__device__ __forceinline__ GemmLoadB<T> gemm_b(const GemmParams& p) {
    return GemmLoadB<T>{static_cast<const T*>(p.b) + blockIdx.z * p.b_batch, p.b_row, p.b_col,
                        p.k, p.n};
}

__device__ __forceinline__ int64_t gemm_c_index(const GemmParams& p, int i, int j) {
    return blockIdx.z * p.c_batch + (int64_t)i * p.c_row + (int64_t)j * p.c_col;
}

// The epilogue of one element: alpha, beta * C, activation, store.
template <class TOut>
__device__ __forceinline__ void gemm_finish(const GemmParams& p, int i, int j, float acc) {
    float v = p.alpha * acc;
    if (p.c) v += p.beta * static_cast<const float*>(p.c)[gemm_c_index(p, i, j)];
    v = ei_activate(v, p.act, p.act_p0, p.act_p1);
    TOut* y = static_cast<TOut*>(p.y) + blockIdx.z * p.y_batch;
    ei_store(&y[(int64_t)i * p.y_row + j], v, 1.0f);
}

template <int BM, int BN, int BK, int TM, int TN>
__device__ __forceinline__ void gemm_f32(const GemmParams& p, float* As, float* Bs) {
    using Tile = SimtTile<BM, BN, TM, TN>;
    const int m0 = blockIdx.y * BM, j0 = blockIdx.x * BN;
    float acc[TM][TN];
    simt_mainloop<BM, BN, BK, TM, TN>(gemm_a<float>(p), gemm_b<float>(p), p.k, m0, j0, As, Bs,
                                      acc);
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int m = m0 + Tile::row(threadIdx.x, i);
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int n = j0 + Tile::col(threadIdx.x, j);
            if (m < p.m && n < p.n) gemm_finish<float>(p, m, n, acc[i][j]);
        }
    }
}

#define EI_GEMM_F32(BM, BN, BK, TM, TN)                                          \
    extern "C" __global__ void ei_gemm_f32_##BM##x##BN(const GemmParams p) {     \
        __shared__ float As[BK * SimtTile<BM, BN, TM, TN>::LDA];                 \
        __shared__ float Bs[BK * BN];                                            \
        gemm_f32<BM, BN, BK, TM, TN>(p, As, Bs);                                 \
    }                                                                            \
    EI_EXPORT(ei_gemm_f32_##BM##x##BN, GemmParams);

EI_GEMM_F32(64, 64, 8, 4, 4)   // 256 threads
EI_GEMM_F32(32, 32, 8, 2, 4)   // 128 threads: small M or N (a detection head's FC)

template <int BM, int BN, int BK, int WM, int WN>
__device__ __forceinline__ void gemm_f16_wmma(const GemmParams& p, unsigned char* smem) {
    using Tile = WmmaTile<__half, float, BM, BN, BK, WM, WN>;
    const int m0 = blockIdx.y * BM, j0 = blockIdx.x * BN;
    const float* Cs = wmma_mainloop<__half, float, BM, BN, BK, WM, WN>(
        gemm_a<__half>(p), gemm_b<__half>(p), p.k, m0, j0, smem);
    for (int e = threadIdx.x; e < BM * BN; e += Tile::THREADS) {
        const int mm = e / BN, jj = e - (e / BN) * BN;
        if (m0 + mm < p.m && j0 + jj < p.n)
            gemm_finish<__half>(p, m0 + mm, j0 + jj, Cs[mm * Tile::C_LD + jj]);
    }
}

#define EI_GEMM_F16_WMMA(BM, BN, WM, WN)                                                   \
    extern "C" __global__ void ei_gemm_f16_wmma_##BM##x##BN(const GemmParams p) {          \
        __shared__ __align__(32) unsigned char                                             \
            smem[WmmaTile<__half, float, BM, BN, 32, WM, WN>::SMEM_BYTES];                 \
        gemm_f16_wmma<BM, BN, 32, WM, WN>(p, smem);                                        \
    }                                                                                      \
    EI_EXPORT(ei_gemm_f16_wmma_##BM##x##BN, GemmParams);

EI_GEMM_F16_WMMA(64, 64, 32, 32)   // 4 warps, 2x2 fragments each
EI_GEMM_F16_WMMA(32, 32, 16, 16)   // 4 warps, 1 fragment each

// -- INT8 ---------------------------------------------------------------------------------------

template <int BM, int BN, int BK, int WM, int WN, class TOut>
__device__ __forceinline__ void gemm_s8_wmma(const GemmParams& p, unsigned char* smem) {
    using Tile = WmmaTile<int8_t, int32_t, BM, BN, BK, WM, WN>;
    const int m0 = blockIdx.y * BM, j0 = blockIdx.x * BN;
    const int32_t* Cs = wmma_mainloop<int8_t, int32_t, BM, BN, BK, WM, WN>(
        gemm_a<int8_t>(p), gemm_b<int8_t>(p), p.k, m0, j0, smem);
    const int32_t* bias = static_cast<const int32_t*>(p.c);
    TOut* y = static_cast<TOut*>(p.y) + blockIdx.z * p.y_batch;
    for (int e = threadIdx.x; e < BM * BN; e += Tile::THREADS) {
        const int mm = e / BN, jj = e - (e / BN) * BN;
        const int i = m0 + mm, j = j0 + jj;
        if (i >= p.m || j >= p.n) continue;
        int32_t acc = Cs[mm * Tile::C_LD + jj];
        if (bias) acc += bias[gemm_c_index(p, i, j)];
        float v = ei_requantize(acc, p.x_scale, p.w_scale[j]);
        v = ei_activate(v, p.act, p.act_p0, p.act_p1);
        ei_store(&y[(int64_t)i * p.y_row + j], v, p.y_scale);
    }
}

#define EI_GEMM_S8_WMMA(BM, BN, WM, WN, OUT, TOUT)                                         \
    extern "C" __global__ void ei_gemm_s8_wmma_##BM##x##BN##_##OUT(const GemmParams p) {   \
        __shared__ __align__(32) unsigned char                                             \
            smem[WmmaTile<int8_t, int32_t, BM, BN, 32, WM, WN>::SMEM_BYTES];               \
        gemm_s8_wmma<BM, BN, 32, WM, WN, TOUT>(p, smem);                                   \
    }                                                                                      \
    EI_EXPORT(ei_gemm_s8_wmma_##BM##x##BN##_##OUT, GemmParams);

EI_GEMM_S8_WMMA(64, 64, 32, 32, s8, int8_t)   // 4 warps, 2x2 fragments each
EI_GEMM_S8_WMMA(64, 64, 32, 32, f16, __half)
EI_GEMM_S8_WMMA(64, 64, 32, 32, f32, float)
EI_GEMM_S8_WMMA(32, 32, 16, 16, s8, int8_t)   // 4 warps, 1 fragment each
EI_GEMM_S8_WMMA(32, 32, 16, 16, f16, __half)
EI_GEMM_S8_WMMA(32, 32, 16, 16, f32, float)
