/* Convolution for small grids (late layers: 7x7 to 20x20 outputs, many channels): vectors
 * run along output channels instead of positions, so a 10x10 output fills registers as well
 * as a 160x160 one does.
 *
 * pack_positions_f32 gathers, for blocks of pb output positions, every term's input value
 * (terms and input layout as in conv_direct.c; posoff[p] is output position p's offset in
 * the input grid) into pk[block][T][pb] — an im2col in register-tile order. conv_ocvec_f32
 * then keeps a 16-channel x pb-position tile in registers: per term, two weight vectors and
 * pb broadcast inputs. Weights are packed [ceil(cout / 16)][T][16], zero past cout.
 *
 * pb (the `pb` field; 0 stands for 6) is 6 or 7: 7 fills the 7x7, 14x14 and 28x28 grids of
 * late layers exactly (6 pads 49 positions to 54), and its 14 accumulators plus two weight
 * vectors and a broadcast need the 32 vector registers of AVX-512 (conv_ocvec_pb7_fits:
 * elsewhere the 7-position tile works, with spills).
 *
 * A plain 1x1 projection (xcs set: no more output than input channels) skips the pack: the
 * tile broadcasts its inputs where they lie, a channel stride apart (14x14 projections
 * measured 5-10 % less work than pack + tile, one thread, and the layer is one phase
 * instead of two). Past KB_MIN input channels the tiles go through them KB at a time,
 * their partial sums kept in memory between blocks: the KB input lines and KB x 16
 * weights a tile reads stay in L1 for the next tile (576 input lines did not). The same
 * products in the same order: the bits of the packed path.
 *
 * Float16 storage (FP16 engines, `half` bits: 1 base, 2 out, 4 z): the pack widens the
 * input as it gathers it (exact), the residual is widened as it is loaded and each
 * position's 16 channels narrowed to nearest even after the whole epilogue — the bits of
 * widen, the float32 kernel, narrow (half.h). The pack and the tile stay float32. A plain
 * projection's float16 input read in place is widened a group of positions at a time into
 * a 64 KB stack buffer (all its terms), which every channel block of the group then reads
 * as a float32 input in place: the widening paid once a layer, no pack phase (MobileNetV2's
 * 28x28 and 14x14 projections 0.83-0.97x of the float16 pack + tile). */
#include "simd.h"
#include "half.h"

#define HALF_X 1
#define HALF_OUT 2
#define HALF_Z 4

