"""Camera sources: one reader thread per camera around ``cv2.VideoCapture``.

Each camera is an explicit state machine (connecting → streaming ⇄ stalled → backoff →
connecting …, stopped at the end); transitions are checked against :data:`TRANSITIONS`
under a lock, because the reader thread and the no-frame watchdog both change the state.
Frames go into a one-slot "latest frame" buffer per camera in a shared :class:`FrameHub`:
a frame not yet taken is replaced and counted as dropped, so a slow pipeline never makes
a camera queue up, and a dead or slow camera never blocks the others (each has its own
thread, its own open/read timeouts and its own backoff). Every frame is decoded
(``grab``); the BGR conversion (``retrieve``) is skipped for frames ``max_fps`` skips and,
while the pipeline is behind, for frames that would be replaced before it takes them
(:mod:`edge_infer.pipeline.decimation`; they count as dropped).

Clocks and the ``wait`` function are injected so the state machine, pacing and backoff are
tested without sleeping; the capture is opened through an injectable ``opener``.

Opening (the backend per camera type, timeouts, the probe, ``decode: hardware`` through
GStreamer) is :mod:`edge_infer.pipeline.capture`; a hardware camera that cannot work here
(OpenCV without GStreamer) is refused when its reader is created.

Silence: a read that fails on a stream that was delivering is retried on the same capture
(short, growing waits) until ``stall_timeout_s`` of silence; then the camera is marked
stalled and reconnects. So a cut camera is ``stalled`` after ``stall_timeout_s`` whatever
its ``read_timeout_s``, and only frames that are news bring it back to ``streaming``.

Frame buffers: with a ``pool`` (:class:`~edge_infer.pipeline.frames.FramePool`) frames are
converted straight into a pooled buffer, which the frame gives back when released.
"""

from __future__ import annotations

import enum
import logging
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import cv2
import numpy as np

from edge_infer.pipeline import hw_decode
from edge_infer.pipeline.camera_config import BackoffConfig, FileCamera, RtspCamera, UsbCamera
from edge_infer.pipeline.capture import (
    PARALLEL_OPEN_VAR,
    CameraUnreachable,
    Capture,
    SourceError,
    hardware_decoded,
    hardware_problem,
    open_capture,
    set_parallel_opens,
    validate_frame,
)
from edge_infer.pipeline.decimation import Decimator
from edge_infer.pipeline.frames import Frame, FrameHub
from edge_infer.pipeline.probe import describe_refusal
from edge_infer.pipeline.urls import redact_url

#: what other modules import from here (opening lives in capture.py)
__all__ = [
    "PARALLEL_OPEN_VAR",
    "TRANSITIONS",
    "Backoff",
    "CameraSource",
    "CameraState",
    "CameraStats",
    "CameraUnreachable",
    "Frame",
    "FrameHub",
    "SourceError",
    "hardware_problem",
    "open_capture",
    "redact_url",
    "set_parallel_opens",
    "validate_frame",
]

log = logging.getLogger(__name__)
Clock = Callable[[], float]


class CameraState(enum.Enum):
    CONNECTING = "connecting"
    STREAMING = "streaming"
    STALLED = "stalled"
    BACKOFF = "backoff"
    STOPPED = "stopped"


S = CameraState
#: legal transitions; anything else is a bug and raises
TRANSITIONS: dict[CameraState, frozenset[CameraState]] = {
    S.CONNECTING: frozenset({S.STREAMING, S.BACKOFF, S.STOPPED}),
    S.STREAMING: frozenset({S.STALLED, S.BACKOFF, S.CONNECTING, S.STOPPED}),
    S.STALLED: frozenset({S.STREAMING, S.BACKOFF, S.STOPPED}),
    S.BACKOFF: frozenset({S.CONNECTING, S.STOPPED}),
    S.STOPPED: frozenset(),
}


