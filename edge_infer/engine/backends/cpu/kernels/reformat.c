/* Storage conversions of INT8 engines (edge_infer::Reformat, ops/quantize.py reformat) and
 * int8 data movement, bit for bit the reference's:
 *   int8 -> fp32 / fp16   float32(q) * float32(x_scale), then rounded to fp16 for fp16
 *   fp32 / fp16 -> int8   rint(double(x) / double(y_scale)), clipped (qsimd.h)
 *   int8 -> int8          both of the above (a rescale)
 *   fp32 <-> fp16         round to nearest even / exact
 * 8 values at a time, rows x n values with row strides (a channel slice of a concat). */
#include "qsimd.h"

static inline v8 load_kind(const void *x, long kind, long i, long n, float scale) {
    if (kind == EI_S8) return load_s8((const int8_t *)x + i, n) * scale;
    if (kind == EI_F16) return load_f16((const uint16_t *)x + i, n);
    return n == 8 ? load8((const float *)x + i) : load_fn((const float *)x + i, n);
}

void reformat_f32(const reformat_args *a) {
    static const long size[3] = {4, 2, 1};
    float rf = a->ykind == EI_S8 ? (float)(1.0 / a->yscale) : 0.0f;
    for (long row = 0; row < a->rows; row++) {
        const void *x = (const char *)a->x + row * a->xrs * size[a->xkind];
        void *y = (char *)a->y + row * a->yrs * size[a->ykind];
        for (long i = 0; i < a->n; i += 8) {
            long m = a->n - i < 8 ? a->n - i : 8;
            store_real(y, a->ykind, i, m, load_kind(x, a->xkind, i, m, a->xscale), a->yscale,
                       rf);
        }
    }
}

/* upsample_nearest_f32 (pointwise.c) on int8 planes */
void upsample_nearest_s8_f32(const upsample_nearest_s8_args *a) {
    const int8_t *x = (const int8_t *)a->x;
    int8_t *y = (int8_t *)a->y;
    long n = a->n, c = a->c, xis = a->xis, xcs = a->xcs, yis = a->yis, ycs = a->ycs;
    long h = a->h, w = a->w, fh = a->fh, fw = a->fw;
    long wo = w * fw;
    for (long p = 0; p < n * c; p++) {
        const int8_t *xp = x + (p / c) * xis + (p % c) * xcs;
        int8_t *yp = y + (p / c) * yis + (p % c) * ycs;
        for (long i = 0; i < h; i++) {
            int8_t *row = yp + i * fh * wo;
            const int8_t *src = xp + i * w;
            if (fw == 2) {
                for (long j = 0; j < w; j++) {
                    row[2 * j] = src[j];
                    row[2 * j + 1] = src[j];
                }
            } else {
                for (long j = 0; j < w; j++)
                    for (long k = 0; k < fw; k++) row[j * fw + k] = src[j];
            }
            for (long r = 1; r < fh; r++) memcpy(row + r * wo, row, (size_t)wo);
        }
    }
}

EI_TASK(reformat)
EI_TASK(upsample_nearest_s8)

/* maxpool_f32 (pointwise.c) on int8 planes, any N x C strides (channel slices of a concat);
 * a window always holds an input value (pads < kernel), so -128 stands for padding */
EI_MAXPOOL_PLANE(maxpool_plane_s8, int8_t, -128)

/* the widest input row of the row-wise pass */
#define EI_MP_ROW 1024
#define EI_MP_BUF (2 * EI_MP_ROW + 512)

#if defined(__AVX2__) && !defined(__AVX512BW__)
/* AVX2's stride 2: 32 outputs from the int16 words of lo (input bytes 0-31) and hi (32-63)
 * whose low bytes already hold the outputs (the high bytes are dropped): the low bytes as
 * 0-255 words, packed unsigned (exact), the 128-bit lanes' 64-bit halves put back in order */
static inline __m256i ei_low_bytes(__m256i lo, __m256i hi) {
    const __m256i ff = _mm256_set1_epi16(0xff);
    __m256i p = _mm256_packus_epi16(_mm256_and_si256(lo, ff), _mm256_and_si256(hi, ff));
    return _mm256_permute4x64_epi64(p, 0xd8);
}

/* a word's low byte the maximum of its two bytes */
static inline __m256i ei_pair_max(__m256i v) {
    return _mm256_max_epi8(v, _mm256_srli_epi16(v, 8));
}
#endif

