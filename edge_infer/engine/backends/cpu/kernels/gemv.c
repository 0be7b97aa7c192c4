/* Float32 matrix-vector products for dense layers with few rows (a classifier at batch 1):
 * out[m][n] = alpha * (x[m] . w[n]) + bias[m][n] for the output columns [n0, n1), w laid out
 * as rows of k (op(B) transposed once at bind). Memory-bound: each row of w is read once
 * for every row of x, four rows at a time; the pool splits the columns between threads.
 * gemv_packed: the same products on weights packed once at bind (constant B: a classifier).
 * Compiled on the device with conv_direct.c's flags (-march/-mcpu=native). */
#include "simd.h"

static inline float hsum(v8 v) {
    float s[8];
    store8(s, v);
    return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
}

/* r[j] = x . w[j] for four rows of w (row stride k) */
static void dot4(const float *x, const float *w, long k, float r[4]) {
    const float *w0 = w, *w1 = w + k, *w2 = w + 2 * k, *w3 = w + 3 * k;
    v8 a0 = splat(0.0f), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    long i = 0;
    for (; i + 16 <= k; i += 16) {
        v8 x0 = load8(x + i), x1 = load8(x + i + 8);
        a0 += load8(w0 + i) * x0;
        b0 += load8(w0 + i + 8) * x1;
        a1 += load8(w1 + i) * x0;
        b1 += load8(w1 + i + 8) * x1;
        a2 += load8(w2 + i) * x0;
        b2 += load8(w2 + i + 8) * x1;
        a3 += load8(w3 + i) * x0;
        b3 += load8(w3 + i + 8) * x1;
    }
    for (; i + 8 <= k; i += 8) {
        v8 x0 = load8(x + i);
        a0 += load8(w0 + i) * x0;
        a1 += load8(w1 + i) * x0;
        a2 += load8(w2 + i) * x0;
        a3 += load8(w3 + i) * x0;
    }
    r[0] = hsum(a0 + b0);
    r[1] = hsum(a1 + b1);
    r[2] = hsum(a2 + b2);
    r[3] = hsum(a3 + b3);
    for (; i < k; i++) {
        r[0] += w0[i] * x[i];
        r[1] += w1[i] * x[i];
        r[2] += w2[i] * x[i];
        r[3] += w3[i] * x[i];
    }
}

/* dot4 on packed rows (gemv_packed): four rows' 16-float chunks one after another, then
 * the four rows' last k % 16 values; the same sums in the same order as dot4 */
static void dot4_packed(const float *x, const float *p, long k, float r[4]) {
    v8 a0 = splat(0.0f), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    long i = 0;
    for (; i + 16 <= k; i += 16, p += 64) {
        v8 x0 = load8(x + i), x1 = load8(x + i + 8);
        a0 += load8(p) * x0;
        b0 += load8(p + 8) * x1;
        a1 += load8(p + 16) * x0;
        b1 += load8(p + 24) * x1;
        a2 += load8(p + 32) * x0;
        b2 += load8(p + 40) * x1;
        a3 += load8(p + 48) * x0;
        b3 += load8(p + 56) * x1;
    }
    const long t = k - i; /* the tails: p[j * t ..] for row j */
    const float *p0 = p, *p1 = p + t, *p2 = p + 2 * t, *p3 = p + 3 * t;
    long e = 0;
    if (t >= 8) {
        v8 x0 = load8(x + i);
        a0 += load8(p0) * x0;
        a1 += load8(p1) * x0;
        a2 += load8(p2) * x0;
        a3 += load8(p3) * x0;
        e = 8;
    }
    r[0] = hsum(a0 + b0);
    r[1] = hsum(a1 + b1);
    r[2] = hsum(a2 + b2);
    r[3] = hsum(a3 + b3);
    for (; e < t; e++) {
        r[0] += p0[e] * x[i + e];
        r[1] += p1[e] * x[i + e];
        r[2] += p2[e] * x[i + e];
        r[3] += p3[e] * x[i + e];
    }
}

static float dot1(const float *x, const float *w, long k) {
    v8 a = splat(0.0f);
    long i = 0;
    for (; i + 8 <= k; i += 8) a += load8(w + i) * load8(x + i);
    float r = hsum(a);
    for (; i < k; i++) r += w[i] * x[i];
    return r;
}

/* the output columns [n0, n1) four at a time, each group of w's rows (laid out as rows of k,
 * or packed: gemv_packed_f32) dotted with every row of x, then alpha and the bias */
static void gemv_columns(const gemv_args *a, int packed) {
    long k = a->k;
    for (long n = a->n0; n < a->n1; n += 4) {
        long cnt = a->n1 - n < 4 ? a->n1 - n : 4;
        const float *w = a->w + n * k;
        for (long m = 0; m < a->rows; m++) {
            const float *x = a->x + m * a->xrs;
            float r[4];
            if (packed) dot4_packed(x, w, k, r);
            else if (cnt == 4) dot4(x, w, k, r);
            else
                for (long j = 0; j < cnt; j++) r[j] = dot1(x, w + j * k, k);
            float *y = a->out + m * a->ors + n;
            const float *b = a->bias ? a->bias + m * a->brs + n : NULL;
            for (long j = 0; j < cnt; j++) y[j] = b ? r[j] * a->alpha + b[j] : r[j] * a->alpha;
        }
    }
}

void gemv_f32(const gemv_args *a) { gemv_columns(a, 0); }

EI_TASK(gemv)

/* gemv on w packed by groups of four rows (n rounded up to a multiple of 4 with zero rows):
 * group g at w + 4 g k holds, for each 16 columns, the four rows' 16 values one after
 * another, then the four rows' last k % 16 values. A thread's columns are then ONE forward
 * stream of memory, which the hardware prefetchers follow (rows of k are four streams that
 * restart every four rows: measured 2x slower once w is out of the caches). n0 is a
 * multiple of 4. */
void gemv_packed_f32(const gemv_packed_args *a) {
    /* the same fields (EI_GEMV_PACKED_ARGS is EI_GEMV_ARGS): copied, not type-punned */
    _Static_assert(sizeof(gemv_args) == sizeof(gemv_packed_args), "gemv's fields");
    gemv_args g;
    memcpy(&g, a, sizeof g);
    gemv_columns(&g, 1);
}

EI_TASK(gemv_packed)
