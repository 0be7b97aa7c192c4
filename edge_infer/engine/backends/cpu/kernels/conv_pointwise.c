/* 1x1 convolution (stride 1, no padding) as a GEMM over pixels: compiled on the target
 * device (-march/-mcpu=native).
 *
 *     out[b, oc, p] = bias[oc] + sum_k W[oc, k] * x[b, k, p]
 *
 * The pixels of all images form one dimension q = b * hw + p, so a batch of small planes
 * (7 x 7 at batch 8) fills register tiles as one large plane does, and each weight panel is
 * read once per block of pixels instead of once per image.
 *
 * Blocking (GotoBLAS order): a task's pixels go NC at a time; their inputs, KC channels at
 * a time, are packed into `pk` as strips of NR pixels ([strip][k][NR], zero past the last
 * pixel, gathered across image boundaries) while the block is in L2; then each panel of 8
 * output channels (weights packed at bind: [ceil(cout / 8)][cin][8], zero past cout) sweeps
 * the block's strips with its KC x 8 weights in L1. The register tile is TR output channels
 * x TV vectors of 8 pixels: 8 x 3 where there are 32 vector registers (AVX-512), 4 x 3 on
 * AVX2 (16), 4 x 2 on NEON (32 q registers, two per 8-float vector), 4 x 1 with SSE only (the
 * portable x86-64 fallback: two registers per vector); the last strip of a block takes as few
 * vectors as its pixels need, through the general tile (its epilogue in loops, out of line). With more than KC input channels, partial
 * sums go through the output and the epilogue runs on the last channel block.
 *
 * Planes of at least ROWS_MIN_HW pixels, input channels few enough for two strips a block
 * (rows_fit) and no more output than input channels (projections) skip the packing
 * (conv_rows): the tiles read the input where it lies (each channel's pixels contiguous), a
 * block of up to ROWS_BLOCK_FLOATS / cin pixels of one image at a time (in L1 while every
 * panel sweeps it), the first panel prefetching the strips PFD pixels ahead; only the
 * strip short of NR pixels at an image's (or the range's) end is packed (and, on a float32
 * input off 32-byte alignment, the pixels up to the boundary at an image's start); where
 * the channel stride starts the rows in few L1 sets (56 x 56 planes), a block's channels go
 * in blocks of fewer (rows_kblocks). Per
 * output value the same products in the same order as the packed path: the same bits. This
 * is what the layers of few output channels on large planes need (MobileNetV2's 32 -> 16 at
 * 112 x 112: there the packing copy cost as much as a panel's products), and large planes of
 * any width.
 *
 * The epilogue (bias, residual before or after, activation: simd.h) runs on the tile in
 * registers before it is stored.
 *
 * Float16 storage (FP16 engines; `half`'s bits PW_XH, PW_OH, PW_ZH: x, out, z are float16,
 * strides still in elements): inputs are widened while they are packed, the residual as it
 * is loaded, outputs narrowed (round to nearest even, half.h) as they are stored — the bits
 * of widening into float32, this kernel on float32, narrowing after. A float16 output holds
 * no partial sums: its channels are one block however many (the tactic sizes pk for it).
 */
#include "simd.h"
#include "half.h"

#define PW_XH 1 /* x is float16 */
#define PW_OH 2 /* out is float16 */
#define PW_ZH 4 /* z is float16 */

#define PANEL 8 /* output channels per packed weight panel (the tactic packs with this) */
#if defined(EI_PW_TR) && defined(EI_PW_TV) /* forced tile (tests, measurements) */
#define TR EI_PW_TR
#define TV EI_PW_TV
#elif defined(__AVX512F__)
#define TR 8
#define TV 3
#elif defined(__aarch64__)
#define TR 4
#define TV 2
#elif defined(__AVX__)
#define TR 4
#define TV 3
#else /* SSE only (16 registers of 4 floats, two per vector): a portable fallback */
#define TR 4
#define TV 1
#endif
#define NR (8 * TV)
/* the packed path's tiles over at most this many input channels go through tile()'s
 * register-only branch (measured: 8-13 % faster at 16-32 channels; at 320 channels on
 * 7 x 7 planes 8-11 % slower, the general branch kept there) */
#define FAST_KC 64
/* input channels per block: the panel's KC x 8 weights (16 KB) stay in L1 */
#define KC_MAX 512
/* conv_rows: planes from this many pixels (smaller ones waste a tail tile per image), up to
 * this many floats of input per block (L1: each row group of output channels sweeps the
 * block's strips from L1, not L2; 8192 against half of L2, 65536, one thread, CPU time, batch
 * 1: MobileNetV2's 96 -> 24 on 56 x 56, 144 -> 24 on 56 x 56, 192 -> 32 on 28 x 28 and
 * 384 -> 64 on 14 x 14 0.88-0.93x, 32 -> 16 on 112 x 112 0.95-1.0x), prefetch distance in
 * pixels */
#define ROWS_MIN_HW (8 * NR)
#define ROWS_BLOCK_FLOATS 8192
#define PFD (4 * NR)
/* conv_rows on a range of more than PF_MIN_BYTES of input (it comes from memory: MobileNetV2's
 * 112 x 112 and 56 x 56 projections at batch 8): blocks of PF_BLOCK_FLOATS (this one and the
 * next in L2), and while a block's row groups run, each prefetches its share of the next
 * block's channels into L2 (prefetcht2), so that the input streams in during all the products
 * instead of during the first row group's alone. 32 -> 16 on 112 x 112 at batch 8, one thread:
 * 0.78-0.80x; 96 -> 24 on 56 x 56: 0.87x; 28 x 28 layers (ranges under 2 MB): 1.0-1.04x, and
 * 1.08x on an input in L3 (batch 1), hence the bound. */
#define PF_MIN_BYTES (2L << 20)
#define PF_BLOCK_FLOATS 16384


