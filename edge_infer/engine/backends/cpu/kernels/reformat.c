/* Storage conversions of INT8 engines (edge_infer::Reformat, ops/quantize.py reformat) and
 * int8 data movement, bit for bit the reference's:
 *   int8 -> fp32 / fp16   float32(q) * float32(x_scale), then rounded to fp16 for fp16
 *   fp32 / fp16 -> int8   rint(double(x) / double(y_scale)), clipped (qsimd.h)
 *   int8 -> int8          both of the above (a rescale)
 *   fp32 <-> fp16         round to nearest even / exact
 * 8 values at a time, rows x n values with row strides (a channel slice of a concat). */
#include "qsimd.h"

static inline v8 load_kind(const void *x, long kind, long i, long n, float scale) {
    if (kind == EI_S8) return load_s8((const int8_t *)x + i, n) * scale;
    if (kind == EI_F16) return load_f16((const uint16_t *)x + i, n);
    return n == 8 ? load8((const float *)x + i) : load_fn((const float *)x + i, n);
}

void reformat_f32(const reformat_args *a) {
    static const long size[3] = {4, 2, 1};
    float rf = a->ykind == EI_S8 ? (float)(1.0 / a->yscale) : 0.0f;
    for (long row = 0; row < a->rows; row++) {
        const void *x = (const char *)a->x + row * a->xrs * size[a->xkind];
        void *y = (char *)a->y + row * a->yrs * size[a->ykind];
        for (long i = 0; i < a->n; i += 8) {
            long m = a->n - i < 8 ? a->n - i : 8;
            store_real(y, a->ykind, i, m, load_kind(x, a->xkind, i, m, a->xscale), a->yscale,
                       rf);
        }
    }
}

/* upsample_nearest_f32 (pointwise.c) on int8 planes */
void upsample_nearest_s8_f32(const upsample_nearest_s8_args *a) {
    const int8_t *x = (const int8_t *)a->x;
    int8_t *y = (int8_t *)a->y;
    long n = a->n, c = a->c, xis = a->xis, xcs = a->xcs, yis = a->yis, ycs = a->ycs;
    long h = a->h, w = a->w, fh = a->fh, fw = a->fw;
    long wo = w * fw;
    for (long p = 0; p < n * c; p++) {
        const int8_t *xp = x + (p / c) * xis + (p % c) * xcs;
        int8_t *yp = y + (p / c) * yis + (p % c) * ycs;
        for (long i = 0; i < h; i++) {
            int8_t *row = yp + i * fh * wo;
            const int8_t *src = xp + i * w;
            if (fw == 2) {
                for (long j = 0; j < w; j++) {
                    row[2 * j] = src[j];
                    row[2 * j + 1] = src[j];
                }
            } else {
                for (long j = 0; j < w; j++)
                    for (long k = 0; k < fw; k++) row[j * fw + k] = src[j];
            }
            for (long r = 1; r < fh; r++) memcpy(row + r * wo, row, (size_t)wo);
        }
    }
}

EI_TASK(reformat)
EI_TASK(upsample_nearest_s8)

/* maxpool_f32 (pointwise.c) on int8 planes, any N x C strides (channel slices of a concat);
 * a window always holds an input value (pads < kernel), so -128 stands for padding */
void maxpool_s8_f32(const maxpool_s8_args *a) {
    long n = a->n, c = a->c, h = a->h, w = a->w, ho = a->ho, wo = a->wo;
    long kh = a->kh, kw = a->kw, sy = a->sy, sx = a->sx, pt = a->pt, pl = a->pl;
    long dy = a->dy, dx = a->dx;
    for (long p = 0; p < n * c; p++) {
        const int8_t *xp = (const int8_t *)a->x + (p / c) * a->xis + (p % c) * a->xcs;
        int8_t *yp = (int8_t *)a->y + (p / c) * a->yis + (p % c) * a->ycs;
        for (long i = 0; i < ho; i++) {
            int8_t *row = yp + i * wo;
            for (long j = 0; j < wo; j++) row[j] = -128;
            for (long r0 = 0; r0 < kh; r0++) {
                long r = i * sy - pt + r0 * dy;
                if (r < 0 || r >= h) continue;
                const int8_t *src = xp + r * w;
                for (long b = 0; b < kw; b++) {
                    long off = b * dx - pl; /* column = j * sx + off */
                    long lo = off >= 0 ? 0 : (-off + sx - 1) / sx;
                    long hi = (w - 1 - off) >= 0 ? (w - 1 - off) / sx : -1;
                    if (hi > wo - 1) hi = wo - 1;
                    if (sx == 1) {
                        for (long j = lo; j <= hi; j++)
                            row[j] = src[j + off] > row[j] ? src[j + off] : row[j];
                    } else {
                        for (long j = lo; j <= hi; j++) {
                            int8_t v = src[j * sx + off];
                            row[j] = v > row[j] ? v : row[j];
                        }
                    }
                }
            }
        }
    }
}

EI_TASK(maxpool_s8)
