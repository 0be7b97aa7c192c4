// Probes of the emulated CUDA subset (test-only kernels): each writes what the feature under
// test computed, and tests/cuda/test_emulator.py compares it with numpy.
#include "ei_cuda.cuh"

struct ProbeParams {
    const float* x;
    float* out;
    int32_t* iout;
    const void* a;  // operand buffers of the wmma / dp4a probes
    const void* b;
    const void* c;
    void* d;
    int32_t n;
    int32_t mode;
};

// warp intrinsics: 7 outputs per thread
extern "C" __global__ void ei_probe_warp(const ProbeParams p) {
    const int t = int(threadIdx.x);
    const float v = p.x[t];
    const int lane = t % 32;
    float* o = p.out + 4 * t;
    o[0] = __shfl_sync(0xffffffffu, v, (lane * 7 + 3) % 32);
    o[1] = __shfl_down_sync(0xffffffffu, v, 5);
    o[2] = __shfl_up_sync(0xffffffffu, v, 3);
    o[3] = __shfl_xor_sync(0xffffffffu, v, 9);
    int32_t* io = p.iout + 3 * t;
    io[0] = int32_t(__ballot_sync(0xffffffffu, v > 0.0f));
    io[1] = __any_sync(0xffffffffu, v > 2.5f);
    io[2] = __all_sync(0xffffffffu, v > -2.5f);
}
EI_EXPORT(ei_probe_warp, ProbeParams);

// block sum: static shared tree reduction + warp shuffle finish, one output per block
extern "C" __global__ void ei_probe_block_sum(const ProbeParams p) {
    __shared__ float partial[1024];
    const int t = int(threadIdx.x);
    const int i = int(blockIdx.x * blockDim.x) + t;
    partial[t] = i < p.n ? p.x[i] : 0.0f;
    __syncthreads();
    for (int s = int(blockDim.x) / 2; s >= 32; s /= 2) {
        if (t < s) partial[t] += partial[t + s];
        __syncthreads();
    }
    if (t < 32) {
        float v = partial[t];
        for (int off = 16; off > 0; off /= 2) v += __shfl_down_sync(0xffffffffu, v, off);
        if (t == 0) p.out[blockIdx.x] = v;
    }
}
EI_EXPORT(ei_probe_block_sum, ProbeParams);

// dynamic shared memory: reverse each block's slice through it
extern "C" __global__ void ei_probe_reverse(const ProbeParams p) {
    EI_DYNAMIC_SHARED(float, buf);
    const int t = int(threadIdx.x), base = int(blockIdx.x * blockDim.x);
    buf[t] = p.x[base + t];
    __syncthreads();
    p.out[base + t] = buf[int(blockDim.x) - 1 - t];
}
EI_EXPORT(ei_probe_reverse, ProbeParams);

// threads past n return before a __syncthreads the others still reach (exited threads do not
// hold the barrier)
extern "C" __global__ void ei_probe_early_exit(const ProbeParams p) {
    __shared__ float first;
    const int t = int(threadIdx.x);
    if (t >= p.n) return;
    if (t == 0) first = p.x[0];
    __syncthreads();
    p.out[t] = p.x[t] + first;
}
EI_EXPORT(ei_probe_early_exit, ProbeParams);

// atomics on global memory from every thread of every block
extern "C" __global__ void ei_probe_atomics(const ProbeParams p) {
    const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
    if (i >= p.n) return;
    atomicAdd(&p.iout[0], 1);
    atomicMax(&p.iout[1], i);
    atomicMin(&p.iout[2], -i);
    atomicAdd(&p.out[0], p.x[i]);
    atomicCAS(&p.iout[3], 0, i + 1);  // exactly one thread wins
    atomicExch(&p.iout[4], 7);
    atomicOr(reinterpret_cast<unsigned*>(&p.iout[5]), 1u << (i % 32));
}
EI_EXPORT(ei_probe_atomics, ProbeParams);

// half: conversions and arithmetic on pairs (x[2i], x[2i+1]); 6 outputs each, as float
extern "C" __global__ void ei_probe_half(const ProbeParams p) {
    const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
    if (i >= p.n) return;
    const __half a = __float2half_rn(p.x[2 * i]), b = __float2half(p.x[2 * i + 1]);
    float* o = p.out + 6 * i;
    o[0] = __half2float(a);
    o[1] = __half2float(__hadd(a, b));
    o[2] = __half2float(__hmul(a, b));
    o[3] = __half2float(__hfma(a, b, a));
    o[4] = __half2float(__hmax(a, b));
    const float2 f = __half22float2(__hmul2(__floats2half2_rn(p.x[2 * i], p.x[2 * i + 1]),
                                           __floats2half2_rn(2.0f, 0.5f)));
    o[5] = f.x + f.y;
    reinterpret_cast<__half*>(p.d)[i] = __float2half_rn(p.x[2 * i]);
}
EI_EXPORT(ei_probe_half, ProbeParams);

