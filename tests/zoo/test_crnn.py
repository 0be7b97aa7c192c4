"""The zoo's CRNN (conv stack → 2 bidirectional LSTMs → linear, CTC-ready logits), built with
edge_infer at two widths of its dynamic width and a batch range, matched against onnxruntime
(FP32: ``max |ours - ort| ≤ 1e-4 · max |ort|``), and decoded with the greedy CTC helper."""

from __future__ import annotations

from collections import Counter

import numpy as np
import onnx
import onnxruntime as ort
import pytest

import edge_infer
from edge_infer.pipeline.ctc import greedy_decode
from edge_infer.zoo import build_model
from edge_infer.zoo.crnn import build_crnn

FP32_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def model() -> onnx.ModelProto:
    return build_model("crnn", batch=None, width=None)


def _ort(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    session = ort.InferenceSession(
        model.SerializeToString(), opts, providers=["CPUExecutionProvider"]
    )
    return session.run(None, {"image": x})[0]


def _image(batch: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, 32, width)).astype(np.float32)


def assert_matches(ours: np.ndarray, expected: np.ndarray, what: str) -> None:
    assert ours.shape == expected.shape, what
    scale = float(np.abs(expected).max())
    error = float(np.abs(ours - expected).max())
    assert error <= FP32_TOLERANCE * scale, f"{what}: max abs error {error:.3g}, scale {scale:.3g}"


def test_structure_and_dynamic_dims(model: onnx.ModelProto) -> None:
    dims = [
        [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in (model.graph.input[0], model.graph.output[0])
    ]
    assert dims == [["batch", 3, 32, "width"], ["steps", "batch", 37]]
    ops = Counter(n.op_type for n in model.graph.node)
    assert ops["LSTM"] == 2 and ops["ConstantOfShape"] == 4 and ops["Conv"] == 7
    assert "BatchNormalization" not in ops  # folded, as torch.onnx.export writes eval models
    lstms = [n for n in model.graph.node if n.op_type == "LSTM"]
    assert all(a.s == b"bidirectional" for n in lstms for a in n.attribute if a.name == "direction")
    with pytest.raises(ValueError, match="multiple of 4"):
        build_crnn(width=30)


@pytest.mark.parametrize("width", [96, 200])
def test_two_widths_match_onnxruntime(model: onnx.ModelProto, width: int) -> None:
    x = _image(3, width, seed=width)
    _check_width(model, x, width)


def test_unfolded_batchnorm_variant() -> None:
    model = build_crnn(batch=None, width=None, fold_bn=False, seed=1)
    assert Counter(n.op_type for n in model.graph.node)["BatchNormalization"] == 6
    _check_width(model, _image(2, 64), 64)


def _check_width(model: onnx.ModelProto, x: np.ndarray, width: int) -> None:
    engine = edge_infer.build(model, shapes={"image": x.shape}, tune=False)
    ours = engine.create_context().execute({"image": x})["logits"]
    expected = _ort(model, x)
    assert ours.shape == (width // 4, x.shape[0], 37)
    assert_matches(ours, expected, f"CRNN width {width}")
    # the greedy decode of both is the same (labels; confidences to float tolerance)
    for a, b in zip(greedy_decode(ours), greedy_decode(expected), strict=True):
        assert a.labels == b.labels
        assert a.confidence == pytest.approx(b.confidence, rel=1e-4)


def test_batch_profile_and_tuned_tactics(model: onnx.ModelProto) -> None:
    """min/opt/max batch 1/2/4 at width 128, tactics timed: the zero initial states built from
    Shape → Gather → ConstantOfShape fold to the right batch in every plan."""
    shapes = {"image": (1, 3, 32, 128)}
    engine = edge_infer.build(
        model,
        min_shapes=shapes,
        opt_shapes={"image": (2, 3, 32, 128)},
        max_shapes={"image": (4, 3, 32, 128)},
    )
    ctx = engine.create_context()
    for batch in (1, 3, 4):
        x = _image(batch, 128, seed=batch)
        assert_matches(ctx.execute({"image": x})["logits"], _ort(model, x), f"batch {batch}")
