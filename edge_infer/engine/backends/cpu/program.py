"""A CPU program: the graph's nodes as a flat list of bound kernel calls."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_infer.engine.backends.base import Program
from edge_infer.engine.ir import Graph
from edge_infer.engine.shape_inference import node_attrs, resolve_op
from edge_infer.errors import EdgeInferError


@dataclass(frozen=True)
class _Step:
    name: str
    op_type: str
    kernel: Any
    attrs: dict[str, Any]
    #: per input: ("const", array) | ("slot", index) | ("none", None)
    args: tuple[tuple[str, Any], ...]
    outs: tuple[int, ...]


class CpuProgram(Program):
    """Runs the nodes in order; values live in a per-call slot list (state is unused)."""

    def __init__(self, graph: Graph) -> None:
        slots: dict[int, int] = {}

        def slot(value: Any) -> int:
            return slots.setdefault(id(value), len(slots))

        self.input_slots = {v.name: slot(v) for v in graph.inputs}
        steps = []
        for node in graph.nodes:
            op = resolve_op(graph, node)
            args: list[tuple[str, Any]] = []
            for value in node.inputs:
                if value is None:
                    args.append(("none", None))
                elif value.const is not None:
                    args.append(("const", value.const))
                else:
                    args.append(("slot", slot(value)))
            outs = tuple(slot(v) for v in node.outputs)
            steps.append(_Step(node.name, node.op_type, op.kernel, node_attrs(op, node),
                               tuple(args), outs))
        self.steps = tuple(steps)
        self.outputs: tuple[tuple[str, str, Any], ...] = tuple(
            (name, "const", value.const) if value.const is not None
            else (name, "slot", slot(value))
            for name, value in graph.outputs
        )
        self.num_slots = len(slots)
        self.num_layers = len(steps)

    def new_state(self) -> Any:
        return None

    def run(self, state: Any, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        env: list[Any] = [None] * self.num_slots
        for name, index in self.input_slots.items():
            env[index] = feeds[name]
        for step in self.steps:
            args = [a if kind == "const" else env[a] if kind == "slot" else None
                    for kind, a in step.args]
            try:
                result = step.kernel(*args, **step.attrs)
            except Exception as exc:
                raise EdgeInferError(
                    f"{step.op_type} layer '{step.name}' failed at run time: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            if isinstance(result, tuple | list):
                for index, array in zip(step.outs, result, strict=False):
                    env[index] = array
            else:
                env[step.outs[0]] = result
        return {
            name: np.array(ref if kind == "const" else env[ref], copy=True)
            for name, kind, ref in self.outputs
        }

    def describe(self) -> dict[str, Any]:
        return {"layers": [{"name": s.name, "op": s.op_type} for s in self.steps]}
