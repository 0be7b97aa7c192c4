"""INT8 post-training calibration: run the FP32 graph over frames, derive per-tensor scales.

The graph calibrated is the builder's own optimized FP32 graph (batch 1, made by
:mod:`edge_infer.engine.calibration`, a layer above the builder), so the cache names exactly
the tensors an INT8 build quantizes: the inputs of its convolutions. Every other
float tensor is watched too, for its range only — values beyond FP16's ±65504 are reported
as ``fp16_overflow`` and keep their layers in FP32 in FP16 builds.

Frames holding NaN or Inf are reported and skipped; they never reach the statistics.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from edge_infer.engine.ir import Graph
from edge_infer.engine.ops.quantize import FP16_MAX
from edge_infer.engine.precision.assign import int8_exclusion, is_quantizable
from edge_infer.engine.precision.cache import CalibrationCache
from edge_infer.engine.precision.calibrators import (
    CALIBRATORS,
    TensorStats,
    compute_amax,
    scale_from_amax,
)
from edge_infer.engine.precision.capture import TensorCapture, float_activations
from edge_infer.errors import CalibrationError

log = logging.getLogger(__name__)


@dataclass
class CalibrationResult:
    """The cache, plus what the summary table and the reports need."""

    cache: CalibrationCache
    stats: dict[str, TensorStats] = field(default_factory=dict)
    frames_used: int = 0
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (frame index, reason)

    def summary(self, limit: int = 0) -> str:
        """A table of calibrated tensors: range seen, chosen amax and scale."""
        rows = sorted(self.cache.scales)
        if limit:
            rows = rows[:limit]
        width = min(48, max([6, *(len(r) for r in rows)]))
        lines = [f"{'tensor':<{width}} {'min':>11} {'max':>11} {'amax':>11} {'scale':>11}"]
        for name in rows:
            s = self.stats.get(name)
            lo, hi = (s.min, s.max) if s is not None and s.count else (0.0, 0.0)
            label = name if len(name) <= width else "…" + name[-(width - 1) :]
            amax, scale = self.cache.amax.get(name, 0.0), self.cache.scales[name]
            lines.append(f"{label:<{width}} {lo:>11.4g} {hi:>11.4g} {amax:>11.4g} {scale:>11.4g}")
        return "\n".join(lines)


def calibration_tensors(graph: Graph, *, residuals: bool = True) -> list[str]:
    """The tensors an INT8 build quantizes: inputs of quantizable convolutions and (with
    ``residuals``) the residuals they add. A residual's scale is optional — a tensor read
    only as INT8 layers' residual (ResNet's downsample branch) is stored in int8 when the
    cache has its scale, in float otherwise (caches made before residuals were calibrated
    still build the same engines)."""
    names: list[str] = []
    for n in graph.nodes:  # type: ignore[union-attr]
        if not is_quantizable(n) or int8_exclusion(n) is not None:
            continue
        names.append(n.inputs[0].name)
        z = n.inputs[3] if n.op_type == "FusedConv" and len(n.inputs) > 3 else None
        if residuals and z is not None and not z.is_const:
            names.append(z.name)
    return list(dict.fromkeys(names))


def calibrate_graph(
    graph: Graph,
    model_sha256: str,
    frames: Iterable[np.ndarray],
    *,
    calibrator: str = "entropy",
    percentile: float = 99.99,
    on_frame: Callable[[int], None] | None = None,
) -> CalibrationResult:
    """Calibrate the optimized FP32 ``graph`` (batch 1; see
    :func:`edge_infer.engine.calibration.calibrate`, which makes it from a model) on
    ``frames`` (each one input sample, e.g. ``[C, H, W]``, with or without the batch axis of
    1); the cache is tied to ``model_sha256``."""
    if calibrator not in CALIBRATORS:
        raise CalibrationError(
            f"unknown calibrator {calibrator!r}; choose one of {', '.join(CALIBRATORS)}"
        )
    sha = model_sha256
    wanted = calibration_tensors(graph)
    if not wanted:
        raise CalibrationError(
            f"model '{graph.name}' has no layer INT8 can quantize "
            "(2-D convolutions with constant weights)"
        )
    watched = float_activations(graph)
    capture = TensorCapture(graph, [*wanted, *watched])
    inp = graph.inputs[0]
    stats = {name: TensorStats() for name in wanted}
    peaks: dict[str, float] = {}
    result = CalibrationResult(CalibrationCache(calibrator, sha))
    for index, frame in enumerate(frames):
        x = np.asarray(frame, np.float32)
        if x.ndim == len(inp.shape) - 1:
            x = x[None]
        if tuple(x.shape) != tuple(inp.shape):
            raise CalibrationError(
                f"frame {index} has shape {list(x.shape)}; the model input "
                f"'{inp.name}' takes {list(inp.shape)}"
            )
        if not np.isfinite(x).all():
            bad = int(x.size - np.isfinite(x).sum())
            result.skipped.append((index, f"{bad} NaN/Inf values"))
            log.warning("calibration frame %d has %d NaN/Inf values: skipped", index, bad)
            continue
        _, captured = capture.run({inp.name: x})
        for name, value in captured.items():
            if name in stats:
                stats[name].update(value)
            finite = value[np.isfinite(value)]
            top = float(np.max(np.abs(finite))) if finite.size else float("inf")
            if not np.isfinite(value).all():
                top = float("inf")
            peaks[name] = max(peaks.get(name, 0.0), top)
        result.frames_used += 1
        if on_frame is not None:
            on_frame(index)
    if result.frames_used == 0:
        raise CalibrationError(
            "no usable calibration frame: "
            + (
                "every frame held NaN/Inf values"
                if result.skipped
                else "the data source gave no frames"
            )
        )
    cache = result.cache
    cache.frames = result.frames_used
    inputs = {v.name for v in graph.inputs}
    for name, s in stats.items():
        if s.nonfinite:
            log.warning(
                "tensor '%s' took %d NaN/Inf values during calibration; they were left "
                "out of its statistics",
                name,
                s.nonfinite,
            )
        # the network input's full range: a value clipped there is lost to every layer after
        # it, and its distribution (an image with letterbox padding: a spike at one gray
        # level) is what an entropy or percentile threshold misreads worst
        amax = compute_amax(s, "minmax" if name in inputs else calibrator, percentile)
        cache.scales[name] = scale_from_amax(amax)
        cache.amax[name] = float(amax)
    cache.fp16_overflow = sorted(n for n, p in peaks.items() if p > FP16_MAX)
    if cache.fp16_overflow:
        log.warning(
            "values beyond the FP16 range (|x| > 65504) in: %s; FP16 builds keep the "
            "layers producing them in FP32",
            ", ".join(cache.fp16_overflow),
        )
    result.stats = stats
    return result
