/* INT8 3x3 stride-1 convolutions by Winograd's F(2x2, 3x3) in integers, exact: the same int32
 * accumulators as conv_int8.c's direct sum, then its epilogue (qconv_int8_finish), so the
 * same bits as the reference (ops/quantize.py qconv).
 *
 * The transforms, all integer: a 4x4 input patch d (int8, zero outside the image) becomes
 * V = B^T d B, B^T = [[1,0,-1,0],[0,1,1,0],[0,-1,1,0],[0,1,0,-1]], |V| <= 4 * 128 = 512; the
 * weights g (int8 3x3) U = G' g G'^T, G' = 2 G = [[2,0,0],[1,1,1],[1,-1,1],[0,0,2]],
 * |U| <= 9 * 128 = 1152 (cpu_qwinograd.py packs them); both int16. M = sum over the input
 * channels of U * V (elementwise, 16 points) by vpmaddwd on pairs of channels (no saturation:
 * 2 * 512 * 1152 < 2^31; |M| <= cin 512 1152 < 2^31 for cin < 3640), and Y = A^T M A,
 * A^T = [[1,1,1,0],[0,1,-1,-1]], is 4 acc exactly: int32 sums wrap mod 2^32 (the vector
 * adds; uint32 in the plain C), and |4 acc| <= 4 cin 9 128 128 < 2^31 for cin < 3640
 * (cpu_qwinograd.py refuses more), so acc = Y / 4 exactly. 16 multiplies for 4 outputs of a
 * channel pair where the direct sum takes 36.
 *
 * Tiles (2x2 outputs) are numbered across an image (tile row, tile column), tw = ceil(wo / 2)
 * a row; a call covers tiles [t0, t1) of one image and every output channel it is given, TB
 * tiles at a time:
 *   1. input transform V[16][K][TBP] (K = ceil(cin / 2) channel pairs, an int32 the pair's
 *      int16s, channel 2k in the low half), 16 tiles of a tile row a vector: each of the
 *      patch rows' 4 columns a deinterleave of one 32-byte load (AVX2), from a copy of the
 *      call's input rows padded with zeros (made once a call);
 *   2. per block of 6 output channels, 16 products M[e][6][TB] = U[e] V[e] by a register tile
 *      of 6 channels x 16 tiles (U packed [ob][16][K][6], a pair an int32, broadcast);
 *   3. the output transform on vectors of 8 tiles, + bias, stored in position order (8 tiles
 *      of one tile row: 16 outputs of each of their two rows as they lie; else tile by
 *      tile), so that a block's outputs are at most 3 runs (whole rows join into one), each
 *      finished by conv_int8.c's epilogue (runs of one output row each, 10-20 outputs on
 *      small maps, cost it 5-10 %).
 * The plain C path (other CPUs) does the same arithmetic on the same layouts. */
#include <stdint.h>
#include <string.h>

#include "args.h"

#if defined(__AVX2__)
#include <immintrin.h>
#define EI_QW_AVX2 1
#else
#define EI_QW_AVX2 0
#endif

#define TB 32        /* tiles of a block (two register tiles of 16) */
#define TBP (TB + 16) /* a V row: a block's tiles and the 16 a last store writes past them */
#define OB 6         /* output channels of a register tile */
/* a transform point's plane of V: K rows of TBP, and a line more (192 K bytes: for an even K
 * a multiple of 384, of 2 KiB for K a multiple of 32, and the input transform's 16 stores of
 * a pair, one a plane, would fall in a few cache sets) */
#define VPLANE(K) ((K) * TBP + 16)

/* int32 of a channel's outputs of a block in position order: from its first tile's first
 * output to its last tile's last, at most 2 (ceil(TB / tw) + 1) output rows of 2 tw, and the
 * epilogue's reads past the last (a vector of 8) */
static inline long pos_span(long tw) { return 4 * TB + 8 * tw + 16; }

