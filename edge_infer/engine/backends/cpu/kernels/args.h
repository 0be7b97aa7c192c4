/* The argument record of every native kernel, written once: each kernel takes a pointer to
 * one struct, filled field by field by name in Python (a ctypes.Structure mirror in
 * backends/cpu/native_args.py). The lists below are X-macros: each expands into the struct and
 * into the layout table (args.c) that native.py compares with its mirror when it loads the
 * library, so a field added, dropped, reordered or retyped on one side only disables the
 * native kernels with a message instead of corrupting memory.
 *
 * A kernel's struct pointer is also its task argument for the native pool (pool.c): the
 * `<name>_task` wrappers only convert the pointer type. */
#ifndef EDGE_INFER_ARGS_H
#define EDGE_INFER_ARGS_H

/* Activation codes of the fused epilogues, shared with Python (native.Activation, checked at
 * load): X(enum name, value, the FusedConv `activation` attribute it implements) */
#define EI_ACTIVATIONS(X)                                                                     \
    X(EI_ACT_NONE, 0, "")                                                                     \
    X(EI_ACT_RELU, 1, "relu")                                                                 \
    X(EI_ACT_LEAKY_RELU, 2, "leaky_relu")                                                     \
    X(EI_ACT_CLIP, 3, "clip")                                                                 \
    X(EI_ACT_SIGMOID, 4, "sigmoid")                                                           \
    X(EI_ACT_SILU, 5, "silu")                                                                 \
    X(EI_ACT_HARD_SWISH, 6, "hard_swish")                                                     \
    X(EI_ACT_HARD_SIGMOID, 7, "hard_sigmoid")                                                 \
    X(EI_ACT_TANH, 8, "tanh")

#define EI_ACT_ENUM(name, value, attr) name = value,
enum ei_activation { EI_ACTIVATIONS(EI_ACT_ENUM) };
#undef EI_ACT_ENUM

/* The fused epilogue of every conv kernel: bias is the kernel's; then residual (0 none,
 * 1 act(y + z), 2 act(y) + z, z's channel stride zcs) and activation act(p0, p1). */
#define EI_EPILOGUE_ARGS(X, K)                                                                 \
    X(K, long, act) X(K, float, p0) X(K, float, p1) X(K, long, residual)                       \
    X(K, const float *, z) X(K, long, zcs)

/* conv_direct.c: terms over a grid (see there); half (here, split_phases, conv_banded,
 * pack_positions, conv_ocvec): bits 1, 2, 4 when x (base), out, z are float16 */
#define EI_CONV_DIRECT_ARGS(X, K)                                                              \
    X(K, const float *, base) X(K, const long *, toff) X(K, long, T)                           \
    X(K, const float *, wpack) X(K, const float *, bias) X(K, long, ob0) X(K, long, ob1)       \
    X(K, long, cout) X(K, long, g0) X(K, long, g1) X(K, long, gsafe) X(K, long, wg)            \
    X(K, long, wo) X(K, float *, out) X(K, long, ocs) EI_EPILOGUE_ARGS(X, K)                   \
    X(K, float *, pk) X(K, long, half)

/* the input geometry the phase-split kernels read: channel and row strides, size, pads,
 * strides */
#define EI_PHASE_INPUT_ARGS(X, K)                                                              \
    X(K, const float *, x) X(K, long, xcs) X(K, long, xrs) X(K, long, h) X(K, long, w)         \
    X(K, long, pt) X(K, long, pl) X(K, long, sy) X(K, long, sx)

#define EI_SPLIT_PHASES_ARGS(X, K)                                                             \
    EI_PHASE_INPUT_ARGS(X, K) X(K, long, hq) X(K, long, wq) X(K, long, cin) X(K, long, c0)     \
    X(K, long, c1) X(K, float *, planes) X(K, long, half)

#define EI_CONV_BANDED_ARGS(X, K)                                                              \
    EI_PHASE_INPUT_ARGS(X, K) X(K, long, wq) X(K, long, cin) X(K, long, ext) X(K, long, band)  \
    X(K, long, r0) X(K, long, r1) X(K, const long *, toff) X(K, long, T)                       \
    X(K, const float *, wpack) X(K, const float *, bias) X(K, long, cout) X(K, long, wo)       \
    X(K, float *, out) X(K, long, ocs) EI_EPILOGUE_ARGS(X, K) X(K, float *, buf)               \
    X(K, float *, pk) X(K, long, half)

