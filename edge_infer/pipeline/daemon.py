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

import json
import logging
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_infer.errors import ConfigError, EngineCompatibilityError
from edge_infer.pipeline import hw_decode
from edge_infer.pipeline.backend_choice import BackendChoice, resolve_backend
from edge_infer.pipeline.batcher import DeadlineBatcher, LatencyModel
from edge_infer.pipeline.budget_watch import BudgetWatch
from edge_infer.pipeline.config import DaemonConfig, EngineConfig, file_sha256
from edge_infer.pipeline.frames import FrameHub, FramePool
from edge_infer.pipeline.health import (
    Metrics,
    Progress,
    PrometheusExporter,
    SdNotifier,
    Watchdog,
)
from edge_infer.pipeline.native_logs import NativeStderr
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
    from edge_infer.engine import Engine

log = logging.getLogger("edge_infer.daemon")


def _onnx_input_shape(path: Path) -> tuple[str, list[int]]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    for inp in model.graph.input:
        if inp.name not in inits:
            dims = [
                d.dim_value if d.HasField("dim_value") else -1
                for d in inp.type.tensor_type.shape.dim
            ]
            return inp.name, dims
    raise ConfigError(f"engine.onnx {path}: the model has no input")


def _build_dims(
    onnx_path: Path, name: str, dims: list[int], size: tuple[int, int] | None
) -> list[int]:
    """The ``[N, C, H, W]`` input an engine is built for: the model's, with dynamic H and W
    taken from ``engine.build.input_size`` (required then; it must match fixed ones)."""
    if len(dims) != 4 or dims[1] < 1:
        raise ConfigError(f"engine.onnx {onnx_path}: input {name} must be [N, 3, H, W], got {dims}")
    if size is None:
        if min(dims[2:]) < 1:
            raise ConfigError(
                f"engine.onnx {onnx_path}: input {name} has dynamic height/width {dims}; set "
                "engine.build.input_size (WxH, e.g. 416x256 for 16:9 cameras)"
            )
        return dims
    w, h = size
    if (dims[2] > 0 and dims[2] != h) or (dims[3] > 0 and dims[3] != w):
        raise ConfigError(
            f"engine.build.input_size {w}x{h} does not match engine.onnx {onnx_path}'s fixed "
            f"input {name} {dims}"
        )
    return [dims[0], dims[1], h, w]


def calibration_cache(
    cfg: EngineConfig, input_size: tuple[int, int], color_order: str = "rgb"
) -> Path:
    """The INT8 calibration cache of ``cfg.onnx``: the configured one when it fits the model,
    else made from ``engine.build.calibration.data`` (and written, for the next build)."""
    from edge_infer.engine import CalibrationCache, CalibrationError, calibrate
    from edge_infer.pipeline.calibration_data import CalibrationData

    if cfg.onnx is None:
        raise ConfigError("engine.onnx: calibration needs the ONNX model")
    cal = cfg.build.calibration
    path = cal.cache or Path(str(cfg.path) + ".calib")
    if path.is_file():
        try:
            CalibrationCache.load(path).check_model(file_sha256(cfg.onnx), str(path))
            return path
        except CalibrationError as exc:
            if cal.data is None:
                raise ConfigError(f"engine.build.calibration.cache: {exc}") from None
            log.warning("%s; calibrating again from %s", exc, cal.data)
    if cal.data is None:
        raise ConfigError(
            f"engine.build.calibration: precision int8 needs a calibration "
            f"cache; {path} does not exist and calibration.data is not set"
        )
    data = CalibrationData(cal.data, input_size, cal.frames, color_order=color_order)
    t0 = time.monotonic()
    log.info(
        "calibrating %s for INT8 (%s calibrator) on up to %d frames of %s",
        cfg.onnx,
        cal.calibrator,
        cal.frames,
        cal.data,
    )
    # at the engine's input size (a model with dynamic height/width has none of its own)
    name, _ = _onnx_input_shape(cfg.onnx)
    shapes = {name: (1, 3, input_size[1], input_size[0])}
    result = calibrate(cfg.onnx, data, calibrator=cal.calibrator, shapes=shapes)
    path.parent.mkdir(parents=True, exist_ok=True)
    result.cache.save(path)
    log.info(
        "calibrated on %d frames in %.1f s: wrote %s",
        result.frames_used,
        time.monotonic() - t0,
        path,
    )
    return path


