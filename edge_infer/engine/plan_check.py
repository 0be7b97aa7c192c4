"""Checks of an engine's header and plans at load, before any of it is compiled or run.

The engine file's checksum proves the bytes are the ones written, not that whoever wrote them
was honest (or that the writer had no bug). So every field the runtime reads is checked here
against what a builder can produce: the header's profile and bindings, and each plan's
values, nodes, attributes and tactics. Each plan is rebuilt as a graph, verified (the IR's
invariants) and shape-inferred again (which checks every op's attributes against its inputs:
a Conv ``group`` that does not divide the channels, an unknown FusedConv activation); the
types it infers must be the ones stored. Any breach is an :class:`EngineFileError`.
"""

from __future__ import annotations

import collections.abc
import functools
import math
import types
import typing
from collections.abc import Collection, Mapping, Sequence
from typing import Any

import numpy as np

from edge_infer.engine.dtypes import SUPPORTED_DTYPES
from edge_infer.engine.ir import MAX_TENSOR_BYTES, Graph, Node
from edge_infer.engine.ops.quantize import STORAGE_DTYPES
from edge_infer.engine.plan import plan_to_graph
from edge_infer.engine.shape_inference import infer_shapes, resolve_op
from edge_infer.errors import EdgeInferError, EngineFileError

#: the dtype names an engine's bindings and plan values may carry
DTYPE_NAMES: frozenset[str] = frozenset(d.name for d in SUPPORTED_DTYPES)
#: the largest batch a profile may declare (a bound, not a promise that it fits in memory)
MAX_BATCH = 1 << 16
MAX_NDIM = 32
#: attributes and metadata nest a few levels (a Pointwise node's steps); far more is not ours
MAX_DEPTH = 32
_SCHEDULES = ("sequential", "parallel")
_NODE_KEYS = ("name", "op", "domain", "attrs", "inputs", "outputs", "meta")
_REBUILD = "rebuild the engine with `edge-infer build`"


def _bad(what: str) -> EngineFileError:
    return EngineFileError(f"{what}; {_REBUILD}")


def _is_int(value: Any, lo: int, hi: int) -> bool:
    return type(value) is int and lo <= value <= hi  # bool is an int subclass: excluded


def check_dims(dims: Any, what: str, *, lo: int = 1, batch_axis: bool = False) -> list[int]:
    """A list of at most MAX_NDIM ints in [lo, 2**31) (``-1`` allowed on axis 0 when
    ``batch_axis``), whose element count is bounded."""
    if not isinstance(dims, list) or len(dims) > MAX_NDIM:
        raise _bad(f"{what}: shape {dims!r} is not a list of at most {MAX_NDIM} dims")
    for axis, d in enumerate(dims):
        if not (_is_int(d, lo, 2**31 - 1) or (batch_axis and axis == 0 and d == -1)):
            raise _bad(f"{what}: dim {axis} of shape {dims!r} is not an int >= {lo}")
    elements = 1
    for d in dims:
        elements *= max(d, 1)
    if elements * 8 > MAX_TENSOR_BYTES:
        raise _bad(f"{what}: shape {dims!r} is larger than any tensor an engine may hold")
    return dims


def check_dtype(name: Any, what: str) -> np.dtype:
    if not isinstance(name, str) or name not in DTYPE_NAMES:
        raise _bad(f"{what}: dtype {name!r} is not one of {', '.join(sorted(DTYPE_NAMES))}")
    return np.dtype(name)


def check_header(header: Any) -> None:
    """The header fields the runtime reads: build record, profile, bindings, plans spec."""
    if not isinstance(header, Mapping):
        raise _bad("engine header is not a JSON object")
    for key in ("build", "profile", "bindings", "plans"):
        if not isinstance(header.get(key), Mapping):
            raise _bad(f"engine header field '{key}' is missing or not an object")
    build = header["build"]
    if not isinstance(build.get("backend", "cpu"), str):
        raise _bad(f"engine build record: backend {build.get('backend')!r} is not a name")
    if not isinstance(build.get("backend_settings") or {}, Mapping):
        raise _bad("engine build record: backend_settings is not an object")
    _check_profile(header["profile"])
    bindings = header["bindings"]
    for kind in ("inputs", "outputs"):
        entries = bindings.get(kind)
        # a model may have no inputs (constants only); every engine has an output
        if not isinstance(entries, list) or (kind == "outputs" and not entries):
            raise _bad(
                f"engine bindings: '{kind}' is not a list"
                + (" of at least one output" if kind == "outputs" else "")
            )
        # inputs have every dim >= 1 (the builder refuses zero-size inputs); an output may be
        # empty (a Slice or Range of nothing)
        names = [
            _check_binding(e, f"engine binding {kind}[{i}]", lo=1 if kind == "inputs" else 0)
            for i, e in enumerate(entries)
        ]
        if len(set(names)) != len(names):
            raise _bad(f"engine bindings: two {kind} share a name ({names})")


