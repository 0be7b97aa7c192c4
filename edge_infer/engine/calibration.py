"""INT8 calibration of a model: the builder's own import and optimization, then the precision
stage's statistics.

It drives the builder (import, profile, passes at batch 1), so it sits above it; the
statistics and scales are :mod:`edge_infer.engine.precision.calibrate`'s, which the builder
never needs. The graph calibrated is the builder's optimized FP32 graph, so the cache names
exactly the tensors an INT8 build quantizes and carries the model hash an INT8 build checks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from edge_infer.engine.builder import import_source, specialize
from edge_infer.engine.ir import Graph
from edge_infer.engine.options import BuildOptions
from edge_infer.engine.precision.calibrate import CalibrationResult, calibrate_graph
from edge_infer.engine.precision.calibrators import CALIBRATORS
from edge_infer.engine.profiles import make_profile
from edge_infer.errors import BuildError, CalibrationError

__all__ = ["CalibrationResult", "calibrate", "calibration_graph"]


def calibration_graph(
    model: Any, shapes: dict[str, tuple[int, ...]] | None = None
) -> tuple[Graph, str]:
    """The optimized FP32 graph at batch 1 for ``model`` and the model's sha256."""
    graph, source = import_source(model)
    graph.meta.setdefault("model_sha256", source.get("model_sha256"))
    if len(graph.inputs) != 1:
        raise CalibrationError(
            f"calibration feeds one image input; the model has {len(graph.inputs)} inputs"
        )
    inp = graph.inputs[0]
    if shapes is None:
        dims = list(inp.shape)
        if len(dims) < 2 or not all(isinstance(d, int) for d in dims[1:]):
            raise CalibrationError(
                f"input '{inp.name}' has shape {dims}; give --shapes {inp.name}:1x3xHxW"
            )
        shapes = {inp.name: (1, *dims[1:])}  # type: ignore[dict-item]
    shapes = {k: (1, *tuple(v)[1:]) for k, v in shapes.items()}
    try:
        opts = BuildOptions(shapes=shapes, tune=False)
        profile = make_profile(graph, opts.shapes, None, None, None)
    except BuildError as exc:
        raise CalibrationError(str(exc)) from exc
    g = specialize(graph, profile, 1, opts)
    sha = graph.meta.get("model_sha256")
    if not sha:
        raise CalibrationError("the model has no hash to tie the cache to")
    return g, str(sha)


def calibrate(
    model: Any,
    frames: Iterable[np.ndarray],
    *,
    calibrator: str = "entropy",
    percentile: float = 99.99,
    shapes: dict[str, tuple[int, ...]] | None = None,
    on_frame: Callable[[int], None] | None = None,
) -> CalibrationResult:
    """Calibrate ``model`` on ``frames`` (each one input sample, e.g. ``[C, H, W]``, with or
    without the batch axis of 1); ``result.cache`` holds the scales an INT8 build takes."""
    if calibrator not in CALIBRATORS:  # before the model is imported and optimized
        raise CalibrationError(
            f"unknown calibrator {calibrator!r}; choose one of {', '.join(CALIBRATORS)}"
        )
    graph, sha = calibration_graph(model, shapes)
    return calibrate_graph(
        graph, sha, frames, calibrator=calibrator, percentile=percentile, on_frame=on_frame
    )