/* element i of storage p (float16 when h), as float32: one, 8, the first n < 8 */
static inline __attribute__((always_inline)) float at1(const void *p, long i, long h) {
    return h ? ei_float_from_half(((const uint16_t *)p)[i]) : ((const float *)p)[i];
}
static inline __attribute__((always_inline)) v8 at8(const void *p, long i, long h) {
    return h ? h8_load((const uint16_t *)p + i) : load8((const float *)p + i);
}
static inline __attribute__((always_inline)) v8 at_n(const void *p, long i, long n, long h) {
    return h ? h8_load_n((const uint16_t *)p + i, n) : load8_n((const float *)p + i, n);
}

/* acc[i][j] += sum_k a[8 k + i] * b[bs k + 8 j .. + 8], i < TR, j < nv: a panel's weights
 * (stride PANEL per channel) times a strip, packed (bs = NR) or in place (bs: the input's
 * channel stride; bh: float16, at bq); pfd: prefetch the strip that many floats ahead */
static inline __attribute__((always_inline)) void micro(const float *a, const float *b,
                                                       const uint16_t *bq, long bs, long bh,
                                                       long kc, long nv, long pfd,
                                                       v8 acc[TR][TV]) {
    v8 c[TR][TV];
#pragma GCC unroll 8
    for (long i = 0; i < TR; i++)
#pragma GCC unroll 4
        for (long j = 0; j < TV; j++) c[i][j] = acc[i][j];
    for (long k = 0; k < kc; k++, a += PANEL, b += bs, bq += bs) {
        v8 v[TV];
        if (pfd && bh) {
            __builtin_prefetch(bq + pfd);
            __builtin_prefetch(bq + pfd + NR - 1);
        } else if (pfd) {
            __builtin_prefetch(b + pfd);
            __builtin_prefetch(b + pfd + NR - 1);
        }
#pragma GCC unroll 4
        for (long j = 0; j < TV; j++)
            if (j < nv) v[j] = in_reg(bh ? h8_load(bq + 8 * j) : load8(b + 8 * j));
#pragma GCC unroll 8
        for (long i = 0; i < TR; i++) {
            v8 s = splat(a[i]);
#pragma GCC unroll 4
            for (long j = 0; j < TV; j++)
                if (j < nv) c[i][j] += s * v[j];
        }
    }
#pragma GCC unroll 8
    for (long i = 0; i < TR; i++)
#pragma GCC unroll 4
        for (long j = 0; j < TV; j++) acc[i][j] = c[i][j];
}

/* one strip's lanes: where each pixel's image starts (b * istride) and its pixel index,
 * for the general (image-straddling) path */
typedef struct {
    long q;      /* global index of the first pixel */
    long np;     /* pixels in the strip (<= NR) */
    long b, p;   /* the first pixel's image and pixel */
    long inside; /* all np pixels in image b */
} strip;

static inline strip strip_at(long q, long q1, long hw) {
    strip s;
    s.q = q;
    s.np = q1 - q < NR ? q1 - q : NR;
    s.b = q / hw;
    s.p = q - s.b * hw;
    s.inside = s.p + s.np <= hw;
    return s;
}

/* the strip after s (NR pixels on): strip_at(s->q + NR, q1, hw) without its division */
static inline void strip_next(strip *s, long q1, long hw) {
    s->q += NR;
    s->p += NR;
    while (s->p >= hw) {
        s->p -= hw;
        s->b++;
    }
    s->np = q1 - s->q < NR ? q1 - s->q : NR;
    s->inside = s->p + s->np <= hw;
}

/* pixel j of strip s: offset in a tensor with image stride is (channel stride added by the
 * caller) */
static inline long lane_offset(const strip *s, long j, long hw, long is) {
    long p = s->p + j, b = s->b;
    while (p >= hw) {
        p -= hw;
        b++;
    }
    return b * is + p;
}

/* pack channels [k0, k0 + kc) of pixels [qa, qb) into pk[strip][k][NR] (xh: x is float16;
 * both pointer forms kept, the float32 specialisation compiles as the float32 kernel) */
static inline __attribute__((always_inline)) void pack_as(const conv_pointwise_args *a, long k0,
                                                         long kc, long qa, long qb, float *pk,
                                                         long xh) {
    long hw = a->hw;
    for (long q = qa, s = 0; q < qb; q += NR, s++) {
        strip st = strip_at(q, qb, hw);
        float *d = pk + s * kc * NR;
        const float *x = a->x + k0 * a->xcs;
        const uint16_t *xq = (const uint16_t *)(const void *)a->x + k0 * a->xcs;
        if (st.inside && st.np == NR) {
            long at = st.b * a->xis + st.p;
            const float *src = x + at;
            const uint16_t *srq = xq + at;
            for (long k = 0; k < kc; k++, src += a->xcs, srq += a->xcs, d += NR)
                for (long j = 0; j < TV; j++)
                    store8(d + 8 * j, xh ? h8_load(srq + 8 * j) : load8(src + 8 * j));
        } else if (st.inside) {
            long at = st.b * a->xis + st.p;
            const float *src = x + at;
            const uint16_t *srq = xq + at;
            for (long k = 0; k < kc; k++, src += a->xcs, srq += a->xcs, d += NR)
                for (long j = 0; j < TV; j++) {
                    long m = st.np - 8 * j;
                    v8 v = (v8){0};
                    if (m >= 8)
                        v = xh ? h8_load(srq + 8 * j) : load8(src + 8 * j);
                    else if (m > 0)
                        v = xh ? h8_load_n(srq + 8 * j, m) : load8_n(src + 8 * j, m);
                    store8(d + 8 * j, v);
                }
        } else {
            long off[NR];
            for (long j = 0; j < NR; j++)
                off[j] = j < st.np ? lane_offset(&st, j, hw, a->xis) : -1;
            for (long k = 0; k < kc; k++, x += a->xcs, xq += a->xcs, d += NR)
                for (long j = 0; j < NR; j++)
                    d[j] = off[j] >= 0 ? (xh ? ei_float_from_half(xq[off[j]]) : x[off[j]]) : 0.0f;
        }
    }
}

