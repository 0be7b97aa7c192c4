"""Activation ops: Relu and friends, Sigmoid/Tanh/Softplus families, Gelu, Clip, Softmax.

Numerically careful forms: Sigmoid and Softplus never evaluate ``exp`` of a large positive
number (no overflow warnings, no inf/inf), Softmax and LogSoftmax subtract the max first.
float16 inputs of the ops with non-trivial arithmetic are computed in float32 and rounded back
once. Scalar attributes arrive as Python floats, which numpy treats as weak, so
the input dtype is kept.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np

from edge_infer.engine.ir import TensorType
from edge_infer.engine.ops.elementwise import erf_array, unary
from edge_infer.engine.ops.registry import InferContext, OpList, broadcast_shapes
from edge_infer.errors import ShapeInferenceError

OPS = OpList()

_FLOAT = "f"
_SIGNED = "fi"
_NUMERIC = "fiu"


def _f32(value: float) -> float:
    """An attribute default as ONNX stores it: FLOAT attributes are float32."""
    return float(np.float32(value))


def _in_float32(func: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """Run ``func`` on float16 input upcast to float32 and round the result back once."""

    @functools.wraps(func)
    def kernel(x: np.ndarray, **attrs: object) -> np.ndarray:
        with np.errstate(over="ignore", under="ignore"):
            if x.dtype == np.float16:
                return np.asarray(func(x.astype(np.float32), **attrs)).astype(np.float16)
            return np.asarray(func(x, **attrs))

    return kernel


# -- piecewise-linear --------------------------------------------------------------------------


@OPS.register("Relu", 6, infer=unary(_SIGNED))
def relu(x: np.ndarray) -> np.ndarray:
    return np.asarray(np.maximum(x, 0))


@OPS.register("LeakyRelu", 6, infer=unary(_FLOAT))
@_in_float32
def leaky_relu(x: np.ndarray, alpha: float = _f32(0.01)) -> np.ndarray:
    return np.where(x >= 0, x, x * alpha)


def _infer_prelu(ctx: InferContext) -> list[TensorType]:
    x, slope = ctx.shape(0), ctx.shape(1)
    try:  # unidirectional: slope broadcasts to X, never X to slope
        fits = len(slope) <= len(x) and broadcast_shapes(x, slope) == tuple(x)
    except ShapeInferenceError:
        fits = False
    if not fits:
        ctx.fail(f"slope of shape {list(slope)} does not broadcast to X of shape {list(x)}")
    if ctx.dtype(1) != ctx.dtype(0):
        ctx.fail(f"slope dtype {ctx.dtype(1).name} differs from X dtype {ctx.dtype(0).name}")
    return [ctx.type(0)]


@OPS.register("PRelu", 7, infer=_infer_prelu)
def prelu(x: np.ndarray, slope: np.ndarray) -> np.ndarray:
    """``x`` where non-negative, else ``slope * x``; slope broadcasts to ``x`` (one way)."""
    return np.where(x < 0, x * slope, x)


@OPS.register("ThresholdedRelu", 10, infer=unary(_FLOAT))
def thresholded_relu(x: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    return np.where(x > alpha, x, np.zeros((), dtype=x.dtype))


@OPS.register("HardSigmoid", 6, infer=unary(_FLOAT))
@_in_float32
def hard_sigmoid(x: np.ndarray, alpha: float = _f32(0.2), beta: float = 0.5) -> np.ndarray:
    return np.clip(x * alpha + beta, 0, 1)


@OPS.register("HardSwish", 14, infer=unary(_FLOAT))
@_in_float32
def hard_swish(x: np.ndarray) -> np.ndarray:
    """``x * max(0, min(1, x/6 + 0.5))``."""
    return x * np.clip(x * (1 / 6) + 0.5, 0, 1)


def _infer_clip_6(ctx: InferContext) -> list[TensorType]:
    if ctx.dtype(0).kind != "f":
        ctx.fail(f"Clip before opset 12 takes float input, got {ctx.dtype(0).name}")
    return [ctx.type(0)]


def _infer_clip_11(ctx: InferContext) -> list[TensorType]:
    for index, name in ((1, "min"), (2, "max")):
        if not ctx.has(index):
            continue
        if ctx.shape(index) not in ((), (1,)):
            ctx.fail(f"{name} (input {index}) must be a scalar, got shape {list(ctx.shape(index))}")
        if ctx.dtype(index) != ctx.dtype(0):
            ctx.fail(f"{name} dtype {ctx.dtype(index).name} differs from {ctx.dtype(0).name}")
    return [ctx.type(0)]


def _clip(x: np.ndarray, low: np.ndarray | None, high: np.ndarray | None) -> np.ndarray:
    # max then min, as onnxruntime: when min > max every element becomes max
    out = x if low is None else np.maximum(x, low.reshape(()))
    out = out if high is None else np.minimum(out, high.reshape(()))
    return np.array(out, copy=True) if out is x else np.asarray(out)


_FLT_MAX = float(np.finfo(np.float32).max)


@OPS.register("Clip", 6, infer=_infer_clip_6)
def clip_6(x: np.ndarray, min: float = -_FLT_MAX, max: float = _FLT_MAX) -> np.ndarray:
    """Clip with the bounds as attributes (opset 6-10); the names are the ONNX attributes'."""
    with np.errstate(over="ignore"):  # float32 bounds overflow float16 to ±inf: no bound
        low, high = np.asarray(min).astype(x.dtype), np.asarray(max).astype(x.dtype)
    return _clip(x, low, high)


