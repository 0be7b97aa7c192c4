"""Elementwise ops against onnxruntime and the ONNX reference evaluator."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge_infer.engine.ops.elementwise import erf_array
from edge_infer.errors import ShapeInferenceError
from tests.engine.ops.harness import check_op as harness_check_op
from tests.engine.ops.harness import make_node_model, run_ours

SHAPE_PAIRS = [
    ((2, 3, 4), (2, 3, 4)),
    ((2, 3, 4), (3, 4)),
    ((2, 1, 4), (1, 3, 1)),
    ((), (2, 3)),
    ((4,), ()),
    ((0, 3), (1, 3)),
]
FLOATS = ["float32", "float16", "float64"]


def check_op(op_type: str, inputs: list, attrs: dict | None = None, **kwargs) -> list:
    """``harness.check_op``; empty inputs become initializers (graph inputs need dims >= 1)."""
    empty = [k for k, a in enumerate(inputs) if a is not None and np.asarray(a).size == 0]
    const = sorted({*kwargs.pop("const_inputs", ()), *empty})
    return harness_check_op(op_type, inputs, attrs, const_inputs=const, **kwargs)


def rand(rng: np.random.Generator, shape: tuple, dtype: str, low: float = -4, high: float = 4):
    """Random values in [low, high); integers drawn uniformly over the same range."""
    if np.dtype(dtype).kind in "iu":
        return rng.integers(int(low), int(high), size=shape).astype(dtype)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    return rng.uniform(low, high, size=shape).astype(dtype)


def nonzero(rng: np.random.Generator, shape: tuple, dtype: str) -> np.ndarray:
    """Divisors: magnitudes in [1, 5), random signs."""
    magnitude = rand(rng, shape, dtype, 1, 5)
    signs = rng.choice(np.array([-1, 1], dtype=dtype), size=shape)
    return (magnitude * signs).astype(dtype)


# -- binary arithmetic ---------------------------------------------------------------------


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
@pytest.mark.parametrize("dtype", [*FLOATS, "int32", "int64"])
@pytest.mark.parametrize("shapes", SHAPE_PAIRS, ids=str)
def test_arithmetic(op: str, dtype: str, shapes: tuple) -> None:
    rng = np.random.default_rng(0)
    a = rand(rng, shapes[0], dtype, -20, 20)
    b = nonzero(rng, shapes[1], dtype) if op == "Div" else rand(rng, shapes[1], dtype)
    check_op(op, [a, b], opset=14)


def test_integer_div_truncates_toward_zero() -> None:
    a = np.array([7, -7, 7, -7, 6, -6, 0, 1], dtype=np.int64)
    b = np.array([2, 2, -2, -2, 3, -3, 5, -2], dtype=np.int64)
    (out,) = check_op("Div", [a, b])
    np.testing.assert_array_equal(out, [3, -3, -3, 3, 2, 2, 0, 0])


def test_float32_stays_float32_with_float32_scalar_constant() -> None:
    rng = np.random.default_rng(1)
    x = rand(rng, (3, 5), "float32")
    (out,) = check_op("Mul", [x, np.array(0.1, dtype=np.float32)], const_inputs=[1])
    assert out.dtype == np.float32


@pytest.mark.parametrize(
    ("base", "exponent", "opset"),
    [
        ("float32", "float32", 7),
        ("float32", "float32", 13),
        ("float32", "int64", 12),
        ("float32", "int32", 15),
        ("float64", "float32", 15),
        ("float16", "float32", 15),
        ("float16", "float16", 13),
        ("int32", "int32", 12),
        ("int64", "int64", 15),
        ("int64", "float32", 15),
    ],
)
def test_pow(base: str, exponent: str, opset: int) -> None:
    rng = np.random.default_rng(2)
    x = rand(rng, (2, 3, 4), base, 0, 4)
    if np.dtype(base).kind == "f":
        x = x + np.asarray(0.25, dtype=base)  # fractional powers of negatives are nan
    y = rand(rng, (3, 4), exponent, 0, 4)
    check_op("Pow", [x, y], opset=opset)


def test_pow_square_constant_exponent_and_scalar() -> None:
    rng = np.random.default_rng(3)
    x = rand(rng, (4, 5), "float32")
    check_op("Pow", [x, np.array(2.0, dtype=np.float32)], const_inputs=[1])
    check_op("Pow", [np.array(1.5, dtype=np.float32), np.array(3, dtype=np.int64)])


def test_pow_integer_negative_exponent() -> None:
    # numpy refuses it; C pow() truncated gives 1, -1 or 0 (reference evaluator cannot run it)
    x = np.array([1, -1, 2, -2, 1, -1], dtype=np.int64)
    y = np.array([-1, -1, -1, -1, -2, -3], dtype=np.int64)
    (out,) = check_op("Pow", [x, y], oracles=("onnxruntime",))
    np.testing.assert_array_equal(out, [1, -1, 0, 0, 1, -1])


@pytest.mark.parametrize(
    ("dtype", "fmod"), [("int32", 0), ("int64", 0), ("int64", 1), ("float32", 1), ("float64", 1)]
)
def test_mod(dtype: str, fmod: int) -> None:
    rng = np.random.default_rng(4)
    a = rand(rng, (3, 4), dtype, -20, 20)
    b = nonzero(rng, (4,), dtype)
    check_op("Mod", [a, b], {"fmod": fmod}, opset=13)


def test_mod_float_requires_fmod() -> None:
    x = np.ones((2,), dtype=np.float32)
    model, feeds = make_node_model("Mod", [x, x], {"fmod": 0}, opset=13)
    with pytest.raises(ShapeInferenceError, match="fmod must be 1"):
        run_ours(model, feeds)


def test_mismatched_dtypes_are_rejected() -> None:
    model, feeds = make_node_model(
        "Add", [np.ones(2, dtype=np.float32), np.ones(2, dtype=np.float64)]
    )
    with pytest.raises(ShapeInferenceError, match="one dtype"):
        run_ours(model, feeds)


def test_incompatible_broadcast_is_rejected() -> None:
    model, feeds = make_node_model("Mul", [np.ones((2, 3), "float32"), np.ones((4,), "float32")])
    with pytest.raises(ShapeInferenceError, match="broadcast"):
        run_ours(model, feeds)


# -- variadic ------------------------------------------------------------------------------


VARIADIC_SHAPES = [[(2, 3)], [(2, 3), (3,)], [(2, 1, 3), (4, 1), (1,)], [()], [(2, 3), (2, 3)]]
VARIADIC_CASES = [
    (op, dtype, opset, shapes)
    for op in ("Max", "Min", "Sum", "Mean")
    for dtype in (*FLOATS, "int32", "int64")
    for opset in (7, 8, 13)
    for shapes in VARIADIC_SHAPES
    # Sum and Mean are float-only; integer Max/Min arrive with opset 12
    if dtype in FLOATS or (op in ("Max", "Min") and opset >= 12)
    # broadcasting arrives with opset 8
    if opset >= 8 or len({*shapes}) == 1
]


@pytest.mark.parametrize(("op", "dtype", "opset", "shapes"), VARIADIC_CASES, ids=str)
def test_variadic(op: str, dtype: str, opset: int, shapes: list) -> None:
    oracles = ["onnxruntime", "reference"]
    if dtype == "float64" and (op == "Mean" or opset < 8):
        oracles.remove("onnxruntime")  # onnxruntime has no float64 Mean, nor Max/Min-6
    if op == "Mean" and len({*shapes}) > 1:
        oracles.remove("reference")  # the evaluator adds in place into input 0: no broadcast
    rng = np.random.default_rng(5)
    check_op(op, [rand(rng, s, dtype) for s in shapes], opset=opset, oracles=oracles)


@pytest.mark.parametrize("op", ["Max", "Min"])
def test_max_min_propagate_nan(op: str) -> None:
    a = np.array([1.0, np.nan, 3.0, np.nan], dtype=np.float32)
    b = np.array([np.nan, 2.0, 0.0, np.nan], dtype=np.float32)
    (out,) = check_op(op, [a, b], opset=13)
    assert np.isnan(out[[0, 1, 3]]).all()


# -- comparison, logic, selection ------------------------------------------------------------


@pytest.mark.parametrize("op", ["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"])
@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64"])
@pytest.mark.parametrize("shapes", SHAPE_PAIRS[:5], ids=str)
def test_comparison(op: str, dtype: str, shapes: tuple) -> None:
    rng = np.random.default_rng(6)
    # small integer-valued draws so that ties (equality) actually occur
    a = rand(rng, shapes[0], "int64", -2, 3).astype(dtype)
    b = rand(rng, shapes[1], "int64", -2, 3).astype(dtype)
    check_op(op, [a, b], opset=13)


def test_equal_bool() -> None:
    rng = np.random.default_rng(7)
    check_op("Equal", [rand(rng, (3, 4), "bool"), rand(rng, (4,), "bool")], opset=13)


@pytest.mark.parametrize("op", ["And", "Or", "Xor"])
@pytest.mark.parametrize("shapes", SHAPE_PAIRS, ids=str)
def test_logic(op: str, shapes: tuple) -> None:
    rng = np.random.default_rng(8)
    check_op(op, [rand(rng, shapes[0], "bool"), rand(rng, shapes[1], "bool")])


def test_not() -> None:
    rng = np.random.default_rng(9)
    check_op("Not", [rand(rng, (3, 4), "bool")])
    check_op("Not", [np.array(True)])


@pytest.mark.parametrize("dtype", ["float32", "float16", "int64", "bool"])
@pytest.mark.parametrize(
    "shapes", [((2, 3), (2, 3), (2, 3)), ((3, 1), (1, 4), ()), ((4,), (2, 1), (1, 4))], ids=str
)
def test_where(dtype: str, shapes: tuple) -> None:
    rng = np.random.default_rng(10)
    cond = rand(rng, shapes[0], "bool")
    # onnxruntime has no bool Where kernel
    oracles = ("reference",) if dtype == "bool" else ("onnxruntime", "reference")
    inputs = [cond, rand(rng, shapes[1], dtype), rand(rng, shapes[2], dtype)]
    check_op("Where", inputs, oracles=oracles)


def test_where_requires_bool_condition() -> None:
    x = np.ones((2,), dtype=np.float32)
    model, feeds = make_node_model("Where", [x, x, x])
    with pytest.raises(ShapeInferenceError, match="condition"):
        run_ours(model, feeds)


# -- unary math ------------------------------------------------------------------------------

#: op -> (low, high) of the input range it is tested on
UNARY = {
    "Exp": (-10, 10),
    "Log": (0.01, 50),
    "Sqrt": (0, 50),
    "Reciprocal": (0.1, 10),
    "Neg": (-10, 10),
    "Abs": (-10, 10),
    "Floor": (-10, 10),
    "Ceil": (-10, 10),
    "Round": (-10, 10),
    "Erf": (-5, 5),
    "Sign": (-3, 3),
    "Sin": (-7, 7),
    "Cos": (-7, 7),
}


@pytest.mark.parametrize("op", list(UNARY))
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", [(2, 3, 5), (), (0, 4)], ids=str)
def test_unary_float(op: str, dtype: str, shape: tuple) -> None:
    rng = np.random.default_rng(11)
    low, high = UNARY[op]
    x = rand(rng, shape, dtype, low, high)
    if (op, dtype) == ("Erf", "float64"):
        # onnxruntime has no float64 Erf; the evaluator rounds it through float32: use libm
        (out,) = check_op(op, [x], opset=13, oracles=())
        np.testing.assert_allclose(
            out, np.vectorize(math.erf, otypes=["d"])(x), rtol=1e-15, atol=1e-300
        )
        return
    check_op(op, [x], opset=13)


@pytest.mark.parametrize("op", ["Neg", "Abs", "Sign"])
@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_unary_int(op: str, dtype: str) -> None:
    rng = np.random.default_rng(12)
    check_op(op, [rand(rng, (3, 7), dtype, -9, 9)], opset=13)


@pytest.mark.filterwarnings("ignore:.*encountered in log:RuntimeWarning")  # the evaluator's
def test_unary_special_values() -> None:
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -1.0], dtype=np.float32)
    for op in ("Exp", "Log", "Sqrt", "Reciprocal", "Erf", "Sign", "Abs"):
        check_op(op, [x], opset=13)


def test_round_half_to_even() -> None:
    x = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 0.49999997, 2.51], dtype=np.float32)
    (out,) = check_op("Round", [x])
    np.testing.assert_array_equal(out, [-2, -2, -0, 0, 2, 2, 0, 3])


def test_erf_matches_libm_to_double_precision() -> None:
    x = np.concatenate(
        [np.linspace(-7, 7, 2001), [0.0, 0.46875, -0.46875, 4.0, -4.0, 1e-300, 30.0, -30.0]]
    )
    expected = np.array([math.erf(v) for v in x])
    np.testing.assert_allclose(erf_array(x), expected, rtol=1e-15, atol=1e-300)
    assert erf_array(np.array([np.inf, -np.inf])).tolist() == [1.0, -1.0]
    # the float32 path (two branches, evaluated on the whole array) is float32-accurate
    x32 = x.astype(np.float32)
    expected32 = np.array([math.erf(v) for v in x32.astype(np.float64)])
    np.testing.assert_allclose(erf_array(x32), expected32, rtol=4e-7, atol=2e-7)
    assert erf_array(np.array([np.inf, -np.inf, np.nan], np.float32))[:2].tolist() == [1, -1]
    assert np.isnan(erf_array(np.array([np.nan]))).all()


@pytest.mark.parametrize("dtype", FLOATS)
def test_isnan(dtype: str) -> None:
    x = np.array([[0.0, np.nan, np.inf], [-np.inf, -1.0, np.nan]], dtype=dtype)
    check_op("IsNaN", [x], opset=13)


@pytest.mark.parametrize("negative", [0, 1])
@pytest.mark.parametrize("positive", [0, 1])
def test_isinf(negative: int, positive: int) -> None:
    x = np.array([[0.0, np.nan, np.inf], [-np.inf, -1.0, 3e38]], dtype=np.float32)
    attrs = {"detect_negative": negative, "detect_positive": positive}
    check_op("IsInf", [x], attrs, opset=10)


def test_kernels_accept_read_only_and_broadcast_views() -> None:
    from edge_infer.engine.ops import elementwise as ew

    base = np.arange(6, dtype=np.float32).reshape(2, 3)
    base.flags.writeable = False
    view = np.broadcast_to(base[:, ::2], (4, 2, 2))
    np.testing.assert_array_equal(ew.add(view, view), view * 2)
    np.testing.assert_array_equal(ew.div(view, np.float32(2)), view / 2)
    assert ew.erf(view).dtype == np.float32
    assert isinstance(ew.add(np.array(1.0), np.array(2.0)), np.ndarray)
