"""Frames and the one-slot latest-frame buffers between the camera readers and the batcher.

Kept apart from :mod:`edge_infer.pipeline.sources` (which imports OpenCV) so the batcher,
the workers and their tests need no cv2.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

__all__ = ["Frame", "FrameHub"]


@dataclass(eq=False)  # identity equality: frames hold arrays
class Frame:
    """One captured frame: BGR ``uint8 [H, W, 3]`` with its capture times."""

    camera_id: str
    #: frames this reader grabbed since the daemon started, 1-based, counting frames skipped
    #: or dropped (so a gap in published indexes is frames not processed)
    index: int
    image: np.ndarray
    capture_ts: float  # monotonic seconds: deadlines
    capture_wall: float  # epoch seconds: published timestamps
    #: the source's own presentation time of the frame in ms (OpenCV's CAP_PROP_POS_MSEC:
    #: the position in a file; for RTSP the stream's PTS relative to its first packet since
    #: this connection opened), None where the source has none
    source_pts_ms: float | None = None
    #: the source's own frame number (CAP_PROP_POS_FRAMES, 0-based position in a file; also
    #: reset by a reconnect for streams), None where the source has none
    source_frame: int | None = None


class FrameHub:
    """One-slot latest-frame buffers of every camera, with a condition for the batcher."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self._slots: dict[str, Frame] = {}
        self._takes: dict[str, int] = {}  # frames taken per camera
        self.version = 0  # bumped at every put, so a waiter can tell something arrived

    def put(self, frame: Frame) -> bool:
        """Store ``frame`` as its camera's latest; True if an untaken frame was replaced."""
        with self.cond:
            replaced = frame.camera_id in self._slots
            self._slots[frame.camera_id] = frame
            self.version += 1
            self.cond.notify_all()
        return replaced

    def take_all(self) -> list[Frame]:
        """Remove and return every waiting frame."""
        with self.cond:
            frames = list(self._slots.values())
            for camera_id in self._slots:
                self._takes[camera_id] = self._takes.get(camera_id, 0) + 1
            self._slots.clear()
            return frames

    def takes(self, camera_id: str) -> int:
        """How many frames of ``camera_id`` were taken so far (its reader sees them go)."""
        with self.cond:
            return self._takes.get(camera_id, 0)

    def pending(self) -> int:
        with self.cond:
            return len(self._slots)
