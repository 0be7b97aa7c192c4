"""Fuse Conv (+bias) and the activation after it into one FusedConv ("CBR").

Recognised activations: Relu, LeakyRelu, Clip with constant bounds (Relu6), Sigmoid, SiLU
written as ``x * Sigmoid(x)`` (the conv output feeding exactly a Sigmoid and the Mul of the
two), HardSwish, HardSigmoid, Mish, Gelu (the opset-20 op and the erf form
``x * 0.5 * (1 + Erf(x / sqrt 2))`` as PyTorch exports it), Tanh and Elu. A FusedConv without
activation (e.g. the residual "pre" form from :mod:`fuse_conv_add`) takes one too. The conv
output must have no other consumer and must not be a graph output.
"""

from __future__ import annotations

import math

import numpy as np

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

#: ONNX op -> FusedConv activation for the ops without parameters
_PLAIN = {
    "Relu": "relu",
    "Sigmoid": "sigmoid",
    "HardSwish": "hard_swish",
    "Mish": "mish",
    "Tanh": "tanh",
}

#: Clip's bounds when omitted, and ONNX's float32 attribute defaults, as the kernels see them
_FLT_MAX = float(np.finfo(np.float32).max)
_ALPHA_LEAKY = float(np.float32(0.01))
_ALPHA_HARD_SIGMOID = float(np.float32(0.2))

Match = tuple[list[Node], Value, str, list[float]]  # (act nodes, final output, act, params)


def _takes_activation(node: Node) -> bool:
    if is_conv(node):
        return True
    return (
        is_fused_conv(node)
        and not node.attrs.get("activation")
        and node.attrs.get("residual", "none") in ("none", "pre")
    )


def _scalar(value: Value | None) -> float | None:
    if value is None or value.const is None or value.const.size != 1:
        return None
    return float(np.asarray(value.const).reshape(-1)[0])


def _clip_bounds(graph: Graph, node: Node) -> list[float] | None:
    if graph.opsets.get("", 17) < 11:
        return [float(node.attrs.get("min", -_FLT_MAX)), float(node.attrs.get("max", _FLT_MAX))]
    bounds = []
    for index, default in ((1, -_FLT_MAX), (2, _FLT_MAX)):
        value = node.inputs[index] if index < len(node.inputs) else None
        bound = default if value is None else _scalar(value)
        if bound is None:
            return None  # a bound computed at run time
        bounds.append(bound)
    return bounds


def activation_of(graph: Graph, node: Node) -> tuple[str, list[float]] | None:
    """``(activation, params)`` of a single-node activation, or ``None``."""
    op, a = node.op_type, node.attrs
    if node.domain != "":
        return None
    if op in _PLAIN:
        return _PLAIN[op], []
    if op == "LeakyRelu":
        return "leaky_relu", [float(a.get("alpha", _ALPHA_LEAKY))]
    if op == "Elu":
        return "elu", [float(a.get("alpha", 1.0))]
    if op == "HardSigmoid":
        alpha = float(a.get("alpha", _ALPHA_HARD_SIGMOID))
        return "hard_sigmoid", [alpha, float(a.get("beta", 0.5))]
    if op == "Gelu":
        approximate = a.get("approximate", "none")
        if approximate not in ("none", "tanh"):
            return None
        return "gelu", [1.0] if approximate == "tanh" else []
    if op == "Clip":
        bounds = _clip_bounds(graph, node)
        return None if bounds is None else ("clip", bounds)
    return None


def _other(node: Node, value: Value) -> Value | None:
    """The other operand of a binary ``node`` that reads ``value`` once."""
    if len(node.inputs) != 2:
        return None
    a, b = node.inputs
    if (a is value) == (b is value):
        return None
    return b if a is value else a


def _is_op(node: Node | None, op: str) -> bool:
    return node is not None and node.op_type == op and node.domain == ""


def _match_silu(graph: Graph, y: Value) -> Match | None:
    users = [n for n, _ in y.uses]
    if len(users) != 2:
        return None
    sig = next((n for n in users if _is_op(n, "Sigmoid")), None)
    mul = next((n for n in users if _is_op(n, "Mul")), None)
    if sig is None or mul is None or only_use(graph, sig.outputs[0]) is not mul:
        return None
    if _other(mul, y) is not sig.outputs[0]:
        return None
    return [sig, mul], mul.outputs[0], "silu", []


def _next(graph: Graph, value: Value, op: str) -> Node | None:
    """The only consumer of ``value`` if it is an ``op`` node."""
    node = only_use(graph, value)
    return node if _is_op(node, op) else None


def _match_gelu_erf(graph: Graph, y: Value) -> Match | None:
    """``Mul(Mul(y, Add(Erf(Div(y, √2)), 1)), 0.5)``, as torch.onnx exports nn.GELU."""
    users = [n for n, _ in y.uses]
    div = next((n for n in users if _is_op(n, "Div")), None)
    if len(users) != 2 or div is None or div.inputs[0] is not y:
        return None
    if not _close(_scalar(div.inputs[1]), math.sqrt(2)):
        return None
    erf = _next(graph, div.outputs[0], "Erf")
    add = None if erf is None else _next(graph, erf.outputs[0], "Add")
    if add is None or not _close(_scalar(_other(add, erf.outputs[0])), 1.0):  # type: ignore[union-attr]
        return None
    mul = _next(graph, add.outputs[0], "Mul")
    if mul is None or _other(mul, add.outputs[0]) is not y:
        return None
    half = _next(graph, mul.outputs[0], "Mul")
    if half is None or not _close(_scalar(_other(half, mul.outputs[0])), 0.5):
        return None
    return [div, erf, add, mul, half], half.outputs[0], "gelu", []  # type: ignore[list-item]


def _close(value: float | None, target: float) -> bool:
    return value is not None and abs(value - target) <= 1e-6 * abs(target)


def match_activation(graph: Graph, y: Value) -> Match | None:
    """The activation applied to ``y`` by its consumers (and nothing else), if any."""
    if graph.is_graph_output(y):
        return None
    user = only_use(graph, y)
    if user is not None:
        found = activation_of(graph, user) if user.inputs and user.inputs[0] is y else None
        if found is None or len(user.outputs) != 1:
            return None
        return [user], user.outputs[0], found[0], found[1]
    return _match_silu(graph, y) or _match_gelu_erf(graph, y)


class FuseConvActivation(Pass):
    """Conv/FusedConv + activation → FusedConv(activation=...)."""

    name = "fuse_conv_activation"

    def run(self, graph: Graph) -> PassResult:
        modified = False
        for node in graph.iter_nodes():
            if not _takes_activation(node):
                continue
            y = node.outputs[0]
            match = match_activation(graph, y)
            if match is None:
                continue
            act_nodes, out, activation, params = match
            if out.type != y.type:
                continue
            attrs = fused_conv_attrs(node)
            attrs["activation"], attrs["activation_params"] = activation, params
            ins = list(node.inputs) + [None] * (4 - len(node.inputs))
            members = members_of(node) + [m for n in act_nodes for m in members_of(n)]
            replace_nodes(
                graph,
                [node, *act_nodes],
                "FusedConv",
                ins,
                [out],
                attrs,
                name=node.name,
                members=members,
            )
            modified = True
        if modified:
            graph.topological_sort()
        return PassResult(graph, modified)
