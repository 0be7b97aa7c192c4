"""Normalization ops against onnxruntime and the ONNX reference evaluator."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.errors import EdgeInferError
from tests.engine.ops.harness import check_op

RNG = np.random.default_rng(2)


def rand(*shape: int, dtype: str = "float32") -> np.ndarray:
    return RNG.standard_normal(shape).astype(dtype)


def bn_inputs(shape, dtype="float32"):
    c = shape[1]
    var = RNG.uniform(0.5, 2.0, c).astype(dtype)
    return [
        rand(*shape, dtype=dtype),
        rand(c, dtype=dtype),
        rand(c, dtype=dtype),
        rand(c, dtype=dtype),
        var,
    ]


@pytest.mark.parametrize("opset", [7, 9, 14, 15])
@pytest.mark.parametrize("shape", [(2, 3, 5, 6), (4, 3), (2, 3, 7), (1, 2, 3, 4, 5)])
def test_batch_normalization(opset, shape):
    # the reference evaluator's BatchNormalization 6/9 runs training mode (batch statistics)
    # for opsets 7 and 9 (it fills in the momentum default and takes that as "training");
    # onnxruntime uses the running statistics as the spec says for inference
    oracles = ("onnxruntime",) if opset < 14 else ("onnxruntime", "reference")
    check_op(
        "BatchNormalization",
        bn_inputs(shape),
        {"epsilon": 1e-3},
        opset=opset,
        const_inputs=[1, 2, 3, 4],
        oracles=oracles,
    )


def test_batch_normalization_7_per_activation():
    # opset 7 spatial=0: statistics per activation, parameters of shape (C, H, W); the
    # reference evaluator runs training mode for opset 7 (see above)
    x = rand(2, 3, 4, 5)
    params = [rand(3, 4, 5), rand(3, 4, 5), rand(3, 4, 5), RNG.uniform(0.5, 2, (3, 4, 5))]
    check_op(
        "BatchNormalization",
        [x, *(p.astype(np.float32) for p in params)],
        {"spatial": 0},
        opset=7,
        oracles=("onnxruntime",),
    )


@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_batch_normalization_dtypes(dtype):
    check_op("BatchNormalization", bn_inputs((2, 3, 4, 5), dtype), opset=15)


def test_batch_normalization_training_mode_is_refused():
    with pytest.raises(EdgeInferError, match="training_mode"):
        check_op(
            "BatchNormalization",
            bn_inputs((2, 3, 4, 5)),
            {"training_mode": 1},
            num_outputs=1,
            opset=15,
        )


def test_batch_normalization_bad_channels():
    inputs = bn_inputs((2, 3, 4, 5))
    inputs[1] = rand(4)
    with pytest.raises(EdgeInferError, match="scale must have 3 values"):
        check_op("BatchNormalization", inputs, opset=15)


@pytest.mark.parametrize("shape", [(2, 3, 5, 6), (2, 4, 7), (1, 2, 3, 4, 5)])
@pytest.mark.parametrize("dtype", ["float32", "float16", "float64"])
def test_instance_normalization(shape, dtype):
    c = shape[1]
    # onnxruntime has no float64 InstanceNormalization on CPU
    oracles = ("reference",) if dtype == "float64" else ("onnxruntime", "reference")
    check_op(
        "InstanceNormalization",
        [rand(*shape, dtype=dtype), rand(c, dtype=dtype), rand(c, dtype=dtype)],
        {"epsilon": 1e-4},
        const_inputs=[1, 2],
        oracles=oracles,
    )


@pytest.mark.parametrize("num_outputs", [1, 3])
@pytest.mark.parametrize(
    ("shape", "axis"),
    [((2, 5, 8), -1), ((2, 5, 8), 1), ((3, 4, 5, 6), 2), ((6, 7), 0), ((2, 3, 4), -2)],
)
def test_layer_normalization(shape, axis, num_outputs):
    normalized = shape[axis:]
    inputs = [rand(*shape), rand(*normalized), rand(*normalized)]
    check_op("LayerNormalization", inputs, {"axis": axis, "epsilon": 1e-3}, num_outputs=num_outputs)


def test_layer_normalization_without_bias_and_broadcast_scale():
    check_op("LayerNormalization", [rand(2, 5, 8), rand(8)], {"axis": -2})


def test_layer_normalization_float16_statistics_are_float32():
    # the reference evaluator returns Mean/InvStdDev in the input dtype; the spec (type U,
    # from stash_type) and onnxruntime make them float32
    x, s, b = rand(2, 5, 8, dtype="float16"), rand(8, dtype="float16"), rand(8, dtype="float16")
    ours = check_op("LayerNormalization", [x, s, b], num_outputs=3, oracles=("onnxruntime",))
    assert ours[1].dtype == np.float32 and ours[2].dtype == np.float32
    check_op(
        "LayerNormalization", [x, s, b], num_outputs=3, oracles=("reference",), compare_outputs=[0]
    )


def test_layer_normalization_bad_axis():
    with pytest.raises(EdgeInferError, match="axis"):
        check_op("LayerNormalization", [rand(2, 5), rand(5)], {"axis": 2})


@pytest.mark.parametrize("groups", [1, 2, 6])
def test_group_normalization_21(groups):
    x = rand(2, 6, 4, 5)
    check_op("GroupNormalization", [x, rand(6), rand(6)], {"num_groups": groups}, opset=21)


@pytest.mark.parametrize("groups", [1, 3])
def test_group_normalization_18(groups):
    # opset 18 GroupNormalization: scale and bias per group
    check_op(
        "GroupNormalization",
        [rand(2, 6, 4, 5), rand(groups), rand(groups)],
        {"num_groups": groups, "epsilon": 1e-3},
        opset=18,
    )
