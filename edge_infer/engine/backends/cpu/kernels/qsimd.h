/* Vector helpers of the INT8 kernels (conv_int8_dw.c, reformat.c): the storage conversions of
 * edge_infer::QConv / Reformat (ops/quantize.py), bit for bit.
 *
 * Storage kinds (enum ei_storage): EI_F32, EI_F16, EI_S8. Semantics:
 *   int8 -> real   float32(q) * float32(scale)              (one float32 rounding)
 *   real -> int8   rint(double(y) / double(scale)), clipped to [-128, 127] (half to even)
 *   real -> fp16   round to nearest even (beyond the range: +-inf), as numpy's astype
 * The double division is done as a float32 multiplication by the reciprocal (a division per
 * value would cost more than a depthwise layer's arithmetic), exact where it cannot round
 * differently; a vector with a lane near a half is divided exactly instead (quant8). */
#ifndef EDGE_INFER_QSIMD_H
#define EDGE_INFER_QSIMD_H

#include <stdint.h>

#include "simd.h"

#if defined(__AVX2__)
#include <immintrin.h>
#elif defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>
#endif

enum ei_storage { EI_F32 = 0, EI_F16 = 1, EI_S8 = 2 };

typedef float v4f __attribute__((vector_size(16)));
typedef double v4d __attribute__((vector_size(32)));
typedef long long v4l __attribute__((vector_size(32)));
typedef int v4i __attribute__((vector_size(16)));

/* a value the compiler must not fuse with what follows (-ffp-contract=fast would turn the
 * dequantized residual's q * scale + y into one fma: one rounding where the reference has
 * two) */
#if defined(__AVX__)
#define EI_OPAQUE(v) __asm__("" : "+x"(v))
#else /* 8 floats are two registers here: through memory (int8 residuals only) */
#define EI_OPAQUE(v) __asm__("" : "+m"(v))
#endif

static inline v4f lo4(v8 v) {
    v4f r;
    memcpy(&r, &v, sizeof r);
    return r;
}

static inline v4f hi4(v8 v) {
    v4f r;
    memcpy(&r, (const char *)&v + 16, sizeof r);
    return r;
}

static inline v8 join4(v4f a, v4f b) {
    v8 r;
    memcpy(&r, &a, 16);
    memcpy((char *)&r + 16, &b, 16);
    return r;
}

typedef int8_t v8c __attribute__((vector_size(8)));

/* the first n (<= 8) bytes at p (the others zero) / stored at o: masked moves where there
 * are byte masks, else through a small buffer (lane by lane, the compiler scalarizes the
 * whole conversion that follows) */
#if defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>
static inline v8c load_b8(const int8_t *p, long n) {
    __m128i v = _mm_maskz_loadu_epi8((__mmask16)((1u << n) - 1), p);
    v8c q;
    memcpy(&q, &v, 8);
    return q;
}
static inline void store_b8(int8_t *o, v8c q, long n) {
    __m128i v = _mm_setzero_si128();
    memcpy(&v, &q, 8);
    _mm_mask_storeu_epi8(o, (__mmask16)((1u << n) - 1), v);
}
#else
static inline v8c load_b8(const int8_t *p, long n) {
    int8_t t[8] = {0};
    for (long j = 0; j < n; j++) t[j] = p[j];
    v8c q;
    memcpy(&q, t, 8);
    return q;
}
static inline void store_b8(int8_t *o, v8c q, long n) {
    int8_t t[8];
    memcpy(t, &q, 8);
    for (long j = 0; j < n; j++) o[j] = t[j];
}
#endif

/* 8 int8 values as floats / 8 integral floats in [-128, 127] as int8 values: explicit
 * widening and narrowing (GCC 12 scalarizes __builtin_convertvector between 8-byte and
 * 32-byte vectors) */
static inline v8 widen_s8(v8c q) {
#if defined(__AVX2__)
    __m128i v = _mm_setzero_si128();
    memcpy(&v, &q, 8);
    return (v8)_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v));
#elif defined(__aarch64__) && defined(__ARM_NEON)
    int16x8_t h = vmovl_s8((int8x8_t)q);
    return join4(vcvtq_f32_s32(vmovl_s16(vget_low_s16(h))),
                 vcvtq_f32_s32(vmovl_s16(vget_high_s16(h))));
#else
    float t[8];
    for (long j = 0; j < 8; j++) t[j] = (float)q[j];
    return load8(t);
#endif
}

