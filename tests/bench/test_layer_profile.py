"""``bench/layer_profile.py``: convolutions sorted into kinds from the ONNX model, and our
layers matched to onnxruntime's nodes by the Conv they hold, NCHWc-fused names included
(fake profiles, nothing timed)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from bench import layer_profile


def _model() -> onnx.ModelProto:
    def w(name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
        return numpy_helper.from_array(np.zeros(shape, np.float32), name)

    nodes = [
        helper.make_node("Conv", ["x", "w0"], ["a"], name="full", strides=[2, 2]),
        helper.make_node("Conv", ["a", "w1"], ["b"], name="dw", group=8),
        helper.make_node("Conv", ["b", "w2"], ["c"], name="pw"),
        helper.make_node("Relu", ["c"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [w("w0", (8, 3, 3, 3)), w("w1", (8, 1, 3, 3)), w("w2", (16, 8, 1, 1))],
    )
    return helper.make_model(graph)


def test_conv_kinds() -> None:
    assert layer_profile.conv_kinds(_model()) == {
        "full": "3×3 full/s2",
        "dw": "depthwise 3×3",
        "pw": "1×1",
    }


def test_layers_matched_by_their_conv_and_summed_per_kind() -> None:
    ours = [
        {"name": "pw+relu", "op": "FusedConv", "members": ["pw", "relu"], "time_us": 30.0},
        {"name": "dw", "op": "FusedConv", "members": ["dw"], "time_us": 20.0},
        {"name": "full", "op": "FusedConv", "members": ["full"], "time_us": 10.0},
    ]
    theirs = {"y_nchwc": (15.0, "Conv"), "dw": (5.0, "Conv"), "reorder": (7.0, "ReorderInput")}
    result = layer_profile.compare(_model(), ours, theirs)
    kinds = result["by_kind"]
    assert kinds["1×1"] == [30.0, 15.0, 1]
    assert kinds["depthwise 3×3"] == [20.0, 5.0, 1]
    assert kinds["3×3 full/s2"] == [10.0, 0.0, 1]  # no ORT node of that name
    assert kinds["onnxruntime ReorderInput (unmatched)"][1] == 7.0
    text = layer_profile.markdown("m", result, top=2)
    assert "| 1×1 | 1 | 30 | 15 | 2.00× |" in text
    assert text.count("| pw+relu |") == 1 and "| full |" not in text  # top 2 only
