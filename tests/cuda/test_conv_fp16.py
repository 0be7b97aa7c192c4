"""kernels/conv_fp16_wmma.cu: FP16 convolution on tensor cores (wmma 16x16x16, FP32
accumulation), every tile shape, against the engine's FusedConv in float64 on the same FP16
inputs, rounded once to FP16.

Tolerance: one FP16 ulp of the reference value + 1e-5 x the output scale
(conv_support.check_fp16): both round the same FP32-accurate value once, and may land on
neighbouring FP16 values when it lies within the FP32 error of a rounding midpoint.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_infer.cuda.params import conv as pc
from tests.cuda.conv_support import (
    ACTIVATION_CASES,
    Case,
    check_fp16,
    run_float,
    skip_when_sanitized,
)
from tests.cuda.test_conv_fp32 import CASES, conv_cases

WMMA = tuple(t for t in pc.tactics("fp16") if t.family == "wmma")


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"seed{c.seed}")
@pytest.mark.parametrize("tactic", WMMA, ids=lambda t: t.entry)
def test_conv_fp16_matches_reference(
    device, tactic: pc.ConvTactic, case: Case, sanitized: bool
) -> None:
    skip_when_sanitized(sanitized, case.seed)
    y, ref = run_float(device, tactic, case)
    check_fp16(y, ref)


@pytest.mark.parametrize("activation", ACTIVATION_CASES, ids=lambda a: a[0] + str(list(a[1])))
@pytest.mark.parametrize("tactic", WMMA, ids=lambda t: t.entry)
def test_conv_fp16_every_activation(
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
        seed=21,
    )
    y, ref = run_float(device, tactic, case)
    check_fp16(y, ref)


@settings(
    max_examples=8,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(case=conv_cases(), index=st.integers(0, len(WMMA) - 1))
def test_conv_fp16_property(emu, case: Case, index: int, sanitized: bool) -> None:
    skip_when_sanitized(sanitized)
    from tests.cuda.conftest import EmuDevice

    y, ref = run_float(EmuDevice(emu), WMMA[index], case)
    check_fp16(y, ref)
