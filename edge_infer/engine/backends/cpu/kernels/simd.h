/* Shared vector helpers of the native kernels: 8-float vectors (GCC vector extensions:
 * AVX2/AVX-512 on x86-64, NEON on aarch64), a float32 exp, the fused activations. */
#ifndef EDGE_INFER_SIMD_H
#define EDGE_INFER_SIMD_H

#include <stddef.h>
#include <string.h>

#include "args.h"

typedef float v8 __attribute__((vector_size(32)));

static inline v8 load8(const float *p) {
    v8 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void store8(float *p, v8 v) { memcpy(p, &v, sizeof v); }

typedef int v8i __attribute__((vector_size(32)));

static inline v8 splat(float a) { return (v8){a, a, a, a, a, a, a, a}; }

/* v as it is, held in a register from here on: the GEMM tiles' input vectors. On AVX2 a
 * 4 x 3 tile's 12 accumulators, 3 input vectors and a broadcast take all 16 ymm registers,
 * and GCC then folds the input vectors' loads into every FMA (each loaded once per tile
 * row: 16 loads per 12 FMAs, not 7); this empty asm pins them (x86 with AVX: one ymm
 * register a v8; elsewhere nothing). */
static inline __attribute__((always_inline)) v8 in_reg(v8 v) {
#if defined(__x86_64__) && defined(__AVX__)
    __asm__("" : "+v"(v));
#endif
    return v;
}
static inline v8 vsel(v8i m, v8 a, v8 b) { return (v8)((m & (v8i)a) | (~m & (v8i)b)); }

#if defined(__AVX__)
#include <immintrin.h>
/* one instruction each where the generic forms below take four */
static inline v8 vmin(v8 a, v8 b) { return (v8)_mm256_min_ps((__m256)a, (__m256)b); }
static inline v8 vmax(v8 a, v8 b) { return (v8)_mm256_max_ps((__m256)a, (__m256)b); }
static inline v8 vround(v8 a) {
    return (v8)_mm256_round_ps((__m256)a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
#else
static inline v8 vmin(v8 a, v8 b) { return vsel(a < b, a, b); }
static inline v8 vmax(v8 a, v8 b) { return vsel(a > b, a, b); }
/* round to nearest for |a| < 2^22 (exp's range reduction): add and subtract 1.5 * 2^23 */
static inline v8 vround(v8 a) {
    v8 big = splat(12582912.0f);
    return (a + big) - big;
}
#endif

/* exp(x), Cephes float32: x = n ln 2 + r with n rounded to nearest, |r| <= ln 2 / 2, and a
 * degree-5 polynomial for exp(r) */
static inline v8 vexp(v8 x) {
    x = vmin(vmax(x, splat(-87.0f)), splat(88.0f));
    v8 nf = vround(x * 1.4426950408889634f);
    v8 r = x - nf * 0.693359375f - nf * -2.12194440e-4f;
    v8 p = 1.9875691500e-4f * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    v8 y = p * r * r + r + 1.0f;
    return y * (v8)((__builtin_convertvector(nf, v8i) + 127) << 23);
}

/* activation codes: enum ei_activation (args.h), the same as the numba epilogue's */
static inline v8 activate(v8 y, long act, float p0, float p1) {
    switch (act) {
    case EI_ACT_RELU: return vmax(y, splat(0.0f));
    case EI_ACT_LEAKY_RELU: return vsel(y < 0.0f, y * p0, y);
    case EI_ACT_CLIP: return vmin(vmax(y, splat(p0)), splat(p1));
    case EI_ACT_SIGMOID: return 1.0f / (1.0f + vexp(-y));
    case EI_ACT_SILU: return y / (1.0f + vexp(-y));
    case EI_ACT_HARD_SWISH:
        return y * vmin(vmax(y * (1.0f / 6.0f) + 0.5f, splat(0.0f)), splat(1.0f));
    case EI_ACT_HARD_SIGMOID: return vmin(vmax(y * p0 + p1, splat(0.0f)), splat(1.0f));
    case EI_ACT_TANH: return 2.0f / (1.0f + vexp(-2.0f * y)) - 1.0f;
    default: return y;
    }
}

/* bias, residual (1: act(y + z), 2: act(y) + z) and activation, in registers */
static inline v8 finish(v8 y, v8 b, v8 z, long act, float p0, float p1, long residual) {
    y += b;
    if (residual == 1) y += z;
    y = activate(y, act, p0, p1);
    if (residual == 2) y += z;
    return y;
}

/* activate() on n vectors: the activation is chosen once and the n evaluations are
 * independent, so their long dependency chains (exp, division) overlap in the core */
static inline __attribute__((always_inline)) void activate_n(v8 *y, long n, long act, float p0,
                                                           float p1) {
    switch (act) {
    case EI_ACT_NONE: return;
    case EI_ACT_SILU:
        for (long i = 0; i < n; i++) y[i] = y[i] / (1.0f + vexp(-y[i]));
        return;
    case EI_ACT_SIGMOID:
        for (long i = 0; i < n; i++) y[i] = 1.0f / (1.0f + vexp(-y[i]));
        return;
    case EI_ACT_RELU:
        for (long i = 0; i < n; i++) y[i] = vmax(y[i], splat(0.0f));
        return;
    default:
        for (long i = 0; i < n; i++) y[i] = activate(y[i], act, p0, p1);
    }
}

/* The register tile every conv kernel shares: for k < n, acc[i] += u[us k + i] * v[16 k .. +16]
 * (6 broadcasts, 12 accumulator vectors; the terms us floats apart: 6 in a packed tile, a
 * channel stride where a plain 1x1 conv's input is read in place), starting from acc where
 * `more` (a later block of terms: the partial sums of the ones before; conv_ocvec.c) or from
 * zero; acc is written once, at the end. Per output the same products in the same order
 * however the terms are blocked. tile_6x16kp: each term's input line also prefetched pf floats
 * ahead (a constant; 0: none). */
static inline __attribute__((always_inline)) void tile_6x16kp(const float *u, long us,
                                                            const float *v, long n,
                                                            v8 acc[][2], long more, long pf) {
    v8 a00 = {0}, a01 = {0}, a10 = {0}, a11 = {0}, a20 = {0}, a21 = {0};
    v8 a30 = {0}, a31 = {0}, a40 = {0}, a41 = {0}, a50 = {0}, a51 = {0};
    if (more) {
        a00 = acc[0][0]; a01 = acc[0][1]; a10 = acc[1][0]; a11 = acc[1][1];
        a20 = acc[2][0]; a21 = acc[2][1]; a30 = acc[3][0]; a31 = acc[3][1];
        a40 = acc[4][0]; a41 = acc[4][1]; a50 = acc[5][0]; a51 = acc[5][1];
    }
    for (long k = 0; k < n; k++, u += us, v += 16) {
        if (pf) __builtin_prefetch(u + pf, 0, 3);
        v8 v0 = load8(v), v1 = load8(v + 8);
        a00 += u[0] * v0; a01 += u[0] * v1;
        a10 += u[1] * v0; a11 += u[1] * v1;
        a20 += u[2] * v0; a21 += u[2] * v1;
        a30 += u[3] * v0; a31 += u[3] * v1;
        a40 += u[4] * v0; a41 += u[4] * v1;
        a50 += u[5] * v0; a51 += u[5] * v1;
    }
    acc[0][0] = a00; acc[0][1] = a01; acc[1][0] = a10; acc[1][1] = a11;
    acc[2][0] = a20; acc[2][1] = a21; acc[3][0] = a30; acc[3][1] = a31;
    acc[4][0] = a40; acc[4][1] = a41; acc[5][0] = a50; acc[5][1] = a51;
}
static inline __attribute__((always_inline)) void tile_6x16k(const float *u, long us,
                                                           const float *v, long n,
                                                           v8 acc[][2], long more) {
    tile_6x16kp(u, us, v, n, acc, more, 0);
}
static inline __attribute__((always_inline)) void tile_6x16(const float *u, const float *v,
                                                          long n, v8 acc[6][2]) {
    tile_6x16k(u, 6, v, n, acc, 0);
}

/* The first n lanes of a vector (all 8 when n >= 8): loaded (the others zero) / stored (the
 * others untouched); AVX-512 mask registers where the build has them (AVX2's vmaskmovps store
 * is slow on AMD cores). */
#if defined(__AVX512VL__)
static inline v8 load8_n(const float *p, long n) {
    return n >= 8 ? load8(p) : (v8)_mm256_maskz_loadu_ps((__mmask8)((1u << n) - 1), p);
}
static inline void store8_n(float *p, v8 y, long n) {
    if (n >= 8) store8(p, y);
    else _mm256_mask_storeu_ps(p, (__mmask8)((1u << n) - 1), (__m256)y);
}
#elif defined(__AVX2__)
static inline v8i first8_lanes(long n) {
    v8i lane = {0, 1, 2, 3, 4, 5, 6, 7};
    return lane < (int)n;
}
static inline v8 load8_n(const float *p, long n) {
    return n >= 8 ? load8(p) : (v8)_mm256_maskload_ps(p, (__m256i)first8_lanes(n));
}
/* (4-, 2- and 1-float stores, not vmaskmovps: a masked store is microcoded on AMD's cores,
 * tens of cycles where these take a few; measured on ocvec's row stores, Zen 3: 0.83-0.92x) */
static inline void store8_n(float *p, v8 y, long n) {
    if (n >= 8) {
        store8(p, y);
        return;
    }
    __m128 h = _mm256_castps256_ps128((__m256)y);
    if (n >= 4) {
        _mm_storeu_ps(p, h);
        h = _mm256_extractf128_ps((__m256)y, 1);
        p += 4;
        n -= 4;
    }
    if (n >= 2) {
        _mm_storel_pi((__m64 *)(void *)p, h);
        h = _mm_movehl_ps(h, h);
        p += 2;
        n -= 2;
    }
    if (n) _mm_store_ss(p, h);
}
#else
static inline v8 load8_n(const float *p, long n) {
    float t[8];
    for (long j = 0; j < 8; j++) t[j] = j < n ? p[j] : 0.0f;
    return load8(t);
}
static inline void store8_n(float *p, v8 y, long n) {
    float t[8];
    store8(t, y);
    for (long j = 0; j < 8; j++)
        if (j < n) p[j] = t[j];
}
#endif


#if defined(__AVX512F__)
/* 16 floats a vector; vexp16 is vexp on twice the lanes, the same operations lane by lane
 * (so the same bits, each file under its own contraction setting: pointwise.c's, conv_int8.c's) */
typedef float v16 __attribute__((vector_size(64)));
typedef int v16i __attribute__((vector_size(64)));

static inline v16 vexp16(v16 x) {
    x = (v16)_mm512_min_ps(_mm512_max_ps((__m512)x, _mm512_set1_ps(-87.0f)),
                           _mm512_set1_ps(88.0f));
    v16 nf = (v16)_mm512_roundscale_ps((__m512)(x * 1.4426950408889634f),
                                       _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    v16 r = x - nf * 0.693359375f - nf * -2.12194440e-4f;
    v16 p = 1.9875691500e-4f * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    v16 y = p * r * r + r + 1.0f;
    return y * (v16)((__builtin_convertvector(nf, v16i) + 127) << 23);
}
#endif

/* One plane of 2-D max pooling, for any element type T (float, int8_t): for each output row
 * and tap the valid output columns are a contiguous range, so the inner loop is a plain
 * (vectorizable for stride 1) max; LOWEST fills the row first (padding never wins). Defines
 * `static void NAME(const T *xp, T *yp, h, w, ho, wo, kh, kw, sy, sx, pt, pl, dy, dx)`. */
#define EI_MAXPOOL_PLANE(NAME, T, LOWEST)                                                      \
    static void NAME(const T *xp, T *yp, long h, long w, long ho, long wo, long kh, long kw,   \
                     long sy, long sx, long pt, long pl, long dy, long dx) {                   \
        for (long i = 0; i < ho; i++) {                                                        \
            T *row = yp + i * wo;                                                              \
            for (long j = 0; j < wo; j++) row[j] = (LOWEST);                                   \
            for (long a = 0; a < kh; a++) {                                                    \
                long r = i * sy - pt + a * dy;                                                 \
                if (r < 0 || r >= h) continue;                                                 \
                const T *src = xp + r * w;                                                     \
                for (long b = 0; b < kw; b++) {                                                \
                    long off = b * dx - pl; /* column = j * sx + off */                        \
                    long lo = off >= 0 ? 0 : (-off + sx - 1) / sx;                             \
                    long hi = (w - 1 - off) >= 0 ? (w - 1 - off) / sx : -1;                    \
                    if (hi > wo - 1) hi = wo - 1;                                              \
                    if (sx == 1) {                                                             \
                        for (long j = lo; j <= hi; j++)                                        \
                            row[j] = src[j + off] > row[j] ? src[j + off] : row[j];            \
                    } else {                                                                   \
                        for (long j = lo; j <= hi; j++) {                                      \
                            T v = src[j * sx + off];                                           \
                            row[j] = v > row[j] ? v : row[j];                                  \
                        }                                                                      \
                    }                                                                          \
                }                                                                              \
            }                                                                                  \
        }                                                                                      \
    }

#endif