static void pack(const conv_pointwise_args *a, long k0, long kc, long qa, long qb, float *pk) {
    if (a->half & PW_XH)
        pack_as(a, k0, kc, qa, qb, pk, 1);
    else
        pack_as(a, k0, kc, qa, qb, pk, 0);
}

/* y[i][j] += z[i][j] and activate() on a tile's first nv vectors of each row: loops of at
 * most 8 (unrolled, in registers); the common activations inline, the others through
 * activate_n (the same operations: the same bits) */
static inline __attribute__((always_inline)) void add_rows(v8 y[TR][TV], v8 z[TR][TV],
                                                          long nv) {
#pragma GCC unroll 8
    for (long i = 0; i < TR; i++)
#pragma GCC unroll 4
        for (long j = 0; j < TV; j++)
            if (j < nv) y[i][j] += z[i][j];
}

static inline __attribute__((always_inline)) void activate_rows(v8 y[TR][TV], long nv,
                                                               long act, float p0, float p1) {
    v8 lo = splat(act == EI_ACT_CLIP ? p0 : 0.0f), hi = splat(p1);
    switch (act) {
    case EI_ACT_NONE: return;
    case EI_ACT_RELU:
    case EI_ACT_CLIP:
#pragma GCC unroll 8
        for (long i = 0; i < TR; i++)
#pragma GCC unroll 4
            for (long j = 0; j < TV; j++)
                if (j < nv)
                    y[i][j] = act == EI_ACT_RELU ? vmax(y[i][j], lo) : vmin(vmax(y[i][j], lo), hi);
        return;
    default:
        for (long i = 0; i < TR; i++) activate_n(y[i], nv, act, p0, p1);
    }
}

/* The common tile: TR rows of contiguous pixels, stored with the epilogue (last) or as
 * partial sums. [TR][TV] arrays under loops of at most 8, fully unrolled: with a tile
 * whose every index is a constant the compiler keeps it in registers. */
static inline __attribute__((always_inline)) void tile_store(const conv_pointwise_args *a,
                                                            const strip *st, long oc, long nv,
                                                            v8 acc[TR][TV], long last, long oh,
                                                            long pure) {
    long zh = pure ? 0 : a->half & PW_ZH;
    long ob = st->b * a->ois + oc * a->ocs + st->p;
    v8 y[TR][TV], z[TR][TV];
    long zo = st->b * a->zis + oc * a->zcs + st->p;
    const float *zb = a->residual && last ? a->z + zo : 0;
#pragma GCC unroll 8
    for (long i = 0; i < TR; i++) {
        v8 bi = splat(last && a->bias ? a->bias[oc + i] : 0.0f);
#pragma GCC unroll 4
        for (long j = 0; j < TV; j++) {
            y[i][j] = acc[i][j] + bi;
            z[i][j] = (v8){0};
            if (j >= nv) continue;
            long m = st->np - 8 * j, zi = zo + i * a->zcs + 8 * j;
            if (zb && m >= 8)
                z[i][j] = at8(a->z, zi, zh);
            else if (zb && m > 0) /* (a packed tail's vectors past its pixels: none) */
                z[i][j] = at_n(a->z, zi, m, zh);
        }
    }
    if (last) {
        if (a->residual == 1) add_rows(y, z, nv);
        activate_rows(y, nv, a->act, a->p0, a->p1);
        if (a->residual == 2) add_rows(y, z, nv);
    }
    float *o = a->out + ob;
    uint16_t *oq = (uint16_t *)(void *)a->out + ob;
#pragma GCC unroll 8
    for (long i = 0; i < TR; i++)
#pragma GCC unroll 4
        for (long j = 0; j < TV; j++) {
            long m = st->np - 8 * j;
            if (j >= nv || m <= 0)
                continue;
            else if (oh && m >= 8)
                h8_store(oq + i * a->ocs + 8 * j, y[i][j]);
            else if (oh)
                h8_store_n(oq + i * a->ocs + 8 * j, y[i][j], m);
            else if (m >= 8)
                store8(o + i * a->ocs + 8 * j, y[i][j]);
            else
                store8_n(o + i * a->ocs + 8 * j, y[i][j], m);
        }
}

/* tile_store for a float32 tile whose activation is none, ReLU or Clip (MobileNetV2's
 * layers): each vector through the epilogue and stored on its own, no [TR][TV] arrays (with
 * which GCC kept the tile on the stack around the stores). The same operations: the same
 * bits. */
static inline __attribute__((always_inline)) void tile_store_f32(const conv_pointwise_args *a,
                                                                const strip *st, long oc,
                                                                v8 acc[TR][TV], long last) {
    long res = last ? a->residual : 0, act = last ? a->act : EI_ACT_NONE;
    float *o = a->out + st->b * a->ois + oc * a->ocs + st->p;
    const float *z = res ? a->z + st->b * a->zis + oc * a->zcs + st->p : 0;
    v8 lo = splat(act == EI_ACT_CLIP ? a->p0 : 0.0f), hi = splat(a->p1);
#pragma GCC unroll 8
    for (long i = 0; i < TR; i++) {
        v8 bi = splat(last && a->bias ? a->bias[oc + i] : 0.0f);
#pragma GCC unroll 4
        for (long j = 0; j < TV; j++) {
            v8 y = acc[i][j] + bi, zv = (v8){0};
            if (res) zv = load8(z + i * a->zcs + 8 * j);
            if (res == 1) y += zv;
            if (act == EI_ACT_RELU)
                y = vmax(y, lo);
            else if (act == EI_ACT_CLIP)
                y = vmin(vmax(y, lo), hi);
            if (res == 2) y += zv;
            store8(o + i * a->ocs + 8 * j, y);
        }
    }
}

