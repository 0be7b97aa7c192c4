"""RTSP on loopback: a real server (rtsp-server-perl fed by ffmpeg), killed and restarted.

While the server is down its cameras go stalled after ``stall_timeout_s`` of silence (their
``read_timeout_s`` is shorter: a timed-out read is retried, not a reconnect), then backoff,
and the file cameras keep their rate; when it returns, its cameras resume in the same daemon
run (same boot id, sequence numbers continuing).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from edge_infer.pipeline import rtsp_loopback
from edge_infer.pipeline.subscriber import SequenceTracker, Subscriber
from tests.pipeline.helpers import NotifyListener, start_daemon, write_config
from tests.sysdeps import need


@pytest.fixture(autouse=True)
def _rtsp_server_installed() -> None:
    need(rtsp_loopback.SERVER, "ffmpeg")


RTSP = ["rtsp0", "rtsp1"]
FILES = ["file0", "file1"]


class Collector:
    def __init__(self, sub: Subscriber) -> None:
        self.sub = sub
        self.msgs: list[tuple[float, dict]] = []
        self.states: dict[str, list[str]] = {c: [] for c in RTSP}
        self.tracker = SequenceTracker()
        self.events: list[str] = []

    def pump(self, seconds: float, until=None) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            m = self.sub.recv(0.1)
            if m is not None and m.kind == "det":
                self.msgs.append((time.monotonic(), m.payload))
                self.events += self.tracker.observe(m.payload)
            elif m is not None and m.kind == "status":
                for c in RTSP:
                    st = m.payload["cameras"][c]["state"]
                    if not self.states[c] or self.states[c][-1] != st:
                        self.states[c].append(st)
            if until is not None and until():
                return True
        return until is None

    def count(self, cam: str, since: float = 0.0, until: float = float("inf")) -> int:
        return sum(1 for t, p in self.msgs if p["camera_id"] == cam and since <= t < until)


def test_rtsp_server_killed_and_restarted(
    synth_cameras: Path, tiny_engine: Path, tmp_path: Path
) -> None:
    server = rtsp_loopback.LoopbackRtspServer().start()
    notify = NotifyListener(tmp_path / "notify.sock")
    proc = None
    try:
        for k, name in enumerate(RTSP):
            server.feed(name, synth_cameras / f"cam0{k + 2}.mp4")
        time.sleep(1.0)
        fast = {
            "read_timeout_s": 1.0,
            "open_timeout_s": 3.0,
            "stall_timeout_s": 1.5,
            "backoff": {"initial_s": 0.3, "max_s": 1.5, "jitter": 0.1},
        }
        cams = [
            {"type": "rtsp", "id": n, "url": server.url(n), "transport": "udp", **fast}
            for n in RTSP
        ]
        cams += [
            {"type": "file", "id": n, "path": str(synth_cameras / f"cam0{k}.avi")}
            for k, n in enumerate(FILES)
        ]
        endpoint = f"tcp://127.0.0.1:{rtsp_loopback.free_port()}"
        cfg = write_config(
            tmp_path / "rtsp.yaml",
            tiny_engine,
            cams,
            endpoint,
            publisher={"status_interval_s": 0.25},
        )
        proc = start_daemon(cfg, tmp_path / "daemon.log", notify.path)
        with Subscriber(endpoint, ["det/", "status/"]) as sub:
            c = Collector(sub)
            assert notify.wait_for("READY=1", 60), (tmp_path / "daemon.log").read_text()
            assert c.pump(30, lambda: all(c.count(n) >= 10 for n in RTSP)), (
                tmp_path / "daemon.log"
            ).read_text()[-3000:]

            server.stop_server()
            t_kill = time.monotonic()
            c.pump(4.0)
            t_back = time.monotonic()
            log = (tmp_path / "daemon.log").read_text()
            for n in RTSP:
                assert set(c.states[n]) & {"stalled", "backoff"}, c.states
                # at most a second of buffered frames after the kill, then silence
                assert c.count(n, t_kill + 2.0, t_back) == 0
                # issue 17 item 8: stalled first, whatever read_timeout_s, then reconnecting
                assert f"camera {n}: streaming → stalled (no frame for" in log, log[-3000:]
                assert f"camera {n}: stalled → backoff" in log, log[-3000:]
                assert f"camera {n}: streaming → backoff" not in log, log[-3000:]
            for n in FILES:  # 15 fps files keep their rate while RTSP is down
                assert c.count(n, t_kill, t_back) >= 0.5 * 15 * 4, c.count(n, t_kill, t_back)

            server.restart()
            assert c.pump(30, lambda: all(c.count(n, t_back) >= 5 for n in RTSP)), c.states
            log = (tmp_path / "daemon.log").read_text()
            for n in RTSP:
                assert c.states[n][-1] == "streaming"
                # back on a new connection, never by a stale frame while the server was down
                assert f"camera {n}: stalled → streaming" not in log, log[-3000:]
            assert c.tracker.restarts == 0 and c.tracker.gaps == 0, c.events
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(15) == 0
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        server.stop()
        notify.close()
