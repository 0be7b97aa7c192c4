// exact_math.cuh - IEEE-rounded arithmetic that the compiler may not fuse, for kernels whose
// results must equal a numpy reference bit for bit (preprocess coordinates, postprocess boxes
// and IoU). nvcc contracts a * b + c into one FMA by default, which rounds once instead of
// twice; that moves a box edge by an ulp and can flip an IoU-vs-threshold decision. The
// device versions are CUDA's `__fadd_rn` family (never contracted); the emulated versions
// round through a volatile so no host compiler (-march=native, -ffp-contract=fast) fuses them.
#pragma once
#include "ei_cuda.cuh"

#ifdef EI_EMULATE
#define EI_EXACT_OP(name, type, op)                                                        \
    static inline type name(type a, type b) {                                               \
        volatile type r = a op b;                                                           \
        return r;                                                                           \
    }
EI_EXACT_OP(ei_fadd, float, +)
EI_EXACT_OP(ei_fsub, float, -)
EI_EXACT_OP(ei_fmul, float, *)
EI_EXACT_OP(ei_fdiv, float, /)
EI_EXACT_OP(ei_dadd, double, +)
EI_EXACT_OP(ei_dsub, double, -)
EI_EXACT_OP(ei_dmul, double, *)
EI_EXACT_OP(ei_ddiv, double, /)
#undef EI_EXACT_OP
static inline int ei_popc(unsigned x) { return __builtin_popcount(x); }
#else
__device__ __forceinline__ float ei_fadd(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ float ei_fsub(float a, float b) { return __fsub_rn(a, b); }
__device__ __forceinline__ float ei_fmul(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float ei_fdiv(float a, float b) { return __fdiv_rn(a, b); }
__device__ __forceinline__ double ei_dadd(double a, double b) { return __dadd_rn(a, b); }
__device__ __forceinline__ double ei_dsub(double a, double b) { return __dsub_rn(a, b); }
__device__ __forceinline__ double ei_dmul(double a, double b) { return __dmul_rn(a, b); }
__device__ __forceinline__ double ei_ddiv(double a, double b) { return __ddiv_rn(a, b); }
__device__ __forceinline__ int ei_popc(unsigned x) { return __popc(x); }
#endif

// NaN and finiteness without isnan/isfinite (not in the subset); valid without fast-math,
// which no kernel of this library is compiled with.
__device__ __forceinline__ bool ei_isnan(float x) { return x != x; }
__device__ __forceinline__ bool ei_isfinite(float x) { return fabsf(x) <= 3.402823466e38f; }

// numpy's clip for floats: NaN passes through, +-inf land on the bounds
__device__ __forceinline__ float ei_clip_nan(float x, float lo, float hi) {
    return ei_isnan(x) ? x : fminf(fmaxf(x, lo), hi);
}
