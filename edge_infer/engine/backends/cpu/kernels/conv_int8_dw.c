/* INT8 depthwise convolution (edge_infer::QConv with group == C): the reference op's numbers
 * (ops/quantize.py qconv) bit for bit, at the FP32 depthwise kernel's speed.
 *
 * The arithmetic: int8 inputs and weights are read as floats. Their products are below 2^14
 * and a 3x3 or 5x5 (any kernel up to 1024 taps) sums fewer than 2^10 of them, so every
 * partial sum is an integer below 2^24: float32 fma accumulates the exact int32 accumulator,
 * with the FP32 kernel's throughput (vectors along output pixels, one vector fma per tap).
 * Then the reference's epilogue: y = float32((double(acc) + bias) * (x_scale * w_scale[c]))
 * in double, residual (float, or int8 dequantized as float32(q) * float32(z_scale)) before or
 * after the float32 activation (simd.h), and the store as fp32, fp16 or int8 (qsimd.h).
 *
 * The data movement is conv_depthwise.c's (see there): row by row through an L1 ring of
 * zero-padded column-phase slots (large stride-1 planes), or 8 channels at a time, vectors
 * along channels, through 8 x 8 register transposes (small planes, strided layers). Only
 * the loads (int8 -> float) and the stores differ: the accumulators of an output row (or of
 * a channel group's planes) go through a small buffer to the epilogue, which runs a loop
 * specialised for the output's storage and the common activations (qepi_apply). Where every
 * channel of an 8-channel group takes the direct int8 path (QNEAR, QPROVED), the group's
 * epilogue runs on its channel vectors instead (qgrp: per-lane constants from the tactic's
 * a->qmq, no per-channel setup) and only integral floats go back to the planes, as bytes:
 * 2-2.5x faster on MobileNetV2's 7x7 to 28x28 layers (AVX2, one thread, CPU time).
 *
 * Built for AVX-512 with VNNI (and DQ), unit-dilation layers with kernels up to 8 wide at
 * strides 1 and 2 (all of MobileNetV2's) go one channel at a time straight from the int8
 * planes, vectors along output rows, the int32 accumulator by vpdpbusd on byte windows and
 * the requantization in registers (qdw_rows). Otherwise, built for AVX-512 (BW, VL),
 * every layer goes 16 channels at a time, row by row through a
 * ring of interleaved rows (qdw_group16; with VNNI and dx == 1 the int32 accumulator by
 * vpdpbusd, qdw_group16v), the epilogue per pixel on the direct int8 path (QNEAR). Output
 * rows [oy0, oy1) of channels [c0, c1): the tactic splits an image's work evenly between
 * the threads.
 *
 * Built for AVX2 without AVX-512, 3 x 3 layers (unit dilation, outputs up to 112 wide at
 * stride 1, 56 at stride 2) go one channel at a time on int16 pairs of taps straight from the
 * int8 planes, the rows' pairs in registers (qdw_p3; proved channels from a table of their
 * constants, the epilogue in integers: qp3_proved); other stride-2 layers go one channel
 * at a time on int16 pairs (qdw_s2) and stride-1 layers outputs 17 to 512 wide (the
 * tactic's choice: grouped == 2) one channel at a time, vectors along output rows, through a
 * zero-padded float plane (qdw_s1).
 *
 * Proved channels (QPROVED; tactics/qdw_requant.py): where the tactic proved a float32
 * multiplier exact for every accumulator a channel can make, the direct int8 path drops its
 * check near half steps; on the rows path (qdw_plane) the 4 vectors of a pass are then
 * rounded, packed to bytes and clamped together (qdw_store_proved).
 */
#include <limits.h>

#include "qsimd.h"

/* Input row `row` (w int8 values) as sx column phases of wq floats at d (see
 * conv_depthwise.c fill_row) */
static inline __attribute__((always_inline)) void qfill_row(const int8_t *row, long w, long pl,
                                                           long sx, long wq, float *d) {
    if (sx > 1) { /* strided: widen the row first (vectorized), then split the phases from
                   * floats (int8 -> float conversions at a stride stay scalar) */
        float f[w];
        for (long j = 0; j < w; j++) f[j] = (float)row[j];
        for (long px = 0; px < sx; px++, d += wq) {
            long j0 = pl > px ? (pl - px + sx - 1) / sx : 0;
            long j1 = w - 1 + pl - px >= 0 ? (w - 1 + pl - px) / sx + 1 : 0;
            if (j1 > wq) j1 = wq;
            if (j0 > j1) j0 = j1;
            for (long j = 0; j < j0; j++) d[j] = 0.0f;
            const float *s = f + j0 * sx + px - pl;
            float *e = d + j0;
            for (long j = 0; j < j1 - j0; j++) e[j] = s[j * sx];
            for (long j = j1; j < wq; j++) d[j] = 0.0f;
        }
        return;
    }
    for (long px = 0; px < sx; px++, d += wq) {
        long j0 = pl > px ? (pl - px + sx - 1) / sx : 0;
        long j1 = w - 1 + pl - px >= 0 ? (w - 1 + pl - px) / sx + 1 : 0;
        if (j1 > wq) j1 = wq;
        if (j0 > j1) j0 = j1;
        for (long j = 0; j < j0; j++) d[j] = 0.0f;
        const int8_t *s = row + j0 * sx + px - pl;
        float *e = d + j0;
        for (long j = 0; j < j1 - j0; j++) e[j] = (float)s[j * sx];
        for (long j = j1; j < wq; j++) d[j] = 0.0f;
    }
}

/* The epilogue of one channel: bias, multiplier, output and residual */
typedef struct {
    double b, m, os;
    float rf, p0, p1, zs;
    float bf, mq, lo, hi; /* the direct int8 path (qfast_ok): bias, m / os, clip bounds */
    float vmq, vlo, vhi;  /* a proved channel (QPROVED): its multiplier and byte bounds */
    long fast, exact;     /* exact: proved, the direct path with no check near halves */
    long okind, zkind, act, residual;
    void *out;     /* the channel's output plane */
    const void *z; /* its residual plane, or NULL */
} qepi;

/* simd.h activate(), with the hard_* activations' product kept apart from the sum that
 * follows (fp-contraction would fuse them: one rounding where the reference has two) */
static inline __attribute__((always_inline)) v8 qactivate(v8 y, long act, float p0, float p1) {
    if (act == EI_ACT_HARD_SWISH) {
        v8 t = y * (1.0f / 6.0f);
        EI_OPAQUE(t);
        return y * vmin(vmax(t + 0.5f, splat(0.0f)), splat(1.0f));
    }
    if (act == EI_ACT_HARD_SIGMOID) {
        v8 t = y * p0;
        EI_OPAQUE(t);
        return vmin(vmax(t + p1, splat(0.0f)), splat(1.0f));
    }
    return activate(y, act, p0, p1);
}

/* The direct int8 path (qepi.fast): an int8 output without residual after no activation,
 * relu or clip is rint(clamp(y / os)) with y = float32((double(acc) + b) * m) and the clamp
 * [lo, hi] the activation's bounds over os met with [-128, 127] (qfast_ok). It is computed
 * in float32 as q = clamp((acc + b) * mq), mq = float32(m / os): acc + b is exact (an
 * integer below 2^24), and q lies within 3.01 * 2^-24 * |y / os| <= 2.3e-5 of the exact
 * quotient y / os where |y / os| <= 128 (y, mq and the product each round once to float32,
 * y a normal float, the bounds round once; beyond +-128 both saturate), so rint(q) is the
 * reference's integer unless q lies within 1e-4 of a half: then the vector is redone by the
 * reference's steps (double requantization, float32 activation, the exact quotient). */
#define QNEAR 0.4999f

/* The direct int8 path's rounding of 8 lanes: rint(clamp(f * mq, lo, hi)). With ``exact``
 * (lo, hi integers: rint(clamp(x)) = clamp(rint(x)), proved) it is final; otherwise *near
 * says whether a lane lies within QNEAR's margin of a half, where the caller redoes the
 * vector by the reference's steps. */
static inline v8 qround8(v8 f, v8 mq, v8 lo, v8 hi, int exact, int *near) {
    v8 q = vmin(vmax(f * mq, lo), hi);
    v8 r = vround(q);
    if (exact) {
        *near = 0;
        return r;
    }
    v8 d = q - r;
    *near = any8((d > QNEAR) | (d < -QNEAR));
    return r;
}

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#define QEPI16 1
/* The epilogue on 16 lanes in zmm registers (int8 and fp32 outputs): the same operations as
 * the 8-lane loop below (requant, load_real, qactivate on each half, quant8), so the same
 * bits, with half the instructions and no spill of the vector between steps */
static inline __m512 qjoin16(v8 lo, v8 hi) {
    __m512d l = _mm512_castps_pd(_mm512_castps256_ps512((__m256)lo));
    return _mm512_castpd_ps(_mm512_insertf64x4(l, _mm256_castps_pd((__m256)hi), 1));
}

static inline v8 qhigh8(__m512 v) {
    return (v8)_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
}

/* y = float32((double(acc) + b) * m) of 16 accumulators (the first n, the others zero) */
static inline __m512 requant16(const float *acc, long n, double b, double m) {
    __m512 a = n >= 16 ? _mm512_loadu_ps(acc)
                       : _mm512_maskz_loadu_ps((__mmask16)((1u << n) - 1), acc);
    __m512d vb = _mm512_set1_pd(b), vm = _mm512_set1_pd(m);
    __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(a));
    __m512d hi = _mm512_cvtps_pd((__m256)qhigh8(a));
    lo = _mm512_mul_pd(_mm512_add_pd(lo, vb), vm);
    hi = _mm512_mul_pd(_mm512_add_pd(hi, vb), vm);
    return qjoin16((v8)_mm512_cvtpd_ps(lo), (v8)_mm512_cvtpd_ps(hi));
}

/* load_real on 16 lanes (opaque to fp-contraction) */
static inline __m512 load_real16(const void *base, long kind, long i, long n, float scale) {
    __mmask16 k = n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1);
    __m512 v;
    if (kind == EI_S8) {
        __m128i q = _mm_maskz_loadu_epi8(k, (const int8_t *)base + i);
        v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)), _mm512_set1_ps(scale));
        __asm__("" : "+v"(v));
    } else if (kind == EI_F16) {
        v = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, (const uint16_t *)base + i));
    } else {
        v = _mm512_maskz_loadu_ps(k, (const float *)base + i);
    }
    return v;
}

/* quant8 on 16 lanes: the float32 quotient, or the exact double one for all 16 lanes when
 * one lies within 1e-4 of a half */
static inline __m512i quant16(__m512 y, float rf, double s) {
    __m512 q = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(y, _mm512_set1_ps(rf)),
                                           _mm512_set1_ps(-128.0f)),
                             _mm512_set1_ps(127.0f));
    __m512 n = _mm512_roundscale_ps(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 d = _mm512_sub_ps(q, n);
    __mmask16 near = _mm512_cmp_ps_mask(d, _mm512_set1_ps(0.4999f), _CMP_GT_OQ) |
                     _mm512_cmp_ps_mask(d, _mm512_set1_ps(-0.4999f), _CMP_LT_OQ);
    if (__builtin_expect(near != 0, 0)) {
        __m512d vs = _mm512_set1_pd(s), lo = _mm512_set1_pd(-128.0), hi = _mm512_set1_pd(127.0);
        __m512d a = _mm512_div_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(y)), vs);
        __m512d b = _mm512_div_pd(_mm512_cvtps_pd((__m256)qhigh8(y)), vs);
        a = _mm512_roundscale_pd(_mm512_min_pd(_mm512_max_pd(a, lo), hi),
                                 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        b = _mm512_roundscale_pd(_mm512_min_pd(_mm512_max_pd(b, lo), hi),
                                 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        n = qjoin16((v8)_mm512_cvtpd_ps(a), (v8)_mm512_cvtpd_ps(b));
    }
    return _mm512_cvtps_epi32(n); /* exact: integers in [-128, 127] */
}

static inline __attribute__((always_inline)) __m512 qactivate16(__m512 y, long act, float p0,
                                                                float p1) {
    if (act == EI_ACT_NONE) return y;
    v8 lo = qactivate((v8)_mm512_castps512_ps256(y), act, p0, p1);
    v8 hi = qactivate(qhigh8(y), act, p0, p1);
    return qjoin16(lo, hi);
}

/* the direct int8 path (see QNEAR) on 16 lanes: a = the exact accumulator with its bias,
 * mq = float32(m / os) (one value, or one per lane); near: the lanes to redo exactly */
static inline __m512i qfast16(__m512 a, __m512 mq, __m512 lo, __m512 hi, __mmask16 *near) {
    __m512 q = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(a, mq), lo), hi);
    __m512 r = _mm512_roundscale_ps(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 d = _mm512_sub_ps(q, r);
    *near = _mm512_cmp_ps_mask(d, _mm512_set1_ps(QNEAR), _CMP_GT_OQ) |
            _mm512_cmp_ps_mask(d, _mm512_set1_ps(-QNEAR), _CMP_LT_OQ);
    return _mm512_cvtps_epi32(r); /* exact: integers in [-128, 127] */
}