/* conv_depthwise.c: kernel kh x kw, dilations dy, dx; row by row, each input row laid out as
 * sx column phases of wq floats in `rows` ((kh - 1) * dy + 2 slots of sx * wq floats), or
 * (grouped bit 0) 8 channels at a time interleaved in `rows`, or (grouped bit 1, where the
 * build has it) vectors along rows, no buffer (see there); half: bits 1, 2, 4 when x, out, z
 * are float16 */
#define EI_CONV_DEPTHWISE_ARGS(X, K)                                                           \
    EI_PHASE_INPUT_ARGS(X, K) X(K, long, kh) X(K, long, kw) X(K, long, dy) X(K, long, dx)      \
    X(K, long, wq) X(K, long, grouped) X(K, float *, rows) X(K, const float *, wts)            \
    X(K, const float *, bias) X(K, long, c0) X(K, long, c1) X(K, long, ho) X(K, long, wo)      \
    X(K, float *, out) X(K, long, ocs) EI_EPILOGUE_ARGS(X, K) X(K, long, half)

/* conv_ocvec.c (pb: positions per tile, 6 or 7; 0 stands for 6; conv_ocvec's xcs: pk is a
 * plain 1x1 conv's float32 input read in place, channels xcs floats apart; 0: pk packed) */
#define EI_PACK_POSITIONS_ARGS(X, K)                                                           \
    X(K, const float *, base) X(K, const long *, toff) X(K, long, T)                           \
    X(K, const long *, posoff) X(K, long, P) X(K, long, pb0) X(K, long, pb1)                   \
    X(K, float *, pk) X(K, long, half) X(K, long, pb)

#define EI_CONV_OCVEC_ARGS(X, K)                                                               \
    X(K, const float *, pk) X(K, long, T) X(K, long, npb) X(K, const float *, wpack)           \
    X(K, const float *, bias) X(K, long, ob0) X(K, long, ob1) X(K, long, cout) X(K, long, P)   \
    X(K, float *, out) X(K, long, ocs) EI_EPILOGUE_ARGS(X, K) X(K, long, half) X(K, long, pb)   \
    X(K, long, xcs)

/* conv_winograd.c (z also has an image stride, zis; tiles and channel blocks: see there;
 * half: bits 1, 2, 4 when x, out, z are float16) */
#define EI_CONV_WINOGRAD_ARGS(X, K)                                                            \
    X(K, const float *, x) X(K, long, xis) X(K, long, xcs) X(K, long, xrs) X(K, long, h)       \
    X(K, long, w) X(K, long, pt) X(K, long, pl) X(K, long, cin) X(K, const float *, U)         \
    X(K, const float *, bias) X(K, long, cout) X(K, long, ho) X(K, long, wo) X(K, long, t0)    \
    X(K, long, t1) X(K, float *, out) X(K, long, ois) X(K, long, ocs) EI_EPILOGUE_ARGS(X, K)   \
    X(K, long, zis) X(K, float *, work) X(K, float *, V) X(K, long, tb) X(K, long, k0)         \
    X(K, long, k1) X(K, long, half)

/* conv_pointwise.c: plain 1x1 convs as a GEMM over the pixels q = b * hw + p of all images
 * (see there): pixels [q0, q1), weight panels [ob0, ob1); pk holds pkn floats; half: bits
 * 1, 2, 4 when x, out, z are float16 */
#define EI_CONV_POINTWISE_ARGS(X, K)                                                           \
    X(K, const float *, x) X(K, long, xis) X(K, long, xcs) X(K, long, hw) X(K, long, cin)      \
    X(K, const float *, wpack) X(K, const float *, bias) X(K, long, cout) X(K, long, q0)       \
    X(K, long, q1) X(K, long, ob0) X(K, long, ob1) X(K, float *, out) X(K, long, ois)          \
    X(K, long, ocs) EI_EPILOGUE_ARGS(X, K) X(K, long, zis) X(K, float *, pk) X(K, long, pkn)   \
    X(K, long, half)

/* pointwise.c; unary kind: EI_ACT_SIGMOID or EI_ACT_TANH; half (unary, softmax): float16
 * storage bits 1 x, 2 y float16, 4 y, 8 x float32 rounded to float16's values (pointwise.c) */
