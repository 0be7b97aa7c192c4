"""Health: metrics, sd_notify, the systemd watchdog tied to real progress, Prometheus.

``sd_notify`` is the plain datagram protocol (no libsystemd): ``READY=1`` once the engine
is loaded and sockets are bound, ``WATCHDOG=1`` only while batches are actually completing
(a stuck inference stops the pings and systemd restarts the service), ``STATUS=`` a one-line
summary, ``STOPPING=1`` at shutdown. The socket address and watchdog period come from the
entry point (which reads ``NOTIFY_SOCKET`` / ``WATCHDOG_USEC``), not from this module.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

log = logging.getLogger(__name__)
Clock = Callable[[], float]


class SdNotifier:
    """Sends sd_notify datagrams to ``address`` (a path, or ``@name`` for abstract sockets)."""

    def __init__(self, address: str | None) -> None:
        self.address = address
        self._sock: socket.socket | None = None
        if address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._target = "\0" + address[1:] if address.startswith("@") else address

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *fields: str) -> bool:
        """Send ``FIELD=value`` lines in one datagram; False when disabled or failed."""
        if self._sock is None:
            return False
        try:
            self._sock.sendto("\n".join(fields).encode(), self._target)
            return True
        except OSError as exc:  # systemd gone or socket full: log, the service keeps running
            log.warning("sd_notify to %s failed: %s", self.address, exc)
            return False

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class Progress:
    """When the last batch completed; the watchdog pings only while this moves."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.started = clock()
        self.last_batch: float | None = None
        self.batches = 0
        self.failed = 0

    def batch_done(self, ok: bool = True) -> None:
        if ok:
            self.last_batch = self.clock()
            self.batches += 1
        else:
            self.failed += 1

    def healthy(self, stall_after_s: float, now: float | None = None) -> bool:
        """True while a batch completed within ``stall_after_s`` (or since start, at first)."""
        now = self.clock() if now is None else now
        ref = self.last_batch if self.last_batch is not None else self.started
        return now - ref <= stall_after_s


class Watchdog:
    """Decides each tick whether to send ``WATCHDOG=1`` and a ``STATUS=`` line."""

    def __init__(
        self,
        notifier: SdNotifier,
        progress: Progress,
        stall_after_s: float,
        summary: Callable[[], str],
        clock: Clock = time.monotonic,
    ) -> None:
        self.notifier = notifier
        self.progress = progress
        self.stall_after_s = stall_after_s
        self.summary = summary
        self.clock = clock
        self.pings = 0
        self.withheld = 0

    def tick(self) -> bool:
        """One check; True if a ping was sent."""
        now = self.clock()
        if self.progress.healthy(self.stall_after_s, now):
            self.notifier.notify("WATCHDOG=1", f"STATUS={self.summary()}")
            self.pings += 1
            return True
        self.withheld += 1
        if self.withheld == 1 or self.withheld % 10 == 0:
            log.error(
                "no batch completed for %.1f s: watchdog pings withheld",
                now - (self.progress.last_batch or self.progress.started),
            )
        self.notifier.notify(
            f"STATUS=stalled: no batch for "
            f"{now - (self.progress.last_batch or self.progress.started):.0f} s"
        )
        return False


