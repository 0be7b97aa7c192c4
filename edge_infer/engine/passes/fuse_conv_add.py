"""Fuse a residual Add into the convolution that feeds it.

``Add(conv(x), z)`` becomes ``FusedConv(x, W, B, z, residual="pre")`` — an activation after
the Add is then taken by :mod:`fuse_conv_act` (``act(conv + b + z)``). When the conv already
carries its activation, ``Add(act(conv(x)), z)`` becomes ``residual="post"``
(``act(conv + b) + z``). The residual ``z`` must have exactly the conv output's shape and
dtype (no broadcasting), and the conv output must feed only this Add and not be a graph
output.
"""

from __future__ import annotations

from edge_infer.engine.ir import Graph, Node, Value
from edge_infer.engine.passes.base import Pass, PassResult
from edge_infer.engine.passes.patterns import (
    fused_conv_attrs,
    is_conv,
    is_fused_conv,
    members_of,
    only_use,
    replace_nodes,
)


def _residual_mode(node: Node | None) -> str | None:
    """The residual mode a conv-like ``node`` would take, or ``None`` if it cannot take one."""
    if is_conv(node):
        return "pre"
    if not is_fused_conv(node) or node.attrs.get("residual", "none") != "none":  # type: ignore[union-attr]
        return None
    return "post" if node.attrs.get("activation") else "pre"  # type: ignore[union-attr]


def _match(graph: Graph, add: Node) -> tuple[Node, Value, str] | None:
    """``(conv, z, mode)`` for a fusable residual ``add``."""
    if add.op_type != "Add" or add.domain != "" or len(add.inputs) != 2:
        return None
    out = add.outputs[0]
    for y, z in (add.inputs, add.inputs[::-1]):
        if y is None or z is None or y is z:
            continue
        conv = y.producer
        mode = _residual_mode(conv)
        if mode is None or only_use(graph, y) is not add:
            continue
        if z.type != y.type or out.type != y.type:
            continue  # broadcasting (or a dtype change) is not a residual
        return conv, z, mode  # type: ignore[return-value]
    return None


class FuseConvAdd(Pass):
    """Conv/FusedConv + residual Add → FusedConv(residual="pre" | "post")."""

    name = "fuse_conv_add"

    def run(self, graph: Graph) -> PassResult:
        modified = False
        for add in graph.iter_nodes():
            match = _match(graph, add)
            if match is None:
                continue
            conv, z, mode = match
            attrs = fused_conv_attrs(conv)
            attrs["residual"] = mode
            x, w, *rest = conv.inputs
            bias = rest[0] if rest else None
            replace_nodes(
                graph,
                [conv, add],
                "FusedConv",
                [x, w, bias, z],
                [add.outputs[0]],
                attrs,
                name=conv.name,
                members=members_of(conv) + members_of(add),
            )
            modified = True
        if modified:
            graph.topological_sort()
        return PassResult(graph, modified)
