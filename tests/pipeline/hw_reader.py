"""A ``decode: hardware`` camera read end to end, for tests/pipeline/test_hw_decode.py.

Run by the system Python (``/usr/bin/python3``), whose OpenCV (Debian's python3-opencv) is
built with GStreamer, unlike the venv's PyPI wheel. It imports only what a camera reader
needs: its own cv2 and numpy, the pure-Python config models (pydantic from a folder of links
the test makes, never the venv's numpy), and ``edge_infer.pipeline.sources``. It runs the
real :class:`CameraSource` with the real opener, takes frames as the batcher would, saves
them as ``.npy`` and prints one JSON line: what the test asserts on.

Usage: ``python3 hw_reader.py SPEC.json`` (see ``main`` for the keys).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pydantic import TypeAdapter

from edge_infer.pipeline import rtsp_loopback
from edge_infer.pipeline.camera_config import CameraConfig
from edge_infer.pipeline.frames import FrameHub
from edge_infer.pipeline.sources import CameraSource, CameraState


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


Server = rtsp_loopback.LoopbackRtspServer


def feed(server: Server, video: str) -> None:
    for _ in range(3):  # a feed pushed as the server starts is now and then refused
        server.feed("cam", video)
        if server.wait_ready(10):
            return
    raise RuntimeError("the ffmpeg feed did not start")


def collect(
    src: CameraSource, hub: FrameHub, out: Path, saved: list[dict], until: Any, timeout: float
) -> None:
    """Take frames every 20 ms (as the batcher would) until ``until()`` or ``timeout``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and not until():
        for f in hub.take_all():
            k = len(saved)
            np.save(out / f"{k}.npy", f.image)
            saved.append(
                {
                    "file": f"{k}.npy",
                    "pts_ms": f.source_pts_ms,
                    "capture_ts": f.capture_ts,
                    "index": f.index,
                }
            )
            f.release()
        time.sleep(0.02)


def main(spec_path: str) -> int:
    """``spec``: ``camera`` (the camera's config; ``url`` filled in for RTSP), ``out``
    (folder for the frames), ``video`` (the file an RTSP feed streams), ``frames`` (how
    many to collect), ``timeout_s``, ``kill`` (RTSP: stop the server once frames came, wait
    for backoff, restart it, collect again), ``password`` (put into the RTSP URL)."""
    spec = json.loads(Path(spec_path).read_text())
    out = Path(spec["out"])
    records = Records()
    logging.getLogger("edge_infer").addHandler(records)
    logging.getLogger("edge_infer").setLevel(logging.DEBUG)
    result: dict[str, Any] = {
        "gstreamer": "YES"
        in next(line for line in cv2.getBuildInformation().splitlines() if "GStreamer" in line),
        "numpy": np.__file__,
        "cv2": cv2.__file__,
    }
    server = None
    camera = dict(spec["camera"])
    try:
        if camera["type"] == "rtsp":
            server = Server().start()
            feed(server, spec["video"])
            # rtsp-server-perl names a stream's control "streamid=0" and finds it by stripping
            # "/streamid=N" from a request's path; GStreamer resolves the control against the
            # URL's folder (RFC 3986) where FFmpeg appends it, so GStreamer is given the
            # stream's own control URL (the server strips it back to the mount "/cam")
            host = f"edge:{spec['password']}@127.0.0.1" if spec.get("password") else "127.0.0.1"
            camera["url"] = f"rtsp://{host}:{server.client_port}/cam/streamid=0"
        cam = TypeAdapter(CameraConfig).validate_python(camera)
        hub = FrameHub()
        src = CameraSource(cam, hub)
        src.start()
        saved: list[dict] = []
        want = int(spec["frames"])
        collect(
            src,
            hub,
            out,
            saved,
            lambda: len(saved) >= want or src.state == CameraState.STOPPED,
            spec["timeout_s"],
        )
        result["first"] = len(saved)
        if spec.get("kill") and server is not None:
            server.stop_server()
            result["t_kill"] = time.monotonic()
            collect(src, hub, out, saved, lambda: src.state == CameraState.BACKOFF, 20.0)
            result["t_backoff"] = time.monotonic()
            result["during_outage"] = len(saved) - result["first"]
            server.start()  # on the same ports
            feed(server, spec["video"])
            before = len(saved)
            collect(src, hub, out, saved, lambda: len(saved) - before >= 10, 30.0)
        src.stop()
        result["joined"] = src.join(10)
        st = src.stats
        result.update(
            frames=st.frames,
            invalid=st.invalid,
            stale=st.stale,
            size=st.size,
            reconnects=st.reconnects,
            transitions=st.transitions,
            last_error=st.last_error,
            saved=saved,
            logs=records.lines,
        )
    finally:
        if server is not None:
            server.stop()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
