"""End to end: the daemon as a child process on synthetic camera files, a real subscriber.

The tiny detector (``helpers.tiny_detector``) predicts four fixed boxes per frame, so the
boxes each camera publishes are known exactly in that camera's pixels: the test checks the
whole path (decode → letterbox → engine → decode → map back → JSON → ZeroMQ).
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from edge_infer.pipeline.publisher import load_schema
from edge_infer.pipeline.rtsp_loopback import free_port
from edge_infer.pipeline.subscriber import SequenceTracker, Subscriber
from tests.pipeline.helpers import (
    NotifyListener,
    expected_frame_boxes,
    start_daemon,
    write_config,
)

LIVE = [f"cam{k:02d}" for k in range(8)] + ["square"]


def _cameras(cams: Path, tmp: Path) -> list[dict]:
    from edge_infer.synth.video import render_camera

    out = []
    for k, cid in enumerate(LIVE[:8]):  # half H.264, half MJPEG
        ext = "mp4" if k % 2 == 0 else "avi"
        out.append({"type": "file", "id": cid, "path": str(cams / f"cam{k:02d}.{ext}")})
    # another frame size in the same batches: a frame paired with another frame's letterbox
    # would put its boxes in the wrong place
    render_camera(tmp, 9, seconds=2.0, fps=15.0, width=240, height=240, codec="mjpeg")
    out.append({"type": "file", "id": "square", "path": str(tmp / "cam09.avi")})
    # faults: a camera that never opens, a file that ends, a file with corrupt bytes
    out.append(
        {
            "type": "file",
            "id": "missing",
            "path": str(tmp / "nope.mp4"),
            "backoff": {"initial_s": 0.2, "max_s": 1.0},
        }
    )
    out.append({"type": "file", "id": "ends", "path": str(cams / "cam00.avi"), "loop": False})
    data = bytearray((cams / "cam01.mp4").read_bytes())
    rng = np.random.default_rng(0)
    for pos in rng.integers(len(data) // 4, len(data), 40):
        data[pos : pos + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
    (tmp / "corrupt.mp4").write_bytes(bytes(data))
    out.append(
        {
            "type": "file",
            "id": "corrupt",
            "path": str(tmp / "corrupt.mp4"),
            "backoff": {"initial_s": 0.2, "max_s": 1.0},
        }
    )
    return out


class SilentServer:
    """Accepts TCP connections and never answers: an RTSP camera that hangs every open."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                self.conns.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.fixture(scope="module")
def run(synth_cameras: Path, tiny_engine: Path, tmp_path_factory: pytest.TempPathFactory):
    """Run the daemon for ~6 s of publishing, then SIGTERM; everything the test checks."""
    tmp = tmp_path_factory.mktemp("e2e")
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    silent = SilentServer()
    # OpenCV's FFmpeg backend serialises opens: this camera holds that lock for its whole
    # open timeout, again and again; the files must keep streaming regardless
    hanging = {
        "type": "rtsp",
        "id": "hanging",
        "url": f"rtsp://127.0.0.1:{silent.port}/x",
        "open_timeout_s": 2.0,
        "backoff": {"initial_s": 0.1, "max_s": 0.2},
    }
    cfg = write_config(
        tmp / "daemon.yaml", tiny_engine, [*_cameras(synth_cameras, tmp), hanging], endpoint
    )
    notify = NotifyListener(tmp / "notify.sock")
    proc = start_daemon(cfg, tmp / "daemon.log", notify.path, watchdog_usec=1_000_000)
    msgs, statuses = [], []
    try:
        with Subscriber(endpoint, ["det/testdev/", "status/testdev"]) as sub:
            assert notify.wait_for("READY=1", 60), (tmp / "daemon.log").read_text()[-3000:]
            t_ready = time.monotonic()
            while time.monotonic() - t_ready < 6.0:
                m = sub.recv(0.2)
                if m is not None:
                    (msgs if m.kind == "det" else statuses).append((time.monotonic(), m))
            t_term = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            # what was in flight at SIGTERM still arrives
            while proc.poll() is None or time.monotonic() - t_term < 0.5:
                m = sub.recv(0.1)
                if m is not None and m.kind == "det":
                    msgs.append((time.monotonic(), m))
                if time.monotonic() - t_term > 15:
                    break
            exit_s = time.monotonic() - t_term
    finally:
        if proc.poll() is None:
            proc.kill()
        rc = proc.wait()
        notify.close()
        silent.close()
    return {
        "msgs": msgs,
        "statuses": statuses,
        "rc": rc,
        "exit_s": exit_s,
        "notify": notify,
        "t_ready": t_ready,
        "log": (tmp / "daemon.log").read_text(),
    }


