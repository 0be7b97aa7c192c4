/* 3x3 stride-1 convolution by Winograd's minimal filtering F(4x4, 3x3) (Lavin & Gray, 2015):
 * each 4x4 output tile costs 36 multiplies per (input, output) channel pair instead of 144.
 *
 * Tiles are numbered across the batch (image, tile row, tile column) and taken tb at a time
 * (tb a multiple of 16, at most TBMAX; the caller picks it per layer). For a block of nt <= tb
 * tiles:
 *   1. input transform  V[36][nt / 16][cin][16] = B^T d B of each tile's 6x6 input patch:
 *      each patch row is one vector load, an 8x8 transpose puts 8 tiles across the vector
 *      (masked at the image's edges, zero outside it: the padding is never materialised);
 *   2. 36 matrix products M[36][cout][tb] = U[36] V[36], U = G g G^T the transformed weights
 *      packed [36][ceil(cout / 6)][cin][6]: a 6-channel x 16-tile register tile (tile_6x16,
 *      as conv_direct.c), whose 6-channel weight panel stays in L1 across the block's 16-tile
 *      groups — so the weights stream from memory once per tb tiles, not once per 16;
 *   3. output transform Y = A^T M A per output channel on vectors across tiles, each output
 *      row of 8 tiles interleaved back into 32 contiguous floats, where bias, residual and
 *      activation (finish() in simd.h) apply before it is copied out run by run.
 *
 * A call covers tiles [t0, t1) and output-channel blocks [k0, k1). With few tiles (small
 * grids at batch 1) the caller makes them all one block and splits the output channels
 * between threads (each transforms the whole input: a few percent of the work, and no wait
 * between two phases): every thread busy, the weights read once in all.
 *
 * FP32 error: the transforms' coefficients (up to 8 in A, 5 in B) cost about four bits
 * against the direct sum; tests hold it to 2e-5 of the output's scale.
 *
 * Float16 storage (FP16 engines; `half`'s bits WG_XH, WG_OH, WG_ZH: x, out, z are float16,
 * strides still in elements): the input transform widens each patch row as it loads it, the
 * residual row is copied as float16 and widened a vector at a time as it is added, and each
 * finished output vector is narrowed (round to nearest even, half.h) into a row copied out
 * run by run — the bits of widening into float32, this kernel on float32, narrowing after. */
#include "simd.h"
#include "half.h"

#if defined(__F16C__) && defined(__SSSE3__) && !(defined(__AVX512BW__) && defined(__AVX512VL__))
#define EI_WG_SHUF 1
#else
#define EI_WG_SHUF 0
#endif

#define WG_XH 1 /* x is float16 */
#define WG_OH 2 /* out is float16 */
#define WG_ZH 4 /* z is float16 */

#define KR 6
#define TBMAX 128
/* floats between consecutive transform points' planes of V and M beyond their data: with
 * power-of-two plane sizes the 36 planes' rows would share a few cache sets */
#define PAD 16
/* software prefetch, in channels ahead, of the input transform's patch rows and the output
 * transform's runs (write intent): at batch 8 x comes from and out goes to L3 or memory (the
 * hardware prefetcher follows few of the 2 x cin row streams); 1, 2 and 4 measured alike */
#define PF_X 2
#define PF_O 2

/* where tile t of the batch reads and writes */
typedef struct {
    long b, oy, ox;
} tile_at;

static inline tile_at locate(long t, long per_image, long tw) {
    tile_at a;
    a.b = t / per_image;
    long r = t % per_image;
    a.oy = (r / tw) * 4;
    a.ox = (r % tw) * 4;
    return a;
}

/* B^T d for one column of 6 values (8 tiles per vector) */
#define BT_APPLY(d0, d1, d2, d3, d4, d5, r)                                                   \
    do {                                                                                      \
        r[0] = 4.0f * d0 - 5.0f * d2 + d4;                                                    \
        r[1] = -4.0f * (d1 + d2) + d3 + d4;                                                   \
        r[2] = 4.0f * (d1 - d2) - d3 + d4;                                                    \
        r[3] = 2.0f * (d3 - d1) - d2 + d4;                                                    \
        r[4] = 2.0f * (d1 - d3) - d2 + d4;                                                    \
        r[5] = 4.0f * d1 - 5.0f * d3 + d5;                                                    \
    } while (0)