/* windows of at most 8 columns, column stride 1 or 2, no column dilation, left pad <= 8:
 * each output row from its input rows' maximum, laid into a row padded with -128 (vp[c + pl]:
 * input column c), then each output's columns' maximum; on AVX-512BW stride 2 takes 64
 * outputs at a time from the even and odd bytes (the int16 words' low and high bytes), on
 * AVX2 32 (each word's two bytes' maximum, its low byte packed), and stride 1 is left to the
 * compiler's vectors */
static void maxpool_plane_s8_rows(const int8_t *xp, int8_t *yp, const maxpool_s8_args *a,
                                  long end) {
    int8_t vp[EI_MP_BUF] __attribute__((aligned(64)));
    const long h = a->h, w = a->w, wo = a->wo, pl = a->pl, kw = a->kw, sx = a->sx;
    for (long i = 0; i < a->ho; i++) {
        int8_t *y = yp + i * wo;
        long rows = 0;
        for (long t = 0; t < a->kh; t++) {
            long r = i * a->sy - a->pt + t * a->dy;
            if (r < 0 || r >= h) continue;
            const int8_t *src = xp + r * w;
            int8_t *v = vp + pl;
            if (!rows++)
                memcpy(v, src, (size_t)w);
            else
                for (long c = 0; c < w; c++) v[c] = src[c] > v[c] ? src[c] : v[c];
        }
        if (!rows) { /* a window of padding only */
            memset(y, -128, (size_t)wo);
            continue;
        }
        memset(vp, -128, (size_t)pl);
        memset(vp + pl + w, -128, (size_t)(end - pl - w));
        long j = 0;
        if (kw == 1 && sx == 1) {
            memcpy(y, vp, (size_t)wo);
            continue;
        }
#if defined(__AVX512BW__)
#define EI_EVEN(p)                                                                             \
    _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi16_epi8(_mm512_loadu_si512(p))),    \
                       _mm512_cvtepi16_epi8(_mm512_loadu_si512((p) + 64)), 1)
#define EI_ODD(p)                                                                              \
    _mm512_inserti64x4(                                                                        \
        _mm512_castsi256_si512(_mm512_cvtepi16_epi8(_mm512_srli_epi16(_mm512_loadu_si512(p), 8))), \
        _mm512_cvtepi16_epi8(_mm512_srli_epi16(_mm512_loadu_si512((p) + 64), 8)), 1)
        if (sx == 2 && (kw == 2 || kw == 3))
            for (; j < wo; j += 64) {
                const int8_t *v = vp + 2 * j;
                __m512i m = _mm512_max_epi8(EI_EVEN(v), EI_ODD(v));
                if (kw == 3) m = _mm512_max_epi8(m, EI_EVEN(v + 2));
                __mmask64 keep = wo - j >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << (wo - j)) - 1;
                _mm512_mask_storeu_epi8(y + j, keep, m);
            }
#undef EI_EVEN
#undef EI_ODD
#elif defined(__AVX2__)
        /* 32 outputs a block (at most 64 + 2 bytes read: inside end), the tail below */
        if (sx == 2 && (kw == 2 || kw == 3))
            for (; j + 32 <= wo; j += 32) {
                const int8_t *v = vp + 2 * j;
                __m256i lo = ei_pair_max(_mm256_loadu_si256((const __m256i *)v));
                __m256i hi = ei_pair_max(_mm256_loadu_si256((const __m256i *)(v + 32)));
                if (kw == 3) {
                    lo = _mm256_max_epi8(lo, _mm256_loadu_si256((const __m256i *)(v + 2)));
                    hi = _mm256_max_epi8(hi, _mm256_loadu_si256((const __m256i *)(v + 34)));
                }
                _mm256_storeu_si256((__m256i *)(y + j), ei_low_bytes(lo, hi));
            }
#endif
        for (; j < wo; j++) {
            const int8_t *v = vp + j * sx;
            int8_t m = v[0];
            for (long b = 1; b < kw; b++) m = v[b] > m ? v[b] : m;
            y[j] = m;
        }
    }
}

/* windows inside the plane (no padding), no dilation: each output row straight from its input
 * rows, no padded row between. Column stride 1 with one column (CRNN's 2 x 1 pools): the rows'
 * maximum; on AVX-512BW column stride 2 with two columns (2 x 2 stride 2): 64 outputs at a
 * time from the rows' maximum's even and odd bytes (masked loads: nothing read past a row);
 * on AVX2 32 at a time, rows of at least 32 outputs (the last block overlaps the one before). */