/* the tiles of a block (the layouts' tile width; cpu_qwinograd.py aligns splits to it) */
long qwino_int8_tb(void) { return TB; }

/* bytes of a padded input row: the 2 tw + 2 columns the tiles read, and the 32-byte loads'
 * reach past the last 16 tiles' first column (2 tw + 34 in all) */
static inline long row_bytes(long tw) { return (2 * tw + 34 + 7) / 8 * 8; }

/* int32 of a call's work buffer for cin input channels and an output of ho x wo */
long qwino_int8_work(long cin, long ho, long wo) {
    const long K = (cin + 1) / 2, tw = (wo + 1) / 2, th = (ho + 1) / 2;
    const long img = 2 * K * (2 * th + 2) * row_bytes(tw); /* the padded input rows */
    return 16 * VPLANE(K) + 16 * OB * TB + OB * pos_span(tw) + (img + 3) / 4 + 16;
}

/* -- 1. the input transform ------------------------------------------------------------- */

/* the call's input rows y0 .. y0 + nr - 1 (padded: y0 = 2 ty - pt of its first tile row) of
 * every channel (2 K: an odd count's last zeros), row r of channel c at img + (c nr + r) rw:
 * column j of the padded row (pl zeros first) at j, zeros past the image's w columns and in
 * the rows outside it */
static void pad_rows(const qwino_int8_args *a, long K, long y0, long nr, long rw, int8_t *img) {
    const long right = a->pl + a->w < rw ? a->pl + a->w : rw;
    for (long c = 0; c < 2 * K; c++)
        for (long r = 0; r < nr; r++) {
            int8_t *o = img + (c * nr + r) * rw;
            const long y = y0 + r;
            if (c >= a->cin || y < 0 || y >= a->h) {
                memset(o, 0, (size_t)rw);
                continue;
            }
            memset(o, 0, (size_t)a->pl);
            memcpy(o + a->pl, a->x + c * a->xcs + y * a->xrs, (size_t)(right - a->pl));
            memset(o + right, 0, (size_t)(rw - right));
        }
}

#if EI_QW_AVX2
/* B^T d B of 16 consecutive tiles of one channel (their padded rows at p + r rw): v[e], e =
 * 4 i + j, the 16 tiles' point (i, j) as int16 */
static inline __attribute__((always_inline)) void vtransform16(const int8_t *p, long rw,
                                                              __m256i v[16]) {
    /* per 128-bit lane: the even bytes, then the odd */
    const __m256i deint = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15,
                                           0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    __m256i d[4][4];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) {
        /* columns 2t, 2t + 1 (from p) and 2t + 2, 2t + 3 (from p + 2) of tiles t = 0 .. 15 */
        const __m256i a0 = _mm256_loadu_si256((const __m256i *)(p + r * rw));
        const __m256i a2 = _mm256_loadu_si256((const __m256i *)(p + r * rw + 2));
        const __m256i e0 = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(a0, deint), 0xD8);
        const __m256i e2 = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(a2, deint), 0xD8);
        d[r][0] = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(e0));
        d[r][1] = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(e0, 1));
        d[r][2] = _mm256_cvtepi8_epi16(_mm256_castsi256_si128(e2));
        d[r][3] = _mm256_cvtepi8_epi16(_mm256_extracti128_si256(e2, 1));
    }
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) { /* B^T d, column by column */
        const __m256i d0 = d[0][j], d1 = d[1][j], d2 = d[2][j], d3 = d[3][j];
        d[0][j] = _mm256_sub_epi16(d0, d2);
        d[1][j] = _mm256_add_epi16(d1, d2);
        d[2][j] = _mm256_sub_epi16(d2, d1);
        d[3][j] = _mm256_sub_epi16(d1, d3);
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) { /* (B^T d) B, row by row */
        const __m256i t0 = d[i][0], t1 = d[i][1], t2 = d[i][2], t3 = d[i][3];
        v[4 * i + 0] = _mm256_sub_epi16(t0, t2);
        v[4 * i + 1] = _mm256_add_epi16(t1, t2);
        v[4 * i + 2] = _mm256_sub_epi16(t2, t1);
        v[4 * i + 3] = _mm256_sub_epi16(t1, t3);
    }
}

