/* Memory-bound layers in one vectorized pass each: activations, softmax, nearest upsampling.
 * Compiled on the device with conv_direct.c's flags (-march/-mcpu=native).
 *
 * Float16 storage (FP16 engines' layers, tactics/cpu_fp16.py; the `half` bits below): x and
 * y read and written as float16 (widened as loaded, narrowed to nearest even as stored),
 * or float32 rounded to float16's values as loaded (a float32 input the layer rounds) or
 * stored (a float32 output), with the float32 arithmetic of the float32 kernel in between:
 * the bits of the conversion passes around it, without the passes (half.h's conversions). */
#include "simd.h"
#include "half.h"

#define PW_XH 1 /* x is float16 */
#define PW_YH 2 /* y is float16 */
#define PW_YR 4 /* y is float32, rounded to float16's values */
#define PW_XR 8 /* x is float32, rounded to float16's values as read */

/* 8 values (the first n, others zero) of x from element i, as `half` says */
static inline v8 pw_load(const void *x, long i, long n, long half) {
    if (half & PW_XH) return n >= 8 ? h8_load((const uint16_t *)x + i) : h8_load_n((const uint16_t *)x + i, n);
    v8 v = load8_n((const float *)x + i, n);
    return half & PW_XR ? h8_round(v) : v;
}

/* the first n (all 8 when n >= 8) values of v to y from element i, as `half` says */
static inline void pw_store(void *y, long i, v8 v, long n, long half) {
    if (half & PW_YH) {
        if (n >= 8) h8_store((uint16_t *)y + i, v);
        else h8_store_n((uint16_t *)y + i, v, n);
        return;
    }
    store8_n((float *)y + i, half & PW_YR ? h8_round(v) : v, n);
}

static inline float pw_load1(const void *x, long i, long half) {
    if (half & PW_XH) return ei_float_from_half(((const uint16_t *)x)[i]);
    float v = ((const float *)x)[i];
    return half & PW_XR ? ei_float_from_half(ei_half_from_float(v)) : v;
}

static inline void pw_store1(void *y, long i, float v, long half) {
    if (half & PW_YH) ((uint16_t *)y)[i] = ei_half_from_float(v);
    else ((float *)y)[i] = half & PW_YR ? ei_float_from_half(ei_half_from_float(v)) : v;
}

#if defined(__AVX512F__)
/* 16 floats a vector (simd.h's v16 and vexp16): half the instructions per value of the
 * 8-float loop (1.4x on Zen 4), the same bits */
