/* INT8 convolutions (edge_infer::QConv, ops/quantize.py), bit for bit the reference's:
 * exact int32 accumulators of int8 products, y = float32(double(acc + B_q) * (double(x_scale)
 * * double(w_scale[oc]))), residual, activation in float32, then stored as fp32, fp16 (round
 * to nearest even) or int8 (rint(double(y) / double(out_scale)), half to even, saturated).
 *
 * Two kernels per layer, as conv_direct.c's: qconv_split lays the input out once as int32
 * "quads" (4 consecutive input channels of one pixel, one byte each) in zero-padded stride
 * phases, quantizing a float input on the way; then every (channel quad, tap) term of an
 * output position is one 32-bit read at a fixed offset (toff), and qconv_int8 runs an
 * implicit GEMM over a grid of positions (the phase grid's width; columns past the output's
 * are computed and dropped): a register tile of MR output channels x NT positions, vectors
 * along positions, each term a 4-way dot product per lane with the weight quad broadcast.
 *
 * The dot product, by what this CPU has (chosen at compile time; EI_INT8_PATH forces one):
 *   AVX-512 VNNI  vpdpbusd zmm (u8 x s8): activations biased by +128 to u8 in the layout,
 *                 the -128 * sum(w) compensation folded into the accumulator's start;
 *   AVX-VNNI      the same on ymm (or AVX-512 VL's EVEX form);
 *   AVX2          (x + k) . w by vpmaddubsw (x + k read as u8, k = -min of a strip's
 *                 bytes), then vpmaddwd with ones, the k * sum(w) taken off the start,
 *                 where no int16 pair sum can saturate (the weights' limit row: tile_shift,
 *                 two terms a vpmaddwd where it allows; or, where the weight array's sign
 *                 row asks, tiles with vectors along output channels: qconv_int8_oc's AVX2
 *                 form); else |x| . (w * sign(x)) the same
 *                 way where no weight is -128 (tile_sign), else bytes sign-extended to
 *                 int16 and vpmaddwd;
 *   aarch64 sdot  s8 x s8 by lane (Cortex-A78AE, Jetson Orin);
 *   generic C.
 * The weights ([term][coutp] quads, then the proved, sign and limit rows), term offsets and
 * layouts are the same on every path, so a recorded call replays anywhere
 * (tests/engine/backends/cpu/aarch64); the AVX-512 VNNI position tiles read a copy of the term
 * rows in blocks of MR channels ([block][term][MR], wblk) where the caller gives one: a
 * block's weights one stream, not a line (and in a model's first strip, often a page) a term.
 * An int8 output under no activation, relu or clip (and no residual or an int8 one added
 * first) is finished in float32 with an exactness guard and the double path near halves
 * (fastq below), a channel with a proved multiplier (cpu_qconv.py: tactics/qdw_requant.py's
 * proof, rows after the weights) with no guard at all, where a whole tile's channels have one
 * (tile_proved); on AVX-512 VNNI a strip's last tile computes only the 16-position vectors
 * it has (finished in registers where it is one output run: a 1x1 layer's chunk of 48
 * positions), and small deep maps (7 x 7, 14 x 14 under a 3 x 3 kernel) take tiles with
 * vectors along output channels instead (qconv_int8_oc: 7 positions x 48 channels or 6 x 64, a
 * layer's last channels a tile of the 16-channel vectors they fill), where those compute
 * less. A strided 1 x 1 kernel's layout holds only the first stride phase, the one it reads
 * (xf's EI_FIRST_PHASE bit); a layer of 1-3 input channels packs its taps' bytes into planes
 * of whole quads after the phases (pack_taps). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
/* the reference rounds every float operation (a dequantized residual's product, the hard
 * activations' multiply-add): no fused multiply-adds in this file */
#pragma GCC optimize("fp-contract=off")
#endif

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "args.h"
#include "simd.h"

#define EI_Q8_GENERIC 1
#define EI_Q8_AVX2 2
#define EI_Q8_VNNI256 3
#define EI_Q8_VNNI512 4
#define EI_Q8_SDOT 5

#ifndef EI_INT8_PATH
#if defined(__AVX512VNNI__) && defined(__AVX512BW__)
#define EI_INT8_PATH EI_Q8_VNNI512
#elif defined(__AVXVNNI__) || (defined(__AVX512VNNI__) && defined(__AVX512VL__))
#define EI_INT8_PATH EI_Q8_VNNI256
#elif defined(__AVX2__)
#define EI_INT8_PATH EI_Q8_AVX2
#elif defined(__aarch64__) && defined(__ARM_FEATURE_DOTPROD)
#define EI_INT8_PATH EI_Q8_SDOT
#else
#define EI_INT8_PATH EI_Q8_GENERIC
#endif
#endif

#if EI_INT8_PATH == EI_Q8_VNNI512
#include <immintrin.h>
#define MR 6
#define NV 4
#define VL 16
#define U8 1
#elif EI_INT8_PATH == EI_Q8_VNNI256
#include <immintrin.h>
#define MR 6
#define NV 2
#define VL 8
#define U8 1
#if defined(__AVXVNNI__)
#define DPBUSD256 _mm256_dpbusd_avx_epi32
#else
#define DPBUSD256 _mm256_dpbusd_epi32
#endif
#elif EI_INT8_PATH == EI_Q8_AVX2
#include <immintrin.h>
#define MR 6
#define NV 8 /* vectors of 8 positions, one at a time: a row's 64 outputs a cache line */
#define EI_WPACK 8192 /* int32 of a channel block's packed weights (T x MR) on the stack */
#define VL 8
#define U8 0
#elif EI_INT8_PATH == EI_Q8_SDOT
#include <arm_neon.h>
#define MR 8
#define NV 2
#define VL 4
#define U8 0
#else
#define MR 4
#define NV 2
#define VL 4
#define U8 0
#endif
#define NT (NV * VL) /* positions per tile: divides 64, the strip alignment of the callers */

/* 8 doubles, 8 64-bit masks, 8 bytes */
typedef double v8d __attribute__((vector_size(64)));
typedef long long v8l __attribute__((vector_size(64)));
typedef signed char v8c __attribute__((vector_size(8)));

#define EI_ROUND_MAGIC 6755399441055744.0 /* 1.5 * 2^52: (t + M) - M rounds |t| < 2^51 */

/* t clamped to [lo, hi] (a macro: a 64-byte vector crossing a call changes the ABI on AVX2) */
#define EI_CLAMPD(t, lo, hi)                                                                   \
    ((v8d)((((t) < (lo)) & (v8l)((v8d){0} + (lo))) | (((t) > (hi)) & (v8l)((v8d){0} + (hi)))  \
           | (~(((t) < (lo)) | ((t) > (hi))) & (v8l)(t))))

/* which path this library runs (1 generic, 2 AVX2, 3 VNNI 256, 4 VNNI 512, 5 sdot) */
long qconv_int8_path(void) { return EI_INT8_PATH; }

/* -- the layout ------------------------------------------------------------------------- */

static inline uint32_t quad(uint8_t b0, uint8_t b1, uint8_t b2, uint8_t b3) {
    return (uint32_t)b0 | (uint32_t)b1 << 8 | (uint32_t)b2 << 16 | (uint32_t)b3 << 24;
}

static inline v8i quantize8(v8 y, double inv, double s);
static inline v8c saturate8(v8i q);

#if defined(__AVX512F__) && EI_INT8_PATH != EI_Q8_GENERIC
static inline __m512i quantize16(__m512 y, float inv, double s);
#elif defined(__AVX2__) && EI_INT8_PATH != EI_Q8_GENERIC
static inline __attribute__((always_inline)) void quantize_vecs(const v8 *y, long n, int8_t *o,
                                                                float inv, double s,
                                                                const int nv);
#endif

/* n floats quantized to int8 as quantize_activation does (see quantize8, quantize16) */
static void quantize_row(const float *x, long n, int8_t *q, double inv, double s) {
    long i = 0;
#if defined(__AVX512F__) && EI_INT8_PATH != EI_Q8_GENERIC
    const float finv = (float)inv;
    if (finv > 1e-30f && finv < 1e30f) /* quantize16's error bound holds */
        for (; i + 16 <= n; i += 16)
            _mm_storeu_si128((__m128i *)(q + i),
                             _mm512_cvtsepi32_epi8(quantize16(_mm512_loadu_ps(x + i), finv, s)));
#elif defined(__AVX2__) && EI_INT8_PATH != EI_Q8_GENERIC
    const float finv = (float)inv;
    if (finv > 1e-30f && finv < 1e30f) { /* quantize_vecs's error bound holds */
        /* loaded as whole vectors: a memcpy into y compiled to 16-byte stores that the
         * 32-byte loads after could not forward (perf: 40 % of the stem's quantize_row) */
        v8 y[4];
        for (; i + 32 <= n; i += 32) {
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++) y[v] = (v8)_mm256_loadu_ps(x + i + 8 * v);
            quantize_vecs(y, 32, q + i, finv, s, 4);
        }
        for (; i + 8 <= n; i += 8) {
            y[0] = (v8)_mm256_loadu_ps(x + i);
            quantize_vecs(y, 8, q + i, finv, s, 1);
        }
        if (i < n) {
            y[0] = splat(0.0f);
            memcpy(y, x + i, 4 * (size_t)(n - i));
            quantize_vecs(y, n - i, q + i, finv, s, 1);
            return;
        }
    }
#endif
    for (; i + 8 <= n; i += 8) {
        v8 v;
        memcpy(&v, x + i, 32);
        v8c c = saturate8(quantize8(v, inv, s));
        memcpy(q + i, &c, 8);
    }
    if (i < n) {
        v8 v = splat(0.0f);
        memcpy(&v, x + i, 4 * (size_t)(n - i));
        v8c c = saturate8(quantize8(v, inv, s));
        memcpy(q + i, &c, (size_t)(n - i));
    }
}

#if defined(__AVX512BW__)
/* 64 columns of 4 channels' bytes (c0 .. c3: column j in byte j) as quads at o: the bytes
 * interleaved within 128-bit lanes (lane k of q[m]: columns 16 k + 4 m .. + 3), then the
 * 4 x 4 lanes transposed */
static inline void quads64(uint32_t *o, __m512i c0, __m512i c1, __m512i c2, __m512i c3,
                           __m512i b) {
    __m512i lo01 = _mm512_unpacklo_epi8(c0, c1), hi01 = _mm512_unpackhi_epi8(c0, c1);
    __m512i lo23 = _mm512_unpacklo_epi8(c2, c3), hi23 = _mm512_unpackhi_epi8(c2, c3);
    __m512i q0 = _mm512_unpacklo_epi16(lo01, lo23);
    __m512i q1 = _mm512_unpackhi_epi16(lo01, lo23);
    __m512i q2 = _mm512_unpacklo_epi16(hi01, hi23);
    __m512i q3 = _mm512_unpackhi_epi16(hi01, hi23);
    __m512i t0 = _mm512_shuffle_i64x2(q0, q1, 0x44);
    __m512i t1 = _mm512_shuffle_i64x2(q2, q3, 0x44);
    __m512i t2 = _mm512_shuffle_i64x2(q0, q1, 0xEE);
    __m512i t3 = _mm512_shuffle_i64x2(q2, q3, 0xEE);
    _mm512_storeu_si512(o, _mm512_xor_si512(_mm512_shuffle_i64x2(t0, t1, 0x88), b));
    _mm512_storeu_si512(o + 16, _mm512_xor_si512(_mm512_shuffle_i64x2(t0, t1, 0xDD), b));
    _mm512_storeu_si512(o + 32, _mm512_xor_si512(_mm512_shuffle_i64x2(t2, t3, 0x88), b));
    _mm512_storeu_si512(o + 48, _mm512_xor_si512(_mm512_shuffle_i64x2(t2, t3, 0xDD), b));
}

/* the first m (<= 64) bytes at p, zeros past them (no byte past p + m - 1 read) */
static inline __m512i bytes_upto(const uint8_t *p, long m) {
    return _mm512_maskz_loadu_epi8(m >= 64 ? ~0ULL : (1ULL << m) - 1, p);
}

/* the even bytes of the first m (<= 128) bytes at p, as 64 bytes (the int16 words' low
 * bytes; no byte past p + m - 1 read) */
static inline __m512i even_upto(const uint8_t *p, long m) {
    __m512i lo = bytes_upto(p, m), hi = bytes_upto(p + 64, m > 64 ? m - 64 : 0);
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm512_cvtepi16_epi8(lo)),
                              _mm512_cvtepi16_epi8(hi), 1);
}

/* the even bytes of the 128 bytes at p (even_upto without masks) */
static inline __m512i even128(const uint8_t *p) {
    __m256i lo = _mm512_cvtepi16_epi8(_mm512_loadu_si512(p));
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo),
                              _mm512_cvtepi16_epi8(_mm512_loadu_si512(p + 64)), 1);
}

/* the quads of a row's last m (< 64) columns: quads64 into a buffer, m of them copied (a
 * whole-vector store would write past the row, into columns another thread lays out) */
static inline void quads_tail(uint32_t *o, long m, __m512i c0, __m512i c1, __m512i c2,
                              __m512i c3, __m512i b) {
    uint32_t buf[64] __attribute__((aligned(64)));
    quads64(buf, c0, c1, c2, c3, b);
    memcpy(o, buf, 4 * (size_t)m);
}

/* columns shorter than this at a row's end: one scalar quad each */
#define EI_TAIL_MIN 4
#endif

/* columns [c0, c1) of a layout row: channel k's byte of column c at p[k][(c - c0) * step[k]] */
static inline void pack_row(uint32_t *orow, long c0, long c1, const uint8_t *const p[4],
                            const long step[4], uint32_t bias, long sx) {
    uint32_t *oc = orow + c0;
    long n = c1 - c0;
    if (step[3] && sx == 1) { /* every channel present: the common cases, vectorized */
        const uint8_t *p0 = p[0], *p1 = p[1], *p2 = p[2], *p3 = p[3];
        long i = 0;
#if defined(__AVX512BW__)
        const __m512i b = _mm512_set1_epi32((int)bias);
        for (; i + 64 <= n; i += 64)
            quads64(oc + i, _mm512_loadu_si512(p0 + i), _mm512_loadu_si512(p1 + i),
                    _mm512_loadu_si512(p2 + i), _mm512_loadu_si512(p3 + i), b);
        if (n - i >= EI_TAIL_MIN) { /* the last columns: masked loads */
            const long m = n - i;
            quads_tail(oc + i, m, bytes_upto(p0 + i, m), bytes_upto(p1 + i, m),
                       bytes_upto(p2 + i, m), bytes_upto(p3 + i, m), b);
            i = n;
        }
#elif defined(__AVX2__)
        /* 32 columns: the channels' bytes interleaved to words, the words to quads (columns
         * 0-3, 16-19 / 4-7, 20-23 / 8-11, 24-27 / 12-15, 28-31, put in order); a row's last
         * columns as its last 32 again (gcc's own vectorizing widened each byte to an int32
         * and shifted: 3 x slower) */
        const __m256i b = _mm256_set1_epi32((int)bias);
        if (n >= 32)
            for (;;) {
                if (i + 32 > n) i = n - 32;
                const __m256i c0 = _mm256_loadu_si256((const void *)(p0 + i));
                const __m256i c1 = _mm256_loadu_si256((const void *)(p1 + i));
                const __m256i c2 = _mm256_loadu_si256((const void *)(p2 + i));
                const __m256i c3 = _mm256_loadu_si256((const void *)(p3 + i));
                const __m256i l01 = _mm256_unpacklo_epi8(c0, c1);
                const __m256i h01 = _mm256_unpackhi_epi8(c0, c1);
                const __m256i l23 = _mm256_unpacklo_epi8(c2, c3);
                const __m256i h23 = _mm256_unpackhi_epi8(c2, c3);
                const __m256i q0 = _mm256_unpacklo_epi16(l01, l23);
                const __m256i q1 = _mm256_unpackhi_epi16(l01, l23);
                const __m256i q2 = _mm256_unpacklo_epi16(h01, h23);
                const __m256i q3 = _mm256_unpackhi_epi16(h01, h23);
                __m256i *o = (__m256i *)(oc + i);
#define EI_QUADS8(k, x, y, sel) \
    _mm256_storeu_si256(o + k, _mm256_xor_si256(_mm256_permute2x128_si256(x, y, sel), b))
                EI_QUADS8(0, q0, q1, 0x20);
                EI_QUADS8(1, q2, q3, 0x20);
                EI_QUADS8(2, q0, q1, 0x31);
                EI_QUADS8(3, q2, q3, 0x31);
#undef EI_QUADS8
                if ((i += 32) >= n) break;
            }
        else if (n >= 16)
            for (;;) { /* 16 columns the same on 128 bits */
                if (i + 16 > n) i = n - 16;
                const __m128i c0 = _mm_loadu_si128((const void *)(p0 + i));
                const __m128i c1 = _mm_loadu_si128((const void *)(p1 + i));
                const __m128i c2 = _mm_loadu_si128((const void *)(p2 + i));
                const __m128i c3 = _mm_loadu_si128((const void *)(p3 + i));
                const __m128i l01 = _mm_unpacklo_epi8(c0, c1), h01 = _mm_unpackhi_epi8(c0, c1);
                const __m128i l23 = _mm_unpacklo_epi8(c2, c3), h23 = _mm_unpackhi_epi8(c2, c3);
                const __m128i bx = _mm256_castsi256_si128(b);
                __m128i *o = (__m128i *)(oc + i);
                _mm_storeu_si128(o, _mm_xor_si128(_mm_unpacklo_epi16(l01, l23), bx));
                _mm_storeu_si128(o + 1, _mm_xor_si128(_mm_unpackhi_epi16(l01, l23), bx));
                _mm_storeu_si128(o + 2, _mm_xor_si128(_mm_unpacklo_epi16(h01, h23), bx));
                _mm_storeu_si128(o + 3, _mm_xor_si128(_mm_unpackhi_epi16(h01, h23), bx));
                if ((i += 16) >= n) break;
            }
#endif
        for (; i < n; i++) oc[i] = quad(p0[i], p1[i], p2[i], p3[i]) ^ bias;
    } else if (step[3] && sx == 2) {
        const uint8_t *p0 = p[0], *p1 = p[1], *p2 = p[2], *p3 = p[3];
        long i = 0;
#if defined(__AVX512BW__)
        /* 64 columns (i + 64 < n: the 128 bytes read end before the row's last byte + 2),
         * then the last (up to 64) columns by masked loads of their 2 m - 1 bytes: a
         * strided layer's rows (80, 40, 20 output columns) were a quarter to all scalar */
        const __m512i b = _mm512_set1_epi32((int)bias);
        for (; i + 64 < n; i += 64)
            quads64(oc + i, even128(p0 + 2 * i), even128(p1 + 2 * i), even128(p2 + 2 * i),
                    even128(p3 + 2 * i), b);
        if (n - i >= EI_TAIL_MIN) {
            const long m = n - i, nb = 2 * m - 1;
            if (m == 64)
                quads64(oc + i, even_upto(p0 + 2 * i, nb), even_upto(p1 + 2 * i, nb),
                        even_upto(p2 + 2 * i, nb), even_upto(p3 + 2 * i, nb), b);
            else
                quads_tail(oc + i, m, even_upto(p0 + 2 * i, nb), even_upto(p1 + 2 * i, nb),
                           even_upto(p2 + 2 * i, nb), even_upto(p3 + 2 * i, nb), b);
            i = n;
        }
#elif defined(__AVX2__)
        /* 16 columns (i + 16 < n: the 32 bytes read end before the row's last byte): each
         * channel's even bytes as words, two channels' words joined, the two pairs
         * interleaved to quads (lanes 0-3, 8-11 / 4-7, 12-15, put in order) */
        const __m256i b = _mm256_set1_epi32((int)bias), even = _mm256_set1_epi16(0xff);
        for (; i + 16 < n; i += 16) {
            const long j = 2 * i;
            const __m256i c0 = _mm256_and_si256(_mm256_loadu_si256((const void *)(p0 + j)), even);
            const __m256i c1 = _mm256_slli_epi16(_mm256_loadu_si256((const void *)(p1 + j)), 8);
            const __m256i c2 = _mm256_and_si256(_mm256_loadu_si256((const void *)(p2 + j)), even);
            const __m256i c3 = _mm256_slli_epi16(_mm256_loadu_si256((const void *)(p3 + j)), 8);
            const __m256i w01 = _mm256_or_si256(c0, c1), w23 = _mm256_or_si256(c2, c3);
            const __m256i lo = _mm256_unpacklo_epi16(w01, w23);
            const __m256i hi = _mm256_unpackhi_epi16(w01, w23);
            _mm256_storeu_si256((__m256i *)(oc + i),
                                _mm256_xor_si256(_mm256_permute2x128_si256(lo, hi, 0x20), b));
            _mm256_storeu_si256((__m256i *)(oc + i + 8),
                                _mm256_xor_si256(_mm256_permute2x128_si256(lo, hi, 0x31), b));
        }
        if (n > 16 && i < n) { /* the last 16 columns again, their bytes read from one before
                                * (odd bytes: ending on the row's last byte read) */
            const long j = 2 * (n - 16) - 1;
            const __m256i odd = _mm256_set1_epi16((short)0xff00);
            const __m256i c0 = _mm256_srli_epi16(_mm256_loadu_si256((const void *)(p0 + j)), 8);
            const __m256i c1 = _mm256_and_si256(_mm256_loadu_si256((const void *)(p1 + j)), odd);
            const __m256i c2 = _mm256_srli_epi16(_mm256_loadu_si256((const void *)(p2 + j)), 8);
            const __m256i c3 = _mm256_and_si256(_mm256_loadu_si256((const void *)(p3 + j)), odd);
            const __m256i w01 = _mm256_or_si256(c0, c1), w23 = _mm256_or_si256(c2, c3);
            const __m256i lo = _mm256_unpacklo_epi16(w01, w23);
            const __m256i hi = _mm256_unpackhi_epi16(w01, w23);
            _mm256_storeu_si256((__m256i *)(oc + n - 16),
                                _mm256_xor_si256(_mm256_permute2x128_si256(lo, hi, 0x20), b));
            _mm256_storeu_si256((__m256i *)(oc + n - 8),
                                _mm256_xor_si256(_mm256_permute2x128_si256(lo, hi, 0x31), b));
            i = n;
        }
#endif
        for (; i < n; i++)
            oc[i] = quad(p0[2 * i], p1[2 * i], p2[2 * i], p3[2 * i]) ^ bias;
    } else {
        for (long i = 0; i < n; i++)
            oc[i] = quad(p[0][i * step[0]], p[1][i * step[1]], p[2][i * step[2]],
                         p[3][i * step[3]])
                    ^ bias;
    }
}

