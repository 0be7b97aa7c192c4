"""The argument structs of the native kernels (``<name>_args`` in kernels/args.h), as
ctypes structures, and :data:`ARGS`: each exported kernel ``<name>_f32`` to its struct. The
library checks at load that its C layouts are these (:func:`native.layout_mismatches`)."""

from __future__ import annotations

import ctypes
import enum
from typing import Any

_L = ctypes.c_long
_P = ctypes.c_void_p
_F = ctypes.c_float


class Activation(enum.IntEnum):
    """The fused epilogues' activation codes: ``enum ei_activation`` in kernels/args.h (the
    library's table is checked against this at load) and the numba epilogue's."""

    NONE = 0
    RELU = 1
    LEAKY_RELU = 2
    CLIP = 3
    SIGMOID = 4
    SILU = 5
    HARD_SWISH = 6
    HARD_SIGMOID = 7
    TANH = 8

    @property
    def attr(self) -> str:
        """The FusedConv ``activation`` attribute this code implements ("" for none)."""
        return "" if self is Activation.NONE else self.name.lower()


# The argument structs of kernels/args.h, field for field (checked against the compiled
# library's layout table when it loads). Kernels take a pointer to theirs; the pool gets
# the same pointer as a task's argument.
_EPILOGUE = [("act", _L), ("p0", _F), ("p1", _F), ("residual", _L), ("z", _P), ("zcs", _L)]
_PHASE_INPUT = [
    ("x", _P),
    ("xcs", _L),
    ("xrs", _L),
    ("h", _L),
    ("w", _L),
    ("pt", _L),
    ("pl", _L),
    ("sy", _L),
    ("sx", _L),
]


def _longs(*names: str) -> list[tuple[str, Any]]:
    return [(n, _L) for n in names]


class KernelArgs(ctypes.Structure):
    """Base of the argument structs: built from keywords, every field named exactly once."""

    def __init__(self, **fields: Any) -> None:
        names = [f[0] for f in self._fields_]
        missing = [n for n in names if n not in fields]
        unknown = [n for n in fields if n not in names]
        if missing or unknown:
            raise TypeError(
                f"{type(self).__name__}: missing fields {missing}, unknown fields {unknown}"
            )
        super().__init__(**fields)


class ConvDirectArgs(KernelArgs):
    _fields_ = [
        ("base", _P),
        ("toff", _P),
        ("T", _L),
        ("wpack", _P),
        ("bias", _P),
        *_longs("ob0", "ob1", "cout", "g0", "g1", "gsafe", "wg", "wo"),
        ("out", _P),
        ("ocs", _L),
        *_EPILOGUE,
        ("pk", _P),
        ("half", _L),
    ]


class SplitPhasesArgs(KernelArgs):
    _fields_ = [
        *_PHASE_INPUT,
        *_longs("hq", "wq", "cin", "c0", "c1"),
        ("planes", _P),
        ("half", _L),
    ]


class ConvBandedArgs(KernelArgs):
    _fields_ = [
        *_PHASE_INPUT,
        *_longs("wq", "cin", "ext", "band", "r0", "r1"),
        ("toff", _P),
        ("T", _L),
        ("wpack", _P),
        ("bias", _P),
        ("cout", _L),
        ("wo", _L),
        ("out", _P),
        ("ocs", _L),
        *_EPILOGUE,
        ("buf", _P),
        ("pk", _P),
        ("half", _L),
    ]


class ConvDepthwiseArgs(KernelArgs):
    _fields_ = [
        *_PHASE_INPUT,
        *_longs("kh", "kw", "dy", "dx", "wq", "grouped"),
        ("rows", _P),
        ("wts", _P),
        ("bias", _P),
        *_longs("c0", "c1", "ho", "wo"),
        ("out", _P),
        ("ocs", _L),
        *_EPILOGUE,
        ("half", _L),
    ]


class PackPositionsArgs(KernelArgs):
    _fields_ = [
        ("base", _P),
        ("toff", _P),
        ("T", _L),
        ("posoff", _P),
        *_longs("P", "pb0", "pb1"),
        ("pk", _P),
        ("half", _L),
        ("pb", _L),
    ]


class ConvOcvecArgs(KernelArgs):
    _fields_ = [
        ("pk", _P),
        ("T", _L),
        ("npb", _L),
        ("wpack", _P),
        ("bias", _P),
        *_longs("ob0", "ob1", "cout", "P"),
        ("out", _P),
        ("ocs", _L),
        *_EPILOGUE,
        ("half", _L),
        ("pb", _L),
        ("xcs", _L),
    ]