/* A^T m for one column of 6 values */
#define AT_APPLY(m0, m1, m2, m3, m4, m5, r)                                                   \
    do {                                                                                      \
        v8 s12 = m1 + m2, d12 = m1 - m2, s34 = m3 + m4, d34 = m3 - m4;                       \
        r[0] = m0 + s12 + s34;                                                                \
        r[1] = d12 + 2.0f * d34;                                                              \
        r[2] = s12 + 4.0f * s34;                                                              \
        r[3] = d12 + 8.0f * d34 + m5;                                                         \
    } while (0)

#if defined(__clang__)
#define SHUF(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
#define SHUF(a, b, ...) __builtin_shuffle(a, b, (v8i){__VA_ARGS__})
#endif

/* columns 0..5 of the 8x8 matrix whose rows are r[0..7]: c[q][j] = r[j][q] */
static inline void transpose8x6(const v8 r[8], v8 c[6]) {
    v8 u0 = SHUF(r[0], r[1], 0, 8, 1, 9, 4, 12, 5, 13), u1 = SHUF(r[0], r[1], 2, 10, 3, 11, 6, 14, 7, 15);
    v8 u2 = SHUF(r[2], r[3], 0, 8, 1, 9, 4, 12, 5, 13), u3 = SHUF(r[2], r[3], 2, 10, 3, 11, 6, 14, 7, 15);
    v8 u4 = SHUF(r[4], r[5], 0, 8, 1, 9, 4, 12, 5, 13), u5 = SHUF(r[4], r[5], 2, 10, 3, 11, 6, 14, 7, 15);
    v8 u6 = SHUF(r[6], r[7], 0, 8, 1, 9, 4, 12, 5, 13), u7 = SHUF(r[6], r[7], 2, 10, 3, 11, 6, 14, 7, 15);
    v8 v0 = SHUF(u0, u2, 0, 1, 8, 9, 4, 5, 12, 13), v1 = SHUF(u0, u2, 2, 3, 10, 11, 6, 7, 14, 15);
    v8 v2 = SHUF(u1, u3, 0, 1, 8, 9, 4, 5, 12, 13), v3 = SHUF(u1, u3, 2, 3, 10, 11, 6, 7, 14, 15);
    v8 v4 = SHUF(u4, u6, 0, 1, 8, 9, 4, 5, 12, 13), v5 = SHUF(u4, u6, 2, 3, 10, 11, 6, 7, 14, 15);
    v8 v6 = SHUF(u5, u7, 0, 1, 8, 9, 4, 5, 12, 13), v7 = SHUF(u5, u7, 2, 3, 10, 11, 6, 7, 14, 15);
    c[0] = SHUF(v0, v4, 0, 1, 2, 3, 8, 9, 10, 11);
    c[1] = SHUF(v1, v5, 0, 1, 2, 3, 8, 9, 10, 11);
    c[2] = SHUF(v2, v6, 0, 1, 2, 3, 8, 9, 10, 11);
    c[3] = SHUF(v3, v7, 0, 1, 2, 3, 8, 9, 10, 11);
    c[4] = SHUF(v0, v4, 4, 5, 6, 7, 12, 13, 14, 15);
    c[5] = SHUF(v1, v5, 4, 5, 6, 7, 12, 13, 14, 15);
}

/* the input geometry of a layer (x: float16 when xh) */
typedef struct {
    const void *x;
    long xis, xcs, xrs, h, w, pt, pl, cin, per_image, tw, xh;
} wino_input;

/* lanes [q0, q1) of the 8 floats at p, the others zero and never read (masked loads do not
 * fault on masked lanes, so p may start before the row) */
static inline v8 load8_lanes(const float *p, long q0, long q1) {
#if defined(__AVX512VL__)
    __mmask8 m = (__mmask8)(((1u << q1) - 1u) & ~((1u << q0) - 1u));
    return (v8)_mm256_maskz_loadu_ps(m, p);
#elif defined(__AVX__)
    v8i lane = {0, 1, 2, 3, 4, 5, 6, 7};
    v8i m = (lane >= (int)q0) & (lane < (int)q1);
    return (v8)_mm256_maskload_ps(p, (__m256i)m);
#else
    v8 v = {0};
    for (long q = q0; q < q1; q++) v[q] = p[q];
    return v;
#endif
}

/* the same, from float16 storage: a masked load (AVX-512BW), lanes inserted in registers
 * (F16C: a buffer written lane by lane and read as a vector would stall the load on
 * store forwarding), or through a buffer */