class Backoff:
    """Exponential reconnect delays with a cap and ± jitter; ``reset()`` after success."""

    def __init__(self, cfg: BackoffConfig, rng: random.Random | None = None) -> None:
        self.cfg = cfg
        self.rng = rng or random.Random()
        self.failures = 0

    def next_delay(self) -> float:
        c = self.cfg
        # the exponent stops growing once the cap is reached: a camera down for days would
        # otherwise overflow the float (multiplier ** 1100) and kill its reader
        base = min(c.max_s, c.initial_s * c.multiplier ** min(self.failures, 64))
        self.failures += 1
        delay = base * (1.0 + c.jitter * self.rng.uniform(-1.0, 1.0))
        return min(c.max_s, max(0.0, delay))

    def reset(self) -> None:
        self.failures = 0


@dataclass
class CameraStats:
    """Counters of one camera (read by status and metrics; written by its reader thread)."""

    frames: int = 0  # frames kept past max_fps: put into the slot, or decimated
    dropped: int = 0  # replaced in the slot before the batcher took them, or decimated
    decimated: int = 0  # dropped unconverted while the batcher was behind (in dropped too)
    skipped: int = 0  # skipped by max_fps
    invalid: int = 0  # frames that failed validation
    stale: int = 0  # frames that came out of a blocked read, or repeated the last one: dropped
    reconnects: int = 0  # streams that delivered frames again after an earlier one ended
    reconnect_attempts: int = 0  # opens tried after a failure (successful or not)
    resolution_changes: int = 0
    last_frame_ts: float | None = None
    last_error: str = ""
    size: tuple[int, int] | None = None  # (width, height)
    transitions: list[tuple[float, str]] = field(default_factory=list)


#: the first wait before a failed read is retried; each further one doubles
RETRY_WAIT_S = 0.1
#: Frame can hand its buffer back to a pool (frames.py's ``recycle`` field)
POOLED_FRAMES = "recycle" in getattr(Frame, "__dataclass_fields__", {})


class BufferPool(Protocol):
    """Per-camera frame buffers (:class:`edge_infer.pipeline.frames.FramePool`)."""

    def acquire(self, height: int, width: int) -> np.ndarray | None: ...
    def release(self, array: np.ndarray) -> None: ...


