/* Memory-bound layers in one vectorized pass each: activations, softmax, nearest upsampling.
 * Compiled on the device with conv_direct.c's flags (-march/-mcpu=native). */
#include "simd.h"

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

/* y[i] = sigmoid(x[i]) (kind EI_ACT_SIGMOID) or tanh(x[i]) (EI_ACT_TANH); x and y may be the
 * same array */
void unary_f32(const unary_args *a) {
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
        v8 r = sigmoid ? 1.0f / (1.0f + vexp(-v)) : 2.0f / (1.0f + vexp(-2.0f * v)) - 1.0f;
        if (m == 8) store8(y + i, r);
        else { store8(tail, r); memcpy(y + i, tail, (size_t)m * 4); }
    }
}

/* softmax over the middle axis of x viewed as [outer][axis][inner], into y (may alias x) */
void softmax_f32(const softmax_args *args) {
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

/* nearest upsampling by integer factors: planes of h x w → (h*fh) x (w*fw) */
void upsample_nearest_f32(const upsample_nearest_args *a) {
    const float *x = a->x;
    float *y = a->y;
    long n = a->n, c = a->c, xis = a->xis, xcs = a->xcs, yis = a->yis, ycs = a->ycs;
    long h = a->h, w = a->w, fh = a->fh, fw = a->fw;
    long wo = w * fw;
    for (long p = 0; p < n * c; p++) {
        const float *xp = x + (p / c) * xis + (p % c) * xcs;
        float *yp = y + (p / c) * yis + (p % c) * ycs;
        for (long i = 0; i < h; i++) {
            float *row = yp + i * fh * wo;
            const float *src = xp + i * w;
            if (fw == 2) {
                for (long j = 0; j < w; j++) { row[2 * j] = src[j]; row[2 * j + 1] = src[j]; }
            } else {
                for (long j = 0; j < w; j++)
                    for (long k = 0; k < fw; k++) row[j * fw + k] = src[j];
            }
            for (long r = 1; r < fh; r++) memcpy(row + r * wo, row, (size_t)wo * 4);
        }
    }
}

EI_TASK(unary)
EI_TASK(softmax)
EI_TASK(upsample_nearest)
