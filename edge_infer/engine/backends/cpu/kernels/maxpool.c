/* 2-D max pooling of float32 and float16 planes, row by row: each output row is the maximum
 * of its input rows (vectors along the row, into a buffer padded with -inf), then each
 * output's window along that buffer (vectors along the output columns; stride 2 takes the
 * even lanes of two vectors). Any kernel / stride / padding / dilation; rows too wide for
 * the buffer go output by output (the taps in EI_MAXPOOL_PLANE's order, simd.h).
 *
 * The values are exactly the scalar loop's: `v > m ? v : m` from -inf, so padding never
 * wins and a NaN input is never taken (vmax(v, m) is that select on every path). */
#include "simd.h"
#include "half.h"

#include <stdint.h>

/* floats of the row buffer: left pad, the input row, the reads past it of the last block */
#define EI_MPF_BUF 4096

static inline v8 mp_load(const void *x, long half, long i) {
    return half ? h8_load((const uint16_t *)x + i) : load8((const float *)x + i);
}

static inline float mp_load1(const void *x, long half, long i) {
    return half ? ei_float_from_half(((const uint16_t *)x)[i]) : ((const float *)x)[i];
}

/* the first n (1..8) lanes of v to y[i..) */
static inline void mp_store(void *y, long half, long i, v8 v, long n) {
    if (half) {
        if (n == 8) h8_store((uint16_t *)y + i, v);
        else h8_store_n((uint16_t *)y + i, v, n);
    } else if (n == 8) {
        store8((float *)y + i, v);
    } else {
        float t[8];
        store8(t, v);
        memcpy((float *)y + i, t, (size_t)n * 4);
    }
}

static inline void mp_store1(void *y, long half, long i, float v) {
    if (half) ((uint16_t *)y)[i] = ei_half_from_float(v);
    else ((float *)y)[i] = v;
}

/* the geometry of one pooling (maxpool's and maxpool_planes' shared fields) */
typedef struct {
    long h, w, ho, wo, kh, kw, sy, sx, pt, pl, dy, dx, xhalf, yhalf;
} mp_geometry;

/* buffer floats the row path needs: the left pad, the row, and the last 8-output block's
 * reads (stride 2: 16 floats from each tap) */
static long mp_span(const mp_geometry *g) {
    long blocks = (g->wo + 7) / 8 * 8;
    long reads = g->sx * blocks + (g->kw - 1) * g->dx + 16;
    return reads > g->pl + g->w ? reads : g->pl + g->w;
}

static int mp_rows_fit(const mp_geometry *g) {
    return g->pl >= 0 && g->pt >= 0 && g->sx >= 1 && g->dx >= 1 && mp_span(g) <= EI_MPF_BUF;
}

/* v[c] (c < w) = the maximum of the n rows src[0..n) at column c, from -inf (acc 0) or from
 * v[c] itself (acc 1: the rows of an earlier chunk) */
static inline __attribute__((always_inline)) void mp_rows_max_k(const void *const *src, long n,
                                                                 const long half, long w,
                                                                 float *v, int acc) {
    const v8 lowest = splat(-__builtin_inff());
    long c = 0;
    for (; c + 16 <= w; c += 16) {
        v8 m0 = acc ? load8(v + c) : lowest, m1 = acc ? load8(v + c + 8) : lowest;
        for (long t = 0; t < n; t++) {
            m0 = vmax(mp_load(src[t], half, c), m0);
            m1 = vmax(mp_load(src[t], half, c + 8), m1);
        }
        store8(v + c, m0);
        store8(v + c + 8, m1);
    }
    for (; c + 8 <= w; c += 8) {
        v8 m = acc ? load8(v + c) : lowest;
        for (long t = 0; t < n; t++) m = vmax(mp_load(src[t], half, c), m);
        store8(v + c, m);
    }
    for (; c < w; c++) {
        float m = acc ? v[c] : -__builtin_inff();
        for (long t = 0; t < n; t++) {
            float x = mp_load1(src[t], half, c);
            m = x > m ? x : m;
        }
        v[c] = m;
    }
}

static void mp_rows_max(const void *const *src, long n, long half, long w, float *v, int acc) {
    if (half) mp_rows_max_k(src, n, 1, w, v, acc);
    else mp_rows_max_k(src, n, 0, w, v, acc);
}

/* the even lanes of the 16 floats at p */
static inline v8 mp_even(const float *p) {
    return __builtin_shufflevector(load8(p), load8(p + 8), 0, 2, 4, 6, 8, 10, 12, 14);
}

static inline v8 mp_odd(const float *p) {
    return __builtin_shufflevector(load8(p), load8(p + 8), 1, 3, 5, 7, 9, 11, 13, 15);
}

