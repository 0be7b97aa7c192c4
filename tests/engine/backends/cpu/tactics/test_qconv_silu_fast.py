"""qconv_native's SiLU to int8 without its exact chain (kernels/conv_int8.c silu_q_vecs): an
estimate of t = silu(y) / s, rounded where it lies farther than its error bound from a half,
the exact chain (finish_vecs) for the vectors with a lane nearer. The same bits as the exact
chain everywhere: compared with a float32 replica of that chain (y = float32(double(acc) *
mult), simd.h's vexp of -|y|, 1 / (1 + e), rint(double(silu) / s)) over accumulators that
cover the negative tail, the minimum near y = -1.28, zero, every output step and saturation,
including accumulators whose t lies within the estimate's error bound of a half."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.tactics.quantized import QConvSpec
from tests.engine.backends.cpu.tactics.test_qconv_native import run_native

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler here")

F = np.float32


def vexp(x: np.ndarray) -> np.ndarray:
    """simd.h's vexp in float32, operation by operation (no fused multiply-adds)."""
    x = np.minimum(np.maximum(x, F(-87.0)), F(88.0))
    nf = np.rint(x * F(1.4426950408889634))
    r = x - nf * F(0.693359375) - nf * F(-2.12194440e-4)
    p = F(1.9875691500e-4) * r + F(1.3981999507e-3)
    for c in (8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1):
        p = p * r + F(c)
    y = p * r * r + r + F(1.0)
    scale = ((nf.astype(np.int32) + 127) << 23).view(np.float32)
    return y * scale


def silu_q(
    acc: np.ndarray, mult: np.ndarray, s: float, z: np.ndarray | None, z_scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """conv_int8.c's exact chain: int8 outputs of accumulators acc [C, P] under SiLU, the
    int8 residual z [C, P] added after it (or none), and the float32 values rounded."""
    y = (acc.astype(np.float64) * mult[:, None]).astype(np.float32)
    e = vexp(np.where(y < 0, y, -y))
    r = F(1.0) / (F(1.0) + e)
    silu = y * np.where(y >= 0, r, e * r)
    if z is not None:
        silu = silu + z.astype(np.float32) * F(z_scale)
    return np.clip(np.rint(silu.astype(np.float64) / s), -128, 127).astype(np.int8), silu


def near_halves(n: int, s: float, rng: np.random.Generator) -> np.ndarray:
    """n values of y where silu(y) / s is a half (float64 bisection): on SiLU's rising side
    from its minimum (-1.278) up to 127.5 steps, and on its falling side below it."""
    lo_q, hi_q = int(np.ceil(-0.2784 / s - 0.5)), 127
    h = rng.integers(lo_q, hi_q, n) + 0.5
    falling = (h < 0) & (rng.random(n) < 0.5)
    a = np.where(falling, -30.0, -1.2785)
    b = np.where(falling, -1.2785, 200.0)
    for _ in range(80):  # silu - h s changes sign once on [a, b]: rising, or falling
        m = (a + b) / 2
        f = m / (1 + np.exp(-m)) - h * s
        go_right = (f < 0) != falling
        a, b = np.where(go_right, m, a), np.where(go_right, b, m)
    return (a + b) / 2


@pytest.mark.parametrize(
    ("out_scale", "z_scale"), [(0.05, None), (0.0173, None), (0.31, None), (0.05, 0.02)]
)
def test_silu_int8_same_bits_as_the_exact_chain(out_scale: float, z_scale: float | None) -> None:
    """1 x 1 conv over 4 channels, weights (w0, 0, 0, 0): acc = w0 x + bias. Half the channels
    (w0 127) sweep a part of SiLU's range each; the others (w0 1) step by about 2^-29 |y| in y
    around a y where t is a half: the estimate's error there decides the rounding unless the
    vector is redone. With z_scale, an int8 residual added after SiLU (half its values 0, so
    that t stays near the halves)."""
    rng = np.random.default_rng(7)
    cout, h, w = 64, 8, 80
    x = rng.integers(-128, 128, (1, 4, h, w)).astype(np.int8)
    half = cout // 2
    weight = np.zeros((cout, 4, 1, 1), np.int8)
    weight[:half, 0], weight[half:, 0] = 127, 1
    x_scale = 0.01
    # sweeps: y = acc mult spans 16256 mult either side of the centre
    centre = np.concatenate(
        [rng.uniform(-30, 3, half // 2), rng.uniform(0, 260 * out_scale, half - half // 2)]
    )
    y_half = near_halves(cout - half, out_scale, rng)
    mult = np.concatenate(
        [10.0 ** rng.uniform(-6.5, -2.5, half), np.maximum(np.abs(y_half), 0.01) * 2.0**-29]
    )
    centre = np.concatenate([centre, y_half])
    w_scale = (mult / x_scale).astype(np.float32)
    mult = x_scale * w_scale.astype(np.float64)
    bias = np.clip(np.round(centre / mult), -(2**30), 2**30).astype(np.int32)
    z = None
    if z_scale is not None:
        z = rng.integers(-128, 128, (1, cout, h, w)).astype(np.int8)
        z.flat[::2] = 0
    spec = QConvSpec(
        x_shape=x.shape,
        x_dtype=np.dtype(np.int8),
        out_shape=(1, cout, h, w),
        weight=weight,
        w_scale=w_scale,
        bias=bias,
        x_scale=x_scale,
        strides=(1, 1),
        pads=(0, 0, 0, 0),
        dilations=(1, 1),
        group=1,
        activation="silu",
        activation_params=(),
        residual="none" if z is None else "post",
        z_dtype=None if z is None else np.dtype(np.int8),
        z_scale=z_scale or 0.0,
        out_precision="int8",
        out_scale=out_scale,
    )
    got = run_native(spec, [x, weight, w_scale, bias, z])
    acc = weight[:, 0, 0, :1].astype(np.int64) * x[0, 0].reshape(1, -1) + bias[:, None]
    zc = None if z is None else z.reshape(cout, -1)
    want, silu = silu_q(acc, mult, out_scale, zc, z_scale or 0.0)
    t = silu.astype(np.float64) / out_scale
    # the sweep reaches the redone vectors: lanes within the estimate's bound of a half
    near = np.abs(np.abs(t - np.rint(t)) - 0.5) < 5e-5 + np.abs(t) * 2.0**-13
    assert near[half:].mean() > 0.25, near[half:].mean()
    assert (want == 127).any() and (want < 0).any()
    np.testing.assert_array_equal(got.reshape(cout, -1), want)
