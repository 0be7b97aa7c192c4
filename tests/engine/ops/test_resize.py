"""Resize and Upsample against onnxruntime and the ONNX reference evaluator."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.engine.ops.resize import resize
from edge_infer.errors import EdgeInferError
from tests.engine.ops.harness import (
    check_op,
    make_node_model,
    run_ours,
    run_reference_evaluator,
)

RNG = np.random.default_rng(4)
BOTH = ("onnxruntime", "reference")


def rand(*shape: int, dtype: str = "float32") -> np.ndarray:
    return RNG.standard_normal(shape).astype(dtype)


def f32(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def i64(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def run_resize(x, attrs, *, scales=None, sizes=None, roi=None, opset=19, oracles=BOTH):
    inputs = [x, roi, scales, sizes]
    while inputs[-1] is None:
        inputs.pop()
    return check_op("Resize", inputs, attrs, opset=opset, const_inputs=[1, 2, 3], oracles=oracles)


COORDS = ["half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric"]
SCALES = [f32(1, 1, 2, 2), f32(1, 1, 0.5, 0.5), f32(1, 1, 3, 1.5), f32(1, 1, 0.75, 2)]


@pytest.mark.parametrize("scales", SCALES, ids=lambda s: "x".join(f"{v:g}" for v in s[2:]))
@pytest.mark.parametrize("coord", COORDS)
@pytest.mark.parametrize(
    "nearest_mode", ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]
)
def test_nearest(scales, coord, nearest_mode):
    attrs = {
        "mode": "nearest",
        "coordinate_transformation_mode": coord,
        "nearest_mode": nearest_mode,
    }
    run_resize(rand(1, 2, 4, 6), attrs, scales=scales)


@pytest.mark.parametrize("scales", SCALES, ids=lambda s: "x".join(f"{v:g}" for v in s[2:]))
@pytest.mark.parametrize("coord", [*COORDS, "half_pixel_symmetric"])
@pytest.mark.parametrize("mode", ["linear", "cubic"])
def test_linear_and_cubic(scales, coord, mode):
    run_resize(
        rand(2, 3, 4, 6), {"mode": mode, "coordinate_transformation_mode": coord}, scales=scales
    )


@pytest.mark.parametrize(
    "sizes", [i64(1, 2, 7, 9), i64(1, 2, 3, 4), i64(1, 2, 8, 3), i64(1, 2, 1, 5)]
)
@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
@pytest.mark.parametrize("coord", COORDS)
def test_sizes(sizes, mode, coord):
    oracles = BOTH
    if coord == "pytorch_half_pixel" and mode == "cubic" and 1 in sizes.tolist():
        # a length-1 output maps to coordinate 0 in the spec and onnxruntime; the reference
        # evaluator uses -0.5, which only cubic interpolation can tell apart
        oracles = ("onnxruntime",)
    run_resize(
        rand(1, 2, 4, 6),
        {"mode": mode, "coordinate_transformation_mode": coord},
        sizes=sizes,
        oracles=oracles,
    )


@pytest.mark.parametrize("a", [-0.5, -0.75])
@pytest.mark.parametrize("exclude_outside", [0, 1])
def test_cubic_options(a, exclude_outside):
    attrs = {"mode": "cubic", "cubic_coeff_a": a, "exclude_outside": exclude_outside}
    run_resize(rand(1, 1, 5, 6), attrs, scales=f32(1, 1, 1.6, 0.5))


@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
@pytest.mark.parametrize(
    "roi", [f32(0, 0, 0.2, 0.1, 1, 1, 0.8, 0.9), f32(0, 0, -0.3, 0.4, 1, 1, 1.2, 0.6)]
)
def test_tf_crop_and_resize(mode, roi):
    attrs = {
        "mode": mode,
        "coordinate_transformation_mode": "tf_crop_and_resize",
        "extrapolation_value": 7.5,
    }
    oracles = BOTH
    if mode == "nearest" and roi[2] == np.float32(0.2):
        # source coordinate 0.2*5 + 2*0.6*5/4 is a rounding tie (2.5) in exact arithmetic;
        # onnxruntime computes it in float32 (2.5 -> 2), the spec's float64 reference sees
        # 2.50000004 (-> 3) from the float32 roi values. We follow the reference.
        oracles = ("reference",)
    run_resize(rand(1, 2, 6, 7), attrs, sizes=i64(1, 2, 5, 4), roi=roi, oracles=oracles)


@pytest.mark.parametrize("policy", ["stretch", "not_larger", "not_smaller"])
@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_keep_aspect_ratio_and_axes(policy, mode):
    x = rand(1, 2, 6, 8)
    attrs = {"mode": mode, "keep_aspect_ratio_policy": policy, "axes": [2, 3]}
    run_resize(x, attrs, sizes=i64(9, 9), opset=18)
    attrs = {"mode": mode, "keep_aspect_ratio_policy": policy, "axes": [3, 2]}
    expected = run_resize(x, attrs, sizes=i64(5, 4), opset=18)
    # negative axes: the reference evaluator fails on them and onnxruntime ignores the sizes
    # with not_larger/not_smaller, so they are checked against the positive-axes result
    model, feeds = make_node_model(
        "Resize",
        [x, None, None, i64(5, 4)],
        {**attrs, "axes": [-1, -2]},
        opset=18,
        const_inputs=[3],
    )
    np.testing.assert_array_equal(run_ours(model, feeds)[0], expected[0])


def test_axes_with_scales():
    run_resize(rand(1, 2, 6, 8), {"mode": "linear", "axes": [3]}, scales=f32(0.5), opset=18)


@pytest.mark.parametrize("opset", [11, 13])
@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_older_opsets(opset, mode):
    x = rand(1, 2, 5, 6)
    # opset 11 requires the roi and scales inputs: give empty ones beside sizes
    run_resize(x, {"mode": mode}, roi=f32(), scales=f32(), sizes=i64(1, 2, 8, 9), opset=opset)
    run_resize(
        x,
        {"mode": mode, "coordinate_transformation_mode": "asymmetric"},
        roi=f32(),
        scales=f32(1, 1, 2, 2),
        opset=opset,
    )


def test_tf_half_pixel_for_nn():
    # the reference evaluator does not implement this opset-11-only mode
    run_resize(
        rand(1, 2, 5, 6),
        {"coordinate_transformation_mode": "tf_half_pixel_for_nn"},
        roi=f32(),
        scales=f32(1, 1, 1.5, 2),
        opset=11,
        oracles=("onnxruntime",),
    )


@pytest.mark.parametrize("dtype", ["float16", "float64"])
@pytest.mark.parametrize("mode", ["nearest", "linear", "cubic"])
def test_float_dtypes(dtype, mode):
    # onnxruntime's CPU Resize has no float64 kernel
    x = rand(1, 2, 4, 5, dtype=dtype)
    if dtype == "float64" and mode == "cubic":
        # the reference evaluator's cubic path is off by ~1e-7 relative (checked against the
        # closed-form Keys kernel in float64): fine for float32, not for float64 tolerances
        model, feeds = make_node_model(
            "Resize", [x, None, f32(1, 1, 2, 1.5)], {"mode": mode}, opset=19, const_inputs=[2]
        )
        np.testing.assert_allclose(
            run_ours(model, feeds)[0],
            run_reference_evaluator(model, feeds)[0],
            rtol=1e-5,
            atol=1e-5,
        )
        return
    oracles = BOTH if dtype == "float16" else ("reference",)
    run_resize(x, {"mode": mode}, scales=f32(1, 1, 2, 1.5), oracles=oracles)


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int32", "int64"])
def test_integer_nearest(dtype):
    x = RNG.integers(-100 if dtype != "uint8" else 0, 100, (1, 2, 4, 5)).astype(dtype)
    # onnxruntime's CPU Resize has no int64 kernel
    oracles = BOTH if dtype in ("uint8", "int8", "int32") else ("reference",)
    run_resize(x, {"mode": "nearest"}, scales=f32(1, 1, 2, 0.6), oracles=oracles)


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int32"])
@pytest.mark.parametrize("mode", ["linear", "cubic"])
def test_integer_interpolation(dtype, mode):
    # onnxruntime truncates interpolated integers toward zero (and has no integer cubic);
    # the reference evaluator rounds to nearest and saturates, which is what we do
    x = RNG.integers(0, 120, (1, 2, 4, 5)).astype(dtype)
    run_resize(x, {"mode": mode}, scales=f32(1, 1, 2, 1.5), oracles=("reference",))


def test_resize_3d_and_5d():
    run_resize(rand(2, 3, 7), {"mode": "linear"}, scales=f32(1, 1, 2.5))
    run_resize(rand(1, 2, 3, 4, 5), {"mode": "nearest"}, scales=f32(1, 1, 2, 2, 2))


@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("scales", [f32(1, 1, 2, 2), f32(1, 1, 0.5, 0.5), f32(1, 1, 1.5, 3)])
def test_resize_10(mode, scales):
    # Resize-10 has no coordinate mode attribute; the reference evaluator cannot run it,
    # onnxruntime implements it as asymmetric + truncating nearest ("simple")
    check_op(
        "Resize",
        [rand(1, 2, 4, 6), scales],
        {"mode": mode},
        opset=10,
        const_inputs=[1],
        oracles=("onnxruntime",),
    )


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_upsample(mode):
    x = rand(1, 2, 3, 4)
    # the reference evaluator's Upsample handles only nearest with integer scales given as
    # an input (opset 9), not the opset-7 attribute
    oracles = BOTH if mode == "nearest" else ("onnxruntime",)
    check_op(
        "Upsample",
        [x],
        {"mode": mode, "scales": [1.0, 1.0, 2.0, 3.0]},
        opset=7,
        oracles=("onnxruntime",),
    )
    check_op(
        "Upsample", [x, f32(1, 1, 2, 2)], {"mode": mode}, opset=9, const_inputs=[1], oracles=oracles
    )


def test_scales_must_be_constant():
    with pytest.raises(EdgeInferError, match="must be known at build time"):
        check_op("Resize", [rand(1, 1, 4, 4), None, f32(1, 1, 2, 2)], {"mode": "nearest"})


def test_scales_and_sizes_are_exclusive():
    with pytest.raises(EdgeInferError, match="exactly one"):
        resize(rand(1, 1, 4, 4), None, f32(1, 1, 2, 2), i64(1, 1, 8, 8))


def test_bad_mode_is_a_located_error():
    with pytest.raises(EdgeInferError, match="mode"):
        run_resize(rand(1, 1, 4, 4), {"mode": "area"}, scales=f32(1, 1, 2, 2))


def test_upsample_bad_mode():
    with pytest.raises(EdgeInferError, match="mode"):
        check_op(
            "Upsample",
            [rand(1, 1, 2, 2)],
            {"mode": "cubic", "scales": [1.0, 1.0, 2.0, 2.0]},
            opset=7,
        )


@pytest.mark.parametrize("scales", [f32(1, 1, 0.5, 0.4), f32(1, 1, 0.7, 1.5), f32(1, 1, 0.3, 0.6)])
@pytest.mark.parametrize("exclude_outside", [0, 1])
@pytest.mark.parametrize("mode", ["linear", "cubic"])
def test_antialias(mode, exclude_outside, scales):
    attrs = {"mode": mode, "antialias": 1, "exclude_outside": exclude_outside}
    run_resize(rand(1, 2, 9, 11), attrs, scales=scales, opset=18)


def test_antialias_nearest_is_refused():
    with pytest.raises(EdgeInferError, match="antialias"):
        run_resize(
            rand(1, 1, 4, 4), {"mode": "nearest", "antialias": 1}, scales=f32(1, 1, 0.5, 0.5)
        )


@pytest.mark.parametrize("coord", ["align_corners", "tf_crop_and_resize"])
def test_fractional_resized_length(coord):
    # 9 * 0.6 and 11 * 0.7 are not integers: the ONNX reference (and the conformance data
    # generated from it) divides by the fractional length scale * input length, onnxruntime
    # (like PyTorch) by the integer output length. We follow the reference.
    roi = f32(0, 0, 0.1, 0.2, 1, 1, 0.9, 0.8) if coord == "tf_crop_and_resize" else None
    run_resize(
        rand(1, 2, 9, 11),
        {"mode": "linear", "coordinate_transformation_mode": coord},
        scales=f32(1, 1, 0.6, 0.7),
        roi=roi,
        oracles=("reference",),
    )