def test_sigterm_drains_and_exits_zero_within_bound(run) -> None:
    assert run["rc"] == 0, run["log"][-3000:]
    assert run["exit_s"] < 5.0 + 2.0  # health.shutdown_timeout_s plus interpreter exit
    assert "stopped (drained)" in run["log"]
    assert run["notify"].count("STOPPING=1") == 1


def test_sd_notify_ready_watchdog_status(run) -> None:
    n = run["notify"]
    assert n.count("READY=1") == 1
    pings = [t for t, m in n.messages if "WATCHDOG=1" in m.split("\n")]
    assert len(pings) >= 6  # every 0.5 s (WATCHDOG_USEC / 2) for ~6 s
    assert max(np.diff(pings)) < 1.0  # never late by a whole watchdog period
    assert any(m.startswith("STATUS=") or "\nSTATUS=" in m for _, m in n.messages)


def test_every_message_matches_the_schema(run) -> None:
    validator = jsonschema.Draft202012Validator(load_schema())
    assert len(run["msgs"]) > 100
    for _, m in run["msgs"]:
        validator.validate(m.payload)
        assert m.topic == f"det/testdev/{m.payload['camera_id']}"


def test_sequences_are_continuous(run) -> None:
    tracker = SequenceTracker()
    events = [e for _, m in run["msgs"] for e in tracker.observe(m.payload)]
    assert events == [] and tracker.gaps == 0 and tracker.restarts == 0
    globals_ = [m.payload["global_seq"] for _, m in run["msgs"]]
    assert globals_ == list(range(globals_[0], globals_[0] + len(globals_)))
    assert len({m.payload["boot_id"] for _, m in run["msgs"]}) == 1


def test_every_camera_is_covered_at_a_fair_rate(run) -> None:
    counts: dict[str, int] = {}
    for t, m in run["msgs"]:
        if t - run["t_ready"] > 2.0:  # after the cameras' first open
            counts[m.payload["camera_id"]] = counts.get(m.payload["camera_id"], 0) + 1
    assert set(LIVE) <= set(counts), counts
    live = [counts[c] for c in LIVE]
    # 15 fps files for ~4 s: each camera well above a trickle, and no camera starved
    assert min(live) >= 15, counts
    assert min(live) / max(live) >= 0.5, counts
    # no camera pauses: not at its file's loop, not behind the hanging camera's opens
    for cam in LIVE:
        times = [
            t for t, m in run["msgs"] if m.payload["camera_id"] == cam and t - run["t_ready"] > 2.0
        ]
        assert max(np.diff(times)) < 1.0, (cam, max(np.diff(times)))


def test_status_reports_every_camera(run) -> None:
    assert len(run["statuses"]) >= 6  # every 0.5 s
    validator = jsonschema.Draft202012Validator(load_schema("status-v1"))
    for _, m in run["statuses"]:
        validator.validate(m.payload)


def test_detections_match_the_known_boxes(run) -> None:
    want_by_size = {
        (320, 180): expected_frame_boxes(320, 180),
        (240, 240): expected_frame_boxes(240, 240),
    }
    checked = 0
    for _, m in run["msgs"]:
        p = m.payload
        size = (240, 240) if p["camera_id"] == "square" else (320, 180)
        assert p["image"] == {"width": size[0], "height": size[1]}
        want = want_by_size[size]
        got = {d["class_id"]: d for d in p["detections"]}
        assert sorted(got) == sorted(want), p["detections"]
        for cls, box in want.items():
            assert np.allclose(got[cls]["box"], box, atol=1.0), (cls, got[cls], box)
            assert got[cls]["score"] == pytest.approx(0.9, abs=0.01)
            assert got[cls]["label"] == ["person", "car", "bicycle", "box"][cls]
        checked += 1
    assert checked > 100


def test_faulty_cameras_do_not_stop_the_others(run) -> None:
    last = run["statuses"][-1][1].payload
    cams = last["cameras"]
    assert cams["missing"]["state"] in ("backoff", "connecting")
    assert cams["missing"]["reconnect_attempts"] >= 2 and cams["missing"]["published"] == 0
    assert cams["missing"]["reconnects"] == 0  # never came back
    assert "does not exist" in cams["missing"]["error"]  # the missing path is named
    assert cams["ends"]["state"] == "stopped" and cams["ends"]["published"] > 0
    assert all(cams[c]["state"] == "streaming" for c in LIVE)
    assert cams["corrupt"]["published"] > 0  # the decoder skipped over the damage
    assert cams["hanging"]["state"] in ("connecting", "backoff")
    assert cams["hanging"]["reconnect_attempts"] >= 1 and cams["hanging"]["published"] == 0
    assert last["latency_ms"]["total"]["p99"] < 300 * 2
    assert sum(last["batch_sizes"].values()) == last["batches"] > 0