class CameraSource:
    """The reader of one camera: a thread, its state machine and its counters."""

    def __init__(
        self,
        cam: Any,
        hub: FrameHub,
        *,
        opener: Callable[[Any], Capture] = open_capture,
        clock: Clock = time.monotonic,
        wall_clock: Clock = time.time,
        wait: Callable[[float], bool] | None = None,
        rng: random.Random | None = None,
        pool: BufferPool | None = None,
    ) -> None:
        if opener is open_capture and (problem := hardware_problem(cam)):
            # refused now, at start, rather than failing every reconnect
            raise hw_decode.HardwareDecodeUnavailable(f"camera {cam.id}: {problem}")
        self.cam = cam
        self.id: str = cam.id
        self.hub = hub
        self.opener = opener
        self.clock = clock
        self.wall_clock = wall_clock
        self.stats = CameraStats()
        self.backoff = Backoff(cam.backoff, rng)
        self._stop = threading.Event()
        # wait(seconds) -> True when stopped; tests inject one that advances a fake clock
        self._wait = wait or self._stop.wait
        self._lock = threading.Lock()
        self._state = CameraState.CONNECTING
        self._thread: threading.Thread | None = None
        self._index = 0
        self._next_emit = 0.0
        self._streamed = False  # some stream of this camera has delivered a frame
        self._reconnecting = False  # a stream failed; the next one that delivers reconnected
        self.decimator = Decimator()
        # converted into pooled buffers only where frames can give them back
        self.pool = pool if POOLED_FRAMES else None

    # -- state machine ------------------------------------------------------------------
    @property
    def state(self) -> CameraState:
        with self._lock:
            return self._state

    def transition(self, new: CameraState, reason: str = "") -> bool:
        """Move to ``new``; False if already there; raises on an illegal transition."""
        with self._lock:
            old = self._state
            if new == old:
                return False
            if new not in TRANSITIONS[old]:
                raise SourceError(
                    f"camera {self.id}: illegal transition {old.value} → {new.value} ({reason})"
                )
            self._state = new
            self.stats.transitions.append((self.clock(), new.value))
            del self.stats.transitions[:-32]
        level = logging.INFO if new in (S.STREAMING, S.STOPPED) else logging.WARNING
        log.log(
            level,
            "camera %s: %s → %s%s",
            self.id,
            old.value,
            new.value,
            f" ({reason})" if reason else "",
        )
        return True

    def check_stalled(self, now: float | None = None) -> bool:
        """The no-frame watchdog: a streaming camera silent for too long becomes stalled."""
        now = self.clock() if now is None else now
        last = self.stats.last_frame_ts
        with self._lock:
            silent = (
                self._state == S.STREAMING
                and last is not None
                and (now - last > self.cam.stall_timeout_s)
            )
        if silent:
            return self.transition(S.STALLED, f"no frame for {now - last:.1f} s")
        return False

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=f"cam-{self.id}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        """The reader loop: connect, stream, back off, until stopped or a file ends."""
        looping = False
        try:
            while not self.stopping:
                if self.state != S.CONNECTING and not looping:
                    self.transition(
                        S.CONNECTING,
                        "retrying"
                        if self._streamed or self.stats.reconnect_attempts
                        else "starting",
                    )
                looping = False
                cap = self._open()
                if cap is None:
                    if self._back_off(self.stats.last_error or "open failed"):
                        break
                    continue
                try:
                    outcome = self._stream(cap)
                finally:
                    cap.release()
                if outcome == "eof-stop":
                    break
                if outcome == "eof-loop":
                    looping = True  # a looping file reopens at once, still streaming
                    continue
                if outcome != "stopped" and self._back_off(outcome):
                    break
        except Exception as exc:  # a reader must never die silently: log and stop the camera
            log.exception("camera %s: reader failed", self.id)
            self.stats.last_error = f"{type(exc).__name__}: {exc}"
        finally:
            if self.state != S.STOPPED:
                self.transition(S.STOPPED, self.stats.last_error or "stopped")

    def _open(self) -> Capture | None:
        try:
            cap = self.opener(self.cam)
        except (cv2.error, OSError, SourceError, hw_decode.HardwareDecodeError) as exc:
            self.stats.last_error = f"open: {exc}"
            return None
        if cap is None or not cap.isOpened():
            self.stats.last_error = f"open: {self._open_failure()}"
            if cap is not None:
                cap.release()
            return None
        return cap

    def _open_failure(self) -> str:
        """Why OpenCV did not open the camera, as far as can be told from outside it."""
        cam = self.cam
        gst = (
            f"the GStreamer pipeline ({cam.codec}, decoder_elements {cam.decoder_elements}) "
            "did not start: try the pipeline logged at debug level with gst-launch-1.0"
            if hardware_decoded(cam)
            else ""
        )
        if isinstance(cam, RtspCamera):
            refusal = describe_refusal(cam.url, cam.probe_timeout_s)
            url = redact_url(cam.url)
            if refusal:
                return f"{url}: {refusal}"
            return f"{url}: {gst}" if gst else f"{url} did not open (no stream there?)"
        if isinstance(cam, FileCamera):
            if not cam.path.is_file():
                return f"{cam.path} does not exist or is not a file"
            return f"{cam.path}: {gst}" if gst else f"{cam.path}: not a video FFmpeg can read"
        if isinstance(cam, UsbCamera):
            return f"V4L2 device {cam.device} did not open (busy, or not a capture device)"
        return (
            "the GStreamer pipeline did not start (OpenCV without GStreamer, or an element "
            "is missing: try it with gst-launch-1.0)"
        )

    def _back_off(self, reason: str) -> bool:
        """Enter backoff and wait; True if stopped meanwhile."""
        if self.stopping:
            return True
        delay = self.backoff.next_delay()
        self.transition(S.BACKOFF, f"{reason}; retry in {delay:.2f} s")
        self._reconnecting = self._streamed
        stopped = self._wait(delay)
        if not stopped:
            self.stats.reconnect_attempts += 1
        return stopped

    def _stream(self, cap: Capture) -> str:
        """Read frames until a failure; returns why it ended."""
        period = 0.0
        if isinstance(self.cam, FileCamera) and self.cam.realtime:
            fps = cap.get(cv2.CAP_PROP_FPS)
            period = 1.0 / fps if 0 < fps < 1000 else 1.0 / 25.0
        next_read = self.clock()
        got_any = False
        rewound = False
        last_pts: float | None = None
        # a read blocked this long returns, if anything, a frame FFmpeg's decoder held back
        # before the feed stopped: old news, not a new frame
        blocked = min(self.cam.read_timeout_s, self.cam.stall_timeout_s) * 0.9
        # OpenCV's GStreamer capture must not be read again after a failed read (the next
        # read can block for good); FFmpeg's can, and a short outage then costs no reconnect
        retry_reads = not hardware_decoded(self.cam)
        # OpenCV's GStreamer capture answers positions with the appsink's, which runs ahead
        # of the frame grabbed (OpenCV warns it is unreliable): no PTS or frame number there
        positions = retry_reads
        retry_wait = 0.0  # the next wait before a failed read is retried; 0: none failed
        self.decimator.restart()
        while not self.stopping:
            if period:
                delay = next_read - self.clock()
                if delay > 0 and self._wait(delay):
                    return "stopped"
                # after a long pause (e.g. a slow open) catch up without bursting
                next_read = max(next_read + period, self.clock() - period)
            # grab (decode) every frame, convert to BGR (retrieve) only the ones kept
            started = self.clock()
            if not cap.grab():
                if isinstance(self.cam, FileCamera) and got_any:
                    if not self.cam.loop:
                        return "eof-stop"
                    # rewind rather than reopen: OpenCV's FFmpeg backend serialises opens
                    # process-wide, so a reopen can wait behind a slow network camera (a
                    # GStreamer capture does not survive a seek: it is reopened)
                    if not rewound and retry_reads and cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
                        rewound = True
                        continue
                    return "eof-loop"
                if not got_any:
                    self.stats.last_error = "no frame after open"
                    return self.stats.last_error
                retry_wait = max(RETRY_WAIT_S, 2 * retry_wait)
                outcome = self._silence(retry_wait if retry_reads else None)
                if outcome is None:
                    continue  # read again
                return outcome
            rewound = False
            now = self.clock()  # the capture time: decoded, not yet converted
            pts = _prop(cap, cv2.CAP_PROP_POS_MSEC) if positions else None
            if (
                now - started >= blocked
                or (pts is not None and pts > 0 and pts == last_pts)
                # after a failed read the decoder may hand over what it held: not news
                or (retry_wait and pts is not None and last_pts is not None and pts <= last_pts)
            ):
                self.stats.stale += 1
                log.debug(
                    "camera %s: dropped a stale frame (read blocked %.1f s, pts %s)",
                    self.id,
                    now - started,
                    pts,
                )
                continue
            last_pts = pts
            got_any = True
            retry_wait = 0.0
            self._index += 1
            self.stats.last_frame_ts = now  # alive, even when this frame is skipped
            self.decimator.grabbed(now, self.hub.takes(self.id))
            if not self._rate_allows(now):
                self.stats.skipped += 1
                continue
            if not self.decimator.convert(now):
                self._decimate()
                continue
            frame, buffer = self._retrieve(cap)
            if frame is None:
                self.stats.invalid += 1
                continue
            if self.backoff.failures:
                self.backoff.reset()
            self._emit(
                frame,
                now,
                pts,
                _prop(cap, cv2.CAP_PROP_POS_FRAMES) if positions else None,
                recycle=None if buffer is None else self._recycler(buffer),
            )
        return "stopped"

    def _silence(self, retry_in: float | None) -> str | None:
        """A read failed on a stream that was delivering frames.

        Until ``stall_timeout_s`` of silence: wait ``retry_in`` seconds (at most the rest of
        the silence) and return None, to read again. A capture that cannot be read again
        (``retry_in`` None) waits out the silence instead. Then a streaming camera is marked
        stalled and the stream ends ("read failed"), to reconnect.
        """
        silent = self.clock() - (self.stats.last_frame_ts or 0.0)
        left = self.cam.stall_timeout_s - silent
        if left > 0:
            if self._wait(left if retry_in is None else min(retry_in, left)):
                return "stopped"
            if retry_in is not None:
                return None
            silent = self.clock() - (self.stats.last_frame_ts or 0.0)
        with self._lock:
            streaming = self._state == S.STREAMING
        if streaming:
            self.transition(S.STALLED, f"no frame for {silent:.1f} s")
        self.stats.last_error = "read failed"
        return self.stats.last_error

    def _retrieve(self, cap: Capture) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The grabbed frame as BGR, converted into a pooled buffer where there is one;
        returns (frame, its pooled buffer or None). A buffer not used is given back."""
        buffer = None
        if self.pool is not None and self.stats.size is not None:
            width, height = self.stats.size  # the last frame's: frames rarely change size
            buffer = self.pool.acquire(height, width)
        ok, image = cap.retrieve() if buffer is None else cap.retrieve(buffer)
        frame = validate_frame(image) if ok else None
        if buffer is not None and frame is not buffer:
            # OpenCV allocated another array (the size changed), validation converted it,
            # or there is no frame: the buffer goes back unused
            self.pool.release(buffer)  # type: ignore[union-attr]
            buffer = None
        return frame, buffer

    def _recycler(self, buffer: np.ndarray) -> Callable[[], None]:
        pool = self.pool
        assert pool is not None  # only pooled buffers are recycled

        def recycle() -> None:
            pool.release(buffer)

        return recycle

    def _rate_allows(self, now: float) -> bool:
        """The ``max_fps`` gate: keep the cadence, never let credit build into a burst."""
        if not self.cam.max_fps:
            return True
        if now < self._next_emit - 1e-3:  # 1 ms of tolerance for timestamp jitter
            return False
        step = 1.0 / self.cam.max_fps
        behind = now - self._next_emit >= step  # first frame, or after a pause
        self._next_emit = now + step if behind else self._next_emit + step
        return True

    def _decimate(self) -> None:
        """A frame the batcher would not take before a newer one: dropped unconverted."""
        self._streaming()
        self.stats.frames += 1
        self.stats.dropped += 1
        self.stats.decimated += 1

    def _streaming(self) -> None:
        """A frame arrived: streaming (again), the last error cleared, a reconnect counted."""
        state = self.state
        if state == S.STREAMING:
            return
        if self._reconnecting:
            self.stats.reconnects += 1
            self._reconnecting = False
        reason = (
            "frames again"
            if state == S.STALLED
            else "reconnected"
            if self._streamed
            else "first frame"
        )
        self._streamed = True
        self.stats.last_error = ""
        self.transition(S.STREAMING, reason)

    def _emit(
        self,
        image: np.ndarray,
        captured: float | None = None,
        pts_ms: float | None = None,
        source_frame: float | None = None,
        recycle: Callable[[], None] | None = None,
    ) -> None:
        now = self.clock() if captured is None else captured
        self.stats.last_frame_ts = now
        self._streaming()
        size = (int(image.shape[1]), int(image.shape[0]))
        if self.stats.size is not None and size != self.stats.size:
            self.stats.resolution_changes += 1
            log.warning("camera %s: resolution changed %s → %s", self.id, self.stats.size, size)
        self.stats.size = size
        frame = Frame(
            self.id,
            self._index,
            image,
            now,
            self.wall_clock(),
            pts_ms,
            None if source_frame is None else int(source_frame),
        )
        if recycle is not None:
            frame.recycle = recycle  # type: ignore[attr-defined]  # pooled: see POOLED_FRAMES
        self.stats.frames += 1
        if self.hub.put(frame):
            self.stats.dropped += 1
        self.decimator.put()


def _prop(cap: Capture, prop: int) -> float | None:
    """A capture property, or ``None`` where the backend has no meaningful value."""
    try:
        value = float(cap.get(prop))
    except (cv2.error, TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value >= 0 else None
