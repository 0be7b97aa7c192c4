"""A tensor read only as INT8 layers' residual (ResNet's downsample branch) is calibrated and
stored in int8, as the tensors INT8 layers read as input are; a calibration cache made
without residual scales still builds, with that residual kept in float."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_infer.engine.builder import BuildOptions, build
from edge_infer.engine.calibration import calibrate
from edge_infer.engine.precision.calibrate import calibration_tensors
from tests.engine.precision.conftest import SIZE, frames

SHAPES = {"x": (1, 3, SIZE, SIZE)}


def downsample_net(seed: int = 0) -> onnx.ModelProto:
    """x → conv1+Relu → (conv2+Relu → conv3) + downsample(1×1 conv of r1) → Relu → y: the
    downsample's output is read only as conv3's residual."""
    rng = np.random.default_rng(seed)

    def w(name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
        data = rng.standard_normal(shape) / np.sqrt(int(np.prod(shape[1:])))
        return numpy_helper.from_array(data.astype(np.float32), name)

    inits = [w("w1", (8, 3, 3, 3)), w("w2", (8, 8, 3, 3)), w("w3", (16, 8, 3, 3))]
    inits += [w("wd", (16, 8, 1, 1)), w("bd", (16,)), w("b3", (16,))]
    nodes = [
        helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], name="conv2"),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Conv", ["r2", "w3", "b3"], ["c3"], pads=[1, 1, 1, 1], name="conv3"),
        helper.make_node("Conv", ["r1", "wd", "bd"], ["d"], name="downsample"),
        helper.make_node("Add", ["c3", "d"], ["a"], name="add"),
        helper.make_node("Relu", ["a"], ["y"], name="relu3"),
    ]
    graph = helper.make_graph(
        nodes,
        "downsample_net",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16, SIZE, SIZE])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.fixture(scope="module")
def model() -> onnx.ModelProto:
    return downsample_net()


@pytest.fixture(scope="module")
def calibrated(model):
    return calibrate(model, frames(6), calibrator="minmax")


def _storage(engine, name: str) -> dict:
    graph = engine.graph(1)
    return next(v.meta.get("storage", {}) for n in graph.nodes for v in n.outputs if v.name == name)


def _int8(model, cache):
    return build(
        model, options=BuildOptions(shapes=SHAPES, tune=False, precision="int8", calibration=cache)
    )


def test_the_residual_only_tensor_is_calibrated_and_stored_in_int8(model, calibrated) -> None:
    scales = calibrated.cache.scales
    assert "d" in scales and scales["d"] > 0
    engine = _int8(model, calibrated.cache)
    assert _storage(engine, "d") == {"dtype": "int8", "scale": scales["d"]}
    conv3 = next(n for n in engine.graph(1).nodes if n.name == "conv3")
    assert conv3.attrs["z_scale"] == scales["d"]
    # the INT8 engine against the FP32 one: the int8 residual costs no more than one more
    # quantization step of it
    x = frames(1, seed=5)[0][None]
    fp32 = build(model, options=BuildOptions(shapes=SHAPES, tune=False))
    want = fp32.create_context().execute({"x": x})["y"]
    got = engine.create_context().execute({"x": x})["y"]
    assert np.abs(got - want).max() < 0.1 * np.abs(want).max()


def test_a_cache_without_residual_scales_builds_with_a_float_residual(model, calibrated) -> None:
    graph_names = set(calibrated.cache.scales)
    old = dataclasses.replace(
        calibrated.cache, scales={k: v for k, v in calibrated.cache.scales.items() if k != "d"}
    )
    assert graph_names - set(old.scales) == {"d"}
    engine = _int8(model, old)
    assert _storage(engine, "d")["dtype"] == "fp32"
    assert _storage(engine, "r1")["dtype"] == "int8"


def test_residuals_are_optional_calibration_tensors(model, calibrated) -> None:
    from edge_infer.engine.calibration import calibration_graph

    graph, _ = calibration_graph(model, SHAPES)
    required = set(calibration_tensors(graph, residuals=False))
    every = set(calibration_tensors(graph))
    assert every - required == {"d"}
