"""Static memory plan: liveness of every activation → offsets in one arena per context.

1. resolve aliases: a value that is a slice of another (concat elimination, Split views) or
   a reshape of it (Reshape/Flatten/Squeeze/Unsqueeze of a whole buffer) owns no memory;
2. each root buffer lives from the first step that writes it (or any of its aliases) to the
   last step that reads it (or any alias); graph inputs live from the start, outputs to the end;
3. buffers sorted by size, each placed at the lowest aligned offset that does not overlap a
   buffer whose lifetime intersects its own; the engine's input and output buffers follow
   the activations in a region of their own (``io_bytes``), which a caller's bound buffers
   can replace, so ``arena_bytes`` counts activations only, as TensorRT's activation memory;
4. in place: a layer whose kind may overwrite an input (:data:`IN_PLACE_OPS`: activations,
   elementwise layers and Pointwise chains, Softmax) writes its output over that input when
   the input dies at the layer — see :func:`_in_place_input` for the exact rule — so the
   output owns no memory and its address record is the input's (TensorRT and every inference
   runtime run such layers in place);
5. every value, alias or not, resolves to an :class:`Address` — (buffer, byte offset, shape,
   byte strides, dtype) — from which the CPU builds its numpy views and a device backend its
   device addresses. Buffers are sized by each value's storage dtype (``value.type``: float32,
   float16 or int8 after precision lowering), so the strides and offsets are in bytes of it.

Nothing is allocated while the engine runs: every activation is a view into the arena.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_infer.engine.ir import MAX_TENSOR_BYTES, Graph, Node, Value
from edge_infer.engine.ops.fused import DOMAIN
from edge_infer.errors import GraphError

ALIGNMENT = 64
#: ops whose output is the input reinterpreted (same bytes, new shape) when the input is whole
RESHAPE_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze"})
_ELEMENTWISE = (
    "Relu", "LeakyRelu", "PRelu", "ThresholdedRelu", "HardSigmoid", "HardSwish", "Clip", "Elu",
    "Selu", "Celu", "Sigmoid", "Softplus", "Tanh", "Softsign", "Mish", "Gelu", "Exp", "Log",
    "Sqrt", "Reciprocal", "Neg", "Abs", "Floor", "Ceil", "Round", "Erf", "Sin", "Cos",
    "Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean",
)  # fmt: skip
#: (domain, op) of layers that may write their output over an input of the same shape: each
#: output element depends only on the same element of that input (elementwise layers), or the
#: kernel reads a whole softmax row before it writes any of it. Every backend's kernels for
#: them must be correct with ``out`` at ``in``: numpy ufuncs with ``out=``, the CPU's native
#: ``unary_f32`` and ``softmax_f32``, reference kernels (they compute, then copy).
IN_PLACE_OPS = frozenset(
    {("", op) for op in (*_ELEMENTWISE, "Softmax", "LogSoftmax")} | {(DOMAIN, "Pointwise")}
)


@dataclass(frozen=True)
class Alias:
    """``value`` is ``root`` (reshaped), or ``parent[..., start:stop, ...]`` along ``axis``."""

    parent: str
    axis: int | None = None
    start: int = 0
    stop: int = 0


@dataclass(frozen=True)
class Address:
    """Where a value lives in the arena: the root ``buffer`` (value name) that owns the memory,
    the value's first element at byte ``offset``, its ``shape`` and byte ``strides``."""

    buffer: str
    offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    dtype: np.dtype

    @property
    def extent(self) -> int:
        """Bytes from ``offset`` to one past the last element (0 for an empty value)."""
        if any(d == 0 for d in self.shape):
            return 0
        return (
            sum((d - 1) * s for d, s in zip(self.shape, self.strides, strict=True))
            + self.dtype.itemsize
        )

    @property
    def contiguous(self) -> bool:
        return self.strides == contiguous_strides(self.shape, self.dtype)

    def to_json(self) -> dict[str, Any]:
        return {
            "buffer": self.buffer,
            "offset": self.offset,
            "shape": list(self.shape),
            "strides": list(self.strides),
            "dtype": self.dtype.name,
        }


