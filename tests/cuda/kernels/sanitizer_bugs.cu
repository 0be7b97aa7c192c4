// Planted bugs that the sanitized emulator builds must catch (test-only kernels).
#include "ei_cuda.cuh"

struct BugParams {
    const float* x;
    float* out;
    int32_t n;
};

// reads one element past the end of x: AddressSanitizer reports a heap-buffer-overflow
extern "C" __global__ void ei_bug_oob_read(const BugParams p) {
    const int i = int(blockIdx.x * blockDim.x + threadIdx.x);
    if (i < p.n) p.out[i] = p.x[i] + p.x[i + 1];
}
EI_EXPORT(ei_bug_oob_read, BugParams);

// every thread writes its shared slot and reads its neighbour's with no __syncthreads in
// between: ThreadSanitizer reports a data race
extern "C" __global__ void ei_bug_missing_sync(const BugParams p) {
    __shared__ float slot[256];
    const int t = int(threadIdx.x);
    slot[t] = p.x[t];
    // __syncthreads();  <- missing
    p.out[t] = slot[(t + 1) % int(blockDim.x)];
}
EI_EXPORT(ei_bug_missing_sync, BugParams);

// the same kernel with the barrier: ThreadSanitizer must stay quiet
extern "C" __global__ void ei_bug_fixed_sync(const BugParams p) {
    __shared__ float slot[256];
    const int t = int(threadIdx.x);
    slot[t] = p.x[t];
    __syncthreads();
    p.out[t] = slot[(t + 1) % int(blockDim.x)];
}
EI_EXPORT(ei_bug_fixed_sync, BugParams);
