"""Tensor creation, casting and indexing ops: Constant, ConstantOfShape, Range, Cast, CastLike,
Identity, Dropout (inference), Gather, GatherElements, GatherND, ScatterND, ScatterElements,
Trilu, OneHot, CumSum.

NonZero is deliberately absent: its output shape depends on run-time data, which a static
memory plan cannot hold. Output shapes that depend on a data input (Range's limits,
ConstantOfShape's shape, OneHot's depth) need that input to be a build-time constant.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from edge_infer.engine.dtypes import numpy_dtype
from edge_infer.engine.ir import TensorType
from edge_infer.engine.ops.registry import InferContext, OpList, same_as_input
from edge_infer.engine.ops.shape_ops import as_ints, located, normalize_axis
from edge_infer.errors import EdgeInferError

OPS = OpList()


def _check_indices(ctx: InferContext, index: int, what: str) -> None:
    if ctx.dtype(index).kind not in "iu":
        raise ValueError(f"{what} (input {index}) must be int32 or int64, got {ctx.dtype(index)}")


# -- Constant / ConstantOfShape / Range ------------------------------------------------------


def constant(
    value: np.ndarray | None = None,
    value_float: float | None = None,
    value_floats: list[float] | None = None,
    value_int: int | None = None,
    value_ints: list[int] | None = None,
    value_string: str | None = None,
    value_strings: list[str] | None = None,
    sparse_value: Any = None,
) -> np.ndarray:
    """The one attribute that is set, as an array (floats are float32, ints int64)."""
    if value_string is not None or value_strings is not None:
        raise ValueError(
            "string constants (value_string/value_strings) are not supported: "
            "edge_infer tensors are numeric"
        )
    if sparse_value is not None:
        raise ValueError("sparse_value is not supported; store the constant densely")
    if value is not None:
        return np.asarray(value)
    if value_float is not None:
        return np.array(value_float, dtype=np.float32)
    if value_floats is not None:
        return np.array(value_floats, dtype=np.float32)
    if value_int is not None:
        return np.array(value_int, dtype=np.int64)
    if value_ints is not None:
        return np.array(value_ints, dtype=np.int64)
    raise ValueError(
        "exactly one of the attributes value, value_float(s), value_int(s) must be set"
    )


@located
def _infer_constant(ctx: InferContext) -> list[TensorType]:
    given = [k for k, v in ctx.attrs.items() if k.startswith(("value", "sparse")) and v is not None]
    if len(given) != 1:
        raise ValueError(f"exactly one value attribute must be set, got {given or 'none'}")
    array = constant(**ctx.attrs)
    return [TensorType(array.shape, array.dtype)]


OPS.register("Constant", 1, infer=_infer_constant)(constant)
OPS.register("Constant", 12, infer=_infer_constant)(constant)


def _target_shape(shape: Any) -> tuple[int, ...]:
    dims = tuple(as_ints(shape))
    if any(d < 0 for d in dims):
        raise ValueError(f"shape {list(dims)} has a negative dim")
    return dims


@located
def _infer_constant_of_shape(ctx: InferContext) -> list[TensorType]:
    shape = _target_shape(ctx.require_value(0, "ConstantOfShape's shape"))
    value = ctx.attrs.get("value")
    if value is not None and np.size(value) != 1:
        raise ValueError(f"attribute value must hold one element, got shape {np.shape(value)}")
    dtype = np.float32 if value is None else np.asarray(value).dtype
    return [TensorType(shape, dtype)]


@OPS.register("ConstantOfShape", 9, infer=_infer_constant_of_shape)
def constant_of_shape(input: np.ndarray, value: np.ndarray | None = None) -> np.ndarray:
    fill = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    return np.full(_target_shape(input), fill[0], dtype=fill.dtype)


def _range_count(start: np.ndarray, limit: np.ndarray, delta: np.ndarray) -> int:
    s, lim, d = (np.asarray(v).reshape(-1)[0].item() for v in (start, limit, delta))
    if d == 0:
        raise ValueError("delta must not be 0")
    if isinstance(s, int) and isinstance(lim, int) and isinstance(d, int):
        return max(-((s - lim) // d), 0)  # exact ceil((limit - start) / delta)
    return max(math.ceil((lim - s) / d), 0)


@located
def _infer_range(ctx: InferContext) -> list[TensorType]:
    values = [
        ctx.require_value(i, f"Range's {n}") for i, n in enumerate(("start", "limit", "delta"))
    ]
    if len({np.asarray(v).dtype for v in values}) != 1:
        raise ValueError("start, limit and delta must share one dtype")
    return [TensorType((_range_count(*values),), np.asarray(values[0]).dtype)]


@OPS.register("Range", 11, infer=_infer_range)
def range_(start: np.ndarray, limit: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """``start + i * delta`` for ``i < ceil((limit - start) / delta)``, in start's dtype."""
    n = _range_count(start, limit, delta)
    dtype = np.asarray(start).dtype
    s, d = np.asarray(start).reshape(-1)[0].item(), np.asarray(delta).reshape(-1)[0].item()
    if dtype.kind in "iu":
        return (s + np.arange(n, dtype=np.int64) * d).astype(dtype)
    return (s + np.arange(n, dtype=np.float64) * d).astype(dtype)


