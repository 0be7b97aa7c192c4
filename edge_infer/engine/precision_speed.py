"""INT8 where it is faster: an INT8 engine whose layers run INT8 only where that beat the
fallback precision on this device (TensorRT's builder treats INT8 the same way: a permission,
not an order).

On a CPU without 8-bit dot products (x86 without VNNI) an INT8 convolution can be slower than
the FP32 one, so an all-INT8 engine can be slower than the FP32 engine it was meant to beat.
This search sits above the builder (as :mod:`edge_infer.engine.accuracy_budget` does):

1. Build the INT8 engine and the fallback-precision engine (FP32, or FP16 with ``--fp16``) and
   profile both, layer by layer, on the same inputs: three profiles each, in alternation, a
   layer's time the median of its three.
2. Match their layers by the model's nodes they compute: an INT8 layer and a fallback layer
   that share a node are one *group* (a fused chain of three convolutions on one side and
   three layers on the other make one group). A group whose INT8 layers took longer than its
   fallback layers falls back, every convolution in it.
3. Build that mixed engine (and one per wider margin: only the groups more than ``m`` times
   slower, so fewer reformats between INT8 and float layers) and time them against the
   all-INT8 one in paired rounds (an engine's time: the all-INT8 engine's fastest times the
   median of the per-round ratios to it); the fastest is the result (the reformats are in
   that timing).

Accuracy: a layer that falls back runs at the fallback precision, never worse than INT8.
"""

from __future__ import annotations

import logging
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_infer.engine.backends import get_backend
from edge_infer.engine.builder import build
from edge_infer.engine.options import BuildOptions
from edge_infer.engine.runtime import Engine
from edge_infer.engine.tactics.autotune import paired_times, time_paired

log = logging.getLogger(__name__)

#: the plan ops that compute in INT8
INT8_OPS = ("QConv", "QGemm")


@dataclass
class LayerGroup:
    """Layers of the two engines that compute the same model nodes."""

    int8_layers: list[str]
    other_layers: list[str]
    convs: list[str]  # the model's nodes the INT8 layers compute (the override names)
    int8_us: float
    other_us: float

    @property
    def slower(self) -> bool:
        return self.int8_us > self.other_us


@dataclass
class SpeedResult:
    """The engine chosen, its options, and the measurements behind the choice."""

    engine: Engine
    options: BuildOptions
    fallen_back: list[str] = field(default_factory=list)
    groups: list[LayerGroup] = field(default_factory=list)
    latency_ms: dict[str, float] = field(default_factory=dict)  # int8 / mixed / fallback


def layer_groups(
    int8_profile: Sequence[Mapping[str, Any]], other_profile: Sequence[Mapping[str, Any]]
) -> list[LayerGroup]:
    """The groups (see the module docstring) holding at least one INT8 layer, slowest
    difference first. Profiles are :meth:`Engine.profile_layers` lists."""
    parent: dict[str, str] = {}

    def find(k: str) -> str:
        while parent.setdefault(k, k) != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    def nodes(entry: Mapping[str, Any]) -> list[str]:
        return [str(m) for m in entry.get("members") or [entry["name"]]]

    for side, profile in (("q", int8_profile), ("f", other_profile)):
        for entry in profile:
            key = f"{side}:{entry['name']}"
            for node in nodes(entry):
                parent[find(key)] = find(f"n:{node}")
    groups: dict[str, LayerGroup] = {}
    for side, profile in (("q", int8_profile), ("f", other_profile)):
        for entry in profile:
            root = find(f"{side}:{entry['name']}")
            g = groups.setdefault(root, LayerGroup([], [], [], 0.0, 0.0))
            if side == "q":
                g.int8_layers.append(entry["name"])
                g.int8_us += float(entry["time_us"])
                if entry.get("op") in INT8_OPS:
                    g.convs.append(_conv_name(entry))
            else:
                g.other_layers.append(entry["name"])
                g.other_us += float(entry["time_us"])
    found = [g for g in groups.values() if g.convs and g.other_layers]
    return sorted(found, key=lambda g: g.other_us - g.int8_us)


def _conv_name(entry: Mapping[str, Any]) -> str:
    """The model node an INT8 layer is named by in ``--layer-precision``: its convolution
    (the first member, the layer's own node), else the layer's name."""
    members = entry.get("members") or []
    return str(members[0]) if members else str(entry["name"])


