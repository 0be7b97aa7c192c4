/* INT8 1 x 1 convolutions on small maps (edge_infer::QConv: kernel 1 x 1, stride 1, no
 * padding, one group, an int8 input and an int8 output under no activation, relu or clip,
 * no residual or an int8 one added before the activation), bit for bit the reference's
 * (ops/quantize.py qconv; see conv_int8.c for the semantics).
 *
 * One call computes output positions [q0, q1) of output channels [oc0, oc1) of one image
 * in one pass: it lays its positions out as int32 quads (4 input channels' bytes of one
 * position; conv_int8.c's layout, here only the call's own positions, so that the threads'
 * calls share nothing and a layer is one pool call without a wait between a layout and a
 * GEMM), then runs the GEMM over them with the requantization on the register tile.
 *
 * Built for AVX-512 VNNI: tiles of MR output channels x NV vectors of 16 positions, each
 * quad a vpdpbusd (activations biased by +128 to u8 in the layout, -128 x the weights' sum
 * in the accumulator's start), the weight quads broadcast from [quad][coutp] rows; the tile's
 * shape follows the positions a call has (4 vectors: 6 channels, 3: 8, 2: 12, 1: 16). The
 * epilogue is conv_int8.c's fast int8 one (fastq): q = rint(clamp(float(acc) * float(m / s)
 * + float(zq) * float(zs / s), lo, hi)), a vector with a lane within eps of a half redone
 * exactly (the reference's double arithmetic, lane by lane). On AVX2 without VNNI: tiles of
 * 4 channels x 16 positions by vpmaddubsw (see the AVX2 section), any map size and channel
 * count (cpu_qpointwise.py), and a float32 output too (otype 1, no residual). Elsewhere (plain x86-64, aarch64) the dot products are plain C
 * over 16 positions and every output takes the exact path: correct, slower; the build's
 * timing keeps qconv_native there. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
/* the reference rounds every float operation: no fused multiply-adds in this file */
#pragma GCC optimize("fp-contract=off")
#endif

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "args.h"

#if defined(__AVX512VNNI__) && defined(__AVX512BW__) && defined(__AVX512VL__) &&             \
    defined(__AVX512DQ__)
#define QPW_VNNI 1
#elif defined(__AVX2__)
#define QPW_AVX2 1
#endif
#if defined(__SSE2__) || defined(QPW_VNNI)
#include <immintrin.h>
#endif

/* which path this library runs: 1 AVX-512 VNNI, 2 AVX2, 0 plain C */
long qpw_int8_path(void) {
#ifdef QPW_VNNI
    return 1;
#elif defined(QPW_AVX2)
    return 2;
#else
    return 0;
#endif
}

/* the weight quads' layout this build reads (cpu_qpointwise.py packs them so): 0, rows
 * [quad][coutp] (the VNNI tiles broadcast any channel's quad from its row); else panels of
 * QPW_PANEL channels [coutp / QPW_PANEL][quad][QPW_PANEL], so that a tile's quads lie one
 * after another instead of rows coutp apart (a 2048-channel layer's tile: 128 rows 8 KB apart,
 * a page each) */
#ifdef QPW_VNNI
#define QPW_PANEL 0
#else
#define QPW_PANEL 16
#endif
long qpw_int8_panel(void) { return QPW_PANEL; }

/* channel oc's first quad (the next quads: QPW_PANEL, or coutp, int32 apart) */
static inline const int32_t *qpw_wq(const qpw_int8_args *a, long oc) {
    if (!QPW_PANEL) return a->wts + oc;
    const long cq = (a->cin + 3) / 4, p = QPW_PANEL ? QPW_PANEL : 1; /* (no division by 0) */
    return a->wts + oc / p * cq * QPW_PANEL + oc % p;
}
#define QPW_WS(a) (QPW_PANEL ? QPW_PANEL : (a)->coutp)

/* the zero activation as the dot product reads it (u8 = s8 + 128 on the VNNI path) */
#ifdef QPW_VNNI
#define QPW_ZERO 0x80808080u
#else
#define QPW_ZERO 0u
#endif

/* -- the layout ---------------------------------------------------------------------------- */

/* the layout's row stride (int32): pn, rows [cq][pn], or on the AVX2 path from
 * QPW_BLOCK_CQ quads on 16, blocks of 16 positions [pn / 16][cq][16] (a tile's quads one
 * after another; measured slower on fewer quads); 16 either way on one block */
#define QPW_BLOCK_CQ 16
static inline long qpw_rs(long cq, long pn) {
#ifdef QPW_AVX2
    return cq >= QPW_BLOCK_CQ ? 16 : pn;
#else
    (void)cq;
    return pn;
#endif
}

/* quads of positions q0 .. q1 - 1 (pn: (q1 - q0) rounded up to 16; the padding positions
 * hold zero activations), quad q of position j at buf[j / 16 * bs + q * rs + j % 16] (rs:
 * qpw_rs, bs: 16 cq where rs is 16, else 16); nonzero where an activation is negative */
static int qpw_layout(const qpw_int8_args *a, uint32_t *buf, long pn) {
    const long cq = (a->cin + 3) / 4, n = a->q1 - a->q0;
    const long rs = qpw_rs(cq, pn), bs = rs == 16 ? 16 * cq : 16;
    uint32_t sign = 0;
#if defined(__SSE2__)
    __m128i vsign = _mm_setzero_si128();
#endif
    for (long q = 0; q < cq; q++) {
        const int8_t *p[4];
        for (int k = 0; k < 4; k++) {
            long c = 4 * q + k;
            p[k] = c < a->cin ? a->x + c * a->xcs + a->q0 : NULL;
        }
        uint32_t *o = buf + q * rs;
        long j = 0;
#if defined(__SSE2__)
        static const int8_t zeros[16] = {0};
        const __m128i flip = _mm_set1_epi32((int)QPW_ZERO);
        for (; j + 16 <= n; j += 16) {
            __m128i c[4];
            for (int k = 0; k < 4; k++)
                c[k] = p[k] ? _mm_loadu_si128((const __m128i *)(p[k] + j))
                            : _mm_loadu_si128((const __m128i *)zeros);
            vsign = _mm_or_si128(_mm_or_si128(vsign, _mm_or_si128(c[0], c[1])),
                                 _mm_or_si128(c[2], c[3]));
            __m128i l01 = _mm_unpacklo_epi8(c[0], c[1]), h01 = _mm_unpackhi_epi8(c[0], c[1]);
            __m128i l23 = _mm_unpacklo_epi8(c[2], c[3]), h23 = _mm_unpackhi_epi8(c[2], c[3]);
            uint32_t *ob = o + j / 16 * bs;
            _mm_storeu_si128((__m128i *)ob, _mm_xor_si128(_mm_unpacklo_epi16(l01, l23), flip));
            _mm_storeu_si128((__m128i *)(ob + 4),
                             _mm_xor_si128(_mm_unpackhi_epi16(l01, l23), flip));
            _mm_storeu_si128((__m128i *)(ob + 8),
                             _mm_xor_si128(_mm_unpacklo_epi16(h01, h23), flip));
            _mm_storeu_si128((__m128i *)(ob + 12),
                             _mm_xor_si128(_mm_unpackhi_epi16(h01, h23), flip));
        }
#endif
        for (; j < n; j++) {
            uint32_t v = 0;
            for (int k = 0; k < 4; k++)
                v |= (uint32_t)(uint8_t)(p[k] ? p[k][j] : 0) << (8 * k);
            sign |= v;
            o[j / 16 * bs + j % 16] = v ^ QPW_ZERO;
        }
        for (; j < pn; j++) o[j / 16 * bs + j % 16] = QPW_ZERO;
    }
#if defined(__SSE2__)
    if (_mm_movemask_epi8(vsign)) return 1;
#endif
    return (sign & 0x80808080u) != 0;
}

/* the int32 from the layout's first quad to its copy of |x| (qpw_abs, the AVX2 signed tiles on
 * the blocked layout: from QPW_BLOCK_CQ quads), the layout's size (rows or blocks: cq x the
 * call's positions rounded up to 16; the caller's buffer holds twice that); 0: none */
static inline long qpw_aoff(const qpw_int8_args *a) {
    const long cq = (a->cin + 3) / 4;
    return cq >= QPW_BLOCK_CQ ? cq * ((a->q1 - a->q0 + 15) / 16 * 16) : 0;
}

/* the biased quads' offset from the weight quads (cpu_qpointwise.py: after the proved rows,
 * the sign row and the panels' pairings, cq + 1 int32 a panel in whole rows) */
static inline long qpw_boff(const qpw_int8_args *a) {
    const long cq = (a->cin + 3) / 4, cp = a->coutp;
    return (cq + 4 + (cp / 16 * (cq + 1) + cp - 1) / cp) * cp;
}

/* each block's check after the layout, its |x| and the positions' sums (qpw_check): nonzero
 * where the block's quads read as (w + 128) . x (qpw_check), or NULL where the call made none */
static inline const int32_t *qpw_checks(const qpw_int8_args *a, const uint32_t *buf) {
    const long cq = (a->cin + 3) / 4, pn = (a->q1 - a->q0 + 15) / 16 * 16;
    const int32_t *c = (const int32_t *)buf + 2 * cq * pn + pn;
    return c[pn / 16] ? c : NULL;
}

/* the fixed blocks' copies (qpw_fix) after the sums and the checks, int32 from the layout's
 * start (pn: the call's positions rounded up to 16); their entries cq pn after that */
#define QPW_FIX_MAX 8 /* a fixed block's byte pairs moved in at most */
static inline long qpw_fixoff(long cq, long pn) { return 2 * cq * pn + 2 * pn; }

/* the accumulator's start of channel oc: its bias (less 128 x its weights' sum where the
 * activations are biased to u8) */
static inline int32_t qpw_init(const qpw_int8_args *a, long oc) {
    int32_t b = a->bias ? a->bias[oc] : 0;
    return QPW_ZERO ? b - 128 * a->wsum[oc] : b;
}

/* -- the epilogue ---------------------------------------------------------------------------- */

/* conv_int8.c's fastq: where the float32 quotient rounds as the reference's (see there) */
typedef struct {
    int on;
    float eps, zs, lo, hi;
} qpw_fast;