/* element i of float32 (h == 0) or float16 (h != 0) storage: 8-vector and single loads */
static inline v8 ld8(const void *p, long i, long h) {
    return h ? h8_load((const uint16_t *)p + i) : load8((const float *)p + i);
}
static inline float ld1(const void *p, long i, long h) {
    return h ? ei_float_from_half(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}

#define PB_MAX 7
/* bytes of packed terms a group of position blocks keeps in L2 (conv_ocvec) */
#define PACK_L2 (384L << 10)
#define OB 16
/* layers of more than KB_MIN terms go KB terms at a time (KB x 16 weights: 8 KB), the
 * partial sums of at most PART_BLOCKS position blocks kept between blocks of terms */
#ifndef KB
#define KB 128
#endif
#define KB_MIN 192
#define PART_BLOCKS 48
/* floats of a float16 input widened per position group, read in place (a thread's stack) */
#define WIDE_FLOATS (16L << 10)

/* the tile's positions: 6, or 7 where asked */
static inline long tile_pb(long pb) { return pb == 7 ? 7 : 6; }

/* Runs of offsets d apart in a block (3 stands for "more than two, or a missing position");
 * *split: where the second run starts (PB for one run). */
static long block_runs(const long *off, long PB, long d, long *split) {
    long runs = off[0] < 0 ? 3 : 1;
    *split = PB;
    for (long j = 1; j < PB; j++) {
        if (off[j] < 0) runs = 3;
        else if (off[j] != off[j - 1] + d) runs++, *split = *split == PB ? j : *split;
    }
    return runs;
}

/* A block whose positions form at most two runs of offsets 1 apart (a block inside one
 * output row, or straddling two) packs a term with two 8-float loads and a blend; 2 apart
 * (a stride-2 conv read in place), the even lanes of 16-float loads. The loads may reach
 * past the block's last position, so they are used only below `lim`, the end of everything
 * the terms read (every term of a layer lies in one buffer). Each term's 8-float store
 * spills 8 - PB floats into the next term's slot, which is written after it; the block's last
 * term stores exactly PB. Other blocks (short rows, the last one) go position by
 * position. hx: base is float16 (inlined twice: the float32 build keeps its plain loads). */
static inline __attribute__((always_inline)) void pack_positions(const pack_positions_args *a,
                                                                 long hx) {
    const void *base = a->base;
    const long *toff = a->toff, *posoff = a->posoff;
    long T = a->T, P = a->P, PB = tile_pb(a->pb), tmax = 0, pmax = 0;
    for (long t = 0; t < T; t++) tmax = toff[t] > tmax ? toff[t] : tmax;
    for (long p = 0; p < P; p++) pmax = posoff[p] > pmax ? posoff[p] : pmax;
    long lim = tmax + pmax + 1;
    for (long pb = a->pb0; pb < a->pb1; pb++) {
        float *dst = a->pk + pb * T * PB;
        long off[PB_MAX], split, d = 1;
        for (long j = 0; j < PB; j++) off[j] = pb * PB + j < P ? posoff[pb * PB + j] : -1;
        long runs = block_runs(off, PB, 1, &split);
        if (runs > 2) runs = block_runs(off, PB, d = 2, &split);
        if (runs <= 2 && T > 0) {
            /* lane j of the second run reads src[o1 + d * j] */
            long o0 = off[0], o1 = split < PB ? off[split] - d * split : o0;
            v8i first = (v8i){0, 1, 2, 3, 4, 5, 6, 7} < (int)split;
            long reach = (o0 > o1 ? o0 : o1) + 8 * d, t = 0;
            if (d == 1) {
                for (; t < T - 1 && o1 >= 0 && toff[t] + reach <= lim; t++, dst += PB) {
                    long src = toff[t];
                    store8(dst, vsel(first, ld8(base, src + o0, hx), ld8(base, src + o1, hx)));
                }
            } else {
                for (; t < T - 1 && o1 >= 0 && toff[t] + reach <= lim; t++, dst += PB) {
                    long s0 = toff[t] + o0, s1 = toff[t] + o1;
                    v8 e0 = __builtin_shufflevector(ld8(base, s0, hx), ld8(base, s0 + 8, hx), 0,
                                                    2, 4, 6, 8, 10, 12, 14);
                    v8 e1 = __builtin_shufflevector(ld8(base, s1, hx), ld8(base, s1 + 8, hx), 0,
                                                    2, 4, 6, 8, 10, 12, 14);
                    store8(dst, vsel(first, e0, e1));
                }
            }
            for (; t < T; t++, dst += PB)
                for (long j = 0; j < PB; j++) dst[j] = ld1(base, toff[t] + off[j], hx);
            continue;
        }
        for (long t = 0; t < T; t++, dst += PB)
            for (long j = 0; j < PB; j++)
                dst[j] = off[j] >= 0 ? ld1(base, toff[t] + off[j], hx) : 0.0f;
    }
}

/* each its own function: the float32 one compiled as the pack was before float16 storage */
static __attribute__((noinline)) void pack_f32(const pack_positions_args *a) {
    pack_positions(a, 0);
}
static __attribute__((noinline)) void pack_half(const pack_positions_args *a) {
    pack_positions(a, HALF_X);
}

void pack_positions_f32(const pack_positions_args *a) {
    if (a->half & HALF_X) pack_half(a);
    else pack_f32(a);
}

/* The register tile: simd.h's tile_6x16k (6 positions, 16 channels; the terms `us` floats
 * apart: PB in the pack, a channel stride where a plain 1x1 conv's input is read in place),
 * here also with a seventh position (pb 7: AVX-512's 32 registers) */
static inline __attribute__((always_inline)) void tile_7x16(const float *u, long us,
                                                          const float *v, long n,
                                                          v8 acc[7][2], long more) {
    v8 a00 = {0}, a01 = {0}, a10 = {0}, a11 = {0}, a20 = {0}, a21 = {0}, a30 = {0};
    v8 a31 = {0}, a40 = {0}, a41 = {0}, a50 = {0}, a51 = {0}, a60 = {0}, a61 = {0};
    if (more) {
        a00 = acc[0][0]; a01 = acc[0][1]; a10 = acc[1][0]; a11 = acc[1][1];
        a20 = acc[2][0]; a21 = acc[2][1]; a30 = acc[3][0]; a31 = acc[3][1];
        a40 = acc[4][0]; a41 = acc[4][1]; a50 = acc[5][0]; a51 = acc[5][1];
        a60 = acc[6][0]; a61 = acc[6][1];
    }
    for (long k = 0; k < n; k++, u += us, v += 16) {
        v8 v0 = load8(v), v1 = load8(v + 8);
        a00 += u[0] * v0; a01 += u[0] * v1;
        a10 += u[1] * v0; a11 += u[1] * v1;
        a20 += u[2] * v0; a21 += u[2] * v1;
        a30 += u[3] * v0; a31 += u[3] * v1;
        a40 += u[4] * v0; a41 += u[4] * v1;
        a50 += u[5] * v0; a51 += u[5] * v1;
        a60 += u[6] * v0; a61 += u[6] * v1;
    }
    acc[0][0] = a00; acc[0][1] = a01; acc[1][0] = a10; acc[1][1] = a11;
    acc[2][0] = a20; acc[2][1] = a21; acc[3][0] = a30; acc[3][1] = a31;
    acc[4][0] = a40; acc[4][1] = a41; acc[5][0] = a50; acc[5][1] = a51;
    acc[6][0] = a60; acc[6][1] = a61;
}
/* The tile with each term's input line prefetched PF floats ahead (simd.h's tile_6x16kp: the
 * line the tile PF / 6 blocks on reads): a plain projection's float32 input read in place,
 * its lines xcs apart, past PF_MIN_BYTES of input (conv_ocvec). MobileNetV2's 576 -> 96 on
 * 14 x 14, one thread, CPU time, whole engine: 0.89-0.96x of the plain tile (PF 12, 24, 40
 * alike) */
#ifndef PF
#define PF 24
#endif
#define PF_MIN_BYTES (384L << 10)
/* The last position block's r < PB positions (7x7 grids in tiles of 6: 8 tiles and one
 * position): tiles of those r positions only, not of PB of which PB - r are padding. Each
 * accumulator sums tile_6x16k's products in its order: the same bits. */
static inline __attribute__((always_inline)) void tile_rx16(const float *u, long us,
                                                          const float *v, long n,
                                                          v8 acc[PB_MAX][2], long r,
                                                          long more) {
    v8 a[PB_MAX][2];
    for (long j = 0; j < r; j++)
        a[j][0] = more ? acc[j][0] : (v8){0}, a[j][1] = more ? acc[j][1] : (v8){0};
    for (long k = 0; k < n; k++, u += us, v += 16) {
        v8 v0 = load8(v), v1 = load8(v + 8);
        for (long j = 0; j < r; j++) {
            a[j][0] += u[j] * v0;
            a[j][1] += u[j] * v1;
        }
    }
    for (long j = 0; j < r; j++) acc[j][0] = a[j][0], acc[j][1] = a[j][1];
}
/* (r positions as tiles of 4, 2 and 1: three tiles compiled, not six) */
static __attribute__((noinline)) void tile_tail(const float *u, long us, const float *v, long n,
                                                v8 acc[PB_MAX][2], long r, long more) {
    for (long j = 0; j < r;) {
        if (r - j >= 4) tile_rx16(u + j, us, v, n, acc + j, 4, more), j += 4;
        else if (r - j >= 2) tile_rx16(u + j, us, v, n, acc + j, 2, more), j += 2;
        else tile_rx16(u + j, us, v, n, acc + j, 1, more), j += 1;
    }
}

/* The last position block's r <= 2 positions (7x7 grids at batch 1: 49 = 8 x 6 + 1; at
 * batch 8, 392 = 65 x 6 + 2) for every channel block of the call before the other tiles:
 * tile_rx16 there keeps 2 r chains of dependent multiply-adds (FMA-latency bound: about
 * 2/3 of a 6-position tile's time for one position), here TAIL_OBS_R1 (r 1) or 2 (r 2) channel
 * blocks at once (8 independent sums; per term one or two broadcasts and their blocks'
 * weight rows). All T terms in order into tacc[block][position]: per output the products of
 * tile_rx16 in its order (the kb blocks' partial sums are exact stores): the same bits. */
#define TAIL_OBS_MAX 128
#define TAIL_T_MAX 1024
static __attribute__((noinline)) void tail_blocks(const float *u, long us, const float *w,
                                                  long T, long nob, long r,
                                                  v8 (*tacc)[2][2]) {
    long b = 0;
    if (r == 1)
        for (; b + 4 <= nob; b += 4) {
            v8 a[4][2];
            for (long c = 0; c < 4; c++) a[c][0] = a[c][1] = (v8){0};
            const float *v = w + b * T * OB, *x = u;
            for (long k = 0; k < T; k++, x += us, v += OB) {
#pragma GCC unroll 4
                for (long c = 0; c < 4; c++) {
                    a[c][0] += x[0] * load8(v + c * T * OB);
                    a[c][1] += x[0] * load8(v + c * T * OB + 8);
                }
            }
            for (long c = 0; c < 4; c++) tacc[b + c][0][0] = a[c][0], tacc[b + c][0][1] = a[c][1];
        }
    if (r == 2)
        for (; b + 2 <= nob; b += 2) {
            v8 a[2][2][2];
            for (long c = 0; c < 2; c++)
                for (long j = 0; j < 2; j++) a[c][j][0] = a[c][j][1] = (v8){0};
            const float *v = w + b * T * OB, *x = u;
            for (long k = 0; k < T; k++, x += us, v += OB) {
#pragma GCC unroll 2
                for (long c = 0; c < 2; c++) {
                    v8 v0 = load8(v + c * T * OB), v1 = load8(v + c * T * OB + 8);
#pragma GCC unroll 2
                    for (long j = 0; j < 2; j++) {
                        a[c][j][0] += x[j] * v0;
                        a[c][j][1] += x[j] * v1;
                    }
                }
            }
            for (long c = 0; c < 2; c++)
                for (long j = 0; j < 2; j++)
                    tacc[b + c][j][0] = a[c][j][0], tacc[b + c][j][1] = a[c][j][1];
        }
    for (; b < nob; b++) {
        v8 acc[PB_MAX][2];
        tile_tail(u, us, w + b * T * OB, T, acc, r, 0);
        for (long j = 0; j < r; j++) tacc[b][j][0] = acc[j][0], tacc[b][j][1] = acc[j][1];
    }
}

/* r[i][j] = r[j][i]: an 8 x 8 block of floats transposed in registers */
static inline __attribute__((always_inline)) void transpose8(v8 r[8]) {
    v8 t[8], u[8];
    for (long i = 0; i < 8; i += 2) {
        t[i] = __builtin_shufflevector(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        t[i + 1] = __builtin_shufflevector(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (long i = 0; i < 8; i += 4)
        for (long h = 0; h < 2; h++) {
            v8 a = t[i + h], b = t[i + h + 2];
            u[i + 2 * h] = __builtin_shufflevector(a, b, 0, 1, 8, 9, 4, 5, 12, 13);
            u[i + 2 * h + 1] = __builtin_shufflevector(a, b, 2, 3, 10, 11, 6, 7, 14, 15);
        }
    for (long i = 0; i < 4; i++) {
        r[i] = __builtin_shufflevector(u[i], u[i + 4], 0, 1, 2, 3, 8, 9, 10, 11);
        r[i + 4] = __builtin_shufflevector(u[i], u[i + 4], 4, 5, 6, 7, 12, 13, 14, 15);
    }
}

/* The first n lanes of y stored at p (n < 8: the others untouched). AVX2 without AVX-512
 * masks: as 4, 2 and 1 float stores, not simd.h's vmaskmovps, whose store is slow on AMD
 * cores; every row this kernel writes is short tiles (one thread, batch 1, Zen 3: 160->960
 * on 7x7 0.92x, 96->576 on 14x14 0.83x of the masked stores) */
static inline void store8_part(float *p, v8 y, long n) {
#if defined(__AVX2__) && !defined(__AVX512VL__)
    if (n >= 8) {
        store8(p, y);
        return;
    }
    __m128 q = _mm256_castps256_ps128((__m256)y);
    if (n >= 4) _mm_storeu_ps(p, q), q = _mm256_extractf128_ps((__m256)y, 1), p += 4, n -= 4;
    if (n >= 2) _mm_storel_pi((__m64 *)p, q), q = _mm_movehl_ps(q, q), p += 2, n -= 2;
    if (n) _mm_store_ss(p, q);
#else
    store8_n(p, y, n);
#endif
}

/* A float32 tile's epilogue: acc[j] (position j's 16 channels, j < np) plus the bias b0,
 * b1, the residual rows at zp (channel i at zp + i * zcs, positions in a row) and the
 * activation, stored as the first nc channel rows (o + i * ocs) of np positions. The
 * residual rows are turned into position vectors and the results into channel rows by
 * 8 x 8 transposes (the scalar path gathered and scattered them element by element); the
 * epilogue itself is the scalar path's loop, so that the compiler fuses its operations as
 * it did there: the same bits. wide: each row stored as 8 floats, the ones past np the
 * next tile's positions of the same row, which it writes after (a layer without residual:
 * nothing reads the output while it is written) — one store a row, not AVX2's 4 + 2 of a
 * 6-position tile. */
static inline __attribute__((always_inline)) void rows_out(v8 acc[PB_MAX][2], long np,
                                                          long nc, v8 b0, v8 b1,
                                                          const float *zp, long zcs, float *o,
                                                          long ocs, long act, float p0,
                                                          float p1, long residual,
                                                          long wide) {
    float tile[8][OB], zt[8][OB];
    if (zp)
        for (long h = 0; h < 2; h++) {
            v8 r[8];
            for (long i = 0; i < 8; i++)
                r[i] = 8 * h + i < nc ? load8_n(zp + (8 * h + i) * zcs, np) : (v8){0};
            transpose8(r); /* r[j]: position j's 8 channels */
            for (long j = 0; j < 8; j++) store8(zt[j] + 8 * h, r[j]);
        }
    for (long j = 0; j < np; j++) {
        v8 z0 = zp ? load8(zt[j]) : (v8){0}, z1 = zp ? load8(zt[j] + 8) : (v8){0};
        store8(tile[j], finish(acc[j][0], b0, z0, act, p0, p1, residual));
        store8(tile[j] + 8, finish(acc[j][1], b1, z1, act, p0, p1, residual));
    }
    for (long j = np; j < 8; j++) store8(tile[j], (v8){0}), store8(tile[j] + 8, (v8){0});
    for (long h = 0; h < 2; h++) {
        v8 r[8];
        for (long j = 0; j < 8; j++) r[j] = load8(tile[j] + 8 * h);
        transpose8(r); /* r[i]: channel 8 h + i's positions */
        for (long i = 0; i < 8 && 8 * h + i < nc; i++) {
            if (wide) store8(o + (8 * h + i) * ocs, r[i]);
            else store8_part(o + (8 * h + i) * ocs, r[i], np);
        }
    }
}

/* rows_out for a residual under no activation, relu or clip (projections): the bias added in
 * the position tile, the residual after the output transpose, to each channel row as it
 * lies, then the activation (cheap on a row's 8 lanes) — no transpose of the residual rows.
 * The same operations on the same values as rows_out: the same bits. Out of line: one
 * instance (inlined in every kernel instance it doubled the file's compile time). */
static __attribute__((noinline)) void rows_out_z(v8 acc[PB_MAX][2], long np, long nc, v8 b0,
                                                  v8 b1, const float *zp, long zcs, float *o,
                                                  long ocs, long act, float p0, float p1,
                                                  long residual) {
    float tile[8][OB];
    for (long j = 0; j < np; j++) {
        store8(tile[j], acc[j][0] + b0);
        store8(tile[j] + 8, acc[j][1] + b1);
    }
    for (long j = np; j < 8; j++) store8(tile[j], (v8){0}), store8(tile[j] + 8, (v8){0});
    for (long h = 0; h < 2; h++) {
        v8 r[8];
        for (long j = 0; j < 8; j++) r[j] = load8(tile[j] + 8 * h);
        transpose8(r); /* r[i]: channel 8 h + i's positions */
        for (long i = 0; i < 8 && 8 * h + i < nc; i++) {
            v8 y = r[i], z = load8_n(zp + (8 * h + i) * zcs, np);
            if (residual == 1) y += z;
            if (act == EI_ACT_RELU) y = vmax(y, splat(0.0f));
            else if (act == EI_ACT_CLIP) y = vmin(vmax(y, splat(p0)), splat(p1));
            if (residual == 2) y += z;
            store8_part(o + (8 * h + i) * ocs, y, np);
        }
    }
}

/* rows_out of a tile without residual under clip (expansions: relu6) with the activation
 * known: finish's kind tests gone from its 2 np vectors. Out of line: one instance. */
static __attribute__((noinline)) void rows_out_clip(v8 acc[PB_MAX][2], long np, long nc, v8 b0,
                                                     v8 b1, float *o, long ocs, float p0,
                                                     float p1, long wide) {
    rows_out(acc, np, nc, b0, b1, 0, 0, o, ocs, EI_ACT_CLIP, p0, p1, 0, wide);
}

/* n positions from p0 of T float16 input lines xcs apart, widened into w (lines ws apart) */
static void widen_lines(const uint16_t *x, long T, long xcs, long p0, long n, float *w, long ws) {
    for (long t = 0; t < T; t++) {
        const uint16_t *s = x + t * xcs + p0;
        float *d = w + t * ws;
        long j = 0;
        for (; j + 8 <= n; j += 8) store8(d + j, h8_load(s + j));
        for (; j < n; j++) d[j] = ei_float_from_half(s[j]);
    }
}

/* (inlined for each tile width and storage: the float32 build keeps its plain loads and
 * stores) */
static inline __attribute__((always_inline)) void
conv_ocvec(const float *pk, long T, long npb, const float *wpack, const float *bias, long ob0,
           long ob1, long cout, long P, void *out, long ocs, long act, float p0, float p1,
           long residual, const void *z, long zcs, long half, long PB, long xcs, float *wide,
           long pf) {
    /* xcs: the terms read in place, a channel stride apart (pk: the input's first
     * position), position block pb at pk + pb * PB; 0: packed, block pb at pk + pb * T * PB.
     * A float16 input read in place (half & HALF_X, xcs set): each group's positions are
     * widened into `wide` (WIDE_FLOATS) once, and every channel block reads them there */
    long hx = xcs && (half & HALF_X), us = xcs ? xcs : PB, bs = xcs ? PB : T * PB;
    long hz = residual ? half & HALF_Z : 0;
    float tile[PB_MAX][OB];
    uint16_t htile[PB_MAX][OB];
    /* position blocks go a group at a time, the group's packed terms (at most PACK_L2
     * bytes) kept in L2 while every channel block goes through them: a large pack (28x28
     * outputs of 1152 terms: 3.6 MB) is read from L3 once, not once per channel block */
    long group = T > 0 ? PACK_L2 / (T * PB * (long)sizeof(float)) : npb;
    group = xcs ? npb : group < 1 ? 1 : group;
    /* terms a block, in place: the tiles of a group go through the first kb terms, then the
     * next kb (their partial sums in part), so that the kb x 16 weights and the kb input
     * lines the tiles share stay in L1 (a pack is read once a tile, in order: not blocked) */
    long kb = xcs && T > KB_MIN ? KB : T, cap = kb < T ? PART_BLOCKS : npb;
    /* the input lines prefetched where the terms go in blocks (unblocked, a tile's lines
     * and weights fill L1 without them) and the input outgrows L2 (then it comes from L3 or
     * the other core once a channel block: 576 in on 14 x 14, 451 KB; 384 in, 301 KB,
     * measured no gain) */
    pf = pf && kb < T && T * P * (long)sizeof(float) > PF_MIN_BYTES;
    if (hx && cap > WIDE_FLOATS / (T * PB)) cap = WIDE_FLOATS / (T * PB);
    cap = cap < 1 ? 1 : cap;
    if (group > cap) { /* groups of even size */
        long n = (npb + cap - 1) / cap;
        group = (npb + n - 1) / n;
    }
    long ws = group * PB; /* hx: the widened lines' stride */
    v8 part[PART_BLOCKS * PB_MAX][2];
    long nob = ob1 - ob0, ngroups = (npb + group - 1) / group;
    /* a last position block of 1 or 2 positions: every channel block's at once (tail_blocks) */
    long rt = npb > 0 ? P - (npb - 1) * PB : 0;
    long tb = rt >= 1 && rt <= 2 && nob <= TAIL_OBS_MAX && (!hx || T <= TAIL_T_MAX);
    v8 tacc[tb ? nob : 1][2][2];
    if (tb) {
        const float *u = pk + (npb - 1) * bs;
        long ts = us;
        float tw[hx ? 2 * T : 1];
        if (hx) {
            widen_lines((const uint16_t *)pk, T, xcs, (npb - 1) * PB, rt, tw, 2);
            u = tw, ts = 2;
        }
        tail_blocks(u, ts, wpack + ob0 * T * OB, T, nob, rt, tacc);
    }
    for (long it = 0; it < ngroups * nob; it++) { /* each group, each channel block */
        long g0 = it / nob * group, ob = ob0 + it % nob;
        const float *src = pk + g0 * bs; /* the group's first position block */
        long ss = us;
        if (hx) {
            long p0 = g0 * PB, n = P - p0 < ws ? P - p0 : ws;
            if (it % nob == 0) widen_lines((const uint16_t *)pk, T, xcs, p0, n, wide, ws);
            src = wide, ss = ws;
        }
        long c0 = ob * OB, nc = cout - c0 < OB ? cout - c0 : OB;
        float bt[OB] = {0};
        for (long i = 0; i < nc; i++) bt[i] = bias ? bias[c0 + i] : 0.0f;
        v8 b0 = load8(bt), b1 = load8(bt + 8);
        for (long k0 = 0; k0 < T - kb; k0 += kb) /* every block of terms but the last */
            for (long pb = g0; pb < npb && pb < g0 + group; pb++) {
                long np = P - pb * PB < PB ? P - pb * PB : PB;
                const float *u = src + (pb - g0) * bs + k0 * ss;
                const float *v = wpack + (ob * T + k0) * OB;
                v8(*acc)[2] = part + (pb - g0) * PB;
                if (np < PB && tb) continue; /* (tail_blocks') */
                if (np < PB) tile_tail(u, ss, v, kb, acc, np, k0 > 0);
                else if (PB == 7) tile_7x16(u, ss, v, kb, acc, k0 > 0);
                else if (pf) tile_6x16kp(u, ss, v, kb, acc, k0 > 0, PF);
                else tile_6x16k(u, ss, v, kb, acc, k0 > 0);
            }
        long k0 = kb < T ? (T - 1) / kb * kb : 0, kn = T - k0;
        for (long pb = g0; pb < npb && pb < g0 + group; pb++) {
            v8 acc[PB_MAX][2]; /* acc[j]: position j's 16 channels */
            long np = P - pb * PB < PB ? P - pb * PB : PB, more = k0 > 0;
            const float *u = src + (pb - g0) * bs + k0 * ss, *v = wpack + (ob * T + k0) * OB;
            for (long j = 0; more && j < np && !(np < PB && tb); j++)
                acc[j][0] = part[(pb - g0) * PB + j][0], acc[j][1] = part[(pb - g0) * PB + j][1];
            if (np < PB && tb)
                for (long j = 0; j < np; j++)
                    acc[j][0] = tacc[ob - ob0][j][0], acc[j][1] = tacc[ob - ob0][j][1];
            else if (np < PB) tile_tail(u, ss, v, kn, acc, np, more);
            else if (PB == 7) tile_7x16(u, ss, v, kn, acc, more);
            else if (pf) tile_6x16kp(u, ss, v, kn, acc, more, PF);
            else tile_6x16k(u, ss, v, kn, acc, more);
            if (!half) { /* float32: the tile turned into channel rows in registers */
                float *o = (float *)out + c0 * ocs + pb * PB;
                const float *zp = residual ? (const float *)z + c0 * zcs + pb * PB : 0;
                long wide = !residual && pb * PB + 8 <= P;
                if (zp && (act == EI_ACT_NONE || act == EI_ACT_RELU || act == EI_ACT_CLIP))
                    rows_out_z(acc, np, nc, b0, b1, zp, zcs, o, ocs, act, p0, p1, residual);
                else if (!zp && act == EI_ACT_CLIP)
                    rows_out_clip(acc, np, nc, b0, b1, o, ocs, p0, p1, wide);
                else
                    rows_out(acc, np, nc, b0, b1, zp, zcs, o, ocs, act, p0, p1, residual, wide);
                continue;
            }
            for (long j = 0; j < np; j++) {
                long p = pb * PB + j;
                v8 z0 = {0}, z1 = {0};
                if (residual && hz) { /* the 16 channels gathered, then widened together */
                    uint16_t zh[OB] = {0};
                    for (long i = 0; i < nc; i++) zh[i] = ((const uint16_t *)z)[(c0 + i) * zcs + p];
                    z0 = h8_load(zh);
                    z1 = h8_load(zh + 8);
                } else if (residual) {
                    float zt[OB] = {0};
                    for (long i = 0; i < nc; i++) zt[i] = ((const float *)z)[(c0 + i) * zcs + p];
                    z0 = load8(zt);
                    z1 = load8(zt + 8);
                }
                store8(tile[j], finish(acc[j][0], b0, z0, act, p0, p1, residual));
                store8(tile[j] + 8, finish(acc[j][1], b1, z1, act, p0, p1, residual));
            }
            if (half & HALF_OUT) { /* each position's 16 channels narrowed together */
                for (long j = 0; j < np; j++) {
                    h8_store(htile[j], load8(tile[j]));
                    h8_store(htile[j] + 8, load8(tile[j] + 8));
                }
                for (long i = 0; i < nc; i++) {
                    uint16_t *o = (uint16_t *)out + (c0 + i) * ocs + pb * PB;
                    for (long j = 0; j < np; j++) o[j] = htile[j][i];
                }
                continue;
            }
            for (long i = 0; i < nc; i++) {
                float *o = (float *)out + (c0 + i) * ocs + pb * PB;
                for (long j = 0; j < np; j++) o[j] = tile[j][i];
            }
        }
    }
}

#define OCVEC_CALL(a, half, PB, xcs, wide, pf)                                                 \
    conv_ocvec(a->pk, a->T, a->npb, a->wpack, a->bias, a->ob0, a->ob1, a->cout, a->P, a->out,  \
               a->ocs, a->act, a->p0, a->p1, a->residual, a->z, a->zcs, half, PB, xcs, wide, pf)

/* each its own function: the float32 packed ones compiled as the kernel was before; the
 * in-place ones (a->xcs: a plain 1x1 conv's float32 input, no pack) beside them */
static __attribute__((noinline)) void ocvec6(const conv_ocvec_args *a) {
    OCVEC_CALL(a, 0, 6, 0, 0, 0);
}
static __attribute__((noinline)) void ocvec7(const conv_ocvec_args *a) {
    OCVEC_CALL(a, 0, 7, 0, 0, 0);
}
static __attribute__((noinline)) void ocvec6_x(const conv_ocvec_args *a) {
    OCVEC_CALL(a, 0, 6, a->xcs, 0, 1);
}
static __attribute__((noinline)) void ocvec7_x(const conv_ocvec_args *a) {
    OCVEC_CALL(a, 0, 7, a->xcs, 0, 0);
}
static __attribute__((noinline)) void ocvec6_half(const conv_ocvec_args *a, long half) {
    float wide[WIDE_FLOATS];
    OCVEC_CALL(a, half, 6, a->xcs, wide, 0);
}
static __attribute__((noinline)) void ocvec7_half(const conv_ocvec_args *a, long half) {
    float wide[WIDE_FLOATS];
    OCVEC_CALL(a, half, 7, a->xcs, wide, 0);
}

void conv_ocvec_f32(const conv_ocvec_args *a) {
    long half = a->half & (HALF_OUT | (a->residual ? HALF_Z : 0) | (a->xcs ? HALF_X : 0));
    long seven = tile_pb(a->pb) == 7;
    if (half && seven) ocvec7_half(a, half);
    else if (half) ocvec6_half(a, half);
    else if (seven && a->xcs) ocvec7_x(a);
    else if (seven) ocvec7(a);
    else if (a->xcs) ocvec6_x(a);
    else ocvec6(a);
}

/* 1 where the 7-position tile keeps its 17 vectors in registers (32 of them: AVX-512, where
 * 8-float vectors have ymm16-31), 0 where it spills (AVX2, SSE; NEON, where an 8-float
 * vector takes two of the 32 q registers): the tactic asks for pb 7 only where it fits */
long conv_ocvec_pb7_fits(void) {
#if defined(__AVX512VL__)
    return 1;
#else
    return 0;
#endif
}

/* the float16 vector path this file was compiled with (half.h EI_H8_PATH), for tests */
long conv_ocvec_half_path(void) { return EI_H8_PATH; }

EI_TASK(pack_positions)
EI_TASK(conv_ocvec)
