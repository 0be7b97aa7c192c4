"""ctypes mirror of ``kernels/conv_params.cuh`` (``ConvParams``) and the convolution tactics.

Every convolution kernel (``conv_fp32.cu``, ``conv_depthwise.cu``, ``conv_fp16_wmma.cu``,
``conv_int8.cu``) takes one :class:`ConvParams` by value. A :class:`ConvTactic` names one entry
point (one tile shape of one kernel family) and knows its launch geometry, so the builder can
time every tactic of a layer and the backend can launch the winner.
"""

from __future__ import annotations

import ctypes
import enum
from collections.abc import Sequence
from dataclasses import dataclass

from edge_infer.cuda.activations import encode
from edge_infer.cuda.library import KernelCall, KernelSpec
from edge_infer.errors import BackendError


class Residual(enum.IntEnum):
    """``EiResidual``: FusedConv's ``residual`` attribute."""

    NONE = 0
    PRE = 1
    POST = 2


class TensorView4(ctypes.Structure):
    """An NCHW view: element (n, c, h, w) at ``offset + n*batch + c*channel + h*row + w``."""

    _fields_ = (
        ("offset", ctypes.c_int64),
        ("batch_stride", ctypes.c_int64),
        ("channel_stride", ctypes.c_int32),
        ("row_stride", ctypes.c_int32),
    )


class ConvParams(ctypes.Structure):
    """Field for field ``struct ConvParams`` (pointers are device addresses as integers)."""

    _fields_ = (
        ("x", ctypes.c_void_p),
        ("weight", ctypes.c_void_p),
        ("bias", ctypes.c_void_p),
        ("z", ctypes.c_void_p),
        ("y", ctypes.c_void_p),
        ("w_scale", ctypes.c_void_p),
        ("xv", TensorView4),
        ("zv", TensorView4),
        ("yv", TensorView4),
        *(
            (name, ctypes.c_int32)
            for name in (
                "n",
                "c",
                "h",
                "w",
                "k",
                "r",
                "s",
                "p",
                "q",
                "group",
                "stride_h",
                "stride_w",
                "pad_h",
                "pad_w",
                "dil_h",
                "dil_w",
                "act",
                "residual",
            )
        ),
        ("act_p0", ctypes.c_float),
        ("act_p1", ctypes.c_float),
        ("x_scale", ctypes.c_float),
        ("y_scale", ctypes.c_float),
        ("z_scale", ctypes.c_float),
        ("reserved", ctypes.c_int32),
    )


def tensor_view(strides: Sequence[int], offset: int = 0) -> TensorView4:
    """A :class:`TensorView4` from NCHW element strides (the last one must be 1)."""
    if len(strides) != 4 or strides[3] != 1:
        raise BackendError(
            f"conv tensors are NCHW views with unit column stride; got element "
            f"strides {list(strides)} (make the rows contiguous)"
        )
    return TensorView4(offset, strides[0], strides[1], strides[2])


@dataclass(frozen=True)
class ConvGeometry:
    """The shape of one 2-D convolution (explicit pads; ``pad_h``/``pad_w`` are the leading)."""

    n: int
    c: int
    h: int
    w: int
    k: int
    r: int
    s: int
    p: int
    q: int
    group: int = 1
    stride: tuple[int, int] = (1, 1)
    pad: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)

    @classmethod
    def from_conv(
        cls,
        x_shape: Sequence[int],
        w_shape: Sequence[int],
        *,
        group: int = 1,
        strides: Sequence[int] | None = None,
        pads: Sequence[int] | None = None,
        dilations: Sequence[int] | None = None,
    ) -> ConvGeometry:
        """The geometry of ONNX Conv attributes (pads ``[top, left, bottom, right]``)."""
        from edge_infer.engine.ops.conv import window_geometry

        if len(x_shape) != 4 or len(w_shape) != 4:
            raise BackendError(
                f"CUDA convolutions are 2-D: X {list(x_shape)} and W "
                f"{list(w_shape)} must be rank 4 (N, C, H, W)"
            )
        stride, dilation, begin, _, out = window_geometry(
            "Conv", x_shape[2:], w_shape[2:], strides, dilations, pads, "NOTSET"
        )
        return cls(
            x_shape[0],
            x_shape[1],
            x_shape[2],
            x_shape[3],
            w_shape[0],
            w_shape[2],
            w_shape[3],
            out[0],
            out[1],
            group,
            (stride[0], stride[1]),
            (begin[0], begin[1]),
            (dilation[0], dilation[1]),
        )

    @property
    def depthwise(self) -> bool:
        """One input channel per group: the depthwise kernels apply."""
        return self.c == self.group and self.group > 1

    def fill(self, params: ConvParams) -> ConvParams:
        """Write the geometry fields of ``params``; returns it."""
        for name in ("n", "c", "h", "w", "k", "r", "s", "p", "q", "group"):
            setattr(params, name, getattr(self, name))
        params.stride_h, params.stride_w = self.stride
        params.pad_h, params.pad_w = self.pad
        params.dil_h, params.dil_w = self.dilation
        return params