static qpw_fast qpw_fast_setup(const qpw_int8_args *a) {
    qpw_fast f = {0, 0.0f, 0.0f, -200.0f, 200.0f};
    const double s = a->oscale;
    if (!(s > 0.0) || !(s < 1e30)) return f;
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

/* one output as the reference computes it: y = float32(double(acc) * mult) (acc holds the
 * bias), + float32(zq) * zscale, the activation in float32 (a float32 output: y), then
 * rint(double(y) / s) saturated (qpw_exact) */
static float qpw_y(const qpw_int8_args *a, int32_t acc, long oc, long pos) {
    float y = (float)((double)acc * a->mult[oc]);
    if (a->residual) {
        float z = (float)a->z[oc * a->zcs + pos] * a->zscale;
        __asm__("" : "+m"(z)); /* two roundings, as the reference's */
        y = y + z;
    }
    if (a->act == EI_ACT_RELU)
        y = y > 0.0f ? y : 0.0f;
    else if (a->act == EI_ACT_CLIP) {
        y = y > a->p0 ? y : a->p0;
        y = y < a->p1 ? y : a->p1;
    }
    return y;
}

static int8_t qpw_exact(const qpw_int8_args *a, int32_t acc, long oc, long pos) {
    const float y = qpw_y(a, acc, oc, pos);
    double q = rint((double)y / a->oscale);
    return (int8_t)(q < -128.0 ? -128 : q > 127.0 ? 127 : q);
}

/* -- AVX-512 VNNI ------------------------------------------------------------------------- */

#ifdef QPW_VNNI
/* n (<= 16) outputs of channel oc from positions pos on, every one exactly */
static void qpw_exact16(const qpw_int8_args *a, __m512i acc, long oc, long pos, long n) {
    int32_t v[16];
    _mm512_storeu_si512(v, acc);
    for (long j = 0; j < n; j++) a->out[oc * a->ocs + pos + j] = qpw_exact(a, v[j], oc, pos + j);
}

/* the NV vectors of channel oc's row at positions pos .. (n in the last vector): the fast
 * epilogue's integers (a lane near a half: the exact one) packed to one row of bytes
 * (vpackssdw, vpacksswb: 128-bit lane l holds dword l of each vector, then the 4 x 4 dwords
 * transposed), one store */
static inline __attribute__((always_inline)) void qpw_row(const qpw_int8_args *a,
                                                        const qpw_fast *f, const int32_t *mem,
                                                        float m, long oc, long pos, long n,
                                                        const int NV) {
    __m512i acc[4];
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) acc[v] = _mm512_load_si512(mem + 16 * v);
    if (!f->on || m == 0.0f) {
        for (int v = 0; v < NV; v++)
            qpw_exact16(a, acc[v], oc, pos + 16 * v, v == NV - 1 ? n : 16);
        return;
    }
    const __m512 vm = _mm512_set1_ps(m), lo = _mm512_set1_ps(f->lo), hi = _mm512_set1_ps(f->hi);
    const __m512 lim = _mm512_set1_ps(0.5f - f->eps);
    __m512i r[4] = {acc[0], acc[0], acc[0], acc[0]};
#pragma GCC unroll 4
    for (int v = 0; v < NV; v++) {
        __m512 t = _mm512_mul_ps(_mm512_cvtepi32_ps(acc[v]), vm);
        if (a->residual) {
            const __mmask16 mz = v == NV - 1 && n < 16 ? (__mmask16)((1u << n) - 1) : 0xffff;
            __m128i zb = _mm_maskz_loadu_epi8(mz, a->z + oc * a->zcs + pos + 16 * v);
            __m512 z = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(zb)),
                                     _mm512_set1_ps(f->zs));
            t = _mm512_add_ps(t, z);
        }
        t = _mm512_min_ps(_mm512_max_ps(t, lo), hi);
        __m512 d = _mm512_reduce_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        __mmask16 near = _mm512_cmp_ps_mask(_mm512_abs_ps(d), lim, _CMP_GT_OQ) &
                         (v == NV - 1 && n < 16 ? (__mmask16)((1u << n) - 1) : (__mmask16)0xffff);
        r[v] = _mm512_cvt_roundps_epi32(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        if (__builtin_expect(near != 0, 0)) { /* those lanes exactly */
            int32_t q[16], s[16];
            _mm512_storeu_si512(q, r[v]);
            _mm512_storeu_si512(s, acc[v]);
            for (int j = 0; j < 16; j++)
                if (near >> j & 1) q[j] = qpw_exact(a, s[j], oc, pos + 16 * v + j);
            r[v] = _mm512_loadu_si512(q);
        }
    }
    __m512i b = _mm512_packs_epi16(_mm512_packs_epi32(r[0], r[1]), _mm512_packs_epi32(r[2], r[3]));
    b = _mm512_permutexvar_epi32(
        _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), b);
    int8_t *o = a->out + oc * a->ocs + pos;
    if (n == 16 && NV == 4) {
        _mm512_storeu_si512(o, b);
    } else if (n == 16 && NV == 2) {
        _mm256_storeu_si256((__m256i *)o, _mm512_castsi512_si256(b));
    } else if (n == 16 && NV == 1) {
        _mm_storeu_si128((__m128i *)o, _mm512_castsi512_si128(b));
    } else {
        long len = 16 * (NV - 1) + n;
        __mmask64 mo = len >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << len) - 1);
        _mm512_mask_storeu_epi8(o, mo, b);
    }
}

/* a tile: channels oc0 .. oc0 + MR - 1 (the first `rows` stored) x NV vectors of positions
 * from layout column j0 (output position q0 + j0); n: positions of the last vector */
static inline __attribute__((always_inline)) void qpw_tile(const qpw_int8_args *a,
                                                         const qpw_fast *f, const float *fm,
                                                         const int32_t *init,
                                                         const uint32_t *buf, long pn, long j0,
                                                         long oc0, long rows, long nlast,
                                                         const int MR, const int NV) {
    const long cq = (a->cin + 3) / 4;
    __m512i acc[16][4];
    const int32_t *w = a->wts + oc0;
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++) {
        __m512i s = _mm512_set1_epi32(init[i]);
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[i][v] = s;
    }
    const uint32_t *x = buf + j0;
    for (long t = 0; t < cq; t++, x += pn, w += a->coutp) {
        __m512i xv[4];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) xv[v] = _mm512_loadu_si512(x + 16 * v);
#pragma GCC unroll 16
        for (int i = 0; i < MR; i++) {
            __m512i wb = _mm512_set1_epi32(w[i]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[i][v] = _mm512_dpbusd_epi32(acc[i][v], xv[v], wb);
        }
    }
    /* through memory: the epilogue inlined here would keep the accumulators there */
    int32_t mem[16 * 64] __attribute__((aligned(64)));
#pragma GCC unroll 16
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) _mm512_store_si512(mem + i * 64 + 16 * v, acc[i][v]);
    for (int i = 0; i < MR; i++) {
        if (i >= rows) break;
        qpw_row(a, f, mem + i * 64, fm[i], oc0 + i, a->q0 + j0, nlast, NV);
    }
}

#define QPW_TILES(MR, NV)                                                                      \
    static __attribute__((noinline)) void qpw_tile_##MR##x##NV(                                \
        const qpw_int8_args *a, const qpw_fast *f, const float *fm, const int32_t *init,       \
        const uint32_t *buf, long pn, long j0, long oc0, long rows, long nlast) {              \
        qpw_tile(a, f, fm, init, buf, pn, j0, oc0, rows, nlast, MR, NV);                       \
    }
QPW_TILES(6, 4)
QPW_TILES(8, 3)
QPW_TILES(12, 2)
QPW_TILES(16, 1)

/* the last positions of a call, fewer than a vector (a 7 x 7 map: 49 = 3 x 16 + 1), as tiles
 * with vectors along output channels instead: up to 4 positions (a short group repeats its
 * last) x OV vectors of 16 channels from oc0 (the weight rows readable 16 channels past the
 * call's last), each position's quad broadcast; the outputs stored channel by channel */
#define QPW_OC_TAIL 4 /* at most this many positions (measured on 7 x 7 maps: 9 cost about
                       * as much as a vector of positions) */
static inline __attribute__((always_inline)) void qpw_octile(const qpw_int8_args *a,
                                                           const qpw_fast *f, const uint32_t *buf,
                                                           long pn, long j0, long np, long oc0,
                                                           const int OV) {
    const long cq = (a->cin + 3) / 4, noc = a->oc1 - oc0 < 16 * OV ? a->oc1 - oc0 : 16 * OV;
    int32_t init[64];
    float fm[64];
    for (long i = 0; i < 16 * OV; i++) {
        double q = i < noc ? a->mult[oc0 + i] / a->oscale : 0.0;
        fm[i] = fabs(q) < 1e20 ? (float)q : 0.0f; /* NaN: 0 too */
        init[i] = i < noc ? qpw_init(a, oc0 + i) : 0;
    }
    long js[4];
    for (int p = 0; p < 4; p++) js[p] = j0 + (p < np ? p : np - 1);
    __m512i acc[4][4];
#pragma GCC unroll 4
    for (int v = 0; v < OV; v++) {
        __m512i s = _mm512_loadu_si512(init + 16 * v);
#pragma GCC unroll 4
        for (int p = 0; p < 4; p++) acc[p][v] = s;
    }
    const int32_t *w = a->wts + oc0;
    const uint32_t *x = buf;
    for (long t = 0; t < cq; t++, x += pn, w += a->coutp) {
        __m512i wv[4];
#pragma GCC unroll 4
        for (int v = 0; v < OV; v++) wv[v] = _mm512_loadu_si512(w + 16 * v);
#pragma GCC unroll 4
        for (int p = 0; p < 4; p++) {
            __m512i b = _mm512_set1_epi32((int)x[js[p]]);
#pragma GCC unroll 4
            for (int v = 0; v < OV; v++) acc[p][v] = _mm512_dpbusd_epi32(acc[p][v], b, wv[v]);
        }
    }
    int32_t mem[4 * 64] __attribute__((aligned(64)));
#pragma GCC unroll 4
    for (int p = 0; p < 4; p++)
#pragma GCC unroll 4
        for (int v = 0; v < OV; v++) _mm512_store_si512(mem + p * 64 + 16 * v, acc[p][v]);
    const __m512 lo = _mm512_set1_ps(f->lo), hi = _mm512_set1_ps(f->hi);
    const __m512 lim = _mm512_set1_ps(0.5f - f->eps);
    for (long p = 0; p < np; p++) {
        const long pos = a->q0 + j0 + p;
        for (long v = 0; v < OV && 16 * v < noc; v++) {
            const long c0 = oc0 + 16 * v, nc = noc - 16 * v < 16 ? noc - 16 * v : 16;
            __m512i av = _mm512_load_si512(mem + p * 64 + 16 * v);
            int32_t q[16], s[16];
            __mmask16 exact = (__mmask16)0xffff;
            if (f->on) {
                __m512 t = _mm512_mul_ps(_mm512_cvtepi32_ps(av), _mm512_loadu_ps(fm + 16 * v));
                if (a->residual) {
                    int32_t zt[16] = {0};
                    for (long j = 0; j < nc; j++) zt[j] = a->z[(c0 + j) * a->zcs + pos];
                    __m512 z = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_loadu_si512(zt)),
                                             _mm512_set1_ps(f->zs));
                    t = _mm512_add_ps(t, z);
                }
                t = _mm512_min_ps(_mm512_max_ps(t, lo), hi);
                __m512 d = _mm512_reduce_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                exact = _mm512_cmp_ps_mask(_mm512_abs_ps(d), lim, _CMP_GT_OQ) |
                        _mm512_cmp_ps_mask(_mm512_loadu_ps(fm + 16 * v), _mm512_setzero_ps(),
                                           _CMP_EQ_OQ);
                _mm512_storeu_si512(q, _mm512_cvt_roundps_epi32(
                                           t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
            }
            _mm512_storeu_si512(s, av);
            for (long j = 0; j < nc; j++) {
                int8_t b = exact >> j & 1 ? qpw_exact(a, s[j], c0 + j, pos)
                                          : (int8_t)(q[j] < -128 ? -128 : q[j] > 127 ? 127 : q[j]);
                a->out[(c0 + j) * a->ocs + pos] = b;
            }
        }
    }
}

