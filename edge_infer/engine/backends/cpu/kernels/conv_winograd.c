/* 3x3 stride-1 convolution by Winograd's minimal filtering F(4x4, 3x3) (Lavin & Gray, 2015):
 * each 4x4 output tile costs 36 multiplies per (input, output) channel pair instead of 144.
 *
 * Tiles are numbered across the batch (image, tile row, tile column) and taken TB at a time.
 * For a block of TB tiles, all in cache:
 *   1. input transform  V[36][cin][TB] = B^T d B of each tile's 6x6 input patch: each
 *      patch row is one vector load, an 8x8 transpose puts 8 tiles across the vector (zero
 *      outside the image: the padding is never materialised, edge tiles go through a
 *      zero-filled copy);
 *   2. 36 matrix products M[36][cout][TB] = U[36] V[36], U = G g G^T the transformed weights
 *      packed [36][ceil(cout / 6)][cin][6] (a 6-channel x 16-tile register tile, as
 *      conv_direct.c);
 *   3. output transform Y = A^T M A per output channel on vectors across tiles, each output
 *      row of 8 tiles interleaved back into 32 contiguous floats, where bias, residual and
 *      activation (finish() in simd.h) apply before it is copied out run by run.
 *
 * FP32 error: the transforms' coefficients (up to 8 in A, 5 in B) cost about four bits
 * against the direct sum; tests hold it to 2e-5 of the output's scale. */
#include "simd.h"

#define TB 16
#define KR 6

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

/* 1. the 6x6 input patches of nt tiles, transformed into V[36][cin][TB]: per channel and
 * 8 tiles, each patch row is one vector load (a zero-filled copy for tiles at the image's
 * edges), an 8x8 transpose puts the tiles across the vector, then B^T along the row and
 * B^T down the columns */
static void input_transform(const float *x, long xis, long xcs, long xrs, long h, long w,
                            long pt, long pl, long cin, long t0, long nt, long per_image,
                            long tw, float *V, float *edge) {
    tile_at at[TB];
    int fast[TB];
    for (long j = 0; j < TB; j++) {
        fast[j] = 0;
        if (j >= nt) continue;
        at[j] = locate(t0 + j, per_image, tw);
        long y0 = at[j].oy - pt, x0 = at[j].ox - pl;
        fast[j] = y0 >= 0 && x0 >= 0 && y0 + 6 <= h && x0 + 8 <= w; /* 8-float row loads */
    }
    for (long c = 0; c < cin; c++) {
        const float *src[TB];
        long stride[TB];
        for (long j = 0; j < TB; j++) {
            float *e = edge + j * 48; /* [6 rows][8] */
            if (j < nt && fast[j]) {
                src[j] = x + at[j].b * xis + c * xcs + (at[j].oy - pt) * xrs + at[j].ox - pl;
                stride[j] = xrs;
                continue;
            }
            src[j] = e;
            stride[j] = 8;
            memset(e, 0, 48 * sizeof(float));
            if (j >= nt) continue;
            const float *p = x + at[j].b * xis + c * xcs;
            long y0 = at[j].oy - pt, x0 = at[j].ox - pl;
            for (long r = 0; r < 6; r++) {
                long yy = y0 + r;
                if (yy < 0 || yy >= h) continue;
                for (long q = 0; q < 6; q++) {
                    long xx = x0 + q;
                    if (xx >= 0 && xx < w) e[r * 8 + q] = p[yy * xrs + xx];
                }
            }
        }
        for (long half = 0; half < TB; half += 8) {
            v8 s[6][6]; /* s[patch row][B^T row] */
            for (long r = 0; r < 6; r++) {
                v8 rows[8], col[6];
                for (long j = 0; j < 8; j++) rows[j] = load8(src[half + j] + r * stride[half + j]);
                transpose8x6(rows, col);
                BT_APPLY(col[0], col[1], col[2], col[3], col[4], col[5], s[r]);
            }
            for (long q = 0; q < 6; q++) {
                v8 o[6];
                BT_APPLY(s[0][q], s[1][q], s[2][q], s[3][q], s[4][q], s[5][q], o);
                for (long i = 0; i < 6; i++) store8(V + ((i * 6 + q) * cin + c) * TB + half, o[i]);
            }
        }
    }
}

