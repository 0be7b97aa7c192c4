"""Precision assignment and lowering through the builder, on a small conv net."""

from __future__ import annotations

import logging

import numpy as np
import onnx
import pytest

from edge_infer.engine.builder import BuildOptions, build
from edge_infer.engine.calibration import calibrate
from edge_infer.engine.precision.metrics import cosine_similarity
from edge_infer.errors import BuildError, CalibrationError
from tests.engine.precision.conftest import SIZE, conv_net, frames

SHAPES = {"x": (1, 3, SIZE, SIZE)}


@pytest.fixture(scope="module")
def calibrated(model: onnx.ModelProto):
    return calibrate(model, frames(6), calibrator="entropy")


@pytest.mark.parametrize("calibrator", ["entropy", "percentile"])
def test_network_input_keeps_its_full_range(model: onnx.ModelProto, calibrator: str) -> None:
    """Letterboxed frames: 60 % of the pixels are the padding's gray (114/255), the rest
    spread up to 1.0. A threshold search fits the spike and would clip every brighter pixel
    before the first layer; the input's amax is its true maximum whatever the calibrator."""
    rng = np.random.default_rng(3)
    data = []
    for _ in range(6):
        x = np.full((3, SIZE, SIZE), 114 / 255, np.float32)
        rows = SIZE * 2 // 5
        x[:, :rows] = rng.random((3, rows, SIZE), dtype=np.float32)
        data.append(x)
    cache = calibrate(model, data, calibrator=calibrator).cache
    top = max(float(x.max()) for x in data)
    assert cache.amax["x"] == pytest.approx(top, rel=1e-6)
    assert cache.scales["x"] == pytest.approx(top / 127, rel=1e-6)


def _build(model: onnx.ModelProto, **kw: object):
    return build(model, options=BuildOptions(shapes=SHAPES, tune=False, **kw))


def _ops(engine) -> dict[str, str]:
    return {n.name: f"{n.op_type}:{n.meta.get('precision', '-')}" for n in engine.graph(1).nodes}


def test_calibration_covers_every_conv_input(calibrated) -> None:
    cache = calibrated.cache
    assert len(cache.scales) == 3 and "x" in cache.scales
    assert cache.frames == 6 and calibrated.frames_used == 6
    assert all(s > 0 for s in cache.scales.values())
    assert "tensor" in calibrated.summary()


def test_int8_engine_quantizes_convs_and_stays_close(model, calibrated) -> None:
    fp32 = _build(model)
    int8 = _build(model, precision="int8", extra={"calibration": calibrated.cache})
    ops = _ops(int8)
    assert sum(v == "QConv:int8" for v in ops.values()) == 3
    weights = [t for t in int8.tensors.values() if t.dtype == np.int8]
    assert len(weights) == 3
    x = frames(1, seed=9)[0][None]
    a = fp32.create_context().execute({"x": x})["y"]
    b = int8.create_context().execute({"x": x})["y"]
    assert cosine_similarity(a, b) > 0.999
    meta = int8.plan(1)["meta"]["precision"]
    assert meta["mode"] == "int8" and meta["layers"]["int8"] == 3
    assert meta["calib_cache_sha256"] == calibrated.cache.sha256


def test_fp16_engine_stores_half_weights_and_rounds_outputs(model) -> None:
    fp16 = _build(model, precision="fp16")
    assert {t.dtype for t in fp16.tensors.values() if t.ndim == 4} == {np.dtype(np.float16)}
    y = fp16.create_context().execute({"x": frames(1)[0][None]})["y"]
    np.testing.assert_array_equal(y, y.astype(np.float16).astype(np.float32))
    assert all(v.endswith(":fp16") for v in _ops(fp16).values())


