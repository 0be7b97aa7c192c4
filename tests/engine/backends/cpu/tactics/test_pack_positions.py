"""pack_positions_f32 (conv_ocvec.c) against a numpy gather: blocks inside one row, blocks
straddling two rows, short rows, the last partial block, non-consecutive offsets, and reads
that end exactly at the end of the input (the vector loads must stop before it)."""

from __future__ import annotations

import ctypes
import shutil

import numpy as np
import pytest

from edge_infer.engine.backends.cpu import native
from edge_infer.engine.backends.cpu.tactics.cpu_direct import PB

pytestmark = pytest.mark.skipif(
    shutil.which("cc") is None or native.library() is None, reason="no native kernels"
)


def gather(base: np.ndarray, toff: np.ndarray, posoff: np.ndarray) -> np.ndarray:
    """pk[block][T][PB]: term t's value at each block's positions, zero past the last."""
    npb = -(-len(posoff) // PB)
    padded = np.full(npb * PB, -1, np.int64)
    padded[: len(posoff)] = posoff
    idx = toff[None, :, None] + padded.reshape(npb, 1, PB)
    return np.where(padded.reshape(npb, 1, PB) >= 0, base[np.maximum(idx, 0)], 0.0)


def pack(base: np.ndarray, toff: np.ndarray, posoff: np.ndarray, pb0: int, pb1: int):
    npb = -(-len(posoff) // PB)
    pk = np.full(npb * len(toff) * PB, np.nan, np.float32)
    args = native.PackPositionsArgs(
        base=base.ctypes.data,
        toff=toff.ctypes.data,
        T=len(toff),
        posoff=posoff.ctypes.data,
        P=len(posoff),
        pb0=pb0,
        pb1=pb1,
        pk=pk.ctypes.data,
        half=0,  # float32 base
    )
    native.library().pack_positions_f32(ctypes.byref(args))
    return pk.reshape(npb, len(toff), PB)


@pytest.mark.parametrize("wo,wg", [(28, 30), (14, 14), (7, 9), (4, 6), (3, 3), (13, 13)])
def test_grid_positions(wo: int, wg: int) -> None:
    rng = np.random.default_rng(wo)
    channels, plane = 5, wg * (wo + 2)
    # the input ends right after the last term's last position: no slack for vector reads
    toff = (np.arange(channels)[:, None] * plane + np.array([0, 1, wg + 1])).ravel()
    p = np.arange(wo * wo)
    posoff = (p // wo) * wg + p % wo
    base = rng.standard_normal(int(toff.max() + posoff.max() + 1)).astype(np.float32)
    npb = -(-len(posoff) // PB)
    want = gather(base, toff, posoff)
    np.testing.assert_array_equal(pack(base, toff, posoff, 0, npb), want)
    # a chunk writes only its blocks (the 8-float stores stay inside them)
    mid = pack(base, toff, posoff, 1, max(2, npb - 1))
    np.testing.assert_array_equal(mid[1 : max(2, npb - 1)], want[1 : max(2, npb - 1)])
    assert np.isnan(mid[0]).all() and (npb < 3 or np.isnan(mid[npb - 1]).all())


@pytest.mark.parametrize("wo,xrs", [(14, 28), (7, 14), (10, 21), (3, 7)])
def test_stride2_positions(wo: int, xrs: int) -> None:
    """A stride-2 conv read in place: positions 2 apart along a row of the input."""
    rng = np.random.default_rng(xrs)
    plane = xrs * 2 * wo
    toff = (np.arange(4)[:, None] * plane + np.array([0, 1, xrs])).ravel()
    p = np.arange(wo * wo)
    posoff = (p // wo) * 2 * xrs + (p % wo) * 2
    base = rng.standard_normal(int(toff.max() + posoff.max() + 1)).astype(np.float32)
    npb = -(-len(posoff) // PB)
    np.testing.assert_array_equal(pack(base, toff, posoff, 0, npb), gather(base, toff, posoff))


def test_unordered_offsets() -> None:
    rng = np.random.default_rng(1)
    posoff = rng.permutation(40).astype(np.int64)
    posoff[:6] = [8, 9, 10, 2, 3, 4]  # two runs, the second before the first
    toff = np.array([3, 0, 50], np.int64)
    base = rng.standard_normal(int(toff.max() + posoff.max() + 1)).astype(np.float32)
    np.testing.assert_array_equal(pack(base, toff, posoff, 0, 7), gather(base, toff, posoff))
