"""Detection head per scale: the anchor concat is sunk below the per-anchor layers after it.

YOLOv8-style heads (the demo detector, YOLOv8n) concatenate every scale's box and class
logits into one ``(N, 4·bins + classes, anchors)`` tensor, split it again into box and class
logits, and decode the box logits with a distribution focal loss (DFL) chain
``Reshape (N, 4, bins, A) → Transpose (0, 2, 1, 3) → Softmax (axis 1) → Conv 1×1 (bins → 1)``.
Held in one piece, that tensor and the transposed copy the chain makes are the largest
activations of the head (half of an INT8 engine's arena, in float32). Both rewrites here
are exact — the layers they move only move data, or compute each anchor on its own:

1. **Concat–Split cancellation.** ``Split(Concat_axis2(Reshape(Concat_axis1(p_i0, p_i1, …))))``
   along the channel axis, with split sizes equal to the per-scale pieces' channels: output
   ``k`` becomes ``Concat_axis2(Reshape(p_ik, (N, c_k, HW_i)))``. The box and class logits
   are then two tensors, and the 70-channel per-scale concats are gone.
2. **DFL per scale.** ``Conv1x1(Softmax_1(Transpose_0213(Reshape(Concat_axis2(x_i)))))``, with
   each ``x_i`` a reshape of a 4-D tensor ``b_i`` of ``4·bins`` channels and the conv having
   one output channel: each scale runs ``Reshape(b_i, (4N, bins, 1, HW_i)) → Softmax (axis 1)
   → the same conv`` into its range of a ``(4N, 1, 1, A)`` concat, which is reshaped to the
   conv's ``(N, 1, 4, A)`` output. No transposed copy is made (the softmax runs over the
   bins axis where it lies), the softmax can run in place on ``b_i``, and ``b_i`` dies as soon
   as its scale is decoded instead of living until every scale is done.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_infer.engine.ir import Graph, Node, TensorType, Value
from edge_infer.engine.passes.base import Pass, PassResult
from edge_infer.engine.passes.patterns import (
    explicit_conv_attrs,
    is_conv,
    is_fused_conv,
    members_of,
)


def _static(value: Value | None) -> bool:
    return value is not None and value.type is not None and value.type.is_static


def _shape(value: Value) -> tuple[int, ...]:
    return tuple(int(d) for d in value.shape)


def _axis(node: Node, rank: int, default: int = 0) -> int:
    axis = int(node.attrs.get("axis", default))
    return axis + rank if axis < 0 else axis


def _single_use(graph: Graph, value: Value, op_type: str) -> Node | None:
    """The one node reading ``value`` if it is a plain ``op_type`` and ``value`` is not an
    engine output."""
    if len(value.uses) != 1 or graph.is_graph_output(value):
        return None
    node = value.uses[0][0]
    return node if node.op_type == op_type and not node.domain else None


def _producer(value: Value | None, op_type: str) -> Node | None:
    node = None if value is None else value.producer
    return node if node is not None and node.op_type == op_type and not node.domain else None


def _reshape(graph: Graph, x: Value, shape: tuple[int, ...], name: str) -> Value:
    target = graph.add_constant(f"{name}/shape", np.array(shape, np.int64))
    out = graph.add_value(f"{name}_output", TensorType(shape, x.dtype))
    graph.add_node("Reshape", [x, target], [out], name=name)
    return out


@dataclass
class _HeadConcat:
    """``concat`` (axis 2) of ``reshapes`` of the per-scale channel concats ``scales``."""

    concat: Node
    reshapes: list[Node]
    scales: list[Node]


def _head_concat(graph: Graph, concat: Node) -> _HeadConcat | None:
    out = concat.outputs[0]
    if not _static(out) or out.type.rank != 3 or _axis(concat, 3) != 2:  # type: ignore[union-attr]
        return None
    reshapes, scales = [], []
    for x in concat.inputs:
        reshape = _producer(x, "Reshape")
        inner = None if reshape is None else _producer(reshape.inputs[0], "Concat")
        if reshape is None or inner is None or _single_use(graph, x, "Concat") is not concat:  # type: ignore[arg-type]
            return None
        y = inner.outputs[0]
        if not _static(y) or y.type.rank != 4 or _axis(inner, 4) != 1:  # type: ignore[union-attr]
            return None
        if _single_use(graph, y, "Reshape") is not reshape or not all(
            _static(p) and p.producer is not None for p in inner.inputs
        ):
            return None
        n, c, h, w = _shape(y)
        if _shape(x) != (n, c, h * w):  # type: ignore[arg-type]
            return None
        reshapes.append(reshape)
        scales.append(inner)
    return _HeadConcat(concat, reshapes, scales)


def _split_sizes(node: Node) -> list[int] | None:
    if not all(_static(o) for o in node.outputs):
        return None
    return [int(o.shape[1]) for o in node.outputs]


def _cancel_concat_split(graph: Graph, split: Node) -> bool:
    """Rewrite 1 of the module docstring, for the Split ``split``; whether it applied."""
    x = split.inputs[0]
    concat = _producer(x, "Concat")
    if concat is None or x is None or _single_use(graph, x, "Split") is not split:
        return False
    if _axis(split, 3) != 1 or any(graph.is_graph_output(o) for o in split.outputs):
        return False
    head = _head_concat(graph, concat)
    sizes = _split_sizes(split)
    if head is None or sizes is None:
        return False
    if any([int(p.shape[1]) for p in s.inputs] != sizes for s in head.scales):  # type: ignore[union-attr]
        return False
    pieces = [[p for p in s.inputs if p is not None] for s in head.scales]
    outputs = list(split.outputs)
    for node in (split, concat, *head.reshapes, *head.scales):
        graph.remove_node(node, force=True)
    for k, out in enumerate(outputs):
        parts = []
        for i, scale in enumerate(pieces):
            n, c, h, w = _shape(scale[k])
            parts.append(_reshape(graph, scale[k], (n, c, h * w), f"{split.name}/{k}/scale{i}"))
        graph.add_node("Concat", parts, [out], {"axis": 2}, name=f"{split.name}/{k}")
    return True


@dataclass
class _Dfl:
    concat: Node
    reshape: Node
    transpose: Node
    softmax: Node
    conv: Node
    bins: int


def _dfl_chain(graph: Graph, concat: Node) -> _Dfl | None:
    x = concat.outputs[0]
    if not _static(x) or x.type.rank != 3 or _axis(concat, 3) != 2:  # type: ignore[union-attr]
        return None
    reshape = _single_use(graph, x, "Reshape")
    if reshape is None:
        return None
    n, _, a = _shape(x)
    y = reshape.outputs[0]
    if not _static(y) or _shape(y)[:2] != (n, 4) or _shape(y)[3:] != (a,) or y.type.rank != 4:  # type: ignore[union-attr]
        return None
    bins = _shape(y)[2]
    transpose = _single_use(graph, y, "Transpose")
    if transpose is None or list(transpose.attrs.get("perm", [])) != [0, 2, 1, 3]:
        return None
    softmax = _single_use(graph, transpose.outputs[0], "Softmax")
    if softmax is None or graph.opsets.get("", 1) < 13 or _axis(softmax, 4, -1) != 1:
        return None
    s = softmax.outputs[0]
    conv = s.uses[0][0] if len(s.uses) == 1 and not graph.is_graph_output(s) else None
    if not (is_conv(conv) or is_fused_conv(conv)) or conv.inputs[0] is not s:  # type: ignore[union-attr]
        return None
    attrs = explicit_conv_attrs(conv)  # type: ignore[arg-type]
    w = conv.inputs[1]  # type: ignore[union-attr]
    if (
        attrs["kernel_shape"] != [1, 1]
        or attrs["strides"] != [1, 1]
        or attrs["dilations"] != [1, 1]
        or any(attrs["pads"])
        or attrs["group"] != 1
        or w is None
        or _shape(w)[:2] != (1, bins)
        or conv.attrs.get("residual", "none") != "none"  # type: ignore[union-attr]
    ):
        return None
    for piece in concat.inputs:
        r = _producer(piece, "Reshape")
        if r is None or not _static(r.inputs[0]) or r.inputs[0].type.rank != 4:  # type: ignore[union-attr]
            return None
        if len(piece.uses) != 1 or graph.is_graph_output(piece):  # type: ignore[union-attr]
            return None
        if _shape(r.inputs[0])[:2] != (n, 4 * bins):  # type: ignore[arg-type]
            return None
    return _Dfl(concat, reshape, transpose, softmax, conv, bins)  # type: ignore[arg-type]


def _dfl_per_scale(graph: Graph, dfl: _Dfl) -> None:
    """Rewrite 2 of the module docstring."""
    pieces = [p.producer for p in dfl.concat.inputs]  # type: ignore[union-attr]
    sources = [r.inputs[0] for r in pieces]  # type: ignore[union-attr]
    conv, out = dfl.conv, dfl.conv.outputs[0]
    n, m, four, a = _shape(out)
    weights = list(conv.inputs[1:])
    for node in (conv, dfl.softmax, dfl.transpose, dfl.reshape, dfl.concat, *pieces):
        graph.remove_node(node, force=True)  # type: ignore[arg-type]
    parts = []
    for i, b in enumerate(sources):
        hw = int(np.prod(_shape(b)[2:]))  # type: ignore[arg-type]
        base = f"{conv.name}/scale{i}"
        logits = _reshape(graph, b, (n * four, dfl.bins, 1, hw), f"{base}/reshape")  # type: ignore[arg-type]
        probs = graph.add_value(f"{base}/softmax_output", logits.type)
        softmax = graph.add_node("Softmax", [logits], [probs], {"axis": 1}, name=f"{base}/softmax")
        part = graph.add_value(f"{base}_output", TensorType((n * four, m, 1, hw), out.dtype))
        decode = graph.add_node(
            conv.op_type, [probs, *weights], [part], dict(conv.attrs), name=base, domain=conv.domain
        )
        # per-layer precision overrides naming the original layers still find them
        softmax.meta["members"] = members_of(dfl.softmax)
        decode.meta["members"] = members_of(conv)
        parts.append(part)
    joined_type = TensorType((n * four, m, 1, a), out.dtype)
    joined = graph.add_value(f"{conv.name}/concat_output", joined_type)
    graph.add_node("Concat", parts, [joined], {"axis": 3}, name=f"{conv.name}/concat")
    target = graph.add_constant(f"{conv.name}/shape", np.array((n, m, four, a), np.int64))
    graph.add_node("Reshape", [joined, target], [out], name=f"{conv.name}/reshape")


class SplitDetectHead(Pass):
    """Run a YOLO-style detection head's box decoding per scale (see the module docstring)."""

    name = "split_detect_head"

    def run(self, graph: Graph) -> PassResult:
        modified = False
        for node in list(graph.nodes):
            if node.graph is graph and node.op_type == "Split" and not node.domain:
                modified |= _cancel_concat_split(graph, node)
        for node in list(graph.nodes):
            if node.graph is not graph or node.op_type != "Concat" or node.domain:
                continue
            dfl = _dfl_chain(graph, node)
            if dfl is not None:
                _dfl_per_scale(graph, dfl)
                modified = True
        if modified:
            graph.remove_unused_values()
            graph.topological_sort()
        return PassResult(graph, modified)