static inline __attribute__((always_inline)) void qepi_run16(const qepi *e, const float *acc,
                                                            long i, long n, long OK, long RES,
                                                            long ACT) {
    if (OK == EI_S8 && !RES && e->exact) { /* proved: rounded, clamped, no check */
        const __m512 bf = _mm512_set1_ps(e->bf), mq = _mm512_set1_ps(e->vmq);
        const __m512i lo = _mm512_set1_epi32((int)e->vlo), hi = _mm512_set1_epi32((int)e->vhi);
        for (long j = 0; j < n; j += 16) {
            long m = n - j < 16 ? n - j : 16;
            __mmask16 k = m == 16 ? (__mmask16)0xffff : (__mmask16)((1u << m) - 1);
            __m512 f = _mm512_mul_ps(_mm512_add_ps(_mm512_maskz_loadu_ps(k, acc + j), bf), mq);
            __m512i q = _mm512_cvt_roundps_epi32(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            q = _mm512_min_epi32(_mm512_max_epi32(q, lo), hi);
            _mm_mask_storeu_epi8((int8_t *)e->out + i + j, k, _mm512_cvtepi32_epi8(q));
        }
        return;
    }
    if (OK == EI_S8 && !RES && e->fast) {
        const __m512 bf = _mm512_set1_ps(e->bf), mq = _mm512_set1_ps(e->mq);
        const __m512 lo = _mm512_set1_ps(e->lo), hi = _mm512_set1_ps(e->hi);
        for (long j = 0; j < n; j += 16) {
            long m = n - j < 16 ? n - j : 16;
            __mmask16 k = m == 16 ? (__mmask16)0xffff : (__mmask16)((1u << m) - 1);
            __mmask16 near;
            __m512i q = qfast16(_mm512_add_ps(_mm512_maskz_loadu_ps(k, acc + j), bf), mq, lo, hi,
                                &near);
            if (__builtin_expect(near != 0, 0))
                q = quant16(qactivate16(requant16(acc + j, m, e->b, e->m), ACT, e->p0, e->p1),
                            e->rf, e->os);
            _mm_mask_storeu_epi8((int8_t *)e->out + i + j, k, _mm512_cvtsepi32_epi8(q));
        }
        return;
    }
    for (long j = 0; j < n; j += 16) {
        long m = n - j < 16 ? n - j : 16;
        __mmask16 k = m == 16 ? (__mmask16)0xffff : (__mmask16)((1u << m) - 1);
        __m512 y = requant16(acc + j, m, e->b, e->m);
        if (RES) {
            __m512 z = load_real16(e->z, e->zkind, i + j, m, e->zs);
            if (RES == 1) y = _mm512_add_ps(y, z);
            y = qactivate16(y, ACT, e->p0, e->p1);
            if (RES == 2) y = _mm512_add_ps(y, z);
        } else {
            y = qactivate16(y, ACT, e->p0, e->p1);
        }
        if (OK == EI_S8)
            _mm_mask_storeu_epi8((int8_t *)e->out + i + j, k,
                                 _mm512_cvtsepi32_epi8(quant16(y, e->rf, e->os)));
        else
            _mm512_mask_storeu_ps((float *)e->out + i + j, k, y);
    }
}
#endif

/* The epilogue of n exact accumulators acc[0, n) (readable up to a whole vector) into
 * elements [i, i + n) of the channel's planes; OK, RES, ACT constant where inlined */
static inline __attribute__((always_inline)) void qepi_run(const qepi *e, const float *acc,
                                                          long i, long n, long OK, long RES,
                                                          long ACT) {
#ifdef QEPI16
    if (OK != EI_F16) {
        qepi_run16(e, acc, i, n, OK, RES, ACT);
        return;
    }
#endif
    if (OK == EI_S8 && !RES && e->fast) {
        for (long j = 0; j < n; j += 8) {
            long m = n - j < 8 ? n - j : 8;
            v8 a = load8(acc + j) + e->bf, r;
            if (e->exact) { /* proved: lo, hi integers, so rint(clamp(x)) = clamp(rint(x)) */
                r = vround(vmin(vmax(a * e->vmq, splat(e->vlo)), splat(e->vhi)));
            } else {
                v8 q = vmin(vmax(a * e->mq, splat(e->lo)), splat(e->hi));
                r = vround(q);
                v8 d = q - r;
                if (__builtin_expect(any8((d > QNEAR) | (d < -QNEAR)), 0))
                    r = quant8(qactivate(requant(load8(acc + j), e->b, e->m), ACT, e->p0, e->p1),
                               e->rf, e->os);
            }
            v8c c = narrow_s8(r);
            if (m == 8)
                memcpy((int8_t *)e->out + i + j, &c, 8);
            else
                store_b8((int8_t *)e->out + i + j, c, m);
        }
        return;
    }
    for (long j = 0; j < n; j += 8) {
        long m = n - j < 8 ? n - j : 8;
        v8 y = requant(load8(acc + j), e->b, e->m);
        if (RES) {
            v8 z = load_real(e->z, e->zkind, i + j, m, e->zs);
            if (RES == 1) y += z;
            y = qactivate(y, ACT, e->p0, e->p1);
            if (RES == 2) y += z;
        } else {
            y = qactivate(y, ACT, e->p0, e->p1);
        }
        store_real(e->out, OK, i + j, m, y, e->os, e->rf);
    }
}

#define QEPI_ACTS(OK)                                                                          \
    if (e->residual)                                                                           \
        qepi_run(e, acc, i, n, OK, e->residual, e->act);                                       \
    else if (e->act == EI_ACT_NONE)                                                            \
        qepi_run(e, acc, i, n, OK, 0, EI_ACT_NONE);                                            \
    else if (e->act == EI_ACT_RELU)                                                            \
        qepi_run(e, acc, i, n, OK, 0, EI_ACT_RELU);                                            \
    else if (e->act == EI_ACT_CLIP)                                                            \
        qepi_run(e, acc, i, n, OK, 0, EI_ACT_CLIP);                                            \
    else                                                                                       \
        qepi_run(e, acc, i, n, OK, 0, e->act);

/* qepi_run with the storage, and the common activations without a residual, made constant */
static void qepi_apply(const qepi *e, const float *acc, long i, long n) {
    if (e->okind == EI_S8) {
        QEPI_ACTS(EI_S8)
    } else if (e->okind == EI_F16) {
        QEPI_ACTS(EI_F16)
    } else {
        QEPI_ACTS(EI_F32)
    }
}

/* the bounds of the direct int8 path for activation act (params p0, p1), output scale os;
 * 0 where it does not apply (see QNEAR) */
static int qfast_bounds(long act, float p0, float p1, double os, float *lo, float *hi) {
    double l = -128.0, h = 127.0;
    if (act == EI_ACT_RELU) {
        l = 0.0;
    } else if (act == EI_ACT_CLIP) {
        l = (double)p0 / os;
        h = (double)p1 / os;
        l = l < -128.0 ? -128.0 : l > 127.0 ? 127.0 : l; /* NaN fails below */
        h = h < -128.0 ? -128.0 : h > 127.0 ? 127.0 : h;
    } else if (act != EI_ACT_NONE) {
        return 0;
    }
    *lo = (float)l;
    *hi = (float)h;
    return l >= -128.0 && h <= 127.0;
}

/* whether channel c takes the direct int8 path: |acc + b| < 2^24, y normal or zero, mq a
 * normal float32 whose products stay finite */
static int qfast_ok(const conv_int8_dw_args *a, double b, double m) {
    double taps = (double)(a->kh * a->kw), mq = m / a->oscale;
    return a->okind == EI_S8 && !a->z && taps * 16384.0 + (b < 0 ? -b : b) < 16777216.0 &&
           m >= 1e-37 && m <= 1e30 && mq >= 1e-30 && mq <= 1e30;
}

/* QPROVED: the tactic's proved channels (tactics/qdw_requant.py): a->qmq holds 4 rows of
 * qn floats, float32(m / os), then per channel vmq (0: not proved), lo and hi, such that
 * clamp(rint(float32(acc + b) * vmq), lo, hi) is the reference's integer for every
 * accumulator the channel can make (no check near halves). Only for a layer of int8
 * output without residual (the tactic leaves vmq 0 otherwise), on the direct path. */
static inline int qproved(const conv_int8_dw_args *a, long c, float *vmq, float *lo, float *hi) {
    if (!a->qmq || a->okind != EI_S8 || a->z || !(a->qmq[a->qn + c] > 0.0f)) return 0;
    *vmq = a->qmq[a->qn + c];
    *lo = a->qmq[2 * a->qn + c];
    *hi = a->qmq[3 * a->qn + c];
    return 1;
}

static inline qepi qepi_of(const conv_int8_dw_args *a, long c) {
    static const long size[3] = {4, 2, 1};
    qepi e = {
        .b = a->bias ? (double)a->bias[c] : 0.0,
        .m = a->mult[c],
        .os = a->oscale,
        .rf = a->okind == EI_S8 ? (float)(1.0 / a->oscale) : 0.0f,
        .p0 = a->p0,
        .p1 = a->p1,
        .zs = a->zscale,
        .okind = a->okind,
        .zkind = a->zkind,
        .act = a->act,
        .residual = a->z ? a->residual : 0,
        .out = (char *)a->out + c * a->ocs * size[a->okind],
        .z = a->z ? (const char *)a->z + c * a->zcs * size[a->zkind] : 0,
    };
    e.fast = qfast_ok(a, e.b, e.m) && qfast_bounds(a->act, a->p0, a->p1, a->oscale, &e.lo, &e.hi);
    if (e.fast) {
        e.bf = (float)e.b;
        e.mq = (float)(e.m / e.os);
        e.exact = qproved(a, c, &e.vmq, &e.vlo, &e.vhi);
    }
    return e;
}

/* One channel, row by row (conv_depthwise.c dw_channel, int8 rows) */
static inline __attribute__((always_inline)) void qdw_channel(
    const int8_t *xc, long xrs, long h, long w, long pt, long pl, long sy, long sx, long kh,
    long kw, long dy, long dx, long wq, float *rows, const float *wc, long oy0, long oy1,
    long wo, const qepi *e) {
    long nslots = (kh - 1) * dy + 1, slen = sx * wq;
    const float *zero = rows + nslots * slen;
    float *acc = rows + (nslots + 1) * slen; /* an output row's accumulators */
    long held[nslots];
    for (long s = 0; s < nslots; s++) held[s] = LONG_MIN;
    const float *tp[kh * kw];
    v8 wt[kh * kw];
    for (long t = 0; t < kh * kw; t++) wt[t] = splat(wc[t]);
    for (long oy = oy0; oy < oy1; oy++) {
        for (long ky = 0; ky < kh; ky++) {
            long iy = oy * sy - pt + ky * dy;
            const float *r = zero;
            if (iy >= 0 && iy < h) {
                float *slot = rows + (iy % nslots) * slen;
                if (held[iy % nslots] != iy) {
                    qfill_row(xc + iy * xrs, w, pl, sx, wq, slot);
                    held[iy % nslots] = iy;
                }
                r = slot;
            }
            for (long kx = 0; kx < kw; kx++)
                tp[ky * kw + kx] = r + ((kx * dx) % sx) * wq + (kx * dx) / sx;
        }
        long ox = 0;
        for (; ox + 16 <= wo; ox += 16) {
            v8 a0 = {0}, a1 = {0};
            for (long t = 0; t < kh * kw; t++) {
                a0 += wt[t] * load8(tp[t] + ox);
                a1 += wt[t] * load8(tp[t] + ox + 8);
            }
            store8(acc + ox, a0);
            store8(acc + ox + 8, a1);
        }
        for (; ox < wo; ox += 8) {
            v8 a0 = {0};
            for (long t = 0; t < kh * kw; t++) a0 += wt[t] * load8(tp[t] + ox);
            store8(acc + ox, a0);
        }
        qepi_apply(e, acc, oy * wo, wo);
    }
}

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

/* The direct int8 epilogue (see QNEAR, QPROVED) of the 8-channel path's vectors, lanes
 * along channels: the group's per-lane constants (lanes past the group's channels zero) */
typedef struct {
    v8 b, m, lo, hi; /* bias; float32(m / os) (proved lanes: vmq); clip bounds (proved: theirs) */
    v8i chk;         /* lanes checked near halves: all but the proved */
    double mult[CV]; /* the reference's multipliers (the exact redo) */
    float p0, p1;
    double os;
    long act;
} qgrp;

/* qgrp of channels [c, c + nc): 0 unless every channel takes the direct int8 path (as
 * qepi_of decides, from the tactic's float32(m / os) in a->qmq) */
static int qgrp_of(const conv_int8_dw_args *a, long c, long nc, long taps, qgrp *g) {
    float lo, hi;
    if (!a->qmq || a->okind != EI_S8 || a->z ||
        !qfast_bounds(a->act, a->p0, a->p1, a->oscale, &lo, &hi))
        return 0;
    float bv[CV] = {0}, mv[CV] = {0}, lv[CV] = {0}, hv[CV] = {0};
    int ck[CV] = {0};
    for (long ci = 0; ci < nc; ci++) {
        double b = a->bias ? (double)a->bias[c + ci] : 0.0, m = a->mult[c + ci];
        float q = a->qmq[c + ci], vmq, vlo, vhi;
        if (!((double)taps * 16384.0 + (b < 0 ? -b : b) < 16777216.0 && m >= 1e-37 &&
              m <= 1e30 && q >= 1e-30f && q <= 1e30f))
            return 0;
        bv[ci] = (float)b;
        g->mult[ci] = m;
        if (qproved(a, c + ci, &vmq, &vlo, &vhi)) {
            mv[ci] = vmq, lv[ci] = vlo, hv[ci] = vhi;
        } else {
            mv[ci] = q, lv[ci] = lo, hv[ci] = hi, ck[ci] = -1;
        }
    }
    for (long ci = nc; ci < CV; ci++) g->mult[ci] = 0.0;
    g->b = load8(bv);
    g->m = load8(mv);
    g->lo = load8(lv);
    g->hi = load8(hv);
    memcpy(&g->chk, ck, sizeof ck);
    g->p0 = a->p0;
    g->p1 = a->p1;
    g->os = a->oscale;
    g->act = a->act;
    return 1;
}

/* one accumulator (with the bias) as the reference requantizes it: y = float32(double(acc)
 * * mult), relu / clip in float32, rint(double(y) / os) saturated to int8 (the exact redo of
 * a lane near a half: qgrp_exact, qexact16) */
static inline int qexact1(float acc, double mult, long act, float p0, float p1, double os) {
    float y = (float)((double)acc * mult);
    if (act == EI_ACT_RELU) y = y > 0.0f ? y : 0.0f;
    if (act == EI_ACT_CLIP) {
        y = y < p0 ? p0 : y;
        y = y > p1 ? p1 : y;
    }
    double q = __builtin_rint((double)y / os);
    return q < -128.0 ? -128 : q > 127.0 ? 127 : (int)q;
}

/* lanes `near` of r (accumulators acc, with the bias) redone as the reference does, lane by
 * lane */
static __attribute__((noinline)) v8 qgrp_exact(v8 acc, v8 r, v8i near, const qgrp *g) {
    for (int k = 0; k < CV; k++)
        if (near[k]) r[k] = (float)qexact1(acc[k], g->mult[k], g->act, g->p0, g->p1, g->os);
    return r;
}

/* the int8 value of each lane of acc (accumulators with the bias): clamp(rint(acc * m)) */
static inline __attribute__((always_inline)) v8 qgrp_q(v8 acc, const qgrp *g) {
    v8 q = vmin(vmax(acc * g->m, g->lo), g->hi);
    v8 r = vround(q), d = q - r;
    v8i near = ((d > QNEAR) | (d < -QNEAR)) & g->chk;
    if (__builtin_expect(any8(near), 0)) r = qgrp_exact(acc, r, near, g);
    return r;
}

#if defined(__AVX2__) && !defined(QEPI16)
#define QGRP_BYTES 1
/* The direct path's results of 8 pixels p .. p + 7 (r[k]: pixel k's 8 channels, int32 in
 * [-128, 127]) as bytes into the planes of channels [0, nc) at o (ocs apart), pixels [k0, k1)
 * of the 8: packed to bytes (pixel-major 4 x 4 blocks a lane), each block transposed by a
 * byte shuffle, then a channel's 8 bytes from two blocks by a dword unpack. In place of the
 * float transposes, a pass over planes of floats and 8 narrowings per channel. */
static inline __attribute__((always_inline)) void qgrp_store(const __m256i r[8], int8_t *o,
                                                            long ocs, long nc, long p, long k0,
                                                            long k1) {
    const __m256i tr = _mm256_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15, 0,
                                        4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    /* lane 0: pixels 0-3 x channels 0-3, lane 1: the same pixels x channels 4-7 */
    __m256i lo = _mm256_packs_epi16(_mm256_packs_epi32(r[0], r[1]), _mm256_packs_epi32(r[2], r[3]));
    __m256i hi = _mm256_packs_epi16(_mm256_packs_epi32(r[4], r[5]), _mm256_packs_epi32(r[6], r[7]));
    lo = _mm256_shuffle_epi8(lo, tr); /* channel-major: 4 pixels of channel 0, 1, 2, 3 */
    hi = _mm256_shuffle_epi8(hi, tr);
    __m256i c01 = _mm256_unpacklo_epi32(lo, hi); /* lane 0: channels 0, 1; lane 1: 4, 5 */
    __m256i c23 = _mm256_unpackhi_epi32(lo, hi); /* lane 0: channels 2, 3; lane 1: 6, 7 */
    int8_t b[CV][8] __attribute__((aligned(32)));
    _mm_store_si128((__m128i *)b[0], _mm256_castsi256_si128(c01));
    _mm_store_si128((__m128i *)b[2], _mm256_castsi256_si128(c23));
    _mm_store_si128((__m128i *)b[4], _mm256_extracti128_si256(c01, 1));
    _mm_store_si128((__m128i *)b[6], _mm256_extracti128_si256(c23, 1));
    for (long ci = 0; ci < nc; ci++) {
        int8_t *d = o + ci * ocs + p;
        if (k0 == 0 && k1 == 8)
            memcpy(d, b[ci], 8);
        else
            for (long k = k0; k < k1; k++) d[k] = b[ci][k];
    }
}

/* the direct path's accumulators (with the bias) of pixels [p0, p1) at Q (pixel p's CV
 * channels at Q + p CV) requantized (qgrp_q) and stored as bytes to the planes of channels
 * [0, nc) at o, 8 pixels at a time (one copy: compile time) */
static __attribute__((noinline)) void qgrp_bytes(const float *Q, const qgrp *g, int8_t *o,
                                                 long ocs, long nc, long p0, long p1) {
    for (long p = p0 / 8 * 8; p < p1; p += 8) {
        long k0 = p < p0 ? p0 - p : 0, k1 = p1 - p < 8 ? p1 - p : 8;
        __m256i r[8];
        for (long k = 0; k < 8; k++) {
            v8 v = k >= k0 && k < k1 ? qgrp_q(load8(Q + (p + k) * CV), g) : (v8){0};
            r[k] = _mm256_cvtps_epi32((__m256)v); /* exact: integers in [-128, 127] */
        }
        qgrp_store(r, o, ocs, nc, p, k0, k1);
    }
}
#endif

/* CV channels [c, c + nc) together, vectors along channels (conv_depthwise.c dw_group) */
static inline __attribute__((always_inline)) void qdw_group(const conv_int8_dw_args *a, long c,
                                                           long nc, long oy0, long oy1,
                                                           float *buf, long kh, long kw,
                                                           long sy, long sx, long dy, long dx) {
    long ho = a->ho, wo = a->wo, T = kh * kw;
    long hp = (ho - 1) * sy + (kh - 1) * dy + 1, wp = (wo - 1) * sx + (kw - 1) * dx + 1;
    float *P = buf, *Q = buf + hp * wp * CV;
    long x0 = a->pl < wp ? a->pl : wp, x1 = a->pl + a->w < wp ? a->pl + a->w : wp;
    long py1 = (oy1 - 1) * sy + (kh - 1) * dy + 1; /* the padded rows output rows need */
    for (long py = oy0 * sy; py < py1; py++) {
        long iy = py - a->pt;
        float *drow = P + py * wp * CV;
        if (iy < 0 || iy >= a->h) {
            memset(drow, 0, (size_t)(wp * CV) * sizeof(float));
            continue;
        }
        memset(drow, 0, (size_t)(x0 * CV) * sizeof(float));
        memset(drow + x1 * CV, 0, (size_t)((wp - x1) * CV) * sizeof(float));
        const int8_t *row = (const int8_t *)a->x + c * a->xcs + iy * a->xrs;
        /* a row's last columns read as 8 bytes where the plane's next row holds the rest
         * (the bytes past the row go to pixels not stored) */
        long whole = iy + 1 < a->h && a->xrs >= 7;
        for (long px = x0; px < x1; px += 8) {
            long m = x1 - px < 8 ? x1 - px : 8;
            v8 r[8];
            for (long ci = 0; ci < CV; ci++)
                r[ci] = ci >= nc ? (v8){0}
                                 : load_s8(row + ci * a->xcs + px - a->pl, whole ? 8 : m);
            transpose8(r);
            for (long k = 0; k < m; k++) store8(drow + (px + k) * CV, r[k]);
        }
    }
    v8 W[T];
    for (long t = 0; t < T; t++) {
        float wt[CV] = {0};
        for (long ci = 0; ci < nc; ci++) wt[ci] = a->wts[(c + ci) * T + t];
        W[t] = load8(wt);
    }
    /* the direct int8 path for the whole group: the epilogue on the channel vectors (the
     * accumulators start at the bias), the int8 values as floats back to the planes */
    qgrp g;
    int direct = qgrp_of(a, c, nc, T, &g);
    const v8 start = direct ? g.b : (v8){0};
    for (long oy = oy0; oy < oy1; oy++) {
        const float *prow = P + oy * sy * wp * CV;
        float *q = Q + oy * wo * CV;
        for (long ox = 0; ox < wo; ox++) {
            v8 acc = start;
            for (long ky = 0; ky < kh; ky++)
                for (long kx = 0; kx < kw; kx++)
                    acc += W[ky * kw + kx] *
                           load8(prow + ((ky * dy) * wp + ox * sx + kx * dx) * CV);
            store8(q + ox * CV, acc);
        }
#ifndef QGRP_BYTES
        if (direct) /* a pass of its own: in the loop above it would spill the weights */
            for (long ox = 0; ox < wo; ox++) store8(q + ox * CV, qgrp_q(load8(q + ox * CV), &g));
#endif
    }
    long n = ho * wo, n8 = (n + 7) / 8 * 8, p0 = oy0 * wo, p1 = oy1 * wo;
#ifdef QGRP_BYTES
    if (direct) {
        qgrp_bytes(Q, &g, (int8_t *)a->out + c * a->ocs, a->ocs, nc, p0, p1);
        return;
    }
#endif
    /* back to one plane per channel (R, n8 floats each), then the epilogue plane by plane */
    float *R = Q + n8 * CV;
    for (long p = p0 / 8 * 8; p < p1; p += 8) {
        v8 r[8];
        for (long k = 0; k < 8; k++) r[k] = load8(Q + (p + k) * CV);
        transpose8(r);
        for (long ci = 0; ci < nc; ci++) store8(R + ci * n8 + p, r[ci]);
    }
    if (direct) { /* integral floats in [-128, 127]: plane by plane to bytes (measured
                   * faster than 8 bytes to each of 8 planes in turn) */
        for (long ci = 0; ci < nc; ci++) {
            int8_t *o = (int8_t *)a->out + (c + ci) * a->ocs;
            const float *rc = R + ci * n8;
            for (long p = p0; p < p1; p += 8) {
                long m = p1 - p < 8 ? p1 - p : 8;
                v8c b = narrow_s8(load8(rc + p));
                if (m == 8)
                    memcpy(o + p, &b, 8);
                else
                    store_b8(o + p, b, m);
            }
        }
        return;
    }
    for (long ci = 0; ci < nc; ci++) {
        qepi e = qepi_of(a, c + ci);
        qepi_apply(&e, R + ci * n8 + p0, p0, p1 - p0);
    }
}

#if defined(__AVX2__) && !defined(QEPI16)
#define QS2 1
/* Stride-2 columns on AVX2 builds (sx == 2, dx == dy == 1, kw <= 8, input rows at least 16
 * wide): one channel at a time straight from its int8 plane, vectors along output rows, the
 * int32 accumulator in integers (no layout pass, no transposes). Output column ox's taps
 * 2 g and 2 g + 1 of a kernel row read input columns 2 ox - pl + 2 g and the next one:
 * adjacent, so the 16 bytes from column 2 ox0 - pl + 2 g, sign-extended to 16 int16, are the
 * pairs of 8 outputs, and one vpmaddwd with the two weights (int16; the second 0 past kw)
 * adds both products to each output's int32 (exact: products below 2^14 in magnitude, and
 * sums below 2^24, so exact as floats). Vectors whose bytes reach outside the row (padding)
 * load the 16 bytes inside it that hold theirs and move them in place with a byte shuffle
 * that zeroes the others; rows outside the input read a zero row. On the direct int8 path
 * (QNEAR, QPROVED) the accumulators start at the bias and are requantized in registers as
 * qepi_run does; otherwise an output row's accumulators go through qepi_apply. MobileNetV2
 * b1's 96@112 and 144@56 stride-2 layers: 0.46x and 0.63x of the 8-channel path's time (one
 * thread, Zen 3). */
#define QS2_MAXV 64 /* output vectors a row (outputs up to 512 wide) */

/* the byte shuffle of 16 bytes from column o of a row w >= 16 wide: *base, where to load,
 * and the indexes (0x80: zero) */
static inline __m128i qs2_pick(long o, long w, long *base) {
    long b = o < 0 ? 0 : o + 16 > w ? w - 16 : o;
    int8_t ix[16];
    for (long i = 0; i < 16; i++)
        ix[i] = o + i >= 0 && o + i < w ? (int8_t)(o + i - b) : (int8_t)0x80;
    *base = b;
    return _mm_loadu_si128((const __m128i *)ix);
}

/* the direct int8 path's exact redo of 8 accumulators (qepi_run's) */
static __attribute__((noinline)) v8 qs2_redo(v8 acc, const qepi *e) {
    return quant8(qactivate(requant(acc, e->b, e->m), e->act, e->p0, e->p1), e->rf, e->os);
}

/* the accumulators of output vector v (8 columns from 8 v) of one output row: input rows rp,
 * the vector's first column o (less pl) */
static inline __attribute__((always_inline)) __m256i qs2_acc(const int8_t *const *rp,
                                                            const __m256i *W, long edge,
                                                            const long *base,
                                                            const __m128i *pick, long o,
                                                            __m256i s, long kh, long G) {
    for (long ky = 0; ky < kh; ky++)
        for (long g = 0; g < G; g++) {
            __m128i b;
            if (!edge) {
                b = _mm_loadu_si128((const __m128i *)(rp[ky] + o + 2 * g));
            } else {
                b = _mm_loadu_si128((const __m128i *)(rp[ky] + base[g]));
                b = _mm_shuffle_epi8(b, pick[g]);
            }
            s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_cvtepi8_epi16(b), W[ky * G + g]));
        }
    return s;
}

