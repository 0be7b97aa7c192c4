"""kernels/copy.cu: strided copies of 1-, 2- and 4-byte elements, compared with numpy."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.cuda.params import copy as cp

CASES = [
    ((37,), np.float32, None),
    ((3, 5, 7), np.float32, (2, 1, 0)),
    ((2, 3, 4, 5), np.float16, (0, 2, 3, 1)),  # NCHW -> NHWC-strided destination
    ((4, 33), np.int8, (1, 0)),
    ((1, 2, 9, 10), np.uint8, None),
]


@pytest.mark.parametrize(("shape", "dtype", "perm"), CASES)
def test_copy_matches_numpy(device, shape, dtype, perm) -> None:
    rng = np.random.default_rng(len(shape))
    host = rng.integers(-100, 100, size=shape).astype(dtype)
    src = device.to_device(host)
    if perm is None:
        dst = device.empty(shape, dtype)
        view = dst
    else:  # write through a transposed view: the kernel follows the destination strides
        dst = device.empty(tuple(shape[p] for p in perm), dtype)
        view = dst.transpose(np.argsort(perm))
    device.run(cp.copy(src, view))
    out = device.to_host(dst)
    expected = host if perm is None else np.transpose(host, perm)
    np.testing.assert_array_equal(out, expected)


def test_copy_into_a_slice_leaves_the_rest(device) -> None:
    host = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    dst = device.empty((2, 8, 4), np.float32)
    dst[:] = -1.0
    device.run(cp.copy(device.to_device(host), dst[:, 2:5]))
    out = device.to_host(dst)
    np.testing.assert_array_equal(out[:, 2:5], host)
    assert (out[:, :2] == -1).all() and (out[:, 5:] == -1).all()


def test_copy_refuses_mismatched_arrays() -> None:
    from edge_infer.errors import BackendError

    with pytest.raises(BackendError, match="equal shapes"):
        cp.copy(np.zeros(3, np.float32), np.zeros(4, np.float32))
    with pytest.raises(BackendError, match="1, 2 or 4-byte"):
        cp.copy(np.zeros(3, np.float64), np.zeros(3, np.float64))