class ConvWinogradArgs(KernelArgs):
    _fields_ = [
        ("x", _P),
        *_longs("xis", "xcs", "xrs", "h", "w", "pt", "pl", "cin"),
        ("U", _P),
        ("bias", _P),
        *_longs("cout", "ho", "wo", "t0", "t1"),
        ("out", _P),
        ("ois", _L),
        ("ocs", _L),
        *_EPILOGUE,
        ("zis", _L),
        ("work", _P),
        ("V", _P),
        *_longs("tb", "k0", "k1", "half"),
    ]


class UnaryArgs(KernelArgs):
    """kind: Activation.SIGMOID or Activation.TANH; half: float16 storage bits (args.h)."""

    _fields_ = [("x", _P), ("y", _P), ("n", _L), ("kind", _L), ("half", _L)]


class SoftmaxArgs(KernelArgs):
    _fields_ = [("x", _P), ("y", _P), *_longs("outer", "axis", "inner", "half")]


class UpsampleNearestArgs(KernelArgs):
    _fields_ = [
        ("x", _P),
        ("y", _P),
        *_longs("n", "c", "xis", "xcs", "yis", "ycs", "h", "w", "fh", "fw", "half"),
    ]


class MaxpoolArgs(KernelArgs):
    _fields_ = [
        ("x", _P),
        ("y", _P),
        *_longs("planes", "h", "w", "ho", "wo", "kh", "kw", "sy", "sx", "pt", "pl", "dy", "dx"),
    ]


class ConvPointwiseArgs(KernelArgs):
    _fields_ = [
        ("x", _P),
        *_longs("xis", "xcs", "hw", "cin"),
        ("wpack", _P),
        ("bias", _P),
        *_longs("cout", "q0", "q1", "ob0", "ob1"),
        ("out", _P),
        *_longs("ois", "ocs"),
        *_EPILOGUE,
        ("zis", _L),
        ("pk", _P),
        ("pkn", _L),
        ("half", _L),
    ]


class ConvertHalfArgs(KernelArgs):
    """mode: 0 float16 → float32, 1 float32 → float16, 2 float32 rounded to float16 values."""

    _fields_ = [("x", _P), ("y", _P), *_longs("rows", "n", "xrs", "yrs", "mode")]


class LstmSeqArgs(KernelArgs):
    """recurrent.c: one LSTM direction, projection and every step (strides in floats)."""

    _fields_ = [
        ("x", _P),
        *_longs("rows", "inputs"),
        *[(n, _P) for n in ("wpack", "bias", "proj", "rpack", "peep")],
        *_longs("steps", "batch", "hidden", "hp", "pts", "pbs", "reverse"),
        *[(n, _P) for n in ("lens", "h0", "c0")],
        ("sbs", _L),
        ("y", _P),
        *_longs("yts", "ybs"),
        *[(n, _P) for n in ("yh", "yc")],
        ("clip", _F),
        ("input_forget", _L),
        ("work", _P),
    ]


class QConvSplitArgs(KernelArgs):
    """conv_int8.c: the input as int32 quads in zero-padded stride phases (xf: float32 x,
    quantized with scale, inv = 1 / scale); strides in elements; ps: the planes' distance in
    int32 (0: hq * wq)."""

    _fields_ = [
        ("x", _P),
        ("xf", _L),
        ("inv", ctypes.c_double),
        ("scale", ctypes.c_double),
        *_longs("xcs", "xrs", "h", "w", "pt", "pl", "sy", "sx", "hq", "wq", "cg", "cq", "q0"),
        ("q1", _L),
        ("out", _P),
        ("ps", _L),
    ]


#: conv_int8.c's epilogue fields (args.h EI_QCONV_INT8_ARGS' last ones), which the INT8
#: Winograd kernel's arguments repeat for qconv_int8_finish
_QCONV_EPILOGUE: list[tuple[str, Any]] = [
    ("out", _P),
    *_longs("ocs", "otype"),
    ("oinv", ctypes.c_double),
    ("oscale", ctypes.c_double),
    ("act", _L),
    ("p0", _F),
    ("p1", _F),
    ("residual", _L),
    ("z", _P),
    *_longs("zcs", "ztype"),
    ("zscale", _F),
]


class QConvInt8Args(KernelArgs):
    """conv_int8.c: the INT8 implicit GEMM over grid positions [g0, g1) and its epilogue
    (otype / ztype: 0 float32, 1 float16, 2 int8); wblk: the AVX-512 VNNI position tiles'
    weights a block of channels at a time, or NULL; pimg (0: one image), pfirst, ins: a 1x1
    layer's chunk of positions across images; wblk_oc: the output-channel tiles' weights in
    blocks of 16 channels, or NULL (args.h)."""

    _fields_ = [
        ("layout", _P),
        ("toff", _P),
        ("T", _L),
        ("wts", _P),
        *_longs("coutp", "cout"),
        *[(n, _P) for n in ("bias", "wsum", "mult")],
        *_longs("g0", "g1", "wg", "ho", "wo"),
        *_QCONV_EPILOGUE,
        ("wblk", _P),
        *_longs("pimg", "pfirst", "ins"),
        ("wblk_oc", _P),
    ]