/* one channel's output rows [oy0, oy1); MODE 2: proved (QPROVED), 1: the direct int8 path
 * (QNEAR), both in registers as qepi_run; 0: qepi_apply on a row of accumulators */
static inline __attribute__((always_inline)) void qs2_plane(
    const conv_int8_dw_args *a, const int8_t *xc, const qepi *e, const __m256i *W,
    const long *edge, long (*base)[4], __m128i (*pick)[4], long oy0, long oy1, long kh, long G,
    long sy, int MODE) {
    long h = a->h, wo = a->wo, nv = (wo + 7) / 8;
    float *acc = a->rows;
    const int8_t *zero = (const int8_t *)(acc + nv * 8);
    int8_t *out = (int8_t *)e->out;
    const __m256i s0 = _mm256_set1_epi32(MODE ? (int)e->bf : 0); /* starts at the bias */
    const v8 mq = splat(MODE == 2 ? e->vmq : e->mq);
    const v8 lo = splat(MODE == 2 ? e->vlo : e->lo), hi = splat(MODE == 2 ? e->vhi : e->hi);
    for (long oy = oy0; oy < oy1; oy++) {
        const int8_t *rp[kh];
        for (long ky = 0; ky < kh; ky++) {
            long iy = oy * sy - a->pt + ky;
            rp[ky] = iy >= 0 && iy < h ? xc + iy * a->xrs : zero;
        }
        for (long v = 0; v < nv; v++) {
            __m256i t = qs2_acc(rp, W, edge[v], base[v], pick[v], 16 * v - a->pl, s0, kh, G);
            v8 f = (v8)_mm256_cvtepi32_ps(t); /* exact: below 2^24 */
            if (!MODE) {
                store8(acc + 8 * v, f);
                continue;
            }
            int near; /* MODE 2: lo, hi integers (exact) */
            v8 r = qround8(f, mq, lo, hi, MODE == 2, &near);
            if (__builtin_expect(near, 0)) r = qs2_redo(f - splat(e->bf), e);
            v8c q8 = narrow_s8(r);
            /* a last vector's bytes past the row go to later rows of ours (written after) */
            long i = oy * wo + 8 * v, n = wo - 8 * v;
            if (n >= 8 || i + 8 <= oy1 * wo)
                memcpy(out + i, &q8, 8);
            else
                store_b8(out + i, q8, n);
        }
        if (!MODE) qepi_apply(e, acc, oy * wo, wo);
    }
}

/* qs2_plane with every parameter a variable (one copy: compile time) */
static __attribute__((noinline)) void qs2_plane_any(const conv_int8_dw_args *a,
                                                    const int8_t *xc, const qepi *e,
                                                    const __m256i *W, const long *edge,
                                                    long (*base)[4], __m128i (*pick)[4],
                                                    long oy0, long oy1, long kh, long G, long sy,
                                                    int mode) {
    qs2_plane(a, xc, e, W, edge, base, pick, oy0, oy1, kh, G, sy, mode);
}

/* FIXED: kh, kw and sy constants where inlined, and the direct int8 path's epilogues (MODE 1,
 * 2) loops of their own; otherwise qs2_plane_any */
static inline __attribute__((always_inline)) void qdw_s2(const conv_int8_dw_args *a, long oy0,
                                                        long oy1, long kh, long kw, long sy,
                                                        int FIXED) {
    long G = (kw + 1) / 2, w = a->w, nv = (a->wo + 7) / 8;
    memset(a->rows + nv * 8, 0, (size_t)w); /* the zero row */
    /* per vector: 0 where all its loads lie inside the row, else its shuffles */
    long edge[QS2_MAXV], base[QS2_MAXV][4];
    __m128i pick[QS2_MAXV][4];
    for (long v = 0; v < nv; v++) {
        edge[v] = 0;
        for (long g = 0; g < G; g++) {
            long o = 16 * v - a->pl + 2 * g;
            pick[v][g] = qs2_pick(o, w, &base[v][g]);
            edge[v] |= base[v][g] != o;
        }
    }
    for (long c = a->c0; c < a->c1; c++) {
        const int8_t *xc = (const int8_t *)a->x + c * a->xcs;
        const float *wc = a->wts + c * kh * kw;
        qepi e = qepi_of(a, c);
        __m256i W[kh * G];
        for (long ky = 0; ky < kh; ky++)
            for (long g = 0; g < G; g++) {
                int lo = (int)wc[ky * kw + 2 * g];
                int hi = 2 * g + 1 < kw ? (int)wc[ky * kw + 2 * g + 1] : 0;
                W[ky * G + g] = _mm256_set1_epi32((int)((uint32_t)(uint16_t)lo |
                                                        (uint32_t)(uint16_t)hi << 16));
            }
        int mode = e.fast && e.exact ? 2 : e.fast ? 1 : 0;
        if (FIXED && mode == 2)
            qs2_plane(a, xc, &e, W, edge, base, pick, oy0, oy1, kh, G, sy, 2);
        else if (FIXED && mode == 1)
            qs2_plane(a, xc, &e, W, edge, base, pick, oy0, oy1, kh, G, sy, 1);
        else
            qs2_plane_any(a, xc, &e, W, edge, base, pick, oy0, oy1, kh, G, sy, mode);
    }
}

/* Stride 1 on AVX2 builds (sy == sx == 1, dy == dx == 1, kw <= 8, outputs up to 512 wide;
 * the tactic asks for it with grouped == 2): one channel at a time straight from its int8
 * plane, vectors along output rows, no transposes. A channel's input rows are first widened
 * into a zero-padded float plane (per 8 padded columns: one 16-byte load from the int8 plane
 * and a byte shuffle that picks the row's bytes and zeroes the padding, then int8 -> float;
 * padding rows and columns stay zero from the start), then each 8-column output vector is
 * kh x kw fmas on unaligned loads, a sum a kernel row (the exact int32 accumulator as a
 * float, as qdw_channel; unaligned loads measured faster than vpalignr shifts of aligned
 * ones, and filling the next channel's plane first no faster). On the direct int8
 * path (QNEAR, QPROVED) the accumulators start at the bias and are requantized in registers
 * (as qs2_plane); otherwise an output row's accumulators go through qepi_apply. The channel's
 * setup reads the tactic's float32(m / os) and proved constants (a->qmq); the full qepi is
 * built only for the rare exact redo and for the general epilogue. */
#define QS1_MAXC (QS2_MAXV + 2) /* 8-column chunks of a padded row */

/* chunk k of a padded row (columns 8 k .. 8 k + 7, input columns j = 8 k + i - pl): the
 * 16-byte window from row offset 8 k - pl - 4, and the shuffle that moves its bytes in place
 * (0x80: padding, zero) */
static inline __m128i qs1_index(long k, long pl, long w) {
    int8_t ix[16];
    for (long i = 0; i < 16; i++) {
        long j = 8 * k + i - pl;
        ix[i] = i < 8 && j >= 0 && j < w ? (int8_t)(i + 4) : (int8_t)0x80;
    }
    return _mm_loadu_si128((const __m128i *)ix);
}

/* 8 bytes (low half of b) as floats at d */
static inline __attribute__((always_inline)) void qs1_widen(__m128i b, float *d) {
    _mm256_storeu_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(b)));
}

/* 8 integral floats in [-128, 127] as bytes at o (n of them where n < 8) */
static inline __attribute__((always_inline)) void qs1_store(int8_t *o, v8 r, long n) {
    __m256i i = _mm256_cvtps_epi32((__m256)r);
    __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
    __m128i b = _mm_packs_epi16(w, w);
    if (__builtin_expect(n >= 8, 1)) {
        _mm_storel_epi64((__m128i *)o, b);
    } else {
        int8_t t[16];
        _mm_storeu_si128((__m128i *)t, b);
        for (long j = 0; j < n; j++) o[j] = t[j];
    }
}

/* whether a layer's channels may take qs1_mode's direct int8 path at all (an int8 output
 * with the tactic's float multipliers, no residual, bounds [lo, hi] from the activation) */
static inline int qs1_fast(const conv_int8_dw_args *a, float *lo, float *hi) {
    return a->qmq && a->okind == EI_S8 && !a->z &&
           qfast_bounds(a->act, a->p0, a->p1, a->oscale, lo, hi);
}

/* the direct path of channel c: its mode (2 proved, 1 checked, 0 neither) and constants;
 * lo, hi: the layer's clip bounds (fast: whether the layer allows the direct path) */
static inline int qs1_mode(const conv_int8_dw_args *a, long c, int fast, float lo, float hi,
                           float *bf, float *mq, float *vlo, float *vhi) {
    if (!fast) return 0;
    double b = a->bias ? (double)a->bias[c] : 0.0, m = a->mult[c];
    float q = a->qmq[c];
    if (!((double)(a->kh * a->kw) * 16384.0 + (b < 0 ? -b : b) < 16777216.0 && m >= 1e-37 &&
          m <= 1e30 && q >= 1e-30f && q <= 1e30f))
        return 0;
    *bf = (float)b;
    if (qproved(a, c, mq, vlo, vhi)) return 2;
    *mq = q, *vlo = lo, *vhi = hi;
    return 1;
}

/* the exact redo of 8 accumulators (without the bias) of channel c (qepi_run's) */
static __attribute__((noinline)) v8 qs1_redo(v8 acc, const conv_int8_dw_args *a, long c) {
    qepi e = qepi_of(a, c);
    return qs2_redo(acc, &e);
}

/* The geometry of a call: padded rows np floats apart, the input rows [iy0, iy1) that the
 * output rows need (plane row iy at P + (iy - iy0 + pt0) * np, pt0 the padding rows above),
 * the chunks [k0, k1) that hold input columns with their shuffles, and the rows [ia, ib)
 * whose windows all lie inside the plane (the others byte by byte) */
typedef struct {
    long np, iy0, iy1, pt0, k0, k1, ia, ib, end;
    __m128i ix[QS1_MAXC];
} qs1_geom;

