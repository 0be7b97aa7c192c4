"""The calibration cache: round trip, foreign model, corrupt files, atomic write."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_infer.engine.precision.cache import CalibrationCache
from edge_infer.errors import CalibrationError


def cache() -> CalibrationCache:
    return CalibrationCache(
        "entropy",
        "ab" * 32,
        {"x": 0.1 / 3, "name with spaces": 1e-7},
        {"x": 4.2, "name with spaces": 1.27e-5},
        500,
        ["big"],
    )


def test_round_trip_is_bit_exact(tmp_path: Path) -> None:
    path = tmp_path / "m.calib"
    c = cache()
    c.save(path)
    back = CalibrationCache.load(path)
    assert back.scales == c.scales and back.amax == c.amax
    assert (back.calibrator, back.model_sha256, back.frames, back.fp16_overflow) == (
        "entropy",
        "ab" * 32,
        500,
        ["big"],
    )
    assert back.sha256 == c.sha256
    assert [p.name for p in tmp_path.iterdir()] == ["m.calib"]  # no temporary left behind
    text = path.read_text()
    assert text.startswith("# edge_infer calibration cache\n") and "calibrator: entropy" in text


def test_cache_for_another_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.calib"
    cache().save(path)
    c = CalibrationCache.load(path)
    c.check_model("ab" * 32)
    with pytest.raises(CalibrationError, match=r"made for another model.*edge-infer calibrate"):
        c.check_model("cd" * 32)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "not an edge_infer calibration cache"),
        ("garbage\nmore", "not an edge_infer calibration cache"),
        ("# edge_infer calibration cache\nversion: 1\ncalibrator: entropy\n", "lacks model_sha256"),
        (
            "# edge_infer calibration cache\nversion: 9\ncalibrator: e\nmodel_sha256: a\n",
            "format version 9",
        ),
        (
            "# edge_infer calibration cache\nversion: 1\ncalibrator: e\nmodel_sha256: a\n"
            "tensor: zz 0x1p+0 x\n",
            "corrupt at line 5",
        ),
        (
            "# edge_infer calibration cache\nversion: 1\ncalibrator: e\nmodel_sha256: a\n"
            "tensor: -0x1p+0 0x1p+0 x\n",
            "positive",
        ),
        (
            "# edge_infer calibration cache\nversion: 1\ncalibrator: e\nmodel_sha256: a\n"
            "tensor: 0x1p+0\n",
            "corrupt at line 5",
        ),
        ("# edge_infer calibration cache\nversion: 1\nno separator here\n", "corrupt at line 3"),
    ],
)
def test_corrupt_caches_are_refused(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.calib"
    path.write_text(text)
    with pytest.raises(CalibrationError, match=match):
        CalibrationCache.load(path)


def test_missing_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="does not exist"):
        CalibrationCache.load(tmp_path / "none.calib")
    path = tmp_path / "bin.calib"
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(CalibrationError, match=r"cannot be read|not an edge_infer"):
        CalibrationCache.load(path)
