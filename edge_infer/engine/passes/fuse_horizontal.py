"""Horizontal fusion: sibling convolutions that read the same input become one wider conv.

Conv/FusedConv nodes with the same input, group 1, the same kernel size, strides, (explicit)
pads, dilations and activation — and no residual — are replaced by one FusedConv over the
concatenated weights and biases, followed by a ``Split`` on the channel axis whose outputs are
the original outputs. :mod:`eliminate_concat` then marks the Split outputs as views of the
wide conv's output, so the merge costs no copy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_infer.engine.ir import Graph, Node, TensorType, Value
from edge_infer.engine.ops.fused import DOMAIN
from edge_infer.engine.passes.base import Pass, PassResult
from edge_infer.engine.passes.patterns import (
    FUSED_OPSET,
    fused_conv_attrs,
    is_conv,
    is_fused_conv,
    members_of,
)


def _key(node: Node, x: Value) -> tuple[Any, ...] | None:
    """What siblings must share to merge, or ``None`` if ``node`` cannot be merged."""
    if not (is_conv(node) or is_fused_conv(node)) or node.inputs[0] is not x:
        return None
    ins = node.inputs
    if (
        ins[1] is None
        or ins[1].const is None
        or (len(ins) > 2 and ins[2] is not None and ins[2].const is None)
    ):
        return None
    attrs = fused_conv_attrs(node)
    if attrs["group"] != 1 or attrs["residual"] != "none" or len(ins) > 3:
        return None
    return (
        tuple(attrs["kernel_shape"]),
        tuple(attrs["strides"]),
        tuple(attrs["pads"]),
        tuple(attrs["dilations"]),
        attrs["activation"],
        tuple(attrs["activation_params"]),
        ins[1].dtype,
        node.outputs[0].type.shape[2:],  # type: ignore[union-attr]
    )


def _sibling_groups(x: Value) -> list[list[Node]]:
    groups: dict[tuple[Any, ...], list[Node]] = {}
    for node in x.consumers:
        key = _key(node, x)
        if key is not None:
            groups.setdefault(key, []).append(node)
    return [g for g in groups.values() if len(g) > 1]


def _merge(graph: Graph, x: Value, siblings: list[Node]) -> None:
    first = siblings[0]
    outs = [n.outputs[0] for n in siblings]
    weights = [n.inputs[1].const for n in siblings]  # type: ignore[union-attr]
    sizes = [int(w.shape[0]) for w in weights]  # type: ignore[union-attr]
    dtype = weights[0].dtype  # type: ignore[union-attr]
    biases = [n.inputs[2] if len(n.inputs) > 2 else None for n in siblings]
    w = graph.add_constant(f"{first.name}_W_merged", np.concatenate(weights, axis=0))
    b = None
    if any(v is not None for v in biases):
        b = graph.add_constant(
            f"{first.name}_B_merged",
            np.concatenate(
                [
                    np.zeros(m, dtype) if v is None else np.asarray(v.const, dtype)
                    for v, m in zip(biases, sizes, strict=True)
                ]
            ),
        )
    attrs = fused_conv_attrs(first)
    members = [m for n in siblings for m in members_of(n)]
    shape = outs[0].shape
    wide = graph.add_value(
        f"{first.name}_merged_out", TensorType((shape[0], sum(sizes), *shape[2:]), outs[0].dtype)
    )
    for node in siblings:
        graph.remove_node(node, force=True)
    fused = graph.add_node(
        "FusedConv",
        [x, w] + ([b] if b is not None else []),
        [wide],
        attrs,
        name=f"{first.name}_merged",
        domain=DOMAIN,
    )
    fused.meta["members"] = members
    graph.opsets[DOMAIN] = FUSED_OPSET
    split_attrs: dict[str, Any] = {"axis": 1}
    split_inputs: list[Value | None] = [wide]
    if graph.opsets.get("", 17) >= 13:
        split_inputs.append(
            graph.add_constant(f"{first.name}_split_sizes", np.array(sizes, np.int64))
        )
    else:
        split_attrs["split"] = sizes
    split = graph.add_node("Split", split_inputs, outs, split_attrs, name=f"{first.name}_split")
    split.meta["members"] = []


class FuseHorizontal(Pass):
    """Merge sibling convolutions over one input into one conv followed by a Split."""

    name = "fuse_horizontal"

    def run(self, graph: Graph) -> PassResult:
        modified = False
        sources = [*graph.inputs, *(out for n in graph.nodes for out in n.outputs)]
        for x in sources:
            for siblings in _sibling_groups(x):
                _merge(graph, x, siblings)
                modified = True
        if modified:
            graph.topological_sort()
        return PassResult(graph, modified)