/* the padded float rows of channel c's input at P (one copy: compile time) */
static __attribute__((noinline)) void qs1_fill(const conv_int8_dw_args *a, long c,
                                               const qs1_geom *g, float *P) {
    const int8_t *xc = (const int8_t *)a->x + c * a->xcs;
    long xrs = a->xrs, pl = a->pl, w = a->w;
    for (long iy = g->iy0; iy < g->iy1; iy++) {
        float *d = P + (iy - g->iy0 + g->pt0) * g->np;
        if (__builtin_expect(iy >= g->ia && iy < g->ib, 1)) {
            const int8_t *s = xc + iy * xrs - pl - 4;
            for (long k = g->k0; k < g->k1; k++)
                qs1_widen(_mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(s + 8 * k)),
                                           g->ix[k]),
                          d + 8 * k);
            continue;
        }
        for (long k = g->k0; k < g->k1; k++) { /* the window reaches outside the plane */
            long o = iy * xrs + 8 * k - pl - 4;
            __m128i b;
            if (g->end >= 16) { /* the window moved inside: its shuffle moved as far */
                long oc = o < 0 ? 0 : o + 16 > g->end ? g->end - 16 : o;
                __m128i ix = g->ix[k], pad = _mm_and_si128(ix, _mm_set1_epi8((char)0x80));
                ix = _mm_or_si128(_mm_add_epi8(ix, _mm_set1_epi8((char)(o - oc))), pad);
                b = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(xc + oc)), ix);
            } else {
                int8_t t[16] = {0};
                for (long i = 0; i < 8; i++) {
                    long j = 8 * k + i - pl;
                    if (j >= 0 && j < w) t[i] = xc[iy * xrs + j];
                }
                b = _mm_loadu_si128((const __m128i *)t);
            }
            qs1_widen(b, d + 8 * k);
        }
    }
}

/* one channel's output rows [oy0, oy1) from its padded plane P (acc: an output row's
 * accumulators); MODE as qs2_plane */
static inline __attribute__((always_inline)) void qs1_plane(
    const conv_int8_dw_args *a, long c, const qs1_geom *g, const float *P, float *acc,
    long oy0, long oy1, long kh, long kw, int MODE, float bf, float mqs, float los, float his) {
    long wo = a->wo, nv = (wo + 7) / 8, np = g->np;
    const float *wc = a->wts + c * kh * kw;
    int8_t *out = (int8_t *)a->out + c * a->ocs;
    v8 W[kh * kw];
    for (long t = 0; t < kh * kw; t++) W[t] = splat(wc[t]);
    const v8 s0 = splat(MODE ? bf : 0.0f), mq = splat(mqs), lo = splat(los), hi = splat(his);
    qepi e;
    if (!MODE) e = qepi_of(a, c);
    for (long oy = oy0; oy < oy1; oy++) {
        const float *rp = P + (oy - oy0) * np;
        for (long v = 0; v < nv; v++) {
            v8 f = s0; /* plus each kernel row's sum: short dependency chains (exact sums
                        * of integers below 2^24, in any order) */
            for (long ky = 0; ky < kh; ky++) {
                const float *r = rp + ky * np + 8 * v;
                v8 s = {0};
                for (long kx = 0; kx < kw; kx++) s += W[ky * kw + kx] * load8(r + kx);
                f += s;
            }
            if (!MODE) {
                store8(acc + 8 * v, f);
                continue;
            }
            int near; /* MODE 2: lo, hi integers (exact) */
            v8 r = qround8(f, mq, lo, hi, MODE == 2, &near);
            if (__builtin_expect(near, 0)) r = qs1_redo(f - s0, a, c);
            /* a last vector's bytes past the row go to later rows of ours (written after) */
            long i = oy * wo + 8 * v, n = wo - 8 * v;
            qs1_store(out + i, r, n >= 8 || i + 8 <= oy1 * wo ? 8 : n);
        }
        if (!MODE) qepi_apply(&e, acc, oy * wo, wo);
    }
}

/* qs1_plane with every parameter a variable (one copy: compile time) */
static __attribute__((noinline)) void qs1_plane_any(const conv_int8_dw_args *a, long c,
                                                    const qs1_geom *g, const float *P,
                                                    float *acc, long oy0, long oy1, long kh,
                                                    long kw, int mode, float bf, float mq,
                                                    float lo, float hi) {
    qs1_plane(a, c, g, P, acc, oy0, oy1, kh, kw, mode, bf, mq, lo, hi);
}

/* FIXED: kh and kw constants where inlined (3 x 3), proved channels a loop of their own.
 * Buffer (cpu_qdepthwise.py _s1_floats): the padded plane of the rows [oy0, oy1) need, then
 * an output row's accumulators. */
static inline __attribute__((always_inline)) void qdw_s1(const conv_int8_dw_args *a, long oy0,
                                                        long oy1, long kh, long kw, int FIXED) {
    long nv = (a->wo + 7) / 8, pl = a->pl, w = a->w, h = a->h, xrs = a->xrs;
    qs1_geom g;
    g.np = (nv * 8 + kw - 1 + 7) / 8 * 8;
    long r0 = oy0 - a->pt, r1 = oy1 - 1 - a->pt + kh; /* the input rows needed, padded */
    g.iy0 = r0 > 0 ? r0 : 0;
    g.iy1 = r1 < h ? r1 : h;
    g.pt0 = g.iy0 - r0;
    g.k0 = pl / 8;
    g.k1 = (pl + w + 7) / 8 < g.np / 8 ? (pl + w + 7) / 8 : g.np / 8;
    g.end = (h - 1) * xrs + w;
    /* row iy's windows [iy xrs + 8 k - pl - 4, + 16) inside [0, end) for k in [k0, k1) */
    long lo_o = 8 * g.k0 - pl - 4, hi_o = 8 * (g.k1 - 1) - pl - 4 + 16;
    g.ia = lo_o >= 0 ? 0 : (-lo_o + xrs - 1) / xrs;
    g.ib = g.end - hi_o >= 0 ? (g.end - hi_o) / xrs + 1 : 0;
    if (g.ib > h) g.ib = h;
    for (long k = g.k0; k < g.k1; k++) g.ix[k] = qs1_index(k, pl, w);
    long rows = r1 - r0;
    float *P = a->rows, *acc = P + rows * g.np;
    memset(P, 0, (size_t)(rows * g.np) * sizeof(float));
    float lo = 0.0f, hi = 0.0f;
    int fast = qs1_fast(a, &lo, &hi);
    for (long c = a->c0; c < a->c1; c++) {
        float bf = 0.0f, mq = 0.0f, vlo = 0.0f, vhi = 0.0f;
        int mode = qs1_mode(a, c, fast, lo, hi, &bf, &mq, &vlo, &vhi);
        qs1_fill(a, c, &g, P);
        if (FIXED && mode == 2) /* nearly every channel of MobileNetV2's is proved */
            qs1_plane(a, c, &g, P, acc, oy0, oy1, 3, 3, 2, bf, mq, vlo, vhi);
        else
            qs1_plane_any(a, c, &g, P, acc, oy0, oy1, kh, kw, mode, bf, mq, vlo, vhi);
    }
}

/* 3 x 3 at stride 1 or 2 on AVX2 builds (unit dilation, outputs up to 112 wide at stride 1,
 * 56 at stride 2, channel planes of at least 16 bytes): one channel at a time straight from
 * its int8 plane, vectors of 8 output columns, the int32 accumulator by vpmaddwd on int16
 * pairs of taps (exact: products below 2^14 in magnitude), the input rows' pairs in
 * registers down the output rows. For each input row and vector, 16-byte windows of the row
 * (a load and a byte shuffle that zeroes what lies outside the row, as qs1_fill's) give H,
 * the pairs (taps kx = 0, 1) of the vector's 8 outputs, and E, the 8 inputs of tap kx = 2.
 * An output row is 5 vpmaddwd: H of its 3 input rows by (w[ky][0], w[ky][1]), the pairs of E
 * of its rows 0 and 1 by (w[0][2], w[1][2]), and at stride 1 the pairs of E of rows 1 and 2
 * by (0, w[2][2]), at stride 2 E of row 2 (and zeros) by (w[2][2], 0). No float plane, no
 * transposes, and per channel only the tactic's constants (qs1_mode); the epilogue as
 * qs1_plane's. MobileNetV2 b1's 3 x 3 layers, one thread, Zen 3, against the 8-channel path
 * (7, 14 wide), qdw_s1 (28 to 112) and qdw_s2: 0.67x at 7, 0.82x at 14, 0.76x at 28, 0.84x
 * at 56, 0.92x at 112; stride 2 to 7, 14 and 28 wide 0.58x, 0.72x, 0.87x (to 56 no faster
 * then; with qp3_proved 0.95x: wider, qdw_s2 stays). */
#define QP3_MAXV 14 /* output vectors a row (outputs up to 112 wide) */
#define QP3_MAXV2 7 /* at stride 2 (up to 56 wide: 112 -> 56 0.95x of qdw_s2's time) */

/* the window of input row iy at offset o0 of the row (ix: its shuffle) where its 16 bytes at
 * o lie where they may be read, o + sh in [0, lim] (lim = end - 16, sh = 0: the channel's
 * plane [0, end), end >= 16; qp3_proved's NEAR: the call's planes); else a window moved
 * inside the plane */
static inline __attribute__((always_inline)) __m128i qp3_window(const int8_t *xc, long iy,
                                                               long h, long xrs, long end,
                                                               long sh, long lim, long o0,
                                                               __m128i ix, int RAW) {
    if ((unsigned long)iy >= (unsigned long)h) return _mm_setzero_si128(); /* iy < 0 or >= h */
    long o = iy * xrs + o0;
    if (__builtin_expect((unsigned long)(o + sh) <= (unsigned long)lim, 1)) {
        __m128i w = _mm_loadu_si128((const __m128i *)(xc + o));
        return RAW ? w : _mm_shuffle_epi8(w, ix); /* RAW: the used bytes all in the row */
    }
    long oc = o < 0 ? 0 : end - 16; /* the window moved inside: its shuffle moved as far */
    __m128i pad = _mm_and_si128(ix, _mm_set1_epi8((char)0x80));
    ix = _mm_or_si128(_mm_add_epi8(ix, _mm_set1_epi8((char)(o - oc))), pad);
    return _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(xc + oc)), ix);
}

/* qp3_window's two shuffles ix0, ix1 of the same window (one load) */
static inline __attribute__((always_inline)) void qp3_window2(const int8_t *xc, long iy, long h,
                                                             long xrs, long end, long sh,
                                                             long lim, long o0, __m128i ix0,
                                                             __m128i ix1,
                                                             __m128i *r0, __m128i *r1) {
    if ((unsigned long)iy >= (unsigned long)h) { /* iy < 0 or >= h */
        *r0 = *r1 = _mm_setzero_si128();
        return;
    }
    long o = iy * xrs + o0;
    if (__builtin_expect((unsigned long)(o + sh) <= (unsigned long)lim, 1)) {
        __m128i w = _mm_loadu_si128((const __m128i *)(xc + o));
        *r0 = _mm_shuffle_epi8(w, ix0);
        *r1 = _mm_shuffle_epi8(w, ix1);
        return;
    }
    long oc = o < 0 ? 0 : end - 16; /* the window moved inside: its shuffles moved as far */
    __m128i w = _mm_loadu_si128((const __m128i *)(xc + oc)), d = _mm_set1_epi8((char)(o - oc));
    __m128i m = _mm_set1_epi8((char)0x80);
    *r0 = _mm_shuffle_epi8(w, _mm_or_si128(_mm_add_epi8(ix0, d), _mm_and_si128(ix0, m)));
    *r1 = _mm_shuffle_epi8(w, _mm_or_si128(_mm_add_epi8(ix1, d), _mm_and_si128(ix1, m)));
}

/* the pairs (e[o], f[o]) of the low 8 bytes of e and f, as int16 */
static inline __attribute__((always_inline)) __m256i qp3_pairs(__m128i e, __m128i f) {
    return _mm256_cvtepi8_epi16(_mm_unpacklo_epi8(e, f));
}

/* H and E of input row iy for vector offset o0 (stride S; ix: the windows' shuffles) */
static inline __attribute__((always_inline)) void qp3_row(const int8_t *xc, long iy, long h,
                                                         long xrs, long end, long sh, long lim,
                                                         long o0, const __m128i *ix, int S,
                                                         __m256i *hv, __m128i *ev, int RAW) {
    if (S == 3) { /* stride 2, outputs at most 7 wide: E from the same window (ix[1]) */
        __m128i w;
        qp3_window2(xc, iy, h, xrs, end, sh, lim, o0, ix[0], ix[1], &w, ev);
        *hv = _mm256_cvtepi8_epi16(w);
        return;
    }
    __m128i w = qp3_window(xc, iy, h, xrs, end, sh, lim, o0, ix[0], RAW);
    if (S == 1) { /* H: bytes (o, o + 1), E: bytes o + 2 */
        const __m128i hsh = _mm_setr_epi8(0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8);
        *hv = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(w, hsh));
        *ev = _mm_srli_si128(w, 2);
    } else { /* H: bytes (2 o, 2 o + 1), E: bytes 2 o + 2 (a window 2 bytes on, evens) */
        *hv = _mm256_cvtepi8_epi16(w);
        *ev = qp3_window(xc, iy, h, xrs, end, sh, lim, o0 + 2, ix[1], 0);
    }
}

/* one channel's output rows [oy0, oy1), vector by vector (the last, partial one first: its
 * bytes past the row go to the next row's first vector, written after), down the rows;
 * MODE as qs2_plane (0: the accumulators of the rows to the buffer acc, then qepi_apply row
 * by row); ix: per vector 2 window shuffles */
static inline __attribute__((always_inline)) void qp3_plane(
    const conv_int8_dw_args *a, long c, const __m128i (*ix)[2], float *acc, long oy0,
    long oy1, int S, int MODE, float bf, float mqs, float los, float his) {
    long wo = a->wo, nv = (wo + 7) / 8, h = a->h, xrs = a->xrs, pl = a->pl, pt = a->pt;
    long end = (h - 1) * xrs + a->w, sh = 0, lim = end - 16;
    const int8_t *xc = (const int8_t *)a->x + c * a->xcs;
    const float *wc = a->wts + c * 9;
    int8_t *out = (int8_t *)a->out + c * a->ocs;
#define QP3_PAIR(L, HI) \
    _mm256_set1_epi32((int)((uint32_t)(uint16_t)(int)(L) | (uint32_t)(uint16_t)(int)(HI) << 16))
    const __m256i w0 = QP3_PAIR(wc[0], wc[1]), w1 = QP3_PAIR(wc[3], wc[4]);
    const __m256i w2 = QP3_PAIR(wc[6], wc[7]), w3 = QP3_PAIR(wc[2], wc[5]);
    const __m256i w4 = S == 1 ? QP3_PAIR(0, wc[8]) : QP3_PAIR(wc[8], 0);
#undef QP3_PAIR
    const __m256i s0 = _mm256_set1_epi32(MODE ? (int)bf : 0);
    const v8 mq = splat(mqs), lo = splat(los), hi = splat(his);
    for (long k = 0; k < nv; k++) {
        long v = k == 0 ? nv - 1 : k - 1, o0 = 8 * S * v - pl, n = wo - 8 * v;
        __m256i ha, hb, hc;
        __m128i ea, eb, ec;
        long iy = oy0 * S - pt; /* the output row's first input row */
        qp3_row(xc, iy, h, xrs, end, sh, lim, o0, ix[v], S, &ha, &ea, 0);
        if (S == 1) qp3_row(xc, iy + 1, h, xrs, end, sh, lim, o0, ix[v], S, &hb, &eb, 0);
        for (long oy = oy0; oy < oy1; oy++, iy += S) {
            if (S == 2) qp3_row(xc, iy + 1, h, xrs, end, sh, lim, o0, ix[v], S, &hb, &eb, 0);
            qp3_row(xc, iy + 2, h, xrs, end, sh, lim, o0, ix[v], S, &hc, &ec, 0);
            __m256i t0 = _mm256_add_epi32(s0, _mm256_madd_epi16(ha, w0));
            __m256i t1 = _mm256_madd_epi16(hb, w1);
            __m256i t2 = _mm256_madd_epi16(hc, w2);
            __m256i t3 = _mm256_madd_epi16(qp3_pairs(ea, eb), w3);
            __m256i t4 = _mm256_madd_epi16(
                S == 1 ? qp3_pairs(eb, ec) : qp3_pairs(ec, _mm_setzero_si128()), w4);
            __m256i t = _mm256_add_epi32(_mm256_add_epi32(t0, t1),
                                         _mm256_add_epi32(_mm256_add_epi32(t2, t3), t4));
            if (S == 1) {
                ha = hb, hb = hc, ea = eb, eb = ec;
            } else {
                ha = hc, ea = ec;
            }
            v8 f = (v8)_mm256_cvtepi32_ps(t); /* exact: below 2^24 */
            long i = oy * wo + 8 * v;
            if (!MODE) {
                store8(acc + (oy - oy0) * nv * 8 + 8 * v, f);
                continue;
            }
            int near; /* MODE 2: lo, hi integers (exact) */
            v8 r = qround8(f, mq, lo, hi, MODE == 2, &near);
            if (__builtin_expect(near, 0)) r = qs1_redo(f - splat(bf), a, c);
            qs1_store(out + i, r, n >= 8 || i + 8 <= oy1 * wo ? 8 : n);
        }
    }
    if (!MODE) {
        qepi e = qepi_of(a, c);
        for (long oy = oy0; oy < oy1; oy++)
            qepi_apply(&e, acc + (oy - oy0) * nv * 8, oy * wo, wo);
    }
}

