"""``pointwise_native``'s channel blocks in place (kernels/conv_pointwise.c rows_kblocks): a
float32 input whose channel stride starts every 16th channel's row in the same L1 set (12544
bytes: MobileNetV2's 56 x 56 planes) goes through conv_rows' blocks of pixels in blocks of
channels, the sums through the output between them. Per output the same products in the
same order: the bits of the same input at a channel stride that spreads the rows (no channel
blocks), and the reference; with a tail of 2 pixels (tail_strip per channel block) and a
packed tail of 16 (the tiles' partial sums)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.tactics.cpu_pointwise import PointwiseNative
from tests.engine.backends.cpu.tactics.test_pointwise_native import _case, _check

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler: no native path")

#: (batch, cin, h, w, cout), one image each (under 2 MB: no prefetching blocks): 56 x 56
#: (3136 = 65 x 48 + 16 pixels: blocks of 48 at 144 channels), 50 x 61 (3050: a last block
#: of 26 = 24 + 2); 160 channels with rows off the panels (cout 20)
SHAPES = [(1, 144, 56, 56, 24), (1, 144, 50, 61, 16), (1, 160, 50, 61, 20)]
#: channel strides in floats: 3136 (12544 bytes, 16 sets: channel blocks), 3152 (197 lines:
#: every set), the plane itself (3050 floats: not whole lines)
STRIDES = (3136, 3152)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("residual", ["none", "pre"])
def test_an_aliasing_channel_stride_gives_the_bits_of_a_spread_one(
    shape: tuple, residual: str
) -> None:
    n, cin, h, w, _ = shape
    c = _case(21, shape, ("clip", (0.0, 6.0)), residual)
    x = c["ins"][0]
    outs = {}
    for stride in (h * w, *STRIDES):
        if stride < h * w:
            continue
        buf = np.empty((n, cin, stride + 16), np.float32)
        base = (-buf.ctypes.data) % 64 // 4  # rows 64-byte aligned: the sets as in an arena
        xv = buf.reshape(-1)[base : base + n * cin * stride].reshape(n, cin, stride)
        xv = xv[:, :, : h * w].reshape(n, cin, h, w)
        xv[...] = x
        assert xv.strides[1] == 4 * stride and xv.ctypes.data % 64 == 0
        out = np.full_like(c["out"], np.nan)
        PointwiseNative(c["spec"]).bind([xv, *c["ins"][1:]], [out], ScratchPool(None))()
        _check(out, c["want"], f"{shape} channel stride {stride}")
        outs[stride] = out
    first = next(iter(outs.values()))
    for stride, out in outs.items():
        assert np.array_equal(out, first), f"{shape} channel stride {stride}"