static inline v16 load16(const float *p) {
    v16 v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void store16(float *p, v16 v) { memcpy(p, &v, sizeof v); }

#endif

/* sigmoid or tanh of 8 values: unary_f32's arithmetic (one function for every storage) */
static inline v8 unary8(v8 v, int sigmoid) {
    return sigmoid ? 1.0f / (1.0f + vexp(-v)) : 2.0f / (1.0f + vexp(-2.0f * v)) - 1.0f;
}

/* unary_f32 on float16 storage (a->half: PW_* bits), 8 values a vector; inlined for each
 * constant `half` of FP16 engines (float16 in, float16 or rounded float32 out) */
static inline __attribute__((always_inline)) void unary_half_as(const unary_args *a, long half) {
    long n = a->n, i = 0;
    int sigmoid = a->kind == EI_ACT_SIGMOID;
    for (; i + 8 <= n; i += 8) pw_store(a->y, i, unary8(pw_load(a->x, i, 8, half), sigmoid), 8, half);
    if (i < n) pw_store(a->y, i, unary8(pw_load(a->x, i, n - i, half), sigmoid), n - i, half);
}

static void unary_half(const unary_args *a) {
    if (a->half == (PW_XH | PW_YR)) unary_half_as(a, PW_XH | PW_YR);
    else if (a->half == (PW_XH | PW_YH)) unary_half_as(a, PW_XH | PW_YH);
    else unary_half_as(a, a->half);
}

/* y[i] = sigmoid(x[i]) (kind EI_ACT_SIGMOID) or tanh(x[i]) (EI_ACT_TANH); x and y may be the
 * same array; a->half: float16 storage (PW_* bits) */
void unary_f32(const unary_args *a) {
    if (a->half) {
        unary_half(a);
        return;
    }
    const float *x = a->x;
    float *y = a->y;
    long n = a->n, i = 0;
    int sigmoid = a->kind == EI_ACT_SIGMOID;
    float tail[8] = {0};
#if defined(__AVX512F__)
    for (; i + 16 <= n; i += 16) {
        v16 v = load16(x + i);
        v16 r = sigmoid ? 1.0f / (1.0f + vexp16(-v)) : 2.0f / (1.0f + vexp16(-2.0f * v)) - 1.0f;
        store16(y + i, r);
    }
#endif
    for (; i < n; i += 8) {
        long m = n - i < 8 ? n - i : 8;
        v8 v;
        if (m == 8) v = load8(x + i);
        else { memcpy(tail, x + i, (size_t)m * 4); v = load8(tail); }
        v8 r = unary8(v, sigmoid);
        if (m == 8) store8(y + i, r);
        else { store8(tail, r); memcpy(y + i, tail, (size_t)m * 4); }
    }
}

/* softmax_f32 on float16 storage (args->half: PW_* bits; axis <= SOFTMAX_HALF_AXIS), 8
 * positions a vector: the exponentials kept in float32 in e (softmax_f32 keeps them in y),
 * then scaled, as there, by the reciprocal of their sum (vectors) or divided by the sum (the
 * positions past the last whole vector) */
#define SOFTMAX_HALF_AXIS 512
static inline __attribute__((always_inline)) void softmax_half_as(const softmax_args *args,
                                                                 long half) {
    long outer = args->outer, axis = args->axis, inner = args->inner;
    float e[SOFTMAX_HALF_AXIS * 8];
    if (axis > SOFTMAX_HALF_AXIS) return; /* the caller's contract (steps_elementwise.py) */
    for (long o = 0; o < outer; o++) {
        long base = o * axis * inner, j = 0;
        for (; j + 8 <= inner; j += 8) {
            v8 m = pw_load(args->x, base + j, 8, half);
            for (long a = 1; a < axis; a++) m = vmax(m, pw_load(args->x, base + a * inner + j, 8, half));
            v8 s = splat(0.0f);
            for (long a = 0; a < axis; a++) {
                v8 ea = vexp(pw_load(args->x, base + a * inner + j, 8, half) - m);
                store8(e + 8 * a, ea);
                s += ea;
            }
            v8 r = 1.0f / s;
            for (long a = 0; a < axis; a++) pw_store(args->y, base + a * inner + j, load8(e + 8 * a) * r, 8, half);
        }
        for (; j < inner; j++) {
            float m = pw_load1(args->x, base + j, half), s = 0.0f;
            for (long a = 1; a < axis; a++) {
                float v = pw_load1(args->x, base + a * inner + j, half);
                m = v > m ? v : m;
            }
            for (long a = 0; a < axis; a++) {
                float t[8] = {pw_load1(args->x, base + a * inner + j, half) - m};
                float ex[8];
                store8(ex, vexp(load8(t)));
                e[a] = ex[0];
                s += ex[0];
            }
            for (long a = 0; a < axis; a++) pw_store1(args->y, base + a * inner + j, e[a] / s, half);
        }
    }
}

/* inlined for the constant `half` of FP16 engines' softmax layers (float16 in and out) */
static void softmax_half(const softmax_args *args) {
    if (args->half == (PW_XH | PW_YH)) softmax_half_as(args, PW_XH | PW_YH);
    else softmax_half_as(args, args->half);
}

/* softmax over the middle axis of x viewed as [outer][axis][inner], into y (may alias x);
 * args->half: float16 storage (PW_* bits) */
void softmax_f32(const softmax_args *args) {
    if (args->half) {
        softmax_half(args);
        return;
    }
    const float *x = args->x;
    float *y = args->y;
    long outer = args->outer, axis = args->axis, inner = args->inner;
    for (long o = 0; o < outer; o++) {
        const float *xo = x + o * axis * inner;
        float *yo = y + o * axis * inner;
        long j = 0;
#if defined(__AVX512F__)
        for (; j + 16 <= inner; j += 16) { /* the 8-float loop below on 16 positions */
            v16 m = load16(xo + j);
            for (long a = 1; a < axis; a++)
                m = (v16)_mm512_max_ps((__m512)m, (__m512)load16(xo + a * inner + j));
            v16 s = {0};
            for (long a = 0; a < axis; a++) {
                v16 e = vexp16(load16(xo + a * inner + j) - m);
                store16(yo + a * inner + j, e);
                s += e;
            }
            v16 r = 1.0f / s;
            for (long a = 0; a < axis; a++)
                store16(yo + a * inner + j, load16(yo + a * inner + j) * r);
        }
#endif
        for (; j + 8 <= inner; j += 8) {
            v8 m = load8(xo + j);
            for (long a = 1; a < axis; a++) m = vmax(m, load8(xo + a * inner + j));
            v8 s = splat(0.0f);
            for (long a = 0; a < axis; a++) {
                v8 e = vexp(load8(xo + a * inner + j) - m);
                store8(yo + a * inner + j, e);
                s += e;
            }
            v8 r = 1.0f / s;
            for (long a = 0; a < axis; a++) store8(yo + a * inner + j, load8(yo + a * inner + j) * r);
        }
        for (; j < inner; j++) { /* the tail, one position at a time */
            float m = xo[j], s = 0.0f;
            for (long a = 1; a < axis; a++) m = xo[a * inner + j] > m ? xo[a * inner + j] : m;
            for (long a = 0; a < axis; a++) {
                float t[8] = {xo[a * inner + j] - m};
                float e[8];
                store8(e, vexp(load8(t)));
                yo[a * inner + j] = e[0];
                s += e[0];
            }
            for (long a = 0; a < axis; a++) yo[a * inner + j] /= s;
        }
    }
}

/* nearest upsampling by integer factors of planes of element type T: h x w → (h*fh) x (w*fw) */
#define EI_UPSAMPLE(NAME, T)                                                                   \
    static void NAME(const upsample_nearest_args *a) {                                         \
        const T *x = (const T *)a->x;                                                          \
        T *y = (T *)a->y;                                                                      \
        long n = a->n, c = a->c, xis = a->xis, xcs = a->xcs, yis = a->yis, ycs = a->ycs;       \
        long h = a->h, w = a->w, fh = a->fh, fw = a->fw;                                       \
        long wo = w * fw;                                                                      \
        for (long p = 0; p < n * c; p++) {                                                     \
            const T *xp = x + (p / c) * xis + (p % c) * xcs;                                   \
            T *yp = y + (p / c) * yis + (p % c) * ycs;                                         \
            for (long i = 0; i < h; i++) {                                                     \
                T *row = yp + i * fh * wo;                                                     \
                const T *src = xp + i * w;                                                     \
                if (fw == 2) {                                                                 \
                    for (long j = 0; j < w; j++) {                                             \
                        row[2 * j] = src[j];                                                   \
                        row[2 * j + 1] = src[j];                                               \
                    }                                                                          \
                } else {                                                                       \
                    for (long j = 0; j < w; j++)                                               \
                        for (long k = 0; k < fw; k++) row[j * fw + k] = src[j];                \
                }                                                                              \
                for (long r = 1; r < fh; r++) memcpy(row + r * wo, row, (size_t)wo * sizeof(T)); \
            }                                                                                  \
        }                                                                                      \
    }
EI_UPSAMPLE(upsample_f32, float)
EI_UPSAMPLE(upsample_f16, uint16_t)

/* a->half: x and y float16 (strides in elements of either type); values copied as they are */
void upsample_nearest_f32(const upsample_nearest_args *a) {
    if (a->half) upsample_f16(a);
    else upsample_f32(a);
}

EI_TASK(unary)
EI_TASK(softmax)
EI_TASK(upsample_nearest)
