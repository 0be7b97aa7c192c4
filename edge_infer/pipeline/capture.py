"""Opening a camera: the right OpenCV backend per camera type, its timeouts, and frame checks.

OpenCV's FFmpeg backend serialises opens process-wide unless :func:`set_parallel_opens`
lifts that (the daemon does, ``capture.parallel_open``), and a network camera's server is
probed first (:mod:`edge_infer.pipeline.probe`), so a dead or silent server goes to backoff
without entering OpenCV's open at all. A camera with ``decode: hardware`` is opened through
a GStreamer pipeline instead (:mod:`edge_infer.pipeline.hw_decode`).
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any, Protocol

import cv2
import numpy as np

from edge_infer.errors import EdgeInferError
from edge_infer.pipeline import hw_decode
from edge_infer.pipeline.camera_config import FileCamera, GStreamerCamera, RtspCamera, UsbCamera
from edge_infer.pipeline.probe import probe_stream

log = logging.getLogger(__name__)


class SourceError(EdgeInferError):
    """A camera was asked to do something its state does not allow."""


class CameraUnreachable(SourceError):
    """The probe found a network camera's server down or silent: back off, do not open."""


class Capture(Protocol):
    def isOpened(self) -> bool: ...  # OpenCV's method name
    def grab(self) -> bool: ...
    def retrieve(self, image: Any = None) -> tuple[bool, Any]: ...
    def get(self, prop: int) -> float: ...
    def set(self, prop: int, value: float) -> bool: ...
    def release(self) -> None: ...


class _EnvGate:
    """Serialises opens that need different ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` values.

    OpenCV's FFmpeg backend reads its options (the RTSP transport among them) from that
    process-wide variable when a capture opens; cameras that want the same value open
    concurrently, one that wants another value waits until they are done.
    """

    VAR = "OPENCV_FFMPEG_CAPTURE_OPTIONS"

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._value: str | None = None
        self._active = 0

    def __call__(self, value: str) -> _EnvGateHold:
        return _EnvGateHold(self, value)

    def acquire(self, value: str) -> None:
        with self._cond:
            while self._active and self._value != value:
                self._cond.wait()
            if os.environ.get(self.VAR) != value:  # no setenv while others open, if same
                os.environ[self.VAR] = value
            self._value = value
            self._active += 1

    def release(self) -> None:
        with self._cond:
            self._active -= 1
            self._cond.notify_all()


class _EnvGateHold:
    def __init__(self, gate: _EnvGate, value: str) -> None:
        self.gate, self.value = gate, value

    def __enter__(self) -> None:
        self.gate.acquire(self.value)

    def __exit__(self, *exc: object) -> None:
        self.gate.release()


_ENV_GATE = _EnvGate()
#: OpenCV (4.8 and later) drops its process-wide FFmpeg open lock when this is "1"; it
#: reads the variable at every open
PARALLEL_OPEN_VAR = "OPENCV_FFMPEG_IS_THREAD_SAFE"


def set_parallel_opens(enabled: bool) -> None:
    """Let FFmpeg captures open concurrently, or serialise them as OpenCV does by default.

    OpenCV's lock spans the whole open, so one camera hanging in its open delays every
    other camera's (re)connect by up to its ``open_timeout_s``; FFmpeg itself has not needed
    it since 4.0. Call before the camera threads start: changing the environment while
    another thread reads it is not safe.
    """
    os.environ[PARALLEL_OPEN_VAR] = "1" if enabled else "0"


def open_capture(cam: Any) -> Capture:
    """Open ``cam`` with the right OpenCV backend and its open/read timeouts.

    A network camera whose server does not answer the probe raises
    :class:`CameraUnreachable` before OpenCV is involved.
    """
    if hardware_decoded(cam):
        return _open_hardware(cam)
    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        int(cam.open_timeout_s * 1000),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        int(cam.read_timeout_s * 1000),
    ]
    if getattr(cam, "decode_threads", 0) > 0:  # FFmpeg cameras
        params += [cv2.CAP_PROP_N_THREADS, int(cam.decode_threads)]
    if isinstance(cam, FileCamera):
        return cv2.VideoCapture(str(cam.path), cv2.CAP_FFMPEG, params)
    if isinstance(cam, RtspCamera):
        if cam.probe and (reason := probe_stream(cam.url, cam.probe_timeout_s)):
            raise CameraUnreachable(f"probe: {reason}")
        with _ENV_GATE(f"rtsp_transport;{cam.transport}"):
            return cv2.VideoCapture(cam.url, cv2.CAP_FFMPEG, params)
    if isinstance(cam, UsbCamera):
        props = []
        for prop, value in (
            (cv2.CAP_PROP_FRAME_WIDTH, cam.width),
            (cv2.CAP_PROP_FRAME_HEIGHT, cam.height),
            (cv2.CAP_PROP_FPS, cam.fps),
        ):
            if value is not None:
                props += [prop, int(value)]
        return cv2.VideoCapture(cam.device, cv2.CAP_V4L2, props)
    if isinstance(cam, GStreamerCamera):
        return cv2.VideoCapture(cam.pipeline, cv2.CAP_GSTREAMER)
    raise SourceError(f"camera {getattr(cam, 'id', '?')}: unknown camera type {type(cam)}")


def hardware_decoded(cam: Any) -> bool:
    return getattr(cam, "decode", "software") == "hardware"


def hardware_problem(cam: Any) -> str | None:
    """Why ``cam``'s ``decode: hardware`` cannot work here (one line), None if it can or
    the camera decodes in software."""
    if not hardware_decoded(cam):
        return None
    problem = hw_decode.gstreamer_problem() or hw_decode.elements_problem(cam.decoder_elements)
    if problem is None and isinstance(cam, FileCamera):
        try:
            hw_decode.demuxer(cam.path)
        except hw_decode.HardwareDecodeError as exc:
            problem = str(exc)
    return problem


def _open_hardware(cam: Any) -> Capture:
    """The camera's GStreamer pipeline, with the first element set that starts."""
    if isinstance(cam, RtspCamera):
        if cam.probe and (reason := probe_stream(cam.url, cam.probe_timeout_s)):
            raise CameraUnreachable(f"probe: {reason}")
        pipelines = hw_decode.rtsp_candidates(
            cam.url,
            cam.codec,
            cam.decoder_elements,
            latency_ms=cam.latency_ms,
            transport=cam.transport,
        )
    elif isinstance(cam, FileCamera):
        pipelines = hw_decode.file_candidates(cam.path, cam.codec, cam.decoder_elements)
    else:
        raise SourceError(f"camera {cam.id}: decode: hardware is for file and rtsp cameras")
    opened = hw_decode.open_pipelines(pipelines)
    if opened.elements:
        log.debug("camera %s: GStreamer, %s elements: %s", cam.id, opened.elements, opened.shown)
    return opened.capture


def validate_frame(image: Any) -> np.ndarray | None:
    """A BGR ``uint8 [H, W, 3]`` frame, converting gray or BGRA; ``None`` if unusable."""
    if not isinstance(image, np.ndarray) or image.size == 0 or image.dtype != np.uint8:
        return None
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim != 3 or image.shape[0] < 2 or image.shape[1] < 2:
        return None
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image if image.shape[2] == 3 else None
