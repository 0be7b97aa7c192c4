/* Float16 <-> float32 for the kernels that read or write float16 storage themselves (FP16
 * engines: convert_f16.c's passes, and the conv kernels that load float16 inputs and store
 * float16 outputs in their own loops instead).
 *
 * Round to nearest even, as numpy's astype; every path gives the same bits for every input
 * except signalling NaNs' payload (all return a quiet NaN): infinities and NaNs stay,
 * float16 subnormals are kept (no flush to zero), values from 65520 up round to infinity.
 *
 * - ei_half_from_float / ei_float_from_half: one value; F16C's vcvtps2ph / vcvtph2ps where
 *   the build has it (the kernels' scalar edges and tails: the bit arithmetic cost several
 *   times as much there), else the portable bit arithmetic (ei_half_bits / ei_float_bits);
 * - h8_load / h8_store (only after simd.h: v8): 8 values, F16C's vcvtph2ps / vcvtps2ph on
 *   x86-64 (AVX-512 machines have F16C), NEON fcvtl / fcvtn on aarch64 (FPCR's nearest
 *   even), else the portable functions lane by lane; h8_load_n / h8_store_n: the first n
 *   (0 < n < 8) of them (the others zero / untouched);
 * - h8_round (after simd.h): 8 float32 values rounded to float16's values (nearest even), kept
 *   in float32: the bits of h8_store then h8_load, in registers where the CPU converts;
 * - h16_load / h16_store / h16_load_mask / h16_store_mask (AVX-512 with BW and VL: EI_H16):
 *   16 values in an __m512, whole or under a lane mask. */
#ifndef EDGE_INFER_HALF_H
#define EDGE_INFER_HALF_H

#include <stdint.h>
#include <string.h>
#if defined(__F16C__)
#include <immintrin.h>
#endif

/* IEEE binary32 -> binary16 bits, round to nearest even (the portable bit arithmetic) */
static inline uint16_t ei_half_bits(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf, or NaN made quiet with the payload's top bits */
        return (uint16_t)(sign | (ax > 0x7f800000u ? 0x7e00u | ((ax >> 13) & 0x3ffu) : 0x7c00u));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520: rounds to inf */
    if (ax < 0x38800000u) { /* below 2^-14: a float16 subnormal (or zero) */
        if (ax < 0x33000000u) return (uint16_t)sign; /* below 2^-25 */
        uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u, shift = 126u - e;
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1u), tie = 1u << (shift - 1u);
        q += rem > tie || (rem == tie && (q & 1u));
        return (uint16_t)(sign | q); /* q may carry into the smallest normal: still right */
    }
    uint32_t r = ax - 0x38000000u; /* rebias the exponent (127 - 15), then round 13 bits */
    r += 0x0fffu + ((r >> 13) & 1u);
    return (uint16_t)(sign | (r >> 13));
}

/* binary16 bits -> binary32 (exact; the portable bit arithmetic) */
static inline float ei_float_bits(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, x;
    if (e == 0x1fu) x = sign | 0x7f800000u | (m << 13) | (m ? 0x400000u : 0u);
    else if (e) x = sign | ((e + 112u) << 23) | (m << 13);
    else {
        float v = (float)m * 0x1p-24f; /* exact: m < 2^10 */
        memcpy(&x, &v, 4);
        x |= sign;
    }
    float f;
    memcpy(&f, &x, 4);
    return f;
}

/* one value, as the vector paths convert (the same bits) */
static inline uint16_t ei_half_from_float(float f) {
#if defined(__F16C__)
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
#else
    return ei_half_bits(f);
#endif
}

static inline float ei_float_from_half(uint16_t h) {
#if defined(__F16C__)
    return _cvtsh_ss(h);
#else
    return ei_float_bits(h);
#endif
}

#if defined(EDGE_INFER_SIMD_H) /* the 8-float vector helpers (v8: simd.h) */
#if defined(__F16C__)
#include <immintrin.h>
static inline v8 h8_load(const uint16_t *p) {
    return (v8)_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}