def test_layer_precision_overrides(model, calibrated) -> None:
    engine = _build(
        model,
        precision="int8",
        extra={"calibration": calibrated.cache},
        layer_precision={"conv3": "fp16", "conv1": "fp32"},
    )
    ops = _ops(engine)
    assert ops["conv3"] == "Fp16Layer:fp16" and ops["conv1"].endswith(":fp32")
    assert sum(v == "QConv:int8" for v in ops.values()) == 1
    with pytest.raises(BuildError, match="no layer called nope"):
        _build(model, precision="fp16", layer_precision={"nope": "fp32"})
    with pytest.raises(BuildError, match="cannot run in INT8"):
        _build(
            model,
            precision="int8",
            extra={"calibration": calibrated.cache},
            layer_precision={"double": "int8"},
        )


def test_int8_needs_a_cache_for_this_model(model, calibrated) -> None:
    with pytest.raises(BuildError, match="--calib-cache"):
        _build(model, precision="int8")
    with pytest.raises(CalibrationError, match="another model"):
        _build(conv_net(seed=5), precision="int8", extra={"calibration": calibrated.cache})


def test_fp16_overflow_keeps_layer_in_fp32(caplog: pytest.LogCaptureFixture) -> None:
    hot = conv_net(scale=3e5)
    result = calibrate(hot, frames(3), calibrator="minmax")
    assert result.cache.fp16_overflow  # conv2's output passes 65504
    with caplog.at_level(logging.WARNING):
        engine = _build(hot, precision="fp16", extra={"calibration": result.cache})
    ops = _ops(engine)
    # conv2 stores the overflowing tensor, conv3 reads it: both stay FP32; conv1 is FP16
    assert ops["conv2"] == "FusedConv:fp32" and ops["conv3"] == "FusedConv:fp32"
    assert ops["conv1"] == "Fp16Layer:fp16"
    assert "conv2, conv3" in caplog.text and "FP16" in caplog.text
    y = engine.create_context().execute({"x": frames(1)[0][None]})["y"]
    assert np.isfinite(y).all()


def test_nan_frames_are_reported_and_skipped(model, caplog) -> None:
    data = frames(3)
    data[1][0, 0, 0] = np.nan
    data[2][1, 2, 3] = np.inf
    with caplog.at_level(logging.WARNING):
        result = calibrate(model, data, calibrator="minmax")
    assert result.frames_used == 1 and [i for i, _ in result.skipped] == [1, 2]
    assert "NaN/Inf" in caplog.text
    with pytest.raises(CalibrationError, match="every frame held NaN/Inf"):
        calibrate(model, data[1:], calibrator="minmax")
    with pytest.raises(CalibrationError, match="gave no frames"):
        calibrate(model, [], calibrator="minmax")
    with pytest.raises(CalibrationError, match="takes"):
        calibrate(model, [np.zeros((3, 8, 8), np.float32)])


def _fc_model() -> onnx.ModelProto:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((16, 20)).astype(np.float32) / 4, "w1"),
        numpy_helper.from_array(rng.standard_normal(16).astype(np.float32), "b1"),
        numpy_helper.from_array(rng.standard_normal((16, 5)).astype(np.float32) / 4, "w2"),
    ]
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["g"], transB=1, name="fc1"),
        helper.make_node("Relu", ["g"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc2"),
    ]
    graph = helper.make_graph(
        nodes,
        "fc",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 20])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def test_fully_connected_layers_quantize() -> None:
    model = _fc_model()
    rng = np.random.default_rng(1)
    cal = calibrate(
        model, [rng.standard_normal(20).astype(np.float32) for _ in range(8)], calibrator="minmax"
    )
    assert len(cal.cache.scales) == 2
    opts = {"tune": False}
    fp32 = build(model, options=BuildOptions(**opts))
    int8 = build(
        model, options=BuildOptions(**opts, precision="int8", extra={"calibration": cal.cache})
    )
    assert sum(n.op_type == "QGemm" for n in int8.graph(1).nodes) == 2
    x = rng.standard_normal((1, 20)).astype(np.float32)
    a = fp32.create_context().execute({"x": x})["y"]
    b = int8.create_context().execute({"x": x})["y"]
    assert cosine_similarity(a, b) > 0.999
