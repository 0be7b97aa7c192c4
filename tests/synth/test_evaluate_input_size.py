"""`edge-infer evaluate --input-size WxH`: required for a model with dynamic height/width (the
demo detector), checked against a fixed-size model's input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_infer.cli import main
from tests.synth.test_detect_eval import make_dataset

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def _model(path: Path, h: int | str, w: int | str) -> Path:
    """A constant "detector" (one box at (32, 32), class 0) whose output is sized by the
    input's batch; its input is ``[N, 3, h, w]`` (names: dynamic dims)."""
    from onnx import TensorProto, helper

    const = np.zeros((1, 6, 1), np.float32)
    const[0, :, 0] = [32, 32, 20, 20, 0.8, 0.1]
    graph = helper.make_graph(
        [
            helper.make_node("Shape", ["images"], ["s"], start=0, end=1),
            helper.make_node("Concat", ["s", "tail"], ["shape"], axis=0),
            helper.make_node("Expand", ["c", "shape"], ["output0"]),
        ],
        "const",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, h, w])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["N", 6, 1])],
        [
            helper.make_tensor("tail", TensorProto.INT64, [2], [6, 1]),
            helper.make_tensor("c", TensorProto.FLOAT, [1, 6, 1], const.ravel().tolist()),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def _evaluate(tmp_path: Path, model: Path, *extra: str) -> int:
    return main(
        [
            "evaluate",
            str(model),
            "--dataset",
            str(tmp_path / "coco.json"),
            "--runtime",
            "onnxruntime",
            "--no-progress",
            "--json",
            str(tmp_path / "out.json"),
            *extra,
        ]
    )


def test_dynamic_size_model_runs_at_the_given_input_size(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    make_dataset(tmp_path)
    model = _model(tmp_path / "dyn.onnx", "H", "W")
    assert _evaluate(tmp_path, model, "--input-size", "96x64") == 0
    assert "input 96x64" in capsys.readouterr().out
    assert json.loads((tmp_path / "out.json").read_text())["input_size"] == "96x64"


def test_dynamic_size_model_without_input_size_is_one_typed_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    make_dataset(tmp_path)
    model = _model(tmp_path / "dyn.onnx", "H", "W")
    assert _evaluate(tmp_path, model) == 1
    err = capsys.readouterr().err.strip()
    assert "dynamic height/width" in err and "--input-size WxH" in err
    assert "\n" not in err and "Traceback" not in err


def test_input_size_must_match_a_fixed_model_and_be_multiples_of_32(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    make_dataset(tmp_path)
    model = _model(tmp_path / "fixed.onnx", 64, 64)
    assert _evaluate(tmp_path, model, "--input-size", "64x64") == 0
    capsys.readouterr()
    assert _evaluate(tmp_path, model, "--input-size", "96x64") == 1
    assert "fixed at 64x64" in capsys.readouterr().err
    assert _evaluate(tmp_path, model, "--input-size", "100x64") == 1
    assert "multiples of 32" in capsys.readouterr().err
