"""Precision assignment: decide, layer by layer, whether it runs in INT8, FP16 or FP32.

Rules, in order of priority:

1. ``--layer-precision NAME:PREC`` overrides win (a name matches a layer's name, an original
   ONNX node fused into it, or one of its output tensors); an unknown name or ``int8`` on a
   layer that cannot be quantized is a :class:`BuildError`.
2. FP16 safety: a layer whose output or input exceeded the FP16 range (``|x| > 65504``)
   during calibration, or whose weights do not fit FP16, stays in FP32 (with a warning naming
   it).
3. INT8 is given to 2-D convolutions (Conv/FusedConv) and fully connected layers (Gemm,
   MatMul by a constant) with constant float32 weights whose
   input tensor has a calibrated scale; other layers get the fallback precision (FP16 when
   ``--fp16`` is also given, else FP32). A convolution without a scale falls back, named, as
   does one reading a Softmax output (:func:`int8_exclusion`).
4. Data-movement layers (reshape, concat, slicing, max-pooling, nearest-neighbour resize)
   carry no precision of their own: they move values that are already stored at their
   producer's precision (:mod:`.storage`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from edge_infer.engine.ir import Graph, Node
from edge_infer.engine.ops.quantize import FP16_MAX
from edge_infer.engine.options import PRECISIONS
from edge_infer.errors import BuildError

log = logging.getLogger(__name__)

#: layers that only move or select values: exact at any storage precision
DATA_MOVEMENT = frozenset(
    {
        "Reshape",
        "Flatten",
        "Squeeze",
        "Unsqueeze",
        "Transpose",
        "Concat",
        "Split",
        "Slice",
        "Gather",
        "Identity",
        "MaxPool",
        "Shape",
        "Expand",
        "Tile",
        "DepthToSpace",
        "SpaceToDepth",
    }
)
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})


@dataclass
class Assignment:
    """The chosen precision per layer name, and why layers fell back."""

    layers: dict[str, str] = field(default_factory=dict)
    fallbacks: dict[str, str] = field(default_factory=dict)  # layer -> reason
    fp16_overflow: list[str] = field(default_factory=list)

    def count(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for p in self.layers.values():
            counts[p] = counts.get(p, 0) + 1
        return counts


def is_quantizable(node: Node) -> bool:
    """A 2-D Conv/FusedConv or a fully connected layer (Gemm / MatMul) with constant float32
    weights and a float32 input."""
    if node.op_type in ("Gemm", "MatMul") and node.domain == "":
        return _is_quantizable_fc(node)
    if node.op_type not in ("Conv", "FusedConv") or node.domain not in ("", "edge_infer"):
        return False
    if (node.op_type == "Conv") != (node.domain == ""):
        return False
    x, w = node.inputs[0], node.inputs[1]
    b = node.inputs[2] if len(node.inputs) > 2 else None
    if x is None or w is None or w.const is None or x.is_const or x.type is None:
        return False
    if len(x.shape) != 4 or x.dtype != np.float32 or w.const.dtype != np.float32:
        return False
    if b is not None and b.const is None:
        return False
    return node.attrs.get("auto_pad", "NOTSET") in ("NOTSET", "VALID")


def _is_quantizable_fc(node: Node) -> bool:
    x, w = node.inputs[0], node.inputs[1]
    c = node.inputs[2] if len(node.inputs) > 2 else None
    if x is None or w is None or w.const is None or x.is_const or x.type is None:
        return False
    if x.dtype != np.float32 or w.const.dtype != np.float32 or w.const.ndim != 2:
        return False
    if node.op_type == "MatMul":
        return len(x.shape) >= 2
    a = node.attrs
    n = w.const.shape[0] if a.get("transB", 0) else w.const.shape[1]
    bias_ok = c is None or (
        c.const is not None and c.const.size == n and c.const.shape[-1:] == (n,)
    )
    return (
        len(x.shape) == 2
        and a.get("transA", 0) == 0
        and a.get("alpha", 1.0) == 1.0
        and (c is None or a.get("beta", 1.0) == 1.0)
        and bias_ok
    )


def int8_exclusion(node: Node) -> str | None:
    """Why a quantizable layer should still not run in INT8 (a fallback rule), or None.

    A convolution reading a Softmax output (YOLOv8's DFL head) turns a probability
    distribution into an expectation: a calibrated clip of the rare large probabilities shifts
    every box edge, so that layer keeps the fallback precision.
    """
    producer = node.i(0)
    if producer is not None and producer.op_type == "Softmax":
        return f"input is a Softmax distribution ('{producer.name}'); INT8 clipping shifts it"
    return None


def is_float_compute(node: Node) -> bool:
    """A layer that computes new float values (so its precision matters)."""
    if node.meta.get("noop") or node.op_type in DATA_MOVEMENT or node.op_type in QDQ_OPS:
        return False
    if (
        node.op_type == "Resize"
        and not node.domain
        and node.attrs.get("mode", "nearest") == "nearest"
    ):
        return False  # selects input values: exact at any storage precision
    return any(v.type is not None and v.dtype == np.float32 for v in node.outputs)


def has_explicit_quantization(graph: Graph) -> bool:
    return any(n.op_type in QDQ_OPS and n.domain == "" for n in graph.nodes)


def _names(node: Node) -> set[str]:
    return {node.name, *node.meta.get("members", []), *(v.name for v in node.outputs)}


def _weights_fit_fp16(node: Node) -> bool:
    for v in node.inputs:
        const = None if v is None else v.const
        if (
            const is not None
            and const.dtype == np.float32
            and const.size
            and float(np.max(np.abs(const))) > FP16_MAX
        ):
            return False
    return True


def assign_precision(
    graph: Graph,
    mode: str,
    *,
    fallback: str = "fp32",
    overrides: Mapping[str, str] | None = None,
    scales: Mapping[str, float] | None = None,
    fp16_overflow: set[str] | None = None,
) -> Assignment:
    """Choose every compute layer's precision (see the module docstring)."""
    if mode not in PRECISIONS or fallback not in ("fp32", "fp16"):
        raise BuildError(
            f"precision must be one of {PRECISIONS} (fallback fp32/fp16), "
            f"got {mode!r} / {fallback!r}"
        )
    overrides = dict(overrides or {})
    scales = scales or {}
    overflow = fp16_overflow or set()
    result = Assignment()
    used: set[str] = set()
    default = fallback if mode == "int8" else mode
    for node in graph.nodes:
        if not is_float_compute(node):
            continue
        names = _names(node)
        wanted = next((overrides[n] for n in sorted(names) if n in overrides), None)
        used |= names & overrides.keys()
        quantizable = is_quantizable(node)
        if wanted is not None:
            if wanted == "int8" and not quantizable:
                raise BuildError(
                    f"--layer-precision {node.name}:int8: layer '{node.name}' "
                    f"({node.op_type}) cannot run in INT8; only 2-D convolutions "
                    "and fully connected layers with constant weights can"
                )
            if wanted == "int8" and node.inputs[0].name not in scales:  # type: ignore[union-attr]
                raise BuildError(
                    f"--layer-precision {node.name}:int8: no calibration scale for "
                    f"its input '{node.inputs[0].name}'; recalibrate"
                )  # type: ignore[union-attr]
            choice = wanted
        elif mode == "int8" and quantizable:
            x = node.inputs[0].name  # type: ignore[union-attr]
            excluded = int8_exclusion(node)
            if excluded:
                choice = default
                result.fallbacks[node.name] = excluded
            elif x in scales:
                choice = "int8"
            else:
                choice = default
                result.fallbacks[node.name] = f"no calibration scale for input '{x}'"
        else:
            choice = default
        if choice in ("fp16", "int8") and wanted != "fp16":
            # an FP16 layer would store an overflowing output, or read (as FP16) an input
            # that overflowed: both become inf
            touched = [*node.outputs, *(v for v in node.inputs if v is not None)]
            hot = [v.name for v in touched if v.name in overflow]
            out_fp16 = choice == "fp16" or default == "fp16"
            if hot and out_fp16:
                result.fp16_overflow.append(node.name)
                result.fallbacks[node.name] = f"{', '.join(hot)} exceeds the FP16 range"
                choice = "fp32" if choice == "fp16" else choice
        if choice == "fp16" and not _weights_fit_fp16(node):
            result.fp16_overflow.append(node.name)
            result.fallbacks[node.name] = "weights exceed the FP16 range"
            choice = "fp32"
        result.layers[node.name] = choice
    unknown = sorted(set(overrides) - used)
    if unknown:
        raise BuildError(
            f"--layer-precision names no layer called {', '.join(unknown)}; "
            "`edge-infer inspect ENGINE` lists the layer names"
        )
    if result.fp16_overflow:
        log.warning("FP16 overflow: kept in FP32: %s", ", ".join(result.fp16_overflow))
    return result