# -- Cast / CastLike / Identity / Dropout ----------------------------------------------------


def _cast_dtype(to: int) -> np.dtype:
    try:
        return numpy_dtype(int(to), "Cast")
    except EdgeInferError as exc:
        raise ValueError(f"attribute to: {exc}") from None


@located
def _infer_cast(ctx: InferContext) -> list[TensorType]:
    if "to" not in ctx.attrs:
        raise ValueError("attribute to is required")
    return [TensorType(ctx.shape(0), _cast_dtype(ctx.attrs["to"]))]


@OPS.register("Cast", 6, infer=_infer_cast)
@OPS.register("Cast", 19, infer=_infer_cast)
def cast(input: np.ndarray, to: int, saturate: int = 1) -> np.ndarray:
    """Float → int truncates toward zero (as onnxruntime); ``saturate`` only concerns float8."""
    return np.asarray(input).astype(_cast_dtype(to))


def _infer_cast_like(ctx: InferContext) -> list[TensorType]:
    return [TensorType(ctx.shape(0), ctx.dtype(1))]


@OPS.register("CastLike", 15, infer=_infer_cast_like)
@OPS.register("CastLike", 19, infer=_infer_cast_like)
def cast_like(input: np.ndarray, target_type: np.ndarray, saturate: int = 1) -> np.ndarray:
    return np.asarray(input).astype(target_type.dtype)


@OPS.register("Identity", 1, infer=same_as_input(0))
def identity(input: np.ndarray) -> np.ndarray:
    return input


def _dropout_infer(mask_dtype: Any | None) -> Any:
    @located
    def infer(ctx: InferContext) -> list[TensorType]:
        if ctx.has(2):
            mode = ctx.require_value(2, "Dropout's training_mode")
            if bool(np.asarray(mode).reshape(-1)[0]):
                raise ValueError(
                    "training_mode = true is not supported: edge_infer runs "
                    "inference only; export the model in eval mode"
                )
        types = [ctx.type(0)]
        if len(ctx.node.outputs) > 1:
            types.append(TensorType(ctx.shape(0), mask_dtype or ctx.dtype(0)))
        return types

    return infer


def _dropout(data: np.ndarray, training_mode: Any, mask_dtype: Any) -> tuple[np.ndarray, ...]:
    if training_mode is not None and bool(np.asarray(training_mode).reshape(-1)[0]):
        raise ValueError("Dropout training_mode = true is not supported (inference only)")
    return data, np.ones(data.shape, dtype=mask_dtype)


@OPS.register("Dropout", 7, infer=_dropout_infer(None))
def dropout_7(data: np.ndarray, ratio: float = 0.5) -> tuple[np.ndarray, ...]:
    """Inference: output = input; the opset-7 mask has the input's dtype (all ones)."""
    return _dropout(data, None, data.dtype)


@OPS.register("Dropout", 10, infer=_dropout_infer(np.bool_))
def dropout_10(data: np.ndarray, ratio: float = 0.5) -> tuple[np.ndarray, ...]:
    """Inference: output = input, mask all True."""
    return _dropout(data, None, np.bool_)


@OPS.register("Dropout", 12, infer=_dropout_infer(np.bool_))
def dropout_12(
    data: np.ndarray,
    ratio: np.ndarray | None = None,
    training_mode: np.ndarray | None = None,
    seed: int | None = None,
) -> tuple[np.ndarray, ...]:
    """Inference: output = input, mask all True; ``training_mode`` true is refused."""
    return _dropout(data, training_mode, np.bool_)


# -- Gather family ---------------------------------------------------------------------------


@located
def _infer_gather(ctx: InferContext) -> list[TensorType]:
    data, indices = ctx.shape(0), ctx.shape(1)
    _check_indices(ctx, 1, "indices")
    axis = normalize_axis(ctx.attrs.get("axis", 0), len(data), "attribute axis")
    return [TensorType((*data[:axis], *indices, *data[axis + 1 :]), ctx.dtype(0))]