/* tiles [l0, l0 + n) of a block (n <= 16 of a tile row, their padded rows at p, pair k's
 * channels' at p and p + cs) into V: whole 16-lane stores, the lanes past n overwritten by
 * the next tiles (or in the row's slack, never read) */
static void input_tiles(const int8_t *p, long rw, long cs, long K, long k, long l0, int32_t *V) {
    __m256i va[16], vb[16];
    vtransform16(p, rw, va);
    vtransform16(p + cs, rw, vb);
#pragma GCC unroll 16
    for (int e = 0; e < 16; e++) {
        const __m256i lo = _mm256_unpacklo_epi16(va[e], vb[e]); /* tiles 0-3 | 8-11 */
        const __m256i hi = _mm256_unpackhi_epi16(va[e], vb[e]); /* tiles 4-7 | 12-15 */
        int32_t *o = V + e * VPLANE(K) + k * TBP + l0;
        _mm256_storeu_si256((__m256i *)o, _mm256_permute2x128_si256(lo, hi, 0x20));
        _mm256_storeu_si256((__m256i *)(o + 8), _mm256_permute2x128_si256(lo, hi, 0x31));
    }
}
#else
/* input_tiles in plain C: the same values at the same places (only the n tiles) */
static void input_tiles_n(const int8_t *p, long rw, long cs, long K, long k, long l0, long n,
                          int32_t *V) {
    for (long t = 0; t < n; t++) {
        uint32_t pair[16] = {0};
        for (int half = 0; half < 2; half++) {
            const int8_t *q = p + half * cs + 2 * t;
            int d[4][4], b[4][4];
            for (int r = 0; r < 4; r++)
                for (int j = 0; j < 4; j++) d[r][j] = q[r * rw + j];
            for (int j = 0; j < 4; j++) {
                b[0][j] = d[0][j] - d[2][j];
                b[1][j] = d[1][j] + d[2][j];
                b[2][j] = d[2][j] - d[1][j];
                b[3][j] = d[1][j] - d[3][j];
            }
            for (int i = 0; i < 4; i++) {
                const int v[4] = {b[i][0] - b[i][2], b[i][1] + b[i][2], b[i][2] - b[i][1],
                                  b[i][1] - b[i][3]};
                for (int j = 0; j < 4; j++)
                    pair[4 * i + j] |= (uint32_t)(uint16_t)(int16_t)v[j] << (16 * half);
            }
        }
        for (int e = 0; e < 16; e++) V[e * VPLANE(K) + k * TBP + l0 + t] = (int32_t)pair[e];
    }
}
#endif

/* a tile row's part of a block: tiles [tx0, tx0 + n) of tile row ty at the block's lanes
 * from l0 (its input rows from row r0 of img's nr a channel) */
static void input_row(long tx0, long n, long l0, long K, const int8_t *img, long r0, long nr,
                      long rw, int32_t *V) {
    for (long k = 0; k < K; k++) {
        const int8_t *p = img + (2 * k * nr + r0) * rw;
        for (long q = 0; q < n; q += 16) {
#if EI_QW_AVX2
            input_tiles(p + 2 * (tx0 + q), rw, nr * rw, K, k, l0 + q, V);
#else
            input_tiles_n(p + 2 * (tx0 + q), rw, nr * rw, K, k, l0 + q, n - q < 16 ? n - q : 16, V);
#endif
        }
    }
}

/* -- 2. the products ---------------------------------------------------------------------- */

/* M[e][i][TB] = sum over k of U[e][k][i] . V[e][k] (lanes [0, 16 nsub)) for one block of 6
 * output channels (its weights Ub = U + ob 16 K 6) */
