"""The daemon's configuration: pydantic v2 models loaded from YAML.

Every model forbids unknown keys and every field carries a description and bounds, so a
typo fails at start with the field's path instead of being silently ignored. Cameras are a
discriminated union on ``type`` (``file``, ``rtsp``, ``usb``, ``gstreamer``); each camera
type owns its settings. Relative paths are resolved against the config file's folder.
``docs/daemon.md`` documents every key (generated from these models, see ``config_table``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edge_infer.errors import ConfigError
from edge_infer.pipeline.camera_config import (
    CAMERA_ID,
    CAMERA_TYPES,
    CameraConfig,
    FileCamera,
    _Model,
)
from edge_infer.pipeline.endpoints import endpoint_problem, host_problem
from edge_infer.pipeline.strict_yaml import load_yaml_file


class CalibrationConfig(_Model):
    """INT8 calibration of the engine built on first start (``precision: int8``)."""

    cache: Path | None = Field(
        None,
        description="calibration cache (from `edge-infer calibrate`); with `data` set "
        "and no usable cache there, calibration writes it (default: the engine path + .calib)",
    )
    data: str | None = Field(
        None,
        min_length=1,
        max_length=2048,
        description="folder of images, video file or camera URL to calibrate from when there "
        "is no usable cache (frames preprocessed as the daemon does)",
    )
    frames: int = Field(500, ge=1, le=100_000, description="most calibration frames read")
    calibrator: Literal["entropy", "minmax", "percentile"] = Field(
        "entropy", description="how each tensor's INT8 range is chosen"
    )


_INT8_FIX = (
    "set engine.build.calibration.cache to a cache made by `edge-infer calibrate "
    "MODEL.onnx --data FRAMES -o CACHE`, or engine.build.calibration.data to a "
    "folder of images, a video file or a camera URL to calibrate from at the build"
)


class BuildConfig(_Model):
    """How to build the engine from ONNX when the engine file is missing."""

    min_batch: int = Field(1, ge=1, le=256, description="smallest batch of the profile")
    opt_batch: int = Field(4, ge=1, le=256, description="batch the engine is tuned for")
    max_batch: int = Field(8, ge=1, le=256, description="largest batch of the profile")
    input_size: str | None = Field(
        None,
        pattern=r"^[0-9]+x[0-9]+$",
        description="network input `WxH` (multiples of 32) the engine is built for: required "
        "when the ONNX model's height/width are dynamic (the demo detector: 416x256 for 16:9 "
        "cameras); must match a fixed-size model's",
    )
    precision: Literal["fp32", "fp16", "int8"] | None = Field(
        None,
        description="engine precision (int8 needs `calibration`); default per backend: "
        "fp32 on the CPU, fp16 on a GPU (`inference.backend: cuda`)",
    )
    int8_fallback: Literal["fp32", "fp16"] = Field(
        "fp32", description="precision of the layers an int8 engine does not quantize"
    )
    calibration: CalibrationConfig = Field(
        default_factory=CalibrationConfig, description="INT8 calibration"
    )
    tune: bool = Field(
        True,
        description=(
            "time candidate tactics per layer on this device, with the threads each worker will "
            "have (`inference.cores` / `inference.workers`); an existing engine timed at another "
            "width is used as is, with a warning"
        ),
    )

    @model_validator(mode="after")
    def _ordered(self) -> BuildConfig:
        if not self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError(
                f"need min_batch <= opt_batch <= max_batch, got "
                f"{self.min_batch}, {self.opt_batch}, {self.max_batch}"
            )
        if self.input_size is not None:
            w, h = self.input_size_wh() or (0, 0)
            if w < 32 or h < 32 or w % 32 or h % 32:
                raise ValueError(f"input_size must be WxH, multiples of 32, got {self.input_size}")
        cal = self.calibration
        if self.precision == "int8" and cal.cache is None and cal.data is None:
            raise ValueError(f"precision int8 needs calibration scales: {_INT8_FIX}")
        return self

    def input_size_wh(self) -> tuple[int, int] | None:
        """``input_size`` as ``(width, height)``, or None."""
        if self.input_size is None:
            return None
        w, h = self.input_size.split("x")
        return int(w), int(h)

    def precision_for(self, backend: str) -> str:
        """The precision an engine for ``backend`` is built in: the configured one, else
        the backend's default (FP16 on a GPU, where it runs on tensor cores)."""
        return self.precision or DEFAULT_PRECISION[backend]


