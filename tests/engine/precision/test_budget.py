"""Accuracy to a budget: sensitivity ranking and fallback search (with a stand-in metric)."""

from __future__ import annotations

import numpy as np
import onnx

from edge_infer.engine.accuracy_budget import fit_to_budget
from edge_infer.engine.builder import BuildOptions, build
from edge_infer.engine.calibration import calibrate
from edge_infer.engine.precision.budget import layer_sensitivity
from tests.engine.precision.conftest import SIZE, frames

SHAPES = {"x": (1, 3, SIZE, SIZE)}


def _setup(model: onnx.ModelProto):
    cache = calibrate(model, frames(4), calibrator="minmax").cache
    opts = BuildOptions(shapes=SHAPES, tune=False, precision="int8", extra={"calibration": cache})
    return opts


def test_sensitivity_ranks_every_int8_layer(model: onnx.ModelProto) -> None:
    opts = _setup(model)
    fp32 = build(model, options=BuildOptions(shapes=SHAPES, tune=False))
    int8 = build(model, options=opts)
    feeds = [{"x": f[None]} for f in frames(2, seed=3)]
    sens = layer_sensitivity(fp32.graph(1), int8.graph(1), feeds)
    assert set(sens) == {"conv1", "conv2", "conv3"}
    assert all(0.0 < v < 1e-2 for v in sens.values())


def test_budget_search_falls_back_until_within_budget(model: onnx.ModelProto) -> None:
    opts = _setup(model)
    x = frames(1, seed=7)[0][None]
    ref = build(model, options=BuildOptions(shapes=SHAPES, tune=False))
    want = ref.create_context().execute({"x": x})["y"]

    def score(engine) -> float:
        got = engine.create_context().execute({"x": x})["y"]
        return 1.0 - float(np.abs(got - want).max())

    messages: list[str] = []
    feeds = [{"x": f[None]} for f in frames(2, seed=3)]
    loose = fit_to_budget(model, opts, score, 1.0, feeds, report=messages.append)
    assert loose.fallen_back == [] and loose.within_budget
    tight = fit_to_budget(model, opts, score, 0.0, feeds, report=messages.append)
    # a zero budget is only met when every INT8 layer has fallen back to FP32
    assert sorted(tight.fallen_back) == ["conv1", "conv2", "conv3"]
    assert tight.within_budget and tight.drop <= 0.0
    assert [n for n, _ in tight.history] == [0, 1, 2, 3]
    assert any("FP32 accuracy" in m for m in messages)
    ranked = sorted(tight.sensitivity, key=lambda n: -tight.sensitivity[n])
    assert tight.history and ranked[0] in tight.options.layer_precision
    np.testing.assert_array_equal(want, tight.engine.create_context().execute({"x": x})["y"])
