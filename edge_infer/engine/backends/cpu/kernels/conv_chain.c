/* An inverted-residual chain in one pass over memory: [expand 1x1 ->] depthwise 3x3 (stride 1
 * or 2, pads 1) -> project 1x1, float32 NCHW, each member with its bias and activation, the
 * project with the residual before or after its activation (args.h: EI_EPILOGUE_ARGS).
 *
 * A task takes the output rows g in [g0, g1) of all images (g = b * ho + oy) and goes
 * through them image by image, `rows` output rows (a strip) at a time:
 *
 *   - expand: the input rows the strip's depthwise reads that are not in the ring yet, as
 *     one GEMM over their pixels (the rows are back to back in the input plane and in the
 *     ring: TR x TV register tiles over contiguous pixels, a tile's vectors crossing row
 *     ends; weights packed at bind as [ceil(cmid / 8)][cin][8]; split where the ring wraps),
 *     bias + activation in registers, stored into a ring of `ns` rows per channel,
 *     E[cmid][ns * ws]: input row r at slot r % ns, the slots w apart (no pad columns).
 *     Without an expand the input rows are copied. A strip's rows overlap the previous
 *     strip's by 2 (stride 1) or 1 (stride 2) rows: those stay in the ring, so only the first
 *     strip of a task computes halo rows twice (once per task boundary). (Rows of one
 *     pixel vector each -- 14 or 7 wide -- had left 4 x 2 and 4 x 1 tiles, and pad columns
 *     tripled a 14-wide ring.)
 *   - depthwise: per channel, up to four output rows a pass (independent accumulators
 *     sharing their common input rows' loads), 16 (AVX-512) or 8 output columns a vector
 *     (stride 2: the even and odd columns of two loads, in-lane shuffles on x86); the taps
 *     reading column -1 or w (the padding: a neighbouring row's pixel in E) are masked to
 *     zero; rows above or below the image read a zero row. Bias + activation, into D[cmid][ds]
 *     (the strip's output rows back to back, `wo` apart, every vector stored whole).
 *   - project: a GEMM over the strip's rows * wo pixels of D (register tiles as above,
 *     weights [ceil(cout / 8)][cmid][8]), bias, residual and activation in registers,
 *     stored straight into the output rows (the partial vector masked).
 *
 * Only the block's input and output touch memory; the tactic (tactics/cpu_chain.py) sizes
 * `rows` so that E and D stay in L2, and gives each task its own `work`: E (cmid * ns * ws
 * floats: EHEAD, ns rows of w, at least ETAIL), D (cmid * ds), a tail buffer (cin * NR), a
 * zero row (EHEAD + w + ETAIL). Lanes past a row's end compute garbage that no valid lane
 * reads (the masked taps; D's tail lanes are masked at the output).
 */
#include "simd.h"

#define PANEL 8 /* output channels per packed weight panel (the tactic packs with this) */
#if defined(__AVX512F__)
#define TR 8
#define TV 3
#elif defined(__aarch64__)
#define TR 4
#define TV 2
#else
#define TR 4
#define TV 3
#endif
#define NR (8 * TV)
#define EHEAD 8  /* floats of E before a channel's slot 0 (column -1 is read) */
#define ETAIL 40 /* floats past a channel's last slot (the depthwise reads up to 2 DV past) */


/* acc[i][j] = sum_k a[PANEL k + i] * b[bs k + 8 j .. + 8], i < TR, j < nv */
static inline __attribute__((always_inline)) void micro(const float *a, const float *b, long bs,
                                                       long kc, long nv, v8 acc[TR][TV]) {
    v8 c[TR][TV];
    for (long i = 0; i < TR; i++)
        for (long j = 0; j < TV; j++) c[i][j] = (v8){0};
    for (long k = 0; k < kc; k++, a += PANEL, b += bs) {
        v8 v[TV];
#pragma GCC unroll 4
        for (long j = 0; j < TV; j++)
            if (j < nv) v[j] = in_reg(load8(b + 8 * j));
#pragma GCC unroll 8
        for (long i = 0; i < TR; i++) {
            v8 s = splat(a[i]);
#pragma GCC unroll 4
            for (long j = 0; j < TV; j++)
                if (j < nv) c[i][j] += s * v[j];
        }
    }
    for (long i = 0; i < TR; i++)
        for (long j = 0; j < TV; j++) acc[i][j] = c[i][j];
}

