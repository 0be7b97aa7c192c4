"""Reductions (ReduceSum/Mean/Max/Min/Prod/L1/L2/SumSquare/LogSum/LogSumExp), ArgMax/ArgMin, TopK.

``axes`` is an attribute up to opset 12 (ReduceSum) / 17 (the others) and an optional input
afterwards, with ``noop_with_empty_axes`` saying what an empty or omitted ``axes`` means.
Sums of float16 accumulate in float32 and are rounded once; integer reductions stay in their
dtype (wrapping like C). Reducing an empty set gives the identity of the reduction (0, 1,
-inf for max, +inf for min, as the ONNX spec says).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from edge_infer.engine.ir import TensorType
from edge_infer.engine.ops.elementwise import div
from edge_infer.engine.ops.registry import InferContext, OpList

OPS = OpList()

Reduction = Callable[[np.ndarray, tuple[int, ...], bool], np.ndarray]


# -- axes ------------------------------------------------------------------------------------


def _normalize_axes(axes: Sequence[int], rank: int) -> tuple[int, ...]:
    return tuple(sorted({int(a) + rank if int(a) < 0 else int(a) for a in axes}))


def _check_axes(ctx: InferContext, axes: Sequence[int], rank: int) -> tuple[int, ...]:
    bound = max(rank, 1)
    for a in axes:
        if not -bound <= int(a) < bound:
            ctx.fail(f"axis {int(a)} is out of range for rank {rank} (allowed [-{bound}, {bound}))")
    normalized = _normalize_axes(axes, rank)
    if len(normalized) != len(axes):
        ctx.fail(f"axes {[int(a) for a in axes]} name an axis twice")
    return normalized


def _reduced_axes(
    axes: Sequence[int] | np.ndarray | None, rank: int, noop_with_empty_axes: int
) -> tuple[int, ...]:
    """The axes to reduce. Omitted or empty ``axes`` mean all of them, or none with the noop
    flag: a reduction over no axis still applies its elementwise part (ReduceL1 gives
    ``|x|``, ReduceSumSquare ``x*x``), as onnxruntime and the reference evaluator do."""
    listed = [] if axes is None else np.asarray(axes).reshape(-1).tolist()
    if not listed:
        return () if noop_with_empty_axes else tuple(range(rank))
    return _normalize_axes(listed, rank)


def _infer_reduce(attribute_axes: bool) -> Callable[[InferContext], list[TensorType]]:
    def infer(ctx: InferContext) -> list[TensorType]:
        shape = ctx.shape(0)
        if attribute_axes:
            axes = ctx.attrs.get("axes")
        elif ctx.has(1):
            axes = ctx.require_value(1, "axes").reshape(-1).tolist()
        else:
            axes = None
        if axes:
            _check_axes(ctx, axes, len(shape))
        reduced = _reduced_axes(axes, len(shape), ctx.attrs.get("noop_with_empty_axes", 0))
        keep = ctx.attrs.get("keepdims", 1)
        out = [1 if i in reduced else d for i, d in enumerate(shape) if keep or i not in reduced]
        return [TensorType(tuple(out), ctx.dtype(0))]

    return infer


def _register(op_type: str, input_since: int, compute: Reduction) -> None:
    """Register the attribute-axes form (opset 1) and the input-axes form of a reduction."""

    def run(data: np.ndarray, axes: object, keepdims: int, noop: int) -> np.ndarray:
        reduced = _reduced_axes(axes, data.ndim, noop)  # type: ignore[arg-type]
        with np.errstate(all="ignore"):  # log(0) = -inf, overflow = inf, as the runtimes do
            out = compute(data, reduced, bool(keepdims))
        return np.asarray(out).astype(data.dtype, copy=False)

    def attribute_form(
        data: np.ndarray, axes: list[int] | None = None, keepdims: int = 1
    ) -> np.ndarray:
        return run(data, axes, keepdims, 0)

    def input_form(
        data: np.ndarray,
        axes: np.ndarray | None = None,
        keepdims: int = 1,
        noop_with_empty_axes: int = 0,
    ) -> np.ndarray:
        return run(data, axes, keepdims, noop_with_empty_axes)

    for kernel, since in ((attribute_form, 1), (input_form, input_since)):
        kernel.__name__ = f"{op_type}_{since}"
        kernel.__doc__ = (
            f"{op_type} with ``axes`` as {'an input' if since > 1 else 'an attribute'}."
        )
        OPS.register(op_type, since, infer=_infer_reduce(attribute_axes=since == 1))(kernel)


# -- the reductions --------------------------------------------------------------------------


def _acc(x: np.ndarray) -> np.dtype:
    """Accumulator dtype: float32 for float16, otherwise the input's own dtype."""
    return np.dtype(np.float32) if x.dtype == np.float16 else x.dtype


