/* One direction of an ONNX LSTM over the whole sequence, in one call (the recurrent_native
 * tactic, tactics/cpu_recurrent.py; a bidirectional layer is two calls on two threads).
 *
 * Weights are packed at bind by hidden group: group g holds the gates i, o, f, c of hidden
 * units 8g .. 8g+7 (32 columns) as two halves of 16 columns (i, o and f, c), each half's
 * rows one after another, so a 16-column panel is contiguous (in L1 while a GEMM tile's
 * rows pass) and a group's 32 columns are all four gates of 8 units, the cell's input:
 *   wpack [hp/8][2][inputs][16]  W^T     rpack [hp/8][2][hidden][16]  R^T
 *   bias  [hp/8][32]          Wb + Rb    peep  [3][hp] (p_i, p_o, p_f) or NULL
 * (hp: hidden rounded up to 8; the padding units have zero weights and are never stored).
 *
 * 1. projection: proj[r] = x[r] W^T + bias for every row r of x (all steps and batch rows),
 *    one GEMM in tiles of 6 rows x 16 columns; proj's rows hold the groups' 32 columns;
 * 2. recurrence: per step, gates = proj[t, b] + h R^T, for a single row two groups at once
 *    (8 vectors), for more rows tiles of up to 6 rows x 16 columns, a group's two halves
 *    one after the other; then the cell in registers:
 *      i = s(clip(gi + p_i c)), f = s(clip(gf + p_f c)) or 1 - i (input_forget),
 *      c' = f c + i tanh(clip(gc)), o = s(clip(go + p_o c')), h' = o tanh(c');
 *    sequence_lens: row b is active at step t when t < lens[b]; an inactive row keeps its
 *    state and writes zeros to y; a row of length 0 ends in a zero state (as onnxruntime).
 *
 * Rows of x and proj: step t, batch row b is row t * pts + b * pbs. States h0, c0, yh, yc:
 * batch row b at b * sbs floats; y: y + t * yts + b * ybs. work: 3 * batch * hp floats. */
#include <string.h>

#include "simd.h"

#define GC 32 /* columns of a hidden group: 4 gates x 8 units */

/* acc[r][j] += sum over k < n of a[r * lda + k] * (gate vector q of group g at term k), j =
 * 4 g + q, group g at w + g * wgs, its half q / 2 (n x 16 floats) at + (q / 2) * 16 n: mr rows
 * by ng groups (constants where it is inlined: the loops unroll into registers) */
static inline __attribute__((always_inline)) void gate_tile(const float *a, long lda,
                                                            const float *w, long wgs, long n,
                                                            int mr, int ng, v8 acc[][8]) {
    for (long k = 0; k < n; k++) {
        v8 wv[8];
        for (int g = 0; g < ng; g++)
            for (int q = 0; q < 4; q++)
                wv[4 * g + q] = load8(w + g * wgs + (q >> 1) * 16 * n + k * 16 + 8 * (q & 1));
        for (int r = 0; r < mr; r++) {
            v8 s = splat(a[r * lda + k]);
            for (int j = 0; j < 4 * ng; j++) acc[r][j] += s * wv[j];
        }
    }
}

/* the 6 x 16 tile: acc[r][0..1] += sum over k < n of a[r * lda + k] * w[16 k .. +16] for mr
 * <= 6 rows (12 accumulators, 2 weight loads and 6 broadcasts per term) */
static inline __attribute__((always_inline)) void half_tile(const float *a, long lda,
                                                            const float *w, long n, int mr,
                                                            v8 acc[6][2]) {
    v8 t[6][2]; /* in registers: stores through acc might alias a and w */
    for (int r = 0; r < mr; r++) {
        t[r][0] = acc[r][0];
        t[r][1] = acc[r][1];
    }
    for (long k = 0; k < n; k++) {
        v8 w0 = in_reg(load8(w + k * 16)), w1 = in_reg(load8(w + k * 16 + 8));
        for (int r = 0; r < mr; r++) {
            v8 s = splat(a[r * lda + k]);
            t[r][0] += s * w0;
            t[r][1] += s * w1;
        }
    }
    for (int r = 0; r < mr; r++) {
        acc[r][0] = t[r][0];
        acc[r][1] = t[r][1];
    }
}

/* half_tile for a count of rows known only at run time: one copy of the tile per count,
 * shared by the projection and the recurrence (compile time) */
static __attribute__((noinline)) void half_tile_rows(const float *a, long lda, const float *w,
                                                     long n, int mr, v8 acc[6][2]) {
    switch (mr) {
    case 1: half_tile(a, lda, w, n, 1, acc); break;
    case 2: half_tile(a, lda, w, n, 2, acc); break;
    case 3: half_tile(a, lda, w, n, 3, acc); break;
    case 4: half_tile(a, lda, w, n, 4, acc); break;
    case 5: half_tile(a, lda, w, n, 5, acc); break;
    default: half_tile(a, lda, w, n, 6, acc); break;
    }
}

