// wmma_tile.cuh - the tensor-core mainloop of the implicit-GEMM convolutions (FP16, INT8) and
// of the GEMM, CUTLASS-style: threadblock tile BMxBN (BK deep per stage) -> warp tile WMxWN ->
// wmma instruction 16x16x16. The operands come from two loader functors (a(m, k), b(k, j):
// the conv's weights and im2col gather, or a GEMM's strided matrices), zero past the edges;
// as in simt_tile.cuh, a thread loads one fixed column of B: b(b.column(j), k).
// The block's accumulator tile ends in shared memory; each kernel's epilogue reads it there.
//
// Shared-memory layout, chosen for wmma's alignment rule (every fragment pointer 256-bit
// aligned) with 1-byte int8 elements, where a k offset of 16 elements is only 16 bytes: both
// operand tiles are stored in 16-deep k chunks, A as [BK/16][BM][16] (row-major fragments,
// ldm 16) and B as [BK/16][BN][16] (column-major fragments, ldm 16), so every fragment starts
// at a multiple of 16 rows * 16 elements. The same layout serves __half (ldm 16 = 32 bytes).
#pragma once
#include "ei_cuda.cuh"

template <class T, class TAcc, int BM, int BN, int BK, int WM, int WN>
struct WmmaTile {
    static constexpr int WARPS_N = BN / WN;
    static constexpr int WARPS = (BM / WM) * WARPS_N;
    static constexpr int THREADS = WARPS * 32;
    static constexpr int FM = WM / 16, FN = WN / 16;  // fragments per warp tile
    static constexpr int C_LD = BN + 4;               // padded row of the accumulator tile
    static constexpr int AB_BYTES = (BM + BN) * BK * (int)sizeof(T);
    static constexpr int C_BYTES = BM * C_LD * (int)sizeof(TAcc);
    // the operand tiles and the accumulator tile are never live together: one buffer
    static constexpr int SMEM_BYTES = AB_BYTES > C_BYTES ? AB_BYTES : C_BYTES;
};

// Compute this block's BMxBN tile (rows m0.., columns j0.., reduction 0..gk) and leave it in
// smem as TAcc [BM][C_LD]; returns that pointer. All threads take part.
template <class T, class TAcc, int BM, int BN, int BK, int WM, int WN, class LoadA, class LoadB>
__device__ __forceinline__ const TAcc* wmma_mainloop(const LoadA& load_a, const LoadB& load_b,
                                                     int gk, int m0, int j0,
                                                     unsigned char* smem) {
    using namespace nvcuda;
    using Tile = WmmaTile<T, TAcc, BM, BN, BK, WM, WN>;
    static_assert(BK % 16 == 0 && WM % 16 == 0 && WN % 16 == 0, "wmma tiles are 16x16x16");
    T* As = reinterpret_cast<T*>(smem);   // [BK/16][BM][16]
    T* Bs = As + BM * BK;                 // [BK/16][BN][16]
    const int tid = threadIdx.x;
    const int warp = tid / 32;
    const int wm = warp / Tile::WARPS_N, wn = warp - (warp / Tile::WARPS_N) * Tile::WARPS_N;

    wmma::fragment<wmma::accumulator, 16, 16, 16, TAcc> acc[Tile::FM][Tile::FN];
#pragma unroll
    for (int i = 0; i < Tile::FM; ++i)
#pragma unroll
        for (int j = 0; j < Tile::FN; ++j) wmma::fill_fragment(acc[i][j], (TAcc)0);

    static_assert(Tile::THREADS % BN == 0, "each thread loads one column of the B tile");
    const int b_col = tid % BN;
    const auto column = load_b.column(j0 + b_col);

    for (int k0 = 0; k0 < gk; k0 += BK) {
        // global -> shared, zero-filled past the GEMM edges (partial tiles)
        for (int e = tid; e < BM * BK; e += Tile::THREADS) {
            const int mm = e / BK, kk = e - (e / BK) * BK;
            As[(kk / 16) * BM * 16 + mm * 16 + (kk & 15)] = load_a(m0 + mm, k0 + kk);
        }
        for (int kk = tid / BN; kk < BK; kk += Tile::THREADS / BN)
            Bs[(kk / 16) * BN * 16 + b_col * 16 + (kk & 15)] = load_b(column, k0 + kk);
        __syncthreads();
#pragma unroll
        for (int kc = 0; kc < BK / 16; ++kc) {
            wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major> a[Tile::FM];
            wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major> b[Tile::FN];
#pragma unroll
            for (int i = 0; i < Tile::FM; ++i)
                wmma::load_matrix_sync(a[i], As + (kc * BM + wm * WM + i * 16) * 16, 16);
#pragma unroll
            for (int j = 0; j < Tile::FN; ++j)
                wmma::load_matrix_sync(b[j], Bs + (kc * BN + wn * WN + j * 16) * 16, 16);
#pragma unroll
            for (int i = 0; i < Tile::FM; ++i)
#pragma unroll
                for (int j = 0; j < Tile::FN; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }

    // accumulators -> shared (the operand tiles are dead: the buffer is reused)
    TAcc* Cs = reinterpret_cast<TAcc*>(smem);
#pragma unroll
    for (int i = 0; i < Tile::FM; ++i)
#pragma unroll
        for (int j = 0; j < Tile::FN; ++j)
            wmma::store_matrix_sync(Cs + (wm * WM + i * 16) * Tile::C_LD + wn * WN + j * 16,
                                    acc[i][j], Tile::C_LD, wmma::mem_row_major);
    __syncthreads();
    return Cs;
}