@OPS.register("Gather", 1, infer=_infer_gather)
@OPS.register("Gather", 11, infer=_infer_gather)
def gather(data: np.ndarray, indices: np.ndarray, axis: int = 0) -> np.ndarray:
    """Negative indices count from the end (opset 11)."""
    return np.take(data, indices, axis=normalize_axis(axis, data.ndim, "axis"))


def _element_index(indices: np.ndarray, axis: int, dim: int) -> tuple[np.ndarray, ...]:
    """Broadcastable index arrays: ``indices`` on ``axis``, the position elsewhere."""
    rank = indices.ndim
    index: list[np.ndarray] = []
    for d, n in enumerate(indices.shape):
        if d == axis:
            ind = indices.astype(np.int64)
            if ind.size and (ind.min() < -dim or ind.max() >= dim):
                raise ValueError(f"indices out of range [{-dim}, {dim}) on axis {axis}")
            index.append(np.where(ind < 0, ind + dim, ind))
        else:
            index.append(np.arange(n).reshape([n if k == d else 1 for k in range(rank)]))
    return tuple(index)


@located
def _infer_gather_elements(ctx: InferContext) -> list[TensorType]:
    _check_indices(ctx, 1, "indices")
    rank = len(ctx.shape(0))
    if len(ctx.shape(1)) != rank:
        raise ValueError(f"indices must have the data's rank {rank}")
    normalize_axis(ctx.attrs.get("axis", 0), rank, "attribute axis")
    return [TensorType(ctx.shape(1), ctx.dtype(0))]


@OPS.register("GatherElements", 11, infer=_infer_gather_elements)
def gather_elements(data: np.ndarray, indices: np.ndarray, axis: int = 0) -> np.ndarray:
    axis = normalize_axis(axis, data.ndim, "axis")
    return data[_element_index(indices, axis, data.shape[axis])]


def _nd_index(data_shape: tuple[int, ...], indices: np.ndarray, batch_dims: int) -> tuple:
    """Index tuple into ``data`` reshaped to ``(prod(batch), *rest)``, one row per lookup."""
    k = indices.shape[-1]
    if k > len(data_shape) - batch_dims:
        raise ValueError(f"indices' last dim {k} exceeds the data's rank minus batch_dims")
    nbatch = math.prod(data_shape[:batch_dims])
    flat = indices.reshape(nbatch, -1, k).astype(np.int64)
    batch = np.arange(nbatch).reshape(nbatch, 1)
    return (batch, *(flat[..., j] for j in range(k)))


@located
def _infer_gather_nd(ctx: InferContext) -> list[TensorType]:
    _check_indices(ctx, 1, "indices")
    data, indices = ctx.shape(0), ctx.shape(1)
    b = int(ctx.attrs.get("batch_dims", 0))
    if not indices or not 0 <= b < min(len(data), len(indices)):
        raise ValueError(f"attribute batch_dims = {b} must be below both ranks")
    if tuple(data[:b]) != tuple(indices[:b]):
        raise ValueError(f"the first batch_dims = {b} dims of data and indices must match")
    k = int(indices[-1])
    if not 1 <= k <= len(data) - b:
        raise ValueError(f"indices' last dim {k} must be in 1..{len(data) - b}")
    return [TensorType((*indices[:-1], *data[b + k :]), ctx.dtype(0))]


@OPS.register("GatherND", 11, infer=_infer_gather_nd)
@OPS.register("GatherND", 12, infer=_infer_gather_nd)
def gather_nd(data: np.ndarray, indices: np.ndarray, batch_dims: int = 0) -> np.ndarray:
    b, k = batch_dims, indices.shape[-1]
    flat = data.reshape(math.prod(data.shape[:b]), *data.shape[b:])
    out = flat[_nd_index(data.shape, indices, b)]
    return out.reshape((*indices.shape[:-1], *data.shape[b + k :]))


# -- Scatter family --------------------------------------------------------------------------

_SCATTER_UFUNCS = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}


def _scatter(out: np.ndarray, index: tuple, updates: np.ndarray, reduction: str) -> np.ndarray:
    if reduction == "none":
        out[index] = updates
    elif reduction in _SCATTER_UFUNCS:
        _SCATTER_UFUNCS[reduction].at(out, index, updates)
    else:
        raise ValueError(
            f"attribute reduction = '{reduction}'; expected one of {['none', *_SCATTER_UFUNCS]}"
        )
    return out


@located
def _infer_scatter_nd(ctx: InferContext) -> list[TensorType]:
    _check_indices(ctx, 1, "indices")
    data, indices, updates = ctx.shape(0), ctx.shape(1), ctx.shape(2)
    k = int(indices[-1]) if indices else 0
    want = (*indices[:-1], *data[k:])
    if not indices or k > len(data) or tuple(updates) != want:
        raise ValueError(f"updates must have shape indices[:-1] + data[k:] = {list(want)}")
    return [ctx.type(0)]


