"""The ``--shapes`` value a dynamic-shape error suggests is one a user can fill in."""

from __future__ import annotations

import pytest
from onnx import TensorProto, helper

import edge_infer
from edge_infer.engine.profiles import shape_example
from edge_infer.errors import BuildError


def test_examples() -> None:
    assert shape_example(["batch", 3, "height", "width"]) == "1x3xHxW"
    assert shape_example([1, 3, 224, 224]) == "1x3x224x224"
    assert shape_example(["N", 10, None, 0]) == "1x10xD2xD3"


def test_a_dynamic_height_width_model_asks_for_them() -> None:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["images"], ["y"])],
        "dyn",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3, "H", "W"])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(BuildError, match=r"--shapes images:1x3xHxW$"):
        edge_infer.build(model, tune=False)
