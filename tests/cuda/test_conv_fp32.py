"""kernels/conv_fp32.cu: the direct and implicit-GEMM FP32 convolutions, every tile shape,
against the engine's FusedConv in float64 (max error <= 1e-5 x the output scale)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_infer.cuda.params import conv as pc
from tests.cuda.conv_support import (
    ACTIVATION_CASES,
    Case,
    check_fp32,
    run_float,
    skip_when_sanitized,
)

DENSE = tuple(t for t in pc.tactics("fp32") if t.family != "depthwise")

# fmt: off
CASES = [
    # K not a multiple of any tile, two images, bias + relu
    Case(2, 5, 7, 7, 20, activation="relu", seed=1),
    # groups, stride 2, asymmetric pads, dilation, residual before the activation; input and
    # output are channel slices of larger buffers with padded rows
    Case(1, 6, 9, 8, 10, group=2, strides=(2, 2), pads=(1, 0, 2, 1), dilations=(2, 2),
         activation="silu", residual="pre", x_slice=(1, 2, 3), y_slice=(2, 3, 4), seed=2),
    # 1x1, K = 70: two row tiles of 64, residual after the activation
    Case(2, 8, 6, 5, 70, r=1, s=1, pads=(0, 0, 0, 0), activation="leaky_relu",
         act_params=(0.1,), residual="post", y_slice=(3, 0, 2), seed=3),
    # a 5x3 kernel, 3 groups, strides (2, 1), dilations (1, 2), no bias
    Case(1, 6, 11, 9, 9, r=5, s=3, group=3, strides=(2, 1), pads=(2, 1, 1, 0),
         dilations=(1, 2), activation="gelu", bias=False, seed=4),
    # several column tiles (N*P*Q = 300), clip
    Case(3, 4, 10, 10, 24, activation="clip", act_params=(-0.5, 0.75), seed=5),
    # depthwise with a channel multiplier of 2, through the dense kernels' grouped GEMM
    Case(1, 4, 7, 6, 8, group=4, strides=(1, 2), activation="mish", residual="post", seed=7),
]
# fmt: on


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"seed{c.seed}")
@pytest.mark.parametrize("tactic", DENSE, ids=lambda t: t.entry)
def test_conv_fp32_matches_reference(
    device, tactic: pc.ConvTactic, case: Case, sanitized: bool
) -> None:
    skip_when_sanitized(sanitized, case.seed)
    y, ref = run_float(device, tactic, case)
    check_fp32(y, ref)


@pytest.mark.parametrize("activation", ACTIVATION_CASES, ids=lambda a: a[0] + str(list(a[1])))
@pytest.mark.parametrize("tactic", DENSE, ids=lambda t: t.entry)
def test_conv_fp32_every_activation(
    device, tactic: pc.ConvTactic, activation, sanitized: bool
) -> None:
    skip_when_sanitized(sanitized)
    name, params = activation
    case = Case(
        1, 3, 5, 6, 7, activation=name, act_params=params, residual="pre", y_slice=(1, 1, 1), seed=6
    )
    y, ref = run_float(device, tactic, case)
    check_fp32(y, ref)


@st.composite
def conv_cases(draw: st.DrawFn) -> Case:
    """Small random geometries (the emulator runs every CUDA thread as an OS thread)."""
    group = draw(st.sampled_from((1, 1, 2, 3)))
    c = group * draw(st.integers(1, 3))
    k = group * draw(st.integers(1, 12))
    r, s = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pads = tuple(draw(st.integers(0, 2)) for _ in range(4))
    h = draw(st.integers(max(1, (r - 1) * dil[0] + 1 - pads[0] - pads[2]), 9))
    w = draw(st.integers(max(1, (s - 1) * dil[1] + 1 - pads[1] - pads[3]), 9))
    name, params = draw(st.sampled_from(ACTIVATION_CASES))
    return Case(
        draw(st.integers(1, 2)),
        c,
        h,
        w,
        k,
        r,
        s,
        group,
        (draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        pads,
        dil,
        name,
        params,
        draw(st.sampled_from(("none", "pre", "post"))),
        draw(st.booleans()),
        (draw(st.integers(0, 2)), 0, draw(st.integers(0, 3))),
        (draw(st.integers(0, 2)), draw(st.integers(0, 2)), draw(st.integers(0, 3))),
        draw(st.integers(0, 2**16)),
    )


@settings(
    max_examples=12,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(case=conv_cases(), index=st.integers(0, len(DENSE) - 1))
def test_conv_fp32_property(emu, case: Case, index: int, sanitized: bool) -> None:
    skip_when_sanitized(sanitized)
    from tests.cuda.conftest import EmuDevice

    y, ref = run_float(EmuDevice(emu), DENSE[index], case)
    check_fp32(y, ref)