/* a tile_store_f32 activation */
static inline long plain_act(const conv_pointwise_args *a, long last) {
    return !last || a->act == EI_ACT_NONE || a->act == EI_ACT_RELU || a->act == EI_ACT_CLIP;
}

/* tile_store's work in loops, not unrolled: the general tile's store (out of line, its code
 * once per storage mix). The same operations on each vector as tile_store: the same bits. */
static inline __attribute__((always_inline)) void tile_store_loop(const conv_pointwise_args *a,
                                                                 const strip *st, long oc,
                                                                 long nv, v8 acc[TR][TV],
                                                                 long last, long oh, long pure) {
    long zh = pure ? 0 : a->half & PW_ZH, res = last ? a->residual : 0;
    long ob = st->b * a->ois + oc * a->ocs + st->p;
    long zo = st->b * a->zis + oc * a->zcs + st->p;
#pragma GCC unroll 1
    for (long i = 0; i < TR; i++) {
        v8 bi = splat(last && a->bias ? a->bias[oc + i] : 0.0f);
#pragma GCC unroll 1
        for (long j = 0; j < nv; j++) {
            long m = st->np - 8 * j, zi = zo + i * a->zcs + 8 * j, oi = ob + i * a->ocs + 8 * j;
            if (m <= 0) continue;
            v8 y = acc[i][j] + bi, z = (v8){0};
            if (res) z = m >= 8 ? at8(a->z, zi, zh) : at_n(a->z, zi, m, zh);
            if (res == 1) y += z;
            if (last) y = activate(y, a->act, a->p0, a->p1);
            if (res == 2) y += z;
            if (oh && m >= 8)
                h8_store((uint16_t *)(void *)a->out + oi, y);
            else if (oh)
                h8_store_n((uint16_t *)(void *)a->out + oi, y, m);
            else if (m >= 8)
                store8(a->out + oi, y);
            else
                store8_n(a->out + oi, y, m);
        }
    }
}

/* The tile's rows [oc, oc + nr) and strip st: loaded (partial sums, acc) or stored with the
 * epilogue (last: bias, residual, activation) or without (partial sums). oh: out is float16
 * (never loaded: no partial sums); pure: nothing is float16 (the float32 kernel as it was). */
static inline __attribute__((always_inline)) void tile_io(const conv_pointwise_args *a,
                                                         const strip *st, long oc, long nr,
                                                         long nv, v8 acc[TR][TV], long load,
                                                         long last, long oh, long pure) {
    long hw = a->hw, zh = pure ? 0 : a->half & PW_ZH;
    if (st->inside && nr == TR) { /* the common case: rows of contiguous pixels */
        long ob = st->b * a->ois + oc * a->ocs + st->p;
        if (load) {
            const float *o = a->out + ob;
            for (long i = 0; i < TR; i++)
                for (long j = 0; j < nv; j++) {
                    long m = st->np - 8 * j;
                    acc[i][j] = m >= 8  ? load8(o + i * a->ocs + 8 * j)
                                : m > 0 ? load8_n(o + i * a->ocs + 8 * j, m)
                                        : (v8){0};
                }
            return;
        }
        tile_store_loop(a, st, oc, nv, acc, last, oh, pure);
        return;
    }
    /* partial rows or a strip across images: through a buffer, a run of pixels of one image
     * at a time (float32) or lane by lane (float16) */
    long off[NR], zoff[NR], run[NR + 1], nrun = 0;
    for (long j = 0, p = st->p, b = st->b; j < st->np; b++, p = 0) { /* the runs' starts */
        long m = st->np - j < hw - p ? st->np - j : hw - p;
        for (long l = 0; l < m; l++) {
            off[j + l] = b * a->ois + p + l;
            zoff[j + l] = b * a->zis + p + l;
        }
        run[nrun++] = j;
        j += m;
    }
    run[nrun] = st->np;
    for (long i = 0; i < nr; i++) {
        long orow = (oc + i) * a->ocs;
        float t[NR] = {0};
        if (load) {
            for (long r = 0; r < nrun; r++)
                memcpy(t + run[r], a->out + orow + off[run[r]],
                       sizeof(float) * (size_t)(run[r + 1] - run[r]));
            for (long j = 0; j < nv; j++) acc[i][j] = load8(t + 8 * j);
            continue;
        }
        float zt[NR] = {0};
        if (last && a->residual && !zh)
            for (long r = 0; r < nrun; r++)
                memcpy(zt + run[r], (const float *)a->z + (oc + i) * a->zcs + zoff[run[r]],
                       sizeof(float) * (size_t)(run[r + 1] - run[r]));
        else if (last && a->residual)
            for (long j = 0; j < st->np; j++) zt[j] = at1(a->z, (oc + i) * a->zcs + zoff[j], zh);
        float bi = last && a->bias ? a->bias[oc + i] : 0.0f;
        for (long j = 0; j < nv; j++) {
            v8 y = acc[i][j];
            if (last)
                y = finish(y, splat(bi), load8(zt + 8 * j), a->act, a->p0, a->p1, a->residual);
            store8(t + 8 * j, y);
        }
        if (oh) { /* through vectors: the bits of the vector path's narrowing */
            uint16_t th[NR];
            for (long j = 0; j < nv; j++) h8_store(th + 8 * j, load8(t + 8 * j));
            for (long j = 0; j < st->np; j++) ((uint16_t *)a->out)[orow + off[j]] = th[j];
        } else
            for (long r = 0; r < nrun; r++)
                memcpy(a->out + orow + off[run[r]], t + run[r],
                       sizeof(float) * (size_t)(run[r + 1] - run[r]));
    }
}