@OPS.register("Clip", 11, infer=_infer_clip_11)
def clip_11(
    x: np.ndarray, low: np.ndarray | None = None, high: np.ndarray | None = None
) -> np.ndarray:
    """Clip with optional scalar inputs ``min``/``max`` (opset 11+; integers from 12)."""
    return _clip(x, low, high)


# -- smooth ------------------------------------------------------------------------------------


@OPS.register("Elu", 6, infer=unary(_FLOAT))
@_in_float32
def elu(x: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


@OPS.register("Selu", 6, infer=unary(_FLOAT))
@_in_float32
def selu(
    x: np.ndarray, alpha: float = 1.6732631921768188, gamma: float = 1.0507010221481323
) -> np.ndarray:
    return gamma * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


@OPS.register("Celu", 12, infer=unary(_FLOAT))
@_in_float32
def celu(x: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """``max(0, x) + min(0, alpha * (exp(x / alpha) - 1))``."""
    return np.maximum(x, 0) + np.minimum(0, alpha * np.expm1(np.minimum(x, 0) / alpha))


def sigmoid_core(x: np.ndarray) -> np.ndarray:
    """Logistic function without overflow: ``exp`` only of ``-|x|``."""
    e = np.exp(-np.abs(x))
    r = 1 / (1 + e)
    return np.where(x >= 0, r, e * r)


def softplus_core(x: np.ndarray) -> np.ndarray:
    """``log(1 + exp(x))`` as ``max(x, 0) + log1p(exp(-|x|))``: no overflow."""
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


sigmoid = OPS.register("Sigmoid", 6, infer=unary(_FLOAT))(_in_float32(sigmoid_core))
softplus = OPS.register("Softplus", 1, infer=unary(_FLOAT))(_in_float32(softplus_core))


@OPS.register("Tanh", 6, infer=unary(_FLOAT))
@_in_float32
def tanh(x: np.ndarray) -> np.ndarray:
    return np.tanh(x)


@OPS.register("Softsign", 1, infer=unary(_FLOAT))
@_in_float32
def softsign(x: np.ndarray) -> np.ndarray:
    """``x / (1 + |x|)``."""
    return x / (1 + np.abs(x))


@OPS.register("Mish", 18, infer=unary(_FLOAT))
@_in_float32
def mish(x: np.ndarray) -> np.ndarray:
    """``x * tanh(softplus(x))``."""
    return x * np.tanh(softplus_core(x))


def _infer_gelu(ctx: InferContext) -> list[TensorType]:
    approximate = ctx.attrs.get("approximate", "none")
    if approximate not in ("none", "tanh"):
        ctx.fail(f"attribute approximate must be 'none' or 'tanh', got {approximate!r}")
    return unary(_FLOAT)(ctx)


@OPS.register("Gelu", 20, infer=_infer_gelu)
@_in_float32
def gelu(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    """``x * Φ(x)``, exactly (with erf) or with the tanh approximation."""
    if approximate == "tanh":
        inner = math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x)
        return 0.5 * x * (1 + np.tanh(inner))
    return 0.5 * x * (1 + erf_array(x * (1 / math.sqrt(2))))


# -- softmax family ----------------------------------------------------------------------------


def _axis_infer(legacy: bool) -> Callable[[InferContext], list[TensorType]]:
    """Shape function of Softmax/LogSoftmax/Hardmax: checks ``axis`` against the rank."""

    def infer(ctx: InferContext) -> list[TensorType]:
        if ctx.dtype(0).kind != "f":
            ctx.fail(f"input must be float, got {ctx.dtype(0).name}")
        rank = len(ctx.shape(0))
        axis = ctx.attrs.get("axis", 1 if legacy else -1)
        if not -max(rank, 1) <= axis < max(rank, 1):
            ctx.fail(f"attribute axis={axis} is out of range for rank {rank}")
        return [ctx.type(0)]

    return infer


def _axes(x: np.ndarray, axis: int, legacy: bool) -> tuple[int, ...]:
    """Axes the op normalises over: ``axis`` alone (opset 13), or ``axis`` onward (1-12)."""
    if x.ndim == 0:
        return ()
    axis = axis + x.ndim if axis < 0 else axis
    return tuple(range(axis, x.ndim)) if legacy else (axis,)


def _softmax(x: np.ndarray, axis: int, legacy: bool, log: bool) -> np.ndarray:
    axes = _axes(x, axis, legacy)
    if x.size == 0:
        return x.copy()
    work = x.astype(np.float32) if x.dtype == np.float16 else x
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        peak = np.max(work, axis=axes, keepdims=True)
        shifted = work - np.where(np.isfinite(peak), peak, 0)  # all -inf rows stay -inf/nan
        e = np.exp(shifted)
        total = np.sum(e, axis=axes, keepdims=True)
        out = shifted - np.log(total) if log else e / total
    return np.asarray(out).astype(x.dtype, copy=False)


def _hardmax(x: np.ndarray, axis: int, legacy: bool) -> np.ndarray:
    """One-hot of the first maximum along ``axis`` (over the flattened tail before opset 13)."""
    axes = _axes(x, axis, legacy)
    if x.size == 0:
        return np.zeros(x.shape, dtype=x.dtype)
    if not axes:
        return np.ones(x.shape, dtype=x.dtype)
    # bring the normalised axes last, as one flattened axis
    flat = x.reshape(*x.shape[: axes[0]], -1) if legacy else np.moveaxis(x, axes[0], -1)
    index = np.argmax(flat, axis=-1)[..., None]
    hot = (np.arange(flat.shape[-1]) == index).astype(x.dtype)
    return hot.reshape(x.shape) if legacy else np.moveaxis(hot, -1, axes[0])


@OPS.register("Softmax", 1, infer=_axis_infer(legacy=True))
def softmax_1(x: np.ndarray, axis: int = 1) -> np.ndarray:
    """Softmax over the flattened axes ``axis..rank-1`` (opset 1-12)."""
    return _softmax(x, axis, legacy=True, log=False)


@OPS.register("Softmax", 13, infer=_axis_infer(legacy=False))
def softmax_13(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax along the single axis ``axis`` (opset 13+)."""
    return _softmax(x, axis, legacy=False, log=False)


@OPS.register("LogSoftmax", 1, infer=_axis_infer(legacy=True))
def log_softmax_1(x: np.ndarray, axis: int = 1) -> np.ndarray:
    return _softmax(x, axis, legacy=True, log=True)


@OPS.register("LogSoftmax", 13, infer=_axis_infer(legacy=False))
def log_softmax_13(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return _softmax(x, axis, legacy=False, log=True)


@OPS.register("Hardmax", 1, infer=_axis_infer(legacy=True))
def hardmax_1(x: np.ndarray, axis: int = 1) -> np.ndarray:
    return _hardmax(x, axis, legacy=True)


@OPS.register("Hardmax", 13, infer=_axis_infer(legacy=False))
def hardmax_13(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return _hardmax(x, axis, legacy=False)
