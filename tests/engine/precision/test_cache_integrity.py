"""A calibration cache carries its tensor count and a checksum: a cut, truncated or edited
cache is refused, so is one that misses a tensor the INT8 build quantizes, a duplicate name
and a scale outside the float32 range; version-1 caches still load, with a warning (issue 17,
item 4)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import onnx
import pytest

from edge_infer.engine.builder import BuildOptions, build
from edge_infer.engine.calibration import calibrate
from edge_infer.engine.precision.cache import CalibrationCache
from edge_infer.errors import CalibrationError
from tests.engine.precision.conftest import SIZE, frames

SHAPES = {"x": (1, 3, SIZE, SIZE)}


@pytest.fixture(scope="module")
def saved(model: onnx.ModelProto, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("calib") / "m.calib"
    calibrate(model, frames(4), calibrator="minmax").cache.save(path)
    return path


def int8_build(model: onnx.ModelProto, cache: Path):
    return build(model, options=BuildOptions(shapes=SHAPES, tune=False, precision="int8",
                                             calib_cache=str(cache)))  # fmt: skip


def tensor_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("tensor: ")]


def test_a_written_cache_has_a_count_and_a_checksum(saved) -> None:
    text = saved.read_text()
    lines = text.splitlines()
    assert lines[1] == "version: 2" and f"tensors: {len(tensor_lines(text))}" in lines
    assert lines[-1].startswith("sha256: ") and len(lines[-1]) == len("sha256: ") + 64
    assert CalibrationCache.load(saved).scales


def edits(text: str) -> dict[str, str]:
    first = tensor_lines(text)[0]
    scale = first.split()[1]
    return {
        "truncated": text[: len(text) // 2],
        "last line cut": "\n".join(text.splitlines()[:-1]) + "\n",
        "a tensor line cut": text.replace(first + "\n", ""),
        "a scale edited": text.replace(scale, "0x1.0000000000000p-3", 1),
        "a line appended": text + "tensor: 0x1p-7 0x1p+0 extra\n",
    }


@pytest.mark.parametrize(
    "case", ["truncated", "last line cut", "a tensor line cut", "a scale edited", "a line appended"]
)
def test_a_cut_or_edited_cache_is_refused(saved, tmp_path, case) -> None:
    bad = tmp_path / "bad.calib"
    bad.write_text(edits(saved.read_text())[case])
    with pytest.raises(CalibrationError, match="truncated|checksum|corrupt"):
        CalibrationCache.load(bad)


def v1(text: str, drop: int = 0) -> str:
    """The cache as version 1 wrote it (no count, no checksum), less ``drop`` tensor lines."""
    lines = [line for line in text.splitlines()
             if not line.startswith(("sha256: ", "tensors: "))]  # fmt: skip
    body = "\n".join(lines).replace("version: 2", "version: 1") + "\n"
    for line in tensor_lines(body)[:drop]:
        body = body.replace(line + "\n", "")
    return body


def test_a_version_1_cache_loads_with_a_warning(model, saved, tmp_path, caplog) -> None:
    old = tmp_path / "old.calib"
    old.write_text(v1(saved.read_text()))
    with caplog.at_level(logging.WARNING):
        cache = CalibrationCache.load(old)
    assert cache.scales == CalibrationCache.load(saved).scales
    assert "version 1" in caplog.text and "edge-infer calibrate" in caplog.text
    int8_build(model, old)


def test_a_build_stops_and_lists_the_tensors_the_cache_misses(model, saved, tmp_path) -> None:
    cut = tmp_path / "cut.calib"
    cut.write_text(v1(saved.read_text(), drop=2))  # no checksum to catch the cut
    missing = sorted(CalibrationCache.load(saved).scales)[:2]
    with pytest.raises(CalibrationError, match="no scale for 2 of the model's 3 INT8 tensors: "
                       ) as info:  # fmt: skip
        int8_build(model, cut)
    assert all(f"{name}," in str(info.value) or f"{name};" in str(info.value)
               for name in missing)  # fmt: skip


def test_the_complete_cache_builds_an_int8_engine(model, saved) -> None:
    engine = int8_build(model, saved)
    assert engine.plan(1)["meta"]["precision"]["layers"]["int8"] == 3


HEAD = "# edge_infer calibration cache\nversion: 1\ncalibrator: e\nmodel_sha256: a\n"
BAD_SCALES = {
    "duplicate": "tensor: 0x1p-7 0x1p+0 x\ntensor: 0x1p-6 0x1p+1 x\n",
    "subnormal scale": "tensor: 0x1p-140 0x1p-133 x\n",
    "scale beyond float32": "tensor: 0x1p+125 0x1p+0 x\n",
    "amax beyond float32": "tensor: 0x1p-7 0x1p+200 x\n",
    "infinite amax": "tensor: 0x1p-7 inf x\n",
    "nan scale": "tensor: nan 0x1p+0 x\n",
}


@pytest.mark.parametrize("case", sorted(BAD_SCALES))
def test_duplicate_names_and_insane_scales_are_refused(tmp_path, case) -> None:
    bad = tmp_path / "bad.calib"
    bad.write_text(HEAD + BAD_SCALES[case])
    with pytest.raises(CalibrationError, match="corrupt at line"):
        CalibrationCache.load(bad)


def test_a_version_2_cache_with_a_wrong_count_is_refused() -> None:
    cache = CalibrationCache("minmax", "ab" * 32, {"x": 0.01}, {"x": 1.27})
    text = cache.to_text()
    body = text[: text.rindex("sha256: ")].replace("tensors: 1", "tensors: 2")
    forged = body + "sha256: " + hashlib.sha256(body.encode()).hexdigest() + "\n"
    with pytest.raises(CalibrationError, match="declares 2 tensors and lists 1"):
        CalibrationCache.from_text(forged)
