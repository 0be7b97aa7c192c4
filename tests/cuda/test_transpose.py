"""kernels/transpose.cu: batched transposes (NCHW <-> NHWC), exact, on sizes that are not
multiples of the 32x32 tile."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_infer.cuda.params import transpose as tp
from edge_infer.errors import BackendError

SHAPES = [(1, 3, 5, 7), (2, 33, 4, 9), (1, 64, 8, 8), (3, 1, 1, 1), (1, 5, 40, 33)]


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.int8])
@pytest.mark.parametrize("shape", SHAPES)
def test_nchw_nhwc_round_trip(device, sanitized, shape, dtype) -> None:
    if sanitized and np.prod(shape) > 2000:
        pytest.skip("large for the sanitized run")
    rng = np.random.default_rng(sum(shape))
    x = rng.integers(-100, 100, shape).astype(dtype)
    n, c, h, w = shape
    nhwc = device.empty((n, h, w, c), dtype)
    device.run(tp.nchw_to_nhwc(device.to_device(x), nhwc))
    np.testing.assert_array_equal(device.to_host(nhwc), x.transpose(0, 2, 3, 1))
    back = device.empty(shape, dtype)
    device.run(tp.nhwc_to_nchw(nhwc, back))
    np.testing.assert_array_equal(device.to_host(back), x)


def test_transpose_refuses_bad_sizes() -> None:
    with pytest.raises(BackendError, match="needs 24 elements"):
        tp.transpose(np.zeros(20, np.float32), np.zeros(20, np.float32), 2, 3, 4)
    with pytest.raises(BackendError, match="1, 2 or 4-byte"):
        tp.transpose(np.zeros(4, np.float64), np.zeros(4, np.float64), 1, 2, 2)


@settings(max_examples=20, deadline=None)
@given(
    batch=st.integers(1, 3),
    rows=st.integers(1, 70),
    cols=st.integers(1, 70),
    itemsize=st.sampled_from([1, 2, 4]),
)
def test_transpose_property(emu, batch, rows, cols, itemsize) -> None:
    dtype = {1: np.int8, 2: np.float16, 4: np.float32}[itemsize]
    x = np.arange(batch * rows * cols).astype(dtype).reshape(batch, rows, cols)
    y = np.empty((batch, cols, rows), dtype)
    emu.run(tp.transpose(x, y, batch, rows, cols))
    np.testing.assert_array_equal(y, x.transpose(0, 2, 1))