static inline v8 load8_lanes_h(const uint16_t *p, long q0, long q1) {
#if defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__F16C__)
    __mmask8 m = (__mmask8)(((1u << q1) - 1u) & ~((1u << q0) - 1u));
    return (v8)_mm256_cvtph_ps(_mm_maskz_loadu_epi16(m, p));
#elif defined(__F16C__)
    __m128i h = _mm_setzero_si128();
#define EI_LANE(k)                                                                            \
    if (q0 <= k && k < q1) h = _mm_insert_epi16(h, p[k], k);
    EI_LANE(0) EI_LANE(1) EI_LANE(2) EI_LANE(3) EI_LANE(4) EI_LANE(5) EI_LANE(6) EI_LANE(7)
#undef EI_LANE
    return (v8)_mm256_cvtph_ps(h);
#else
    uint16_t t[8];
    for (long q = 0; q < 8; q++) t[q] = q >= q0 && q < q1 ? p[q] : 0;
    return h8_load(t);
#endif
}

/* 8 values of x from element i: float32, or float16 widened (xh) */
static inline __attribute__((always_inline)) v8 x8(const void *x, long i, long xh) {
    return xh ? h8_load((const uint16_t *)x + i) : load8((const float *)x + i);
}

static inline __attribute__((always_inline)) v8 x8_lanes(const void *x, long i, long q0, long q1,
                                                        long xh) {
    return xh ? load8_lanes_h((const uint16_t *)x + i, q0, q1)
              : load8_lanes((const float *)x + i, q0, q1);
}

/* where a tile's 6x6 input patch lies: its offset from x (row 0, column 0 of the patch, which
 * may be in the padding), the rows [r0, r1) and columns [q0, q1) inside the image, and
 * whether its 6 rows can be read as whole 8-float vectors */
typedef struct {
    long off, r0, r1, q0, q1, fast;
#if EI_WG_SHUF
    /* float16 x on F16C: an edge patch's row as 8 values read from off + d (inside the
     * image row, d < 0 never past its start) and shuffled into lanes [q0, q1), the others
     * zero (one load and a pshufb where inserting the lanes one by one cost 1.7x the
     * float32 input transform) */
    long d, shuf_ok;
    __m128i shuf;
#endif
} patch_at;

#if EI_WG_SHUF
/* the shuffle of an edge patch (see patch_at): lane k in [q0, q1) from lane k - d */
static void patch_shuffle(patch_at *p, long x0, long w) {
    long a = x0 + p->q0; /* the first column needed, or the last 8 of the row */
    if (a + 8 > w) a = w - 8;
    p->d = a - x0;
    unsigned char m[16];
    for (long k = 0; k < 8; k++) {
        int in = k >= p->q0 && k < p->q1;
        m[2 * k] = in ? (unsigned char)(2 * (k - p->d)) : 0x80;
        m[2 * k + 1] = in ? (unsigned char)(2 * (k - p->d) + 1) : 0x80;
    }
    memcpy(&p->shuf, m, 16);
    p->shuf_ok = 1;
}
#endif

/* 1. the 6x6 input patches of nt tiles from t0, transformed into
 * V[36][ceil(nt / 16)][cin][16] (planes PAD floats apart): per channel and 8 tiles, each patch
 * row is one vector load (masked at the image's edges, zero outside it: the padding is never
 * materialised), an 8x8 transpose puts the tiles across the vector, then B^T along the row
 * and B^T down the columns. Lanes past nt are zero. */