static void multiply(const int32_t *V, const int32_t *Ub, long K, long nsub, int32_t *M) {
    for (long e = 0; e < 16; e++) {
        const int32_t *ve = V + e * VPLANE(K), *ue = Ub + e * K * OB;
        for (long s = 0; s < nsub; s++) {
#if EI_QW_AVX2
            __m256i c[OB][2];
#pragma GCC unroll 6
            for (int i = 0; i < OB; i++) c[i][0] = c[i][1] = _mm256_setzero_si256();
            const int32_t *vk = ve + 16 * s, *uk = ue;
            for (long k = 0; k < K; k++, vk += TBP, uk += OB) {
                const __m256i v0 = _mm256_loadu_si256((const __m256i *)vk);
                const __m256i v1 = _mm256_loadu_si256((const __m256i *)(vk + 8));
#pragma GCC unroll 6
                for (int i = 0; i < OB; i++) {
                    const __m256i u = _mm256_set1_epi32(uk[i]);
                    c[i][0] = _mm256_add_epi32(c[i][0], _mm256_madd_epi16(v0, u));
                    c[i][1] = _mm256_add_epi32(c[i][1], _mm256_madd_epi16(v1, u));
                }
            }
#pragma GCC unroll 6
            for (int i = 0; i < OB; i++) {
                int32_t *m = M + (e * OB + i) * TB + 16 * s;
                _mm256_storeu_si256((__m256i *)m, c[i][0]);
                _mm256_storeu_si256((__m256i *)(m + 8), c[i][1]);
            }
#else
            uint32_t c[OB][16] = {{0}};
            for (long k = 0; k < K; k++) {
                const int32_t *vk = ve + k * TBP + 16 * s;
                for (int i = 0; i < OB; i++) {
                    const uint32_t u = (uint32_t)ue[k * OB + i];
                    const int32_t ulo = (int16_t)(u & 0xffff), uhi = (int16_t)(u >> 16);
                    for (int t = 0; t < 16; t++) {
                        const uint32_t v = (uint32_t)vk[t];
                        const int32_t vlo = (int16_t)(v & 0xffff), vhi = (int16_t)(v >> 16);
                        c[i][t] += (uint32_t)(ulo * vlo) + (uint32_t)(uhi * vhi);
                    }
                }
            }
            for (int i = 0; i < OB; i++)
                for (int t = 0; t < 16; t++)
                    M[(e * OB + i) * TB + 16 * s + t] = (int32_t)c[i][t];
#endif
        }
    }
}

/* -- 3. the output transform -------------------------------------------------------------- */

/* tile t's 4 outputs (q: its first row's two, its second's) at their places of P (the
 * block's outputs in position order from p0; columns past wo and rows past ho dropped) */
static inline void tile_out(const int32_t q[4], long t, long tw, long p0,
                            const qwino_int8_args *a, int32_t *P) {
    const long oy = t / tw * 2, ox = t % tw * 2;
    int32_t *o = P + oy * a->wo + ox - p0;
    o[0] = q[0];
    if (ox + 1 < a->wo) o[1] = q[1];
    if (oy + 1 < a->ho) {
        o[a->wo] = q[2];
        if (ox + 1 < a->wo) o[a->wo + 1] = q[3];
    }
}

/* channel i of M's block (tiles t0 .. t0 + nt - 1 in its lanes): acc = A^T M A / 4 + bias,
 * into P in position order (the block's first output p0) */