/* vectors for the next tile of nvec left: TV, but 4 as 2 + 2 (not 3 + 1: a tile of one
 * vector is bound by its 4 accumulators' FMA latency, half the rate of 2) */
static inline long take(long nvec) {
    if (nvec < TV) return nvec;
    return TV == 3 && nvec == 4 ? 2 : TV;
}

/* a GEMM's last few pixels (TAIL_PX at most: 49 = 2 x 24 + 1 on 7 x 7 planes) go with vectors
 * along the output channels (gemv_panels), not through a register tile of one or two pixel
 * vectors, whose TR sums are chains of dependent multiply-adds (each pixel reads every
 * panel's weights again: 4 pixels, 14 x 14 strips' 28 = 24 + 4, measured 1.03-1.15x slower
 * than 16 + 12) */
#define TAIL_PX 2
#define TAIL_G 8

/* vectors for the next tile of the `left` pixels of a GEMM: whole tiles up to a tail of at
 * most TAIL_PX pixels, else take() */
static inline long take_px(long left) {
    if (left > NR && left - NR <= TAIL_PX) return TV;
    return take((left + 7) / 8);
}

/* acc[g] = sum_k w[g][k][0 .. 8] x[k xs] for the ng <= TAIL_G panels at w (packed [panel][kc][8]):
 * per output the products in the tile's order (micro) */
static inline __attribute__((always_inline)) void gemv_panels(const float *w, const float *x,
                                                             long xs, long kc, long ng,
                                                             v8 acc[TAIL_G]) {
    for (long g = 0; g < TAIL_G; g++) acc[g] = (v8){0};
    if (ng == TAIL_G) {
        for (long k = 0; k < kc; k++) {
            v8 v = splat(x[k * xs]);
#pragma GCC unroll 8
            for (long g = 0; g < TAIL_G; g++) acc[g] += load8(w + (g * kc + k) * PANEL) * v;
        }
        return;
    }
    for (long k = 0; k < kc; k++) {
        v8 v = splat(x[k * xs]);
        for (long g = 0; g < ng; g++) acc[g] += load8(w + (g * kc + k) * PANEL) * v;
    }
}

/* the geometry every stage of a task reads */
typedef struct {
    const conv_chain_args *a;
    float *E, *D, *pk, *zrow;
    long ech; /* floats per channel of E: ns * ws */
} chain;

/* channel 0 of input row r in E (its column 0): slot r % ns of the ring */
static inline float *slot(const chain *c, long r) {
    return c->E + EHEAD + (r % c->a->ns) * c->a->w;
}

/* the epilogues' loops over a tile's rows and vectors unrolled (the tile stays in registers)
 * where vectors are native; not on plain x86-64, whose 8-float vectors are pairs of SSE ones
 * (its compile time: 7 -> 11 s unrolled, and nobody runs it for speed) */
#if defined(__AVX2__) || defined(__aarch64__)
#define EPI_UNROLL(n) _Pragma(EPI_STR(GCC unroll n))
#else
#define EPI_UNROLL(n) _Pragma("GCC unroll 1")
#endif
#define EPI_STR(x) #x

/* simd.h activate on *y, out of line (one copy, not one per unrolled tile vector) */
static __attribute__((noinline)) void act_other(v8 *y, long act, float p0, float p1) {
    *y = activate(*y, act, p0, p1);
}

/* simd.h store8_n / load8_n out of line: the partial vectors (a strip's last) of the
 * unrolled tiles below share one copy */