def _check_profile(p: Mapping[str, Any]) -> None:
    lo, opt, hi = (p.get(k) for k in ("min_batch", "opt_batch", "max_batch"))
    if not (_is_int(lo, 1, MAX_BATCH) and _is_int(opt, 1, MAX_BATCH) and _is_int(hi, 1, MAX_BATCH)
            and lo <= opt <= hi):  # fmt: skip
        raise _bad(f"engine profile: batch range min {lo!r} / opt {opt!r} / max {hi!r} is not "
                   f"1 <= min <= opt <= max <= {MAX_BATCH}")  # fmt: skip
    shapes, batched = p.get("base_shapes"), p.get("batched")
    if not isinstance(shapes, Mapping) or not isinstance(batched, list):
        raise _bad("engine profile: base_shapes must be an object and batched a list")
    for name, dims in shapes.items():
        check_dims(dims, f"engine profile input '{name}'")
    if not all(isinstance(name, str) and name in shapes for name in batched):
        raise _bad(f"engine profile: batched {batched!r} names inputs it has no shape for")


def _check_binding(entry: Any, what: str, lo: int = 1) -> str:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
        raise _bad(f"{what} is not an object with a name")
    check_dtype(entry.get("dtype"), what)
    check_dims(entry.get("shape"), what, lo=lo, batch_axis=True)
    if not isinstance(entry.get("batched", False), bool):
        raise _bad(f"{what}: 'batched' is not true or false")
    return entry["name"]


def check_plans(plans: Mapping[int, Any], profile: Any) -> None:
    """The plans cover the profile: every batch in range is served by one of them."""
    if not plans or not all(profile.min_batch <= b <= profile.max_batch for b in plans):
        raise _bad(f"engine plans are for batch sizes {sorted(plans)}, outside the profile "
                   f"[{profile.min_batch}, {profile.max_batch}]")  # fmt: skip
    if profile.max_batch not in plans:
        raise _bad(f"engine has no plan for its max batch {profile.max_batch}")


def check_plan(
    plan: Any,
    tensors: Mapping[str, np.ndarray],
    batch: int,
    bindings: Mapping[str, Any],
    tactic_names: Collection[str] | None = None,
) -> None:
    """Rebuild, verify and re-infer the plan for ``batch``; raise :class:`EngineFileError`.

    ``bindings`` maps "inputs"/"outputs" to the engine's Binding lists; ``tactic_names`` is
    every tactic the backend knows (None: not checked, e.g. the backend is not here).
    """
    where = f"engine plan for batch {batch}"
    _check_plan_json(plan, tensors, where)
    try:
        graph = plan_to_graph(plan, tensors)
    except EngineFileError as exc:
        raise _bad(f"{where}: {exc}") from exc
    _check_meta(graph, tactic_names, where)
    _check_io(graph, batch, bindings, where)
    for node in graph.nodes:
        _check_attrs(graph, node, where)
    inferred = graph.copy()
    try:
        infer_shapes(inferred, fold=False)
    except EdgeInferError as exc:
        raise _bad(f"{where}: {exc}") from exc
    except (RecursionError, OverflowError, MemoryError) as exc:
        raise _bad(f"{where}: shape inference failed: {type(exc).__name__}") from exc
    for node in inferred.nodes:
        for out in node.outputs:
            value = graph.value(out.name)
            stored, storage = value.type, _storage_dtype(value.meta, f"{where}: '{out.name}'")
            if stored is None or out.type is None:
                continue
            # a reduced-precision activation is stored in its storage dtype; the op infers
            # the float type it computes in
            same = stored == out.type or (
                storage == stored.dtype and stored.shape == out.type.shape
                and out.type.dtype.kind == "f")  # fmt: skip
            if not same:
                raise _bad(f"{where}: node '{node.name}' ({node.op_type}) output '{out.name}' "
                           f"is stored as {stored} but its inputs give {out.type}")  # fmt: skip


def _check_attrs(graph: Graph, node: Node, where: str) -> None:
    """Each attribute has the type its kernel's signature declares (the ONNX schema's):
    shape functions read ``pads=0`` as "no pads", a tactic would iterate it."""
    try:
        op = resolve_op(graph, node)
    except EdgeInferError as exc:
        raise _bad(f"{where}: {exc}") from exc
    hints = _attr_hints(op.kernel)
    for name, value in node.attrs.items():
        hint = hints.get(name)
        if hint is not None and not _fits(value, hint):
            raise _bad(f"{where}: node '{node.name}' ({node.op_type}) attribute "
                       f"{name}={repr(value)[:80]} is not {hint}")  # fmt: skip


