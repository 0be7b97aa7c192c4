// conv_fp16_wmma.cu - FP16 implicit-GEMM convolution on tensor cores: __half input, weights,
// residual and output, wmma 16x16x16 with FP32 accumulation, the FusedConv epilogue in FP32
// on the accumulator tile and one rounding to FP16 at the store (what the CPU reference's
// Fp16Layer computes).
//
//   ei_conv_f16_wmma_<BM>x<BN>   threadblock tile BM output channels x BN output pixels,
//                                BK = 32 per stage, warp tile WMxWN (see the instantiations)
//
// Grid (ceil(N*P*Q / BN), ceil((K/g) / BM), group); block = 32 * warps. Bias is float [K].
#include "ei_cuda.cuh"
#include "conv_params.cuh"
#include "wmma_tile.cuh"

template <int BM, int BN, int BK, int WM, int WN>
__device__ __forceinline__ void conv_f16_wmma(const ConvParams& p, unsigned char* smem) {
    using Tile = WmmaTile<__half, float, BM, BN, BK, WM, WN>;
    const ConvGemmShape g = ei_conv_gemm_shape(p);
    const int grp = blockIdx.z, m0 = blockIdx.y * BM, j0 = blockIdx.x * BN;
    const float* Cs = wmma_mainloop<__half, float, BM, BN, BK, WM, WN>(
        ConvLoadA<__half>{p, g, grp}, ConvLoadB<__half>{p, g, grp}, g.gk, m0, j0, smem);
    // epilogue: consecutive threads on consecutive pixels, so output rows are coalesced
    const float* bias = static_cast<const float*>(p.bias);
    for (int e = threadIdx.x; e < BM * BN; e += Tile::THREADS) {
        const int mm = e / BN, jj = e - (e / BN) * BN;
        const int m = m0 + mm, j = j0 + jj;
        if (m >= g.gm || j >= g.gn) continue;
        const int k = grp * g.gm + m;
        int n, oh, ow;
        ei_conv_pixel(p, g, j, n, oh, ow);
        ei_conv_finish<__half>(p, n, k, oh, ow, Cs[mm * Tile::C_LD + jj] + (bias ? bias[k] : 0.0f));
    }
}

#define EI_CONV_F16_WMMA(BM, BN, WM, WN)                                                   \
    extern "C" __global__ void ei_conv_f16_wmma_##BM##x##BN(const ConvParams p) {          \
        __shared__ __align__(32) unsigned char                                             \
            smem[WmmaTile<__half, float, BM, BN, 32, WM, WN>::SMEM_BYTES];                 \
        conv_f16_wmma<BM, BN, 32, WM, WN>(p, smem);                                        \
    }                                                                                      \
    EI_EXPORT(ei_conv_f16_wmma_##BM##x##BN, ConvParams);

EI_CONV_F16_WMMA(64, 64, 32, 32)   // 4 warps, 2x2 fragments each
EI_CONV_F16_WMMA(32, 64, 32, 32)   // 2 warps
EI_CONV_F16_WMMA(32, 32, 16, 16)   // 4 warps, 1 fragment each: small layers
EI_CONV_F16_WMMA(16, 64, 16, 32)   // 2 warps: few output channels per group
