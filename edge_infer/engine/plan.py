"""An optimized graph ↔ the JSON plan and tensor table stored in an engine file.

Constants are stored by content hash, so weights shared by the plans of several batch sizes
(or repeated in one graph) are written once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from edge_infer.engine.ir import Graph, TensorType, Value
from edge_infer.engine.onnx_import import array_fingerprint
from edge_infer.errors import EngineFileError, GraphError

_TENSOR_KEY = "__tensor__"


def _json_attr(value: Any, tensors: dict[str, np.ndarray]) -> Any:
    if isinstance(value, np.ndarray):
        key = "t" + array_fingerprint(value)
        tensors[key] = value
        return {_TENSOR_KEY: key}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return [_json_attr(v, tensors) for v in value]
    if isinstance(value, dict):
        return {k: _json_attr(v, tensors) for k, v in value.items()}
    return value


def _attr_from_json(value: Any, tensors: Mapping[str, np.ndarray]) -> Any:
    if isinstance(value, dict):
        if set(value) == {_TENSOR_KEY}:
            return tensors[value[_TENSOR_KEY]]
        return {k: _attr_from_json(v, tensors) for k, v in value.items()}
    if isinstance(value, list):
        return [_attr_from_json(v, tensors) for v in value]
    return value


def graph_to_plan(graph: Graph) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Serialize ``graph`` to a JSON-able plan plus the tensors it references."""
    tensors: dict[str, np.ndarray] = {}
    values: dict[str, Any] = {}

    def record(value: Value) -> str:
        if value.name not in values:
            entry: dict[str, Any] = {
                "shape": list(value.type.shape) if value.type else None,
                "dtype": value.type.dtype.name if value.type else None,
            }
            if value.const is not None:
                key = "t" + array_fingerprint(value.const)
                tensors[key] = value.const
                entry["const"] = key
            if value.meta:
                entry["meta"] = _json_attr(value.meta, tensors)
            values[value.name] = entry
        return value.name

    for value in graph.inputs:
        record(value)
    nodes = []
    for node in graph.nodes:
        nodes.append(
            {
                "name": node.name,
                "op": node.op_type,
                "domain": node.domain,
                "attrs": _json_attr(node.attrs, tensors),
                "inputs": [None if v is None else record(v) for v in node.inputs],
                "outputs": [record(v) for v in node.outputs],
                "meta": _json_attr(node.meta, tensors),
            }
        )
    plan = {
        "name": graph.name,
        "opsets": graph.opsets,
        "inputs": [v.name for v in graph.inputs],
        "outputs": [[name, record(v)] for name, v in graph.outputs],
        "values": values,
        "nodes": nodes,
        "meta": _json_attr(graph.meta, tensors),
    }
    json.dumps(plan)  # fail here, at build time, if anything is not JSON-able
    return plan, tensors


def plan_to_graph(plan: Mapping[str, Any], tensors: Mapping[str, np.ndarray]) -> Graph:
    """Rebuild the graph of a plan; inconsistencies raise :class:`EngineFileError`."""
    try:
        graph = Graph(name=plan["name"], opsets={k: int(v) for k, v in plan["opsets"].items()})
        graph.meta = dict(_attr_from_json(plan.get("meta", {}), tensors))
        made: dict[str, Value] = {}

        def get(name: str) -> Value:
            if name in made:
                return made[name]
            entry = plan["values"][name]
            if "const" in entry:
                value = graph.add_constant(name, tensors[entry["const"]], unique=False)
            else:
                t = None
                if entry["shape"] is not None:
                    t = TensorType(tuple(entry["shape"]), np.dtype(entry["dtype"]))
                value = graph.add_value(name, t, unique=False)
            if "meta" in entry:
                value.meta = _attr_from_json(entry["meta"], tensors)
            made[name] = value
            return value

        for name in plan["inputs"]:
            entry = plan["values"][name]
            made[name] = graph.add_input(
                name, TensorType(tuple(entry["shape"]), np.dtype(entry["dtype"]))
            )
        for n in plan["nodes"]:
            node = graph.add_node(
                n["op"],
                [None if i is None else get(i) for i in n["inputs"]],
                [get(o) for o in n["outputs"]],
                _attr_from_json(n["attrs"], tensors),
                name=n["name"],
                domain=n["domain"],
            )
            node.meta = _attr_from_json(n["meta"], tensors)
        for public, name in plan["outputs"]:
            graph.add_output(get(name), public)
        graph.verify()
    except (KeyError, TypeError, ValueError, GraphError) as exc:
        raise EngineFileError(f"engine plan is inconsistent: {type(exc).__name__}: {exc}") from exc
    return graph