static int maxpool_direct_s8(const maxpool_s8_args *a) {
    long h = a->h, w = a->w, ho = a->ho, wo = a->wo, kh = a->kh, sy = a->sy;
    if (a->pt || a->pl || a->dy != 1 || a->dx != 1 || (ho - 1) * sy + kh > h) return 0;
    int vertical = a->kw == 1 && a->sx == 1 && wo == w;
#if defined(__AVX512BW__)
    int pairs = a->kw == 2 && a->sx == 2 && 2 * wo <= w;
#elif defined(__AVX2__)
    int pairs = a->kw == 2 && a->sx == 2 && 2 * wo <= w && wo >= 32;
#else
    int pairs = 0;
#endif
    if (!vertical && !pairs) return 0;
    for (long p = 0; p < a->n * a->c; p++) {
        const int8_t *xp = (const int8_t *)a->x + (p / a->c) * a->xis + (p % a->c) * a->xcs;
        int8_t *yp = (int8_t *)a->y + (p / a->c) * a->yis + (p % a->c) * a->ycs;
        for (long i = 0; i < ho; i++) {
            const int8_t *r0 = xp + i * sy * w;
            int8_t *y = yp + i * wo;
            if (vertical) {
                const int8_t *r1 = kh > 1 ? r0 + w : r0;
                for (long j = 0; j < w; j++) y[j] = r0[j] > r1[j] ? r0[j] : r1[j];
                for (long t = 2; t < kh; t++)
                    for (long j = 0; j < w; j++) y[j] = r0[t * w + j] > y[j] ? r0[t * w + j] : y[j];
                continue;
            }
#if defined(__AVX512BW__)
            for (long j = 0; j < wo; j += 64) {
                long left = 2 * (wo - j); /* input bytes this block's outputs use */
                __mmask64 lo = left >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << left) - 1;
                __mmask64 hi = left >= 128 ? ~(__mmask64)0
                               : left <= 64 ? 0
                                            : ((__mmask64)1 << (left - 64)) - 1;
                __m512i m0 = _mm512_maskz_loadu_epi8(lo, r0 + 2 * j);
                __m512i m1 = _mm512_maskz_loadu_epi8(hi, r0 + 2 * j + 64);
                for (long t = 1; t < kh; t++) {
                    m0 = _mm512_max_epi8(m0, _mm512_maskz_loadu_epi8(lo, r0 + t * w + 2 * j));
                    m1 = _mm512_max_epi8(m1, _mm512_maskz_loadu_epi8(hi, r0 + t * w + 2 * j + 64));
                }
                __m512i even = _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi16_epi8(m0)),
                                                  _mm512_cvtepi16_epi8(m1), 1);
                __m512i odd = _mm512_inserti64x4(
                    _mm512_castsi256_si512(_mm512_cvtepi16_epi8(_mm512_srli_epi16(m0, 8))),
                    _mm512_cvtepi16_epi8(_mm512_srli_epi16(m1, 8)), 1);
                __mmask64 keep = wo - j >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << (wo - j)) - 1;
                _mm512_mask_storeu_epi8(y + j, keep, _mm512_max_epi8(even, odd));
            }
#elif defined(__AVX2__)
            /* 32 outputs a block; the last block ends at the row's last output (wo >= 32),
             * rewriting some of the one before: nothing read past 2 wo <= w */
            for (long j = 0; j < wo; j += 32) {
                if (j + 32 > wo) j = wo - 32;
                const int8_t *x0 = r0 + 2 * j;
                __m256i m0 = _mm256_loadu_si256((const __m256i *)x0);
                __m256i m1 = _mm256_loadu_si256((const __m256i *)(x0 + 32));
                for (long t = 1; t < kh; t++) {
                    m0 = _mm256_max_epi8(m0, _mm256_loadu_si256((const __m256i *)(x0 + t * w)));
                    m1 = _mm256_max_epi8(m1,
                                         _mm256_loadu_si256((const __m256i *)(x0 + t * w + 32)));
                }
                _mm256_storeu_si256((__m256i *)(y + j),
                                    ei_low_bytes(ei_pair_max(m0), ei_pair_max(m1)));
            }
#endif
        }
    }
    return 1;
}

/* column stride 1 (SPPF's 5 x 5 'same' pools): each input row's running maximum over kw
 * columns, 16 outputs a vector, into hm (rows padded with -128 on the left and right), then
 * each output row the maximum of its input rows' (padding rows skipped) */
typedef int8_t ei_v16c __attribute__((vector_size(16)));
#define EI_MS_HM 65536 /* bytes of the row maxima: h x (wo rounded up to 16) */