#define EI_UNARY_ARGS(X, K)                                                                    \
    X(K, const float *, x) X(K, float *, y) X(K, long, n) X(K, long, kind) X(K, long, half)

#define EI_SOFTMAX_ARGS(X, K)                                                                  \
    X(K, const float *, x) X(K, float *, y) X(K, long, outer) X(K, long, axis)                 \
    X(K, long, inner) X(K, long, half)

/* half: x and y float16 (strides in elements) */
#define EI_UPSAMPLE_NEAREST_ARGS(X, K)                                                         \
    X(K, const float *, x) X(K, float *, y) X(K, long, n) X(K, long, c) X(K, long, xis)        \
    X(K, long, xcs) X(K, long, yis) X(K, long, ycs) X(K, long, h) X(K, long, w)                \
    X(K, long, fh) X(K, long, fw) X(K, long, half)

/* convert_f16.c: rows x n values (row strides xrs, yrs, in elements); mode 0 float16 to
 * float32, 1 float32 to float16, 2 float32 rounded to float16's values (round to nearest even) */
#define EI_CONVERT_HALF_ARGS(X, K)                                                             \
    X(K, const void *, x) X(K, void *, y) X(K, long, rows) X(K, long, n) X(K, long, xrs)       \
    X(K, long, yrs) X(K, long, mode)

/* maxpool.c */
#define EI_MAXPOOL_ARGS(X, K)                                                                  \
    X(K, const float *, x) X(K, float *, y) X(K, long, planes) X(K, long, h) X(K, long, w)     \
    X(K, long, ho) X(K, long, wo) X(K, long, kh) X(K, long, kw) X(K, long, sy) X(K, long, sx)  \
    X(K, long, pt) X(K, long, pl) X(K, long, dy) X(K, long, dx)

/* recurrent.c: one direction of an LSTM over the whole sequence (see there) */
#define EI_LSTM_SEQ_ARGS(X, K)                                                                 \
    X(K, const float *, x) X(K, long, rows) X(K, long, inputs) X(K, const float *, wpack)      \
    X(K, const float *, bias) X(K, float *, proj) X(K, const float *, rpack)                   \
    X(K, const float *, peep) X(K, long, steps) X(K, long, batch) X(K, long, hidden)           \
    X(K, long, hp) X(K, long, pts) X(K, long, pbs) X(K, long, reverse) X(K, const long *, lens) \
    X(K, const float *, h0) X(K, const float *, c0) X(K, long, sbs) X(K, float *, y)          \
    X(K, long, yts) X(K, long, ybs) X(K, float *, yh) X(K, float *, yc) X(K, float, clip)     \
    X(K, long, input_forget) X(K, float *, work)

/* conv_int8.c: the input laid out as int32 quads (4 channels' bytes) in zero-padded stride
 * phases (xf: x is float32, quantized with 1/inv = scale); strides in elements; ps: the
 * layout's planes ps int32 apart (0: hq * wq; an image's part of a chunk across images) */
#define EI_QCONV_SPLIT_ARGS(X, K)                                                              \
    X(K, const void *, x) X(K, long, xf) X(K, double, inv) X(K, double, scale)                 \
    X(K, long, xcs) X(K, long, xrs) X(K, long, h) X(K, long, w) X(K, long, pt) X(K, long, pl)  \
    X(K, long, sy) X(K, long, sx) X(K, long, hq) X(K, long, wq) X(K, long, cg) X(K, long, cq)  \
    X(K, long, q0) X(K, long, q1) X(K, int *, out) X(K, long, ps)

/* conv_int8.c: grid positions [g0, g1) of width wg; otype / ztype 0 float32, 1 float16,
 * 2 int8 (oinv = 1 / oscale); wblk (or NULL): the AVX-512 VNNI position tiles' weights, the
 * term rows of wts a block of MR channels at a time ([block][term][MR]); pimg (0: one image):
 * a 1 x 1 layer's chunk of positions across images of pimg positions each, grid position g
 * the batch's position pfirst + g, its output (and residual) ins elements an image on;
 * wblk_oc (or NULL): the output-channel tiles' weights, blocks of 16 channels
 * ([block][term][16]) */
