"""Shape and layout ops against onnxruntime and the ONNX reference evaluator."""

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
    [((2, 3, 4), (4, -1)), ((2, 3, 4), (0, 0, -1)), ((2, 3, 4), (-1,)), ((2, 3, 4), (2, 0, 2, 2)),
     ((6,), (1, 2, 1, 3)), ((1,), ())],
)
def test_reshape(opset: int, in_shape: tuple, target: tuple) -> None:
    check_op("Reshape", [rand(*in_shape), i64(*target)], opset=opset, const_inputs=[1])


@pytest.mark.parametrize("dtype", ["float16", "float64", "int64", "int8", "bool"])
def test_reshape_dtypes(dtype: str) -> None:
    check_op("Reshape", [rand(2, 6, dtype=dtype), i64(3, 4)], const_inputs=[1])


@pytest.mark.parametrize(("allowzero", "target"), [(1, (3, 0, 4)), (0, (0, 4, 0)), (1, (0, 3))])
def test_reshape_allowzero_empty(allowzero: int, target: tuple) -> None:
    data = np.zeros((0, 4, 3), np.float32)  # constant: bound graph inputs have no 0 dims
    check_op("Reshape", [data, i64(*target)], {"allowzero": allowzero}, opset=14,
             const_inputs=[0, 1])


def test_reshape_errors() -> None:
    model, feeds = make_node_model("Reshape", [rand(2, 3), i64(4, -1)], const_inputs=[1])
    with pytest.raises(ShapeInferenceError, match="cannot reshape"):
        run_ours(model, feeds)
    model, feeds = make_node_model("Reshape", [rand(2, 3), i64(3, 2)])
    with pytest.raises(ShapeInferenceError, match="target shape .* must be known at build"):
        run_ours(model, feeds)
    model, feeds = make_node_model("Reshape", [rand(2, 3), i64(-1, -1)], const_inputs=[1])
    with pytest.raises(ShapeInferenceError, match="more than one -1"):
        run_ours(model, feeds)


@pytest.mark.parametrize(("opset", "axis"), [(9, 0), (9, 2), (11, 4), (11, -1), (13, -4), (13, 1)])
def test_flatten(opset: int, axis: int) -> None:
    check_op("Flatten", [rand(2, 3, 4, 5)], {"axis": axis}, opset=opset)


def test_flatten_bad_axis() -> None:
    model, feeds = make_node_model("Flatten", [rand(2, 3)], {"axis": 3})
    with pytest.raises(ShapeInferenceError, match="axis = 3 is out of range"):
        run_ours(model, feeds)


@pytest.mark.parametrize("perm", [None, [0, 2, 1, 3], [3, 1, 0, 2]])
@pytest.mark.parametrize("dtype", ["float32", "float16", "int32"])
def test_transpose(perm: list | None, dtype: str) -> None:
    attrs = {} if perm is None else {"perm": perm}
    check_op("Transpose", [rand(2, 3, 4, 5, dtype=dtype)], attrs)


def test_transpose_bad_perm() -> None:
    model, feeds = make_node_model("Transpose", [rand(2, 3)], {"perm": [0, 0]})
    with pytest.raises(ShapeInferenceError, match="perm = \\[0, 0\\] is not a permutation"):
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
    with pytest.raises(ShapeInferenceError, match="dim 1 has size 3, not 1"):
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
    with pytest.raises(ShapeInferenceError, match="repeats an axis"):
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
    with pytest.raises(ShapeInferenceError, match="cannot be broadcast"):
        run_ours(model, feeds)


@pytest.mark.parametrize("repeats", [(2, 1, 3), (1, 1, 1), (1, 0, 2)])
@pytest.mark.parametrize("opset", [7, 13])
def test_tile(repeats: tuple, opset: int) -> None:
    check_op("Tile", [rand(2, 3, 4), i64(*repeats)], opset=opset, const_inputs=[1])