static inline __attribute__((always_inline)) void input_transform_as(const wino_input *in,
                                                                    long t0, long nt, float *V,
                                                                    long xh) {
    long groups = (nt + 7) / 8, nsb = (nt + 15) / 16, cin = in->cin;
    long estride = nsb * cin * 16 + PAD;
    patch_at pa[TBMAX];
    for (long j = 0; j < groups * 8; j++) {
        if (j >= nt) {
            pa[j] = (patch_at){0, 0, 0, 0, 0, 0}; /* no rows: zero */
            continue;
        }
        tile_at at = locate(t0 + j, in->per_image, in->tw);
        long y0 = at.oy - in->pt, x0 = at.ox - in->pl;
        patch_at *p = pa + j;
        p->off = at.b * in->xis + y0 * in->xrs + x0;
        p->r0 = y0 < 0 ? -y0 : 0;
        p->r1 = in->h - y0 < 6 ? in->h - y0 : 6;
        p->q0 = x0 < 0 ? -x0 : 0;
        p->q1 = in->w - x0 < 6 ? in->w - x0 : 6;
        if (p->r1 < p->r0) p->r1 = p->r0;
        if (p->q1 <= p->q0) p->r1 = p->r0; /* no column inside: no rows either */
        p->fast = p->r0 == 0 && p->r1 == 6 && p->q0 == 0 && x0 + 8 <= in->w;
#if EI_WG_SHUF
        p->shuf_ok = 0;
        if (xh && !p->fast && p->r1 > p->r0 && in->w >= 8) patch_shuffle(p, x0, in->w);
#endif
    }
    for (long c = 0; c < cin; c++) {
        long xc = c * in->xcs;
        for (long g = 0; g < groups; g++) {
            const patch_at *pg = pa + g * 8;
            v8 s[6][6]; /* s[patch row][B^T row] */
            for (long r = 0; r < 6; r++) {
                v8 rows[8], col[6];
                /* unrolled: rows[] stays in registers (GCC kept the float16 loop rolled,
                 * every row stored to the stack and loaded back by the transpose) */
#pragma GCC unroll 8
                for (long j = 0; j < 8; j++) {
                    const patch_at *p = pg + j;
                    long src = xc + p->off + r * in->xrs;
                    if (p->fast)
                        rows[j] = x8(in->x, src, xh);
#if EI_WG_SHUF
                    else if (xh && p->shuf_ok && r >= p->r0 && r < p->r1)
                        rows[j] = (v8)_mm256_cvtph_ps(_mm_shuffle_epi8(
                            _mm_loadu_si128((const __m128i *)((const uint16_t *)in->x + src + p->d)),
                            p->shuf));
#endif
                    else if (r >= p->r0 && r < p->r1)
                        rows[j] = x8_lanes(in->x, src, p->q0, p->q1, xh);
                    else
                        rows[j] = splat(0.0f);
                }
                /* the same rows PF_X channels ahead (a row of 8 tiles spans ~34 floats) */
                for (long j = 0; j < 8; j += 2) {
                    long src = xc + PF_X * in->xcs + pg[j].off + r * in->xrs;
                    __builtin_prefetch((const char *)in->x + src * (xh ? 2 : 4), 0, 3);
                }
                transpose8x6(rows, col);
                BT_APPLY(col[0], col[1], col[2], col[3], col[4], col[5], s[r]);
            }
            float *dst = V + ((g / 2) * cin + c) * 16 + (g % 2) * 8;
            for (long q = 0; q < 6; q++) {
                v8 o[6];
                BT_APPLY(s[0][q], s[1][q], s[2][q], s[3][q], s[4][q], s[5][q], o);
                for (long i = 0; i < 6; i++) store8(dst + (i * 6 + q) * estride, o[i]);
            }
        }
        if (groups % 2) /* the last 16-tile group's upper half: zero */
            for (long e = 0; e < 36; e++)
                store8(V + e * estride + ((nsb - 1) * cin + c) * 16 + 8, splat(0.0f));
    }
}

static void input_transform(const wino_input *in, long t0, long nt, float *V) {
    if (in->xh)
        input_transform_as(in, t0, nt, V, 1);
    else
        input_transform_as(in, t0, nt, V, 0);
}

/* U read PF_U floats ahead (software prefetch): U is one sequential stream of 36 x 4 times
 * the weights, from memory in a whole network (256-channel layers 9.4 MB, 512: 38 MB), and
 * the hardware prefetcher alone left the products waiting on it (ResNet-50 at batch 1:
 * 14x14x256 layers 0.85-0.95x the time without, 7x7x512 0.90x; 768 ~ 2048 > 192 floats) */
#define PF_U 768

/* 2. M[e][kb - k0][tb] = U[e][kb] V[e] for the 36 transform points e, output-channel blocks
 * [k0, k1), nsb 16-tile groups: the 6-channel panel U[e][kb] stays in L1 across the groups */
static void multiply(const float *U, const float *V, long cin, long kblocks, long k0, long k1,
                     long nsb, long tb, float *M) {
    long kc = (k1 - k0) * KR;
    for (long e = 0; e < 36; e++) {
        const float *ve = V + e * (nsb * cin * 16 + PAD);
        for (long kb = k0; kb < k1; kb++) {
            const float *ue = U + (e * kblocks + kb) * cin * KR;
            for (long sb = 0; sb < nsb; sb++) {
                v8 acc[KR][2];
                tile_6x16kp(ue, KR, ve + sb * cin * 16, cin, acc, 0, PF_U);
                float *m = M + e * (kc * tb + PAD) + (kb - k0) * KR * tb + sb * 16;
                for (long i = 0; i < KR; i++, m += tb) {
                    store8(m, acc[i][0]);
                    store8(m + 8, acc[i][1]);
                }
            }
        }
    }
}

