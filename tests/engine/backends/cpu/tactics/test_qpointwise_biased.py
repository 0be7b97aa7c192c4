"""qpointwise_native's AVX2 strips on signed activations read a block of 16 positions as
(w + 128) . x (the biased quads, vpmaddubsw with the weights as the unsigned operand) less
128 x each position's activations' sum where every byte pair of the block's quads sums to
[-128, 128] (conv_int8_pw.c qpw_check), else as |x| . (w * sign(x)): bit for bit the reference
QConv on blocks of both kinds side by side, at the bound (pairs summing to +-128 against
channels of 127s: 255 x 128 per int16 pair sum) and just past it (+-129: on the rows layout a
block that must take the sign path; on the blocked one a block fixed by qpw_fix, those pairs'
first bytes moved in and w . r added back, or with more such pairs than it fixes, 5 on 16
quads, the sign path), the rows layout (fewer than 16 quads) and the blocked one, with and
without a residual, 1 and 2 threads."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.tactics.cpu_qpointwise import QPointwiseNative
from edge_infer.engine.ops.quantize import qconv
from edge_infer.engine.tactics.quantized import QConvSpec
from tests.engine.backends.cpu.tactics.test_qconv_native import make_case
from tests.engine.backends.cpu.tactics.test_qpointwise_native import run

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler here")

#: x shape, Cout: rows layout (6 quads) on 7 blocks and a tail of 3 positions; blocked
#: layout (24 quads) on 3 blocks and a tail of 1 (the output-channel tail); blocked on 4
#: whole blocks
SHAPES = [((1, 24, 9, 13), 40), ((1, 96, 7, 7), 36), ((1, 64, 8, 8), 20)]


def _inputs(spec: QConvSpec, inputs: list, seed: int) -> list:
    """Small signed activations (every block passes the check) with: block 1's position 3
    holding byte pairs at the bound (64 + 64, -64 + -64, 128 - 0 as -128 + 0), block 2's
    positions 5 and 6 a pair just past it each (65 + 64, -65 + -64), block 0's position 7
    five (100 + 100); and two channels of weights 127 (the biased weights 255)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-60, 61, spec.x_shape).astype(np.int8)
    flat = x.reshape(spec.x_shape[1], -1)
    flat[0:2, 16 + 3] = 64
    flat[2:4, 16 + 3] = -64
    flat[4, 16 + 3], flat[5, 16 + 3] = -128, 0
    flat[0, 32 + 5], flat[1, 32 + 5] = 65, 64
    flat[2, 32 + 6], flat[3, 32 + 6] = -65, -64
    flat[8:18, 7] = 100
    w = np.asarray(spec.weight).copy()
    w[0] = 127
    w[-1] = 127
    w[w == -128] = -127  # (a -128 weight takes the int16 products instead)
    return [x, w, *inputs[2:]]


@pytest.mark.parametrize("residual", ["none", "pre"])
@pytest.mark.parametrize("act", [("clip", (-3.0, 3.0)), ("", ())], ids=["clip", "none"])
def test_biased_blocks_bit_exact(act, residual) -> None:
    for k, (x_shape, cout) in enumerate(SHAPES):
        conv = (x_shape, cout, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1)
        z_dtype = np.int8 if residual == "pre" else None
        spec, inputs = make_case(conv, act, residual, z_dtype, "int8", np.int8, seed=60 + k)
        inputs = _inputs(spec, inputs, k)
        spec = QConvSpec(**{**spec.__dict__, "weight": inputs[1]})
        want = qconv(*inputs, **spec.attrs())
        assert (np.abs(want) < 127).mean() > 0.2, "a saturated case tests little"
        for workers in (1, 2):
            got = run(spec, inputs, workers)
            np.testing.assert_array_equal(got, want, err_msg=f"{x_shape} {cout} {workers}")


def test_biased_quads_packed_for_signed_inputs_only() -> None:
    """The biased quads (and the sign row's flag) where the input may be negative; none where
    its range is known non-negative (the strips read u8 activations there)."""
    if native.library().qpw_int8_path() != 2:
        pytest.skip("biased quads only in the AVX2 path's weight panels")
    conv = ((1, 24, 4, 4), 20, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1)
    spec, _ = make_case(conv, ("", ()), "none", None, "int8", np.int8, seed=70)
    signed = QPointwiseNative(QConvSpec(**{**spec.__dict__, "x_range": (-128, 127)}))
    relu = QPointwiseNative(QConvSpec(**{**spec.__dict__, "x_range": (0, 127)}))
    ps, pr = signed._prepared(), relu._prepared()
    cq, cp = ps["cq"], ps["coutp"]
    assert ps["wts"][cq + 3, 1] == 1 and pr["wts"][cq + 3, 1] == 0
    assert ps["wts"].shape[0] == pr["wts"].shape[0] + cq
    w = np.zeros((cp, 4 * cq), np.int16)
    w[:20, :24] = np.asarray(spec.weight).reshape(20, 24)
    quads = (w + 128).astype(np.uint8).reshape(cp // 16, 16, cq, 4).transpose(0, 2, 1, 3)
    np.testing.assert_array_equal(ps["wts"][-cq:].reshape(-1).view(np.uint8), quads.reshape(-1))


def test_biased_float32_output() -> None:
    """A float32 output (its tiles: no strips there) on the blocked layout: the blocks that
    pass or are fixed as the strips' ones, bit for bit."""
    if native.library().qpw_int8_path() != 2:
        pytest.skip("a float32 output only on the AVX2 path")
    for k, (x_shape, cout) in enumerate(SHAPES[1:]):
        conv = (x_shape, cout, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1)
        spec, inputs = make_case(conv, ("clip", (0.0, 6.0)), "none", None, "fp32", np.int8, 80 + k)
        inputs = _inputs(spec, inputs, k)
        spec = QConvSpec(**{**spec.__dict__, "weight": inputs[1]})
        want = qconv(*inputs, **spec.attrs())
        assert want.dtype == np.float32 and (want == 0).mean() < 0.9
        for workers in (1, 2):
            np.testing.assert_array_equal(run(spec, inputs, workers), want, err_msg=f"{k}")
