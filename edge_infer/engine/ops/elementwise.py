"""Elementwise ops: arithmetic, comparison, logic, selection and unary math.

Binary and variadic ops broadcast multidirectionally (numpy rules, ONNX opset 7+). Kernels
keep the input dtype exactly: scalars are Python numbers (weak under NEP 50) or cast to the
input dtype, so float32 never silently becomes float64. Floating-point exceptions (log of 0,
division by zero) give IEEE results without numpy warnings, as the ONNX runtimes do.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np

from edge_infer.engine.ir import TensorType
from edge_infer.engine.ops.registry import Infer, InferContext, OpList, broadcast_shapes
from edge_infer.errors import ShapeInferenceError

OPS = OpList()

_FLOAT = "f"
_NUMERIC = "fiu"
_ANY = "fiub"


# -- shape functions ---------------------------------------------------------------------------


def _check_kinds(ctx: InferContext, index: int, kinds: str) -> None:
    dtype = ctx.dtype(index)
    if dtype.kind not in kinds:
        names = {"f": "float", "i": "signed int", "u": "unsigned int", "b": "bool"}
        expected = " or ".join(names[k] for k in kinds)
        ctx.fail(f"input {index} has dtype {dtype.name}; {ctx.node.op_type} expects {expected}")


def _same_dtypes(ctx: InferContext, indices: list[int]) -> None:
    dtypes = {ctx.dtype(i) for i in indices}
    if len(dtypes) > 1:
        names = ", ".join(sorted(d.name for d in dtypes))
        ctx.fail(f"inputs must share one dtype (ONNX type constraint T), got {names}")


def _broadcast_shape(ctx: InferContext, indices: list[int]) -> tuple:
    try:
        return broadcast_shapes(*(ctx.shape(i) for i in indices))
    except ShapeInferenceError as exc:  # raised without the node: locate it
        ctx.fail(str(exc))
        raise  # unreachable: ctx.fail raises


def binary(kinds: str = _ANY, out_dtype: type | None = None) -> Infer:
    """Shape function of same-type broadcasting ops (variadic too): checks dtypes, broadcasts."""

    def infer(ctx: InferContext) -> list[TensorType]:
        indices = [i for i in range(ctx.num_inputs) if ctx.has(i)]
        if not indices:
            ctx.fail("needs at least one input")
        _same_dtypes(ctx, indices)
        _check_kinds(ctx, indices[0], kinds)
        dtype = np.dtype(out_dtype) if out_dtype is not None else ctx.dtype(indices[0])
        return [TensorType(_broadcast_shape(ctx, indices), dtype)]

    return infer


def unary(kinds: str = _ANY, out_dtype: type | None = None) -> Infer:
    """Shape function of unary ops: the input's shape, its dtype unless ``out_dtype``."""

    def infer(ctx: InferContext) -> list[TensorType]:
        _check_kinds(ctx, 0, kinds)
        dtype = np.dtype(out_dtype) if out_dtype is not None else ctx.dtype(0)
        return [TensorType(ctx.shape(0), dtype)]

    return infer


def _infer_pow(ctx: InferContext) -> list[TensorType]:
    # Base and exponent may differ in dtype (T and T1); the output takes the base's.
    _check_kinds(ctx, 0, _NUMERIC)
    _check_kinds(ctx, 1, _NUMERIC)
    return [TensorType(_broadcast_shape(ctx, [0, 1]), ctx.dtype(0))]


def _infer_mod(ctx: InferContext) -> list[TensorType]:
    fmod = ctx.attrs.get("fmod", 0)
    if fmod not in (0, 1):
        ctx.fail(f"attribute fmod must be 0 or 1, got {fmod}")
    if ctx.dtype(0).kind == "f" and fmod != 1:
        ctx.fail(f"attribute fmod must be 1 for {ctx.dtype(0).name} inputs (ONNX spec), got 0")
    return binary(_NUMERIC)(ctx)


def _infer_where(ctx: InferContext) -> list[TensorType]:
    if ctx.dtype(0) != np.bool_:
        ctx.fail(f"condition (input 0) must be bool, got {ctx.dtype(0).name}")
    _same_dtypes(ctx, [1, 2])
    return [TensorType(_broadcast_shape(ctx, [0, 1, 2]), ctx.dtype(1))]


# -- arithmetic --------------------------------------------------------------------------------


@OPS.register("Add", 7, infer=binary(_NUMERIC))
def add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(np.add(a, b))