@functools.cache
def _attr_hints(kernel: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(kernel)
    except (NameError, TypeError):  # an annotation this module cannot resolve: unchecked
        return {}


def _fits(value: Any, hint: Any) -> bool:
    """Whether a JSON-loaded ``value`` fits ``hint``; hints it does not know always fit."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is int:
        return type(value) in (int, bool)
    if hint is float:
        return type(value) in (int, float, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is np.ndarray:
        return isinstance(value, np.ndarray)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin in (list, tuple, Sequence, collections.abc.Sequence):
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value) if args else True
    if origin in (dict, Mapping, collections.abc.Mapping):
        return isinstance(value, dict)
    return True


def _storage_dtype(meta: Mapping[str, Any], what: str) -> np.dtype | None:
    """The storage dtype recorded in a value's meta (precision/storage.py), checked."""
    storage = meta.get("storage")
    if storage is None:
        return None
    ok = isinstance(storage, Mapping) and storage.get("dtype") in STORAGE_DTYPES
    scale = storage.get("scale", 1.0) if ok else None
    if not ok or not (isinstance(scale, float | int) and 0 < scale < math.inf):
        raise _bad(f"{what}: storage {storage!r} is not fp32/fp16/int8 with a positive scale")
    return STORAGE_DTYPES[storage["dtype"]]


def _check_plan_json(plan: Any, tensors: Mapping[str, np.ndarray], where: str) -> None:
    """Types of every plan field, before anything is made from them."""
    if not isinstance(plan, Mapping):
        raise _bad(f"{where} is not a JSON object")
    if not isinstance(plan.get("name"), str) or not isinstance(plan.get("opsets"), Mapping):
        raise _bad(f"{where}: name or opsets missing")
    if not all(isinstance(k, str) and _is_int(v, 1, 1000) for k, v in plan["opsets"].items()):
        raise _bad(f"{where}: opsets {plan['opsets']!r} are not domain -> version")
    values, nodes = plan.get("values"), plan.get("nodes")
    if not isinstance(values, Mapping) or not isinstance(nodes, list):
        raise _bad(f"{where}: values must be an object and nodes a list")
    for name, entry in values.items():
        _check_value(name, entry, tensors, f"{where}: value '{name}'")
    if not _shallow(plan.get("meta", {})):
        raise _bad(f"{where}: its meta is nested deeper than {MAX_DEPTH} levels")
    for k, node in enumerate(nodes):
        if not isinstance(node, Mapping) or sorted(node) != sorted(_NODE_KEYS):
            raise _bad(f"{where}: node {k} must have exactly the keys {', '.join(_NODE_KEYS)}")
        if not _shallow(node["attrs"]) or not _shallow(node["meta"]):
            raise _bad(f"{where}: node {k} has attrs or meta nested deeper than {MAX_DEPTH}")
        label = f"{where}: node {k} ({node['name']!r})"
        if not all(isinstance(node[key], str) for key in ("name", "op", "domain")):
            raise _bad(f"{label}: name, op and domain must be strings")
        if not isinstance(node["attrs"], Mapping) or not isinstance(node["meta"], Mapping):
            raise _bad(f"{label}: attrs and meta must be objects")
        names = [*node["inputs"], *node["outputs"]] if _lists(node) else [0]
        if not all(n is None or (isinstance(n, str) and n in values) for n in names):
            raise _bad(f"{label}: inputs and outputs must name values of the plan")
    io = [plan.get("inputs"), plan.get("outputs")]
    if not isinstance(io[0], list) or not isinstance(io[1], list):
        raise _bad(f"{where}: inputs and outputs must be lists")
    ok = all(isinstance(n, str) and n in values for n in io[0]) and all(
        isinstance(o, list) and len(o) == 2 and all(isinstance(s, str) for s in o)
        and o[1] in values for o in io[1])  # fmt: skip
    if not ok:
        raise _bad(f"{where}: inputs and outputs must name values of the plan")


def _shallow(obj: Any) -> bool:
    """Whether ``obj`` nests at most MAX_DEPTH lists/objects (checked without recursion, so
    a deep plan cannot exhaust the stack of whoever walks it next)."""
    stack = [(obj, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            return False
        if isinstance(item, Mapping):
            stack += [(v, depth + 1) for v in item.values()]
        elif isinstance(item, list):
            stack += [(v, depth + 1) for v in item]
    return True


def _lists(node: Mapping[str, Any]) -> bool:
    return isinstance(node["inputs"], list) and isinstance(node["outputs"], list)


def _check_value(name: Any, entry: Any, tensors: Mapping[str, np.ndarray], what: str) -> None:
    if not isinstance(entry, Mapping) or not _shallow(entry.get("meta")):
        raise _bad(f"{what} is not an object, or its meta is nested too deep")
    shape, dtype = entry.get("shape"), entry.get("dtype")
    if shape is None and dtype is None and "const" not in entry:
        return  # an untyped value (an optional output nothing reads)
    check_dims(shape, what, lo=0)
    check_dtype(dtype, what)
    if "const" in entry:
        key = entry["const"]
        array = tensors.get(key) if isinstance(key, str) else None
        if array is None:
            raise _bad(f"{what}: constant {key!r} is not in the engine's tensors")
        if list(array.shape) != shape or array.dtype.name != dtype:
            raise _bad(f"{what}: stored as {dtype}{shape}, its constant is "
                       f"{array.dtype.name}{list(array.shape)}")  # fmt: skip


def _check_meta(graph: Graph, tactic_names: Collection[str] | None, where: str) -> None:
    """The metadata the backends read: schedule, branch workers, tactic names."""
    if graph.meta.get("schedule", "sequential") not in _SCHEDULES:
        raise _bad(f"{where}: schedule {graph.meta.get('schedule')!r} is not one of "
                   f"{', '.join(_SCHEDULES)}")  # fmt: skip
    if not _is_int(graph.meta.get("branch_workers", 2), 1, 256):
        raise _bad(f"{where}: branch_workers {graph.meta.get('branch_workers')!r} is not 1..256")
    _check_chains(graph, tactic_names, where)
    for node in graph.nodes:
        tactic = node.meta.get("tactic")
        if tactic is None:
            continue
        if not isinstance(tactic, str) or (tactic_names is not None and tactic not in tactic_names):
            known = ", ".join(sorted(tactic_names or ()))
            raise _bad(f"{where}: node '{node.name}' has unknown tactic {tactic!r} "
                       f"(known: {known})")  # fmt: skip


def _check_chains(graph: Graph, tactic_names: Collection[str] | None, where: str) -> None:
    """``graph.meta["chains"]``: runs of 2-3 layers a backend computes as one (the CPU's
    conv chains), each naming layers of this plan and a known tactic."""
    chains = graph.meta.get("chains", [])
    if not isinstance(chains, list):
        raise _bad(f"{where}: chains must be a list, got {type(chains).__name__}")
    names = {node.name for node in graph.nodes}
    for k, entry in enumerate(chains):
        members = entry.get("members") if isinstance(entry, Mapping) else None
        tactic = entry.get("tactic") if isinstance(entry, Mapping) else None
        if (
            not isinstance(members, list)
            or not 2 <= len(members) <= 3
            or not all(isinstance(m, str) and m in names for m in members)
            or len(set(members)) != len(members)
        ):
            raise _bad(f"{where}: chain {k} must name 2 or 3 layers of the plan, got {members!r}")
        if not isinstance(tactic, str) or (tactic_names is not None and tactic not in tactic_names):
            raise _bad(f"{where}: chain {k} has unknown tactic {tactic!r}")


def _check_io(graph: Graph, batch: int, bindings: Mapping[str, Any], where: str) -> None:
    """The plan's inputs and outputs are the engine's bindings, at this batch size."""
    plan_io = {
        "inputs": {v.name: v.type for v in graph.inputs},
        "outputs": {name: v.type for name, v in graph.outputs},
    }
    for kind, found in plan_io.items():
        want = {b.name: b for b in bindings[kind]}
        if set(found) != set(want):
            raise _bad(f"{where}: its {kind} {sorted(found)} are not the engine's bindings "
                       f"{sorted(want)}")  # fmt: skip
        for name, b in want.items():
            got = found[name]
            same = got is not None and got.dtype == b.dtype and len(got.shape) == len(b.shape)
            if kind == "inputs" and same:  # axis 0 of a batched input is the batch: the
                want = (batch, *b.shape[1:]) if b.batched else b.shape  # runtime pads to it
                same = tuple(got.shape) == tuple(want)
            elif same and -1 not in b.shape:
                same = tuple(got.shape) == tuple(b.shape)
            # an output of a ranged engine ([-1, ...]) is compared by rank and dtype only: the
            # builder records every output so, whichever axis its batch is on (a sequence
            # model's [T, N, C] output is [-1, 1, C])
            if not same:
                raise _bad(f"{where}: {kind[:-1]} '{name}' is {found[name]}, but the engine's "
                           f"binding is {b} at batch {batch}")  # fmt: skip
