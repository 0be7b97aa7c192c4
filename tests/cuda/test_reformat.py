"""kernels/reformat.cu: fp32 <-> fp16 bit-exact with numpy; int8 equal to the CPU INT8
reference (quantize_activation: round half to even of the float64 quotient, saturated;
dequantize q * scale)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_infer.cuda.params import reformat as rf
from edge_infer.engine.ops.quantize import dequantize_linear, quantize_activation
from edge_infer.errors import BackendError


def _data(n: int, seed: int, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n).astype(np.float32) * 40 * scale
    # exact half-integers of the quotient and values at the saturation bounds
    ties = (np.arange(-12, 12) + 0.5).astype(np.float32) * np.float32(scale)
    edges = np.array(
        [127.4, 127.5, 127.6, -128.4, -128.5, -128.6, 1e6, -1e6, 0.0, -0.0], np.float32
    ) * np.float32(scale)
    return np.concatenate([ties, edges, x])[:n] if n > 34 else x


@pytest.mark.parametrize("n", [1, 37, 1000])
def test_f32_f16_round_trip_is_bit_exact(device, n) -> None:
    x = _data(n, n) * np.float32(50)
    x[:1] = 70000.0  # overflows to inf as numpy does
    half = device.empty(n, np.float16)
    with np.errstate(over="ignore"):
        expect = x.astype(np.float16)
    device.run(rf.reformat(device.to_device(x), half))
    got = device.to_host(half)
    np.testing.assert_array_equal(got.view(np.uint16), expect.view(np.uint16))
    back = device.empty(n, np.float32)
    device.run(rf.reformat(half, back))
    np.testing.assert_array_equal(device.to_host(back), expect.astype(np.float32))


@pytest.mark.parametrize("scale", [0.05, 0.1, 1 / 127, 0.3])
@pytest.mark.parametrize("src_dtype", [np.float32, np.float16])
def test_quantize_equals_cpu_int8_reference(device, scale, src_dtype) -> None:
    scale = float(np.float32(scale))  # the engine's scales are float32 values
    with np.errstate(over="ignore"):  # +-1e6 * scale is inf in fp16: saturates like the rest
        x = _data(600, 7, scale).astype(src_dtype)
    q = device.empty(x.size, np.int8)
    device.run(rf.reformat(device.to_device(x), q, scale))
    expect = quantize_activation(x.astype(np.float32), scale).astype(np.int8)
    np.testing.assert_array_equal(device.to_host(q), expect)


@pytest.mark.parametrize("dst_dtype", [np.float32, np.float16])
def test_dequantize_equals_cpu_reference(device, dst_dtype) -> None:
    scale = np.float32(0.0371)
    q = np.arange(-128, 128, dtype=np.int8)
    y = device.empty(q.size, dst_dtype)
    device.run(rf.reformat(device.to_device(q), y, float(scale)))
    expect = dequantize_linear(q, np.array(scale, np.float32)).astype(dst_dtype)
    np.testing.assert_array_equal(device.to_host(y), expect)


def test_reformat_refuses_bad_calls() -> None:
    with pytest.raises(BackendError, match="no reformat"):
        rf.reformat(np.zeros(2, np.float64), np.zeros(2, np.float32))
    with pytest.raises(BackendError, match="positive scale"):
        rf.reformat(np.zeros(2, np.float32), np.zeros(2, np.int8), 0.0)
    with pytest.raises(BackendError, match="equal sizes"):
        rf.reformat(np.zeros(2, np.float32), np.zeros(3, np.float16))


@settings(max_examples=25, deadline=None)
@given(
    values=st.lists(st.floats(width=32, allow_nan=False), min_size=1, max_size=64),
    scale=st.floats(min_value=2.0**-13, max_value=10.0, width=32),
)
def test_quantize_property_equals_reference(emu, values, scale) -> None:
    """Any float32 values and scale: the kernel's int8 equals the float64 CPU reference."""
    x = np.array(values, np.float32)
    q = np.empty(x.size, np.int8)
    emu.run(rf.reformat(x, q, scale))
    np.testing.assert_array_equal(q, quantize_activation(x, scale).astype(np.int8))