class CameraMeter:
    """Published frames of one camera: rate over a sliding window."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self.times: deque[float] = deque()
        self.published = 0

    def add(self, now: float) -> None:
        self.times.append(now)
        self.published += 1
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self.times and now - self.times[0] > self.window_s:
            self.times.popleft()

    def fps(self, now: float) -> float:
        self._trim(now)
        return len(self.times) / self.window_s


class Metrics:
    """Per-camera rates and latency percentiles over recent frames (thread-safe)."""

    def __init__(self, window: int = 2048, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self.total_ms: deque[float] = deque(maxlen=window)
        self.queue_ms: deque[float] = deque(maxlen=window)
        self.infer_ms: deque[float] = deque(maxlen=window)
        self.cameras: dict[str, CameraMeter] = {}
        self.prometheus: Any = None

    def frame_published(
        self, camera: str, queue_s: float, infer_s: float, total_s: float, batch: int
    ) -> None:
        with self._lock:
            self.cameras.setdefault(camera, CameraMeter()).add(self.clock())
            self.total_ms.append(total_s * 1e3)
            self.queue_ms.append(queue_s * 1e3)
            self.infer_ms.append(infer_s * 1e3)
        if self.prometheus is not None:
            self.prometheus.frame(camera, queue_s, infer_s, total_s)

    def percentiles(self) -> dict[str, dict[str, float]]:
        with self._lock:
            series = {
                "total": list(self.total_ms),
                "queue": list(self.queue_ms),
                "inference": list(self.infer_ms),
            }
        out = {}
        for name, values in series.items():
            if values:
                p = np.percentile(np.asarray(values), [50, 90, 99])
                out[name] = {
                    "p50": round(float(p[0]), 2),
                    "p90": round(float(p[1]), 2),
                    "p99": round(float(p[2]), 2),
                    "n": len(values),
                }
        return out

    def camera_rates(self) -> dict[str, tuple[float, int]]:
        now = self.clock()
        with self._lock:
            return {c: (m.fps(now), m.published) for c, m in self.cameras.items()}


class PrometheusExporter:
    """Optional ``prometheus-client`` metrics; import happens only when enabled."""

    def __init__(self, address: str, port: int) -> None:
        try:
            import prometheus_client as pc
        except ImportError as exc:
            from edge_infer.errors import ConfigError

            raise ConfigError(
                "health.prometheus_port is set but prometheus-client is not "
                "installed: pip install 'edge-infer[pipeline]'"
            ) from exc
        self.registry = pc.CollectorRegistry()
        r = self.registry
        self.fps = pc.Gauge(
            "edge_infer_camera_fps", "published frames per second", ["camera"], registry=r
        )
        self.drops = pc.Gauge(
            "edge_infer_camera_dropped_frames",
            "frames dropped at the source",
            ["camera"],
            registry=r,
        )
        self.reconnects = pc.Gauge(
            "edge_infer_camera_reconnects",
            "streams that delivered again after one ended",
            ["camera"],
            registry=r,
        )
        self.attempts = pc.Gauge(
            "edge_infer_camera_reconnect_attempts",
            "opens tried after a failure",
            ["camera"],
            registry=r,
        )
        self.state = pc.Gauge(
            "edge_infer_camera_state",
            "1 for the camera's current state",
            ["camera", "state"],
            registry=r,
        )
        buckets = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
        self.queue = pc.Histogram(
            "edge_infer_queue_delay_seconds",
            "capture → inference start",
            buckets=buckets,
            registry=r,
        )
        self.infer = pc.Histogram(
            "edge_infer_inference_seconds", "batch inference latency", buckets=buckets, registry=r
        )
        self.total = pc.Histogram(
            "edge_infer_latency_seconds", "capture → publish", buckets=buckets, registry=r
        )
        self.batch = pc.Histogram(
            "edge_infer_batch_size",
            "frames per batch",
            buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=r,
        )
        self.server, self.thread = pc.start_http_server(port, addr=address, registry=r)

    def frame(self, camera: str, queue_s: float, infer_s: float, total_s: float) -> None:
        self.queue.observe(queue_s)
        self.total.observe(total_s)

    def batch_done(self, size: int, seconds: float) -> None:
        self.batch.observe(size)
        self.infer.observe(seconds)

    def cameras(self, rows: dict[str, dict[str, Any]], states: list[str]) -> None:
        for cam, row in rows.items():
            self.fps.labels(cam).set(row["fps"])
            self.drops.labels(cam).set(row["dropped"])
            self.reconnects.labels(cam).set(row["reconnects"])
            self.attempts.labels(cam).set(row["reconnect_attempts"])
            for s in states:
                self.state.labels(cam, s).set(1.0 if row["state"] == s else 0.0)

    def close(self) -> None:
        self.server.shutdown()
