/* Direct convolution over "terms": compiled on the target device (-march/-mcpu=native).
 *
 * A convolution output position g of a grid (rows of width wg) is
 *     out[oc, g] = bias[oc] + sum_t W[oc, t] * base[toff[t] + g]
 * where each term t is one (input channel, kernel tap) pair and toff[t] its offset in the
 * prepared input: the zero-padded input for stride 1 (grid width = padded width), or its
 * polyphase split for stride s (grid width = padded width / s), so every term reads a
 * contiguous run of the input — no im2col copy. Grid columns >= wo are computed and
 * discarded when the results are stored.
 *
 * Register tile: MR output channels x NR grid positions, NR = 2 vectors of 8 floats
 * (GCC vector extensions: AVX2/AVX-512 on x86-64, NEON on aarch64). Weights are packed as
 * [ceil(cout / MR)][T][MR], zero past cout; `pk` is the caller's scratch of T x NR floats
 * (one per thread) where each strip's input runs are packed. Bias, residual and the common activations are
 * applied to the tile in registers before it is stored (one pass over memory per layer).
 *
 * Float16 storage (FP16 engines, `half` bits: 1 x, 2 out, 4 z): the layout copies widen x
 * as they read it (exact), the residual is widened as it is loaded and the tile narrowed
 * to nearest even as it is stored, after the whole epilogue — the bits of widen, the
 * float32 kernel, narrow (half.h). The layout and the tile stay float32. A plain 1x1 conv
 * reads a float16 input in place (conv_direct_f32 with bit 1: `base` is float16), widened
 * as each strip's runs are packed — no layout pass.
 */
#include "simd.h"
#include "half.h"

#define HALF_X 1
#define HALF_OUT 2
#define HALF_Z 4

/* element i of an array of float32 (h == 0) or float16 (h != 0): address, 8-vector and
 * single loads (widened) and stores (narrowed) */
