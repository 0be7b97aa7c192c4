"""The op registry, keyed the way ONNX keys ops: ``(domain, op_type, since_version)``.

Each :class:`OpDef` pairs a numpy reference kernel (a pure function whose signature is the
ONNX schema: inputs positionally, omitted optional inputs as ``None``, attributes as keyword
arguments with ONNX defaults) with a shape function. Lookup picks, for a model's opset, the
newest registration whose ``since_version`` is not above it — as ``onnx.defs`` does.

Op families live one per module (``elementwise.py``, ``conv.py``, ...); each module keeps an
:class:`OpList` named ``OPS`` and ``ops/__init__.py`` lists those modules explicitly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_infer.engine.ir import Node, Shape, TensorType
from edge_infer.errors import PluginError, ShapeInferenceError

Kernel = Callable[..., Any]


@dataclass
class InferContext:
    """What a shape function sees: the node, its input types and any constant input values."""

    node: Node
    input_types: list[TensorType | None]
    input_values: list[np.ndarray | None]
    attrs: dict[str, Any]

    @property
    def num_inputs(self) -> int:
        return len(self.input_types)

    def type(self, index: int) -> TensorType:
        t = self.input_types[index] if index < len(self.input_types) else None
        if t is None:
            self.fail(f"input {index} is required")
        return t  # type: ignore[return-value]

    def shape(self, index: int) -> Shape:
        return self.type(index).shape

    def dtype(self, index: int) -> np.dtype:
        return self.type(index).dtype

    def has(self, index: int) -> bool:
        return index < len(self.input_types) and self.input_types[index] is not None

    def value(self, index: int) -> np.ndarray | None:
        """The constant value of input ``index``, or ``None`` when it is not a constant."""
        return self.input_values[index] if index < len(self.input_values) else None

    def require_value(self, index: int, what: str) -> np.ndarray:
        value = self.value(index)
        if value is None:
            self.fail(
                f"{what} (input {index}) must be known at build time; it is computed from "
                "run-time data. Fix the shapes with --shapes or fold the subgraph."
            )
        return value  # type: ignore[return-value]

    def fail(self, message: str) -> None:
        node = self.node
        shapes = ", ".join("-" if t is None else str(t) for t in self.input_types)
        raise ShapeInferenceError(
            f"{node.op_type} node '{node.name}': {message} (inputs: {shapes})"
        )


Infer = Callable[[InferContext], Sequence[TensorType]]


@dataclass(frozen=True)
class OpDef:
    """An op implementation valid from ``since_version`` until the next registration."""

    op_type: str
    since_version: int
    kernel: Kernel
    infer: Infer
    domain: str = ""
    #: attribute defaults applied before calling the kernel or the shape function
    defaults: dict[str, Any] = field(default_factory=dict)
    #: cheap ops whose outputs are folded at build time when all inputs are constants
    foldable: bool = True

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.domain, self.op_type, self.since_version)


class OpList:
    """Collects the ops of one module: ``OPS = OpList()`` then ``@OPS.register(...)``."""

    def __init__(self) -> None:
        self.defs: list[OpDef] = []

    def register(
        self,
        op_type: str,
        since_version: int = 1,
        *,
        infer: Infer,
        domain: str = "",
        foldable: bool = True,
        **defaults: Any,
    ) -> Callable[[Kernel], Kernel]:
        def decorate(kernel: Kernel) -> Kernel:
            self.defs.append(
                OpDef(op_type, since_version, kernel, infer, domain, dict(defaults), foldable)
            )
            return kernel

        return decorate

    def add(self, op: OpDef) -> None:
        self.defs.append(op)


class OpRegistry:
    """Maps ``(domain, op_type)`` to its versions; duplicate registrations raise."""

    def __init__(self) -> None:
        self._ops: dict[tuple[str, str], dict[int, OpDef]] = {}

    def register(self, op: OpDef) -> None:
        versions = self._ops.setdefault((op.domain, op.op_type), {})
        if op.since_version in versions:
            raise PluginError(
                f"op {op.domain or 'ai.onnx'}::{op.op_type} version {op.since_version} is "
                "registered twice"
            )
        versions[op.since_version] = op

    def register_all(self, ops: OpList | Sequence[OpDef]) -> None:
        for op in ops.defs if isinstance(ops, OpList) else ops:
            self.register(op)

    def unregister(self, domain: str, op_type: str) -> None:
        self._ops.pop((domain, op_type), None)

    def resolve(self, domain: str, op_type: str, opset: int) -> OpDef | None:
        """The registration for ``op_type`` valid at ``opset``, or ``None``."""
        versions = self._ops.get((domain, op_type))
        if not versions:
            return None
        usable = [v for v in versions if v <= opset]
        return versions[max(usable)] if usable else None

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._ops

    def op_types(self, domain: str = "") -> list[str]:
        return sorted(op for dom, op in self._ops if dom == domain)

    def copy(self) -> OpRegistry:
        new = OpRegistry()
        new._ops = {k: dict(v) for k, v in self._ops.items()}
        return new


# -- shape-function helpers shared by many ops ----------------------------------------------


def broadcast_shapes(*shapes: Shape) -> Shape:
    """Numpy (multidirectional) broadcasting of static or symbolic shapes."""
    rank = max((len(s) for s in shapes), default=0)
    out: list[int | str] = []
    for axis in range(rank):
        dims = [s[axis - rank + len(s)] for s in shapes if axis - rank + len(s) >= 0]
        result: int | str = 1
        for d in dims:
            if d == 1:
                continue
            if result == 1:
                result = d
            elif result != d:
                if isinstance(result, str) or isinstance(d, str):
                    result = d if isinstance(result, str) and isinstance(d, int) else result
                    continue
                raise ShapeInferenceError(f"shapes {list(shapes)} cannot be broadcast")
        out.append(result)
    return tuple(out)


def same_as_input(index: int = 0) -> Infer:
    """Shape function: one output with the type of input ``index``."""

    def infer(ctx: InferContext) -> list[TensorType]:
        return [ctx.type(index)]

    return infer


def broadcast(dtype: Any | None = None) -> Infer:
    """Shape function: one output, inputs broadcast; dtype of input 0 unless ``dtype``."""

    def infer(ctx: InferContext) -> list[TensorType]:
        shapes = [t.shape for t in ctx.input_types if t is not None]
        try:
            shape = broadcast_shapes(*shapes)
        except ShapeInferenceError as exc:
            ctx.fail(str(exc))
        out_dtype = np.dtype(dtype) if dtype is not None else ctx.dtype(0)
        return [TensorType(shape, out_dtype)]

    return infer


def by_evaluation(ctx: InferContext) -> list[TensorType]:
    """Shape function for cheap data-movement ops: run the kernel on placeholder arrays.

    Needs static shapes; constant inputs are passed as their values. Only for ops whose
    cost is negligible (views, small index arithmetic) — never for Conv or MatMul.
    """
    from edge_infer.engine.ops import get_registry  # late: the registry imports this module

    args: list[np.ndarray | None] = []
    for t, v in zip(ctx.input_types, ctx.input_values, strict=False):
        if t is None:
            args.append(None)
        elif v is not None:
            args.append(v)
        else:
            if not t.is_static:
                ctx.fail(f"needs static input shapes, got {t}")
            args.append(np.broadcast_to(np.zeros((), dtype=t.dtype), t.shape))
    node = ctx.node
    op = get_registry().resolve(node.domain, node.op_type, _opset_of(node))
    if op is None:
        ctx.fail("no kernel to evaluate shapes with")
    try:
        result = op.kernel(*args, **ctx.attrs)  # type: ignore[union-attr]
    except Exception as exc:  # kernel errors are shape errors here: report them located
        ctx.fail(f"{type(exc).__name__}: {exc}")
    results = result if isinstance(result, tuple | list) else (result,)
    return [TensorType(np.shape(r), np.asarray(r).dtype) for r in results]


def _opset_of(node: Node) -> int:
    graph = node.graph
    if graph is None:
        return 21
    return graph.opsets.get(node.domain, graph.opsets.get("", 21))
