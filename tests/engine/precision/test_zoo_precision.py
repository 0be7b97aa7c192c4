"""Whole networks: FP16 and INT8 engines of the zoo's YOLOv8n and ResNet-50 against FP32.

Small inputs and a few calibration frames keep these quick; calibration uses the models'
own synthetic inputs (seeded uniform images), evaluation other ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_infer.engine.builder import BuildOptions, build
from edge_infer.engine.calibration import calibrate
from edge_infer.engine.precision.metrics import cosine_similarity
from edge_infer.zoo import build_model

pytestmark = pytest.mark.slow


def _inputs(count: int, size: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.random((3, size, size), dtype=np.float32) for _ in range(count)]


def _cosines(model, size: int, name: str, **opts: object) -> list[float]:
    shapes = {name: (1, 3, size, size)}
    ref = build(model, options=BuildOptions(shapes=shapes, tune=False)).create_context()
    low = build(model, options=BuildOptions(shapes=shapes, tune=False, **opts)).create_context()
    out = []
    for x in _inputs(2, size, seed=99):
        a, b = ref.execute({name: x[None]}), low.execute({name: x[None]})
        out += [cosine_similarity(a[k], b[k]) for k in a]
    return out


@pytest.fixture(scope="module")
def yolo():
    return build_model("yolov8n", batch=1, imgsz=64)


def test_yolov8n_fp16_cosine(yolo) -> None:
    assert min(_cosines(yolo, 64, "images", precision="fp16")) >= 0.999


def test_yolov8n_int8_cosine_and_file_size(yolo, tmp_path: Path) -> None:
    cal = calibrate(yolo, _inputs(4, 64, seed=1), calibrator="entropy")
    assert (
        min(_cosines(yolo, 64, "images", precision="int8", extra={"calibration": cal.cache}))
        >= 0.99
    )
    shapes = {"images": (1, 3, 64, 64)}
    build(yolo, tmp_path / "fp32.engine", options=BuildOptions(shapes=shapes, tune=False))
    build(
        yolo,
        tmp_path / "int8.engine",
        options=BuildOptions(
            shapes=shapes, tune=False, precision="int8", extra={"calibration": cal.cache}
        ),
    )
    fp32, int8 = ((tmp_path / f).stat().st_size for f in ("fp32.engine", "int8.engine"))
    assert int8 <= 0.30 * fp32


def test_resnet50_int8_cosine_and_file_size(tmp_path: Path) -> None:
    model = build_model("resnet50", batch=1, image_size=32)
    cal = calibrate(model, _inputs(3, 32, seed=2), calibrator="entropy")
    assert (
        min(_cosines(model, 32, "input", precision="int8", extra={"calibration": cal.cache}))
        >= 0.99
    )
    shapes = {"input": (1, 3, 32, 32)}
    build(model, tmp_path / "a.engine", options=BuildOptions(shapes=shapes, tune=False))
    build(
        model,
        tmp_path / "b.engine",
        options=BuildOptions(
            shapes=shapes, tune=False, precision="int8", extra={"calibration": cal.cache}
        ),
    )
    # the classifier (Gemm) is INT8 too, so every weight is stored in one byte
    sizes = [(tmp_path / f).stat().st_size for f in ("a.engine", "b.engine")]
    assert sizes[1] <= 0.30 * sizes[0]
