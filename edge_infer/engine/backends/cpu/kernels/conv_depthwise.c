/* Depthwise convolution, row by row: compiled on the target device (-march/-mcpu=native).
 *
 * One channel at a time, one output row at a time. The kh input rows an output row reads
 * are laid out in a ring of row slots (each input row once per channel, while in L1): a
 * slot holds the row's sx column phases, zero-padded, wq floats each, so that tap kx of
 * output column ox reads phase (kx * dx) % sx at ox + (kx * dx) / sx — a contiguous vector
 * for every tap, whatever the stride. Rows above or below the input read a zero slot.
 * The output row is computed 16 then 8 columns at a time (the last vector partly stored)
 * with bias, residual and activation applied in registers (simd.h finish()).
 *
 * The previous kernel split each whole channel plane into stride phases and walked it in
 * 16-wide strips of the padded grid: per strip a scalar target computation, and strips that
 * straddle rows (the grid is wider than the output) stored lane by lane — most strips at
 * 112 x 112, all of them at 7 x 7 and 14 x 14. This one stores whole output-row vectors.
 */
#include <limits.h>

#include "simd.h"

/* Input row `row` (w floats) as sx column phases of wq floats at d: phase px, element j is
 * padded column j * sx + px, i.e. input column j * sx + px - pl, zero outside [0, w). */
static inline __attribute__((always_inline)) void fill_row(const float *row, long w, long pl,
                                                          long sx, long wq, float *d) {
    for (long px = 0; px < sx; px++, d += wq) {
        long j0 = pl > px ? (pl - px + sx - 1) / sx : 0;
        long j1 = w - 1 + pl - px >= 0 ? (w - 1 + pl - px) / sx + 1 : 0;
        if (j1 > wq) j1 = wq;
        if (j0 > j1) j0 = j1;
        /* plain loops, not memset/memcpy: the runs are short (a few to a hundred floats)
         * and, inlined with a constant sx, the copy vectorizes */
        for (long j = 0; j < j0; j++) d[j] = 0.0f;
        const float *s = row + j0 * sx + px - pl;
        float *e = d + j0;
        for (long j = 0; j < j1 - j0; j++) e[j] = s[j * sx];
        for (long j = j1; j < wq; j++) d[j] = 0.0f;
    }
}

/* The first n (< 8) lanes of a vector: loaded (the others zero) / stored (the others left
 * alone). Masked moves on AVX2: the copy through a stack buffer costs a store-forwarding
 * stall per row end, and rows of 7 and 14 outputs are all row end. */
#if defined(__AVX2__)
#include <immintrin.h>
static inline v8i first_lanes(long n) {
    v8i lane = {0, 1, 2, 3, 4, 5, 6, 7};
    return lane < (int)n;
}
static inline v8 load_n(const float *p, long n) {
    return (v8)_mm256_maskload_ps(p, (__m256i)first_lanes(n));
}
static inline void store_n(float *p, v8 y, long n) {
    _mm256_maskstore_ps(p, (__m256i)first_lanes(n), (__m256)y);
}
#else
static inline v8 load_n(const float *p, long n) {
    float t[8] = {0};
    for (long j = 0; j < n; j++) t[j] = p[j];
    return load8(t);
}
static inline void store_n(float *p, v8 y, long n) {
    float t[8];
    store8(t, y);
    for (long j = 0; j < n; j++) p[j] = t[j];
}
#endif

/* n (<= 8) outputs at o (residual at zr): the epilogue on one vector, then stored */
static inline __attribute__((always_inline)) void store_row8(float *o, const float *zr,
                                                            long n, v8 y, float b, long act,
                                                            float p0, float p1,
                                                            long residual) {
    v8 z = {0};
    if (residual) z = n == 8 ? load8(zr) : load_n(zr, n);
    y = finish(y, splat(b), z, act, p0, p1, residual);
    if (n == 8)
        store8(o, y);
    else
        store_n(o, y, n);
}

/* One channel: xc its input plane (row stride xrs), wc its kh * kw weights, oc / zc its
 * output / residual planes (ho x wo, rows contiguous). rows: the ring of nslots slots of
 * sx * wq floats, then a zero slot. Always inlined so that the dispatch below gets the
 * common kernel shapes with constant kh, kw, sx, dx (fully unrolled tap loops). */
