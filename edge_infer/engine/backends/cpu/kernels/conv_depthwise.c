/* Depthwise convolution: compiled on the target device (-march/-mcpu=native). Three paths,
 * picked by the tactic (cpu_depthwise.py: DW_WIDE, GROUPED_MAX_WIDTH, measured) through the
 * path field `grouped`: bit 1 asks for vectors along rows (dw_wide below: AVX-512 builds,
 * 3 x 3 kernels at stride 1 or 2), which builds without it and other kernels replace with
 * bit 0's path: channel groups (1) or row by row (0). Float16 storage (field `half`: FP16
 * engines, tactics/cpu_fp16.py half_io) only on the vectors along rows: their loads widen
 * and their stores narrow (half.h); builds without them compute it one output at a time.
 * AVX2 builds take bit 1 (and float16 storage) for 3 x 3 layers at stride 1 or 2
 * (dw_v8_range: 8-float vectors along rows); other layers there go bit 0's way.
 *
 * Row by row (large planes at stride 1): one channel at a time, one output row at a time.
 * The kh input rows an output row reads are laid out in a ring of row slots (each input row
 * once per channel, while in L1): a slot holds the row's sx column phases, zero-padded, wq
 * floats each, so that tap kx of output column ox reads phase (kx * dx) % sx at
 * ox + (kx * dx) / sx — a contiguous vector for every tap, whatever the stride. Rows above
 * or below the input read a zero slot. The output row is computed 16 then 8 columns at a
 * time (the last vector partly stored) with bias, residual and activation applied in
 * registers (simd.h finish()).
 *
 * Channel groups (small planes, strided layers): 8 channels at a time, vectors along
 * channels, as onnxruntime's NCHWc kernels do, the layout changed on the way in and out by
 * 8 x 8 transposes in registers (dw_group below).
 *
 * The previous kernel split each whole channel plane into stride phases and walked it in
 * 16-wide strips of the padded grid: per strip a scalar target computation, and strips that
 * straddle rows (the grid is wider than the output) stored lane by lane — most strips at
 * 112 x 112, all of them at 7 x 7 and 14 x 14.
 */
#include <limits.h>

#include "simd.h"

#include "half.h"

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
#if defined(__AVX512VL__)
#include <immintrin.h>
/* mask registers: one plain masked move (the AVX2 vmaskmov store is slow on some cores) */
static inline v8 load_n(const float *p, long n) {
    return (v8)_mm256_maskz_loadu_ps((__mmask8)((1u << n) - 1), p);
}
static inline void store_n(float *p, v8 y, long n) {
    _mm256_mask_storeu_ps(p, (__mmask8)((1u << n) - 1), (__m256)y);
}
#elif defined(__AVX2__)
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

/* Small planes (7 x 7, 14 x 14): a row is one or two vectors, and the per-row work above
 * (slot fills, tap pointers, a row-end store) costs more than its arithmetic; at stride 2
 * the column phases cost as much again. There, CV channels go through together, vectors
 * along channels (onnxruntime's NCHWc): their padded planes interleaved in P ([hp][wp][CV],
 * zero borders; rows of 8 columns x 8 channels transposed in registers), then
 * out[oy, ox] = sum_t W[t] * P[oy * sy + ky * dy][ox * sx + kx * dx] with W[t] the group's
 * CV weights of tap t, 8 output positions at a time in 8 independent accumulators (no FMA
 * latency chain; within a row, adjacent taps share their loads), transposed back in
 * registers to each channel's 8 positions and stored with the epilogue. Lanes past the
 * last channel (nc < CV) compute zeros that are never stored. Measured against computing
 * one position at a time into a buffer transposed afterwards: stride 2 15-20 % faster,
 * stride 1 the same within the noise (one thread, MobileNetV2's layers). */
#define CV 8

#if defined(__clang__) || __GNUC__ >= 12
#define SHUF(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define SHUF(a, b, ...) __builtin_shuffle(a, b, (v8i){__VA_ARGS__})
#endif