/* the strip a tile reads: packed (stride NR) or in place (stride: channel stride; xh: float16
 * at q), prefetching pfd floats ahead */
typedef struct {
    const float *b;
    const uint16_t *q;
    long stride, xh, pfd;
} source;

static inline source packed(const float *b) { return (source){b, 0, NR, 0, 0}; }

/* the general tile's loads and stores (partial rows, strips across images, tail strips,
 * channel blocks after the first): one out-of-line instance per storage mix, nv at run time
 * (the kernel's compile time: inlined at every tile site, its unrolled epilogue made up most
 * of this file's code) */
static __attribute__((noinline)) void tile_io_at(const conv_pointwise_args *a, const strip *st,
                                                 long oc, long nr, long nv, v8 acc[TR][TV],
                                                 long load, long last, long oh, long pure) {
    if (pure)
        tile_io(a, st, oc, nr, nv, acc, load, last, 0, 1);
    else if (oh)
        tile_io(a, st, oc, nr, nv, acc, load, last, 1, 0);
    else
        tile_io(a, st, oc, nr, nv, acc, load, last, 0, 0);
}

/* one tile: rows [oc, oc + nr) of panel wp (row offset r within it), strip st read from src
 * (nv vectors). The inline stores (tile_store, and the partial sums' loads) take a strip of
 * NR pixels only, np a constant: whole stores without per-vector length tests, with which
 * GCC kept the tile on the stack around them (conv_rows' 32 -> 16 on 112 x 112 measured
 * 0.82x); a shorter strip's stores go through tile_io_at, out of line (the same operations:
 * the same bits; the kernel's compile time: one inline instance a storage mix) */
static inline __attribute__((always_inline)) void tile(const conv_pointwise_args *a,
                                                      const float *wp, source src,
                                                      const strip *st, long oc, long nr,
                                                      long kc, long first, long last,
                                                      long nv, long oh, long pure, long fast) {
    strip s = *st;
    s.np = NR;
    long whole = st->inside && st->np == NR && nr == TR && nv == TV;
    if (fast && first && st->inside && nr == TR && nv == TV) { /* the common tile */
        v8 c[TR][TV];
#pragma GCC unroll 8
        for (long i = 0; i < TR; i++)
#pragma GCC unroll 4
            for (long j = 0; j < TV; j++) c[i][j] = (v8){0};
        micro(wp, src.b, src.q, src.stride, src.xh, kc, TV, src.pfd, c);
        if (whole && pure && plain_act(a, last)) {
            tile_store_f32(a, &s, oc, c, last);
        } else if (whole) {
            tile_store(a, &s, oc, TV, c, last, oh, pure);
        } else { /* a copy out of line: c itself kept in registers (not addressed) */
            v8 t[TR][TV];
#pragma GCC unroll 8
            for (long i = 0; i < TR; i++)
#pragma GCC unroll 4
                for (long j = 0; j < TV; j++) t[i][j] = c[i][j];
            tile_io_at(a, st, oc, TR, TV, t, 0, last, oh, pure);
        }
        return;
    }
    if (pure && whole) { /* the float32 kernel's long channel blocks: stored inline */
        v8 c[TR][TV];
#pragma GCC unroll 8
        for (long i = 0; i < TR; i++)
#pragma GCC unroll 4
            for (long j = 0; j < TV; j++) c[i][j] = (v8){0};
        if (!first) tile_io(a, &s, oc, TR, TV, c, 1, 0, 0, 1);
        micro(wp, src.b, src.q, src.stride, src.xh, kc, TV, src.pfd, c);
        if (plain_act(a, last))
            tile_store_f32(a, &s, oc, c, last);
        else
            tile_store(a, &s, oc, TV, c, last, 0, 1);
        return;
    }
    v8 acc[TR][TV];
#pragma GCC unroll 8
    for (long i = 0; i < TR; i++)
#pragma GCC unroll 4
        for (long j = 0; j < TV; j++) acc[i][j] = (v8){0};
    if (!first) tile_io_at(a, st, oc, nr, nv, acc, 1, 0, oh, pure);
    micro(wp, src.b, src.q, src.stride, src.xh, kc, nv, src.pfd, acc);
    tile_io_at(a, st, oc, nr, nv, acc, 0, last, oh, pure);
}

/* A block's last strip of at most TAIL_PX pixels (7 x 7 planes at batch 1: 49 = 2 x 24 + 1;
 * 14 x 14's 196 = 8 x 24 + 4), packed ([k][NR]), through panels [oa, oz) with vectors along
 * the output channels: per input channel M broadcasts and G panels' weight rows ([k][8], as
 * packed), G x M independent sums (G = tail_g(M): 8 to 9 chains of multiply-adds in flight).
 * The register tile there (TR rows x one vector: TR dependent chains) took 2/3 of a full
 * strip's time for 1/24 of its pixels (4 pixels: a whole strip's work in conv_rows). The
 * caller runs it on a group of panels right after their strips (their weights still in
 * L2, not streamed from L3 again after all panels). Still about 5x its multiply-adds' time
 * on 960 -> 320 at 7 x 7 (30 us of 345: L2 bandwidth, one multiply-add a weight vector). Per
 * output the tile's products in its order: the same bits. Every storage: it reads the packed
 * (float32) inputs, float16 z through h8_load and stores float16 through h8_store, as the
 * tiles, so an FP16 engine's layer and its float32 conversion route take the same path and
 * give the same bits (test_half_io). */
