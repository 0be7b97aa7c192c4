"""Integer ops of ONNX's quantized models: ``DynamicQuantizeLinear`` (11), ``MatMulInteger``
(10), ``ConvInteger`` (10), ``QLinearMatMul`` (10, 21) and ``QLinearConv`` (10).

These are what ``onnxruntime.quantization.quantize_dynamic`` (DynamicQuantizeLinear →
MatMulInteger/ConvInteger → Cast → Mul by the scales) and static QOperator exports write.
The results are bit-exact with onnxruntime's CPU kernels:

- integer products are summed in float64 over integer values, which is exact (every partial
  sum is far below 2**53) and runs on BLAS; the int32 accumulator is its exact value;
- ``DynamicQuantizeLinear`` follows onnxruntime's arithmetic in float32: the range widened to
  include 0, ``scale = (max - min) / 255`` (1 when max == min), ``zero_point =
  round_half_even(clamp(-min / scale, 0, 255))``, ``y = saturate(round_half_even(x / scale)
  + zero_point)``;
- ``QLinear*`` requantize as onnxruntime does: the multiplier ``a_scale * b_scale / y_scale``
  in float32 (per output channel/column when the weight scale is), ``float32(acc) *
  multiplier`` rounded half to even, then ``+ y_zero_point`` and saturated.

The engine's own INT8 layers (``QConv``/``QGemm`` in :mod:`~edge_infer.engine.ops.quantize`)
are separate: they take float activations and are what the precision pass builds.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_infer.engine.ir import TensorType
from edge_infer.engine.ops.conv import _infer_conv, conv
from edge_infer.engine.ops.linalg import matmul_shape
from edge_infer.engine.ops.registry import InferContext, OpList
from edge_infer.errors import ShapeInferenceError

OPS = OpList()

_INT8_TYPES = (np.dtype(np.int8), np.dtype(np.uint8))


def _limits(dtype: np.dtype) -> tuple[int, int]:
    info = np.iinfo(dtype)
    return int(info.min), int(info.max)


def _centered(
    x: np.ndarray,
    zero_point: np.ndarray | None,
    axis_size: int | None = None,
    axis: int = 0,
    ndim: int | None = None,
) -> np.ndarray:
    """``x - zero_point`` as float64 (exact); a 1-D zero point of ``axis_size`` entries is
    broadcast along ``axis`` of an ``ndim``-D ``x``."""
    xf = np.asarray(x, np.float64)
    if zero_point is None:
        return xf
    zp = np.asarray(zero_point, np.float64)
    if zp.ndim == 1 and zp.size > 1 and axis_size is not None and ndim is not None:
        shape = [1] * ndim
        shape[axis] = zp.size
        zp = zp.reshape(shape)
    return xf - zp


def _int8_check(ctx: InferContext, *indices: int) -> None:
    for k in indices:
        if ctx.has(k) and ctx.dtype(k) not in _INT8_TYPES:
            ctx.fail(f"input {k} must be int8 or uint8, got {ctx.dtype(k)}")


# -- DynamicQuantizeLinear ---------------------------------------------------------------------


def _infer_dynamic_quantize(ctx: InferContext) -> list[TensorType]:
    if ctx.dtype(0) != np.float32:
        ctx.fail(f"x must be float32, got {ctx.dtype(0)}")
    return [
        TensorType(ctx.shape(0), np.dtype(np.uint8)),
        TensorType((), np.dtype(np.float32)),
        TensorType((), np.dtype(np.uint8)),
    ]


@OPS.register("DynamicQuantizeLinear", 11, infer=_infer_dynamic_quantize)
def dynamic_quantize_linear(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uint8 quantization of ``x`` with a scale and zero point computed from its range."""
    x = np.asarray(x, np.float32)
    lo = np.float32(min(float(x.min()), 0.0)) if x.size else np.float32(0)
    hi = np.float32(max(float(x.max()), 0.0)) if x.size else np.float32(0)
    scale = np.float32(1.0) if hi == lo else np.float32((hi - lo) / np.float32(255.0))
    initial = np.float32(np.float32(0.0) - lo / scale)
    zero_point = np.rint(np.clip(initial, np.float32(0.0), np.float32(255.0)))
    q = np.rint(x / scale) + zero_point
    y = np.clip(q, 0, 255).astype(np.uint8)
    return y, np.array(scale, np.float32), np.array(zero_point, np.uint8)