#define EI_QCONV_INT8_ARGS(X, K)                                                               \
    X(K, const int *, layout) X(K, const long *, toff) X(K, long, T) X(K, const int *, wts)    \
    X(K, long, coutp) X(K, long, cout) X(K, const int *, bias) X(K, const int *, wsum)         \
    X(K, const double *, mult) X(K, long, g0) X(K, long, g1) X(K, long, wg) X(K, long, ho)     \
    X(K, long, wo) X(K, void *, out) X(K, long, ocs) X(K, long, otype) X(K, double, oinv)      \
    X(K, double, oscale) X(K, long, act) X(K, float, p0) X(K, float, p1) X(K, long, residual)  \
    X(K, const void *, z) X(K, long, zcs) X(K, long, ztype) X(K, float, zscale)              \
    X(K, const int *, wblk) X(K, long, pimg) X(K, long, pfirst) X(K, long, ins)             \
    X(K, const int *, wblk_oc)

/* conv_int8_dw.c: INT8 depthwise (edge_infer::QConv) over int8 input; storage kinds
 * (qsimd.h) okind, zkind; mult[c] = x_scale * w_scale[c]; output rows [oy0, oy1) (oy1 0:
 * all); for the VNNI path: qw[kh * ceil(kw / 4)][qn] the weights as dwords of 4 taps,
 * qstart[c] = -128 x their sum; qmq: 4 rows of qn floats: float32(mult[c] / oscale), the
 * proved multiplier vmq[c] (0: not proved, tactics/qdw_requant.py), its byte bounds lo, hi */
#define EI_CONV_INT8_DW_ARGS(X, K)                                                             \
    X(K, const signed char *, x) X(K, long, xcs) X(K, long, xrs) X(K, long, h) X(K, long, w)   \
    X(K, long, pt) X(K, long, pl) X(K, long, sy) X(K, long, sx) X(K, long, kh) X(K, long, kw)  \
    X(K, long, dy) X(K, long, dx) X(K, long, wq) X(K, long, grouped) X(K, float *, rows)       \
    X(K, const float *, wts) X(K, const int *, bias) X(K, const double *, mult)                \
    X(K, long, c0) X(K, long, c1) X(K, long, ho) X(K, long, wo) X(K, void *, out)              \
    X(K, long, okind) X(K, long, ocs) X(K, double, oscale) X(K, long, act) X(K, float, p0)     \
    X(K, float, p1) X(K, long, residual) X(K, const void *, z) X(K, long, zkind)               \
    X(K, long, zcs) X(K, float, zscale) X(K, long, oy0) X(K, long, oy1) X(K, const int *, qw)   \
    X(K, const int *, qstart) X(K, const float *, qmq) X(K, long, qn)

/* reformat.c: rows x n values of kind xkind (int8 at xscale; row stride xrs) to kind ykind
 * (int8 at yscale; row stride yrs) */
#define EI_REFORMAT_ARGS(X, K)                                                                 \
    X(K, const void *, x) X(K, long, xkind) X(K, float, xscale) X(K, long, xrs)                \
    X(K, void *, y) X(K, long, ykind) X(K, double, yscale) X(K, long, yrs) X(K, long, rows)    \
    X(K, long, n)

/* reformat.c: nearest upsampling of int8 planes (upsample_nearest's fields) */
#define EI_UPSAMPLE_NEAREST_S8_ARGS(X, K)                                                      \
    X(K, const signed char *, x) X(K, signed char *, y) X(K, long, n) X(K, long, c)            \
    X(K, long, xis) X(K, long, xcs) X(K, long, yis) X(K, long, ycs) X(K, long, h)              \
    X(K, long, w) X(K, long, fh) X(K, long, fw)

/* qgemm_packed.c: INT8 fully connected, outputs [n0, n1) of rows x k int8 values (row stride
 * xrs) by w [N, k]; storage kind okind, output row stride ors */
#define EI_QGEMM_S8_ARGS(X, K)                                                                 \
    X(K, const signed char *, x) X(K, long, xrs) X(K, const signed char *, w) X(K, long, k)    \
    X(K, long, n0) X(K, long, n1) X(K, const int *, bias) X(K, const double *, mult)           \
    X(K, long, rows) X(K, void *, out) X(K, long, okind) X(K, long, ors) X(K, double, oscale)