static __attribute__((noinline)) void qpw_oc_tail(const qpw_int8_args *a, const qpw_fast *f,
                                                  const uint32_t *buf, long pn, long j0,
                                                  long n) {
    for (long p0 = j0; p0 < n; p0 += 4) {
        const long np = n - p0 < 4 ? n - p0 : 4;
        long oc0 = a->oc0;
        for (; a->oc1 - oc0 > 48; oc0 += 64) qpw_octile(a, f, buf, pn, p0, np, oc0, 4);
        for (; oc0 < a->oc1; oc0 += 16) qpw_octile(a, f, buf, pn, p0, np, oc0, 1);
    }
}

static void qpw_gemm(const qpw_int8_args *a, const qpw_fast *f, const uint32_t *buf, long pn,
                     int neg) {
    (void)neg;
    const long all = a->q1 - a->q0, r = all % 16;
    const long n = r && r <= QPW_OC_TAIL ? all - r : all; /* by position vectors */
    if (n < all) qpw_oc_tail(a, f, buf, pn, n, all);
    float fm[16];
    int32_t init[16];
    for (long j0 = 0; j0 < n; j0 += 64) {
        const long m = n - j0 < 64 ? n - j0 : 64, nv = (m + 15) / 16, nlast = m - 16 * (nv - 1);
        const long mr = nv == 4 ? 6 : nv == 3 ? 8 : nv == 2 ? 12 : 16;
        for (long oc0 = a->oc0; oc0 < a->oc1; oc0 += mr) {
            const long rows = a->oc1 - oc0 < mr ? a->oc1 - oc0 : mr;
            for (long i = 0; i < 16; i++) {
                long oc = oc0 + i;
                double q = i < rows ? a->mult[oc] / a->oscale : 0.0;
                fm[i] = fabs(q) < 1e20 ? (float)q : 0.0f; /* NaN: 0 too */
                init[i] = i < rows ? qpw_init(a, oc) : 0;
            }
            if (nv == 4)
                qpw_tile_6x4(a, f, fm, init, buf, pn, j0, oc0, rows, nlast);
            else if (nv == 3)
                qpw_tile_8x3(a, f, fm, init, buf, pn, j0, oc0, rows, nlast);
            else if (nv == 2)
                qpw_tile_12x2(a, f, fm, init, buf, pn, j0, oc0, rows, nlast);
            else
                qpw_tile_16x1(a, f, fm, init, buf, pn, j0, oc0, rows, nlast);
        }
    }
}
#elif defined(QPW_AVX2)
/* -- AVX2 (no VNNI) -------------------------------------------------------------------------
 * Tiles of QPW_MR output channels x NV (1 or 2) vectors of 8 positions, the layout read in
 * place (plain s8 quads) and each weight quad broadcast from the tile's panel (QPW_PANEL);
 * the dot product as conv_int8.c's AVX2 tiles: vpmaddubsw then vpmaddwd with ones to int32,
 * with x read as u8 where the call's activations are all non-negative (after a relu: a pair
 * is at most 2 x 127 x 128 = 32512, any weight), else |x| . (w * sign(x)) where no weight of the
 * layer is -128 (the sign row after the weights, cpu_qpointwise.py: a pair at most
 * 2 x 128 x 127; on the strips' blocks that pass qpw_check, (w + 128) . x instead, the biased
 * weights as vpmaddubsw's u8 operand: as many multiplies as u8 activations, no vpsignb), else
 * bytes sign-extended to int16 and vpmaddwd (every product exact). The
 * epilogue on 8-lane vectors: a proved channel (the rows after the weights, tactics/
 * qdw_requant.py's proof, as conv_int8.c's) clamp(rint(float(acc) * vmq), lo, hi) with no
 * check; else the fast one (conv_int8.c's fast8) with the lanes near a half redone exactly. */
#define QPW_MR 4       /* output channels of a tile */
#define QPW_FM_MAX 1024 /* output channels whose fast multipliers a pass keeps on the stack */
/* QPW_SIGNA: QPW_SIGN with |x| read from the layout's copy (qpw_abs); QPW_BIASED: (w + 128) . x
 * from the biased quads (a block that passed qpw_check) */
enum { QPW_UBS, QPW_SIGN, QPW_WIDE, QPW_UBS2, QPW_SIGNA, QPW_BIASED };

/* the accumulators of a tile (init: each channel's start) to mem [MR][16] */
static inline __attribute__((always_inline)) void qpw_dots(const uint32_t *x, long pn, long cq,
                                                         const int32_t *w, long ws,
                                                         const int32_t *init, int32_t *mem,
                                                         long aoff, const int32_t *cs,
                                                         const int NV, const int KIND) {
    __m256i acc[QPW_MR][2];
    const __m256i ones = _mm256_set1_epi16(1);
#pragma GCC unroll 4
    for (int i = 0; i < QPW_MR; i++)
#pragma GCC unroll 2
        for (int v = 0; v < NV; v++)
            acc[i][v] = KIND == QPW_BIASED /* less 128 x each position's activations' sum */
                            ? _mm256_add_epi32(_mm256_set1_epi32(init[i]),
                                               _mm256_loadu_si256((const __m256i *)(cs + 8 * v)))
                            : _mm256_set1_epi32(init[i]);
    for (long t = 0; t < cq; t++, x += pn, w += ws) {
        __m256i xv[2], ax[2];
#pragma GCC unroll 2
        for (int v = 0; v < NV; v++) {
            xv[v] = _mm256_loadu_si256((const __m256i *)(x + 8 * v));
            if (KIND == QPW_SIGN) ax[v] = _mm256_abs_epi8(xv[v]); /* -128: read as u8 128 */
            if (KIND == QPW_SIGNA) ax[v] = _mm256_loadu_si256((const __m256i *)(x + aoff + 8 * v));
        }
#pragma GCC unroll 4
        for (int i = 0; i < QPW_MR; i++) {
            const __m256i wb = _mm256_set1_epi32(w[i]);
#pragma GCC unroll 2
            for (int v = 0; v < NV; v++) {
                const __m256i p = KIND == QPW_SIGN || KIND == QPW_SIGNA
                                      ? _mm256_maddubs_epi16(ax[v], _mm256_sign_epi8(wb, xv[v]))
                                  : KIND == QPW_BIASED ? _mm256_maddubs_epi16(wb, xv[v])
                                                       : _mm256_maddubs_epi16(xv[v], wb);
                acc[i][v] = _mm256_add_epi32(acc[i][v], _mm256_madd_epi16(p, ones));
            }
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < QPW_MR; i++)
#pragma GCC unroll 2
        for (int v = 0; v < NV; v++)
            _mm256_store_si256((__m256i *)(mem + 16 * i + 8 * v), acc[i][v]);
}

/* qpw_dots of a block that passed qpw_check (QPW_BIASED: wb the biased quads, cs its sums
 * x -128), or that qpw_fix fixed (fx its copy, e its entries): the copy's biased products,
 * then w . r of each byte pair moved in */
static inline __attribute__((always_inline)) void qpw_dots_biased(
    const uint32_t *x, long pn, long cq, const int32_t *w, const int32_t *wb, long ws,
    const int32_t *init, int32_t *mem, const int32_t *cs, const uint32_t *fx, const int32_t *e) {
    qpw_dots(fx ? fx : x, fx ? 16 : pn, cq, wb, ws, init, mem, 0, cs, 2, QPW_BIASED);
    for (int t = 0; fx && t < e[0]; t++) {
        const long qb = e[1 + 2 * t], j = e[2 + 2 * t] & 15, r = e[2 + 2 * t] >> 8;
        const int8_t *wt = (const int8_t *)w + (qb >> 2) * ws * 4 + (qb & 3);
        for (int i = 0; i < QPW_MR; i++) mem[16 * i + j] += wt[4 * i] * (int32_t)r;
    }
}

/* qpw_dots on u8 activations (QPW_UBS) with the quads in the panel's order (ord, after
 * cpu_qpointwise.py's sign row: T2, then the cq quads' order), the first T2 two at a time: the
 * two quads' int16 pair sums added before one vpmaddwd, 3 multiplies for 64 products, not 4
 * (conv_int8.c tile_shift8's terms2), exact where the 4 weights of each byte pair of the two
 * quads hold activations in [0, 127] in int16 (pair_terms checked every channel of the panel) */
static inline __attribute__((always_inline)) void qpw_dots_pair(const uint32_t *x, long pn,
                                                              const int32_t *w, long ws,
                                                              const int32_t *ord,
                                                              const int32_t *init,
                                                              int32_t *mem, long cq) {
    __m256i acc[QPW_MR][2];
    const __m256i ones = _mm256_set1_epi16(1);
    const long T2 = ord[0];
    ord++;
#pragma GCC unroll 4
    for (int i = 0; i < QPW_MR; i++) acc[i][0] = acc[i][1] = _mm256_set1_epi32(init[i]);
    long p = 0;
    for (; p + 2 <= T2; p += 2) {
        const long ta = ord[p], tb = ord[p + 1];
        const uint32_t *xa = x + ta * pn, *xb = x + tb * pn;
        const int32_t *wa = w + ta * ws, *wb = w + tb * ws;
        const __m256i xa0 = _mm256_loadu_si256((const __m256i *)xa);
        const __m256i xa1 = _mm256_loadu_si256((const __m256i *)(xa + 8));
        const __m256i xb0 = _mm256_loadu_si256((const __m256i *)xb);
        const __m256i xb1 = _mm256_loadu_si256((const __m256i *)(xb + 8));
#pragma GCC unroll 4
        for (int i = 0; i < QPW_MR; i++) {
            const __m256i ba = _mm256_set1_epi32(wa[i]), bb = _mm256_set1_epi32(wb[i]);
            acc[i][0] = _mm256_add_epi32(
                acc[i][0], _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(xa0, ba),
                                                              _mm256_maddubs_epi16(xb0, bb)),
                                             ones));
            acc[i][1] = _mm256_add_epi32(
                acc[i][1], _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(xa1, ba),
                                                              _mm256_maddubs_epi16(xb1, bb)),
                                             ones));
        }
    }
    for (; p < cq; p++) {
        const long t = ord[p];
        const uint32_t *xt = x + t * pn;
        const int32_t *wt = w + t * ws;
        const __m256i x0 = _mm256_loadu_si256((const __m256i *)xt);
        const __m256i x1 = _mm256_loadu_si256((const __m256i *)(xt + 8));
#pragma GCC unroll 4
        for (int i = 0; i < QPW_MR; i++) {
            const __m256i b = _mm256_set1_epi32(wt[i]);
            acc[i][0] = _mm256_add_epi32(acc[i][0],
                                         _mm256_madd_epi16(_mm256_maddubs_epi16(x0, b), ones));
            acc[i][1] = _mm256_add_epi32(acc[i][1],
                                         _mm256_madd_epi16(_mm256_maddubs_epi16(x1, b), ones));
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < QPW_MR; i++)
#pragma GCC unroll 2
        for (int v = 0; v < 2; v++)
            _mm256_store_si256((__m256i *)(mem + 16 * i + 8 * v), acc[i][v]);
}

