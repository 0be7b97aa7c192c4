"""`edge-infer compare` on an ONNX model with dynamic height/width: the size is asked for,
then used (the demo detector's export is such a model)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_infer.cli import main


@pytest.fixture
def dynamic_model(tmp_path: Path) -> Path:
    w = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32), "w"
    )
    graph = helper.make_graph(
        [helper.make_node("Conv", ["images", "w"], ["y"], pads=[1, 1, 1, 1])],
        "dyn",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, "H", "W"])],
        [w],
    )
    path = tmp_path / "dyn.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_dynamic_height_width_needs_the_input_size(
    dynamic_model: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["compare", str(dynamic_model), str(dynamic_model), "--frames", "1"]) != 0
    err = capsys.readouterr().err
    assert "--input-size WxH" in err and len(err.strip().splitlines()) == 1
    args = ["compare", str(dynamic_model), str(dynamic_model), "--frames", "1"]
    assert main([*args, "--input-size", "64x32"]) == 0
    out = capsys.readouterr().out
    assert "shape [1, 3, 32, 64]" in out
