"""Accuracy metrics between a reference output and a reduced-precision one, and per-layer error.

``compare_arrays`` gives what ``edge-infer compare`` prints per output (max/mean absolute
error, max/mean relative error, cosine similarity). ``per_layer_errors`` runs two specialized
graphs of one model (say the FP32 and the INT8 plan of two engines) on the same feeds and
compares every tensor they both compute, in graph order — where the error grows.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from edge_infer.engine.ir import Graph
from edge_infer.engine.ops.quantize import FP16_MAX

_TINY = 1e-12


@dataclass(frozen=True)
class ArrayError:
    """How far ``b`` is from the reference ``a``."""

    max_abs: float
    mean_abs: float
    max_rel: float
    mean_rel: float
    cosine: float
    peak: float  # max |a|, to spot FP16 overflow (> 65504)

    @property
    def fp16_overflow(self) -> bool:
        return self.peak > FP16_MAX


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of the angle between ``a`` and ``b`` flattened (1.0 when both are zero)."""
    x = np.asarray(a, np.float64).ravel()
    y = np.asarray(b, np.float64).ravel()
    na, nb = float(np.linalg.norm(x)), float(np.linalg.norm(y))
    if na < _TINY and nb < _TINY:
        return 1.0
    if na < _TINY or nb < _TINY:
        return 0.0
    return float(np.dot(x, y) / (na * nb))


def compare_arrays(a: np.ndarray, b: np.ndarray) -> ArrayError:
    """Errors of ``b`` against the reference ``a`` (same shape)."""
    x = np.asarray(a, np.float64)
    y = np.asarray(b, np.float64)
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {x.shape} vs {y.shape}")
    diff = np.abs(x - y)
    rel = diff / np.maximum(np.abs(x), 1e-6)
    finite = np.isfinite(x)
    peak = float(np.max(np.abs(x[finite]))) if finite.any() else 0.0
    return ArrayError(
        float(diff.max(initial=0.0)),
        float(diff.mean()) if diff.size else 0.0,
        float(rel.max(initial=0.0)),
        float(rel.mean()) if rel.size else 0.0,
        cosine_similarity(x, y),
        peak,
    )


def per_layer_errors(
    reference: Graph, other: Graph, feeds: Mapping[str, np.ndarray]
) -> list[tuple[str, str, ArrayError]]:
    """``(tensor, producing layer of other, error)`` for every tensor both graphs compute."""
    from edge_infer.engine.precision.capture import TensorCapture, float_activations, real_values

    ref_names = float_activations(reference)
    other_names = set(float_activations(other))
    common = [n for n in ref_names if n in other_names]
    _, ref_values = TensorCapture(reference, common).run(feeds)
    _, got_values = TensorCapture(other, common).run(feeds)
    rows = []
    for name in common:
        producer = other.value(name).producer
        layer = f"{producer.name} [{producer.meta.get('precision', 'fp32')}]" if producer else "-"
        got = real_values(other, name, got_values[name])  # fp16 / int8 storage as reals
        rows.append((name, layer, compare_arrays(ref_values[name], got)))
    return rows
