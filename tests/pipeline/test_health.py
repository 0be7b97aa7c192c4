"""sd_notify over a real datagram socket; the watchdog pings only while batches complete."""

from __future__ import annotations

import socket
from pathlib import Path

from edge_infer.pipeline.health import Metrics, Progress, SdNotifier, Watchdog
from tests.pipeline.helpers import FakeClock


def _listener(tmp_path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(tmp_path / "notify.sock"))
    s.settimeout(1.0)
    return s


def _drain(s: socket.socket) -> list[str]:
    out = []
    s.settimeout(0.05)
    try:
        while True:
            out.append(s.recv(4096).decode())
    except TimeoutError:
        return out


def test_notifier_sends_plain_datagrams(tmp_path: Path) -> None:
    listener = _listener(tmp_path)
    n = SdNotifier(str(tmp_path / "notify.sock"))
    assert n.notify("READY=1", "STATUS=hello")
    assert listener.recv(4096) == b"READY=1\nSTATUS=hello"
    n.close()
    assert not SdNotifier(None).notify("READY=1")
    assert not SdNotifier(str(tmp_path / "absent.sock")).notify("READY=1")  # logged, no raise


def test_abstract_socket_address() -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0edge-infer-test-notify")
    s.settimeout(1.0)
    SdNotifier("@edge-infer-test-notify").notify("WATCHDOG=1")
    assert s.recv(100) == b"WATCHDOG=1"
    s.close()


def test_watchdog_pings_only_while_batches_complete(tmp_path: Path) -> None:
    listener = _listener(tmp_path)
    clock = FakeClock()
    progress = Progress(clock)
    wd = Watchdog(SdNotifier(str(tmp_path / "notify.sock")), progress, 5.0, lambda: "ok", clock)
    assert wd.tick()  # just started: grace period
    clock.advance(6)
    assert not wd.tick()  # nothing completed since start
    progress.batch_done()
    assert wd.tick()
    clock.advance(4.9)
    assert wd.tick()
    progress.batch_done(ok=False)  # a failing batch is not progress
    clock.advance(0.2)
    assert not wd.tick()
    msgs = _drain(listener)
    pings = [m for m in msgs if "WATCHDOG=1" in m]
    assert len(pings) == 3 and all("STATUS=ok" in m for m in pings)
    assert sum("STATUS=stalled" in m for m in msgs) == 2
    assert (wd.pings, wd.withheld, progress.failed) == (3, 2, 1)


def test_metrics_percentiles_and_rates() -> None:
    clock = FakeClock()
    m = Metrics(window=100, clock=clock)
    for i in range(100):
        m.frame_published("a" if i % 4 else "b", 0.001, 0.002, (i + 1) / 1000, 1)
        clock.advance(0.01)
    p = m.percentiles()["total"]
    assert p["n"] == 100 and 49 <= p["p50"] <= 52 and p["p99"] >= 98
    rates = m.camera_rates()
    assert rates["a"][1] == 75 and rates["b"][1] == 25
    assert rates["a"][0] == 75 / 5.0  # all within the 5 s window
    clock.advance(10)
    assert m.camera_rates()["a"][0] == 0.0


def test_prometheus_endpoint_serves_metrics() -> None:
    import urllib.request

    import pytest

    pytest.importorskip("prometheus_client")
    from edge_infer.pipeline.health import PrometheusExporter
    from edge_infer.pipeline.rtsp_loopback import free_port

    port = free_port()
    exp = PrometheusExporter("127.0.0.1", port)
    try:
        exp.frame("cam0", 0.01, 0.02, 0.05)
        exp.batch_done(4, 0.02)
        exp.cameras(
            {
                "cam0": {
                    "fps": 14.5,
                    "dropped": 3,
                    "reconnects": 1,
                    "reconnect_attempts": 2,
                    "state": "streaming",
                }
            },
            ["streaming", "stalled"],
        )
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
    finally:
        exp.close()
    body = text.decode()
    assert 'edge_infer_camera_fps{camera="cam0"} 14.5' in body
    assert 'edge_infer_camera_state{camera="cam0",state="stalled"} 0.0' in body
    assert "edge_infer_batch_size_count 1.0" in body
    assert "edge_infer_latency_seconds_count 1.0" in body


def test_json_log_lines() -> None:
    import json
    import logging

    from edge_infer.pipeline.logs import JsonFormatter

    rec = logging.LogRecord(
        "edge_infer.daemon", logging.WARNING, __file__, 1, "camera %s: %s", ("c0", "stalled"), None
    )
    line = json.loads(JsonFormatter().format(rec))
    assert line["level"] == "WARNING" and line["msg"] == "camera c0: stalled"
    assert line["logger"] == "edge_infer.daemon" and isinstance(line["ts"], float)
