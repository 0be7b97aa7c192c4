"""Pooling: MaxPool, AveragePool, LpPool, GlobalAveragePool, GlobalMaxPool and LRN.

Windowed pools loop over kernel taps (a handful) and work on whole strided views of the padded
input per tap, so no Python loop runs over pixels. Window geometry (auto_pad, ceil_mode,
dilations) is :func:`edge_infer.engine.ops.conv.window_geometry`, shared with Conv.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_infer.engine.ir import TensorType
from edge_infer.engine.ops.conv import (
    accumulation_dtype,
    pad_spatial,
    padded_end,
    tap_view,
    window_geometry,
)
from edge_infer.engine.ops.registry import Infer, InferContext, OpList, same_as_input
from edge_infer.errors import ShapeInferenceError

OPS = OpList()


@dataclass
class _Window:
    """A resolved pooling window over the spatial axes of an (N, C, ...) input."""

    kernel: list[int]
    strides: list[int]
    dilations: list[int]
    begin: list[int]
    end: list[int]  # explicit (or auto) padding, without what ceil_mode windows add
    out: list[int]

    def taps(self) -> Iterator[tuple[int, ...]]:
        return itertools.product(*(range(k) for k in self.kernel))

    def pad(self, x: np.ndarray, value: float) -> np.ndarray:
        end = padded_end(
            x.shape[2:], self.kernel, self.strides, self.dilations, self.begin, self.end, self.out
        )
        return pad_spatial(x, self.begin, end, value)

    def view(self, xp: np.ndarray, tap: Sequence[int]) -> np.ndarray:
        return tap_view(xp, tap, self.strides, self.dilations, self.out)


def _window(op: str, shape: Sequence[int], attrs: dict[str, Any]) -> _Window:
    kernel = attrs.get("kernel_shape")
    if not kernel:
        raise ShapeInferenceError(f"{op}: attribute 'kernel_shape' is required")
    if len(shape) < 3:
        raise ShapeInferenceError(f"{op}: X must be (N, C, spatial...), got shape {list(shape)}")
    kernel = [int(k) for k in kernel]
    strides, dilations, begin, end, out = window_geometry(
        op,
        shape[2:],
        kernel,
        attrs.get("strides"),
        attrs.get("dilations"),
        attrs.get("pads"),
        attrs.get("auto_pad", "NOTSET"),
        int(attrs.get("ceil_mode", 0)),
    )
    return _Window(kernel, strides, dilations, begin, end, out)


def _pool_infer(op: str, with_indices: bool = False) -> Infer:
    def infer(ctx: InferContext) -> list[TensorType]:
        x = ctx.shape(0)
        try:
            window = _window(op, x, ctx.attrs)
        except ShapeInferenceError as exc:
            ctx.fail(str(exc))
        y = TensorType((*x[:2], *window.out), ctx.dtype(0))
        if with_indices and len(ctx.node.outputs) > 1:
            return [y, TensorType(y.shape, np.dtype(np.int64))]
        return [y]

    return infer


@OPS.register("MaxPool", 1, infer=_pool_infer("MaxPool", with_indices=True))
def max_pool(
    X: np.ndarray,
    *,
    auto_pad: str = "NOTSET",
    ceil_mode: int = 0,
    dilations: list[int] | None = None,
    kernel_shape: list[int] | None = None,
    pads: list[int] | None = None,
    storage_order: int = 0,
    strides: list[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Max over windows; returns ``(Y, Indices)`` (flat int64 input indices, first max wins).

    The executor drops ``Indices`` when the node does not ask for it.
    """
    w = _window(
        "MaxPool",
        X.shape,
        dict(
            kernel_shape=kernel_shape,
            strides=strides,
            dilations=dilations,
            pads=pads,
            auto_pad=auto_pad,
            ceil_mode=ceil_mode,
        ),
    )
    x = np.asarray(X)
    low = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    xp = w.pad(x, low)
    taps = list(w.taps())
    y = w.view(xp, taps[0]).copy()
    for tap in taps[1:]:
        np.maximum(y, w.view(xp, tap), out=y)
    # winning tap: visiting taps last to first leaves the first one that holds the maximum
    best = np.zeros(y.shape, dtype=np.int64)
    hit = np.empty(y.shape, dtype=bool)
    for k in range(len(taps) - 1, -1, -1):
        np.equal(w.view(xp, taps[k]), y, out=hit)
        np.putmask(best, hit, k)
    # flat index of the winning tap in the unpadded input, row- or column-major over space
    coords = np.unravel_index(best, w.kernel)
    spatial = x.shape[2:]
    rank = len(spatial)
    flat = np.zeros_like(best)
    axes = range(rank) if storage_order == 0 else reversed(range(rank))
    for axis in axes:
        position = np.arange(w.out[axis]).reshape((-1,) + (1,) * (rank - axis - 1))
        coord = position * w.strides[axis] + coords[axis] * w.dilations[axis] - w.begin[axis]
        flat = flat * spatial[axis] + coord
    channel = np.arange(x.shape[0] * x.shape[1]).reshape(x.shape[:2] + (1,) * rank)
    return y, flat + channel * int(np.prod(spatial))


