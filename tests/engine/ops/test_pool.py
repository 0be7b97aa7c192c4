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
    check_op("MaxPool", [rand(2, 3, 9, 11)], attrs, opset=12)


@pytest.mark.parametrize("storage_order", [0, 1])
@pytest.mark.parametrize("attrs", [WINDOWS[1], WINDOWS[2], WINDOWS[6], WINDOWS[12]])
def test_max_pool_indices(attrs, storage_order):
    # the reference evaluator ignores storage_order; onnxruntime follows the spec
    oracles = ("onnxruntime", "reference") if storage_order == 0 else ("onnxruntime",)
    check_op("MaxPool", [rand(2, 3, 9, 11)], {**attrs, "storage_order": storage_order},
             num_outputs=2, opset=12, oracles=oracles)


@pytest.mark.parametrize("dtype", ["float16", "float64", "int8", "uint8"])
def test_max_pool_dtypes(dtype):
    x = (RNG.standard_normal((1, 2, 8, 8)) * 50).astype(dtype)
    check_op("MaxPool", [x], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, opset=12)


@pytest.mark.parametrize("opset", [7, 8, 10, 11])
def test_max_pool_opsets(opset):
    check_op("MaxPool", [rand(1, 2, 8, 8)], {"kernel_shape": [2, 2], "strides": [2, 2]},
             opset=opset)


def test_max_pool_1d_and_3d():
    check_op("MaxPool", [rand(2, 3, 13)], {"kernel_shape": [3], "strides": [2]})
    check_op("MaxPool", [rand(1, 2, 5, 6, 7)], {"kernel_shape": [2, 2, 2], "strides": [2, 2, 2]})


@pytest.mark.parametrize("count_include_pad", [0, 1])
@pytest.mark.parametrize("attrs", WINDOWS)
def test_average_pool(attrs, count_include_pad):
    oracles = ("onnxruntime", "reference")
    if "dilations" in attrs:
        opset = 19  # AveragePool dilations are opset 19
    else:
        opset = 11
    if attrs.get("ceil_mode") and count_include_pad:
        # the reference evaluator divides by the full kernel size in the ceil-mode windows
        # that run past the padding; onnxruntime (like PyTorch) counts only input + pads
        oracles = ("onnxruntime",)
    check_op("AveragePool", [rand(2, 3, 9, 11)], {**attrs, "count_include_pad": count_include_pad},
             opset=opset, oracles=oracles)


@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_average_pool_dtypes(dtype):
    check_op("AveragePool", [rand(1, 2, 8, 8, dtype=dtype)],
             {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}, opset=11)


@pytest.mark.parametrize("opset", [7, 10, 19])
def test_average_pool_opsets(opset):
    check_op("AveragePool", [rand(1, 2, 8, 9)], {"kernel_shape": [2, 2], "strides": [2, 2]},
             opset=opset)


def test_average_pool_3d():
    check_op("AveragePool", [rand(1, 2, 5, 6, 7)], {"kernel_shape": [2, 3, 2]})


@pytest.mark.parametrize("p", [1, 2, 3])
def test_lp_pool(p):
    check_op("LpPool", [rand(1, 3, 8, 9)], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1],
                                           "strides": [2, 2], "p": p}, opset=11)


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"])
@pytest.mark.parametrize("shape", [(2, 3, 7, 9), (2, 3, 5), (1, 2, 3, 4, 5)])
def test_global_pools(op, shape):
    check_op(op, [rand(*shape)])


@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_global_pools_dtypes(dtype):
    check_op("GlobalAveragePool", [rand(2, 3, 7, 9, dtype=dtype)])
    check_op("GlobalMaxPool", [rand(2, 3, 7, 9, dtype=dtype)])


@pytest.mark.parametrize("size", [1, 2, 3, 5])
@pytest.mark.parametrize("opset", [7, 13])
def test_lrn(size, opset):
    attrs = {"size": size, "alpha": 1e-3, "beta": 0.75, "bias": 2.0}
    check_op("LRN", [rand(2, 8, 5, 6)], attrs, opset=opset)


def test_lrn_float16():
    check_op("LRN", [rand(1, 5, 4, 4, dtype="float16")], {"size": 3})


def test_pool_without_kernel_shape_is_an_error():
    with pytest.raises(EdgeInferError, match="kernel_shape"):
        check_op("MaxPool", [rand(1, 2, 8, 8)], {"strides": [2, 2]})


def test_pool_window_larger_than_input_is_an_error():
    with pytest.raises(EdgeInferError, match="larger than the padded input"):
        check_op("AveragePool", [rand(1, 2, 3, 3)], {"kernel_shape": [4, 4]})
