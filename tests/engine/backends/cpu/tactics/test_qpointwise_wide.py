"""qpointwise_native's AVX2 strips on many input channels (conv_int8_pw.c: strips on any
number of quads, a group at least one block of 16 positions) against the reference QConv,
bit for bit: 1040 input channels (260 quads: one block a group, 16 KB of layout a block)
and 200 (50 quads: groups of 5 blocks), the proved epilogue and the one with a residual, u8
activations (the strips reading most quads two at a time, their int16 pair sums added before
one vpmaddwd) and signed ones (no weight -128: |x| . (w * sign(x))), 1 and 2 threads; and
each panel's pairing of its quads."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.tactics.cpu_qpointwise import _pairings
from edge_infer.engine.ops.quantize import qconv
from edge_infer.engine.tactics.quantized import QConvSpec
from tests.engine.backends.cpu.tactics.test_qconv_native import make_case
from tests.engine.backends.cpu.tactics.test_qpointwise_native import run

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler here")

#: x shape, Cout: 3 whole blocks and a tail of 1 (the output-channel tail), 2 panels and a
#: last tile of 2 channels; 6 blocks and a last block of 5
WIDE_SHAPES = [((1, 1040, 7, 7), 18), ((1, 200, 9, 11), 9)]


@pytest.mark.parametrize("x_lo", [0, -128], ids=["u8", "signed"])
@pytest.mark.parametrize("residual", ["none", "pre"])
@pytest.mark.parametrize("act", [("relu", ()), ("", ())], ids=["relu", "none"])
def test_wide_strips(act, residual, x_lo) -> None:
    for k, (x_shape, cout) in enumerate(WIDE_SHAPES):
        conv = (x_shape, cout, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1)
        z_dtype = np.int8 if residual == "pre" else None
        spec, inputs = make_case(conv, act, residual, z_dtype, "int8", np.int8, seed=40 + k)
        rng = np.random.default_rng(k)
        inputs = [rng.integers(x_lo, 128, x_shape).astype(np.int8), *inputs[1:]]
        want = qconv(*inputs, **spec.attrs())
        assert (np.abs(want) < 127).mean() > 0.2, "a saturated case tests little"
        for workers in (1, 2):
            got = run(spec, inputs, workers)
            np.testing.assert_array_equal(got, want, err_msg=f"{x_shape} {cout} {workers}")


def test_panel_pairings() -> None:
    """Each 16-channel panel's [T2, quad order] row (cpu_qpointwise._pairings): a panel whose
    every quad pair would leave int16 at activations up to 127 (a channel of -128s: two quads'
    byte pair -512 x 127) reads no quads two at a time; a panel of small weights all of them;
    the order a permutation of the quads."""
    cq = 6
    w = np.random.default_rng(3).integers(-40, 41, (32, 4 * cq)).astype(np.int8)
    w[0] = -128
    rows = _pairings(w, cq)[: 2 * (cq + 1)].reshape(2, cq + 1)
    assert rows[0, 0] == 0 and rows[1, 0] == cq
    for row in rows:
        assert sorted(row[1:]) == list(range(cq))


def test_wide_u8_extremes() -> None:
    """u8 activations at 127 against a channel of -128s and one of 127s (no two quads of
    theirs may add their int16 pair sums: -512 x 127 leaves int16) on 50 quads: their panel
    reads its quads one at a time, exactly; the other panel two at a time."""
    conv = ((1, 200, 4, 8), 20, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1)
    spec, inputs = make_case(conv, ("", ()), "none", None, "int8", np.int8, seed=50)
    rng = np.random.default_rng(50)
    x = rng.integers(100, 128, spec.x_shape).astype(np.int8)
    w = np.asarray(spec.weight).copy()
    w[0], w[1] = -128, 127
    spec = QConvSpec(**{**spec.__dict__, "weight": w})
    inputs = [x, w, *inputs[2:]]
    rows = _pairings(np.pad(w.reshape(20, 200), ((0, 28), (0, 0))), 50)
    assert rows[0] == 0 and rows[51] > 0
    np.testing.assert_array_equal(run(spec, inputs), qconv(*inputs, **spec.attrs()))
