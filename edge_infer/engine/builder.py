"""The builder: ONNX (or a network definition) → optimized, device-tuned engine.

Stages, in order, each with its reason:
1. load + import — parse safely, resolve every op (all unsupported ops reported at once);
2. profile — decide which batch sizes the engine serves (min/opt/max);
3. per batch size: bind shapes, infer shapes with constant folding (shape subgraphs vanish);
4. optimization passes — the fusion pipeline of :mod:`edge_infer.engine.passes`;
5. backend compile — tactic selection/tuning on this device, artifacts to store;
6. serialize — plans + deduplicated weights + build record, written atomically.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import shlex
import zlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_infer._version import __version__
from edge_infer.engine.backends import get_backend
from edge_infer.engine.ir import Graph
from edge_infer.engine.onnx_import import import_model, load_model
from edge_infer.engine.options import BuildOptions, ShapeMap
from edge_infer.engine.passes import PassManager, default_passes
from edge_infer.engine.plan import graph_to_plan
from edge_infer.engine.precision import apply_precision, calib_cache_sha256, precision_flags
from edge_infer.engine.profiles import Profile, make_profile
from edge_infer.engine.shape_inference import (
    bind_input_shapes,
    check_outputs_typed,
    infer_shapes,
)
from edge_infer.engine.tactics.autotune import TimingCache
from edge_infer.errors import BuildError

if TYPE_CHECKING:
    from edge_infer.engine.runtime import Engine

log = logging.getLogger(__name__)

#: the blob holding every batch size's plan (zlib-compressed JSON)
PLANS_BLOB = "plans.json.zlib"

ModelSource = Any  # path, bytes, onnx.ModelProto, Graph or Network


def build(
    model: ModelSource,
    output: str | os.PathLike | None = None,
    *,
    options: BuildOptions | None = None,
    shapes: ShapeMap | None = None,
    min_shapes: ShapeMap | None = None,
    opt_shapes: ShapeMap | None = None,
    max_shapes: ShapeMap | None = None,
    backend: str | None = None,
    optimize: bool | None = None,
    tune: bool | None = None,
    timing_cache: str | None = None,
    progress: bool | None = None,
) -> Engine:
    """Build an engine from ``model``; also write it to ``output`` when given.

    Options come either as ``options=BuildOptions(...)`` or as the keywords (a shortcut for
    the common ones), not both. ``shapes`` fixes every dynamic input
    (``{"images": (1, 3, 640, 640)}``); ``min/opt/max`` give a batch range instead. A failed
    build leaves no file behind.
    """
    keywords = {
        k: v
        for k, v in {
            "shapes": shapes,
            "min_shapes": min_shapes,
            "opt_shapes": opt_shapes,
            "max_shapes": max_shapes,
            "backend": backend,
            "optimize": optimize,
            "tune": tune,
            "timing_cache": timing_cache,
            "progress": progress,
        }.items()
        if v is not None
    }
    if options is not None and keywords:
        raise BuildError(
            f"build() takes options= or keywords, not both: got options= and "
            f"{', '.join(sorted(keywords))}; put them in the BuildOptions"
        )
    opts = options if options is not None else BuildOptions(**keywords)
    if not isinstance(opts, BuildOptions):
        raise BuildError(f"options must be a BuildOptions, got {type(opts).__name__}")
    from edge_infer.engine.runtime import Engine

    graph, source = import_source(model)
    header, tensors, blobs = build_parts(graph, source, opts)
    engine = Engine(header, tensors, blobs)
    if output is not None:
        engine.save(output)
    return engine


def import_source(model: ModelSource) -> tuple[Graph, dict[str, Any]]:
    """The model as a graph, and its source record (``model_sha256``, ``model_path``): the
    builder's first stage, also what calibration ties its cache to."""
    from edge_infer.engine.network import Network

    if isinstance(model, Network):
        model = model.graph
    if isinstance(model, Graph):
        plan, _ = graph_to_plan(model)
        digest = hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()
        model.meta.setdefault("model_sha256", digest)
        return model.copy(), {"model_sha256": model.meta["model_sha256"], "model_path": None}
    loaded = load_model(model)
    graph = import_model(loaded)
    path = str(loaded.path.resolve()) if loaded.path else None
    return graph, {"model_sha256": loaded.sha256, "model_path": path}


def specialize(graph: Graph, profile: Profile, batch: int, opts: BuildOptions) -> Graph:
    """The graph for one batch size: shapes bound, inferred, folded and optimized."""
    g = graph.copy()
    bind_input_shapes(g, profile.shapes_for(batch))
    infer_shapes(g)
    check_outputs_typed(g)
    if opts.optimize:
        g = PassManager(default_passes()).run(g)
        infer_shapes(g, fold=False)
    g = apply_precision(g, opts)  # FP16 / INT8 layers (engine/precision); no-op for FP32
    return g


def build_parts(
    graph: Graph, source: Mapping[str, Any], opts: BuildOptions
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, bytes]]:
    """Run stages 2–5; returns the engine header, tensors and blobs."""
    return _build_parts(graph, source, opts)


