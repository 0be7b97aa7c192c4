// Included first by every kernel source: the CUDA subset of docs/cuda-kernels.md, the same on
// the device compilers (NVRTC, nvcc) and in the CPU emulator (-DEI_EMULATE, emu/ei_emu.h).
//
// Kernel entry points take ONE parameter, their params struct by value, and are followed by
//   EI_EXPORT(ei_<concept>_<variant>, <Concept>Params);
// which is a check on a device compiler and, in emulation, the host launcher Python calls.
// Dynamic shared memory is declared only through EI_DYNAMIC_SHARED(T, name).
#ifndef EI_CUDA_CUH_
#define EI_CUDA_CUH_

#if defined(EI_EMULATE)
#include "emu/ei_emu.h"
#else
#if defined(__CUDACC_RTC__)
// NVRTC has no C library headers: the fixed-width types the params structs use
typedef signed char int8_t;
typedef unsigned char uint8_t;
typedef short int16_t;
typedef unsigned short uint16_t;
typedef int int32_t;
typedef unsigned int uint32_t;
typedef long long int64_t;
typedef unsigned long long uint64_t;
typedef unsigned long long uintptr_t;
#else
#include <stdint.h>
#endif
#include <cuda_fp16.h>
#include <mma.h>

#define EI_DYNAMIC_SHARED(T, name)                                    \
    extern __shared__ __align__(16) unsigned char ei_dynamic_shared_[]; \
    T* name = reinterpret_cast<T*>(ei_dynamic_shared_)

#define EI_EXPORT(entry, ParamsType) \
    static_assert(sizeof(ParamsType) <= 4096, "kernel parameters must fit in 4 KiB")
#endif

#include "epilogue.cuh"

#endif  // EI_CUDA_CUH_
