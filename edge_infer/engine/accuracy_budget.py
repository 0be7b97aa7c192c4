"""Accuracy to a budget: the INT8 engine with the fewest fallbacks whose accuracy drop (against
the FP32 engine) is within ``max_drop``.

It drives the builder, so it sits above it (the precision stage the builder calls only
measures, :mod:`edge_infer.engine.precision.budget`):

1. Build FP32 and INT8 engines and score both with the caller's ``evaluate`` (mAP@0.5 on a
   validation set for ``edge-infer build --max-map-drop``); within budget → done.
2. Per-layer sensitivity (:func:`~edge_infer.engine.precision.budget.layer_sensitivity`):
   the error each INT8 layer adds, run alone on the FP32 network's own inputs.
3. The most harmful layers fall back to the fallback precision (FP16 with ``--fp16``, else
   FP32) in growing steps (1, 2, 4, … layers), re-scoring after each, until the drop is
   within budget — or every layer has fallen back (then the result says so).

The engine package knows nothing of datasets: ``evaluate`` is any ``Engine -> float``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_infer.engine.builder import build
from edge_infer.engine.options import BuildOptions
from edge_infer.engine.precision.budget import layer_sensitivity
from edge_infer.engine.runtime import Engine

log = logging.getLogger(__name__)

Evaluate = Callable[[Engine], float]


@dataclass
class BudgetResult:
    """What the search found: the engine, its options, and how it got there."""

    engine: Engine
    options: BuildOptions
    baseline: float
    score: float
    fallen_back: list[str] = field(default_factory=list)
    sensitivity: dict[str, float] = field(default_factory=dict)
    history: list[tuple[int, float]] = field(default_factory=list)  # (fallbacks, score)
    within_budget: bool = True

    @property
    def drop(self) -> float:
        return self.baseline - self.score


def fit_to_budget(
    model: Any,
    options: BuildOptions,
    evaluate: Evaluate,
    max_drop: float,
    sample_feeds: Sequence[Mapping[str, np.ndarray]],
    report: Callable[[str], None] = log.info,
) -> BudgetResult:
    """Search the fallbacks (see the module docstring); ``options`` is an INT8 BuildOptions."""
    fast = options.replace(tune=False, progress=False)
    fp32 = build(model, options=fast.replace(precision="fp32", layer_precision={}))
    baseline = evaluate(fp32)
    report(f"FP32 accuracy {baseline:.4f}")
    engine = build(model, options=fast)
    score = evaluate(engine)
    report(f"INT8 accuracy {score:.4f} (drop {baseline - score:+.4f}, budget {max_drop})")
    result = BudgetResult(engine, fast, baseline, score, history=[(0, score)])
    if baseline - score <= max_drop:
        return result
    batch = engine.batch_sizes[0]
    feeds = [_tile(f, batch) for f in sample_feeds]
    result.sensitivity = layer_sensitivity(fp32.graph(batch), engine.graph(batch), feeds)
    ranked = sorted(result.sensitivity, key=lambda n: -result.sensitivity[n])
    report(
        "most sensitive layers: "
        + ", ".join(f"{n} ({result.sensitivity[n]:.2e})" for n in ranked[:5])
    )
    fallback = options.int8_fallback
    count = 1
    while True:
        count = min(count, len(ranked))
        chosen = ranked[:count]
        overrides = {**options.layer_precision, **{name: fallback for name in chosen}}
        trial_opts = fast.replace(layer_precision=overrides)
        trial = build(model, options=trial_opts)
        score = evaluate(trial)
        result.history.append((count, score))
        report(
            f"{count} layer(s) in {fallback.upper()}: accuracy {score:.4f} "
            f"(drop {baseline - score:+.4f})"
        )
        result.engine, result.options, result.score = trial, trial_opts, score
        result.fallen_back = chosen
        if baseline - score <= max_drop:
            return result
        if count == len(ranked):
            result.within_budget = False
            return result
        count *= 2


def _tile(feed: Mapping[str, np.ndarray], batch: int) -> dict[str, np.ndarray]:
    out = {}
    for name, x in feed.items():
        x = np.asarray(x, np.float32)
        reps = -(-batch // x.shape[0])
        out[name] = np.ascontiguousarray(np.concatenate([x] * reps)[:batch])
    return out