#define TAIL_PX 4
#define TAIL_GMAX 8
static inline long tail_g(long m) { return m == 1 ? 8 : m == 2 ? 4 : m == 3 ? 3 : 2; }
static inline __attribute__((always_inline)) void tail_group(const conv_pointwise_args *a,
                                                            const float *bs, const long *off,
                                                            const long *zoff, long k0, long kc,
                                                            long first, long last, long oh,
                                                            long ob, long ng, long M, long G) {
    long K = a->cin, cout = a->cout, zh = a->half & PW_ZH;
    const uint16_t *zq = (const uint16_t *)(const void *)a->z;
    uint16_t *oq = (uint16_t *)(void *)a->out;
    const float *w = a->wpack + (ob * K + k0) * PANEL;
    v8 acc[TAIL_GMAX][TAIL_PX];
#pragma GCC unroll 8
    for (long g = 0; g < G; g++)
#pragma GCC unroll 4
        for (long j = 0; j < M; j++) {
            acc[g][j] = (v8){0};
            if (first || g >= ng) continue;
            float t[PANEL] = {0};
            for (long l = 0, oc = (ob + g) * PANEL; l < PANEL && oc + l < cout; l++)
                t[l] = a->out[(oc + l) * a->ocs + off[j]];
            acc[g][j] = load8(t);
        }
    /* a group short of G panels runs as a whole one, its missing panels' sums on the first
     * panel's weights and dropped (one loop: the compiler contracts both alike) */
    const float *wg[TAIL_GMAX];
#pragma GCC unroll 8
    for (long g = 0; g < G; g++) wg[g] = w + (g < ng ? g : 0) * K * PANEL;
    for (long k = 0; k < kc; k++) {
        v8 x[TAIL_PX];
#pragma GCC unroll 4
        for (long j = 0; j < M; j++) x[j] = splat(bs[k * NR + j]);
#pragma GCC unroll 8
        for (long g = 0; g < G; g++) {
            v8 wv = load8(wg[g] + k * PANEL);
#pragma GCC unroll 4
            for (long j = 0; j < M; j++) acc[g][j] += wv * x[j];
        }
    }
#pragma GCC unroll 1
    for (long g = 0; g < ng; g++)
#pragma GCC unroll 1
        for (long j = 0; j < M; j++) {
            long oc = (ob + g) * PANEL, n = cout - oc < PANEL ? cout - oc : PANEL;
            float t[PANEL], zt[PANEL] = {0};
            uint16_t th[PANEL] = {0};
            v8 y = acc[g][j];
            if (last) {
                float bt[PANEL] = {0};
                for (long l = 0; l < n; l++) {
                    long zi = (oc + l) * a->zcs + zoff[j];
                    bt[l] = a->bias ? a->bias[oc + l] : 0.0f;
                    if (a->residual && zh)
                        th[l] = zq[zi];
                    else if (a->residual)
                        zt[l] = a->z[zi];
                }
                v8 z = zh ? h8_load(th) : load8(zt);
                y = finish(y, load8(bt), z, a->act, a->p0, a->p1, a->residual);
            }
            if (oh) { /* the vector path's narrowing */
                h8_store(th, y);
                for (long l = 0; l < n; l++) oq[(oc + l) * a->ocs + off[j]] = th[l];
                continue;
            }
            store8(t, y);
            for (long l = 0; l < n; l++) a->out[(oc + l) * a->ocs + off[j]] = t[l];
        }
}

/* the tail strip st (1 to TAIL_PX pixels) through panels [oa, oz), tail_g(st->np) at a time */
static __attribute__((noinline)) void tail_strip(const conv_pointwise_args *a, const float *bs,
                                                 const strip *st, long k0, long kc, long first,
                                                 long last, long oh, long oa, long oz) {
    long off[TAIL_PX], zoff[TAIL_PX], m = st->np, G = tail_g(m);
    for (long j = 0; j < m; j++) {
        off[j] = lane_offset(st, j, a->hw, a->ois);
        zoff[j] = a->residual ? lane_offset(st, j, a->hw, a->zis) : 0;
    }
    for (long ob = oa; ob < oz; ob += G) {
        long ng = oz - ob < G ? oz - ob : G;
        switch (m) {
        case 1: tail_group(a, bs, off, zoff, k0, kc, first, last, oh, ob, ng, 1, 8); break;
        case 2: tail_group(a, bs, off, zoff, k0, kc, first, last, oh, ob, ng, 2, 4); break;
        case 3: tail_group(a, bs, off, zoff, k0, kc, first, last, oh, ob, ng, 3, 3); break;
        default: tail_group(a, bs, off, zoff, k0, kc, first, last, oh, ob, ng, 4, 2); break;
        }
    }
}

