// conv_fp32.cu - FP32 SIMT convolution with the fused FusedConv epilogue. Two versions side by
// side, both checked against the same float64 reference (tests/cuda/test_conv_fp32.py):
//
//   ei_conv_f32_direct      one thread per output pixel x EI_DIRECT_KPT output channels: the
//                           input value read for a tap feeds KPT FMAs. No shared memory; the
//                           fallback for any shape and the baseline the GEMMs must beat.
//   ei_conv_f32_igemm_<BM>x<BN>x<BK>
//                           implicit GEMM (see conv_params.cuh): a BMxBN threadblock tile of
//                           (output channels x output pixels), BK deep, staged in shared memory
//                           (weights as they are, the input gathered im2col-style on the fly);
//                           each thread owns a TMxTN register tile (the "warp tile" of SIMT is
//                           the warp's 32 thread tiles), one FMA per instruction.
//
// Grid of the implicit GEMM: (ceil(N*P*Q / BN), ceil((K/g) / BM), group); block BM/TM*BN/TN.
// Grid of direct: (ceil(P*Q / EI_DIRECT_THREADS), group * ceil((K/g) / KPT), N).
#include "ei_cuda.cuh"
#include "conv_params.cuh"
#include "simt_tile.cuh"

#define EI_DIRECT_THREADS 128
#define EI_DIRECT_KPT 4

extern "C" __global__ void ei_conv_f32_direct(const ConvParams p) {
    const int pq = p.p * p.q;
    const int pix = blockIdx.x * blockDim.x + threadIdx.x;
    const int cg = p.c / p.group, kg = p.k / p.group;
    const int kblocks = (kg + EI_DIRECT_KPT - 1) / EI_DIRECT_KPT;
    const int grp = blockIdx.y / kblocks;
    const int m0 = (blockIdx.y - grp * kblocks) * EI_DIRECT_KPT;  // first channel in the group
    const int n = blockIdx.z;
    if (pix >= pq) return;
    const int oh = pix / p.q, ow = pix - oh * p.q;
    const int ih0 = oh * p.stride_h - p.pad_h, iw0 = ow * p.stride_w - p.pad_w;
    const float* x = static_cast<const float*>(p.x);
    const float* w = static_cast<const float*>(p.weight);
    const int taps = cg * p.r * p.s;

    // weight rows past the group's last channel read the last row; their sums are dropped
    const float* wrow[EI_DIRECT_KPT];
#pragma unroll
    for (int i = 0; i < EI_DIRECT_KPT; ++i)
        wrow[i] = w + (int64_t)(grp * kg + min(m0 + i, kg - 1)) * taps;

    float acc[EI_DIRECT_KPT];
#pragma unroll
    for (int i = 0; i < EI_DIRECT_KPT; ++i) acc[i] = 0.0f;

    for (int c = 0; c < cg; ++c) {
        const int64_t plane = ei_view_index(p.xv, n, grp * cg + c, 0, 0);
        for (int r = 0; r < p.r; ++r) {
            const int ih = ih0 + r * p.dil_h;
            if (ih < 0 || ih >= p.h) continue;
            for (int s = 0; s < p.s; ++s) {
                const int iw = iw0 + s * p.dil_w;
                if (iw < 0 || iw >= p.w) continue;
                const float xv = __ldg(&x[plane + (int64_t)ih * p.xv.row_stride + iw]);
                const int t = (c * p.r + r) * p.s + s;
#pragma unroll
                for (int i = 0; i < EI_DIRECT_KPT; ++i) acc[i] += xv * __ldg(&wrow[i][t]);
            }
        }
    }
    const float* bias = static_cast<const float*>(p.bias);
#pragma unroll
    for (int i = 0; i < EI_DIRECT_KPT; ++i) {
        if (m0 + i >= kg) break;
        const int k = grp * kg + m0 + i;
        ei_conv_finish<float>(p, n, k, oh, ow, acc[i] + (bias ? bias[k] : 0.0f));
    }
}
EI_EXPORT(ei_conv_f32_direct, ConvParams);

// -- implicit GEMM ----------------------------------------------------------------------------

// One threadblock tile: BM output channels x BN output pixels of group blockIdx.z, the
// mainloop of simt_tile.cuh over the weights and the gathered input, then the epilogue on the
// thread's register tile.
template <int BM, int BN, int BK, int TM, int TN>
__device__ __forceinline__ void conv_f32_igemm(const ConvParams& p, float* As, float* Bs) {
    using Tile = SimtTile<BM, BN, TM, TN>;
    const ConvGemmShape g = ei_conv_gemm_shape(p);
    const int grp = blockIdx.z, m0 = blockIdx.y * BM, j0 = blockIdx.x * BN;
    float acc[TM][TN];
    simt_mainloop<BM, BN, BK, TM, TN>(ConvLoadA<float>{p, g, grp}, ConvLoadB<float>{p, g, grp},
                                      g.gk, m0, j0, As, Bs, acc);

    // epilogue on the register tile
    const float* bias = static_cast<const float*>(p.bias);
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const int m = m0 + Tile::row(threadIdx.x, i);
        if (m >= g.gm) continue;
        const int k = grp * g.gm + m;
        const float b = bias ? bias[k] : 0.0f;
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const int jj = j0 + Tile::col(threadIdx.x, j);
            if (jj >= g.gn) continue;
            int n, oh, ow;
            ei_conv_pixel(p, g, jj, n, oh, ow);
            ei_conv_finish<float>(p, n, k, oh, ow, acc[i][j] + b);
        }
    }
}

// Each tile shape is its own entry point: a tactic the builder times.
#define EI_CONV_F32_IGEMM(BM, BN, BK, TM, TN)                                              \
    extern "C" __global__ void ei_conv_f32_igemm_##BM##x##BN##x##BK(const ConvParams p) {  \
        __shared__ float As[BK * SimtTile<BM, BN, TM, TN>::LDA];                           \
        __shared__ float Bs[BK * BN];                                                      \
        conv_f32_igemm<BM, BN, BK, TM, TN>(p, As, Bs);                                     \
    }                                                                                      \
    EI_EXPORT(ei_conv_f32_igemm_##BM##x##BN##x##BK, ConvParams);

EI_CONV_F32_IGEMM(64, 64, 8, 4, 4)   // 256 threads: wide layers
EI_CONV_F32_IGEMM(32, 64, 8, 4, 4)   // 128 threads
EI_CONV_F32_IGEMM(32, 32, 8, 2, 4)   // 128 threads: small feature maps
EI_CONV_F32_IGEMM(16, 64, 8, 2, 4)   // 128 threads: few output channels per group
