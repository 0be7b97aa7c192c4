"""kernels/conv_depthwise.cu: depthwise convolution in FP32, FP16 and INT8 against the
engine's FusedConv in float64 (FP32: <= 1e-5 x the output scale; FP16: one FP16 ulp, see
conv_support.check_fp16) and QConv (INT8: conv_support.check_int8)."""

from __future__ import annotations

import pytest

from edge_infer.cuda.params import conv as pc
from tests.cuda.conv_support import (
    ACTIVATION_CASES,
    Case,
    check_fp16,
    check_fp32,
    check_int8,
    run_float,
    run_int8,
    skip_when_sanitized,
)

DEPTHWISE = tuple(t for t in pc.TACTICS if t.family == "depthwise")

# fmt: off
CASES = [
    # 3x3, stride 1, pad 1, multiplier 1: the MobileNet block
    Case(2, 6, 7, 9, 6, group=6, activation="relu", seed=11),
    # 5x5, stride 2, asymmetric pads, channel multiplier 2, residual before the activation,
    # slices of larger buffers
    Case(1, 4, 11, 10, 8, r=5, s=5, group=4, strides=(2, 2), pads=(2, 1, 1, 2),
         activation="hard_swish", residual="pre", x_slice=(2, 1, 3), y_slice=(1, 2, 5),
         seed=12),
    # dilation 2, 3x1 kernel, residual after the activation, no bias
    Case(1, 5, 8, 6, 5, r=3, s=1, group=5, pads=(2, 0, 2, 0), dilations=(2, 1),
         activation="sigmoid", residual="post", bias=False, seed=13),
]
# fmt: on


def _run_and_check(device, tactic: pc.ConvTactic, case: Case) -> None:
    if tactic.precision == "int8":
        y, ref = run_int8(device, tactic, case)
        check_int8(tactic, case, y, ref)
        return
    y, ref = run_float(device, tactic, case)
    (check_fp32 if tactic.out == "f32" else check_fp16)(y, ref)


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"seed{c.seed}")
@pytest.mark.parametrize("tactic", DEPTHWISE, ids=lambda t: t.entry)
def test_depthwise_matches_reference(device, tactic: pc.ConvTactic, case: Case) -> None:
    _run_and_check(device, tactic, case)


@pytest.mark.parametrize("activation", ACTIVATION_CASES, ids=lambda a: a[0] + str(list(a[1])))
@pytest.mark.parametrize("tactic", DEPTHWISE, ids=lambda t: t.entry)
def test_depthwise_every_activation(
    device, tactic: pc.ConvTactic, activation, sanitized: bool
) -> None:
    skip_when_sanitized(sanitized)
    name, params = activation
    case = Case(
        1,
        3,
        5,
        6,
        3,
        group=3,
        activation=name,
        act_params=params,
        residual="post",
        y_slice=(1, 0, 2),
        seed=14,
    )
    _run_and_check(device, tactic, case)


def test_depthwise_tactics_refuse_dense_layers() -> None:
    from edge_infer.errors import EdgeInferError

    dense = Case(1, 4, 5, 5, 4, group=2).geometry()
    assert not DEPTHWISE[0].supports(dense)
    with pytest.raises(EdgeInferError, match="depthwise"):
        DEPTHWISE[0].call(dense, pc.ConvParams())


def test_candidates_pick_by_precision_output_and_geometry() -> None:
    depthwise = Case(1, 4, 5, 5, 8, group=4).geometry()
    dense = Case(1, 4, 5, 5, 8, group=2).geometry()
    names = {t.entry for t in pc.candidates(depthwise, "int8", "s8", 87)}
    assert "ei_conv_depthwise_s8_s8" in names and "ei_conv_s8_wmma_32x32_s8" in names
    assert all(t.family != "depthwise" for t in pc.candidates(dense, "fp32", "f32", 87))
    assert {t.out for t in pc.candidates(dense, "int8", "f16", 72)} == {"f16"}