def _window_sum(
    op: str, X: np.ndarray, attrs: dict[str, Any], transform: Callable | None = None
) -> tuple[np.ndarray, _Window]:
    """Sum of ``transform(x)`` over every zero-padded window, in the accumulation dtype."""
    w = _window(op, X.shape, attrs)
    x = np.asarray(X, dtype=accumulation_dtype(X.dtype))
    xp = w.pad(x if transform is None else transform(x), 0)
    total = np.zeros((*x.shape[:2], *w.out), dtype=x.dtype)
    for tap in w.taps():
        total += w.view(xp, tap)
    return total, w


@OPS.register("AveragePool", 1, infer=_pool_infer("AveragePool"))
def average_pool(
    X: np.ndarray,
    *,
    auto_pad: str = "NOTSET",
    ceil_mode: int = 0,
    count_include_pad: int = 0,
    dilations: list[int] | None = None,
    kernel_shape: list[int] | None = None,
    pads: list[int] | None = None,
    strides: list[int] | None = None,
) -> np.ndarray:
    """Mean over windows; padding is counted only with ``count_include_pad`` (ceil never)."""
    total, w = _window_sum(
        "AveragePool",
        X,
        dict(
            kernel_shape=kernel_shape,
            strides=strides,
            dilations=dilations,
            pads=pads,
            auto_pad=auto_pad,
            ceil_mode=ceil_mode,
        ),
    )
    # the divisor is separable: a product over axes of the number of taps that land in the
    # input (with count_include_pad: in the input or its explicit padding)
    rank = len(w.out)
    count = np.ones((1,) * (rank + 2), dtype=total.dtype)
    for axis, size in enumerate(X.shape[2:]):
        start = np.arange(w.out[axis])[:, None] * w.strides[axis] - w.begin[axis]
        taps = start + np.arange(w.kernel[axis])[None, :] * w.dilations[axis]
        lo, hi = (-w.begin[axis], size + w.end[axis]) if count_include_pad else (0, size)
        shape = [1] * (rank + 2)
        shape[axis + 2] = w.out[axis]
        count = count * ((taps >= lo) & (taps < hi)).sum(axis=1).reshape(shape)
    return (total / count).astype(X.dtype)


@OPS.register("LpPool", 2, infer=_pool_infer("LpPool"))
def lp_pool(
    X: np.ndarray,
    *,
    auto_pad: str = "NOTSET",
    ceil_mode: int = 0,
    dilations: list[int] | None = None,
    kernel_shape: list[int] | None = None,
    p: int = 2,
    pads: list[int] | None = None,
    strides: list[int] | None = None,
) -> np.ndarray:
    """``(sum |x|^p)^(1/p)`` over zero-padded windows."""
    total, _ = _window_sum(
        "LpPool",
        X,
        dict(
            kernel_shape=kernel_shape,
            strides=strides,
            dilations=dilations,
            pads=pads,
            auto_pad=auto_pad,
            ceil_mode=ceil_mode,
        ),
        transform=lambda x: np.abs(x) ** p,
    )
    return (total ** (1.0 / p)).astype(X.dtype)


def _global_infer(ctx: InferContext) -> list[TensorType]:
    x = ctx.shape(0)
    if len(x) < 3:
        ctx.fail(f"X must be (N, C, spatial...), got shape {x}")
    return [TensorType((*x[:2], *([1] * (len(x) - 2))), ctx.dtype(0))]


@OPS.register("GlobalAveragePool", 1, infer=_global_infer)
def global_average_pool(X: np.ndarray) -> np.ndarray:
    axes = tuple(range(2, X.ndim))
    return np.mean(X, axis=axes, keepdims=True, dtype=accumulation_dtype(X.dtype)).astype(X.dtype)


@OPS.register("GlobalMaxPool", 1, infer=_global_infer)
def global_max_pool(X: np.ndarray) -> np.ndarray:
    return np.max(X, axis=tuple(range(2, X.ndim)), keepdims=True)


@OPS.register("GlobalLpPool", 2, infer=_global_infer)
def global_lp_pool(X: np.ndarray, *, p: int = 2) -> np.ndarray:
    x = np.abs(np.asarray(X, dtype=accumulation_dtype(X.dtype))) ** p
    return (np.sum(x, axis=tuple(range(2, X.ndim)), keepdims=True) ** (1.0 / p)).astype(X.dtype)


def _lrn_infer(ctx: InferContext) -> list[TensorType]:
    size = int(ctx.attrs.get("size", 0))
    if size < 1:
        ctx.fail(f"attribute 'size' must be >= 1, got {size}")
    if len(ctx.shape(0)) < 2:
        ctx.fail("X must be (N, C, ...)")
    return same_as_input(0)(ctx)


@OPS.register("LRN", 1, infer=_lrn_infer)
def lrn(
    X: np.ndarray,
    *,
    alpha: float = 1e-4,
    beta: float = 0.75,
    bias: float = 1.0,
    size: int | None = None,
) -> np.ndarray:
    """Local response normalisation across channels."""
    if not size or size < 1:
        raise ShapeInferenceError(f"LRN: attribute 'size' must be >= 1, got {size}")
    x = np.asarray(X, dtype=accumulation_dtype(X.dtype))
    before, after = (size - 1) // 2, size - 1 - (size - 1) // 2
    widths = [(0, 0)] * x.ndim
    widths[1] = (before, after)
    squares = np.pad(x * x, widths)
    channels = x.shape[1]
    total = np.zeros_like(x)
    for k in range(size):
        total += squares[:, k : k + channels]
    scale = (bias + (alpha / size) * total) ** beta
    return (x / scale).astype(X.dtype)
