"""Shape ops against onnxruntime and the ONNX reference evaluator."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.engine.ops import shape_ops
from edge_infer.errors import EdgeInferError, ShapeInferenceError
from tests.engine.ops.harness import check_op, make_node_model, run_ours

RNG = np.random.default_rng(0)
I64_MAX, I64_MIN = np.iinfo(np.int64).max, np.iinfo(np.int64).min


def rand(*shape: int, dtype: str = "float32") -> np.ndarray:
    if np.dtype(dtype).kind == "f":
        return RNG.standard_normal(shape).astype(dtype)
    if np.dtype(dtype).kind == "b":
        return RNG.random(shape) > 0.5
    return RNG.integers(-50, 50, shape).astype(dtype)


def i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


# -- Reshape / Flatten / Transpose -------------------------------------------------------------


@pytest.mark.parametrize("opset", [7, 13, 14])
@pytest.mark.parametrize(
    ("in_shape", "target"),
    [
        ((2, 3, 4), (4, -1)),
        ((2, 3, 4), (0, 0, -1)),
        ((2, 3, 4), (-1,)),
        ((2, 3, 4), (2, 0, 2, 2)),
        ((6,), (1, 2, 1, 3)),
        ((1,), ()),
    ],
)
def test_reshape(opset: int, in_shape: tuple, target: tuple) -> None:
    check_op("Reshape", [rand(*in_shape), i64(*target)], opset=opset, const_inputs=[1])


@pytest.mark.parametrize("dtype", ["float16", "float64", "int64", "int8", "bool"])
def test_reshape_dtypes(dtype: str) -> None:
    check_op("Reshape", [rand(2, 6, dtype=dtype), i64(3, 4)], const_inputs=[1])


@pytest.mark.parametrize(("allowzero", "target"), [(1, (3, 0, 4)), (0, (0, 4, 0)), (1, (0, 3))])
def test_reshape_allowzero_empty(allowzero: int, target: tuple) -> None:
    data = np.zeros((0, 4, 3), np.float32)  # constant: bound graph inputs have no 0 dims
    check_op(
        "Reshape", [data, i64(*target)], {"allowzero": allowzero}, opset=14, const_inputs=[0, 1]
    )


def test_reshape_errors() -> None:
    model, feeds = make_node_model("Reshape", [rand(2, 3), i64(4, -1)], const_inputs=[1])
    with pytest.raises(ShapeInferenceError, match=r"cannot reshape"):
        run_ours(model, feeds)
    model, feeds = make_node_model("Reshape", [rand(2, 3), i64(3, 2)])
    with pytest.raises(ShapeInferenceError, match=r"target shape .* must be known at build"):
        run_ours(model, feeds)
    model, feeds = make_node_model("Reshape", [rand(2, 3), i64(-1, -1)], const_inputs=[1])
    with pytest.raises(ShapeInferenceError, match=r"more than one -1"):
        run_ours(model, feeds)


@pytest.mark.parametrize(("opset", "axis"), [(9, 0), (9, 2), (11, 4), (11, -1), (13, -4), (13, 1)])
def test_flatten(opset: int, axis: int) -> None:
    check_op("Flatten", [rand(2, 3, 4, 5)], {"axis": axis}, opset=opset)


def test_flatten_bad_axis() -> None:
    model, feeds = make_node_model("Flatten", [rand(2, 3)], {"axis": 3})
    with pytest.raises(ShapeInferenceError, match=r"axis = 3 is out of range"):
        run_ours(model, feeds)


@pytest.mark.parametrize("perm", [None, [0, 2, 1, 3], [3, 1, 0, 2]])
@pytest.mark.parametrize("dtype", ["float32", "float16", "int32"])
def test_transpose(perm: list | None, dtype: str) -> None:
    attrs = {} if perm is None else {"perm": perm}
    check_op("Transpose", [rand(2, 3, 4, 5, dtype=dtype)], attrs)


def test_transpose_bad_perm() -> None:
    model, feeds = make_node_model("Transpose", [rand(2, 3)], {"perm": [0, 0]})
    with pytest.raises(ShapeInferenceError, match=r"perm = \[0, 0\] is not a permutation"):
        run_ours(model, feeds)


# -- Squeeze / Unsqueeze -----------------------------------------------------------------------


@pytest.mark.parametrize("axes", [None, [0], [0, -1], [-3]])
@pytest.mark.parametrize("opset", [7, 11, 13])
def test_squeeze(axes: list | None, opset: int) -> None:
    if opset == 7 and axes is not None and min(axes) < 0:
        pytest.skip("negative axes arrive with opset 11")
    data = rand(1, 3, 1, 4, 1)[..., 0:1] if axes == [-3] else rand(1, 3, 1, 4, 1)
    if opset >= 13:
        inputs = [data] if axes is None else [data, i64(*axes)]
        check_op("Squeeze", inputs, opset=opset, const_inputs=[1])
    else:
        check_op("Squeeze", [data], {} if axes is None else {"axes": axes}, opset=opset)


def test_squeeze_non_unit_axis() -> None:
    model, feeds = make_node_model("Squeeze", [rand(1, 3), i64(1)], opset=13, const_inputs=[1])
    with pytest.raises(ShapeInferenceError, match=r"dim 1 has size 3, not 1"):
        run_ours(model, feeds)


@pytest.mark.parametrize(
    ("shape", "axes"), [((3, 4), [0]), ((3, 4), [0, -1]), ((3, 4), [1, 3]), ((), [0]), ((2,), [-2])]
)
@pytest.mark.parametrize("opset", [11, 13])
def test_unsqueeze(shape: tuple, axes: list, opset: int) -> None:
    data = rand(*shape)
    if opset >= 13:
        check_op("Unsqueeze", [data, i64(*axes)], opset=opset, const_inputs=[1])
    else:
        check_op("Unsqueeze", [data], {"axes": axes}, opset=opset)


def test_unsqueeze_duplicate_axes() -> None:
    model, feeds = make_node_model("Unsqueeze", [rand(3), i64(0, -3)], opset=13, const_inputs=[1])
    with pytest.raises(ShapeInferenceError, match=r"repeats an axis"):
        run_ours(model, feeds)


# -- Shape / Size ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end"), [(None, None), (1, None), (-2, None), (0, -1), (-10, 10), (3, 1)]
)
def test_shape(start: int | None, end: int | None) -> None:
    attrs = {k: v for k, v in (("start", start), ("end", end)) if v is not None}
    check_op("Shape", [rand(2, 3, 4, 5)], attrs, opset=15 if attrs else 13)


@pytest.mark.parametrize("shape", [(2, 3, 4), (), (7,)])
def test_size(shape: tuple) -> None:
    check_op("Size", [rand(*shape)])


# -- Expand / Tile -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "target"),
    [((3, 1), (2, 1, 4)), ((1, 4), (3, 1)), ((2, 3), (2, 3)), ((3,), (1,)), ((), (2, 2))],
)
@pytest.mark.parametrize("dtype", ["float32", "int64"])
def test_expand(shape: tuple, target: tuple, dtype: str) -> None:
    check_op("Expand", [rand(*shape, dtype=dtype), i64(*target)], const_inputs=[1])


def test_expand_incompatible() -> None:
    model, feeds = make_node_model("Expand", [rand(3, 2), i64(4, 2)], const_inputs=[1])
    with pytest.raises(ShapeInferenceError, match=r"cannot be broadcast"):
        run_ours(model, feeds)


@pytest.mark.parametrize("repeats", [(2, 1, 3), (1, 1, 1), (1, 0, 2)])
@pytest.mark.parametrize("opset", [7, 13])
def test_tile(repeats: tuple, opset: int) -> None:
    check_op("Tile", [rand(2, 3, 4), i64(*repeats)], opset=opset, const_inputs=[1])


def test_tile_repeats_must_be_constant() -> None:
    model, feeds = make_node_model("Tile", [rand(2, 3), i64(1, 2)])
    with pytest.raises(ShapeInferenceError, match=r"Tile's repeats .* must be known"):
        run_ours(model, feeds)


# -- Concat / Split ----------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [0, 1, -1, -3])
@pytest.mark.parametrize("opset", [7, 11, 13])
def test_concat(axis: int, opset: int) -> None:
    if opset < 11 and axis < 0:
        pytest.skip("negative axes arrive with opset 11")
    shapes = [[2, 3, 4], [2, 3, 4], [2, 3, 4]]
    for k, s in enumerate(shapes):
        s[axis] += k
    check_op("Concat", [rand(*s) for s in shapes], {"axis": axis}, opset=opset)


def test_concat_with_empty_input() -> None:
    empty = np.zeros((2, 0, 4), np.float32)
    check_op("Concat", [rand(2, 3, 4), empty, rand(2, 1, 4)], {"axis": 1}, const_inputs=[1])


@pytest.mark.parametrize("dtype", ["int64", "float16", "bool"])
def test_concat_dtypes(dtype: str) -> None:
    check_op("Concat", [rand(3, dtype=dtype), rand(2, dtype=dtype)], {"axis": 0})


def test_concat_mismatch() -> None:
    model, feeds = make_node_model("Concat", [rand(2, 3), rand(3, 3)], {"axis": 1})
    with pytest.raises(ShapeInferenceError, match=r"differ in dim 0"):
        run_ours(model, feeds)


@pytest.mark.parametrize(
    ("opset", "axis", "split", "n"),
    [
        (7, 1, [1, 3], 2),
        (11, -1, [2, 2, 1], 3),
        (11, 1, None, 2),
        (13, 1, [3, 1], 2),
        (13, 0, None, 3),
        (13, -1, [0, 5], 2),
        (18, 2, None, 5),
        (18, 1, [1, 1, 2], 3),
    ],
)
def test_split(opset: int, axis: int, split: list | None, n: int) -> None:
    data = rand(3, 4, 5)
    attrs: dict = {"axis": axis}
    inputs = [data]
    if split is not None and opset < 13:
        attrs["split"] = split
    elif split is not None:
        inputs.append(i64(*split))
    elif opset >= 18:
        attrs["num_outputs"] = n
    check_op("Split", inputs, attrs, num_outputs=n, opset=opset, const_inputs=[1])


@pytest.mark.parametrize(("dim", "n"), [(7, 3), (5, 2), (10, 4)])
def test_split_uneven_num_outputs(dim: int, n: int) -> None:
    """Opset 18: chunks of ceil(dim / n), the last one smaller."""
    outs = check_op("Split", [rand(2, dim)], {"axis": 1, "num_outputs": n}, num_outputs=n, opset=18)
    chunk = -(-dim // n)
    assert [o.shape[1] for o in outs] == [chunk] * (n - 1) + [dim - chunk * (n - 1)]


def test_split_even_constant_input_folds() -> None:
    """Before opset 18 an even split's count is the node's output count; folding needs it too."""
    check_op("Split", [rand(4, 3)], {"axis": 0}, num_outputs=2, opset=13, const_inputs=[0])


def test_split_bad_sizes() -> None:
    model, feeds = make_node_model(
        "Split", [rand(4), i64(1, 2)], num_outputs=2, opset=13, const_inputs=[1]
    )
    with pytest.raises(ShapeInferenceError, match=r"does not add up to the axis size 4"):
        run_ours(model, feeds)


# -- kernels on awkward inputs -----------------------------------------------------------------


def test_kernels_accept_read_only_views_and_do_not_mutate() -> None:
    base = rand(4, 6)
    base.setflags(write=False)
    view = base[:, ::2].T  # non-contiguous, read-only
    before = view.copy()
    np.testing.assert_array_equal(shape_ops.reshape(view, i64(-1)), before.reshape(-1))
    np.testing.assert_array_equal(
        shape_ops.expand(view, i64(2, 1, 1)), np.broadcast_to(before, (2, 3, 4))
    )
    np.testing.assert_array_equal(shape_ops.tile(view, i64(1, 2)), np.tile(before, (1, 2)))
    zero_stride = np.broadcast_to(np.float32(1), (3, 4))
    assert shape_ops.concat(zero_stride, view[:, :4], axis=0).shape == (6, 4)
    assert [a.shape for a in shape_ops.split(zero_stride, axis=1, num_outputs=3)] == [
        (3, 2),
        (3, 2),
        (3, 0),
    ]
    np.testing.assert_array_equal(view, before)


def test_shape_errors_name_the_node() -> None:
    model, feeds = make_node_model("Concat", [rand(2, 3), rand(2, 3)], {"axis": 2})
    with pytest.raises(EdgeInferError, match=r"Concat node .*attribute axis = 2 is out of range"):
        run_ours(model, feeds)


def test_shape_subgraph_folds_to_a_constant_reshape() -> None:
    """Shape → Gather → Unsqueeze → Concat → Reshape, as exporters write a flatten."""
    from onnx import TensorProto, helper, numpy_helper

    from edge_infer.engine.onnx_import import import_model
    from edge_infer.engine.reference import execute_graph
    from edge_infer.engine.shape_inference import bind_input_shapes, infer_shapes

    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes"], ["n1"]),
        helper.make_node("Concat", ["n1", "minus1"], ["target"], axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"]),
    ]
    inits = [
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        numpy_helper.from_array(i64(0), "axes"),
        numpy_helper.from_array(i64(-1), "minus1"),
    ]
    x_info = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 4])
    y_info = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    graph = helper.make_graph(nodes, "flatten", [x_info], [y_info], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    ir = import_model(model)
    bind_input_shapes(ir, {"x": (2, 3, 4)})
    infer_shapes(ir)
    assert [n.op_type for n in ir.nodes] == ["Reshape"]
    assert ir.nodes[0].inputs[1].const.tolist() == [2, -1]
    assert ir.nodes[0].outputs[0].shape == (2, 12)
    x = rand(2, 3, 4)
    np.testing.assert_array_equal(execute_graph(ir, {"x": x})["y"], x.reshape(2, 12))