#: engine precision when ``engine.build.precision`` is not set, per resolved backend
DEFAULT_PRECISION = {"cpu": "fp32", "cuda": "fp16"}


class EngineConfig(_Model):
    """The engine file, and optionally the ONNX model to build it from on first start."""

    path: Path = Field(description="engine file; built from `onnx` when missing")
    onnx: Path | None = Field(None, description="ONNX model to build the engine from")
    rebuild_on_mismatch: bool = Field(
        False,
        description="rebuild from `onnx` when the engine was built elsewhere, from another "
        "model or for another backend than `inference.backend` (else such an engine is "
        "refused, never run on the other backend)",
    )
    build: BuildConfig = Field(default_factory=BuildConfig, description="build options")
    model_name: str | None = Field(
        None, max_length=128, description="name published with detections (default: file)"
    )
    input_name: str | None = Field(
        None, max_length=256, description="image input binding (default: the first)"
    )
    output_name: str | None = Field(
        None, max_length=256, description="detections output binding (default: the first)"
    )


class BatchingConfig(_Model):
    """Deadline batching across cameras."""

    max_batch: int | None = Field(
        None, ge=1, le=256, description="batch cap (default: the engine profile's max)"
    )
    latency_budget_ms: float = Field(
        250.0, gt=0, le=60000, description="capture→publish budget that decides when to dispatch"
    )
    max_frames_per_camera: int = Field(
        1, ge=1, le=16, description="frames of one camera allowed in one batch"
    )
    safety_margin_ms: float = Field(
        5.0, ge=0, le=10000, description="slack kept for publish and scheduling"
    )


class InferenceConfig(_Model):
    """The backend the engine runs on, and the worker threads (an execution context each)."""

    backend: Literal["cpu", "cuda", "auto"] = Field(
        "cpu",
        description="where the engine runs: cpu, cuda (an NVIDIA GPU, or the emulator with "
        "`device: emu`), or auto (cuda when pycuda and a GPU are present, else cpu; the log "
        "says which)",
    )
    device: int | Literal["emu"] = Field(
        0,
        description="CUDA device: a GPU index (0-63), or emu for the CPU emulator of the "
        "CUDA backend (tests; slow). Only for backend cuda or auto",
    )
    workers: int = Field(2, ge=1, le=64, description="concurrent execution contexts")
    cores: int | None = Field(
        None,
        ge=1,
        le=1024,
        description="CPU threads for inference in all (default: every core), split evenly "
        "across the workers so BLAS threads never oversubscribe the cores",
    )
    warmup: bool = Field(
        True,
        description="run batch sizes at start to measure them (the batcher's latency model): "
        "1 and the max batch on the CPU; on cuda every planned batch size through the device "
        "pipeline, timed by the device's events",
    )
    frame_buffers: int = Field(
        4,
        ge=2,
        le=64,
        description="decode buffers per camera on the cuda backend: frames are decoded into "
        "pinned host memory (mapped, zero copy, on integrated GPUs such as Jetson's; one async "
        "copy each on discrete GPUs), and a buffer is reused only after the device has read "
        "it; when all are in use a frame is decoded into ordinary memory (one host copy more). "
        "4 covers a frame being decoded, one waiting and two batches in flight. The CPU "
        "backend decodes into ordinary memory",
    )

    @model_validator(mode="after")
    def _device_needs_cuda(self) -> InferenceConfig:
        # bounds here, not as Field(ge/le): they would apply to "emu" too
        if isinstance(self.device, int) and not 0 <= self.device <= 63:
            raise ValueError(f"device must be a GPU index 0-63 or emu, got {self.device}")
        if self.backend == "cpu" and self.device != 0:
            raise ValueError(
                f"device {self.device!r} is a CUDA device; set backend: cuda (or auto) "
                "to use it, or remove device"
            )
        return self


