"""``pointwise_native``'s short last strips (kernels/conv_pointwise.c tail_strip): a block
whose last strip has 1 to 4 pixels (MobileNetV2's 7 x 7 planes: 49 = 2 x 24 + 1; 14 x 14:
196 = 8 x 24 + 4) runs those pixels with vectors along the output channels, panels in
groups (8, 4, 3 or 2 for 1 to 4 pixels; a group short of panels included) right after the
group's strips. Per output the tiles' products in their order: in a batch the same pixels
fall in whole strips across images (or in a tail of another length), and each image bound
alone gives the batch's bits, and the reference."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.tactics.cpu_pointwise import (
    PACK_FLOATS,
    PointwiseNative,
    _pack_floats,
)
from edge_infer.engine.tactics.base import ConvSpec
from tests.engine.backends.cpu.tactics.test_pointwise_native import _case, _check

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler: no native path")

#: (batch, cin, h, w, cout): alone, tails of 1 (7 x 7: packed, two channel blocks of 480),
#: 4 (14 x 14: packed past 512 channels; in place at 384, where each image's tail is its own
#: in the batch too: the reference only), 3 and 2 pixels (no whole strip); 9 to 13 panels
#: (groups short of panels), rows off the panels (cout 76)
SHAPES = [
    (2, 960, 7, 7, 72),
    (3, 576, 14, 14, 40),
    (2, 384, 14, 14, 76),
    (3, 64, 1, 3, 104),
    (3, 130, 1, 2, 88),
    (2, 40, 5, 5, 96),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("residual", ["none", "post"])
def test_a_short_last_strip_gives_the_bits_of_the_tiles(shape: tuple, residual: str) -> None:
    c = _case(11, shape, ("clip", (0.0, 6.0)), residual)
    x, wt, b = c["ins"][:3]
    z = c["ins"][3] if residual != "none" else None
    PointwiseNative(c["spec"]).bind(c["ins"], [c["out"]], ScratchPool(None))()
    _check(c["out"], c["want"], f"batch {shape}")
    for i in range(shape[0]):
        one = np.full_like(c["out"][i : i + 1], np.nan)
        spec = ConvSpec(x[i : i + 1].shape, one.shape, wt, b, (1, 1), (0, 0, 0, 0), (1, 1), 1,
                        "clip", (0.0, 6.0), residual)  # fmt: skip
        ins = [x[i : i + 1], wt, b] + ([z[i : i + 1]] if z is not None else [])
        PointwiseNative(spec).bind(ins, [one], ScratchPool(None))()
        assert np.array_equal(one, c["out"][i : i + 1]), f"{shape} image {i}"


def test_a_chunk_a_few_pixels_past_the_pack_buffer_packs_as_one_block() -> None:
    """_pack_floats: 960 channels (blocks of 480) on 49 pixels (batch 1, 7 x 7) get three
    strips' buffer (the kernel's NC: 72 pixels, one block); 48 pixels, 53, or a batch of
    two, and 576 channels (four strips of 288 already) keep PACK_FLOATS; the binding sizes
    each chunk's buffer so, and the kernel gives the bits of the smaller buffer."""
    assert _pack_floats(960, 49) == 3 * 480 * 24
    assert _pack_floats(960, 52) == 3 * 480 * 24
    for cin, pixels in ((960, 48), (960, 53), (960, 98), (576, 49), (160, 49)):
        assert _pack_floats(cin, pixels) == PACK_FLOATS, (cin, pixels)
    c = _case(12, (1, 960, 7, 7, 40), ("clip", (0.0, 6.0)), "none")
    got = {}
    for pack_tail in (True, False):
        out = np.full_like(c["out"], np.nan)
        tactic = PointwiseNative(c["spec"])
        tactic.pack_tail = pack_tail
        tactic.bind(c["ins"], [out], ScratchPool(None))()
        got[pack_tail] = out
    _check(got[True], c["want"], "one block")
    assert np.array_equal(got[True], got[False])