/* The first n (0 to 8) of the 8 bytes in the low half of b at o: 8 at once, or two
 * overlapping dwords (n >= 4), else byte by byte */
static inline __attribute__((always_inline)) void qp3_store_n(int8_t *o, __m128i b, long n) {
    if (n >= 8) {
        _mm_storel_epi64((__m128i *)o, b);
    } else if (n >= 4) {
        _mm_storeu_si32(o + n - 4, _mm_srli_epi64(b, 8 * (n - 4)));
        _mm_storeu_si32(o, b);
    } else { /* (a loop here GCC makes a memcpy call) */
        long long q = _mm_cvtsi128_si64(b);
        if (n > 0) o[0] = (int8_t)q;
        if (n > 1) o[1] = (int8_t)(q >> 8);
        if (n > 2) o[2] = (int8_t)(q >> 16);
    }
}

/* Proved channels (QPROVED) on the pairs path, from the tactic's table (cpu_qdepthwise.py
 * _p3_table, after the VNNI rows of a->qw: per channel 8 dwords, the 5 weight pairs as
 * qp3_plane makes them, vmq's bits, lo and hi as 4 bytes each). The accumulator starts at
 * the bias; the epilogue is f = clamp(rint(float32(acc) * vmq), lo, hi) with rint the
 * conversion to int32 (round to nearest even: the caller checked MXCSR; exact, |acc vmq| <
 * 2^30 by the proof), packed to bytes with signed saturation (lo, hi lie in [-128, 127]: the
 * clamp after it is the same) and clamped as bytes, at stride 1 two output rows together (4
 * measured 1.27x slower: spills; at stride 2 pairs were 2-5 % slower than single rows).
 * ONE (stride 2, outputs at most 7 wide): a row's window holds both column phases (ix[0][1]
 * picks the columns 2 o + 2 from it), one load a row instead of two: 14 x 14 to 7 x 7 0.93x.
 * NEAR (outputs at most 8 wide): a window may reach into the call's other planes, so only
 * the first plane's top and the last one's bottom move windows (7 x 7 0.94x, 14 -> 7 0.94x;
 * on wider planes, where few windows move, 1.02-1.03x: not taken there). A column of
 * vectors whose windows' used bytes all lie inside the row (RAW: no padding column, none
 * past the row) skips the windows' shuffle: 112 and 56 wide 0.96-0.97x, 28 0.98x.
 * Against qp3_plane (its per-channel setup: qs1_mode's checks, the weights' conversions and
 * pairings; vroundps and float clamps): MobileNetV2 b1 at 7 x 7 0.81x, 14 0.89x, 28 to 112
 * 0.87x, stride 2 to 7, 14 0.85x, 0.96x (one thread, CPU time, bench/qlayer_cpu_ab.py). */
static inline __attribute__((always_inline)) void qp3_proved(const conv_int8_dw_args *a,
                                                            long c, const __m128i (*ix)[2],
                                                            const int *tab, long oy0,
                                                            long oy1, int S, int ONE,
                                                            int NEAR) {
    long wo = a->wo, nv = (wo + 7) / 8, h = a->h, xrs = a->xrs, pl = a->pl, pt = a->pt;
    long end = (h - 1) * xrs + a->w;
    /* NEAR: windows may reach into the planes of the call's other channels (their shuffles
     * zero what lies outside the row), so only the call's first and last planes' edges take
     * qp3_window's moved windows */
    long sh = NEAR ? (c - a->c0) * a->xcs : 0;
    long lim = NEAR ? sh + (a->c1 - 1 - c) * a->xcs + end - 16 : end - 16;
    const int8_t *xc = (const int8_t *)a->x + c * a->xcs;
    int8_t *out = (int8_t *)a->out + c * a->ocs;
    const __m256i w0 = _mm256_set1_epi32(tab[0]), w1 = _mm256_set1_epi32(tab[1]);
    const __m256i w2 = _mm256_set1_epi32(tab[2]), w3 = _mm256_set1_epi32(tab[3]);
    const __m256i w4 = _mm256_set1_epi32(tab[4]);
    const __m256 mq = _mm256_castsi256_ps(_mm256_set1_epi32(tab[5]));
    const __m128i lo = _mm_set1_epi32(tab[6]), hi = _mm_set1_epi32(tab[7]);
    const __m256i s0 = _mm256_set1_epi32(a->bias ? a->bias[c] : 0);
    const __m128i order = _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15);
    const int RS = ONE ? 3 : S; /* qp3_row's: ONE, stride 2 and one window a row */
#define QP3_STEP(R)                                                                            \
    do {                                                                                       \
        if (S == 2) qp3_row(xc, iy + 1, h, xrs, end, sh, lim, o0, ix[v], RS, &hb, &eb, RAW);   \
        qp3_row(xc, iy + 2, h, xrs, end, sh, lim, o0, ix[v], RS, &hc, &ec, RAW);               \
        __m256i t0 = _mm256_add_epi32(s0, _mm256_madd_epi16(ha, w0));                          \
        __m256i t1 = _mm256_madd_epi16(hb, w1);                                                \
        __m256i t2 = _mm256_madd_epi16(hc, w2);                                                \
        __m256i t3 = _mm256_madd_epi16(qp3_pairs(ea, eb), w3);                                 \
        __m256i t4 = _mm256_madd_epi16(                                                        \
            S == 1 ? qp3_pairs(eb, ec) : qp3_pairs(ec, _mm_setzero_si128()), w4);              \
        __m256i t = _mm256_add_epi32(_mm256_add_epi32(t0, t1),                                 \
                                     _mm256_add_epi32(_mm256_add_epi32(t2, t3), t4));          \
        if (S == 1) {                                                                          \
            ha = hb, hb = hc, ea = eb, eb = ec;                                                \
        } else {                                                                               \
            ha = hc, ea = ec;                                                                  \
        }                                                                                      \
        iy += S;                                                                               \
        R = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_cvtepi32_ps(t), mq));                     \
    } while (0)
#define QP3_COLUMN(RAWV)                                                                       \
    do {                                                                                       \
        const int RAW = RAWV;                                                                  \
        __m256i ha, hb, hc;                                                                    \
        __m128i ea, eb, ec;                                                                    \
        long iy = oy0 * S - pt; /* the output row's first input row */                         \
        qp3_row(xc, iy, h, xrs, end, sh, lim, o0, ix[v], RS, &ha, &ea, RAW);                   \
        if (S == 1)                                                                            \
            qp3_row(xc, iy + 1, h, xrs, end, sh, lim, o0, ix[v], RS, &hb, &eb, RAW);           \
        long oy = oy0;                                                                         \
        /* two rows at a time: bytes r0 0-3, r1 0-3, r0 4-7, r1 4-7, then in order */          \
        for (; S == 1 && oy + 2 <= oy1; oy += 2) {                                             \
            __m256i r0, r1;                                                                    \
            QP3_STEP(r0);                                                                      \
            QP3_STEP(r1);                                                                      \
            __m256i p = _mm256_packs_epi32(r0, r1);                                            \
            __m128i b = _mm_packs_epi16(_mm256_castsi256_si128(p),                             \
                                        _mm256_extracti128_si256(p, 1));                       \
            b = _mm_min_epi8(_mm_max_epi8(_mm_shuffle_epi8(b, order), lo), hi);                \
            /* a last vector's bytes past the row go to later rows of ours (written            \
             * after) */                                                                       \
            long i = oy * wo + 8 * v;                                                          \
            _mm_storel_epi64((__m128i *)(out + i), b);                                         \
            qp3_store_n(out + i + wo, _mm_unpackhi_epi64(b, b),                                \
                        n >= 8 || i + wo + 8 <= oy1 * wo ? 8 : n);                             \
        }                                                                                      \
        for (; oy < oy1; oy++) {                                                               \
            __m256i r0;                                                                        \
            QP3_STEP(r0);                                                                      \
            __m256i p = _mm256_packs_epi32(r0, r0);                                            \
            __m128i b = _mm_packs_epi16(_mm256_castsi256_si128(p),                             \
                                        _mm256_extracti128_si256(p, 1));                       \
            b = _mm_min_epi8(_mm_max_epi8(_mm_shuffle_epi8(b, order), lo), hi);                \
            long i = oy * wo + 8 * v;                                                          \
            qp3_store_n(out + i, b, n >= 8 || i + 8 <= oy1 * wo ? 8 : n);                      \
        }                                                                                      \
    } while (0)
    for (long k = 0; k < nv; k++) {
        long v = k == 0 ? nv - 1 : k - 1, o0 = 8 * S * v - pl, n = wo - 8 * v;
        /* windows wholly inside the row: their bytes need no shuffle (not at NEAR, ONE) */
        int raw = !NEAR && !ONE && o0 >= 0 && o0 + (S == 1 ? 10 : 16) <= a->w;
        if (raw)
            QP3_COLUMN(1);
        else
            QP3_COLUMN(0);
#undef QP3_COLUMN
#undef QP3_STEP
    }
}

/* qp3_plane with the mode a variable (one copy a stride: compile time) */
static __attribute__((noinline)) void qp3_plane_any(const conv_int8_dw_args *a, long c,
                                                    const __m128i (*ix)[2], float *acc,
                                                    long oy0, long oy1, int S, int mode,
                                                    float bf, float mq, float lo, float hi) {
    if (S == 1)
        qp3_plane(a, c, ix, acc, oy0, oy1, 1, mode, bf, mq, lo, hi);
    else
        qp3_plane(a, c, ix, acc, oy0, oy1, 2, mode, bf, mq, lo, hi);
}

/* Channels [c0, c1) where the tactic's table holds (tab): proved channels by qp3_proved, the
 * others by qp3_plane_any; one function per (S, ONE) (ixp: qp3_proved's window shuffles),
 * each with registers of its own (inlined together in qdw_p3 they slowed each other 1-2 %) */
static inline __attribute__((always_inline)) void qp3_table_run(
    const conv_int8_dw_args *a, const __m128i (*ix)[2], const __m128i (*ixp)[2], const int *tab,
    long oy0, long oy1, int S, int ONE, int NEAR, int fast, float lo, float hi) {
    __m128i lx[QP3_MAXV][2]; /* a copy the output's stores cannot alias */
    memcpy(lx, ixp, sizeof lx);
    for (long c = a->c0; c < a->c1; c++) {
        if (tab[8 * c + 5] > 0) { /* vmq > 0 (a positive float's bits) */
            qp3_proved(a, c, (const __m128i(*)[2])lx, tab + 8 * c, oy0, oy1, S, ONE, NEAR);
            continue;
        }
        float bf = 0.0f, mq = 0.0f, vlo = 0.0f, vhi = 0.0f;
        int mode = qs1_mode(a, c, fast, lo, hi, &bf, &mq, &vlo, &vhi);
        qp3_plane_any(a, c, ix, a->rows, oy0, oy1, S, mode, bf, mq, vlo, vhi);
    }
}

#define QP3_TABLE_RUN(NAME, S, ONE, NEAR)                                                      \
    static __attribute__((noinline)) void NAME(                                                \
        const conv_int8_dw_args *a, const __m128i (*ix)[2], const __m128i (*ixp)[2],          \
        const int *tab, long oy0, long oy1, int fast, float lo, float hi) {                    \
        qp3_table_run(a, ix, ixp, tab, oy0, oy1, S, ONE, NEAR, fast, lo, hi);                  \
    }
QP3_TABLE_RUN(qp3_table_s1, 1, 0, 0)
QP3_TABLE_RUN(qp3_table_s1near, 1, 0, 1)
QP3_TABLE_RUN(qp3_table_s2, 2, 0, 0)
QP3_TABLE_RUN(qp3_table_s2one, 2, 1, 1)
#undef QP3_TABLE_RUN

/* whether qdw_p3 takes a layer */
static inline int qp3_ok(const conv_int8_dw_args *a) {
    return a->kh == 3 && a->kw == 3 && a->sy == a->sx && (a->sx == 1 || a->sx == 2) &&
           a->dy == 1 && a->dx == 1 && a->wo <= 8 * (a->sx == 1 ? QP3_MAXV : QP3_MAXV2) &&
           (a->h - 1) * a->xrs + a->w >= 16;
}

/* buffer (cpu_qdepthwise.py _p3_floats): the accumulators of the rows (general epilogue) */
static void qdw_p3(const conv_int8_dw_args *a, long oy0, long oy1) {
    long nv = (a->wo + 7) / 8, S = a->sx;
    __m128i ix[QP3_MAXV][2];
    for (long v = 0; v < nv; v++) {
        int8_t t[2][16];
        for (long i = 0; i < 16; i++) {
            long j = 8 * S * v - a->pl + i, j2 = 8 * S * v - a->pl + 2 + 2 * i;
            /* stride 1: bytes 0 .. 9 (columns o .. o + 9); stride 2: all 16, and the evens
             * of the window 2 bytes on */
            long used = S == 1 ? i < 10 : 1;
            t[0][i] = used && j >= 0 && j < a->w ? (int8_t)i : (int8_t)0x80;
            t[1][i] = i < 8 && j2 >= 0 && j2 < a->w ? (int8_t)(2 * i) : (int8_t)0x80;
        }
        ix[v][0] = _mm_loadu_si128((const __m128i *)t[0]);
        ix[v][1] = _mm_loadu_si128((const __m128i *)t[1]);
    }
    /* stride 2, outputs at most 7 wide: columns 2 o + 2 (o < 7) lie in the window at o0 */
    int one = S == 2 && a->wo <= 7;
    __m128i ix1[QP3_MAXV][2] = {{ix[0][0], _mm_setzero_si128()}};
    if (one) {
        int8_t t[16];
        for (long i = 0; i < 16; i++) {
            long j = 2 - a->pl + 2 * i;
            t[i] = i < 7 && j >= 0 && j < a->w ? (int8_t)(2 * i + 2) : (int8_t)0x80;
        }
        ix1[0][1] = _mm_loadu_si128((const __m128i *)t);
    }
    float lo = 0.0f, hi = 0.0f;
    int fast = qs1_fast(a, &lo, &hi);
    /* proved channels from the tactic's table where the conversion rounds to nearest */
    const int *tab = fast && a->qw && (_mm_getcsr() & 0x6000) == 0 ? a->qw + 3 * a->qn : 0;
    if (tab && S == 1 && a->wo <= 8) { /* small planes: few rows a channel */
        qp3_table_s1near(a, ix, ix, tab, oy0, oy1, fast, lo, hi);
        return;
    }
    if (tab && S == 1) {
        qp3_table_s1(a, ix, ix, tab, oy0, oy1, fast, lo, hi);
        return;
    }
    if (tab && one) {
        qp3_table_s2one(a, ix, ix1, tab, oy0, oy1, fast, lo, hi);
        return;
    }
    if (tab) {
        qp3_table_s2(a, ix, ix, tab, oy0, oy1, fast, lo, hi);
        return;
    }
    for (long c = a->c0; c < a->c1; c++) {
        float bf = 0.0f, mq = 0.0f, vlo = 0.0f, vhi = 0.0f;
        int mode = qs1_mode(a, c, fast, lo, hi, &bf, &mq, &vlo, &vhi);
        if (mode == 2 && S == 1)
            qp3_plane(a, c, ix, a->rows, oy0, oy1, 1, 2, bf, mq, vlo, vhi);
        else if (mode == 2)
            qp3_plane(a, c, ix, a->rows, oy0, oy1, 2, 2, bf, mq, vlo, vhi);
        else
            qp3_plane_any(a, c, ix, a->rows, oy0, oy1, S, mode, bf, mq, vlo, vhi);
    }
}
#endif