class CaptureConfig(_Model):
    """Settings shared by every camera."""

    parallel_open: bool = Field(
        True,
        description="let cameras open concurrently (OpenCV 4.8+: "
        "OPENCV_FFMPEG_IS_THREAD_SAFE=1); false keeps OpenCV's process-wide FFmpeg open lock, "
        "under which a camera hanging in its open delays the others' (re)connects",
    )


class PreprocessConfig(_Model):
    """Frame → input tensor."""

    color_order: Literal["rgb", "bgr"] = Field("rgb", description="channel order of the input")


class PostprocessConfig(_Model):
    """Detector output → detections."""

    layout: Literal["yolov8", "yolov5"] = Field(
        "yolov8", description="yolov8: [B, 4+C, N] (also YOLO11); yolov5: [B, N, 5+C]"
    )
    score_threshold: float = Field(0.25, ge=0, le=1, description="minimum class score")
    iou_threshold: float = Field(0.45, ge=0, le=1, description="class-aware NMS IoU threshold")
    max_detections: int = Field(100, ge=1, le=10000, description="detections kept per frame")
    scores: Literal["probabilities", "logits"] = Field(
        "probabilities",
        description="what the model's class scores are: probabilities (after a sigmoid, the "
        "exports' default; a score above 1 is clipped and warned about once) or logits "
        "(a sigmoid is applied before the threshold)",
    )
    class_names: list[str] = Field(
        default_factory=list,
        max_length=10000,
        description="label per class id (ids without a name are published as 'class<N>')",
    )


class CurveConfig(_Model):
    """CURVE encryption with client authentication (ZeroMQ security)."""

    enabled: bool = Field(False, description="encrypt and authenticate subscribers")
    keys_dir: Path | None = Field(
        None, description="folder with server.key_secret and authorized_clients/*.key"
    )


class PreviewConfig(_Model):
    """Low-rate JPEG previews with boxes drawn."""

    enabled: bool = Field(False, description="publish previews on preview/<device>/<camera>")
    interval_s: float = Field(2.0, ge=0.1, le=3600, description="seconds between previews")
    max_width: int = Field(640, ge=64, le=4096, description="previews are scaled to this width")
    jpeg_quality: int = Field(70, ge=10, le=100, description="JPEG quality")


class PublisherConfig(_Model):
    """ZeroMQ PUB socket."""

    endpoints: list[str] = Field(
        default_factory=lambda: ["tcp://127.0.0.1:5556"],
        min_length=1,
        max_length=16,
        description="endpoints to bind (tcp://host:port, ipc:///path)",
    )
    send_hwm: int = Field(
        500,
        ge=1,
        le=1_000_000,
        description="messages ZeroMQ queues per subscriber before dropping for it; with the "
        "subscriber's own receive queue it bounds how stale a slow subscriber's messages get",
    )
    max_age_ms: float = Field(
        2000.0,
        ge=0,
        le=3_600_000,
        description="a frame's detections still unsent this long after capture are dropped "
        "and counted (publisher_stale_dropped; its seq is skipped so subscribers see the "
        "loss); 0 never drops",
    )
    status_interval_s: float = Field(
        2.0, ge=0.1, le=3600, description="seconds between status messages"
    )
    queue_size: int = Field(
        256, ge=1, le=100_000, description="results waiting for the publisher thread"
    )
    curve: CurveConfig = Field(default_factory=CurveConfig, description="encryption")
    preview: PreviewConfig = Field(default_factory=PreviewConfig, description="previews")

    @model_validator(mode="after")
    def _endpoints(self) -> PublisherConfig:
        for ep in self.endpoints:
            problem = endpoint_problem(ep)
            if problem is not None:
                raise ValueError(problem)
        if self.curve.enabled and self.curve.keys_dir is None:
            raise ValueError("curve.enabled needs curve.keys_dir")
        return self