static __attribute__((noinline)) void store_part(float *p, const v8 *y, long n) {
    store8_n(p, *y, n);
}
static __attribute__((noinline)) void load_part(v8 *z, const float *p, long n) {
    *z = load8_n(p, n);
}

/* y (bias added) through the activation in registers: none, relu and clip inline (simd.h
 * activate's operations, so its bits), the others out of line */
static inline __attribute__((always_inline)) v8 act8(v8 y, long act, float p0, float p1) {
    if (act == EI_ACT_NONE) return y;
    if (act == EI_ACT_RELU) return vmax(y, splat(0.0f));
    if (act == EI_ACT_CLIP) return vmin(vmax(y, splat(p0)), splat(p1));
    act_other(&y, act, p0, p1);
    return y;
}

/* every output channel block of the expand on the np (<= 8 NV) pixels at src (bs floats a
 * channel apart) into E at d (channel 0's pixel): the tile's NV vectors a row kept in
 * registers through bias, activation and store (the last vector masked: the next slot may
 * hold a row still read) */
static inline __attribute__((always_inline)) void expand_tiles(const chain *c, const float *src,
                                                              long bs, float *d, long np,
                                                              long NV) {
    const conv_chain_args *a = c->a;
    long cin = a->cin, cmid = a->cmid, ech = c->ech, act = a->eact;
    float p0 = a->ep0, p1 = a->ep1;
    long last = np - 8 * (NV - 1); /* lanes of the last vector (1 to 8) */
    for (long m0 = 0; m0 < cmid; m0 += TR) {
        v8 acc[TR][TV];
        const float *wp = a->ew + (m0 / PANEL) * cin * PANEL + m0 % PANEL;
        micro(wp, src, bs, cin, NV, acc);
        long nr = cmid - m0 < TR ? cmid - m0 : TR;
EPI_UNROLL(8)
        for (long i = 0; i < TR; i++) {
            if (i >= nr) break;
            v8 bi = splat(a->eb ? a->eb[m0 + i] : 0.0f);
            float *o = d + (m0 + i) * ech;
EPI_UNROLL(4)
            for (long j = 0; j < NV; j++) {
                v8 y = act8(acc[i][j] + bi, act, p0, p1);
                if (j < NV - 1 || last == 8)
                    store8(o + 8 * j, y);
                else
                    store_part(o + 8 * j, &y, last);
            }
        }
    }
}

/* the expand on the np <= TAIL_PX pixels at src (bs floats a channel apart) into E at d,
 * vectors along the middle channels (gemv_panels), bias + activation as expand_tiles' */
static __attribute__((noinline)) void expand_tail(const chain *c, const float *src, long bs,
                                                  float *d, long np) {
    const conv_chain_args *a = c->a;
    long cin = a->cin, cmid = a->cmid, panels = (cmid + PANEL - 1) / PANEL;
    for (long j = 0; j < np; j++)
        for (long ob = 0; ob < panels; ob += TAIL_G) {
            long ng = panels - ob < TAIL_G ? panels - ob : TAIL_G;
            v8 acc[TAIL_G];
            gemv_panels(a->ew + ob * cin * PANEL, src + j, bs, cin, ng, acc);
            for (long g = 0; g < ng; g++) {
                long m0 = (ob + g) * PANEL, n = cmid - m0 < PANEL ? cmid - m0 : PANEL;
                float t[PANEL] = {0};
                for (long l = 0; l < n; l++) t[l] = a->eb ? a->eb[m0 + l] : 0.0f;
                store8(t, act8(acc[g] + load8(t), a->eact, a->ep0, a->ep1));
                for (long l = 0; l < n; l++) d[(m0 + l) * c->ech + j] = t[l];
            }
        }
}

/* input rows [r0, r1) of image b into E (slots not wrapping around the ring's end): one
 * expand GEMM over their (r1 - r0) * w pixels (bias + activation in registers), or a copy */