#ifdef QEPI16
/* The grouped path on AVX-512: 16 channels at a time, vectors along channels, row by row.
 * Input rows go through a ring of (kh - 1) * dy + 1 slots, each a zero-padded row of wp
 * pixels x 16 channels (floats; a 16 x 16 byte transpose, then widened), so everything stays
 * in L1 whatever the plane's size. An output row's 16-channel accumulators (starting at the
 * bias on the direct int8 path) are finished in place: on the direct int8 path (qepi.fast for
 * all 16 channels) each pixel's vector is requantized with per-lane multipliers and the int8
 * row transposed back to the 16 planes; otherwise the accumulators go back to 16 channel rows
 * (8 x 8 float transposes) and through qepi_apply, as the 8-channel path does. */
#define CV16 16
#define QB 1 /* output pixels computed together (more measured slower) */

/* r[i] byte j -> r[j] byte i (16 x 16 bytes) */
static inline __attribute__((always_inline)) void transpose16b(__m128i r[16]) {
    __m128i a[16], b[16], c[16];
    for (int j = 0; j < 8; j++) {
        a[j] = _mm_unpacklo_epi8(r[2 * j], r[2 * j + 1]);
        a[j + 8] = _mm_unpackhi_epi8(r[2 * j], r[2 * j + 1]);
    }
    for (int h = 0; h < 2; h++)
        for (int q = 0; q < 4; q++) {
            b[4 * (2 * h) + q] = _mm_unpacklo_epi16(a[8 * h + 2 * q], a[8 * h + 2 * q + 1]);
            b[4 * (2 * h + 1) + q] = _mm_unpackhi_epi16(a[8 * h + 2 * q], a[8 * h + 2 * q + 1]);
        }
    for (int p = 0; p < 4; p++)
        for (int o = 0; o < 2; o++) {
            c[4 * p + o] = _mm_unpacklo_epi32(b[4 * p + 2 * o], b[4 * p + 2 * o + 1]);
            c[4 * p + 2 + o] = _mm_unpackhi_epi32(b[4 * p + 2 * o], b[4 * p + 2 * o + 1]);
        }
    for (int e = 0; e < 8; e++) {
        r[2 * e] = _mm_unpacklo_epi64(c[2 * e], c[2 * e + 1]);
        r[2 * e + 1] = _mm_unpackhi_epi64(c[2 * e], c[2 * e + 1]);
    }
}

/* input row iy of channels [c, c + nc) as wp pixels x 16 floats at d (zero padded) */
static inline void qfill_row16(const conv_int8_dw_args *a, long c, long nc, long iy, long wp,
                               float *d) {
    long x0 = a->pl < wp ? a->pl : wp, x1 = a->pl + a->w < wp ? a->pl + a->w : wp;
    memset(d, 0, (size_t)(x0 * CV16) * sizeof(float));
    memset(d + x1 * CV16, 0, (size_t)((wp - x1) * CV16) * sizeof(float));
    const int8_t *row = (const int8_t *)a->x + c * a->xcs + iy * a->xrs - a->pl;
    for (long px = x0; px < x1; px += 16) {
        long m = x1 - px < 16 ? x1 - px : 16;
        __mmask16 k = m == 16 ? (__mmask16)0xffff : (__mmask16)((1u << m) - 1);
        __m128i r[16];
        for (long ci = 0; ci < CV16; ci++)
            r[ci] = ci < nc ? _mm_maskz_loadu_epi8(k, row + ci * a->xcs + px)
                            : _mm_setzero_si128();
        transpose16b(r);
        for (long j = 0; j < m; j++)
            _mm512_storeu_ps(d + (px + j) * CV16, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(r[j])));
    }
}

/* lanes of q (direct int8 path) near a half redone as the reference does, lane by lane:
 * y = float32(double(acc + b) * m), the activation in float32, rint(clip(double(y) / os)) */
static __attribute__((noinline)) __m512i qexact16(__m512 acc, __mmask16 near, __m512i q,
                                                  const double *mult, const qepi *e) {
    float av[16];
    int qv[16];
    _mm512_storeu_ps(av, acc);
    _mm512_storeu_si512(qv, q);
    for (int k = 0; k < 16; k++)
        if (near >> k & 1) qv[k] = qexact1(av[k], mult[k], e->act, e->p0, e->p1, e->os);
    return _mm512_loadu_si512(qv);
}

static inline __attribute__((always_inline)) void qdw_group16(const conv_int8_dw_args *a, long c,
                                                             long nc, long oy0, long oy1,
                                                             long kh, long kw, long sy, long sx,
                                                             long dy, long dx) {
    long wo = a->wo, T = kh * kw, nslots = (kh - 1) * dy + 1;
    long wo4 = (wo + QB - 1) / QB * QB, wo16 = (wo + 15) / 16 * 16;
    long wp = (wo4 - 1) * sx + (kw - 1) * dx + 1; /* the pixels whole blocks of QB read */
    float *ring = a->rows, *zero = ring + nslots * wp * CV16;
    float *acc = zero + wp * CV16;  /* an output row: wo x 16 accumulators */
    float *R = acc + wo16 * CV16;   /* the general epilogue's 16 channel rows */
    int8_t *ob = (int8_t *)R;       /* the direct path's int8 row, wo16 x 16 */
    memset(zero, 0, (size_t)(wp * CV16) * sizeof(float));
    long held[nslots];
    for (long s = 0; s < nslots; s++) held[s] = LONG_MIN;
    __m512 W[T];
    __mmask16 kc = nc >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nc) - 1);
    for (long t = 0; t < T; t++) {
        float wt[CV16] = {0};
        for (long ci = 0; ci < nc; ci++) wt[ci] = a->wts[(c + ci) * T + t];
        W[t] = _mm512_loadu_ps(wt);
    }
    qepi e[CV16];
    int fast = 1, proved = 1; /* proved: all 16 lanes QPROVED, no check near halves */
    float bv[CV16] = {0}, mv[CV16] = {0}, pv[CV16] = {0}, pl[CV16] = {0}, ph[CV16] = {0};
    double mult[CV16] = {0};
    for (long ci = 0; ci < CV16; ci++) {
        e[ci] = qepi_of(a, c + (ci < nc ? ci : 0));
        fast &= (int)e[ci].fast;
        proved &= (int)e[ci].exact;
        bv[ci] = e[ci].bf;
        mv[ci] = e[ci].mq;
        mult[ci] = e[ci].m;
        pv[ci] = e[ci].vmq;
        pl[ci] = e[ci].vlo;
        ph[ci] = e[ci].vhi;
    }
    proved &= fast;
    const __m512 b0 = fast ? _mm512_loadu_ps(bv) : _mm512_setzero_ps();
    const __m512 mq = _mm512_loadu_ps(proved ? pv : mv);
    const __m512 lo = _mm512_set1_ps(e[0].lo), hi = _mm512_set1_ps(e[0].hi);
    const __m512i plo = _mm512_cvtps_epi32(_mm512_loadu_ps(pl));
    const __m512i phi = _mm512_cvtps_epi32(_mm512_loadu_ps(ph));
    for (long oy = oy0; oy < oy1; oy++) {
        const float *rp[kh];
        for (long ky = 0; ky < kh; ky++) {
            long iy = oy * sy - a->pt + ky * dy;
            rp[ky] = zero;
            if (iy >= 0 && iy < a->h) {
                long s = iy % nslots;
                if (held[s] != iy) {
                    qfill_row16(a, c, nc, iy, wp, ring + s * wp * CV16);
                    held[s] = iy;
                }
                rp[ky] = ring + s * wp * CV16;
            }
        }
        for (long ox = 0; ox < wo; ox += QB) { /* QB independent fma chains */
            long nb = wo - ox < QB ? wo - ox : QB;
            __m512 v[QB];
            for (long u = 0; u < QB; u++) v[u] = b0;
            for (long ky = 0; ky < kh; ky++)
                for (long kx = 0; kx < kw; kx++) {
                    const float *src = rp[ky] + (ox * sx + kx * dx) * CV16;
                    for (long u = 0; u < QB; u++)
                        v[u] = _mm512_fmadd_ps(W[ky * kw + kx],
                                               _mm512_loadu_ps(src + u * sx * CV16), v[u]);
                }
            for (long u = 0; u < nb; u++) {
                if (proved) {
                    __m512i q = _mm512_cvt_roundps_epi32(_mm512_mul_ps(v[u], mq),
                                                         _MM_FROUND_TO_NEAREST_INT |
                                                             _MM_FROUND_NO_EXC);
                    q = _mm512_min_epi32(_mm512_max_epi32(q, plo), phi);
                    _mm_storeu_si128((__m128i *)(ob + (ox + u) * CV16), _mm512_cvtepi32_epi8(q));
                } else if (fast) {
                    __mmask16 near;
                    __m512i q = qfast16(v[u], mq, lo, hi, &near);
                    if (__builtin_expect((near & kc) != 0, 0))
                        q = qexact16(v[u], near & kc, q, mult, e);
                    _mm_storeu_si128((__m128i *)(ob + (ox + u) * CV16),
                                     _mm512_cvtsepi32_epi8(q));
                } else {
                    _mm512_storeu_ps(acc + (ox + u) * CV16, v[u]);
                }
            }
        }
        if (fast) {
            for (long ox = 0; ox < wo; ox += 16) {
                long m = wo - ox < 16 ? wo - ox : 16;
                __mmask16 k = m == 16 ? (__mmask16)0xffff : (__mmask16)((1u << m) - 1);
                __m128i r[16];
                for (long j = 0; j < 16; j++)
                    r[j] = j < m ? _mm_loadu_si128((const __m128i *)(ob + (ox + j) * CV16))
                                 : _mm_setzero_si128();
                transpose16b(r);
                for (long ci = 0; ci < nc; ci++)
                    _mm_mask_storeu_epi8((int8_t *)e[ci].out + oy * wo + ox, k, r[ci]);
            }
            continue;
        }
        for (long ox = 0; ox < wo; ox += 8) {
            for (long h = 0; h < 2; h++) {
                v8 r[8];
                for (long j = 0; j < 8; j++)
                    r[j] = ox + j < wo ? load8(acc + (ox + j) * CV16 + 8 * h) : (v8){0};
                transpose8(r);
                for (long ci = 0; ci < 8; ci++) store8(R + (8 * h + ci) * wo16 + ox, r[ci]);
            }
        }
        for (long ci = 0; ci < nc; ci++) qepi_apply(&e[ci], R + ci * wo16, oy * wo, wo);
    }
}

#define QDW_GROUP16(KH, KW, SY, SX, DY, DX) qdw_group16(a, c, nc, oy0, oy1, KH, KW, SY, SX, DY, DX)

#if defined(__AVX512VNNI__)
#define QDW_VNNI 1
/* The grouped path with AVX-512 VNNI (dx == 1): the int32 accumulator itself, 4 taps of a
 * kernel row per instruction (vpdpbusd: 16 lanes x 4 u8 x s8 products). The inputs are
 * offset to unsigned (x + 128, the weights' sum times 128 taken off the accumulator's start);
 * each input row of the ring is stored as "quads": for pixel p, 16 channels x the 4 bytes of
 * pixels p .. p + 3 (a dword per channel), so that a kernel row of up to 4 taps at output
 * pixel ox is one vpdpbusd on the quad at ox * sx. Exact: the products' sums are the
 * accumulator (int32), converted to float (below 2^24) for the same epilogue as qdw_group16. */

/* input row iy of channels [c, c + nc) as the quads of pixels 0, st, 2 st, ... < nq at d;
 * brow: (nq + 3) x 16 bytes scratch */
static inline void qfill_quads(const conv_int8_dw_args *a, long c, long nc, long iy, long nq,
                               long st, uint8_t *brow, uint8_t *d) {
    long nb = nq + 3;
    long x0 = a->pl < nb ? a->pl : nb, x1 = a->pl + a->w < nb ? a->pl + a->w : nb;
    memset(brow, 0x80, (size_t)(x0 * CV16));
    memset(brow + x1 * CV16, 0x80, (size_t)((nb - x1) * CV16));
    const int8_t *row = (const int8_t *)a->x + c * a->xcs + iy * a->xrs - a->pl;
    const __m128i bias = _mm_set1_epi8((char)0x80);
    for (long px = x0; px < x1; px += 16) {
        long m = x1 - px < 16 ? x1 - px : 16;
        __mmask16 k = m == 16 ? (__mmask16)0xffff : (__mmask16)((1u << m) - 1);
        __m128i r[16];
        for (long ci = 0; ci < CV16; ci++)
            r[ci] = ci < nc ? _mm_maskz_loadu_epi8(k, row + ci * a->xcs + px)
                            : _mm_setzero_si128();
        transpose16b(r);
        for (long j = 0; j < m; j++)
            _mm_storeu_si128((__m128i *)(brow + (px + j) * CV16), _mm_xor_si128(r[j], bias));
    }
    /* 4 pixels x 16 channels -> 16 channels x 4 pixels: dwords (pixel, group of 4 channels)
     * to (group, pixel), then bytes (pixel, channel) to (channel, pixel) in each lane */
    const __m512i idx = _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
    const __m512i shuf = _mm512_broadcast_i32x4(
        _mm_set_epi8(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0));
    for (long p = 0, j = 0; p < nq; p += st, j++) {
        __m512i q = _mm512_loadu_si512(brow + p * CV16);
        q = _mm512_shuffle_epi8(_mm512_permutexvar_epi32(idx, q), shuf);
        _mm512_storeu_si512(d + j * 64, q);
    }
}

static inline __attribute__((always_inline)) void qdw_group16v(const conv_int8_dw_args *a,
                                                              long c, long nc, long oy0,
                                                              long oy1, long kh, long kw,
                                                              long sy, long sx, long dy) {
    long wo = a->wo, T = kh * kw, G = (kw + 3) / 4, nslots = (kh - 1) * dy + 1;
    long nq = (wo - 1) * sx + 4 * (G - 1) + 1, wo16 = (wo + 15) / 16 * 16;
    long st = sx == 2 || sx == 4 ? sx : 1; /* the quads read start at multiples of st */
    uint8_t *ring = (uint8_t *)a->rows, *zero = ring + nslots * nq * 64;
    uint8_t *brow = zero + nq * 64;
    float *acc = (float *)(brow + ((nq + 3) * CV16 + 63) / 64 * 64);
    float *R = acc + wo16 * CV16;
    int8_t *ob = (int8_t *)R;
    memset(zero, 0x80, (size_t)(nq * 64));
    long held[nslots];
    for (long s = 0; s < nslots; s++) held[s] = LONG_MIN;
    /* the group's constants, made by the tactic (a->qw, qstart, qmq): the weights as dwords
     * of 4 taps, -128 x the weights' sum; the bias added to it on the direct path */
    __mmask16 kc = nc >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << nc) - 1);
    __m512i W[kh * G];
    for (long t = 0; t < kh * G; t++) W[t] = _mm512_maskz_loadu_epi32(kc, a->qw + t * a->qn + c);
    float lo = 0.0f, hi = 0.0f;
    double mult[CV16] = {0};
    int fast = a->okind == EI_S8 && !a->z &&
               qfast_bounds(a->act, a->p0, a->p1, a->oscale, &lo, &hi);
    for (long ci = 0; ci < nc; ci++) {
        double b = a->bias ? (double)a->bias[c + ci] : 0.0, m = a->mult[c + ci];
        float q = a->qmq[c + ci]; /* float32(m / os), as qepi_of */
        fast &= (double)T * 16384.0 + (b < 0 ? -b : b) < 16777216.0 && m >= 1e-37 &&
                m <= 1e30 && q >= 1e-30f && q <= 1e30f;
        mult[ci] = m;
    }
    __m512i v0 = _mm512_maskz_loadu_epi32(kc, a->qstart + c);
    if (fast && a->bias) v0 = _mm512_add_epi32(v0, _mm512_maskz_loadu_epi32(kc, a->bias + c));
    const __m512 mq = _mm512_maskz_loadu_ps(kc, a->qmq + c);
    qepi e[CV16], el = {.os = a->oscale, .p0 = a->p0, .p1 = a->p1, .act = a->act};
    if (!fast)
        for (long ci = 0; ci < nc; ci++) e[ci] = qepi_of(a, c + ci);
    const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
    for (long oy = oy0; oy < oy1; oy++) {
        const uint8_t *rp[kh];
        for (long ky = 0; ky < kh; ky++) {
            long iy = oy * sy - a->pt + ky * dy;
            rp[ky] = zero;
            if (iy >= 0 && iy < a->h) {
                long s = iy % nslots;
                if (held[s] != iy) {
                    qfill_quads(a, c, nc, iy, nq, st, brow, ring + s * nq * 64);
                    held[s] = iy;
                }
                rp[ky] = ring + s * nq * 64;
            }
        }
        for (long ox = 0; ox < wo; ox++) {
            __m512i v = v0;
            for (long ky = 0; ky < kh; ky++)
                for (long g = 0; g < G; g++)
                    v = _mm512_dpbusd_epi32(
                        v, _mm512_loadu_si512(rp[ky] + (ox * sx + 4 * g) / st * 64),
                        W[ky * G + g]);
            __m512 y = _mm512_cvtepi32_ps(v); /* exact: below 2^24 */
            if (fast) {
                __mmask16 near;
                __m512i q = qfast16(y, mq, vlo, vhi, &near);
                if (__builtin_expect((near & kc) != 0, 0))
                    q = qexact16(y, near & kc, q, mult, &el);
                _mm_storeu_si128((__m128i *)(ob + ox * CV16), _mm512_cvtsepi32_epi8(q));
            } else {
                _mm512_storeu_ps(acc + ox * CV16, y);
            }
        }
        if (fast) {
            for (long ox = 0; ox < wo; ox += 16) {
                long m = wo - ox < 16 ? wo - ox : 16;
                __mmask16 k = m == 16 ? (__mmask16)0xffff : (__mmask16)((1u << m) - 1);
                __m128i r[16];
                for (long j = 0; j < 16; j++)
                    r[j] = j < m ? _mm_loadu_si128((const __m128i *)(ob + (ox + j) * CV16))
                                 : _mm_setzero_si128();
                transpose16b(r);
                for (long ci = 0; ci < nc; ci++)
                    _mm_mask_storeu_epi8((int8_t *)a->out + (c + ci) * a->ocs + oy * wo + ox, k,
                                         r[ci]);
            }
            continue;
        }
        for (long ox = 0; ox < wo; ox += 8) {
            for (long h = 0; h < 2; h++) {
                v8 r[8];
                for (long j = 0; j < 8; j++)
                    r[j] = ox + j < wo ? load8(acc + (ox + j) * CV16 + 8 * h) : (v8){0};
                transpose8(r);
                for (long ci = 0; ci < 8; ci++) store8(R + (8 * h + ci) * wo16 + ox, r[ci]);
            }
        }
        for (long ci = 0; ci < nc; ci++) qepi_apply(&e[ci], R + ci * wo16, oy * wo, wo);
    }
}