/* qgemm_packed.c: qgemm_s8's fields, rows [r0, r1), wp the weights packed for vpdpbusd
 * ([n / 16][ceil(k / 4)][16][4]) and wsum[n] = 128 sum_k w[n, k] (see there) */
#define EI_QGEMM_PACKED_S8_ARGS(X, K)                                                          \
    EI_QGEMM_S8_ARGS(X, K) X(K, const signed char *, wp) X(K, const int *, wsum)               \
    X(K, long, r0) X(K, long, r1)

/* reformat.c: max pooling of int8 planes (maxpool's geometry, N x C strides) */
#define EI_MAXPOOL_S8_ARGS(X, K)                                                               \
    X(K, const signed char *, x) X(K, signed char *, y) X(K, long, n) X(K, long, c)            \
    X(K, long, xis) X(K, long, xcs) X(K, long, yis) X(K, long, ycs) X(K, long, h)              \
    X(K, long, w) X(K, long, ho) X(K, long, wo) X(K, long, kh) X(K, long, kw) X(K, long, sy)   \
    X(K, long, sx) X(K, long, pt) X(K, long, pl) X(K, long, dy) X(K, long, dx)

/* gemv.c: out[m * ors + n] = alpha * (x[m * xrs] . w[n * k]) + bias[m * brs + n] (bias
 * NULL: none; brs 0: one row for all) for m < rows, n in [n0, n1); w rows of k floats */
#define EI_GEMV_ARGS(X, K)                                                                     \
    X(K, const float *, x) X(K, long, xrs) X(K, long, rows) X(K, long, k)                      \
    X(K, const float *, w) X(K, long, n0) X(K, long, n1) X(K, float, alpha)                    \
    X(K, const float *, bias) X(K, long, brs) X(K, float *, out) X(K, long, ors)

/* conv_stem.c: output rows [r0, r1) of a few-channel conv (cin * kh * kw <= 1024), a band
 * of output rows at a time, the band's input laid out in buf ([cin][(band - 1) sy + kh][sx]
 * [wq] floats; wq >= 16 * ceil(wo / 16) + (kw - 1) / sx and >= (w + pl + sx - 1) / sx);
 * output planes of wo-wide rows; half: bits 1, 2, 4 when x, out, z are float16) */
#define EI_CONV_STEM_ARGS(X, K)                                                                \
    EI_PHASE_INPUT_ARGS(X, K) X(K, long, cin) X(K, long, kh) X(K, long, kw) X(K, long, wq)     \
    X(K, long, band) X(K, long, r0) X(K, long, r1) X(K, const float *, wpack)                  \
    X(K, const float *, bias) X(K, long, cout) X(K, long, wo) X(K, float *, out)               \
    X(K, long, ocs) EI_EPILOGUE_ARGS(X, K) X(K, float *, buf) X(K, long, half)

/* maxpool.c: planes [p0, p1) of n x c (element strides xis, xcs, yis, ycs), maxpool's
 * geometry; half: bit 1 x, bit 2 y float16 (else float32) */
#define EI_MAXPOOL_PLANES_ARGS(X, K)                                                           \
    X(K, const void *, x) X(K, void *, y) X(K, long, n) X(K, long, c) X(K, long, xis)         \
    X(K, long, xcs) X(K, long, yis) X(K, long, ycs) X(K, long, h) X(K, long, w)               \
    X(K, long, ho) X(K, long, wo) X(K, long, kh) X(K, long, kw) X(K, long, sy) X(K, long, sx)  \
    X(K, long, pt) X(K, long, pl) X(K, long, dy) X(K, long, dx) X(K, long, p0) X(K, long, p1)  \
    X(K, long, half)

/* transpose.c: the output's first-axis indices [r0, r1) of a permuted copy; dims: the
 * output's shape (nd <= 6 axes), then from dims[6] the input's strides (elements of es bytes) */
#define EI_TRANSPOSE_ARGS(X, K)                                                                \
    X(K, const void *, x) X(K, void *, y) X(K, long, es) X(K, long, nd)                        \
    X(K, const long *, dims) X(K, long, r0) X(K, long, r1)

/* gemv.c: gemv's fields, w packed by groups of four rows (see gemv_packed_f32) */
#define EI_GEMV_PACKED_ARGS(X, K) EI_GEMV_ARGS(X, K)

