/* One direction of an ONNX LSTM over the whole sequence, in one call (the recurrent_native
 * tactic, tactics/cpu_recurrent.py; a bidirectional layer is two calls on two threads).
 *
 * Weights are packed at bind by hidden group: group g holds the gates i, o, f, c of hidden
 * units 8g .. 8g+7 side by side (32 columns), so one 32-column register tile of the gate
 * product is all four gates of 8 units and the cell runs on it in registers:
 *   wpack [hp/8][inputs][32]  W^T        rpack [hp/8][hidden][32]  R^T
 *   bias  [hp/8][32]          Wb + Rb    peep  [3][hp] (p_i, p_o, p_f) or NULL
 * (hp: hidden rounded up to 8; the padding units have zero weights and are never stored).
 *
 * 1. projection: proj[r] = x[r] W^T + bias for every row r of x (all steps and batch rows),
 *    one GEMM in tiles of RMR rows x 32 columns;
 * 2. recurrence: per step, gates = proj[t, b] + h R^T in tiles of rows x 32 columns (two
 *    groups at once for a single row), then the cell in registers:
 *      i = s(clip(gi + p_i c)), f = s(clip(gf + p_f c)) or 1 - i (input_forget),
 *      c' = f c + i tanh(clip(gc)), o = s(clip(go + p_o c')), h' = o tanh(c');
 *    sequence_lens: row b is active at step t when t < lens[b]; an inactive row keeps its
 *    state and writes zeros to y; a row of length 0 ends in a zero state (as onnxruntime).
 *
 * Rows of x and proj: step t, batch row b is row t * pts + b * pbs. States h0, c0, yh, yc:
 * batch row b at b * sbs floats; y: y + t * yts + b * ybs. work: 3 * batch * hp floats. */
#include <string.h>

#include "simd.h"

/* rows per register tile: 6 x 4 accumulators need AVX-512's 32 vector registers */
#if defined(__AVX512F__)
#define RMR 6
#else
#define RMR 3
#endif
#define GC 32 /* columns of a hidden group: 4 gates x 8 units */

/* acc[r][j] += sum over k < n of a[r * lda + k] * w[g * wgs + k * GC + 8 q], j = 4 g + q:
 * mr rows by ng groups (constants where it is inlined: the loops unroll into registers) */
static inline __attribute__((always_inline)) void gate_tile(const float *a, long lda,
                                                            const float *w, long wgs, long n,
                                                            int mr, int ng, v8 acc[RMR][8]) {
    for (long k = 0; k < n; k++) {
        v8 wv[8];
        for (int g = 0; g < ng; g++)
            for (int q = 0; q < 4; q++) wv[4 * g + q] = load8(w + g * wgs + k * GC + 8 * q);
        for (int r = 0; r < mr; r++) {
            v8 s = splat(a[r * lda + k]);
            for (int j = 0; j < 4 * ng; j++) acc[r][j] += s * wv[j];
        }
    }
}

/* the projection tile: mr rows (stride `inputs`) of one group, bias added, into proj */
static inline __attribute__((always_inline)) void project_tile(const lstm_seq_args *a,
                                                               long r0, long g, int mr) {
    long gcols = 4 * a->hp;
    v8 acc[RMR][8];
    for (int r = 0; r < mr; r++)
        for (int q = 0; q < 4; q++) acc[r][q] = load8(a->bias + g * GC + 8 * q);
    gate_tile(a->x + r0 * a->inputs, a->inputs, a->wpack + g * a->inputs * GC, 0, a->inputs,
              mr, 1, acc);
    for (int r = 0; r < mr; r++)
        for (int q = 0; q < 4; q++) store8(a->proj + (r0 + r) * gcols + g * GC + 8 * q, acc[r][q]);
}

static void project(const lstm_seq_args *a) {
    long groups = a->hp / 8;
    for (long g = 0; g < groups; g++) {
        long r0 = 0;
        for (; r0 + RMR <= a->rows; r0 += RMR) project_tile(a, r0, g, RMR);
        switch (a->rows - r0) { /* the last rows, a constant count each */
        case 1: project_tile(a, r0, g, 1); break;
        case 2: project_tile(a, r0, g, 2); break;
#if RMR > 3
        case 3: project_tile(a, r0, g, 3); break;
        case 4: project_tile(a, r0, g, 4); break;
        case 5: project_tile(a, r0, g, 5); break;
#endif
        default: break;
        }
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

/* one step for batch rows b0 .. b0+mr-1, groups g0 .. g0+ng-1 */
static inline __attribute__((always_inline)) void step_tile(const lstm_seq_args *a, long t,
                                                            long b0, long g0, int mr, int ng,
                                                            const float *hc, float *hn,
                                                            float *c) {
    long gcols = 4 * a->hp;
    v8 acc[RMR][8];
    for (int r = 0; r < mr; r++) {
        const float *p = a->proj + (t * a->pts + (b0 + r) * a->pbs) * gcols + g0 * GC;
        for (int j = 0; j < 4 * ng; j++) acc[r][j] = load8(p + 8 * j);
    }
    gate_tile(hc + b0 * a->hp, a->hp, a->rpack + g0 * a->hidden * GC, a->hidden * GC,
              a->hidden, mr, ng, acc);
    for (int r = 0; r < mr; r++) {
        int active = is_active(a, t, b0 + r);
        for (int g = 0; g < ng; g++) cell(a, acc[r] + 4 * g, b0 + r, g0 + g, t, active, hc, hn, c);
    }
}

static void step(const lstm_seq_args *a, long t, const float *hc, float *hn, float *c) {
    long groups = a->hp / 8, batch = a->batch;
    if (batch == 1) { /* one row: two groups at a time for 8 independent accumulators */
        long g = 0;
        for (; g + 2 <= groups; g += 2) step_tile(a, t, 0, g, 1, 2, hc, hn, c);
        if (g < groups) step_tile(a, t, 0, g, 1, 1, hc, hn, c);
        return;
    }
    for (long g = 0; g < groups; g++) {
        long b0 = 0;
        for (; b0 + RMR <= batch; b0 += RMR) step_tile(a, t, b0, g, RMR, 1, hc, hn, c);
        switch (batch - b0) {
        case 1: step_tile(a, t, b0, g, 1, 1, hc, hn, c); break;
        case 2: step_tile(a, t, b0, g, 2, 1, hc, hn, c); break;
#if RMR > 3
        case 3: step_tile(a, t, b0, g, 3, 1, hc, hn, c); break;
        case 4: step_tile(a, t, b0, g, 4, 1, hc, hn, c); break;
        case 5: step_tile(a, t, b0, g, 5, 1, hc, hn, c); break;
#endif
        default: break;
        }
    }
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
