/* Transpose: a contiguous output from a permuted view of the input, any element size (a
 * byte-exact copy). The caller merges the axes that stay adjacent in both (nd <= 6), so the
 * output's last axis is either contiguous in the input (rows copied whole) or not (then the
 * input axis of stride 1 and the output's last axis are transposed in square tiles, both
 * sides' lines read and written whole). */
#include <stdint.h>
#include <string.h>

#include "args.h"

/* tile edge of the 2-D transposes (elements): a tile's input and output lines stay in L1 */
#define EI_TR_TILE 16

/* y[i * ys + j] = x[i + j * xs] for i < ni, j < nj (elements of es bytes) */
static void tr_tile(const char *x, char *y, long ni, long nj, long xs, long ys, long es) {
#define EI_TR_LOOP(T)                                                                          \
    for (long i = 0; i < ni; i++) {                                                            \
        const T *src = (const T *)x + i;                                                       \
        T *dst = (T *)y + i * ys;                                                              \
        for (long j = 0; j < nj; j++) dst[j] = src[j * xs];                                    \
    }
    switch (es) {
    case 1: EI_TR_LOOP(uint8_t) break;
    case 2: EI_TR_LOOP(uint16_t) break;
    case 4: EI_TR_LOOP(uint32_t) break;
    case 8: EI_TR_LOOP(uint64_t) break;
    default:
        for (long i = 0; i < ni; i++)
            for (long j = 0; j < nj; j++)
                memcpy(y + (i * ys + j) * es, x + (i + j * xs) * es, (size_t)es);
    }
#undef EI_TR_LOOP
}

/* dims[0..nd): the output's shape; dims[6..6 + nd): the input's strides for those axes
 * (elements); the first axis's indices [r0, r1) only (the threads' parts) */
void transpose_f32(const transpose_args *a) {
    const long nd = a->nd, es = a->es, last = a->nd - 1;
    const long *shape = a->dims, *xst = a->dims + 6;
    long yst[6], lo[6] = {0}, hi[6], idx[6];
    yst[last] = 1;
    for (long k = last - 1; k >= 0; k--) yst[k] = yst[k + 1] * shape[k + 1];
    for (long k = 0; k < nd; k++) hi[k] = shape[k];
    lo[0] = a->r0;
    hi[0] = a->r1;
    if (lo[0] >= hi[0]) return;
    long tr = -1; /* the input's contiguous axis, when the output's last axis is not it */
    if (xst[last] != 1)
        for (long k = 0; k < last; k++)
            if (xst[k] == 1 && shape[k] > 1) tr = k;
    memcpy(idx, lo, sizeof idx);
    for (;;) { /* every index of the axes but the last and the transposed one */
        const char *x = (const char *)a->x;
        char *y = (char *)a->y;
        for (long k = 0; k < last; k++)
            if (k != tr) {
                x += idx[k] * xst[k] * es;
                y += idx[k] * yst[k] * es;
            }
        if (xst[last] == 1) {
            memcpy(y, x, (size_t)(shape[last] * es));
        } else if (tr >= 0) {
            for (long i0 = lo[tr]; i0 < hi[tr]; i0 += EI_TR_TILE)
                for (long j0 = 0; j0 < shape[last]; j0 += EI_TR_TILE) {
                    long ni = hi[tr] - i0 < EI_TR_TILE ? hi[tr] - i0 : EI_TR_TILE;
                    long nj = shape[last] - j0 < EI_TR_TILE ? shape[last] - j0 : EI_TR_TILE;
                    tr_tile(x + (i0 + j0 * xst[last]) * es, y + (i0 * yst[tr] + j0) * es, ni,
                            nj, xst[last], yst[tr], es);
                }
        } else {
            tr_tile(x, y, 1, shape[last], xst[last], 0, es);
        }
        long k = last - 1;
        for (; k >= 0; k--) {
            if (k == tr) continue;
            if (++idx[k] < hi[k]) break;
            idx[k] = lo[k];
        }
        if (k < 0) return;
    }
}

EI_TASK(transpose)