@OPS.register("Sub", 7, infer=binary(_NUMERIC))
def sub(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(np.subtract(a, b))


@OPS.register("Mul", 7, infer=binary(_NUMERIC))
def mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(np.multiply(a, b))


@OPS.register("Div", 7, infer=binary(_NUMERIC))
def div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Division; integer division truncates toward zero (C semantics, as onnxruntime)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if a.dtype.kind == "f":
            return np.asarray(np.divide(a, b))
        quotient = np.floor_divide(a, b)
        if a.dtype.kind == "u":
            return np.asarray(quotient)
        # floor differs from truncation when the division is inexact and the signs differ
        inexact = np.multiply(quotient, b) != a
        return np.asarray(quotient + (inexact & ((a < 0) != (b < 0))).astype(quotient.dtype))


@OPS.register("Pow", 7, infer=_infer_pow)
def pow_(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``x ** y`` in the dtype of ``x``; the exponent may have another dtype."""
    with np.errstate(all="ignore"):
        if x.dtype.kind in "iu" and y.dtype.kind in "iu" and np.any(y < 0):
            # numpy refuses negative integer powers; C pow() then truncation (1, -1 or 0)
            return np.trunc(np.power(x.astype(np.float64), y.astype(np.float64))).astype(x.dtype)
        return np.asarray(np.power(x, y)).astype(x.dtype, copy=False)


@OPS.register("Mod", 10, infer=_infer_mod)
def mod(a: np.ndarray, b: np.ndarray, fmod: int = 0) -> np.ndarray:
    """Remainder: sign of the divisor (``fmod=0``, integers) or of the dividend (``fmod=1``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(np.fmod(a, b) if fmod else np.mod(a, b))


def _variadic(func: np.ufunc) -> Callable[..., np.ndarray]:
    def kernel(*inputs: np.ndarray) -> np.ndarray:
        if len(inputs) == 1:
            return np.array(inputs[0], copy=True)
        return np.asarray(functools.reduce(func, inputs))

    kernel.__doc__ = f"Variadic broadcasting ``np.{func.__name__}``."
    return kernel


def _binary(func: np.ufunc) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.asarray(func(a, b))

    kernel.__doc__ = f"Broadcasting ``np.{func.__name__}``."
    return kernel


def _unary(func: np.ufunc, quiet: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """A kernel applying ``func``; ``quiet``: IEEE inf/nan out of domain, without warnings."""

    def kernel(x: np.ndarray) -> np.ndarray:
        if quiet:
            with np.errstate(all="ignore"):
                return np.asarray(func(x))
        return np.asarray(func(x))

    kernel.__doc__ = f"``np.{func.__name__}``."
    return kernel


# opset 6 has the same signature without broadcasting (same shapes): one kernel serves both
max_ = OPS.register("Max", 6, infer=binary(_NUMERIC))(_variadic(np.maximum))
min_ = OPS.register("Min", 6, infer=binary(_NUMERIC))(_variadic(np.minimum))
sum_ = OPS.register("Sum", 6, infer=binary(_FLOAT))(_variadic(np.add))


@OPS.register("Mean", 6, infer=binary(_FLOAT))
def mean(*inputs: np.ndarray) -> np.ndarray:
    return np.asarray(np.divide(sum_(*inputs), len(inputs))).astype(inputs[0].dtype, copy=False)


# -- comparison and logic ----------------------------------------------------------------------

_BOOL = np.bool_
equal = OPS.register("Equal", 7, infer=binary(_ANY, _BOOL))(_binary(np.equal))
less = OPS.register("Less", 7, infer=binary(_NUMERIC, _BOOL))(_binary(np.less))
greater = OPS.register("Greater", 7, infer=binary(_NUMERIC, _BOOL))(_binary(np.greater))
less_equal = OPS.register("LessOrEqual", 12, infer=binary(_NUMERIC, _BOOL))(_binary(np.less_equal))
greater_equal = OPS.register("GreaterOrEqual", 12, infer=binary(_NUMERIC, _BOOL))(
    _binary(np.greater_equal)
)
not_ = OPS.register("Not", 1, infer=unary("b"))(_unary(np.logical_not))
and_ = OPS.register("And", 7, infer=binary("b"))(_binary(np.logical_and))
or_ = OPS.register("Or", 7, infer=binary("b"))(_binary(np.logical_or))
xor = OPS.register("Xor", 7, infer=binary("b"))(_binary(np.logical_xor))


@OPS.register("Where", 9, infer=_infer_where)
def where(condition: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.where(condition, x, y)


# -- unary math --------------------------------------------------------------------------------

exp = OPS.register("Exp", 6, infer=unary(_FLOAT))(_unary(np.exp, quiet=True))
log = OPS.register("Log", 6, infer=unary(_FLOAT))(_unary(np.log, quiet=True))
sqrt = OPS.register("Sqrt", 6, infer=unary(_FLOAT))(_unary(np.sqrt, quiet=True))
reciprocal = OPS.register("Reciprocal", 6, infer=unary(_FLOAT))(_unary(np.reciprocal, quiet=True))
neg = OPS.register("Neg", 6, infer=unary("fi"))(_unary(np.negative))
abs_ = OPS.register("Abs", 6, infer=unary(_NUMERIC))(_unary(np.absolute))
floor = OPS.register("Floor", 6, infer=unary(_FLOAT))(_unary(np.floor))
ceil = OPS.register("Ceil", 6, infer=unary(_FLOAT))(_unary(np.ceil))
#: numpy rounds half to even, as ONNX Round requires
round_ = OPS.register("Round", 11, infer=unary(_FLOAT))(_unary(np.rint))
sign = OPS.register("Sign", 9, infer=unary(_NUMERIC))(_unary(np.sign))
sin = OPS.register("Sin", 7, infer=unary(_FLOAT))(_unary(np.sin, quiet=True))
cos = OPS.register("Cos", 7, infer=unary(_FLOAT))(_unary(np.cos, quiet=True))
is_nan = OPS.register("IsNaN", 9, infer=unary(_FLOAT, _BOOL))(_unary(np.isnan))


@OPS.register("IsInf", 10, infer=unary(_FLOAT, np.bool_))
def is_inf(x: np.ndarray, detect_negative: int = 1, detect_positive: int = 1) -> np.ndarray:
    if detect_negative and detect_positive:
        return np.asarray(np.isinf(x))
    if detect_negative:
        return np.asarray(np.isneginf(x))
    if detect_positive:
        return np.asarray(np.isposinf(x))
    return np.zeros(x.shape, dtype=np.bool_)


# W. J. Cody's rational approximations of erf/erfc (Math. Comp. 1969), accurate to double
# precision; numpy has no erf and the engine does not depend on scipy.
_ERF_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02,
          3.20937758913846947e03, 1.85777706184603153e-1)  # fmt: skip
_ERF_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
          2.84423683343917062e03)  # fmt: skip
_ERFC_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01,
           2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03,
           2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8)  # fmt: skip
_ERFC_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
           1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
           3.43936767414372164e03, 1.23033935480374942e03)  # fmt: skip
_ERFC_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
           1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2)  # fmt: skip