/* conv_chain.c: [expand 1x1 ->] depthwise 3x3 (stride sy, pads 1) -> project 1x1 in one
 * pass, output rows g = b * ho + oy in [g0, g1), `rows` a strip; ew NULL: no expand; eb,
 * db, pb NULL: no bias; work: the ring (cmid * ns * ws), D (cmid * ds), the tail buffer and a
 * zero row (see there); the project's epilogue EI_EPILOGUE_ARGS, z's image stride zis */
#define EI_CONV_CHAIN_ARGS(X, K)                                                               \
    X(K, const float *, x) X(K, long, xis) X(K, long, xcs) X(K, long, h) X(K, long, w)         \
    X(K, long, cin) X(K, long, cmid) X(K, long, cout) X(K, long, sy) X(K, long, ho)            \
    X(K, long, wo) X(K, const float *, ew) X(K, const float *, eb) X(K, long, eact)            \
    X(K, float, ep0) X(K, float, ep1) X(K, const float *, dw) X(K, const float *, db)          \
    X(K, long, dact) X(K, float, dp0) X(K, float, dp1) X(K, const float *, pw)                 \
    X(K, const float *, pb) X(K, float *, out) X(K, long, ois) X(K, long, ocs)                 \
    EI_EPILOGUE_ARGS(X, K) X(K, long, zis) X(K, long, g0) X(K, long, g1) X(K, long, rows)     \
    X(K, long, ns) X(K, long, ws) X(K, long, ds) X(K, float *, work)

/* conv_int8_pw.c: a 1x1 stride-1 unpadded INT8 conv of an int8 input to int8, positions
 * [q0, q1) of output channels [oc0, oc1) of one image; wts: int32 quads [cin / 4][coutp]
 * (readable 16 channels past oc1); mult = x_scale * w_scale (float64); act none, relu or
 * clip; residual 0 or 1 (an int8 z added before the activation); buf: the call's layout */
#define EI_QPW_INT8_ARGS(X, K)                                                                 \
    X(K, const signed char *, x) X(K, long, xcs) X(K, long, cin) X(K, long, q0)               \
    X(K, long, q1) X(K, const int *, wts) X(K, long, coutp) X(K, const int *, bias)            \
    X(K, const int *, wsum) X(K, const double *, mult) X(K, long, oc0) X(K, long, oc1)         \
    X(K, signed char *, out) X(K, long, ocs) X(K, double, oscale) X(K, long, act)              \
    X(K, float, p0) X(K, float, p1) X(K, long, residual) X(K, const signed char *, z)          \
    X(K, long, zcs) X(K, float, zscale) X(K, int *, buf) X(K, long, otype)

/* conv_int8_wino.c: a 3x3 stride-1 INT8 conv of an int8 input by Winograd F(2x2, 3x3),
 * tiles [t0, t1) (2x2 outputs, ceil(wo / 2) a row) of one image, output channels [0, cout)
 * of the pointers given; U: the transformed weights packed [cout / 6][16][ceil(cin / 2)][6]
 * int16 pairs; proved: conv_int8.c's proved rows (3 rows of coutp); the epilogue's fields as
 * qconv_int8's; work: qwino_int8_work(cin, wo) int32 of this call's own */
#define EI_QWINO_INT8_ARGS(X, K)                                                               \
    X(K, const signed char *, x) X(K, long, xcs) X(K, long, xrs) X(K, long, h) X(K, long, w)   \
    X(K, long, pt) X(K, long, pl) X(K, long, cin) X(K, const int *, U) X(K, long, cout)       \
    X(K, const int *, bias) X(K, const double *, mult) X(K, const int *, proved)              \
    X(K, long, coutp) X(K, long, ho) X(K, long, wo) X(K, long, t0) X(K, long, t1)             \
    X(K, void *, out) X(K, long, ocs) X(K, long, otype) X(K, double, oinv)                    \
    X(K, double, oscale) X(K, long, act) X(K, float, p0) X(K, float, p1) X(K, long, residual)  \
    X(K, const void *, z) X(K, long, zcs) X(K, long, ztype) X(K, float, zscale)               \
    X(K, int *, work)

/* every kernel: X(kernel name, its field list); a field list is FIELDS(X, kernel) and
 * calls X(kernel, type, name) once per field */