# -- MatMulInteger / QLinearMatMul ---------------------------------------------------------------


def _matmul_type(ctx: InferContext, a: int, b: int, dtype: Any) -> list[TensorType]:
    try:
        shape = matmul_shape(ctx.shape(a), ctx.shape(b))
    except ShapeInferenceError as exc:
        ctx.fail(str(exc))
    return [TensorType(shape, np.dtype(dtype))]


def _integer_matmul(
    a: np.ndarray, a_zero_point: np.ndarray | None, b: np.ndarray, b_zero_point: np.ndarray | None
) -> np.ndarray:
    """``(a - a_zp) @ (b - b_zp)`` exactly, as int32. A 1-D ``a_zp`` is per row of a (M),
    a 1-D ``b_zp`` per column of b (N)."""
    a = np.asarray(a)
    rows = a.shape[-2] if a.ndim >= 2 else None
    af = _centered(a, a_zero_point, rows, axis=max(a.ndim - 2, 0), ndim=a.ndim)
    bf = _centered(b, b_zero_point)  # per-column zero points broadcast along the last axis
    return np.rint(np.matmul(af, bf)).astype(np.int32)


def _infer_matmul_integer(ctx: InferContext) -> list[TensorType]:
    _int8_check(ctx, 0, 1, 2, 3)
    return _matmul_type(ctx, 0, 1, np.int32)


@OPS.register("MatMulInteger", 10, infer=_infer_matmul_integer, foldable=False)
def matmul_integer(
    A: np.ndarray,
    B: np.ndarray,
    a_zero_point: np.ndarray | None = None,
    b_zero_point: np.ndarray | None = None,
) -> np.ndarray:
    """int32 ``(A - a_zero_point) @ (B - b_zero_point)`` with numpy matmul broadcasting."""
    return _integer_matmul(A, a_zero_point, B, b_zero_point)


def requantize(
    acc: np.ndarray, multiplier: np.ndarray, zero_point: np.ndarray | None, dtype: np.dtype
) -> np.ndarray:
    """onnxruntime's requantization: ``saturate(rint(float32(acc) * multiplier) + zp)``."""
    y = np.rint(acc.astype(np.float32) * multiplier.astype(np.float32))
    if zero_point is not None:
        y = y + np.asarray(zero_point, np.float32)
    lo, hi = _limits(dtype)
    return np.clip(y, lo, hi).astype(dtype)


def _out_dtype(ctx: InferContext, zero_point: int, fallback: int) -> np.dtype:
    return ctx.dtype(zero_point) if ctx.has(zero_point) else ctx.dtype(fallback)


def _infer_qlinear_matmul(ctx: InferContext) -> list[TensorType]:
    _int8_check(ctx, 0, 2, 3, 5, 7)
    return _matmul_type(ctx, 0, 3, _out_dtype(ctx, 7, 0))


def _multiplier(scale_a: np.ndarray, scale_b: np.ndarray, scale_y: np.ndarray) -> np.ndarray:
    a = np.float32(np.asarray(scale_a, np.float32).reshape(()))
    y = np.float32(np.asarray(scale_y, np.float32).reshape(()))
    return (a * np.asarray(scale_b, np.float32)) / y


def qlinear_matmul(
    a: np.ndarray,
    a_scale: np.ndarray,
    a_zero_point: np.ndarray | None,
    b: np.ndarray,
    b_scale: np.ndarray,
    b_zero_point: np.ndarray | None,
    y_scale: np.ndarray,
    y_zero_point: np.ndarray | None = None,
) -> np.ndarray:
    """Quantized MatMul: int32 accumulate, requantize to y's scale and zero point. ``b_scale``
    and ``b_zero_point`` may be per column (N)."""
    acc = _integer_matmul(a, a_zero_point, b, b_zero_point)
    dtype = np.asarray(y_zero_point).dtype if y_zero_point is not None else np.asarray(a).dtype
    return requantize(acc, _multiplier(a_scale, b_scale, y_scale), y_zero_point, dtype)