/* oh: out is float16 (its channels one block); pure: nothing is float16 */
static inline __attribute__((always_inline)) void conv(const conv_pointwise_args *a, long oh,
                                                      long pure) {
    long K = a->cin, hw = a->hw;
    long kblocks = oh ? 1 : (K + KC_MAX - 1) / KC_MAX;
    long KC = (K + kblocks - 1) / kblocks;
    long NC = a->pkn / (KC * NR) * NR;
    if (NC < NR) NC = NR; /* the tactic sizes pk for at least one strip */
    for (long qa = a->q0; qa < a->q1; qa += NC) {
        long qb = qa + NC < a->q1 ? qa + NC : a->q1;
        for (long k0 = 0; k0 < K; k0 += KC) {
            long kc = K - k0 < KC ? K - k0 : KC;
            long first = k0 == 0, last = k0 + kc == K, fast = kc <= FAST_KC;
            if (pure)
                pack_as(a, k0, kc, qa, qb, a->pk, 0);
            else
                pack(a, k0, kc, qa, qb, a->pk);
            /* a last strip of few pixels: tail_strip, all panels at once */
            long rem = (qb - qa) % NR, ntail = rem && rem <= TAIL_PX ? rem : 0;
            long qe = qb - ntail;
            /* panels in groups of tail_g: each group's tail right after its strips */
            long tg = ntail ? tail_g(ntail) : a->ob1 - a->ob0;
            strip tl = strip_at(qe, qb, hw);
            const float *tbs = a->pk + (qe - qa) / NR * kc * NR;
            for (long ob = a->ob0; ob < a->ob1; ob++) {
                for (long r = 0; r < PANEL; r += TR) {
                    long oc = ob * PANEL + r;
                    if (oc >= a->cout) break;
                    long nr = a->cout - oc < TR ? a->cout - oc : TR;
                    const float *wp = a->wpack + (ob * K + k0) * PANEL + r;
                    const float *bs = a->pk;
                    strip st = strip_at(qa, qe, hw);
                    for (long q = qa; q < qe; q += NR, bs += kc * NR, strip_next(&st, qe, hw)) {
                        long nv = (st.np + 7) / 8;
                        if (nv == TV)
                            tile(a, wp, packed(bs), &st, oc, nr, kc, first, last, TV, oh, pure, fast);
#if TV > 2
                        else if (nv == 2)
                            tile(a, wp, packed(bs), &st, oc, nr, kc, first, last, 2, oh, pure, fast);
#endif
                        else
                            tile(a, wp, packed(bs), &st, oc, nr, kc, first, last, 1, oh, pure, fast);
                    }
                }
                long gz = (ob - a->ob0 + 1) % tg == 0 || ob + 1 == a->ob1;
                if (ntail && gz) {
                    long oa = ob + 1 - ((ob - a->ob0) % tg + 1);
                    tail_strip(a, tbs, &tl, k0, kc, first, last, oh, oa, ob + 1);
                }
            }
        }
    }
}

/* channels [c0, c1) (cs bytes apart) of a strip of n bytes at p into L2 (a loop: the kernel's
 * compile time) */
static inline __attribute__((always_inline)) void prefetch_strip(const char *p, long cs, long c0,
                                                                 long c1, long n) {
#pragma GCC unroll 1
    for (long c = c0; c < c1; c++) {
        __builtin_prefetch(p + c * cs, 0, 1);
        __builtin_prefetch(p + c * cs + n - 1, 0, 1);
    }
}

/* the tiles of rows [oc, oc + nr) (panel ob) over a block's strips: nfull in place from src,
 * then a tail of `tail` pixels packed in pk (zero past them: a whole tile, its stores cut
 * to the pixels); one tile instance (the kernel's compile time) */
static inline __attribute__((always_inline)) void rows_panel(const conv_pointwise_args *a,
                                                            source src, strip st, long ob,
                                                            long oc, long nr, long nfull,
                                                            long tail, long oh, long pure,
                                                            const char *pre, long pcs, long pc0,
                                                            long pc1, long es, long k0, long kc,
                                                            long first, long last) {
    long K = a->cin;
    const float *wp = a->wpack + (ob * K + k0) * PANEL + (oc - ob * PANEL);
    for (long j = 0; j < nfull + (tail > 0); j++, st.q += NR, st.p += NR) {
        prefetch_strip(pre + j * NR * es, pcs, pc0, pc1, NR * es);
        source s = src;
        if (j == nfull) {
            s = packed(a->pk + k0 * NR);
            st.np = tail;
        }
        tile(a, wp, s, &st, oc, nr, kc, first, last, TV, oh, pure, 1);
        src.b += NR;
        src.q += NR;
    }
}

/* conv_rows' channel blocks (float32, one image's blocks of pixels): a channel stride whose
 * rows start in few of L1's 64 sets (56 x 56 planes: 12544 bytes, every 16th channel in the
 * same set) puts more of a block's lines in a set than it has ways (144 channels: 9 in 8), so
 * that the block does not stay in L1 while its row groups sweep it; blocks of at least
 * RB_MIN_KC channels that bring the lines a set takes down to RB_WAYS, where there are such
 * (their sums through the output, as the packed path's channel blocks: the same bits). */
#define RB_WAYS 6
#define RB_MIN_KC 48
static long rows_kblocks(const conv_pointwise_args *a) {
    long K = a->cin, line = a->xcs * 4 / 64 % 64;
    if (a->xcs * 4 % 64) return 1; /* rows not a whole number of lines apart: spread */
    long sets = line ? 64 / (line & -line) : 1, per = (K + sets - 1) / sets;
    long nkb = (per + RB_WAYS - 1) / RB_WAYS;
    return per <= 8 || nkb > K / RB_MIN_KC ? 1 : nkb;
}

/* conv_rows' block of pixels st (nfull strips in place at src, then tail pixels packed in pk,
 * through tail_strip where gemv) in nkb channel blocks, float32: out of line, so that the
 * common case compiles as it did */
static __attribute__((noinline)) void rows_split(const conv_pointwise_args *a, source src,
                                                 strip st, long nfull, long tail, long gemv,
                                                 long nkb) {
    long K = a->cin;
    for (long kb = 0; kb < nkb; kb++) {
        long k0 = K * kb / nkb, kc = K * (kb + 1) / nkb - k0;
        for (long ob = a->ob0; ob < a->ob1; ob++)
            for (long r = 0; r < PANEL; r += TR) {
                long oc = ob * PANEL + r;
                if (oc >= a->cout) break;
                long nr = a->cout - oc < TR ? a->cout - oc : TR;
                source s = src; /* each block's first row group brings its inputs in */
                s.b += k0 * a->xcs;
                s.pfd = ob == a->ob0 && r == 0 ? PFD : 0;
                rows_panel(a, s, st, ob, oc, nr, nfull, gemv ? 0 : tail, 0, 1,
                           (const char *)a->x, 0, 0, 0, 4, k0, kc, kb == 0, kb == nkb - 1);
            }
        if (gemv) {
            strip tl = {st.q + nfull * NR, tail, st.b, st.p + nfull * NR, 1};
            tail_strip(a, a->pk + k0 * NR, &tl, k0, kc, kb == 0, kb == nkb - 1, 0, a->ob0,
                       a->ob1);
        }
    }
}

