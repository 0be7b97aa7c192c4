"""Fold BatchNormalization — and Mul/Add/Sub/Div by constants — into the preceding conv.

Inference BatchNorm is the per-channel affine map ``y * s + t`` with
``s = scale / sqrt(var + eps)`` and ``t = B - mean * s``; so is a Mul/Add/Sub/Div of the conv
output by a scalar or per-output-channel constant. Each folds exactly into the weights and
bias (``W' = W * s`` per output channel, ``b' = b * s + t``), computed in float64 and stored
in the weights' dtype. Only when the conv output has that single consumer and is not a graph
output. Conv and ConvTranspose (any group) are handled.
"""

from __future__ import annotations

import numpy as np

from edge_infer.engine.ir import Graph, Node, Value
from edge_infer.engine.passes.base import Pass, PassResult
from edge_infer.engine.passes.patterns import is_float, members_of, only_use, replace_nodes

Affine = tuple[np.ndarray, np.ndarray]  # (s, t) per output channel, float64


def _foldable_conv(node: Node) -> bool:
    if node.domain != "" or node.op_type not in ("Conv", "ConvTranspose"):
        return False
    ins = node.inputs
    bias = ins[2] if len(ins) > 2 else None
    return (
        is_float(ins[0])
        and ins[1] is not None
        and ins[1].is_const
        and (bias is None or bias.is_const)
        and node.outputs[0].type is not None
    )


def _per_channel(c: np.ndarray, out_shape: tuple, channels: int) -> np.ndarray | None:
    """``c`` as a float64 vector over the output channels, if it is scalar or per-channel."""
    rank = len(out_shape)
    if c.ndim > rank:
        return None
    axis = 1 - (rank - c.ndim)  # where the channel axis of the output lands in ``c``
    for k, d in enumerate(c.shape):
        if d != 1 and not (k == axis and d == channels):
            return None
    return np.broadcast_to(np.asarray(c, dtype=np.float64).reshape(-1), (channels,)).copy()


def _batchnorm_affine(bn: Node, channels: int) -> Affine | None:
    if (
        bn.domain != ""
        or int(bn.attrs.get("training_mode", 0))
        or not int(bn.attrs.get("spatial", 1))
    ):
        return None
    params = bn.inputs[1:5]
    if len(params) != 4 or any(
        p is None or p.const is None or p.const.size != channels for p in params
    ):
        return None
    if any(out.uses for out in bn.outputs[1:]):
        return None
    scale, bias, mean, var = (
        np.asarray(p.const, np.float64).reshape(-1)  # type: ignore[union-attr]
        for p in params
    )
    s = scale / np.sqrt(var + float(bn.attrs.get("epsilon", 1e-5)))
    return s, bias - mean * s


def _arith_affine(node: Node, y: Value, channels: int) -> Affine | None:
    """The affine map of ``node`` = Mul/Add/Sub/Div of ``y`` with a per-channel constant."""
    if node.domain != "" or node.op_type not in ("Mul", "Add", "Sub", "Div"):
        return None
    if len(node.inputs) != 2 or node.outputs[0].type != y.type:
        return None
    a, b = node.inputs
    other, y_first = (b, True) if a is y else (a, False)
    if other is None or other is y or other.const is None:
        return None
    c = _per_channel(other.const, y.shape, channels)
    if c is None:
        return None
    ones, zeros = np.ones(channels), np.zeros(channels)
    op = node.op_type
    if op == "Mul":
        return c, zeros
    if op == "Add":
        return ones, c
    if op == "Sub":
        return (ones, -c) if y_first else (-ones, c)
    return (1.0 / c, zeros) if y_first else None  # c / y is not affine


def _scale_weights(conv: Node, w: np.ndarray, s: np.ndarray) -> np.ndarray:
    if conv.op_type == "Conv":
        return w * s.reshape((-1,) + (1,) * (w.ndim - 1))
    # ConvTranspose: W is (C_in, M/g, k...); output channel m = group * (M/g) + j
    group = int(conv.attrs.get("group", 1))
    cin, mg = w.shape[:2]
    grouped = w.reshape(group, cin // group, mg, *w.shape[2:])
    factor = s.reshape(group, 1, mg, *([1] * (w.ndim - 2)))
    return (grouped * factor).reshape(w.shape)


class FoldBatchNorm(Pass):
    """Fold BatchNorm and constant per-channel Mul/Add/Sub/Div into Conv/ConvTranspose."""

    name = "fold_batchnorm"

    def run(self, graph: Graph) -> PassResult:
        modified = False
        for node in graph.iter_nodes():
            while node.graph is graph and _foldable_conv(node):
                folded = self._fold_next(graph, node)
                if folded is None:
                    break
                node, modified = folded, True
        if modified:
            graph.topological_sort()
        return PassResult(graph, modified)

    def _fold_next(self, graph: Graph, conv: Node) -> Node | None:
        y = conv.outputs[0]
        user = only_use(graph, y)
        if user is None:
            return None
        channels = int(y.shape[1])
        if user.op_type == "BatchNormalization":
            extra = user.outputs[1:]
            if user.inputs[0] is not y or any(graph.is_graph_output(o) for o in extra):
                return None
            affine = _batchnorm_affine(user, channels)
        else:
            affine = _arith_affine(user, y, channels)
        if affine is None or user.outputs[0].type != y.type:
            return None
        s, t = affine
        w_value: Value = conv.inputs[1]  # type: ignore[assignment]
        w = np.asarray(w_value.const, dtype=np.float64)
        b_value = conv.inputs[2] if len(conv.inputs) > 2 else None
        b = np.zeros(channels) if b_value is None else np.asarray(b_value.const, np.float64)
        dtype = w_value.dtype
        new_w = graph.add_constant(
            f"{conv.name}_W_folded", _scale_weights(conv, w, s).astype(dtype)
        )
        new_b = graph.add_constant(f"{conv.name}_B_folded", (b * s + t).astype(dtype))
        return replace_nodes(
            graph,
            [conv, user],
            conv.op_type,
            [conv.inputs[0], new_w, new_b],
            [user.outputs[0]],
            dict(conv.attrs),
            name=conv.name,
            domain="",
            members=[*members_of(conv), *members_of(user)],
        )