/* xf's second bit: lay out the first stride phase only (a 1 x 1 kernel reads no other) */
#define EI_FIRST_PHASE 2

/* the widest float input row quantized on the stack (wider ones: in pieces) */
#define EI_QROW 2048

/* a float input row no wider than EI_QROW: quantized once for all sx column phases */
static void split_float_rows(const qconv_split_args *a, uint32_t bias) {
    const long plen = a->ps ? a->ps : a->hq * a->wq, sy = a->sy, sx = a->sx;
    const long nsy = a->xf & EI_FIRST_PHASE ? 1 : sy, nsx = a->xf & EI_FIRST_PHASE ? 1 : sx;
    int8_t rows[4][EI_QROW], zrow[EI_QROW];
    memset(zrow, 0, sizeof zrow); /* a missing channel: zeros, read as the others are */
    long c_lo[8], c_hi[8];
    for (long px = 0; px < sx; px++) {
        c_lo[px] = a->pl > px ? (a->pl - px + sx - 1) / sx : 0;
        c_hi[px] = (a->w + a->pl - px + sx - 1) / sx;
        if (c_hi[px] > a->wq) c_hi[px] = a->wq;
        if (c_lo[px] > c_hi[px]) c_lo[px] = c_hi[px];
    }
    for (long q = a->q0; q < a->q1; q++) {
        long ch[4];
        for (int k = 0; k < 4; k++) ch[k] = 4 * q + k < a->cg ? 4 * q + k : -1;
        for (long py = 0; py < nsy; py++)
            for (long r = 0; r < a->hq; r++) {
                long iy = r * sy + py - a->pt;
                int inside = iy >= 0 && iy < a->h;
                if (inside)
                    for (int k = 0; k < 4; k++)
                        if (ch[k] >= 0)
                            quantize_row((const float *)a->x + ch[k] * a->xcs + iy * a->xrs,
                                         a->w, rows[k], a->inv, a->scale);
                for (long px = 0; px < nsx; px++) {
                    uint32_t *orow = (uint32_t *)a->out + ((py * sx + px) * a->cq + q) * plen
                                     + r * a->wq;
                    if (!inside) {
                        for (long c = 0; c < a->wq; c++) orow[c] = bias;
                        continue;
                    }
                    for (long c = 0; c < c_lo[px]; c++) orow[c] = bias;
                    for (long c = c_hi[px]; c < a->wq; c++) orow[c] = bias;
                    long ix0 = c_lo[px] * sx + px - a->pl;
                    const uint8_t *p[4];
                    long step[4];
                    for (int k = 0; k < 4; k++) {
                        p[k] = (const uint8_t *)(ch[k] < 0 ? zrow : rows[k]) + ix0;
                        step[k] = sx;
                    }
                    pack_row(orow, c_lo[px], c_hi[px], p, step, bias, sx);
                }
            }
    }
}

static void split_phases(const qconv_split_args *a) {
    const uint32_t bias = U8 ? 0x80808080u : 0u; /* a zero activation, as the dot reads it */
    const long plen = a->ps ? a->ps : a->hq * a->wq, sy = a->sy, sx = a->sx;
    const long nsy = a->xf & EI_FIRST_PHASE ? 1 : sy, nsx = a->xf & EI_FIRST_PHASE ? 1 : sx;
    const int xf = a->xf & 1;
    static const uint8_t zeros[1] = {0};
    int8_t rows[4][EI_QROW];
    if (xf && a->w <= EI_QROW && sx <= 8) {
        split_float_rows(a, bias);
        return;
    }
    if (!xf && sy == 1 && sx == 1 && !a->pt && !a->pl && a->hq == a->h && a->wq == a->w
        && a->xrs == a->w) { /* an unpadded int8 plane (1 x 1, stride 1): one row of h * w */
        for (long q = a->q0; q < a->q1; q++) {
            const uint8_t *p[4];
            long step[4];
            for (int k = 0; k < 4; k++) {
                long c = 4 * q + k;
                p[k] = c < a->cg ? (const uint8_t *)a->x + c * a->xcs : zeros;
                step[k] = c < a->cg;
            }
            pack_row((uint32_t *)a->out + q * plen, 0, a->hq * a->wq, p, step, bias, 1);
        }
        return;
    }
    for (long q = a->q0; q < a->q1; q++) {
        long ch[4];
        for (int k = 0; k < 4; k++) ch[k] = 4 * q + k < a->cg ? 4 * q + k : -1;
        for (long py = 0; py < nsy; py++)
            for (long px = 0; px < nsx; px++) {
                uint32_t *o = (uint32_t *)a->out + ((py * sx + px) * a->cq + q) * plen;
                /* columns c reading input column c * sx + px - pl inside [0, w) */
                long c_lo = a->pl > px ? (a->pl - px + sx - 1) / sx : 0;
                long c_hi = (a->w + a->pl - px + sx - 1) / sx;
                if (c_hi > a->wq) c_hi = a->wq;
                if (c_lo > c_hi) c_lo = c_hi;
                for (long r = 0; r < a->hq; r++) {
                    uint32_t *orow = o + r * a->wq;
                    long iy = r * sy + py - a->pt;
                    if (iy < 0 || iy >= a->h) {
                        for (long c = 0; c < a->wq; c++) orow[c] = bias;
                        continue;
                    }
                    for (long c = 0; c < c_lo; c++) orow[c] = bias;
                    for (long c = c_hi; c < a->wq; c++) orow[c] = bias;
                    long ix0 = c_lo * sx + px - a->pl;
                    const uint8_t *p[4];
                    long step[4];
                    if (!xf) {
                        for (int k = 0; k < 4; k++) {
                            p[k] = ch[k] < 0 ? zeros
                                             : (const uint8_t *)a->x + ch[k] * a->xcs
                                                   + iy * a->xrs + ix0;
                            step[k] = ch[k] < 0 ? 0 : sx;
                        }
                        pack_row(orow, c_lo, c_hi, p, step, bias, sx);
                        continue;
                    }
                    /* a float input: its row quantized first, a piece at a time */
                    long piece = EI_QROW / sx;
                    for (long c0 = c_lo; c0 < c_hi; c0 += piece) {
                        long c1 = c0 + piece < c_hi ? c0 + piece : c_hi;
                        long x0 = c0 * sx + px - a->pl, span = (c1 - c0 - 1) * sx + 1;
                        for (int k = 0; k < 4; k++) {
                            if (ch[k] >= 0)
                                quantize_row((const float *)a->x + ch[k] * a->xcs + iy * a->xrs
                                                 + x0,
                                             span, rows[k], a->inv, a->scale);
                            p[k] = ch[k] < 0 ? zeros : (const uint8_t *)rows[k];
                            step[k] = ch[k] < 0 ? 0 : sx;
                        }
                        pack_row(orow, c0, c1, p, step, bias, sx);
                    }
                }
            }
    }
}

/* xf's bits from EI_PACK_SHIFT, 4 each: kh, kw, dy, dx of a layer of one channel quad and
 * cg < 4 channels whose taps' bytes are packed (0: none). Its layout's phases leave 4 - cg
 * bytes of each quad empty (a stem's 3 channels: a quarter of the multiplies on zeros);
 * packed, the taps' cg bytes in order ((i, j) row-major, then channel) fill quads of 4: 27
 * bytes of a 3 x 3 kernel 6 quads and the last tap's 3 read from the phases as they lie (7
 * terms, not 9), 147 of a 7 x 7 36 and 1 (37, not 49). Packed quad m is a plane of its own
 * after the phases (plane sy * sx + m, each hq * wq), at every grid position g the bytes of
 * the phases' quads at g + the taps' offsets; the terms then read them at offset 0
 * (cpu_qconv.py builds the same order). */
#define EI_PACK_SHIFT 8

static void pack_taps(const qconv_split_args *a) {
    const long kh = a->xf >> EI_PACK_SHIFT & 15, kw = a->xf >> (EI_PACK_SHIFT + 4) & 15;
    const long dy = a->xf >> (EI_PACK_SHIFT + 8) & 15, dx = a->xf >> (EI_PACK_SHIFT + 12) & 15;
    const long cg = a->cg, sy = a->sy, sx = a->sx, wq = a->wq;
    const long plen = a->ps ? a->ps : a->hq * a->wq;
    const long bytes = kh * kw * cg, last = bytes % 4;
    const long planes = bytes / 4 + (last && last != cg);
    /* the grid rows whose every tap reads a phase row laid out */
    const long n = (a->hq - (kh - 1) * dy / sy) * wq;
    uint32_t *const phases = (uint32_t *)a->out;
    for (long m = 0; m < planes; m++) {
        uint32_t *o = phases + (sy * sx + m) * plen;
        for (long b = 4 * m; b < 4 * m + 4 && b < bytes;) {
            const long tap = b / cg, c = b % cg, d = b - 4 * m;
            const long cnt = cg - c < 4 - d ? cg - c : 4 - d;
            const long i = tap / kw * dy, j = tap % kw * dx;
            const uint32_t *q = phases + (i % sy * sx + j % sx) * plen + i / sy * wq + j / sx;
            const uint32_t mask = (1u << 8 * cnt) - 1, sr = (uint32_t)(8 * c),
                           sl = (uint32_t)(8 * d);
            if (!d)
                for (long g = 0; g < n; g++) o[g] = (q[g] >> sr & mask) << sl;
            else
                for (long g = 0; g < n; g++) o[g] |= (q[g] >> sr & mask) << sl;
            b += cnt;
        }
    }
}

void qconv_split_f32(const qconv_split_args *a) {
    split_phases(a);
    if (a->xf >> EI_PACK_SHIFT & 15) pack_taps(a);
}
EI_TASK(qconv_split)

/* -- the register tile: acc[i][j] = init[i] + sum over terms of x quad . w quad ------------ */

#if EI_INT8_PATH == EI_Q8_VNNI512
/* the first nv vectors (16 positions each) of the first mr rows of the tile: a strip's last
 * tile computes only the positions it has (a 14 x 14 map: 196 = 3 x 64 + 4, one vector
 * instead of four), a layer's last channels only the rows they fill (tile_rows) */
static inline __attribute__((always_inline)) void tile_regs_mr(const int32_t *x,
                                                             const long *toff, long T,
                                                             const int32_t *w, long wstride,
                                                             const int32_t *init,
                                                             __m512i a[MR][NV], const int mr,
                                                             const int nv) {
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) a[i][v] = _mm512_set1_epi32(init[i]);
    for (long t = 0; t < T; t++) {
        const int32_t *xp = x + toff[t], *wp = w + t * wstride;
        __m512i xv[NV];
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) xv[v] = _mm512_loadu_si512(xp + v * VL);
#pragma GCC unroll 8
        for (int i = 0; i < mr; i++) {
            __m512i b = _mm512_set1_epi32(wp[i]);
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) a[i][v] = _mm512_dpbusd_epi32(a[i][v], xv[v], b);
        }
    }
}

static inline __attribute__((always_inline)) void tile_regs(const int32_t *x, const long *toff,
                                                          long T, const int32_t *w,
                                                          long wstride, const int32_t *init,
                                                          __m512i a[MR][NV], const int nv) {
    tile_regs_mr(x, toff, T, w, wstride, init, a, MR, nv);
}

/* (rows mr and past of acc: left as they were) */
static inline __attribute__((always_inline)) void tile_nv(const int32_t *x, const long *toff,
                                                        long T, const int32_t *w,
                                                        long wstride, const int32_t *init,
                                                        int32_t *acc, const int mr,
                                                        const int nv) {
    __m512i a[MR][NV];
    tile_regs_mr(x, toff, T, w, wstride, init, a, mr, nv);
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) _mm512_store_si512(acc + i * NT + v * VL, a[i][v]);
}

#define EI_TILE_NV(mr)                                                                         \
    switch (nv) {                                                                              \
    case 1: tile_nv(x, toff, T, w, wstride, init, acc, mr, 1); break;                          \
    case 2: tile_nv(x, toff, T, w, wstride, init, acc, mr, 2); break;                          \
    case 3: tile_nv(x, toff, T, w, wstride, init, acc, mr, 3); break;                          \
    default: tile_nv(x, toff, T, w, wstride, init, acc, mr, 4);                                \
    }

/* the tile on the first rows (<= MR) of acc only: a layer's last channel block of 2 or 4
 * channels (32 channels: 5 x 6 + 2; 16: 2 x 6 + 4) computes those, not 6 (acc's other rows:
 * left as they were; finish_tile reads only the block's) */
static void tile_rows(const int32_t *x, const long *toff, long T, const int32_t *w,
                      long wstride, const int32_t *init, int32_t *acc, long rows, long nv) {
    if (rows > 4) {
        EI_TILE_NV(MR)
    } else if (rows > 2) {
        EI_TILE_NV(4)
    } else {
        EI_TILE_NV(2)
    }
}
#undef EI_TILE_NV
#elif EI_INT8_PATH == EI_Q8_VNNI256
static inline void tile(const int32_t *x, const long *toff, long T, const int32_t *w, long wstride,
                        const int32_t *init, int32_t *acc, long nv) {
    (void)nv; /* the whole tile */
    __m256i a[MR][NV];
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) a[i][v] = _mm256_set1_epi32(init[i]);
    for (long t = 0; t < T; t++) {
        const int32_t *xp = x + toff[t], *wp = w + t * wstride;
        __m256i x0 = _mm256_loadu_si256((const __m256i *)xp);
        __m256i x1 = _mm256_loadu_si256((const __m256i *)(xp + 8));
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
            __m256i b = _mm256_set1_epi32(wp[i]);
            a[i][0] = DPBUSD256(a[i][0], x0, b);
            a[i][1] = DPBUSD256(a[i][1], x1, b);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            _mm256_storeu_si256((__m256i *)(acc + i * NT + v * VL), a[i][v]);
}
#elif EI_INT8_PATH == EI_Q8_AVX2
/* The AVX2 tiles: nv vectors of 8 positions (NT = 64), each vector's MR rows in registers
 * over all the terms, then the next vector: the epilogue then writes whole 64-byte rows of
 * int8 outputs (with 8 positions a tile, every output channel's row of the layer took a
 * partial cache line a tile and the rows outgrew L1). */

/* 8 positions: each half (4 positions x 4 bytes) sign-extended to 16 int16, vpmaddwd with
 * the weight quad as int16 gives pairs of products per position; the pairs are added once,
 * at the end (hadd, then the 64-bit lanes back in order) */
static inline void tile8(const int32_t *x, const long *toff, long T, const int32_t *w,
                         long wstride, const int32_t *init, int32_t *acc) {
    __m256i lo[MR], hi[MR];
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) lo[i] = hi[i] = _mm256_setzero_si256();
    for (long t = 0; t < T; t++) {
        const int32_t *xp = x + toff[t], *wp = w + t * wstride;
        __m256i xv = _mm256_loadu_si256((const __m256i *)xp);
        __m256i xl = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(xv));
        __m256i xh = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(xv, 1));
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
            __m256i b = _mm256_cvtepi8_epi16(_mm_set1_epi32(wp[i]));
            lo[i] = _mm256_add_epi32(lo[i], _mm256_madd_epi16(xl, b));
            hi[i] = _mm256_add_epi32(hi[i], _mm256_madd_epi16(xh, b));
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
        __m256i s = _mm256_permute4x64_epi64(_mm256_hadd_epi32(lo[i], hi[i]), 0xD8);
        s = _mm256_add_epi32(s, _mm256_set1_epi32(init[i]));
        _mm256_storeu_si256((__m256i *)(acc + i * NT), s);
    }
}

static void tile(const int32_t *x, const long *toff, long T, const int32_t *w, long wstride,
                 const int32_t *init, int32_t *acc, long nv) {
    for (long v = 0; v < nv; v++) tile8(x + v * VL, toff, T, w, wstride, init, acc + v * VL);
}

/* The tiles on shifted activations: x' = x + k (bytes) read as u8, x' . w by vpmaddubsw (u8
 * x s8, pairs summed to int16, saturating) then vpmaddwd with ones; the caller starts the
 * accumulators at init - k * sum(w), so they end at the exact x . w where no int16 sum
 * saturates. The caller knows the strip's bytes (tile_range: x in [lo, hi], k = -lo where
 * lo < 0): tile_shift8 where x' <= L, L times a pair's positive weights <= 32767 and its
 * negative ones >= -32768 (the weight array's limit row, cpu_qconv.py, per channel);
 * tile_shift8 with two terms' pairs added in int16 before one vpmaddwd (terms2) where
 * x' <= L2, the same for the four weights of two consecutive terms' pairs (the row's upper
 * half): 3 multiplies for 64 products, not 4. No vpsignb per row and term as in tile_sign8
 * (Zen 3, one thread, L1: 85 against 70 int8 multiply-adds a ns). After a SiLU most int8
 * bytes of a YOLO layer lie in [-30, 120] (L 129-168 there), after a relu in [0, 127]. */
static inline __attribute__((always_inline)) void tile_shift8(const int32_t *x, const long *toff,
                                                              long T, const int32_t *w,
                                                              long wstride, const int32_t *init,
                                                              int32_t *acc, __m256i kb,
                                                              const int shifted,
                                                              const int terms2, long T2) {
    __m256i a[MR];
    const __m256i ones = _mm256_set1_epi16(1);
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) a[i] = _mm256_set1_epi32(init[i]);
    long t = 0;
    if (terms2)
        for (; t + 2 <= T2; t += 2) {
            const int32_t *wp = w + t * wstride;
            __m256i x0 = _mm256_loadu_si256((const __m256i *)(x + toff[t]));
            __m256i x1 = _mm256_loadu_si256((const __m256i *)(x + toff[t + 1]));
            if (shifted) x0 = _mm256_add_epi8(x0, kb), x1 = _mm256_add_epi8(x1, kb);
#pragma GCC unroll 8
            for (int i = 0; i < MR; i++) {
                __m256i p = _mm256_add_epi16(
                    _mm256_maddubs_epi16(x0, _mm256_set1_epi32(wp[i])),
                    _mm256_maddubs_epi16(x1, _mm256_set1_epi32(wp[wstride + i])));
                a[i] = _mm256_add_epi32(a[i], _mm256_madd_epi16(p, ones));
            }
        }
    for (; t < T; t++) {
        const int32_t *wp = w + t * wstride;
        __m256i xv = _mm256_loadu_si256((const __m256i *)(x + toff[t]));
        if (shifted) xv = _mm256_add_epi8(xv, kb);
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++)
            a[i] = _mm256_add_epi32(
                a[i], _mm256_madd_epi16(_mm256_maddubs_epi16(xv, _mm256_set1_epi32(wp[i])), ones));
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) _mm256_storeu_si256((__m256i *)(acc + i * NT), a[i]);
}

/* tile_shift8's single-term form on 2 vectors (16 positions: one 64-byte line of the
 * layout) a weight broadcast: half the broadcasts a product; 12 accumulators, the 2
 * vectors, the weight and a product in the 16 ymm (GCC reads the ones from memory) */
