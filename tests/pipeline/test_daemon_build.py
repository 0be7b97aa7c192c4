"""The daemon's engine build on first start: the input size of a model with dynamic height/width
(``engine.build.input_size``); INT8 from a calibration cache or data, and the config errors
that name the field when neither is usable."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from edge_infer.engine.calibration import calibrate
from edge_infer.engine.precision.cache import CalibrationCache
from edge_infer.errors import ConfigError
from edge_infer.pipeline.calibration_data import CalibrationData
from edge_infer.pipeline.config import file_sha256, load_config, parse_config
from edge_infer.pipeline.engine_setup import build_engine, load_engine

MODEL = Path(__file__).resolve().parents[2] / "models" / "edge_demo_det.onnx"
needs_model = pytest.mark.skipif(not MODEL.is_file(), reason=f"{MODEL} not trained yet")
SIZE = (416, 256)  # the cameras' input of the demo model (dynamic H and W): width, height
ANCHORS = 52 * 32 + 26 * 16 + 13 * 8  # strides 8, 16, 32 over 416x256: 2184


def _frames(folder: Path, count: int = 4) -> Path:
    """A few camera-like frames: gray background, bright and dark rectangles, noise."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        img = np.full((180, 320, 3), 114, np.uint8)
        for _ in range(6):
            x, y = int(rng.integers(0, 280)), int(rng.integers(0, 140))
            color = tuple(int(c) for c in rng.integers(0, 256, 3))
            cv2.rectangle(img, (x, y), (x + 40, y + 40), color, -1)
        img = cv2.add(img, rng.integers(0, 20, img.shape, dtype=np.uint8))
        cv2.imwrite(str(folder / f"{i:02d}.png"), img)
    return folder


def _config(tmp_path: Path, build: dict, **engine) -> Path:
    data = {
        "device_id": "d",
        "engine": {"path": "out/demo.engine", "onnx": str(MODEL), "build": build, **engine},
        "cameras": [{"type": "usb", "id": "c", "device": 0}],
    }
    path = tmp_path / "daemon.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


INT8 = {
    "min_batch": 1,
    "opt_batch": 1,
    "max_batch": 2,
    "input_size": "416x256",
    "tune": False,
    "precision": "int8",
}
FP32 = {"min_batch": 1, "opt_batch": 1, "max_batch": 1, "tune": False, "precision": "fp32"}


@needs_model
def test_a_dynamic_size_model_is_built_for_the_configured_input_size(
    tmp_path: Path, caplog
) -> None:
    cfg = load_config(_config(tmp_path, {**FP32, "input_size": "320x320"}))
    engine = load_engine(cfg.engine)
    assert tuple(engine.inputs[0].shape[1:]) == (3, 320, 320)
    y = engine.create_context().execute({"images": np.zeros((1, 3, 320, 320), np.float32)})
    assert y["output0"].shape == (1, 10, 2100)  # 40x40 + 20x20 + 10x10 anchors
    # another size later: the existing engine is kept, with a warning
    other = load_config(_config(tmp_path, {**FP32, "input_size": "416x256"}))
    assert tuple(load_engine(other.engine).inputs[0].shape[2:]) == (320, 320)
    assert "was built for input 320x320, engine.build.input_size is 416x256" in caplog.text


@needs_model
def test_a_dynamic_size_model_without_input_size_is_refused(tmp_path: Path) -> None:
    cfg = load_config(_config(tmp_path, FP32))
    with pytest.raises(ConfigError, match=r"dynamic height/width .*set engine\.build\.input_size"):
        build_engine(cfg.engine)


def test_input_size_must_match_a_fixed_size_model(tmp_path: Path) -> None:
    import onnx

    from edge_infer.zoo import build_model

    fixed = tmp_path / "fixed.onnx"
    onnx.save(build_model("yolov8n", batch=1, imgsz=64), str(fixed))
    cfg = load_config(_config(tmp_path, {**FP32, "input_size": "96x64"}, onnx=str(fixed)))
    with pytest.raises(ConfigError, match=r"input_size 96x64 does not match .*fixed.onnx"):
        build_engine(cfg.engine)
    with pytest.raises(ConfigError, match="multiples of 32"):
        load_config(_config(tmp_path, {**FP32, "input_size": "100x64"}))


def _check_int8(engine, cache: Path) -> None:
    rec = engine.build_record
    assert rec["options"]["precision"] == "int8"
    assert rec["options"]["calib_cache_sha256"] == CalibrationCache.load(cache).sha256
    meta = engine.plan(1)["meta"]["precision"]
    assert meta["mode"] == "int8" and meta["layers"]["int8"] > 0
    x = np.full((2, 3, SIZE[1], SIZE[0]), 0.5, np.float32)
    out = engine.create_context().execute({engine.inputs[0].name: x})
    y = out[engine.outputs[0].name]
    assert y.shape == (2, 10, ANCHORS) and np.isfinite(y).all()


