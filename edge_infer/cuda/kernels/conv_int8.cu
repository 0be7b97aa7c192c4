// conv_int8.cu - INT8 implicit-GEMM convolution (the CPU reference's QConv): int8 input
// quantized with one per-tensor scale (x_scale), int8 weights with per-output-channel scales
// (w_scale[K]), int32 bias in accumulator units, exact INT32 accumulation, then the epilogue:
// requantize acc * x_scale * w_scale[k] to a real value, residual and activation in FP32, and
// store as int8 (quantized with the output tensor's y_scale), __half or float. Two versions
// side by side, both against the same reference (tests/cuda/test_conv_int8.py):
//
//   ei_conv_s8_dp4a_<BM>x<BN>_<out>   SIMT: a thread's TMxTN int32 tile, __dp4a on 4-deep k
//                                     (sm_61+); tiles stored k-contiguous [rows][BK + 4]
//                                     bytes so 4 k values are one word and a warp's rows fall
//                                     in distinct banks
//   ei_conv_s8_wmma_<BM>x<BN>_<out>   tensor cores: wmma 16x16x16 s8 -> s32 (sm_72+), the
//                                     shared mainloop of conv_wmma.cuh
//
// <out> is s8, f16 or f32; the residual (if any) has the output's type (int8 with z_scale).
// Grid (ceil(N*P*Q / BN), ceil((K/g) / BM), group); block = (BM/TM)*(BN/TN) or 32 * warps.
#include "ei_cuda.cuh"
#include "conv_params.cuh"
#include "wmma_tile.cuh"

// Accumulator (bias included) of output (grp, m, column j) -> the epilogue and the store.
template <class TOut>
__device__ __forceinline__ void conv_s8_finish(const ConvParams& p, const ConvGemmShape& g,
                                               int grp, int m, int j, int32_t acc) {
    const int k = grp * g.gm + m;
    const int32_t* bias = static_cast<const int32_t*>(p.bias);
    if (bias) acc += bias[k];
    int n, oh, ow;
    ei_conv_pixel(p, g, j, n, oh, ow);
    ei_conv_finish<TOut>(p, n, k, oh, ow, ei_requantize(acc, p.x_scale, p.w_scale[k]));
}

// -- dp4a -------------------------------------------------------------------------------------

template <int BM, int BN, int BK, int TM, int TN, class TOut>
__device__ __forceinline__ void conv_s8_dp4a(const ConvParams& p, int32_t* As32, int32_t* Bs32) {
    constexpr int LDK = BK + 4;  // bytes per stored row: 4-byte aligned, odd word stride
    constexpr int THREADS_N = BN / TN;
    constexpr int THREADS = (BM / TM) * THREADS_N;
    static_assert(BK % 4 == 0, "dp4a consumes k four at a time");
    const ConvGemmShape g = ei_conv_gemm_shape(p);
    const int grp = blockIdx.z, m0 = blockIdx.y * BM, j0 = blockIdx.x * BN;
    const int tid = threadIdx.x;
    const int tm = tid / THREADS_N, tn = tid - (tid / THREADS_N) * THREADS_N;
    int8_t* As = reinterpret_cast<int8_t*>(As32);  // [BM][LDK]
    int8_t* Bs = reinterpret_cast<int8_t*>(Bs32);  // [BN][LDK]

    int32_t acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = 0;

    const ConvLoadA<int8_t> load_a{p, g, grp};
    const ConvLoadB<int8_t> load_b{p, g, grp};
    static_assert(THREADS % BN == 0, "each thread loads one column of the B tile");
    const int b_col = tid % BN;
    const auto column = load_b.column(j0 + b_col);

    for (int k0 = 0; k0 < g.gk; k0 += BK) {
        for (int e = tid; e < BM * BK; e += THREADS) {
            const int mm = e / BK, kk = e - (e / BK) * BK;
            As[mm * LDK + kk] = load_a(m0 + mm, k0 + kk);
        }
        for (int kk = tid / BN; kk < BK; kk += THREADS / BN)
            Bs[b_col * LDK + kk] = load_b(column, k0 + kk);
        __syncthreads();
#pragma unroll
        for (int k4 = 0; k4 < BK / 4; ++k4) {
            int32_t a[TM], b[TN];
#pragma unroll
            for (int i = 0; i < TM; ++i) a[i] = As32[(tm + i * (BM / TM)) * (LDK / 4) + k4];
#pragma unroll
            for (int j = 0; j < TN; ++j) b[j] = Bs32[(tn + j * THREADS_N) * (LDK / 4) + k4];
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j) acc[i][j] = __dp4a(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }

#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int m = m0 + tm + i * (BM / TM);
        if (m >= g.gm) continue;
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int jj = j0 + tn + j * THREADS_N;
            if (jj < g.gn) conv_s8_finish<TOut>(p, g, grp, m, jj, acc[i][j]);
        }
    }
}