def build_engine(
    cfg: EngineConfig,
    color_order: str = "rgb",
    backend_options: Mapping[str, Any] | None = None,
    backend: str = "cpu",
) -> Engine:
    """Build ``cfg.onnx`` into ``cfg.path`` for backend ``backend`` on this device (written
    atomically), in ``engine.build.precision`` or the backend's default precision.

    An INT8 build calibrates first when it has no usable cache (frames preprocessed with
    ``color_order``, as the workers will). ``backend_options`` are what
    :func:`~edge_infer.engine.configure_backend` returned for the workers (and the CUDA
    device), so the tactics are timed as each worker will run them.
    """
    from edge_infer.engine import BuildOptions, Engine, build

    if cfg.onnx is None or not cfg.onnx.is_file():
        raise ConfigError(f"engine.onnx: {cfg.onnx} is not a file; cannot build {cfg.path}")
    name, dims = _onnx_input_shape(cfg.onnx)
    b = cfg.build
    dims = _build_dims(cfg.onnx, name, dims, b.input_size_wh())
    precision = b.precision_for(backend)

    def shape(n: int) -> dict[str, tuple[int, ...]]:
        return {name: (n, *dims[1:])}

    cache = None
    if precision == "int8":
        cache = str(calibration_cache(cfg, (dims[3], dims[2]), color_order))
    opts = BuildOptions(
        min_shapes=shape(b.min_batch),
        opt_shapes=shape(b.opt_batch),
        max_shapes=shape(b.max_batch),
        backend=backend,
        precision=precision,
        int8_fallback=b.int8_fallback,
        calib_cache=cache,
        tune=b.tune,
        backend_options=dict(backend_options or {}),
        timing_cache=str(cfg.path) + ".timing.json",
    )
    cfg.path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    log.info(
        "building %s from %s for backend %s (input %dx%d, batch %d..%d, %s)",
        cfg.path,
        cfg.onnx,
        backend,
        dims[3],
        dims[2],
        b.min_batch,
        b.max_batch,
        precision,
    )
    build(cfg.onnx, cfg.path, options=opts)
    log.info("built %s in %.1f s", cfg.path, time.monotonic() - t0)
    return Engine.load(cfg.path)