/* 2. M[e] = U[e] V[e] for the 36 transform points e */
static void multiply(const float *U, const float *V, long cin, long kblocks, float *M) {
    for (long e = 0; e < 36; e++) {
        const float *ve = V + e * cin * TB;
        for (long kb = 0; kb < kblocks; kb++) {
            v8 acc[KR][2];
            tile_6x16(U + (e * kblocks + kb) * cin * KR, ve, cin, acc);
            float *m = M + (e * kblocks * KR + kb * KR) * TB;
            for (long i = 0; i < KR; i++, m += TB) {
                store8(m, acc[i][0]);
                store8(m + 8, acc[i][1]);
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

/* 3. Y = A^T M A per output channel for 8 tiles at a time; each output row of the 8 tiles is
 * interleaved into 32 floats (row[4 j + q] = y[q][j]), finished (bias, residual, activation)
 * as contiguous vectors and copied out run by run */
static void output_transform(const float *M, long coutp, const float *bias, long cout,
                             long ho, long wo, long t0, long nt, long per_image, long tw,
                             float *out, long ois, long ocs, long act, float p0, float p1,
                             long residual, const float *z, long zis, long zcs, float *row) {
    tile_run runs[2][8];
    long nruns[2] = {0, 0};
    for (long half = 0; half < TB && half < nt; half += 8)
        nruns[half / 8] = tile_runs(t0, half, nt < half + 8 ? nt : half + 8, per_image, tw,
                                    runs[half / 8]);
    float *zrow = row + 32;
    for (long k = 0; k < cout; k++) {
        v8 bk = splat(bias ? bias[k] : 0.0f);
        for (long half = 0; half < TB && half < nt; half += 8) {
            const tile_run *rs = runs[half / 8];
            long nr = nruns[half / 8];
            v8 t[4][6];
            for (long q = 0; q < 6; q++) {
                v8 r[4];
                const float *m = M + (q * coutp + k) * TB + half;
                AT_APPLY(load8(m), load8(m + 6 * coutp * TB), load8(m + 12 * coutp * TB),
                         load8(m + 18 * coutp * TB), load8(m + 24 * coutp * TB),
                         load8(m + 30 * coutp * TB), r);
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
                if (residual)
                    for (long u = 0; u < nr; u++) {
                        const tile_run *ru = rs + u;
                        long len = 4 * (ru->j1 - ru->j0), yy = ru->oy + i;
                        if (ru->ox + len > wo) len = wo - ru->ox;
                        if (yy < ho)
                            memcpy(zrow + 4 * (ru->j0 - half),
                                   z + ru->b * zis + k * zcs + yy * wo + ru->ox,
                                   (size_t)len * sizeof(float));
                    }
                for (long v = 0; v < 4; v++)
                    store8(row + 8 * v, finish(e[v], bk, residual ? load8(zrow + 8 * v) : splat(0.0f),
                                               act, p0, p1, residual));
                for (long u = 0; u < nr; u++) {
                    const tile_run *ru = rs + u;
                    long len = 4 * (ru->j1 - ru->j0), yy = ru->oy + i;
                    if (ru->ox + len > wo) len = wo - ru->ox;
                    if (yy < ho)
                        memcpy(out + ru->b * ois + k * ocs + yy * wo + ru->ox,
                               row + 4 * (ru->j0 - half), (size_t)len * sizeof(float));
                }
            }
        }
    }
}

/* floats of work space conv_winograd_f32 needs */
long winograd_work_f32(long cin, long cout) {
    long coutp = (cout + KR - 1) / KR * KR;
    return 36 * cin * TB + 36 * coutp * TB + 48 * TB + 16 * TB;
}

/* tiles [t0, t1) of the batch; U packed as described above; work: winograd_work_f32 floats */
static void conv_winograd(const float *x, long xis, long xcs, long xrs, long h, long w,
                          long pt, long pl, long cin, const float *U, const float *bias,
                          long cout, long ho, long wo, long t0, long t1, float *out, long ois,
                          long ocs, long act, float p0, float p1, long residual, const float *z,
                          long zis, long zcs, float *work) {
    long kblocks = (cout + KR - 1) / KR, coutp = kblocks * KR;
    long th = (ho + 3) / 4, tw = (wo + 3) / 4, per_image = th * tw;
    float *V = work, *M = V + 36 * cin * TB, *edge = M + 36 * coutp * TB, *row = edge + 48 * TB;
    for (long t = t0; t < t1; t += TB) {
        long nt = t1 - t < TB ? t1 - t : TB;
        input_transform(x, xis, xcs, xrs, h, w, pt, pl, cin, t, nt, per_image, tw, V, edge);
        multiply(U, V, cin, kblocks, M);
        output_transform(M, coutp, bias, cout, ho, wo, t, nt, per_image, tw, out, ois, ocs,
                         act, p0, p1, residual, z, zis, zcs, row);
    }
}

void conv_winograd_f32(const conv_winograd_args *a) {
    conv_winograd(a->x, a->xis, a->xcs, a->xrs, a->h, a->w, a->pt, a->pl, a->cin, a->U, a->bias,
                  a->cout, a->ho, a->wo, a->t0, a->t1, a->out, a->ois, a->ocs, a->act, a->p0,
                  a->p1, a->residual, a->z, a->zis, a->zcs, a->work);
}

EI_TASK(conv_winograd)