#define EI_KERNELS(X)                                                                         \
    X(conv_direct, EI_CONV_DIRECT_ARGS)                                                       \
    X(split_phases, EI_SPLIT_PHASES_ARGS)                                                     \
    X(conv_banded, EI_CONV_BANDED_ARGS)                                                       \
    X(conv_depthwise, EI_CONV_DEPTHWISE_ARGS)                                                 \
    X(pack_positions, EI_PACK_POSITIONS_ARGS)                                                 \
    X(conv_ocvec, EI_CONV_OCVEC_ARGS)                                                         \
    X(conv_winograd, EI_CONV_WINOGRAD_ARGS)                                                   \
    X(unary, EI_UNARY_ARGS)                                                                   \
    X(softmax, EI_SOFTMAX_ARGS)                                                               \
    X(upsample_nearest, EI_UPSAMPLE_NEAREST_ARGS)                                             \
    X(maxpool, EI_MAXPOOL_ARGS)                                                               \
    X(conv_pointwise, EI_CONV_POINTWISE_ARGS)                                                 \
    X(qconv_split, EI_QCONV_SPLIT_ARGS)                                                       \
    X(qconv_int8, EI_QCONV_INT8_ARGS)                                                         \
    X(lstm_seq, EI_LSTM_SEQ_ARGS)                                                             \
    X(convert_half, EI_CONVERT_HALF_ARGS)                                                     \
    X(conv_int8_dw, EI_CONV_INT8_DW_ARGS)                                                     \
    X(reformat, EI_REFORMAT_ARGS)                                                             \
    X(upsample_nearest_s8, EI_UPSAMPLE_NEAREST_S8_ARGS)                                       \
    X(qgemm_packed_s8, EI_QGEMM_PACKED_S8_ARGS)                                               \
    X(maxpool_s8, EI_MAXPOOL_S8_ARGS)                                                         \
    X(gemv, EI_GEMV_ARGS)                                                                     \
    X(conv_stem, EI_CONV_STEM_ARGS)                                                           \
    X(maxpool_planes, EI_MAXPOOL_PLANES_ARGS)                                                 \
    X(transpose, EI_TRANSPOSE_ARGS)                                                           \
    X(gemv_packed, EI_GEMV_PACKED_ARGS)                                                       \
    X(conv_chain, EI_CONV_CHAIN_ARGS)                                                         \
    X(qpw_int8, EI_QPW_INT8_ARGS)                                                             \
    X(qwino_int8, EI_QWINO_INT8_ARGS)

/* the structs: <name>_args, and their entry points void <name>_f32(const <name>_args *) and
 * pool tasks void <name>_task(const void *) */
#define EI_FIELD(kernel, type, name) type name;
#define EI_STRUCT(kernel, FIELDS)                                                             \
    typedef struct { FIELDS(EI_FIELD, kernel) } kernel##_args;                                 \
    void kernel##_f32(const kernel##_args *a);                                                \
    void kernel##_task(const void *a);
EI_KERNELS(EI_STRUCT)
#undef EI_STRUCT
#undef EI_FIELD

/* conv_int8.c's epilogue for the other INT8 kernels (conv_int8_wino.c): channels oc0 ..
 * oc0 + rows - 1 of a's outputs from their exact int32 accumulators with the bias added
 * (channel oc0 + i's at acc + i accs), each its nseg runs: seg_n[s] outputs from
 * acc[seg_j[s]] at output position seg_pos[s]; a's proved rows follow its T = 0 weight rows */
void qconv_int8_finish(const qconv_int8_args *a, const int *acc, long accs, long oc0, long rows,
                       const long *seg_j, const long *seg_n, const long *seg_pos, long nseg);

/* the pool task wrapper of a kernel (one line in the kernel's file) */
#define EI_TASK(kernel)                                                                       \
    void kernel##_task(const void *a) { kernel##_f32((const kernel##_args *)a); }

/* one row of the layout table: a field's offset and size in its struct; the struct's own
 * size is the row whose field is "" */
typedef struct {
    const char *kernel;
    const char *field;
    long offset;
    long size;
} ei_field_layout;

/* the layout table (args.c), ended by a row whose kernel is NULL */
const ei_field_layout *ei_arg_layouts(void);

typedef struct {
    const char *attr;
    long code;
} ei_activation_code;

/* the activation codes (args.c), ended by a row whose attr is NULL */
const ei_activation_code *ei_activation_codes(void);

#endif