static inline __attribute__((always_inline)) void tile_shift16(const int32_t *x,
                                                               const long *toff, long T,
                                                               const int32_t *w, long wstride,
                                                               const int32_t *init,
                                                               int32_t *acc, __m256i kb,
                                                               const int shifted) {
    __m256i a[MR][2];
    const __m256i ones = _mm256_set1_epi16(1);
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) a[i][0] = a[i][1] = _mm256_set1_epi32(init[i]);
    for (long t = 0; t < T; t++) {
        const int32_t *wp = w + t * wstride, *xp = x + toff[t];
        __m256i x0 = _mm256_loadu_si256((const __m256i *)xp);
        __m256i x1 = _mm256_loadu_si256((const __m256i *)(xp + VL));
        if (shifted) x0 = _mm256_add_epi8(x0, kb), x1 = _mm256_add_epi8(x1, kb);
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
            const __m256i b = _mm256_set1_epi32(wp[i]);
            a[i][0] = _mm256_add_epi32(a[i][0],
                                       _mm256_madd_epi16(_mm256_maddubs_epi16(x0, b), ones));
            a[i][1] = _mm256_add_epi32(a[i][1],
                                       _mm256_madd_epi16(_mm256_maddubs_epi16(x1, b), ones));
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
        _mm256_storeu_si256((__m256i *)(acc + i * NT), a[i][0]);
        _mm256_storeu_si256((__m256i *)(acc + i * NT + VL), a[i][1]);
    }
}

/* tile_shift8's two-term form on 2 vectors, a block's rows in two passes of 3: 6
 * accumulators, 4 activation vectors, 2 weights, a sum, a product and the ones (YOLOv8n's
 * and ResNet-50's position-tile layers 3-4 % faster, one thread) */
static inline __attribute__((always_inline)) void tile_shift16x2(const int32_t *x,
                                                                 const long *toff, long T,
                                                                 const int32_t *w,
                                                                 long wstride,
                                                                 const int32_t *init,
                                                                 int32_t *acc, __m256i kb,
                                                                 const int shifted, long T2) {
    const __m256i ones = _mm256_set1_epi16(1);
    for (int r0 = 0; r0 < MR; r0 += 3) {
        __m256i a[3][2];
#pragma GCC unroll 8
        for (int i = 0; i < 3; i++) a[i][0] = a[i][1] = _mm256_set1_epi32(init[r0 + i]);
        long t = 0;
        for (; t + 2 <= T2; t += 2) {
            const int32_t *wp = w + t * wstride + r0;
            const int32_t *xp = x + toff[t], *xq = x + toff[t + 1];
            __m256i x0 = _mm256_loadu_si256((const __m256i *)xp);
            __m256i x1 = _mm256_loadu_si256((const __m256i *)(xp + VL));
            __m256i y0 = _mm256_loadu_si256((const __m256i *)xq);
            __m256i y1 = _mm256_loadu_si256((const __m256i *)(xq + VL));
            if (shifted) {
                x0 = _mm256_add_epi8(x0, kb), x1 = _mm256_add_epi8(x1, kb);
                y0 = _mm256_add_epi8(y0, kb), y1 = _mm256_add_epi8(y1, kb);
            }
#pragma GCC unroll 8
            for (int i = 0; i < 3; i++) {
                const __m256i b = _mm256_set1_epi32(wp[i]), c = _mm256_set1_epi32(wp[wstride + i]);
                __m256i p0 = _mm256_add_epi16(_mm256_maddubs_epi16(x0, b), _mm256_maddubs_epi16(y0, c));
                __m256i p1 = _mm256_add_epi16(_mm256_maddubs_epi16(x1, b), _mm256_maddubs_epi16(y1, c));
                a[i][0] = _mm256_add_epi32(a[i][0], _mm256_madd_epi16(p0, ones));
                a[i][1] = _mm256_add_epi32(a[i][1], _mm256_madd_epi16(p1, ones));
            }
        }
        for (; t < T; t++) {
            const int32_t *wp = w + t * wstride + r0, *xp = x + toff[t];
            __m256i x0 = _mm256_loadu_si256((const __m256i *)xp);
            __m256i x1 = _mm256_loadu_si256((const __m256i *)(xp + VL));
            if (shifted) x0 = _mm256_add_epi8(x0, kb), x1 = _mm256_add_epi8(x1, kb);
#pragma GCC unroll 8
            for (int i = 0; i < 3; i++) {
                const __m256i b = _mm256_set1_epi32(wp[i]);
                a[i][0] = _mm256_add_epi32(a[i][0], _mm256_madd_epi16(_mm256_maddubs_epi16(x0, b), ones));
                a[i][1] = _mm256_add_epi32(a[i][1], _mm256_madd_epi16(_mm256_maddubs_epi16(x1, b), ones));
            }
        }
#pragma GCC unroll 8
        for (int i = 0; i < 3; i++) {
            _mm256_storeu_si256((__m256i *)(acc + (r0 + i) * NT), a[i][0]);
            _mm256_storeu_si256((__m256i *)(acc + (r0 + i) * NT + VL), a[i][1]);
        }
    }
}

/* tile_shift8 on nv vectors, at shift k (0: no add), the first T2 terms two at once where
 * terms2 */
static void tile_shift(const int32_t *x, const long *toff, long T, const int32_t *w,
                       long wstride, const int32_t *init, int32_t *acc, long nv, long k,
                       int terms2, long T2) {
    const __m256i kb = _mm256_set1_epi8((char)k);
    long v = 0;
    if (terms2)
        for (; v + 2 <= nv; v += 2) {
            if (k)
                tile_shift16x2(x + v * VL, toff, T, w, wstride, init, acc + v * VL, kb, 1, T2);
            else
                tile_shift16x2(x + v * VL, toff, T, w, wstride, init, acc + v * VL, kb, 0, T2);
        }
    if (!terms2)
        for (; v + 2 <= nv; v += 2) {
            if (k)
                tile_shift16(x + v * VL, toff, T, w, wstride, init, acc + v * VL, kb, 1);
            else
                tile_shift16(x + v * VL, toff, T, w, wstride, init, acc + v * VL, kb, 0);
        }
    for (; v < nv; v++) {
        const int32_t *xv = x + v * VL;
        int32_t *av = acc + v * VL;
        if (k && terms2)
            tile_shift8(xv, toff, T, w, wstride, init, av, kb, 1, 1, T2);
        else if (k)
            tile_shift8(xv, toff, T, w, wstride, init, av, kb, 1, 0, T2);
        else if (terms2)
            tile_shift8(xv, toff, T, w, wstride, init, av, kb, 0, 1, T2);
        else
            tile_shift8(xv, toff, T, w, wstride, init, av, kb, 0, 0, T2);
    }
}

/* [*lo, *hi]: the smallest of mn's 32 signed bytes and 0, the largest of mx's and 0 */
static void fold_range(__m256i mn, __m256i mx, long *lo, long *hi) {
    int8_t bn[32], bx[32];
    _mm256_storeu_si256((__m256i *)bn, mn);
    _mm256_storeu_si256((__m256i *)bx, mx);
    long l = 0, h = 0;
    for (int i = 0; i < 32; i++) {
        l = bn[i] < l ? bn[i] : l;
        h = bx[i] > h ? bx[i] : h;
    }
    *lo = l, *hi = h;
}

/* the signed range [*lo, *hi] of the activation bytes a strip's tiles read (nv vectors, the
 * last one's first `last` lanes: past the call's end the layout reads the buffer's slack,
 * bytes of no activation) */
static void tile_range(const int32_t *x, const long *toff, long T, long nv, long last,
                       long *lo, long *hi) {
    __m256i mn = _mm256_setzero_si256(), mx = mn; /* 0: within any shift's range */
    const __m256i keep = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(last < 8 ? last : 8)),
                                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    for (long v = 0; v < nv; v++) {
        const __m256i k = v == nv - 1 ? keep : _mm256_set1_epi32(-1);
        for (long t = 0; t < T; t++) {
            __m256i xv = _mm256_and_si256(
                _mm256_loadu_si256((const __m256i *)(x + toff[t] + v * VL)), k);
            mn = _mm256_min_epi8(mn, xv);
            mx = _mm256_max_epi8(mx, xv);
        }
    }
    fold_range(mn, mx, lo, hi);
}

/* the tile where no weight of the layer is -128 (the weight array's sign row, cpu_qconv.py:
 * every weight in [-127, 127]): x . w as |x| . (w * sign(x)) by vpmaddubsw (u8 x s8, pairs
 * summed to int16, saturating) then vpmaddwd with ones (the pairs to int32). |x| <= 128 and
 * |w * sign(x)| <= 127 bound a pair by 2 x 128 x 127 = 32512 < 32767: no saturation, the
 * exact products. About twice the throughput of the sign-extended vpmaddwd tile above
 * (Zen 3, one thread, L1-resident: 63 against 31 int8 multiply-adds a ns). */
static inline void tile_sign8(const int32_t *x, const long *toff, long T, const int32_t *w,
                              long wstride, const int32_t *init, int32_t *acc) {
    __m256i a[MR];
    const __m256i ones = _mm256_set1_epi16(1);
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) a[i] = _mm256_set1_epi32(init[i]);
    for (long t = 0; t < T; t++) {
        const int32_t *xp = x + toff[t], *wp = w + t * wstride;
        const __m256i xv = _mm256_loadu_si256((const __m256i *)xp);
        const __m256i ax = _mm256_abs_epi8(xv); /* -128: 0x80, read as unsigned 128 */
#pragma GCC unroll 8
        for (int i = 0; i < MR; i++) {
            __m256i sw = _mm256_sign_epi8(_mm256_set1_epi32(wp[i]), xv);
            a[i] = _mm256_add_epi32(a[i], _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sw), ones));
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) _mm256_storeu_si256((__m256i *)(acc + i * NT), a[i]);
}

static void tile_sign(const int32_t *x, const long *toff, long T, const int32_t *w,
                      long wstride, const int32_t *init, int32_t *acc, long nv) {
    for (long v = 0; v < nv; v++)
        tile_sign8(x + v * VL, toff, T, w, wstride, init, acc + v * VL);
}
#elif EI_INT8_PATH == EI_Q8_SDOT
/* the weight quads of 4 channels in one register, each broadcast by lane */
static inline void tile(const int32_t *x, const long *toff, long T, const int32_t *w, long wstride,
                        const int32_t *init, int32_t *acc, long nv) {
    (void)nv; /* the whole tile */
    int32x4_t a[MR][NV];
    for (int i = 0; i < MR; i++)
        for (int v = 0; v < NV; v++) a[i][v] = vdupq_n_s32(init[i]);
    for (long t = 0; t < T; t++) {
        const int32_t *xp = x + toff[t], *wp = w + t * wstride;
        int8x16_t x0 = vld1q_s8((const int8_t *)xp), x1 = vld1q_s8((const int8_t *)(xp + 4));
        int8x16_t w0 = vld1q_s8((const int8_t *)wp), w1 = vld1q_s8((const int8_t *)(wp + 4));
#define EI_SDOT_ROW(i, wr, lane)                                                               \
    a[i][0] = vdotq_laneq_s32(a[i][0], x0, wr, lane);                                          \
    a[i][1] = vdotq_laneq_s32(a[i][1], x1, wr, lane);
        EI_SDOT_ROW(0, w0, 0)
        EI_SDOT_ROW(1, w0, 1)
        EI_SDOT_ROW(2, w0, 2)
        EI_SDOT_ROW(3, w0, 3)
        EI_SDOT_ROW(4, w1, 0)
        EI_SDOT_ROW(5, w1, 1)
        EI_SDOT_ROW(6, w1, 2)
        EI_SDOT_ROW(7, w1, 3)
#undef EI_SDOT_ROW
    }
    for (int i = 0; i < MR; i++)
        for (int v = 0; v < NV; v++) vst1q_s32(acc + i * NT + v * VL, a[i][v]);
}
#else
static inline void tile(const int32_t *x, const long *toff, long T, const int32_t *w, long wstride,
                        const int32_t *init, int32_t *acc, long nv) {
    (void)nv; /* the whole tile */
    int32_t a[MR][NT];
    for (int i = 0; i < MR; i++)
        for (int j = 0; j < NT; j++) a[i][j] = init[i];
    for (long t = 0; t < T; t++) {
        const int8_t *xb = (const int8_t *)(x + toff[t]);
        const int8_t *wb = (const int8_t *)(w + t * wstride);
        for (int i = 0; i < MR; i++)
            for (int j = 0; j < NT; j++)
                a[i][j] += xb[4 * j] * wb[4 * i] + xb[4 * j + 1] * wb[4 * i + 1]
                           + xb[4 * j + 2] * wb[4 * i + 2] + xb[4 * j + 3] * wb[4 * i + 3];
    }
    memcpy(acc, a, sizeof a);
}
#endif

/* -- the epilogue ------------------------------------------------------------------------ */


/* the reference's sigmoid (activations.sigmoid_core): exp of -|y| only */
static inline v8 q_sigmoid(v8 y) {
    v8 e = vexp(vsel(y < 0.0f, y, -y));
    v8 r = 1.0f / (1.0f + e);
    return vsel(y >= 0.0f, r, e * r);
}

/* tanh, Cephes float32: an odd polynomial below 0.625, 1 - 2 / (exp(2|y|) + 1) above */
static inline v8 q_tanh(v8 y) {
    v8 ay = vsel(y < 0.0f, -y, y);
    v8 z = y * y;
    v8 p = -5.70498872745e-3f * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    v8 small = p * z * y + y;
    v8 big = 1.0f - 2.0f / (vexp(2.0f * ay) + 1.0f);
    big = vsel(y < 0.0f, -big, big);
    return vsel(ay < 0.625f, small, big);
}

/* the activations as the reference computes them in float32 (ops/fused.py ACTIVATIONS) */
static inline v8 q_activate(v8 y, long act, float p0, float p1) {
    switch (act) {
    case EI_ACT_RELU: return vsel(y > 0.0f, y, splat(0.0f));
    case EI_ACT_LEAKY_RELU: return vsel(y >= 0.0f, y, y * p0);
    case EI_ACT_CLIP: return vmin(vmax(y, splat(p0)), splat(p1));
    case EI_ACT_SIGMOID: return q_sigmoid(y);
    case EI_ACT_SILU: return y * q_sigmoid(y);
    case EI_ACT_HARD_SWISH:
        return y * vmin(vmax(y * (float)(1.0 / 6.0) + 0.5f, splat(0.0f)), splat(1.0f));
    case EI_ACT_HARD_SIGMOID: return vmin(vmax(y * p0 + p1, splat(0.0f)), splat(1.0f));
    case EI_ACT_TANH: return q_tanh(y);
    default: return y;
    }
}

/* float32 -> float16 bits, round to nearest even (as numpy's astype) */
static inline uint16_t f16_bits(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return (uint16_t)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* rounds past 65504: inf */
    if (ax < 0x38800000u) { /* subnormal half (or zero): round |f| * 2^24 to an integer */
        float m;
        uint32_t mb = ax;
        memcpy(&m, &mb, 4);
        float r = __builtin_rintf(m * 16777216.0f); /* exact scaling, then RNE */
        return (uint16_t)(sign | (uint32_t)r);
    }
    uint32_t mant = ax + 0xfffu + ((ax >> 13) & 1u); /* round the 13 dropped bits to even */
    return (uint16_t)(sign | ((mant - 0x38000000u) >> 13));
}

