"""pack_positions_f32 (conv_ocvec.c) against a numpy gather, for blocks of 6 and of 7
positions: blocks inside one row, blocks straddling two rows, short rows, the last partial
block, non-consecutive offsets, and reads that end exactly at the end of the input (the vector
loads must stop before it)."""

from __future__ import annotations

import ctypes
import shutil

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native, native_args
from edge_infer.engine.backends.cpu.parallel import WorkPool
from edge_infer.engine.backends.cpu.program import ScratchPool
from edge_infer.engine.backends.cpu.tactics.cpu_ocvec import (
    PB,
    PB7,
    OcVecNative,
    positions_per_tile,
)
from edge_infer.engine.tactics.base import ConvSpec

pytestmark = pytest.mark.skipif(
    shutil.which("cc") is None or native.library() is None, reason="no native kernels"
)


PBS = pytest.mark.parametrize("pb", [PB, PB7])


def gather(base: np.ndarray, toff: np.ndarray, posoff: np.ndarray, pb: int) -> np.ndarray:
    """pk[block][T][pb]: term t's value at each block's positions, zero past the last."""
    npb = -(-len(posoff) // pb)
    padded = np.full(npb * pb, -1, np.int64)
    padded[: len(posoff)] = posoff
    idx = toff[None, :, None] + padded.reshape(npb, 1, pb)
    return np.where(padded.reshape(npb, 1, pb) >= 0, base[np.maximum(idx, 0)], 0.0)


def pack(base: np.ndarray, toff: np.ndarray, posoff: np.ndarray, pb0: int, pb1: int, pb: int):
    npb = -(-len(posoff) // pb)
    pk = np.full(npb * len(toff) * pb, np.nan, np.float32)
    args = native_args.PackPositionsArgs(
        base=base.ctypes.data,
        toff=toff.ctypes.data,
        T=len(toff),
        posoff=posoff.ctypes.data,
        P=len(posoff),
        pb0=pb0,
        pb1=pb1,
        pk=pk.ctypes.data,
        half=0,  # float32 base
        pb=pb,
    )
    native.library().pack_positions_f32(ctypes.byref(args))
    return pk.reshape(npb, len(toff), pb)


@PBS
@pytest.mark.parametrize("wo,wg", [(28, 30), (14, 14), (7, 9), (4, 6), (3, 3), (13, 13)])
def test_grid_positions(wo: int, wg: int, pb: int) -> None:
    rng = np.random.default_rng(wo)
    channels, plane = 5, wg * (wo + 2)
    # the input ends right after the last term's last position: no slack for vector reads
    toff = (np.arange(channels)[:, None] * plane + np.array([0, 1, wg + 1])).ravel()
    p = np.arange(wo * wo)
    posoff = (p // wo) * wg + p % wo
    base = rng.standard_normal(int(toff.max() + posoff.max() + 1)).astype(np.float32)
    npb = -(-len(posoff) // pb)
    want = gather(base, toff, posoff, pb)
    np.testing.assert_array_equal(pack(base, toff, posoff, 0, npb, pb), want)
    # a chunk writes only its blocks (the 8-float stores stay inside them)
    mid = pack(base, toff, posoff, 1, max(2, npb - 1), pb)
    np.testing.assert_array_equal(mid[1 : max(2, npb - 1)], want[1 : max(2, npb - 1)])
    assert np.isnan(mid[0]).all() and (npb < 3 or np.isnan(mid[npb - 1]).all())


@PBS
@pytest.mark.parametrize("wo,xrs", [(14, 28), (7, 14), (10, 21), (3, 7)])
def test_stride2_positions(wo: int, xrs: int, pb: int) -> None:
    """A stride-2 conv read in place: positions 2 apart along a row of the input."""
    rng = np.random.default_rng(xrs)
    plane = xrs * 2 * wo
    toff = (np.arange(4)[:, None] * plane + np.array([0, 1, xrs])).ravel()
    p = np.arange(wo * wo)
    posoff = (p // wo) * 2 * xrs + (p % wo) * 2
    base = rng.standard_normal(int(toff.max() + posoff.max() + 1)).astype(np.float32)
    npb = -(-len(posoff) // pb)
    np.testing.assert_array_equal(
        pack(base, toff, posoff, 0, npb, pb), gather(base, toff, posoff, pb)
    )


@PBS
def test_unordered_offsets(pb: int) -> None:
    rng = np.random.default_rng(1)
    posoff = rng.permutation(40).astype(np.int64)
    posoff[:6] = [8, 9, 10, 2, 3, 4]  # two runs, the second before the first
    toff = np.array([3, 0, 50], np.int64)
    base = rng.standard_normal(int(toff.max() + posoff.max() + 1)).astype(np.float32)
    npb = -(-len(posoff) // pb)
    np.testing.assert_array_equal(
        pack(base, toff, posoff, 0, npb, pb), gather(base, toff, posoff, pb)
    )


def test_positions_per_tile() -> None:
    """7 only where the library's 7-position tile fits its registers and pads no more."""
    seven = bool(native.library().conv_ocvec_pb7_fits())
    assert positions_per_tile(49) == (PB7 if seven else PB)  # 49, not 54
    assert positions_per_tile(196) == (PB7 if seven else PB)  # 196, not 198
    assert positions_per_tile(100) == PB  # 102, not 105
    assert positions_per_tile(12) == PB  # 12, not 14


@pytest.mark.parametrize("side,k,stride", [(7, 1, 1), (9, 3, 1), (14, 1, 2)])
def test_tile_widths_give_the_same_bits(side: int, k: int, stride: int) -> None:
    """ocvec_native with 7-position tiles writes the bits of 6-position ones (the same
    products in the same order), residual and activation included, 1 and 2 chunks."""
    rng = np.random.default_rng(side)
    cin, cout, pad = 24, 40, (k - 1) // 2
    ho = (side + 2 * pad - k) // stride + 1
    x = rng.standard_normal((1, cin, side, side)).astype(np.float32)
    w = (rng.standard_normal((cout, cin, k, k)) / np.sqrt(cin * k * k)).astype(np.float32)
    b = rng.standard_normal(cout).astype(np.float32)
    z = rng.standard_normal((1, cout, ho, ho)).astype(np.float32)
    shape = (1, cout, ho, ho)
    spec = ConvSpec(x.shape, shape, w, b, (stride,) * 2, (pad,) * 4, (1, 1), 1, "relu", (), "pre")
    outs = []
    pool = WorkPool(2)
    try:
        for tile in (PB, PB7):
            for work in (None, pool):
                cls = type("OcVecTile", (OcVecNative,), {"tile_positions": tile})
                out = np.full(shape, np.nan, np.float32)
                cls(spec).bind([x, w, b, z], [out], ScratchPool(work))()
                outs.append(out)
    finally:
        pool.close()
    assert not np.isnan(outs[0]).any()
    for out in outs[1:]:
        np.testing.assert_array_equal(out, outs[0])
