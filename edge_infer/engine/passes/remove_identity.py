"""Remove nodes that return their input unchanged.

Identity, inference-mode Dropout, and — on the static shapes of a build — Reshape/Flatten/
Squeeze/Unsqueeze/Expand to the input's own shape, Transpose by the identity permutation,
Cast to the input's dtype, Slice that keeps everything with unit steps, and Pad by zeros.
Uses of the output are redirected to the input; a graph output keeps its public name.
"""

from __future__ import annotations

import numpy as np

from edge_infer.engine.ir import Graph, Node, Value
from edge_infer.engine.passes.base import Pass, PassResult

#: ops that only change the shape: a no-op when the output shape is the input shape
_SHAPE_ONLY = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Expand")


def _const_ints(node: Node, index: int) -> list[int] | None:
    """Constant input ``index`` as ints; ``[]`` when omitted; ``None`` when not constant."""
    if index >= len(node.inputs) or node.inputs[index] is None:
        return []
    value = node.inputs[index]
    if value.const is None:  # type: ignore[union-attr]
        return None
    return [int(v) for v in np.asarray(value.const).reshape(-1)]  # type: ignore[union-attr]


def _dropout_is_noop(graph: Graph, node: Node) -> bool:
    for mask in node.outputs[1:]:
        if mask.uses or graph.is_graph_output(mask):
            return False
    mode = node.inputs[2] if len(node.inputs) > 2 else None
    if mode is None:
        return True
    return mode.const is not None and not bool(np.asarray(mode.const).reshape(-1)[0])


def _is_noop(graph: Graph, node: Node) -> bool:
    if node.domain != "" or not node.inputs or node.inputs[0] is None:
        return False
    x, y = node.inputs[0], node.outputs[0]
    if x.type is None or y.type is None or not x.type.is_static or x.type != y.type:
        return False  # every no-op below keeps the exact type
    op = node.op_type
    if op == "Identity":
        return True
    if op == "Dropout":
        return _dropout_is_noop(graph, node)
    if len(node.outputs) != 1:
        return False
    if op in _SHAPE_ONLY or op == "Cast":
        return True
    if op == "Transpose":
        perm = node.attrs.get("perm")
        natural = list(range(x.type.rank))
        return (list(perm) if perm is not None else natural[::-1]) == natural
    if op == "Slice":
        steps = [] if len(node.inputs) == 1 else _const_ints(node, 4)  # opset 1: no steps
        return steps is not None and all(s == 1 for s in steps)
    if op == "Pad":
        pads = node.attrs.get("pads") if len(node.inputs) == 1 else _const_ints(node, 1)
        return pads is not None and all(int(p) == 0 for p in pads)
    return False


class RemoveIdentities(Pass):
    """Redirect the uses of no-op nodes to their inputs and drop the nodes."""

    name = "remove_identities"

    def run(self, graph: Graph) -> PassResult:
        modified = False
        for node in graph.iter_nodes():
            if not _is_noop(graph, node):
                continue
            source: Value = node.inputs[0]  # type: ignore[assignment]
            graph.replace_all_uses_with(node.outputs[0], source)
            graph.remove_node(node, force=True)
            modified = True
        return PassResult(graph, modified)