_ERFC_Q = (2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1,
           6.05183413124413191e-2, 2.33520497626869185e-3)  # fmt: skip


def _rational(y: np.ndarray, num: tuple[float, ...], den: tuple[float, ...]) -> np.ndarray:
    """Cody's nested (Horner) evaluation, in place: two temporaries for any degree."""
    xnum = y * num[-1]
    xden = y.copy()
    for k in range(len(den) - 1):
        xnum += num[k]
        xnum *= y
        xden += den[k]
        xden *= y
    xnum += num[len(den) - 1]
    xden += den[-1]
    xnum /= xden
    return xnum


_INV_SQRT_PI = 1.0 / math.sqrt(math.pi)


def _erfc_tail(y: np.ndarray) -> np.ndarray:
    """erfc(y) for y > 0.46875 (nan stays nan); each element takes only its own branch."""
    ratio = np.empty_like(y)
    mid = y <= 4.0
    ratio[mid] = _rational(y[mid], _ERFC_C, _ERFC_D)
    far = ~mid
    y_far = y[far]
    z_far = 1.0 / (y_far * y_far)
    ratio[far] = (_INV_SQRT_PI - z_far * _rational(z_far, _ERFC_P, _ERFC_Q)) / y_far
    # exp(-y*y) split as exp(-z*z)*exp(-(y-z)(y+z)) keeps the exponent's rounding error small
    z = np.trunc(y * 16.0) / 16.0
    # erfc underflows to 0 beyond ~26.5, where the split form would give inf * 0
    return np.where(y > 27.0, 0.0, np.exp(-z * z) * np.exp(-(y - z) * (y + z)) * ratio)


def _erf_float64(x: np.ndarray) -> np.ndarray:
    """erf in float64, accurate to a few ulp; each element evaluates only its own branch."""
    y = np.abs(x)
    out = np.empty_like(y)
    small = y <= 0.46875
    y_small = y[small]
    out[small] = x[small] * _rational(y_small * y_small, _ERF_A, _ERF_B)
    big = ~small
    out[big] = np.copysign(1.0 - _erfc_tail(y[big]), x[big])
    return out


def _erf_float32(x: np.ndarray) -> np.ndarray:
    """erf in float32 (~1e-7): beyond |x| = 4 it rounds to ±1, so two branches suffice.

    Both are evaluated on the whole array: cheaper in numpy than boolean-mask gathers.
    """
    y = np.abs(x)
    np.minimum(y, np.float32(4.0), out=y)  # nan stays nan
    square = y * y
    near = _rational(square, _ERF_A, _ERF_B)
    near *= y
    np.negative(square, out=square)
    tail = np.exp(square, out=square)
    tail *= _rational(y, _ERFC_C, _ERFC_D)
    np.subtract(1.0, tail, out=tail)
    return np.copysign(np.where(y <= 0.46875, near, tail), x)


def erf_array(x: np.ndarray) -> np.ndarray:
    """The error function, vectorised: float64 for float64 input, float32 otherwise (Gelu too)."""
    if x.ndim == 0:  # the in-place steps need arrays; numpy turns 0-d results into scalars
        return erf_array(x.reshape(1)).reshape(())
    with np.errstate(all="ignore"):
        if x.dtype == np.float64:
            return _erf_float64(x)
        return _erf_float32(np.asarray(x, dtype=np.float32))


@OPS.register("Erf", 9, infer=unary(_NUMERIC))
def erf(x: np.ndarray) -> np.ndarray:
    return erf_array(x).astype(x.dtype, copy=False)