for _version in (10, 21):
    OPS.register("QLinearMatMul", _version, infer=_infer_qlinear_matmul, foldable=False)(
        qlinear_matmul
    )


# -- ConvInteger / QLinearConv -------------------------------------------------------------------


_GEOMETRY = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")


def _conv_type(ctx: InferContext, x: int, w: int, bias: int | None, dtype: Any) -> TensorType:
    types = [
        TensorType(ctx.shape(x), np.dtype(np.float32)),
        TensorType(ctx.shape(w), np.dtype(np.float32)),
    ]
    if bias is not None and ctx.has(bias):
        types.append(TensorType(ctx.shape(bias), np.dtype(np.float32)))
    sub = InferContext(ctx.node, types, [None] * len(types), ctx.attrs)  # type: ignore[arg-type]
    (out,) = _infer_conv(sub)
    return TensorType(out.shape, np.dtype(dtype))


def _integer_conv(
    x: np.ndarray,
    x_zero_point: np.ndarray | None,
    w: np.ndarray,
    w_zero_point: np.ndarray | None,
    geometry: dict[str, Any],
) -> np.ndarray:
    """The exact int32 accumulator of ``conv(x - x_zp, w - w_zp)``; padding contributes 0
    (the padded value is x's zero point). ``w_zp`` may be per output channel."""
    w = np.asarray(w)
    xf = _centered(x, x_zero_point)
    wf = _centered(w, w_zero_point, w.shape[0], axis=0, ndim=w.ndim)
    return np.rint(conv(xf, wf, None, **geometry)).astype(np.int32)


def _infer_conv_integer(ctx: InferContext) -> list[TensorType]:
    _int8_check(ctx, 0, 1, 2, 3)
    return [_conv_type(ctx, 0, 1, None, np.int32)]


@OPS.register("ConvInteger", 10, infer=_infer_conv_integer, foldable=False)
def conv_integer(
    x: np.ndarray,
    w: np.ndarray,
    x_zero_point: np.ndarray | None = None,
    w_zero_point: np.ndarray | None = None,
    **geometry: Any,
) -> np.ndarray:
    """int32 convolution of ``x - x_zero_point`` with ``w - w_zero_point`` (Conv's
    attributes: auto_pad, dilations, group, kernel_shape, pads, strides)."""
    return _integer_conv(x, x_zero_point, w, w_zero_point, _geometry(geometry))


def _geometry(attrs: dict[str, Any]) -> dict[str, Any]:
    unknown = set(attrs) - set(_GEOMETRY)
    if unknown:
        raise TypeError(f"unexpected attributes {sorted(unknown)}")
    return attrs


def _infer_qlinear_conv(ctx: InferContext) -> list[TensorType]:
    _int8_check(ctx, 0, 2, 3, 5, 7)
    if ctx.has(8) and ctx.dtype(8) != np.int32:
        ctx.fail(f"B must be int32, got {ctx.dtype(8)}")
    return [_conv_type(ctx, 0, 3, 8, _out_dtype(ctx, 7, 0))]


@OPS.register("QLinearConv", 10, infer=_infer_qlinear_conv, foldable=False)
def qlinear_conv(
    x: np.ndarray,
    x_scale: np.ndarray,
    x_zero_point: np.ndarray | None,
    w: np.ndarray,
    w_scale: np.ndarray,
    w_zero_point: np.ndarray | None,
    y_scale: np.ndarray,
    y_zero_point: np.ndarray | None = None,
    B: np.ndarray | None = None,
    **geometry: Any,
) -> np.ndarray:
    """Quantized Conv: int32 accumulate (+ B, int32), requantize per output channel."""
    acc = _integer_conv(x, x_zero_point, w, w_zero_point, _geometry(geometry))
    if B is not None:
        acc = acc + np.asarray(B, np.int32).reshape(1, -1, *([1] * (acc.ndim - 2)))
    multiplier = _multiplier(x_scale, w_scale, y_scale)
    if multiplier.ndim == 1 and multiplier.size > 1:
        multiplier = multiplier.reshape(1, -1, *([1] * (acc.ndim - 2)))
    dtype = np.asarray(y_zero_point).dtype if y_zero_point is not None else np.asarray(x).dtype
    return requantize(acc, multiplier, y_zero_point, dtype)