static inline v8c narrow_s8(v8 n) {
    v8c q;
#if defined(__AVX512VL__)
    __m128i b = _mm256_cvtepi32_epi8(_mm256_cvtps_epi32((__m256)n));
    memcpy(&q, &b, 8);
#elif defined(__AVX2__)
    __m256i i = _mm256_cvtps_epi32((__m256)n);
    __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
    __m128i b = _mm_packs_epi16(w, w);
    memcpy(&q, &b, 8);
#elif defined(__aarch64__) && defined(__ARM_NEON)
    int16x8_t w = vcombine_s16(vmovn_s32(vcvtq_s32_f32(lo4(n))), vmovn_s32(vcvtq_s32_f32(hi4(n))));
    q = (v8c)vmovn_s16(w);
#else
    for (long j = 0; j < 8; j++) q[j] = (int8_t)n[j];
#endif
    return q;
}

/* the first n (<= 8) int8 values at p as floats (the others zero) */
static inline v8 load_s8(const int8_t *p, long n) {
    v8c q;
    if (n == 8)
        memcpy(&q, p, 8);
    else
        q = load_b8(p, n);
    return widen_s8(q);
}

/* y = float32((double(acc) + b) * m): the reference's requantization of an exact integer
 * accumulator (acc holds integers below 2^24, b the int32 bias) */
static inline v8 requant(v8 acc, double b, double m) {
#if defined(__AVX512F__)
    typedef double v8d __attribute__((vector_size(64)));
    return __builtin_convertvector((__builtin_convertvector(acc, v8d) + b) * m, v8);
#else
    v4d l = (__builtin_convertvector(lo4(acc), v4d) + b) * m;
    v4d h = (__builtin_convertvector(hi4(acc), v4d) + b) * m;
    return join4(__builtin_convertvector(l, v4f), __builtin_convertvector(h, v4f));
#endif
}

static inline v4d clamp_d(v4d q, double lo, double hi) {
    v4d vlo = {lo, lo, lo, lo}, vhi = {hi, hi, hi, hi};
    q = (v4d)(((v4l)q & (q > vlo)) | ((v4l)vlo & ~(q > vlo)));
    return (v4d)(((v4l)q & (q < vhi)) | ((v4l)vhi & ~(q < vhi)));
}

/* round half to even of |q| < 2^51 (the default rounding mode does the work) */
static inline v4d rint_d(v4d q) {
    const double big = 6755399441055744.0; /* 1.5 * 2^52 */
    return (q + big) - big;
}

/* rint(clip(y / s)) of 4 values exactly: the double division, as the reference */
static inline v4d quant4_exact(v4f y, double s) {
    return rint_d(clamp_d(__builtin_convertvector(y, v4d) / s, -128.0, 127.0));
}

static inline int any8(v8i m) {
#if defined(__AVX__)
    return _mm256_movemask_ps((__m256)m) != 0;
#else
    v8i t = m;
    return (t[0] | t[1] | t[2] | t[3] | t[4] | t[5] | t[6] | t[7]) != 0;
#endif
}

/* rint(clip(y / s)) of 8 values as floats; rf = float32(1 / s). The float32 quotient y * rf
 * is within 2e-5 of the exact one (relative error below 2^-22, |q| <= 128 once clipped), so
 * it rounds the same unless it lies within 1e-4 of a half: then the exact path. */
static inline v8 quant8(v8 y, float rf, double s) {
    v8 q = vmin(vmax(y * rf, splat(-128.0f)), splat(127.0f));
    v8 n = vround(q);
    v8 d = q - n;
    if (__builtin_expect(any8((d > 0.4999f) | (d < -0.4999f)), 0)) {
        v4d l = quant4_exact(lo4(y), s), h = quant4_exact(hi4(y), s);
        n = join4(__builtin_convertvector(l, v4f), __builtin_convertvector(h, v4f));
    }
    return n;
}

/* 8 real values to int8 (rint of y / s, clipped), the first n stored at o */
static inline void store_s8(int8_t *o, v8 y, long n, double s, float rf) {
    v8c q = narrow_s8(quant8(y, rf, s));
    if (n == 8)
        memcpy(o, &q, 8);
    else
        store_b8(o, q, n);
}