static void output_channel(const int32_t *M, long i, long t0, long nt, int32_t bias, long tw,
                           long p0, const qwino_int8_args *a, int32_t *P) {
#if EI_QW_AVX2
    const __m256i b = _mm256_set1_epi32(bias);
    for (long v = 0; 8 * v < nt; v++) {
        __m256i m[16];
#pragma GCC unroll 16
        for (int e = 0; e < 16; e++)
            m[e] = _mm256_loadu_si256((const __m256i *)(M + (e * OB + i) * TB + 8 * v));
        __m256i s0[4], s1[4];
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) { /* A^T M */
            s0[j] = _mm256_add_epi32(_mm256_add_epi32(m[j], m[4 + j]), m[8 + j]);
            s1[j] = _mm256_sub_epi32(_mm256_sub_epi32(m[4 + j], m[8 + j]), m[12 + j]);
        }
        /* (A^T M) A, / 4 (exact), + bias */
#define EI_QW_Y0(s) _mm256_add_epi32(_mm256_add_epi32(s[0], s[1]), s[2])
#define EI_QW_Y1(s) _mm256_sub_epi32(_mm256_sub_epi32(s[1], s[2]), s[3])
#define EI_QW_FIN(t) _mm256_add_epi32(_mm256_srai_epi32(t, 2), b)
        const __m256i y00 = EI_QW_FIN(EI_QW_Y0(s0)), y01 = EI_QW_FIN(EI_QW_Y1(s0));
        const __m256i y10 = EI_QW_FIN(EI_QW_Y0(s1)), y11 = EI_QW_FIN(EI_QW_Y1(s1));
#undef EI_QW_Y0
#undef EI_QW_Y1
#undef EI_QW_FIN
        /* each row's two columns interleaved: tiles 0, 1 | 4, 5 and 2, 3 | 6, 7, in order */
        const __m256i l0 = _mm256_unpacklo_epi32(y00, y01), h0 = _mm256_unpackhi_epi32(y00, y01);
        const __m256i l1 = _mm256_unpacklo_epi32(y10, y11), h1 = _mm256_unpackhi_epi32(y10, y11);
        const __m256i r[4] = {
            _mm256_permute2x128_si256(l0, h0, 0x20), _mm256_permute2x128_si256(l0, h0, 0x31),
            _mm256_permute2x128_si256(l1, h1, 0x20), _mm256_permute2x128_si256(l1, h1, 0x31)};
        const long t = t0 + 8 * v, tx = t % tw;
        if (8 * v + 8 <= nt && tx + 8 <= tw && 2 * tx + 16 <= a->wo) {
            /* 8 tiles of one tile row, every column real: 16 outputs of each row as they lie */
            int32_t *o = P + t / tw * 2 * a->wo + 2 * tx - p0;
            _mm256_storeu_si256((__m256i *)o, r[0]);
            _mm256_storeu_si256((__m256i *)(o + 8), r[1]);
            if (t / tw * 2 + 1 < a->ho) {
                _mm256_storeu_si256((__m256i *)(o + a->wo), r[2]);
                _mm256_storeu_si256((__m256i *)(o + a->wo + 8), r[3]);
            }
            continue;
        }
        int32_t y[32]; /* else tile by tile */
        memcpy(y, r, sizeof y);
        for (long k = 0; k < 8 && 8 * v + k < nt; k++) {
            const int32_t q[4] = {y[2 * k], y[2 * k + 1], y[16 + 2 * k], y[16 + 2 * k + 1]};
            tile_out(q, t + k, tw, p0, a, P);
        }
    }
#else
    for (long l = 0; l < nt; l++) {
        uint32_t m[16], s0[4], s1[4];
        for (int e = 0; e < 16; e++) m[e] = (uint32_t)M[(e * OB + i) * TB + l];
        for (int j = 0; j < 4; j++) {
            s0[j] = m[j] + m[4 + j] + m[8 + j];
            s1[j] = m[4 + j] - m[8 + j] - m[12 + j];
        }
        const uint32_t r[4] = {s0[0] + s0[1] + s0[2], s0[1] - s0[2] - s0[3],
                               s1[0] + s1[1] + s1[2], s1[1] - s1[2] - s1[3]};
        int32_t q[4];
        for (int k = 0; k < 4; k++) /* 4 acc: a multiple of 4 */
            q[k] = (int32_t)((uint32_t)((int32_t)r[k] / 4) + (uint32_t)bias);
        tile_out(q, t0 + l, tw, p0, a, P);
    }
