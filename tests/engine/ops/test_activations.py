"""Activation ops against onnxruntime and the ONNX reference evaluator."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from edge_infer.engine.ops import activations as act
from edge_infer.errors import ShapeInferenceError
from tests.engine.ops.harness import check_op, make_node_model, run_ours

FLOATS = ["float32", "float16", "float64"]

#: (op, attrs, opset)
UNARY_CASES = [
    ("Relu", {}, 14),
    ("LeakyRelu", {}, 16),
    ("LeakyRelu", {"alpha": 0.2}, 7),
    ("Elu", {}, 7),
    ("Elu", {"alpha": 0.5}, 7),
    ("Selu", {}, 7),
    ("Selu", {"alpha": 2.0, "gamma": 3.0}, 7),
    ("Celu", {}, 12),
    ("Celu", {"alpha": 2.0}, 12),
    ("Sigmoid", {}, 13),
    ("HardSigmoid", {}, 7),
    ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, 7),
    ("HardSwish", {}, 14),
    ("Tanh", {}, 13),
    ("Softplus", {}, 7),
    ("Softsign", {}, 7),
    ("Mish", {}, 18),
    ("Gelu", {}, 20),
    ("Gelu", {"approximate": "tanh"}, 20),
    ("ThresholdedRelu", {}, 10),
    ("ThresholdedRelu", {"alpha": 0.5}, 10),
]


def rand(rng: np.random.Generator, shape: tuple, dtype: str, scale: float = 4.0) -> np.ndarray:
    return (rng.standard_normal(shape) * scale).astype(dtype)


def oracles_for(op: str, dtype: str, shape: tuple) -> tuple[str, ...]:
    """Both oracles, minus those that cannot run or round the case (each reason below)."""
    oracles = ["onnxruntime", "reference"]
    missing_in_ort = {  # onnxruntime has no kernel for these (op, dtype) pairs
        "float16": {"Selu", "Celu", "HardSigmoid", "Softsign", "ThresholdedRelu", "Mish", "Elu"},
        "float64": {"LeakyRelu", "Elu", "Selu", "HardSigmoid", "Softplus"}
        | {"Celu", "HardSwish", "Softsign", "ThresholdedRelu", "Mish", "Gelu"},
    }
    if op in missing_in_ort.get(dtype, set()):
        oracles.remove("onnxruntime")
    if dtype == "float64" and op in FLOAT64_EXACT:
        # the evaluator expands these as ONNX functions with float32 constants and a float32
        # Erf, so it is float32-accurate only: checked against an exact formula instead
        oracles.remove("reference")
    if op == "Softsign" and shape == ():
        oracles.remove("reference")  # the evaluator's Softsign cannot return a 0-d array
    return tuple(oracles)


def _gelu_exact(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + np.vectorize(math.erf, otypes=["d"])(x / math.sqrt(2)))


def _gelu_tanh(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


#: float64 formulas for the ops neither oracle computes in float64
FLOAT64_EXACT = {
    "Gelu": lambda x, attrs: _gelu_tanh(x) if attrs else _gelu_exact(x),
    "HardSwish": lambda x, attrs: x * np.clip(x / 6 + 0.5, 0, 1),
}


@pytest.mark.parametrize(("op", "attrs", "opset"), UNARY_CASES, ids=str)
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), ()], ids=str)
def test_unary_activation(op: str, attrs: dict, opset: int, dtype: str, shape: tuple) -> None:
    rng = np.random.default_rng(0)
    x = rand(rng, shape, dtype)
    (out,) = check_op(op, [x], attrs, opset=opset, oracles=oracles_for(op, dtype, shape))
    if dtype == "float64" and op in FLOAT64_EXACT:
        np.testing.assert_allclose(out, FLOAT64_EXACT[op](x, attrs), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("op", ["Sigmoid", "Softplus", "Mish", "Elu", "Selu", "Celu", "Gelu"])
@pytest.mark.parametrize("dtype", FLOATS)
def test_large_magnitudes_are_stable(op: str, dtype: str) -> None:
    big = np.finfo(dtype).max
    x = np.array([-big, -1e4, -100, -30, -1, 0, 1, 30, 100, 1e4, big], dtype=dtype)
    opset = {"Celu": 12, "Mish": 18, "Gelu": 20}.get(op, 13)
    # no overflow warnings from our kernels; the oracles may warn, so call the kernel directly
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from edge_infer.engine.ops import get_registry

        out = get_registry().resolve("", op, opset).kernel(x)  # type: ignore[union-attr]
    assert out.dtype == x.dtype and np.isfinite(out[1:-1]).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_op(op, [x[1:-1]], opset=opset, oracles=("reference",))


@pytest.mark.parametrize("dtype", ["int8", "int32"])
def test_relu_integer(dtype: str) -> None:
    x = np.arange(-6, 6, dtype=dtype).reshape(3, 4)
    check_op("Relu", [x], opset=14)


@pytest.mark.parametrize(
    ("x_shape", "slope_shape"),
    [((2, 3, 4, 4), (3, 1, 1)), ((2, 3, 4), (4,)), ((2, 3), ()), ((2, 3), (1,)), ((2, 3), (2, 3))],
    ids=str,
)
@pytest.mark.parametrize("opset", [7, 9, 16])
def test_prelu(x_shape: tuple, slope_shape: tuple, opset: int) -> None:
    rng = np.random.default_rng(1)
    x, slope = rand(rng, x_shape, "float32"), rand(rng, slope_shape, "float32", 0.3)
    check_op("PRelu", [x, slope], opset=opset)
    check_op("PRelu", [x, slope], opset=opset, const_inputs=[1])


@pytest.mark.parametrize("dtype", ["float16", "float64", "int32", "int64"])
def test_prelu_dtypes(dtype: str) -> None:
    rng = np.random.default_rng(2)
    x = (rand(rng, (2, 3, 4), "float32") * 3).astype(dtype)
    slope = np.array([[1], [2], [3]], dtype=dtype) if dtype.startswith("int") else None
    slope = slope if slope is not None else rand(rng, (3, 1), dtype, 0.3)
    check_op("PRelu", [x, slope], opset=16)


def test_prelu_rejects_slope_that_would_grow_x() -> None:
    x = np.ones((3, 1), dtype=np.float32)
    model, feeds = make_node_model("PRelu", [x, np.ones((3, 4), np.float32)], opset=16)
    with pytest.raises(ShapeInferenceError, match="does not broadcast to X"):
        run_ours(model, feeds)


# -- Clip ------------------------------------------------------------------------------------

F32 = np.float32


@pytest.mark.parametrize(
    "attrs", [{}, {"min": -1.0}, {"max": 0.5}, {"min": -1.0, "max": 1.5}, {"min": 1.0, "max": 0.0}]
)
@pytest.mark.parametrize("dtype", FLOATS)
def test_clip_6_attributes(attrs: dict, dtype: str) -> None:
    rng = np.random.default_rng(3)
    oracles = ["onnxruntime", "reference"]
    if dtype != "float32" or attrs.get("min", 0) > attrs.get("max", 1):
        # onnxruntime has no float16/float64 Clip-6 kernel, and refuses min > max at load
        oracles.remove("onnxruntime")
    check_op("Clip", [rand(rng, (3, 4, 5), dtype, 2)], attrs, opset=7, oracles=oracles)


@pytest.mark.parametrize(
    "bounds", [(None, None), (-1.0, None), (None, 0.5), (-1.0, 1.5), (1.0, 0.0)], ids=str
)
@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("const", [True, False])
def test_clip_11_inputs(bounds: tuple, opset: int, const: bool) -> None:
    rng = np.random.default_rng(4)
    inputs = [rand(rng, (3, 4, 5), "float32", 2)]
    inputs += [None if b is None else np.array(b, dtype=F32) for b in bounds]
    consts = [1, 2] if const else []
    check_op("Clip", inputs, opset=opset, const_inputs=consts)


@pytest.mark.parametrize("dtype", ["float16", "float64", "int32", "int64", "uint8"])
def test_clip_12_dtypes(dtype: str) -> None:
    rng = np.random.default_rng(5)
    x = (rand(rng, (4, 6), "float32", 50) + (100 if dtype == "uint8" else 0)).astype(dtype)
    low, high = np.array(80 if dtype == "uint8" else -20, dtype), np.array(120, dtype)
    check_op("Clip", [x, low, high], opset=13)
    check_op("Clip", [x, None, high], opset=12)


def test_clip_rejects_non_scalar_bounds() -> None:
    x = np.ones((2, 2), dtype=F32)
    model, feeds = make_node_model("Clip", [x, np.zeros((2,), F32)], opset=13)
    with pytest.raises(ShapeInferenceError, match="must be a scalar"):
        run_ours(model, feeds)


# -- Softmax, LogSoftmax, Hardmax ------------------------------------------------------------


def legacy_expected(op: str, x: np.ndarray, axis: int) -> np.ndarray:
    """Opset 1-12 semantics written out: flatten to 2-D at ``axis``, normalise rows."""
    rows = x.astype(np.float64).reshape(int(np.prod(x.shape[: axis % x.ndim])), -1)
    if op == "Hardmax":
        out = np.zeros_like(rows)
        out[np.arange(len(rows)), rows.argmax(axis=1)] = 1
    else:
        shifted = rows - rows.max(axis=1, keepdims=True)
        log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        out = log_softmax if op == "LogSoftmax" else np.exp(log_softmax)
    return out.reshape(x.shape).astype(x.dtype)


def softmax_oracles(op: str, dtype: str, opset: int) -> tuple[str, ...]:
    oracles = ["onnxruntime", "reference"]
    if opset < 13:
        # the evaluator applies the opset-13 single-axis semantics to every version;
        # onnxruntime implements the flatten-to-2-D semantics of opsets 1-12
        oracles.remove("reference")
    if op == "Hardmax" and dtype != "float32":
        oracles.remove("onnxruntime")  # onnxruntime's Hardmax is float32 only
    return tuple(oracles)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
@pytest.mark.parametrize(
    ("opset", "axis"),
    [
        *[(11, None), (11, 0), (11, 1), (11, 2), (11, -1), (11, -3), (7, None), (7, 2)],
        *[(13, None), (13, 0), (13, 1), (13, -2), (13, 3)],
    ],
    ids=str,
)
def test_softmax_family_axes(op: str, opset: int, axis: int | None) -> None:
    rng = np.random.default_rng(6)
    x = rand(rng, (2, 3, 4, 5), "float32")
    attrs = {} if axis is None else {"axis": axis}
    (out,) = check_op(op, [x], attrs, opset=opset, oracles=softmax_oracles(op, "float32", opset))
    if opset < 13:
        expected = legacy_expected(op, x, 1 if axis is None else axis)
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax", "Hardmax"])
@pytest.mark.parametrize("dtype", ["float16", "float64"])
@pytest.mark.parametrize("opset", [11, 13])
def test_softmax_family_dtypes(op: str, dtype: str, opset: int) -> None:
    rng = np.random.default_rng(7)
    x = rand(rng, (3, 4, 6), dtype)
    (out,) = check_op(op, [x], opset=opset, oracles=softmax_oracles(op, dtype, opset))
    if opset < 13:
        tol = 2e-3 if dtype == "float16" else 1e-12
        np.testing.assert_allclose(out, legacy_expected(op, x, 1), rtol=tol, atol=tol)


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_softmax_subtracts_the_max(op: str) -> None:
    x = np.array([[1000.0, 1001.0, 999.0], [-1000.0, -1e4, -999.0]], dtype=F32)
    # the evaluator's LogSoftmax takes log(softmax), which underflows to -inf here
    oracles = ("onnxruntime",) if op == "LogSoftmax" else ("onnxruntime", "reference")
    (out,) = check_op(op, [x], opset=13, oracles=oracles)
    assert np.isfinite(out).all()


def test_hardmax_ties_pick_the_first() -> None:
    x = np.array([[[1, 3, 3], [2, 2, 0]], [[5, 5, 5], [0, 7, 7]]], dtype=F32)
    (out,) = check_op("Hardmax", [x], opset=13)
    assert out.sum(axis=-1).tolist() == [[1, 1], [1, 1]]
    (out,) = check_op("Hardmax", [x], {"axis": 1}, opset=11, oracles=("onnxruntime",))
    np.testing.assert_array_equal(out, legacy_expected("Hardmax", x, 1))


def test_softmax_axis_out_of_range() -> None:
    model, feeds = make_node_model("Softmax", [np.ones((2, 3), F32)], {"axis": 2}, opset=13)
    with pytest.raises(ShapeInferenceError, match="axis=2"):
        run_ours(model, feeds)


def test_gelu_rejects_unknown_approximation() -> None:
    x = np.ones((2,), dtype=F32)
    model, feeds = make_node_model("Gelu", [x], {"approximate": "fast"}, opset=20)
    with pytest.raises(ShapeInferenceError, match="approximate"):
        run_ours(model, feeds)


def test_kernels_accept_read_only_views_and_keep_dtype() -> None:
    base = np.linspace(-5, 5, 24, dtype=F32).reshape(4, 6)
    base.flags.writeable = False
    view = np.broadcast_to(base[:, ::2], (2, 4, 3))
    for out in (
        act.sigmoid(view),
        act.mish(view),
        act.leaky_relu(view, alpha=0.1),
        act.softmax_13(view),
        act.clip_11(view, np.array(-1, F32), None),
        act.gelu(view),
    ):
        assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == view.shape
