"""Accuracy to a budget: the INT8 engine with the fewest fallbacks whose accuracy drop (against
the FP32 engine) is within ``max_drop``.

1. Build FP32 and INT8 engines and score both with the caller's ``evaluate`` (mAP@0.5 on a
   validation set for ``edge-infer build --max-map-drop``); within budget → done.
2. Per-layer sensitivity: each INT8 layer is run alone on the FP32 network's own inputs to it
   (a few sample frames) and its output compared with the FP32 layer's output; the
   normalized error ``‖y₈ − y₃₂‖² / ‖y₃₂‖²`` ranks the layers — the error a layer *adds*,
   not the error it inherits.
3. The most harmful layers fall back to the fallback precision (FP16 with ``--fp16``, else
   FP32) in growing steps (1, 2, 4, … layers), re-scoring after each, until the drop is
   within budget — or every layer has fallen back (then the result says so).

The engine package knows nothing of datasets: ``evaluate`` is any ``Engine -> float``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_infer.engine.ir import Graph
from edge_infer.engine.shape_inference import node_attrs, resolve_op

log = logging.getLogger(__name__)

Evaluate = Callable[[Any], float]


@dataclass
class BudgetResult:
    """What the search found: the engine, its options, and how it got there."""

    engine: Any
    options: Any
    baseline: float
    score: float
    fallen_back: list[str] = field(default_factory=list)
    sensitivity: dict[str, float] = field(default_factory=dict)
    history: list[tuple[int, float]] = field(default_factory=list)  # (fallbacks, score)
    within_budget: bool = True

    @property
    def drop(self) -> float:
        return self.baseline - self.score


def layer_sensitivity(fp32: Graph, int8: Graph, feeds: Sequence[Mapping[str, np.ndarray]]
                      ) -> dict[str, float]:
    """Normalized error each INT8 layer of ``int8`` adds, given exact FP32 inputs."""
    from edge_infer.engine.precision.capture import TensorCapture, float_activations

    layers = [n for n in int8.nodes if n.meta.get("precision") == "int8"]
    capture = TensorCapture(fp32, float_activations(fp32))
    err = {n.name: 0.0 for n in layers}
    ref = {n.name: 0.0 for n in layers}
    for feed in feeds:
        _, values = capture.run(feed)
        values = {**feed, **values}  # graph inputs are read by the first layers
        for node in layers:
            op = resolve_op(int8, node)
            args = [None if v is None else v.const if v.const is not None else values[v.name]
                    for v in node.inputs]
            y = np.asarray(op.kernel(*args, **node_attrs(op, node)), np.float64)
            want = np.asarray(values[node.outputs[0].name], np.float64)
            err[node.name] += float(np.sum((y - want) ** 2))
            ref[node.name] += float(np.sum(want**2))
    return {name: err[name] / max(ref[name], 1e-30) for name in err}


def fit_to_budget(
    model: Any,
    options: Any,
    evaluate: Evaluate,
    max_drop: float,
    sample_feeds: Sequence[Mapping[str, np.ndarray]],
    report: Callable[[str], None] = log.info,
) -> BudgetResult:
    """Search the fallbacks (see the module docstring); ``options`` is an INT8 BuildOptions."""
    from edge_infer.engine.builder import build

    fast = dataclasses.replace(options, tune=False, progress=False)
    fp32 = build(model, options=dataclasses.replace(fast, precision="fp32", layer_precision={}))
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
    report("most sensitive layers: " + ", ".join(
        f"{n} ({result.sensitivity[n]:.2e})" for n in ranked[:5]))
    fallback = getattr(options, "int8_fallback", "fp32")
    count = 1
    while True:
        count = min(count, len(ranked))
        chosen = ranked[:count]
        overrides = {**dict(getattr(options, "layer_precision", {}) or {}),
                     **{name: fallback for name in chosen}}
        trial_opts = dataclasses.replace(fast, layer_precision=overrides)
        trial = build(model, options=trial_opts)
        score = evaluate(trial)
        result.history.append((count, score))
        report(f"{count} layer(s) in {fallback.upper()}: accuracy {score:.4f} "
               f"(drop {baseline - score:+.4f})")
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