def load_engine(
    cfg: EngineConfig,
    color_order: str = "rgb",
    backend_options: Mapping[str, Any] | None = None,
    backend: str = "cpu",
) -> Engine:
    """The engine file for backend ``backend``, built from ONNX when missing (or stale, if
    allowed); ``color_order`` is the workers' (``preprocess.color_order``), for an INT8
    calibration; a build uses ``backend_options`` (see :func:`build_engine`).

    An engine built for another backend is rebuilt for ``backend`` with
    ``engine.rebuild_on_mismatch`` and refused without it: it never runs on the other one.
    """
    from edge_infer.engine import Engine

    def rebuild() -> Engine:
        return build_engine(cfg, color_order, backend_options, backend)

    can_rebuild = cfg.rebuild_on_mismatch and cfg.onnx is not None
    if cfg.path.is_file():
        try:
            # the backend first: checking the device of another backend's engine would
            # open that backend's device (a GPU this machine may not have)
            engine = Engine.load(cfg.path, check_device=False)
            if engine.backend_name != backend:
                if not can_rebuild:
                    raise ConfigError(
                        f"engine.path: {cfg.path} is an engine for backend "
                        f"'{engine.backend_name}' but inference.backend resolved to "
                        f"'{backend}': set engine.rebuild_on_mismatch (with engine.onnx) to "
                        f"rebuild it for {backend}, delete it, or set inference.backend: "
                        f"{engine.backend_name}"
                    )
                log.warning(
                    "%s was built for backend %s: rebuilding it for %s from %s",
                    cfg.path,
                    engine.backend_name,
                    backend,
                    cfg.onnx,
                )
                return rebuild()
            engine.check_compatible()
        except EngineCompatibilityError:
            if not can_rebuild:
                raise
            log.warning("%s was built elsewhere: rebuilding from %s", cfg.path, cfg.onnx)
            return rebuild()
        if cfg.onnx is None or not cfg.onnx.is_file():
            return engine
        if engine.build_record.get("model_sha256") == file_sha256(cfg.onnx):
            built = (engine.build_record.get("options") or {}).get("precision", "fp32")
            wanted = cfg.build.precision_for(backend)
            if built != wanted:  # options only shape a missing engine
                log.warning(
                    "%s was built in %s, engine.build.precision is %s%s: delete it to rebuild",
                    cfg.path,
                    built,
                    wanted,
                    "" if cfg.build.precision else f" (backend {backend}'s default)",
                )
            size = cfg.build.input_size_wh()
            shape = tuple(engine.inputs[0].shape)
            if size is not None and len(shape) == 4 and (shape[3], shape[2]) != size:
                log.warning(
                    "%s was built for input %dx%d, engine.build.input_size is %s: delete it "
                    "to rebuild",
                    cfg.path,
                    shape[3],
                    shape[2],
                    cfg.build.input_size,
                )
            return engine
        if not cfg.rebuild_on_mismatch:
            log.warning(
                "%s was built from another model than %s (set "
                "engine.rebuild_on_mismatch to rebuild)",
                cfg.path,
                cfg.onnx,
            )
            return engine
        log.warning("%s was built from another model: rebuilding from %s", cfg.path, cfg.onnx)
    elif cfg.onnx is None:
        raise ConfigError(
            f"engine.path: {cfg.path} does not exist and engine.onnx is not set; "
            "build it with `edge-infer build MODEL.onnx` or set engine.onnx"
        )
    return rebuild()


def engine_for(cfg: DaemonConfig) -> tuple[BackendChoice, Engine]:
    """The configured backend (resolved, its device selected) and its engine, loaded or
    built; what ``start`` and ``edge-infer run --build-only`` do first."""
    choice = resolve_backend(cfg.inference)
    # the backend shares the machine between the workers (the CPU: each context's
    # threads get their share of the cores); an engine built here is tuned for that
    options = choice.build_options(cfg.inference.workers, usable_cores(cfg.inference.cores))
    log.info(
        "backend %s, settings per worker: %s (%d workers)",
        choice.describe(),
        options,
        cfg.inference.workers,
    )
    return choice, load_engine(cfg.engine, cfg.preprocess.color_order, options, choice.name)


def usable_cores(asked: int | None) -> int | None:
    """``inference.cores``, clamped (with a warning) to the cores this process may run on:
    more threads than cores only makes them wait for each other."""
    try:
        available = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        available = os.cpu_count() or 1
    if asked is not None and asked > available:
        log.warning(
            "inference.cores is %d but this process can use %d core(s): using %d",
            asked,
            available,
            available,
        )
        return available
    return asked


class JsonFormatter(logging.Formatter):
    """One JSON object per line (``logging.json: true``)."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": round(record.created, 3),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(cfg: DaemonConfig, journald: bool) -> None:
    """stderr logs; no timestamps under journald (it adds its own). With JSON logs, what
    OpenCV and FFmpeg write to stderr is routed through logging too (native_logs)."""
    handler = logging.StreamHandler()
    if cfg.logging.json_format:
        handler = logging.StreamHandler(NativeStderr().start())
        handler.setFormatter(JsonFormatter())
    else:
        fmt = "%(levelname)s %(name)s: %(message)s"
        handler.setFormatter(logging.Formatter(fmt if journald else "%(asctime)s " + fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(cfg.logging.level)


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