/* one plane; vp: the buffer, -inf outside [pl, pl + w) (kept so between rows) */
static void mp_plane_rows(const void *xp, void *yp, const mp_geometry *g, float *vp) {
    const long h = g->h, w = g->w, wo = g->wo, kw = g->kw, sx = g->sx, dx = g->dx;
    const long xs = g->xhalf ? 2 : 4;
    enum { CHUNK = 16 }; /* rows combined per pass */
    const void *src[CHUNK];
    float *v = vp + g->pl;
    for (long i = 0; i < g->ho; i++) {
        long n = 0, rows = 0;
        for (long t = 0; t < g->kh; t++) {
            long r = i * g->sy - g->pt + t * g->dy;
            if (r < 0 || r >= h) continue;
            src[n++] = (const char *)xp + r * w * xs;
            if (n == CHUNK) {
                mp_rows_max(src, n, g->xhalf, w, v, rows > 0);
                rows += n;
                n = 0;
            }
        }
        if (n) mp_rows_max(src, n, g->xhalf, w, v, rows > 0);
        else if (!rows) /* a window of padding only */
            for (long c = 0; c < w; c++) v[c] = -__builtin_inff();
        char *y = (char *)yp + i * wo * (g->yhalf ? 2 : 4);
        long j = 0;
        if (sx == 1) {
            for (; j < wo; j += 8) {
                const float *p = vp + j;
                v8 m = load8(p);
                for (long b = 1; b < kw; b++) m = vmax(load8(p + b * dx), m);
                mp_store(y, g->yhalf, j, m, wo - j < 8 ? wo - j : 8);
            }
        } else if (sx == 2 && dx == 1) { /* taps 2k and 2k + 1 from the same loads */
            for (; j < wo; j += 8) {
                const float *p = vp + 2 * j;
                v8 m = mp_even(p);
                for (long b = 1; b < kw; b++)
                    m = vmax(b & 1 ? mp_odd(p + b - 1) : mp_even(p + b), m);
                mp_store(y, g->yhalf, j, m, wo - j < 8 ? wo - j : 8);
            }
        } else if (sx == 2) {
            for (; j < wo; j += 8) {
                const float *p = vp + 2 * j;
                v8 m = mp_even(p);
                for (long b = 1; b < kw; b++) m = vmax(mp_even(p + b * dx), m);
                mp_store(y, g->yhalf, j, m, wo - j < 8 ? wo - j : 8);
            }
        } else {
            for (; j < wo; j++) {
                const float *p = vp + j * sx;
                float m = p[0];
                for (long b = 1; b < kw; b++) m = p[b * dx] > m ? p[b * dx] : m;
                mp_store1(y, g->yhalf, j, m);
            }
        }
    }
}

/* rows wider than the buffer: output by output, taps in order (as EI_MAXPOOL_PLANE) */
static void mp_plane_scalar(const void *xp, void *yp, const mp_geometry *g) {
    for (long i = 0; i < g->ho; i++)
        for (long j = 0; j < g->wo; j++) {
            float m = -__builtin_inff();
            for (long a = 0; a < g->kh; a++) {
                long r = i * g->sy - g->pt + a * g->dy;
                if (r < 0 || r >= g->h) continue;
                for (long b = 0; b < g->kw; b++) {
                    long col = j * g->sx - g->pl + b * g->dx;
                    if (col < 0 || col >= g->w) continue;
                    float x = mp_load1(xp, g->xhalf, r * g->w + col);
                    m = x > m ? x : m;
                }
            }
            mp_store1(yp, g->yhalf, i * g->wo + j, m);
        }
}

/* planes [p0, p1) of n x c planes at element strides xis / xcs, yis / ycs */
static void mp_planes(const void *x, void *y, long c, long xis, long xcs, long yis, long ycs,
                      long p0, long p1, const mp_geometry *g) {
    const long xs = g->xhalf ? 2 : 4, ys = g->yhalf ? 2 : 4;
    if (mp_rows_fit(g)) {
        float vp[EI_MPF_BUF] __attribute__((aligned(64)));
        long span = mp_span(g);
        for (long k = 0; k < span; k++) vp[k] = -__builtin_inff();
        for (long p = p0; p < p1; p++)
            mp_plane_rows((const char *)x + ((p / c) * xis + (p % c) * xcs) * xs,
                          (char *)y + ((p / c) * yis + (p % c) * ycs) * ys, g, vp);
        return;
    }
    for (long p = p0; p < p1; p++)
        mp_plane_scalar((const char *)x + ((p / c) * xis + (p % c) * xcs) * xs,
                        (char *)y + ((p / c) * yis + (p % c) * ycs) * ys, g);
}

/* contiguous float32 planes (maxpool_args, args.h) */
void maxpool_f32(const maxpool_args *a) {
    mp_geometry g = {a->h, a->w, a->ho, a->wo, a->kh, a->kw, a->sy, a->sx,
                     a->pt, a->pl, a->dy, a->dx, 0, 0};
    mp_planes(a->x, a->y, 1, a->h * a->w, 0, a->ho * a->wo, 0, 0, a->planes, &g);
}

/* planes [p0, p1) of n x c, any N / C strides (channel slices of a concat), float32 or
 * float16 (half bit 1: x, bit 2: y) */
void maxpool_planes_f32(const maxpool_planes_args *a) {
    mp_geometry g = {a->h, a->w, a->ho, a->wo, a->kh, a->kw, a->sy, a->sx,
                     a->pt, a->pl, a->dy, a->dx, a->half & 1, (a->half >> 1) & 1};
    mp_planes(a->x, a->y, a->c, a->xis, a->xcs, a->yis, a->ycs, a->p0, a->p1, &g);
}

EI_TASK(maxpool)
EI_TASK(maxpool_planes)
