"""Slice, Pad, DepthToSpace and SpaceToDepth against onnxruntime and the ONNX reference."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.engine.ops import slice_pad
from edge_infer.errors import ShapeInferenceError
from tests.engine.ops.harness import check_op, make_node_model, run_ours

RNG = np.random.default_rng(2)
I64_MAX, I64_MIN = np.iinfo(np.int64).max, np.iinfo(np.int64).min


def rand(*shape: int, dtype: str = "float32") -> np.ndarray:
    if np.dtype(dtype).kind == "f":
        return RNG.standard_normal(shape).astype(dtype)
    return RNG.integers(-50, 50, shape).astype(dtype)


def i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


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
    model, feeds = make_node_model(
        "Slice", [rand(3), i64(0), i64(2), i64(0), i64(0)], opset=13, const_inputs=[1, 2, 3, 4]
    )
    with pytest.raises(ShapeInferenceError, match=r"steps must not be 0"):
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
    model, feeds = make_node_model(
        "Pad", [rand(2, 3), i64(0, -2, 0, -2)], opset=13, const_inputs=[1]
    )
    with pytest.raises(ShapeInferenceError, match=r"crop more than the input"):
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
    with pytest.raises(ShapeInferenceError, match=r"not divisible by blocksize"):
        run_ours(model, feeds)


# -- kernels on awkward inputs -----------------------------------------------------------------


def test_kernels_accept_read_only_views_and_do_not_mutate() -> None:
    base = rand(4, 6)
    base.setflags(write=False)
    view = base[:, ::2].T  # non-contiguous, read-only
    before = view.copy()
    np.testing.assert_array_equal(
        slice_pad.pad(view, i64(1, 0, 0, 1), mode="edge"),
        np.pad(before, [(1, 0), (0, 1)], mode="edge"),
    )
    np.testing.assert_array_equal(
        slice_pad.pad(view, i64(-1, 1), np.array(2.0, np.float32), i64(-1)),
        np.pad(before[:, 1:], [(0, 0), (0, 1)], constant_values=2.0),
    )
    np.testing.assert_array_equal(
        slice_pad.slice_(view, i64(-1), i64(I64_MIN), i64(1), i64(-1)), before[:, ::-1]
    )
    ones = np.broadcast_to(np.float32(1), (1, 4, 2, 2))
    assert slice_pad.depth_to_space(ones, 2, mode="CRD").shape == (1, 1, 4, 4)
    assert slice_pad.space_to_depth(ones, 2).shape == (1, 16, 1, 1)
    np.testing.assert_array_equal(view, before)