/* consecutive tiles of one tile row: their outputs are one contiguous run per output row */
typedef struct {
    long j0, j1, b, oy, ox;
} tile_run;

static long tile_runs(long t0, long j0, long j1, long per_image, long tw, tile_run *runs) {
    long n = 0;
    for (long j = j0; j < j1; j++) {
        tile_at a = locate(t0 + j, per_image, tw);
        if (n && runs[n - 1].b == a.b && runs[n - 1].oy == a.oy &&
            runs[n - 1].ox + 4 * (j - runs[n - 1].j0) == a.ox) {
            runs[n - 1].j1 = j + 1;
            continue;
        }
        runs[n++] = (tile_run){j, j + 1, a.b, a.oy, a.ox};
    }
    return n;
}

/* the output geometry and epilogue of a layer (out, z: float16 when oh, zh) */
typedef struct {
    const float *bias;
    long cout, ho, wo, per_image, tw;
    void *out;
    long ois, ocs, act;
    float p0, p1;
    long residual;
    const void *z;
    long zis, zcs, oh, zh;
} wino_output;

/* 3. Y = A^T M A for output channels [k0 * 6, min(k1 * 6, cout)) and nt tiles from t0, 8
 * tiles at a time; each output row of the 8 tiles is interleaved into 32 floats
 * (row[4 j + q] = y[q][j]), finished (bias, residual, activation) as contiguous vectors and
 * copied out run by run */
static void output_transform(const float *M, const wino_output *o, long k0, long k1, long tb,
                             long t0, long nt, float *row) {
    tile_run runs[TBMAX / 8][8];
    long nruns[TBMAX / 8];
    long groups = (nt + 7) / 8, kc = (k1 - k0) * KR, estride = kc * tb + PAD;
    for (long g = 0; g < groups; g++)
        nruns[g] = tile_runs(t0, g * 8, nt < g * 8 + 8 ? nt : g * 8 + 8, o->per_image, o->tw,
                             runs[g]);
    float *zrow = row + 32;
    uint16_t hrow[32], hzrow[32] = {0};
    long kend = k1 * KR < o->cout ? k1 * KR : o->cout;
    for (long k = k0 * KR; k < kend; k++) {
        v8 bk = splat(o->bias ? o->bias[k] : 0.0f);
        for (long g = 0; g < groups; g++) {
            const tile_run *rs = runs[g];
            long nr = nruns[g], half = g * 8;
            v8 t[4][6];
            for (long q = 0; q < 6; q++) {
                v8 r[4];
                const float *m = M + q * estride + (k - k0 * KR) * tb + half;
                AT_APPLY(load8(m), load8(m + 6 * estride), load8(m + 12 * estride),
                         load8(m + 18 * estride), load8(m + 24 * estride),
                         load8(m + 30 * estride), r);
                for (long i = 0; i < 4; i++) t[i][q] = r[i];
            }
            for (long i = 0; i < 4; i++) {
                v8 y[4];
                AT_APPLY(t[i][0], t[i][1], t[i][2], t[i][3], t[i][4], t[i][5], y);
                v8 a = SHUF(y[0], y[1], 0, 8, 1, 9, 4, 12, 5, 13);
                v8 b = SHUF(y[2], y[3], 0, 8, 1, 9, 4, 12, 5, 13);
                v8 c = SHUF(y[0], y[1], 2, 10, 3, 11, 6, 14, 7, 15);
                v8 d = SHUF(y[2], y[3], 2, 10, 3, 11, 6, 14, 7, 15);
                v8 e[4] = {SHUF(a, b, 0, 1, 8, 9, 2, 3, 10, 11), SHUF(c, d, 0, 1, 8, 9, 2, 3, 10, 11),
                           SHUF(a, b, 4, 5, 12, 13, 6, 7, 14, 15), SHUF(c, d, 4, 5, 12, 13, 6, 7, 14, 15)};
                if (o->residual)
                    for (long u = 0; u < nr; u++) {
                        const tile_run *ru = rs + u;
                        long len = 4 * (ru->j1 - ru->j0), yy = ru->oy + i;
                        if (ru->ox + len > o->wo) len = o->wo - ru->ox;
                        long zi = ru->b * o->zis + k * o->zcs + yy * o->wo + ru->ox;
                        if (yy >= o->ho) continue;
                        if (o->zh) /* copied as float16, widened a vector at a time below */
                            memcpy(hzrow + 4 * (ru->j0 - half), (const uint16_t *)o->z + zi,
                                   (size_t)len * sizeof(uint16_t));
                        else
                            memcpy(zrow + 4 * (ru->j0 - half), (const float *)o->z + zi,
                                   (size_t)len * sizeof(float));
                    }
                for (long v = 0; v < 4; v++) {
                    v8 zv = !o->residual ? splat(0.0f)
                            : o->zh      ? h8_load(hzrow + 8 * v)
                                         : load8(zrow + 8 * v);
                    v8 yv = finish(e[v], bk, zv, o->act, o->p0, o->p1, o->residual);
                    if (o->oh) /* the whole row narrowed, then copied out run by run */
                        h8_store(hrow + 8 * v, yv);
                    else
                        store8(row + 8 * v, yv);
                }
                for (long u = 0; u < nr; u++) {
                    const tile_run *ru = rs + u;
                    long len = 4 * (ru->j1 - ru->j0), yy = ru->oy + i;
                    if (ru->ox + len > o->wo) len = o->wo - ru->ox;
                    long oi = ru->b * o->ois + k * o->ocs + yy * o->wo + ru->ox;
                    if (yy >= o->ho) continue;
                    long es = o->oh ? 2 : 4; /* the same run PF_O channels ahead */
                    const char *pa = (const char *)o->out + (oi + PF_O * o->ocs) * es;
                    __builtin_prefetch(pa, 1, 3);
                    __builtin_prefetch(pa + (len - 1) * es, 1, 3);
                    if (o->oh)
                        memcpy((uint16_t *)o->out + oi, hrow + 4 * (ru->j0 - half),
                               (size_t)len * sizeof(uint16_t));
                    else
                        memcpy((float *)o->out + oi, row + 4 * (ru->j0 - half),
                               (size_t)len * sizeof(float));
                }
            }
        }
    }
}