static inline void store_f16(uint16_t *o, v8 y, long n) {
#if defined(__F16C__)
    __m128i h = _mm256_cvtps_ph((__m256)y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    if (n == 8) {
        _mm_storeu_si128((__m128i *)o, h);
        return;
    }
    uint16_t tmp[8];
    _mm_storeu_si128((__m128i *)tmp, h);
    memcpy(o, tmp, 2 * (size_t)n);
#else
    for (long k = 0; k < n; k++) o[k] = f16_bits(y[k]);
#endif
}


/* rint(double(y) / s), half to even, saturated to int8 (quantize_int8) for 8 floats: the
 * quotient as a product with 1/s, rounded; where the product lies within rounding reach of a
 * half (the product and the quotient could round differently) the lane is redone as the
 * quotient. The product is within 2 ulps (2^-44 here) of the quotient. */
#define EI_NEAR_HALF (0.5 - 1e-9)
#if defined(__AVX512F__) && EI_INT8_PATH != EI_Q8_GENERIC
static inline v8i quantize8(v8 y, double inv, double s) {
    __m512d yd = _mm512_cvtps_pd((__m256)y);
    __m512d t = _mm512_mul_pd(yd, _mm512_set1_pd(inv));
    t = _mm512_min_pd(_mm512_max_pd(t, _mm512_set1_pd(-200.0)), _mm512_set1_pd(200.0));
    __m512d r = _mm512_roundscale_pd(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __mmask8 near = _mm512_cmp_pd_mask(_mm512_abs_pd(_mm512_sub_pd(t, r)),
                                       _mm512_set1_pd(EI_NEAR_HALF), _CMP_GT_OQ);
    if (near) {
        double rs[8], ys[8];
        _mm512_storeu_pd(rs, r);
        _mm512_storeu_pd(ys, yd);
        for (int k = 0; k < 8; k++)
            if (near >> k & 1) rs[k] = __builtin_rint(ys[k] / s);
        r = _mm512_loadu_pd(rs);
    }
    return (v8i)_mm512_cvtpd_epi32(r); /* exact: r is an integer in [-200, 200] */
}
#elif defined(__AVX2__) && EI_INT8_PATH != EI_Q8_GENERIC
/* the same on two halves of 4 doubles: GCC turns the generic version's 64-bit lane
 * compares into scalar compares and branches on AVX2 (10x slower); NaN clamps to -200 as
 * on AVX-512 (both saturate to -128 where the generic version converts NaN) */
static inline __m256d quantize4(__m256d yd, double inv, double s) {
    __m256d t = _mm256_mul_pd(yd, _mm256_set1_pd(inv));
    t = _mm256_min_pd(_mm256_max_pd(t, _mm256_set1_pd(-200.0)), _mm256_set1_pd(200.0));
    __m256d r = _mm256_round_pd(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256d d = _mm256_andnot_pd(_mm256_set1_pd(-0.0), _mm256_sub_pd(t, r));
    int near = _mm256_movemask_pd(_mm256_cmp_pd(d, _mm256_set1_pd(EI_NEAR_HALF), _CMP_GT_OQ));
    if (__builtin_expect(near != 0, 0)) {
        double rs[4], ys[4];
        _mm256_storeu_pd(rs, r);
        _mm256_storeu_pd(ys, yd);
        for (int k = 0; k < 4; k++)
            if (near >> k & 1) rs[k] = __builtin_rint(ys[k] / s);
        r = _mm256_loadu_pd(rs);
    }
    return r;
}

static inline v8i quantize8(v8 y, double inv, double s) {
    __m256d r0 = quantize4(_mm256_cvtps_pd(_mm256_castps256_ps128((__m256)y)), inv, s);
    __m256d r1 = quantize4(_mm256_cvtps_pd(_mm256_extractf128_ps((__m256)y, 1)), inv, s);
    /* exact: r0 and r1 are integers in [-200, 200] */
    return (v8i)_mm256_set_m128i(_mm256_cvtpd_epi32(r1), _mm256_cvtpd_epi32(r0));
}
#else
static inline v8i quantize8(v8 y, double inv, double s) {
    v8d yd = __builtin_convertvector(y, v8d);
    v8d t = yd * inv;
    t = EI_CLAMPD(t, -200.0, 200.0);
    v8d r = (t + EI_ROUND_MAGIC) - EI_ROUND_MAGIC;
    v8d d = t - r;
    v8l near = (d > EI_NEAR_HALF) | (d < -EI_NEAR_HALF);
    v8l any = near | __builtin_shufflevector(near, near, 4, 5, 6, 7, 0, 1, 2, 3);
    any |= __builtin_shufflevector(any, any, 2, 3, 0, 1, 6, 7, 4, 5);
    if (any[0] | any[1])
        for (int k = 0; k < 8; k++)
            if (near[k]) r[k] = __builtin_rint(yd[k] / s);
    return __builtin_convertvector(r, v8i);
}
#endif

/* int8 saturation of quantize8's integers in [-200, 200] */
static inline v8c saturate8(v8i q) {
    v8i lo = q < -128, hi = q > 127;
    q = (lo & -128) | (hi & 127) | (~(lo | hi) & q);
    return __builtin_convertvector(q, v8c);
}

/* n (<= 8) int8 stores */
static inline void store_i8(int8_t *o, v8 y, long n, double inv, double s) {
    v8c c = saturate8(quantize8(y, inv, s));
    if (n == 8)
        memcpy(o, &c, 8);
    else
        memcpy(o, &c, (size_t)n);
}

/* -- the int8 fast epilogue ------------------------------------------------------------ */
/* An int8 output with no activation, relu or clip, and no residual or an int8 one added
 * before the activation: q = saturate(f(act(y))), f(v) = rint(double(v) / s), depends on y
 * only through the quotient y / s, and these activations are monotone, so
 * f(act(y)) = clamp(f(y), f(lo), f(hi)) (relu: lo = 0). The quotient is taken in float32,
 *     t = float(acc) * float(mult / s) + float(zq) * float(zscale / s),
 * within u (4 |t1| + 3 |tz| + 2 |t|) (u = 2^-24: the roundings of both computations) of the
 * reference's double(y) / s; where the result is not saturated |t| <= 200, so
 * |t1| <= 200 + 128 zscale / s: eps below bounds the difference 5x over. Where t lies
 * farther than eps from a half it rounds as the reference's quotient; a vector with a lane
 * nearer (a few in a thousand) takes the exact path. */
typedef struct {
    int on;
    float eps, zs, lo, hi;
    /* SiLU to int8 by its estimate (silu_run): the layer's part of silu_fast_ok, the largest
     * multiplier it takes and the redo margin's relative term */
    int silu;
    double silu_mmax;
    float silu_rel, silu_lim;
} fastq;

static void silu_layer_setup(const qconv_int8_args *a, fastq *f);

static fastq fastq_setup(const qconv_int8_args *a) {
    fastq f = {0, 0.0f, 0.0f, -200.0f, 200.0f, 0, 0.0, 0.0f, 0.0f};
    silu_layer_setup(a, &f);
    const double s = a->oscale;
    if (a->otype != 2 || !(s > 0.0) || !(s < 1e30)) return f;
    if (a->residual && !(a->residual == 1 && a->ztype == 2)) return f;
    double bound = 400.0;
    if (a->residual) {
        double zs = (double)a->zscale / s;
        if (!(fabs(zs) < 1e6)) return f; /* NaN too */
        f.zs = (float)zs;
        bound += 2.0 * 128.0 * fabs(zs);
    }
    f.eps = (float)(bound * 0x1p-20);
    if (!(f.eps < 0.01f)) return f;
    if (a->act == EI_ACT_RELU) {
        f.lo = 0.0f;
    } else if (a->act == EI_ACT_CLIP) {
        if (!isfinite(a->p0) || !isfinite(a->p1)) return f;
        double lo = rint((double)a->p0 / s), hi = rint((double)a->p1 / s);
        f.lo = (float)(lo < -200.0 ? -200.0 : lo > 200.0 ? 200.0 : lo);
        f.hi = (float)(hi < -200.0 ? -200.0 : hi > 200.0 ? 200.0 : hi);
    } else if (a->act != EI_ACT_NONE) {
        return f;
    }
    f.on = 1;
    return f;
}

#define EI_FM_MAX 4096 /* output channels of a call whose multipliers are kept on the stack */

/* float(mult[oc] / s), or 0 where the fast epilogue does not hold for channel oc */
static inline float fastq_mult(const fastq *f, const qconv_int8_args *a, long oc) {
    if (!f->on) return 0.0f;
    double m = a->mult[oc] / a->oscale;
    return fabs(m) < 1e20 ? (float)m : 0.0f; /* NaN: 0 too */
}

/* -- proved requantization --------------------------------------------------------------
 * After a group's term rows the weight array holds three rows of float32 a channel
 * (cpu_qconv.py): vmq (0: not proved), lo, hi, such that for EVERY accumulator the channel
 * can produce, clamp(rint(float32(float32(acc) * vmq)), lo, hi) is the reference's int8
 * output (no residual; no activation, relu or clip: tactics/qdw_requant.py's proof). Those
 * channels store that with no check near half steps. */
typedef struct {
    float v, lo, hi;
} proved;

/* the row after the proved ones: int32 1 in every column where no weight of the group is
 * -128 (the AVX2 path's tile_sign), else 0 */
#define EI_SIGN_ROW 3
/* then one row of int32: each channel's limits on shifted activations (AVX2 tile_shift8),
 * L (low 16 bits: L times its weights' pair sums stays in int16) and L2 (high 16 bits: the
 * same for two consecutive terms' pairs), at most 255 */
#define EI_LIMIT_ROW 4
/* the sign row's bits from this one up: how many leading terms the AVX2 tiles read two at a
 * time, L2 holding for those pairs (cpu_qconv.py pair_terms: the terms ordered so that most
 * pair; 0: every term, as they come) */
#define EI_PAIRED_SHIFT 8

static inline long paired_terms(const qconv_int8_args *a) {
    const long n = a->wts[(a->T + EI_SIGN_ROW) * a->coutp] >> EI_PAIRED_SHIFT;
    return n ? n : a->T;
}

/* the sign row's bit for terms ordered per block of EI_BLOCK_CHANNELS output channels (the
 * AVX2 tiles, cpu_qconv.py QConvNativeOC): block b of a call reads its terms' offsets at
 * toff + b T, its weight rows in that order, its paired count in its first column's bits
 * from EI_PAIRED_SHIFT up (each block's pairs chosen for its own channels) */
#define EI_BLOCK_ORDER 4
#define EI_BLOCK_CHANNELS 24

/* the term offsets and the paired count of the channels from oc (a call's channel) on */
static inline const long *block_toff(const qconv_int8_args *a, long oc, long *T2) {
    const int32_t *sign = a->wts + (a->T + EI_SIGN_ROW) * a->coutp;
    if (!(sign[0] & EI_BLOCK_ORDER)) {
        *T2 = paired_terms(a);
        return a->toff;
    }
    const long b = oc / EI_BLOCK_CHANNELS, n = sign[b * EI_BLOCK_CHANNELS] >> EI_PAIRED_SHIFT;
    *T2 = n ? n : a->T;
    return a->toff + b * a->T;
}

static inline proved proved_of(const qconv_int8_args *a, long oc) {
    proved p = {0.0f, 0.0f, 0.0f};
    if (a->otype != 2 || a->residual) return p;
    const int32_t *r = a->wts + a->T * a->coutp + oc;
    memcpy(&p.v, r, 4);
    memcpy(&p.lo, r + a->coutp, 4);
    memcpy(&p.hi, r + 2 * a->coutp, 4);
    return p;
}

/* n (<= 8) consecutive outputs of channel oc from its accumulators */
static inline __attribute__((always_inline)) void finish8(const int32_t *acc, long n, long oc,
                                                        long pos, const qconv_int8_args *a) {
    v8i iv;
    if (n == 8) {
        memcpy(&iv, acc, 32);
    } else {
        iv = (v8i){0};
        memcpy(&iv, acc, 4 * (size_t)n);
    }
    v8 y = __builtin_convertvector(__builtin_convertvector(iv, v8d) * a->mult[oc], v8);
    v8 z = splat(0.0f);
    if (a->residual) {
        if (a->ztype == 2) {
            v8c zb = {0};
            memcpy(&zb, (const int8_t *)a->z + oc * a->zcs + pos, (size_t)n);
            z = __builtin_convertvector(zb, v8) * a->zscale;
        } else if (n == 8) {
            memcpy(&z, (const float *)a->z + oc * a->zcs + pos, 32);
        } else {
            memcpy(&z, (const float *)a->z + oc * a->zcs + pos, 4 * (size_t)n);
        }
    }
    if (a->residual == 1) y = y + z;
    y = q_activate(y, a->act, a->p0, a->p1);
    if (a->residual == 2) y = y + z;
    switch (a->otype) {
    case 1: store_f16((uint16_t *)a->out + oc * a->ocs + pos, y, n); break;
    case 2: store_i8((int8_t *)a->out + oc * a->ocs + pos, y, n, a->oinv, a->oscale); break;
    default:
        if (n == 8)
            memcpy((float *)a->out + oc * a->ocs + pos, &y, 32);
        else
            memcpy((float *)a->out + oc * a->ocs + pos, &y, 4 * (size_t)n);
    }
}

/* finish8 of an int8 output by the fast epilogue (m = fastq_mult(f, a, oc), nonzero); a
 * group of 8 with a lane near a half is finished by finish8 */
static inline __attribute__((always_inline)) void finish8_q(const int32_t *acc, long n, long oc,
                                                          long pos, const qconv_int8_args *a,
                                                          const fastq *f, float m,
                                                          const proved pq) {
    v8i iv = (v8i){0};
    memcpy(&iv, acc, 4 * (size_t)n);
    if (pq.v != 0.0f) { /* clamping first: rint then stays within vround's range */
        v8 t = vmin(vmax(__builtin_convertvector(iv, v8) * pq.v, splat(pq.lo)), splat(pq.hi));
        v8c c = saturate8(__builtin_convertvector(vround(t), v8i));
        memcpy((int8_t *)a->out + oc * a->ocs + pos, &c, (size_t)n);
        return;
    }
    v8 t = __builtin_convertvector(iv, v8) * m;
    if (a->residual) {
        v8c zb = {0};
        memcpy(&zb, (const int8_t *)a->z + oc * a->zcs + pos, (size_t)n);
        t = t + __builtin_convertvector(zb, v8) * f->zs;
    }
    t = vmin(vmax(t, splat(f->lo)), splat(f->hi));
    v8 r = vround(t), d = t - r;
    const float lim = 0.5f - f->eps;
    v8i near = (d > lim) | (d < -lim);
    v8i any = near | __builtin_shufflevector(near, near, 4, 5, 6, 7, 0, 1, 2, 3);
    any |= __builtin_shufflevector(any, any, 2, 3, 0, 1, 6, 7, 4, 5);
    any |= __builtin_shufflevector(any, any, 1, 0, 3, 2, 5, 4, 7, 6);
    if (any[0]) {
        finish8(acc, n, oc, pos, a);
        return;
    }
    v8c c = saturate8(__builtin_convertvector(r, v8i)); /* r: an integer in [-200, 200] */
    memcpy((int8_t *)a->out + oc * a->ocs + pos, &c, (size_t)n);
}

#if defined(__AVX512F__) && EI_INT8_PATH != EI_Q8_GENERIC
/* finish8 on 16 outputs in zmm registers: the same operations, half the instructions */
static inline __m512 join16(__m256 lo, __m256 hi) {
    return _mm512_castpd_ps(
        _mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(lo)), _mm256_castps_pd(hi), 1));
}

static inline __m256 high8(__m512 v) {
    return _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
}

/* q_sigmoid and q_tanh on 16 lanes (simd.h's vexp16): the same float32 operations in the
 * same order (no fused multiply-adds in this file), so the same bits as two 8-lane calls */
static inline v16 vsel16(v16i m, v16 a, v16 b) { return (v16)((m & (v16i)a) | (~m & (v16i)b)); }


static inline v16 sigmoid16(v16 y) {
    v16 e = vexp16(vsel16(y < 0.0f, y, -y));
    v16 r = 1.0f / (1.0f + e);
    return vsel16(y >= 0.0f, r, e * r);
}

static inline v16 tanh16(v16 y) {
    v16 ay = vsel16(y < 0.0f, -y, y);
    v16 z = y * y;
    v16 p = -5.70498872745e-3f * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    v16 small = p * z * y + y;
    v16 big = 1.0f - 2.0f / (vexp16(2.0f * ay) + 1.0f);
    big = vsel16(y < 0.0f, -big, big);
    return vsel16(ay < 0.625f, small, big);
}

static inline __m512 activate16(__m512 y, long act, float p0, float p1) {
    const __m512 zero = _mm512_setzero_ps(), one = _mm512_set1_ps(1.0f);
    switch (act) {
    case EI_ACT_NONE: return y;
    case EI_ACT_RELU:
        return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(y, zero, _CMP_GT_OQ), zero, y);
    case EI_ACT_LEAKY_RELU:
        return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(y, zero, _CMP_GE_OQ),
                                    _mm512_mul_ps(y, _mm512_set1_ps(p0)), y);
    case EI_ACT_CLIP:
        return _mm512_min_ps(_mm512_max_ps(y, _mm512_set1_ps(p0)), _mm512_set1_ps(p1));
    case EI_ACT_HARD_SWISH: {
        __m512 t = _mm512_add_ps(_mm512_mul_ps(y, _mm512_set1_ps((float)(1.0 / 6.0))),
                                 _mm512_set1_ps(0.5f));
        return _mm512_mul_ps(y, _mm512_min_ps(_mm512_max_ps(t, zero), one));
    }
    case EI_ACT_HARD_SIGMOID: {
        __m512 t = _mm512_add_ps(_mm512_mul_ps(y, _mm512_set1_ps(p0)), _mm512_set1_ps(p1));
        return _mm512_min_ps(_mm512_max_ps(t, zero), one);
    }
    case EI_ACT_SIGMOID: return (__m512)sigmoid16((v16)y);
    case EI_ACT_SILU: return (__m512)((v16)y * sigmoid16((v16)y));
    case EI_ACT_TANH: return (__m512)tanh16((v16)y);
    default: return y;
    }
}

/* quantize8 on 16 floats in float32: y * float(1/s) is within 200 * 2^-22 (< 5e-5) of the
 * quotient y / s for |y / s| <= 200 (past that both saturate), so where it lies farther than
 * that from a half it rounds as the quotient does; the other lanes (about 1e-4 of them) are
 * redone as the quotient in double */
#define EI_NEAR_HALF_F32 (0.5f - 5e-5f)
static inline __m512i quantize16(__m512 y, float inv, double s) {
    __m512 t = _mm512_mul_ps(y, _mm512_set1_ps(inv));
    t = _mm512_min_ps(_mm512_max_ps(t, _mm512_set1_ps(-200.0f)), _mm512_set1_ps(200.0f));
    __m512 r = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __mmask16 near = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(t, r)),
                                        _mm512_set1_ps(EI_NEAR_HALF_F32), _CMP_GT_OQ);
    if (near) {
        float rs[16], ys[16];
        _mm512_storeu_ps(rs, r);
        _mm512_storeu_ps(ys, y);
        for (int k = 0; k < 16; k++)
            if (near >> k & 1) {
                double q = __builtin_rint((double)ys[k] / s);
                rs[k] = (float)(q < -200.0 ? -200.0 : q > 200.0 ? 200.0 : q);
            }
        r = _mm512_loadu_ps(rs);
    }
    return _mm512_cvtps_epi32(r); /* exact: r is an integer in [-200, 200] */
}

static inline void finish16(const int32_t *acc, long oc, long pos, const qconv_int8_args *a) {
    __m512i iv = _mm512_loadu_si512(acc);
    __m512d m = _mm512_set1_pd(a->mult[oc]);
    __m256 lo = _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_cvtepi32_pd(_mm512_castsi512_si256(iv)), m));
    __m256 hi =
        _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(iv, 1)), m));
    __m512 y = join16(lo, hi), z = _mm512_setzero_ps();
    if (a->residual) {
        if (a->ztype == 2) {
            __m128i zb = _mm_loadu_si128((const __m128i *)((const int8_t *)a->z + oc * a->zcs + pos));
            z = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(zb)),
                              _mm512_set1_ps(a->zscale));
        } else {
            z = _mm512_loadu_ps((const float *)a->z + oc * a->zcs + pos);
        }
    }
    if (a->residual == 1) y = _mm512_add_ps(y, z);
    y = activate16(y, a->act, a->p0, a->p1);
    if (a->residual == 2) y = _mm512_add_ps(y, z);
    switch (a->otype) {
    case 1:
        _mm256_storeu_si256((__m256i *)((uint16_t *)a->out + oc * a->ocs + pos),
                            _mm512_cvtps_ph(y, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
        break;
    case 2: {
        __m512i q;
        float inv = (float)a->oinv;
        if (inv > 1e-30f && inv < 1e30f) { /* float32 keeps the error bound above */
            q = quantize16(y, inv, a->oscale);
        } else {
            __m256i q0 = (__m256i)quantize8((v8)_mm512_castps512_ps256(y), a->oinv, a->oscale);
            __m256i q1 = (__m256i)quantize8((v8)high8(y), a->oinv, a->oscale);
            q = _mm512_inserti64x4(_mm512_castsi256_si512(q0), q1, 1);
        }
        _mm_storeu_si128((__m128i *)((int8_t *)a->out + oc * a->ocs + pos),
                         _mm512_cvtsepi32_epi8(q));
        break;
    }
    default: _mm512_storeu_ps((float *)a->out + oc * a->ocs + pos, y);
    }
}
#if EI_INT8_PATH == EI_Q8_VNNI512 /* NT = 4 x 16 lanes */
/* y = float32(double(acc) * mult) for 16 accumulators */
static inline __m512 requant16(const int32_t *acc, double mult) {
    __m512i iv = _mm512_loadu_si512(acc);
    __m512d m = _mm512_set1_pd(mult);
    __m256 lo = _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_cvtepi32_pd(_mm512_castsi512_si256(iv)), m));
    __m256 hi =
        _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(iv, 1)), m));
    return join16(lo, hi);
}

/* 16 int8 outputs of channel oc as the reference computes them (the fast epilogue's
 * fallback): requantization in double, the int8 residual, the activation, quantize16 */
static __m512i exact16_i8(const int32_t *acc, long oc, const int8_t *zr,
                          const qconv_int8_args *a) {
    __m512 y = requant16(acc, a->mult[oc]);
    if (a->residual)
        y = _mm512_add_ps(
            y, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                                 _mm_loadu_si128((const __m128i *)zr))),
                             _mm512_set1_ps(a->zscale)));
    y = activate16(y, a->act, a->p0, a->p1);
    const float inv = (float)a->oinv;
    if (inv > 1e-30f && inv < 1e30f) return quantize16(y, inv, a->oscale);
    __m256i q0 = (__m256i)quantize8((v8)_mm512_castps512_ps256(y), a->oinv, a->oscale);
    __m256i q1 = (__m256i)quantize8((v8)high8(y), a->oinv, a->oscale);
    return _mm512_inserti64x4(_mm512_castsi256_si512(q0), q1, 1);
}

/* a row of nv vectors of int8 outputs of a proved channel: clamp(rint(acc * vmq), lo, hi),
 * no check. |acc * vmq| < 2^30 (the proof's bound): the conversion stays in range, and the
 * int8 saturation is the clamp where a bound is -128 or 127. */
static inline __attribute__((always_inline)) void proved_row_nv(const __m512i *acc,
                                                              const proved pq, int8_t *dst,
                                                              const int nv) {
    const __m512 pv = _mm512_set1_ps(pq.v);
    const __m512 plo = _mm512_set1_ps(pq.lo), phi = _mm512_set1_ps(pq.hi);
    const int clo = pq.lo > -128.0f, chi = pq.hi < 127.0f;
#pragma GCC unroll 4
    for (int v = 0; v < nv; v++) {
        __m512 t = _mm512_mul_ps(_mm512_cvtepi32_ps(acc[v]), pv);
        if (clo) t = _mm512_max_ps(t, plo);
        if (chi) t = _mm512_min_ps(t, phi);
        _mm_storeu_si128((__m128i *)(dst + v * VL), _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(t)));
    }
}

/* a row of nv vectors of int8 outputs by the fast epilogue (m = fastq_mult, nonzero): the
 * nv vectors computed side by side (their chains overlap in the core), one branch for the
 * row; a row with a lane near a half redoes those vectors by exact16_i8. The last vector's
 * lanes past `tail` (a short run: a 1x1 layer's chunk of 48 positions) are neither read
 * (residual) nor stored. */
static inline __attribute__((always_inline)) void fast_row_nv(const __m512i *acc, long oc,
                                                            const int8_t *zr, int8_t *dst,
                                                            const qconv_int8_args *a,
                                                            const fastq *f, float m,
                                                            const int nv, const int res,
                                                            const __mmask16 tail) {
    const __m512 mv = _mm512_set1_ps(m);
    const __m512 lo = _mm512_set1_ps(f->lo), hi = _mm512_set1_ps(f->hi);
    const __m512 lim = _mm512_set1_ps(0.5f - f->eps);
    const __m512i absm = _mm512_set1_epi32(0x7fffffff);
    __m512i r[NV];
    __mmask16 near[NV], any = 0;
#pragma GCC unroll 4
    for (int v = 0; v < nv; v++) {
        const __mmask16 lanes = v == nv - 1 ? tail : (__mmask16)0xffff;
        __m512 t = _mm512_mul_ps(_mm512_cvtepi32_ps(acc[v]), mv);
        if (res) {
            const __m128i zb = lanes == 0xffff ? _mm_loadu_si128((const __m128i *)(zr + v * VL))
                                               : _mm_maskz_loadu_epi8(lanes, zr + v * VL);
            t = _mm512_add_ps(t, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(zb)),
                                               _mm512_set1_ps(f->zs)));
        }
        t = _mm512_min_ps(_mm512_max_ps(t, lo), hi);
        /* t - rint(t) in one instruction (AVX-512 DQ vreduceps; exact), the integer by the
         * conversion's own round to nearest even (the default rounding mode, as
         * _mm512_cvtps_epi32 everywhere in this file) */
