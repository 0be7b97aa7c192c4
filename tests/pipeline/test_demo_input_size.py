"""`edge-infer demo` builds a model with dynamic height/width (the demo detector) for its 16:9
cameras (`engine.build.input_size: 416x256`) and leaves a fixed-size model at its own input."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from edge_infer.commands.demo import DEMO_MODEL, write_config
from edge_infer.pipeline.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, model: Path):
    cams = [{"type": "file", "id": "cam00", "path": str(tmp_path / "cam00.mp4")}]
    write_config(tmp_path / "demo.yaml", cams, model, tmp_path / "m.engine", "tcp://x:1", ["a"])
    return load_config(tmp_path / "demo.yaml")


@pytest.mark.skipif(not (ROOT / DEMO_MODEL).is_file(), reason="models/edge_demo_det.onnx missing")
def test_the_demo_detector_is_built_for_the_cameras_416x256(tmp_path: Path) -> None:
    cfg = _config(tmp_path, ROOT / DEMO_MODEL)
    assert cfg.engine.build.input_size == "416x256"


def test_a_fixed_size_model_keeps_its_input(tmp_path: Path) -> None:
    from edge_infer.zoo import build_model

    fixed = tmp_path / "fixed.onnx"
    onnx.save(build_model("yolov8n", batch=None, imgsz=64), str(fixed))
    assert _config(tmp_path, fixed).engine.build.input_size is None
