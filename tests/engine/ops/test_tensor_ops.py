"""Tensor creation, casting and indexing ops against onnxruntime and the ONNX reference."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, numpy_helper

from edge_infer.engine.ops import get_registry, tensor_ops
from edge_infer.errors import ShapeInferenceError
from tests.engine.ops.harness import check_op, make_node_model, run_ours

RNG = np.random.default_rng(1)


def rand(*shape: int, dtype: str = "float32") -> np.ndarray:
    if np.dtype(dtype).kind == "f":
        return (RNG.standard_normal(shape) * 3).astype(dtype)
    if np.dtype(dtype).kind == "b":
        return RNG.random(shape) > 0.5
    return RNG.integers(-50, 50, shape).astype(dtype)


def i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def scalar(value: float, dtype: str) -> np.ndarray:
    return np.array(value, dtype=dtype)


def tensor_attrs(attrs: dict) -> dict:
    """Array attributes as TensorProto (``make_node`` would turn them into FLOATS/INTS)."""
    return {
        k: numpy_helper.from_array(v) if isinstance(v, np.ndarray) else v for k, v in attrs.items()
    }


# -- Constant / ConstantOfShape / Range --------------------------------------------------------


@pytest.mark.parametrize(
    "attrs",
    [
        {"value": rand(2, 3)},
        {"value": rand(4, dtype="int64")},
        {"value": rand(2, 2, dtype="float16")},
        {"value_float": 2.5},
        {"value_floats": [1.0, -2.0, 3.5]},
        {"value_int": 7},
        {"value_ints": [3, -1, 4]},
    ],
    ids=lambda a: next(iter(a)) + (f"_{a['value'].dtype}" if "value" in a else ""),
)
def test_constant(attrs: dict) -> None:
    check_op("Constant", [], tensor_attrs(attrs), opset=13)


def test_constant_opset9_tensor() -> None:
    check_op("Constant", [], tensor_attrs({"value": rand(3, 1)}), opset=9)


def test_constant_string_is_refused() -> None:
    model, feeds = make_node_model("Constant", [], {"value_string": "hello"}, opset=13)
    with pytest.raises(ShapeInferenceError, match=r"string constants .* are not supported"):
        run_ours(model, feeds)


@pytest.mark.parametrize(
    ("shape", "value"),
    [
        ((2, 3), None),
        ((4,), np.array([7], np.int64)),
        ((2, 1, 3), np.array([1.5], np.float16)),
        ((2, 0), np.array([1], np.int32)),
        ((), np.array([3.0], np.float64)),
    ],
)
def test_constant_of_shape(shape: tuple, value: np.ndarray | None) -> None:
    attrs = {} if value is None else tensor_attrs({"value": value})
    check_op("ConstantOfShape", [i64(*shape)], attrs, opset=9, const_inputs=[0])


def test_constant_of_shape_needs_constant_shape() -> None:
    model, feeds = make_node_model("ConstantOfShape", [i64(2, 3)])
    with pytest.raises(ShapeInferenceError, match=r"ConstantOfShape's shape .* must be known"):
        run_ours(model, feeds)


@pytest.mark.parametrize(
    ("start", "limit", "delta", "dtype"),
    [
        (0, 10, 3, "int64"),
        (10, 0, -3, "int64"),
        (5, 5, 1, "int32"),
        (1, 20, 4, "int32"),
        (0.5, 3.0, 0.25, "float32"),
        (-1.0, -4.5, -0.5, "float64"),
        (3.0, 1.0, 1.0, "float32"),
    ],
)
def test_range(start: float, limit: float, delta: float, dtype: str) -> None:
    inputs = [scalar(start, dtype), scalar(limit, dtype), scalar(delta, dtype)]
    check_op("Range", inputs, opset=11, const_inputs=[0, 1, 2])


def test_range_needs_constant_limits() -> None:
    model, feeds = make_node_model("Range", [i64(0)[0], i64(5)[0], i64(1)[0]], const_inputs=[0, 2])
    with pytest.raises(ShapeInferenceError, match=r"Range's limit .* must be known"):
        run_ours(model, feeds)


# -- Cast / CastLike / Identity / Dropout ------------------------------------------------------

CASTS = [
    ("float32", TensorProto.INT32),
    ("float32", TensorProto.INT64),
    ("float32", TensorProto.FLOAT16),
    ("float32", TensorProto.DOUBLE),
    ("float32", TensorProto.BOOL),
    ("float16", TensorProto.FLOAT),
    ("float64", TensorProto.INT8),
    ("int64", TensorProto.FLOAT),
    ("int32", TensorProto.INT8),
    ("int64", TensorProto.INT32),
    ("bool", TensorProto.FLOAT),
    ("bool", TensorProto.INT64),
    ("uint8", TensorProto.FLOAT16),
]


@pytest.mark.parametrize(("src", "to"), CASTS)
@pytest.mark.parametrize("opset", [13, 19])
def test_cast(src: str, to: int, opset: int) -> None:
    data = rand(3, 5, dtype=src)
    if src == "float64" and to == TensorProto.INT8:
        data = np.clip(data, -100, 100)  # out-of-range float → int is undefined behaviour
    if src == "uint8":
        data = RNG.integers(0, 255, (3, 5)).astype(np.uint8)
    data.flat[:3] = [0, 1, 0] if src != "float32" else [-2.7, 2.7, -0.5]  # truncation
    check_op("Cast", [data], {"to": to} | ({"saturate": 1} if opset >= 19 else {}), opset=opset)


def test_cast_to_string_is_refused() -> None:
    model, feeds = make_node_model("Cast", [rand(3)], {"to": TensorProto.STRING})
    with pytest.raises(ShapeInferenceError, match=r"attribute to: .*STRING is not supported"):
        run_ours(model, feeds)


@pytest.mark.parametrize(
    ("src", "like"), [("float32", "int64"), ("int32", "float16"), ("float64", "float32")]
)
@pytest.mark.parametrize("opset", [15, 19])
def test_cast_like(src: str, like: str, opset: int) -> None:
    check_op("CastLike", [rand(2, 3, dtype=src), rand(1, dtype=like)], opset=opset)


@pytest.mark.parametrize("dtype", ["float32", "int64", "bool", "float16"])
def test_identity(dtype: str) -> None:
    check_op("Identity", [rand(2, 3, dtype=dtype)], opset=16)


@pytest.mark.parametrize("opset", [7, 10, 12, 13])
@pytest.mark.parametrize("with_mask", [False, True])
def test_dropout_inference(opset: int, with_mask: bool) -> None:
    inputs = [rand(3, 4)]
    attrs: dict = {}
    if opset >= 12:
        inputs += [scalar(0.3, "float32"), np.array(False)]
    else:
        attrs["ratio"] = 0.3
    oracles = ("onnxruntime", "reference")
    if opset < 12:
        # onnxruntime's Dropout 7–11 fills the mask with 0/false (not the spec's all-kept
        # mask), and the reference evaluator only implements Dropout 12
        oracles = ("onnxruntime",) if not with_mask else ()
    outs = check_op(
        "Dropout",
        inputs,
        attrs,
        num_outputs=2 if with_mask else 1,
        opset=opset,
        const_inputs=[1, 2],
        oracles=oracles,
    )
    if with_mask:
        assert outs[1].dtype == (np.float32 if opset < 10 else np.bool_)
        assert outs[1].shape == (3, 4) and np.all(outs[1])


def test_dropout_training_mode_is_refused() -> None:
    model, feeds = make_node_model(
        "Dropout", [rand(3), None, np.array(True)], opset=13, const_inputs=[2]
    )
    with pytest.raises(ShapeInferenceError, match=r"training_mode = true is not supported"):
        run_ours(model, feeds)


# -- Gather family -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("axis", "indices"),
    [
        (0, i64(0, 2, -1)),
        (1, i64(1, -3, 0, 1)),
        (-1, np.array([[0, -1], [2, 3]], np.int32)),
        (0, np.array(-2, np.int64)),
        (2, i64()),
        (1, np.array([[[1]]], np.int64)),
    ],
)
@pytest.mark.parametrize("opset", [11, 13])
def test_gather(axis: int, indices: np.ndarray, opset: int) -> None:
    # empty indices are constant: bound graph inputs cannot have 0-sized dims
    const = [1] if indices.size == 0 else []
    check_op("Gather", [rand(3, 4, 5), indices], {"axis": axis}, opset=opset, const_inputs=const)


def test_gather_int_data_and_constant_indices() -> None:
    check_op("Gather", [rand(6, 2, dtype="int64"), i64(5, 0)], {"axis": 0}, const_inputs=[1])


def test_gather_bad_axis() -> None:
    model, feeds = make_node_model("Gather", [rand(3, 4), i64(0)], {"axis": -3})
    with pytest.raises(ShapeInferenceError, match=r"attribute axis = -3 is out of range"):
        run_ours(model, feeds)


@pytest.mark.parametrize(
    ("axis", "ind_shape"), [(0, (2, 4, 5)), (1, (3, 6, 5)), (-1, (3, 4, 2)), (1, (2, 3, 1))]
)
def test_gather_elements(axis: int, ind_shape: tuple) -> None:
    data = rand(3, 4, 5)
    dim = data.shape[axis]
    indices = RNG.integers(-dim, dim, ind_shape).astype(np.int64)
    # the reference evaluator mis-slices shapes for a negative axis and, unlike the spec and
    # onnxruntime, wants indices as big as the data outside the axis
    smaller = any(i < d for k, (i, d) in enumerate(zip(ind_shape, data.shape)) if k != axis % 3)
    oracles = ("onnxruntime",) if axis < 0 or smaller else ("onnxruntime", "reference")
    check_op("GatherElements", [data, indices], {"axis": axis}, opset=13, oracles=oracles)


@pytest.mark.parametrize(
    ("data_shape", "ind_shape", "batch_dims"),
    [
        ((4, 5, 6), (3, 1), 0),
        ((4, 5, 6), (2, 3, 2), 0),
        ((4, 5, 6), (3,), 0),
        ((4, 5, 6), (4, 2, 1), 1),
        ((4, 5, 6), (4, 5, 1), 2),
        ((2, 3, 4, 5), (2, 3, 2), 1),
    ],
)
def test_gather_nd(data_shape: tuple, ind_shape: tuple, batch_dims: int) -> None:
    data = rand(*data_shape)
    k = ind_shape[-1]
    dims = np.array(data_shape[batch_dims : batch_dims + k])
    indices = (RNG.random(ind_shape) * dims).astype(np.int64)
    indices[..., 0] -= dims[0] * (indices[..., 0] % 2)  # some negative indices
    check_op("GatherND", [data, indices], {"batch_dims": batch_dims}, opset=13)


# -- Scatter family ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("opset", "reduction", "indices", "upd_shape"),
    [
        (11, None, i64(4, -1, 0).reshape(3, 1), (3, 5, 6)),
        (13, None, np.array([[0, 1], [2, 3], [-1, 0]], np.int64), (3, 6)),
        (16, "add", np.array([[0, 1], [0, 1], [2, 2]], np.int64), (3, 6)),
        (16, "mul", i64(1, 1, 3).reshape(3, 1), (3, 5, 6)),
        (18, "max", np.array([[1, 2, 3], [1, 2, 3], [0, 0, 0]], np.int64), (3,)),
        (18, "min", np.array([[[1, 2]], [[1, 2]]], np.int64), (2, 1, 6)),
    ],
)
def test_scatter_nd(
    opset: int, reduction: str | None, indices: np.ndarray, upd_shape: tuple
) -> None:
    attrs = {} if reduction is None else {"reduction": reduction}
    # onnxruntime rejects negative ScatterND indices; the spec and the reference allow them
    oracles = ("reference",) if indices.min() < 0 else ("onnxruntime", "reference")
    check_op(
        "ScatterND", [rand(5, 5, 6), indices, rand(*upd_shape)], attrs, opset=opset, oracles=oracles
    )


@pytest.mark.parametrize(
    ("axis", "reduction", "opset"),
    [
        (0, None, 11),
        (1, None, 13),
        (-1, "add", 16),
        (0, "mul", 16),
        (1, "max", 18),
        (-2, "min", 18),
    ],
)
def test_scatter_elements(axis: int, reduction: str | None, opset: int) -> None:
    data = rand(4, 5)
    dim = data.shape[axis]
    if reduction is None:  # unique targets along the axis: no write order to depend on
        indices = np.stack([RNG.permutation(np.arange(-dim, 0))[:3] for _ in range(3)])
        indices = indices.T if axis in (0, -2) else indices
    else:
        indices = RNG.integers(-dim, dim, (3, 3))
    attrs = {"axis": axis} | ({} if reduction is None else {"reduction": reduction})
    check_op("ScatterElements", [data, indices.astype(np.int64), rand(3, 3)], attrs, opset=opset)


# -- Trilu / OneHot / CumSum -------------------------------------------------------------------


@pytest.mark.parametrize("upper", [0, 1])
@pytest.mark.parametrize("k", [None, -1, 0, 2, 10])
def test_trilu(upper: int, k: int | None) -> None:
    inputs = [rand(2, 4, 5)] + ([] if k is None else [np.array(k, np.int64)])
    check_op("Trilu", inputs, {"upper": upper}, opset=14, const_inputs=[1])


def test_trilu_int() -> None:
    check_op("Trilu", [rand(3, 3, dtype="int32"), np.array(1, np.int64)], {"upper": 0}, opset=14)


@pytest.mark.parametrize("axis", [-1, 0, 1, -3])
@pytest.mark.parametrize(
    ("values", "depth"),
    [
        (np.array([0, 1], np.float32), np.array(5)),
        (np.array([-2, 7], np.int64), np.array(4)),
        (np.array([0.5, 2], np.float32), np.array(5.0)),
    ],
)
def test_one_hot(axis: int, values: np.ndarray, depth: np.ndarray) -> None:
    indices = np.array([[0, 3, -1], [4, -5, 9]], np.int64)  # -5 and 9 are out of range for 5
    # onnxruntime has no OneHot kernel for (int64 indices, float depth, float values)
    oracles = ("reference",) if depth.dtype.kind == "f" else ("onnxruntime", "reference")
    check_op(
        "OneHot",
        [indices, depth, values],
        {"axis": axis},
        opset=11,
        const_inputs=[1],
        oracles=oracles,
    )


def test_one_hot_needs_constant_depth() -> None:
    model, feeds = make_node_model("OneHot", [i64(1, 2), i64(3), np.array([0, 1], np.float32)])
    with pytest.raises(ShapeInferenceError, match=r"OneHot's depth .* must be known"):
        run_ours(model, feeds)


@pytest.mark.parametrize(("exclusive", "reverse"), [(0, 0), (1, 0), (0, 1), (1, 1)])
@pytest.mark.parametrize("axis", [0, -1])
@pytest.mark.parametrize("dtype", ["float32", "int32", "float64"])
def test_cumsum(exclusive: int, reverse: int, axis: int, dtype: str) -> None:
    attrs = {"exclusive": exclusive, "reverse": reverse}
    check_op(
        "CumSum",
        [rand(3, 4, dtype=dtype), np.array(axis, np.int32)],
        attrs,
        opset=14,
        const_inputs=[1],
    )


# -- registry and kernels on awkward inputs ----------------------------------------------------


def test_nonzero_is_not_registered() -> None:
    """NonZero's output shape depends on run-time data; the importer must report it."""
    assert ("", "NonZero") not in get_registry()


def test_kernels_accept_read_only_views_and_do_not_mutate() -> None:
    base = rand(5, 6)
    base.setflags(write=False)
    view = base[::2, ::-1]
    before = view.copy()
    ind = np.broadcast_to(np.array([[1]], np.int64), (3, 2))
    upd = np.broadcast_to(np.float32(9), (3, 2))
    np.testing.assert_array_equal(
        tensor_ops.gather_elements(view, ind, axis=1),
        np.take_along_axis(before, np.array(ind), axis=1),
    )
    out = tensor_ops.scatter_elements(view, ind, upd, axis=1, reduction="add")
    assert out.flags.writeable and out[0, 1] == before[0, 1] + 18
    out = tensor_ops.scatter_nd(view, np.array([[0]], np.int64), upd[:1, :1].repeat(6, 1))
    assert np.all(out[0] == 9)
    assert tensor_ops.cumsum(view, np.array(1), reverse=1, exclusive=1).dtype == np.float32
    assert tensor_ops.cast(view, TensorProto.FLOAT16).dtype == np.float16
    np.testing.assert_array_equal(view, before)
