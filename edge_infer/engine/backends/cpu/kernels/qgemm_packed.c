/* INT8 fully connected layer (edge_infer::QGemm, ops/quantize.py qgemm) with the weights
 * packed for the vector dot products, bit for bit the reference: for each row m of X (int8 at
 * x_scale) and output n the exact int32 accumulator sum_k x[m, k] w[n, k], then
 * float32((double(acc) + bias[n]) * mult[n]) stored as fp32, fp16 or int8 (qsimd.h).
 *
 * On AVX-512 VNNI the weights are read packed, wp [n / 16][ceil(k / 4)][16][4] (16 outputs'
 * 4 consecutive k bytes side by side, zeros past n and k): one vpdpbusd multiplies 4 x bytes
 * by 16 outputs' 4 weights. It takes unsigned x, so x + 128 (x ^ 0x80) goes in and
 * wsum[n] = 128 sum_k w[n, k] comes off (int32 sums are exact: any order gives the same
 * bits). Tiles of up to 8 rows x 16 outputs. Elsewhere row dot products over the row-major w.
 *
 * Rows [r0, r1) and outputs [n0, n1) (n0 a multiple of 16) of a call: the threads' parts. */
#include "qsimd.h"

#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
#include <immintrin.h>
#define EI_QG_ROWS 8

/* rows m0 .. m0+mr-1, outputs nb * 16 .. +16: exact int32 sums into acc */
static inline __attribute__((always_inline)) void qg_tile(const qgemm_packed_s8_args *a,
                                                           long m0, long nb, int mr,
                                                           int32_t acc[EI_QG_ROWS][16]) {
    const long kq = (a->k + 3) / 4, full = a->k / 4;
    const int8_t *x = (const int8_t *)a->x + m0 * a->xrs;
    const int8_t *wp = (const int8_t *)a->wp + nb * kq * 64;
    __m512i s[EI_QG_ROWS];
    for (int r = 0; r < mr; r++) s[r] = _mm512_setzero_si512();
    for (long q = 0; q < full; q++) {
        __m512i w = _mm512_loadu_si512(wp + q * 64);
        for (int r = 0; r < mr; r++) {
            int32_t d;
            memcpy(&d, x + r * a->xrs + 4 * q, 4);
            s[r] = _mm512_dpbusd_epi32(s[r], _mm512_set1_epi32(d ^ (int32_t)0x80808080), w);
        }
    }
    if (full < kq) { /* the last 1 - 3 bytes of a row: the padding weights are zeros */
        __m512i w = _mm512_loadu_si512(wp + full * 64);
        for (int r = 0; r < mr; r++) {
            uint8_t b[4] = {0, 0, 0, 0};
            memcpy(b, x + r * a->xrs + 4 * full, (size_t)(a->k - 4 * full));
            int32_t d;
            memcpy(&d, b, 4);
            s[r] = _mm512_dpbusd_epi32(s[r], _mm512_set1_epi32(d ^ (int32_t)0x80808080), w);
        }
    }
    __m512i off = _mm512_loadu_si512(a->wsum + nb * 16);
    for (int r = 0; r < mr; r++) _mm512_storeu_si512(acc[r], _mm512_sub_epi32(s[r], off));
}

/* the epilogue of outputs [n, n + cnt) (cnt <= 16) of rows m0 .. m0+mr-1, 8 doubles a vector:
 * the scalar epilogue's operations in its order, each rounded alike */
static inline void qg_store16(const qgemm_packed_s8_args *a, long m0, int mr, long n, long cnt,
                              int32_t acc[EI_QG_ROWS][16], float rf) {
    static const long size[3] = {4, 2, 1};
    __mmask8 k0 = cnt >= 8 ? 0xff : (__mmask8)((1u << cnt) - 1);
    __mmask8 k1 = cnt >= 16 ? 0xff : cnt <= 8 ? 0 : (__mmask8)((1u << (cnt - 8)) - 1);
    __m512d m0v = _mm512_maskz_loadu_pd(k0, a->mult + n), m1v = _mm512_maskz_loadu_pd(k1, a->mult + n + 8);
    __m512d b0 = _mm512_setzero_pd(), b1 = _mm512_setzero_pd();
    if (a->bias) {
        b0 = _mm512_cvtepi32_pd(_mm256_maskz_loadu_epi32(k0, a->bias + n));
        b1 = _mm512_cvtepi32_pd(_mm256_maskz_loadu_epi32(k1, a->bias + n + 8));
    }
    for (int r = 0; r < mr; r++) {
        void *orow = (char *)a->out + (m0 + r) * a->ors * size[a->okind];
        __m256i lo = _mm256_loadu_si256((const __m256i *)acc[r]);
        __m256i hi = _mm256_loadu_si256((const __m256i *)(acc[r] + 8));
        __m256 y0 = _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_add_pd(_mm512_cvtepi32_pd(lo), b0), m0v));
        __m256 y1 = _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_add_pd(_mm512_cvtepi32_pd(hi), b1), m1v));
        store_real(orow, a->okind, n, cnt < 8 ? cnt : 8, (v8)y0, a->oscale, rf);
        if (cnt > 8) store_real(orow, a->okind, n + 8, cnt - 8, (v8)y1, a->oscale, rf);
    }
}