static void expand_rows(const chain *c, long b, long r0, long r1) {
    const conv_chain_args *a = c->a;
    long w = a->w, cin = a->cin, cmid = a->cmid, npx = (r1 - r0) * w;
    float *dst = slot(c, r0);
    const float *x = a->x + b * a->xis + r0 * w;
    if (!a->ew) { /* no expand: the rows themselves */
        for (long m = 0; m < cmid; m++) memcpy(dst + m * c->ech, x + m * a->xcs, 4 * npx);
        return;
    }
    for (long q = 0; q < npx;) {
        if (q && npx - q <= TAIL_PX) { /* (q: a plane of so few pixels keeps its tile) */
            expand_tail(c, x + q, a->xcs, dst + q, npx - q);
            return;
        }
        long nv = take_px(npx - q), np = npx - q < 8 * nv ? npx - q : 8 * nv;
        const float *src = x + q;
        long bs = a->xcs;
        if (r1 == a->h && np < 8 * nv) { /* past the plane's end: a zero-filled copy */
            for (long k = 0; k < cin; k++)
                for (long j = 0; j < nv; j++) {
                    long m = np - 8 * j;
                    store8(c->pk + k * NR + 8 * j,
                           m >= 8 ? load8(src + k * bs + 8 * j) : load8_n(src + k * bs + 8 * j, m));
                }
            src = c->pk;
            bs = NR;
        }
        float *d = dst + q;
        if (nv == TV)
            expand_tiles(c, src, bs, d, np, TV);
#if TV > 2
        else if (nv == 2)
            expand_tiles(c, src, bs, d, np, 2);
#endif
        else
            expand_tiles(c, src, bs, d, np, 1);
        q += 8 * nv;
    }
}

/* the depthwise's vectors: DV floats, one register where the build has 16-float ones
 * (AVX-512), else simd.h's 8 floats */
#if defined(__AVX512F__)
#include <immintrin.h>
#define DV 16
#define EVEN 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30
#define ODD 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31
#else
#define DV 8
#define EVEN 0, 2, 4, 6, 8, 10, 12, 14
#define ODD 1, 3, 5, 7, 9, 11, 13, 15
#endif
typedef float dv __attribute__((vector_size(4 * DV)));
typedef int dvi __attribute__((vector_size(4 * DV)));

/* stride 2 on x86: the taps' columns picked by in-lane shuffles (vshufps: per 128-bit lane
 * two columns from lo, two from hi), so that lane 4 k + j holds output column 2 k + j (j < 2)
 * or DV / 2 + 2 k + j - 2; the accumulators stay in that order, put back in column order
 * once per output vector (PUT; conv_depthwise.c measured this 4-7 % faster than a
 * two-source permute per tap). Elsewhere (NEON: uzp1 / uzp2) the even and odd columns. */
#if defined(__x86_64__) && DV == 16
#define INLANE 1
#define S_EVEN 0, 2, 16, 18, 4, 6, 20, 22, 8, 10, 24, 26, 12, 14, 28, 30
#define S_ODD 1, 3, 17, 19, 5, 7, 21, 23, 9, 11, 25, 27, 13, 15, 29, 31
#define PUT 0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15
#elif defined(__x86_64__)
#define INLANE 1
#define S_EVEN 0, 2, 8, 10, 4, 6, 12, 14
#define S_ODD 1, 3, 9, 11, 5, 7, 13, 15
#define PUT 0, 1, 4, 5, 2, 3, 6, 7
#else
#define INLANE 0
#define S_EVEN EVEN
#define S_ODD ODD
#endif

#if DV == 16
static inline dv dmax(dv a, dv b) { return (dv)_mm512_max_ps((__m512)a, (__m512)b); }
static inline dv dmin(dv a, dv b) { return (dv)_mm512_min_ps((__m512)a, (__m512)b); }
#else
static inline dv dmax(dv a, dv b) { return vmax(a, b); }
static inline dv dmin(dv a, dv b) { return vmin(a, b); }
#endif