/* r[i][j] -> r[j][i] */
static inline __attribute__((always_inline)) void transpose8(v8 r[8]) {
    v8 t[8], u[8];
    for (long i = 0; i < 8; i += 2) {
        t[i] = SHUF(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        t[i + 1] = SHUF(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (long i = 0; i < 8; i += 4) {
        u[i] = SHUF(t[i], t[i + 2], 0, 1, 8, 9, 4, 5, 12, 13);
        u[i + 1] = SHUF(t[i], t[i + 2], 2, 3, 10, 11, 6, 7, 14, 15);
        u[i + 2] = SHUF(t[i + 1], t[i + 3], 0, 1, 8, 9, 4, 5, 12, 13);
        u[i + 3] = SHUF(t[i + 1], t[i + 3], 2, 3, 10, 11, 6, 7, 14, 15);
    }
    for (long i = 0; i < 4; i++) {
        r[i] = SHUF(u[i], u[i + 4], 0, 1, 2, 3, 8, 9, 10, 11);
        r[i + 4] = SHUF(u[i], u[i + 4], 4, 5, 6, 7, 12, 13, 14, 15);
    }
}

/* P rows [py0, py1) of the group's padded planes, at P (row py at P + (py - py0) * wp * CV) */
static inline __attribute__((always_inline)) void dw_fill(const conv_depthwise_args *a, long c,
                                                         long nc, float *P, long wp, long py0,
                                                         long py1) {
    long x0 = a->pl < wp ? a->pl : wp, x1 = a->pl + a->w < wp ? a->pl + a->w : wp;
    for (long py = py0; py < py1; py++) {
        long iy = py - a->pt;
        float *drow = P + (py - py0) * wp * CV;
        if (iy < 0 || iy >= a->h) {
            memset(drow, 0, (size_t)(wp * CV) * sizeof(float));
            continue;
        }
        memset(drow, 0, (size_t)(x0 * CV) * sizeof(float));
        memset(drow + x1 * CV, 0, (size_t)((wp - x1) * CV) * sizeof(float));
        const float *row = a->x + c * a->xcs + iy * a->xrs;
        for (long px = x0; px < x1; px += 8) {
            long m = x1 - px < 8 ? x1 - px : 8;
            v8 r[8];
            for (long ci = 0; ci < CV; ci++) {
                const float *src = row + ci * a->xcs + px - a->pl;
                r[ci] = ci >= nc ? (v8){0} : m == 8 ? load8(src) : load_n(src, m);
            }
            transpose8(r);
            for (long k = 0; k < m; k++) store8(drow + (px + k) * CV, r[k]);
        }
    }
}

/* the P rows a band of output rows reads are laid out about DW_BAND_BYTES at a time (in L1
 * while the band is computed); the kernel's reach is laid out again for the next band */
#ifndef DW_BAND_BYTES
#define DW_BAND_BYTES 49152
#endif

static inline __attribute__((always_inline)) void dw_group(
    const conv_depthwise_args *a, long c, long nc, float *buf, long kh, long kw, long sy,
    long sx, long dy, long dx) {
    long ho = a->ho, wo = a->wo, T = kh * kw;
    long wp = (wo - 1) * sx + (kw - 1) * dx + 1, reach = (kh - 1) * dy + 1;
    long rows = DW_BAND_BYTES / (wp * CV * (long)sizeof(float));
    long band = rows > reach ? (rows - reach) / sy + 1 : 1;
    if (band > ho) band = ho;
    float *P = buf;
    v8 W[T];
    for (long t = 0; t < T; t++) {
        float wt[CV] = {0};
        for (long ci = 0; ci < nc; ci++) wt[ci] = a->wts[(c + ci) * T + t];
        W[t] = load8(wt);
    }
    long toff[T];
    for (long ky = 0; ky < kh; ky++)
        for (long kx = 0; kx < kw; kx++) toff[ky * kw + kx] = ((ky * dy) * wp + kx * dx) * CV;
    for (long oy0 = 0; oy0 < ho; oy0 += band) {
        long oy1 = oy0 + band < ho ? oy0 + band : ho;
        dw_fill(a, c, nc, P, wp, oy0 * sy, (oy1 - 1) * sy + reach);
        /* 8 output positions at a time (in the plane's row-major order, so stores are
         * whole vectors but at the band's end): 8 independent accumulators, position j's
         * CV channels, transposed to each channel's 8 positions and stored with the
         * epilogue */
        long n = oy1 * wo, oy = oy0, ox = 0; /* the block's first position */
        for (long p = oy0 * wo; p < n; p += 8) {
            const float *base[8];
            for (long j = 0, y = oy, x = ox; j < 8; j++) {
                /* past the band's end: a valid repeat */
                base[j] = P + ((y - oy0) * sy * wp + x * sx) * CV;
                if (p + j + 1 < n && ++x == wo) {
                    x = 0;
                    y++;
                }
            }
            v8 acc[8] = {{0}};
            if (ox + 8 <= wo) { /* in one row: constant offsets, adjacent taps share loads */
                for (long ky = 0; ky < kh; ky++)
                    for (long kx = 0; kx < kw; kx++) {
                        const float *q = base[0] + ((ky * dy) * wp + kx * dx) * CV;
                        v8 wt = W[ky * kw + kx];
#pragma GCC unroll 8
                        for (long j = 0; j < 8; j++) acc[j] += wt * load8(q + j * sx * CV);
                    }
            } else {
                for (long t = 0; t < T; t++) {
                    v8 wt = W[t];
#pragma GCC unroll 8
                    for (long j = 0; j < 8; j++) acc[j] += wt * load8(base[j] + toff[t]);
                }
            }
            transpose8(acc);
            long m = n - p < 8 ? n - p : 8;
            for (long ci = 0; ci < nc; ci++) {
                const float *zc = a->z ? a->z + (c + ci) * a->zcs + p : 0;
                store_row8(a->out + (c + ci) * a->ocs + p, zc, m, acc[ci],
                           a->bias ? a->bias[c + ci] : 0.0f, a->act, a->p0, a->p1,
                           a->residual);
            }
            ox += 8;
            while (ox >= wo && oy < oy1) {
                ox -= wo;
                oy++;
            }
        }
    }
}

/* Vectors along rows (AVX-512; 3 x 3 kernels at stride 1 and 2, no dilation; path field
 * bit 1, see conv_depthwise_f32): one channel at a time in NCHW, straight from the input (no
 * layout pass, no transposes), 16 output columns a vector, four output rows at a time (they
 * share their input rows' loads). Tap kx of output columns ox0 .. ox0 + 15 reads input
 * columns (ox0 + l) * s + kx - pl: at stride 1 one unaligned load, at stride 2 the even or
 * odd columns of two loads (shuffles, see dw_wide3). Columns outside the input are masked
 * off the loads (they read as zero padding); rows outside it are skipped. Each row's last
 * vector is stored under a mask. Measured against one accumulator per output row and two
 * rows at a time (MobileNetV2's layers, one thread): the FMA chains of 9 were the bound,
 * 1.3-2x slower. */
#if defined(__AVX512F__) && defined(__AVX512DQ__) && defined(__AVX512BW__) &&                  \
    defined(__AVX512VL__)
#define DW_WIDE 1

/* the lanes l (of 16) with lo <= l < hi */
static inline __mmask16 lanes(long lo, long hi) {
    if (lo < 0) lo = 0;
    if (hi > 16) hi = 16;
    return hi <= lo ? 0 : (__mmask16)(((1u << hi) - 1) & ~((1u << lo) - 1));
}

/* 16 values from element i of p, float16 when h (widened: exact), else float32; the lanes
 * outside mask m zero (not read) */
static inline __attribute__((always_inline)) __m512 load16(const void *p, long i, __mmask16 m,
                                                          long h) {
    if (h) return h16_load_mask((const uint16_t *)p + i, m);
    return _mm512_maskz_loadu_ps(m, (const float *)p + i);
}

/* y's lanes in mask m to element i of p: float16 when h (nearest even: half.h), else
 * float32 */
static inline __attribute__((always_inline)) void store16(void *p, long i, __mmask16 m,
                                                         __m512 y, long h) {
    if (h)
        h16_store_mask((uint16_t *)p + i, m, y);
    else
        _mm512_mask_storeu_ps((float *)p + i, m, y);
}

/* store16 of all 16 lanes: a plain store (a masked one costs about a third of a layer's
 * time on Zen 4, measured) */
static inline __attribute__((always_inline)) void store16_all(void *p, long i, __m512 y,
                                                             long h) {
    if (h)
        h16_store((uint16_t *)p + i, y);
    else
        _mm512_storeu_ps((float *)p + i, y);
}

/* 16 input columns from col of the row at element r of the channel (mask m: those inside
 * the input; the others zero) */
#define LOADC(r, col, m) load16(xc, (r) + (col), m, xh)

/* acc += the taps of kernel row k (weights W[3 k .. 3 k + 2]) on the tap vectors t0, t1, t2 */
#define TAPROW(acc, k, t0, t1, t2)                                                             \
    acc = _mm512_fmadd_ps(                                                                     \
        W[3 * (k) + 2], t2,                                                                    \
        _mm512_fmadd_ps(W[3 * (k) + 1], t1, _mm512_fmadd_ps(W[3 * (k)], t0, acc)))

/* bias, residual z and activation on 16 outputs y: none, relu and clip in 16 lanes; the
 * others through simd.h finish() on each half (the other paths' arithmetic) */
static inline __attribute__((always_inline)) __m512 epilogue_wide(__m512 y, __m512 z, float b,
                                                                 long act, float p0, float p1,
                                                                 long residual) {
    if (act == EI_ACT_NONE || act == EI_ACT_RELU || act == EI_ACT_CLIP) {
        y = _mm512_add_ps(y, _mm512_set1_ps(b));
        if (residual == 1) y = _mm512_add_ps(y, z);
        if (act == EI_ACT_RELU) y = _mm512_max_ps(y, _mm512_setzero_ps());
        if (act == EI_ACT_CLIP)
            y = _mm512_min_ps(_mm512_max_ps(y, _mm512_set1_ps(p0)), _mm512_set1_ps(p1));
        if (residual == 2) y = _mm512_add_ps(y, z);
        return y;
    }
    v8 y0 = (v8)_mm512_castps512_ps256(y), y1 = (v8)_mm512_extractf32x8_ps(y, 1);
    v8 z0 = (v8)_mm512_castps512_ps256(z), z1 = (v8)_mm512_extractf32x8_ps(z, 1);
    y0 = finish(y0, splat(b), z0, act, p0, p1, residual);
    y1 = finish(y1, splat(b), z1, act, p0, p1, residual);
    return _mm512_insertf32x8(_mm512_castps256_ps512((__m256)y0), (__m256)y1, 1);
}

/* the epilogue on y, stored to element q of the output plane oc under m (residual: element
 * q of zc); a->half bits 2, 4: output, residual float16 */
static inline __attribute__((always_inline)) void finish_wide(const conv_depthwise_args *a,
                                                             void *oc, const void *zc, long q,
                                                             __mmask16 m, __m512 y, float b,
                                                             long simple) {
    if (simple) { /* float32 output, no residual, none / relu / clip (see dw_wide_range) */
        y = _mm512_add_ps(y, _mm512_set1_ps(b));
        if (a->act == EI_ACT_RELU) y = _mm512_max_ps(y, _mm512_setzero_ps());
        if (a->act == EI_ACT_CLIP)
            y = _mm512_min_ps(_mm512_max_ps(y, _mm512_set1_ps(a->p0)), _mm512_set1_ps(a->p1));
        if (m == 0xffff)
            _mm512_storeu_ps((float *)oc + q, y);
        else
            _mm512_mask_storeu_ps((float *)oc + q, m, y);
        return;
    }
    __m512 z = a->residual ? load16(zc, q, m, a->half & 4) : _mm512_setzero_ps();
    y = epilogue_wide(y, z, b, a->act, a->p0, a->p1, a->residual);
    if (m == 0xffff)
        store16_all(oc, q, y, a->half & 2);
    else
        store16(oc, q, m, y, a->half & 2);
}

/* one pass of dw_wide3: output rows oy .. oy + R - 1 (those below ho). `full` (the pass has
 * a row below it, and the epilogue is simple: no residual is read, the output is float32):
 * every vector stored whole (a masked store costs about a third of a layer's time on Zen 4,
 * measured), a row's last, partial vector spilling into the next row's first columns, which
 * are stored afterwards (vectors right to left, rows top to bottom). Otherwise the row ends
 * are stored under their masks. */
static inline __attribute__((always_inline)) void dw_wide3_pass(
    const conv_depthwise_args *a, const void *xc, const __m512 *W, float b, void *oc,
    const void *zc, long s, long R, long xh, long simple, long oy, long full, long al) {
    long h = a->h, w = a->w, pt = a->pt, pl = a->pl, ho = a->ho, wo = a->wo, xrs = a->xrs;
    /* stride 2: output column ox0 + l sits in lane order[l] of the shuffled taps */
    const __m512i order =
        _mm512_setr_epi32(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15);
    long iy0 = oy * s - pt;
    for (long ox0 = (wo - 1) / 16 * 16; ox0 >= 0; ox0 -= 16) {
        long c = ox0 * s - pl; /* the first input column tap 0 reads */
        /* stride 1: taps at c, c + 1, c + 2; stride 2: the window c .. c + 31 (taps 0, 1:
         * its even and odd columns) and c + 2 .. c + 33 (tap 2: its even columns), picked by
         * in-lane shuffles (vshufps: 4 columns of each 128-bit lane from lo, 4 from hi), so
         * that lane 4 k + j holds output column 2 k + j (j < 2) or 8 + 2 k + j - 2: every
         * tap and accumulator in that order, put back in column order once per output
         * vector (`order`). Measured against vpermt2ps per tap (column order, no put-back):
         * 4-7 % faster on MobileNetV2's stride-2 layers. */
        __mmask16 m0 = lanes(-c, w - c), m1 = lanes(-c - 1, w - c - 1);
        __mmask16 m2 = lanes(-c - 2, w - c - 2);
        __mmask16 m16 = lanes(-c - 16, w - c - 16), m18 = lanes(-c - 18, w - c - 18);
        /* al (stride 2, left pad 1): the loads at the vector's own columns 2 ox0 (tap 1's
         * first), 2 ox0 + 16 and, for tap 0's first column 2 ox0 - 1, 2 ox0 - 16: whole
         * cache lines where the row is (MobileNetV2's 112-wide rows), where the loads above
         * from 2 ox0 - 1 each straddle two (measured: a 4-byte offset costs about a sixth of
         * the layer on Zen 4). Taps 1 and 2: the even and odd columns of the first two (a
         * two-source permute each, column order); tap 0: tap 2's columns one lane up, the
         * column before them from the third load's last lane (valignd). */
        long ca = ox0 * s;
        __mmask16 ma = lanes(-ca, w - ca), mb = lanes(-ca - 16, w - ca - 16);
        __mmask16 mp = lanes(16 - ca, w - ca + 16);
        const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24,
                                               26, 28, 30);
        const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25,
                                              27, 29, 31);
        __m512 acc[4][3];
#pragma GCC unroll 4
        for (long r = 0; r < R; r++)
            for (long k = 0; k < 3; k++) acc[r][k] = _mm512_setzero_ps();
#pragma GCC unroll 9
        for (long j = 0; j < 3 + (R - 1) * s; j++) {
            long iy = iy0 + j;
            if (iy < 0 || iy >= h) continue;
            long row = iy * xrs;
            __m512 t0, t1, t2;
            if (s == 1) {
                t0 = LOADC(row, c, m0);
                t1 = LOADC(row, c + 1, m1);
                t2 = LOADC(row, c + 2, m2);
            } else if (al) {
                __m512 lo = LOADC(row, ca, ma), hi = LOADC(row, ca + 16, mb);
                t1 = _mm512_permutex2var_ps(lo, even, hi);
                t2 = _mm512_permutex2var_ps(lo, odd, hi);
                t0 = _mm512_castsi512_ps(_mm512_alignr_epi32(
                    _mm512_castps_si512(t2),
                    _mm512_castps_si512(LOADC(row, ca - 16, mp)), 15));
            } else {
                __m512 lo = LOADC(row, c, m0), hi = LOADC(row, c + 16, m16);
                t0 = _mm512_shuffle_ps(lo, hi, _MM_SHUFFLE(2, 0, 2, 0));
                t1 = _mm512_shuffle_ps(lo, hi, _MM_SHUFFLE(3, 1, 3, 1));
                t2 = _mm512_shuffle_ps(LOADC(row, c + 2, m2), LOADC(row, c + 18, m18),
                                       _MM_SHUFFLE(2, 0, 2, 0));
            }
#pragma GCC unroll 4
            for (long r = 0; r < R; r++)
                if (j >= r * s && j - r * s < 3)
                    TAPROW(acc[r][j - r * s], j - r * s, t0, t1, t2);
        }
        __mmask16 m = full ? (__mmask16)0xffff : lanes(0, wo - ox0);
#pragma GCC unroll 4
        for (long r = 0; r < R; r++) {
            if (!full && oy + r >= ho) break;
            __m512 y = _mm512_add_ps(_mm512_add_ps(acc[r][0], acc[r][1]), acc[r][2]);
            if (s == 2 && !al) y = _mm512_permutexvar_ps(order, y);
            finish_wide(a, oc, zc, (oy + r) * wo + ox0, m, y, b, simple);
        }
    }
}

/* one channel, 3 x 3 at stride s (1 or 2), R output rows at a time: output rows oy + r read
 * input rows oy * s - pt + j, j < 3 + (R - 1) s; row j feeds output row r as kernel row
 * j - r s. An accumulator per output row and kernel row: chains of 3 FMAs, not 9. */
static inline __attribute__((always_inline)) void dw_wide3(const conv_depthwise_args *a,
                                                          const void *xc, const float *wc,
                                                          float b, void *oc, const void *zc,
                                                          long s, long R, long xh,
                                                          long simple, long al) {
    __m512 W[9];
    for (long t = 0; t < 9; t++) W[t] = _mm512_set1_ps(wc[t]);
    long oy = 0;
    /* whole stores spill at most one row (2 wo >= 16: dw_wide3_pairs takes narrower rows) */
    if (simple && 2 * a->wo >= 16)
        for (; oy + R < a->ho; oy += R)
            dw_wide3_pass(a, xc, W, b, oc, zc, s, R, xh, 1, oy, 1, al);
    for (; oy < a->ho; oy += R) dw_wide3_pass(a, xc, W, b, oc, zc, s, R, xh, simple, oy, 0, al);
}

/* Narrow outputs ((wo - 1) * s + 2 < 16, wo <= 8: MobileNetV2's 7 x 7): a vector holds two
 * output rows, oy in lanes 0 .. 7 and oy + 1 in lanes 8 .. 15. Each input row is loaded once
 * (16 columns from -pl, masked) and the tap vectors are picked from two rows' loads by one
 * vpermt2ps each: lane l < 8 column l * s + kx of the first row, lane 8 + l of the second.
 * The two rows' outputs are compressed to 2 wo contiguous lanes (their places in the output
 * plane) and stored under a mask; the residual is loaded the same way and expanded. */
static inline __attribute__((always_inline)) void dw_wide3_pairs(const conv_depthwise_args *a,
                                                                const void *xc,
                                                                const float *wc, float b,
                                                                void *oc, const void *zc,
                                                                long s, const __m512i *idx,
                                                                long xh, long simple) {
    long h = a->h, w = a->w, pt = a->pt, pl = a->pl, ho = a->ho, wo = a->wo, xrs = a->xrs;
    __m512 W[9];
    for (long t = 0; t < 9; t++) W[t] = _mm512_set1_ps(wc[t]);
    __mmask16 mload = lanes(pl, pl + w), one = lanes(0, wo);
    __mmask16 both = (__mmask16)(one | (one << 8));
    /* 4 output rows a pass, two vectors: v = 0 rows oy, oy + 1; v = 1 rows oy + 2, oy + 3 */
    for (long oy = 0; oy < ho; oy += 4) {
        long iy0 = oy * s - pt;
        __m512 L[9];
#pragma GCC unroll 9
        for (long j = 0; j < 3 + 3 * s; j++) { /* input rows iy0 + j */
            long iy = iy0 + j;
            L[j] = iy < 0 || iy >= h ? _mm512_setzero_ps() : LOADC(iy * xrs, -pl, mload);
        }
#pragma GCC unroll 2
        for (long v = 0; v < 2; v++) {
            long y0 = oy + 2 * v;
            if (y0 >= ho) break;
            __m512 acc[3];
            for (long ky = 0; ky < 3; ky++) { /* a chain of 3 FMAs per kernel row */
                const __m512 r0 = L[2 * v * s + ky], r1 = L[(2 * v + 1) * s + ky];
                __m512 t[3];
                for (long kx = 0; kx < 3; kx++) t[kx] = _mm512_permutex2var_ps(r0, idx[kx], r1);
                acc[ky] = _mm512_mul_ps(W[3 * ky], t[0]);
                acc[ky] = _mm512_fmadd_ps(W[3 * ky + 1], t[1], acc[ky]);
                acc[ky] = _mm512_fmadd_ps(W[3 * ky + 2], t[2], acc[ky]);
            }
            __m512 sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), acc[2]);
            __mmask16 m = y0 + 1 < ho ? both : one;
            long n = y0 + 1 < ho ? 2 * wo : wo;
            __m512 z = _mm512_setzero_ps();
            if (a->residual)
                z = _mm512_maskz_expand_ps(m, load16(zc, y0 * wo, lanes(0, n), a->half & 4));
            __m512 y = epilogue_wide(sum, z, b, a->act, a->p0, a->p1, a->residual);
            y = _mm512_maskz_compress_ps(m, y);
            /* whole stores (see dw_wide3_pass) within the plane: the lanes past these two
             * rows land on rows stored afterwards */
            if (simple && y0 * wo + 16 <= ho * wo)
                _mm512_storeu_ps((float *)oc + y0 * wo, y);
            else
                store16(oc, y0 * wo, lanes(0, n), y, a->half & 2);
        }
    }
}

