// The CUDA subset of docs/cuda-kernels.md, implemented on the host so that the same .cu
// sources run on a CPU (compiled with -DEI_EMULATE by edge_infer/cuda/emulator.py).
//
// Execution model (why: see docs/cuda-kernels.md): every CUDA thread of a block is an OS
// thread of a reusable team; the blocks of a grid run one after another; __syncthreads is a
// real barrier; warp intrinsics exchange values through a per-warp buffer between two warp
// barriers. A missing barrier is therefore a real data race that ThreadSanitizer reports,
// and an out-of-bounds access a real one that AddressSanitizer reports.
#ifndef EI_EMU_H_
#define EI_EMU_H_

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <type_traits>

// -- qualifiers: plain host functions ------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
#define __constant__ static
// Blocks run one after another, so a function-static array is the running block's shared
// memory (one instance per kernel instantiation, as on the device).
#define __shared__ static

// -- built-in vector types -----------------------------------------------------------------------
struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};
struct __align__(8) int2 { int x, y; };
struct int3 { int x, y, z; };
struct __align__(16) int4 { int x, y, z, w; };
struct __align__(8) uint2 { unsigned x, y; };
struct __align__(16) uint4 { unsigned x, y, z, w; };
struct __align__(8) float2 { float x, y; };
struct float3 { float x, y, z; };
struct __align__(16) float4 { float x, y, z, w; };
struct __align__(4) char4 { signed char x, y, z, w; };
struct __align__(4) uchar4 { unsigned char x, y, z, w; };
struct __align__(2) uchar2 { unsigned char x, y; };
struct uchar3 { unsigned char x, y, z; };
inline int2 make_int2(int x, int y) { return {x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float3 make_float3(float x, float y, float z) { return {x, y, z}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline char4 make_char4(signed char x, signed char y, signed char z, signed char w) {
    return {x, y, z, w};
}
inline uchar4 make_uchar4(unsigned char x, unsigned char y, unsigned char z, unsigned char w) {
    return {x, y, z, w};
}

// -- the emulator runtime (ei_emu.cpp) -----------------------------------------------------------
extern thread_local uint3 threadIdx;
extern thread_local uint3 blockIdx;
extern thread_local dim3 blockDim;
extern thread_local dim3 gridDim;
static const int warpSize = 32;

namespace ei_emu {
typedef void (*Thunk)(const void* params);

// Runs ``thunk`` on every thread of every block; 0 on success, else see ei_emu_last_error().
int launch(Thunk thunk, const void* params, const unsigned grid[3], const unsigned block[3],
           size_t shared_bytes);
// Aborts the calling CUDA thread's kernel (as __trap does) and fails the launch with ``why``.
[[noreturn]] void trap(const char* why);
void syncthreads();
unsigned lane();
unsigned live_lanes();
// Barrier of the calling warp's live lanes; traps unless ``mask`` covers all of them.
// Returns how many lanes took part.
unsigned warp_sync(unsigned mask);
uint64_t* warp_slots();   // 32 exchange slots of the calling warp
float* warp_scratch();    // 3 x 256 floats per warp, for wmma::mma_sync
unsigned char* dynamic_shared();
}  // namespace ei_emu

extern "C" const char* ei_emu_last_error(void);
extern "C" int ei_emu_team_size(void);
extern "C" const char* ei_emu_scheduler(void);  // "fibers" or "threads"
extern "C" void ei_emu_set_hang_seconds(int seconds);

inline void __syncthreads() { ei_emu::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { (void)ei_emu::warp_sync(mask); }
inline unsigned __activemask() { return ei_emu::live_lanes(); }
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
[[noreturn]] inline void __trap() { ei_emu::trap("__trap() called"); }
template <typename T>
inline T __ldg(const T* p) { return *p; }

// -- warp intrinsics: write own slot, warp barrier, read a slot, warp barrier -------------------
namespace ei_emu {
template <typename T>
inline T warp_exchange(unsigned mask, T value, unsigned src) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value,
                  "warp shuffles move values of at most 8 bytes");
    uint64_t* slots = warp_slots();
    uint64_t bits = 0;
    memcpy(&bits, &value, sizeof(T));
    slots[lane()] = bits;
    warp_sync(mask);
    uint64_t got = slots[src & 31u];
    warp_sync(mask);
    T out;
    memcpy(&out, &got, sizeof(T));
    return out;
}
inline unsigned segment_base(unsigned width) { return lane() & ~(width - 1u); }
}  // namespace ei_emu

template <typename T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    unsigned w = unsigned(width);
    return ei_emu::warp_exchange(mask, v, ei_emu::segment_base(w) + (unsigned(src) & (w - 1u)));
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    unsigned w = unsigned(width), l = ei_emu::lane();
    unsigned src = ((l & (w - 1u)) + delta < w) ? l + delta : l;
    return ei_emu::warp_exchange(mask, v, src);
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    unsigned w = unsigned(width), l = ei_emu::lane();
    unsigned src = ((l & (w - 1u)) >= delta) ? l - delta : l;
    return ei_emu::warp_exchange(mask, v, src);
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    unsigned w = unsigned(width), l = ei_emu::lane();
    unsigned src = l ^ unsigned(lane_mask);
    if ((src & ~(w - 1u)) != (l & ~(w - 1u))) src = l;
    return ei_emu::warp_exchange(mask, v, src);
}
namespace ei_emu {
// the ballot of the taking-part lanes, and (in *voters) who they were: read between the two
// barriers, where no taking-part lane can have exited yet (after them, one may have)
inline unsigned ballot(unsigned mask, int predicate, unsigned* voters) {
    uint64_t* slots = warp_slots();
    slots[lane()] = predicate ? 1u : 0u;
    warp_sync(mask);
    unsigned live = live_lanes() & mask, out = 0;
    for (unsigned l = 0; l < 32; ++l)
        if (((live >> l) & 1u) && slots[l]) out |= 1u << l;
    warp_sync(mask);
    *voters = live;
    return out;
}
}  // namespace ei_emu

inline unsigned __ballot_sync(unsigned mask, int predicate) {
    unsigned voters;
    return ei_emu::ballot(mask, predicate, &voters);
}
inline int __any_sync(unsigned mask, int predicate) { return __ballot_sync(mask, predicate) != 0; }
inline int __all_sync(unsigned mask, int predicate) {
    unsigned voters;
    return ei_emu::ballot(mask, predicate, &voters) == voters;
}

// -- atomics (relaxed, as on the device) ---------------------------------------------------------
namespace ei_emu {
template <typename T, typename F>
inline T atomic_update(T* p, F f) {
    T old = __atomic_load_n(p, __ATOMIC_RELAXED);
    while (!__atomic_compare_exchange_n(p, &old, f(old), true, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED)) {
    }
    return old;
}
template <typename T, typename F>
inline float atomic_update_float(float* p, F f) {
    static_assert(sizeof(T) == sizeof(float), "bits of a float");
    T* bits = reinterpret_cast<T*>(p);
    T old = __atomic_load_n(bits, __ATOMIC_RELAXED);
    for (;;) {
        float of, nf;
        memcpy(&of, &old, 4);
        nf = f(of);
        T nb;
        memcpy(&nb, &nf, 4);
        if (__atomic_compare_exchange_n(bits, &old, nb, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            return of;
    }
}
}  // namespace ei_emu

inline int atomicAdd(int* p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_RELAXED); }
inline unsigned atomicAdd(unsigned* p, unsigned v) {
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
    return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}
inline float atomicAdd(float* p, float v) {
    return ei_emu::atomic_update_float<uint32_t>(p, [v](float o) { return o + v; });
}
inline int atomicSub(int* p, int v) { return __atomic_fetch_sub(p, v, __ATOMIC_RELAXED); }
inline unsigned atomicSub(unsigned* p, unsigned v) {
    return __atomic_fetch_sub(p, v, __ATOMIC_RELAXED);
}
inline int atomicExch(int* p, int v) { return __atomic_exchange_n(p, v, __ATOMIC_RELAXED); }
inline unsigned atomicExch(unsigned* p, unsigned v) {
    return __atomic_exchange_n(p, v, __ATOMIC_RELAXED);
}
inline float atomicExch(float* p, float v) {
    return ei_emu::atomic_update_float<uint32_t>(p, [v](float) { return v; });
}
inline int atomicCAS(int* p, int cmp, int v) {
    __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return cmp;
}
inline unsigned atomicCAS(unsigned* p, unsigned cmp, unsigned v) {
    __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return cmp;
}
inline unsigned long long atomicCAS(unsigned long long* p, unsigned long long cmp,
                                    unsigned long long v) {
    __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
    return cmp;
}
inline int atomicMax(int* p, int v) {
    return ei_emu::atomic_update(p, [v](int o) { return o > v ? o : v; });
}
inline unsigned atomicMax(unsigned* p, unsigned v) {
    return ei_emu::atomic_update(p, [v](unsigned o) { return o > v ? o : v; });
}
inline int atomicMin(int* p, int v) {
    return ei_emu::atomic_update(p, [v](int o) { return o < v ? o : v; });
}
inline unsigned atomicMin(unsigned* p, unsigned v) {
    return ei_emu::atomic_update(p, [v](unsigned o) { return o < v ? o : v; });
}
inline int atomicOr(int* p, int v) { return __atomic_fetch_or(p, v, __ATOMIC_RELAXED); }
inline unsigned atomicOr(unsigned* p, unsigned v) {
    return __atomic_fetch_or(p, v, __ATOMIC_RELAXED);
}
inline int atomicAnd(int* p, int v) { return __atomic_fetch_and(p, v, __ATOMIC_RELAXED); }
inline unsigned atomicAnd(unsigned* p, unsigned v) {
    return __atomic_fetch_and(p, v, __ATOMIC_RELAXED);
}

// -- math: the precise functions; device intrinsics differ within their documented error -------
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __powf(float x, float y) { return powf(x, y); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : (x == x ? x : 0.0f)); }
inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline int __float2int_rn(float x) {
    // the device saturates and maps NaN to 0; a C++ cast would be undefined there
    if (x != x) return 0;
    if (x >= 2147483648.0f) return 2147483647;
    if (x < -2147483648.0f) return (-2147483647 - 1);
    return int(rintf(x));
}
inline int __float2int_rz(float x) { return __float2int_rn(truncf(x)); }
inline int __float2int_rd(float x) { return __float2int_rn(floorf(x)); }
inline int __float2int_ru(float x) { return __float2int_rn(ceilf(x)); }
inline unsigned __float2uint_rn(float x) {
    if (x != x || x <= 0.0f) return 0u;
    if (x >= 4294967296.0f) return 4294967295u;
    return unsigned(rintf(x));
}
inline float __int2float_rn(int x) { return float(x); }
inline int __float_as_int(float x) { int i; memcpy(&i, &x, 4); return i; }
inline unsigned __float_as_uint(float x) { unsigned i; memcpy(&i, &x, 4); return i; }
inline float __int_as_float(int i) { float x; memcpy(&x, &i, 4); return x; }
inline float __uint_as_float(unsigned i) { float x; memcpy(&x, &i, 4); return x; }
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz(unsigned(x)); }
inline int __ffs(int x) { return __builtin_ffs(x); }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
// mixed int/unsigned arguments resolve to unsigned, as the device's overloads do
inline unsigned min(int a, unsigned b) { return min(unsigned(a), b); }
inline unsigned min(unsigned a, int b) { return min(a, unsigned(b)); }
inline unsigned max(int a, unsigned b) { return max(unsigned(a), b); }
inline unsigned max(unsigned a, int b) { return max(a, unsigned(b)); }