def _alternate(
    engines: Mapping[str, Engine], feeds: Mapping[str, np.ndarray], rounds: int, runs: int
) -> dict[str, float]:
    """Each engine's latency (ms), timed in paired rounds (:func:`time_paired`: every engine
    back to back in each round, the order reversed every other round; a sample is ``runs``
    executions). The first engine (all-INT8) is the baseline: its fastest sample, and every
    other engine that times the median of its per-round ratios to it. Two engines timed back
    to back see the same load, so the ratio holds where fastest samples taken apart do not
    (a build beside running cameras, a host whose clock drifts)."""
    contexts = {k: e.create_context() for k, e in engines.items()}

    def run(ctx: Any) -> Callable[[], None]:
        def go() -> None:
            for _ in range(runs):
                ctx.execute(dict(feeds))

        return go

    samples = time_paired(
        {k: run(c) for k, c in contexts.items()},
        rounds=rounds,
        min_rounds=rounds,
        budget_s=float("inf"),
    )
    return {k: us / 1e3 / runs for k, us in paired_times(samples).items()}


def _profiles(
    engines: Sequence[Engine], feeds: Mapping[str, np.ndarray], iterations: int, repeats: int
) -> list[list[dict[str, Any]]]:
    """Each engine's per-layer profile, taken ``repeats`` times in alternation (the engines'
    profiles see the same load); a layer's time is the median of its repeats."""
    taken: list[list[list[dict[str, Any]]]] = [[] for _ in engines]
    for r in range(repeats):
        order = range(len(engines)) if r % 2 == 0 else reversed(range(len(engines)))
        for i in order:
            taken[i].append(engines[i].profile_layers(feeds, iterations=iterations))
    result = []
    for profiles in taken:
        times: dict[str, list[float]] = {}
        for profile in profiles:
            for entry in profile:
                times.setdefault(str(entry["name"]), []).append(float(entry["time_us"]))
        result.append(
            [
                {**entry, "time_us": statistics.median(times[str(entry["name"])])}
                for entry in profiles[0]
            ]
        )
    return result


def int8_where_faster(
    model: Any,
    options: BuildOptions,
    feeds: Mapping[str, np.ndarray] | None = None,
    *,
    margins: Sequence[float] = (0.0, 1.0, 1.5),
    iterations: int = 10,
    repeats: int = 3,
    rounds: int = 15,
    runs: int = 3,
    report: Callable[[str], None] = log.info,
) -> SpeedResult:
    """Search the fallbacks (see the module docstring); ``options`` is an INT8 BuildOptions.
    ``feeds`` are inputs at the batch size to compare at (default: random ones at the
    profile's opt batch; the kernels' speed hardly depends on the values). One mixed
    candidate per margin ``m``: the groups whose INT8 layers took over ``m`` times their
    fallback layers' time fall back (a wider margin moves fewer layers, and so adds fewer
    reformats between INT8 and float layers; margin 0: every convolution, where INT8 does
    not pay at all on this device); the fastest engine of all is kept."""
    quiet = options.replace(progress=False)
    int8 = build(model, options=quiet)
    feeds = feeds if feeds is not None else int8.random_feeds()
    fallback = options.int8_fallback
    other = build(model, options=quiet.replace(precision=fallback, layer_precision={}))
    # timed as the builds tuned them (the CPU: --threads per context, not the process's
    # share): an engine built for one thread a context is not judged at two
    with get_backend(options.backend).timing_scope(options.backend_options):
        groups = layer_groups(*_profiles((int8, other), feeds, iterations, repeats))
    result = SpeedResult(int8, options, groups=groups)
    slow = [g for g in groups if g.slower]
    report(
        f"INT8 layers slower than {fallback.upper()} here: {len(slow)} of {len(groups)} groups"
        + (f" ({sum(g.int8_us - g.other_us for g in slow):.0f} us)" if slow else "")
    )
    if not slow:  # INT8 won layer by layer: nothing to try
        return result
    candidates: dict[str, list[str]] = {}
    for m in sorted(margins):
        names = [c for g in groups if g.int8_us > g.other_us * m for c in g.convs]
        if names and names not in candidates.values():
            candidates[f"mixed@{m:g}"] = names
    if not candidates:
        return result
    engines = {"int8": int8}
    settings: dict[str, BuildOptions] = {}
    for key, names in candidates.items():
        keep = {n: p for n, p in options.layer_precision.items() if n not in names}
        settings[key] = options.replace(layer_precision={**keep, **{n: fallback for n in names}})
        engines[key] = build(model, options=settings[key].replace(progress=False))
    with get_backend(options.backend).timing_scope(options.backend_options):
        result.latency_ms = t = _alternate({**engines, fallback: other}, feeds, rounds, runs)
    report(
        f"latency ({rounds} paired rounds): all INT8 {t['int8']:.2f} ms, "
        + ", ".join(
            f"{len(candidates[k])} layer(s) in {fallback.upper()} (INT8 over {k[6:]}x) "
            f"{t[k]:.2f} ms"
            for k in candidates
        )
        + f", all {fallback.upper()} {t[fallback]:.2f} ms"
    )
    best = min(engines, key=lambda k: t[k])
    if best != "int8":
        result.engine, result.options = engines[best], settings[best]
        result.fallen_back = candidates[best]
    return result


__all__ = ["LayerGroup", "SpeedResult", "int8_where_faster", "layer_groups"]
