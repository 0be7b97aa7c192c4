"""Shape ops: Reshape, Flatten, Transpose, Squeeze, Unsqueeze, Shape, Size, Expand, Tile,
Concat, Split (Slice, Pad and the depth/space ops are in :mod:`slice_pad`).

Every op here moves data without arithmetic, and many run on big activations or inside shape
subgraphs that the constant folder evaluates, so each has an explicit shape formula rather
than ``by_evaluation``. Output shapes that depend on a data input (Reshape's shape, Expand's
shape, Tile's repeats) need that input to be a build-time constant. Shape helpers raise
``ValueError``; the ``located`` wrapper turns it into a
:class:`~edge_infer.errors.ShapeInferenceError` naming the node, and at run time the executor
names the node for us.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from edge_infer.engine.ir import Dim, Shape, TensorType
from edge_infer.engine.ops.registry import Infer, InferContext, OpList, broadcast_shapes
from edge_infer.errors import ShapeInferenceError

OPS = OpList()


# -- helpers shared by kernels and shape functions -------------------------------------------


def located(infer: Infer) -> Infer:
    """Turn the helpers' ``ValueError`` into a located ``ShapeInferenceError``."""

    @functools.wraps(infer)
    def wrapper(ctx: InferContext) -> Sequence[TensorType]:
        try:
            return infer(ctx)
        except (ValueError, ShapeInferenceError) as exc:
            ctx.fail(str(exc))
            raise  # unreachable: ctx.fail raises

    return wrapper


def normalize_axis(axis: int, rank: int, what: str = "axis") -> int:
    """``axis`` in ``[-rank, rank)`` mapped to ``[0, rank)``, or a ValueError naming ``what``."""
    axis = int(axis)
    if not -rank <= axis < rank:
        raise ValueError(
            f"{what} = {axis} is out of range for rank {rank}; expected {-rank}..{rank - 1}"
        )
    return axis + rank if axis < 0 else axis


def normalize_axes(axes: Any, rank: int, what: str = "axes") -> list[int]:
    """Normalise a list of axes, rejecting duplicates."""
    out = [normalize_axis(a, rank, what) for a in np.asarray(axes, dtype=np.int64).reshape(-1)]
    if len(set(out)) != len(out):
        raise ValueError(f"{what} = {[int(a) for a in np.ravel(axes)]} repeats an axis")
    return out


def as_ints(values: Any) -> list[int]:
    return [int(v) for v in np.asarray(values).reshape(-1)]


def static_shape(shape: Shape, what: str) -> tuple[int, ...]:
    if not all(isinstance(d, int) for d in shape):
        raise ValueError(f"{what} needs a static shape, got {list(shape)}")
    return tuple(int(d) for d in shape)  # type: ignore[arg-type]


def _prod(dims: Sequence[Dim]) -> int:
    return math.prod(int(d) for d in dims)


# -- Reshape / Flatten / Transpose -----------------------------------------------------------


def reshape_target(shape: Shape, target: Any, allowzero: int = 0) -> tuple[int, ...]:
    """Resolve Reshape's target (0 copies the input dim unless ``allowzero``; one -1)."""
    dims = as_ints(target)
    in_shape = static_shape(shape, "Reshape")
    out: list[int] = []
    infer_at = -1
    for i, d in enumerate(dims):
        if d == 0 and not allowzero:
            if i >= len(in_shape):
                raise ValueError(
                    f"shape {dims}: 0 at position {i} copies a dim the input "
                    f"{list(in_shape)} does not have"
                )
            out.append(in_shape[i])
        elif d == -1:
            if infer_at >= 0:
                raise ValueError(f"shape {dims} has more than one -1")
            infer_at = i
            out.append(1)
        elif d < -1:
            raise ValueError(f"shape {dims} has a negative dim {d}; only -1 is allowed")
        else:
            out.append(d)
    total = _prod(in_shape)
    if infer_at >= 0:
        if allowzero and 0 in dims:
            raise ValueError(f"shape {dims}: -1 with a 0 dim is ambiguous when allowzero=1")
        known = _prod(out)
        if known == 0 or total % known:
            raise ValueError(f"cannot reshape {list(in_shape)} ({total} elements) to {dims}")
        out[infer_at] = total // known
    if _prod(out) != total:
        raise ValueError(f"cannot reshape {list(in_shape)} ({total} elements) to {dims}")
    return tuple(out)


