"""Network cameras are probed before OpenCV opens them; opens never stall the other cameras.

Real sockets on loopback: a closed port, a listener that accepts and never answers, and
small servers that do answer. The daemon-level tests run real readers (a dead RTSP camera
next to a healthy file camera) with OpenCV's process-wide open lock in place, so only the
probe keeps the dead camera out of it.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import cv2
import pytest

from edge_infer.pipeline.camera_config import BackoffConfig, FileCamera, RtspCamera
from edge_infer.pipeline.probe import probe_stream
from edge_infer.pipeline.rtsp_loopback import free_port
from edge_infer.pipeline.sources import (
    PARALLEL_OPEN_VAR,
    CameraSource,
    CameraState,
    CameraUnreachable,
    FrameHub,
    open_capture,
    set_parallel_opens,
)


class Listener:
    """A loopback TCP server: ``reply`` is sent after the first request bytes (None: never
    answer; b"": close at once). Records what each client sent."""

    def __init__(self, reply: bytes | None) -> None:
        self.reply = reply
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(32)
        self.port = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        self.held: list[socket.socket] = []
        if reply is not None:  # a silent listener never even accepts: the kernel does
            threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2.0)
                self.requests.append(conn.recv(4096) if self.reply else b"")
                if self.reply:
                    conn.sendall(self.reply)

    def close(self) -> None:
        self.sock.close()


def _timed(url: str, timeout: float) -> tuple[str | None, float]:
    t0 = time.monotonic()
    reason = probe_stream(url, timeout)
    return reason, time.monotonic() - t0


def test_probe_fails_fast_on_a_closed_port() -> None:
    reason, took = _timed(f"rtsp://127.0.0.1:{free_port()}/cam", 2.0)
    assert reason is not None and "refused the connection" in reason
    assert took < 0.5


def test_probe_gives_up_on_a_listener_that_never_answers() -> None:
    silent = Listener(None)
    try:
        reason, took = _timed(f"rtsp://127.0.0.1:{silent.port}/cam", 0.4)
    finally:
        silent.close()
    assert reason == f"127.0.0.1:{silent.port} did not answer within 0.4 s"
    assert 0.35 <= took < 1.5


def test_probe_passes_any_answer_and_sends_what_ffmpeg_sends_first() -> None:
    rtsp = Listener(b"RTSP/1.0 401 Unauthorized\r\nCSeq: 1\r\n\r\n")
    http = Listener(b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace\r\n\r\n")
    closer = Listener(b"")
    try:
        assert probe_stream(f"rtsp://admin:secret@127.0.0.1:{rtsp.port}/live?ch=1", 2.0) is None
        assert probe_stream(f"http://127.0.0.1:{http.port}/video.mjpg?x=1", 2.0) is None
        reason = probe_stream(f"rtsp://127.0.0.1:{closer.port}/x", 2.0)
    finally:
        for s in (rtsp, http, closer):
            s.close()
    sent = rtsp.requests[0].decode()
    assert sent.startswith(f"OPTIONS rtsp://127.0.0.1:{rtsp.port}/live RTSP/1.0\r\nCSeq: 1\r\n")
    assert "secret" not in sent and "admin" not in sent  # credentials never leave in clear
    assert http.requests[0].startswith(b"GET /video.mjpg?x=1 HTTP/1.1\r\nHost: 127.0.0.1:")
    assert reason == f"127.0.0.1:{closer.port} closed the connection without answering"
    assert probe_stream("file:///dev/null", 1.0) is None  # not a network URL: not probed


def test_open_capture_refuses_an_unreachable_camera_before_opencv() -> None:
    cam = RtspCamera(type="rtsp", id="r", url=f"rtsp://127.0.0.1:{free_port()}/x")
    with pytest.raises(CameraUnreachable, match="probe: 127.0.0.1:.* refused"):
        open_capture(cam)


class Opens:
    """An opener around the real ``open_capture`` recording each attempt's duration."""

    def __init__(self) -> None:
        self.log: dict[str, list[float]] = {}

    def __call__(self, cam):
        t0 = time.monotonic()
        try:
            return open_capture(cam)
        finally:
            self.log.setdefault(cam.id, []).append(time.monotonic() - t0)