static inline void *at(const void *p, long i, long h) {
    return (char *)p + i * (h ? 2 : 4);
}
static inline v8 ld8(const void *p, long i, long h) {
    return h ? h8_load((const uint16_t *)p + i) : load8((const float *)p + i);
}
static inline void st8(void *p, long i, v8 v, long h) {
    if (h) h8_store((uint16_t *)p + i, v);
    else store8((float *)p + i, v);
}
static inline float ld1(const void *p, long i, long h) {
    return h ? ei_float_from_half(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}
static inline void st1(void *p, long i, float v, long h) {
    if (h) ((uint16_t *)p)[i] = ei_half_from_float(v);
    else ((float *)p)[i] = v;
}

#define MR 6
#define NR 16
/* Software prefetch distances, in floats along a run. A strip reads T runs and writes MR
 * runs per channel block, each in its own plane: more concurrent streams than the hardware
 * prefetchers follow (1x1 convs over 24+ channels spent a third of their time waiting on
 * these loads). Inputs 4 strips ahead, outputs (write intent) 8; both measured flat within
 * a factor of 2 either way. */
#define PREFETCH_IN (4 * NR)
#define PREFETCH_OUT (8 * NR)

/* Output index of each grid position g .. g + count - 1 of a strip (-1 for the grid's
 * discarded columns, those >= wo); returns how many are outputs and sets *contiguous when
 * they are NR consecutive ones. */
static long strip_targets(long g, long count, long wg, long wo, long *dst, long *contiguous) {
    long row = g / wg, col = g - row * wg, valid = 0;
    *contiguous = count == NR;
    for (long j = 0; j < count; j++) {
        dst[j] = col < wo ? row * wo + col : -1;
        valid += dst[j] >= 0;
        if (dst[j] < 0 || dst[j] != dst[0] + j) *contiguous = 0;
        if (++col == wg) { col = 0; row++; }
    }
    return valid;
}

/* sum over the T terms of w[t * MR] * pk[t * NR]: one position of a strip computed alone */
static __attribute__((noinline)) float strip_sum(const float *w, const float *pk, long T) {
    float s = 0.0f;
    for (long t = 0; t < T; t++) s += w[t * MR] * pk[t * NR];
    return s;
}

/* One strip of one output channel: bias, residual (zc: that channel's plane) and activation
 * applied to the two accumulator vectors, stored at the strip's targets in o. */
static inline void store_strip(void *o, const void *zc, const long *dst, long count,
                               long contiguous, v8 y0, v8 y1, float b, long act, float p0,
                               float p1, long residual, long hz, long ho) {
    v8 z0 = {0}, z1 = {0};
    if (residual && contiguous) {
        z0 = ld8(zc, dst[0], hz);
        z1 = ld8(zc, dst[0] + 8, hz);
    } else if (residual) {
        float zt[NR];
        for (long j = 0; j < NR; j++)
            zt[j] = j < count && dst[j] >= 0 ? ld1(zc, dst[j], hz) : 0.0f;
        z0 = load8(zt);
        z1 = load8(zt + 8);
    }
    y0 = finish(y0, splat(b), z0, act, p0, p1, residual);
    y1 = finish(y1, splat(b), z1, act, p0, p1, residual);
    if (contiguous) {
        st8(o, dst[0], y0, ho);
        st8(o, dst[0] + 8, y1, ho);
        return;
    }
    float t[NR];
    store8(t, y0);
    store8(t + 8, y1);
    for (long j = 0; j < count; j++)
        if (dst[j] >= 0) st1(o, dst[j], t[j], ho);
}

/* A full register tile (MR channels x NR consecutive outputs at o, channel stride ocs):
 * bias, residual and activation on all 2 MR vectors together (activate_n), then stored. */
static inline void store_tile(void *o, long ocs, const void *zc, long zcs, v8 acc[MR][2],
                              const float *bias, long act, float p0, float p1, long residual,
                              long hz, long ho) {
    v8 y[2 * MR], z[2 * MR] = {{0}};
    for (long i = 0; i < MR; i++) {
        v8 b = splat(bias ? bias[i] : 0.0f);
        y[2 * i] = acc[i][0] + b;
        y[2 * i + 1] = acc[i][1] + b;
        if (residual) {
            z[2 * i] = ld8(zc, i * zcs, hz);
            z[2 * i + 1] = ld8(zc, i * zcs + 8, hz);
        }
    }
    if (residual == 1)
        for (long i = 0; i < 2 * MR; i++) y[i] += z[i];
    activate_n(y, 2 * MR, act, p0, p1);
    if (residual == 2)
        for (long i = 0; i < 2 * MR; i++) y[i] += z[i];
    for (long i = 0; i < MR; i++) {
        __builtin_prefetch(at(o, i * ocs + PREFETCH_OUT, ho), 1, 3);
        st8(o, i * ocs, y[2 * i], ho);
        st8(o, i * ocs + 8, y[2 * i + 1], ho);
    }
}

/* out[oc * ocs + dst(g)] for g in [g0, g1) of one image, output channels of MR-blocks
 * [ob0, ob1). Vector reads are allowed for strips with g + NR <= gsafe; later strips are
 * computed one position at a time (no read past the input). out and z: float16 where
 * half says (built twice below: the float32 one keeps its plain stores). */
static inline __attribute__((always_inline)) void
direct_blocks(const void *base, const long *toff, long T, const float *wpack,
              const float *bias, long ob0, long ob1, long cout, long g0, long g1, long gsafe,
              long wg, long wo, void *out, long ocs, long act, float p0, float p1,
              long residual, const void *z, long zcs, float *pk, long half) {
    long hz = half & HALF_Z, ho = half & HALF_OUT, hx = half & HALF_X;
    long dst[NR], contiguous;
    float tile[NR];
    for (long g = g0; g < g1; g += NR) {
        long count = g1 - g < NR ? g1 - g : NR;
        if (!strip_targets(g, count, wg, wo, dst, &contiguous)) continue;
        if (g + NR <= gsafe) {
            /* the strip's T runs packed contiguously: sequential, aligned loads for every
             * channel block instead of T scattered (often line-crossing) ones */
            for (long t = 0; t < T; t++) {
                if (hx) { /* a float16 input read in place: widened as it is packed */
                    store8(pk + t * NR, ld8(base, toff[t] + g, 1));
                    store8(pk + t * NR + 8, ld8(base, toff[t] + g + 8, 1));
                } else {
                    memcpy(pk + t * NR, (const float *)base + toff[t] + g, NR * 4);
                }
                __builtin_prefetch(at(base, toff[t] + g + PREFETCH_IN, hx), 0, 3);
            }
            for (long ob = ob0; ob < ob1; ob++) {
                v8 acc[MR][2];
                tile_6x16(wpack + ob * T * MR, pk, T, acc);
                if (contiguous && ob * MR + MR <= cout) { /* the whole tile at once */
                    store_tile(at(out, ob * MR * ocs + dst[0], ho), ocs,
                               z ? at(z, ob * MR * zcs + dst[0], hz) : 0, zcs, acc,
                               bias ? bias + ob * MR : 0, act, p0, p1, residual, hz, ho);
                    continue;
                }
                for (long i = 0; i < MR && ob * MR + i < cout; i++) {
                    long oc = ob * MR + i;
                    store_strip(at(out, oc * ocs, ho), z ? at(z, oc * zcs, hz) : 0, dst,
                                count, contiguous, acc[i][0], acc[i][1],
                                bias ? bias[oc] : 0.0f, act, p0, p1, residual, hz, ho);
                }
            }
        } else {
            /* the strip's valid values packed (a float16 input widened) and summed by
             * strip_sum, one function for both storages: GCC vectorizes such a sum as
             * in-order vector products (no FMA) or not at all depending on how its loads
             * look, which changed the bits between the float32 and float16 inputs */
            for (long t = 0; t < T; t++)
                for (long j = 0; j < NR; j++)
                    pk[t * NR + j] =
                        j < count && dst[j] >= 0 ? ld1(base, toff[t] + g + j, hx) : 0.0f;
            for (long ob = ob0; ob < ob1; ob++) {
                for (long i = 0; i < MR; i++) {
                    long oc = ob * MR + i;
                    if (oc >= cout) break;
                    const float *w = wpack + ob * T * MR + i;
                    float b = bias ? bias[oc] : 0.0f;
                    for (long j = 0; j < NR; j++) {
                        float s = 0.0f;
                        if (j < count && dst[j] >= 0) s = strip_sum(w, pk + j, T);
                        tile[j] = s;
                    }
                    store_strip(at(out, oc * ocs, ho), z ? at(z, oc * zcs, hz) : 0, dst,
                                count, contiguous, load8(tile), load8(tile + 8), b, act, p0,
                                p1, residual, hz, ho);
                }
            }
        }
    }
}

/* Output-channel blocks are taken in groups whose packed weights fit in L1/L2 (about
 * WEIGHT_BLOCK bytes), each group sweeping every grid strip: layers with many weights and
 * few positions (1x1 convs late in a network) would otherwise stream all their weights
 * from memory once per strip. */
#define WEIGHT_BLOCK 65536

/* direct_blocks for float32 storage, and for float16 out / z: each its own function (the
 * float32 one compiled as the loop was before float16 storage) */
static __attribute__((noinline)) void
blocks_f32(const void *base, const long *toff, long T, const float *wpack, const float *bias,
           long ob0, long ob1, long cout, long g0, long g1, long gsafe, long wg, long wo,
           void *out, long ocs, long act, float p0, float p1, long residual, const void *z,
           long zcs, float *pk) {
    direct_blocks(base, toff, T, wpack, bias, ob0, ob1, cout, g0, g1, gsafe, wg, wo, out, ocs,
                  act, p0, p1, residual, z, zcs, pk, 0);
}

static __attribute__((noinline)) void
blocks_half(const void *base, const long *toff, long T, const float *wpack, const float *bias,
            long ob0, long ob1, long cout, long g0, long g1, long gsafe, long wg, long wo,
            void *out, long ocs, long act, float p0, float p1, long residual, const void *z,
            long zcs, float *pk, long half) {
    direct_blocks(base, toff, T, wpack, bias, ob0, ob1, cout, g0, g1, gsafe, wg, wo, out, ocs,
                  act, p0, p1, residual, z, zcs, pk, half);
}

static void conv_direct(const void *base, const long *toff, long T, const float *wpack,
                        const float *bias, long ob0, long ob1, long cout, long g0, long g1,
                        long gsafe, long wg, long wo, void *out, long ocs, long act, float p0,
                        float p1, long residual, const void *z, long zcs, float *pk,
                        long half) {
    long group = WEIGHT_BLOCK / (T * MR * (long)sizeof(float));
    if (group < 1) group = 1;
    half &= HALF_X | HALF_OUT | (residual ? HALF_Z : 0);
    for (long ob = ob0; ob < ob1; ob += group) {
        long ob2 = ob + group < ob1 ? ob + group : ob1;
        if (half)
            blocks_half(base, toff, T, wpack, bias, ob, ob2, cout, g0, g1, gsafe, wg, wo, out,
                        ocs, act, p0, p1, residual, z, zcs, pk, half);
        else
            blocks_f32(base, toff, T, wpack, bias, ob, ob2, cout, g0, g1, gsafe, wg, wo, out,
                       ocs, act, p0, p1, residual, z, zcs, pk);
    }
}

/* The stride phases of one zero-padded channel plane, phase rows [q0, q0 + nq) (all hq of
 * them for a whole image, a band's for conv_banded_f32): phase (py, px) lands at
 * b0 + (py * sx + px) * pstride, nq rows of wq. Rows outside the input are zeroed (a band
 * buffer is reused band after band); columns outside it are never written, so zero borders
 * written once stay zero. Row by row, every column phase of a row while it is in L1.
 * hx: x is float16, widened as it is read (inlined twice: the float32 build keeps its plain
 * copies). */
static void split_band(const float *xc, long xrs, long h, long w, long pt, long pl, long sy,
                       long sx, long wq, long q0, long nq, float *b0, long pstride) {
    for (long py = 0; py < sy; py++) {
        for (long q = 0; q < nq; q++) {
            long r = (q0 + q) * sy + py - pt;
            const float *row = xc + r * xrs;
            for (long px = 0; px < sx; px++) {
                long j0 = pl > px ? (pl - px + sx - 1) / sx : 0;
                long k0 = j0 * sx + px - pl;
                long m = (w - k0 + sx - 1) / sx;
                if (m > wq - j0) m = wq - j0;
                if (m <= 0) continue;
                float *d = b0 + (py * sx + px) * pstride + q * wq + j0;
                if (r < 0 || r >= h) {
                    memset(d, 0, (size_t)m * sizeof(float));
                } else if (sx == 1) {
                    memcpy(d, row + k0, (size_t)m * sizeof(float));
                } else if (sx == 2) {
                    long j = 0;
                    /* even lanes of 16 consecutive floats, while they stay inside the row */
                    for (; j + 8 <= m && k0 + 2 * j + 16 <= w; j += 8) {
                        v8 lo = load8(row + k0 + 2 * j), hi = load8(row + k0 + 2 * j + 8);
                        store8(d + j, __builtin_shufflevector(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14));
                    }
                    for (; j < m; j++) d[j] = row[k0 + 2 * j];
                } else {
                    for (long j = 0; j < m; j++) d[j] = row[k0 + j * sx];
                }
            }
        }
    }
}

/* split_band from a float16 x, widened as it is read (exact) */
static void split_band_half(const uint16_t *xc, long xrs, long h, long w, long pt, long pl,
                            long sy, long sx, long wq, long q0, long nq, float *b0,
                            long pstride) {
    for (long py = 0; py < sy; py++) {
        for (long q = 0; q < nq; q++) {
            long r = (q0 + q) * sy + py - pt;
            const uint16_t *row = xc + r * xrs;
            for (long px = 0; px < sx; px++) {
                long j0 = pl > px ? (pl - px + sx - 1) / sx : 0;
                long k0 = j0 * sx + px - pl;
                long m = (w - k0 + sx - 1) / sx;
                if (m > wq - j0) m = wq - j0;
                if (m <= 0) continue;
                float *d = b0 + (py * sx + px) * pstride + q * wq + j0;
                long j = 0;
                if (r < 0 || r >= h) {
                    memset(d, 0, (size_t)m * sizeof(float));
                } else if (sx == 1) {
                    for (; j + 8 <= m; j += 8) store8(d + j, h8_load(row + k0 + j));
                    for (; j < m; j++) d[j] = ei_float_from_half(row[k0 + j]);
                } else if (sx == 2) {
                    for (; j + 8 <= m && k0 + 2 * j + 16 <= w; j += 8) {
                        v8 lo = h8_load(row + k0 + 2 * j), hi = h8_load(row + k0 + 2 * j + 8);
                        store8(d + j, __builtin_shufflevector(lo, hi, 0, 2, 4, 6, 8, 10, 12, 14));
                    }
                    for (; j < m; j++) d[j] = ei_float_from_half(row[k0 + 2 * j]);
                } else {
                    for (; j < m; j++) d[j] = ei_float_from_half(row[k0 + j * sx]);
                }
            }
        }
    }
}

/* split_phases for channels [c0, c1) of one image into the planes of conv_direct_f32:
 * phase-major, [sy][sx][cin][hq][wq]. */
void split_phases_f32(const split_phases_args *a) {
    long plen = a->hq * a->wq;
    long hx = a->half & HALF_X;
    for (long c = a->c0; c < a->c1; c++)
        if (hx)
            split_band_half((const uint16_t *)a->x + c * a->xcs, a->xrs, a->h, a->w, a->pt,
                            a->pl, a->sy, a->sx, a->wq, 0, a->hq, a->planes + c * plen,
                            a->cin * plen);
        else
            split_band(a->x + c * a->xcs, a->xrs, a->h, a->w, a->pt, a->pl, a->sy, a->sx,
                       a->wq, 0, a->hq, a->planes + c * plen, a->cin * plen);
}

/* Output rows [r0, r1) of one image, band rows at a time: each band's input rows are split
 * into stride phases in `buf` (sized to stay in L2: phase planes of band + ext rows, ext the
 * kernel's reach below a band in phase rows), then convolved by conv_direct_f32 while hot.
 * The whole-image split writes and reads back an input-sized buffer from L3/DRAM instead.
 * toff: term offsets in the band layout [sy][sx][cin][band + ext][wq]. */
static void conv_banded(const void *x, long xcs, long xrs, long h, long w, long pt, long pl,
                        long sy, long sx, long wq, long cin, long ext, long band, long r0,
                        long r1, const long *toff, long T, const float *wpack,
                        const float *bias, long cout, long wo, void *out, long ocs, long act,
                        float p0, float p1, long residual, const void *z, long zcs, float *buf,
                        float *pk, long half) {
    long hx = half & HALF_X, ho = half & HALF_OUT, hz = half & HALF_Z;
    long blocks = (cout + MR - 1) / MR, plen = (band + ext) * wq;
    for (long ra = r0; ra < r1; ra += band) {
        long rb = ra + band < r1 ? ra + band : r1;
        for (long c = 0; c < cin; c++)
            if (hx)
                split_band_half((const uint16_t *)x + c * xcs, xrs, h, w, pt, pl, sy, sx, wq,
                                ra, rb - ra + ext, buf + c * plen, cin * plen);
            else
                split_band((const float *)x + c * xcs, xrs, h, w, pt, pl, sy, sx, wq, ra,
                           rb - ra + ext, buf + c * plen, cin * plen);
        conv_direct(buf, toff, T, wpack, bias, 0, blocks, cout, 0, (rb - ra) * wq, 1L << 62, wq,
                    wo, at(out, ra * wo, ho), ocs, act, p0, p1, residual,
                    z ? at(z, ra * wo, hz) : 0, zcs, pk, half & ~HALF_X); /* buf: float32 */
    }
}

/* The entry points (argument structs: args.h) and their pool tasks */
void conv_direct_f32(const conv_direct_args *a) {
    conv_direct(a->base, a->toff, a->T, a->wpack, a->bias, a->ob0, a->ob1, a->cout, a->g0,
                a->g1, a->gsafe, a->wg, a->wo, a->out, a->ocs, a->act, a->p0, a->p1,
                a->residual, a->z, a->zcs, a->pk, a->half);
}

void conv_banded_f32(const conv_banded_args *a) {
    conv_banded(a->x, a->xcs, a->xrs, a->h, a->w, a->pt, a->pl, a->sy, a->sx, a->wq, a->cin,
                a->ext, a->band, a->r0, a->r1, a->toff, a->T, a->wpack, a->bias, a->cout, a->wo,
                a->out, a->ocs, a->act, a->p0, a->p1, a->residual, a->z, a->zcs, a->buf, a->pk,
                a->half);
}

/* the float16 vector path this file was compiled with (half.h EI_H8_PATH), for tests */
long conv_direct_half_path(void) { return EI_H8_PATH; }

EI_TASK(conv_direct)
EI_TASK(split_phases)
EI_TASK(conv_banded)