/* taps 0, 1, 2 of W output columns from the row at column -1 (stride s: the even or odd
 * columns of two loads, in the order above); act(y) (bias added) stored to d: none / relu /
 * clip in registers, the others through simd.h's activate on each 8 floats; R (1 to 4)
 * output rows of one channel from their input rows rp[0 .. 2 + (R - 1) s] (at column -1),
 * W columns a vector: input row t feeds output row r as kernel row t - r s, each input row's
 * taps loaded once for all R rows; an accumulator per output row and kernel row (FMA chains
 * of 3, not 9). The rows have no pad columns (E's rows are back to back): tap 0's lanes at
 * column -1 and tap 2's at column w (the padding) are masked to zero, masks made once per
 * vector of columns from the lanes' column numbers (IO: 0 .. W - 1 through the same
 * shuffles). Into d (rows wo apart, every vector stored whole: a row's last vector runs on
 * into the next row (D's rows are back to back, D has room past the last), whose first
 * vector is stored after it: vectors right to left, rows top to bottom). One set per vector
 * width (SFX: T, W floats, TI its int lanes, the shuffles EV / OD, put back by PT where
 * INL). */
#define DW_FUNCS(SFX, T, TI, W, EV, OD, PT, INL, MAXF, MINF)                                \
    static inline __attribute__((always_inline)) T load_##SFX(const float *p) {              \
        T v;                                                                                 \
        memcpy(&v, p, sizeof v);                                                             \
        return v;                                                                            \
    }                                                                                        \
    static inline __attribute__((always_inline)) void taps_##SFX(const float *r, long j,     \
                                                                 long s, T t[3]) {           \
        if (s == 1) {                                                                        \
            t[0] = load_##SFX(r + j);                                                        \
            t[1] = load_##SFX(r + j + 1);                                                    \
            t[2] = load_##SFX(r + j + 2);                                                    \
            return;                                                                          \
        }                                                                                    \
        const float *p = r + 2 * j;                                                          \
        T lo = load_##SFX(p), hi = load_##SFX(p + W);                                        \
        T lo2 = load_##SFX(p + 2), hi2 = load_##SFX(p + 2 + W);                              \
        t[0] = __builtin_shufflevector(lo, hi, EV);                                          \
        t[1] = __builtin_shufflevector(lo, hi, OD);                                          \
        t[2] = __builtin_shufflevector(lo2, hi2, EV);                                        \
    }                                                                                        \
    static inline __attribute__((always_inline)) void store_##SFX(float *d, T y, long act,   \
                                                                  float p0, float p1) {      \
        if (act == EI_ACT_RELU)                                                              \
            y = MAXF(y, (T){0});                                                             \
        else if (act == EI_ACT_CLIP)                                                         \
            y = MINF(MAXF(y, (T){0} + p0), (T){0} + p1);                                     \
        else if (act != EI_ACT_NONE) {                                                       \
            v8 h[W / 8];                                                                     \
            memcpy(h, &y, sizeof y);                                                         \
            for (long t = 0; t < W / 8; t++) h[t] = activate(h[t], act, p0, p1);             \
            memcpy(&y, h, sizeof y);                                                         \
        }                                                                                    \
        memcpy(d, &y, sizeof y);                                                             \
    }                                                                                        \
    static inline __attribute__((always_inline)) void dw_rows_##SFX(                         \
        const float *const *rp, long R, const float *k, float bias, long wo, long s, long w, \
        float *d, long act, float p0, float p1) {                                            \
        T wk[9];                                                                             \
        for (long t = 0; t < 9; t++) wk[t] = (T){0} + k[t];                                  \
        T bi = (T){0} + bias;                                                                \
        T io;                                                                                \
        for (long l = 0; l < W; l++) io[l] = (float)l;                                       \
        /* a tap lane's column, less 2 j (stride 2) or j (stride 1): tap 2's is tap 0's + 2 */ \
        T c0 = s == 1 ? io - 1.0f : __builtin_shufflevector(io, io + (float)W, EV) - 1.0f;   \
        for (long j = (wo - 1) / W * W; j >= 0; j -= W) {                                    \
            T cj = c0 + (float)(s * j);                                                      \
            TI m0 = cj >= 0.0f, m2 = cj + 2.0f < (float)w;                                   \
            T acc[4][3];                                                                     \
            _Pragma("GCC unroll 4") for (long r = 0; r < R; r++) {                           \
                acc[r][0] = bi;                                                              \
                acc[r][1] = acc[r][2] = (T){0};                                              \
            }                                                                                \
            _Pragma("GCC unroll 9") for (long t = 0; t < 3 + (R - 1) * s; t++) {             \
                T v[3];                                                                      \
                taps_##SFX(rp[t], j, s, v);                                                  \
                v[0] = (T)((TI)v[0] & m0);                                                   \
                v[2] = (T)((TI)v[2] & m2);                                                   \
                _Pragma("GCC unroll 4") for (long r = 0; r < R; r++) if (t >= r * s &&       \
                                                                       t - r * s < 3) {      \
                    long ky = t - r * s;                                                     \
                    acc[r][ky] +=                                                            \
                        wk[3 * ky] * v[0] + wk[3 * ky + 1] * v[1] + wk[3 * ky + 2] * v[2];   \
                }                                                                            \
            }                                                                                \
            _Pragma("GCC unroll 4") for (long r = 0; r < R; r++) {                           \
                T y = acc[r][0] + acc[r][1] + acc[r][2];                                     \
                if (INL && s == 2) y = __builtin_shufflevector(y, y, PT);                    \
                store_##SFX(d + r * wo + j, y, act, p0, p1);                                 \
            }                                                                                \
        }                                                                                    \
    }