#if defined(__AVX512DQ__)
        __m512 d = _mm512_reduce_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
#else
        __m512 d = _mm512_sub_ps(
            t, _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#endif
        d = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(d), absm));
        r[v] = _mm512_cvtps_epi32(t);
        near[v] = _mm512_cmp_ps_mask(d, lim, _CMP_GT_OQ) & lanes;
        any |= near[v];
    }
    if (__builtin_expect(any != 0, 0)) {
        int32_t mem[NT] __attribute__((aligned(64)));
        int8_t zt[VL] = {0}; /* a short last vector's residual, zero past the run */
        for (int v = 0; v < nv; v++) _mm512_store_si512(mem + v * VL, acc[v]);
        for (int v = 0; v < nv; v++) {
            const __mmask16 lanes = v == nv - 1 ? tail : (__mmask16)0xffff;
            const int8_t *zv = zr + v * VL;
            if (res && lanes != 0xffff) {
                _mm_storeu_si128((__m128i *)zt, _mm_maskz_loadu_epi8(lanes, zv));
                zv = zt;
            }
            __m512i q = near[v] ? exact16_i8(mem + v * VL, oc, zv, a) : r[v];
            _mm512_mask_cvtsepi32_storeu_epi8(dst + v * VL, lanes, q);
        }
        return;
    }
#pragma GCC unroll 4
    for (int v = 0; v < nv; v++) {
        if (v == nv - 1 && tail != 0xffff)
            _mm512_mask_cvtsepi32_storeu_epi8(dst + v * VL, tail, r[v]);
        else
            _mm_storeu_si128((__m128i *)(dst + v * VL), _mm512_cvtsepi32_epi8(r[v]));
    }
}

static inline __attribute__((always_inline)) void fast_row(const int32_t *mem, long oc,
                                                         const int8_t *zr, int8_t *dst, long nv,
                                                         const qconv_int8_args *a,
                                                         const fastq *f, float m) {
    __m512i acc[NV];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) acc[v] = _mm512_load_si512(mem + v * VL);
    const proved pq = proved_of(a, oc); /* (none under a residual) */
    if (pq.v != 0.0f) {
        switch (nv) {
        case 1: proved_row_nv(acc, pq, dst, 1); break;
        case 2: proved_row_nv(acc, pq, dst, 2); break;
        case 3: proved_row_nv(acc, pq, dst, 3); break;
        default: proved_row_nv(acc, pq, dst, 4);
        }
        return;
    }
    if (a->residual) {
        switch (nv) {
        case 1: fast_row_nv(acc, oc, zr, dst, a, f, m, 1, 1, 0xffff); break;
        case 2: fast_row_nv(acc, oc, zr, dst, a, f, m, 2, 1, 0xffff); break;
        case 3: fast_row_nv(acc, oc, zr, dst, a, f, m, 3, 1, 0xffff); break;
        default: fast_row_nv(acc, oc, zr, dst, a, f, m, 4, 1, 0xffff);
        }
        return;
    }
    switch (nv) {
    case 1: fast_row_nv(acc, oc, zr, dst, a, f, m, 1, 0, 0xffff); break;
    case 2: fast_row_nv(acc, oc, zr, dst, a, f, m, 2, 0, 0xffff); break;
    case 3: fast_row_nv(acc, oc, zr, dst, a, f, m, 3, 0, 0xffff); break;
    default: fast_row_nv(acc, oc, zr, dst, a, f, m, 4, 0, 0xffff);
    }
}

/* channel oc's row of a tile holding one output run from pos: its nv accumulator vectors r
 * by the fast epilogue, the residual's row beside it */
static inline __attribute__((always_inline)) void fast_run_row(const __m512i *r, long oc,
                                                             long pos, const float *fm,
                                                             const qconv_int8_args *a,
                                                             const fastq *f, const int nv,
                                                             __mmask16 tail) {
    int8_t *dst = (int8_t *)a->out + oc * a->ocs + pos;
    if (a->residual)
        fast_row_nv(r, oc, (const int8_t *)a->z + oc * a->zcs + pos, dst, a, f, fm[oc], nv, 1,
                    tail);
    else
        fast_row_nv(r, oc, dst, dst, a, f, fm[oc], nv, 0, tail); /* (zr not read) */
}

/* a tile of nv vectors holding one output run of n positions from pos (grid column 0 on)
 * of int8 outputs by the fast epilogue (fm[oc] nonzero for each of its rows), finished from
 * the registers the dot products leave: the same operations as tile then finish_tile */
static inline __attribute__((always_inline)) void tile_fast_nv(
    const int32_t *x, const long *toff, long T, const int32_t *w, long wstride,
    const int32_t *init, long rows, long oc0, long pos, const float *fm,
    const qconv_int8_args *a, const fastq *f, const int nv, __mmask16 tail) {
    __m512i acc[MR][NV];
    tile_regs(x, toff, T, w, wstride, init, acc, nv);
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
        if (i >= rows) break;
        fast_run_row(acc[i], oc0 + i, pos, fm, a, f, nv, tail);
    }
}

/* The short tiles' dot products (MR = 6 rows x nv = 2 or 3 vectors) in fixed registers, the
 * accumulators stored to acc[i * NT + v * VL] (accumulators from zmm8, the term's activation
 * vectors zmm0.., a row's broadcast weight quad zmm4-zmm7 in turn; wsb: the weight rows'
 * stride in bytes; GAS evaluates the displacements' products). GCC compiled the intrinsics'
 * loop for these tiles with a dozen register copies and several stack spills a term (the
 * 3-vector tile: 16 moves, 6 stores, 2 loads beside its 18 dot products); the whole tile's
 * loop (one spill) is as fast as this. */
#define EI_DP_INIT2(i, a0, a1)                                                                 \
    "vpbroadcastd " #i "*4(%[init]), %%zmm" #a0 "\n\tvmovdqa64 %%zmm" #a0 ", %%zmm" #a1 "\n\t"
#define EI_DP_INIT3(i, a0, a1, a2)                                                             \
    EI_DP_INIT2(i, a0, a1) "vmovdqa64 %%zmm" #a0 ", %%zmm" #a2 "\n\t"
#define EI_DP_ROW2(i, b, a0, a1)                                                               \
    "vpbroadcastd " #i "*4(%[w]), %%zmm" #b "\n\t"                                            \
    "vpdpbusd %%zmm" #b ", %%zmm0, %%zmm" #a0 "\n\tvpdpbusd %%zmm" #b ", %%zmm1, %%zmm" #a1 "\n\t"
#define EI_DP_ROW3(i, b, a0, a1, a2)                                                           \
    EI_DP_ROW2(i, b, a0, a1) "vpdpbusd %%zmm" #b ", %%zmm2, %%zmm" #a2 "\n\t"
#define EI_DP_STORE2(i, a0, a1)                                                                \
    "vmovdqa64 %%zmm" #a0 ", " #i "*256(%[acc])\n\tvmovdqa64 %%zmm" #a1 ", " #i "*256+64(%[acc])\n\t"
#define EI_DP_STORE3(i, a0, a1, a2)                                                            \
    EI_DP_STORE2(i, a0, a1) "vmovdqa64 %%zmm" #a2 ", " #i "*256+128(%[acc])\n\t"
/* the tile: its rows' starts, the term loop (the term's activation vectors LOADS, the rows'
 * dot products ROWS), its accumulators to acc */
#define EI_TILE_DP(name, INITS, LOADS, ROWS, STORES, ...)                                      \
    static __attribute__((noinline)) void name(const int32_t *x, const long *toff, long T,    \
                                               const int32_t *w, long wsb,                    \
                                               const int32_t *init, int32_t *acc) {           \
        __asm__ volatile(INITS "test %[T], %[T]\n\tjle 2f\n\t.p2align 5\n1:\n\t"                \
                               "mov (%[toff]), %%rax\n\t" LOADS ROWS                          \
                               "add $8, %[toff]\n\tadd %[wsb], %[w]\n\tdec %[T]\n\tjnz 1b\n"    \
                               "2:\n\t" STORES                                                \
                         : [toff] "+r"(toff), [w] "+r"(w), [T] "+r"(T)                        \
                         : [x] "r"(x), [wsb] "r"(wsb), [init] "r"(init), [acc] "r"(acc)       \
                         : "rax", "cc", "memory", __VA_ARGS__);                               \
    }
#define EI_DP_LOAD(v) "vmovdqu64 " #v "*64(%[x],%%rax,4), %%zmm" #v "\n\t"
EI_TILE_DP(tile_dp2,
           EI_DP_INIT2(0, 8, 9) EI_DP_INIT2(1, 10, 11) EI_DP_INIT2(2, 12, 13)
               EI_DP_INIT2(3, 14, 15) EI_DP_INIT2(4, 16, 17) EI_DP_INIT2(5, 18, 19),
           EI_DP_LOAD(0) EI_DP_LOAD(1),
           EI_DP_ROW2(0, 4, 8, 9) EI_DP_ROW2(1, 5, 10, 11) EI_DP_ROW2(2, 6, 12, 13)
               EI_DP_ROW2(3, 7, 14, 15) EI_DP_ROW2(4, 4, 16, 17) EI_DP_ROW2(5, 5, 18, 19),
           EI_DP_STORE2(0, 8, 9) EI_DP_STORE2(1, 10, 11) EI_DP_STORE2(2, 12, 13)
               EI_DP_STORE2(3, 14, 15) EI_DP_STORE2(4, 16, 17) EI_DP_STORE2(5, 18, 19),
           "xmm0", "xmm1", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11",
           "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19")
EI_TILE_DP(tile_dp3,
           EI_DP_INIT3(0, 8, 9, 10) EI_DP_INIT3(1, 11, 12, 13) EI_DP_INIT3(2, 14, 15, 16)
               EI_DP_INIT3(3, 17, 18, 19) EI_DP_INIT3(4, 20, 21, 22) EI_DP_INIT3(5, 23, 24, 25),
           EI_DP_LOAD(0) EI_DP_LOAD(1) EI_DP_LOAD(2),
           EI_DP_ROW3(0, 4, 8, 9, 10) EI_DP_ROW3(1, 5, 11, 12, 13) EI_DP_ROW3(2, 6, 14, 15, 16)
               EI_DP_ROW3(3, 7, 17, 18, 19) EI_DP_ROW3(4, 4, 20, 21, 22)
                   EI_DP_ROW3(5, 5, 23, 24, 25),
           EI_DP_STORE3(0, 8, 9, 10) EI_DP_STORE3(1, 11, 12, 13) EI_DP_STORE3(2, 14, 15, 16)
               EI_DP_STORE3(3, 17, 18, 19) EI_DP_STORE3(4, 20, 21, 22)
                   EI_DP_STORE3(5, 23, 24, 25),
           "xmm0", "xmm1", "xmm2", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
           "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18", "xmm19",
           "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25")
#undef EI_TILE_DP
#undef EI_DP_LOAD
#undef EI_DP_INIT2
#undef EI_DP_INIT3
#undef EI_DP_ROW2
#undef EI_DP_ROW3
#undef EI_DP_STORE2
#undef EI_DP_STORE3

/* the whole tile (NT positions): inlined in its one caller, as GCC compiles it best there
 * (out of line, or beside the short tiles' instances, the 1x1 layers ran 2-27 % longer) */
static void tile_fast(const int32_t *x, const long *toff, long T, const int32_t *w, long wstride,
                      const int32_t *init, long rows, long oc0, long pos, const float *fm,
                      const qconv_int8_args *a, const fastq *f) {
    tile_fast_nv(x, toff, T, w, wstride, init, rows, oc0, pos, fm, a, f, NV, 0xffff);
}

/* the rows of a short tile's accumulators (mem, as tile_dp2 / tile_dp3 leave them) by the
 * fast epilogue */
static inline __attribute__((always_inline)) void short_rows(const int32_t *mem, long rows,
                                                           long oc0, long pos, const float *fm,
                                                           const qconv_int8_args *a,
                                                           const fastq *f, const int nv,
                                                           __mmask16 tail) {
    for (long i = 0; i < rows; i++) {
        __m512i r[NV];
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) r[v] = _mm512_load_si512(mem + i * NT + v * VL);
        fast_run_row(r, oc0 + i, pos, fm, a, f, nv, tail);
    }
}

/* a short tile: n < NT positions, ceil(n / VL) vectors */
static __attribute__((noinline)) void tile_fast_short(const int32_t *x, const long *toff, long T,
                                                      const int32_t *w, long wstride,
                                                      const int32_t *init, long rows, long oc0,
                                                      long pos, const float *fm,
                                                      const qconv_int8_args *a, const fastq *f,
                                                      long n) {
    const int nv = (int)((n + VL - 1) / VL);
    const __mmask16 tail = (__mmask16)((1u << (n - VL * (nv - 1))) - 1);
    if (nv == 4) {
        tile_fast_nv(x, toff, T, w, wstride, init, rows, oc0, pos, fm, a, f, 4, tail);
        return;
    }
    int32_t mem[MR * NT] __attribute__((aligned(64)));
    if (nv == 3) {
        tile_dp3(x, toff, T, w, 4 * wstride, init, mem);
        short_rows(mem, rows, oc0, pos, fm, a, f, 3, tail);
    } else {
        tile_dp2(x, toff, T, w, 4 * wstride, init, mem);
        short_rows(mem, rows, oc0, pos, fm, a, f, 2, tail);
    }
}

/* a whole tile (NT positions) of int8 outputs whose rows are all proved channels, to out: the accumulators through memory (in registers, beside the rows' epilogue, GCC
 * spills them in the dot product loop), and a function of its own (inlined, it changes how
 * the caller's tile_fast is compiled, for the worse) */
static __attribute__((noinline)) void tile_proved(const int32_t *x, const long *toff, long T,
                                                  const int32_t *w, long wstride,
                                                  const int32_t *init, long rows, long oc0,
                                                  const qconv_int8_args *a, int8_t *out) {
    int32_t acc[MR * NT] __attribute__((aligned(64)));
    tile_rows(x, toff, T, w, wstride, init, acc, rows, NV);
    for (long i = 0; i < rows; i++) {
        __m512i r[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) r[v] = _mm512_load_si512(acc + i * NT + v * VL);
        proved_row_nv(r, proved_of(a, oc0 + i), out + i * a->ocs, NV);
    }
}

/* a strip of several output runs from its first column on (a 1 x 1 chunk across images:
 * pimg; a 7 x 7 map's strips each meet two or three images) of int8 outputs by the fast
 * epilogue (fm[oc] nonzero for each row), the accumulators through memory: each row's
 * outputs to a 64-byte row on the stack (its residual gathered there first, a masked load
 * a run), then to each run by one masked store (finish_tile's staging: a memcpy a run) */
static __attribute__((noinline)) void tile_segs(const int32_t *x, const long *toff, long T,
                                                const int32_t *w, long wstride,
                                                const int32_t *init, long rows, long oc0,
                                                const long *seg_j, const long *seg_n,
                                                const long *seg_pos, long nseg, long nv,
                                                const float *fm, const qconv_int8_args *a,
                                                const fastq *f) {
    int32_t acc[MR * NT] __attribute__((aligned(64)));
    int8_t zrow[NT] __attribute__((aligned(64))), orow[NT] __attribute__((aligned(64)));
    __mmask64 k[NT];
    for (long s = 0; s < nseg; s++) /* lanes [seg_j, seg_j + seg_n) of 64 */
        k[s] = (seg_n[s] < 64 ? ((__mmask64)1 << seg_n[s]) - 1 : ~(__mmask64)0) << seg_j[s];
    tile_rows(x, toff, T, w, wstride, init, acc, rows, nv);
    for (long i = 0; i < rows; i++) {
        const long oc = oc0 + i;
        /* (a run's lane j at its position: the row's base seg_j before its first) */
        if (a->residual) {
            const int8_t *zc = (const int8_t *)a->z + oc * a->zcs;
            __m512i zv = _mm512_setzero_si512();
            for (long s = 0; s < nseg; s++)
                zv = _mm512_mask_loadu_epi8(zv, k[s], zc + seg_pos[s] - seg_j[s]);
            _mm512_store_si512(zrow, zv);
        }
        fast_row(acc + i * NT, oc, zrow, orow, nv, a, f, fm[oc]);
        const __m512i ov = _mm512_load_si512(orow);
        int8_t *oc_out = (int8_t *)a->out + oc * a->ocs;
        for (long s = 0; s < nseg; s++)
            _mm512_mask_storeu_epi8(oc_out + seg_pos[s] - seg_j[s], k[s], ov);
    }
}

/* activate16 on a row of NV vectors: the activation chosen once, the NV evaluations
 * independent (their exp and division chains overlap in the core) */
static inline __attribute__((always_inline)) void activate_row(__m512 *y, long act, float p0,
                                                               float p1) {
    switch (act) {
    case EI_ACT_NONE: return;
    case EI_ACT_SILU:
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) y[v] = (__m512)((v16)y[v] * sigmoid16((v16)y[v]));
        return;
    case EI_ACT_SIGMOID:
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) y[v] = (__m512)sigmoid16((v16)y[v]);
        return;
    default:
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) y[v] = activate16(y[v], act, p0, p1);
    }
}

/* the epilogue of a whole register tile (rows x NT accumulators, the dropped grid columns
 * too): each row finished in registers into a staging row, then its runs copied out.
 * The same operations as finish16 on every output. */
static void finish_tile(const int32_t *acc, long rows, long oc0, const long *seg_j,
                        const long *seg_n, const long *seg_pos, long nseg,
                        const qconv_int8_args *a, const fastq *fq, const float *fm, long nv) {
    int32_t stage[NT] __attribute__((aligned(64)));
    int32_t zrow[NT] __attribute__((aligned(64)));
    const long es = a->otype == 2 ? 1 : a->otype == 1 ? 2 : 4;
    const long zes = a->ztype == 2 ? 1 : 4;
    const float inv = (float)a->oinv;
    const int narrow = inv > 1e-30f && inv < 1e30f; /* quantize16's error bound holds */
    long covered = 0;
    for (long s = 0; s < nseg; s++) covered += seg_n[s];
    if (a->residual && covered < NT) memset(zrow, 0, sizeof zrow);
    /* one run over the whole tile (no dropped columns): read and write in place */
    const int whole = nseg == 1 && seg_n[0] == NT;
    for (long i = 0; i < rows; i++) {
        const long oc = oc0 + i;
        const float m = fm ? fm[oc] : fastq_mult(fq, a, oc);
        if (m != 0.0f) {
            const int8_t *zr = (const int8_t *)zrow;
            if (a->residual) {
                const int8_t *zc = (const int8_t *)a->z + oc * a->zcs;
                if (whole)
                    zr = zc + seg_pos[0];
                else
                    for (long s = 0; s < nseg; s++)
                        memcpy((int8_t *)zrow + seg_j[s], zc + seg_pos[s], (size_t)seg_n[s]);
            }
            int8_t *oc_out = (int8_t *)a->out + oc * a->ocs;
            int8_t *dst = whole ? oc_out + seg_pos[0] : (int8_t *)stage;
            fast_row(acc + i * NT, oc, zr, dst, nv, a, fq, m);
            if (whole) continue;
            for (long s = 0; s < nseg; s++)
                memcpy(oc_out + seg_pos[s], (const int8_t *)stage + seg_j[s], (size_t)seg_n[s]);
            continue;
        }
        __m512 y[NV], z[NV];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) z[v] = _mm512_setzero_ps();
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) y[v] = requant16(acc + i * NT + v * VL, a->mult[oc]);
        if (a->residual) {
            const char *zc = (const char *)a->z + oc * a->zcs * zes, *zr = (const char *)zrow;
            if (whole)
                zr = zc + seg_pos[0] * zes;
            else
                for (long s = 0; s < nseg; s++)
                    memcpy((char *)zrow + seg_j[s] * zes, zc + seg_pos[s] * zes,
                           (size_t)(seg_n[s] * zes));
            if (a->ztype == 2) {
                const __m512 zs = _mm512_set1_ps(a->zscale);
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++)
                    z[v] = _mm512_mul_ps(
                        _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                            _mm_loadu_si128((const __m128i *)((const int8_t *)zr + v * VL)))),
                        zs);
            } else {
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++) z[v] = _mm512_loadu_ps((const float *)zr + v * VL);
            }
            if (a->residual == 1)
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++) y[v] = _mm512_add_ps(y[v], z[v]);
        }
        activate_row(y, a->act, a->p0, a->p1);
        char *oc_out = (char *)a->out + oc * a->ocs * es;
        char *dst = whole ? oc_out + seg_pos[0] * es : (char *)stage;
        if (a->residual == 2)
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) y[v] = _mm512_add_ps(y[v], z[v]);
        switch (a->otype) {
        case 1:
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++)
                _mm256_storeu_si256(
                    (__m256i *)((uint16_t *)dst + v * VL),
                    _mm512_cvtps_ph(y[v], _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
            break;
        case 2:
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) {
                __m512i q;
                if (narrow) {
                    q = quantize16(y[v], inv, a->oscale);
                } else {
                    __m256i q0 =
                        (__m256i)quantize8((v8)_mm512_castps512_ps256(y[v]), a->oinv, a->oscale);
                    __m256i q1 = (__m256i)quantize8((v8)high8(y[v]), a->oinv, a->oscale);
                    q = _mm512_inserti64x4(_mm512_castsi256_si512(q0), q1, 1);
                }
                _mm_storeu_si128((__m128i *)((int8_t *)dst + v * VL), _mm512_cvtsepi32_epi8(q));
            }
            break;
        default:
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) _mm512_storeu_ps((float *)dst + v * VL, y[v]);
        }
        if (whole) continue;
        for (long s = 0; s < nseg; s++)
            memcpy(oc_out + seg_pos[s] * es, (const char *)stage + seg_j[s] * es,
                   (size_t)(seg_n[s] * es));
    }
}
#define EI_TILE_EPILOGUE 1
#else
#define EI_TILE_EPILOGUE 0
#endif
#define EI_WIDE 16
#else
#define EI_WIDE 0
#define EI_TILE_EPILOGUE 0
#endif


