"""Calibration frames from folders, videos and cameras, preprocessed as the daemon does."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_infer.errors import CalibrationError
from edge_infer.pipeline.calibration_data import CalibrationData
from edge_infer.pipeline.preprocess import preprocess


def _images(folder: Path, count: int, bad: int = 0) -> list[np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    made = []
    for i in range(count):
        img = (rng.random((30, 50, 3)) * 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"{i:03d}.png"), img)
        made.append(img)
    for i in range(bad):
        (folder / f"broken{i}.jpg").write_bytes(b"not a jpeg")
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    return made


def test_folder_frames_are_preprocessed_like_the_daemon(tmp_path: Path) -> None:
    made = _images(tmp_path / "imgs", 3, bad=1)
    data = CalibrationData(str(tmp_path / "imgs"), (32, 24))
    got = list(data)
    assert len(got) == 3 and data.skipped == ["broken0.jpg"] and data.shortfall is None
    for frame, img in zip(got, made, strict=True):
        np.testing.assert_array_equal(frame, preprocess(img, (32, 24))[0])


def test_folder_with_no_readable_image(tmp_path: Path) -> None:
    _images(tmp_path / "imgs", 0, bad=2)
    with pytest.raises(CalibrationError, match=r"no readable frame.*2 unreadable"):
        list(CalibrationData(str(tmp_path / "imgs"), (32, 32)))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationError, match="no readable frame"):
        list(CalibrationData(str(tmp_path / "empty"), (32, 32)))


def test_fewer_frames_than_asked_is_reported(tmp_path: Path) -> None:
    _images(tmp_path / "imgs", 2)
    data = CalibrationData(str(tmp_path / "imgs"), (32, 32), frames=5)
    assert len(list(data)) == 2
    assert data.shortfall is not None and "only 2" in data.shortfall and "5" in data.shortfall
    capped = CalibrationData(str(tmp_path / "imgs"), (32, 32), frames=1)
    assert len(list(capped)) == 1 and capped.shortfall is None


def test_video_file(tmp_path: Path) -> None:
    path = tmp_path / "cam.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    for i in range(6):
        writer.write(np.full((48, 64, 3), 20 * i, np.uint8))
    writer.release()
    data = CalibrationData(str(path), (32, 32), frames=4)
    frames = list(data)
    assert len(frames) == 4 and frames[0].shape == (3, 32, 32) and frames[0].dtype == np.float32


def test_bad_sources(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match="no such folder"):
        list(CalibrationData(str(tmp_path / "missing"), (32, 32)))
    with pytest.raises(CalibrationError, match="needs --frames"):
        list(CalibrationData("rtsp://camera.invalid/stream", (32, 32)))
    bogus = tmp_path / "x.mp4"
    bogus.write_bytes(b"\x00" * 100)
    with pytest.raises(CalibrationError):
        list(CalibrationData(str(bogus), (32, 32)))


def test_bgr_color_order_follows_the_daemon_config(tmp_path: Path) -> None:
    from types import SimpleNamespace

    made = _images(tmp_path / "imgs", 1)
    config = SimpleNamespace(preprocess=SimpleNamespace(color_order="bgr"))
    (frame,) = list(CalibrationData.for_daemon(str(tmp_path / "imgs"), (32, 32), config))
    np.testing.assert_array_equal(frame, preprocess(made[0], (32, 32))[0][::-1])
    with pytest.raises(CalibrationError, match="color_order"):
        CalibrationData(str(tmp_path / "imgs"), (32, 32), color_order="yuv")