/* float32 -> float16 bits, round to nearest even (overflow: inf; NaN stays NaN) */
#if defined(__FLT16_MAX__) && !defined(EI_SOFT_F16)
typedef _Float16 ei_half;
static inline void store_f16(void *o, v8 y, long n) {
    typedef _Float16 v8h __attribute__((vector_size(16)));
    v8h h = __builtin_convertvector(y, v8h);
    if (n == 8)
        memcpy(o, &h, 16);
    else
        for (long j = 0; j < n; j++) ((_Float16 *)o)[j] = h[j];
}
static inline v8 load_f16(const void *p, long n) {
    typedef _Float16 v8h __attribute__((vector_size(16)));
    v8h h = {0};
    if (n == 8)
        memcpy(&h, p, 16);
    else
        for (long j = 0; j < n; j++) h[j] = ((const _Float16 *)p)[j];
    return __builtin_convertvector(h, v8);
}
#else
static inline uint16_t f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u, mag = x & 0x7fffffffu;
    if (mag >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (mag > 0x7f800000u ? 0x200u : 0));
    if (mag >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds past 65504 */
    if (mag < 0x38800000u) {                                   /* subnormal or zero in fp16 */
        if (mag < 0x33000000u) return (uint16_t)sign;          /* below half the least */
        uint32_t m = (mag & 0x7fffffu) | 0x800000u;
        int shift = 126 - (int)(mag >> 23); /* to units of 2^-24: 14 to 24 */
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
        return (uint16_t)(sign | q);
    }
    uint32_t q = ((mag >> 13) - (112u << 10)), rem = mag & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (q & 1))) q++;
    return (uint16_t)(sign | q);
}
static inline float f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ffu, x;
    if (e == 0x1f)
        x = sign | 0x7f800000u | (m << 13);
    else if (e)
        x = sign | ((e + 112u) << 23) | (m << 13);
    else if (m) {
        float f = (float)m * 5.9604644775390625e-8f; /* m * 2^-24, exact */
        return sign ? -f : f;
    } else
        x = sign;
    float f;
    memcpy(&f, &x, 4);
    return f;
}
static inline void store_f16(void *o, v8 y, long n) {
    float t[8];
    store8(t, y);
    uint16_t h[8];
    for (long j = 0; j < n; j++) h[j] = f32_to_f16(t[j]);
    memcpy(o, h, (size_t)n * 2);
}
static inline v8 load_f16(const void *p, long n) {
    uint16_t h[8] = {0};
    memcpy(h, p, (size_t)n * 2);
    float t[8];
    for (long j = 0; j < 8; j++) t[j] = f16_to_f32(h[j]);
    return load8(t);
}
#endif

/* the first n (< 8) floats at p (the others zero) / stored at o */
#if defined(__AVX2__)
static inline v8i first_n(long n) {
    v8i lane = {0, 1, 2, 3, 4, 5, 6, 7};
    return lane < (int)n;
}
static inline v8 load_fn(const float *p, long n) {
    return (v8)_mm256_maskload_ps(p, (__m256i)first_n(n));
}
static inline void store_fn(float *o, v8 y, long n) {
    _mm256_maskstore_ps(o, (__m256i)first_n(n), (__m256)y);
}
#else
static inline v8 load_fn(const float *p, long n) {
    float t[8] = {0};
    for (long j = 0; j < n; j++) t[j] = p[j];
    return load8(t);
}
static inline void store_fn(float *o, v8 y, long n) {
    float t[8];
    store8(t, y);
    for (long j = 0; j < n; j++) o[j] = t[j];
}
#endif

/* the first n (<= 8) real values of a tensor stored as `kind` at element i (int8 dequantized
 * with scale; the result is opaque to fp-contraction) */
static inline v8 load_real(const void *base, long kind, long i, long n, float scale) {
    v8 v;
    if (kind == EI_S8) {
        v = load_s8((const int8_t *)base + i, n) * scale;
        EI_OPAQUE(v);
    } else if (kind == EI_F16) {
        v = load_f16((const uint16_t *)base + i, n);
    } else {
        v = n == 8 ? load8((const float *)base + i) : load_fn((const float *)base + i, n);
    }
    return v;
}

/* the first n (<= 8) of 8 real values stored as `kind` at element i (int8: scale s,
 * rf = float32(1 / s)) */
static inline void store_real(void *base, long kind, long i, long n, v8 y, double s, float rf) {
    if (kind == EI_S8)
        store_s8((int8_t *)base + i, y, n, s, rf);
    else if (kind == EI_F16)
        store_f16((uint16_t *)base + i, y, n);
    else if (n == 8)
        store8((float *)base + i, y);
    else
        store_fn((float *)base + i, y, n);
}

#endif
