"""Explicit quantization: a Q/DQ model builds and runs with the scales it carries."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edge_infer.engine.builder import BuildOptions, build


def qdq_model() -> onnx.ModelProto:
    """x → Q/DQ (per tensor) → Conv(W = DQ(int8 W, per-channel)) → Relu → Q/DQ → y."""
    rng = np.random.default_rng(0)
    wq = rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8)
    inits = [
        numpy_helper.from_array(np.float32(0.02), "xs"),
        numpy_helper.from_array(np.int8(0), "xz"),
        numpy_helper.from_array(wq, "wq"),
        numpy_helper.from_array(np.array([0.01, 0.02, 0.005, 0.03], np.float32), "ws"),
        numpy_helper.from_array(np.zeros(4, np.int8), "wz"),
        numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b"),
        numpy_helper.from_array(np.float32(0.05), "ys"),
        numpy_helper.from_array(np.uint8(0), "yz"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"]),
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=0),
        helper.make_node("Conv", ["xd", "wd", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("QuantizeLinear", ["r", "ys", "yz"], ["rq"]),
        helper.make_node("DequantizeLinear", ["rq", "ys", "yz"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "qdq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


def test_qdq_model_matches_onnxruntime() -> None:
    model = qdq_model()
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    # onnxruntime's graph optimizations rewrite Q/DQ into its own QLinearConv, whose int8
    # bias/requantization differ from the ONNX semantics; the spec is the unoptimized graph
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    want = ort.InferenceSession(
        model.SerializeToString(), so, providers=["CPUExecutionProvider"]
    ).run(None, {"x": x})[0]
    for precision in ("fp32", "int8"):
        # an INT8 build of a Q/DQ model needs no calibration: it keeps the model's scales
        engine = build(model, options=BuildOptions(tune=False, precision=precision))
        got = engine.create_context().execute({"x": x})["y"]
        np.testing.assert_array_equal(got, want)
        assert engine.plan(1)["meta"].get("precision", {}).get("mode") in (None, "explicit-qdq")