/* floats of V (the transformed input of tb tiles) */
long winograd_v_f32(long cin, long tb) { return 36 * (cin * tb + PAD); }

/* floats of work space a call needs besides V: M for cout output channels (its blocks
 * [k0, k1), cout = 6 (k1 - k0)) of tb tiles and the output row */
long winograd_work_f32(long cout, long tb) {
    long coutp = (cout + KR - 1) / KR * KR;
    return 36 * (coutp * tb + PAD) + 64;
}

void conv_winograd_f32(const conv_winograd_args *a) {
    long th = (a->ho + 3) / 4, tw = (a->wo + 3) / 4, per_image = th * tw;
    long kblocks = (a->cout + KR - 1) / KR, tb = a->tb;
    wino_input in = {a->x,   a->xis, a->xcs,    a->xrs, a->h,
                     a->w,   a->pt,  a->pl,     a->cin, per_image,
                     tw,     (a->half & WG_XH) != 0};
    wino_output o = {a->bias, a->cout, a->ho,  a->wo,       per_image, tw,     a->out,
                     a->ois,  a->ocs,  a->act, a->p0,       a->p1,     a->residual,
                     a->z,    a->zis,  a->zcs, (a->half & WG_OH) != 0, (a->half & WG_ZH) != 0};
    if (tb < 16 || tb > TBMAX || tb % 16) return; /* the caller's contract (cpu_winograd.py) */
    float *M = a->work, *row = M + 36 * ((a->k1 - a->k0) * KR * tb + PAD);
    for (long t = a->t0; t < a->t1; t += tb) {
        long nt = a->t1 - t < tb ? a->t1 - t : tb;
        input_transform(&in, t, nt, a->V);
        multiply(a->U, a->V, a->cin, kblocks, a->k0, a->k1, (nt + 15) / 16, tb, M);
        output_transform(M, &o, a->k0, a->k1, tb, t, nt, row);
    }
}

/* the float16 vector path this file was compiled with (half.h EI_H8_PATH), for tests */
long conv_winograd_half_path(void) { return EI_H8_PATH; }

EI_TASK(conv_winograd)