#define QDW_GROUP16V(KH, KW, SY, SX, DY) qdw_group16v(a, c, nc, oy0, oy1, KH, KW, SY, SX, DY)

#if defined(__AVX512DQ__)
/* Vectors along output rows with VNNI (dy = dx = 1, kw <= 8, strides 1 or 2): one channel at
 * a time straight from its int8 NCHW plane (no layout pass, no transposes), 16 int32
 * accumulators a vector: 16 columns of an output row, or where the output is at most 8 wide
 * two rows of it (columns 0 .. 7 of rows o and o + 1: MobileNetV2's 7 x 7 planes fill 14 of
 * 16 lanes, not 7); 4 vectors a pass, which share their input rows' loads. An input row's
 * 16 s + kw - 1 bytes from column ox0 * s - pl are one masked load (columns outside the input
 * masked off; two rows' 32 bytes each for pairs), offset to unsigned (x ^ 0x80: padding and
 * rows outside the input read as 0x80, zero after the offset), then picked into windows:
 * lane l's dword holds the bytes of columns l * s + 4 g .. + 3 (vpermb; without VBMI a dword
 * permute and an in-lane byte shuffle), so that taps 4 g .. 4 g + 3 of a kernel row are one
 * vpdpbusd with the channel's weight dword broadcast (a->qw, zero past kw; a->qstart = -128 x
 * the weights' sum undoes the offset). The accumulators (exact int32 below 2^24, so exact as
 * floats) go through the direct int8 epilogue in registers and a masked store to the output
 * rows; other outputs through qepi_apply, 16 (or 2 x 8) values at a time.
 *
 * The direct epilogue (QNEAR): q = float32(acc * mq), rounded to int32 (nearest even, as
 * rint), the lanes near a half redone exactly (qexact16), then narrowed with saturation to
 * [-128, 127] and clamped to the activation's bounds as bytes: rint(clamp(q, lo, hi)) =
 * clamp(rint(q), rint(lo), rint(hi)) (rint is monotonic), so this is qfast16's integer
 * where lo and hi are not within QNEAR of a half themselves (else a clamped lane is "near"
 * there) and |q| < 2^31 (mq <= 64); other channels take qfast16 as it is. */
#define QDW_ROWS 1
#define QNV 4 /* accumulator vectors a pass */

/* the window permutes of stride s, taps 4 g .. 4 g + 3, u output rows a vector (see qwin) */
static inline __m512i qwin_index(long s, long g, long u) {
#ifdef __AVX512VBMI__
    uint8_t b[64];
    for (long l = 0; l < 16; l++) {
        long base = u == 2 && l >= 8 ? 32 + (l - 8) * s : l * s; /* pairs: row 2 at byte 32 */
        for (long k = 0; k < 4; k++) b[4 * l + k] = (uint8_t)(base + 4 * g + k);
    }
    return _mm512_loadu_si512(b);
#else
    /* 128-bit lane i (columns 4 i .. 4 i + 3) gets the dwords from s i + g on */
    int d[16];
    for (long i = 0; i < 4; i++) {
        long base = u == 2 && i >= 2 ? 8 + s * (i - 2) : s * i;
        for (long k = 0; k < 4; k++) d[4 * i + k] = (int)(base + g + k);
    }
    return _mm512_loadu_si512(d);
#endif
}

/* lane l: the dword of bytes l * s + 4 g .. + 3 of t (idx: qwin_index(s, g, u); sh: the
 * in-lane byte shuffle of stride s, used without VBMI) */
static inline __attribute__((always_inline)) __m512i qwin(__m512i t, __m512i idx, __m512i sh) {
#ifdef __AVX512VBMI__
    (void)sh;
    return _mm512_permutexvar_epi8(idx, t);
#else
    return _mm512_shuffle_epi8(_mm512_permutexvar_epi32(idx, t), sh);
#endif
}

/* the lanes l (of 64) with lo <= l < hi */
static inline __mmask64 qlanes64(long lo, long hi) {
    if (lo < 0) lo = 0;
    if (hi > 64) hi = 64;
    if (hi <= lo) return 0;
    __mmask64 top = hi == 64 ? ~(__mmask64)0 : ((__mmask64)1 << hi) - 1;
    return top & ~(((__mmask64)1 << lo) - 1);
}

/* whether v lies within QNEAR of a half */
static int qnear_half(float v) {
    float d = v - __builtin_rintf(v);
    return d > QNEAR || d < -QNEAR;
}

/* float32(acc) * mq rounded to int32 (nearest even) */
static inline __attribute__((always_inline)) __m512i qround16(__m512i acc, __m512 mq) {
    return _mm512_cvt_roundps_epi32(_mm512_mul_ps(_mm512_cvtepi32_ps(acc), mq),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

/* vector v's (lane v's) bytes to output row o (n bytes; pairs: 1 or 2 rows of wo) */
#define QDW_STORE_LANE(V, R)                                                                   \
    do {                                                                                       \
        long o = oy + (V) * u;                                                                 \
        if (o >= oy1) break;                                                                   \
        long len = u == 2 ? (o + 1 < oy1 ? 2 * wo : wo) : n;                                   \
        _mm_mask_storeu_epi8(oc + o * wo + ox0, (__mmask16)((1u << len) - 1), (R));            \
    } while (0)

/* The QNV (4) accumulator vectors of a pass of a proved channel (mode 3) to int8: rounded to
 * int32, packed with saturation (vpackssdw, vpacksswb: 128-bit lane l holds dword l of each
 * vector), the 4 x 4 dwords transposed (lane v = vector v's 16 bytes), clamped to the
 * channel's bounds (lo, hi bytes) once for all, lane v stored to its row (or 2 rows) */
#if QNV != 4
#error "qdw_store_proved packs 4 vectors"
#endif
static inline __attribute__((always_inline)) void qdw_store_proved(
    __m512i a0, __m512i a1, __m512i a2, __m512i a3, __m512 mq, __m512i lo, __m512i hi,
    int8_t *oc, long oy, long oy1, long ox0, long wo, long n, long u, __m512i pack512) {
    __m512i b = _mm512_packs_epi16(_mm512_packs_epi32(qround16(a0, mq), qround16(a1, mq)),
                                   _mm512_packs_epi32(qround16(a2, mq), qround16(a3, mq)));
    b = _mm512_permutexvar_epi32(
        _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), b);
    b = _mm512_min_epi8(_mm512_max_epi8(b, lo), hi);
    if (u == 2) b = _mm512_shuffle_epi8(b, pack512);
    QDW_STORE_LANE(0, _mm512_castsi512_si128(b));
    QDW_STORE_LANE(1, _mm512_extracti32x4_epi32(b, 1));
    QDW_STORE_LANE(2, _mm512_extracti32x4_epi32(b, 2));
    QDW_STORE_LANE(3, _mm512_extracti32x4_epi32(b, 3));
}

/* qdw_rows for two output rows a vector (outputs at most 8 wide): the checked epilogue for
 * every channel (measured faster there than qdw_rows' planes, 7 x 7, one thread) */
static inline __attribute__((always_inline)) void qdw_rows_pairs(
    const conv_int8_dw_args *a, long c0, long c1, long oy0, long oy1, long kh, long kw, long sy,
    long sx, long u) {
    long G = (kw + 3) / 4, T = kh * kw, wo = a->wo, w = a->w, h = a->h;
    long nj = kh + (QNV - 1) * u * sy; /* input rows (or pairs of rows) of a pass */
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    const __m512i sh = _mm512_broadcast_i32x4(
        sx == 1 ? _mm_setr_epi8(0, 1, 2, 3, 1, 2, 3, 4, 2, 3, 4, 5, 3, 4, 5, 6)
                : _mm_setr_epi8(0, 1, 2, 3, 2, 3, 4, 5, 4, 5, 6, 7, 6, 7, 8, 9));
    __m512i idx[2];
    for (long g = 0; g < G; g++) idx[g] = qwin_index(sx, g, u);
    /* pairs: rows o, o + 1 (lanes 0 .. wo - 1, 8 .. 8 + wo - 1) to 2 wo contiguous bytes */
    uint8_t pk[16];
    for (long l = 0; l < 16; l++) pk[l] = (uint8_t)(l < wo ? l : 8 + l - wo);
    const __m128i pack = _mm_loadu_si128((const __m128i *)pk);
    float lo = 0.0f, hi = 0.0f;
    int layer_fast = a->okind == EI_S8 && !a->z &&
                     qfast_bounds(a->act, a->p0, a->p1, a->oscale, &lo, &hi);
    int bytes_ok = layer_fast && !qnear_half(lo) && !qnear_half(hi);
    const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
    const __m128i blo = _mm_set1_epi8((char)(int)__builtin_rintf(lo));
    const __m128i bhi = _mm_set1_epi8((char)(int)__builtin_rintf(hi));
    qepi el = {.os = a->oscale, .p0 = a->p0, .p1 = a->p1, .act = a->act};
    for (long c = c0; c < c1; c++) {
        const int8_t *xc = (const int8_t *)a->x + c * a->xcs;
        int8_t *oc = (int8_t *)a->out + c * a->ocs;
        double b = a->bias ? (double)a->bias[c] : 0.0, m = a->mult[c];
        float q = a->qmq[c];
        /* 2: the byte clamp; 1: qfast16; 0: qepi_apply (see qfast_ok) */
        int mode = layer_fast && (double)T * 16384.0 + (b < 0 ? -b : b) < 16777216.0 &&
                   m >= 1e-37 && m <= 1e30 && q >= 1e-30f && q <= 1e30f;
        if (mode && bytes_ok && q <= 64.0f) mode = 2;
        qepi e;
        if (!mode) e = qepi_of(a, c);
        double mult[16];
        for (long k = 0; k < 16; k++) mult[k] = m;
        __m512i W[kh * G];
        for (long t = 0; t < kh * G; t++) W[t] = _mm512_set1_epi32(a->qw[t * a->qn + c]);
        const __m512i v0 = _mm512_set1_epi32(a->qstart[c] + (mode && a->bias ? a->bias[c] : 0));
        const __m512 mq = _mm512_set1_ps(q);
        for (long oy = oy0; oy < oy1; oy += QNV * u) {
            long iy0 = oy * sy - a->pt;
            for (long ox0 = 0; ox0 < wo; ox0 += 16) {
                long col = ox0 * sx - a->pl;
                __mmask64 mrow = qlanes64(-col, w - col);
                __m512i acc[QNV];
#pragma GCC unroll 4
                for (long v = 0; v < QNV; v++) acc[v] = v0;
#pragma GCC unroll 16
                for (long j = 0; j < nj; j++) {
                    long iy = iy0 + j;
                    __m512i t;
                    if (u == 1) {
                        t = iy >= 0 && iy < h ? _mm512_maskz_loadu_epi8(mrow, xc + iy * a->xrs + col)
                                              : _mm512_setzero_si512();
                    } else {
                        __m256i r0 = _mm256_setzero_si256(), r1 = _mm256_setzero_si256();
                        if (iy >= 0 && iy < h)
                            r0 = _mm256_maskz_loadu_epi8((__mmask32)mrow, xc + iy * a->xrs + col);
                        if (iy + sy >= 0 && iy + sy < h)
                            r1 = _mm256_maskz_loadu_epi8((__mmask32)mrow,
                                                         xc + (iy + sy) * a->xrs + col);
                        t = _mm512_inserti64x4(_mm512_castsi256_si512(r0), r1, 1);
                    }
                    t = _mm512_xor_si512(t, flip);
                    __m512i tw[2];
                    for (long g = 0; g < G; g++) tw[g] = qwin(t, idx[g], sh);
#pragma GCC unroll 4
                    for (long v = 0; v < QNV; v++) {
                        long ky = j - v * u * sy;
                        if (ky < 0 || ky >= kh) continue;
                        for (long g = 0; g < G; g++)
                            acc[v] = _mm512_dpbusd_epi32(acc[v], tw[g], W[ky * G + g]);
                    }
                }
                long n = wo - ox0 < 16 ? wo - ox0 : 16;
#pragma GCC unroll 4
                for (long v = 0; v < QNV; v++) {
                    long o = oy + v * u; /* the vector's (first) output row */
                    if (o >= oy1) break;
                    long two = u == 2 && o + 1 < oy1;
                    __mmask16 mo = (__mmask16)((1u << n) - 1);
                    if (two) mo |= (__mmask16)(mo << 8);
                    __m512 y = _mm512_cvtepi32_ps(acc[v]); /* exact: below 2^24 */
                    long i = o * wo + ox0;
                    if (!mode) {
                        float buf[16];
                        _mm512_storeu_ps(buf, y);
                        qepi_apply(&e, buf, i, n);
                        if (two) qepi_apply(&e, buf + 8, i + wo, n);
                        continue;
                    }
                    __mmask16 near;
                    __m512i qv;
                    if (mode == 2) {
                        __m512 f = _mm512_mul_ps(y, mq);
                        __m512 d = _mm512_reduce_ps(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                        near = _mm512_cmp_ps_mask(_mm512_abs_ps(d), _mm512_set1_ps(QNEAR),
                                                  _CMP_GT_OQ);
                        qv = _mm512_cvt_roundps_epi32(f, _MM_FROUND_TO_NEAREST_INT |
                                                             _MM_FROUND_NO_EXC);
                    } else {
                        qv = qfast16(y, mq, vlo, vhi, &near);
                    }
                    if (__builtin_expect((near & mo) != 0, 0))
                        qv = qexact16(y, near & mo, qv, mult, &el);
                    __m128i r = _mm512_cvtsepi32_epi8(qv);
                    if (mode == 2) r = _mm_min_epi8(_mm_max_epi8(r, blo), bhi);
                    if (u == 2) {
                        r = _mm_shuffle_epi8(r, pack);
                        mo = (__mmask16)((1u << (two ? 2 * wo : wo)) - 1);
                    }
                    _mm_mask_storeu_epi8(oc + i, mo, r);
                }
            }
        }
    }
}

/* qdw_rows' byte permutes, made once a call: the windows of stride sx (qwin_index, qwin),
 * the pairs' packing (rows o, o + 1: lanes 0 .. wo - 1, 8 .. 8 + wo - 1 to 2 wo contiguous
 * bytes, in each 128-bit lane) */
typedef struct {
    __m512i sh, idx[2], pack;
} qdw_perm;

static inline qdw_perm qdw_perm_of(long G, long sx, long u, long wo) {
    qdw_perm k;
    k.sh = _mm512_broadcast_i32x4(
        sx == 1 ? _mm_setr_epi8(0, 1, 2, 3, 1, 2, 3, 4, 2, 3, 4, 5, 3, 4, 5, 6)
                : _mm_setr_epi8(0, 1, 2, 3, 2, 3, 4, 5, 4, 5, 6, 7, 6, 7, 8, 9));
    k.idx[0] = k.idx[1] = _mm512_setzero_si512();
    for (long g = 0; g < G && g < 2; g++) k.idx[g] = qwin_index(sx, g, u);
    uint8_t pk[16];
    for (long l = 0; l < 16; l++) pk[l] = (uint8_t)(l < wo ? l : 8 + l - wo);
    k.pack = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)pk));
    return k;
}

