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
EI_MAXPOOL_PLANE(maxpool_plane_s8, int8_t, -128)

void maxpool_s8_f32(const maxpool_s8_args *a) {
    long c = a->c;
    for (long p = 0; p < a->n * c; p++)
        maxpool_plane_s8((const int8_t *)a->x + (p / c) * a->xis + (p % c) * a->xcs,
                         (int8_t *)a->y + (p / c) * a->yis + (p % c) * a->ycs, a->h, a->w,
                         a->ho, a->wo, a->kh, a->kw, a->sy, a->sx, a->pt, a->pl, a->dy, a->dx);
}

EI_TASK(maxpool_s8)
