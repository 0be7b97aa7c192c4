"""Memory-bound layers run by native kernels (sigmoid, softmax, nearest upsampling) match
onnxruntime, including tails that are not a multiple of the vector width; the numpy paths
(no compiler) match too."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

import edge_infer
from edge_infer.engine.backends.cpu import native


def _model(shape: list[int]) -> bytes:
    nodes = [
        helper.make_node("Sigmoid", ["x"], ["s"]),
        helper.make_node("Softmax", ["x"], ["sm1"], axis=1),
        helper.make_node("Softmax", ["s"], ["sm3"], axis=-1),
        helper.make_node(
            "Resize",
            ["x", "", "scales"],
            ["up"],
            mode="nearest",
            coordinate_transformation_mode="asymmetric",
            nearest_mode="floor",
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "steps",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [
            helper.make_tensor_value_info(name, TensorProto.FLOAT, None)
            for name in ("s", "sm1", "sm3", "up")
        ],
        [helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 2, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def _use_native(monkeypatch, on: bool) -> set[str]:
    """Native kernels on (recording which ones the engine binds) or off (numpy paths)."""
    if on and not native.available():
        pytest.skip("no C compiler on this machine")
    used: set[str] = set()
    if on:
        lib = native.library()

        class Recorder:
            def __getattr__(self, name: str):
                used.add(name)
                return getattr(lib, name)

        monkeypatch.setattr(native, "library", lambda: Recorder())
    else:
        monkeypatch.setattr(native, "library", lambda: None)
    return used


@pytest.mark.parametrize("native_on", [True, False], ids=["native", "numpy"])
@pytest.mark.parametrize("shape", [[1, 16, 4, 21], [2, 5, 3, 7], [1, 3, 8, 16]])
def test_memory_bound_steps_match_onnxruntime(monkeypatch, native_on, shape) -> None:
    used = _use_native(monkeypatch, native_on)
    model = _model(shape)
    x = (np.random.default_rng(0).standard_normal(shape) * 8).astype(np.float32)
    x.flat[:3] = [100.0, -100.0, 0.0]  # saturating inputs
    engine = edge_infer.build(model, tune=False)
    got = engine.create_context().execute({"x": x})
    want = ort.InferenceSession(model, providers=["CPUExecutionProvider"]).run(None, {"x": x})
    for name, ref in zip(("s", "sm1", "sm3", "up"), want):
        np.testing.assert_allclose(got[name], ref, rtol=2e-6, atol=2e-7, err_msg=name)
    if native_on:  # the kernels under test really ran
        assert {"unary_f32", "softmax_f32", "upsample_nearest_f32"} <= used


@pytest.mark.parametrize("native_on", [True, False], ids=["native", "numpy"])
@pytest.mark.parametrize(
    "attrs",
    [
        {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},  # ResNet stem
        {"kernel_shape": [2, 2], "strides": [2, 2]},
        {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
        {"kernel_shape": [3, 2], "strides": [1, 3], "pads": [1, 0, 1, 1], "dilations": [2, 1]},
        {"kernel_shape": [5, 5], "strides": [1, 1], "pads": [2, 2, 2, 2]},  # SPPF's own path
    ],
    ids=["stem", "2x2", "ceil", "dilated", "sppf"],
)
def test_maxpool_matches_onnxruntime(monkeypatch, native_on, attrs) -> None:
    used = _use_native(monkeypatch, native_on)
    shape = [2, 3, 13, 17]
    graph = helper.make_graph(
        [helper.make_node("MaxPool", ["x"], ["y"], **attrs)],
        "pool",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    data = model.SerializeToString()
    x = np.random.default_rng(1).standard_normal(shape).astype(np.float32) - 3  # all < 0
    got = edge_infer.build(data, tune=False).create_context().execute({"x": x})["y"]
    want = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_array_equal(got, want)
    if native_on:  # float SPPF too: the row kernel beats the separable views 2.3x
        assert "maxpool_planes_f32" in used


@pytest.mark.parametrize("native_on", [True, False], ids=["native", "numpy"])
def test_upsample_into_a_concat_slice(monkeypatch, native_on) -> None:
    """The YOLO neck: nearest upsampling written straight into its channel slice of a
    Concat's buffer (strided images) — the native kernel takes image and channel strides."""
    used = _use_native(monkeypatch, native_on)
    graph = helper.make_graph(
        [
            helper.make_node(
                "Resize",
                ["x", "", "scales"],
                ["up"],
                mode="nearest",
                coordinate_transformation_mode="asymmetric",
                nearest_mode="floor",
            ),
            helper.make_node("Concat", ["y", "up", "y"], ["cat"], axis=1),
        ],
        "neck",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 5, 6, 7]),
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3, 12, 14]),
        ],
        [helper.make_tensor_value_info("cat", TensorProto.FLOAT, None)],
        [helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 2, 2])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    data = model.SerializeToString()
    rng = np.random.default_rng(4)
    feeds = {
        "x": rng.standard_normal((2, 5, 6, 7)).astype(np.float32),
        "y": rng.standard_normal((2, 3, 12, 14)).astype(np.float32),
    }
    got = edge_infer.build(data, tune=False).create_context().execute(feeds)["cat"]
    want = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_array_equal(got, want)
    if native_on:
        assert "upsample_nearest_f32" in used