#define EI_CONV_S8_DP4A(BM, BN, TM, TN, OUT, TOUT)                                          \
    extern "C" __global__ void ei_conv_s8_dp4a_##BM##x##BN##_##OUT(const ConvParams p) {    \
        __shared__ int32_t As32[BM * (32 + 4) / 4];                                         \
        __shared__ int32_t Bs32[BN * (32 + 4) / 4];                                         \
        conv_s8_dp4a<BM, BN, 32, TM, TN, TOUT>(p, As32, Bs32);                              \
    }                                                                                       \
    EI_EXPORT(ei_conv_s8_dp4a_##BM##x##BN##_##OUT, ConvParams);

EI_CONV_S8_DP4A(64, 64, 4, 4, s8, int8_t)   // 256 threads
EI_CONV_S8_DP4A(64, 64, 4, 4, f16, __half)
EI_CONV_S8_DP4A(64, 64, 4, 4, f32, float)
EI_CONV_S8_DP4A(32, 32, 2, 4, s8, int8_t)   // 128 threads: small layers
EI_CONV_S8_DP4A(32, 32, 2, 4, f16, __half)
EI_CONV_S8_DP4A(32, 32, 2, 4, f32, float)

// -- wmma s8 ----------------------------------------------------------------------------------

template <int BM, int BN, int BK, int WM, int WN, class TOut>
__device__ __forceinline__ void conv_s8_wmma(const ConvParams& p, unsigned char* smem) {
    using Tile = WmmaTile<int8_t, int32_t, BM, BN, BK, WM, WN>;
    const ConvGemmShape g = ei_conv_gemm_shape(p);
    const int grp = blockIdx.z, m0 = blockIdx.y * BM, j0 = blockIdx.x * BN;
    const int32_t* Cs = wmma_mainloop<int8_t, int32_t, BM, BN, BK, WM, WN>(
        ConvLoadA<int8_t>{p, g, grp}, ConvLoadB<int8_t>{p, g, grp}, g.gk, m0, j0, smem);
    for (int e = threadIdx.x; e < BM * BN; e += Tile::THREADS) {
        const int mm = e / BN, jj = e - (e / BN) * BN;
        if (m0 + mm < g.gm && j0 + jj < g.gn)
            conv_s8_finish<TOut>(p, g, grp, m0 + mm, j0 + jj, Cs[mm * Tile::C_LD + jj]);
    }
}

#define EI_CONV_S8_WMMA(BM, BN, WM, WN, OUT, TOUT)                                          \
    extern "C" __global__ void ei_conv_s8_wmma_##BM##x##BN##_##OUT(const ConvParams p) {    \
        __shared__ __align__(32) unsigned char                                              \
            smem[WmmaTile<int8_t, int32_t, BM, BN, 32, WM, WN>::SMEM_BYTES];                \
        conv_s8_wmma<BM, BN, 32, WM, WN, TOUT>(p, smem);                                    \
    }                                                                                       \
    EI_EXPORT(ei_conv_s8_wmma_##BM##x##BN##_##OUT, ConvParams);

EI_CONV_S8_WMMA(64, 64, 32, 32, s8, int8_t)   // 4 warps, 2x2 fragments each
EI_CONV_S8_WMMA(64, 64, 32, 32, f16, __half)
EI_CONV_S8_WMMA(64, 64, 32, 32, f32, float)
EI_CONV_S8_WMMA(32, 32, 16, 16, s8, int8_t)   // 4 warps, 1 fragment each
EI_CONV_S8_WMMA(32, 32, 16, 16, f16, __half)
EI_CONV_S8_WMMA(32, 32, 16, 16, f32, float)
