"""FP16 layers as a tunable layer kind: an ``edge_infer::Fp16Layer`` (float16 storage around
a float layer, ops/quantize.py) read as the layer it wraps plus its storage dtypes.

A backend whose fast kernels compute in float32 runs such a layer as its FP32 tactic with
the conversions at the edges: float16 inputs widened (exact), float32 inputs listed in
``round_inputs`` rounded to float16's values, float16 weights upcast once, and every float
output rounded to nearest even float16 — the rounding points of the reference, so the
results differ from it only by the FP32 tactic's own summation order.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from edge_infer.engine.ir import Node, Value
from edge_infer.engine.ops.recurrent_cells import cell_spec
from edge_infer.engine.tactics.base import ConvSpec
from edge_infer.engine.tactics.recurrent import _ATTRS, RECURRENT_OPS, RecurrentSpec

#: (shape, dtype name) of one input or output; None for an omitted optional input
IoType = tuple[tuple[int, ...], str] | None


@dataclass(frozen=True)
class Fp16Spec:
    """An Fp16Layer with static shapes: the wrapped op, its storage, its convolution (if any)."""

    op: str
    op_domain: str
    opset: int
    op_attrs: Mapping[str, Any] = field(hash=False, compare=False)
    round_inputs: tuple[int, ...]
    fp16_outputs: tuple[int, ...]
    inputs: tuple[IoType, ...]
    outputs: tuple[IoType, ...]
    #: constant inputs by index, float16 ones upcast to float32 (the reference's arithmetic)
    consts: Mapping[int, np.ndarray] = field(hash=False, compare=False)
    #: the wrapped (Fused)Conv with float32 weights, when the layer is one
    conv: ConvSpec | None = field(default=None, hash=False, compare=False)
    #: the wrapped LSTM/GRU/RNN (float32 weights), when the layer is one
    recurrent: RecurrentSpec | None = field(default=None, hash=False, compare=False)

    def signature(self) -> str:
        """The timing-cache key: the wrapped layer's own (a ConvSpec's, or op and shapes),
        and the storage dtypes."""
        io = f"in{[t and t[1] for t in self.inputs]} out{[t and t[1] for t in self.outputs]}"
        if self.conv is not None:
            return f"fp16 {self.conv.signature()} {io}"
        if self.recurrent is not None:
            return f"fp16 {self.recurrent.signature()} {io}"
        shapes = [t and list(t[0]) for t in self.inputs]
        attrs = sorted((k, repr(v)) for k, v in self.op_attrs.items())
        return f"fp16 {self.op_domain or 'ai.onnx'}::{self.op} {shapes} {io} {attrs}"


def _io(v: Value | None) -> IoType:
    if v is None:
        return None
    return tuple(int(d) for d in v.shape), np.dtype(v.dtype).name


def fp16_spec(node: Node) -> Fp16Spec | None:
    """The Fp16Spec of an Fp16Layer whose inputs and outputs have static shapes, else None."""
    if node.op_type != "Fp16Layer" or node.domain != "edge_infer":
        return None
    values = [v for v in (*node.inputs, *node.outputs) if v is not None]
    if any(v.type is None or not v.type.is_static for v in values):
        return None
    a = node.attrs
    consts = {
        k: v.const.astype(np.float32) if v.const.dtype == np.float16 else v.const
        for k, v in enumerate(node.inputs)
        if v is not None and v.const is not None
    }
    spec = Fp16Spec(
        op=str(a.get("op", "")),
        op_domain=str(a.get("op_domain", "")),
        opset=int(a.get("opset", 17)),
        op_attrs=dict(a.get("op_attrs") or {}),
        round_inputs=tuple(int(k) for k in a.get("round_inputs", ())),
        fp16_outputs=tuple(int(k) for k in a.get("fp16_outputs", ())),
        inputs=tuple(_io(v) for v in node.inputs),
        outputs=tuple(_io(v) for v in node.outputs),
        consts=consts,
    )
    conv = _wrapped_conv(spec)
    if conv is not None:
        return replace(spec, conv=conv)
    recurrent = _wrapped_recurrent(spec)
    return spec if recurrent is None else replace(spec, recurrent=recurrent)


def _wrapped_recurrent(spec: Fp16Spec) -> RecurrentSpec | None:
    """The RecurrentSpec of the wrapped ONNX LSTM/GRU/RNN (as
    :func:`~edge_infer.engine.tactics.recurrent.recurrent_spec` reads one: a static 3-D
    input, constant recurrence weights, sequence lengths absent or constant), or None."""
    if spec.op_domain or spec.op not in RECURRENT_OPS:
        return None
    x = spec.inputs[0] if spec.inputs else None
    r = spec.consts.get(2)
    has_lens = len(spec.inputs) > 4 and spec.inputs[4] is not None
    if (
        x is None
        or len(x[0]) != 3
        or x[1] not in ("float16", "float32")
        or r is None
        or r.dtype != np.float32
        or (has_lens and 4 not in spec.consts)
        or any(t is not None and t[1] not in ("float16", "float32") for t in spec.outputs)
    ):
        return None
    a = spec.op_attrs
    attrs = {k: a[k] for k in _ATTRS if a.get(k) is not None}
    try:
        cell = cell_spec(spec.op, hidden_size=a.get("hidden_size"), R_shape=r.shape, **attrs)
    except Exception:  # invalid attributes: the reference kernel reports them
        return None
    return RecurrentSpec(spec.op, cell, x[0], len(spec.outputs), attrs)  # type: ignore[arg-type]


def _wrapped_conv(spec: Fp16Spec) -> ConvSpec | None:
    """The ConvSpec of the wrapped 2-D Conv/FusedConv with float32 weights (as
    :func:`~edge_infer.engine.tactics.base.conv_spec` reads one), or None."""
    if (spec.op_domain, spec.op) not in (("", "Conv"), ("edge_infer", "FusedConv")):
        return None
    x, w = spec.inputs[0], spec.consts.get(1)
    b = spec.inputs[2] if len(spec.inputs) > 2 else None
    bias = spec.consts.get(2)
    if (
        x is None
        or w is None
        or len(x[0]) != 4
        or x[1] not in ("float16", "float32")
        or w.dtype != np.float32
        or w.ndim != 4
        or (b is not None and (bias is None or bias.dtype != np.float32))
        or spec.outputs[0] is None
        or len(spec.outputs) != 1
    ):
        return None
    z = spec.inputs[3] if len(spec.inputs) > 3 else None
    if z is not None and (z[1] not in ("float16", "float32") or 3 in spec.consts):
        return None
    attrs = spec.op_attrs
    if attrs.get("auto_pad", "NOTSET") not in ("NOTSET", "VALID") and spec.op == "Conv":
        return None
    pads = list(attrs.get("pads") or [0, 0, 0, 0])
    return ConvSpec(
        x_shape=x[0],  # type: ignore[arg-type]
        out_shape=spec.outputs[0][0],  # type: ignore[arg-type]
        weight=w,
        bias=bias,
        strides=tuple(attrs.get("strides") or [1, 1]),  # type: ignore[arg-type]
        pads=(pads[0], pads[1], pads[2], pads[3]),
        dilations=tuple(attrs.get("dilations") or [1, 1]),  # type: ignore[arg-type]
        group=int(attrs.get("group", 1)),
        activation=attrs.get("activation", ""),
        activation_params=tuple(attrs.get("activation_params", [])),
        residual=attrs.get("residual", "none"),
    )


__all__ = ["Fp16Spec", "fp16_spec"]