def test_tile_repeats_must_be_constant() -> None:
    model, feeds = make_node_model("Tile", [rand(2, 3), i64(1, 2)])
    with pytest.raises(ShapeInferenceError, match="Tile's repeats .* must be known"):
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
    with pytest.raises(ShapeInferenceError, match="differ in dim 0"):
        run_ours(model, feeds)


@pytest.mark.parametrize(
    ("opset", "axis", "split", "n"),
    [(7, 1, [1, 3], 2), (11, -1, [2, 2, 1], 3), (11, 1, None, 2), (13, 1, [3, 1], 2),
     (13, 0, None, 3), (13, -1, [0, 5], 2), (18, 2, None, 5), (18, 1, [1, 1, 2], 3)],
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
    outs = check_op("Split", [rand(2, dim)], {"axis": 1, "num_outputs": n}, num_outputs=n,
                    opset=18)
    chunk = -(-dim // n)
    assert [o.shape[1] for o in outs] == [chunk] * (n - 1) + [dim - chunk * (n - 1)]


def test_split_bad_sizes() -> None:
    model, feeds = make_node_model("Split", [rand(4), i64(1, 2)], num_outputs=2, opset=13,
                                   const_inputs=[1])
    with pytest.raises(ShapeInferenceError, match="does not add up to the axis size 4"):
        run_ours(model, feeds)


# -- Slice -------------------------------------------------------------------------------------

SLICES = [
    ((1, 0), (3, 10), None, None),
    ((0,), (-1,), (1,), None),
    ((-1, 0), (I64_MIN, I64_MAX), (1, 2), (-1, 2)),
    ((I64_MAX,), (I64_MIN,), (-1,), (-2,)),
    ((-100,), (100,), (-2,), None),
    ((4, 1), (1, 4), (-1, 0), (-1, 1)),
    ((2,), (2,), (2,), None),  # empty
    ((5,), (-7,), (0,), (-1,)),
]


@pytest.mark.parametrize(("starts", "ends", "axes", "steps"), SLICES)
def test_slice(starts: tuple, ends: tuple, axes: tuple | None, steps: tuple | None) -> None:
    inputs = [rand(4, 5, 6), i64(*starts), i64(*ends)]
    inputs.append(None if axes is None else i64(*axes))
    inputs.append(None if steps is None else i64(*steps))
    check_op("Slice", inputs, opset=13, const_inputs=[1, 2, 3, 4])


@pytest.mark.parametrize("index_dtype", ["int32", "int64"])
def test_slice_opset10_int32(index_dtype: str) -> None:
    inputs = [rand(4, 5), np.array([1, -4], index_dtype), np.array([3, 100], index_dtype)]
    check_op("Slice", inputs, opset=10, const_inputs=[1, 2])


@pytest.mark.parametrize(("axes", "starts", "ends"), [(None, [0, 1], [2, 1000]), ([1], [-2], [5])])
def test_slice_opset1_attributes(axes: list | None, starts: list, ends: list) -> None:
    attrs = {"starts": starts, "ends": ends} | ({} if axes is None else {"axes": axes})
    check_op("Slice", [rand(3, 4)], attrs, opset=9)


def test_slice_zero_step() -> None:
    model, feeds = make_node_model("Slice", [rand(3), i64(0), i64(2), i64(0), i64(0)], opset=13,
                                   const_inputs=[1, 2, 3, 4])
    with pytest.raises(ShapeInferenceError, match="steps must not be 0"):
        run_ours(model, feeds)


# -- Pad ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
@pytest.mark.parametrize("pads", [(0, 1, 2, 1, 0, 2), (1, 0, 0, 0, 2, 1), (0, -1, 1, 1, 1, -2)])
def test_pad_opset11(mode: str, pads: tuple) -> None:
    inputs = [rand(3, 4, 5), i64(*pads)]
    if mode == "constant":
        inputs.append(np.array(1.5, np.float32))
    # the reference evaluator hands negative pads to np.pad, which rejects them
    oracles = ("onnxruntime",) if min(pads) < 0 else ("onnxruntime", "reference")
    check_op("Pad", inputs, {"mode": mode}, opset=11, const_inputs=[1, 2], oracles=oracles)


@pytest.mark.parametrize("dtype", ["int32", "float16", "float64"])
def test_pad_dtypes(dtype: str) -> None:
    check_op("Pad", [rand(2, 3, dtype=dtype), i64(1, 0, 0, 2)], opset=13, const_inputs=[1])


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
def test_pad_axes_opset19(mode: str) -> None:
    inputs = [rand(2, 3, 4), i64(1, 2, 3, 1), None, i64(-1, 1)]
    check_op("Pad", inputs, {"mode": mode}, opset=19, const_inputs=[1, 3])


def test_pad_opset2_attributes() -> None:
    check_op("Pad", [rand(2, 3)], {"pads": [0, 1, 2, 0], "value": -2.0}, opset=7)
    check_op("Pad", [rand(2, 3)], {"pads": [1, 1, 1, 1], "mode": "reflect"}, opset=7)


def test_pad_too_much_crop() -> None:
    model, feeds = make_node_model("Pad", [rand(2, 3), i64(0, -2, 0, -2)], opset=13,
                                   const_inputs=[1])
    with pytest.raises(ShapeInferenceError, match="crop more than the input"):
        run_ours(model, feeds)


# -- DepthToSpace / SpaceToDepth ---------------------------------------------------------------


@pytest.mark.parametrize(("opset", "mode"), [(9, None), (13, "DCR"), (13, "CRD"), (11, "CRD")])
@pytest.mark.parametrize("blocksize", [2, 3])
def test_depth_to_space(opset: int, mode: str | None, blocksize: int) -> None:
    attrs = {"blocksize": blocksize} | ({} if mode is None else {"mode": mode})
    check_op("DepthToSpace", [rand(2, 2 * blocksize**2, 3, 4)], attrs, opset=opset)


@pytest.mark.parametrize("blocksize", [1, 2, 3])
def test_space_to_depth(blocksize: int) -> None:
    check_op("SpaceToDepth", [rand(2, 3, 6, 12)], {"blocksize": blocksize})


def test_depth_to_space_bad_channels() -> None:
    model, feeds = make_node_model("DepthToSpace", [rand(1, 6, 2, 2)], {"blocksize": 2})
    with pytest.raises(ShapeInferenceError, match="not divisible by blocksize"):
        run_ours(model, feeds)


# -- kernels on awkward inputs -----------------------------------------------------------------


def test_kernels_accept_read_only_views_and_do_not_mutate() -> None:
    base = rand(4, 6)
    base.setflags(write=False)
    view = base[:, ::2].T  # non-contiguous, read-only
    before = view.copy()
    np.testing.assert_array_equal(shape_ops.reshape(view, i64(-1)), before.reshape(-1))
    np.testing.assert_array_equal(shape_ops.pad(view, i64(1, 0, 0, 1), mode="edge"),
                                  np.pad(before, [(1, 0), (0, 1)], mode="edge"))
    np.testing.assert_array_equal(shape_ops.expand(view, i64(2, 1, 1)),
                                  np.broadcast_to(before, (2, 3, 4)))
    np.testing.assert_array_equal(shape_ops.slice_(view, i64(-1), i64(I64_MIN), i64(1), i64(-1)),
                                  before[:, ::-1])
    zero_stride = np.broadcast_to(np.float32(1), (3, 4))
    assert shape_ops.depth_to_space(np.broadcast_to(np.float32(1), (1, 4, 2, 2)), 2).shape == (
        1, 1, 4, 4)
    assert shape_ops.concat(zero_stride, zero_stride, axis=-1).shape == (3, 8)
    np.testing.assert_array_equal(view, before)


def test_shape_errors_name_the_node() -> None:
    model, feeds = make_node_model("Concat", [rand(2, 3), rand(2, 3)], {"axis": 2})
    with pytest.raises(EdgeInferError, match="Concat node .*attribute axis = 2 is out of range"):
        run_ours(model, feeds)