@needs_model
def test_int8_engine_built_from_a_calibration_cache(tmp_path: Path, caplog) -> None:
    data = CalibrationData(str(_frames(tmp_path / "frames")), SIZE, 4)
    cache = tmp_path / "demo.calib"
    shapes = {"images": (1, 3, SIZE[1], SIZE[0])}
    calibrate(MODEL, data, calibrator="minmax", shapes=shapes).cache.save(cache)
    cfg = load_config(_config(tmp_path, {**INT8, "calibration": {"cache": "demo.calib"}}))
    assert cfg.engine.build.calibration.cache == cache  # relative to the config's folder
    engine = load_engine(cfg.engine, cfg.preprocess.color_order)
    assert cfg.engine.path.is_file()
    _check_int8(engine, cache)
    # an existing engine is kept when the configured precision changes, with a warning
    fp32 = cfg.engine.model_copy(
        update={"build": cfg.engine.build.model_copy(update={"precision": "fp32"})}
    )
    assert load_engine(fp32).build_record["options"]["precision"] == "int8"
    assert "was built in int8, engine.build.precision is fp32" in caplog.text


@needs_model
def test_int8_engine_calibrated_from_data_at_the_first_build(tmp_path: Path) -> None:
    _frames(tmp_path / "frames")
    build = {**INT8, "calibration": {"data": "frames", "frames": 3, "calibrator": "minmax"}}
    cfg = load_config(_config(tmp_path, build))
    engine = load_engine(cfg.engine, "rgb")
    cache = tmp_path / "out" / "demo.engine.calib"  # the default: next to the engine
    assert CalibrationCache.load(cache).frames == 3
    _check_int8(engine, cache)
    # a rebuild reuses the cache it wrote rather than calibrating again
    stamp = cache.stat().st_mtime_ns
    cfg.engine.path.unlink()
    _check_int8(load_engine(cfg.engine, "rgb"), cache)
    assert cache.stat().st_mtime_ns == stamp


def _fails(tmp_path: Path, build: dict) -> str:
    with pytest.raises(ConfigError) as exc:
        load_config(_config(tmp_path, build))
    return str(exc.value)


def test_int8_without_calibration_fails_with_the_field_and_the_fix(tmp_path: Path) -> None:
    msg = _fails(tmp_path, {"precision": "int8"})
    assert "engine.build: Value error, precision int8 needs calibration scales" in msg
    assert "engine.build.calibration.cache" in msg and "edge-infer calibrate" in msg
    assert "engine.build.calibration.data" in msg
    # the same through parse_config (no file), and fp16 needs nothing
    with pytest.raises(ConfigError, match="int8 needs calibration"):
        parse_config(
            {
                "device_id": "d",
                "engine": {"path": "e", "build": {"precision": "int8"}},
                "cameras": [{"type": "usb", "id": "c", "device": 0}],
            }
        )
    load_config(_config(tmp_path, {"precision": "fp16"}))


def test_unusable_calibration_cache_or_data_is_named(tmp_path: Path) -> None:
    msg = _fails(tmp_path, {"precision": "int8", "calibration": {"cache": "missing.calib"}})
    assert "engine.build.calibration.cache: calibration cache" in msg
    assert "does not exist; create it with `edge-infer calibrate" in msg
    (tmp_path / "junk.calib").write_text("not a cache\n")
    msg = _fails(tmp_path, {"precision": "int8", "calibration": {"cache": "junk.calib"}})
    assert "engine.build.calibration.cache:" in msg and "not an edge_infer calibration" in msg
    msg = _fails(tmp_path, {"precision": "int8", "calibration": {"data": "no/such/folder"}})
    assert "engine.build.calibration.data:" in msg and "is no folder or file" in msg
    # a camera URL cannot be checked before the build: accepted
    load_config(
        _config(tmp_path, {"precision": "int8", "calibration": {"data": "rtsp://cam.local/stream"}})
    )


@needs_model
def test_calibration_cache_of_another_model_is_refused(tmp_path: Path) -> None:
    other = CalibrationCache("minmax", "0" * 64, {"images": 0.01}, {"images": 1.0}, frames=1)
    other.save(tmp_path / "other.calib")
    msg = _fails(tmp_path, {"precision": "int8", "calibration": {"cache": "other.calib"}})
    assert "engine.build.calibration.cache:" in msg and "made for another model" in msg
    # with data to calibrate from, the stale cache is simply remade at the build
    assert file_sha256(MODEL) != other.model_sha256
    _frames(tmp_path / "frames", 2)
    load_config(
        _config(
            tmp_path,
            {"precision": "int8", "calibration": {"cache": "other.calib", "data": "frames"}},
        )
    )
