"""A loopback RTSP server fed by ffmpeg, for tests, the demo and benchmarks.

Debian's ``rtsp-server-perl`` accepts streams pushed by ``ffmpeg -f rtsp`` on the source
port and serves them to clients on the client port (RTP over UDP only, hence the
``transport: udp`` camera setting). :class:`LoopbackRtspServer` starts it on free ports;
``feed(name, file)`` pushes a looping file in real time; ``stop_feed`` / ``restart`` let
tests kill a stream or the whole server mid-run.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from edge_infer.errors import EdgeInferError

SERVER = "rtsp-server-perl"


def available() -> bool:
    """True when both the server and ffmpeg are installed."""
    return shutil.which(SERVER) is not None and shutil.which("ffmpeg") is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    return False


def _terminate(proc: subprocess.Popen | None, timeout: float = 3.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


class LoopbackRtspServer:
    """``rtsp-server-perl`` on 127.0.0.1 plus one ffmpeg feeder per stream."""

    def __init__(self, client_port: int | None = None, source_port: int | None = None) -> None:
        if not available():
            raise EdgeInferError(
                f"{SERVER} and ffmpeg are needed for the loopback RTSP server; "
                "install them with tools/install_system_deps.sh"
            )
        self.client_port = client_port or free_port()
        self.source_port = source_port or free_port()
        # rtsp-server-perl starts its RTP ports at 20000 unless told: two servers on one
        # machine (tests side by side) would clash and the second one's feeds read 404
        self.rtp_port = free_port() & ~1
        self.server: subprocess.Popen | None = None
        self.feeds: dict[str, tuple[Path, subprocess.Popen]] = {}

    def url(self, name: str) -> str:
        """The URL clients read ``name`` from."""
        return f"rtsp://127.0.0.1:{self.client_port}/{name}"

    def start(self) -> LoopbackRtspServer:
        self.server = subprocess.Popen(
            [
                SERVER,
                "-c",
                str(self.client_port),
                "-s",
                str(self.source_port),
                "--client_listen_address",
                "127.0.0.1",
                "--source_listen_address",
                "127.0.0.1",
                "--rtp_start_port",
                str(self.rtp_port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not (_wait_port(self.client_port, 10) and _wait_port(self.source_port, 10)):
            self.stop()
            raise EdgeInferError(
                f"{SERVER} did not listen on ports {self.client_port}/"
                f"{self.source_port} within 10 s"
            )
        return self

    def feed(self, name: str, file: str | Path) -> None:
        """Push ``file`` (H.264 .mp4) as stream ``name``, looping, at its real-time rate."""
        cmd = [
            "ffmpeg",
            "-loglevel",
            "error",
            "-re",
            "-stream_loop",
            "-1",
            "-i",
            str(file),
            "-an",
            "-c",
            "copy",
            "-f",
            "rtsp",
            f"rtsp://127.0.0.1:{self.source_port}/{name}",
        ]
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        self.feeds[name] = (Path(file), proc)

    def stop_feed(self, name: str) -> None:
        _, proc = self.feeds[name]
        _terminate(proc)

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """Wait until every feed is still running after having had time to announce."""
        end = time.monotonic() + timeout
        time.sleep(min(1.0, timeout))
        return all(p.poll() is None for _, p in self.feeds.values()) and time.monotonic() < end

    def stop_server(self) -> None:
        """Kill the server and every feed (the streams die with it)."""
        for _, proc in self.feeds.values():
            _terminate(proc)
        _terminate(self.server)

    def restart(self) -> None:
        """Start the server again on the same ports and re-feed every stream."""
        self.stop_server()
        files = {n: f for n, (f, _) in self.feeds.items()}
        self.start()
        for name, file in files.items():
            self.feed(name, file)

    def stop(self) -> None:
        self.stop_server()

    def __enter__(self) -> LoopbackRtspServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