def _file_open_times(cam: FileCamera, seconds: float) -> list[float]:
    """Open and release ``cam`` repeatedly for ``seconds``; how long each open took."""
    times = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        cap = open_capture(cam)
        times.append(time.monotonic() - t0)
        assert cap.isOpened()
        cap.release()
        time.sleep(0.1)
    return times


def test_dead_network_cameras_never_hold_up_a_healthy_file_camera(
    synth_cameras: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PARALLEL_OPEN_VAR, "0")  # OpenCV's open lock in place: probe only
    silent = Listener(None)
    fast = {
        "open_timeout_s": 3.0,
        "probe_timeout_s": 0.5,
        "backoff": BackoffConfig(initial_s=0.1, max_s=0.2, jitter=0.0),
    }
    dead = [
        RtspCamera(type="rtsp", id="refused", url=f"rtsp://127.0.0.1:{free_port()}/x", **fast),
        RtspCamera(type="rtsp", id="silent", url=f"rtsp://127.0.0.1:{silent.port}/x", **fast),
    ]
    healthy = FileCamera(type="file", id="file", path=synth_cameras / "cam00.avi", loop=True)
    hub, opens = FrameHub(), Opens()
    sources = [CameraSource(c, hub, opener=opens) for c in [*dead, healthy]]
    try:
        for s in sources:
            s.start()
        time.sleep(0.3)
        t0, frames0 = time.monotonic(), sources[2].stats.frames
        file_opens = _file_open_times(healthy, 3.0)  # a file camera (re)connecting meanwhile
        rate = (sources[2].stats.frames - frames0) / (time.monotonic() - t0)
    finally:
        for s in sources:
            s.stop()
        for s in sources:
            s.join(5.0)
        silent.close()
    refused, quiet, file_src = sources
    # the closed port fails at once, the silent one after the probe timeout, never longer
    assert len(opens.log["refused"]) >= 8 and max(opens.log["refused"]) < 0.2
    assert len(opens.log["silent"]) >= 3
    assert all(0.45 <= t < 1.0 for t in opens.log["silent"]), opens.log["silent"]
    assert "probe:" in refused.stats.last_error and "refused" in refused.stats.last_error
    assert "did not answer within 0.5 s" in quiet.stats.last_error
    for s in (refused, quiet):
        assert "streaming" not in [st for _, st in s.stats.transitions]
        assert "backoff" in [st for _, st in s.stats.transitions]
    # the file camera keeps its 15 fps, and opening a file never waits behind the dead ones
    assert rate >= 0.8 * 15, rate
    assert file_src.state == CameraState.STOPPED and not file_src.stats.last_error
    assert max(file_opens) < 0.5, file_opens


@pytest.mark.skipif(
    tuple(int(p) for p in cv2.__version__.split(".")[:2]) < (4, 8),
    reason="OpenCV before 4.8 always serialises FFmpeg opens",
)
def test_parallel_opens_let_a_file_open_while_an_rtsp_open_hangs(
    synth_cameras: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the probe, a silent server holds an RTSP open for its whole timeout; with
    parallel opens a file camera opens meanwhile at once."""
    monkeypatch.setenv(PARALLEL_OPEN_VAR, "0")  # restored after the test
    set_parallel_opens(True)
    silent = Listener(None)
    cam = RtspCamera(
        type="rtsp",
        id="silent",
        url=f"rtsp://127.0.0.1:{silent.port}/x",
        probe=False,
        open_timeout_s=2.0,
    )
    healthy = FileCamera(type="file", id="file", path=synth_cameras / "cam00.avi")
    hanging = threading.Thread(target=lambda: open_capture(cam).release())
    try:
        t0 = time.monotonic()
        hanging.start()
        time.sleep(0.3)  # the RTSP open is inside OpenCV now, waiting for an answer
        file_opens = _file_open_times(healthy, 0.5)
        hanging.join(10.0)
        rtsp_open = time.monotonic() - t0
    finally:
        silent.close()
    assert rtsp_open >= 1.5  # it did hang in OpenCV for its open timeout
    assert max(file_opens) < 0.5, file_opens