/* the projection tile: rows r0 .. r0+mr-1 (mr <= 6, stride `inputs`) by half h (gates i, o
 * or f, c) of group g, bias added first, into proj. The half's panel (inputs x 64 bytes,
 * contiguous) stays in L1 while every row block passes; a 3 x 32 tile over a group's 32 KB
 * (L1's size) ran at half the FMA rate (4 weight vectors per 3 broadcasts, folded into the
 * FMAs: 15 loads per 12 FMAs). Per output the same sum in the same order: bias, then term by
 * term. */
static void project_tile(const lstm_seq_args *a, long r0, long g, long h, int mr) {
    long gcols = 4 * a->hp, n = a->inputs;
    const float *x = a->x + r0 * n, *w = a->wpack + g * n * GC + 16 * n * h;
    v8 b0 = load8(a->bias + g * GC + 16 * h), b1 = load8(a->bias + g * GC + 16 * h + 8);
    v8 acc[6][2];
    for (int r = 0; r < mr; r++) {
        acc[r][0] = b0;
        acc[r][1] = b1;
    }
    half_tile_rows(x, n, w, n, mr, acc);
    for (int r = 0; r < mr; r++) {
        float *o = a->proj + (r0 + r) * gcols + g * GC + 16 * h;
        store8(o, acc[r][0]);
        store8(o + 8, acc[r][1]);
    }
}

static void project(const lstm_seq_args *a) {
    long groups = a->hp / 8;
    for (long g = 0; g < groups; g++)
        for (long h = 0; h < 2; h++) {
            for (long r0 = 0; r0 < a->rows; r0 += 6)
                project_tile(a, r0, g, h, a->rows - r0 < 6 ? (int)(a->rows - r0) : 6);
        }
}

static inline v8 sigmoid8(v8 x) { return 1.0f / (1.0f + vexp(-x)); }

/* tanh: Cephes' odd polynomial below |x| = 0.625 (no cancellation near 0), else
 * 1 - 2 / (exp(2|x|) + 1) with the sign of x */
static inline v8 tanh8(v8 x) {
    v8 ax = vmax(x, -x);
    v8 z = x * x;
    v8 p = -5.70498872745e-3f * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    v8 small = p * z * x + x;
    v8 big = 1.0f - 2.0f / (vexp(2.0f * ax) + 1.0f);
    big = vsel(x < 0.0f, -big, big);
    return vsel(ax < 0.625f, small, big);
}

static inline v8 clip8(v8 x, float clip) {
    return clip > 0.0f ? vmin(vmax(x, splat(-clip)), splat(clip)) : x;
}

/* n <= 8 floats of p into a vector (zeros after), and back */
static inline v8 loadn(const float *p, long n) {
    if (n >= 8) return load8(p);
    float t[8] = {0};
    memcpy(t, p, (size_t)n * sizeof(float));
    return load8(t);
}

static inline void storen(float *p, v8 v, long n) {
    if (n >= 8) {
        store8(p, v);
        return;
    }
    float t[8];
    store8(t, v);
    memcpy(p, t, (size_t)n * sizeof(float));
}

/* the cell of batch row b, group g, on its gate tile acc[0..3] (i, o, f, c): c in place,
 * h' into hn, and y; an inactive row copies its state and writes zeros */
static inline __attribute__((always_inline)) void cell(const lstm_seq_args *a, const v8 *acc,
                                                       long b, long g, long t, int active,
                                                       const float *hc, float *hn, float *c) {
    long j = 8 * g, hp = a->hp, n = a->hidden - j;
    float *cb = c + b * hp + j, *hb = hn + b * hp + j;
    float *y = a->y ? a->y + t * a->yts + b * a->ybs + j : NULL;
    if (!active) {
        store8(hb, load8(hc + b * hp + j));
        if (y) storen(y, splat(0.0f), n);
        return;
    }
    v8 gi = acc[0], go = acc[1], gf = acc[2], gc = acc[3];
    v8 cp = load8(cb);
    if (a->peep) {
        gi += load8(a->peep + j) * cp;
        gf += load8(a->peep + 2 * hp + j) * cp;
    }
    v8 i = sigmoid8(clip8(gi, a->clip));
    v8 f = a->input_forget ? 1.0f - i : sigmoid8(clip8(gf, a->clip));
    v8 cn = f * cp + i * tanh8(clip8(gc, a->clip));
    if (a->peep) go += load8(a->peep + hp + j) * cn;
    v8 h = sigmoid8(clip8(go, a->clip)) * tanh8(cn);
    store8(cb, cn);
    store8(hb, h);
    if (y) storen(y, h, n);
}