@located
def _infer_reshape(ctx: InferContext) -> list[TensorType]:
    target = ctx.require_value(1, "Reshape's target shape")
    shape = reshape_target(ctx.shape(0), target, int(ctx.attrs.get("allowzero", 0)))
    return [TensorType(shape, ctx.dtype(0))]


@OPS.register("Reshape", 5, infer=_infer_reshape)
@OPS.register("Reshape", 14, infer=_infer_reshape)
def reshape(data: np.ndarray, shape: np.ndarray, allowzero: int = 0) -> np.ndarray:
    return np.reshape(data, reshape_target(data.shape, shape, allowzero))


def _flatten_shape(shape: Shape, axis: int) -> tuple[int, int]:
    rank = len(shape)
    if not -rank <= axis <= rank:
        raise ValueError(f"attribute axis = {axis} is out of range; expected {-rank}..{rank}")
    axis = axis + rank if axis < 0 else axis
    return _prod(shape[:axis]), _prod(shape[axis:])


@located
def _infer_flatten(ctx: InferContext) -> list[TensorType]:
    shape = _flatten_shape(ctx.shape(0), int(ctx.attrs.get("axis", 1)))
    return [TensorType(shape, ctx.dtype(0))]


@OPS.register("Flatten", 1, infer=_infer_flatten)
@OPS.register("Flatten", 11, infer=_infer_flatten)
def flatten(input: np.ndarray, axis: int = 1) -> np.ndarray:
    return np.reshape(input, _flatten_shape(input.shape, axis))


def _perm(perm: Sequence[int] | None, rank: int) -> list[int]:
    if perm is None:
        return list(range(rank))[::-1]
    perm = [int(p) for p in perm]
    if sorted(perm) != list(range(rank)):
        raise ValueError(f"attribute perm = {perm} is not a permutation of 0..{rank - 1}")
    return perm


@located
def _infer_transpose(ctx: InferContext) -> list[TensorType]:
    shape = ctx.shape(0)
    perm = _perm(ctx.attrs.get("perm"), len(shape))
    return [TensorType(tuple(shape[p] for p in perm), ctx.dtype(0))]


@OPS.register("Transpose", 1, infer=_infer_transpose)
def transpose(data: np.ndarray, perm: list[int] | None = None) -> np.ndarray:
    return np.transpose(data, _perm(perm, data.ndim))


# -- Squeeze / Unsqueeze ---------------------------------------------------------------------


def _axes_arg(ctx: InferContext, what: str) -> Any:
    """Axes from input 1 (opset 13+) when present, else from the ``axes`` attribute."""
    if ctx.has(1):
        return ctx.require_value(1, what)
    return ctx.attrs.get("axes")


def _squeeze_shape(shape: Shape, axes: Any) -> tuple[Dim, ...]:
    if axes is None or np.size(axes) == 0:
        return tuple(d for d in shape if d != 1)
    drop = normalize_axes(axes, len(shape))
    for a in drop:
        if shape[a] != 1:
            raise ValueError(f"axes {as_ints(axes)}: dim {a} has size {shape[a]}, not 1")
    return tuple(d for i, d in enumerate(shape) if i not in drop)


@located
def _infer_squeeze(ctx: InferContext) -> list[TensorType]:
    axes = _axes_arg(ctx, "Squeeze's axes")
    return [TensorType(_squeeze_shape(ctx.shape(0), axes), ctx.dtype(0))]


