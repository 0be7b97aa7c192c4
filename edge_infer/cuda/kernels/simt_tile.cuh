// simt_tile.cuh - the FP32 SIMT mainloop shared by the implicit-GEMM convolution and the GEMM:
// threadblock tile BMxBN, BK deep per stage in shared memory, each thread a TMxTN register
// tile (rows TM apart by BM/TM, columns by BN/TN, so a warp's threads read neighbouring
// shared words: no bank conflicts), one FMA per instruction. Operands come from two loader
// functors that return 0 past the edges, so partial tiles need no guard: a(m, k), and b,
// which a thread asks once for its column (col = b.column(j)) and then for b(col, k) at
// every stage (the im2col gather computes the pixel's address once).
#pragma once
#include "ei_cuda.cuh"

template <int BM, int BN, int TM, int TN>
struct SimtTile {
    static constexpr int THREADS_N = BN / TN;
    static constexpr int THREADS = (BM / TM) * THREADS_N;
    // A's shared row pitch: the loads walk k fastest, so without padding a warp's 8 k values
    // would all hit the bank of column m (BM is a multiple of 32); +4 spreads them
    static constexpr int LDA = BM + 4;
    // the block-tile row and column of the thread's register element (i, j)
    static __device__ __forceinline__ int row(int tid, int i) {
        return tid / THREADS_N + i * (BM / TM);
    }
    static __device__ __forceinline__ int col(int tid, int j) {
        return tid % THREADS_N + j * THREADS_N;
    }
};

// Accumulate the block's tile (rows m0.., columns j0.., reduction 0..gk) into acc.
// As is [BK][LDA] (k-major, BM used) and Bs [BK][BN]: both read along rows in the inner
// product.
template <int BM, int BN, int BK, int TM, int TN, class LoadA, class LoadB>
__device__ __forceinline__ void simt_mainloop(const LoadA& load_a, const LoadB& load_b, int gk,
                                              int m0, int j0, float* As, float* Bs,
                                              float (&acc)[TM][TN]) {
    using Tile = SimtTile<BM, BN, TM, TN>;
    const int tid = threadIdx.x;
    const int tm = tid / Tile::THREADS_N, tn = tid - (tid / Tile::THREADS_N) * Tile::THREADS_N;
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;

    // the thread's B column, fixed for the whole mainloop
    static_assert(Tile::THREADS % BN == 0, "each thread loads one column of the B tile");
    const int b_col = tid % BN;
    const auto column = load_b.column(j0 + b_col);

    for (int k0 = 0; k0 < gk; k0 += BK) {
        // global -> shared: consecutive threads on consecutive k of an A row and on
        // consecutive columns of a B row (coalesced where the source is contiguous)
        for (int e = tid; e < BM * BK; e += Tile::THREADS) {
            const int mm = e / BK, kk = e - (e / BK) * BK;
            As[kk * Tile::LDA + mm] = load_a(m0 + mm, k0 + kk);
        }
        for (int kk = tid / BN; kk < BK; kk += Tile::THREADS / BN)
            Bs[kk * BN + b_col] = load_b(column, k0 + kk);
        __syncthreads();
        // shared -> registers -> TMxTN outer products
#pragma unroll
        for (int kk = 0; kk < BK; ++kk) {
            float a[TM], b[TN];
#pragma unroll
            for (int i = 0; i < TM; ++i) a[i] = As[kk * Tile::LDA + tm + i * (BM / TM)];
#pragma unroll
            for (int j = 0; j < TN; ++j) b[j] = Bs[kk * BN + tn + j * Tile::THREADS_N];
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }
}