static inline __attribute__((always_inline)) void dw_channel(
    const float *xc, long xrs, long h, long w, long pt, long pl, long sy, long sx, long kh,
    long kw, long dy, long dx, long wq, float *rows, const float *wc, float b, long ho,
    long wo, float *oc, const float *zc, long act, float p0, float p1, long residual) {
    long nslots = (kh - 1) * dy + 1, slen = sx * wq;
    const float *zero = rows + nslots * slen;
    long held[nslots];
    for (long s = 0; s < nslots; s++) held[s] = LONG_MIN;
    const float *tp[kh * kw];
    v8 wt[kh * kw];
    for (long t = 0; t < kh * kw; t++) wt[t] = splat(wc[t]);
    for (long oy = 0; oy < ho; oy++) {
        for (long ky = 0; ky < kh; ky++) {
            long iy = oy * sy - pt + ky * dy;
            const float *r = zero;
            if (iy >= 0 && iy < h) {
                /* the kh rows of an output row span nslots consecutive input rows: distinct
                 * slots */
                float *slot = rows + (iy % nslots) * slen;
                if (held[iy % nslots] != iy) {
                    fill_row(xc + iy * xrs, w, pl, sx, wq, slot);
                    held[iy % nslots] = iy;
                }
                r = slot;
            }
            for (long kx = 0; kx < kw; kx++)
                tp[ky * kw + kx] = r + ((kx * dx) % sx) * wq + (kx * dx) / sx;
        }
        float *o = oc + oy * wo;
        const float *zr = zc ? zc + oy * wo : 0;
        long ox = 0;
        for (; ox + 16 <= wo; ox += 16) {
            v8 a0 = {0}, a1 = {0};
            for (long t = 0; t < kh * kw; t++) {
                a0 += wt[t] * load8(tp[t] + ox);
                a1 += wt[t] * load8(tp[t] + ox + 8);
            }
            store_row8(o + ox, zr ? zr + ox : 0, 8, a0, b, act, p0, p1, residual);
            store_row8(o + ox + 8, zr ? zr + ox + 8 : 0, 8, a1, b, act, p0, p1, residual);
        }
        for (; ox < wo; ox += 8) {
            v8 a0 = {0};
            for (long t = 0; t < kh * kw; t++) a0 += wt[t] * load8(tp[t] + ox);
            long n = wo - ox < 8 ? wo - ox : 8;
            store_row8(o + ox, zr ? zr + ox : 0, n, a0, b, act, p0, p1, residual);
        }
    }
}

#define DW_CHANNEL(KH, KW, SX, DY, DX)                                                         \
    dw_channel(xc, a->xrs, a->h, a->w, a->pt, a->pl, a->sy, SX, KH, KW, DY, DX, a->wq,        \
               a->rows, wc, b, a->ho, a->wo, oc, zc, a->act, a->p0, a->p1, a->residual)

/* Channels [c0, c1) of one image. */
void conv_depthwise_f32(const conv_depthwise_args *a) {
    long kh = a->kh, kw = a->kw, sx = a->sx, dy = a->dy, dx = a->dx;
    long slen = sx * a->wq;
    memset(a->rows + ((kh - 1) * dy + 1) * slen, 0, (size_t)slen * sizeof(float));
    long unit = dy == 1 && dx == 1;
    for (long c = a->c0; c < a->c1; c++) {
        const float *xc = a->x + c * a->xcs;
        const float *wc = a->wts + c * kh * kw;
        float b = a->bias ? a->bias[c] : 0.0f;
        float *oc = a->out + c * a->ocs;
        const float *zc = a->z ? a->z + c * a->zcs : 0;
        if (unit && kh == 3 && kw == 3 && sx == 1)
            DW_CHANNEL(3, 3, 1, 1, 1);
        else if (unit && kh == 3 && kw == 3 && sx == 2)
            DW_CHANNEL(3, 3, 2, 1, 1);
        else if (unit && kh == 5 && kw == 5 && sx == 1)
            DW_CHANNEL(5, 5, 1, 1, 1);
        else if (unit && kh == 5 && kw == 5 && sx == 2)
            DW_CHANNEL(5, 5, 2, 1, 1);
        else
            DW_CHANNEL(kh, kw, sx, dy, dx);
    }
}

EI_TASK(conv_depthwise)
