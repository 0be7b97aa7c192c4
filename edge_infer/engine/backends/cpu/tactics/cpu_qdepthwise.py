"""INT8 depthwise convolution tactic: ``qdepthwise_native`` (``kernels/conv_int8_dw.c``).

A depthwise QConv (``group == C``) computes the exact int32 accumulator (float32 fma over
int8 values read as floats: every partial sum of int8 x int8 products over at most 1024
taps is an integer below 2^24; with AVX-512 VNNI vpdpbusd on int8 directly), then the
reference op's epilogue (:func:`edge_infer.engine.ops.quantize.qconv`): float64
requantization, residual, float32 activation and the fp32/fp16/int8 store, bit for bit
except where an exp-based activation's float32 result differs in its last bit from numpy's.
An int8 output without residual after no activation, relu or clip takes a direct float32
path that gives the same integers (conv_int8_dw.c QNEAR; test_qdepthwise_requant.py); where
relu, clip or no activation follows, channels whose float32 multiplier is proved exact for
every accumulator they can make (:mod:`.qdw_requant`) skip the check near half steps.

Built for AVX-512 with VNNI, layers of unit dilation, kernels up to 8 wide and strides 1 or
2 go one channel at a time straight from the int8 planes, vectors along output rows (two rows
a vector where the output is at most 8 wide), requantized in registers (conv_int8_dw.c
qdw_rows; outputs 9 to 16 wide at stride 1 go the 16-channel way when grouped). Otherwise,
built for AVX-512, every layer goes 16 channels at a time, vectors along channels, row by row
through a ring of a few rows (any width). Built for AVX2 without AVX-512, 3x3 layers of unit
dilation (outputs up to 112 wide at stride 1, 56 at stride 2) go one channel at a time on
int16 pairs of taps straight from the int8 planes (conv_int8_dw.c qdw_p3); other layers whose
columns go at stride 2 (unit dilation, kernels up to 8 wide, inputs at least 16 wide) go one
channel at a time straight from the int8 planes, the products of adjacent input columns
summed in pairs by vpmaddwd (conv_int8_dw.c qdw_s2), and stride-1 layers (unit dilation,
kernels up to 8 wide, outputs 17 to 512 wide) one channel at a time through a zero-padded
float plane, vectors along output rows (qdw_s1). Elsewhere small planes and strided
layers go 8 channels at a time and large stride-1 planes one channel at a time, row by row
(see conv_int8_dw.c). An image's work is split in chunks of whole channel groups, or of output
rows when the groups do not divide evenly between the threads. A float input (the engine
input) is quantized first by the ``reformat`` kernel into a scratch int8 copy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.activations import ACTIVATION_CODES
from edge_infer.engine.backends.cpu.parallel import split
from edge_infer.engine.backends.cpu.stepkit import unit_planes
from edge_infer.engine.backends.cpu.tactics.qdw_requant import proved_multipliers
from edge_infer.engine.tactics.base import Run, Scratch, Tactic
from edge_infer.engine.tactics.quantized import QConvSpec

#: storage kinds of the INT8 kernels (kernels/qsimd.h enum ei_storage)
STORAGE_KINDS = {np.dtype(np.float32): 0, np.dtype(np.float16): 1, np.dtype(np.int8): 2}
_OUT_KINDS = {"fp32": 0, "fp16": 1, "int8": 2}
_RESIDUAL = {"none": 0, "pre": 1, "post": 2}
#: parameter defaults of the activations that take two (as in cpu_direct)
_DEFAULTS = {2: (0.01, 0.0), 3: (-np.inf, np.inf), 7: (0.2, 0.5)}
#: float32 accumulation is exact while a sum has at most this many int8 x int8 terms
MAX_TAPS = 1024
#: channels per group of the grouped path: conv_int8_dw.c CV (8) or, built for AVX-512,
#: CV16 (16; ``conv_int8_dw_group()``); chunks of channels are aligned to the larger
DW_GROUP = 16
#: the 8-channel grouped path (vectors along channels) for inputs at most this wide, and
#: for strided layers at most GROUPED_STRIDED_MAX_WIDTH wide (its buffer holds a whole padded
#: plane per channel group); row by row otherwise. Measured on MobileNetV2's 3x3 layers, one
#: thread, int8 out, under load: grouped 3.6x faster at 7 wide, 2.7x at 14, 1.9x at 28, 1.2x
#: at 56, 2.2x at 56 stride 2, 1.6x at 112 stride 2; at 112 stride 1 row by row 1.07x faster.
#: The 16-channel path (AVX-512) runs every width: at 112 stride 1, 2.3x faster than row by
#: row with VNNI, 1.8x without (one thread, int8 out, under load).
GROUPED_MAX_WIDTH = 64
GROUPED_STRIDED_MAX_WIDTH = 128
#: the AVX2 stride-1 rows path (conv_int8_dw.c qdw_s1): kernels up to S1_MAX_KW wide,
#: outputs S1_MIN_WIDTH to S1_MAX_WIDTH wide. Against the 8-channel path (row by row at 112),
#: MobileNetV2 b1's 3x3 layers, one thread, CPU time, one process alternating
#: (bench/qlayer_cpu_ab.py): 0.75-0.79x at 112, 0.62-0.85x at 56, 0.78-0.95x at 28, but
#: 0.91-1.05x at 14 and 1.07-1.11x at 7 (there the 8-channel path stays)
S1_MAX_KW = 8
S1_MIN_WIDTH = 17
S1_MAX_WIDTH = 512
#: a chunk below this many outputs is not worth a thread hand-off
MIN_CHUNK = 4096


def _vnni_constants(
    weight: np.ndarray, mult: np.ndarray, spec: QConvSpec
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The VNNI path's per-layer constants (conv_int8_dw.c qdw_group16v): the weights as
    dwords of 4 taps of a kernel row, [kh * ceil(kw / 4)][C] (bytes in tap order, little
    endian; for a 3x3 layer then :func:`_p3_table`'s rows, the AVX2 pairs path's), -128 x each
    channel's weight sum (int32), and 4 rows of C floats: float32(mult /
    out_scale), then the proved multipliers and byte bounds of :mod:`.qdw_requant` (vmq, lo,
    hi; vmq 0 where not proved, and for layers other than int8 out without residual)."""
    c, _, kh, kw = weight.shape
    g = -(-kw // 4)
    taps = np.zeros((c, kh, 4 * g), np.int8)
    taps[:, :, :kw] = weight.reshape(c, kh, kw)
    qw = np.ascontiguousarray(taps.reshape(c, kh, g, 4).transpose(1, 2, 0, 3))
    qw = np.ascontiguousarray(qw.view("<i4").reshape(kh * g, c))
    qstart = (-128 * weight.reshape(c, -1).astype(np.int64).sum(1)).astype(np.int32)
    scale = spec.out_scale if spec.out_precision == "int8" else 0.0
    qmq = (mult / scale).astype(np.float32) if scale > 0 else np.zeros(c, np.float32)
    proved = [np.zeros(c, np.float32) for _ in range(3)]
    if scale > 0 and spec.residual == "none":
        bias = None if spec.bias is None else np.asarray(spec.bias)
        act, params = spec.activation, tuple(float(p) for p in spec.activation_params)
        proved = list(proved_multipliers(weight, bias, mult, scale, act, params))
    if (kh, kw) == (3, 3):
        table = _p3_table(weight, proved, spec.strides[1])
        qw = np.concatenate([qw.reshape(-1), table.reshape(-1)])
    return qw, qstart, np.ascontiguousarray(np.concatenate([qmq, *proved]))


def _pair(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """int16 pairs (lo, hi) as int32 dwords (lo in the low half)."""
    return (lo.astype(np.int64) & 0xFFFF | (hi.astype(np.int64) & 0xFFFF) << 16).astype(np.uint32)


def _p3_table(weight: np.ndarray, proved: list[np.ndarray], sx: int) -> np.ndarray:
    """The AVX2 3x3 pairs path's per-channel constants (conv_int8_dw.c qp3_proved), after
    the VNNI rows of ``qw``: [C][8] dwords, the weight pairs (w0, w1), (w3, w4), (w6, w7),
    (w2, w5) and (0, w8) at stride 1 or (w8, 0) at stride 2, the bits of the proved
    multiplier vmq (0: not proved), and the byte bounds lo and hi, each byte of a dword."""
    w = weight.reshape(weight.shape[0], 9)
    zero = np.zeros_like(w[:, 0])
    last = _pair(zero, w[:, 8]) if sx == 1 else _pair(w[:, 8], zero)
    vmq, lo, hi = proved
    bytes4 = np.uint32(0x01010101)
    table = np.stack(
        [
            _pair(w[:, 0], w[:, 1]),
            _pair(w[:, 3], w[:, 4]),
            _pair(w[:, 6], w[:, 7]),
            _pair(w[:, 2], w[:, 5]),
            last,
            np.asarray(vmq, np.float32).view(np.uint32),
            (lo.astype(np.int64).astype(np.uint8).astype(np.uint32) * bytes4),
            (hi.astype(np.int64).astype(np.uint8).astype(np.uint32) * bytes4),
        ],
        axis=1,
    )
    return np.ascontiguousarray(table.astype(np.uint32).view(np.int32))


def has_s1() -> bool:
    """Whether the library has the AVX2 stride-1 rows path (conv_int8_dw.c qdw_s1)."""
    lib = native.library()
    try:  # an older library (the A/B benches' old side) has no such entry
        return lib is not None and int(lib.conv_int8_dw_s1()) == 1
    except AttributeError:
        return False


def group_width() -> int:
    """Channels per group of the library's grouped path (8, or 16 built for AVX-512)."""
    lib = native.library()
    return int(lib.conv_int8_dw_group()) if lib is not None else 8


class QDepthwiseNative(Tactic):
    """INT8 depthwise convolution in C (see the module docstring)."""

    name = "qdepthwise_native"

    def __init__(self, spec: QConvSpec) -> None:
        self.spec = spec
        code = ACTIVATION_CODES[spec.activation]
        params = list(spec.activation_params)
        defaults = _DEFAULTS.get(code, (0.0, 0.0))
        self.act = int(code)
        self.params = tuple(float(v) for v in (*params, *defaults[len(params) :])[:2])

    def _prepared(self) -> tuple[Any, ...]:
        """The layer's constants, computed once per tactic (every context binds with them, as
        QConvNative's and QPointwiseNative's): float32 weights [C][taps], the int32 bias (or
        None), float64 x_scale x w_scale, and the VNNI path's constants (qw, qstart, qmq)."""
        cached = getattr(self, "_prep", None)
        if cached is not None:
            return cached
        s = self.spec
        c, (kh, kw) = s.x_shape[1], s.kernel
        weights = np.ascontiguousarray(np.asarray(s.weight, np.float32).reshape(c, kh * kw))
        bias = None if s.bias is None else np.ascontiguousarray(s.bias, np.int32)
        mult = np.ascontiguousarray(float(s.x_scale) * np.asarray(s.w_scale, np.float64))
        qw, qstart, qmq = _vnni_constants(np.asarray(s.weight, np.int8), mult, s)
        self._prep: tuple[Any, ...] = (weights, bias, mult, qw, qstart, qmq)
        return self._prep

    @classmethod
    def applicable(cls, spec: QConvSpec) -> bool:
        kh, kw = spec.kernel
        out_ok = spec.out_precision in _OUT_KINDS and (
            spec.out_precision != "int8"
            or (spec.out_scale > 0 and 1.0 / spec.out_scale < float(np.finfo(np.float32).max))
        )
        return (
            spec.depthwise
            and spec.weight.shape[1] == 1
            and kh * kw <= MAX_TAPS
            and np.dtype(spec.weight.dtype) == np.int8
            and spec.activation in ACTIVATION_CODES
            and np.dtype(spec.x_dtype) in STORAGE_KINDS
            and (spec.z_dtype is None or np.dtype(spec.z_dtype) in STORAGE_KINDS)
            and spec.residual in _RESIDUAL
            and out_ok
            and native.available()
        )

    def _s1(self) -> bool:
        """The AVX2 stride-1 rows path (conv_int8_dw.c qdw_s1, ``grouped == 2``)."""
        s = self.spec
        return (
            has_s1()
            and s.strides == (1, 1)
            and s.dilations == (1, 1)
            and s.kernel[1] <= S1_MAX_KW
            and S1_MIN_WIDTH <= s.out_shape[3] <= S1_MAX_WIDTH
        )

    def _grouped(self) -> bool:
        if group_width() == 16:  # its buffers are a few rows: grouped at any width
            return True
        w = self.spec.x_shape[3]
        strided = self.spec.strides != (1, 1)
        return w <= GROUPED_MAX_WIDTH or (strided and w <= GROUPED_STRIDED_MAX_WIDTH)

    def _buffer_floats(self, grouped: bool, wq: int) -> int:
        s = self.spec
        _, _, ho, wo = s.out_shape
        (kh, kw), (sy, sx), (dy, dx) = s.kernel, s.strides, s.dilations
        if grouped:
            hp, wp = (ho - 1) * sy + (kh - 1) * dy + 1, (wo - 1) * sx + (kw - 1) * dx + 1
            # CV = 8: interleaved padded planes, the accumulators, one plane per channel;
            # CV16: the row ring and a zero row, a row's accumulators, 16 channel rows (a
            # library built for another CPU, as the aarch64 replay runs it, may take either)
            eight = 8 * (hp * wp + 2 * (-(-ho * wo // 8) * 8))
            wp16 = (-(-wo // 4) * 4 - 1) * sx + (kw - 1) * dx + 1  # blocks of 4 pixels (QB)
            wo16 = -(-wo // 16) * 16
            sixteen = 16 * (((kh - 1) * dy + 2) * wp16 + 2 * wo16)
            # VNNI (int8 quads of 16 channels x 4 pixels, 16 floats' bytes each): the ring and
            # a zero row of nq quads, a byte row, then as CV16
            nq = (wo - 1) * sx + 4 * (-(-kw // 4) - 1) + 1
            vnni = 16 * (((kh - 1) * dy + 2) * nq + -(-(nq + 3) // 4) + 2 * wo16)
            return max(eight, sixteen, vnni, self._s2_floats())
        # the ring, a zero slot, a row's sums
        return max(((kh - 1) * dy + 2) * sx * wq + wq, self._s2_floats())

    def _s1_floats(self) -> int:
        """The stride-1 rows path's buffer (conv_int8_dw.c qdw_s1): the zero-padded float
        plane of a chunk's rows (at most ho + kh - 1 rows of whole vectors of 8 and kw - 1
        columns, rounded up to 8) and an output row's accumulators; at least the row-by-row
        path's (other builds take it)."""
        (kh, kw), (_, _, ho, wo) = self.spec.kernel, self.spec.out_shape
        nv = -(-wo // 8)
        np_ = -(-(nv * 8 + kw - 1) // 8) * 8
        return max((ho + kh - 1) * np_ + nv * 8, self._buffer_floats(False, nv * 8 + kw - 1))

    def _p3_floats(self) -> int:
        """The AVX2 3x3 pairs path's buffer (conv_int8_dw.c qdw_p3, taken in C whatever
        ``grouped`` says): the accumulators of a chunk's rows (whole vectors of 8) for the
        general epilogue."""
        return self.spec.out_shape[2] * -(-self.spec.out_shape[3] // 8) * 8

    def _s2_floats(self) -> int:
        """The AVX2 stride-2 path's buffer (conv_int8_dw.c qdw_s2): an output row's
        accumulators (whole vectors of 8) and a zero input row (bytes)."""
        w, wo = self.spec.x_shape[3], self.spec.out_shape[3]
        return -(-wo // 8) * 8 + -(-w // 4)

    def _chunks(self, c: int, ho: int, workers: int) -> list[tuple[int, int, int, int]]:
        """(c0, c1, oy0, oy1) of one image: 2 * workers chunks (workers if that many are
        too small), of whole channel groups when the groups divide evenly, else of rows
        (all channels), so that every thread gets the same work at batch 1."""
        _, _, _, wo = self.spec.out_shape
        if workers <= 1:
            return [(0, c, 0, ho)]
        groups = -(-c // DW_GROUP)
        for parts in (2 * workers, workers):
            if parts > 1 and c * ho * wo // parts >= MIN_CHUNK and groups % parts == 0:
                return [(c0, c1, 0, ho) for c0, c1 in split(c, parts, align=DW_GROUP)]
        parts = max(1, min(workers, c * ho * wo // MIN_CHUNK, ho))
        if parts == 1:
            return [(0, c, 0, ho)]
        return [(0, c, oy0, oy1) for oy0, oy1 in split(ho, parts)]

    def _int8_input(self, x: np.ndarray, scratch: Scratch, before: list[Run]) -> np.ndarray:
        """``x`` as the kernel reads it: int8 planes; a float input quantized (reformat)."""
        s = self.spec
        if x.dtype == np.int8 and unit_planes(x):
            return x
        xq = scratch(x.shape, np.int8, "qdw_in")
        if x.dtype == np.int8:
            before.append(lambda: np.copyto(xq, x))
            return xq
        if not unit_planes(x):
            xc = scratch(x.shape, x.dtype, "qdw_in_float")
            before.append(lambda: np.copyto(xc, x))
            x = xc
        n, c, h, w = x.shape
        for b in range(n):
            args = dict(
                x=x.ctypes.data + x.strides[0] * b,
                xkind=STORAGE_KINDS[x.dtype],
                xscale=0.0,
                xrs=x.strides[1] // x.itemsize,
                y=xq.ctypes.data + xq.strides[0] * b,
                ykind=2,
                yscale=float(s.x_scale),
                yrs=h * w,
                rows=c,
                n=h * w,
            )
            before.append(native.NativeCall("reformat_f32", args, (x, xq)))
        return xq

    def bind(self, inputs: list[Any], outputs: list[np.ndarray], scratch: Scratch) -> Run:
        s = self.spec
        before: list[Run] = []
        after: list[Run] = []
        x = self._int8_input(np.asarray(inputs[0]), scratch, before)
        out = outputs[0]
        if not unit_planes(out):
            tmp = scratch(out.shape, out.dtype, "qdw_out")
            after.append(lambda: np.copyto(out, tmp))
            out = tmp
        z = inputs[4] if len(inputs) > 4 and s.residual != "none" else None
        if z is not None and not unit_planes(z):
            zc = scratch(z.shape, z.dtype, "qdw_residual")
            before.append(lambda z=z: np.copyto(zc, z))
            z = zc
        n, c, h, w = s.x_shape
        _, _, ho, wo = s.out_shape
        (kh, kw), (sy, sx), (dy, dx) = s.kernel, s.strides, s.dilations
        wq = -(-wo // 8) * 8 + ((kw - 1) * dx) // sx
        s1 = self._s1()
        grouped = self._grouped() and not s1
        size = self._s1_floats() if s1 else self._buffer_floats(grouped, wq)
        size = max(size, self._p3_floats())
        weights, bias, mult, qw, qstart, qmq = self._prepared()
        workers = getattr(scratch, "workers", 1)
        chunks: list[Any] = []
        for b in range(n):
            for c0, c1, oy0, oy1 in self._chunks(c, ho, workers):
                rows = scratch((size,), np.float32, None)  # one per chunk: they run together
                args = dict(
                    x=x.ctypes.data + x.strides[0] * b,
                    xcs=x.strides[1],
                    xrs=x.strides[2],
                    h=h,
                    w=w,
                    pt=s.pads[0],
                    pl=s.pads[1],
                    sy=sy,
                    sx=sx,
                    kh=kh,
                    kw=kw,
                    dy=dy,
                    dx=dx,
                    wq=wq,
                    grouped=2 if s1 else int(grouped),
                    rows=rows.ctypes.data,
                    wts=weights.ctypes.data,
                    bias=None if bias is None else bias.ctypes.data,
                    mult=mult.ctypes.data,
                    c0=c0,
                    c1=c1,
                    ho=ho,
                    wo=wo,
                    out=out.ctypes.data + out.strides[0] * b,
                    okind=_OUT_KINDS[s.out_precision],
                    ocs=out.strides[1] // out.itemsize,
                    oscale=float(s.out_scale),
                    act=self.act,
                    p0=self.params[0],
                    p1=self.params[1],
                    residual=_RESIDUAL[s.residual] if z is not None else 0,
                    z=None if z is None else z.ctypes.data + z.strides[0] * b,
                    zkind=0 if z is None else STORAGE_KINDS[z.dtype],
                    zcs=0 if z is None else z.strides[1] // z.itemsize,
                    zscale=float(s.z_scale),
                    oy0=oy0,
                    oy1=oy1,
                    qw=qw.ctypes.data,
                    qstart=qstart.ctypes.data,
                    qmq=qmq.ctypes.data,
                    qn=c,
                )
                keep = (x, out, z, rows, weights, bias, mult, qw, qstart, qmq)
                chunks.append(native.NativeCall("conv_int8_dw_f32", args, keep))
        pool = getattr(scratch, "pool", None)
        steps: list[Run] = list(before)
        if pool is not None and len(chunks) > 1:
            steps.append(pool.bind(chunks))
        else:
            steps.extend(chunks)
        steps.extend(after)
        if len(steps) == 1:
            return steps[0]

        def run() -> None:
            for step in steps:
                step()

        return run


__all__ = ["QDepthwiseNative"]
