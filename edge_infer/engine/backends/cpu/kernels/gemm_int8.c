/* INT8 fully connected layer (edge_infer::QGemm, ops/quantize.py qgemm), bit for bit: for
 * each row m of X (int8 at x_scale) and output n, the exact int32 accumulator
 * sum_k x[m, k] * w[n, k] (int8 products widened to int32: the compiler's vector dot
 * products), then the reference's epilogue: float32((double(acc) + bias[n]) * mult[n]) with
 * mult[n] = x_scale * w_scale[n] in double, stored as fp32, fp16 or int8 (qsimd.h).
 * Outputs [n0, n1) of every row: the layer's threads split the outputs (the weights are
 * read once per row block). */
#include "qsimd.h"

static inline int dot_s8(const int8_t *a, const int8_t *b, long k) {
    int acc = 0;
    for (long i = 0; i < k; i++) acc += (int)a[i] * (int)b[i];
    return acc;
}

void qgemm_s8_f32(const qgemm_s8_args *a) {
    static const long size[3] = {4, 2, 1};
    const int8_t *x = (const int8_t *)a->x, *w = (const int8_t *)a->w;
    float rf = a->okind == EI_S8 ? (float)(1.0 / a->oscale) : 0.0f;
    for (long m = 0; m < a->rows; m++) {
        const int8_t *xr = x + m * a->xrs;
        void *orow = (char *)a->out + m * a->ors * size[a->okind];
        for (long n = a->n0; n < a->n1; n += 8) {
            long cnt = a->n1 - n < 8 ? a->n1 - n : 8;
            float y[8] = {0};
            for (long j = 0; j < cnt; j++) {
                double acc = (double)dot_s8(xr, w + (n + j) * a->k, a->k);
                if (a->bias) acc += (double)a->bias[n + j];
                y[j] = (float)(acc * a->mult[n + j]);
            }
            store_real(orow, a->okind, n, cnt, load8(y), a->oscale, rf);
        }
    }
}

EI_TASK(qgemm_s8)