#if !INLANE
#define PUT EVEN
#endif
DW_FUNCS(w, dv, dvi, DV, S_EVEN, S_ODD, PUT, INLANE, dmax, dmin)
#if DV == 16
/* rows of at most 8 outputs (MobileNetV2's 7 x 7 planes): 8 floats a vector, not 16 */
#define NARROW 1
#define S_EVEN8 0, 2, 8, 10, 4, 6, 12, 14
#define S_ODD8 1, 3, 9, 11, 5, 7, 13, 15
#define PUT8 0, 1, 4, 5, 2, 3, 6, 7
DW_FUNCS(n, v8, v8i, 8, S_EVEN8, S_ODD8, PUT8, 1, vmax, vmin)
#else
#define NARROW 0
#endif

/* dw_rows_SFX for a run-time R and stride, each its own instance */
#define DW_PASS(SFX)                                                                          \
    static void dw_pass_##SFX(const float *const *rp, long R, const float *k, float bias,   \
                              long wo, long s, long w, float *d, long act, float p0, float p1) { \
        if (s == 1 && R == 4)                                                                \
            dw_rows_##SFX(rp, 4, k, bias, wo, 1, w, d, act, p0, p1);                            \
        else if (s == 1 && R == 3)                                                           \
            dw_rows_##SFX(rp, 3, k, bias, wo, 1, w, d, act, p0, p1);                            \
        else if (s == 1 && R == 2)                                                           \
            dw_rows_##SFX(rp, 2, k, bias, wo, 1, w, d, act, p0, p1);                            \
        else if (s == 1)                                                                     \
            dw_rows_##SFX(rp, 1, k, bias, wo, 1, w, d, act, p0, p1);                            \
        else if (R == 4)                                                                     \
            dw_rows_##SFX(rp, 4, k, bias, wo, 2, w, d, act, p0, p1);                            \
        else if (R == 3)                                                                     \
            dw_rows_##SFX(rp, 3, k, bias, wo, 2, w, d, act, p0, p1);                            \
        else if (R == 2)                                                                     \
            dw_rows_##SFX(rp, 2, k, bias, wo, 2, w, d, act, p0, p1);                            \
        else                                                                                 \
            dw_rows_##SFX(rp, 1, k, bias, wo, 2, w, d, act, p0, p1);                            \
    }
