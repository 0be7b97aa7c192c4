"""``ocvec_native``'s thread split: chunks by multiply-adds, not output values — a 1×1
projection on a 7×7 grid (MobileNetV2's 960->160: 7840 outputs, 7.5 M multiply-adds) ran on
one thread when chunks counted outputs."""

from __future__ import annotations

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.parallel import WorkPool
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.tactics.cpu_ocvec import OcVecNative
from edge_infer.engine.tactics.base import ConvSpec
from tests.engine.backends.cpu.tactics.test_cpu_conv import expected


def _spec(cin: int, cout: int, side: int, seed: int = 0) -> tuple[ConvSpec, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((1, cin, side, side)).astype(np.float32)
    w = (rng.standard_normal((cout, cin, 1, 1)) / np.sqrt(cin)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    spec = ConvSpec(x.shape, (1, cout, side, side), w, b, (1, 1), (0,) * 4, (1, 1), 1, "relu")
    return spec, [x, w, b]


@pytest.mark.parametrize(
    "cin,cout,workers,want",
    [(960, 160, 2, 4), (576, 160, 2, 2), (960, 320, 2, 4), (16, 16, 2, 1), (960, 160, 1, 1)],
)
def test_chunks_count_multiply_adds(cin: int, cout: int, workers: int, want: int) -> None:
    spec, _ = _spec(cin, cout, 7)
    scratch = type("S", (), {"workers": workers})()
    got = OcVecNative._whole_rounds(OcVecNative(spec)._chunks(scratch), scratch)
    assert got == want


@pytest.mark.skipif(not native.available(), reason="no C compiler: no native path")
def test_split_layer_on_two_threads_gives_one_threads_bits() -> None:
    """256->64 on 7x7: 3136 outputs (one chunk by outputs), 0.8 M multiply-adds (two)."""
    spec, ins = _spec(256, 64, 7, seed=3)
    x, w, b = ins
    conv = np.einsum("ok,nkhw->nohw", w[:, :, 0, 0].astype(np.float64), x.astype(np.float64))
    want = expected(conv + b[None, :, None, None], None, "relu", (), "none")
    outs = []
    for threads in (1, 2):
        pool = WorkPool(threads) if threads > 1 else None
        try:
            out = np.full(spec.out_shape, np.nan, np.float32)
            scratch = ScratchPool(pool)
            run = OcVecNative(spec).bind(ins, [out], scratch)
            if pool is not None:
                assert OcVecNative(spec)._chunks(scratch) == 2
            run()
            run()
        finally:
            if pool is not None:
                pool.close()
        outs.append(out)
    np.testing.assert_array_equal(outs[1], outs[0])
    np.testing.assert_allclose(outs[0], want, rtol=1e-4, atol=3e-5 * max(1.0, np.abs(want).max()))