// -- __dp4a: four int8 (or uint8) products summed into a 32-bit accumulator, exactly -----------
inline int __dp4a(int a, int b, int c) {
    int acc = c;
    for (int i = 0; i < 4; ++i)
        acc += int(int8_t(uint32_t(a) >> (8 * i))) * int(int8_t(uint32_t(b) >> (8 * i)));
    return acc;
}
inline unsigned __dp4a(unsigned a, unsigned b, unsigned c) {
    unsigned acc = c;
    for (int i = 0; i < 4; ++i) acc += ((a >> (8 * i)) & 0xffu) * ((b >> (8 * i)) & 0xffu);
    return acc;
}
inline int __dp4a(char4 a, char4 b, int c) {
    int ai, bi;
    memcpy(&ai, &a, 4);
    memcpy(&bi, &b, 4);
    return __dp4a(ai, bi, c);
}

#include "ei_emu_half.h"
#include "ei_emu_wmma.h"

// -- the library's two macros --------------------------------------------------------------------
#define EI_DYNAMIC_SHARED(T, name) T* name = reinterpret_cast<T*>(ei_emu::dynamic_shared())

// A host launcher ``<entry>__launch`` and ``<entry>__params_size`` (Python checks its ctypes
// mirror against it) for the kernel ``entry``, whose one parameter is a ``ParamsType``.
#define EI_EXPORT(entry, ParamsType)                                                         \
    static void entry##__thunk(const void* p) { entry(*static_cast<const ParamsType*>(p)); } \
    extern "C" __attribute__((visibility("default"))) int entry##__launch(                   \
        const void* p, const unsigned* grid, const unsigned* block, size_t shared_bytes) {   \
        return ei_emu::launch(&entry##__thunk, p, grid, block, shared_bytes);                \
    }                                                                                        \
    extern "C" __attribute__((visibility("default"))) size_t entry##__params_size(void) {    \
        return sizeof(ParamsType);                                                           \
    }                                                                                        \
    static_assert(sizeof(ParamsType) <= 4096, "kernel parameters must fit in 4 KiB")

#endif  // EI_EMU_H_
