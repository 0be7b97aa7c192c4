from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper


def small_model(batch: int | str = "N", opset: int = 17) -> onnx.ModelProto:
    """x[N,3,8,8] → Conv(3→4, 3x3, pad 1) → Abs → Add(const) → y; shape subgraph → Reshape."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b")
    k = numpy_helper.from_array(np.float32(0.5), "k")
    idx = numpy_helper.from_array(np.array([0], np.int64), "idx")
    tail = numpy_helper.from_array(np.array([-1], np.int64), "tail")
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Abs", ["c"], ["a"], name="abs"),
        helper.make_node("Add", ["a", "k"], ["s"], name="add"),
        helper.make_node("Shape", ["s"], ["shp"], name="shape"),
        helper.make_node("Gather", ["shp", "idx"], ["n"], axis=0, name="gather"),
        helper.make_node("Concat", ["n", "tail"], ["target"], axis=0, name="concat"),
        helper.make_node("Reshape", ["s", "target"], ["y"], name="reshape"),
    ]
    graph = helper.make_graph(
        nodes,
        "small",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 256])],
        [w, b, k, idx, tail],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def assert_fp32_close(actual: np.ndarray, desired: np.ndarray) -> None:
    """An FP32 engine against onnxruntime: the tuned tactics sum in other orders, and
    ``winograd_native`` (F(4x4, 3x3)) adds up to ~2e-5 of the output's scale."""
    scale = max(1.0, float(np.abs(desired).max()))
    np.testing.assert_allclose(actual, desired, rtol=1e-5, atol=2e-5 * scale)


def small_model_expected(x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(
        small_model().SerializeToString(), providers=["CPUExecutionProvider"]
    )
    return sess.run(None, {"x": x})[0]


@pytest.fixture
def model_file(tmp_path):
    path = tmp_path / "small.onnx"
    onnx.save(small_model(), path)
    return path