@OPS.register("ScatterND", 11, infer=_infer_scatter_nd)
@OPS.register("ScatterND", 16, infer=_infer_scatter_nd)
@OPS.register("ScatterND", 18, infer=_infer_scatter_nd)
def scatter_nd(
    data: np.ndarray, indices: np.ndarray, updates: np.ndarray, reduction: str = "none"
) -> np.ndarray:
    k = indices.shape[-1]
    index = tuple(indices.reshape(-1, k).astype(np.int64).T)
    upd = updates.reshape(-1, *data.shape[k:])
    return _scatter(np.array(data, copy=True), index, upd, reduction)


@located
def _infer_scatter_elements(ctx: InferContext) -> list[TensorType]:
    _check_indices(ctx, 1, "indices")
    rank = len(ctx.shape(0))
    if len(ctx.shape(1)) != rank or ctx.shape(1) != ctx.shape(2):
        raise ValueError("indices and updates must have the same shape and the data's rank")
    normalize_axis(ctx.attrs.get("axis", 0), rank, "attribute axis")
    return [ctx.type(0)]


@OPS.register("ScatterElements", 11, infer=_infer_scatter_elements)
@OPS.register("ScatterElements", 16, infer=_infer_scatter_elements)
@OPS.register("ScatterElements", 18, infer=_infer_scatter_elements)
def scatter_elements(
    data: np.ndarray,
    indices: np.ndarray,
    updates: np.ndarray,
    axis: int = 0,
    reduction: str = "none",
) -> np.ndarray:
    axis = normalize_axis(axis, data.ndim, "axis")
    index = _element_index(indices, axis, data.shape[axis])
    return _scatter(np.array(data, copy=True), index, updates, reduction)


# -- Trilu / OneHot / CumSum -----------------------------------------------------------------


@located
def _infer_trilu(ctx: InferContext) -> list[TensorType]:
    if len(ctx.shape(0)) < 2:
        raise ValueError("input must have rank ≥ 2")
    return [ctx.type(0)]


@OPS.register("Trilu", 14, infer=_infer_trilu)
def trilu(input: np.ndarray, k: np.ndarray | None = None, upper: int = 1) -> np.ndarray:
    diag = 0 if k is None else int(np.asarray(k).reshape(-1)[0])
    return np.triu(input, diag) if upper else np.tril(input, diag)


def _one_hot_depth(depth: Any) -> int:
    d = int(np.asarray(depth).reshape(-1)[0])
    if d < 1:
        raise ValueError(f"depth must be ≥ 1, got {d}")
    return d


@located
def _infer_one_hot(ctx: InferContext) -> list[TensorType]:
    depth = _one_hot_depth(ctx.require_value(1, "OneHot's depth"))
    shape = ctx.shape(0)
    axis = normalize_axis(ctx.attrs.get("axis", -1), len(shape) + 1, "attribute axis")
    if tuple(ctx.shape(2)) != (2,):
        raise ValueError("values must be a 2-element tensor [off_value, on_value]")
    return [TensorType((*shape[:axis], depth, *shape[axis:]), ctx.dtype(2))]


@OPS.register("OneHot", 9, infer=_infer_one_hot)
@OPS.register("OneHot", 11, infer=_infer_one_hot)
def one_hot(
    indices: np.ndarray, depth: np.ndarray, values: np.ndarray, axis: int = -1
) -> np.ndarray:
    """Negative indices count from ``depth``; out-of-range indices give all off values."""
    d = _one_hot_depth(depth)
    axis = normalize_axis(axis, indices.ndim + 1, "axis")
    ind = np.asarray(indices).astype(np.int64)
    ind = np.where(ind < 0, ind + d, ind)
    hot = np.expand_dims(ind, axis) == np.arange(d).reshape(
        [d if i == axis else 1 for i in range(indices.ndim + 1)]
    )
    return np.where(hot, values[1], values[0]).astype(values.dtype)


@OPS.register("CumSum", 11, infer=same_as_input(0))
def cumsum(x: np.ndarray, axis: np.ndarray, exclusive: int = 0, reverse: int = 0) -> np.ndarray:
    a = normalize_axis(int(np.asarray(axis).reshape(-1)[0]), x.ndim, "axis")
    y = np.flip(x, a) if reverse else x
    y = np.cumsum(y, axis=a, dtype=x.dtype)
    if exclusive:
        zero = np.zeros_like(np.take(y, [0], axis=a))
        y = np.concatenate([zero, np.take(y, np.arange(y.shape[a] - 1), axis=a)], axis=a)
    return np.flip(y, a) if reverse else y