def _wide(x: np.ndarray) -> np.ndarray:
    """float16 upcast to float32 for transcendental steps; other dtypes as they are."""
    return x.astype(np.float32) if x.dtype == np.float16 else x


def _sum(x: np.ndarray, axes: tuple[int, ...], keep: bool) -> np.ndarray:
    return np.sum(x, axis=axes, keepdims=keep, dtype=_acc(x))


def _mean(x: np.ndarray, axes: tuple[int, ...], keep: bool) -> np.ndarray:
    count = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    total = _sum(x, axes, keep)
    if x.dtype.kind in "iu":  # integer mean truncates toward zero, as onnxruntime's
        return div(total, np.asarray(max(count, 1), dtype=total.dtype))
    return np.divide(total, count)


def _lowest(dtype: np.dtype) -> object:
    if dtype.kind == "f":
        return -np.inf
    return False if dtype.kind == "b" else np.iinfo(dtype).min


def _highest(dtype: np.dtype) -> object:
    if dtype.kind == "f":
        return np.inf
    return True if dtype.kind == "b" else np.iinfo(dtype).max


def _max(x: np.ndarray, axes: tuple[int, ...], keep: bool) -> np.ndarray:
    return np.max(x, axis=axes, keepdims=keep, initial=_lowest(x.dtype))


def _min(x: np.ndarray, axes: tuple[int, ...], keep: bool) -> np.ndarray:
    return np.min(x, axis=axes, keepdims=keep, initial=_highest(x.dtype))


def _prod(x: np.ndarray, axes: tuple[int, ...], keep: bool) -> np.ndarray:
    return np.prod(x, axis=axes, keepdims=keep, dtype=_acc(x))


def _l1(x: np.ndarray, axes: tuple[int, ...], keep: bool) -> np.ndarray:
    return np.sum(np.abs(x), axis=axes, keepdims=keep, dtype=_acc(x))


def _sum_square(x: np.ndarray, axes: tuple[int, ...], keep: bool) -> np.ndarray:
    wide = _wide(x)
    return np.sum(wide * wide, axis=axes, keepdims=keep)


def _l2(x: np.ndarray, axes: tuple[int, ...], keep: bool) -> np.ndarray:
    return np.sqrt(_sum_square(x, axes, keep))


def _log_sum(x: np.ndarray, axes: tuple[int, ...], keep: bool) -> np.ndarray:
    return np.log(_sum(x, axes, keep))


def _log_sum_exp(x: np.ndarray, axes: tuple[int, ...], keep: bool) -> np.ndarray:
    """``log(sum(exp(x)))`` with the max taken out first, so large inputs do not overflow."""
    wide = _wide(x) if x.dtype.kind == "f" else x.astype(np.float64)
    peak = np.max(wide, axis=axes, keepdims=True, initial=-np.inf)
    peak = np.where(np.isfinite(peak), peak, 0)
    out = np.log(np.sum(np.exp(wide - peak), axis=axes, keepdims=True)) + peak
    return out if keep else np.squeeze(out, axis=axes)


_register("ReduceSum", 13, _sum)
_register("ReduceMean", 18, _mean)
_register("ReduceMax", 18, _max)
_register("ReduceMin", 18, _min)
_register("ReduceProd", 18, _prod)
_register("ReduceL1", 18, _l1)
_register("ReduceL2", 18, _l2)
_register("ReduceSumSquare", 18, _sum_square)
_register("ReduceLogSum", 18, _log_sum)
_register("ReduceLogSumExp", 18, _log_sum_exp)


# -- ArgMax, ArgMin --------------------------------------------------------------------------


def _infer_arg(ctx: InferContext) -> list[TensorType]:
    shape = ctx.shape(0)
    if not shape:
        ctx.fail("input must have rank >= 1")
    (axis,) = _check_axes(ctx, [ctx.attrs.get("axis", 0)], len(shape))
    if shape[axis] == 0:
        ctx.fail(f"axis {axis} has size 0: there is no index to return")
    keep = ctx.attrs.get("keepdims", 1)
    out = [1 if i == axis else d for i, d in enumerate(shape) if keep or i != axis]
    return [TensorType(tuple(out), np.dtype(np.int64))]


