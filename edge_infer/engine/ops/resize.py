"""Resize (opsets 10, 11, 13, 18, 19) and the deprecated Upsample (opsets 7 and 9).

Interpolation is separable: for every resized axis the output coordinates are mapped to input
coordinates (``coordinate_transformation_mode``), turned into a few taps (indices + weights:
1 for nearest, 2 for linear, 4 for cubic; with ``antialias`` the linear/cubic filter is
stretched by 1/scale when downsampling), and applied with one gather per tap along that axis.
No Python loop runs over pixels.

Output shapes come from ``scales`` or ``sizes``, which must be constants at build time.
Coordinates are computed in float64 and values are interpolated in float32 (float64 for
float64 and integer data); integer data is rounded to nearest and saturated after linear/cubic
interpolation, as the ONNX reference does (onnxruntime truncates instead).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge_infer.engine.ir import TensorType
from edge_infer.engine.ops.registry import Infer, InferContext, OpList
from edge_infer.errors import ShapeInferenceError

OPS = OpList()

MODES = ("nearest", "linear", "cubic")
COORDINATE_MODES = (
    "half_pixel",
    "half_pixel_symmetric",
    "pytorch_half_pixel",
    "align_corners",
    "asymmetric",
    "tf_crop_and_resize",
    "tf_half_pixel_for_nn",
)
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
ASPECT_POLICIES = ("stretch", "not_larger", "not_smaller")


def _present(array: np.ndarray | None) -> np.ndarray | None:
    """Optional inputs may be omitted or given as empty tensors; both mean 'absent'."""
    if array is None or np.size(array) == 0:
        return None
    return np.asarray(array)


@dataclass
class ResizePlan:
    """Output shape and the per-axis scale of a resize.

    ``lengths`` is the resized length the coordinate transforms divide by: the requested size,
    or ``scale * input length`` — fractional when the output was floored from a scale. The
    ONNX reference and conformance data use it for align_corners, tf_crop_and_resize and
    half_pixel_symmetric; onnxruntime (and PyTorch) use the integer output length instead,
    which differs only when ``scale * input length`` is not an integer.
    """

    out: list[int]
    scales: list[float]
    axes: list[int]  # the axes named by scales/sizes/roi (all of them by default)
    lengths: list[float]


def plan_resize(
    op: str,
    shape: Sequence[int],
    scales: np.ndarray | None,
    sizes: np.ndarray | None,
    axes: Sequence[int] | None = None,
    keep_aspect_ratio_policy: str = "stretch",
) -> ResizePlan:
    """Resolve the output shape from ``scales`` or ``sizes`` (ONNX rules, opsets 10-19)."""
    rank = len(shape)
    if axes:
        if any(not -rank <= a < rank for a in axes):
            raise ShapeInferenceError(f"{op}: axes {list(axes)} out of range for rank {rank}")
        axes = [int(a) % rank for a in axes]
        if len(set(axes)) != len(axes):
            raise ShapeInferenceError(f"{op}: axes {list(axes)} repeat an axis")
    else:
        axes = list(range(rank))
    scales, sizes = _present(scales), _present(sizes)
    if (scales is None) == (sizes is None):
        raise ShapeInferenceError(
            f"{op}: exactly one of 'scales' and 'sizes' must be given (non-empty)"
        )
    given = scales if scales is not None else sizes
    if given.ndim != 1 or given.size != len(axes):  # type: ignore[union-attr]
        raise ShapeInferenceError(
            f"{op}: {'scales' if scales is not None else 'sizes'} has shape "
            f"{list(given.shape)}, expected [{len(axes)}] (one per resized axis)"  # type: ignore[union-attr]
        )
    out = [int(d) for d in shape]
    factors = [1.0] * rank
    if scales is not None:
        if np.any(scales <= 0):
            raise ShapeInferenceError(f"{op}: scales must be > 0, got {scales.tolist()}")
        for axis, scale in zip(axes, scales.astype(np.float32).tolist(), strict=True):
            factors[axis] = scale
            # float32 product, as onnxruntime and ONNX shape inference compute it
            out[axis] = math.floor(float(np.float32(shape[axis]) * np.float32(scale)))
        lengths = [float(d) * f for d, f in zip(shape, factors, strict=True)]
        return ResizePlan(out, factors, axes, lengths)
    if keep_aspect_ratio_policy not in ASPECT_POLICIES:
        raise ShapeInferenceError(
            f"{op}: keep_aspect_ratio_policy must be one of {ASPECT_POLICIES}, got "
            f"{keep_aspect_ratio_policy!r}"
        )
    requested = [int(s) for s in sizes.tolist()]  # type: ignore[union-attr]
    if min(requested) < 0:
        raise ShapeInferenceError(f"{op}: sizes must be >= 0, got {requested}")
    if keep_aspect_ratio_policy == "stretch":
        for axis, size in zip(axes, requested, strict=True):
            out[axis] = size
            factors[axis] = size / shape[axis]
        return ResizePlan(out, factors, axes, [float(d) for d in out])
    ratios = [size / shape[axis] for axis, size in zip(axes, requested, strict=True)]
    scale = min(ratios) if keep_aspect_ratio_policy == "not_larger" else max(ratios)
    for axis in axes:
        out[axis] = int(scale * shape[axis] + 0.5)  # round half up, per the spec
        factors[axis] = scale
    lengths = [float(d) * f for d, f in zip(shape, factors, strict=True)]
    return ResizePlan(out, factors, axes, lengths)


def _source_coords(
    mode: str,
    out_len: int,
    in_len: int,
    scale: float,
    length: float,
    roi: tuple[float, float],
) -> np.ndarray:
    """Input coordinate of every output index along one axis (``length``: see ResizePlan)."""
    y = np.arange(out_len, dtype=np.float64)
    if mode == "asymmetric":
        return y / scale
    if mode == "half_pixel":
        return (y + 0.5) / scale - 0.5
    if mode == "pytorch_half_pixel":
        # the spec and onnxruntime use 0 for a length-1 output (the reference evaluator -0.5)
        return (y + 0.5) / scale - 0.5 if out_len > 1 else np.zeros(out_len)
    if mode == "tf_half_pixel_for_nn":
        return (y + 0.5) / scale
    if mode == "align_corners":
        return y * (in_len - 1) / (length - 1) if length != 1 else np.zeros(out_len)
    if mode == "half_pixel_symmetric":
        adjustment = out_len / length
        offset = in_len / 2 * (1 - adjustment)
        return offset + (y + 0.5) / scale - 0.5
    # tf_crop_and_resize
    start, end = roi
    if length == 1:
        return np.full(out_len, 0.5 * (start + end) * (in_len - 1))
    return start * (in_len - 1) + y * (end - start) * (in_len - 1) / (length - 1)


def _nearest_index(x: np.ndarray, nearest_mode: str, scale: float) -> np.ndarray:
    if nearest_mode == "round_prefer_floor":
        return np.ceil(x - 0.5)
    if nearest_mode == "round_prefer_ceil":
        return np.floor(x + 0.5)
    if nearest_mode == "floor":
        return np.floor(x)
    if nearest_mode == "ceil":
        return np.ceil(x)
    # "simple" (Resize-10, Upsample): onnxruntime truncates, or takes ceil when downsampling
    return np.ceil(x) if scale < 1 else np.floor(x)


def _cubic_weights(ratio: np.ndarray, a: float) -> np.ndarray:
    """Keys cubic convolution weights of the taps at floor(x) - 1 .. floor(x) + 2."""

    def near(t: np.ndarray) -> np.ndarray:  # |t| <= 1
        return ((a + 2) * t - (a + 3)) * t * t + 1

    def far(t: np.ndarray) -> np.ndarray:  # 1 < |t| < 2
        return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a

    return np.stack([far(ratio + 1), near(ratio), near(1 - ratio), far(2 - ratio)], axis=1)


def _antialias_taps(
    mode: str, x: np.ndarray, scale: float, a: float
) -> tuple[np.ndarray, np.ndarray]:
    """Taps of a linear/cubic filter stretched by 1/scale when downsampling (antialias=1)."""
    s = min(scale, 1.0)
    support = 1.0 if mode == "linear" else 2.0
    start = math.floor(-support / s) + 1
    offsets = np.arange(start, 2 - start)
    base = np.floor(x)
    t = np.abs((offsets[None, :] - (x - base)[:, None]) * s)
    if mode == "linear":
        weights = np.clip(1 - t, 0, 1)
    else:
        near = ((a + 2) * t - (a + 3)) * t * t + 1
        far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
        weights = np.where(t <= 1, near, np.where(t < 2, far, 0.0))
    weights = weights / weights.sum(axis=1, keepdims=True)
    return base[:, None] + offsets[None, :], weights


def axis_taps(
    mode: str,
    x: np.ndarray,
    in_len: int,
    scale: float,
    nearest_mode: str,
    cubic_coeff_a: float,
    exclude_outside: int,
    antialias: int = 0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """``(indices, weights)`` of shape (out, taps); weights ``None`` for nearest."""
    if mode == "nearest":
        index = _nearest_index(x, nearest_mode, scale)
        return np.clip(index, 0, in_len - 1).astype(np.intp)[:, None], None
    if antialias:
        index, weights = _antialias_taps(mode, x, scale, cubic_coeff_a)
    elif mode == "linear":
        x = np.clip(x, 0, in_len - 1)
        base = np.floor(x)
        ratio = x - base
        index = base[:, None] + np.arange(2)[None, :]
        weights = np.stack([1 - ratio, ratio], axis=1)
    else:
        base = np.floor(x)
        index = base[:, None] + np.arange(-1, 3)[None, :]
        weights = _cubic_weights(x - base, cubic_coeff_a)
    if exclude_outside and (mode == "cubic" or antialias):
        weights = np.where((index < 0) | (index >= in_len), 0.0, weights)
        weights = weights / weights.sum(axis=1, keepdims=True)
    return np.clip(index, 0, in_len - 1).astype(np.intp), weights


def _apply_axis(
    data: np.ndarray, axis: int, index: np.ndarray, weights: np.ndarray | None
) -> np.ndarray:
    if weights is None:
        return np.take(data, index[:, 0], axis=axis)
    shape = [1] * data.ndim
    shape[axis] = len(index)
    result = None
    for t in range(index.shape[1]):
        term = np.take(data, index[:, t], axis=axis) * weights[:, t].astype(data.dtype).reshape(
            shape
        )
        result = term if result is None else result + term
    return result  # type: ignore[return-value]


def resize_kernel(
    X: np.ndarray,
    plan: ResizePlan,
    roi: np.ndarray | None,
    *,
    mode: str,
    coordinate_transformation_mode: str,
    nearest_mode: str,
    cubic_coeff_a: float = -0.75,
    exclude_outside: int = 0,
    extrapolation_value: float = 0.0,
    antialias: int = 0,
) -> np.ndarray:
    """Separable resize of ``X`` to ``plan.out``."""
    rank = X.ndim
    kind = np.dtype(X.dtype).kind
    # integers are interpolated in float64 too, so that rounding ties come out exact
    work = np.float32 if X.dtype in (np.float16, np.float32) else np.float64
    data = np.asarray(X) if mode == "nearest" else np.asarray(X, dtype=work)
    crop = coordinate_transformation_mode == "tf_crop_and_resize"
    bounds = [(0.0, 1.0)] * rank
    if crop:
        roi = _present(roi)
        if roi is None or roi.size != 2 * len(plan.axes):
            raise ShapeInferenceError(
                f"Resize: tf_crop_and_resize needs roi with {2 * len(plan.axes)} values "
                f"(starts then ends of the resized axes), got {None if roi is None else roi.size}"
            )
        flat = roi.astype(np.float64).tolist()
        for k, axis in enumerate(plan.axes):
            bounds[axis] = (flat[k], flat[k + len(plan.axes)])
    outside: np.ndarray | None = None
    for axis in plan.axes:
        in_len, out_len = X.shape[axis], plan.out[axis]
        if out_len == in_len and plan.scales[axis] == 1.0 and bounds[axis] == (0.0, 1.0):
            continue  # identity along this axis
        x = _source_coords(
            coordinate_transformation_mode,
            out_len,
            in_len,
            plan.scales[axis],
            plan.lengths[axis],
            bounds[axis],
        )
        index, weights = axis_taps(
            mode,
            x,
            in_len,
            plan.scales[axis],
            nearest_mode,
            cubic_coeff_a,
            exclude_outside,
            antialias,
        )
        data = _apply_axis(data, axis, index, weights)
        if crop:
            shape = [1] * rank
            shape[axis] = out_len
            mask = ((x < 0) | (x > in_len - 1)).reshape(shape)
            outside = mask if outside is None else outside | mask
    if outside is not None:
        data = np.where(outside, np.asarray(extrapolation_value, dtype=data.dtype), data)
    if kind in "iu" and mode != "nearest":
        info = np.iinfo(X.dtype)
        data = np.clip(np.rint(data), info.min, info.max)
    if data is X:  # identity resize: never hand the caller's buffer back as the output
        return np.array(X, copy=True)
    return np.asarray(data).astype(X.dtype, copy=False)


def _check_modes(op: str, mode: str, coordinate_mode: str, nearest_mode: str) -> None:
    for name, value, allowed in (
        ("mode", mode, MODES),
        ("coordinate_transformation_mode", coordinate_mode, COORDINATE_MODES),
        ("nearest_mode", nearest_mode, NEAREST_MODES),
    ):
        if value not in allowed:
            raise ShapeInferenceError(
                f"{op}: attribute '{name}' must be one of {allowed}, got {value!r}"
            )


# -- Resize 11 / 13 / 18 / 19 ------------------------------------------------------------------


def _infer_resize(ctx: InferContext) -> list[TensorType]:
    a = ctx.attrs
    x = ctx.shape(0)
    if int(a.get("antialias", 0)) and a.get("mode", "nearest") == "nearest":
        ctx.fail("attribute 'antialias'=1 needs mode 'linear' or 'cubic'")
    scales = ctx.require_value(2, "Resize scales") if ctx.has(2) else None
    sizes = None
    if _present(scales) is None:
        if not ctx.has(3):
            ctx.fail("one of 'scales' (input 2) and 'sizes' (input 3) must be given")
        sizes = ctx.require_value(3, "Resize sizes")
    try:
        _check_modes(
            "Resize",
            a.get("mode", "nearest"),
            a.get("coordinate_transformation_mode", "half_pixel"),
            a.get("nearest_mode", "round_prefer_floor"),
        )
        plan = plan_resize(
            "Resize", x, scales, sizes, a.get("axes"), a.get("keep_aspect_ratio_policy", "stretch")
        )
    except ShapeInferenceError as exc:
        ctx.fail(str(exc))
    if a.get("coordinate_transformation_mode") == "tf_crop_and_resize" and not ctx.has(1):
        ctx.fail("coordinate_transformation_mode 'tf_crop_and_resize' needs the roi input")
    return [TensorType(tuple(plan.out), ctx.dtype(0))]


def resize(
    X: np.ndarray,
    roi: np.ndarray | None = None,
    scales: np.ndarray | None = None,
    sizes: np.ndarray | None = None,
    *,
    antialias: int = 0,
    axes: list[int] | None = None,
    coordinate_transformation_mode: str = "half_pixel",
    cubic_coeff_a: float = -0.75,
    exclude_outside: int = 0,
    extrapolation_value: float = 0.0,
    keep_aspect_ratio_policy: str = "stretch",
    mode: str = "nearest",
    nearest_mode: str = "round_prefer_floor",
) -> np.ndarray:
    """Resize with nearest / n-linear / cubic interpolation and every coordinate mode."""
    if antialias and mode == "nearest":
        raise ShapeInferenceError("Resize: attribute 'antialias'=1 needs mode linear or cubic")
    _check_modes("Resize", mode, coordinate_transformation_mode, nearest_mode)
    plan = plan_resize("Resize", X.shape, scales, sizes, axes, keep_aspect_ratio_policy)
    return resize_kernel(
        X,
        plan,
        roi,
        mode=mode,
        coordinate_transformation_mode=coordinate_transformation_mode,
        nearest_mode=nearest_mode,
        cubic_coeff_a=cubic_coeff_a,
        exclude_outside=exclude_outside,
        extrapolation_value=extrapolation_value,
        antialias=antialias,
    )


# 11: roi/scales/sizes inputs; 13: roi and scales optional; 18: axes, antialias,
# keep_aspect_ratio_policy; 19: half_pixel_symmetric
for _version in (11, 13, 18, 19):
    OPS.register("Resize", _version, infer=_infer_resize)(resize)


# -- Resize 10 and Upsample 7 / 9: asymmetric coordinates, "simple" nearest rounding ---------


def _legacy(X: np.ndarray, scales: np.ndarray | Sequence[float], mode: str, op: str) -> np.ndarray:
    mode = {"bilinear": "linear"}.get(mode, mode)
    if mode not in ("nearest", "linear"):
        raise ShapeInferenceError(f"{op}: mode must be 'nearest' or 'linear', got {mode!r}")
    plan = plan_resize(op, X.shape, np.asarray(scales, dtype=np.float32), None)
    return resize_kernel(
        X, plan, None, mode=mode, coordinate_transformation_mode="asymmetric", nearest_mode="simple"
    )


def _infer_legacy(op: str, scales_input: bool) -> Infer:
    def infer(ctx: InferContext) -> list[TensorType]:
        if scales_input:
            scales = ctx.require_value(1, f"{op} scales")
        else:
            scales = np.asarray(ctx.attrs.get("scales") or [], dtype=np.float32)
        raw = ctx.attrs.get("mode", "nearest")
        mode = {"bilinear": "linear"}.get(raw, raw)
        if mode not in ("nearest", "linear"):
            ctx.fail(f"attribute 'mode' must be 'nearest' or 'linear', got {mode!r}")
        try:
            plan = plan_resize(op, ctx.shape(0), scales, None)
        except ShapeInferenceError as exc:
            ctx.fail(str(exc))
        return [TensorType(tuple(plan.out), ctx.dtype(0))]

    return infer


@OPS.register("Resize", 10, infer=_infer_legacy("Resize", scales_input=True))
def resize_10(X: np.ndarray, scales: np.ndarray, *, mode: str = "nearest") -> np.ndarray:
    """Resize-10: like Upsample, but scales may be < 1."""
    return _legacy(X, scales, mode, "Resize")


@OPS.register("Upsample", 7, infer=_infer_legacy("Upsample", scales_input=False))
def upsample_7(
    X: np.ndarray, *, mode: str = "nearest", scales: list[float] | None = None
) -> np.ndarray:
    """Upsample-7: scales is an attribute."""
    return _legacy(X, scales or [], mode, "Upsample")


@OPS.register("Upsample", 9, infer=_infer_legacy("Upsample", scales_input=True))
def upsample_9(X: np.ndarray, scales: np.ndarray, *, mode: str = "nearest") -> np.ndarray:
    """Upsample-9: scales is an input (a constant in practice)."""
    return _legacy(X, scales, mode, "Upsample")