class HealthConfig(_Model):
    """Liveness, metrics and shutdown."""

    stall_after_s: float = Field(
        10.0, gt=0, le=3600, description="no batch completed this long: stop watchdog pings"
    )
    prometheus_port: int | None = Field(
        None, ge=1, le=65535, description="serve Prometheus metrics on this port"
    )
    prometheus_address: str = Field(
        "127.0.0.1", max_length=255, description="address of the Prometheus endpoint"
    )
    shutdown_timeout_s: float = Field(
        10.0, gt=0, le=300, description="bound on draining at SIGTERM"
    )
    latency_window: int = Field(
        2048, ge=16, le=1_000_000, description="recent frames kept for latency percentiles"
    )

    @model_validator(mode="after")
    def _address(self) -> HealthConfig:
        problem = host_problem(self.prometheus_address, "prometheus_address")
        if problem is not None:
            raise ValueError(problem)
        return self


class LoggingConfig(_Model):
    """Logs go to stderr (journald captures them)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="log level")
    json_format: bool = Field(
        False,
        alias="json",
        description="one JSON object per line; OpenCV's and FFmpeg's own "
        "stderr lines are routed through it too (logger native.opencv / native.ffmpeg; "
        "FFmpeg's at DEBUG)",
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class DaemonConfig(_Model):
    """The whole daemon configuration (the top level of the YAML file)."""

    version: Literal[1] = Field(1, description="config format version")
    device_id: str = Field(pattern=CAMERA_ID, description="device id; part of every topic")
    engine: EngineConfig = Field(description="engine file / model")
    cameras: list[CameraConfig] = Field(min_length=1, max_length=256, description="cameras")
    capture: CaptureConfig = Field(
        default_factory=CaptureConfig, description="settings of every camera"
    )
    batching: BatchingConfig = Field(default_factory=BatchingConfig, description="batching")
    inference: InferenceConfig = Field(default_factory=InferenceConfig, description="workers")
    preprocess: PreprocessConfig = Field(
        default_factory=PreprocessConfig, description="preprocessing"
    )
    postprocess: PostprocessConfig = Field(
        default_factory=PostprocessConfig, description="postprocessing"
    )
    publisher: PublisherConfig = Field(default_factory=PublisherConfig, description="ZeroMQ")
    health: HealthConfig = Field(default_factory=HealthConfig, description="health")
    logging: LoggingConfig = Field(default_factory=LoggingConfig, description="logging")

    @model_validator(mode="after")
    def _unique_ids(self) -> DaemonConfig:
        seen: set[str] = set()
        for cam in self.cameras:
            if cam.id in seen:
                raise ValueError(f"camera id {cam.id!r} is used twice; ids must be unique")
            seen.add(cam.id)
        return self

    @property
    def enabled_cameras(self) -> list[Any]:
        return [c for c in self.cameras if c.enabled]


def _resolve(base: Path, p: Path | None) -> Path | None:
    if p is None:
        return None
    p = Path(os.path.expanduser(p))
    return p if p.is_absolute() else (base / p)


def _is_camera_source(source: str) -> bool:
    """A calibration source that is a camera (URL or device number), not a path."""
    return "://" in source or source.isdigit()


def resolve_paths(cfg: DaemonConfig, base: Path) -> DaemonConfig:
    """A copy with every relative path made relative to ``base`` (the config's folder)."""
    cal = cfg.engine.build.calibration
    data = (
        cal.data
        if cal.data is None or _is_camera_source(cal.data)
        else str(_resolve(base, Path(cal.data)))
    )
    cal = cal.model_copy(update={"cache": _resolve(base, cal.cache), "data": data})
    build = cfg.engine.build.model_copy(update={"calibration": cal})
    engine = cfg.engine.model_copy(
        update={
            "path": _resolve(base, cfg.engine.path),
            "onnx": _resolve(base, cfg.engine.onnx),
            "build": build,
        }
    )
    cams = [
        c.model_copy(update={"path": _resolve(base, c.path)}) if isinstance(c, FileCamera) else c
        for c in cfg.cameras
    ]
    curve = cfg.publisher.curve.model_copy(
        update={"keys_dir": _resolve(base, cfg.publisher.curve.keys_dir)}
    )
    publisher = cfg.publisher.model_copy(update={"curve": curve})
    return cfg.model_copy(update={"engine": engine, "cameras": cams, "publisher": publisher})


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line per problem: ``field.path: what is wrong``."""
    lines = [f"{source}: invalid configuration ({exc.error_count()} problem(s)):"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(f"  {loc}: {err['msg']}")
    return "\n".join(lines)


def calibration_problems(engine: EngineConfig) -> list[tuple[str, str]]:
    """``(field path, problem)`` for an INT8 build whose calibration cannot work.

    Paths must be resolved already. No usable cache is fine when ``data`` can make one.
    """
    from edge_infer.errors import CalibrationError

    b = engine.build
    cal = b.calibration
    if b.precision != "int8":
        return []
    where = "engine.build.calibration"
    if cal.data is not None:
        if _is_camera_source(cal.data):
            return []
        p = Path(cal.data)
        if not (p.is_dir() or p.is_file()):
            return [
                (
                    f"{where}.data",
                    f"{cal.data} is no folder or file; give a folder of "
                    "images, a video file or a camera URL (rtsp://...)",
                )
            ]
        return []
    if cal.cache is None:  # the model validator already refused this
        return [(where, f"precision int8 needs calibration scales: {_INT8_FIX}")]
    from edge_infer.engine import CalibrationCache

    try:
        cache = CalibrationCache.load(cal.cache)
        if engine.onnx is not None and engine.onnx.is_file():
            cache.check_model(file_sha256(engine.onnx), str(cal.cache))
    except CalibrationError as exc:
        return [(f"{where}.cache", f"{exc}; or set {where}.data to calibrate at the build")]
    return []


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file (a model's hash, as the builder records it)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def parse_config(data: Any, source: str = "config", base: Path | None = None) -> DaemonConfig:
    """Validate a parsed YAML/JSON document; raises :class:`ConfigError` naming each field."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping, got {type(data).__name__}")
    try:
        cfg = DaemonConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None
    cfg = resolve_paths(cfg, base) if base is not None else cfg
    problems = calibration_problems(cfg.engine)
    if problems:
        lines = [f"{source}: invalid configuration ({len(problems)} problem(s)):"]
        lines += [f"  {loc}: {msg}" for loc, msg in problems]
        raise ConfigError("\n".join(lines))
    return cfg


