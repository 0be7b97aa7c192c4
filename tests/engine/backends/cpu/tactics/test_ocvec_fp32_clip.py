"""``ocvec_native``'s float32 epilogue for a tile under clip without a residual
(kernels/conv_ocvec.c rows_out_clip: MobileNetV2's 14 x 14 and 7 x 7 expansions, relu6)
against a float64 reference: an expansion (packed) and a projection read in place, positions
that leave a short last tile, output channels off the 16-channel blocks, outputs past both
clip bounds."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.tactics.cpu_ocvec import OcVecNative
from edge_infer.engine.tactics.base import ConvSpec
from tests.engine.backends.cpu.tactics.test_cpu_conv import expected

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler: no native path")


def clip_case(cin: int, h: int, w: int, cout: int, seed: int) -> tuple[ConvSpec, list, np.ndarray]:
    """A 1 x 1 layer under clip(0, 6): its spec, inputs and float64 reference (outputs of
    scale 4: many above 6 and below 0)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, cin, h, w)).astype(np.float32)
    wt = (4 * rng.standard_normal((cout, cin, 1, 1)) / np.sqrt(cin)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    conv = np.einsum("ok,nkhw->nohw", wt[:, :, 0, 0].astype(np.float64), x.astype(np.float64))
    conv += b[None, :, None, None]
    spec = ConvSpec(
        x.shape, (1, cout, h, w), wt, b, (1, 1), (0,) * 4, (1, 1), 1, "clip", (0.0, 6.0)
    )
    return spec, [x, wt, b], expected(conv, None, "clip", (0.0, 6.0), "none")


@pytest.mark.parametrize(
    ("cin", "h", "w", "cout"),
    [(24, 11, 13, 40), (40, 12, 14, 24), (64, 7, 7, 200)],  # expansions packed, in place
)
def test_clip_without_residual_matches_the_reference(cin: int, h: int, w: int, cout: int) -> None:
    spec, ins, want = clip_case(cin, h, w, cout, cin + cout)
    assert OcVecNative.applicable(spec)
    out = np.full(spec.out_shape, np.nan, np.float32)
    OcVecNative(spec).bind(ins, [out], ScratchPool(None))()
    assert (want == 0).any() and (want == 6).any()
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=2e-4)