class ConvInt8DwArgs(KernelArgs):
    """conv_int8_dw.c: INT8 depthwise over int8 input (storage kinds okind / zkind: 0 float32,
    1 float16, 2 int8; mult = x_scale * w_scale per channel, in float64)."""

    _fields_ = [
        ("x", _P),
        *_longs("xcs", "xrs", "h", "w", "pt", "pl", "sy", "sx", "kh", "kw", "dy", "dx", "wq"),
        ("grouped", _L),
        *[(n, _P) for n in ("rows", "wts", "bias", "mult")],
        *_longs("c0", "c1", "ho", "wo"),
        ("out", _P),
        *_longs("okind", "ocs"),
        ("oscale", ctypes.c_double),
        ("act", _L),
        ("p0", _F),
        ("p1", _F),
        ("residual", _L),
        ("z", _P),
        *_longs("zkind", "zcs"),
        ("zscale", _F),
        *_longs("oy0", "oy1"),
        *[(n, _P) for n in ("qw", "qstart", "qmq")],
        ("qn", _L),
    ]


class ReformatArgs(KernelArgs):
    """reformat.c: rows x n values between storage kinds (0 float32, 1 float16, 2 int8)."""

    _fields_ = [
        ("x", _P),
        ("xkind", _L),
        ("xscale", _F),
        ("xrs", _L),
        ("y", _P),
        ("ykind", _L),
        ("yscale", ctypes.c_double),
        *_longs("yrs", "rows", "n"),
    ]


class UpsampleNearestS8Args(KernelArgs):
    """reformat.c: upsample_nearest on int8 planes (the same fields)."""

    _fields_ = [
        ("x", _P),
        ("y", _P),
        *_longs("n", "c", "xis", "xcs", "yis", "ycs", "h", "w", "fh", "fw"),
    ]


class QgemmS8Args(KernelArgs):
    """qgemm_packed.c: INT8 fully connected, outputs [n0, n1) of every row (okind: 0 float32,
    1 float16, 2 int8)."""

    _fields_ = [
        ("x", _P),
        ("xrs", _L),
        ("w", _P),
        *_longs("k", "n0", "n1"),
        ("bias", _P),
        ("mult", _P),
        ("rows", _L),
        ("out", _P),
        *_longs("okind", "ors"),
        ("oscale", ctypes.c_double),
    ]


class QgemmPackedS8Args(KernelArgs):
    """qgemm_packed.c: qgemm_s8's fields, rows [r0, r1), the weights packed for the vector
    dot products (wp) and 128 x their row sums (wsum)."""

    _fields_ = [*QgemmS8Args._fields_, ("wp", _P), ("wsum", _P), *_longs("r0", "r1")]


class MaxpoolS8Args(KernelArgs):
    """reformat.c: max pooling of int8 planes, N x C strides (in elements)."""

    _fields_ = [
        ("x", _P),
        ("y", _P),
        *_longs("n", "c", "xis", "xcs", "yis", "ycs", "h", "w", "ho", "wo", "kh", "kw", "sy"),
        *_longs("sx", "pt", "pl", "dy", "dx"),
    ]


class GemvArgs(KernelArgs):
    """gemv.c: bias None for none; brs 0 for one bias row for every row."""

    _fields_ = [
        *[("x", _P), *_longs("xrs", "rows", "k")],
        *[("w", _P), *_longs("n0", "n1"), ("alpha", _F)],
        *[("bias", _P), ("brs", _L), ("out", _P), ("ors", _L)],
    ]


class ConvStemArgs(KernelArgs):
    """conv_stem.c: output rows [r0, r1) of a few-channel conv, a band of rows at a time
    laid out in buf (args.h)."""

    _fields_ = [
        *_PHASE_INPUT,
        *_longs("cin", "kh", "kw", "wq", "band", "r0", "r1"),
        ("wpack", _P),
        ("bias", _P),
        *_longs("cout", "wo"),
        ("out", _P),
        ("ocs", _L),
        *_EPILOGUE,
        ("buf", _P),
        ("half", _L),
    ]


class MaxpoolPlanesArgs(KernelArgs):
    """maxpool.c: planes [p0, p1) of n x c float32 / float16 planes (half: bit 1 x, bit 2 y),
    N x C strides in elements; maxpool's geometry."""

    _fields_ = [
        ("x", _P),
        ("y", _P),
        *_longs("n", "c", "xis", "xcs", "yis", "ycs", "h", "w", "ho", "wo", "kh", "kw", "sy"),
        *_longs("sx", "pt", "pl", "dy", "dx", "p0", "p1", "half"),
    ]