static inline ei_v16c max16c(ei_v16c x, ei_v16c y) {
#if defined(__AVX__) /* simd.h includes immintrin.h */
    return (ei_v16c)_mm_max_epi8((__m128i)x, (__m128i)y);
#elif defined(__aarch64__)
    return vmaxq_s8(x, y);
#else
    ei_v16c m = x > y;
    return (x & m) | (y & ~m);
#endif
}

static int maxpool_cols1_s8(const maxpool_s8_args *a) {
    const long h = a->h, w = a->w, wo = a->wo, kw = a->kw, pl = a->pl;
    const long wr = (wo + 15) / 16 * 16;
    if (a->sx != 1 || a->dx != 1 || a->dy < 1 || kw > 16 || pl < 0 || pl >= kw
        || h * wr > EI_MS_HM || wr + 32 > EI_MP_BUF)
        return 0;
    int8_t hm[EI_MS_HM] __attribute__((aligned(16)));
    int8_t row[EI_MP_BUF] __attribute__((aligned(16)));
    memset(row, -128, (size_t)(wr + 32)); /* the padding columns, kept: rows go in between */
    for (long p = 0; p < a->n * a->c; p++) {
        const int8_t *xp = (const int8_t *)a->x + (p / a->c) * a->xis + (p % a->c) * a->xcs;
        int8_t *yp = (int8_t *)a->y + (p / a->c) * a->yis + (p % a->c) * a->ycs;
        for (long r = 0; r < h; r++) {
            memcpy(row + pl, xp + r * w, (size_t)w);
            for (long j = 0; j < wr; j += 16) {
                ei_v16c m;
                memcpy(&m, row + j, 16);
                for (long b = 1; b < kw; b++) {
                    ei_v16c v;
                    memcpy(&v, row + j + b, 16);
                    m = max16c(m, v);
                }
                memcpy(hm + r * wr + j, &m, 16);
            }
        }
        for (long i = 0; i < a->ho; i++) {
            int8_t *y = yp + i * wo;
            long first = i * a->sy - a->pt, r0 = first;
            long r1 = first + (a->kh - 1) * a->dy + 1;
            while (r0 < 0) r0 += a->dy; /* the first window row inside the plane */
            if (r1 > h) r1 = h;
            if (r0 >= r1) { /* a window of padding only */
                memset(y, -128, (size_t)wo);
                continue;
            }
            for (long j = 0; j < wo; j += 16) {
                ei_v16c m;
                memcpy(&m, hm + r0 * wr + j, 16);
                for (long r = r0 + a->dy; r < r1; r += a->dy) {
                    ei_v16c v;
                    memcpy(&v, hm + r * wr + j, 16);
                    m = max16c(m, v);
                }
                /* a whole vector where the plane goes on (the next row's bytes are
                 * rewritten after), the row's last bytes alone at the plane's end */
                memcpy(y + j, &m, y + j + 16 <= yp + a->ho * wo ? 16 : (size_t)(wo - j));
            }
        }
    }
    return 1;
}

void maxpool_s8_f32(const maxpool_s8_args *a) {
    long c = a->c;
    if (maxpool_direct_s8(a) || maxpool_cols1_s8(a)) return;
    /* the padded row: the last window, and stride 2's 64-output blocks (128 + 2 bytes read) */
    const long end = a->sx * ((a->wo + 63) / 64 * 64) + a->kw + 130;
    if (a->dx == 1 && a->kw <= 8 && (a->sx == 1 || a->sx == 2) && a->pl >= 0 && a->pl <= 8
        && a->w <= EI_MP_ROW && end <= EI_MP_BUF && (a->wo - 1) * a->sx + a->kw <= a->pl + a->w + 8
        && end >= a->pl + a->w) {
        for (long p = 0; p < a->n * c; p++)
            maxpool_plane_s8_rows((const int8_t *)a->x + (p / c) * a->xis + (p % c) * a->xcs,
                                  (int8_t *)a->y + (p / c) * a->yis + (p % c) * a->ycs, a, end);
        return;
    }
    for (long p = 0; p < a->n * c; p++)
        maxpool_plane_s8((const int8_t *)a->x + (p / c) * a->xis + (p % c) * a->xcs,
                         (int8_t *)a->y + (p / c) * a->yis + (p % c) * a->ycs, a->h, a->w,
                         a->ho, a->wo, a->kh, a->kw, a->sy, a->sx, a->pt, a->pl, a->dy, a->dx);
}

EI_TASK(maxpool_s8)