/* the same where a weight is -128 and an activation negative: each vector's 4 + 4 positions
 * sign-extended to int16, vpmaddwd with the weight quad as int16, the pairs added at the end
 * (conv_int8.c's tile8) */
static __attribute__((noinline)) void qpw_dots_wide(const uint32_t *x, long pn, long cq,
                                                    const int32_t *w, long ws,
                                                    const int32_t *init, int32_t *mem, long nv) {
    for (long v = 0; v < nv; v++)
        for (long i = 0; i < QPW_MR; i++) {
            __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
            for (long t = 0; t < cq; t++) {
                const __m256i xv = _mm256_loadu_si256((const __m256i *)(x + t * pn + 8 * v));
                const __m256i b = _mm256_cvtepi8_epi16(_mm_set1_epi32(w[t * ws + i]));
                lo = _mm256_add_epi32(
                    lo, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_castsi256_si128(xv)), b));
                hi = _mm256_add_epi32(
                    hi, _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm256_extracti128_si256(xv, 1)), b));
            }
            __m256i s = _mm256_permute4x64_epi64(_mm256_hadd_epi32(lo, hi), 0xD8);
            s = _mm256_add_epi32(s, _mm256_set1_epi32(init[i]));
            _mm256_store_si256((__m256i *)(mem + 16 * i + 8 * v), s);
        }
}

/* n (<= 8 NV) outputs of channel oc from positions pos on: m its fast multiplier (0: every
 * output exactly), pv its proved one (0: none) */
static inline __attribute__((always_inline)) void qpw_row(const qpw_int8_args *a,
                                                        const qpw_fast *f, const int32_t *acc,
                                                        float m, float pv, float plo,
                                                        float phi, long oc, long pos, long n,
                                                        const int NV, __m256i *rq) {
    __m256i r[2];
    if (pv != 0.0f) {
#pragma GCC unroll 2
        for (int v = 0; v < NV; v++) {
            const __m256 y = _mm256_cvtepi32_ps(_mm256_load_si256((const __m256i *)(acc + 8 * v)));
            __m256 t = _mm256_max_ps(_mm256_mul_ps(y, _mm256_set1_ps(pv)), _mm256_set1_ps(plo));
            r[v] = _mm256_cvtps_epi32(_mm256_min_ps(t, _mm256_set1_ps(phi)));
        }
    } else if (m != 0.0f) {
        const __m256 lo = _mm256_set1_ps(f->lo), hi = _mm256_set1_ps(f->hi);
        const __m256 lim = _mm256_set1_ps(0.5f - f->eps);
#pragma GCC unroll 2
        for (int v = 0; v < NV; v++) {
            const __m256 y = _mm256_cvtepi32_ps(_mm256_load_si256((const __m256i *)(acc + 8 * v)));
            __m256 t = _mm256_mul_ps(y, _mm256_set1_ps(m));
            const long nv = n - 8 * v < 8 ? n - 8 * v : 8; /* this vector's outputs */
            if (a->residual) {
                const int8_t *zp = a->z + oc * a->zcs + pos + 8 * v;
                __m128i zb;
                if (nv == 8) {
                    zb = _mm_loadl_epi64((const __m128i *)zp);
                } else {
                    int8_t zt[8] = {0};
                    memcpy(zt, zp, nv > 0 ? (size_t)nv : 0);
                    zb = _mm_loadl_epi64((const __m128i *)zt);
                }
                t = _mm256_add_ps(t, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(zb)),
                                                   _mm256_set1_ps(f->zs)));
            }
            t = _mm256_min_ps(_mm256_max_ps(t, lo), hi);
            const __m256 rt = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            const __m256 d = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), _mm256_sub_ps(t, rt));
            const int near = _mm256_movemask_ps(_mm256_cmp_ps(d, lim, _CMP_GT_OQ)) &
                             (nv >= 8 ? 0xff : nv > 0 ? (1 << nv) - 1 : 0);
            r[v] = _mm256_cvtps_epi32(rt);
            if (__builtin_expect(near != 0, 0)) { /* those lanes exactly */
                int32_t q[8];
                _mm256_storeu_si256((__m256i *)q, r[v]);
                for (int j = 0; j < 8; j++)
                    if (near >> j & 1) q[j] = qpw_exact(a, acc[8 * v + j], oc, pos + 8 * v + j);
                r[v] = _mm256_loadu_si256((const __m256i *)q);
            }
        }
    } else {
        int32_t q[16] = {0};
        for (long j = 0; j < n; j++) q[j] = qpw_exact(a, acc[j], oc, pos + j);
        r[0] = _mm256_loadu_si256((const __m256i *)q);
        r[1] = _mm256_loadu_si256((const __m256i *)(q + 8));
    }
    if (rq) { /* the caller packs and stores */
        rq[0] = r[0], rq[1] = r[1];
        return;
    }
    /* integers in [-200, 200]: saturated to int8 by the packs */
    int8_t *o = a->out + oc * a->ocs + pos;
    __m128i b;
    if (NV == 2) {
        const __m256i p = _mm256_permute4x64_epi64(_mm256_packs_epi32(r[0], r[1]), 0xD8);
        b = _mm_packs_epi16(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
    } else {
        const __m128i h = _mm_packs_epi32(_mm256_castsi256_si128(r[0]),
                                          _mm256_extracti128_si256(r[0], 1));
        b = _mm_packs_epi16(h, h);
    }
    if (n == 16) {
        _mm_storeu_si128((__m128i *)o, b);
    } else if (n == 8) {
        _mm_storel_epi64((__m128i *)o, b);
    } else {
        int8_t t[16];
        _mm_storeu_si128((__m128i *)t, b);
        memcpy(o, t, (size_t)n);
    }
}

/* qpw_row of a float32 output (otype 1): y = float32(double(acc) * mult) then the activation,
 * as the reference (relu: y > 0 ? y : 0 is vmaxps(y, 0); clip likewise) */
static inline __attribute__((always_inline)) void qpw_row_f32(const qpw_int8_args *a,
                                                            const int32_t *acc, long oc,
                                                            long pos, long n, const int NV) {
    float *o = (float *)a->out + oc * a->ocs + pos;
    if (a->residual) { /* (not bound: cpu_qpointwise.py) */
        for (long j = 0; j < n; j++) o[j] = qpw_y(a, acc[j], oc, pos + j);
        return;
    }
    const __m256d m = _mm256_set1_pd(a->mult[oc]);
#pragma GCC unroll 2
    for (int v = 0; v < NV; v++) {
        const __m256i iv = _mm256_load_si256((const __m256i *)(acc + 8 * v));
        const __m128 lo = _mm256_cvtpd_ps(
            _mm256_mul_pd(_mm256_cvtepi32_pd(_mm256_castsi256_si128(iv)), m));
        const __m128 hi = _mm256_cvtpd_ps(
            _mm256_mul_pd(_mm256_cvtepi32_pd(_mm256_extracti128_si256(iv, 1)), m));
        __m256 y = _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);
        if (a->act == EI_ACT_RELU) {
            y = _mm256_max_ps(y, _mm256_setzero_ps());
        } else if (a->act == EI_ACT_CLIP) {
            y = _mm256_min_ps(_mm256_max_ps(y, _mm256_set1_ps(a->p0)), _mm256_set1_ps(a->p1));
        }
        const long nv = n - 8 * v;
        if (nv >= 8) {
            _mm256_storeu_ps(o + 8 * v, y);
        } else if (nv > 0) {
            float t[8];
            _mm256_storeu_ps(t, y);
            memcpy(o + 8 * v, t, 4 * (size_t)nv);
        }
    }
}

/* qpw_row's fast epilogue with a residual for QPW_MR whole rows of 16 positions (every fm[i]
 * nonzero): the same float32 operations without a branch, r the integers; nonzero where a
 * lane is near a half (the caller then runs qpw_row on every row) */