class TransposeArgs(KernelArgs):
    """transpose.c: dims points to 12 longs (the output's shape, then the input's strides in
    elements); the output's first-axis indices [r0, r1)."""

    _fields_ = [("x", _P), ("y", _P), *_longs("es", "nd"), ("dims", _P), *_longs("r0", "r1")]


class GemvPackedArgs(GemvArgs):
    """gemv.c: gemv's fields, w packed by groups of four rows (dense.pack_rows)."""


class ConvChainArgs(KernelArgs):
    """conv_chain.c: [expand 1x1 ->] depthwise 3x3 -> project 1x1 in one pass."""

    _fields_ = [
        ("x", _P),
        *_longs("xis", "xcs", "h", "w", "cin", "cmid", "cout", "sy", "ho", "wo"),
        ("ew", _P),
        ("eb", _P),
        ("eact", _L),
        ("ep0", _F),
        ("ep1", _F),
        ("dw", _P),
        ("db", _P),
        ("dact", _L),
        ("dp0", _F),
        ("dp1", _F),
        ("pw", _P),
        ("pb", _P),
        ("out", _P),
        *_longs("ois", "ocs"),
        *_EPILOGUE,
        *_longs("zis", "g0", "g1", "rows", "ns", "ws", "ds"),
        ("work", _P),
    ]


class QpwInt8Args(KernelArgs):
    """conv_int8_pw.c: a 1x1 stride-1 INT8 conv, int8 in, int8 out (otype 0) or float32
    (otype 1), positions [q0, q1) of output channels [oc0, oc1) of one image (mult = x_scale
    * w_scale, float64)."""

    _fields_ = [
        ("x", _P),
        *_longs("xcs", "cin", "q0", "q1"),
        ("wts", _P),
        ("coutp", _L),
        *[(n, _P) for n in ("bias", "wsum", "mult")],
        *_longs("oc0", "oc1"),
        ("out", _P),
        ("ocs", _L),
        ("oscale", ctypes.c_double),
        ("act", _L),
        ("p0", _F),
        ("p1", _F),
        ("residual", _L),
        ("z", _P),
        ("zcs", _L),
        ("zscale", _F),
        ("buf", _P),
        ("otype", _L),
    ]


class QWinoInt8Args(KernelArgs):
    """conv_int8_wino.c: a 3x3 stride-1 INT8 conv of an int8 input by Winograd F(2x2, 3x3),
    tiles [t0, t1) of one image, every output channel given (U: the packed transformed
    weights; proved: conv_int8.c's proved rows, coutp apart); the epilogue's fields as
    :class:`QConvInt8Args`'; work: ``qwino_int8_work(cin, wo)`` int32 of the call's own."""

    _fields_ = [
        ("x", _P),
        *_longs("xcs", "xrs", "h", "w", "pt", "pl", "cin"),
        ("U", _P),
        ("cout", _L),
        *[(n, _P) for n in ("bias", "mult", "proved")],
        *_longs("coutp", "ho", "wo", "t0", "t1"),
        *_QCONV_EPILOGUE,
        ("work", _P),
    ]


#: exported kernel ``<name>_f32`` → its argument struct (``<name>_args`` in args.h)
ARGS: dict[str, type[KernelArgs]] = {
    "conv_direct_f32": ConvDirectArgs,
    "split_phases_f32": SplitPhasesArgs,
    "conv_banded_f32": ConvBandedArgs,
    "conv_depthwise_f32": ConvDepthwiseArgs,
    "pack_positions_f32": PackPositionsArgs,
    "conv_ocvec_f32": ConvOcvecArgs,
    "conv_winograd_f32": ConvWinogradArgs,
    "unary_f32": UnaryArgs,
    "softmax_f32": SoftmaxArgs,
    "upsample_nearest_f32": UpsampleNearestArgs,
    "maxpool_f32": MaxpoolArgs,
    "conv_pointwise_f32": ConvPointwiseArgs,
    "lstm_seq_f32": LstmSeqArgs,
    "convert_half_f32": ConvertHalfArgs,
    "qconv_split_f32": QConvSplitArgs,
    "qconv_int8_f32": QConvInt8Args,
    "conv_int8_dw_f32": ConvInt8DwArgs,
    "reformat_f32": ReformatArgs,
    "upsample_nearest_s8_f32": UpsampleNearestS8Args,
    "qgemm_packed_s8_f32": QgemmPackedS8Args,
    "maxpool_s8_f32": MaxpoolS8Args,
    "gemv_f32": GemvArgs,
    "conv_stem_f32": ConvStemArgs,
    "maxpool_planes_f32": MaxpoolPlanesArgs,
    "transpose_f32": TransposeArgs,
    "gemv_packed_f32": GemvPackedArgs,
    "conv_chain_f32": ConvChainArgs,
    "qpw_int8_f32": QpwInt8Args,
    "qwino_int8_f32": QWinoInt8Args,
}