@dataclass
class MemoryPlan:
    offsets: dict[str, int] = field(default_factory=dict)  # root value → byte offset
    sizes: dict[str, int] = field(default_factory=dict)  # root value → bytes
    aliases: dict[str, Alias] = field(default_factory=dict)  # views: no layer writes them
    in_place: dict[str, str] = field(default_factory=dict)  # output → the input it overwrites
    addresses: dict[str, Address] = field(default_factory=dict)  # every planned value
    arena_bytes: int = 0  # activations: the buffers of everything but the engine's I/O
    io_bytes: int = 0  # the engine's input and output buffers, placed after the activations
    naive_bytes: int = 0

    @property
    def total_bytes(self) -> int:
        """The memory one context allocates: activations, then inputs and outputs."""
        return self.arena_bytes + self.io_bytes

    @property
    def links(self) -> dict[str, Alias]:
        """Every value that owns no memory → where it lives: the views (:attr:`aliases`) and
        the in-place outputs (at the whole input they overwrite, as a reshape would be)."""
        return {**self.aliases, **{out: Alias(x) for out, x in self.in_place.items()}}

    def to_json(self) -> dict[str, Any]:
        by_dtype: dict[str, int] = {}
        for name, size in self.sizes.items():
            dtype = self.addresses[name].dtype.name if name in self.addresses else "?"
            by_dtype[dtype] = by_dtype.get(dtype, 0) + size
        return {
            "bytes": self.arena_bytes,
            "io_bytes": self.io_bytes,
            "naive_bytes": self.naive_bytes,
            "buffers": len(self.offsets),
            "aliases": len(self.aliases),
            "in_place": len(self.in_place),
            "buffer_bytes_by_dtype": dict(sorted(by_dtype.items())),
        }


def contiguous_strides(shape: tuple[int, ...], dtype: np.dtype) -> tuple[int, ...]:
    """Byte strides of a C-contiguous array of ``shape`` and ``dtype``."""
    strides, step = [], np.dtype(dtype).itemsize
    for d in reversed(shape):
        strides.append(step)
        step *= max(int(d), 1)
    return tuple(reversed(strides))