static inline __attribute__((always_inline)) int qpw_res_rows(const qpw_int8_args *a,
                                                            const qpw_fast *f,
                                                            const int32_t *mem, const float *fm,
                                                            long oc, long pos, __m256i r[][2]) {
    const __m256 lo = _mm256_set1_ps(f->lo), hi = _mm256_set1_ps(f->hi);
    const __m256 lim = _mm256_set1_ps(0.5f - f->eps), zs = _mm256_set1_ps(f->zs);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 near = _mm256_setzero_ps();
    const int8_t *zp = a->z + oc * a->zcs + pos;
#pragma GCC unroll 4
    for (int i = 0; i < QPW_MR; i++, zp += a->zcs) {
        const __m256 m = _mm256_set1_ps(fm[i]);
#pragma GCC unroll 2
        for (int v = 0; v < 2; v++) {
            const __m256 y =
                _mm256_cvtepi32_ps(_mm256_load_si256((const __m256i *)(mem + 16 * i + 8 * v)));
            const __m256 z = _mm256_cvtepi32_ps(
                _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(zp + 8 * v))));
            __m256 t = _mm256_add_ps(_mm256_mul_ps(y, m), _mm256_mul_ps(z, zs));
            t = _mm256_min_ps(_mm256_max_ps(t, lo), hi);
            const __m256 rt = _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            near = _mm256_or_ps(
                near, _mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_sub_ps(t, rt)), lim, _CMP_GT_OQ));
            r[i][v] = _mm256_cvtps_epi32(rt);
        }
    }
    return _mm256_movemask_ps(near);
}

/* a tile: channels oc .. oc + rows - 1 (rows <= MR) x the n (<= 8 NV) positions from layout
 * column j0; fm: the fast multipliers of channels oc on */
static inline __attribute__((always_inline)) void qpw_tile(const qpw_int8_args *a,
                                                         const qpw_fast *f, const float *fm,
                                                         const uint32_t *buf, long pn, long j0,
                                                         long oc, long rows, long n,
                                                         const int NV, const int KIND) {
    const long cq = (a->cin + 3) / 4;
    int32_t init[QPW_MR];
    for (long i = 0; i < QPW_MR; i++) init[i] = i < rows ? qpw_init(a, oc + i) : 0;
    int32_t mem[QPW_MR * 16] __attribute__((aligned(32)));
    const uint32_t *x = buf + (pn == 16 ? j0 * cq : j0); /* pn: the row stride (qpw_rs) */
    const long pnc = (a->q1 - a->q0 + 15) / 16 * 16;
    const int32_t *chk = KIND == QPW_SIGNA && NV == 2 ? qpw_checks(a, buf) : NULL;
    if (KIND == QPW_WIDE) {
        qpw_dots_wide(x, pn, cq, qpw_wq(a, oc), QPW_WS(a), init, mem, NV);
    } else if (chk && chk[j0 / 16]) { /* (a float32 output's tiles: no strips there) */
        const uint32_t *fixc = buf + qpw_fixoff(cq, pnc);
        qpw_dots_biased(x, pn, cq, qpw_wq(a, oc), qpw_wq(a, oc) + qpw_boff(a), QPW_WS(a), init,
                        mem, chk - pnc + j0, chk[j0 / 16] == 2 ? fixc + j0 * cq : NULL,
                        (const int32_t *)fixc + cq * pnc + j0 / 16 * (1 + 2 * QPW_FIX_MAX));
    } else {
        qpw_dots(x, pn, cq, qpw_wq(a, oc), QPW_WS(a), init, mem, qpw_aoff(a), NULL, NV, KIND);
    }
    if (a->otype) {
        for (long i = 0; i < rows; i++) qpw_row_f32(a, mem + 16 * i, oc + i, a->q0 + j0, n, NV);
        return;
    }
    const float *pv = (const float *)(a->wts + cq * a->coutp) + oc;
    const long cp = a->coutp;
    if (NV == 2 && KIND != QPW_WIDE && rows == QPW_MR && n == 16) { /* most tiles: unrolled */
        __m256i r[QPW_MR][2];
        /* a residual: the rows at once, no branch (a lane near a half: row by row) */
        const int lean = a->residual && f->on && fm[0] != 0.0f && fm[1] != 0.0f &&
                         fm[2] != 0.0f && fm[3] != 0.0f;
        if (!lean || __builtin_expect(qpw_res_rows(a, f, mem, fm, oc, a->q0 + j0, r), 0)) {
#pragma GCC unroll 4
            for (long i = 0; i < QPW_MR; i++) {
                const float v = a->residual ? 0.0f : pv[i];
                qpw_row(a, f, mem + 16 * i, fm[i], v, pv[cp + i], pv[2 * cp + i], oc + i,
                        a->q0 + j0, 16, NV, r[i]);
            }
        }
        /* two rows a store pair: dwords (row i 0-3, 8-11, row i + 1 0-3, 8-11 | 4-7, 12-15
         * likewise) put in order by one vpermd */
        const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        const long ocs = a->ocs;
        int8_t *o = a->out + oc * ocs + a->q0 + j0;
#pragma GCC unroll 2
        for (long i = 0; i < QPW_MR; i += 2) {
            const __m256i b = _mm256_permutevar8x32_epi32(
                _mm256_packs_epi16(_mm256_packs_epi32(r[i][0], r[i][1]),
                                   _mm256_packs_epi32(r[i + 1][0], r[i + 1][1])),
                order);
            _mm_storeu_si128((__m128i *)(o + i * ocs), _mm256_castsi256_si128(b));
            _mm_storeu_si128((__m128i *)(o + (i + 1) * ocs), _mm256_extracti128_si256(b, 1));
        }
        return;
    }
    for (long i = 0; i < rows; i++) {
        const float v = a->residual ? 0.0f : pv[i];
        qpw_row(a, f, mem + 16 * i, fm[i], v, pv[cp + i], pv[2 * cp + i], oc + i,
                a->q0 + j0, n, NV, NULL);
    }
}

/* -- strips: a tile's whole blocks of 16 positions in one call -------------------------------
 * Where a tile has QPW_MR rows and its blocks 16 positions each (nearly all of a layer), one
 * call runs the tile over a group's blocks (qpw_gemm), its constants set up once per pass
 * (qpw_pass), and requantizes without qpw_tile's per-row tests. Three epilogues:
 * QPW_EPI_PROVED, every row proved (no residual) with a multiplier at most 64 (|acc| < 2^24
 * where proved: float(acc) x vmq within int32): rint(float(acc) x vmq) by vcvtps2dq, packed
 * with saturation to int8, then clamped to the row's byte bounds [plo, phi] on the bytes: plo
 * and phi integers in [-128, 127], rint and the clamp commute, so these are qpw_row's bytes
 * rint(clamp(float(acc) x vmq, plo, phi)).
 * QPW_EPI_FAST / QPW_EPI_RES (a residual), every fm nonzero: qpw_row's fast float32 operations,
 * the largest |t - rint(t)| of the tile kept by vmaxps and compared once; a tile with a lane
 * near a half is redone from its accumulators by qpw_row (qpw_rows_slow). */
enum { QPW_EPI_PROVED, QPW_EPI_FAST, QPW_EPI_RES };
#define QPW_PROVED_MAX 64.0f
#define QPW_TILES_MAX (QPW_FM_MAX / QPW_MR + 1)
#define QPW_STRIP_X 16384 /* a strip's blocks of layout on the blocked layout, bytes (qpw_gemm):
                          * at least one block (from 256 quads on) */

/* a pass's channels (from c0) as the strips read them */
typedef struct {
    float em[QPW_FM_MAX + QPW_MR]; /* each channel's multiplier: vmq (proved tiles) or fm */
    int32_t init[QPW_FM_MAX + QPW_MR]; /* its accumulator's start (qpw_init) */
    int32_t blo[QPW_TILES_MAX], bhi[QPW_TILES_MAX]; /* a proved tile's byte bounds, row i byte i */
    signed char epi[QPW_TILES_MAX]; /* each tile's epilogue, -1: none (qpw_tile) */
} qpw_pass;

/* qpw_tile's epilogue of a whole tile (QPW_MR rows x 16 positions) from its accumulators */
static __attribute__((noinline)) void qpw_rows_slow(const qpw_int8_args *a, const qpw_fast *f,
                                                    const int32_t *mem, const float *fm,
                                                    long oc, long pos) {
    const long cp = a->coutp;
    const float *pv = (const float *)(a->wts + (a->cin + 3) / 4 * cp) + oc;
    for (long i = 0; i < QPW_MR; i++) {
        const float v = a->residual ? 0.0f : pv[i];
        qpw_row(a, f, mem + 16 * i, fm[i], v, pv[cp + i], pv[2 * cp + i], oc + i, pos, 16, 2,
                NULL);
    }
}

/* the pass's constants of channels c0 .. c1 - 1 (fm: their fast multipliers) */
static void qpw_pass_setup(const qpw_int8_args *a, const qpw_fast *f, const float *fm, long c0,
                           long c1, qpw_pass *P) {
    const long cp = a->coutp;
    const float *pv = (const float *)(a->wts + (a->cin + 3) / 4 * cp);
    for (long oc = c0; oc < c1; oc++) P->init[oc - c0] = qpw_init(a, oc);
    for (long k = 0; c0 + QPW_MR * k < c1; k++) {
        const long oc = c0 + QPW_MR * k;
        int proved = !a->residual && !a->otype && oc + QPW_MR <= c1;
        uint32_t lo4 = 0, hi4 = 0;
        for (long i = 0; i < QPW_MR && proved; i++) {
            const float v = pv[oc + i], lo = pv[cp + oc + i], hi = pv[2 * cp + oc + i];
            proved = v > 0.0f && v <= QPW_PROVED_MAX && lo >= -128.0f && hi <= 127.0f &&
                     lo <= hi && lo == (float)(int)lo && hi == (float)(int)hi;
            if (proved) {
                lo4 |= (uint32_t)(uint8_t)(int8_t)(int)lo << (8 * i);
                hi4 |= (uint32_t)(uint8_t)(int8_t)(int)hi << (8 * i);
            }
        }
        int fast = f->on && !a->otype && oc + QPW_MR <= c1;
        for (long i = 0; i < QPW_MR && fast; i++) fast = fm[oc - c0 + i] != 0.0f;
        P->epi[k] = (signed char)(proved  ? QPW_EPI_PROVED
                                  : !fast ? -1
                                  : a->residual ? QPW_EPI_RES
                                                : QPW_EPI_FAST);
        P->blo[k] = (int32_t)lo4, P->bhi[k] = (int32_t)hi4;
        for (long i = 0; i < QPW_MR && oc + i < c1; i++)
            P->em[oc - c0 + i] = proved ? pv[oc + i] : fm[oc - c0 + i];
    }
}

/* the tile of channels oc .. oc + QPW_MR - 1 (pass channel k = oc - c0) over layout columns
 * j0 .. j1 - 1 (whole blocks of 16 positions), the epilogue EPI */
