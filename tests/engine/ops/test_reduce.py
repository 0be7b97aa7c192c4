"""Reductions, ArgMax/ArgMin and TopK against onnxruntime and the ONNX reference evaluator."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.engine.ops import reduce as red
from edge_infer.errors import EdgeInferError, ShapeInferenceError
from tests.engine.ops.harness import check_op, make_node_model, run_ours

REDUCE_OPS = [
    "ReduceSum",
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceSumSquare",
    "ReduceLogSum",
    "ReduceLogSumExp",
]
#: the opset from which ``axes`` is an input rather than an attribute
AXES_INPUT_SINCE = {op: 13 if op == "ReduceSum" else 18 for op in REDUCE_OPS}


def data_for(op: str, shape: tuple, dtype: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind in "iu":
        return rng.integers(-3 if op != "ReduceLogSum" else 1, 4, size=shape).astype(dtype)
    if op in ("ReduceLogSum", "ReduceProd"):
        return rng.uniform(0.5, 1.5, size=shape).astype(dtype)  # positive, product near 1
    return rng.uniform(-3, 3, size=shape).astype(dtype)


def reduce_check(
    op: str,
    x: np.ndarray,
    axes: list[int] | None,
    opset: int,
    attrs: dict | None = None,
    oracles: tuple[str, ...] = ("onnxruntime", "reference"),
) -> list[np.ndarray]:
    """Run a reduction with ``axes`` in the form ``opset`` expects (attribute or input)."""
    attrs = dict(attrs or {})
    inputs: list[np.ndarray | None] = [x]
    if opset >= AXES_INPUT_SINCE[op]:
        if axes is not None:
            inputs.append(np.array(axes, dtype=np.int64))
    elif axes is not None:
        attrs["axes"] = axes
    const = [k for k, a in enumerate(inputs) if k == 1 or a.size == 0]
    return check_op(op, inputs, attrs, opset=opset, const_inputs=const, oracles=oracles)


@pytest.mark.parametrize("op", REDUCE_OPS)
@pytest.mark.parametrize("axes", [None, [0], [1], [-1], [0, 2], [-3, -1], [2, 0, 1]], ids=str)
@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("opset", [11, 18])  # axes as an attribute, and as an input
def test_reduce_axes(op: str, axes: list | None, keepdims: int, opset: int) -> None:
    x = data_for(op, (2, 3, 4), "float32")
    reduce_check(op, x, axes, opset, {"keepdims": keepdims})


@pytest.mark.parametrize(
    ("op", "dtype"),
    [
        (op, dtype)
        for op in REDUCE_OPS
        for dtype in ("float16", "float64", "int32", "int64")
        # ONNX allows integer LogSum/LogSumExp, but neither oracle runs them
        if dtype.startswith("float") or op not in ("ReduceLogSum", "ReduceLogSumExp")
    ],
)
def test_reduce_dtypes(op: str, dtype: str) -> None:
    oracles = ["onnxruntime", "reference"]
    if op == "ReduceSumSquare" and dtype == "int32":
        oracles.remove("reference")  # the evaluator returns int64 for int32 ReduceSumSquare
    if dtype == "float16" and op in ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceSumSquare"):
        oracles.remove("onnxruntime")  # no float16 kernel in onnxruntime
    x = data_for(op, (3, 4, 5), dtype, seed=1)
    reduce_check(op, x, [0, 2], 18, oracles=tuple(oracles))
    reduce_check(op, x, None, 13, {"keepdims": 0}, oracles=tuple(oracles))


def test_integer_mean_truncates_toward_zero() -> None:
    x = np.array([[-3, 0], [3, 0], [-7, 0], [7, 0]], dtype=np.int32)
    (out,) = reduce_check("ReduceMean", x, [1], 18, {"keepdims": 0})
    np.testing.assert_array_equal(out, [-1, 1, -3, 3])


@pytest.mark.parametrize("op", REDUCE_OPS)
@pytest.mark.parametrize("noop", [0, 1])
@pytest.mark.parametrize("empty", ["omitted", "empty"])
def test_noop_with_empty_axes(op: str, noop: int, empty: str) -> None:
    x = data_for(op, (2, 3), "float32")
    opset = AXES_INPUT_SINCE[op]
    inputs = [x] if empty == "omitted" else [x, np.zeros((0,), dtype=np.int64)]
    attrs = {"noop_with_empty_axes": noop}
    (out,) = check_op(op, inputs, attrs, opset=opset, const_inputs=[1])
    # with the flag nothing is reduced, but the elementwise part (abs, square, log) applies
    assert out.shape == ((2, 3) if noop else (1, 1))


@pytest.mark.parametrize("op", REDUCE_OPS)
def test_reduce_scalar_input(op: str) -> None:
    x = np.array(0.75, dtype=np.float32)
    # the evaluator's ReduceLogSumExp cannot return a 0-d array
    oracles = ("onnxruntime",) if op == "ReduceLogSumExp" else ("onnxruntime", "reference")
    reduce_check(op, x, None, 18, {"keepdims": 1}, oracles=oracles)
    reduce_check(op, x, None, 13, {"keepdims": 0}, oracles=oracles)


@pytest.mark.parametrize("op", REDUCE_OPS)
@pytest.mark.filterwarnings("ignore:.*:RuntimeWarning")  # the evaluator's np.mean of nothing
def test_reduce_over_empty_axis_gives_identity(op: str) -> None:
    x = np.zeros((2, 0, 3), dtype=np.float32)
    expected = {"ReduceProd": 1.0, "ReduceMax": -np.inf, "ReduceMin": np.inf}.get(op, 0.0)
    expected = {"ReduceLogSum": -np.inf, "ReduceLogSumExp": -np.inf}.get(op, expected)
    # the spec leaves an empty mean undefined: we and the evaluator give 0/0 = nan,
    # onnxruntime gives 0
    oracles = ("reference",) if op == "ReduceMean" else ("onnxruntime", "reference")
    (out,) = reduce_check(op, x, [1], 18, {"keepdims": 0}, oracles=oracles)
    assert out.shape == (2, 3)
    if op != "ReduceMean":
        np.testing.assert_array_equal(out, np.full((2, 3), expected, dtype=np.float32))


def test_log_sum_exp_is_stable_for_large_inputs() -> None:
    x = np.array([[1000.0, 1000.0], [-1000.0, -1001.0], [-np.inf, -np.inf]], dtype=np.float32)
    (out,) = reduce_check("ReduceLogSumExp", x, [1], 18, {"keepdims": 0}, oracles=())
    np.testing.assert_allclose(out[:2], [1000 + np.log(2), -1000 + np.log1p(np.exp(-1))])
    assert out[2] == -np.inf


def test_reduce_rejects_bad_axes() -> None:
    x = np.ones((2, 3), dtype=np.float32)
    for axes, message in (([2], "out of range"), ([1, -1], "twice")):
        model, feeds = make_node_model("ReduceSum", [x], {"axes": axes}, opset=11)
        with pytest.raises(ShapeInferenceError, match=message):
            run_ours(model, feeds)


def test_reduce_axes_must_be_known_at_build_time() -> None:
    x = np.ones((2, 3), dtype=np.float32)
    model, feeds = make_node_model("ReduceMax", [x, np.array([1], dtype=np.int64)], opset=18)
    with pytest.raises(EdgeInferError, match="axes"):
        run_ours(model, feeds)


# -- ArgMax, ArgMin --------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2])
@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize(("opset", "last"), [(11, None), (12, 0), (13, 1), (13, None)], ids=str)
def test_arg_reduce(op: str, axis: int, keepdims: int, opset: int, last: int | None) -> None:
    rng = np.random.default_rng(2)
    x = rng.integers(0, 3, size=(3, 4, 5)).astype(np.float32)  # many ties
    attrs = {"axis": axis, "keepdims": keepdims}
    if last is not None:
        attrs["select_last_index"] = last
    check_op(op, [x], attrs, opset=opset)


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("dtype", ["float16", "float64", "int32", "int64", "uint8"])
def test_arg_reduce_dtypes(op: str, dtype: str) -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(0, 5, size=(4, 6)).astype(dtype)
    oracles = ["onnxruntime", "reference"]
    if dtype in ("float16", "uint8"):
        oracles.remove("onnxruntime")  # no kernel for these in onnxruntime
    check_op(op, [x], {"axis": 1, "select_last_index": 1}, opset=13, oracles=tuple(oracles))
    check_op(op, [x], {"axis": 0, "keepdims": 0}, opset=13, oracles=tuple(oracles))


def test_arg_reduce_rejects_empty_axis_and_scalars() -> None:
    model, feeds = make_node_model("ArgMax", [np.array(1.0, dtype=np.float32)], opset=13)
    with pytest.raises(ShapeInferenceError, match="rank >= 1"):
        run_ours(model, feeds)


# -- TopK ------------------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [None, 0, 1, -1, -2])
@pytest.mark.parametrize("k", [0, 1, 3])
@pytest.mark.parametrize("largest", [0, 1])
def test_topk_11(axis: int | None, k: int, largest: int) -> None:
    rng = np.random.default_rng(4)
    x = rng.integers(0, 4, size=(3, 5, 4)).astype(np.float32)  # many ties: index order matters
    attrs = {"largest": largest} | ({} if axis is None else {"axis": axis})
    check_op("TopK", [x, np.array([k], dtype=np.int64)], attrs, num_outputs=2, const_inputs=[1])


@pytest.mark.parametrize("opset", [9, 10])
def test_topk_legacy_forms(opset: int) -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    if opset < 10:
        check_op("TopK", [x], {"k": 3, "axis": 0}, num_outputs=2, opset=opset)
    else:
        k = np.array([3], dtype=np.int64)
        check_op("TopK", [x, k], {"axis": 0}, num_outputs=2, opset=opset, const_inputs=[1])


@pytest.mark.parametrize("dtype", ["float16", "float64", "int32", "int64", "uint8"])
@pytest.mark.parametrize("largest", [0, 1])
def test_topk_dtypes(dtype: str, largest: int) -> None:
    rng = np.random.default_rng(6)
    x = rng.integers(0, 6, size=(5, 7)).astype(dtype)
    oracles = ["onnxruntime", "reference"]
    if dtype in ("float16", "uint8"):
        oracles.remove("onnxruntime")  # no kernel for these in onnxruntime
    k = np.array([4], dtype=np.int64)
    attrs = {"largest": largest}
    check_op("TopK", [x, k], attrs, num_outputs=2, const_inputs=[1], oracles=tuple(oracles))


def test_topk_ties_prefer_the_smaller_index() -> None:
    x = np.array([[1, 3, 3, 2, 3, 1]], dtype=np.float32)
    values, indices = check_op(
        "TopK", [x, np.array([4], np.int64)], num_outputs=2, const_inputs=[1]
    )
    assert indices.tolist() == [[1, 2, 4, 3]] and values.tolist() == [[3, 3, 3, 2]]
    _, indices = check_op(
        "TopK", [x, np.array([3], np.int64)], {"largest": 0}, num_outputs=2, const_inputs=[1]
    )
    assert indices.tolist() == [[0, 5, 3]]


def test_topk_rejects_k_larger_than_axis() -> None:
    x = np.ones((2, 3), dtype=np.float32)
    model, feeds = make_node_model("TopK", [x, np.array([4], np.int64)], const_inputs=[1])
    with pytest.raises(ShapeInferenceError, match="K=4"):
        run_ours(model, feeds)


def test_kernels_accept_read_only_views() -> None:
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    base.flags.writeable = False
    view = np.broadcast_to(base[:, ::2], (2, 4, 3))
    values, indices = red.topk_11(view, np.array([2]), axis=1)
    assert values.shape == indices.shape == (2, 2, 3) and indices.dtype == np.int64
    assert red.argmax(view, axis=2).dtype == np.int64
    reduce_sum_13 = next(op.kernel for op in red.OPS.defs if op.key == ("", "ReduceSum", 13))
    assert reduce_sum_13(view, np.array([0, 2])).shape == (1, 4, 1)
