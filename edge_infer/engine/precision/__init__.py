"""Reduced precision: FP16 and INT8 engines, calibration, and accuracy to a budget.

The builder calls :func:`apply_precision` once per specialized graph, after the optimization
passes. It reads the build options:

- ``precision``: ``"fp32"`` (default), ``"fp16"`` or ``"int8"``;
- ``int8_fallback``: precision of the layers an INT8 build does not quantize (``"fp32"``, or
  ``"fp16"`` for ``--int8 --fp16``);
- ``layer_precision``: ``{layer name: precision}`` overrides (``--layer-precision``);
- ``calib_cache``: the calibration cache file an INT8 build takes its scales from (or an
  in-memory :class:`CalibrationCache` as ``calibration``).

Stages: :mod:`.assign` decides each layer's precision, :mod:`.lower` rewrites the layers
(QConv / Fp16Layer with int8 / float16 weights). Models with explicit QuantizeLinear /
DequantizeLinear nodes keep their own scales and are not quantized again.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from edge_infer.engine.ir import Graph
from edge_infer.engine.options import PRECISIONS, parse_layer_precision
from edge_infer.engine.precision.assign import (
    Assignment,
    assign_precision,
    has_explicit_quantization,
)
from edge_infer.engine.precision.cache import CalibrationCache
from edge_infer.engine.precision.lower import lower
from edge_infer.errors import BuildError

if TYPE_CHECKING:
    from edge_infer.engine.options import BuildOptions

log = logging.getLogger(__name__)

__all__ = [
    "PRECISIONS",
    "Assignment",
    "CalibrationCache",
    "apply_precision",
    "assign_precision",
    "calib_cache_sha256",
    "parse_layer_precision",
    "precision_flags",
    "precision_settings",
]


def precision_settings(
    opts: BuildOptions,
) -> tuple[str, str, dict[str, str], CalibrationCache | None]:
    """``(mode, fallback, overrides, cache)`` of the build options (validated when they were
    made); the cache is the in-memory one, else the ``calib_cache`` file's."""
    cache = opts.calibration
    if cache is None and opts.calib_cache:
        cache = CalibrationCache.load(opts.calib_cache)
    return opts.precision, opts.int8_fallback, dict(opts.layer_precision), cache


def apply_precision(graph: Graph, opts: BuildOptions) -> Graph:
    """Assign and lower every layer's precision (see the module docstring); returns ``graph``."""
    mode, fallback, overrides, cache = precision_settings(opts)
    if mode == "fp32" and not overrides:
        return graph
    if has_explicit_quantization(graph):
        log.info("model has explicit QuantizeLinear/DequantizeLinear: using its own scales")
        graph.meta["precision"] = {"mode": "explicit-qdq"}
        return graph
    needs_scales = mode == "int8" or "int8" in overrides.values()
    if needs_scales and cache is None:
        raise BuildError(
            "an INT8 build needs calibration scales: create a cache with "
            "`edge-infer calibrate MODEL.onnx --data FRAMES -o model.calib` and "
            "pass --calib-cache model.calib"
        )
    if cache is not None:
        cache.check_model(graph.meta.get("model_sha256"))
    if cache is not None and mode == "int8":
        from edge_infer.engine.precision.calibrate import calibration_tensors

        # every tensor the INT8 layers quantize has its scale, in its dtype's range: a cut
        # cache stops the build instead of giving a mostly-FP32 "INT8" engine (residual
        # scales are optional: without one the residual stays float)
        names = calibration_tensors(graph, residuals=False)
        cache.check_covers(names, {n: graph.value(n).dtype for n in names})
    scales = dict(cache.scales) if cache is not None else {}
    overflow = set(cache.fp16_overflow) if cache is not None else set()
    assignment = assign_precision(
        graph, mode, fallback=fallback, overrides=overrides, scales=scales, fp16_overflow=overflow
    )
    counts = lower(graph, assignment, scales, fallback)
    graph.meta["precision"] = {
        "mode": mode,
        "int8_fallback": fallback,
        "layers": counts,
        "fallbacks": assignment.fallbacks,
        "fp16_overflow": assignment.fp16_overflow,
        "calibrator": cache.calibrator if cache is not None else None,
        "calib_cache_sha256": cache.sha256 if cache is not None else None,
    }
    log.info("precision %s: %s", mode, counts)
    return graph


def calib_cache_sha256(opts: BuildOptions) -> str | None:
    """The hash of the calibration cache an INT8 build uses (for the build record), or None."""
    mode, _, overrides, cache = precision_settings(opts)
    if cache is None or (mode != "int8" and "int8" not in overrides.values()):
        return None
    return cache.sha256


def precision_flags(opts: BuildOptions) -> list[str]:
    """The `edge-infer build` flags that reproduce the precision settings of ``opts``."""
    mode = opts.precision
    flags: list[str] = []
    if mode == "fp16" or (mode == "int8" and opts.int8_fallback == "fp16"):
        flags.append("--fp16")
    if mode == "int8":
        flags += ["--int8", "--calib-cache", str(opts.calib_cache or "CACHE")]
    if opts.layer_precision:
        flags += [
            "--layer-precision",
            ",".join(f"{k}:{v}" for k, v in opts.layer_precision.items()),
        ]
    return flags