@OPS.register("Squeeze", 1, infer=_infer_squeeze)
@OPS.register("Squeeze", 11, infer=_infer_squeeze)
@OPS.register("Squeeze", 13, infer=_infer_squeeze)
def squeeze(data: np.ndarray, axes: Any = None) -> np.ndarray:
    """``axes`` is an attribute before opset 13 and an optional input from 13."""
    return np.reshape(data, _squeeze_shape(data.shape, axes))


def _unsqueeze_shape(shape: Shape, axes: Any) -> tuple[Dim, ...]:
    if axes is None:
        raise ValueError("axes are required")
    rank = len(shape) + int(np.size(axes))
    insert = set(normalize_axes(axes, rank))
    dims = iter(shape)
    return tuple(1 if i in insert else next(dims) for i in range(rank))


@located
def _infer_unsqueeze(ctx: InferContext) -> list[TensorType]:
    axes = _axes_arg(ctx, "Unsqueeze's axes")
    return [TensorType(_unsqueeze_shape(ctx.shape(0), axes), ctx.dtype(0))]


@OPS.register("Unsqueeze", 1, infer=_infer_unsqueeze)
@OPS.register("Unsqueeze", 11, infer=_infer_unsqueeze)
@OPS.register("Unsqueeze", 13, infer=_infer_unsqueeze)
def unsqueeze(data: np.ndarray, axes: Any = None) -> np.ndarray:
    """``axes`` is an attribute before opset 13 and an input from 13."""
    return np.reshape(data, _unsqueeze_shape(data.shape, axes))


# -- Shape / Size ----------------------------------------------------------------------------


def _infer_shape(ctx: InferContext) -> list[TensorType]:
    rank = len(ctx.shape(0))
    start, end = ctx.attrs.get("start", 0), ctx.attrs.get("end")
    return [TensorType((len(range(rank)[start:end]),), np.int64)]


@OPS.register("Shape", 1, infer=_infer_shape)
@OPS.register("Shape", 15, infer=_infer_shape)
def shape(data: np.ndarray, start: int = 0, end: int | None = None) -> np.ndarray:
    """Python slicing clamps ``start``/``end`` exactly as the spec does."""
    return np.array(data.shape[start:end], dtype=np.int64)


def _infer_size(ctx: InferContext) -> list[TensorType]:
    ctx.type(0)
    return [TensorType((), np.int64)]


@OPS.register("Size", 1, infer=_infer_size)
def size(data: np.ndarray) -> np.ndarray:
    return np.array(data.size, dtype=np.int64)


# -- Expand / Tile ---------------------------------------------------------------------------


@located
def _infer_expand(ctx: InferContext) -> list[TensorType]:
    target = tuple(as_ints(ctx.require_value(1, "Expand's target shape")))
    return [TensorType(broadcast_shapes(ctx.shape(0), target), ctx.dtype(0))]


@OPS.register("Expand", 8, infer=_infer_expand)
def expand(input: np.ndarray, shape: np.ndarray) -> np.ndarray:
    """Bidirectional broadcast: the output may be bigger than ``shape`` in any dim."""
    out = broadcast_shapes(input.shape, tuple(as_ints(shape)))
    # materialised: a zero-stride broadcast view would alias elements of the output
    return np.array(np.broadcast_to(input, out))


def _tile_shape(shape: Shape, repeats: Any) -> tuple[int, ...]:
    reps = as_ints(repeats)
    if len(reps) != len(shape) or any(r < 0 for r in reps):
        raise ValueError(
            f"repeats {reps} must hold one non-negative count per dim of "
            f"the rank-{len(shape)} input"
        )
    return tuple(int(d) * r for d, r in zip(shape, reps, strict=True))


@located
def _infer_tile(ctx: InferContext) -> list[TensorType]:
    repeats = ctx.require_value(1, "Tile's repeats")
    return [TensorType(_tile_shape(ctx.shape(0), repeats), ctx.dtype(0))]


@OPS.register("Tile", 6, infer=_infer_tile)
def tile(input: np.ndarray, repeats: np.ndarray) -> np.ndarray:
    _tile_shape(input.shape, repeats)
    return np.tile(input, as_ints(repeats))


