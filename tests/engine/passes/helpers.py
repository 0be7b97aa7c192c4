"""Small graphs for pass tests, and the check every pass test makes.

``build`` turns a few ``onnx.helper`` nodes into a typed, static IR graph (import, bind
shapes, infer with constant folding: what ``builder.specialize`` hands the passes).
``check_pass`` runs a pass and asserts what every pass promises: ``modified`` as expected and
then ``False`` on a second run, a valid graph, types that shape inference agrees with, and
the same outputs as the unoptimized graph on random inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edge_infer.engine.ir import Graph
from edge_infer.engine.onnx_import import import_model
from edge_infer.engine.passes.base import Pass
from edge_infer.engine.reference import execute_graph
from edge_infer.engine.shape_inference import bind_input_shapes, infer_shapes

#: (rtol, atol relative to the reference output's scale) per dtype
TOLERANCES = {"float32": (1e-5, 1e-5), "float64": (1e-10, 1e-12)}


def make_model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Mapping[str, Sequence[int]],
    outputs: Sequence[str],
    inits: Mapping[str, np.ndarray] | None = None,
    opset: int = 17,
) -> onnx.ModelProto:
    """A float32 model over ``nodes``; output types are left to shape inference."""
    graph = helper.make_graph(
        list(nodes),
        "test",
        [
            helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, list(s))
            for n, s in inputs.items()
        ],
        [helper.make_empty_tensor_value_info(n) for n in outputs],
        [numpy_helper.from_array(np.asarray(a), n) for n, a in (inits or {}).items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def to_graph(model: onnx.ModelProto) -> Graph:
    graph = import_model(model)
    bind_input_shapes(graph, {})
    infer_shapes(graph)
    return graph


def build(
    nodes: Sequence[onnx.NodeProto],
    inputs: Mapping[str, Sequence[int]],
    outputs: Sequence[str],
    inits: Mapping[str, np.ndarray] | None = None,
    opset: int = 17,
) -> Graph:
    return to_graph(make_model(nodes, inputs, outputs, inits, opset))


def rand(*shape: int, seed: int = 0, scale: float = 1.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def random_feeds(graph: Graph, seed: int = 1) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {v.name: rng.standard_normal(v.shape).astype(v.dtype) for v in graph.inputs}


def assert_same_outputs(reference: Graph, optimized: Graph, seed: int = 1) -> None:
    feeds = random_feeds(reference, seed)
    want = execute_graph(reference, feeds)
    got = execute_graph(optimized, feeds)
    assert list(got) == list(want)
    for name, expected in want.items():
        if expected.dtype.name not in TOLERANCES:
            np.testing.assert_array_equal(got[name], expected, err_msg=f"output {name}")
            continue
        rtol, atol = TOLERANCES[expected.dtype.name]
        scale = max(float(np.max(np.abs(expected), initial=0.0)), 1.0)
        np.testing.assert_allclose(
            got[name], expected, rtol=rtol, atol=atol * scale, err_msg=f"output {name}"
        )


def assert_types_inferred(graph: Graph) -> None:
    """Every value's type is what shape inference computes from scratch."""
    typed = {name: v.type for name, v in graph.values.items()}
    again = graph.copy()
    infer_shapes(again, fold=False)
    for name, v in again.values.items():
        assert v.type == typed[name], f"{name}: pass left {typed[name]}, inference says {v.type}"


def check_pass(graph: Graph, p: Pass, *, modified: bool = True) -> Graph:
    """Run ``p`` on ``graph`` and assert the pass contract; returns the optimized graph."""
    reference = graph.copy()
    result = p(graph)
    assert result.modified is modified
    out = result.graph
    out.verify()
    assert p(out).modified is False, f"{p.name} is not idempotent"
    out.verify()
    assert_types_inferred(out)
    assert_same_outputs(reference, out)
    return out


def ops(graph: Graph) -> list[str]:
    return [n.op_type for n in graph.nodes]
