"""The graph IR: ``Graph``, ``Node`` and ``Value``, with producer/consumer links the IR keeps.

Passes never splice edge lists by hand: they call :meth:`Node.set_input`,
:meth:`Graph.replace_all_uses_with`, :meth:`Graph.add_node` and :meth:`Graph.remove_node`,
which keep every link in sync. Iterating :meth:`Graph.iter_nodes` while removing nodes is safe.

Graph outputs are ``(public_name, Value)`` pairs, so an output keeps its name when a pass
replaces the value behind it (even by a constant or a graph input).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_infer.errors import GraphError

Dim = int | str
Shape = tuple[Dim, ...]

#: the largest tensor (bytes) an engine may hold: sizes are Python ints checked against it, so
#: a model declaring a 2^31 x 2^31 input is refused instead of wrapping around int64
MAX_TENSOR_BYTES = 1 << 40


@dataclass(frozen=True)
class TensorType:
    """Static type of a tensor: shape (ints, or str for a symbolic dim) and numpy dtype."""

    shape: Shape
    dtype: np.dtype

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", np.dtype(self.dtype))
        object.__setattr__(self, "shape", tuple(self.shape))

    @property
    def is_static(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def nbytes(self) -> int:
        if not self.is_static:
            raise GraphError(f"tensor of shape {self.shape} has symbolic dims; no byte size")
        nbytes = math.prod(int(d) for d in self.shape) * self.dtype.itemsize
        if nbytes > MAX_TENSOR_BYTES:
            raise GraphError(
                f"a tensor of {self} is {nbytes} bytes; the limit is "
                f"{MAX_TENSOR_BYTES} (1 TiB): give smaller shapes"
            )
        return nbytes

    def __str__(self) -> str:
        return f"{self.dtype.name}[{'x'.join(str(d) for d in self.shape)}]"


class Value:
    """A tensor in the graph: produced by at most one node, consumed by any number.

    ``const`` holds the data of constants (initializers and folded values).
    """

    __slots__ = ("_producer", "_uses", "const", "meta", "name", "type")

    def __init__(self, name: str, type: TensorType | None = None, const: np.ndarray | None = None):
        self.name = name
        if const is not None:
            const = np.asarray(const)
            type = TensorType(const.shape, const.dtype)
        self.type = type
        self.const = const
        self._producer: Node | None = None
        self._uses: list[tuple[Node, int]] = []
        self.meta: dict[str, Any] = {}

    @property
    def producer(self) -> Node | None:
        return self._producer

    @property
    def uses(self) -> list[tuple[Node, int]]:
        """``(node, input_index)`` for every use, in insertion order (a copy)."""
        return list(self._uses)

    @property
    def consumers(self) -> list[Node]:
        """Distinct consuming nodes."""
        seen: dict[int, Node] = {}
        for node, _ in self._uses:
            seen.setdefault(id(node), node)
        return list(seen.values())

    @property
    def is_const(self) -> bool:
        return self.const is not None

    @property
    def shape(self) -> Shape:
        if self.type is None:
            raise GraphError(f"value '{self.name}' has no type yet (run shape inference)")
        return self.type.shape

    @property
    def dtype(self) -> np.dtype:
        if self.type is None:
            raise GraphError(f"value '{self.name}' has no type yet (run shape inference)")
        return self.type.dtype

    def __repr__(self) -> str:
        kind = "const " if self.is_const else ""
        return f"Value({kind}{self.name!r}: {self.type})"


class Node:
    """One operation. Inputs may be ``None`` for omitted optional ONNX inputs."""

    __slots__ = ("_inputs", "_outputs", "attrs", "domain", "graph", "meta", "name", "op_type")

    def __init__(
        self,
        op_type: str,
        name: str,
        domain: str = "",
        attrs: dict[str, Any] | None = None,
    ):
        self.op_type = op_type
        self.name = name
        self.domain = domain
        self.attrs: dict[str, Any] = dict(attrs or {})
        self._inputs: list[Value | None] = []
        self._outputs: list[Value] = []
        self.graph: Graph | None = None
        #: free-form annotations: fused members, tactic, precision, timing, ...
        self.meta: dict[str, Any] = {}

    @property
    def inputs(self) -> tuple[Value | None, ...]:
        return tuple(self._inputs)

    @property
    def outputs(self) -> tuple[Value, ...]:
        return tuple(self._outputs)

    def set_input(self, index: int, value: Value | None) -> None:
        """Rewire input ``index`` to ``value``, keeping use lists in sync."""
        old = self._inputs[index]
        if old is value:
            return
        if old is not None:
            old._uses.remove((self, index))
        self._inputs[index] = value
        if value is not None:
            value._uses.append((self, index))

    def set_inputs(self, values: Sequence[Value | None]) -> None:
        """Replace the whole input list (its length may change)."""
        for index, old in enumerate(self._inputs):
            if old is not None:
                old._uses.remove((self, index))
        self._inputs = list(values)
        for index, value in enumerate(self._inputs):
            if value is not None:
                value._uses.append((self, index))

    def i(self, index: int = 0) -> Node | None:
        """Producer of input ``index`` (``None`` for graph inputs and constants)."""
        value = self._inputs[index]
        return None if value is None else value.producer

    def o(self, consumer: int = 0, output: int = 0) -> Node:
        """The ``consumer``-th consumer of output ``output``."""
        return self._outputs[output].consumers[consumer]

    def __repr__(self) -> str:
        ins = ", ".join("-" if v is None else v.name for v in self._inputs)
        outs = ", ".join(v.name for v in self._outputs)
        return f"Node({self.op_type} {self.name!r}: ({ins}) -> ({outs}))"


@dataclass
class Graph:
    """A dataflow graph of nodes over values, with named inputs and outputs."""

    name: str = "graph"
    opsets: dict[str, int] = field(default_factory=lambda: {"": 17})
    inputs: list[Value] = field(default_factory=list)
    outputs: list[tuple[str, Value]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._nodes: dict[Node, None] = {}
        self._values: dict[str, Value] = {}
        self._counter = itertools.count()
        for value in self.inputs:
            self._register_value(value)
        for _, value in self.outputs:
            if value.name not in self._values:
                self._register_value(value)

    # -- values -----------------------------------------------------------------------------
    @property
    def values(self) -> dict[str, Value]:
        return dict(self._values)

    def value(self, name: str) -> Value:
        try:
            return self._values[name]
        except KeyError:
            raise GraphError(f"no value named '{name}' in graph '{self.name}'") from None

    def has_value(self, name: str) -> bool:
        return name in self._values

    def unique_name(self, base: str) -> str:
        base = base or "v"
        if base not in self._values and not any(n.name == base for n in self._nodes):
            return base
        while True:
            candidate = f"{base}__{next(self._counter)}"
            if candidate not in self._values:
                return candidate

    def _register_value(self, value: Value) -> Value:
        if value.name in self._values and self._values[value.name] is not value:
            raise GraphError(f"duplicate value name '{value.name}' in graph '{self.name}'")
        self._values[value.name] = value
        return value

    def add_value(self, name: str, type: TensorType | None = None, *, unique: bool = True) -> Value:
        """Create a new (unproduced) value; ``unique`` renames it if the name is taken."""
        return self._register_value(Value(self.unique_name(name) if unique else name, type))

    def add_constant(self, name: str, array: np.ndarray, *, unique: bool = True) -> Value:
        """Create a constant value holding ``array``."""
        value = Value(self.unique_name(name) if unique else name, const=np.asarray(array))
        return self._register_value(value)

    def add_input(self, name: str, type: TensorType) -> Value:
        value = self._register_value(Value(name, type))
        self.inputs.append(value)
        return value

    def add_output(self, value: Value, name: str | None = None) -> None:
        self.outputs.append((name or value.name, value))

    def output_names(self) -> list[str]:
        return [name for name, _ in self.outputs]

    def is_graph_output(self, value: Value) -> bool:
        return any(v is value for _, v in self.outputs)

    def is_graph_input(self, value: Value) -> bool:
        return any(v is value for v in self.inputs)

    def constants(self) -> list[Value]:
        return [v for v in self._values.values() if v.is_const]

    # -- nodes ------------------------------------------------------------------------------
    @property
    def nodes(self) -> list[Node]:
        return list(self._nodes)

    def __len__(self) -> int:
        return len(self._nodes)

    def iter_nodes(self) -> Iterator[Node]:
        """Iterate over a snapshot of the nodes, skipping any removed during iteration."""
        for node in list(self._nodes):
            if node.graph is self:
                yield node

    def node(self, name: str) -> Node:
        for node in self._nodes:
            if node.name == name:
                return node
        raise GraphError(f"no node named '{name}' in graph '{self.name}'")

    def add_node(
        self,
        op_type: str,
        inputs: Sequence[Value | None],
        outputs: Sequence[Value | str] | int = 1,
        attrs: dict[str, Any] | None = None,
        *,
        name: str | None = None,
        domain: str = "",
    ) -> Node:
        """Append a node; ``outputs`` may be new names, existing unproduced values or a count."""
        node = Node(op_type, self._unique_node_name(name or op_type.lower()), domain, attrs)
        node.graph = self
        if isinstance(outputs, int):
            outputs = [
                f"{node.name}_out{k}" if outputs > 1 else f"{node.name}_out" for k in range(outputs)
            ]
        for out in outputs:
            value = self.add_value(out) if isinstance(out, str) else out
            if isinstance(out, Value):
                if value.producer is not None:
                    raise GraphError(
                        f"value '{value.name}' already produced by '{value.producer.name}'"
                    )
                if value.is_const:
                    raise GraphError(f"constant '{value.name}' cannot be a node output")
                self._register_value(value)
            value._producer = node
            node._outputs.append(value)
        node.set_inputs(list(inputs))
        self._nodes[node] = None
        return node

    def _unique_node_name(self, base: str) -> str:
        names = {n.name for n in self._nodes}
        if base not in names:
            return base
        while True:
            candidate = f"{base}__{next(self._counter)}"
            if candidate not in names:
                return candidate

    def remove_node(self, node: Node, *, force: bool = False) -> None:
        """Remove ``node``; its outputs must be unused (or ``force`` to orphan their uses)."""
        if node.graph is not self:
            raise GraphError(f"node '{node.name}' is not in graph '{self.name}'")
        for out in node._outputs:
            if not force and (out._uses or self.is_graph_output(out)):
                users = ", ".join(n.name for n in out.consumers) or "graph output"
                raise GraphError(
                    f"cannot remove node '{node.name}': its output '{out.name}' is still used "
                    f"by {users}; call replace_all_uses_with first"
                )
        node.set_inputs([])
        for out in node._outputs:
            out._producer = None
            if not out._uses and not self.is_graph_output(out):
                self._values.pop(out.name, None)
        del self._nodes[node]
        node.graph = None

    def replace_all_uses_with(self, old: Value, new: Value) -> None:
        """Point every use of ``old`` (node inputs and graph outputs) at ``new``."""
        if old is new:
            return
        if new.name not in self._values:
            self._register_value(new)
        for node, index in list(old._uses):
            node.set_input(index, new)
        self.outputs = [(name, new if v is old else v) for name, v in self.outputs]

    def remove_unused_values(self) -> int:
        """Forget constants and values that nothing produces or uses; returns how many."""
        keep = {id(v) for v in self.inputs} | {id(v) for _, v in self.outputs}
        dead = [
            name
            for name, v in self._values.items()
            if not v._uses and v.producer is None and id(v) not in keep
        ]
        for name in dead:
            del self._values[name]
        return len(dead)

    # -- order and checks -------------------------------------------------------------------
    def topological_sort(self) -> None:
        """Reorder nodes so that every producer precedes its consumers (stable)."""
        order: list[Node] = []
        state: dict[Node, int] = {}
        for root in list(self._nodes):
            if root in state:
                continue
            stack: list[tuple[Node, Iterator[Value | None]]] = [(root, iter(root._inputs))]
            state[root] = 1
            while stack:
                node, it = stack[-1]
                advanced = False
                for value in it:
                    if value is None or value.producer is None:
                        continue
                    pred = value.producer
                    if pred.graph is not self:
                        continue
                    mark = state.get(pred)
                    if mark == 1:
                        raise GraphError(f"graph '{self.name}' has a cycle through '{pred.name}'")
                    if mark is None:
                        state[pred] = 1
                        stack.append((pred, iter(pred._inputs)))
                        advanced = True
                        break
                if not advanced:
                    stack.pop()
                    state[node] = 2
                    order.append(node)
        self._nodes = dict.fromkeys(order)

    def reorder(self, nodes: Sequence[Node]) -> None:
        """Run the nodes in the order of ``nodes`` (a permutation of them that keeps every
        producer before its consumers, e.g. a memory-aware schedule)."""
        if len(nodes) != len(self._nodes) or set(nodes) != set(self._nodes):
            raise GraphError(f"reorder of graph '{self.name}' must list each node once")
        seen: set[int] = set()
        for node in nodes:
            for value in node._inputs:
                pred = None if value is None else value.producer
                if pred is not None and pred.graph is self and id(pred) not in seen:
                    raise GraphError(
                        f"reorder puts '{node.name}' before its input's producer '{pred.name}'"
                    )
            seen.add(id(node))
        self._nodes = dict.fromkeys(nodes)

    def verify(self) -> None:
        """Check every invariant the IR promises; raise :class:`GraphError` on the first breach."""
        seen: set[int] = set()
        for value in self.inputs:
            if value.producer is not None:
                raise GraphError(f"graph input '{value.name}' has a producer")
            seen.add(id(value))
        for node in self._nodes:
            if node.graph is not self:
                raise GraphError(f"node '{node.name}' does not point back at its graph")
            for index, value in enumerate(node._inputs):
                if value is None:
                    continue
                if self._values.get(value.name) is not value:
                    raise GraphError(
                        f"node '{node.name}' input {index} '{value.name}' is not in the graph"
                    )
                if (node, index) not in value._uses:
                    raise GraphError(f"use list of '{value.name}' misses node '{node.name}'")
                if not (value.is_const or id(value) in seen):
                    where = "not produced" if value.producer is None else "used before produced"
                    raise GraphError(
                        f"node '{node.name}' ({node.op_type}) reads '{value.name}', {where}"
                    )
            for out in node._outputs:
                if out.producer is not node:
                    raise GraphError(f"output '{out.name}' of '{node.name}' has another producer")
                seen.add(id(out))
        for value in self._values.values():
            for node, index in value._uses:
                if node.graph is not self or node._inputs[index] is not value:
                    raise GraphError(f"stale use of '{value.name}' by '{node.name}'")
        names = [name for name, _ in self.outputs]
        if len(set(names)) != len(names):
            raise GraphError(f"duplicate graph output names: {names}")
        for name, value in self.outputs:
            if not (value.is_const or id(value) in seen):
                raise GraphError(f"graph output '{name}' ('{value.name}') is never produced")

    # -- copying ----------------------------------------------------------------------------
    def copy(self) -> Graph:
        """A structural deep copy; constant arrays are shared (treat them as immutable)."""
        mapping: dict[int, Value] = {}

        def clone(value: Value | None) -> Value | None:
            if value is None:
                return None
            got = mapping.get(id(value))
            if got is None:
                got = Value(value.name, value.type, value.const)
                got.meta = dict(value.meta)
                mapping[id(value)] = got
            return got

        new = Graph(
            name=self.name,
            opsets=dict(self.opsets),
            inputs=[clone(v) for v in self.inputs],  # type: ignore[misc]
            outputs=[],
            meta=dict(self.meta),
        )
        for value in self._values.values():
            if value.is_const or value.producer is None:
                new._register_value(clone(value))  # type: ignore[arg-type]
        for node in self._nodes:
            copy = new.add_node(
                node.op_type,
                [clone(v) for v in node._inputs],
                [clone(v) for v in node._outputs],  # type: ignore[misc]
                dict(node.attrs),
                name=node.name,
                domain=node.domain,
            )
            copy.meta = dict(node.meta)
        new.outputs = [(name, clone(v)) for name, v in self.outputs]  # type: ignore[misc]
        return new

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for node in self._nodes:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
        ops = ", ".join(f"{k}×{v}" for k, v in sorted(counts.items()))
        return f"graph '{self.name}': {len(self._nodes)} nodes ({ops})"