/* a run of n int8 outputs of channel oc by the fast epilogue */
#if defined(__AVX2__) && EI_INT8_PATH != EI_Q8_GENERIC
/* 8 int32 in [-200, 200] (the bounds of the integers below) saturated to int8, stored */
static inline void store8_i8(int8_t *o, __m256i q) {
    __m128i h = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
    _mm_storel_epi64((__m128i *)o, _mm_packs_epi16(h, h));
}

/* 4 vectors of 8 int32 in [-200, 200] saturated to int8, in order */
static inline __m256i pack4_i8(const __m256i *q) {
    /* [q0 0..3, q1 0..3, q2 0..3, q3 0..3 | the same of 4..7] as dwords, then in order */
    __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    return _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* finish8_q on nv (1 or 4) vectors of 8 outputs side by side in ymm registers (one branch
 * for them all, one store): the same float32 operations in the same order (the conversion
 * rounds to nearest even as vround does, then exactly); 0 where a lane lies near a half
 * (nothing stored: the caller finishes them by finish8 / finish_run) */
static inline __attribute__((always_inline)) int fast_vecs(const int32_t *acc, long oc, long pos,
                                                           const qconv_int8_args *a,
                                                           const fastq *f, float m,
                                                           const proved pq, const int nv) {
    int8_t *o = (int8_t *)a->out + oc * a->ocs + pos;
    __m256i q[4];
    if (pq.v != 0.0f) {
        const __m256 pv = _mm256_set1_ps(pq.v);
        const __m256 plo = _mm256_set1_ps(pq.lo), phi = _mm256_set1_ps(pq.hi);
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) {
            const __m256 y = _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(acc + 8 * v)));
            __m256 t = _mm256_max_ps(_mm256_mul_ps(y, pv), plo);
            q[v] = _mm256_cvtps_epi32(_mm256_min_ps(t, phi));
        }
    } else {
        const __m256 mv = _mm256_set1_ps(m), lim = _mm256_set1_ps(0.5f - f->eps);
        const __m256 lo = _mm256_set1_ps(f->lo), hi = _mm256_set1_ps(f->hi);
        const int8_t *zr = a->residual ? (const int8_t *)a->z + oc * a->zcs + pos : NULL;
        int any = 0;
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) {
            const __m256 y = _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(acc + 8 * v)));
            __m256 t = _mm256_mul_ps(y, mv);
            if (zr) {
                __m128i zb = _mm_loadl_epi64((const __m128i *)(zr + 8 * v));
                t = _mm256_add_ps(t, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(zb)),
                                                   _mm256_set1_ps(f->zs)));
            }
            t = _mm256_min_ps(_mm256_max_ps(t, lo), hi);
            const __m256 r = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            const __m256 d = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_sub_ps(t, r));
            any |= _mm256_movemask_ps(_mm256_cmp_ps(d, lim, _CMP_GT_OQ));
            q[v] = _mm256_cvtps_epi32(r);
        }
        if (any) return 0;
    }
    if (nv == 1) store8_i8(o, q[0]);
    else _mm256_storeu_si256((__m256i *)o, pack4_i8(q));
    return 1;
}
#endif

#if defined(__AVX2__) && EI_INT8_PATH != EI_Q8_GENERIC && !EI_WIDE
static inline void finish_run(const int32_t *acc, long n, long oc, long pos,
                              const qconv_int8_args *a, const fastq *f);
#endif

static void finish_run_q(const int32_t *acc, long n, long oc, long pos, const qconv_int8_args *a,
                         const fastq *f, float m) {
    const proved pq = proved_of(a, oc);
    long j = 0;
#if defined(__AVX2__) && EI_INT8_PATH != EI_Q8_GENERIC && !EI_WIDE
    for (; j + 32 <= n; j += 32)
        if (!fast_vecs(acc + j, oc, pos + j, a, f, m, pq, 4))
            finish_run(acc + j, 32, oc, pos + j, a, f);
#endif
#if defined(__AVX2__) && EI_INT8_PATH != EI_Q8_GENERIC
    for (; j + 8 <= n; j += 8)
        if (!fast_vecs(acc + j, oc, pos + j, a, f, m, pq, 1)) finish8(acc + j, 8, oc, pos + j, a);
    if (j < n && n >= 8 && !a->residual) {
        /* a run's last 1-7 outputs as its last 8 again (those before: the same bytes
         * stored twice; not where the residual might be the output's own buffer), not by
         * finish8_q: the stem's runs end at its rows' ends (112 of a grid row's 115), and
         * its tails took a quarter of its epilogue */
        j = n - 8;
        if (!fast_vecs(acc + j, oc, pos + j, a, f, m, pq, 1)) finish8(acc + j, 8, oc, pos + j, a);
        j = n;
    }
#endif
    for (; j + 8 <= n; j += 8) finish8_q(acc + j, 8, oc, pos + j, a, f, m, pq);
    if (j < n) finish8_q(acc + j, n - j, oc, pos + j, a, f, m, pq);
}

#if defined(__AVX2__) && EI_INT8_PATH != EI_Q8_GENERIC && !EI_WIDE
/* -- the AVX2 epilogue of the other outputs (finish8's operations, several vectors at once) --
 * finish8 on AVX2 one vector of 8 at a time was about 80 cycles a vector under SiLU (a
 * 1 x 1 64 -> 64 40 x 40 layer: 530 us against 200 with no activation): its int8 saturation
 * and byte conversion scalarized by GCC, the quotient in double, the exp and division chains
 * of one vector at a time. finish_vecs takes nv (<= 4) vectors side by side: the same float32
 * operations on each output (y = float32(double(acc) * mult) in double, as the reference),
 * the activation chosen once, then quantize8f: the quotient in float32, y * float(1 / s),
 * within |t| 2^-23 (< 2.4e-5 where |t| <= 200; past that both saturate) of the reference's
 * double(y) / s, so where it lies farther than EI_NEAR_HALF_F8 from a half it rounds as that
 * does; the lanes nearer are redone as the quotient in double (quantize16's bound on
 * AVX-512). */
#define EI_NEAR_HALF_F8 (0.5f - 5e-5f)

/* the activation on nv vectors (the activation chosen once: their chains overlap) */
static inline __attribute__((always_inline)) void activate_vecs(v8 *y, long act, float p0,
                                                                float p1, const int nv) {
    switch (act) {
    case EI_ACT_NONE: return;
    case EI_ACT_SILU:
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) y[v] = y[v] * q_sigmoid(y[v]);
        return;
    case EI_ACT_SIGMOID:
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) y[v] = q_sigmoid(y[v]);
        return;
    default:
        for (int v = 0; v < nv; v++) y[v] = q_activate(y[v], act, p0, p1);
    }
}

/* nv (<= 4) vectors of 8 integers (float32, in (-2^31, 200]) saturated to int8, n (<= 8 nv)
 * of them stored at o */
static inline __attribute__((always_inline)) void store_q_vecs(const __m256 *r, long n,
                                                              int8_t *o, const int nv) {
    /* exact conversions, saturated to int8 by the packs */
    __m256i q[4];
#pragma GCC unroll 4
    for (int v = 0; v < 4; v++) q[v] = v < nv ? _mm256_cvtps_epi32(r[v]) : _mm256_setzero_si256();
    if (nv == 1) {
        if (n == 8) {
            store8_i8(o, q[0]);
        } else {
            int8_t b[8];
            store8_i8(b, q[0]);
            memcpy(o, b, (size_t)n);
        }
        return;
    }
    const __m256i b = pack4_i8(q);
    if (n == 32) {
        _mm256_storeu_si256((__m256i *)o, b);
    } else if (n == 16) {
        _mm_storeu_si128((__m128i *)o, _mm256_castsi256_si128(b));
    } else {
        int8_t buf[32];
        _mm256_storeu_si256((__m256i *)buf, b);
        memcpy(o, buf, (size_t)n);
    }
}

/* nv (<= 4) vectors of 8 int8 outputs as the reference rounds y / s (see above), stored at
 * o (n <= 8 nv of them) */
static inline __attribute__((always_inline)) void quantize_vecs(const v8 *y, long n, int8_t *o,
                                                                float inv, double s,
                                                                const int nv) {
    const __m256 fi = _mm256_set1_ps(inv), lim = _mm256_set1_ps(EI_NEAR_HALF_F8);
    const __m256 lo = _mm256_set1_ps(-200.0f), hi = _mm256_set1_ps(200.0f);
    __m256 r[4], near[4];
    int any = 0;
#pragma GCC unroll 4
    for (int v = 0; v < nv; v++) {
        __m256 t = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps((__m256)y[v], fi), lo), hi);
        r[v] = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __m256 d = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_sub_ps(t, r[v]));
        near[v] = _mm256_cmp_ps(d, lim, _CMP_GT_OQ);
        any |= _mm256_movemask_ps(near[v]);
    }
    if (__builtin_expect(any != 0, 0)) { /* the near lanes: rint(double(y) / s), clamped */
        const __m256d sd = _mm256_set1_pd(s);
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) {
            const __m256 yv = (__m256)y[v];
            __m256d e0 = _mm256_div_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(yv)), sd);
            __m256d e1 = _mm256_div_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(yv, 1)), sd);
            e0 = _mm256_round_pd(e0, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            e1 = _mm256_round_pd(e1, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            /* (clamped after the conversion to float32: the same, monotone; a near lane is
             * no NaN) */
            __m256 e = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm256_cvtpd_ps(e0)),
                                            _mm256_cvtpd_ps(e1), 1);
            e = _mm256_min_ps(_mm256_max_ps(e, lo), hi);
            r[v] = _mm256_blendv_ps(r[v], e, near[v]);
        }
    }
    store_q_vecs(r, n, o, nv);
}

/* n (<= 8 nv, more than 8 (nv - 1)) consecutive outputs of channel oc: finish8 on each 8.
 * Reads 8 nv accumulators (past the run: the tile's next columns or rows, or the 8 ints
 * after its last row, EI_ACC_PAD: finished, then dropped) */
static inline __attribute__((always_inline)) void finish_vecs(const int32_t *acc, long n,
                                                              long oc, long pos,
                                                              const qconv_int8_args *a,
                                                              const int nv) {
    const int full = n == 8 * nv;
    const __m256d m = _mm256_set1_pd(a->mult[oc]);
    v8 y[4];
#pragma GCC unroll 4
    for (int v = 0; v < nv; v++) {
        __m256i iv = _mm256_loadu_si256((const __m256i *)(acc + 8 * v));
        __m128 l = _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_cvtepi32_pd(_mm256_castsi256_si128(iv)), m));
        __m128 h =
            _mm256_cvtpd_ps(_mm256_mul_pd(_mm256_cvtepi32_pd(_mm256_extracti128_si256(iv, 1)), m));
        y[v] = (v8)_mm256_insertf128_ps(_mm256_castps128_ps256(l), h, 1);
    }
    v8 z[4] = {splat(0.0f), splat(0.0f), splat(0.0f), splat(0.0f)};
    if (a->residual) {
        if (a->ztype == 2) {
            int8_t zb[32] = {0};
            memcpy(zb, (const int8_t *)a->z + oc * a->zcs + pos, (size_t)n);
            const v8 zs = splat(a->zscale);
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++)
                z[v] = (v8)_mm256_cvtepi32_ps(
                           _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(zb + 8 * v))))
                       * zs;
        } else {
            float zf[32] = {0};
            memcpy(zf, (const float *)a->z + oc * a->zcs + pos, 4 * (size_t)n);
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) memcpy(&z[v], zf + 8 * v, 32);
        }
        if (a->residual == 1)
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) y[v] = y[v] + z[v];
    }
    activate_vecs(y, a->act, a->p0, a->p1, nv);
    if (a->residual == 2)
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) y[v] = y[v] + z[v];
    const float inv = (float)a->oinv;
    switch (a->otype) {
    case 1:
        for (int v = 0; v < nv; v++)
            store_f16((uint16_t *)a->out + oc * a->ocs + pos + 8 * v, y[v],
                      n - 8 * v < 8 ? n - 8 * v : 8);
        break;
    case 2:
        if (inv > 1e-30f && inv < 1e30f) { /* float32 keeps the error bound above */
            quantize_vecs(y, n, (int8_t *)a->out + oc * a->ocs + pos, inv, a->oscale, nv);
        } else {
            for (int v = 0; v < nv; v++)
                store_i8((int8_t *)a->out + oc * a->ocs + pos + 8 * v, y[v],
                         n - 8 * v < 8 ? n - 8 * v : 8, a->oinv, a->oscale);
        }
        break;
    default:
        if (full)
            memcpy((float *)a->out + oc * a->ocs + pos, y, 32 * (size_t)nv);
        else
            memcpy((float *)a->out + oc * a->ocs + pos, y, 4 * (size_t)n);
    }
}

/* -- SiLU to int8 without its exact chain -------------------------------------------------
 * finish_vecs' SiLU (an int8 output, no residual or an int8 one added after it) rounds t =
 * silu(y) / s, y = float32(double(acc) mult), silu in float32 (q_sigmoid's exp and
 * division). silu_q_vecs estimates t in fewer operations, from c = float32(acc): the
 * numerator y / s as c float32(mult / s), exp(-y) as 2^xl, xl = c float32(-mult log2 e),
 * split into n = rint(xl) and f = xl - n (exact), 2^f by a degree-4 polynomial (minimax
 * relative error 2.6e-6 on [-1/2, 1/2]; fused multiply-adds), 2^n by the exponent bits (n
 * clamped to [-126, 127]: below, exp(-y) < 2^-126 and the sum 1 + exp(-y) rounds to 1 alike;
 * above, y < -88 and both t round to 0), and one division. The estimate lies within
 * |t| (3.9e-6 + 2.4e-7 |y|) of the chain's t (the polynomial and its float32 steps 2.9e-6,
 * both chains' other float32 steps 8e-7, the numerator's and xl's 2 ulps times at most
 * 1 + |y| through silu) and 2.4e-5 (the float32 quotient). The |y| term is smaller: an error
 * of xl changes silu by |y| (1 - sigmoid(y)) times as much, under 0.28 for y >= 0, and for y <
 * 0 |t| |y| = y^2 sigmoid(y) / s < 0.54 / s. So the redo margin is one pair of numbers a
 * layer: 5e-5 + 2^-20 0.54 / s + |t| (2^-16 + 2^-20 1.28) from a half (EI_NEAR_HALF_F8,
 * EI_SILU_MARGIN, EI_SILU_MARGIN_Y: about 4 times each term; the residual's |z / s| counted
 * in |t|). A vector with a lane nearer a half than the margin is finished by
 * finish_vecs (its exact chain). Against stop 28's estimate (a two-step exp reduction, a
 * degree-4 exp(u) polynomial of error 6.3e-6, t clamped, the margin per lane from |y|), 16
 * instead of 20 of the multiply-add pipes' operations a vector; a qconv_int8_finish
 * microbenchmark, 64-output runs, y ~ N(-0.5, 2.5^2), scale 0.05 (1 thread CPU time):
 * 0.96 -> 0.74 ns an output. Measured: the same bits as finish_vecs on bench/silu_margin.py's
 * draws (y ranges 0.3-120, scales 0.002-5, multipliers 1e-7-1e-2, int8 residuals). No clamp
 * of t: silu_layer_setup keeps |t| below 2^30 (mult / s < 1/2: |y / s| < |acc| / 2), and the
 * packs saturate. */
#if defined(__FMA__)
#define EI_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#else
#define EI_FMA(a, b, c) _mm256_add_ps(_mm256_mul_ps(a, b), c)
#endif
#ifndef EI_SILU_MARGIN /* (bench/silu_margin.py --scale builds others) */
#define EI_SILU_MARGIN 1.52587890625e-5f     /* 2^-16 */
#define EI_SILU_MARGIN_Y 9.5367431640625e-7f /* 2^-20 */
#endif

/* the constants of a run of channel oc's SiLU outputs */
typedef struct {
    float km, kx; /* float32(mult / s), float32(-mult log2 e) */
    float rel, lim; /* the margin: 0.5 - lim + |t| rel (above) */
    float inv, zs;
} silu_consts;

/* nv (<= 4) vectors of 8 outputs (n <= 8 nv of them) stored at o; bit v set where vector v
 * has a lane near a half (those outputs stored too, to be redone). zr: the int8 residual
 * added after the activation (residual 2, z = float32(zq) * zs as finish_vecs), or NULL;
 * the margin then takes |silu / s| + |z / s| for |t| (the sum's terms rounded apart) */
static inline __attribute__((always_inline)) unsigned silu_q_vecs(const int32_t *acc, long n,
                                                                 int8_t *o, const silu_consts *k,
                                                                 const int8_t *zr, const int nv) {
    const __m256 vkm = _mm256_set1_ps(k->km), vkx = _mm256_set1_ps(k->kx);
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    const __m256 lim = _mm256_set1_ps(k->lim), rel = _mm256_set1_ps(k->rel);
    int8_t zb[32];
    if (zr && n < 8 * nv) { /* whole vectors of the residual: past the run, zeros */
        memset(zb, 0, sizeof zb);
        memcpy(zb, zr, (size_t)n);
        zr = zb;
    }
    __m256 r[4], near[4];
#pragma GCC unroll 4
    for (int v = 0; v < nv; v++) {
        const __m256 c = _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(acc + 8 * v)));
        /* exp(-y) = 2^n 2^f */
        const __m256 xl = _mm256_mul_ps(c, vkx);
        const __m256 nf = _mm256_round_ps(xl, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m256 f = _mm256_sub_ps(xl, nf);
        const __m256i ni = _mm256_min_epi32(
            _mm256_max_epi32(_mm256_cvtps_epi32(nf), _mm256_set1_epi32(-126)),
            _mm256_set1_epi32(127));
        const __m256i sc = _mm256_slli_epi32(_mm256_add_epi32(ni, _mm256_set1_epi32(127)), 23);
        __m256 p = EI_FMA(_mm256_set1_ps(9.570068679749966e-3f), f,
                          _mm256_set1_ps(5.5917806923389435e-2f));
        p = EI_FMA(p, f, _mm256_set1_ps(2.40247443318367e-1f));
        p = EI_FMA(p, f, _mm256_set1_ps(6.931218504905701e-1f));
        p = EI_FMA(p, f, _mm256_set1_ps(9.999992847442627e-1f));
        /* t = (y / s) / (1 + exp(-y)) */
        __m256 t = _mm256_div_ps(_mm256_mul_ps(c, vkm), EI_FMA(p, _mm256_castsi256_ps(sc), one));
        __m256 mag = _mm256_andnot_ps(sign, t);
        if (zr) {
            const __m128i zq = _mm_loadl_epi64((const __m128i *)(zr + 8 * v));
            const __m256 z = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(zq)),
                                           _mm256_set1_ps(k->zs));
            const __m256 tz = _mm256_mul_ps(z, _mm256_set1_ps(k->inv));
            mag = _mm256_add_ps(mag, _mm256_andnot_ps(sign, tz));
            t = _mm256_add_ps(t, tz);
        }
        r[v] = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m256 dist = _mm256_andnot_ps(sign, _mm256_sub_ps(t, r[v]));
        near[v] = _mm256_cmp_ps(dist, _mm256_fnmadd_ps(mag, rel, lim), _CMP_GT_OQ);
    }
    store_q_vecs(r, n, o, nv);
    __m256 any = near[0];
#pragma GCC unroll 4
    for (int v = 1; v < nv; v++) any = _mm256_or_ps(any, near[v]);
    unsigned redo = 0;
    if (__builtin_expect(_mm256_movemask_ps(any) != 0, 0))
        for (int v = 0; v < nv; v++) redo |= (unsigned)(_mm256_movemask_ps(near[v]) != 0) << v;
    return redo;
}

