"""Pooling ops and LRN against onnxruntime and the ONNX reference evaluator."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.errors import EdgeInferError
from tests.engine.ops.harness import check_op

RNG = np.random.default_rng(1)


def rand(*shape: int, dtype: str = "float32") -> np.ndarray:
    return RNG.standard_normal(shape).astype(dtype)


WINDOWS = [
    {"kernel_shape": [2, 2], "strides": [2, 2]},
    {"kernel_shape": [3, 3]},
    {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]},
    {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 0, 1]},
    {"kernel_shape": [5, 5], "pads": [2, 2, 2, 2]},  # YOLO SPPF
    {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1},
    {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": 1},
    {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1},
    {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "SAME_UPPER"},
    {"kernel_shape": [4, 4], "strides": [3, 3], "auto_pad": "SAME_LOWER"},
    {"kernel_shape": [3, 3], "strides": [2, 2], "auto_pad": "VALID"},
    {"kernel_shape": [2, 2], "dilations": [2, 2]},
    {"kernel_shape": [2, 3], "dilations": [2, 1], "strides": [2, 2], "pads": [1, 1, 1, 1]},
]


@pytest.mark.parametrize("attrs", WINDOWS)
def test_max_pool(attrs):
    oracles = ("onnxruntime", "reference")
    if attrs.get("auto_pad") == "SAME_LOWER":
        # the reference evaluator computes a smaller SAME_LOWER output (3x3 instead of
        # ceil(9/3) x ceil(11/3) = 3x4); onnxruntime follows the spec
        oracles = ("onnxruntime",)
    check_op("MaxPool", [rand(2, 3, 9, 11)], attrs, opset=12, oracles=oracles)


@pytest.mark.parametrize("storage_order", [0, 1])
@pytest.mark.parametrize("attrs", [WINDOWS[1], WINDOWS[2], WINDOWS[6], WINDOWS[12]])
def test_max_pool_indices(attrs, storage_order):
    # the reference evaluator's Indices mostly do not point at the maximum (x.flat[I] != Y
    # for 96% of a 9x11 test); onnxruntime's do. Y is still compared with both.
    x = rand(2, 3, 9, 11)
    attrs = {**attrs, "storage_order": storage_order}
    check_op("MaxPool", [x], attrs, num_outputs=2, opset=12, oracles=("onnxruntime",))
    check_op(
        "MaxPool", [x], attrs, num_outputs=2, opset=12, oracles=("reference",), compare_outputs=[0]
    )


def test_max_pool_ties_take_the_first_maximum():
    x = RNG.integers(0, 3, (2, 3, 8, 9)).astype(np.float32)
    check_op(
        "MaxPool",
        [x],
        {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]},
        num_outputs=2,
        opset=12,
        oracles=("onnxruntime",),
    )


@pytest.mark.parametrize("dtype", ["float16", "float64", "int8", "uint8"])
def test_max_pool_dtypes(dtype):
    x = (RNG.standard_normal((1, 2, 8, 8)) * 50).astype(dtype)
    # the reference evaluator pads integers with NaN (ValueError): onnxruntime only for those
    oracles = ("onnxruntime",) if dtype in ("int8", "uint8") else ("onnxruntime", "reference")
    check_op(
        "MaxPool", [x], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, opset=12, oracles=oracles
    )


@pytest.mark.parametrize("opset", [7, 8, 10, 11])
def test_max_pool_opsets(opset):
    check_op(
        "MaxPool", [rand(1, 2, 8, 8)], {"kernel_shape": [2, 2], "strides": [2, 2]}, opset=opset
    )


def test_max_pool_1d_and_3d():
    check_op("MaxPool", [rand(2, 3, 13)], {"kernel_shape": [3], "strides": [2]})
    check_op("MaxPool", [rand(1, 2, 5, 6, 7)], {"kernel_shape": [2, 2, 2], "strides": [2, 2, 2]})


@pytest.mark.parametrize("count_include_pad", [0, 1])
@pytest.mark.parametrize("attrs", WINDOWS)
def test_average_pool(attrs, count_include_pad):
    opset = 19 if "dilations" in attrs else 11  # AveragePool dilations are opset 19
    check_op(
        "AveragePool",
        [rand(2, 3, 9, 11)],
        {**attrs, "count_include_pad": count_include_pad},
        opset=opset,
    )


@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_average_pool_dtypes(dtype):
    # onnxruntime has no float64 AveragePool on CPU
    oracles = ("reference",) if dtype == "float64" else ("onnxruntime", "reference")
    check_op(
        "AveragePool",
        [rand(1, 2, 8, 8, dtype=dtype)],
        {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]},
        opset=11,
        oracles=oracles,
    )


@pytest.mark.parametrize("opset", [7, 10, 19])
def test_average_pool_opsets(opset):
    check_op(
        "AveragePool", [rand(1, 2, 8, 9)], {"kernel_shape": [2, 2], "strides": [2, 2]}, opset=opset
    )


def test_average_pool_3d():
    check_op("AveragePool", [rand(1, 2, 5, 6, 7)], {"kernel_shape": [2, 3, 2]})


@pytest.mark.parametrize("p", [1, 2, 3])
def test_lp_pool(p):
    check_op(
        "LpPool",
        [rand(1, 3, 8, 9)],
        {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [2, 2], "p": p},
        opset=11,
    )


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"])
@pytest.mark.parametrize("shape", [(2, 3, 7, 9), (2, 3, 5), (1, 2, 3, 4, 5)])
def test_global_pools(op, shape):
    oracles = ("onnxruntime", "reference")
    if op == "GlobalLpPool" or (op == "GlobalMaxPool" and len(shape) != 4):
        # the reference evaluator has no GlobalLpPool and reduces the wrong axes of
        # GlobalMaxPool inputs that are not 4-D
        oracles = ("onnxruntime",)
    check_op(op, [rand(*shape)], oracles=oracles)


@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_global_pools_dtypes(dtype):
    # onnxruntime has no float64 global pools on CPU
    oracles = ("reference",) if dtype == "float64" else ("onnxruntime", "reference")
    check_op("GlobalAveragePool", [rand(2, 3, 7, 9, dtype=dtype)], oracles=oracles)
    check_op("GlobalMaxPool", [rand(2, 3, 7, 9, dtype=dtype)], oracles=oracles)


# The reference evaluator's LRN loops over the batch axis instead of the channels, so it is
# right only when N >= C; onnxruntime is the oracle for real shapes (it needs an odd size).


@pytest.mark.parametrize("size", [1, 3, 5])
@pytest.mark.parametrize("opset", [7, 13])
def test_lrn(size, opset):
    attrs = {"size": size, "alpha": 1e-3, "beta": 0.75, "bias": 2.0}
    check_op("LRN", [rand(2, 8, 5, 6)], attrs, opset=opset, oracles=("onnxruntime",))


def test_lrn_even_size():
    check_op("LRN", [rand(6, 6, 3, 4)], {"size": 4, "alpha": 0.1}, oracles=("reference",))


def test_lrn_float16():
    check_op("LRN", [rand(1, 5, 4, 4, dtype="float16")], {"size": 3}, oracles=("onnxruntime",))


def test_pool_without_kernel_shape_is_an_error():
    with pytest.raises(EdgeInferError, match="kernel_shape"):
        check_op("MaxPool", [rand(1, 2, 8, 8)], {"strides": [2, 2]})


def test_pool_window_larger_than_input_is_an_error():
    with pytest.raises(EdgeInferError, match="larger than the padded input"):
        check_op("AveragePool", [rand(1, 2, 3, 3)], {"kernel_shape": [4, 4]})