def conv_params(
    geom: ConvGeometry,
    *,
    x: int,
    x_view: TensorView4,
    weight: int,
    y: int,
    y_view: TensorView4,
    bias: int | None = None,
    z: int | None = None,
    z_view: TensorView4 | None = None,
    activation: str = "",
    activation_params: Sequence[float] = (),
    residual: str = "none",
    w_scale: int | None = None,
    x_scale: float = 0.0,
    y_scale: float = 0.0,
    z_scale: float = 0.0,
) -> ConvParams:
    """The :class:`ConvParams` of one FusedConv/QConv layer; pointers are device addresses.

    ``activation``/``activation_params``/``residual`` are FusedConv's attributes. INT8
    kernels need ``w_scale`` (float per output channel) and ``x_scale``; an int8 output
    ``y_scale``; an int8 residual ``z_scale``.
    """
    try:
        mode = Residual[residual.upper()]
    except KeyError:
        raise BackendError(f"residual must be one of none/pre/post, got {residual!r}") from None
    if (mode is not Residual.NONE) != (z is not None and z_view is not None):
        raise BackendError(
            f"residual={residual!r} needs z and z_view exactly when it is not 'none'"
        )
    p = geom.fill(ConvParams())
    p.x, p.xv, p.weight, p.bias, p.y, p.yv = x, x_view, weight, bias, y, y_view
    if z_view is not None:
        p.z, p.zv = z, z_view
    p.act, p.act_p0, p.act_p1 = encode(activation, activation_params)
    p.residual = int(mode)
    p.w_scale, p.x_scale, p.y_scale, p.z_scale = w_scale, x_scale, y_scale, z_scale
    return p


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class ConvTactic:
    """One convolution entry point: its kernel family, precision, tile and launch geometry.

    ``family`` is ``direct`` (conv_fp32.cu), ``igemm`` / ``wmma`` / ``dp4a`` (implicit GEMM
    tiles of BM output channels x BN output pixels) or ``depthwise``. ``threads`` per block.
    ``out`` is the output (and residual) element type: ``f32``, ``f16`` or ``s8``.
    """

    entry: str
    source: str
    family: str
    precision: str
    out: str
    threads: int
    bm: int = 0
    bn: int = 0
    min_sm: int = 72

    def supports(self, geom: ConvGeometry) -> bool:
        """Whether this tactic computes ``geom`` (depthwise kernels need one channel/group)."""
        return geom.depthwise if self.family == "depthwise" else True

    def launch_dims(self, geom: ConvGeometry) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
        """``(grid, block)`` of this tactic for ``geom`` (see each kernel's header comment)."""
        kg = geom.k // geom.group
        if self.family == "direct":
            grid = (
                _ceil(geom.p * geom.q, self.threads),
                geom.group * _ceil(kg, DIRECT_KPT),
                geom.n,
            )
        elif self.family == "depthwise":
            grid = (_ceil(geom.p * geom.q, self.threads), geom.k, geom.n)
        else:
            grid = (_ceil(geom.n * geom.p * geom.q, self.bn), _ceil(kg, self.bm), geom.group)
        return grid, (self.threads, 1, 1)

    def call(self, geom: ConvGeometry, params: ConvParams) -> KernelCall:
        """The launch of this tactic on ``params`` (filled for ``geom``)."""
        if not self.supports(geom):
            raise BackendError(
                f"{self.entry} computes depthwise convolutions only (one input "
                f"channel per group), not {geom}; pick another tactic"
            )
        grid, block = self.launch_dims(geom)
        return KernelCall(self.entry, grid, block, params)

    def spec(self) -> KernelSpec:
        """The library registration of this entry point."""
        return KernelSpec(self.entry, self.source, ConvParams, self.min_sm)


