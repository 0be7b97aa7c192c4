/* Full convolutions with few input channels (a network's stem: 3 -> 16..64 channels, 3x3 to
 * 7x7, stride 2): compiled on the target device (-march/-mcpu=native).
 *
 *     out[oc, oy, ox] = bias[oc] + sum_{ci, ky, kx} W[oc, ci, ky, kx] x[ci, oy sy + ky - pt,
 *                                                                          ox sx + kx - pl]
 *
 * With cin <= 4 there are only cin kh kw (27 to 196) terms per output, so the general
 * kernels' per-strip input packing and whole-image phase split cost as much as the products.
 * Here the output rows of a chunk go a band at a time: the band's input rows are laid out
 * once in `buf`, zero-padded and split into sx column phases ([cin][band rows][sx][wq]), so
 * every (channel, tap) term of VW consecutive outputs of a row is one contiguous vector read
 * (VW = 16 floats with AVX-512, 8 otherwise). The register tile is TR output channels x PV
 * such output vectors (one broadcast weight per channel and term, PV input vectors): 8 x 3
 * with 32 vector registers (AVX-512), 4 x 3 elsewhere (AVX2: 12 + 3 of 16 ymm; NEON: two q
 * registers per 8-float vector). The PV vectors of a tile are consecutive in the band's
 * (row, column) order, so they continue on the next output row, and the output is stored
 * NCHW straight from the registers (the row's last vector masked), after bias, residual and
 * activation (simd.h's on 8-float vectors; on 16-float ones the same exp on 16 lanes, and for
 * sigmoid and SiLU the reciprocal estimate with one Newton step instead of a division).
 * Weights are packed at bind as [ceil(cout / 8)][cin kh kw][8], zero past cout; a tile takes
 * TR rows of a panel.
 *
 * Float16 storage (FP16 engines; `half`'s bits STEM_XH, STEM_OH, STEM_ZH: x, out, z are
 * float16, their strides counted in float16 elements): the band's input rows are widened
 * (exactly) as they are laid out, the residual widened as it is loaded, and each output vector
 * narrowed to nearest even (half.h) as it is stored, after the whole epilogue: the bits of
 * widening into float32, this kernel on float32, then narrowing. STEM_XR: x is float32 that
 * the FP16 layer rounds to float16's values (its input image), rounded as it is laid out
 * instead of in a pass before.
 *
 * Vectors along output columns rather than output channels: the tile's rows are then NCHW
 * output runs (no transpose before the store), at the cost of the band's column-phase split
 * (a vector deinterleave, once per input row).
 */
#include "simd.h"
/* (after simd.h: half.h's 8-lane helpers are on its v8) */
#include "half.h"

#define PANEL 8 /* output channels per packed weight panel (the tactic packs with this) */
#if defined(EI_STEM_TR) && defined(EI_STEM_PV) /* forced tile (tests, measurements) */
#define TR EI_STEM_TR
#define PV EI_STEM_PV
#elif defined(__AVX512F__)
#define TR 8
#define PV 3
#else
#define TR 4
#define PV 3
#endif