/* channels [c0, c1) of a 3 x 3 layer at stride 1 or 2, vectors along rows; the input
 * float16 when xh (a->half bit 1) */
static inline __attribute__((always_inline)) void dw_wide_channels(const conv_depthwise_args *a,
                                                                  long xh, long simple) {
    /* two rows a vector: each output row's reach within one 16-column load */
    int pairs = a->wo <= 8 && (a->wo - 1) * a->sx + 2 < 16;
    /* pairs: tap kx's lanes of two rows' loads (lane l < 8: column l * s + kx of the first) */
    __m512i idx[3];
    for (long kx = 0; kx < 3; kx++) {
        int t[16];
        for (int l = 0; l < 8; l++)
            t[l] = (int)(l * a->sx + kx), t[8 + l] = (int)(16 + l * a->sx + kx);
        idx[kx] = _mm512_loadu_si512(t);
    }
    long xb = xh ? 2 : 4, ob = a->half & 2 ? 2 : 4, zb = a->half & 4 ? 2 : 4; /* bytes */
    for (long c = a->c0; c < a->c1; c++) {
        const void *xc = (const char *)a->x + c * a->xcs * xb;
        const float *wc = a->wts + c * 9;
        float b = a->bias ? a->bias[c] : 0.0f;
        void *oc = (char *)a->out + c * a->ocs * ob;
        const void *zc = a->z ? (const char *)a->z + c * a->zcs * zb : 0;
        if (pairs && a->sx == 1)
            dw_wide3_pairs(a, xc, wc, b, oc, zc, 1, idx, xh, simple);
        else if (pairs)
            dw_wide3_pairs(a, xc, wc, b, oc, zc, 2, idx, xh, simple);
        else if (a->sx == 1)
            dw_wide3(a, xc, wc, b, oc, zc, 1, 4, xh, simple, 0);
        else if (a->pl == 1)
            dw_wide3(a, xc, wc, b, oc, zc, 2, 4, xh, simple, 1);
        else
            dw_wide3(a, xc, wc, b, oc, zc, 2, 4, xh, simple, 0);
    }
}