def load_config(path: str | os.PathLike[str]) -> DaemonConfig:
    """Read and validate a YAML config file."""
    p = Path(path)
    return parse_config(load_yaml_file(p), str(p), p.resolve().parent)


def iter_fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str, str]]:
    """``(key path, type, default, description)`` of every field, nested models expanded."""
    rows: list[tuple[str, str, str, str]] = []
    for name, f in model.model_fields.items():
        key = f"{prefix}{f.alias or name}"
        ann = f.annotation
        default = (
            "required"
            if f.is_required()
            else repr(f.default_factory() if f.default_factory is not None else f.default)
        )
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            rows.append((key, ann.__name__, "", f.description or ""))
            rows.extend(iter_fields(ann, key + "."))
            continue
        type_name = str(ann).replace("typing.", "").replace("pathlib.", "")
        if isinstance(ann, type):
            type_name = ann.__name__
        type_name = re.sub(r"^Optional\[(.*)\]$", r"\1 or None", type_name)
        type_name = re.sub(r"^Union\[(\w+), (.*)\]$", r"\1 or \2", type_name)
        type_name = type_name.replace(" | ", " or ").replace("|", " or ")
        bounds = [
            f"{sym}{getattr(m, attr)}"
            for m in f.metadata
            for attr, sym in (("gt", ">"), ("ge", "≥"), ("lt", "<"), ("le", "≤"))
            if getattr(m, attr, None) is not None
        ]
        if bounds:
            type_name += f" ({', '.join(bounds)})"
        rows.append((key, type_name, default if len(default) < 40 else "…", f.description or ""))
    return rows


def config_table() -> str:
    """The Markdown reference of every key (``docs/daemon.md`` embeds it)."""
    out = ["| key | type | default | description |", "|---|---|---|---|"]
    for key, typ, default, desc in iter_fields(DaemonConfig):
        if key == "cameras":
            typ = "list of camera"
        out.append(f"| `{key}` | {typ} | {default} | {desc} |")
    for kind, model in CAMERA_TYPES.items():
        for key, typ, default, desc in iter_fields(model, "cameras[]."):
            out.append(f"| `{key}` ({kind}) | {typ} | {default} | {desc} |")
    return "\n".join(out)