def _build_parts(
    graph: Graph, source: Mapping[str, Any], opts: BuildOptions
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, bytes]]:
    be = get_backend(opts.backend)
    be.check_options(opts.backend_options)  # a wrong backend option fails before any work
    note = be.precision_note(opts.precision)
    if note:
        log.warning("%s", note)
    cache = (
        TimingCache(be.device_fingerprint(), opts.timing_cache, be.kernels_identity())
        if opts.tune
        else None
    )
    profile = make_profile(graph, opts.shapes, opts.min_shapes, opts.opt_shapes, opts.max_shapes)
    batches = sorted(profile.specializations(), key=lambda b: (b not in tuning_batches(profile), b))
    plans: dict[str, Any] = {}
    tensors: dict[str, np.ndarray] = {}
    blobs: dict[str, bytes] = {}
    bindings: dict[str, Any] = {}
    iterator: Sequence[int] = batches
    if opts.progress:
        from tqdm import tqdm

        iterator = tqdm(batches, desc="building", unit="batch size")
    tuned: dict[int, dict[str, Any]] = {}  # batch -> the choices timed at that batch
    rejected: list[dict[str, Any]] = []  # candidates the tactic self-check refused
    for batch in iterator:
        g = specialize(graph, profile, batch, opts)
        hints = None
        if batch not in tuning_batches(profile) and tuned:
            # like TensorRT, time tactics at min/opt/max; between them, reuse the nearest
            hints = tuned[min(tuned, key=lambda b: (abs(b - batch), -b))]
        compiled = be.compile(g, batch=batch, options=opts, cache=cache, hints=hints)
        for key, blob in compiled.items():
            blobs[f"{batch}/{key}"] = blob
        rejected += [
            {"batch": batch, "layer": n.name, "tactic": t, "error": e}
            for n in g.nodes
            for t, e in n.meta.get("rejected_tactics", {}).items()
        ]
        if hints is None:
            tuned[batch] = {
                "tactics": {n.name: n.meta["tactic"] for n in g.nodes if "tactic" in n.meta},
                "schedule": g.meta.get("schedule", "sequential"),
                "chains": g.meta.get("chains", []),  # a backend's multi-layer runs, if any
            }
        plan, plan_tensors = graph_to_plan(g)
        plans[str(batch)] = plan
        tensors.update(plan_tensors)
        if not bindings:
            bindings = _bindings(g, profile)
    if cache is not None:
        cache.save()
        log.info("timing cache: %d hits, %d misses", cache.hits, cache.misses)
    header = {
        "kind": "edge_infer.engine",
        "bindings": bindings,
        "profile": profile.to_json(),
        "plans": {"blob": PLANS_BLOB, "batches": sorted(int(b) for b in plans)},
        "build": {
            "edge_infer_version": __version__,
            "backend": be.name,
            "device": be.device_fingerprint(),
            "model_sha256": source.get("model_sha256"),
            "model_path": source.get("model_path"),
            "model_name": graph.name,
            "original_layers": len(graph),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "options": {**opts.record(), "calib_cache_sha256": calib_cache_sha256(opts)},
            # what the tactics were timed at (the CPU's threads per context): an engine run
            # otherwise may have other winners; the runtime compares (`Engine.tuning_notes`)
            "backend_settings": be.tuned_settings(opts.backend_options),
            "rebuild_command": rebuild_command(source.get("model_path"), profile, opts),
            "rejected_tactics": rejected,
        },
    }
    # plans are repetitive JSON (one per batch size): stored zlib-compressed as a blob
    blobs[PLANS_BLOB] = zlib.compress(json.dumps(plans, separators=(",", ":")).encode(), 9)
    return header, tensors, blobs


def tuning_batches(profile: Profile) -> set[int]:
    """Batch sizes whose tactics are timed; the others reuse the nearest one's choices."""
    return {profile.min_batch, profile.opt_batch, profile.max_batch}


def _bindings(g: Graph, profile: Profile) -> dict[str, Any]:
    def shape(s: Sequence[int], batched: bool) -> list[int]:
        return [-1, *s[1:]] if batched and profile.min_batch != profile.max_batch else list(s)

    inputs = [
        {
            "name": v.name,
            "dtype": v.dtype.name,
            "shape": shape(v.shape, v.name in profile.batched),
            "batched": v.name in profile.batched,
        }
        for v in g.inputs
    ]
    any_batched = bool(profile.batched)
    outputs = [
        {
            "name": name,
            "dtype": v.dtype.name,
            "shape": shape(v.shape, any_batched),
            "batched": any_batched,
        }
        for name, v in g.outputs
    ]
    return {"inputs": inputs, "outputs": outputs}


def rebuild_command(model_path: str | None, profile: Profile, opts: BuildOptions) -> str:
    """The `edge-infer build` command line that rebuilds this engine (for error messages)."""
    parts = ["edge-infer", "build", model_path or "MODEL.onnx", "-o", "OUT.engine"]

    def fmt(batch: int) -> str:
        return ",".join(
            f"{name}:{'x'.join(str(d) for d in shape)}"
            for name, shape in profile.shapes_for(batch).items()
        )

    if profile.base_shapes:
        if profile.min_batch == profile.max_batch:
            parts += ["--shapes", fmt(profile.min_batch)]
        else:
            parts += [
                "--min-shapes",
                fmt(profile.min_batch),
                "--opt-shapes",
                fmt(profile.opt_batch),
                "--max-shapes",
                fmt(profile.max_batch),
            ]
    if opts.backend != "cpu":
        parts += ["--backend", opts.backend]
    parts += get_backend(opts.backend).rebuild_flags(opts.backend_options)
    if not opts.verify_tactics:
        parts.append("--no-verify-tactics")
    parts += precision_flags(opts)
    return shlex.join(parts)
