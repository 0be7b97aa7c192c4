"""``ocvec_native``'s in-place projections split between threads by positions
(cpu_ocvec.SPATIAL_PLAIN): each chunk the layer cut to a range of position blocks, every
output channel — the bits of the split by output-channel blocks and of one thread."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.parallel import WorkPool
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.tactics import cpu_ocvec
from edge_infer.engine.backends.cpu.tactics.cpu_ocvec import OcVecNative
from edge_infer.engine.tactics.base import ConvSpec
from tests.engine.backends.cpu.tactics.test_cpu_conv import expected

pytestmark = pytest.mark.skipif(not native.available(), reason="no C compiler: no native path")

# (cin, cout, h, w, activation, residual): 14x14 = 196 positions, a last tile of 4 (AVX2's
# 6) and 300 input channels (blocks of 128 terms); 12x14 tiles of 6 and 7; a residual, an
# activation the shared epilogue does (mish), an output-channel count off the blocks of 16;
# each at least 2^19 multiply-adds (two chunks: cpu_ocvec.OCVEC_MIN_CHUNK_MACS)
CASES = [
    (300, 40, 14, 14, ("clip", (0.0, 6.0)), "none"),
    (160, 24, 12, 14, ("relu", ()), "post"),
    (256, 17, 11, 13, ("mish", ()), "pre"),
]


def _case(k: int, case: tuple) -> tuple[ConvSpec, list[np.ndarray], np.ndarray]:
    cin, cout, h, w, act, residual = case
    rng = np.random.default_rng(k)
    x = rng.standard_normal((1, cin, h, w)).astype(np.float32)
    wt = (rng.standard_normal((cout, cin, 1, 1)) / np.sqrt(cin)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    z = rng.standard_normal((1, cout, h, w)).astype(np.float32)
    conv = np.einsum("ok,nkhw->nohw", wt[:, :, 0, 0].astype(np.float64), x.astype(np.float64))
    spec = ConvSpec(x.shape, (1, cout, h, w), wt, b, (1, 1), (0,) * 4, (1, 1), 1, *act, residual)
    ins = [x, wt, b] + ([z] if residual != "none" else [])
    return spec, ins, expected(conv + b[None, :, None, None], z, act[0], act[1], residual)


@pytest.mark.parametrize("k", range(len(CASES)))
def test_position_ranges_give_the_channel_split_bits(
    k: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, ins, want = _case(k, CASES[k])
    positions, cout = spec.out_shape[2] * spec.out_shape[3], spec.cout
    assert positions > cout  # a layer the position split takes
    pool = WorkPool(2)
    shared: list = []  # the chunks the layer hands the pool
    bind = pool.bind
    monkeypatch.setattr(pool, "bind", lambda chunks: shared.extend(chunks) or bind(chunks))
    outs = {}
    try:
        for label, spatial, p in [("one", True, None), ("ch", False, pool), ("pos", True, pool)]:
            monkeypatch.setattr(cpu_ocvec, "SPATIAL_PLAIN", spatial)
            out = np.full(spec.out_shape, np.nan, np.float32)
            shared.clear()
            layer = OcVecNative(spec)
            run = layer.bind(ins, [out], ScratchPool(p))
            if label == "pos" and layer.fused:  # position ranges, every channel block
                assert len(shared) > 1 and sum(c.args.P for c in shared) == positions
                assert all(c.args.ob0 == 0 and c.args.ob1 == -(-cout // 16) for c in shared)
            run()
            run()
            outs[label] = out
    finally:
        pool.close()
    np.testing.assert_array_equal(outs["pos"], outs["ch"])
    np.testing.assert_array_equal(outs["pos"], outs["one"])
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(outs["pos"], want, rtol=1e-4, atol=3e-5 * scale)


def test_float16_output_by_positions_gives_the_channel_split_bits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """FP16 engines' storage: the output offset counts 2-byte elements."""
    spec, ins, _ = _case(0, CASES[0])
    pool = WorkPool(2)
    outs = []
    try:
        for spatial in (False, True):
            monkeypatch.setattr(cpu_ocvec, "SPATIAL_PLAIN", spatial)
            out = np.full(spec.out_shape, np.nan, np.float16)
            OcVecNative(spec).bind(ins, [out], ScratchPool(pool))()
            outs.append(out)
    finally:
        pool.close()
    assert not np.isnan(outs[1]).any()
    np.testing.assert_array_equal(outs[1], outs[0])
