"""Small models and frames shared by the precision tests."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

SIZE = 16


def conv_net(seed: int = 0, scale: float = 1.0) -> onnx.ModelProto:
    """x[1,3,16,16] → Conv+Relu → Conv(+residual Add) → Conv (stride 2) → Sigmoid → ×2 → y.

    ``scale`` multiplies the middle conv's weights (large values push its output past FP16).
    """
    rng = np.random.default_rng(seed)

    def w(name: str, shape: tuple[int, ...], s: float = 1.0) -> onnx.TensorProto:
        fan_in = int(np.prod(shape[1:]))
        data = rng.standard_normal(shape) * s / np.sqrt(fan_in)
        return numpy_helper.from_array(data.astype(np.float32), name)

    inits = [
        w("w1", (8, 3, 3, 3)),
        w("b1", (8,)),
        w("w2", (8, 8, 3, 3), scale),
        w("b2", (8,)),
        w("w3", (4, 8, 3, 3), 1.0 / scale),
        w("b3", (4,)),
        numpy_helper.from_array(np.float32(2.0), "two"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Add", ["c2", "r1"], ["a2"], name="add2"),
        helper.make_node(
            "Conv", ["a2", "w3", "b3"], ["c3"], pads=[1, 1, 1, 1], strides=[2, 2], name="conv3"
        ),
        helper.make_node("Sigmoid", ["c3"], ["s3"], name="sigmoid"),
        helper.make_node("Mul", ["s3", "two"], ["y"], name="double"),
    ]
    graph = helper.make_graph(
        nodes,
        "conv_net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, SIZE // 2, SIZE // 2])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def frames(count: int, seed: int = 0, size: int = SIZE) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random((3, size, size), dtype=np.float32) for _ in range(count)]


@pytest.fixture(scope="module")
def model() -> onnx.ModelProto:
    return conv_net()
