"""kernels/pool.cu: MaxPool / AveragePool / global pools against the engine's reference ops.

Tolerances: windowed pools add the taps in the reference's order and divide once in float32
(FP16: accumulated in float32, as the reference does), so they are compared for equality.
Global average: the kernel's tree reduction and numpy's pairwise sum round differently:
FP32 within 1e-5 of the output scale, FP16 within one FP16 ulp (2^-10 relative). Global max
is exact.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_infer.cuda.params import pool as pl
from edge_infer.engine.ops.pool import (
    average_pool,
    global_average_pool,
    global_max_pool,
    max_pool,
)
from edge_infer.errors import BackendError

GEOMETRIES = [
    dict(kernel_shape=[2, 2], strides=[2, 2]),
    dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1),
    dict(kernel_shape=[3, 2], strides=[1, 2], pads=[1, 0, 2, 1], dilations=[2, 1]),
    dict(kernel_shape=[5, 5], strides=[1, 1], pads=[2, 2, 2, 2]),  # SPPF
    dict(kernel_shape=[3, 3], strides=[2, 3], auto_pad="SAME_UPPER"),
    dict(kernel_shape=[2, 3], strides=[3, 2], ceil_mode=1, dilations=[1, 2]),
]


def _reference(kind, x, geometry, count_include_pad=0):
    if kind == "max":
        return max_pool(x, **geometry)[0]
    return average_pool(x, count_include_pad=count_include_pad, **geometry)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_windowed_pool_matches_reference(device, kind, geometry, dtype) -> None:
    rng = np.random.default_rng(len(str(geometry)))
    x = rng.standard_normal((2, 3, 11, 13)).astype(dtype)
    for include in (0, 1) if kind == "avg" else (0,):
        ref = _reference(kind, x, geometry, include)
        y = device.empty(ref.shape, dtype)
        dx = device.to_device(x)
        device.run(pl.pool(kind, dx, y, count_include_pad=include, **geometry))
        np.testing.assert_array_equal(device.to_host(y), ref)


def test_sppf_pools_read_and_write_concat_slices(device) -> None:
    # SPPF: y1 = pool(x), y2 = pool(y1), each written into the concat, y2 read from there
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 4, 9, 10)).astype(np.float32)
    geometry = dict(kernel_shape=[5, 5], strides=[1, 1], pads=[2, 2, 2, 2])
    cat = device.empty((2, 16, 9, 10), np.float32)
    dx = device.to_device(x)  # held: a KernelCall keeps only addresses
    device.run(pl.pool("max", dx, cat[:, 4:8], **geometry))
    device.run(pl.pool("max", cat[:, 4:8], cat[:, 8:12], **geometry))
    out = device.to_host(cat)
    y1 = _reference("max", x, geometry)
    np.testing.assert_array_equal(out[:, 4:8], y1)
    np.testing.assert_array_equal(out[:, 8:12], _reference("max", y1, geometry))
    assert np.isnan(out[:, :4]).all() and np.isnan(out[:, 12:]).all()


def test_max_pool_propagates_nan(device) -> None:
    x = np.arange(2 * 1 * 6 * 6, dtype=np.float32).reshape(2, 1, 6, 6)
    x[0, 0, 1, 1] = np.nan
    y = device.empty((2, 1, 3, 3), np.float32)
    dx = device.to_device(x)
    device.run(pl.pool("max", dx, y, kernel_shape=[2, 2], strides=[2, 2]))
    np.testing.assert_array_equal(
        device.to_host(y), max_pool(x, kernel_shape=[2, 2], strides=[2, 2])[0]
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("shape", [(2, 3, 7, 9), (1, 5, 1, 1), (1, 2, 20, 19)])
def test_global_pools(device, shape, dtype) -> None:
    rng = np.random.default_rng(shape[2])
    x = (rng.standard_normal(shape) + 0.5).astype(dtype)
    dx = device.to_device(x)
    for kind, ref in (("max", global_max_pool(x)), ("avg", global_average_pool(x))):
        y = device.empty(ref.shape, dtype)
        device.run(pl.global_pool(kind, dx, y, block=64))
        got = device.to_host(y).astype(np.float64)
        if kind == "max":
            np.testing.assert_array_equal(got, ref)
        elif dtype == np.float32:
            scale = np.abs(ref).max()
            np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * scale)
        else:
            np.testing.assert_allclose(got, ref.astype(np.float64), rtol=2.0**-10, atol=2.0**-24)


@settings(max_examples=6, deadline=None, derandomize=True)
@given(
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    k=st.integers(1, 4),
    s=st.integers(1, 3),
    d=st.integers(1, 2),
    ceil=st.integers(0, 1),
    include=st.integers(0, 1),
    kind=st.sampled_from(["max", "avg"]),
    seed=st.integers(0, 2**16),
)
def test_property_geometries(emu, h, w, k, s, d, ceil, include, kind, seed) -> None:
    from tests.cuda.conftest import EmuDevice

    p = min(k - 1, 1)
    if (k - 1) * d + 1 > min(h, w) + 2 * p:
        return  # the window does not fit: the reference refuses it too
    device = EmuDevice(emu)
    x = np.random.default_rng(seed).standard_normal((1, 2, h, w)).astype(np.float32)
    geometry = dict(
        kernel_shape=[k, k], strides=[s, s], dilations=[d, d], pads=[p] * 4, ceil_mode=ceil
    )
    ref = _reference(kind, x, geometry, include)
    y = device.empty(ref.shape, np.float32)
    dx = device.to_device(x)
    device.run(pl.pool(kind, dx, y, count_include_pad=include, **geometry))
    np.testing.assert_array_equal(device.to_host(y), ref)


def test_refuses_bad_arguments() -> None:
    x = np.zeros((1, 1, 4, 4), np.float32)
    with pytest.raises(BackendError, match="shape"):
        pl.pool("max", x, np.zeros((1, 1, 3, 3), np.float32), kernel_shape=[2, 2], strides=[2, 2])
    with pytest.raises(BackendError, match="kind"):
        pl.pool("lp", x, x, kernel_shape=[1, 1])
    with pytest.raises(BackendError, match="float32 or float16"):
        pl.global_pool("avg", x.astype(np.float64), np.zeros((1, 1, 1, 1)))
