"""Calibration frames from a folder of images, a video file, or a camera URL.

Frames are preprocessed exactly as the daemon preprocesses them (:func:`preprocess`:
letterbox to the model input, BGR→RGB, /255, CHW float32, then the config's
``preprocess.color_order``), so the calibrated ranges are the ranges the engine sees in
service. Unreadable images are reported and skipped; a source that
yields no frame at all is a :class:`CalibrationError`; fewer frames than asked is reported
(``CalibrationData.shortfall``) and calibration goes on with what there is.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_infer.errors import CalibrationError
from edge_infer.pipeline.preprocess import preprocess

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"})
VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".avi", ".mov", ".h264", ".webm", ".ts"})
URL_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "udp://", "tcp://")


@dataclass
class CalibrationData:
    """An iterable of preprocessed ``float32 [3, h, w]`` frames from ``source``.

    ``input_size`` is the model input ``(width, height)``; ``frames`` the most frames to
    yield (0: all a folder or file holds; a camera needs a positive count).
    """

    source: str
    input_size: tuple[int, int]
    frames: int = 0
    #: seconds to wait for a camera's next frame before giving up
    read_timeout: float = 10.0
    #: channel order of the model input, as the daemon's ``preprocess.color_order``
    color_order: str = "rgb"
    skipped: list[str] = field(default_factory=list)
    yielded: int = 0

    def __post_init__(self) -> None:
        if self.color_order not in ("rgb", "bgr"):
            raise CalibrationError(f"color_order must be rgb or bgr, got {self.color_order!r}")

    @classmethod
    def for_daemon(
        cls, source: str, input_size: tuple[int, int], config: Any, frames: int = 0
    ) -> CalibrationData:
        """Frames preprocessed as the daemon configured by ``config`` (a DaemonConfig)."""
        return cls(source, input_size, frames, color_order=config.preprocess.color_order)

    @property
    def kind(self) -> str:
        if self.source.startswith(URL_SCHEMES) or self.source.isdigit():
            return "camera"
        path = Path(self.source)
        if path.is_dir():
            return "folder"
        if path.is_file():
            if path.suffix.lower() in IMAGE_SUFFIXES:
                return "image"
            return "video"
        raise CalibrationError(
            f"calibration data {self.source}: no such folder, file or camera "
            "URL (give a folder of images, a video file or rtsp://...)"
        )

    @property
    def shortfall(self) -> str | None:
        """A message when fewer frames came than were asked for, else None."""
        if self.frames and self.yielded < self.frames:
            return (
                f"only {self.yielded} calibration frames were available from {self.source}, "
                f"{self.frames} were asked for; the calibration uses {self.yielded}"
            )
        return None

    def __iter__(self) -> Iterator[np.ndarray]:
        self.yielded = 0
        self.skipped = []
        kind = self.kind
        if kind == "camera" and self.frames <= 0:
            raise CalibrationError("a camera source needs --frames N (how many to grab)")
        raw = {
            "folder": self._folder,
            "image": self._image,
            "video": self._video,
            "camera": self._video,
        }[kind]()
        for frame in raw:
            if self.frames and self.yielded >= self.frames:
                break
            out, _ = preprocess(frame, self.input_size)
            if self.color_order == "bgr":  # as the daemon's workers do
                out = np.ascontiguousarray(out[::-1])
            self.yielded += 1
            yield out
        if self.yielded == 0:
            detail = (
                f" ({len(self.skipped)} unreadable: {', '.join(self.skipped[:5])})"
                if self.skipped
                else ""
            )
            raise CalibrationError(
                f"calibration data {self.source} gave no readable frame"
                f"{detail}; give a folder of .jpg/.png images, a video file "
                "or a camera URL"
            )
        if self.shortfall:
            log.warning("%s", self.shortfall)

    def _folder(self) -> Iterator[np.ndarray]:
        files = sorted(
            p
            for p in Path(self.source).rglob("*")
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        for path in files:
            frame = read_image(path)
            if frame is None:
                self.skipped.append(path.name)
                log.warning("calibration image %s cannot be read: skipped", path)
                continue
            yield frame

    def _image(self) -> Iterator[np.ndarray]:
        frame = read_image(Path(self.source))
        if frame is None:
            self.skipped.append(Path(self.source).name)
            return
        yield frame

    def _video(self) -> Iterator[np.ndarray]:
        source: str | int = int(self.source) if self.source.isdigit() else self.source
        cap = cv2.VideoCapture(source)
        if not cap.isOpened():
            raise CalibrationError(f"cannot open video source {self.source}")
        try:
            deadline = time.monotonic() + self.read_timeout
            while True:
                ok, frame = cap.read()
                if not ok or frame is None:
                    if self.kind != "camera" or time.monotonic() > deadline:
                        return
                    time.sleep(0.05)
                    continue
                deadline = time.monotonic() + self.read_timeout
                if frame.ndim == 2:
                    frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
                yield np.ascontiguousarray(frame[:, :, :3])
        finally:
            cap.release()


def read_image(path: Path) -> np.ndarray | None:
    """A BGR uint8 image, or None when the file is not a readable image."""
    frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if frame is None or frame.size == 0:
        return None
    return frame