def _align(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def find_aliases(graph: Graph) -> dict[str, Alias]:
    """Aliases from pass metadata (``value.meta['alias_of']``) and whole-buffer reshapes."""
    aliases: dict[str, Alias] = {}
    for value in graph.values.values():
        spec = value.meta.get("alias_of")
        if spec:
            aliases[value.name] = Alias(
                spec["value"], int(spec["axis"]), int(spec["start"]), int(spec["stop"])
            )
    for node in graph.nodes:
        if node.op_type not in RESHAPE_OPS or node.domain:
            continue
        src, out = node.inputs[0], node.outputs[0]
        if src is None or src.const is not None or out.name in aliases:
            continue
        if _sliced(src.name, aliases):
            continue  # a strided slice cannot be reinterpreted in place
        if graph.is_graph_output(out) and graph.is_graph_input(src):
            continue
        aliases[out.name] = Alias(src.name)
    return aliases


def _sliced(name: str, aliases: dict[str, Alias]) -> bool:
    """``name`` is a slice, or a reshape of one (through any chain of aliases)."""
    seen = set()
    while name in aliases and name not in seen:
        seen.add(name)
        if aliases[name].axis is not None:
            return True
        name = aliases[name].parent
    return False


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
    users: dict[str, dict[int, set[str]]] = {}  # root → step → the layers touching it then

    def touch(value: Value, step: int, node: str = "") -> None:
        root = root_of(value.name, aliases)
        first[root] = min(first.get(root, step), step)
        last[root] = max(last.get(root, step), step)
        users.setdefault(root, {}).setdefault(step, set()).add(node)

    for value in graph.inputs:
        touch(value, -1)
    for node in nodes:
        step = when[node.name]
        for value in node.inputs:
            if value is not None and value.const is None:
                touch(value, step, node.name)
        for value in node.outputs:
            touch(value, step, node.name)
    for _, value in graph.outputs:
        if value.const is None:
            touch(value, end)
    io = {root_of(v.name, aliases) for v in graph.inputs}
    io |= {root_of(v.name, aliases) for _, v in graph.outputs if v.const is None}

    in_place: dict[str, str] = {}
    links = dict(aliases)
    for node in sorted(nodes, key=lambda n: when[n.name]):  # stable: the graph's order
        x = _in_place_input(graph, node, when[node.name], links, io, last, users)
        if x is None:
            continue
        out, root = node.outputs[0].name, root_of(x, links)
        in_place[out] = x
        links[out] = Alias(x)
        # the input's buffer now lives as long as the output does
        first.pop(out)
        last[root] = max(last[root], last.pop(out))
        for step, names in users.pop(out).items():
            users[root].setdefault(step, set()).update(names)
    sizes = {name: graph.value(name).type.nbytes for name in first}  # type: ignore[union-attr]

    plan = MemoryPlan(aliases=aliases, in_place=in_place, sizes=sizes)
    placed: list[tuple[int, int, int, int]] = []  # (offset, size, first, last)
    for name in sorted(set(sizes) - io, key=lambda n: (-sizes[n], first[n], n)):
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
    # the engine's inputs and outputs: a region of their own after the activations (as
    # TensorRT keeps I/O tensors out of its activation memory); a caller may bind its own
    # buffers in their place
    for name in sorted(io & set(sizes), key=lambda n: (first[n], n)):
        plan.offsets[name] = plan.arena_bytes + plan.io_bytes
        plan.io_bytes += _align(max(sizes[name], 1))
    if plan.total_bytes > MAX_TENSOR_BYTES:
        raise GraphError(
            f"the memory plan needs {plan.total_bytes} bytes per context; the limit "
            f"is {MAX_TENSOR_BYTES} (1 TiB): give smaller shapes or batch sizes"
        )
    plan.naive_bytes = sum(
        v.type.nbytes
        for v in graph.values.values()
        if v.const is None and v.type is not None and v.type.is_static
    )
    plan.addresses = resolve_addresses(graph, plan)
    return plan


def _in_place_input(
    graph: Graph,
    node: Node,
    step: int,
    links: dict[str, Alias],
    io: set[str],
    last: dict[str, int],
    users: dict[str, dict[int, set[str]]],
) -> str | None:
    """The input ``node`` may write its output over, or None. All of these must hold:

    - the layer's kind may run in place (:data:`IN_PLACE_OPS`; an Fp16Layer by the op it
      wraps) and it has one output, which is a buffer of its own: no view or concat piece,
      not the engine's output (nor aliased by it);
    - the input has the output's shape and storage dtype (so the same byte size), and is its
      whole buffer: the buffer itself or a reshape of it, never a slice of a bigger one;
    - that buffer is not the engine's input or output, the layer reads it through this one
      input only, and nothing touches it after this layer — nor beside it: no other layer of
      the same time step (branch-parallel stages share a step).
    """
    kind = (node.domain, node.op_type)
    if kind == (DOMAIN, "Fp16Layer"):
        kind = (str(node.attrs.get("op_domain", "")), str(node.attrs.get("op", "")))
    if kind not in IN_PLACE_OPS or len(node.outputs) != 1:
        return None
    out = node.outputs[0]
    if out.type is None or not out.type.is_static or out.name in links or out.name in io:
        return None
    inputs = [v for v in node.inputs if v is not None and v.const is None]
    roots = [root_of(v.name, links) for v in inputs]
    for value, root in zip(inputs, roots, strict=True):
        if (
            value.type is None
            or value.type.shape != out.type.shape
            or value.dtype != out.dtype
            or root in io
            or graph.value(root).type.nbytes != out.type.nbytes  # a slice: not its whole buffer
            or roots.count(root) != 1
            or last[root] != step
            or users[root][step] != {node.name}
        ):
            continue
        return value.name
    return None


def resolve_addresses(graph: Graph, plan: MemoryPlan) -> dict[str, Address]:
    """Every planned value's :class:`Address`: roots at their offsets, C-contiguous; a
    reshape alias — or an in-place output — at its (contiguous) parent's offset; a slice
    ``parent[..., s:e, ...]`` at ``parent.offset + s * parent.strides[axis]`` with the
    parent's strides."""
    links = plan.links
    addresses: dict[str, Address] = {}
    for name, offset in plan.offsets.items():
        t = graph.value(name).type
        shape = tuple(int(d) for d in t.shape)  # type: ignore[union-attr]
        addresses[name] = Address(
            name,
            offset,
            shape,
            contiguous_strides(shape, t.dtype),  # type: ignore[union-attr]
            np.dtype(t.dtype),
        )  # type: ignore[union-attr]

    def resolve(name: str, depth: int = 0) -> Address:
        if name in addresses:
            return addresses[name]
        if depth > len(links):
            raise ValueError(f"alias cycle through '{name}'")
        alias = links[name]
        parent = resolve(alias.parent, depth + 1)
        t = graph.value(name).type
        shape = tuple(int(d) for d in t.shape)  # type: ignore[union-attr]
        if np.dtype(t.dtype) != parent.dtype:  # type: ignore[union-attr]
            raise ValueError(
                f"alias '{name}' is {t.dtype} but its buffer '{parent.buffer}' "  # type: ignore[union-attr]
                f"holds {parent.dtype}: storage dtypes must agree in memory"
            )
        if alias.axis is None:
            if not parent.contiguous or int(np.prod(shape)) != int(np.prod(parent.shape)):
                raise ValueError(
                    f"alias '{name}' reshapes '{alias.parent}', which is not a "
                    "whole contiguous buffer of the same size"
                )
            result = Address(
                parent.buffer,
                parent.offset,
                shape,
                contiguous_strides(shape, parent.dtype),
                parent.dtype,
            )
        else:
            sliced = list(parent.shape)
            sliced[alias.axis] = alias.stop - alias.start
            if (
                tuple(sliced) != shape
                or not 0 <= alias.start <= alias.stop <= parent.shape[alias.axis]
            ):
                raise ValueError(f"alias '{name}' has shape {tuple(sliced)}, expected {shape}")
            result = Address(
                parent.buffer,
                parent.offset + alias.start * parent.strides[alias.axis],
                shape,
                parent.strides,
                parent.dtype,
            )
        addresses[name] = result
        return result

    for name in links:
        resolve(name)
    return addresses


def view_of(memory: np.ndarray, address: Address, base: int = 0) -> np.ndarray:
    """The numpy view that ``address`` describes, in ``memory``: the arena (a uint8 buffer),
    or — with ``base``, the buffer's own offset in the arena — a caller's array bound in
    place of the buffer."""
    offset = address.offset - base
    if offset < 0 or offset + address.extent > memory.nbytes:
        raise ValueError(f"memory plan puts a view of '{address.buffer}' outside its memory")
    return np.ndarray(
        address.shape, address.dtype, buffer=memory, offset=offset, strides=address.strides
    )


def make_views(graph: Graph, plan: MemoryPlan, arena: np.ndarray) -> dict[str, np.ndarray]:
    """Every planned value as a numpy view into ``arena`` (a uint8 buffer), built from the
    plan's address records."""
    addresses = plan.addresses or resolve_addresses(graph, plan)
    return {name: view_of(arena, address) for name, address in addresses.items()}


def memory_order(graph: Graph) -> list[Node]:
    """A topological order of ``graph``'s nodes that frees big buffers early: of the layers
    ready to run, the one that allocates least net of what it frees goes first (ties: the
    current order). E.g. a detection head's small class branch runs before the box branch's
    large decoding, so the buffer both read dies before the decoding allocates its own."""
    aliases = find_aliases(graph)
    nodes = graph.nodes
    index = {id(n): k for k, n in enumerate(nodes)}
    pinned = {root_of(v.name, aliases) for v in graph.inputs}
    pinned |= {root_of(v.name, aliases) for _, v in graph.outputs if v.const is None}

    def roots(values: Any) -> set[str]:
        return {root_of(v.name, aliases) for v in values if v is not None and v.const is None}

    reads = {id(n): roots(n.inputs) for n in nodes}
    writes = {id(n): roots(n.outputs) for n in nodes}
    readers: dict[str, int] = {}
    for n in nodes:
        for r in reads[id(n)]:
            readers[r] = readers.get(r, 0) + 1
    size = {r: graph.value(r).type.nbytes for n in nodes for r in writes[id(n)] | reads[id(n)]}  # type: ignore[union-attr]
    waiting = {
        id(n): sum(1 for v in n.inputs if v is not None and v.producer is not None) for n in nodes
    }
    ready = [n for n in nodes if waiting[id(n)] == 0]
    allocated: set[str] = set()
    order: list[Node] = []

    def cost(n: Node) -> tuple[int, int]:
        grow = sum(size[r] for r in writes[id(n)] - allocated - pinned)
        free = sum(size[r] for r in reads[id(n)] - pinned if readers[r] == 1)
        return grow - free, index[id(n)]

    while ready:
        node = min(ready, key=cost)
        ready.remove(node)
        order.append(node)
        allocated |= writes[id(node)]
        for r in reads[id(node)]:
            readers[r] -= 1
        for value in node.outputs:
            for consumer, _ in value.uses:
                waiting[id(consumer)] -= 1
                if waiting[id(consumer)] == 0:
                    ready.append(consumer)
    return order


def reorder_for_memory(graph: Graph) -> bool:
    """Run ``graph``'s layers in :func:`memory_order` when that makes the arena smaller;
    returns whether the order changed."""
    before = plan_memory(graph).arena_bytes
    original = graph.nodes
    graph.reorder(memory_order(graph))
    if plan_memory(graph).arena_bytes < before:
        return True
    graph.reorder(original)
    return False
