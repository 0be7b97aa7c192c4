"""Binding input shapes, then shape inference with constant propagation.

Shapes are concrete during a build (the builder binds the batch of each profile first), so
every op's shape function sees ints. Nodes whose inputs are all constants are evaluated on the
spot (``Shape`` of a static tensor included): this is how shape subgraphs (Shape → Gather →
Concat → Reshape, anchor grids from Range/Expand) become constants before anything runs.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edge_infer.engine.ir import Graph, Node, TensorType, Value
from edge_infer.engine.ops import get_registry
from edge_infer.engine.ops.registry import InferContext, OpDef, OpRegistry
from edge_infer.errors import BuildError, EdgeInferError, GraphError, ShapeInferenceError

log = logging.getLogger(__name__)

#: outputs larger than this are not materialised as constants by folding
MAX_FOLD_BYTES = 64 << 20


def bind_input_shapes(graph: Graph, shapes: Mapping[str, Sequence[int]]) -> dict[str, int]:
    """Give every graph input a concrete shape; returns the symbol → size bindings.

    Unknown input names, rank mismatches, fixed dims that differ, and symbolic dims left
    unbound each raise :class:`BuildError` saying which ``--shapes`` entry to give.
    """
    known = {v.name for v in graph.inputs}
    for name in shapes:
        if name not in known:
            raise BuildError(
                f"--shapes names input '{name}', but the model's inputs are {sorted(known)}"
            )
    symbols: dict[str, int] = {}
    for value in graph.inputs:
        declared = value.shape
        given = shapes.get(value.name)
        if given is None:
            if not value.type.is_static:  # type: ignore[union-attr]
                from edge_infer.engine.profiles import shape_example

                raise BuildError(
                    f"input '{value.name}' has dynamic shape {list(declared)}; give it with "
                    f"--shapes {value.name}:{shape_example(declared)}"
                )
            continue
        given = tuple(int(d) for d in given)
        if len(given) != len(declared):
            raise BuildError(
                f"input '{value.name}' has rank {len(declared)} "
                f"({list(declared)}); --shapes gave {list(given)}"
            )
        for axis, (want, got) in enumerate(zip(declared, given, strict=True)):
            if got <= 0:
                raise BuildError(f"input '{value.name}' dim {axis}: size must be ≥ 1, got {got}")
            if isinstance(want, int) and want != got:
                raise BuildError(
                    f"input '{value.name}' dim {axis} is fixed at {want} in the "
                    f"model; --shapes gave {got}"
                )
            if isinstance(want, str) and symbols.setdefault(want, got) != got:
                raise BuildError(
                    f"dim '{want}' is bound to {symbols[want]} and {got} "
                    f"(input '{value.name}' dim {axis})"
                )
        value.type = TensorType(given, value.dtype)
    for value in graph.inputs:
        if value.type is not None and value.type.is_static:
            _check_size(value.type, f"input '{value.name}'", BuildError)
    return symbols


def _check_size(
    t: TensorType | None, what: str, error: type[EdgeInferError] = ShapeInferenceError
) -> None:
    """Refuse a static type whose byte size passes ``MAX_TENSOR_BYTES`` (sizes are Python ints:
    a 2^31 x 2^31 tensor is a size error, not a negative arena)."""
    if t is not None and t.is_static:
        try:
            t.nbytes  # noqa: B018 - raises past the bound
        except GraphError as exc:
            raise error(f"{what}: {exc}") from None


def node_attrs(op: OpDef, node: Node) -> dict[str, Any]:
    return {**op.defaults, **node.attrs} if op.defaults else node.attrs


def resolve_op(graph: Graph, node: Node, registry: OpRegistry | None = None) -> OpDef:
    registry = registry or get_registry()
    opset = graph.opsets.get(node.domain, 1 if node.domain else 17)
    op = registry.resolve(node.domain, node.op_type, opset)
    if op is None:
        raise GraphError(
            f"node '{node.name}': no implementation of "
            f"{node.domain or 'ai.onnx'}::{node.op_type} at opset {opset}"
        )
    return op


def infer_shapes(graph: Graph, *, fold: bool = True, registry: OpRegistry | None = None) -> int:
    """Infer every value's type in topological order, folding constant nodes when ``fold``.

    Returns the number of nodes folded away.
    """
    registry = registry or get_registry()
    graph.topological_sort()
    folded = 0
    for node in graph.iter_nodes():
        op = resolve_op(graph, node, registry)
        attrs = node_attrs(op, node)
        if fold and op.foldable and try_fold(graph, node, op, attrs):
            folded += 1
            continue
        types = _infer_node(node, op, attrs)
        for out, t in zip(node.outputs, types, strict=False):
            _check_size(t, f"{node.op_type} node '{node.name}' output '{out.name}'")
            out.type = t
    graph.remove_unused_values()
    return folded


def _infer_node(node: Node, op: OpDef, attrs: dict[str, Any]) -> list[TensorType]:
    ctx = InferContext(
        node=node,
        input_types=[None if v is None else v.type for v in node.inputs],
        input_values=[None if v is None else v.const for v in node.inputs],
        attrs=attrs,
    )
    for index, t in enumerate(ctx.input_types):
        if t is None and node.inputs[index] is not None:
            raise ShapeInferenceError(
                f"{node.op_type} node '{node.name}': input '{node.inputs[index].name}' has "  # type: ignore[union-attr]
                "no type (is it produced by a node after this one?)"
            )
    try:
        types = list(op.infer(ctx))
    except EdgeInferError:
        raise
    except Exception as exc:
        ctx.fail(f"shape inference failed: {type(exc).__name__}: {exc}")
        raise  # unreachable: ctx.fail raises
    if len(types) < len(node.outputs):
        # optional trailing outputs (e.g. Dropout mask) that the op did not type are allowed
        # only when nothing reads them
        for out in node.outputs[len(types) :]:
            if out.uses:
                ctx.fail(f"output '{out.name}' is used but the op does not produce it")
    return types


def try_fold(graph: Graph, node: Node, op: OpDef, attrs: dict[str, Any]) -> bool:
    """Evaluate ``node`` now if all its inputs are known; replace it by constants."""
    args: list[np.ndarray | None] = []
    if node.op_type == "Shape" or node.op_type == "Size":
        src = node.inputs[0]
        if src is None or src.type is None or not src.type.is_static:
            return False
        args = [
            src.const
            if src.const is not None
            else np.broadcast_to(np.zeros((), src.dtype), src.shape)
        ]
    else:
        for value in node.inputs:
            if value is None:
                args.append(None)
            elif value.const is None:
                return False
            else:
                args.append(value.const)
    try:
        result = op.kernel(*args, **attrs)
    except Exception as exc:
        raise ShapeInferenceError(
            f"{node.op_type} node '{node.name}': evaluating it on constant inputs failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    results = list(result) if isinstance(result, tuple | list) else [result]
    arrays = [np.asarray(r) for r in results]
    if sum(a.nbytes for a in arrays) > MAX_FOLD_BYTES:
        return False
    for out, array in zip(node.outputs, arrays, strict=False):
        array = np.array(array, order="C")  # keeps 0-d scalars 0-d
        array.setflags(write=False)
        const = Value(graph.unique_name(out.name + "_const"), const=array)
        graph.replace_all_uses_with(out, const)
    graph.remove_node(node, force=True)
    return True


def check_outputs_typed(graph: Graph) -> None:
    for name, value in graph.outputs:
        if value.type is None:
            raise ShapeInferenceError(f"graph output '{name}' has no inferred type")
        if not value.type.is_static:
            raise ShapeInferenceError(f"graph output '{name}' has a symbolic shape {value.shape}")