def _arg(
    pick: Callable[..., np.ndarray], data: np.ndarray, axis: int, keepdims: int, last: int
) -> np.ndarray:
    axis = axis + data.ndim if axis < 0 else axis
    if last:
        index = data.shape[axis] - 1 - pick(np.flip(data, axis), axis=axis)
    else:
        index = pick(data, axis=axis)
    index = np.asarray(index, dtype=np.int64)
    return np.expand_dims(index, axis) if keepdims else index


def argmax(
    data: np.ndarray, axis: int = 0, keepdims: int = 1, select_last_index: int = 0
) -> np.ndarray:
    """Index of the maximum along ``axis`` (first occurrence unless ``select_last_index``)."""
    return _arg(np.argmax, data, axis, keepdims, select_last_index)


def argmin(
    data: np.ndarray, axis: int = 0, keepdims: int = 1, select_last_index: int = 0
) -> np.ndarray:
    """Index of the minimum along ``axis`` (first occurrence unless ``select_last_index``)."""
    return _arg(np.argmin, data, axis, keepdims, select_last_index)


# opset 12 added select_last_index; one kernel serves both signatures
for _since in (1, 12):
    OPS.register("ArgMax", _since, infer=_infer_arg)(argmax)
    OPS.register("ArgMin", _since, infer=_infer_arg)(argmin)


# -- TopK ------------------------------------------------------------------------------------


def _infer_topk(k_from_input: bool) -> Callable[[InferContext], list[TensorType]]:
    def infer(ctx: InferContext) -> list[TensorType]:
        shape = ctx.shape(0)
        if not shape:
            ctx.fail("input must have rank >= 1")
        (axis,) = _check_axes(ctx, [ctx.attrs.get("axis", -1)], len(shape))
        if k_from_input:
            k_value = ctx.require_value(1, "K")
            if k_value.size != 1:
                ctx.fail(f"K must hold one value, got shape {list(k_value.shape)}")
            k = int(k_value.reshape(-1)[0])
        else:
            k = ctx.attrs.get("k")
            if k is None:
                ctx.fail("attribute k is required")
        if k < 0 or (isinstance(shape[axis], int) and k > shape[axis]):
            ctx.fail(f"K={k} must be in [0, {shape[axis]}] (the size of axis {axis})")
        out = tuple(k if i == axis else d for i, d in enumerate(shape))
        return [TensorType(out, ctx.dtype(0)), TensorType(out, np.dtype(np.int64))]

    return infer


def _topk(x: np.ndarray, k: int, axis: int, largest: int) -> tuple[np.ndarray, np.ndarray]:
    """Top ``k`` along ``axis``, sorted; ties keep the smaller index first (as onnxruntime)."""
    axis = axis + x.ndim if axis < 0 else axis
    n = x.shape[axis]
    if largest:
        # a stable ascending sort of the reversed axis, read backwards, is descending with
        # ties in ascending original index; it needs no negation (unsigned ints, -0.0)
        order = np.argsort(np.flip(x, axis), axis=axis, kind="stable")
        index = (n - 1) - np.take(order, np.arange(n - 1, n - 1 - k, -1), axis=axis)
    else:
        order = np.argsort(x, axis=axis, kind="stable")
        index = np.take(order, np.arange(k), axis=axis)
    index = index.astype(np.int64, copy=False)
    return np.take_along_axis(x, index, axis=axis), index


@OPS.register("TopK", 1, infer=_infer_topk(k_from_input=False))
def topk_1(x: np.ndarray, axis: int = -1, k: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """TopK with ``k`` as an attribute (opset 1-9): largest, sorted."""
    return _topk(x, k, axis, largest=1)


@OPS.register("TopK", 10, infer=_infer_topk(k_from_input=True))
def topk_10(x: np.ndarray, k: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """TopK with ``K`` as an input (opset 10): largest, sorted."""
    return _topk(x, int(np.asarray(k).reshape(-1)[0]), axis, largest=1)


@OPS.register("TopK", 11, infer=_infer_topk(k_from_input=True))
def topk_11(
    x: np.ndarray, k: np.ndarray, axis: int = -1, largest: int = 1, sorted: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """TopK (opset 11+); results are always sorted, which ``sorted=0`` permits."""
    del sorted  # the spec leaves the order unspecified when 0
    return _topk(x, int(np.asarray(k).reshape(-1)[0]), axis, largest)
