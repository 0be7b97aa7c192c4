"""Frames, the per-camera frame buffer pools, and the one-slot latest-frame buffers between
the camera readers and the batcher.

A :class:`FramePool` hands a camera reader the buffer to decode the next frame into (pinned,
device-visible memory on the CUDA backend); the frame carries ``recycle`` to give it back.
Whoever ends a frame's life releases it (:meth:`Frame.release`, at most once): the hub when a
newer frame replaces an untaken one, the batcher when it drops one, the worker once the
device (or the host preprocessing) has finished reading it.

Kept apart from :mod:`edge_infer.pipeline.sources` (which imports OpenCV) so the batcher,
the workers and their tests need no cv2.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Frame", "FrameHub", "FramePool"]

log = logging.getLogger(__name__)


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
    #: gives ``image``'s buffer back to its camera's pool (None: OpenCV allocated it)
    recycle: Callable[[], None] | None = field(default=None, repr=False)

    def release(self) -> None:
        """Give the image buffer back to its pool (at most once; a no-op without a pool).
        Call it when nothing reads ``image`` any more."""
        recycle, self.recycle = self.recycle, None
        if recycle is not None:
            recycle()


def _numpy_frame(shape: tuple[int, int, int]) -> np.ndarray:
    return np.empty(shape, np.uint8)


class FramePool:
    """``count`` uint8 ``[H, W, 3]`` buffers of one camera, handed out and given back
    (thread-safe: the camera's reader acquires, other threads release).

    ``allocate(shape)`` makes a buffer (numpy by default; pinned, device-visible memory on the
    CUDA backend), ``free(array)`` releases one dropped after a size change, and
    ``claim(array)`` is told when a buffer is handed out to be written (the CUDA emulator's
    hazard checker fails it while a device copy or kernel may still read it).
    """

    def __init__(
        self,
        count: int,
        allocate: Callable[[tuple[int, int, int]], np.ndarray] = _numpy_frame,
        *,
        free: Callable[[np.ndarray], None] | None = None,
        claim: Callable[[np.ndarray], None] | None = None,
    ) -> None:
        if count < 1:
            raise ValueError(f"a frame pool needs at least one buffer, got {count}")
        self.count = count
        self._allocate = allocate
        self._free_fn = free
        self._claim = claim
        self._lock = threading.Lock()
        self._shape: tuple[int, int, int] | None = None
        self._free: list[np.ndarray] = []  # ready to be written
        self._out: dict[int, np.ndarray] = {}  # id -> buffer handed out and not yet back
        self._made = 0  # buffers of the current shape allocated so far (<= count)
        self.misses = 0  # acquires that found every buffer in use
        self.acquired = 0  # buffers handed out
        self.allocated = 0  # buffers made (all sizes)

    def acquire(self, height: int, width: int) -> np.ndarray | None:
        """A free ``[height, width, 3]`` buffer, or None when all are in use (the caller then
        lets OpenCV allocate). A new frame size drops the free buffers of the old one;
        buffers of the old size still out are dropped when they come back."""
        shape = (int(height), int(width), 3)
        dropped: list[np.ndarray] = []
        with self._lock:
            if shape != self._shape:
                dropped, self._free = self._free, []
                self._shape, self._made = shape, 0
            if self._free:
                array = self._free.pop()
            elif self._made < self.count:
                array = self._allocate(shape)
                self._made += 1
                self.allocated += 1
            else:
                self.misses += 1
                array = None
            if array is not None:
                self._out[id(array)] = array
                self.acquired += 1
        for old in dropped:
            self._release_memory(old)
        if array is not None and self._claim is not None:
            self._claim(array)
        return array

    def release(self, array: np.ndarray) -> None:
        """Give ``array`` back; a no-op for an array not handed out by this pool (never
        acquired here, or released already)."""
        with self._lock:
            if self._out.pop(id(array), None) is None:
                return
            if array.shape == self._shape:
                self._free.append(array)
                return
        self._release_memory(array)  # of an old frame size

    def in_use(self) -> int:
        with self._lock:
            return len(self._out)

    def available(self) -> int:
        with self._lock:
            return len(self._free)

    def _release_memory(self, array: np.ndarray) -> None:
        if self._free_fn is not None:
            try:
                self._free_fn(array)
            except Exception:  # freeing is best effort: a leak beats a dead camera reader
                log.exception("freeing a frame buffer of %s failed", array.shape)


class FrameHub:
    """One-slot latest-frame buffers of every camera, with a condition for the batcher."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self._slots: dict[str, Frame] = {}
        self._takes: dict[str, int] = {}  # frames taken per camera
        self.version = 0  # bumped at every put, so a waiter can tell something arrived

    def put(self, frame: Frame) -> bool:
        """Store ``frame`` as its camera's latest; True if an untaken frame was replaced (its
        buffer is released to its pool)."""
        with self.cond:
            old = self._slots.get(frame.camera_id)
            self._slots[frame.camera_id] = frame
            self.version += 1
            self.cond.notify_all()
        if old is not None and old is not frame:
            old.release()
        return old is not None

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
