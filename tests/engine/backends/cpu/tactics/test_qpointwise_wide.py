"""qpointwise_native's AVX2 strips on many input channels (conv_int8_pw.c: strips on any
number of quads, a group at least one block of 16 positions) against the reference QConv,
bit for bit: 1040 input channels (260 quads: one block a group, 16 KB of layout a block)
and 200 (50 quads: groups of 5 blocks), the proved epilogue and the one with a residual, u8
and signed activations (no weight -128: the |x| . (w * sign(x)) strips), 1 and 2 threads."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.ops.quantize import qconv
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