static void dw_wide_range(const conv_depthwise_args *args) {
    /* a private copy: the output stores cannot alias it, so its fields stay in registers
     * and the epilogue's tests leave the loops (through `args`, every store reloaded them;
     * this function's own copy: its caller's is out of its sight) */
    conv_depthwise_args copy = *args;
    const conv_depthwise_args *a = &copy;
    if (!a->half && !a->residual &&
        (a->act == EI_ACT_NONE || a->act == EI_ACT_RELU || a->act == EI_ACT_CLIP))
        dw_wide_channels(a, 0, 1); /* the common layers: a lean epilogue */
    else if (a->half & 1)
        dw_wide_channels(a, 1, 0);
    else
        dw_wide_channels(a, 0, 0);
}

/* the layers dw_wide_range takes */
static int wide_fits(const conv_depthwise_args *a) {
    return a->kh == 3 && a->kw == 3 && a->dy == 1 && a->dx == 1 && a->sy == a->sx &&
           (a->sx == 1 || a->sx == 2);
}
#endif

#if !defined(DW_WIDE) && defined(__AVX2__)
/* Vectors along rows on AVX2 builds (8-float vectors; path field bit 1 or float16 storage:
 * 3 x 3 kernels at stride 1 or 2, no dilation, left pad at most V8_OFF, output rows at most
 * 8 V8_MAXV wide): one channel at a time in NCHW, 8 output columns a vector (the row's
 * last vector right-aligned, overlapping the one before it; rows under 8 wide: one vector
 * whose lanes past the row spill onto the next row, stored afterwards), four output rows a
 * pass sharing their input rows' loads, one accumulator per output row (its 9 FMAs in tap
 * order: the channel groups' order, so the same bits as they give). Taps at stride 1 are
 * loads straight from the input (the columns outside the row masked off the loads at the
 * row's ends), or on small planes plain loads from the channel's plane copied into a
 * zero-padded buffer (rows V8_OFF columns in, zero rows around); at stride 2 the even / odd
 * columns of two loads from the input (vshufps, put back in column order once per output
 * vector), masked the same way. Float16 storage (half bits 1, 2, 4): the plane
 * widened into the buffer (exact), the output narrowed to nearest even, the residual
 * widened: the float32 path's arithmetic, so the conversion route's bits.
 * Measured against the channel groups (small planes, stride 2) and the row by row path
 * (one thread, CPU time, alternating in one process, MobileNetV2's layers, Zen 3): 14 x 14
 * 0.63x, 7 x 7 0.54-0.72x, 28 x 28 0.55-0.6x, 56 x 56 0.67-0.8x, 112 x 112 0.69-0.8x;
 * stride 2 0.85-0.95x (bench/dw_cpu_ab.py). Measured worse: three accumulators per output
 * row (chains of 3: the tile spills, 1.2x), 2, 3, 6 or 8 rows a pass, the next channel's
 * plane copied while this one is computed, every load masked (not only at the rows'
 * ends). Not built for plain x86-64 (SSE) or NEON. */