#else
/* the epilogue of outputs [n, n + cnt) of row m from their int32 sums */
static inline void qg_store(const qgemm_packed_s8_args *a, long m, long n, long cnt,
                            const int32_t *acc, float rf) {
    static const long size[3] = {4, 2, 1};
    void *orow = (char *)a->out + m * a->ors * size[a->okind];
    for (long j = 0; j < cnt; j += 8) {
        float y[8] = {0};
        long c = cnt - j < 8 ? cnt - j : 8;
        for (long i = 0; i < c; i++) {
            double v = (double)acc[j + i];
            if (a->bias) v += (double)a->bias[n + j + i];
            y[i] = (float)(v * a->mult[n + j + i]);
        }
        store_real(orow, a->okind, n + j, c, load8(y), a->oscale, rf);
    }
}
#endif

#if !(defined(__AVX512VNNI__) && defined(__AVX512BW__)) && defined(__AVX2__)
#include <immintrin.h>

/* the 8 int32 lanes of v summed */
static inline int32_t qg_hsum(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* AVX2 without VNNI: exact int32 sums of rows m .. m+mr-1 (mr <= 2) by outputs n .. n+cnt-1
 * over the row-major weights, 4 outputs at a time: 16 bytes of x and of each weight row
 * widened to int16 (vpmovsxbw), vpmaddwd into int32 lanes (each pair sum at most 2^15 in
 * magnitude, exact; int32 sums are exact in any order), the last k % 16 bytes scalar. */
static inline __attribute__((always_inline)) void qg_dots_avx2(const qgemm_packed_s8_args *a,
                                                               long m, int mr, long n, long cnt,
                                                               int32_t acc[2][16]) {
    const long k = a->k, k16 = k & ~15L;
    const int8_t *w = (const int8_t *)a->w + n * k;
    const int8_t *x0 = (const int8_t *)a->x + m * a->xrs, *x1 = x0 + (mr > 1 ? a->xrs : 0);
    for (long j = 0; j < cnt; j += 4) {
        const int8_t *w0 = w + j * k, *wr[4];
        for (int t = 0; t < 4; t++) wr[t] = w0 + (j + t < cnt ? t : 0) * k;
        __m256i s0[4], s1[4];
        for (int t = 0; t < 4; t++) s0[t] = s1[t] = _mm256_setzero_si256();
        for (long i = 0; i < k16; i += 16) {
            __m256i xa = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(x0 + i)));
            __m256i xb = mr > 1 ? _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(x1 + i)))
                                : xa;
            for (int t = 0; t < 4; t++) {
                __m256i wv = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wr[t] + i)));
                s0[t] = _mm256_add_epi32(s0[t], _mm256_madd_epi16(xa, wv));
                if (mr > 1) s1[t] = _mm256_add_epi32(s1[t], _mm256_madd_epi16(xb, wv));
            }
        }
        for (int t = 0; t < 4 && j + t < cnt; t++) {
            int32_t d0 = qg_hsum(s0[t]), d1 = mr > 1 ? qg_hsum(s1[t]) : 0;
            for (long i = k16; i < k; i++) {
                d0 += (int32_t)x0[i] * wr[t][i];
                if (mr > 1) d1 += (int32_t)x1[i] * wr[t][i];
            }
            acc[0][j + t] = d0;
            if (mr > 1) acc[1][j + t] = d1;
        }
    }
}
#endif

void qgemm_packed_s8_f32(const qgemm_packed_s8_args *a) {
    float rf = a->okind == EI_S8 ? (float)(1.0 / a->oscale) : 0.0f;
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
    int32_t acc[EI_QG_ROWS][16];
    for (long nb = a->n0 / 16; nb * 16 < a->n1; nb++) {
        long n = nb * 16, cnt = a->n1 - n < 16 ? a->n1 - n : 16;
        long m = a->r0;
        for (; m + EI_QG_ROWS <= a->r1; m += EI_QG_ROWS) {
            qg_tile(a, m, nb, EI_QG_ROWS, acc);
            qg_store16(a, m, EI_QG_ROWS, n, cnt, acc, rf);
        }
        for (; m < a->r1; m++) {
            qg_tile(a, m, nb, 1, acc);
            qg_store16(a, m, 1, n, cnt, acc, rf);
        }
    }
#elif defined(__AVX2__)
    int32_t acc[2][16];
    for (long n = a->n0; n < a->n1; n += 16) {
        long cnt = a->n1 - n < 16 ? a->n1 - n : 16;
        long m = a->r0;
        for (; m + 2 <= a->r1; m += 2) {
            qg_dots_avx2(a, m, 2, n, cnt, acc);
            qg_store(a, m, n, cnt, acc[0], rf);
            qg_store(a, m + 1, n, cnt, acc[1], rf);
        }
        if (m < a->r1) {
            qg_dots_avx2(a, m, 1, n, cnt, acc);
            qg_store(a, m, n, cnt, acc[0], rf);
        }
    }
#else
    const int8_t *w = (const int8_t *)a->w;
    for (long m = a->r0; m < a->r1; m++) {
        const int8_t *xr = (const int8_t *)a->x + m * a->xrs;
        for (long n = a->n0; n < a->n1; n += 16) {
            long cnt = a->n1 - n < 16 ? a->n1 - n : 16;
            int32_t acc[16];
            for (long j = 0; j < cnt; j++) {
                const int8_t *wr = w + (n + j) * a->k;
                int s = 0;
                for (long i = 0; i < a->k; i++) s += (int)xr[i] * (int)wr[i];
                acc[j] = s;
            }
            qg_store(a, m, n, cnt, acc, rf);
        }
    }
#endif
}

EI_TASK(qgemm_packed_s8)