DW_PASS(w)
#if NARROW
DW_PASS(n)
#else
#define dw_pass_n dw_pass_w
#endif

/* the strip's output rows [oy0, oy0 + nr) of every channel into D, up to four rows at a time */
static void depthwise(const chain *c, long oy0, long nr) {
    const conv_chain_args *a = c->a;
    long h = a->h, w = a->w, sy = a->sy, wo = a->wo, cmid = a->cmid, ds = a->ds, ech = c->ech;
    long act = a->dact;
    float p0 = a->dp0, p1 = a->dp1;
    const float *dwk = a->dw, *db = a->db, *zrow = c->zrow;
    float *D = c->D;
    for (long m = 0; m < cmid; m++) {
        const float *k = dwk + 9 * m;
        float bias = db ? db[m] : 0.0f;
        for (long i = 0; i < nr;) {
            const float *rp[9];
            long R = nr - i >= 4 ? 4 : nr - i;
            for (long t = 0; t < 3 + (R - 1) * sy; t++) {
                long r = (oy0 + i) * sy - 1 + t;
                rp[t] = (r < 0 || r >= h ? zrow + EHEAD : slot(c, r) + m * ech) - 1;
            }
            float *d = D + m * ds + i * wo;
            if (NARROW && wo <= 8)
                dw_pass_n(rp, R, k, bias, wo, sy, w, d, act, p0, p1);
            else
                dw_pass_w(rp, R, k, bias, wo, sy, w, d, act, p0, p1);
            i += R;
        }
    }
}

/* every output channel block of the project on the np (<= 8 NV) pixels of D at q into the
 * output at o (channel 0's pixel; residual at zb): the tile's vectors kept in registers
 * through bias, residual, activation and store (the last vector masked) */
static inline __attribute__((always_inline)) void project_tiles(const chain *c, long q, float *o,
                                                               const float *zb, long np,
                                                               long NV) {
    const conv_chain_args *a = c->a;
    long cmid = a->cmid, cout = a->cout, act = a->act, res = zb ? a->residual : 0;
    long ocs = a->ocs, zcs = a->zcs;
    float p0 = a->p0, p1 = a->p1;
    long last = np - 8 * (NV - 1);
    for (long o0 = 0; o0 < cout; o0 += TR) {
        v8 acc[TR][TV];
        const float *wp = a->pw + (o0 / PANEL) * cmid * PANEL + o0 % PANEL;
        micro(wp, c->D + q, a->ds, cmid, NV, acc);
        long nr = cout - o0 < TR ? cout - o0 : TR;
EPI_UNROLL(8)
        for (long i = 0; i < TR; i++) {
            if (i >= nr) break;
            v8 bi = splat(a->pb ? a->pb[o0 + i] : 0.0f);
            float *oi = o + (o0 + i) * ocs;
            const float *zi = res ? zb + (o0 + i) * zcs : 0;
EPI_UNROLL(4)
            for (long j = 0; j < NV; j++) {
                long whole = j < NV - 1 || last == 8;
                v8 y = acc[i][j] + bi, z = {0};
                if (res && whole)
                    z = load8(zi + 8 * j);
                else if (res)
                    load_part(&z, zi + 8 * j, last);
                if (res == 1) y += z;
                y = act8(y, act, p0, p1);
                if (res == 2) y += z;
                if (whole)
                    store8(oi + 8 * j, y);
                else
                    store_part(oi + 8 * j, &y, last);
            }
        }
    }
}

/* the project on the np <= TAIL_PX pixels of D at q into the output at o (residual at zb),
 * vectors along the output channels (gemv_panels), the epilogue as project_tiles' */