#define DW_V8 1
#define V8_R 4     /* output rows a pass */
#define V8_MAXV 32 /* vectors a row: output rows up to 256 wide */
#define V8_OFF 8   /* the padded plane: input column j at V8_OFF + j */
#ifndef V8_COPY_MAX
#define V8_COPY_MAX 2048 /* floats: larger stride-1 planes read from the input */
#endif
/* vshufps: per 128-bit lane two columns of each load, put back in column order once per
 * output vector (conv_chain.c measured this faster than a two-source permute per tap) */
#define R_EVEN 0, 2, 8, 10, 4, 6, 12, 14
#define R_ODD 1, 3, 9, 11, 5, 7, 13, 15

/* the padded plane's row width in floats (cpu_depthwise.py: _v8_ws) */
static inline long v8_ws(long w, long wo) {
    return (V8_OFF + (w > 2 * wo + 2 ? w : 2 * wo + 2) + 24) / 8 * 8;
}

/* 8 floats at p, the lanes off in m zero (not read) */
static inline __attribute__((always_inline)) v8 v8_ld(const float *p, v8i m) {
    return (v8)_mm256_maskload_ps(p, (__m256i)m);
}

/* acc + W[3k] t0 + W[3k+1] t1 + W[3k+2] t2: three FMAs in that order */
static inline __attribute__((always_inline)) v8 v8_taps(v8 acc, const v8 *W, long k, v8 t0,
                                                       v8 t1, v8 t2) {
    __m256 r = _mm256_fmadd_ps((__m256)W[3 * k], (__m256)t0, (__m256)acc);
    r = _mm256_fmadd_ps((__m256)W[3 * k + 1], (__m256)t1, r);
    return (v8)_mm256_fmadd_ps((__m256)W[3 * k + 2], (__m256)t2, r);
}

/* the epilogue on y and its n (<= 8) lanes stored to output q (residual: z's q): ep 0, 1
 * bias and clip (relu: clip(0, inf)), 2 simd.h finish(); float16 out with a->half & 2, z
 * with a->half & 4. Out of line: the common layers' whole vectors (ep 0, 1) are stored in
 * v8_pass itself (a copy of this per stride, row and kind took seconds to compile). */
static __attribute__((noinline)) void v8_finish(const conv_depthwise_args *a, v8 y, float b,
                                                void *oc, const void *zc, long q, long n,
                                                long ep) {
    if (ep != 2) {
        y = vmin(vmax(y + splat(b), splat(a->p0)), splat(a->p1));
    } else {
        v8 z = {0};
        if (a->residual && n == 8) /* (the _n loads take fewer than 8 lanes) */
            z = a->half & 4 ? h8_load((const uint16_t *)zc + q) : load8((const float *)zc + q);
        else if (a->residual)
            z = a->half & 4 ? h8_load_n((const uint16_t *)zc + q, n)
                            : load_n((const float *)zc + q, n);
        y = finish(y, splat(b), z, a->act, a->p0, a->p1, a->residual);
    }
    if (a->half & 2 && n == 8)
        h8_store((uint16_t *)oc + q, y);
    else if (a->half & 2)
        h8_store_n((uint16_t *)oc + q, y, n);
    else if (n == 8)
        store8((float *)oc + q, y);
    else
        store_n((float *)oc + q, y, n);
}