#endif
}

/* -- the kernel ----------------------------------------------------------------------------- */

void qwino_int8_f32(const qwino_int8_args *a) {
    const long K = (a->cin + 1) / 2, tw = (a->wo + 1) / 2, rw = row_bytes(tw), ps = pos_span(tw);
    int32_t *V = a->work, *M = V + 16 * VPLANE(K), *P = M + 16 * OB * TB;
    int8_t *img = (int8_t *)(P + OB * ps);
    if (a->t1 <= a->t0) return;
    /* the input rows of the call's tile rows, padded, once */
    const long ty0 = a->t0 / tw, nr = 2 * ((a->t1 - 1) / tw - ty0) + 4;
    pad_rows(a, K, 2 * ty0 - a->pt, nr, rw, img);
    /* conv_int8.c's epilogue reads its struct: the proved rows as its weights' (T = 0) */
    const qconv_int8_args e = {
        .layout = NULL, .toff = NULL, .T = 0, .wts = a->proved, .coutp = a->coutp,
        .cout = a->cout, .bias = a->bias, .wsum = NULL, .mult = a->mult, .g0 = 0, .g1 = 0,
        .wg = 0, .ho = a->ho, .wo = a->wo, .out = a->out, .ocs = a->ocs, .otype = a->otype,
        .oinv = a->oinv, .oscale = a->oscale, .act = a->act, .p0 = a->p0, .p1 = a->p1,
        .residual = a->residual, .z = a->z, .zcs = a->zcs, .ztype = a->ztype,
        .zscale = a->zscale,
    };
    long seg_j[2 * TB + 4], seg_n[2 * TB + 4], seg_pos[2 * TB + 4];
    for (long t0 = a->t0; t0 < a->t1; t0 += TB) {
        const long nt = a->t1 - t0 < TB ? a->t1 - t0 : TB;
        const long p0 = (t0 / tw) * 2 * a->wo + (t0 % tw) * 2; /* the block's first output */
        /* the block's tile rows: their input; their outputs' runs in position order, those
         * that continue one another joined (whole rows: a run across them) */
        long nseg = 0;
        for (long ty = t0 / tw; ty * tw < t0 + nt; ty++) {
            const long f = ty * tw > t0 ? ty * tw : t0;
            const long l = (ty + 1) * tw < t0 + nt ? (ty + 1) * tw : t0 + nt;
            const long tx0 = f - ty * tw, cols = 2 * tx0;
            input_row(tx0, l - f, f - t0, K, img, 2 * (ty - ty0), nr, rw, V);
            const long n = 2 * (l - f) < a->wo - cols ? 2 * (l - f) : a->wo - cols;
            for (long r = 0; r < 2 && 2 * ty + r < a->ho; r++) {
                const long pos = (2 * ty + r) * a->wo + cols;
                if (nseg && seg_pos[nseg - 1] + seg_n[nseg - 1] == pos) {
                    seg_n[nseg - 1] += n;
                    continue;
                }
                seg_j[nseg] = pos - p0, seg_n[nseg] = n, seg_pos[nseg] = pos;
                nseg++;
            }
        }
        const long nsub = (nt + 15) / 16;
        for (long oc0 = 0; oc0 < a->cout; oc0 += OB) {
            const long nrows = a->cout - oc0 < OB ? a->cout - oc0 : OB;
            multiply(V, a->U + oc0 * 16 * K, K, nsub, M);
            for (long i = 0; i < nrows; i++)
                output_channel(M, i, t0, nt, a->bias ? a->bias[oc0 + i] : 0, tw, p0, a, P + i * ps);
            qconv_int8_finish(&e, P, ps, oc0, nrows, seg_j, seg_n, seg_pos, nseg);
        }
    }
}
EI_TASK(qwino_int8)