#if defined(__AVX512F__) && !defined(EI_STEM_V8)
#include <immintrin.h>
#define VW 16
typedef float vf __attribute__((vector_size(64)));
static inline vf loadv(const float *p) { return (vf)_mm512_loadu_ps(p); }
static inline void storev(float *p, vf v) { _mm512_storeu_ps(p, (__m512)v); }
/* the first n lanes: loaded (others zero) / stored (others untouched) */
static inline vf loadv_n(const float *p, long n) {
    return (vf)_mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), p);
}
static inline void storev_n(float *p, vf v, long n) {
    _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1), (__m512)v);
}
/* even and odd lanes of 2 VW consecutive floats */
static inline vf evens(vf a, vf b) {
    return __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28,
                                   30);
}
static inline vf odds(vf a, vf b) {
    return __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29,
                                   31);
}
#else
#define VW 8
typedef v8 vf;
static inline vf loadv(const float *p) { return load8(p); }
static inline void storev(float *p, vf v) { store8(p, v); }
#if defined(__AVX2__)
#include <immintrin.h>
static inline __m256i lanes(long n) {
    v8i lane = {0, 1, 2, 3, 4, 5, 6, 7};
    return (__m256i)(lane < (int)n);
}
static inline vf loadv_n(const float *p, long n) { return (vf)_mm256_maskload_ps(p, lanes(n)); }
static inline void storev_n(float *p, vf v, long n) {
    _mm256_maskstore_ps(p, lanes(n), (__m256)v);
}
#else
static inline vf loadv_n(const float *p, long n) {
    float t[8];
    for (long j = 0; j < 8; j++) t[j] = j < n ? p[j] : 0.0f;
    return load8(t);
}
static inline void storev_n(float *p, vf v, long n) {
    float t[8];
    store8(t, v);
    for (long j = 0; j < n; j++) p[j] = t[j];
}
#endif
static inline vf evens(vf a, vf b) { return __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14); }
static inline vf odds(vf a, vf b) { return __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15); }
#endif
#if VW == 16
static inline vf vmaxv(vf a, vf b) { return (vf)_mm512_max_ps((__m512)a, (__m512)b); }
static inline vf vminv(vf a, vf b) { return (vf)_mm512_min_ps((__m512)a, (__m512)b); }
static inline vf splatv(float a) { return (vf)_mm512_set1_ps(a); }
/* simd.h's vexp on 16 lanes: the same range reduction and polynomial, 2^n by scalef */
static inline vf vexpv(vf x) {
    x = vminv(vmaxv(x, splatv(-87.0f)), splatv(88.0f));
    vf nf = (vf)_mm512_roundscale_ps((__m512)(x * 1.4426950408889634f),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    vf r = x - nf * 0.693359375f - nf * -2.12194440e-4f;
    vf p = 1.9875691500e-4f * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    vf y = p * r * r + r + 1.0f;
    return (vf)_mm512_scalef_ps((__m512)y, (__m512)nf);
}
/* 1 / d: the 14-bit estimate and one Newton step (d >= 1 here) */
static inline vf vrecip(vf d) {
    vf e = (vf)_mm512_rcp14_ps((__m512)d);
    return e * (2.0f - d * e);
}
static inline vf activatev(vf y, long act, float p0, float p1) {
    switch (act) {
    case EI_ACT_RELU: return vmaxv(y, splatv(0.0f));
    case EI_ACT_LEAKY_RELU:
        return (vf)_mm512_mask_mul_ps((__m512)y, _mm512_cmp_ps_mask((__m512)y, _mm512_setzero_ps(),
                                                                     _CMP_LT_OQ),
                                      (__m512)y, _mm512_set1_ps(p0));
    case EI_ACT_CLIP: return vminv(vmaxv(y, splatv(p0)), splatv(p1));
    case EI_ACT_SIGMOID: return vrecip(1.0f + vexpv(-y));
    case EI_ACT_SILU: return y * vrecip(1.0f + vexpv(-y));
    case EI_ACT_HARD_SWISH:
        return y * vminv(vmaxv(y * (1.0f / 6.0f) + 0.5f, splatv(0.0f)), splatv(1.0f));
    case EI_ACT_HARD_SIGMOID: return vminv(vmaxv(y * p0 + p1, splatv(0.0f)), splatv(1.0f));
    case EI_ACT_TANH: return 2.0f / (1.0f + vexpv(-2.0f * y)) - 1.0f;
    default: return y;
    }
}
#else
static inline vf activatev(vf y, long act, float p0, float p1) { return activate(y, act, p0, p1); }
#endif

/* `half` bits: x, out, z float16 */
#define STEM_XH 1
#define STEM_OH 2
#define STEM_ZH 4
#define STEM_XR 8
#define STEM_RNE (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
/* float16 vectors: loaded (widened; the first n lanes, others zero) / stored (narrowed to
 * nearest even; the first n lanes, others untouched) */
#if VW == 16
static inline vf loadh(const uint16_t *p) {
    return (vf)_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}
static inline void storeh(uint16_t *p, vf v) {
    _mm256_storeu_si256((__m256i *)p, _mm512_cvtps_ph((__m512)v, STEM_RNE));
}
#if defined(EI_H16)
static inline vf loadh_n(const uint16_t *p, long n) {
    return (vf)h16_load_mask(p, (__mmask16)((1u << n) - 1u));
}
static inline void storeh_n(uint16_t *p, vf v, long n) {
    h16_store_mask(p, (__mmask16)((1u << n) - 1u), (__m512)v);
}
#else
static inline vf loadh_n(const uint16_t *p, long n) {
    uint16_t t[16] = {0};
    for (long j = 0; j < n; j++) t[j] = p[j];
    return loadh(t);
}
static inline void storeh_n(uint16_t *p, vf v, long n) {
    uint16_t t[16];
    storeh(t, v);
    for (long j = 0; j < n; j++) p[j] = t[j];
}
#endif
#else
static inline vf loadh(const uint16_t *p) { return h8_load(p); }
static inline void storeh(uint16_t *p, vf v) { h8_store(p, v); }
static inline vf loadh_n(const uint16_t *p, long n) { return h8_load_n(p, n); }
static inline void storeh_n(uint16_t *p, vf v, long n) { h8_store_n(p, v, n); }
#endif

/* float32 vectors rounded to float16's values (STEM_XR) */
#if VW == 16
static inline vf roundv(vf v) { return (vf)_mm512_cvtph_ps(_mm512_cvtps_ph((__m512)v, STEM_RNE)); }
#else
static inline vf roundv(vf v) { return h8_round(v); }
#endif

/* input element c of a row (float32, rounded to float16's values with xr, or float16) */
static inline float xat(const float *s, long c, long xh, long xr) {
    if (xh) return ei_float_from_half(((const uint16_t *)s)[c]);
    return xr ? ei_float_from_half(ei_half_from_float(s[c])) : s[c];
}

/* Input rows [iy0, iy0 + rows) of every channel into buf[ci][rows_max][sx][wq]: padded
 * column c (input column c - pl) goes to phase c % sx, position c / sx; zero outside the
 * input. */
static void layout_rows(const conv_stem_args *a, long iy0, long rows, long rows_max) {
    long sx = a->sx, wq = a->wq, w = a->w, pl = a->pl, xh = a->half & STEM_XH;
    long xr = !xh && (a->half & STEM_XR);
    for (long ci = 0; ci < a->cin; ci++) {
        for (long r = 0; r < rows; r++) {
            float *d = a->buf + ((ci * rows_max + r) * sx) * wq;
            long iy = iy0 + r;
            if (iy < 0 || iy >= a->h) {
                memset(d, 0, sizeof(float) * sx * wq);
                continue;
            }
            long at = ci * a->xcs + iy * a->xrs; /* in elements of x's type */
            const float *s = xh ? (const float *)((const uint16_t *)a->x + at) : a->x + at;
            const uint16_t *sh = (const uint16_t *)s;
            long q = 0;
            if (sx == 2) { /* whole vectors: positions q .. q + VW from columns 2 q - pl on */
                float *d0 = d, *d1 = d + wq;
                for (; q < wq && 2 * q - pl < 0; q++) { /* left padding */
                    long c = 2 * q - pl;
                    d0[q] = c >= 0 && c < w ? xat(s, c, xh, xr) : 0.0f;
                    d1[q] = c + 1 >= 0 && c + 1 < w ? xat(s, c + 1, xh, xr) : 0.0f;
                }
                if (xr)
                    for (; q + VW <= wq && 2 * (q + VW) - pl <= w; q += VW) {
                        vf u = roundv(loadv(s + 2 * q - pl)), v = roundv(loadv(s + 2 * q - pl + VW));
                        storev(d0 + q, evens(u, v));
                        storev(d1 + q, odds(u, v));
                    }
                else if (xh)
                    for (; q + VW <= wq && 2 * (q + VW) - pl <= w; q += VW) {
                        vf u = loadh(sh + 2 * q - pl), v = loadh(sh + 2 * q - pl + VW);
                        storev(d0 + q, evens(u, v));
                        storev(d1 + q, odds(u, v));
                    }
                else
                    for (; q + VW <= wq && 2 * (q + VW) - pl <= w; q += VW) {
                        vf u = loadv(s + 2 * q - pl), v = loadv(s + 2 * q - pl + VW);
                        storev(d0 + q, evens(u, v));
                        storev(d1 + q, odds(u, v));
                    }
                for (; q < wq; q++) {
                    long c = 2 * q - pl;
                    d0[q] = c >= 0 && c < w ? xat(s, c, xh, xr) : 0.0f;
                    d1[q] = c + 1 >= 0 && c + 1 < w ? xat(s, c + 1, xh, xr) : 0.0f;
                }
            } else if (sx == 1) {
                long lo = pl < wq ? pl : wq, n = w < wq - lo ? w : wq - lo;
                memset(d, 0, sizeof(float) * lo);
                if (xh || xr) {
                    long j = 0;
                    for (; j + VW <= n; j += VW)
                        storev(d + lo + j, xh ? loadh(sh + j) : roundv(loadv(s + j)));
                    for (; j < n; j++) d[lo + j] = xat(s, j, xh, xr);
                } else
                    memcpy(d + lo, s, sizeof(float) * n);
                memset(d + lo + n, 0, sizeof(float) * (wq - lo - n));
            } else {
                for (long ph = 0; ph < sx; ph++)
                    for (q = 0; q < wq; q++) {
                        long c = q * sx + ph - pl;
                        d[ph * wq + q] = c >= 0 && c < w ? xat(s, c, xh, xr) : 0.0f;
                    }
            }
        }
    }
}

/* acc[i][p] = sum_t wp[PANEL t + i] * xb[p][toff[t] .. + VW], i < TR, p < nv */
static inline __attribute__((always_inline)) void micro(const float *wp, const float *const *xb,
                                                       const long *toff, long T, long nv,
                                                       vf acc[TR][PV]) {
    vf c[TR][PV];
    for (long i = 0; i < TR; i++)
        for (long p = 0; p < PV; p++) c[i][p] = (vf){0};
    for (long t = 0; t < T; t++, wp += PANEL) {
        long off = toff[t];
        vf v[PV];
#pragma GCC unroll 4
        for (long p = 0; p < PV; p++)
            if (p < nv) v[p] = loadv(xb[p] + off);
#pragma GCC unroll 8
        for (long i = 0; i < TR; i++) {
            float s = wp[i];
#pragma GCC unroll 4
            for (long p = 0; p < PV; p++)
                if (p < nv) c[i][p] += s * v[p];
        }
    }
    for (long i = 0; i < TR; i++)
        for (long p = 0; p < PV; p++) acc[i][p] = c[i][p];
}

/* where each vector of a tile goes: its offset in the output plane and its valid lanes */
typedef struct {
    long off[PV];
    long n[PV];
} targets;

/* With cout >= PREFETCH_MIN_COUT output planes written side by side (a band's tiles go across
 * all output channels for each group of vectors), the output lines are prefetched for writing
 * PREFETCH_OUT elements ahead of a full tile's first and last vectors: more streams than the
 * hardware prefetchers follow, and the stores waited on their lines (MobileNetV2's 32 planes:
 * the stem in the engine, one thread, 0.71-0.73x the time without at batch 1, 0.76-0.83x at
 * batch 8). With 16 planes (YOLOv8n) the prefetches cost 1.07-1.09x. */
#define PREFETCH_OUT 64
#define PREFETCH_MIN_COUT 32

/* the rows' output lines PREFETCH_OUT elements on from a full tile's first and last vectors,
 * for writing */
static inline __attribute__((always_inline)) void prefetch_out(const conv_stem_args *a,
                                                              const void *o, long oh, long nv,
                                                              const targets *tg) {
    if (nv < PV || a->cout < PREFETCH_MIN_COUT) return;
    long es = oh ? 2 : 4;
    __builtin_prefetch((const char *)o + (tg->off[0] + PREFETCH_OUT) * es, 1, 3);
    __builtin_prefetch((const char *)o + (tg->off[PV - 1] + PREFETCH_OUT) * es, 1, 3);
}

/* store()'s common case: all TR rows, whole vectors, no residual; `act` and `oh` (float16
 * output) constants where the caller picked them, so the activation and storage are chosen
 * once a tile, not once a vector (the same operations per vector: the same bits) */
static inline __attribute__((always_inline)) void store_plain(const conv_stem_args *a, long oc,
                                                             long nv, const targets *tg,
                                                             vf acc[TR][PV], long act,
                                                             long oh) {
    for (long i = 0; i < TR; i++) {
        float b = a->bias ? a->bias[oc + i] : 0.0f;
        float *o = a->out + (oc + i) * a->ocs;
        uint16_t *oq = (uint16_t *)a->out + (oc + i) * a->ocs;
        prefetch_out(a, oh ? (void *)oq : (void *)o, oh, nv, tg);
        for (long p = 0; p < nv; p++) {
            vf y = activatev(acc[i][p] + b, act, a->p0, a->p1);
            if (oh)
                storeh(oq + tg->off[p], y);
            else
                storev(o + tg->off[p], y);
        }
    }
}

/* store_plain with the activation picked (false: not one of its activations) */
static inline __attribute__((always_inline)) long store_act(const conv_stem_args *a, long oc,
                                                           const targets *tg, vf acc[TR][PV],
                                                           long oh) {
    switch (a->act) {
    case EI_ACT_NONE: store_plain(a, oc, PV, tg, acc, EI_ACT_NONE, oh); return 1;
    case EI_ACT_RELU: store_plain(a, oc, PV, tg, acc, EI_ACT_RELU, oh); return 1;
    case EI_ACT_CLIP: store_plain(a, oc, PV, tg, acc, EI_ACT_CLIP, oh); return 1;
    case EI_ACT_SILU: store_plain(a, oc, PV, tg, acc, EI_ACT_SILU, oh); return 1;
    default: return 0;
    }
}

/* store_act on a float16 output, out of line (inlined, its code made the float32 tiles
 * 1.02x slower) */
static __attribute__((noinline, unused)) long store_act_half(const conv_stem_args *a, long oc,
                                                             const targets *tg,
                                                             vf acc[TR][PV]) {
    return store_act(a, oc, tg, acc, 1);
}

/* bias, residual, activation on the tile's rows [oc, oc + nr), stored at the targets */
static inline __attribute__((always_inline)) void store(const conv_stem_args *a, long oc,
                                                       long nr, long nv, const targets *tg,
                                                       vf acc[TR][PV]) {
    long act = a->act, residual = a->residual, oh = a->half & STEM_OH, zh = a->half & STEM_ZH;
    float p0 = a->p0, p1 = a->p1;
    long plain = nv == PV && nr == TR && !residual;
    for (long p = 0; p < nv; p++) plain = plain && tg->n[p] == VW;
    /* (the band's last vectors and the other activations: below) */
    if (plain && !oh && store_act(a, oc, tg, acc, 0)) return;
#if EI_H8_PATH /* (float16 through F16C or NEON; the portable narrowing's code is long) */
    if (plain && oh && store_act_half(a, oc, tg, acc)) return;
#endif
    for (long i = 0; i < TR; i++) {
        if (i >= nr) break;
        float b = a->bias ? a->bias[oc + i] : 0.0f;
        long oat = (oc + i) * a->ocs, zat = (oc + i) * a->zcs; /* in elements of their type */
        float *o = a->out + oat;
        uint16_t *oq = (uint16_t *)a->out + oat;
        const float *zc = residual ? a->z + zat : 0;
        const uint16_t *zq = residual ? (const uint16_t *)a->z + zat : 0;
        prefetch_out(a, oh ? (void *)oq : (void *)o, oh, nv, tg);
        for (long p = 0; p < nv; p++) {
            vf y = acc[i][p] + b, z = {0};
            long off = tg->off[p], n = tg->n[p];
            if (residual && zh) z = n == VW ? loadh(zq + off) : loadh_n(zq + off, n);
            else if (residual) z = n == VW ? loadv(zc + off) : loadv_n(zc + off, n);
            if (residual == 1) y += z;
            y = activatev(y, act, p0, p1);
            if (residual == 2) y += z;
            if (oh) {
                if (n == VW)
                    storeh(oq + off, y);
                else
                    storeh_n(oq + off, y, n);
            } else if (n == VW)
                storev(o + off, y);
            else
                storev_n(o + off, y, n);
        }
    }
}

static inline __attribute__((always_inline)) void tiles(const conv_stem_args *a,
                                                       const float *const *xb, const long *toff,
                                                       long T, long nv, const targets *tg) {
    for (long ob = 0; ob * PANEL < a->cout; ob++)
        for (long r = 0; r < PANEL; r += TR) {
            long oc = ob * PANEL + r;
            if (oc >= a->cout) break;
            long nr = a->cout - oc < TR ? a->cout - oc : TR;
            vf acc[TR][PV];
            micro(a->wpack + ob * T * PANEL + r, xb, toff, T, nv, acc);
            store(a, oc, nr, nv, tg, acc);
        }
}

#define MAX_TERMS 1024

void conv_stem_f32(const conv_stem_args *a) {
    long sy = a->sy, sx = a->sx, kh = a->kh, kw = a->kw, wq = a->wq, wo = a->wo;
    long rows_max = (a->band - 1) * sy + kh; /* input rows of a band */
    long T = a->cin * kh * kw;
    if (T > MAX_TERMS) return; /* the tactic never binds more */
    long toff[MAX_TERMS];
    for (long ci = 0, t = 0; ci < a->cin; ci++)
        for (long ky = 0; ky < kh; ky++)
            for (long kx = 0; kx < kw; kx++, t++)
                toff[t] = ((ci * rows_max + ky) * sx + kx % sx) * wq + kx / sx;
    long rowvecs = (wo + VW - 1) / VW;
    for (long oy0 = a->r0; oy0 < a->r1; oy0 += a->band) {
        long nb = a->r1 - oy0 < a->band ? a->r1 - oy0 : a->band;
        layout_rows(a, oy0 * sy - a->pt, (nb - 1) * sy + kh, rows_max);
        long P = nb * rowvecs; /* output vectors of the band, row by row */
        for (long g = 0; g < P; g += PV) {
            long nv = P - g < PV ? P - g : PV;
            const float *xb[PV];
            targets tg;
            for (long p = 0; p < PV; p++) {
                long v = g + (p < nv ? p : 0), row = v / rowvecs, col = (v - row * rowvecs) * VW;
                xb[p] = a->buf + row * sy * sx * wq + col;
                tg.off[p] = (oy0 + row) * wo + col;
                tg.n[p] = wo - col < VW ? wo - col : VW;
            }
            if (nv == PV)
                tiles(a, xb, toff, T, PV, &tg);
#if PV > 2
            else if (nv == 2)
                tiles(a, xb, toff, T, 2, &tg);
#endif
            else /* the band's last vectors one at a time */
                for (long p = 0; p < nv; p++) {
                    const float *x1[PV] = {xb[p]};
                    targets t1 = {{tg.off[p]}, {tg.n[p]}};
                    tiles(a, x1, toff, T, 1, &t1);
                }
        }
    }
}

/* the float16 vector path this file was compiled with (half.h EI_H8_PATH: 0 portable, 1 F16C,
 * 2 NEON; 16-lane builds use F16C's 16-lane forms) */
long conv_stem_half_path(void) { return EI_H8_PATH; }

EI_TASK(conv_stem)