/* qdw_rows' output rows [oy0, oy1) of one channel (xc -> oc); MODE: the channel's epilogue
 * (see qdw_rows), a constant where inlined so that each loop keeps only its own values in
 * registers */
static inline __attribute__((always_inline)) void qdw_plane(
    const conv_int8_dw_args *a, const int8_t *xc, int8_t *oc, long oy0, long oy1, long kh,
    long kw, long sy, long sx, long u, int mode, const __m512i *W, __m512i v0, __m512 mq,
    __m512 vlo, __m512 vhi, __m128i clo, __m128i chi, const qepi *pe, const qepi *pel,
    const double *mult, const qdw_perm *k) {
    long G = (kw + 3) / 4, wo = a->wo, w = a->w, h = a->h;
    long nj = kh + (QNV - 1) * u * sy; /* input rows (or pairs of rows) of a pass */
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    const __m512i sh = k->sh, idx[2] = {k->idx[0], k->idx[1]};
    const __m128i pack = _mm512_castsi512_si128(k->pack);
    const __m512i pack512 = k->pack;
    const __m512i cb0 = _mm512_broadcast_i32x4(clo), cb1 = _mm512_broadcast_i32x4(chi);
    for (long oy = oy0; oy < oy1; oy += QNV * u) {
        long iy0 = oy * sy - a->pt;
        for (long ox0 = 0; ox0 < wo; ox0 += 16) {
            long col = ox0 * sx - a->pl;
            __mmask64 mrow = qlanes64(-col, w - col);
            __m512i acc[QNV];
#pragma GCC unroll 4
            for (long v = 0; v < QNV; v++) acc[v] = v0;
#pragma GCC unroll 16
            for (long j = 0; j < nj; j++) {
                long iy = iy0 + j;
                __m512i t;
                if (u == 1) {
                    t = iy >= 0 && iy < h ? _mm512_maskz_loadu_epi8(mrow, xc + iy * a->xrs + col)
                                          : _mm512_setzero_si512();
                } else {
                    __m256i r0 = _mm256_setzero_si256(), r1 = _mm256_setzero_si256();
                    if (iy >= 0 && iy < h)
                        r0 = _mm256_maskz_loadu_epi8((__mmask32)mrow, xc + iy * a->xrs + col);
                    if (iy + sy >= 0 && iy + sy < h)
                        r1 = _mm256_maskz_loadu_epi8((__mmask32)mrow,
                                                     xc + (iy + sy) * a->xrs + col);
                    t = _mm512_inserti64x4(_mm512_castsi256_si512(r0), r1, 1);
                }
                t = _mm512_xor_si512(t, flip);
                __m512i tw[2];
                for (long g = 0; g < G; g++) tw[g] = qwin(t, idx[g], sh);
#pragma GCC unroll 4
                for (long v = 0; v < QNV; v++) {
                    long ky = j - v * u * sy;
                    if (ky < 0 || ky >= kh) continue;
                    for (long g = 0; g < G; g++)
                        acc[v] = _mm512_dpbusd_epi32(acc[v], tw[g], W[ky * G + g]);
                }
            }
            long n = wo - ox0 < 16 ? wo - ox0 : 16;
            if (mode == 3) { /* proved: the QNV vectors requantized together */
                qdw_store_proved(acc[0], acc[1], acc[2], acc[3], mq, cb0, cb1, oc, oy, oy1,
                                 ox0, wo, n, u, pack512);
                continue;
            }
#pragma GCC unroll 4
            for (long v = 0; v < QNV; v++) {
                long o = oy + v * u; /* the vector's (first) output row */
                if (o >= oy1) break;
                long two = u == 2 && o + 1 < oy1;
                __mmask16 mo = (__mmask16)((1u << n) - 1);
                if (two) mo |= (__mmask16)(mo << 8);
                __m512 y = _mm512_cvtepi32_ps(acc[v]); /* exact: below 2^24 */
                long i = o * wo + ox0;
                if (!mode) {
                    float buf[16];
                    _mm512_storeu_ps(buf, y);
                    qepi_apply(pe, buf, i, n);
                    if (two) qepi_apply(pe, buf + 8, i + wo, n);
                    continue;
                }
                __mmask16 near;
                __m512i qv;
                if (mode == 2) {
                    __m512 f = _mm512_mul_ps(y, mq);
                    __m512 d = _mm512_reduce_ps(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                    near = _mm512_cmp_ps_mask(_mm512_abs_ps(d), _mm512_set1_ps(QNEAR),
                                              _CMP_GT_OQ);
                    qv = _mm512_cvt_roundps_epi32(f, _MM_FROUND_TO_NEAREST_INT |
                                                         _MM_FROUND_NO_EXC);
                } else {
                    qv = qfast16(y, mq, vlo, vhi, &near);
                }
                if (__builtin_expect((near & mo) != 0, 0))
                    qv = qexact16(y, near & mo, qv, mult, pel);
                __m128i r = _mm512_cvtsepi32_epi8(qv);
                if (mode == 2) r = _mm_min_epi8(_mm_max_epi8(r, clo), chi);
                if (u == 2) {
                    r = _mm_shuffle_epi8(r, pack);
                    mo = (__mmask16)((1u << (two ? 2 * wo : wo)) - 1);
                }
                _mm_mask_storeu_epi8(oc + i, mo, r);
            }
        }
    }
}

static inline __attribute__((always_inline)) void qdw_rows(const conv_int8_dw_args *a, long c0,
                                                          long c1, long oy0, long oy1, long kh,
                                                          long kw, long sy, long sx, long u) {
    if (u == 2) {
        qdw_rows_pairs(a, c0, c1, oy0, oy1, kh, kw, sy, sx, u);
        return;
    }
    long G = (kw + 3) / 4, T = kh * kw;
    const qdw_perm perm = qdw_perm_of(G, sx, u, a->wo);
    float lo = 0.0f, hi = 0.0f;
    int layer_fast = a->okind == EI_S8 && !a->z &&
                     qfast_bounds(a->act, a->p0, a->p1, a->oscale, &lo, &hi);
    int bytes_ok = layer_fast && !qnear_half(lo) && !qnear_half(hi);
    const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
    const __m128i blo = _mm_set1_epi8((char)(int)__builtin_rintf(lo));
    const __m128i bhi = _mm_set1_epi8((char)(int)__builtin_rintf(hi));
    qepi el = {.os = a->oscale, .p0 = a->p0, .p1 = a->p1, .act = a->act};
    for (long c = c0; c < c1; c++) {
        const int8_t *xc = (const int8_t *)a->x + c * a->xcs;
        int8_t *oc = (int8_t *)a->out + c * a->ocs;
        double b = a->bias ? (double)a->bias[c] : 0.0, m = a->mult[c];
        float q = a->qmq[c];
        /* 3: proved (QPROVED), the channel's byte clamp and no check; 2: the byte clamp;
         * 1: qfast16; 0: qepi_apply (see qfast_ok) */
        int mode = layer_fast && (double)T * 16384.0 + (b < 0 ? -b : b) < 16777216.0 &&
                   m >= 1e-37 && m <= 1e30 && q >= 1e-30f && q <= 1e30f;
        if (mode && bytes_ok && q <= 64.0f) mode = 2;
        float pmq, plo = 0.0f, phi = 0.0f;
        if (qproved(a, c, &pmq, &plo, &phi)) {
            mode = 3;
            q = pmq;
        }
        const __m128i clo = mode == 3 ? _mm_set1_epi8((char)(int)plo) : blo;
        const __m128i chi = mode == 3 ? _mm_set1_epi8((char)(int)phi) : bhi;
        qepi e;
        const qepi *pe = &el; /* the general path's (mode 0) epilogue */
        if (!mode) {
            e = qepi_of(a, c);
            pe = &e;
        }
        double mult[16];
        if (mode == 1 || mode == 2)
            for (long k = 0; k < 16; k++) mult[k] = m;
        __m512i W[kh * G];
        for (long t = 0; t < kh * G; t++) W[t] = _mm512_set1_epi32(a->qw[t * a->qn + c]);
        const __m512i v0 = _mm512_set1_epi32(a->qstart[c] + (mode && a->bias ? a->bias[c] : 0));
        const __m512 mq = _mm512_set1_ps(q);
        if (mode == 3)
            qdw_plane(a, xc, oc, oy0, oy1, kh, kw, sy, sx, u, 3, W, v0, mq, vlo, vhi, clo, chi, pe,
                      &el, mult, &perm);
        else
            qdw_plane(a, xc, oc, oy0, oy1, kh, kw, sy, sx, u, mode, W, v0, mq, vlo, vhi, clo, chi,
                      pe, &el, mult, &perm);
    }
}

#define QDW_ROWS_CALL(KH, KW, SY, SX, U) qdw_rows(a, a->c0, a->c1, oy0, oy1, KH, KW, SY, SX, U)
#endif
#endif
#endif

/* 1 where a->grouped == 2 takes the stride-1 rows path (qdw_s1), else 0 */
long conv_int8_dw_s1(void) {
#ifdef QS2
    return 1;
#else
    return 0;
#endif
}

/* channels per group of the grouped path (the tactic aligns its chunks to 16) */
long conv_int8_dw_group(void) {
#ifdef QEPI16
    return CV16;
#else
    return CV;
#endif
}

#define QDW_CHANNEL(KH, KW, SX, DY, DX)                                                        \
    qdw_channel(xc, a->xrs, a->h, a->w, a->pt, a->pl, a->sy, SX, KH, KW, DY, DX, a->wq,       \
                a->rows, wc, oy0, oy1, a->wo, &e)
#define QDW_GROUP(KH, KW, SY, SX, DY, DX)                                                      \
    qdw_group(a, c, nc, oy0, oy1, a->rows, KH, KW, SY, SX, DY, DX)

/* Channels [c0, c1) of one image; by groups of CV channels when a->grouped (buffer: see
 * cpu_qdepthwise.py), else one channel at a time, row by row. */
void conv_int8_dw_f32(const conv_int8_dw_args *a) {
    long kh = a->kh, kw = a->kw, sx = a->sx, dy = a->dy, dx = a->dx;
    long unit = dy == 1 && dx == 1;
    long oy0 = a->oy0 > 0 ? a->oy0 : 0, oy1 = a->oy1 > 0 && a->oy1 < a->ho ? a->oy1 : a->ho;
#ifdef QDW_ROWS
    /* outputs 9 to 16 wide at stride 1 fill 9 to 16 lanes a row: there the 16-channel
     * VNNI path below was measured 4-10 % faster (MobileNetV2's 14 x 14 layers, one thread,
     * under load) */
    int rows = !(a->grouped && a->wo > 8 && a->wo <= 16 && sx == 1 && a->sy == 1);
    if (rows && unit && kw <= 8 && sx <= 2 && a->sy <= 2) {
        if (a->wo <= 8) { /* two output rows a vector */
            if (kh == 3 && kw == 3 && a->sy == 1 && sx == 1)
                QDW_ROWS_CALL(3, 3, 1, 1, 2);
            else if (kh == 3 && kw == 3 && a->sy == 2 && sx == 2)
                QDW_ROWS_CALL(3, 3, 2, 2, 2);
            else
                QDW_ROWS_CALL(kh, kw, a->sy, sx, 2);
        } else if (kh == 3 && kw == 3 && a->sy == 1 && sx == 1) {
            QDW_ROWS_CALL(3, 3, 1, 1, 1);
        } else if (kh == 3 && kw == 3 && a->sy == 2 && sx == 2) {
            QDW_ROWS_CALL(3, 3, 2, 2, 1);
        } else if (kh == 5 && kw == 5 && a->sy == 1 && sx == 1) {
            QDW_ROWS_CALL(5, 5, 1, 1, 1);
        } else if (kh == 5 && kw == 5 && a->sy == 2 && sx == 2) {
            QDW_ROWS_CALL(5, 5, 2, 2, 1);
        } else {
            QDW_ROWS_CALL(kh, kw, a->sy, sx, 1);
        }
        return;
    }
#endif
#ifdef QS2
    if (qp3_ok(a)) {
        qdw_p3(a, oy0, oy1);
        return;
    }
    if (a->grouped == 2 && sx == 1 && a->sy == 1 && unit && kw <= 8 && a->wo <= 8 * QS2_MAXV) {
        if (kh == 3 && kw == 3)
            qdw_s1(a, oy0, oy1, 3, 3, 1);
        else
            qdw_s1(a, oy0, oy1, kh, kw, 0);
        return;
    }
    if (sx == 2 && unit && kw <= 8 && a->w >= 16 && a->wo <= 8 * QS2_MAXV) {
        if (kh == 3 && kw == 3 && a->sy == 2)
            qdw_s2(a, oy0, oy1, 3, 3, 2, 1);
        else
            qdw_s2(a, oy0, oy1, kh, kw, a->sy, 0);
        return;
    }
#endif
#ifdef QEPI16
    if (a->grouped == 1) {
        for (long c = a->c0; c < a->c1; c += CV16) {
            long nc = a->c1 - c < CV16 ? a->c1 - c : CV16;
#ifdef QDW_VNNI
            if (dx == 1) {
                if (unit && kh == 3 && kw == 3 && a->sy == 1 && sx == 1)
                    QDW_GROUP16V(3, 3, 1, 1, 1);
                else if (unit && kh == 3 && kw == 3 && a->sy == 2 && sx == 2)
                    QDW_GROUP16V(3, 3, 2, 2, 1);
                else if (unit && kh == 5 && kw == 5 && a->sy == 1 && sx == 1)
                    QDW_GROUP16V(5, 5, 1, 1, 1);
                else if (unit && kh == 5 && kw == 5 && a->sy == 2 && sx == 2)
                    QDW_GROUP16V(5, 5, 2, 2, 1);
                else
                    QDW_GROUP16V(kh, kw, a->sy, sx, dy);
                continue;
            }
#endif
            if (unit && kh == 3 && kw == 3 && a->sy == 1 && sx == 1)
                QDW_GROUP16(3, 3, 1, 1, 1, 1);
            else if (unit && kh == 3 && kw == 3 && a->sy == 2 && sx == 2)
                QDW_GROUP16(3, 3, 2, 2, 1, 1);
            else if (unit && kh == 5 && kw == 5 && a->sy == 1 && sx == 1)
                QDW_GROUP16(5, 5, 1, 1, 1, 1);
            else if (unit && kh == 5 && kw == 5 && a->sy == 2 && sx == 2)
                QDW_GROUP16(5, 5, 2, 2, 1, 1);
            else
                QDW_GROUP16(kh, kw, a->sy, sx, dy, dx);
        }
        return;
    }
#endif
    if (a->grouped == 1) {
        for (long c = a->c0; c < a->c1; c += CV) {
            long nc = a->c1 - c < CV ? a->c1 - c : CV;
            if (unit && kh == 3 && kw == 3 && a->sy == 1 && sx == 1)
                QDW_GROUP(3, 3, 1, 1, 1, 1);
            else if (unit && kh == 3 && kw == 3 && a->sy == 2 && sx == 2)
                QDW_GROUP(3, 3, 2, 2, 1, 1);
            else if (unit && kh == 5 && kw == 5 && a->sy == 1 && sx == 1)
                QDW_GROUP(5, 5, 1, 1, 1, 1);
            else if (unit && kh == 5 && kw == 5 && a->sy == 2 && sx == 2)
                QDW_GROUP(5, 5, 2, 2, 1, 1);
            else
                QDW_GROUP(kh, kw, a->sy, sx, dy, dx);
        }
        return;
    }
    long slen = sx * a->wq;
    memset(a->rows + ((kh - 1) * dy + 1) * slen, 0, (size_t)slen * sizeof(float));
    for (long c = a->c0; c < a->c1; c++) {
        const int8_t *xc = (const int8_t *)a->x + c * a->xcs;
        const float *wc = a->wts + c * kh * kw;
        qepi e = qepi_of(a, c);
        if (unit && kh == 3 && kw == 3 && sx == 1)
            QDW_CHANNEL(3, 3, 1, 1, 1);
        else if (unit && kh == 3 && kw == 3 && sx == 2)
            QDW_CHANNEL(3, 3, 2, 1, 1);
        else if (unit && kh == 5 && kw == 5 && sx == 1)
            QDW_CHANNEL(5, 5, 1, 1, 1);
        else if (unit && kh == 5 && kw == 5 && sx == 2)
            QDW_CHANNEL(5, 5, 2, 1, 1);
        else
            QDW_CHANNEL(kh, kw, sx, dy, dx);
    }
}

EI_TASK(conv_int8_dw)
