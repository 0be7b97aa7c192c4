"""kernels/conv_int8.cu: INT8 convolution (__dp4a and wmma s8), every tile shape and output
type, against the engine's QConv (edge_infer/engine/ops/quantize.py) on the same int8 data.

Tolerances (conv_support.check_int8): int8 output within 1 LSB (FP32 versus float64 quotient
at a rounding tie); fp32 output bit-equal with the exact activations and within 1e-6 x the
output scale with the transcendental ones; fp16 output one FP16 ulp.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_infer.cuda.params import conv as pc
from edge_infer.engine.ops.quantize import qconv
from tests.cuda.conv_support import (
    ACTIVATION_CASES,
    Case,
    Strided,
    check_int8,
    launch_conv,
    output_shape,
    run_int8,
    skip_when_sanitized,
)
from tests.cuda.test_conv_fp32 import CASES, conv_cases

INT8 = tuple(t for t in pc.tactics("int8") if t.family != "depthwise")


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"seed{c.seed}")
@pytest.mark.parametrize("tactic", INT8, ids=lambda t: t.entry)
def test_conv_int8_matches_reference(
    device, tactic: pc.ConvTactic, case: Case, sanitized: bool
) -> None:
    skip_when_sanitized(sanitized, case.seed)
    y, ref = run_int8(device, tactic, case)
    check_int8(tactic, case, y, ref)


@pytest.mark.parametrize("activation", ACTIVATION_CASES, ids=lambda a: a[0] + str(list(a[1])))
@pytest.mark.parametrize("tactic", INT8, ids=lambda t: t.entry)
def test_conv_int8_every_activation(
    device, tactic: pc.ConvTactic, activation, sanitized: bool
) -> None:
    skip_when_sanitized(sanitized)
    name, params = activation
    case = Case(
        1,
        3,
        5,
        6,
        7,
        activation=name,
        act_params=params,
        residual="pre",
        y_slice=(1, 1, 1),
        seed=31,
    )
    y, ref = run_int8(device, tactic, case)
    check_int8(tactic, case, y, ref)


def test_conv_int8_saturates_and_accumulates_exactly(device, sanitized: bool) -> None:
    """Full-range int8 data over a fan-in of 288: int32 sums of ~1e5 that must be exact, and
    requantized values far outside the int8 range, which saturate at both ends."""
    skip_when_sanitized(sanitized)
    case = Case(1, 32, 4, 4, 9, seed=32, bias=False)
    for tactic in INT8:
        y, ref = run_int8(device, tactic, case)
        check_int8(tactic, case, y, ref)
        if tactic.out == "s8":
            values = np.unique(y.view)
            assert values.min() == -128 and values.max() == 127, values


@pytest.mark.parametrize("y_scale", [2.0, float(np.float32(0.4)), float(np.float32(0.6))])
def test_conv_int8_rounds_ties_as_the_reference(device, y_scale: float) -> None:
    """Outputs v = -128..127 exactly (x_scale = w_scale = 1, a 1x1 identity) quantized with
    y_scale: 2.0 makes every odd v an exact tie (half to even); with float32(0.4) the float
    quotient of 64 of them rounds onto a .5 that the exact quotient is below, which plain
    rintf would round the wrong way."""
    case = Case(1, 1, 16, 16, 1, r=1, s=1, pads=(0, 0, 0, 0), bias=False)
    xq = np.arange(-128, 128).astype(np.int8).reshape(1, 1, 16, 16)
    wq, w_scale = np.ones((1, 1, 1, 1), np.int8), np.ones(1, np.float32)
    ref = qconv(xq, wq, w_scale, x_scale=1.0, out_precision="int8", out_scale=y_scale)
    for tactic in pc.tactics("int8", "s8"):
        if not tactic.supports(case.geometry()):
            continue
        y = Strided.make(output_shape(case), np.int8, (0, 0, 0), 99)
        launch_conv(
            device,
            tactic,
            case,
            x=Strided.of(xq, (0, 0, 0)),
            weight=wq,
            bias=None,
            z=None,
            y=y,
            w_scale=w_scale,
            x_scale=1.0,
            y_scale=y_scale,
        )
        np.testing.assert_array_equal(y.view, ref, err_msg=tactic.entry)


@settings(
    max_examples=10,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(case=conv_cases(), index=st.integers(0, len(INT8) - 1))
def test_conv_int8_property(emu, case: Case, index: int, sanitized: bool) -> None:
    skip_when_sanitized(sanitized)
    from tests.cuda.conftest import EmuDevice

    y, ref = run_int8(EmuDevice(emu), INT8[index], case)
    check_int8(INT8[index], case, y, ref)
