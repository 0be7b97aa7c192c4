"""qdepthwise_native's proved requantization (tactics/qdw_requant.py, conv_int8_dw.c
QPROVED): the multipliers it proves give the reference op's integer for EVERY accumulator a
channel can make (checked exhaustively on 1x1 layers), channels with results on ties are
left to the checked path, and the kernel takes the proved multipliers where given (a wrong
one shows in its output)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.tactics import cpu_qdepthwise
from edge_infer.engine.backends.cpu.tactics.qdw_requant import (
    _fast,
    _reference,
    proved_multipliers,
)
from edge_infer.engine.ops.quantize import qconv
from tests.engine.backends.cpu.test_qdepthwise_native import run_native
from tests.engine.backends.cpu.test_qdepthwise_requant import ACTS, make_case

C = 48


@pytest.mark.parametrize("act", ACTS)
def test_proved_channels_equal_the_reference_on_every_accumulator(act) -> None:
    rng = np.random.default_rng(len(act[1]) + 7)
    weight = rng.integers(-127, 128, (C, 1, 1, 1)).astype(np.int8)
    weight[:8, 0, 0, 0] = [1, 3, 1, -1, 1, 2, 5, 1]  # small weights: results on half steps
    bias = rng.integers(-300, 300, C).astype(np.int32)
    out_scale = act[1][1] / 127 if act[0] == "clip" else float(rng.uniform(0.01, 1.0))
    ratio = 10.0 ** rng.uniform(-4, 0.5, C)
    ratio[:8] = [0.5, 0.25, 1.5, 0.125, 2.5, 1.0, 0.75, 0.5]  # exact half steps: ties
    mult = out_scale * ratio
    vmq, lo, hi = proved_multipliers(weight, bias, mult, out_scale, act[0], act[1])
    proved = np.flatnonzero(vmq > 0)
    assert len(proved) >= C - 8  # all but (some of) the tie channels
    assert (vmq[:8] == 0).any()  # a tie that f rounds the other way is not proved
    for c in proved:
        w = int(weight[c, 0, 0, 0])
        a = np.arange(min(-128 * w, 127 * w), max(-128 * w, 127 * w) + 1) + int(bias[c])
        g = _reference(a[None], mult[c : c + 1], out_scale, act[0], act[1])
        f = _fast(a[None], vmq[c : c + 1], lo[c : c + 1], hi[c : c + 1])
        np.testing.assert_array_equal(f, g, err_msg=f"channel {c}")


def test_no_proof_for_other_layers() -> None:
    weight = np.ones((4, 1, 3, 3), np.int8)
    mult = np.full(4, 1e-3)
    for act, params in (("leaky_relu", (0.1,)), ("sigmoid", ())):
        vmq, _, _ = proved_multipliers(weight, None, mult, 0.05, act, params)
        assert not vmq.any()
    big = np.full((4, 1, 33, 33), 127, np.int8)  # |acc| reaches 2^24: not proved
    assert not proved_multipliers(big, None, mult, 0.05, "", ())[0].any()


@pytest.mark.skipif(not native.available(), reason="no C compiler here")
@pytest.mark.parametrize("kernel", [1, 3])
def test_kernel_takes_the_proved_multipliers(kernel: int, monkeypatch) -> None:
    """Mixed layers (proved and checked channels) equal the reference; multipliers made
    wrong on purpose change the output, so the proved path is the one that ran."""
    spec, inputs = make_case(3, ACTS[1], kernel)
    want = qconv(*inputs, **spec.attrs())
    proved = proved_multipliers
    got_proved: list[np.ndarray] = []

    def spy(*args, **kw):
        out = proved(*args, **kw)
        got_proved.append(out[0])
        return out

    monkeypatch.setattr(cpu_qdepthwise, "proved_multipliers", spy)
    np.testing.assert_array_equal(run_native(spec, inputs), want)
    assert (got_proved[-1] > 0).sum() >= spec.weight.shape[0] // 2
    assert (got_proved[-1] == 0).any()

    def wrong(*args, **kw):
        vmq, lo, hi = proved(*args, **kw)
        return np.where(vmq > 0, vmq * np.float32(1.5), 0).astype(np.float32), lo, hi

    monkeypatch.setattr(cpu_qdepthwise, "proved_multipliers", wrong)
    assert not np.array_equal(run_native(spec, inputs), want)
