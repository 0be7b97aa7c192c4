"""kernels/softmax.cu: Softmax and LogSoftmax over any axis against the engine's reference
(float64). FP32: within 1e-5 of the output scale; FP16 (computed in float, rounded once):
within half an fp16 ulp (2^-11 relative) plus that FP32 bound."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.cuda.params import softmax as sm
from edge_infer.engine.ops.activations import log_softmax_13, softmax_13

CASES = [
    ((7, 19), -1),
    ((3, 100), 1),
    ((2, 5, 3, 4), 1),
    ((4, 1), -1),
    ((2, 3, 70), 2),
    ((1, 80, 6), 1),
    ((5, 33), 0),
]


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize(("shape", "axis"), CASES)
def test_softmax_fp32(device, shape, axis, log) -> None:
    rng = np.random.default_rng(len(shape) * 10 + abs(axis))
    x = (rng.standard_normal(shape) * 5).astype(np.float32)
    x.reshape(-1)[0] = -np.inf  # one masked entry
    y = device.empty(shape, np.float32)
    device.run(sm.softmax(device.to_device(x), y, axis, log=log))
    ref = (log_softmax_13 if log else softmax_13)(x.astype(np.float64), axis=axis)
    finite = np.isfinite(ref)
    scale = max(1.0, float(np.abs(ref[finite]).max()))
    got = device.to_host(y)
    np.testing.assert_array_equal(np.isfinite(got), finite)
    np.testing.assert_allclose(got[finite], ref[finite], rtol=0, atol=1e-5 * scale)


@pytest.mark.parametrize(("shape", "axis"), CASES[:4])
def test_softmax_fp16(device, shape, axis) -> None:
    x = (np.random.default_rng(5).standard_normal(shape) * 3).astype(np.float16)
    y = device.empty(shape, np.float16)
    device.run(sm.softmax(device.to_device(x), y, axis))
    ref = softmax_13(x.astype(np.float64), axis=axis)
    got = device.to_host(y).astype(np.float64)
    assert (np.abs(got - ref) <= np.abs(ref) * 2.0**-11 + 1e-5 * max(1.0, np.abs(ref).max())).all()


def test_all_masked_row_is_nan_like_the_reference(device) -> None:
    x = np.full((2, 8), -np.inf, np.float32)
    x[1] = 0.0
    y = device.empty(x.shape, np.float32)
    device.run(sm.softmax(device.to_device(x), y, -1))
    got = device.to_host(y)
    assert np.isnan(got[0]).all() and np.allclose(got[1], 1 / 8)
