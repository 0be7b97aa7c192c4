"""Ops that cut, pad or re-tile tensors: Slice, Pad, DepthToSpace, SpaceToDepth.

Like :mod:`shape_ops` (whose helpers they share), each has an explicit shape formula; Slice's
starts/ends/axes/steps and Pad's pads/axes must be build-time constants.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_infer.engine.ir import Shape, TensorType
from edge_infer.engine.ops.registry import InferContext, OpList
from edge_infer.engine.ops.shape_ops import as_ints, located, normalize_axes, static_shape

OPS = OpList()


# -- Slice -----------------------------------------------------------------------------------


def slice_index(shape: Shape, starts: Any, ends: Any, axes: Any, steps: Any) -> tuple[slice, ...]:
    """Slices for ``data[...]``; Python slicing clamps (INT64 min/max ends) as ONNX does."""
    starts, ends = as_ints(starts), as_ints(ends)
    if len(starts) != len(ends):
        raise ValueError(f"starts {starts} and ends {ends} differ in length")
    rank = len(shape)
    axes_ = list(range(len(starts))) if axes is None else normalize_axes(axes, rank)
    steps_ = [1] * len(starts) if steps is None else as_ints(steps)
    if len(axes_) != len(starts) or len(steps_) != len(starts):
        raise ValueError(
            f"starts, ends, axes and steps must have the same length; got "
            f"{len(starts)}, {len(ends)}, {len(axes_)}, {len(steps_)}"
        )
    index = [slice(None)] * rank
    for a, b, e, s in zip(axes_, starts, ends, steps_, strict=True):
        if s == 0:
            raise ValueError("steps must not be 0")
        index[a] = slice(b, e, s)
    return tuple(index)


@located
def _infer_slice(ctx: InferContext) -> list[TensorType]:
    shape = ctx.shape(0)
    if ctx.num_inputs > 1:  # opset 10+: starts, ends, axes, steps are inputs
        starts = ctx.require_value(1, "Slice's starts")
        ends = ctx.require_value(2, "Slice's ends")
        axes = ctx.require_value(3, "Slice's axes") if ctx.has(3) else None
        steps = ctx.require_value(4, "Slice's steps") if ctx.has(4) else None
    else:
        starts, ends = ctx.attrs.get("starts"), ctx.attrs.get("ends")
        axes, steps = ctx.attrs.get("axes"), None
        if starts is None or ends is None:
            raise ValueError("attributes starts and ends are required")
    index = slice_index(shape, starts, ends, axes, steps)
    out = tuple(
        d if sl == slice(None) else len(range(*sl.indices(int(d))))
        for d, sl in zip(shape, index, strict=True)
    )
    return [TensorType(out, ctx.dtype(0))]


@OPS.register("Slice", 1, infer=_infer_slice)
@OPS.register("Slice", 10, infer=_infer_slice)
@OPS.register("Slice", 11, infer=_infer_slice)
def slice_(
    data: np.ndarray, starts: Any, ends: Any, axes: Any = None, steps: Any = None
) -> np.ndarray:
    """``starts``/``ends``/``axes`` are attributes in opset 1 and inputs from opset 10."""
    return data[slice_index(data.shape, starts, ends, axes, steps)]


# -- Pad -------------------------------------------------------------------------------------

_PAD_MODES = {"constant": "constant", "reflect": "reflect", "edge": "edge", "wrap": "wrap"}


def pad_widths(rank: int, pads: Any, axes: Any) -> list[tuple[int, int]]:
    """``[(begin, end)]`` per dim from ONNX ``pads`` ``[b1, b2, ..., e1, e2, ...]``."""
    pads = as_ints(pads)
    axes_ = list(range(rank)) if axes is None else normalize_axes(axes, rank)
    n = len(axes_)
    if len(pads) != 2 * n:
        raise ValueError(f"pads {pads} must hold 2 × {n} values (begins then ends)")
    widths = [(0, 0)] * rank
    for i, a in enumerate(axes_):
        widths[a] = (pads[i], pads[i + n])
    return widths


@located
def _infer_pad(ctx: InferContext) -> list[TensorType]:
    shape = static_shape(ctx.shape(0), "Pad")
    if ctx.has(1):
        pads = ctx.require_value(1, "Pad's pads")
    elif "pads" in ctx.attrs:
        pads = ctx.attrs["pads"]
    else:
        raise ValueError("pads are required")
    axes = ctx.require_value(3, "Pad's axes") if ctx.has(3) else None
    mode = ctx.attrs.get("mode", "constant")
    if mode not in _PAD_MODES:
        raise ValueError(f"attribute mode = '{mode}'; expected one of {sorted(_PAD_MODES)}")
    out = tuple(
        d + b + e for d, (b, e) in zip(shape, pad_widths(len(shape), pads, axes), strict=True)
    )
    if any(d < 0 for d in out):
        raise ValueError(f"pads {as_ints(pads)} crop more than the input {list(shape)} holds")
    return [TensorType(out, ctx.dtype(0))]


@OPS.register("Pad", 2, infer=_infer_pad)
@OPS.register("Pad", 11, infer=_infer_pad)
@OPS.register("Pad", 18, infer=_infer_pad)
@OPS.register("Pad", 19, infer=_infer_pad)
def pad(
    data: np.ndarray,
    pads: Any = None,
    constant_value: np.ndarray | None = None,
    axes: Any = None,
    mode: str = "constant",
    value: float = 0.0,
) -> np.ndarray:
    """Opset 2 passes ``pads``/``value`` as attributes; 11+ passes ``pads``/``constant_value``
    (and from 18 ``axes``) as inputs. Negative pads crop."""
    widths = pad_widths(data.ndim, pads, axes)
    crop = tuple(
        slice(max(-b, 0), d - max(-e, 0)) for d, (b, e) in zip(data.shape, widths, strict=True)
    )
    data = data[crop]
    widths = [(max(b, 0), max(e, 0)) for b, e in widths]
    if mode == "constant":
        fill = value if constant_value is None else np.asarray(constant_value).reshape(-1)[0]
        return np.pad(data, widths, mode="constant", constant_values=data.dtype.type(fill))
    if mode not in _PAD_MODES:
        raise ValueError(f"attribute mode = '{mode}'; expected one of {sorted(_PAD_MODES)}")
    return np.pad(data, widths, mode=_PAD_MODES[mode])  # type: ignore[call-overload]


# -- DepthToSpace / SpaceToDepth -------------------------------------------------------------


def _block_shape(shape: Shape, blocksize: int, to_space: bool) -> tuple[int, int, int, int]:
    if len(shape) != 4:
        raise ValueError(f"expects a rank-4 NCHW input, got rank {len(shape)}")
    n, c, h, w = static_shape(shape, "DepthToSpace/SpaceToDepth")
    b = int(blocksize)
    if b < 1:
        raise ValueError(f"attribute blocksize = {b}; expected ≥ 1")
    if to_space:
        if c % (b * b):
            raise ValueError(f"channels {c} are not divisible by blocksize² = {b * b}")
        return n, c // (b * b), h * b, w * b
    if h % b or w % b:
        raise ValueError(f"spatial size {h}x{w} is not divisible by blocksize {b}")
    return n, c * b * b, h // b, w // b


@located
def _infer_depth_to_space(ctx: InferContext) -> list[TensorType]:
    mode = ctx.attrs.get("mode", "DCR")
    if mode not in ("DCR", "CRD"):
        raise ValueError(f"attribute mode = '{mode}'; expected 'DCR' or 'CRD'")
    if "blocksize" not in ctx.attrs:
        raise ValueError("attribute blocksize is required")
    shape = _block_shape(ctx.shape(0), ctx.attrs["blocksize"], to_space=True)
    return [TensorType(shape, ctx.dtype(0))]


@OPS.register("DepthToSpace", 1, infer=_infer_depth_to_space)
@OPS.register("DepthToSpace", 11, infer=_infer_depth_to_space)
def depth_to_space(input: np.ndarray, blocksize: int, mode: str = "DCR") -> np.ndarray:
    n, c, h, w = input.shape
    b = blocksize
    out = _block_shape(input.shape, b, to_space=True)
    if mode == "DCR":
        tmp = input.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    else:
        tmp = input.reshape(n, c // (b * b), b, b, h, w).transpose(0, 1, 4, 2, 5, 3)
    return tmp.reshape(out)


@located
def _infer_space_to_depth(ctx: InferContext) -> list[TensorType]:
    if "blocksize" not in ctx.attrs:
        raise ValueError("attribute blocksize is required")
    shape = _block_shape(ctx.shape(0), ctx.attrs["blocksize"], to_space=False)
    return [TensorType(shape, ctx.dtype(0))]


@OPS.register("SpaceToDepth", 1, infer=_infer_space_to_depth)
def space_to_depth(input: np.ndarray, blocksize: int) -> np.ndarray:
    n, c, h, w = input.shape
    b = blocksize
    out = _block_shape(input.shape, b, to_space=False)
    tmp = input.reshape(n, c, h // b, b, w // b, b).transpose(0, 3, 5, 1, 2, 4)
    return tmp.reshape(out)
