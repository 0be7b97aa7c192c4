"""The daemon's engine: the configured backend resolved, its engine file loaded — or built from
ONNX (calibrating first for INT8) when missing, stale or made for another backend.

What ``Daemon.start`` and ``edge-infer run --build-only`` do first (:func:`engine_for`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edge_infer.errors import ConfigError, EngineCompatibilityError
from edge_infer.pipeline.backend_choice import BackendChoice, resolve_backend
from edge_infer.pipeline.config import DaemonConfig, EngineConfig, file_sha256

if TYPE_CHECKING:
    from edge_infer.engine import Engine

__all__ = ["build_engine", "calibration_cache", "engine_for", "load_engine", "usable_cores"]

# the daemon's logger: these lines are part of its start sequence
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