static inline __attribute__((always_inline)) void qpw_strip(const qpw_int8_args *a,
                                                          const qpw_fast *f, const float *fm,
                                                          const qpw_pass *P, long k,
                                                          const uint32_t *buf, long pn,
                                                          long j0, long j1, long oc,
                                                          const int KIND, const int EPI) {
    const long cq = (a->cin + 3) / 4, ocs = a->ocs;
    const float *em = P->em + k;
    const int32_t *w0 = qpw_wq(a, oc);
    const long ws = QPW_WS(a);
    /* signed: each block's check (qpw_check, 0: none) and the biased quads */
    const int32_t *chk = KIND == QPW_SIGN || KIND == QPW_SIGNA ? qpw_checks(a, buf) : NULL;
    const int32_t *wb0 = chk ? w0 + qpw_boff(a) : NULL;
    const long pnc = (a->q1 - a->q0 + 15) / 16 * 16;
    const int32_t *csum = chk ? chk - pnc : NULL; /* x -128 */
    const uint32_t *fixc = buf + qpw_fixoff(cq, pnc);
    const int32_t *fix = (const int32_t *)fixc + cq * pnc;
    int8_t *o = a->out + oc * ocs + a->q0;
    /* vpshufb: row 2p's byte in the low lane, row 2p + 1's in the high lane */
    static const int8_t pick[2][32] = {
        {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
         1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
        {2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
         3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3}};
    /* software-pipelined: a block's epilogue after the next block's dots, so that its chain
     * (the accumulators' reload, conversions, packs, stores) has its inputs ready and overlaps
     * the next dots instead of waiting on the dots just before it */
    int32_t mems[2][QPW_MR * 16] __attribute__((aligned(32)));
    for (long jn = j0, c = 0; jn <= j1; jn += 16, c ^= 1) {
        if (jn < j1) {
            const uint32_t *x = buf + (pn == 16 ? jn * cq : jn); /* pn: the row stride */
            if (KIND == QPW_UBS2) /* the panel's pairing, after the sign row */
                qpw_dots_pair(x, pn, w0, ws, a->wts + (cq + 4) * a->coutp + oc / 16 * (cq + 1),
                              P->init + k, mems[c], cq);
            else if (KIND == QPW_SIGN && chk && chk[jn / 16])
                qpw_dots(x, pn, cq, wb0, ws, P->init + k, mems[c], 0, csum + jn, 2, QPW_BIASED);
            else if (KIND == QPW_SIGNA && chk && chk[jn / 16]) /* fixed blocks too */
                qpw_dots_biased(x, pn, cq, w0, wb0, ws, P->init + k, mems[c], csum + jn,
                                chk[jn / 16] == 2 ? fixc + jn * cq : NULL,
                                fix + jn / 16 * (1 + 2 * QPW_FIX_MAX));
            else
                qpw_dots(x, pn, cq, w0, ws, P->init + k, mems[c], qpw_aoff(a), NULL, 2, KIND);
        }
        /* the accumulators through memory and the epilogue's constants read after the dots:
         * held in registers across the loop (GCC hoists the constants) they left the dot loop
         * too few registers, and it spilled accumulators or reloaded x for every channel */
        __asm__ volatile("" : : "r"(mems) : "memory");
        if (jn == j0) continue;
        const long j = jn - 16;
        const int32_t *mem = mems[c ^ 1];
        __m256i r[QPW_MR][2];
        if (EPI == QPW_EPI_PROVED) {
#pragma GCC unroll 4
            for (int i = 0; i < QPW_MR; i++)
#pragma GCC unroll 2
                for (int v = 0; v < 2; v++)
                    r[i][v] = _mm256_cvtps_epi32(_mm256_mul_ps(
                        _mm256_cvtepi32_ps(_mm256_load_si256((const __m256i *)(mem + 16 * i + 8 * v))),
                        _mm256_set1_ps(em[i])));
        } else {
            const __m256 lo = _mm256_set1_ps(f->lo), hi = _mm256_set1_ps(f->hi);
            const __m256 sign = _mm256_set1_ps(-0.0f);
            __m256 dmax = _mm256_setzero_ps();
            const int8_t *zp = EPI == QPW_EPI_RES ? a->z + oc * a->zcs + a->q0 + j : NULL;
#pragma GCC unroll 4
            for (int i = 0; i < QPW_MR; i++) {
#pragma GCC unroll 2
                for (int v = 0; v < 2; v++) {
                    __m256 t = _mm256_mul_ps(
                        _mm256_cvtepi32_ps(_mm256_load_si256((const __m256i *)(mem + 16 * i + 8 * v))),
                        _mm256_set1_ps(em[i]));
                    if (EPI == QPW_EPI_RES) {
                        const __m256 z = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(
                            _mm_loadl_epi64((const __m128i *)(zp + i * a->zcs + 8 * v))));
                        t = _mm256_add_ps(t, _mm256_mul_ps(z, _mm256_set1_ps(f->zs)));
                    }
                    t = _mm256_min_ps(_mm256_max_ps(t, lo), hi);
                    const __m256 rt =
                        _mm256_round_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                    dmax = _mm256_max_ps(dmax, _mm256_andnot_ps(sign, _mm256_sub_ps(t, rt)));
                    r[i][v] = _mm256_cvtps_epi32(rt);
                }
            }
            if (__builtin_expect(_mm256_movemask_ps(_mm256_cmp_ps(
                                     dmax, _mm256_set1_ps(0.5f - f->eps), _CMP_GT_OQ)),
                                 0)) { /* a lane near a half: the tile by qpw_row */
                qpw_rows_slow(a, f, mem, fm, oc, a->q0 + j);
                continue;
            }
        }
        /* two rows a store pair, as qpw_tile's */
        const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
#pragma GCC unroll 2
        for (int p = 0; p < 2; p++) {
            __m256i b = _mm256_permutevar8x32_epi32(
                _mm256_packs_epi16(_mm256_packs_epi32(r[2 * p][0], r[2 * p][1]),
                                   _mm256_packs_epi32(r[2 * p + 1][0], r[2 * p + 1][1])),
                order);
            if (EPI == QPW_EPI_PROVED) {
                const __m256i m = _mm256_loadu_si256((const __m256i *)pick[p]);
                b = _mm256_max_epi8(b, _mm256_shuffle_epi8(_mm256_set1_epi32(P->blo[k / QPW_MR]), m));
                b = _mm256_min_epi8(b, _mm256_shuffle_epi8(_mm256_set1_epi32(P->bhi[k / QPW_MR]), m));
            }
            _mm_storeu_si128((__m128i *)(o + 2 * p * ocs + j), _mm256_castsi256_si128(b));
            _mm_storeu_si128((__m128i *)(o + (2 * p + 1) * ocs + j),
                             _mm256_extracti128_si256(b, 1));
        }
    }
}

#define QPW_STRIPS(KIND, EPI)                                                                  \
    static __attribute__((noinline)) void qpw_strip_##KIND##_##EPI(                            \
        const qpw_int8_args *a, const qpw_fast *f, const float *fm, const qpw_pass *P, long k, \
        const uint32_t *buf, long pn, long j0, long j1, long oc) {                             \
        qpw_strip(a, f, fm, P, k, buf, pn, j0, j1, oc, KIND, EPI);                             \
    }
QPW_STRIPS(QPW_UBS, QPW_EPI_PROVED)
QPW_STRIPS(QPW_UBS, QPW_EPI_FAST)
QPW_STRIPS(QPW_UBS, QPW_EPI_RES)
QPW_STRIPS(QPW_SIGN, QPW_EPI_PROVED)
QPW_STRIPS(QPW_SIGN, QPW_EPI_FAST)
QPW_STRIPS(QPW_SIGN, QPW_EPI_RES)
QPW_STRIPS(QPW_SIGNA, QPW_EPI_PROVED)
QPW_STRIPS(QPW_SIGNA, QPW_EPI_FAST)
QPW_STRIPS(QPW_SIGNA, QPW_EPI_RES)
QPW_STRIPS(QPW_UBS2, QPW_EPI_PROVED)
QPW_STRIPS(QPW_UBS2, QPW_EPI_FAST)
QPW_STRIPS(QPW_UBS2, QPW_EPI_RES)

/* the tile of channels oc on (pass channel k) over whole blocks j0 .. j1 - 1 by a strip; 0
 * where none applies (the caller runs qpw_tile) */
static inline int qpw_strip_run(const qpw_int8_args *a, const qpw_fast *f, const float *fm,
                                const qpw_pass *P, long k, const uint32_t *buf, long pn,
                                long j0, long j1, long oc, int kind) {
    const int epi = P->epi[k / QPW_MR];
    if (epi < 0 || kind == QPW_WIDE) return 0;
#define QPW_STRIP_CALL(KIND, EPI) qpw_strip_##KIND##_##EPI(a, f, fm, P, k, buf, pn, j0, j1, oc)
#define QPW_STRIP_EPI(KIND)                                                                      \
    do {                                                                                         \
        if (epi == QPW_EPI_PROVED)                                                               \
            QPW_STRIP_CALL(KIND, QPW_EPI_PROVED);                                                \
        else if (epi == QPW_EPI_FAST)                                                            \
            QPW_STRIP_CALL(KIND, QPW_EPI_FAST);                                                  \
        else                                                                                     \
            QPW_STRIP_CALL(KIND, QPW_EPI_RES);                                                   \
    } while (0)
    if (kind == QPW_UBS2)
        QPW_STRIP_EPI(QPW_UBS2);
    else if (kind == QPW_UBS)
        QPW_STRIP_EPI(QPW_UBS);
    else if (kind == QPW_SIGNA)
        QPW_STRIP_EPI(QPW_SIGNA);
    else
        QPW_STRIP_EPI(QPW_SIGN);
#undef QPW_STRIP_EPI
#undef QPW_STRIP_CALL
    return 1;
}

/* one output as qpw_row computes it, scalar (the same float32 operations) */
static inline int8_t qpw_one(const qpw_int8_args *a, const qpw_fast *f, int32_t acc, float m,
                             float pv, float plo, float phi, long oc, long pos) {
    if (pv != 0.0f) {
        float t = (float)acc * pv;
        t = t > plo ? t : plo;
        t = t < phi ? t : phi;
        return (int8_t)(int)rintf(t);
    }
    if (m == 0.0f) return qpw_exact(a, acc, oc, pos);
    float t = (float)acc * m;
    if (a->residual) t = t + (float)a->z[oc * a->zcs + pos] * f->zs;
    t = t > f->lo ? t : f->lo;
    t = t < f->hi ? t : f->hi;
    const float r = rintf(t);
    if (fabsf(t - r) > 0.5f - f->eps) return qpw_exact(a, acc, oc, pos);
    return (int8_t)(r < -128.0f ? -128 : r > 127.0f ? 127 : (int)r);
}

