"""qdepthwise_native's direct int8 epilogue (conv_int8_dw.c QNEAR: rint(clamp((acc + b) *
float32(m / os))), the reference's double steps where that lands within 1e-4 of a half)
against the reference op, bit for bit, on every accumulator a 1x1 depthwise layer can make:
each channel's plane holds all 256 int8 values, so acc = w * x covers its weight's whole
product range; biases up to (and past) the float32 bound, multipliers over 12 decades, and
output scales that put many results exactly on or next to half steps (ties to even). Each
x86 vector path (the host's, AVX-512 without VNNI, AVX2, SSE2) and both the grouped and the
row path run the same cases."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.tactics.cpu_qdepthwise import QDepthwiseNative
from edge_infer.engine.ops.quantize import qconv
from edge_infer.engine.tactics.quantized import QConvSpec
from tests.engine.backends.cpu.test_qdepthwise_native import path_lib, run_native  # noqa: F401

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler here")

ACTS = [("", ()), ("relu", ()), ("clip", (0.0, 6.0)), ("clip", (-1.5, 0.75))]
C = 40  # 2.5 groups of 16: a partial group on every path


def make_case(seed: int, act: tuple[str, tuple[float, ...]], kernel: int) -> tuple[Any, list]:
    """A depthwise layer whose int8 results land on and near half steps of out_scale."""
    rng = np.random.default_rng(seed)
    x = np.stack([rng.permutation(256) - 128 for _ in range(C)]).astype(np.int8)
    x = x.reshape(1, C, 16, 16)
    weight = rng.integers(-127, 128, (C, 1, kernel, kernel)).astype(np.int8)
    weight[: C // 4, 0, 0, 0] = 127  # the extremes of the product range
    weight[C // 4 : C // 2, 0, 0, 0] = -127
    taps = kernel * kernel
    bound = 2**24 - taps * 2**14  # |bias| below this: the direct path
    bias = rng.integers(-200, 200, C).astype(np.int64)
    bias[:4] = [bound - 1, -(bound - 1), bound + 7, -(bound + 7)]  # both sides of the bound
    # channels 6-15 (the tie scales below): small odd weights, small biases, so that most
    # of their results lie in range, many on (or next to) half steps
    weight[6:16] = 0
    weight[6:16, 0, kernel // 2, kernel // 2] = [1, 3, 1, -1, 1, 1, 1, 3, 1, -1]
    bias[6:16] = rng.integers(-3, 4, 10)
    bias = bias.astype(np.int32)
    x_scale = float(rng.uniform(0.01, 0.1))
    # out_scale: the clip's upper bound at 127 (else any); per-channel multipliers m over
    # many decades around it, some exact binary multiples of it (ties), some just off
    out_scale = (act[1][1] if act[0] == "clip" else float(rng.uniform(0.01, 10.0))) / 127
    ratio = 10.0 ** rng.uniform(-4, 1, C)
    ratio[6:12] = [0.5, 0.25, 1.5, 0.125, 2.5, 1.0]
    ratio[12:16] = ratio[6:10] * (1 + 2**-20)
    w_scale = (out_scale * ratio / x_scale).astype(np.float32)
    pad = kernel // 2
    spec = QConvSpec(
        x_shape=x.shape,
        x_dtype=np.dtype(np.int8),
        out_shape=x.shape,
        weight=weight,
        w_scale=w_scale,
        bias=bias,
        x_scale=x_scale,
        strides=(1, 1),
        pads=(pad, pad, pad, pad),
        dilations=(1, 1),
        group=C,
        activation=act[0],
        activation_params=act[1],
        residual="none",
        z_dtype=None,
        z_scale=0.0,
        out_precision="int8",
        out_scale=out_scale,
    )
    return spec, [x, weight, w_scale, bias, None]


def near_halves(spec: QConvSpec, inputs: list) -> int:
    """How many outputs have y / out_scale within 1e-4 of a half (the fallback's lanes)."""
    fp32 = QConvSpec(**{**spec.__dict__, "out_precision": "fp32"})
    y = qconv(*inputs, **fp32.attrs()).astype(np.float64) / spec.out_scale
    y = y[np.abs(y) < 128]
    return int(np.sum(np.abs(np.abs(y - np.floor(y)) - 0.5) < 1e-4))


@pytest.mark.parametrize("kernel", [1, 3])
def test_direct_int8_epilogue_equals_the_reference(kernel: int, monkeypatch) -> None:
    for grouped in (True, False):
        monkeypatch.setattr(QDepthwiseNative, "_grouped", lambda self, g=grouped: g)
        for seed, act in enumerate(ACTS):
            spec, inputs = make_case(seed, act, kernel)
            assert near_halves(spec, inputs) >= 50  # the fallback is exercised
            want = qconv(*inputs, **spec.attrs())
            got = run_native(spec, inputs, workers=1 + seed % 2)
            np.testing.assert_array_equal(got, want, err_msg=f"{act} grouped={grouped}")


def test_bounds_near_a_half_and_large_multipliers() -> None:
    """The rows path's byte clamp (conv_int8_dw.c qdw_rows) is declined where a clip bound
    over out_scale lies near a half (the whole layer) or m / out_scale exceeds 64 (those
    channels): they take the float clamp, still the reference's integers."""
    spec, inputs = make_case(30, ("clip", (0.0, 6.0)), 3)
    spec = QConvSpec(**{**spec.__dict__, "out_scale": 6.0 / 100.5})  # the bound at 100.5
    want = qconv(*inputs, **spec.attrs())
    assert np.sum(want == 100) + np.sum(want == 101) > 0
    np.testing.assert_array_equal(run_native(spec, inputs), want)
    spec, inputs = make_case(31, ("relu", ()), 3)
    w_scale = spec.w_scale.copy()
    w_scale[16:24] *= 80.0 / (w_scale[16:24] * spec.x_scale / spec.out_scale)  # m / os 80
    spec = QConvSpec(**{**spec.__dict__, "w_scale": w_scale})
    inputs[2] = w_scale
    want = qconv(*inputs, **spec.attrs())
    assert (want[:, 16:24] == 127).any() and (want[:, 16:24] == 0).any()
    np.testing.assert_array_equal(run_native(spec, inputs), want)


def test_every_vector_path(path_lib, monkeypatch) -> None:  # noqa: F811
    monkeypatch.setattr(native, "library", lambda: path_lib)
    for grouped in (True, False):
        monkeypatch.setattr(QDepthwiseNative, "_grouped", lambda self, g=grouped: g)
        for seed, act in enumerate(ACTS):
            spec, inputs = make_case(10 + seed, act, 3)
            want = qconv(*inputs, **spec.attrs())
            got = run_native(spec, inputs)
            np.testing.assert_array_equal(got, want, err_msg=f"{act} grouped={grouped}")


def test_threads_get_even_chunks() -> None:
    """Whole channel groups when they divide among 2 * workers (or workers), else bands of
    output rows of all channels."""
    spec, _ = make_case(0, ACTS[0], 3)
    tactic = QDepthwiseNative(spec)
    assert tactic._chunks(144, 56, 2) == [(0, 144, 0, 28), (0, 144, 28, 56)]
    assert tactic._chunks(96, 56, 2) == [(0, 48, 0, 56), (48, 96, 0, 56)]
    assert tactic._chunks(64, 56, 2) == [(16 * k, 16 * k + 16, 0, 56) for k in range(4)]
    assert tactic._chunks(64, 56, 1) == [(0, 64, 0, 56)]
