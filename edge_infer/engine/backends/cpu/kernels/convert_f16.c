/* Float16 storage of FP16 engines: float16 <-> float32 conversions, round to nearest even.
 *
 * x86-64: AVX-512F (vcvtph2ps / vcvtps2ph on 16 lanes) where the compiler targets it, else
 * F16C (8 lanes), else the portable bit arithmetic below; aarch64: NEON fcvtl / fcvtn
 * (4 and 8 lanes, rounding per FPCR: nearest even). Every path gives the same bits for every
 * input except signalling NaNs' payload (all paths return a quiet NaN for a NaN): infinities
 * and NaNs stay, float16 subnormals are kept (no flush to zero), values from 65520 up round
 * to infinity, ties go to the even float16. Compiled on the device with the other kernels'
 * flags; tests build this file alone with lower flags to check each path. */
#include <stdint.h>
#include <string.h>

#include "args.h"
#include "half.h" /* the portable path: ei_half_from_float, ei_float_from_half */

#if defined(__AVX512F__)
#include <immintrin.h>
#define EI_HALF_LANES 16
#elif defined(__F16C__)
#include <immintrin.h>
#define EI_HALF_LANES 8
#elif defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>
#define EI_HALF_LANES 8
#else
#define EI_HALF_LANES 1
#endif

/* one block of EI_HALF_LANES values each */
#if defined(__AVX512F__)
static inline void widen(const uint16_t *x, float *y) {
    _mm512_storeu_ps(y, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)x)));
}
static inline void narrow(const float *x, uint16_t *y) {
    __m256i h = _mm512_cvtps_ph(_mm512_loadu_ps(x), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm256_storeu_si256((__m256i *)y, h);
}
static inline void round_block(const float *x, float *y) {
    __m256i h = _mm512_cvtps_ph(_mm512_loadu_ps(x), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm512_storeu_ps(y, _mm512_cvtph_ps(h));
}
#elif defined(__F16C__)
static inline void widen(const uint16_t *x, float *y) {
    _mm256_storeu_ps(y, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)x)));
}
static inline void narrow(const float *x, uint16_t *y) {
    _mm_storeu_si128((__m128i *)y, _mm256_cvtps_ph(_mm256_loadu_ps(x), _MM_FROUND_TO_NEAREST_INT));
}
static inline void round_block(const float *x, float *y) {
    __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x), _MM_FROUND_TO_NEAREST_INT);
    _mm256_storeu_ps(y, _mm256_cvtph_ps(h));
}
#elif EI_HALF_LANES == 8 /* aarch64 NEON */
static inline void widen(const uint16_t *x, float *y) {
    float16x8_t h = vreinterpretq_f16_u16(vld1q_u16(x));
    vst1q_f32(y, vcvt_f32_f16(vget_low_f16(h)));
    vst1q_f32(y + 4, vcvt_high_f32_f16(h));
}
static inline float16x8_t narrow8(const float *x) {
    return vcvt_high_f16_f32(vcvt_f16_f32(vld1q_f32(x)), vld1q_f32(x + 4));
}
static inline void narrow(const float *x, uint16_t *y) {
    vst1q_u16(y, vreinterpretq_u16_f16(narrow8(x)));
}
static inline void round_block(const float *x, float *y) {
    float16x8_t h = narrow8(x);
    vst1q_f32(y, vcvt_f32_f16(vget_low_f16(h)));
    vst1q_f32(y + 4, vcvt_high_f32_f16(h));
}
#else
static inline void widen(const uint16_t *x, float *y) { *y = ei_float_from_half(*x); }
static inline void narrow(const float *x, uint16_t *y) { *y = ei_half_from_float(*x); }
static inline void round_block(const float *x, float *y) {
    *y = ei_float_from_half(ei_half_from_float(*x));
}
#endif

/* one row of n values; the tail goes through a padded block, so it has the body's bits */
static void widen_row(const uint16_t *x, float *y, long n) {
    long i = 0;
    for (; i + EI_HALF_LANES <= n; i += EI_HALF_LANES) widen(x + i, y + i);
    if (i < n) {
        uint16_t a[EI_HALF_LANES] = {0};
        float b[EI_HALF_LANES];
        memcpy(a, x + i, (size_t)(n - i) * 2);
        widen(a, b);
        memcpy(y + i, b, (size_t)(n - i) * 4);
    }
}

static void narrow_row(const float *x, uint16_t *y, long n) {
    long i = 0;
    for (; i + EI_HALF_LANES <= n; i += EI_HALF_LANES) narrow(x + i, y + i);
    if (i < n) {
        float a[EI_HALF_LANES] = {0};
        uint16_t b[EI_HALF_LANES];
        memcpy(a, x + i, (size_t)(n - i) * 4);
        narrow(a, b);
        memcpy(y + i, b, (size_t)(n - i) * 2);
    }
}

static void round_row(const float *x, float *y, long n) {
    long i = 0;
    for (; i + EI_HALF_LANES <= n; i += EI_HALF_LANES) round_block(x + i, y + i);
    if (i < n) {
        float a[EI_HALF_LANES] = {0}, b[EI_HALF_LANES];
        memcpy(a, x + i, (size_t)(n - i) * 4);
        round_block(a, b);
        memcpy(y + i, b, (size_t)(n - i) * 4);
    }
}

/* rows x n values, row strides xrs / yrs in elements of each side's type; mode 0: float16 x
 * to float32 y, 1: float32 x to float16 y, 2: float32 x rounded to float16's values, stored
 * in float32 y (y may be x for modes 2, never for 0 and 1) */
void convert_half_f32(const convert_half_args *a) {
    for (long r = 0; r < a->rows; r++) {
        if (a->mode == 0)
            widen_row((const uint16_t *)a->x + r * a->xrs, (float *)a->y + r * a->yrs, a->n);
        else if (a->mode == 1)
            narrow_row((const float *)a->x + r * a->xrs, (uint16_t *)a->y + r * a->yrs, a->n);
        else
            round_row((const float *)a->x + r * a->xrs, (float *)a->y + r * a->yrs, a->n);
    }
}

/* the vector width this file was compiled with (1: the portable path), for tests */
long convert_half_lanes(void) { return EI_HALF_LANES; }

EI_TASK(convert_half)
