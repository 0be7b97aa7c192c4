"""The daemon: a flat start sequence, a health loop, and a bounded drain at SIGTERM.

Start, in order (each step logs one line):

1. load the engine (or build it from ONNX on first start) and measure it;
2. bind the ZeroMQ publisher;
3. start the inference workers and the dispatcher;
4. start one reader per camera;
5. tell systemd ``READY=1``; then tick health (watchdog, stall checks, status) until a
   signal arrives.

Stop: ``STOPPING=1``, readers stop, the frames already taken are dispatched, in-flight
batches finish and are published, the socket closes — all within
``health.shutdown_timeout_s``; exit code 0.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from edge_infer.pipeline import hw_decode
from edge_infer.pipeline.batcher import DeadlineBatcher, LatencyModel
from edge_infer.pipeline.budget_watch import BudgetWatch
from edge_infer.pipeline.config import DaemonConfig
from edge_infer.pipeline.engine_setup import engine_for
from edge_infer.pipeline.frames import FrameHub, FramePool
from edge_infer.pipeline.health import (
    Metrics,
    Progress,
    PrometheusExporter,
    SdNotifier,
    Watchdog,
)
from edge_infer.pipeline.logs import setup_logging
from edge_infer.pipeline.publisher import ModelInfo, Publisher
from edge_infer.pipeline.sources import (
    CameraSource,
    CameraState,
    hardware_problem,
    set_parallel_opens,
)
from edge_infer.pipeline.warmup import frame_pools, warm_up_daemon
from edge_infer.pipeline.workers import BatchResult, Dispatcher, FrameResult, ModelSpec, WorkerPool

if TYPE_CHECKING:
    pass

log = logging.getLogger("edge_infer.daemon")


class Daemon:
    """The running service; ``start()`` then ``serve(stop_event)`` then ``shutdown()``."""

    def __init__(
        self,
        cfg: DaemonConfig,
        *,
        notify_socket: str | None = None,
        watchdog_usec: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.cfg = cfg
        self.clock = clock
        self.boot_id = uuid.uuid4().hex
        self.notifier = SdNotifier(notify_socket)
        self.watchdog_interval = (watchdog_usec / 1e6 / 2) if watchdog_usec else None
        self.hub = FrameHub()
        self.latency = LatencyModel()
        self.metrics = Metrics(cfg.health.latency_window, clock)
        self.budget_watch = BudgetWatch(cfg.batching.latency_budget_ms, clock)
        self.progress = Progress(clock)
        self.sources: list[CameraSource] = []
        self.frame_pools: dict[str, FramePool] = {}
        self.started = clock()
        self.prometheus: PrometheusExporter | None = None

    # -- start ------------------------------------------------------------------------------
    def start(self) -> None:
        cfg = self.cfg
        # process-wide, read by OpenCV at every open: set before any thread runs
        set_parallel_opens(cfg.capture.parallel_open)
        # a camera that cannot decode as configured is refused before the engine loads
        for cam in cfg.enabled_cameras:
            if problem := hardware_problem(cam):
                raise hw_decode.HardwareDecodeUnavailable(f"camera {cam.id}: {problem}")
        self.backend, self.engine = engine_for(cfg)
        for note in self.engine.tuning_notes():
            log.warning(
                "%s: %s; for the fastest tactics at this setting rebuild it "
                "(`edge-infer build` with the same setting, or delete it and the "
                "daemon builds it)",
                cfg.engine.path,
                note,
            )
        self.spec = ModelSpec.from_engine(
            self.engine, cfg.engine.input_name, cfg.engine.output_name
        )
        max_batch = min(cfg.batching.max_batch or self.spec.max_batch, self.spec.max_batch)
        if cfg.inference.warmup:
            warm_up_daemon(cfg, self.backend.name, self.engine, self.spec, self.latency, max_batch)
        self.model = ModelInfo.from_engine(self.engine, cfg.engine.model_name)
        self.batcher = DeadlineBatcher(
            max_batch,
            cfg.batching.latency_budget_ms / 1e3,
            self.latency,
            self.clock,
            max_per_camera=cfg.batching.max_frames_per_camera,
            safety_margin_s=cfg.batching.safety_margin_ms / 1e3,
        )
        log.info(
            "engine %s: input %dx%d, batch %d..%d, model %s %s",
            cfg.engine.path,
            self.spec.input_width,
            self.spec.input_height,
            self.spec.min_batch,
            max_batch,
            self.model.name,
            self.model.precision,
        )

        self.publisher = Publisher(
            cfg.publisher,
            cfg.device_id,
            self.boot_id,
            self.model,
            cfg.postprocess.class_names,
            self.status,
            self._on_published,
            self.clock,
        )
        endpoints = self.publisher.bind()
        self.publisher.start()
        log.info("publishing on %s (boot id %s)", ", ".join(endpoints), self.boot_id)
        if cfg.health.prometheus_port:
            self.prometheus = PrometheusExporter(
                cfg.health.prometheus_address, cfg.health.prometheus_port
            )
            self.metrics.prometheus = self.prometheus

        self.pool = WorkerPool(
            self.engine,
            self.spec,
            cfg.inference.workers,
            cfg.postprocess,
            cfg.preprocess.color_order,
            self._on_result,
            self.latency,
            self._on_batch_done,
        )
        self.dispatcher = Dispatcher(self.hub, self.batcher, self.pool)
        self.pool.start()
        self.dispatcher.start()
        log.info(
            "%d inference workers, latency budget %.0f ms",
            cfg.inference.workers,
            cfg.batching.latency_budget_ms,
        )

        self.frame_pools = frame_pools(cfg, self.pool, cfg.enabled_cameras)
        self.sources = [
            CameraSource(cam, self.hub, clock=self.clock, pool=self.frame_pools.get(cam.id))
            for cam in cfg.enabled_cameras
        ]
        if self.frame_pools:
            log.info("cameras decode into %d pinned buffers each", cfg.inference.frame_buffers)
        for s in self.sources:
            s.start()
        log.info("%d cameras started", len(self.sources))

        self.notifier.notify("READY=1", f"STATUS={self.summary()}")
        self.progress.started = self.clock()  # the watchdog's grace runs from READY
        self.watchdog = Watchdog(
            self.notifier, self.progress, cfg.health.stall_after_s, self.summary, self.clock
        )

    # -- callbacks from worker / publisher threads -----------------------------------------
    def _on_result(self, result: BatchResult) -> None:
        self.publisher.submit(result)

    def _on_batch_done(self, n: int, ok: bool) -> None:
        self.progress.batch_done(ok)

    def _on_published(self, r: FrameResult, batch: BatchResult, now: float) -> None:
        self.metrics.frame_published(
            r.frame.camera_id,
            batch.infer_start_ts - r.frame.capture_ts,
            batch.infer_end_ts - batch.infer_start_ts,
            now - r.frame.capture_ts,
            len(batch.frames),
        )
        if self.prometheus is not None and r is batch.frames[0]:
            self.prometheus.batch_done(len(batch.frames), batch.infer_end_ts - batch.infer_start_ts)

    # -- status -----------------------------------------------------------------------------
    def camera_rows(self) -> dict[str, dict[str, Any]]:
        rates = self.metrics.camera_rates()
        rows = {}
        for s in self.sources:
            st = s.stats
            fps, published = rates.get(s.id, (0.0, 0))
            rows[s.id] = {
                "state": s.state.value,
                "fps": round(fps, 2),
                "published": published,
                "frames": st.frames,
                "skipped": st.skipped,
                "dropped": st.dropped + self.batcher.stats.dropped_by_camera.get(s.id, 0),
                "invalid": st.invalid,
                "reconnects": st.reconnects,
                "reconnect_attempts": st.reconnect_attempts,
                "stale": st.stale,
                "size": list(st.size) if st.size else None,
                "error": st.last_error,
            }
        return rows

    def status(self) -> dict[str, Any]:
        """The ``status/<device>`` payload (see ``schemas/status-v1.json``)."""
        b = self.batcher.stats
        return {
            "schema": "edge_infer.status",
            "schema_version": 1,
            "device_id": self.cfg.device_id,
            "boot_id": self.boot_id,
            "time": time.time(),
            "uptime_s": round(self.clock() - self.started, 1),
            "cameras": self.camera_rows(),
            "latency_ms": self.metrics.percentiles(),
            "batches": b.batches,
            "batch_sizes": {str(k): v for k, v in sorted(b.batch_sizes.items())},
            "batch_failures": self.progress.failed,
            "batcher_dropped": b.dropped,
            "engine_ms": {str(k): round(v * 1e3, 2) for k, v in self.latency.snapshot().items()},
            "budget": self.budget_watch.check(
                self.metrics.percentiles().get("total", {}),
                self.latency.snapshot(),
                sum(s.state == CameraState.STREAMING for s in self.sources),
                self.cfg.inference.workers,
                sum(s.stats.frames for s in self.sources),
            ),
        }

    def summary(self) -> str:
        states = [s.state for s in self.sources]
        streaming = sum(st == CameraState.STREAMING for st in states)
        fps = sum(f for f, _ in self.metrics.camera_rates().values())
        p99 = self.metrics.percentiles().get("total", {}).get("p99", 0.0)
        return (
            f"{streaming}/{len(states)} cameras streaming, {fps:.1f} fps, "
            f"p99 {p99:.0f} ms, {self.progress.batches} batches"
        )

    # -- run and stop -----------------------------------------------------------------------
    def tick(self) -> None:
        """One health step: stall watchdog per camera, systemd watchdog, gauges."""
        for s in self.sources:
            s.check_stalled()
        if self.notifier.enabled:
            self.watchdog.tick()
        if self.prometheus is not None:
            self.prometheus.cameras(self.camera_rows(), [c.value for c in CameraState])

    def serve(self, stop: threading.Event) -> None:
        period = min(self.watchdog_interval or 1.0, 1.0)
        while not stop.wait(period):
            self.tick()

    def shutdown(self) -> bool:
        """Drain and close within ``health.shutdown_timeout_s``; True if everything drained."""
        deadline = self.clock() + self.cfg.health.shutdown_timeout_s
        self.notifier.notify("STOPPING=1", "STATUS=draining")
        log.info("stopping: draining in-flight batches")
        for s in self.sources:
            s.stop()

        def left() -> float:
            return max(0.0, deadline - self.clock())

        ok = self.dispatcher.stop(left())
        ok = self.pool.wait_idle(left()) and ok
        self.pool.stop(min(left(), 1.0))
        ok = self.publisher.close(left()) and ok
        # readers blocked in read() return within their read timeout; give them a second
        # beyond the budget, then leave the rest (run_daemon exits without waiting for them)
        end = self.clock() + left() + 1.0
        for s in self.sources:
            s.join(max(0.0, end - self.clock()))
        if self.frame_pools:
            pools = self.frame_pools.values()
            log.info(
                "frame pools: %d frames decoded into %d pinned buffers, %d into ordinary "
                "memory (every buffer in use)",
                sum(p.acquired for p in pools),
                sum(p.allocated for p in pools),
                sum(p.misses for p in pools),
            )
        if self.prometheus is not None:
            self.prometheus.close()
        self.notifier.close()
        log.info(
            "stopped (%s): %d frames published",
            "drained" if ok else "drain timed out",
            self.publisher.global_seq,
        )
        return ok


def run_daemon(cfg: DaemonConfig, env: Mapping[str, str] | None = None) -> int:
    """Entry point of ``edge-infer run``: the environment becomes explicit settings here."""
    env = os.environ if env is None else env
    setup_logging(cfg, journald="JOURNAL_STREAM" in env)
    watchdog_usec = int(env["WATCHDOG_USEC"]) if env.get("WATCHDOG_USEC", "").isdigit() else None
    if env.get("WATCHDOG_PID", str(os.getpid())) != str(os.getpid()):
        watchdog_usec = None  # the watchdog is meant for another process
    daemon = Daemon(
        cfg, notify_socket=env.get("NOTIFY_SOCKET") or None, watchdog_usec=watchdog_usec
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("signal %s: shutting down", signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    daemon.start()
    try:
        daemon.serve(stop)
    finally:
        drained = daemon.shutdown()
    stuck = [s.id for s in daemon.sources if not s.join(0)]
    if stuck or not drained:
        # a thread blocked inside a native call (a camera read, a wedged inference) cannot be
        # interrupted, and interpreter teardown under it can hang or abort: what could be
        # published is, so leave now, within the stop bound, with the exit code of a stop
        log.warning(
            "exiting with threads still busy (readers blocked: %s, drained: %s)",
            stuck or "none",
            drained,
        )
        logging.shutdown()
        os._exit(0)
    return 0