/* the last np (<= QPW_OC_TAIL) positions of a call from layout column j0, by vectors of 8
 * output channels (each position's quad broadcast, 8 channels' quads one load from their
 * panel): channels c0 .. c1 - 1 (whole panels: the weights readable past c1), outputs one by
 * one */
#define QPW_OC_TAIL 2 /* at most this many positions (a 7 x 7 map: 49 = 3 x 16 + 1) */
static __attribute__((noinline)) void qpw_oc_tail(const qpw_int8_args *a, const qpw_fast *f,
                                                  const float *fm, const uint32_t *buf, long pn,
                                                  long j0, long np, long c0, long c1,
                                                  int kind) {
    const long cq = (a->cin + 3) / 4, cp = a->coutp;
    const float *pv = (const float *)(a->wts + cq * cp);
    const __m256i ones = _mm256_set1_epi16(1);
    for (long oc = c0; oc < c1; oc += 16) {
        __m256i acc[QPW_OC_TAIL][2];
        for (int p = 0; p < QPW_OC_TAIL; p++) acc[p][0] = acc[p][1] = _mm256_setzero_si256();
        const int32_t *w = qpw_wq(a, oc); /* 16 channels: one panel */
        const long ws = QPW_WS(a);
        const uint32_t *x = buf + (pn == 16 ? j0 * cq : j0); /* pn: the row stride (qpw_rs) */
        if (kind == QPW_WIDE) { /* int16 products, quad by quad (rare) */
            for (long t = 0; t < cq; t++, w += ws, x += pn)
                for (long p = 0; p < np; p++)
                    for (int v = 0; v < 2; v++) {
                        const __m256i wv = _mm256_loadu_si256((const __m256i *)(w + 8 * v));
                        const __m256i xb = _mm256_set1_epi32((int)x[p]);
                        const __m256i lo = _mm256_madd_epi16(
                            _mm256_srai_epi16(_mm256_slli_epi16(xb, 8), 8),
                            _mm256_srai_epi16(_mm256_slli_epi16(wv, 8), 8));
                        const __m256i hi =
                            _mm256_madd_epi16(_mm256_srai_epi16(xb, 8), _mm256_srai_epi16(wv, 8));
                        acc[p][v] = _mm256_add_epi32(acc[p][v], _mm256_add_epi32(lo, hi));
                    }
        } else {
            for (long t = 0; t < cq; t++, w += ws, x += pn) {
                const __m256i w0 = _mm256_loadu_si256((const __m256i *)w);
                const __m256i w1 = _mm256_loadu_si256((const __m256i *)(w + 8));
                for (long p = 0; p < np; p++) {
                    const __m256i xb = _mm256_set1_epi32((int)x[p]);
                    __m256i d0, d1;
                    if (kind == QPW_UBS) {
                        d0 = _mm256_maddubs_epi16(xb, w0), d1 = _mm256_maddubs_epi16(xb, w1);
                    } else {
                        const __m256i ax = _mm256_abs_epi8(xb);
                        d0 = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(w0, xb));
                        d1 = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(w1, xb));
                    }
                    acc[p][0] = _mm256_add_epi32(acc[p][0], _mm256_madd_epi16(d0, ones));
                    acc[p][1] = _mm256_add_epi32(acc[p][1], _mm256_madd_epi16(d1, ones));
                }
            }
        }
        for (long p = 0; p < np; p++) {
            int32_t s[16];
            _mm256_storeu_si256((__m256i *)s, acc[p][0]);
            _mm256_storeu_si256((__m256i *)(s + 8), acc[p][1]);
            const long pos = a->q0 + j0 + p;
            for (long i = 0; i < 16 && oc + i < c1; i++) {
                const long c = oc + i;
                if (a->otype) {
                    ((float *)a->out)[c * a->ocs + pos] = qpw_y(a, s[i] + qpw_init(a, c), c, pos);
                    continue;
                }
                const float v = a->residual ? 0.0f : pv[c];
                a->out[c * a->ocs + pos] = qpw_one(a, f, s[i] + qpw_init(a, c), fm[c - c0], v,
                                                  pv[cp + c], pv[2 * cp + c], c, pos);
            }
        }
    }
}

#define QPW_TILES(NV, KIND)                                                                    \
    static __attribute__((noinline)) void qpw_tile_##KIND##NV(                                 \
        const qpw_int8_args *a, const qpw_fast *f, const float *fm, const uint32_t *buf,       \
        long pn, long j0, long oc, long rows, long n) {                                        \
        qpw_tile(a, f, fm, buf, pn, j0, oc, rows, n, NV, KIND);                                \
    }
QPW_TILES(1, QPW_UBS)
QPW_TILES(2, QPW_UBS)
QPW_TILES(1, QPW_SIGN)
QPW_TILES(2, QPW_SIGN)
QPW_TILES(1, QPW_SIGNA)
QPW_TILES(2, QPW_SIGNA)
QPW_TILES(1, QPW_WIDE)
QPW_TILES(2, QPW_WIDE)

/* |x| of the layout's n int32 (n a multiple of 16) after them (qpw_aoff): each signed tile's
 * dot products read it instead of a vpabsb per quad and vector (4 channels); on the blocked
 * layout only (on the rows layout, MobileNetV2's 16 -> 96 at 112 x 112 and 24 -> 144 at
 * 56 x 56, the pass cost more than it saved: 1.015-1.03x) */
static void qpw_abs(uint32_t *buf, long n) {
    for (long j = 0; j < n; j += 8)
        _mm256_storeu_si256((__m256i *)(buf + n + j),
                            _mm256_abs_epi8(_mm256_loadu_si256((const __m256i *)(buf + j))));
}

/* a block that failed qpw_check with at most QPW_FIX_MAX and cq / 4 byte pairs past
 * [-128, 128] (each costs the strips' tiles 4 scalar multiply-adds): its quads copied
 * (blocked, [cq][16], at qpw_fixoff) with each such pair's first byte moved in by r
 * (x1 - r + x2 = +-128), the r kept (the entries after the copies: their count, then quad x 4
 * + byte and position + 256 r each) for the strip to add w . r to those accumulators, and the
 * block's sums x -128 (cs) those of the copy. 2 where so, else 0 (the block by
 * |x| . (w * sign(x))) */
static __attribute__((noinline)) int qpw_fix(uint32_t *buf, long cq, long pn, long b, long rs,
                                             long bs, int32_t *cs) {
    const uint32_t *x = buf + b * bs;
    int32_t *copy = (int32_t *)buf + qpw_fixoff(cq, pn) + b * 16 * cq;
    int32_t *ent = (int32_t *)buf + qpw_fixoff(cq, pn) + cq * pn + b * (1 + 2 * QPW_FIX_MAX);
    const __m256i one8 = _mm256_set1_epi8(1);
    const __m256i hi = _mm256_set1_epi16(128), lo = _mm256_set1_epi16(-128);
    int n = 0;
    int32_t sum[16]; /* the block's positions' sums x -128, moved in by 128 r */
    memcpy(sum, cs, sizeof sum);
    for (long q = 0; q < cq; q++, x += rs) {
        for (int v = 0; v < 2; v++) {
            const __m256i xv = _mm256_loadu_si256((const __m256i *)(x + 8 * v));
            _mm256_storeu_si256((__m256i *)(copy + q * 16 + 8 * v), xv);
            const __m256i p = _mm256_maddubs_epi16(one8, xv);
            unsigned m = (unsigned)_mm256_movemask_epi8(
                _mm256_or_si256(_mm256_cmpgt_epi16(p, hi), _mm256_cmpgt_epi16(lo, p)));
            for (; m; m &= m - 1) {
                const int l = __builtin_ctz(m) / 2, j = 8 * v + l / 2, h = l % 2;
                m &= m - 1; /* (two bits a lane) */
                if (n == QPW_FIX_MAX || 4 * (n + 1) > cq) return 0;
                const uint32_t w = (uint32_t)copy[q * 16 + j];
                const int x1 = (int8_t)(w >> (16 * h)), x2 = (int8_t)(w >> (16 * h + 8));
                const int t = x1 + x2, r = t > 128 ? t - 128 : t + 128;
                ent[1 + 2 * n] = (int32_t)(q * 4 + 2 * h);
                ent[2 + 2 * n] = j + 256 * r;
                n++;
                const uint32_t b1 = (uint32_t)(uint8_t)(x1 - r) << (16 * h);
                copy[q * 16 + j] = (int32_t)((w & ~(0xffu << (16 * h))) | b1);
                sum[j] += 128 * r;
            }
        }
    }
    ent[0] = n;
    memcpy(cs, sum, sizeof sum);
    return 2;
}

/* on signed activations where the layer has biased quads (the sign row's second column): for
 * each block of 16 positions, whether every byte pair of its quads sums to [-128, 128] (then
 * no int16 pair sum of (w + 128) . x saturates: |x1 a1 + x2 a2| <= 255 x 128 for a in
 * [0, 255] where x1, x2 have one sign, else <= 128 x 255), and each position's activations'
 * sum x -128 (the biased products' correction); after the layout and its |x| (qpw_checks),
 * the sums [pn], the checks [pn / 16] (1: passed, 2: fixed by qpw_fix, 0: neither) and a
 * last int32 nonzero where any block passed */