// __dp4a on packed int8 quadruples
extern "C" __global__ void ei_probe_dp4a(const ProbeParams p) {
    const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
    if (i >= p.n) return;
    const int* a = static_cast<const int*>(p.a);
    const int* b = static_cast<const int*>(p.b);
    p.iout[i] = __dp4a(a[i], b[i], i);
}
EI_EXPORT(ei_probe_dp4a, ProbeParams);

// wmma: one warp, D = A (16x16, layout by mode bit 0) * B (layout by bit 1) + C
using namespace nvcuda;

template <typename T, typename Acc, typename LA, typename LB>
__device__ void wmma_probe(const ProbeParams& p) {
    wmma::fragment<wmma::matrix_a, 16, 16, 16, T, LA> fa;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, T, LB> fb;
    wmma::fragment<wmma::accumulator, 16, 16, 16, Acc> fc;
    wmma::load_matrix_sync(fa, static_cast<const T*>(p.a), 16);
    wmma::load_matrix_sync(fb, static_cast<const T*>(p.b), 16);
    wmma::load_matrix_sync(fc, static_cast<const Acc*>(p.c), 16, wmma::mem_row_major);
    wmma::mma_sync(fc, fa, fb, fc);
    for (int e = 0; e < fc.num_elements; ++e) fc.x[e] = fc.x[e] + fc.x[e];  // same op on all
    wmma::store_matrix_sync(static_cast<Acc*>(p.d), fc, 16, wmma::mem_col_major);
}

template <typename T, typename Acc>
__device__ void wmma_layouts(const ProbeParams& p) {
    switch (p.mode) {
        case 0: wmma_probe<T, Acc, wmma::row_major, wmma::row_major>(p); break;
        case 1: wmma_probe<T, Acc, wmma::col_major, wmma::row_major>(p); break;
        case 2: wmma_probe<T, Acc, wmma::row_major, wmma::col_major>(p); break;
        default: wmma_probe<T, Acc, wmma::col_major, wmma::col_major>(p); break;
    }
}

extern "C" __global__ void ei_probe_wmma_f16_f32(const ProbeParams p) { wmma_layouts<__half, float>(p); }
EI_EXPORT(ei_probe_wmma_f16_f32, ProbeParams);
extern "C" __global__ void ei_probe_wmma_f16_f16(const ProbeParams p) { wmma_layouts<__half, __half>(p); }
EI_EXPORT(ei_probe_wmma_f16_f16, ProbeParams);
extern "C" __global__ void ei_probe_wmma_s8(const ProbeParams p) { wmma_layouts<signed char, int>(p); }
EI_EXPORT(ei_probe_wmma_s8, ProbeParams);

// a partial-warp mask, outside the subset: the launch must fail, not hang
extern "C" __global__ void ei_probe_partial_mask(const ProbeParams p) {
    float v = p.x[threadIdx.x];
    if (threadIdx.x < 16) v = __shfl_down_sync(0x0000ffffu, v, 1);
    p.out[threadIdx.x] = v;
}
EI_EXPORT(ei_probe_partial_mask, ProbeParams);

// math functions of the subset, 8 outputs per input
extern "C" __global__ void ei_probe_math(const ProbeParams p) {
    const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
    if (i >= p.n) return;
    const float x = p.x[i];
    float* o = p.out + 8 * i;
    o[0] = rintf(x);
    o[1] = roundf(x);
    o[2] = floorf(x);
    o[3] = float(__float2int_rn(x));
    o[4] = fminf(x, 0.25f) + fmaxf(x, -0.25f);
    o[5] = float(min(int(x), 1) + max(int(x), -1));
    o[6] = tanhf(x);
    o[7] = erff(x);
}
EI_EXPORT(ei_probe_math, ProbeParams);

// lane 0 waits at __syncthreads while the others wait at __syncwarp: a deadlock on the device
// too; the emulator's watchdog must report it instead of hanging
extern "C" __global__ void ei_probe_deadlock(const ProbeParams p) {
    if (threadIdx.x == 0)
        __syncthreads();
    else
        __syncwarp();
    p.out[threadIdx.x] = 1.0f;
}
EI_EXPORT(ei_probe_deadlock, ProbeParams);
