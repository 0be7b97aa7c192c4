"""Fuse chains of elementwise ops into one ``Pointwise`` node (one pass over memory).

A chain is a run of ≥ 2 elementwise ops where each op's output feeds only the next op (and is
not a graph output). Every op keeps the running value's shape and dtype; its other operands
are constants (broadcasting allowed as long as the running value does not grow) or tensors of
exactly the running value's shape. ``x * Sigmoid(x)`` (SiLU not after a conv) is such a chain:
``Sigmoid($acc)`` then ``Mul($acc, input 0)``. Existing Pointwise nodes extend chains too.
"""

from __future__ import annotations

from typing import Any

from edge_infer.engine.ir import Graph, Node, Value
from edge_infer.engine.ops.fused import DOMAIN
from edge_infer.engine.passes.base import Pass, PassResult
from edge_infer.engine.passes.patterns import is_float, members_of, only_use, replace_nodes

UNARY = frozenset(
    {
        "Relu",
        "LeakyRelu",
        "Sigmoid",
        "Tanh",
        "HardSigmoid",
        "HardSwish",
        "Elu",
        "Selu",
        "Celu",
        "Softplus",
        "Softsign",
        "Mish",
        "Gelu",
        "ThresholdedRelu",
        "Exp",
        "Log",
        "Sqrt",
        "Reciprocal",
        "Neg",
        "Abs",
        "Floor",
        "Ceil",
        "Round",
        "Erf",
        "Sin",
        "Cos",
        "Clip",
    }
)
BINARY = frozenset({"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "PRelu"})


def _is_pointwise(node: Node) -> bool:
    return node.op_type == "Pointwise" and node.domain == DOMAIN


def _elementwise(node: Node) -> bool:
    if _is_pointwise(node):
        return True
    if node.domain != "" or len(node.outputs) != 1 or not is_float(node.outputs[0]):
        return False
    if node.op_type in BINARY:
        return len(node.inputs) == 2
    return node.op_type in UNARY


class _Chain:
    """The chain being built: its fused inputs, steps, nodes and running value."""

    def __init__(self, main: Value) -> None:
        self.inputs: list[Value] = [main]
        self.steps: list[dict[str, Any]] = []
        self.nodes: list[Node] = []
        self.acc = main

    def index_of(self, value: Value) -> int:
        for k, v in enumerate(self.inputs):
            if v is value:
                return k
        self.inputs.append(value)
        return len(self.inputs) - 1

    def operand(self, value: Value | None) -> str | int | bool | None:
        """The step argument for ``value``, or ``False`` when it cannot be fused in."""
        if value is None:
            return None
        if value is self.acc:
            return "$acc"
        if value.const is None and value.type != self.acc.type:
            return False  # a run-time tensor must have exactly the running value's shape
        return self.index_of(value)

    def try_add(self, node: Node) -> bool:
        """Append ``node`` (which reads ``self.acc``); False if it does not fit."""
        out = node.outputs[0]
        reads_first = node.op_type in UNARY or node.op_type == "PRelu"
        if out.type != self.acc.type or (reads_first and node.inputs[0] is not self.acc):
            return False
        saved = list(self.inputs)
        if _is_pointwise(node):
            steps = self._inline(node)
        else:
            args = [self.operand(v) for v in node.inputs]
            steps = (
                None
                if any(a is False for a in args)
                else [{"op": node.op_type, "args": args, "attrs": dict(node.attrs)}]
            )
        if steps is None:
            self.inputs = saved
            return False
        self.steps += steps
        self.nodes.append(node)
        self.acc = out
        return True

    def _inline(self, node: Node) -> list[dict[str, Any]] | None:
        """The steps of a Pointwise ``node`` rewritten onto this chain's inputs."""
        ins = node.inputs
        if not ins or ins[0] is not self.acc or any(v is self.acc for v in ins[1:]):
            return None
        mapping: dict[int, Any] = {}
        for k, v in enumerate(ins[1:], start=1):
            arg = self.operand(v)
            if arg is False:
                return None
            mapping[k] = arg
        steps = []
        for step in node.attrs["steps"]:
            args = []
            for a in step["args"]:
                if a == 0 or (isinstance(a, int) and a not in mapping):
                    return None  # the inner main input is an intermediate value here
                args.append(a if a is None or a == "$acc" else mapping[a])
            steps.append({**step, "args": args})
        return steps


def _start(node: Node) -> _Chain | None:
    """A chain headed by ``node``, or ``None`` when it has no run-time main input."""
    if _is_pointwise(node):
        chain = _Chain(node.inputs[0])  # type: ignore[arg-type]
        chain.inputs = list(node.inputs)  # type: ignore[arg-type]
        chain.steps = [dict(s) for s in node.attrs["steps"]]
        chain.nodes = [node]
        chain.acc = node.outputs[0]
        return chain
    out = node.outputs[0]
    candidates = (
        node.inputs[:1] if node.op_type in UNARY or node.op_type == "PRelu" else node.inputs
    )
    for main in candidates:
        if main is not None and main.const is None and main.type == out.type:
            chain = _Chain(main)
            return chain if chain.try_add(node) else None
    return None


class FusePointwise(Pass):
    """Chains of ≥ 2 single-consumer elementwise ops → one Pointwise node."""

    name = "fuse_pointwise"

    def run(self, graph: Graph) -> PassResult:
        modified = False
        opset = graph.opsets.get("", 17)
        for node in graph.iter_nodes():
            if not _elementwise(node):
                continue
            chain = _start(node)
            if chain is None:
                continue
            while True:
                user = only_use(graph, chain.acc)
                if user is None or not _elementwise(user) or not chain.try_add(user):
                    break
            if len(chain.nodes) < 2:
                continue
            head = chain.nodes[0]
            replace_nodes(
                graph,
                chain.nodes,
                "Pointwise",
                chain.inputs,
                [chain.acc],
                {"steps": chain.steps, "opset": opset},
                name=head.name,
                members=[m for n in chain.nodes for m in members_of(n)],
            )
            modified = True
        if modified:
            graph.topological_sort()
        return PassResult(graph, modified)