static inline int is_active(const lstm_seq_args *a, long t, long b) {
    return !a->lens || t < a->lens[b];
}

/* one step for batch row 0, groups g0 .. g0+ng-1 (ng <= 2: 8 independent accumulators) */
static inline __attribute__((always_inline)) void step_row(const lstm_seq_args *a, long t,
                                                           long g0, int ng, const float *hc,
                                                           float *hn, float *c) {
    v8 acc[1][8];
    const float *p = a->proj + t * a->pts * 4 * a->hp + g0 * GC;
    for (int j = 0; j < 4 * ng; j++) acc[0][j] = load8(p + 8 * j);
    gate_tile(hc, a->hp, a->rpack + g0 * a->hidden * GC, a->hidden * GC, a->hidden, 1, ng, acc);
    int active = is_active(a, t, 0);
    for (int g = 0; g < ng; g++) cell(a, acc[0] + 4 * g, 0, g0 + g, t, active, hc, hn, c);
}

/* one step for batch rows b0 .. b0+mr-1 (mr <= 6) of group g: the gates i, o (half 0),
 * then f, c (half 1) in 6 x 16 tiles, each from proj, then the cell of each row */
static void step_rows(const lstm_seq_args *a, long t, long b0, long g, int mr,
                      const float *hc, float *hn, float *c) {
    long gcols = 4 * a->hp, n = a->hidden;
    const float *w = a->rpack + g * n * GC, *h = hc + b0 * a->hp;
    v8 lo[6][2], hi[6][2];
    for (int r = 0; r < mr; r++) {
        const float *p = a->proj + (t * a->pts + (b0 + r) * a->pbs) * gcols + g * GC;
        lo[r][0] = load8(p);
        lo[r][1] = load8(p + 8);
    }
    half_tile_rows(h, a->hp, w, n, mr, lo);
    for (int r = 0; r < mr; r++) {
        const float *p = a->proj + (t * a->pts + (b0 + r) * a->pbs) * gcols + g * GC;
        hi[r][0] = load8(p + 16);
        hi[r][1] = load8(p + 24);
    }
    half_tile_rows(h, a->hp, w + 16 * n, n, mr, hi);
    for (int r = 0; r < mr; r++) {
        v8 gates[4] = {lo[r][0], lo[r][1], hi[r][0], hi[r][1]};
        cell(a, gates, b0 + r, g, t, is_active(a, t, b0 + r), hc, hn, c);
    }
}

static void step(const lstm_seq_args *a, long t, const float *hc, float *hn, float *c) {
    long groups = a->hp / 8, batch = a->batch;
    if (batch == 1) { /* one row: two groups at a time for 8 independent accumulators */
        long g = 0;
        for (; g + 2 <= groups; g += 2) step_row(a, t, g, 2, hc, hn, c);
        if (g < groups) step_row(a, t, g, 1, hc, hn, c);
        return;
    }
    /* row tiles of at most 6, as even as they go (8 rows: 4 + 4, 8 accumulators each, not
     * 6 + 2 with a 4-accumulator tile bound by the FMA latency) */
    long tiles = (batch + 5) / 6, size = (batch + tiles - 1) / tiles;
    for (long g = 0; g < groups; g++)
        for (long b0 = 0; b0 < batch; b0 += size)
            step_rows(a, t, b0, g, (int)(batch - b0 < size ? batch - b0 : size), hc, hn, c);
}

void lstm_seq_f32(const lstm_seq_args *a) {
    long batch = a->batch, hp = a->hp, hidden = a->hidden;
    size_t row = (size_t)hidden * sizeof(float);
    float *h = a->work, *hn = h + batch * hp, *c = hn + batch * hp;
    memset(a->work, 0, 3 * (size_t)(batch * hp) * sizeof(float));
    for (long b = 0; b < batch; b++) {
        if (a->h0) memcpy(h + b * hp, a->h0 + b * a->sbs, row);
        if (a->c0) memcpy(c + b * hp, a->c0 + b * a->sbs, row);
    }
    project(a);
    for (long s = 0; s < a->steps; s++) {
        long t = a->reverse ? a->steps - 1 - s : s;
        step(a, t, h, hn, c);
        float *swap = h;
        h = hn;
        hn = swap;
    }
    for (long b = 0; b < batch; b++) {
        if (a->lens && a->lens[b] <= 0) { /* a sequence of length 0 ends in a zero state */
            memset(h + b * hp, 0, row);
            memset(c + b * hp, 0, row);
        }
        if (a->yh) memcpy(a->yh + b * a->sbs, h + b * hp, row);
        if (a->yc) memcpy(a->yc + b * a->sbs, c + b * hp, row);
    }
}

EI_TASK(lstm_seq)