/* a run of n SiLU int8 outputs of channel oc (silu_fast_ok): 32 at a time, then the last */
static void silu_run(const int32_t *acc, long n, long oc, long pos, const qconv_int8_args *a,
                     const fastq *f, double mult) {
    int8_t *o = (int8_t *)a->out + oc * a->ocs + pos;
    const int8_t *zr = a->residual ? (const int8_t *)a->z + oc * a->zcs + pos : NULL;
    const silu_consts k = {(float)(mult * a->oinv), (float)(mult * -1.4426950408889634),
                           f->silu_rel, f->silu_lim, (float)a->oinv, a->zscale};
    for (long j = 0; j < n; j += 32) {
        const long r = n - j < 32 ? n - j : 32;
        const int8_t *zj = zr ? zr + j : NULL;
        unsigned redo;
        if (r > 24)
            redo = silu_q_vecs(acc + j, r, o + j, &k, zj, 4);
        else if (r > 16)
            redo = silu_q_vecs(acc + j, r, o + j, &k, zj, 3);
        else if (r > 8)
            redo = silu_q_vecs(acc + j, r, o + j, &k, zj, 2);
        else
            redo = silu_q_vecs(acc + j, r, o + j, &k, zj, 1);
        for (long v = 0; redo; v++, redo >>= 1)
            if (redo & 1)
                finish_vecs(acc + j + 8 * v, r - 8 * v < 8 ? r - 8 * v : 8, oc, pos + j + 8 * v,
                            a, 1);
    }
}

#ifdef EI_SILU_CHECK /* bench/silu_margin.py's build: nonzero sends every output the exact way */
int ei_silu_exact;
#define EI_SILU_EXACT ei_silu_exact
#else
#define EI_SILU_EXACT 0
#endif

/* whether the layer's SiLU outputs take silu_run (f->silu; channel oc's where 0 <= mult <=
 * f->silu_mmax): int8, no residual or an int8 one added after the activation, and the
 * estimate's bounds: s > 1e-6, mult / s <= 1/2 (|t| < 2^30) and mult < 1/2 (|xl| < 2^31
 * converts), |z / s| < 128 10^6 */
static void silu_layer_setup(const qconv_int8_args *a, fastq *f) {
    const double inv = a->oinv, s = a->oscale;
    f->silu = !EI_SILU_EXACT && a->act == EI_ACT_SILU && a->otype == 2
              && (!a->residual
                  || (a->residual == 2 && a->ztype == 2 && fabs((double)a->zscale) * inv < 1e6))
              && inv > 1e-30 && inv < 1e6;
    if (!f->silu) return;
    f->silu_mmax = 0.49 * s < 0.49 ? 0.49 * s : 0.49; /* (s and 1 / inv apart by ulps) */
    f->silu_rel = (float)(EI_SILU_MARGIN + EI_SILU_MARGIN_Y * 1.28);
    f->silu_lim = (float)(EI_NEAR_HALF_F8 - EI_SILU_MARGIN_Y * 0.54 * inv);
}

/* a run of n outputs of channel oc the general way: 32 at a time, then the last (up to 31) */
static __attribute__((noinline)) void finish_run_vecs(const int32_t *acc, long n, long oc,
                                                      long pos, const qconv_int8_args *a) {
    long j = 0;
    for (; j + 32 <= n; j += 32) finish_vecs(acc + j, 32, oc, pos + j, a, 4);
    const long r = n - j;
    if (r > 24)
        finish_vecs(acc + j, r, oc, pos + j, a, 4);
    else if (r > 16)
        finish_vecs(acc + j, r, oc, pos + j, a, 3);
    else if (r > 8)
        finish_vecs(acc + j, r, oc, pos + j, a, 2);
    else if (r > 0)
        finish_vecs(acc + j, r, oc, pos + j, a, 1);
}

/* a run of n outputs of channel oc (SiLU to int8 by its estimate where it applies; the
 * general way out of line, so that this stays small where it is inlined) */
static inline void finish_run(const int32_t *acc, long n, long oc, long pos,
                              const qconv_int8_args *a, const fastq *f) {
    const double mult = a->mult[oc];
    if (f->silu && mult >= 0.0 && mult <= f->silu_mmax)
        silu_run(acc, n, oc, pos, a, f, mult);
    else
        finish_run_vecs(acc, n, oc, pos, a);
}
#else
static void silu_layer_setup(const qconv_int8_args *a, fastq *f) {
    (void)a;
    f->silu = 0;
}

/* a run of n outputs of channel oc */
static void finish_run(const int32_t *acc, long n, long oc, long pos, const qconv_int8_args *a,
                       const fastq *f) {
    (void)f;
    long j = 0;
#if EI_WIDE
    for (; j + 16 <= n; j += 16) finish16(acc + j, oc, pos + j, a);
#endif
    for (; j + 8 <= n; j += 8) finish8(acc + j, 8, oc, pos + j, a);
    if (j < n) finish8(acc + j, n - j, oc, pos + j, a);
}
#endif

/* ints after the tile's accumulators (finish_vecs reads whole vectors) */
#define EI_ACC_PAD 8

/* -- the kernel -------------------------------------------------------------------------- */

#if EI_INT8_PATH == EI_Q8_VNNI512
/* -- small maps: vectors along output channels -------------------------------------------
 * A 7 x 7 map has 49 positions: position vectors of 16 compute 64; a 14 x 14 map under a
 * 3 x 3 kernel computes 16 grid columns a row for 14. Here the lanes are output channels
 * (vectors of the [term][coutp] weight rows, read as they lie) and the register tile takes
 * consecutive output positions (each quad broadcast from its own grid position, dropped
 * grid columns skipped). Two shapes: 7 positions x 48 channels (49 = 7 x 7) and
 * 6 positions x 64 channels (64 divides 64 ... 2048 channels, 196 = 32 x 6 + 4); the
 * cheaper for the layer is taken (oc_shape). The accumulators are transposed to the
 * position tile's [channel][position] rows and finished by finish_tile, as those are. */
#define EI_OCN_MAX 64 /* channels of the widest output-channel tile */

/* a tile of P positions x V vectors of 16 channels: acc[p * EI_OCN_MAX + channel]; term t's
 * vector v of weights at w + t wstride + v vs (the rows: vs 16; blocks of 16 channels: T 16) */
static inline __attribute__((always_inline)) void tile_oc_pv(const int32_t *const *xs,
                                                           const long *toff, long T,
                                                           const int32_t *w, long wstride,
                                                           long vs, const int32_t *init,
                                                           int32_t *acc, const int P,
                                                           const int V) {
    __m512i a[7][4];
#pragma GCC unroll 8
    for (int p = 0; p < P; p++)
#pragma GCC unroll 4
        for (int v = 0; v < V; v++) a[p][v] = _mm512_loadu_si512(init + 16 * v);
    for (long t = 0; t < T; t++) {
        const int32_t *wp = w + t * wstride;
        const long o = toff[t];
        __m512i wv[4];
#pragma GCC unroll 4
        for (int v = 0; v < V; v++) wv[v] = _mm512_loadu_si512(wp + vs * v);
#pragma GCC unroll 8
        for (int p = 0; p < P; p++) {
            __m512i b = _mm512_set1_epi32(xs[p][o]);
#pragma GCC unroll 4
            for (int v = 0; v < V; v++) a[p][v] = _mm512_dpbusd_epi32(a[p][v], b, wv[v]);
        }
    }
#pragma GCC unroll 8
    for (int p = 0; p < P; p++)
#pragma GCC unroll 4
        for (int v = 0; v < V; v++) _mm512_storeu_si512(acc + p * EI_OCN_MAX + 16 * v, a[p][v]);
}

/* (not inlined: in the caller the compiler spills the tile's pointers) */
static __attribute__((noinline)) void tile_oc73(const int32_t *const *xs, const long *toff,
                                                long T, const int32_t *w, long wstride, long vs,
                                                const int32_t *init, int32_t *acc) {
    tile_oc_pv(xs, toff, T, w, wstride, vs, init, acc, 7, 3);
}

static __attribute__((noinline)) void tile_oc64(const int32_t *const *xs, const long *toff,
                                                long T, const int32_t *w, long wstride, long vs,
                                                const int32_t *init, int32_t *acc) {
    tile_oc_pv(xs, toff, T, w, wstride, vs, init, acc, 6, 4);
}

/* a layer's last channels, fewer than a whole tile's: only the vectors they fill (256
 * channels in 48-channel tiles: 5 tiles and one of 16 channels, not 288) */
static __attribute__((noinline)) void tile_oc_rest(const int32_t *const *xs, const long *toff,
                                                   long T, const int32_t *w, long wstride,
                                                   long vs, const int32_t *init, int32_t *acc,
                                                   const int P, const long V) {
    if (P == 7) {
        if (V == 1)
            tile_oc_pv(xs, toff, T, w, wstride, vs, init, acc, 7, 1);
        else
            tile_oc_pv(xs, toff, T, w, wstride, vs, init, acc, 7, 2);
    } else if (V == 1) {
        tile_oc_pv(xs, toff, T, w, wstride, vs, init, acc, 6, 1);
    } else if (V == 2) {
        tile_oc_pv(xs, toff, T, w, wstride, vs, init, acc, 6, 2);
    } else {
        tile_oc_pv(xs, toff, T, w, wstride, vs, init, acc, 6, 3);
    }
}

/* output positions before grid position g (of rows of wg, the first wo of them real) */
static inline long real_before(long g, long wg, long wo, long ho) {
    long p = g / wg * wo + (g % wg < wo ? g % wg : wo);
    return p < ho * wo ? p : ho * wo;
}

/* the output-channel tile's positions (7 or 6) where it costs less than position tiles on
 * [g0, g1), else 0 (and for a chunk across images: its runs are the position tiles') */
static int oc_shape(const qconv_int8_args *a) {
    if (a->pimg) return 0;
    long grid = 0;
    for (long g = a->g0; g < a->g1; g += NT) {
        long n = a->g1 - g < NT ? a->g1 - g : NT;
        grid += (n + VL - 1) / VL * VL;
    }
    long p = real_before(a->g1, a->wg, a->wo, a->ho) - real_before(a->g0, a->wg, a->wo, a->ho);
    if (p <= 0) return 0;
    /* dot products (16 a cycle) and about a cycle an output for the epilogue, three on
     * this side (the transposition, a tile's fixed costs: measured on ResNet-50's and
     * MobileNetV2's 7 x 7 and 14 x 14 layers, one thread) */
    long by_pos = grid * ((a->cout + MR - 1) / MR * MR) * a->T / 16 + p * a->cout;
    /* (the last channels: a tile of the 16-channel vectors they fill) */
    const long c16 = (a->cout + 15) / 16 * 16;
    long by_7 = (p + 6) / 7 * 7 * c16 * a->T / 16 + 3 * p * a->cout;
    long by_6 = (p + 5) / 6 * 6 * c16 * a->T / 16 + 3 * p * a->cout;
    long best = by_7 <= by_6 ? by_7 : by_6;
    if (best >= by_pos) return 0;
    return by_7 <= by_6 ? 7 : 6;
}

/* qconv_int8_f32 by output-channel tiles of P positions (oc_shape; the weights are readable
 * EI_OCN_MAX channels past each row's coutp: cpu_qconv.py pads the array) */
static void qconv_int8_oc(const qconv_int8_args *a, const fastq *fq, const float *fm,
                          const int P) {
    int32_t acc[7 * EI_OCN_MAX] __attribute__((aligned(64)));
    int32_t rows[EI_OCN_MAX * NT] __attribute__((aligned(64))); /* [channel][position] */
    int32_t init[EI_OCN_MAX];
    const long ocn = P == 7 ? 48 : 64, orun = NT / P * P; /* positions finished together */
    const long p0 = real_before(a->g0, a->wg, a->wo, a->ho);
    const long p1 = real_before(a->g1, a->wg, a->wo, a->ho);
    memset(rows, 0, sizeof rows); /* the lanes past a run: finished, then dropped */
    for (long oc0 = 0; oc0 < a->cout; oc0 += ocn) {
        const long nrows = a->cout - oc0 < ocn ? a->cout - oc0 : ocn;
        /* the block's weights: each vector of 16 channels its terms in one stream where the
         * caller blocked them so (wblk_oc; in a model the rows, coutp quads apart, came from
         * memory a line a term), else the term rows */
        const int32_t *w = a->wblk_oc ? a->wblk_oc + oc0 * a->T : a->wts + oc0;
        const long ws = a->wblk_oc ? 16 : a->coutp, vs = a->wblk_oc ? 16 * a->T : 16;
        for (long i = 0; i < ocn; i++) {
            long oc = oc0 + i;
            init[i] = i < nrows ? (a->bias ? a->bias[oc] : 0) - 128 * a->wsum[oc] : 0;
        }
        /* runs of up to orun positions gathered in rows, then finished as a tile's run */
        for (long pr = p0; pr < p1; pr += orun) {
            const long run = p1 - pr < orun ? p1 - pr : orun;
            for (long p = pr; p < pr + run; p += P) {
                const long n = pr + run - p < P ? pr + run - p : P;
                const int32_t *xs[7];
                for (long k = 0; k < P; k++) {
                    long q = p + (k < n ? k : n - 1); /* a short group repeats its last */
                    xs[k] = a->layout + q / a->wo * a->wg + q % a->wo;
                }
                if (nrows < ocn - 15)
                    tile_oc_rest(xs, a->toff, a->T, w, ws, vs, init, acc, P, (nrows + 15) / 16);
                else if (P == 7)
                    tile_oc73(xs, a->toff, a->T, w, ws, vs, init, acc);
                else
                    tile_oc64(xs, a->toff, a->T, w, ws, vs, init, acc);
                for (long k = 0; k < n; k++) {
                    int32_t *dst = rows + (p - pr) + k;
                    const int32_t *src = acc + k * EI_OCN_MAX;
                    for (long i = 0; i < nrows; i++) dst[i * NT] = src[i];
                }
            }
            const long seg_j = 0, seg_n = run, seg_pos = pr;
            finish_tile(rows, nrows, oc0, &seg_j, &seg_n, &seg_pos, 1, a, fq, fm,
                        (run + VL - 1) / VL);
        }
    }
}
#endif

#if EI_INT8_PATH == EI_Q8_AVX2
/* -- AVX2: vectors along output channels ---------------------------------------------------
 * qconv_int8_oc's idea on vpmaddubsw: 4 consecutive output positions x 24 channels (3
 * vectors of the [term][coutp] weight rows, read as they lie, memory operands of the
 * products), each position's activation quad broadcast (its u8 operand, shifted by k as
 * tile_shift8's), two terms' int16 pair sums added before one vpmaddwd where the channels'
 * L2 allows: 12 accumulators, 2 broadcasts, a sum and a product in the 16 ymm. A weight
 * broadcast feeds one vector in tile_shift8, an activation broadcast 3 here; and no grid
 * column is computed to be dropped (7 x 7 maps: 49 positions, not 64). The terms go in
 * chunks of at most EI_OCT, each chunk over all the tiles of a run of NT positions (the
 * accumulators kept in memory between chunks), so the chunk's weights (12 KB) and the
 * activations it reads stay in L1 while the tiles pass: a whole tile's weights (3 x 3 x 256
 * inputs: 55 KB) outgrew it, and every tile read them from L2 (with transpose_tile:
 * ResNet-50's 3 x 3 layers 0.92-1.03 the time, one thread; a 4 x 16 tile with its weights
 * in registers, 12 loads a two-term step instead of about 44, was no faster: the vector
 * ALUs bound both, at 4 integer operations a cycle, 2 of them multiplies). Taken where the
 * sign row asks (EI_OC_MODE: cpu_qconv.py's choice, by timing) and every channel's L holds
 * the call's bytes; the accumulators are transposed to [channel][position] rows (8 x 4
 * blocks in registers) and finished as the position tiles' are. */
#define EI_OC_MODE 2 /* the sign row's bit: output-channel tiles */
#define EI_OCP 4     /* positions of a tile */
#define EI_OCC 24    /* channels of a tile (OC_ALIGN divides: a call's channels) */
#define EI_OCT 128   /* terms of a chunk at most */

/* the tile over terms [0, T) (the first T2 two at a time where terms2), its first nvc
 * vectors of 8 channels, added to acc[p * EI_OCC + channel] (a call's last channels: the
 * vectors that hold them, those past them read from the next columns, or the WEIGHT_TAIL
 * past the array, and dropped) */
static inline __attribute__((always_inline)) void tile_oc_shift(const int32_t *const *xs,
                                                                const long *toff, long T,
                                                                const int32_t *w, long wstride,
                                                                int32_t *acc, __m256i kb,
                                                                const int shifted,
                                                                const int terms2, long T2,
                                                                const int nvc, const int npos) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i a[2 * EI_OCP][EI_OCC / 8];
#pragma GCC unroll 8
    for (int p = 0; p < npos; p++)
#pragma GCC unroll 3
        for (int v = 0; v < nvc; v++)
            a[p][v] = _mm256_load_si256((const __m256i *)(acc + p * EI_OCC + 8 * v));
    long t = 0;
    if (terms2)
        for (; t + 2 <= T2; t += 2) {
            const int32_t *w0 = w + t * wstride, *w1 = w0 + wstride;
            const long o0 = toff[t], o1 = toff[t + 1];
            __m256i u0[EI_OCC / 8], u1[EI_OCC / 8];
#pragma GCC unroll 3
            for (int v = 0; v < nvc; v++) {
                u0[v] = _mm256_loadu_si256((const __m256i *)(w0 + 8 * v));
                u1[v] = _mm256_loadu_si256((const __m256i *)(w1 + 8 * v));
            }
#pragma GCC unroll 8
            for (int p = 0; p < npos; p++) {
                __m256i b0 = _mm256_set1_epi32(xs[p][o0]), b1 = _mm256_set1_epi32(xs[p][o1]);
                if (shifted) b0 = _mm256_add_epi8(b0, kb), b1 = _mm256_add_epi8(b1, kb);
#pragma GCC unroll 3
                for (int v = 0; v < nvc; v++) {
                    __m256i s = _mm256_add_epi16(_mm256_maddubs_epi16(b0, u0[v]),
                                                 _mm256_maddubs_epi16(b1, u1[v]));
                    a[p][v] = _mm256_add_epi32(a[p][v], _mm256_madd_epi16(s, ones));
                }
            }
        }
    for (; t < T; t++) {
        const int32_t *w0 = w + t * wstride;
        const long o0 = toff[t];
        __m256i u0[EI_OCC / 8];
#pragma GCC unroll 3
        for (int v = 0; v < nvc; v++) u0[v] = _mm256_loadu_si256((const __m256i *)(w0 + 8 * v));
#pragma GCC unroll 8
        for (int p = 0; p < npos; p++) {
            __m256i b0 = _mm256_set1_epi32(xs[p][o0]);
            if (shifted) b0 = _mm256_add_epi8(b0, kb);
#pragma GCC unroll 3
            for (int v = 0; v < nvc; v++) {
                __m256i s = _mm256_maddubs_epi16(b0, u0[v]);
                a[p][v] = _mm256_add_epi32(a[p][v], _mm256_madd_epi16(s, ones));
            }
        }
    }
#pragma GCC unroll 8
    for (int p = 0; p < npos; p++)
#pragma GCC unroll 3
        for (int v = 0; v < nvc; v++)
            _mm256_store_si256((__m256i *)(acc + p * EI_OCC + 8 * v), a[p][v]);
}

/* (not inlined: the caller's state would be spilled around the tile); nvc vectors of 8
 * channels (3: the whole tile; 2 or 1: a call's last 16 or 8 channels, not 24 computed) at
 * npos positions (8: two tiles' at once, a call's last 8 channels: with 4 accumulators the
 * loop's own work outweighed the products, ResNet-50's 128-channel 3 x 3 layers' last 8
 * channels 1.5 x the time a channel of the others) */
#define EI_TILE_OC(name, nvc, npos)                                                           \
    static __attribute__((noinline)) void name(const int32_t *const *xs, const long *toff,    \
                                               long T, const int32_t *w, long wstride,        \
                                               int32_t *acc, long k, int terms2, long T2) {   \
        const __m256i kb = _mm256_set1_epi8((char)k);                                         \
        if (k && terms2)                                                                      \
            tile_oc_shift(xs, toff, T, w, wstride, acc, kb, 1, 1, T2, nvc, npos);             \
        else if (k)                                                                           \
            tile_oc_shift(xs, toff, T, w, wstride, acc, kb, 1, 0, T2, nvc, npos);             \
        else if (terms2)                                                                      \
            tile_oc_shift(xs, toff, T, w, wstride, acc, kb, 0, 1, T2, nvc, npos);             \
        else                                                                                  \
            tile_oc_shift(xs, toff, T, w, wstride, acc, kb, 0, 0, T2, nvc, npos);             \
    }
