"""Concat elimination: producers write into slices of the concat output; Split outputs are views.

This pass only annotates — the graph stays valid and the reference executor still runs
Concat and Split. The executor reads the annotations (the layout contract):

- ``value.meta["alias_of"] = {"value": <base value name>, "axis": <axis ≥ 0>,
  "start": s, "stop": e}``: this value lives in ``base[..., s:e, ...]`` along ``axis``;
- ``node.meta["noop"] = True``: the Concat/Split node does no work (its data is already in
  place).

A Concat whose consecutive inputs are the pieces of one value S — the outputs of a Split, or
of Slices with constant bounds, in order and covering S along the Concat's axis (the C2f block
of YOLOv8: a 1x1 conv's output split in two, both halves concatenated again with the
bottlenecks' outputs) — is eliminated with S itself in place: S aliases its range of the
Concat output and the pieces alias S (the one chain made), the Split/Slices do nothing.

A Concat is eliminated when its inputs are all produced by nodes (not graph inputs or
constants), each by a distinct node, none is a graph output, and none already aliases or is
aliased. A Split (static sizes from its output types) is eliminated when its input is
produced by a node and is not itself an alias, and no output is a graph output or already
involved in an alias. No value gets two aliases and, but for the pieces above, no chains are
made (a value is never both an alias and the base of one); where candidates conflict, the
bigger copy is eliminated. The
pass recomputes every annotation from scratch on each run, so annotations left stale by other
passes are corrected and a second run changes nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_infer.engine.ir import Graph, Node, Value
from edge_infer.engine.passes.base import Pass, PassResult

ALIAS_KEY = "alias_of"
NOOP_KEY = "noop"


class _Aliases:
    """Aliases decided so far: value name -> alias record; base names."""

    def __init__(self) -> None:
        self.alias: dict[str, dict[str, Any]] = {}
        self.bases: set[str] = set()

    def free(self, value: Value) -> bool:
        """``value`` neither aliases another value nor is the base of an alias."""
        return value.name not in self.alias and value.name not in self.bases

    def add(self, values: list[Value], base: Value, axis: int) -> None:
        """``values`` side by side along ``axis`` of ``base``, from its start."""
        start = 0
        for v in values:
            stop = start + int(v.shape[axis])
            self.add_range(v, base, axis, start, stop)
            start = stop

    def add_range(self, value: Value, base: Value, axis: int, start: int, stop: int) -> None:
        self.alias[value.name] = {"value": base.name, "axis": axis, "start": start, "stop": stop}
        self.bases.add(base.name)


def _axis(node: Node, rank: int) -> int | None:
    axis = int(node.attrs.get("axis", 0))
    axis = axis + rank if axis < 0 else axis
    return axis if 0 <= axis < rank else None


def _static(value: Value | None) -> bool:
    return value is not None and value.type is not None and value.type.is_static


def _concat_ok(graph: Graph, node: Node, decided: _Aliases) -> int | None:
    out = node.outputs[0]
    ins = node.inputs
    if not _static(out) or not ins or not all(_static(v) for v in ins):
        return None
    axis = _axis(node, out.type.rank)  # type: ignore[union-attr]
    producers = [None if v is None else v.producer for v in ins]
    if axis is None or any(p is None for p in producers) or out.name in decided.alias:
        return None
    if len({id(p) for p in producers}) != len(producers):
        return None
    for v in ins:
        if graph.is_graph_output(v) or not decided.free(v):  # type: ignore[arg-type]
            return None
    return axis


def _piece(graph: Graph, value: Value) -> tuple[Value, int, int, int] | None:
    """(source, axis, start, stop) when ``value`` is a static piece of another value: a Split
    output or a unit-step Slice along one axis with constant bounds."""
    node = value.producer
    if node is None or node.domain != "" or not node.inputs or node.inputs[0] is None:
        return None
    src = node.inputs[0]
    if not _static(src) or not _static(value):
        return None
    rank = src.type.rank  # type: ignore[union-attr]
    if node.op_type == "Split":
        axis = _axis(node, rank)
        if axis is None:
            return None
        start = 0
        for out in node.outputs:
            size = int(out.shape[axis])  # type: ignore[union-attr]
            if out is value:
                return src, axis, start, start + size
            start += size
        return None
    if node.op_type != "Slice" or len(node.inputs) < 3:
        return None
    params = [None if v is None else v.const for v in node.inputs[1:5]]
    params += [None] * (4 - len(params))  # starts, ends, axes, steps
    if (
        params[0] is None
        or params[1] is None
        or any(p is not None and np.asarray(p).size != 1 for p in params)
    ):
        return None
    axis, step = (
        int(np.asarray(p).ravel()[0]) if p is not None else default
        for p, default in ((params[2], 0), (params[3], 1))
    )
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < rank or step != 1:
        return None
    dim = int(src.shape[axis])
    start = int(np.asarray(params[0]).ravel()[0])
    start = min(max(start + dim if start < 0 else start, 0), dim)
    size = int(value.shape[axis])
    return src, axis, start, start + size


def _pieces_ok(
    graph: Graph, node: Node, axis: int, decided: _Aliases
) -> list[tuple[Value, list[tuple[Value, int, int]]]] | None:
    """The Concat's inputs as units: (value, []) for an ordinary input, (S, pieces) for a run
    of consecutive inputs that are S's pieces covering it in order; None when no run is
    found or a run's source cannot live in place."""
    units: list[tuple[Value, list[tuple[Value, int, int]]]] = []
    ins = list(node.inputs)
    k, found = 0, False
    while k < len(ins):
        v = ins[k]
        piece = _piece(graph, v) if v is not None else None
        if piece is not None and piece[1] == axis and piece[2] == 0:
            src, run, stop, j = piece[0], [(v, piece[2], piece[3])], piece[3], k + 1
            while j < len(ins) and stop < int(src.shape[axis]):  # type: ignore[union-attr]
                nxt = _piece(graph, ins[j]) if ins[j] is not None else None
                if nxt is None or nxt[0] is not src or nxt[1] != axis or nxt[2] != stop:
                    break
                run.append((ins[j], nxt[2], nxt[3]))  # type: ignore[arg-type]
                stop, j = nxt[3], j + 1
            if len(run) > 1 and stop == int(src.shape[axis]):  # type: ignore[union-attr]
                if (
                    src.producer is None
                    or graph.is_graph_output(src)
                    or not decided.free(src)
                    or any(graph.is_graph_output(p) or not decided.free(p) for p, _, _ in run)
                ):
                    return None
                units.append((src, run))
                k, found = j, True
                continue
        if v is None:
            return None
        units.append((v, []))
        k += 1
    if not found:
        return None
    producers = [u.producer for u, _ in units]
    if any(p is None for p in producers) or len({id(p) for p in producers}) != len(units):
        return None
    for u, run in units:
        if not run and (graph.is_graph_output(u) or not decided.free(u)):
            return None
    return units