static inline void h8_store(uint16_t *p, v8 v) {
    _mm_storeu_si128((__m128i *)p,
                     _mm256_cvtps_ph((__m256)v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
#define EI_H8_PATH 1
#elif defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>
static inline v8 h8_load(const uint16_t *p) {
    float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(p));
    float32x4_t lo = vcvt_f32_f16(vget_low_f16(h)), hi = vcvt_high_f32_f16(h);
    v8 v;
    memcpy(&v, &lo, 16);
    memcpy((char *)&v + 16, &hi, 16);
    return v;
}
static inline void h8_store(uint16_t *p, v8 v) {
    float32x4_t lo, hi;
    memcpy(&lo, &v, 16);
    memcpy(&hi, (const char *)&v + 16, 16);
    vst1q_u16(p, vreinterpretq_u16_f16(vcvt_high_f16_f32(vcvt_f16_f32(lo), hi)));
}
#define EI_H8_PATH 2
#else /* (out of line: scalar code unrolled at every use made the plain builds' objects
        * several times larger and slower to compile; no F16C/NEON: not a fast path anyway) */
static __attribute__((noinline, unused)) v8 h8_load(const uint16_t *p) {
    v8 v;
    for (int j = 0; j < 8; j++) v[j] = ei_float_from_half(p[j]);
    return v;
}
static __attribute__((noinline, unused)) void h8_store(uint16_t *p, v8 v) {
    for (int j = 0; j < 8; j++) p[j] = ei_half_from_float(v[j]);
}
#define EI_H8_PATH 0
#endif

#if defined(__F16C__)
static inline v8 h8_round(v8 v) {
    return (v8)_mm256_cvtph_ps(
        _mm256_cvtps_ph((__m256)v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
#else
static inline v8 h8_round(v8 v) {
    uint16_t h[8];
    h8_store(h, v);
    return h8_load(h);
}
#endif

/* (AVX-512BW: masked moves; F16C: lanes moved in registers, since a buffer written lane by
 * lane and read back as a vector stalls on store forwarding) */
static inline v8 h8_load_n(const uint16_t *p, long n) {
#if defined(__F16C__) && defined(__AVX512BW__) && defined(__AVX512VL__)
    return (v8)_mm256_cvtph_ps(_mm_maskz_loadu_epi16((__mmask8)((1u << n) - 1u), p));
#elif defined(__F16C__)
    __m128i h = _mm_setzero_si128();
#define EI_LANE(k)                                                                            \
    if (k < n) h = _mm_insert_epi16(h, p[k], k);
    EI_LANE(0) EI_LANE(1) EI_LANE(2) EI_LANE(3) EI_LANE(4) EI_LANE(5) EI_LANE(6)
#undef EI_LANE
    return (v8)_mm256_cvtph_ps(h);
#else
    uint16_t t[8];
    for (long j = 0; j < 8; j++) t[j] = j < n ? p[j] : 0;
    return h8_load(t);
#endif
}

static inline void h8_store_n(uint16_t *p, v8 v, long n) {
#if defined(__F16C__) && defined(__AVX512BW__) && defined(__AVX512VL__)
    __m128i h = _mm256_cvtps_ph((__m256)v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_mask_storeu_epi16(p, (__mmask8)((1u << n) - 1u), h);
#elif defined(__F16C__)
    __m128i h = _mm256_cvtps_ph((__m256)v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
#define EI_LANE(k)                                                                            \
    if (k < n) p[k] = (uint16_t)_mm_extract_epi16(h, k);
    EI_LANE(0) EI_LANE(1) EI_LANE(2) EI_LANE(3) EI_LANE(4) EI_LANE(5) EI_LANE(6)
#undef EI_LANE
#else
    uint16_t t[8];
    h8_store(t, v);
    for (long j = 0; j < 8; j++)
        if (j < n) p[j] = t[j];
#endif
}
#endif

/* 16 values in an AVX-512 register (kernels with __m512 tiles): whole, or the lanes of mask
 * m (the others zero / untouched; masked lanes are never read or written, so a row's first
 * or last lanes may lie outside the array) */
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>
#define EI_H16 1
static inline __m512 h16_load(const uint16_t *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}
static inline void h16_store(uint16_t *p, __m512 v) {
    _mm256_storeu_si256((__m256i *)p,
                        _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
static inline __m512 h16_load_mask(const uint16_t *p, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p));
}
static inline void h16_store_mask(uint16_t *p, __mmask16 m, __m512 v) {
    _mm256_mask_storeu_epi16(p, m,
                             _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
#endif

#endif
