"""Helpers the fusion passes share: matching single-use chains and replacing node groups.

Rewrites keep the *final* output :class:`~edge_infer.engine.ir.Value` of a fused group (its
name, type, metadata and uses), so graph outputs and later passes see the same value.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edge_infer.engine.ir import Graph, Node, Value
from edge_infer.engine.ops.conv import window_geometry
from edge_infer.engine.ops.fused import DOMAIN
from edge_infer.errors import GraphError

FUSED_OPSET = 1


def only_use(graph: Graph, value: Value) -> Node | None:
    """The node that is the one and only use of ``value`` (not a graph output), else None."""
    uses = value.uses
    if len(uses) != 1 or graph.is_graph_output(value):
        return None
    return uses[0][0]


def const_array(value: Value | None) -> np.ndarray | None:
    return None if value is None else value.const


def members_of(node: Node) -> list[str]:
    """Names of the original nodes a (possibly already fused) node stands for."""
    return list(node.meta.get("members", [node.name]))


def is_float(value: Value | None) -> bool:
    return value is not None and value.type is not None and value.dtype.kind == "f"


def is_conv(node: Node | None) -> bool:
    """A plain ONNX Conv with constant weights (and constant bias, if any), 2 or 3 inputs."""
    if node is None or node.op_type != "Conv" or node.domain != "":
        return False
    ins = node.inputs
    return (
        is_float(ins[0])
        and ins[1] is not None
        and ins[1].is_const
        and (len(ins) < 3 or ins[2] is None or ins[2].is_const)
    )


def is_fused_conv(node: Node | None) -> bool:
    return node is not None and node.op_type == "FusedConv" and node.domain == DOMAIN


def explicit_conv_attrs(node: Node) -> dict[str, Any]:
    """The Conv geometry of ``node`` with auto_pad resolved into explicit ``pads``."""
    x, w = node.inputs[0], node.inputs[1]
    if x is None or w is None or x.type is None or not x.type.is_static:
        raise GraphError(f"node '{node.name}': conv fusion needs static, typed input shapes")
    a = node.attrs
    kernel = [int(k) for k in w.shape[2:]]
    strides, dilations, begin, end, _ = window_geometry(
        node.op_type,
        x.shape[2:],
        kernel,
        a.get("strides"),
        a.get("dilations"),
        a.get("pads"),
        a.get("auto_pad", "NOTSET"),
    )
    return {
        "group": int(a.get("group", 1)),
        "strides": list(strides),
        "pads": list(begin) + list(end),
        "dilations": list(dilations),
        "kernel_shape": kernel,
    }


def fused_conv_attrs(node: Node) -> dict[str, Any]:
    """Full FusedConv attributes for a Conv or FusedConv ``node`` (copies, ready to edit)."""
    if is_fused_conv(node):
        attrs = dict(node.attrs)
        attrs["activation_params"] = list(attrs.get("activation_params", []))
        attrs.setdefault("activation", "")
        attrs.setdefault("residual", "none")
        return attrs
    return {
        **explicit_conv_attrs(node),
        "activation": "",
        "activation_params": [],
        "residual": "none",
    }


def trim_inputs(inputs: Sequence[Value | None]) -> list[Value | None]:
    """Drop trailing omitted inputs (the ONNX convention for optional inputs)."""
    out = list(inputs)
    while out and out[-1] is None:
        out.pop()
    return out


def replace_nodes(
    graph: Graph,
    old: Sequence[Node],
    op_type: str,
    inputs: Sequence[Value | None],
    outputs: Sequence[Value],
    attrs: dict[str, Any],
    *,
    name: str,
    domain: str = DOMAIN,
    members: Sequence[str] | None = None,
) -> Node:
    """Replace the nodes ``old`` by one node producing the existing values ``outputs``.

    Every other output of ``old`` must be unused outside ``old`` (the caller matched a
    closed group). The node order is left to the caller (``graph.topological_sort()``).
    """
    group = {id(n) for n in old}
    keep = {id(v) for v in outputs}
    for node in old:
        for out in node.outputs:
            if id(out) in keep:
                continue
            if graph.is_graph_output(out) or any(id(u) not in group for u in out.consumers):
                raise GraphError(
                    f"cannot fuse '{node.name}': its output '{out.name}' is used outside "
                    "the fused group"
                )
    for node in reversed(list(old)):
        graph.remove_node(node, force=True)
    node = graph.add_node(
        op_type, trim_inputs(inputs), list(outputs), attrs, name=name, domain=domain
    )
    node.meta["members"] = list(members) if members is not None else [n.name for n in old]
    if domain == DOMAIN:
        graph.opsets[DOMAIN] = FUSED_OPSET
    return node