def _pieces_in_place(
    graph: Graph, node: Node, decided: _Aliases
) -> tuple[int, list[tuple[Value, list[tuple[Value, int, int]]]]] | None:
    """(axis, units) of :func:`_pieces_ok` for a Concat, or None."""
    out = node.outputs[0]
    if not _static(out) or out.name in decided.alias or not all(_static(v) for v in node.inputs):
        return None
    axis = _axis(node, out.type.rank)  # type: ignore[union-attr]
    units = None if axis is None else _pieces_ok(graph, node, axis, decided)
    return None if units is None else (axis, units)  # type: ignore[return-value]


def _split_ok(graph: Graph, node: Node, decided: _Aliases) -> int | None:
    src = node.inputs[0] if node.inputs else None
    if src is None or src.producer is None or not _static(src):
        return None
    axis = _axis(node, src.type.rank)  # type: ignore[union-attr]
    if axis is None or src.name in decided.alias:
        return None
    if sum(int(v.shape[axis]) for v in node.outputs) != int(src.shape[axis]):
        return None
    for v in node.outputs:
        if not _static(v) or graph.is_graph_output(v) or not decided.free(v):
            return None
    return axis


class EliminateConcat(Pass):
    """Annotate Concat/Split nodes whose data can live in place (see the module docstring)."""

    name = "eliminate_concat"

    def run(self, graph: Graph) -> PassResult:
        before = _snapshot(graph)
        for value in graph.values.values():
            value.meta.pop(ALIAS_KEY, None)
        decided = _Aliases()
        noop: set[str] = set()
        for node in graph.nodes:
            node.meta.pop(NOOP_KEY, None)
        for node in _by_bytes_saved(graph):
            if node.op_type == "Concat":
                in_place = _pieces_in_place(graph, node, decided)
                if in_place is not None:
                    axis, units = in_place
                    decided.add([u for u, _ in units], node.outputs[0], axis)
                    for src, run in units:
                        for piece, start, stop in run:
                            decided.add_range(piece, src, axis, start, stop)
                            noop.add(piece.producer.name)  # type: ignore[union-attr]
                    noop.add(node.name)
                    continue
                axis = _concat_ok(graph, node, decided)
                if axis is not None:
                    decided.add(list(node.inputs), node.outputs[0], axis)  # type: ignore[arg-type]
                    noop.add(node.name)
            elif node.op_type == "Split":
                axis = _split_ok(graph, node, decided)
                if axis is not None:  # the Split outputs are views of its input
                    decided.add(list(node.outputs), node.inputs[0], axis)  # type: ignore[arg-type]
                    noop.add(node.name)
        for name, record in decided.alias.items():
            graph.value(name).meta[ALIAS_KEY] = record
        for node in graph.nodes:
            if node.name in noop:
                node.meta[NOOP_KEY] = True
        return PassResult(graph, _snapshot(graph) != before)


def _by_bytes_saved(graph: Graph) -> list[Node]:
    """Concat/Split nodes, the biggest copy first (then in graph order).

    Where two candidates conflict (a Split output that is also a Concat input), the one that
    saves more bytes wins: in an Inception block the branch Concat beats the Split of the
    merged 1x1 convs.
    """
    candidates = []
    for index, node in enumerate(graph.nodes):
        if node.domain != "" or node.op_type not in ("Concat", "Split"):
            continue
        value = node.outputs[0] if node.op_type == "Concat" else node.inputs[0]
        if _static(value):
            candidates.append((-value.type.nbytes, index, node))  # type: ignore[union-attr]
    return [node for *_, node in sorted(candidates, key=lambda c: (c[0], c[1]))]


def _snapshot(graph: Graph) -> tuple[Any, ...]:
    aliases = sorted(
        (name, tuple(sorted(v.meta[ALIAS_KEY].items())))
        for name, v in graph.values.items()
        if ALIAS_KEY in v.meta
    )
    noops = sorted(n.name for n in graph.nodes if n.meta.get(NOOP_KEY))
    return tuple(aliases), tuple(noops)