/* the input read in place (all its channels one block; xh: float16): blocks of pixels of
 * one image, every panel sweeping a block's strips while its inputs are in L2 (on large
 * ranges the next block prefetched meanwhile: PF_MIN_BYTES) */
static inline __attribute__((always_inline)) void conv_rows(const conv_pointwise_args *a,
                                                           long xh, long oh, long pure) {
    long K = a->cin, hw = a->hw, es = xh ? 2 : 4;
    long big = (a->q1 - a->q0) * K * es > PF_MIN_BYTES;
    long PB = (big ? PF_BLOCK_FLOATS : ROWS_BLOCK_FLOATS) / K / NR * NR;
    if (PB < NR) PB = NR;
    long nkb = big || !pure ? 1 : rows_kblocks(a);
    long groups = 0; /* row groups of TR output channels */
    for (long ob = a->ob0; ob < a->ob1; ob++)
        for (long r = 0; r < PANEL && ob * PANEL + r < a->cout; r += TR) groups++;
    for (long q = a->q0; q < a->q1;) {
        long b = q / hw, p = q - b * hw;
        long np = hw - p < a->q1 - q ? hw - p : a->q1 - q;
        if (np > PB) np = PB;
        long at = b * a->xis + p;
        /* a float32 input off 32-byte alignment, every channel's row as far off (channel
         * stride a multiple of 8): its pixels up to the next 32-byte boundary are a block of
         * their own (one packed strip, the tile's products: the same bits), so that the
         * strips after it load vectors within cache lines (the engine's arenas are 16 bytes
         * off in some processes: MobileNetV2's 112 x 112 to 28 x 28 projections took
         * 1.12-1.16x as long) */
        long head = xh || a->xcs % 8 ? 0 : (8 - (long)((uintptr_t)(a->x + at) / 4 % 8)) % 8;
        if (head && np > head) np = head;
        long nfull = np / NR, tail = np - nfull * NR;
        source src = {a->x + at, (const uint16_t *)(const void *)a->x + at, a->xcs, xh, PFD};
        if (tail) pack_as(a, 0, K, q + nfull * NR, q + np, a->pk, xh);
        long gemv = tail && tail <= TAIL_PX && !head; /* the short strip: tail_strip */
        strip st = {q, NR, b, p, 1};
        /* the next block's start (its tile j prefetches as many pixels on from there; past a
         * shorter next block, lines of no use: a prefetch does not fault) */
        long nq = q + np, next = big && nq < a->q1;
        const char *pre = (const char *)a->x;
        if (next) pre += ((nq / hw) * a->xis + nq % hw) * es;
        long g = 0;
        if (nkb == 1) {
            for (long ob = a->ob0; ob < a->ob1; ob++)
                for (long r = 0; r < PANEL; r += TR, g++) {
                    long oc = ob * PANEL + r;
                    if (oc >= a->cout) break;
                    long nr = a->cout - oc < TR ? a->cout - oc : TR;
                    source s = src; /* the first panel's tiles bring the inputs in */
                    s.pfd = g == 0 ? PFD : 0;
                    long c0 = next ? K * g / groups : 0, c1 = next ? K * (g + 1) / groups : 0;
                    rows_panel(a, s, st, ob, oc, nr, nfull, gemv ? 0 : tail, oh, pure, pre,
                               a->xcs * es, c0, c1, es, 0, K, 1, 1);
                }
        } else if (pure) {
            rows_split(a, src, st, nfull, tail, gemv, nkb);
        }
        if (gemv && nkb == 1) {
            strip tl = {q + nfull * NR, tail, b, p + nfull * NR, 1};
            tail_strip(a, a->pk, &tl, 0, K, 1, 1, oh, a->ob0, a->ob1);
        }
        q += np;
    }
}

/* the packed path for small planes (strips across images), more than KC_MAX channels,
 * more output than input channels (expansions: many panels over few channels, measured
 * 1.04-1.3x slower in place) and channels so many that a block of ROWS_BLOCK_FLOATS holds
 * fewer than two strips (over 170 channels at NR = 24: blocks of one strip, the block's
 * inputs past L1; packed, one thread, CPU time: 384 -> 64 at 14 x 14 0.90-0.92, 384 -> 128
 * and 256 -> 128 at 20 x 20 0.89-0.92, 256 -> 64 at 56 x 56 0.88-0.96, 192 -> 64 at 40 x 40
 * 0.96-1.00, batch 1 and 8) */
static inline long rows_fit(const conv_pointwise_args *a) {
    return a->hw >= ROWS_MIN_HW && a->cin <= KC_MAX && a->cout <= a->cin
           && ROWS_BLOCK_FLOATS / a->cin >= 2 * NR;
}

/* float16 storage (a float16 or a float32 output) out of line: the float32 kernel is
 * compiled as it would be alone */
static __attribute__((noinline)) void conv_half(const conv_pointwise_args *a) {
    if (rows_fit(a) && (a->half & PW_XH) && (a->half & PW_OH))
        conv_rows(a, 1, 1, 0); /* an FP16 engine's layers; other mixes packed (same bits) */
    else if (a->half & PW_OH)
        conv(a, 1, 0);
    else
        conv(a, 0, 0);
}

void conv_pointwise_f32(const conv_pointwise_args *a) {
    if (a->half)
        conv_half(a);
    else if (rows_fit(a))
        conv_rows(a, 0, 0, 1);
    else
        conv(a, 0, 1);
}

/* the float16 vector path this file was compiled with (half.h EI_H8_PATH: 0 portable, 1 F16C,
 * 2 NEON), for tests */
long conv_pointwise_half_path(void) { return EI_H8_PATH; }

EI_TASK(conv_pointwise)