#: output channels per thread of ``ei_conv_f32_direct`` (EI_DIRECT_KPT)
DIRECT_KPT = 4

#: (BM, BN, threads) of each tile shape, as the .cu files instantiate them
_F32_TILES = ((64, 64, 256), (32, 64, 128), (32, 32, 128), (16, 64, 128))
_F16_TILES = ((64, 64, 128), (32, 64, 64), (32, 32, 128), (16, 64, 64))
_S8_DP4A_TILES = ((64, 64, 256), (32, 32, 128))
_S8_WMMA_TILES = ((64, 64, 128), (32, 32, 128))
_OUTS = ("s8", "f16", "f32")

TACTICS: tuple[ConvTactic, ...] = (
    ConvTactic("ei_conv_f32_direct", "conv_fp32.cu", "direct", "fp32", "f32", 128),
    *(
        ConvTactic(
            f"ei_conv_f32_igemm_{bm}x{bn}x8", "conv_fp32.cu", "igemm", "fp32", "f32", t, bm, bn
        )
        for bm, bn, t in _F32_TILES
    ),
    ConvTactic("ei_conv_depthwise_f32", "conv_depthwise.cu", "depthwise", "fp32", "f32", 128),
    ConvTactic("ei_conv_depthwise_f16", "conv_depthwise.cu", "depthwise", "fp16", "f16", 128),
    *(
        ConvTactic(
            f"ei_conv_depthwise_s8_{out}",
            "conv_depthwise.cu",
            "depthwise",
            "int8",
            out,
            128,
            min_sm=61,
        )
        for out in _OUTS
    ),
    *(
        ConvTactic(
            f"ei_conv_f16_wmma_{bm}x{bn}", "conv_fp16_wmma.cu", "wmma", "fp16", "f16", t, bm, bn
        )
        for bm, bn, t in _F16_TILES
    ),
    *(
        ConvTactic(
            f"ei_conv_s8_dp4a_{bm}x{bn}_{out}",
            "conv_int8.cu",
            "dp4a",
            "int8",
            out,
            t,
            bm,
            bn,
            min_sm=61,
        )
        for bm, bn, t in _S8_DP4A_TILES
        for out in _OUTS
    ),
    *(
        ConvTactic(
            f"ei_conv_s8_wmma_{bm}x{bn}_{out}", "conv_int8.cu", "wmma", "int8", out, t, bm, bn
        )
        for bm, bn, t in _S8_WMMA_TILES
        for out in _OUTS
    ),
)

TACTICS_BY_ENTRY: dict[str, ConvTactic] = {t.entry: t for t in TACTICS}

SPECS: tuple[KernelSpec, ...] = tuple(t.spec() for t in TACTICS)


def tactics(precision: str, out: str | None = None) -> tuple[ConvTactic, ...]:
    """The tactics of one precision (``fp32``, ``fp16``, ``int8``), optionally one output."""
    return tuple(t for t in TACTICS if t.precision == precision and (out is None or t.out == out))


def candidates(geom: ConvGeometry, precision: str, out: str, sm: int) -> tuple[ConvTactic, ...]:
    """The tactics the builder times for one layer: ``precision`` (fp32/fp16/int8) writing
    ``out`` (f32/f16/s8), compiled for ``sm``, that compute ``geom`` (depthwise kernels only
    for depthwise layers)."""
    return tuple(t for t in tactics(precision, out) if t.min_sm <= sm and t.supports(geom))


def gemm_flops(geom: ConvGeometry) -> int:
    """Multiply-adds of ``geom`` (for throughput figures)."""
    return geom.n * geom.k * geom.p * geom.q * (geom.c // geom.group) * geom.r * geom.s


__all__ = [
    "DIRECT_KPT",
    "SPECS",
    "TACTICS",
    "TACTICS_BY_ENTRY",
    "ConvGeometry",
    "ConvParams",
    "ConvTactic",
    "Residual",
    "TensorView4",
    "candidates",
    "conv_params",
    "gemm_flops",
    "tactics",
    "tensor_view",
]