EI_TILE_OC(tile_oc, 3, EI_OCP)
EI_TILE_OC(tile_oc16, 2, EI_OCP)
EI_TILE_OC(tile_oc8, 1, EI_OCP)
EI_TILE_OC(tile_oc8x2, 1, 2 * EI_OCP)

/* a tile's accumulators ([position][channel]) as its 4 columns of the [channel][position]
 * rows (NT apart) */
static inline void transpose_tile(const int32_t *acc, int32_t *rows) {
#pragma GCC unroll 3
    for (int v = 0; v < EI_OCC / 8; v++) {
        const __m256i a0 = _mm256_load_si256((const __m256i *)(acc + 8 * v));
        const __m256i a1 = _mm256_load_si256((const __m256i *)(acc + EI_OCC + 8 * v));
        const __m256i a2 = _mm256_load_si256((const __m256i *)(acc + 2 * EI_OCC + 8 * v));
        const __m256i a3 = _mm256_load_si256((const __m256i *)(acc + 3 * EI_OCC + 8 * v));
        const __m256i l01 = _mm256_unpacklo_epi32(a0, a1), h01 = _mm256_unpackhi_epi32(a0, a1);
        const __m256i l23 = _mm256_unpacklo_epi32(a2, a3), h23 = _mm256_unpackhi_epi32(a2, a3);
        /* channels (c, c + 4) of each 128-bit lane pair: positions 0-3 */
        const __m256i c0 = _mm256_unpacklo_epi64(l01, l23), c1 = _mm256_unpackhi_epi64(l01, l23);
        const __m256i c2 = _mm256_unpacklo_epi64(h01, h23), c3 = _mm256_unpackhi_epi64(h01, h23);
        int32_t *r = rows + 8 * v * NT;
        _mm_storeu_si128((__m128i *)r, _mm256_castsi256_si128(c0));
        _mm_storeu_si128((__m128i *)(r + NT), _mm256_castsi256_si128(c1));
        _mm_storeu_si128((__m128i *)(r + 2 * NT), _mm256_castsi256_si128(c2));
        _mm_storeu_si128((__m128i *)(r + 3 * NT), _mm256_castsi256_si128(c3));
        _mm_storeu_si128((__m128i *)(r + 4 * NT), _mm256_extracti128_si256(c0, 1));
        _mm_storeu_si128((__m128i *)(r + 5 * NT), _mm256_extracti128_si256(c1, 1));
        _mm_storeu_si128((__m128i *)(r + 6 * NT), _mm256_extracti128_si256(c2, 1));
        _mm_storeu_si128((__m128i *)(r + 7 * NT), _mm256_extracti128_si256(c3, 1));
    }
}

/* output positions before grid position g (of rows of wg, the first wo of them real) */
static inline long real_before(long g, long wg, long wo, long ho) {
    long p = g / wg * wo + (g % wg < wo ? g % wg : wo);
    return p < ho * wo ? p : ho * wo;
}

/* calls finished by output-channel tiles (qconv_int8_oc_calls: the tests' proof they ran) */
static long oc_calls;

/* the signed range [*lo, *hi] (with 0) of the bytes of the n int32 at x: the span a call's
 * terms read, [g0 + min toff, g1 - 1 + max toff], once (tile_range reads each of the span's
 * int32 once a term: ResNet-50's 64-channel 3 x 3 layer, 2.5 % of its time) */
static void span_range(const int32_t *x, long n, long *lo, long *hi) {
    __m256i mn = _mm256_setzero_si256(), mx = mn, mn1 = mn, mx1 = mn;
    long i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256i v0 = _mm256_loadu_si256((const __m256i *)(x + i));
        const __m256i v1 = _mm256_loadu_si256((const __m256i *)(x + i + 8));
        mn = _mm256_min_epi8(mn, v0), mx = _mm256_max_epi8(mx, v0);
        mn1 = _mm256_min_epi8(mn1, v1), mx1 = _mm256_max_epi8(mx1, v1);
    }
    mn = _mm256_min_epi8(mn, mn1), mx = _mm256_max_epi8(mx, mx1);
    long l, h;
    fold_range(mn, mx, &l, &h);
    for (const int8_t *b = (const int8_t *)(x + i); b < (const int8_t *)(x + n); b++) {
        l = *b < l ? *b : l;
        h = *b > h ? *b : h;
    }
    *lo = l, *hi = h;
}

/* qconv_int8_f32 by output-channel tiles; 0 (nothing done) where a channel's L does not
 * hold the call's activation bytes at their shift */
static int qconv_int8_oc(const qconv_int8_args *a, const fastq *fq) {
    if (a->g1 <= a->g0) return 1;
    long lo, hi, tmin = a->toff[0], tmax = a->toff[0];
    for (long t = 1; t < a->T; t++) {
        tmin = a->toff[t] < tmin ? a->toff[t] : tmin;
        tmax = a->toff[t] > tmax ? a->toff[t] : tmax;
    }
    span_range(a->layout + a->g0 + tmin, a->g1 - 1 + tmax - (a->g0 + tmin) + 1, &lo, &hi);
    const long shift = -lo;
    const int32_t *lrow = a->wts + (a->T + EI_LIMIT_ROW) * a->coutp;
    for (long oc = 0; oc < a->cout; oc++)
        if (hi + shift > (lrow[oc] & 0xffff)) return 0;
    __atomic_add_fetch(&oc_calls, 1, __ATOMIC_RELAXED);
    enum { TILES = NT / EI_OCP };
    int32_t acc[TILES * EI_OCP * EI_OCC] __attribute__((aligned(32)));
    int32_t rows[EI_OCC * NT + EI_ACC_PAD] __attribute__((aligned(32))); /* [channel][pos] */
    int32_t init[EI_OCC];
    const int32_t *xs[TILES][EI_OCP];
    const long T = a->T;
    /* the terms in equal chunks of at most EI_OCT, even (each starts on a pair) */
    const long nchunks = (T + EI_OCT - 1) / EI_OCT;
    const long chunk = ((T + nchunks - 1) / nchunks + 1) & ~1L;
    const long p0 = real_before(a->g0, a->wg, a->wo, a->ho);
    const long p1 = real_before(a->g1, a->wg, a->wo, a->ho);
    memset(rows, 0, sizeof rows); /* the lanes past a run: finished, then dropped */
    for (long oc0 = 0; oc0 < a->cout; oc0 += EI_OCC) {
        const long nrows = a->cout - oc0 < EI_OCC ? a->cout - oc0 : EI_OCC;
        long T2;
        const long *toff = block_toff(a, oc0, &T2);
        long lim2 = 255;
        float mv[EI_OCC]; /* the fast epilogue's multipliers (a division each), once a block */
        for (long i = 0; i < EI_OCC; i++) {
            const long oc = oc0 + i;
            mv[i] = i < nrows ? fastq_mult(fq, a, oc) : 0.0f;
            init[i] = i < nrows
                          ? (a->bias ? a->bias[oc] : 0) - (int32_t)shift * a->wsum[oc]
                          : 0;
            if (i < nrows && (lrow[oc] >> 16) < lim2) lim2 = lrow[oc] >> 16;
        }
        const int terms2 = hi + shift <= lim2;
        for (long pr = p0; pr < p1; pr += NT) {
            const long run = p1 - pr < NT ? p1 - pr : NT;
            const long tiles = (run + EI_OCP - 1) / EI_OCP;
            /* the run's positions in order (one division a run, not two a position), a
             * short last group repeating its last */
            const int32_t **xf = &xs[0][0];
            for (long i = 0, qy = pr / a->wo, qx = pr % a->wo; i < tiles * EI_OCP; i++) {
                if (i < run) {
                    xf[i] = a->layout + qy * a->wg + qx;
                    if (++qx == a->wo) qx = 0, qy++;
                } else
                    xf[i] = xf[run - 1];
                memcpy(acc + i * EI_OCC, init, sizeof init);
            }
            for (long t0 = 0; t0 < T; t0 += chunk) {
                const long tc = T - t0 < chunk ? T - t0 : chunk;
                const long t2 = T2 <= t0 ? 0 : T2 - t0 < tc ? T2 - t0 : tc;
                const int32_t *wc = a->wts + oc0 + t0 * a->coutp;
                void (*const tf)(const int32_t *const *, const long *, long, const int32_t *,
                                 long, int32_t *, long, int, long) =
                    nrows > 16 ? tile_oc : nrows > 8 ? tile_oc16 : tile_oc8;
                long j = 0;
                if (nrows <= 8) /* two tiles at once (tile_oc8x2) */
                    for (; j + 2 <= tiles; j += 2)
                        tile_oc8x2(&xs[0][0] + j * EI_OCP, toff + t0, tc, wc, a->coutp,
                                   acc + j * EI_OCP * EI_OCC, shift, terms2, t2);
                for (; j < tiles; j++) {
                    int32_t *aj = acc + j * EI_OCP * EI_OCC;
                    tf(xs[j], toff + t0, tc, wc, a->coutp, aj, shift, terms2, t2);
                }
            }
            for (long j = 0; j < tiles; j++) transpose_tile(acc + j * EI_OCP * EI_OCC, rows + 4 * j);
            for (long i = 0; i < nrows; i++) {
                const float m = mv[i];
                if (m != 0.0f)
                    finish_run_q(rows + i * NT, run, oc0 + i, pr, a, fq, m);
                else
                    finish_run(rows + i * NT, run, oc0 + i, pr, a, fq);
            }
        }
    }
    return 1;
}
#endif

/* calls the AVX2 path finished by output-channel tiles so far (0 on the other paths) */
long qconv_int8_oc_calls(void) {
#if EI_INT8_PATH == EI_Q8_AVX2
    return __atomic_load_n(&oc_calls, __ATOMIC_RELAXED);
#else
    return 0;
#endif
}

/* the register tile qconv_int8_f32 takes for a call: 7 or 6 (output-channel tiles of that
 * many positions), 0 (position tiles) */
long qconv_int8_tile(const qconv_int8_args *a) {
#if EI_INT8_PATH == EI_Q8_VNNI512
    return oc_shape(a);
#else
    (void)a;
    return 0;
#endif
}

/* grid positions [g0, g1) (g0 a multiple of NT), every output channel */
void qconv_int8_f32(const qconv_int8_args *a) {
    int32_t acc[MR * NT + EI_ACC_PAD] __attribute__((aligned(64)));
    int32_t init[MR];
    const fastq fq = fastq_setup(a);
    /* the fast epilogue's multipliers (a division each), once per call, not per tile: on
     * the AVX2 path a tile of 64 outputs a channel took its division there, MobileNetV2's
     * INT8 stem (32 channels, 7 terms) 6272 a call */
    float fmv[EI_FM_MAX];
    const float *fm = NULL;
    if (fq.on && a->cout <= EI_FM_MAX) {
        for (long oc = 0; oc < a->cout; oc++) fmv[oc] = fastq_mult(&fq, a, oc);
        fm = fmv;
    }
#if EI_TILE_EPILOGUE
    /* the channel blocks whose every channel takes the fast epilogue (bfast: tile_fast,
     * tile_segs) and is proved (bproved: tile_proved), once per call */
    unsigned char bproved[EI_FM_MAX / MR + 1], bfast[EI_FM_MAX / MR + 1];
    for (long ob = 0; fm && ob * MR < a->cout; ob++) {
        int all = !a->residual, fast = 1;
        for (long oc = ob * MR; oc < a->cout && oc < ob * MR + MR; oc++) {
            fast &= fm[oc] != 0.0f;
            all = all && proved_of(a, oc).v != 0.0f;
        }
        bproved[ob] = (unsigned char)all, bfast[ob] = (unsigned char)fast;
    }
#endif
#if EI_INT8_PATH == EI_Q8_VNNI512
    const int ocp = oc_shape(a);
    if (ocp) {
        qconv_int8_oc(a, &fq, fm, ocp);
        return;
    }
#endif
    memset(acc, 0, sizeof acc); /* columns a short tile leaves: finished, then dropped */
#if EI_INT8_PATH == EI_Q8_AVX2
    /* the weight array's sign row (after the proved rows): nonzero where no weight is -128 */
    const int wsafe = a->wts[(a->T + EI_SIGN_ROW) * a->coutp] & 1;
    if (!a->pimg && a->wts[(a->T + EI_SIGN_ROW) * a->coutp] & EI_OC_MODE && qconv_int8_oc(a, &fq))
        return;
    /* a channel block's weights packed [term][MR], for each tile (the array's rows are coutp
     * apart: a block's T terms touched T cache lines, with the layout's more than L1 holds) */
    int32_t wpk[EI_WPACK] __attribute__((aligned(32)));
    long wpk_ob = -1; /* the block wpk holds */
#endif
    /* the strip's output runs: (first tile column, length, output position) */
    long seg_j[NT + 1], seg_n[NT + 1], seg_pos[NT + 1];
    const long blocks = (a->cout + MR - 1) / MR;
    for (long g = a->g0; g < a->g1; g += NT) {
        long nseg = 0, gend = g + NT < a->g1 ? g + NT : a->g1;
        const long nv = EI_INT8_PATH == EI_Q8_VNNI512 || EI_INT8_PATH == EI_Q8_AVX2
                            ? (gend - g + VL - 1) / VL
                            : NV;
        if (a->wg == a->wo) { /* no dropped columns: grid positions are output positions */
            long last = a->ho * a->wo < gend ? a->ho * a->wo : gend;
            if (a->pimg) /* a chunk of positions across images: a run to each image's end */
                for (long q = g; q < last; nseg++) {
                    const long f = a->pfirst + q, p = f % a->pimg;
                    const long n = last - q < a->pimg - p ? last - q : a->pimg - p;
                    seg_j[nseg] = q - g, seg_n[nseg] = n, seg_pos[nseg] = f / a->pimg * a->ins + p;
                    q += n;
                }
            else if (last > g)
                seg_j[0] = 0, seg_n[0] = last - g, seg_pos[0] = g, nseg = 1;
            gend = g; /* done */
        }
        for (long gg = g; gg < gend;) {
            long oy = gg / a->wg, ox = gg % a->wg;
            long row_end = gg + (a->wg - ox) < gend ? gg + (a->wg - ox) : gend;
            if (oy >= a->ho) break;
            if (ox < a->wo) {
                long n = row_end - gg < a->wo - ox ? row_end - gg : a->wo - ox;
                seg_j[nseg] = gg - g, seg_n[nseg] = n, seg_pos[nseg] = oy * a->wo + ox;
                nseg++;
            }
            gg = row_end;
        }
        if (!nseg) continue;
#if EI_INT8_PATH == EI_Q8_AVX2
        /* the strip's activation bytes, [lo, hi]: its shift k = -lo (tile_shift) */
        long lo, hi;
        tile_range(a->layout + g, a->toff, a->T, nv, a->g1 - (g + (nv - 1) * VL), &lo, &hi);
        const long shift = -lo;
#endif
        for (long ob = 0; ob < blocks; ob++) {
            long oc0 = ob * MR, rows = a->cout - oc0 < MR ? a->cout - oc0 : MR;
#if EI_INT8_PATH == EI_Q8_VNNI512
            /* the block's weights: its terms' quads in one stream where the caller blocked
             * them (wblk), else the term rows, coutp apart (in a model, a layer's first strip
             * reads them from memory: one line a term, a page every 1-4 terms) */
            const int32_t *wr = a->wblk ? a->wblk + ob * a->T * MR : a->wts + oc0;
            const long wrs = a->wblk ? MR : a->coutp;
#else
            const int32_t *wr = a->wts + oc0;
            const long wrs = a->coutp;
#endif /* (one form: GCC compiled the VNNI loop 1-2 % slower, bench/kernel_engine_ab.py) */
            for (long i = 0; i < MR; i++) {
                long oc = oc0 + i;
                init[i] = i < rows ? (a->bias ? a->bias[oc] : 0) - (U8 ? 128 * a->wsum[oc] : 0) : 0;
            }
#if EI_TILE_EPILOGUE
            const int all = fm && bfast[ob];
            if (all && a->pimg && nseg > 1) { /* runs of several images (tile_segs) */
                tile_segs(a->layout + g, a->toff, a->T, wr, wrs, init, rows, oc0, seg_j, seg_n,
                          seg_pos, nseg, nv, fm, a, &fq);
                continue;
            }
            if (all && nseg == 1 && seg_j[0] == 0) { /* one run from the strip's start */
                if (bproved[ob] && seg_n[0] == NT) {
                    tile_proved(a->layout + g, a->toff, a->T, wr, wrs, init, rows, oc0, a,
                                (int8_t *)a->out + oc0 * a->ocs + seg_pos[0]);
                    continue;
                }
                if (seg_n[0] == NT) {
                    tile_fast(a->layout + g, a->toff, a->T, wr, wrs, init, rows, oc0, seg_pos[0],
                              fm, a, &fq);
                    continue;
                }
                if (seg_n[0] > VL) { /* (one vector: tile_rows, 4 % faster over 1024 inputs) */
                    tile_fast_short(a->layout + g, a->toff, a->T, wr, wrs, init, rows, oc0,
                                    seg_pos[0], fm, a, &fq, seg_n[0]);
                    continue;
                }
            }
#endif
#if EI_INT8_PATH == EI_Q8_VNNI512
            tile_rows(a->layout + g, a->toff, a->T, wr, wrs, init, acc, rows, nv);
#else
#if EI_INT8_PATH == EI_Q8_AVX2
            const int32_t *wb = wr;
            long ws = wrs;
            if (a->T >= 128 && a->T * MR <= EI_WPACK) { /* (fewer terms: no gain measured) */
                if (wpk_ob != ob)
                    for (long t = 0; t < a->T; t++) memcpy(wpk + t * MR, wb + t * ws, 4 * MR);
                wpk_ob = ob, wb = wpk, ws = MR;
            }
            /* the block's limits on x' (the smallest of its channels'): tile_shift at the
             * strip's shift, two terms at once where the bytes allow; else the sign tile
             * (tile where a weight is -128) */
            const int32_t *lrow = a->wts + (a->T + EI_LIMIT_ROW) * a->coutp + oc0;
            long lim = 255, lim2 = 255;
            for (long i = 0; i < rows; i++) {
                lim = (lrow[i] & 0xffff) < lim ? (lrow[i] & 0xffff) : lim;
                lim2 = (lrow[i] >> 16) < lim2 ? (lrow[i] >> 16) : lim2;
            }
            const int done = hi + shift <= lim;
            long T2;
            const long *tb = block_toff(a, oc0, &T2);
            if (done) {
                int32_t ik[MR];
                for (long i = 0; i < MR; i++)
                    ik[i] = i < rows ? init[i] - (int32_t)shift * a->wsum[oc0 + i] : 0;
                tile_shift(a->layout + g, tb, a->T, wb, ws, ik, acc, nv, shift,
                           hi + shift <= lim2, T2);
            }
            if (!done && wsafe)
                tile_sign(a->layout + g, tb, a->T, wb, ws, init, acc, nv);
            else if (!done)
                tile(a->layout + g, tb, a->T, wb, ws, init, acc, nv);
#else
                tile(a->layout + g, a->toff, a->T, wr, wrs, init, acc, nv);
#endif
#endif
#if EI_TILE_EPILOGUE
            finish_tile(acc, rows, oc0, seg_j, seg_n, seg_pos, nseg, a, &fq, fm, nv);
            continue;
#endif
            for (long i = 0; i < rows; i++) {
                const float m = fm ? fm[oc0 + i] : fastq_mult(&fq, a, oc0 + i);
                for (long s = 0; s < nseg; s++)
                    if (m != 0.0f)
                        finish_run_q(acc + i * NT + seg_j[s], seg_n[s], oc0 + i, seg_pos[s], a,
                                     &fq, m);
                    else
                        finish_run(acc + i * NT + seg_j[s], seg_n[s], oc0 + i, seg_pos[s], a, &fq);
            }
        }
    }
}
EI_TASK(qconv_int8)

/* the epilogue of another INT8 kernel's accumulators (args.h; conv_int8_wino.c): what
 * qconv_int8_f32 does with a tile's, run by run (the fast int8 epilogue where it holds) */
void qconv_int8_finish(const qconv_int8_args *a, const int *acc, long accs, long oc0, long rows,
                       const long *seg_j, const long *seg_n, const long *seg_pos, long nseg) {
    const fastq fq = fastq_setup(a);
    for (long i = 0; i < rows; i++) {
        const long oc = oc0 + i;
        const float m = fastq_mult(&fq, a, oc);
        for (long s = 0; s < nseg; s++)
            if (m != 0.0f)
                finish_run_q(acc + i * accs + seg_j[s], seg_n[s], oc, seg_pos[s], a, &fq, m);
            else
                finish_run(acc + i * accs + seg_j[s], seg_n[s], oc, seg_pos[s], a, &fq);
    }
}