/* output rows oy .. oy + V8_R - 1 (those below ho) of the vector at output column c0: rp[t]
 * input row oy * s - pt + t at its padded column 0, mk the stride-2 loads' lanes; ep 0
 * float32 out, 1 float16 out (both bias and clip only: relu is clip(0, inf)), 2 any
 * epilogue; lim: the outputs from the plane's start that are this call's to write (see
 * dw_v8_layer); masked 1 every load masked by mk, 2 (stride 2) lo alone, 0 none */
static inline __attribute__((always_inline)) void v8_pass(
    const conv_depthwise_args *a, const float *const *rp, long oy, long s, long c0,
    const v8i *mk, const v8 *W, float b, void *oc, const void *zc, long ep, long lim,
    long masked, uintptr_t pf) {
    enum { R = V8_R };
    long ho = a->ho, wo = a->wo, x0 = c0 * s;
    v8 acc[R];
#pragma GCC unroll 4
    for (long r = 0; r < R; r++) acc[r] = (v8){0};
#pragma GCC unroll 9
    for (long t = 0; t < 3 + (R - 1) * s; t++) {
        const float *q = rp[t] + x0;
        v8 t0, t1, t2;
        if (s == 1 && masked) {
            t0 = v8_ld(q, mk[0]);
            t1 = v8_ld(q + 1, mk[1]);
            t2 = v8_ld(q + 2, mk[2]);
        } else if (s == 1) {
            t0 = load8(q);
            t1 = load8(q + 1);
            t2 = load8(q + 2);
        } else {
            v8 lo, hi, lo2, hi2;
            if (masked == 1) {
                lo = v8_ld(q, mk[0]), hi = v8_ld(q + 8, mk[1]);
                lo2 = v8_ld(q + 2, mk[2]), hi2 = v8_ld(q + 10, mk[3]);
            } else if (masked == 2) {
                lo = v8_ld(q, mk[0]), hi = load8(q + 8), lo2 = load8(q + 2), hi2 = load8(q + 10);
            } else {
                lo = load8(q), hi = load8(q + 8), lo2 = load8(q + 2), hi2 = load8(q + 10);
            }
            /* hi in a register: GCC folded it into both shuffles, loading it twice (a
             * fifth load a row; the loads are this loop's bound: 0.97x without, input in
             * L1/L2) */
            __asm__("" : "+x"(hi));
            t0 = SHUF(lo, hi, R_EVEN);
            t1 = SHUF(lo, hi, R_ODD);
            t2 = SHUF(lo2, hi2, R_EVEN);
            if (t >= 1 && t < 9) __builtin_prefetch((const void *)(pf + 64 * (t - 1)));
        }
#pragma GCC unroll 4
        for (long r = 0; r < R; r++)
            if (t >= r * s && t - r * s < 3) acc[r] = v8_taps(acc[r], W, t - r * s, t0, t1, t2);
    }
#pragma GCC unroll 4
    for (long r = 0; r < R; r++) {
        if (oy + r >= ho) break;
        v8 y = acc[r];
        if (s == 2) y = SHUF(y, y, 0, 1, 4, 5, 2, 3, 6, 7);
        long q = (oy + r) * wo + c0;
        /* whole vectors: within the row, or spilling onto the next rows' first outputs
         * (stored afterwards; not past the chunk's outputs, nor onto a residual read
         * later: then the row's lanes alone) */
        long n = wo >= 8 || (!a->residual && q + 8 <= lim) ? 8 : wo;
        if (ep == 0 && n == 8)
            store8((float *)oc + q, vmin(vmax(y + splat(b), splat(a->p0)), splat(a->p1)));
        else if (ep == 1 && n == 8)
            h8_store((uint16_t *)oc + q, vmin(vmax(y + splat(b), splat(a->p0)), splat(a->p1)));
        else
            v8_finish(a, y, b, oc, zc, q, n, ep);
    }
}

/* channel c's plane into P (rows of ws floats, input column j at V8_OFF + j; the columns
 * around it stay zero), widened from float16 when a->half & 1 */
static inline __attribute__((always_inline)) void v8_copy(const conv_depthwise_args *a, long c,
                                                         float *P, long ws) {
    long h = a->h, w = a->w;
    for (long iy = 0; iy < h; iy++) {
        float *d = P + iy * ws + V8_OFF;
        if (a->half & 1) {
            const uint16_t *src = (const uint16_t *)a->x + c * a->xcs + iy * a->xrs;
            if (w < 8) {
                store8(d, h8_load_n(src, w)); /* zeros past the row */
            } else {
                for (long k = 0; k + 8 < w; k += 8) store8(d + k, h8_load(src + k));
                store8(d + w - 8, h8_load(src + w - 8));
            }
        } else {
            const float *src = a->x + c * a->xcs + iy * a->xrs;
            if (w < 8) {
                store8(d, load_n(src, w));
            } else {
                for (long k = 0; k + 8 < w; k += 8) store8(d + k, load8(src + k));
                store8(d + w - 8, load8(src + w - 8));
            }
        }
    }
}

