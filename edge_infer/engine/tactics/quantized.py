"""What an INT8 convolution (``edge_infer::QConv``) is to the tactic machinery: its spec.

Backend-generic: the static shapes, storage dtypes, int8 weights with their per-channel
scales, geometry and epilogue (residual, activation, output storage) that a backend's
tactic binds to. The semantics are the reference op's
(:func:`edge_infer.engine.ops.quantize.qconv`); a tactic must reproduce them bit for bit
(int32 accumulators, the float64 requantization, the stored result).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_infer.engine.ir import Node
from edge_infer.engine.ops.quantize import int8_value_range
from edge_infer.engine.tactics.base import ConvGeometry

QCONV_DOMAIN = "edge_infer"


@dataclass(frozen=True)
class QConvSpec(ConvGeometry):
    """An INT8 2-D convolution with static shapes, read off a QConv node."""

    x_shape: tuple[int, int, int, int]
    #: int8 storage at ``x_scale``, or a float tensor the layer quantizes itself
    x_dtype: np.dtype
    out_shape: tuple[int, int, int, int]
    weight: np.ndarray  # int8 (Cout, Cin/group, kh, kw)
    w_scale: np.ndarray  # per output channel
    bias: np.ndarray | None  # int32, in units of x_scale * w_scale
    x_scale: float
    strides: tuple[int, int]
    pads: tuple[int, int, int, int]  # top, left, bottom, right
    dilations: tuple[int, int]
    group: int
    activation: str = ""
    activation_params: tuple[float, ...] = ()
    residual: str = "none"  # none | pre (act(y + z)) | post (act(y) + z)
    z_dtype: np.dtype | None = None
    z_scale: float = 0.0
    out_precision: str = "fp32"  # fp32 | fp16 | int8
    out_scale: float = 0.0
    #: the int8 values the input can hold (ops.quantize.int8_value_range): the AVX2 int8
    #: tiles' speed depends on it, so it is part of the timing-cache key
    x_range: tuple[int, int] = (-128, 127)

    @property
    def depthwise(self) -> bool:
        return self.group > 1 and self.group == self.cin == self.cout

    def attrs(self) -> dict[str, Any]:
        """The reference op's keyword arguments (``ops.quantize.qconv``)."""
        return dict(
            x_scale=self.x_scale,
            group=self.group,
            strides=list(self.strides),
            pads=list(self.pads),
            dilations=list(self.dilations),
            kernel_shape=list(self.kernel),
            activation=self.activation,
            activation_params=list(self.activation_params),
            residual=self.residual,
            out_precision=self.out_precision,
            out_scale=self.out_scale,
            z_scale=self.z_scale,
        )

    def signature(self) -> str:
        """What determines a tactic's speed: the timing-cache key of this layer."""
        z = "-" if self.z_dtype is None else np.dtype(self.z_dtype).name
        return (
            f"qconv x{list(self.x_shape)}:{np.dtype(self.x_dtype).name} "
            f"w{list(self.weight.shape)} s{list(self.strides)} p{list(self.pads)} "
            f"d{list(self.dilations)} g{self.group} act={self.activation or '-'} "
            f"res={self.residual}:{z} out={self.out_precision}"
            + (f" x_range={list(self.x_range)}" if np.dtype(self.x_dtype) == np.int8 else "")
        )


def _const(node: Node, k: int) -> np.ndarray | None:
    v = node.inputs[k] if len(node.inputs) > k else None
    return None if v is None else v.const


def qconv_spec(node: Node) -> QConvSpec | None:
    """The QConvSpec of a 2-D QConv node with static shapes and constant weights, else None."""
    if node.op_type != "QConv" or node.domain != QCONV_DOMAIN:
        return None
    x, w, ws = node.inputs[0], node.inputs[1], node.inputs[2]
    b = node.inputs[3] if len(node.inputs) > 3 else None
    z = node.inputs[4] if len(node.inputs) > 4 else None
    out = node.outputs[0]
    if (
        x is None
        or w is None
        or ws is None
        or w.const is None
        or ws.const is None
        or (b is not None and b.const is None)
        or x.type is None
        or out.type is None
        or len(x.shape) != 4
        or not x.type.is_static
        or not out.type.is_static
        or (z is not None and (z.type is None or tuple(z.shape) != tuple(out.shape)))
    ):
        return None
    a = node.attrs
    pads = list(a.get("pads") or [0, 0, 0, 0])
    return QConvSpec(
        x_shape=tuple(x.shape),  # type: ignore[arg-type]
        x_dtype=np.dtype(x.dtype),
        out_shape=tuple(out.shape),  # type: ignore[arg-type]
        weight=w.const,
        w_scale=np.asarray(ws.const),
        bias=None if b is None else b.const,
        x_scale=float(a["x_scale"]),
        strides=tuple(a.get("strides") or [1, 1]),  # type: ignore[arg-type]
        pads=(pads[0], pads[1], pads[2], pads[3]),
        dilations=tuple(a.get("dilations") or [1, 1]),  # type: ignore[arg-type]
        group=int(a.get("group", 1)),
        activation=a.get("activation", ""),
        activation_params=tuple(float(p) for p in a.get("activation_params", [])),
        residual=a.get("residual", "none"),
        z_dtype=None if z is None else np.dtype(z.dtype),
        z_scale=float(a.get("z_scale", 0.0)),
        out_precision=a.get("out_precision", "fp32"),
        out_scale=float(a.get("out_scale", 0.0)),
        x_range=int8_value_range(x) if np.dtype(x.dtype) == np.int8 else (-128, 127),
    )


__all__ = ["QConvSpec", "qconv_spec"]