# -- Concat / Split --------------------------------------------------------------------------


@located
def _infer_concat(ctx: InferContext) -> list[TensorType]:
    if "axis" not in ctx.attrs:
        raise ValueError("attribute axis is required")
    types = [ctx.type(i) for i in range(ctx.num_inputs)]
    if not types:
        raise ValueError("needs at least one input")
    rank = types[0].rank
    axis = normalize_axis(ctx.attrs["axis"], rank, "attribute axis")
    out = list(types[0].shape)
    for t in types[1:]:
        if t.rank != rank or t.dtype != types[0].dtype:
            raise ValueError(f"inputs must share rank and dtype; got {t} and {types[0]}")
        for i, (a, b) in enumerate(zip(out, t.shape, strict=True)):
            if i != axis and a != b:
                raise ValueError(
                    f"inputs differ in dim {i} ({a} vs {b}); only the concat axis {axis} may differ"
                )
    out[axis] = sum(int(t.shape[axis]) for t in types)
    return [TensorType(tuple(out), types[0].dtype)]


@OPS.register("Concat", 4, infer=_infer_concat)
@OPS.register("Concat", 11, infer=_infer_concat)
def concat(*inputs: np.ndarray, axis: int) -> np.ndarray:
    return np.concatenate(inputs, axis=normalize_axis(axis, inputs[0].ndim, "axis"))


def split_sizes(dim: int, split: Any, num_outputs: int | None) -> list[int]:
    """Chunk sizes from an explicit ``split`` or ``num_outputs`` (last chunk may be smaller)."""
    if split is not None and np.size(split) > 0:
        sizes = as_ints(split)
        if sum(sizes) != dim or any(s < 0 for s in sizes):
            raise ValueError(f"split {sizes} does not add up to the axis size {dim}")
        return sizes
    if not num_outputs or num_outputs < 1:
        raise ValueError(
            "without 'split', the number of outputs (num_outputs) must be known; before "
            "opset 18 it is recorded from the node's output count"
        )
    chunk = -(-dim // num_outputs)
    sizes = [chunk] * (num_outputs - 1) + [dim - chunk * (num_outputs - 1)]
    if sizes[-1] < 0:
        raise ValueError(f"axis size {dim} cannot be split into {num_outputs} chunks of {chunk}")
    return sizes


@located
def _infer_split(ctx: InferContext) -> list[TensorType]:
    shape = ctx.shape(0)
    axis = normalize_axis(ctx.attrs.get("axis", 0), len(shape), "attribute axis")
    split = ctx.require_value(1, "Split's split sizes") if ctx.has(1) else ctx.attrs.get("split")
    num_outputs = ctx.attrs.get("num_outputs")
    if (split is None or np.size(split) == 0) and num_outputs is None:
        # Before opset 18 an even split takes its count from the node's outputs, which a
        # kernel cannot see: record it as the opset-18 attribute for the executor.
        num_outputs = len(ctx.node.outputs)
        ctx.node.attrs["num_outputs"] = num_outputs
    sizes = split_sizes(int(shape[axis]), split, num_outputs)
    types = []
    for s in sizes:
        dims = list(shape)
        dims[axis] = s
        types.append(TensorType(tuple(dims), ctx.dtype(0)))
    return types


@OPS.register("Split", 2, infer=_infer_split)
@OPS.register("Split", 11, infer=_infer_split)
@OPS.register("Split", 13, infer=_infer_split)
@OPS.register("Split", 18, infer=_infer_split)
def split(
    input: np.ndarray, split: Any = None, axis: int = 0, num_outputs: int | None = None
) -> tuple[np.ndarray, ...]:
    """``split`` is an attribute before opset 13 and an input from 13."""
    axis = normalize_axis(axis, input.ndim, "axis")
    sizes = split_sizes(input.shape[axis], split, num_outputs)
    return tuple(np.split(input, np.cumsum(sizes)[:-1], axis=axis))