/* channels [c0, c1) at stride s with epilogue kind ep (v8_pass) */
static inline __attribute__((always_inline)) void dw_v8_layer(const conv_depthwise_args *a,
                                                             long s, long ep) {
    long h = a->h, w = a->w, ho = a->ho, wo = a->wo, nv = (wo + 7) / 8, ws = v8_ws(w, wo);
    float *P = a->rows;
    const float *zero = P + h * ws; /* a zero row: the rows above and below the input */
    long col[V8_MAXV]; /* the vectors' first output columns */
    for (long j = 0; j < nv; j++) col[j] = wo < 8 ? 0 : j + 1 < nv ? 8 * j : wo - 8;
    /* stride 2 from a float32 input: the lanes of vector j's loads inside the row (input
     * columns 2 c0 - pl + 0, 8, 2, 10 on) */
    v8i mk[V8_MAXV][4];
    long edge[V8_MAXV]; /* vector j's loads reach outside the row: masked */
    long near[V8_MAXV]; /* stride 2: bit k, vector j's load k needs its mask (below) */
    for (long j = 0; j < nv; j++) {
        edge[j] = near[j] = 0;
        for (long k = 0; k < 4; k++) {
            long st = s * col[j] - a->pl + (s == 1 ? k : (k & 1) * 8 + (k & 2));
            for (int l = 0; l < 8; l++) mk[j][k][l] = st + l >= 0 && st + l < w ? -1 : 0;
            edge[j] |= st < 0 || st + 8 > w;
            /* stride 2: only the lanes that reach a stored output need the mask (lo2, hi2:
             * the even ones; rows under 8 wide: the lanes of outputs inside the row); the
             * others may read on past the row (the next row's first floats, or the next
             * plane's) while that stays within the next row: a load needs its mask where a
             * used lane lies outside the row or another one past that. All but the call's
             * last plane's last pass then load plainly but lo at the left edge (the right
             * edge's vector of a 56 or 112 wide row only reads one column past it; 14 wide:
             * three). Measured against masking every load of an edge vector (one thread,
             * CPU time, in one process): 56 x 56 0.90-0.94x, 112 x 112 0.92-0.96x, 14 x 14
             * 0.84-0.85x; 28 x 28 (lo masked, the other vector plain, in the two-vector
             * loop: 0.89x alone, but the wider planes' loop 1.03x then) kept all masked */
            long ok = 1, nout = wo < 8 ? wo : 8;
            for (int l = 0; l < 8; l++) {
                long used = (k < 2 || !(l & 1)) && (k & 1) * 4 + (l >> 1) < nout;
                if (used ? st + l < 0 || st + l >= w : st + l < 0 || st + l >= 2 * w) ok = 0;
            }
            if (s == 2) near[j] |= (long)!ok << k;
        }
    }
    /* from the input (masked loads at the rows' ends): stride 2, and stride 1 but on small
     * planes (measured against the copy, one thread, in one process: 112 x 112 0.68-0.77x,
     * 56 x 56 0.64-0.73x, 28 x 28 0.91-0.97x; 14 x 14 and 7 x 7 1.02-1.04x); float16
     * inputs always widened into the copy */
    long direct = (s == 2 || h * ws > V8_COPY_MAX) && !(a->half & 1);
    /* the copy's zero columns and rows; from the input only the zero row is read (the whole
     * plane's memset cost 2-10 % of a 112 x 112 stride-2 call) */
    if (direct)
        memset(P + h * ws, 0, (size_t)ws * sizeof(float));
    else
        memset(P, 0, (size_t)((h + 1) * ws) * sizeof(float));
    long ob = a->half & 2 ? 2 : 4, zb = a->half & 4 ? 2 : 4;
    /* rp[k]: input row k - pt at its padded column 0 (the zero row outside the input), for
     * every row a pass reads (the last pass's rows past ho included): set once for the
     * plane's copy, per channel from the input */
    long nr = (ho + V8_R) * s + 3;
    const float *rp[nr];
    for (long k = 0; k < nr; k++) {
        long iy = k - a->pt;
        rp[k] = (iy < 0 || iy >= h ? zero : P + iy * ws) + V8_OFF - a->pl;
    }
    for (long c = a->c0; c < a->c1; c++) {
        if (!direct) v8_copy(a, c, P, ws);
        const float *xc = a->x + c * a->xcs, *wc = a->wts + c * 9;
        if (direct)
            for (long k = a->pt > 0 ? a->pt : 0; k < nr && k - a->pt < h; k++)
                rp[k] = xc + (k - a->pt) * a->xrs - a->pl;
        v8 W[9];
        for (long t = 0; t < 9; t++) W[t] = splat(wc[t]);
        float b = a->bias ? a->bias[c] : 0.0f;
        void *oc = (char *)a->out + c * a->ocs * ob;
        const void *zc = a->residual ? (const char *)a->z + c * a->zcs * zb : 0;
        /* the next channels' planes follow this one's in the chunk: spills land on them */
        long lim = a->ocs == ho * wo ? (a->c1 - c) * ho * wo : ho * wo;
        /* masked loads only where a vector's reach leaves the row (plain loads measured
         * 0.7x on 112 wide rows at stride 2); rows of at most two vectors (all masked) in
         * a loop of their own (sharing the loop measured 1.1-1.14x on 14 and 28 wide) */
        /* stride 2: the next pass's new input rows (8 rows from row 2 oy + 9 - pt on,
         * contiguous; past the plane, the next channel's first rows) prefetched, 8 cache
         * lines a vector (v8_pass; 8 nv lines cover them): the hardware's prefetchers do
         * not follow a pass's 9 rows read side by side a vector at a time. Measured (one
         * thread, CPU time, input in L3): 112 wide 0.94x, 28 wide 0.87x, 56 wide 1.0x; all
         * at once at the pass's start 1.0-1.07x. */
        uintptr_t pfc = direct ? (uintptr_t)xc : (uintptr_t)P; /* the copy: in L1 */
        if (s == 2 && direct && nv == 1 && near[0] == 1) {
            /* one vector a row, only lo masked (near): but in the call's last plane's
             * passes from the one that reads its last row on (last) */
            long last = c + 1 == a->c1 ? (h + a->pt - 9 + 2 * V8_R - 1) / (2 * V8_R) * V8_R : ho;
            for (long oy = 0; oy < ho; oy += V8_R) {
                uintptr_t pf = pfc + (uintptr_t)((oy * s + 9 - a->pt) * a->xrs * 4);
                if (oy < last)
                    v8_pass(a, rp + oy * s, oy, s, col[0], mk[0], W, b, oc, zc, ep, lim, 2, pf);
                else
                    v8_pass(a, rp + oy * s, oy, s, col[0], mk[0], W, b, oc, zc, ep, lim, 1, pf);
            }
        } else if (direct && nv <= 2) {
            for (long oy = 0; oy < ho; oy += V8_R) {
                uintptr_t pf = pfc + (uintptr_t)((oy * s + 9 - a->pt) * a->xrs * 4);
                for (long j = 0; j < nv; j++)
                    v8_pass(a, rp + oy * s, oy, s, col[j], mk[j], W, b, oc, zc, ep, lim, 1,
                            pf + 512 * (uintptr_t)j);
            }
        } else {
            for (long oy = 0; oy < ho; oy += V8_R) {
                uintptr_t pf = pfc + (uintptr_t)((oy * s + 9 - a->pt) * a->xrs * 4);
                /* (the call's last plane's last pass: edge, all four loads masked) */
                long nr2 = s == 2 && !(c + 1 == a->c1 && oy * s - a->pt + 9 >= h);
                const long *e = nr2 ? near : edge;
                for (long j = 0; j < nv; j++)
                    if (s == 2 && direct && nr2 && e[j] == 1)
                        v8_pass(a, rp + oy * s, oy, s, col[j], mk[j], W, b, oc, zc, ep, lim, 2,
                                pf + 512 * (uintptr_t)j);
                    else if (direct && e[j])
                        v8_pass(a, rp + oy * s, oy, s, col[j], mk[j], W, b, oc, zc, ep, lim, 1,
                                pf + 512 * (uintptr_t)j);
                    else
                        v8_pass(a, rp + oy * s, oy, s, col[j], mk[j], W, b, oc, zc, ep, lim, 0,
                                pf + 512 * (uintptr_t)j);
            }
        }
    }
}

