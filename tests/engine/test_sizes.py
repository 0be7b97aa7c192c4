"""Tensor and arena sizes are Python ints with an upper bound: a model whose shapes overflow
int64 is refused at build, never built with a negative arena (issue 17, item 2)."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper

import edge_infer
from edge_infer.engine.ir import MAX_TENSOR_BYTES, Graph, TensorType
from edge_infer.engine.memory import plan_memory
from edge_infer.errors import BuildError, GraphError, ShapeInferenceError

HUGE = 2**31


def relu_model(dims: list[int | str]) -> bytes:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")],
        "big",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def test_a_static_input_of_2_to_the_62_elements_is_refused() -> None:
    with pytest.raises(BuildError, match=r"input 'x'.*bytes; the limit is"):
        edge_infer.build(relu_model([HUGE, HUGE]))


def test_shapes_that_overflow_are_refused() -> None:
    with pytest.raises(BuildError, match="the limit is"):
        edge_infer.build(relu_model(["N", 4]), shapes={"x": (HUGE * HUGE, 4)})


def test_an_expand_to_an_overflowing_shape_is_refused() -> None:
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [HUGE, HUGE])
    graph = helper.make_graph(
        [helper.make_node("Expand", ["x", "shape"], ["y"], name="expand")],
        "expand",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [HUGE, HUGE])],
        [shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    with pytest.raises(ShapeInferenceError, match="expand.*the limit is"):
        edge_infer.build(model.SerializeToString())


def test_byte_sizes_are_exact_python_ints() -> None:
    assert TensorType((HUGE, 2), np.float32).nbytes == HUGE * 8
    with pytest.raises(GraphError, match="the limit is"):
        TensorType((HUGE, HUGE), np.float32).nbytes  # noqa: B018


def test_a_memory_plan_past_the_bound_is_refused() -> None:
    """Each tensor under the bound, all of them together over it: no allocation is tried."""
    g = Graph(name="wide")
    elements = MAX_TENSOR_BYTES // 4
    x = g.add_input("x", TensorType((elements,), np.float32))
    a = g.add_value("a", TensorType((elements,), np.float32))
    y = g.add_value("y", TensorType((elements,), np.float32))
    g.add_node("Relu", [x], [a], {}, name="r1")
    g.add_node("Relu", [a], [y], {}, name="r2")
    g.add_output(y, "y")
    with pytest.raises(GraphError, match="memory plan needs"):
        plan_memory(g)
