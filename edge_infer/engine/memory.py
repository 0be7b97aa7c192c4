"""Static memory plan: liveness of every activation → offsets in one arena per context.

1. resolve aliases: a value that is a slice of another (concat elimination, Split views) or
   a reshape of it (Reshape/Flatten/Squeeze/Unsqueeze of a whole buffer) owns no memory;
2. each root buffer lives from the first step that writes it (or any of its aliases) to the
   last step that reads it (or any alias); graph inputs live from the start, outputs to the end;
3. buffers sorted by size, each placed at the lowest aligned offset that does not overlap a
   buffer whose lifetime intersects its own.

Nothing is allocated while the engine runs: every activation is a view into the arena.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_infer.engine.ir import Graph, Value

ALIGNMENT = 64
#: ops whose output is the input reinterpreted (same bytes, new shape) when the input is whole
RESHAPE_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze"})


@dataclass(frozen=True)
class Alias:
    """``value`` is ``root`` (reshaped), or ``parent[..., start:stop, ...]`` along ``axis``."""

    parent: str
    axis: int | None = None
    start: int = 0
    stop: int = 0


@dataclass
class MemoryPlan:
    offsets: dict[str, int] = field(default_factory=dict)  # root value → byte offset
    sizes: dict[str, int] = field(default_factory=dict)  # root value → bytes
    aliases: dict[str, Alias] = field(default_factory=dict)
    arena_bytes: int = 0
    naive_bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"bytes": self.arena_bytes, "naive_bytes": self.naive_bytes,
                "buffers": len(self.offsets), "aliases": len(self.aliases)}


def _align(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def find_aliases(graph: Graph) -> dict[str, Alias]:
    """Aliases from pass metadata (``value.meta['alias_of']``) and whole-buffer reshapes."""
    aliases: dict[str, Alias] = {}
    for value in graph.values.values():
        spec = value.meta.get("alias_of")
        if spec:
            aliases[value.name] = Alias(spec["value"], int(spec["axis"]), int(spec["start"]),
                                        int(spec["stop"]))
    for node in graph.nodes:
        if node.op_type not in RESHAPE_OPS or node.domain:
            continue
        src, out = node.inputs[0], node.outputs[0]
        if src is None or src.const is not None or out.name in aliases:
            continue
        if src.name in aliases and aliases[src.name].axis is not None:
            continue  # a strided slice cannot be reinterpreted in place
        if graph.is_graph_output(out) and graph.is_graph_input(src):
            continue
        aliases[out.name] = Alias(src.name)
    return aliases


def root_of(name: str, aliases: dict[str, Alias]) -> str:
    seen = set()
    while name in aliases:
        if name in seen:
            raise ValueError(f"alias cycle through '{name}'")
        seen.add(name)
        name = aliases[name].parent
    return name


def plan_memory(graph: Graph, times: dict[str, int] | None = None) -> MemoryPlan:
    """Assign every non-constant value a place in one arena (see the module docstring).

    ``times`` maps node name → time step; nodes sharing a step may run concurrently (branch
    parallelism), so their buffers never share memory. Default: each node its own step.
    """
    aliases = find_aliases(graph)
    nodes = [n for n in graph.nodes]
    when = times or {n.name: k for k, n in enumerate(nodes)}
    end = max(when.values(), default=-1) + 1
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    sizes: dict[str, int] = {}

    def touch(value: Value, step: int) -> None:
        root = root_of(value.name, aliases)
        first[root] = min(first.get(root, step), step)
        last[root] = max(last.get(root, step), step)

    for value in graph.inputs:
        touch(value, -1)
    for node in nodes:
        step = when[node.name]
        for value in node.inputs:
            if value is not None and value.const is None:
                touch(value, step)
        for value in node.outputs:
            touch(value, step)
    for _, value in graph.outputs:
        if value.const is None:
            touch(value, end)
    for name in first:
        value = graph.value(name)
        sizes[name] = value.type.nbytes  # type: ignore[union-attr]

    plan = MemoryPlan(aliases=aliases, sizes=sizes)
    placed: list[tuple[int, int, int, int]] = []  # (offset, size, first, last)
    for name in sorted(sizes, key=lambda n: (-sizes[n], first[n], n)):
        size = _align(max(sizes[name], 1))
        lo, hi = first[name], last[name]
        busy = sorted((o, s) for o, s, f, la in placed if not (la < lo or f > hi))
        offset = 0
        for o, s in busy:
            if offset + size <= o:
                break
            offset = max(offset, o + s)
        placed.append((offset, size, lo, hi))
        plan.offsets[name] = offset
        plan.arena_bytes = max(plan.arena_bytes, offset + size)
    plan.naive_bytes = sum(
        v.type.nbytes for v in graph.values.values()
        if v.const is None and v.type is not None and v.type.is_static
    )
    return plan


def make_views(graph: Graph, plan: MemoryPlan, arena: np.ndarray) -> dict[str, np.ndarray]:
    """Every planned value as a numpy view into ``arena`` (a uint8 buffer)."""
    views: dict[str, np.ndarray] = {}
    for name, offset in plan.offsets.items():
        value = graph.value(name)
        t = value.type
        nbytes = t.nbytes  # type: ignore[union-attr]
        if offset + nbytes > arena.nbytes:
            raise ValueError(f"memory plan puts '{name}' outside the arena")
        views[name] = arena[offset: offset + nbytes].view(t.dtype).reshape(t.shape)  # type: ignore[union-attr]

    def view(name: str) -> np.ndarray:
        if name in views:
            return views[name]
        alias = plan.aliases[name]
        parent = view(alias.parent)
        t = graph.value(name).type
        if alias.axis is None:
            result = parent.reshape(t.shape)  # type: ignore[union-attr]
        else:
            index = [slice(None)] * parent.ndim
            index[alias.axis] = slice(alias.start, alias.stop)
            result = parent[tuple(index)]
        if result.shape != tuple(t.shape):  # type: ignore[union-attr]
            raise ValueError(f"alias '{name}' has shape {result.shape}, expected {t.shape}")
        views[name] = result
        return result

    for name in plan.aliases:
        view(name)
    return views