/* the layers dw_v8_range takes (cpu_depthwise.py: wide_fits) */
static int v8_fits(const conv_depthwise_args *a) {
    return a->kh == 3 && a->kw == 3 && a->dy == 1 && a->dx == 1 && a->sy == a->sx &&
           (a->sx == 1 || a->sx == 2) && a->pl >= 0 && a->pl <= V8_OFF &&
           a->wo <= 8 * V8_MAXV;
}

/* stride 2 out of line (its own private copy, see dw_wide_range): changes to the stride-2
 * loops then leave the stride-1 code in dw_v8_range as it was (inlined with them, its small
 * planes ran 1.02-1.10x with the stride-2 near loads: code layout) */
static __attribute__((noinline)) void dw_v8_s2_0(const conv_depthwise_args *args) {
    conv_depthwise_args copy = *args;
    const conv_depthwise_args *a = &copy;
    dw_v8_layer(a, 2, 0);
}
static __attribute__((noinline)) void dw_v8_s2_e(const conv_depthwise_args *args, long ep) {
    conv_depthwise_args copy = *args;
    const conv_depthwise_args *a = &copy;
    dw_v8_layer(a, 2, ep);
}

static void dw_v8_range(const conv_depthwise_args *args) {
    /* a private copy (see dw_wide_range) */
    conv_depthwise_args copy = *args;
    const conv_depthwise_args *a = &copy;
    long simple = !a->residual && (a->act == EI_ACT_RELU || a->act == EI_ACT_CLIP);
    if (a->act == EI_ACT_RELU) /* max(y, 0) then min(., inf): relu's bits, NaN included */
        copy.p0 = 0.0f, copy.p1 = __builtin_inff();
    long ep = !simple ? 2 : a->half & 2 ? 1 : 0;
    /* float32 bias and clip (every MobileNetV2 depthwise layer) in an instance of its own:
     * with ep known the row's epilogue has no kind tests and its constants stay in place
     * (0.86-0.95x on MobileNetV2's layers); ep 1 and 2 share the general one */
    if (a->sx == 1 && ep == 0)
        dw_v8_layer(a, 1, 0);
    else if (a->sx == 1)
        dw_v8_layer(a, 1, ep);
    else if (ep == 0)
        dw_v8_s2_0(a);
    else
        dw_v8_s2_e(a, ep);
}
#endif

#define DW_CHANNEL(KH, KW, SX, DY, DX)                                                         \
    dw_channel(xc, a->xrs, a->h, a->w, a->pt, a->pl, a->sy, SX, KH, KW, DY, DX, a->wq,        \
               a->rows, wc, b, a->ho, a->wo, oc, zc, a->act, a->p0, a->p1, a->residual)
#define DW_GROUP(KH, KW, SY, SX, DY, DX) dw_group(a, c, nc, a->rows, KH, KW, SY, SX, DY, DX)

/* Float16 storage (a->half bits 1, 2, 4: input, output, residual) where the vectors along
 * rows are not built (the tactic sends float16 only to layers that path takes on a build
 * that has it: cpu_depthwise.py, conv_depthwise_wide): one output at a time, any kernel,
 * strides, dilations; the float32 epilogue on lane 0. */
static void dw_half_scalar(const conv_depthwise_args *a) {
    long xh = a->half & 1, oh = a->half & 2, zh = a->half & 4;
    for (long c = a->c0; c < a->c1; c++) {
        float b = a->bias ? a->bias[c] : 0.0f;
        const float *wc = a->wts + c * a->kh * a->kw;
        for (long oy = 0; oy < a->ho; oy++)
            for (long ox = 0; ox < a->wo; ox++) {
                float acc = 0.0f;
                for (long ky = 0; ky < a->kh; ky++) {
                    long iy = oy * a->sy - a->pt + ky * a->dy;
                    if (iy < 0 || iy >= a->h) continue;
                    for (long kx = 0; kx < a->kw; kx++) {
                        long ix = ox * a->sx - a->pl + kx * a->dx;
                        if (ix < 0 || ix >= a->w) continue;
                        long i = c * a->xcs + iy * a->xrs + ix;
                        float v =
                            xh ? ei_float_from_half(((const uint16_t *)a->x)[i]) : a->x[i];
                        acc += wc[ky * a->kw + kx] * v;
                    }
                }
                long q = oy * a->wo + ox, zi = c * a->zcs + q, oi = c * a->ocs + q;
                float z = !a->residual ? 0.0f
                          : zh         ? ei_float_from_half(((const uint16_t *)a->z)[zi])
                                       : a->z[zi];
                v8 y =
                    finish(splat(acc), splat(b), splat(z), a->act, a->p0, a->p1, a->residual);
                if (oh)
                    ((uint16_t *)a->out)[oi] = ei_half_from_float(y[0]);
                else
                    a->out[oi] = y[0];
            }
    }
}

/* whether this build has the vectors along rows (and so float16 storage at full speed):
 * 1 AVX-512, 2 AVX2 (its float16 layers: cpu_depthwise.py wide_fits), 0 none */
long conv_depthwise_wide(void) {
#if defined(DW_WIDE)
    return 1;
#elif defined(DW_V8)
    return 2;
#else
    return 0;
#endif
}

/* Channels [c0, c1) of one image: vectors along rows when a->grouped & 2 and this build
 * has them (no buffer); else by groups of CV channels when a->grouped & 1 (buffer: see
 * cpu_depthwise.py), else one channel at a time, row by row. */
void conv_depthwise_f32(const conv_depthwise_args *args) {
    /* a private copy (as in dw_wide_range): the channel groups on the AVX2 build up to 10 %
     * faster */
    conv_depthwise_args copy = *args;
    const conv_depthwise_args *a = &copy;
    long kh = a->kh, kw = a->kw, sx = a->sx, dy = a->dy, dx = a->dx;
    long unit = dy == 1 && dx == 1;
#ifdef DW_WIDE
    if ((a->grouped & 2 || a->half) && wide_fits(a)) {
        dw_wide_range(a);
        return;
    }
#elif defined(DW_V8)
    if ((a->grouped & 2 || a->half) && v8_fits(a)) {
        dw_v8_range(a);
        return;
    }
#endif
    if (a->half) {
        dw_half_scalar(a);
        return;
    }
    if (a->grouped & 1) {
        for (long c = a->c0; c < a->c1; c += CV) {
            long nc = a->c1 - c < CV ? a->c1 - c : CV;
            if (unit && kh == 3 && kw == 3 && a->sy == 1 && sx == 1)
                DW_GROUP(3, 3, 1, 1, 1, 1);
            else if (unit && kh == 3 && kw == 3 && a->sy == 2 && sx == 2)
                DW_GROUP(3, 3, 2, 2, 1, 1);
            else
                DW_GROUP(kh, kw, a->sy, sx, dy, dx);
        }
        return;
    }
    long slen = sx * a->wq;
    memset(a->rows + ((kh - 1) * dy + 1) * slen, 0, (size_t)slen * sizeof(float));
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
