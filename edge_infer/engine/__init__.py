"""The engine's public API: what the daemon, the commands and users import.

``pipeline/`` and ``commands/`` import the engine only from here (an import-linter contract
in ``make lint`` holds them to it); everything else under ``edge_infer.engine`` is internal
and may change. Names are resolved lazily, so ``import edge_infer.engine`` stays cheap and
imports neither onnx nor a backend until something is used.

Build and run::

    from edge_infer.engine import BuildOptions, Engine, build

    engine = build("model.onnx", "model.engine", options=BuildOptions(precision="fp16"))
    with Engine.load("model.engine").create_context() as ctx:
        outputs = ctx.execute({"images": batch})
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from edge_infer.errors import (
    BackendError,
    BindingError,
    BuildError,
    CalibrationError,
    EdgeInferError,
    EngineCompatibilityError,
    EngineFileError,
    ModelLoadError,
    UnsupportedOpError,
)

if TYPE_CHECKING:
    from edge_infer.engine.accuracy_budget import BudgetResult, fit_to_budget
    from edge_infer.engine.benchmark import compare as compare_latency
    from edge_infer.engine.builder import build
    from edge_infer.engine.calibration import CalibrationResult, calibrate, calibration_graph
    from edge_infer.engine.onnx_import import is_dynamic_dim, load_model
    from edge_infer.engine.options import BuildOptions, parse_layer_precision
    from edge_infer.engine.precision.cache import CalibrationCache
    from edge_infer.engine.precision.metrics import compare_arrays, per_layer_errors
    from edge_infer.engine.precision_speed import SpeedResult, int8_where_faster
    from edge_infer.engine.profiles import parse_shapes
    from edge_infer.engine.runtime import Binding, Engine, ExecutionContext

#: public name → "module:attribute", imported on first use
_LAZY: dict[str, str] = {
    "build": "edge_infer.engine.builder:build",
    "BuildOptions": "edge_infer.engine.options:BuildOptions",
    "parse_layer_precision": "edge_infer.engine.options:parse_layer_precision",
    "parse_shapes": "edge_infer.engine.profiles:parse_shapes",
    "Engine": "edge_infer.engine.runtime:Engine",
    "ExecutionContext": "edge_infer.engine.runtime:ExecutionContext",
    "Binding": "edge_infer.engine.runtime:Binding",
    "calibrate": "edge_infer.engine.calibration:calibrate",
    "calibration_graph": "edge_infer.engine.calibration:calibration_graph",
    "CalibrationResult": "edge_infer.engine.calibration:CalibrationResult",
    "CalibrationCache": "edge_infer.engine.precision.cache:CalibrationCache",
    "fit_to_budget": "edge_infer.engine.accuracy_budget:fit_to_budget",
    "BudgetResult": "edge_infer.engine.accuracy_budget:BudgetResult",
    "int8_where_faster": "edge_infer.engine.precision_speed:int8_where_faster",
    "SpeedResult": "edge_infer.engine.precision_speed:SpeedResult",
    "compare_arrays": "edge_infer.engine.precision.metrics:compare_arrays",
    "per_layer_errors": "edge_infer.engine.precision.metrics:per_layer_errors",
    "compare_latency": "edge_infer.engine.benchmark:compare",
    "load_model": "edge_infer.engine.onnx_import:load_model",
    "is_dynamic_dim": "edge_infer.engine.onnx_import:is_dynamic_dim",
}


def configure_backend(
    name: str = "cpu", *, contexts: int = 1, cores: int | None = None
) -> dict[str, Any]:
    """Share this machine between ``contexts`` execution contexts that run at once, on
    backend ``name`` (``cores``: host cores to use, None for all). Returns the backend
    options an engine for this setting should be built with
    (``BuildOptions(backend_options=...)``), so its tactics are timed as they will run."""
    from edge_infer.engine.backends import get_backend

    return get_backend(name).configure(contexts=contexts, cores=cores)


def select_device(backend: str, device: Any) -> None:
    """Run backend ``backend``'s builds and engines on ``device`` in this process (the CUDA
    backend: ``"emu"`` for the emulator or a GPU index; what ``--device`` selects)."""
    from edge_infer.engine.backends import get_backend

    chosen = get_backend(backend)
    select = getattr(chosen, "select_device", None)
    if select is None:
        raise BackendError(
            f"backend '{backend}' has no devices to choose from: --device is for --backend cuda"
        )
    select(device)


def backend_problem(backend: str, device: Any = None) -> str | None:
    """Why backend ``backend`` cannot run here (on ``device``, for a backend with devices:
    the CUDA backend's ``"emu"`` or a GPU index), in one line; ``None`` when it can. Opens
    the device to find out (what ``inference.backend: auto`` asks), and selects it."""
    from edge_infer.engine.backends import get_backend

    try:
        chosen = get_backend(backend)
        if device is not None:
            select_device(backend, device)
        chosen.device_fingerprint()
    except EdgeInferError as exc:
        return str(exc)
    return None


def device_pipeline(
    context: ExecutionContext,
    *,
    input_name: str,
    output_name: str,
    layout: str = "yolov8",
    score_threshold: float = 0.25,
    iou_threshold: float = 0.45,
    max_detections: int = 300,
    scores: str = "probabilities",
) -> Any | None:
    """Pre- and post-processing on the device of ``context``'s engine, where its backend has
    them (the CUDA backend), else ``None`` (the CPU: the caller does both on the host).

    The returned object's ``run(images, letterboxes)`` takes uint8 BGR ``[H, W, 3]`` frames
    and their letterboxes (``letterbox_geometry``), letterboxes them into the engine's
    input on the device (RGB, 1/255), runs the engine on ``context``, decodes the YOLO
    output (``layout``, thresholds, ``scores`` kind: ``pipeline/postprocess.py:decode``'s
    settings, with its decisions) and returns per image ``(boxes, scores, classes)`` in the
    frame's pixels; ``close()`` frees its device memory. One worker thread uses one."""
    from edge_infer.engine.backends import get_backend

    return get_backend(context.engine.backend_name).device_pipeline(
        context,
        input_name=input_name,
        output_name=output_name,
        layout=layout,
        score_threshold=score_threshold,
        iou_threshold=iou_threshold,
        max_detections=max_detections,
        scores=scores,
    )


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'edge_infer.engine' has no attribute {name!r}")
    module, _, attr = target.partition(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "BackendError",
    "Binding",
    "BindingError",
    "BudgetResult",
    "BuildError",
    "BuildOptions",
    "CalibrationCache",
    "CalibrationError",
    "CalibrationResult",
    "EdgeInferError",
    "Engine",
    "EngineCompatibilityError",
    "EngineFileError",
    "ExecutionContext",
    "ModelLoadError",
    "SpeedResult",
    "UnsupportedOpError",
    "backend_problem",
    "build",
    "calibrate",
    "calibration_graph",
    "compare_arrays",
    "compare_latency",
    "configure_backend",
    "device_pipeline",
    "fit_to_budget",
    "int8_where_faster",
    "is_dynamic_dim",
    "load_model",
    "parse_layer_precision",
    "parse_shapes",
    "per_layer_errors",
    "select_device",
]