static __attribute__((noinline)) void project_tail(const chain *c, long q, float *o,
                                                   const float *zb, long np) {
    const conv_chain_args *a = c->a;
    long cmid = a->cmid, cout = a->cout, res = zb ? a->residual : 0;
    long panels = (cout + PANEL - 1) / PANEL;
    for (long j = 0; j < np; j++)
        for (long ob = 0; ob < panels; ob += TAIL_G) {
            long ng = panels - ob < TAIL_G ? panels - ob : TAIL_G;
            v8 acc[TAIL_G];
            gemv_panels(a->pw + ob * cmid * PANEL, c->D + q + j, a->ds, cmid, ng, acc);
            for (long g = 0; g < ng; g++) {
                long o0 = (ob + g) * PANEL, n = cout - o0 < PANEL ? cout - o0 : PANEL;
                float t[PANEL] = {0}, zt[PANEL] = {0};
                for (long l = 0; l < n; l++) {
                    t[l] = a->pb ? a->pb[o0 + l] : 0.0f;
                    if (res) zt[l] = zb[(o0 + l) * a->zcs + j];
                }
                v8 y = acc[g] + load8(t), z = load8(zt);
                if (res == 1) y += z;
                y = act8(y, a->act, a->p0, a->p1);
                if (res == 2) y += z;
                store8(t, y);
                for (long l = 0; l < n; l++) o[(o0 + l) * a->ocs + j] = t[l];
            }
        }
}

/* the strip's P pixels of D through the project GEMM into output pixels [p0, p0 + P) of
 * image b (bias, residual, activation in registers) */
static void project(const chain *c, long b, long p0, long P) {
    const conv_chain_args *a = c->a;
    for (long q = 0, nv; q < P; q += 8 * nv) {
        if (q && P - q <= TAIL_PX) {
            project_tail(c, q, a->out + b * a->ois + p0 + q,
                         a->residual ? a->z + b * a->zis + p0 + q : 0, P - q);
            return;
        }
        nv = take_px(P - q);
        long np = P - q < 8 * nv ? P - q : 8 * nv;
        float *o = a->out + b * a->ois + p0 + q;
        const float *zb = a->residual ? a->z + b * a->zis + p0 + q : 0;
        if (nv == TV)
            project_tiles(c, q, o, zb, np, TV);
#if TV > 2
        else if (nv == 2)
            project_tiles(c, q, o, zb, np, 2);
#endif
        else
            project_tiles(c, q, o, zb, np, 1);
    }
}

void conv_chain_f32(const conv_chain_args *a) {
    chain c;
    c.a = a;
    c.ech = a->ns * a->ws;
    c.E = a->work;
    c.D = c.E + a->cmid * c.ech;
    c.pk = c.D + a->cmid * a->ds;
    c.zrow = c.pk + a->cin * NR;
    memset(c.zrow, 0, sizeof(float) * (EHEAD + a->w + ETAIL));
    long ho = a->ho, h = a->h, sy = a->sy, ns = a->ns;
    for (long g = a->g0; g < a->g1;) {
        long b = g / ho, oy = g - b * ho;
        long end = (b + 1) * ho < a->g1 ? ho : a->g1 - b * ho;
        long have = -1; /* the ring holds input rows up to `have` (exclusive) */
        for (; oy < end; oy += a->rows) {
            long nr = end - oy < a->rows ? end - oy : a->rows;
            long lo = oy * sy - 1, hi = (oy + nr - 1) * sy + 2;
            if (lo < 0) lo = 0;
            if (hi > h) hi = h;
            for (long r = have > lo ? have : lo, e; r < hi; r = e) { /* split at the wrap */
                e = (r / ns + 1) * ns < hi ? (r / ns + 1) * ns : hi;
                expand_rows(&c, b, r, e);
            }
            have = hi;
            depthwise(&c, oy, nr);
            project(&c, b, oy * a->wo, nr * a->wo);
        }
        g = b * ho + end;
    }
}

EI_TASK(conv_chain)