static void qpw_check(const qpw_int8_args *a, uint32_t *buf, long pn) {
    const long cq = (a->cin + 3) / 4, rs = qpw_rs(cq, pn), bs = rs == 16 ? 16 * cq : 16;
    int32_t *cs = (int32_t *)buf + 2 * cq * pn, *chk = cs + pn;
    const __m256i one8 = _mm256_set1_epi8(1), one16 = _mm256_set1_epi16(1);
    const __m256i hi = _mm256_set1_epi16(128), lo = _mm256_set1_epi16(-128);
    int any = 0;
    for (long b = 0; b < pn / 16; b++) {
        const uint32_t *x = buf + b * bs;
        __m256i s0 = _mm256_setzero_si256(), s1 = s0, bad = s0;
        for (long q = 0; q < cq; q++, x += rs) {
            const __m256i p0 = _mm256_maddubs_epi16(one8, _mm256_loadu_si256((const __m256i *)x));
            const __m256i p1 =
                _mm256_maddubs_epi16(one8, _mm256_loadu_si256((const __m256i *)(x + 8)));
            bad = _mm256_or_si256(bad, _mm256_or_si256(_mm256_cmpgt_epi16(p0, hi),
                                                       _mm256_cmpgt_epi16(lo, p0)));
            bad = _mm256_or_si256(bad, _mm256_or_si256(_mm256_cmpgt_epi16(p1, hi),
                                                       _mm256_cmpgt_epi16(lo, p1)));
            s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(p0, one16));
            s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(p1, one16));
        }
        chk[b] = !_mm256_movemask_epi8(bad);
        const __m256i zero = _mm256_setzero_si256();
        _mm256_storeu_si256((__m256i *)(cs + 16 * b),
                            _mm256_slli_epi32(_mm256_sub_epi32(zero, s0), 7));
        _mm256_storeu_si256((__m256i *)(cs + 16 * b + 8),
                            _mm256_slli_epi32(_mm256_sub_epi32(zero, s1), 7));
        any |= chk[b];
    }
    /* the failed blocks that a few byte pairs moved in let pass (the blocked layout only: on
     * the rows layout the fixes cost more than they saved) */
    for (long b = 0; b < pn / 16 && cq >= QPW_BLOCK_CQ; b++)
        if (!chk[b]) {
            chk[b] = qpw_fix(buf, cq, pn, b, rs, bs, cs + 16 * b);
            any |= chk[b];
        }
    chk[pn / 16] = any;
}

static void qpw_gemm(const qpw_int8_args *a, const qpw_fast *f, uint32_t *buf, long pn,
                     int neg) {
    const long cq = (a->cin + 3) / 4, all = a->q1 - a->q0;
    /* the sign row, after the proved ones: nonzero where no weight of the layer is -128 */
    const int wsafe = a->wts[(cq + 3) * a->coutp] != 0;
    const int kind = !neg ? QPW_UBS : !wsafe ? QPW_WIDE : qpw_aoff(a) ? QPW_SIGNA : QPW_SIGN;
    if (kind == QPW_SIGNA) qpw_abs(buf, qpw_aoff(a));
    if (kind == QPW_SIGN || kind == QPW_SIGNA) {
        if (a->wts[(cq + 3) * a->coutp + 1] && (!a->otype || kind == QPW_SIGNA))
            qpw_check(a, buf, pn);
        else
            ((int32_t *)buf)[2 * cq * pn + pn + pn / 16] = 0;
    }
    pn = qpw_rs(cq, pn); /* from here the layout's row stride (the tiles' pn) */
    float fm[QPW_FM_MAX + QPW_MR];
    qpw_pass P;
    /* strips on any number of quads: on ResNet-50's 256 input channels (64 quads) 0.94-0.97x
     * the tiles, on 512-2048 0.99-1.01x (the epilogue a small part there); before the
     * pipelined strips (0c27d47) 1.0-1.06x on 512 and 1024 */
    const int strips = !a->otype && kind != QPW_WIDE;
    const int32_t *pairs = a->wts + (cq + 4) * a->coutp; /* each panel's T2 and order */
    /* quads two at a time from 32 quads: on 16 (ResNet-50's 64 -> 64 and 64 -> 256 layers)
     * 1.02-1.03x, on 8 (MobileNetV2's 32 -> 16, rows layout) 1.06x */
    const int pair = kind == QPW_UBS && cq >= 32;
    for (long c0 = a->oc0; c0 < a->oc1; c0 += QPW_FM_MAX) {
        const long c1 = a->oc1 - c0 < QPW_FM_MAX ? a->oc1 : c0 + QPW_FM_MAX;
        for (long oc = c0; oc < c1; oc++) {
            double q = f->on ? a->mult[oc] / a->oscale : 0.0;
            fm[oc - c0] = fabs(q) < 1e20 ? (float)q : 0.0f; /* NaN: 0 too */
        }
        if (strips) qpw_pass_setup(a, f, fm, c0, c1, &P);
        /* a panel of 16 channels (its weights one after another, read once from memory
         * per call: in a model they come cold) over all the call's positions by groups of G
         * blocks of 16 positions, each of the panel's 4 tiles over the group's blocks. G 1
         * on the blocked layout (qpw_rs: the block's quads reused from L1 by the 4 tiles; G
         * as before the panels, 4 up to 64 quads, was 1.04x slower on ResNet-50's layers),
         * 16 on the rows (the tiles' output rows written 256 bytes at a time, a strip's
         * setup over 16 blocks; G 1 was 1.38x slower on MobileNetV2's signed 24 -> 144 layer
         * on 56 x 56, G 16 with the strips 0.95-0.98x G 4, 32 and 64 as 16) */
        const long G = !strips                 ? (cq >= QPW_BLOCK_CQ ? 1 : 4)
                       : cq < QPW_BLOCK_CQ     ? 16
                       : 64 * cq < QPW_STRIP_X ? QPW_STRIP_X / (64 * cq)
                                               : 1;
        for (long p0 = c0; p0 < c1; p0 += 16) {
            const long p1 = c1 - p0 < 16 ? c1 : p0 + 16;
            for (long g0 = 0; g0 < all; g0 += 16 * G) {
                const long g1 = all - g0 < 16 * G ? all : g0 + 16 * G;
                const long gw = g0 + (g1 - g0) / 16 * 16; /* the group's whole blocks */
                for (long oc = p0; oc < p1; oc += QPW_MR) {
                    const long rows = p1 - oc < QPW_MR ? p1 - oc : QPW_MR;
                    const float *m = fm + (oc - c0);
                    long j0 = g0;
                    if (strips && rows == QPW_MR && gw > g0 &&
                        qpw_strip_run(a, f, m, &P, oc - c0, buf, pn, g0, gw, oc,
                                      pair && pairs[oc / 16 * (cq + 1)] >= 2 ? QPW_UBS2
                                                                             : kind))
                        j0 = gw;
                    for (; j0 < g1; j0 += 16) {
                        const long n = g1 - j0 < 16 ? g1 - j0 : 16;
                        if (n <= QPW_OC_TAIL) continue;
                        if (kind == QPW_UBS && n > 8)
                            qpw_tile_QPW_UBS2(a, f, m, buf, pn, j0, oc, rows, n);
                        else if (kind == QPW_UBS)
                            qpw_tile_QPW_UBS1(a, f, m, buf, pn, j0, oc, rows, n);
                        else if (kind == QPW_SIGN && n > 8)
                            qpw_tile_QPW_SIGN2(a, f, m, buf, pn, j0, oc, rows, n);
                        else if (kind == QPW_SIGN)
                            qpw_tile_QPW_SIGN1(a, f, m, buf, pn, j0, oc, rows, n);
                        else if (kind == QPW_SIGNA && n > 8)
                            qpw_tile_QPW_SIGNA2(a, f, m, buf, pn, j0, oc, rows, n);
                        else if (kind == QPW_SIGNA)
                            qpw_tile_QPW_SIGNA1(a, f, m, buf, pn, j0, oc, rows, n);
                        else if (n > 8)
                            qpw_tile_QPW_WIDE2(a, f, m, buf, pn, j0, oc, rows, n);
                        else
                            qpw_tile_QPW_WIDE1(a, f, m, buf, pn, j0, oc, rows, n);
                    }
                }
                const long jt = (g1 - 1) / 16 * 16; /* a last block of at most QPW_OC_TAIL */
                if (g1 - jt <= QPW_OC_TAIL)
                    qpw_oc_tail(a, f, fm + (p0 - c0), buf, pn, jt, g1 - jt, p0, p1, kind);
            }
        }
    }
}
#else
/* -- plain C ---------------------------------------------------------------------------- */

static void qpw_gemm(const qpw_int8_args *a, const qpw_fast *f, const uint32_t *buf, long pn,
                     int neg) {
    (void)f, (void)neg;
    const long cq = (a->cin + 3) / 4, n = a->q1 - a->q0;
    for (long j0 = 0; j0 < n; j0 += 16) {
        const long m = n - j0 < 16 ? n - j0 : 16;
        for (long oc = a->oc0; oc < a->oc1; oc++) {
            int32_t acc[16];
            for (long j = 0; j < 16; j++) acc[j] = qpw_init(a, oc);
            for (long t = 0; t < cq; t++) {
                const uint32_t wq = (uint32_t)qpw_wq(a, oc)[t * QPW_WS(a)];
                const uint32_t *x = buf + t * pn + j0;
                for (int k = 0; k < 4; k++) {
                    const int32_t wk = (int8_t)(wq >> (8 * k));
                    for (long j = 0; j < 16; j++) acc[j] += (int8_t)(x[j] >> (8 * k)) * wk;
                }
            }
            int8_t *o = a->out + oc * a->ocs + a->q0 + j0;
            for (long j = 0; j < m; j++) o[j] = qpw_exact(a, acc[j], oc, a->q0 + j0 + j);
        }
    }
}
#endif

#ifndef QPW_AVX2
/* a float32 output (otype 1) where no vector path has one (cpu_qpointwise.py binds those on
 * the AVX2 path only): every output from the input, plain C */
static void qpw_f32_c(const qpw_int8_args *a) {
    float *out = (float *)a->out;
    for (long oc = a->oc0; oc < a->oc1; oc++)
        for (long pos = a->q0; pos < a->q1; pos++) {
            int32_t acc = a->bias ? a->bias[oc] : 0;
            for (long c = 0; c < a->cin; c++) {
                const uint32_t wq = (uint32_t)qpw_wq(a, oc)[c / 4 * QPW_WS(a)];
                acc += (int32_t)a->x[c * a->xcs + pos] * (int8_t)(wq >> (8 * (c % 4)));
            }
            out[oc * a->ocs + pos] = qpw_y(a, acc, oc, pos);
        }
}
#endif

/* positions [q0, q1) of output channels [oc0, oc1) of one image (a->buf: the call's own, with
 * pn = (q1 - q0) rounded up to 16, 2 (cin / 4) pn + 2 pn int32: the layout, its |x| (qpw_aoff),
 * the positions' sums and the blocks' checks (qpw_check)) */
void qpw_int8_f32(const qpw_int8_args *a) {
    if (a->q1 <= a->q0 || a->oc1 <= a->oc0) return;
#ifndef QPW_AVX2
    if (a->otype) {
        qpw_f32_c(a);
        return;
    }
#endif
    const long pn = (a->q1 - a->q0 + 15) / 16 * 16;
    uint32_t *buf = (uint32_t *)a->buf;
    const qpw_fast f = qpw_fast_setup(a);
    const int neg = qpw_layout(a, buf, pn);
    qpw_gemm(a, &f, buf, pn, neg);
}
EI_TASK(qpw_int8)
