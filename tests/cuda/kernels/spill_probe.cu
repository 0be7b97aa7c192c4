// A kernel that must spill when limited to 24 registers (ptxas lower bound) (test-only): proves that the compile
// test's spill check reads a real spill from ptxas's report.
#include "ei_cuda.cuh"

extern "C" __global__ void ei_probe_spill(const float* x, float* y) {
    float v[48];
#pragma unroll
    for (int i = 0; i < 48; ++i) v[i] = x[i * 1024 + threadIdx.x];
#pragma unroll
    for (int k = 0; k < 48; ++k) {
        float s = 0.0f;
#pragma unroll
        for (int i = 0; i < 48; ++i) s += v[i] * v[(i * 7 + k) % 48];
        y[k * 1024 + threadIdx.x] = s;
    }
}
